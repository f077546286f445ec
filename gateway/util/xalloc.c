/* xalloc.c - allocation that aborts on failure */
#include "gateway/util/xalloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* xalloc_die - out of memory: nothing sensible is left to do */
static void xalloc_die(size_t n)
{
    static const char msg[] = "switchyard: fatal: out of memory\n";

    (void) n;
    (void) fwrite(msg, 1, sizeof(msg) - 1, stderr);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n == 0 ? 1 : n);

    if (p == NULL)
        xalloc_die(n);
    return p;
}

void *xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb == 0 ? 1 : nmemb, size == 0 ? 1 : size);

    if (p == NULL)
        xalloc_die(size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n == 0 ? 1 : n);

    if (q == NULL)
        xalloc_die(n);
    return q;
}

/* xreallocarray_grow - grow an array geometrically to hold want elements */
void *xreallocarray_grow(void *p, size_t *capp, size_t want, size_t size)
{
    size_t cap = *capp;

    if (want <= cap)
        return p;
    if (cap < 4)
        cap = 4;
    while (cap < want) {
        if (cap > SIZE_MAX / 2)
            xalloc_die(SIZE_MAX);
        cap *= 2;
    }
    if (size != 0 && cap > SIZE_MAX / size)
        xalloc_die(SIZE_MAX);
    p = xrealloc(p, cap * size);
    *capp = cap;
    return p;
}

char *xstrdup(const char *s)
{
    return xmemdup0(s, strlen(s));
}

char *xmemdup0(const void *s, size_t n)
{
    char *p;

    if (n == SIZE_MAX)
        xalloc_die(n);
    p = xmalloc(n + 1);
    if (n > 0)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
