"""Lease safety of the scheduler (issue 3, review findings 1 and 2), against
a real SMTP server (aiosmtpd) that answers the final "." slowly:

- a worker that claimed a batch renews the lease right before each
  message's attempt, and one whose lease ran out finds the recipient taken
  (fenced claim token): no message is delivered twice although the batch
  takes longer than the lease;
- `queue hold` then `queue release` while a worker is in DATA does not make
  the recipient due before the lease ends, so a second worker cannot
  deliver it concurrently;
- delivery.lease shorter than a transport's longest attempt is refused at
  FILE:LINE by check-config.
"""
import json
import os
import re
import subprocess
import time

import pytest

import sylib
from sylib import queued_qid, simple_message

# A slow SMTP server: aiosmtpd (the sylib.PY interpreter has it), every
# DATA answered after --delay seconds; each message is appended as one JSON
# line (subject, recipients, start and end time) to --out. Prints "ready".
SLOWSINK = r'''
import argparse, asyncio, json, signal, sys, threading, time
from email.parser import BytesHeaderParser
from aiosmtpd.controller import Controller

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--delay", type=float, required=True)
a = ap.parse_args()
lock = threading.Lock()

class Handler:
    async def handle_DATA(self, server, session, envelope):
        t0 = time.time()
        subj = BytesHeaderParser().parsebytes(envelope.original_content or b"").get("Subject", "")
        with lock, open(a.out + ".start", "a") as f:
            f.write(json.dumps({"subject": subj, "rcpts": envelope.rcpt_tos, "t": t0}) + "\n")
        await asyncio.sleep(a.delay)
        with lock, open(a.out, "a") as f:
            f.write(json.dumps({"subject": subj, "rcpts": envelope.rcpt_tos, "start": t0,
                                "end": time.time()}) + "\n")
        return "250 2.0.0 Ok: queued"

c = Controller(Handler(), hostname="127.0.0.1", port=a.port, server_hostname="slow.test")
c.start()
print("ready", flush=True)
ev = threading.Event()
signal.signal(signal.SIGTERM, lambda *x: ev.set())
ev.wait()
c.stop()
'''


class SlowSink:
    def __init__(self, d, delay):
        self.dir = str(d)
        os.makedirs(self.dir, exist_ok=True)
        self.out = os.path.join(self.dir, "msgs.jsonl")
        script = os.path.join(self.dir, "slowsink.py")
        with open(script, "w") as f:
            f.write(SLOWSINK)
        self.port = sylib.free_port()
        self.proc = subprocess.Popen([sylib.PY, script, "--port", str(self.port), "--out", self.out,
                                      "--delay", str(delay)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=open(os.path.join(self.dir, "sink.log"), "w"),
                                     text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", "slow sink did not start: %r" % line

    def stop(self):
        sylib.stop_process(self.proc)

    def _lines(self, path):
        try:
            with open(path) as f:
                return [json.loads(l) for l in f if l.strip()]
        except OSError:
            return []

    def delivered(self):
        return self._lines(self.out)

    def started(self):
        return self._lines(self.out + ".start")


@pytest.fixture
def slowsink(workdir):
    made = []

    def factory(delay, name="slow"):
        s = SlowSink(os.path.join(workdir, name), delay)
        made.append(s)
        return s

    yield factory
    for s in made:
        s.stop()


def slow_transport(sink, data_done):
    """Short timeouts, so a short lease is allowed: the longest attempt is
    1+1+1+1+1+data_done+10 s."""
    return {"type": "smtp", "host": sylib.LOOPBACK, "port": sink.port, "tls": "none",
            "connect_timeout": "1s", "greeting_timeout": "1s", "command_timeout": "1s",
            "data_timeout": "1s", "data_block_timeout": "1s", "data_done_timeout": "%ds" % data_done}


def send(sw, subject, rcpt="bob@example.net"):
    with sw.lmtp() as c:
        r = c.transaction("alice@example.org", [rcpt], simple_message(subject))
        c.cmd("QUIT")
    assert all(x.code == 250 for x in r), r
    return queued_qid(r[0])


def wait_done(sw, qids, timeout):
    def done():
        return all(sw.msg(q).get("state") == "done" for q in qids)
    sylib.wait_for(done, timeout, "messages done; log:\n%s" % sw.log_tail())


def test_batch_longer_than_lease_never_delivers_twice(switchyard, slowsink):
    """One worker claims 12 messages at once; each takes 2.5 s at the slow
    server, 30 s in all, longer than the 20 s lease. Before the fix the
    second worker claimed the last messages when the batch's lease ran out
    and both workers delivered them. Now each message's lease is renewed
    right before its attempt, and a recipient claimed by the other worker
    meanwhile is skipped: every message arrives exactly once and counts one
    attempt."""
    sink = slowsink(2.5)
    over = {"delivery": {"workers": 0, "default_transport": "slow", "lease": "20s"},
            "transports": {"slow": slow_transport(sink, 5)}}
    sw = switchyard(overrides=over)
    subjects = ["lease-%02d" % i for i in range(12)]
    qids = [send(sw, s) for s in subjects]
    sw.stop()
    sw.config["delivery"]["workers"] = 2
    sw.write_config()
    sw.start()
    wait_done(sw, qids, 180)
    got = sorted(m["subject"] for m in sink.delivered())
    assert got == subjects, "each message exactly once: %r" % got
    for q in qids:
        r = sw.rcpt(q, 0)
        assert r["state"] == "delivered" and r.get("attempts") == "1", (q, r)
        assert "lease_ms" not in r, r
    # the batch really outlasted the lease: the last attempt started more
    # than 20 s after the first
    starts = sorted(m["start"] for m in sink.delivered())
    assert starts[-1] - starts[0] > 20, starts


def test_hold_release_during_attempt_waits_for_lease(switchyard, slowsink):
    """A recipient held while its worker is in DATA and released at once is
    due only when the lease ends (before the fix: at once, and the second
    worker delivered it concurrently). The first worker's result then
    stands: delivered once."""
    sink = slowsink(8)
    over = {"delivery": {"workers": 2, "default_transport": "slow", "lease": "25s"},
            "transports": {"slow": slow_transport(sink, 10)}}
    sw = switchyard(overrides=over)
    qid = send(sw, "held-in-data")
    sylib.wait_for(lambda: sink.started(), 60, "the attempt to reach DATA; log:\n%s" % sw.log_tail())
    # while leased, the schedule score is the lease end
    lease_end = int(float(sw.redis("ZSCORE", sw.key("sched"), "%s:0" % qid)))
    assert lease_end > int(time.time() * 1000), lease_end
    out = sw.cli("queue", "hold", "%s:0" % qid).stdout
    assert "1 recipient(s)" in out, out
    out = sw.cli("queue", "release", "%s:0" % qid).stdout
    assert out.startswith("1 recipient(s) released"), out
    score = sw.redis("ZSCORE", sw.key("sched"), "%s:0" % qid)
    # kick does not make it due either while the lease runs
    sw.cli("queue", "kick", "%s:0" % qid, check=False)
    score2 = sw.redis("ZSCORE", sw.key("sched"), "%s:0" % qid)
    wait_done(sw, [qid], 90)
    assert [m["subject"] for m in sink.delivered()] == ["held-in-data"], sink.delivered()
    assert len(sink.started()) == 1, sink.started()
    r = sw.rcpt(qid, 0)
    assert r["state"] == "delivered" and r.get("attempts") == "1", r
    assert "lease_ms" not in r, r
    # the release was due at the lease end, not at once (nor after kick)
    assert score is not None and int(float(score)) >= lease_end, (score, lease_end)
    assert score2 == score, (score, score2)


def test_lease_shorter_than_attempt_is_refused(switchyard, slowsink):
    """check-config names the file, line and key when delivery.lease cannot
    cover a transport's longest attempt; without a lease the default grows
    to fit (and serve starts)."""
    sink = slowsink(0)
    over = {"delivery": {"workers": 0, "default_transport": "slow", "lease": "20s"},
            "transports": {"slow": slow_transport(sink, 30)}}
    sw = switchyard(overrides=over, start=False)
    r = sw.cli("check-config", check=False)
    assert r.returncode != 0, r
    text = r.stdout + r.stderr
    assert re.search(r"switchyard\.yaml:\d+: delivery\.lease: lease \(20s\) is shorter than the longest "
                     r"attempt through transport slow \(", text), text
    del sw.config["delivery"]["lease"]
    sw.write_config()
    r = sw.cli("check-config", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    sw.start()
