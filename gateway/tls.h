/* tls.h - TLS client connections: the only user of OpenSSL's SSL API
 *
 * A struct tls_ctx is one client SSL_CTX (TLS 1.2 or newer, the system's
 * trust store or a configured CA file); a struct tls_conn is one TLS
 * session over a connected, non-blocking socket that the caller owns.
 * Every operation takes an absolute deadline on the monotonic clock
 * (clock_mono_ms()) and waits with poll(), never longer.
 *
 * Verification: the certificate chain and the host name (or IP address)
 * are always checked; with verify set a failure aborts the handshake
 * (tls=required), without it the outcome is only recorded
 * (tls_conn_verified()) for policies such as REQUIRETLS (RFC 8689).
 * SNI is sent for host names, never for IP literals (RFC 6066 §3).
 *
 * Channel binding for SCRAM-*-PLUS: tls-exporter (RFC 9266) on TLS 1.3,
 * tls-unique (RFC 5929) on TLS 1.2, where this client never resumes
 * sessions so the first Finished message is its own.
 *
 * The process must ignore SIGPIPE (daemon.c does): OpenSSL writes to the
 * socket with write(), and a peer gone mid-write must be an error, not a
 * signal.
 *
 * Thread safety: a tls_ctx is shared read-only after tls_ctx_new() (the
 * SSL_CTX rule); a tls_conn belongs to one thread at a time.
 */
#ifndef SY_TLS_H
#define SY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/util/err.h"

/* Channel-binding data is at most this long (a Finished message, or the
 * 32-byte exporter value). */
#define TLS_CB_MAX ((size_t) 64)
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" and the like, NUL included. */
#define TLS_DESC_MAX ((size_t) 64)

enum tls_cb_type { TLS_CB_NONE = 0, TLS_CB_UNIQUE, TLS_CB_EXPORTER };

struct tls_ctx;     /* opaque */
struct tls_conn;    /* opaque */

/* Returns a new client context owned by the caller (tls_ctx_free()), or
 * NULL with err (4.7.5) when ca_file (PEM, NULL for the system store)
 * cannot be loaded. */
struct tls_ctx *tls_ctx_new(const char *ca_file, struct sy_err *err);
void tls_ctx_free(struct tls_ctx *c);          /* NULL ok */

/* Handshake as the client over fd (connected, non-blocking; borrowed: the
 * caller closes it after tls_conn_free()). host is the name the peer must
 * prove (host name or IP literal), borrowed for the call. Returns a new
 * connection owned by the caller, or NULL with err: SY_ETIMEOUT (4.4.2),
 * SY_EIO (4.7.5: handshake failure, certificate or name not verified when
 * verify is set; the reason is in the text). */
struct tls_conn *tls_connect(struct tls_ctx *c, int fd, const char *host, bool verify,
                             int64_t deadline_ms, struct sy_err *err);

/* Sends a close_notify (best effort, without waiting) and frees t. NULL ok. */
void tls_conn_free(struct tls_conn *t);

/* Reads at most n bytes (n > 0) into p. Returns the number read (> 0), 0
 * when the peer closed the connection, or a negative SY_ETIMEOUT /
 * SY_EIO with err. */
long tls_read(struct tls_conn *t, void *p, size_t n, int64_t deadline_ms, struct sy_err *err);
/* Writes all n bytes. SY_OK, SY_ETIMEOUT or SY_EIO with err. */
int tls_write(struct tls_conn *t, const void *p, size_t n, int64_t deadline_ms, struct sy_err *err);
/* True when decrypted bytes are waiting inside the TLS layer. */
bool tls_pending(const struct tls_conn *t);

/* True when the chain and the host name verified. */
bool tls_conn_verified(const struct tls_conn *t);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384", borrowed from t. */
const char *tls_conn_desc(const struct tls_conn *t);
/* The channel-binding data for this connection: *type and out[0..*lenp).
 * SY_OK, or SY_ENOTFOUND (type TLS_CB_NONE) when there is none. */
int tls_conn_cb(const struct tls_conn *t, int *type, unsigned char *out, size_t outsize,
                size_t *lenp);

#endif
