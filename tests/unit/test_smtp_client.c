/* test_smtp_client.c - the pure and local parts of the SMTP client:
 * RFC 3461 xtext, the SASL mechanisms against published vectors and
 * against libgsasl's own server, and TLS channel binding: a TLS pair over
 * a socketpair (our tls.c client, an OpenSSL server in a thread) whose
 * tls-exporter (TLS 1.3) and tls-unique (TLS 1.2) data must let
 * SCRAM-SHA-256-PLUS and SCRAM-SHA-1-PLUS complete against libgsasl's
 * server, and must make it fail when the server's binding differs (a
 * man in the middle). Real servers are in tests/integration/test_smtp_client.py.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>

#include <cmocka.h>
#include <gsasl.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "gateway/config.h"
#include "gateway/smtp/client.h"
#include "gateway/smtp/sasl.h"
#include "gateway/tls.h"
#include "gateway/util/buf.h"
#include "gateway/util/clock.h"
#include "gateway/util/err.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- xtext ---- */

static void test_xtext(void **state)
{
    static const struct { const char *in, *out; } cases[] = {
        { "", "" },
        { "plain", "plain" },
        { "a+b=c", "a+2Bb+3Dc" },
        { "sp ace", "sp+20ace" },
        { "\x01\x7f", "+01+7F" },
        { "caf\xc3\xa9", "caf+C3+A9" },
        { "<id@host>", "<id@host>" },
    };
    struct buf b;

    (void) state;
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        print_message("xtext %zu: \"%s\"\n", i, cases[i].out);
        buf_init(&b, 100);
        assert_int_equal(smtp_xtext_append(&b, cases[i].in), SY_OK);
        assert_string_equal(buf_str(&b), cases[i].out);
        buf_free(&b);
    }
    /* over the limit: the buffer is unchanged */
    buf_init(&b, 8);
    assert_int_equal(buf_append_str(&b, "ab"), SY_OK);
    assert_int_equal(smtp_xtext_append(&b, "a+b=c"), SY_ETOOBIG);
    assert_string_equal(buf_str(&b), "ab");
    buf_free(&b);
}

/* ---- SASL ---- */

static void test_sasl_names(void **state)
{
    (void) state;
    for (int m = 0; m < CFG_SASL_MECH_COUNT; m++)
        assert_string_equal(sasl_mech_name(m), cfg_sasl_mech_name(m));
    assert_true(sasl_mech_plus(CFG_SASL_SCRAM_SHA_256_PLUS));
    assert_false(sasl_mech_plus(CFG_SASL_SCRAM_SHA_256));
    assert_true(sasl_mech_initial(CFG_SASL_PLAIN));
    assert_true(sasl_mech_initial(CFG_SASL_SCRAM_SHA_1));
    assert_false(sasl_mech_initial(CFG_SASL_LOGIN));
    assert_false(sasl_mech_initial(CFG_SASL_CRAM_MD5));
}

static void test_sasl_vectors(void **state)
{
    struct sy_err err;
    struct sasl *s = sasl_new(&err);
    struct sasl_session *ss;
    char *out;

    (void) state;
    assert_non_null(s);
    /* PLAIN (RFC 4616): "\0tim\0tanstaaftanstaaf" */
    ss = sasl_start(s, CFG_SASL_PLAIN, "tim", "tanstaaftanstaaf", TLS_CB_NONE, NULL, 0, &err);
    assert_non_null(ss);
    assert_int_equal(sasl_step(ss, "", &out, &err), SASL_DONE);
    assert_string_equal(out, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
    free(out);
    sasl_session_free(ss);
    /* LOGIN: user name, then password, whatever the prompts say */
    ss = sasl_start(s, CFG_SASL_LOGIN, "tim", "tanstaaftanstaaf", TLS_CB_NONE, NULL, 0, &err);
    assert_int_equal(sasl_step(ss, "VXNlcm5hbWU6", &out, &err), SASL_CONTINUE);
    assert_string_equal(out, "dGlt");
    free(out);
    assert_int_equal(sasl_step(ss, "UGFzc3dvcmQ6", &out, &err), SASL_DONE);
    assert_string_equal(out, "dGFuc3RhYWZ0YW5zdGFhZg==");
    free(out);
    sasl_session_free(ss);
    /* CRAM-MD5 (RFC 2195 §2) */
    ss = sasl_start(s, CFG_SASL_CRAM_MD5, "tim", "tanstaaftanstaaf", TLS_CB_NONE, NULL, 0, &err);
    assert_int_equal(sasl_step(ss, "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+", &out, &err),
                     SASL_DONE);
    assert_string_equal(out, "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw");
    free(out);
    sasl_session_free(ss);
    /* a -PLUS mechanism without binding data is refused before anything is sent */
    assert_null(sasl_start(s, CFG_SASL_SCRAM_SHA_256_PLUS, "tim", "x", TLS_CB_NONE, NULL, 0, &err));
    assert_string_equal(err.enh, "5.7.4");
    /* a malformed challenge: an error without the password in it */
    ss = sasl_start(s, CFG_SASL_SCRAM_SHA_256, "tim", "tanstaaftanstaaf", TLS_CB_NONE, NULL, 0, &err);
    assert_int_equal(sasl_step(ss, "", &out, &err), SASL_CONTINUE);
    free(out);
    assert_int_equal(sasl_step(ss, "bm9uc2Vuc2U=", &out, &err), SY_ETEMP);
    assert_string_equal(err.enh, "4.7.0");
    assert_null(out);
    assert_null(strstr(err.text, "tanstaaf"));
    sasl_session_free(ss);
    sasl_free(s);
}

/* ---- TLS channel binding with libgsasl's SCRAM server ---- */

struct tls_server {
    int fd;
    int maxver;
    SSL_CTX *ctx;
    SSL *ssl;
    bool ok;
};

/* make_cert - a throwaway self-signed P-256 certificate for "localhost" */
static void make_cert(SSL_CTX *ctx)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *n;

    assert_non_null(k);
    (void) ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    (void) X509_gmtime_adj(X509_getm_notBefore(x), -60);
    (void) X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    (void) X509_set_pubkey(x, k);
    n = X509_get_subject_name(x);
    (void) X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *) "localhost", -1, -1, 0);
    (void) X509_set_issuer_name(x, n);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, k), 1);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void *server_main(void *arg)
{
    struct tls_server *s = arg;
    int fl = fcntl(s->fd, F_GETFL);

    (void) fcntl(s->fd, F_SETFL, fl & ~O_NONBLOCK);
    s->ssl = SSL_new(s->ctx);
    (void) SSL_set_fd(s->ssl, s->fd);
    s->ok = SSL_accept(s->ssl) == 1;
    return NULL;
}

/* server_cb - the server's view of the binding, base64 (as libgsasl wants it) */
static void server_cb(SSL *ssl, bool tls13, char *b64, size_t size)
{
    unsigned char cb[64];
    size_t n;

    assert_true(size >= 4 * ((sizeof(cb) + 2) / 3) + 1);
    if (tls13) {
        assert_int_equal(SSL_export_keying_material(ssl, cb, 32, "EXPORTER-Channel-Binding", 24, NULL, 0, 0), 1);
        n = 32;
    } else {
        n = SSL_get_peer_finished(ssl, cb, sizeof(cb));     /* the client's Finished */
        assert_true(n > 0 && n <= sizeof(cb));
    }
    (void) EVP_EncodeBlock((unsigned char *) b64, cb, (int) n);
}

/* scram_plus_run - client and libgsasl server exchange; returns the server's final status */
static int scram_plus_run(int mech, bool tls13, bool tamper)
{
    struct tls_server srv = { .maxver = tls13 ? TLS1_3_VERSION : TLS1_2_VERSION };
    unsigned char cb[TLS_CB_MAX];
    char scb[128], *out = NULL, *sout = NULL;
    int sv[2], type, rc, src = GSASL_NEEDS_MORE;
    size_t cblen;
    pthread_t th;
    struct sy_err err;
    struct tls_ctx *cctx;
    struct tls_conn *tc;
    struct sasl *s;
    struct sasl_session *ss;
    Gsasl *g;
    Gsasl_session *gs;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    srv.fd = sv[1];
    srv.ctx = SSL_CTX_new(TLS_server_method());
    (void) SSL_CTX_set_max_proto_version(srv.ctx, srv.maxver);
    make_cert(srv.ctx);
    assert_int_equal(pthread_create(&th, NULL, server_main, &srv), 0);
    cctx = tls_ctx_new(NULL, &err);
    assert_non_null(cctx);
    tc = tls_connect(cctx, sv[0], "localhost", false, clock_mono_ms() + 30000, &err);
    assert_non_null(tc);
    (void) pthread_join(th, NULL);
    assert_true(srv.ok);
    assert_false(tls_conn_verified(tc));    /* self-signed, not in the store */
    assert_non_null(strstr(tls_conn_desc(tc), tls13 ? "TLSv1.3" : "TLSv1.2"));
    assert_int_equal(tls_conn_cb(tc, &type, cb, sizeof(cb), &cblen), SY_OK);
    assert_int_equal(type, tls13 ? TLS_CB_EXPORTER : TLS_CB_UNIQUE);
    server_cb(srv.ssl, tls13, scb, sizeof(scb));
    if (tamper)
        scb[0] = scb[0] == 'A' ? 'B' : 'A';

    s = sasl_new(&err);
    ss = sasl_start(s, mech, "user1", "secret1", type, cb, cblen, &err);
    assert_non_null(ss);
    assert_int_equal(gsasl_init(&g), GSASL_OK);
    assert_int_equal(gsasl_server_start(g, sasl_mech_name(mech), &gs), GSASL_OK);
    (void) gsasl_property_set(gs, GSASL_PASSWORD, "secret1");
    (void) gsasl_property_set(gs, tls13 ? GSASL_CB_TLS_EXPORTER : GSASL_CB_TLS_UNIQUE, scb);
    /* client first, then alternate until the server is done or fails */
    rc = sasl_step(ss, "", &out, &err);
    for (int i = 0; i < 5 && rc >= 0; i++) {
        src = gsasl_step64(gs, out, &sout);
        free(out);
        out = NULL;
        if (src != GSASL_OK && src != GSASL_NEEDS_MORE)
            break;
        rc = sasl_step(ss, sout, &out, &err);
        gsasl_free(sout);
        sout = NULL;
        if (src == GSASL_OK)
            break;
    }
    if (src == GSASL_OK)
        assert_true(rc == SASL_DONE && sasl_session_done(ss));    /* the server proved itself too */
    free(out);
    gsasl_free(sout);
    gsasl_finish(gs);
    gsasl_done(g);
    sasl_session_free(ss);
    sasl_free(s);
    tls_conn_free(tc);
    tls_ctx_free(cctx);
    SSL_free(srv.ssl);
    SSL_CTX_free(srv.ctx);
    (void) close(sv[0]);
    (void) close(sv[1]);
    return src;
}

static void test_scram_plus(void **state)
{
    (void) state;
    print_message("SCRAM-SHA-256-PLUS, TLS 1.3, tls-exporter\n");
    assert_int_equal(scram_plus_run(CFG_SASL_SCRAM_SHA_256_PLUS, true, false), GSASL_OK);
    print_message("SCRAM-SHA-1-PLUS, TLS 1.3, tls-exporter\n");
    assert_int_equal(scram_plus_run(CFG_SASL_SCRAM_SHA_1_PLUS, true, false), GSASL_OK);
    print_message("SCRAM-SHA-256-PLUS, TLS 1.2, tls-unique\n");
    assert_int_equal(scram_plus_run(CFG_SASL_SCRAM_SHA_256_PLUS, false, false), GSASL_OK);
    print_message("a different channel on the server's side fails\n");
    assert_int_not_equal(scram_plus_run(CFG_SASL_SCRAM_SHA_256_PLUS, true, true), GSASL_OK);
    assert_int_not_equal(scram_plus_run(CFG_SASL_SCRAM_SHA_256_PLUS, false, true), GSASL_OK);
}

static void test_tls_ctx_bad_ca(void **state)
{
    struct sy_err err;

    (void) state;
    assert_null(tls_ctx_new("/nonexistent/ca.pem", &err));
    assert_string_equal(err.enh, "4.7.5");
    assert_non_null(strstr(err.text, "/nonexistent/ca.pem"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xtext),
        cmocka_unit_test(test_sasl_names),
        cmocka_unit_test(test_sasl_vectors),
        cmocka_unit_test(test_scram_plus),
        cmocka_unit_test(test_tls_ctx_bad_ca),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
