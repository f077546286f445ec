/* config.c - the YAML configuration: scan, load, validate, dump
 *
 * A document goes through three passes:
 *
 *  1. cfg_scan_*: a libyaml event walk that follows the libcyaml schema
 *     below. It records the line of every key path ("lmtp.listeners[0].
 *     address") and reports unknown keys, duplicate keys, values of the
 *     wrong shape (a list where a mapping belongs), anchors, aliases, tags,
 *     a second document, nesting deeper than CFG_DEPTH_MAX and bytes that
 *     are not UTF-8. libcyaml 1.3.1 stops at its first error, so this pass
 *     is what lets one run report every structural problem.
 *  2. libcyaml loads the document into struct cfg_raw, where every leaf is
 *     a string. Anything it still refuses is taken from its log (a message
 *     plus a backtrace of mapping fields and sequence entries, captured by
 *     cfg_cyaml_log) and turned back into a key path.
 *  3. cfg_build_*: every value is converted and checked in C (numbers,
 *     durations, sizes, ranges, addresses, enums, cross-field rules), again
 *     reporting every problem rather than the first.
 *
 * `transports:` and `routes:` are maps whose keys the user chooses (transport
 * names, accounts, domains), which a libcyaml schema cannot express. Pass 1
 * copies those two sections into a small tree of cfg_node (with the line of
 * every key) instead of following the schema, libcyaml skips them as
 * unknown keys, and pass 3 checks the tree with the same helpers and error
 * format as the rest (cfg_build_transports, cfg_build_routes).
 *
 * Errors are collected with their line, sorted, and appended to the
 * caller's buffer as "FILE:LINE: KEY.PATH: message". Values are echoed
 * through log_safe(); secrets never are. Only pass 1 failures that libcyaml
 * would also choke on (shape, duplicates) stop the later passes; an unknown
 * key does not, so a typo and a bad value show up in the same run.
 *
 * Thread safety: no globals; each call works on its own context.
 */
#include "gateway/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cyaml/cyaml.h>
#include <yaml.h>

#include "gateway/util/err.h"
#include "gateway/util/log.h"
#include "gateway/util/text.h"
#include "gateway/util/xalloc.h"
#include "rules/match.h"
#include "rules/route.h"

/* Limits on the file itself: a configuration is a few KiB. */
#define CFG_FILE_MAX        ((size_t) 1024 * 1024)
#define CFG_DEPTH_MAX       16          /* our schema needs 4 levels */
#define CFG_SCALAR_MAX      4096u       /* bytes in one value (libcyaml checks) */
#define CFG_LISTENERS_MAX   64u
#define CFG_KEYS_MAX        1024        /* key paths remembered with their line */
#define CFG_ERRORS_MAX      100         /* error lines shown; the rest are counted */
#define CFG_KEYPATH_MAX     ((size_t) 256)
#define CFG_NAME_MAX        ((size_t) 256)  /* file name as shown in errors */
#define CFG_ECHO_MAX        ((size_t) 64)   /* a value echoed in an error */
#define CFG_PASSWORD_MAX    ((size_t) 4096) /* password_file size cap */
#define CFG_DIR_MAX         ((size_t) 1024)
#define CFG_NODE_MAX        ((size_t) 64)
#define CFG_USER_MAX        ((size_t) 32)   /* useradd's limit */
#define CFG_HOSTNAME_MAX    ((size_t) 255)  /* RFC 1035 name length */
#define CFG_PREFIX_MAX      ((size_t) 32)
#define CFG_REDACTED        "<redacted>"
#define CFG_DOM_ENTRIES_MAX 10000u      /* entries in one map or list of transports:/routes: */
#define CFG_TRANSPORTS_MAX  64u
#define CFG_SEG_MAX         ((size_t) 48)   /* one key as shown in a key path */
#define CFG_USERNAME_MAX    ((size_t) 255)

#define CFG_SEC             ((uint64_t) 1000)
#define CFG_MIN             (60 * CFG_SEC)
#define CFG_HOUR            (60 * CFG_MIN)
#define CFG_DAY             (24 * CFG_HOUR)
#define CFG_KIB             ((uint64_t) 1024)
#define CFG_GIB             (CFG_KIB * CFG_KIB * CFG_KIB)

/* ---- pass 2 target: the document as strings ---------------------------- */

struct cfg_raw_log {
    char *level, *syslog;
};

struct cfg_raw_redis {
    char *address, *password, *password_file, *db, *prefix;
    char *connect_timeout, *command_timeout;
};

struct cfg_raw_spool {
    char *dir, *min_free;
};

struct cfg_raw_listener {
    char *name, *address, *mode, *trusted;
};

struct cfg_raw_lmtp {
    char *hostname, *max_connections, *line_length_limit, *message_size_limit;
    char *recipient_limit, *soft_error_limit, *hard_error_limit, *junk_command_limit;
    char *command_timeout, *data_timeout, *min_data_rate, *bare_line_endings;
    char *futurerelease_max;
    struct cfg_raw_listener *listeners;
    unsigned listeners_count;
};

struct cfg_raw_delivery {
    char *default_transport, *workers, *retry_first, *retry_max, *expiry, *lease;
};

struct cfg_raw_capture {
    char *dir;
};

struct cfg_raw {
    char *node, *user;
    struct cfg_raw_log *log;
    struct cfg_raw_redis *redis;
    struct cfg_raw_spool *spool;
    struct cfg_raw_lmtp *lmtp;
    struct cfg_raw_delivery *delivery;
    struct cfg_raw_capture *capture;
};

/* Every key is optional to libcyaml: required keys are checked in pass 3,
 * where the error can name the key. A section may be left empty ("redis:"
 * with everything below commented out). */
#define CFG_LEAF(key, type, member) \
    CYAML_FIELD_STRING_PTR(key, CYAML_FLAG_OPTIONAL, type, member, 0, CFG_SCALAR_MAX)
#define CFG_SECTION_FLAGS (CYAML_FLAG_OPTIONAL | CYAML_FLAG_POINTER_NULL_STR)

static const cyaml_schema_field_t cfg_log_fields[] = {
    CFG_LEAF("level", struct cfg_raw_log, level),
    CFG_LEAF("syslog", struct cfg_raw_log, syslog),
    CYAML_FIELD_END
};

static const cyaml_schema_field_t cfg_redis_fields[] = {
    CFG_LEAF("address", struct cfg_raw_redis, address),
    CFG_LEAF("password", struct cfg_raw_redis, password),
    CFG_LEAF("password_file", struct cfg_raw_redis, password_file),
    CFG_LEAF("db", struct cfg_raw_redis, db),
    CFG_LEAF("prefix", struct cfg_raw_redis, prefix),
    CFG_LEAF("connect_timeout", struct cfg_raw_redis, connect_timeout),
    CFG_LEAF("command_timeout", struct cfg_raw_redis, command_timeout),
    CYAML_FIELD_END
};

static const cyaml_schema_field_t cfg_spool_fields[] = {
    CFG_LEAF("dir", struct cfg_raw_spool, dir),
    CFG_LEAF("min_free", struct cfg_raw_spool, min_free),
    CYAML_FIELD_END
};

static const cyaml_schema_field_t cfg_listener_fields[] = {
    CFG_LEAF("name", struct cfg_raw_listener, name),
    CFG_LEAF("address", struct cfg_raw_listener, address),
    CFG_LEAF("mode", struct cfg_raw_listener, mode),
    CFG_LEAF("trusted", struct cfg_raw_listener, trusted),
    CYAML_FIELD_END
};

static const cyaml_schema_value_t cfg_listener_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct cfg_raw_listener, cfg_listener_fields),
};

static const cyaml_schema_field_t cfg_lmtp_fields[] = {
    CFG_LEAF("hostname", struct cfg_raw_lmtp, hostname),
    CFG_LEAF("max_connections", struct cfg_raw_lmtp, max_connections),
    CFG_LEAF("line_length_limit", struct cfg_raw_lmtp, line_length_limit),
    CFG_LEAF("message_size_limit", struct cfg_raw_lmtp, message_size_limit),
    CFG_LEAF("recipient_limit", struct cfg_raw_lmtp, recipient_limit),
    CFG_LEAF("soft_error_limit", struct cfg_raw_lmtp, soft_error_limit),
    CFG_LEAF("hard_error_limit", struct cfg_raw_lmtp, hard_error_limit),
    CFG_LEAF("junk_command_limit", struct cfg_raw_lmtp, junk_command_limit),
    CFG_LEAF("command_timeout", struct cfg_raw_lmtp, command_timeout),
    CFG_LEAF("data_timeout", struct cfg_raw_lmtp, data_timeout),
    CFG_LEAF("min_data_rate", struct cfg_raw_lmtp, min_data_rate),
    CFG_LEAF("bare_line_endings", struct cfg_raw_lmtp, bare_line_endings),
    CFG_LEAF("futurerelease_max", struct cfg_raw_lmtp, futurerelease_max),
    CYAML_FIELD_SEQUENCE("listeners", CFG_SECTION_FLAGS, struct cfg_raw_lmtp, listeners,
                         &cfg_listener_schema, 0, CFG_LISTENERS_MAX),
    CYAML_FIELD_END
};

static const cyaml_schema_field_t cfg_delivery_fields[] = {
    CFG_LEAF("default_transport", struct cfg_raw_delivery, default_transport),
    CFG_LEAF("workers", struct cfg_raw_delivery, workers),
    CFG_LEAF("retry_first", struct cfg_raw_delivery, retry_first),
    CFG_LEAF("retry_max", struct cfg_raw_delivery, retry_max),
    CFG_LEAF("expiry", struct cfg_raw_delivery, expiry),
    CFG_LEAF("lease", struct cfg_raw_delivery, lease),
    CYAML_FIELD_END
};

static const cyaml_schema_field_t cfg_capture_fields[] = {
    CFG_LEAF("dir", struct cfg_raw_capture, dir),
    CYAML_FIELD_END
};

static const cyaml_schema_field_t cfg_top_fields[] = {
    CFG_LEAF("node", struct cfg_raw, node),
    CFG_LEAF("user", struct cfg_raw, user),
    CYAML_FIELD_MAPPING_PTR("log", CFG_SECTION_FLAGS, struct cfg_raw, log, cfg_log_fields),
    CYAML_FIELD_MAPPING_PTR("redis", CFG_SECTION_FLAGS, struct cfg_raw, redis, cfg_redis_fields),
    CYAML_FIELD_MAPPING_PTR("spool", CFG_SECTION_FLAGS, struct cfg_raw, spool, cfg_spool_fields),
    CYAML_FIELD_MAPPING_PTR("lmtp", CFG_SECTION_FLAGS, struct cfg_raw, lmtp, cfg_lmtp_fields),
    CYAML_FIELD_MAPPING_PTR("delivery", CFG_SECTION_FLAGS, struct cfg_raw, delivery, cfg_delivery_fields),
    CYAML_FIELD_MAPPING_PTR("capture", CFG_SECTION_FLAGS, struct cfg_raw, capture, cfg_capture_fields),
    CYAML_FIELD_END
};

static const cyaml_schema_value_t cfg_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct cfg_raw, cfg_top_fields),
};

/* ---- error collection --------------------------------------------------- */

struct cfg_key {
    char *path;             /* "lmtp.listeners[0].address" */
    unsigned line;          /* 1-based line of the key (or list entry) */
    bool is_null;           /* plain empty, "~" or "null": same as absent */
};

struct cfg_error {
    unsigned line;          /* 0: about the file, no line */
    size_t seq;             /* keeps the order of errors on one line */
    char *path;
    char *msg;
};

/* One backtrace frame from libcyaml's log. */
struct cfg_cyframe {
    bool is_entry;
    unsigned index;         /* sequence entry as printed by libcyaml (1-based) */
    char name[64];
};

/* A node of the transports:/routes: tree (pass 1 builds it, pass 3 reads it). */
enum cfg_node_kind { CFG_NODE_SCALAR, CFG_NODE_MAP, CFG_NODE_SEQ };

struct cfg_node {
    enum cfg_node_kind kind;
    unsigned line;              /* where the node starts */
    bool is_null;               /* scalar: plain empty, "~" or "null" */
    char *value;                /* scalar text */
    char *key;                  /* the key, when the node is a mapping value */
    unsigned key_line;
    struct cfg_node **kids;     /* MAP: values in file order (each with its key); SEQ: entries */
    size_t nkids, capkids;
};

struct cfg_ctx {
    char name[CFG_NAME_MAX];
    struct cfg_key *keys;
    size_t nkeys, capkeys;
    struct cfg_error *errs;
    size_t nerrs, caperrs;
    size_t nproblems;       /* all errors, including those past CFG_ERRORS_MAX */
    bool fatal;             /* structure broken: do not run libcyaml */
    /* libcyaml log capture (pass 2) */
    bool cy_have_msg, cy_closed;
    char cy_msg[160];
    char cy_key[64];
    unsigned cy_line;
    struct cfg_cyframe cy_bt[CFG_DEPTH_MAX];
    size_t cy_nbt;
    /* the sections libcyaml does not see (pass 1 -> pass 3); every node
     * is also in dom_all, which is how they are freed (no recursion) */
    struct cfg_node *dom_transports, *dom_routes;
    struct cfg_node **dom_all;
    size_t ndom_all, capdom_all;
    /* pass 3 on the tree: errors about at_path belong on at_line */
    char at_path[CFG_KEYPATH_MAX];
    unsigned at_line;
};

/* cfg_key_find - the entry recorded for path, or NULL */
static struct cfg_key *cfg_key_find(const struct cfg_ctx *cx, const char *path)
{
    for (size_t i = 0; i < cx->nkeys; i++)
        if (strcmp(cx->keys[i].path, path) == 0)
            return &cx->keys[i];
    return NULL;
}

/* cfg_key_add - remember the line of a key path (the first one wins) */
static struct cfg_key *cfg_key_add(struct cfg_ctx *cx, const char *path, unsigned line)
{
    struct cfg_key *k = cfg_key_find(cx, path);

    if (k != NULL || cx->nkeys >= CFG_KEYS_MAX)
        return k;
    if (cx->nkeys == cx->capkeys)
        cx->keys = xreallocarray_grow(cx->keys, &cx->capkeys, cx->nkeys + 1, sizeof(*cx->keys));
    k = &cx->keys[cx->nkeys++];
    k->path = xstrdup(path);
    k->line = line;
    k->is_null = false;
    return k;
}

/* cfg_key_line - line of path, else of its nearest recorded parent, else 1 */
static unsigned cfg_key_line(const struct cfg_ctx *cx, const char *path)
{
    char p[CFG_KEYPATH_MAX];

    if (cx->at_line > 0 && strcmp(cx->at_path, path) == 0)
        return cx->at_line;
    if (text_copy(p, sizeof(p), path) != SY_OK)
        return 1;
    for (;;) {
        const struct cfg_key *k = cfg_key_find(cx, p);
        size_t n;

        if (k != NULL)
            return k->line;
        n = strlen(p);
        while (n > 0 && p[n - 1] != '.' && p[n - 1] != '[')
            n--;
        if (n == 0)
            return 1;
        p[n - 1] = '\0';
    }
}

/* cfg_verr - record one problem; a second one on the same key and line is dropped */
__attribute__((format(printf, 4, 0)))
static void cfg_verr(struct cfg_ctx *cx, unsigned line, const char *path, const char *fmt, va_list ap)
{
    char msg[512];
    struct cfg_error *e;

    for (size_t i = 0; i < cx->nerrs; i++)
        if (cx->errs[i].line == line && strcmp(cx->errs[i].path, path) == 0)
            return;
    cx->nproblems++;
    if (cx->nerrs >= CFG_ERRORS_MAX)
        return;
    (void) vsnprintf(msg, sizeof(msg), fmt, ap);
    if (cx->nerrs == cx->caperrs)
        cx->errs = xreallocarray_grow(cx->errs, &cx->caperrs, cx->nerrs + 1, sizeof(*cx->errs));
    e = &cx->errs[cx->nerrs];
    e->line = line;
    e->seq = cx->nerrs++;
    e->path = xstrdup(path);
    e->msg = xstrdup(msg);
}

/* cfg_err_at - a problem at a known line (0: the file as a whole) */
__attribute__((format(printf, 4, 5)))
static void cfg_err_at(struct cfg_ctx *cx, unsigned line, const char *path, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cfg_verr(cx, line, path, fmt, ap);
    va_end(ap);
}

/* cfg_err_key - a problem with a key: the line comes from the scan */
__attribute__((format(printf, 3, 4)))
static void cfg_err_key(struct cfg_ctx *cx, const char *path, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cfg_verr(cx, cfg_key_line(cx, path), path, fmt, ap);
    va_end(ap);
}

/* cfg_err_cmp - order errors by line, then as found */
static int cfg_err_cmp(const void *a, const void *b)
{
    const struct cfg_error *x = a, *y = b;

    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* cfg_ctx_flush - append the sorted errors to the caller's buffer */
static void cfg_ctx_flush(struct cfg_ctx *cx, struct buf *errors)
{
    if (cx->nerrs > 1)
        qsort(cx->errs, cx->nerrs, sizeof(*cx->errs), cfg_err_cmp);
    for (size_t i = 0; errors != NULL && i < cx->nerrs; i++) {
        const struct cfg_error *e = &cx->errs[i];
        const char *sep = e->path[0] != '\0' ? ": " : "";
        int rc;

        if (e->line > 0)
            rc = buf_printf(errors, "%s:%u: %s%s%s\n", cx->name, e->line, e->path, sep, e->msg);
        else
            rc = buf_printf(errors, "%s: %s%s%s\n", cx->name, e->path, sep, e->msg);
        if (rc != SY_OK)
            return;
    }
    if (errors != NULL && cx->nproblems > cx->nerrs)
        (void) buf_printf(errors, "%s: %zu more error(s) not shown\n", cx->name,
                          cx->nproblems - cx->nerrs);
}

/* cfg_ctx_init - an empty context; name is shown in every error */
static void cfg_ctx_init(struct cfg_ctx *cx, const char *name)
{
    memset(cx, 0, sizeof(*cx));
    (void) log_safe(cx->name, sizeof(cx->name), name != NULL ? name : "<config>");
}

/* cfg_node_free - one node (not its children); scalar text is wiped, as
 * it may be a password */
static void cfg_node_free(struct cfg_node *n)
{
    if (n->value != NULL) {
        explicit_bzero(n->value, strlen(n->value));
        free(n->value);
    }
    free(n->kids);
    free(n->key);
    free(n);
}

static void cfg_ctx_free(struct cfg_ctx *cx)
{
    for (size_t i = 0; i < cx->ndom_all; i++)
        cfg_node_free(cx->dom_all[i]);
    free(cx->dom_all);
    for (size_t i = 0; i < cx->nkeys; i++)
        free(cx->keys[i].path);
    for (size_t i = 0; i < cx->nerrs; i++) {
        free(cx->errs[i].path);
        free(cx->errs[i].msg);
    }
    free(cx->keys);
    free(cx->errs);
}

/* ---- small text helpers -------------------------------------------------- */

/* cfg_echo - a value made safe to quote in an error line */
static const char *cfg_echo(char *dst, size_t n, const char *s)
{
    return log_safe(dst, n, s);
}

static bool cfg_is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* cfg_charset_ok - 1..max bytes, each alphanumeric or in extra */
static bool cfg_charset_ok(const char *s, size_t max, const char *extra)
{
    size_t n = strlen(s);

    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!cfg_is_alnum((unsigned char) s[i]) && strchr(extra, s[i]) == NULL)
            return false;
    return true;
}

static bool cfg_all_digits(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* cfg_fmt_duration - ms as the largest exact unit: "7d", "90s", "1500ms" */
static const char *cfg_fmt_duration(char *dst, size_t n, uint64_t ms)
{
    static const struct { uint64_t ms; const char *unit; } units[] = {
        { CFG_DAY, "d" }, { CFG_HOUR, "h" }, { CFG_MIN, "m" }, { CFG_SEC, "s" },
    };

    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (ms != 0 && ms % units[i].ms == 0) {
            (void) snprintf(dst, n, "%llu%s", (unsigned long long) (ms / units[i].ms), units[i].unit);
            return dst;
        }
    (void) snprintf(dst, n, ms == 0 ? "0s" : "%llums", (unsigned long long) ms);
    return dst;
}

/* cfg_fmt_size - bytes as the largest exact unit: "2g", "1k", "1000" */
static const char *cfg_fmt_size(char *dst, size_t n, uint64_t v)
{
    static const struct { uint64_t mult; const char *unit; } units[] = {
        { CFG_GIB, "g" }, { CFG_KIB * CFG_KIB, "m" }, { CFG_KIB, "k" },
    };

    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (v != 0 && v % units[i].mult == 0) {
            (void) snprintf(dst, n, "%llu%s", (unsigned long long) (v / units[i].mult), units[i].unit);
            return dst;
        }
    (void) snprintf(dst, n, "%llu", (unsigned long long) v);
    return dst;
}

/* cfg_edit_distance - Levenshtein distance of two short keys, capped at 9 */
static size_t cfg_edit_distance(const char *a, size_t na, const char *b)
{
    size_t nb = strlen(b), row[33];

    if (na > 32 || nb > 32)
        return 9;
    for (size_t j = 0; j <= nb; j++)
        row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        size_t diag = row[0];

        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);

            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[nb];
}

/* ---- pass 1: the libyaml scan ------------------------------------------- */

enum cfg_frame_kind { CFG_FRAME_MAP, CFG_FRAME_SEQ };

struct cfg_frame {
    enum cfg_frame_kind kind;
    const cyaml_schema_value_t *schema;     /* the mapping or sequence */
    size_t base;                            /* strlen(path) of this node */
    uint64_t seen;                          /* MAP: fields given so far */
    bool want_key;                          /* MAP: the next node is a key */
    const cyaml_schema_value_t *pending;    /* MAP: schema of the value; NULL: ignore */
    unsigned next;                          /* SEQ: index of the next entry */
};

/* A mapping or list being copied into the transports:/routes: tree. */
struct cfg_dframe {
    struct cfg_node *node;
    size_t base;                            /* strlen(path) of this node */
    bool want_key;                          /* MAP: the next node is a key */
    char *key;                              /* MAP: the key whose value comes next */
    unsigned key_line;
};

struct cfg_scan {
    struct cfg_ctx *cx;
    struct cfg_frame st[CFG_DEPTH_MAX];
    size_t depth;
    size_t skip;            /* > 0: nesting inside a subtree being ignored */
    struct cfg_dframe dst[CFG_DEPTH_MAX];
    size_t ddepth;          /* > 0: inside a section copied into a tree */
    struct cfg_node **dtarget;  /* the next node is the root of that section */
    char path[CFG_KEYPATH_MAX];
    unsigned docs;
    bool stop;
};

/* cfg_scan_fatal - a problem that libcyaml would also stop at */
__attribute__((format(printf, 4, 5)))
static void cfg_scan_fatal(struct cfg_scan *sc, unsigned line, const char *path, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cfg_verr(sc->cx, line, path, fmt, ap);
    va_end(ap);
    sc->cx->fatal = true;
}

/* cfg_is_plain_null - YAML's null: an empty plain scalar, "~" or "null" */
static bool cfg_is_plain_null(const yaml_event_t *ev)
{
    static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };
    const char *v = (const char *) ev->data.scalar.value;

    if (ev->type != YAML_SCALAR_EVENT || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
        if (ev->data.scalar.length == strlen(nulls[i]) && strcmp(v, nulls[i]) == 0)
            return true;
    return false;
}

static const char *cfg_event_kind(const yaml_event_t *ev)
{
    if (ev->type == YAML_MAPPING_START_EVENT)
        return "a mapping";
    if (ev->type == YAML_SEQUENCE_START_EVENT)
        return "a list";
    return "a single value";
}

static const char *cfg_schema_kind(const cyaml_schema_value_t *vs)
{
    if (vs->type == CYAML_MAPPING)
        return "a mapping";
    if (vs->type == CYAML_SEQUENCE)
        return "a list";
    return "a single value";
}

/* cfg_scan_enter - nest one level deeper; false when that is too deep */
static bool cfg_scan_enter(struct cfg_scan *sc, unsigned line)
{
    if (sc->depth + sc->skip + sc->ddepth + 1 > CFG_DEPTH_MAX) {
        cfg_scan_fatal(sc, line, "", "nesting deeper than %d levels", CFG_DEPTH_MAX);
        sc->stop = true;
        return false;
    }
    return true;
}

/* cfg_scan_push - a mapping or sequence the schema knows */
static void cfg_scan_push(struct cfg_scan *sc, enum cfg_frame_kind kind,
                          const cyaml_schema_value_t *vs, unsigned line)
{
    struct cfg_frame *f;

    if (!cfg_scan_enter(sc, line))
        return;
    f = &sc->st[sc->depth++];
    memset(f, 0, sizeof(*f));
    f->kind = kind;
    f->schema = vs;
    f->base = strlen(sc->path);
    f->want_key = true;
}

/* cfg_scan_ignore - skip the subtree that starts with ev (if it is one) */
static void cfg_scan_ignore(struct cfg_scan *sc, const yaml_event_t *ev, unsigned line)
{
    if (ev->type != YAML_MAPPING_START_EVENT && ev->type != YAML_SEQUENCE_START_EVENT)
        return;
    if (cfg_scan_enter(sc, line))
        sc->skip++;
}

/* cfg_scan_value - a value node where the schema expects vs (NULL: ignore it) */
static void cfg_scan_value(struct cfg_scan *sc, const cyaml_schema_value_t *vs,
                           const yaml_event_t *ev, unsigned line)
{
    bool null_ok;

    if (vs == NULL) {
        cfg_scan_ignore(sc, ev, line);
        return;
    }
    null_ok = (vs->flags & CYAML_FLAG_POINTER_NULL) == CYAML_FLAG_POINTER_NULL;
    if (vs->type == CYAML_STRING && ev->type == YAML_SCALAR_EVENT) {
        if (cfg_is_plain_null(ev)) {
            struct cfg_key *k = cfg_key_find(sc->cx, sc->path);

            if (k != NULL)
                k->is_null = true;
        }
        return;
    }
    if (vs->type == CYAML_MAPPING && ev->type == YAML_MAPPING_START_EVENT) {
        cfg_scan_push(sc, CFG_FRAME_MAP, vs, line);
        return;
    }
    if (vs->type == CYAML_SEQUENCE && ev->type == YAML_SEQUENCE_START_EVENT) {
        cfg_scan_push(sc, CFG_FRAME_SEQ, vs, line);
        return;
    }
    if (null_ok && cfg_is_plain_null(ev))
        return;
    cfg_scan_fatal(sc, cfg_key_line(sc->cx, sc->path), sc->path, "expected %s, found %s",
                   cfg_schema_kind(vs), cfg_event_kind(ev));
    cfg_scan_ignore(sc, ev, line);
}

/* Top-level keys read into a cfg_node tree (see the file comment), and
 * where their tree goes. */
static const char *const cfg_dom_keys[] = { "transports", "routes" };

/* cfg_suggest - the candidate closest to key[0..klen), or NULL when none is
 * near enough to be a likely typo */
static const char *cfg_suggest(const char *key, size_t klen, const char *const *cands, size_t ncands)
{
    size_t best = 0, bestd = 9;

    for (size_t j = 0; j < ncands; j++) {
        size_t d = cfg_edit_distance(key, klen, cands[j]);

        if (d < bestd) {
            bestd = d;
            best = j;
        }
    }
    return bestd <= 2 && bestd < klen ? cands[best] : NULL;
}

/* cfg_err_unknown - "unknown key", with a suggestion when one is close */
static void cfg_err_unknown(struct cfg_ctx *cx, unsigned line, const char *path, const char *key,
                            size_t klen, const char *const *cands, size_t ncands)
{
    const char *s = cfg_suggest(key, klen, cands, ncands);

    if (s != NULL)
        cfg_err_at(cx, line, path, "unknown key (did you mean \"%s\"?)", s);
    else
        cfg_err_at(cx, line, path, "unknown key");
}

/* cfg_scan_dom_key - a top-level key whose value is copied into a tree */
static bool cfg_scan_dom_key(struct cfg_scan *sc, const char *key, size_t klen, unsigned line)
{
    struct cfg_node **target[] = { &sc->cx->dom_transports, &sc->cx->dom_routes };

    for (size_t j = 0; j < sizeof(cfg_dom_keys) / sizeof(cfg_dom_keys[0]); j++) {
        if (strlen(cfg_dom_keys[j]) != klen || memcmp(cfg_dom_keys[j], key, klen) != 0)
            continue;
        if (cfg_key_find(sc->cx, sc->path) != NULL) {
            cfg_scan_fatal(sc, line, sc->path, "duplicate key (first given on line %u)",
                           cfg_key_line(sc->cx, sc->path));
            return true;
        }
        (void) cfg_key_add(sc->cx, sc->path, line);
        sc->dtarget = target[j];
        return true;
    }
    return false;
}

/* cfg_scan_key - a key inside a mapping the schema knows */
static void cfg_scan_key(struct cfg_scan *sc, struct cfg_frame *f, const yaml_event_t *ev, unsigned line)
{
    const cyaml_schema_field_t *fields = f->schema->mapping.fields;
    const char *key = (const char *) ev->data.scalar.value;
    size_t klen = ev->data.scalar.length, i;
    char seg[CFG_SEG_MAX];

    f->want_key = false;
    f->pending = NULL;
    (void) log_safe_n(seg, sizeof(seg), key, klen);
    (void) snprintf(sc->path + f->base, sizeof(sc->path) - f->base, "%s%s",
                    f->base > 0 ? "." : "", seg);
    if (f->schema == &cfg_schema && cfg_scan_dom_key(sc, key, klen, line))
        return;
    for (i = 0; fields[i].key != NULL; i++)
        if (strlen(fields[i].key) == klen && memcmp(fields[i].key, key, klen) == 0)
            break;
    if (fields[i].key == NULL) {
        const char *cands[64];
        size_t nc = 0;

        /* A near miss is almost always a typo: say which key was meant. */
        for (size_t j = 0; fields[j].key != NULL && nc < 62; j++)
            cands[nc++] = fields[j].key;
        if (f->schema == &cfg_schema)
            for (size_t j = 0; j < sizeof(cfg_dom_keys) / sizeof(cfg_dom_keys[0]); j++)
                cands[nc++] = cfg_dom_keys[j];
        cfg_err_unknown(sc->cx, line, sc->path, key, klen, cands, nc);
        return;
    }
    if (i < 64 && (f->seen & ((uint64_t) 1 << i)) != 0) {
        cfg_scan_fatal(sc, line, sc->path, "duplicate key (first given on line %u)",
                       cfg_key_line(sc->cx, sc->path));
        return;
    }
    if (i < 64)
        f->seen |= (uint64_t) 1 << i;
    (void) cfg_key_add(sc->cx, sc->path, line);
    f->pending = &fields[i].value;
}

/* cfg_scan_dom_keynode - a key inside a copied mapping */
static void cfg_scan_dom_keynode(struct cfg_scan *sc, struct cfg_dframe *d, const yaml_event_t *ev, unsigned line)
{
    const char *key = (const char *) ev->data.scalar.value;
    size_t klen = ev->data.scalar.length;
    char seg[CFG_SEG_MAX];

    (void) log_safe_n(seg, sizeof(seg), key, klen);
    (void) snprintf(sc->path + d->base, sizeof(sc->path) - d->base, ".%s", seg);
    if (klen > CFG_SCALAR_MAX) {
        cfg_scan_fatal(sc, line, sc->path, "key is too long (at most %u bytes)", CFG_SCALAR_MAX);
        sc->stop = true;
        return;
    }
    for (size_t i = 0; i < d->node->nkids; i++) {
        const struct cfg_node *k = d->node->kids[i];

        if (strlen(k->key) == klen && memcmp(k->key, key, klen) == 0) {
            cfg_scan_fatal(sc, line, sc->path, "duplicate key (first given on line %u)", k->key_line);
            break;
        }
    }
    if (d->node->nkids >= CFG_DOM_ENTRIES_MAX) {
        sc->path[d->base] = '\0';
        cfg_scan_fatal(sc, line, sc->path, "too many entries (at most %u)", CFG_DOM_ENTRIES_MAX);
        sc->stop = true;
        return;
    }
    d->key = xmemdup0(key, klen);
    d->key_line = line;
    d->want_key = false;
}

/* cfg_scan_dom - one node of a section copied into a tree */
static void cfg_scan_dom(struct cfg_scan *sc, const yaml_event_t *ev, unsigned line)
{
    struct cfg_dframe *d = sc->ddepth > 0 ? &sc->dst[sc->ddepth - 1] : NULL;
    struct cfg_node *n;

    if (d != NULL && d->node->kind == CFG_NODE_MAP && d->want_key) {
        if (ev->type != YAML_SCALAR_EVENT) {
            cfg_scan_fatal(sc, line, sc->path, "a key must be a single value, not %s", cfg_event_kind(ev));
            sc->stop = true;
            return;
        }
        cfg_scan_dom_keynode(sc, d, ev, line);
        return;
    }
    if (d != NULL && d->node->kind == CFG_NODE_SEQ) {
        (void) snprintf(sc->path + d->base, sizeof(sc->path) - d->base, "[%zu]", d->node->nkids);
        if (d->node->nkids >= CFG_DOM_ENTRIES_MAX) {
            sc->path[d->base] = '\0';
            cfg_scan_fatal(sc, line, sc->path, "too many entries (at most %u)", CFG_DOM_ENTRIES_MAX);
            sc->stop = true;
            return;
        }
    }
    if (ev->type == YAML_SCALAR_EVENT && ev->data.scalar.length > CFG_SCALAR_MAX) {
        cfg_scan_fatal(sc, line, sc->path, "value is too long (at most %u bytes)", CFG_SCALAR_MAX);
        sc->stop = true;
        return;
    }
    n = xcalloc(1, sizeof(*n));
    if (sc->cx->ndom_all == sc->cx->capdom_all)
        sc->cx->dom_all = xreallocarray_grow(sc->cx->dom_all, &sc->cx->capdom_all, sc->cx->ndom_all + 1,
                                             sizeof(struct cfg_node *));
    sc->cx->dom_all[sc->cx->ndom_all++] = n;
    n->line = line;
    if (ev->type == YAML_SCALAR_EVENT) {
        n->kind = CFG_NODE_SCALAR;
        n->value = xmemdup0(ev->data.scalar.value, ev->data.scalar.length);
        n->is_null = cfg_is_plain_null(ev);
    } else {
        n->kind = ev->type == YAML_MAPPING_START_EVENT ? CFG_NODE_MAP : CFG_NODE_SEQ;
    }
    if (d == NULL) {
        *sc->dtarget = n;
        sc->dtarget = NULL;
    } else {
        if (d->node->kind == CFG_NODE_MAP) {
            n->key = d->key;
            n->key_line = d->key_line;
            d->key = NULL;
            d->want_key = true;
        }
        if (d->node->nkids == d->node->capkids)
            d->node->kids = xreallocarray_grow(d->node->kids, &d->node->capkids, d->node->nkids + 1,
                                               sizeof(struct cfg_node *));
        d->node->kids[d->node->nkids++] = n;
    }
    if (n->kind != CFG_NODE_SCALAR && cfg_scan_enter(sc, line)) {
        d = &sc->dst[sc->ddepth++];
        memset(d, 0, sizeof(*d));
        d->node = n;
        d->base = strlen(sc->path);
        d->want_key = true;
    }
}

/* cfg_scan_dom_end - the end of a copied mapping or list */
static void cfg_scan_dom_end(struct cfg_scan *sc)
{
    struct cfg_dframe *d = &sc->dst[--sc->ddepth];

    free(d->key);
    d->key = NULL;
}

/* cfg_scan_node - a scalar, mapping start or sequence start */
static void cfg_scan_node(struct cfg_scan *sc, const yaml_event_t *ev)
{
    unsigned line = (unsigned) ev->start_mark.line + 1;
    const cyaml_schema_value_t *vs;
    struct cfg_frame *f;

    if (sc->skip > 0) {
        cfg_scan_ignore(sc, ev, line);
        return;
    }
    if (sc->depth == 0) {
        sc->path[0] = '\0';
        if (ev->type == YAML_MAPPING_START_EVENT) {
            cfg_scan_push(sc, CFG_FRAME_MAP, &cfg_schema, line);
        } else if (cfg_is_plain_null(ev)) {
            cfg_scan_fatal(sc, 1, "", "the configuration is empty");
        } else {
            cfg_scan_fatal(sc, line, "", "the configuration must be a mapping of keys, found %s",
                           cfg_event_kind(ev));
            cfg_scan_ignore(sc, ev, line);
        }
        return;
    }
    f = &sc->st[sc->depth - 1];
    if (sc->ddepth > 0) {
        cfg_scan_dom(sc, ev, line);
        return;
    }
    if (sc->dtarget != NULL && f->kind == CFG_FRAME_MAP && !f->want_key) {
        f->want_key = true;         /* this node is the value of the key */
        cfg_scan_dom(sc, ev, line);
        return;
    }
    if (f->kind == CFG_FRAME_MAP && f->want_key) {
        if (ev->type != YAML_SCALAR_EVENT) {
            cfg_scan_fatal(sc, line, sc->path, "a key must be a single value, not %s", cfg_event_kind(ev));
            sc->stop = true;
            return;
        }
        cfg_scan_key(sc, f, ev, line);
        return;
    }
    if (f->kind == CFG_FRAME_MAP) {
        f->want_key = true;
        vs = f->pending;
    } else {
        unsigned idx = f->next++;

        (void) snprintf(sc->path + f->base, sizeof(sc->path) - f->base, "[%u]", idx);
        vs = NULL;
        if (idx < f->schema->sequence.max) {
            vs = f->schema->sequence.entry;
            (void) cfg_key_add(sc->cx, sc->path, line);
        } else if (idx == f->schema->sequence.max) {
            sc->path[f->base] = '\0';
            cfg_scan_fatal(sc, line, sc->path, "too many entries (at most %u)", f->schema->sequence.max);
        }
    }
    cfg_scan_value(sc, vs, ev, line);
}

/* cfg_scan_props - anchors, aliases and tags have no use in a configuration */
static void cfg_scan_props(struct cfg_scan *sc, const yaml_event_t *ev)
{
    const yaml_char_t *anchor = NULL, *tag = NULL;
    unsigned line = (unsigned) ev->start_mark.line + 1;

    if (ev->type == YAML_SCALAR_EVENT) {
        anchor = ev->data.scalar.anchor;
        tag = ev->data.scalar.tag;
    } else if (ev->type == YAML_MAPPING_START_EVENT) {
        anchor = ev->data.mapping_start.anchor;
        tag = ev->data.mapping_start.tag;
    } else if (ev->type == YAML_SEQUENCE_START_EVENT) {
        anchor = ev->data.sequence_start.anchor;
        tag = ev->data.sequence_start.tag;
    }
    if (anchor != NULL)
        cfg_scan_fatal(sc, line, "", "anchors (&name) are not supported");
    if (tag != NULL)
        cfg_scan_fatal(sc, line, "", "tags (!name) are not supported");
}

/* cfg_scan_encoding - NUL bytes and invalid UTF-8, with the line they are on */
static bool cfg_scan_encoding(struct cfg_ctx *cx, const char *data, size_t len)
{
    unsigned line = 1;
    size_t start = 0;

    for (size_t i = 0; i <= len; i++) {
        if (i < len && data[i] != '\n' && data[i] != '\0')
            continue;
        if (!text_is_utf8(data + start, i - start)) {
            cfg_err_at(cx, line, "", "the file is not valid UTF-8");
            cx->fatal = true;
            return false;
        }
        if (i < len && data[i] == '\0') {
            cfg_err_at(cx, line, "", "the file contains a NUL byte");
            cx->fatal = true;
            return false;
        }
        line++;
        start = i + 1;
    }
    return true;
}

/* cfg_scan - pass 1 over the whole document */
static void cfg_scan(struct cfg_ctx *cx, const char *data, size_t len)
{
    struct cfg_scan sc;
    yaml_parser_t parser;
    yaml_event_t ev;

    if (!cfg_scan_encoding(cx, data, len))
        return;
    memset(&sc, 0, sizeof(sc));
    sc.cx = cx;
    if (!yaml_parser_initialize(&parser))
        sy_panic("config: yaml_parser_initialize failed");
    /* No yaml_parser_set_encoding(): then libyaml skips a byte order mark.
     * The input was checked above, so it can only be UTF-8. */
    yaml_parser_set_input_string(&parser, (const unsigned char *) data, len);
    while (!sc.stop) {
        if (!yaml_parser_parse(&parser, &ev)) {
            const char *ctx = parser.context != NULL ? parser.context : "";

            cfg_scan_fatal(&sc, (unsigned) parser.problem_mark.line + 1, "", "YAML syntax error: %s%s%s",
                           ctx, ctx[0] != '\0' ? ", " : "",
                           parser.problem != NULL ? parser.problem : "unknown problem");
            break;
        }
        switch (ev.type) {
        case YAML_DOCUMENT_START_EVENT:
            if (++sc.docs > 1) {
                cfg_scan_fatal(&sc, (unsigned) ev.start_mark.line + 1, "",
                               "only one YAML document is allowed");
                sc.stop = true;
            }
            break;
        case YAML_ALIAS_EVENT:
            cfg_scan_fatal(&sc, (unsigned) ev.start_mark.line + 1, "", "aliases (*name) are not supported");
            sc.stop = true;
            break;
        case YAML_SCALAR_EVENT:
        case YAML_MAPPING_START_EVENT:
        case YAML_SEQUENCE_START_EVENT:
            cfg_scan_props(&sc, &ev);
            cfg_scan_node(&sc, &ev);
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            if (sc.ddepth > 0)
                cfg_scan_dom_end(&sc);
            else if (sc.skip > 0)
                sc.skip--;
            else if (sc.depth > 0)
                sc.depth--;
            break;
        case YAML_STREAM_END_EVENT:
            sc.stop = true;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    while (sc.ddepth > 0)
        cfg_scan_dom_end(&sc);
    if (sc.docs == 0 && !cx->fatal)
        cfg_scan_fatal(&sc, 1, "", "the configuration is empty");
}

/* ---- pass 2: libcyaml ---------------------------------------------------- */

/* cfg_cyaml_msg - our wording for libcyaml's error; never its value text,
 * which for an over-long password would be the password */
static void cfg_cyaml_msg(struct cfg_ctx *cx, const char *fmt, const char *line)
{
    const char *text = strncmp(line, "Load: ", 6) == 0 ? line + 6 : line;
    char tmp[128];
    char *q;

    if (strstr(fmt, "STRING length >") != NULL) {
        (void) snprintf(cx->cy_msg, sizeof(cx->cy_msg), "value is too long (at most %u bytes)", CFG_SCALAR_MAX);
    } else if (strstr(fmt, "STRING length <") != NULL) {
        (void) snprintf(cx->cy_msg, sizeof(cx->cy_msg), "value is too short");
    } else if (strncmp(text, "Unexpected key: ", 16) == 0) {
        (void) log_safe(cx->cy_key, sizeof(cx->cy_key), text + 16);
        (void) snprintf(cx->cy_msg, sizeof(cx->cy_msg), "unknown key");
    } else if (strncmp(text, "Mapping field already seen", 26) == 0) {
        (void) snprintf(cx->cy_msg, sizeof(cx->cy_msg), "duplicate key");
    } else {
        (void) log_safe(tmp, sizeof(tmp), text);
        q = strchr(tmp, '\'');
        if (q != NULL)
            *q = '\0';
        (void) snprintf(cx->cy_msg, sizeof(cx->cy_msg), "libcyaml: %s", tmp);
    }
}

/* cfg_cyaml_frame - one "  in mapping field 'x' (line: N, column: M)" line */
static void cfg_cyaml_frame(struct cfg_ctx *cx, const char *s)
{
    struct cfg_cyframe *fr;
    const char *q, *ln = strstr(s, "(line: ");
    uint64_t v;

    if (ln != NULL && cx->cy_nbt == 0) {
        size_t d = 0;

        ln += 7;
        while (ln[d] >= '0' && ln[d] <= '9')
            d++;
        if (text_parse_u64(ln, d, 1, UINT32_MAX, &v) == SY_OK)
            cx->cy_line = (unsigned) v;
    }
    if (cx->cy_nbt >= CFG_DEPTH_MAX)
        return;
    fr = &cx->cy_bt[cx->cy_nbt];
    memset(fr, 0, sizeof(*fr));
    if (strncmp(s, "mapping field '", 15) == 0) {
        s += 15;
        q = strstr(s, "' (line");
        if (q == NULL || (size_t) (q - s) >= sizeof(fr->name))
            return;
        memcpy(fr->name, s, (size_t) (q - s));
        cx->cy_nbt++;
    } else if (strncmp(s, "sequence entry '", 16) == 0) {
        s += 16;
        q = strchr(s, '\'');
        if (q == NULL || text_parse_u64(s, (size_t) (q - s), 0, UINT32_MAX, &v) != SY_OK)
            return;
        fr->is_entry = true;
        fr->index = (unsigned) v;
        cx->cy_nbt++;
    }
}

/* cfg_cyaml_log - libcyaml's log_fn: keep the first error and its backtrace */
__attribute__((format(printf, 3, 0)))
static void cfg_cyaml_log(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    struct cfg_ctx *cx = ctx;
    char line[512];
    size_t n;

    if (level < CYAML_LOG_ERROR || cx->cy_closed)
        return;
    (void) vsnprintf(line, sizeof(line), fmt, args);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (strncmp(line, "Load: Backtrace", 15) == 0)
        return;
    if (strncmp(line, "  in ", 5) == 0) {
        if (cx->cy_have_msg)
            cfg_cyaml_frame(cx, line + 5);
        return;
    }
    if (cx->cy_have_msg) {
        cx->cy_closed = true;   /* a second error: the first one is enough */
        return;
    }
    cfg_cyaml_msg(cx, fmt, line);
    cx->cy_have_msg = true;
}

/* cfg_cyaml_report - turn the captured backtrace into "lmtp.listeners[1].name" */
static void cfg_cyaml_report(struct cfg_ctx *cx, cyaml_err_t rc)
{
    char path[CFG_KEYPATH_MAX] = "";
    size_t off = 0;
    const struct cfg_key *k;

    if (!cx->cy_have_msg) {
        cfg_err_at(cx, 1, "", "libcyaml: %s", cyaml_strerror(rc));
        return;
    }
    /* The backtrace lists the innermost frame first. */
    for (size_t i = cx->cy_nbt; i-- > 0 && off < sizeof(path);) {
        const struct cfg_cyframe *fr = &cx->cy_bt[i];
        int w;

        if (fr->is_entry)
            w = snprintf(path + off, sizeof(path) - off, "[%u]", fr->index > 0 ? fr->index - 1 : 0);
        else
            w = snprintf(path + off, sizeof(path) - off, "%s%s", off > 0 ? "." : "", fr->name);
        if (w > 0)
            off += (size_t) w;
    }
    if (cx->cy_key[0] != '\0' && off < sizeof(path))
        (void) snprintf(path + off, sizeof(path) - off, "%s%s", off > 0 ? "." : "", cx->cy_key);
    k = cfg_key_find(cx, path);
    cfg_err_at(cx, k != NULL ? k->line : (cx->cy_line > 0 ? cx->cy_line : 1), path, "%s", cx->cy_msg);
}

/* ---- pass 3: values ------------------------------------------------------ */

/* cfg_val - the text of a key, NULL when it is absent or YAML null */
static const char *cfg_val(const struct cfg_ctx *cx, const char *path, const char *raw)
{
    const struct cfg_key *k;

    if (raw == NULL)
        return NULL;
    k = cfg_key_find(cx, path);
    return k != NULL && k->is_null ? NULL : raw;
}

/* cfg_uint - a decimal integer in [min, max]; def when absent */
static bool cfg_uint(struct cfg_ctx *cx, const char *path, const char *raw,
                     uint64_t min, uint64_t max, uint64_t def, uint64_t *out)
{
    const char *s = cfg_val(cx, path, raw);
    char echo[CFG_ECHO_MAX];
    uint64_t v;

    *out = def;
    if (s == NULL)
        return true;
    if (text_parse_u64(s, strlen(s), min, max, &v) == SY_OK) {
        *out = v;
        return true;
    }
    if (cfg_all_digits(s))
        cfg_err_key(cx, path, "%s is out of range (%llu to %llu)", cfg_echo(echo, sizeof(echo), s),
                    (unsigned long long) min, (unsigned long long) max);
    else
        cfg_err_key(cx, path, "expected an integer from %llu to %llu, got \"%s\"",
                    (unsigned long long) min, (unsigned long long) max, cfg_echo(echo, sizeof(echo), s));
    return false;
}

/* cfg_unsigned - cfg_uint for an unsigned field */
static bool cfg_unsigned(struct cfg_ctx *cx, const char *path, const char *raw,
                         unsigned min, unsigned max, unsigned def, unsigned *out)
{
    uint64_t v;
    bool ok = cfg_uint(cx, path, raw, min, max, def, &v);

    *out = (unsigned) v;
    return ok;
}

/* A scaled number: how it parses and prints, for cfg_scaled(). */
struct cfg_scale {
    int (*parse)(const char *s, uint64_t min, uint64_t max, uint64_t *out);
    const char *(*fmt)(char *dst, size_t size, uint64_t v);
    const char *what;           /* "a duration (examples: ...)" */
};

/* cfg_scaled - a duration or a size in [min, max], default def */
static bool cfg_scaled(struct cfg_ctx *cx, const char *path, const char *raw, uint64_t min,
                       uint64_t max, uint64_t def, uint64_t *out, const struct cfg_scale *sc)
{
    const char *s = cfg_val(cx, path, raw);
    char echo[CFG_ECHO_MAX];
    uint64_t v;
    int rc;

    *out = def;
    if (s == NULL)
        return true;
    rc = sc->parse(s, min, max, &v);
    if (rc == SY_OK) {
        *out = v;
        return true;
    }
    if (rc == SY_ETOOBIG) {
        char a[32], b[32];

        cfg_err_key(cx, path, "\"%s\" is out of range (%s to %s)", cfg_echo(echo, sizeof(echo), s),
                    sc->fmt(a, sizeof(a), min), sc->fmt(b, sizeof(b), max));
    } else {
        cfg_err_key(cx, path, "\"%s\" is not %s", cfg_echo(echo, sizeof(echo), s), sc->what);
    }
    return false;
}

/* cfg_duration - "30", "30s", "1500ms", "5m", "4h", "5d" in [min, max] ms */
static bool cfg_duration(struct cfg_ctx *cx, const char *path, const char *raw,
                         uint64_t min, uint64_t max, uint64_t def, uint64_t *out)
{
    static const struct cfg_scale sc = {
        text_parse_duration_ms, cfg_fmt_duration,
        "a duration (examples: 1500ms, 30s, 5m, 4h, 5d)",
    };

    return cfg_scaled(cx, path, raw, min, max, def, out, &sc);
}

/* cfg_size - "10240000", "512k", "10m", "1g" in [min, max] bytes */
static bool cfg_size(struct cfg_ctx *cx, const char *path, const char *raw,
                     uint64_t min, uint64_t max, uint64_t def, uint64_t *out)
{
    static const struct cfg_scale sc = {
        text_parse_size, cfg_fmt_size,
        "a size (examples: 10240000, 512k, 10m, 1g)",
    };

    return cfg_scaled(cx, path, raw, min, max, def, out, &sc);
}

/* cfg_bool - true/false/yes/no */
static bool cfg_bool(struct cfg_ctx *cx, const char *path, const char *raw, bool def, bool *out)
{
    const char *s = cfg_val(cx, path, raw);
    char echo[CFG_ECHO_MAX];
    size_t n;

    *out = def;
    if (s == NULL)
        return true;
    n = strlen(s);
    if (text_ieq(s, n, "true") || text_ieq(s, n, "yes")) {
        *out = true;
        return true;
    }
    if (text_ieq(s, n, "false") || text_ieq(s, n, "no")) {
        *out = false;
        return true;
    }
    cfg_err_key(cx, path, "expected true or false, got \"%s\"", cfg_echo(echo, sizeof(echo), s));
    return false;
}

/* cfg_enum - one of names[]; the index, or def */
static bool cfg_enum(struct cfg_ctx *cx, const char *path, const char *raw,
                     const char *const *names, size_t nnames, const char *list, int def, int *out)
{
    const char *s = cfg_val(cx, path, raw);
    char echo[CFG_ECHO_MAX];

    *out = def;
    if (s == NULL)
        return true;
    for (size_t i = 0; i < nnames; i++)
        if (text_ieq(s, strlen(s), names[i])) {
            *out = (int) i;
            return true;
        }
    cfg_err_key(cx, path, "expected one of %s, got \"%s\"", list, cfg_echo(echo, sizeof(echo), s));
    return false;
}

/* cfg_name - a token of alphanumerics and extra, 1..max bytes; a copy or NULL */
static char *cfg_name(struct cfg_ctx *cx, const char *path, const char *s, size_t max,
                      const char *extra, const char *what)
{
    char echo[CFG_ECHO_MAX];

    if (cfg_charset_ok(s, max, extra))
        return xstrdup(s);
    cfg_err_key(cx, path, "\"%s\" is not a valid %s (1 to %zu characters from A-Z a-z 0-9 %s)",
                cfg_echo(echo, sizeof(echo), s), what, max, extra);
    return NULL;
}

/* cfg_dir - an absolute directory, "//" collapsed, no trailing "/"; a copy or NULL.
 * "." and ".." are refused so that "the sibling of spool.dir" is what it says. */
static char *cfg_dir(struct cfg_ctx *cx, const char *path, const char *s)
{
    char echo[CFG_ECHO_MAX];
    struct buf b;
    const char *p = s;

    if (s[0] != '/') {
        cfg_err_key(cx, path, "\"%s\" is not an absolute path", cfg_echo(echo, sizeof(echo), s));
        return NULL;
    }
    if (strlen(s) > CFG_DIR_MAX || !text_is_clean(s, strlen(s))) {
        cfg_err_key(cx, path, "the path is longer than %zu bytes or holds control characters", CFG_DIR_MAX);
        return NULL;
    }
    buf_init(&b, CFG_DIR_MAX);
    while (*p != '\0') {
        size_t n;

        while (*p == '/')
            p++;
        n = strcspn(p, "/");
        if (n == 0)
            break;
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
            cfg_err_key(cx, path, "\"%s\": \".\" and \"..\" are not allowed in the path",
                        cfg_echo(echo, sizeof(echo), s));
            buf_free(&b);
            return NULL;
        }
        (void) buf_append_byte(&b, '/');
        (void) buf_append(&b, p, n);
        p += n;
    }
    if (buf_len(&b) == 0) {
        cfg_err_key(cx, path, "the root directory cannot be used");
        buf_free(&b);
        return NULL;
    }
    return buf_take(&b, NULL);
}

/* cfg_default_node - the host name, made to fit [A-Za-z0-9._-]{1,64} */
static char *cfg_default_node(void)
{
    char h[256];
    size_t n;

    if (gethostname(h, sizeof(h)) != 0)
        h[0] = '\0';
    h[sizeof(h) - 1] = '\0';
    n = strlen(h);
    if (n > CFG_NODE_MAX)
        n = CFG_NODE_MAX;
    h[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (!cfg_is_alnum((unsigned char) h[i]) && h[i] != '.' && h[i] != '_' && h[i] != '-')
            h[i] = '-';
    return xstrdup(n > 0 ? h : "switchyard");
}

static const char *const cfg_level_names[] = { "debug", "info", "warning", "error" };
static const char *const cfg_bare_names[] = { "reject", "normalize" };

/* cfg_build_top - node, user, log */
static void cfg_build_top(struct cfg_ctx *cx, const struct cfg_raw *r, struct config *cfg)
{
    const struct cfg_raw_log *lg = r->log;
    const char *s;
    int level;

    s = cfg_val(cx, "node", r->node);
    cfg->node = s != NULL ? cfg_name(cx, "node", s, CFG_NODE_MAX, "._-", "node name") : cfg_default_node();
    s = cfg_val(cx, "user", r->user);
    if (s != NULL) {
        if (s[0] == '-')
            cfg_err_key(cx, "user", "a user name cannot start with \"-\"");
        else
            cfg->user = cfg_name(cx, "user", s, CFG_USER_MAX, "._-", "user name");
    }
    (void) cfg_enum(cx, "log.level", lg != NULL ? lg->level : NULL, cfg_level_names, 4,
                    "debug, info, warning, error", LOG_LVL_INFO, &level);
    cfg->log.level = level;
    (void) cfg_bool(cx, "log.syslog", lg != NULL ? lg->syslog : NULL, false, &cfg->log.syslog);
}

/* cfg_read_secret - a password file: regular, <= 4 KiB, one line.
 * A copy owned by the caller, or NULL after an error. */
static char *cfg_read_secret(struct cfg_ctx *cx, const char *path, const char *file)
{
    char data[CFG_PASSWORD_MAX + 2], echo[CFG_ECHO_MAX];
    struct stat st;
    size_t n = 0;
    char *out = NULL;
    int fd;

    if (file[0] != '/') {
        cfg_err_key(cx, path, "\"%s\" is not an absolute path", cfg_echo(echo, sizeof(echo), file));
        return NULL;
    }
    fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) != 0) {
        cfg_err_key(cx, path, "%s: %s", cfg_echo(echo, sizeof(echo), file), strerror(errno));
        if (fd >= 0)
            (void) close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        cfg_err_key(cx, path, "%s: not a regular file", cfg_echo(echo, sizeof(echo), file));
        (void) close(fd);
        return NULL;
    }
    if ((st.st_mode & (S_IRGRP | S_IROTH)) != 0)
        log_warn(NULL, "%s: %s %s is readable by group or others (mode %04o)",
                 cx->name, path, cfg_echo(echo, sizeof(echo), file), (unsigned) (st.st_mode & 07777));
    /* Read one byte past the cap so that a file that grew is noticed. */
    while (n < CFG_PASSWORD_MAX + 1) {
        ssize_t got = read(fd, data + n, CFG_PASSWORD_MAX + 1 - n);

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            cfg_err_key(cx, path, "%s: %s", cfg_echo(echo, sizeof(echo), file), strerror(errno));
            goto out;
        }
        if (got == 0)
            break;
        n += (size_t) got;
    }
    if (n > CFG_PASSWORD_MAX) {
        cfg_err_key(cx, path, "%s: larger than %zu bytes", cfg_echo(echo, sizeof(echo), file), CFG_PASSWORD_MAX);
        goto out;
    }
    if (n > 0 && data[n - 1] == '\n')
        n--;
    if (n > 0 && data[n - 1] == '\r')
        n--;
    if (n == 0) {
        cfg_err_key(cx, path, "%s: the file is empty", cfg_echo(echo, sizeof(echo), file));
        goto out;
    }
    if (memchr(data, '\0', n) != NULL || memchr(data, '\n', n) != NULL || memchr(data, '\r', n) != NULL) {
        cfg_err_key(cx, path, "%s: the password must be one line without NUL, CR or LF",
                    cfg_echo(echo, sizeof(echo), file));
        goto out;
    }
    out = xmemdup0(data, n);
out:
    explicit_bzero(data, sizeof(data));
    (void) close(fd);
    return out;
}

/* cfg_addr_checked - parse an address key, reporting the reason */
static bool cfg_addr_checked(struct cfg_ctx *cx, const char *path, const char *s, struct cfg_addr *a)
{
    char why[128], echo[CFG_ECHO_MAX];

    if (cfg_addr_parse(s, a, why, sizeof(why)) == SY_OK)
        return true;
    cfg_err_key(cx, path, "\"%s\": %s", cfg_echo(echo, sizeof(echo), s), why);
    return false;
}

/* cfg_build_redis - the Redis connection */
static void cfg_build_redis(struct cfg_ctx *cx, const struct cfg_raw_redis *rr, struct cfg_redis *rc)
{
    static const struct cfg_raw_redis none;
    const char *s, *pw, *pwfile;

    if (rr == NULL)
        rr = &none;
    s = cfg_val(cx, "redis.address", rr->address);
    if (s != NULL && cfg_addr_checked(cx, "redis.address", s, &rc->addr))
        rc->address = xstrdup(s);
    pw = cfg_val(cx, "redis.password", rr->password);
    pwfile = cfg_val(cx, "redis.password_file", rr->password_file);
    if (pw != NULL && pwfile != NULL) {
        cfg_err_key(cx, "redis.password_file", "set either redis.password or redis.password_file, not both");
    } else if (pw != NULL) {
        /* The value is never echoed: it is a secret. */
        if (strcmp(pw, CFG_REDACTED) == 0)
            cfg_err_key(cx, "redis.password", "\"%s\" is the placeholder written by check-config: "
                        "put the real password here, or use password_file", CFG_REDACTED);
        else if (pw[0] == '\0' || !text_is_clean(pw, strlen(pw)))
            cfg_err_key(cx, "redis.password", "the password must be non-empty, without control characters");
        else
            rc->password = xstrdup(pw);
    } else if (pwfile != NULL) {
        rc->password = cfg_read_secret(cx, "redis.password_file", pwfile);
    }
    (void) cfg_unsigned(cx, "redis.db", rr->db, 0, 15, 0, &rc->db);
    s = cfg_val(cx, "redis.prefix", rr->prefix);
    rc->prefix = s != NULL ? cfg_name(cx, "redis.prefix", s, CFG_PREFIX_MAX, "_-", "key prefix") : xstrdup("sy");
    (void) cfg_duration(cx, "redis.connect_timeout", rr->connect_timeout, 100, 60 * CFG_SEC,
                        2 * CFG_SEC, &rc->connect_timeout_ms);
    (void) cfg_duration(cx, "redis.command_timeout", rr->command_timeout, 100, 300 * CFG_SEC,
                        2 * CFG_SEC, &rc->command_timeout_ms);
}

/* cfg_mode - permissions, always octal as chmod(1) reads them: "0660", 660, "0o660" */
static bool cfg_mode(struct cfg_ctx *cx, const char *path, const char *raw, unsigned *out)
{
    const char *s = cfg_val(cx, path, raw);
    char echo[CFG_ECHO_MAX];
    unsigned v = 0;
    size_t i = 0, n;

    *out = 0660;
    if (s == NULL)
        return true;
    if (s[0] == '0' && (s[1] == 'o' || s[1] == 'O'))
        i = 2;
    n = strlen(s);
    if (i == n || n - i > 4)
        goto bad;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '7')
            goto bad;
        v = v * 8 + (unsigned) (s[i] - '0');
    }
    if (v > 0777)
        goto bad;
    *out = v;
    return true;
bad:
    cfg_err_key(cx, path, "expected octal permissions from 0000 to 0777, got \"%s\"",
                cfg_echo(echo, sizeof(echo), s));
    return false;
}

static bool cfg_addr_equal(const struct cfg_addr *a, const struct cfg_addr *b)
{
    if (a->is_unix != b->is_unix)
        return false;
    if (a->is_unix)
        return a->path != NULL && b->path != NULL && strcmp(a->path, b->path) == 0;
    return a->host != NULL && b->host != NULL && a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* cfg_build_listener - one lmtp.listeners[i] entry */
static void cfg_build_listener(struct cfg_ctx *cx, size_t i, const struct cfg_raw_listener *rl,
                               struct cfg_listener *l)
{
    char p[CFG_KEYPATH_MAX];
    const char *s;

    (void) snprintf(p, sizeof(p), "lmtp.listeners[%zu].name", i);
    s = cfg_val(cx, p, rl->name);
    if (s != NULL) {
        l->name = cfg_name(cx, p, s, 64, "._-", "listener name");
    } else {
        char def[32];

        (void) snprintf(def, sizeof(def), "lmtp%zu", i);
        l->name = xstrdup(def);
    }
    (void) snprintf(p, sizeof(p), "lmtp.listeners[%zu].address", i);
    s = cfg_val(cx, p, rl->address);
    if (s == NULL) {
        cfg_err_key(cx, p, "required key is missing (unix:/path or host:port)");
    } else if (cfg_addr_checked(cx, p, s, &l->addr)) {
        l->address = xstrdup(s);
        /* RFC 2033 section 5: LMTP must not be offered on the SMTP port. */
        if (!l->addr.is_unix && l->addr.port == 25)
            cfg_err_key(cx, p, "TCP port 25 is refused: LMTP must not be used on the SMTP port "
                        "(RFC 2033 section 5)");
    }
    (void) snprintf(p, sizeof(p), "lmtp.listeners[%zu].mode", i);
    (void) cfg_mode(cx, p, rl->mode, &l->mode);
    (void) snprintf(p, sizeof(p), "lmtp.listeners[%zu].trusted", i);
    (void) cfg_bool(cx, p, rl->trusted, false, &l->trusted);
}

/* cfg_build_lmtp - limits, timeouts and the listeners */
static void cfg_build_lmtp(struct cfg_ctx *cx, const struct cfg_raw_lmtp *rm, struct config *cfg)
{
    static const struct cfg_raw_lmtp none;
    struct cfg_lmtp *lc = &cfg->lmtp;
    const char *s;
    uint64_t v;
    bool soft_ok, hard_ok;
    int bare;

    if (rm == NULL)
        rm = &none;
    s = cfg_val(cx, "lmtp.hostname", rm->hostname);
    if (s != NULL)
        lc->hostname = cfg_name(cx, "lmtp.hostname", s, CFG_HOSTNAME_MAX, ".-_:[]", "host name");
    else if (cfg->node != NULL)
        lc->hostname = xstrdup(cfg->node);
    (void) cfg_unsigned(cx, "lmtp.max_connections", rm->max_connections, 1, 10000, 100, &lc->max_connections);
    /* RFC 5321 4.5.3.1.4: a command line of at least 512 octets incl. CRLF. */
    (void) cfg_uint(cx, "lmtp.line_length_limit", rm->line_length_limit, 512, 65536, 2048, &v);
    lc->line_length_limit = (size_t) v;
    (void) cfg_size(cx, "lmtp.message_size_limit", rm->message_size_limit, CFG_KIB, 2 * CFG_GIB,
                    10240000, &lc->message_size_limit);
    /* RFC 5321 4.5.3.1.8: at least 100 recipients must be accepted. */
    (void) cfg_unsigned(cx, "lmtp.recipient_limit", rm->recipient_limit, 100, 100000, 1000, &lc->recipient_limit);
    soft_ok = cfg_unsigned(cx, "lmtp.soft_error_limit", rm->soft_error_limit, 1, 1000, 10, &lc->soft_error_limit);
    hard_ok = cfg_unsigned(cx, "lmtp.hard_error_limit", rm->hard_error_limit, 1, 1000, 20, &lc->hard_error_limit);
    if (soft_ok && hard_ok && lc->hard_error_limit < lc->soft_error_limit)
        cfg_err_key(cx, cfg_val(cx, "lmtp.hard_error_limit", rm->hard_error_limit) != NULL ?
                    "lmtp.hard_error_limit" : "lmtp.soft_error_limit",
                    "hard_error_limit (%u) must not be lower than soft_error_limit (%u)",
                    lc->hard_error_limit, lc->soft_error_limit);
    (void) cfg_unsigned(cx, "lmtp.junk_command_limit", rm->junk_command_limit, 1, 10000, 100,
                        &lc->junk_command_limit);
    (void) cfg_duration(cx, "lmtp.command_timeout", rm->command_timeout, CFG_SEC, CFG_HOUR,
                        300 * CFG_SEC, &lc->command_timeout_ms);
    (void) cfg_duration(cx, "lmtp.data_timeout", rm->data_timeout, CFG_SEC, CFG_HOUR,
                        300 * CFG_SEC, &lc->data_timeout_ms);
    (void) cfg_size(cx, "lmtp.min_data_rate", rm->min_data_rate, 0, 1000000000, 500, &lc->min_data_rate);
    (void) cfg_enum(cx, "lmtp.bare_line_endings", rm->bare_line_endings, cfg_bare_names, 2,
                    "reject, normalize", CFG_BARE_REJECT, &bare);
    lc->bare_line_endings = bare;
    (void) cfg_duration(cx, "lmtp.futurerelease_max", rm->futurerelease_max, CFG_SEC, 365 * CFG_DAY,
                        7 * CFG_DAY, &lc->futurerelease_max_ms);

    if (rm->listeners_count == 0) {
        cfg_err_key(cx, "lmtp.listeners", "at least one listener is required");
        return;
    }
    lc->nlisteners = rm->listeners_count;
    lc->listeners = xcalloc(lc->nlisteners, sizeof(*lc->listeners));
    for (size_t i = 0; i < lc->nlisteners; i++) {
        char p[CFG_KEYPATH_MAX];

        cfg_build_listener(cx, i, &rm->listeners[i], &lc->listeners[i]);
        for (size_t j = 0; j < i; j++) {
            const struct cfg_listener *a = &lc->listeners[j], *b = &lc->listeners[i];

            if (a->name != NULL && b->name != NULL && strcmp(a->name, b->name) == 0) {
                (void) snprintf(p, sizeof(p), "lmtp.listeners[%zu].name", i);
                cfg_err_key(cx, p, "the name \"%s\" is already used by lmtp.listeners[%zu]", b->name, j);
            }
            if (b->address != NULL && a->address != NULL && cfg_addr_equal(&a->addr, &b->addr)) {
                (void) snprintf(p, sizeof(p), "lmtp.listeners[%zu].address", i);
                cfg_err_key(cx, p, "the same address as lmtp.listeners[%zu]", j);
            }
        }
    }
}

/* cfg_build_rest - spool, delivery, capture */
static void cfg_build_rest(struct cfg_ctx *cx, const struct cfg_raw *r, struct config *cfg)
{
    static const struct cfg_raw_delivery nodel;
    const struct cfg_raw_delivery *rd = r->delivery != NULL ? r->delivery : &nodel;
    struct cfg_delivery *dc = &cfg->delivery;
    const char *s;
    bool first_ok, max_ok;

    s = cfg_val(cx, "spool.dir", r->spool != NULL ? r->spool->dir : NULL);
    if (s == NULL)
        cfg_err_key(cx, "spool.dir", "required key is missing (the spool directory)");
    else
        cfg->spool.dir = cfg_dir(cx, "spool.dir", s);
    (void) cfg_size(cx, "spool.min_free", r->spool != NULL ? r->spool->min_free : NULL, 0,
                    1024 * CFG_GIB, 2 * cfg->lmtp.message_size_limit, &cfg->spool.min_free);

    s = cfg_val(cx, "delivery.default_transport", rd->default_transport);
    dc->default_transport = s != NULL ?
        cfg_name(cx, "delivery.default_transport", s, 64, "._-", "transport name") : xstrdup("capture");
    (void) cfg_unsigned(cx, "delivery.workers", rd->workers, 0, 256, 4, &dc->workers);
    first_ok = cfg_duration(cx, "delivery.retry_first", rd->retry_first, CFG_SEC, CFG_DAY,
                            5 * CFG_MIN, &dc->retry_first_ms);
    max_ok = cfg_duration(cx, "delivery.retry_max", rd->retry_max, CFG_SEC, 7 * CFG_DAY,
                          4 * CFG_HOUR, &dc->retry_max_ms);
    if (first_ok && max_ok && dc->retry_max_ms < dc->retry_first_ms) {
        char a[32], b[32];

        cfg_err_key(cx, cfg_val(cx, "delivery.retry_max", rd->retry_max) != NULL ?
                    "delivery.retry_max" : "delivery.retry_first",
                    "retry_max (%s) must not be shorter than retry_first (%s)",
                    cfg_fmt_duration(a, sizeof(a), dc->retry_max_ms),
                    cfg_fmt_duration(b, sizeof(b), dc->retry_first_ms));
    }
    (void) cfg_duration(cx, "delivery.expiry", rd->expiry, CFG_MIN, 30 * CFG_DAY, 5 * CFG_DAY, &dc->expiry_ms);
    (void) cfg_duration(cx, "delivery.lease", rd->lease, 10 * CFG_SEC, CFG_DAY, 10 * CFG_MIN, &dc->lease_ms);

    s = cfg_val(cx, "capture.dir", r->capture != NULL ? r->capture->dir : NULL);
    if (s != NULL) {
        cfg->capture.dir = cfg_dir(cx, "capture.dir", s);
    } else if (cfg->spool.dir != NULL) {
        /* The sibling of the spool: /var/spool/switchyard/{spool,capture}. */
        const char *slash = strrchr(cfg->spool.dir, '/');
        size_t n = (size_t) (slash - cfg->spool.dir);
        struct buf d;

        buf_init(&d, CFG_DIR_MAX + 16);
        (void) buf_append(&d, cfg->spool.dir, n);
        (void) buf_append_str(&d, "/capture");
        cfg->capture.dir = buf_take(&d, NULL);
    }
    if (cfg->capture.dir != NULL && cfg->spool.dir != NULL && strcmp(cfg->capture.dir, cfg->spool.dir) == 0)
        cfg_err_key(cx, s != NULL ? "capture.dir" : "spool.dir",
                    "capture.dir and spool.dir must be different directories");
}

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
    "connect_timeout", "max_connections", "retry",
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

    if (cfg_node_absent(n))
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
    if (!cfg_node_shape(cx, n, CFG_NODE_SCALAR, path))
        return NULL;
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

/* cfg_build_transport - one entry of transports: */
static void cfg_build_transport(struct cfg_ctx *cx, const struct config *cfg, const struct cfg_node *tn,
                                struct cfg_transport *t)
{
    static const char *const not_capture[] = {
        "host", "port", "tls", "auth", "allow_plaintext_auth", "helo_name", "connect_timeout",
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
        if (k == cfg->lmtp.nlisteners)
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

/* cfg_build - pass 3: a validated config, or NULL after errors */
static struct config *cfg_build(struct cfg_ctx *cx, const struct cfg_raw *r, const char *name)
{
    struct config *cfg = xcalloc(1, sizeof(*cfg));

    cfg->path = xstrdup(name != NULL ? name : "<config>");
    cfg_build_top(cx, r, cfg);
    cfg_build_redis(cx, r->redis, &cfg->redis);
    cfg_build_lmtp(cx, r->lmtp, cfg);
    cfg_build_rest(cx, r, cfg);
    cfg_build_transports(cx, cfg);
    cfg_build_routes(cx, cfg);
    cx->at_line = 0;
    if (cx->nproblems == 0)
        cfg_build_route_table(cx, cfg);
    if (cx->nproblems > 0) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* cfg_raw_scrub - wipe the inline password before libcyaml frees it */
static void cfg_raw_scrub(struct cfg_raw *r)
{
    if (r != NULL && r->redis != NULL && r->redis->password != NULL)
        explicit_bzero(r->redis->password, strlen(r->redis->password));
}

/* ---- public interface ---------------------------------------------------- */

struct config *config_load_mem(const char *name, const char *yaml, size_t len, struct buf *errors)
{
    struct cfg_raw *raw = NULL;
    struct config *cfg = NULL;
    struct cfg_ctx cx;
    cyaml_config_t cc = {
        .log_fn = cfg_cyaml_log,
        .log_ctx = &cx,
        .mem_fn = cyaml_mem,
        .log_level = CYAML_LOG_ERROR,
        /* Unknown keys were reported by the scan; let the load go on so
         * that the values can still be checked in the same run. */
        .flags = CYAML_CFG_NO_ALIAS | CYAML_CFG_IGNORE_UNKNOWN_KEYS,
    };
    cyaml_err_t rc;

    cfg_ctx_init(&cx, name);
    if (len > CFG_FILE_MAX) {
        cfg_err_at(&cx, 0, "", "the configuration is larger than %zu bytes", CFG_FILE_MAX);
    } else if (yaml == NULL || len == 0) {
        cfg_err_at(&cx, 1, "", "the configuration is empty");
    } else {
        cfg_scan(&cx, yaml, len);
        if (!cx.fatal) {
            rc = cyaml_load_data((const uint8_t *) yaml, len, &cc, &cfg_schema, (cyaml_data_t **) &raw, NULL);
            if (rc != CYAML_OK || raw == NULL) {
                cfg_cyaml_report(&cx, rc);
            } else {
                cfg = cfg_build(&cx, raw, name);
                cfg_raw_scrub(raw);
                (void) cyaml_free(&cc, &cfg_schema, raw, 0);
            }
        }
    }
    if (cx.nproblems > 0) {
        config_free(cfg);
        cfg = NULL;
    }
    cfg_ctx_flush(&cx, errors);
    cfg_ctx_free(&cx);
    return cfg;
}

/* config_load_fail - an error about the file itself (no line to name) */
__attribute__((format(printf, 3, 4)))
static void config_load_fail(struct buf *errors, const char *path, const char *fmt, ...)
{
    char name[CFG_NAME_MAX], msg[256];
    va_list ap;

    if (errors == NULL)
        return;
    va_start(ap, fmt);
    (void) vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    (void) buf_printf(errors, "%s: %s\n", log_safe(name, sizeof(name), path), msg);
}

struct config *config_load(const char *path, struct buf *errors)
{
    struct config *cfg;
    struct stat st;
    size_t n = 0;
    char *data;
    int fd;

    /* O_NONBLOCK: opening a FIFO must not hang; it is refused below. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        config_load_fail(errors, path, "cannot open: %s", strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        config_load_fail(errors, path, "not a regular file");
        (void) close(fd);
        return NULL;
    }
    if ((uint64_t) st.st_size > CFG_FILE_MAX) {
        config_load_fail(errors, path, "the file is larger than %zu bytes", CFG_FILE_MAX);
        (void) close(fd);
        return NULL;
    }
    data = xmalloc(CFG_FILE_MAX + 1);
    while (n < CFG_FILE_MAX + 1) {
        ssize_t got = read(fd, data + n, CFG_FILE_MAX + 1 - n);

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            config_load_fail(errors, path, "read: %s", strerror(errno));
            (void) close(fd);
            free(data);
            return NULL;
        }
        if (got == 0)
            break;
        n += (size_t) got;
    }
    (void) close(fd);
    if (n > CFG_FILE_MAX) {
        config_load_fail(errors, path, "the file is larger than %zu bytes", CFG_FILE_MAX);
        cfg = NULL;
    } else {
        cfg = config_load_mem(path, data, n, errors);
    }
    /* The file may hold the Redis password. */
    explicit_bzero(data, n);
    free(data);
    return cfg;
}

/* ---- dump ---------------------------------------------------------------- */

/* cfg_dump_str - s as a YAML double-quoted scalar */
static void cfg_dump_str(FILE *out, const char *s)
{
    (void) fputc('"', out);
    for (const unsigned char *p = (const unsigned char *) s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            (void) fprintf(out, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            (void) fprintf(out, "\\x%02x", *p);
        else
            (void) fputc(*p, out);
    }
    (void) fputc('"', out);
}

/* cfg_dump_kv - "<indent>key: "value"" */
static void cfg_dump_kv(FILE *out, const char *indent, const char *key, const char *s)
{
    (void) fprintf(out, "%s%s: ", indent, key);
    cfg_dump_str(out, s);
    (void) fputc('\n', out);
}

static void cfg_dump_dur(FILE *out, const char *indent, const char *key, uint64_t ms)
{
    char d[32];

    (void) fprintf(out, "%s%s: %s\n", indent, key, cfg_fmt_duration(d, sizeof(d), ms));
}

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
    }
    (void) fprintf(out, "    max_connections: %u\n", t->max_connections);
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

void config_dump(const struct config *cfg, FILE *out)
{
    const struct cfg_lmtp *lc = &cfg->lmtp;
    const struct cfg_delivery *dc = &cfg->delivery;
    int level = cfg->log.level;
    char name[CFG_NAME_MAX];

    if (level < 0 || level > LOG_LVL_ERROR)
        level = LOG_LVL_INFO;
    (void) fprintf(out, "# switchyard configuration (%s), every default filled in\n",
                   log_safe(name, sizeof(name), cfg->path));
    cfg_dump_kv(out, "", "node", cfg->node);
    if (cfg->user != NULL)
        cfg_dump_kv(out, "", "user", cfg->user);
    else
        (void) fputs("# user: (not set: no privilege drop)\n", out);
    (void) fprintf(out, "log:\n  level: %s\n  syslog: %s\n", cfg_level_names[level],
                   cfg->log.syslog ? "true" : "false");

    (void) fputs("redis:\n", out);
    if (cfg->redis.address != NULL)
        cfg_dump_kv(out, "  ", "address", cfg->redis.address);
    else
        (void) fputs("  # address: (not set: localserve starts its own Redis)\n", out);
    if (cfg->redis.password != NULL)
        cfg_dump_kv(out, "  ", "password", CFG_REDACTED);
    else
        (void) fputs("  # password: (not set)\n", out);
    (void) fprintf(out, "  db: %u\n", cfg->redis.db);
    cfg_dump_kv(out, "  ", "prefix", cfg->redis.prefix);
    cfg_dump_dur(out, "  ", "connect_timeout", cfg->redis.connect_timeout_ms);
    cfg_dump_dur(out, "  ", "command_timeout", cfg->redis.command_timeout_ms);

    (void) fputs("spool:\n", out);
    cfg_dump_kv(out, "  ", "dir", cfg->spool.dir);
    (void) fprintf(out, "  min_free: %llu\n", (unsigned long long) cfg->spool.min_free);

    (void) fputs("lmtp:\n", out);
    cfg_dump_kv(out, "  ", "hostname", lc->hostname);
    (void) fprintf(out, "  max_connections: %u\n  line_length_limit: %zu\n  message_size_limit: %llu\n"
                   "  recipient_limit: %u\n  soft_error_limit: %u\n  hard_error_limit: %u\n"
                   "  junk_command_limit: %u\n",
                   lc->max_connections, lc->line_length_limit, (unsigned long long) lc->message_size_limit,
                   lc->recipient_limit, lc->soft_error_limit, lc->hard_error_limit, lc->junk_command_limit);
    cfg_dump_dur(out, "  ", "command_timeout", lc->command_timeout_ms);
    cfg_dump_dur(out, "  ", "data_timeout", lc->data_timeout_ms);
    (void) fprintf(out, "  min_data_rate: %llu\n  bare_line_endings: %s\n",
                   (unsigned long long) lc->min_data_rate,
                   cfg_bare_names[lc->bare_line_endings == CFG_BARE_NORMALIZE]);
    cfg_dump_dur(out, "  ", "futurerelease_max", lc->futurerelease_max_ms);
    (void) fputs("  listeners:\n", out);
    for (size_t i = 0; i < lc->nlisteners; i++) {
        const struct cfg_listener *l = &lc->listeners[i];

        cfg_dump_kv(out, "    - ", "name", l->name);
        cfg_dump_kv(out, "      ", "address", l->address);
        (void) fprintf(out, "      mode: \"%04o\"\n      trusted: %s\n", l->mode & 0777,
                       l->trusted ? "true" : "false");
    }

    (void) fputs("delivery:\n", out);
    cfg_dump_kv(out, "  ", "default_transport", dc->default_transport);
    (void) fprintf(out, "  workers: %u\n", dc->workers);
    cfg_dump_dur(out, "  ", "retry_first", dc->retry_first_ms);
    cfg_dump_dur(out, "  ", "retry_max", dc->retry_max_ms);
    cfg_dump_dur(out, "  ", "expiry", dc->expiry_ms);
    cfg_dump_dur(out, "  ", "lease", dc->lease_ms);

    (void) fputs("capture:\n", out);
    cfg_dump_kv(out, "  ", "dir", cfg->capture.dir);

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

/* ---- free, lookups, addresses --------------------------------------------- */

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
    free(t->auth.username);
    if (t->auth.password != NULL) {
        explicit_bzero(t->auth.password, strlen(t->auth.password));
        free(t->auth.password);
    }
    free(t->auth.password_file);
}

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    route_table_free(cfg->routes);
    cfg_keyed_free(cfg->route_rules.accounts, cfg->route_rules.naccounts);
    cfg_keyed_free(cfg->route_rules.sender_domains, cfg->route_rules.nsender_domains);
    cfg_rules_free(cfg->route_rules.global, cfg->route_rules.nglobal);
    for (size_t i = 0; i < cfg->ntransports; i++)
        cfg_transport_free(&cfg->transports[i]);
    free(cfg->transports);
    for (size_t i = 0; i < cfg->lmtp.nlisteners; i++) {
        free(cfg->lmtp.listeners[i].name);
        free(cfg->lmtp.listeners[i].address);
        cfg_addr_free(&cfg->lmtp.listeners[i].addr);
    }
    free(cfg->lmtp.listeners);
    free(cfg->lmtp.hostname);
    free(cfg->redis.address);
    cfg_addr_free(&cfg->redis.addr);
    if (cfg->redis.password != NULL) {
        explicit_bzero(cfg->redis.password, strlen(cfg->redis.password));
        free(cfg->redis.password);
    }
    free(cfg->redis.prefix);
    free(cfg->spool.dir);
    free(cfg->delivery.default_transport);
    free(cfg->capture.dir);
    free(cfg->node);
    free(cfg->user);
    free(cfg->path);
    free(cfg);
}

bool config_has_redacted_secrets(const struct config *cfg)
{
    if (cfg->redis.password != NULL)
        return true;
    for (size_t i = 0; i < cfg->ntransports; i++)
        if (cfg->transports[i].has_auth && cfg->transports[i].auth.password_file == NULL)
            return true;
    return false;
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

/* cfg_addr_why - fill why and return SY_ESYNTAX */
__attribute__((format(printf, 3, 4)))
static int cfg_addr_why(char *why, size_t whysize, const char *fmt, ...)
{
    if (why != NULL && whysize > 0) {
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(why, whysize, fmt, ap);
        va_end(ap);
    }
    return SY_ESYNTAX;
}

int cfg_addr_parse(const char *s, struct cfg_addr *out, char *why, size_t whysize)
{
    char host[INET6_ADDRSTRLEN + 1];
    unsigned char bin[sizeof(struct in6_addr)];
    const char *h, *port;
    size_t hlen;
    uint64_t v;
    int family;

    memset(out, 0, sizeof(*out));
    if (s == NULL || s[0] == '\0')
        return cfg_addr_why(why, whysize, "the address is empty");
    if (!text_is_clean(s, strlen(s)))
        return cfg_addr_why(why, whysize, "the address holds control characters");
    if (strncmp(s, "unix:", 5) == 0) {
        const char *p = s + 5;

        if (p[0] != '/')
            return cfg_addr_why(why, whysize, "a UNIX socket needs an absolute path (unix:/path)");
        /* The path must fit in sun_path with its NUL. */
        if (strlen(p) >= sizeof(((struct sockaddr_un *) NULL)->sun_path))
            return cfg_addr_why(why, whysize, "the socket path is longer than %zu bytes",
                                sizeof(((struct sockaddr_un *) NULL)->sun_path) - 1);
        out->is_unix = true;
        out->path = xstrdup(p);
        return SY_OK;
    }
    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        if (close == NULL || close[1] != ':')
            return cfg_addr_why(why, whysize, "expected [IPv6-address]:port");
        h = s + 1;
        hlen = (size_t) (close - h);
        port = close + 2;
        family = AF_INET6;
    } else {
        const char *colon = strrchr(s, ':');

        if (colon == NULL)
            return cfg_addr_why(why, whysize, "expected unix:/path, host:port or [IPv6-address]:port");
        h = s;
        hlen = (size_t) (colon - s);
        port = colon + 1;
        family = AF_INET;
        if (memchr(h, ':', hlen) != NULL)
            return cfg_addr_why(why, whysize, "an IPv6 address must be written in brackets: [::1]:port");
    }
    if (hlen == 0 || hlen >= sizeof(host))
        return cfg_addr_why(why, whysize, "the host must be a numeric IP address or localhost");
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    if (text_parse_u64(port, strlen(port), 1, 65535, &v) != SY_OK)
        return cfg_addr_why(why, whysize, "the port must be a number from 1 to 65535");
    if (family == AF_INET && strcmp(host, "localhost") == 0) {
        out->host = xstrdup("127.0.0.1");
    } else if (inet_pton(family, host, bin) == 1) {
        out->host = xstrdup(host);
    } else {
        /* No DNS at start-up: a name could resolve differently tomorrow. */
        return cfg_addr_why(why, whysize, family == AF_INET6 ? "not a valid IPv6 address" :
                            "the host must be a numeric IP address or localhost");
    }
    out->port = (unsigned) v;
    return SY_OK;
}

void cfg_addr_free(struct cfg_addr *a)
{
    if (a == NULL)
        return;
    free(a->path);
    free(a->host);
    a->path = NULL;
    a->host = NULL;
}
