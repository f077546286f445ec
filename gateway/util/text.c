/* text.c - bounded copies and checked number parsing */
#include "gateway/util/text.h"

#include <ctype.h>
#include <string.h>

#include "gateway/util/err.h"

int text_copy(char *dst, size_t dstsize, const char *src)
{
    size_t n = strlen(src);

    if (dstsize == 0)
        return SY_ETOOBIG;
    if (n >= dstsize) {
        dst[0] = '\0';
        return SY_ETOOBIG;
    }
    memcpy(dst, src, n + 1);
    return SY_OK;
}

int text_parse_u64(const char *s, size_t n, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 20)
        return n == 0 ? SY_ESYNTAX : SY_ETOOBIG;
    for (size_t i = 0; i < n; i++) {
        unsigned d;

        if (s[i] < '0' || s[i] > '9')
            return SY_ESYNTAX;
        d = (unsigned) (s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return SY_ETOOBIG;
        v = v * 10 + d;
    }
    if (v < min || v > max)
        return SY_ETOOBIG;
    *out = v;
    return SY_OK;
}

/* text_parse_scaled - digits followed by an optional unit from a table */
static int text_parse_scaled(const char *s, const char *const *units, const uint64_t *mult,
                             size_t nunits, uint64_t min, uint64_t max, uint64_t *out)
{
    size_t n = strlen(s), d = 0;
    uint64_t v, m = mult[0];
    int rc;

    while (d < n && s[d] >= '0' && s[d] <= '9')
        d++;
    if (d < n) {
        size_t i;

        for (i = 0; i < nunits; i++)
            if (strcmp(s + d, units[i]) == 0)
                break;
        if (i == nunits)
            return SY_ESYNTAX;
        m = mult[i];
    }
    rc = text_parse_u64(s, d, 0, UINT64_MAX, &v);
    if (rc != SY_OK)
        return rc;
    if (m != 0 && v > UINT64_MAX / m)
        return SY_ETOOBIG;
    v *= m;
    if (v < min || v > max)
        return SY_ETOOBIG;
    *out = v;
    return SY_OK;
}

int text_parse_duration_ms(const char *s, uint64_t min_ms, uint64_t max_ms, uint64_t *out)
{
    /* A bare number is seconds; the first entry is that default. */
    static const char *const units[] = { "s", "ms", "m", "h", "d", "w" };
    static const uint64_t mult[] = { 1000, 1, 60000, 3600000, 86400000, 604800000 };

    return text_parse_scaled(s, units, mult, 6, min_ms, max_ms, out);
}

int text_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    static const char *const units[] = { "", "k", "m", "g", "K", "M", "G" };
    static const uint64_t mult[] = { 1, 1024, 1048576, 1073741824, 1024, 1048576, 1073741824 };

    return text_parse_scaled(s, units, mult, 7, min, max, out);
}

int text_ieq(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);

    if (n != l)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char) s[i]) != tolower((unsigned char) lit[i]))
            return 0;
    return 1;
}

int text_is_clean(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char) s[i] < 0x20 || (unsigned char) s[i] == 0x7f)
            return 0;
    return 1;
}

int text_is_utf8(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *) s;
    size_t i = 0;

    while (i < n) {
        unsigned c = p[i];
        size_t len;
        uint32_t cp;

        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            len = 2, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4, cp = c & 0x07;
        } else {
            return 0;
        }
        if (len > n - i)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}
