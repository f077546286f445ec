"""A message's recipients that share transport and next hop go out in one
SMTP transaction, split only by the transport's max_recipients: the
scheduler claims a message whole (queue_claim_due_msg) even when it has
more recipients than one claim batch (16), instead of one transaction per
batch. Against Postfix's smtp-sink, which dumps each transaction."""
import re

import pytest

from test_relay import send, sinks, smtp_transport, wait_done  # noqa: F401 (fixture)

NRCPT = 60


def rcpts_of(dump):
    """The envelope recipients smtp-sink recorded for one transaction."""
    return re.findall(r"^X-Rcpt-Args: <([^>]*)>", dump, re.M)


@pytest.mark.parametrize("max_rcpt,sizes", [(50, [50, 10]), (100, [60])])
def test_whole_message_one_transaction_per_limit(switchyard, sinks, max_rcpt, sizes):  # noqa: F811
    sink = sinks("sink")
    sw = switchyard(overrides={
        "delivery": {"workers": 2, "default_transport": "out"},
        "transports": {"out": smtp_transport(sink, max_recipients=max_rcpt)},
    })
    rcpts = ["r%02d@example.net" % i for i in range(NRCPT)]
    subject = "whole-%d" % max_rcpt
    qid = send(sw, "s@example.org", rcpts, subject)
    wait_done(sw, qid)
    got = sink.dumps_with(subject)
    per = [rcpts_of(d) for d in got]
    assert sorted(len(p) for p in per) == sorted(sizes), (per, sw.log_tail())
    assert sorted(a for p in per for a in p) == rcpts
    for i in range(NRCPT):
        assert sw.rcpt(qid, i)["state"] == "delivered"
        assert sw.rcpt(qid, i)["attempts"] == "1"
