/* queue_conn.c - the queue module's connection layer
 *
 * Connections, commands and scripts for queue.c, which holds the
 * operations and the Lua texts (queue_int.h is the interface between the
 * two; queue.h is the module's public contract). Values travel as
 * length-counted arguments of redisAppendCommandArgv, never through a
 * format string.
 *
 * Every reply is hostile input (research/reliability.md B6): our own reply
 * object functions cap array sizes and the total reply size, each command
 * runs under one deadline for the whole round trip (poll() before every
 * read, not a per-read socket timeout), and queue.c checks every element
 * for type, length and range before use. A connection that timed out,
 * failed or answered something unexpected is marked broken and closed by
 * queue_put(): a late reply would otherwise answer the next command.
 *
 * The process must ignore SIGPIPE (daemon.c does): hiredis writes with
 * write(2).
 *
 * Thread safety: the pool's idle stack and script digests are guarded by
 * its mutex; a struct queue is used by one thread at a time.
 */
#include "gateway/queue_int.h"

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

#include "gateway/queue.h"
#include "gateway/util/clock.h"
#include "gateway/util/log.h"
#include "gateway/util/text.h"
#include "gateway/util/xalloc.h"

/* Idle connections kept per pool; more are closed on queue_put(). */
#define QUEUE_IDLE_MAX ((size_t) 64)
#define QUEUE_PREFIX_MAX ((size_t) 64)
#define QUEUE_NODE_MAX ((size_t) 64)
/* Largest reply we accept, and most elements in one array: a
 * `queue show` of QUEUE_RCPT_MAX (queue.c) recipients fits well inside
 * both. */
#define QUEUE_REPLY_MAX ((size_t) 64 * 1024 * 1024)
#define QUEUE_ELEMS_MAX ((size_t) 1024 * 1024)
#define QUEUE_SHA_LEN ((size_t) 40)
/* Used when the configuration says 0 (cfg_redis defaults: 2 s). */
#define QUEUE_TIMEOUT_DEFAULT_MS ((uint64_t) 2000)

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
int queue_unexpected(struct queue *q, const char *what, struct sy_err *err)
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
int queue_cmd_str(struct queue *q, int argc, const char **argv, redisReply **out,
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
void queue_args_mem(struct queue_args *a, const char *p, size_t len)
{
    struct queue_arg *s = queue_args_slot(a);

    s->p = p;
    s->len = len;
}

void queue_args_str(struct queue_args *a, const char *s)
{
    queue_args_mem(a, s, strlen(s));
}

void queue_args_i64(struct queue_args *a, int64_t v)
{
    struct queue_arg *s = queue_args_slot(a);
    int n = snprintf(s->num, sizeof(s->num), "%lld", (long long) v);

    s->is_num = 1;
    s->len = n > 0 ? (size_t) n : 0;
}

/* queue_args_field - a field/value pair; NULL value omits the pair */
void queue_args_field(struct queue_args *a, const char *field, const char *value)
{
    if (value == NULL)
        return;
    queue_args_str(a, field);
    queue_args_str(a, value);
}

void queue_args_field_i64(struct queue_args *a, const char *field, int64_t v)
{
    queue_args_str(a, field);
    queue_args_i64(a, v);
}

/* queue_args_set_i64 - overwrite slot i with a number (a count known late) */
void queue_args_set_i64(struct queue_args *a, size_t i, int64_t v)
{
    struct queue_arg *s = &a->v[i];
    int n = snprintf(s->num, sizeof(s->num), "%lld", (long long) v);

    s->p = NULL;
    s->is_num = 1;
    s->len = n > 0 ? (size_t) n : 0;
}

void queue_args_free(struct queue_args *a)
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
static int queue_script_sha(struct queue *q, int id, const char *text,
                            char sha[QUEUE_SHA_LEN + 1], struct sy_err *err)
{
    const char *argv[3] = { "SCRIPT", "LOAD", text };
    size_t lens[3] = { 6, 4, strlen(text) };
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

/* queue_script - run script id (source text) with a's arguments (slots
 * 0-2 reserved by queue_script_args) and nkeys keys: EVALSHA, EVAL after
 * NOSCRIPT (a restarted or failed-over server has an empty script cache;
 * NOSCRIPT means nothing ran, so sending the text is safe). */
int queue_script(struct queue *q, int id, const char *text, struct queue_args *a, size_t nkeys,
                 redisReply **out, struct sy_err *err)
{
    char sha[QUEUE_SHA_LEN + 1];
    int rc;

    *out = NULL;
    if (queue_script_sha(q, id, text, sha, err) != SY_OK)
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
    a->v[1].p = text;
    a->v[1].len = strlen(text);
    rc = queue_args_send(q, a, out, err);
    if (rc == QUEUE_NOSCRIPT)
        return queue_unexpected(q, "EVAL", err);
    return rc;
}

/* queue_script_args - a list with the three slots queue_script fills */
void queue_script_args(struct queue_args *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 0; i < 3; i++)
        queue_args_mem(a, "", 0);
}

/* ---- keys --------------------------------------------------------------- */

/* queue_key - base + suffix into dst; the bounds make truncation a bug */
const char *queue_key(const struct queue *q, char *dst, size_t size, const char *fmt, ...)
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
int queue_check_qid(const char *qid, struct sy_err *err)
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
int queue_parse_u64(const redisReply *r, uint64_t max, uint64_t *out)
{
    if (r->type != REDIS_REPLY_STRING)
        return -1;
    return text_parse_u64(r->str, r->len, 0, max, out) == SY_OK ? 0 : -1;
}

/* queue_parse_score - a zset score ("1700000000000", "1.7e+12") as int64 */
int queue_parse_score(const redisReply *r, int64_t *out)
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
int queue_name_ok(const char *s, size_t max)
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
