/* test_queue.c - the Redis queue index against a real redis-server
 *
 * A private redis-server (UNIX socket in a mkdtemp directory, password,
 * no persistence) is started for the group and killed by PID at the end;
 * every test starts from an empty database. The failure paths use the real
 * server too (SIGSTOP for a hung server, SIGKILL for a dead one,
 * maxmemory 1 for -OOM), and a scripted fake server for replies a real
 * Redis never sends (research/reliability.md B6). A second hiredis
 * connection inspects the keys directly, so the tests check what is
 * stored, not only what queue.c reads back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gateway/queue.h"
#include "gateway/util/clock.h"
#include "gateway/util/xalloc.h"
#include "tests/unit/support/redis_server.h"

#define TEST_PASSWORD "t0p-s3cret-redis-pw"
#define TEST_DB 3
#define TEST_NODE "test-node"
#define TEST_PREFIX "sy"
#define KEY(s) TEST_PREFIX ":{" TEST_NODE "}:" s

static char tdir[64];
static char sock_path[128];
static char fake_path[128];
static pid_t redis_pid;
static struct cfg_redis cfg;
static redisContext *rawc;

/* ---- the real server ---------------------------------------------------- */

static void raw_close(void)
{
    if (rawc != NULL)
        redisFree(rawc);
    rawc = NULL;
}

/* raw_open - the inspection connection (authenticated, on TEST_DB) */
static int raw_open(void)
{
    redisReply *r;
    int ok;

    raw_close();
    rawc = redisConnectUnix(sock_path);
    if (rawc == NULL || rawc->err != 0) {
        raw_close();
        return -1;
    }
    r = redisCommand(rawc, "AUTH %s", TEST_PASSWORD);
    ok = r != NULL && r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    r = ok ? redisCommand(rawc, "SELECT %d", TEST_DB) : NULL;
    ok = r != NULL && r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    if (!ok) {
        raw_close();
        return -1;
    }
    return 0;
}

static redisReply *raw(const char *fmt, ...)
{
    redisReply *r;
    va_list ap;

    if (rawc == NULL)
        assert_int_equal(raw_open(), 0);
    va_start(ap, fmt);
    r = redisvCommand(rawc, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    return r;
}

/* raw_str - a string reply as a new string (free()), NULL for nil */
static char *raw_str(const char *fmt, ...)
{
    redisReply *r;
    char *s = NULL;
    va_list ap;

    if (rawc == NULL)
        assert_int_equal(raw_open(), 0);
    va_start(ap, fmt);
    r = redisvCommand(rawc, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
        s = xmemdup0(r->str, r->len);
    else
        assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    return s;
}

static long long raw_int(const char *fmt, ...)
{
    redisReply *r;
    long long v;
    va_list ap;

    if (rawc == NULL)
        assert_int_equal(raw_open(), 0);
    va_start(ap, fmt);
    r = redisvCommand(rawc, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    v = r->integer;
    freeReplyObject(r);
    return v;
}

/* raw_info - one numeric field of INFO section */
static long long raw_info(const char *section, const char *field)
{
    char *s = raw_str("INFO %s", section), *p;
    char pat[64];
    long long v;

    assert_non_null(s);
    (void) snprintf(pat, sizeof(pat), "\r\n%s:", field);
    p = strstr(s, pat);
    assert_non_null(p);
    v = strtoll(p + strlen(pat), NULL, 10);
    free(s);
    return v;
}

/* assert_str - equal strings, both possibly NULL; frees got */
static void assert_str(char *got, const char *want)
{
    if (want == NULL)
        assert_null(got);
    else {
        assert_non_null(got);
        assert_string_equal(got, want);
    }
    free(got);
}

static void redis_start(void)
{
    redis_pid = test_redis_start(tdir, sock_path, TEST_PASSWORD, 10000);
    if (redis_pid < 0)
        fail_msg("redis-server did not start (see %s/redis.log)", tdir);
    assert_int_equal(raw_open(), 0);
}

static void redis_kill(void)
{
    test_redis_kill(redis_pid);
    redis_pid = 0;
    raw_close();
}

static int group_setup(void **state)
{
    (void) state;
    (void) signal(SIGPIPE, SIG_IGN);
    (void) snprintf(tdir, sizeof(tdir), "/tmp/sy-test-queue-XXXXXX");
    if (mkdtemp(tdir) == NULL)
        return -1;
    (void) snprintf(sock_path, sizeof(sock_path), "%s/redis.sock", tdir);
    (void) snprintf(fake_path, sizeof(fake_path), "%s/fake.sock", tdir);
    memset(&cfg, 0, sizeof(cfg));
    cfg.address = sock_path;
    cfg.addr.is_unix = true;
    cfg.addr.path = sock_path;
    cfg.password = (char *) TEST_PASSWORD;
    cfg.db = TEST_DB;
    cfg.prefix = (char *) TEST_PREFIX;
    cfg.connect_timeout_ms = 2000;
    cfg.command_timeout_ms = 2000;
    redis_start();
    return 0;
}

static int group_teardown(void **state)
{
    char path[192];

    (void) state;
    redis_kill();
    (void) snprintf(path, sizeof(path), "%s/redis.log", tdir);
    (void) unlink(path);
    (void) unlink(sock_path);
    (void) unlink(fake_path);
    (void) rmdir(tdir);
    return 0;
}

/* Each test: an empty database and a fresh pool in *state. */
static int test_setup(void **state)
{
    redisReply *r;

    if (rawc == NULL && raw_open() != 0)
        return -1;
    r = raw("FLUSHDB");
    freeReplyObject(r);
    r = raw("CONFIG SET maxmemory 0");
    freeReplyObject(r);
    *state = queue_pool_new(&cfg, TEST_NODE);
    return 0;
}

static int test_teardown(void **state)
{
    queue_pool_free(*state);
    return 0;
}

/* ---- envelopes and ids -------------------------------------------------- */

/* make_qid - the n-th id of a sorted series (valid Crockford base32) */
static void make_qid(unsigned n, char out[QID_SIZE])
{
    static const char digits[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

    (void) snprintf(out, QID_SIZE, "0PQ5X8G3C1R%c%c%c%c", digits[(n >> 15) & 31],
                    digits[(n >> 10) & 31], digits[(n >> 5) & 31], digits[n & 31]);
    assert_true(qid_valid(out));
}

/* make_env - an envelope with nrcpt recipients; full: every optional field */
static void make_env(struct envelope *e, size_t nrcpt, int full)
{
    env_init(e);
    env_set(&e->sender, "sender@example.org");
    e->arrival_us = INT64_C(1700000000123456);
    env_set(&e->listener, "lmtp0");
    e->size = 1234;
    if (full) {
        e->size_declared = 2041;
        env_set(&e->client_addr, "192.0.2.7");
        env_set(&e->client_name, "mta.example");
        env_set(&e->mta_qid, "9B1C2D");
        env_set(&e->envid, "env-1");
        e->ret = ENV_RET_FULL;
        e->body = ENV_BODY_8BITMIME;
        e->flags = ENV_F_SMTPUTF8 | ENV_F_8BIT;
        e->hold_until = 1700000100;
        env_set(&e->message_id, "<x@example.org>");
        env_set(&e->auth_user, "alice");
    }
    for (size_t i = 0; i < nrcpt; i++) {
        struct env_rcpt r;
        char addr[64];

        memset(&r, 0, sizeof(r));
        (void) snprintf(addr, sizeof(addr), "rcpt%zu@example.net", i);
        r.addr = xstrdup(addr);
        if (full) {
            r.notify = ENV_NOTIFY_SUCCESS | ENV_NOTIFY_FAILURE;
            r.orcpt_type = xstrdup("rfc822");
            (void) snprintf(addr, sizeof(addr), "orig%zu@example.net", i);
            r.orcpt_addr = xstrdup(addr);
        }
        env_add_rcpt(e, &r);
    }
}

/* insert_msg - one message of nrcpt minimal recipients */
static void insert_msg(struct queue *q, const char *qid, size_t nrcpt,
                       const unsigned char *held, int64_t next_ms)
{
    struct envelope e;
    struct sy_err err;

    make_env(&e, nrcpt, 0);
    assert_int_equal(queue_insert(q, qid, &e, held, next_ms, &err), SY_OK);
    env_free(&e);
}

static void assert_err(const struct sy_err *err, int code, const char *substr)
{
    assert_int_equal(err->code, code);
    assert_string_equal(sy_err_enh(err), "4.3.0");
    if (substr != NULL && strstr(err->text, substr) == NULL)
        fail_msg("error text \"%s\" lacks \"%s\"", err->text, substr);
}

/* ---- insert / show ------------------------------------------------------ */

struct field_case {
    const char *key;        /* KEY() suffix after the qid's key */
    const char *field;
    const char *full;       /* value with every optional field; NULL = absent */
    const char *minimal;    /* value with none */
};

static const struct field_case field_cases[] = {
    { "msg", "sender", "sender@example.org", "sender@example.org" },
    { "msg", "arrival_us", "1700000000123456", "1700000000123456" },
    { "msg", "size", "1234", "1234" },
    { "msg", "size_declared", "2041", NULL },
    { "msg", "nrcpt", "2", "2" },
    { "msg", "listener", "lmtp0", "lmtp0" },
    { "msg", "client_addr", "192.0.2.7", NULL },
    { "msg", "client_name", "mta.example", NULL },
    { "msg", "mta_qid", "9B1C2D", NULL },
    { "msg", "envid", "env-1", NULL },
    { "msg", "ret", "FULL", NULL },
    { "msg", "body", "8BITMIME", NULL },
    { "msg", "flags", "5", NULL },
    { "msg", "hold_until", "1700000100", NULL },
    { "msg", "message_id", "<x@example.org>", NULL },
    { "msg", "auth_user", "alice", NULL },
    { "msg", "state", "active", "active" },
    { "msg", "nfinal", NULL, NULL },
    { "rcpt0", "addr", "rcpt0@example.net", "rcpt0@example.net" },
    { "rcpt1", "addr", "rcpt1@example.net", "rcpt1@example.net" },
    { "rcpt0", "state", "queued", "queued" },
    { "rcpt0", "next_ms", "1700000001000", "1700000001000" },
    { "rcpt0", "notify", "3", NULL },
    { "rcpt0", "orcpt_type", "rfc822", NULL },
    { "rcpt1", "orcpt_addr", "orig1@example.net", NULL },
    { "rcpt0", "attempts", NULL, NULL },
    { "rcpt0", "last_reply", NULL, NULL },
};

static void test_insert_show(void **state)
{
    struct queue_pool *p = *state;
    struct sy_err err;
    struct queue *q = queue_get(p, &err);

    assert_non_null(q);
    for (int full = 1; full >= 0; full--) {
        struct queue_msg_info m;
        struct envelope e;
        char qid[QID_SIZE];

        make_qid((unsigned) full, qid);
        make_env(&e, 2, full);
        assert_int_equal(queue_insert(q, qid, &e, NULL, INT64_C(1700000001000), &err), SY_OK);
        env_free(&e);

        for (size_t i = 0; i < sizeof(field_cases) / sizeof(field_cases[0]); i++) {
            const struct field_case *c = &field_cases[i];
            const char *want = full ? c->full : c->minimal;

            print_message("insert %s: %s %s\n", full ? "full" : "minimal", c->key, c->field);
            if (strcmp(c->key, "msg") == 0)
                assert_str(raw_str("HGET " KEY("msg:%s") " %s", qid, c->field), want);
            else
                assert_str(raw_str("HGET " KEY("rcpt:%s:%s") " %s", qid, c->key + 4, c->field), want);
        }
        assert_str(raw_str("ZSCORE " KEY("sched") " %s:0", qid), "1700000001000");
        assert_str(raw_str("ZSCORE " KEY("sched") " %s:1", qid), "1700000001000");
        assert_str(raw_str("ZSCORE " KEY("index") " %s", qid), "0");
        assert_int_equal(raw_int("ZCARD " KEY("held")), 0);
        assert_int_equal(queue_exists(q, qid, &err), 1);

        memset(&m, 0, sizeof(m));
        assert_int_equal(queue_show(q, qid, &m, &err), SY_OK);
        assert_string_equal(m.qid, qid);
        assert_string_equal(m.sender, "sender@example.org");
        assert_string_equal(m.listener, "lmtp0");
        if (full)
            assert_string_equal(m.mta_qid, "9B1C2D");
        else
            assert_null(m.mta_qid);
        assert_string_equal(m.state, "active");
        assert_int_equal(m.arrival_us, INT64_C(1700000000123456));
        assert_int_equal(m.size, 1234);
        assert_int_equal(m.nrcpt, 2);
        for (size_t i = 0; i < 2; i++) {
            char addr[32];

            (void) snprintf(addr, sizeof(addr), "rcpt%zu@example.net", i);
            assert_string_equal(m.rcpts[i].addr, addr);
            assert_int_equal(m.rcpts[i].state, QUEUE_QUEUED);
            assert_int_equal(m.rcpts[i].attempts, 0);
            assert_int_equal(m.rcpts[i].next_ms, INT64_C(1700000001000));
            assert_null(m.rcpts[i].last_reply);
        }
        queue_msg_free(&m);
        assert_null(m.rcpts);
    }
    {
        struct queue_msg_info m;
        char qid[QID_SIZE];

        make_qid(77, qid);
        memset(&m, 0, sizeof(m));
        assert_int_equal(queue_exists(q, qid, &err), 0);
        assert_int_equal(queue_show(q, qid, &m, &err), SY_ENOTFOUND);
        assert_null(m.sender);
    }
    queue_put(p, q);
}

static void test_insert_idempotent(void **state)
{
    struct queue_pool *p = *state;
    struct envelope e;
    struct sy_err err;
    struct queue *q = queue_get(p, &err);
    char qid[QID_SIZE];
    long long keys;

    assert_non_null(q);
    make_qid(1, qid);
    insert_msg(q, qid, 2, NULL, 1000);
    keys = raw_int("DBSIZE");
    /* A repeat (the first reply was lost) with other data changes nothing. */
    make_env(&e, 3, 1);
    env_set(&e.sender, "other@example.org");
    assert_int_equal(queue_insert(q, qid, &e, NULL, 5000, &err), SY_OK);
    env_free(&e);
    assert_int_equal(raw_int("DBSIZE"), keys);
    assert_str(raw_str("HGET " KEY("msg:%s") " sender", qid), "sender@example.org");
    assert_str(raw_str("HGET " KEY("msg:%s") " nrcpt", qid), "2");
    assert_int_equal(raw_int("ZCARD " KEY("sched")), 2);
    assert_str(raw_str("ZSCORE " KEY("sched") " %s:0", qid), "1000");
    assert_int_equal(raw_int("EXISTS " KEY("rcpt:%s:2"), qid), 0);
    queue_put(p, q);
}

/* A retry of a message (same digest) under a new id writes nothing and
 * names the first id; the digest is remembered for its lifetime only. */
static void test_insert_dedup(void **state)
{
    static const char dg[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    struct queue_pool *p = *state;
    struct envelope e;
    struct sy_err err;
    struct queue *q = queue_get(p, &err);
    char first[QID_SIZE], second[QID_SIZE], dup[QID_SIZE];
    long long keys;

    assert_non_null(q);
    make_qid(1, first);
    make_qid(2, second);
    make_env(&e, 2, 0);
    assert_int_equal(queue_insert_dedup(q, first, &e, NULL, 1000, dg, 3600, dup, &err), SY_OK);
    assert_string_equal(dup, "");
    assert_str(raw_str("GET " KEY("dedup:%s"), dg), first);
    assert_true(raw_int("TTL " KEY("dedup:%s"), dg) > 3500);
    keys = raw_int("DBSIZE");

    /* The MTA's retry under a new queue id: nothing new in Redis. */
    assert_int_equal(queue_insert_dedup(q, second, &e, NULL, 1000, dg, 3600, dup, &err), SY_OK);
    assert_string_equal(dup, first);
    assert_int_equal(raw_int("DBSIZE"), keys);
    assert_int_equal(raw_int("EXISTS " KEY("msg:%s"), second), 0);
    assert_int_equal(raw_int("ZCARD " KEY("sched")), 2);

    /* The same id again is the idempotent repeat, not a duplicate. */
    assert_int_equal(queue_insert_dedup(q, first, &e, NULL, 1000, dg, 3600, dup, &err), SY_OK);
    assert_string_equal(dup, "");

    /* Once the digest expired, the same bytes are a new message. */
    assert_int_equal(raw_int("DEL " KEY("dedup:%s"), dg), 1);
    assert_int_equal(queue_insert_dedup(q, second, &e, NULL, 1000, dg, 3600, dup, &err), SY_OK);
    assert_string_equal(dup, "");
    assert_int_equal(raw_int("EXISTS " KEY("msg:%s"), second), 1);

    /* A malformed digest is refused before Redis sees it. */
    assert_int_equal(queue_insert_dedup(q, first, &e, NULL, 1000, "a{b}", 3600, dup, &err), SY_ESYNTAX);
    assert_int_equal(queue_insert_dedup(q, first, &e, NULL, 1000, dg, 0, dup, &err), SY_ESYNTAX);
    env_free(&e);
    queue_put(p, q);
}

/* finish - every recipient of qid delivered at at_ms */
static void finish(struct queue *q, const char *qid, unsigned nrcpt, int64_t at_ms)
{
    struct sy_err err;

    for (unsigned i = 0; i < nrcpt; i++) {
        struct queue_result res = { .state = QUEUE_DELIVERED, .at_ms = at_ms,
                                    .transport = "capture", .reply = "250 ok" };
        int all_final = -1;

        assert_int_equal(queue_record_result(q, qid, i, &res, &all_final, &err), SY_OK);
        assert_int_equal(all_final, i + 1 == nrcpt);
    }
}

/* Retention: finished messages older than the cut are deleted whole (hash,
 * every recipient, the done entry); newer ones and active ones stay. */
static void test_purge_done(void **state)
{
    struct queue_pool *p = *state;
    struct sy_err err;
    struct queue *q = queue_get(p, &err);
    char old1[QID_SIZE], old2[QID_SIZE], recent[QID_SIZE], active[QID_SIZE];
    size_t n = 99;

    assert_non_null(q);
    make_qid(21, old1);
    make_qid(22, old2);
    make_qid(23, recent);
    make_qid(24, active);
    insert_msg(q, old1, 2, NULL, 1000);
    insert_msg(q, old2, 3, NULL, 1000);
    insert_msg(q, recent, 1, NULL, 1000);
    insert_msg(q, active, 2, NULL, 1000);
    finish(q, old1, 2, 5000);
    finish(q, old2, 3, 6000);
    finish(q, recent, 1, 9000);

    assert_int_equal(queue_purge_done(q, 4999, 100, &n, &err), SY_OK);
    assert_int_equal(n, 0);
    /* a batch of one: the oldest goes first */
    assert_int_equal(queue_purge_done(q, 8000, 1, &n, &err), SY_OK);
    assert_int_equal(n, 1);
    assert_int_equal(raw_int("EXISTS " KEY("msg:%s"), old1), 0);
    assert_int_equal(raw_int("EXISTS " KEY("msg:%s"), old2), 1);
    assert_int_equal(queue_purge_done(q, 8000, 100, &n, &err), SY_OK);
    assert_int_equal(n, 1);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(raw_int("EXISTS " KEY("rcpt:%s:%u"), old2, i), 0);
    assert_int_equal(raw_int("EXISTS " KEY("msg:%s"), old2), 0);
    assert_int_equal(raw_int("EXISTS " KEY("msg:%s"), recent), 1);
    assert_int_equal(raw_int("EXISTS " KEY("rcpt:%s:0"), recent), 1);
    assert_int_equal(raw_int("ZCARD " KEY("done")), 1);
    /* an active message is never touched, whatever the cut */
    assert_int_equal(queue_purge_done(q, INT64_MAX, 100, &n, &err), SY_OK);
    assert_int_equal(n, 1);
    assert_int_equal(raw_int("EXISTS " KEY("msg:%s"), active), 1);
    assert_int_equal(raw_int("EXISTS " KEY("rcpt:%s:1"), active), 1);
    assert_int_equal(raw_int("ZCARD " KEY("done")), 0);
    queue_put(p, q);
}

static void test_held(void **state)
{
    static const unsigned char held[3] = { 0, 1, 0 };
    struct queue_pool *p = *state;
    struct queue_claim claims[8];
    struct queue_msg_info m;
    struct sy_err err;
    struct queue *q = queue_get(p, &err);
    char qid[QID_SIZE];
    redisReply *r;
    size_t n;

    assert_non_null(q);
    make_qid(2, qid);
    insert_msg(q, qid, 3, held, 1000);
    assert_str(raw_str("ZSCORE " KEY("held") " %s:1", qid), "0");
    assert_str(raw_str("ZSCORE " KEY("sched") " %s:1", qid), NULL);
    assert_int_equal(raw_int("ZCARD " KEY("sched")), 2);
    assert_str(raw_str("HGET " KEY("rcpt:%s:1") " state", qid), "held");

    /* Stale schedule entries (a held recipient, one that does not exist,
     * one whose message record is gone, junk) are dropped by the claim,
     * never handed out. */
    r = raw("ZADD " KEY("sched") " 5 %s:1 5 %s:7 5 0PQ5X8G3C1RZZZZ:0 5 junk", qid, qid);
    freeReplyObject(r);
    r = raw("HSET " KEY("rcpt:0PQ5X8G3C1RZZZZ:0") " state queued addr x@example.net");
    freeReplyObject(r);
    assert_int_equal(queue_claim_due(q, INT64_C(1) << 50, 1000, claims, 8, &n, &err), SY_OK);
    assert_int_equal(n, 2);
    assert_int_equal(claims[0].idx, 0);
    assert_int_equal(claims[1].idx, 2);
    assert_int_equal(raw_int("ZCARD " KEY("sched")), 2);
    assert_str(raw_str("ZSCORE " KEY("held") " %s:1", qid), "0");

    memset(&m, 0, sizeof(m));
    assert_int_equal(queue_show(q, qid, &m, &err), SY_OK);
    assert_int_equal(m.rcpts[1].state, QUEUE_HELD);
    assert_int_equal(m.rcpts[1].next_ms, 0);
    queue_msg_free(&m);
    queue_put(p, q);
}

/* ---- claim and lease ---------------------------------------------------- */

struct claim_step {
    const char *name;
    int64_t now, lease;
    size_t max;
    size_t n;               /* recipients claimed */
    int first_idx;          /* idx of the first claim */
};

static const struct claim_step claim_steps[] = {
    { "not yet due", 9999, 500, 10, 0, -1 },
    { "due, max 1", 10000, 500, 1, 1, 0 },
    { "the other one", 10000, 500, 10, 1, 1 },
    { "leased: not again before the lease ends", 10499, 500, 10, 0, -1 },
    { "lease over: both come back", 10500, 500, 10, 2, 0 },
    { "max 0 claims nothing", 99999, 500, 0, 0, -1 },
    { "leased again", 10999, 500, 10, 0, -1 },
};

static void test_claim_lease(void **state)
{
    struct queue_pool *p = *state;
    struct sy_err err;
    struct queue *q = queue_get(p, &err);
    char qid[QID_SIZE];

    assert_non_null(q);
    make_qid(3, qid);
    insert_msg(q, qid, 2, NULL, 10000);
    for (size_t i = 0; i < sizeof(claim_steps) / sizeof(claim_steps[0]); i++) {
        const struct claim_step *s = &claim_steps[i];
        struct queue_claim claims[10];
        size_t n = 99;

        print_message("claim: %s\n", s->name);
        assert_int_equal(queue_claim_due(q, s->now, s->lease, claims, s->max, &n, &err), SY_OK);
        assert_int_equal(n, s->n);
        for (size_t k = 0; k < n; k++) {
            char score[32];

            assert_string_equal(claims[k].qid, qid);
            assert_int_equal(claims[k].attempts, 0);
            (void) snprintf(score, sizeof(score), "%lld", (long long) (s->now + s->lease));
            assert_str(raw_str("ZSCORE " KEY("sched") " %s:%u", qid, claims[k].idx), score);
        }
        if (n > 0)
            assert_int_equal(claims[0].idx, s->first_idx);
    }
    queue_put(p, q);
}

/* ---- lease fencing: claim tokens, renewal, stale results ---------------- */

/* A worker whose lease ran out during its attempt (issue 3, review 1):
 * another worker claims the recipient again; the first one's late
 * deferral must neither overwrite the new lease nor count an attempt,
 * and a renewal tells the first one the recipient is not its own. */
static void test_lease_fencing(void **state)
{
    struct queue_pool *p = *state;
    struct queue_result res = { .state = QUEUE_QUEUED, .next_ms = 90000, .at_ms = 5000,
                                .transport = "relay", .reply = "451 4.4.2 timeout" };
    struct queue_claim a[4], b[4];
    unsigned char kept[4];
    struct sy_err err;
    struct queue *q = queue_get(p, &err);
    char qid[QID_SIZE];
    size_t n;
    int all_final = 0;

    assert_non_null(q);
    make_qid(7, qid);
    insert_msg(q, qid, 2, NULL, 1000);
    /* worker A claims both, lease until 1000 + 100 */
    assert_int_equal(queue_claim_due(q, 1000, 100, a, 4, &n, &err), SY_OK);
    assert_int_equal(n, 2);
    assert_true(a[0].token > 0);
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " lease_ms", qid), "1100");
    /* A renews before its attempt: score and lease_ms move */
    assert_int_equal(queue_lease_renew(q, a, 2, 1500, kept, &err), SY_OK);
    assert_int_equal(kept[0], 1);
    assert_int_equal(kept[1], 1);
    assert_str(raw_str("ZSCORE " KEY("sched") " %s:0", qid), "1500");
    assert_str(raw_str("HGET " KEY("rcpt:%s:1") " lease_ms", qid), "1500");

    /* A's lease runs out; worker B claims recipient 0 (and 1) again */
    assert_int_equal(queue_claim_due(q, 1600, 1000, b, 4, &n, &err), SY_OK);
    assert_int_equal(n, 2);
    assert_true(b[0].token != a[0].token);
    /* A's renewal: not its own any more */
    assert_int_equal(queue_lease_renew(q, a, 2, 1700, kept, &err), SY_OK);
    assert_int_equal(kept[0], 0);
    assert_int_equal(kept[1], 0);
    assert_str(raw_str("ZSCORE " KEY("sched") " %s:0", qid), "2600");

    /* A's late deferral is ignored: B's lease, no attempt counted */
    res.token = a[0].token;
    assert_int_equal(queue_record_result(q, qid, 0, &res, &all_final, &err), QUEUE_STALE);
    assert_str(raw_str("ZSCORE " KEY("sched") " %s:0", qid), "2600");
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " attempts", qid), NULL);
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " last_reply", qid), NULL);
    assert_int_equal(raw_int("LLEN " KEY("hist:%s:0"), qid), 0);

    /* B's result counts, ends the lease; a repeat of it changes nothing */
    res.token = b[0].token;
    res.state = QUEUE_DELIVERED;
    res.reply = "250 ok";
    assert_int_equal(queue_record_result(q, qid, 0, &res, &all_final, &err), SY_OK);
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " state", qid), "delivered");
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " lease_ms", qid), NULL);
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " attempts", qid), "1");
    assert_int_equal(queue_record_result(q, qid, 0, &res, &all_final, &err), SY_OK);
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " attempts", qid), "1");
    /* A's late success for the final recipient: still stale */
    res.token = a[0].token;
    assert_int_equal(queue_record_result(q, qid, 0, &res, &all_final, &err), QUEUE_STALE);

    /* an unfenced result (token 0) is applied as before */
    res.token = 0;
    res.state = QUEUE_QUEUED;
    res.at_ms = 6000;
    assert_int_equal(queue_record_result(q, qid, 1, &res, &all_final, &err), SY_OK);
    assert_str(raw_str("HGET " KEY("rcpt:%s:1") " attempts", qid), "1");

    /* a held recipient: renewal refuses and drops its lease */
    assert_int_equal(queue_claim_due(q, 100000, 1000, b, 4, &n, &err), SY_OK);
    assert_int_equal(n, 1);
    assert_int_equal(b[0].idx, 1);
    freeReplyObject(raw("HSET " KEY("rcpt:%s:1") " state held", qid));
    assert_int_equal(queue_lease_renew(q, b, 1, 100500, kept, &err), SY_OK);
    assert_int_equal(kept[0], 0);
    assert_str(raw_str("HGET " KEY("rcpt:%s:1") " lease_ms", qid), NULL);

    /* a damaged claim counter restarts at 1 rather than failing the batch */
    freeReplyObject(raw("HSET " KEY("rcpt:%s:1") " state queued claim junk", qid));
    freeReplyObject(raw("ZADD " KEY("sched") " 5 %s:1", qid));
    assert_int_equal(queue_claim_due(q, 200000, 1000, b, 4, &n, &err), SY_OK);
    assert_int_equal(n, 1);
    assert_int_equal(b[0].token, 1);

    /* bad arguments */
    b[0].token = 0;
    assert_int_equal(queue_lease_renew(q, b, 1, 1, kept, &err), SY_ESYNTAX);
    queue_put(p, q);
}

/* A delivery whose "relayed"/"delivered" DSN could not be queued (review
 * 3): recorded with dsn_pending, it stays queued with history "delivered"
 * and one attempt; the claim hands the flag back; the later results
 * count no attempt, and "delivered" makes it final. */
static void test_dsn_pending(void **state)
{
    struct queue_pool *p = *state;
    struct queue_attempt h = { .at_ms = 5000, .transport = "relay", .route = "global[0]",
                               .remote_host = "", .remote_addr = "", .tls = "", .reply = "250 ok" };
    struct queue_result res = { .state = QUEUE_QUEUED, .next_ms = 65000, .at_ms = 5000,
                                .transport = "relay", .reply = "250 ok", .hist = &h,
                                .dsn_pending = QUEUE_DSN_RELAYED };
    struct queue_claim c[2];
    struct queue_msg_info m;
    struct sy_err err;
    struct queue *q = queue_get(p, &err);
    char qid[QID_SIZE];
    size_t n;
    int all_final = 0;

    assert_non_null(q);
    make_qid(8, qid);
    insert_msg(q, qid, 1, NULL, 1000);
    assert_int_equal(queue_claim_due(q, 1000, 100, c, 2, &n, &err), SY_OK);
    assert_int_equal(n, 1);
    assert_int_equal(c[0].dsn_pending, QUEUE_DSN_NONE);
    res.token = c[0].token;
    assert_int_equal(queue_record_result(q, qid, 0, &res, &all_final, &err), SY_OK);
    assert_int_equal(all_final, 0);
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " dsn_pending", qid), "relayed");
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " state", qid), "queued");
    assert_str(raw_str("ZSCORE " KEY("sched") " %s:0", qid), "65000");
    memset(&m, 0, sizeof(m));
    assert_int_equal(queue_show(q, qid, &m, &err), SY_OK);
    assert_int_equal(m.rcpts[0].attempts, 1);
    assert_int_equal(m.rcpts[0].nhist, 1);
    assert_string_equal(m.rcpts[0].hist[0].state, "delivered");
    queue_msg_free(&m);

    /* the DSN fails again: rescheduled, no attempt, no history */
    assert_int_equal(queue_claim_due(q, 70000, 100, c, 2, &n, &err), SY_OK);
    assert_int_equal(n, 1);
    assert_int_equal(c[0].dsn_pending, QUEUE_DSN_RELAYED);
    res.token = c[0].token;
    res.at_ms = 70001;
    res.next_ms = 130000;
    res.reply = "2.0.0 delivered earlier";
    assert_int_equal(queue_record_result(q, qid, 0, &res, &all_final, &err), SY_OK);
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " attempts", qid), "1");
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " last_reply", qid), "250 ok");
    assert_int_equal(raw_int("LLEN " KEY("hist:%s:0"), qid), 1);
    assert_str(raw_str("ZSCORE " KEY("sched") " %s:0", qid), "130000");

    /* the DSN is queued: delivered, final, flag gone, still one attempt */
    assert_int_equal(queue_claim_due(q, 130000, 100, c, 2, &n, &err), SY_OK);
    assert_int_equal(n, 1);
    res.token = c[0].token;
    res.state = QUEUE_DELIVERED;
    res.dsn_pending = QUEUE_DSN_NONE;
    res.at_ms = 130001;
    assert_int_equal(queue_record_result(q, qid, 0, &res, &all_final, &err), SY_OK);
    assert_int_equal(all_final, 1);
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " state", qid), "delivered");
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " dsn_pending", qid), NULL);
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " attempts", qid), "1");
    assert_int_equal(raw_int("LLEN " KEY("hist:%s:0"), qid), 1);

    /* dsn_pending only goes with a counted deferral */
    res.state = QUEUE_DELIVERED;
    res.dsn_pending = QUEUE_DSN_DELIVERED;
    assert_int_equal(queue_record_result(q, qid, 0, &res, NULL, &err), SY_ESYNTAX);
    res.state = QUEUE_QUEUED;
    res.not_attempted = 1;
    assert_int_equal(queue_record_result(q, qid, 0, &res, NULL, &err), SY_ESYNTAX);
    queue_put(p, q);
}

/* ---- whole messages per claim (queue_claim_due_msg) --------------------- */

/* count_claims - how many of c[0..n) belong to qid; each idx seen once */
static size_t count_claims(const struct queue_claim *c, size_t n, const char *qid, size_t nrcpt)
{
    unsigned char seen[512];
    size_t k = 0;

    assert_true(nrcpt <= sizeof(seen));
    memset(seen, 0, sizeof(seen));
    for (size_t i = 0; i < n; i++) {
        if (strcmp(c[i].qid, qid) != 0)
            continue;
        assert_true(c[i].idx < nrcpt);
        assert_int_equal(seen[c[i].idx], 0);
        seen[c[i].idx] = 1;
        k++;
    }
    return k;
}

static void test_claim_whole_message(void **state)
{
    struct queue_pool *p = *state;
    struct sy_err err;
    struct queue *q = queue_get(p, &err);
    struct queue_claim *c = calloc(16 + 1000, sizeof(*c));
    char early[QID_SIZE], big[QID_SIZE], next[QID_SIZE], huge[QID_SIZE], tail[QID_SIZE];
    char exact[QID_SIZE], after[QID_SIZE];
    size_t n;
    redisReply *r;

    assert_non_null(q);
    assert_non_null(c);
    /* 5 recipients due first, then a message of 40 that the batch of 16
     * cuts after 11, then another message due at the same time. */
    make_qid(10, early);
    make_qid(11, big);
    make_qid(12, next);
    insert_msg(q, early, 5, NULL, 500);
    insert_msg(q, big, 40, NULL, 1000);
    insert_msg(q, next, 3, NULL, 1000);
    /* msg_max 0 is queue_claim_due(): the batch ends inside the message. */
    assert_int_equal(queue_claim_due_msg(q, 2000, 100, c, 16, 0, &n, &err), SY_OK);
    assert_int_equal(n, 16);
    assert_int_equal(count_claims(c, n, big, 40), 11);
    r = raw("DEL " KEY("sched"));
    freeReplyObject(r);
    r = raw("DEL " KEY("msg:%s"), early);
    freeReplyObject(r);
    r = raw("DEL " KEY("msg:%s"), big);
    freeReplyObject(r);
    r = raw("DEL " KEY("msg:%s"), next);
    freeReplyObject(r);
    insert_msg(q, early, 5, NULL, 500);
    insert_msg(q, big, 40, NULL, 1000);
    insert_msg(q, next, 3, NULL, 1000);

    /* With msg_max the whole message of 40 comes in one claim, and
     * nothing of the next one. */
    assert_int_equal(queue_claim_due_msg(q, 2000, 100, c, 16, 1000, &n, &err), SY_OK);
    assert_int_equal(n, 45);
    assert_int_equal(count_claims(c, n, early, 5), 5);
    assert_int_equal(count_claims(c, n, big, 40), 40);
    assert_int_equal(count_claims(c, n, next, 3), 0);
    for (unsigned i = 0; i < 40; i++)
        assert_str(raw_str("ZSCORE " KEY("sched") " %s:%u", big, i), "2100");
    assert_str(raw_str("ZSCORE " KEY("sched") " %s:0", next), "1000");
    assert_int_equal(queue_claim_due_msg(q, 2000, 100, c, 16, 1000, &n, &err), SY_OK);
    assert_int_equal(n, 3);
    assert_int_equal(count_claims(c, n, next, 3), 3);

    /* Past one read chunk (100), and capped by msg_max. */
    r = raw("DEL " KEY("sched"));
    freeReplyObject(r);
    make_qid(13, huge);
    make_qid(14, tail);
    insert_msg(q, huge, 250, NULL, 3000);
    insert_msg(q, tail, 2, NULL, 3000);
    assert_int_equal(queue_claim_due_msg(q, 4000, 100, c, 16, 1000, &n, &err), SY_OK);
    assert_int_equal(n, 250);
    assert_int_equal(count_claims(c, n, huge, 250), 250);
    assert_int_equal(queue_claim_due_msg(q, 4000, 1000, c, 16, 0, &n, &err), SY_OK);
    assert_int_equal(n, 2);
    assert_int_equal(count_claims(c, n, tail, 2), 2);
    /* The lease of the first 250 ends at 4100: msg_max 100 caps the rest. */
    assert_int_equal(queue_claim_due_msg(q, 4100, 100, c, 16, 100, &n, &err), SY_OK);
    assert_int_equal(n, 116);
    assert_int_equal(count_claims(c, n, huge, 250), 116);

    /* A batch that ends with a message takes nothing of the next one; a
     * stale entry inside the message is dropped, not claimed. */
    r = raw("DEL " KEY("sched"));
    freeReplyObject(r);
    make_qid(15, exact);
    make_qid(16, after);
    insert_msg(q, exact, 16, NULL, 5000);
    insert_msg(q, after, 4, NULL, 5000);
    assert_int_equal(queue_claim_due_msg(q, 6000, 100, c, 16, 1000, &n, &err), SY_OK);
    assert_int_equal(n, 16);
    assert_int_equal(count_claims(c, n, exact, 16), 16);
    r = raw("DEL " KEY("sched"));
    freeReplyObject(r);
    r = raw("ZADD " KEY("sched") " 5000 %s:0 5000 %s:1 5000 %s:2 5000 %s:3", after, after, after, after);
    freeReplyObject(r);
    r = raw("HSET " KEY("rcpt:%s:2") " state held", after);
    freeReplyObject(r);
    assert_int_equal(queue_claim_due_msg(q, 6000, 100, c, 1, 1000, &n, &err), SY_OK);
    assert_int_equal(n, 3);
    assert_int_equal(count_claims(c, n, after, 4), 3);
    assert_str(raw_str("ZSCORE " KEY("sched") " %s:2", after), NULL);

    free(c);
    queue_put(p, q);
}

/* ---- record_result ------------------------------------------------------ */

struct record_step {
    const char *name;
    unsigned idx;
    int state;
    int64_t next_ms, at_ms;
    const char *reply;
    int rc;
    int all_final;
    const char *rcpt_state;     /* expected afterwards */
    const char *attempts;
    const char *sched_score;    /* NULL: not scheduled */
    const char *msg_state;
    int in_index;
};

static char long_reply[2000];

static const struct record_step record_steps[] = {
    { "deferred", 0, QUEUE_QUEUED, 5000, 2000, "451 4.7.1 greylisted", SY_OK, 0,
      "queued", "1", "5000", "active", 1 },
    { "the same result again (timeout retry)", 0, QUEUE_QUEUED, 5000, 2000, "451 4.7.1 greylisted",
      SY_OK, 0, "queued", "1", "5000", "active", 1 },
    { "delivered", 0, QUEUE_DELIVERED, 0, 6000, "250 2.0.0 ok", SY_OK, 0,
      "delivered", "2", NULL, "active", 1 },
    { "late deferral from a stale worker", 0, QUEUE_QUEUED, 9000, 6500, "421 bye", SY_OK, 0,
      "delivered", "2", NULL, "active", 1 },
    { "failed: the last one", 1, QUEUE_FAILED, 0, 7000, long_reply, SY_OK, 1,
      "failed", "1", NULL, "done", 0 },
    { "failed again (timeout retry)", 1, QUEUE_FAILED, 0, 7000, long_reply, SY_OK, 1,
      "failed", "1", NULL, "done", 0 },
    { "unknown recipient", 5, QUEUE_DELIVERED, 0, 8000, "250 ok", SY_ENOTFOUND, 0,
      NULL, NULL, NULL, "done", 0 },
};

static void test_record_result(void **state)
{
    struct queue_pool *p = *state;
    struct queue_msg_info m;
    struct sy_err err;
    struct queue *q = queue_get(p, &err);
    char qid[QID_SIZE], *s;

    assert_non_null(q);
    memset(long_reply, 'x', sizeof(long_reply) - 1);
    make_qid(4, qid);
    insert_msg(q, qid, 2, NULL, 1000);
    for (size_t i = 0; i < sizeof(record_steps) / sizeof(record_steps[0]); i++) {
        const struct record_step *st = &record_steps[i];
        struct queue_result res = { .state = st->state, .next_ms = st->next_ms, .at_ms = st->at_ms,
                                    .transport = "capture", .reply = st->reply };
        int all_final = -1;

        print_message("record: %s\n", st->name);
        assert_int_equal(queue_record_result(q, qid, st->idx, &res, &all_final, &err), st->rc);
        if (st->rc != SY_OK) {
            assert_err(&err, st->rc, "no such recipient");
            assert_int_equal(raw_int("EXISTS " KEY("rcpt:%s:%u"), qid, st->idx), 0);
            continue;
        }
        assert_int_equal(all_final, st->all_final);
        assert_str(raw_str("HGET " KEY("rcpt:%s:%u") " state", qid, st->idx), st->rcpt_state);
        assert_str(raw_str("HGET " KEY("rcpt:%s:%u") " attempts", qid, st->idx), st->attempts);
        assert_str(raw_str("ZSCORE " KEY("sched") " %s:%u", qid, st->idx), st->sched_score);
        assert_str(raw_str("HGET " KEY("msg:%s") " state", qid), st->msg_state);
        s = raw_str("ZSCORE " KEY("index") " %s", qid);
        assert_int_equal(s != NULL, st->in_index);
        free(s);
    }
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " last_reply", qid), "250 2.0.0 ok");
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " transport", qid), "capture");
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " last_ms", qid), "6000");
    assert_str(raw_str("HGET " KEY("msg:%s") " nfinal", qid), "2");
    assert_str(raw_str("ZSCORE " KEY("done") " %s", qid), "7000");
    /* The stored reply is cut (memory per recipient). */
    s = raw_str("HGET " KEY("rcpt:%s:1") " last_reply", qid);
    assert_non_null(s);
    assert_int_equal(strlen(s), 64);
    free(s);

    memset(&m, 0, sizeof(m));
    assert_int_equal(queue_show(q, qid, &m, &err), SY_OK);
    assert_string_equal(m.state, "done");
    assert_int_equal(m.rcpts[0].state, QUEUE_DELIVERED);
    assert_int_equal(m.rcpts[0].attempts, 2);
    assert_string_equal(m.rcpts[0].last_reply, "250 2.0.0 ok");
    assert_int_equal(m.rcpts[1].state, QUEUE_FAILED);
    assert_int_equal(m.rcpts[1].next_ms, 0);
    queue_msg_free(&m);
    /* A deferred recipient is claimed again with its attempt count. */
    {
        struct queue_claim c[4];
        char qid2[QID_SIZE];
        size_t n;
        struct queue_result res = { .state = QUEUE_QUEUED, .next_ms = 3000, .at_ms = 1500,
                                    .transport = NULL, .reply = NULL };

        make_qid(5, qid2);
        insert_msg(q, qid2, 1, NULL, 1000);
        assert_int_equal(queue_record_result(q, qid2, 0, &res, NULL, &err), SY_OK);
        assert_str(raw_str("HGET " KEY("rcpt:%s:0") " transport", qid2), NULL);
        assert_int_equal(queue_claim_due(q, 2999, 100, c, 4, &n, &err), SY_OK);
        assert_int_equal(n, 0);
        assert_int_equal(queue_claim_due(q, 3000, 100, c, 4, &n, &err), SY_OK);
        assert_int_equal(n, 1);
        assert_int_equal(c[0].attempts, 1);
    }
    queue_put(p, q);
}

/* ---- mark_missing ------------------------------------------------------- */

static void test_mark_missing(void **state)
{
    static const unsigned char held[3] = { 0, 0, 1 };
    struct queue_pool *p = *state;
    struct queue_result res = { .state = QUEUE_DELIVERED, .at_ms = 2000, .transport = "capture",
                                .reply = "250 ok" };
    struct queue_claim c[4];
    struct sy_err err;
    struct queue *q = queue_get(p, &err);
    char qid[QID_SIZE], *done1, *done2;
    size_t n;

    assert_non_null(q);
    make_qid(6, qid);
    insert_msg(q, qid, 3, held, 1000);
    assert_int_equal(queue_record_result(q, qid, 0, &res, NULL, &err), SY_OK);
    for (int round = 0; round < 2; round++) {
        print_message("mark_missing round %d\n", round);
        assert_int_equal(queue_mark_missing(q, qid, &err), SY_OK);
        assert_str(raw_str("HGET " KEY("rcpt:%s:0") " state", qid), "delivered");
        assert_str(raw_str("HGET " KEY("rcpt:%s:1") " state", qid), "missing");
        assert_str(raw_str("HGET " KEY("rcpt:%s:2") " state", qid), "missing");
        assert_str(raw_str("HGET " KEY("msg:%s") " state", qid), "missing");
        assert_int_equal(raw_int("ZCARD " KEY("sched")), 0);
        assert_int_equal(raw_int("ZCARD " KEY("held")), 0);
        assert_int_equal(raw_int("ZCARD " KEY("index")), 0);
        assert_int_equal(raw_int("ZCARD " KEY("done")), 1);
    }
    /* The finish time is the first one (ZADD NX): compare two reads. */
    done1 = raw_str("ZSCORE " KEY("done") " %s", qid);
    (void) usleep(5000);
    assert_int_equal(queue_mark_missing(q, qid, &err), SY_OK);
    done2 = raw_str("ZSCORE " KEY("done") " %s", qid);
    assert_string_equal(done1, done2);
    free(done1);
    free(done2);
    assert_int_equal(queue_claim_due(q, INT64_C(1) << 50, 100, c, 4, &n, &err), SY_OK);
    assert_int_equal(n, 0);
    /* A late result for a missing recipient changes nothing. */
    res.at_ms = 9000;
    assert_int_equal(queue_record_result(q, qid, 1, &res, NULL, &err), SY_OK);
    assert_str(raw_str("HGET " KEY("rcpt:%s:1") " state", qid), "missing");

    make_qid(7, qid);
    assert_int_equal(queue_mark_missing(q, qid, &err), SY_ENOTFOUND);
    assert_err(&err, SY_ENOTFOUND, "no such message");
    queue_put(p, q);
}

/* ---- history, not attempted, delay_sent, admin fields ------------------ */

static void test_history(void **state)
{
    struct queue_pool *p = *state;
    struct queue_attempt h = { .at_ms = 0, .duration_ms = 12, .transport = "smart", .route = "global[0]",
                               .remote_host = "mx.example", .remote_addr = "192.0.2.1", .tls = "TLSv1.3",
                               .reply = "451 4.7.1 try\r\nlater\tplease" };
    struct queue_result res = { .state = QUEUE_QUEUED, .transport = "smart", .reply = "451 4.7.1 try",
                                .hist = &h };
    struct queue_claim c[4];
    struct queue_msg_info m;
    struct sy_err err;
    struct queue *q = queue_get(p, &err);
    char qid[QID_SIZE];
    size_t n, purged;

    assert_non_null(q);
    make_qid(40, qid);
    insert_msg(q, qid, 2, NULL, 1000);
    /* More attempts than kept: the oldest are trimmed. */
    for (int i = 0; i < QUEUE_HIST_MAX + 5; i++) {
        res.at_ms = h.at_ms = 2000 + i;
        res.next_ms = 3000 + i;
        res.delay_sent = i == 3;
        assert_int_equal(queue_record_result(q, qid, 0, &res, NULL, &err), SY_OK);
    }
    assert_int_equal(raw_int("LLEN " KEY("hist:%s:0"), qid), QUEUE_HIST_MAX);
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " delay_sent", qid), "1");
    /* Not attempted: rescheduled, no attempt counted, no history. */
    res.not_attempted = 1;
    res.at_ms = 9000;
    res.next_ms = 9500;
    assert_int_equal(queue_record_result(q, qid, 1, &res, NULL, &err), SY_OK);
    assert_str(raw_str("HGET " KEY("rcpt:%s:1") " attempts", qid), NULL);
    assert_int_equal(raw_int("EXISTS " KEY("hist:%s:1"), qid), 0);
    assert_str(raw_str("ZSCORE " KEY("sched") " %s:1", qid), "9500");
    /* Not attempted but final is a caller error. */
    res.state = QUEUE_FAILED;
    assert_int_equal(queue_record_result(q, qid, 1, &res, NULL, &err), SY_ESYNTAX);

    memset(&m, 0, sizeof(m));
    assert_int_equal(queue_show(q, qid, &m, &err), SY_OK);
    assert_int_equal(m.rcpts[0].nhist, QUEUE_HIST_MAX);
    assert_int_equal(m.rcpts[0].hist[0].at_ms, 2005);
    assert_int_equal(m.rcpts[0].hist[QUEUE_HIST_MAX - 1].at_ms, 2000 + QUEUE_HIST_MAX + 4);
    assert_int_equal(m.rcpts[0].hist[0].duration_ms, 12);
    assert_string_equal(m.rcpts[0].hist[0].state, "deferred");
    assert_string_equal(m.rcpts[0].hist[0].transport, "smart");
    assert_string_equal(m.rcpts[0].hist[0].route, "global[0]");
    assert_string_equal(m.rcpts[0].hist[0].remote_host, "mx.example");
    assert_string_equal(m.rcpts[0].hist[0].remote_addr, "192.0.2.1");
    assert_string_equal(m.rcpts[0].hist[0].tls, "TLSv1.3");
    /* CR, LF and tab never pass into an entry. */
    assert_string_equal(m.rcpts[0].hist[0].reply, "451 4.7.1 try  later please");
    assert_string_equal(m.rcpts[0].transport, "smart");
    assert_int_equal(m.rcpts[1].nhist, 0);
    queue_msg_free(&m);

    /* Claims carry the administrator's fields. */
    assert_int_equal(raw_int("HSET " KEY("rcpt:%s:1") " admin fail reroute other released_ms 777", qid), 3);
    assert_int_equal(queue_claim_due(q, 10000, 100, c, 4, &n, &err), SY_OK);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        if (c[i].idx == 0) {
            assert_int_equal(c[i].admin, QUEUE_ADMIN_NONE);
            assert_string_equal(c[i].reroute, "");
            assert_int_equal(c[i].delay_sent, 1);
            assert_int_equal(c[i].attempts, QUEUE_HIST_MAX + 5);
        } else {
            assert_int_equal(c[i].admin, QUEUE_ADMIN_FAIL);
            assert_string_equal(c[i].reroute, "other");
            assert_int_equal(c[i].released_ms, 777);
            assert_int_equal(c[i].delay_sent, 0);
        }
    }

    /* Retention deletes the history with the message. */
    res.not_attempted = 0;
    res.state = QUEUE_DELIVERED;
    res.at_ms = h.at_ms = 20000;
    assert_int_equal(queue_record_result(q, qid, 0, &res, NULL, &err), SY_OK);
    res.at_ms = h.at_ms = 20001;
    assert_int_equal(queue_record_result(q, qid, 1, &res, NULL, &err), SY_OK);
    assert_int_equal(raw_int("EXISTS " KEY("hist:%s:1"), qid), 1);
    assert_int_equal(queue_purge_done(q, INT64_C(1) << 50, 10, &purged, &err), SY_OK);
    assert_int_equal(purged, 1);
    assert_int_equal(raw_int("EXISTS " KEY("hist:%s:0"), qid), 0);
    assert_int_equal(raw_int("EXISTS " KEY("hist:%s:1"), qid), 0);
    queue_put(p, q);
}

/* ---- list_ids, next_due ------------------------------------------------- */

static void test_list_ids(void **state)
{
    struct queue_pool *p = *state;
    struct sy_err err;
    struct queue *q = queue_get(p, &err);
    char ids[10][QID_SIZE], after[QID_SIZE] = "", want[QID_SIZE];
    size_t n, total = 0;

    assert_non_null(q);
    /* Inserted out of order: the index lists them in id order. */
    for (unsigned i = 0; i < 25; i++) {
        char qid[QID_SIZE];

        make_qid((i * 7) % 25, qid);
        insert_msg(q, qid, 1, NULL, 1000);
    }
    do {
        assert_int_equal(queue_list_ids(q, after, ids, 10, &n, &err), SY_OK);
        print_message("list page after \"%s\": %zu\n", after, n);
        for (size_t i = 0; i < n; i++) {
            make_qid((unsigned) (total + i), want);
            assert_string_equal(ids[i], want);
        }
        total += n;
        if (n > 0)
            memcpy(after, ids[n - 1], QID_SIZE);
    } while (n == 10);
    assert_int_equal(total, 25);

    /* Paging goes on after an id that left the index meanwhile. */
    make_qid(10, after);
    assert_int_equal(queue_mark_missing(q, after, &err), SY_OK);
    assert_int_equal(queue_list_ids(q, after, ids, 10, &n, &err), SY_OK);
    assert_int_equal(n, 10);
    make_qid(11, want);
    assert_string_equal(ids[0], want);
    make_qid(9, after);
    assert_int_equal(queue_list_ids(q, after, ids, 3, &n, &err), SY_OK);
    assert_int_equal(n, 3);
    assert_string_equal(ids[0], want);
    assert_int_equal(queue_list_ids(q, "", ids, 0, &n, &err), SY_OK);
    assert_int_equal(n, 0);
    queue_put(p, q);
}

static void test_next_due(void **state)
{
    static const unsigned char held[1] = { 1 };
    struct queue_pool *p = *state;
    struct queue_claim c[4];
    struct sy_err err;
    struct queue *q = queue_get(p, &err);
    char qid[QID_SIZE];
    int64_t when = 0;
    size_t n;

    assert_non_null(q);
    assert_int_equal(queue_next_due(q, &when, &err), SY_OK);
    assert_int_equal(when, INT64_MAX);
    make_qid(1, qid);
    insert_msg(q, qid, 1, NULL, 5000);
    make_qid(2, qid);
    insert_msg(q, qid, 1, held, 3000);      /* held: not scheduled */
    assert_int_equal(queue_next_due(q, &when, &err), SY_OK);
    assert_int_equal(when, 5000);
    make_qid(3, qid);
    insert_msg(q, qid, 1, NULL, 4000);
    assert_int_equal(queue_next_due(q, &when, &err), SY_OK);
    assert_int_equal(when, 4000);
    /* A claimed recipient's lease moves it back. */
    assert_int_equal(queue_claim_due(q, 4000, 10000, c, 4, &n, &err), SY_OK);
    assert_int_equal(n, 1);
    assert_int_equal(queue_next_due(q, &when, &err), SY_OK);
    assert_int_equal(when, 5000);
    queue_put(p, q);
}

/* ---- argument errors: refused before anything reaches Redis ------------- */

struct arg_case {
    const char *name;
    const char *qid;
    int op;                 /* 0 insert, 1 exists, 2 mark, 3 record, 4 show, 5 list, 6 insert 0 rcpt, 7 record bad state */
    int rc;
};

static const struct arg_case arg_cases[] = {
    { "insert: short id", "0PQ5X", 0, SY_ESYNTAX },
    { "insert: I is not base32", "0PQ5X8G3C1R000I", 0, SY_ESYNTAX },
    { "insert: NULL id", NULL, 0, SY_ESYNTAX },
    { "insert: id with a newline", "0PQ5X8G3C1R000\n", 0, SY_ESYNTAX },
    { "insert: long id", "0PQ5X8G3C1R00000", 0, SY_ESYNTAX },
    { "exists: bad id", "0PQ5X8G3C1R00-0", 1, SY_ESYNTAX },
    { "mark: bad id", "*", 2, SY_ESYNTAX },
    { "record: bad id", "0PQ5X8G3C1R000", 3, SY_ESYNTAX },
    { "show: bad id", "", 4, SY_ESYNTAX },
    { "list: bad after", "0PQ5X8G3C1R000I", 5, SY_ESYNTAX },
    { "insert: no recipients", "0PQ5X8G3C1R0000", 6, SY_ESYNTAX },
    { "record: held is not a result", "0PQ5X8G3C1R0000", 7, SY_ESYNTAX },
};

static void test_bad_args(void **state)
{
    struct queue_pool *p = *state;
    struct sy_err err;
    struct queue *q = queue_get(p, &err);

    assert_non_null(q);
    for (size_t i = 0; i < sizeof(arg_cases) / sizeof(arg_cases[0]); i++) {
        const struct arg_case *c = &arg_cases[i];
        struct queue_result res = { .state = QUEUE_DELIVERED, .at_ms = 1 };
        struct queue_msg_info m;
        struct envelope e;
        char ids[2][QID_SIZE];
        size_t n;
        int rc = 0;

        print_message("bad args: %s\n", c->name);
        memset(&m, 0, sizeof(m));
        make_env(&e, c->op == 6 ? 0 : 1, 1);
        switch (c->op) {
        case 0: case 6: rc = queue_insert(q, c->qid, &e, NULL, 1000, &err); break;
        case 1: rc = queue_exists(q, c->qid, &err); break;
        case 2: rc = queue_mark_missing(q, c->qid, &err); break;
        case 3: rc = queue_record_result(q, c->qid, 0, &res, NULL, &err); break;
        case 4: rc = queue_show(q, c->qid, &m, &err); break;
        case 5: rc = queue_list_ids(q, c->qid, ids, 2, &n, &err); break;
        case 7:
            res.state = QUEUE_HELD;
            rc = queue_record_result(q, c->qid, 0, &res, NULL, &err);
            break;
        default: fail();
        }
        env_free(&e);
        assert_int_equal(rc, c->rc);
        assert_err(&err, c->rc, "queue: ");
        assert_null(m.sender);
        assert_int_equal(raw_int("DBSIZE"), 0);
    }
    /* The connection is still fine. */
    assert_int_equal(queue_ping(q, &err), SY_OK);
    queue_put(p, q);
}

/* ---- NOSCRIPT: the server's script cache was emptied ------------------- */

static void test_noscript(void **state)
{
    struct queue_pool *p = *state;
    struct sy_err err;
    struct queue *q = queue_get(p, &err);
    redisReply *r;

    assert_non_null(q);
    for (unsigned i = 0; i < 3; i++) {
        char qid[QID_SIZE];

        print_message("noscript round %u\n", i);
        make_qid(i, qid);
        insert_msg(q, qid, 1, NULL, 1000);
        assert_int_equal(raw_int("EXISTS " KEY("msg:%s"), qid), 1);
        if (i == 0) {
            r = raw("SCRIPT FLUSH");
            freeReplyObject(r);
        }
    }
    queue_put(p, q);
}

/* ---- a hung server: SIGSTOP --------------------------------------------- */

/* wait_clients - until the server counts want connections */
static void wait_clients(long long want)
{
    int64_t end = clock_mono_ms() + 3000;

    while (raw_info("clients", "connected_clients") != want) {
        if (clock_mono_ms() > end)
            fail_msg("connected_clients never became %lld", want);
        (void) usleep(20000);
    }
}

static void test_timeout(void **state)
{
    struct cfg_redis c = cfg;
    struct queue_pool *p;
    struct queue *q1, *q2;
    struct envelope e;
    struct sy_err err;
    char qid[QID_SIZE];
    long long base;
    int64_t t0, dt;

    (void) state;
    c.command_timeout_ms = 300;
    c.connect_timeout_ms = 400;
    p = queue_pool_new(&c, TEST_NODE);
    base = raw_info("clients", "connected_clients");
    q1 = queue_get(p, &err);
    q2 = queue_get(p, &err);
    assert_non_null(q1);
    assert_non_null(q2);
    assert_int_equal(queue_ping(q1, &err), SY_OK);
    make_qid(0, qid);
    insert_msg(q2, qid, 2, NULL, 1000);     /* the script digest is known now */
    wait_clients(base + 2);

    assert_int_equal(kill(redis_pid, SIGSTOP), 0);
    t0 = clock_mono_ms();
    assert_int_equal(queue_ping(q1, &err), SY_ETEMP);
    dt = clock_mono_ms() - t0;
    print_message("PING to a stopped server failed after %lld ms: %s\n", (long long) dt, err.text);
    assert_err(&err, SY_ETEMP, "timeout after 300 ms");
    assert_true(dt >= 250 && dt < 1500);
    /* The connection is never used again, not even for a new command. */
    assert_int_equal(queue_ping(q1, &err), SY_ETEMP);
    assert_err(&err, SY_ETEMP, "unusable");
    queue_put(p, q1);

    /* A new connection cannot authenticate: bounded by the connect timeout. */
    t0 = clock_mono_ms();
    assert_null(queue_get(p, &err));
    dt = clock_mono_ms() - t0;
    assert_err(&err, SY_ETEMP, "timeout after 400 ms");
    assert_true(dt >= 350 && dt < 1500);

    /* An insert whose outcome is unknown (EVALSHA sent, no reply) ... */
    make_qid(1, qid);
    make_env(&e, 2, 1);
    t0 = clock_mono_ms();
    assert_int_equal(queue_insert(q2, qid, &e, NULL, 1000, &err), SY_ETEMP);
    assert_err(&err, SY_ETEMP, "timeout");
    assert_true(clock_mono_ms() - t0 < 1500);
    queue_put(p, q2);

    assert_int_equal(kill(redis_pid, SIGCONT), 0);
    /* Every broken connection was closed. */
    wait_clients(base);
    q1 = queue_get(p, &err);
    assert_non_null(q1);
    assert_int_equal(queue_ping(q1, &err), SY_OK);
    /* ... is simply repeated: one message, whatever the first one did. */
    assert_int_equal(queue_insert(q1, qid, &e, NULL, 1000, &err), SY_OK);
    env_free(&e);
    assert_int_equal(raw_int("ZCARD " KEY("sched")), 4);
    assert_int_equal(raw_int("ZCARD " KEY("index")), 2);
    queue_put(p, q1);
    wait_clients(base + 1);     /* the good connection stays in the pool */
    queue_pool_free(p);
}

/* ---- -OOM: refused whole, connection kept ------------------------------ */

static void test_oom(void **state)
{
    struct queue_pool *p = *state;
    struct queue_result res = { .state = QUEUE_DELIVERED, .at_ms = 5000, .transport = "capture",
                                .reply = "250 ok" };
    struct envelope e;
    struct sy_err err;
    struct queue *q = queue_get(p, &err);
    char qa[QID_SIZE], qb[QID_SIZE];
    long long keys;
    redisReply *r;

    assert_non_null(q);
    make_qid(1, qa);
    make_qid(2, qb);
    insert_msg(q, qa, 2, NULL, 1000);
    keys = raw_int("DBSIZE");
    r = raw("CONFIG SET maxmemory-policy noeviction");
    freeReplyObject(r);
    r = raw("CONFIG SET maxmemory 1");
    freeReplyObject(r);

    make_env(&e, 3, 1);
    assert_int_equal(queue_insert(q, qb, &e, NULL, 1000, &err), SY_ETEMP);
    print_message("insert under maxmemory: %s\n", err.text);
    assert_err(&err, SY_ETEMP, "redis: OOM command not allowed");
    assert_int_equal(raw_int("DBSIZE"), keys);
    assert_int_equal(raw_int("EXISTS " KEY("msg:%s"), qb), 0);
    assert_int_equal(raw_int("ZCARD " KEY("sched")), 2);
    assert_int_equal(raw_int("ZCARD " KEY("index")), 1);

    assert_int_equal(queue_record_result(q, qa, 0, &res, NULL, &err), SY_ETEMP);
    assert_err(&err, SY_ETEMP, "OOM");
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " state", qa), "queued");
    assert_str(raw_str("HGET " KEY("rcpt:%s:0") " attempts", qa), NULL);
    assert_str(raw_str("ZSCORE " KEY("sched") " %s:0", qa), "1000");
    assert_str(raw_str("HGET " KEY("msg:%s") " nfinal", qa), NULL);

    /* -OOM is the server's state, not the connection's: it stays usable. */
    assert_int_equal(queue_ping(q, &err), SY_OK);
    r = raw("CONFIG SET maxmemory 0");
    freeReplyObject(r);
    assert_int_equal(queue_insert(q, qb, &e, NULL, 1000, &err), SY_OK);
    env_free(&e);
    assert_int_equal(raw_int("ZCARD " KEY("sched")), 5);
    queue_put(p, q);
}

/* ---- connecting: each way it can fail ---------------------------------- */

struct connect_case {
    const char *name;
    char *password;
    unsigned db;
    char *path;             /* NULL: TCP 127.0.0.1:1; "": the test server */
    char *prefix;
    const char *node;
    const char *text;       /* expected in err.text; NULL: success */
};

static const struct connect_case connect_cases[] = {
    { "good", TEST_PASSWORD, TEST_DB, "", TEST_PREFIX, TEST_NODE, NULL },
    { "wrong password", "not-the-password", TEST_DB, "", TEST_PREFIX, TEST_NODE, "WRONGPASS" },
    { "no password", NULL, TEST_DB, "", TEST_PREFIX, TEST_NODE, "NOAUTH" },
    { "db out of range", TEST_PASSWORD, 999, "", TEST_PREFIX, TEST_NODE, "DB index is out of range" },
    { "no socket", TEST_PASSWORD, TEST_DB, "/nonexistent/redis.sock", TEST_PREFIX, TEST_NODE,
      "connect to unix:/nonexistent/redis.sock: No such file" },
    { "tcp refused", TEST_PASSWORD, TEST_DB, NULL, TEST_PREFIX, TEST_NODE, "connect to 127.0.0.1:1: Connection refused" },
    { "prefix with a brace", TEST_PASSWORD, TEST_DB, "", "sy{x}", TEST_NODE, "key prefix unusable" },
    { "empty node", TEST_PASSWORD, TEST_DB, "", TEST_PREFIX, "", "node name unusable" },
};

static void test_connect_errors(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(connect_cases) / sizeof(connect_cases[0]); i++) {
        const struct connect_case *cc = &connect_cases[i];
        struct cfg_redis c = cfg;
        struct queue_pool *p;
        struct sy_err err;
        struct queue *q;

        print_message("connect: %s\n", cc->name);
        c.password = cc->password;
        c.db = cc->db;
        c.prefix = cc->prefix;
        if (cc->path == NULL) {
            c.addr.is_unix = false;
            c.addr.host = (char *) "127.0.0.1";
            c.addr.port = 1;
        } else if (cc->path[0] != '\0') {
            c.addr.path = cc->path;
        }
        p = queue_pool_new(&c, cc->node);
        memset(&err, 0, sizeof(err));
        q = queue_get(p, &err);
        if (cc->text == NULL) {
            assert_non_null(q);
            assert_int_equal(queue_ping(q, &err), SY_OK);
        } else {
            assert_null(q);
            assert_err(&err, SY_ETEMP, cc->text);
            assert_null(strstr(err.text, "not-the-password"));
            assert_null(strstr(err.text, TEST_PASSWORD));
        }
        queue_put(p, q);
        queue_pool_free(p);
    }
}

/* ---- hostile replies from a scripted server ------------------------------ */

#define SHA_REPLY "$40\r\n0123456789abcdef0123456789abcdef01234567\r\n"

struct fake_case {
    const char *name;
    const char *op;             /* ping exists list next claim show insert */
    const char *replies[4];     /* one per command; "CLOSE" hangs up */
    int rc;
    const char *text;           /* expected in err.text (NULL: "redis: ") */
    size_t n;                   /* claim/list: count on success */
    int then;                   /* -1: nothing; 1: a PING on the same connection works; 0: refused unsent */
    unsigned timeout_ms;        /* command timeout; 0: 200 ms */
};

static char long_err[700];
/* One array of 10^6 integers, then another array: past the reply's total
 * element budget although each array alone is within the cap. */
#define BIG_N 1000000
static char big_reply[32 + (size_t) BIG_N * 4];

static const struct fake_case fake_cases[] = {
    { "sane PONG", "ping", { "+PONG\r\n" }, SY_OK, NULL, 0, -1, 0 },
    { "integer for PING", "ping", { ":1\r\n" }, SY_ETEMP, "unexpected reply to PING", 0, 0, 0 },
    { "bulk length -2", "ping", { "$-2\r\n" }, SY_ETEMP, NULL, 0, 0, 0 },
    { "endless bulk", "ping", { "$999999999999\r\n" }, SY_ETEMP, "timeout", 0, 0, 0 },
    { "silence", "ping", { "" }, SY_ETEMP, "timeout", 0, 0, 0 },
    { "hang-up", "ping", { "CLOSE" }, SY_ETEMP, "closed", 0, 0, 0 },
    { "nested 9 deep", "ping", { "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n" },
      SY_ETEMP, "protocol error", 0, 0, 0 },
    { "2e9 elements", "ping", { "*2000000000\r\n" }, SY_ETEMP, "reply refused", 0, 0, 0 },
    { "1.1e6 elements in two arrays", "ping", { big_reply }, SY_ETEMP, "reply refused", 0, 0, 20000 },
    { "RESP3 map", "ping", { "%1\r\n+a\r\n+b\r\n" }, SY_ETEMP, "protocol error", 0, 0, 0 },
    { "junk type byte", "ping", { "!junk\r\n" }, SY_ETEMP, "protocol error", 0, 0, 0 },
    { "READONLY drops the connection", "ping", { "-READONLY You can't write against a read only replica.\r\n" },
      SY_ETEMP, "redis: READONLY You can't write", 0, 0, 0 },
    { "LOADING keeps it", "ping", { "-LOADING Redis is loading the dataset in memory\r\n", "+PONG\r\n" },
      SY_ETEMP, "redis: LOADING Redis is loading", 0, 1, 0 },
    { "BUSY keeps it", "ping", { "-BUSY Redis is busy running a script.\r\n", "+PONG\r\n" },
      SY_ETEMP, "redis: BUSY", 0, 1, 0 },
    { "NOSCRIPT to a plain command", "ping", { "-NOSCRIPT No matching script.\r\n" },
      SY_ETEMP, "unexpected reply to PING", 0, 0, 0 },
    { "control bytes in an error", "ping", { "-ERR a\x01\x1b[31mb\r\n", "+PONG\r\n" }, SY_ETEMP, "redis: ERR a??[31mb", 0, 1, 0 },
    { "huge error text is cut", "ping", { long_err, "+PONG\r\n" }, SY_ETEMP, "EEEE...", 0, 1, 0 },
    { "EXISTS says 7", "exists", { ":7\r\n" }, SY_ETEMP, "unexpected reply to EXISTS", 0, 0, 0 },
    { "index member not an id", "list", { "*1\r\n$3\r\nabc\r\n" }, SY_ETEMP, "unexpected reply to ZRANGEBYLEX", 0, 0, 0 },
    { "index member with I", "list", { "*1\r\n$15\r\n0PQ5X8G3C1R000I\r\n" }, SY_ETEMP, "malformed id: 0PQ5X8G3C1R000I", 0, -1, 0 },
    { "index too many", "list", { "*3\r\n$15\r\n0PQ5X8G3C1R0001\r\n$15\r\n0PQ5X8G3C1R0002\r\n$15\r\n0PQ5X8G3C1R0003\r\n" },
      SY_ETEMP, "unexpected", 0, 0, 0 },
    { "index fine", "list", { "*2\r\n$15\r\n0PQ5X8G3C1R0001\r\n$15\r\n0PQ5X8G3C1R0002\r\n" }, SY_OK, NULL, 2, -1, 0 },
    { "score nan", "next", { "*2\r\n$1\r\na\r\n$3\r\nnan\r\n" }, SY_ETEMP, "unexpected reply to ZRANGE", 0, 0, 0 },
    { "score -inf", "next", { "*2\r\n$1\r\na\r\n$4\r\n-inf\r\n" }, SY_ETEMP, "unexpected reply to ZRANGE", 0, 0, 0 },
    { "score exponent", "next", { "*2\r\n$1\r\na\r\n$7\r\n1.5e+03\r\n" }, SY_OK, NULL, 1500, -1, 0 },
    { "one element", "next", { "*1\r\n$1\r\na\r\n" }, SY_ETEMP, "unexpected reply to ZRANGE", 0, 0, 0 },
    { "digest not hex", "claim", { "$3\r\nabc\r\n" }, SY_ETEMP, "unexpected reply to SCRIPT LOAD", 0, 0, 0 },
    { "claim odd count", "claim", { SHA_REPLY, "*1\r\n$3\r\nabc\r\n" }, SY_ETEMP, "unexpected reply to claim", 0, 0, 0 },
    { "claim integers", "claim", { SHA_REPLY, "*2\r\n:1\r\n:2\r\n" }, SY_ETEMP, "unexpected reply to claim", 0, 0, 0 },
    { "claim too many", "claim", { SHA_REPLY, "*10\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n"
                                              "$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n" },
      SY_ETEMP, "unexpected reply to claim", 0, 0, 0 },
    { "claim skips a malformed member", "claim",
      { SHA_REPLY, "*24\r\n$5\r\nhello\r\n$1\r\n0\r\n$0\r\n\r\n$0\r\n\r\n$0\r\n\r\n$0\r\n\r\n$0\r\n\r\n$1\r\n7\r\n"
                   "$17\r\n0PQ5X8G3C1R0001:1\r\n$1\r\n2\r\n$4\r\nfail\r\n$5\r\nrelay\r\n$4\r\n1000\r\n$1\r\n1\r\n$0\r\n\r\n$1\r\n7\r\n"
                   "$22\r\n0PQ5X8G3C1R0001:999999\r\n$1\r\n0\r\n$0\r\n\r\n$0\r\n\r\n$0\r\n\r\n$0\r\n\r\n$0\r\n\r\n$1\r\n7\r\n",
        "+PONG\r\n" }, SY_OK, NULL, 1, 1, 0 },
    { "claim skips a bad admin field", "claim",
      { SHA_REPLY, "*8\r\n$17\r\n0PQ5X8G3C1R0001:1\r\n$1\r\n2\r\n$3\r\nzap\r\n$0\r\n\r\n$0\r\n\r\n$0\r\n\r\n$0\r\n\r\n$1\r\n7\r\n",
        "+PONG\r\n" }, SY_OK, NULL, 0, 1, 0 },
    { "claim skips a bad claim token", "claim",
      { SHA_REPLY, "*8\r\n$17\r\n0PQ5X8G3C1R0001:1\r\n$1\r\n2\r\n$0\r\n\r\n$0\r\n\r\n$0\r\n\r\n$0\r\n\r\n$0\r\n\r\n$1\r\n0\r\n",
        "+PONG\r\n" }, SY_OK, NULL, 0, 1, 0 },
    { "claim skips a bad dsn_pending", "claim",
      { SHA_REPLY, "*8\r\n$17\r\n0PQ5X8G3C1R0001:1\r\n$1\r\n2\r\n$0\r\n\r\n$0\r\n\r\n$0\r\n\r\n$0\r\n\r\n$3\r\nyes\r\n$1\r\n7\r\n",
        "+PONG\r\n" }, SY_OK, NULL, 0, 1, 0 },
    { "NOSCRIPT falls back to EVAL", "claim", { SHA_REPLY, "-NOSCRIPT No matching script.\r\n", "*0\r\n", "+PONG\r\n" },
      SY_OK, NULL, 0, 1, 0 },
    { "NOSCRIPT twice", "claim", { SHA_REPLY, "-NOSCRIPT No matching script.\r\n", "-NOSCRIPT again\r\n" },
      SY_ETEMP, "unexpected reply to EVAL", 0, 0, 0 },
    { "show: count mismatch", "show",
      { SHA_REPLY, "*3\r\n*4\r\n$6\r\nsender\r\n$1\r\na\r\n$5\r\nnrcpt\r\n$1\r\n5\r\n*0\r\n$-1\r\n" },
      SY_ETEMP, "malformed recipient count", 0, -1, 0 },
    { "show: bad state", "show",
      { SHA_REPLY, "*4\r\n*4\r\n$6\r\nsender\r\n$1\r\na\r\n$5\r\nnrcpt\r\n$1\r\n1\r\n"
                   "*4\r\n$4\r\naddr\r\n$1\r\nb\r\n$5\r\nstate\r\n$4\r\nlost\r\n$-1\r\n*0\r\n" },
      SY_ETEMP, "malformed recipient state", 0, -1, 0 },
    { "show: bad history entry", "show",
      { SHA_REPLY, "*4\r\n*4\r\n$6\r\nsender\r\n$1\r\na\r\n$5\r\nnrcpt\r\n$1\r\n1\r\n"
                   "*4\r\n$4\r\naddr\r\n$1\r\nb\r\n$5\r\nstate\r\n$6\r\nqueued\r\n$-1\r\n*1\r\n$3\r\na\tb\r\n" },
      SY_ETEMP, "malformed history entry", 0, -1, 0 },
    { "show: duplicate fields", "show",
      { SHA_REPLY, "*4\r\n*8\r\n$6\r\nsender\r\n$1\r\na\r\n$6\r\nsender\r\n$1\r\nz\r\n$5\r\nnrcpt\r\n$1\r\n1\r\n"
                   "$5\r\nnrcpt\r\n$1\r\n1\r\n"
                   "*6\r\n$4\r\naddr\r\n$1\r\nb\r\n$4\r\naddr\r\n$1\r\nc\r\n$5\r\nstate\r\n$6\r\nqueued\r\n$4\r\n1000\r\n"
                   "*1\r\n$30\r\n5\t7\tdeferred\tt\tr\th\ta\ttls\t451 x\r\n" },
      SY_OK, NULL, 1, -1, 0 },
    { "show: odd hash", "show", { SHA_REPLY, "*1\r\n*1\r\n$6\r\nsender\r\n" }, SY_ETEMP, "malformed message record", 0, -1, 0 },
    { "insert: -OOM", "insert", { SHA_REPLY, "-OOM command not allowed when used memory > 'maxmemory'.\r\n", "+PONG\r\n" },
      SY_ETEMP, "redis: OOM command not allowed", 0, 1, 0 },
    { "insert: string reply", "insert", { SHA_REPLY, "+OK\r\n" }, SY_ETEMP, "unexpected reply to insert", 0, 0, 0 },
};

/* fake_write - all of s */
static void fake_write(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);

        if (w <= 0)
            return;
        s += w;
        n -= (size_t) w;
    }
}

/* fake_start - a child that answers each command with the next reply */
static pid_t fake_start(const char *const *replies, size_t nreplies)
{
    struct sockaddr_un sa;
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    pid_t pid;

    assert_true(ls >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    assert_true(strlen(fake_path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, fake_path, strlen(fake_path) + 1);
    (void) unlink(fake_path);
    assert_int_equal(bind(ls, (struct sockaddr *) &sa, sizeof(sa)), 0);
    assert_int_equal(listen(ls, 4), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char buf[65536];
        int c = accept(ls, NULL, NULL);

        for (size_t i = 0; c >= 0 && i < nreplies && replies[i] != NULL; i++) {
            struct pollfd pfd = { .fd = c, .events = POLLIN };

            if (read(c, buf, sizeof(buf)) <= 0)
                _exit(0);
            /* The rest of a command written in pieces. */
            while (poll(&pfd, 1, 30) > 0 && read(c, buf, sizeof(buf)) > 0)
                ;
            if (strcmp(replies[i], "CLOSE") == 0)
                _exit(0);
            fake_write(c, replies[i], strlen(replies[i]));
        }
        {
            struct pollfd pfd = { .fd = c, .events = POLLIN };

            (void) poll(&pfd, 1, 5000);
        }
        _exit(0);
    }
    (void) close(ls);
    return pid;
}

static void test_hostile_replies(void **state)
{
    (void) state;
    memset(long_err, 'E', sizeof(long_err) - 3);
    long_err[0] = '-';
    memcpy(long_err + sizeof(long_err) - 3, "\r\n", 3);
    {
        size_t o = (size_t) snprintf(big_reply, sizeof(big_reply), "*2\r\n*%d\r\n", BIG_N);

        for (int i = 0; i < BIG_N; i++, o += 4)
            memcpy(big_reply + o, ":1\r\n", 4);
        memcpy(big_reply + o, "*100000\r\n", sizeof("*100000\r\n"));
    }

    for (size_t i = 0; i < sizeof(fake_cases) / sizeof(fake_cases[0]); i++) {
        const struct fake_case *fc = &fake_cases[i];
        struct cfg_redis c = cfg;
        struct queue_claim claims[4];
        struct queue_msg_info m;
        char ids[2][QID_SIZE], qid[QID_SIZE];
        struct queue_pool *p;
        struct sy_err err;
        struct queue *q;
        int64_t when = 0;
        size_t n = 0;
        pid_t pid;
        int rc;

        print_message("hostile: %s\n", fc->name);
        c.addr.path = fake_path;
        c.password = NULL;
        c.db = 0;
        c.command_timeout_ms = fc->timeout_ms != 0 ? fc->timeout_ms : 200;
        pid = fake_start(fc->replies, sizeof(fc->replies) / sizeof(fc->replies[0]));
        p = queue_pool_new(&c, TEST_NODE);
        q = queue_get(p, &err);
        assert_non_null(q);
        make_qid(1, qid);
        memset(&m, 0, sizeof(m));
        memset(&err, 0, sizeof(err));
        if (strcmp(fc->op, "ping") == 0) {
            rc = queue_ping(q, &err);
        } else if (strcmp(fc->op, "exists") == 0) {
            rc = queue_exists(q, qid, &err);
        } else if (strcmp(fc->op, "list") == 0) {
            rc = queue_list_ids(q, "", ids, 2, &n, &err);
        } else if (strcmp(fc->op, "next") == 0) {
            rc = queue_next_due(q, &when, &err);
            n = rc == SY_OK ? (size_t) when : 0;
        } else if (strcmp(fc->op, "claim") == 0) {
            rc = queue_claim_due(q, 1000, 100, claims, 4, &n, &err);
        } else if (strcmp(fc->op, "show") == 0) {
            rc = queue_show(q, qid, &m, &err);
            n = m.nrcpt;
            if (rc == SY_OK) {
                /* Later duplicates win, and nothing leaks (ASan). */
                assert_string_equal(m.sender, "z");
                assert_string_equal(m.rcpts[0].addr, "c");
                assert_int_equal(m.rcpts[0].next_ms, 1000);
                assert_int_equal(m.rcpts[0].nhist, 1);
                assert_int_equal(m.rcpts[0].hist[0].at_ms, 5);
                assert_int_equal(m.rcpts[0].hist[0].duration_ms, 7);
                assert_string_equal(m.rcpts[0].hist[0].state, "deferred");
                assert_string_equal(m.rcpts[0].hist[0].tls, "tls");
                assert_string_equal(m.rcpts[0].hist[0].reply, "451 x");
            } else {
                assert_null(m.sender);
                assert_null(m.rcpts);
            }
            queue_msg_free(&m);
        } else {
            struct envelope e;

            make_env(&e, 1, 1);
            rc = queue_insert(q, qid, &e, NULL, 1000, &err);
            env_free(&e);
        }
        if (rc != fc->rc)
            print_message("hostile: %s: rc %d: %s\n", fc->name, rc, err.text);
        assert_int_equal(rc, fc->rc);
        if (rc == SY_OK) {
            assert_int_equal(n, fc->n);
        } else {
            assert_err(&err, SY_ETEMP, fc->text != NULL ? fc->text : "redis: ");
            assert_true(strlen(err.text) < sizeof(err.text));
            for (const char *s = err.text; *s != '\0'; s++)
                assert_true((unsigned char) *s >= 0x20 && (unsigned char) *s < 0x7f);
        }
        if (fc->then == 1) {
            assert_int_equal(queue_ping(q, &err), SY_OK);
        } else if (fc->then == 0) {
            assert_int_equal(queue_ping(q, &err), SY_ETEMP);
            assert_err(&err, SY_ETEMP, "unusable");
        }
        queue_put(p, q);
        queue_pool_free(p);
        (void) kill(pid, SIGKILL);
        (void) waitpid(pid, NULL, 0);
    }
}

/* ---- threads share one pool --------------------------------------------- */

#define THREADS 8
#define PER_THREAD 25

struct thread_arg {
    struct queue_pool *p;
    unsigned base;
    int failures;
};

static void *thread_main(void *arg)
{
    struct thread_arg *t = arg;

    for (unsigned i = 0; i < PER_THREAD; i++) {
        struct envelope e;
        struct sy_err err;
        char qid[QID_SIZE];
        struct queue *q = queue_get(t->p, &err);

        if (q == NULL) {
            t->failures++;
            continue;
        }
        make_qid(t->base + i, qid);
        make_env(&e, 2, 1);
        if (queue_insert(q, qid, &e, NULL, 1000, &err) != SY_OK)
            t->failures++;
        env_free(&e);
        queue_put(t->p, q);
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct thread_arg args[THREADS];
    pthread_t th[THREADS];
    long long base = raw_info("clients", "connected_clients");

    for (unsigned i = 0; i < THREADS; i++) {
        args[i].p = *state;
        args[i].base = i * 100;
        args[i].failures = 0;
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &args[i]), 0);
    }
    for (unsigned i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].failures, 0);
    }
    assert_int_equal(raw_int("ZCARD " KEY("index")), THREADS * PER_THREAD);
    assert_int_equal(raw_int("ZCARD " KEY("sched")), 2 * THREADS * PER_THREAD);
    /* Connections are reused: never more than one per thread. */
    assert_true(raw_info("clients", "connected_clients") <= base + THREADS);
}

/* ---- memory per queued recipient ---------------------------------------- */

#define MEM_MSGS 1000
#define MEM_RCPTS 10

static void test_memory(void **state)
{
    struct queue_pool *p = *state;
    struct sy_err err;
    struct queue *q = queue_get(p, &err);
    long long before, after, per, msg_usage, rcpt_usage;
    char qid[QID_SIZE];

    assert_non_null(q);
    /* Warm up the zsets' encodings so the delta is per recipient. */
    make_qid(0xFFFF, qid);
    insert_msg(q, qid, 1, NULL, 1);
    before = raw_info("memory", "used_memory");
    for (unsigned i = 0; i < MEM_MSGS; i++) {
        struct envelope e;

        make_qid(i, qid);
        make_env(&e, MEM_RCPTS, 1);
        assert_int_equal(queue_insert(q, qid, &e, NULL, INT64_C(1700000000000) + i, &err), SY_OK);
        env_free(&e);
    }
    after = raw_info("memory", "used_memory");
    per = (after - before) / (MEM_MSGS * MEM_RCPTS);
    make_qid(1, qid);
    msg_usage = raw_int("MEMORY USAGE " KEY("msg:%s"), qid);
    rcpt_usage = raw_int("MEMORY USAGE " KEY("rcpt:%s:0"), qid);
    print_message("memory: %d messages x %d recipients (every optional field): %lld bytes, "
                  "%lld per recipient; MEMORY USAGE msg=%lld rcpt=%lld\n",
                  MEM_MSGS, MEM_RCPTS, after - before, per, msg_usage, rcpt_usage);
    assert_true(per > 0 && per <= 1024);

    /* Deferred once, with a long reply: still within the goal. */
    for (unsigned i = 0; i < MEM_MSGS; i++) {
        struct queue_result res = { .state = QUEUE_QUEUED, .next_ms = INT64_C(1700000300000),
                                    .at_ms = INT64_C(1700000000500), .transport = "relay-provider",
                                    .reply = "451 4.7.1 Please try again later: greylisted for 300 seconds "
                                             "by mx1.example.net (policy GL-2)" };

        make_qid(i, qid);
        for (unsigned k = 0; k < MEM_RCPTS; k++)
            assert_int_equal(queue_record_result(q, qid, k, &res, NULL, &err), SY_OK);
    }
    after = raw_info("memory", "used_memory");
    per = (after - before) / (MEM_MSGS * MEM_RCPTS);
    make_qid(1, qid);
    rcpt_usage = raw_int("MEMORY USAGE " KEY("rcpt:%s:0"), qid);
    print_message("memory after one deferral each: %lld per recipient; MEMORY USAGE rcpt=%lld\n",
                  per, rcpt_usage);
    assert_true(per > 0 && per <= 1024);
    queue_put(p, q);
}

/* ---- a dead server (last: it restarts the server) ----------------------- */

static void test_server_killed(void **state)
{
    struct queue_pool *p = *state;
    struct sy_err err;
    struct queue *q = queue_get(p, &err);

    assert_non_null(q);
    assert_int_equal(queue_ping(q, &err), SY_OK);
    queue_put(p, q);        /* idle in the pool */
    redis_kill();
    /* The idle connection is found dead, and a new one cannot be made. */
    memset(&err, 0, sizeof(err));
    assert_null(queue_get(p, &err));
    assert_err(&err, SY_ETEMP, "connect to unix:");
    redis_start();
    q = queue_get(p, &err);
    assert_non_null(q);
    assert_int_equal(queue_ping(q, &err), SY_OK);
    queue_put(p, q);
}

static void test_state_names(void **state)
{
    static const struct { int st; const char *name; } names[] = {
        { QUEUE_QUEUED, "queued" }, { QUEUE_HELD, "held" }, { QUEUE_DELIVERED, "delivered" },
        { QUEUE_FAILED, "failed" }, { QUEUE_MISSING, "missing" }, { 99, "unknown" }, { -1, "unknown" },
    };

    (void) state;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_string_equal(queue_state_name(names[i].st), names[i].name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_names),
        cmocka_unit_test_setup_teardown(test_insert_show, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_insert_idempotent, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_insert_dedup, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_purge_done, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_held, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_claim_lease, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_claim_whole_message, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_lease_fencing, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_dsn_pending, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_record_result, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_mark_missing, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_history, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_list_ids, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_next_due, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_bad_args, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_noscript, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_oom, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_connect_errors, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_hostile_replies, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_threads, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_memory, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_timeout, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_server_killed, test_setup, test_teardown),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
