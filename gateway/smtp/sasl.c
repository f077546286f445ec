/* sasl.c - SASL client exchanges over libgsasl (see sasl.h) */
#include "gateway/smtp/sasl.h"

#include <stdlib.h>
#include <string.h>

#include <gsasl.h>
#include <openssl/evp.h>

#include "gateway/config.h"
#include "gateway/tls.h"
#include "gateway/util/xalloc.h"

struct sasl {
    Gsasl *ctx;
};

struct sasl_session {
    Gsasl_session *s;
    bool done;
};

static const char *const sasl_names[CFG_SASL_MECH_COUNT] = {
    [CFG_SASL_SCRAM_SHA_256_PLUS] = "SCRAM-SHA-256-PLUS",
    [CFG_SASL_SCRAM_SHA_1_PLUS] = "SCRAM-SHA-1-PLUS",
    [CFG_SASL_SCRAM_SHA_256] = "SCRAM-SHA-256",
    [CFG_SASL_SCRAM_SHA_1] = "SCRAM-SHA-1",
    [CFG_SASL_CRAM_MD5] = "CRAM-MD5",
    [CFG_SASL_PLAIN] = "PLAIN",
    [CFG_SASL_LOGIN] = "LOGIN",
};

const char *sasl_mech_name(int m)
{
    return m >= 0 && m < CFG_SASL_MECH_COUNT ? sasl_names[m] : "?";
}

bool sasl_mech_plus(int m)
{
    return m == CFG_SASL_SCRAM_SHA_256_PLUS || m == CFG_SASL_SCRAM_SHA_1_PLUS;
}

bool sasl_mech_initial(int m)
{
    return m != CFG_SASL_LOGIN && m != CFG_SASL_CRAM_MD5 && m >= 0 && m < CFG_SASL_MECH_COUNT;
}

struct sasl *sasl_new(struct sy_err *err)
{
    struct sasl *s = xcalloc(1, sizeof(*s));
    int rc = gsasl_init(&s->ctx);

    if (rc != GSASL_OK) {
        free(s);
        return sy_err_set(err, SY_ETEMP, "4.7.0", "SASL: %s", gsasl_strerror(rc)), NULL;
    }
    return s;
}

void sasl_free(struct sasl *s)
{
    if (s == NULL)
        return;
    gsasl_done(s->ctx);
    free(s);
}

/* sasl_start - a client session with the credentials (and binding data) set as properties */
struct sasl_session *sasl_start(struct sasl *s, int m, const char *user, const char *pass,
                                int cb_type, const unsigned char *cb, size_t cb_len,
                                struct sy_err *err)
{
    const char *name = sasl_mech_name(m);
    struct sasl_session *ss;
    Gsasl_session *gs = NULL;
    int rc;

    if (m < 0 || m >= CFG_SASL_MECH_COUNT || !gsasl_client_support_p(s->ctx, name))
        return sy_err_set(err, SY_EPERM, "5.7.4", "SASL: mechanism %s not supported by libgsasl", name),
               NULL;
    if (sasl_mech_plus(m) && (cb_type == TLS_CB_NONE || cb_len == 0 || cb_len > TLS_CB_MAX))
        return sy_err_set(err, SY_EPERM, "5.7.4", "SASL: %s needs TLS channel-binding data", name), NULL;
    rc = gsasl_client_start(s->ctx, name, &gs);
    if (rc != GSASL_OK)
        return sy_err_set(err, SY_ETEMP, "4.7.0", "SASL: %s: %s", name, gsasl_strerror(rc)), NULL;
    rc = gsasl_property_set(gs, GSASL_AUTHID, user);
    if (rc == GSASL_OK)
        rc = gsasl_property_set(gs, GSASL_PASSWORD, pass);
    if (rc == GSASL_OK && sasl_mech_plus(m)) {
        /* base64 of at most TLS_CB_MAX bytes */
        unsigned char b64[((TLS_CB_MAX + 2) / 3) * 4 + 1];

        (void) EVP_EncodeBlock(b64, cb, (int) cb_len);
        rc = gsasl_property_set(gs, cb_type == TLS_CB_EXPORTER ? GSASL_CB_TLS_EXPORTER : GSASL_CB_TLS_UNIQUE,
                                (const char *) b64);
    }
    if (rc != GSASL_OK) {
        gsasl_finish(gs);
        return sy_err_set(err, SY_ETEMP, "4.7.0", "SASL: %s: %s", name, gsasl_strerror(rc)), NULL;
    }
    ss = xcalloc(1, sizeof(*ss));
    ss->s = gs;
    return ss;
}

int sasl_step(struct sasl_session *ss, const char *in, char **out, struct sy_err *err)
{
    char *o = NULL;
    int rc;

    *out = NULL;
    if (strlen(in) > SASL_LINE_MAX)
        return sy_err_set(err, SY_ETEMP, "4.7.0", "SASL: challenge too long");
    rc = gsasl_step64(ss->s, in, &o);
    if (rc != GSASL_OK && rc != GSASL_NEEDS_MORE) {
        if (o != NULL)
            gsasl_free(o);
        /* gsasl's message names the failure class only, never data. A
         * server that cannot prove itself is odd, not a reason to bounce. */
        return sy_err_set(err, SY_ETEMP, "4.7.0", "SASL: %s", gsasl_strerror(rc));
    }
    *out = xstrdup(o != NULL ? o : "");
    if (o != NULL) {
        explicit_bzero(o, strlen(o));
        gsasl_free(o);
    }
    if (strlen(*out) > SASL_LINE_MAX) {
        explicit_bzero(*out, strlen(*out));
        free(*out);
        *out = NULL;
        return sy_err_set(err, SY_ETEMP, "4.7.0", "SASL: response too long");
    }
    ss->done = rc == GSASL_OK;
    return rc == GSASL_OK ? SASL_DONE : SASL_CONTINUE;
}

bool sasl_session_done(const struct sasl_session *ss)
{
    return ss->done;
}

void sasl_session_free(struct sasl_session *ss)
{
    if (ss == NULL)
        return;
    gsasl_finish(ss->s);
    free(ss);
}
