/* intake.c - the one door into the gateway: spool, then Redis, then 250
 *
 * Order of a commit (reliability.md A6): the message bytes and envelope go
 * to a temporary spool file, which is fsync'd, renamed and its directory
 * fsync'd (spool_commit); then the message and its recipients are recorded
 * in Redis in one atomic, idempotent script (queue_insert). Only then may
 * the front end answer 250. If Redis fails, the spool file is removed so
 * nothing is left behind: the MTA keeps the message and retries.
 *
 * Hold rules (shared in Redis) are read at most once per
 * INTAKE_HOLD_CACHE_MS and matched per recipient before the insert; a
 * held recipient is inserted held and tagged with the rule that held it in
 * the same script (queue_insert_held), so the rule's end or removal
 * releases it.
 */
#include "gateway/intake.h"

#include "gateway/digest.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/util/buf.h"
#include "gateway/util/clock.h"
#include "gateway/util/log.h"
#include "gateway/util/text.h"
#include "gateway/util/xalloc.h"

/* The header section is scanned for Message-ID within this many bytes
 * (Postfix header_size_limit). */
#define INTAKE_HEADER_MAX ((size_t) 102400)
/* RFC 5322 §2.1.1: a line is at most 998 characters. */
#define INTAKE_MSGID_MAX ((size_t) 998)
/* How long a committed message's digest is remembered, to recognise an
 * MTA's retry of a message whose 250 it never read. Postfix retries such a
 * message within its backoff (minutes to hours); two days is ample. */
#define INTAKE_DEDUP_TTL_S ((int64_t) 2 * 86400)
/* Hold rules are re-read from Redis at most this often, so an LMTP burst
 * does not ask Redis for them per message; a new rule applies within it. */
#define INTAKE_HOLD_CACHE_MS ((int64_t) 1000)

struct intake {
    const struct config *cfg;
    struct spool *sp;
    struct queue_pool *qp;
    pthread_mutex_t lock;           /* guards notify */
    void (*notify)(void *arg);      /* called after each commit: new mail */
    void *notify_arg;
    pthread_mutex_t hold_lock;      /* guards holds, holds_ms, holds_ok */
    struct queue_hold_set holds;    /* hold rules as last read */
    int64_t holds_ms;               /* when read (monotonic ms) */
    int holds_ok;
};

struct intake_txn {
    struct intake *in;
    struct envelope env;            /* owned copy */
    struct spool_writer *w;
    char qid[QID_SIZE];
    uint64_t size;
    int eightbit;
    int in_headers;                 /* still inside the header section */
    struct buf hdr;                 /* header section, bounded by INTAKE_HEADER_MAX */
    struct digest *dg;              /* envelope + message, for duplicate detection */
};

struct intake *intake_new(const struct config *cfg, struct spool *sp, struct queue_pool *qp)
{
    struct intake *in = xcalloc(1, sizeof(*in));

    in->cfg = cfg;
    in->sp = sp;
    in->qp = qp;
    pthread_mutex_init(&in->lock, NULL);
    pthread_mutex_init(&in->hold_lock, NULL);
    return in;
}

void intake_free(struct intake *in)
{
    if (in == NULL)
        return;
    pthread_mutex_destroy(&in->lock);
    pthread_mutex_destroy(&in->hold_lock);
    queue_hold_set_free(&in->holds);
    free(in);
}

void intake_set_notify(struct intake *in, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&in->lock);
    in->notify = fn;
    in->notify_arg = arg;
    pthread_mutex_unlock(&in->lock);
}

int intake_check_mail(struct intake *in, const struct envelope *env, uint64_t size,
                      struct sy_err *err)
{
    uint64_t need = in->cfg->spool.min_free;

    (void) env;
    /* Postfix checks for 1.5 × the message size on top of queue_minfree;
     * we ask for the declared size on top of our reserve. */
    if (size > 0 && need <= UINT64_MAX - size)
        need += size;
    return spool_check_space(in->sp, need, err);
}

int intake_check_rcpt(struct intake *in, const struct envelope *env,
                      const struct env_rcpt *rcpt, struct sy_err *err)
{
    /* Suppression lists and hold-at-RCPT policy hook in here. */
    (void) in;
    (void) env;
    (void) rcpt;
    (void) err;
    return SY_OK;
}

struct intake_txn *intake_begin(struct intake *in, const struct envelope *env,
                                struct sy_err *err)
{
    struct intake_txn *t = xcalloc(1, sizeof(*t));

    t->in = in;
    env_init(&t->env);
    env_copy(&t->env, env);
    if (t->env.arrival_us == 0)
        t->env.arrival_us = clock_real_us();
    qid_new(t->qid);
    t->w = spool_begin(in->sp, t->qid, err);
    if (t->w == NULL) {
        env_free(&t->env);
        free(t);
        return NULL;
    }
    t->in_headers = 1;
    buf_init(&t->hdr, INTAKE_HEADER_MAX);
    t->dg = digest_begin(&t->env);
    return t;
}

/* intake_scan_headers - keep the header section (bounded) for Message-ID */
static void intake_scan_headers(struct intake_txn *t, const char *p, size_t n)
{
    size_t from = t->hdr.len > 3 ? t->hdr.len - 3 : 0;
    const char *h, *blank;

    if (!t->in_headers)
        return;
    if (buf_append(&t->hdr, p, n) != SY_OK) {
        t->in_headers = 0;          /* past the limit: stop looking */
        return;
    }
    h = buf_str(&t->hdr);
    /* The header section ends at the first empty line (or the message
     * starts with one: no headers at all). */
    if (t->hdr.len >= 2 && h[0] == '\r' && h[1] == '\n') {
        buf_reset(&t->hdr);
        t->in_headers = 0;
        return;
    }
    blank = NULL;
    for (size_t i = from; i + 4 <= t->hdr.len; i++)
        if (memcmp(h + i, "\r\n\r\n", 4) == 0) {
            blank = h + i;
            break;
        }
    if (blank != NULL) {
        t->hdr.len = (size_t) (blank - h) + 2;
        t->hdr.data[t->hdr.len] = '\0';
        t->in_headers = 0;
    }
}

/* intake_append - message bytes to the spool, into the digest or not */
static int intake_append(struct intake_txn *t, const void *p, size_t n, int digest,
                         struct sy_err *err)
{
    const unsigned char *c = p;

    if (!t->eightbit)
        for (size_t i = 0; i < n; i++)
            if (c[i] >= 0x80) {
                t->eightbit = 1;
                break;
            }
    intake_scan_headers(t, p, n);
    if (digest)
        digest_update(t->dg, p, n);
    t->size += n;
    return spool_write(t->w, p, n, err);
}

int intake_write(struct intake_txn *t, const void *p, size_t n, struct sy_err *err)
{
    return intake_append(t, p, n, 1, err);
}

int intake_write_trace(struct intake_txn *t, const void *p, size_t n, struct sy_err *err)
{
    return intake_append(t, p, n, 0, err);
}

/* intake_header - the first header field called name (with its colon),
 * unfolded, into a new string (free()), or NULL */
static char *intake_header(const struct buf *hdr, const char *name)
{
    const char *s = buf_str(hdr), *end = s + buf_len(hdr);
    size_t nl = strlen(name);

    for (const char *line = s; line < end;) {
        const char *eol = memchr(line, '\n', (size_t) (end - line));

        if (eol == NULL)
            eol = end;
        if ((size_t) (eol - line) >= nl && text_ieq(line, nl, name)) {
            struct buf v;
            const char *q = line + nl;

            buf_init(&v, INTAKE_MSGID_MAX);
            /* Unfold: continuation lines start with SP or HTAB. */
            for (;;) {
                for (; q < eol; q++)
                    if (*q != '\r' && buf_append_byte(&v, (unsigned char) *q) != SY_OK)
                        break;
                if (eol + 1 < end && (eol[1] == ' ' || eol[1] == '\t')) {
                    q = eol + 1;
                    eol = memchr(q, '\n', (size_t) (end - q));
                    if (eol == NULL)
                        eol = end;
                    continue;
                }
                break;
            }
            return buf_take(&v, NULL);
        }
        line = eol + 1;
    }
    return NULL;
}

/* intake_find_msgid - the Message-ID field's value, trimmed, or NULL */
static char *intake_find_msgid(const struct buf *hdr)
{
    char *v = intake_header(hdr, "message-id:");
    char *a, *b;

    if (v == NULL)
        return NULL;
    a = v;
    while (*a == ' ' || *a == '\t')
        a++;
    b = a + strlen(a);
    while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
        *--b = '\0';
    /* Kept only when it is one clean printable token. */
    if (*a == '\0' || !text_is_clean(a, strlen(a))) {
        free(v);
        return NULL;
    }
    memmove(v, a, strlen(a) + 1);
    return v;
}

/* intake_find_mta_qid - the MTA's queue id from its own Received: field
 *
 * Over LMTP the MTA does not tell us its queue id, but Postfix and
 * Sendmail put it in the trace field they add on top ("... with ESMTP id
 * 4F3A9C21D0 for <...>"; RFC 5321 §4.4 "id" clause). Only the topmost
 * field is read, and only a plain token is kept: it is for joining logs,
 * never for decisions. */
static char *intake_find_mta_qid(const struct buf *hdr)
{
    char *rcv = intake_header(hdr, "received:");
    char *out = NULL;

    if (rcv == NULL)
        return NULL;
    for (char *p = rcv; *p != '\0'; p++) {
        if ((p == rcv || p[-1] == ' ' || p[-1] == '\t') && text_ieq(p, 3, "id ")) {
            const char *id = p + 3;
            size_t n = 0;

            while (*id == ' ')
                id++;
            while ((id[n] >= '0' && id[n] <= '9') || (id[n] >= 'A' && id[n] <= 'Z') ||
                   (id[n] >= 'a' && id[n] <= 'z'))
                n++;
            if (n >= 5 && n <= 32 && (id[n] == '\0' || id[n] == ' ' || id[n] == ';' ||
                                      id[n] == '\t')) {
                out = xmemdup0(id, n);
                break;
            }
        }
    }
    free(rcv);
    return out;
}

/* intake_hold_match - which recipients a hold rule holds: held[i] and one
 * tag each; the rules come from the cache, re-read when older than
 * INTAKE_HOLD_CACHE_MS. The lock is held across the read so a burst makes
 * one read, not one per thread. */
static int intake_hold_match(struct intake *in, struct queue *q, const struct envelope *env,
                             unsigned char *held, struct queue_hold_tag *tags, size_t *ntags,
                             struct sy_err *err)
{
    int64_t mono = clock_mono_ms(), now_s = clock_real_ms() / 1000;
    int rc = SY_OK;

    *ntags = 0;
    pthread_mutex_lock(&in->hold_lock);
    if (!in->holds_ok || mono - in->holds_ms >= INTAKE_HOLD_CACHE_MS) {
        struct queue_hold_set s;

        rc = queue_hold_rules_load(q, &s, err);
        if (rc == SY_OK) {
            queue_hold_set_free(&in->holds);
            in->holds = s;
            in->holds_ms = mono;
            in->holds_ok = 1;
        }
    }
    for (size_t i = 0; rc == SY_OK && i < env->nrcpt; i++) {
        struct hold_facts f = { env->sender, env->rcpts[i].addr, env->listener };

        for (size_t k = 0; k < in->holds.n; k++) {
            const struct queue_hold_rule *r = &in->holds.v[k];

            if (hold_rule_match(&r->rule, &f, now_s)) {
                held[i] = 1;
                tags[*ntags].idx = (unsigned) i;
                tags[*ntags].rule = r->id;
                tags[*ntags].until = r->rule.until;
                (*ntags)++;
                break;
            }
        }
    }
    pthread_mutex_unlock(&in->hold_lock);
    return rc;
}

int intake_hold_check(struct intake *in, const struct envelope *env, uint64_t *rule,
                      struct sy_err *err)
{
    unsigned char *held = xcalloc(env->nrcpt + 1, 1);
    struct queue_hold_tag *tags = xcalloc(env->nrcpt + 1, sizeof(*tags));
    struct queue *q = queue_get(in->qp, err);
    size_t ntags = 0;
    int rc = SY_ETEMP;

    *rule = 0;
    if (q != NULL) {
        rc = intake_hold_match(in, q, env, held, tags, &ntags, err);
        queue_put(in->qp, q);
    }
    if (rc == SY_OK && ntags > 0)
        *rule = tags[0].rule;
    free(held);
    free(tags);
    return rc;
}

int intake_commit(struct intake_txn *t, char qid[QID_SIZE], struct sy_err *err)
{
    struct intake *in = t->in;
    struct queue *q;
    char hex[DIGEST_HEX_SIZE], dup[QID_SIZE] = "";
    unsigned char *held = NULL;
    struct queue_hold_tag *tags = NULL;
    size_t ntags = 0;
    int64_t next_ms;
    int rc;

    if (t->eightbit)
        t->env.flags |= ENV_F_8BIT;
    t->env.size = t->size;
    free(t->env.message_id);
    t->env.message_id = intake_find_msgid(&t->hdr);
    if (t->env.mta_qid == NULL)
        t->env.mta_qid = intake_find_mta_qid(&t->hdr);
    digest_final(t->dg, hex);
    t->dg = NULL;

    rc = spool_commit(t->w, &t->env, err);
    t->w = NULL;
    if (rc != SY_OK) {
        log_error(t->qid, "spool commit failed: %s", err != NULL ? err->text : sy_status_str(rc));
        goto out;
    }

    /* FUTURERELEASE: no attempt before the release time. */
    next_ms = clock_real_ms();
    if (t->env.hold_until > 0 && t->env.hold_until * 1000 > next_ms)
        next_ms = t->env.hold_until * 1000;

    q = queue_get(in->qp, err);
    if (q == NULL) {
        rc = SY_ETEMP;
    } else {
        held = xcalloc(t->env.nrcpt + 1, 1);
        tags = xcalloc(t->env.nrcpt + 1, sizeof(*tags));
        rc = intake_hold_match(in, q, &t->env, held, tags, &ntags, err);
        if (rc == SY_OK)
            rc = queue_insert_held(q, t->qid, &t->env, NULL, tags, ntags, next_ms, hex,
                                   INTAKE_DEDUP_TTL_S, dup, err);
        queue_put(in->qp, q);
    }
    if (rc != SY_OK) {
        struct sy_err rmerr;

        log_error(t->qid, "queue insert failed: %s", err != NULL ? err->text : sy_status_str(rc));
        /* Nothing half-done: the MTA keeps its copy and retries. Should the
         * insert have reached Redis after all (a timeout), the reconciler
         * marks that record missing. */
        if (spool_remove(in->sp, t->qid, &rmerr) != SY_OK)
            log_error(t->qid, "cannot remove spool file after failed insert: %s", rmerr.text);
        goto out;
    }

    if (dup[0] != '\0') {
        struct sy_err rmerr;

        /* The MTA's retry of a message we already hold: answer for the
         * first copy and drop this one. */
        log_info(t->qid, "duplicate of %s (the MTA retried a message whose reply it lost): dropped", dup);
        if (spool_remove(in->sp, t->qid, &rmerr) != SY_OK)
            log_error(t->qid, "cannot remove duplicate spool file: %s", rmerr.text);
        memcpy(qid, dup, QID_SIZE);
        goto out;
    }
    {
        char from[LOG_SAFE_MAX], client[LOG_SAFE_MAX], mid[LOG_SAFE_MAX];

        char mta[LOG_SAFE_MAX];

        log_info(t->qid, "from=<%s>, size=%llu, nrcpt=%zu, held=%zu, listener=%s, client=%s, mta_qid=%s, message-id=%s",
                 log_safe(from, sizeof(from), t->env.sender),
                 (unsigned long long) t->size, t->env.nrcpt, ntags,
                 t->env.listener != NULL ? t->env.listener : "-",
                 log_safe(client, sizeof(client), t->env.client_addr),
                 log_safe(mta, sizeof(mta), t->env.mta_qid),
                 log_safe(mid, sizeof(mid), t->env.message_id));
    }
    memcpy(qid, t->qid, QID_SIZE);
    pthread_mutex_lock(&in->lock);
    if (in->notify != NULL)
        in->notify(in->notify_arg);
    pthread_mutex_unlock(&in->lock);

out:
    free(held);
    free(tags);
    digest_free(t->dg);
    buf_free(&t->hdr);
    env_free(&t->env);
    free(t);
    return rc;
}

void intake_abort(struct intake_txn *t)
{
    if (t == NULL)
        return;
    spool_abort(t->w);
    digest_free(t->dg);
    buf_free(&t->hdr);
    env_free(&t->env);
    free(t);
}

/* intake_digest_file - the duplicate digest of a spool file's message */
static int intake_digest_file(struct spool *sp, const char *qid, const struct envelope *env,
                              uint64_t off, uint64_t len, char hex[DIGEST_HEX_SIZE],
                              struct sy_err *err)
{
    char chunk[65536];
    struct digest *d;
    int fd = spool_open_message(sp, qid, err);

    if (fd < 0)
        return SY_EIO;
    d = digest_begin(env);
    while (len > 0) {
        size_t want = len < sizeof(chunk) ? (size_t) len : sizeof(chunk);
        ssize_t n = pread(fd, chunk, want, (off_t) off);

        if (n <= 0) {
            digest_free(d);
            (void) close(fd);
            return sy_err_set(err, SY_EIO, "4.3.0", "reading spool file %s failed", qid);
        }
        digest_update(d, chunk, (size_t) n);
        off += (uint64_t) n;
        len -= (uint64_t) n;
    }
    (void) close(fd);
    digest_final(d, hex);
    return SY_OK;
}

/* intake_reindex - one spool file: put it back into Redis when missing */
struct intake_rec {
    struct intake *in;
    struct queue *q;
    size_t seen, reindexed, corrupt;
    int rc;
    struct sy_err *err;
};

static int intake_reindex(const char *qid, void *arg)
{
    struct intake_rec *r = arg;
    struct envelope env;
    struct sy_err e;
    uint64_t off, len;
    int known;

    r->seen++;
    qid_floor(qid);
    known = queue_exists(r->q, qid, r->err);
    if (known < 0) {
        r->rc = known;
        return 1;
    }
    if (known)
        return 0;
    env_init(&env);
    if (spool_read(r->in->sp, qid, &env, &off, &len, &e) != SY_OK) {
        /* A corrupt file is kept for the operator, never delivered. */
        log_error(qid, "spool file unreadable, not re-indexed: %s", e.text);
        r->corrupt++;
        env_free(&env);
        return 0;
    }
    {
        int64_t next_ms = clock_real_ms();
        char hex[DIGEST_HEX_SIZE], dup[QID_SIZE] = "";

        if (env.hold_until > 0 && env.hold_until * 1000 > next_ms)
            next_ms = env.hold_until * 1000;
        if (intake_digest_file(r->in->sp, qid, &env, off, len, hex, &e) != SY_OK) {
            log_error(qid, "spool file unreadable, not re-indexed: %s", e.text);
            r->corrupt++;
            env_free(&env);
            return 0;
        }
        /* Re-indexed mail is held by the rules of the moment, as new mail
         * is (the held state itself lived only in Redis). */
        unsigned char *held = xcalloc(env.nrcpt + 1, 1);
        struct queue_hold_tag *tags = xcalloc(env.nrcpt + 1, sizeof(*tags));
        size_t ntags = 0;

        r->rc = intake_hold_match(r->in, r->q, &env, held, tags, &ntags, r->err);
        if (r->rc == SY_OK)
            r->rc = queue_insert_held(r->q, qid, &env, NULL, tags, ntags, next_ms, hex,
                                      INTAKE_DEDUP_TTL_S, dup, r->err);
        free(held);
        free(tags);
        if (r->rc == SY_OK && dup[0] != '\0') {
            /* Committed to disk, then the MTA's retry made it into Redis
             * first: this copy is the duplicate. */
            log_info(qid, "duplicate of %s found in the spool: removed", dup);
            (void) spool_remove(r->in->sp, qid, &e);
            env_free(&env);
            return 0;
        }
    }
    if (r->rc == SY_OK)
        log_info(qid, "re-indexed from spool: nrcpt=%zu", env.nrcpt);
    env_free(&env);
    if (r->rc != SY_OK)
        return 1;
    r->reindexed++;
    return 0;
}

int intake_reconcile(struct intake *in, struct sy_err *err)
{
    struct intake_rec r = { .in = in, .err = err };
    char ids[256][QID_SIZE];
    char after[QID_SIZE] = "";
    size_t removed = spool_clean_tmp(in->sp), missing = 0, n;

    if (removed > 0)
        log_warn(NULL, "removed %zu stale temporary spool file(s)", removed);
    r.q = queue_get(in->qp, err);
    if (r.q == NULL)
        return SY_ETEMP;

    /* Spool files Redis does not know: re-index from the envelope record. */
    (void) spool_scan(in->sp, intake_reindex, &r);
    if (r.rc != SY_OK) {
        queue_put(in->qp, r.q);
        return r.rc;
    }

    /* Redis records whose spool file is gone: log and mark. */
    do {
        int rc = queue_list_ids(r.q, after, ids, 256, &n, err);

        if (rc != SY_OK) {
            queue_put(in->qp, r.q);
            return rc;
        }
        for (size_t i = 0; i < n; i++) {
            int fd = spool_open_message(in->sp, ids[i], NULL);

            if (fd >= 0) {
                (void) close(fd);
                continue;
            }
            log_error(ids[i], "spool file missing: recipients marked missing");
            rc = queue_mark_missing(r.q, ids[i], err);
            if (rc != SY_OK) {
                queue_put(in->qp, r.q);
                return rc;
            }
            missing++;
        }
        if (n > 0)
            memcpy(after, ids[n - 1], QID_SIZE);
    } while (n == 256);
    queue_put(in->qp, r.q);
    log_info(NULL, "reconcile: spool=%zu reindexed=%zu corrupt=%zu missing=%zu tmp_removed=%zu",
             r.seen, r.reindexed, r.corrupt, missing, removed);
    return SY_OK;
}
