/* test_queue_admin.c - hold rules, timed release and the administrator's
 * queue operations (gateway/queue_admin.c) against a real redis-server
 *
 * A private redis-server (UNIX socket in a mkdtemp directory, password,
 * no persistence) is started for the group and killed by PID at the end;
 * every test starts from an empty database. A second hiredis connection
 * writes damaged data and inspects what the scripts stored.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/cli_hold.h"
#include "gateway/queue.h"
#include "gateway/queue_int.h"
#include "gateway/util/clock.h"
#include "gateway/util/xalloc.h"
#include "tests/unit/support/redis_server.h"

#define TEST_PASSWORD "t0p-s3cret-redis-pw"
#define TEST_DB 2
#define TEST_NODE "n1"
#define TEST_PREFIX "sy"
#define KEY(s) TEST_PREFIX ":{" TEST_NODE "}:" s
#define GKEY(s) TEST_PREFIX ":{hold}:" s

static char tdir[64];
static char sock_path[128];
static pid_t redis_pid;
static struct cfg_redis cfg;
static redisContext *rawc;

/* ---- the server and the inspection connection --------------------------- */

static void raw_do(const char *fmt, ...)
{
    redisReply *r;
    va_list ap;

    va_start(ap, fmt);
    r = redisvCommand(rawc, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

/* raw_str - a string reply as a new string (free()), NULL for nil */
static char *raw_str(const char *fmt, ...)
{
    redisReply *r;
    char *s = NULL;
    va_list ap;

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

/* raw_int - an integer reply */
static long long raw_int(const char *fmt, ...)
{
    redisReply *r;
    long long v;
    va_list ap;

    va_start(ap, fmt);
    r = redisvCommand(rawc, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    v = r->integer;
    freeReplyObject(r);
    return v;
}

/* assert_str - equal strings, both possibly NULL; frees got */
static void assert_str(char *got, const char *want)
{
    if (want == NULL) {
        assert_null(got);
    } else {
        assert_non_null(got);
        assert_string_equal(got, want);
    }
    free(got);
}

static int group_setup(void **state)
{
    redisReply *r;

    (void) state;
    (void) signal(SIGPIPE, SIG_IGN);
    (void) snprintf(tdir, sizeof(tdir), "/tmp/sy-test-qadmin-XXXXXX");
    if (mkdtemp(tdir) == NULL)
        return -1;
    (void) snprintf(sock_path, sizeof(sock_path), "%s/redis.sock", tdir);
    memset(&cfg, 0, sizeof(cfg));
    cfg.address = sock_path;
    cfg.addr.is_unix = true;
    cfg.addr.path = sock_path;
    cfg.password = (char *) TEST_PASSWORD;
    cfg.db = TEST_DB;
    cfg.prefix = (char *) TEST_PREFIX;
    cfg.connect_timeout_ms = 2000;
    cfg.command_timeout_ms = 5000;
    redis_pid = test_redis_start(tdir, sock_path, TEST_PASSWORD, 10000);
    if (redis_pid < 0)
        return -1;
    rawc = redisConnectUnix(sock_path);
    if (rawc == NULL || rawc->err != 0)
        return -1;
    r = redisCommand(rawc, "AUTH %s", TEST_PASSWORD);
    freeReplyObject(r);
    r = redisCommand(rawc, "SELECT %d", TEST_DB);
    freeReplyObject(r);
    return 0;
}

static int group_teardown(void **state)
{
    char path[192];

    (void) state;
    if (rawc != NULL)
        redisFree(rawc);
    test_redis_kill(redis_pid);
    (void) snprintf(path, sizeof(path), "%s/redis.log", tdir);
    (void) unlink(path);
    (void) unlink(sock_path);
    (void) rmdir(tdir);
    return 0;
}

struct fixture {
    struct queue_pool *qp;
    struct queue *q;
};

static int test_setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    struct sy_err err;

    raw_do("FLUSHDB");
    f->qp = queue_pool_new(&cfg, TEST_NODE);
    f->q = queue_get(f->qp, &err);
    if (f->q == NULL)
        return -1;
    *state = f;
    return 0;
}

static int test_teardown(void **state)
{
    struct fixture *f = *state;

    queue_put(f->qp, f->q);
    queue_pool_free(f->qp);
    free(f);
    return 0;
}

/* ---- messages ------------------------------------------------------------ */

static void make_qid(unsigned n, char out[QID_SIZE])
{
    static const char digits[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

    (void) snprintf(out, QID_SIZE, "0PQ5X8G3C1R%c%c%c%c", digits[(n >> 15) & 31],
                    digits[(n >> 10) & 31], digits[(n >> 5) & 31], digits[n & 31]);
    assert_true(qid_valid(out));
}

/* insert - a message of nrcpt recipients (held where held[i]) */
static void insert(struct queue *q, const char *qid, size_t nrcpt, const unsigned char *held,
                   int64_t next_ms, int64_t hold_until)
{
    struct envelope e;
    struct sy_err err;

    env_init(&e);
    env_set(&e.sender, "s@example.org");
    env_set(&e.listener, "lmtp0");
    e.arrival_us = INT64_C(1700000000000000);
    e.size = 10;
    e.hold_until = hold_until;
    for (size_t i = 0; i < nrcpt; i++) {
        struct env_rcpt r;
        char addr[64];

        memset(&r, 0, sizeof(r));
        (void) snprintf(addr, sizeof(addr), "r%zu@example.net", i);
        r.addr = xstrdup(addr);
        env_add_rcpt(&e, &r);
    }
    assert_int_equal(queue_insert(q, qid, &e, held, next_ms, &err), SY_OK);
    env_free(&e);
}

static char *rfield(const char *qid, unsigned idx, const char *field)
{
    return raw_str("HGET " KEY("rcpt:%s:%u") " %s", qid, idx, field);
}

static char *zscore(const char *set, const char *qid, unsigned idx)
{
    char key[128];

    (void) snprintf(key, sizeof(key), TEST_PREFIX ":{" TEST_NODE "}:%s", set);
    return raw_str("ZSCORE %s %s:%u", key, qid, idx);
}

static size_t apply(struct queue *q, int op, const char *qid, unsigned idx, const char *transport)
{
    struct queue_op_req req = { op, transport, 0, 0, 1700000500000 };
    struct queue_target t;
    char done[1][QID_SIZE];
    size_t n, nd;
    struct sy_err err;

    memcpy(t.qid, qid, QID_SIZE);
    t.idx = idx;
    assert_int_equal(queue_admin_apply(q, &req, &t, 1, &n, done, &nd, &err), SY_OK);
    return n;
}

/* ---- hold rules ---------------------------------------------------------- */

static void test_rules(void **state)
{
    struct fixture *f = *state;
    struct hold_rule r1, r2;
    struct queue_hold_set s;
    struct sy_err err;
    uint64_t id1, id2, id;
    int existed = -1;

    assert_int_equal(hold_rule_set(&r1, ".example.org", NULL, NULL, 0, &err), SY_OK);
    assert_int_equal(hold_rule_set(&r2, "<>", "bob@example.net", "lmtp0", 1900000000, &err), SY_OK);
    assert_int_equal(queue_hold_rule_add(f->q, &r1, &id1, NULL, &err), SY_OK);
    assert_int_equal(queue_hold_rule_add(f->q, &r2, &id2, NULL, &err), SY_OK);
    assert_true(id1 == 1 && id2 == 2);

    /* damaged data: a rule that does not decode is kept as matching
     * nothing (so its recipients are not released); a bad id is skipped */
    raw_do("HSET " GKEY("rules") " 7 %s", "h1;s=x;c=00000000");
    raw_do("HSET " GKEY("rules") " abc %s", "h1;c=2E615BDE");
    memset(&s, 0, sizeof(s));
    assert_int_equal(queue_hold_rules_load(f->q, &s, &err), SY_OK);
    assert_int_equal(s.n, 3);
    assert_true(s.v[0].id == 1 && s.v[1].id == 2 && s.v[2].id == 7);
    assert_true(s.seq == 2);
    assert_string_equal(s.v[0].rule.sender, ".example.org");
    assert_string_equal(s.v[1].rule.sender, "<>");
    assert_string_equal(s.v[1].rule.recipient, "bob@example.net");
    assert_string_equal(s.v[1].rule.listener, "lmtp0");
    assert_true(s.v[1].rule.until == 1900000000);
    assert_true(hold_rule_expired(&s.v[2].rule, 2));
    queue_hold_set_free(&s);
    raw_do("HDEL " GKEY("rules") " 7 abc");

    /* rm: once, then not found; gen is the removal time, strictly rising */
    assert_int_equal(queue_hold_rule_rm(f->q, id1, 5000, &err), SY_OK);
    assert_str(raw_str("GET " GKEY("gen")), "5000");
    assert_int_equal(queue_hold_rule_rm(f->q, id1, 5000, &err), SY_ENOTFOUND);
    assert_int_equal(queue_hold_rule_rm(f->q, 0, 5000, &err), SY_ENOTFOUND);
    assert_int_equal(queue_hold_rule_rm(f->q, id2, 4000, &err), SY_OK);
    assert_str(raw_str("GET " GKEY("gen")), "5001");

    /* ids are never reused; the same rule again is the same id (a repeated
     * add); the count is bounded */
    assert_int_equal(queue_hold_rule_add(f->q, &r1, &id, &existed, &err), SY_OK);
    assert_true(id == 3 && existed == 0);
    assert_int_equal(queue_hold_rule_add(f->q, &r1, &id, &existed, &err), SY_OK);
    assert_true(id == 3 && existed == 1);
    for (size_t i = 1; i < QUEUE_HOLD_RULES_MAX; i++) {
        assert_int_equal(hold_rule_set(&r2, NULL, NULL, NULL, (int64_t) (1900000000 + i), &err), SY_OK);
        assert_int_equal(queue_hold_rule_add(f->q, &r2, &id, &existed, &err), SY_OK);
        assert_int_equal(existed, 0);
    }
    assert_int_equal(hold_rule_set(&r2, NULL, NULL, NULL, 1800000000, &err), SY_OK);
    assert_int_equal(queue_hold_rule_add(f->q, &r2, &id, &existed, &err), SY_ETOOBIG);
    assert_string_equal(err.enh, "5.3.4");
    memset(&s, 0, sizeof(s));
    assert_int_equal(queue_hold_rules_load(f->q, &s, &err), SY_OK);
    assert_int_equal(s.n, QUEUE_HOLD_RULES_MAX);
    queue_hold_set_free(&s);
}

/* ---- tag and timed release ----------------------------------------------- */

static void test_tag_sweep(void **state)
{
    struct fixture *f = *state;
    const unsigned char held[3] = { 1, 1, 0 };
    struct queue_hold_tag tags[2] = { { 0, 5, 1700000600 }, { 1, 6, 0 } };
    char qid[QID_SIZE], q2[QID_SIZE];
    size_t n;
    struct sy_err err;

    make_qid(1, qid);
    make_qid(2, q2);
    insert(f->q, qid, 3, held, 1700000000000, 0);
    insert(f->q, q2, 1, held, 1700000000000, 1700000900);
    assert_int_equal(queue_hold_tag(f->q, qid, tags, 2, &err), SY_OK);
    assert_int_equal(queue_hold_tag(f->q, qid, tags, 2, &err), SY_OK);   /* idempotent */
    assert_str(rfield(qid, 0, "held_by"), "5");
    assert_str(rfield(qid, 1, "held_by"), "6");
    assert_str(zscore("held", qid, 0), "1700000600");
    assert_str(zscore("held", qid, 1), "inf");
    assert_str(rfield(qid, 2, "held_by"), NULL);        /* not held: untouched */
    /* q2 is held manually (score 0) */

    /* before the end: nothing; the sweep ignores manual holds */
    assert_int_equal(queue_hold_sweep(f->q, 1700000599, &n, &err), SY_OK);
    assert_int_equal(n, 0);
    assert_int_equal(queue_hold_sweep(f->q, 1700000600, &n, &err), SY_OK);
    assert_int_equal(n, 1);
    assert_str(rfield(qid, 0, "state"), "queued");
    assert_str(rfield(qid, 0, "held_by"), NULL);
    {
        char *rel = rfield(qid, 0, "released_ms"), *nx = rfield(qid, 0, "next_ms");

        assert_non_null(rel);
        assert_string_equal(rel, nx);
        assert_str(zscore("sched", qid, 0), nx);
        free(rel);
        free(nx);
    }
    assert_str(zscore("held", qid, 0), NULL);
    assert_int_equal(queue_hold_sweep(f->q, 1800000000, &n, &err), SY_OK);
    assert_int_equal(n, 0);
    assert_str(rfield(qid, 1, "state"), "held");
    assert_str(rfield(q2, 0, "state"), "held");

    /* bad tags */
    tags[0].rule = 0;
    assert_int_equal(queue_hold_tag(f->q, qid, tags, 1, &err), SY_ESYNTAX);
    assert_int_equal(queue_hold_tag(f->q, "nope", tags, 1, &err), SY_ESYNTAX);
}

/* The rule is written by INSERT itself (queue_insert_held): no second
 * script, so no crash can leave a rule-held recipient without its rule. */
static void test_insert_held(void **state)
{
    struct fixture *f = *state;
    const unsigned char held[4] = { 0, 0, 0, 1 };
    struct queue_hold_tag tags[2] = { { 0, 5, 1700000600 }, { 2, 6, 0 } };
    static const char digest[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    char qid[QID_SIZE], q2[QID_SIZE], dup[QID_SIZE];
    struct envelope e;
    long long keys;
    size_t n;
    struct sy_err err;

    env_init(&e);
    env_set(&e.sender, "s@example.org");
    e.arrival_us = INT64_C(1700000000000000);
    for (size_t i = 0; i < 4; i++) {
        struct env_rcpt r;
        char addr[64];

        memset(&r, 0, sizeof(r));
        (void) snprintf(addr, sizeof(addr), "r%zu@example.net", i);
        r.addr = xstrdup(addr);
        env_add_rcpt(&e, &r);
    }
    make_qid(7, qid);
    make_qid(8, q2);
    assert_int_equal(queue_insert_held(f->q, qid, &e, held, tags, 2, 1700000000000, digest, 60, dup,
                                       &err), SY_OK);
    assert_string_equal(dup, "");
    assert_str(rfield(qid, 0, "state"), "held");
    assert_str(rfield(qid, 0, "held_by"), "5");
    assert_str(zscore("held", qid, 0), "1700000600");
    assert_str(rfield(qid, 1, "state"), "queued");
    assert_str(rfield(qid, 1, "held_by"), NULL);
    assert_str(zscore("held", qid, 1), NULL);
    assert_str(zscore("sched", qid, 1), "1700000000000");
    assert_str(rfield(qid, 2, "held_by"), "6");
    assert_str(zscore("held", qid, 2), "inf");
    assert_str(zscore("sched", qid, 2), NULL);
    assert_str(rfield(qid, 3, "state"), "held");            /* held without a rule */
    assert_str(rfield(qid, 3, "held_by"), NULL);
    assert_str(zscore("held", qid, 3), "0");
    /* queue_hold_tag() afterwards finds nothing left to do */
    assert_int_equal(queue_hold_tag(f->q, qid, tags, 2, &err), SY_OK);
    assert_str(zscore("held", qid, 0), "1700000600");

    /* a repeat changes nothing; the same digest under another id is a retry */
    keys = raw_int("DBSIZE");
    assert_int_equal(queue_insert_held(f->q, qid, &e, NULL, NULL, 0, 1, digest, 60, dup, &err), SY_OK);
    assert_int_equal(raw_int("DBSIZE"), keys);
    assert_str(zscore("held", qid, 0), "1700000600");
    assert_int_equal(queue_insert_held(f->q, q2, &e, NULL, tags, 2, 1, digest, 60, dup, &err), SY_OK);
    assert_string_equal(dup, qid);
    assert_int_equal(raw_int("DBSIZE"), keys);

    /* bad tags: refused before anything is written */
    {
        struct queue_hold_tag bad[][2] = {
            { { 4, 5, 0 }, { 0, 5, 0 } },       /* idx past nrcpt */
            { { 1, 5, 0 }, { 1, 6, 0 } },       /* one recipient twice */
            { { 1, 0, 0 }, { 0, 5, 0 } },       /* rule 0 */
            { { 1, 5, -1 }, { 0, 5, 0 } },      /* negative end */
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
            assert_int_equal(queue_insert_held(f->q, q2, &e, NULL, bad[i], 2, 1, NULL, 0, NULL, &err),
                             SY_ESYNTAX);
        assert_int_equal(queue_insert_held(f->q, q2, &e, NULL, NULL, 1, 1, NULL, 0, NULL, &err),
                         SY_ESYNTAX);
        assert_int_equal(raw_int("DBSIZE"), keys);
    }
    /* no digest: a plain insert with the rules */
    assert_int_equal(queue_insert_held(f->q, q2, &e, NULL, tags + 1, 1, 1, NULL, 0, NULL, &err), SY_OK);
    assert_str(rfield(q2, 2, "held_by"), "6");
    assert_str(zscore("held", q2, 2), "inf");
    assert_str(rfield(q2, 0, "state"), "queued");
    env_free(&e);

    /* the rule's end releases what INSERT tagged */
    assert_int_equal(queue_hold_sweep(f->q, 1700000600, &n, &err), SY_OK);
    assert_int_equal(n, 1);
    assert_str(rfield(qid, 0, "state"), "queued");
    assert_str(rfield(qid, 0, "held_by"), NULL);
    assert_str(rfield(qid, 3, "state"), "held");
}

static void test_orphans(void **state)
{
    struct fixture *f = *state;
    const unsigned char held[3] = { 1, 1, 1 };
    struct hold_rule r;
    struct queue_hold_tag tags[3];
    char qid[QID_SIZE];
    uint64_t id1, id2;
    size_t n;
    struct sy_err err;

    hold_rule_init(&r);
    assert_int_equal(queue_hold_rule_add(f->q, &r, &id1, NULL, &err), SY_OK);
    assert_int_equal(hold_rule_set(&r, "x@example.org", NULL, NULL, 0, &err), SY_OK);
    assert_int_equal(queue_hold_rule_add(f->q, &r, &id2, NULL, &err), SY_OK);
    assert_true(id1 != id2);
    make_qid(3, qid);
    insert(f->q, qid, 3, held, 1700000000000, 0);
    tags[0] = (struct queue_hold_tag) { 0, id1, 0 };
    tags[1] = (struct queue_hold_tag) { 1, id2, 0 };
    tags[2] = (struct queue_hold_tag) { 2, 99, 0 };     /* an id past seq: being added */
    assert_int_equal(queue_hold_tag(f->q, qid, tags, 3, &err), SY_OK);

    /* no removal yet: nothing */
    assert_int_equal(queue_hold_sweep(f->q, clock_real_ms() / 1000, &n, &err), SY_OK);
    assert_int_equal(n, 0);
    assert_int_equal(queue_hold_rule_rm(f->q, id1, clock_real_ms(), &err), SY_OK);
    assert_int_equal(queue_hold_sweep(f->q, clock_real_ms() / 1000, &n, &err), SY_OK);
    assert_int_equal(n, 1);
    assert_str(rfield(qid, 0, "state"), "queued");
    assert_str(rfield(qid, 1, "state"), "held");
    assert_str(rfield(qid, 2, "state"), "held");
    /* the node remembers the gen it checked */
    {
        char *g = raw_str("GET " GKEY("gen"));

        assert_str(raw_str("GET " KEY("holdgen")), g);
        free(g);
    }
    /* a manual hold over a rule hold survives the rule's removal */
    assert_int_equal(apply(f->q, QUEUE_OP_HOLD, qid, 1, NULL), 1);
    assert_str(rfield(qid, 1, "held_by"), NULL);
    assert_int_equal(queue_hold_rule_rm(f->q, id2, clock_real_ms(), &err), SY_OK);
    assert_int_equal(queue_hold_sweep(f->q, clock_real_ms() / 1000, &n, &err), SY_OK);
    assert_int_equal(n, 0);
    assert_str(rfield(qid, 1, "state"), "held");
}

/* A large backlog of a removed rule is released in bounded ORPHAN runs:
 * 5,000 of 7,500 held entries (the rest: a live rule's and manual holds),
 * all +inf or one finite score, so the cursor walks long same-score runs. */
static void test_orphans_bounded(void **state)
{
    struct fixture *f = *state;
    struct hold_rule r;
    struct queue_orphan_cursor cur;
    char qid[QID_SIZE];
    char *gen;
    uint64_t id1, id2;
    size_t n, total = 0, pending = 0;
    int done = -1;
    struct sy_err err;
    redisReply *rep;

    hold_rule_init(&r);
    assert_int_equal(queue_hold_rule_add(f->q, &r, &id1, NULL, &err), SY_OK);
    assert_int_equal(hold_rule_set(&r, "x@example.org", NULL, NULL, 0, &err), SY_OK);
    assert_int_equal(queue_hold_rule_add(f->q, &r, &id2, NULL, &err), SY_OK);
    /* 50 messages of 150 recipients: idx % 6 in 1..4 held by id1 (5,000),
     * 0 by id2, 5 manually (score 0); odd messages' rule score +inf */
    for (unsigned m = 0; m < 50; m++) {
        make_qid(100 + m, qid);
        redisAppendCommand(rawc, "HSET " KEY("msg:%s") " nrcpt 150 hold_until 0", qid);
        pending++;
        for (unsigned i = 0; i < 150; i++) {
            const char *score = i % 6 == 5 ? "0" : m % 2 ? "+inf" : "1900000000";

            if (i % 6 == 5)
                redisAppendCommand(rawc, "HSET " KEY("rcpt:%s:%u") " state held", qid, i);
            else
                redisAppendCommand(rawc, "HSET " KEY("rcpt:%s:%u") " state held held_by %llu",
                                   qid, i, (unsigned long long) (i % 6 == 0 ? id2 : id1));
            redisAppendCommand(rawc, "ZADD " KEY("held") " %s %s:%u", score, qid, i);
            pending += 2;
        }
    }
    for (; pending > 0; pending--) {
        assert_int_equal(redisGetReply(rawc, (void **) &rep), REDIS_OK);
        assert_int_not_equal(rep->type, REDIS_REPLY_ERROR);
        freeReplyObject(rep);
    }
    assert_int_equal(raw_int("ZCARD " KEY("held")), 7500);
    assert_int_equal(queue_hold_rule_rm(f->q, id1, clock_real_ms(), &err), SY_OK);
    gen = raw_str("GET " GKEY("gen"));
    assert_non_null(gen);

    /* one run examines at most its bound and records nothing as checked */
    memset(&cur, 0, sizeof(cur));
    assert_int_equal(queue_hold_orphan_batch(f->q, gen, 1000, &cur, &n, &done, &err), SY_OK);
    assert_true(n > 0 && n <= 1000);
    assert_int_equal(done, 0);
    assert_true(cur.member[0] != '\0');
    total += n;
    assert_int_equal(raw_int("ZCARD " KEY("held")), (long long) (7500 - total));
    assert_str(raw_str("GET " KEY("holdgen")), NULL);
    /* the cursor's entry vanishing (an administrator's release) restarts
     * that score's run: nothing is skipped */
    raw_do("ZREM " KEY("held") " %s", cur.member);
    assert_int_equal(queue_hold_orphan_batch(f->q, gen, 1000, &cur, &n, &done, &err), SY_OK);
    assert_true(n > 0 && n <= 1000);
    assert_int_equal(done, 0);
    total += n;
    assert_str(raw_str("GET " KEY("holdgen")), NULL);
    /* runs until the end, each bounded; the last records gen */
    for (unsigned runs = 0; done == 0; runs++) {
        assert_true(runs < 20);
        assert_int_equal(queue_hold_orphan_batch(f->q, gen, 1000, &cur, &n, &done, &err), SY_OK);
        assert_true(n <= 1000);
        total += n;
    }
    assert_int_equal(total, 5000);
    assert_str(raw_str("GET " KEY("holdgen")), gen);
    assert_int_equal(raw_int("ZCARD " KEY("held")), 2499);
    assert_int_equal(raw_int("ZCOUNT " KEY("held") " 0 0"), 1250);
    make_qid(101, qid);
    assert_str(rfield(qid, 1, "state"), "queued");
    assert_str(rfield(qid, 1, "held_by"), NULL);
    {
        char *sc = raw_str("ZSCORE " KEY("sched") " %s:1", qid);

        assert_non_null(sc);
        free(sc);
    }
    assert_str(rfield(qid, 6, "state"), "held");
    assert_str(rfield(qid, 5, "state"), "held");
    /* a repeat finds nothing; bad sizes are refused */
    memset(&cur, 0, sizeof(cur));
    assert_int_equal(queue_hold_orphan_batch(f->q, gen, 1000, &cur, &n, &done, &err), SY_OK);
    assert_int_equal(n, 0);
    assert_int_equal(queue_hold_orphan_batch(f->q, gen, 0, &cur, &n, &done, &err), SY_ESYNTAX);

    /* the sweep does the same in one call: a second rule's 1,250 */
    assert_int_equal(queue_hold_rule_rm(f->q, id2, clock_real_ms(), &err), SY_OK);
    assert_int_equal(queue_hold_sweep(f->q, clock_real_ms() / 1000, &n, &err), SY_OK);
    assert_int_equal(n, 1249);
    assert_int_equal(raw_int("ZCARD " KEY("held")), 1250);
    free(gen);
    gen = raw_str("GET " GKEY("gen"));
    assert_str(raw_str("GET " KEY("holdgen")), gen);
    free(gen);
}

/* ---- operations ------------------------------------------------------------ */

static void test_ops(void **state)
{
    struct fixture *f = *state;
    const unsigned char held[4] = { 1, 0, 0, 0 };
    char qid[QID_SIZE], q2[QID_SIZE], done[2][QID_SIZE];
    struct queue_target t[2];
    struct queue_op_req req = { QUEUE_OP_DROP_NOW, NULL, 0, 0, 1700000700000 };
    size_t n, nd;
    struct sy_err err;

    make_qid(4, qid);
    insert(f->q, qid, 4, held, 1700000000000, 0);

    /* release: held -> queued due now; again: nothing */
    assert_int_equal(apply(f->q, QUEUE_OP_RELEASE, qid, 0, NULL), 1);
    assert_int_equal(apply(f->q, QUEUE_OP_RELEASE, qid, 0, NULL), 0);
    assert_str(rfield(qid, 0, "state"), "queued");
    assert_str(zscore("sched", qid, 0), "1700000500000");
    assert_str(rfield(qid, 0, "released_ms"), "1700000500000");
    /* hold: queued -> held (manual, score 0) */
    assert_int_equal(apply(f->q, QUEUE_OP_HOLD, qid, 1, NULL), 1);
    assert_int_equal(apply(f->q, QUEUE_OP_HOLD, qid, 1, NULL), 0);
    assert_str(rfield(qid, 1, "state"), "held");
    assert_str(zscore("held", qid, 1), "0");
    assert_str(zscore("sched", qid, 1), NULL);
    /* kick: due now, unless leased (score moved past next_ms by a claim) */
    assert_int_equal(apply(f->q, QUEUE_OP_KICK, qid, 2, NULL), 1);
    assert_str(zscore("sched", qid, 2), "1700000500000");
    assert_str(rfield(qid, 2, "next_ms"), "1700000500000");
    raw_do("ZADD " KEY("sched") " 1700000999999 %s:2", qid);
    assert_int_equal(apply(f->q, QUEUE_OP_KICK, qid, 2, NULL), 0);
    assert_int_equal(apply(f->q, QUEUE_OP_KICK, qid, 1, NULL), 0);     /* held */
    /* reroute: a field, due now when queued (here leased: left) */
    assert_int_equal(apply(f->q, QUEUE_OP_REROUTE, qid, 2, "smarthost"), 1);
    assert_str(rfield(qid, 2, "reroute"), "smarthost");
    assert_str(zscore("sched", qid, 2), "1700000999999");
    /* fail on a held recipient: admin=fail and released */
    assert_int_equal(apply(f->q, QUEUE_OP_FAIL, qid, 1, NULL), 1);
    assert_str(rfield(qid, 1, "admin"), "fail");
    assert_str(rfield(qid, 1, "state"), "queued");
    /* drop: admin=drop for the scheduler */
    assert_int_equal(apply(f->q, QUEUE_OP_DROP, qid, 3, NULL), 1);
    assert_str(rfield(qid, 3, "admin"), "drop");
    assert_str(rfield(qid, 3, "state"), "queued");

    /* drop now: every recipient final, the message done (reported once
     * per message, and again on a repeat so the spool file goes) */
    for (unsigned i = 0; i < 2; i++) {
        memcpy(t[i].qid, qid, QID_SIZE);
        t[i].idx = i;
    }
    assert_int_equal(queue_admin_apply(f->q, &req, t, 2, &n, done, &nd, &err), SY_OK);
    assert_int_equal(n, 2);
    assert_int_equal(nd, 0);
    t[0].idx = 2;
    t[1].idx = 3;
    assert_int_equal(queue_admin_apply(f->q, &req, t, 2, &n, done, &nd, &err), SY_OK);
    assert_int_equal(n, 2);
    assert_int_equal(nd, 1);
    assert_string_equal(done[0], qid);
    assert_str(rfield(qid, 3, "state"), "failed");
    assert_str(rfield(qid, 3, "last_reply"), "5.0.0 dropped by administrator");
    assert_str(raw_str("HGET " KEY("msg:%s") " state", qid), "done");
    assert_str(raw_str("HGET " KEY("msg:%s") " nfinal", qid), "4");
    assert_str(raw_str("ZSCORE " KEY("index") " %s", qid), NULL);
    assert_str(raw_str("ZSCORE " KEY("done") " %s", qid), "1700000700000");
    assert_str(zscore("sched", qid, 2), NULL);
    assert_int_equal(queue_admin_apply(f->q, &req, t, 2, &n, done, &nd, &err), SY_OK);
    assert_int_equal(n, 0);
    assert_int_equal(nd, 1);
    assert_str(raw_str("HGET " KEY("msg:%s") " nfinal", qid), "4");

    /* rule hold (hold add --apply) and FUTURERELEASE on release */
    make_qid(5, q2);
    insert(f->q, q2, 1, NULL, 1700000000000, 1700000800);
    req = (struct queue_op_req) { QUEUE_OP_RULE_HOLD, NULL, 42, 0, 1700000500000 };
    memcpy(t[0].qid, q2, QID_SIZE);
    t[0].idx = 0;
    assert_int_equal(queue_admin_apply(f->q, &req, t, 1, &n, NULL, NULL, &err), SY_OK);
    assert_int_equal(n, 1);
    assert_str(rfield(q2, 0, "held_by"), "42");
    assert_str(zscore("held", q2, 0), "inf");
    assert_int_equal(apply(f->q, QUEUE_OP_RELEASE, q2, 0, NULL), 1);
    assert_str(zscore("sched", q2, 0), "1700000800000");

    /* unknown recipients are skipped */
    make_qid(6, t[0].qid);
    assert_int_equal(apply(f->q, QUEUE_OP_HOLD, t[0].qid, 0, NULL), 0);
    assert_int_equal(apply(f->q, QUEUE_OP_HOLD, q2, 7, NULL), 0);
}

/* A recipient held while a worker attempts it (review finding 2): the
 * release must not make it due before the claim's lease ends, or a second
 * worker delivers it concurrently; neither may kick. The lease end comes
 * from CLAIM's lease_ms; RECORD ends it. Stored hold_until and lease_ms
 * are clamped, never trusted. */
static void test_release_leased(void **state)
{
    struct fixture *f = *state;
    struct queue_result res = { .state = QUEUE_QUEUED, .next_ms = 1700000900000, .at_ms = 1700000600000,
                                .transport = "relay", .reply = "451 later" };
    struct queue_claim c[2];
    char qid[QID_SIZE], q2[QID_SIZE];
    uint64_t tok;
    size_t n;
    struct sy_err err;

    make_qid(20, qid);
    insert(f->q, qid, 1, NULL, 1700000000000, 0);
    /* worker A claims it: lease until 1700000400000 + 600000 */
    assert_int_equal(queue_claim_due(f->q, 1700000400000, 600000, c, 2, &n, &err), SY_OK);
    assert_int_equal(n, 1);
    assert_str(rfield(qid, 0, "lease_ms"), "1700001000000");
    tok = c[0].token;
    /* held during the attempt, released at 1700000500000 (apply()'s now) */
    assert_int_equal(apply(f->q, QUEUE_OP_HOLD, qid, 0, NULL), 1);
    assert_str(zscore("sched", qid, 0), NULL);
    assert_int_equal(apply(f->q, QUEUE_OP_RELEASE, qid, 0, NULL), 1);
    assert_str(rfield(qid, 0, "state"), "queued");
    assert_str(zscore("sched", qid, 0), "1700001000000");
    /* not due before the lease ends: no second claim, no kick */
    assert_int_equal(queue_claim_due(f->q, 1700000500001, 600000, c, 2, &n, &err), SY_OK);
    assert_int_equal(n, 0);
    assert_int_equal(apply(f->q, QUEUE_OP_KICK, qid, 0, NULL), 0);
    assert_str(zscore("sched", qid, 0), "1700001000000");
    /* A records its deferral: the lease ends, the deferral's time holds */
    res.token = tok;
    assert_int_equal(queue_record_result(f->q, qid, 0, &res, NULL, &err), SY_OK);
    assert_str(rfield(qid, 0, "lease_ms"), NULL);
    assert_str(zscore("sched", qid, 0), "1700000900000");
    /* with no lease running, hold and release make it due now */
    assert_int_equal(apply(f->q, QUEUE_OP_HOLD, qid, 0, NULL), 1);
    assert_int_equal(apply(f->q, QUEUE_OP_RELEASE, qid, 0, NULL), 1);
    assert_str(zscore("sched", qid, 0), "1700000500000");

    /* hostile stored values: a lease end far ahead counts as a day; a
     * hold_until that would overflow is clamped to year 9999 */
    assert_int_equal(apply(f->q, QUEUE_OP_HOLD, qid, 0, NULL), 1);
    raw_do("HSET " KEY("rcpt:%s:0") " lease_ms 9e300", qid);
    assert_int_equal(apply(f->q, QUEUE_OP_RELEASE, qid, 0, NULL), 1);
    assert_str(zscore("sched", qid, 0), "1700086900000");
    make_qid(21, q2);
    insert(f->q, q2, 1, (const unsigned char *) "\1", 1700000000000, 0);
    raw_do("HSET " KEY("msg:%s") " hold_until 9223372036854775807", q2);
    assert_int_equal(apply(f->q, QUEUE_OP_RELEASE, q2, 0, NULL), 1);
    assert_str(zscore("sched", q2, 0), "253402300799000");
    assert_int_equal(apply(f->q, QUEUE_OP_HOLD, q2, 0, NULL), 1);
    raw_do("HSET " KEY("msg:%s") " hold_until nan", q2);
    raw_do("HSET " KEY("rcpt:%s:0") " lease_ms -inf", q2);
    assert_int_equal(apply(f->q, QUEUE_OP_RELEASE, q2, 0, NULL), 1);
    assert_str(zscore("sched", q2, 0), "1700000500000");
}

static void test_bad_args(void **state)
{
    struct fixture *f = *state;
    struct queue_op_req req = { QUEUE_OP_REROUTE, "bad name", 0, 0, 1 };
    struct queue_target t[1];
    size_t n, nd;
    struct sy_err err;

    make_qid(1, t[0].qid);
    t[0].idx = 0;
    assert_int_equal(queue_admin_apply(f->q, &req, t, 1, &n, NULL, &nd, &err), SY_ESYNTAX);
    req.transport = NULL;
    assert_int_equal(queue_admin_apply(f->q, &req, t, 1, &n, NULL, &nd, &err), SY_ESYNTAX);
    req = (struct queue_op_req) { 99, NULL, 0, 0, 1 };
    assert_int_equal(queue_admin_apply(f->q, &req, t, 1, &n, NULL, &nd, &err), SY_ESYNTAX);
    req = (struct queue_op_req) { QUEUE_OP_RULE_HOLD, NULL, 0, 0, 1 };
    assert_int_equal(queue_admin_apply(f->q, &req, t, 1, &n, NULL, &nd, &err), SY_ESYNTAX);
    req = (struct queue_op_req) { QUEUE_OP_HOLD, NULL, 0, 0, 1 };
    assert_int_equal(queue_admin_apply(f->q, &req, t, QUEUE_OP_BATCH_MAX + 1, &n, NULL, &nd, &err),
                     SY_ETOOBIG);
    memcpy(t[0].qid, "not-a-qid", 10);
    assert_int_equal(queue_admin_apply(f->q, &req, t, 1, &n, NULL, &nd, &err), SY_ESYNTAX);
    assert_int_equal(queue_hold_sweep(f->q, -1, &n, &err), SY_ESYNTAX);
}

/* ---- fetch ---------------------------------------------------------------- */

static void test_fetch(void **state)
{
    struct fixture *f = *state;
    char ids[4][QID_SIZE];
    struct queue_admin_msg m[4];
    const unsigned char held[2] = { 0, 1 };
    size_t n, used;
    struct sy_err err;

    make_qid(10, ids[0]);
    make_qid(11, ids[1]);       /* unknown */
    make_qid(12, ids[2]);
    insert(f->q, ids[0], 2, held, 1700000000000, 0);
    insert(f->q, ids[2], 1, NULL, 1700000001000, 0);
    raw_do("HSET " KEY("rcpt:%s:0") " transport capture reroute smarthost admin fail last_reply %s",
           ids[0], "4.0.0 try later");
    assert_int_equal(queue_admin_fetch(f->q, (const char (*)[QID_SIZE]) ids, 3, m, &n, &used, &err), SY_OK);
    assert_int_equal(n, 2);
    assert_int_equal(used, 3);
    assert_string_equal(m[0].qid, ids[0]);
    assert_string_equal(m[0].sender, "s@example.org");
    assert_string_equal(m[0].listener, "lmtp0");
    assert_string_equal(m[0].state, "active");
    assert_true(m[0].arrival_us == INT64_C(1700000000000000) && m[0].size == 10);
    assert_int_equal(m[0].nrcpt, 2);
    assert_string_equal(m[0].rcpts[0].addr, "r0@example.net");
    assert_int_equal(m[0].rcpts[0].state, QUEUE_QUEUED);
    assert_true(m[0].rcpts[0].sched_ms == 1700000000000 && m[0].rcpts[0].held_score == -1);
    assert_string_equal(m[0].rcpts[0].transport, "capture");
    assert_string_equal(m[0].rcpts[0].reroute, "smarthost");
    assert_string_equal(m[0].rcpts[0].admin, "fail");
    assert_string_equal(m[0].rcpts[0].last_reply, "4.0.0 try later");
    assert_int_equal(m[0].rcpts[1].state, QUEUE_HELD);
    assert_true(m[0].rcpts[1].held_score == 0 && m[0].rcpts[1].sched_ms == 0);
    assert_null(m[0].rcpts[1].transport);
    assert_string_equal(m[1].qid, ids[2]);
    for (size_t i = 0; i < n; i++)
        queue_admin_msg_free(&m[i]);

    /* hostile data: a bad state or number fails the call, nothing leaks */
    raw_do("HSET " KEY("rcpt:%s:1") " state bogus", ids[0]);
    assert_int_equal(queue_admin_fetch(f->q, (const char (*)[QID_SIZE]) ids, 3, m, &n, &used, &err),
                     SY_ETEMP);
    assert_non_null(strstr(err.text, "recipient state"));
    raw_do("HSET " KEY("rcpt:%s:1") " state held held_by x1", ids[0]);
    assert_int_equal(queue_admin_fetch(f->q, (const char (*)[QID_SIZE]) ids, 3, m, &n, &used, &err),
                     SY_ETEMP);
    raw_do("HDEL " KEY("rcpt:%s:1") " held_by", ids[0]);
    raw_do("HSET " KEY("msg:%s") " nrcpt 100001", ids[0]);
    assert_int_equal(queue_admin_fetch(f->q, (const char (*)[QID_SIZE]) ids, 3, m, &n, &used, &err),
                     SY_ETEMP);
}

static void test_fetch_budget(void **state)
{
    struct fixture *f = *state;
    char ids[2][QID_SIZE];
    struct queue_admin_msg m[2];
    size_t n, used;
    struct sy_err err;

    make_qid(20, ids[0]);
    make_qid(21, ids[1]);
    insert(f->q, ids[0], 15000, NULL, 1700000000000, 0);
    insert(f->q, ids[1], 15000, NULL, 1700000000000, 0);
    /* the first message always; the second would pass the budget */
    assert_int_equal(queue_admin_fetch(f->q, (const char (*)[QID_SIZE]) ids, 2, m, &n, &used, &err), SY_OK);
    assert_int_equal(n, 1);
    assert_int_equal(used, 1);
    assert_int_equal(m[0].nrcpt, 15000);
    assert_string_equal(m[0].rcpts[14999].addr, "r14999@example.net");
    queue_admin_msg_free(&m[0]);
    assert_int_equal(queue_admin_fetch(f->q, (const char (*)[QID_SIZE]) ids + 1, 1, m, &n, &used, &err),
                     SY_OK);
    assert_int_equal(n, 1);
    queue_admin_msg_free(&m[0]);
}

/* ---- hold add --until ------------------------------------------------------ */

static void test_parse_until(void **state)
{
    static const struct {
        const char *in;
        int rc;
        int64_t want;
    } cases[] = {
        { "1767225600", SY_OK, 1767225600 },
        { "+90s", SY_OK, 1000000090 },
        { "+2h", SY_OK, 1000007200 },
        { "+1d", SY_OK, 1000086400 },
        { "2026-01-01T00:00:00Z", SY_OK, 1767225600 },
        { "2026-01-01T00:00Z", SY_OK, 1767225600 },
        { "2026-01-01t00:00:00.75z", SY_OK, 1767225600 },
        { "2026-01-01T01:30:00+01:30", SY_OK, 1767225600 },
        { "2025-12-31T23:00:00-01:00", SY_OK, 1767225600 },
        { "2024-02-29T12:00:00Z", SY_OK, 1709208000 },
        { "9999-12-31T23:59:59Z", SY_OK, INT64_C(253402300799) },
        { "2023-02-29T12:00:00Z", SY_ESYNTAX, 0 },   /* not a leap year */
        { "2026-04-31T00:00:00Z", SY_ESYNTAX, 0 },
        { "2026-01-01T24:00:00Z", SY_ESYNTAX, 0 },
        { "2026-01-01T00:00:00", SY_ESYNTAX, 0 },    /* no zone */
        { "2026-01-01T00:00:00+0100", SY_ESYNTAX, 0 },
        { "2026-01-01", SY_ESYNTAX, 0 },
        { "1969-12-31T23:59:59Z", SY_ESYNTAX, 0 },
        { "0", SY_ESYNTAX, 0 },
        { "253402300800", SY_ESYNTAX, 0 },
        { "+", SY_ESYNTAX, 0 },
        { "+0s", SY_ESYNTAX, 0 },
        { "+5x", SY_ESYNTAX, 0 },
        { "-5", SY_ESYNTAX, 0 },
        { "", SY_ESYNTAX, 0 },
        { "soon", SY_ESYNTAX, 0 },
    };

    (void) state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t got = -1;
        int rc = cli_hold_parse_until(cases[i].in, 1000000000, &got);

        print_message("%s\n", cases[i].in);
        assert_int_equal(rc, cases[i].rc);
        if (rc == SY_OK)
            assert_true(got == cases[i].want);
        else
            assert_true(got == -1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_until),
        cmocka_unit_test_setup_teardown(test_rules, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_tag_sweep, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_insert_held, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_orphans, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_orphans_bounded, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_ops, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_release_leased, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_bad_args, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_fetch, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_fetch_budget, test_setup, test_teardown),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
