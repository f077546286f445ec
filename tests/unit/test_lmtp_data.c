/* test_lmtp_data.c - lmtp/lmtp_data.c: the streaming DATA decoder
 *
 * Every case runs whole, one byte at a time, at pseudo-random split
 * points and through a tiny output buffer that the test drains between
 * calls; all runs must agree byte for byte with the expected output.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/util/buf.h"
#include "lmtp/lmtp_data.h"

#define R LMTP_DATA_REJECT_BARE
#define N LMTP_DATA_NORMALIZE_BARE
/* A string literal and its length, NUL bytes included. */
#define S(x) x, sizeof(x) - 1

struct data_case {
    const char *name;
    int policy;
    const char *in;
    size_t inlen;
    const char *out;
    size_t outlen;
    size_t consumed;
    bool done, bare, eightbit;
};

#define SMUG_CMDS "MAIL FROM:<x>\r\nRCPT TO:<y>\r\nDATA\r\n"

static const struct data_case data_cases[] = {
    { "empty message", R, S(".\r\n"), S(""), 3, true, false, false },
    { "one line", R, S("a\r\n.\r\n"), S("a\r\n"), 6, true, false, false },
    { "dot-stuffed ..abc", R, S("..abc\r\n.\r\n"), S(".abc\r\n"), 10, true, false, false },
    { "leading dot .abc", R, S(".abc\r\n.\r\n"), S("abc\r\n"), 9, true, false, false },
    { "dot line ..", R, S("x\r\n..\r\n.\r\n"), S("x\r\n.\r\n"), 10, true, false, false },
    { "three dots", R, S("...\r\n.\r\n"), S("..\r\n"), 8, true, false, false },
    { "dot space is data", R, S(". \r\n.\r\n"), S(" \r\n"), 7, true, false, false },
    { "abc. is not the end", R, S("abc.\r\n.\r\n"), S("abc.\r\n"), 9, true, false, false },
    { "empty lines", R, S("\r\n\r\n.\r\n"), S("\r\n\r\n"), 7, true, false, false },
    { "bytes after terminator", R, S("abc\r\n.\r\nQUIT\r\n"), S("abc\r\n"), 8, true, false, false },
    { "NUL byte kept", R, S("a\0b\r\n.\r\n"), S("a\0b\r\n"), 8, true, false, false },
    { "8-bit flag", R, S("caf\xc3\xa9\r\n.\r\n"), S("caf\xc3\xa9\r\n"), 10, true, false, true },
    { "8-bit after dot", R, S(".\xff\r\n.\r\n"), S("\xff\r\n"), 7, true, false, true },
    { "unterminated", R, S("abc\r\n"), S("abc\r\n"), 5, false, false, false },
    { "CR held back", R, S("abc\r\n.\r"), S("abc\r\n"), 7, false, false, false },
    { "RSET is data", R, S("RSET\r\n.\r\n"), S("RSET\r\n"), 9, true, false, false },

    /* SMTP smuggling (B1 #1, #3): only CRLF.CRLF ends the data. */
    { "LF.LF reject", R, S("a\n.\n" SMUG_CMDS "b\r\n.\r\nX"),
      S("a\n.\n" SMUG_CMDS "b\r\n"), 44, true, true, false },
    { "LF.LF normalize", N, S("a\n.\n" SMUG_CMDS "b\r\n.\r\nX"),
      S("a\r\n\r\n" SMUG_CMDS "b\r\n"), 44, true, false, false },
    { "CR.CR reject", R, S("a\r.\rb\r\n.\r\n"), S("a\r.\rb\r\n"), 10, true, true, false },
    { "CR.CR normalize", N, S("a\r.\rb\r\n.\r\n"), S("a\r\n\r\nb\r\n"), 10, true, false, false },
    { "CRLF.CR reject", R, S("a\r\n.\rX\r\n.\r\n"), S("a\r\n\rX\r\n"), 11, true, true, false },
    { "CRLF.CR normalize", N, S("a\r\n.\rX\r\n.\r\n"), S("a\r\n\r\nX\r\n"), 11, true, false, false },
    { "CRLF.LF reject", R, S("a\r\n.\nb\r\n.\r\n"), S("a\r\n\nb\r\n"), 11, true, true, false },
    { "CRLF.LF normalize", N, S("a\r\n.\nb\r\n.\r\n"), S("a\r\n\r\nb\r\n"), 11, true, false, false },
    { "LF.CRLF reject", R, S("a\n.\r\nb\r\n.\r\n"), S("a\n.\r\nb\r\n"), 11, true, true, false },
    { "LF.CRLF normalize", N, S("a\n.\r\nb\r\n.\r\n"), S("a\r\n\r\nb\r\n"), 11, true, false, false },
    { "CRLF.CRCRLF reject", R, S(".\r\r\n.\r\n"), S("\r\r\n"), 7, true, true, false },
    { "CRLF.CRCRLF normalize", N, S(".\r\r\n.\r\n"), S("\r\n\r\n"), 7, true, false, false },
    { "LF.LF at the end only", R, S("a\n.\n"), S("a\n.\n"), 4, false, true, false },

    /* Bare line endings in a line (B1 #4). */
    { "bare CR reject", R, S("abc\rdef\r\n.\r\n"), S("abc\rdef\r\n"), 12, true, true, false },
    { "bare CR normalize", N, S("abc\rdef\r\n.\r\n"), S("abc\r\ndef\r\n"), 12, true, false, false },
    { "bare LF reject", R, S("abc\ndef\r\n.\r\n"), S("abc\ndef\r\n"), 12, true, true, false },
    { "bare LF normalize", N, S("abc\ndef\r\n.\r\n"), S("abc\r\ndef\r\n"), 12, true, false, false },
    { "CR CRLF reject", R, S("a\r\r\n.\r\n"), S("a\r\r\n"), 7, true, true, false },
    { "CR CRLF normalize", N, S("a\r\r\n.\r\n"), S("a\r\n\r\n"), 7, true, false, false },
    { "LF LF normalize", N, S("a\n\nb\r\n.\r\n"), S("a\r\n\r\nb\r\n"), 9, true, false, false },
    { "LF dot-stuffed normalize", N, S("a\n..b\r\n.\r\n"), S("a\r\n.b\r\n"), 10, true, false, false },
    { "LF dot-stuffed reject", R, S("a\n..b\r\n.\r\n"), S("a\n..b\r\n"), 10, true, true, false },
    { "CR LF-less end normalize", N, S("a\r"), S("a"), 2, false, false, false },
    { "bare LF first", R, S("\n.\r\n"), S("\n.\r\n"), 4, false, true, false },
    { "clean normalize", N, S("x\r\n..y\r\n.\r\n"), S("x\r\n.y\r\n"), 11, true, false, false },
};

/* data_result - everything a run produces */
struct data_result {
    struct buf out;
    size_t consumed;
    bool done, bare, eightbit;
    uint64_t out_bytes;
};

/* data_rng - a small deterministic PRNG (xorshift32) */
static uint32_t data_rng(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* data_run - feed in[0..n) in pieces of at most step bytes (0: random
 * 1..8 from seed) through a buffer of max outmax, draining it into r */
static void data_run(int policy, const char *in, size_t n, size_t step, uint32_t seed, size_t outmax,
                     struct data_result *r)
{
    struct lmtp_data d;
    struct buf out;
    size_t pos = 0;
    int stalls = 0;

    lmtp_data_init(&d, policy);
    buf_init(&r->out, (size_t) 4 << 20);
    buf_init(&out, outmax);
    while (pos < n && !lmtp_data_done(&d)) {
        size_t want = step != 0 ? step : 1 + data_rng(&seed) % 8, used;

        if (want > n - pos)
            want = n - pos;
        used = lmtp_data_feed(&d, in + pos, want, &out);
        assert_true(used <= want);
        assert_true(buf_len(&out) <= outmax);
        if (used == 0 && buf_len(&out) == 0 && !lmtp_data_done(&d))
            assert_true(++stalls < 2);
        pos += used;
        assert_int_equal(buf_append(&r->out, buf_str(&out), buf_len(&out)), 0);
        buf_reset(&out);
    }
    /* Once done, the decoder takes nothing more. */
    if (lmtp_data_done(&d) && pos < n)
        assert_int_equal(lmtp_data_feed(&d, in + pos, n - pos, &out), 0);
    buf_free(&out);
    r->consumed = pos;
    r->done = lmtp_data_done(&d);
    r->bare = lmtp_data_bare_eol(&d);
    r->eightbit = lmtp_data_eightbit(&d);
    r->out_bytes = d.out_bytes;
}

/* data_check - compare a run with the expected result */
static void data_check(const struct data_case *c, struct data_result *r, const char *how)
{
    bool same = buf_len(&r->out) == c->outlen &&
                memcmp(buf_len(&r->out) ? buf_str(&r->out) : "", c->out, c->outlen) == 0 &&
                r->consumed == c->consumed && r->done == c->done && r->bare == c->bare &&
                r->eightbit == c->eightbit && r->out_bytes == c->outlen;

    if (!same)
        print_message("case %s (%s): consumed %zu done %d bare %d\n", c->name, how,
                      r->consumed, r->done, r->bare);
    assert_int_equal(buf_len(&r->out), c->outlen);
    assert_memory_equal(buf_len(&r->out) ? buf_str(&r->out) : "", c->out, c->outlen);
    assert_int_equal(r->consumed, c->consumed);
    assert_int_equal(r->done, c->done);
    assert_int_equal(r->bare, c->bare);
    assert_int_equal(r->eightbit, c->eightbit);
    assert_int_equal(r->out_bytes, c->outlen);
    buf_free(&r->out);
}

static void test_data_table(void **state)
{
    (void) state;
    for (size_t k = 0; k < sizeof(data_cases) / sizeof(data_cases[0]); k++) {
        const struct data_case *c = &data_cases[k];
        struct data_result r;

        print_message("case %s\n", c->name);
        data_run(c->policy, c->in, c->inlen, c->inlen ? c->inlen : 1, 0, 65536, &r);
        data_check(c, &r, "whole");
        data_run(c->policy, c->in, c->inlen, 1, 0, 65536, &r);
        data_check(c, &r, "byte at a time");
        for (uint32_t seed = 1; seed <= 20; seed++) {
            data_run(c->policy, c->in, c->inlen, 0, seed * 2654435761u, 65536, &r);
            data_check(c, &r, "random splits");
        }
        for (size_t outmax = 3; outmax <= 7; outmax++) {
            data_run(c->policy, c->in, c->inlen, c->inlen ? c->inlen : 1, 0, outmax, &r);
            data_check(c, &r, "small output buffer");
            data_run(c->policy, c->in, c->inlen, 0, (uint32_t) outmax, outmax, &r);
            data_check(c, &r, "small output buffer, random splits");
        }
    }
}

/* Every split point of the terminator gives the same end (B1 #39 too:
 * "\r\n.\r" without the LF is not the end). */
static void test_data_terminator_split(void **state)
{
    static const char msg[] = "Subject: x\r\n\r\nbody\r\n.\r\nNOOP\r\n";
    size_t n = sizeof(msg) - 1;

    (void) state;
    for (size_t cut = 0; cut <= n; cut++) {
        struct lmtp_data d;
        struct buf out;
        size_t a, b = 0;

        lmtp_data_init(&d, LMTP_DATA_REJECT_BARE);
        buf_init(&out, 4096);
        a = lmtp_data_feed(&d, msg, cut, &out);
        print_message("cut at %zu\n", cut);
        if (cut < 23) {
            assert_int_equal(a, cut);
            assert_false(lmtp_data_done(&d));
            b = lmtp_data_feed(&d, msg + cut, n - cut, &out);
        } else {
            assert_int_equal(a, 23);
            assert_true(lmtp_data_done(&d));
        }
        assert_int_equal(a + b, 23);
        assert_true(lmtp_data_done(&d));
        assert_int_equal(buf_len(&out), 20);
        assert_memory_equal(buf_str(&out), "Subject: x\r\n\r\nbody\r\n", 20);
        assert_false(lmtp_data_bare_eol(&d));
        buf_free(&out);
    }
}

/* A full output buffer stops the decoder without losing a byte. */
static void test_data_out_full(void **state)
{
    struct lmtp_data d;
    struct buf out;
    size_t used;

    (void) state;
    lmtp_data_init(&d, LMTP_DATA_NORMALIZE_BARE);
    buf_init(&out, 4);
    used = lmtp_data_feed(&d, S("abcdef\r\n.\r\n"), &out);
    assert_int_equal(used, 4);
    assert_memory_equal(buf_str(&out), "abcd", 4);
    assert_false(lmtp_data_done(&d));
    /* No room at all: nothing is consumed. */
    assert_int_equal(lmtp_data_feed(&d, S("ef\r\n.\r\n"), &out), 0);
    buf_reset(&out);
    /* A bare CR followed by 'x' needs three bytes (CR LF x). */
    assert_int_equal(lmtp_data_feed(&d, S("ef\r"), &out), 3);
    assert_int_equal(buf_len(&out), 2);
    assert_int_equal(lmtp_data_feed(&d, S("x\r\n.\r\n"), &out), 0);
    buf_reset(&out);
    /* "\r\nx" fits; the CR LF of the next CRLF no longer does. */
    assert_int_equal(lmtp_data_feed(&d, S("x\r\n.\r\n"), &out), 2);
    assert_int_equal(buf_len(&out), 3);
    assert_memory_equal(buf_str(&out), "\r\nx", 3);
    buf_reset(&out);
    assert_int_equal(lmtp_data_feed(&d, S("\n.\r\nNOOP"), &out), 4);
    assert_memory_equal(buf_str(&out), "\r\n", 2);
    assert_true(lmtp_data_done(&d));
    assert_int_equal(d.out_bytes, 11);
    buf_free(&out);
}

/* Long lines pass byte-exact (B1 #11): no per-line limit in the decoder. */
static void test_data_long_line(void **state)
{
    size_t len = 1024 * 1024 + 7;
    char *in = malloc(len + 5);
    struct data_result r;

    (void) state;
    assert_non_null(in);
    for (size_t i = 0; i < len; i++)
        in[i] = (char) ('a' + i % 26);
    memcpy(in + len, "\r\n.\r\n", 5);
    data_run(LMTP_DATA_REJECT_BARE, in, len + 5, 65536, 0, 65536, &r);
    assert_true(r.done);
    assert_int_equal(r.consumed, len + 5);
    assert_int_equal(buf_len(&r.out), len + 2);
    assert_memory_equal(buf_str(&r.out), in, len + 2);
    assert_false(r.eightbit);
    buf_free(&r.out);
    free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_table),
        cmocka_unit_test(test_data_terminator_split),
        cmocka_unit_test(test_data_out_full),
        cmocka_unit_test(test_data_long_line),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
