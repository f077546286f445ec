/* sasl.h - SASL client exchanges: the only user of libgsasl
 *
 * Mechanisms (RFC 4422 names): PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1,
 * SCRAM-SHA-256 and SCRAM-SHA-1-PLUS / SCRAM-SHA-256-PLUS with TLS channel
 * binding (tls-exporter on TLS 1.3, tls-unique before: see tls.h). The
 * SMTP side (AUTH, 334 challenges, 235) is the client's job
 * (gateway/smtp/client.c); this module turns base64 challenges into base64
 * responses. Channel-binding data is given only to -PLUS mechanisms: a
 * plain SCRAM client that has it would announce "y" (RFC 5802 §6), which a
 * server offering -PLUS must treat as a downgrade attack.
 *
 * Secrets (the password, every response) never reach err or a log.
 *
 * Thread safety: struct sasl is shared by all threads after sasl_new()
 * (libgsasl allows sessions of one context in several threads); a
 * struct sasl_session belongs to one thread.
 */
#ifndef SY_SMTP_SASL_H
#define SY_SMTP_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/util/err.h"

/* A base64 line we send or accept: RFC 4954 §4 allows 12288 octets for
 * an AUTH command line. */
#define SASL_LINE_MAX ((size_t) 12288)

enum sasl_step_status {
    SASL_DONE = 0,          /* SY_OK: our side is complete */
    SASL_CONTINUE = 1       /* a response to send; more expected */
};

struct sasl;            /* opaque: the library context */
struct sasl_session;    /* opaque: one exchange */

/* Returns a new context owned by the caller (sasl_free()), or NULL with
 * err when libgsasl cannot start. */
struct sasl *sasl_new(struct sy_err *err);
void sasl_free(struct sasl *s);             /* NULL ok */

/* The mechanism name of enum cfg_sasl_mech m ("SCRAM-SHA-256-PLUS"). */
const char *sasl_mech_name(int m);
/* True for the -PLUS mechanisms (they need channel-binding data). */
bool sasl_mech_plus(int m);
/* True when the client sends an initial response with AUTH (RFC 4954
 * §4): PLAIN and SCRAM; LOGIN and CRAM-MD5 wait for the server. */
bool sasl_mech_initial(int m);

/* Starts mechanism m (enum cfg_sasl_mech) for user/pass (borrowed for the
 * call: libgsasl copies them). For -PLUS, cb_type (enum tls_cb_type) and
 * cb[0..cb_len) are the channel-binding data. Returns a new session owned
 * by the caller (sasl_session_free()), or NULL with err (5.7.4 when the
 * library lacks the mechanism or the binding data is missing). */
struct sasl_session *sasl_start(struct sasl *s, int m, const char *user, const char *pass,
                                int cb_type, const unsigned char *cb, size_t cb_len,
                                struct sy_err *err);

/* One step: in is the server's base64 challenge (NUL-terminated, "" for
 * none), *out gets a new NUL-terminated base64 response owned by the
 * caller (free() it; "" allowed). Returns SASL_DONE or SASL_CONTINUE, or
 * SY_ETEMP with err (4.7.0: a malformed challenge, or the server failed
 * to prove it knows the password: deferred, never bounced). */
int sasl_step(struct sasl_session *ss, const char *in, char **out, struct sy_err *err);

/* True when the mechanism has completed on our side (for SCRAM: the
 * server's signature checked). */
bool sasl_session_done(const struct sasl_session *ss);
void sasl_session_free(struct sasl_session *ss);   /* NULL ok */

#endif
