/* config.h - the YAML configuration, loaded into an immutable struct config
 *
 * One YAML file, loaded with libcyaml into typed structs and validated:
 * unknown keys, wrong types, out-of-range values and missing required
 * fields are errors naming the file, line and key. Secrets can come from
 * files (`password_file`); they are never printed or logged.
 *
 * A loaded struct config is immutable: share it read-only between threads.
 * Thread safety: config_load*() and config_free() from one thread;
 * readers of a loaded config from any thread.
 */
#ifndef SY_CONFIG_H
#define SY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gateway/util/buf.h"

/* What to do with a bare CR or bare LF inside DATA. */
enum cfg_bare_eol { CFG_BARE_REJECT = 0, CFG_BARE_NORMALIZE };

/* A listen address: "unix:/path", "host:port", "[v6addr]:port". */
struct cfg_addr {
    bool is_unix;
    char *path;             /* unix: socket path */
    char *host;             /* inet: numeric host ("127.0.0.1", "::1") */
    unsigned port;          /* inet: 1..65535 */
};

struct cfg_listener {
    char *name;             /* unique; recorded with each message; default "lmtp<N>" */
    char *address;          /* as written */
    struct cfg_addr addr;   /* parsed; TCP port 25 is refused (RFC 2033 §5) */
    unsigned mode;          /* unix socket permissions, default 0660 */
    bool trusted;           /* REQUIRETLS accepted on this listener */
};

struct cfg_lmtp {
    struct cfg_listener *listeners;
    size_t nlisteners;
    char *hostname;                 /* greeting/LHLO name; default: node name */
    unsigned max_connections;       /* 100 (all listeners); 421 past it */
    size_t line_length_limit;       /* 2048, incl. CRLF (Postfix line_length_limit) */
    uint64_t message_size_limit;    /* 10240000 (Postfix message_size_limit) */
    unsigned recipient_limit;       /* 1000 (Postfix smtpd_recipient_limit) */
    unsigned soft_error_limit;      /* 10 (Postfix smtpd_soft_error_limit) */
    unsigned hard_error_limit;      /* 20 (Postfix smtpd_hard_error_limit) */
    unsigned junk_command_limit;    /* 100 (Postfix smtpd_junk_command_limit) */
    uint64_t command_timeout_ms;    /* 300 s deadline per command (RFC 5321 §4.5.3.2) */
    uint64_t data_timeout_ms;       /* 300 s initial deadline for DATA */
    uint64_t min_data_rate;         /* 500 bytes/s extends the DATA deadline (Postfix smtpd_min_data_rate) */
    int bare_line_endings;          /* enum cfg_bare_eol; default reject */
    uint64_t futurerelease_max_ms;  /* longest HOLDFOR/HOLDUNTIL accepted; default 7 days */
};

struct cfg_redis {
    char *address;                  /* "unix:/path" or "host:port"; NULL: localserve starts its own */
    struct cfg_addr addr;           /* parsed address */
    char *password;                 /* from `password` or `password_file`; NULL = none. Never logged. */
    unsigned db;                    /* SELECT db, default 0 */
    char *prefix;                   /* key prefix, default "sy" */
    uint64_t connect_timeout_ms;    /* 2 s */
    uint64_t command_timeout_ms;    /* 2 s: slower is 451 4.3.0 */
};

struct cfg_spool {
    char *dir;                      /* required (localserve: STATE/spool) */
    uint64_t min_free;              /* refuse MAIL below this many free bytes; default 2 × message_size_limit */
};

struct cfg_delivery {
    char *default_transport;        /* "capture" until the relay engine exists */
    unsigned workers;               /* delivery threads, default 4 */
    uint64_t retry_first_ms;        /* 5 min */
    uint64_t retry_max_ms;          /* 4 h */
    uint64_t expiry_ms;             /* 5 days (RFC 5321 §4.5.4.1) */
    uint64_t lease_ms;              /* 10 min: a claimed recipient comes back after this */
};

struct cfg_capture {
    char *dir;                      /* where the capture transport writes; default SPOOL/../capture */
};

struct cfg_log {
    int level;                      /* enum log_level, default info */
    bool syslog;                    /* also log to syslog (facility mail) */
};

struct config {
    char *path;                     /* file it was loaded from ("<builtin>" for defaults) */
    char *node;                     /* node name, default: host name; [A-Za-z0-9._-]{1,64} */
    char *user;                     /* drop privileges to this user after binding; NULL = stay */
    struct cfg_log log;
    struct cfg_redis redis;
    struct cfg_spool spool;
    struct cfg_lmtp lmtp;
    struct cfg_delivery delivery;
    struct cfg_capture capture;
};

/* Loads and validates the YAML file at path. Returns a new config owned by
 * the caller (free with config_free()), or NULL with one line per problem
 * appended to errors: "FILE:LINE: KEY: message". */
struct config *config_load(const char *path, struct buf *errors);

/* The same from memory (name is used in error messages). */
struct config *config_load_mem(const char *name, const char *yaml, size_t len,
                               struct buf *errors);

/* Writes the normalised configuration as YAML (every key, defaults filled
 * in, secrets shown as "<redacted>"). */
void config_dump(const struct config *cfg, FILE *out);

void config_free(struct config *cfg);    /* NULL is a no-op */

/* Parses an address string into a (caller-freed via cfg_addr_free) struct.
 * SY_OK or SY_ESYNTAX with a reason in why (size whysize). */
int cfg_addr_parse(const char *s, struct cfg_addr *out, char *why, size_t whysize);
void cfg_addr_free(struct cfg_addr *a);

#endif
