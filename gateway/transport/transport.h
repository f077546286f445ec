/* transport.h - one delivery attempt of some recipients of one message
 *
 * The scheduler (gateway/deliver.c) hands every attempt to
 * transport_deliver(): the recipients of one message that share a
 * transport (and therefore a next hop), the message on disk, and an array
 * of results to fill, one per recipient. The transport named by the route
 * decides how: capture (local files), smtp / submission / submissions
 * (gateway/transport/relay.c over the SMTP client in gateway/smtp/), lmtp.
 *
 * Every recipient gets exactly one result: SY_OK (delivered), SY_ETEMP
 * (try again later) or SY_EPERM (bounce), with the remote reply or our own
 * reason. A transport never leaves a result unset, also when the
 * connection fails: then every recipient gets that failure.
 *
 * Thread safety: struct transport_ctx is shared by all delivery workers;
 * transport_deliver() may be called from any number of threads at once.
 */
#ifndef SY_TRANSPORT_TRANSPORT_H
#define SY_TRANSPORT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/config.h"
#include "gateway/envelope.h"
#include "gateway/util/err.h"

/* A reply as kept for logs, history and the DSN's Diagnostic-Code: the
 * remote reply's lines joined by CRLF, cut to this size (NUL included). */
#define TRANSPORT_REPLY_MAX ((size_t) 1024)
/* Remote host name / address text sizes, NUL included. */
#define TRANSPORT_HOST_MAX ((size_t) 256)
#define TRANSPORT_ADDR_MAX ((size_t) 64)

/* The message of one attempt; everything borrowed for the call. */
struct transport_msg {
    const char *qid;
    const struct envelope *env;     /* as read from the spool */
    int fd;                         /* the spool file, open for reading */
    uint64_t off, len;              /* the message bytes within fd (CRLF, not dot-stuffed) */
};

/* One recipient of an attempt. */
struct transport_rcpt {
    unsigned idx;                   /* in: index into env->rcpts */
    int code;                       /* out: SY_OK, SY_ETEMP or SY_EPERM */
    char reply[TRANSPORT_REPLY_MAX];/* out: the reply that decided, "250 2.1.5 Ok" or
                                     * our own "4.4.1 connection refused by ..." */
    bool relayed;                   /* out: delivered to a next hop without the DSN
                                     * extension while NOTIFY=SUCCESS was asked:
                                     * the sender gets a "relayed" DSN (RFC 3461 §4.2) */
    bool again;                     /* out (SMTP client): not refused on its own merits
                                     * but by the peer's recipient limit (a 452 after
                                     * RCPT, RFC 5321 §4.5.3.1.10): the relay sends it in
                                     * a further transaction at once */
};

/* Facts about the attempt as a whole, for the history and DSNs. */
struct transport_attempt {
    char remote_host[TRANSPORT_HOST_MAX];   /* host name connected to, "" when none */
    char remote_addr[TRANSPORT_ADDR_MAX];   /* its address ("192.0.2.1", "[::1]:587"), "" when none */
    char tls[64];                           /* "TLSv1.3 TLS_AES_256_GCM_SHA384", "" without TLS */
    bool not_attempted;                     /* nothing was tried (every connection of the
                                             * transport busy, shutting down): the scheduler
                                             * retries soon and does not count an attempt */
};

struct transport_ctx;   /* opaque: connection caches, shared by all workers */

/* Returns a new context owned by the caller (transport_ctx_free()). cfg is
 * borrowed and must outlive it. */
struct transport_ctx *transport_ctx_new(const struct config *cfg);
/* Closes idle cached connections (QUIT); then frees. NULL is a no-op. */
void transport_ctx_free(struct transport_ctx *c);
/* Closes cached connections idle for longer than their idle timeout.
 * Called by the scheduler about once a second. */
void transport_ctx_tick(struct transport_ctx *c);

/* One attempt for rcpts[0..n) (n >= 1, all of msg) through transport t.
 * Fills every rcpts[i].code/reply and *att. Returns SY_OK when every
 * result is set (whatever they are); never fails without setting them. */
int transport_deliver(struct transport_ctx *c, const struct cfg_transport *t,
                      const struct transport_msg *msg, struct transport_rcpt *rcpts,
                      size_t n, struct transport_attempt *att);

#endif
