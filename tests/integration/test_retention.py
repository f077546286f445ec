"""delivery.retention: a finished message keeps its Redis record (for
`queue show`) until its retention passes, then a worker's sweep deletes the
record and its recipients. The sweep runs when the workers start and about
once a minute after."""
import os

import sylib
from sylib import queued_qid, simple_message


def deliver_one(sw, subject):
    with sw.lmtp() as c:
        r = c.transaction("a@example.org", ["b@example.net", "c@example.net"], simple_message(subject))
        c.cmd("QUIT")
    qid = queued_qid(r[0])
    sw.wait_captures(qid, 2)
    sylib.wait_for(lambda: sw.msg(qid).get("state") == "done", 30, "%s done" % qid)
    # the spool file goes as soon as every recipient is final
    assert not os.path.exists(os.path.join(sw.spool_dir, "q", qid))
    return qid


def test_record_kept_within_retention(switchyard):
    sw = switchyard(overrides={"delivery": {"workers": 1}})
    qid = deliver_one(sw, "kept")
    sw.restart()
    # a second message through the restarted worker: its loop (claim,
    # deliver, sweep) has run by the time it is done
    deliver_one(sw, "later")
    # the default retention is 7 days: the sweep left the first one alone
    assert sw.msg(qid).get("state") == "done"
    assert sw.rcpt(qid, 1).get("state") == "delivered"
    assert sw.redis("ZSCORE", sw.key("done"), qid) is not None


def test_record_deleted_after_retention(switchyard):
    sw = switchyard(overrides={"delivery": {"workers": 1, "retention": "0"}})
    qid = deliver_one(sw, "deleted")
    # the restart's first sweep deletes it (retention 0)
    sw.restart()
    sylib.wait_for(lambda: sw.msg(qid) == {}, 30, "record of %s deleted" % qid)
    assert sw.rcpt(qid, 0) == {} and sw.rcpt(qid, 1) == {}
    assert sw.redis("ZSCORE", sw.key("done"), qid) is None
    assert "retention: deleted 1 finished message(s)" in sw.log_text
