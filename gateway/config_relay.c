/* config_relay.c - transports: and routes: of the configuration
 *
 * `transports:` and `routes:` are maps whose keys the user chooses
 * (transport names, accounts, domains), which a libcyaml schema cannot
 * express. The scan (config_scan.c) copies those two sections into a
 * small tree of cfg_node with the line of every key, libcyaml skips them
 * as unknown keys, and this file checks the tree with the same helpers and
 * error format as the rest of the configuration (cfg_relay_build), then
 * turns the rules into the immutable rules/ route table that delivery
 * threads share. It also writes those two sections for config_dump() and
 * frees them.
 *
 * Every transport a route or delivery.default_transport names exists: the
 * built-in "capture" is added when the file does not define it.
 *
 * Thread safety: no globals; each call works on its own context.
 */
#include "gateway/config_int.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "gateway/util/err.h"
#include "gateway/util/log.h"
#include "gateway/util/text.h"
#include "gateway/util/xalloc.h"
#include "rules/match.h"
#include "rules/route.h"

#define CFG_TRANSPORTS_MAX  64u
#define CFG_USERNAME_MAX    ((size_t) 255)

/* ---- pass 3: transports and routes (the cfg_node tree) ------------------- */

static const char *const cfg_type_names[] = { "smtp", "submission", "submissions", "lmtp", "capture" };
static const char *const cfg_tls_names[] = { "required", "required-unverified", "opportunistic", "none" };
static const char *const cfg_sasl_names[] = {
    "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN",
};
/* RFC 5321 (25), RFC 6409 (587), RFC 8314 (465), RFC 2033 (24; any port but 25). */
static const unsigned cfg_default_ports[] = { 25, 587, 465, 24, 0 };

static const char *const cfg_transport_keys[] = {
    "type", "host", "port", "tls", "auth", "allow_plaintext_auth", "helo_name",
    "connect_timeout", "max_connections", "max_recipients", "retry",
    "greeting_timeout", "command_timeout", "data_timeout", "data_block_timeout",
    "data_done_timeout", "idle_timeout", "tls_ca_file",
};
static const char *const cfg_auth_keys[] = { "username", "password", "password_file", "mechanisms" };
static const char *const cfg_retry_keys[] = { "first", "max", "expiry" };
static const char *const cfg_routes_keys[] = { "accounts", "sender_domains", "global" };
static const char *const cfg_rule_keys[] = { "match", "transport" };
static const char *const cfg_match_keys[] = { "sender_domains", "recipient_domains", "min_attempts", "listeners" };

#define CFG_NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define CFG_TYPE_LIST "smtp, submission, submissions, lmtp, capture"
#define CFG_TLS_LIST "required, required-unverified, opportunistic, none"
#define CFG_SASL_LIST "SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS, SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, PLAIN, LOGIN"
#define CFG_MIN_ATTEMPTS_MAX 1000000u
#define CFG_CONNECTIONS_MAX 1000u
/* Recipients per transaction: a message has at most 100 000 (queue.h). */
#define CFG_RECIPIENTS_MAX 100000u

/* cfg_node_line - the line an error about n points at: its key's, else its own */
static unsigned cfg_node_line(const struct cfg_node *n)
{
    return n->key != NULL ? n->key_line : n->line;
}

/* cfg_node_absent - not given, or YAML null */
static bool cfg_node_absent(const struct cfg_node *n)
{
    return n == NULL || (n->kind == CFG_NODE_SCALAR && n->is_null);
}

/* cfg_node_get - the value of key in the mapping n, or NULL */
static const struct cfg_node *cfg_node_get(const struct cfg_node *n, const char *key)
{
    if (n == NULL || n->kind != CFG_NODE_MAP)
        return NULL;
    for (size_t i = 0; i < n->nkids; i++)
        if (strcmp(n->kids[i]->key, key) == 0)
            return n->kids[i];
    return NULL;
}

/* cfg_node_shape - true when n is given and of kind; false when absent
 * (silently) or of another kind (an error about path) */
static bool cfg_node_shape(struct cfg_ctx *cx, const struct cfg_node *n, enum cfg_node_kind kind,
                           const char *path)
{
    static const char *const names[] = { "a single value", "a mapping", "a list" };

    /* n == NULL is absent too; said here for clang-analyzer, which stops
     * inlining cfg_node_absent() deep in the build. */
    if (n == NULL || cfg_node_absent(n))
        return false;
    if (n->kind == kind)
        return true;
    cfg_err_at(cx, cfg_node_line(n), path, "expected %s, found %s", names[kind], names[n->kind]);
    return false;
}

/* cfg_path_key - "parent.key", the key made printable and cut as the scan
 * does; a path too long for dst is cut (it only names a key in a message) */
static const char *cfg_path_key(char *dst, size_t n, const char *parent, const char *key)
{
    char seg[CFG_SEG_MAX];
    int w;

    (void) log_safe(seg, sizeof(seg), key);
    w = snprintf(dst, n, "%s%s%s", parent, parent[0] != '\0' ? "." : "", seg);
    if (w < 0)
        dst[0] = '\0';
    return dst;
}

/* cfg_path_idx - "parent[i]", cut like cfg_path_key */
static const char *cfg_path_idx(char *dst, size_t n, const char *parent, size_t i)
{
    int w = snprintf(dst, n, "%s[%zu]", parent, i);

    if (w < 0)
        dst[0] = '\0';
    return dst;
}

/* cfg_node_keys - report every key of the mapping n not in known[] */
static void cfg_node_keys(struct cfg_ctx *cx, const struct cfg_node *n, const char *path,
                          const char *const *known, size_t nknown)
{
    char p[CFG_KEYPATH_MAX];

    for (size_t i = 0; i < n->nkids; i++) {
        const char *key = n->kids[i]->key;
        size_t k;

        for (k = 0; k < nknown; k++)
            if (strcmp(key, known[k]) == 0)
                break;
        if (k == nknown)
            cfg_err_unknown(cx, n->kids[i]->key_line, cfg_path_key(p, sizeof(p), path, key), key,
                            strlen(key), known, nknown);
    }
}

/* cfg_at - errors about path (through cfg_err_key) belong on line */
static void cfg_at(struct cfg_ctx *cx, const char *path, unsigned line)
{
    cx->at_line = text_copy(cx->at_path, sizeof(cx->at_path), path) == SY_OK ? line : 0;
}

/* cfg_leaf - the text of map[key] (path gets "parent.key"); NULL when it
 * is absent, null or not a single value (an error then). Later errors
 * about path go to the key's line, or to the map's when it is absent. */
static const char *cfg_leaf(struct cfg_ctx *cx, const struct cfg_node *map, const char *key,
                            const char *parent, char *path, size_t pathsize)
{
    const struct cfg_node *n = cfg_node_get(map, key);

    (void) cfg_path_key(path, pathsize, parent, key);
    cfg_at(cx, path, n != NULL ? cfg_node_line(n) : cfg_node_line(map));
    if (n == NULL || !cfg_node_shape(cx, n, CFG_NODE_SCALAR, path))
        return NULL;            /* n == NULL: as in cfg_node_shape() */
    return n->value;
}

/* cfg_missing - a required key of map is absent (or null): report it */
static bool cfg_missing(struct cfg_ctx *cx, const struct cfg_node *map, const char *key,
                        const char *path, const char *what)
{
    if (!cfg_node_absent(cfg_node_get(map, key)))
        return false;
    cfg_err_at(cx, cfg_node_line(map), path, "required key is missing (%s)", what);
    return true;
}

/* cfg_transport_names - "defined: a, b, capture" for an error message */
static const char *cfg_transport_names(const struct config *cfg, char *dst, size_t n)
{
    int w = snprintf(dst, n, "defined:");
    size_t o = w > 0 ? (size_t) w : 0;

    for (size_t i = 0; i < cfg->ntransports && o < n; i++) {
        w = snprintf(dst + o, n - o, "%s %s", i > 0 ? "," : "", cfg->transports[i].name);
        if (w < 0)
            break;
        o += (size_t) w;
    }
    return dst;
}

/* cfg_host - a host to connect to: a DNS name (lowercased, trailing dot
 * dropped), an IPv4 address, or an IPv6 address with or without brackets
 * (kept without). A new string, or NULL after an error. */
static char *cfg_host(struct cfg_ctx *cx, const char *path, const char *s)
{
    char echo[CFG_ECHO_MAX], d[RULES_DOMAIN_MAX + 1], v6[INET6_ADDRSTRLEN + 1];
    unsigned char bin[sizeof(struct in6_addr)];
    size_t n = strlen(s);
    struct sy_err e;

    if (s[0] == '[' || strchr(s, ':') != NULL) {
        const char *a = s;

        if (s[0] == '[') {
            if (n < 3 || s[n - 1] != ']' || n - 2 >= sizeof(v6))
                goto bad6;
            memcpy(v6, s + 1, n - 2);
            v6[n - 2] = '\0';
            a = v6;
        }
        if (inet_pton(AF_INET6, a, bin) != 1)
            goto bad6;
        return xstrdup(a);
    }
    if (strspn(s, "0123456789.") == n) {
        if (inet_pton(AF_INET, s, bin) == 1)
            return xstrdup(s);
        cfg_err_key(cx, path, "\"%s\" is not a valid IPv4 address", cfg_echo(echo, sizeof(echo), s));
        return NULL;
    }
    /* A name we connect to (and verify a certificate for): plain LDH.
     * Underscores and UTF-8, fine in a rule pattern, are not. */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char) s[i] >= 0x80 || s[i] == '_') {
            cfg_err_key(cx, path, "\"%s\": a host name is letters, digits, '-' and '.' "
                        "(write an internationalised name in its xn-- form)", cfg_echo(echo, sizeof(echo), s));
            return NULL;
        }
    if (rules_domain_norm(s, n, 0, d, sizeof(d), &e) != SY_OK) {
        cfg_err_key(cx, path, "\"%s\": %s", cfg_echo(echo, sizeof(echo), s), e.text);
        return NULL;
    }
    return xstrdup(d);
bad6:
    cfg_err_key(cx, path, "\"%s\" is not a valid IPv6 address", cfg_echo(echo, sizeof(echo), s));
    return NULL;
}

/* cfg_build_mechanisms - auth.mechanisms: a list of distinct names */
static void cfg_build_mechanisms(struct cfg_ctx *cx, const struct cfg_node *an, const char *base,
                                 struct cfg_auth *a)
{
    const struct cfg_node *mn = cfg_node_get(an, "mechanisms");
    char path[CFG_KEYPATH_MAX], p[CFG_KEYPATH_MAX], echo[CFG_ECHO_MAX];

    (void) cfg_path_key(path, sizeof(path), base, "mechanisms");
    if (cfg_node_absent(mn)) {
        for (size_t i = 0; i < CFG_SASL_MECH_COUNT; i++)
            a->mechanisms[i] = (int) i;
        a->nmechanisms = CFG_SASL_MECH_COUNT;
        return;
    }
    if (!cfg_node_shape(cx, mn, CFG_NODE_SEQ, path))
        return;
    if (mn->nkids == 0) {
        cfg_err_at(cx, cfg_node_line(mn), path, "at least one mechanism is required");
        return;
    }
    for (size_t i = 0; i < mn->nkids; i++) {
        const struct cfg_node *e = mn->kids[i];
        size_t k;

        (void) cfg_path_idx(p, sizeof(p), path, i);
        if (cfg_node_absent(e)) {
            cfg_err_at(cx, e->line, p, "expected a mechanism name");
            continue;
        }
        if (!cfg_node_shape(cx, e, CFG_NODE_SCALAR, p))
            continue;
        for (k = 0; k < CFG_SASL_MECH_COUNT; k++)
            if (text_ieq(e->value, strlen(e->value), cfg_sasl_names[k]))
                break;
        if (k == CFG_SASL_MECH_COUNT) {
            cfg_err_at(cx, e->line, p, "expected one of %s, got \"%s\"", CFG_SASL_LIST,
                       cfg_echo(echo, sizeof(echo), e->value));
            continue;
        }
        for (size_t j = 0; j < a->nmechanisms; j++)
            if (a->mechanisms[j] == (int) k) {
                cfg_err_at(cx, e->line, p, "%s is listed twice", cfg_sasl_names[k]);
                k = CFG_SASL_MECH_COUNT;
                break;
            }
        if (k < CFG_SASL_MECH_COUNT && a->nmechanisms < CFG_SASL_MECH_COUNT)
            a->mechanisms[a->nmechanisms++] = (int) k;
    }
}

/* cfg_build_auth - a transport's auth: mapping */
static void cfg_build_auth(struct cfg_ctx *cx, const struct cfg_node *an, const char *tpath,
                           struct cfg_transport *t)
{
    char base[CFG_KEYPATH_MAX], p[CFG_KEYPATH_MAX], p2[CFG_KEYPATH_MAX], echo[CFG_ECHO_MAX];
    struct cfg_auth *a = &t->auth;
    const char *s, *pw, *pwfile;

    (void) cfg_path_key(base, sizeof(base), tpath, "auth");
    if (!cfg_node_shape(cx, an, CFG_NODE_MAP, base))
        return;
    t->has_auth = true;
    cfg_node_keys(cx, an, base, cfg_auth_keys, CFG_NELEM(cfg_auth_keys));
    s = cfg_leaf(cx, an, "username", base, p, sizeof(p));
    if (s == NULL)
        (void) cfg_missing(cx, an, "username", p, "the user name to authenticate as");
    else if (s[0] == '\0' || strlen(s) > CFG_USERNAME_MAX || !text_is_clean(s, strlen(s)))
        cfg_err_key(cx, p, "\"%s\": the user name must be 1 to %zu bytes without control characters",
                    cfg_echo(echo, sizeof(echo), s), CFG_USERNAME_MAX);
    else
        a->username = xstrdup(s);
    pwfile = cfg_leaf(cx, an, "password_file", base, p2, sizeof(p2));
    pw = cfg_leaf(cx, an, "password", base, p, sizeof(p));
    if (pw != NULL && pwfile != NULL) {
        cfg_at(cx, p2, cfg_node_line(cfg_node_get(an, "password_file")));
        cfg_err_key(cx, p2, "set either password or password_file, not both");
    } else if (pw != NULL) {
        /* The value is never echoed: it is a secret. */
        if (strcmp(pw, CFG_REDACTED) == 0)
            cfg_err_key(cx, p, "\"%s\" is the placeholder written by check-config: "
                        "put the real password here, or use password_file", CFG_REDACTED);
        else if (pw[0] == '\0' || !text_is_clean(pw, strlen(pw)))
            cfg_err_key(cx, p, "the password must be non-empty, without control characters");
        else
            a->password = xstrdup(pw);
    } else if (pwfile != NULL) {
        cfg_at(cx, p2, cfg_node_line(cfg_node_get(an, "password_file")));
        a->password = cfg_read_secret(cx, p2, pwfile);
        if (a->password != NULL)
            a->password_file = xstrdup(pwfile);
    } else {
        (void) cfg_missing(cx, an, "password", p, "password or password_file");
    }
    cfg_build_mechanisms(cx, an, base, a);
}

/* cfg_build_retry - a transport's retry: overrides of delivery.retry_* */
static void cfg_build_retry(struct cfg_ctx *cx, const struct cfg_delivery *dc, const struct cfg_node *tn,
                            const char *tpath, struct cfg_transport *t)
{
    const struct cfg_node *rn = cfg_node_get(tn, "retry");
    char base[CFG_KEYPATH_MAX], pf[CFG_KEYPATH_MAX], pm[CFG_KEYPATH_MAX], pe[CFG_KEYPATH_MAX];
    const char *first, *max, *expiry;

    t->retry_first_ms = dc->retry_first_ms;
    t->retry_max_ms = dc->retry_max_ms;
    t->expiry_ms = dc->expiry_ms;
    (void) cfg_path_key(base, sizeof(base), tpath, "retry");
    if (!cfg_node_shape(cx, rn, CFG_NODE_MAP, base))
        return;
    cfg_node_keys(cx, rn, base, cfg_retry_keys, CFG_NELEM(cfg_retry_keys));
    first = cfg_leaf(cx, rn, "first", base, pf, sizeof(pf));
    t->retry_first_set = first != NULL &&
        cfg_duration(cx, pf, first, CFG_SEC, CFG_DAY, dc->retry_first_ms, &t->retry_first_ms);
    max = cfg_leaf(cx, rn, "max", base, pm, sizeof(pm));
    t->retry_max_set = max != NULL &&
        cfg_duration(cx, pm, max, CFG_SEC, 7 * CFG_DAY, dc->retry_max_ms, &t->retry_max_ms);
    expiry = cfg_leaf(cx, rn, "expiry", base, pe, sizeof(pe));
    t->expiry_set = expiry != NULL &&
        cfg_duration(cx, pe, expiry, CFG_MIN, 30 * CFG_DAY, dc->expiry_ms, &t->expiry_ms);
    if ((first == NULL || t->retry_first_set) && (max == NULL || t->retry_max_set) &&
        (t->retry_first_set || t->retry_max_set) && t->retry_max_ms < t->retry_first_ms) {
        char a[32], b[32];
        const char *at = t->retry_max_set ? pm : pf;

        cfg_at(cx, at, cfg_node_line(cfg_node_get(rn, t->retry_max_set ? "max" : "first")));
        cfg_err_key(cx, at, "retry max (%s) must not be shorter than retry first (%s)",
                    cfg_fmt_duration(a, sizeof(a), t->retry_max_ms),
                    cfg_fmt_duration(b, sizeof(b), t->retry_first_ms));
    }
}

/* cfg_build_endpoint - host, port and tls of a network transport */
static void cfg_build_endpoint(struct cfg_ctx *cx, const struct cfg_node *tn, const char *base,
                               struct cfg_transport *t)
{
    char p[CFG_KEYPATH_MAX], why[128], echo[CFG_ECHO_MAX];
    const char *s;
    int tls, def;

    s = cfg_leaf(cx, tn, "host", base, p, sizeof(p));
    if (s == NULL) {
        (void) cfg_missing(cx, tn, "host", p, t->type == CFG_TRANSPORT_LMTP ?
                           "the host to connect to, or unix:/path" : "the host to connect to");
    } else if (t->type == CFG_TRANSPORT_LMTP && strncmp(s, "unix:", 5) == 0) {
        struct cfg_addr a;

        if (cfg_addr_parse(s, &a, why, sizeof(why)) == SY_OK) {
            t->socket = a.path;
            a.path = NULL;
        } else {
            cfg_err_key(cx, p, "\"%s\": %s", cfg_echo(echo, sizeof(echo), s), why);
        }
        cfg_addr_free(&a);
    } else {
        t->host = cfg_host(cx, p, s);
    }

    s = cfg_leaf(cx, tn, "port", base, p, sizeof(p));
    if (t->socket != NULL) {
        if (s != NULL)
            cfg_err_key(cx, p, "a UNIX socket has no port");
    } else if (cfg_unsigned(cx, p, s, 1, 65535, cfg_default_ports[t->type], &t->port) &&
               t->type == CFG_TRANSPORT_LMTP && t->port == 25) {
        cfg_err_key(cx, p, "port 25 is refused: LMTP must not be used on the SMTP port (RFC 2033 section 5)");
    }

    /* LMTP is for a local or otherwise trusted network (RFC 2033 section 1):
     * TLS when the server offers it, not a failure when it does not. */
    def = t->socket != NULL ? CFG_TLS_NONE : t->type == CFG_TRANSPORT_LMTP ? CFG_TLS_OPPORTUNISTIC :
          CFG_TLS_REQUIRED;
    s = cfg_leaf(cx, tn, "tls", base, p, sizeof(p));
    if (!cfg_enum(cx, p, s, cfg_tls_names, CFG_TLS_COUNT, CFG_TLS_LIST, def, &tls))
        return;
    t->tls = tls;
    if (t->socket != NULL && tls != CFG_TLS_NONE)
        cfg_err_key(cx, p, "TLS is not used over a UNIX socket: remove tls or set it to none");
    if (t->type == CFG_TRANSPORT_SUBMISSIONS && tls != CFG_TLS_REQUIRED && tls != CFG_TLS_REQUIRED_UNVERIFIED)
        cfg_err_key(cx, p, "submissions is implicit TLS (RFC 8314): tls must be required or required-unverified");
}

/* cfg_build_client_timeouts - the SMTP client's timeouts (RFC 5321 4.5.3.2
 * defaults, as Postfix's smtp_*_timeout), the idle cache and the CA file */
static void cfg_build_client_timeouts(struct cfg_ctx *cx, const struct cfg_node *tn, const char *base,
                                      struct cfg_transport *t)
{
    static const struct { const char *key; uint64_t def; size_t off; } keys[] = {
        { "greeting_timeout", 5 * CFG_MIN, offsetof(struct cfg_transport, greeting_timeout_ms) },
        { "command_timeout", 5 * CFG_MIN, offsetof(struct cfg_transport, command_timeout_ms) },
        { "data_timeout", 2 * CFG_MIN, offsetof(struct cfg_transport, data_timeout_ms) },
        { "data_block_timeout", 3 * CFG_MIN, offsetof(struct cfg_transport, data_block_timeout_ms) },
        { "data_done_timeout", 10 * CFG_MIN, offsetof(struct cfg_transport, data_done_timeout_ms) },
        { "idle_timeout", 30 * CFG_SEC, offsetof(struct cfg_transport, idle_timeout_ms) },
    };
    char p[CFG_KEYPATH_MAX];
    const char *s;

    for (size_t i = 0; i < CFG_NELEM(keys); i++) {
        s = cfg_leaf(cx, tn, keys[i].key, base, p, sizeof(p));
        (void) cfg_duration(cx, p, s, CFG_SEC, CFG_HOUR, keys[i].def,
                            (uint64_t *) (void *) ((char *) t + keys[i].off));
    }
    s = cfg_leaf(cx, tn, "tls_ca_file", base, p, sizeof(p));
    if (s != NULL) {
        if (s[0] != '/' || strlen(s) >= CFG_DIR_MAX || strpbrk(s, "\r\n") != NULL)
            cfg_err_key(cx, p, "expected an absolute path to a PEM file");
        else
            t->tls_ca_file = xstrdup(s);
    }
}

/* cfg_build_transport - one entry of transports: */
static void cfg_build_transport(struct cfg_ctx *cx, const struct config *cfg, const struct cfg_node *tn,
                                struct cfg_transport *t)
{
    static const char *const not_capture[] = {
        "host", "port", "tls", "auth", "allow_plaintext_auth", "helo_name", "connect_timeout",
        "greeting_timeout", "command_timeout", "data_timeout", "data_block_timeout",
        "data_done_timeout", "idle_timeout", "tls_ca_file", "max_recipients",
    };
    char base[CFG_KEYPATH_MAX], p[CFG_KEYPATH_MAX];
    const struct cfg_node *an;
    const char *s;
    int type = CFG_TRANSPORT_CAPTURE;
    bool type_ok;

    (void) cfg_path_key(base, sizeof(base), "transports", tn->key);
    t->name = xstrdup(tn->key);
    t->type = CFG_TRANSPORT_CAPTURE;
    t->tls = CFG_TLS_NONE;
    if (!rules_name_ok(tn->key)) {
        char echo[CFG_ECHO_MAX];

        cfg_err_at(cx, tn->key_line, base, "\"%s\" is not a valid transport name "
                   "(1 to 64 characters from A-Z a-z 0-9 ._-)", cfg_echo(echo, sizeof(echo), tn->key));
    }
    if (cfg_node_absent(tn)) {
        cfg_err_at(cx, tn->key_line, base, "a transport needs at least a type (" CFG_TYPE_LIST ")");
        return;
    }
    if (!cfg_node_shape(cx, tn, CFG_NODE_MAP, base))
        return;
    cfg_node_keys(cx, tn, base, cfg_transport_keys, CFG_NELEM(cfg_transport_keys));
    s = cfg_leaf(cx, tn, "type", base, p, sizeof(p));
    if (s == NULL)
        type_ok = !cfg_missing(cx, tn, "type", p, CFG_TYPE_LIST);
    else
        type_ok = cfg_enum(cx, p, s, cfg_type_names, CFG_TRANSPORT_TYPE_COUNT, CFG_TYPE_LIST,
                           CFG_TRANSPORT_CAPTURE, &type);
    if (type_ok && strcmp(t->name, "capture") == 0 && type != CFG_TRANSPORT_CAPTURE)
        cfg_err_key(cx, p, "the name \"capture\" belongs to the built-in capture transport: "
                    "use type: capture, or another name");
    /* Keys of every type first, so that a bad type does not hide them. */
    s = cfg_leaf(cx, tn, "max_connections", base, p, sizeof(p));
    (void) cfg_unsigned(cx, p, s, 1, CFG_CONNECTIONS_MAX, 10, &t->max_connections);
    s = cfg_leaf(cx, tn, "max_recipients", base, p, sizeof(p));
    (void) cfg_unsigned(cx, p, s, 1, CFG_RECIPIENTS_MAX, 50, &t->max_recipients);
    cfg_build_retry(cx, &cfg->delivery, tn, base, t);
    if (!type_ok)
        return;
    t->type = type;
    if (type == CFG_TRANSPORT_CAPTURE) {
        for (size_t i = 0; i < CFG_NELEM(not_capture); i++) {
            const struct cfg_node *n = cfg_node_get(tn, not_capture[i]);

            if (!cfg_node_absent(n))
                cfg_err_at(cx, n->key_line, cfg_path_key(p, sizeof(p), base, not_capture[i]),
                           "not used by a capture transport");
        }
        return;
    }
    cfg_build_endpoint(cx, tn, base, t);
    an = cfg_node_get(tn, "auth");
    if (!cfg_node_absent(an) && type == CFG_TRANSPORT_LMTP)
        cfg_err_at(cx, an->key_line, cfg_path_key(p, sizeof(p), base, "auth"),
                   "auth is only for smtp, submission and submissions transports");
    else if (!cfg_node_absent(an))
        cfg_build_auth(cx, an, base, t);
    s = cfg_leaf(cx, tn, "allow_plaintext_auth", base, p, sizeof(p));
    if (cfg_bool(cx, p, s, false, &t->allow_plaintext_auth) && t->allow_plaintext_auth && cfg_node_absent(an))
        cfg_err_key(cx, p, "has no effect without auth");
    if (t->has_auth && t->tls == CFG_TLS_NONE && !t->allow_plaintext_auth)
        cfg_err_at(cx, an->key_line, cfg_path_key(p, sizeof(p), base, "auth"),
                   "tls is none, so the password would cross the network in clear: "
                   "set allow_plaintext_auth: true to allow that");
    s = cfg_leaf(cx, tn, "helo_name", base, p, sizeof(p));
    if (s != NULL)
        t->helo_name = cfg_name(cx, p, s, CFG_HOSTNAME_MAX, ".-_:[]", "host name");
    else if (cfg->lmtp.hostname != NULL)
        t->helo_name = xstrdup(cfg->lmtp.hostname);
    s = cfg_leaf(cx, tn, "connect_timeout", base, p, sizeof(p));
    (void) cfg_duration(cx, p, s, CFG_SEC, 10 * CFG_MIN, 30 * CFG_SEC, &t->connect_timeout_ms);
    cfg_build_client_timeouts(cx, tn, base, t);
}

/* cfg_build_transports - transports:, the implicit capture, default_transport */
static void cfg_build_transports(struct cfg_ctx *cx, struct config *cfg)
{
    const struct cfg_node *root = cx->dom_transports;
    size_t n = 0;

    if (!cfg_node_absent(root)) {
        if (root->kind != CFG_NODE_MAP)
            cfg_err_key(cx, "transports", "expected a mapping of transport names, found %s",
                        root->kind == CFG_NODE_SEQ ? "a list" : "a single value");
        else if (root->nkids > CFG_TRANSPORTS_MAX)
            cfg_err_key(cx, "transports", "too many transports (at most %u)", CFG_TRANSPORTS_MAX);
        else
            n = root->nkids;
    }
    cfg->transports = xcalloc(n + 1, sizeof(*cfg->transports));
    for (size_t i = 0; i < n; i++)
        cfg_build_transport(cx, cfg, root->kids[i], &cfg->transports[cfg->ntransports++]);
    if (config_transport_find(cfg, "capture") == NULL) {
        /* Always there: localserve and the tests deliver through it. */
        struct cfg_transport *t = &cfg->transports[cfg->ntransports++];

        t->name = xstrdup("capture");
        t->type = CFG_TRANSPORT_CAPTURE;
        t->builtin = true;
        t->tls = CFG_TLS_NONE;
        t->max_connections = 10;
        t->max_recipients = 50;
        t->retry_first_ms = cfg->delivery.retry_first_ms;
        t->retry_max_ms = cfg->delivery.retry_max_ms;
        t->expiry_ms = cfg->delivery.expiry_ms;
    }
    if (cfg->delivery.default_transport != NULL &&
        config_transport_find(cfg, cfg->delivery.default_transport) == NULL) {
        char echo[CFG_ECHO_MAX], names[256];

        cfg_err_key(cx, "delivery.default_transport", "unknown transport \"%s\" (%s)",
                    cfg_echo(echo, sizeof(echo), cfg->delivery.default_transport),
                    cfg_transport_names(cfg, names, sizeof(names)));
    }
}

/* cfg_build_domains - a list of domain patterns (leading dot allowed) */
static void cfg_build_domains(struct cfg_ctx *cx, const struct cfg_node *mn, const char *key,
                              const char *base, char ***outp, size_t *np)
{
    const struct cfg_node *ln = cfg_node_get(mn, key);
    char path[CFG_KEYPATH_MAX], p[CFG_KEYPATH_MAX], echo[CFG_ECHO_MAX], d[RULES_DOMAIN_MAX + 2];

    (void) cfg_path_key(path, sizeof(path), base, key);
    if (!cfg_node_shape(cx, ln, CFG_NODE_SEQ, path))
        return;
    if (ln->nkids > ROUTE_LIST_MAX) {
        cfg_err_at(cx, ln->key_line, path, "too many entries (at most %zu)", ROUTE_LIST_MAX);
        return;
    }
    *outp = xcalloc(ln->nkids + 1, sizeof(**outp));
    for (size_t i = 0; i < ln->nkids; i++) {
        const struct cfg_node *e = ln->kids[i];
        struct sy_err err;

        (void) cfg_path_idx(p, sizeof(p), path, i);
        if (cfg_node_absent(e)) {
            cfg_err_at(cx, e->line, p, "expected a domain (\"example.com\", or \".example.com\" "
                       "for it and its subdomains)");
        } else if (cfg_node_shape(cx, e, CFG_NODE_SCALAR, p)) {
            if (rules_domain_norm(e->value, strlen(e->value), RULES_DOMAIN_SUFFIX, d, sizeof(d), &err) == SY_OK)
                (*outp)[(*np)++] = xstrdup(d);
            else
                cfg_err_at(cx, e->line, p, "\"%s\": %s", cfg_echo(echo, sizeof(echo), e->value), err.text);
        }
    }
}

/* cfg_build_listeners - match.listeners: names from lmtp.listeners */
static void cfg_build_listener_names(struct cfg_ctx *cx, const struct config *cfg, const struct cfg_node *mn,
                                     const char *base, struct cfg_route_rule *r)
{
    const struct cfg_node *ln = cfg_node_get(mn, "listeners");
    char path[CFG_KEYPATH_MAX], p[CFG_KEYPATH_MAX], echo[CFG_ECHO_MAX];

    (void) cfg_path_key(path, sizeof(path), base, "listeners");
    if (!cfg_node_shape(cx, ln, CFG_NODE_SEQ, path))
        return;
    if (ln->nkids > ROUTE_LIST_MAX) {
        cfg_err_at(cx, ln->key_line, path, "too many entries (at most %zu)", ROUTE_LIST_MAX);
        return;
    }
    r->listeners = xcalloc(ln->nkids + 1, sizeof(*r->listeners));
    for (size_t i = 0; i < ln->nkids; i++) {
        const struct cfg_node *e = ln->kids[i];
        size_t k;
        bool found;

        (void) cfg_path_idx(p, sizeof(p), path, i);
        if (cfg_node_absent(e)) {
            cfg_err_at(cx, e->line, p, "expected a listener name");
            continue;
        }
        if (!cfg_node_shape(cx, e, CFG_NODE_SCALAR, p))
            continue;
        for (k = 0; k < cfg->lmtp.nlisteners; k++)
            if (cfg->lmtp.listeners[k].name != NULL && strcmp(cfg->lmtp.listeners[k].name, e->value) == 0)
                break;
        found = k < cfg->lmtp.nlisteners;
        /* A milter listener's name matches too (milter.listeners). */
        for (size_t m = 0; !found && m < cfg->milter.nlisteners; m++)
            found = cfg->milter.listeners[m].name != NULL &&
                    strcmp(cfg->milter.listeners[m].name, e->value) == 0;
        if (!found)
            cfg_err_at(cx, e->line, p, "unknown listener \"%s\" (lmtp.listeners names them)",
                       cfg_echo(echo, sizeof(echo), e->value));
        else
            r->listeners[r->nlisteners++] = xstrdup(e->value);
    }
}

/* cfg_build_rule - one route rule: match: and transport: */
static void cfg_build_rule(struct cfg_ctx *cx, const struct config *cfg, const struct cfg_node *rn,
                           const char *path, struct cfg_route_rule *r)
{
    char base[CFG_KEYPATH_MAX], p[CFG_KEYPATH_MAX], echo[CFG_ECHO_MAX], names[256];
    const struct cfg_node *mn, *tn;

    r->transport = xstrdup("");
    if (cfg_node_absent(rn)) {
        cfg_err_at(cx, rn->line, path, "expected a rule (match: and transport:)");
        return;
    }
    if (!cfg_node_shape(cx, rn, CFG_NODE_MAP, path))
        return;
    cfg_node_keys(cx, rn, path, cfg_rule_keys, CFG_NELEM(cfg_rule_keys));
    mn = cfg_node_get(rn, "match");
    (void) cfg_path_key(base, sizeof(base), path, "match");
    if (cfg_node_shape(cx, mn, CFG_NODE_MAP, base)) {
        const char *s;

        cfg_node_keys(cx, mn, base, cfg_match_keys, CFG_NELEM(cfg_match_keys));
        cfg_build_domains(cx, mn, "sender_domains", base, &r->sender_domains, &r->nsender_domains);
        cfg_build_domains(cx, mn, "recipient_domains", base, &r->recipient_domains, &r->nrecipient_domains);
        s = cfg_leaf(cx, mn, "min_attempts", base, p, sizeof(p));
        (void) cfg_unsigned(cx, p, s, 0, CFG_MIN_ATTEMPTS_MAX, 0, &r->min_attempts);
        cfg_build_listener_names(cx, cfg, mn, base, r);
    }
    tn = cfg_node_get(rn, "transport");
    (void) cfg_path_key(p, sizeof(p), path, "transport");
    if (cfg_node_absent(tn)) {
        cfg_err_at(cx, tn != NULL ? tn->key_line : rn->line, p,
                   "a transport name is required (\"\" for the default transport)");
    } else if (cfg_node_shape(cx, tn, CFG_NODE_SCALAR, p)) {
        if (tn->value[0] != '\0' && config_transport_find(cfg, tn->value) == NULL) {
            cfg_err_at(cx, tn->key_line, p, "unknown transport \"%s\" (%s)", cfg_echo(echo, sizeof(echo), tn->value),
                       cfg_transport_names(cfg, names, sizeof(names)));
        } else if (tn->value[0] != '\0') {
            free(r->transport);
            r->transport = xstrdup(tn->value);
        }
    }
}

/* cfg_build_rules - a list of rules at ln (path names it) */
static void cfg_build_rules(struct cfg_ctx *cx, const struct config *cfg, const struct cfg_node *ln,
                            const char *path, struct cfg_route_rule **outp, size_t *np)
{
    char p[CFG_KEYPATH_MAX];

    if (!cfg_node_shape(cx, ln, CFG_NODE_SEQ, path))
        return;
    *outp = xcalloc(ln->nkids + 1, sizeof(**outp));
    for (size_t i = 0; i < ln->nkids; i++) {
        cfg_build_rule(cx, cfg, ln->kids[i], cfg_path_idx(p, sizeof(p), path, i), &(*outp)[i]);
        (*np)++;
    }
}

/* A sender domain key with its line, to find two spellings of one domain. */
struct cfg_domkey {
    const char *key;
    unsigned line;
    const char *path;
};

/* cfg_domkey_cmp - by normalised domain, then by line */
static int cfg_domkey_cmp(const void *a, const void *b)
{
    const struct cfg_domkey *x = a, *y = b;
    int c = strcmp(x->key, y->key);

    if (c != 0)
        return c;
    return x->line < y->line ? -1 : x->line > y->line;
}

/* cfg_build_keyed - routes.accounts or routes.sender_domains */
static void cfg_build_keyed(struct cfg_ctx *cx, const struct config *cfg, const struct cfg_node *routes,
                            const char *which, bool domains, struct cfg_route_key **outp, size_t *np)
{
    const struct cfg_node *mn = cfg_node_get(routes, which);
    char base[CFG_KEYPATH_MAX], p[CFG_KEYPATH_MAX], echo[CFG_ECHO_MAX], d[RULES_DOMAIN_MAX + 1];
    struct cfg_domkey *dk;
    size_t ndk = 0;

    (void) cfg_path_key(base, sizeof(base), "routes", which);
    if (!cfg_node_shape(cx, mn, CFG_NODE_MAP, base))
        return;
    *outp = xcalloc(mn->nkids + 1, sizeof(**outp));
    dk = xcalloc(mn->nkids + 1, sizeof(*dk));
    for (size_t i = 0; i < mn->nkids; i++) {
        const struct cfg_node *kn = mn->kids[i];
        struct cfg_route_key *rk = &(*outp)[(*np)++];
        size_t klen = strlen(kn->key);
        struct sy_err err;

        (void) cfg_path_key(p, sizeof(p), base, kn->key);
        if (!domains) {
            if (klen == 0 || klen > ROUTE_ACCOUNT_MAX || !text_is_clean(kn->key, klen) ||
                !text_is_utf8(kn->key, klen))
                cfg_err_at(cx, kn->key_line, p, "\"%s\": an account is 1 to %zu bytes without control characters",
                           cfg_echo(echo, sizeof(echo), kn->key), ROUTE_ACCOUNT_MAX);
            rk->key = xstrdup(kn->key);
        } else if (rules_domain_norm(kn->key, klen, 0, d, sizeof(d), &err) != SY_OK) {
            cfg_err_at(cx, kn->key_line, p, "\"%s\": %s", cfg_echo(echo, sizeof(echo), kn->key), err.text);
            rk->key = xstrdup(kn->key);
        } else {
            rk->key = xstrdup(d);
            dk[ndk].key = rk->key;
            dk[ndk].line = kn->key_line;
            dk[ndk].path = kn->key;
            ndk++;
        }
        cfg_build_rules(cx, cfg, kn, p, &rk->rules, &rk->nrules);
    }
    /* "Example.com" and "example.com." are one domain: refuse the second. */
    if (ndk > 1)
        qsort(dk, ndk, sizeof(*dk), cfg_domkey_cmp);
    for (size_t i = 1; i < ndk; i++)
        if (strcmp(dk[i].key, dk[i - 1].key) == 0)
            cfg_err_at(cx, dk[i].line, cfg_path_key(p, sizeof(p), base, dk[i].path),
                       "the same domain as line %u", dk[i - 1].line);
    free(dk);
}

/* cfg_build_routes - routes: into cfg->route_rules */
static void cfg_build_routes(struct cfg_ctx *cx, struct config *cfg)
{
    const struct cfg_node *root = cx->dom_routes;
    struct cfg_routes *rr = &cfg->route_rules;

    if (cfg_node_absent(root))
        return;
    if (root->kind != CFG_NODE_MAP) {
        cfg_err_key(cx, "routes", "expected a mapping (accounts, sender_domains, global), found %s",
                    root->kind == CFG_NODE_SEQ ? "a list" : "a single value");
        return;
    }
    cfg_node_keys(cx, root, "routes", cfg_routes_keys, CFG_NELEM(cfg_routes_keys));
    cfg_build_keyed(cx, cfg, root, "accounts", false, &rr->accounts, &rr->naccounts);
    cfg_build_keyed(cx, cfg, root, "sender_domains", true, &rr->sender_domains, &rr->nsender_domains);
    cfg_build_rules(cx, cfg, cfg_node_get(root, "global"), "routes.global", &rr->global, &rr->nglobal);
}

/* cfg_route_add - one configured rule into the builder */
static int cfg_route_add(struct route_builder *b, enum route_scope scope, const char *key,
                         const struct cfg_route_rule *r, struct sy_err *err)
{
    struct route_rule_spec spec = {
        .sender_domains = (const char *const *) r->sender_domains,
        .nsender_domains = r->nsender_domains,
        .recipient_domains = (const char *const *) r->recipient_domains,
        .nrecipient_domains = r->nrecipient_domains,
        .min_attempts = r->min_attempts,
        .listeners = (const char *const *) r->listeners,
        .nlisteners = r->nlisteners,
        .transport = r->transport,
    };

    return route_builder_add(b, scope, key, &spec, err);
}

/* cfg_build_route_table - cfg->route_rules (valid by now) into cfg->routes */
static void cfg_build_route_table(struct cfg_ctx *cx, struct config *cfg)
{
    const struct cfg_routes *rr = &cfg->route_rules;
    struct route_builder *b = route_builder_new(cfg->delivery.default_transport);
    struct sy_err err;
    int rc = SY_OK;

    for (size_t i = 0; i < rr->naccounts && rc == SY_OK; i++)
        for (size_t j = 0; j < rr->accounts[i].nrules && rc == SY_OK; j++)
            rc = cfg_route_add(b, ROUTE_SCOPE_ACCOUNT, rr->accounts[i].key, &rr->accounts[i].rules[j], &err);
    for (size_t i = 0; i < rr->nsender_domains && rc == SY_OK; i++)
        for (size_t j = 0; j < rr->sender_domains[i].nrules && rc == SY_OK; j++)
            rc = cfg_route_add(b, ROUTE_SCOPE_SENDER_DOMAIN, rr->sender_domains[i].key,
                               &rr->sender_domains[i].rules[j], &err);
    for (size_t j = 0; j < rr->nglobal && rc == SY_OK; j++)
        rc = cfg_route_add(b, ROUTE_SCOPE_GLOBAL, NULL, &rr->global[j], &err);
    if (rc != SY_OK) {
        cfg_err_key(cx, "routes", "%s", err.text);
        route_builder_free(b);
        return;
    }
    cfg->routes = route_builder_finish(b);
}

/* cfg_relay_build - transports:, routes: and, when all is well, the route table */
void cfg_relay_build(struct cfg_ctx *cx, struct config *cfg)
{
    cfg_build_transports(cx, cfg);
    cfg_build_routes(cx, cfg);
    cx->at_line = 0;
    if (cx->nproblems == 0)
        cfg_build_route_table(cx, cfg);
}

/* ---- dump ---------------------------------------------------------------- */

/* cfg_dump_list - "<indent>key: ["a", "b"]"; nothing for an empty list */
static void cfg_dump_list(FILE *out, const char *indent, const char *key, char *const *v, size_t n)
{
    if (n == 0)
        return;
    (void) fprintf(out, "%s%s: [", indent, key);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            (void) fputs(", ", out);
        cfg_dump_str(out, v[i]);
    }
    (void) fputs("]\n", out);
}

/* cfg_dump_rules - a list of route rules; indent is that of the "- " */
static void cfg_dump_rules(FILE *out, const char *indent, const struct cfg_route_rule *r, size_t n)
{
    char in2[32];

    (void) snprintf(in2, sizeof(in2), "%s    ", indent);
    for (size_t i = 0; i < n; i++) {
        (void) fprintf(out, "%s- transport: ", indent);
        cfg_dump_str(out, r[i].transport);
        (void) fprintf(out, "\n%s  match:\n%smin_attempts: %u\n", indent, in2, r[i].min_attempts);
        cfg_dump_list(out, in2, "sender_domains", r[i].sender_domains, r[i].nsender_domains);
        cfg_dump_list(out, in2, "recipient_domains", r[i].recipient_domains, r[i].nrecipient_domains);
        cfg_dump_list(out, in2, "listeners", r[i].listeners, r[i].nlisteners);
    }
}

/* cfg_dump_keyed - routes.accounts or routes.sender_domains */
static void cfg_dump_keyed(FILE *out, const char *which, const struct cfg_route_key *k, size_t n)
{
    if (n == 0) {
        (void) fprintf(out, "  # %s: (none)\n", which);
        return;
    }
    (void) fprintf(out, "  %s:\n", which);
    for (size_t i = 0; i < n; i++) {
        (void) fputs("    ", out);
        cfg_dump_str(out, k[i].key);
        if (k[i].nrules == 0) {
            (void) fputs(": []\n", out);
            continue;
        }
        (void) fputs(":\n", out);
        cfg_dump_rules(out, "      ", k[i].rules, k[i].nrules);
    }
}

/* cfg_dump_transport - one entry of transports: */
static void cfg_dump_transport(FILE *out, const struct cfg_transport *t)
{
    (void) fputs("  ", out);
    cfg_dump_str(out, t->name);
    (void) fprintf(out, ":\n    type: %s\n", cfg_transport_type_name(t->type));
    if (t->type != CFG_TRANSPORT_CAPTURE) {
        if (t->socket != NULL) {
            char host[CFG_DIR_MAX + 8];

            (void) snprintf(host, sizeof(host), "unix:%s", t->socket);
            cfg_dump_kv(out, "    ", "host", host);
        } else {
            cfg_dump_kv(out, "    ", "host", t->host != NULL ? t->host : "");
            (void) fprintf(out, "    port: %u\n", t->port);
        }
        (void) fprintf(out, "    tls: %s\n", cfg_tls_name(t->tls));
        if (t->has_auth) {
            (void) fputs("    auth:\n", out);
            cfg_dump_kv(out, "      ", "username", t->auth.username != NULL ? t->auth.username : "");
            if (t->auth.password_file != NULL)
                cfg_dump_kv(out, "      ", "password_file", t->auth.password_file);
            else
                cfg_dump_kv(out, "      ", "password", CFG_REDACTED);
            (void) fputs("      mechanisms: [", out);
            for (size_t i = 0; i < t->auth.nmechanisms; i++)
                (void) fprintf(out, "%s%s", i > 0 ? ", " : "", cfg_sasl_mech_name(t->auth.mechanisms[i]));
            (void) fputs("]\n", out);
        }
        if (t->type != CFG_TRANSPORT_LMTP)
            (void) fprintf(out, "    allow_plaintext_auth: %s\n", t->allow_plaintext_auth ? "true" : "false");
        cfg_dump_kv(out, "    ", "helo_name", t->helo_name != NULL ? t->helo_name : "");
        cfg_dump_dur(out, "    ", "connect_timeout", t->connect_timeout_ms);
        cfg_dump_dur(out, "    ", "greeting_timeout", t->greeting_timeout_ms);
        cfg_dump_dur(out, "    ", "command_timeout", t->command_timeout_ms);
        cfg_dump_dur(out, "    ", "data_timeout", t->data_timeout_ms);
        cfg_dump_dur(out, "    ", "data_block_timeout", t->data_block_timeout_ms);
        cfg_dump_dur(out, "    ", "data_done_timeout", t->data_done_timeout_ms);
        cfg_dump_dur(out, "    ", "idle_timeout", t->idle_timeout_ms);
        if (t->tls_ca_file != NULL)
            cfg_dump_kv(out, "    ", "tls_ca_file", t->tls_ca_file);
    }
    (void) fprintf(out, "    max_connections: %u\n", t->max_connections);
    if (t->type != CFG_TRANSPORT_CAPTURE)
        (void) fprintf(out, "    max_recipients: %u\n", t->max_recipients);
    if (!t->retry_first_set && !t->retry_max_set && !t->expiry_set) {
        (void) fputs("    # retry: (delivery.retry_first, retry_max and expiry apply)\n", out);
        return;
    }
    (void) fputs("    retry:\n", out);
    if (t->retry_first_set)
        cfg_dump_dur(out, "      ", "first", t->retry_first_ms);
    if (t->retry_max_set)
        cfg_dump_dur(out, "      ", "max", t->retry_max_ms);
    if (t->expiry_set)
        cfg_dump_dur(out, "      ", "expiry", t->expiry_ms);
}

/* cfg_relay_dump - the transports: and routes: sections of config_dump() */
void cfg_relay_dump(const struct config *cfg, FILE *out)
{
    (void) fputs("transports:\n", out);
    for (size_t i = 0; i < cfg->ntransports; i++)
        cfg_dump_transport(out, &cfg->transports[i]);

    (void) fputs("routes:\n", out);
    cfg_dump_keyed(out, "accounts", cfg->route_rules.accounts, cfg->route_rules.naccounts);
    cfg_dump_keyed(out, "sender_domains", cfg->route_rules.sender_domains, cfg->route_rules.nsender_domains);
    if (cfg->route_rules.nglobal == 0) {
        (void) fputs("  # global: (none)\n", out);
    } else {
        (void) fputs("  global:\n", out);
        cfg_dump_rules(out, "    ", cfg->route_rules.global, cfg->route_rules.nglobal);
    }
}

/* ---- free, lookups -------------------------------------------------------- */

/* cfg_strv_free - an array of n strings */
static void cfg_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n && v != NULL; i++)
        free(v[i]);
    free(v);
}

/* cfg_rules_free - an array of n route rules */
static void cfg_rules_free(struct cfg_route_rule *r, size_t n)
{
    for (size_t i = 0; i < n && r != NULL; i++) {
        cfg_strv_free(r[i].sender_domains, r[i].nsender_domains);
        cfg_strv_free(r[i].recipient_domains, r[i].nrecipient_domains);
        cfg_strv_free(r[i].listeners, r[i].nlisteners);
        free(r[i].transport);
    }
    free(r);
}

/* cfg_keyed_free - routes.accounts or routes.sender_domains */
static void cfg_keyed_free(struct cfg_route_key *k, size_t n)
{
    for (size_t i = 0; i < n && k != NULL; i++) {
        cfg_rules_free(k[i].rules, k[i].nrules);
        free(k[i].key);
    }
    free(k);
}

/* cfg_transport_free - the strings of one transport; the password is wiped */
static void cfg_transport_free(struct cfg_transport *t)
{
    free(t->name);
    free(t->host);
    free(t->socket);
    free(t->helo_name);
    free(t->tls_ca_file);
    free(t->auth.username);
    if (t->auth.password != NULL) {
        explicit_bzero(t->auth.password, strlen(t->auth.password));
        free(t->auth.password);
    }
    free(t->auth.password_file);
}

/* cfg_relay_free - transports, route rules and route table of cfg */
void cfg_relay_free(struct config *cfg)
{
    route_table_free(cfg->routes);
    cfg_keyed_free(cfg->route_rules.accounts, cfg->route_rules.naccounts);
    cfg_keyed_free(cfg->route_rules.sender_domains, cfg->route_rules.nsender_domains);
    cfg_rules_free(cfg->route_rules.global, cfg->route_rules.nglobal);
    for (size_t i = 0; i < cfg->ntransports; i++)
        cfg_transport_free(&cfg->transports[i]);
    free(cfg->transports);
}

const struct cfg_transport *config_transport_find(const struct config *cfg, const char *name)
{
    for (size_t i = 0; name != NULL && i < cfg->ntransports; i++)
        if (cfg->transports[i].name != NULL && strcmp(cfg->transports[i].name, name) == 0)
            return &cfg->transports[i];
    return NULL;
}

const char *cfg_transport_type_name(int type)
{
    return type >= 0 && type < CFG_TRANSPORT_TYPE_COUNT ? cfg_type_names[type] : "?";
}

const char *cfg_tls_name(int tls)
{
    return tls >= 0 && tls < CFG_TLS_COUNT ? cfg_tls_names[tls] : "?";
}

const char *cfg_sasl_mech_name(int mech)
{
    return mech >= 0 && mech < CFG_SASL_MECH_COUNT ? cfg_sasl_names[mech] : "?";
}
