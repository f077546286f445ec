"""`switchyard localserve`: private redis-server, LMTP, capture delivery with
simulated temporary and permanent failures; SIGTERM stops its Redis too."""
import os
import re
import signal
import subprocess
import time

import pytest

import sylib


class Localserve:
    def __init__(self, binary, state, log_path):
        self.bin, self.state, self.log_path = binary, state, log_path
        self.config_path = os.path.join(state, "switchyard.yaml")
        self.capture_dir = os.path.join(state, "capture")
        self.proc = None
        self.redis_pid = None
        h = sylib.run([binary, "localserve", "--help"], check=False)
        if "--lmtp-port" in h.stdout + h.stderr:
            self.port = sylib.free_port()
            self.args = ["--lmtp-port", str(self.port)]
        else:
            self.port = 2424
            self.args = []
            assert not sylib.port_open(2424), \
                "localserve has no --lmtp-port and 127.0.0.1:2424 is busy: cannot test it"

    def start(self):
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.bin, "localserve", "--state-dir", self.state] + self.args,
                                     stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                     start_new_session=True)
        logf.close()

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("localserve exited %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                with sylib.Lmtp((sylib.LOOPBACK, self.port), timeout=10) as c:
                    return c.greeting.code == 220
            except (OSError, sylib.Closed):
                return False
        sylib.wait_for(ready, sylib.START_TIMEOUT, "localserve LMTP on %d" % self.port)
        pidf = os.path.join(self.state, "redis.pid")

        def pid():
            try:
                with open(pidf) as f:
                    return int(f.read().strip() or 0)
            except (OSError, ValueError):
                return 0
        self.redis_pid = sylib.wait_for(pid, 30, pidf)

    def redis_is_ours(self):
        """The private redis-server is still alive (and really is it)."""
        p = self.redis_pid
        if not p or not sylib.pid_alive(p):
            return False
        try:
            with open("/proc/%d/cmdline" % p, "rb") as f:
                return self.state.encode() in f.read()
        except OSError:
            return False

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def show(self, qid):
        return sylib.run([self.bin, "queue", "show", "-c", self.config_path, qid]).stdout


@pytest.fixture
def localserve(switchyard_bin, workdir):
    ls = Localserve(switchyard_bin, os.path.join(workdir, "ls"), os.path.join(workdir, "localserve.log"))
    yield ls
    # clean up whatever a failed test left running (everything by PID)
    if ls.proc is not None and ls.proc.poll() is None:
        sylib.stop_process(ls.proc)
    if ls.redis_is_ours():
        os.kill(ls.redis_pid, signal.SIGKILL)
    rep = sylib.sanitizer_report(ls.log()) if os.path.exists(ls.log_path) else None
    if rep:
        pytest.fail("sanitizer report in %s:\n%s" % (ls.log_path, rep), pytrace=False)


RCPT_RE = r"rcpt (\d+): <([^>]*)> state=(\w+) attempts=(\d+)"


def test_localserve(localserve):
    ls = localserve
    ls.start()
    assert ls.redis_is_ours()
    tag = "ls%d" % time.time_ns()
    rcpts = ["user@example.net", "tempfail@example.net", "permfail@example.net"]
    p = sylib.run(["swaks", "--protocol", "LMTP", "--server", sylib.LOOPBACK, "--port", str(ls.port),
                   "--from", "sender@example.org", "--to", ",".join(rcpts),
                   "--helo", "client.example.org", "--add-header", "X-Test-Id: " + tag,
                   "--body", "hello localserve", "--timeout", "60"])
    got = re.findall(r"^<-\s+250 2\.0\.0 <([^>]*)> .*queued as ([A-Za-z0-9]+)", p.stdout, re.M)
    assert [a for a, _ in got] == rcpts, p.stdout
    qid = got[0][1]
    assert all(q == qid for _, q in got)

    # the normal recipient is captured, byte-exact message with its envelope
    eml = os.path.join(ls.capture_dir, "%s.0.eml" % qid)
    sylib.wait_for(lambda: os.path.exists(eml), 60, eml)
    with open(eml, "rb") as f:
        assert b"X-Test-Id: %s\r\n" % tag.encode() in f.read()
    assert os.path.exists(os.path.join(ls.capture_dir, "%s.0.json" % qid))

    def states():
        out = ls.show(qid)
        return {int(i): (a, st, int(n)) for i, a, st, n in re.findall(RCPT_RE, out)}

    def settled():
        s = states()
        return s if (len(s) == 3 and s[0][1] == "delivered" and s[1][2] >= 1
                     and s[2][1] == "failed") else None
    s = sylib.wait_for(settled, 120, "user delivered, tempfail attempted, permfail failed", interval=0.5)
    assert s[0][0] == "user@example.net"
    assert s[1] == ("tempfail@example.net", "queued", s[1][2]) and s[1][2] >= 1, s
    assert s[2][0] == "permfail@example.net" and s[2][1] == "failed", s
    assert not os.path.exists(os.path.join(ls.capture_dir, "%s.1.eml" % qid))
    assert not os.path.exists(os.path.join(ls.capture_dir, "%s.2.eml" % qid))

    # SIGTERM: clean exit, and the private redis-server goes too
    ls.proc.send_signal(signal.SIGTERM)
    assert ls.proc.wait(60) == 0, ls.log()[-4000:]
    sylib.wait_for(lambda: not ls.redis_is_ours(), 30, "localserve's redis-server to stop")
