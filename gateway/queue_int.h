/* queue_int.h - the queue module's connection layer, as queue.c sees it
 *
 * Internal to the queue module: only gateway/queue.c and
 * gateway/queue_conn.c include it; the public contract is gateway/queue.h.
 * queue_conn.c implements everything declared here (commands under a
 * deadline, argument lists, EVALSHA/EVAL, keys, numbers from replies) and
 * the pool of queue.h; queue.c holds the operations and the Lua texts.
 * hiredis appears only in these three files (and the tests).
 *
 * The calls that talk to Redis return SY_OK or SY_ETEMP (4.3.0 in err),
 * and mark q broken when the connection may be out of step with the
 * server, so queue_put() closes it.
 *
 * Thread safety: as queue.h (a struct queue belongs to one thread at a
 * time); a struct queue_args belongs to the caller that built it.
 */
#ifndef SY_QUEUE_INT_H
#define SY_QUEUE_INT_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/queue.h"
#include "gateway/util/err.h"

/* Longest key: prefix (64) + ":{" + node (64) + "}:" + "rcpt:" + qid +
 * ":" + index, with room to spare. */
#define QUEUE_KEY_MAX ((size_t) 256)
/* Peer text quoted in an error. */
#define QUEUE_PEER_TEXT_MAX ((size_t) 160)
#define QUEUE_NUM_SIZE ((size_t) 24)

/* The scripts queue.c runs; the id picks the pool's cached digest. */
enum queue_script_id {
    QS_INSERT = 0, QS_CLAIM, QS_RECORD, QS_MISSING, QS_SHOW, QS_PURGE,
    /* queue_admin.c: hold rules and the administrator's commands */
    QS_HOLD_ADD, QS_HOLD_RM, QS_HOLD_LOAD, QS_TAG_HELD, QS_ADMIN, QS_FETCH, QS_SWEEP,
    QS_ORPHAN,
    /* queue.c: lease renewal before each message's attempt */
    QS_RENEW,
    QS_COUNT
};

struct queue_arg;       /* one argument: private to queue_conn.c */

/* A command's argument list, built with queue_args_*() and released with
 * queue_args_free(). Lives on the caller's stack. */
struct queue_args {
    struct queue_arg *v;
    size_t n, cap;      /* n: arguments so far; queue.c reads it as a slot index */
};

/* Appends a borrowed argument; p must outlive the command. */
void queue_args_mem(struct queue_args *a, const char *p, size_t len);
/* Appends a borrowed C string; s must outlive the command. */
void queue_args_str(struct queue_args *a, const char *s);
/* Appends a number, formatted into the list itself. */
void queue_args_i64(struct queue_args *a, int64_t v);
/* Appends a field/value pair (both borrowed); a NULL value omits the pair. */
void queue_args_field(struct queue_args *a, const char *field, const char *value);
/* Appends a field (borrowed) and a number. */
void queue_args_field_i64(struct queue_args *a, const char *field, int64_t v);
/* Overwrites slot i (< a->n) with a number: a count known only later. */
void queue_args_set_i64(struct queue_args *a, size_t i, int64_t v);
/* Frees the list and zeroes a; the arguments it borrowed are untouched. */
void queue_args_free(struct queue_args *a);

/* Starts a list for queue_script(): three slots it fills in (command,
 * script, key count); append keys, then arguments. */
void queue_script_args(struct queue_args *a);
/* Runs script id, whose Lua source is text (borrowed; the same text every
 * time for a given id, since the digest is cached per id in the pool),
 * with a's arguments of which the first nkeys are keys: EVALSHA, EVAL
 * after NOSCRIPT. SY_OK with *out owned by the caller (freeReplyObject());
 * an error reply is SY_ETEMP. */
int queue_script(struct queue *q, int id, const char *text, struct queue_args *a, size_t nkeys,
                 redisReply **out, struct sy_err *err);

/* Sends argc C strings (argc 1-8, borrowed) as one command. SY_OK with
 * *out owned by the caller (freeReplyObject()); an error reply is
 * SY_ETEMP. */
int queue_cmd_str(struct queue *q, int argc, const char **argv, redisReply **out,
                  struct sy_err *err);

/* A reply of the wrong shape to `what` (borrowed, named in err): marks q
 * broken and returns SY_ETEMP. */
int queue_unexpected(struct queue *q, const char *what, struct sy_err *err);

/* Writes the pool's key base ("P:{N}:") plus the formatted suffix into
 * dst and returns dst. The bounds make truncation a bug: it panics. */
const char *queue_key(const struct queue *q, char *dst, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* SY_OK when qid (borrowed, may be NULL) is a queue id; else SY_ESYNTAX. */
int queue_check_qid(const char *qid, struct sy_err *err);
/* 1 when s is 1 to max bytes with no control character, brace or space
 * (usable in a key beside the {node} hash tag); NULL gives 0. */
int queue_name_ok(const char *s, size_t max);

/* Where a walk of the rule-held part of a node's `held` set stands: the
 * last entry examined that was kept ("QID:IDX"; "" before the first run)
 * and its score as Redis wrote it. Zero it to start. */
struct queue_orphan_cursor {
    char member[QID_SIZE + QUEUE_NUM_SIZE];
    char score[64];
};
/* queue_admin.c: one bounded ORPHAN run (queue_hold_sweep() repeats it).
 * Examines at most max (1 to 100000) rule-held entries after *cur,
 * releases those whose rule no longer exists (*nreleased), and advances
 * *cur; *done is 1 when the run reached the end, which also records gen
 * (borrowed, the shared P:{hold}:gen) as this node's checked gen. */
int queue_hold_orphan_batch(struct queue *q, const char *gen, size_t max,
                            struct queue_orphan_cursor *cur, size_t *nreleased, int *done,
                            struct sy_err *err);

/* A whole string reply as an unsigned decimal in [0, max]: 0, or -1. */
int queue_parse_u64(const redisReply *r, uint64_t max, uint64_t *out);
/* A zset score string reply as int64 (rounded down): 0, or -1. */
int queue_parse_score(const redisReply *r, int64_t *out);

#endif
