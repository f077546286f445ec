"""test_smtp_client.py - the SMTP client and the relay transports against real servers.

Drives relay_deliver() through tests/tools/relay_send (built next to the
switchyard binary: $(BUILD)/tests/relay_send) against:
  - Postfix's smtp-sink with its failure injection (-f/-r/-q hard, soft and
    dropped replies per command, -e no ESMTP, -8 no 8BITMIME, -N no DSN),
  - aiosink.py (aiosmtpd): STARTTLS or implicit TLS with a certificate made
    here, AUTH PLAIN/LOGIN, per-recipient results, SIZE, SMTPUTF8, REQUIRETLS,
  - a private Postfix submission port whose SASL is a private Dovecot, where
    PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1 and SCRAM-SHA-256 authenticate for real.
"""
import glob
import json
import os
import subprocess

import pytest

import sylib

HERE = os.path.dirname(os.path.abspath(__file__))
LONG = "30s"        # client timeouts: generous, a slow machine must not fail a test


@pytest.fixture(scope="module")
def relay_send():
    b = os.path.join(os.path.dirname(os.path.abspath(os.environ["SWITCHYARD_BIN"])), "tests", "relay_send")
    if not os.access(b, os.X_OK):
        pytest.fail("%s is missing: make BUILD=... %s" % (b, b))
    return b


def make_cert(d, name, san):
    key, cert = os.path.join(d, name + ".key"), os.path.join(d, name + ".pem")
    sylib.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
               "-days", "2", "-subj", "/CN=" + name, "-addext", "subjectAltName=" + san])
    return cert, key


@pytest.fixture(scope="module")
def certs(base_dir):
    d = os.path.join(base_dir, "certs-smtp-client")
    os.makedirs(d, exist_ok=True)
    good = make_cert(d, "localhost", "DNS:localhost,IP:127.0.0.1")
    other = make_cert(d, "other", "DNS:other.test")
    return {"good": good, "other": other}


class Procs:
    def __init__(self):
        self.procs = []

    def add(self, p):
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            sylib.stop_process(p, timeout=15)


@pytest.fixture
def procs():
    p = Procs()
    yield p
    p.stop_all()


@pytest.fixture
def smtp_sink(workdir, procs):
    """smtp_sink(*flags) -> (port, dumpdir): smtp-sink on a free port, each
    transaction dumped to dumpdir."""
    def start(*flags):
        port = sylib.free_port()
        dump = os.path.join(workdir, "sinkdump%d" % port)
        os.makedirs(dump)
        os.chmod(dump, 0o777)
        p = procs.add(subprocess.Popen(["smtp-sink", "-u", "nobody", "-d", dump + "/%M."] + list(flags) +
                                       ["127.0.0.1:%d" % port, "50"], start_new_session=True,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        sylib.wait_for(lambda: sylib.port_open(port), sylib.START_TIMEOUT, "smtp-sink on %d" % port)
        assert p.poll() is None
        return port, dump
    return start


@pytest.fixture
def aiosink(workdir, procs, certs):
    """aiosink(*flags, tls=True) -> (port, outdir)."""
    def start(*flags, tls=True, cert="good"):
        port = sylib.free_port()
        out = os.path.join(workdir, "aio%d" % port)
        argv = [sylib.PY, os.path.join(HERE, "aiosink.py"), "--port", str(port), "--out", out]
        if tls:
            argv += ["--cert", certs[cert][0], "--key", certs[cert][1]]
        p = procs.add(subprocess.Popen(argv + list(flags), start_new_session=True, stdout=subprocess.PIPE,
                                       stderr=open(os.path.join(workdir, "aio%d.log" % port), "w"), text=True))
        line = p.stdout.readline()
        assert line.strip() == "ready", "aiosink did not start: %r" % line
        return port, out
    return start


def sink_messages(out):
    return [json.load(open(f)) for f in sorted(glob.glob(os.path.join(out, "*.json")),
                                               key=lambda f: int(os.path.basename(f).split(".")[0]))]


def sink_dumps(dump):
    return [open(f, encoding="latin-1").read() for f in sorted(glob.glob(os.path.join(dump, "*")))]


def write_cfg(workdir, name, transport):
    t = {"command_timeout": LONG, "greeting_timeout": LONG, "data_done_timeout": LONG,
         "connect_timeout": LONG}
    t.update(transport)
    cfg = {
        "node": "clienttest",
        "redis": {"address": "unix:" + os.path.join(workdir, "redis.sock")},
        "spool": {"dir": os.path.join(workdir, "spool")},
        "lmtp": {"hostname": "client.example.org",
                 "listeners": [{"name": "postfix", "address": "127.0.0.1:%d" % sylib.free_port()}]},
        "capture": {"dir": os.path.join(workdir, "capture")},
        "transports": {name: t},
    }
    path = os.path.join(workdir, "cfg-%s-%d.yaml" % (name, sylib.free_port()))
    with open(path, "w") as f:
        f.write(sylib.yaml_dump(cfg))
    return path


MSG = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: test\r\n\r\nhello\r\n.leading dot\r\n"


def send(relay_send, workdir, transport, rcpts, msg=MSG, opts=(), sender="a@example.org", name="t"):
    """Runs relay_send; returns a list of deliveries, each
    {"attempt": {...}, "rcpts": {addr: (status, relayed, reply)}}."""
    cfg = write_cfg(workdir, name, transport)
    mpath = os.path.join(workdir, "msg-%d.eml" % sylib.free_port())
    with open(mpath, "wb") as f:
        f.write(msg)
    p = sylib.run([relay_send, "-c", cfg, "-t", name, "-m", mpath, "-f", sender] + list(opts) + list(rcpts),
                  timeout=300)
    out = []
    for line in p.stdout.splitlines():
        if line.startswith("attempt "):
            kv = dict(x.split("=", 1) for x in line.split()[1:] if "=" in x)
            kv["tls"] = line.split("tls=", 1)[1].rsplit(" not_attempted=", 1)[0]
            out.append({"attempt": kv, "rcpts": {}})
        elif line.startswith("rcpt "):
            _, addr, status, relayed, reply = line.split(" ", 4)
            out[-1]["rcpts"][addr] = (status, relayed == "relayed=1", reply)
    assert out, "no output from relay_send:\n%s\n%s" % (p.stdout, p.stderr)
    for line in p.stderr.splitlines():
        assert "secret" not in line, "a password reached the log: %s" % line
    assert "secret" not in p.stdout
    return out


def smtp(port, **kw):
    t = {"type": "smtp", "host": "127.0.0.1", "port": port, "tls": "opportunistic"}
    t.update(kw)
    return t


# --------------------------------------------------------------------------
# smtp-sink: protocol and failure injection

def test_delivers_and_passes_dsn_parameters(relay_send, workdir, smtp_sink):
    port, dump = smtp_sink()
    r = send(relay_send, workdir, smtp(port), ["b@example.net", "c@example.net"],
             opts=["-N", "SF", "-O", "-E", "id+1=x", "-e", "hdrs"])[0]
    assert r["attempt"]["addr"] == "127.0.0.1"
    assert r["attempt"]["tls"] == "-"
    for a in ("b@example.net", "c@example.net"):
        assert r["rcpts"][a][0] == "ok"
        assert r["rcpts"][a][2].startswith("250 2.0.0")
        assert not r["rcpts"][a][1]         # the sink has DSN: no "relayed"
    d = sink_dumps(dump)
    assert len(d) == 1
    assert "X-Helo-Args: client.example.org\n" in d[0]
    assert "X-Mail-Args: <a@example.org> RET=HDRS ENVID=id+2B1+3Dx\n" in d[0]
    assert "X-Rcpt-Args: <b@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.net\n" in d[0]
    assert "\nhello\n.leading dot\n" in d[0]     # dot-stuffed on the wire, unstuffed by the sink


def test_no_dsn_extension_means_relayed(relay_send, workdir, smtp_sink):
    port, dump = smtp_sink("-N")
    r = send(relay_send, workdir, smtp(port), ["b@example.net"], opts=["-N", "SF", "-O", "-e", "full"])[0]
    assert r["rcpts"]["b@example.net"][:2] == ("ok", True)
    d = sink_dumps(dump)[0]
    assert "X-Mail-Args: <a@example.org>\n" in d
    assert "X-Rcpt-Args: <b@example.net>\n" in d


@pytest.mark.parametrize("flag,cmd,status,enh", [
    ("-f", "mail", "perm", "5.3.0"), ("-r", "mail", "temp", "4.3.0"),
    ("-f", "rcpt", "perm", "5.3.0"), ("-r", "rcpt", "temp", "4.3.0"),
    ("-f", "data", "perm", "5.3.0"), ("-r", "data", "temp", "4.3.0"),
    ("-f", ".", "perm", "5.3.0"), ("-r", ".", "temp", "4.3.0"),
])
def test_rejections_by_command(relay_send, workdir, smtp_sink, flag, cmd, status, enh):
    port, dump = smtp_sink(flag, cmd)
    r = send(relay_send, workdir, smtp(port), ["b@example.net", "c@example.net"])[0]
    for a in ("b@example.net", "c@example.net"):
        assert r["rcpts"][a][0] == status, r
        assert " %s " % enh in r["rcpts"][a][2]
    if cmd in ("mail", "rcpt", "data"):
        assert sink_dumps(dump) == []       # no DATA without an accepted recipient


@pytest.mark.parametrize("cmd", ["ehlo", "mail", "rcpt", "data"])
def test_connection_dropped_is_temporary(relay_send, workdir, smtp_sink, cmd):
    port, _ = smtp_sink("-q", cmd)
    r = send(relay_send, workdir, smtp(port), ["b@example.net"])[0]
    status, _, reply = r["rcpts"]["b@example.net"]
    assert status == "temp" and reply.startswith("4."), reply


def test_connection_lost_after_final_dot_is_temporary(relay_send, workdir, smtp_sink):
    port, _ = smtp_sink("-q", ".")
    r = send(relay_send, workdir, smtp(port), ["b@example.net"])[0]
    status, _, reply = r["rcpts"]["b@example.net"]
    assert status == "temp"
    assert reply.startswith("4.4.2 connection lost after the end of data"), reply


def test_421_is_temporary(relay_send, workdir, smtp_sink):
    port, _ = smtp_sink("-Q", "rcpt")
    r = send(relay_send, workdir, smtp(port), ["b@example.net"])[0]
    assert r["rcpts"]["b@example.net"][0] == "temp"


def test_helo_fallback(relay_send, workdir, smtp_sink):
    port, dump = smtp_sink("-e")
    r = send(relay_send, workdir, smtp(port), ["b@example.net"], opts=["-N", "S"])[0]
    assert r["rcpts"]["b@example.net"][:2] == ("ok", True)
    assert "X-Client-Proto: SMTP\n" in sink_dumps(dump)[0]


def test_8bit_to_a_server_without_8bitmime_fails_5_6_3(relay_send, workdir, smtp_sink):
    port, dump = smtp_sink("-8")
    msg = MSG + "caf\u00e9\r\n".encode()
    r = send(relay_send, workdir, smtp(port), ["b@example.net"], msg=msg)[0]
    status, _, reply = r["rcpts"]["b@example.net"]
    assert status == "perm" and reply.startswith("5.6.3 "), reply
    assert sink_dumps(dump) == []
    # the same message where 8BITMIME is offered goes out with BODY=8BITMIME
    port, dump = smtp_sink()
    r = send(relay_send, workdir, smtp(port), ["b@example.net"], msg=msg)[0]
    assert r["rcpts"]["b@example.net"][0] == "ok"
    assert "X-Mail-Args: <a@example.org> BODY=8BITMIME\n" in sink_dumps(dump)[0]


def test_tls_required_without_starttls_defers(relay_send, workdir, smtp_sink):
    port, dump = smtp_sink()
    for mode in ("required", "required-unverified"):
        r = send(relay_send, workdir, smtp(port, tls=mode), ["b@example.net"])[0]
        status, _, reply = r["rcpts"]["b@example.net"]
        assert status == "temp" and reply.startswith("4.7.5 ") and "STARTTLS" in reply, reply
    assert sink_dumps(dump) == []


def test_connection_refused(relay_send, workdir):
    port = sylib.free_port()
    r = send(relay_send, workdir, smtp(port), ["b@example.net"])[0]
    status, _, reply = r["rcpts"]["b@example.net"]
    assert status == "temp" and reply.startswith("4.4.1 "), reply


# --------------------------------------------------------------------------
# aiosink: TLS, AUTH, per-recipient results, SIZE, SMTPUTF8, REQUIRETLS, reuse

def test_mixed_recipient_results(relay_send, workdir, aiosink, certs):
    port, out = aiosink()
    r = send(relay_send, workdir, smtp(port, host="localhost", tls="required", tls_ca_file=certs["good"][0]),
             ["b@example.net", "reject@example.net", "defer@example.net", "c@example.net"])[0]
    assert r["attempt"]["tls"].startswith("TLSv1.")
    assert r["rcpts"]["b@example.net"][0] == "ok"
    assert r["rcpts"]["c@example.net"][0] == "ok"
    assert r["rcpts"]["reject@example.net"][0] == "perm"
    assert r["rcpts"]["reject@example.net"][2].startswith("550 5.1.1 ")
    assert r["rcpts"]["defer@example.net"][0] == "temp"
    m = sink_messages(out)
    assert len(m) == 1
    assert m[0]["rcpt_tos"] == ["b@example.net", "c@example.net"]
    assert m[0]["tls"] is True
    assert m[0]["data"].endswith("\r\nhello\r\n.leading dot\r\n")


def test_no_data_when_every_recipient_fails(relay_send, workdir, aiosink):
    port, out = aiosink(tls=False)
    r = send(relay_send, workdir, smtp(port), ["reject@example.net", "defer@example.net"])[0]
    assert r["rcpts"]["reject@example.net"][0] == "perm"
    assert r["rcpts"]["defer@example.net"][0] == "temp"
    assert sink_messages(out) == []


def test_452_defers_the_rest(relay_send, workdir, aiosink):
    port, out = aiosink(tls=False)
    r = send(relay_send, workdir, smtp(port), ["b@example.net", "full@example.net", "c@example.net"])[0]
    assert r["rcpts"]["b@example.net"][0] == "ok"
    assert r["rcpts"]["full@example.net"][0] == "temp"
    assert r["rcpts"]["full@example.net"][2].startswith("452 4.5.3")
    # aiosmtpd has no PIPELINING: the client stops at the 452
    assert r["rcpts"]["c@example.net"][0] == "temp"
    assert sink_messages(out)[0]["rcpt_tos"] == ["b@example.net"]


def test_452_recipient_limit_splits_into_further_transactions(relay_send, workdir, aiosink):
    """A peer that takes 2 recipients per transaction: the rest go in further
    transactions on the same connection, at once (RFC 5321 §4.5.3.1.10)."""
    port, out = aiosink("--rcpt-limit", "2", tls=False)
    rcpts = ["r%d@example.net" % i for i in range(5)]
    deliveries = send(relay_send, workdir, smtp(port), rcpts)
    assert len(deliveries) == 1
    assert all(deliveries[0]["rcpts"][a][0] == "ok" for a in rcpts), deliveries
    m = sink_messages(out)
    assert [x["rcpt_tos"] for x in m] == [rcpts[0:2], rcpts[2:4], rcpts[4:5]]
    assert len({x["peer_port"] for x in m}) == 1     # one connection


def test_max_recipients_splits_transactions(relay_send, workdir, aiosink):
    port, out = aiosink(tls=False)
    rcpts = ["m%d@example.net" % i for i in range(5)]
    r = send(relay_send, workdir, smtp(port, max_recipients=3), rcpts + ["reject@example.net"])[0]
    assert all(r["rcpts"][a][0] == "ok" for a in rcpts)
    assert r["rcpts"]["reject@example.net"][0] == "perm"
    assert [x["rcpt_tos"] for x in sink_messages(out)] == [rcpts[0:3], rcpts[3:5]]


def test_bare_lf_and_cr_become_crlf(relay_send, workdir, aiosink):
    port, out = aiosink(tls=False)
    msg = b"Subject: x\r\n\r\nline1\nline2\r.\n..two\r\nlast"
    r = send(relay_send, workdir, smtp(port), ["b@example.net"], msg=msg)[0]
    assert r["rcpts"]["b@example.net"][0] == "ok"
    assert sink_messages(out)[0]["data"] == "Subject: x\r\n\r\nline1\r\nline2\r\n.\r\n..two\r\nlast\r\n"


def test_tls_modes(relay_send, workdir, aiosink, certs):
    port, out = aiosink()
    ca = certs["good"][0]
    # required: verified against the configured CA, by host name and by IP address
    for host in ("localhost", "127.0.0.1"):
        r = send(relay_send, workdir, smtp(port, host=host, tls="required", tls_ca_file=ca), ["b@example.net"])[0]
        assert r["rcpts"]["b@example.net"][0] == "ok", r
    # required with the system's store: the self-signed certificate is not trusted
    r = send(relay_send, workdir, smtp(port, host="localhost", tls="required"), ["b@example.net"])[0]
    status, _, reply = r["rcpts"]["b@example.net"]
    assert status == "temp" and reply.startswith("4.7.5 ") and "not verified" in reply, reply
    # required-unverified and opportunistic accept it
    for mode in ("required-unverified", "opportunistic"):
        r = send(relay_send, workdir, smtp(port, host="localhost", tls=mode), ["b@example.net"])[0]
        assert r["rcpts"]["b@example.net"][0] == "ok"
        assert r["attempt"]["tls"].startswith("TLSv1.")
    # none: plain text even though STARTTLS is offered
    r = send(relay_send, workdir, smtp(port, tls="none"), ["b@example.net"])[0]
    assert r["rcpts"]["b@example.net"][0] == "ok" and r["attempt"]["tls"] == "-"
    assert [m["tls"] for m in sink_messages(out)] == [True, True, True, True, False]


def test_tls_required_wrong_host_name(relay_send, workdir, aiosink, certs):
    port, out = aiosink(cert="other")
    # the CA is right, the name is not: certificate for other.test, connecting to localhost
    r = send(relay_send, workdir, smtp(port, host="localhost", tls="required", tls_ca_file=certs["other"][0]),
             ["b@example.net"])[0]
    status, _, reply = r["rcpts"]["b@example.net"]
    assert status == "temp" and reply.startswith("4.7.5 "), reply
    assert sink_messages(out) == []


def test_submission_auth_plain_and_login(relay_send, workdir, aiosink, certs):
    port, out = aiosink("--auth", "user1:secret1", "--auth-require-tls")
    ca = certs["good"][0]
    for mech in ("PLAIN", "LOGIN"):
        t = {"type": "submission", "host": "localhost", "port": port, "tls": "required", "tls_ca_file": ca,
             "auth": {"username": "user1", "password": "secret1", "mechanisms": [mech]}}
        r = send(relay_send, workdir, t, ["b@example.net"])[0]
        assert r["rcpts"]["b@example.net"][0] == "ok", r
    assert [m["auth"] for m in sink_messages(out)] == ["user1", "user1"]


@pytest.mark.parametrize("tamper", [False, True])
def test_scram_sha_256_plus_tls_unique(relay_send, workdir, aiosink, certs, tamper):
    """SCRAM-SHA-256-PLUS end to end against an independent server (aiosink's
    RFC 5802 code in Python) over TLS 1.2 with tls-unique; a server whose
    view of the channel differs (a man in the middle) refuses it."""
    flags = ["--auth", "user1:secret1", "--tls12", "--scram-plus"] + (["--scram-plus-tamper"] if tamper else [])
    port, out = aiosink(*flags)
    t = {"type": "submission", "host": "localhost", "port": port, "tls": "required",
         "tls_ca_file": certs["good"][0], "auth": {"username": "user1", "password": "secret1"}}
    r = send(relay_send, workdir, t, ["b@example.net"])[0]
    status, _, reply = r["rcpts"]["b@example.net"]
    if tamper:
        assert status == "perm" and reply.startswith("5.7.8 ") and "535" in reply, reply
        # a failed attempt still records where it went and how
        assert r["attempt"]["addr"] == "127.0.0.1" and r["attempt"]["tls"].startswith("TLSv1.2 ")
        assert sink_messages(out) == []
    else:
        assert status == "ok", reply
        assert r["attempt"]["tls"].startswith("TLSv1.2 ")
        assert sink_messages(out)[0]["auth"] == "user1"


def test_submissions_implicit_tls(relay_send, workdir, aiosink, certs):
    port, out = aiosink("--implicit-tls", "--auth", "user1:secret1")
    t = {"type": "submissions", "host": "localhost", "port": port, "tls_ca_file": certs["good"][0],
         "auth": {"username": "user1", "password": "secret1"}}
    r = send(relay_send, workdir, t, ["b@example.net"])[0]
    assert r["rcpts"]["b@example.net"][0] == "ok", r
    assert r["attempt"]["tls"].startswith("TLSv1.")
    assert sink_messages(out)[0]["auth"] == "user1"


def test_auth_failures(relay_send, workdir, aiosink, certs):
    port, out = aiosink("--auth", "user1:secret1")
    ca = certs["good"][0]
    base = {"type": "submission", "host": "localhost", "port": port, "tls": "required", "tls_ca_file": ca}
    # wrong password: permanent, the server's 535 kept, the password never shown
    r = send(relay_send, workdir, dict(base, auth={"username": "user1", "password": "secret-wrong"}),
             ["b@example.net"])[0]
    status, _, reply = r["rcpts"]["b@example.net"]
    assert status == "perm" and reply.startswith("5.7.8 ") and "535" in reply, reply
    # no mechanism in common: permanent, with what the server offers
    r = send(relay_send, workdir, dict(base, auth={"username": "user1", "password": "secret1",
                                                   "mechanisms": ["CRAM-MD5", "SCRAM-SHA-256"]}),
             ["b@example.net"])[0]
    status, _, reply = r["rcpts"]["b@example.net"]
    assert status == "perm" and reply.startswith("5.7.4 no SASL mechanism in common"), reply
    assert "LOGIN PLAIN" in reply
    assert sink_messages(out) == []


def test_auth_never_in_plain_text_unless_allowed(relay_send, workdir, aiosink):
    port, out = aiosink("--auth", "user1:secret1", tls=False)
    t = {"type": "submission", "host": "127.0.0.1", "port": port, "tls": "opportunistic",
         "auth": {"username": "user1", "password": "secret1", "mechanisms": ["PLAIN"]}}
    r = send(relay_send, workdir, t, ["b@example.net"])[0]
    status, _, reply = r["rcpts"]["b@example.net"]
    assert status == "temp" and reply.startswith("4.7.0 not sending credentials"), reply
    assert sink_messages(out) == []
    r = send(relay_send, workdir, dict(t, allow_plaintext_auth=True), ["b@example.net"])[0]
    assert r["rcpts"]["b@example.net"][0] == "ok", r
    assert sink_messages(out)[0]["auth"] == "user1"


def test_size_limit_5_3_4(relay_send, workdir, aiosink):
    port, out = aiosink("--size", "50", tls=False)
    r = send(relay_send, workdir, smtp(port), ["b@example.net"], msg=MSG + b"x" * 100 + b"\r\n")[0]
    status, _, reply = r["rcpts"]["b@example.net"]
    assert status == "perm" and reply.startswith("5.3.4 "), reply
    r = send(relay_send, workdir, smtp(port), ["b@example.net"], msg=b"Subject: s\r\n\r\nx\r\n")[0]
    assert r["rcpts"]["b@example.net"][0] == "ok"
    assert sink_messages(out)[0]["mail_options"] == ["SIZE=17"]


def test_smtputf8(relay_send, workdir, aiosink):
    port, out = aiosink(tls=False)
    r = send(relay_send, workdir, smtp(port), ["b@example.net"], opts=["-u"])[0]
    status, _, reply = r["rcpts"]["b@example.net"]
    assert status == "perm" and reply.startswith("5.6.7 "), reply
    r = send(relay_send, workdir, smtp(port), ["j\u00f6rg@example.net"])[0]
    assert r["rcpts"]["j\u00f6rg@example.net"][0] == "perm"
    port, out = aiosink("--smtputf8", tls=False)
    r = send(relay_send, workdir, smtp(port), ["j\u00f6rg@example.net"])[0]
    assert r["rcpts"]["j\u00f6rg@example.net"][0] == "ok", r
    assert "SMTPUTF8" in sink_messages(out)[0]["mail_options"]


def test_requiretls(relay_send, workdir, aiosink, certs):
    ca = certs["good"][0]
    port, out = aiosink()
    # verified TLS, but the server does not offer REQUIRETLS
    r = send(relay_send, workdir, smtp(port, host="localhost", tls="required", tls_ca_file=ca),
             ["b@example.net"], opts=["-R"])[0]
    status, _, reply = r["rcpts"]["b@example.net"]
    assert status == "perm" and reply.startswith("5.7.30 "), reply
    port, out = aiosink("--requiretls")
    # offered, but TLS not verified
    r = send(relay_send, workdir, smtp(port, host="localhost", tls="required-unverified"),
             ["b@example.net"], opts=["-R"])[0]
    assert r["rcpts"]["b@example.net"][2].startswith("5.7.30 ")
    r = send(relay_send, workdir, smtp(port, host="localhost", tls="required", tls_ca_file=ca),
             ["b@example.net"], opts=["-R"])[0]
    assert r["rcpts"]["b@example.net"][0] == "ok", r
    m = sink_messages(out)
    assert len(m) == 1 and m[0]["requiretls"] is True


def test_connection_reuse_and_idle_timeout(relay_send, workdir, aiosink, certs):
    port, out = aiosink("--auth", "user1:secret1")
    t = {"type": "submission", "host": "localhost", "port": port, "tls": "required",
         "tls_ca_file": certs["good"][0], "auth": {"username": "user1", "password": "secret1"}}
    r = send(relay_send, workdir, t, ["b@example.net"], opts=["-n", "3"])
    assert [x["rcpts"]["b@example.net"][0] for x in r] == ["ok"] * 3
    ports = [m["peer_port"] for m in sink_messages(out)]
    assert len(ports) == 3 and len(set(ports)) == 1, ports     # one connection, RSET between
    # idle_timeout 1s and 2.5 s between deliveries: a new connection each time
    r = send(relay_send, workdir, dict(t, idle_timeout="1s"), ["b@example.net"], opts=["-n", "2", "-w", "2500"])
    assert [x["rcpts"]["b@example.net"][0] for x in r] == ["ok"] * 2
    ports2 = [m["peer_port"] for m in sink_messages(out)][3:]
    assert len(set(ports2)) == 2, ports2


def test_cached_connection_closed_by_server_is_replaced(relay_send, workdir, smtp_sink):
    # smtp-sink -n 1... is per process; use a server that hangs up after each message
    port, dump = smtp_sink("-q", "rset")
    r = send(relay_send, workdir, smtp(port), ["b@example.net"], opts=["-n", "3"])
    assert [x["rcpts"]["b@example.net"][0] for x in r] == ["ok"] * 3
    assert len(sink_dumps(dump)) == 3


# --------------------------------------------------------------------------
# Postfix submission + Dovecot SASL: every mechanism authenticates for real

@pytest.fixture(scope="module")
def pf_submission(base_dir, certs):
    d = os.path.join(base_dir, "pf-submission")
    dc = os.path.join(base_dir, "dovecot-auth")
    auth_port, smtpd_port, sub_port = sylib.free_port(), sylib.free_port(), sylib.free_port()
    sylib.run([os.path.join(HERE, "dovecot-auth.sh"), "start", dc, str(auth_port)])
    env = dict(os.environ, PF_SMTPD_PORT=str(smtpd_port), PF_SUBMISSION_PORT=str(sub_port),
               PF_SASL_PATH="inet:127.0.0.1:%d" % auth_port)
    cert, key = certs["good"]
    try:
        sylib.run([sylib.PF_SCRIPT, "init", d, "smtpd_tls_cert_file=" + cert, "smtpd_tls_key_file=" + key,
                   "smtpd_tls_security_level=may", "default_transport=discard:", "relay_transport=discard:"],
                  env=env)
        sylib.run([sylib.PF_SCRIPT, "start", d])
        sylib.wait_for(lambda: sylib.port_open(sub_port), sylib.START_TIMEOUT, "submission port")
        yield {"port": sub_port, "maillog": os.path.join(d, "log", "maillog")}
    finally:
        sylib.run([sylib.PF_SCRIPT, "stop", d], check=False)
        sylib.run([os.path.join(HERE, "dovecot-auth.sh"), "stop", dc], check=False)


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"])
def test_postfix_dovecot_sasl(relay_send, workdir, pf_submission, certs, mech):
    t = {"type": "submission", "host": "localhost", "port": pf_submission["port"], "tls": "required",
         "tls_ca_file": certs["good"][0],
         "auth": {"username": "user1@example.org", "password": "secret1", "mechanisms": [mech]}}
    r = send(relay_send, workdir, t, ["b@example.net"])[0]
    status, _, reply = r["rcpts"]["b@example.net"]
    assert status == "ok", reply
    qid = reply.rsplit(" ", 1)[1]
    sylib.wait_for(lambda: "%s: client=localhost[127.0.0.1], sasl_method=%s, sasl_username=user1@example.org"
                   % (qid, mech) in open(pf_submission["maillog"]).read(), 60, "the maillog line")


def test_postfix_dovecot_wrong_password_and_preference(relay_send, workdir, pf_submission, certs):
    base = {"type": "submission", "host": "localhost", "port": pf_submission["port"], "tls": "required",
            "tls_ca_file": certs["good"][0]}
    r = send(relay_send, workdir, dict(base, auth={"username": "user1@example.org", "password": "secret-bad",
                                                   "mechanisms": ["SCRAM-SHA-256"]}), ["b@example.net"])[0]
    status, _, reply = r["rcpts"]["b@example.net"]
    assert status == "perm" and "535 5.7.8" in reply, reply
    # default preference: strongest first; Dovecot 2.3 has no -PLUS, so SCRAM-SHA-256
    r = send(relay_send, workdir, dict(base, auth={"username": "user1@example.org", "password": "secret1"}),
             ["b@example.net"])[0]
    status, _, reply = r["rcpts"]["b@example.net"]
    assert status == "ok", reply
    qid = reply.rsplit(" ", 1)[1]
    sylib.wait_for(lambda: "%s: client=localhost[127.0.0.1], sasl_method=SCRAM-SHA-256," % qid
                   in open(pf_submission["maillog"]).read(), 60, "the maillog line")


# --------------------------------------------------------------------------
# LMTP, limits, hostile servers

def test_lmtp_one_reply_per_recipient(relay_send, workdir, smtp_sink):
    port, dump = smtp_sink("-L")
    t = {"type": "lmtp", "host": "127.0.0.1", "port": port, "tls": "none"}
    r = send(relay_send, workdir, t, ["b@example.net", "c@example.net"])[0]
    assert r["rcpts"]["b@example.net"][0] == "ok" and r["rcpts"]["c@example.net"][0] == "ok"
    assert "X-Client-Proto: LMTP\n" in sink_dumps(dump)[0]
    port, dump = smtp_sink("-L", "-f", ".")
    r = send(relay_send, workdir, dict(t, port=port), ["b@example.net", "c@example.net"])[0]
    assert [r["rcpts"][a][0] for a in ("b@example.net", "c@example.net")] == ["perm", "perm"]


def test_lmtp_is_final_delivery_never_relayed(relay_send, workdir, smtp_sink):
    """LMTP delivers (RFC 2033): NOTIFY=SUCCESS to a server without DSN is
    still "delivered", never "relayed"; the SMTP transport says "relayed"."""
    port, _ = smtp_sink("-L", "-N")
    t = {"type": "lmtp", "host": "127.0.0.1", "port": port, "tls": "none"}
    r = send(relay_send, workdir, t, ["b@example.net"], opts=["-N", "S"])[0]
    assert r["rcpts"]["b@example.net"][:2] == ("ok", False)
    port, _ = smtp_sink("-N")
    r = send(relay_send, workdir, smtp(port), ["b@example.net"], opts=["-N", "S"])[0]
    assert r["rcpts"]["b@example.net"][:2] == ("ok", True)


@pytest.mark.parametrize("code,status", [("535 5.7.8 bad credentials", "perm"),
                                         ("538 5.7.11 encryption required", "temp"),
                                         ("534 5.7.9 mechanism too weak", "temp")])
def test_auth_refusal_only_535_bounces(relay_send, workdir, code, status):
    def script(c):
        c.sendall(b"220 auth ESMTP\r\n")
        _readline(c)
        c.sendall(b"250-auth\r\n250 AUTH PLAIN\r\n")
        _readline(c)                                # AUTH PLAIN ...
        c.sendall(code.encode() + b"\r\n")
        _readline(c)
        c.sendall(b"221 bye\r\n")
    port = hostile_server(script)
    t = smtp(port, tls="none", allow_plaintext_auth=True,
             auth={"username": "u", "password": "secret", "mechanisms": ["PLAIN"]})
    r = send(relay_send, workdir, t, ["b@example.net"])[0]
    assert r["rcpts"]["b@example.net"][0] == status, r
    assert code.split(" ", 1)[0] in r["rcpts"]["b@example.net"][2]


def test_refused_pipelined_mail_reads_every_rcpt_reply(relay_send, workdir):
    """MAIL refused in a pipelined batch: the replies to the RCPTs already
    sent are read, so the next command (QUIT) gets its own reply."""
    seen = {}

    def script(c):
        c.sendall(b"220 pipe ESMTP\r\n")
        _readline(c)
        c.sendall(b"250-pipe\r\n250 PIPELINING\r\n")
        buf = b""
        while buf.count(b"\r\n") < 3:
            x = c.recv(4096)
            if not x:
                return
            buf += x
        c.sendall(b"550 5.7.1 sender refused\r\n")
        # A client that does not wait for the RCPT replies speaks now.
        c.settimeout(1.5)
        try:
            early = c.recv(4096)
            if early:
                seen["early"] = early
        except OSError:
            pass
        c.settimeout(120)
        c.sendall(b"503 5.5.1 no MAIL\r\n503 5.5.1 no MAIL\r\n")
        seen["next"] = seen.get("early") or _readline(c)
        c.sendall(b"221 bye\r\n" if seen["next"].startswith(b"QUIT") else b"250 2.0.0 ok\r\n")
    port = hostile_server(script)
    r = send(relay_send, workdir, smtp(port, tls="none"), ["b@example.net", "c@example.net"])[0]
    assert [r["rcpts"][a][0] for a in ("b@example.net", "c@example.net")] == ["perm", "perm"]
    assert r["rcpts"]["b@example.net"][2].startswith("550 5.7.1")
    sylib.wait_for(lambda: "next" in seen, 30, "the command after the batch")
    assert "early" not in seen, seen
    assert seen["next"] in (b"QUIT\r\n", b"RSET\r\n")


def test_lmtp_unix_socket(relay_send, workdir, procs):
    sock = os.path.join(workdir, "lmtp.sock")
    procs.add(subprocess.Popen(["smtp-sink", "-L", "-u", "nobody", "unix:" + sock, "10"], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    sylib.wait_for(lambda: os.path.exists(sock), sylib.START_TIMEOUT, "smtp-sink socket")
    r = send(relay_send, workdir, {"type": "lmtp", "host": "unix:" + sock}, ["b@example.net"])[0]
    assert r["attempt"]["host"] == "unix:" + sock
    assert r["rcpts"]["b@example.net"][0] == "ok", r


def test_max_connections_busy_is_not_attempted(relay_send, workdir, smtp_sink):
    # the sink holds DATA for 12 s; with one connection allowed, the second
    # delivery waits 10 s for it and gives up without counting an attempt
    port, dump = smtp_sink("-w", "12")
    r = send(relay_send, workdir, smtp(port, max_connections=1), ["b@example.net"], opts=["-P", "2"])
    assert len(r) == 2
    got = sorted((x["attempt"]["not_attempted"], x["rcpts"]["b@example.net"][0]) for x in r)
    assert got == [("0", "ok"), ("1", "temp")], r
    busy = [x for x in r if x["attempt"]["not_attempted"] == "1"][0]
    assert busy["rcpts"]["b@example.net"][2].startswith("4.4.5 all 1 connections of transport t busy")


def hostile_server(script, nconn=1):
    """A scripted server on a free port for nconn connections in turn:
    script(conn) (or script(conn, i) when nconn > 1) speaks to the client."""
    import socket
    import threading
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(nconn)
    s.settimeout(120)

    def serve():
        try:
            for i in range(nconn):
                c, _ = s.accept()
                c.settimeout(120)
                try:
                    script(c) if nconn == 1 else script(c, i)
                except OSError:
                    pass
                finally:
                    c.close()
        except OSError:
            pass
        finally:
            s.close()
    threading.Thread(target=serve, daemon=True).start()
    return s.getsockname()[1]


def _readline(c):
    b = b""
    while not b.endswith(b"\n"):
        x = c.recv(1)
        if not x:
            break
        b += x
    return b


@pytest.mark.parametrize("case", ["long-line", "endless-reply", "garbage", "injection-after-starttls"])
def test_hostile_server_defers(relay_send, workdir, case):
    def script(c):
        c.sendall(b"220 hostile ESMTP\r\n")
        _readline(c)                                # EHLO
        if case == "long-line":
            c.sendall(b"250-" + b"x" * 5000 + b"\r\n250 ok\r\n")
        elif case == "endless-reply":
            c.sendall(b"250-hostile\r\n" * 200 + b"250 ok\r\n")
        elif case == "garbage":
            c.sendall(b"250 ok\r\n")
            _readline(c)                            # MAIL
            c.sendall(b"hello there\r\n")
        else:
            c.sendall(b"250-hostile\r\n250 STARTTLS\r\n")
            _readline(c)                            # STARTTLS
            c.sendall(b"220 go ahead\r\n250 injected\r\n")
        c.recv(1000)
    port = hostile_server(script)
    r = send(relay_send, workdir, smtp(port, tls="required-unverified" if "starttls" in case else "none"),
             ["b@example.net"])[0]
    status, _, reply = r["rcpts"]["b@example.net"]
    assert status == "temp", reply
    assert reply.startswith("4.5.0" if case != "injection-after-starttls" else "4.7.0"), reply


def _read_data(c):
    b = b""
    while not b.endswith(b"\r\n.\r\n"):
        x = c.recv(4096)
        if not x:
            break
        b += x
    return b


def test_pipelining_one_write_mixed_replies(relay_send, workdir):
    """MAIL and every RCPT arrive in one write when PIPELINING is offered;
    each recipient gets its own reply; the 452 and what follows it in the
    same batch are read in order; the recipient the 452 turned away goes in
    a second transaction on the same connection, after RSET."""
    seen = {}

    def script(c):
        c.sendall(b"220 pipe ESMTP\r\n")
        _readline(c)
        c.sendall(b"250-pipe\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        buf = b""
        while buf.count(b"\r\n") < 5:
            x = c.recv(4096)
            if not x:
                return
            buf += x
        seen["batch"] = buf
        c.sendall(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no\r\n452 4.5.3 too many\r\n250 2.1.5 ok\r\n")
        seen["data_cmd"] = _readline(c)
        c.sendall(b"354 go\r\n")
        seen["data"] = _read_data(c)
        c.sendall(b"250 2.0.0 queued\r\n")
        seen["after"] = _readline(c)
        c.sendall(b"250 2.0.0 reset\r\n")
        buf = b""
        while buf.count(b"\r\n") < 2:
            x = c.recv(4096)
            if not x:
                return
            buf += x
        seen["batch2"] = buf
        c.sendall(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n")
        _readline(c)
        c.sendall(b"354 go\r\n")
        _read_data(c)
        c.sendall(b"250 2.0.0 queued again\r\n")
        _readline(c)
        c.sendall(b"221 bye\r\n")
    port = hostile_server(script)
    rcpts = ["a1@example.net", "a2@example.net", "a3@example.net", "a4@example.net"]
    r = send(relay_send, workdir, smtp(port, tls="none"), rcpts)[0]
    assert seen["batch"].startswith(b"MAIL FROM:<a@example.org>")
    assert seen["batch"].count(b"RCPT TO:") == 4
    assert seen["data_cmd"] == b"DATA\r\n"
    assert [r["rcpts"][a][0] for a in rcpts] == ["ok", "perm", "ok", "ok"]
    assert r["rcpts"]["a1@example.net"][2] == "250 2.0.0 queued"
    assert seen["after"] == b"RSET\r\n"
    assert seen["batch2"] == b"MAIL FROM:<a@example.org>\r\nRCPT TO:<a3@example.net>\r\n"
    assert r["rcpts"]["a3@example.net"][2] == "250 2.0.0 queued again"


def test_opportunistic_tls_handshake_failure_retries_in_plain_text(relay_send, workdir):
    def script(c, i):
        c.sendall(b"220 broken-tls ESMTP\r\n")
        _readline(c)
        c.sendall(b"250-broken\r\n250 STARTTLS\r\n")
        line = _readline(c)
        if i == 0:
            assert line == b"STARTTLS\r\n"
            c.sendall(b"220 go ahead\r\n")
            c.recv(4096)                        # the ClientHello
            c.sendall(b"this is not TLS\r\n" * 10)
            return
        assert line.startswith(b"MAIL FROM:")   # the second time, no STARTTLS
        c.sendall(b"250 ok\r\n")
        _readline(c)
        c.sendall(b"250 ok\r\n")
        _readline(c)
        c.sendall(b"354 go\r\n")
        _read_data(c)
        c.sendall(b"250 2.0.0 plain\r\n")
        _readline(c)
    port = hostile_server(script, nconn=2)
    r = send(relay_send, workdir, smtp(port, tls="opportunistic"), ["b@example.net"])[0]
    assert r["rcpts"]["b@example.net"][:1] == ("ok",), r
    assert r["attempt"]["tls"] == "-"
    # required: no plain-text fallback
    port = hostile_server(script, nconn=2)
    r = send(relay_send, workdir, smtp(port, tls="required-unverified"), ["b@example.net"])[0]
    status, _, reply = r["rcpts"]["b@example.net"]
    assert status == "temp" and reply[:5] in ("4.7.5", "4.4.2"), reply
