/* fuzz_smtp_reply.c - libFuzzer target for gateway/smtp/reply.c and ehlo.c
 *
 * The first byte picks how the rest is delivered to the parser: the low
 * nibble a chunk size (1-16, or 0: all at once), bit 4 one line at a
 * time through smtp_reply_feed_line(). The same bytes are also parsed
 * whole, and the two runs must agree. Checked invariants, any violation
 * aborts:
 *   - chunking never changes the sequence of replies or the error;
 *   - a complete reply's code is [2-5][0-5][0-9], it has 1..50 lines, and
 *     the bytes it consumed are exactly its lines ("ccc-" / "ccc " /
 *     "ccc", text, CRLF) with the same code on every line;
 *   - its text lines hold no NUL, CR or LF and fit the line limit;
 *   - the joined form is printable ASCII, bounded, and equals the lines
 *     joined with one space (or a prefix ending in "..." when cut);
 *   - the enhanced code is empty or class.subject.detail with the class
 *     equal to the first digit of the code;
 *   - an error is SY_ESYNTAX or SY_ETOOBIG with 4.5.0 and printable text,
 *     and it is sticky;
 *   - end of input is SY_OK exactly when the parser is idle;
 *   - EHLO capabilities parsed from any positive reply, and from the raw
 *     input as one line, stay within their bounds and are well formed.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/smtp/ehlo.h"
#include "gateway/smtp/reply.h"
#include "gateway/util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(c) do { if (!(c)) abort(); } while (0)
/* Replies remembered per run for the comparison. */
#define FUZZ_REPLIES_MAX 64

struct fuzz_run {
    size_t nreplies;
    int code[FUZZ_REPLIES_MAX];
    size_t nlines[FUZZ_REPLIES_MAX];
    char full[FUZZ_REPLIES_MAX][SMTP_REPLY_FULL_MAX];
    char enh[FUZZ_REPLIES_MAX][SMTP_REPLY_ENH_MAX];
    int rc;                 /* last result: MORE, DONE or an error */
    size_t consumed;        /* bytes consumed in all */
    int eof;                /* smtp_reply_parser_eof() at the end */
};

static bool fuzz_printable(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char) *s < 0x20 || (unsigned char) *s > 0x7e)
            return false;
    return true;
}

/* fuzz_digits - 1 to 3 digits at s[*i] */
static bool fuzz_digits(const char *s, size_t *i)
{
    size_t k = 0;

    while (k < 3 && s[*i + k] >= '0' && s[*i + k] <= '9')
        k++;
    *i += k;
    return k > 0;
}

static void fuzz_check_enh(const char *enh, int code)
{
    size_t i = 1;

    if (enh[0] == '\0')
        return;
    FUZZ_CHECK(enh[0] - '0' == code / 100);
    FUZZ_CHECK(enh[0] == '2' || enh[0] == '4' || enh[0] == '5');
    FUZZ_CHECK(enh[i++] == '.' && fuzz_digits(enh, &i));
    FUZZ_CHECK(enh[i++] == '.' && fuzz_digits(enh, &i));
    FUZZ_CHECK(enh[i] == '\0');
}

static void fuzz_check_ehlo(const struct smtp_ehlo *c)
{
    size_t n = strlen(c->name);

    FUZZ_CHECK(n < SMTP_EHLO_NAME_MAX);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(c->name[i] > 0x20 && c->name[i] < 0x7f);
    FUZZ_CHECK(c->size_max <= (uint64_t) INT64_MAX);
    FUZZ_CHECK(c->nmechs <= SMTP_EHLO_MECHS_MAX);
    for (size_t i = 0; i < c->nmechs; i++) {
        size_t len = strlen(c->mechs[i]);

        FUZZ_CHECK(len >= 1 && len <= SMTP_EHLO_MECH_LEN_MAX);
        for (size_t k = 0; k < len; k++) {
            char ch = c->mechs[i][k];

            FUZZ_CHECK((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_');
        }
        for (size_t k = 0; k < i; k++)
            FUZZ_CHECK(strcmp(c->mechs[k], c->mechs[i]) != 0);
        FUZZ_CHECK(smtp_ehlo_has_mech(c, c->mechs[i]));
    }
    FUZZ_CHECK(c->nmechs == 0 || (c->ext & SMTP_EXT_AUTH) != 0);
    FUZZ_CHECK(c->nothers <= SMTP_EHLO_OTHERS_MAX);
    for (size_t i = 0; i < c->nothers; i++) {
        size_t len = strlen(c->others[i]);

        FUZZ_CHECK(len >= 1 && len <= SMTP_EHLO_KEYWORD_LEN_MAX);
        for (size_t k = 0; k < len; k++) {
            char ch = c->others[i][k];

            FUZZ_CHECK((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-');
        }
    }
    FUZZ_CHECK((c->ext & ~(unsigned) (2 * SMTP_EXT_AUTH - 1)) == 0);
}

/* fuzz_check_reply - r consumed exactly seg[0..n) */
static void fuzz_check_reply(const struct smtp_reply *r, const char *seg, size_t n)
{
    int code = smtp_reply_code(r);
    size_t nl = smtp_reply_nlines(r), pos = 0, flen = 0;
    const char *full = smtp_reply_full(r);
    char ref[SMTP_REPLY_FULL_MAX + 8];
    bool cut = false;
    struct smtp_ehlo caps;

    FUZZ_CHECK(code >= 200 && code <= 559 && code % 100 <= 59);
    FUZZ_CHECK(nl >= 1 && nl <= SMTP_REPLY_LINES_MAX);
    fuzz_check_enh(smtp_reply_enh(r), code);
    FUZZ_CHECK(strlen(full) <= SMTP_REPLY_FULL_MAX - 1);
    FUZZ_CHECK(fuzz_printable(full));
    for (size_t i = 0; i < nl; i++) {
        size_t len;
        const char *t = smtp_reply_line(r, i, &len);
        size_t start = pos;

        FUZZ_CHECK(len + 6 <= SMTP_REPLY_LINE_MAX);
        FUZZ_CHECK(t[len] == '\0');
        FUZZ_CHECK(memchr(t, '\0', len) == NULL && memchr(t, '\r', len) == NULL &&
                   memchr(t, '\n', len) == NULL);
        FUZZ_CHECK(n - pos >= 5);
        FUZZ_CHECK(seg[pos] - '0' == code / 100 && seg[pos + 1] - '0' == code / 10 % 10 &&
                   seg[pos + 2] - '0' == code % 10);
        pos += 3;
        if (seg[pos] == '-' || seg[pos] == ' ') {
            FUZZ_CHECK((seg[pos] == ' ') == (i == nl - 1));
            pos++;
        } else {
            FUZZ_CHECK(len == 0 && i == nl - 1);
        }
        FUZZ_CHECK(n - pos >= len + 2);
        FUZZ_CHECK(memcmp(seg + pos, t, len) == 0);
        pos += len;
        FUZZ_CHECK(seg[pos] == '\r' && seg[pos + 1] == '\n');
        /* The reference joined form of this line. */
        if (i > 0 && flen < SMTP_REPLY_FULL_MAX)
            ref[flen++] = ' ';
        for (size_t k = start; k < pos; k++) {
            if (flen >= SMTP_REPLY_FULL_MAX) {
                cut = true;
                break;
            }
            ref[flen++] = (seg[k] >= 0x20 && seg[k] <= 0x7e) ? seg[k] : '?';
        }
        pos += 2;
    }
    FUZZ_CHECK(pos == n);
    if (flen >= SMTP_REPLY_FULL_MAX)
        cut = true;
    if (!cut) {
        FUZZ_CHECK(strlen(full) == flen && memcmp(full, ref, flen) == 0);
    } else {
        size_t fl = strlen(full);

        FUZZ_CHECK(fl == SMTP_REPLY_FULL_MAX - 1);
        FUZZ_CHECK(memcmp(full, ref, fl - 3) == 0 && strcmp(full + fl - 3, "...") == 0);
    }
    if (smtp_reply_is_positive(r)) {
        FUZZ_CHECK(smtp_ehlo_parse(r, &caps, NULL) == SY_OK);
        fuzz_check_ehlo(&caps);
    } else {
        FUZZ_CHECK(smtp_ehlo_parse(r, &caps, NULL) == SY_ESYNTAX);
        FUZZ_CHECK(caps.ext == 0 && caps.nmechs == 0);
    }
}

static void fuzz_check_err(int rc, const struct sy_err *err)
{
    FUZZ_CHECK(rc == SY_ESYNTAX || rc == SY_ETOOBIG);
    FUZZ_CHECK(err->code == rc && strcmp(err->enh, "4.5.0") == 0);
    FUZZ_CHECK(err->text[0] != '\0' && fuzz_printable(err->text));
}

/* fuzz_done - record and check the reply that ends at in[upto) */
static void fuzz_done(struct smtp_reply_parser *p, struct fuzz_run *run, const char *in,
                      size_t start, size_t upto)
{
    struct smtp_reply r;

    smtp_reply_init(&r);
    FUZZ_CHECK(smtp_reply_parser_idle(p));
    FUZZ_CHECK(smtp_reply_parser_take(p, &r) == SY_OK);
    FUZZ_CHECK(smtp_reply_parser_reply(p) == NULL);
    fuzz_check_reply(&r, in + start, upto - start);
    if (run->nreplies < FUZZ_REPLIES_MAX) {
        size_t k = run->nreplies++;

        run->code[k] = smtp_reply_code(&r);
        run->nlines[k] = smtp_reply_nlines(&r);
        memcpy(run->full[k], smtp_reply_full(&r), strlen(smtp_reply_full(&r)) + 1);
        memcpy(run->enh[k], smtp_reply_enh(&r), strlen(smtp_reply_enh(&r)) + 1);
    }
    smtp_reply_free(&r);
}

/* fuzz_bytes - feed in[0..n) in chunks of step (0: whole) */
static void fuzz_bytes(struct smtp_reply_parser *p, const char *in, size_t n, size_t step,
                       struct fuzz_run *run)
{
    size_t pos = 0, start = 0;
    struct sy_err err;

    run->rc = SMTP_REPLY_MORE;
    while (pos < n) {
        size_t want = step == 0 || step > n - pos ? n - pos : step, off = 0;

        while (off < want) {
            size_t used = 0;
            int rc = smtp_reply_feed(p, in + pos + off, want - off, &used, &err);

            FUZZ_CHECK(used <= want - off);
            off += used;
            run->rc = rc;
            if (rc < 0) {
                fuzz_check_err(rc, &err);
                run->consumed = pos + off;
                /* sticky */
                FUZZ_CHECK(smtp_reply_feed(p, "250 x\r\n", 7, &used, &err) == rc && used == 0);
                FUZZ_CHECK(smtp_reply_parser_eof(p, NULL) == rc);
                run->eof = rc;
                return;
            }
            if (rc == SMTP_REPLY_MORE) {
                FUZZ_CHECK(off == want);
                break;
            }
            FUZZ_CHECK(rc == SMTP_REPLY_DONE && used > 0);
            fuzz_done(p, run, in, start, pos + off);
            start = pos + off;
        }
        pos += want;
    }
    run->consumed = pos;
    run->eof = smtp_reply_parser_eof(p, &err);
    FUZZ_CHECK((run->eof == SY_OK) == (start == n));
    if (run->eof != SY_OK)
        fuzz_check_err(run->eof, &err);
}

/* fuzz_lines - feed in[0..n) one LF-terminated line at a time */
static void fuzz_lines(struct smtp_reply_parser *p, const char *in, size_t n, struct fuzz_run *run)
{
    size_t pos = 0, start = 0;
    struct sy_err err;

    run->rc = SMTP_REPLY_MORE;
    while (pos < n) {
        const char *lf = memchr(in + pos, '\n', n - pos);
        size_t len = lf != NULL ? (size_t) (lf - (in + pos)) + 1 : n - pos;
        int rc = smtp_reply_feed_line(p, in + pos, len, &err);

        run->rc = rc;
        if (rc < 0) {
            fuzz_check_err(rc, &err);
            run->eof = rc;
            return;
        }
        pos += len;
        if (rc == SMTP_REPLY_DONE) {
            fuzz_done(p, run, in, start, pos);
            start = pos;
        }
    }
    run->consumed = pos;
    run->eof = smtp_reply_parser_eof(p, &err);
}

static void fuzz_same(const struct fuzz_run *a, const struct fuzz_run *b)
{
    FUZZ_CHECK(a->nreplies == b->nreplies);
    for (size_t k = 0; k < a->nreplies; k++) {
        FUZZ_CHECK(a->code[k] == b->code[k] && a->nlines[k] == b->nlines[k]);
        FUZZ_CHECK(strcmp(a->full[k], b->full[k]) == 0 && strcmp(a->enh[k], b->enh[k]) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fuzz_run whole, split;
    struct smtp_reply_parser *p;
    struct smtp_ehlo caps;
    const char *in;
    size_t n;

    if (size < 1)
        return 0;
    in = (const char *) data + 1;
    n = size - 1;
    p = malloc(sizeof(*p));
    FUZZ_CHECK(p != NULL);
    memset(&whole, 0, sizeof(whole));
    memset(&split, 0, sizeof(split));

    smtp_reply_parser_init(p);
    fuzz_bytes(p, in, n, 0, &whole);
    smtp_reply_parser_reset(p);
    FUZZ_CHECK(smtp_reply_parser_idle(p));
    if (data[0] & 0x10) {
        fuzz_lines(p, in, n, &split);
        /* Lines that all end in CRLF parse as the bytes do. */
        if (whole.rc >= 0 && (n == 0 || (n >= 2 && in[n - 1] == '\n'))) {
            FUZZ_CHECK(split.rc == whole.rc && split.eof == whole.eof);
            fuzz_same(&whole, &split);
        }
        if (split.rc >= 0)
            fuzz_same(&whole, &split);
    } else {
        fuzz_bytes(p, in, n, data[0] & 0x0f, &split);
        FUZZ_CHECK(split.rc == whole.rc && split.consumed == whole.consumed && split.eof == whole.eof);
        fuzz_same(&whole, &split);
    }
    smtp_reply_parser_free(p);
    free(p);

    /* The EHLO line parser on its own, any bytes and any length. */
    smtp_ehlo_init(&caps);
    smtp_ehlo_set_name(&caps, in, n);
    smtp_ehlo_add_line(&caps, in, n);
    for (size_t i = 0, s = 0; i <= n; i++)
        if (i == n || in[i] == '\n') {
            smtp_ehlo_add_line(&caps, in + s, i - s);
            s = i + 1;
        }
    fuzz_check_ehlo(&caps);
    return 0;
}
