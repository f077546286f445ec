/* client.h - the SMTP (and LMTP) client protocol over one connection
 *
 * smtp_client_open() connects and gets a session ready for mail: greeting,
 * EHLO (HELO when EHLO is refused; LHLO for LMTP), STARTTLS as the TLS
 * mode says (capabilities forgotten and EHLO sent again afterwards, RFC
 * 3207 §4.2), then AUTH. smtp_client_send() runs one transaction for some
 * recipients of one message and gives each recipient exactly one result;
 * smtp_client_rset() prepares a cached session for the next one.
 *
 * TLS modes (enum cfg_tls): required (certificate chain and host name
 * verified, or no mail), required-unverified (TLS, any certificate),
 * opportunistic (STARTTLS when offered; a failed handshake is retried once
 * in plain text on a new connection, as Postfix does), none.
 * Credentials never cross without TLS unless allow_plaintext_auth.
 * The mechanism is the first configured one the server offers; none in
 * common is a permanent failure (5.7.4).
 *
 * Transaction policy (checked before MAIL, per message): an 8-bit message
 * to a server without 8BITMIME fails with 5.6.3 (no downgrade to 7 bit);
 * a message that needs SMTPUTF8 (the parameter was given, or an address
 * is not ASCII) to a server without it: 5.6.7; REQUIRETLS (RFC 8689)
 * without verified TLS or without the server's REQUIRETLS: 5.7.30; larger
 * than the server's SIZE: 5.3.4. DSN parameters (NOTIFY, ORCPT, RET,
 * ENVID) go out only when the server has DSN. MAIL and RCPT are pipelined
 * when the server has PIPELINING; DATA follows only when at least one
 * RCPT was accepted; the data is canonical CRLF and dot-stuffed
 * (gateway/smtp/dotstuff.h). A 452 to RCPT ends the recipients of the
 * transaction: the rest get a temporary failure. A connection lost after
 * the final dot is a temporary failure (the message may arrive twice,
 * never be lost). Timeouts follow RFC 5321 §4.5.3.2 (configurable).
 *
 * Thread safety: a client belongs to one thread at a time (the relay's
 * connection cache hands it from worker to worker under its lock).
 */
#ifndef SY_SMTP_CLIENT_H
#define SY_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/config.h"
#include "gateway/smtp/ehlo.h"
#include "gateway/smtp/sasl.h"
#include "gateway/tls.h"
#include "gateway/transport/transport.h"
#include "gateway/util/err.h"

/* A MAIL or RCPT command line we build (RFC 5321 §4.5.3.1.4 allows 512 and
 * extensions more; ENVID and ORCPT are bounded by the envelope checks). */
#define SMTP_CLIENT_CMD_MAX ((size_t) 4096)
/* Recipients sent per pipelined batch before their replies are read (the
 * server's replies must fit in the socket buffers meanwhile). */
#define SMTP_CLIENT_PIPELINE_MAX ((size_t) 100)
/* Message bytes read from the spool per step. */
#define SMTP_CLIENT_CHUNK ((size_t) 65536)

/* Everything borrowed; must outlive the client. */
struct smtp_client_cfg {
    const char *host;               /* to connect to, and the name TLS verifies */
    unsigned port;
    int tls;                        /* enum cfg_tls */
    bool implicit_tls;              /* submissions: TLS before the greeting (RFC 8314) */
    bool lmtp;                      /* LHLO, one reply per recipient after the dot */
    const char *helo_name;
    struct tls_ctx *tls_ctx;        /* needed unless tls is none */
    const struct cfg_auth *auth;    /* NULL: no AUTH */
    bool allow_plaintext_auth;
    struct sasl *sasl;              /* needed with auth */
    uint64_t connect_timeout_ms, greeting_timeout_ms, command_timeout_ms;
    uint64_t data_timeout_ms, data_block_timeout_ms, data_done_timeout_ms;
};

struct smtp_client;     /* opaque */

/* What a failed smtp_client_open() got as far as, for the attempt record. */
struct smtp_client_peer {
    char addr[64];                  /* the address connected to, "" when none */
    char tls[TLS_DESC_MAX];         /* "TLSv1.3 ...", "" without TLS */
};

/* Connects and prepares a session (see the file comment). Returns a new
 * client owned by the caller (smtp_client_quit() or smtp_client_free()),
 * or NULL with err: temporary for network, TLS and 4xx trouble; permanent
 * (5.7.x) when AUTH has no mechanism in common or the server refused the
 * credentials (535 5.7.8). peer (may be NULL) is filled either way. */
struct smtp_client *smtp_client_open(const struct smtp_client_cfg *cfg, struct smtp_client_peer *peer,
                                     struct sy_err *err);

/* One transaction: msg (borrowed) to rcpts[0..n) (n >= 1). Fills every
 * rcpts[i].code, reply and relayed. Returns SY_OK when the session can be
 * used again (after smtp_client_rset()), else a negative status (err set):
 * close it with smtp_client_free(). */
int smtp_client_send(struct smtp_client *c, const struct transport_msg *msg,
                     struct transport_rcpt *rcpts, size_t n, struct sy_err *err);

/* RSET and its 250: SY_OK when the session is ready for another MAIL. */
int smtp_client_rset(struct smtp_client *c, struct sy_err *err);

/* QUIT (waiting at most timeout_ms for the reply), then closes and frees c. NULL ok. */
void smtp_client_quit(struct smtp_client *c, uint64_t timeout_ms);
/* Closes without QUIT and frees c. NULL ok. */
void smtp_client_free(struct smtp_client *c);

/* Facts for the attempt record; borrowed from c. */
const char *smtp_client_addr(const struct smtp_client *c);      /* "192.0.2.1" */
const char *smtp_client_tls_desc(const struct smtp_client *c);  /* "" without TLS */
bool smtp_client_tls_verified(const struct smtp_client *c);
const struct smtp_ehlo *smtp_client_caps(const struct smtp_client *c);
/* The SASL mechanism used, "" when none. */
const char *smtp_client_auth_mech(const struct smtp_client *c);
/* True while a cached session looks reusable (no EOF or junk waiting). */
bool smtp_client_alive(struct smtp_client *c);

/* RFC 3461 §4 xtext: appends s with bytes outside '!'..'~', '+' and '='
 * as "+HH". SY_OK or SY_ETOOBIG (out unchanged). Pure; for tests too. */
int smtp_xtext_append(struct buf *out, const char *s);

#endif
