/* test_deliver.c - the scheduler's pure parts: the retry schedule
 * (deliver_backoff_ms, per-transport values), the verdict and DSN decision
 * (deliver_decide), grouping, and status extraction */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/deliver.h"
#include "gateway/dsn.h"

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

/* Per-transport retry: values: each one set wins over delivery's. */
/* hold_until from a spool file is only checked to be >= 0: * 1000 must
 * not overflow (review finding 4; UBSan stops the test on overflow). */
static void test_hold_until_ms(void **state)
{
    (void) state;
    assert_int_equal(deliver_hold_until_ms(0), 0);
    assert_int_equal(deliver_hold_until_ms(-5), 0);
    assert_int_equal(deliver_hold_until_ms(1700000000), INT64_C(1700000000000));
    assert_int_equal(deliver_hold_until_ms(INT64_C(253402300799)), INT64_C(253402300799000));
    assert_int_equal(deliver_hold_until_ms(INT64_C(253402300800)), INT64_C(253402300799000));
    assert_int_equal(deliver_hold_until_ms(INT64_MAX), INT64_C(253402300799000));
}

static void test_retry_params(void **state)
{
    struct cfg_delivery dc = { .retry_first_ms = 300000, .retry_max_ms = 14400000, .expiry_ms = 432000000 };
    struct cfg_transport t;
    struct deliver_retry r;
    unsigned seed = 1;

    (void) state;
    deliver_retry_params(&dc, NULL, &r);
    assert_int_equal(r.first_ms, 300000);
    assert_int_equal(r.max_ms, 14400000);
    assert_int_equal(r.expiry_ms, 432000000);

    memset(&t, 0, sizeof(t));
    t.retry_first_ms = 1000;
    t.retry_max_ms = 4000;
    t.expiry_ms = 60000;
    deliver_retry_params(&dc, &t, &r);      /* nothing set: delivery's */
    assert_int_equal(r.first_ms, 300000);
    assert_int_equal(r.expiry_ms, 432000000);
    t.retry_first_set = true;
    deliver_retry_params(&dc, &t, &r);
    assert_int_equal(r.first_ms, 1000);
    assert_int_equal(r.max_ms, 14400000);
    t.retry_max_set = true;
    t.expiry_set = true;
    deliver_retry_params(&dc, &t, &r);
    assert_int_equal(r.first_ms, 1000);
    assert_int_equal(r.max_ms, 4000);
    assert_int_equal(r.expiry_ms, 60000);
    /* 1 s, 2 s, 4 s, 4 s with the transport's values (±10%). */
    for (unsigned a = 1; a <= 4; a++) {
        int64_t want = a == 1 ? 1000 : a == 2 ? 2000 : 4000;
        int64_t d = deliver_backoff_ms(a, r.first_ms, r.max_ms, &seed);

        assert_true(d >= want - want / 10 && d <= want + want / 10);
    }
    /* retry_first alone above delivery's retry_max: max follows it. */
    memset(&t, 0, sizeof(t));
    t.retry_first_ms = 20000000;
    t.retry_first_set = true;
    deliver_retry_params(&dc, &t, &r);
    assert_int_equal(r.max_ms, 20000000);
}

struct decide_case {
    const char *name;
    int code, relayed, not_attempted, final_delivery, admin;
    unsigned attempts;
    int64_t age_ms;             /* now - base */
    unsigned notify;            /* rcpt NOTIFY bits */
    const char *sender;
    int delay_sent;
    /* expected */
    int state, exp_not_attempted, expired, dsn, mark_delay;
    int64_t next_lo, next_hi;   /* next_ms - now, for QUEUED */
};

#define H ((int64_t) 3600000)
static const struct decide_case decide_cases[] = {
    { "delivered by capture, no NOTIFY", SY_OK, 0, 0, 1, 0, 0, 0, 0, "s@x", 0,
      QUEUE_DELIVERED, 0, 0, 0, 0, 0, 0 },
    { "delivered by capture, NOTIFY=SUCCESS", SY_OK, 0, 0, 1, 0, 0, 0, ENV_NOTIFY_SUCCESS, "s@x", 0,
      QUEUE_DELIVERED, 0, 0, DSN_ACTION_DELIVERED, 0, 0, 0 },
    { "relayed to a DSN-less hop, NOTIFY=SUCCESS", SY_OK, 1, 0, 0, 0, 0, 0, ENV_NOTIFY_SUCCESS, "s@x", 0,
      QUEUE_DELIVERED, 0, 0, DSN_ACTION_RELAYED, 0, 0, 0 },
    { "relayed to a DSN hop: the hop reports", SY_OK, 0, 0, 0, 0, 0, 0, ENV_NOTIFY_SUCCESS, "s@x", 0,
      QUEUE_DELIVERED, 0, 0, 0, 0, 0, 0 },
    { "permanent failure", SY_EPERM, 0, 0, 0, 0, 2, 0, 0, "s@x", 0,
      QUEUE_FAILED, 0, 0, DSN_ACTION_FAILED, 0, 0, 0 },
    { "permanent failure, NOTIFY=NEVER", SY_EPERM, 0, 0, 0, 0, 0, 0, ENV_NOTIFY_NEVER, "s@x", 0,
      QUEUE_FAILED, 0, 0, 0, 0, 0, 0 },
    { "permanent failure, NOTIFY=DELAY only", SY_EPERM, 0, 0, 0, 0, 0, 0, ENV_NOTIFY_DELAY, "s@x", 0,
      QUEUE_FAILED, 0, 0, 0, 0, 0, 0 },
    { "permanent failure, null sender", SY_EPERM, 0, 0, 0, 0, 0, 0, 0, "", 0,
      QUEUE_FAILED, 0, 0, 0, 0, 0, 0 },
    { "first temporary failure", SY_ETEMP, 0, 0, 0, 0, 0, 1000, 0, "s@x", 0,
      QUEUE_QUEUED, 0, 0, 0, 0, 270000, 330000 },
    { "third temporary failure", SY_ETEMP, 0, 0, 0, 0, 2, 1000, 0, "s@x", 0,
      QUEUE_QUEUED, 0, 0, 0, 0, 1080000, 1320000 },
    { "temporary failure past delay_warning", SY_ETEMP, 0, 0, 0, 0, 5, 4 * H, 0, "s@x", 0,
      QUEUE_QUEUED, 0, 0, DSN_ACTION_DELAYED, 1, 1, 5 * H },
    { "delay DSN only once", SY_ETEMP, 0, 0, 0, 0, 6, 5 * H, 0, "s@x", 1,
      QUEUE_QUEUED, 0, 0, 0, 0, 1, 5 * H },
    { "delay DSN refused by NOTIFY=FAILURE", SY_ETEMP, 0, 0, 0, 0, 6, 5 * H, ENV_NOTIFY_FAILURE, "s@x", 0,
      QUEUE_QUEUED, 0, 0, 0, 0, 1, 5 * H },
    { "temporary failure at expiry", SY_ETEMP, 0, 0, 0, 0, 30, 120 * H, 0, "s@x", 0,
      QUEUE_FAILED, 0, 1, DSN_ACTION_FAILED, 0, 0, 0 },
    { "last retry no later than expiry", SY_ETEMP, 0, 0, 0, 0, 30, 120 * H - 1000, 0, "s@x", 1,
      QUEUE_QUEUED, 0, 0, 0, 0, 1000, 1000 },
    { "not attempted", SY_ETEMP, 0, 1, 0, 0, 3, 200 * H, 0, "s@x", 0,
      QUEUE_QUEUED, 1, 0, 0, 0, 1000, 5000 },
    { "failed by administrator", SY_EPERM, 0, 0, 0, QUEUE_ADMIN_FAIL, 0, 0, 0, "s@x", 0,
      QUEUE_FAILED, 0, 0, DSN_ACTION_FAILED, 0, 0, 0 },
    { "dropped by administrator", SY_EPERM, 0, 0, 0, QUEUE_ADMIN_DROP, 0, 0, 0, "s@x", 0,
      QUEUE_FAILED, 0, 0, 0, 0, 0, 0 },
};

static void test_decide(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(decide_cases) / sizeof(decide_cases[0]); i++) {
        const struct decide_case *c = &decide_cases[i];
        char raddr[] = "r@y", sender[16];
        struct env_rcpt rcpt = { .addr = raddr, .notify = c->notify };
        struct envelope env;
        struct deliver_facts f;
        struct deliver_verdict v;
        unsigned seed = (unsigned) i;

        print_message("decide: %s\n", c->name);
        memset(&env, 0, sizeof(env));
        (void) snprintf(sender, sizeof(sender), "%s", c->sender);
        env.sender = sender;
        env.rcpts = &rcpt;
        env.nrcpt = 1;
        memset(&f, 0, sizeof(f));
        f.code = c->code;
        f.relayed = c->relayed;
        f.not_attempted = c->not_attempted;
        f.final_delivery = c->final_delivery;
        f.admin = c->admin;
        f.attempts = c->attempts;
        f.base_ms = INT64_C(1700000000000);
        f.now_ms = f.base_ms + c->age_ms;
        f.retry.first_ms = 300000;
        f.retry.max_ms = 4 * H;
        f.retry.expiry_ms = 120 * H;
        f.delay_warning_ms = 4 * H;
        f.delay_sent = c->delay_sent;
        f.env = &env;
        f.rcpt = 0;
        deliver_decide(&f, &seed, &v);
        assert_int_equal(v.state, c->state);
        assert_int_equal(v.not_attempted, c->exp_not_attempted);
        assert_int_equal(v.expired, c->expired);
        assert_int_equal(v.dsn_action, c->dsn);
        assert_int_equal(v.delay_sent, c->mark_delay);
        if (v.state == QUEUE_QUEUED) {
            assert_true(v.next_ms - f.now_ms >= c->next_lo);
            assert_true(v.next_ms - f.now_ms <= c->next_hi);
        }
    }
    /* delay_warning 0: never a delay DSN. */
    {
        char raddr[] = "r@y", sender[] = "s@x";
        struct env_rcpt rcpt = { .addr = raddr };
        struct envelope env;
        struct deliver_facts f;
        struct deliver_verdict v;
        unsigned seed = 7;

        memset(&env, 0, sizeof(env));
        env.sender = sender;
        env.rcpts = &rcpt;
        env.nrcpt = 1;
        memset(&f, 0, sizeof(f));
        f.code = SY_ETEMP;
        f.base_ms = 1000;
        f.now_ms = 1000 + 100 * H;
        f.retry.first_ms = 1000;
        f.retry.max_ms = 1000;
        f.retry.expiry_ms = 120 * H;
        f.env = &env;
        deliver_decide(&f, &seed, &v);
        assert_int_equal(v.dsn_action, 0);
        assert_int_equal(v.state, QUEUE_QUEUED);
    }
}

/* One transport_deliver() per distinct transport: grouping by pointer. */
static void test_group(void **state)
{
    static const int a = 1, b = 2, c = 3;
    const void *keys[7] = { &a, &b, &a, &c, &b, &a, NULL };
    size_t group[7];

    (void) state;
    assert_int_equal(deliver_group(keys, 7, group), 4);
    assert_int_equal(group[0], 0);
    assert_int_equal(group[1], 1);
    assert_int_equal(group[2], 0);
    assert_int_equal(group[3], 3);
    assert_int_equal(group[4], 1);
    assert_int_equal(group[5], 0);
    assert_int_equal(group[6], 6);
    assert_int_equal(deliver_group(keys, 0, group), 0);
    assert_int_equal(deliver_group(keys, 1, group), 1);
}

struct status_case {
    const char *reply, *want;
};

static const struct status_case status_cases[] = {
    { "550 5.1.1 <x@y>: no such user", "5.1.1" },
    { "451-4.7.1 greylisted\r\n451 4.7.1 later", "4.7.1" },
    { "250 2.0.0 Ok: queued", "2.0.0" },
    { "5.0.0 failed by administrator", "5.0.0" },
    { "554 transaction failed", "" },
    { "451 4.3", "" },
    { "451 4.3.1234 too long", "" },
    { "450 3.1.1 bad class", "" },
    { "", "" },
    { "25", "" },
};

static void test_reply_status(void **state)
{
    char dst[12];

    (void) state;
    for (size_t i = 0; i < sizeof(status_cases) / sizeof(status_cases[0]); i++) {
        print_message("status: %s\n", status_cases[i].reply);
        assert_string_equal(deliver_reply_status(status_cases[i].reply, dst, sizeof(dst)), status_cases[i].want);
    }
    assert_string_equal(deliver_reply_status(NULL, dst, sizeof(dst)), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_hold_until_ms),
        cmocka_unit_test(test_retry_params),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_group),
        cmocka_unit_test(test_reply_status),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
