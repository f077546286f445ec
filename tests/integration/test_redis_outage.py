"""redis-server stopped (or hung) while switchyard runs: 451 4.3.0, nothing
half-stored, and everything flows again once Redis is back."""
import re
import time

import sylib
from sylib import queued_qid, simple_message

SENDER = "sender@example.org"


def transaction_outcome(c, rcpts, msg):
    """Runs one transaction that Redis trouble may refuse at RCPT or after
    DATA; returns the final reply per recipient (in RCPT order)."""
    r = c.cmd("MAIL FROM:<%s>" % SENDER)
    if r.code != 250:
        return [r] * len(rcpts)
    final = {}
    for a in rcpts:
        r = c.cmd("RCPT TO:<%s>" % a)
        if r.code != 250:
            final[a] = r
    if len(final) == len(rcpts):
        assert c.cmd("RSET").code == 250
        return [final[a] for a in rcpts]
    r = c.cmd("DATA")
    assert r.code == 354, r
    c.send(sylib.dot_stuff(msg) + b".\r\n")
    after = iter(c.replies(len(rcpts) - len(final)))
    return [final[a] if a in final else next(after) for a in rcpts]


def accepted(sw, rcpt):
    """One transaction on a new session: its reply if 250, else None."""
    with sw.lmtp() as c:
        r = transaction_outcome(c, [rcpt], simple_message("retry"))[0]
        c.cmd("QUIT")
    return r if r.code == 250 else None


def test_direct_lmtp_redis_down(switchyard, redis):
    sw = switchyard()
    with sw.lmtp() as c:
        base = queued_qid(c.transaction(SENDER, ["before@example.net"], simple_message("before"))[0])
    assert sw.spool_q() == [base]

    redis.stop()
    with sw.lmtp() as c:
        t0 = time.monotonic()
        replies = transaction_outcome(c, ["down1@example.net", "down2@example.net"],
                                      simple_message("during outage"))
        assert all(r.is_(451, "4.3.0") for r in replies), replies
        assert time.monotonic() - t0 < 60
        assert c.cmd("NOOP").is_(250, "2.0.0")
    assert sw.spool_q() == [base], "a refused message was left in the spool"
    assert sw.spool_tmp() == []

    redis.start()
    # the daemon reconnects by itself; allow it a few attempts
    after = queued_qid(sylib.wait_for(lambda: accepted(sw, "after@example.net"), 60,
                                      "a 250 after Redis came back", interval=0.5))
    assert sorted(sw.spool_q()) == sorted([base, after])
    assert sorted(sw.msg_qids()) == sorted([base, after])
    assert sw.msg(after).get("sender") == SENDER
    assert sw.rcpt(after, 0).get("addr") == "after@example.net"
    assert sw.spool_tmp() == []
    assert sw.running


def test_redis_hung(switchyard, redis):
    """SIGSTOPped Redis: replies come within the command timeout (1 s) as
    451 4.3.0; after SIGCONT the daemon works again."""
    sw = switchyard()
    with sw.lmtp() as c:
        base = queued_qid(c.transaction(SENDER, ["before@example.net"], simple_message("before"))[0])
    redis.pause()
    try:
        with sw.lmtp() as c:
            t0 = time.monotonic()
            replies = transaction_outcome(c, ["hung@example.net"], simple_message("hung"))
            assert all(r.is_(451, "4.3.0") for r in replies), replies
            assert time.monotonic() - t0 < 60
        assert sw.spool_q() == [base]
        assert sw.spool_tmp() == []
    finally:
        redis.resume()
    after = queued_qid(sylib.wait_for(lambda: accepted(sw, "resumed@example.net"), 60,
                                      "a 250 after SIGCONT", interval=0.5))
    assert sorted(sw.spool_q()) == sorted([base, after])
    assert sw.msg(after).get("sender") == SENDER
    assert sw.spool_tmp() == []


def test_postfix_defers_then_delivers(postfix, switchyard, redis):
    sw = switchyard(port=postfix.lmtp_port)
    tag = "ro%d" % time.time_ns()
    rcpts = ["%s-1@example.net" % tag, "%s-2@example.net" % tag]
    redis.stop()
    pq = postfix.swaks(SENDER, rcpts, headers=["X-Test-Id: %s" % tag,
                                               "Message-Id: <%s@test.example>" % tag])
    for a in rcpts:
        l = postfix.wait_log(r"%s: to=<%s>.*status=deferred" % (pq, re.escape(a)), timeout=120)
        assert "451 4.3.0" in l[0], l
    assert not postfix.log_lines(r"%s: to=.*status=(sent|bounced)" % pq), postfix.log()
    assert sw.spool_q() == [] and sw.spool_tmp() == []

    redis.start()
    postfix.mark()
    postfix.flush()
    lines = postfix.wait_log(r"%s: to=<%s-\d@example\.net>.*status=sent" % (pq, tag), count=2,
                             timeout=120)
    qids = {re.search(r"queued as ([A-Za-z0-9]+)\)", l).group(1) for l in lines}
    assert len(qids) == 1, lines
    qid = qids.pop()
    postfix.wait_empty()
    # in the spool and in Redis exactly once
    assert sw.spool_q() == [qid]
    assert sw.spool_bytes(qid).count(b"X-Test-Id: %s\r\n" % tag.encode()) == 1
    assert sw.msg_qids() == [qid]
    m = sw.msg(qid)
    assert m.get("sender") == SENDER and int(m["nrcpt"]) == 2, m
    assert sorted(sw.rcpt(qid, i).get("addr") for i in range(2)) == sorted(rcpts)
    assert sw.spool_tmp() == []
