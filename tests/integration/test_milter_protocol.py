"""test_milter_protocol.py - the capture milter driven by miltertest (Lua)
and by a raw milter-protocol client (QUIT_NC), with no MTA in between.

miltertest negotiates as Sendmail does (every step and action offered);
milter_protocol.lua runs the protocol cases, then this file checks what
the capture transport delivered, byte for byte.
"""
import glob
import json
import os
import re
import signal
import socket
import stat
import struct
import time

import pytest

import sylib

HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, "milter_protocol.lua")


def milter_overrides(port, **listener):
    l = {"name": "mt", "address": "inet:%d@127.0.0.1" % port, "mode": "capture"}
    l.update(listener)
    return {"milter": {"listeners": [l]},
            "delivery": {"workers": 2, "default_transport": "capture"}}


def start_milter(switchyard, port, extra=None, **listener):
    sw = switchyard(overrides=sylib.deep_merge(milter_overrides(port, **listener), extra or {}))
    sylib.wait_for(lambda: sylib.port_open(port), 30, "milter port %d" % port)
    return sw


def delivered(sw):
    """{recipient: [(json, eml bytes)]} of every capture file."""
    out = {}
    for f in sorted(glob.glob(os.path.join(sw.capture_dir, "*.json"))):
        # the capture transport writes the .json first: a delivery counts
        # once its .eml is there
        if not os.path.exists(f[:-5] + ".eml"):
            continue
        with open(f) as fh:
            j = json.load(fh)
        with open(f[:-5] + ".eml", "rb") as fh:
            out.setdefault(j["recipient"], []).append((j, fh.read()))
    return out


def strip_trace(eml):
    """(our Received field, the rest): the capture path adds a Received
    field for the client -> MTA hop when the MTA passed none."""
    assert eml.startswith(b"Received: from "), eml[:300]
    i = 0
    while True:
        j = eml.index(b"\r\n", i)
        if eml[j + 2:j + 3] not in (b" ", b"\t"):
            return eml[:j + 2], eml[j + 2:]
        i = j + 2


def wait_delivered(sw, rcpts, timeout=60):
    return sylib.wait_for(lambda: (lambda d: d if all(r in d for r in rcpts) else None)(delivered(sw)),
                          timeout, "capture files for %s; log:\n%s" % (rcpts, sw.log_tail()))


def test_miltertest_protocol_cases(switchyard, free_port):
    port = free_port()
    sw = start_milter(switchyard, port)
    p = sylib.run(["miltertest", "-D", "SOCK=inet:%d@127.0.0.1" % port, "-s", LUA],
                  check=False, timeout=180)
    assert p.returncode == 0 and "all passed" in p.stdout, \
        "miltertest failed:\n%s\n%s\nswitchyard log:\n%s" % (p.stdout, p.stderr, sw.log_tail())

    rcpts = ["after-abort@example.net", "second@example.net", "nomacros@example.net",
             "headers1000@example.net", "chunks@example.net", "dotlf@example.net"]
    d = wait_delivered(sw, rcpts)
    for r in rcpts:
        assert len(d[r]) == 1, "%s delivered %d times" % (r, len(d[r]))
        j, eml = d[r][0]
        assert j["listener"] == "mt"
        assert j["sender"] == "sender@example.org"
    # Nothing from aborted or refused messages, no recipient leaked into the
    # next message's envelope.
    for r in ("abort1@example.net", "headers1001@example.net"):
        assert r not in d, "%s must not be delivered" % r
    qids = {}
    for r in rcpts:
        j = d[r][0][0]
        qids.setdefault(j["qid"], []).append(r)
    assert all(len(v) == 1 for v in qids.values()), qids

    j, eml = d["after-abort@example.net"][0]
    trace = strip_trace(eml)[0]
    assert re.match(rb"Received: from client\.example \(127\.0\.0\.1\)\r\n\tby mta\.example "
                    rb"\(switchyard milter mt\) id QAFTER1;\r\n\t\w\w\w, \d\d \w\w\w \d{4} "
                    rb"\d\d:\d\d:\d\d \+0000\r\n$", trace), trace
    # no {client_addr}, no {j}, no {i}: the node's name, no id clause
    assert re.match(rb"Received: from \S+ \(unknown\)\r\n\tby testnode \(switchyard milter mt\);\r\n",
                    strip_trace(d["nomacros@example.net"][0][1])[0])
    assert strip_trace(eml)[1] == b"Subject: after abort\r\nMessage-ID: <after-abort@example.org>\r\n\r\nsecond message\r\n"
    assert b"never stored" not in eml
    assert j["message_id"] == "<after-abort@example.org>"
    assert j["client_addr"] == "127.0.0.1" and j["client_name"] == "client.example"

    j, eml = d["nomacros@example.net"][0]
    assert strip_trace(eml)[1] == b"Subject: no macros\r\n\r\nno macros\r\n"

    _, eml = d["headers1000@example.net"][0]
    exp = b"Subject:  two spaces, then\r\n\tfolded\r\nX-No-Space: value\r\n"
    exp += b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(3, 1001))
    exp += b"\r\nmany headers\r\n"
    assert strip_trace(eml)[1] == exp

    _, eml = d["chunks@example.net"][0]
    assert strip_trace(eml)[1] == b"Subject: chunks\r\n\r\n" + b"".join(b"line %d\r\n" % i for i in range(1, 3001))

    _, eml = d["dotlf@example.net"][0]
    assert strip_trace(eml)[1] == (b"Subject: dot and LF\r\n\r\nbefore\r\n.\r\nafter dot\r\nbare lf\r\n"
                   b"split crlf\r\n.\r\nend\r\n")

    # mta_qid and the account come from the macros
    log = sw.log_text
    assert "mta_qid=QAFTER1" in log
    assert "mta_qid=QABORT1" not in log.replace("mta_qid=QAFTER1", "")


# --------------------------------------------------------------------------
# A raw milter client (the MTA side of the protocol) for what miltertest
# cannot send: SMFIC_QUIT_NC, connection reuse for a new SMTP session.

SMFI_V6 = 6


class RawMilter:
    def __init__(self, port):
        if isinstance(port, str):
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.settimeout(30)
            self.s.connect(port)
        else:
            self.s = socket.create_connection(("127.0.0.1", port), timeout=30)

    def send(self, cmd, data=b""):
        self.s.sendall(struct.pack(">I", len(data) + 1) + cmd + data)

    def recv(self):
        hdr = self._read(4)
        n = struct.unpack(">I", hdr)[0]
        body = self._read(n)
        return body[:1], body[1:]

    def _read(self, n):
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                raise EOFError("milter closed the connection")
            b += c
        return b

    def negotiate(self):
        # all actions (0x1ff), all protocol steps and flags Postfix offers
        self.send(b"O", struct.pack(">III", SMFI_V6, 0x1ff, 0x1fffff))
        cmd, data = self.recv()
        assert cmd == b"O", cmd
        return struct.unpack(">III", data[:12])

    def macro(self, for_cmd, **kv):
        data = for_cmd
        for k, v in kv.items():
            data += k.encode() + b"\0" + v.encode() + b"\0"
        self.send(b"D", data)

    def connect(self, host, addr):
        self.send(b"C", host.encode() + b"\0" + b"4" + struct.pack(">H", 25) + addr.encode() + b"\0")
        return self.recv()

    def cmd(self, c, *args):
        self.send(c, b"".join(a.encode() + b"\0" for a in args))

    def message(self, qid, rcpt, body):
        self.macro(b"M", i=qid)
        self.cmd(b"M", "<from@example.org>")
        assert self.recv()[0] == b"c"
        self.cmd(b"R", "<%s>" % rcpt)
        assert self.recv()[0] == b"c"
        self.send(b"L", b"Subject\0 reuse\0")
        r = self.recv()[0]
        if r != b"c":
            return r
        self.send(b"N")
        assert self.recv()[0] == b"c"
        self.send(b"B", body)
        assert self.recv()[0] == b"c"
        self.send(b"E")
        t0 = time.monotonic()
        # modification actions first, then the final reply
        while True:
            c, _ = self.recv()
            if c in (b"a", b"d", b"t", b"r", b"y", b"c"):
                # the commit (fsync + Redis) answers well inside Postfix's
                # milter_content_timeout (300 s) and Sendmail's R: (10 s)
                self.eom_seconds = time.monotonic() - t0
                assert self.eom_seconds < 5, self.eom_seconds
                return c


def test_quit_nc_connection_reuse(switchyard, free_port):
    """QUIT_NC, as Sendmail sends it when the next SMTP session reuses the
    milter connection: nothing of the first session may reach the second.
    (libmilter accepts QUIT_NC only after an end of message answered with
    CONTINUE, which is what a message switchyard leaves to the MTA gets.)"""
    port = free_port()
    # {auth_authen} is the account scope of route rules; the milter
    # listener's name matches in match.listeners.
    routes = {"transports": {"acct": {"type": "capture"}, "viamilter": {"type": "capture"}},
              "routes": {"accounts": {"bob": [{"transport": "acct"}]},
                         "global": [{"match": {"listeners": ["mt"]}, "transport": "viamilter"}]}}
    sw = start_milter(switchyard, port, extra=routes, capture_domains=["example.net"])
    m = RawMilter(port)
    _, act, proto = m.negotiate()
    assert proto & 0x100000, "SMFIP_HDR_LEADSPC not requested"
    assert act & 0x08, "SMFIF_DELRCPT not requested"
    assert m.connect("first.example", "127.0.0.1")[0] == b"c"
    # partial: one captured (deleted from the MTA's copy), one left
    m.macro(b"M", i="QNC1", **{"{auth_authen}": "bob"})
    m.cmd(b"M", "<from1@example.org>")
    assert m.recv()[0] == b"c"
    m.cmd(b"R", "<reuse1@example.net>")
    assert m.recv()[0] == b"c"
    m.cmd(b"R", "<local@elsewhere.example>")
    assert m.recv()[0] == b"c"
    m.send(b"L", b"Subject\0 first\0")
    assert m.recv()[0] == b"c"
    m.send(b"L", b"X-Tight\0tight\0")       # "X-Tight:tight" as received
    assert m.recv()[0] == b"c"
    m.send(b"L", b"X-Fold\0  a\n\tb\0")      # folded, LF as Postfix sends it
    assert m.recv()[0] == b"c"
    m.send(b"N")
    assert m.recv()[0] == b"c"
    m.send(b"B", b"first session\r\n")
    assert m.recv()[0] == b"c"
    m.send(b"E")
    c, data = m.recv()
    assert (c, data) == (b"-", b"<reuse1@example.net>\0"), (c, data)      # SMFIR_DELRCPT
    assert m.recv()[0] == b"c"
    m.send(b"K")                    # SMFIC_QUIT_NC
    assert m.connect("second.example", "127.0.0.2")[0] == b"c"
    assert m.message("QNC2", "reuse2@example.net", b"second session\r\n") == b"d"
    m.send(b"Q")
    m.s.close()
    d = wait_delivered(sw, ["reuse1@example.net", "reuse2@example.net"])
    assert "local@elsewhere.example" not in d
    j, eml = d["reuse2@example.net"][0]
    assert strip_trace(eml)[1] == b"Subject: reuse\r\n\r\nsecond session\r\n"
    assert j["sender"] == "from@example.org"
    assert j["client_name"] == "second.example" and j["client_addr"] == "127.0.0.2"
    j1, eml1 = d["reuse1@example.net"][0]
    assert j1["client_name"] == "first.example" and j1["sender"] == "from1@example.org"
    assert strip_trace(eml1)[1] == b"Subject: first\r\nX-Tight:tight\r\nX-Fold:  a\r\n\tb\r\n\r\nfirst session\r\n"
    log = sw.log_text
    assert "captured 1 of 2 recipient(s), mta_qid=QNC1" in log
    assert "captured 1 of 1 recipient(s), mta_qid=QNC2" in log
    assert re.search(r"to=<reuse1@example\.net>, relay=acct, transport=acct, route=account:bob\[0\]", log), log
    assert re.search(r"to=<reuse2@example\.net>, relay=viamilter, transport=viamilter, route=global\[0\]", log), log


def test_oversized_headers(switchyard, free_port):
    """A field over header_size_limit is refused with 552 5.3.4; a 1 MB
    field is past libmilter's packet limit: the connection is dropped. The
    milter keeps serving either way."""
    port = free_port()
    sw = start_milter(switchyard, port)
    m = RawMilter(port)
    m.negotiate()
    assert m.connect("c.example", "127.0.0.1")[0] == b"c"
    m.macro(b"M", i="QBIG")
    m.cmd(b"M", "<from@example.org>")
    assert m.recv()[0] == b"c"
    m.cmd(b"R", "<big@example.net>")
    assert m.recv()[0] == b"c"
    m.send(b"L", b"X-Big\0 " + b"b" * (200 * 1024) + b"\0")
    c, data = m.recv()
    assert c == b"y" and data.startswith(b"552 5.3.4 "), (c, data[:80])
    m.send(b"Q")
    m.s.close()

    m = RawMilter(port)
    m.negotiate()
    assert m.connect("c.example", "127.0.0.1")[0] == b"c"
    m.cmd(b"M", "<from@example.org>")
    assert m.recv()[0] == b"c"
    m.cmd(b"R", "<huge@example.net>")
    assert m.recv()[0] == b"c"
    try:
        m.send(b"L", b"X-Huge\0 " + b"h" * (1024 * 1024) + b"\0")
        c, data = m.recv()
        assert c in (b"y", b"r", b"t"), c
    except (EOFError, ConnectionError):
        pass
    m.s.close()

    m = RawMilter(port)
    m.negotiate()
    assert m.connect("c.example", "127.0.0.1")[0] == b"c"
    assert m.message("QAFTER", "after-big@example.net", b"still serving\r\n") == b"d"
    m.send(b"Q")
    m.s.close()
    d = wait_delivered(sw, ["after-big@example.net"])
    assert "big@example.net" not in d and "huge@example.net" not in d


def test_commit_failure_tempfails(switchyard, free_port, redis):
    """Redis gone at end of message: 451 4.3.0, TEMPFAIL, nothing queued."""
    port = free_port()
    sw = start_milter(switchyard, port)
    m = RawMilter(port)
    m.negotiate()
    assert m.connect("c.example", "127.0.0.1")[0] == b"c"
    redis.pause()
    try:
        m.macro(b"M", i="QFAIL")
        m.cmd(b"M", "<from@example.org>")
        assert m.recv()[0] == b"c"
        m.cmd(b"R", "<fail@example.net>")
        assert m.recv()[0] == b"c"
        m.send(b"L", b"Subject\0 fail\0")
        assert m.recv()[0] == b"c"
        m.send(b"N")
        assert m.recv()[0] == b"c"
        m.send(b"B", b"body\r\n")
        assert m.recv()[0] == b"c"
        m.send(b"E")
        c, data = m.recv()
        assert c == b"y", (c, data)             # SMFIR_REPLYCODE
        assert data.startswith(b"451 4.3.0 "), data
    finally:
        redis.resume()
    m.send(b"Q")
    m.s.close()
    assert not os.listdir(os.path.join(sw.spool_dir, "q")) if os.path.isdir(
        os.path.join(sw.spool_dir, "q")) else True


def test_localserve_capture_milter(switchyard_bin, workdir):
    """localserve listens on 127.0.0.1:8891 as a capture milter."""
    if sylib.port_open(8891):
        pytest.skip("127.0.0.1:8891 is busy (another localserve?)")
    state = os.path.join(workdir, "ls")
    lport = sylib.free_port()
    logf = open(os.path.join(workdir, "localserve.log"), "ab")
    proc = sylib.subprocess.Popen([switchyard_bin, "localserve", "--state-dir", state,
                                   "--lmtp-port", str(lport)],
                                  stdin=sylib.subprocess.DEVNULL, stdout=logf, stderr=logf,
                                  start_new_session=True)
    try:
        sylib.wait_for(lambda: sylib.port_open(8891) and sylib.port_open(lport), sylib.START_TIMEOUT,
                       "localserve milter on 8891")
        m = RawMilter(8891)
        m.negotiate()
        assert m.connect("c.example", "127.0.0.1")[0] == b"c"
        assert m.message("QLS1", "ls@example.net", b"via the milter\r\n") == b"d"
        m.send(b"Q")
        m.s.close()
        cap = os.path.join(state, "capture")
        eml = sylib.wait_for(lambda: [f for f in os.listdir(cap) if f.endswith(".eml")]
                             if os.path.isdir(cap) else None, 60, "the captured message")
        with open(os.path.join(cap, eml[0]), "rb") as f:
            assert strip_trace(f.read())[1] == b"Subject: reuse\r\n\r\nvia the milter\r\n"
    finally:
        status = sylib.stop_process(proc)
        logf.close()
    with open(os.path.join(workdir, "localserve.log"), errors="replace") as f:
        log = f.read()
    assert "milter:          inet:8891@127.0.0.1" in log, log
    assert sylib.sanitizer_report(log) is None, log


def test_unix_socket_listener(switchyard, workdir):
    """unix: address, socket_mode applied, the socket removed at stop."""
    path = os.path.join(workdir, "milter.sock")
    sw = switchyard(overrides=milter_overrides(0, address="unix:" + path, socket_mode="0666"))
    sylib.wait_for(lambda: os.path.exists(path), 30, "the milter socket")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
    m = RawMilter(path)
    m.negotiate()
    assert m.connect("c.example", "127.0.0.1")[0] == b"c"
    assert m.message("QUNIX", "unix@example.net", b"over a unix socket\r\n") == b"d"
    m.send(b"Q")
    m.s.close()
    d = wait_delivered(sw, ["unix@example.net"])
    assert strip_trace(d["unix@example.net"][0][1])[1] == b"Subject: reuse\r\n\r\nover a unix socket\r\n"
    assert sw.stop() == 0
    assert not os.path.exists(path)


def test_size_refused_per_captured_recipient(switchyard, free_port):
    """A SIZE= over milter.message_size_limit refuses the captured
    recipients at RCPT (552 5.3.4) and leaves the MTA's own alone."""
    port = free_port()
    start_milter(switchyard, port, extra={"milter": {"message_size_limit": "10k"}},
                 capture_domains=["example.net"])
    m = RawMilter(port)
    m.negotiate()
    assert m.connect("c.example", "127.0.0.1")[0] == b"c"
    m.cmd(b"M", "<from@example.org>", "SIZE=20000")
    assert m.recv()[0] == b"c"
    m.cmd(b"R", "<big@example.net>")
    c, data = m.recv()
    assert c == b"y" and data.startswith(b"552 5.3.4 "), (c, data)
    m.cmd(b"R", "<local@elsewhere.example>")
    assert m.recv()[0] == b"c"
    m.send(b"A")
    # no SIZE=, a body past the limit: refused while it streams
    m.cmd(b"M", "<from@example.org>")
    assert m.recv()[0] == b"c"
    m.cmd(b"R", "<big2@example.net>")
    assert m.recv()[0] == b"c"
    m.send(b"L", b"Subject\0 big\0")
    assert m.recv()[0] == b"c"
    m.send(b"N")
    assert m.recv()[0] == b"c"
    replies = []
    for _ in range(4):
        m.send(b"B", b"x" * 4000 + b"\r\n")
        c, data = m.recv()
        replies.append((c, data[:40]))
        if c != b"c":
            break
    assert replies[-1][0] == b"y" and replies[-1][1].startswith(b"552 5.3.4 "), replies
    m.send(b"Q")
    m.s.close()


def _children(pid):
    """PIDs whose parent is pid (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        if int(st[st.rindex(")") + 2:].split()[1]) == pid:
            out.append(int(d))
    return out


def test_several_listeners(switchyard, free_port, workdir):
    """Three milter listeners: the daemon serves the first, a child process
    each serves the others (libmilter: one socket per process). Each answers
    in its own mode, mail through each is queued and delivered by the
    parent's workers with the right listener name, and SIGTERM to the daemon
    alone stops its children too (no orphan)."""
    p1, p3 = free_port(), free_port()
    path = os.path.join(workdir, "pol.sock")
    routes = {"transports": {"via1": {"type": "capture"}, "via3": {"type": "capture"}},
              "routes": {"global": [{"match": {"listeners": ["cap1"]}, "transport": "via1"},
                                    {"match": {"listeners": ["cap3"]}, "transport": "via3"}]}}
    ov = {"milter": {"listeners": [
        {"name": "cap1", "address": "inet:%d@127.0.0.1" % p1, "mode": "capture"},
        {"name": "pol", "address": "unix:" + path, "mode": "policy"},
        {"name": "cap3", "address": "inet:%d@127.0.0.1" % p3, "mode": "capture"}]},
        "delivery": {"workers": 2, "default_transport": "capture"}}
    sw = switchyard(overrides=sylib.deep_merge(ov, routes))
    sylib.wait_for(lambda: sylib.port_open(p1) and sylib.port_open(p3) and os.path.exists(path),
                   30, "the three milter sockets")
    kids = sylib.wait_for(lambda: (lambda k: k if len(k) == 2 else None)(_children(sw.proc.pid)),
                          30, "two milter child processes")
    # capture: DISCARD (all recipients captured)
    for port, qid, rcpt in ((p1, "QM1", "one@example.net"), (p3, "QM3", "three@example.net")):
        m = RawMilter(port)
        m.negotiate()
        assert m.connect("c.example", "127.0.0.1")[0] == b"c"
        assert m.message(qid, rcpt, b"via %s\r\n" % qid.encode()) == b"d"
        m.send(b"Q")
        m.s.close()
    # policy: the MTA keeps the message (CONTINUE), nothing is captured
    m = RawMilter(path)
    m.negotiate()
    assert m.connect("c.example", "127.0.0.1")[0] == b"c"
    assert m.message("QM2", "two@example.net", b"policy\r\n") == b"c"
    m.send(b"Q")
    m.s.close()
    d = wait_delivered(sw, ["one@example.net", "three@example.net"])
    assert "two@example.net" not in d
    assert strip_trace(d["three@example.net"][0][1])[1] == b"Subject: reuse\r\n\r\nvia QM3\r\n"
    log = sw.log_text
    assert re.search(r"to=<one@example\.net>, relay=via1, transport=via1, route=global\[0\]", log), log
    assert re.search(r"to=<three@example\.net>, relay=via3, transport=via3, route=global\[1\]", log), log
    # SIGTERM to the daemon only (not its process group)
    os.kill(sw.proc.pid, signal.SIGTERM)
    assert sw.proc.wait(60) == 0, sw.log_tail()
    for k in kids:
        assert not sylib.pid_alive(k), "milter child %d outlived the daemon" % k
    assert not os.path.exists(path)
    assert "milter child for pol stopped" in sw.log_text
    assert "milter child for cap3 stopped" in sw.log_text


def test_milter_child_death_stops_daemon(switchyard, free_port):
    """A milter child that dies takes the daemon down (exit 1), so that a
    supervisor restarts the whole set."""
    p1, p2 = free_port(), free_port()
    ov = {"milter": {"listeners": [
        {"name": "a", "address": "inet:%d@127.0.0.1" % p1},
        {"name": "b", "address": "inet:%d@127.0.0.1" % p2}]}}
    sw = switchyard(overrides=ov)
    sylib.wait_for(lambda: sylib.port_open(p1) and sylib.port_open(p2), 30, "the milter sockets")
    kids = sylib.wait_for(lambda: (lambda k: k if len(k) == 1 else None)(_children(sw.proc.pid)),
                          30, "the milter child process")
    os.kill(kids[0], signal.SIGKILL)
    assert sw.proc.wait(60) == 1, sw.log_tail()
    assert re.search(r"milter child for b \(pid \d+\) was killed by signal 9: stopping switchyard",
                     sw.log_text), sw.log_tail()


def test_milter_child_bind_failure_fails_startup(switchyard, free_port):
    """A further milter listener that cannot bind fails the start-up (exit 1,
    the error names the listener); its sibling child is not left behind."""
    p1, p2, p3 = free_port(), free_port(), free_port()
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", p3))
    busy.listen(1)
    try:
        ov = {"milter": {"listeners": [
            {"name": "a", "address": "inet:%d@127.0.0.1" % p1},
            {"name": "b", "address": "inet:%d@127.0.0.1" % p2},
            {"name": "c", "address": "inet:%d@127.0.0.1" % p3}]}}
        sw = switchyard(overrides=ov, start=False)
        sw.start(wait=False)
        assert sw.proc.wait(60) == 1, sw.log_tail()
        assert re.search(r"milter c \(child process\): .*%d" % p3, sw.log_text), sw.log_tail()
        # the child for b was stopped and reaped: nothing listens on p2
        assert not sylib.port_open(p2)
    finally:
        busy.close()
