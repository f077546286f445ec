"""The scheduler against real peers: Postfix's smtp-sink (with its failure
injection) and the capture transport. Routes chosen per attempt, retries
with the transport's own schedule, DSNs parsed back with the email
package, the attempt history in `queue show`, and a SIGKILL during
delivery (the lease brings the recipient back, nothing is lost)."""
import email
import email.policy
import glob
import json
import os
import shutil
import subprocess
import time

import pytest

import sylib
from sylib import queued_qid, simple_message

SINK = "/usr/sbin/smtp-sink"


class SmtpSink:
    """smtp-sink on a free loopback port, dumping each transaction to a file
    under DIR/dump/. extra: failure injection (e.g. ["-r", "RCPT"])."""

    def __init__(self, d, extra=()):
        self.dir = str(d)
        self.dump = os.path.join(self.dir, "dump")
        os.makedirs(self.dump, exist_ok=True)
        os.chmod(self.dir, 0o755)
        os.chmod(self.dump, 0o777)
        self.port = sylib.free_port()
        argv = [SINK, "-u", "nobody", "-h", "sink.test", "-d", self.dump + "/%M.", "-t", "300"]
        argv += list(extra) + ["%s:%d" % (sylib.LOOPBACK, self.port), "64"]
        self.log = open(os.path.join(self.dir, "sink.log"), "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        sylib.wait_for(lambda: sylib.port_open(self.port), 30, "smtp-sink on %d" % self.port)

    def stop(self):
        sylib.stop_process(self.proc)
        self.log.close()

    def dumps(self):
        """Every dumped transaction's text, in file-name order."""
        out = []
        for f in sorted(glob.glob(os.path.join(self.dump, "*"))):
            with open(f, "rb") as fh:
                out.append(fh.read().decode("utf-8", "replace"))
        return out

    def dumps_with(self, needle):
        return [t for t in self.dumps() if needle in t]


@pytest.fixture
def sinks(workdir):
    made = []

    def factory(name, extra=()):
        s = SmtpSink(os.path.join(workdir, name), extra)
        made.append(s)
        return s

    yield factory
    for s in made:
        s.stop()


def smtp_transport(sink, **kw):
    t = {"type": "smtp", "host": sylib.LOOPBACK, "port": sink.port, "tls": "none"}
    t.update(kw)
    return t


def send(sw, sender, rcpts, subject, rcpt_params=""):
    with sw.lmtp() as c:
        r = c.transaction(sender, rcpts, simple_message(subject), rcpt_params=rcpt_params)
        c.cmd("QUIT")
    assert all(x.code == 250 for x in r), r
    return queued_qid(r[0])


def wait_done(sw, qid, timeout=90):
    sylib.wait_for(lambda: sw.msg(qid).get("state") == "done", timeout,
                   "%s done; log:\n%s" % (qid, sw.log_tail()))


def capture_json(sw, qid, idx):
    with open(os.path.join(sw.capture_dir, "%s.%d.json" % (qid, idx))) as f:
        return json.load(f)


def dsn_qids(sw):
    """Queue ids of captured messages sent with the null sender (DSNs)."""
    out = []
    for f in sorted(glob.glob(os.path.join(sw.capture_dir, "*.json"))):
        # capture writes the .json, then the .eml: only a complete delivery counts
        if not os.path.exists(f[:-len(".json")] + ".eml"):
            continue
        with open(f) as fh:
            j = json.load(fh)
        if j["sender"] == "" and j["listener"] == "dsn":
            out.append(j["qid"])
    return out


def parse_dsn(raw):
    """(message, [per-recipient field dicts], per-message dict) of a DSN."""
    m = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert m.get_content_type() == "multipart/report", m.get_content_type()
    assert m.get_param("report-type") == "delivery-status"
    parts = m.get_payload()
    ds = [p for p in parts if p.get_content_type() == "message/delivery-status"]
    assert len(ds) == 1, [p.get_content_type() for p in parts]
    blocks = ds[0].get_payload()
    fields = [dict((k.lower(), v) for k, v in b.items()) for b in blocks]
    return m, fields[1:], fields[0]


# ---------------------------------------------------------------------------


def test_permanent_failure_dsn(switchyard):
    """capture: one recipient fails for good, one is delivered; the sender
    gets one DSN naming the failed one, with the remote reply."""
    sw = switchyard(overrides={"delivery": {"workers": 2}, "lmtp": {"hostname": "gw.test"}})
    qid = send(sw, "alice@example.org", ["permfail@example.net", "bob@example.net"], "bounce me")
    wait_done(sw, qid)
    assert sw.rcpt(qid, 0)["state"] == "failed"
    assert sw.rcpt(qid, 1)["state"] == "delivered"
    sylib.wait_for(lambda: dsn_qids(sw), 60, "a DSN in the capture directory")
    dq = dsn_qids(sw)
    assert len(dq) == 1, dq
    j = capture_json(sw, dq[0], 0)
    assert j["recipient"] == "alice@example.org"
    assert j["sender"] == ""
    raw = sw.captures(dq[0])[0]
    m, rcpts, permsg = parse_dsn(raw)
    assert m["From"].startswith("MAILER-DAEMON@gw.test") or "MAILER-DAEMON@gw.test" in m["From"]
    assert "alice@example.org" in m["To"]
    assert permsg["reporting-mta"] == "dns; gw.test"
    assert "arrival-date" in permsg
    assert len(rcpts) == 1, rcpts
    r = rcpts[0]
    assert r["action"] == "failed"
    assert r["status"] == "5.1.1"
    assert r["final-recipient"].replace(" ", "") == "rfc822;permfail@example.net"
    assert r["diagnostic-code"].startswith("smtp; 550 5.1.1"), r
    # RET defaults to headers: the original header section comes back
    types = [p.get_content_type() for p in m.get_payload()]
    assert types[2] == "text/rfc822-headers", types
    assert "Subject: bounce me" in m.get_payload()[2].get_payload()
    # a DSN never gets a DSN: its own recipient is delivered, state done
    wait_done(sw, dq[0])


def test_dsn_notify_never_and_success(switchyard):
    """NOTIFY=NEVER: no DSN for a failure; NOTIFY=SUCCESS: a "delivered"
    DSN for capture's final delivery."""
    sw = switchyard(overrides={"delivery": {"workers": 1}})
    q1 = send(sw, "a@example.org", ["permfail@example.net"], "never", rcpt_params="NOTIFY=NEVER")
    wait_done(sw, q1)
    q2 = send(sw, "a@example.org", ["c@example.net"], "success", rcpt_params="NOTIFY=SUCCESS")
    wait_done(sw, q2)
    sylib.wait_for(lambda: dsn_qids(sw), 60, "a DSN")
    time.sleep(1)
    dq = dsn_qids(sw)
    assert len(dq) == 1, dq
    _, rcpts, _ = parse_dsn(sw.captures(dq[0])[0])
    assert [r["action"] for r in rcpts] == ["delivered"]
    assert rcpts[0]["final-recipient"].replace(" ", "") == "rfc822;c@example.net"


def test_delay_dsn_once(switchyard):
    """A recipient that keeps failing temporarily gets one "delayed" DSN
    after delivery.delay_warning, and only one."""
    sw = switchyard(overrides={"delivery": {"workers": 1, "retry_first": "1s", "retry_max": "1s",
                                            "delay_warning": "2s"}})
    qid = send(sw, "a@example.org", ["tempfail@example.net"], "slow")
    sylib.wait_for(lambda: dsn_qids(sw), 60, "a delay DSN")
    # several more attempts: still one DSN
    sylib.wait_for(lambda: int(sw.rcpt(qid, 0).get("attempts", 0)) >= 6, 60, "6 attempts")
    dq = dsn_qids(sw)
    assert len(dq) == 1, dq
    _, rcpts, _ = parse_dsn(sw.captures(dq[0])[0])
    assert rcpts[0]["action"] == "delayed"
    assert rcpts[0]["status"].startswith("4.")
    assert "will-retry-until" in rcpts[0]
    assert sw.rcpt(qid, 0).get("delay_sent") == "1"


def test_retry_then_route_to_good_sink(switchyard, sinks):
    """The first two attempts go to a sink answering 4xx (route default),
    later ones by a min_attempts rule to a sink that accepts; the retry
    schedule is the transport's own; the history shows every attempt."""
    bad = sinks("bad", ["-r", "RCPT"])
    good = sinks("good")
    sw = switchyard(overrides={
        "delivery": {"workers": 2, "default_transport": "flaky"},
        "transports": {"flaky": smtp_transport(bad, retry={"first": "1s", "max": "1s"}),
                       "good": smtp_transport(good)},
        "routes": {"global": [{"match": {"min_attempts": 2}, "transport": "good"}]},
    })
    qid = send(sw, "s@example.org", ["r1@example.net", "r2@example.net"], "retry-route")
    wait_done(sw, qid)
    for i in range(2):
        r = sw.rcpt(qid, i)
        assert r["state"] == "delivered", r
        assert r["attempts"] == "3", r
        assert r["transport"] == "good", r
    assert not bad.dumps_with("retry-route")
    # one SMTP transaction for both recipients of the message
    got = good.dumps_with("retry-route")
    assert len(got) == 1, got
    assert "r1@example.net" in got[0] and "r2@example.net" in got[0]
    hist = sw.redis("LRANGE", sw.key("hist", qid, 0), 0, -1)
    assert len(hist) == 3, hist
    fields = [h.split("\t") for h in hist]
    assert [f[2] for f in fields] == ["deferred", "deferred", "delivered"], fields
    assert [f[3] for f in fields] == ["flaky", "flaky", "good"], fields
    assert [f[4] for f in fields] == ["none", "none", "global[0]"], fields
    assert fields[0][8].startswith("450 4.3.0"), fields
    # the transport's retry.first (1s), not delivery's 5 minutes
    assert int(fields[1][0]) - int(fields[0][0]) < 10000, fields
    out = sw.cli("queue", "show", qid).stdout
    assert out.count("    attempt ") == 6, out
    assert "transport=good route=global[0]" in out, out
    assert 'reply="450 4.3.0' in out, out


def test_routes_by_sender_and_recipient_domain(switchyard, sinks):
    a = sinks("a")
    b = sinks("b")
    sw = switchyard(overrides={
        "delivery": {"workers": 2},
        "transports": {"sink_a": smtp_transport(a), "sink_b": smtp_transport(b)},
        "routes": {"sender_domains": {"a.example": [{"transport": "sink_a"}]},
                   "global": [{"match": {"recipient_domains": [".b.example"]}, "transport": "sink_b"}]},
    })
    q1 = send(sw, "x@a.example", ["y@b.example", "z@other.example"], "from-a")
    q2 = send(sw, "x@c.example", ["y@mx.b.example", "z@other.example"], "from-c")
    for q in (q1, q2):
        wait_done(sw, q)
    # sender domain a.example: everything by sink_a (its scope wins over global)
    assert len(a.dumps_with("from-a")) == 1
    assert not b.dumps_with("from-a")
    assert sw.rcpt(q1, 0)["transport"] == "sink_a" and sw.rcpt(q1, 1)["transport"] == "sink_a"
    # other senders: .b.example by sink_b, the rest by the default (capture)
    assert len(b.dumps_with("from-c")) == 1 and "y@mx.b.example" in b.dumps_with("from-c")[0]
    assert "z@other.example" not in b.dumps_with("from-c")[0]
    assert sw.rcpt(q2, 0)["transport"] == "sink_b"
    assert sw.rcpt(q2, 1)["transport"] == "capture"
    assert 1 in sw.captures(q2)


def test_smtp_permanent_failure_dsn(switchyard, sinks):
    """A sink rejecting RCPT with 5xx: the DSN (delivered by capture to the
    sender) carries the sink's reply and names it as Remote-MTA."""
    rej = sinks("rej", ["-f", "RCPT"])
    sw = switchyard(overrides={
        "delivery": {"workers": 1},
        "transports": {"rej": smtp_transport(rej)},
        "routes": {"global": [{"match": {"recipient_domains": ["bad.example"]}, "transport": "rej"}]},
    })
    qid = send(sw, "s@example.org", ["u@bad.example"], "rejected")
    wait_done(sw, qid)
    sylib.wait_for(lambda: dsn_qids(sw), 60, "a DSN")
    _, rcpts, _ = parse_dsn(sw.captures(dsn_qids(sw)[0])[0])
    assert rcpts[0]["action"] == "failed"
    assert rcpts[0]["status"] == "5.3.0", rcpts
    assert rcpts[0]["diagnostic-code"].startswith("smtp; 500 5.3.0"), rcpts
    assert "127.0.0.1" in rcpts[0].get("remote-mta", ""), rcpts


def test_postfix_lmtp_to_sink(postfix, switchyard, sinks):
    """End to end: Postfix -> LMTP -> switchyard -> smtp-sink."""
    s = sinks("pfsink")
    sw = switchyard(port=postfix.lmtp_port, overrides={
        "delivery": {"workers": 2, "default_transport": "out"},
        "transports": {"out": smtp_transport(s)},
    })
    tag = "e2e%d" % time.time_ns()
    postfix.swaks("s@example.org", ["%s-1@example.net" % tag, "%s-2@example.net" % tag],
                  headers=["Subject: %s" % tag])
    postfix.wait_log(r"to=<%s-\d@example\.net>.*status=sent" % tag, count=2)
    postfix.wait_empty()
    got = sylib.wait_for(lambda: s.dumps_with(tag), 60, "the message at the sink")
    assert len(got) == 1, got
    assert "%s-1@example.net" % tag in got[0] and "%s-2@example.net" % tag in got[0]
    sylib.wait_for(lambda: all(m.get("state") == "done" for m in sw.all_msgs().values()), 60, "done")


def test_sigkill_during_delivery(switchyard, sinks):
    """SIGKILL while the sink holds the DATA reply: after a restart the
    lease runs out, the recipient comes back and is delivered; nothing is
    lost."""
    slow = sinks("slow", ["-w", "6"])
    # delivery.lease must cover the transport's longest attempt (config.c):
    # 1+1+1+10+1+2 s of timeouts + 10 s waiting for a connection = 26 s
    # (-w delays the reply to DATA: data_timeout covers it)
    sw = switchyard(overrides={
        "delivery": {"workers": 1, "lease": "26s", "default_transport": "slow",
                     "retry_first": "1s"},
        "transports": {"slow": smtp_transport(slow, connect_timeout="1s", greeting_timeout="1s",
                                              command_timeout="1s", data_timeout="10s",
                                              data_block_timeout="1s", data_done_timeout="2s")},
    })
    qid = send(sw, "s@example.org", ["k@example.net"], "killed")
    # the worker is inside the transaction (the sink waits before its DATA reply)
    sylib.wait_for(lambda: sw.redis("ZSCORE", sw.key("sched"), "%s:0" % qid) is not None and
                   float(sw.redis("ZSCORE", sw.key("sched"), "%s:0" % qid)) > time.time() * 1000 + 3000,
                   30, "the recipient leased")
    time.sleep(1)
    sw.kill()
    assert qid in sw.spool_q()
    assert sw.rcpt(qid, 0)["state"] == "queued"
    t0 = time.monotonic()
    sw.start()
    wait_done(sw, qid, timeout=120)
    # not before the lease ran out (26 s from the claim)
    assert time.monotonic() - t0 > 3
    assert sw.rcpt(qid, 0)["state"] == "delivered"
    assert qid not in sw.spool_q()
    assert len(slow.dumps_with("killed")) >= 1


def test_futurerelease_no_attempt_before(switchyard):
    """HOLDFOR (RFC 4865): no attempt before the release time, then
    delivery; expiry and the history start from there."""
    sw = switchyard(overrides={"delivery": {"workers": 2}})
    t0 = time.time()
    with sw.lmtp() as c:
        r = c.transaction("a@example.org", ["later@example.net"], simple_message("held-for"),
                          mail_params="HOLDFOR=4")
        c.cmd("QUIT")
    qid = queued_qid(r[0])
    time.sleep(2)
    assert sw.captures(qid) == {}
    assert sw.rcpt(qid, 0).get("attempts") is None, sw.rcpt(qid, 0)
    hold_until = int(sw.msg(qid)["hold_until"])
    assert hold_until >= int(t0) + 4
    wait_done(sw, qid, timeout=60)
    # the attempt (history time) is not before the release time
    at_ms = int(sw.redis("LRANGE", sw.key("hist", qid, 0), 0, 0)[0].split("\t")[0])
    assert at_ms >= hold_until * 1000, (at_ms, hold_until)
    assert sw.rcpt(qid, 0)["state"] == "delivered"
    assert sw.rcpt(qid, 0)["attempts"] == "1"


def test_relayed_dsn_for_next_hop_without_dsn(switchyard, sinks):
    """NOTIFY=SUCCESS to a next hop that lacks the DSN extension: the sender
    gets a "relayed" DSN (RFC 3461 §4.2)."""
    nodsn = sinks("nodsn", ["-N"])
    sw = switchyard(overrides={
        "delivery": {"workers": 1},
        "transports": {"nodsn": smtp_transport(nodsn)},
        "routes": {"global": [{"match": {"recipient_domains": ["far.example"]}, "transport": "nodsn"}]},
    })
    qid = send(sw, "s@example.org", ["u@far.example"], "relayed", rcpt_params="NOTIFY=SUCCESS")
    wait_done(sw, qid)
    assert len(nodsn.dumps_with("relayed")) == 1
    sylib.wait_for(lambda: dsn_qids(sw), 60, "a relayed DSN")
    _, rcpts, _ = parse_dsn(sw.captures(dsn_qids(sw)[0])[0])
    assert [r["action"] for r in rcpts] == ["relayed"], rcpts
    assert rcpts[0]["status"].startswith("2."), rcpts


def test_capture_slots_not_counted(switchyard):
    """A capture transport with max_connections 1 and four workers: every
    message is delivered, and an attempt that found no free slot is not
    counted (each recipient shows exactly one attempt)."""
    sw = switchyard(overrides={
        "delivery": {"workers": 4, "default_transport": "one"},
        "transports": {"one": {"type": "capture", "max_connections": 1}},
    })
    qids = []
    with sw.lmtp() as c:
        for i in range(12):
            r = c.transaction("a@example.org", ["r%d@example.net" % i], simple_message("slot-%d" % i))
            qids.append(queued_qid(r[0]))
        c.cmd("QUIT")
    for q in qids:
        wait_done(sw, q)
        assert sw.rcpt(q, 0)["attempts"] == "1", sw.rcpt(q, 0)
        assert len(sw.redis("LRANGE", sw.key("hist", q, 0), 0, -1)) == 1


def test_expiry_fails_with_dsn(switchyard):
    """A recipient that only ever fails temporarily fails at expiry (the
    shortest allowed: 1 minute) with a "failed" DSN carrying the last 4xx
    reply; a permanent status is not invented."""
    sw = switchyard(overrides={"delivery": {"workers": 1, "retry_first": "2s", "retry_max": "5s",
                                            "expiry": "1m", "delay_warning": "0"}})
    t0 = time.time()
    qid = send(sw, "a@example.org", ["tempfail@example.net"], "expires")
    wait_done(sw, qid, timeout=150)
    assert time.time() - t0 >= 55
    r = sw.rcpt(qid, 0)
    assert r["state"] == "failed", r
    sylib.wait_for(lambda: dsn_qids(sw), 60, "the expiry DSN")
    dq = dsn_qids(sw)
    assert len(dq) == 1, dq      # delay_warning 0: no delayed DSN before it
    _, rcpts, _ = parse_dsn(sw.captures(dq[0])[0])
    assert rcpts[0]["action"] == "failed"
    assert rcpts[0]["status"] == "4.2.0", rcpts
    assert "451 4.2.0" in rcpts[0]["diagnostic-code"], rcpts
    last = sw.redis("LRANGE", sw.key("hist", qid, 0), -1, -1)[0].split("\t")
    assert last[2] == "failed" and "expired" in last[8], last
