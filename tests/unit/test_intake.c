/* test_intake.c - the intake door: spool + Redis commit, duplicates,
 * failures that leave nothing behind, start-up reconciliation
 *
 * Runs against a real redis-server (tests/unit/support) and a spool in a
 * temporary directory. "Nothing behind" is checked on disk (q/ and tmp/)
 * and in Redis (DBSIZE).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/config.h"
#include "gateway/intake.h"
#include "gateway/queue.h"
#include "gateway/util/buf.h"
#include "gateway/util/log.h"
#include "tests/unit/support/fs.h"
#include "tests/unit/support/redis_server.h"

struct fixture {
    char dir[64];
    char sock[128];
    char spooldir[128];
    pid_t redis;
    struct config *cfg;
    struct spool *sp;
    struct queue_pool *qp;
    struct intake *in;
};

static struct fixture fx;

/* count_dir - entries in dir (without . and ..) */
static int count_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static int count_sub(const char *sub)
{
    char path[256];

    (void) snprintf(path, sizeof(path), "%s/%s", fx.spooldir, sub);
    return count_dir(path);
}

/* redis_int - an integer reply from a command on the test server */
__attribute__((format(printf, 1, 2)))
static long long redis_int(const char *fmt, ...)
{
    redisContext *c = redisConnectUnix(fx.sock);
    redisReply *r;
    long long v;
    va_list ap;

    assert_non_null(c);
    assert_int_equal(c->err, 0);
    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    v = r->integer;
    freeReplyObject(r);
    return v;
}

/* redis_flushall - an empty server */
static void redis_flushall(void)
{
    redisContext *c = redisConnectUnix(fx.sock);
    redisReply *r;

    assert_non_null(c);
    r = redisCommand(c, "FLUSHALL");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisFree(c);
}

/* redis_hget - a hash field as a new string, or NULL */
static char *redis_hget(const char *key, const char *field)
{
    redisContext *c = redisConnectUnix(fx.sock);
    redisReply *r;
    char *v = NULL;

    assert_non_null(c);
    r = redisCommand(c, "HGET %s %s", key, field);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_STRING)
        v = strdup(r->str);
    freeReplyObject(r);
    redisFree(c);
    return v;
}

static void assert_hget(const char *qid, const char *field, const char *want)
{
    char key[128];
    char *got;

    (void) snprintf(key, sizeof(key), "sy:{unit}:msg:%s", qid);
    got = redis_hget(key, field);
    if (want == NULL) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

/* open_all - config, spool, pool, intake for fx.cfg */
static void open_all(void)
{
    struct sy_err err;

    fx.sp = spool_open(fx.spooldir, &err);
    assert_non_null(fx.sp);
    fx.qp = queue_pool_new(&fx.cfg->redis, fx.cfg->node);
    fx.in = intake_new(fx.cfg, fx.sp, fx.qp);
}

static void close_all(void)
{
    intake_free(fx.in);
    queue_pool_free(fx.qp);
    spool_close(fx.sp);
    fx.in = NULL;
    fx.qp = NULL;
    fx.sp = NULL;
}

/* load_config - the test configuration, pointing at sock */
static struct config *load_config(const char *sock)
{
    struct buf yaml, errors;
    struct config *cfg;

    buf_init(&yaml, 4096);
    buf_init(&errors, 4096);
    (void) buf_printf(&yaml,
                      "node: unit\n"
                      "redis:\n  address: \"unix:%s\"\n  command_timeout: 1s\n  connect_timeout: 1s\n"
                      "spool:\n  dir: \"%s\"\n  min_free: 1k\n"
                      "lmtp:\n  listeners:\n    - name: test\n      address: \"127.0.0.1:2999\"\n",
                      sock, fx.spooldir);
    cfg = config_load_mem("unit.yaml", buf_str(&yaml), buf_len(&yaml), &errors);
    if (cfg == NULL)
        fail_msg("config: %s", buf_str(&errors));
    buf_free(&yaml);
    buf_free(&errors);
    return cfg;
}

static int group_setup(void **state)
{
    (void) state;
    log_set_level(LOG_LVL_ERROR);
    (void) snprintf(fx.dir, sizeof(fx.dir), "/tmp/sy-test-intake-XXXXXX");
    if (mkdtemp(fx.dir) == NULL)
        return -1;
    (void) snprintf(fx.sock, sizeof(fx.sock), "%s/redis.sock", fx.dir);
    (void) snprintf(fx.spooldir, sizeof(fx.spooldir), "%s/spool", fx.dir);
    fx.redis = test_redis_start(fx.dir, fx.sock, NULL, 10000);
    if (fx.redis < 0)
        return -1;
    fx.cfg = load_config(fx.sock);
    return 0;
}

static int group_teardown(void **state)
{
    (void) state;
    test_redis_kill(fx.redis);
    config_free(fx.cfg);
    return test_rmtree(fx.dir) == 0 ? 0 : -1;
}

static int test_setup(void **state)
{
    (void) state;
    redis_flushall();
    /* A fresh spool for every test (absent the first time). */
    (void) test_rmtree(fx.spooldir);
    open_all();
    return 0;
}

static int test_teardown(void **state)
{
    (void) state;
    close_all();
    return 0;
}

/* make_env - sender and nrcpt recipients */
static void make_env(struct envelope *e, size_t nrcpt)
{
    env_init(e);
    env_set(&e->sender, "alice@example.org");
    env_set(&e->listener, "test");
    env_set(&e->client_addr, "127.0.0.1");
    for (size_t i = 0; i < nrcpt; i++) {
        struct env_rcpt r = { 0 };
        char a[64];

        (void) snprintf(a, sizeof(a), "r%zu@example.net", i);
        env_set(&r.addr, a);
        env_add_rcpt(e, &r);
    }
}

static const char msg_a[] =
    "Received: from mta.example.org (localhost [127.0.0.1])\r\n"
    "\tby pf-test.localdomain (Postfix) with ESMTP id 4F3A9C21D0\r\n"
    "\tfor <r0@example.net>; Sun, 22 Nov 2026 04:00:00 +0000 (UTC)\r\n"
    "Message-ID:\r\n <abc@example.org>\r\n"
    "Subject: hello\r\n"
    "\r\n"
    "Body line with Message-ID: <not-this@x>\r\n";

/* commit - one message through intake; returns the intake status */
static int commit(const struct envelope *e, const char *msg, size_t chunk, char qid[QID_SIZE],
                  struct sy_err *err)
{
    struct intake_txn *t = intake_begin(fx.in, e, err);
    size_t n = strlen(msg);

    if (t == NULL)
        return err->code;
    for (size_t off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;

        if (intake_write(t, msg + off, k, err) != SY_OK) {
            intake_abort(t);
            return err->code;
        }
    }
    return intake_commit(t, qid, err);
}

/* A commit lands in q/ and in Redis with the facts intake extracts, the
 * same whatever the write sizes. */
static void test_commit(void **state)
{
    static const size_t chunks[] = { 1, 3, 64, 100000 };
    struct envelope e;
    struct sy_err err;

    (void) state;
    make_env(&e, 2);
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        char qid[QID_SIZE], size[32];
        char msg[1024];

        print_message("chunk size %zu\n", chunks[i]);
        /* A different body per round: not a duplicate of the previous. */
        (void) snprintf(msg, sizeof(msg), "%sround %zu\r\n", msg_a, i);
        assert_int_equal(commit(&e, msg, chunks[i], qid, &err), SY_OK);
        assert_true(qid_valid(qid));
        assert_int_equal(count_sub("tmp"), 0);
        assert_hget(qid, "sender", "alice@example.org");
        assert_hget(qid, "nrcpt", "2");
        assert_hget(qid, "listener", "test");
        assert_hget(qid, "message_id", "<abc@example.org>");
        assert_hget(qid, "mta_qid", "4F3A9C21D0");
        assert_hget(qid, "state", "active");
        (void) snprintf(size, sizeof(size), "%zu", strlen(msg));
        assert_hget(qid, "size", size);
        {
            struct envelope back;
            uint64_t off, len;

            env_init(&back);
            assert_int_equal(spool_read(fx.sp, qid, &back, &off, &len, &err), SY_OK);
            assert_int_equal(len, strlen(msg));
            assert_string_equal(back.message_id, "<abc@example.org>");
            assert_int_equal(back.nrcpt, 2);
            env_free(&back);
        }
    }
    assert_int_equal(count_sub("q"), 4);
    env_free(&e);
}

/* The MTA's retry of a message whose 250 it lost: answered with the first
 * queue id, stored once. A different envelope is a different message. */
static void test_duplicate_retry(void **state)
{
    struct envelope e, other;
    struct sy_err err;
    char q1[QID_SIZE], q2[QID_SIZE], q3[QID_SIZE];
    long long keys;

    (void) state;
    make_env(&e, 1);
    assert_int_equal(commit(&e, msg_a, 7, q1, &err), SY_OK);
    keys = redis_int("DBSIZE");
    assert_int_equal(commit(&e, msg_a, 100, q2, &err), SY_OK);
    assert_string_equal(q2, q1);
    assert_int_equal(count_sub("q"), 1);
    assert_int_equal(count_sub("tmp"), 0);
    assert_int_equal(redis_int("DBSIZE"), keys);

    make_env(&other, 2);
    assert_int_equal(commit(&other, msg_a, 100, q3, &err), SY_OK);
    assert_string_not_equal(q3, q1);
    assert_int_equal(count_sub("q"), 2);
    env_free(&e);
    env_free(&other);
}

/* Redis unreachable: 451 4.3.0 and nothing on disk or in Redis. */
static void test_redis_down(void **state)
{
    struct config *bad;
    struct envelope e;
    struct sy_err err;
    char qid[QID_SIZE];
    char sock[160];

    (void) state;
    close_all();
    (void) snprintf(sock, sizeof(sock), "%s/nobody-listens.sock", fx.dir);
    bad = load_config(sock);
    fx.sp = spool_open(fx.spooldir, &err);
    assert_non_null(fx.sp);
    fx.qp = queue_pool_new(&bad->redis, bad->node);
    fx.in = intake_new(bad, fx.sp, fx.qp);

    make_env(&e, 1);
    assert_int_not_equal(commit(&e, msg_a, 50, qid, &err), SY_OK);
    assert_string_equal(sy_err_enh(&err), "4.3.0");
    assert_true(sy_err_is_temp(&err));
    assert_int_equal(count_sub("q"), 0);
    assert_int_equal(count_sub("tmp"), 0);
    assert_int_equal(redis_int("DBSIZE"), 0);
    env_free(&e);
    close_all();
    config_free(bad);
    open_all();
}

/* Not enough room for the declared size plus the reserve: 452 4.3.1. */
static void test_check_mail_space(void **state)
{
    struct envelope e;
    struct sy_err err;

    (void) state;
    make_env(&e, 1);
    assert_int_equal(intake_check_mail(fx.in, &e, 1000, &err), SY_OK);
    assert_int_equal(intake_check_mail(fx.in, &e, UINT64_MAX / 2, &err), SY_ENOSPACE);
    assert_string_equal(sy_err_enh(&err), "4.3.1");
    env_free(&e);
}

/* Reconciliation: spool files Redis lost are re-indexed (a duplicate of a
 * known message is removed instead); a record whose file is gone is
 * marked missing; stale temporary files go. */
static void test_reconcile(void **state)
{
    struct envelope e;
    struct sy_err err;
    char q1[QID_SIZE], q2[QID_SIZE], path[256], key[128];
    FILE *f;
    char *state_s;

    (void) state;
    make_env(&e, 2);
    assert_int_equal(commit(&e, msg_a, 64, q1, &err), SY_OK);
    assert_int_equal(commit(&e, "Subject: two\r\n\r\nx\r\n", 64, q2, &err), SY_OK);
    redis_flushall();
    (void) snprintf(path, sizeof(path), "%s/tmp/0000000000000STALE", fx.spooldir);
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);

    assert_int_equal(intake_reconcile(fx.in, &err), SY_OK);
    assert_int_equal(count_sub("tmp"), 0);
    assert_hget(q1, "nrcpt", "2");
    assert_hget(q2, "nrcpt", "2");
    assert_hget(q1, "message_id", "<abc@example.org>");
    assert_int_equal(redis_int("ZCARD sy:{unit}:sched"), 4);

    /* Running it again changes nothing. */
    assert_int_equal(intake_reconcile(fx.in, &err), SY_OK);
    assert_int_equal(redis_int("ZCARD sy:{unit}:sched"), 4);

    /* q2's file disappears: its record is marked missing. */
    assert_int_equal(spool_remove(fx.sp, q2, &err), SY_OK);
    assert_int_equal(intake_reconcile(fx.in, &err), SY_OK);
    (void) snprintf(key, sizeof(key), "sy:{unit}:msg:%s", q2);
    state_s = redis_hget(key, "state");
    assert_non_null(state_s);
    assert_string_equal(state_s, "missing");
    free(state_s);
    assert_int_equal(redis_int("ZCARD sy:{unit}:sched"), 2);
    env_free(&e);
}

/* redis_zscore - the score of member qid:idx in set, as a new string, or NULL */
static char *redis_zscore(const char *set, const char *qid, unsigned idx)
{
    redisContext *c = redisConnectUnix(fx.sock);
    redisReply *r;
    char *v = NULL;

    assert_non_null(c);
    r = redisCommand(c, "ZSCORE sy:{unit}:%s %s:%u", set, qid, idx);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_STRING)
        v = strdup(r->str);
    freeReplyObject(r);
    redisFree(c);
    return v;
}

static void assert_rcpt(const char *qid, unsigned idx, const char *field, const char *want)
{
    char key[128];
    char *got;

    (void) snprintf(key, sizeof(key), "sy:{unit}:rcpt:%s:%u", qid, idx);
    got = redis_hget(key, field);
    if (want == NULL) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void assert_zscore(const char *set, const char *qid, unsigned idx, const char *want)
{
    char *got = redis_zscore(set, qid, idx);

    if (want == NULL) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

/* A recipient a hold rule holds is inserted held with its rule (held_by,
 * held score = the rule's end) by the one INSERT script; so is one that
 * reconciliation re-indexes. */
static void test_hold_rule_at_commit(void **state)
{
    struct envelope e;
    struct sy_err err;
    struct hold_rule r;
    struct queue *q;
    uint64_t id;
    char qid[QID_SIZE], idtext[32];

    (void) state;
    hold_rule_init(&r);
    assert_int_equal(hold_rule_set(&r, NULL, "r1@example.net", NULL, 0, &err), SY_OK);
    q = queue_get(fx.qp, &err);
    assert_non_null(q);
    assert_int_equal(queue_hold_rule_add(q, &r, &id, NULL, &err), SY_OK);
    queue_put(fx.qp, q);
    (void) snprintf(idtext, sizeof(idtext), "%llu", (unsigned long long) id);

    make_env(&e, 2);
    assert_int_equal(commit(&e, msg_a, 64, qid, &err), SY_OK);
    assert_rcpt(qid, 0, "state", "queued");
    assert_rcpt(qid, 0, "held_by", NULL);
    assert_zscore("held", qid, 0, NULL);
    assert_rcpt(qid, 1, "state", "held");
    assert_rcpt(qid, 1, "held_by", idtext);
    assert_zscore("held", qid, 1, "inf");
    assert_zscore("sched", qid, 1, NULL);

    /* Re-indexed from the spool: held by the same rule again. */
    redis_flushall();
    q = queue_get(fx.qp, &err);
    assert_non_null(q);
    assert_int_equal(queue_hold_rule_add(q, &r, &id, NULL, &err), SY_OK);
    queue_put(fx.qp, q);
    (void) snprintf(idtext, sizeof(idtext), "%llu", (unsigned long long) id);
    assert_int_equal(intake_reconcile(fx.in, &err), SY_OK);
    assert_rcpt(qid, 0, "state", "queued");
    assert_rcpt(qid, 1, "held_by", idtext);
    assert_zscore("held", qid, 1, "inf");
    env_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_retry, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_redis_down, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_check_mail_space, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_reconcile, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_hold_rule_at_commit, test_setup, test_teardown),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
