/* tls.c - TLS client connections over OpenSSL (see tls.h) */
#include "gateway/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "gateway/util/clock.h"
#include "gateway/util/xalloc.h"

struct tls_ctx {
    SSL_CTX *ctx;
};

struct tls_conn {
    SSL *ssl;
    int fd;
    bool verified;
    char desc[TLS_DESC_MAX];
};

/* tls_errstr - the first queued OpenSSL error as text (and clear the queue) */
static const char *tls_errstr(char *dst, size_t n)
{
    unsigned long e = ERR_get_error();

    if (e == 0)
        (void) snprintf(dst, n, "no detail");
    else
        ERR_error_string_n(e, dst, n);
    ERR_clear_error();
    return dst;
}

/* tls_ctx_new - a client SSL_CTX: TLS 1.2+, peer verification configured per connection */
struct tls_ctx *tls_ctx_new(const char *ca_file, struct sy_err *err)
{
    char why[200];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    struct tls_ctx *c;

    if (ctx == NULL)
        return sy_err_set(err, SY_EIO, "4.7.5", "TLS: cannot create a context: %s",
                          tls_errstr(why, sizeof(why))), NULL;
    (void) SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* No session cache: tls-unique then always names our own Finished. */
    (void) SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    if (ca_file != NULL ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
                        : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        (void) sy_err_set(err, SY_EIO, "4.7.5", "TLS: cannot load the trust store %s: %s",
                          ca_file != NULL ? ca_file : "(system)", tls_errstr(why, sizeof(why)));
        SSL_CTX_free(ctx);
        return NULL;
    }
    c = xcalloc(1, sizeof(*c));
    c->ctx = ctx;
    return c;
}

void tls_ctx_free(struct tls_ctx *c)
{
    if (c == NULL)
        return;
    SSL_CTX_free(c->ctx);
    free(c);
}

/* tls_wait - poll fd for what OpenSSL asked (want read / want write) until deadline */
static int tls_wait(int fd, int sslerr, int64_t deadline_ms, struct sy_err *err, const char *what)
{
    struct pollfd pfd = { .fd = fd, .events = sslerr == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN };
    for (;;) {
        int64_t left = deadline_ms - clock_mono_ms();
        int rc;

        if (left <= 0)
            return sy_err_set(err, SY_ETIMEOUT, "4.4.2", "TLS: timeout during %s", what);
        rc = poll(&pfd, 1, left > 60000 ? 60000 : (int) left);
        if (rc > 0)
            return SY_OK;
        if (rc < 0 && errno != EINTR)
            return sy_err_set(err, SY_EIO, "4.4.2", "TLS: poll: %s", strerror(errno));
    }
}

/* tls_is_ip - true when host is an IPv4 or IPv6 literal */
static bool tls_is_ip(const char *host)
{
    unsigned char a[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* tls_connect - handshake; with verify, chain and name failures abort it */
struct tls_conn *tls_connect(struct tls_ctx *c, int fd, const char *host, bool verify,
                             int64_t deadline_ms, struct sy_err *err)
{
    char why[200];
    struct tls_conn *t;
    X509_VERIFY_PARAM *vp;
    int rc, e;
    long vr;

    ERR_clear_error();
    t = xcalloc(1, sizeof(*t));
    t->fd = fd;
    t->ssl = SSL_new(c->ctx);
    if (t->ssl == NULL || SSL_set_fd(t->ssl, fd) != 1) {
        (void) sy_err_set(err, SY_EIO, "4.7.5", "TLS: cannot create a session: %s",
                          tls_errstr(why, sizeof(why)));
        goto fail;
    }
    vp = SSL_get0_param(t->ssl);
    if (tls_is_ip(host)) {
        rc = X509_VERIFY_PARAM_set1_ip_asc(vp, host);
    } else {
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        rc = SSL_set1_host(t->ssl, host) == 1 && SSL_set_tlsext_host_name(t->ssl, host) == 1;
    }
    if (rc != 1) {
        (void) sy_err_set(err, SY_EIO, "4.7.5", "TLS: cannot set the peer name: %s",
                          tls_errstr(why, sizeof(why)));
        goto fail;
    }
    /* Without verify the chain is still checked (the result is recorded), it just
     * does not stop the handshake. */
    SSL_set_verify(t->ssl, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    for (;;) {
        rc = SSL_connect(t->ssl);
        if (rc == 1)
            break;
        e = SSL_get_error(t->ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            if (tls_wait(fd, e, deadline_ms, err, "the handshake") != SY_OK)
                goto fail;
            continue;
        }
        vr = SSL_get_verify_result(t->ssl);
        if (verify && vr != X509_V_OK)
            (void) sy_err_set(err, SY_EIO, "4.7.5", "TLS: certificate of %s not verified: %s",
                              host, X509_verify_cert_error_string(vr));
        else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
            (void) sy_err_set(err, SY_EIO, "4.4.2", "TLS: handshake: connection lost");
        else
            (void) sy_err_set(err, SY_EIO, "4.7.5", "TLS: handshake failed: %s",
                              tls_errstr(why, sizeof(why)));
        goto fail;
    }
    t->verified = SSL_get0_peer_certificate(t->ssl) != NULL &&
                  SSL_get_verify_result(t->ssl) == X509_V_OK;
    (void) snprintf(t->desc, sizeof(t->desc), "%s %s", SSL_get_version(t->ssl),
                    SSL_get_cipher_name(t->ssl));
    return t;
fail:
    ERR_clear_error();
    SSL_free(t->ssl);
    free(t);
    return NULL;
}

/* tls_conn_free - close_notify without waiting for the peer's */
void tls_conn_free(struct tls_conn *t)
{
    if (t == NULL)
        return;
    (void) SSL_shutdown(t->ssl);
    ERR_clear_error();
    SSL_free(t->ssl);
    free(t);
}

long tls_read(struct tls_conn *t, void *p, size_t n, int64_t deadline_ms, struct sy_err *err)
{
    char why[200];
    size_t got = 0;

    for (;;) {
        int rc, e;

        ERR_clear_error();
        rc = SSL_read_ex(t->ssl, p, n, &got);
        if (rc == 1)
            return (long) got;
        e = SSL_get_error(t->ssl, rc);
        if (e == SSL_ERROR_ZERO_RETURN)
            return 0;
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            rc = tls_wait(t->fd, e, deadline_ms, err, "a read");
            if (rc != SY_OK)
                return rc;
            continue;
        }
        if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
            return 0;   /* EOF without close_notify: the peer is gone all the same */
        return sy_err_set(err, SY_EIO, "4.4.2", "TLS read: %s", tls_errstr(why, sizeof(why)));
    }
}

int tls_write(struct tls_conn *t, const void *p, size_t n, int64_t deadline_ms, struct sy_err *err)
{
    char why[200];
    const char *q = p;
    while (n > 0) {
        size_t done = 0;
        int rc, e;

        ERR_clear_error();
        rc = SSL_write_ex(t->ssl, q, n, &done);
        if (rc == 1) {
            q += done;
            n -= done;
            continue;
        }
        e = SSL_get_error(t->ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            rc = tls_wait(t->fd, e, deadline_ms, err, "a write");
            if (rc != SY_OK)
                return rc;
            continue;
        }
        return sy_err_set(err, SY_EIO, "4.4.2", "TLS write: %s",
                          e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 ? "connection lost"
                                                                         : tls_errstr(why, sizeof(why)));
    }
    return SY_OK;
}

bool tls_pending(const struct tls_conn *t)
{
    return SSL_pending(t->ssl) > 0;
}

bool tls_conn_verified(const struct tls_conn *t)
{
    return t->verified;
}

const char *tls_conn_desc(const struct tls_conn *t)
{
    return t->desc;
}

/* tls_conn_cb - RFC 9266 tls-exporter on TLS 1.3, RFC 5929 tls-unique before */
int tls_conn_cb(const struct tls_conn *t, int *type, unsigned char *out, size_t outsize,
                size_t *lenp)
{
    static const char label[] = "EXPORTER-Channel-Binding";
    size_t n;

    *type = TLS_CB_NONE;
    *lenp = 0;
    if (SSL_version(t->ssl) >= TLS1_3_VERSION) {
        if (outsize < 32 || SSL_export_keying_material(t->ssl, out, 32, label, sizeof(label) - 1,
                                                       NULL, 0, 0) != 1)
            return SY_ENOTFOUND;
        *type = TLS_CB_EXPORTER;
        *lenp = 32;
        return SY_OK;
    }
    n = SSL_get_finished(t->ssl, out, outsize);
    if (n == 0 || n > outsize)
        return SY_ENOTFOUND;
    *type = TLS_CB_UNIQUE;
    *lenp = n;
    return SY_OK;
}
