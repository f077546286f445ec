/* dotstuff.c - the DATA encoder: canonical CRLF and dot-stuffing
 *
 * A byte-driven state machine. A CR is held back until the next byte
 * shows whether it begins a CRLF; nothing else is. "Beginning of line"
 * is a property of the output: every CRLF written (whether it came from
 * a CRLF, a bare CR or a bare LF) starts a line, and a "." there is
 * doubled. That is what keeps a smuggled "\n.\r\n" or "\r.\r" in the
 * spool from ending the data early on the wire.
 *
 * Thread safety: no shared state.
 */
#include "gateway/smtp/dotstuff.h"

#include <string.h>

#include "gateway/util/err.h"

enum smtp_dotstuff_state {
    SMTP_DS_BOL = 0,    /* at the start of an output line */
    SMTP_DS_LINE,       /* inside an output line */
    SMTP_DS_CR          /* a CR held back, not yet written */
};

void smtp_dotstuff_init(struct smtp_dotstuff *d)
{
    memset(d, 0, sizeof(*d));
    d->state = SMTP_DS_BOL;
}

/* smtp_dotstuff_step - the successor of state st on input byte c; the
 * bytes to write go to o (*no of them, at most SMTP_DOTSTUFF_EMIT_MAX) */
static int smtp_dotstuff_step(int st, unsigned char c, char *o, size_t *no, bool *bare)
{
    if (st == SMTP_DS_CR) {
        /* The held CR ends a line either way: as CRLF, or as a bare CR
         * turned into CRLF. */
        o[(*no)++] = '\r';
        o[(*no)++] = '\n';
        if (c == '\n')
            return SMTP_DS_BOL;
        *bare = true;
        st = SMTP_DS_BOL;
    }
    if (c == '\r')
        return SMTP_DS_CR;
    if (c == '\n') {
        *bare = true;
        o[(*no)++] = '\r';
        o[(*no)++] = '\n';
        return SMTP_DS_BOL;
    }
    /* RFC 5321 §4.5.2: a line starting with "." gets another one. */
    if (st == SMTP_DS_BOL && c == '.')
        o[(*no)++] = '.';
    o[(*no)++] = (char) c;
    return SMTP_DS_LINE;
}

/* smtp_dotstuff_emit - append o[0..n) (room checked) and keep the counts */
static void smtp_dotstuff_emit(struct smtp_dotstuff *d, struct buf *out, const char *o, size_t n)
{
    if (n == 0)
        return;
    (void) buf_append(out, o, n);
    d->out_bytes += n;
    for (size_t k = 0; k < n; k++) {
        if (o[k] == '\n') {
            /* Only ever after a CR: the CR was counted in line_len. */
            if (d->line_len - 1 > d->line_max)
                d->line_max = d->line_len - 1;
            d->line_len = 0;
        } else {
            d->line_len++;
        }
    }
}

size_t smtp_dotstuff_feed(struct smtp_dotstuff *d, const char *in, size_t n, struct buf *out)
{
    const unsigned char *p = (const unsigned char *) in;
    size_t i = 0;

    if (d->finished)
        return 0;
    while (i < n) {
        char o[SMTP_DOTSTUFF_EMIT_MAX];
        size_t no = 0;
        bool bare = false;
        int st;

        /* Fast path: a run of ordinary bytes inside a line goes out as is. */
        if (d->state == SMTP_DS_LINE && p[i] != '\r' && p[i] != '\n') {
            size_t room = buf_room(out), k = i;

            while (k < n && k - i < room && p[k] != '\r' && p[k] != '\n') {
                if (p[k] >= 0x80)
                    d->eightbit = true;
                k++;
            }
            if (k == i)
                break;
            (void) buf_append(out, in + i, k - i);
            d->out_bytes += k - i;
            d->line_len += k - i;
            i = k;
            continue;
        }
        st = smtp_dotstuff_step(d->state, p[i], o, &no, &bare);
        /* out is full: stop before this byte with the state untouched, so
         * the caller drains out and feeds the same byte again. */
        if (no > buf_room(out))
            break;
        smtp_dotstuff_emit(d, out, o, no);
        if (bare)
            d->bare_eol = true;
        if (p[i] >= 0x80)
            d->eightbit = true;
        d->state = st;
        i++;
    }
    return i;
}

int smtp_dotstuff_finish(struct smtp_dotstuff *d, struct buf *out)
{
    static const char term[] = "\r\n.\r\n";
    size_t skip;

    if (d->finished)
        return SY_OK;
    /* At the start of a line only ".\r\n" is missing; otherwise the last
     * line (or the held CR, which was bare) is ended first. */
    skip = d->state == SMTP_DS_BOL ? 2 : 0;
    if (SMTP_DOTSTUFF_FINISH_MAX - skip > buf_room(out))
        return SY_ETOOBIG;
    if (d->state == SMTP_DS_CR)
        d->bare_eol = true;
    /* The last line, if unterminated, counts; the "." line does not. */
    if (d->line_len > d->line_max)
        d->line_max = d->line_len;
    d->line_len = 0;
    (void) buf_append(out, term + skip, SMTP_DOTSTUFF_FINISH_MAX - skip);
    d->out_bytes += SMTP_DOTSTUFF_FINISH_MAX - skip;
    d->finished = true;
    return SY_OK;
}
