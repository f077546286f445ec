/* spool.c - one fsync'd file per message: the source of truth for the queue
 *
 * File layout (format version 1; docs/spool-format.md says the same with
 * examples). All integers are big-endian.
 *
 *   offset 0           header line, 19 bytes: "switchyard-spool 1\n"
 *   19                 the message, exactly the bytes given to spool_write()
 *   19 + msg_len       the envelope: typed records (below), ending in END
 *   size - 52          the trailer, 52 bytes:
 *                        0  u64  message offset (always 19)
 *                        8  u64  message length
 *                       16  u64  envelope offset (= 19 + message length)
 *                       24  u64  envelope length
 *                       32  u32  CRC-32C of message || envelope
 *                       36  u32  format version (1)
 *                       40  u32  CRC-32C of trailer bytes 0..39
 *                       44  8    end marker "SYSPEND\n"
 *
 * Envelope records: 1 byte type, u32 value length, value. Integers have a
 * fixed width per type; strings are raw bytes without NUL, CR or LF. The
 * first record is 'V' (u32 1); then any order of
 *   'S' sender (may be empty)   'R' ret (u8 0-2)     'B' body (u8 0-2)
 *   'F' flags (u32, known bits) 'Z' SIZE= (u64)      'H' hold_until (i64 >= 0)
 *   'A' arrival_us (i64 >= 0)   'E' envid            'L' listener
 *   'N' client_name             'C' client_addr      'Q' mta_qid
 *   'U' auth_user               'M' message_id       'P' one recipient
 * where 'P' holds sub-records 'a' address (non-empty), 'n' NOTIFY bits
 * (u32), 't' ORCPT type, 'o' ORCPT address, and recipients keep their
 * order. 'X' (length 0) ends the envelope and must be its last byte. The
 * encoder always writes V, S, R, B, F, Z, H, A, X and a and n in each P, so
 * the decoder requires them; the optional strings appear only when set.
 * Repeated or unknown records, bad widths, values out of range and lengths
 * past their container are all corruption.
 *
 * The file is hostile input when read back (a disk error, a truncated copy,
 * an operator's editor): spool_read() checks every offset against the file
 * size before reading, verifies both checksums, and decodes the envelope
 * with every record bounded by its container.
 *
 * Durability (reliability.md A6): create tmp/<qid> O_EXCL 0600, write,
 * fsync, close (checked), rename to q/<qid> without replacing an existing
 * file (renameat2 RENAME_NOREPLACE, else link + unlink), fsync q/. Any
 * failure unlinks what was written and returns SY_ENOSPACE (4.3.1) or
 * SY_EIO (4.3.0); fsync is never retried on the same descriptor.
 * The fsync of q/ (after a commit's rename and a removal's unlink) is a
 * group commit: one fsync covers every entry renamed or unlinked before it
 * started, for all the threads waiting on it (spool_q_sync()).
 *
 * Thread safety: struct spool holds descriptors and the path, all set in
 * spool_open() and read-only afterwards, and the group-commit queue under
 * its own mutex, so any thread may use it. A struct spool_writer belongs
 * to one thread.
 */
#include "gateway/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "gateway/qid.h"
#include "gateway/util/io.h"
#include "gateway/util/log.h"
#include "gateway/util/text.h"
#include "gateway/util/xalloc.h"

#define SPOOL_MAGIC "switchyard-spool 1\n"
#define SPOOL_MAGIC_LEN ((size_t) 19)
#define SPOOL_END_MAGIC "SYSPEND\n"
#define SPOOL_END_MAGIC_LEN ((size_t) 8)
#define SPOOL_TRAILER_LEN ((size_t) 52)
#define SPOOL_VERSION 1u

/* Write buffer per message being received. */
#define SPOOL_WBUF_SIZE ((size_t) 64 * 1024)
/* Bounds a reader enforces on a (hostile) file. The recipient bound is
 * 100 × Postfix's smtpd_recipient_limit; a string field holds at most an
 * address (RFC 5321 §4.5.3.1.3: 256) or a header value (998 per line,
 * RFC 5322 §2.1.1), so 64 KiB is generous; the envelope bound caps what
 * one read allocates. */
#define SPOOL_RCPT_MAX ((size_t) 100000)
#define SPOOL_FIELD_MAX ((size_t) 64 * 1024)
#define SPOOL_ENV_MAX ((size_t) 16 * 1024 * 1024)
#define SPOOL_REC_HDR ((size_t) 5)
/* Free inodes below this count mean "full": a few for the lock file,
 * temp files and the MTA's own retries. */
#define SPOOL_INODES_MIN ((unsigned long long) 64)
/* Flags this format version knows; a new enum env_flag bit must be added
 * here and to docs/spool-format.md. */
#define SPOOL_ENV_FLAGS (ENV_F_SMTPUTF8 | ENV_F_REQUIRETLS | ENV_F_8BIT)
#define SPOOL_NOTIFY_BITS \
    (ENV_NOTIFY_SUCCESS | ENV_NOTIFY_FAILURE | ENV_NOTIFY_DELAY | ENV_NOTIFY_NEVER)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1u << 0)  /* <linux/fs.h> */
#endif

/* One thread waiting in spool_q_sync(), on its own stack. */
struct spool_sync_waiter {
    struct spool_sync_waiter *next;
    int done;               /* an fsync that started after it queued is over */
    int rc;                 /* that fsync's result: 0, or -1 with err */
    int err;
};

struct spool {
    char *dir;              /* path as given to spool_open() */
    int dirfd;              /* dir/ */
    int tmpfd;              /* dir/tmp */
    int qfd;                /* dir/q: lookups and statvfs only, never fsync'd */
    int lockfd;             /* dir/lock, flock'd for the life of the spool */
    /* group commit of q/ (spool_q_sync) */
    pthread_mutex_t sync_lock;
    pthread_cond_t sync_cond;
    struct spool_sync_waiter *sync_queue;   /* waiting for the next fsync */
    int sync_busy;                          /* a thread is in fsync(q/) */
};

struct spool_writer {
    struct spool *sp;       /* borrowed */
    int fd;                 /* tmp/<qid>, -1 once closed */
    char qid[QID_SIZE];
    uint64_t msg_len;       /* message bytes accepted so far */
    uint32_t crc;           /* CRC-32C of the message bytes so far */
    unsigned char *buf;     /* SPOOL_WBUF_SIZE bytes */
    size_t blen;            /* bytes in buf not yet written */
    int failed;             /* a write failed: ferr says how */
    struct sy_err ferr;
};

/* ---- CRC-32C (Castagnoli, reflected 0x82F63B78), slice-by-8 ---- */

static uint32_t spool_crc_tab[8][256];
static pthread_once_t spool_crc_once = PTHREAD_ONCE_INIT;

/* spool_crc_init - build the eight lookup tables once */
static void spool_crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;

        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ UINT32_C(0x82F63B78) : c >> 1;
        spool_crc_tab[0][i] = c;
    }
    for (int i = 0; i < 256; i++)
        for (int k = 1; k < 8; k++)
            spool_crc_tab[k][i] = (spool_crc_tab[k - 1][i] >> 8) ^
                                  spool_crc_tab[0][spool_crc_tab[k - 1][i] & 0xff];
}

uint32_t spool_crc32c(uint32_t crc, const void *p, size_t n)
{
    const unsigned char *s = p;

    (void) pthread_once(&spool_crc_once, spool_crc_init);
    crc = ~crc;
    while (n >= 8) {
        uint32_t lo = crc ^ ((uint32_t) s[0] | (uint32_t) s[1] << 8 |
                             (uint32_t) s[2] << 16 | (uint32_t) s[3] << 24);
        uint32_t hi = (uint32_t) s[4] | (uint32_t) s[5] << 8 |
                      (uint32_t) s[6] << 16 | (uint32_t) s[7] << 24;

        crc = spool_crc_tab[7][lo & 0xff] ^ spool_crc_tab[6][(lo >> 8) & 0xff] ^
              spool_crc_tab[5][(lo >> 16) & 0xff] ^ spool_crc_tab[4][lo >> 24] ^
              spool_crc_tab[3][hi & 0xff] ^ spool_crc_tab[2][(hi >> 8) & 0xff] ^
              spool_crc_tab[1][(hi >> 16) & 0xff] ^ spool_crc_tab[0][hi >> 24];
        s += 8;
        n -= 8;
    }
    while (n-- > 0)
        crc = spool_crc_tab[0][(crc ^ *s++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- big-endian integers ---- */

/* spool_put_be - store the low `width` bytes of v big-endian */
static void spool_put_be(unsigned char *p, uint64_t v, size_t width)
{
    for (size_t i = width; i > 0; i--) {
        p[i - 1] = (unsigned char) (v & 0xff);
        v >>= 8;
    }
}

/* spool_get_be - read `width` bytes big-endian */
static uint64_t spool_get_be(const unsigned char *p, size_t width)
{
    uint64_t v = 0;

    for (size_t i = 0; i < width; i++)
        v = (v << 8) | p[i];
    return v;
}

/* ---- errors ---- */

/* spool_errno - an OS error as a status: disk full is 4.3.1, the rest 4.3.0
 *
 * The text names the operation and the file relative to the spool, never
 * the message content: it may end up in an SMTP reply. */
static int spool_errno(struct sy_err *err, int e, const char *op, const char *what)
{
    char why[128];

    if (strerror_r(e, why, sizeof(why)) != 0)
        (void) snprintf(why, sizeof(why), "errno %d", e);
    if (e == ENOSPC || e == EDQUOT)
        return sy_err_set(err, SY_ENOSPACE, "4.3.1", "spool %s %s: %s", op, what, why);
    return sy_err_set(err, SY_EIO, "4.3.0", "spool %s %s: %s", op, what, why);
}

/* spool_errno_in - the same for a file of the spool directory at start-up,
 * where the operator wants the full path */
static int spool_errno_in(struct sy_err *err, int e, const char *op, const char *dir,
                          const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = xmalloc(n);
    int rc;

    (void) snprintf(path, n, "%s/%s", dir, name);
    rc = spool_errno(err, e, op, path);
    free(path);
    return rc;
}

/* ---- envelope encoder ---- */

/* The encoder runs twice: once with out == NULL to size the result, once
 * to fill it, so it never grows a buffer and never fails. */
struct spool_enc {
    unsigned char *out;     /* NULL while sizing */
    size_t len;
    size_t cap;
};

/* spool_enc_put - append n bytes (or count them) */
static void spool_enc_put(struct spool_enc *e, const void *v, size_t n)
{
    if (n > SIZE_MAX - e->len)
        sy_panic("spool: envelope size overflows");
    if (e->out != NULL) {
        if (e->len + n > e->cap)
            sy_panic("spool: envelope encoder overran its sizing pass");
        memcpy(e->out + e->len, v, n);
    }
    e->len += n;
}

/* spool_enc_rec - one record: type, u32 length, value */
static void spool_enc_rec(struct spool_enc *e, unsigned char type, const void *v, size_t n)
{
    unsigned char hdr[SPOOL_REC_HDR];

    if (n > UINT32_MAX)
        sy_panic("spool: envelope record too long");
    hdr[0] = type;
    spool_put_be(hdr + 1, n, 4);
    spool_enc_put(e, hdr, sizeof(hdr));
    if (n > 0)
        spool_enc_put(e, v, n);
}

static void spool_enc_str(struct spool_enc *e, unsigned char type, const char *s)
{
    if (s != NULL)
        spool_enc_rec(e, type, s, strlen(s));
}

static void spool_enc_int(struct spool_enc *e, unsigned char type, uint64_t v, size_t width)
{
    unsigned char b[8];

    spool_put_be(b, v, width);
    spool_enc_rec(e, type, b, width);
}

/* spool_enc_rcpt_fields - the sub-records of one recipient */
static void spool_enc_rcpt_fields(struct spool_enc *e, const struct env_rcpt *r)
{
    spool_enc_str(e, 'a', r->addr);
    spool_enc_int(e, 'n', r->notify, 4);
    spool_enc_str(e, 't', r->orcpt_type);
    spool_enc_str(e, 'o', r->orcpt_addr);
}

/* spool_enc_env - the whole record stream */
static void spool_enc_env(struct spool_enc *e, const struct envelope *env)
{
    spool_enc_int(e, 'V', SPOOL_VERSION, 4);
    spool_enc_str(e, 'S', env->sender);
    spool_enc_int(e, 'R', (uint64_t) env->ret, 1);
    spool_enc_int(e, 'B', (uint64_t) env->body, 1);
    spool_enc_int(e, 'F', env->flags, 4);
    spool_enc_int(e, 'Z', env->size_declared, 8);
    spool_enc_int(e, 'H', (uint64_t) env->hold_until, 8);
    spool_enc_int(e, 'A', (uint64_t) env->arrival_us, 8);
    spool_enc_str(e, 'E', env->envid);
    spool_enc_str(e, 'L', env->listener);
    spool_enc_str(e, 'N', env->client_name);
    spool_enc_str(e, 'C', env->client_addr);
    spool_enc_str(e, 'Q', env->mta_qid);
    spool_enc_str(e, 'U', env->auth_user);
    spool_enc_str(e, 'M', env->message_id);
    for (size_t i = 0; i < env->nrcpt; i++) {
        struct spool_enc sizing = { 0 };
        unsigned char hdr[SPOOL_REC_HDR];

        spool_enc_rcpt_fields(&sizing, &env->rcpts[i]);
        if (sizing.len > UINT32_MAX)
            sy_panic("spool: recipient record too long");
        hdr[0] = 'P';
        spool_put_be(hdr + 1, sizing.len, 4);
        spool_enc_put(e, hdr, sizeof(hdr));
        spool_enc_rcpt_fields(e, &env->rcpts[i]);
    }
    spool_enc_rec(e, 'X', NULL, 0);
}

char *spool_env_encode(const struct envelope *env, size_t *lenp)
{
    struct spool_enc sizing = { 0 }, e = { 0 };

    spool_enc_env(&sizing, env);
    e.cap = sizing.len;
    e.out = xmalloc(e.cap > 0 ? e.cap : 1);
    spool_enc_env(&e, env);
    if (e.len != sizing.len)
        sy_panic("spool: envelope encoder passes disagree");
    *lenp = e.len;
    return (char *) e.out;
}

/* ---- envelope decoder ---- */

enum spool_kind {
    SPOOL_K_STR, SPOOL_K_U8, SPOOL_K_U32, SPOOL_K_U64, SPOOL_K_I64, SPOOL_K_RCPT, SPOOL_K_END
};

struct spool_recdef {
    unsigned char type;
    unsigned char kind;     /* enum spool_kind */
    unsigned char required; /* must appear exactly once */
    const char *name;
};

/* The index of a record in its table is its bit in the "seen" mask. */
static const struct spool_recdef spool_env_defs[] = {
    { 'V', SPOOL_K_U32, 1, "version" },
    { 'S', SPOOL_K_STR, 1, "sender" },
    { 'R', SPOOL_K_U8, 1, "ret" },
    { 'B', SPOOL_K_U8, 1, "body" },
    { 'F', SPOOL_K_U32, 1, "flags" },
    { 'Z', SPOOL_K_U64, 1, "size" },
    { 'H', SPOOL_K_I64, 1, "hold_until" },
    { 'A', SPOOL_K_I64, 1, "arrival" },
    { 'E', SPOOL_K_STR, 0, "envid" },
    { 'L', SPOOL_K_STR, 0, "listener" },
    { 'N', SPOOL_K_STR, 0, "client_name" },
    { 'C', SPOOL_K_STR, 0, "client_addr" },
    { 'Q', SPOOL_K_STR, 0, "mta_qid" },
    { 'U', SPOOL_K_STR, 0, "auth_user" },
    { 'M', SPOOL_K_STR, 0, "message_id" },
    { 'P', SPOOL_K_RCPT, 0, "recipient" },
    { 'X', SPOOL_K_END, 1, "end" },
};

static const struct spool_recdef spool_rcpt_defs[] = {
    { 'a', SPOOL_K_STR, 1, "address" },
    { 'n', SPOOL_K_U32, 1, "notify" },
    { 't', SPOOL_K_STR, 0, "orcpt type" },
    { 'o', SPOOL_K_STR, 0, "orcpt address" },
};

/* A bounded view: every read checks against n. */
struct spool_dec {
    const unsigned char *p;
    size_t n;
    size_t off;
};

struct spool_rec {
    const struct spool_recdef *def;
    const unsigned char *v; /* the value, inside the container */
    size_t len;
};

/* spool_dec_next - the next record of d, checked against the table defs
 *
 * Errors return the literal SY_ESYNTAX (not sy_err_set()'s value) so that
 * static analysis can see rec is filled exactly when SY_OK comes back. */
static int spool_dec_next(struct spool_dec *d, const struct spool_recdef *defs, size_t ndefs,
                          unsigned *seen, struct spool_rec *rec, const char *where,
                          struct sy_err *err)
{
    static const size_t width[] = {
        [SPOOL_K_U8] = 1, [SPOOL_K_U32] = 4, [SPOOL_K_U64] = 8, [SPOOL_K_I64] = 8,
    };
    const struct spool_recdef *def = NULL;
    unsigned char type;
    uint64_t len;
    size_t at = d->off, idx = 0;

    if (d->n - d->off < SPOOL_REC_HDR) {
        (void) sy_err_set(err, SY_ESYNTAX, "4.3.0", "%s: truncated record at offset %zu",
                          where, at);
        return SY_ESYNTAX;
    }
    type = d->p[at];
    len = spool_get_be(d->p + at + 1, 4);
    if (len > d->n - at - SPOOL_REC_HDR) {
        (void) sy_err_set(err, SY_ESYNTAX, "4.3.0",
                          "%s: record 0x%02x at offset %zu runs past its end", where, type, at);
        return SY_ESYNTAX;
    }
    for (size_t i = 0; i < ndefs && def == NULL; i++)
        if (defs[i].type == type) {
            def = &defs[i];
            idx = i;
        }
    if (def == NULL) {
        (void) sy_err_set(err, SY_ESYNTAX, "4.3.0", "%s: unknown record 0x%02x at offset %zu",
                          where, type, at);
        return SY_ESYNTAX;
    }
    if (def->kind != SPOOL_K_RCPT && (*seen & (1u << idx))) {
        (void) sy_err_set(err, SY_ESYNTAX, "4.3.0", "%s: repeated %s record", where, def->name);
        return SY_ESYNTAX;
    }
    if ((def->kind == SPOOL_K_U8 || def->kind == SPOOL_K_U32 || def->kind == SPOOL_K_U64 ||
         def->kind == SPOOL_K_I64) && len != width[def->kind]) {
        (void) sy_err_set(err, SY_ESYNTAX, "4.3.0", "%s: %s record has length %llu", where,
                          def->name, (unsigned long long) len);
        return SY_ESYNTAX;
    }
    if ((def->kind == SPOOL_K_STR && len > SPOOL_FIELD_MAX) ||
        (def->kind == SPOOL_K_END && len != 0)) {
        (void) sy_err_set(err, SY_ESYNTAX, "4.3.0", "%s: %s record has length %llu", where,
                          def->name, (unsigned long long) len);
        return SY_ESYNTAX;
    }
    *seen |= 1u << idx;
    rec->def = def;
    rec->v = d->p + at + SPOOL_REC_HDR;
    rec->len = (size_t) len;
    d->off = at + SPOOL_REC_HDR + (size_t) len;
    return SY_OK;
}

/* spool_dec_str - a string value: no NUL, CR or LF, which could smuggle a
 * line into an SMTP command or a header when the value is used again */
static int spool_dec_str(const struct spool_rec *rec, char **field, const char *where,
                         struct sy_err *err)
{
    for (size_t i = 0; i < rec->len; i++)
        if (rec->v[i] == '\0' || rec->v[i] == '\r' || rec->v[i] == '\n')
            return sy_err_set(err, SY_ESYNTAX, "4.3.0", "%s: %s holds NUL, CR or LF", where,
                              rec->def->name);
    *field = xmemdup0(rec->v, rec->len);
    return SY_OK;
}

/* spool_dec_missing - name of the first required record not seen, or NULL */
static const char *spool_dec_missing(const struct spool_recdef *defs, size_t ndefs, unsigned seen)
{
    for (size_t i = 0; i < ndefs; i++)
        if (defs[i].required && !(seen & (1u << i)))
            return defs[i].name;
    return NULL;
}

/* spool_dec_rcpt - one 'P' record into r (r's strings freed by the caller) */
static int spool_dec_rcpt(const struct spool_rec *prec, size_t nr, struct env_rcpt *r,
                          struct sy_err *err)
{
    struct spool_dec d = { prec->v, prec->len, 0 };
    char where[48];
    unsigned seen = 0;
    const char *missing;

    (void) snprintf(where, sizeof(where), "recipient %zu", nr + 1);
    while (d.off < d.n) {
        struct spool_rec rec;
        int rc = spool_dec_next(&d, spool_rcpt_defs, ARRAY_SIZE(spool_rcpt_defs), &seen, &rec,
                                where, err);

        if (rc != SY_OK)
            return rc;
        switch (rec.def->type) {
        case 'a':
            if (rec.len == 0)
                return sy_err_set(err, SY_ESYNTAX, "4.3.0", "%s: empty address", where);
            rc = spool_dec_str(&rec, &r->addr, where, err);
            break;
        case 't':
            rc = spool_dec_str(&rec, &r->orcpt_type, where, err);
            break;
        case 'o':
            rc = spool_dec_str(&rec, &r->orcpt_addr, where, err);
            break;
        default: {
            uint64_t v = spool_get_be(rec.v, rec.len);

            if (v & ~(uint64_t) SPOOL_NOTIFY_BITS)
                return sy_err_set(err, SY_ESYNTAX, "4.3.0", "%s: bad notify bits 0x%llx",
                                  where, (unsigned long long) v);
            r->notify = (unsigned) v;
            break;
        }
        }
        if (rc != SY_OK)
            return rc;
    }
    missing = spool_dec_missing(spool_rcpt_defs, ARRAY_SIZE(spool_rcpt_defs), seen);
    if (missing != NULL)
        return sy_err_set(err, SY_ESYNTAX, "4.3.0", "%s: no %s record", where, missing);
    return SY_OK;
}

/* spool_env_strfield - the envelope string a record type fills */
static char **spool_env_strfield(struct envelope *env, unsigned char type)
{
    switch (type) {
    case 'S': return &env->sender;
    case 'E': return &env->envid;
    case 'L': return &env->listener;
    case 'N': return &env->client_name;
    case 'C': return &env->client_addr;
    case 'Q': return &env->mta_qid;
    case 'U': return &env->auth_user;
    case 'M': return &env->message_id;
    default: return NULL;
    }
}

/* spool_dec_int - an integer record into env, range-checked */
static int spool_dec_int(const struct spool_rec *rec, struct envelope *env, struct sy_err *err)
{
    uint64_t v = spool_get_be(rec->v, rec->len);
    int64_t sv = v > (uint64_t) INT64_MAX ? -1 : (int64_t) v;

    switch (rec->def->type) {
    case 'V':
        if (v != SPOOL_VERSION)
            return sy_err_set(err, SY_ESYNTAX, "4.3.0", "envelope: unsupported version %llu",
                              (unsigned long long) v);
        return SY_OK;
    case 'R':
        if (v > ENV_RET_HDRS)
            break;
        env->ret = (int) v;
        return SY_OK;
    case 'B':
        if (v > ENV_BODY_8BITMIME)
            break;
        env->body = (int) v;
        return SY_OK;
    case 'F':
        if (v & ~(uint64_t) SPOOL_ENV_FLAGS)
            break;
        env->flags = (unsigned) v;
        return SY_OK;
    case 'Z':
        env->size_declared = v;
        return SY_OK;
    case 'H':
        if (sv < 0)
            break;
        env->hold_until = sv;
        return SY_OK;
    case 'A':
        if (sv < 0)
            break;
        env->arrival_us = sv;
        return SY_OK;
    default:
        break;
    }
    return sy_err_set(err, SY_ESYNTAX, "4.3.0", "envelope: %s value %llu out of range",
                      rec->def->name, (unsigned long long) v);
}

/* spool_dec_env - the record stream into env (freed by the caller on error) */
static int spool_dec_env(struct spool_dec *d, struct envelope *env, struct sy_err *err)
{
    const size_t ndefs = ARRAY_SIZE(spool_env_defs);
    unsigned seen = 0;
    const char *missing;

    for (int first = 1;; first = 0) {
        struct spool_rec rec;
        char **field;
        int rc;

        if (d->off == d->n)
            return sy_err_set(err, SY_ESYNTAX, "4.3.0", "envelope: no end record");
        rc = spool_dec_next(d, spool_env_defs, ndefs, &seen, &rec, "envelope", err);
        if (rc != SY_OK)
            return rc;
        /* The version comes first, so a future format is recognised
         * before any of its records is misread. */
        if (first != (rec.def->type == 'V'))
            return sy_err_set(err, SY_ESYNTAX, "4.3.0", "envelope: %s",
                              first ? "does not start with a version record"
                                    : "repeated version record");
        if (rec.def->kind == SPOOL_K_END)
            break;
        if (rec.def->kind == SPOOL_K_RCPT) {
            struct env_rcpt r = { 0 };

            if (env->nrcpt >= SPOOL_RCPT_MAX)
                return sy_err_set(err, SY_ESYNTAX, "4.3.0", "envelope: more than %zu recipients",
                                  SPOOL_RCPT_MAX);
            rc = spool_dec_rcpt(&rec, env->nrcpt, &r, err);
            if (rc != SY_OK) {
                env_rcpt_free(&r);
                return rc;
            }
            env_add_rcpt(env, &r);
            continue;
        }
        field = spool_env_strfield(env, rec.def->type);
        rc = field != NULL ? spool_dec_str(&rec, field, "envelope", err)
                           : spool_dec_int(&rec, env, err);
        if (rc != SY_OK)
            return rc;
    }
    if (d->off != d->n)
        return sy_err_set(err, SY_ESYNTAX, "4.3.0", "envelope: %zu bytes after the end record",
                          d->n - d->off);
    missing = spool_dec_missing(spool_env_defs, ndefs, seen);
    if (missing != NULL)
        return sy_err_set(err, SY_ESYNTAX, "4.3.0", "envelope: no %s record", missing);
    if (env->nrcpt == 0)
        return sy_err_set(err, SY_ESYNTAX, "4.3.0", "envelope: no recipient");
    return SY_OK;
}

int spool_env_decode(const char *p, size_t n, struct envelope *env, struct sy_err *err)
{
    struct spool_dec d = { (const unsigned char *) p, n, 0 };
    int rc;

    if (p == NULL)
        d.n = 0;
    if (n > SPOOL_ENV_MAX)
        rc = sy_err_set(err, SY_ESYNTAX, "4.3.0", "envelope: %zu bytes is too long", n);
    else
        rc = spool_dec_env(&d, env, err);
    if (rc != SY_OK)
        env_free(env);
    return rc;
}

/* ---- the spool directory ---- */

/* spool_fsync_parent - make a new entry in path's parent directory
 * durable; 0, or -1 with errno set */
static int spool_fsync_parent(const char *path)
{
    size_t n = strlen(path);
    char *parent;
    int fd, rc = 0, e = 0;

    while (n > 1 && path[n - 1] == '/')
        n--;
    while (n > 0 && path[n - 1] != '/')
        n--;
    while (n > 1 && path[n - 1] == '/')
        n--;
    parent = n == 0 ? xstrdup(".") : xmemdup0(path, n);
    fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        rc = -1;
        e = errno;
    }
    if (fd >= 0)
        (void) close(fd);
    free(parent);
    errno = e;
    return rc;
}

/* spool_subdir - create (when missing) and open dir/name; *created set */
static int spool_subdir(struct spool *sp, const char *name, int *created, struct sy_err *err)
{
    int fd;

    if (mkdirat(sp->dirfd, name, 0700) == 0)
        *created = 1;
    else if (errno != EEXIST) {
        (void) spool_errno_in(err, errno, "mkdir", sp->dir, name);
        return -1;
    }
    fd = openat(sp->dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        (void) spool_errno_in(err, errno, "open", sp->dir, name);
    return fd;
}

/* spool_lock - flock dir/lock and record our pid in it */
static int spool_lock(struct spool *sp, struct sy_err *err)
{
    char pid[32];
    int n;

    sp->lockfd = openat(sp->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (sp->lockfd < 0)
        return spool_errno_in(err, errno, "open", sp->dir, "lock");
    /* flock, not fcntl: the lock belongs to this open file description,
     * so a second spool_open() fails even inside this process, and it
     * dies with the process (KumoMTA does the same). */
    while (flock(sp->lockfd, LOCK_EX | LOCK_NB) != 0) {
        ssize_t r;
        uint64_t holder;

        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK)
            return spool_errno_in(err, errno, "flock", sp->dir, "lock");
        r = pread(sp->lockfd, pid, sizeof(pid) - 1, 0);
        while (r > 0 && (pid[r - 1] == '\n' || pid[r - 1] == ' '))
            r--;
        if (r > 0 && text_parse_u64(pid, (size_t) r, 1, INT32_MAX, &holder) == SY_OK)
            return sy_err_set(err, SY_ETEMP, "4.3.0", "spool %s is locked by pid %llu", sp->dir,
                              (unsigned long long) holder);
        return sy_err_set(err, SY_ETEMP, "4.3.0", "spool %s is locked by another process",
                          sp->dir);
    }
    /* The pid is for the operator only: a full disk must not stop start-up
     * (delivery is what frees space), so failures here are ignored. */
    n = snprintf(pid, sizeof(pid), "%ld\n", (long) getpid());
    if (ftruncate(sp->lockfd, 0) == 0 && n > 0)
        (void) !pwrite(sp->lockfd, pid, (size_t) n, 0);
    return SY_OK;
}

struct spool *spool_open(const char *dir, struct sy_err *err)
{
    struct spool *sp;
    struct stat st_tmp, st_q;
    int created = 0;

    if (dir == NULL || dir[0] == '\0') {
        (void) sy_err_set(err, SY_EIO, "4.3.0", "spool directory not set");
        return NULL;
    }
    sp = xcalloc(1, sizeof(*sp));
    sp->dir = xstrdup(dir);
    sp->dirfd = sp->tmpfd = sp->qfd = sp->lockfd = -1;
    (void) pthread_mutex_init(&sp->sync_lock, NULL);
    (void) pthread_cond_init(&sp->sync_cond, NULL);
    if (mkdir(dir, 0700) == 0)
        created = 1;
    else if (errno != EEXIST) {
        (void) spool_errno(err, errno, "mkdir", dir);
        goto fail;
    }
    sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sp->dirfd < 0) {
        (void) spool_errno(err, errno, "open", dir);
        goto fail;
    }
    if (created && spool_fsync_parent(dir) != 0) {
        (void) spool_errno(err, errno, "fsync parent of", dir);
        goto fail;
    }
    /* Lock before touching tmp/: a second daemon must not clean the
     * first one's files in flight. */
    if (spool_lock(sp, err) != SY_OK)
        goto fail;
    created = 0;
    sp->tmpfd = spool_subdir(sp, "tmp", &created, err);
    if (sp->tmpfd < 0)
        goto fail;
    sp->qfd = spool_subdir(sp, "q", &created, err);
    if (sp->qfd < 0)
        goto fail;
    /* A new q/ must itself be durable, or a crash could lose the
     * directory with every message committed into it. */
    if (created && fsync(sp->dirfd) != 0) {
        (void) spool_errno(err, errno, "fsync", dir);
        goto fail;
    }
    if (fstat(sp->tmpfd, &st_tmp) != 0 || fstat(sp->qfd, &st_q) != 0) {
        (void) spool_errno(err, errno, "stat", dir);
        goto fail;
    }
    if (st_tmp.st_dev != st_q.st_dev) {
        (void) sy_err_set(err, SY_EIO, "4.3.0",
                          "spool %s: tmp/ and q/ are on different file systems", dir);
        goto fail;
    }
    return sp;

fail:
    spool_close(sp);
    return NULL;
}

int spool_chown(struct spool *sp, uid_t uid, gid_t gid, struct sy_err *err)
{
    const int fds[] = { sp->dirfd, sp->tmpfd, sp->qfd, sp->lockfd };

    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fchown(fds[i], uid, gid) < 0)
            return spool_errno(err, errno, "chown", sp->dir);
    return SY_OK;
}

void spool_close(struct spool *sp)
{
    if (sp == NULL)
        return;
    if (sp->qfd >= 0)
        (void) close(sp->qfd);
    if (sp->tmpfd >= 0)
        (void) close(sp->tmpfd);
    if (sp->lockfd >= 0)
        (void) close(sp->lockfd);
    if (sp->dirfd >= 0)
        (void) close(sp->dirfd);
    (void) pthread_cond_destroy(&sp->sync_cond);
    (void) pthread_mutex_destroy(&sp->sync_lock);
    free(sp->dir);
    free(sp);
}

const char *spool_dir(const struct spool *sp)
{
    return sp->dir;
}

int spool_check_space(struct spool *sp, uint64_t need, struct sy_err *err)
{
    struct statvfs st;
    uint64_t unit, avail;

    if (fstatvfs(sp->qfd, &st) != 0)
        return spool_errno(err, errno, "statvfs", "q/");
    unit = st.f_frsize != 0 ? st.f_frsize : st.f_bsize;
    if (unit != 0 && st.f_bavail > UINT64_MAX / unit)
        avail = UINT64_MAX;
    else
        avail = (uint64_t) st.f_bavail * unit;
    if (avail < need)
        return sy_err_set(err, SY_ENOSPACE, "4.3.1",
                          "insufficient system storage: spool has %llu bytes free, %llu needed",
                          (unsigned long long) avail, (unsigned long long) need);
    /* f_files == 0: the file system does not count inodes (btrfs). */
    if (st.f_files > 0 && (unsigned long long) st.f_favail <= SPOOL_INODES_MIN)
        return sy_err_set(err, SY_ENOSPACE, "4.3.1",
                          "insufficient system storage: spool has %llu inodes free",
                          (unsigned long long) st.f_favail);
    return SY_OK;
}

/* ---- writing ---- */

/* spool_dir_fsync - fsync dir/name through a fresh descriptor
 *
 * A fresh open file description per call keeps the rule of never calling
 * fsync twice on one descriptor after a failure (fsyncgate): the error of
 * one commit can never be swallowed and turned into the success of the
 * next. Returns 0, or -1 with errno set. */
static int spool_dir_fsync(const struct spool *sp, const char *name)
{
    int fd = openat(sp->dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    int rc, e;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    e = errno;
    (void) close(fd);
    errno = e;
    return rc;
}

/* spool_q_sync - make every rename into and unlink from q/ made so far
 * durable (group commit)
 *
 * The caller has made its change to q/ before it calls. It joins the
 * queue; whichever thread finds no fsync in progress takes the whole
 * queue, fsyncs q/ once (through a fresh descriptor, spool_dir_fsync) and
 * hands the result to every waiter it took, itself included. A waiter's
 * change came before it queued, and the queue is taken before the fsync
 * starts, so that fsync covers it; a thread that queues while an fsync
 * runs waits for the next one, which it or another waiter starts. A
 * failed fsync fails every change it was to cover. Concurrent sessions so
 * share one directory fsync instead of queueing behind one each.
 * Returns 0, or -1 with errno set. */
static int spool_q_sync(struct spool *sp)
{
    struct spool_sync_waiter me = { NULL, 0, 0, 0 };
    struct spool_sync_waiter *batch, *n, *next;
    int rc, e;

    (void) pthread_mutex_lock(&sp->sync_lock);
    me.next = sp->sync_queue;
    /* The waiter lives on this stack only while queued: the fsync that
     * takes it marks it done, and this function returns only after that. */
    /* cppcheck-suppress autoVariables */
    sp->sync_queue = &me;
    while (!me.done) {
        if (sp->sync_busy) {
            (void) pthread_cond_wait(&sp->sync_cond, &sp->sync_lock);
            continue;
        }
        batch = sp->sync_queue;
        sp->sync_queue = NULL;
        sp->sync_busy = 1;
        (void) pthread_mutex_unlock(&sp->sync_lock);
        rc = spool_dir_fsync(sp, "q");
        e = rc != 0 ? errno : 0;
        (void) pthread_mutex_lock(&sp->sync_lock);
        for (n = batch; n != NULL; n = next) {
            next = n->next;
            n->rc = rc;
            n->err = e;
            n->done = 1;
        }
        sp->sync_busy = 0;
        (void) pthread_cond_broadcast(&sp->sync_cond);
    }
    (void) pthread_mutex_unlock(&sp->sync_lock);
    errno = me.err;
    return me.rc;
}

struct spool_writer *spool_begin(struct spool *sp, const char *qid, struct sy_err *err)
{
    struct spool_writer *w;
    int fd;

    if (!qid_valid(qid)) {
        (void) sy_err_set(err, SY_ESYNTAX, "4.3.0", "spool: invalid queue id");
        return NULL;
    }
    fd = openat(sp->tmpfd, qid, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        char what[8 + QID_SIZE];

        (void) snprintf(what, sizeof(what), "tmp/%s", qid);
        (void) spool_errno(err, errno, "create", what);
        return NULL;
    }
    w = xcalloc(1, sizeof(*w));
    w->sp = sp;
    w->fd = fd;
    memcpy(w->qid, qid, QID_SIZE);
    w->buf = xmalloc(SPOOL_WBUF_SIZE);
    memcpy(w->buf, SPOOL_MAGIC, SPOOL_MAGIC_LEN);
    w->blen = SPOOL_MAGIC_LEN;
    return w;
}

/* spool_writer_fail - remember the first write error; later calls repeat it */
static int spool_writer_fail(struct spool_writer *w, int e, const char *op, struct sy_err *err)
{
    if (!w->failed) {
        char what[8 + QID_SIZE];

        (void) snprintf(what, sizeof(what), "tmp/%s", w->qid);
        (void) spool_errno(&w->ferr, e, op, what);
        w->failed = 1;
    }
    if (err != NULL)
        *err = w->ferr;
    return w->ferr.code;
}

/* spool_writer_flush - write out the buffer */
static int spool_writer_flush(struct spool_writer *w, struct sy_err *err)
{
    if (w->blen > 0 && io_file_write_all(w->fd, w->buf, w->blen) != SY_OK)
        return spool_writer_fail(w, errno, "write", err);
    w->blen = 0;
    return SY_OK;
}

/* spool_writer_put - buffered append of bytes that follow the header */
static int spool_writer_put(struct spool_writer *w, const void *p, size_t n, struct sy_err *err)
{
    if (n <= SPOOL_WBUF_SIZE - w->blen) {
        memcpy(w->buf + w->blen, p, n);
        w->blen += n;
        return SY_OK;
    }
    if (spool_writer_flush(w, err) != SY_OK)
        return w->ferr.code;
    if (n >= SPOOL_WBUF_SIZE) {
        if (io_file_write_all(w->fd, p, n) != SY_OK)
            return spool_writer_fail(w, errno, "write", err);
        return SY_OK;
    }
    memcpy(w->buf, p, n);
    w->blen = n;
    return SY_OK;
}

int spool_write(struct spool_writer *w, const void *p, size_t n, struct sy_err *err)
{
    if (w->failed)
        return spool_writer_fail(w, 0, "write", err);
    if (n == 0)
        return SY_OK;
    /* The trailer stores u64 offsets; keep header + message + envelope
     * representable (and off_t-sized) with room to spare. */
    if (n > (uint64_t) INT64_MAX / 2 - w->msg_len)
        return spool_writer_fail(w, EFBIG, "write", err);
    w->crc = spool_crc32c(w->crc, p, n);
    w->msg_len += n;
    return spool_writer_put(w, p, n, err);
}

/* spool_writer_discard - close (without caring), unlink the temp file, free w */
static void spool_writer_discard(struct spool_writer *w)
{
    if (w->fd >= 0)
        (void) close(w->fd);
    (void) unlinkat(w->sp->tmpfd, w->qid, 0);
    free(w->buf);
    free(w);
}

void spool_abort(struct spool_writer *w)
{
    if (w != NULL)
        spool_writer_discard(w);
}

/* spool_publish - move tmp/<qid> to q/<qid>, never replacing a file there
 *
 * renameat2(RENAME_NOREPLACE) is atomic; file systems without it (EINVAL)
 * get link + unlink, which cannot replace either: linkat fails with EEXIST.
 * Returns 0 or -1 with errno set and the operation name in *op. */
static int spool_publish(struct spool_writer *w, const char **op)
{
    struct spool *sp = w->sp;

#ifdef SYS_renameat2
    *op = "rename";
    if (syscall(SYS_renameat2, sp->tmpfd, w->qid, sp->qfd, w->qid, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
#endif
    *op = "link";
    if (linkat(sp->tmpfd, w->qid, sp->qfd, w->qid, 0) != 0)
        return -1;
    /* A leftover tmp/ name after a crash here is harmless: the file is
     * committed under q/, and spool_clean_tmp() drops the extra link. */
    (void) unlinkat(sp->tmpfd, w->qid, 0);
    return 0;
}

int spool_commit(struct spool_writer *w, const struct envelope *env, struct sy_err *err)
{
    struct envelope check;
    struct sy_err derr;
    unsigned char tr[SPOOL_TRAILER_LEN];
    char what[8 + QID_SIZE];
    const char *op;
    char *enc;
    size_t elen;
    int fd, rc;

    if (w->failed) {
        rc = spool_writer_fail(w, 0, "write", err);
        goto fail;
    }
    /* Never write a file we could not read back: the record is decoded
     * before it is written, so a bad field fails this one message now
     * instead of turning up as a corrupt file at delivery. */
    enc = spool_env_encode(env, &elen);
    env_init(&check);
    rc = spool_env_decode(enc, elen, &check, &derr);
    env_free(&check);
    if (rc != SY_OK) {
        free(enc);
        rc = sy_err_set(err, SY_ESYNTAX, "4.3.0", "spool: envelope not storable: %s", derr.text);
        goto fail;
    }
    spool_put_be(tr, SPOOL_MAGIC_LEN, 8);
    spool_put_be(tr + 8, w->msg_len, 8);
    spool_put_be(tr + 16, SPOOL_MAGIC_LEN + w->msg_len, 8);
    spool_put_be(tr + 24, elen, 8);
    spool_put_be(tr + 32, spool_crc32c(w->crc, enc, elen), 4);
    spool_put_be(tr + 36, SPOOL_VERSION, 4);
    spool_put_be(tr + 40, spool_crc32c(0, tr, 40), 4);
    memcpy(tr + 44, SPOOL_END_MAGIC, SPOOL_END_MAGIC_LEN);
    rc = spool_writer_put(w, enc, elen, err);
    free(enc);
    if (rc != SY_OK || (rc = spool_writer_put(w, tr, sizeof(tr), err)) != SY_OK ||
        (rc = spool_writer_flush(w, err)) != SY_OK)
        goto fail;

    (void) snprintf(what, sizeof(what), "tmp/%s", w->qid);
    if (fsync(w->fd) != 0) {
        rc = spool_errno(err, errno, "fsync", what);
        goto fail;
    }
    /* close() can report a deferred write error (NFS): check it. The
     * descriptor is gone either way on Linux, so never close twice. */
    fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0) {
        rc = spool_errno(err, errno, "close", what);
        goto fail;
    }
    if (spool_publish(w, &op) != 0) {
        rc = spool_errno(err, errno, op, what);
        goto fail;
    }
    if (spool_q_sync(w->sp) != 0) {
        /* The entry may or may not survive a crash: take it back, so the
         * MTA's retry is the only copy rather than a later duplicate. */
        (void) snprintf(what, sizeof(what), "q/%s", w->qid);
        rc = spool_errno(err, errno, "fsync directory of", what);
        (void) unlinkat(w->sp->qfd, w->qid, 0);
        goto fail;
    }
    free(w->buf);
    free(w);
    return SY_OK;

fail:
    spool_writer_discard(w);
    return rc;
}

/* ---- reading ---- */

/* spool_pread - read exactly n bytes at off: 0, 1 when the file ended
 * early (it shrank under us), -1 with errno on error */
static int spool_pread(int fd, void *p, size_t n, uint64_t off)
{
    unsigned char *c = p;

    while (n > 0) {
        ssize_t r = pread(fd, c, n, (off_t) off);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return 1;
        c += r;
        n -= (size_t) r;
        off += (uint64_t) r;
    }
    return 0;
}

/* spool_corrupt - SY_ESYNTAX naming the file */
static int spool_corrupt(struct sy_err *err, const char *qid, const char *why)
{
    return sy_err_set(err, SY_ESYNTAX, "4.3.0", "spool file q/%s corrupt: %s", qid, why);
}

/* spool_read_body - checksum the message and envelope, decode the envelope */
static int spool_read_body(int fd, const char *qid, uint64_t msg_len, uint64_t env_len,
                           uint32_t want, struct envelope *env, struct sy_err *err)
{
    unsigned char *chunk = xmalloc(SPOOL_WBUF_SIZE);
    char *enc = xmalloc((size_t) env_len);
    uint64_t off = SPOOL_MAGIC_LEN, left = msg_len;
    uint32_t crc = 0;
    struct sy_err derr;
    int r = 0, rc = SY_OK;

    while (left > 0 && r == 0) {
        size_t n = left < SPOOL_WBUF_SIZE ? (size_t) left : SPOOL_WBUF_SIZE;

        r = spool_pread(fd, chunk, n, off);
        crc = spool_crc32c(crc, chunk, n);
        off += n;
        left -= n;
    }
    if (r == 0)
        r = spool_pread(fd, enc, (size_t) env_len, off);
    if (r < 0) {
        char what[8 + QID_SIZE];

        (void) snprintf(what, sizeof(what), "q/%s", qid);
        rc = spool_errno(err, errno, "read", what);
    } else if (r > 0) {
        rc = spool_corrupt(err, qid, "file shrank while being read");
    } else if (spool_crc32c(crc, enc, (size_t) env_len) != want) {
        rc = spool_corrupt(err, qid, "checksum mismatch");
    } else if (spool_env_decode(enc, (size_t) env_len, env, &derr) != SY_OK) {
        rc = spool_corrupt(err, qid, derr.text);
    }
    free(enc);
    free(chunk);
    return rc;
}

/* spool_read_fd - validate an open spool file and decode its envelope */
static int spool_read_fd(int fd, const char *qid, struct envelope *env, uint64_t *msg_off,
                         uint64_t *msg_len, struct sy_err *err)
{
    unsigned char hdr[SPOOL_MAGIC_LEN], tr[SPOOL_TRAILER_LEN];
    uint64_t size, end, moff, mlen, eoff, elen;
    struct stat st;
    char what[8 + QID_SIZE];
    int r, rc;

    (void) snprintf(what, sizeof(what), "q/%s", qid);
    if (fstat(fd, &st) != 0)
        return spool_errno(err, errno, "stat", what);
    if (!S_ISREG(st.st_mode))
        return spool_corrupt(err, qid, "not a regular file");
    size = (uint64_t) st.st_size;
    if (size < SPOOL_MAGIC_LEN + SPOOL_TRAILER_LEN)
        return spool_corrupt(err, qid, "too short");
    if ((r = spool_pread(fd, hdr, sizeof(hdr), 0)) == 0)
        r = spool_pread(fd, tr, sizeof(tr), size - SPOOL_TRAILER_LEN);
    if (r < 0)
        return spool_errno(err, errno, "read", what);
    if (r > 0)
        return spool_corrupt(err, qid, "file shrank while being read");
    if (memcmp(hdr, SPOOL_MAGIC, SPOOL_MAGIC_LEN) != 0)
        return spool_corrupt(err, qid, "bad header line");
    if (memcmp(tr + 44, SPOOL_END_MAGIC, SPOOL_END_MAGIC_LEN) != 0)
        return spool_corrupt(err, qid, "no end marker (truncated or incompletely written)");
    if (spool_get_be(tr + 40, 4) != spool_crc32c(0, tr, 40))
        return spool_corrupt(err, qid, "trailer checksum mismatch");
    if (spool_get_be(tr + 36, 4) != SPOOL_VERSION)
        return spool_corrupt(err, qid, "unsupported format version");
    moff = spool_get_be(tr, 8);
    mlen = spool_get_be(tr + 8, 8);
    eoff = spool_get_be(tr + 16, 8);
    elen = spool_get_be(tr + 24, 8);
    /* Every offset is checked against the real file size before use: the
     * layout has no gaps, so the trailer must describe the file exactly. */
    end = size - SPOOL_TRAILER_LEN;
    if (moff != SPOOL_MAGIC_LEN || mlen > end - moff || eoff != moff + mlen || elen != end - eoff)
        return spool_corrupt(err, qid, "trailer does not match the file size");
    if (elen == 0 || elen > SPOOL_ENV_MAX)
        return spool_corrupt(err, qid, "envelope length out of range");
    rc = spool_read_body(fd, qid, mlen, elen, (uint32_t) spool_get_be(tr + 32, 4), env, err);
    if (rc != SY_OK)
        return rc;
    *msg_off = moff;
    *msg_len = mlen;
    env->size = mlen;
    return SY_OK;
}

/* spool_open_q - open q/<qid> read-only; -1 with err set */
static int spool_open_q(struct spool *sp, const char *qid, struct sy_err *err)
{
    char what[8 + QID_SIZE];
    int fd;

    /* The id becomes a file name: only well-formed ids, never a path. */
    if (!qid_valid(qid)) {
        (void) sy_err_set(err, SY_ENOTFOUND, "4.3.0", "spool: invalid queue id");
        return -1;
    }
    (void) snprintf(what, sizeof(what), "q/%s", qid);
    fd = openat(sp->qfd, qid, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0)
        return fd;
    if (errno == ENOENT)
        (void) sy_err_set(err, SY_ENOTFOUND, "4.3.0", "spool file %s not found", what);
    else if (errno == ELOOP)
        (void) spool_corrupt(err, qid, "a symbolic link");
    else
        (void) spool_errno(err, errno, "open", what);
    return -1;
}

int spool_read(struct spool *sp, const char *qid, struct envelope *env, uint64_t *msg_off,
               uint64_t *msg_len, struct sy_err *err)
{
    struct sy_err e;
    int fd = spool_open_q(sp, qid, &e), rc;

    if (fd < 0) {
        if (err != NULL)
            *err = e;
        return e.code;
    }
    rc = spool_read_fd(fd, qid, env, msg_off, msg_len, err);
    (void) close(fd);
    return rc;
}

int spool_open_message(struct spool *sp, const char *qid, struct sy_err *err)
{
    return spool_open_q(sp, qid, err);
}

int spool_remove(struct spool *sp, const char *qid, struct sy_err *err)
{
    char what[8 + QID_SIZE];

    if (!qid_valid(qid))
        return sy_err_set(err, SY_ENOTFOUND, "4.3.0", "spool: invalid queue id");
    (void) snprintf(what, sizeof(what), "q/%s", qid);
    if (unlinkat(sp->qfd, qid, 0) != 0) {
        if (errno == ENOENT)
            return sy_err_set(err, SY_ENOTFOUND, "4.3.0", "spool file %s not found", what);
        return spool_errno(err, errno, "unlink", what);
    }
    if (spool_q_sync(sp) != 0)
        return spool_errno(err, errno, "fsync directory of", what);
    return SY_OK;
}

/* spool_opendir - a fresh directory stream on dir/name (threads may scan
 * at once, so the shared descriptors are never read through) */
static DIR *spool_opendir(const struct spool *sp, const char *name)
{
    int fd = openat(sp->dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    DIR *d;

    if (fd < 0)
        return NULL;
    d = fdopendir(fd);
    if (d == NULL)
        (void) close(fd);
    return d;
}

/* spool_qid_cmp - qsort order of ids: as strings, which is creation order */
static int spool_qid_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

int spool_scan(struct spool *sp, int (*fn)(const char *qid, void *arg), void *arg)
{
    DIR *d = spool_opendir(sp, "q");
    char (*ids)[QID_SIZE] = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int rc = 0;

    if (d == NULL)
        return SY_EIO;
    while ((de = readdir(d)) != NULL) {
        if (!qid_valid(de->d_name) || (de->d_type != DT_REG && de->d_type != DT_UNKNOWN))
            continue;
        ids = xreallocarray_grow(ids, &cap, n + 1, sizeof(*ids));
        memcpy(ids[n++], de->d_name, QID_SIZE);
    }
    (void) closedir(d);
    if (n > 1)
        qsort(ids, n, sizeof(*ids), spool_qid_cmp);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = fn(ids[i], arg);
    free(ids);
    return rc;
}

size_t spool_clean_tmp(struct spool *sp)
{
    size_t total = 0, pass;

    /* Unlinking while reading a directory may hide entries from the same
     * stream: repeat until a pass finds nothing to remove. */
    do {
        DIR *d = spool_opendir(sp, "tmp");
        struct dirent *de;

        if (d == NULL)
            break;
        pass = 0;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            if (unlinkat(sp->tmpfd, de->d_name, 0) == 0)
                pass++;
        }
        (void) closedir(d);
        total += pass;
    } while (pass > 0);
    if (total > 0)
        (void) spool_dir_fsync(sp, "tmp");
    return total;
}
