/* digest.h - SHA-256 of a message and its envelope, for duplicate detection
 *
 * An MTA that lost our 250 (the connection died between our commit and its
 * read, RFC 1047) sends the same bytes again. The digest covers the sender,
 * every recipient and the message bytes, so only such a retry matches: a
 * new submission of "the same" mail differs at least in the MTA's own
 * Received: header (queue id, time).
 *
 * Thread safety: a struct digest belongs to one thread.
 */
#ifndef SY_DIGEST_H
#define SY_DIGEST_H

#include <stddef.h>

#include "gateway/envelope.h"

/* 64 hex digits and a NUL. */
#define DIGEST_HEX_SIZE ((size_t) 65)

struct digest;      /* opaque */

/* Returns a new digest owned by the caller, already fed env's sender and
 * recipients (env borrowed). End it with digest_final(). */
struct digest *digest_begin(const struct envelope *env);
void digest_update(struct digest *d, const void *p, size_t n);
/* Writes the hex digest into hex and frees d. */
void digest_final(struct digest *d, char hex[DIGEST_HEX_SIZE]);
void digest_free(struct digest *d);     /* without a result; NULL is a no-op */

#endif
