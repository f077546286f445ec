/* test_deliver.c - the retry schedule (deliver_backoff_ms) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gateway/deliver.h"

struct backoff_case {
    unsigned attempts;
    uint64_t first_ms, max_ms;
    int64_t base;           /* expected delay before jitter */
};

/* Defaults: first retry after 5 min, doubling, at most 4 h apart. */
static const struct backoff_case backoff_cases[] = {
    { 1, 300000, 14400000, 300000 },
    { 2, 300000, 14400000, 600000 },
    { 3, 300000, 14400000, 1200000 },
    { 4, 300000, 14400000, 2400000 },
    { 5, 300000, 14400000, 4800000 },
    { 6, 300000, 14400000, 9600000 },
    { 7, 300000, 14400000, 14400000 },
    { 50, 300000, 14400000, 14400000 },
    { 4000000000u, 300000, 14400000, 14400000 },
    { 0, 300000, 14400000, 300000 },
    { 3, 1000, 1000, 1000 },
    { 3, 5, 100, 20 },
};

static void test_backoff(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(backoff_cases) / sizeof(backoff_cases[0]); i++) {
        const struct backoff_case *c = &backoff_cases[i];
        int64_t lo = c->base - c->base / 10, hi = c->base + c->base / 10;
        unsigned seed = (unsigned) i;
        int64_t min = INT64_MAX, max = 0;

        print_message("backoff case %zu: attempts=%u\n", i, c->attempts);
        for (int k = 0; k < 2000; k++) {
            int64_t d = deliver_backoff_ms(c->attempts, c->first_ms, c->max_ms, &seed);

            assert_true(d >= lo && d <= hi);
            if (d < min)
                min = d;
            if (d > max)
                max = d;
        }
        /* The jitter really spreads retries (when there is room for it). */
        if (c->base >= 100)
            assert_true(max - min > c->base / 20);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
