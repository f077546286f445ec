"""Spool <-> Redis reconciliation: `queue rebuild`, reconciliation at start,
stale temporary files, and the spool lock."""
import os
import re

import sylib
from sylib import queued_qid, simple_message

SENDER = "sender@example.org"


def deliver(sw, rcpts, subject):
    with sw.lmtp() as c:
        r = c.transaction(SENDER, rcpts, simple_message(subject))
        c.cmd("QUIT")
    qid = queued_qid(r[0])
    assert all(queued_qid(x) == qid for x in r)
    return qid


def sched_members(sw):
    return set(sw.redis("ZRANGE", sw.key("sched"), 0, -1))


def assert_indexed(sw, qid, rcpts):
    m = sw.msg(qid)
    assert m.get("sender") == SENDER, (qid, m)
    assert int(m.get("nrcpt", -1)) == len(rcpts), (qid, m)
    assert m.get("state") == "active", (qid, m)
    for i, a in enumerate(rcpts):
        r = sw.rcpt(qid, i)
        assert r.get("addr") == a and r.get("state") == "queued", (qid, i, r)
    assert sw.redis("ZSCORE", sw.key("index"), qid) is not None, qid
    assert {"%s:%d" % (qid, i) for i in range(len(rcpts))} <= sched_members(sw)


def test_rebuild_after_flushall(switchyard, redis):
    sw = switchyard()
    want = {}
    for n in (1, 2, 3):
        rcpts = ["m%d-r%d@example.net" % (n, i) for i in range(n)]
        want[deliver(sw, rcpts, "rebuild %d" % n)] = rcpts
    p = sw.cli("queue", "rebuild", check=False)
    assert p.returncode != 0, "queue rebuild ran while the daemon holds the spool lock:\n" + p.stdout
    assert sw.stop() == 0
    redis("FLUSHALL")
    assert sw.msg_qids() == []
    stale = os.path.join(sw.spool_dir, "tmp", "00000000001ABCD")
    with open(stale, "wb") as f:
        f.write(b"half a message")
    p = sw.cli("queue", "rebuild")
    assert re.search(r"\d", p.stdout + p.stderr), "rebuild printed no counts:\n%s%s" % (p.stdout, p.stderr)
    assert not os.path.exists(stale), "rebuild left a stale tmp file"
    assert sorted(sw.msg_qids()) == sorted(want)
    for qid, rcpts in want.items():
        assert_indexed(sw, qid, rcpts)
    assert len(sched_members(sw)) == 6
    # a second rebuild changes nothing
    sw.cli("queue", "rebuild")
    assert sorted(sw.msg_qids()) == sorted(want) and len(sched_members(sw)) == 6
    # and the daemon starts on it and lists it
    sw.start()
    out = sw.cli("queue", "list").stdout
    for qid in want:
        assert qid in out, out


def test_spool_file_deleted_marked_missing(switchyard):
    sw = switchyard()
    gone = deliver(sw, ["g1@example.net", "g2@example.net"], "gone")
    kept = deliver(sw, ["k1@example.net"], "kept")
    assert sw.stop() == 0
    os.unlink(os.path.join(sw.spool_dir, "q", gone))
    sw.cli("queue", "rebuild")
    m = sw.msg(gone)
    assert m.get("state") == "missing", m
    for i in range(2):
        assert sw.rcpt(gone, i).get("state") == "missing", sw.rcpt(gone, i)
    members = sched_members(sw)
    assert not any(x.startswith(gone + ":") for x in members), members
    assert_indexed(sw, kept, ["k1@example.net"])

    # the daemon does the same at start-up
    sw.start()
    gone2 = deliver(sw, ["h1@example.net"], "gone at start")
    assert sw.stop() == 0
    os.unlink(os.path.join(sw.spool_dir, "q", gone2))
    sw.start()
    sylib.wait_for(lambda: sw.msg(gone2).get("state") == "missing", 60,
                   "%s marked missing after a start" % gone2)
    assert sw.rcpt(gone2, 0).get("state") == "missing"
    assert not any(x.startswith(gone2 + ":") for x in sched_members(sw))
    assert_indexed(sw, kept, ["k1@example.net"])


def test_stale_tmp_removed_at_start(switchyard):
    sw = switchyard()
    kept = deliver(sw, ["t@example.net"], "kept")
    assert sw.stop() == 0
    tmpd = os.path.join(sw.spool_dir, "tmp")
    for name in ("00000000001ABCD", "0PQ5X8G3C1R2ZKM"):
        with open(os.path.join(tmpd, name), "wb") as f:
            f.write(b"Subject: half\r\n\r\nhalf a mess")
    sw.start()
    sylib.wait_for(lambda: sw.spool_tmp() == [], 60, "stale tmp files removed at start")
    assert sw.spool_q() == [kept]
    assert_indexed(sw, kept, ["t@example.net"])
    deliver(sw, ["after@example.net"], "after")


def test_second_serve_on_same_spool_refused(switchyard, switchyard_bin):
    sw1 = switchyard()
    sw2 = switchyard(start=False, name="sw2")
    sw2.config["spool"]["dir"] = sw1.spool_dir
    sw2.write_config()
    status, out = sylib.serve_expect_exit(switchyard_bin, sw2.config_path)
    assert status is not None, "a second serve on a locked spool kept running:\n" + out
    assert status != 0, out
    assert "lock" in out.lower(), out
    assert sw1.running
    deliver(sw1, ["still@example.net"], "still works")
