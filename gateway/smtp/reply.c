/* reply.c - SMTP reply parser: lines, codes, enhanced codes, limits
 *
 * A byte-driven state machine whose whole memory is struct
 * smtp_reply_parser, so a reply fed in one chunk, one byte at a time or
 * split anywhere gives the same result (tests/unit/test_smtp_reply.c and
 * tests/fuzz/fuzz_smtp_reply.c check this). A line is collected in a
 * fixed buffer (never more than SMTP_REPLY_LINE_MAX - 2 bytes plus the
 * CR) and checked when its LF arrives; a CR is held until the next byte
 * shows whether it ends the line.
 *
 * Thread safety: no shared state.
 */
#include "gateway/smtp/reply.h"

#include <string.h>

#include "gateway/util/log.h"

enum smtp_reply_state {
    SMTP_RP_START = 0,  /* between replies: no byte of a reply held */
    SMTP_RP_LINE,       /* inside a line (linelen 0 with nlines > 0: between lines) */
    SMTP_RP_CR,         /* a CR after line[0..linelen): LF must follow */
    SMTP_RP_DONE,       /* a complete reply waits in cur */
    SMTP_RP_ERROR       /* failed; error holds the status */
};

/* Line content without its CRLF. */
#define SMTP_REPLY_TEXT_MAX (SMTP_REPLY_LINE_MAX - 2)
/* Shown of an offending line in an error text. */
#define SMTP_REPLY_SNIP_MAX ((size_t) 72)
/* Line texts of one reply, each with its NUL: never reached in practice,
 * as the line and line-count limits come first. */
#define SMTP_REPLY_LINES_BYTES (SMTP_REPLY_LINES_MAX * (SMTP_REPLY_TEXT_MAX + 1))

/* smtp_reply_clear - empty r but keep the text allocation */
static void smtp_reply_clear(struct smtp_reply *r)
{
    r->code = 0;
    r->enh[0] = '\0';
    r->nlines = 0;
    buf_reset(&r->lines);
    r->full_len = 0;
    r->full_cut = false;
    r->full[0] = '\0';
}

void smtp_reply_init(struct smtp_reply *r)
{
    buf_init(&r->lines, SMTP_REPLY_LINES_BYTES);
    smtp_reply_clear(r);
}

void smtp_reply_free(struct smtp_reply *r)
{
    if (r == NULL)
        return;
    buf_free(&r->lines);
    smtp_reply_init(r);
}

const char *smtp_reply_status(const struct smtp_reply *r)
{
    if (r->enh[0] != '\0')
        return r->enh;
    switch (r->code / 100) {
    case 2:
    case 3:
        return "2.0.0";
    case 5:
        return "5.0.0";
    default:
        return "4.0.0";
    }
}

const char *smtp_reply_line(const struct smtp_reply *r, size_t i, size_t *lenp)
{
    if (i >= r->nlines) {
        if (lenp != NULL)
            *lenp = 0;
        return "";
    }
    if (lenp != NULL)
        *lenp = r->len[i];
    return r->lines.data + r->off[i];
}

void smtp_reply_parser_init(struct smtp_reply_parser *p)
{
    p->state = SMTP_RP_START;
    p->error = SY_OK;
    p->linelen = 0;
    smtp_reply_init(&p->cur);
}

void smtp_reply_parser_free(struct smtp_reply_parser *p)
{
    if (p == NULL)
        return;
    smtp_reply_free(&p->cur);
    p->state = SMTP_RP_START;
    p->error = SY_OK;
    p->linelen = 0;
}

void smtp_reply_parser_reset(struct smtp_reply_parser *p)
{
    p->state = SMTP_RP_START;
    p->error = SY_OK;
    p->linelen = 0;
    smtp_reply_clear(&p->cur);
}

bool smtp_reply_parser_idle(const struct smtp_reply_parser *p)
{
    return p->state == SMTP_RP_START || p->state == SMTP_RP_DONE;
}

const struct smtp_reply *smtp_reply_parser_reply(const struct smtp_reply_parser *p)
{
    return p->state == SMTP_RP_DONE ? &p->cur : NULL;
}

int smtp_reply_parser_take(struct smtp_reply_parser *p, struct smtp_reply *dst)
{
    if (p->state != SMTP_RP_DONE)
        return SY_ENOTFOUND;
    buf_free(&dst->lines);
    *dst = p->cur;
    smtp_reply_init(&p->cur);
    p->state = SMTP_RP_START;
    return SY_OK;
}

/* smtp_reply_fail - enter the sticky error state; returns code */
static int smtp_reply_fail(struct smtp_reply_parser *p, int code, struct sy_err *err,
                           const char *why)
{
    char snip[SMTP_REPLY_SNIP_MAX];

    /* The line so far, made printable: it came from the peer. */
    (void) log_safe_n(snip, sizeof(snip), p->line, p->linelen);
    p->state = SMTP_RP_ERROR;
    p->error = code;
    return sy_err_set(err, code, "4.5.0", "SMTP reply: %s: \"%s\"", why, snip);
}

/* smtp_reply_sticky - the error a failed parser keeps returning */
static int smtp_reply_sticky(const struct smtp_reply_parser *p, struct sy_err *err)
{
    return sy_err_set(err, p->error, "4.5.0", "SMTP reply: parser failed earlier");
}

/* smtp_reply_digits - 1 to 3 decimal digits at s[*i..n): advances *i */
static bool smtp_reply_digits(const char *s, size_t n, size_t *i)
{
    size_t start = *i;

    while (*i < n && *i - start < 3 && s[*i] >= '0' && s[*i] <= '9')
        (*i)++;
    return *i > start;
}

/* smtp_reply_enh_parse - RFC 3463 "class.subject.detail" at the start of
 * the first line's text, followed by SP or the end of the line. The class
 * must match the reply code's first digit (as Postfix requires): a "250
 * 5.1.1" is not a bounce. Anything else yields "". */
static void smtp_reply_enh_parse(struct smtp_reply *r, const char *t, size_t n)
{
    size_t i = 1;

    r->enh[0] = '\0';
    if (n < 5 || (t[0] != '2' && t[0] != '4' && t[0] != '5') || t[0] - '0' != r->code / 100)
        return;
    if (t[i++] != '.' || !smtp_reply_digits(t, n, &i))
        return;
    if (i >= n || t[i++] != '.' || !smtp_reply_digits(t, n, &i))
        return;
    if (i < n && t[i] != ' ')
        return;
    /* i <= 11 by construction: "d.ddd.ddd" */
    memcpy(r->enh, t, i);
    r->enh[i] = '\0';
}

/* smtp_reply_full_add - append s[0..n) to the printable form, cutting at
 * the bound */
static void smtp_reply_full_add(struct smtp_reply *r, const char *s, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char) s[k];

        if (r->full_len >= SMTP_REPLY_FULL_MAX - 1) {
            r->full_cut = true;
            break;
        }
        r->full[r->full_len++] = (char) ((c >= 0x20 && c <= 0x7e) ? c : '?');
    }
    r->full[r->full_len] = '\0';
}

/* smtp_reply_line_done - check the complete line p->line[0..linelen) and
 * add it to the reply. Returns SMTP_REPLY_MORE, SMTP_REPLY_DONE or an
 * error. */
static int smtp_reply_line_done(struct smtp_reply_parser *p, struct sy_err *err)
{
    struct smtp_reply *r = &p->cur;
    const char *l = p->line;
    size_t n = p->linelen, tlen;
    bool last;
    int code;

    /* RFC 5321 §4.2: three digits, the first 2-5 (1yz is unused in SMTP),
     * the second 0-5; then "-", SP or the end of the line. */
    if (n < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '5' ||
        l[2] < '0' || l[2] > '9')
        return smtp_reply_fail(p, SY_ESYNTAX, err, "malformed reply code");
    if (n > 3 && l[3] != '-' && l[3] != ' ')
        return smtp_reply_fail(p, SY_ESYNTAX, err, "malformed reply code");
    code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
    if (r->nlines > 0 && code != r->code)
        return smtp_reply_fail(p, SY_ESYNTAX, err, "reply code changed inside a multi-line reply");
    last = n == 3 || l[3] == ' ';
    if (!last && r->nlines + 1 >= SMTP_REPLY_LINES_MAX)
        return smtp_reply_fail(p, SY_ETOOBIG, err, "more than 50 lines in one reply");
    tlen = n > 4 ? n - 4 : 0;
    r->off[r->nlines] = (uint32_t) r->lines.len;
    r->len[r->nlines] = (uint32_t) tlen;
    /* Within SMTP_REPLY_LINES_BYTES by the two limits above. */
    if (buf_append(&r->lines, l + (n > 4 ? 4 : n), tlen) != SY_OK ||
        buf_append_byte(&r->lines, '\0') != SY_OK)
        return smtp_reply_fail(p, SY_ETOOBIG, err, "reply too large");
    if (r->nlines == 0) {
        r->code = code;
        smtp_reply_enh_parse(r, l + (n > 4 ? 4 : n), tlen);
    } else {
        smtp_reply_full_add(r, " ", 1);
    }
    smtp_reply_full_add(r, l, n);
    r->nlines++;
    p->linelen = 0;
    if (!last) {
        p->state = SMTP_RP_LINE;
        return SMTP_REPLY_MORE;
    }
    if (r->full_cut)
        memcpy(r->full + SMTP_REPLY_FULL_MAX - 4, "...", 4);
    p->state = SMTP_RP_DONE;
    return SMTP_REPLY_DONE;
}

int smtp_reply_feed(struct smtp_reply_parser *p, const char *in, size_t n,
                    size_t *used, struct sy_err *err)
{
    size_t i = 0;
    int rc = SMTP_REPLY_MORE;

    *used = 0;
    if (p->state == SMTP_RP_ERROR)
        return smtp_reply_sticky(p, err);
    if (p->state == SMTP_RP_DONE) {
        smtp_reply_clear(&p->cur);
        p->state = SMTP_RP_START;
    }
    while (i < n) {
        unsigned char c = (unsigned char) in[i];

        if (p->state == SMTP_RP_CR) {
            i++;
            /* A CR not followed by LF: RFC 5321 §2.3.8, never a line end. */
            if (c != '\n') {
                *used = i;
                return smtp_reply_fail(p, SY_ESYNTAX, err, "bare CR in reply");
            }
            rc = smtp_reply_line_done(p, err);
            if (rc != SMTP_REPLY_MORE)
                break;
            continue;
        }
        p->state = SMTP_RP_LINE;
        /* Fast path: a run of ordinary bytes. */
        if (c != '\r' && c != '\n' && c != '\0') {
            size_t k = i;

            /* One content byte past the limit fails at once: a 1 MB
             * line costs no more than SMTP_REPLY_LINE_MAX. */
            if (p->linelen == SMTP_REPLY_TEXT_MAX) {
                *used = i + 1;
                return smtp_reply_fail(p, SY_ETOOBIG, err, "reply line longer than 2048 bytes");
            }
            while (k < n && in[k] != '\r' && in[k] != '\n' && in[k] != '\0' &&
                   p->linelen + (k - i) < SMTP_REPLY_TEXT_MAX)
                k++;
            memcpy(p->line + p->linelen, in + i, k - i);
            p->linelen += k - i;
            i = k;
            continue;
        }
        i++;
        if (c == '\r') {
            p->state = SMTP_RP_CR;
            continue;
        }
        *used = i;
        return smtp_reply_fail(p, SY_ESYNTAX, err,
                               c == '\n' ? "bare LF in reply" : "NUL in reply");
    }
    *used = i;
    return rc;
}

int smtp_reply_feed_line(struct smtp_reply_parser *p, const char *in, size_t n,
                         struct sy_err *err)
{
    size_t used;

    if (p->state == SMTP_RP_ERROR)
        return smtp_reply_sticky(p, err);
    /* One whole line: nothing pending from a byte feed, CRLF at the end
     * and nowhere else. */
    if ((p->state == SMTP_RP_LINE && p->linelen > 0) || p->state == SMTP_RP_CR)
        return smtp_reply_fail(p, SY_ESYNTAX, err, "line fed after a partial line");
    if (n < 2 || in[n - 2] != '\r' || in[n - 1] != '\n' || memchr(in, '\n', n - 1) != NULL) {
        size_t k = n < SMTP_REPLY_SNIP_MAX ? n : SMTP_REPLY_SNIP_MAX;

        memcpy(p->line, in, k);
        p->linelen = k;
        return smtp_reply_fail(p, SY_ESYNTAX, err, "reply line without CRLF");
    }
    return smtp_reply_feed(p, in, n, &used, err);
}

int smtp_reply_parser_eof(struct smtp_reply_parser *p, struct sy_err *err)
{
    switch (p->state) {
    case SMTP_RP_ERROR:
        return smtp_reply_sticky(p, err);
    case SMTP_RP_START:
    case SMTP_RP_DONE:
        return SY_OK;
    default:
        break;
    }
    if (p->state == SMTP_RP_LINE && p->linelen == 0)
        return smtp_reply_fail(p, SY_ESYNTAX, err, "multi-line reply without its final line");
    return smtp_reply_fail(p, SY_ESYNTAX, err, "reply line without CRLF");
}
