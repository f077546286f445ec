/* ehlo.c - EHLO capability parsing
 *
 * ehlo-line = ehlo-keyword *( SP ehlo-param ) (RFC 5321 §4.1.1.1), with
 * ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"). Parameters are
 * split on runs of SP (and HTAB, which some servers send). The only
 * other form accepted is the pre-RFC 4954 "AUTH=mech mech" line that old
 * Microsoft servers still send next to "AUTH mech mech".
 *
 * Thread safety: reentrant; no shared state.
 */
#include "gateway/smtp/ehlo.h"

#include <string.h>

#include "gateway/util/text.h"

/* SIZE values above this are treated as unusable: size arithmetic in
 * the client (size + headers) then cannot overflow. */
#define SMTP_EHLO_SIZE_LIMIT ((uint64_t) INT64_MAX)

struct smtp_ehlo_kw {
    const char *name;
    unsigned ext;
};

static const struct smtp_ehlo_kw smtp_ehlo_kws[] = {
    { "PIPELINING", SMTP_EXT_PIPELINING },
    { "SIZE", SMTP_EXT_SIZE },
    { "8BITMIME", SMTP_EXT_8BITMIME },
    { "SMTPUTF8", SMTP_EXT_SMTPUTF8 },
    { "DSN", SMTP_EXT_DSN },
    { "STARTTLS", SMTP_EXT_STARTTLS },
    { "ENHANCEDSTATUSCODES", SMTP_EXT_ENHANCEDSTATUSCODES },
    { "CHUNKING", SMTP_EXT_CHUNKING },
    { "BINARYMIME", SMTP_EXT_BINARYMIME },
    { "REQUIRETLS", SMTP_EXT_REQUIRETLS },
    { "AUTH", SMTP_EXT_AUTH },
};

void smtp_ehlo_init(struct smtp_ehlo *c)
{
    memset(c, 0, sizeof(*c));
}

/* smtp_ehlo_alnum - ASCII letter or digit, whatever the locale */
static bool smtp_ehlo_alnum(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z');
}

/* smtp_ehlo_upper - ASCII uppercase, whatever the locale */
static char smtp_ehlo_upper(unsigned char ch)
{
    return (char) (ch >= 'a' && ch <= 'z' ? ch - 'a' + 'A' : ch);
}

/* smtp_ehlo_space - the parameter separators */
static bool smtp_ehlo_space(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* smtp_ehlo_word - the next word at t[*i..n) after skipping separators:
 * sets *w and *wn, advances *i past it. False at the end of the line. */
static bool smtp_ehlo_word(const char *t, size_t n, size_t *i, const char **w, size_t *wn)
{
    size_t k;

    while (*i < n && smtp_ehlo_space(t[*i]))
        (*i)++;
    if (*i >= n)
        return false;
    k = *i;
    while (k < n && !smtp_ehlo_space(t[k]))
        k++;
    *w = t + *i;
    *wn = k - *i;
    *i = k;
    return true;
}

void smtp_ehlo_set_name(struct smtp_ehlo *c, const char *t, size_t n)
{
    size_t i = 0, wn = 0, k;
    const char *w = "";

    (void) smtp_ehlo_word(t, n, &i, &w, &wn);
    if (wn > SMTP_EHLO_NAME_MAX - 1)
        wn = SMTP_EHLO_NAME_MAX - 1;
    for (k = 0; k < wn; k++) {
        unsigned char ch = (unsigned char) w[k];

        c->name[k] = (char) ((ch > 0x20 && ch < 0x7f) ? ch : '?');
    }
    c->name[k] = '\0';
}

/* smtp_ehlo_add_mech - one AUTH mechanism name (RFC 4422 §3.1 syntax) */
static void smtp_ehlo_add_mech(struct smtp_ehlo *c, const char *w, size_t wn)
{
    char m[SMTP_EHLO_MECH_LEN_MAX + 1];

    if (wn == 0 || wn > SMTP_EHLO_MECH_LEN_MAX) {
        c->mechs_dropped++;
        return;
    }
    for (size_t k = 0; k < wn; k++) {
        unsigned char ch = (unsigned char) w[k];

        if (!smtp_ehlo_alnum(ch) && ch != '-' && ch != '_') {
            c->mechs_dropped++;
            return;
        }
        m[k] = smtp_ehlo_upper(ch);
    }
    m[wn] = '\0';
    for (size_t k = 0; k < c->nmechs; k++)
        if (strcmp(c->mechs[k], m) == 0) {
            c->mechs_dropped++;
            return;
        }
    if (c->nmechs >= SMTP_EHLO_MECHS_MAX) {
        c->mechs_dropped++;
        return;
    }
    memcpy(c->mechs[c->nmechs++], m, wn + 1);
}

/* smtp_ehlo_add_other - keep an unknown (well-formed) keyword for logs */
static void smtp_ehlo_add_other(struct smtp_ehlo *c, const char *kw, size_t kn)
{
    char u[SMTP_EHLO_KEYWORD_LEN_MAX + 1];

    if (kn > SMTP_EHLO_KEYWORD_LEN_MAX) {
        c->others_dropped++;
        return;
    }
    for (size_t k = 0; k < kn; k++)
        u[k] = smtp_ehlo_upper((unsigned char) kw[k]);
    u[kn] = '\0';
    for (size_t k = 0; k < c->nothers; k++)
        if (strcmp(c->others[k], u) == 0)
            return;
    if (c->nothers >= SMTP_EHLO_OTHERS_MAX) {
        c->others_dropped++;
        return;
    }
    memcpy(c->others[c->nothers++], u, kn + 1);
}

/* smtp_ehlo_size - the SIZE parameter (RFC 1870 §4): 1*DIGIT, 0 = no limit */
static void smtp_ehlo_size(struct smtp_ehlo *c, const char *w, size_t wn)
{
    uint64_t v;

    if (text_parse_u64(w, wn, 0, SMTP_EHLO_SIZE_LIMIT, &v) != SY_OK) {
        c->size_bogus = true;
        return;
    }
    if (v != 0 && (c->size_max == 0 || v < c->size_max))
        c->size_max = v;
}

void smtp_ehlo_add_line(struct smtp_ehlo *c, const char *t, size_t n)
{
    size_t i = 0, kn = 0, wn;
    const char *w;
    unsigned ext = 0;

    while (i < n && smtp_ehlo_space(t[i]))
        i++;
    /* The keyword: (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"). */
    if (i >= n || !smtp_ehlo_alnum((unsigned char) t[i])) {
        c->others_dropped++;
        return;
    }
    while (i + kn < n && (smtp_ehlo_alnum((unsigned char) t[i + kn]) || t[i + kn] == '-'))
        kn++;
    w = t + i;
    i += kn;
    if (i < n && t[i] == '=' && text_ieq(w, kn, "AUTH")) {
        i++;        /* "AUTH=PLAIN LOGIN": the first mechanism follows the '=' */
    } else if (i < n && !smtp_ehlo_space(t[i])) {
        c->others_dropped++;
        return;
    }
    for (size_t k = 0; k < sizeof(smtp_ehlo_kws) / sizeof(smtp_ehlo_kws[0]); k++)
        if (text_ieq(w, kn, smtp_ehlo_kws[k].name)) {
            ext = smtp_ehlo_kws[k].ext;
            break;
        }
    if (ext == 0) {
        smtp_ehlo_add_other(c, w, kn);
        return;
    }
    c->ext |= ext;
    if (ext == SMTP_EXT_SIZE) {
        /* Only the first parameter counts; "SIZE" alone declares none. */
        if (smtp_ehlo_word(t, n, &i, &w, &wn))
            smtp_ehlo_size(c, w, wn);
    } else if (ext == SMTP_EXT_AUTH) {
        while (smtp_ehlo_word(t, n, &i, &w, &wn))
            smtp_ehlo_add_mech(c, w, wn);
    }
}

int smtp_ehlo_parse(const struct smtp_reply *r, struct smtp_ehlo *c, struct sy_err *err)
{
    size_t n;
    const char *t;

    smtp_ehlo_init(c);
    if (!smtp_reply_is_positive(r) || smtp_reply_nlines(r) == 0)
        return sy_err_set(err, SY_ESYNTAX, "4.5.0", "EHLO: not a positive reply: %s",
                          smtp_reply_full(r));
    t = smtp_reply_line(r, 0, &n);
    smtp_ehlo_set_name(c, t, n);
    for (size_t k = 1; k < smtp_reply_nlines(r); k++) {
        t = smtp_reply_line(r, k, &n);
        smtp_ehlo_add_line(c, t, n);
    }
    return SY_OK;
}

const char *smtp_ehlo_mech(const struct smtp_ehlo *c, size_t i)
{
    return i < c->nmechs ? c->mechs[i] : "";
}

bool smtp_ehlo_has_mech(const struct smtp_ehlo *c, const char *mech)
{
    size_t n = strlen(mech);

    for (size_t k = 0; k < c->nmechs; k++)
        if (text_ieq(mech, n, c->mechs[k]))
            return true;
    return false;
}
