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

/* An administrator's verdict on a recipient (rcpt field `admin`). */
enum queue_admin { QUEUE_ADMIN_NONE = 0, QUEUE_ADMIN_FAIL, QUEUE_ADMIN_DROP };

/* Size of a transport name in a claim (64 bytes + NUL). */
#define QUEUE_CLAIM_TRANSPORT_SIZE ((size_t) 65)

/* A claimed recipient: the scheduler/worker's unit of work. */
struct queue_claim {
    char qid[QID_SIZE];
    unsigned idx;           /* recipient index in RCPT order */
    unsigned attempts;      /* attempts made before this one */
    int admin;              /* enum queue_admin (rcpt field `admin`) */
    char reroute[QUEUE_CLAIM_TRANSPORT_SIZE]; /* rcpt field `reroute`: use this transport
                                             * instead of the route rules; "" when none */
    int64_t released_ms;    /* rcpt field `released_ms` (a hold's release); 0 when none */
    int delay_sent;         /* the "delayed" DSN went out already */
    int dsn_pending;        /* enum queue_dsn_pending (rcpt field `dsn_pending`): delivered
                             * already, only its sender notification is still to be queued */
    uint64_t token;         /* rcpt field `claim` written by this claim (> 0): fences
                             * queue_lease_renew() and queue_record_result() */
};

/* A delivered recipient whose "relayed"/"delivered" DSN could not be
 * queued: it stays queued (never delivered again) until the DSN is. */
enum queue_dsn_pending { QUEUE_DSN_NONE = 0, QUEUE_DSN_RELAYED, QUEUE_DSN_DELIVERED };

/* Claims up to max recipients whose next attempt is due (score <= now_ms),
 * leasing them: their score becomes now_ms + lease_ms, so a crashed
 * worker's recipients come back when the lease runs out. Each claim gets a
 * new token (rcpt field `claim`, a counter) and the lease end (field
 * `lease_ms`): a result recorded with an older token is ignored. *nout
 * gets the count. */
int queue_claim_due(struct queue *q, int64_t now_ms, int64_t lease_ms,
                    struct queue_claim *out, size_t max, size_t *nout,
                    struct sy_err *err);
/* The same, but a full batch does not end inside a message: the due
 * entries that follow the max-th and belong to its message (same score,
 * so they sort next to it) are claimed in the same script, up to msg_max
 * more. out must have room for max + msg_max. */
int queue_claim_due_msg(struct queue *q, int64_t now_ms, int64_t lease_ms,
                        struct queue_claim *out, size_t max, size_t msg_max, size_t *nout,
                        struct sy_err *err);

/* Renews the lease of the claimed recipients c[0..n) to lease_until_ms
 * (schedule score and field lease_ms), right before they are attempted.
 * kept[i] (room for n) becomes 1 when c[i] is still this claim's and
 * queued, 0 when it is not to be attempted: claimed again by another
 * worker after the lease ran out (its token changed), final, or held
 * meanwhile (its lease is then dropped, so a release makes it due at
 * once). On error nothing is known: the caller attempts none of them. */
int queue_lease_renew(struct queue *q, const struct queue_claim *c, size_t n,
                      int64_t lease_until_ms, unsigned char *kept, struct sy_err *err);

/* Retention: deletes up to max finished messages (state done or missing)
 * that finished at or before before_ms, with their recipient records, in
 * one atomic script; *npurged gets the count. */
int queue_purge_done(struct queue *q, int64_t before_ms, size_t max, size_t *npurged,
                     struct sy_err *err);

/* The earliest scheduled time in ms, or INT64_MAX when none; < 0 on error
 * (returned through the int). */
int queue_next_due(struct queue *q, int64_t *when_ms, struct sy_err *err);

/* One entry of a recipient's attempt history (P:{N}:hist:QID:IDX); every
 * pointer borrowed. Text fields are stored with controls and tabs made
 * spaces, each cut to QUEUE_HIST_FIELD_MAX (reply: QUEUE_HIST_REPLY_MAX). */
struct queue_attempt {
    int64_t at_ms;          /* when the attempt ended (unix ms) */
    int64_t duration_ms;
    const char *transport;  /* transport name */
    const char *route;      /* route_match_format() text: "global[0]", "none" */
    const char *remote_host;/* "" when none */
    const char *remote_addr;/* "" when none */
    const char *tls;        /* "" without TLS */
    const char *reply;      /* the full reply (multi-line joined) */
};
/* Entries kept per recipient (older ones are trimmed) and field bounds. */
#define QUEUE_HIST_MAX 20
#define QUEUE_HIST_FIELD_MAX ((size_t) 255)
#define QUEUE_HIST_REPLY_MAX ((size_t) 1024)

/* Outcome of one delivery attempt for one recipient. */
struct queue_result {
    int state;              /* QUEUE_DELIVERED, QUEUE_FAILED, or QUEUE_QUEUED (deferred) */
    int64_t next_ms;        /* deferred: next attempt time */
    int64_t at_ms;          /* when the attempt ended */
    const char *transport;  /* borrowed: transport name */
    const char *reply;      /* borrowed: the reply or reason, one line */
    int not_attempted;      /* QUEUE_QUEUED only: nothing was tried; reschedule at
                             * next_ms without counting an attempt or adding history */
    int delay_sent;         /* also mark the recipient's "delayed" DSN as sent */
    const struct queue_attempt *hist;   /* borrowed; NULL: no history entry */
    uint64_t token;         /* the claim's token (queue_claim.token); 0: unfenced */
    int dsn_pending;        /* enum queue_dsn_pending; QUEUE_QUEUED only: the attempt
                             * delivered, the DSN is still to be queued (history says
                             * delivered; later results are not counted attempts) */
};

/* queue_record_result(): the result was ignored, the recipient having been
 * claimed again since (its lease ran out during the attempt). */
#define QUEUE_STALE 1

/* Records an attempt result atomically (attempt count, last reply, state,
 * schedule, one history entry trimmed to QUEUE_HIST_MAX) and ends the
 * lease. Fenced: with res->token set, a recipient claimed again since
 * (another token) is left alone and QUEUE_STALE returned. A recipient held
 * meanwhile (queue hold) stays held when the result is a deferral. When
 * every recipient of the message is final, the message record becomes
 * "done" and leaves the index; *all_final is then 1 (the caller removes
 * the spool file). all_final may be NULL. */
int queue_record_result(struct queue *q, const char *qid, unsigned idx,
                        const struct queue_result *res, int *all_final,
                        struct sy_err *err);

/* One history entry as read back; strings owned by the struct. */
struct queue_attempt_info {
    int64_t at_ms, duration_ms;
    char *state;            /* "delivered", "deferred", "failed" */
    char *transport, *route, *remote_host, *remote_addr, *tls, *reply;
};

/* What `queue show` and `queue list` print. Strings owned by the struct;
 * free with queue_msg_free(). */
struct queue_rcpt_info {
    char *addr;
    int state;
    unsigned attempts;
    int64_t next_ms;        /* 0 when not scheduled */
    char *last_reply;       /* NULL when none */
    char *transport;        /* transport of the last attempt; NULL when none */
    struct queue_attempt_info *hist;    /* attempt history, oldest first */
    size_t nhist;
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

/* ---- hold rules and the administrator's commands (gateway/queue_admin.c) ----
 *
 * Hold rules are shared by every node: they live under "P:{hold}:"
 * (docs/redis-schema.md), outside the node's hash tag, so no script mixes
 * them with a node's keys. Held recipients, the rule that held them and the
 * commands below work on this node's keys, each change one idempotent
 * script. A rule-held recipient is released by queue_hold_sweep() when its
 * rule's `until` passes or the rule is removed. */
#include "rules/hold.h"

/* Most hold rules stored at once (hold add refuses more). */
#define QUEUE_HOLD_RULES_MAX ((size_t) 1000)
/* Recipients acted on per script run (queue_admin_apply). */
#define QUEUE_OP_BATCH_MAX ((size_t) 1000)

struct queue_hold_rule {
    uint64_t id;            /* unique, from P:{hold}:seq; never reused */
    struct hold_rule rule;
};
/* The stored rules, lowest id first. Owned by the struct; release with
 * queue_hold_set_free(). */
struct queue_hold_set {
    struct queue_hold_rule *v;
    size_t n;
    uint64_t seq;           /* highest id handed out when read */
};
void queue_hold_set_free(struct queue_hold_set *s);   /* zeroes s; NULL ok */

/* Stores r (borrowed) under a new id (*id). When the same rule is stored
 * already, *id is its id and *existed (may be NULL) is 1: a repeated add
 * (its reply lost) changes nothing. SY_ETOOBIG (5.3.4) when
 * QUEUE_HOLD_RULES_MAX rules exist. */
int queue_hold_rule_add(struct queue *q, const struct hold_rule *r, uint64_t *id, int *existed,
                        struct sy_err *err);
/* Removes rule id; SY_ENOTFOUND when there is none. Its recipients are
 * released by every node's next queue_hold_sweep(). */
int queue_hold_rule_rm(struct queue *q, uint64_t id, int64_t now_ms, struct sy_err *err);
/* Reads every rule into s (zeroed by the caller). A stored rule that does
 * not decode (hostile or damaged data) is logged and left out. */
int queue_hold_rules_load(struct queue *q, struct queue_hold_set *s, struct sy_err *err);

/* A recipient that intake held by a rule. */
struct queue_hold_tag {
    unsigned idx;           /* recipient index */
    uint64_t rule;          /* rule id (> 0) */
    int64_t until;          /* the rule's until (unix s), 0 when none */
};
/* After queue_insert*() with held[idx] set: records which rule holds each
 * recipient (field held_by; the held set's score becomes the rule's end),
 * so the rule's end or removal releases it. Idempotent; a recipient that is
 * no longer held, or already tagged, is left alone. */
int queue_hold_tag(struct queue *q, const char *qid, const struct queue_hold_tag *t, size_t n,
                   struct sy_err *err);
/* queue_insert_dedup() (digest may be NULL: no duplicate check, dup_qid
 * may then be NULL too) that also records, in the same script, the rule
 * holding each recipient of tags[0..ntags) (idx < nrcpt, each idx once):
 * the recipient is inserted held, with held_by and the held set score as
 * queue_hold_tag() would write them, so no crash can leave a rule-held
 * recipient without its rule. held (may be NULL) marks more recipients
 * held without a rule (score 0). SY_ESYNTAX for a bad tag. */
int queue_insert_held(struct queue *q, const char *qid, const struct envelope *env,
                      const unsigned char *held, const struct queue_hold_tag *tags, size_t ntags,
                      int64_t next_ms, const char *digest, int64_t ttl_s, char dup_qid[QID_SIZE],
                      struct sy_err *err);

/* Releases (queued, due now) up to 1000 recipients per call whose rule's
 * until is at or before now_s, and, after a rule was removed, those whose
 * rule no longer exists; *nreleased gets the count. Cheap when nothing is
 * due: one GET and one script of one ZRANGEBYSCORE. Meant to run about
 * once a second (the scheduler; `hold rm` runs it once too). */
int queue_hold_sweep(struct queue *q, int64_t now_s, size_t *nreleased, struct sy_err *err);

/* What an administrator does to recipients (docs/cli.md):
 *   HOLD       queued -> held (a manual hold: only `release` ends it); a
 *              rule-held recipient becomes manually held;
 *   RELEASE    held -> queued, due now (not before a FUTURERELEASE time,
 *              nor before the end of a running lease, field lease_ms),
 *              released_ms = now;
 *   KICK       queued and not leased (score == next_ms and lease_ms not
 *              ahead): next attempt now;
 *   DROP       queued or held: admin = "drop", released and due now: the
 *              scheduler fails it without a DSN and removes the spool file
 *              once the message is done;
 *   DROP_NOW   queued or held -> failed "dropped by administrator" at once,
 *              no DSN (for when no daemon runs: the caller, holding the
 *              spool lock, removes the spool files of the messages done);
 *   FAIL       queued or held: admin = "fail", released and due now: the
 *              scheduler fails it with a DSN;
 *   REROUTE    queued or held: reroute = transport; due now when queued;
 *   RULE_HOLD  queued -> held by rule `rule` (hold add --apply). */
enum queue_op {
    QUEUE_OP_HOLD = 0, QUEUE_OP_RELEASE, QUEUE_OP_KICK, QUEUE_OP_DROP, QUEUE_OP_FAIL,
    QUEUE_OP_REROUTE, QUEUE_OP_RULE_HOLD, QUEUE_OP_DROP_NOW
};
struct queue_op_req {
    int op;                 /* enum queue_op */
    const char *transport;  /* REROUTE: borrowed transport name */
    uint64_t rule;          /* RULE_HOLD: rule id */
    int64_t rule_until;     /* RULE_HOLD: the rule's until (unix s), 0 when none */
    int64_t now_ms;
};
struct queue_target {
    char qid[QID_SIZE];
    unsigned idx;
};
/* Applies req to up to QUEUE_OP_BATCH_MAX recipients in one script;
 * recipients in a state the operation does not apply to are skipped.
 * *nchanged gets the count changed; done (room for n ids, may be NULL when
 * the op is not DROP_NOW) gets the messages that became done (all recipients
 * final: the caller removes their spool files), *ndone their count. */
int queue_admin_apply(struct queue *q, const struct queue_op_req *req,
                      const struct queue_target *t, size_t n, size_t *nchanged,
                      char (*done)[QID_SIZE], size_t *ndone, struct sy_err *err);

/* One recipient as the administrator's commands see it; strings owned. */
struct queue_admin_rcpt {
    char *addr;
    int state;              /* enum queue_state */
    unsigned attempts;
    int64_t sched_ms;       /* schedule score (next attempt or lease end); 0 when none */
    int64_t held_score;     /* held set score: 0 manual, the rule's until, INT64_MAX
                             * for a rule with no end; -1 when not in the set */
    uint64_t held_by;       /* rule id; 0 when none */
    int64_t released_ms;    /* 0 when never released */
    char *transport;        /* last attempt's transport; NULL when none */
    char *last_reply;       /* NULL when none */
    char *admin;            /* "fail", "drop"; NULL when none */
    char *reroute;          /* NULL when none */
};
struct queue_admin_msg {
    char qid[QID_SIZE];
    char *sender;
    char *listener;         /* NULL when unknown */
    char *state;            /* "active", "done", "missing" */
    int64_t arrival_us;
    uint64_t size;
    struct queue_admin_rcpt *rcpts;
    size_t nrcpt;
};
void queue_admin_msg_free(struct queue_admin_msg *m);   /* zeroes m; NULL ok */

/* Reads the messages ids[0..nids) (unknown ones are skipped) into out
 * (room for nids), stopping early after about 20000 recipients: *nout gets
 * the messages filled, *nused how many ids were consumed (call again with
 * the rest). Read-only. */
int queue_admin_fetch(struct queue *q, const char (*ids)[QID_SIZE], size_t nids,
                      struct queue_admin_msg *out, size_t *nout, size_t *nused,
                      struct sy_err *err);

#endif
