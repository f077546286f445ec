/* lmtp_proto.h - LMTP (RFC 2033) command and parameter parsing: pure, no I/O
 *
 * Takes bytes and a length, returns structs. No sockets, no globals, no
 * allocation beyond the outputs. Every function here is a fuzz target
 * (tests/fuzz/fuzz_lmtp_proto.c). Refusals come back as a complete SMTP
 * reply (code, RFC 3463 status, text) in struct lmtp_reply.
 *
 * Thread safety: reentrant.
 */
#ifndef SY_LMTP_PROTO_H
#define SY_LMTP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/envelope.h"

/* RFC 5321 §4.5.3.1: local part 64, domain 255, path 256 octets. */
#define LMTP_LOCAL_MAX ((size_t) 64)
#define LMTP_DOMAIN_MAX ((size_t) 255)
#define LMTP_PATH_MAX ((size_t) 256)
/* RFC 3461 §4.4: ENVID at most 100 characters; ORCPT 500. */
#define LMTP_ENVID_MAX ((size_t) 100)
#define LMTP_ORCPT_MAX ((size_t) 500)

enum lmtp_verb {
    LMTP_UNKNOWN = 0, LMTP_LHLO, LMTP_MAIL, LMTP_RCPT, LMTP_DATA, LMTP_RSET,
    LMTP_NOOP, LMTP_QUIT, LMTP_VRFY, LMTP_HELP, LMTP_HELO, LMTP_EHLO,
    LMTP_BDAT, LMTP_STARTTLS, LMTP_EXPN, LMTP_AUTH
};

/* A complete reply: "550 5.1.1 text". */
struct lmtp_reply {
    int code;               /* 3-digit SMTP reply code */
    char enh[12];           /* RFC 3463 status */
    char text[200];         /* printable, no CR/LF */
};

/* A parsed command line. arg borrows from the line, which must outlive it. */
struct lmtp_cmd {
    int verb;               /* enum lmtp_verb */
    const char *arg;        /* after the verb and one space; "" when none */
    size_t arglen;
};

/* Parses one command line (without its CRLF). SY_OK, or SY_ESYNTAX with
 * rep set (500 5.5.2 for NUL/CR/LF or non-ASCII verbs; unknown verbs give
 * LMTP_UNKNOWN with SY_OK so the caller can count junk). */
int lmtp_parse_command(const char *line, size_t len, struct lmtp_cmd *cmd,
                       struct lmtp_reply *rep);

/* What the session allows when parsing MAIL parameters. */
struct lmtp_mail_policy {
    uint64_t size_limit;            /* SIZE= above this: 552 5.3.4 */
    bool requiretls_ok;             /* listener is trusted: REQUIRETLS accepted */
    uint64_t futurerelease_max_s;   /* HOLDFOR/HOLDUNTIL beyond now + this: 501/555 */
    int64_t now;                    /* unix seconds, for HOLDUNTIL/HOLDFOR */
};

/* Parses the MAIL argument ("FROM:<path> [params]") into env's
 * transaction fields: sender, ret, envid, body, flags (SMTPUTF8,
 * REQUIRETLS), size_declared, hold_until. Source routes are stripped.
 * Refusals: 501 5.5.4 / 5.1.7 syntax, 553 5.1.7 bad sender, 555 5.5.4
 * unknown or bad parameter, 552 5.3.4 SIZE too large, 553 5.6.7 UTF-8
 * without SMTPUTF8. On failure env is unchanged. */
int lmtp_parse_mail(const char *arg, size_t n, const struct lmtp_mail_policy *pol,
                    struct envelope *env, struct lmtp_reply *rep);

/* Parses the RCPT argument ("TO:<path> [NOTIFY=..] [ORCPT=..]") into r
 * (zeroed by the caller; on failure left zeroed). smtputf8 says whether
 * the transaction's MAIL had SMTPUTF8. The null path and empty local parts
 * are refused (501 5.1.3). */
int lmtp_parse_rcpt(const char *arg, size_t n, bool smtputf8,
                    struct env_rcpt *r, struct lmtp_reply *rep);

/* Parses "<path>" (a reverse- or forward-path with its angle brackets) at
 * s[0..n): *addr_out receives a new NUL-terminated mailbox owned by the
 * caller ("" for "<>"), *consumed the bytes used. Quoted local parts are
 * kept quoted only where needed; source routes stripped; lengths checked;
 * UTF-8 only when allow_utf8. SY_OK or SY_ESYNTAX with rep. */
int lmtp_parse_path(const char *s, size_t n, bool allow_utf8, bool allow_null,
                    char **addr_out, size_t *consumed, struct lmtp_reply *rep);

/* Decodes RFC 3461 xtext s[0..n) into a new string owned by the caller
 * (NUL-terminated, *outlen its length). Rejects bad "+XX", lowercase hex,
 * characters outside 33..126, '=' and decoded NUL/CR/LF. SY_OK or
 * SY_ESYNTAX. */
int lmtp_xtext_decode(const char *s, size_t n, char **out, size_t *outlen);
/* Encodes s as xtext into a new string owned by the caller. */
char *lmtp_xtext_encode(const char *s, size_t n);

#endif
