/* dotstuff.h - the DATA encoder: message bytes in, wire bytes out; pure
 *
 * A streaming encoder for what follows "354": the message as stored in
 * the spool (CRLF line endings, but treated as untrusted) becomes the
 * SMTP DATA stream:
 *   - output line endings are always CRLF: a bare CR or a bare LF in the
 *     input each become CRLF ("\r\r\n" is two line endings), so the wire
 *     never carries a bare CR or LF (RFC 5321 §2.3.8, §4.1.1.4; SMTP
 *     smuggling, CVE-2023-51764);
 *   - a line that starts with "." gets one more "." (RFC 5321 §4.5.2).
 *     Lines are those of the output, so "\n.\n" is stuffed too and no
 *     line before the terminator can be ".";
 *   - smtp_dotstuff_finish() appends the terminator: ".\r\n" when the
 *     output ends with CRLF (or is empty), else "\r\n.\r\n".
 * The whole memory is struct smtp_dotstuff: feeding the message whole,
 * byte by byte or split anywhere gives the same output
 * (tests/unit/test_smtp_dotstuff.c, tests/fuzz/fuzz_dotstuff.c). Lines
 * are not broken: line_max tells the caller how long the longest was
 * (RFC 5321 §4.5.3.1.6 allows 1000 octets with the CRLF).
 *
 * Thread safety: an encoder belongs to one thread; no shared state.
 */
#ifndef SY_SMTP_DOTSTUFF_H
#define SY_SMTP_DOTSTUFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/util/buf.h"

/* One input byte yields at most CR LF "." "." (a bare CR, then a dot
 * starting the next line). */
#define SMTP_DOTSTUFF_EMIT_MAX ((size_t) 4)
/* The longest terminator: CR LF "." CR LF. */
#define SMTP_DOTSTUFF_FINISH_MAX ((size_t) 5)

struct smtp_dotstuff {      /* declared for embedding; fields private to dotstuff.c */
    int state;
    bool finished;          /* the terminator was appended */
    bool eightbit;          /* an input byte >= 0x80 was seen */
    bool bare_eol;          /* a bare CR or LF was turned into CRLF */
    uint64_t out_bytes;     /* bytes appended to out so far, terminator included */
    uint64_t line_len;      /* bytes of the current output line */
    uint64_t line_max;      /* longest output line without its CRLF, stuffing included */
};

void smtp_dotstuff_init(struct smtp_dotstuff *d);   /* cannot fail */

/* Encodes in[0..n) (borrowed for the call), appending to out (the caller
 * drains it, e.g. to the socket, between calls). Returns the number of
 * input bytes consumed: less than n only when out has no room for what
 * the next byte yields; feed the rest again after draining out. An
 * out->max of SMTP_DOTSTUFF_EMIT_MAX or more always lets a drained buffer
 * make progress. After smtp_dotstuff_finish() nothing is consumed (0). */
size_t smtp_dotstuff_feed(struct smtp_dotstuff *d, const char *in, size_t n, struct buf *out);

/* Appends the end of the data (see the file comment; a CR held back from
 * the last feed becomes CRLF first). SY_OK, or SY_ETOOBIG when out has
 * fewer than the bytes needed (at most SMTP_DOTSTUFF_FINISH_MAX) free: d
 * and out are then unchanged. A second call appends nothing and returns
 * SY_OK. */
int smtp_dotstuff_finish(struct smtp_dotstuff *d, struct buf *out);

static inline bool smtp_dotstuff_finished(const struct smtp_dotstuff *d) { return d->finished; }
static inline bool smtp_dotstuff_eightbit(const struct smtp_dotstuff *d) { return d->eightbit; }
static inline bool smtp_dotstuff_bare_eol(const struct smtp_dotstuff *d) { return d->bare_eol; }
static inline uint64_t smtp_dotstuff_out_bytes(const struct smtp_dotstuff *d) { return d->out_bytes; }
/* Longest output line (excluding CRLF) so far; the line in progress counts. */
static inline uint64_t smtp_dotstuff_line_max(const struct smtp_dotstuff *d)
{
    return d->line_len > d->line_max ? d->line_len : d->line_max;
}

#endif
