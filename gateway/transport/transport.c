/* transport.c - one delivery attempt: dispatch by transport type
 *
 * capture delivers recipient by recipient into capture.dir; smtp,
 * submission, submissions and lmtp go to the relay engine
 * (gateway/transport/relay.c), which runs one SMTP/LMTP transaction for
 * the whole group. Whatever happens, every recipient leaves with a result.
 * A capture transport runs at most max_connections deliveries at once on
 * this node; past that an attempt is "not attempted" (retried soon).
 */
#include "gateway/transport/transport.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/transport/capture.h"
#include "gateway/transport/relay.h"
#include "gateway/util/xalloc.h"

struct transport_ctx {
    const struct config *cfg;
    struct relay *relay;
    pthread_mutex_t lock;       /* guards busy */
    unsigned *busy;             /* capture deliveries running, per cfg->transports entry */
};

struct transport_ctx *transport_ctx_new(const struct config *cfg)
{
    struct transport_ctx *c = xcalloc(1, sizeof(*c));

    c->cfg = cfg;
    c->relay = relay_new(cfg);
    c->busy = xcalloc(cfg->ntransports + 1, sizeof(*c->busy));
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

void transport_ctx_free(struct transport_ctx *c)
{
    if (c == NULL)
        return;
    relay_free(c->relay);
    pthread_mutex_destroy(&c->lock);
    free(c->busy);
    free(c);
}

/* transport_slot - take (+1) or give back (-1) one of t's capture slots;
 * taking fails (0) when max_connections are in use */
static int transport_slot(struct transport_ctx *c, const struct cfg_transport *t, int delta)
{
    size_t i = (size_t) (t - c->cfg->transports);
    int ok = 1;

    if (t < c->cfg->transports || i >= c->cfg->ntransports)
        return 1;   /* not from this configuration: no limit to keep */
    pthread_mutex_lock(&c->lock);
    if (delta > 0) {
        ok = t->max_connections == 0 || c->busy[i] < t->max_connections;
        if (ok)
            c->busy[i]++;
    } else if (c->busy[i] > 0) {
        c->busy[i]--;
    }
    pthread_mutex_unlock(&c->lock);
    return ok;
}

void transport_ctx_tick(struct transport_ctx *c)
{
    if (c != NULL)
        relay_tick(c->relay);
}

/* transport_reply_from_err - an SMTP-shaped reply line from our own error:
 * kept as it is when it already starts with a reply code */
static void transport_reply_from_err(char *dst, size_t size, const struct sy_err *e, int code)
{
    const char *t = e->text;

    if (t[0] >= '2' && t[0] <= '5' && t[1] >= '0' && t[1] <= '9' && t[2] >= '0' && t[2] <= '9' &&
        (t[3] == ' ' || t[3] == '-')) {
        (void) snprintf(dst, size, "%s", t);
        return;
    }
    (void) snprintf(dst, size, "%s %s %s", code == SY_EPERM ? "554" : "451",
                    e->enh[0] != '\0' ? e->enh : (code == SY_EPERM ? "5.3.0" : "4.3.0"), t);
}

/* transport_capture - capture, one recipient at a time */
static void transport_capture(const struct config *cfg, const struct transport_msg *msg,
                              struct transport_rcpt *rcpts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct sy_err err;
        int rc;

        sy_err_clear(&err);
        rcpts[i].relayed = false;
        rc = capture_deliver(cfg->capture.dir, msg->qid, rcpts[i].idx, msg->env, msg->fd,
                             msg->off, msg->len, rcpts[i].reply, sizeof(rcpts[i].reply), &err);
        if (rc == SY_OK) {
            rcpts[i].code = SY_OK;
            continue;
        }
        rcpts[i].code = sy_err_is_temp(&err) ? SY_ETEMP : SY_EPERM;
        transport_reply_from_err(rcpts[i].reply, sizeof(rcpts[i].reply), &err, rcpts[i].code);
    }
}

int transport_deliver(struct transport_ctx *c, const struct cfg_transport *t,
                      const struct transport_msg *msg, struct transport_rcpt *rcpts,
                      size_t n, struct transport_attempt *att)
{
    memset(att, 0, sizeof(*att));
    for (size_t i = 0; i < n; i++) {
        rcpts[i].code = SY_ETEMP;
        rcpts[i].relayed = false;
        (void) snprintf(rcpts[i].reply, sizeof(rcpts[i].reply), "451 4.3.0 transport gave no result");
    }
    if (t->type == CFG_TRANSPORT_CAPTURE) {
        if (!transport_slot(c, t, 1)) {
            att->not_attempted = true;
            for (size_t i = 0; i < n; i++)
                (void) snprintf(rcpts[i].reply, sizeof(rcpts[i].reply),
                                "451 4.4.5 transport %s: all %u delivery slots busy", t->name,
                                t->max_connections);
            return SY_OK;
        }
        transport_capture(c->cfg, msg, rcpts, n);
        (void) transport_slot(c, t, -1);
        return SY_OK;
    }
    return relay_deliver(c->relay, t, msg, rcpts, n, att);
}
