#!/usr/bin/python3
"""aiosink.py - a scriptable SMTP sink on aiosmtpd for the SMTP client tests.

    aiosink.py --port P --out DIR [--cert C --key K] [--implicit-tls]
               [--auth USER:PASS] [--auth-require-tls] [--requiretls] [--smtputf8]
               [--size N] [--rcpt-limit N]

STARTTLS is offered when --cert/--key are given (or the whole session is TLS
with --implicit-tls, as on port 465). AUTH PLAIN and LOGIN check USER:PASS;
--scram-plus adds SCRAM-SHA-256-PLUS with tls-unique (use --tls12).
Recipients choose their fate by local part: reject* -> 550 5.1.1,
defer* -> 451 4.3.0, full* -> 452 4.5.3 (too many recipients), anything else
250; with --rcpt-limit N, every recipient past the N-th of a transaction
gets 452 4.5.3. Every accepted message is written to DIR/N.json (envelope, options,
TLS, authenticated user, the data as latin-1 text). Prints "ready" on
stdout once listening. Stop it with SIGTERM.
"""
import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, out, requiretls, rcpt_limit=0):
        self.out = out
        self.requiretls = requiretls
        self.rcpt_limit = rcpt_limit
        self.n = 0
        self.lock = threading.Lock()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.requiretls and session.ssl is not None:
            responses.insert(len(responses) - 1, "250-REQUIRETLS")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 <%s>: no such user" % address
        if local.startswith("defer"):
            return "451 4.3.0 <%s>: try again later" % address
        if local.startswith("full"):
            return "452 4.5.3 too many recipients"
        if self.rcpt_limit and len(envelope.rcpt_tos) >= self.rcpt_limit:
            return "452 4.5.3 too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.n += 1
            n = self.n
        rec = {
            "mail_from": envelope.mail_from,
            "mail_options": envelope.mail_options,
            "requiretls": getattr(session, "sy_requiretls", False),
            "rcpt_tos": envelope.rcpt_tos,
            "rcpt_options": envelope.rcpt_options,
            "tls": session.ssl is not None,
            "auth": session.auth_data.decode("utf-8", "replace")
                    if isinstance(session.auth_data, bytes) else None,
            "helo": getattr(session, "host_name", None),
            "peer_port": session.peer[1] if session.peer else None,
            "data": envelope.original_content.decode("latin-1"),
        }
        tmp = os.path.join(self.out, ".%d.tmp" % n)
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.rename(tmp, os.path.join(self.out, "%d.json" % n))
        return "250 2.0.0 Ok: queued as SINK%d" % n


SCRAM_PLUS = {"enabled": False, "tamper": False, "user": None, "password": None}


def _scram_attrs(msg):
    return dict(kv.split("=", 1) for kv in msg.split(","))


class Sink(SMTP):
    """REQUIRETLS (RFC 8689) is not known to aiosmtpd: strip it before the
    parameter check and remember it for the record. With --scram-plus it
    also offers SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677) bound to the TLS
    channel with tls-unique (RFC 5929): an implementation independent of
    the client's libgsasl, so a TLS 1.2 session is needed (Python's ssl
    has no tls-exporter)."""

    async def auth_SCRAM__SHA__256__PLUS(self, _, args):
        if not SCRAM_PLUS["enabled"]:
            return AuthResult(success=False, handled=False)
        if len(args) == 2:
            first = base64.b64decode(args[1]).decode()
        else:
            r = await self.challenge_auth(b"", encode_to_b64=False)
            if r is MISSING:
                return AuthResult(success=False, handled=True)
            first = r.decode()
        gs2, _, bare = first.partition(",,")
        gs2 += ",,"
        if not gs2.startswith("p=tls-unique,"):
            return AuthResult(success=False, handled=False, message="535 5.7.8 need tls-unique")
        a = _scram_attrs(bare)
        user, cnonce = a["n"], a["r"]
        salt, iters = os.urandom(16), 4096
        nonce = cnonce + base64.b64encode(os.urandom(18)).decode()
        server_first = "r=%s,s=%s,i=%d" % (nonce, base64.b64encode(salt).decode(), iters)
        r = await self.challenge_auth(server_first)
        if r is MISSING:
            return AuthResult(success=False, handled=True)
        final = r.decode()
        without_proof, _, proof = final.rpartition(",p=")
        fa = _scram_attrs(without_proof)
        cb = self.transport.get_extra_info("ssl_object").get_channel_binding("tls-unique")
        if SCRAM_PLUS["tamper"]:
            cb = bytes([cb[0] ^ 1]) + cb[1:]
        want_c = base64.b64encode(gs2.encode() + cb).decode()
        salted = hashlib.pbkdf2_hmac("sha256", SCRAM_PLUS["password"].encode(), salt, iters)
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored = hashlib.sha256(client_key).digest()
        auth_msg = ("%s,%s,%s" % (bare, server_first, without_proof)).encode()
        sig = hmac.new(stored, auth_msg, "sha256").digest()
        want_proof = base64.b64encode(bytes(x ^ y for x, y in zip(client_key, sig))).decode()
        if fa.get("c") != want_c or fa.get("r") != nonce or proof != want_proof or user != SCRAM_PLUS["user"]:
            return AuthResult(success=False, handled=False)
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        v = base64.b64encode(hmac.new(server_key, auth_msg, "sha256").digest()).decode()
        r = await self.challenge_auth("v=" + v)
        if r is MISSING:
            return AuthResult(success=False, handled=True)
        return AuthResult(success=True, auth_data=user.encode())

    async def smtp_MAIL(self, arg):
        if arg and self.session is not None:
            words = arg.split()
            self.session.sy_requiretls = any(w.upper() == "REQUIRETLS" for w in words[1:])
            arg = " ".join(w for w in words if w.upper() != "REQUIRETLS" or w is words[0])
        return await super().smtp_MAIL(arg)


class SinkController(Controller):
    def __init__(self, handler, smtp_kw, **kw):
        self.smtp_kw = smtp_kw
        super().__init__(handler, **kw)

    def factory(self):
        return Sink(self.handler, **self.smtp_kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--implicit-tls", action="store_true")
    ap.add_argument("--auth")
    ap.add_argument("--auth-require-tls", action="store_true")
    ap.add_argument("--requiretls", action="store_true")
    ap.add_argument("--smtputf8", action="store_true")
    ap.add_argument("--size", type=int, default=33554432)
    ap.add_argument("--rcpt-limit", type=int, default=0, help="452 past N recipients per transaction")
    ap.add_argument("--tls12", action="store_true", help="TLS 1.2 at most")
    ap.add_argument("--scram-plus", action="store_true", help="offer SCRAM-SHA-256-PLUS (needs --auth, --tls12)")
    ap.add_argument("--scram-plus-tamper", action="store_true", help="... checked against a wrong binding")
    a = ap.parse_args()
    if a.scram_plus:
        SCRAM_PLUS.update(enabled=True, tamper=a.scram_plus_tamper, user=a.auth.split(":", 1)[0],
                          password=a.auth.split(":", 1)[1])

    ctx = None
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        if a.tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2

    def authenticator(server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword) or not a.auth:
            return AuthResult(success=False, handled=False)
        user, pw = a.auth.split(":", 1)
        ok = auth_data.login.decode() == user and auth_data.password.decode() == pw
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)

    smtp_kw = dict(hostname="aiosink.test", enable_SMTPUTF8=a.smtputf8, data_size_limit=a.size,
                   auth_require_tls=a.auth_require_tls, timeout=60)
    if a.auth:
        smtp_kw["authenticator"] = authenticator
    if not a.scram_plus:
        smtp_kw["auth_exclude_mechanism"] = ["SCRAM-SHA-256-PLUS"]
    if ctx is not None and not a.implicit_tls:
        smtp_kw["tls_context"] = ctx
    kw = dict(hostname="127.0.0.1", port=a.port)
    if a.implicit_tls:
        kw["ssl_context"] = ctx
    os.makedirs(a.out, exist_ok=True)
    ctl = SinkController(Handler(a.out, a.requiretls, a.rcpt_limit), smtp_kw, **kw)
    ctl.start()
    print("ready", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *x: done.set())
    signal.signal(signal.SIGINT, lambda *x: done.set())
    done.wait()
    ctl.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
