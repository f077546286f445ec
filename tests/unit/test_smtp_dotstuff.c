/* test_smtp_dotstuff.c - gateway/smtp/dotstuff.c: the DATA encoder.
 * Every case is fed whole, byte by byte, split in two at every point, in
 * three at every pair of points, and through an output buffer that holds
 * only a few bytes; the wire bytes must be identical every time
 * (research/reliability.md D11: canonical CRLF, dot-stuffing).
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

#include "gateway/smtp/dotstuff.h"
#include "gateway/util/buf.h"
#include "gateway/util/err.h"

#define S(x) x, sizeof(x) - 1

/* The wire bytes and the encoder's report after finish. */
struct wire {
    struct buf all;
    struct smtp_dotstuff d;
};

/* encode - feed in[0..n) in the chunks given by cuts (ascending split
 * points, ncuts of them) through an output buffer of max bytes, draining
 * it into w->all; then finish */
static void encode(const char *in, size_t n, const size_t *cuts, size_t ncuts, size_t max,
                   struct wire *w)
{
    struct buf out;
    size_t pos = 0;

    buf_init(&w->all, (size_t) 16 * n + 64);
    buf_init(&out, max);
    smtp_dotstuff_init(&w->d);
    for (size_t c = 0; c <= ncuts; c++) {
        size_t end = c < ncuts ? cuts[c] : n;

        while (pos < end) {
            size_t used = smtp_dotstuff_feed(&w->d, in + pos, end - pos, &out);

            assert_true(used <= end - pos);
            /* Progress is guaranteed once out is drained. */
            assert_true(used > 0 || buf_len(&out) > 0);
            pos += used;
            assert_int_equal(buf_append(&w->all, out.data, buf_len(&out)), SY_OK);
            buf_reset(&out);
        }
    }
    /* finish needs FINISH_MAX bytes of room: a smaller buffer than that
     * is swapped for one that size, and a non-empty one drained first. */
    if (max < SMTP_DOTSTUFF_FINISH_MAX) {
        buf_free(&out);
        buf_init(&out, SMTP_DOTSTUFF_FINISH_MAX);
    }
    while (smtp_dotstuff_finish(&w->d, &out) != SY_OK) {
        if (buf_len(&out) == 0)
            fail_msg("finish cannot make progress with max %zu", max);
        assert_int_equal(buf_append(&w->all, out.data, buf_len(&out)), SY_OK);
        buf_reset(&out);
    }
    assert_int_equal(buf_append(&w->all, out.data, buf_len(&out)), SY_OK);
    assert_true(smtp_dotstuff_finished(&w->d));
    buf_free(&out);
}

/* same_wire - b must equal a byte for byte, with the same report */
static void same_wire(const struct wire *a, const struct wire *b)
{
    assert_int_equal(buf_len(&a->all), buf_len(&b->all));
    assert_memory_equal(buf_str(&a->all), buf_str(&b->all), buf_len(&a->all));
    assert_int_equal(smtp_dotstuff_eightbit(&a->d), smtp_dotstuff_eightbit(&b->d));
    assert_int_equal(smtp_dotstuff_bare_eol(&a->d), smtp_dotstuff_bare_eol(&b->d));
    assert_int_equal(smtp_dotstuff_out_bytes(&a->d), smtp_dotstuff_out_bytes(&b->d));
    assert_int_equal(smtp_dotstuff_line_max(&a->d), smtp_dotstuff_line_max(&b->d));
}

/* wire_ok - the invariants of any output: CR and LF only as CRLF, no "."
 * line before the final one, ends with the terminator */
static void wire_ok(const struct wire *w)
{
    const char *s = buf_str(&w->all);
    size_t n = buf_len(&w->all), bol = 0;

    assert_true(n >= 3);
    assert_memory_equal(s + n - 3, ".\r\n", 3);
    assert_true(n == 3 || (s[n - 5] == '\r' && s[n - 4] == '\n'));
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r')
            assert_true(i + 1 < n && s[i + 1] == '\n');
        if (s[i] == '\n') {
            assert_true(i > 0 && s[i - 1] == '\r');
            /* a line "." (i - 1 - bol == 1) only as the terminator */
            if (i - 1 - bol == 1 && s[bol] == '.')
                assert_int_equal(i, n - 1);
            bol = i + 1;
        }
    }
    assert_int_equal(smtp_dotstuff_out_bytes(&w->d), n);
}

struct ds_case {
    const char *name;
    const char *in;
    size_t len;
    const char *out;
    size_t outlen;
    bool eightbit, bare;
    uint64_t line_max;
};

static const struct ds_case ds_cases[] = {
    { "empty message", S(""), S(".\r\n"), false, false, 0 },
    { "one line", S("a\r\n"), S("a\r\n.\r\n"), false, false, 1 },
    { "no final CRLF", S("a"), S("a\r\n.\r\n"), false, false, 1 },
    { "only CRLF", S("\r\n"), S("\r\n.\r\n"), false, false, 0 },
    { "headers and body", S("Subject: x\r\n\r\nbody\r\n"), S("Subject: x\r\n\r\nbody\r\n.\r\n"),
      false, false, 10 },
    { "dot line", S(".\r\n"), S("..\r\n.\r\n"), false, false, 2 },
    { "dot line inside", S("a\r\n.\r\nb\r\n"), S("a\r\n..\r\nb\r\n.\r\n"), false, false, 2 },
    { "terminator inside", S("\r\n.\r\n"), S("\r\n..\r\n.\r\n"), false, false, 2 },
    { "dots", S("..x\r\n"), S("...x\r\n.\r\n"), false, false, 4 },
    { "dot mid-line", S("a.b\r\n.c.\r\n"), S("a.b\r\n..c.\r\n.\r\n"), false, false, 4 },
    { "dot at end", S("."), S("..\r\n.\r\n"), false, false, 2 },
    { "dot then CRLF at end", S("a\r\n."), S("a\r\n..\r\n.\r\n"), false, false, 2 },
    { "bare LF", S("a\n"), S("a\r\n.\r\n"), false, true, 1 },
    { "bare LF lines", S("a\nb\n"), S("a\r\nb\r\n.\r\n"), false, true, 1 },
    { "bare CR at end", S("a\r"), S("a\r\n.\r\n"), false, true, 1 },
    { "lone CR", S("\r"), S("\r\n.\r\n"), false, true, 0 },
    { "lone LF", S("\n"), S("\r\n.\r\n"), false, true, 0 },
    { "bare CR mid-line", S("a\rb"), S("a\r\nb\r\n.\r\n"), false, true, 1 },
    { "CR CR x", S("a\r\rb"), S("a\r\n\r\nb\r\n.\r\n"), false, true, 1 },
    { "CR CR LF", S("a\r\r\n"), S("a\r\n\r\n.\r\n"), false, true, 1 },
    { "LF CR", S("\n\r"), S("\r\n\r\n.\r\n"), false, true, 0 },
    { "LF CR LF", S("a\n\r\nb"), S("a\r\n\r\nb\r\n.\r\n"), false, true, 1 },
    { "smuggling LF.LF", S("x\n.\nRCPT TO:<a@b>\n"), S("x\r\n..\r\nRCPT TO:<a@b>\r\n.\r\n"), false,
      true, 13 },
    { "smuggling CR.CR", S("x\r.\r"), S("x\r\n..\r\n.\r\n"), false, true, 2 },
    { "smuggling CRLF.LF", S("a\r\n.\nb"), S("a\r\n..\r\nb\r\n.\r\n"), false, true, 2 },
    { "smuggling LF.CRLF", S("a\n.\r\nb"), S("a\r\n..\r\nb\r\n.\r\n"), false, true, 2 },
    { "bare CR then dot", S("\r.x"), S("\r\n..x\r\n.\r\n"), false, true, 3 },
    { "8-bit", S("caf\xc3\xa9\r\n"), S("caf\xc3\xa9\r\n.\r\n"), true, false, 5 },
    { "8-bit at line start", S("\xff\r\n"), S("\xff\r\n.\r\n"), true, false, 1 },
    { "8-bit after dot", S(".\x80"), S("..\x80\r\n.\r\n"), true, false, 3 },
    { "NUL passes", S("a\0b\r\n"), S("a\0b\r\n.\r\n"), false, false, 3 },
    { "longest line", S("abc\r\nabcdefg\r\nab\r\n"), S("abc\r\nabcdefg\r\nab\r\n.\r\n"), false, false, 7 },
    { "longest line unterminated", S("ab\r\nabcdef"), S("ab\r\nabcdef\r\n.\r\n"), false, false, 6 },
};

static void test_dotstuff_table(void **state)
{
    (void) state;
    for (size_t k = 0; k < sizeof(ds_cases) / sizeof(ds_cases[0]); k++) {
        const struct ds_case *c = &ds_cases[k];
        struct wire whole, w;
        size_t cuts[2];

        print_message("dotstuff case %s\n", c->name);
        encode(c->in, c->len, NULL, 0, 4096, &whole);
        assert_int_equal(buf_len(&whole.all), c->outlen);
        assert_memory_equal(buf_str(&whole.all), c->out, c->outlen);
        assert_int_equal(smtp_dotstuff_eightbit(&whole.d), c->eightbit);
        assert_int_equal(smtp_dotstuff_bare_eol(&whole.d), c->bare);
        assert_int_equal(smtp_dotstuff_line_max(&whole.d), c->line_max);
        wire_ok(&whole);

        /* byte by byte */
        {
            size_t all[64];

            assert_true(c->len <= 64);
            for (size_t i = 0; i + 1 < c->len; i++)
                all[i] = i + 1;
            encode(c->in, c->len, all, c->len > 0 ? c->len - 1 : 0, 4096, &w);
            same_wire(&whole, &w);
            buf_free(&w.all);
        }
        /* in two and in three at every point (empty chunks included) */
        for (size_t a = 0; a <= c->len; a++) {
            cuts[0] = a;
            encode(c->in, c->len, cuts, 1, 4096, &w);
            same_wire(&whole, &w);
            buf_free(&w.all);
            for (size_t b = a; b <= c->len; b++) {
                cuts[1] = b;
                encode(c->in, c->len, cuts, 2, 4096, &w);
                same_wire(&whole, &w);
                buf_free(&w.all);
            }
        }
        /* through a tiny output buffer: EMIT_MAX is enough to progress */
        for (size_t max = SMTP_DOTSTUFF_EMIT_MAX; max <= 8; max++) {
            encode(c->in, c->len, NULL, 0, max, &w);
            same_wire(&whole, &w);
            buf_free(&w.all);
        }
        buf_free(&whole.all);
    }
}

/* A message of many lines, including long ones, fed in chunks of every
 * size from 1 to 300: the same wire bytes. */
static void test_dotstuff_chunks(void **state)
{
    size_t n = 0, cap = 20000;
    char *msg = malloc(cap);
    struct wire whole;

    (void) state;
    assert_non_null(msg);
    for (int i = 0; n + 2100 < cap; i++) {
        size_t len = (size_t) (i * 37) % 1100;

        msg[n++] = (i % 3 == 0) ? '.' : 'x';
        memset(msg + n, (i % 5 == 0) ? '\xe9' : 'y', len);
        n += len;
        memcpy(msg + n, (i % 7 == 0) ? "\n" : (i % 11 == 0) ? "\r" : "\r\n",
               (i % 7 == 0 || i % 11 == 0) ? 1 : 2);
        n += (i % 7 == 0 || i % 11 == 0) ? 1 : 2;
    }
    encode(msg, n, NULL, 0, (size_t) 1 << 20, &whole);
    wire_ok(&whole);
    assert_true(smtp_dotstuff_eightbit(&whole.d));
    assert_true(smtp_dotstuff_bare_eol(&whole.d));
    assert_true(smtp_dotstuff_line_max(&whole.d) >= 1000);
    for (size_t step = 1; step <= 300; step += 7) {
        size_t *cuts = malloc((n / step + 1) * sizeof(*cuts)), nc = 0;
        struct wire w;

        assert_non_null(cuts);
        print_message("chunks of %zu\n", step);
        for (size_t p = step; p < n; p += step)
            cuts[nc++] = p;
        encode(msg, n, cuts, nc, 512, &w);
        same_wire(&whole, &w);
        buf_free(&w.all);
        free(cuts);
    }
    buf_free(&whole.all);
    free(msg);
}

/* Out full: feed stops before the byte and leaves the state alone;
 * finish refuses without room, changing nothing. */
static void test_dotstuff_out_full(void **state)
{
    struct smtp_dotstuff d;
    struct buf out;
    size_t used;

    (void) state;
    buf_init(&out, 6);
    smtp_dotstuff_init(&d);
    /* "ab" fits, the CR is held (no output), "." then needs CRLF + ".." */
    used = smtp_dotstuff_feed(&d, S("ab\r\r.x"), &out);
    assert_int_equal(used, 4);
    assert_int_equal(buf_len(&out), 4);
    assert_memory_equal(buf_str(&out), "ab\r\n", 4);
    assert_int_equal(smtp_dotstuff_out_bytes(&d), 4);
    buf_reset(&out);
    used = smtp_dotstuff_feed(&d, S(".x"), &out);
    assert_int_equal(used, 2);
    assert_memory_equal(buf_str(&out), "\r\n..x", 5);
    /* One byte of room: finish needs five. */
    assert_int_equal(smtp_dotstuff_finish(&d, &out), SY_ETOOBIG);
    assert_int_equal(buf_len(&out), 5);
    assert_false(smtp_dotstuff_finished(&d));
    assert_int_equal(smtp_dotstuff_out_bytes(&d), 9);
    buf_reset(&out);
    assert_int_equal(smtp_dotstuff_finish(&d, &out), SY_OK);
    assert_memory_equal(buf_str(&out), "\r\n.\r\n", 5);
    assert_int_equal(smtp_dotstuff_out_bytes(&d), 14);
    /* Finished: nothing more is consumed or written. */
    buf_reset(&out);
    assert_int_equal(smtp_dotstuff_feed(&d, S("more"), &out), 0);
    assert_int_equal(smtp_dotstuff_finish(&d, &out), SY_OK);
    assert_int_equal(buf_len(&out), 0);
    assert_int_equal(smtp_dotstuff_out_bytes(&d), 14);
    buf_free(&out);

    /* At a line start finish needs only three bytes. */
    buf_init(&out, 3);
    smtp_dotstuff_init(&d);
    assert_int_equal(smtp_dotstuff_feed(&d, S("a\n"), &out), 2);
    buf_reset(&out);
    assert_int_equal(smtp_dotstuff_finish(&d, &out), SY_OK);
    assert_memory_equal(buf_str(&out), ".\r\n", 3);
    buf_free(&out);

    /* A zero-room buffer consumes nothing but a CR (held, no output). */
    buf_init(&out, 0);
    smtp_dotstuff_init(&d);
    assert_int_equal(smtp_dotstuff_feed(&d, S("\r"), &out), 1);
    assert_int_equal(smtp_dotstuff_feed(&d, S("x"), &out), 0);
    assert_int_equal(smtp_dotstuff_finish(&d, &out), SY_ETOOBIG);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dotstuff_table),
        cmocka_unit_test(test_dotstuff_chunks),
        cmocka_unit_test(test_dotstuff_out_full),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
