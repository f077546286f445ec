/* conn.h - one client socket with deadlines, over plain TCP or TLS
 *
 * Connects to host:port (every address getaddrinfo gives, in order, until
 * one answers, within the connect timeout), then reads whole SMTP replies
 * (gateway/smtp/reply.h bounds the line length and the line count) and
 * writes commands and message data, each under an absolute deadline on
 * the monotonic clock. The socket is non-blocking; every wait is a poll().
 * TLS (implicit or after STARTTLS) goes through gateway/tls.h.
 *
 * Thread safety: a connection belongs to one thread at a time.
 */
#ifndef SY_SMTP_CONN_H
#define SY_SMTP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/smtp/reply.h"
#include "gateway/tls.h"
#include "gateway/util/err.h"

/* Bytes read ahead of the parser. */
#define SMTP_CONN_RBUF_MAX ((size_t) 4096)

struct smtp_conn;   /* opaque */

/* host is a name or address, or the absolute path of a UNIX socket (port
 * is then ignored). Returns a new connection owned by the caller (smtp_conn_close()), or
 * NULL with err: 4.4.4 (no address), 4.4.1 (refused or unreachable on
 * every address), 4.4.1 SY_ETIMEOUT. host and port borrowed. */
struct smtp_conn *smtp_conn_open(const char *host, unsigned port, int64_t connect_timeout_ms,
                                 struct sy_err *err);
void smtp_conn_close(struct smtp_conn *c);     /* closes the socket, frees; NULL ok */

/* Starts TLS over the connection (implicit TLS, or after "220" to
 * STARTTLS). Refuses (SY_EIO, 4.7.0) when bytes the server sent are still
 * unread: they would be taken as protected (CVE-2011-0411). */
int smtp_conn_starttls(struct smtp_conn *c, struct tls_ctx *ctx, const char *host, bool verify,
                       int64_t deadline_ms, struct sy_err *err);

/* Reads one complete reply into r (initialised by the caller; replaced).
 * SY_OK; SY_ETIMEOUT; SY_EIO (peer closed, 4.4.2); SY_ESYNTAX / SY_ETOOBIG
 * (a malformed or oversized reply, 4.5.0). */
int smtp_conn_read_reply(struct smtp_conn *c, struct smtp_reply *r, int64_t deadline_ms,
                         struct sy_err *err);

/* Writes all of p[0..n). SY_OK, SY_ETIMEOUT or SY_EIO (4.4.2). */
int smtp_conn_write(struct smtp_conn *c, const void *p, size_t n, int64_t deadline_ms,
                    struct sy_err *err);

/* True when neither the read buffer nor the parser hold unread bytes. */
bool smtp_conn_input_idle(const struct smtp_conn *c);

/* The TLS session, NULL without TLS. Borrowed from c. */
struct tls_conn *smtp_conn_tls(struct smtp_conn *c);
/* The peer's address as "192.0.2.1" or "::1"; borrowed from c. */
const char *smtp_conn_addr(const struct smtp_conn *c);
/* True while the socket looks usable: not closed by us after an error,
 * and (a cheap check) no EOF or unexpected data waiting. */
bool smtp_conn_alive(struct smtp_conn *c);

#endif
