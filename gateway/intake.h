/* intake.h - the one door into the gateway for lmtp/ and milter/
 *
 * A front end checks MAIL and RCPT with intake_check_*(), then streams the
 * message through a transaction: intake_begin(), intake_write() for every
 * piece, intake_commit(). SY_OK from intake_commit() means the message is
 * fsync'd in the spool and recorded in Redis: only then may the front end
 * answer 250. Any failure before that leaves nothing behind and carries
 * the reply's enhanced status code in err (452 4.3.1 disk full, 451 4.3.0
 * otherwise). Intake knows nothing of transports.
 *
 * Thread safety: struct intake is shared by all threads; a struct
 * intake_txn belongs to the thread that began it.
 */
#ifndef SY_INTAKE_H
#define SY_INTAKE_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/config.h"
#include "gateway/envelope.h"
#include "gateway/qid.h"
#include "gateway/queue.h"
#include "gateway/spool.h"
#include "gateway/util/err.h"

struct intake;          /* opaque */
struct intake_txn;      /* opaque: one message being received */

/* Returns a new intake owned by the caller (intake_free()); cfg, sp and qp
 * are borrowed and must outlive it. */
struct intake *intake_new(const struct config *cfg, struct spool *sp, struct queue_pool *qp);
void intake_free(struct intake *in);       /* NULL is a no-op */

/* Registers fn to be called (from the committing thread) after every
 * successful commit: the delivery side's "new mail" kick. */
void intake_set_notify(struct intake *in, void (*fn)(void *arg), void *arg);

/* At MAIL: SY_OK, or SY_ENOSPACE (452 4.3.1) when the spool lacks room
 * for a message of `size` bytes (0 = unknown) plus the configured reserve. */
int intake_check_mail(struct intake *in, const struct envelope *env, uint64_t size,
                      struct sy_err *err);
/* At RCPT, for the recipient just parsed (not yet in env): SY_OK, or an
 * error whose enh/text make the RCPT reply. (Suppression checks hook in
 * here.) */
int intake_check_rcpt(struct intake *in, const struct envelope *env,
                      const struct env_rcpt *rcpt, struct sy_err *err);

/* Begins a message for env (borrowed; copied). Returns a new transaction
 * owned by the caller (end it with intake_commit() or intake_abort()), or
 * NULL with err set. */
struct intake_txn *intake_begin(struct intake *in, const struct envelope *env,
                                struct sy_err *err);
/* Appends message bytes exactly as they will be stored. */
int intake_write(struct intake_txn *t, const void *p, size_t n, struct sy_err *err);
/* Like intake_write(), but the bytes stay out of the duplicate digest:
 * for the MTA's own trace field (milter), which differs on the client's
 * retry of the same message (a new MTA queue id and time). */
int intake_write_trace(struct intake_txn *t, const void *p, size_t n, struct sy_err *err);
/* Makes the message durable (spool fsync, then Redis) and frees t,
 * whatever the outcome. On SY_OK, qid receives the queue id. */
int intake_commit(struct intake_txn *t, char qid[QID_SIZE], struct sy_err *err);
void intake_abort(struct intake_txn *t);   /* frees t; NULL is a no-op */

/* Policy check (milter policy mode): *rule receives the id of the first
 * hold rule (cached as for commits) that holds some recipient of env now,
 * 0 when none. SY_OK or a Redis error (4.3.0). */
int intake_hold_check(struct intake *in, const struct envelope *env, uint64_t *rule,
                      struct sy_err *err);

/* Start-up reconciliation and `queue rebuild`: removes stale temporary
 * files, re-indexes spool files missing from Redis from their envelope
 * record, marks Redis records whose spool file is gone. Counts go to the
 * log; SY_OK or the first Redis error. */
int intake_reconcile(struct intake *in, struct sy_err *err);

#endif
