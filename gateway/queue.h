/* queue.h - the Redis-backed queue index (the only user of hiredis)
 *
 * Redis holds per-recipient delivery records, the schedule ordered by
 * next-attempt time, held recipients and the message index. The spool is
 * the source of truth; everything here can be rebuilt from it. Every
 * multi-key change is one Lua script (atomic) and idempotent, so a command
 * whose outcome is unknown (timeout) may simply be repeated. Values go to
 * Redis as binary-safe arguments, never formatted into a command. Keys are
 * documented in docs/redis-schema.md; all of a node's queue keys share one
 * hash tag ({node}) so Redis Cluster keeps them in one slot.
 *
 * A connection that timed out or failed is dropped, never reused (a late
 * reply would answer the wrong command).
 *
 * Thread safety: struct queue_pool is shared by all threads; a struct
 * queue (one Redis connection) belongs to one thread between queue_get()
 * and queue_put().
 */
#ifndef SY_QUEUE_H
#define SY_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/config.h"
#include "gateway/envelope.h"
#include "gateway/qid.h"
#include "gateway/util/err.h"

struct queue_pool;      /* opaque: connection parameters + idle connections */
struct queue;           /* opaque: one Redis connection */

/* Recipient states, as stored in Redis (docs/redis-schema.md). */
enum queue_state {
    QUEUE_QUEUED = 0,   /* in the schedule */
    QUEUE_HELD,         /* held: not scheduled until released */
    QUEUE_DELIVERED,    /* final */
    QUEUE_FAILED,       /* final: bounced or expired */
    QUEUE_MISSING       /* spool file gone: logged, never delivered */
};
const char *queue_state_name(int state);   /* "queued", ...; static */

/* Returns a new pool owned by the caller (queue_pool_free()). cfg and node
 * are borrowed and must outlive the pool. Connects lazily. */
struct queue_pool *queue_pool_new(const struct cfg_redis *cfg, const char *node);
void queue_pool_free(struct queue_pool *p);   /* closes idle connections; NULL ok */

/* An idle connection, or a new one (connect + AUTH + SELECT within the
 * configured timeouts). NULL with err (SY_ETEMP, 4.3.0) when Redis is
 * unreachable. */
struct queue *queue_get(struct queue_pool *p, struct sy_err *err);
/* Returns q to the pool, or closes it when it failed. NULL is a no-op. */
void queue_put(struct queue_pool *p, struct queue *q);

/* SY_OK when Redis answers PING. */
int queue_ping(struct queue *q, struct sy_err *err);

/* Records a new message and its recipients atomically: message hash,
 * per-recipient records, the message index, and for each recipient either
 * the schedule (score next_ms) or the held set (held[i] != 0; held may be
 * NULL). Idempotent: when the message already exists nothing changes and
 * SY_OK is returned. */
int queue_insert(struct queue *q, const char *qid, const struct envelope *env,
                 const unsigned char *held, int64_t next_ms, struct sy_err *err);
/* The same, remembering digest (64 lowercase hex digits: digest.h) for
 * ttl_s seconds in the same script. When the digest is already known, the
 * message is the MTA's retry of an earlier one: nothing is written and
 * dup_qid receives the earlier queue id (otherwise dup_qid is ""). */
int queue_insert_dedup(struct queue *q, const char *qid, const struct envelope *env,
                       const unsigned char *held, int64_t next_ms, const char *digest,
                       int64_t ttl_s, char dup_qid[QID_SIZE], struct sy_err *err);

/* 1 when the message is known to Redis, 0 when not, < 0 on error. */
int queue_exists(struct queue *q, const char *qid, struct sy_err *err);

/* Marks every non-final recipient of qid QUEUE_MISSING and takes them out
 * of the schedule and the held set (its spool file is gone). */
int queue_mark_missing(struct queue *q, const char *qid, struct sy_err *err);

/* A claimed recipient: the scheduler/worker's unit of work. */
struct queue_claim {
    char qid[QID_SIZE];
    unsigned idx;           /* recipient index in RCPT order */
    unsigned attempts;      /* attempts made before this one */
};

/* Claims up to max recipients whose next attempt is due (score <= now_ms),
 * leasing them: their score becomes now_ms + lease_ms, so a crashed
 * worker's recipients come back when the lease runs out. *nout gets the
 * count. */
int queue_claim_due(struct queue *q, int64_t now_ms, int64_t lease_ms,
                    struct queue_claim *out, size_t max, size_t *nout,
                    struct sy_err *err);

/* Retention: deletes up to max finished messages (state done or missing)
 * that finished at or before before_ms, with their recipient records, in
 * one atomic script; *npurged gets the count. */
int queue_purge_done(struct queue *q, int64_t before_ms, size_t max, size_t *npurged,
                     struct sy_err *err);

/* The earliest scheduled time in ms, or INT64_MAX when none; < 0 on error
 * (returned through the int). */
int queue_next_due(struct queue *q, int64_t *when_ms, struct sy_err *err);

/* Outcome of one delivery attempt for one recipient. */
struct queue_result {
    int state;              /* QUEUE_DELIVERED, QUEUE_FAILED, or QUEUE_QUEUED (deferred) */
    int64_t next_ms;        /* deferred: next attempt time */
    int64_t at_ms;          /* when the attempt ended */
    const char *transport;  /* borrowed: transport name */
    const char *reply;      /* borrowed: the reply or reason, one line */
};

/* Records an attempt result atomically (attempt count, last reply, state,
 * schedule). When every recipient of the message is final, the message
 * record becomes "done" and leaves the index; *all_final is then 1 (the
 * caller removes the spool file). all_final may be NULL. */
int queue_record_result(struct queue *q, const char *qid, unsigned idx,
                        const struct queue_result *res, int *all_final,
                        struct sy_err *err);

/* What `queue show` and `queue list` print. Strings owned by the struct;
 * free with queue_msg_free(). */
struct queue_rcpt_info {
    char *addr;
    int state;
    unsigned attempts;
    int64_t next_ms;        /* 0 when not scheduled */
    char *last_reply;       /* NULL when none */
};
struct queue_msg_info {
    char qid[QID_SIZE];
    char *sender;
    char *listener;
    char *mta_qid;
    char *state;            /* "active", "done", "missing" */
    int64_t arrival_us;
    uint64_t size;
    struct queue_rcpt_info *rcpts;
    size_t nrcpt;
};
void queue_msg_free(struct queue_msg_info *m);

/* Fills m (zeroed by the caller) for qid; SY_ENOTFOUND when unknown. */
int queue_show(struct queue *q, const char *qid, struct queue_msg_info *m, struct sy_err *err);

/* Lists message ids in the index in id order, starting after `after`
 * ("" for the start), at most max; *nout gets the count. */
int queue_list_ids(struct queue *q, const char *after, char (*out)[QID_SIZE],
                   size_t max, size_t *nout, struct sy_err *err);

#endif
