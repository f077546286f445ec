"""1,000 messages through Postfix; switchyard SIGKILLed mid-burst and
restarted on the same spool and Redis: every message Postfix logged as
sent is stored exactly once (spool and Redis), nothing left in tmp/.

The one legitimate duplicate window (switchyard committed, SIGKILL before
Postfix read the 250, Postfix retries) must be caught by switchyard
recognising the byte-identical retry, so the count is exactly one.
"""
import collections
import re
import smtplib
import threading
import time

import sylib

N = 1000
THREADS = 4
KILL_AT = 300
SENDER = "burst@example.org"


def message(test_id, i):
    body = "".join("line %d of message %s\r\n" % (j, test_id) for j in range(i % 17 + 1))
    return ("From: <%s>\r\nTo: <%s@example.net>\r\nSubject: burst %d\r\n"
            "Message-ID: <%s@crash.test>\r\nX-Test-Id: %s\r\n\r\n%s"
            % (SENDER, test_id, i, test_id, test_id, body)).encode()


def test_crash_burst(postfix, switchyard):
    sw = switchyard(port=postfix.lmtp_port)
    tag = "cb%d" % (time.time_ns() % 10**12)
    ids = ["%s-%04d" % (tag, i) for i in range(N)]
    errors = []

    def inject(part):
        try:
            with smtplib.SMTP(sylib.LOOPBACK, postfix.smtpd_port, timeout=300) as s:
                s.ehlo("injector.example.org")
                for i in part:
                    s.sendmail(SENDER, ["%s@example.net" % ids[i]], message(ids[i], i))
        except Exception as e:      # reported by the main thread
            errors.append(repr(e))

    threads = [threading.Thread(target=inject, args=(range(k, N, THREADS),), daemon=True)
               for k in range(THREADS)]
    for t in threads:
        t.start()

    def enough():
        assert not errors, errors
        return len(sw.spool_q()) >= KILL_AT
    sylib.wait_for(enough, 300, "%d messages in switchyard's spool" % KILL_AT, interval=0.02)
    sw.kill()
    print("SIGKILL with %d messages in the spool, %d in tmp/" % (len(sw.spool_q()), len(sw.spool_tmp())))
    sw.start()

    for t in threads:
        t.join(600)
        assert not t.is_alive(), "injection did not finish"
    assert not errors, errors
    postfix.wait_empty(timeout=400, flush_every=5)

    # Postfix's view: every recipient sent once, nothing bounced
    sent = collections.Counter()
    for l in postfix.log_lines(r"to=<%s-\d{4}@example\.net>.*status=sent" % tag):
        sent[re.search(r"to=<([^@]+)@", l).group(1)] += 1
    bounced = postfix.log_lines(r"to=<%s-\d{4}@example\.net>.*status=(bounced|expired)" % tag)
    assert not bounced, bounced[:5]
    assert set(sent) == set(ids), "not sent: %s" % sorted(set(ids) - set(sent))[:10]
    assert max(sent.values()) == 1, [k for k, v in sent.items() if v > 1][:10]

    # the spool: the message bytes are stored verbatim inside each file
    assert sw.spool_tmp() == [], sw.spool_tmp()
    spool = collections.Counter()
    by_qid = {}
    for q in sw.spool_q():
        found = re.findall(rb"\r\nX-Test-Id: (\S+)\r\n", sw.spool_bytes(q))
        assert len(found) == 1, (q, found)
        spool[found[0].decode()] += 1
        by_qid[q] = found[0].decode()
    dups = sorted(k for k, v in spool.items() if v > 1)
    assert not dups, "stored more than once: %s" % dups[:10]
    assert set(spool) == set(ids), "missing from the spool: %s" % sorted(set(ids) - set(spool))[:10]

    # Redis: one active message record per spool file, nothing else
    msgs = sw.all_msgs()
    assert set(msgs) == set(by_qid), ("Redis without spool file:", sorted(set(msgs) - set(by_qid))[:5],
                                      "spool file without Redis:", sorted(set(by_qid) - set(msgs))[:5])
    redis_ids = collections.Counter(m.get("message_id", "").strip("<>") for m in msgs.values())
    assert all(v == 1 for v in redis_ids.values()), [k for k, v in redis_ids.items() if v > 1][:10]
    assert set(redis_ids) == {"%s@crash.test" % i for i in ids}
    for q, m in msgs.items():
        assert m.get("state") == "active" and m.get("sender") == SENDER and m.get("nrcpt") == "1", (q, m)
        assert m.get("message_id").strip("<>") == by_qid[q] + "@crash.test", (q, m)
    assert sw.redis("ZCARD", sw.key("index")) == N
    assert sw.redis("ZCARD", sw.key("sched")) == N
