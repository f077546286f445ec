"""A real Postfix hands mail to switchyard over LMTP (relay/default transport)."""
import re
import time

import sylib

SENT_RE = re.compile(r"postfix/lmtp\[\d+\]: (\w+): to=<([^>]+)>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:(\d+),"
                     r".* status=sent \(250 2\.0\.0 <([^>]+)> .*queued as ([A-Za-z0-9]+)\)")


def parse_sent(lines):
    """{rcpt: (postfix qid, switchyard qid)} from status=sent lines."""
    out = {}
    for l in lines:
        m = SENT_RE.search(l)
        assert m, "unexpected status=sent line: " + l
        assert m.group(2) == m.group(4), l
        assert m.group(2) not in out, "recipient sent twice: " + l
        out[m.group(2)] = (m.group(1), m.group(5))
    return out


def test_postfix_lmtp_delivery(postfix, switchyard):
    sw = switchyard(port=postfix.lmtp_port)
    tag = "pf%d" % time.time_ns()
    msgs = [
        ("s1@example.org", ["%s-a@example.net" % tag, "%s-b@example.org" % tag, "%s-c@example.net" % tag]),
        ("s2@example.org", ["%s-d@example.net" % tag, "%s-e@example.com" % tag]),
    ]
    pf_qids = []
    for i, (sender, rcpts) in enumerate(msgs):
        pf_qids.append(postfix.swaks(sender, rcpts, headers=[
            "X-Test-Id: %s-%d" % (tag, i), "Message-Id: <%s-%d@test.example>" % (tag, i)]))
    lines = postfix.wait_log(r"to=<%s-\w@example\.\w+>.*status=sent" % tag, count=5)
    sent = parse_sent(lines)
    assert not postfix.log_lines(r"%s.*status=(deferred|bounced)" % tag), postfix.log()
    postfix.wait_empty()

    sw_qids = []
    for i, (sender, rcpts) in enumerate(msgs):
        assert set(sent) >= set(rcpts), (sent, rcpts)
        pq = {sent[a][0] for a in rcpts}
        assert pq == {pf_qids[i]}, (pq, pf_qids[i])
        q = {sent[a][1] for a in rcpts}
        assert len(q) == 1, "one LMTP transaction, one switchyard QID per message: %s" % sent
        qid = q.pop()
        sw_qids.append(qid)
        assert qid in sw.spool_q(), (qid, sw.spool_q())
        assert sw.spool_bytes(qid).count(b"X-Test-Id: %s-%d\r\n" % (tag.encode(), i)) == 1
        m = sw.msg(qid)
        assert m.get("sender") == sender, m
        assert int(m["nrcpt"]) == len(rcpts), m
        assert m.get("listener") == "postfix", m
        assert m.get("client_addr") == "127.0.0.1", m
        assert m.get("state") == "active", m
        if m.get("client_name"):
            assert m["client_name"] == "pf-test.localdomain", m
        assert m.get("message_id", "").strip("<>") == "%s-%d@test.example" % (tag, i), m
        # Postfix's queue id, from the Received: field it added on top
        assert m.get("mta_qid") == pf_qids[i], m
        got = [sw.rcpt(qid, j) for j in range(len(rcpts))]
        assert sorted(r.get("addr") for r in got) == sorted(rcpts), got
        for r in got:
            assert r.get("state") == "queued" and int(r.get("attempts", 0)) == 0, r
        idx = sw.redis("ZSCORE", sw.key("index"), qid)
        assert idx is not None, "%s not in %s" % (qid, sw.key("index"))
    assert sw_qids[0] != sw_qids[1]
    assert sorted(sw.spool_q()) == sorted(sw_qids)
    assert sw.spool_tmp() == []

    # the command line shows the same
    out = sw.cli("queue", "list").stdout
    rows = {l.split()[0]: l.split() for l in out.splitlines() if l.strip()}
    for i, (sender, rcpts) in enumerate(msgs):
        row = rows.get(sw_qids[i])
        assert row, "queue list lacks %s:\n%s" % (sw_qids[i], out)
        # QID  ARRIVAL  SIZE  <SENDER>  NRCPT  STATE
        assert len(row) == 6, row
        assert row[3] == "<%s>" % sender and row[4] == str(len(rcpts)), row
        assert int(row[2]) > 0 and re.match(r"^\d{4}-\d\d-\d\dT", row[1]), row
        show = sw.cli("queue", "show", sw_qids[i]).stdout
        assert sw_qids[i] in show
        assert "<%s>" % sender in show, show
        for a in rcpts:
            assert re.search(r"rcpt \d+: <%s> state=queued attempts=0" % re.escape(a), show), show
