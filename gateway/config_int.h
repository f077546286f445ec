/* config_int.h - the config module's parts, as they see each other
 *
 * Internal to the config module: only gateway/config.c,
 * gateway/config_scan.c and gateway/config_relay.c include it; the public
 * contract is gateway/config.h.
 *
 *  - config_scan.c: the context every pass reports into (key paths with
 *    their lines, errors sorted and flushed as "FILE:LINE: KEY: message"),
 *    pass 1 (the libyaml scan, which also copies transports: and routes:
 *    into a cfg_node tree) and the capture of libcyaml's log for pass 2.
 *  - config.c: the libcyaml schema and load, the value helpers of pass 3,
 *    the core sections (node, user, log, redis, spool, lmtp, delivery,
 *    capture), the public entry points, config_dump() and config_free().
 *  - config_relay.c: transports: and routes: from the cfg_node tree into
 *    struct config and the rules/ route table, with their dump and free.
 *
 * Thread safety: as config.h; a struct cfg_ctx belongs to the one call
 * that loads a document.
 */
#ifndef SY_CONFIG_INT_H
#define SY_CONFIG_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cyaml/cyaml.h>

#include "gateway/config.h"
#include "gateway/util/buf.h"

#define CFG_DEPTH_MAX       16          /* our schema needs 4 levels */
#define CFG_SCALAR_MAX      4096u       /* bytes in one value (libcyaml checks) */
#define CFG_KEYPATH_MAX     ((size_t) 256)
#define CFG_NAME_MAX        ((size_t) 256)  /* file name as shown in errors */
#define CFG_ECHO_MAX        ((size_t) 64)   /* a value echoed in an error */
#define CFG_DIR_MAX         ((size_t) 1024)
#define CFG_HOSTNAME_MAX    ((size_t) 255)  /* RFC 1035 name length */
#define CFG_REDACTED        "<redacted>"
#define CFG_SEG_MAX         ((size_t) 48)   /* one key as shown in a key path */

#define CFG_SEC             ((uint64_t) 1000)
#define CFG_MIN             (60 * CFG_SEC)
#define CFG_HOUR            (60 * CFG_MIN)
#define CFG_DAY             (24 * CFG_HOUR)
#define CFG_KIB             ((uint64_t) 1024)
#define CFG_GIB             (CFG_KIB * CFG_KIB * CFG_KIB)

/* ---- the context ---------------------------------------------------------- */

struct cfg_key;             /* a key path and its line: private to config_scan.c */
struct cfg_error;           /* one collected error: private to config_scan.c */

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

/* ---- config_scan.c: the context, pass 1, libcyaml's log -------------------- */

/* Zeroes cx; name (borrowed, NULL: "<config>") is shown in every error. */
void cfg_ctx_init(struct cfg_ctx *cx, const char *name);
/* Appends the errors, sorted by line, to errors (NULL: drops them). */
void cfg_ctx_flush(struct cfg_ctx *cx, struct buf *errors);
/* Frees what cx holds (keys, errors, the tree), not cx itself. */
void cfg_ctx_free(struct cfg_ctx *cx);

/* Records a problem at line (0: the file as a whole); a second one about
 * the same path on the same line is dropped. */
__attribute__((format(printf, 4, 5)))
void cfg_err_at(struct cfg_ctx *cx, unsigned line, const char *path, const char *fmt, ...);
/* The same, at the line of path: cx->at_path's line when it is path,
 * else the line the scan recorded for path or its nearest parent, else 1. */
__attribute__((format(printf, 3, 4)))
void cfg_err_key(struct cfg_ctx *cx, const char *path, const char *fmt, ...);
/* "unknown key" about path, suggesting the one of cands[] (borrowed) that
 * key[0..klen) is a likely typo of. */
void cfg_err_unknown(struct cfg_ctx *cx, unsigned line, const char *path, const char *key,
                     size_t klen, const char *const *cands, size_t ncands);

/* True when the scan saw path given as YAML null (same as absent). */
bool cfg_key_is_null(const struct cfg_ctx *cx, const char *path);

/* Pass 1 over data[0..len), following top (borrowed, must outlive the
 * call): records key lines, fills cx->dom_transports and cx->dom_routes,
 * reports problems and sets cx->fatal when libcyaml must not run. */
void cfg_scan(struct cfg_ctx *cx, const cyaml_schema_value_t *top, const char *data, size_t len);

/* libcyaml's log_fn (log_ctx is the struct cfg_ctx): keeps the first
 * error and its backtrace. */
__attribute__((format(printf, 3, 0)))
void cfg_cyaml_log(cyaml_log_t level, void *ctx, const char *fmt, va_list args);
/* Reports the failed load (rc) with the key path from the backtrace. */
void cfg_cyaml_report(struct cfg_ctx *cx, cyaml_err_t rc);

/* ---- config.c: value helpers of pass 3, dump helpers ---------------------- */

/* s made safe to quote in an error line (log_safe()) in dst; returns dst. */
const char *cfg_echo(char *dst, size_t n, const char *s);

/* ms as the largest exact unit ("7d", "90s", "1500ms") in dst; returns dst. */
const char *cfg_fmt_duration(char *dst, size_t n, uint64_t ms);

/* Each converts raw (borrowed; NULL or YAML null at path: *out = def, true)
 * and returns true, or reports the problem about path and returns false
 * with *out = def. */
bool cfg_unsigned(struct cfg_ctx *cx, const char *path, const char *raw,
                  unsigned min, unsigned max, unsigned def, unsigned *out);
/* "30", "30s", "1500ms", "5m", "4h", "5d": milliseconds in [min, max]. */
bool cfg_duration(struct cfg_ctx *cx, const char *path, const char *raw,
                  uint64_t min, uint64_t max, uint64_t def, uint64_t *out);
bool cfg_bool(struct cfg_ctx *cx, const char *path, const char *raw, bool def, bool *out);
/* One of names[] (case-insensitive); *out is its index. list names them
 * in the error. */
bool cfg_enum(struct cfg_ctx *cx, const char *path, const char *raw,
              const char *const *names, size_t nnames, const char *list, int def, int *out);

/* Returns a copy of s owned by the caller when it is 1..max bytes of
 * alphanumerics and extra; else reports it as an invalid what, NULL. */
char *cfg_name(struct cfg_ctx *cx, const char *path, const char *s, size_t max,
               const char *extra, const char *what);
/* Returns the password in file (absolute, regular, one line, at most
 * 4 KiB) as a new string owned by the caller, or NULL after reporting the
 * problem about path. Warns when group or others can read the file. */
char *cfg_read_secret(struct cfg_ctx *cx, const char *path, const char *file);

/* s as a YAML double-quoted scalar. */
void cfg_dump_str(FILE *out, const char *s);
/* "<indent>key: "s"" and a newline. */
void cfg_dump_kv(FILE *out, const char *indent, const char *key, const char *s);
/* "<indent>key: 90s" and a newline. */
void cfg_dump_dur(FILE *out, const char *indent, const char *key, uint64_t ms);

/* ---- config_relay.c: transports: and routes: ------------------------------ */

/* Pass 3 for the tree: cfg->transports (with the implicit capture),
 * delivery.default_transport checked against them, cfg->route_rules, and,
 * when cx holds no problem, cfg->routes. Needs the core sections built. */
void cfg_relay_build(struct cfg_ctx *cx, struct config *cfg);
/* Writes the transports: and routes: sections of config_dump(). */
void cfg_relay_dump(const struct config *cfg, FILE *out);
/* Frees cfg's transports, route rules and route table (not cfg). */
void cfg_relay_free(struct config *cfg);

#endif
