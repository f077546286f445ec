/* xalloc.h - allocation that cannot fail: it ends the process instead
 *
 * Out of memory aborts (as in Postfix, OpenSMTPD and Redis). switchyard
 * never answers 250 before a message is fsync'd and in Redis, so dying
 * loses no mail: the MTA sees the connection drop and defers.
 *
 * Thread safety: all functions are thread-safe.
 */
#ifndef SY_UTIL_XALLOC_H
#define SY_UTIL_XALLOC_H

#include <stddef.h>

/* Each returns new memory owned by the caller; free with free(). */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
/* Grows an array of nmemb elements of size to at least want elements,
 * doubling; *capp is updated. Overflow aborts. */
void *xreallocarray_grow(void *p, size_t *capp, size_t want, size_t size);
char *xstrdup(const char *s);
/* Copies n bytes of s and adds a NUL (s may hold NULs: binary-safe copy). */
char *xmemdup0(const void *s, size_t n);

#endif
