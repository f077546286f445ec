/* relay.c - the smtp, submission, submissions and lmtp transports (see relay.h)
 *
 * One pool per configured transport: the idle sessions (authenticated,
 * after their last transaction) and a count of open ones, busy or idle,
 * that never passes max_connections. A worker takes the most recently
 * used idle session, checks it with RSET (a server that closed it
 * meanwhile costs nothing: a new connection is opened instead), runs its
 * transaction and puts it back. When every connection is busy the worker
 * waits up to RELAY_BUSY_WAIT_MS and then gives the recipients back
 * unattempted. relay_tick() QUITs sessions idle for longer than the
 * transport's idle_timeout. Network I/O never happens under the lock.
 */
#include "gateway/transport/relay.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/smtp/client.h"
#include "gateway/smtp/sasl.h"
#include "gateway/tls.h"
#include "gateway/util/clock.h"
#include "gateway/util/log.h"
#include "gateway/util/xalloc.h"

/* How long a worker waits for a busy transport's connection. */
#define RELAY_BUSY_WAIT_MS ((int64_t) 10000)
/* Transactions per connection before it is closed (Postfix
 * smtp_connection_reuse_count_limit is unlimited; a bound limits the harm
 * of a slowly leaking server). */
#define RELAY_TXN_MAX 100u
/* QUIT of an idle connection: do not hold up the scheduler's tick. */
#define RELAY_QUIT_TIMEOUT_MS ((uint64_t) 2000)

struct relay_conn {
    struct smtp_client *cl;
    int64_t last_used_ms;
    unsigned ntxn;
    struct relay_conn *next;
};

struct relay_pool {
    const struct cfg_transport *t;
    struct smtp_client_cfg ccfg;
    struct tls_ctx *tls;
    struct sy_err tls_err;          /* why tls is NULL when it is needed */
    struct relay_conn *idle;        /* most recently used first */
    unsigned open;                  /* busy + idle */
};

struct relay {
    const struct config *cfg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sasl *sasl;
    struct sy_err sasl_err;
    struct relay_pool *pools;
    size_t npools;
};

/* relay_pool_init - the client settings of one network transport */
static void relay_pool_init(struct relay *r, struct relay_pool *p, const struct cfg_transport *t)
{
    struct smtp_client_cfg *c = &p->ccfg;

    p->t = t;
    c->host = t->host != NULL ? t->host : t->socket;     /* lmtp: "/run/..." */
    c->port = t->port;
    c->tls = t->tls;
    c->implicit_tls = t->type == CFG_TRANSPORT_SUBMISSIONS;
    c->lmtp = t->type == CFG_TRANSPORT_LMTP;
    c->helo_name = t->helo_name != NULL ? t->helo_name : "localhost";
    c->auth = t->has_auth ? &t->auth : NULL;
    c->allow_plaintext_auth = t->allow_plaintext_auth;
    c->sasl = r->sasl;
    c->connect_timeout_ms = t->connect_timeout_ms;
    c->greeting_timeout_ms = t->greeting_timeout_ms;
    c->command_timeout_ms = t->command_timeout_ms;
    c->data_timeout_ms = t->data_timeout_ms;
    c->data_block_timeout_ms = t->data_block_timeout_ms;
    c->data_done_timeout_ms = t->data_done_timeout_ms;
    if (t->tls != CFG_TLS_NONE) {
        p->tls = tls_ctx_new(t->tls_ca_file, &p->tls_err);
        if (p->tls == NULL)
            log_error(NULL, "transport %s: %s", t->name, p->tls_err.text);
    }
    c->tls_ctx = p->tls;
}

struct relay *relay_new(const struct config *cfg)
{
    struct relay *r = xcalloc(1, sizeof(*r));

    r->cfg = cfg;
    (void) pthread_mutex_init(&r->mu, NULL);
    {
        pthread_condattr_t ca;

        (void) pthread_condattr_init(&ca);
        (void) pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        (void) pthread_cond_init(&r->cv, &ca);
        (void) pthread_condattr_destroy(&ca);
    }
    r->sasl = sasl_new(&r->sasl_err);
    r->npools = cfg->ntransports;
    r->pools = xcalloc(r->npools + 1, sizeof(*r->pools));
    for (size_t i = 0; i < r->npools; i++)
        if (cfg->transports[i].type != CFG_TRANSPORT_CAPTURE)
            relay_pool_init(r, &r->pools[i], &cfg->transports[i]);
    return r;
}

/* relay_close_list - QUIT and free a detached list of idle connections */
static void relay_close_list(struct relay_conn *l)
{
    while (l != NULL) {
        struct relay_conn *next = l->next;

        smtp_client_quit(l->cl, RELAY_QUIT_TIMEOUT_MS);
        free(l);
        l = next;
    }
}

void relay_free(struct relay *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->npools; i++) {
        relay_close_list(r->pools[i].idle);
        tls_ctx_free(r->pools[i].tls);
    }
    free(r->pools);
    sasl_free(r->sasl);
    (void) pthread_cond_destroy(&r->cv);
    (void) pthread_mutex_destroy(&r->mu);
    free(r);
}

void relay_tick(struct relay *r)
{
    struct relay_conn *old = NULL;
    int64_t now = clock_mono_ms();

    if (r == NULL)
        return;
    (void) pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->npools; i++) {
        struct relay_pool *p = &r->pools[i];
        struct relay_conn **pp = &p->idle;

        while (*pp != NULL) {
            struct relay_conn *c = *pp;

            if (now - c->last_used_ms >= (int64_t) p->t->idle_timeout_ms) {
                *pp = c->next;
                c->next = old;
                old = c;
                p->open--;
            } else {
                pp = &c->next;
            }
        }
    }
    if (old != NULL)
        (void) pthread_cond_broadcast(&r->cv);
    (void) pthread_mutex_unlock(&r->mu);
    relay_close_list(old);
}

/* relay_pool_find - the pool of t: by position in cfg->transports, else by name */
static struct relay_pool *relay_pool_find(struct relay *r, const struct cfg_transport *t)
{
    if (t >= r->cfg->transports && t < r->cfg->transports + r->npools)
        return r->pools[t - r->cfg->transports].t != NULL ? &r->pools[t - r->cfg->transports] : NULL;
    for (size_t i = 0; i < r->npools; i++)
        if (r->pools[i].t != NULL && strcmp(r->pools[i].t->name, t->name) == 0)
            return &r->pools[i];
    return NULL;
}

/* relay_fail_all - every recipient gets e */
static void relay_fail_all(struct transport_rcpt *rcpts, size_t n, const struct sy_err *e)
{
    int code = sy_err_is_temp(e) ? SY_ETEMP : SY_EPERM;

    for (size_t i = 0; i < n; i++) {
        rcpts[i].code = code;
        rcpts[i].relayed = false;
        (void) snprintf(rcpts[i].reply, sizeof(rcpts[i].reply), "%s %s", sy_err_enh(e), e->text);
    }
}

/* relay_release - a connection is done with: back to the idle list, or closed */
static void relay_release(struct relay *r, struct relay_pool *p, struct relay_conn *c, bool keep)
{
    (void) pthread_mutex_lock(&r->mu);
    if (keep) {
        c->last_used_ms = clock_mono_ms();
        c->next = p->idle;
        p->idle = c;
    } else {
        p->open--;
    }
    (void) pthread_cond_broadcast(&r->cv);
    (void) pthread_mutex_unlock(&r->mu);
    if (!keep) {
        smtp_client_quit(c->cl, RELAY_QUIT_TIMEOUT_MS);
        free(c);
    }
}

/* relay_acquire - a ready session for p: a checked idle one or a new one.
 * NULL with err set (and *busy when every connection stayed busy). */
static struct relay_conn *relay_acquire(struct relay *r, struct relay_pool *p, const char *qid,
                                        bool *busy, struct smtp_client_peer *peer, struct sy_err *err)
{
    int64_t deadline = clock_mono_ms() + RELAY_BUSY_WAIT_MS;
    struct relay_conn *c;
    struct smtp_client *cl;

    (void) pthread_mutex_lock(&r->mu);
    for (;;) {
        if (p->idle != NULL) {
            struct sy_err e;

            c = p->idle;
            p->idle = c->next;
            (void) pthread_mutex_unlock(&r->mu);
            sy_err_clear(&e);
            if (smtp_client_alive(c->cl) && smtp_client_rset(c->cl, &e) == SY_OK)
                return c;
            log_debug(qid, "transport %s: cached connection unusable (%s), opening another",
                      p->t->name, e.text[0] ? e.text : "closed by the server");
            smtp_client_free(c->cl);
            free(c);
            (void) pthread_mutex_lock(&r->mu);
            p->open--;
            continue;
        }
        if (p->open < p->t->max_connections) {
            p->open++;
            break;
        }
        {
            struct timespec ts;
            int64_t now = clock_mono_ms();

            if (now >= deadline) {
                (void) pthread_mutex_unlock(&r->mu);
                *busy = true;
                (void) sy_err_set(err, SY_ETEMP, "4.4.5", "all %u connections of transport %s busy",
                                  p->t->max_connections, p->t->name);
                return NULL;
            }
            (void) clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += (time_t) ((deadline - now) / 1000);
            ts.tv_nsec += (long) ((deadline - now) % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            (void) pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        }
    }
    (void) pthread_mutex_unlock(&r->mu);
    cl = smtp_client_open(&p->ccfg, peer, err);
    if (cl == NULL) {
        (void) pthread_mutex_lock(&r->mu);
        p->open--;
        (void) pthread_cond_broadcast(&r->cv);
        (void) pthread_mutex_unlock(&r->mu);
        return NULL;
    }
    log_debug(qid, "transport %s: connected to %s[%s]:%u, tls=%s%s, auth=%s", p->t->name, p->ccfg.host,
              smtp_client_addr(cl), p->ccfg.port, smtp_client_tls_desc(cl)[0] ? smtp_client_tls_desc(cl) : "none",
              smtp_client_tls_verified(cl) ? " (verified)" : "",
              smtp_client_auth_mech(cl)[0] ? smtp_client_auth_mech(cl) : "none");
    c = xcalloc(1, sizeof(*c));
    c->cl = cl;
    return c;
}

/* relay_send_all - rcpts[0..n) over one session, in transactions of at
 * most t->max_recipients; recipients the peer's limit turned away (a 452
 * after RCPT: transport_rcpt.again) go in a further transaction at once,
 * as long as each transaction delivers or refuses someone on their own
 * merits. SY_OK when the session can be used again. */
static int relay_send_all(struct relay_conn *c, const struct cfg_transport *t,
                          const struct transport_msg *msg, struct transport_rcpt *rcpts,
                          size_t n, struct sy_err *err)
{
    size_t max = t->max_recipients > 0 ? t->max_recipients : n;
    size_t *todo = xcalloc(n, sizeof(*todo));
    struct transport_rcpt *tmp = xcalloc(max < n ? max : n, sizeof(*tmp));
    size_t ntodo = n, ntxn = 0;
    int rc = SY_OK;

    for (size_t i = 0; i < n; i++) {
        todo[i] = i;
        rcpts[i].again = false;
    }
    while (ntodo > 0) {
        size_t k = ntodo < max ? ntodo : max, nagain = 0;

        /* relay_acquire() made a cached session ready (RSET); a new one
         * is ready as it is: only a further transaction needs RSET. */
        if (ntxn > 0 && (rc = smtp_client_rset(c->cl, err)) != SY_OK)
            break;
        ntxn++;
        for (size_t j = 0; j < k; j++)
            tmp[j] = rcpts[todo[j]];
        rc = smtp_client_send(c->cl, msg, tmp, k, err);
        c->ntxn++;
        /* Results go back in place; the turned-away ones move to the front
         * of what is left, ahead of those not tried yet. */
        for (size_t j = 0; j < k; j++) {
            rcpts[todo[j]] = tmp[j];
            if (tmp[j].again)
                todo[nagain++] = todo[j];
        }
        if (nagain == k) {
            /* No progress: the scheduler retries these and the untried. */
            for (size_t j = k; j < ntodo; j++) {
                struct transport_rcpt *x = &rcpts[todo[j]];

                x->code = SY_ETEMP;
                x->again = true;
                (void) snprintf(x->reply, sizeof(x->reply), "4.5.3 %s",
                                "too many recipients for one transaction: retried later");
            }
            ntodo = 0;
            break;
        }
        (void) memmove(todo + nagain, todo + k, (ntodo - k) * sizeof(*todo));
        ntodo = nagain + (ntodo - k);
        if (rc != SY_OK)
            break;
    }
    if (ntodo > 0) {
        /* The session broke before these were tried. */
        struct sy_err e;

        sy_err_clear(&e);
        (void) sy_err_set(&e, SY_ETEMP, sy_err_enh(err), "%s",
                          err->text[0] != '\0' ? err->text : "connection lost between transactions");
        for (size_t i = 0; i < ntodo; i++)
            if (!rcpts[todo[i]].again)      /* the turned-away keep their 452 */
                relay_fail_all(&rcpts[todo[i]], 1, &e);
    }
    free(tmp);
    free(todo);
    return rc;
}

int relay_deliver(struct relay *r, const struct cfg_transport *t,
                  const struct transport_msg *msg, struct transport_rcpt *rcpts,
                  size_t n, struct transport_attempt *att)
{
    struct relay_pool *p = relay_pool_find(r, t);
    struct smtp_client_peer peer = { "", "" };
    struct relay_conn *c;
    struct sy_err err;
    bool busy = false;
    int rc;

    memset(att, 0, sizeof(*att));
    sy_err_clear(&err);
    if (p == NULL || t->type == CFG_TRANSPORT_CAPTURE) {
        (void) sy_err_set(&err, SY_ETEMP, "4.3.5", "transport %s is not a relay transport", t->name);
        relay_fail_all(rcpts, n, &err);
        return SY_OK;
    }
    if (p->ccfg.host == NULL) {
        (void) sy_err_set(&err, SY_ETEMP, "4.3.5", "transport %s has no host", t->name);
        relay_fail_all(rcpts, n, &err);
        return SY_OK;
    }
    (void) snprintf(att->remote_host, sizeof(att->remote_host), "%s%s", t->host != NULL ? "" : "unix:",
                    p->ccfg.host);
    if ((t->tls != CFG_TLS_NONE && p->tls == NULL) || (t->has_auth && r->sasl == NULL)) {
        relay_fail_all(rcpts, n, p->tls == NULL && t->tls != CFG_TLS_NONE ? &p->tls_err : &r->sasl_err);
        return SY_OK;
    }
    c = relay_acquire(r, p, msg->qid, &busy, &peer, &err);
    if (c == NULL) {
        att->not_attempted = busy;
        (void) snprintf(att->remote_addr, sizeof(att->remote_addr), "%s", peer.addr);
        (void) snprintf(att->tls, sizeof(att->tls), "%s", peer.tls);
        relay_fail_all(rcpts, n, &err);
        return SY_OK;
    }
    (void) snprintf(att->remote_addr, sizeof(att->remote_addr), "%s", smtp_client_addr(c->cl));
    (void) snprintf(att->tls, sizeof(att->tls), "%s", smtp_client_tls_desc(c->cl));
    rc = relay_send_all(c, t, msg, rcpts, n, &err);
    relay_release(r, p, c, rc == SY_OK && c->ntxn < RELAY_TXN_MAX);
    return SY_OK;
}
