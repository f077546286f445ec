/* milter_msg.c - envelope from MAIL/RCPT arguments, byte-exact header and
 * body rebuild, capture selection (no libmilter, no I/O) */
#include "milter/milter_msg.h"

#include <stdlib.h>
#include <string.h>

#include "gateway/util/text.h"
#include "gateway/util/xalloc.h"
#include "lmtp/lmtp_proto.h"
#include "rules/match.h"

/* milter_param - "KEY=value" or "KEY": true for key, *val the value or NULL */
static bool milter_param(const char *a, const char *key, const char **val)
{
    size_t k = strlen(key);

    if (strlen(a) < k || !text_ieq(a, k, key))
        return false;
    if (a[k] == '\0') {
        *val = NULL;
        return true;
    }
    if (a[k] != '=')
        return false;
    *val = a + k + 1;
    return true;
}

/* milter_path - the mailbox of "<path>" (the whole argument) */
static int milter_path(const char *arg, bool utf8, bool allow_null, char **addr, struct sy_err *err)
{
    struct lmtp_reply rep;
    size_t used = 0, n = strlen(arg);

    *addr = NULL;
    if (lmtp_parse_path(arg, n, utf8, allow_null, addr, &used, &rep) != SY_OK) {
        (void) sy_err_set(err, SY_ESYNTAX, rep.enh, "%s", rep.text);
        return SY_ESYNTAX;
    }
    if (used != n || *addr == NULL) {
        free(*addr);
        *addr = NULL;
        (void) sy_err_set(err, SY_ESYNTAX, "5.5.4", "junk after the address");
        return SY_ESYNTAX;
    }
    return SY_OK;
}

int milter_parse_mail(char *const *argv, struct envelope *env, struct sy_err *err)
{
    bool utf8 = false;
    char *addr = NULL, *envid = NULL;
    int ret = ENV_RET_UNSET, body = ENV_BODY_UNSET;
    uint64_t size = 0;
    size_t i;

    if (argv == NULL || argv[0] == NULL)
        return sy_err_set(err, SY_ESYNTAX, "5.5.4", "no reverse-path");
    for (i = 1; i < MILTER_ARGS_MAX && argv[i] != NULL; i++) {
        const char *v;

        if (milter_param(argv[i], "SMTPUTF8", &v) && v == NULL)
            utf8 = true;
    }
    if (milter_path(argv[0], utf8, true, &addr, err) != SY_OK)
        return SY_ESYNTAX;
    for (i = 1; i < MILTER_ARGS_MAX && argv[i] != NULL; i++) {
        const char *v;

        if (milter_param(argv[i], "RET", &v) && v != NULL) {
            if (text_ieq(v, strlen(v), "FULL"))
                ret = ENV_RET_FULL;
            else if (text_ieq(v, strlen(v), "HDRS"))
                ret = ENV_RET_HDRS;
        } else if (milter_param(argv[i], "BODY", &v) && v != NULL) {
            if (text_ieq(v, strlen(v), "8BITMIME"))
                body = ENV_BODY_8BITMIME;
            else if (text_ieq(v, strlen(v), "7BIT"))
                body = ENV_BODY_7BIT;
        } else if (milter_param(argv[i], "ENVID", &v) && v != NULL && envid == NULL) {
            size_t len;

            if (lmtp_xtext_decode(v, strlen(v), &envid, &len) != SY_OK)
                envid = NULL;           /* the MTA accepted it; we just do not keep it */
        } else if (milter_param(argv[i], "SIZE", &v) && v != NULL) {
            if (text_parse_u64(v, strlen(v), 0, UINT64_MAX, &size) != SY_OK)
                size = 0;
        }
    }
    env_set(&env->sender, addr);
    free(addr);
    free(env->envid);
    env->envid = envid;
    env->ret = ret;
    env->body = body;
    env->size_declared = size;
    if (utf8)
        env->flags |= ENV_F_SMTPUTF8;
    return SY_OK;
}

int milter_parse_rcpt(char *const *argv, bool smtputf8, struct env_rcpt *r, struct sy_err *err)
{
    char *addr = NULL;

    if (argv == NULL || argv[0] == NULL)
        return sy_err_set(err, SY_ESYNTAX, "5.5.4", "no forward-path");
    if (milter_path(argv[0], smtputf8, false, &addr, err) != SY_OK)
        return SY_ESYNTAX;
    if (addr[0] == '\0') {
        free(addr);
        return sy_err_set(err, SY_ESYNTAX, "5.1.3", "empty recipient");
    }
    r->addr = addr;
    for (size_t i = 1; i < MILTER_ARGS_MAX && argv[i] != NULL; i++) {
        const char *v;

        if (milter_param(argv[i], "NOTIFY", &v) && v != NULL) {
            unsigned bits = 0;
            const char *p = v;

            while (*p != '\0') {
                const char *c = strchr(p, ',');
                size_t n = c != NULL ? (size_t) (c - p) : strlen(p);

                if (text_ieq(p, n, "SUCCESS"))
                    bits |= ENV_NOTIFY_SUCCESS;
                else if (text_ieq(p, n, "FAILURE"))
                    bits |= ENV_NOTIFY_FAILURE;
                else if (text_ieq(p, n, "DELAY"))
                    bits |= ENV_NOTIFY_DELAY;
                else if (text_ieq(p, n, "NEVER"))
                    bits |= ENV_NOTIFY_NEVER;
                p += n;
                if (*p == ',')
                    p++;
            }
            /* NEVER excludes the others (RFC 3461 §4.1): keep it alone. */
            r->notify = (bits & ENV_NOTIFY_NEVER) ? ENV_NOTIFY_NEVER : bits;
        } else if (milter_param(argv[i], "ORCPT", &v) && v != NULL && r->orcpt_type == NULL) {
            const char *semi = strchr(v, ';');
            char *dec = NULL;
            size_t len;

            if (semi != NULL && semi > v && semi - v <= 32 &&
                lmtp_xtext_decode(semi + 1, strlen(semi + 1), &dec, &len) == SY_OK) {
                r->orcpt_type = xmemdup0(v, (size_t) (semi - v));
                r->orcpt_addr = dec;
            }
        }
    }
    return SY_OK;
}

bool milter_capture_match(const struct cfg_milter_listener *l, const char *addr)
{
    size_t dn;
    const char *d;

    if (l->ncapture_domains == 0 && l->ncapture_addresses == 0)
        return true;
    d = rules_addr_domain(addr, &dn);
    for (size_t i = 0; i < l->ncapture_domains; i++)
        if (rules_domain_match(l->capture_domains[i], d, dn))
            return true;
    for (size_t i = 0; i < l->ncapture_addresses; i++)
        if (rules_addr_match(l->capture_addresses[i], addr))
            return true;
    return false;
}

int milter_header_line(struct buf *out, const char *name, const char *value, bool leadspc)
{
    int rc;

    /* RFC 5322 §2.2: a field name is printable US-ASCII but ':'. */
    if (name[0] == '\0')
        return SY_ESYNTAX;
    for (const char *p = name; *p != '\0'; p++)
        if (*p < 33 || *p > 126 || *p == ':')
            return SY_ESYNTAX;
    rc = buf_append_str(out, name);

    if (rc == SY_OK)
        rc = buf_append_byte(out, ':');
    if (rc == SY_OK && !leadspc && value[0] != '\0')
        rc = buf_append_byte(out, ' ');
    for (const char *p = value; rc == SY_OK && *p != '\0'; p++) {
        if (*p == '\n' && (p == value || p[-1] != '\r'))
            rc = buf_append_byte(out, '\r');
        if (rc == SY_OK)
            rc = buf_append_byte(out, (unsigned char) *p);
    }
    if (rc == SY_OK)
        rc = buf_append(out, "\r\n", 2);
    return rc;
}

void milter_eol_init(struct milter_eol *s)
{
    s->last = -1;
    s->prev = -1;
}

void milter_eol_note(struct milter_eol *s, const unsigned char *p, size_t n)
{
    if (n >= 2) {
        s->prev = p[n - 2];
        s->last = p[n - 1];
    } else if (n == 1) {
        s->prev = s->last;
        s->last = p[0];
    }
}

int milter_body_crlf(struct milter_eol *s, const unsigned char *p, size_t n, struct buf *out)
{
    size_t from = 0;

    for (size_t i = 0; i < n; i++) {
        int before = i > 0 ? p[i - 1] : s->last;

        if (p[i] == '\n' && before != '\r') {
            if (buf_append(out, p + from, i - from) != SY_OK || buf_append_byte(out, '\r') != SY_OK)
                return SY_ETOOBIG;
            from = i;
        }
    }
    if (buf_append(out, p + from, n - from) != SY_OK)
        return SY_ETOOBIG;
    if (n > 0) {
        /* Every LF went out as CRLF, bare or not. */
        s->prev = p[n - 1] == '\n' ? '\r' : n >= 2 ? p[n - 2] : s->last;
        s->last = p[n - 1];
    }
    return SY_OK;
}

bool milter_eol_at_line_start(const struct milter_eol *s)
{
    return s->last == -1 || (s->last == '\n' && s->prev == '\r');
}

bool milter_is_own_trace(const char *name, const char *value, const char *mta_qid)
{
    size_t q;

    if (mta_qid == NULL || (q = strlen(mta_qid)) == 0 || !text_ieq(name, strlen(name), "Received"))
        return false;
    for (const char *p = value; (p = strstr(p, "id ")) != NULL; p += 3) {
        const char *id = p + 3;

        if (p != value && p[-1] != ' ' && p[-1] != '\t' && p[-1] != '\n')
            continue;
        while (*id == ' ')
            id++;
        if (strncmp(id, mta_qid, q) == 0 &&
            (id[q] == '\0' || id[q] == ' ' || id[q] == ';' || id[q] == '\r' || id[q] == '\n' ||
             id[q] == '\t'))
            return true;
    }
    return false;
}
