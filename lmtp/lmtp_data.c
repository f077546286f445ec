/* lmtp_data.c - the DATA decoder: dot-unstuffing and the end of data
 *
 * A byte-driven state machine whose whole memory is struct lmtp_data, so
 * feeding a message in one chunk, one byte at a time or split anywhere
 * gives the same output (tests/unit/test_lmtp_data.c and
 * tests/fuzz/fuzz_lmtp_data.c check this).
 *
 * Only <CRLF>.<CRLF> ends the data (RFC 5321 §4.1.1.4; SMTP smuggling,
 * CVE-2023-51764). The message's first line starts a line: "354" came
 * after a CRLF. A CR is held back until the next byte shows whether it
 * begins a CRLF; nothing else is ever held back.
 *
 * Bare CR and bare LF:
 *  - reject policy: the byte passes through unchanged and bare_eol is
 *    set; the caller refuses the message after the end of data. A bare
 *    line ending does not start a line (no dot-unstuffing after it).
 *  - normalize policy: the bare byte becomes CRLF, and what follows is a
 *    "soft" beginning of line: a leading dot is removed as after any line
 *    ending (what Postfix does for lines ending in bare LF, and what a
 *    client using LF line endings means by dot-stuffing), but a soft line
 *    can never be the "." line that ends the data. So "\n.\n", "\r.\r",
 *    "\r\n.\n" and "\n.\r\n" are all message text under both policies.
 *
 * Thread safety: a decoder belongs to one thread; no shared state.
 */
#include "lmtp/lmtp_data.h"

#include <string.h>

enum lmtp_data_state {
    LMTP_DS_BOL = 0,    /* after CRLF (or at the start): "." may begin the end */
    LMTP_DS_SOFT_BOL,   /* after a normalised bare CR/LF: "." is unstuffed only */
    LMTP_DS_LINE,       /* inside a line */
    LMTP_DS_CR,         /* a CR inside a line, not yet emitted */
    LMTP_DS_DOT,        /* CRLF "." seen; the dot is dropped */
    LMTP_DS_DOT_CR,     /* CRLF "." CR seen; one LF more ends the data */
    LMTP_DS_DONE
};

/* One input byte never produces more than CR LF plus itself. */
#define LMTP_DATA_EMIT_MAX ((size_t) 3)

void lmtp_data_init(struct lmtp_data *d, int policy)
{
    memset(d, 0, sizeof(*d));
    d->state = LMTP_DS_BOL;
    d->policy = policy == LMTP_DATA_NORMALIZE_BARE ? LMTP_DATA_NORMALIZE_BARE
                                                   : LMTP_DATA_REJECT_BARE;
}

/* lmtp_data_inline - a byte other than LF, in a line (st is LINE or SOFT_BOL) */
static int lmtp_data_inline(int st, unsigned char c, unsigned char *o, size_t *no)
{
    if (c == '\r')
        return LMTP_DS_CR;
    if (st == LMTP_DS_SOFT_BOL && c == '.')
        return LMTP_DS_LINE;
    o[(*no)++] = c;
    return LMTP_DS_LINE;
}

/* lmtp_data_step - the successor state of st on byte c; emitted bytes go to o */
static int lmtp_data_step(int policy, int st, unsigned char c, unsigned char *o, size_t *no,
                          bool *bare)
{
    switch (st) {
    case LMTP_DS_BOL:
        if (c == '.')
            return LMTP_DS_DOT;
        break;
    case LMTP_DS_SOFT_BOL:
        if (c == '.')
            return LMTP_DS_LINE;
        break;
    case LMTP_DS_DOT:
        /* RFC 5321 §4.5.2: the leading dot of a line is removed. */
        if (c == '\r')
            return LMTP_DS_DOT_CR;
        break;
    case LMTP_DS_CR:
    case LMTP_DS_DOT_CR:
        if (c == '\n') {
            if (st == LMTP_DS_DOT_CR)
                return LMTP_DS_DONE;
            o[(*no)++] = '\r';
            o[(*no)++] = '\n';
            return LMTP_DS_BOL;
        }
        /* The held-back CR was bare. */
        if (policy == LMTP_DATA_NORMALIZE_BARE) {
            o[(*no)++] = '\r';
            o[(*no)++] = '\n';
            return lmtp_data_inline(LMTP_DS_SOFT_BOL, c, o, no);
        }
        *bare = true;
        o[(*no)++] = '\r';
        return lmtp_data_inline(LMTP_DS_LINE, c, o, no);
    default:
        break;
    }
    /* Any state that reaches here is inside a line as of c. */
    if (c == '\n') {
        if (policy == LMTP_DATA_NORMALIZE_BARE) {
            o[(*no)++] = '\r';
            o[(*no)++] = '\n';
            return LMTP_DS_SOFT_BOL;
        }
        *bare = true;
        o[(*no)++] = '\n';
        return LMTP_DS_LINE;
    }
    return lmtp_data_inline(LMTP_DS_LINE, c, o, no);
}


/* lmtp_data_emit - append n decoded bytes (room already checked) */
static void lmtp_data_emit(struct lmtp_data *d, struct buf *out, const unsigned char *p, size_t n)
{
    if (n == 0)
        return;
    (void) buf_append(out, p, n);
    d->out_bytes += n;
    if (!d->eightbit)
        for (size_t k = 0; k < n; k++)
            if (p[k] >= 0x80) {
                d->eightbit = true;
                break;
            }
}

size_t lmtp_data_feed(struct lmtp_data *d, const char *in, size_t n, struct buf *out)
{
    const unsigned char *p = (const unsigned char *) in;
    size_t i = 0;

    while (i < n && d->state != LMTP_DS_DONE) {
        unsigned char o[LMTP_DATA_EMIT_MAX];
        size_t no = 0;
        bool bare = false;
        int st;

        /* Fast path: a run of ordinary bytes inside a line is copied as is
         * (no per-line length limit: long lines pass byte-exact). */
        if (d->state == LMTP_DS_LINE && p[i] != '\r' && p[i] != '\n') {
            size_t room = buf_room(out), k = i;

            while (k < n && k - i < room && p[k] != '\r' && p[k] != '\n')
                k++;
            if (k == i)
                break;
            lmtp_data_emit(d, out, p + i, k - i);
            i = k;
            continue;
        }
        st = lmtp_data_step(d->policy, d->state, p[i], o, &no, &bare);
        /* Out is full: stop before this byte; the state is untouched, so
         * the caller drains out and feeds the same byte again. */
        if (no > buf_room(out))
            break;
        lmtp_data_emit(d, out, o, no);
        if (bare)
            d->bare_eol = true;
        d->state = st;
        i++;
    }
    if (d->state == LMTP_DS_DONE)
        d->done = true;
    return i;
}
