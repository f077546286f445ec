/* match.c - domain, address and name primitives shared by route and hold rules */
#include "rules/match.h"

#include <string.h>

#include "gateway/util/text.h"

/* rules_lower_byte - ASCII tolower, bytes >= 0x80 unchanged (no locale) */
static unsigned char rules_lower_byte(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char) (c + ('a' - 'A')) : c;
}

void rules_lower(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (char) rules_lower_byte((unsigned char) src[i]);
}

bool rules_ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rules_lower_byte((unsigned char) a[i]) != rules_lower_byte((unsigned char) b[i]))
            return false;
    return true;
}

/* rules_label_byte_ok - letters, digits, '-', '_' and UTF-8 bytes */
static bool rules_label_byte_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c >= 0x80;
}

int rules_domain_norm(const char *s, size_t n, unsigned flags, char *out,
                      size_t outsize, struct sy_err *err)
{
    size_t lead = 0, start, o = 0;

    if (outsize > 0)
        out[0] = '\0';
    if (n > 0 && s[0] == '.' && (flags & RULES_DOMAIN_SUFFIX) != 0)
        lead = 1;
    s += lead;
    n -= lead;
    if (n > 0 && s[n - 1] == '.')
        n--;
    if (n == 0)
        return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX, "the domain is empty");
    if (n > RULES_DOMAIN_MAX)
        return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX, "the domain is longer than %zu bytes",
                          RULES_DOMAIN_MAX);
    if (!text_is_utf8(s, n))
        return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX, "the domain is not valid UTF-8");
    start = 0;
    for (size_t i = 0; i <= n; i++) {
        size_t len;

        if (i < n && s[i] != '.') {
            unsigned char c = (unsigned char) s[i];

            if (rules_label_byte_ok(c))
                continue;
            if (c > 0x20 && c < 0x7f)
                return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX,
                                  "the domain holds '%c' (labels are letters, digits, '-' and '_')", c);
            return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX,
                              "the domain holds the byte 0x%02x (labels are letters, digits, '-' and '_')", c);
        }
        len = i - start;
        if (len == 0 && i == 0 && (flags & RULES_DOMAIN_SUFFIX) == 0)
            return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX, "a leading dot is not allowed here");
        if (len == 0)
            return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX, "the domain has an empty label");
        if (len > RULES_LABEL_MAX)
            return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX, "a label is longer than %zu bytes",
                              RULES_LABEL_MAX);
        if (s[start] == '-' || s[i - 1] == '-')
            return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX, "a label starts or ends with '-'");
        start = i + 1;
    }
    if (lead + n + 1 > outsize)
        return SY_ETOOBIG;
    if (lead)
        out[o++] = '.';
    rules_lower(out + o, s, n);
    out[o + n] = '\0';
    return SY_OK;
}

int rules_addr_norm(const char *s, size_t n, char *out, size_t outsize, struct sy_err *err)
{
    char dom[RULES_DOMAIN_MAX + 1];
    const char *at = NULL;
    size_t local, dlen;
    int rc;

    if (outsize > 0)
        out[0] = '\0';
    for (size_t i = n; i > 0; i--)
        if (s[i - 1] == '@') {
            at = s + i - 1;
            break;
        }
    if (at == NULL)
        return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX, "the address has no '@'");
    local = (size_t) (at - s);
    if (local == 0)
        return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX, "the local part is empty");
    if (local > RULES_LOCAL_MAX)
        return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX, "the local part is longer than %zu bytes",
                          RULES_LOCAL_MAX);
    if (!text_is_clean(s, local) || !text_is_utf8(s, local))
        return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX,
                          "the local part holds control characters or is not valid UTF-8");
    rc = rules_domain_norm(at + 1, n - local - 1, 0, dom, sizeof(dom), err);
    if (rc != SY_OK)
        return rc;
    dlen = strlen(dom);
    if (local + 1 + dlen > RULES_ADDR_MAX)
        return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX, "the address is longer than %zu bytes",
                          RULES_ADDR_MAX);
    if (local + 1 + dlen + 1 > outsize)
        return SY_ETOOBIG;
    memcpy(out, s, local);
    out[local] = '@';
    memcpy(out + local + 1, dom, dlen + 1);
    return SY_OK;
}

const char *rules_addr_domain(const char *addr, size_t *lenp)
{
    const char *at;
    size_t n;

    *lenp = 0;
    if (addr == NULL)
        return "";
    at = strrchr(addr, '@');
    if (at == NULL)
        return "";
    n = strlen(at + 1);
    if (n > 0 && at[n] == '.')
        n--;
    *lenp = n;
    return at + 1;
}

bool rules_domain_match(const char *p, const char *d, size_t n)
{
    size_t pn = strlen(p);

    if (n == 0 || pn == 0)
        return false;
    if (p[0] != '.')
        return pn == n && rules_ieq(p, d, n);
    /* ".x": x itself, or anything ending in ".x". */
    if (pn - 1 == n && rules_ieq(p + 1, d, n))
        return true;
    return n > pn && rules_ieq(p, d + (n - pn), pn);
}

bool rules_addr_match(const char *p, const char *a)
{
    const char *pat = strrchr(p, '@'), *at;
    size_t plocal, alocal, dn;
    const char *d;

    if (a == NULL || pat == NULL)
        return false;
    at = strrchr(a, '@');
    if (at == NULL)
        return false;
    plocal = (size_t) (pat - p);
    alocal = (size_t) (at - a);
    if (plocal != alocal || !rules_ieq(p, a, plocal))
        return false;
    d = rules_addr_domain(a, &dn);
    return dn > 0 && strlen(pat + 1) == dn && rules_ieq(pat + 1, d, dn);
}

bool rules_name_ok(const char *s)
{
    size_t n;

    if (s == NULL)
        return false;
    n = strlen(s);
    if (n == 0 || n > RULES_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}
