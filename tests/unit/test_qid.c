/* test_qid.c - queue ids: format, order, floor, time decoding, threads */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "gateway/qid.h"

#define QID_TEST_COUNT 100000
#define QID_TEST_THREADS 4
#define QID_TEST_PER_THREAD 25000

/* An independent encoder for the time part, so the tests do not trust
 * qid.c to check itself. */
static void qid_test_make(char out[QID_SIZE], int64_t us, const char *rand4)
{
    static const char alpha[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

    for (int i = 10; i >= 0; i--) {
        out[i] = alpha[us % 32];
        us /= 32;
    }
    memcpy(out + 11, rand4, 4);
    out[QID_LEN] = '\0';
}

static int64_t qid_test_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* 100000 ids in a row: all valid, each sorting after the one before. */
static void test_qid_strictly_increasing(void **state)
{
    char prev[QID_SIZE], cur[QID_SIZE];
    int64_t before = qid_test_now_us(), t0;

    (void) state;
    qid_new(prev);
    t0 = qid_time_us(prev);
    assert_true(qid_valid(prev));
    assert_true(t0 >= before);
    assert_true(t0 < before + (int64_t) 10 * 1000000);
    for (int i = 1; i < QID_TEST_COUNT; i++) {
        qid_new(cur);
        assert_int_equal(strlen(cur), QID_LEN);
        if (!qid_valid(cur))
            fail_msg("id %d not valid: %s", i, cur);
        if (strcmp(prev, cur) >= 0)
            fail_msg("id %d: %s does not sort after %s", i, cur, prev);
        if (qid_time_us(cur) <= qid_time_us(prev))
            fail_msg("id %d: time did not increase", i);
        memcpy(prev, cur, QID_SIZE);
    }
    /* The random part is not constant. */
    {
        char a[QID_SIZE];
        int differ = 0;

        for (int i = 0; i < 64 && !differ; i++) {
            qid_new(a);
            differ = memcmp(a + 11, cur + 11, 4) != 0;
        }
        assert_true(differ);
    }
}

static const struct {
    const char *name;
    const char *s;
    int valid;
} qid_valid_cases[] = {
    { "all digits", "012345678901234", 1 },
    { "letters", "ABCDEFGHJKMNPQR", 1 },
    { "last letters", "STVWXYZ0123ZZZZ", 1 },
    { "empty", "", 0 },
    { "14 chars", "01234567890123", 0 },
    { "16 chars", "0123456789012345", 0 },
    { "lowercase", "0123456789abcde", 0 },
    { "I excluded", "0123456789ABCDI", 0 },
    { "L excluded", "0123456789ABCDL", 0 },
    { "O excluded", "0123456789ABCDO", 0 },
    { "U excluded", "0123456789ABCDU", 0 },
    { "space", "0123456789 BCDE", 0 },
    { "path", "../../etc/passw", 0 },
    { "slash", "0123456/89ABCDE", 0 },
    { "8-bit", "0123456789ABCD\xc3", 0 },
    { "dot", "0123456789ABCD.", 0 },
};

static void test_qid_valid_table(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(qid_valid_cases) / sizeof(qid_valid_cases[0]); i++) {
        print_message("case %s\n", qid_valid_cases[i].name);
        assert_int_equal(qid_valid(qid_valid_cases[i].s), qid_valid_cases[i].valid);
        if (!qid_valid_cases[i].valid)
            assert_int_equal(qid_time_us(qid_valid_cases[i].s), -1);
    }
    assert_int_equal(qid_valid(NULL), 0);
    assert_int_equal(qid_time_us(NULL), -1);
}

static const struct {
    const char *name;
    int64_t us;
    const char *id;     /* expected time digits, NULL to skip */
} qid_time_cases[] = {
    { "zero", 0, "00000000000" },
    { "one", 1, "00000000001" },
    { "31", 31, "0000000000Z" },
    { "32", 32, "00000000010" },
    { "2025", INT64_C(1763782949123456), NULL },
    { "year 3000", INT64_C(32503680000000000), NULL },
    { "largest", (INT64_C(1) << 55) - 1, "ZZZZZZZZZZZ" },
};

static void test_qid_time_round_trip(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(qid_time_cases) / sizeof(qid_time_cases[0]); i++) {
        char id[QID_SIZE];

        print_message("case %s\n", qid_time_cases[i].name);
        qid_test_make(id, qid_time_cases[i].us, "7K9Q");
        assert_true(qid_valid(id));
        if (qid_time_cases[i].id != NULL)
            assert_memory_equal(id, qid_time_cases[i].id, 11);
        assert_int_equal(qid_time_us(id), qid_time_cases[i].us);
    }
}

/* A floor in the future (an id minted before the clock stepped back)
 * pushes every later id after it; an older or invalid floor changes
 * nothing. Runs after the other single-thread tests: it moves `last`. */
static void test_qid_floor(void **state)
{
    char floor[QID_SIZE], id[QID_SIZE], id2[QID_SIZE];
    int64_t future = qid_test_now_us() + INT64_C(3600) * 1000000;

    (void) state;
    qid_test_make(floor, future, "ZZZZ");
    qid_floor(floor);
    qid_new(id);
    assert_true(strcmp(id, floor) > 0);
    assert_int_equal(qid_time_us(id), future + 1);

    /* Lower floors and garbage are ignored: still last + 1. */
    qid_test_make(floor, future - 1000, "ZZZZ");
    qid_floor(floor);
    qid_floor("not an id");
    qid_floor(NULL);
    qid_new(id2);
    assert_int_equal(qid_time_us(id2), future + 2);
    assert_true(strcmp(id2, id) > 0);
}

struct qid_test_thread {
    char (*ids)[QID_SIZE];
    int ordered;
};

static void *qid_test_worker(void *arg)
{
    struct qid_test_thread *t = arg;

    t->ordered = 1;
    for (int i = 0; i < QID_TEST_PER_THREAD; i++) {
        qid_new(t->ids[i]);
        if (i > 0 && strcmp(t->ids[i - 1], t->ids[i]) >= 0)
            t->ordered = 0;
    }
    return NULL;
}

static int qid_test_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Several threads at once: every id unique, each thread's ids ordered. */
static void test_qid_threads(void **state)
{
    struct qid_test_thread t[QID_TEST_THREADS];
    pthread_t th[QID_TEST_THREADS];
    char (*all)[QID_SIZE] = calloc((size_t) QID_TEST_THREADS * QID_TEST_PER_THREAD, QID_SIZE);

    (void) state;
    assert_non_null(all);
    for (int i = 0; i < QID_TEST_THREADS; i++) {
        t[i].ids = all + (size_t) i * QID_TEST_PER_THREAD;
        assert_int_equal(pthread_create(&th[i], NULL, qid_test_worker, &t[i]), 0);
    }
    /* Join every thread before any assertion can leave the test. */
    for (int i = 0; i < QID_TEST_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < QID_TEST_THREADS; i++)
        assert_true(t[i].ordered);
    qsort(all, (size_t) QID_TEST_THREADS * QID_TEST_PER_THREAD, QID_SIZE, qid_test_cmp);
    for (size_t i = 1; i < (size_t) QID_TEST_THREADS * QID_TEST_PER_THREAD; i++) {
        if (!qid_valid(all[i]))
            fail_msg("invalid id %s", all[i]);
        if (strcmp(all[i - 1], all[i]) == 0)
            fail_msg("duplicate id %s", all[i]);
        /* The time part alone is unique within a process. */
        if (memcmp(all[i - 1], all[i], 11) == 0)
            fail_msg("duplicate time part %s", all[i]);
    }
    free(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qid_strictly_increasing),
        cmocka_unit_test(test_qid_valid_table),
        cmocka_unit_test(test_qid_time_round_trip),
        cmocka_unit_test(test_qid_threads),
        cmocka_unit_test(test_qid_floor),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
