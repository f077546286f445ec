/* buf.c - bounded binary-safe buffer */
#include "gateway/util/buf.h"

#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "gateway/util/err.h"
#include "gateway/util/xalloc.h"

void buf_init(struct buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

/* buf_reserve - make room for n more bytes plus the NUL, within max */
static int buf_reserve(struct buf *b, size_t n)
{
    size_t want;

    if (n > b->max - b->len)
        return SY_ETOOBIG;
    want = b->len + n + 1;
    if (want <= b->cap)
        return SY_OK;
    b->data = xreallocarray_grow(b->data, &b->cap, want < 64 ? 64 : want, 1);
    return SY_OK;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    if (buf_reserve(b, n) != SY_OK)
        return SY_ETOOBIG;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return SY_OK;
}

int buf_append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_append_byte(struct buf *b, unsigned char c)
{
    return buf_append(b, &c, 1);
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    size_t want;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return SY_ESYNTAX;
    want = (size_t) n;
    if (buf_reserve(b, want) != SY_OK)
        return SY_ETOOBIG;
    va_start(ap, fmt);
    (void) vsnprintf(b->data + b->len, want + 1, fmt, ap);
    va_end(ap);
    b->len += want;
    return SY_OK;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

const char *buf_str(const struct buf *b)
{
    return b->data == NULL ? "" : b->data;
}

size_t buf_len(const struct buf *b)
{
    return b->len;
}

size_t buf_room(const struct buf *b)
{
    return b->max - b->len;
}

char *buf_take(struct buf *b, size_t *lenp)
{
    char *p = b->data;

    if (lenp != NULL)
        *lenp = b->len;
    if (p == NULL)
        p = xmemdup0("", 0);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}
