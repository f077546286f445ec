/* test_util.c - gateway/util: buf, text, log_safe, err */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/util/buf.h"
#include "gateway/util/err.h"
#include "gateway/util/log.h"
#include "gateway/util/text.h"

/* A failed append leaves the buffer unchanged; the limit is exact. */
static void test_buf_limits(void **state)
{
    struct buf b;
    char *p;
    size_t n;

    (void) state;
    buf_init(&b, 8);
    assert_string_equal(buf_str(&b), "");
    assert_int_equal(buf_append(&b, "abcd", 4), SY_OK);
    assert_int_equal(buf_room(&b), 4);
    assert_int_equal(buf_append(&b, "efghi", 5), SY_ETOOBIG);
    assert_int_equal(buf_len(&b), 4);
    assert_string_equal(buf_str(&b), "abcd");
    assert_int_equal(buf_append(&b, "efgh", 4), SY_OK);
    assert_int_equal(buf_append_byte(&b, 'x'), SY_ETOOBIG);
    assert_int_equal(buf_printf(&b, "%d", 1), SY_ETOOBIG);
    assert_string_equal(buf_str(&b), "abcdefgh");
    buf_consume(&b, 3);
    assert_string_equal(buf_str(&b), "defgh");
    assert_int_equal(buf_printf(&b, "%03d", 7), SY_OK);
    assert_string_equal(buf_str(&b), "defgh007");
    /* binary-safe */
    buf_reset(&b);
    assert_int_equal(buf_append(&b, "a\0b", 3), SY_OK);
    assert_int_equal(buf_len(&b), 3);
    p = buf_take(&b, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(p, "a\0b", 3);
    free(p);
    assert_int_equal(buf_len(&b), 0);
    p = buf_take(&b, &n);
    assert_int_equal(n, 0);
    assert_string_equal(p, "");
    free(p);
    buf_consume(&b, 10);
    buf_free(&b);
}

struct u64_case {
    const char *in;
    uint64_t min, max;
    int rc;
    uint64_t out;
};

static const struct u64_case u64_cases[] = {
    { "0", 0, 10, SY_OK, 0 },
    { "10", 0, 10, SY_OK, 10 },
    { "11", 0, 10, SY_ETOOBIG, 0 },
    { "", 0, 10, SY_ESYNTAX, 0 },
    { "-1", 0, 10, SY_ESYNTAX, 0 },
    { "+1", 0, 10, SY_ESYNTAX, 0 },
    { " 1", 0, 10, SY_ESYNTAX, 0 },
    { "1e9", 0, UINT64_MAX, SY_ESYNTAX, 0 },
    { "18446744073709551615", 0, UINT64_MAX, SY_OK, UINT64_MAX },
    { "18446744073709551616", 0, UINT64_MAX, SY_ETOOBIG, 0 },
    { "99999999999999999999999", 0, UINT64_MAX, SY_ETOOBIG, 0 },
    { "5", 6, 10, SY_ETOOBIG, 0 },
};

static void test_text_parse_u64(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(u64_cases) / sizeof(u64_cases[0]); i++) {
        const struct u64_case *c = &u64_cases[i];
        uint64_t v = 12345;
        int rc = text_parse_u64(c->in, strlen(c->in), c->min, c->max, &v);

        print_message("u64 case %zu: \"%s\"\n", i, c->in);
        assert_int_equal(rc, c->rc);
        if (rc == SY_OK)
            assert_true(v == c->out);
        else
            assert_true(v == 12345);    /* unchanged on failure */
    }
}

struct dur_case {
    const char *in;
    int rc;
    uint64_t ms;
};

static const struct dur_case dur_cases[] = {
    { "30", SY_OK, 30000 },
    { "30s", SY_OK, 30000 },
    { "1500ms", SY_OK, 1500 },
    { "5m", SY_OK, 300000 },
    { "4h", SY_OK, 14400000 },
    { "5d", SY_OK, 432000000 },
    { "1w", SY_OK, 604800000 },
    { "5x", SY_ESYNTAX, 0 },
    { "m", SY_ESYNTAX, 0 },
    { "", SY_ESYNTAX, 0 },
    { "-5s", SY_ESYNTAX, 0 },
    { "1.5s", SY_ESYNTAX, 0 },
    { "99999999999999999999d", SY_ETOOBIG, 0 },
    { "999999999999999999d", SY_ETOOBIG, 0 },
};

static void test_text_parse_duration(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(dur_cases) / sizeof(dur_cases[0]); i++) {
        uint64_t v = 0;

        print_message("duration case \"%s\"\n", dur_cases[i].in);
        assert_int_equal(text_parse_duration_ms(dur_cases[i].in, 0, UINT64_MAX, &v), dur_cases[i].rc);
        if (dur_cases[i].rc == SY_OK)
            assert_true(v == dur_cases[i].ms);
    }
    {
        uint64_t v;

        assert_int_equal(text_parse_duration_ms("0", 1000, 5000, &v), SY_ETOOBIG);
        assert_int_equal(text_parse_duration_ms("6s", 1000, 5000, &v), SY_ETOOBIG);
    }
}

static void test_text_parse_size(void **state)
{
    uint64_t v;

    (void) state;
    assert_int_equal(text_parse_size("10240000", 0, UINT64_MAX, &v), SY_OK);
    assert_true(v == 10240000);
    assert_int_equal(text_parse_size("10k", 0, UINT64_MAX, &v), SY_OK);
    assert_true(v == 10240);
    assert_int_equal(text_parse_size("1M", 0, UINT64_MAX, &v), SY_OK);
    assert_true(v == 1048576);
    assert_int_equal(text_parse_size("2g", 0, UINT64_MAX, &v), SY_OK);
    assert_true(v == 2147483648ULL);
    assert_int_equal(text_parse_size("2t", 0, UINT64_MAX, &v), SY_ESYNTAX);
    assert_int_equal(text_parse_size("99999999999999g", 0, UINT64_MAX, &v), SY_ETOOBIG);
}

struct utf8_case {
    const char *in;
    size_t n;
    int ok;
};

static const struct utf8_case utf8_cases[] = {
    { "plain", 5, 1 },
    { "\xc3\xa9", 2, 1 },                  /* é */
    { "\xe7\x94\xa8\xe6\x88\xb7", 6, 1 },  /* 用户 */
    { "\xf0\x9f\x98\x80", 4, 1 },          /* emoji */
    { "\xc0\xaf", 2, 0 },                  /* overlong '/' */
    { "\xe0\x80\xaf", 3, 0 },              /* overlong */
    { "\xed\xa0\x80", 3, 0 },              /* lone surrogate */
    { "\xf4\x90\x80\x80", 4, 0 },          /* > U+10FFFF */
    { "\xc3", 1, 0 },                      /* truncated */
    { "\x80", 1, 0 },                      /* stray continuation */
    { "\xff", 1, 0 },
};

static void test_text_utf8(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
        print_message("utf8 case %zu\n", i);
        assert_int_equal(text_is_utf8(utf8_cases[i].in, utf8_cases[i].n), utf8_cases[i].ok);
    }
}

static void test_text_misc(void **state)
{
    char small[4];

    (void) state;
    assert_int_equal(text_copy(small, sizeof(small), "abc"), SY_OK);
    assert_string_equal(small, "abc");
    assert_int_equal(text_copy(small, sizeof(small), "abcd"), SY_ETOOBIG);
    assert_string_equal(small, "");         /* never a silent truncation */
    assert_true(text_ieq("MaIl", 4, "mail"));
    assert_false(text_ieq("mail", 4, "mails"));
    assert_true(text_is_clean("a b", 3));
    assert_false(text_is_clean("a\rb", 3));
    assert_false(text_is_clean("a\0b", 3));
}

static void test_log_safe(void **state)
{
    char dst[16];

    (void) state;
    assert_string_equal(log_safe(dst, sizeof(dst), "plain"), "plain");
    assert_string_equal(log_safe(dst, sizeof(dst), "a\r\nb\x1b[2J"), "a??b?[2J");
    assert_string_equal(log_safe(dst, sizeof(dst), NULL), "");
    assert_string_equal(log_safe(dst, sizeof(dst), "0123456789abcdefghij"), "0123456789ab...");
    assert_int_equal(strlen(log_safe(dst, sizeof(dst), "\xe2\x80\xae")), 3);
    assert_string_equal(log_safe_n(dst, sizeof(dst), "a\0b", 3), "a?b");
}

static void test_err(void **state)
{
    struct sy_err e;

    (void) state;
    assert_int_equal(sy_err_set(&e, SY_ETEMP, "4.3.0", "redis: %s", "down\r\nX-Injected: 1"), SY_ETEMP);
    assert_string_equal(e.enh, "4.3.0");
    assert_null(strchr(e.text, '\r'));
    assert_null(strchr(e.text, '\n'));
    assert_true(sy_err_is_temp(&e));
    sy_err_set(&e, SY_EPERM, "5.1.1", "no such user");
    assert_false(sy_err_is_temp(&e));
    sy_err_set(&e, SY_EPERM, NULL, "unknown");
    assert_true(sy_err_is_temp(&e));        /* in doubt, defer */
    assert_string_equal(sy_err_enh(&e), "4.3.0");
    sy_err_set(&e, SY_EPERM, "this-is-way-too-long", "x");
    assert_string_equal(e.enh, "");
    assert_int_equal(sy_err_set(NULL, SY_EIO, "4.3.0", "x"), SY_EIO);
    sy_err_clear(&e);
    assert_int_equal(e.code, SY_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_limits),
        cmocka_unit_test(test_text_parse_u64),
        cmocka_unit_test(test_text_parse_duration),
        cmocka_unit_test(test_text_parse_size),
        cmocka_unit_test(test_text_utf8),
        cmocka_unit_test(test_text_misc),
        cmocka_unit_test(test_log_safe),
        cmocka_unit_test(test_err),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
