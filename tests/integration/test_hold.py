"""Hold rules and the administrator's queue commands, end to end: mail in
over LMTP, the capture transport as the next hop, the command line against
the same Redis. `hold add` holds new mail at intake (within a second), an
`until` rule releases by itself (the scheduler's sweep), `hold add --apply`
holds what is queued, `hold rm` releases, and `queue
list|hold|release|kick|drop|fail|reroute` select by id or filter."""
import os
import re
import time

import sylib
from sylib import queued_qid, simple_message

WORKERS = {"delivery": {"workers": 1}}


def send(sw, sender, rcpts, subject="held?"):
    with sw.lmtp() as c:
        r = c.transaction(sender, rcpts, simple_message(subject))
        c.cmd("QUIT")
    qids = {queued_qid(x) for x in r}
    assert len(qids) == 1, r
    return qids.pop()


def rule_id(out):
    m = re.search(r"^added (\d+)  ", out, re.M)
    assert m, out
    return m.group(1)


def wait_state(sw, qid, idx, state, timeout=30):
    sylib.wait_for(lambda: sw.rcpt(qid, idx).get("state") == state, timeout,
                   "%s:%d %s (now %r)" % (qid, idx, state, sw.rcpt(qid, idx)))


def new_rule_applies(sw, rcpt_domain):
    """Rules are cached by intake for up to a second: send probes until one
    is held (each probe after the first proves the cache expired)."""
    deadline = time.time() + 30
    while True:
        qid = send(sw, "probe@example.org", ["p@" + rcpt_domain], "probe")
        if sw.rcpt(qid, 0).get("state") == "held":
            return qid
        assert time.time() < deadline, "hold rule never applied at intake"
        time.sleep(0.3)


def list_rows(out):
    return [l.split() for l in out.splitlines() if l.strip() and not l.startswith(" ")]


def test_rule_holds_new_mail_release_delivers(switchyard):
    sw = switchyard(overrides=WORKERS)
    out = sw.cli("hold", "add", "--recipient", ".held.example").stdout
    rid = rule_id(out)
    assert "recipient=.held.example" in out and "until=-" in out
    listing = sw.cli("hold", "list").stdout
    assert re.search(r"^%s  sender=\*  recipient=\.held\.example  listener=\*  until=-$" % rid,
                     listing, re.M), listing

    probe = new_rule_applies(sw, "a.held.example")
    qid = send(sw, "a@example.org", ["x@sub.held.example", "y@free.example"])
    # the free recipient is delivered, the held one is not
    sw.wait_captures(qid, 1)
    wait_state(sw, qid, 1, "delivered")
    r0 = sw.rcpt(qid, 0)
    assert r0.get("state") == "held" and r0.get("held_by") == rid, r0
    # held with no end: +inf in the held set
    assert sw.redis("ZSCORE", sw.key("held"), "%s:0" % qid) == "inf"
    assert sw.redis("ZSCORE", sw.key("sched"), "%s:0" % qid) is None
    time.sleep(1.5)
    assert 0 not in sw.captures(qid)
    assert "held=1" in sw.log_text

    # queue list shows it under --held, with its rule
    out = sw.cli("queue", "list", "--held", "-v").stdout
    assert qid in out and probe in out, out
    assert re.search(r"^  0 <x@sub\.held\.example> held attempts=0 held_by=%s$" % rid, out, re.M), out
    out = sw.cli("queue", "show", qid).stdout
    assert re.search(r"^  rcpt 0: <x@sub\.held\.example> state=held attempts=0 held_by=%s$" % rid,
                     out, re.M), out

    # release by id: delivered, released_ms recorded, held_by gone
    out = sw.cli("queue", "release", "%s:0" % qid).stdout
    assert out.startswith("1 recipient(s) released (1 selected)"), out
    sw.wait_captures(qid, 2)
    wait_state(sw, qid, 0, "delivered")
    r0 = sw.rcpt(qid, 0)
    assert "held_by" not in r0 and int(r0["released_ms"]) > 0, r0
    assert re.search(r"^  rcpt 0: .* state=delivered .*released=\d{4}-", sw.cli("queue", "show", qid).stdout,
                     re.M)
    sylib.wait_for(lambda: sw.msg(qid).get("state") == "done", 30, "%s done" % qid)
    assert not os.path.exists(os.path.join(sw.spool_dir, "q", qid))
    # releasing again changes nothing
    out = sw.cli("queue", "release", "%s:0" % qid).stdout
    assert out.startswith("0 recipient(s) released"), out


def test_until_rule_releases_by_itself(switchyard):
    sw = switchyard(overrides=WORKERS)
    until = int(time.time()) + 4
    rid = rule_id(sw.cli("hold", "add", "--sender", "timed@example.org", "--until", str(until)).stdout)
    # wait for intake's rule cache, then send
    time.sleep(1.2)
    qid = send(sw, "timed@example.org", ["r@example.net"])
    r0 = sw.rcpt(qid, 0)
    if time.time() < until:
        assert r0.get("state") == "held" and r0.get("held_by") == rid, r0
        assert sw.redis("ZSCORE", sw.key("held"), "%s:0" % qid) == str(until)
        assert sw.captures(qid) == {}
    # the scheduler's sweep releases it when the rule ends, then delivers
    sw.wait_captures(qid, 1, timeout=60)
    wait_state(sw, qid, 0, "delivered")
    assert time.time() >= until
    assert "hold: released 1 recipient(s)" in sw.log_text
    # the rule stays listed, marked ended
    assert re.search(r"^%s .*until=\S+ \(ended\)$" % rid, sw.cli("hold", "list").stdout, re.M)
    # an ended rule holds nothing new
    qid2 = send(sw, "timed@example.org", ["r@example.net"])
    sw.wait_captures(qid2, 1)


def test_until_parsing_and_errors(switchyard):
    sw = switchyard()
    out = sw.cli("hold", "add", "--until", "2099-01-02T03:04:05Z").stdout
    assert "until=2099-01-02T03:04:05Z" in out, out
    out = sw.cli("hold", "add", "--until", "2099-01-02T04:04+01:00").stdout
    assert "until=2099-01-02T03:04:00Z" in out, out
    out = sw.cli("hold", "add", "--until", "+2h", "--listener", "postfix").stdout
    assert "listener=postfix" in out
    for bad in (["--until", "2099-02-30T00:00:00Z"], ["--until", "2001-01-01T00:00:00Z"],
                ["--until", "2099-01-01T00:00:00"], ["--until", "soon"],
                ["--recipient", "<>"], ["--listener", "no/such"], ["--bogus"]):
        r = sw.cli("hold", "add", *bad, check=False)
        assert r.returncode == 2, (bad, r.stdout, r.stderr)
    r = sw.cli("hold", "rm", "999", check=False)
    assert r.returncode == 1 and "no hold rule 999" in r.stderr, r.stderr
    assert len(list_rows(sw.cli("hold", "list").stdout)) == 3


def test_hold_add_apply_and_rm_releases(switchyard):
    sw = switchyard()       # no workers: everything stays queued
    q1 = send(sw, "s@example.org", ["a@x.example", "b@y.example"])
    q2 = send(sw, "s@example.org", ["c@x.example"])
    out = sw.cli("hold", "add", "--recipient", "x.example", "--apply").stdout
    rid = rule_id(out)
    assert "2 queued recipient(s) held" in out, out
    assert sw.rcpt(q1, 0).get("state") == "held" and sw.rcpt(q1, 0).get("held_by") == rid
    assert sw.rcpt(q1, 1).get("state") == "queued"
    assert sw.rcpt(q2, 0).get("state") == "held"
    assert sw.redis("ZSCORE", sw.key("sched"), "%s:0" % q1) is None

    # a manual hold takes over a rule hold: it survives the rule's removal
    out = sw.cli("queue", "hold", "%s:0" % q2).stdout
    assert out.startswith("1 recipient(s) held"), out
    assert "held_by" not in sw.rcpt(q2, 0)

    out = sw.cli("hold", "rm", rid).stdout
    assert "removed %s" % rid in out and "1 recipient(s) released on this node" in out, out
    r = sw.rcpt(q1, 0)
    assert r.get("state") == "queued" and "held_by" not in r and int(r["released_ms"]) > 0, r
    assert sw.redis("ZSCORE", sw.key("sched"), "%s:0" % q1) is not None
    assert sw.rcpt(q2, 0).get("state") == "held"
    assert list_rows(sw.cli("hold", "list").stdout) == []


def test_queue_list_filters_and_paging(switchyard):
    sw = switchyard()
    qids = [send(sw, "s%d@example.org" % i, ["r%d@dom%d.example" % (i, i % 2)], "m%d" % i)
            for i in range(5)]
    out = sw.cli("queue", "list").stdout
    assert [r[0] for r in list_rows(out)] == sorted(qids)

    # paging: --limit N, then --after the last id shown
    r = sw.cli("queue", "list", "--limit", "2")
    page1 = [x[0] for x in list_rows(r.stdout)]
    assert page1 == sorted(qids)[:2], r.stdout
    assert "more: --after %s" % page1[-1] in r.stderr, r.stderr
    r = sw.cli("queue", "list", "--limit", "2", "--after", page1[-1])
    page2 = [x[0] for x in list_rows(r.stdout)]
    assert page2 == sorted(qids)[2:4]
    r = sw.cli("queue", "list", "--limit", "2", "--after", page2[-1])
    assert [x[0] for x in list_rows(r.stdout)] == sorted(qids)[4:]
    assert "more:" not in r.stderr

    def ids(*args):
        return sorted(x[0] for x in list_rows(sw.cli("queue", "list", *args).stdout))

    assert ids("--sender", "s3@example.org") == [qids[3]]
    assert ids("--recipient", "dom1.example") == sorted([qids[1], qids[3]])
    assert ids("--sender", "example.org", "--recipient", "dom0.example") == sorted([qids[0], qids[2], qids[4]])
    assert ids("--newer-than", "1h") == sorted(qids)
    assert ids("--older-than", "1h") == []
    assert ids("--held") == []
    sw.cli("queue", "hold", "--recipient", "dom1.example")
    assert ids("--held") == sorted([qids[1], qids[3]])
    assert ids(qids[2], qids[3]) == sorted([qids[2], qids[3]])
    assert ids(qids[2], qids[3], "--held") == [qids[3]]
    # --transport: the reroute (or last attempt's transport)
    assert ids("--transport", "capture") == []
    sw.cli("queue", "reroute", "--transport", "capture", qids[0])
    assert ids("--transport", "capture") == [qids[0]]

    for bad in (["--after", "nope"], ["--limit", "0"], ["--older-than", "x"], ["--wat"],
                ["NOTAQUEUEID"]):
        r = sw.cli("queue", "list", *bad, check=False)
        assert r.returncode == 2, (bad, r.stderr)
    # an action needs a selection
    r = sw.cli("queue", "release", check=False)
    assert r.returncode == 2 and "--all" in r.stderr
    out = sw.cli("queue", "release", "--all").stdout
    assert out.startswith("2 recipient(s) released"), out


def test_kick_makes_due_now(switchyard):
    sw = switchyard()
    qid = send(sw, "s@example.org", ["a@example.net"])
    later = int(time.time() * 1000) + 3600 * 1000
    sw.redis("ZADD", sw.key("sched"), str(later), "%s:0" % qid)
    sw.redis("HSET", sw.key("rcpt", qid, 0), "next_ms", str(later))
    out = sw.cli("queue", "kick", qid).stdout
    assert out.startswith("1 recipient(s) due now"), out
    score = float(sw.redis("ZSCORE", sw.key("sched"), "%s:0" % qid))
    assert abs(score - time.time() * 1000) < 60000
    assert sw.rcpt(qid, 0)["next_ms"] == str(int(score))
    # a leased recipient (score past next_ms: a worker has it) is left alone
    sw.redis("ZADD", sw.key("sched"), str(later), "%s:0" % qid)
    out = sw.cli("queue", "kick", qid).stdout
    assert out.startswith("0 recipient(s) due now"), out


def test_drop_with_daemon_running_and_stopped(switchyard):
    sw = switchyard(overrides=WORKERS)
    sw.cli("hold", "add", "--recipient", "drop.example")
    new_rule_applies(sw, "drop.example")
    qid = send(sw, "d@example.org", ["a@drop.example", "b@drop.example"])
    assert sw.rcpt(qid, 0).get("state") == "held"

    # the daemon holds the spool lock: it drops them on its next claim
    out = sw.cli("queue", "drop", "%s:0" % qid).stdout
    assert out.startswith("1 recipient(s) marked for drop"), out
    wait_state(sw, qid, 0, "failed")
    r0 = sw.rcpt(qid, 0)
    assert r0.get("admin") == "drop" and "dropped by administrator" in r0.get("last_reply", ""), r0
    assert sw.rcpt(qid, 1).get("state") == "held"

    # daemon stopped: dropped at once, and the spool file goes
    sw.stop()
    out = sw.cli("queue", "drop", qid).stdout
    assert out.startswith("1 recipient(s) dropped (2 selected)"), out
    r1 = sw.rcpt(qid, 1)
    assert r1.get("state") == "failed" and r1.get("admin") == "drop", r1
    assert sw.msg(qid).get("state") == "done"
    assert sw.redis("ZSCORE", sw.key("index"), qid) is None
    assert not os.path.exists(os.path.join(sw.spool_dir, "q", qid))
    assert sw.captures(qid) == {}
    # no DSN: nothing else was queued (the probe was delivered)
    sw.start()
    time.sleep(1.5)
    assert all(m.get("sender") != "" for m in sw.all_msgs().values())


def test_fail_and_reroute(switchyard):
    sw = switchyard(overrides=WORKERS)
    sw.cli("hold", "add", "--sender", "f@example.org")
    new_rule_applies_sender = time.time() + 30
    while True:
        qid = send(sw, "f@example.org", ["a@example.net", "b@example.net"])
        if sw.rcpt(qid, 0).get("state") == "held":
            break
        assert time.time() < new_rule_applies_sender
        time.sleep(0.3)

    r = sw.cli("queue", "reroute", "--transport", "nosuch", qid, check=False)
    assert r.returncode == 2 and "no transport" in r.stderr, r.stderr
    out = sw.cli("queue", "reroute", "--transport", "capture", "%s:1" % qid).stdout
    assert out.startswith("1 recipient(s) rerouted"), out
    # a held recipient keeps its hold when rerouted
    assert sw.rcpt(qid, 1).get("reroute") == "capture" and sw.rcpt(qid, 1).get("state") == "held"
    out = sw.cli("queue", "list", "-v", qid).stdout
    assert re.search(r"^  1 <b@example\.net> held attempts=0 held_by=\d+ reroute=capture$", out, re.M), out

    # fail releases it; the scheduler fails it with a DSN
    out = sw.cli("queue", "fail", "%s:0" % qid).stdout
    assert out.startswith("1 recipient(s) marked to fail"), out
    wait_state(sw, qid, 0, "failed")
    r0 = sw.rcpt(qid, 0)
    assert r0.get("admin") == "fail" and "failed by administrator" in r0.get("last_reply", ""), r0
    assert 0 not in sw.captures(qid)

    sw.cli("queue", "release", "%s:1" % qid)
    sw.wait_captures(qid, 1)
    wait_state(sw, qid, 1, "delivered")


def test_reindexed_mail_is_held_by_rules(switchyard):
    """After Redis lost a node's queue (but not the shared rules), the
    start-up reconciliation re-indexes the spool and the rules hold again."""
    sw = switchyard()
    rid = rule_id(sw.cli("hold", "add", "--recipient", "again.example").stdout)
    qid = send(sw, "s@example.org", ["a@again.example", "b@other.example"])
    assert sw.rcpt(qid, 0).get("state") == "held"
    sw.stop()
    cur = "0"
    while True:
        cur, keys = sw.redis("SCAN", cur, "MATCH", sw.key("*"), "COUNT", 1000)
        if keys:
            sw.redis("DEL", *keys)
        if cur == "0":
            break
    assert sw.msg(qid) == {}
    sw.start()
    sylib.wait_for(lambda: sw.rcpt(qid, 0).get("state") == "held", 30, "%s:0 held again" % qid)
    assert sw.rcpt(qid, 0).get("held_by") == rid
    assert sw.rcpt(qid, 1).get("state") == "queued"
    assert "re-indexed from spool" in sw.log_text
