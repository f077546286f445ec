/* deliver.h - the scheduler: claim due recipients, route, deliver, record,
 * and send DSNs
 *
 * A bounded pool of delivery.workers threads claims due recipients from
 * the queue with a lease (a crashed worker's recipients come back when it
 * runs out). A worker renews the lease of a message's recipients right
 * before each transaction (delivery.lease covers the longest attempt of
 * any transport, config.c) and attempts only those still its own; its
 * results are fenced by the claim token, so one whose lease ran out
 * anyway never overwrites its successor's (docs/routing.md). For every claimed recipient the route rules (cfg->routes)
 * pick a transport on every attempt, from the sender, the recipient, the
 * attempts already made, the listener and the authenticated account; an
 * administrator's `reroute` overrides them. The claimed recipients of one
 * message that share a transport go to it in one transport_deliver() call
 * (one SMTP transaction). Each result is recorded with one attempt-history
 * entry: delivered, deferred with exponential backoff and jitter (the
 * transport's retry: values, else delivery's), or failed (a permanent
 * reply, an administrator's `queue fail`, or expiry counted from the
 * latest of arrival, FUTURERELEASE time and release from a hold).
 *
 * DSNs (RFC 3464) go to the envelope sender as new queued messages with a
 * null sender: "failed" on permanent failure and expiry, one "delayed"
 * after delivery.delay_warning, "relayed" when the next hop lacked the DSN
 * extension and NOTIFY=SUCCESS was asked, "delivered" for NOTIFY=SUCCESS
 * at final delivery (capture, lmtp). The recipients of one message
 * reported in the same attempt share one DSN. Ordering promise: the DSN is
 * committed through intake (fsync'd and in Redis) BEFORE the result that
 * caused it is recorded; a crash between the two repeats the attempt and
 * can at worst send a second DSN, never lose one. A failure DSN that
 * cannot be queued turns the failure into a deferral, for the same reason;
 * a delivery whose "relayed"/"delivered" DSN cannot be queued is recorded
 * with dsn_pending (queued, never delivered again), and its next claim
 * only queues the DSN, until the recipient's expiry.
 *
 * When every recipient of a message is final, its spool file is removed;
 * its Redis record is kept for delivery.retention, then deleted by a sweep
 * about once a minute. New mail wakes an idle worker at once
 * (deliver_kick), so it never waits for a polling interval.
 *
 * Thread safety: new/start/stop/free from the main thread; deliver_kick
 * from any thread. deliver_decide() and the other pure helpers are
 * reentrant.
 */
#ifndef SY_DELIVER_H
#define SY_DELIVER_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/config.h"
#include "gateway/envelope.h"
#include "gateway/intake.h"
#include "gateway/queue.h"
#include "gateway/spool.h"
#include "gateway/util/err.h"

struct deliver;     /* opaque */

/* cfg, sp, qp and in are borrowed and must outlive the result, which is
 * owned by the caller (deliver_free()). in queues the DSNs; NULL means
 * DSNs are never sent (logged instead). */
struct deliver *deliver_new(const struct config *cfg, struct spool *sp, struct queue_pool *qp,
                            struct intake *in);
/* Starts cfg->delivery.workers threads (none when 0). */
int deliver_start(struct deliver *d, struct sy_err *err);
/* Wakes an idle worker: new mail. arg is the struct deliver. */
void deliver_kick(void *arg);
/* Stops the workers after their current attempt; returns when they ended. */
void deliver_stop(struct deliver *d);
void deliver_free(struct deliver *d);   /* NULL is a no-op */

/* The delay before attempt number `attempts + 1` after `attempts` failed
 * ones: first_ms doubling per attempt, capped at max_ms, with ±10% jitter
 * drawn from *seed. Exposed for unit tests. */
int64_t deliver_backoff_ms(unsigned attempts, uint64_t first_ms, uint64_t max_ms,
                           unsigned *seed);

/* A FUTURERELEASE time (envelope hold_until, unix s) in unix ms: 0 for
 * none (<= 0), clamped to 9999-12-31T23:59:59Z so that a damaged spool
 * value cannot overflow. Exposed for unit tests. */
int64_t deliver_hold_until_ms(int64_t hold_until);

/* The retry schedule in force for transport t (NULL: none chosen): each of
 * t's retry: values that is set, else the one of delivery. */
struct deliver_retry {
    uint64_t first_ms, max_ms, expiry_ms;
};
void deliver_retry_params(const struct cfg_delivery *dc, const struct cfg_transport *t,
                          struct deliver_retry *out);

/* Everything deliver_decide() looks at for one recipient after one
 * attempt; pointers borrowed for the call. */
struct deliver_facts {
    int code;               /* SY_OK, SY_ETEMP or SY_EPERM (the transport's result) */
    int relayed;            /* transport_rcpt.relayed */
    int not_attempted;      /* transport_attempt.not_attempted */
    int final_delivery;     /* the transport delivers into a mailbox (capture, lmtp) */
    int admin;              /* enum queue_admin */
    unsigned attempts;      /* attempts made before this one */
    int64_t now_ms;         /* unix ms */
    int64_t base_ms;        /* expiry and delay warning count from here: the latest of
                             * arrival, FUTURERELEASE and release from a hold */
    struct deliver_retry retry;
    uint64_t delay_warning_ms;  /* 0: never */
    int delay_sent;         /* the delay DSN went out already */
    const struct envelope *env; /* for dsn_wanted() */
    size_t rcpt;            /* index into env->rcpts */
};

/* What becomes of the recipient. */
struct deliver_verdict {
    int state;              /* QUEUE_DELIVERED, QUEUE_FAILED or QUEUE_QUEUED */
    int not_attempted;      /* QUEUED without counting an attempt */
    int expired;            /* FAILED because the queue lifetime ran out */
    int64_t next_ms;        /* QUEUED: the next attempt (unix ms) */
    int dsn_action;         /* enum dsn_action to report, 0 for none */
    int delay_sent;         /* record that the delay DSN is being sent */
};

/* Deliver's decision (pure but for the jitter drawn from *seed):
 *   - not attempted: again in 1-5 s, no attempt counted, no DSN;
 *   - admin drop: failed without a DSN; admin fail: failed;
 *   - SY_OK: delivered; DSN "relayed" when relayed, "delivered" for a
 *     final delivery, when NOTIFY asked for SUCCESS;
 *   - SY_EPERM: failed; SY_ETEMP past base_ms + expiry: failed (expired);
 *   - SY_ETEMP otherwise: deferred by the backoff (never past the expiry
 *     time, so the last attempt happens at expiry), with a "delayed" DSN
 *     once, delay_warning after base_ms;
 *   - "failed" and "delayed" DSNs only as dsn_wanted() allows. */
void deliver_decide(const struct deliver_facts *f, unsigned *seed, struct deliver_verdict *v);

/* Groups n keys by equality of pointer: group[i] receives the index of
 * the first key equal to keys[i] (so group[i] == i starts a group).
 * Returns the number of groups. Exposed for unit tests. */
size_t deliver_group(const void *const *keys, size_t n, size_t *group);

/* The RFC 3463 status inside a reply ("550 5.1.1 no" -> "5.1.1", also a
 * bare "5.0.0 text"), copied into dst (at least 12 bytes); "" when there
 * is none. Returns dst. */
const char *deliver_reply_status(const char *reply, char *dst, size_t dstsize);

#endif
