/* dsn.h - delivery status notifications: the NOTIFY decision and the
 * RFC 3464 multipart/report composer
 *
 * Pure: no I/O, no Redis, no clock, no randomness. The caller hands in the
 * original envelope, one result per reported recipient, the reporting
 * MTA's name, a unique token (it becomes the DSN's Message-ID and MIME
 * boundary, so tests are deterministic), the current time and the
 * original message bytes; dsn_compose() returns the complete DSN message
 * (header and body), which the caller queues with a null reverse-path
 * (MAIL FROM:<>) to the envelope sender, like any other message.
 *
 * Promises about the output, whatever the input bytes:
 *   - CRLF line endings only, no line longer than 998 octets (RFC 5322
 *     §2.1.1): header fields are folded, over-long lines of the returned
 *     original are broken (header lines as continuation lines);
 *   - every value that reaches a header field or a delivery-status field
 *     is sanitised: CR, LF and other controls never pass (addresses, the
 *     remote reply, ENVID, ORCPT, host names);
 *   - the MIME boundary occurs nowhere inside the parts (it is chosen
 *     after the parts are built);
 *   - message/delivery-status and text/rfc822-headers / message/rfc822
 *     for an ASCII envelope; message/global-delivery-status and
 *     message/global-headers / message/global (RFC 6533) when the
 *     original used SMTPUTF8, or the sender or a reported recipient
 *     address is non-ASCII.
 *
 * Field values: Original-Envelope-Id is the ENVID in xtext (RFC 3461
 * §4.4; the envelope keeps it decoded); Original-Recipient is the ORCPT
 * "type; address" with the address decoded, except a utf-8 address in a
 * 7-bit report, which is written as utf-8-addr-xtext (RFC 6533 §3);
 * Final-Recipient is "rfc822; addr", or "utf-8; addr" for a non-ASCII
 * address; Diagnostic-Code is "smtp; <reply>" with the lines of a
 * multi-line reply joined by spaces, cut at DSN_DIAG_MAX. Outside the
 * global types, non-ASCII octets of a reply become '?'.
 *
 * Returned content (RFC 3461 §4.3): the whole message only for RET=FULL,
 * only in a DSN that reports at least one "failed" recipient, and only
 * when it fits in return_max octets; otherwise the header section (the
 * default, RET=HDRS), and nothing when even that does not fit or the
 * original is unavailable. The human-readable part says which.
 *
 * Thread safety: reentrant; no shared state.
 */
#ifndef SY_DSN_H
#define SY_DSN_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/envelope.h"
#include "gateway/util/buf.h"
#include "gateway/util/err.h"

/* RFC 3464 §2.3.3 Action values. */
enum dsn_action {
    DSN_ACTION_FAILED = 1,
    DSN_ACTION_DELAYED,
    DSN_ACTION_DELIVERED,
    DSN_ACTION_RELAYED,
    DSN_ACTION_EXPANDED
};

/* What part 3 of a composed DSN holds (struct dsn_info.returned). */
enum dsn_returned {
    DSN_RETURNED_NONE = 0,      /* no third part */
    DSN_RETURNED_HEADERS,       /* text/rfc822-headers or message/global-headers */
    DSN_RETURNED_FULL           /* message/rfc822 or message/global */
};

/* Output flags (struct dsn_info.flags): how the caller must send the DSN. */
enum dsn_out_flag {
    DSN_OUT_SMTPUTF8 = 1,       /* a global DSN that carries UTF-8: send with
                                 * MAIL FROM:<> SMTPUTF8 */
    DSN_OUT_8BIT = 2            /* octets >= 0x80 (or NUL from the original)
                                 * anywhere: send with BODY=8BITMIME */
};

/* The token: 1..DSN_TOKEN_MAX of [A-Za-z0-9_-] and '.', not at either end
 * and never two in a row (RFC 5322 dot-atom-text, for the Message-ID). */
#define DSN_TOKEN_MAX ((size_t) 64)
/* A boundary is "=_" + token (cut to RFC 2046's 70 characters), and when
 * the parts happen to hold that string, "." + 8 digits (see dsn.c). Size
 * includes the NUL. */
#define DSN_BOUNDARY_SIZE ((size_t) 80)
/* The reporting MTA's host name: RFC 1035 §2.3.4 (253 octets). */
#define DSN_HOST_MAX ((size_t) 253)
/* The sender the DSN goes to: RFC 5321 §4.5.3.1.3 allows 256 octets for a
 * path; longer is refused rather than folded (it is the To: address). */
#define DSN_SENDER_MAX ((size_t) 512)
/* A diagnostic (remote reply) is kept up to this many octets after
 * sanitising, then cut with a marker: a 50-line reply of 2048-octet lines
 * (STYLE §7 limits) would otherwise make every DSN 100 KB per recipient. */
#define DSN_DIAG_MAX ((size_t) 8192)
/* RFC 3461 §4.4 (ENVID, 100) and §4.2 (ORCPT, 500): longer values are left
 * out of the DSN rather than failing it. */
#define DSN_ENVID_MAX ((size_t) 100)
#define DSN_ORCPT_MAX ((size_t) 500)
/* A suggested return_max: 10 MiB, Postfix's message_size_limit. Postfix
 * itself truncates returned content at bounce_size_limit (50000); we
 * return headers only instead, so the sender never gets a cut message. */
#define DSN_RETURN_MAX_DEFAULT ((size_t) 10 * 1024 * 1024)
/* Hard cap on one composed DSN (guards the arithmetic, never reached
 * with the caps above and return_max <= 64 MiB). */
#define DSN_OUT_MAX ((size_t) 192 * 1024 * 1024)

/* The outcome for one recipient, borrowed for the duration of the call. */
struct dsn_rcpt {
    size_t rcpt;                /* index into env->rcpts */
    int action;                 /* enum dsn_action */
    const char *status;         /* RFC 3463 "5.1.1"; NULL: 5.0.0 / 4.0.0 / 2.0.0
                                 * from the action. failed: 4.x.x (expiry of a
                                 * temporary error) or 5.x.x; delayed: 4.x.x;
                                 * delivered, relayed, expanded: 2.x.x */
    const char *diagnostic;     /* the full reply, "550 5.1.1 <x@y>: no such
                                 * user"; the lines of a multi-line reply may be
                                 * separated by CRLF. NULL or "": none */
    const char *diag_type;      /* RFC 3464 diagnostic-type: NULL means "smtp"
                                 * (a remote SMTP/LMTP reply); for our own
                                 * error text use "x-switchyard". An atom. */
    const char *remote_mta;     /* host name or [address] of the remote MTA,
                                 * or NULL; left out when not a clean name */
    int64_t last_attempt_us;    /* unix microseconds; 0: no attempt made */
    int64_t retry_until_us;     /* delayed only: when retries stop; 0: omit */
};

/* Everything dsn_compose() reads; all pointers borrowed for the call. */
struct dsn_input {
    const struct envelope *env; /* sender, ret, envid, rcpts (addr, orcpt),
                                 * arrival_us, flags, message_id */
    const struct dsn_rcpt *rcpts;
    size_t nrcpts;              /* at least 1 */
    const char *reporting_mta;  /* our host name: From: MAILER-DAEMON@ it,
                                 * Reporting-MTA: dns; it */
    const char *token;          /* unique per DSN (a queue id is fine) */
    int64_t now_us;             /* Date: of the DSN */
    const char *msg;            /* the original message as spooled, or NULL
                                 * when unavailable; CRLF, LF or CR endings */
    size_t msg_len;
    size_t return_max;          /* cap on returned content, in octets */
};

/* Facts about a composed DSN, for the caller's MAIL command and logs. */
struct dsn_info {
    unsigned flags;             /* enum dsn_out_flag bits */
    int returned;               /* enum dsn_returned */
    char boundary[DSN_BOUNDARY_SIZE];
};

/* 1 when the sender asked for (or by default gets) a DSN with this action
 * for recipient rcpt of env, else 0 (RFC 3461 §4.1, RFC 5321 §6.1):
 *   - never for a null ("") or missing sender, an index out of range, an
 *     unknown action, or NOTIFY=NEVER;
 *   - failed / delayed: when NOTIFY was not given, or includes FAILURE /
 *     DELAY respectively;
 *   - delivered / relayed / expanded: only when NOTIFY includes SUCCESS. */
int dsn_wanted(const struct envelope *env, size_t rcpt, int action);

/* Composes the DSN for in and appends it to out (on failure out is left
 * unchanged). info (may be NULL) gets the sending flags, what was
 * returned and the boundary. Returns:
 *   SY_OK;
 *   SY_EPERM "5.1.7"   the sender is null: never a DSN to <> (RFC 5321 §6.1);
 *   SY_ESYNTAX "5.1.7" the sender is unusable (controls, malformed UTF-8,
 *                      longer than DSN_SENDER_MAX);
 *   SY_ESYNTAX "5.3.0" a caller error: no results, a recipient index out
 *                      of range, an unknown action, a status that is not
 *                      X.Y.Z or does not fit the action, a bad diag_type,
 *                      token, reporting MTA name, or time;
 *   SY_ETOOBIG "5.3.4" the DSN does not fit in out (or DSN_OUT_MAX). */
int dsn_compose(const struct dsn_input *in, struct buf *out, struct dsn_info *info,
                struct sy_err *err);

/* The RFC 3464 name of an action ("failed", ...), or NULL. Static. */
const char *dsn_action_name(int action);

#endif
