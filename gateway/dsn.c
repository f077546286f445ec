/* dsn.c - RFC 3464 delivery status notifications
 *
 * The DSN is built in four steps: validate the inputs, build the three
 * part bodies (human-readable text, delivery-status fields, returned
 * content) in their own buffers, choose a boundary that occurs in none of
 * them, then assemble header and parts. Every line goes through one of
 * three writers (dsn_wrap for folded fields and wrapped prose,
 * dsn_copy_lines for returned content, fixed strings otherwise), which is
 * how the CRLF and 998-octet promises of dsn.h are kept.
 */
#include "gateway/dsn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/util/text.h"
#include "gateway/util/xalloc.h"

/* RFC 5322 §2.1.1: at most 998 octets per line, and 78 recommended. */
#define DSN_LINE_MAX ((size_t) 998)
#define DSN_FOLD_COL ((size_t) 78)
/* Prose in the text part wraps earlier, for quoting in replies. */
#define DSN_TEXT_COL ((size_t) 76)
/* A word longer than this is cut: a lead of up to 90 octets plus a word
 * stays well inside DSN_LINE_MAX. */
#define DSN_WORD_MAX ((size_t) 900)
/* RFC 2046 §5.1.1: a boundary has at most 70 characters; ours is
 * "=_" + token (cut to fit) + optional "." + 8 digits. */
#define DSN_BOUNDARY_LEN_MAX ((size_t) 70)
#define DSN_BOUNDARY_PREFIX "=_"
#define DSN_BOUNDARY_DIGITS 8
/* The largest return_max honoured (see DSN_OUT_MAX). */
#define DSN_RETURN_CAP ((size_t) 64 * 1024 * 1024)
/* Dates after 9999-12-31T23:59:59Z do not fit RFC 5322's 4-digit year. */
#define DSN_TIME_MAX ((int64_t) 253402300799)
#define DSN_DATE_SIZE ((size_t) 40)

/* The kind of DSN decides the subject and the introduction. */
enum dsn_kind { DSN_KIND_FAILED, DSN_KIND_DELAYED, DSN_KIND_SUCCESS };

/* Why part 3 holds what it holds (for the sentence in the text part). */
enum dsn_note {
    DSN_NOTE_FULL,          /* the whole message */
    DSN_NOTE_HEADERS,       /* headers, as asked (RET=HDRS or not a failure) */
    DSN_NOTE_TOO_BIG,       /* headers, because the message passed return_max */
    DSN_NOTE_HDR_TOO_BIG,   /* nothing: even the headers passed return_max */
    DSN_NOTE_UNAVAILABLE    /* nothing: no original given */
};

/* Everything worked out before the parts are written. */
struct dsn_ctx {
    const struct dsn_input *in;
    const struct envelope *env;
    int global;             /* RFC 6533 types, UTF-8 kept in fields */
    int kind;               /* enum dsn_kind */
    int returned;           /* enum dsn_returned */
    int note;               /* enum dsn_note */
    size_t hdr_len;         /* octets of the original's header section */
    size_t cap;             /* return_max, clamped to DSN_RETURN_CAP */
    char msgid[DSN_LINE_MAX - 16];  /* "<id>" of the original, or "" */
};

static const char *const dsn_action_names[] = {
    NULL, "failed", "delayed", "delivered", "relayed", "expanded"
};

const char *dsn_action_name(int action)
{
    if (action < DSN_ACTION_FAILED || action > DSN_ACTION_EXPANDED)
        return NULL;
    return dsn_action_names[action];
}

int dsn_wanted(const struct envelope *env, size_t rcpt, int action)
{
    unsigned notify;

    /* RFC 5321 §6.1: never a notification to a null reverse-path. */
    if (env == NULL || env->sender == NULL || env->sender[0] == '\0' || rcpt >= env->nrcpt)
        return 0;
    notify = env->rcpts[rcpt].notify;
    if (notify & ENV_NOTIFY_NEVER)
        return 0;
    switch (action) {
    case DSN_ACTION_FAILED:
        return notify == 0 || (notify & ENV_NOTIFY_FAILURE) != 0;
    case DSN_ACTION_DELAYED:
        return notify == 0 || (notify & ENV_NOTIFY_DELAY) != 0;
    case DSN_ACTION_DELIVERED:
    case DSN_ACTION_RELAYED:
    case DSN_ACTION_EXPANDED:
        /* RFC 3461 §4.1: success reports only on request. */
        return (notify & ENV_NOTIFY_SUCCESS) != 0;
    default:
        return 0;
    }
}

/* ---- small checks ---- */

/* dsn_is_ctl - C0 controls and DEL */
static int dsn_is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

/* dsn_has_8bit - any octet >= 0x80 in s[0..n) */
static int dsn_has_8bit(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char) s[i] >= 0x80)
            return 1;
    return 0;
}

/* dsn_is_8bit_data - content that needs an 8-bit transport: an octet
 * >= 0x80, or NUL (which RFC 2045 allows in neither 7bit nor 8bit, but
 * which binary-clean 8BITMIME peers carry) */
static int dsn_is_8bit_data(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char) s[i] >= 0x80 || s[i] == '\0')
            return 1;
    return 0;
}

/* dsn_utf8_char - length of the valid UTF-8 character at p[0..n), or 0 */
static size_t dsn_utf8_char(const char *p, size_t n)
{
    unsigned char c = (unsigned char) p[0];
    size_t len;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4;
    else
        return 0;
    if (len > n || !text_is_utf8(p, len))
        return 0;
    return len;
}

/* dsn_utf8_cut - where to cut p (longer than max) at most max octets in,
 * backing off so a UTF-8 character is not split (when p is UTF-8 there) */
static size_t dsn_utf8_cut(const char *p, size_t max)
{
    size_t k = max;

    while (k > max - 3 && ((unsigned char) p[k] & 0xc0) == 0x80)
        k--;
    return ((unsigned char) p[k] & 0xc0) == 0x80 ? max : k;
}

/* dsn_dots_ok - s[0..n) is labels of [A-Za-z0-9_-] joined by single dots,
 * with no dot (and, when no_edge_hyphen, no hyphen) at either end */
static int dsn_dots_ok(const char *s, size_t n, int no_edge_hyphen)
{
    if (s[0] == '.' || s[n - 1] == '.' || (no_edge_hyphen && (s[0] == '-' || s[n - 1] == '-')))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '.' || c == '-' || c == '_'))
            return 0;
        if (c == '.' && s[i + 1] == '.')
            return 0;
    }
    return 1;
}

/* dsn_host_ok - a host name (letters, digits, '-', '_', '.', not at the
 * ends) or an address literal "[...]" of hex digits, '.', ':' and "IPv6" */
static int dsn_host_ok(const char *s)
{
    size_t n;

    if (s == NULL || (n = strlen(s)) == 0 || n > DSN_HOST_MAX)
        return 0;
    if (s[0] == '[') {
        if (n < 3 || s[n - 1] != ']')
            return 0;
        for (size_t i = 1; i + 1 < n; i++) {
            char c = s[i];

            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '.' || c == ':'))
                return 0;
        }
        return 1;
    }
    return dsn_dots_ok(s, n, 1);
}

/* dsn_token_ok - the caller's token as RFC 5322 dot-atom-text of
 * [A-Za-z0-9_-] (it is the Message-ID's left part and the boundary) */
static int dsn_token_ok(const char *s)
{
    size_t n;

    if (s == NULL || (n = strlen(s)) == 0 || n > DSN_TOKEN_MAX)
        return 0;
    return dsn_dots_ok(s, n, 0);
}

/* dsn_atom_ok - a diagnostic-type or address-type: letter or digit, then
 * letters, digits and '-', at most 32 */
static int dsn_atom_ok(const char *s)
{
    size_t n;

    if (s == NULL || (n = strlen(s)) == 0 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c == '-' && i > 0)))
            return 0;
    }
    return 1;
}

/* dsn_status_ok - RFC 3463 §2 class "." subject "." detail, 1*3 digits
 * each, with a class that fits the action */
static int dsn_status_ok(const char *s, int action)
{
    size_t i = 1;

    if (s == NULL || s[0] == '\0')
        return 0;
    switch (action) {
    case DSN_ACTION_FAILED:
        if (s[0] != '4' && s[0] != '5')
            return 0;
        break;
    case DSN_ACTION_DELAYED:
        if (s[0] != '4')
            return 0;
        break;
    default:
        if (s[0] != '2')
            return 0;
    }
    for (int part = 0; part < 2; part++) {
        size_t d = 0;

        if (s[i++] != '.')
            return 0;
        while (s[i] >= '0' && s[i] <= '9' && d < 4)
            i++, d++;
        if (d == 0 || d > 3)
            return 0;
    }
    return s[i] == '\0';
}

/* dsn_sender_ok - the DSN's To: address: no controls, valid UTF-8 */
static int dsn_sender_ok(const char *s)
{
    size_t n = strlen(s);

    if (n > DSN_SENDER_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (dsn_is_ctl((unsigned char) s[i]))
            return 0;
    return text_is_utf8(s, n);
}

/* dsn_date - RFC 5322 §3.3 date-time in UTC, in English whatever the
 * locale; SY_ESYNTAX outside 1970..9999 */
static int dsn_date(char *dst, size_t size, int64_t us)
{
    static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    time_t t;
    struct tm tm;
    int n;

    if (us < 0 || us / 1000000 > DSN_TIME_MAX)
        return SY_ESYNTAX;
    t = (time_t) (us / 1000000);
    if (gmtime_r(&t, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 ||
        tm.tm_mon > 11)
        return SY_ESYNTAX;
    n = snprintf(dst, size, "%s, %d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
                 months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return n < 0 || (size_t) n >= size ? SY_ESYNTAX : SY_OK;
}

/* dsn_msgid - the original's Message-ID as "<id>" in dst, or "": the
 * first <...> of the value (or a bare id with '@'), printable ASCII with
 * no space, '<' or '>' inside (the value is repeated into two fields) */
static void dsn_msgid(const char *v, char *dst, size_t size)
{
    const char *a, *b;
    size_t n;
    int bare = 0;

    dst[0] = '\0';
    if (v == NULL)
        return;
    if ((a = strchr(v, '<')) != NULL) {
        a++;
        if ((b = strchr(a, '>')) == NULL)
            return;
    } else {
        a = v;
        while (*a == ' ' || *a == '\t')
            a++;
        b = a + strcspn(a, " \t");
        bare = 1;
    }
    n = (size_t) (b - a);
    if (n == 0 || n + 3 > size || (bare && memchr(a, '@', n) == NULL))
        return;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) a[i];

        if (c <= 0x20 || c >= 0x7f || c == '<' || c == '>')
            return;
    }
    dst[0] = '<';
    memcpy(dst + 1, a, n);
    dst[n + 1] = '>';
    dst[n + 2] = '\0';
}

/* ---- writers ---- */

/* dsn_clean - append s[0..n) as one line of text: runs of SP, TAB, CR and
 * LF become one space (none at either end), other controls '?', octets
 * >= 0x80 kept only as valid UTF-8 and only when utf8, else '?'. At most
 * max octets are kept, then " [...]" marks the cut.
 *
 * This is where peer text (a remote reply, an address) loses any CR or
 * LF it could use to start a header field of its own. */
static int dsn_clean(struct buf *b, const char *s, size_t n, int utf8, size_t max)
{
    size_t i = 0, used = 0;
    int space = 0;

    while (i < n) {
        unsigned char c = (unsigned char) s[i];
        const char *piece = "?";
        size_t plen = 1;

        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            space = used > 0;
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t l = utf8 ? dsn_utf8_char(s + i, n - i) : 0;

            if (l > 0) {
                piece = s + i;
                plen = l;
            }
            i += l > 0 ? l : 1;
        } else {
            if (!dsn_is_ctl(c))
                piece = s + i;
            i++;
        }
        if (used + (size_t) space + plen > max)
            return buf_append_str(b, " [...]");
        if ((space && buf_append_byte(b, ' ') != SY_OK) || buf_append(b, piece, plen) != SY_OK)
            return SY_ETOOBIG;
        used += (size_t) space + plen;
        space = 0;
    }
    return SY_OK;
}

/* dsn_wrap - lead, then the words of v (clean text: words separated by
 * single spaces), wrapped before a word that would pass width; a wrapped
 * line starts with cont. For a header field cont is " ", so the wrap is
 * RFC 5322 folding before an existing space and unfolding restores v; a
 * word longer than DSN_WORD_MAX is cut, which is the only case where
 * unfolding adds a space. Ends with CRLF. */
static int dsn_wrap(struct buf *b, const char *lead, const char *cont, const char *v, size_t n,
                    size_t width)
{
    size_t col = strlen(lead), contlen = strlen(cont), i = 0;
    int first = 1, rc = buf_append_str(b, lead);

    while (rc == SY_OK && i < n) {
        size_t e = i, off = 0;

        while (e < n && v[e] != ' ')
            e++;
        while (rc == SY_OK && off < e - i) {
            const char *w = v + i + off;
            size_t pl = e - i - off;

            if (pl > DSN_WORD_MAX)
                pl = dsn_utf8_cut(w, DSN_WORD_MAX);
            if (first) {
                rc = buf_append(b, w, pl);
                col += pl;
                first = 0;
            } else if (off == 0 && col + 1 + pl <= width) {
                if ((rc = buf_append_byte(b, ' ')) == SY_OK)
                    rc = buf_append(b, w, pl);
                col += 1 + pl;
            } else {
                if ((rc = buf_append(b, "\r\n", 2)) == SY_OK && (rc = buf_append_str(b, cont)) == SY_OK)
                    rc = buf_append(b, w, pl);
                col = contlen + pl;
            }
            off += pl;
        }
        i = e + 1;
    }
    return rc == SY_OK ? buf_append(b, "\r\n", 2) : rc;
}

/* dsn_field - "Name: value" folded at DSN_FOLD_COL; value is clean text */
static int dsn_field(struct buf *b, const char *name, const char *value, size_t n)
{
    char lead[64];
    int len = snprintf(lead, sizeof(lead), "%s: ", name);

    if (len < 0 || (size_t) len >= sizeof(lead))
        return SY_ETOOBIG;
    return dsn_wrap(b, lead, " ", value, n, DSN_FOLD_COL);
}

/* dsn_para - a paragraph of prose (clean text) wrapped at DSN_TEXT_COL */
static int dsn_para(struct buf *b, const char *lead, const char *cont, const struct buf *text)
{
    return dsn_wrap(b, lead, cont, buf_str(text), buf_len(text), DSN_TEXT_COL);
}

/* dsn_xtext - RFC 3461 §4 xtext: octets "!".."~" other than '+' and '='
 * as they are, every other octet as "+HH" */
static int dsn_xtext(struct buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        int rc = c >= 0x21 && c <= 0x7e && c != '+' && c != '='
                     ? buf_append_byte(b, c) : buf_printf(b, "+%02X", c);

        if (rc != SY_OK)
            return rc;
    }
    return SY_OK;
}

/* dsn_uxtext - RFC 6533 §3 utf-8-addr-xtext, the 7-bit form of a UTF-8
 * address: QCHARs (printable ASCII but '\', '+', '=') as is, other
 * characters as "\x{HEX}"; controls and invalid octets become '?' */
static int dsn_uxtext(struct buf *b, const char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned char c = (unsigned char) s[i];
        size_t l = dsn_utf8_char(s + i, n - i);
        uint32_t cp;
        int rc;

        if (c < 0x80 && c > 0x20 && c != 0x7f && c != '\\' && c != '+' && c != '=') {
            rc = buf_append_byte(b, c);
        } else if (c == ' ' || c == '\\' || c == '+' || c == '=') {
            rc = buf_printf(b, "\\x{%02X}", c);
        } else if (c < 0x80 || l == 0) {
            rc = buf_append_byte(b, '?');
            l = 1;
        } else {
            cp = c & (l == 2 ? 0x1f : l == 3 ? 0x0f : 0x07);
            for (size_t k = 1; k < l; k++)
                cp = (cp << 6) | ((unsigned char) s[i + k] & 0x3f);
            rc = buf_printf(b, "\\x{%02X}", (unsigned) cp);
        }
        if (rc != SY_OK)
            return rc;
        i += l > 0 ? l : 1;
    }
    return SY_OK;
}

/* dsn_copy_lines - append p[0..n) line by line with CRLF endings (the
 * original may end lines in CRLF, LF or a lone CR). A line longer than
 * DSN_LINE_MAX is broken: in a header section the rest goes on
 * continuation lines (" " + rest), in a body on lines of its own.
 * Without with_body, only the header section is copied (up to the first
 * empty line, exclusive); with it, the whole message. */
static int dsn_copy_lines(struct buf *b, const char *p, size_t n, int with_body)
{
    size_t i = 0;
    int header = 1;

    while (i < n) {
        size_t e = i, next, off = 0;

        while (e < n && p[e] != '\r' && p[e] != '\n')
            e++;
        next = e;
        if (next < n)
            next += (p[next] == '\r' && next + 1 < n && p[next + 1] == '\n') ? 2 : 1;
        if (header && e == i) {
            if (!with_body)
                return SY_OK;
            header = 0;
        }
        do {
            size_t room = off > 0 && header ? DSN_LINE_MAX - 1 : DSN_LINE_MAX;
            size_t len = e - i - off;

            if (len > room)
                len = dsn_utf8_cut(p + i + off, room);
            if ((off > 0 && header && buf_append_byte(b, ' ') != SY_OK) ||
                buf_append(b, p + i + off, len) != SY_OK || buf_append(b, "\r\n", 2) != SY_OK)
                return SY_ETOOBIG;
            off += len;
        } while (off < e - i);
        i = next;
    }
    return SY_OK;
}

/* dsn_header_len - octets of the header section of p[0..n): up to the
 * first empty line (any line ending), or all of it */
static size_t dsn_header_len(const char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        size_t e = i;

        while (e < n && p[e] != '\r' && p[e] != '\n')
            e++;
        if (e == i)
            return i;
        if (e == n)
            return n;
        i = e + ((p[e] == '\r' && e + 1 < n && p[e + 1] == '\n') ? 2 : 1);
    }
    return n;
}

/* ---- the three parts ---- */

/* dsn_addr_value - "<type>; <address>" for Final-/Original-Recipient */
static int dsn_addr_value(struct buf *v, const char *type, const char *addr, int global)
{
    size_t n = strlen(addr);

    if (buf_printf(v, "%s; ", type) != SY_OK)
        return SY_ETOOBIG;
    /* RFC 6533 §3: in the 7-bit message/delivery-status a UTF-8 address
     * is written as utf-8-addr-xtext; in the global type as is. */
    if (!global && strcmp(type, "utf-8") == 0)
        return dsn_uxtext(v, addr, n);
    return dsn_clean(v, addr, n, global, SIZE_MAX);
}

/* dsn_status_rcpt - one per-recipient block of part 2 (RFC 3464 §2.3) */
static int dsn_status_rcpt(struct dsn_ctx *c, const struct dsn_rcpt *r, struct buf *st)
{
    const struct env_rcpt *er = &c->env->rcpts[r->rcpt];
    const char *status = r->status;
    char date[DSN_DATE_SIZE];
    struct buf v;
    int rc = SY_OK;

    buf_init(&v, DSN_OUT_MAX);
    if (buf_append(st, "\r\n", 2) != SY_OK)
        rc = SY_ETOOBIG;
    /* RFC 3464 §2.3.1: Original-Recipient carries the ORCPT when given. */
    if (rc == SY_OK && er->orcpt_addr != NULL && er->orcpt_addr[0] != '\0' &&
        strlen(er->orcpt_addr) <= DSN_ORCPT_MAX && dsn_atom_ok(er->orcpt_type)) {
        char type[40];
        size_t tl = strlen(er->orcpt_type);

        for (size_t k = 0; k <= tl; k++)
            type[k] = (char) (er->orcpt_type[k] >= 'A' && er->orcpt_type[k] <= 'Z'
                                  ? er->orcpt_type[k] - 'A' + 'a' : er->orcpt_type[k]);
        if ((rc = dsn_addr_value(&v, type, er->orcpt_addr, c->global)) == SY_OK)
            rc = dsn_field(st, "Original-Recipient", buf_str(&v), buf_len(&v));
        buf_reset(&v);
    }
    if (rc == SY_OK) {
        rc = dsn_addr_value(&v, dsn_has_8bit(er->addr, strlen(er->addr)) ? "utf-8" : "rfc822",
                            er->addr, c->global);
        if (rc == SY_OK)
            rc = dsn_field(st, "Final-Recipient", buf_str(&v), buf_len(&v));
        buf_reset(&v);
    }
    if (status == NULL)
        status = r->action == DSN_ACTION_FAILED ? "5.0.0"
                 : r->action == DSN_ACTION_DELAYED ? "4.0.0" : "2.0.0";
    if (rc == SY_OK)
        rc = buf_printf(st, "Action: %s\r\nStatus: %s\r\n", dsn_action_name(r->action), status);
    if (rc == SY_OK && dsn_host_ok(r->remote_mta))
        rc = buf_printf(st, "Remote-MTA: dns; %s\r\n", r->remote_mta);
    if (rc == SY_OK && r->diagnostic != NULL) {
        rc = buf_printf(&v, "%s; ", r->diag_type != NULL ? r->diag_type : "smtp");
        if (rc == SY_OK) {
            size_t before = buf_len(&v);

            rc = dsn_clean(&v, r->diagnostic, strlen(r->diagnostic), c->global, DSN_DIAG_MAX);
            if (rc == SY_OK && buf_len(&v) > before)
                rc = dsn_field(st, "Diagnostic-Code", buf_str(&v), buf_len(&v));
        }
        buf_reset(&v);
    }
    if (rc == SY_OK && r->last_attempt_us > 0 &&
        (rc = dsn_date(date, sizeof(date), r->last_attempt_us)) == SY_OK)
        rc = buf_printf(st, "Last-Attempt-Date: %s\r\n", date);
    if (rc == SY_OK && r->action == DSN_ACTION_DELAYED && r->retry_until_us > 0 &&
        (rc = dsn_date(date, sizeof(date), r->retry_until_us)) == SY_OK)
        rc = buf_printf(st, "Will-Retry-Until: %s\r\n", date);
    buf_free(&v);
    return rc;
}

/* dsn_status_part - part 2: per-message fields, then one block per
 * recipient (RFC 3464 §2.2, §2.3) */
static int dsn_status_part(struct dsn_ctx *c, struct buf *st)
{
    const struct envelope *env = c->env;
    char date[DSN_DATE_SIZE];
    int rc = buf_printf(st, "Reporting-MTA: dns; %s\r\n", c->in->reporting_mta);

    /* RFC 3464 §2.2.1, RFC 3461 §4.4: the ENVID as given, in xtext (the
     * envelope keeps it decoded). Over-long values are left out. */
    if (rc == SY_OK && env->envid != NULL && env->envid[0] != '\0' &&
        strlen(env->envid) <= DSN_ENVID_MAX) {
        if ((rc = buf_append_str(st, "Original-Envelope-Id: ")) == SY_OK &&
            (rc = dsn_xtext(st, env->envid, strlen(env->envid))) == SY_OK)
            rc = buf_append(st, "\r\n", 2);
    }
    if (rc == SY_OK && env->arrival_us > 0 &&
        (rc = dsn_date(date, sizeof(date), env->arrival_us)) == SY_OK)
        rc = buf_printf(st, "Arrival-Date: %s\r\n", date);
    for (size_t k = 0; rc == SY_OK && k < c->in->nrcpts; k++)
        rc = dsn_status_rcpt(c, &c->in->rcpts[k], st);
    return rc;
}

/* dsn_text_rcpt - the human-readable lines about one recipient */
static int dsn_text_rcpt(struct dsn_ctx *c, const struct dsn_rcpt *r, struct buf *tx)
{
    const char *addr = c->env->rcpts[r->rcpt].addr;
    const char *remote = dsn_host_ok(r->remote_mta) ? r->remote_mta : NULL;
    struct buf p;
    int rc;

    buf_init(&p, DSN_OUT_MAX);
    rc = buf_append_byte(&p, '<');
    if (rc == SY_OK)
        rc = dsn_clean(&p, addr, strlen(addr), c->global, SIZE_MAX);
    if (rc == SY_OK)
        rc = buf_append_str(&p, ">: ");
    if (rc == SY_OK) {
        switch (r->action) {
        case DSN_ACTION_FAILED:
            rc = buf_append_str(&p, "delivery failed; no further attempts will be made.");
            break;
        case DSN_ACTION_DELAYED: {
            char date[DSN_DATE_SIZE];

            if (r->retry_until_us > 0 && dsn_date(date, sizeof(date), r->retry_until_us) == SY_OK)
                rc = buf_printf(&p, "not delivered yet; delivery will be retried until %s.", date);
            else
                rc = buf_append_str(&p, "not delivered yet; delivery is still being retried.");
            break;
        }
        case DSN_ACTION_DELIVERED:
            rc = buf_append_str(&p, "delivered.");
            break;
        case DSN_ACTION_RELAYED:
            rc = buf_printf(&p, "delivered to the next server%s%s, which does not report "
                            "final delivery.", remote != NULL ? " " : "",
                            remote != NULL ? remote : "");
            break;
        default:
            rc = buf_append_str(&p, "delivered to a mailing list or alias, which passed it on "
                                "to its members.");
        }
    }
    if (rc == SY_OK && (rc = buf_append(tx, "\r\n", 2)) == SY_OK)
        rc = dsn_para(tx, "", "    ", &p);
    buf_reset(&p);
    if (rc == SY_OK && r->diagnostic != NULL) {
        int smtp = r->diag_type == NULL;

        if (remote != NULL && smtp)
            rc = buf_printf(&p, "The server %s said: ", remote);
        else
            rc = buf_append_str(&p, smtp ? "The server said: " : "Reason: ");
        if (rc == SY_OK) {
            size_t before = buf_len(&p);

            rc = dsn_clean(&p, r->diagnostic, strlen(r->diagnostic), c->global, DSN_DIAG_MAX);
            if (rc == SY_OK && buf_len(&p) > before)
                rc = dsn_para(tx, "    ", "    ", &p);
        }
    }
    buf_free(&p);
    return rc;
}

/* dsn_text_part - part 1: what happened, in words */
static int dsn_text_part(struct dsn_ctx *c, struct buf *tx)
{
    const struct dsn_input *in = c->in;
    char date[DSN_DATE_SIZE];
    struct buf p;
    int rc;

    buf_init(&p, DSN_OUT_MAX);
    rc = buf_printf(tx, "This is the mail system at host %s.\r\n\r\n", in->reporting_mta);
    if (rc == SY_OK) {
        switch (c->kind) {
        case DSN_KIND_FAILED:
            rc = buf_append_str(&p, "I'm sorry to have to tell you that your message could not be "
                                "delivered to one or more of its recipients. The details are "
                                "below.");
            break;
        case DSN_KIND_DELAYED:
            rc = buf_append_str(&p, "This is a warning only: you do not need to send your "
                                "message again. It has not yet been delivered to the "
                                "recipients below, and delivery is still being retried.");
            break;
        default:
            rc = buf_append_str(&p, "This is the delivery report you asked for.");
        }
    }
    if (rc == SY_OK && c->env->arrival_us > 0 &&
        dsn_date(date, sizeof(date), c->env->arrival_us) == SY_OK)
        rc = buf_printf(&p, " Your message was received on %s.", date);
    if (rc == SY_OK)
        rc = dsn_para(tx, "", "", &p);
    for (size_t k = 0; rc == SY_OK && k < in->nrcpts; k++)
        rc = dsn_text_rcpt(c, &in->rcpts[k], tx);
    buf_reset(&p);
    if (rc == SY_OK) {
        switch (c->note) {
        case DSN_NOTE_FULL:
            rc = buf_append_str(&p, "Your message is attached.");
            break;
        case DSN_NOTE_HEADERS:
            rc = buf_append_str(&p, "The header of your message is attached.");
            break;
        case DSN_NOTE_TOO_BIG:
            rc = buf_printf(&p, "Your message is too large to return in full (%zu octets; the "
                            "limit is %zu): only its header is attached.", in->msg_len,
                            c->cap);
            break;
        case DSN_NOTE_HDR_TOO_BIG:
            rc = buf_printf(&p, "The header of your message is too large to attach (%zu octets; "
                            "the limit is %zu).", c->hdr_len, c->cap);
            break;
        default:
            rc = buf_append_str(&p, "Your message is no longer available and is not attached.");
        }
    }
    if (rc == SY_OK && (rc = buf_append(tx, "\r\n", 2)) == SY_OK)
        rc = dsn_para(tx, "", "", &p);
    buf_free(&p);
    return rc;
}

/* dsn_return_part - part 3's content, as decided in dsn_plan() */
static int dsn_return_part(const struct dsn_ctx *c, struct buf *rt)
{
    if (c->returned == DSN_RETURNED_FULL)
        return dsn_copy_lines(rt, c->in->msg, c->in->msg_len, 1);
    if (c->returned == DSN_RETURNED_HEADERS)
        return dsn_copy_lines(rt, c->in->msg, c->hdr_len, 0);
    return SY_OK;
}

/* ---- boundary ---- */

/* dsn_find - first occurrence of needle (nlen > 0) in p[0..n), or NULL
 * (memmem is a GNU extension) */
static const char *dsn_find(const char *p, size_t n, const char *needle, size_t nlen)
{
    const char *end = p + n;

    while ((size_t) (end - p) >= nlen) {
        const char *hit = memchr(p, needle[0], (size_t) (end - p) - nlen + 1);

        if (hit == NULL)
            return NULL;
        if (memcmp(hit, needle, nlen) == 0)
            return hit;
        p = hit + 1;
    }
    return NULL;
}

/* dsn_boundary_scan - count occurrences of base in p[0..n); when mark is
 * not NULL, mark each "." + 8-digit suffix number below nmark */
static size_t dsn_boundary_scan(const char *p, size_t n, const char *base, size_t blen,
                                unsigned char *mark, size_t nmark)
{
    size_t count = 0, i = 0;

    while (i + blen <= n) {
        const char *hit = dsn_find(p + i, n - i, base, blen);
        size_t at;

        if (hit == NULL)
            break;
        at = (size_t) (hit - p) + blen;
        count++;
        if (mark != NULL && at < n && p[at] == '.') {
            size_t v = 0, d;

            for (d = 0; d < DSN_BOUNDARY_DIGITS && at + 1 + d < n && p[at + 1 + d] >= '0' &&
                        p[at + 1 + d] <= '9'; d++)
                v = v * 10 + (size_t) (p[at + 1 + d] - '0');
            if (d == DSN_BOUNDARY_DIGITS && v < nmark)
                mark[v] = 1;
        }
        i = (size_t) (hit - p) + 1;
    }
    return count;
}

/* dsn_boundary - a boundary found in none of the parts: "=_" + token, or,
 * when that string occurs K times in the parts, "=_" + token + "." + the
 * first 8-digit number in 0..K no occurrence is followed by. Each
 * occurrence rules out at most one number, so one exists (K stays far
 * below 10^8 under DSN_OUT_MAX), and no retry loop is needed however
 * hostile the content. */
static void dsn_boundary(const char *token, const struct buf *const *parts, size_t nparts,
                         char *dst, size_t size)
{
    size_t tl = strlen(token), blen, count = 0, pick = 0;
    size_t tmax = DSN_BOUNDARY_LEN_MAX - strlen(DSN_BOUNDARY_PREFIX) - 1 - DSN_BOUNDARY_DIGITS;
    unsigned char *mark;

    if (tl > tmax)
        tl = tmax;
    (void) snprintf(dst, size, "%s%.*s", DSN_BOUNDARY_PREFIX, (int) tl, token);
    blen = strlen(dst);
    for (size_t k = 0; k < nparts; k++)
        count += dsn_boundary_scan(buf_str(parts[k]), buf_len(parts[k]), dst, blen, NULL, 0);
    if (count == 0)
        return;
    mark = xcalloc(count + 1, 1);
    for (size_t k = 0; k < nparts; k++)
        (void) dsn_boundary_scan(buf_str(parts[k]), buf_len(parts[k]), dst, blen, mark, count + 1);
    while (mark[pick])
        pick++;
    free(mark);
    (void) snprintf(dst + blen, size - blen, ".%0*zu", DSN_BOUNDARY_DIGITS, pick);
}

/* ---- assembly ---- */

/* dsn_check - the caller's inputs; SY_OK or the error of dsn.h */
static int dsn_check(const struct dsn_input *in, struct sy_err *err)
{
    const struct envelope *env = in->env;
    char date[DSN_DATE_SIZE];

    if (env == NULL)
        return sy_err_set(err, SY_ESYNTAX, "5.3.0", "DSN: no envelope");
    if (env->sender == NULL || env->sender[0] == '\0')
        return sy_err_set(err, SY_EPERM, "5.1.7", "DSN: never to a null sender");
    if (!dsn_sender_ok(env->sender))
        return sy_err_set(err, SY_ESYNTAX, "5.1.7", "DSN: unusable sender address");
    if (in->rcpts == NULL || in->nrcpts == 0)
        return sy_err_set(err, SY_ESYNTAX, "5.3.0", "DSN: no recipients to report");
    if (!dsn_host_ok(in->reporting_mta))
        return sy_err_set(err, SY_ESYNTAX, "5.3.0", "DSN: bad reporting MTA name");
    if (!dsn_token_ok(in->token))
        return sy_err_set(err, SY_ESYNTAX, "5.3.0", "DSN: bad token");
    if (dsn_date(date, sizeof(date), in->now_us) != SY_OK)
        return sy_err_set(err, SY_ESYNTAX, "5.3.0", "DSN: bad current time");
    if (env->arrival_us < 0 || (env->arrival_us > 0 &&
                                dsn_date(date, sizeof(date), env->arrival_us) != SY_OK))
        return sy_err_set(err, SY_ESYNTAX, "5.3.0", "DSN: bad arrival time");
    for (size_t k = 0; k < in->nrcpts; k++) {
        const struct dsn_rcpt *r = &in->rcpts[k];

        if (r->rcpt >= env->nrcpt || env->rcpts[r->rcpt].addr == NULL ||
            env->rcpts[r->rcpt].addr[0] == '\0')
            return sy_err_set(err, SY_ESYNTAX, "5.3.0", "DSN: result %zu: no such recipient", k);
        if (dsn_action_name(r->action) == NULL)
            return sy_err_set(err, SY_ESYNTAX, "5.3.0", "DSN: result %zu: bad action", k);
        if (r->status != NULL && !dsn_status_ok(r->status, r->action))
            return sy_err_set(err, SY_ESYNTAX, "5.3.0", "DSN: result %zu: bad status for %s", k,
                              dsn_action_name(r->action));
        if (r->diag_type != NULL && !dsn_atom_ok(r->diag_type))
            return sy_err_set(err, SY_ESYNTAX, "5.3.0", "DSN: result %zu: bad diagnostic type", k);
        if (r->last_attempt_us < 0 || r->retry_until_us < 0 ||
            (r->last_attempt_us > 0 && dsn_date(date, sizeof(date), r->last_attempt_us) != SY_OK) ||
            (r->retry_until_us > 0 && dsn_date(date, sizeof(date), r->retry_until_us) != SY_OK))
            return sy_err_set(err, SY_ESYNTAX, "5.3.0", "DSN: result %zu: bad time", k);
    }
    return SY_OK;
}

/* dsn_plan - kind, RFC 6533 mode, and what part 3 returns */
static void dsn_plan(struct dsn_ctx *c)
{
    const struct dsn_input *in = c->in;
    const struct envelope *env = c->env;
    size_t cap = in->return_max < DSN_RETURN_CAP ? in->return_max : DSN_RETURN_CAP;
    int failed = 0, delayed = 0, full;

    c->global = (env->flags & ENV_F_SMTPUTF8) != 0 ||
                dsn_has_8bit(env->sender, strlen(env->sender));
    for (size_t k = 0; k < in->nrcpts; k++) {
        const char *a = env->rcpts[in->rcpts[k].rcpt].addr;

        failed |= in->rcpts[k].action == DSN_ACTION_FAILED;
        delayed |= in->rcpts[k].action == DSN_ACTION_DELAYED;
        if (dsn_has_8bit(a, strlen(a)))
            c->global = 1;
    }
    c->kind = failed ? DSN_KIND_FAILED : delayed ? DSN_KIND_DELAYED : DSN_KIND_SUCCESS;

    /* RFC 3461 §4.3: RET=FULL asks for the content in "failed" DSNs;
     * delay and success reports carry headers only (as Postfix does). */
    full = env->ret == ENV_RET_FULL && failed;
    if (in->msg == NULL) {
        c->returned = DSN_RETURNED_NONE;
        c->note = DSN_NOTE_UNAVAILABLE;
        return;
    }
    c->cap = cap;
    c->hdr_len = dsn_header_len(in->msg, in->msg_len);
    if (full && in->msg_len <= cap) {
        c->returned = DSN_RETURNED_FULL;
        c->note = DSN_NOTE_FULL;
    } else if (c->hdr_len <= cap) {
        c->returned = DSN_RETURNED_HEADERS;
        c->note = full ? DSN_NOTE_TOO_BIG : DSN_NOTE_HEADERS;
    } else {
        c->returned = DSN_RETURNED_NONE;
        c->note = DSN_NOTE_HDR_TOO_BIG;
    }
}

/* dsn_part_head - delimiter and header of one body part */
static int dsn_part_head(struct buf *b, const char *boundary, const char *desc, const char *type,
                         const struct buf *body)
{
    return buf_printf(b, "\r\n--%s\r\nContent-Description: %s\r\nContent-Type: %s\r\n"
                      "Content-Transfer-Encoding: %s\r\n\r\n", boundary, desc, type,
                      dsn_is_8bit_data(buf_str(body), buf_len(body)) ? "8bit" : "7bit");
}

/* dsn_assemble - header, preamble, parts, close delimiter */
static int dsn_assemble(struct dsn_ctx *c, const char *boundary, struct buf *tx, struct buf *st,
                        struct buf *rt, struct buf *b)
{
    static const char *const subjects[] = {
        "Undelivered Mail Returned to Sender", "Delayed Mail (still being retried)",
        "Successful Mail Delivery Report"
    };
    const struct dsn_input *in = c->in;
    char date[DSN_DATE_SIZE];
    int eight = dsn_is_8bit_data(buf_str(tx), buf_len(tx)) ||
                dsn_is_8bit_data(buf_str(st), buf_len(st)) ||
                (c->returned != DSN_RETURNED_NONE && dsn_is_8bit_data(buf_str(rt), buf_len(rt)));
    int rc;

    (void) dsn_date(date, sizeof(date), in->now_us);
    rc = buf_printf(b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\nTo: <%s>\r\n"
                    "Subject: %s\r\nDate: %s\r\nMessage-ID: <%s@%s>\r\n", in->reporting_mta,
                    c->env->sender, subjects[c->kind], date, in->token, in->reporting_mta);
    /* RFC 5322 §3.6.4: the report answers the original. */
    if (rc == SY_OK && c->msgid[0] != '\0')
        rc = buf_printf(b, "In-Reply-To: %s\r\nReferences: %s\r\n", c->msgid, c->msgid);
    /* RFC 3834 §5: an automatic response; RFC 6522 §3: report-type. */
    if (rc == SY_OK)
        rc = buf_printf(b, "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
                        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
                        " boundary=\"%s\"\r\nContent-Transfer-Encoding: %s\r\n\r\n"
                        "This is a MIME-encapsulated message.\r\n", boundary,
                        eight ? "8bit" : "7bit");
    if (rc == SY_OK)
        rc = dsn_part_head(b, boundary, "Notification",
                           c->global ? "text/plain; charset=utf-8" : "text/plain; charset=us-ascii",
                           tx);
    if (rc == SY_OK)
        rc = buf_append(b, buf_str(tx), buf_len(tx));
    if (rc == SY_OK)
        rc = dsn_part_head(b, boundary, "Delivery report",
                           c->global ? "message/global-delivery-status" : "message/delivery-status",
                           st);
    if (rc == SY_OK)
        rc = buf_append(b, buf_str(st), buf_len(st));
    if (rc == SY_OK && c->returned != DSN_RETURNED_NONE) {
        int full = c->returned == DSN_RETURNED_FULL;
        const char *rtype, *rdesc;

        if (c->global)
            rtype = full ? "message/global" : "message/global-headers";
        else
            rtype = full ? "message/rfc822" : "text/rfc822-headers";
        if (c->kind == DSN_KIND_FAILED)
            rdesc = full ? "Undelivered Message" : "Undelivered Message Headers";
        else
            rdesc = full ? "Message" : "Message Headers";
        rc = dsn_part_head(b, boundary, rdesc, rtype, rt);
        if (rc == SY_OK)
            rc = buf_append(b, buf_str(rt), buf_len(rt));
    }
    if (rc == SY_OK)
        rc = buf_printf(b, "\r\n--%s--\r\n", boundary);
    return rc;
}

int dsn_compose(const struct dsn_input *in, struct buf *out, struct dsn_info *info,
                struct sy_err *err)
{
    struct dsn_ctx c;
    struct buf tx, st, rt, b;
    char boundary[DSN_BOUNDARY_SIZE];
    int rc;

    if (in == NULL)
        return sy_err_set(err, SY_ESYNTAX, "5.3.0", "DSN: no input");
    if ((rc = dsn_check(in, err)) != SY_OK)
        return rc;
    memset(&c, 0, sizeof(c));
    c.in = in;
    c.env = in->env;
    dsn_msgid(c.env->message_id, c.msgid, sizeof(c.msgid));
    dsn_plan(&c);

    buf_init(&tx, DSN_OUT_MAX);
    buf_init(&st, DSN_OUT_MAX);
    buf_init(&rt, DSN_OUT_MAX);
    buf_init(&b, DSN_OUT_MAX);
    rc = dsn_text_part(&c, &tx);
    if (rc == SY_OK)
        rc = dsn_status_part(&c, &st);
    if (rc == SY_OK)
        rc = dsn_return_part(&c, &rt);
    if (rc == SY_OK) {
        const struct buf *parts[3] = { &tx, &st, &rt };

        dsn_boundary(in->token, parts, 3, boundary, sizeof(boundary));
        rc = dsn_assemble(&c, boundary, &tx, &st, &rt, &b);
    }
    if (rc == SY_OK && buf_append(out, buf_str(&b), buf_len(&b)) != SY_OK)
        rc = SY_ETOOBIG;
    if (rc == SY_OK && info != NULL) {
        int eight = dsn_is_8bit_data(buf_str(&b), buf_len(&b));

        /* SMTPUTF8 only when a global DSN really carries UTF-8. */
        info->flags = (c.global && eight ? DSN_OUT_SMTPUTF8 : 0) | (eight ? DSN_OUT_8BIT : 0);
        info->returned = c.returned;
        memcpy(info->boundary, boundary, strlen(boundary) + 1);
    }
    buf_free(&tx);
    buf_free(&st);
    buf_free(&rt);
    buf_free(&b);
    if (rc != SY_OK)
        return sy_err_set(err, SY_ETOOBIG, "5.3.4", "DSN: message too large to compose");
    return SY_OK;
}
