/* lmtp_data.h - the DATA decoder: wire bytes in, message bytes out; pure
 *
 * A streaming state machine over the bytes after "354": removes
 * dot-stuffing (RFC 5321 §4.5.2) and finds the end of data. Only
 * <CRLF>.<CRLF> ends DATA (RFC 5321 §4.1.1.4; SMTP smuggling,
 * CVE-2023-51764): <LF>.<LF>, <CR>.<CR> and the like are data. A bare CR or
 * bare LF is either recorded as an error (policy reject: the caller
 * answers 550 5.6.0 for every recipient after the end of data) or
 * normalised to CRLF (policy normalize). The output is the message byte
 * for byte, every line ending CRLF; the terminating ".\r\n" is not part of
 * it. Bytes after the terminator belong to the next pipelined command and
 * are left unconsumed.
 *
 * Thread safety: a decoder belongs to one thread.
 */
#ifndef SY_LMTP_DATA_H
#define SY_LMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/util/buf.h"

enum lmtp_data_policy { LMTP_DATA_REJECT_BARE = 0, LMTP_DATA_NORMALIZE_BARE };

struct lmtp_data {          /* declared for embedding; fields private to lmtp_data.c */
    int state;
    int policy;
    bool done;              /* the terminator was seen */
    bool bare_eol;          /* a bare CR or LF was seen (reject policy) */
    bool eightbit;          /* a byte >= 0x80 was seen */
    uint64_t out_bytes;     /* decoded bytes produced so far */
};

void lmtp_data_init(struct lmtp_data *d, int policy);

/* Feeds in[0..n). Decoded bytes are appended to out (the caller drains
 * it, e.g. into the spool, between calls; when out is full the decoder
 * stops early). Returns the number of input bytes consumed: less than n
 * when the end of data was reached (d->done) or out hit its limit. One
 * input byte yields at most 3 output bytes, so an out->max of 3 or more
 * always lets a drained buffer make progress. */
size_t lmtp_data_feed(struct lmtp_data *d, const char *in, size_t n, struct buf *out);

static inline bool lmtp_data_done(const struct lmtp_data *d) { return d->done; }
static inline bool lmtp_data_bare_eol(const struct lmtp_data *d) { return d->bare_eol; }
static inline bool lmtp_data_eightbit(const struct lmtp_data *d) { return d->eightbit; }

#endif
