/* test_lmtp_proto.c - lmtp/lmtp_proto.c: commands, paths, MAIL/RCPT
 * parameters and xtext, including the hostile-input cases of
 * research/reliability.md B1 (#22, #25, #26, #29-#35) and D9.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/envelope.h"
#include "gateway/util/err.h"
#include "lmtp/lmtp_proto.h"

/* A string literal and its length, NUL bytes included. */
#define S(x) x, sizeof(x) - 1
#define OK SY_OK
#define BAD SY_ESYNTAX

/* 2026-11-23T09:00:00Z, and a 30-day FUTURERELEASE maximum. */
#define T_NOW ((int64_t) 1795424400)
#define T_MAX ((uint64_t) 2592000)

/* ---- commands ---- */

struct cmd_case {
    const char *name;
    const char *line;
    size_t len;
    int rc;
    int verb;
    const char *arg;        /* expected argument (rc OK) */
    int code;               /* expected reply (rc BAD) */
    const char *enh;
};

static const struct cmd_case cmd_cases[] = {
    { "MAIL", S("MAIL FROM:<a@b>"), OK, LMTP_MAIL, "FROM:<a@b>", 0, NULL },
    { "verb case-insensitive", S("mAiL FROM:<a@b>"), OK, LMTP_MAIL, "FROM:<a@b>", 0, NULL },
    { "LHLO", S("LHLO mx.example"), OK, LMTP_LHLO, "mx.example", 0, NULL },
    { "DATA", S("DATA"), OK, LMTP_DATA, "", 0, NULL },
    { "DATA trailing SP", S("DATA "), OK, LMTP_DATA, "", 0, NULL },
    { "exactly one SP eaten", S("NOOP  x"), OK, LMTP_NOOP, " x", 0, NULL },
    { "RCPT", S("RCPT TO:<x@y>"), OK, LMTP_RCPT, "TO:<x@y>", 0, NULL },
    { "RSET", S("RSET"), OK, LMTP_RSET, "", 0, NULL },
    { "QUIT", S("quit"), OK, LMTP_QUIT, "", 0, NULL },
    { "VRFY", S("VRFY x"), OK, LMTP_VRFY, "x", 0, NULL },
    { "HELP", S("HELP"), OK, LMTP_HELP, "", 0, NULL },
    { "HELO (B1 #22)", S("HELO x"), OK, LMTP_HELO, "x", 0, NULL },
    { "EHLO (B1 #22)", S("EHLO x"), OK, LMTP_EHLO, "x", 0, NULL },
    { "BDAT", S("BDAT 10 LAST"), OK, LMTP_BDAT, "10 LAST", 0, NULL },
    { "STARTTLS", S("STARTTLS"), OK, LMTP_STARTTLS, "", 0, NULL },
    { "EXPN", S("EXPN list"), OK, LMTP_EXPN, "list", 0, NULL },
    { "AUTH", S("AUTH PLAIN"), OK, LMTP_AUTH, "PLAIN", 0, NULL },
    { "empty line", S(""), OK, LMTP_UNKNOWN, "", 0, NULL },
    { "unknown verb", S("FOO bar"), OK, LMTP_UNKNOWN, "bar", 0, NULL },
    { "verb prefix", S("MAILX FROM:<a@b>"), OK, LMTP_UNKNOWN, "FROM:<a@b>", 0, NULL },
    { "UTF-8 argument", S("RCPT TO:<\xe7\x94\xa8@x>"), OK, LMTP_RCPT, "TO:<\xe7\x94\xa8@x>", 0, NULL },
    { "leading SP", S(" NOOP"), OK, LMTP_UNKNOWN, "NOOP", 0, NULL },
    { "8-bit verb", S("M\x80IL FROM:<a@b>"), BAD, 0, NULL, 500, "5.5.2" },
    { "NUL in verb", S("MA\0L"), BAD, 0, NULL, 500, "5.5.2" },
    { "NUL in argument (B1 #32)", S("MAIL FROM:<a\0b@x>"), BAD, 0, NULL, 500, "5.5.2" },
    { "CR inside", S("NOOP\rX"), BAD, 0, NULL, 500, "5.5.2" },
    { "LF at end (B1 #5)", S("NOOP\n"), BAD, 0, NULL, 500, "5.5.2" },
    { "CR in argument", S("LHLO x\rX-Injected: 1"), BAD, 0, NULL, 500, "5.5.2" },
    { "tab in verb", S("MAIL\tFROM:<a@b>"), BAD, 0, NULL, 500, "5.5.2" },
    { "DEL in verb", S("NO\x7fOP"), BAD, 0, NULL, 500, "5.5.2" },
};

static void test_command_table(void **state)
{
    (void) state;
    for (size_t k = 0; k < sizeof(cmd_cases) / sizeof(cmd_cases[0]); k++) {
        const struct cmd_case *c = &cmd_cases[k];
        struct lmtp_cmd cmd;
        struct lmtp_reply rep = { 0 };

        print_message("command case %s\n", c->name);
        assert_int_equal(lmtp_parse_command(c->line, c->len, &cmd, &rep), c->rc);
        if (c->rc == OK) {
            assert_int_equal(cmd.verb, c->verb);
            assert_int_equal(cmd.arglen, strlen(c->arg));
            assert_memory_equal(cmd.arg, c->arg, cmd.arglen);
        } else {
            assert_int_equal(rep.code, c->code);
            assert_string_equal(rep.enh, c->enh);
            assert_true(rep.text[0] != '\0');
        }
    }
}

/* ---- paths ---- */

struct path_case {
    const char *name;
    const char *in;
    size_t len;
    bool utf8, null;
    int rc;
    const char *addr;
    size_t consumed;
    int code;
    const char *enh;
};

static const struct path_case path_cases[] = {
    { "plain", S("<user@example.com>"), false, false, OK, "user@example.com", 18, 0, NULL },
    { "stops at >", S("<a@b.c> SIZE=1"), false, false, OK, "a@b.c", 7, 0, NULL },
    { "null allowed", S("<>"), false, true, OK, "", 2, 0, NULL },
    { "null refused (B1 #25)", S("<>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "source route (B1 #26)", S("<@a,@b:user@d>"), false, false, OK, "user@d", 14, 0, NULL },
    { "source route one hop", S("<@a.example:user@d>"), false, false, OK, "user@d", 19, 0, NULL },
    { "source route no @", S("<@a,b:user@d>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "source route no colon", S("<@a user@d>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "source route bad host", S("<@-a:user@d>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "quoted needs quotes", S("<\"a b\"@x>"), false, false, OK, "\"a b\"@x", 9, 0, NULL },
    { "quoted unquoted", S("<\"ab\"@x>"), false, false, OK, "ab@x", 8, 0, NULL },
    { "quoted dots ok", S("<\"a.b\"@x>"), false, false, OK, "a.b@x", 9, 0, NULL },
    { "quoted double dot", S("<\"a..b\"@x>"), false, false, OK, "\"a..b\"@x", 10, 0, NULL },
    { "quoted pair quote", S("<\"a\\\"b\"@x>"), false, false, OK, "\"a\\\"b\"@x", 10, 0, NULL },
    { "quoted pair needless", S("<\"a\\bc\"@x>"), false, false, OK, "abc@x", 10, 0, NULL },
    { "quoted empty", S("<\"\"@x>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "quoted control", S("<\"a\x01\"@x>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "quoted unterminated", S("<\"abc@x>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "quoted pair 8-bit", S("<\"a\\\xc3\xa9\"@x>"), true, false, BAD, NULL, 0, 501, "5.1.3" },
    { "leading dot", S("<.a@x>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "trailing dot", S("<a.@x>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "double dot", S("<a..b@x>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "atext specials", S("<a!#$%&'*+-/=?^_`{|}~@x>"), false, false, OK, "a!#$%&'*+-/=?^_`{|}~@x", 24, 0, NULL },
    { "domain trailing dot", S("<a@x.>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "domain leading dot", S("<a@.x>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "domain empty label", S("<a@x..y>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "domain leading hyphen", S("<a@-x.com>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "domain trailing hyphen", S("<a@x-.com>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "domain inner hyphens", S("<a@x--y.com>"), false, false, OK, "a@x--y.com", 12, 0, NULL },
    { "domain empty", S("<a@>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "domain underscore", S("<a@x_y.com>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "no domain", S("<user>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "Postmaster needs RCPT", S("<Postmaster>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "no <", S("user@x"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "no >", S("<user@x"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "empty", S(""), false, true, BAD, NULL, 0, 501, "5.1.3" },
    { "NUL in local (B1 #32)", S("<a\0b@x>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "NUL in domain", S("<ab@x\0y>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "space in local", S("<a b@x>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "space in domain", S("<a@b c>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "CRLF in domain", S("<a@b\r\nRCPT>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "IPv4 literal (B1 #30)", S("<a@[192.0.2.1]>"), false, false, OK, "a@[192.0.2.1]", 15, 0, NULL },
    { "IPv4 loopback literal", S("<a@[127.0.0.1]>"), false, false, OK, "a@[127.0.0.1]", 15, 0, NULL },
    { "IPv6 literal", S("<a@[IPv6:::1]>"), false, false, OK, "a@[IPv6:::1]", 14, 0, NULL },
    { "IPv6 tag case", S("<a@[ipv6:2001:db8::1]>"), false, false, OK, "a@[IPv6:2001:db8::1]", 22, 0, NULL },
    { "IPv4 octet too big", S("<a@[300.1.1.1]>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "IPv4 short", S("<a@[1.2.3]>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "IPv4 leading zero", S("<a@[01.2.3.4]>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "IPv6 tag with IPv4", S("<a@[IPv6:1.2.3.4]>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "IPv6 bad", S("<a@[IPv6:1::2::3]>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "general literal", S("<a@[x400:abc]>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "empty literal", S("<a@[]>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "unterminated literal", S("<a@[1.2.3.4>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "literal then junk", S("<a@[1.2.3.4]x>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "UTF-8 without SMTPUTF8 (B1 #31)", S("<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a>"),
      false, false, BAD, NULL, 0, 553, "5.6.7" },
    { "UTF-8 with SMTPUTF8", S("<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a>"),
      true, false, OK, "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a", 22, 0, NULL },
    { "UTF-8 quoted", S("<\"\xc3\xa9 x\"@a>"), true, false, OK, "\"\xc3\xa9 x\"@a", 10, 0, NULL },
    { "overlong C0 AF", S("<\xc0\xaf@x>"), true, false, BAD, NULL, 0, 553, "5.1.3" },
    { "overlong without SMTPUTF8", S("<\xc0\xaf@x>"), false, false, BAD, NULL, 0, 553, "5.6.7" },
    { "lone surrogate", S("<a@\xed\xa0\x80.x>"), true, false, BAD, NULL, 0, 553, "5.1.3" },
    { "truncated UTF-8", S("<a\xe7\x94@x>"), true, false, BAD, NULL, 0, 553, "5.1.3" },
    { "A-label", S("<a@xn--mnchen-3ya.de>"), false, false, OK, "a@xn--mnchen-3ya.de", 21, 0, NULL },
    { "A-label emoji", S("<a@xn--ls8h.la>"), false, false, OK, "a@xn--ls8h.la", 15, 0, NULL },
    { "bad punycode", S("<a@xn--zz.de>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "punycode overflow", S("<a@xn--9999999999a.de>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "punycode C1 control", S("<a@xn--a.de>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "punycode ASCII only", S("<a@xn--ab-.de>"), false, false, BAD, NULL, 0, 501, "5.1.3" },
    { "xn-- with UTF-8", S("<a@xn--\xc3\xa9.de>"), true, false, BAD, NULL, 0, 501, "5.1.3" },
    { "U-label hyphen", S("<a@-\xc3\xa9.de>"), true, false, BAD, NULL, 0, 501, "5.1.3" },
};

static void test_path_table(void **state)
{
    (void) state;
    for (size_t k = 0; k < sizeof(path_cases) / sizeof(path_cases[0]); k++) {
        const struct path_case *c = &path_cases[k];
        struct lmtp_reply rep = { 0 };
        char *addr = NULL;
        size_t used = 12345;

        print_message("path case %s\n", c->name);
        assert_int_equal(lmtp_parse_path(c->in, c->len, c->utf8, c->null, &addr, &used, &rep), c->rc);
        if (c->rc == OK) {
            assert_non_null(addr);
            assert_string_equal(addr, c->addr);
            assert_int_equal(used, c->consumed);
            /* The normal form parses to itself. */
            if (addr[0] != '\0') {
                char again[600];
                char *addr2 = NULL;
                size_t used2;

                assert_true((size_t) snprintf(again, sizeof(again), "<%s>", addr) < sizeof(again));
                assert_int_equal(lmtp_parse_path(again, strlen(again), c->utf8, c->null, &addr2,
                                                 &used2, &rep), OK);
                assert_string_equal(addr2, addr);
                free(addr2);
            }
            free(addr);
        } else {
            assert_null(addr);
            assert_int_equal(used, 12345);
            assert_int_equal(rep.code, c->code);
            assert_string_equal(rep.enh, c->enh);
        }
    }
}

/* path_make - "<" local "@" domain ">" with the given lengths, the
 * domain made of labels of label octets */
static char *path_make(size_t local, size_t domain, size_t label)
{
    char *p = malloc(local + domain + 4);
    size_t o = 0;

    assert_non_null(p);
    p[o++] = '<';
    memset(p + o, 'l', local);
    o += local;
    p[o++] = '@';
    for (size_t d = 0; d < domain; d++)
        p[o++] = (d % (label + 1) == label) ? '.' : 'd';
    p[o++] = '>';
    p[o] = '\0';
    return p;
}

/* B1 #29: local part 64/65, domain 255/256, path 256/257. */
static void test_path_lengths(void **state)
{
    static const struct {
        const char *name;
        size_t local, domain, label;
        int rc;
        const char *why;
    } cases[] = {
        { "local 64", 64, 10, 63, OK, NULL },
        { "local 65", 65, 10, 63, BAD, "local part too long" },
        { "path 256", 64, 189, 63, OK, NULL },
        { "path 257", 64, 190, 63, BAD, "address too long" },
        { "domain 252 in path 256", 1, 252, 63, OK, NULL },
        { "domain 255 (path 259)", 1, 255, 63, BAD, "address too long" },
        { "domain 256", 1, 256, 62, BAD, "domain too long" },
        { "label 63", 1, 63, 63, OK, NULL },
        { "label 64", 1, 64, 64, BAD, "label too long" },
    };

    (void) state;
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char *p = path_make(cases[k].local, cases[k].domain, cases[k].label);
        struct lmtp_reply rep = { 0 };
        char *addr = NULL;
        size_t used;

        print_message("length case %s\n", cases[k].name);
        assert_int_equal(lmtp_parse_path(p, strlen(p), false, false, &addr, &used, &rep), cases[k].rc);
        if (cases[k].rc == OK) {
            assert_int_equal(used, cases[k].local + cases[k].domain + 3);
            assert_int_equal(strlen(addr), cases[k].local + cases[k].domain + 1);
            free(addr);
        } else {
            assert_int_equal(rep.code, 501);
            assert_string_equal(rep.enh, "5.1.3");
            assert_non_null(strstr(rep.text, cases[k].why));
        }
        free(p);
    }
}

/* ---- MAIL ---- */

struct mail_case {
    const char *name;
    const char *arg;
    size_t len;
    bool trusted;
    int rc;
    const char *sender;
    int ret;
    const char *envid;
    int body;
    unsigned flags;         /* SMTPUTF8 / REQUIRETLS bits expected */
    uint64_t size;
    int64_t hold;
    int code;
    const char *enh;
};

#define MOK(name, arg, sender, ret, envid, body, flags, size, hold) \
    { name, S(arg), true, OK, sender, ret, envid, body, flags, size, hold, 0, NULL }
#define MBAD(name, arg, code, enh) \
    { name, S(arg), true, BAD, NULL, 0, NULL, 0, 0, 0, 0, code, enh }

#define UTF8_ADDR "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a"

static const struct mail_case mail_cases[] = {
    MOK("plain", "FROM:<a@b.example>", "a@b.example", 0, NULL, 0, 0, 0, 0),
    MOK("keyword case", "from:<a@b.example>", "a@b.example", 0, NULL, 0, 0, 0, 0),
    MOK("space after colon", "FROM: <a@b.example>", "a@b.example", 0, NULL, 0, 0, 0, 0),
    MOK("null sender (B1 #25)", "FROM:<>", "", 0, NULL, 0, 0, 0, 0),
    MOK("null sender with SIZE", "FROM:<> SIZE=100", "", 0, NULL, 0, 0, 100, 0),
    MOK("source route", "FROM:<@a,@b:user@d>", "user@d", 0, NULL, 0, 0, 0, 0),
    MOK("extra spaces", "FROM:<a@b>  SIZE=5  ", "a@b", 0, NULL, 0, 0, 5, 0),
    MOK("SIZE at limit", "FROM:<a@b> SIZE=10000000", "a@b", 0, NULL, 0, 0, 10000000, 0),
    MOK("BODY case (B1 #34)", "FROM:<a@b> BODY=8bitmime", "a@b", 0, NULL, ENV_BODY_8BITMIME, 0, 0, 0),
    MOK("BODY=7BIT", "FROM:<a@b> body=7Bit", "a@b", 0, NULL, ENV_BODY_7BIT, 0, 0, 0),
    MOK("SMTPUTF8", "FROM:<a@b> SMTPUTF8", "a@b", 0, NULL, 0, ENV_F_SMTPUTF8, 0, 0),
    MOK("UTF-8 sender with SMTPUTF8", "FROM:<" UTF8_ADDR "> SMTPUTF8", UTF8_ADDR, 0, NULL, 0,
        ENV_F_SMTPUTF8, 0, 0),
    MOK("RET=HDRS", "FROM:<a@b> RET=hdrs", "a@b", ENV_RET_HDRS, NULL, 0, 0, 0, 0),
    MOK("RET=FULL", "FROM:<a@b> RET=FULL", "a@b", ENV_RET_FULL, NULL, 0, 0, 0, 0),
    MOK("ENVID xtext", "FROM:<a@b> ENVID=QQ+2B1", "a@b", 0, "QQ+1", 0, 0, 0, 0),
    MOK("ENVID with quotes is xtext", "FROM:<a@b> ENVID=\"x\"", "a@b", 0, "\"x\"", 0, 0, 0, 0),
    MOK("ENVID 100", "FROM:<a@b> ENVID=0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
        "a@b", 0, "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
        0, 0, 0, 0),
    MOK("REQUIRETLS trusted", "FROM:<a@b> REQUIRETLS", "a@b", 0, NULL, 0, ENV_F_REQUIRETLS, 0, 0),
    MOK("all together", "FROM:<a@b> BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x SIZE=5 HOLDFOR=60",
        "a@b", ENV_RET_HDRS, "x", ENV_BODY_8BITMIME, ENV_F_SMTPUTF8, 5, T_NOW + 60),
    /* FUTURERELEASE (D9, B1 #35) */
    MOK("HOLDFOR", "FROM:<a@b> HOLDFOR=3600", "a@b", 0, NULL, 0, 0, 0, T_NOW + 3600),
    MOK("HOLDFOR=0", "FROM:<a@b> HOLDFOR=0", "a@b", 0, NULL, 0, 0, 0, T_NOW),
    MOK("HOLDFOR at max", "FROM:<a@b> HOLDFOR=2592000", "a@b", 0, NULL, 0, 0, 0, T_NOW + 2592000),
    MOK("HOLDUNTIL Z", "FROM:<a@b> HOLDUNTIL=2026-11-23T10:00:00Z", "a@b", 0, NULL, 0, 0, 0, 1795428000),
    MOK("HOLDUNTIL +01:00", "FROM:<a@b> HOLDUNTIL=2026-11-23T11:00:00+01:00", "a@b", 0, NULL, 0, 0, 0, 1795428000),
    MOK("HOLDUNTIL -05:00", "FROM:<a@b> HOLDUNTIL=2026-11-23T05:00:00-05:00", "a@b", 0, NULL, 0, 0, 0, 1795428000),
    MOK("HOLDUNTIL lowercase t z", "FROM:<a@b> HOLDUNTIL=2026-11-23t10:00:00z", "a@b", 0, NULL, 0, 0, 0, 1795428000),
    MOK("HOLDUNTIL fraction rounds up", "FROM:<a@b> HOLDUNTIL=2026-11-23T10:00:00.5Z", "a@b", 0, NULL, 0, 0, 0, 1795428001),
    MOK("HOLDUNTIL zero fraction", "FROM:<a@b> HOLDUNTIL=2026-11-23T10:00:00.000Z", "a@b", 0, NULL, 0, 0, 0, 1795428000),
    MOK("HOLDUNTIL now", "FROM:<a@b> HOLDUNTIL=2026-11-23T09:00:00Z", "a@b", 0, NULL, 0, 0, 0, T_NOW),
    MOK("HOLDUNTIL at max", "FROM:<a@b> HOLDUNTIL=2026-12-23T09:00:00Z", "a@b", 0, NULL, 0, 0, 0, T_NOW + 2592000),
    MOK("HOLDUNTIL +14:00 across a month", "FROM:<a@b> HOLDUNTIL=2026-12-01T00:00:00+14:00", "a@b", 0, NULL, 0, 0, 0, 1796032800),

    MBAD("no FROM:", "<a@b>", 501, "5.5.4"),
    MBAD("FRM:", "FRM:<a@b>", 501, "5.5.4"),
    MBAD("no brackets", "FROM:a@b", 501, "5.1.7"),
    MBAD("nothing after FROM:", "FROM:", 501, "5.1.7"),
    MBAD("garbage after path", "FROM:<a@b>x", 501, "5.5.4"),
    MBAD("bad sender syntax", "FROM:<a..b@x>", 501, "5.1.7"),
    MBAD("NUL in sender (B1 #32)", "FROM:<a\0b@x>", 501, "5.1.7"),
    MBAD("NUL in parameter (B1 #32)", "FROM:<a@b> SIZE=1\0", 501, "5.5.4"),
    MBAD("NUL in ENVID", "FROM:<a@b> ENVID=a\0b", 501, "5.5.4"),
    MBAD("UTF-8 sender without SMTPUTF8", "FROM:<" UTF8_ADDR ">", 553, "5.6.7"),
    MBAD("overlong C0 AF", "FROM:<\xc0\xaf@x> SMTPUTF8", 553, "5.1.7"),
    MBAD("overlong without SMTPUTF8", "FROM:<\xc0\xaf@x>", 553, "5.6.7"),
    /* B1 #34: parameter grammar torture */
    MBAD("lone =", "FROM:<a@b> =", 501, "5.5.4"),
    MBAD("=1", "FROM:<a@b> =1", 501, "5.5.4"),
    MBAD("SIZE without value", "FROM:<a@b> SIZE", 501, "5.5.4"),
    MBAD("SIZE=", "FROM:<a@b> SIZE=", 501, "5.5.4"),
    MBAD("SIZE=-1", "FROM:<a@b> SIZE=-1", 501, "5.5.4"),
    MBAD("SIZE=1e9", "FROM:<a@b> SIZE=1e9", 501, "5.5.4"),
    MBAD("SIZE quoted", "FROM:<a@b> SIZE=\"100\"", 501, "5.5.4"),
    MBAD("SIZE 21 digits", "FROM:<a@b> SIZE=000000000000000000001", 501, "5.5.4"),
    MBAD("SIZE over limit (B1 #12)", "FROM:<a@b> SIZE=10000001", 552, "5.3.4"),
    MBAD("SIZE over 2^64", "FROM:<a@b> SIZE=99999999999999999999", 552, "5.3.4"),
    MBAD("SIZE==1", "FROM:<a@b> SIZE==1", 501, "5.5.4"),
    MBAD("SIZE=1=2", "FROM:<a@b> SIZE=1=2", 501, "5.5.4"),
    MBAD("duplicate SIZE", "FROM:<a@b> SIZE=1 SIZE=2", 555, "5.5.4"),
    MBAD("duplicate SMTPUTF8", "FROM:<a@b> SMTPUTF8 smtputf8", 555, "5.5.4"),
    MBAD("quoted keyword", "FROM:<a@b> \"SIZE\"=1", 501, "5.5.4"),
    MBAD("quote splits token", "FROM:<a@b> ENVID=\"a b\"", 501, "5.5.4"),
    MBAD("keyword hyphen first", "FROM:<a@b> -X=1", 501, "5.5.4"),
    MBAD("tab separator", "FROM:<a@b>\tSIZE=1", 501, "5.5.4"),
    MBAD("unknown parameter", "FROM:<a@b> FOO=bar", 555, "5.5.4"),
    MBAD("AUTH not advertised", "FROM:<a@b> AUTH=<>", 555, "5.5.4"),
    MBAD("BODY=BINARYMIME", "FROM:<a@b> BODY=BINARYMIME", 555, "5.5.4"),
    MBAD("BODY=9BIT", "FROM:<a@b> BODY=9BIT", 501, "5.5.4"),
    MBAD("BODY without value", "FROM:<a@b> BODY", 501, "5.5.4"),
    MBAD("SMTPUTF8 with value", "FROM:<a@b> SMTPUTF8=yes", 501, "5.5.4"),
    MBAD("REQUIRETLS with value", "FROM:<a@b> REQUIRETLS=1", 501, "5.5.4"),
    MBAD("RET=ALL", "FROM:<a@b> RET=ALL", 501, "5.5.4"),
    MBAD("ENVID lowercase hex", "FROM:<a@b> ENVID=a+2b", 501, "5.5.4"),
    MBAD("ENVID CR", "FROM:<a@b> ENVID=a+0Db", 501, "5.5.4"),
    MBAD("ENVID control", "FROM:<a@b> ENVID=a+01b", 501, "5.5.4"),
    MBAD("ENVID 8-bit", "FROM:<a@b> ENVID=a+C3+A9", 501, "5.5.4"),
    MBAD("ENVID raw 8-bit", "FROM:<a@b> ENVID=\xc3\xa9", 501, "5.5.4"),
    MBAD("ENVID 101", "FROM:<a@b> ENVID=01234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890",
         501, "5.5.4"),
    MBAD("HOLDFOR=-5", "FROM:<a@b> HOLDFOR=-5", 501, "5.5.4"),
    MBAD("HOLDFOR 11 digits", "FROM:<a@b> HOLDFOR=99999999999", 501, "5.5.4"),
    MBAD("HOLDFOR too far", "FROM:<a@b> HOLDFOR=2592001", 501, "5.5.4"),
    MBAD("HOLDFOR no value", "FROM:<a@b> HOLDFOR", 501, "5.5.4"),
    MBAD("HOLDFOR twice", "FROM:<a@b> HOLDFOR=1 HOLDFOR=1", 555, "5.5.4"),
    MBAD("HOLDFOR and HOLDUNTIL", "FROM:<a@b> HOLDFOR=60 HOLDUNTIL=2026-11-23T10:00:00Z", 501, "5.5.4"),
    MBAD("HOLDUNTIL and HOLDFOR", "FROM:<a@b> HOLDUNTIL=2026-11-23T10:00:00Z HOLDFOR=60", 501, "5.5.4"),
    MBAD("HOLDUNTIL not a date", "FROM:<a@b> HOLDUNTIL=not-a-date", 501, "5.5.4"),
    MBAD("HOLDUNTIL past", "FROM:<a@b> HOLDUNTIL=2026-11-23T08:59:59Z", 501, "5.5.4"),
    MBAD("HOLDUNTIL too far", "FROM:<a@b> HOLDUNTIL=2026-12-23T09:00:01Z", 501, "5.5.4"),
    MBAD("HOLDUNTIL Feb 29 2026", "FROM:<a@b> HOLDUNTIL=2026-02-29T10:00:00Z", 501, "5.5.4"),
    MBAD("HOLDUNTIL hour 24", "FROM:<a@b> HOLDUNTIL=2026-11-23T24:00:00Z", 501, "5.5.4"),
    MBAD("HOLDUNTIL no offset", "FROM:<a@b> HOLDUNTIL=2026-11-23T10:00:00", 501, "5.5.4"),
    MBAD("HOLDUNTIL no seconds", "FROM:<a@b> HOLDUNTIL=2026-11-23T10:00Z", 501, "5.5.4"),
    MBAD("HOLDUNTIL offset no colon", "FROM:<a@b> HOLDUNTIL=2026-11-23T10:00:00+0100", 501, "5.5.4"),
    MBAD("HOLDUNTIL empty fraction", "FROM:<a@b> HOLDUNTIL=2026-11-23T10:00:00.Z", 501, "5.5.4"),
    MBAD("HOLDUNTIL trailing junk", "FROM:<a@b> HOLDUNTIL=2026-11-23T10:00:00Zx", 501, "5.5.4"),
    MBAD("HOLDUNTIL month 13", "FROM:<a@b> HOLDUNTIL=2026-13-01T10:00:00Z", 501, "5.5.4"),
    { "REQUIRETLS untrusted (B1 #35)", S("FROM:<a@b> REQUIRETLS"), false, BAD, NULL, 0, NULL, 0, 0, 0, 0,
      555, "5.5.4" },
};

/* mail_prefill - a transaction state that a failed MAIL must not touch */
static void mail_prefill(struct envelope *e)
{
    env_init(e);
    e->sender = strdup("old@example.org");
    e->envid = strdup("OLDID");
    e->ret = ENV_RET_FULL;
    e->body = ENV_BODY_8BITMIME;
    e->flags = ENV_F_SMTPUTF8 | ENV_F_REQUIRETLS | ENV_F_8BIT;
    e->size_declared = 42;
    e->hold_until = 7;
    assert_non_null(e->sender);
    assert_non_null(e->envid);
}

static void test_mail_table(void **state)
{
    (void) state;
    for (size_t k = 0; k < sizeof(mail_cases) / sizeof(mail_cases[0]); k++) {
        const struct mail_case *c = &mail_cases[k];
        struct lmtp_mail_policy pol = { 10000000, c->trusted, T_MAX, T_NOW };
        struct lmtp_reply rep = { 0 };
        struct envelope e;
        const char *old_sender, *old_envid;

        print_message("MAIL case %s\n", c->name);
        mail_prefill(&e);
        old_sender = e.sender;
        old_envid = e.envid;
        assert_int_equal(lmtp_parse_mail(c->arg, c->len, &pol, &e, &rep), c->rc);
        if (c->rc == OK) {
            assert_string_equal(e.sender, c->sender);
            assert_int_equal(e.ret, c->ret);
            if (c->envid == NULL)
                assert_null(e.envid);
            else
                assert_string_equal(e.envid, c->envid);
            assert_int_equal(e.body, c->body);
            /* The content flag is not MAIL's business and stays. */
            assert_int_equal(e.flags, c->flags | ENV_F_8BIT);
            assert_int_equal(e.size_declared, c->size);
            assert_int_equal(e.hold_until, c->hold);
        } else {
            assert_int_equal(rep.code, c->code);
            assert_string_equal(rep.enh, c->enh);
            assert_true(rep.text[0] != '\0');
            assert_ptr_equal(e.sender, old_sender);
            assert_string_equal(e.sender, "old@example.org");
            assert_ptr_equal(e.envid, old_envid);
            assert_string_equal(e.envid, "OLDID");
            assert_int_equal(e.ret, ENV_RET_FULL);
            assert_int_equal(e.body, ENV_BODY_8BITMIME);
            assert_int_equal(e.flags, ENV_F_SMTPUTF8 | ENV_F_REQUIRETLS | ENV_F_8BIT);
            assert_int_equal(e.size_declared, 42);
            assert_int_equal(e.hold_until, 7);
        }
        env_free(&e);
    }
}

/* Policy edges: size_limit 0 means no limit; now near INT64_MAX. */
static void test_mail_policy_edges(void **state)
{
    struct lmtp_mail_policy pol = { 0, false, UINT64_MAX, INT64_MAX - 10 };
    struct lmtp_reply rep;
    struct envelope e;

    (void) state;
    env_init(&e);
    assert_int_equal(lmtp_parse_mail(S("FROM:<a@b> SIZE=18446744073709551615"), &pol, &e, &rep), OK);
    assert_int_equal(e.size_declared, UINT64_MAX);
    assert_int_equal(lmtp_parse_mail(S("FROM:<a@b> HOLDFOR=5"), &pol, &e, &rep), OK);
    assert_int_equal(e.hold_until, INT64_MAX - 5);
    assert_int_equal(lmtp_parse_mail(S("FROM:<a@b> HOLDFOR=11"), &pol, &e, &rep), BAD);
    assert_string_equal(rep.enh, "5.5.4");
    assert_int_equal(lmtp_parse_mail(S("FROM:<a@b> HOLDUNTIL=9999-12-31T23:59:59Z"), &pol, &e, &rep), BAD);
    env_free(&e);
}

/* ---- RCPT ---- */

struct rcpt_case {
    const char *name;
    const char *arg;
    size_t len;
    bool smtputf8;
    int rc;
    const char *addr;
    unsigned notify;
    const char *otype, *oaddr;
    int code;
    const char *enh;
};

#define ROK(name, arg, u8, addr, notify, otype, oaddr) \
    { name, S(arg), u8, OK, addr, notify, otype, oaddr, 0, NULL }
#define RBAD(name, arg, u8, code, enh) \
    { name, S(arg), u8, BAD, NULL, 0, NULL, NULL, code, enh }

static const struct rcpt_case rcpt_cases[] = {
    ROK("plain", "TO:<user@example.com>", false, "user@example.com", 0, NULL, NULL),
    ROK("lowercase, space", "to: <user@example.com>", false, "user@example.com", 0, NULL, NULL),
    ROK("Postmaster", "TO:<Postmaster>", false, "postmaster", 0, NULL, NULL),
    ROK("POSTMASTER with NOTIFY", "TO:<POSTMASTER> NOTIFY=NEVER", false, "postmaster", ENV_NOTIFY_NEVER, NULL, NULL),
    ROK("postmaster@domain", "TO:<postmaster@x.example>", false, "postmaster@x.example", 0, NULL, NULL),
    ROK("source route (B1 #26)", "TO:<@a,@b:user@d>", false, "user@d", 0, NULL, NULL),
    ROK("IPv6 literal", "TO:<user@[IPv6:::1]>", false, "user@[IPv6:::1]", 0, NULL, NULL),
    ROK("UTF-8 with SMTPUTF8", "TO:<" UTF8_ADDR ">", true, UTF8_ADDR, 0, NULL, NULL),
    ROK("NOTIFY=NEVER", "TO:<a@b> NOTIFY=NEVER", false, "a@b", ENV_NOTIFY_NEVER, NULL, NULL),
    ROK("NOTIFY two", "TO:<a@b> NOTIFY=SUCCESS,FAILURE", false, "a@b",
        ENV_NOTIFY_SUCCESS | ENV_NOTIFY_FAILURE, NULL, NULL),
    ROK("NOTIFY three, case", "TO:<a@b> notify=delay,Success,FAILURE", false, "a@b",
        ENV_NOTIFY_SUCCESS | ENV_NOTIFY_FAILURE | ENV_NOTIFY_DELAY, NULL, NULL),
    ROK("ORCPT xtext", "TO:<a@b> ORCPT=rfc822;user+40example.com", false, "a@b", 0, "rfc822", "user@example.com"),
    ROK("ORCPT type lowercased", "TO:<a@b> ORCPT=RFC822;a@b", false, "a@b", 0, "rfc822", "a@b"),
    ROK("ORCPT utf-8 escape", "TO:<a@b> ORCPT=UTF-8;\\x{E9}@x", false, "a@b", 0, "utf-8", "\xc3\xa9@x"),
    ROK("ORCPT utf-8 escape lowercase", "TO:<a@b> ORCPT=utf-8;\\x{1f600}@x", false, "a@b", 0, "utf-8",
        "\xf0\x9f\x98\x80@x"),
    ROK("ORCPT utf-8 raw", "TO:<a@b> ORCPT=utf-8;\xc3\xa9@x", true, "a@b", 0, "utf-8", "\xc3\xa9@x"),
    ROK("ORCPT utf-8 plus escaped", "TO:<a@b> ORCPT=utf-8;a\\x{2B}b@x", false, "a@b", 0, "utf-8", "a+b@x"),
    ROK("NOTIFY and ORCPT", "TO:<a@b> ORCPT=rfc822;a@b NOTIFY=FAILURE", false, "a@b", ENV_NOTIFY_FAILURE,
        "rfc822", "a@b"),

    RBAD("null (B1 #25)", "TO:<>", false, 501, "5.1.3"),
    RBAD("no TO:", "<a@b>", false, 501, "5.5.4"),
    RBAD("TOO:", "TOO:<a@b>", false, 501, "5.5.4"),
    RBAD("no brackets", "TO:user@example.com", false, 501, "5.1.3"),
    RBAD("garbage after", "TO:<a@b>x", false, 501, "5.5.4"),
    RBAD("Postmaster garbage", "TO:<Postmaster>x", false, 501, "5.5.4"),
    RBAD("UTF-8 without SMTPUTF8 (B1 #31)", "TO:<" UTF8_ADDR ">", false, 553, "5.6.7"),
    RBAD("overlong with SMTPUTF8", "TO:<\xc0\xaf@x>", true, 553, "5.1.3"),
    RBAD("unknown parameter", "TO:<a@b> FOO=1", false, 555, "5.5.4"),
    RBAD("NOTIFY=NEVER,SUCCESS", "TO:<a@b> NOTIFY=NEVER,SUCCESS", false, 501, "5.5.4"),
    RBAD("NOTIFY=SUCCESS,NEVER", "TO:<a@b> NOTIFY=SUCCESS,NEVER", false, 501, "5.5.4"),
    RBAD("NOTIFY duplicate word", "TO:<a@b> NOTIFY=SUCCESS,SUCCESS", false, 501, "5.5.4"),
    RBAD("NOTIFY=", "TO:<a@b> NOTIFY=", false, 501, "5.5.4"),
    RBAD("NOTIFY no value", "TO:<a@b> NOTIFY", false, 501, "5.5.4"),
    RBAD("NOTIFY trailing comma", "TO:<a@b> NOTIFY=SUCCESS,", false, 501, "5.5.4"),
    RBAD("NOTIFY leading comma", "TO:<a@b> NOTIFY=,SUCCESS", false, 501, "5.5.4"),
    RBAD("NOTIFY unknown", "TO:<a@b> NOTIFY=FOO", false, 501, "5.5.4"),
    RBAD("NOTIFY twice", "TO:<a@b> NOTIFY=NEVER NOTIFY=NEVER", false, 555, "5.5.4"),
    RBAD("ORCPT twice", "TO:<a@b> ORCPT=rfc822;a ORCPT=rfc822;a", false, 555, "5.5.4"),
    RBAD("ORCPT no type", "TO:<a@b> ORCPT=;a@b", false, 501, "5.5.4"),
    RBAD("ORCPT no semicolon", "TO:<a@b> ORCPT=rfc822", false, 501, "5.5.4"),
    RBAD("ORCPT empty address", "TO:<a@b> ORCPT=rfc822;", false, 501, "5.5.4"),
    RBAD("ORCPT bad type", "TO:<a@b> ORCPT=rfc_822;a@b", false, 501, "5.5.4"),
    RBAD("ORCPT lowercase hex", "TO:<a@b> ORCPT=rfc822;a+2b", false, 501, "5.5.4"),
    RBAD("ORCPT LF", "TO:<a@b> ORCPT=rfc822;a+0Ab", false, 501, "5.5.4"),
    RBAD("ORCPT 8-bit rfc822", "TO:<a@b> ORCPT=rfc822;+C3+A9@x", false, 501, "5.5.4"),
    RBAD("ORCPT raw 8-bit without SMTPUTF8", "TO:<a@b> ORCPT=utf-8;\xc3\xa9@x", false, 553, "5.6.7"),
    RBAD("ORCPT utf-8 surrogate", "TO:<a@b> ORCPT=utf-8;\\x{D800}", false, 501, "5.5.4"),
    RBAD("ORCPT utf-8 control", "TO:<a@b> ORCPT=utf-8;\\x{0A}", false, 501, "5.5.4"),
    RBAD("ORCPT utf-8 plus", "TO:<a@b> ORCPT=utf-8;a+2Bb", false, 501, "5.5.4"),
    RBAD("ORCPT utf-8 empty escape", "TO:<a@b> ORCPT=utf-8;\\x{}", false, 501, "5.5.4"),
    RBAD("ORCPT utf-8 long escape", "TO:<a@b> ORCPT=utf-8;\\x{0000041}", false, 501, "5.5.4"),
    RBAD("ORCPT utf-8 open escape", "TO:<a@b> ORCPT=utf-8;\\x{41", false, 501, "5.5.4"),
    RBAD("ORCPT utf-8 bad UTF-8", "TO:<a@b> ORCPT=utf-8;\xc0\xaf", true, 501, "5.5.4"),
};

static void test_rcpt_table(void **state)
{
    (void) state;
    for (size_t k = 0; k < sizeof(rcpt_cases) / sizeof(rcpt_cases[0]); k++) {
        const struct rcpt_case *c = &rcpt_cases[k];
        struct lmtp_reply rep = { 0 };
        struct env_rcpt r = { 0 };

        print_message("RCPT case %s\n", c->name);
        assert_int_equal(lmtp_parse_rcpt(c->arg, c->len, c->smtputf8, &r, &rep), c->rc);
        if (c->rc == OK) {
            assert_string_equal(r.addr, c->addr);
            assert_int_equal(r.notify, c->notify);
            if (c->otype == NULL) {
                assert_null(r.orcpt_type);
                assert_null(r.orcpt_addr);
            } else {
                assert_string_equal(r.orcpt_type, c->otype);
                assert_string_equal(r.orcpt_addr, c->oaddr);
            }
            env_rcpt_free(&r);
        } else {
            assert_int_equal(rep.code, c->code);
            assert_string_equal(rep.enh, c->enh);
            assert_true(rep.text[0] != '\0');
            assert_null(r.addr);
            assert_int_equal(r.notify, 0);
            assert_null(r.orcpt_type);
            assert_null(r.orcpt_addr);
        }
    }
}

/* ORCPT length: 500 decoded octets are fine, 501 are not. */
static void test_rcpt_orcpt_length(void **state)
{
    char arg[700];
    struct lmtp_reply rep;
    struct env_rcpt r = { 0 };
    size_t pre = strlen("TO:<a@b> ORCPT=rfc822;");

    (void) state;
    memcpy(arg, "TO:<a@b> ORCPT=rfc822;", pre);
    memset(arg + pre, 'x', 501);
    assert_int_equal(lmtp_parse_rcpt(arg, pre + 500, false, &r, &rep), OK);
    assert_int_equal(strlen(r.orcpt_addr), 500);
    env_rcpt_free(&r);
    assert_int_equal(lmtp_parse_rcpt(arg, pre + 501, false, &r, &rep), BAD);
    assert_string_equal(rep.enh, "5.5.4");
    assert_null(r.orcpt_addr);
    assert_null(r.addr);
}

/* ---- xtext ---- */

static const struct {
    const char *name;
    const char *in;
    size_t len;
    int rc;
    const char *out;
    size_t outlen;
} xtext_cases[] = {
    { "empty", S(""), OK, S("") },
    { "plain", S("abc"), OK, S("abc") },
    { "plus", S("a+2Bb"), OK, S("a+b") },
    { "equals", S("+3D"), OK, S("=") },
    { "needless escape", S("+41"), OK, S("A") },
    { "8-bit decoded", S("+C3+A9"), OK, S("\xc3\xa9") },
    { "space decoded", S("a+20b"), OK, S("a b") },
    { "lowercase hex", S("a+2b"), BAD, S("") },
    { "short escape", S("a+2"), BAD, S("") },
    { "lone plus", S("+"), BAD, S("") },
    { "bad hex", S("+G0"), BAD, S("") },
    { "raw =", S("a=b"), BAD, S("") },
    { "raw space", S("a b"), BAD, S("") },
    { "raw DEL", S("\x7f"), BAD, S("") },
    { "raw 8-bit", S("\xc3\xa9"), BAD, S("") },
    { "raw NUL", S("a\0b"), BAD, S("") },
    { "decoded NUL", S("+00"), BAD, S("") },
    { "decoded CR", S("+0D"), BAD, S("") },
    { "decoded LF", S("+0A"), BAD, S("") },
};

static void test_xtext_decode_table(void **state)
{
    (void) state;
    for (size_t k = 0; k < sizeof(xtext_cases) / sizeof(xtext_cases[0]); k++) {
        char *out = NULL;
        size_t outlen = 999;

        print_message("xtext case %s\n", xtext_cases[k].name);
        assert_int_equal(lmtp_xtext_decode(xtext_cases[k].in, xtext_cases[k].len, &out, &outlen),
                         xtext_cases[k].rc);
        if (xtext_cases[k].rc == OK) {
            assert_int_equal(outlen, xtext_cases[k].outlen);
            assert_memory_equal(out, xtext_cases[k].out, outlen);
            assert_int_equal(out[outlen], '\0');
            free(out);
        } else {
            assert_null(out);
            assert_int_equal(outlen, 999);
        }
    }
}

/* Encode, then decode: the same bytes (every byte but NUL, CR, LF). */
static void test_xtext_round_trip(void **state)
{
    static const struct {
        const char *in;
        size_t len;
        const char *enc;
    } cases[] = {
        { S("a+b=c d"), "a+2Bb+3Dc+20d" },
        { S(""), "" },
        { S("\xff\x01"), "+FF+01" },
        { S("plain!~"), "plain!~" },
    };
    char all[253];
    size_t n = 0;

    (void) state;
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char *enc = lmtp_xtext_encode(cases[k].in, cases[k].len), *dec;
        size_t declen;

        assert_string_equal(enc, cases[k].enc);
        assert_int_equal(lmtp_xtext_decode(enc, strlen(enc), &dec, &declen), OK);
        assert_int_equal(declen, cases[k].len);
        assert_memory_equal(dec, cases[k].in, declen);
        free(enc);
        free(dec);
    }
    for (int c = 1; c < 256; c++)
        if (c != '\r' && c != '\n')
            all[n++] = (char) c;
    {
        char *enc = lmtp_xtext_encode(all, n), *dec;
        size_t declen;

        assert_int_equal(lmtp_xtext_decode(enc, strlen(enc), &dec, &declen), OK);
        assert_int_equal(declen, n);
        assert_memory_equal(dec, all, n);
        free(enc);
        free(dec);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_command_table),
        cmocka_unit_test(test_path_table),
        cmocka_unit_test(test_path_lengths),
        cmocka_unit_test(test_mail_table),
        cmocka_unit_test(test_mail_policy_edges),
        cmocka_unit_test(test_rcpt_table),
        cmocka_unit_test(test_rcpt_orcpt_length),
        cmocka_unit_test(test_xtext_decode_table),
        cmocka_unit_test(test_xtext_round_trip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
