"""sylib.py - helpers for the switchyard integration tests (real peers only).

Process control (everything started in its own process group, stopped by
PID), free loopback ports, a poll-loop wait, a tiny YAML writer (no PyYAML
dependency), a RESP client for redis-server on a UNIX socket, a byte-exact
LMTP client over raw sockets, and the classes behind the conftest.py
fixtures: RedisServer, Switchyard and PostfixInstance.

Nothing here talks to anything but 127.0.0.1 or UNIX sockets.
"""
import json
import os
import random
import re
import signal
import socket
import subprocess
import time

PY = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
PF_SCRIPT = os.path.join(HERE, "pf-instance.sh")
LOOPBACK = "127.0.0.1"
NODE = "testnode"
PREFIX = "sy"

# Generous: the suite runs under ASan on small, busy machines.
START_TIMEOUT = 60
REPLY_TIMEOUT = 60

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:", "UndefinedBehaviorSanitizer",
                     "ThreadSanitizer")


# --------------------------------------------------------------------------
# generic helpers

def wait_for(pred, timeout, what, interval=0.05):
    """Polls pred() until it returns a true value (returned); fails after timeout s."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= end:
            raise AssertionError("timeout after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


def pid_alive(pid):
    """True while pid exists and is not a zombie (PID 1 here reaps slowly)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return False
    # field 3, after the parenthesised comm (which may contain spaces)
    return st[st.rindex(")") + 2:].split()[0] != "Z"


def kill_group(proc, sig=signal.SIGKILL):
    """Signals proc's process group (started with start_new_session=True)."""
    if proc is None:
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_process(proc, timeout=30, sig=signal.SIGTERM):
    """sig to proc, wait, then SIGKILL its group. Returns the exit status."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            proc.wait(30)
    # anything the process left in its group goes too
    kill_group(proc)
    return proc.returncode


_ports_given = set()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A free TCP port on 127.0.0.1, below the ephemeral range (so no
    client connection can take it while a server is restarting), never
    handed out twice in one run."""
    hi = min(32000, _ephemeral_low())
    lo = 20000 if hi > 21000 else 10000
    for _ in range(1000):
        port = random.randrange(lo, hi)
        if port in _ports_given:
            continue
        with socket.socket() as s:
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                continue
        _ports_given.add(port)
        return port
    raise RuntimeError("no free port in %d..%d" % (lo, hi))


def port_open(port, host=LOOPBACK):
    try:
        socket.create_connection((host, port), 0.5).close()
        return True
    except OSError:
        return False


def run(argv, check=True, timeout=120, **kw):
    """subprocess.run with text output captured; a failure shows the output."""
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d\nstdout:\n%s\nstderr:\n%s"
                             % (" ".join(map(str, argv)), p.returncode, p.stdout, p.stderr))
    return p


# --------------------------------------------------------------------------
# YAML (block style; enough for switchyard's configuration)

_PLAIN = re.compile(r"^[A-Za-z0-9_/.@+-][A-Za-z0-9_/.:@+-]*$")
_NUMBERISH = re.compile(r"^[-+]?(\d[\d_]*)?(\.\d*)?([eE][-+]?\d+)?$|^0[xob]")
_SPECIAL = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _yaml_scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    s = str(v)
    if (_PLAIN.match(s) and not s.endswith(":") and not _NUMBERISH.match(s)
            and s.lower() not in _SPECIAL):
        return s
    return json.dumps(s)        # a JSON string is a valid YAML double-quoted scalar


def yaml_dump(obj):
    out = []

    def emit(o, ind):
        pad = " " * ind
        if isinstance(o, dict):
            for k, v in o.items():
                if isinstance(v, (dict, list)) and v:
                    out.append("%s%s:" % (pad, k))
                    emit(v, ind + 2)
                elif isinstance(v, dict):
                    out.append("%s%s: {}" % (pad, k))
                elif isinstance(v, list):
                    out.append("%s%s: []" % (pad, k))
                else:
                    out.append("%s%s: %s" % (pad, k, _yaml_scalar(v)))
        elif isinstance(o, list):
            for item in o:
                if isinstance(item, (dict, list)) and item:
                    start = len(out)
                    emit(item, ind + 2)
                    out[start] = pad + "- " + out[start][ind + 2:]
                else:
                    out.append("%s- %s" % (pad, _yaml_scalar(item)))
        else:
            out.append(pad + _yaml_scalar(o))

    emit(obj, 0)
    return "\n".join(out) + "\n"


def deep_merge(base, over):
    """A copy of base with over merged in (dicts merge, everything else replaces)."""
    r = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(r.get(k), dict):
            r[k] = deep_merge(r[k], v)
        else:
            r[k] = v
    return r


# --------------------------------------------------------------------------
# Redis (RESP2 over a UNIX socket)

class RespError(Exception):
    pass


class Resp:
    """Minimal blocking RESP2 client: r("HGETALL", key) -> decoded reply
    (bulk strings as str, decoded UTF-8 with surrogateescape)."""

    def __init__(self, path, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.f = self.sock.makefile("rb")

    def close(self):
        try:
            self.f.close()
        finally:
            self.sock.close()

    def __call__(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode("utf-8", "surrogateescape")
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(parts))
        return self._read()

    def _read(self):
        line = self.f.readline()
        if not line.endswith(b"\r\n"):
            raise RespError("connection closed by redis-server")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2].decode("utf-8", "surrogateescape")
        if t == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read() for _ in range(n)]
        raise RespError("bad RESP line %r" % line)


def redis_call(path, *args):
    r = Resp(path)
    try:
        return r(*args)
    finally:
        r.close()


class RedisServer:
    """A private redis-server on a UNIX socket, persistence off. stop() and
    start() keep the data by default (SAVE to DIR/dump.rdb just before the
    stop, loaded again at start), like a Redis restart in production."""

    def __init__(self, d):
        self.dir = str(d)
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(self.dir, "redis.sock")
        self.log = os.path.join(self.dir, "redis.log")
        self.proc = None
        self.paused = False

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "redis-server already running"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--bind", LOOPBACK,
             "--unixsocket", self.sock, "--unixsocketperm", "777",
             "--dir", self.dir, "--dbfilename", "dump.rdb",
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--logfile", self.log, "--pidfile", os.path.join(self.dir, "redis.pid")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited %s:\n%s" % (self.proc.returncode, self.log_text()))
            try:
                return redis_call(self.sock, "PING") == "PONG"
            except (OSError, RespError):
                return False
        wait_for(up, START_TIMEOUT, "redis-server on %s" % self.sock)

    def stop(self, keep_data=True):
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.paused:
            self.resume()
        if keep_data:
            redis_call(self.sock, "SAVE")
        stop_process(self.proc)
        wait_for(lambda: not os.path.exists(self.sock), 30, "redis socket removal")

    def pause(self):
        """SIGSTOP: Redis accepts nothing and answers nothing (a hung Redis)."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def __call__(self, *args):
        return redis_call(self.sock, *args)

    def cli(self, *args):
        return run(["redis-cli", "-s", self.sock] + [str(a) for a in args]).stdout

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


# --------------------------------------------------------------------------
# LMTP client: raw sockets, byte-exact

class Reply:
    def __init__(self, lines):
        self.lines = lines                      # decoded lines without CRLF
        self.code = int(lines[-1][:3])
        m = re.match(r"^\d{3}[ -](\d\.\d{1,3}\.\d{1,3})\b", lines[-1])
        self.enh = m.group(1) if m else ""
        self.text = "\n".join(lines)

    @property
    def last(self):
        return self.lines[-1]

    def is_(self, code, enh=None):
        return self.code == code and (enh is None or self.enh == enh)

    def __repr__(self):
        return "Reply(%r)" % self.text


class Closed(Exception):
    pass


class Lmtp:
    """LMTP client over TCP (("127.0.0.1", port)) or a UNIX socket (path).
    The greeting is read on connect (self.greeting)."""

    def __init__(self, addr, timeout=REPLY_TIMEOUT, read_greeting=True):
        if isinstance(addr, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(addr)
        self.buf = b""
        self.ext = []
        self.greeting = self.reply() if read_greeting else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed("connection closed by server (pending %r)" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        lines = []
        while True:
            ln = self._line()
            if not re.match(r"^\d{3}[ -]", ln) and not re.match(r"^\d{3}$", ln):
                raise AssertionError("malformed reply line %r (so far %r)" % (ln, lines))
            lines.append(ln)
            if len(ln) == 3 or ln[3] == " ":
                return Reply(lines)

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def cmd(self, line):
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.send(line + b"\r\n")
        return self.reply()

    def lhlo(self, name="client.example.org"):
        r = self.cmd("LHLO " + name)
        assert r.code == 250, r
        self.ext = [ln[4:] for ln in r.lines[1:]]
        return r

    def ext_names(self):
        return [e.split()[0].upper() for e in self.ext if e.strip()]

    def wait_closed(self, timeout=REPLY_TIMEOUT):
        """Reads until EOF; returns what was left unread (replies after the last one)."""
        self.sock.settimeout(timeout)
        rest = self.buf
        self.buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return rest
            if not chunk:
                return rest
            rest += chunk

    def data(self, message, expect):
        """DATA, the dot-stuffed message, the terminator; returns expect replies."""
        r = self.cmd("DATA")
        assert r.code == 354, r
        self.send(dot_stuff(message) + b".\r\n")
        return self.replies(expect)

    def transaction(self, sender, rcpts, message, mail_params="", rcpt_params=""):
        """A full transaction; asserts MAIL/RCPT/DATA succeed; returns the
        per-recipient replies after the final dot."""
        r = self.cmd(("MAIL FROM:<%s>%s" % (sender, " " + mail_params if mail_params else "")))
        assert r.is_(250, "2.1.0"), r
        for a in rcpts:
            r = self.cmd("RCPT TO:<%s>%s" % (a, " " + rcpt_params if rcpt_params else ""))
            assert r.is_(250, "2.1.5"), (a, r)
        return self.data(message, len(rcpts))


def dot_stuff(message):
    """RFC 5321 4.5.2 transparency; message must end with CRLF."""
    assert message.endswith(b"\r\n"), "message must end with CRLF"
    out = re.sub(rb"(^|\r\n)\.", rb"\1..", message)
    return out


QUEUED_RE = re.compile(r"^250 2\.0\.0 <([^>]*)> .*queued as ([A-Za-z0-9]+)")


def queued_qid(reply):
    """The QID from '250 2.0.0 <addr> Ok: queued as QID' (asserts the shape)."""
    m = QUEUED_RE.match(reply.last)
    assert m, "not a per-recipient 'queued as' reply: %r" % reply
    return m.group(2)


def simple_message(subject="test", body="hello\r\n", extra_headers=()):
    """A small CRLF message; its random Message-ID makes every call's bytes
    unique (switchyard drops a byte-identical retry as a duplicate)."""
    mid = "<%s.%d@test.example>" % (subject.replace(" ", "_"), random.randrange(1 << 40))
    hdr = ["From: <sender@example.org>", "To: <rcpt@example.net>",
           "Subject: " + subject, "Message-ID: " + mid]
    hdr.extend(extra_headers)
    return ("\r\n".join(hdr) + "\r\n\r\n" + body).encode("utf-8")


# --------------------------------------------------------------------------
# switchyard

def sanitizer_report(text):
    for m in SANITIZER_MARKERS:
        i = text.find(m)
        if i >= 0:
            return text[max(0, i - 2000):i + 6000]
    return None


class Switchyard:
    """One `switchyard serve` on its own directories (spool, capture,
    config, log) and the given RedisServer. start() waits until every
    listener answers 220; kill() is SIGKILL; start() again reuses the same
    spool, Redis and ports."""

    def __init__(self, binary, d, redis, overrides=None, port=None, unix=False,
                 trusted_port=False):
        self.bin = binary
        self.dir = str(d)
        os.makedirs(self.dir, exist_ok=True)
        self.redis = redis
        self.spool_dir = os.path.join(self.dir, "spool")
        self.capture_dir = os.path.join(self.dir, "capture")
        self.config_path = os.path.join(self.dir, "switchyard.yaml")
        self.log_path = os.path.join(self.dir, "switchyard.log")
        self.port = port or free_port()
        self.unix_sock = os.path.join(self.dir, "lmtp.sock") if unix else None
        self.trusted_port = free_port() if trusted_port else None
        self.proc = None
        self.exits = []             # (how, status) of every run that ended
        listeners = [{"name": "postfix", "address": "%s:%d" % (LOOPBACK, self.port)}]
        if self.unix_sock:
            listeners.append({"name": "sock", "address": "unix:" + self.unix_sock, "mode": "0666"})
        if self.trusted_port:
            listeners.append({"name": "trusted", "address": "%s:%d" % (LOOPBACK, self.trusted_port),
                              "trusted": True})
        self.config = {
            "node": NODE,
            "log": {"level": "info"},
            "redis": {"address": "unix:" + redis.sock, "prefix": PREFIX,
                      "command_timeout": "1s", "connect_timeout": "1s"},
            "spool": {"dir": self.spool_dir},
            "lmtp": {"listeners": listeners},
            "delivery": {"workers": 0},
            "capture": {"dir": self.capture_dir},
        }
        if overrides:
            self.config = deep_merge(self.config, overrides)
        self.write_config()

    # -- process
    def write_config(self):
        with open(self.config_path, "w") as f:
            f.write(yaml_dump(self.config))

    def _listeners(self):
        out = []
        for l in self.config["lmtp"]["listeners"]:
            a = l["address"]
            if a.startswith("unix:"):
                out.append(a[5:])
            else:
                host, port = a.rsplit(":", 1)
                out.append((host.strip("[]"), int(port)))
        return out

    def start(self, wait=True):
        assert self.proc is None or self.proc.poll() is not None, "switchyard already running"
        logf = open(self.log_path, "ab")
        logf.write(b"=== test harness: serve -c %s (start at %.3f)\n" % (self.config_path.encode(), time.time()))
        logf.flush()
        self.proc = subprocess.Popen([self.bin, "serve", "-c", self.config_path],
                                     stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                     start_new_session=True)
        logf.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        for addr in self._listeners():
            def ok(addr=addr):
                if self.proc.poll() is not None:
                    raise AssertionError("switchyard exited %s before it was ready; log:\n%s"
                                         % (self.proc.returncode, self.log_tail()))
                try:
                    with Lmtp(addr, timeout=10) as c:
                        assert c.greeting.code == 220, c.greeting
                        c.cmd("QUIT")
                    return True
                except (OSError, Closed):
                    return False
            wait_for(ok, timeout, "switchyard listener %s" % (addr,))

    def kill(self):
        """SIGKILL (a crash): no clean-up in the daemon."""
        if self.proc is not None and self.proc.poll() is None:
            kill_group(self.proc, signal.SIGKILL)
            self.proc.wait(30)
            self.exits.append(("SIGKILL", self.proc.returncode))

    def stop(self, timeout=30):
        """SIGTERM; returns the exit status (SIGKILL after timeout)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
            how = "SIGTERM"
        except subprocess.TimeoutExpired:
            how = "SIGTERM-timeout"
            kill_group(self.proc, signal.SIGKILL)
            self.proc.wait(30)
        kill_group(self.proc, signal.SIGKILL)
        self.exits.append((how, self.proc.returncode))
        return self.proc.returncode

    def restart(self):
        self.stop()
        return self.start()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- output
    @property
    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=60):
        return "\n".join(self.log_text.splitlines()[-n:])

    # -- clients
    def lmtp(self, which="tcp", lhlo=True):
        if which == "tcp":
            addr = (LOOPBACK, self.port)
        elif which == "trusted":
            addr = (LOOPBACK, self.trusted_port)
        elif which == "unix":
            addr = self.unix_sock
        else:
            addr = which
        c = Lmtp(addr)
        assert c.greeting.code == 220, c.greeting
        if lhlo:
            c.lhlo()
        return c

    def cli(self, *args, check=True, timeout=120):
        """switchyard SUBCOMMAND... -c CONFIG ARGS: e.g. cli("queue", "show", qid)."""
        args = [str(a) for a in args]
        n = 2 if args and args[0] == "queue" else 1
        argv = [self.bin] + args[:n] + ["-c", self.config_path] + args[n:]
        return run(argv, check=check, timeout=timeout)

    def redis_cli(self, *args):
        return self.redis.cli(*args)

    # -- state
    def key(self, *parts):
        return "%s:{%s}:%s" % (PREFIX, NODE, ":".join(str(p) for p in parts))

    def hgetall(self, key):
        flat = self.redis("HGETALL", key) or []
        return dict(zip(flat[0::2], flat[1::2]))

    def msg(self, qid):
        return self.hgetall(self.key("msg", qid))

    def rcpt(self, qid, idx):
        return self.hgetall(self.key("rcpt", qid, idx))

    def msg_qids(self):
        """Every QID that has a msg hash in Redis (SCAN, not KEYS)."""
        out, cur = [], "0"
        pat = self.key("msg", "*")
        while True:
            cur, keys = self.redis("SCAN", cur, "MATCH", pat, "COUNT", 1000)
            out.extend(k[len(self.key("msg", "")):] for k in keys)
            if cur == "0":
                return sorted(set(out))

    def all_msgs(self):
        """{qid: msg hash} for every message record, over one connection."""
        qids = self.msg_qids()
        r = Resp(self.redis.sock)
        try:
            out = {}
            for q in qids:
                flat = r("HGETALL", self.key("msg", q)) or []
                out[q] = dict(zip(flat[0::2], flat[1::2]))
            return out
        finally:
            r.close()

    def spool_q(self):
        d = os.path.join(self.spool_dir, "q")
        return sorted(f for f in os.listdir(d)) if os.path.isdir(d) else []

    def spool_tmp(self):
        d = os.path.join(self.spool_dir, "tmp")
        return sorted(f for f in os.listdir(d)) if os.path.isdir(d) else []

    def spool_bytes(self, qid):
        with open(os.path.join(self.spool_dir, "q", qid), "rb") as f:
            return f.read()

    def captures(self, qid):
        """{idx: eml bytes} of what the capture transport delivered for qid."""
        out = {}
        if not os.path.isdir(self.capture_dir):
            return out
        for f in os.listdir(self.capture_dir):
            m = re.match(r"^%s\.(\d+)\.eml$" % re.escape(qid), f)
            if m:
                with open(os.path.join(self.capture_dir, f), "rb") as fh:
                    out[int(m.group(1))] = fh.read()
        return out

    def wait_captures(self, qid, n, timeout=60):
        return wait_for(lambda: (lambda c: c if len(c) >= n else None)(self.captures(qid)),
                        timeout, "%d capture file(s) for %s" % (n, qid))


def serve_expect_exit(binary, config_path, timeout=30):
    """Runs `serve -c config_path` that is expected to exit by itself;
    returns (status, output). Killed (and reported as None) if it does not."""
    p = subprocess.Popen([binary, "serve", "-c", config_path], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        kill_group(p)
        out, _ = p.communicate(timeout=30)
        return None, out.decode("utf-8", "replace")


# --------------------------------------------------------------------------
# Postfix

class PostfixInstance:
    """A private Postfix (pf-instance.sh) whose default and relay transport
    is lmtp:inet:127.0.0.1:<lmtp_port>; maillog in DIR/log/maillog."""

    def __init__(self, d, lmtp_port=None, smtpd_port=None):
        self.dir = str(d)
        self.etc = os.path.join(self.dir, "etc")
        self.maillog = os.path.join(self.dir, "log", "maillog")
        self.lmtp_port = lmtp_port or free_port()
        self.smtpd_port = smtpd_port or free_port()
        self.mark_pos = 0

    def _sh(self, *args, env=None, timeout=120):
        e = dict(os.environ)
        if env:
            e.update(env)
        return run([PF_SCRIPT] + [str(a) for a in args], env=e, timeout=timeout)

    def init(self):
        self._sh("init", self.dir,
                 env={"PF_SMTPD_PORT": str(self.smtpd_port),
                      "PF_LMTP_NEXTHOP": "inet:%s:%d" % (LOOPBACK, self.lmtp_port)})

    def start(self):
        self._sh("start", self.dir)
        wait_for(lambda: port_open(self.smtpd_port), START_TIMEOUT, "Postfix smtpd on %d" % self.smtpd_port)

    def stop(self):
        self._sh("stop", self.dir)

    def postconf(self, *kv):
        for x in kv:
            run(["postconf", "-c", self.etc, "-e", x])

    def reload(self):
        run(["postfix", "-c", self.etc, "reload"])

    def flush(self):
        run(["postqueue", "-c", self.etc, "-f"], check=False)

    def clear(self):
        run(["postsuper", "-c", self.etc, "-d", "ALL"], check=False)

    def queue(self):
        """The queued messages (postqueue -j), as dicts."""
        out = run(["postqueue", "-c", self.etc, "-j"], check=False).stdout
        return [json.loads(l) for l in out.splitlines() if l.strip()]

    def wait_empty(self, timeout=120, flush_every=None):
        end = time.monotonic() + timeout
        last_flush = time.monotonic()
        while True:
            q = self.queue()
            if not q:
                return
            if time.monotonic() >= end:
                raise AssertionError("Postfix queue not empty after %ss: %d message(s), first: %s"
                                     % (timeout, len(q), json.dumps(q[0])[:2000]))
            if flush_every and time.monotonic() - last_flush >= flush_every:
                self.flush()
                last_flush = time.monotonic()
            time.sleep(0.2)

    def mark(self):
        """Later log reads and waits look only at lines logged from now on."""
        try:
            self.mark_pos = os.path.getsize(self.maillog)
        except OSError:
            self.mark_pos = 0

    def log(self):
        try:
            with open(self.maillog, "rb") as f:
                f.seek(self.mark_pos)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_lines(self, regex):
        rx = re.compile(regex)
        return [l for l in self.log().splitlines() if rx.search(l)]

    def wait_log(self, regex, timeout=60, count=1):
        """Waits until count lines (since mark()) match regex; returns them."""
        return wait_for(lambda: (lambda ls: ls if len(ls) >= count else None)(self.log_lines(regex)),
                        timeout, "%d maillog line(s) matching /%s/ in %s" % (count, regex, self.maillog),
                        interval=0.1)

    def swaks(self, sender, rcpts, headers=(), body="hello from swaks", extra=()):
        """swaks into Postfix's smtpd; returns the Postfix queue id."""
        argv = ["swaks", "--server", LOOPBACK, "--port", str(self.smtpd_port),
                "--from", sender, "--to", ",".join(rcpts), "--helo", "client.example.org",
                "--body", body, "--timeout", "60"]
        for h in headers:
            argv += ["--header", h]   # replaces a header of the same name
        argv += list(extra)
        p = run(argv)
        m = re.findall(r"^<-\s+250 2\.0\.0 Ok: queued as (\w+)", p.stdout, re.M)
        assert m, "no 'queued as' in swaks output:\n" + p.stdout
        return m[-1]
