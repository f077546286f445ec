/* qid.c - queue ids: time-ordered, unique, safe as file names
 *
 * An id is 11 Crockford base32 digits of microseconds since the epoch
 * (big-endian, zero padded: 55 bits, enough until the year 3111) and 4
 * random digits (20 bits). Within the process the time part strictly
 * increases: when the clock has not moved on, or has stepped back, the
 * next id takes last + 1 µs, so two ids of one process never collide and
 * always sort in creation order. The random part keeps ids of different
 * nodes that share one Redis apart when their clocks agree to the
 * microsecond. qid_floor() carries `last` over a restart: ids found in the
 * spool raise it, so a clock that stepped back while we were down cannot
 * mint an id that already names a spool file.
 *
 * Thread safety: the process-wide state (last time, random pool) is
 * guarded by one mutex; every function may be called from any thread.
 */
#include "gateway/qid.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define QID_TIME_DIGITS 11
#define QID_RAND_DIGITS (QID_LEN - QID_TIME_DIGITS)
/* 11 digits of 5 bits: the largest encodable time. */
#define QID_TIME_MAX ((INT64_C(1) << (5 * QID_TIME_DIGITS)) - 1)
/* Random bytes fetched per refill: 3 bytes (20 bits used) per id. */
#define QID_POOL_SIZE ((size_t) 3 * 64)

/* Crockford's alphabet: no I, L, O or U, so an id read aloud or retyped
 * from a log line is not misread. */
static const char qid_alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static pthread_mutex_t qid_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t qid_last;                        /* guarded by qid_lock */
static unsigned char qid_pool[QID_POOL_SIZE];   /* guarded by qid_lock */
static size_t qid_pool_used = QID_POOL_SIZE;    /* guarded by qid_lock */
static uint64_t qid_weak_state;                 /* guarded by qid_lock */

/* qid_digit - value of one id character, or -1 */
static int qid_digit(char c)
{
    const char *p;

    if (c == '\0')
        return -1;
    p = strchr(qid_alphabet, c);
    return p == NULL ? -1 : (int) (p - qid_alphabet);
}

/* qid_now_us - real time in microseconds since the epoch */
static int64_t qid_now_us(void)
{
    struct timespec ts;

    (void) clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* qid_urandom - fill p from /dev/urandom; 0 or -1 */
static int qid_urandom(unsigned char *p, size_t n)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    while (n > 0) {
        ssize_t r = read(fd, p, n);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            (void) close(fd);
            return -1;
        }
        p += r;
        n -= (size_t) r;
    }
    (void) close(fd);
    return 0;
}

/* qid_refill - new random bytes into the pool (called under qid_lock)
 *
 * getrandom() first, /dev/urandom when the kernel lacks it (seccomp,
 * ENOSYS). If both fail the ids stay unique within this process anyway
 * (the time part guarantees that); only the cross-node separation gets
 * weaker, so we fall back to a splitmix64 stream seeded from the pid and
 * the clock instead of stopping mail. */
static void qid_refill(void)
{
    size_t got = 0;

    while (got < sizeof(qid_pool)) {
        ssize_t r = getrandom(qid_pool + got, sizeof(qid_pool) - got, 0);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t) r;
    }
    if (got < sizeof(qid_pool) && qid_urandom(qid_pool, sizeof(qid_pool)) != 0) {
        if (qid_weak_state == 0)
            qid_weak_state = (uint64_t) qid_now_us() ^ ((uint64_t) getpid() << 32);
        for (size_t i = 0; i < sizeof(qid_pool); i++) {
            uint64_t z = (qid_weak_state += UINT64_C(0x9E3779B97F4A7C15));

            z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
            z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
            qid_pool[i] = (unsigned char) (z ^ (z >> 31));
        }
    }
    qid_pool_used = 0;
}

void qid_new(char buf[QID_SIZE])
{
    int64_t t;
    uint32_t r;

    pthread_mutex_lock(&qid_lock);
    t = qid_now_us();
    if (t <= qid_last)
        t = qid_last + 1;
    qid_last = t;
    if (qid_pool_used + 3 > sizeof(qid_pool))
        qid_refill();
    r = (uint32_t) qid_pool[qid_pool_used] | (uint32_t) qid_pool[qid_pool_used + 1] << 8 |
        (uint32_t) qid_pool[qid_pool_used + 2] << 16;
    qid_pool_used += 3;
    pthread_mutex_unlock(&qid_lock);

    /* Past the year 3111 the time part would wrap; keep ids well formed. */
    t &= QID_TIME_MAX;
    for (int i = QID_TIME_DIGITS - 1; i >= 0; i--) {
        buf[i] = qid_alphabet[t & 31];
        t >>= 5;
    }
    for (int i = QID_LEN - 1; i >= QID_TIME_DIGITS; i--) {
        buf[i] = qid_alphabet[r & 31];
        r >>= 5;
    }
    buf[QID_LEN] = '\0';
}

void qid_floor(const char *floor)
{
    int64_t t;

    if (floor == NULL || !qid_valid(floor))
        return;
    t = qid_time_us(floor);
    pthread_mutex_lock(&qid_lock);
    if (t > qid_last)
        qid_last = t;
    pthread_mutex_unlock(&qid_lock);
}

int qid_valid(const char *s)
{
    if (s == NULL)
        return 0;
    for (size_t i = 0; i < QID_LEN; i++)
        if (qid_digit(s[i]) < 0)
            return 0;
    return s[QID_LEN] == '\0';
}

int64_t qid_time_us(const char *qid)
{
    int64_t t = 0;

    if (!qid_valid(qid))
        return -1;
    for (int i = 0; i < QID_TIME_DIGITS; i++) {
        int v = qid_digit(qid[i]);

        if (v < 0)
            return -1;
        t = t * 32 + v;
    }
    return t;
}
