/* test_smtp_reply.c - gateway/smtp/reply.c: the SMTP reply parser, fed
 * whole, byte by byte and split at every point, including the
 * hostile-server cases of research/reliability.md B3 #56-#58.
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

#include "gateway/smtp/reply.h"
#include "gateway/util/err.h"

/* A string literal and its length, NUL bytes included. */
#define S(x) x, sizeof(x) - 1
#define MORE SMTP_REPLY_MORE
#define DONE SMTP_REPLY_DONE
#define BAD SY_ESYNTAX
#define BIG SY_ETOOBIG

/* What one run of the parser over an input produced. */
struct outcome {
    int rc;                     /* DONE, MORE or an error */
    size_t used;                /* bytes consumed until DONE or the error */
    struct smtp_reply rep;      /* the reply (rc DONE) */
    struct sy_err err;
};

/* run_split - feed in[0..n) as chunks of at most step bytes, except that
 * the first chunk is split at 'first' (0: no special first chunk), the
 * way a socket might deliver it; stop at the first DONE or error. */
static void run_split(const char *in, size_t n, size_t first, size_t step, struct outcome *o)
{
    struct smtp_reply_parser *p = malloc(sizeof(*p));
    size_t pos = 0;

    assert_non_null(p);
    smtp_reply_parser_init(p);
    smtp_reply_init(&o->rep);
    sy_err_clear(&o->err);
    o->rc = MORE;
    o->used = 0;
    while (pos < n) {
        size_t want = first > 0 && pos < first ? first - pos : step, used = 0;

        if (want > n - pos)
            want = n - pos;
        o->rc = smtp_reply_feed(p, in + pos, want, &used, &o->err);
        assert_true(used <= want);
        pos += used;
        if (o->rc != MORE)
            break;
        assert_int_equal(used, want);
    }
    o->used = pos;
    if (o->rc == DONE) {
        assert_true(smtp_reply_parser_idle(p));
        assert_non_null(smtp_reply_parser_reply(p));
        assert_int_equal(smtp_reply_parser_take(p, &o->rep), SY_OK);
        assert_null(smtp_reply_parser_reply(p));
    }
    smtp_reply_parser_free(p);
    free(p);
}

/* same_outcome - two runs over the same input must agree exactly */
static void same_outcome(const struct outcome *a, const struct outcome *b)
{
    assert_int_equal(a->rc, b->rc);
    assert_int_equal(a->used, b->used);
    if (a->rc < 0) {
        assert_int_equal(a->err.code, b->err.code);
        assert_string_equal(a->err.enh, b->err.enh);
        return;
    }
    assert_int_equal(smtp_reply_code(&a->rep), smtp_reply_code(&b->rep));
    assert_string_equal(smtp_reply_enh(&a->rep), smtp_reply_enh(&b->rep));
    assert_string_equal(smtp_reply_full(&a->rep), smtp_reply_full(&b->rep));
    assert_int_equal(smtp_reply_nlines(&a->rep), smtp_reply_nlines(&b->rep));
    for (size_t i = 0; i < smtp_reply_nlines(&a->rep); i++) {
        size_t la, lb;
        const char *ta = smtp_reply_line(&a->rep, i, &la), *tb = smtp_reply_line(&b->rep, i, &lb);

        assert_int_equal(la, lb);
        assert_memory_equal(ta, tb, la);
    }
}

/* ---- the table ---- */

struct reply_case {
    const char *name;
    const char *in;
    size_t len;
    int rc;
    size_t used;                /* DONE: bytes of the first reply */
    int code;
    const char *enh;
    const char *full;
    const char *lines[3];       /* the line texts, NULL-terminated */
};

static const struct reply_case reply_cases[] = {
    { "one line", S("250 ok\r\n"), DONE, 8, 250, "", "250 ok", { "ok", NULL } },
    { "code only", S("250\r\n"), DONE, 5, 250, "", "250", { "", NULL } },
    { "code and SP", S("250 \r\n"), DONE, 6, 250, "", "250 ", { "", NULL } },
    { "multi-line", S("250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"), DONE, 47, 250, "",
      "250-mx.example 250-PIPELINING 250 SIZE 1000", { "mx.example", "PIPELINING", "SIZE 1000" } },
    { "empty continuation", S("250-\r\n250 x\r\n"), DONE, 13, 250, "", "250- 250 x", { "", "x", NULL } },
    { "enhanced", S("550 5.1.1 User unknown\r\n"), DONE, 24, 550, "5.1.1", "550 5.1.1 User unknown",
      { "5.1.1 User unknown", NULL } },
    { "enhanced multi-line", S("550-5.1.1 The account\r\n550 5.1.1 does not exist\r\n"), DONE, 49,
      550, "5.1.1", "550-5.1.1 The account 550 5.1.1 does not exist",
      { "5.1.1 The account", "5.1.1 does not exist", NULL } },
    { "enhanced only on line 2", S("550-no code\r\n550 5.1.1 x\r\n"), DONE, 26, 550, "",
      "550-no code 550 5.1.1 x", { "no code", "5.1.1 x", NULL } },
    { "enhanced greylist", S("451 4.7.1 greylisted\r\n"), DONE, 22, 451, "4.7.1", "451 4.7.1 greylisted",
      { "4.7.1 greylisted", NULL } },
    { "enhanced at end of line", S("550 5.999.999\r\n"), DONE, 15, 550, "5.999.999", "550 5.999.999",
      { "5.999.999", NULL } },
    { "enhanced 2.0.0", S("250 2.0.0 Ok: queued as 4F3A\r\n"), DONE, 30, 250, "2.0.0",
      "250 2.0.0 Ok: queued as 4F3A", { "2.0.0 Ok: queued as 4F3A", NULL } },
    { "enh 2.0 (B3 #58)", S("250 2.0 ok\r\n"), DONE, 12, 250, "", "250 2.0 ok", { "2.0 ok", NULL } },
    { "enh 9.9.9 (B3 #58)", S("550 9.9.9 x\r\n"), DONE, 13, 550, "", "550 9.9.9 x", { "9.9.9 x", NULL } },
    { "enh 5.1. (B3 #58)", S("550 5.1. x\r\n"), DONE, 12, 550, "", "550 5.1. x", { "5.1. x", NULL } },
    { "enh 5.1", S("550 5.1\r\n"), DONE, 9, 550, "", "550 5.1", { "5.1", NULL } },
    { "enh class mismatch", S("250 5.1.1 ok\r\n"), DONE, 14, 250, "", "250 5.1.1 ok", { "5.1.1 ok", NULL } },
    { "enh 4-digit subject", S("550 5.1000.1 x\r\n"), DONE, 16, 550, "", "550 5.1000.1 x",
      { "5.1000.1 x", NULL } },
    { "enh 4-digit detail", S("550 5.1.1000 x\r\n"), DONE, 16, 550, "", "550 5.1.1000 x",
      { "5.1.1000 x", NULL } },
    { "enh glued to text", S("550 5.1.1x\r\n"), DONE, 12, 550, "", "550 5.1.1x", { "5.1.1x", NULL } },
    { "enh class 3", S("354 3.0.0 go\r\n"), DONE, 14, 354, "", "354 3.0.0 go", { "3.0.0 go", NULL } },
    { "enh after TAB", S("550 \t5.1.1 x\r\n"), DONE, 14, 550, "", "550 ?5.1.1 x", { "\t5.1.1 x", NULL } },
    { "354", S("354 End data with <CR><LF>.<CR><LF>\r\n"), DONE, 37, 354, "",
      "354 End data with <CR><LF>.<CR><LF>", { "End data with <CR><LF>.<CR><LF>", NULL } },
    { "ANSI escape sanitised (B3 #56)", S("220 mx \x1b[31mred\r\n"), DONE, 17, 220, "", "220 mx ?[31mred",
      { "mx \x1b[31mred", NULL } },
    { "8-bit sanitised", S("250 caf\xc3\xa9\r\n"), DONE, 11, 250, "", "250 caf??", { "caf\xc3\xa9", NULL } },
    { "DEL sanitised", S("250 a\x7f" "b\r\n"), DONE, 9, 250, "", "250 a?b", { "a\x7f" "b", NULL } },
    { "pipelined: first only", S("250 a\r\n354 b\r\n"), DONE, 7, 250, "", "250 a", { "a", NULL } },
    { "max code", S("559 x\r\n"), DONE, 7, 559, "", "559 x", { "x", NULL } },
    { "min code", S("200 x\r\n"), DONE, 7, 200, "", "200 x", { "x", NULL } },
    { "incomplete line", S("250 ok"), MORE, 6, 0, NULL, NULL, { NULL } },
    { "incomplete CR", S("250 ok\r"), MORE, 7, 0, NULL, NULL, { NULL } },
    { "continuation, no final (B3 #56)", S("250-a\r\n250-b\r\n"), MORE, 14, 0, NULL, NULL, { NULL } },
    { "empty input", S(""), MORE, 0, 0, NULL, NULL, { NULL } },
    { "code 25 (B3 #57)", S("25 ok\r\n"), BAD, 7, 0, NULL, NULL, { NULL } },
    { "code 2500 (B3 #57)", S("2500 ok\r\n"), BAD, 9, 0, NULL, NULL, { NULL } },
    { "code abc (B3 #57)", S("abc\r\n"), BAD, 5, 0, NULL, NULL, { NULL } },
    { "250ok (B3 #57)", S("250ok\r\n"), BAD, 7, 0, NULL, NULL, { NULL } },
    { "empty line (B3 #57)", S("\r\n"), BAD, 2, 0, NULL, NULL, { NULL } },
    { "code 099", S("099 x\r\n"), BAD, 7, 0, NULL, NULL, { NULL } },
    { "code 600", S("600 x\r\n"), BAD, 7, 0, NULL, NULL, { NULL } },
    { "code 160", S("160 x\r\n"), BAD, 7, 0, NULL, NULL, { NULL } },
    { "code 260", S("260 x\r\n"), BAD, 7, 0, NULL, NULL, { NULL } },
    { "code 25x", S("25x x\r\n"), BAD, 7, 0, NULL, NULL, { NULL } },
    { "leading SP", S(" 250 x\r\n"), BAD, 8, 0, NULL, NULL, { NULL } },
    { "code then TAB", S("250\tx\r\n"), BAD, 7, 0, NULL, NULL, { NULL } },
    { "code change 250- 550 (B3 #57)", S("250-a\r\n550 b\r\n"), BAD, 14, 0, NULL, NULL, { NULL } },
    { "code change 550- 551", S("550-a\r\n551 b\r\n"), BAD, 14, 0, NULL, NULL, { NULL } },
    { "malformed continuation line", S("250-a\r\n25 b\r\n"), BAD, 13, 0, NULL, NULL, { NULL } },
    { "NUL in reply (B3 #56)", S("250 a\0b\r\n"), BAD, 6, 0, NULL, NULL, { NULL } },
    { "NUL first", S("\0" "250 x\r\n"), BAD, 1, 0, NULL, NULL, { NULL } },
    { "bare LF", S("250 x\n"), BAD, 6, 0, NULL, NULL, { NULL } },
    { "bare LF mid-line", S("250 a\nb\r\n"), BAD, 6, 0, NULL, NULL, { NULL } },
    { "bare CR", S("250 a\rb\r\n"), BAD, 7, 0, NULL, NULL, { NULL } },
    { "CR CR LF", S("250 a\r\r\n"), BAD, 7, 0, NULL, NULL, { NULL } },
    { "LF CR", S("250 a\n\r"), BAD, 6, 0, NULL, NULL, { NULL } },
};

static void test_reply_table(void **state)
{
    (void) state;
    for (size_t k = 0; k < sizeof(reply_cases) / sizeof(reply_cases[0]); k++) {
        const struct reply_case *c = &reply_cases[k];
        struct outcome whole, o;

        print_message("reply case %s\n", c->name);
        run_split(c->in, c->len, 0, c->len > 0 ? c->len : 1, &whole);
        assert_int_equal(whole.rc, c->rc);
        assert_int_equal(whole.used, c->used);
        if (c->rc < 0) {
            assert_int_equal(whole.err.code, c->rc);
            assert_string_equal(whole.err.enh, "4.5.0");
            assert_true(whole.err.text[0] != '\0');
        } else if (c->rc == DONE) {
            size_t i;

            assert_int_equal(smtp_reply_code(&whole.rep), c->code);
            assert_string_equal(smtp_reply_enh(&whole.rep), c->enh);
            assert_string_equal(smtp_reply_full(&whole.rep), c->full);
            for (i = 0; i < 3 && c->lines[i] != NULL; i++) {
                size_t len;
                const char *t = smtp_reply_line(&whole.rep, i, &len);

                assert_int_equal(len, strlen(c->lines[i]));
                assert_memory_equal(t, c->lines[i], len);
                assert_int_equal(t[len], '\0');
            }
            assert_int_equal(smtp_reply_nlines(&whole.rep), i);
        }
        /* Byte by byte, and split in two at every point. */
        run_split(c->in, c->len, 0, 1, &o);
        same_outcome(&whole, &o);
        smtp_reply_free(&o.rep);
        for (size_t cut = 1; cut < c->len; cut++) {
            run_split(c->in, c->len, cut, c->len, &o);
            same_outcome(&whole, &o);
            smtp_reply_free(&o.rep);
        }
        smtp_reply_free(&whole.rep);
    }
}

/* ---- limits (B3 #56) ---- */

/* make_lines - count lines "250-x...x\r\n" of len bytes each (CRLF
 * included), the last one "250 " unless open; returns a new buffer owned
 * by the caller */
static char *make_lines(size_t count, size_t len, bool open, size_t *np)
{
    char *s = malloc(count * len);

    assert_non_null(s);
    for (size_t i = 0; i < count; i++) {
        char *l = s + i * len;

        memset(l, 'x', len);
        memcpy(l, "250-", 4);
        if (i == count - 1 && !open)
            l[3] = ' ';
        l[len - 2] = '\r';
        l[len - 1] = '\n';
    }
    *np = count * len;
    return s;
}

struct limit_case {
    const char *name;
    size_t count, len;
    bool open;
    int rc;
    size_t used;                /* expected bytes consumed */
};

static const struct limit_case limit_cases[] = {
    { "line of 2048 with CRLF", 1, 2048, false, DONE, 2048 },
    { "line of 2049 with CRLF", 1, 2049, false, BIG, 2047 },
    { "1 MB line (B3 #56)", 1, 1048576, false, BIG, 2047 },
    { "50 lines", 50, 10, false, DONE, 500 },
    { "50 long lines", 50, 2048, false, DONE, 50 * 2048 },
    { "51 lines", 51, 10, false, BIG, 500 },
    { "5000-line reply (B3 #56)", 5000, 10, false, BIG, 500 },
    { "continuation forever", 5000, 10, true, BIG, 500 },
    { "49 open lines", 49, 10, true, MORE, 490 },
};

static void test_reply_limits(void **state)
{
    (void) state;
    for (size_t k = 0; k < sizeof(limit_cases) / sizeof(limit_cases[0]); k++) {
        const struct limit_case *c = &limit_cases[k];
        struct outcome whole, o;
        size_t n;
        char *in = make_lines(c->count, c->len, c->open, &n);

        print_message("limit case %s\n", c->name);
        run_split(in, n, 0, n, &whole);
        assert_int_equal(whole.rc, c->rc);
        assert_int_equal(whole.used, c->used);
        if (c->rc < 0)
            assert_string_equal(whole.err.enh, "4.5.0");
        if (c->rc == DONE) {
            size_t len;

            assert_int_equal(smtp_reply_nlines(&whole.rep), c->count);
            (void) smtp_reply_line(&whole.rep, c->count - 1, &len);
            assert_int_equal(len, c->len - 6);
            /* The printable form is bounded and says so when cut. */
            assert_true(strlen(smtp_reply_full(&whole.rep)) <= SMTP_REPLY_FULL_MAX - 1);
        }
        for (size_t step = 1; step <= 4099; step += 1366) {
            run_split(in, n, 0, step, &o);
            same_outcome(&whole, &o);
            smtp_reply_free(&o.rep);
        }
        smtp_reply_free(&whole.rep);
        free(in);
    }
}

/* The printable form is cut at its bound with "..." and never more. */
static void test_reply_full_cut(void **state)
{
    struct outcome o;
    size_t n;
    char *in = make_lines(2, 2000, false, &n);
    const char *full;

    (void) state;
    run_split(in, n, 0, n, &o);
    assert_int_equal(o.rc, DONE);
    full = smtp_reply_full(&o.rep);
    assert_int_equal(strlen(full), SMTP_REPLY_FULL_MAX - 1);
    assert_string_equal(full + SMTP_REPLY_FULL_MAX - 4, "...");
    assert_memory_equal(full, "250-xxx", 7);
    /* "250-" + 1994 x, then " 250 " where the cut comes */
    assert_memory_equal(full + 1998, " 250 ", 5);
    smtp_reply_free(&o.rep);
    free(in);
}

/* ---- pipelined replies, and nothing stale carried over (B3 #58) ---- */

static void test_reply_pipelined(void **state)
{
    static const char in[] = "550 5.1.1 no\r\n250 ok\r\n250-a\r\n250 2.1.5 b\r\n354 go\r\n";
    static const char *const want_full[] = { "550 5.1.1 no", "250 ok", "250-a 250 2.1.5 b", "354 go" };
    static const char *const want_status[] = { "5.1.1", "2.0.0", "2.0.0", "2.0.0" };
    size_t n = sizeof(in) - 1;

    (void) state;
    for (size_t step = 1; step <= n; step++) {
        struct smtp_reply_parser *p = malloc(sizeof(*p));
        struct smtp_reply rep;
        size_t pos = 0, got = 0;

        assert_non_null(p);
        print_message("pipelined, chunks of %zu\n", step);
        smtp_reply_parser_init(p);
        smtp_reply_init(&rep);
        while (pos < n) {
            size_t want = step < n - pos ? step : n - pos, off = 0;

            while (off < want) {
                size_t used;
                int rc = smtp_reply_feed(p, in + pos + off, want - off, &used, NULL);

                off += used;
                if (rc == MORE)
                    break;
                assert_int_equal(rc, DONE);
                assert_true(got < 4);
                assert_int_equal(smtp_reply_parser_take(p, &rep), SY_OK);
                assert_string_equal(smtp_reply_full(&rep), want_full[got]);
                assert_string_equal(smtp_reply_status(&rep), want_status[got]);
                got++;
            }
            pos += want;
        }
        assert_int_equal(got, 4);
        assert_true(smtp_reply_parser_idle(p));
        assert_int_equal(smtp_reply_parser_eof(p, NULL), SY_OK);
        smtp_reply_free(&rep);
        smtp_reply_parser_free(p);
        free(p);
    }
}

/* ---- errors are sticky; reset recovers; take and eof ---- */

static void test_reply_sticky(void **state)
{
    struct smtp_reply_parser *p = malloc(sizeof(*p));
    struct sy_err err;
    size_t used = 99;

    (void) state;
    assert_non_null(p);
    smtp_reply_parser_init(p);
    assert_int_equal(smtp_reply_feed(p, S("250-a\r\n550 b\r\n"), &used, &err), BAD);
    assert_int_equal(err.code, BAD);
    assert_string_equal(err.enh, "4.5.0");
    assert_non_null(strstr(err.text, "550 b"));
    assert_false(smtp_reply_parser_idle(p));
    assert_null(smtp_reply_parser_reply(p));
    sy_err_clear(&err);
    assert_int_equal(smtp_reply_feed(p, S("250 ok\r\n"), &used, &err), BAD);
    assert_int_equal(used, 0);
    assert_string_equal(err.enh, "4.5.0");
    assert_int_equal(smtp_reply_feed_line(p, S("250 ok\r\n"), &err), BAD);
    assert_int_equal(smtp_reply_parser_eof(p, &err), BAD);
    smtp_reply_parser_reset(p);
    assert_true(smtp_reply_parser_idle(p));
    assert_int_equal(smtp_reply_feed(p, S("250 ok\r\n"), &used, &err), DONE);
    assert_int_equal(smtp_reply_code(smtp_reply_parser_reply(p)), 250);
    assert_int_equal(smtp_reply_nlines(smtp_reply_parser_reply(p)), 1);

    /* A too-long line is sticky as SY_ETOOBIG, and the error text is
     * printable and bounded. */
    smtp_reply_parser_reset(p);
    {
        char big[3000];

        memset(big, '\x1b', sizeof(big));
        memcpy(big, "250 ", 4);
        assert_int_equal(smtp_reply_feed(p, big, sizeof(big), &used, &err), BIG);
        assert_int_equal(used, 2047);
        assert_int_equal(err.code, BIG);
        for (const char *t = err.text; *t != '\0'; t++)
            assert_true(*t >= 0x20 && *t < 0x7f);
        assert_int_equal(smtp_reply_feed(p, S("\r\n"), &used, &err), BIG);
    }
    smtp_reply_parser_free(p);
    free(p);
}

static void test_reply_take(void **state)
{
    struct smtp_reply_parser *p = malloc(sizeof(*p));
    struct smtp_reply a, b;
    size_t used;

    (void) state;
    assert_non_null(p);
    smtp_reply_parser_init(p);
    smtp_reply_init(&a);
    smtp_reply_init(&b);
    /* Nothing to take: dst unchanged. */
    assert_int_equal(smtp_reply_parser_take(p, &a), SY_ENOTFOUND);
    assert_int_equal(smtp_reply_code(&a), 0);
    assert_int_equal(smtp_reply_nlines(&a), 0);
    assert_string_equal(smtp_reply_status(&a), "4.0.0");
    assert_string_equal(smtp_reply_line(&a, 0, &used), "");
    assert_int_equal(used, 0);
    assert_int_equal(smtp_reply_feed(p, S("451-4.3.0 a\r\n451 b\r\n"), &used, NULL), DONE);
    assert_int_equal(smtp_reply_parser_take(p, &a), SY_OK);
    assert_int_equal(smtp_reply_parser_take(p, &b), SY_ENOTFOUND);
    assert_int_equal(smtp_reply_code(&b), 0);
    /* Taking into a reply that holds one frees the old one. */
    assert_int_equal(smtp_reply_feed(p, S("221 bye\r\n"), &used, NULL), DONE);
    assert_int_equal(smtp_reply_parser_take(p, &a), SY_OK);
    assert_string_equal(smtp_reply_full(&a), "221 bye");
    /* A reply not taken is dropped by the next feed. */
    assert_int_equal(smtp_reply_feed(p, S("250 x\r\n"), &used, NULL), DONE);
    assert_int_equal(smtp_reply_feed(p, S("2"), &used, NULL), MORE);
    assert_null(smtp_reply_parser_reply(p));
    assert_false(smtp_reply_parser_idle(p));
    assert_int_equal(smtp_reply_parser_take(p, &b), SY_ENOTFOUND);
    assert_int_equal(smtp_reply_feed(p, S("50 y\r\n"), &used, NULL), DONE);
    assert_int_equal(smtp_reply_nlines(smtp_reply_parser_reply(p)), 1);
    assert_string_equal(smtp_reply_full(smtp_reply_parser_reply(p)), "250 y");
    /* The same without a take between two complete replies. */
    assert_int_equal(smtp_reply_feed(p, S("550 5.1.1 z\r\n"), &used, NULL), DONE);
    assert_int_equal(smtp_reply_nlines(smtp_reply_parser_reply(p)), 1);
    assert_string_equal(smtp_reply_enh(smtp_reply_parser_reply(p)), "5.1.1");
    assert_int_equal(smtp_reply_feed(p, S("550 z\r\n"), &used, NULL), DONE);
    assert_string_equal(smtp_reply_enh(smtp_reply_parser_reply(p)), "");
    assert_string_equal(smtp_reply_full(smtp_reply_parser_reply(p)), "550 z");
    smtp_reply_free(&a);
    smtp_reply_free(&b);
    smtp_reply_free(NULL);
    smtp_reply_parser_free(p);
    smtp_reply_parser_free(NULL);
    free(p);
}

struct eof_case {
    const char *name;
    const char *in;
    size_t len;
    int rc;
};

static const struct eof_case eof_cases[] = {
    { "nothing", S(""), SY_OK },
    { "after a reply", S("250 ok\r\n"), SY_OK },
    { "line without CRLF", S("250 ok"), BAD },
    { "line without LF", S("250 ok\r"), BAD },
    { "continuation without final line", S("250-a\r\n"), BAD },
    { "after an error", S("25 x\r\n"), BAD },
};

static void test_reply_eof(void **state)
{
    (void) state;
    for (size_t k = 0; k < sizeof(eof_cases) / sizeof(eof_cases[0]); k++) {
        const struct eof_case *c = &eof_cases[k];
        struct smtp_reply_parser *p = malloc(sizeof(*p));
        struct sy_err err;
        size_t used;

        assert_non_null(p);
        print_message("eof case %s\n", c->name);
        smtp_reply_parser_init(p);
        sy_err_clear(&err);
        (void) smtp_reply_feed(p, c->in, c->len, &used, NULL);
        assert_int_equal(smtp_reply_parser_eof(p, &err), c->rc);
        if (c->rc != SY_OK) {
            assert_string_equal(err.enh, "4.5.0");
            /* sticky */
            assert_int_equal(smtp_reply_parser_eof(p, NULL), c->rc);
        } else {
            assert_int_equal(err.code, SY_OK);
        }
        smtp_reply_parser_free(p);
        free(p);
    }
}

/* ---- one line at a time ---- */

struct line_case {
    const char *name;
    const char *lines[3];       /* fed in order; NULL ends */
    int rc;                     /* of the last line */
    int code;
};

static const struct line_case line_cases[] = {
    { "one line", { "250 ok\r\n", NULL }, DONE, 250 },
    { "two lines", { "250-a\r\n", "250 b\r\n", NULL }, DONE, 250 },
    { "continuation", { "250-a\r\n", NULL }, MORE, 0 },
    { "no CRLF", { "250 ok", NULL }, BAD, 0 },
    { "LF only", { "250 ok\n", NULL }, BAD, 0 },
    { "CR only", { "250 ok\r", NULL }, BAD, 0 },
    { "two lines in one", { "250-a\r\n250 b\r\n", NULL }, BAD, 0 },
    { "bare CR inside", { "250 a\rb\r\n", NULL }, BAD, 0 },
    { "empty", { "", NULL }, BAD, 0 },
    { "code change", { "250-a\r\n", "251 b\r\n", NULL }, BAD, 0 },
};

static void test_reply_feed_line(void **state)
{
    (void) state;
    for (size_t k = 0; k < sizeof(line_cases) / sizeof(line_cases[0]); k++) {
        const struct line_case *c = &line_cases[k];
        struct smtp_reply_parser *p = malloc(sizeof(*p));
        struct sy_err err;
        int rc = MORE;

        assert_non_null(p);
        print_message("line case %s\n", c->name);
        smtp_reply_parser_init(p);
        for (size_t i = 0; i < 3 && c->lines[i] != NULL; i++)
            rc = smtp_reply_feed_line(p, c->lines[i], strlen(c->lines[i]), &err);
        assert_int_equal(rc, c->rc);
        if (rc == DONE)
            assert_int_equal(smtp_reply_code(smtp_reply_parser_reply(p)), c->code);
        if (rc < 0)
            assert_string_equal(err.enh, "4.5.0");
        smtp_reply_parser_free(p);
        free(p);
    }
}

/* A line fed after a partial byte feed is refused. */
static void test_reply_feed_line_after_partial(void **state)
{
    struct smtp_reply_parser *p = malloc(sizeof(*p));
    size_t used;

    (void) state;
    assert_non_null(p);
    smtp_reply_parser_init(p);
    assert_int_equal(smtp_reply_feed(p, S("250 o"), &used, NULL), MORE);
    assert_int_equal(smtp_reply_feed_line(p, S("k\r\n"), NULL), BAD);
    smtp_reply_parser_free(p);
    free(p);
}

/* ---- classification ---- */

struct class_case {
    const char *in;
    size_t len;
    bool pos, inter, trans, perm;
    const char *status;
};

static const struct class_case class_cases[] = {
    { S("250 ok\r\n"), true, false, false, false, "2.0.0" },
    { S("221 2.0.0 bye\r\n"), true, false, false, false, "2.0.0" },
    { S("354 go\r\n"), false, true, false, false, "2.0.0" },
    { S("334 VXNlcm5hbWU6\r\n"), false, true, false, false, "2.0.0" },
    { S("421 closing\r\n"), false, false, true, false, "4.0.0" },
    { S("452 4.5.3 too many\r\n"), false, false, true, false, "4.5.3" },
    { S("550 no\r\n"), false, false, false, true, "5.0.0" },
    { S("554 5.7.1 rejected\r\n"), false, false, false, true, "5.7.1" },
};

static void test_reply_class(void **state)
{
    (void) state;
    for (size_t k = 0; k < sizeof(class_cases) / sizeof(class_cases[0]); k++) {
        const struct class_case *c = &class_cases[k];
        struct outcome o;

        print_message("class case %.*s\n", (int) c->len - 2, c->in);
        run_split(c->in, c->len, 0, c->len, &o);
        assert_int_equal(o.rc, DONE);
        assert_int_equal(smtp_reply_is_positive(&o.rep), c->pos);
        assert_int_equal(smtp_reply_is_intermediate(&o.rep), c->inter);
        assert_int_equal(smtp_reply_is_transient(&o.rep), c->trans);
        assert_int_equal(smtp_reply_is_permanent(&o.rep), c->perm);
        assert_string_equal(smtp_reply_status(&o.rep), c->status);
        smtp_reply_free(&o.rep);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_table),
        cmocka_unit_test(test_reply_limits),
        cmocka_unit_test(test_reply_full_cut),
        cmocka_unit_test(test_reply_pipelined),
        cmocka_unit_test(test_reply_sticky),
        cmocka_unit_test(test_reply_take),
        cmocka_unit_test(test_reply_eof),
        cmocka_unit_test(test_reply_feed_line),
        cmocka_unit_test(test_reply_feed_line_after_partial),
        cmocka_unit_test(test_reply_class),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
