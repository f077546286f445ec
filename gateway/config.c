/* config.c - the YAML configuration: load, validate, dump
 *
 * A document goes through three passes:
 *
 *  1. cfg_scan (config_scan.c): a libyaml event walk that follows the
 *     libcyaml schema below. It records the line of every key path
 *     ("lmtp.listeners[0].address") and reports unknown keys, duplicate
 *     keys, values of the wrong shape (a list where a mapping belongs),
 *     anchors, aliases, tags, a second document, nesting deeper than
 *     CFG_DEPTH_MAX and bytes that are not UTF-8. libcyaml 1.3.1 stops at
 *     its first error, so this pass is what lets one run report every
 *     structural problem.
 *  2. libcyaml loads the document into struct cfg_raw, where every leaf is
 *     a string. Anything it still refuses is taken from its log (a message
 *     plus a backtrace of mapping fields and sequence entries, captured by
 *     cfg_cyaml_log in config_scan.c) and turned back into a key path.
 *  3. cfg_build_*: every value is converted and checked in C (numbers,
 *     durations, sizes, ranges, addresses, enums, cross-field rules), again
 *     reporting every problem rather than the first.
 *
 * `transports:` and `routes:` are maps whose keys the user chooses (transport
 * names, accounts, domains), which a libcyaml schema cannot express. Pass 1
 * copies those two sections into a small tree of cfg_node (with the line of
 * every key) instead of following the schema, libcyaml skips them as
 * unknown keys, and pass 3 checks the tree with the same helpers and error
 * format as the rest (cfg_relay_build, in config_relay.c).
 *
 * Errors are collected with their line, sorted, and appended to the
 * caller's buffer as "FILE:LINE: KEY.PATH: message". Values are echoed
 * through log_safe(); secrets never are. Only pass 1 failures that libcyaml
 * would also choke on (shape, duplicates) stop the later passes; an unknown
 * key does not, so a typo and a bad value show up in the same run.
 *
 * This file holds the schema, the load, the value helpers, the core
 * sections (node, user, log, redis, spool, lmtp, delivery, capture), their
 * dump, config_free() and the address parser; config_int.h is what the
 * three files share.
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
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cyaml/cyaml.h>

#include "gateway/config_int.h"
#include "gateway/util/err.h"
#include "gateway/util/log.h"
#include "gateway/util/text.h"
#include "gateway/util/xalloc.h"
#include "rules/match.h"

/* Limits on the file itself: a configuration is a few KiB. */
#define CFG_FILE_MAX        ((size_t) 1024 * 1024)
#define CFG_LISTENERS_MAX   64u
#define CFG_PASSWORD_MAX    ((size_t) 4096) /* password_file size cap */
#define CFG_NODE_MAX        ((size_t) 64)
#define CFG_USER_MAX        ((size_t) 32)   /* useradd's limit */
#define CFG_PREFIX_MAX      ((size_t) 32)

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

struct cfg_raw_milter_listener {
    char *name, *address, *mode, *socket_mode, *route_header, *hold_header, *reject_text;
    char **capture_domains;
    unsigned capture_domains_count;
    char **capture_addresses;
    unsigned capture_addresses_count;
};

struct cfg_raw_milter {
    char *max_headers, *header_size_limit, *message_size_limit, *timeout;
    struct cfg_raw_milter_listener *listeners;
    unsigned listeners_count;
};

struct cfg_raw_delivery {
    char *default_transport, *workers, *retry_first, *retry_max, *expiry, *lease, *retention;
    char *delay_warning;
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
    struct cfg_raw_milter *milter;
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

/* milter: capture lists are YAML lists of strings. */
#define CFG_MILTER_LIST_MAX 1024u
static const cyaml_schema_value_t cfg_string_entry = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, CFG_SCALAR_MAX),
};

static const cyaml_schema_field_t cfg_milter_listener_fields[] = {
    CFG_LEAF("name", struct cfg_raw_milter_listener, name),
    CFG_LEAF("address", struct cfg_raw_milter_listener, address),
    CFG_LEAF("mode", struct cfg_raw_milter_listener, mode),
    CFG_LEAF("socket_mode", struct cfg_raw_milter_listener, socket_mode),
    CYAML_FIELD_SEQUENCE("capture_domains", CFG_SECTION_FLAGS, struct cfg_raw_milter_listener,
                         capture_domains, &cfg_string_entry, 0, CFG_MILTER_LIST_MAX),
    CYAML_FIELD_SEQUENCE("capture_addresses", CFG_SECTION_FLAGS, struct cfg_raw_milter_listener,
                         capture_addresses, &cfg_string_entry, 0, CFG_MILTER_LIST_MAX),
    CFG_LEAF("route_header", struct cfg_raw_milter_listener, route_header),
    CFG_LEAF("hold_header", struct cfg_raw_milter_listener, hold_header),
    CFG_LEAF("reject_text", struct cfg_raw_milter_listener, reject_text),
    CYAML_FIELD_END
};

static const cyaml_schema_value_t cfg_milter_listener_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct cfg_raw_milter_listener, cfg_milter_listener_fields),
};

static const cyaml_schema_field_t cfg_milter_fields[] = {
    CFG_LEAF("max_headers", struct cfg_raw_milter, max_headers),
    CFG_LEAF("header_size_limit", struct cfg_raw_milter, header_size_limit),
    CFG_LEAF("message_size_limit", struct cfg_raw_milter, message_size_limit),
    CFG_LEAF("timeout", struct cfg_raw_milter, timeout),
    CYAML_FIELD_SEQUENCE("listeners", CFG_SECTION_FLAGS, struct cfg_raw_milter, listeners,
                         &cfg_milter_listener_schema, 0, CFG_LISTENERS_MAX),
    CYAML_FIELD_END
};

static const cyaml_schema_field_t cfg_delivery_fields[] = {
    CFG_LEAF("default_transport", struct cfg_raw_delivery, default_transport),
    CFG_LEAF("workers", struct cfg_raw_delivery, workers),
    CFG_LEAF("retry_first", struct cfg_raw_delivery, retry_first),
    CFG_LEAF("retry_max", struct cfg_raw_delivery, retry_max),
    CFG_LEAF("expiry", struct cfg_raw_delivery, expiry),
    CFG_LEAF("lease", struct cfg_raw_delivery, lease),
    CFG_LEAF("retention", struct cfg_raw_delivery, retention),
    CFG_LEAF("delay_warning", struct cfg_raw_delivery, delay_warning),
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
    CYAML_FIELD_MAPPING_PTR("milter", CFG_SECTION_FLAGS, struct cfg_raw, milter, cfg_milter_fields),
    CYAML_FIELD_MAPPING_PTR("delivery", CFG_SECTION_FLAGS, struct cfg_raw, delivery, cfg_delivery_fields),
    CYAML_FIELD_MAPPING_PTR("capture", CFG_SECTION_FLAGS, struct cfg_raw, capture, cfg_capture_fields),
    CYAML_FIELD_END
};

static const cyaml_schema_value_t cfg_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct cfg_raw, cfg_top_fields),
};

/* ---- small text helpers -------------------------------------------------- */

/* cfg_echo - a value made safe to quote in an error line */
const char *cfg_echo(char *dst, size_t n, const char *s)
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
const char *cfg_fmt_duration(char *dst, size_t n, uint64_t ms)
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

/* ---- pass 3: values ------------------------------------------------------ */

/* cfg_val - the text of a key, NULL when it is absent or YAML null */
static const char *cfg_val(const struct cfg_ctx *cx, const char *path, const char *raw)
{
    if (raw == NULL)
        return NULL;
    return cfg_key_is_null(cx, path) ? NULL : raw;
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
bool cfg_unsigned(struct cfg_ctx *cx, const char *path, const char *raw,
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
bool cfg_duration(struct cfg_ctx *cx, const char *path, const char *raw,
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
bool cfg_bool(struct cfg_ctx *cx, const char *path, const char *raw, bool def, bool *out)
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
bool cfg_enum(struct cfg_ctx *cx, const char *path, const char *raw,
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
char *cfg_name(struct cfg_ctx *cx, const char *path, const char *s, size_t max,
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
char *cfg_read_secret(struct cfg_ctx *cx, const char *path, const char *file)
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

/* cfg_milter_header_name - an RFC 5322 field name (printable ASCII but ':') */
static char *cfg_milter_header_name(struct cfg_ctx *cx, const char *path, const char *raw)
{
    const char *s = cfg_val(cx, path, raw);
    size_t n;

    if (s == NULL)
        return NULL;
    n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if (s[i] <= 32 || s[i] >= 127 || s[i] == ':')
            n = 0;
    if (n == 0 || n > 64) {
        char echo[CFG_ECHO_MAX];

        cfg_err_key(cx, path, "\"%s\" is not a header field name (1 to 64 printable ASCII "
                    "characters, no colon or space)", cfg_echo(echo, sizeof(echo), s));
        return NULL;
    }
    return xstrdup(s);
}

/* cfg_milter_addr_ok - libmilter's "inet:PORT@HOST", "inet6:PORT@HOST" or "unix:/PATH" */
static bool cfg_milter_addr_ok(const char *s, char *why, size_t whysize)
{
    const char *at, *p;
    unsigned long port;
    char *end;

    if (strncmp(s, "unix:", 5) == 0 || strncmp(s, "local:", 6) == 0) {
        p = strchr(s, ':') + 1;
        if (p[0] != '/' || strlen(p) >= sizeof(((struct sockaddr_un *) NULL)->sun_path)) {
            (void) snprintf(why, whysize, "a UNIX socket needs an absolute path shorter than 108 bytes");
            return false;
        }
        return true;
    }
    if (strncmp(s, "inet:", 5) == 0)
        p = s + 5;
    else if (strncmp(s, "inet6:", 6) == 0)
        p = s + 6;
    else {
        (void) snprintf(why, whysize, "expected inet:PORT@HOST, inet6:PORT@HOST or unix:/PATH");
        return false;
    }
    errno = 0;
    port = strtoul(p, &end, 10);
    at = end;
    if (errno != 0 || end == p || port == 0 || port > 65535 || *at != '@' || at[1] == '\0') {
        (void) snprintf(why, whysize, "expected inet:PORT@HOST with a port from 1 to 65535 and a host");
        return false;
    }
    for (p = at + 1; *p != '\0'; p++)
        if (!cfg_is_alnum((unsigned char) *p) && strchr(".-:_[]", *p) == NULL) {
            (void) snprintf(why, whysize, "bad character in the host");
            return false;
        }
    return true;
}

/* cfg_milter_addr_same - two valid milter addresses naming one socket
 * ("local:" is "unix:"; "inet:" and "inet6:" compared by port and host) */
static bool cfg_milter_addr_same(const char *a, const char *b)
{
    const char *pa = strchr(a, ':') + 1, *pb = strchr(b, ':') + 1;
    bool ua = a[0] == 'u' || a[0] == 'l', ub = b[0] == 'u' || b[0] == 'l';

    if (ua != ub)
        return false;
    if (ua)
        return strcmp(pa, pb) == 0;
    return strcasecmp(pa, pb) == 0;
}

/* cfg_milter_list - normalised domain patterns or mailboxes */
static char **cfg_milter_list(struct cfg_ctx *cx, const char *path, char **raw, unsigned n,
                              bool domains, size_t *nout)
{
    char **v = n > 0 ? xcalloc(n, sizeof(*v)) : NULL;
    size_t k = 0;

    for (unsigned i = 0; i < n; i++) {
        char out[512], p[CFG_KEYPATH_MAX];
        struct sy_err e;
        int rc;

        (void) snprintf(p, sizeof(p), "%s[%u]", path, i);
        if (raw[i] == NULL)
            continue;
        rc = domains ? rules_domain_norm(raw[i], strlen(raw[i]), RULES_DOMAIN_SUFFIX, out, sizeof(out), &e)
                     : rules_addr_norm(raw[i], strlen(raw[i]), out, sizeof(out), &e);
        if (rc != SY_OK) {
            char echo[CFG_ECHO_MAX];

            cfg_err_key(cx, p, "\"%s\" is not a valid %s", cfg_echo(echo, sizeof(echo), raw[i]),
                        domains ? "domain pattern" : "mailbox");
            continue;
        }
        v[k++] = xstrdup(out);
    }
    *nout = k;
    return v;
}

static const char *const cfg_milter_mode_names[] = { "capture", "policy" };

/* cfg_build_milter - the milter: section (milter/milter.h) */
static void cfg_build_milter(struct cfg_ctx *cx, const struct cfg_raw_milter *rm, struct config *cfg)
{
    static const struct cfg_raw_milter none;
    struct cfg_milter *mc = &cfg->milter;
    uint64_t v;

    if (rm == NULL)
        rm = &none;
    (void) cfg_unsigned(cx, "milter.max_headers", rm->max_headers, 10, 100000, 1000, &mc->max_headers);
    (void) cfg_size(cx, "milter.header_size_limit", rm->header_size_limit, 1024, 1024 * CFG_KIB - 1024,
                    102400, &v);
    mc->header_size_limit = (size_t) v;
    (void) cfg_size(cx, "milter.message_size_limit", rm->message_size_limit, CFG_KIB, 2 * CFG_GIB,
                    cfg->lmtp.message_size_limit, &mc->message_size_limit);
    (void) cfg_duration(cx, "milter.timeout", rm->timeout, CFG_SEC, CFG_HOUR, 300 * CFG_SEC,
                        &mc->timeout_ms);
    /* libmilter serves one socket per process: the daemon forks a child per
     * listener after the first (gateway/daemon.c). */
    if (rm->listeners_count == 0)
        return;
    mc->nlisteners = rm->listeners_count;
    mc->listeners = xcalloc(mc->nlisteners, sizeof(*mc->listeners));
    for (size_t i = 0; i < mc->nlisteners; i++) {
        const struct cfg_raw_milter_listener *rl = &rm->listeners[i];
        struct cfg_milter_listener *l = &mc->listeners[i];
        char p[CFG_KEYPATH_MAX], why[128], echo[CFG_ECHO_MAX];
        const char *s;

        (void) snprintf(p, sizeof(p), "milter.listeners[%zu].name", i);
        s = cfg_val(cx, p, rl->name);
        if (s != NULL)
            l->name = cfg_name(cx, p, s, 64, "._-", "listener name");
        else if (i == 0)
            l->name = xstrdup("milter");
        else {
            char dflt[32];

            (void) snprintf(dflt, sizeof(dflt), "milter%zu", i);
            l->name = xstrdup(dflt);
        }
        for (size_t j = 0; l->name != NULL && j < cfg->lmtp.nlisteners; j++)
            if (cfg->lmtp.listeners[j].name != NULL && strcmp(cfg->lmtp.listeners[j].name, l->name) == 0)
                cfg_err_key(cx, p, "the name \"%s\" is already used by lmtp.listeners[%zu]", l->name, j);
        for (size_t j = 0; l->name != NULL && j < i; j++)
            if (mc->listeners[j].name != NULL && strcmp(mc->listeners[j].name, l->name) == 0)
                cfg_err_key(cx, p, "the name \"%s\" is already used by milter.listeners[%zu]", l->name, j);
        (void) snprintf(p, sizeof(p), "milter.listeners[%zu].address", i);
        s = cfg_val(cx, p, rl->address);
        if (s == NULL)
            cfg_err_key(cx, p, "required key is missing (inet:PORT@HOST or unix:/PATH)");
        else if (!cfg_milter_addr_ok(s, why, sizeof(why)))
            cfg_err_key(cx, p, "\"%s\": %s", cfg_echo(echo, sizeof(echo), s), why);
        else
            l->address = xstrdup(s);
        for (size_t j = 0; l->address != NULL && j < i; j++)
            if (mc->listeners[j].address != NULL && cfg_milter_addr_same(mc->listeners[j].address, l->address))
                cfg_err_key(cx, p, "the same address as milter.listeners[%zu]", j);
        (void) snprintf(p, sizeof(p), "milter.listeners[%zu].mode", i);
        (void) cfg_enum(cx, p, rl->mode, cfg_milter_mode_names, 2, "capture, policy",
                        CFG_MILTER_CAPTURE, &l->mode);
        (void) snprintf(p, sizeof(p), "milter.listeners[%zu].socket_mode", i);
        (void) cfg_mode(cx, p, rl->socket_mode, &l->socket_mode);
        (void) snprintf(p, sizeof(p), "milter.listeners[%zu].capture_domains", i);
        l->capture_domains = cfg_milter_list(cx, p, rl->capture_domains, rl->capture_domains_count,
                                             true, &l->ncapture_domains);
        (void) snprintf(p, sizeof(p), "milter.listeners[%zu].capture_addresses", i);
        l->capture_addresses = cfg_milter_list(cx, p, rl->capture_addresses,
                                               rl->capture_addresses_count, false,
                                               &l->ncapture_addresses);
        (void) snprintf(p, sizeof(p), "milter.listeners[%zu].route_header", i);
        l->route_header = cfg_milter_header_name(cx, p, rl->route_header);
        (void) snprintf(p, sizeof(p), "milter.listeners[%zu].hold_header", i);
        l->hold_header = cfg_milter_header_name(cx, p, rl->hold_header);
        (void) snprintf(p, sizeof(p), "milter.listeners[%zu].reject_text", i);
        s = cfg_val(cx, p, rl->reject_text);
        if (s != NULL && (strlen(s) > 200 || !text_is_clean(s, strlen(s)) || strchr(s, '%') != NULL))
            cfg_err_key(cx, p, "1 to 200 printable characters without %%");
        else
            l->reject_text = xstrdup(s != NULL ? s : "Recipient address rejected");
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
    (void) cfg_duration(cx, "delivery.retention", rd->retention, 0, 365 * CFG_DAY, 7 * CFG_DAY,
                        &dc->retention_ms);
    (void) cfg_duration(cx, "delivery.delay_warning", rd->delay_warning, 0, 30 * CFG_DAY, 4 * CFG_HOUR,
                        &dc->delay_warning_ms);

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

/* A worker waits this long for a busy transport's connection
 * (RELAY_BUSY_WAIT_MS in gateway/transport/relay.c). */
#define CFG_BUSY_WAIT_MS (10 * CFG_SEC)
/* The default delivery.lease is 10 min, or the longest attempt plus this
 * when that is longer. */
#define CFG_LEASE_MARGIN_MS CFG_MIN

/* cfg_attempt_max_ms - the longest one attempt through t can take: connect,
 * then each phase's timeout once (greeting, one command, DATA, one data
 * block, the final "."), plus the wait for a busy connection. Capture is
 * local and bounded by the disk. */
static uint64_t cfg_attempt_max_ms(const struct cfg_transport *t)
{
    if (t->type == CFG_TRANSPORT_CAPTURE)
        return 0;
    return t->connect_timeout_ms + t->greeting_timeout_ms + t->command_timeout_ms + t->data_timeout_ms +
           t->data_block_timeout_ms + t->data_done_timeout_ms + CFG_BUSY_WAIT_MS;
}

/* cfg_check_lease - delivery.lease must outlast the longest attempt of
 * every transport: a worker renews its lease right before each attempt
 * (deliver.c), and a lease that runs out during one lets a second worker
 * deliver the same recipients. A lease given in the file that is shorter
 * is an error; the default grows to fit. */
static void cfg_check_lease(struct cfg_ctx *cx, const struct cfg_raw *r, struct config *cfg)
{
    const struct cfg_transport *worst = NULL;
    uint64_t longest = 0;

    for (size_t i = 0; i < cfg->ntransports; i++) {
        uint64_t ms = cfg_attempt_max_ms(&cfg->transports[i]);

        if (ms > longest) {
            longest = ms;
            worst = &cfg->transports[i];
        }
    }
    if (worst == NULL || cfg->delivery.lease_ms >= longest)
        return;
    if (cfg_val(cx, "delivery.lease", r->delivery != NULL ? r->delivery->lease : NULL) != NULL) {
        char a[32], b[32];

        cfg_err_key(cx, "delivery.lease",
                    "lease (%s) is shorter than the longest attempt through transport %s (%s: "
                    "connect, greeting, command, data, data_block and data_done timeouts and 10s "
                    "waiting for a connection); a second worker could deliver the same mail",
                    cfg_fmt_duration(a, sizeof(a), cfg->delivery.lease_ms), worst->name,
                    cfg_fmt_duration(b, sizeof(b), longest));
        return;
    }
    cfg->delivery.lease_ms = longest + CFG_LEASE_MARGIN_MS;
}

/* cfg_build - pass 3: a validated config, or NULL after errors */
static struct config *cfg_build(struct cfg_ctx *cx, const struct cfg_raw *r, const char *name)
{
    struct config *cfg = xcalloc(1, sizeof(*cfg));

    cfg->path = xstrdup(name != NULL ? name : "<config>");
    cfg_build_top(cx, r, cfg);
    cfg_build_redis(cx, r->redis, &cfg->redis);
    cfg_build_lmtp(cx, r->lmtp, cfg);
    cfg_build_milter(cx, r->milter, cfg);
    cfg_build_rest(cx, r, cfg);
    cfg_relay_build(cx, cfg);
    cfg_check_lease(cx, r, cfg);
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
        cfg_scan(&cx, &cfg_schema, yaml, len);
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
void cfg_dump_str(FILE *out, const char *s)
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
void cfg_dump_kv(FILE *out, const char *indent, const char *key, const char *s)
{
    (void) fprintf(out, "%s%s: ", indent, key);
    cfg_dump_str(out, s);
    (void) fputc('\n', out);
}

/* cfg_dump_dur - "<indent>key: 90s" */
void cfg_dump_dur(FILE *out, const char *indent, const char *key, uint64_t ms)
{
    char d[32];

    (void) fprintf(out, "%s%s: %s\n", indent, key, cfg_fmt_duration(d, sizeof(d), ms));
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

    (void) fprintf(out, "milter:\n  max_headers: %u\n  header_size_limit: %zu\n"
                   "  message_size_limit: %llu\n", cfg->milter.max_headers,
                   cfg->milter.header_size_limit, (unsigned long long) cfg->milter.message_size_limit);
    cfg_dump_dur(out, "  ", "timeout", cfg->milter.timeout_ms);
    (void) fputs(cfg->milter.nlisteners > 0 ? "  listeners:\n" : "  listeners: []\n", out);
    for (size_t i = 0; i < cfg->milter.nlisteners; i++) {
        const struct cfg_milter_listener *l = &cfg->milter.listeners[i];

        cfg_dump_kv(out, "    - ", "name", l->name);
        cfg_dump_kv(out, "      ", "address", l->address);
        cfg_dump_kv(out, "      ", "mode", cfg_milter_mode_names[l->mode == CFG_MILTER_POLICY]);
        (void) fprintf(out, "      socket_mode: \"%04o\"\n", l->socket_mode & 0777);
        (void) fputs(l->ncapture_domains > 0 ? "      capture_domains:\n" : "      capture_domains: []\n", out);
        for (size_t k = 0; k < l->ncapture_domains; k++) {
            (void) fputs("        - ", out);
            cfg_dump_str(out, l->capture_domains[k]);
            (void) fputc('\n', out);
        }
        (void) fputs(l->ncapture_addresses > 0 ? "      capture_addresses:\n" : "      capture_addresses: []\n", out);
        for (size_t k = 0; k < l->ncapture_addresses; k++) {
            (void) fputs("        - ", out);
            cfg_dump_str(out, l->capture_addresses[k]);
            (void) fputc('\n', out);
        }
        if (l->route_header != NULL)
            cfg_dump_kv(out, "      ", "route_header", l->route_header);
        if (l->hold_header != NULL)
            cfg_dump_kv(out, "      ", "hold_header", l->hold_header);
        cfg_dump_kv(out, "      ", "reject_text", l->reject_text);
    }

    (void) fputs("delivery:\n", out);
    cfg_dump_kv(out, "  ", "default_transport", dc->default_transport);
    (void) fprintf(out, "  workers: %u\n", dc->workers);
    cfg_dump_dur(out, "  ", "retry_first", dc->retry_first_ms);
    cfg_dump_dur(out, "  ", "retry_max", dc->retry_max_ms);
    cfg_dump_dur(out, "  ", "expiry", dc->expiry_ms);
    cfg_dump_dur(out, "  ", "lease", dc->lease_ms);
    cfg_dump_dur(out, "  ", "retention", dc->retention_ms);
    cfg_dump_dur(out, "  ", "delay_warning", dc->delay_warning_ms);

    (void) fputs("capture:\n", out);
    cfg_dump_kv(out, "  ", "dir", cfg->capture.dir);

    cfg_relay_dump(cfg, out);
}

/* ---- free, addresses ------------------------------------------------------- */

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    cfg_relay_free(cfg);
    for (size_t i = 0; i < cfg->lmtp.nlisteners; i++) {
        free(cfg->lmtp.listeners[i].name);
        free(cfg->lmtp.listeners[i].address);
        cfg_addr_free(&cfg->lmtp.listeners[i].addr);
    }
    free(cfg->lmtp.listeners);
    free(cfg->lmtp.hostname);
    for (size_t i = 0; i < cfg->milter.nlisteners; i++) {
        struct cfg_milter_listener *l = &cfg->milter.listeners[i];

        for (size_t k = 0; k < l->ncapture_domains; k++)
            free(l->capture_domains[k]);
        for (size_t k = 0; k < l->ncapture_addresses; k++)
            free(l->capture_addresses[k]);
        free(l->capture_domains);
        free(l->capture_addresses);
        free(l->name);
        free(l->address);
        free(l->route_header);
        free(l->hold_header);
        free(l->reject_text);
    }
    free(cfg->milter.listeners);
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
