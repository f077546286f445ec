/* deliver.h - delivery workers: claim due recipients, deliver, record
 *
 * A bounded pool of threads claims due recipients from the queue with a
 * lease (a crashed worker's recipients come back when it runs out),
 * delivers each through the default transport, and records the result:
 * delivered, deferred with exponential backoff and jitter, or failed
 * (permanent reply or expiry). When every recipient of a message is
 * final, its spool file is removed; its Redis record is kept for
 * delivery.retention, then deleted by a sweep about once a minute. New
 * mail wakes an idle worker at once (deliver_kick), so it never waits for
 * a polling interval.
 *
 * Thread safety: new/start/stop/free from the main thread; deliver_kick
 * from any thread.
 */
#ifndef SY_DELIVER_H
#define SY_DELIVER_H

#include <stdint.h>

#include "gateway/config.h"
#include "gateway/queue.h"
#include "gateway/spool.h"
#include "gateway/util/err.h"

struct deliver;     /* opaque */

/* cfg, sp and qp are borrowed and must outlive the result, which is
 * owned by the caller (deliver_free()). */
struct deliver *deliver_new(const struct config *cfg, struct spool *sp, struct queue_pool *qp);
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

#endif
