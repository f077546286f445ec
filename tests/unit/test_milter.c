/* test_milter.c - milter/milter_msg.c and the milter: configuration section
 *
 * The pure parts of the milter front end: MAIL/RCPT arguments as libmilter
 * hands them over, the byte-exact header rebuild (leading white space,
 * folding, LF or CRLF inside values), the body's line ends across chunk
 * boundaries, the capture selection and the MTA's own trace field; then
 * the milter: section (defaults, every error, the dump loading again).
 * The protocol itself runs against real peers in
 * tests/integration/test_milter_*.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/config.h"
#include "gateway/envelope.h"
#include "gateway/util/buf.h"
#include "gateway/util/err.h"
#include "milter/milter_msg.h"

#define BASE "spool:\n  dir: /srv/sy/spool\nlmtp:\n  listeners:\n    - address: unix:/run/sy/lmtp.sock\n"

static void test_parse_mail(void **state)
{
    struct envelope env;
    struct sy_err err;
    char *a1[] = { "<Alice@Example.ORG>", "SIZE=1234", "BODY=8BITMIME", "RET=HDRS",
                   "ENVID=abc+2Bdef", "AUTH=<>", "XUNKNOWN=1", NULL };
    char *a2[] = { "<>", NULL };
    char *a3[] = { "<ü@example.org>", "SMTPUTF8", NULL };
    char *bad[][2] = { { "no-brackets@example.org", NULL }, { "<a@b> junk", NULL },
                       { "<ü@example.org>", NULL }, { "<@x,@y:>", NULL } };

    (void) state;
    env_init(&env);
    assert_int_equal(milter_parse_mail(a1, &env, &err), SY_OK);
    assert_string_equal(env.sender, "Alice@Example.ORG");
    assert_int_equal(env.size_declared, 1234);
    assert_int_equal(env.body, ENV_BODY_8BITMIME);
    assert_int_equal(env.ret, ENV_RET_HDRS);
    assert_string_equal(env.envid, "abc+def");
    assert_int_equal(env.flags & ENV_F_SMTPUTF8, 0);
    env_free(&env);

    env_init(&env);
    assert_int_equal(milter_parse_mail(a2, &env, &err), SY_OK);
    assert_string_equal(env.sender, "");
    env_free(&env);

    env_init(&env);
    assert_int_equal(milter_parse_mail(a3, &env, &err), SY_OK);
    assert_true(env.flags & ENV_F_SMTPUTF8);
    env_free(&env);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        env_init(&env);
        assert_int_equal(milter_parse_mail(bad[i], &env, &err), SY_ESYNTAX);
        assert_null(env.sender);
        env_free(&env);
    }
    env_init(&env);
    assert_int_equal(milter_parse_mail(NULL, &env, &err), SY_ESYNTAX);
    env_free(&env);
}

static void test_parse_rcpt(void **state)
{
    struct env_rcpt r;
    struct sy_err err;
    char *a1[] = { "<bob@example.net>", "NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;bob+40x@example.net",
                   NULL };
    char *a2[] = { "<carol@example.net>", "NOTIFY=NEVER,FAILURE", "ORCPT=bad", NULL };
    char *a3[] = { "<>", NULL };
    char *a4[] = { "<@relay.example:dave@example.net>", NULL };

    (void) state;
    memset(&r, 0, sizeof(r));
    assert_int_equal(milter_parse_rcpt(a1, false, &r, &err), SY_OK);
    assert_string_equal(r.addr, "bob@example.net");
    assert_int_equal(r.notify, ENV_NOTIFY_SUCCESS | ENV_NOTIFY_DELAY);
    assert_string_equal(r.orcpt_type, "rfc822");
    assert_string_equal(r.orcpt_addr, "bob@x@example.net");
    env_rcpt_free(&r);

    memset(&r, 0, sizeof(r));
    assert_int_equal(milter_parse_rcpt(a2, false, &r, &err), SY_OK);
    assert_int_equal(r.notify, ENV_NOTIFY_NEVER);
    assert_null(r.orcpt_type);
    env_rcpt_free(&r);

    memset(&r, 0, sizeof(r));
    assert_int_equal(milter_parse_rcpt(a3, false, &r, &err), SY_ESYNTAX);
    assert_null(r.addr);

    memset(&r, 0, sizeof(r));
    assert_int_equal(milter_parse_rcpt(a4, false, &r, &err), SY_OK);
    assert_string_equal(r.addr, "dave@example.net");    /* source route stripped */
    env_rcpt_free(&r);
}

/* line - milter_header_line into a fresh string */
static char *line(const char *name, const char *value, bool leadspc, size_t max)
{
    struct buf b;

    buf_init(&b, max);
    if (milter_header_line(&b, name, value, leadspc) != SY_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_take(&b, NULL);
}

static void test_header_line(void **state)
{
    static const struct {
        const char *name, *value;
        bool leadspc;
        const char *want;
    } t[] = {
        { "Subject", " hello", true, "Subject: hello\r\n" },
        { "Subject", "hello", true, "Subject:hello\r\n" },              /* as received */
        { "Subject", "   three", true, "Subject:   three\r\n" },
        { "Subject", " a\r\n\tb", true, "Subject: a\r\n\tb\r\n" },     /* CRLF folding kept */
        { "Subject", " a\n\tb\n  c", true, "Subject: a\r\n\tb\r\n  c\r\n" },   /* LF -> CRLF */
        { "X-Empty", "", true, "X-Empty:\r\n" },
        { "Subject", "hello", false, "Subject: hello\r\n" },            /* no LEADSPC: one space */
        { "X-Empty", "", false, "X-Empty:\r\n" },
    };

    (void) state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char *s = line(t[i].name, t[i].value, t[i].leadspc, 4096);

        assert_non_null(s);
        assert_string_equal(s, t[i].want);
        free(s);
    }
    /* the limit: name + ':' + value + CRLF */
    {
        char *s = line("X", "12345", true, 9);

        assert_non_null(s);
        free(s);
    }
    assert_null(line("X", "123456", true, 9));
    /* not a field name: refused whatever the value */
    assert_null(line("", "v", true, 4096));
    assert_null(line("Sub ject", "v", true, 4096));
    assert_null(line("Sub:ject", "v", true, 4096));
    assert_null(line("Sub\nject", "v", true, 4096));
    assert_null(line("Sub\xc3\xa9", "v", true, 4096));
}

/* body - chunks through milter_body_crlf */
static char *body(const char *const *chunks, size_t n, bool *at_start)
{
    struct milter_eol eol;
    struct buf b;

    milter_eol_init(&eol);
    buf_init(&b, 4096);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(milter_body_crlf(&eol, (const unsigned char *) chunks[i], strlen(chunks[i]), &b),
                         SY_OK);
    *at_start = milter_eol_at_line_start(&eol);
    return buf_take(&b, NULL);
}

static void test_body_crlf(void **state)
{
    const char *c1[] = { "a\r\n.\r\nb\n" };
    const char *c2[] = { "a\r", "\nb\r", "\n" };                   /* CRLF split */
    const char *c3[] = { "a", "\n", "\n", "b" };                    /* bare LFs alone */
    const char *c4[] = { "\n" };
    const char *c5[] = { "x\r" };
    bool st;
    char *s;

    (void) state;
    s = body(c1, 1, &st);
    assert_string_equal(s, "a\r\n.\r\nb\r\n");
    assert_true(st);
    free(s);
    s = body(c2, 3, &st);
    assert_string_equal(s, "a\r\nb\r\n");
    assert_true(st);
    free(s);
    s = body(c3, 4, &st);
    assert_string_equal(s, "a\r\n\r\nb");
    assert_false(st);
    free(s);
    s = body(c4, 1, &st);
    assert_string_equal(s, "\r\n");
    assert_true(st);
    free(s);
    s = body(c5, 1, &st);
    assert_string_equal(s, "x\r");
    assert_false(st);
    free(s);
    s = body(NULL, 0, &st);
    assert_string_equal(s, "");
    assert_true(st);
    free(s);
}

static void test_own_trace(void **state)
{
    (void) state;
    assert_true(milter_is_own_trace("Received", " from c (c [127.0.0.1])\n\tby mx (Postfix) with ESMTP id 4ABC1\n\tfor <x@y>; Wed",
                                    "4ABC1"));
    assert_true(milter_is_own_trace("received", " by mx with ESMTP id 4ABC1; Wed", "4ABC1"));
    assert_false(milter_is_own_trace("Received", " by mx with ESMTP id 4ABC12; Wed", "4ABC1"));
    assert_false(milter_is_own_trace("Received", " by mx with ESMTP id 4ABC1", NULL));
    assert_false(milter_is_own_trace("X-Received", " id 4ABC1", "4ABC1"));
    assert_false(milter_is_own_trace("Received", " by mx with ESMTP myid 4ABC1", "4ABC1"));
}

static struct config *load(const char *yaml, struct buf *errors)
{
    return config_load_mem("t.yaml", yaml, strlen(yaml), errors);
}

static void test_capture_match(void **state)
{
    struct buf errors;
    struct config *cfg;
    const struct cfg_milter_listener *l;

    (void) state;
    buf_init(&errors, 65536);
    cfg = load(BASE "milter:\n  listeners:\n    - address: inet:8891@127.0.0.1\n", &errors);
    assert_non_null(cfg);
    l = &cfg->milter.listeners[0];
    assert_true(milter_capture_match(l, "anyone@anywhere.example"));
    config_free(cfg);

    cfg = load(BASE "milter:\n  listeners:\n    - address: inet:8891@127.0.0.1\n"
               "      capture_domains: [Example.NET, .sub.example.org]\n"
               "      capture_addresses: [Boss@Corp.example]\n", &errors);
    assert_non_null(cfg);
    l = &cfg->milter.listeners[0];
    assert_true(milter_capture_match(l, "a@example.net"));
    assert_true(milter_capture_match(l, "a@EXAMPLE.net."));
    assert_false(milter_capture_match(l, "a@x.example.net"));
    assert_true(milter_capture_match(l, "a@sub.example.org"));
    assert_true(milter_capture_match(l, "a@deep.sub.example.org"));
    assert_false(milter_capture_match(l, "a@example.org"));
    assert_true(milter_capture_match(l, "boss@corp.example"));
    assert_false(milter_capture_match(l, "staff@corp.example"));
    config_free(cfg);
    buf_free(&errors);
}

/* dump - config_dump into a new string */
static char *dump(const struct config *cfg)
{
    char *p = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&p, &n);

    assert_non_null(f);
    config_dump(cfg, f);
    assert_int_equal(fclose(f), 0);
    return p;
}

static void test_config_section(void **state)
{
    struct buf errors;
    struct config *cfg, *again;
    const struct cfg_milter_listener *l;
    char *d, *d2;

    (void) state;
    buf_init(&errors, 65536);
    /* absent: no listener, defaults */
    cfg = load(BASE, &errors);
    assert_non_null(cfg);
    assert_int_equal(cfg->milter.nlisteners, 0);
    assert_int_equal(cfg->milter.max_headers, 1000);
    assert_int_equal(cfg->milter.header_size_limit, 102400);
    assert_int_equal(cfg->milter.message_size_limit, cfg->lmtp.message_size_limit);
    assert_int_equal(cfg->milter.timeout_ms, 300000);
    d = dump(cfg);
    assert_non_null(strstr(d, "milter:\n  max_headers: 1000\n"));
    free(d);
    config_free(cfg);

    cfg = load(BASE "milter:\n  max_headers: 50\n  header_size_limit: 64k\n  timeout: 2m\n"
               "  message_size_limit: 1m\n"
               "  listeners:\n    - name: pol\n      address: unix:/run/sy/milter.sock\n"
               "      mode: policy\n      route_header: X-Route\n      hold_header: X-Hold\n"
               "      reject_text: No such user here\n", &errors);
    assert_non_null(cfg);
    assert_int_equal(cfg->milter.max_headers, 50);
    assert_int_equal(cfg->milter.header_size_limit, 65536);
    assert_int_equal(cfg->milter.message_size_limit, 1048576);
    assert_int_equal(cfg->milter.timeout_ms, 120000);
    l = &cfg->milter.listeners[0];
    assert_string_equal(l->name, "pol");
    assert_string_equal(l->address, "unix:/run/sy/milter.sock");
    assert_int_equal(l->mode, CFG_MILTER_POLICY);
    assert_string_equal(l->route_header, "X-Route");
    assert_string_equal(l->hold_header, "X-Hold");
    assert_string_equal(l->reject_text, "No such user here");
    /* the dump loads again to the same dump */
    d = dump(cfg);
    again = config_load_mem("dump", d, strlen(d), &errors);
    if (again == NULL)
        fail_msg("%s\n%s", buf_str(&errors), d);
    d2 = dump(again);
    assert_string_equal(strchr(d, '\n'), strchr(d2, '\n'));
    free(d);
    free(d2);
    config_free(again);
    config_free(cfg);

    cfg = load(BASE "milter:\n  listeners:\n    - address: inet:8891@127.0.0.1\n"
               "      capture_domains: [example.net]\n      capture_addresses: [a@b.example]\n", &errors);
    assert_non_null(cfg);
    l = &cfg->milter.listeners[0];
    assert_string_equal(l->name, "milter");
    assert_int_equal(l->mode, CFG_MILTER_CAPTURE);
    assert_null(l->route_header);
    assert_null(l->hold_header);
    assert_string_equal(l->reject_text, "Recipient address rejected");
    assert_int_equal(l->socket_mode, 0660);
    d = dump(cfg);
    again = config_load_mem("dump", d, strlen(d), &errors);
    if (again == NULL)
        fail_msg("%s\n%s", buf_str(&errors), d);
    assert_int_equal(again->milter.listeners[0].ncapture_domains, 1);
    assert_string_equal(again->milter.listeners[0].capture_addresses[0], "a@b.example");
    free(d);
    config_free(again);
    config_free(cfg);
    buf_free(&errors);
}

/* several listeners (one process each, gateway/daemon.c): default names */
static void test_config_several(void **state)
{
    char yaml[2048];
    struct buf errors;
    struct config *cfg;

    (void) state;
    buf_init(&errors, 65536);
    (void) snprintf(yaml, sizeof(yaml), "%s%s", BASE,
                    "milter:\n  listeners:\n    - address: inet:1@127.0.0.1\n"
                    "    - address: unix:/tmp/p.sock\n      mode: policy\n    - address: inet:2@127.0.0.1\n");
    cfg = load(yaml, &errors);
    if (cfg == NULL)
        fail_msg("%s", buf_str(&errors));
    assert_int_equal(cfg->milter.nlisteners, 3);
    assert_string_equal(cfg->milter.listeners[0].name, "milter");
    assert_string_equal(cfg->milter.listeners[1].name, "milter1");
    assert_int_equal(cfg->milter.listeners[1].mode, CFG_MILTER_POLICY);
    assert_string_equal(cfg->milter.listeners[2].name, "milter2");
    assert_string_equal(cfg->milter.listeners[2].address, "inet:2@127.0.0.1");
    config_free(cfg);
    buf_free(&errors);
}

static void test_config_errors(void **state)
{
    static const struct {
        const char *yaml, *want;
    } t[] = {
        { "milter:\n  listeners:\n    - address: inet:1@127.0.0.1\n    - address: inet:1@127.0.0.1\n",
          "milter.listeners[1].address: the same address as milter.listeners[0]" },
        { "milter:\n  listeners:\n    - address: unix:/tmp/m.sock\n    - address: local:/tmp/m.sock\n",
          "milter.listeners[1].address: the same address as milter.listeners[0]" },
        { "milter:\n  listeners:\n    - address: inet:1@h\n      name: m\n    - address: inet:2@h\n"
          "      name: m\n",
          "milter.listeners[1].name: the name \"m\" is already used by milter.listeners[0]" },
        { "milter:\n  listeners:\n    - mode: capture\n",
          "milter.listeners[0].address: required key is missing" },
        { "milter:\n  listeners:\n    - address: 127.0.0.1:8891\n",
          "expected inet:PORT@HOST, inet6:PORT@HOST or unix:/PATH" },
        { "milter:\n  listeners:\n    - address: inet:0@127.0.0.1\n", "port from 1 to 65535" },
        { "milter:\n  listeners:\n    - address: inet:8891@\n", "port from 1 to 65535 and a host" },
        { "milter:\n  listeners:\n    - address: unix:relative\n", "absolute path" },
        { "milter:\n  listeners:\n    - address: inet:1@h\n      mode: both\n",
          "milter.listeners[0].mode: expected one of capture, policy" },
        { "milter:\n  listeners:\n    - address: inet:1@h\n      capture_domains: [\"bad domain\"]\n",
          "milter.listeners[0].capture_domains[0]: \"bad domain\" is not a valid domain pattern" },
        { "milter:\n  listeners:\n    - address: inet:1@h\n      capture_addresses: [nobody]\n",
          "milter.listeners[0].capture_addresses[0]: \"nobody\" is not a valid mailbox" },
        { "milter:\n  listeners:\n    - address: inet:1@h\n      route_header: \"X Route\"\n",
          "is not a header field name" },
        { "milter:\n  listeners:\n    - address: inet:1@h\n      hold_header: \"X-Hold:\"\n",
          "is not a header field name" },
        { "milter:\n  listeners:\n    - address: inet:1@h\n      reject_text: \"100% sure\"\n",
          "reject_text: 1 to 200 printable characters without %" },
        { "milter:\n  listeners:\n    - address: inet:1@h\n      name: lmtp0\n",
          "the name \"lmtp0\" is already used by lmtp.listeners[0]" },
        { "milter:\n  max_headers: 5\n", "milter.max_headers" },
        { "milter:\n  listeners:\n    - address: inet:1@h\n      bogus: 1\n", "bogus" },
    };
    struct buf errors;

    (void) state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char yaml[2048];
        struct config *cfg;

        buf_init(&errors, 65536);
        (void) snprintf(yaml, sizeof(yaml), "%s%s", BASE, t[i].yaml);
        cfg = load(yaml, &errors);
        if (cfg != NULL || strstr(buf_str(&errors), t[i].want) == NULL)
            fail_msg("case %zu: want \"%s\", got:\n%s", i, t[i].want, buf_str(&errors));
        buf_free(&errors);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_mail),
        cmocka_unit_test(test_config_several),
        cmocka_unit_test(test_parse_rcpt),
        cmocka_unit_test(test_header_line),
        cmocka_unit_test(test_body_crlf),
        cmocka_unit_test(test_own_trace),
        cmocka_unit_test(test_capture_match),
        cmocka_unit_test(test_config_section),
        cmocka_unit_test(test_config_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
