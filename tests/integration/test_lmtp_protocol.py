"""LMTP (RFC 2033) straight at switchyard: swaks and byte-exact raw sockets.

Each test starts its own redis-server and switchyard (fixtures), so a
failure never leaks state into the next test.
"""
import calendar
import os
import re
import socket
import stat
import time

import pytest

import sylib
from sylib import Lmtp, queued_qid, simple_message

SENDER = "sender@example.org"


def swaks_lmtp(sw, rcpts, extra=(), server=None, check=True):
    if server is None:
        server = ["--server", sylib.LOOPBACK, "--port", str(sw.port)]
    argv = (["swaks", "--protocol", "LMTP"] + server +
            ["--from", SENDER, "--to", ",".join(rcpts), "--helo", "client.example.org",
             "--add-header", "X-Test-Id: swaks-%d" % time.time_ns(), "--body", "hello over LMTP",
             "--timeout", "60"] + list(extra))
    return sylib.run(argv, check=check)


def swaks_queued(out):
    """[(addr, qid)] from swaks' transcript of the replies after the final dot."""
    return re.findall(r"^<-\s+250 2\.0\.0 <([^>]*)> .*queued as ([A-Za-z0-9]+)", out, re.M)


def assert_stored(sw, qid, sender, rcpts):
    assert qid in sw.spool_q(), "spool file q/%s missing; spool: %s" % (qid, sw.spool_q())
    m = sw.msg(qid)
    assert m, "no Redis record %s" % sw.key("msg", qid)
    assert m.get("sender") == sender, m
    assert int(m.get("nrcpt", -1)) == len(rcpts), m
    assert m.get("state") == "active", m
    for i, a in enumerate(rcpts):
        r = sw.rcpt(qid, i)
        assert r.get("addr") == a, (i, r)
        assert r.get("state") == "queued", (i, r)
    return m


def assert_nothing_stored(sw):
    assert sw.spool_q() == [], "spool q/ not empty: %s" % sw.spool_q()
    assert sw.spool_tmp() == [], "spool tmp/ not empty: %s" % sw.spool_tmp()
    assert sw.msg_qids() == [], "Redis has message records: %s" % sw.msg_qids()


def noop_ok(c):
    r = c.cmd("NOOP")
    assert r.is_(250, "2.0.0"), r


def notify_set(v):
    bits = {1: "SUCCESS", 2: "FAILURE", 4: "DELAY", 8: "NEVER"}
    v = (v or "").strip()
    if v.isdigit():
        return {n for b, n in bits.items() if int(v) & b}
    return {x.strip().upper() for x in v.split(",") if x.strip()}


def has_flag(v, name, bit):
    v = (v or "").strip()
    if v.isdigit():
        return bool(int(v) & bit)
    return name in v.upper()


# ---------------------------------------------------------------- basics

def test_greeting_and_lhlo_extensions(switchyard):
    sw = switchyard()
    with sw.lmtp(lhlo=False) as c:
        assert re.match(r"^220 \S+ LMTP\b", c.greeting.last), c.greeting
        r = c.lhlo()
        names = c.ext_names()
        for e in ("PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8", "SIZE", "DSN",
                  "FUTURERELEASE"):
            assert e in names, (e, r)
        assert "REQUIRETLS" not in names, r
        size = [e for e in c.ext if e.upper().startswith("SIZE")][0].split()
        assert len(size) == 2 and int(size[1]) > 0, size
        fr = [e for e in c.ext if e.upper().startswith("FUTURERELEASE")][0].split()
        assert len(fr) == 3 and int(fr[1]) > 0, fr
        assert c.cmd("VRFY someone").is_(252, "2.5.2")
        assert c.cmd("RSET").is_(250, "2.0.0")
        assert c.cmd("NOOP").is_(250, "2.0.0")
        assert c.cmd("FROBNICATE").is_(500, "5.5.1")
        assert c.cmd("QUIT").is_(221, "2.0.0")
        assert c.wait_closed() == b""


def test_swaks_three_recipients_one_qid(switchyard):
    sw = switchyard()
    rcpts = ["a@example.net", "b@example.net", "c@example.net"]
    p = swaks_lmtp(sw, rcpts)
    got = swaks_queued(p.stdout)
    assert [a for a, _ in got] == rcpts, p.stdout
    qids = {q for _, q in got}
    assert len(qids) == 1, got
    m = assert_stored(sw, qids.pop(), SENDER, rcpts)
    assert m.get("listener") == "postfix", m
    assert m.get("client_addr") == "127.0.0.1", m


def test_swaks_pipeline(switchyard):
    sw = switchyard()
    rcpts = ["p1@example.net", "p2@example.net", "p3@example.net"]
    p = swaks_lmtp(sw, rcpts, extra=["--pipeline"])
    got = swaks_queued(p.stdout)
    assert [a for a, _ in got] == rcpts, p.stdout
    assert len({q for _, q in got}) == 1, got
    assert_stored(sw, got[0][1], SENDER, rcpts)


def test_pipelining_in_one_write(switchyard):
    sw = switchyard()
    with sw.lmtp() as c:
        c.send(b"MAIL FROM:<sender@example.org>\r\nRCPT TO:<a@example.net>\r\n"
               b"RCPT TO:<bad address>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
        r = c.replies(5)
        assert r[0].is_(250, "2.1.0") and r[1].is_(250, "2.1.5") and r[3].is_(250, "2.1.5"), r
        assert r[2].code // 100 == 5, r
        assert r[4].code == 354, r
        m1 = simple_message("pipelined one")
        m2 = simple_message("pipelined two")
        # end of data and a whole second transaction up to DATA in one write
        c.send(sylib.dot_stuff(m1) + b".\r\nMAIL FROM:<sender@example.org>\r\n"
               b"RCPT TO:<c@example.net>\r\nDATA\r\n")
        r = c.replies(5)
        q1 = queued_qid(r[0])
        assert queued_qid(r[1]) == q1, r
        assert [sylib.QUEUED_RE.match(x.last).group(1) for x in r[:2]] == ["a@example.net", "b@example.net"]
        assert r[2].is_(250, "2.1.0") and r[3].is_(250, "2.1.5") and r[4].code == 354, r
        c.send(sylib.dot_stuff(m2) + b".\r\nQUIT\r\n")
        r = c.replies(2)
        q2 = queued_qid(r[0])
        assert r[1].is_(221, "2.0.0"), r
        assert q1 != q2
    assert_stored(sw, q1, SENDER, ["a@example.net", "b@example.net"])
    assert_stored(sw, q2, SENDER, ["c@example.net"])
    assert sw.spool_bytes(q1).count(m1) == 1


# ---------------------------------------------------------------- sequence errors

def test_helo_and_ehlo_refused(switchyard):
    sw = switchyard()
    with sw.lmtp(lhlo=False) as c:
        assert c.cmd("HELO client.example.org").is_(500, "5.5.1")
        assert c.cmd("EHLO client.example.org").is_(500, "5.5.1")
        # still no LHLO: MAIL is out of sequence
        assert c.cmd("MAIL FROM:<sender@example.org>").is_(503, "5.5.1")
        c.lhlo()
        assert c.transaction(SENDER, ["x@example.net"], simple_message("after helo"))[0].code == 250


def test_mail_before_lhlo(switchyard):
    sw = switchyard()
    with sw.lmtp(lhlo=False) as c:
        assert c.cmd("MAIL FROM:<sender@example.org>").is_(503, "5.5.1")
        assert c.cmd("RCPT TO:<x@example.net>").is_(503, "5.5.1")
        c.lhlo()
        assert c.cmd("MAIL FROM:<sender@example.org>").is_(250, "2.1.0")


def test_rcpt_before_mail(switchyard):
    sw = switchyard()
    with sw.lmtp() as c:
        assert c.cmd("RCPT TO:<x@example.net>").is_(503, "5.5.1")
        noop_ok(c)
        assert c.transaction(SENDER, ["x@example.net"], simple_message("after rcpt"))[0].code == 250


def test_data_before_rcpt(switchyard):
    sw = switchyard()
    with sw.lmtp() as c:
        assert c.cmd("DATA").is_(503, "5.5.1")
        assert c.cmd("MAIL FROM:<sender@example.org>").is_(250, "2.1.0")
        assert c.cmd("DATA").is_(503, "5.5.1")
        # a refused recipient does not count either
        assert c.cmd("RCPT TO:<>").code // 100 == 5
        assert c.cmd("DATA").is_(503, "5.5.1")
        assert c.cmd("MAIL FROM:<other@example.org>").is_(503, "5.5.1")   # nested MAIL
        assert c.cmd("RCPT TO:<x@example.net>").is_(250, "2.1.5")
        r = c.data(simple_message("after data errors"), 1)
        qid = queued_qid(r[0])
    assert_stored(sw, qid, SENDER, ["x@example.net"])
    assert sw.spool_q() == [qid]


# ---------------------------------------------------------------- parameters

BAD_PARAMS = [
    # (name, command, allowed codes, enhanced code)
    ("SIZE=-1", "MAIL FROM:<sender@example.org> SIZE=-1", (501, 555), "5.5.4"),
    ("SIZE=abc", "MAIL FROM:<sender@example.org> SIZE=abc", (501, 555), "5.5.4"),
    ("unknown parameter", "MAIL FROM:<sender@example.org> FOO=bar", (555,), "5.5.4"),
    ("duplicate BODY", "MAIL FROM:<sender@example.org> BODY=8BITMIME BODY=8BITMIME", (501, 555), "5.5.4"),
    ("duplicate RET", "MAIL FROM:<sender@example.org> RET=HDRS RET=FULL", (501, 555), "5.5.4"),
    ("bad RET", "MAIL FROM:<sender@example.org> RET=SOME", (501, 555), "5.5.4"),
    ("BODY=BINARYMIME", "MAIL FROM:<sender@example.org> BODY=BINARYMIME", (501, 555), "5.5.4"),
]

BAD_RCPT_PARAMS = [
    ("NOTIFY=NEVER,SUCCESS", "RCPT TO:<x@example.net> NOTIFY=NEVER,SUCCESS", (501, 555), "5.5.4"),
    ("NOTIFY=BOGUS", "RCPT TO:<x@example.net> NOTIFY=BOGUS", (501, 555), "5.5.4"),
    ("duplicate NOTIFY", "RCPT TO:<x@example.net> NOTIFY=SUCCESS NOTIFY=FAILURE", (501, 555), "5.5.4"),
    ("unknown parameter", "RCPT TO:<x@example.net> XYZZY", (555,), "5.5.4"),
    ("ORCPT without type", "RCPT TO:<x@example.net> ORCPT=x@example.net", (501, 555), "5.5.4"),
]


def test_bad_parameters_same_session(switchyard):
    sw = switchyard(overrides={"lmtp": {"hard_error_limit": 100}})
    with sw.lmtp() as c:
        for name, cmd, codes, enh in BAD_PARAMS:
            r = c.cmd(cmd)
            assert r.code in codes and r.enh == enh, (name, r)
            # the refused MAIL did not open a transaction
            assert c.cmd("RCPT TO:<x@example.net>").is_(503, "5.5.1"), name
            noop_ok(c)
        r = c.cmd("MAIL FROM:<sender@example.org> SIZE=99999999999")
        assert r.is_(552, "5.3.4"), r
        assert c.cmd("MAIL FROM:<sender@example.org> SIZE=100 BODY=8BITMIME").is_(250, "2.1.0")
        for name, cmd, codes, enh in BAD_RCPT_PARAMS:
            r = c.cmd(cmd)
            assert r.code in codes and r.enh == enh, (name, r)
        # the transaction survived every refused RCPT
        assert c.cmd("RCPT TO:<good@example.net>").is_(250, "2.1.5")
        r = c.data(simple_message("after bad params"), 1)
        qid = queued_qid(r[0])
    assert_stored(sw, qid, SENDER, ["good@example.net"])


def test_dsn_parameters_stored(switchyard):
    sw = switchyard()
    with sw.lmtp() as c:
        assert c.cmd("MAIL FROM:<sender@example.org> RET=HDRS ENVID=QQ+2B123+3Dx").is_(250, "2.1.0")
        assert c.cmd("RCPT TO:<a@example.net> NOTIFY=SUCCESS,FAILURE "
                     "ORCPT=rfc822;a+2Bx@example.net").is_(250, "2.1.5")
        assert c.cmd("RCPT TO:<b@example.net> NOTIFY=NEVER").is_(250, "2.1.5")
        assert c.cmd("RCPT TO:<c@example.net>").is_(250, "2.1.5")
        qid = queued_qid(c.data(simple_message("dsn"), 3)[0])
    m = assert_stored(sw, qid, SENDER, ["a@example.net", "b@example.net", "c@example.net"])
    assert m.get("envid") == "QQ+123=x", m
    assert m.get("ret", "").upper() in ("HDRS", "2"), m
    r0, r1, r2 = sw.rcpt(qid, 0), sw.rcpt(qid, 1), sw.rcpt(qid, 2)
    assert notify_set(r0.get("notify")) == {"SUCCESS", "FAILURE"}, r0
    assert r0.get("orcpt_type", "").lower() == "rfc822", r0
    assert r0.get("orcpt_addr") == "a+x@example.net", r0
    assert notify_set(r1.get("notify")) == {"NEVER"}, r1
    assert notify_set(r2.get("notify")) == set(), r2
    assert not r2.get("orcpt_addr"), r2


def test_futurerelease_stored(switchyard):
    sw = switchyard()
    with sw.lmtp() as c:
        before = time.time()
        assert c.cmd("MAIL FROM:<sender@example.org> HOLDFOR=3600").is_(250, "2.1.0")
        assert c.cmd("RCPT TO:<later@example.net>").is_(250, "2.1.5")
        q1 = queued_qid(c.data(simple_message("holdfor"), 1)[0])
        after = time.time()
        until = time.gmtime(time.time() + 7200)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", until)
        assert c.cmd("MAIL FROM:<sender@example.org> HOLDUNTIL=" + stamp).is_(250, "2.1.0")
        assert c.cmd("RCPT TO:<later2@example.net>").is_(250, "2.1.5")
        q2 = queued_qid(c.data(simple_message("holduntil"), 1)[0])
        # beyond the advertised maximum, and both parameters at once: refused
        r = c.cmd("MAIL FROM:<sender@example.org> HOLDFOR=%d" % (10 * 365 * 86400))
        assert r.code // 100 == 5, r
        r = c.cmd("MAIL FROM:<sender@example.org> HOLDFOR=60 HOLDUNTIL=" + stamp)
        assert r.code // 100 == 5, r
        noop_ok(c)
    h1 = int(sw.msg(q1).get("hold_until", 0))
    assert before + 3600 - 2 <= h1 <= after + 3600 + 2, (h1, before)
    h2 = int(sw.msg(q2).get("hold_until", 0))
    assert h2 == calendar.timegm(until), (h2, stamp)
    # not due before the release time
    for q, h in ((q1, h1), (q2, h2)):
        member = "%s:0" % q
        score = sw.redis("ZSCORE", sw.key("sched"), member)
        held = sw.redis("ZSCORE", sw.key("held"), member)
        assert held is not None or (score is not None and float(score) >= h * 1000 - 1000), \
            (q, score, held, h)


def test_smtputf8(switchyard):
    sw = switchyard()
    sender = "us\u00e9r@ex\u00e4mple.org"
    rcpt = "r\u00fcdiger@example.net"
    with sw.lmtp() as c:
        assert "SMTPUTF8" in c.ext_names()
        r = c.cmd("MAIL FROM:<%s>" % sender)
        assert r.is_(553, "5.6.7"), r
        assert c.cmd("MAIL FROM:<sender@example.org>").is_(250, "2.1.0")
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        assert r.is_(553, "5.6.7"), r
        assert c.cmd("RSET").is_(250, "2.0.0")
        assert c.cmd("MAIL FROM:<%s> SMTPUTF8 BODY=8BITMIME" % sender).is_(250, "2.1.0")
        assert c.cmd("RCPT TO:<%s>" % rcpt).is_(250, "2.1.5")
        msg = ("From: <%s>\r\nTo: <%s>\r\nSubject: gr\u00fc\u00dfe\r\n\r\nk\u00e4se\r\n"
               % (sender, rcpt)).encode("utf-8")
        qid = queued_qid(c.data(msg, 1)[0])
    m = assert_stored(sw, qid, sender, [rcpt])
    assert has_flag(m.get("flags"), "SMTPUTF8", 1), m
    assert sw.spool_bytes(qid).count(msg) == 1


def test_requiretls_only_on_trusted_listener(switchyard):
    sw = switchyard(trusted_port=True)
    with sw.lmtp() as c:
        assert "REQUIRETLS" not in c.ext_names()
        r = c.cmd("MAIL FROM:<sender@example.org> REQUIRETLS")
        assert r.code // 100 == 5, r
        noop_ok(c)
    with sw.lmtp("trusted") as c:
        assert "REQUIRETLS" in c.ext_names(), c.ext
        assert c.cmd("MAIL FROM:<sender@example.org> REQUIRETLS").is_(250, "2.1.0")
        assert c.cmd("RCPT TO:<tls@example.net>").is_(250, "2.1.5")
        qid = queued_qid(c.data(simple_message("requiretls"), 1)[0])
    m = assert_stored(sw, qid, SENDER, ["tls@example.net"])
    assert m.get("listener") == "trusted", m
    assert has_flag(m.get("flags"), "REQUIRETLS", 2), m


# ---------------------------------------------------------------- limits

def test_oversize_command_line(switchyard):
    sw = switchyard()
    with sw.lmtp() as c:
        r = c.cmd("NOOP " + "x" * 5000)
        assert r.is_(500, "5.5.2"), r
        noop_ok(c)
        assert c.cmd("MAIL FROM:<sender@example.org>").is_(250, "2.1.0")
        r = c.cmd("RCPT TO:<" + "y" * 3000 + "@example.net>")
        assert r.is_(500, "5.5.2"), r
        # the transaction is intact and in sync
        assert c.cmd("RCPT TO:<z@example.net>").is_(250, "2.1.5")
        qid = queued_qid(c.data(simple_message("after long line"), 1)[0])
    assert_stored(sw, qid, SENDER, ["z@example.net"])


def test_oversize_message(switchyard):
    sw = switchyard(overrides={"lmtp": {"message_size_limit": "1m"}})
    with sw.lmtp() as c:
        limit = int([e for e in c.ext if e.upper().startswith("SIZE")][0].split()[1])
        assert 1000000 <= limit <= 1048576, c.ext
        assert c.cmd("MAIL FROM:<sender@example.org> SIZE=%d" % (limit + 1)).is_(552, "5.3.4")
        assert c.cmd("MAIL FROM:<sender@example.org>").is_(250, "2.1.0")
        assert c.cmd("RCPT TO:<a@example.net>").is_(250, "2.1.5")
        assert c.cmd("RCPT TO:<b@example.net>").is_(250, "2.1.5")
        assert c.cmd("DATA").code == 354
        line = b"x" * 998 + b"\r\n"
        body = b"Subject: big\r\n\r\n" + line * (limit // len(line) + 200)
        c.send(body + b".\r\n")
        r = c.replies(2)
        assert all(x.is_(552, "5.3.4") for x in r), r
        noop_ok(c)
    assert_nothing_stored(sw)


def test_recipient_limit(switchyard):
    limit = 100     # the smallest allowed (RFC 5321 4.5.3.1.8)
    sw = switchyard(overrides={"lmtp": {"recipient_limit": limit}})
    rcpts = ["r%03d@example.net" % i for i in range(limit + 2)]
    with sw.lmtp() as c:
        c.send(b"MAIL FROM:<sender@example.org>\r\n" +
               b"".join(b"RCPT TO:<%s>\r\n" % a.encode() for a in rcpts))
        r = c.replies(1 + len(rcpts))
        assert r[0].is_(250, "2.1.0"), r[0]
        for a, x in zip(rcpts[:limit], r[1:limit + 1]):
            assert x.is_(250, "2.1.5"), (a, x)
        for a, x in zip(rcpts[limit:], r[limit + 1:]):
            assert x.is_(452, "4.5.3"), (a, x)
        r = c.data(simple_message("rcpt limit"), limit)
        qid = queued_qid(r[0])
        assert [sylib.QUEUED_RE.match(x.last).group(1) for x in r] == rcpts[:limit]
        assert all(queued_qid(x) == qid for x in r)
        noop_ok(c)
    assert_stored(sw, qid, SENDER, rcpts[:limit])


def test_hard_error_limit_closes_with_421(switchyard):
    limit = 10
    sw = switchyard(overrides={"lmtp": {"hard_error_limit": limit}})
    with sw.lmtp() as c:
        got = []
        for i in range(limit + 1):
            # the 421 may come right after the limit-th error, unasked; a
            # send into the closed connection must not hide it
            try:
                c.send(b"BOGUS%d\r\n" % i)
            except OSError:
                pass
            try:
                r = c.reply()
            except (sylib.Closed, OSError):
                break
            got.append(r)
            if r.code == 421:
                break
        assert [r.code for r in got[:limit - 1]] == [500] * (limit - 1), got
        assert got[-1].is_(421, "4.7.0"), got
        assert limit <= len(got) <= limit + 1, got
        assert c.wait_closed() == b""


def test_max_connections(switchyard):
    sw = switchyard(overrides={"lmtp": {"max_connections": 3}})
    held = []

    def fill():
        # the readiness probe's sessions may still be counted for a moment
        for c in held:
            c.close()
        held.clear()
        for _ in range(3):
            c = Lmtp((sylib.LOOPBACK, sw.port))
            held.append(c)
            if c.greeting.code != 220:
                return False
        return True
    try:
        sylib.wait_for(fill, 60, "3 concurrent sessions", interval=0.2)
        c4 = Lmtp((sylib.LOOPBACK, sw.port))
        assert c4.greeting.is_(421, "4.3.2"), c4.greeting
        assert c4.wait_closed() == b""
        c4.close()
        for c in held:   # the held sessions are unaffected
            assert c.cmd("LHLO x.example.org").code == 250
        held.pop().close()

        def fifth():
            c = Lmtp((sylib.LOOPBACK, sw.port))
            ok = c.greeting.code == 220
            c.close()
            return ok
        sylib.wait_for(fifth, 60, "a free session slot after one closed", interval=0.2)
    finally:
        for c in held:
            c.close()


def test_unix_socket_listener(switchyard):
    sw = switchyard(unix=True)
    assert stat.S_IMODE(os.stat(sw.unix_sock).st_mode) == 0o666
    rcpts = ["u1@example.net", "u2@example.net"]
    p = swaks_lmtp(sw, rcpts, server=["--socket", sw.unix_sock])
    got = swaks_queued(p.stdout)
    assert [a for a, _ in got] == rcpts, p.stdout
    m = assert_stored(sw, got[0][1], SENDER, rcpts)
    assert m.get("listener") == "sock", m


def test_tcp_port_25_refused(switchyard, switchyard_bin):
    sw = switchyard(start=False)
    sw.config["lmtp"]["listeners"] = [{"name": "smtp", "address": "127.0.0.1:25"}]
    sw.write_config()
    status, out = sylib.serve_expect_exit(switchyard_bin, sw.config_path)
    assert status is not None, "serve with a listener on port 25 did not exit:\n" + out
    assert status != 0, out
    assert "25" in out, out


# ---------------------------------------------------------------- DATA content

def test_dot_unstuffing_byte_exact(switchyard):
    sw = switchyard(overrides={"delivery": {"workers": 1, "default_transport": "capture"}})
    msg = (b"From: <sender@example.org>\r\nTo: <d@example.net>\r\nSubject: dots\r\n"
           b"Message-ID: <dots@test.example>\r\n\r\n"
           b".\r\n..\r\n...\r\n.leading dot\r\n..two leading dots\r\n .space first\r\n"
           b"middle . dot\r\n\r\n.\r\n\r\n"
           b"eight bit: \xc3\xa9\xe2\x82\xac \x80\xff\r\n" +
           b"y" * 996 + b"\r\n" +
           b"\tTab .\r\n"
           b".\r\n")
    with sw.lmtp() as c:
        r = c.transaction(SENDER, ["d@example.net", "e@example.net"], msg, mail_params="BODY=8BITMIME")
        qid = queued_qid(r[0])
        assert queued_qid(r[1]) == qid
    caps = sw.wait_captures(qid, 2)
    assert caps[0] == msg, (len(caps[0]), len(msg))
    assert caps[1] == msg


def test_bare_lf_reject(switchyard):
    sw = switchyard()   # bare_line_endings: reject is the default
    with sw.lmtp() as c:
        assert c.cmd("MAIL FROM:<sender@example.org>").is_(250, "2.1.0")
        assert c.cmd("RCPT TO:<a@example.net>").is_(250, "2.1.5")
        assert c.cmd("RCPT TO:<b@example.net>").is_(250, "2.1.5")
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: bare\r\n\r\nline one\nline two\r\n.\r\nNOOP\r\n")
        r = c.replies(3)
        assert r[0].is_(550, "5.6.0") and r[1].is_(550, "5.6.0"), r
        assert r[2].is_(250, "2.0.0"), r      # in sync: the NOOP after the real end
        assert c.cmd("MAIL FROM:<sender@example.org>").is_(250, "2.1.0")
        assert c.cmd("RCPT TO:<a@example.net>").is_(250, "2.1.5")
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: bare cr\r\n\r\nline one\rline two\r\n.\r\n")
        assert c.reply().is_(550, "5.6.0")
        noop_ok(c)
    assert_nothing_stored(sw)


def test_bare_lf_normalize(switchyard):
    sw = switchyard(overrides={"lmtp": {"bare_line_endings": "normalize"},
                               "delivery": {"workers": 1, "default_transport": "capture"}})
    with sw.lmtp() as c:
        assert c.cmd("MAIL FROM:<sender@example.org>").is_(250, "2.1.0")
        assert c.cmd("RCPT TO:<n@example.net>").is_(250, "2.1.5")
        assert c.cmd("DATA").code == 354
        # the bare LF before ".\r\n" does not end the data: only CRLF.CRLF does
        c.send(b"Subject: bare\n\nline one\nline two\rline three\r\n..dot\n.\r\nstill data\r\n.\r\nNOOP\r\n")
        r = c.replies(2)
        qid = queued_qid(r[0])
        assert r[1].is_(250, "2.0.0"), r
    caps = sw.wait_captures(qid, 1)
    # The "." after the bare LF: kept, or unstuffed like Postfix's
    # smtpd_forbid_bare_newline=normalize does (the line then is empty).
    assert caps[0] in (b"Subject: bare\r\n\r\nline one\r\nline two\r\nline three\r\n.dot\r\n%s\r\n"
                       b"still data\r\n" % dot for dot in (b".", b"")), caps[0]


SMUGGLED = (b"MAIL FROM:<smuggler@evil.example>\r\nRCPT TO:<smuggled@example.net>\r\n"
            b"DATA\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n")

# fake end-of-data sequences (none is <CRLF>.<CRLF>); each is followed by a
# complete smuggled transaction and then the real terminator
FAKE_ENDS = [
    ("LF.LF", b"hello", b"\n.\n"),
    ("CR.CR", b"hello", b"\r.\r"),
    ("CRLF.LF", b"hello", b"\r\n.\n"),
    ("LF.CRLF", b"hello", b"\n.\r\n"),
    ("CR.CRLF", b"hello", b"\r.\r\n"),
    ("CRLF.CR", b"hello", b"\r\n.\r"),
    ("CRCRLF.CRCRLF", b"hello", b"\r\r\n.\r\r\n"),
    ("LF.LF-after-bare-LF", b"hello\nworld", b"\n.\n"),
    ("start-dot-LF", b"", b".\n"),
    ("start-dot-CR", b"", b".\r"),
]


@pytest.mark.parametrize("policy", ["reject", "normalize"])
@pytest.mark.parametrize("name,prefix,fake", FAKE_ENDS, ids=[f[0] for f in FAKE_ENDS])
def test_smuggling(switchyard, policy, name, prefix, fake):
    sw = switchyard(overrides={"lmtp": {"bare_line_endings": policy}})
    with sw.lmtp() as c:
        assert c.cmd("MAIL FROM:<sender@example.org>").is_(250, "2.1.0")
        assert c.cmd("RCPT TO:<victim@example.net>").is_(250, "2.1.5")
        assert c.cmd("DATA").code == 354
        head = b"Subject: smuggling test\r\n\r\n"
        c.send(head + prefix + fake + SMUGGLED + b"tail\r\n.\r\nQUIT\r\n")
        rest = c.reply()
        bye = c.reply()
        tail = c.wait_closed()
    # exactly one reply for the one real transaction, then QUIT's 221: no
    # reply to any embedded command
    assert bye.is_(221, "2.0.0"), (rest, bye, tail)
    assert tail == b"", tail
    if policy == "reject":
        assert rest.is_(550, "5.6.0"), rest
        assert_nothing_stored(sw)
    else:
        qid = queued_qid(rest)
        assert sw.spool_q() == [qid]
        assert sw.msg_qids() == [qid]
        assert_stored(sw, qid, SENDER, ["victim@example.net"])
        # the would-be commands are message content
        assert b"smuggler@evil.example" in sw.spool_bytes(qid)
    for q in sw.msg_qids():
        assert sw.msg(q).get("sender") != "smuggler@evil.example"
    assert sw.spool_tmp() == []


def test_session_survives_many_different_errors(switchyard):
    sw = switchyard(overrides={"lmtp": {"hard_error_limit": 50}})
    with sw.lmtp() as c:
        errs = ["HELO x", "DATA", "RCPT TO:<a@example.net>", "MAIL FROM:<no-brackets@example.org",
                "MAIL FROM:<sender@example.org> NOPE=1", "NOOP " + "z" * 4000, "UNKNOWN",
                "MAIL FROM:<a@b@c>", "\x01\x02"]
        for e in errs:
            r = c.cmd(e.encode("latin-1"))
            assert r.code // 100 == 5, (e, r)
            noop_ok(c)
        qid = queued_qid(c.transaction(SENDER, ["ok@example.net"], simple_message("survivor"))[0])
    assert_stored(sw, qid, SENDER, ["ok@example.net"])


def test_client_disconnect_mid_data_leaves_nothing(switchyard):
    sw = switchyard()
    c = sw.lmtp()
    assert c.cmd("MAIL FROM:<sender@example.org>").is_(250, "2.1.0")
    assert c.cmd("RCPT TO:<gone@example.net>").is_(250, "2.1.5")
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: cut\r\n\r\n" + b"partial line\r\n" * 1000)
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    sylib.wait_for(lambda: sw.spool_tmp() == [], 60, "spool tmp/ to be empty")
    assert_nothing_stored(sw)
    # the daemon is fine
    with sw.lmtp() as c2:
        qid = queued_qid(c2.transaction(SENDER, ["next@example.net"], simple_message("next"))[0])
    assert_stored(sw, qid, SENDER, ["next@example.net"])
    sylib.wait_for(lambda: sw.spool_tmp() == [], 60, "spool tmp/ to be empty")
    assert sw.spool_q() == [qid]
