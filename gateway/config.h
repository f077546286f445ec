/* config.h - the YAML configuration, loaded into an immutable struct config
 *
 * One YAML file, loaded with libcyaml into typed structs and validated:
 * unknown keys, wrong types, out-of-range values and missing required
 * fields are errors naming the file, line and key. Secrets can come from
 * files (`password_file`); they are never printed or logged.
 *
 * `transports:` and `routes:` are maps with names chosen by the user, which
 * libcyaml cannot describe: config_scan.c reads those two sections from the
 * libyaml events into a small tree and config_relay.c checks them, with the
 * same FILE:LINE: KEY errors. The routes become an immutable rules/ route
 * table (cfg->routes) that delivery threads share.
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

/* ---- milter (milter/milter.h) ---------------------------------------------- */

/* What a milter listener does with a message. */
enum cfg_milter_mode {
    CFG_MILTER_CAPTURE = 0,         /* switchyard takes over delivery of the captured recipients */
    CFG_MILTER_POLICY               /* the MTA delivers; switchyard holds, tags, checks RCPT */
};

struct cfg_milter_listener {
    char *name;                     /* unique among all listeners; default "milter<N>" */
    char *address;                  /* libmilter syntax as written: "inet:PORT@HOST", "unix:PATH" */
    int mode;                       /* enum cfg_milter_mode; default capture */
    unsigned socket_mode;           /* unix: socket permissions, default 0660 */
    /* capture: which recipients; all when both lists are empty */
    char **capture_domains;         /* normalised patterns ("example.net", ".example.net") */
    size_t ncapture_domains;
    char **capture_addresses;       /* normalised mailboxes */
    size_t ncapture_addresses;
    /* policy */
    char *route_header;             /* header naming the route; NULL = off (default) */
    char *hold_header;              /* header naming the hold rule that matched; NULL = off */
    char *reject_text;              /* text of the 550 5.1.1 RCPT refusal */
};

struct cfg_milter {
    struct cfg_milter_listener *listeners;  /* 0 or more; one process per listener (daemon.c) */
    size_t nlisteners;
    unsigned max_headers;           /* header fields per message: 1000 */
    size_t header_size_limit;       /* bytes of one header field: 102400 (Postfix header_size_limit) */
    uint64_t message_size_limit;    /* default lmtp.message_size_limit */
    uint64_t timeout_ms;            /* libmilter read timeout (smfi_settimeout): 300 s */
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
    char *default_transport;        /* a transport name; default "capture" */
    unsigned workers;               /* delivery threads, default 4 */
    uint64_t retry_first_ms;        /* 5 min */
    uint64_t retry_max_ms;          /* 4 h */
    uint64_t expiry_ms;             /* 5 days (RFC 5321 §4.5.4.1) */
    uint64_t lease_ms;              /* 10 min: a claimed recipient comes back after this */
    uint64_t retention_ms;          /* 7 days: finished messages stay in Redis this long */
    uint64_t delay_warning_ms;      /* 4 h: one "delayed" DSN after this; 0 = never */
};

struct cfg_capture {
    char *dir;                      /* where the capture transport writes; default SPOOL/../capture */
};

struct cfg_log {
    int level;                      /* enum log_level, default info */
    bool syslog;                    /* also log to syslog (facility mail) */
};

/* ---- transports and routes ------------------------------------------------ */

enum cfg_transport_type {
    CFG_TRANSPORT_SMTP = 0,         /* smarthost, port 25, STARTTLS */
    CFG_TRANSPORT_SUBMISSION,       /* port 587, STARTTLS, AUTH (RFC 6409) */
    CFG_TRANSPORT_SUBMISSIONS,      /* port 465, implicit TLS, AUTH (RFC 8314) */
    CFG_TRANSPORT_LMTP,             /* a downstream LMTP server (RFC 2033), port 24 or a UNIX socket */
    CFG_TRANSPORT_CAPTURE           /* local files under capture.dir (localserve, tests) */
};
#define CFG_TRANSPORT_TYPE_COUNT 5

enum cfg_tls {
    CFG_TLS_REQUIRED = 0,           /* TLS with certificate and host name verification */
    CFG_TLS_REQUIRED_UNVERIFIED,    /* TLS, any certificate */
    CFG_TLS_OPPORTUNISTIC,          /* STARTTLS when offered, else plain text */
    CFG_TLS_NONE                    /* never TLS */
};
#define CFG_TLS_COUNT 4

/* SASL mechanisms, strongest first: the enum order is the default preference. */
enum cfg_sasl_mech {
    CFG_SASL_SCRAM_SHA_256_PLUS = 0,
    CFG_SASL_SCRAM_SHA_1_PLUS,
    CFG_SASL_SCRAM_SHA_256,
    CFG_SASL_SCRAM_SHA_1,
    CFG_SASL_CRAM_MD5,
    CFG_SASL_PLAIN,
    CFG_SASL_LOGIN
};
#define CFG_SASL_MECH_COUNT 7

struct cfg_auth {
    char *username;                 /* 1..255 bytes, no control characters */
    char *password;                 /* from `password` or `password_file`. Never logged or printed. */
    char *password_file;            /* the file it came from, or NULL when given inline */
    int mechanisms[CFG_SASL_MECH_COUNT]; /* enum cfg_sasl_mech, in order of preference */
    size_t nmechanisms;             /* >= 1 */
};

struct cfg_transport {
    char *name;                     /* unique, [A-Za-z0-9._-]{1,64} */
    int type;                       /* enum cfg_transport_type */
    bool builtin;                   /* the implicit "capture" (not written in the file) */
    char *host;                     /* host name (lowercased) or IP address (no brackets); NULL
                                     * for capture and for lmtp over a UNIX socket */
    char *socket;                   /* lmtp only: absolute UNIX socket path, else NULL */
    unsigned port;                  /* 25 / 587 / 465 / 24 by type; 0 without host */
    int tls;                        /* enum cfg_tls (CFG_TLS_NONE for capture and sockets) */
    bool has_auth;                  /* auth is set (smtp, submission, submissions only) */
    struct cfg_auth auth;
    bool allow_plaintext_auth;      /* AUTH may be sent without TLS; default false */
    char *helo_name;                /* EHLO/LHLO name; default lmtp.hostname; NULL for capture */
    uint64_t connect_timeout_ms;    /* 30 s (RFC 5321 4.5.3.2 suggests more for the greeting) */
    /* SMTP client timeouts (RFC 5321 4.5.3.2; not for capture). */
    uint64_t greeting_timeout_ms;   /* the 220 greeting: 5 min */
    uint64_t command_timeout_ms;    /* EHLO, STARTTLS, AUTH, MAIL, RCPT, RSET, QUIT replies: 5 min */
    uint64_t data_timeout_ms;       /* the 354 reply to DATA: 2 min */
    uint64_t data_block_timeout_ms; /* each write of message data: 3 min */
    uint64_t data_done_timeout_ms;  /* the reply to the final ".": 10 min */
    uint64_t idle_timeout_ms;       /* a cached idle connection is closed after this: 30 s */
    char *tls_ca_file;              /* PEM CA file for verification; NULL: the system's store */
    unsigned max_connections;       /* simultaneous connections through this transport; 10 */
    unsigned max_recipients;        /* recipients per transaction (smtp, submission(s),
                                     * lmtp); 50, Postfix's default_destination_recipient_limit */
    /* Retry schedule: the transport's own values, else those of delivery. */
    uint64_t retry_first_ms, retry_max_ms, expiry_ms;
    bool retry_first_set, retry_max_set, expiry_set;    /* given under retry: */
};

/* One route rule as configured (normalised); rules/route.h does the matching. */
struct cfg_route_rule {
    char **sender_domains;          /* patterns: "example.com" or ".example.com" */
    size_t nsender_domains;
    char **recipient_domains;
    size_t nrecipient_domains;
    unsigned min_attempts;          /* attempts already made */
    char **listeners;               /* names of lmtp.listeners */
    size_t nlisteners;
    char *transport;                /* a transport name, or "" for the default */
};

/* The rules of one account or one sender domain, in configured order. */
struct cfg_route_key {
    char *key;                      /* account as written; sender domain normalised */
    struct cfg_route_rule *rules;
    size_t nrules;
};

struct cfg_routes {
    struct cfg_route_key *accounts;
    size_t naccounts;
    struct cfg_route_key *sender_domains;
    size_t nsender_domains;
    struct cfg_route_rule *global;
    size_t nglobal;
};

struct route_table;                 /* rules/route.h */

struct config {
    char *path;                     /* file it was loaded from ("<builtin>" for defaults) */
    char *node;                     /* node name, default: host name; [A-Za-z0-9._-]{1,64} */
    char *user;                     /* drop privileges to this user after binding; NULL = stay */
    struct cfg_log log;
    struct cfg_redis redis;
    struct cfg_spool spool;
    struct cfg_lmtp lmtp;
    struct cfg_milter milter;       /* milter: section; no listeners when absent */
    struct cfg_delivery delivery;
    struct cfg_capture capture;
    /* Every transport, in file order, then the implicit "capture" when the
     * file does not define it: a name that routes or default_transport
     * use is always here. */
    struct cfg_transport *transports;
    size_t ntransports;
    struct cfg_routes route_rules;  /* the routes: section, for config_dump() */
    struct route_table *routes;     /* built from route_rules; never NULL. Owned by the config. */
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

/* True when config_dump() writes a "<redacted>" placeholder for cfg (a
 * password given inline, or redis.password from a file): its output then
 * does not load again until the secret is put back. */
bool config_has_redacted_secrets(const struct config *cfg);

/* The transport called name, borrowed from cfg; NULL when there is none. */
const struct cfg_transport *config_transport_find(const struct config *cfg, const char *name);

/* Names as written in the file ("submissions", "required-unverified",
 * "SCRAM-SHA-256-PLUS"); "?" for a value out of range. Static strings. */
const char *cfg_transport_type_name(int type);
const char *cfg_tls_name(int tls);
const char *cfg_sasl_mech_name(int mech);

/* Parses an address string into a (caller-freed via cfg_addr_free) struct.
 * SY_OK or SY_ESYNTAX with a reason in why (size whysize). */
int cfg_addr_parse(const char *s, struct cfg_addr *out, char *why, size_t whysize);
void cfg_addr_free(struct cfg_addr *a);

#endif
