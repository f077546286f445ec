/* queue.c - the Redis-backed queue index (the only user of hiredis)
 *
 * Every change that touches more than one key is one Lua script, sent by
 * EVALSHA (EVAL when the server answers NOSCRIPT), so Redis applies it
 * whole or not at all; each script is written so that running it twice
 * leaves the same state as running it once (docs/redis-schema.md). Values
 * travel as length-counted arguments of redisCommandArgv, never through a
 * format string.
 *
 * Every reply is hostile input (research/reliability.md B6): our own reply
 * object functions cap array sizes and the total reply size, each command
 * runs under one deadline for the whole round trip (poll() before every
 * read, not a per-read socket timeout), and every element is checked for
 * type, length and range before use. A connection that timed out, failed
 * or answered something unexpected is marked broken and closed by
 * queue_put(): a late reply would otherwise answer the next command.
 *
 * The process must ignore SIGPIPE (daemon.c does): hiredis writes with
 * write(2).
 *
 * Thread safety: the pool's idle stack and script digests are guarded by
 * its mutex; a struct queue is used by one thread at a time.
 */
#include "gateway/queue.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "gateway/util/clock.h"
#include "gateway/util/log.h"
#include "gateway/util/text.h"
#include "gateway/util/xalloc.h"

/* Idle connections kept per pool; more are closed on queue_put(). */
#define QUEUE_IDLE_MAX ((size_t) 64)
/* Longest key: prefix (64) + ":{" + node (64) + "}:" + "rcpt:" + qid +
 * ":" + index, with room to spare. */
#define QUEUE_KEY_MAX ((size_t) 256)
#define QUEUE_PREFIX_MAX ((size_t) 64)
#define QUEUE_NODE_MAX ((size_t) 64)
/* Recipients per message we store or read back. Postfix's
 * smtpd_recipient_limit default is 1000; this is a sanity bound on data
 * read from Redis, not a policy. */
#define QUEUE_RCPT_MAX ((size_t) 100000)
/* Largest reply we accept, and most elements in one array: a
 * `queue show` of QUEUE_RCPT_MAX recipients fits well inside both. */
#define QUEUE_REPLY_MAX ((size_t) 64 * 1024 * 1024)
#define QUEUE_ELEMS_MAX ((size_t) 1024 * 1024)
/* Most recipients claimed or ids listed in one round trip. */
#define QUEUE_BATCH_MAX ((size_t) 10000)
/* Stored last reply / transport name are cut here: 64 bytes is Redis's
 * hash-max-listpack-value default, and one longer value turns the
 * recipient's hash from a ~400-byte listpack into a hashtable of over
 * 1 KiB (docs/redis-schema.md). The full reply is in the log record. */
#define QUEUE_LAST_REPLY_MAX ((size_t) 64)
#define QUEUE_TRANSPORT_MAX ((size_t) 64)
/* Peer text quoted in an error. */
#define QUEUE_PEER_TEXT_MAX ((size_t) 160)
#define QUEUE_NUM_SIZE ((size_t) 24)
#define QUEUE_SHA_LEN ((size_t) 40)
/* Used when the configuration says 0 (cfg_redis defaults: 2 s). */
#define QUEUE_TIMEOUT_DEFAULT_MS ((uint64_t) 2000)

/* The scripts. KEYS are declared (all in the node's hash slot); recipient
 * keys are built inside the script from the declared prefix, which shares
 * the same {node} hash tag, so Redis Cluster serves them from one slot.
 *
 * Redis refuses a script under maxmemory only at its first write, so an
 * -OOM leaves nothing behind. Other mid-script errors (a key of the wrong
 * type) do not roll back what was written, so the writes are ordered for
 * that case: INSERT writes the message hash (what makes a retry a no-op)
 * last, so a retry redoes the whole insert; RECORD marks the recipient
 * before counting it final in the message, so a cut-short run can leave a
 * message never "done" (spool file kept) but never done too early.
 *
 * INSERT: KEYS msg sched held index [dedup]; ARGV rcpt-key-prefix
 * ("P:{N}:rcpt:QID:"), qid, next_ms, m, m message field/value args, nrcpt,
 * then per recipient: held ("0"/"1"), c, c field/value args, then (with
 * the dedup key) its lifetime in seconds. Returns 1 when written, 0 when
 * the message already existed (nothing changed), or, with a dedup key that
 * is already set, the queue id it names (nothing changed: this message is
 * a retry of that one). The message hash is the marker: it is written
 * last, after the dedup key. */
static const char queue_lua_insert[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "if #KEYS >= 5 then\n"
    "  local d = redis.call('GET', KEYS[5])\n"
    "  if d then return d end\n"
    "end\n"
    "local m = tonumber(ARGV[4])\n"
    "local p = 5 + m\n"
    "local n = tonumber(ARGV[p])\n"
    "p = p + 1\n"
    "for i = 0, n - 1 do\n"
    "  local c = tonumber(ARGV[p + 1])\n"
    "  local member = ARGV[2] .. ':' .. i\n"
    "  redis.call('HSET', ARGV[1] .. i, unpack(ARGV, p + 2, p + 1 + c))\n"
    "  if ARGV[p] == '1' then\n"
    "    redis.call('ZADD', KEYS[3], 0, member)\n"
    "  else\n"
    "    redis.call('ZADD', KEYS[2], ARGV[3], member)\n"
    "  end\n"
    "  p = p + 2 + c\n"
    "end\n"
    "redis.call('ZADD', KEYS[4], 0, ARGV[2])\n"
    "if #KEYS >= 5 then redis.call('SET', KEYS[5], ARGV[2], 'EX', ARGV[p]) end\n"
    "redis.call('HSET', KEYS[1], unpack(ARGV, 5, 4 + m))\n"
    "return 1\n";

/* CLAIM: KEYS sched; ARGV now_ms, lease_until_ms, max, rcpt-key-base
 * ("P:{N}:rcpt:"), msg-key-base ("P:{N}:msg:"). Returns member, attempts,
 * member, attempts, ... A schedule entry whose recipient is not "queued"
 * (gone, final, held), or whose message record is gone, is stale and is
 * dropped instead of claimed. */
static const char queue_lua_claim[] =
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])\n"
    "local out = {}\n"
    "for _, member in ipairs(due) do\n"
    "  local k = ARGV[4] .. member\n"
    "  local qid = string.match(member, '^(.+):%d+$')\n"
    "  if qid and redis.call('HGET', k, 'state') == 'queued'\n"
    "     and redis.call('EXISTS', ARGV[5] .. qid) == 1 then\n"
    "    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], member)\n"
    "    out[#out + 1] = member\n"
    "    out[#out + 1] = redis.call('HGET', k, 'attempts') or '0'\n"
    "  else\n"
    "    redis.call('ZREM', KEYS[1], member)\n"
    "  end\n"
    "end\n"
    "return out\n";

/* RECORD: KEYS msg rcpt sched held index done; ARGV member, qid, state
 * ("queued"|"delivered"|"failed"), next_ms, at_ms, transport, reply.
 * Returns -1 unknown recipient, 0 recorded, 1 recorded and the message is
 * done. A recipient already final, or a repeat of the same result (same
 * at_ms), changes nothing and reports the message's current state. */
static const char queue_lua_record[] =
    "local st = redis.call('HGET', KEYS[2], 'state')\n"
    "if not st or redis.call('EXISTS', KEYS[1]) == 0 then\n"
    "  redis.call('ZREM', KEYS[3], ARGV[1])\n"
    "  redis.call('ZREM', KEYS[4], ARGV[1])\n"
    "  return -1\n"
    "end\n"
    "if st == 'delivered' or st == 'failed' or st == 'missing'\n"
    "   or redis.call('HGET', KEYS[2], 'last_ms') == ARGV[5] then\n"
    "  if redis.call('HGET', KEYS[1], 'state') == 'done' then return 1 end\n"
    "  return 0\n"
    "end\n"
    "redis.call('HINCRBY', KEYS[2], 'attempts', 1)\n"
    "redis.call('HSET', KEYS[2], 'state', ARGV[3], 'last_ms', ARGV[5])\n"
    "if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], 'transport', ARGV[6])\n"
    "else redis.call('HDEL', KEYS[2], 'transport') end\n"
    "if ARGV[7] ~= '' then redis.call('HSET', KEYS[2], 'last_reply', ARGV[7])\n"
    "else redis.call('HDEL', KEYS[2], 'last_reply') end\n"
    "redis.call('ZREM', KEYS[4], ARGV[1])\n"
    "if ARGV[3] == 'queued' then\n"
    "  redis.call('HSET', KEYS[2], 'next_ms', ARGV[4])\n"
    "  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])\n"
    "  return 0\n"
    "end\n"
    "redis.call('HDEL', KEYS[2], 'next_ms')\n"
    "redis.call('ZREM', KEYS[3], ARGV[1])\n"
    "local nf = redis.call('HINCRBY', KEYS[1], 'nfinal', 1)\n"
    "local nr = tonumber(redis.call('HGET', KEYS[1], 'nrcpt'))\n"
    "if nr and nf >= nr then\n"
    "  redis.call('HSET', KEYS[1], 'state', 'done')\n"
    "  redis.call('ZREM', KEYS[5], ARGV[2])\n"
    "  redis.call('ZADD', KEYS[6], 'NX', ARGV[5], ARGV[2])\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

/* MISSING: KEYS msg sched held index done; ARGV rcpt-key-prefix, qid,
 * now_ms, max nrcpt. Returns -1 unknown message, 1 done. */
static const char queue_lua_missing[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end\n"
    "local n = tonumber(redis.call('HGET', KEYS[1], 'nrcpt')) or 0\n"
    "if n > tonumber(ARGV[4]) then return redis.error_reply('ERR nrcpt out of range') end\n"
    "for i = 0, n - 1 do\n"
    "  local k = ARGV[1] .. i\n"
    "  local member = ARGV[2] .. ':' .. i\n"
    "  local s = redis.call('HGET', k, 'state')\n"
    "  if s == 'queued' or s == 'held' then\n"
    "    redis.call('HSET', k, 'state', 'missing')\n"
    "    redis.call('HDEL', k, 'next_ms')\n"
    "  end\n"
    "  redis.call('ZREM', KEYS[2], member)\n"
    "  redis.call('ZREM', KEYS[3], member)\n"
    "end\n"
    "if redis.call('HGET', KEYS[1], 'state') ~= 'done' then\n"
    "  redis.call('HSET', KEYS[1], 'state', 'missing')\n"
    "end\n"
    "redis.call('ZREM', KEYS[4], ARGV[2])\n"
    "redis.call('ZADD', KEYS[5], 'NX', ARGV[3], ARGV[2])\n"
    "return 1\n";

/* SHOW (read-only): KEYS msg sched; ARGV rcpt-key-prefix, qid, max nrcpt.
 * Returns {} when unknown, else {msg-fields, rcpt0-fields, score0-or-nil,
 * rcpt1-fields, score1-or-nil, ...}. */
static const char queue_lua_show[] =
    "local h = redis.call('HGETALL', KEYS[1])\n"
    "if #h == 0 then return {} end\n"
    "local n = tonumber(redis.call('HGET', KEYS[1], 'nrcpt')) or 0\n"
    "if n > tonumber(ARGV[3]) then return redis.error_reply('ERR nrcpt out of range') end\n"
    "local out = {h}\n"
    "for i = 0, n - 1 do\n"
    "  out[#out + 1] = redis.call('HGETALL', ARGV[1] .. i)\n"
    "  out[#out + 1] = redis.call('ZSCORE', KEYS[2], ARGV[2] .. ':' .. i)\n"
    "end\n"
    "return out\n";

enum queue_script_id { QS_INSERT = 0, QS_CLAIM, QS_RECORD, QS_MISSING, QS_SHOW, QS_COUNT };

static const char *const queue_scripts[QS_COUNT] = {
    queue_lua_insert, queue_lua_claim, queue_lua_record, queue_lua_missing, queue_lua_show
};

struct queue_pool {
    const struct cfg_redis *cfg;        /* borrowed */
    char base[QUEUE_KEY_MAX];           /* "P:{N}:" */
    char where[QUEUE_KEY_MAX];          /* printable address, for errors */
    char bad[128];                      /* why the configuration is unusable, or "" */
    struct timeval connect_tv;
    int64_t connect_timeout_ms;
    int64_t cmd_timeout_ms;
    pthread_mutex_t lock;               /* guards idle, nidle, sha */
    struct queue *idle[QUEUE_IDLE_MAX];
    size_t nidle;
    char sha[QS_COUNT][QUEUE_SHA_LEN + 1];  /* "" until SCRIPT LOAD answered */
};

/* What one reply may still use; reset before each command. */
struct queue_budget {
    size_t bytes;
    size_t elems;
};

struct queue {
    redisContext *c;
    struct queue_pool *p;
    int broken;                         /* close on queue_put() */
    int64_t timeout_ms;                 /* per command: connect timeout until ready */
    struct queue_budget budget;
};

/* One command argument: borrowed bytes, or a number formatted in place. */
struct queue_arg {
    const char *p;
    size_t len;
    int is_num;
    char num[QUEUE_NUM_SIZE];
};

struct queue_args {
    struct queue_arg *v;
    size_t n, cap;
};

/* queue_state_name - the stored name of a recipient state */
const char *queue_state_name(int state)
{
    switch (state) {
    case QUEUE_QUEUED: return "queued";
    case QUEUE_HELD: return "held";
    case QUEUE_DELIVERED: return "delivered";
    case QUEUE_FAILED: return "failed";
    case QUEUE_MISSING: return "missing";
    default: return "unknown";
    }
}

/* queue_state_parse - stored name to enum queue_state; -1 when unknown */
static int queue_state_parse(const char *s, size_t n)
{
    for (int st = QUEUE_QUEUED; st <= QUEUE_MISSING; st++) {
        const char *name = queue_state_name(st);

        if (strlen(name) == n && memcmp(name, s, n) == 0)
            return st;
    }
    return -1;
}

/* ---- replies: our object functions, with a budget ---------------------- */

/* queue_reply_budget - charge one object to the reply's budget */
static int queue_reply_budget(const redisReadTask *task, size_t bytes, size_t elems)
{
    const redisReadTask *t = task;
    struct queue_budget *b;

    while (t->parent != NULL)
        t = t->parent;
    b = t->privdata;
    if (b == NULL)
        return 0;
    bytes += sizeof(redisReply);
    if (bytes > b->bytes || elems > b->elems)
        return -1;
    b->bytes -= bytes;
    b->elems -= elems;
    return 0;
}

/* queue_reply_new - a reply object linked into its parent array */
static redisReply *queue_reply_new(const redisReadTask *task, int type)
{
    redisReply *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->type = type;
    if (task->parent != NULL) {
        redisReply *parent = task->parent->obj;

        /* The reader only nests inside arrays it asked us to create. */
        if (parent == NULL || parent->type != REDIS_REPLY_ARRAY || task->idx < 0 ||
            (size_t) task->idx >= parent->elements) {
            free(r);
            return NULL;
        }
        parent->element[task->idx] = r;
    }
    return r;
}

static void *queue_reply_string(const redisReadTask *task, char *str, size_t len)
{
    redisReply *r;
    char *s;

    if (len >= QUEUE_REPLY_MAX || queue_reply_budget(task, len + 1, 0) != 0)
        return NULL;
    s = malloc(len + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, str, len);
    s[len] = '\0';
    r = queue_reply_new(task, task->type);
    if (r == NULL) {
        free(s);
        return NULL;
    }
    r->str = s;
    r->len = len;
    return r;
}

static void *queue_reply_array(const redisReadTask *task, int elements)
{
    redisReply *r;

    /* Caps what a hostile "*2000000000" would make the reader allocate. */
    if (elements < 0 || (size_t) elements > QUEUE_ELEMS_MAX ||
        queue_reply_budget(task, (size_t) elements * sizeof(redisReply *), (size_t) elements) != 0)
        return NULL;
    r = queue_reply_new(task, REDIS_REPLY_ARRAY);
    if (r == NULL)
        return NULL;
    if (elements > 0) {
        r->element = calloc((size_t) elements, sizeof(redisReply *));
        if (r->element == NULL) {
            if (task->parent != NULL)
                ((redisReply *) task->parent->obj)->element[task->idx] = NULL;
            free(r);
            return NULL;
        }
    }
    r->elements = (size_t) elements;
    return r;
}

static void *queue_reply_integer(const redisReadTask *task, long long value)
{
    redisReply *r;

    if (queue_reply_budget(task, 0, 0) != 0)
        return NULL;
    r = queue_reply_new(task, REDIS_REPLY_INTEGER);
    if (r != NULL)
        r->integer = value;
    return r;
}

static void *queue_reply_nil(const redisReadTask *task)
{
    if (queue_reply_budget(task, 0, 0) != 0)
        return NULL;
    return queue_reply_new(task, REDIS_REPLY_NIL);
}

/* Not const: hiredis 0.14 takes a non-const pointer. Read-only in use. */
static redisReplyObjectFunctions queue_reply_fns = {
    queue_reply_string, queue_reply_array, queue_reply_integer, queue_reply_nil, freeReplyObject
};

/* ---- errors ------------------------------------------------------------- */

/* queue_broken - mark q unusable and fail with SY_ETEMP 4.3.0:
 * "redis: what" or "redis: what: detail" (detail already made safe).
 * Not variadic, so static analysers follow the SY_ETEMP it returns. */
static int queue_broken(struct queue *q, struct sy_err *err, const char *what, const char *detail)
{
    q->broken = 1;
    if (detail != NULL)
        (void) sy_err_set(err, SY_ETEMP, "4.3.0", "redis: %s: %s", what, detail);
    else
        (void) sy_err_set(err, SY_ETEMP, "4.3.0", "redis: %s", what);
    return SY_ETEMP;
}

/* queue_ctx_error - a hiredis context error as text, q marked broken */
static int queue_ctx_error(struct queue *q, struct sy_err *err)
{
    char safe[QUEUE_PEER_TEXT_MAX];
    redisContext *c = q->c;

    switch (c->err) {
    case REDIS_ERR_EOF:
        return queue_broken(q, err, "connection closed by server", NULL);
    case REDIS_ERR_PROTOCOL:
        return queue_broken(q, err, "protocol error", log_safe(safe, sizeof(safe), c->errstr));
    case REDIS_ERR_OOM:
        /* Our object functions refused the reply (or malloc failed). */
        return queue_broken(q, err, "reply refused (too large or malformed)", NULL);
    case REDIS_ERR_IO:
        return queue_broken(q, err, "I/O error", log_safe(safe, sizeof(safe), c->errstr));
    default:
        return queue_broken(q, err, "error", log_safe(safe, sizeof(safe), c->errstr));
    }
}

/* Error replies: which ones mean "this connection should not be reused".
 * READONLY: we reached a replica (failover); reconnecting finds the new
 * primary. Auth errors and Cluster redirections: the session itself is
 * wrong. The rest (OOM, BUSY, LOADING, ...) are the server's condition:
 * the reply stream is still in step and the connection stays. */
struct queue_err_class {
    const char *prefix;
    int fatal;
};

static const struct queue_err_class queue_err_classes[] = {
    { "READONLY", 1 }, { "MASTERDOWN", 1 }, { "NOAUTH", 1 }, { "WRONGPASS", 1 },
    { "NOPERM", 1 }, { "MOVED", 1 }, { "ASK", 1 }, { "CLUSTERDOWN", 1 },
    { "OOM", 0 }, { "BUSY", 0 }, { "LOADING", 0 }, { "TRYAGAIN", 0 },
    { "MISCONF", 0 }, { "WRONGTYPE", 0 }, { "NOSCRIPT", 0 },
};

/* queue_err_is - 1 when the error reply's code is exactly `code` */
static int queue_err_is(const redisReply *r, const char *code)
{
    size_t n = strlen(code);

    return r->len >= n && memcmp(r->str, code, n) == 0 && (r->len == n || r->str[n] == ' ');
}

/* queue_err_reply - an error reply as SY_ETEMP, q broken when it must be */
static int queue_err_reply(struct queue *q, const redisReply *r, struct sy_err *err)
{
    char safe[QUEUE_PEER_TEXT_MAX];

    for (size_t i = 0; i < sizeof(queue_err_classes) / sizeof(queue_err_classes[0]); i++)
        if (queue_err_classes[i].fatal && queue_err_is(r, queue_err_classes[i].prefix))
            q->broken = 1;
    (void) sy_err_set(err, SY_ETEMP, "4.3.0", "redis: %s",
                      log_safe_n(safe, sizeof(safe), r->str, r->len));
    return SY_ETEMP;
}

/* queue_unexpected - a reply of the wrong shape: we may be out of step */
static int queue_unexpected(struct queue *q, const char *what, struct sy_err *err)
{
    q->broken = 1;
    (void) sy_err_set(err, SY_ETEMP, "4.3.0", "redis: unexpected reply to %s", what);
    return SY_ETEMP;
}

/* ---- commands ----------------------------------------------------------- */

/* queue_wait - poll fd for ev until the deadline */
static int queue_wait(struct queue *q, short ev, int64_t deadline, struct sy_err *err)
{
    for (;;) {
        struct pollfd pfd = { .fd = q->c->fd, .events = ev };
        int64_t left = deadline - clock_mono_ms();
        int n;

        if (left <= 0) {
            char what[QUEUE_NUM_SIZE + 32];

            (void) snprintf(what, sizeof(what), "timeout after %lld ms", (long long) q->timeout_ms);
            return queue_broken(q, err, what, NULL);
        }
        n = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int) left);
        if (n > 0)
            return SY_OK;
        if (n < 0 && errno != EINTR)
            return queue_broken(q, err, "poll", strerror(errno));
    }
}

/* queue_cmd - one command under one deadline for the whole round trip.
 * SY_OK with *out (owned by the caller; freeReplyObject()) when the reply
 * is not an error; an error reply becomes SY_ETEMP, or 1 for NOSCRIPT. */
#define QUEUE_NOSCRIPT 1
static int queue_cmd(struct queue *q, int argc, const char **argv, const size_t *lens,
                     redisReply **out, struct sy_err *err)
{
    redisContext *c = q->c;
    int64_t deadline = clock_mono_ms() + q->timeout_ms;
    void *reply = NULL;
    redisReply *r;
    int done = 0;

    *out = NULL;
    if (q->broken || c->err != 0) {
        (void) queue_broken(q, err, "connection unusable", NULL);
        return SY_ETEMP;
    }
    q->budget.bytes = QUEUE_REPLY_MAX;
    q->budget.elems = QUEUE_ELEMS_MAX;
    if (redisAppendCommandArgv(c, argc, argv, lens) != REDIS_OK)
        goto ctx_error;
    while (!done) {
        if (queue_wait(q, POLLOUT, deadline, err) != SY_OK)
            return SY_ETEMP;
        if (redisBufferWrite(c, &done) != REDIS_OK)
            goto ctx_error;
    }
    for (;;) {
        if (redisGetReplyFromReader(c, &reply) != REDIS_OK)
            goto ctx_error;
        if (reply != NULL)
            break;
        /* An unfinished bulk string sits in the reader's buffer. */
        if (c->reader->len - c->reader->pos > QUEUE_REPLY_MAX) {
            (void) queue_broken(q, err, "reply too large", NULL);
            return SY_ETEMP;
        }
        if (queue_wait(q, POLLIN, deadline, err) != SY_OK)
            return SY_ETEMP;
        if (redisBufferRead(c) != REDIS_OK)
            goto ctx_error;
    }
    r = reply;
    if (r->type == REDIS_REPLY_ERROR) {
        int rc = QUEUE_NOSCRIPT;

        if (!queue_err_is(r, "NOSCRIPT")) {
            (void) queue_err_reply(q, r, err);
            rc = SY_ETEMP;
        }
        freeReplyObject(r);
        return rc;
    }
    *out = r;
    return SY_OK;

ctx_error:
    (void) queue_ctx_error(q, err);
    return SY_ETEMP;
}

/* queue_cmd_str - a command whose arguments are all C strings */
static int queue_cmd_str(struct queue *q, int argc, const char **argv, redisReply **out,
                         struct sy_err *err)
{
    size_t lens[8];

    if (argc < 1 || (size_t) argc > sizeof(lens) / sizeof(lens[0]))
        return queue_broken(q, err, "internal: bad argument count", NULL);
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    switch (queue_cmd(q, argc, argv, lens, out, err)) {
    case SY_OK:
        return SY_OK;
    case QUEUE_NOSCRIPT:
        return queue_unexpected(q, argv[0], err);
    default:
        return SY_ETEMP;
    }
}

/* ---- argument lists ----------------------------------------------------- */

static struct queue_arg *queue_args_slot(struct queue_args *a)
{
    struct queue_arg *s;

    a->v = xreallocarray_grow(a->v, &a->cap, a->n + 1, sizeof(*a->v));
    s = &a->v[a->n++];
    memset(s, 0, sizeof(*s));
    return s;
}

/* queue_args_mem - a borrowed argument; p must outlive the call */
static void queue_args_mem(struct queue_args *a, const char *p, size_t len)
{
    struct queue_arg *s = queue_args_slot(a);

    s->p = p;
    s->len = len;
}

static void queue_args_str(struct queue_args *a, const char *s)
{
    queue_args_mem(a, s, strlen(s));
}

static void queue_args_i64(struct queue_args *a, int64_t v)
{
    struct queue_arg *s = queue_args_slot(a);
    int n = snprintf(s->num, sizeof(s->num), "%lld", (long long) v);

    s->is_num = 1;
    s->len = n > 0 ? (size_t) n : 0;
}

/* queue_args_field - a field/value pair; NULL value omits the pair */
static void queue_args_field(struct queue_args *a, const char *field, const char *value)
{
    if (value == NULL)
        return;
    queue_args_str(a, field);
    queue_args_str(a, value);
}

static void queue_args_field_i64(struct queue_args *a, const char *field, int64_t v)
{
    queue_args_str(a, field);
    queue_args_i64(a, v);
}

/* queue_args_set_i64 - overwrite slot i with a number (a count known late) */
static void queue_args_set_i64(struct queue_args *a, size_t i, int64_t v)
{
    struct queue_arg *s = &a->v[i];
    int n = snprintf(s->num, sizeof(s->num), "%lld", (long long) v);

    s->p = NULL;
    s->is_num = 1;
    s->len = n > 0 ? (size_t) n : 0;
}

static void queue_args_free(struct queue_args *a)
{
    free(a->v);
    memset(a, 0, sizeof(*a));
}

/* queue_args_send - run the argument list as one command */
static int queue_args_send(struct queue *q, const struct queue_args *a, redisReply **out,
                           struct sy_err *err)
{
    const char **argv;
    size_t *lens;
    int rc;

    *out = NULL;
    if (a->n == 0 || a->n > INT_MAX)
        return queue_broken(q, err, "internal: bad argument count", NULL);
    argv = xcalloc(a->n, sizeof(*argv));
    lens = xcalloc(a->n, sizeof(*lens));
    for (size_t i = 0; i < a->n; i++) {
        argv[i] = a->v[i].is_num ? a->v[i].num : a->v[i].p;
        lens[i] = a->v[i].len;
    }
    rc = queue_cmd(q, (int) a->n, argv, lens, out, err);
    free(argv);
    free(lens);
    return rc;
}

/* ---- scripts ------------------------------------------------------------ */

/* queue_cmd_ok - a two-word command whose only good answer is +OK
 * (AUTH, SELECT); argv[0] names it in the error */
static int queue_cmd_ok(struct queue *q, const char **argv, struct sy_err *err)
{
    redisReply *r;
    int ok;

    if (queue_cmd_str(q, 2, argv, &r, err) != SY_OK)
        return SY_ETEMP;
    ok = r->type == REDIS_REPLY_STATUS && r->len == 2 && memcmp(r->str, "OK", 2) == 0;
    freeReplyObject(r);
    return ok ? SY_OK : queue_unexpected(q, argv[0], err);
}

/* queue_sha_valid - 40 lowercase hex digits */
static int queue_sha_valid(const redisReply *r)
{
    if (r->type != REDIS_REPLY_STRING || r->len != QUEUE_SHA_LEN)
        return 0;
    for (size_t i = 0; i < r->len; i++)
        if (!((r->str[i] >= '0' && r->str[i] <= '9') || (r->str[i] >= 'a' && r->str[i] <= 'f')))
            return 0;
    return 1;
}

/* queue_script_sha - the script's digest: cached in the pool after the
 * first SCRIPT LOAD. "" when the server refused SCRIPT LOAD but the
 * connection is fine (a proxy that filters it): EVAL is used then. */
static int queue_script_sha(struct queue *q, int id, char sha[QUEUE_SHA_LEN + 1],
                            struct sy_err *err)
{
    const char *argv[3] = { "SCRIPT", "LOAD", queue_scripts[id] };
    size_t lens[3] = { 6, 4, strlen(queue_scripts[id]) };
    redisReply *r;

    pthread_mutex_lock(&q->p->lock);
    memcpy(sha, q->p->sha[id], QUEUE_SHA_LEN + 1);
    pthread_mutex_unlock(&q->p->lock);
    if (sha[0] != '\0')
        return SY_OK;
    if (queue_cmd(q, 3, argv, lens, &r, err) != SY_OK)
        return q->broken ? SY_ETEMP : SY_OK;
    if (!queue_sha_valid(r)) {
        freeReplyObject(r);
        return queue_unexpected(q, "SCRIPT LOAD", err);
    }
    memcpy(sha, r->str, QUEUE_SHA_LEN);
    sha[QUEUE_SHA_LEN] = '\0';
    freeReplyObject(r);
    pthread_mutex_lock(&q->p->lock);
    memcpy(q->p->sha[id], sha, QUEUE_SHA_LEN + 1);
    pthread_mutex_unlock(&q->p->lock);
    return SY_OK;
}

/* queue_script - run script id with a's arguments (slots 0-2 reserved by
 * queue_script_args) and nkeys keys: EVALSHA, EVAL after NOSCRIPT (a
 * restarted or failed-over server has an empty script cache; NOSCRIPT
 * means nothing ran, so sending the text is safe). */
static int queue_script(struct queue *q, int id, struct queue_args *a, size_t nkeys,
                        redisReply **out, struct sy_err *err)
{
    char sha[QUEUE_SHA_LEN + 1];
    int rc;

    *out = NULL;
    if (queue_script_sha(q, id, sha, err) != SY_OK)
        return SY_ETEMP;
    queue_args_set_i64(a, 2, (int64_t) nkeys);
    if (sha[0] != '\0') {
        a->v[0].p = "EVALSHA";
        a->v[0].len = 7;
        a->v[1].p = sha;
        a->v[1].len = QUEUE_SHA_LEN;
        rc = queue_args_send(q, a, out, err);
        if (rc != QUEUE_NOSCRIPT)
            return rc;
    }
    a->v[0].p = "EVAL";
    a->v[0].len = 4;
    a->v[1].p = queue_scripts[id];
    a->v[1].len = strlen(queue_scripts[id]);
    rc = queue_args_send(q, a, out, err);
    if (rc == QUEUE_NOSCRIPT)
        return queue_unexpected(q, "EVAL", err);
    return rc;
}

/* queue_script_args - a list with the three slots queue_script fills */
static void queue_script_args(struct queue_args *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 0; i < 3; i++)
        queue_args_mem(a, "", 0);
}

/* ---- keys --------------------------------------------------------------- */

/* queue_key - base + suffix into dst; the bounds make truncation a bug */
static const char *queue_key(const struct queue *q, char *dst, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static const char *queue_key(const struct queue *q, char *dst, size_t size, const char *fmt, ...)
{
    size_t n = strlen(q->p->base);
    va_list ap;
    int m;

    if (n >= size)
        sy_panic("queue: key base too long");
    memcpy(dst, q->p->base, n);
    va_start(ap, fmt);
    m = vsnprintf(dst + n, size - n, fmt, ap);
    va_end(ap);
    if (m < 0 || (size_t) m >= size - n)
        sy_panic("queue: key too long");
    return dst;
}

/* queue_check_qid - argument check shared by every per-message call */
static int queue_check_qid(const char *qid, struct sy_err *err)
{
    if (qid == NULL || !qid_valid(qid)) {
        char safe[LOG_SAFE_MAX];

        (void) sy_err_set(err, SY_ESYNTAX, "4.3.0", "queue: not a queue id: %s",
                          log_safe(safe, sizeof(safe), qid));
        return SY_ESYNTAX;
    }
    return SY_OK;
}

/* ---- numbers from replies ----------------------------------------------- */

/* queue_parse_u64 - a whole reply string as an unsigned decimal in [0, max] */
static int queue_parse_u64(const redisReply *r, uint64_t max, uint64_t *out)
{
    if (r->type != REDIS_REPLY_STRING)
        return -1;
    return text_parse_u64(r->str, r->len, 0, max, out) == SY_OK ? 0 : -1;
}

/* queue_parse_score - a zset score ("1700000000000", "1.7e+12") as int64 */
static int queue_parse_score(const redisReply *r, int64_t *out)
{
    char tmp[64], *end;
    int64_t v;
    double d;

    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len >= sizeof(tmp))
        return -1;
    memcpy(tmp, r->str, r->len);
    tmp[r->len] = '\0';
    errno = 0;
    d = strtod(tmp, &end);
    if (errno != 0 || end != tmp + r->len || !isfinite(d) || d < -9.0e18 || d > 9.0e18)
        return -1;
    /* floor() without libm: scores we write are whole numbers anyway. */
    v = (int64_t) d;
    if ((double) v > d)
        v--;
    *out = v;
    return 0;
}

/* ---- pool --------------------------------------------------------------- */

/* queue_name_ok - printable, no hash-tag braces, length in [1, max] */
static int queue_name_ok(const char *s, size_t max)
{
    size_t n;

    if (s == NULL)
        return 0;
    n = strlen(s);
    if (n == 0 || n > max || !text_is_clean(s, n))
        return 0;
    /* A brace would move the Cluster hash tag off {node}. */
    return strchr(s, '{') == NULL && strchr(s, '}') == NULL && strchr(s, ' ') == NULL;
}

static struct timeval queue_tv(uint64_t ms)
{
    struct timeval tv;

    if (ms == 0)
        ms = QUEUE_TIMEOUT_DEFAULT_MS;
    tv.tv_sec = (time_t) (ms / 1000);
    tv.tv_usec = (suseconds_t) ((ms % 1000) * 1000);
    return tv;
}

struct queue_pool *queue_pool_new(const struct cfg_redis *cfg, const char *node)
{
    struct queue_pool *p = xcalloc(1, sizeof(*p));
    const char *prefix = cfg->prefix != NULL ? cfg->prefix : "sy";
    char safe[LOG_SAFE_MAX];
    int n;

    p->cfg = cfg;
    p->connect_tv = queue_tv(cfg->connect_timeout_ms);
    p->connect_timeout_ms = (int64_t) p->connect_tv.tv_sec * 1000 + p->connect_tv.tv_usec / 1000;
    p->cmd_timeout_ms = (int64_t) (cfg->command_timeout_ms == 0 ? QUEUE_TIMEOUT_DEFAULT_MS
                                   : cfg->command_timeout_ms > 3600000 ? 3600000
                                   : cfg->command_timeout_ms);
    if (pthread_mutex_init(&p->lock, NULL) != 0)
        sy_panic("queue: pthread_mutex_init failed");
    if (!queue_name_ok(prefix, QUEUE_PREFIX_MAX))
        (void) snprintf(p->bad, sizeof(p->bad), "key prefix unusable (1-%zu printable characters, no braces or spaces)",
                        QUEUE_PREFIX_MAX);
    else if (!queue_name_ok(node, QUEUE_NODE_MAX))
        (void) snprintf(p->bad, sizeof(p->bad), "node name unusable as a hash tag");
    n = snprintf(p->base, sizeof(p->base), "%s:{%s}:", prefix, node != NULL ? node : "");
    if (n < 0 || (size_t) n >= sizeof(p->base))
        (void) snprintf(p->bad, sizeof(p->bad), "key prefix too long");
    if (cfg->addr.is_unix) {
        if (cfg->addr.path == NULL)
            (void) snprintf(p->bad, sizeof(p->bad), "no address");
        (void) snprintf(p->where, sizeof(p->where), "unix:%s", log_safe(safe, sizeof(safe), cfg->addr.path));
    } else {
        if (cfg->addr.host == NULL || cfg->addr.port == 0 || cfg->addr.port > 65535)
            (void) snprintf(p->bad, sizeof(p->bad), "no address");
        (void) snprintf(p->where, sizeof(p->where), "%s:%u", log_safe(safe, sizeof(safe), cfg->addr.host),
                        cfg->addr.port);
    }
    return p;
}

/* queue_close - free one connection */
static void queue_close(struct queue *q)
{
    if (q == NULL)
        return;
    if (q->c != NULL)
        redisFree(q->c);
    free(q);
}

void queue_pool_free(struct queue_pool *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->nidle; i++)
        queue_close(p->idle[i]);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* queue_idle_ok - an idle connection has nothing to read: anything there
 * (EOF after a server restart, stray bytes) means it is dead or out of step */
static int queue_idle_ok(const struct queue *q)
{
    struct pollfd pfd = { .fd = q->c->fd, .events = POLLIN };

    return q->c->err == 0 && poll(&pfd, 1, 0) == 0;
}

/* queue_connect - a new connection, authenticated and on the right db */
static struct queue *queue_connect(struct queue_pool *p, struct sy_err *err)
{
    const struct cfg_redis *cfg = p->cfg;
    struct queue *q = xcalloc(1, sizeof(*q));

    q->p = p;
    /* AUTH and SELECT are part of connecting (configuration.md). */
    q->timeout_ms = p->connect_timeout_ms;
    if (cfg->addr.is_unix)
        q->c = redisConnectUnixWithTimeout(cfg->addr.path, p->connect_tv);
    else
        q->c = redisConnectWithTimeout(cfg->addr.host, (int) cfg->addr.port, p->connect_tv);
    if (q->c == NULL) {
        free(q);
        (void) sy_err_set(err, SY_ETEMP, "4.3.0", "redis: connect to %s: out of memory", p->where);
        return NULL;
    }
    if (q->c->err != 0) {
        char safe[QUEUE_PEER_TEXT_MAX];

        (void) sy_err_set(err, SY_ETEMP, "4.3.0", "redis: connect to %s: %s", p->where,
                          log_safe(safe, sizeof(safe), q->c->errstr));
        queue_close(q);
        return NULL;
    }
    /* Belt and braces under our poll() deadline: bounds a blocking write. */
    if (redisSetTimeout(q->c, queue_tv((uint64_t) p->cmd_timeout_ms)) != REDIS_OK) {
        (void) sy_err_set(err, SY_ETEMP, "4.3.0", "redis: %s: cannot set timeout", p->where);
        queue_close(q);
        return NULL;
    }
    if (!cfg->addr.is_unix)
        (void) redisEnableKeepAlive(q->c);
    q->c->reader->fn = &queue_reply_fns;
    q->c->reader->privdata = &q->budget;

    if (cfg->password != NULL) {
        /* The password goes to Redis only: error texts quote the server's
         * reply, never our argument. */
        const char *argv[2] = { "AUTH", cfg->password };

        if (queue_cmd_ok(q, argv, err) != SY_OK) {
            queue_close(q);
            return NULL;
        }
    }
    if (cfg->db != 0) {
        char db[QUEUE_NUM_SIZE];
        const char *argv[2] = { "SELECT", db };

        (void) snprintf(db, sizeof(db), "%u", cfg->db);
        if (queue_cmd_ok(q, argv, err) != SY_OK) {
            queue_close(q);
            return NULL;
        }
    }
    q->timeout_ms = p->cmd_timeout_ms;
    return q;
}

struct queue *queue_get(struct queue_pool *p, struct sy_err *err)
{
    for (;;) {
        struct queue *q = NULL;

        pthread_mutex_lock(&p->lock);
        if (p->nidle > 0)
            q = p->idle[--p->nidle];
        pthread_mutex_unlock(&p->lock);
        if (q == NULL)
            break;
        if (queue_idle_ok(q))
            return q;
        queue_close(q);
    }
    if (p->bad[0] != '\0') {
        (void) sy_err_set(err, SY_ETEMP, "4.3.0", "redis: %s", p->bad);
        return NULL;
    }
    return queue_connect(p, err);
}

void queue_put(struct queue_pool *p, struct queue *q)
{
    if (q == NULL)
        return;
    if (!q->broken && q->c->err == 0) {
        pthread_mutex_lock(&p->lock);
        if (p->nidle < QUEUE_IDLE_MAX) {
            p->idle[p->nidle++] = q;
            q = NULL;
        }
        pthread_mutex_unlock(&p->lock);
    }
    queue_close(q);
}

/* ---- operations --------------------------------------------------------- */

int queue_ping(struct queue *q, struct sy_err *err)
{
    const char *argv[1] = { "PING" };
    redisReply *r;
    int ok;

    if (queue_cmd_str(q, 1, argv, &r, err) != SY_OK)
        return SY_ETEMP;
    ok = r->type == REDIS_REPLY_STATUS && r->len == 4 && memcmp(r->str, "PONG", 4) == 0;
    freeReplyObject(r);
    return ok ? SY_OK : queue_unexpected(q, "PING", err);
}

int queue_exists(struct queue *q, const char *qid, struct sy_err *err)
{
    char key[QUEUE_KEY_MAX];
    const char *argv[2] = { "EXISTS", key };
    redisReply *r;
    long long v;

    if (queue_check_qid(qid, err) != SY_OK)
        return SY_ESYNTAX;
    queue_key(q, key, sizeof(key), "msg:%s", qid);
    if (queue_cmd_str(q, 2, argv, &r, err) != SY_OK)
        return SY_ETEMP;
    v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    if (v != 0 && v != 1)
        return queue_unexpected(q, "EXISTS", err);
    return (int) v;
}

/* queue_ret_name / queue_body_name - stored names of the DSN parameters */
static const char *queue_ret_name(int ret)
{
    return ret == ENV_RET_FULL ? "FULL" : ret == ENV_RET_HDRS ? "HDRS" : NULL;
}

static const char *queue_body_name(int body)
{
    return body == ENV_BODY_7BIT ? "7BIT" : body == ENV_BODY_8BITMIME ? "8BITMIME" : NULL;
}

/* queue_insert_common - INSERT, with an optional duplicate digest */
static int queue_insert_common(struct queue *q, const char *qid, const struct envelope *env,
                               const unsigned char *held, int64_t next_ms, const char *digest,
                               int64_t ttl_s, char dup_qid[QID_SIZE], struct sy_err *err)
{
    char msgkey[QUEUE_KEY_MAX], sched[QUEUE_KEY_MAX], heldkey[QUEUE_KEY_MAX];
    char index[QUEUE_KEY_MAX], rcptpfx[QUEUE_KEY_MAX], dedup[QUEUE_KEY_MAX];
    struct queue_args a;
    redisReply *r;
    size_t mslot, nmsg;
    long long v;
    int rc;

    if (queue_check_qid(qid, err) != SY_OK)
        return SY_ESYNTAX;
    if (env == NULL || env->sender == NULL || env->nrcpt == 0 || next_ms < 0)
        return sy_err_set(err, SY_ESYNTAX, "4.3.0", "queue: insert %s: incomplete envelope", qid);
    if (digest != NULL && (!queue_name_ok(digest, 64) || ttl_s <= 0))
        return sy_err_set(err, SY_ESYNTAX, "4.3.0", "queue: insert %s: bad duplicate digest", qid);
    if (env->nrcpt > QUEUE_RCPT_MAX)
        return sy_err_set(err, SY_ETOOBIG, "4.5.3", "queue: insert %s: %zu recipients (at most %zu)",
                          qid, env->nrcpt, QUEUE_RCPT_MAX);
    for (size_t i = 0; i < env->nrcpt; i++)
        if (env->rcpts[i].addr == NULL || env->rcpts[i].addr[0] == '\0')
            return sy_err_set(err, SY_ESYNTAX, "4.3.0", "queue: insert %s: recipient %zu has no address",
                              qid, i);

    queue_key(q, msgkey, sizeof(msgkey), "msg:%s", qid);
    queue_key(q, sched, sizeof(sched), "sched");
    queue_key(q, heldkey, sizeof(heldkey), "held");
    queue_key(q, index, sizeof(index), "index");
    queue_key(q, rcptpfx, sizeof(rcptpfx), "rcpt:%s:", qid);
    if (digest != NULL)
        queue_key(q, dedup, sizeof(dedup), "dedup:%s", digest);

    queue_script_args(&a);
    queue_args_str(&a, msgkey);
    queue_args_str(&a, sched);
    queue_args_str(&a, heldkey);
    queue_args_str(&a, index);
    if (digest != NULL)
        queue_args_str(&a, dedup);
    queue_args_str(&a, rcptpfx);
    queue_args_str(&a, qid);
    queue_args_i64(&a, next_ms);
    mslot = a.n;
    queue_args_i64(&a, 0);      /* message argument count, set below */

    /* Absent optional fields are omitted, not stored as "" (memory). */
    queue_args_field(&a, "sender", env->sender);
    queue_args_field_i64(&a, "arrival_us", env->arrival_us);
    queue_args_field_i64(&a, "size", env->size > INT64_MAX ? INT64_MAX : (int64_t) env->size);
    if (env->size_declared > 0)
        queue_args_field_i64(&a, "size_declared", env->size_declared > INT64_MAX ? INT64_MAX
                                                                                 : (int64_t) env->size_declared);
    queue_args_field_i64(&a, "nrcpt", (int64_t) env->nrcpt);
    queue_args_field(&a, "listener", env->listener);
    queue_args_field(&a, "client_addr", env->client_addr);
    queue_args_field(&a, "client_name", env->client_name);
    queue_args_field(&a, "mta_qid", env->mta_qid);
    queue_args_field(&a, "envid", env->envid);
    queue_args_field(&a, "ret", queue_ret_name(env->ret));
    queue_args_field(&a, "body", queue_body_name(env->body));
    if (env->flags != 0)
        queue_args_field_i64(&a, "flags", env->flags);
    if (env->hold_until != 0)
        queue_args_field_i64(&a, "hold_until", env->hold_until);
    queue_args_field(&a, "message_id", env->message_id);
    queue_args_field(&a, "auth_user", env->auth_user);
    queue_args_field(&a, "state", "active");
    nmsg = a.n - mslot - 1;
    queue_args_set_i64(&a, mslot, (int64_t) nmsg);

    queue_args_i64(&a, (int64_t) env->nrcpt);
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct env_rcpt *er = &env->rcpts[i];
        int is_held = held != NULL && held[i] != 0;
        size_t cslot, start;

        queue_args_str(&a, is_held ? "1" : "0");
        cslot = a.n;
        queue_args_i64(&a, 0);
        start = a.n;
        queue_args_field(&a, "addr", er->addr);
        queue_args_field(&a, "state", is_held ? "held" : "queued");
        queue_args_field_i64(&a, "next_ms", next_ms);
        if (er->notify != 0)
            queue_args_field_i64(&a, "notify", er->notify);
        queue_args_field(&a, "orcpt_type", er->orcpt_type);
        queue_args_field(&a, "orcpt_addr", er->orcpt_addr);
        queue_args_set_i64(&a, cslot, (int64_t) (a.n - start));
    }

    if (digest != NULL)
        queue_args_i64(&a, ttl_s);

    rc = queue_script(q, QS_INSERT, &a, digest != NULL ? 5 : 4, &r, err);
    queue_args_free(&a);
    if (rc != SY_OK)
        return SY_ETEMP;
    if (dup_qid != NULL)
        dup_qid[0] = '\0';
    if (digest != NULL && r->type == REDIS_REPLY_STRING) {
        /* The digest names an earlier message: this one is its retry. */
        int ok = r->len == QID_LEN && dup_qid != NULL;

        if (ok) {
            memcpy(dup_qid, r->str, QID_LEN);
            dup_qid[QID_LEN] = '\0';
            ok = qid_valid(dup_qid);
        }
        freeReplyObject(r);
        if (!ok) {
            if (dup_qid != NULL)
                dup_qid[0] = '\0';
            return queue_unexpected(q, "insert", err);
        }
        return SY_OK;
    }
    v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    if (v != 0 && v != 1)
        return queue_unexpected(q, "insert", err);
    return SY_OK;
}

int queue_insert(struct queue *q, const char *qid, const struct envelope *env,
                 const unsigned char *held, int64_t next_ms, struct sy_err *err)
{
    return queue_insert_common(q, qid, env, held, next_ms, NULL, 0, NULL, err);
}

int queue_insert_dedup(struct queue *q, const char *qid, const struct envelope *env,
                       const unsigned char *held, int64_t next_ms, const char *digest,
                       int64_t ttl_s, char dup_qid[QID_SIZE], struct sy_err *err)
{
    return queue_insert_common(q, qid, env, held, next_ms, digest, ttl_s, dup_qid, err);
}

int queue_mark_missing(struct queue *q, const char *qid, struct sy_err *err)
{
    char msgkey[QUEUE_KEY_MAX], sched[QUEUE_KEY_MAX], heldkey[QUEUE_KEY_MAX];
    char index[QUEUE_KEY_MAX], done[QUEUE_KEY_MAX], rcptpfx[QUEUE_KEY_MAX];
    struct queue_args a;
    redisReply *r;
    long long v;
    int rc;

    if (queue_check_qid(qid, err) != SY_OK)
        return SY_ESYNTAX;
    queue_key(q, msgkey, sizeof(msgkey), "msg:%s", qid);
    queue_key(q, sched, sizeof(sched), "sched");
    queue_key(q, heldkey, sizeof(heldkey), "held");
    queue_key(q, index, sizeof(index), "index");
    queue_key(q, done, sizeof(done), "done");
    queue_key(q, rcptpfx, sizeof(rcptpfx), "rcpt:%s:", qid);

    queue_script_args(&a);
    queue_args_str(&a, msgkey);
    queue_args_str(&a, sched);
    queue_args_str(&a, heldkey);
    queue_args_str(&a, index);
    queue_args_str(&a, done);
    queue_args_str(&a, rcptpfx);
    queue_args_str(&a, qid);
    queue_args_i64(&a, clock_real_ms());
    queue_args_i64(&a, (int64_t) QUEUE_RCPT_MAX);
    rc = queue_script(q, QS_MISSING, &a, 5, &r, err);
    queue_args_free(&a);
    if (rc != SY_OK)
        return SY_ETEMP;
    v = r->type == REDIS_REPLY_INTEGER ? r->integer : -2;
    freeReplyObject(r);
    if (v == -1)
        return sy_err_set(err, SY_ENOTFOUND, "4.3.0", "queue: no such message %s", qid);
    if (v != 1)
        return queue_unexpected(q, "mark missing", err);
    return SY_OK;
}

/* queue_parse_member - "QID:IDX" into a claim; -1 when malformed */
static int queue_parse_member(const redisReply *m, struct queue_claim *c)
{
    uint64_t idx;

    if (m->type != REDIS_REPLY_STRING || m->len < QID_LEN + 2 || m->str[QID_LEN] != ':')
        return -1;
    memcpy(c->qid, m->str, QID_LEN);
    c->qid[QID_LEN] = '\0';
    if (!qid_valid(c->qid))
        return -1;
    if (text_parse_u64(m->str + QID_LEN + 1, m->len - QID_LEN - 1, 0, QUEUE_RCPT_MAX - 1, &idx) != SY_OK)
        return -1;
    c->idx = (unsigned) idx;
    return 0;
}

int queue_claim_due(struct queue *q, int64_t now_ms, int64_t lease_ms,
                    struct queue_claim *out, size_t max, size_t *nout,
                    struct sy_err *err)
{
    char sched[QUEUE_KEY_MAX], rcptbase[QUEUE_KEY_MAX], msgbase[QUEUE_KEY_MAX];
    struct queue_args a;
    redisReply *r;
    size_t n = 0;
    int rc;

    *nout = 0;
    if (max == 0)
        return SY_OK;
    if (max > QUEUE_BATCH_MAX)
        max = QUEUE_BATCH_MAX;
    if (now_ms < 0 || lease_ms < 0 || lease_ms > INT64_MAX - now_ms)
        return sy_err_set(err, SY_ESYNTAX, "4.3.0", "queue: claim: bad time or lease");
    queue_key(q, sched, sizeof(sched), "sched");
    queue_key(q, rcptbase, sizeof(rcptbase), "rcpt:");
    queue_key(q, msgbase, sizeof(msgbase), "msg:");

    queue_script_args(&a);
    queue_args_str(&a, sched);
    queue_args_i64(&a, now_ms);
    queue_args_i64(&a, now_ms + lease_ms);
    queue_args_i64(&a, (int64_t) max);
    queue_args_str(&a, rcptbase);
    queue_args_str(&a, msgbase);
    rc = queue_script(q, QS_CLAIM, &a, 1, &r, err);
    queue_args_free(&a);
    if (rc != SY_OK)
        return SY_ETEMP;
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0 || r->elements / 2 > max) {
        freeReplyObject(r);
        return queue_unexpected(q, "claim", err);
    }
    for (size_t i = 0; i < r->elements; i += 2) {
        const redisReply *m = r->element[i], *att = r->element[i + 1];
        uint64_t attempts;

        if (m->type != REDIS_REPLY_STRING || att->type != REDIS_REPLY_STRING) {
            freeReplyObject(r);
            return queue_unexpected(q, "claim", err);
        }
        if (queue_parse_member(m, &out[n]) != 0 || queue_parse_u64(att, UINT_MAX, &attempts) != 0) {
            /* Leased, so it comes back after the lease; say so once each time. */
            char safe[QUEUE_PEER_TEXT_MAX];

            log_warn(NULL, "queue: schedule entry skipped, malformed: %s",
                     log_safe_n(safe, sizeof(safe), m->str, m->len));
            continue;
        }
        out[n].attempts = (unsigned) attempts;
        n++;
    }
    freeReplyObject(r);
    *nout = n;
    return SY_OK;
}

int queue_next_due(struct queue *q, int64_t *when_ms, struct sy_err *err)
{
    char sched[QUEUE_KEY_MAX];
    const char *argv[5] = { "ZRANGE", sched, "0", "0", "WITHSCORES" };
    redisReply *r;
    int64_t v = 0;

    *when_ms = INT64_MAX;
    queue_key(q, sched, sizeof(sched), "sched");
    if (queue_cmd_str(q, 5, argv, &r, err) != SY_OK)
        return SY_ETEMP;
    if (r->type != REDIS_REPLY_ARRAY || (r->elements != 0 && r->elements != 2) ||
        (r->elements == 2 && (r->element[0]->type != REDIS_REPLY_STRING ||
                              queue_parse_score(r->element[1], &v) != 0))) {
        freeReplyObject(r);
        return queue_unexpected(q, "ZRANGE", err);
    }
    if (r->elements == 2)
        *when_ms = v;
    freeReplyObject(r);
    return SY_OK;
}

int queue_record_result(struct queue *q, const char *qid, unsigned idx,
                        const struct queue_result *res, int *all_final,
                        struct sy_err *err)
{
    char msgkey[QUEUE_KEY_MAX], rcptkey[QUEUE_KEY_MAX], sched[QUEUE_KEY_MAX];
    char heldkey[QUEUE_KEY_MAX], index[QUEUE_KEY_MAX], done[QUEUE_KEY_MAX];
    char member[QID_SIZE + QUEUE_NUM_SIZE];
    const char *transport, *reply;
    size_t tlen, rlen;
    struct queue_args a;
    redisReply *r;
    long long v;
    int rc;

    if (all_final != NULL)
        *all_final = 0;
    if (queue_check_qid(qid, err) != SY_OK)
        return SY_ESYNTAX;
    if (res == NULL || idx >= QUEUE_RCPT_MAX || res->at_ms < 0 ||
        (res->state != QUEUE_QUEUED && res->state != QUEUE_DELIVERED && res->state != QUEUE_FAILED) ||
        (res->state == QUEUE_QUEUED && res->next_ms < 0))
        return sy_err_set(err, SY_ESYNTAX, "4.3.0", "queue: record %s: bad result", qid);
    transport = res->transport != NULL ? res->transport : "";
    reply = res->reply != NULL ? res->reply : "";
    tlen = strlen(transport);
    if (tlen > QUEUE_TRANSPORT_MAX)
        tlen = QUEUE_TRANSPORT_MAX;
    rlen = strlen(reply);
    if (rlen > QUEUE_LAST_REPLY_MAX) {
        /* Cut on a UTF-8 character boundary. */
        rlen = QUEUE_LAST_REPLY_MAX;
        while (rlen > 0 && ((unsigned char) reply[rlen] & 0xC0) == 0x80)
            rlen--;
    }

    queue_key(q, msgkey, sizeof(msgkey), "msg:%s", qid);
    queue_key(q, rcptkey, sizeof(rcptkey), "rcpt:%s:%u", qid, idx);
    queue_key(q, sched, sizeof(sched), "sched");
    queue_key(q, heldkey, sizeof(heldkey), "held");
    queue_key(q, index, sizeof(index), "index");
    queue_key(q, done, sizeof(done), "done");
    (void) snprintf(member, sizeof(member), "%s:%u", qid, idx);

    queue_script_args(&a);
    queue_args_str(&a, msgkey);
    queue_args_str(&a, rcptkey);
    queue_args_str(&a, sched);
    queue_args_str(&a, heldkey);
    queue_args_str(&a, index);
    queue_args_str(&a, done);
    queue_args_str(&a, member);
    queue_args_str(&a, qid);
    queue_args_str(&a, queue_state_name(res->state));
    queue_args_i64(&a, res->state == QUEUE_QUEUED ? res->next_ms : 0);
    queue_args_i64(&a, res->at_ms);
    queue_args_mem(&a, transport, tlen);
    queue_args_mem(&a, reply, rlen);
    rc = queue_script(q, QS_RECORD, &a, 6, &r, err);
    queue_args_free(&a);
    if (rc != SY_OK)
        return SY_ETEMP;
    v = r->type == REDIS_REPLY_INTEGER ? r->integer : -2;
    freeReplyObject(r);
    if (v == -1)
        return sy_err_set(err, SY_ENOTFOUND, "4.3.0", "queue: no such recipient %s:%u", qid, idx);
    if (v != 0 && v != 1)
        return queue_unexpected(q, "record", err);
    if (all_final != NULL)
        *all_final = (int) v;
    return SY_OK;
}

void queue_msg_free(struct queue_msg_info *m)
{
    if (m == NULL)
        return;
    free(m->sender);
    free(m->listener);
    free(m->mta_qid);
    free(m->state);
    for (size_t i = 0; i < m->nrcpt; i++) {
        free(m->rcpts[i].addr);
        free(m->rcpts[i].last_reply);
    }
    free(m->rcpts);
    memset(m, 0, sizeof(*m));
}

/* queue_field_is - the field name of a hash reply equals name */
static int queue_field_is(const redisReply *f, const char *name)
{
    size_t n = strlen(name);

    return f->len == n && memcmp(f->str, name, n) == 0;
}

/* queue_set_str - replace *dst with a copy of a string reply */
static void queue_set_str(char **dst, const redisReply *v)
{
    free(*dst);
    *dst = xmemdup0(v->str, v->len);
}

/* queue_hash_ok - an HGETALL reply: an even array of strings */
static int queue_hash_ok(const redisReply *h)
{
    if (h->type != REDIS_REPLY_ARRAY || h->elements % 2 != 0)
        return 0;
    for (size_t i = 0; i < h->elements; i++)
        if (h->element[i]->type != REDIS_REPLY_STRING)
            return 0;
    return 1;
}

/* queue_show_msg - the message hash into m; a reason when malformed */
static const char *queue_show_msg(const redisReply *h, struct queue_msg_info *m, uint64_t *nrcpt)
{
    int have_nrcpt = 0;

    if (!queue_hash_ok(h))
        return "message record";
    for (size_t i = 0; i < h->elements; i += 2) {
        const redisReply *f = h->element[i], *v = h->element[i + 1];
        uint64_t u;

        if (queue_field_is(f, "sender")) {
            queue_set_str(&m->sender, v);
        } else if (queue_field_is(f, "listener")) {
            queue_set_str(&m->listener, v);
        } else if (queue_field_is(f, "mta_qid")) {
            queue_set_str(&m->mta_qid, v);
        } else if (queue_field_is(f, "state")) {
            queue_set_str(&m->state, v);
        } else if (queue_field_is(f, "arrival_us")) {
            if (queue_parse_u64(v, INT64_MAX, &u) != 0)
                return "arrival_us";
            m->arrival_us = (int64_t) u;
        } else if (queue_field_is(f, "size")) {
            if (queue_parse_u64(v, UINT64_MAX, &u) != 0)
                return "size";
            m->size = u;
        } else if (queue_field_is(f, "nrcpt")) {
            if (queue_parse_u64(v, QUEUE_RCPT_MAX, nrcpt) != 0)
                return "nrcpt";
            have_nrcpt = 1;
        }
    }
    if (!have_nrcpt || m->sender == NULL)
        return "message record incomplete";
    return NULL;
}

/* queue_show_rcpt - one recipient hash and its schedule score */
static const char *queue_show_rcpt(const redisReply *h, const redisReply *score,
                                   struct queue_rcpt_info *ri)
{
    int state = -1;

    if (!queue_hash_ok(h) || h->elements == 0)
        return "recipient record missing";
    for (size_t i = 0; i < h->elements; i += 2) {
        const redisReply *f = h->element[i], *v = h->element[i + 1];
        uint64_t u;

        if (queue_field_is(f, "addr")) {
            queue_set_str(&ri->addr, v);
        } else if (queue_field_is(f, "state")) {
            state = queue_state_parse(v->str, v->len);
            if (state < 0)
                return "recipient state";
        } else if (queue_field_is(f, "attempts")) {
            if (queue_parse_u64(v, UINT_MAX, &u) != 0)
                return "attempts";
            ri->attempts = (unsigned) u;
        } else if (queue_field_is(f, "last_reply")) {
            queue_set_str(&ri->last_reply, v);
        }
    }
    if (ri->addr == NULL || state < 0)
        return "recipient record incomplete";
    ri->state = state;
    if (score->type == REDIS_REPLY_NIL)
        ri->next_ms = 0;
    else if (queue_parse_score(score, &ri->next_ms) != 0)
        return "schedule score";
    return NULL;
}

int queue_show(struct queue *q, const char *qid, struct queue_msg_info *m, struct sy_err *err)
{
    char msgkey[QUEUE_KEY_MAX], sched[QUEUE_KEY_MAX], rcptpfx[QUEUE_KEY_MAX];
    struct queue_args a;
    const char *why;
    redisReply *r;
    uint64_t nrcpt = 0;
    int rc;

    if (queue_check_qid(qid, err) != SY_OK)
        return SY_ESYNTAX;
    queue_key(q, msgkey, sizeof(msgkey), "msg:%s", qid);
    queue_key(q, sched, sizeof(sched), "sched");
    queue_key(q, rcptpfx, sizeof(rcptpfx), "rcpt:%s:", qid);
    queue_script_args(&a);
    queue_args_str(&a, msgkey);
    queue_args_str(&a, sched);
    queue_args_str(&a, rcptpfx);
    queue_args_str(&a, qid);
    queue_args_i64(&a, (int64_t) QUEUE_RCPT_MAX);
    rc = queue_script(q, QS_SHOW, &a, 2, &r, err);
    queue_args_free(&a);
    if (rc != SY_OK)
        return SY_ETEMP;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return queue_unexpected(q, "show", err);
    }
    if (r->elements == 0) {
        freeReplyObject(r);
        return sy_err_set(err, SY_ENOTFOUND, "4.3.0", "queue: no such message %s", qid);
    }
    memcpy(m->qid, qid, QID_SIZE);
    why = queue_show_msg(r->element[0], m, &nrcpt);
    if (why == NULL && r->elements != 1 + 2 * nrcpt)
        why = "recipient count";
    if (why == NULL) {
        m->rcpts = xcalloc((size_t) nrcpt, sizeof(*m->rcpts));
        m->nrcpt = (size_t) nrcpt;
        for (size_t i = 0; i < m->nrcpt && why == NULL; i++)
            why = queue_show_rcpt(r->element[1 + 2 * i], r->element[2 + 2 * i], &m->rcpts[i]);
    }
    freeReplyObject(r);
    if (why != NULL) {
        /* Nothing half-filled goes back to the caller. */
        queue_msg_free(m);
        return sy_err_set(err, SY_ETEMP, "4.3.0", "redis: %s: malformed %s", qid, why);
    }
    return SY_OK;
}

int queue_list_ids(struct queue *q, const char *after, char (*out)[QID_SIZE],
                   size_t max, size_t *nout, struct sy_err *err)
{
    char index[QUEUE_KEY_MAX], excl[QID_SIZE + 1], count[QUEUE_NUM_SIZE];
    const char *argv[7] = { "ZRANGEBYLEX", index, "-", "+", "LIMIT", "0", count };
    redisReply *r;

    *nout = 0;
    if (after == NULL)
        after = "";
    if (after[0] != '\0' && queue_check_qid(after, err) != SY_OK)
        return SY_ESYNTAX;
    if (max == 0)
        return SY_OK;
    if (max > QUEUE_BATCH_MAX)
        max = QUEUE_BATCH_MAX;
    queue_key(q, index, sizeof(index), "index");
    if (after[0] != '\0') {
        /* "(" makes the bound exclusive: strictly after `after`. */
        excl[0] = '(';
        memcpy(excl + 1, after, QID_SIZE);
        argv[2] = excl;
    }
    (void) snprintf(count, sizeof(count), "%zu", max);
    if (queue_cmd_str(q, 7, argv, &r, err) != SY_OK)
        return SY_ETEMP;
    if (r->type != REDIS_REPLY_ARRAY || r->elements > max) {
        freeReplyObject(r);
        return queue_unexpected(q, "ZRANGEBYLEX", err);
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];

        if (e->type != REDIS_REPLY_STRING || e->len != QID_LEN) {
            freeReplyObject(r);
            return queue_unexpected(q, "ZRANGEBYLEX", err);
        }
        memcpy(out[i], e->str, QID_LEN);
        out[i][QID_LEN] = '\0';
        if (!qid_valid(out[i])) {
            char safe[QUEUE_PEER_TEXT_MAX];

            (void) sy_err_set(err, SY_ETEMP, "4.3.0", "redis: index holds a malformed id: %s",
                              log_safe_n(safe, sizeof(safe), e->str, e->len));
            freeReplyObject(r);
            return SY_ETEMP;
        }
    }
    *nout = r->elements;
    freeReplyObject(r);
    return SY_OK;
}
