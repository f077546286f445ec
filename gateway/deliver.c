/* deliver.c - delivery workers */
#include "gateway/deliver.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway/transport/capture.h"
#include "gateway/util/clock.h"
#include "gateway/util/log.h"
#include "gateway/util/xalloc.h"

/* Recipients one worker claims per round trip to Redis. */
#define DELIVER_CLAIM_MAX ((size_t) 16)
/* Longest idle sleep: also bounds how late a retry can start after a
 * missed kick from another node. */
#define DELIVER_IDLE_MAX_MS ((int64_t) 1000)
/* Finished messages past their retention are deleted this often, this
 * many per script run (one run holds Redis for well under a millisecond
 * per message). */
#define DELIVER_SWEEP_EVERY_MS ((int64_t) 60000)
#define DELIVER_SWEEP_BATCH ((size_t) 500)

struct deliver {
    const struct config *cfg;
    struct spool *sp;
    struct queue_pool *qp;
    pthread_t *threads;
    unsigned nthreads;
    pthread_mutex_t lock;       /* guards stopping, kicks */
    pthread_cond_t wake;
    int stopping;
    unsigned long kicks;
    int64_t next_sweep_ms;      /* monotonic time of the next retention sweep */
};

struct deliver *deliver_new(const struct config *cfg, struct spool *sp, struct queue_pool *qp)
{
    struct deliver *d = xcalloc(1, sizeof(*d));

    d->cfg = cfg;
    d->sp = sp;
    d->qp = qp;
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

/* deliver_one - one attempt for one claimed recipient */
static void deliver_one(struct deliver *d, struct queue *q, const struct queue_claim *c,
                        unsigned *seed)
{
    const struct cfg_delivery *dc = &d->cfg->delivery;
    struct envelope env;
    struct queue_result res = { .transport = dc->default_transport };
    struct sy_err err;
    char reply[512], addr[LOG_SAFE_MAX], safe_reply[LOG_SAFE_MAX];
    uint64_t off, len;
    int64_t t0 = clock_mono_ms();
    int all_final = 0, rc, fd;

    env_init(&env);
    sy_err_clear(&err);
    rc = spool_read(d->sp, c->qid, &env, &off, &len, &err);
    if (rc == SY_ENOTFOUND) {
        log_error(c->qid, "spool file missing: recipients marked missing");
        (void) queue_mark_missing(q, c->qid, &err);
        env_free(&env);
        return;
    }
    if (rc == SY_EIO) {
        /* A read error may pass: the lease brings the recipient back. */
        log_warn(c->qid, "spool file read error, retrying later: %s", err.text);
        env_free(&env);
        return;
    }
    if (rc != SY_OK || c->idx >= env.nrcpt) {
        /* A corrupt file is kept for the operator; never delivered. */
        log_error(c->qid, "spool file unusable: %s", err.text);
        res.state = QUEUE_FAILED;
        res.reply = "5.3.0 spool file corrupt";
        res.at_ms = clock_real_ms();
        (void) queue_record_result(q, c->qid, c->idx, &res, NULL, &err);
        env_free(&env);
        return;
    }
    fd = spool_open_message(d->sp, c->qid, &err);
    if (fd < 0) {
        rc = SY_ETEMP;
    } else {
        rc = capture_deliver(d->cfg->capture.dir, c->qid, c->idx, &env, fd, off, len,
                             reply, sizeof(reply), &err);
        (void) close(fd);
    }
    res.at_ms = clock_real_ms();
    if (rc == SY_OK) {
        res.state = QUEUE_DELIVERED;
        res.reply = reply;
    } else if (!sy_err_is_temp(&err)) {
        res.state = QUEUE_FAILED;
        res.reply = err.text;
    } else if (res.at_ms - env.arrival_us / 1000 > (int64_t) dc->expiry_ms &&
               (env.hold_until == 0 || res.at_ms - env.hold_until * 1000 > (int64_t) dc->expiry_ms)) {
        /* RFC 5321 §4.5.4.1: give up after the queue lifetime, counted
         * from the release time for FUTURERELEASE mail. */
        res.state = QUEUE_FAILED;
        (void) snprintf(reply, sizeof(reply), "message expired after %llu s: %s",
                        (unsigned long long) (dc->expiry_ms / 1000), err.text);
        res.reply = reply;
    } else {
        res.state = QUEUE_QUEUED;
        res.next_ms = res.at_ms + deliver_backoff_ms(c->attempts + 1, dc->retry_first_ms,
                                                     dc->retry_max_ms, seed);
        res.reply = err.text;
    }
    log_info(c->qid, "to=<%s>, relay=%s, attempt=%u, delay=%.3f, status=%s (%s)",
             log_safe(addr, sizeof(addr), env.rcpts[c->idx].addr), dc->default_transport,
             c->attempts + 1, (double) (clock_mono_ms() - t0) / 1000.0,
             res.state == QUEUE_DELIVERED ? "sent" : res.state == QUEUE_FAILED ? "bounced" : "deferred",
             log_safe(safe_reply, sizeof(safe_reply), res.reply));
    if (queue_record_result(q, c->qid, c->idx, &res, &all_final, &err) != SY_OK) {
        /* The lease brings the recipient back: at worst one duplicate. */
        log_error(c->qid, "cannot record result: %s", err.text);
    } else if (all_final) {
        if (spool_remove(d->sp, c->qid, &err) != SY_OK && err.code != SY_ENOTFOUND)
            log_error(c->qid, "cannot remove spool file: %s", err.text);
        else
            log_info(c->qid, "removed");
    }
    env_free(&env);
}

/* deliver_sweep - delete finished messages past delivery.retention; one
 * worker at a time, about once a minute */
static void deliver_sweep(struct deliver *d, struct queue *q)
{
    int64_t now = clock_mono_ms(), before;
    size_t n, total = 0;
    struct sy_err err;
    int due;

    pthread_mutex_lock(&d->lock);
    due = now >= d->next_sweep_ms;
    if (due)
        d->next_sweep_ms = now + DELIVER_SWEEP_EVERY_MS;
    pthread_mutex_unlock(&d->lock);
    if (!due)
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

/* deliver_main - one worker thread */
static void *deliver_main(void *arg)
{
    struct deliver *d = arg;
    unsigned seed = (unsigned) (clock_real_us() ^ (int64_t) (uintptr_t) &seed);
    unsigned long seen = 0;
    int64_t lease = (int64_t) d->cfg->delivery.lease_ms;

    for (;;) {
        struct queue_claim claims[DELIVER_CLAIM_MAX];
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
        if (queue_claim_due(q, now, lease, claims, DELIVER_CLAIM_MAX, &n, &err) != SY_OK) {
            log_warn(NULL, "claiming due recipients: %s", err.text);
            n = 0;
        }
        for (size_t i = 0; i < n; i++)
            deliver_one(d, q, &claims[i], &seed);
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
    return NULL;
}

int deliver_start(struct deliver *d, struct sy_err *err)
{
    unsigned n = d->cfg->delivery.workers;

    d->threads = xcalloc(n == 0 ? 1 : n, sizeof(*d->threads));
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&d->threads[i], NULL, deliver_main, d) != 0) {
            deliver_stop(d);
            return sy_err_set(err, SY_ETEMP, "", "cannot start delivery worker %u", i);
        }
        d->nthreads++;
    }
    if (n > 0)
        log_info(NULL, "delivery: %u worker(s), transport=%s", n, d->cfg->delivery.default_transport);
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
    free(d->threads);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->wake);
    free(d);
}
