"""test_milter_postfix.py - switchyard as a milter under a real Postfix
(smtpd_milters), with swaks as the client.

One private Postfix for the module: smtpd_milters points at MILTER_PORT,
where each test starts its own switchyard (capture or policy mode).
Postfix delivers what it keeps to an LMTP smtp-sink ("local" mail);
switchyard relays what it captured to an SMTP smtp-sink, or to the capture
transport (the DKIM test reads the exact bytes there).
"""
import base64
import glob
import os
import re
import subprocess
import time

import pytest

import sylib

SINK = "/usr/sbin/smtp-sink"
HERE = os.path.dirname(os.path.abspath(__file__))


class Sink:
    """smtp-sink (SMTP, or LMTP with lmtp=True) dumping every transaction
    to DIR/dump/ (envelope as X- lines, then the message)."""

    def __init__(self, d, port=None, lmtp=False):
        self.dir = str(d)
        self.dump = os.path.join(self.dir, "dump")
        os.makedirs(self.dump, exist_ok=True)
        os.chmod(self.dir, 0o755)
        os.chmod(self.dump, 0o777)
        self.port = port or sylib.free_port()
        argv = [SINK, "-u", "nobody", "-h", "sink.test", "-d", self.dump + "/%M.", "-t", "300"]
        if lmtp:
            argv.append("-L")
        argv += ["%s:%d" % (sylib.LOOPBACK, self.port), "64"]
        self.log = open(os.path.join(self.dir, "sink.log"), "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, start_new_session=True)
        sylib.wait_for(lambda: sylib.port_open(self.port), 30, "smtp-sink on %d" % self.port)

    def stop(self):
        sylib.stop_process(self.proc)
        self.log.close()

    def dumps_with(self, needle):
        out = []
        for f in sorted(glob.glob(os.path.join(self.dump, "*"))):
            with open(f, "rb") as fh:
                t = fh.read().decode("utf-8", "replace")
            if needle in t:
                out.append(t)
        return out


@pytest.fixture(scope="module")
def mpf(base_dir):
    """A private Postfix whose smtpd_milters is inet:127.0.0.1:<milter_port>."""
    if os.geteuid() != 0:
        pytest.fail("the Postfix tests must run as root", pytrace=False)
    d = os.path.join(base_dir, "mpf")
    os.makedirs(d, exist_ok=True)
    local = Sink(os.path.join(base_dir, "mpf-local"), lmtp=True)
    pf = sylib.PostfixInstance(os.path.join(d, "pf"), lmtp_port=local.port)
    pf.milter_port = sylib.free_port()
    pf._sh("init", pf.dir, env={
        "PF_SMTPD_PORT": str(pf.smtpd_port),
        "PF_LMTP_NEXTHOP": "inet:%s:%d" % (sylib.LOOPBACK, local.port),
        "PF_MILTER": "inet:%s:%d" % (sylib.LOOPBACK, pf.milter_port)})
    # our end-of-message reply must arrive well inside this
    pf.postconf("milter_content_timeout = 60s", "milter_connect_timeout = 10s")
    pf.start()
    pf.local = local
    yield pf
    pf.stop()
    local.stop()


@pytest.fixture
def postfix_m(mpf):
    mpf.clear()
    mpf.mark()
    yield mpf
    mpf.clear()


@pytest.fixture
def sink(workdir):
    s = Sink(os.path.join(workdir, "relay-sink"))
    yield s
    s.stop()


def start_milter(switchyard, pf, listener, overrides=None, env=None):
    l = {"name": "pfmilter", "address": "inet:%d@%s" % (pf.milter_port, sylib.LOOPBACK)}
    l.update(listener)
    o = {"milter": {"listeners": [l]}}
    o = sylib.deep_merge(o, overrides or {})
    old = {}
    for k, v in (env or {}).items():
        old[k] = os.environ.get(k)
        os.environ[k] = v
    try:
        sw = switchyard(overrides=o)
    finally:
        for k, v in old.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v
    sylib.wait_for(lambda: sylib.port_open(pf.milter_port), 30, "milter port")
    return sw


def relay_to(s):
    return {"delivery": {"workers": 2, "default_transport": "out"},
            "transports": {"out": {"type": "smtp", "host": sylib.LOOPBACK, "port": s.port,
                                   "tls": "none"}}}


def swaks_data(pf, sender, rcpts, data, check=True):
    """swaks with the message given byte for byte; returns the process."""
    path = os.path.join(pf.dir, "msg-%d.eml" % time.time_ns())
    with open(path, "wb") as f:
        f.write(data)
    argv = ["swaks", "--server", sylib.LOOPBACK, "--port", str(pf.smtpd_port),
            "--from", sender, "--to", ",".join(rcpts), "--helo", "client.example.org",
            "--data", "@" + path, "--timeout", "60"]
    p = sylib.run(argv, check=False)
    if check:
        assert re.search(r"^<-\s+250 2\.0\.0 Ok: queued as \w+", p.stdout, re.M), p.stdout
    return p


def fixed_message(tag, body=b"hello\r\n"):
    return (b"From: Sender <s@example.org>\r\n"
            b"To: someone@example.net\r\n"
            b"Subject: " + tag.encode() + b"\r\n"
            b"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\n"
            b"Message-ID: <" + tag.encode() + b"@example.org>\r\n"
            b"\r\n" + body)


def test_capture_all_discarded_by_postfix_relayed_by_switchyard(postfix_m, switchyard, sink):
    pf = postfix_m
    sw = start_milter(switchyard, pf, {"mode": "capture"}, relay_to(sink))
    tag = "capall%d" % time.time_ns()
    swaks_data(pf, "s@example.org", ["%s-1@example.net" % tag, "%s-2@example.net" % tag],
               fixed_message(tag))
    pf.wait_log(r"milter-discard: END-OF-MESSAGE")
    pf.wait_empty()
    got = sylib.wait_for(lambda: sink.dumps_with(tag), 60, "the message at the relay sink")
    time.sleep(1)
    got = sink.dumps_with(tag)
    assert len(got) == 1, got
    assert "%s-1@example.net" % tag in got[0] and "%s-2@example.net" % tag in got[0]
    assert not pf.local.dumps_with(tag), "Postfix delivered a copy too"
    # Postfix passes milters no Received field of its own: switchyard adds
    # one for the client -> Postfix hop, with Postfix's queue id
    assert re.search(r"Received: from \S+ \(127\.0\.0\.1\)\r?\n\tby pf-test\.localdomain "
                     r"\(switchyard milter pfmilter\) id \w+;", got[0]), got[0][:1000]
    assert not pf.log_lines(r"status=sent")
    assert re.search(r"milter pfmilter: captured 2 of 2 recipient\(s\), mta_qid=\w+", sw.log_text)


def test_partial_capture_each_exactly_once(postfix_m, switchyard, sink):
    pf = postfix_m
    sw = start_milter(switchyard, pf, {"mode": "capture", "capture_domains": [".captured.example"],
                                       "capture_addresses": ["vip@local.example"]},
                      relay_to(sink))
    tag = "partial%d" % time.time_ns()
    rcpts = ["a@captured.example", "b@sub.captured.example", "c@local.example",
             "vip@local.example", "d@local.example"]
    swaks_data(pf, "s@example.org", rcpts, fixed_message(tag))
    pf.wait_log(r"to=<[cd]@local\.example>.*status=sent", count=2)
    pf.wait_empty()
    relayed = sylib.wait_for(lambda: sink.dumps_with(tag), 60, "the relayed copy")
    local = sylib.wait_for(lambda: pf.local.dumps_with(tag), 60, "Postfix's copy")
    time.sleep(1)
    relayed, local = sink.dumps_with(tag), pf.local.dumps_with(tag)
    assert len(relayed) == 1 and len(local) == 1, (relayed, local)
    for r in ("a@captured.example", "b@sub.captured.example", "vip@local.example"):
        assert r in relayed[0] and r not in local[0], r
    for r in ("c@local.example", "d@local.example"):
        assert r in local[0] and r not in relayed[0], r
    # Postfix delivered its two only, once each
    assert len(pf.log_lines(r"status=sent")) == 2
    assert "captured 3 of 5 recipient(s)" in sw.log_text


def dkim_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                           serialization.NoEncryption())
    pub = k.public_key().public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    return priv, b"v=DKIM1; k=rsa; p=" + base64.b64encode(pub)


def test_dkim_signature_survives_capture(postfix_m, switchyard):
    dkim = pytest.importorskip("dkim")
    pf = postfix_m
    sw = start_milter(switchyard, pf, {"mode": "capture"},
                      {"delivery": {"workers": 2, "default_transport": "capture"}})
    priv, txt = dkim_key()
    tag = "dkim%d" % time.time_ns()
    # Awkward but legal header shapes: no space after the colon, extra
    # white space, folding with tabs and spaces; relaxed and simple both.
    msg = (b"From: Sender <s@example.org>\r\n"
           b"To:someone@example.net\r\n"
           b"Subject:   " + tag.encode() + b"\r\n\t folded part\r\n"
           b"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\n"
           b"Message-ID: <" + tag.encode() + b"@example.org>\r\n"
           b"X-Long: a\r\n  b\r\n\tc\r\n"
           b"\r\n"
           b"body line 1\r\n  indented\r\n\r\ntrailing\r\n")
    signed = msg
    for canon in ((b"simple", b"simple"), (b"relaxed", b"relaxed")):
        sig = dkim.sign(signed, b"sel", b"example.org", priv, canonicalize=canon,
                        include_headers=[b"From", b"To", b"Subject", b"Date", b"Message-ID", b"X-Long"])
        signed = sig + signed

    def dns(name, timeout=5):
        return txt if name == b"sel._domainkey.example.org." else None

    assert dkim.verify(signed, dnsfunc=dns)
    swaks_data(pf, "s@example.org", ["dkim@example.net"], signed)
    pf.wait_log(r"milter-discard")
    qid = sylib.wait_for(lambda: next((f.split(".")[0] for f in os.listdir(sw.capture_dir)
                                       if f.endswith(".eml")), None)
                         if os.path.isdir(sw.capture_dir) else None, 60, "captured message")
    eml = sw.wait_captures(qid, 1)[0]
    assert signed in eml, "the message was not kept byte for byte:\n%r" % eml[:3000]
    # Both signatures (the simple one is the strict test) verify after the trip.
    d = dkim.DKIM(eml)
    assert d.verify(0, dnsfunc=dns) and d.verify(1, dnsfunc=dns)


def test_policy_hold_then_release(postfix_m, switchyard):
    pf = postfix_m
    sw = start_milter(switchyard, pf, {"mode": "policy", "route_header": "X-Switchyard-Route",
                                       "hold_header": "X-Switchyard-Hold"})
    out = sw.cli("hold", "add", "--recipient", "held.example").stdout
    rid = re.search(r"(\d+)", out).group(1)
    tag = "hold%d" % time.time_ns()
    swaks_data(pf, "s@example.org", ["x@held.example"], fixed_message(tag))
    pf.wait_log(r"milter-hold: END-OF-MESSAGE")
    assert re.search(r"mta_qid=\w+: held in the MTA by hold rule %s" % rid, sw.log_text)
    q = sylib.wait_for(lambda: [m for m in pf.queue() if m.get("queue_name") == "hold"], 30,
                       "the message in Postfix's hold queue")
    assert len(q) == 1
    assert not pf.local.dumps_with(tag)
    # a message no rule matches goes straight through, with the route header
    tag2 = "nohold%d" % time.time_ns()
    swaks_data(pf, "s@example.org", ["y@free.example"], fixed_message(tag2))
    got = sylib.wait_for(lambda: pf.local.dumps_with(tag2), 60, "the unheld message")
    assert "X-Switchyard-Route: capture" in got[0] and "X-Switchyard-Hold" not in got[0]
    # release: postsuper -H, then a flush
    sylib.run(["postsuper", "-c", pf.etc, "-H", q[0]["queue_id"]])
    pf.flush()
    got = sylib.wait_for(lambda: pf.local.dumps_with(tag), 60, "the released message")
    assert "X-Switchyard-Hold: %s" % rid in got[0]
    pf.wait_empty()
    assert len(pf.local.dumps_with(tag)) == 1


def test_killed_between_commit_and_reply_retry_delivered_once(postfix_m, switchyard, sink):
    pf = postfix_m
    # No delivery workers in the first run: one could claim the message in
    # the instant before the crash, and its lease would hold it for minutes.
    sw = start_milter(switchyard, pf, {"mode": "capture"},
                      sylib.deep_merge(relay_to(sink), {"delivery": {"workers": 0}}),
                      env={"SWITCHYARD_TEST_MILTER_CRASH_AFTER_COMMIT": "1"})
    tag = "crash%d" % time.time_ns()
    msg = fixed_message(tag)
    p = swaks_data(pf, "s@example.org", ["crash@example.net"], msg, check=False)
    assert re.search(r"^<\*\*\s+451 4\.7\.1 ", p.stdout, re.M), p.stdout
    sylib.wait_for(lambda: not sw.running, 30, "switchyard to die after the commit")
    sw.proc.wait(30)
    sw.exits.append(("crash-hook", sw.proc.returncode))
    assert "dying between commit and reply" in sw.log_text
    # The MTA kept nothing; the client retries the same message.
    pf.wait_empty()
    sw.config["delivery"]["workers"] = 2
    sw.write_config()
    sw.start()
    sylib.wait_for(lambda: sylib.port_open(pf.milter_port), 30, "milter port")
    swaks_data(pf, "s@example.org", ["crash@example.net"], msg)
    pf.wait_log(r"milter-discard")
    got = sylib.wait_for(lambda: sink.dumps_with(tag), 60, "the message at the sink")
    time.sleep(2)
    assert len(sink.dumps_with(tag)) == 1, sink.dumps_with(tag)
    assert re.search(r"duplicate of \w+ \(the MTA retried", sw.log_text), sw.log_tail()
    assert not pf.local.dumps_with(tag)
