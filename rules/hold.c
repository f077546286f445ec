/* hold.c - hold rules: validation, matching, the stored text encoding */
#include "rules/hold.h"

#include <stdio.h>
#include <string.h>

#include "gateway/util/log.h"
#include "gateway/util/text.h"

#define HOLD_NULL_SENDER "<>"
#define HOLD_VERSION "h1"
#define HOLD_CRC_TAG ";c="
#define HOLD_CRC_LEN ((size_t) 11)      /* ";c=" and 8 hex digits */

static const char hold_hex[] = "0123456789ABCDEF";

/* hold_crc32c - CRC-32C (Castagnoli, reflected 0x82F63B78), bitwise: the
 * texts are short and this keeps rules/ free of tables and libraries */
static uint32_t hold_crc32c(const char *s, size_t n)
{
    uint32_t c = 0xffffffffu;

    for (size_t i = 0; i < n; i++) {
        c ^= (unsigned char) s[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

/* hold_pattern_norm - one sender or recipient pattern into out */
static int hold_pattern_norm(const char *what, const char *s, bool null_ok, char *out,
                             size_t outsize, struct sy_err *err)
{
    struct sy_err e;
    size_t n;
    int rc;

    out[0] = '\0';
    if (s == NULL || s[0] == '\0')
        return SY_OK;
    n = strlen(s);
    if (strcmp(s, HOLD_NULL_SENDER) == 0) {
        if (!null_ok)
            return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX,
                              "%s: \"<>\" (the null sender) is only a sender", what);
        memcpy(out, HOLD_NULL_SENDER, sizeof(HOLD_NULL_SENDER));
        return SY_OK;
    }
    if (memchr(s, '@', n) != NULL)
        rc = rules_addr_norm(s, n, out, outsize, &e);
    else
        rc = rules_domain_norm(s, n, RULES_DOMAIN_SUFFIX, out, outsize, &e);
    if (rc == SY_ETOOBIG)
        (void) sy_err_set(&e, SY_ESYNTAX, RULES_ENH_SYNTAX, "longer than %zu bytes", outsize - 1);
    if (rc != SY_OK) {
        char echo[LOG_SAFE_MAX];

        return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX, "%s: \"%s\": %s", what,
                          log_safe(echo, 80, s), e.text);
    }
    return SY_OK;
}

void hold_rule_init(struct hold_rule *r)
{
    memset(r, 0, sizeof(*r));
}

int hold_rule_set(struct hold_rule *r, const char *sender, const char *recipient,
                  const char *listener, int64_t until, struct sy_err *err)
{
    struct hold_rule t;
    int rc;

    hold_rule_init(&t);
    rc = hold_pattern_norm("sender", sender, true, t.sender, sizeof(t.sender), err);
    if (rc != SY_OK)
        return rc;
    rc = hold_pattern_norm("recipient", recipient, false, t.recipient, sizeof(t.recipient), err);
    if (rc != SY_OK)
        return rc;
    if (listener != NULL && listener[0] != '\0') {
        if (!rules_name_ok(listener)) {
            char echo[LOG_SAFE_MAX];

            return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX,
                              "listener: \"%s\" is not a valid name ([A-Za-z0-9._-], 1 to %zu)",
                              log_safe(echo, 80, listener), RULES_NAME_MAX);
        }
        memcpy(t.listener, listener, strlen(listener) + 1);
    }
    if (until < 0 || until > HOLD_UNTIL_MAX)
        return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX,
                          "until: %lld is out of range (0 for none, or 1 to %lld)",
                          (long long) until, (long long) HOLD_UNTIL_MAX);
    t.until = until;
    *r = t;
    return SY_OK;
}

/* hold_pattern_match - one sender or recipient pattern against an address */
static bool hold_pattern_match(const char *p, const char *addr)
{
    const char *d;
    size_t n;

    if (p[0] == '\0')
        return true;
    if (strcmp(p, HOLD_NULL_SENDER) == 0)
        return addr == NULL || addr[0] == '\0';
    if (strchr(p, '@') != NULL)
        return rules_addr_match(p, addr);
    d = rules_addr_domain(addr, &n);
    return rules_domain_match(p, d, n);
}

bool hold_rule_expired(const struct hold_rule *r, int64_t now)
{
    return r->until != 0 && now >= r->until;
}

bool hold_rule_match(const struct hold_rule *r, const struct hold_facts *f, int64_t now)
{
    if (hold_rule_expired(r, now))
        return false;
    if (!hold_pattern_match(r->sender, f->sender))
        return false;
    if (!hold_pattern_match(r->recipient, f->recipient))
        return false;
    return r->listener[0] == '\0' || (f->listener != NULL && strcmp(r->listener, f->listener) == 0);
}

bool hold_rule_is_empty(const struct hold_rule *r)
{
    return r->sender[0] == '\0' && r->recipient[0] == '\0' && r->listener[0] == '\0';
}

/* hold_byte_plain - a byte written as itself: printable ASCII but '%' and ';' */
static bool hold_byte_plain(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '%' && c != ';';
}

/* hold_put - append n bytes at *o; false when they do not fit (NUL included) */
static bool hold_put(char *dst, size_t dstsize, size_t *o, const char *s, size_t n)
{
    if (n >= dstsize - *o)
        return false;
    memcpy(dst + *o, s, n);
    *o += n;
    return true;
}

/* hold_put_field - ";T=" and the value, escaped */
static bool hold_put_field(char *dst, size_t dstsize, size_t *o, char tag, const char *v)
{
    char head[3] = { ';', tag, '=' };

    if (v[0] == '\0')
        return true;
    if (!hold_put(dst, dstsize, o, head, 3))
        return false;
    for (const unsigned char *p = (const unsigned char *) v; *p != '\0'; p++) {
        char esc[3] = { '%', hold_hex[*p >> 4], hold_hex[*p & 15] };

        if (hold_byte_plain(*p) ? !hold_put(dst, dstsize, o, (const char *) p, 1) :
                                  !hold_put(dst, dstsize, o, esc, 3))
            return false;
    }
    return true;
}

int hold_rule_encode(const struct hold_rule *r, char *dst, size_t dstsize, size_t *lenp)
{
    char num[24];
    size_t o = 0;
    uint32_t crc;
    int w;

    if (lenp != NULL)
        *lenp = 0;
    if (dstsize == 0)
        return SY_ETOOBIG;
    dst[0] = '\0';
    if (!hold_put(dst, dstsize, &o, HOLD_VERSION, 2) ||
        !hold_put_field(dst, dstsize, &o, 's', r->sender) ||
        !hold_put_field(dst, dstsize, &o, 'r', r->recipient) ||
        !hold_put_field(dst, dstsize, &o, 'l', r->listener))
        goto toobig;
    if (r->until != 0) {
        (void) snprintf(num, sizeof(num), "%lld", (long long) r->until);
        if (!hold_put_field(dst, dstsize, &o, 'u', num))
            goto toobig;
    }
    crc = hold_crc32c(dst, o);
    w = snprintf(num, sizeof(num), HOLD_CRC_TAG "%08X", (unsigned) crc);
    if (w != (int) HOLD_CRC_LEN || !hold_put(dst, dstsize, &o, num, HOLD_CRC_LEN))
        goto toobig;
    dst[o] = '\0';
    if (lenp != NULL)
        *lenp = o;
    return SY_OK;
toobig:
    dst[0] = '\0';
    return SY_ETOOBIG;
}

/* hold_hexval - an upper-case hex digit's value, or -1 */
static int hold_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* hold_unescape - s[0..n) into out (outsize, NUL added); canonical escapes only */
static bool hold_unescape(const char *s, size_t n, char *out, size_t outsize)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];

        if (c == '%') {
            int hi, lo;

            if (n - i < 3)
                return false;
            hi = hold_hexval(s[i + 1]);
            lo = hold_hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            c = (unsigned char) (hi * 16 + lo);
            /* A byte that could be written plain must be: one encoding per rule. */
            if (hold_byte_plain(c) || c == 0)
                return false;
            i += 2;
        } else if (!hold_byte_plain(c)) {
            return false;
        }
        if (o + 1 >= outsize)
            return false;
        out[o++] = (char) c;
    }
    out[o] = '\0';
    return true;
}

int hold_rule_decode(const char *s, size_t n, struct hold_rule *r, struct sy_err *err)
{
    static const char tags[] = "srlu";
    char sender[HOLD_PATTERN_MAX + 1] = "", recipient[HOLD_PATTERN_MAX + 1] = "";
    char listener[RULES_NAME_MAX + 1] = "", until[24] = "", again[HOLD_ENCODED_MAX + 1];
    char *const vals[] = { sender, recipient, listener, until };
    const size_t sizes[] = { sizeof(sender), sizeof(recipient), sizeof(listener), sizeof(until) };
    struct hold_rule t;
    struct sy_err e;
    size_t body, p, next_tag = 0, alen;
    uint32_t crc = 0;
    uint64_t u = 0;

    if (n > HOLD_ENCODED_MAX)
        return sy_err_set(err, SY_ESYNTAX, HOLD_ENH_CORRUPT, "hold rule: longer than %zu bytes", HOLD_ENCODED_MAX);
    if (n < 2 || s[0] != 'h')
        return sy_err_set(err, SY_ESYNTAX, HOLD_ENH_CORRUPT, "hold rule: not a hold rule encoding");
    if (s[1] != '1')
        return sy_err_set(err, SY_ESYNTAX, HOLD_ENH_CORRUPT, "hold rule: unsupported version");
    if (n < 2 + HOLD_CRC_LEN || memcmp(s + n - HOLD_CRC_LEN, HOLD_CRC_TAG, 3) != 0)
        return sy_err_set(err, SY_ESYNTAX, HOLD_ENH_CORRUPT, "hold rule: no checksum (truncated?)");
    body = n - HOLD_CRC_LEN;
    for (size_t i = body + 3; i < n; i++) {
        int v = hold_hexval(s[i]);

        if (v < 0)
            return sy_err_set(err, SY_ESYNTAX, HOLD_ENH_CORRUPT, "hold rule: malformed checksum");
        crc = crc << 4 | (uint32_t) v;
    }
    if (crc != hold_crc32c(s, body))
        return sy_err_set(err, SY_ESYNTAX, HOLD_ENH_CORRUPT, "hold rule: checksum mismatch");

    /* The fields: ";T=value", tags in the order of tags[], each once. */
    for (p = 2; p < body;) {
        const char *tag;
        size_t end, k;

        if (s[p] != ';' || body - p < 4 || s[p + 2] != '=' || s[p + 1] == '\0' ||
            (tag = strchr(tags, s[p + 1])) == NULL)
            return sy_err_set(err, SY_ESYNTAX, HOLD_ENH_CORRUPT, "hold rule: malformed field at byte %zu", p);
        k = (size_t) (tag - tags);
        if (k < next_tag)
            return sy_err_set(err, SY_ESYNTAX, HOLD_ENH_CORRUPT, "hold rule: field '%c' out of order or repeated",
                              s[p + 1]);
        next_tag = k + 1;
        p += 3;
        end = p;
        while (end < body && s[end] != ';')
            end++;
        if (end == p || !hold_unescape(s + p, end - p, vals[k], sizes[k]))
            return sy_err_set(err, SY_ESYNTAX, HOLD_ENH_CORRUPT, "hold rule: bad value for field '%c'", tags[k]);
        p = end;
    }
    if (until[0] != '\0' &&
        (until[0] == '0' || text_parse_u64(until, strlen(until), 1, (uint64_t) HOLD_UNTIL_MAX, &u) != SY_OK))
        return sy_err_set(err, SY_ESYNTAX, HOLD_ENH_CORRUPT, "hold rule: bad until");
    if (hold_rule_set(&t, sender, recipient, listener, (int64_t) u, &e) != SY_OK)
        return sy_err_set(err, SY_ESYNTAX, HOLD_ENH_CORRUPT, "hold rule: %s", e.text);
    /* Only the canonical form: what we would have written ourselves. */
    if (hold_rule_encode(&t, again, sizeof(again), &alen) != SY_OK || alen != n || memcmp(again, s, n) != 0)
        return sy_err_set(err, SY_ESYNTAX, HOLD_ENH_CORRUPT, "hold rule: not in canonical form");
    *r = t;
    return SY_OK;
}
