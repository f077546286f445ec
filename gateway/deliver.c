/* deliver.c - the scheduler: delivery workers, routing, retries, DSNs */
#include "gateway/deliver.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway/dsn.h"
#include "gateway/transport/transport.h"
#include "gateway/util/buf.h"
#include "gateway/util/clock.h"
#include "gateway/util/log.h"
#include "gateway/util/xalloc.h"
#include "rules/route.h"

/* Recipients one worker claims per round trip to Redis. */
#define DELIVER_CLAIM_MAX ((size_t) 16)
/* A batch that ends inside a message is extended by up to this many of its
 * recipients (queue_claim_due_msg), so a message's recipients that share
 * transport and next hop go in one SMTP transaction however the batch
 * falls. 1000 is lmtp.recipient_limit's default (Postfix
 * smtpd_recipient_limit); a larger message is still claimed in pieces of
 * about this size, each its own transaction. */
#define DELIVER_CLAIM_MSG_MAX ((size_t) 1000)
/* Longest idle sleep: also bounds how late a retry can start after a
 * missed kick from another node. */
#define DELIVER_IDLE_MAX_MS ((int64_t) 1000)
/* Finished messages past their retention are deleted this often, this
 * many per script run (one run holds Redis for well under a millisecond
 * per message). */
#define DELIVER_SWEEP_EVERY_MS ((int64_t) 60000)
#define DELIVER_SWEEP_BATCH ((size_t) 500)
/* Transport connection caches are tidied this often. */
#define DELIVER_TICK_EVERY_MS ((int64_t) 1000)
/* A recipient nothing was tried for is retried after 1 to 5 s. */
#define DELIVER_NOT_ATTEMPTED_MIN_MS ((int64_t) 1000)
#define DELIVER_NOT_ATTEMPTED_SPREAD_MS ((int64_t) 4000)
/* When a failure DSN cannot be queued, the failure becomes a deferral
 * retried after this long (the DSN must not be lost). */
#define DELIVER_DSN_RETRY_MS ((int64_t) 60000)
/* The latest FUTURERELEASE time believed (9999-12-31T23:59:59Z, unix s):
 * hold_until comes from the spool file, which may be damaged, and * 1000
 * must not overflow. */
#define DELIVER_HOLD_UNTIL_MAX INT64_C(253402300799)
/* Message bytes read for a DSN that returns only the header section of a
 * message too large to return whole: the header section must end within
 * this (intake keeps headers to 100 KiB, Postfix header_size_limit). */
#define DELIVER_DSN_HEADER_READ_MAX ((size_t) 1024 * 1024)

struct deliver {
    const struct config *cfg;
    struct spool *sp;
    struct queue_pool *qp;
    struct intake *in;
    struct transport_ctx *tc;
    pthread_t *threads;
    unsigned nthreads;
    pthread_mutex_t lock;       /* guards everything below */
    pthread_cond_t wake;
    int stopping;
    unsigned long kicks;
    unsigned long dsn_seq;      /* makes DSN tokens unique within the process */
    int64_t next_sweep_ms;      /* monotonic time of the next retention sweep */
    int64_t next_tick_ms;       /* monotonic time of the next transport tick */
};

/* One claimed recipient on its way through an attempt. */
struct deliver_item {
    const struct queue_claim *c;
    const struct cfg_transport *t;  /* NULL: decided without a transport */
    char route[ROUTE_MATCH_TEXT_MAX];
    struct transport_rcpt tr;
    const struct transport_attempt *att;
    int64_t duration_ms;
    struct deliver_verdict v;
    int skip;                       /* decided before any transport (admin, release time) */
    int before_release;             /* FUTURERELEASE time not reached: no attempt */
    int lost;                       /* not ours any more (queue_lease_renew): neither
                                     * attempted nor recorded */
    int dsn_pending;                /* enum queue_dsn_pending to record (the DSN of a
                                     * delivery could not be queued) */
    int64_t base_ms;                /* expiry counts from here */
};

int64_t deliver_hold_until_ms(int64_t hold_until)
{
    if (hold_until <= 0)
        return 0;
    if (hold_until > DELIVER_HOLD_UNTIL_MAX)
        return DELIVER_HOLD_UNTIL_MAX * 1000;
    return hold_until * 1000;
}

/* deliver_hold_ms - the FUTURERELEASE time of env in unix ms, 0 for none */
static int64_t deliver_hold_ms(const struct envelope *env)
{
    return deliver_hold_until_ms(env->hold_until);
}

struct deliver *deliver_new(const struct config *cfg, struct spool *sp, struct queue_pool *qp,
                            struct intake *in)
{
    struct deliver *d = xcalloc(1, sizeof(*d));

    d->cfg = cfg;
    d->sp = sp;
    d->qp = qp;
    d->in = in;
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->wake, NULL);
    return d;
}

int64_t deliver_backoff_ms(unsigned attempts, uint64_t first_ms, uint64_t max_ms, unsigned *seed)
{
    uint64_t delay = first_ms;
    int64_t jitter;

    for (unsigned i = 1; i < attempts && delay < max_ms; i++)
        delay = delay > max_ms / 2 ? max_ms : delay * 2;
    if (delay > max_ms)
        delay = max_ms;
    /* ±10% so recipients deferred together do not retry in lockstep. */
    jitter = (int64_t) (delay / 10);
    if (jitter > 0)
        return (int64_t) delay - jitter + (int64_t) ((uint64_t) rand_r(seed) % (uint64_t) (2 * jitter + 1));
    return (int64_t) delay;
}

void deliver_retry_params(const struct cfg_delivery *dc, const struct cfg_transport *t,
                          struct deliver_retry *out)
{
    out->first_ms = t != NULL && t->retry_first_set ? t->retry_first_ms : dc->retry_first_ms;
    out->max_ms = t != NULL && t->retry_max_set ? t->retry_max_ms : dc->retry_max_ms;
    out->expiry_ms = t != NULL && t->expiry_set ? t->expiry_ms : dc->expiry_ms;
    /* A transport may set retry_first alone above delivery's retry_max. */
    if (out->max_ms < out->first_ms)
        out->max_ms = out->first_ms;
}

/* deliver_want - action when dsn_wanted() allows it, else 0 */
static int deliver_want(const struct deliver_facts *f, int action)
{
    return f->env != NULL && dsn_wanted(f->env, f->rcpt, action) ? action : 0;
}

void deliver_decide(const struct deliver_facts *f, unsigned *seed, struct deliver_verdict *v)
{
    int64_t expires = f->base_ms + (int64_t) f->retry.expiry_ms;

    memset(v, 0, sizeof(*v));
    if (f->admin == QUEUE_ADMIN_DROP) {
        v->state = QUEUE_FAILED;
        return;
    }
    if (f->admin == QUEUE_ADMIN_FAIL) {
        v->state = QUEUE_FAILED;
        v->dsn_action = deliver_want(f, DSN_ACTION_FAILED);
        return;
    }
    if (f->not_attempted) {
        v->state = QUEUE_QUEUED;
        v->not_attempted = 1;
        v->next_ms = f->now_ms + DELIVER_NOT_ATTEMPTED_MIN_MS +
                     (int64_t) ((unsigned) rand_r(seed) % (unsigned) (DELIVER_NOT_ATTEMPTED_SPREAD_MS + 1));
        return;
    }
    if (f->code == SY_OK) {
        v->state = QUEUE_DELIVERED;
        if (f->relayed)
            v->dsn_action = deliver_want(f, DSN_ACTION_RELAYED);
        else if (f->final_delivery)
            v->dsn_action = deliver_want(f, DSN_ACTION_DELIVERED);
        return;
    }
    if (f->code != SY_ETEMP) {
        v->state = QUEUE_FAILED;
        v->dsn_action = deliver_want(f, DSN_ACTION_FAILED);
        return;
    }
    /* RFC 5321 §4.5.4.1: give up after the queue lifetime. */
    if (f->now_ms >= expires) {
        v->state = QUEUE_FAILED;
        v->expired = 1;
        v->dsn_action = deliver_want(f, DSN_ACTION_FAILED);
        return;
    }
    v->state = QUEUE_QUEUED;
    v->next_ms = f->now_ms + deliver_backoff_ms(f->attempts + 1, f->retry.first_ms, f->retry.max_ms, seed);
    /* The last attempt happens at the expiry time, not up to retry_max
     * after it. */
    if (v->next_ms > expires)
        v->next_ms = expires;
    if (f->delay_warning_ms > 0 && !f->delay_sent &&
        f->now_ms - f->base_ms >= (int64_t) f->delay_warning_ms) {
        v->dsn_action = deliver_want(f, DSN_ACTION_DELAYED);
        v->delay_sent = v->dsn_action != 0;
    }
}

size_t deliver_group(const void *const *keys, size_t n, size_t *group)
{
    size_t ngroups = 0;

    for (size_t i = 0; i < n; i++) {
        group[i] = i;
        for (size_t j = 0; j < i; j++) {
            if (keys[j] == keys[i]) {
                group[i] = group[j];
                break;
            }
        }
        if (group[i] == i)
            ngroups++;
    }
    return ngroups;
}

/* deliver_is_status - s starts with an RFC 3463 status "C.SSS.DDD" and a
 * space or the end; *len gets its length */
static int deliver_is_status(const char *s, size_t *len)
{
    size_t i = 0, digits;

    if (s[0] != '2' && s[0] != '4' && s[0] != '5')
        return 0;
    if (s[1] != '.')
        return 0;
    i = 2;
    for (int part = 0; part < 2; part++) {
        for (digits = 0; s[i] >= '0' && s[i] <= '9' && digits < 3; digits++)
            i++;
        if (digits == 0)
            return 0;
        if (part == 0) {
            if (s[i] != '.')
                return 0;
            i++;
        }
    }
    if (s[i] != '\0' && s[i] != ' ' && s[i] != '\r' && s[i] != '\n')
        return 0;
    *len = i;
    return 1;
}

const char *deliver_reply_status(const char *reply, char *dst, size_t dstsize)
{
    const char *p = reply;
    size_t n;

    dst[0] = '\0';
    if (reply == NULL || dstsize < 12)
        return dst;
    if (p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9' &&
        (p[3] == ' ' || p[3] == '-'))
        p += 4;
    if (deliver_is_status(p, &n) && n < dstsize) {
        memcpy(dst, p, n);
        dst[n] = '\0';
    }
    return dst;
}

void deliver_kick(void *arg)
{
    struct deliver *d = arg;

    pthread_mutex_lock(&d->lock);
    d->kicks++;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->lock);
}

/* deliver_wait - sleep until kicked, stopped, or ms passed */
static int deliver_wait(struct deliver *d, unsigned long *seen, int64_t ms)
{
    struct timespec ts;
    int stop;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&d->lock);
    while (!d->stopping && d->kicks == *seen)
        if (pthread_cond_timedwait(&d->wake, &d->lock, &ts) == ETIMEDOUT)
            break;
    *seen = d->kicks;
    stop = d->stopping;
    pthread_mutex_unlock(&d->lock);
    return stop;
}

/* deliver_read_msg - the original message for a DSN, or NULL (the DSN
 * then returns nothing). A message too large to return whole is read up
 * to its header section only, and env->ret is lowered to HDRS so the
 * composer does not mistake the headers for the whole message. */
static char *deliver_read_msg(struct deliver *d, const char *qid, struct envelope *env,
                              uint64_t off, uint64_t len, size_t *outlen)
{
    size_t want = len > DSN_RETURN_MAX_DEFAULT ? DELIVER_DSN_HEADER_READ_MAX : (size_t) len;
    struct sy_err err;
    size_t got = 0;
    char *p;
    int fd;

    *outlen = 0;
    if (want > len)
        want = (size_t) len;
    fd = spool_open_message(d->sp, qid, &err);
    if (fd < 0)
        return NULL;
    p = xmalloc(want + 1);
    while (got < want) {
        ssize_t r = pread(fd, p + got, want - got, (off_t) (off + got));

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t) r;
    }
    (void) close(fd);
    if (got < want) {
        free(p);
        return NULL;
    }
    if (len > DSN_RETURN_MAX_DEFAULT) {
        const char *end = NULL;

        for (size_t i = 0; i + 3 < got; i++) {
            if (memcmp(p + i, "\r\n\r\n", 4) == 0) {
                end = p + i + 4;
                break;
            }
        }
        if (end == NULL) {
            free(p);
            return NULL;
        }
        got = (size_t) (end - p);
        env->ret = ENV_RET_HDRS;
    }
    p[got] = '\0';
    *outlen = got;
    return p;
}

/* deliver_queue_dsn_items - deliver_queue_dsn() with its per-recipient
 * arrays dr and status (room for n each) */
static int deliver_queue_dsn_items(struct deliver *d, const char *qid, struct envelope *env,
                                   uint64_t off, uint64_t len, struct deliver_item *items,
                                   size_t n, int64_t now_ms, struct dsn_rcpt *dr,
                                   char (*status)[12])
{
    const struct config *cfg = d->cfg;
    char token[DSN_TOKEN_MAX + 1], dqid[QID_SIZE];
    struct dsn_input in;
    struct dsn_info info;
    struct envelope de;
    struct env_rcpt er;
    struct intake_txn *t;
    struct sy_err err;
    struct buf out;
    unsigned long seq;
    size_t nd = 0, msglen = 0;
    char *msg;
    int rc;

    for (size_t i = 0; i < n; i++) {
        struct deliver_item *it = &items[i];
        int act = it->v.dsn_action;
        char cls;

        if (act == 0)
            continue;
        memset(&dr[nd], 0, sizeof(dr[nd]));
        dr[nd].rcpt = it->c->idx;
        dr[nd].action = act;
        deliver_reply_status(it->tr.reply, status[nd], sizeof(status[nd]));
        cls = status[nd][0];
        /* The status must fit the action (dsn.h); else the action's default. */
        if ((act == DSN_ACTION_FAILED && (cls == '4' || cls == '5')) ||
            (act == DSN_ACTION_DELAYED && cls == '4') ||
            ((act == DSN_ACTION_DELIVERED || act == DSN_ACTION_RELAYED) && cls == '2'))
            dr[nd].status = status[nd];
        dr[nd].diagnostic = it->tr.reply;
        /* Our own text (no reply code) is not an SMTP diagnostic. */
        if (!(it->tr.reply[0] >= '2' && it->tr.reply[0] <= '5' && it->tr.reply[1] >= '0' &&
              it->tr.reply[1] <= '9' && it->tr.reply[2] >= '0' && it->tr.reply[2] <= '9'))
            dr[nd].diag_type = "x-switchyard";
        if (it->att != NULL && it->att->remote_host[0] != '\0')
            dr[nd].remote_mta = it->att->remote_host;
        dr[nd].last_attempt_us = it->skip ? 0 : now_ms * 1000;
        if (act == DSN_ACTION_DELAYED) {
            struct deliver_retry rp;

            deliver_retry_params(&cfg->delivery, it->t, &rp);
            dr[nd].retry_until_us = (it->base_ms + (int64_t) rp.expiry_ms) * 1000;
        }
        nd++;
    }
    if (nd == 0)
        return SY_OK;
    if (env->sender == NULL || env->sender[0] == '\0')
        return SY_OK;   /* dsn_wanted() said no already; never a DSN to <> */

    pthread_mutex_lock(&d->lock);
    seq = ++d->dsn_seq;
    pthread_mutex_unlock(&d->lock);
    (void) snprintf(token, sizeof(token), "%s.%lld.%lu", qid, (long long) now_ms, seq);

    msg = deliver_read_msg(d, qid, env, off, len, &msglen);
    memset(&in, 0, sizeof(in));
    in.env = env;
    in.rcpts = dr;
    in.nrcpts = nd;
    in.reporting_mta = cfg->lmtp.hostname != NULL ? cfg->lmtp.hostname : cfg->node;
    in.token = token;
    in.now_us = clock_real_us();
    in.msg = msg;
    in.msg_len = msglen;
    in.return_max = DSN_RETURN_MAX_DEFAULT;
    buf_init(&out, DSN_OUT_MAX);
    sy_err_clear(&err);
    rc = dsn_compose(&in, &out, &info, &err);
    free(msg);
    if (rc != SY_OK) {
        buf_free(&out);
        if (rc == SY_EPERM || rc == SY_ESYNTAX) {
            /* Nothing to retry: the sender cannot receive a DSN. */
            log_warn(qid, "no DSN sent: %s", err.text);
            return SY_OK;
        }
        log_error(qid, "cannot compose DSN: %s", err.text);
        return SY_ETEMP;
    }
    if (d->in == NULL) {
        log_warn(qid, "no DSN sent: no intake to queue it");
        buf_free(&out);
        return SY_OK;
    }

    env_init(&de);
    env_set(&de.sender, "");
    env_set(&de.listener, "dsn");
    env_set(&de.client_addr, "local");
    de.body = (info.flags & DSN_OUT_8BIT) != 0 ? ENV_BODY_8BITMIME : ENV_BODY_7BIT;
    if ((info.flags & DSN_OUT_SMTPUTF8) != 0)
        de.flags |= ENV_F_SMTPUTF8;
    if ((info.flags & DSN_OUT_8BIT) != 0)
        de.flags |= ENV_F_8BIT;
    memset(&er, 0, sizeof(er));
    er.addr = xstrdup(env->sender);
    env_add_rcpt(&de, &er);
    t = intake_begin(d->in, &de, &err);
    rc = t == NULL ? SY_ETEMP : SY_OK;
    if (rc == SY_OK && intake_write(t, out.data, out.len, &err) != SY_OK) {
        intake_abort(t);
        rc = SY_ETEMP;
    }
    if (rc == SY_OK && intake_commit(t, dqid, &err) != SY_OK)
        rc = SY_ETEMP;
    env_free(&de);
    buf_free(&out);
    if (rc != SY_OK) {
        log_error(qid, "cannot queue DSN: %s", err.text);
        return SY_ETEMP;
    }
    for (size_t i = 0; i < nd; i++) {
        char addr[LOG_SAFE_MAX];

        log_info(qid, "sender notification: %s, to=<%s>, dsn=%s",
                 dsn_action_name(dr[i].action),
                 log_safe(addr, sizeof(addr), env->rcpts[dr[i].rcpt].addr), dqid);
    }
    return SY_OK;
}

/* deliver_queue_dsn - compose one DSN for the reported items and commit it
 * through intake. SY_OK when it is durable (or when none can ever be sent:
 * a null sender, an unusable sender address: logged); SY_ETEMP when it
 * must be tried again. The arrays are on the heap: a batch can hold a
 * whole message (DELIVER_CLAIM_MSG_MAX). */
static int deliver_queue_dsn(struct deliver *d, const char *qid, struct envelope *env,
                             uint64_t off, uint64_t len, struct deliver_item *items, size_t n,
                             int64_t now_ms)
{
    struct dsn_rcpt *dr = xcalloc(n, sizeof(*dr));
    char (*status)[12] = xcalloc(n, sizeof(*status));
    int rc = deliver_queue_dsn_items(d, qid, env, off, len, items, n, now_ms, dr, status);

    free(dr);
    free(status);
    return rc;
}

/* deliver_record - record one item's verdict; 1 when the message is done */
static int deliver_record(struct deliver *d, struct queue *q, const char *qid,
                          const struct envelope *env, struct deliver_item *it, int64_t at_ms)
{
    struct queue_result res;
    struct queue_attempt h;
    struct sy_err err;
    char addr[LOG_SAFE_MAX], safe_reply[LOG_SAFE_MAX], safe_relay[LOG_SAFE_MAX];
    char safe_route[LOG_SAFE_MAX];
    char relay[TRANSPORT_HOST_MAX + TRANSPORT_ADDR_MAX + 4];
    const char *tname = it->t != NULL ? it->t->name : "";
    int all_final = 0, rc;

    memset(&res, 0, sizeof(res));
    memset(&h, 0, sizeof(h));
    res.state = it->v.state;
    res.next_ms = it->v.next_ms;
    res.at_ms = at_ms;
    res.transport = tname;
    res.reply = it->tr.reply;
    res.not_attempted = it->v.not_attempted;
    res.delay_sent = it->v.delay_sent;
    res.token = it->c->token;
    res.dsn_pending = it->dsn_pending;
    h.at_ms = at_ms;
    h.duration_ms = it->duration_ms;
    h.transport = tname;
    h.route = it->route;
    h.remote_host = it->att != NULL ? it->att->remote_host : "";
    h.remote_addr = it->att != NULL ? it->att->remote_addr : "";
    h.tls = it->att != NULL ? it->att->tls : "";
    h.reply = it->tr.reply;
    res.hist = &h;

    if (it->att != NULL && it->att->remote_host[0] != '\0')
        (void) snprintf(relay, sizeof(relay), "%s[%s]", it->att->remote_host, it->att->remote_addr);
    else
        (void) snprintf(relay, sizeof(relay), "%s", tname[0] != '\0' ? tname : "none");
    log_info(qid, "to=<%s>, relay=%s, transport=%s, route=%s, attempt=%u, delay=%.3f, status=%s (%s)",
             log_safe(addr, sizeof(addr), it->c->idx < env->nrcpt ? env->rcpts[it->c->idx].addr : "?"), log_safe(safe_relay, sizeof(safe_relay), relay),
             tname[0] != '\0' ? tname : "-", log_safe(safe_route, sizeof(safe_route), it->route),
             it->c->attempts + (it->v.not_attempted ? 0 : 1),
             (double) it->duration_ms / 1000.0,
             it->v.not_attempted ? "not attempted" : it->v.state == QUEUE_DELIVERED ? "sent" :
             it->dsn_pending != QUEUE_DSN_NONE ? "sent (sender notification pending)" :
             it->v.state == QUEUE_FAILED ? (it->v.expired ? "expired" : "bounced") : "deferred",
             log_safe(safe_reply, sizeof(safe_reply), it->tr.reply));
    rc = queue_record_result(q, qid, it->c->idx, &res, &all_final, &err);
    if (rc == QUEUE_STALE) {
        /* Fenced (docs/redis-schema.md): the lease ran out during the
         * attempt and another worker claimed the recipient since; its
         * result stands, this one is dropped. */
        log_warn(qid, "to=<%s>: result ignored: the lease ran out during the attempt and the "
                 "recipient was claimed again", addr);
        return 0;
    }
    if (rc != SY_OK) {
        /* The lease brings the recipient back: at worst one duplicate. */
        log_error(qid, "cannot record result: %s", err.text);
        return 0;
    }
    (void) d;
    return all_final;
}

/* deliver_fail_items - every claimed recipient fails with reason, no DSN
 * (a corrupt spool file is kept for the operator and never delivered) */
static void deliver_fail_items(struct deliver *d, struct queue *q, const char *qid,
                               const struct queue_claim *c, size_t n, const char *reason)
{
    for (size_t i = 0; i < n; i++) {
        struct queue_result res = { .state = QUEUE_FAILED, .reply = reason, .at_ms = clock_real_ms(),
                                    .token = c[i].token };
        struct sy_err err;
        int rc = queue_record_result(q, qid, c[i].idx, &res, NULL, &err);

        if (rc != SY_OK && rc != QUEUE_STALE)
            log_error(qid, "cannot record result: %s", err.text);
    }
    (void) d;
}

/* deliver_route - pick the transport of one item: reroute, else the route
 * rules; NULL with it->tr set when none can be used */
static const struct cfg_transport *deliver_route(struct deliver *d, const struct envelope *env,
                                                 struct deliver_item *it)
{
    const struct config *cfg = d->cfg;
    const struct queue_claim *c = it->c;
    const struct cfg_transport *t = NULL;
    struct route_facts f;
    struct route_match m;
    const char *name;

    if (c->reroute[0] != '\0') {
        t = config_transport_find(cfg, c->reroute);
        if (t != NULL) {
            (void) snprintf(it->route, sizeof(it->route), "reroute");
            return t;
        }
        log_warn(c->qid, "reroute to unknown transport %s ignored: route rules apply", c->reroute);
    }
    memset(&f, 0, sizeof(f));
    f.sender = env->sender;
    f.recipient = env->rcpts[c->idx].addr;
    f.attempts_made = c->attempts;
    f.listener = env->listener;
    f.account = env->auth_user;
    name = route_select(cfg->routes, &f, &m);
    if (route_match_format(&m, it->route, sizeof(it->route)) != SY_OK)
        (void) snprintf(it->route, sizeof(it->route), "?");
    t = config_transport_find(cfg, name);
    if (t == NULL) {
        /* The configuration checks every name: this is a broken invariant,
         * but deferring is the safe answer. */
        (void) snprintf(it->tr.reply, sizeof(it->tr.reply), "451 4.3.5 transport %s is not configured",
                        name);
        it->tr.code = SY_ETEMP;
    }
    return t;
}

/* The per-recipient arrays of one attempt, on the heap (struct
 * transport_rcpt alone carries a 1 KiB reply, and a batch may hold
 * DELIVER_CLAIM_MAX + DELIVER_CLAIM_MSG_MAX recipients of one message). */
struct deliver_arrays {
    struct deliver_item *items;
    struct transport_attempt *atts;
    const void **keys;
    size_t *group;
    struct transport_rcpt *tr;  /* one transport group's recipients */
    size_t *map;                /* tr[k] is items[map[k]] */
    unsigned char *kept;        /* queue_lease_renew()'s answer */
};

static void deliver_arrays_init(struct deliver_arrays *a, size_t n)
{
    a->items = xcalloc(n, sizeof(*a->items));
    a->atts = xcalloc(n, sizeof(*a->atts));
    a->keys = xcalloc(n, sizeof(*a->keys));
    a->group = xcalloc(n, sizeof(*a->group));
    a->tr = xcalloc(n, sizeof(*a->tr));
    a->map = xcalloc(n, sizeof(*a->map));
    a->kept = xcalloc(n, sizeof(*a->kept));
}

static void deliver_arrays_free(struct deliver_arrays *a)
{
    free(a->items);
    free(a->atts);
    free(a->keys);
    free(a->group);
    free(a->tr);
    free(a->map);
    free(a->kept);
}

/* deliver_renew - renews the lease of the claimed recipients c[0..n) right
 * before an attempt (delivery.lease covers the longest attempt of any
 * transport, config.c); one that is no longer ours becomes lost: it is
 * neither attempted nor recorded. When Redis cannot answer, none is ours:
 * their leases bring them back. */
static void deliver_renew(struct deliver *d, struct queue *q, const struct queue_claim *c,
                          struct deliver_item *items, size_t n, unsigned char *kept)
{
    struct sy_err err;
    int64_t until = clock_real_ms() + (int64_t) d->cfg->delivery.lease_ms;

    sy_err_clear(&err);
    if (queue_lease_renew(q, c, n, until, kept, &err) != SY_OK) {
        log_warn(c[0].qid, "cannot renew the lease, recipients left for later: %s", err.text);
        memset(kept, 0, n);
    }
    for (size_t i = 0; i < n; i++) {
        if (kept[i] || items[i].lost)
            continue;
        items[i].lost = 1;
        log_info(c[0].qid, "recipient %u not attempted: claimed by another worker, held or final "
                 "since this batch was claimed", c[i].idx);
    }
}

static void deliver_message_run(struct deliver *d, struct queue *q, const struct queue_claim *c,
                                size_t n, unsigned *seed, struct deliver_arrays *arr);

/* deliver_message - one attempt for the claimed recipients c[0..n) of one
 * message */
static void deliver_message(struct deliver *d, struct queue *q, const struct queue_claim *c,
                            size_t n, unsigned *seed)
{
    struct deliver_arrays arr;

    deliver_arrays_init(&arr, n);
    deliver_message_run(d, q, c, n, seed, &arr);
    deliver_arrays_free(&arr);
}

/* deliver_message_run - deliver_message() with its arrays (room for n) */
static void deliver_message_run(struct deliver *d, struct queue *q, const struct queue_claim *c,
                                size_t n, unsigned *seed, struct deliver_arrays *arr)
{
    const char *qid = c[0].qid;
    struct deliver_item *items = arr->items;
    struct transport_attempt *atts = arr->atts;
    const void **keys = arr->keys;
    size_t *group = arr->group;
    struct envelope env;
    struct sy_err err;
    uint64_t off = 0, len = 0;
    int64_t now, base, at_ms;
    int rc, fd = -1, all_final = 0, have_dsn = 0;
    unsigned mseed;

    env_init(&env);
    sy_err_clear(&err);
    rc = spool_read(d->sp, qid, &env, &off, &len, &err);
    if (rc == SY_ENOTFOUND) {
        log_error(qid, "spool file missing: recipients marked missing");
        (void) queue_mark_missing(q, qid, &err);
        env_free(&env);
        return;
    }
    if (rc == SY_EIO) {
        /* A read error may pass: the lease brings the recipients back. */
        log_warn(qid, "spool file read error, retrying later: %s", err.text);
        env_free(&env);
        return;
    }
    if (rc != SY_OK) {
        log_error(qid, "spool file unusable: %s", err.text);
        deliver_fail_items(d, q, qid, c, n, "5.3.0 spool file corrupt");
        env_free(&env);
        return;
    }

    now = clock_real_ms();
    base = env.arrival_us / 1000;
    if (deliver_hold_ms(&env) > base)
        base = deliver_hold_ms(&env);
    for (size_t i = 0; i < n; i++) {
        struct deliver_item *it = &items[i];

        it->c = &c[i];
        it->tr.idx = c[i].idx;
        it->tr.code = SY_ETEMP;
        keys[i] = NULL;
        if (c[i].idx >= env.nrcpt) {
            (void) snprintf(it->tr.reply, sizeof(it->tr.reply), "5.3.0 spool file has no recipient %u",
                            c[i].idx);
            it->tr.code = SY_EPERM;
            it->skip = 1;
            (void) snprintf(it->route, sizeof(it->route), "none");
            continue;
        }
        if (c[i].dsn_pending != QUEUE_DSN_NONE) {
            /* Delivered already: only its DSN is still to be queued. */
            it->tr.code = SY_OK;
            it->tr.relayed = c[i].dsn_pending == QUEUE_DSN_RELAYED;
            it->skip = 1;
            (void) snprintf(it->route, sizeof(it->route), "dsn-retry");
            (void) snprintf(it->tr.reply, sizeof(it->tr.reply),
                            "2.0.0 delivered earlier, sender notification retried");
            continue;
        }
        if (c[i].admin == QUEUE_ADMIN_FAIL || c[i].admin == QUEUE_ADMIN_DROP) {
            (void) snprintf(it->tr.reply, sizeof(it->tr.reply), "5.0.0 %s by administrator",
                            c[i].admin == QUEUE_ADMIN_FAIL ? "failed" : "dropped");
            it->tr.code = SY_EPERM;
            it->skip = 1;
            (void) snprintf(it->route, sizeof(it->route), "admin");
            continue;
        }
        if (deliver_hold_ms(&env) > now) {
            /* FUTURERELEASE (RFC 4865): no attempt before the release time. */
            it->skip = 1;
            it->before_release = 1;
            (void) snprintf(it->route, sizeof(it->route), "futurerelease");
            (void) snprintf(it->tr.reply, sizeof(it->tr.reply), "4.4.0 held until the FUTURERELEASE time");
            continue;
        }
        it->t = deliver_route(d, &env, it);
        if (it->t == NULL)
            it->skip = 1;
        keys[i] = it->t;
    }

    /* One transport_deliver() per transport: one transaction per group. */
    (void) deliver_group(keys, n, group);
    for (size_t g = 0; g < n; g++) {
        struct transport_rcpt *tr = arr->tr;
        size_t *map = arr->map, k = 0;
        struct transport_msg msg;
        int64_t t0;

        if (group[g] != g || items[g].skip)
            continue;
        /* The lease was taken for the whole batch at claim time: renew it
         * right before this transaction, which the lease must cover. */
        deliver_renew(d, q, c, items, n, arr->kept);
        for (size_t i = g; i < n; i++) {
            if (group[i] == g && !items[i].skip && !items[i].lost) {
                tr[k] = items[i].tr;
                map[k++] = i;
            }
        }
        if (k == 0)
            continue;
        if (fd < 0)
            fd = spool_open_message(d->sp, qid, &err);
        memset(&atts[g], 0, sizeof(atts[g]));
        t0 = clock_mono_ms();
        if (fd < 0) {
            for (size_t i = 0; i < k; i++) {
                tr[i].code = SY_ETEMP;
                (void) snprintf(tr[i].reply, sizeof(tr[i].reply), "451 4.3.0 %s", err.text);
            }
        } else {
            msg.qid = qid;
            msg.env = &env;
            msg.fd = fd;
            msg.off = off;
            msg.len = len;
            (void) transport_deliver(d->tc, items[g].t, &msg, tr, k, &atts[g]);
        }
        for (size_t i = 0; i < k; i++) {
            items[map[i]].tr = tr[i];
            items[map[i]].att = &atts[g];
            items[map[i]].duration_ms = clock_mono_ms() - t0;
        }
    }
    if (fd >= 0)
        (void) close(fd);

    at_ms = clock_real_ms();
    /* One jitter draw per message: its recipients deferred together stay
     * due together, so their retry is again one transaction. */
    mseed = (unsigned) rand_r(seed);
    for (size_t i = 0; i < n; i++) {
        struct deliver_item *it = &items[i];
        struct deliver_facts f;
        int64_t b = base;
        unsigned iseed = mseed;

        if (it->c->released_ms > b)
            b = it->c->released_ms;
        it->base_ms = b;
        if (it->lost) {
            memset(&it->v, 0, sizeof(it->v));
            continue;
        }
        memset(&f, 0, sizeof(f));
        f.code = it->tr.code;
        f.relayed = it->tr.relayed;
        f.not_attempted = it->att != NULL && it->att->not_attempted;
        f.final_delivery = it->t != NULL &&
                           (it->t->type == CFG_TRANSPORT_CAPTURE || it->t->type == CFG_TRANSPORT_LMTP);
        f.admin = it->c->idx < env.nrcpt ? it->c->admin : QUEUE_ADMIN_DROP;
        f.attempts = it->c->attempts;
        f.now_ms = at_ms;
        f.base_ms = b;
        deliver_retry_params(&d->cfg->delivery, it->t, &f.retry);
        f.delay_warning_ms = d->cfg->delivery.delay_warning_ms;
        f.delay_sent = it->c->delay_sent;
        f.env = &env;
        f.rcpt = it->c->idx;
        if (it->before_release) {
            /* Before the release time: not an attempt. */
            memset(&it->v, 0, sizeof(it->v));
            it->v.state = QUEUE_QUEUED;
            it->v.not_attempted = 1;
            it->v.next_ms = deliver_hold_ms(&env);
            continue;
        }
        if (it->c->dsn_pending != QUEUE_DSN_NONE) {
            int act = it->c->dsn_pending == QUEUE_DSN_RELAYED ? DSN_ACTION_RELAYED : DSN_ACTION_DELIVERED;

            memset(&it->v, 0, sizeof(it->v));
            it->v.state = QUEUE_DELIVERED;
            if (at_ms < b + (int64_t) f.retry.expiry_ms)
                it->v.dsn_action = deliver_want(&f, act);
            else
                log_error(qid, "recipient %u: the %s DSN could not be queued within the queue "
                          "lifetime, given up", it->c->idx, dsn_action_name(act));
            if (it->v.dsn_action != 0)
                have_dsn = 1;
            continue;
        }
        deliver_decide(&f, &iseed, &it->v);
        if (it->v.expired) {
            char why[TRANSPORT_REPLY_MAX - 80];

            (void) snprintf(why, sizeof(why), "%s", it->tr.reply);
            (void) snprintf(it->tr.reply, sizeof(it->tr.reply), "%s (gave up: expired after %u s)",
                            why, (unsigned) (f.retry.expiry_ms / 1000));
        }
        if (it->v.dsn_action != 0)
            have_dsn = 1;
    }

    /* The DSN is durable before the results that caused it are recorded
     * (deliver.h): a crash in between repeats the attempt, at worst
     * sending a second DSN, never losing one. */
    if (have_dsn && deliver_queue_dsn(d, qid, &env, off, len, items, n, at_ms) != SY_OK) {
        for (size_t i = 0; i < n; i++) {
            struct deliver_item *it = &items[i];

            if (it->v.state == QUEUE_DELIVERED &&
                (it->v.dsn_action == DSN_ACTION_RELAYED || it->v.dsn_action == DSN_ACTION_DELIVERED)) {
                /* Delivered, never to be attempted again, but its DSN is
                 * not durable: it stays queued with dsn_pending, and
                 * its next claim only queues the DSN (deliver.h). */
                it->dsn_pending = it->v.dsn_action == DSN_ACTION_RELAYED ? QUEUE_DSN_RELAYED
                                                                         : QUEUE_DSN_DELIVERED;
                it->v.state = QUEUE_QUEUED;
                it->v.next_ms = at_ms + DELIVER_DSN_RETRY_MS;
            } else if (it->v.dsn_action == DSN_ACTION_FAILED) {
                /* Not recorded as failed without its DSN: retry later. */
                it->v.state = QUEUE_QUEUED;
                it->v.expired = 0;
                it->v.next_ms = at_ms + DELIVER_DSN_RETRY_MS;
                if (it->c->admin == QUEUE_ADMIN_FAIL)
                    it->v.not_attempted = 1;
            }
            it->v.delay_sent = 0;
            it->v.dsn_action = 0;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!items[i].lost && deliver_record(d, q, qid, &env, &items[i], at_ms))
            all_final = 1;
    if (all_final) {
        if (spool_remove(d->sp, qid, &err) != SY_OK && err.code != SY_ENOTFOUND)
            log_error(qid, "cannot remove spool file: %s", err.text);
        else
            log_info(qid, "removed");
    }
    env_free(&env);
}

/* deliver_claim_cmp - order claims by message, then recipient */
static int deliver_claim_cmp(const void *a, const void *b)
{
    const struct queue_claim *x = a, *y = b;
    int c = strcmp(x->qid, y->qid);

    if (c != 0)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* deliver_due - 1 when the periodic job whose next time is *next is due
 * (and moves it on by every_ms); one worker at a time */
static int deliver_due(struct deliver *d, int64_t *next, int64_t every_ms)
{
    int64_t now = clock_mono_ms();
    int due;

    pthread_mutex_lock(&d->lock);
    due = now >= *next;
    if (due)
        *next = now + every_ms;
    pthread_mutex_unlock(&d->lock);
    return due;
}

/* deliver_sweep - delete finished messages past delivery.retention; one
 * worker at a time, about once a minute */
static void deliver_sweep(struct deliver *d, struct queue *q)
{
    int64_t before;
    size_t n, total = 0;
    struct sy_err err;

    if (!deliver_due(d, &d->next_sweep_ms, DELIVER_SWEEP_EVERY_MS))
        return;
    before = clock_real_ms() - (int64_t) d->cfg->delivery.retention_ms;
    do {
        if (queue_purge_done(q, before, DELIVER_SWEEP_BATCH, &n, &err) != SY_OK) {
            log_warn(NULL, "retention sweep: %s", err.text);
            return;
        }
        total += n;
    } while (n == DELIVER_SWEEP_BATCH);
    if (total > 0)
        log_info(NULL, "retention: deleted %zu finished message(s) from Redis", total);
}

/* deliver_tick - once a second, from one worker: transport caches, and
 * (hook) the timed release of hold rules */
static void deliver_tick(struct deliver *d, struct queue *q)
{
    if (!deliver_due(d, &d->next_tick_ms, DELIVER_TICK_EVERY_MS))
        return;
    transport_ctx_tick(d->tc);
    /* Hold rules whose `until` passed, or that were removed, release
     * their recipients (gateway/queue_admin.c). */
    {
        struct sy_err err;
        size_t n = 0;

        if (queue_hold_sweep(q, clock_real_ms() / 1000, &n, &err) != SY_OK)
            log_warn(NULL, "hold sweep: %s", err.text);
        else if (n > 0)
            log_info(NULL, "hold: released %zu recipient(s)", n);
    }
}

/* deliver_main - one worker thread */
static void *deliver_main(void *arg)
{
    struct deliver *d = arg;
    unsigned seed = (unsigned) (clock_real_us() ^ (int64_t) (uintptr_t) &seed);
    unsigned long seen = 0;
    int64_t lease = (int64_t) d->cfg->delivery.lease_ms;

    /* On the heap: a batch may be extended by a whole message. */
    struct queue_claim *claims = xcalloc(DELIVER_CLAIM_MAX + DELIVER_CLAIM_MSG_MAX, sizeof(*claims));

    for (;;) {
        struct sy_err err;
        size_t n = 0;
        int64_t next = INT64_MAX, now;
        struct queue *q;

        pthread_mutex_lock(&d->lock);
        if (d->stopping) {
            pthread_mutex_unlock(&d->lock);
            break;
        }
        pthread_mutex_unlock(&d->lock);

        q = queue_get(d->qp, &err);
        if (q == NULL) {
            log_warn(NULL, "delivery paused: %s", err.text);
            if (deliver_wait(d, &seen, DELIVER_IDLE_MAX_MS))
                break;
            continue;
        }
        now = clock_real_ms();
        if (queue_claim_due_msg(q, now, lease, claims, DELIVER_CLAIM_MAX, DELIVER_CLAIM_MSG_MAX, &n,
                                &err) != SY_OK) {
            log_warn(NULL, "claiming due recipients: %s", err.text);
            n = 0;
        }
        qsort(claims, n, sizeof(claims[0]), deliver_claim_cmp);
        for (size_t i = 0; i < n;) {
            size_t k = 1;

            while (i + k < n && strcmp(claims[i + k].qid, claims[i].qid) == 0)
                k++;
            deliver_message(d, q, &claims[i], k, &seed);
            i += k;
        }
        deliver_tick(d, q);
        deliver_sweep(d, q);
        if (n == 0 && queue_next_due(q, &next, &err) != SY_OK)
            next = INT64_MAX;
        queue_put(d->qp, q);
        if (n == 0) {
            int64_t wait = next == INT64_MAX ? DELIVER_IDLE_MAX_MS : next - clock_real_ms();

            if (wait > DELIVER_IDLE_MAX_MS)
                wait = DELIVER_IDLE_MAX_MS;
            if (wait > 0 && deliver_wait(d, &seen, wait))
                break;
        }
    }
    free(claims);
    return NULL;
}

int deliver_start(struct deliver *d, struct sy_err *err)
{
    unsigned n = d->cfg->delivery.workers;

    d->threads = xcalloc(n == 0 ? 1 : n, sizeof(*d->threads));
    if (n > 0 && d->tc == NULL)
        d->tc = transport_ctx_new(d->cfg);
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&d->threads[i], NULL, deliver_main, d) != 0) {
            deliver_stop(d);
            return sy_err_set(err, SY_ETEMP, "", "cannot start delivery worker %u", i);
        }
        d->nthreads++;
    }
    if (n > 0)
        log_info(NULL, "delivery: %u worker(s), default transport=%s, %zu route rule(s)", n,
                 d->cfg->delivery.default_transport, route_table_count(d->cfg->routes));
    return SY_OK;
}

void deliver_stop(struct deliver *d)
{
    if (d == NULL)
        return;
    pthread_mutex_lock(&d->lock);
    d->stopping = 1;
    pthread_cond_broadcast(&d->wake);
    pthread_mutex_unlock(&d->lock);
    for (unsigned i = 0; i < d->nthreads; i++)
        pthread_join(d->threads[i], NULL);
    d->nthreads = 0;
}

void deliver_free(struct deliver *d)
{
    if (d == NULL)
        return;
    deliver_stop(d);
    transport_ctx_free(d->tc);
    free(d->threads);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->wake);
    free(d);
}
