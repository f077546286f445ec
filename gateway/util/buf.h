/* buf.h - the one growable byte buffer: binary-safe, bounded, NUL-terminated
 *
 * Postfix's VSTRING behaviour with curl's mandatory cap: every buffer names
 * its limit at buf_init(); an append that would pass it fails with
 * SY_ETOOBIG and leaves the buffer unchanged (never a partial append), so
 * protocol code can answer "line too long" and carry on.
 *
 * Thread safety: a buffer belongs to one thread at a time.
 */
#ifndef SY_UTIL_BUF_H
#define SY_UTIL_BUF_H

#include <stddef.h>

struct buf {
    char *data;         /* NULL until the first append */
    size_t len;         /* bytes in use, not counting the NUL */
    size_t cap;         /* bytes allocated, including the NUL */
    size_t max;         /* hard limit on len */
};

void buf_init(struct buf *b, size_t max);   /* allocates nothing; cannot fail */
void buf_free(struct buf *b);               /* releases data; b may be reused after buf_init */
void buf_reset(struct buf *b);              /* len = 0, keeps the allocation */

/* SY_OK, or SY_ETOOBIG when the result would pass the limit (b unchanged). */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_str(struct buf *b, const char *s);
int buf_append_byte(struct buf *b, unsigned char c);
int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Drops the first n bytes (n > len drops everything). */
void buf_consume(struct buf *b, size_t n);

const char *buf_str(const struct buf *b);   /* "" when empty; valid until b changes */
size_t buf_len(const struct buf *b);
size_t buf_room(const struct buf *b);       /* bytes that may still be appended */
/* Returns the data, now owned by the caller (free() it; never NULL), and
 * leaves b empty. *lenp gets the length when lenp is not NULL. */
char *buf_take(struct buf *b, size_t *lenp);

#endif
