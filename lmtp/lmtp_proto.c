/* lmtp_proto.c - LMTP command lines, paths and ESMTP parameters: pure parsers
 *
 * Everything here takes bytes and a length (NUL bytes included: nothing
 * relies on C-string termination of its input) and returns either a
 * result owned by the caller or a complete SMTP refusal in struct
 * lmtp_reply. No I/O, no globals, no allocation beyond the outputs.
 *
 * Address syntax is RFC 5321 §4.1.2 with RFC 6531 for UTF-8; the reply
 * codes follow RFC 5321 §4.2 and RFC 3463 as Postfix uses them:
 *   500 5.5.2  bad command line (NUL, CR, LF, control or 8-bit verb)
 *   501 5.5.4  bad MAIL/RCPT syntax or a bad parameter value
 *   501 5.1.3  bad recipient address  /  501 5.1.7 bad sender address
 *   553 5.1.3  malformed UTF-8 in a recipient / 553 5.1.7 in a sender
 *   553 5.6.7  non-ASCII address without SMTPUTF8 (RFC 6531 §3.5)
 *   555 5.5.4  unknown, unadvertised or repeated parameter (RFC 5321 §4.1.1.11)
 *   552 5.3.4  SIZE= above the limit (RFC 1870 §6)
 *
 * Thread safety: reentrant.
 */
#include "lmtp/lmtp_proto.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/util/err.h"
#include "gateway/util/text.h"
#include "gateway/util/xalloc.h"

/* A U-label is at most 63 octets once punycoded (RFC 5890 §2.3.2.1) and
 * each of its characters takes at most 4 octets in UTF-8. */
#define LMTP_ULABEL_MAX ((size_t) 252)
#define LMTP_LABEL_MAX ((size_t) 63)
/* RFC 4865 §3: future-release-integer = 1*9DIGIT. */
#define LMTP_HOLDFOR_DIGITS_MAX ((size_t) 9)
/* RFC 1870 §3: size-value = 1*20DIGIT. */
#define LMTP_SIZE_DIGITS_MAX ((size_t) 20)
/* ORCPT addr-type is an atom ("rfc822", "utf-8", "x400"); ours is capped. */
#define LMTP_ADDRTYPE_MAX ((size_t) 32)

/* Which side of the envelope a path belongs to: sets the RFC 3463 code. */
struct proto_role {
    const char *enh;        /* 5.1.3 or 5.1.7 */
    const char *what;       /* "recipient" or "sender" */
};

static const struct proto_role proto_rcpt_role = { "5.1.3", "recipient" };
static const struct proto_role proto_mail_role = { "5.1.7", "sender" };

/* A path parsed for structure; UTF-8 acceptance is decided afterwards,
 * because on MAIL the SMTPUTF8 parameter follows the path. */
struct proto_path {
    char *addr;             /* new mailbox owned by the caller; "" for <> */
    size_t consumed;        /* bytes from '<' to '>' inclusive */
    bool nonascii;          /* some byte >= 0x80 */
    bool utf8_ok;           /* the path is valid UTF-8 */
};

/* One ESMTP parameter: keyword[=value], both borrowed from the argument. */
struct proto_param {
    const char *kw;
    size_t kwlen;
    const char *val;        /* NULL when there was no '=' */
    size_t vallen;
};

static const struct {
    const char *name;
    int verb;
} proto_verbs[] = {
    { "LHLO", LMTP_LHLO }, { "MAIL", LMTP_MAIL }, { "RCPT", LMTP_RCPT },
    { "DATA", LMTP_DATA }, { "RSET", LMTP_RSET }, { "NOOP", LMTP_NOOP },
    { "QUIT", LMTP_QUIT }, { "VRFY", LMTP_VRFY }, { "HELP", LMTP_HELP },
    { "HELO", LMTP_HELO }, { "EHLO", LMTP_EHLO }, { "BDAT", LMTP_BDAT },
    { "STARTTLS", LMTP_STARTTLS }, { "EXPN", LMTP_EXPN }, { "AUTH", LMTP_AUTH },
};

/* proto_refuse - fill rep (when not NULL) and return SY_ESYNTAX */
__attribute__((format(printf, 4, 5)))
static int proto_refuse(struct lmtp_reply *rep, int code, const char *enh, const char *fmt, ...)
{
    va_list ap;

    if (rep == NULL)
        return SY_ESYNTAX;
    rep->code = code;
    (void) snprintf(rep->enh, sizeof(rep->enh), "%s", enh);
    va_start(ap, fmt);
    (void) vsnprintf(rep->text, sizeof(rep->text), fmt, ap);
    va_end(ap);
    return SY_ESYNTAX;
}

/* proto_is_alpha - ASCII only, independent of the locale */
static bool proto_is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* proto_is_digit - ASCII only, independent of the locale */
static bool proto_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* proto_is_alnum - ASCII only, independent of the locale */
static bool proto_is_alnum(unsigned char c)
{
    return proto_is_alpha(c) || proto_is_digit(c);
}

/* proto_is_atext - RFC 5322 atext, plus UTF8-non-ascii (RFC 6531 §3.3) */
static bool proto_is_atext(unsigned char c)
{
    return proto_is_alnum(c) || c >= 0x80 || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* proto_is_dotstring - 1 when p[0..n) is a Dot-string (needs no quoting) */
static bool proto_is_dotstring(const char *p, size_t n)
{
    bool prev_dot = true;

    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) p[i];

        if (c == '.') {
            if (prev_dot)
                return false;
            prev_dot = true;
        } else if (proto_is_atext(c)) {
            prev_dot = false;
        } else {
            return false;
        }
    }
    return !prev_dot;
}

/* proto_hexval - value of an uppercase hex digit, -1 otherwise */
static int proto_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int lmtp_parse_command(const char *line, size_t len, struct lmtp_cmd *cmd, struct lmtp_reply *rep)
{
    size_t v = 0;

    cmd->verb = LMTP_UNKNOWN;
    cmd->arg = "";
    cmd->arglen = 0;
    /* A NUL would cut the line short for any C-string consumer; CR and LF
     * inside one line mean the framing went wrong. */
    for (size_t i = 0; i < len; i++)
        if (line[i] == '\0' || line[i] == '\r' || line[i] == '\n')
            return proto_refuse(rep, 500, "5.5.2", "Error: invalid character in command");
    while (v < len && line[v] != ' ') {
        unsigned char c = (unsigned char) line[v];

        if (c < 0x20 || c >= 0x7f)
            return proto_refuse(rep, 500, "5.5.2", "Error: invalid character in command verb");
        v++;
    }
    for (size_t k = 0; k < sizeof(proto_verbs) / sizeof(proto_verbs[0]); k++)
        if (text_ieq(line, v, proto_verbs[k].name)) {
            cmd->verb = proto_verbs[k].verb;
            break;
        }
    /* The argument starts after exactly one SP; "DATA " gives "". */
    if (v < len) {
        cmd->arg = line + v + 1;
        cmd->arglen = len - v - 1;
    }
    return SY_OK;
}

/* ---- punycode (RFC 3492 §6.2), only to reject broken xn-- labels ---- */

enum {
    PUNY_BASE = 36, PUNY_TMIN = 1, PUNY_TMAX = 26, PUNY_SKEW = 38, PUNY_DAMP = 700,
    PUNY_BIAS = 72, PUNY_N = 128
};

/* proto_puny_adapt - the bias adaptation function of RFC 3492 §6.1 */
static uint32_t proto_puny_adapt(uint32_t delta, uint32_t numpoints, bool first)
{
    uint32_t k = 0;

    delta = first ? delta / PUNY_DAMP : delta / 2;
    delta += delta / numpoints;
    while (delta > ((PUNY_BASE - PUNY_TMIN) * PUNY_TMAX) / 2) {
        delta /= PUNY_BASE - PUNY_TMIN;
        k += PUNY_BASE;
    }
    return k + (((PUNY_BASE - PUNY_TMIN + 1) * delta) / (delta + PUNY_SKEW));
}

/* proto_puny_ok - 1 when p[0..n) (after "xn--") decodes to a label with
 * at least one non-ASCII Unicode scalar value */
static bool proto_puny_ok(const char *p, size_t n)
{
    uint32_t cp = PUNY_N, i = 0, bias = PUNY_BIAS, out = 0;
    size_t b = 0, in;
    bool any = false;

    for (size_t k = 0; k < n; k++)
        if (p[k] == '-')
            b = k;
    out = (uint32_t) b;
    in = b > 0 ? b + 1 : 0;
    while (in < n) {
        uint32_t oldi = i, w = 1;

        for (uint32_t k = PUNY_BASE;; k += PUNY_BASE) {
            unsigned char c;
            uint32_t digit, t;

            if (in >= n)
                return false;
            c = (unsigned char) p[in++];
            if (c >= '0' && c <= '9')
                digit = c - '0' + 26;
            else if (c >= 'a' && c <= 'z')
                digit = c - 'a';
            else if (c >= 'A' && c <= 'Z')
                digit = c - 'A';
            else
                return false;
            if (digit > (UINT32_MAX - i) / w)
                return false;
            i += digit * w;
            t = k <= bias ? PUNY_TMIN : k >= bias + PUNY_TMAX ? PUNY_TMAX : k - bias;
            if (digit < t)
                break;
            if (w > UINT32_MAX / (PUNY_BASE - t))
                return false;
            w *= PUNY_BASE - t;
        }
        bias = proto_puny_adapt(i - oldi, out + 1, oldi == 0);
        if (i / (out + 1) > 0x10ffff - cp)
            return false;
        cp += i / (out + 1);
        i %= out + 1;
        /* C1 controls and surrogates are not characters of any label. */
        if (cp < 0xa0 || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        any = true;
        out++;
        i++;
    }
    return any;
}

/* ---- addresses ---- */

/* proto_domain - a Domain (LDH labels; non-ASCII labels are U-labels
 * checked for UTF-8 later) from s[*ip]; NULL on success, else why not */
static const char *proto_domain(const char *s, size_t n, size_t *ip, bool *nonascii)
{
    size_t i = *ip, start = *ip;

    for (;;) {
        size_t ls = i, ll;
        bool lna = false;

        while (i < n) {
            unsigned char c = (unsigned char) s[i];

            if (c >= 0x80)
                lna = true;
            else if (!proto_is_alnum(c) && c != '-')
                break;
            i++;
        }
        ll = i - ls;
        if (ll == 0)
            return "empty domain label";
        if (s[ls] == '-' || s[i - 1] == '-')
            return "domain label begins or ends with a hyphen";
        if (ll > (lna ? LMTP_ULABEL_MAX : LMTP_LABEL_MAX))
            return "domain label too long";
        if (ll >= 4 && text_ieq(s + ls, 4, "xn--")) {
            /* An A-label must decode (B1 #31): no xn-- smuggling of junk. */
            if (lna || !proto_puny_ok(s + ls + 4, ll - 4))
                return "invalid xn-- domain label";
        }
        if (lna)
            *nonascii = true;
        if (i - start > LMTP_DOMAIN_MAX)
            return "domain too long";
        if (i < n && s[i] == '.') {
            i++;
            continue;
        }
        break;
    }
    *ip = i;
    return NULL;
}

/* proto_literal - an address literal "[...]" from s[*ip]; NULL on success.
 * Only IPv4 and IPv6 literals are accepted; *v6 says which. */
static const char *proto_literal(const char *s, size_t n, size_t *ip, bool *v6)
{
    size_t i = *ip + 1, j = i, len;
    char tmp[INET6_ADDRSTRLEN];
    unsigned char bin[sizeof(struct in6_addr)];

    while (j < n && s[j] != ']') {
        unsigned char c = (unsigned char) s[j];

        /* RFC 5321 dcontent: %d33-90 / %d94-126 */
        if (c < 33 || c > 126 || c == '[' || c == '\\')
            return "bad character in address literal";
        j++;
    }
    if (j >= n)
        return "unterminated address literal";
    len = j - i;
    *v6 = len >= 5 && text_ieq(s + i, 5, "IPv6:");
    if (*v6) {
        i += 5;
        len -= 5;
    }
    if (len == 0 || len >= sizeof(tmp))
        return "bad address literal";
    memcpy(tmp, s + i, len);
    tmp[len] = '\0';
    if (inet_pton(*v6 ? AF_INET6 : AF_INET, tmp, bin) != 1)
        return "bad address literal";
    *ip = j + 1;
    return NULL;
}

/* proto_local - a Local-part from s[*ip] into lp (decoded content of a
 * quoted string, or the dot-string); NULL on success, else why not */
static const char *proto_local(const char *s, size_t n, size_t *ip, char *lp, size_t *lplen,
                               bool *nonascii)
{
    size_t i = *ip, o = 0;

    if (i < n && s[i] == '"') {
        i++;
        for (;;) {
            unsigned char c;

            if (i >= n)
                return "unterminated quoted local part";
            if (i + 1 - *ip > LMTP_LOCAL_MAX)
                return "local part too long";
            c = (unsigned char) s[i];
            if (c == '"')
                break;
            if (c == '\\') {
                /* quoted-pairSMTP = "\" %d32-126 */
                if (i + 1 >= n || (unsigned char) s[i + 1] < 32 || (unsigned char) s[i + 1] > 126)
                    return "bad quoted pair in local part";
                c = (unsigned char) s[++i];
            } else if (c < 32 || c == 127) {
                return "bad character in quoted local part";
            } else if (c >= 0x80) {
                *nonascii = true;
            }
            lp[o++] = (char) c;
            i++;
        }
        i++;
        if (o == 0)
            return "empty local part";
    } else {
        bool prev_dot = true;

        while (i < n && (s[i] == '.' || proto_is_atext((unsigned char) s[i]))) {
            if (s[i] == '.') {
                if (prev_dot)
                    return "bad dot in local part";
                prev_dot = true;
            } else {
                prev_dot = false;
                if ((unsigned char) s[i] >= 0x80)
                    *nonascii = true;
            }
            if (i + 1 - *ip > LMTP_LOCAL_MAX)
                return "local part too long";
            lp[o++] = s[i++];
        }
        if (o == 0)
            return "empty local part";
        if (prev_dot)
            return "bad dot in local part";
    }
    *lplen = o;
    *ip = i;
    return NULL;
}

/* proto_path - parse "<[A-d-l:]Mailbox>" or "<>" for structure and length */
static int proto_path(const char *s, size_t n, bool allow_null, const struct proto_role *role,
                      struct proto_path *pp, struct lmtp_reply *rep)
{
    char lp[LMTP_LOCAL_MAX + 1];
    size_t lplen = 0, i = 1, dom, domlen, olen, o = 0;
    bool v6 = false, literal = false, quote;
    const char *why;
    char *addr;

    memset(pp, 0, sizeof(*pp));
    if (n == 0 || s[0] != '<')
        return proto_refuse(rep, 501, role->enh, "Error: bad %s address syntax: missing \"<\"",
                            role->what);
    if (n >= 2 && s[1] == '>') {
        if (!allow_null)
            return proto_refuse(rep, 501, role->enh, "Error: null %s address not allowed",
                                role->what);
        pp->addr = xstrdup("");
        pp->consumed = 2;
        pp->utf8_ok = true;
        return SY_OK;
    }
    /* RFC 5321 §4.1.2 / appendix C: a source route is parsed and dropped;
     * its hosts are never used for routing (B1 #26). */
    if (i < n && s[i] == '@') {
        for (;;) {
            i++;
            why = proto_domain(s, n, &i, &pp->nonascii);
            if (why != NULL)
                return proto_refuse(rep, 501, role->enh, "Error: bad %s address source route: %s",
                                    role->what, why);
            if (i < n && s[i] == ',' && i + 1 < n && s[i + 1] == '@') {
                i++;
                continue;
            }
            if (i < n && s[i] == ':') {
                i++;
                break;
            }
            return proto_refuse(rep, 501, role->enh, "Error: bad %s address source route",
                                role->what);
        }
    }
    why = proto_local(s, n, &i, lp, &lplen, &pp->nonascii);
    if (why != NULL)
        return proto_refuse(rep, 501, role->enh, "Error: bad %s address syntax: %s", role->what, why);
    if (i >= n || s[i] != '@')
        return proto_refuse(rep, 501, role->enh, "Error: bad %s address syntax: missing domain",
                            role->what);
    dom = ++i;
    if (i < n && s[i] == '[') {
        literal = true;
        why = proto_literal(s, n, &i, &v6);
    } else {
        why = proto_domain(s, n, &i, &pp->nonascii);
    }
    if (why != NULL)
        return proto_refuse(rep, 501, role->enh, "Error: bad %s address syntax: %s", role->what, why);
    domlen = i - dom;
    if (i >= n || s[i] != '>')
        return proto_refuse(rep, 501, role->enh, "Error: bad %s address syntax: missing \">\"",
                            role->what);
    if (i + 1 > LMTP_PATH_MAX)
        return proto_refuse(rep, 501, role->enh, "Error: %s address too long", role->what);

    /* Normalise: a quoted local part that needs no quotes loses them
     * (<"ab"@x> is ab@x); one that does keeps them, escaping only '"'
     * and '\'. The result is never longer than the wire form. */
    quote = !proto_is_dotstring(lp, lplen);
    olen = lplen * 2 + 2 + 1 + domlen + 1;
    addr = xmalloc(olen);
    if (quote)
        addr[o++] = '"';
    for (size_t k = 0; k < lplen; k++) {
        if (quote && (lp[k] == '"' || lp[k] == '\\'))
            addr[o++] = '\\';
        addr[o++] = lp[k];
    }
    if (quote)
        addr[o++] = '"';
    addr[o++] = '@';
    if (literal && v6) {
        memcpy(addr + o, "[IPv6:", 6);
        memcpy(addr + o + 6, s + dom + 6, domlen - 6);
    } else {
        memcpy(addr + o, s + dom, domlen);
    }
    o += domlen;
    addr[o] = '\0';
    pp->addr = addr;
    pp->consumed = i + 1;
    pp->utf8_ok = !pp->nonascii || text_is_utf8(s, i + 1);
    return SY_OK;
}

/* proto_path_utf8 - RFC 6531: non-ASCII only with SMTPUTF8, and valid */
static int proto_path_utf8(const struct proto_path *pp, bool allow_utf8,
                           const struct proto_role *role, struct lmtp_reply *rep)
{
    if (!pp->nonascii)
        return SY_OK;
    if (!allow_utf8)
        return proto_refuse(rep, 553, "5.6.7", "Error: non-ASCII %s address requires SMTPUTF8",
                            role->what);
    if (!pp->utf8_ok)
        return proto_refuse(rep, 553, role->enh, "Error: malformed UTF-8 in %s address", role->what);
    return SY_OK;
}

int lmtp_parse_path(const char *s, size_t n, bool allow_utf8, bool allow_null,
                    char **addr_out, size_t *consumed, struct lmtp_reply *rep)
{
    struct proto_path pp;

    if (proto_path(s, n, allow_null, &proto_rcpt_role, &pp, rep) != SY_OK)
        return SY_ESYNTAX;
    if (proto_path_utf8(&pp, allow_utf8, &proto_rcpt_role, rep) != SY_OK) {
        free(pp.addr);
        return SY_ESYNTAX;
    }
    *addr_out = pp.addr;
    *consumed = pp.consumed;
    return SY_OK;
}

/* ---- xtext (RFC 3461 §4) ---- */

int lmtp_xtext_decode(const char *s, size_t n, char **out, size_t *outlen)
{
    char *d = xmalloc(n + 1);
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];

        if (c == '+') {
            int hi, lo;

            if (n - i < 3)
                goto bad;
            hi = proto_hexval((unsigned char) s[i + 1]);
            lo = proto_hexval((unsigned char) s[i + 2]);
            if (hi < 0 || lo < 0)
                goto bad;
            c = (unsigned char) (hi * 16 + lo);
            /* Decoded NUL, CR or LF would end up in a DSN or a header. */
            if (c == '\0' || c == '\r' || c == '\n')
                goto bad;
            i += 2;
        } else if (c < 33 || c > 126 || c == '=') {
            goto bad;
        }
        d[o++] = (char) c;
    }
    d[o] = '\0';
    *out = d;
    *outlen = o;
    return SY_OK;
bad:
    free(d);
    return SY_ESYNTAX;
}

char *lmtp_xtext_encode(const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    char *d;
    size_t o = 0;

    if (n > (SIZE_MAX - 1) / 3)
        abort();
    d = xmalloc(n * 3 + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];

        if (c >= 33 && c <= 126 && c != '+' && c != '=') {
            d[o++] = (char) c;
        } else {
            d[o++] = '+';
            d[o++] = hex[c >> 4];
            d[o++] = hex[c & 15];
        }
    }
    d[o] = '\0';
    return d;
}

/* proto_uxtext_decode - RFC 6533 utf-8-addr-xtext / -unitext: QCHARs
 * (printable ASCII but '+', '=', '\', and UTF-8) and "\x{HEX}"; the
 * result is valid UTF-8 without control characters. SY_OK or SY_ESYNTAX. */
static int proto_uxtext_decode(const char *s, size_t n, char **out, size_t *outlen)
{
    char *d = xmalloc(n + 1);
    size_t o = 0, i = 0;

    while (i < n) {
        unsigned char c = (unsigned char) s[i];
        uint32_t cp = 0;
        size_t k;

        if (c >= 0x80 || (c >= 33 && c <= 126 && c != '+' && c != '=' && c != '\\')) {
            d[o++] = (char) c;
            i++;
            continue;
        }
        if (c != '\\' || n - i < 5 || s[i + 1] != 'x' || s[i + 2] != '{')
            goto bad;
        for (k = i + 3; k < n && k - (i + 3) < 7 && s[k] != '}'; k++) {
            unsigned char h = (unsigned char) s[k];
            int v = proto_hexval(h >= 'a' && h <= 'f' ? (unsigned char) (h - 32) : h);

            if (v < 0)
                goto bad;
            cp = cp * 16 + (uint32_t) v;
        }
        if (k >= n || s[k] != '}' || k == i + 3 || k - (i + 3) > 6)
            goto bad;
        /* An escape is never shorter than what it encodes, so d has room. */
        if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            goto bad;
        if (cp < 0x80) {
            d[o++] = (char) cp;
        } else if (cp < 0x800) {
            d[o++] = (char) (0xc0 | (cp >> 6));
            d[o++] = (char) (0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            d[o++] = (char) (0xe0 | (cp >> 12));
            d[o++] = (char) (0x80 | ((cp >> 6) & 0x3f));
            d[o++] = (char) (0x80 | (cp & 0x3f));
        } else {
            d[o++] = (char) (0xf0 | (cp >> 18));
            d[o++] = (char) (0x80 | ((cp >> 12) & 0x3f));
            d[o++] = (char) (0x80 | ((cp >> 6) & 0x3f));
            d[o++] = (char) (0x80 | (cp & 0x3f));
        }
        i = k + 1;
    }
    if (!text_is_utf8(d, o) || !text_is_clean(d, o))
        goto bad;
    d[o] = '\0';
    *out = d;
    *outlen = o;
    return SY_OK;
bad:
    free(d);
    return SY_ESYNTAX;
}

/* ---- ESMTP parameters ---- */

/* proto_next_param - the next SP-separated keyword[=value]; 0 at the end,
 * 1 with p filled, or SY_ESYNTAX with rep (501 5.5.4) */
static int proto_next_param(const char *s, size_t n, size_t *ip, struct proto_param *p,
                            struct lmtp_reply *rep)
{
    size_t i = *ip, end, eq;

    /* Several SPs between parameters and trailing SPs are harmless. */
    while (i < n && s[i] == ' ')
        i++;
    if (i == n) {
        *ip = i;
        return 0;
    }
    for (end = i; end < n && s[end] != ' '; end++)
        ;
    for (eq = i; eq < end && s[eq] != '='; eq++)
        ;
    /* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
    if (eq == i || !proto_is_alnum((unsigned char) s[i]))
        return proto_refuse(rep, 501, "5.5.4", "Error: bad parameter syntax");
    for (size_t k = i; k < eq; k++)
        if (!proto_is_alnum((unsigned char) s[k]) && s[k] != '-')
            return proto_refuse(rep, 501, "5.5.4", "Error: bad parameter syntax");
    p->kw = s + i;
    p->kwlen = eq - i;
    p->val = NULL;
    p->vallen = 0;
    if (eq < end) {
        /* esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 (RFC 6531) */
        if (eq + 1 == end)
            return proto_refuse(rep, 501, "5.5.4", "Error: empty parameter value");
        for (size_t k = eq + 1; k < end; k++) {
            unsigned char c = (unsigned char) s[k];

            if ((c < 33 || c == '=' || c == 127) && c < 0x80)
                return proto_refuse(rep, 501, "5.5.4", "Error: bad parameter value syntax");
        }
        p->val = s + eq + 1;
        p->vallen = end - eq - 1;
    }
    *ip = end;
    return 1;
}

/* proto_param_index - position of p's keyword in names, -1 when unknown */
static int proto_param_index(const struct proto_param *p, const char *const *names, size_t nnames)
{
    for (size_t k = 0; k < nnames; k++)
        if (text_ieq(p->kw, p->kwlen, names[k]))
            return (int) k;
    return -1;
}

/* proto_has_8bit - 1 when p[0..n) holds a byte >= 0x80 */
static bool proto_has_8bit(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char) p[i] >= 0x80)
            return true;
    return false;
}

/* proto_digits - exactly n ASCII digits at s as a number */
static bool proto_digits(const char *s, size_t n, int *out)
{
    int v = 0;

    for (size_t i = 0; i < n; i++) {
        if (!proto_is_digit((unsigned char) s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* proto_days_from_civil - days since 1970-01-01 of a proleptic Gregorian date */
static int64_t proto_days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* proto_rfc3339 - RFC 3339 §5.6 date-time into unix seconds, rounded up
 * when there are fractional seconds (never release early). 0 or -1. */
static int proto_rfc3339(const char *s, size_t n, int64_t *out)
{
    static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0, dim;
    size_t i = 19;
    bool frac = false;
    int64_t t;

    if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
        s[13] != ':' || s[16] != ':')
        return -1;
    if (!proto_digits(s, 4, &y) || !proto_digits(s + 5, 2, &mo) || !proto_digits(s + 8, 2, &d) ||
        !proto_digits(s + 11, 2, &h) || !proto_digits(s + 14, 2, &mi) ||
        !proto_digits(s + 17, 2, &sec))
        return -1;
    if (s[i] == '.') {
        size_t f = ++i;

        while (i < n && proto_is_digit((unsigned char) s[i])) {
            if (s[i] != '0')
                frac = true;
            i++;
        }
        if (i == f)
            return -1;
    }
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        sign = s[i] == '+' ? 1 : -1;
        if (n - i < 6 || s[i + 3] != ':' || !proto_digits(s + i + 1, 2, &oh) ||
            !proto_digits(s + i + 4, 2, &om))
            return -1;
        i += 6;
    } else {
        return -1;
    }
    if (i != n || mo < 1 || mo > 12 || h > 23 || mi > 59 || sec > 60 || oh > 23 || om > 59)
        return -1;
    dim = mdays[mo - 1];
    if (mo == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        dim = 29;
    if (d < 1 || d > dim)
        return -1;
    t = proto_days_from_civil(y, mo, d) * 86400 + (int64_t) h * 3600 + (int64_t) mi * 60 + sec;
    t -= (int64_t) sign * ((int64_t) oh * 3600 + (int64_t) om * 60);
    *out = t + (frac ? 1 : 0);
    return 0;
}

enum {
    MAILP_SIZE, MAILP_BODY, MAILP_SMTPUTF8, MAILP_RET, MAILP_ENVID, MAILP_REQUIRETLS,
    MAILP_HOLDFOR, MAILP_HOLDUNTIL, MAILP_COUNT
};

static const char *const proto_mail_params[MAILP_COUNT] = {
    "SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", "REQUIRETLS", "HOLDFOR", "HOLDUNTIL"
};

/* The transaction fields parse_mail fills, committed to env only at the end. */
struct proto_mail {
    int ret;
    char *envid;
    int body;
    unsigned flags;
    uint64_t size;
    int64_t hold_until;
};

/* proto_mail_param - check and record one MAIL parameter */
static int proto_mail_param(const struct proto_param *p, int idx, const struct lmtp_mail_policy *pol,
                            struct proto_mail *m, struct lmtp_reply *rep)
{
    bool needs_value = idx != MAILP_SMTPUTF8 && idx != MAILP_REQUIRETLS;
    uint64_t v;
    int64_t limit;
    size_t len;
    int rc;

    if (needs_value != (p->val != NULL))
        return proto_refuse(rep, 501, "5.5.4", "Error: bad %s parameter syntax", proto_mail_params[idx]);
    /* now + maximum, saturating: the policy comes from configuration. */
    limit = (uint64_t) INT64_MAX - (uint64_t) (pol->now > 0 ? pol->now : 0) < pol->futurerelease_max_s
            ? INT64_MAX : pol->now + (int64_t) pol->futurerelease_max_s;
    switch (idx) {
    case MAILP_SIZE:
        /* RFC 1870: 1*20DIGIT. A valid number above the limit (or above
         * 2^64) is a size problem, not a syntax one. size_limit 0 means
         * no limit (Postfix message_size_limit = 0). */
        if (p->vallen > LMTP_SIZE_DIGITS_MAX)
            return proto_refuse(rep, 501, "5.5.4", "Error: bad SIZE parameter syntax");
        rc = text_parse_u64(p->val, p->vallen, 0, UINT64_MAX, &v);
        if (rc == SY_ESYNTAX)
            return proto_refuse(rep, 501, "5.5.4", "Error: bad SIZE parameter syntax");
        if (rc != SY_OK || (pol->size_limit != 0 && v > pol->size_limit))
            return proto_refuse(rep, 552, "5.3.4", "Error: message size exceeds fixed maximum message size");
        m->size = v;
        return SY_OK;
    case MAILP_BODY:
        if (text_ieq(p->val, p->vallen, "7BIT")) {
            m->body = ENV_BODY_7BIT;
        } else if (text_ieq(p->val, p->vallen, "8BITMIME")) {
            m->body = ENV_BODY_8BITMIME;
        } else if (text_ieq(p->val, p->vallen, "BINARYMIME")) {
            /* RFC 3030: only with CHUNKING, which is not advertised. */
            return proto_refuse(rep, 555, "5.5.4", "Error: BODY=BINARYMIME is not supported");
        } else {
            return proto_refuse(rep, 501, "5.5.4", "Error: bad BODY parameter value");
        }
        return SY_OK;
    case MAILP_SMTPUTF8:
        m->flags |= ENV_F_SMTPUTF8;
        return SY_OK;
    case MAILP_RET:
        if (text_ieq(p->val, p->vallen, "FULL"))
            m->ret = ENV_RET_FULL;
        else if (text_ieq(p->val, p->vallen, "HDRS"))
            m->ret = ENV_RET_HDRS;
        else
            return proto_refuse(rep, 501, "5.5.4", "Error: bad RET parameter value");
        return SY_OK;
    case MAILP_ENVID:
        /* RFC 3461 §4.4: xtext of printable US-ASCII, at most 100. */
        if (lmtp_xtext_decode(p->val, p->vallen, &m->envid, &len) != SY_OK)
            return proto_refuse(rep, 501, "5.5.4", "Error: bad ENVID parameter syntax");
        for (size_t k = 0; k < len; k++)
            if (m->envid[k] < 0x20 || m->envid[k] > 0x7e)
                return proto_refuse(rep, 501, "5.5.4", "Error: bad ENVID parameter syntax");
        if (len == 0 || len > LMTP_ENVID_MAX)
            return proto_refuse(rep, 501, "5.5.4", "Error: ENVID parameter too long");
        return SY_OK;
    case MAILP_REQUIRETLS:
        /* RFC 8689 defines no MAIL-time reply for a session that may not
         * use REQUIRETLS; such a listener does not advertise it, and RFC
         * 5321 §4.1.1.11 answers an unadvertised parameter with 555. */
        if (!pol->requiretls_ok)
            return proto_refuse(rep, 555, "5.5.4", "Error: REQUIRETLS is not supported on this listener");
        m->flags |= ENV_F_REQUIRETLS;
        return SY_OK;
    case MAILP_HOLDFOR:
        /* RFC 4865 §3: HOLDFOR=1*9DIGIT seconds; beyond the advertised
         * maximum interval: 501 5.5.4 (§4). */
        if (p->vallen > LMTP_HOLDFOR_DIGITS_MAX ||
            text_parse_u64(p->val, p->vallen, 0, UINT64_MAX, &v) != SY_OK)
            return proto_refuse(rep, 501, "5.5.4", "Error: bad HOLDFOR parameter syntax");
        if (v > pol->futurerelease_max_s || pol->now > INT64_MAX - (int64_t) v)
            return proto_refuse(rep, 501, "5.5.4", "Error: HOLDFOR exceeds the maximum hold interval");
        m->hold_until = pol->now + (int64_t) v;
        return SY_OK;
    case MAILP_HOLDUNTIL: {
        int64_t t;

        /* RFC 4865 with errata 2040: an RFC 3339 date-time. */
        if (proto_rfc3339(p->val, p->vallen, &t) != 0)
            return proto_refuse(rep, 501, "5.5.4", "Error: bad HOLDUNTIL parameter syntax");
        if (t < pol->now)
            return proto_refuse(rep, 501, "5.5.4", "Error: HOLDUNTIL is in the past");
        if (t > limit)
            return proto_refuse(rep, 501, "5.5.4", "Error: HOLDUNTIL exceeds the maximum hold time");
        m->hold_until = t;
        return SY_OK;
    }
    default:
        return proto_refuse(rep, 555, "5.5.4", "Error: unsupported parameter");
    }
}

int lmtp_parse_mail(const char *arg, size_t n, const struct lmtp_mail_policy *pol,
                    struct envelope *env, struct lmtp_reply *rep)
{
    struct proto_mail m = { 0 };
    struct proto_path pp;
    struct proto_param p = { 0 };
    unsigned seen = 0;
    size_t i;
    int rc;

    if (n < 5 || !text_ieq(arg, 5, "FROM:"))
        return proto_refuse(rep, 501, "5.5.4", "Syntax: MAIL FROM:<address>");
    /* Postfix accepts "FROM: <a@b>" as well as the RFC form. */
    for (i = 5; i < n && arg[i] == ' '; i++)
        ;
    if (proto_path(arg + i, n - i, true, &proto_mail_role, &pp, rep) != SY_OK)
        return SY_ESYNTAX;
    i += pp.consumed;
    if (i < n && arg[i] != ' ') {
        (void) proto_refuse(rep, 501, "5.5.4", "Error: garbage after sender address");
        goto fail;
    }
    while ((rc = proto_next_param(arg, n, &i, &p, rep)) == 1) {
        int idx = proto_param_index(&p, proto_mail_params, MAILP_COUNT);

        if (idx < 0) {
            (void) proto_refuse(rep, 555, "5.5.4", "Error: unsupported parameter");
            goto fail;
        }
        if (seen & (1u << idx)) {
            (void) proto_refuse(rep, 555, "5.5.4", "Error: duplicate %s parameter", proto_mail_params[idx]);
            goto fail;
        }
        seen |= 1u << idx;
        if ((idx == MAILP_HOLDFOR && (seen & (1u << MAILP_HOLDUNTIL))) ||
            (idx == MAILP_HOLDUNTIL && (seen & (1u << MAILP_HOLDFOR)))) {
            (void) proto_refuse(rep, 501, "5.5.4", "Error: HOLDFOR and HOLDUNTIL are mutually exclusive");
            goto fail;
        }
        rc = proto_mail_param(&p, idx, pol, &m, rep);
        if (rc != SY_OK)
            goto fail;
    }
    if (rc != 0)
        goto fail;
    rc = proto_path_utf8(&pp, (m.flags & ENV_F_SMTPUTF8) != 0, &proto_mail_role, rep);
    if (rc != SY_OK)
        goto fail;

    /* Commit: nothing above touched env. */
    free(env->sender);
    env->sender = pp.addr;
    free(env->envid);
    env->envid = m.envid;
    env->ret = m.ret;
    env->body = m.body;
    env->flags = (env->flags & ~(unsigned) (ENV_F_SMTPUTF8 | ENV_F_REQUIRETLS)) | m.flags;
    env->size_declared = m.size;
    env->hold_until = m.hold_until;
    return SY_OK;
fail:
    free(pp.addr);
    free(m.envid);
    return SY_ESYNTAX;
}

enum { RCPTP_NOTIFY, RCPTP_ORCPT, RCPTP_COUNT };

static const char *const proto_rcpt_params[RCPTP_COUNT] = { "NOTIFY", "ORCPT" };

/* proto_notify - RFC 3461 §4.1: NEVER, or a list of SUCCESS/FAILURE/DELAY */
static int proto_notify(const struct proto_param *p, unsigned *notify, struct lmtp_reply *rep)
{
    static const struct {
        const char *name;
        unsigned bit;
    } words[] = {
        { "NEVER", ENV_NOTIFY_NEVER }, { "SUCCESS", ENV_NOTIFY_SUCCESS },
        { "FAILURE", ENV_NOTIFY_FAILURE }, { "DELAY", ENV_NOTIFY_DELAY },
    };
    unsigned bits = 0;
    size_t i = 0;

    if (p->val == NULL)
        return proto_refuse(rep, 501, "5.5.4", "Error: bad NOTIFY parameter syntax");
    while (i <= p->vallen) {
        size_t e = i;
        unsigned bit = 0;

        while (e < p->vallen && p->val[e] != ',')
            e++;
        for (size_t k = 0; k < sizeof(words) / sizeof(words[0]); k++)
            if (text_ieq(p->val + i, e - i, words[k].name))
                bit = words[k].bit;
        if (bit == 0 || (bits & bit))
            return proto_refuse(rep, 501, "5.5.4", "Error: bad NOTIFY parameter value");
        bits |= bit;
        i = e + 1;
    }
    if ((bits & ENV_NOTIFY_NEVER) && bits != ENV_NOTIFY_NEVER)
        return proto_refuse(rep, 501, "5.5.4", "Error: NOTIFY=NEVER cannot be combined");
    *notify = bits;
    return SY_OK;
}

/* proto_orcpt - RFC 3461 §4.2 addr-type ";" xtext (RFC 6533 for utf-8) */
static int proto_orcpt(const struct proto_param *p, bool smtputf8, struct env_rcpt *r,
                       struct lmtp_reply *rep)
{
    const char *semi;
    size_t tlen, alen;
    char *type, *addr;
    int rc;

    if (p->val == NULL || (semi = memchr(p->val, ';', p->vallen)) == NULL)
        return proto_refuse(rep, 501, "5.5.4", "Error: bad ORCPT parameter syntax");
    tlen = (size_t) (semi - p->val);
    if (tlen == 0 || tlen > LMTP_ADDRTYPE_MAX || !proto_is_alnum((unsigned char) p->val[0]))
        return proto_refuse(rep, 501, "5.5.4", "Error: bad ORCPT address type");
    for (size_t k = 0; k < tlen; k++)
        if (!proto_is_alnum((unsigned char) p->val[k]) && p->val[k] != '-')
            return proto_refuse(rep, 501, "5.5.4", "Error: bad ORCPT address type");
    /* RFC 6531: raw UTF-8 in a parameter only inside an SMTPUTF8 transaction. */
    if (!smtputf8 && proto_has_8bit(p->val, p->vallen))
        return proto_refuse(rep, 553, "5.6.7", "Error: non-ASCII ORCPT requires SMTPUTF8");
    if (text_ieq(p->val, tlen, "utf-8")) {
        rc = proto_uxtext_decode(semi + 1, p->vallen - tlen - 1, &addr, &alen);
    } else {
        rc = lmtp_xtext_decode(semi + 1, p->vallen - tlen - 1, &addr, &alen);
        /* RFC 3461 §4.2: printable US-ASCII once decoded. */
        for (size_t k = 0; rc == SY_OK && k < alen; k++)
            if ((unsigned char) addr[k] < 0x20 || (unsigned char) addr[k] > 0x7e) {
                free(addr);
                rc = SY_ESYNTAX;
            }
    }
    if (rc != SY_OK)
        return proto_refuse(rep, 501, "5.5.4", "Error: bad ORCPT parameter value");
    if (alen == 0 || alen > LMTP_ORCPT_MAX) {
        free(addr);
        return proto_refuse(rep, 501, "5.5.4", "Error: bad ORCPT parameter length");
    }
    type = xmemdup0(p->val, tlen);
    for (size_t k = 0; k < tlen; k++)
        if (type[k] >= 'A' && type[k] <= 'Z')
            type[k] = (char) (type[k] - 'A' + 'a');
    r->orcpt_type = type;
    r->orcpt_addr = addr;
    return SY_OK;
}

int lmtp_parse_rcpt(const char *arg, size_t n, bool smtputf8, struct env_rcpt *r,
                    struct lmtp_reply *rep)
{
    struct env_rcpt t = { 0 };
    struct proto_path pp;
    struct proto_param p = { 0 };
    unsigned seen = 0;
    size_t i;
    int rc;

    if (n < 3 || !text_ieq(arg, 3, "TO:"))
        return proto_refuse(rep, 501, "5.5.4", "Syntax: RCPT TO:<address>");
    for (i = 3; i < n && arg[i] == ' '; i++)
        ;
    /* RFC 5321 §4.1.1.3: "<Postmaster>" without a domain, any case. */
    if (n - i >= 12 && text_ieq(arg + i, 12, "<postmaster>")) {
        memset(&pp, 0, sizeof(pp));
        pp.addr = xstrdup("postmaster");
        pp.consumed = 12;
    } else {
        if (proto_path(arg + i, n - i, false, &proto_rcpt_role, &pp, rep) != SY_OK)
            return SY_ESYNTAX;
        if (proto_path_utf8(&pp, smtputf8, &proto_rcpt_role, rep) != SY_OK) {
            free(pp.addr);
            return SY_ESYNTAX;
        }
    }
    t.addr = pp.addr;
    i += pp.consumed;
    if (i < n && arg[i] != ' ') {
        (void) proto_refuse(rep, 501, "5.5.4", "Error: garbage after recipient address");
        goto fail;
    }
    while ((rc = proto_next_param(arg, n, &i, &p, rep)) == 1) {
        int idx = proto_param_index(&p, proto_rcpt_params, RCPTP_COUNT);

        if (idx < 0) {
            (void) proto_refuse(rep, 555, "5.5.4", "Error: unsupported parameter");
            goto fail;
        }
        if (seen & (1u << idx)) {
            (void) proto_refuse(rep, 555, "5.5.4", "Error: duplicate %s parameter", proto_rcpt_params[idx]);
            goto fail;
        }
        seen |= 1u << idx;
        rc = idx == RCPTP_NOTIFY ? proto_notify(&p, &t.notify, rep)
                                 : proto_orcpt(&p, smtputf8, &t, rep);
        if (rc != SY_OK)
            goto fail;
    }
    if (rc != 0)
        goto fail;
    *r = t;
    return SY_OK;
fail:
    env_rcpt_free(&t);
    return SY_ESYNTAX;
}
