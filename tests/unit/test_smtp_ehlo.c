/* test_smtp_ehlo.c - gateway/smtp/ehlo.c: EHLO capabilities from real
 * server replies and from the capability torture of
 * research/reliability.md B3 #62 (absurd SIZE, duplicated keywords,
 * 10000 AUTH mechanisms, 100 KB lines).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/smtp/ehlo.h"
#include "gateway/smtp/reply.h"
#include "gateway/util/err.h"

#define S(x) x, sizeof(x) - 1

#define E_PIPE SMTP_EXT_PIPELINING
#define E_SIZE SMTP_EXT_SIZE
#define E_8BIT SMTP_EXT_8BITMIME
#define E_UTF8 SMTP_EXT_SMTPUTF8
#define E_DSN SMTP_EXT_DSN
#define E_TLS SMTP_EXT_STARTTLS
#define E_ENH SMTP_EXT_ENHANCEDSTATUSCODES
#define E_CHUNK SMTP_EXT_CHUNKING
#define E_BIN SMTP_EXT_BINARYMIME
#define E_RTLS SMTP_EXT_REQUIRETLS
#define E_AUTH SMTP_EXT_AUTH

/* parse_reply - the complete reply in s[0..n) into r (initialised) */
static void parse_reply(const char *s, size_t n, struct smtp_reply *r)
{
    struct smtp_reply_parser *p = malloc(sizeof(*p));
    size_t used;

    assert_non_null(p);
    smtp_reply_parser_init(p);
    assert_int_equal(smtp_reply_feed(p, s, n, &used, NULL), SMTP_REPLY_DONE);
    assert_int_equal(used, n);
    assert_int_equal(smtp_reply_parser_take(p, r), SY_OK);
    smtp_reply_parser_free(p);
    free(p);
}

/* joined - the mechanisms (or the unknown keywords) as "A B C" */
static void joined(const struct smtp_ehlo *c, bool mechs, char *out, size_t size)
{
    size_t n = mechs ? smtp_ehlo_nmechs(c) : c->nothers, len = 0;

    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *w = mechs ? smtp_ehlo_mech(c, i) : c->others[i];
        int k = snprintf(out + len, size - len, "%s%s", i > 0 ? " " : "", w);

        assert_true(k > 0 && (size_t) k < size - len);
        len += (size_t) k;
    }
}

struct ehlo_case {
    const char *name;
    const char *in;
    size_t len;
    unsigned ext;
    const char *server;
    uint64_t size_max;
    bool size_bogus;
    const char *mechs;
    size_t mechs_dropped;
    const char *others;
    size_t others_dropped;
};

static const struct ehlo_case ehlo_cases[] = {
    { "Postfix",
      S("250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n"
        "250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n"
        "250 CHUNKING\r\n"),
      E_PIPE | E_SIZE | E_TLS | E_ENH | E_8BIT | E_DSN | E_UTF8 | E_CHUNK, "mx.example.org",
      10240000, false, "", 0, "VRFY ETRN", 0 },
    { "submission with AUTH",
      S("250-smtp.example.com at your service, [192.0.2.1]\r\n250-SIZE 35882577\r\n250-8BITMIME\r\n"
        "250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH\r\n"
        "250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n"),
      E_SIZE | E_8BIT | E_AUTH | E_ENH | E_PIPE | E_CHUNK | E_UTF8, "smtp.example.com", 35882577,
      false, "LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH", 0, "", 0 },
    { "name only", S("250 mx.example\r\n"), 0, "mx.example", 0, false, "", 0, "", 0 },
    { "name with greeting", S("250-mx.example Hello [192.0.2.7]\r\n250 DSN\r\n"), E_DSN, "mx.example",
      0, false, "", 0, "", 0 },
    { "address literal name", S("250 [192.0.2.1]\r\n"), 0, "[192.0.2.1]", 0, false, "", 0, "", 0 },
    { "empty first line", S("250\r\n"), 0, "", 0, false, "", 0, "", 0 },
    { "name sanitised", S("250 mx.\x1b[0mexample\xc3\xa9 hi\r\n"), 0, "mx.?[0mexample??", 0, false, "",
      0, "", 0 },
    { "name after spaces", S("250   mx.example  hi\r\n"), 0, "mx.example", 0, false, "", 0, "", 0 },
    { "other 2xx accepted", S("220-mx\r\n220 PIPELINING\r\n"), E_PIPE, "mx", 0, false, "", 0, "", 0 },
    { "lowercase keywords",
      S("250-mx\r\n250-pipelining\r\n250-size 1000\r\n250-StartTLS\r\n250 auth plain login\r\n"),
      E_PIPE | E_SIZE | E_TLS | E_AUTH, "mx", 1000, false, "PLAIN LOGIN", 0, "", 0 },
    { "REQUIRETLS BINARYMIME", S("250-mx\r\n250-REQUIRETLS\r\n250-BINARYMIME\r\n250 CHUNKING\r\n"),
      E_RTLS | E_BIN | E_CHUNK, "mx", 0, false, "", 0, "", 0 },
    { "AUTH= old form",
      S("250-mx\r\n250-AUTH=LOGIN PLAIN\r\n250 AUTH LOGIN CRAM-MD5\r\n"),
      E_AUTH, "mx", 0, false, "LOGIN PLAIN CRAM-MD5", 1, "", 0 },
    { "auth= lowercase", S("250-mx\r\n250 auth=login\r\n"), E_AUTH, "mx", 0, false, "LOGIN", 0, "", 0 },
    { "AUTH= empty", S("250-mx\r\n250 AUTH=\r\n"), E_AUTH, "mx", 0, false, "", 0, "", 0 },
    { "AUTH no mechanisms", S("250-mx\r\n250 AUTH\r\n"), E_AUTH, "mx", 0, false, "", 0, "", 0 },
    { "AUTH TAB separated", S("250-mx\r\n250 AUTH\tPLAIN \t LOGIN\r\n"), E_AUTH, "mx", 0, false,
      "PLAIN LOGIN", 0, "", 0 },
    { "AUTH SCRAM and -PLUS", S("250-mx\r\n250 AUTH SCRAM-SHA-256-PLUS SCRAM-SHA-1 scram-sha-256\r\n"),
      E_AUTH, "mx", 0, false, "SCRAM-SHA-256-PLUS SCRAM-SHA-1 SCRAM-SHA-256", 0, "", 0 },
    { "AUTH bad mechanism", S("250-mx\r\n250 AUTH PLAIN L@GIN LOGIN\r\n"), E_AUTH, "mx", 0, false,
      "PLAIN LOGIN", 1, "", 0 },
    { "AUTH mechanism of 20", S("250-mx\r\n250 AUTH ABCDEFGHIJ_123456789\r\n"), E_AUTH, "mx", 0,
      false, "ABCDEFGHIJ_123456789", 0, "", 0 },
    { "AUTH mechanism of 21", S("250-mx\r\n250 AUTH ABCDEFGHIJ_1234567890 PLAIN\r\n"), E_AUTH, "mx",
      0, false, "PLAIN", 1, "", 0 },
    { "AUTH 8-bit mechanism", S("250-mx\r\n250 AUTH PL\xc3\x84IN\r\n"), E_AUTH, "mx", 0, false, "", 1,
      "", 0 },
    { "SIZE alone", S("250-mx\r\n250 SIZE\r\n"), E_SIZE, "mx", 0, false, "", 0, "", 0 },
    { "SIZE 0 (no limit)", S("250-mx\r\n250 SIZE 0\r\n"), E_SIZE, "mx", 0, false, "", 0, "", 0 },
    { "SIZE -1 (B3 #62)", S("250-mx\r\n250 SIZE -1\r\n"), E_SIZE, "mx", 0, true, "", 0, "", 0 },
    { "SIZE 99999999999999999999 (B3 #62)", S("250-mx\r\n250 SIZE 99999999999999999999\r\n"), E_SIZE,
      "mx", 0, true, "", 0, "", 0 },
    { "SIZE INT64_MAX", S("250-mx\r\n250 SIZE 9223372036854775807\r\n"), E_SIZE, "mx",
      9223372036854775807ULL, false, "", 0, "", 0 },
    { "SIZE INT64_MAX + 1", S("250-mx\r\n250 SIZE 9223372036854775808\r\n"), E_SIZE, "mx", 0, true,
      "", 0, "", 0 },
    { "SIZE with unit", S("250-mx\r\n250 SIZE 10m\r\n"), E_SIZE, "mx", 0, true, "", 0, "", 0 },
    { "SIZE +5", S("250-mx\r\n250 SIZE +5\r\n"), E_SIZE, "mx", 0, true, "", 0, "", 0 },
    { "SIZE extra parameter", S("250-mx\r\n250 SIZE 1000 x\r\n"), E_SIZE, "mx", 1000, false, "", 0, "", 0 },
    { "SIZE twice: smallest (B3 #62)", S("250-mx\r\n250-SIZE 2000\r\n250 SIZE 1000\r\n"), E_SIZE, "mx",
      1000, false, "", 0, "", 0 },
    { "SIZE 0 then 500", S("250-mx\r\n250-SIZE 0\r\n250 SIZE 500\r\n"), E_SIZE, "mx", 500, false, "",
      0, "", 0 },
    { "SIZE good then bogus", S("250-mx\r\n250-SIZE 700\r\n250 SIZE x\r\n"), E_SIZE, "mx", 700, true, "",
      0, "", 0 },
    { "SIZE=1000 malformed", S("250-mx\r\n250 SIZE=1000\r\n"), 0, "mx", 0, false, "", 0, "", 1 },
    { "duplicated keywords", S("250-mx\r\n250-PIPELINING\r\n250-pipelining\r\n250-XA\r\n250 xa\r\n"),
      E_PIPE, "mx", 0, false, "", 0, "XA", 0 },
    { "unknown keywords kept",
      S("250-mx\r\n250-XCLIENT NAME ADDR\r\n250-X-EXPS GSSAPI NTLM\r\n250-ETRN\r\n250 DELIVERBY 60\r\n"),
      0, "mx", 0, false, "", 0, "XCLIENT X-EXPS ETRN DELIVERBY", 0 },
    { "keyword of 32", S("250-mx\r\n250 ABCDEFGHIJABCDEFGHIJABCDEFGHIJ12\r\n"), 0, "mx", 0, false, "", 0,
      "ABCDEFGHIJABCDEFGHIJABCDEFGHIJ12", 0 },
    { "keyword of 33", S("250-mx\r\n250 ABCDEFGHIJABCDEFGHIJABCDEFGHIJ123\r\n"), 0, "mx", 0, false, "",
      0, "", 1 },
    { "keyword leading hyphen", S("250-mx\r\n250 -PIPELINING\r\n"), 0, "mx", 0, false, "", 0, "", 1 },
    { "keyword empty", S("250-mx\r\n250-\r\n250  \r\n"), 0, "mx", 0, false, "", 0, "", 2 },
    { "keyword with =", S("250-mx\r\n250 PIPE=LINING\r\n"), 0, "mx", 0, false, "", 0, "", 1 },
    { "keyword control byte", S("250-mx\r\n250-PIPELINING\x01\r\n250 \x01STARTTLS\r\n"), 0, "mx", 0,
      false, "", 0, "", 2 },
    { "keyword leading space", S("250-mx\r\n250  PIPELINING\r\n"), E_PIPE, "mx", 0, false, "", 0, "", 0 },
    { "keyword 8-bit", S("250-mx\r\n250 PIPEL\xc3\x8fNING\r\n"), 0, "mx", 0, false, "", 0, "", 1 },
    { "enhanced code in EHLO line", S("250-mx\r\n250 2.0.0 PIPELINING\r\n"), 0, "mx", 0, false, "", 0,
      "", 1 },
    { "PIPELINING with junk parameter", S("250-mx\r\n250 PIPELINING yes\r\n"), E_PIPE, "mx", 0, false,
      "", 0, "", 0 },
};

static void test_ehlo_table(void **state)
{
    (void) state;
    for (size_t k = 0; k < sizeof(ehlo_cases) / sizeof(ehlo_cases[0]); k++) {
        const struct ehlo_case *c = &ehlo_cases[k];
        struct smtp_reply r;
        struct smtp_ehlo caps;
        struct sy_err err;
        char got[2048];

        print_message("ehlo case %s\n", c->name);
        smtp_reply_init(&r);
        parse_reply(c->in, c->len, &r);
        /* Stale capabilities from an earlier EHLO must go (RFC 3207 §4.2). */
        memset(&caps, 0x5a, sizeof(caps));
        assert_int_equal(smtp_ehlo_parse(&r, &caps, &err), SY_OK);
        assert_int_equal(caps.ext, c->ext);
        assert_string_equal(smtp_ehlo_name(&caps), c->server);
        assert_int_equal(smtp_ehlo_size_max(&caps), c->size_max);
        assert_int_equal(caps.size_bogus, c->size_bogus);
        joined(&caps, true, got, sizeof(got));
        assert_string_equal(got, c->mechs);
        assert_int_equal(caps.mechs_dropped, c->mechs_dropped);
        joined(&caps, false, got, sizeof(got));
        assert_string_equal(got, c->others);
        assert_int_equal(caps.others_dropped, c->others_dropped);
        for (unsigned bit = 1; bit <= SMTP_EXT_AUTH; bit <<= 1)
            assert_int_equal(smtp_ehlo_has(&caps, bit), (c->ext & bit) != 0);
        smtp_reply_free(&r);
    }
}

/* ---- refusals ---- */

struct refuse_case {
    const char *name;
    const char *in;
    size_t len;
};

static const struct refuse_case refuse_cases[] = {
    { "550", S("550 5.5.1 EHLO not supported\r\n") },
    { "502", S("502 command not implemented\r\n") },
    { "421", S("421 4.3.2 shutting down\r\n") },
    { "354", S("354 go\r\n") },
};

static void test_ehlo_refused(void **state)
{
    (void) state;
    for (size_t k = 0; k < sizeof(refuse_cases) / sizeof(refuse_cases[0]); k++) {
        const struct refuse_case *c = &refuse_cases[k];
        struct smtp_reply r;
        struct smtp_ehlo caps;
        struct sy_err err;

        print_message("refuse case %s\n", c->name);
        smtp_reply_init(&r);
        parse_reply(c->in, c->len, &r);
        memset(&caps, 0x5a, sizeof(caps));
        assert_int_equal(smtp_ehlo_parse(&r, &caps, &err), SY_ESYNTAX);
        assert_int_equal(err.code, SY_ESYNTAX);
        assert_string_equal(err.enh, "4.5.0");
        assert_non_null(strstr(err.text, "EHLO"));
        assert_int_equal(caps.ext, 0);
        assert_string_equal(smtp_ehlo_name(&caps), "");
        assert_int_equal(smtp_ehlo_nmechs(&caps), 0);
        smtp_reply_free(&r);
    }
    /* An empty reply is no EHLO reply either. */
    {
        struct smtp_reply r;
        struct smtp_ehlo caps;

        smtp_reply_init(&r);
        assert_int_equal(smtp_ehlo_parse(&r, &caps, NULL), SY_ESYNTAX);
    }
}

/* ---- bounds (B3 #62) ---- */

/* 10000 distinct AUTH mechanisms in one (100 KB) line: 32 kept. */
static void test_ehlo_many_mechs(void **state)
{
    size_t cap = 200000, len = 0;
    char *line = malloc(cap);
    struct smtp_ehlo caps;

    (void) state;
    assert_non_null(line);
    len = (size_t) snprintf(line, cap, "AUTH");
    for (int i = 0; i < 10000; i++) {
        int k = snprintf(line + len, cap - len, " M%d", i);

        assert_true(k > 0 && (size_t) k < cap - len);
        len += (size_t) k;
    }
    smtp_ehlo_init(&caps);
    smtp_ehlo_add_line(&caps, line, len);
    assert_true(smtp_ehlo_has(&caps, SMTP_EXT_AUTH));
    assert_int_equal(smtp_ehlo_nmechs(&caps), SMTP_EHLO_MECHS_MAX);
    assert_int_equal(caps.mechs_dropped, 10000 - SMTP_EHLO_MECHS_MAX);
    assert_string_equal(smtp_ehlo_mech(&caps, 0), "M0");
    assert_string_equal(smtp_ehlo_mech(&caps, SMTP_EHLO_MECHS_MAX - 1), "M31");
    assert_string_equal(smtp_ehlo_mech(&caps, SMTP_EHLO_MECHS_MAX), "");
    assert_true(smtp_ehlo_has_mech(&caps, "m31"));
    assert_false(smtp_ehlo_has_mech(&caps, "M32"));
    free(line);
}

/* A 100 KB line of one keyword, and of one SIZE digit string. */
static void test_ehlo_long_lines(void **state)
{
    size_t n = 100 * 1024;
    char *line = malloc(n);
    struct smtp_ehlo caps;

    (void) state;
    assert_non_null(line);
    memset(line, 'A', n);
    smtp_ehlo_init(&caps);
    smtp_ehlo_add_line(&caps, line, n);
    assert_int_equal(caps.nothers, 0);
    assert_int_equal(caps.others_dropped, 1);

    memcpy(line, "SIZE ", 5);
    memset(line + 5, '9', n - 5);
    smtp_ehlo_add_line(&caps, line, n);
    assert_true(smtp_ehlo_has(&caps, SMTP_EXT_SIZE));
    assert_int_equal(smtp_ehlo_size_max(&caps), 0);
    assert_true(caps.size_bogus);

    /* The server name is cut at 255. */
    memset(line, 'n', n);
    smtp_ehlo_set_name(&caps, line, n);
    assert_int_equal(strlen(smtp_ehlo_name(&caps)), SMTP_EHLO_NAME_MAX - 1);
    free(line);
}

/* 10000 unknown keywords: 16 kept, the rest counted. */
static void test_ehlo_many_others(void **state)
{
    struct smtp_ehlo caps;

    (void) state;
    smtp_ehlo_init(&caps);
    for (int i = 0; i < 10000; i++) {
        char kw[16];
        int k = snprintf(kw, sizeof(kw), "X%d", i);

        smtp_ehlo_add_line(&caps, kw, (size_t) k);
    }
    assert_int_equal(caps.nothers, SMTP_EHLO_OTHERS_MAX);
    assert_int_equal(caps.others_dropped, 10000 - SMTP_EHLO_OTHERS_MAX);
    assert_string_equal(caps.others[0], "X0");
    assert_int_equal(caps.ext, 0);
}

/* After STARTTLS a new EHLO replaces everything. */
static void test_ehlo_reparse(void **state)
{
    struct smtp_reply a, b;
    struct smtp_ehlo caps;

    (void) state;
    smtp_reply_init(&a);
    smtp_reply_init(&b);
    parse_reply(S("250-plain.example\r\n250-STARTTLS\r\n250-SIZE 100\r\n250-XFOO\r\n250 AUTH PLAIN\r\n"),
                &a);
    parse_reply(S("250-tls.example\r\n250 AUTH SCRAM-SHA-256\r\n"), &b);
    assert_int_equal(smtp_ehlo_parse(&a, &caps, NULL), SY_OK);
    assert_true(smtp_ehlo_has(&caps, SMTP_EXT_STARTTLS | SMTP_EXT_SIZE | SMTP_EXT_AUTH));
    assert_false(smtp_ehlo_has(&caps, SMTP_EXT_STARTTLS | SMTP_EXT_DSN));
    assert_false(smtp_ehlo_has(&caps, 0));
    assert_int_equal(smtp_ehlo_parse(&b, &caps, NULL), SY_OK);
    assert_string_equal(smtp_ehlo_name(&caps), "tls.example");
    assert_int_equal(caps.ext, SMTP_EXT_AUTH);
    assert_int_equal(smtp_ehlo_size_max(&caps), 0);
    assert_int_equal(caps.nothers, 0);
    assert_int_equal(smtp_ehlo_nmechs(&caps), 1);
    assert_false(smtp_ehlo_has_mech(&caps, "PLAIN"));
    assert_true(smtp_ehlo_has_mech(&caps, "scram-sha-256"));
    assert_false(smtp_ehlo_has_mech(&caps, "SCRAM-SHA-256-PLUS"));
    smtp_reply_free(&a);
    smtp_reply_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ehlo_table),
        cmocka_unit_test(test_ehlo_refused),
        cmocka_unit_test(test_ehlo_many_mechs),
        cmocka_unit_test(test_ehlo_long_lines),
        cmocka_unit_test(test_ehlo_many_others),
        cmocka_unit_test(test_ehlo_reparse),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
