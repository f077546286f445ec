/* client.c - the SMTP / LMTP client protocol (see client.h) */
#include "gateway/smtp/client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/smtp/conn.h"
#include "gateway/smtp/dotstuff.h"
#include "gateway/util/buf.h"
#include "gateway/util/clock.h"
#include "gateway/util/text.h"
#include "gateway/util/xalloc.h"

struct smtp_client {
    struct smtp_client_cfg cfg;
    struct smtp_conn *conn;
    struct smtp_ehlo caps;
    bool esmtp;                     /* EHLO (or LHLO) accepted; false after HELO */
    bool verified;                  /* TLS with a verified certificate and name */
    const char *mech;               /* SASL mechanism used, "" when none */
    char tls_desc[TLS_DESC_MAX];
    struct smtp_reply reply;        /* the last reply read */
};

/* client_deadline - now + ms on the monotonic clock */
static int64_t client_deadline(uint64_t ms)
{
    return clock_mono_ms() + (int64_t) (ms > (uint64_t) INT32_MAX * 1000 ? (uint64_t) INT32_MAX * 1000 : ms);
}

/* client_cmd - send one command line (CRLF added) and read its reply */
static int client_cmd(struct smtp_client *c, const char *line, uint64_t timeout_ms, struct sy_err *err)
{
    char wire[SASL_LINE_MAX + 3];
    size_t n = strlen(line);
    int64_t dl = client_deadline(timeout_ms);
    int rc;

    if (n > SASL_LINE_MAX)
        return sy_err_set(err, SY_ETEMP, "4.3.0", "command too long");
    (void) snprintf(wire, sizeof(wire), "%s\r\n", line);
    rc = smtp_conn_write(c->conn, wire, n + 2, dl, err);
    explicit_bzero(wire, n);    /* AUTH responses */
    if (rc != SY_OK)
        return rc;
    return smtp_conn_read_reply(c->conn, &c->reply, dl, err);
}

/* client_reply_err - err from a reply: class by the first digit, enhanced code kept */
static int client_reply_err(const struct smtp_reply *r, struct sy_err *err, const char *when,
                            bool perm_ok)
{
    int code = perm_ok && smtp_reply_is_permanent(r) ? SY_EPERM : SY_ETEMP;
    const char *enh = smtp_reply_status(r);
    char tmp[12];

    if (code == SY_ETEMP && enh[0] == '5') {
        /* a session-level 5xx defers: report it as 4.x.x so nobody bounces on it */
        (void) snprintf(tmp, sizeof(tmp), "4%s", enh + 1);
        enh = tmp;
    }
    return sy_err_set(err, code, enh, "%s: %s", when, smtp_reply_full(r));
}

/* client_ehlo - EHLO (LHLO), HELO when EHLO is refused; capabilities replaced */
static int client_ehlo(struct smtp_client *c, struct sy_err *err)
{
    char line[SMTP_EHLO_NAME_MAX + 16];
    int rc;

    smtp_ehlo_init(&c->caps);
    c->esmtp = false;
    (void) snprintf(line, sizeof(line), "%s %s", c->cfg.lmtp ? "LHLO" : "EHLO", c->cfg.helo_name);
    rc = client_cmd(c, line, c->cfg.command_timeout_ms, err);
    if (rc != SY_OK)
        return rc;
    if (smtp_reply_is_positive(&c->reply)) {
        c->esmtp = true;
        return smtp_ehlo_parse(&c->reply, &c->caps, err);
    }
    if (c->cfg.lmtp || !smtp_reply_is_permanent(&c->reply))
        return client_reply_err(&c->reply, err, c->cfg.lmtp ? "LHLO refused" : "EHLO refused", false);
    (void) snprintf(line, sizeof(line), "HELO %s", c->cfg.helo_name);
    rc = client_cmd(c, line, c->cfg.command_timeout_ms, err);
    if (rc != SY_OK)
        return rc;
    if (!smtp_reply_is_positive(&c->reply))
        return client_reply_err(&c->reply, err, "HELO refused", false);
    return SY_OK;
}

/* client_tls - TLS on the connection, verification as the mode says */
static int client_tls(struct smtp_client *c, struct sy_err *err)
{
    struct tls_conn *t;
    int rc;

    rc = smtp_conn_starttls(c->conn, c->cfg.tls_ctx, c->cfg.host, c->cfg.tls == CFG_TLS_REQUIRED,
                            client_deadline(c->cfg.command_timeout_ms), err);
    if (rc != SY_OK)
        return rc;
    t = smtp_conn_tls(c->conn);
    c->verified = tls_conn_verified(t);
    (void) snprintf(c->tls_desc, sizeof(c->tls_desc), "%s", tls_conn_desc(t));
    return SY_OK;
}

/* client_pick_mech - the first configured mechanism the server offers and we can do */
static int client_pick_mech(const struct smtp_client *c, int *mech)
{
    const struct cfg_auth *a = c->cfg.auth;
    struct tls_conn *t = smtp_conn_tls(c->conn);

    for (size_t i = 0; i < a->nmechanisms; i++) {
        int m = a->mechanisms[i];

        if (!smtp_ehlo_has_mech(&c->caps, sasl_mech_name(m)))
            continue;
        if (sasl_mech_plus(m)) {
            unsigned char cb[TLS_CB_MAX];
            size_t n;
            int type;

            if (t == NULL || tls_conn_cb(t, &type, cb, sizeof(cb), &n) != SY_OK)
                continue;
        }
        *mech = m;
        return SY_OK;
    }
    return SY_ENOTFOUND;
}

/* client_auth - RFC 4954 AUTH with the configured credentials */
static int client_auth(struct smtp_client *c, struct sy_err *err)
{
    const struct cfg_auth *a = c->cfg.auth;
    struct tls_conn *t = smtp_conn_tls(c->conn);
    unsigned char cb[TLS_CB_MAX];
    size_t cblen = 0, nsteps = 0;
    int cbtype = TLS_CB_NONE, mech, rc, st = SASL_CONTINUE;
    struct sasl_session *ss;
    char *out = NULL, *line;
    char offered[256];

    if (t == NULL && !c->cfg.allow_plaintext_auth)
        return sy_err_set(err, SY_ETEMP, "4.7.0", "not sending credentials to %s without TLS "
                          "(allow_plaintext_auth is off)", c->cfg.host);
    if (!smtp_ehlo_has(&c->caps, SMTP_EXT_AUTH) || client_pick_mech(c, &mech) != SY_OK) {
        size_t o = 0;

        offered[0] = '\0';
        for (size_t i = 0; i < smtp_ehlo_nmechs(&c->caps) && o < sizeof(offered); i++) {
            int w = snprintf(offered + o, sizeof(offered) - o, "%s%s", i ? " " : "", smtp_ehlo_mech(&c->caps, i));
            o += w > 0 ? (size_t) w : 0;
        }
        return sy_err_set(err, SY_EPERM, "5.7.4", "no SASL mechanism in common with %s "
                          "(the server offers: %s)", c->cfg.host, offered[0] ? offered : "no AUTH");
    }
    if (sasl_mech_plus(mech))
        (void) tls_conn_cb(t, &cbtype, cb, sizeof(cb), &cblen);
    ss = sasl_start(c->cfg.sasl, mech, a->username, a->password, cbtype, cb, cblen, err);
    explicit_bzero(cb, sizeof(cb));
    if (ss == NULL)
        return err != NULL ? err->code : SY_EPERM;
    line = xmalloc(SASL_LINE_MAX + 64);
    if (sasl_mech_initial(mech)) {
        st = sasl_step(ss, "", &out, err);
        if (st < 0)
            goto done;
        /* RFC 4954 §4: an empty initial response is sent as "=" */
        (void) snprintf(line, SASL_LINE_MAX + 64, "AUTH %s %s", sasl_mech_name(mech), out[0] ? out : "=");
    } else {
        (void) snprintf(line, SASL_LINE_MAX + 64, "AUTH %s", sasl_mech_name(mech));
    }
    for (;;) {
        rc = client_cmd(c, line, c->cfg.command_timeout_ms, err);
        explicit_bzero(line, strlen(line));
        if (out != NULL) {
            explicit_bzero(out, strlen(out));
            free(out);
            out = NULL;
        }
        if (rc != SY_OK) {
            st = rc;
            goto done;
        }
        if (smtp_reply_code(&c->reply) != 334 || ++nsteps > 10)
            break;
        {
            const char *chal = smtp_reply_line(&c->reply, 0, NULL);

            st = sasl_step(ss, chal, &out, err);
            if (st < 0) {
                /* cancel the exchange (RFC 4954 §4) and report our reason */
                struct sy_err ign;

                (void) client_cmd(c, "*", c->cfg.command_timeout_ms, &ign);
                goto done;
            }
            (void) snprintf(line, SASL_LINE_MAX + 64, "%s", out);
        }
    }
    if (smtp_reply_code(&c->reply) == 235) {
        /* SCRAM: the server must have proved it knows the password too */
        if (mech != CFG_SASL_PLAIN && mech != CFG_SASL_LOGIN && mech != CFG_SASL_CRAM_MD5 &&
            !sasl_session_done(ss)) {
            st = sy_err_set(err, SY_ETEMP, "4.7.0", "AUTH %s: the server accepted without proving "
                            "its identity", sasl_mech_name(mech));
            goto done;
        }
        c->mech = sasl_mech_name(mech);
        st = SY_OK;
    } else if (smtp_reply_code(&c->reply) == 334) {
        st = sy_err_set(err, SY_ETEMP, "4.7.0", "AUTH %s: too many challenges", sasl_mech_name(mech));
    } else {
        char when[64];

        (void) snprintf(when, sizeof(when), "AUTH %s failed", sasl_mech_name(mech));
        /* Only 535 (RFC 4954: credentials invalid) bounces; 530, 534, 538
         * and the rest say our configuration or the server is wrong:
         * keep the mail while someone fixes that. */
        st = client_reply_err(&c->reply, err, when, smtp_reply_code(&c->reply) == 535);
    }
done:
    if (out != NULL) {
        explicit_bzero(out, strlen(out));
        free(out);
    }
    explicit_bzero(line, SASL_LINE_MAX + 64);
    free(line);
    sasl_session_free(ss);
    return st;
}

/* client_session - one connection attempt; *plain_retry set when an opportunistic
 * handshake failed and a plain-text retry makes sense */
static int client_session(struct smtp_client *c, bool no_tls, bool *plain_retry, struct sy_err *err)
{
    bool want_tls = !no_tls && c->cfg.tls != CFG_TLS_NONE;
    int rc;

    c->conn = smtp_conn_open(c->cfg.host, c->cfg.port, (int64_t) c->cfg.connect_timeout_ms, err);
    if (c->conn == NULL)
        return err != NULL && err->code != SY_OK ? err->code : SY_ETEMP;
    if (c->cfg.implicit_tls) {
        rc = client_tls(c, err);
        if (rc != SY_OK)
            return rc;
    }
    rc = smtp_conn_read_reply(c->conn, &c->reply, client_deadline(c->cfg.greeting_timeout_ms), err);
    if (rc != SY_OK)
        return rc;
    if (!smtp_reply_is_positive(&c->reply))
        return client_reply_err(&c->reply, err, "greeting", false);
    rc = client_ehlo(c, err);
    if (rc != SY_OK)
        return rc;
    if (want_tls && !c->cfg.implicit_tls) {
        if (!smtp_ehlo_has(&c->caps, SMTP_EXT_STARTTLS)) {
            if (c->cfg.tls != CFG_TLS_OPPORTUNISTIC)
                return sy_err_set(err, SY_ETEMP, "4.7.5", "%s does not offer STARTTLS (tls: %s)",
                                  c->cfg.host, cfg_tls_name(c->cfg.tls));
        } else {
            rc = client_cmd(c, "STARTTLS", c->cfg.command_timeout_ms, err);
            if (rc != SY_OK)
                return rc;
            if (smtp_reply_code(&c->reply) != 220) {
                if (c->cfg.tls != CFG_TLS_OPPORTUNISTIC)
                    return client_reply_err(&c->reply, err, "STARTTLS refused", false);
            } else {
                rc = client_tls(c, err);
                if (rc != SY_OK) {
                    *plain_retry = c->cfg.tls == CFG_TLS_OPPORTUNISTIC;
                    return rc;
                }
                /* RFC 3207 §4.2: forget everything learnt before TLS */
                rc = client_ehlo(c, err);
                if (rc != SY_OK)
                    return rc;
            }
        }
    }
    if (c->cfg.auth != NULL) {
        rc = client_auth(c, err);
        if (rc != SY_OK)
            return rc;
    }
    return SY_OK;
}

struct smtp_client *smtp_client_open(const struct smtp_client_cfg *cfg, struct smtp_client_peer *peer,
                                     struct sy_err *err)
{
    struct smtp_client *c = xcalloc(1, sizeof(*c));
    bool plain_retry = false;
    int rc;

    c->cfg = *cfg;
    c->mech = "";
    smtp_reply_init(&c->reply);
    rc = client_session(c, false, &plain_retry, err);
    if (rc != SY_OK && plain_retry) {
        /* Postfix: a failed opportunistic handshake is retried without TLS */
        smtp_conn_close(c->conn);
        c->conn = NULL;
        c->tls_desc[0] = '\0';
        c->verified = false;
        rc = client_session(c, true, &plain_retry, err);
    }
    if (peer != NULL) {
        (void) snprintf(peer->addr, sizeof(peer->addr), "%s", c->conn != NULL ? smtp_conn_addr(c->conn) : "");
        (void) snprintf(peer->tls, sizeof(peer->tls), "%s", c->tls_desc);
    }
    if (rc != SY_OK) {
        smtp_client_free(c);
        return NULL;
    }
    return c;
}

void smtp_client_free(struct smtp_client *c)
{
    if (c == NULL)
        return;
    smtp_conn_close(c->conn);
    smtp_reply_free(&c->reply);
    free(c);
}

void smtp_client_quit(struct smtp_client *c, uint64_t timeout_ms)
{
    struct sy_err ign;

    if (c == NULL)
        return;
    if (c->conn != NULL)
        (void) client_cmd(c, "QUIT", timeout_ms, &ign);
    smtp_client_free(c);
}

int smtp_client_rset(struct smtp_client *c, struct sy_err *err)
{
    int rc = client_cmd(c, "RSET", c->cfg.command_timeout_ms, err);

    if (rc != SY_OK)
        return rc;
    /* RFC 5321 §4.1.1.5: 250 and nothing else (a 221 means it is leaving). */
    if (smtp_reply_code(&c->reply) != 250)
        return client_reply_err(&c->reply, err, "RSET refused", false);
    return SY_OK;
}

const char *smtp_client_addr(const struct smtp_client *c) { return smtp_conn_addr(c->conn); }
const char *smtp_client_tls_desc(const struct smtp_client *c) { return c->tls_desc; }
bool smtp_client_tls_verified(const struct smtp_client *c) { return c->verified; }
const struct smtp_ehlo *smtp_client_caps(const struct smtp_client *c) { return &c->caps; }
const char *smtp_client_auth_mech(const struct smtp_client *c) { return c->mech; }
bool smtp_client_alive(struct smtp_client *c) { return smtp_conn_alive(c->conn); }

int smtp_xtext_append(struct buf *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0, i = 0;
    char *tmp;
    int rc;

    for (const unsigned char *p = (const unsigned char *) s; *p; p++)
        n += (*p < '!' || *p > '~' || *p == '+' || *p == '=') ? 3 : 1;
    tmp = xmalloc(n + 1);
    for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
        if (*p < '!' || *p > '~' || *p == '+' || *p == '=') {
            tmp[i++] = '+';
            tmp[i++] = hex[*p >> 4];
            tmp[i++] = hex[*p & 15];
        } else {
            tmp[i++] = (char) *p;
        }
    }
    rc = buf_append(out, tmp, n);
    free(tmp);
    return rc;
}

/* ---- the transaction ---- */

struct client_txn {
    struct transport_rcpt *rcpts;
    size_t n;
    bool *done;             /* rcpts[i] has its result */
    bool *accepted;         /* RCPT accepted, waiting for the data's reply */
    bool *sent;             /* RCPT sent in the current batch: one reply to read */
    bool dsn;               /* the server has DSN */
};

/* txn_set - one recipient's result, once */
static void txn_set(struct client_txn *x, size_t i, int code, const char *reply)
{
    if (x->done[i])
        return;
    size_t len = strlen(reply);

    if (len >= sizeof(x->rcpts[i].reply))
        len = sizeof(x->rcpts[i].reply) - 1;    /* cut: the reply is printable ASCII */
    x->rcpts[i].code = code;
    memcpy(x->rcpts[i].reply, reply, len);
    x->rcpts[i].reply[len] = '\0';
    x->done[i] = true;
}

/* txn_set_reply - a result from a remote reply */
static void txn_set_reply(struct client_txn *x, size_t i, const struct smtp_reply *r)
{
    int code = smtp_reply_is_positive(r) ? SY_OK : smtp_reply_is_permanent(r) ? SY_EPERM : SY_ETEMP;

    txn_set(x, i, code, smtp_reply_full(r));
}

/* txn_fail_rest - every recipient still without a result gets ours */
static void txn_fail_rest(struct client_txn *x, int code, const char *enh, const char *text)
{
    char line[TRANSPORT_REPLY_MAX];

    (void) snprintf(line, sizeof(line), "%s %s", enh, text);
    for (size_t i = 0; i < x->n; i++)
        txn_set(x, i, code, line);
}

/* txn_fail_err - the rest fail with err, always temporary unless err is 5.x.x */
static void txn_fail_err(struct client_txn *x, const struct sy_err *e)
{
    txn_fail_rest(x, sy_err_is_temp(e) ? SY_ETEMP : SY_EPERM, sy_err_enh(e), e->text);
}

/* txn_needs_utf8 - the SMTPUTF8 parameter, or a non-ASCII address */
static bool txn_needs_utf8(const struct envelope *env, const struct client_txn *x)
{
    if (env->flags & ENV_F_SMTPUTF8)
        return true;
    for (const char *p = env->sender; *p; p++)
        if ((unsigned char) *p >= 0x80)
            return true;
    for (size_t i = 0; i < x->n; i++)
        for (const char *p = env->rcpts[x->rcpts[i].idx].addr; *p; p++)
            if ((unsigned char) *p >= 0x80)
                return true;
    return false;
}

/* txn_policy - checks before MAIL (see client.h); SY_OK or all results set */
static int txn_policy(struct smtp_client *c, const struct transport_msg *msg, struct client_txn *x)
{
    const struct envelope *env = msg->env;
    const struct smtp_ehlo *caps = &c->caps;
    char t[256];

    if (!text_is_clean(env->sender, strlen(env->sender))) {
        txn_fail_rest(x, SY_EPERM, "5.1.7", "bad sender address syntax");
        return SY_EPERM;
    }
    if ((env->flags & ENV_F_8BIT) && !smtp_ehlo_has(caps, SMTP_EXT_8BITMIME) &&
        !smtp_ehlo_has(caps, SMTP_EXT_SMTPUTF8)) {
        (void) snprintf(t, sizeof(t), "8-bit message, but %s does not offer 8BITMIME "
                        "(switchyard does not downgrade to 7 bit)", c->cfg.host);
        txn_fail_rest(x, SY_EPERM, "5.6.3", t);
        return SY_EPERM;
    }
    if (txn_needs_utf8(env, x) && !smtp_ehlo_has(caps, SMTP_EXT_SMTPUTF8)) {
        (void) snprintf(t, sizeof(t), "the message needs SMTPUTF8, but %s does not offer it", c->cfg.host);
        txn_fail_rest(x, SY_EPERM, "5.6.7", t);
        return SY_EPERM;
    }
    if ((env->flags & ENV_F_REQUIRETLS) && (!c->verified || !smtp_ehlo_has(caps, SMTP_EXT_REQUIRETLS))) {
        (void) snprintf(t, sizeof(t), "REQUIRETLS: %s", !c->verified ? "no verified TLS to the next hop"
                                                                      : "the next hop does not offer REQUIRETLS");
        txn_fail_rest(x, SY_EPERM, "5.7.30", t);
        return SY_EPERM;
    }
    if (smtp_ehlo_size_max(caps) > 0 && msg->len > smtp_ehlo_size_max(caps)) {
        (void) snprintf(t, sizeof(t), "message size %llu exceeds the limit of %s (%llu)",
                        (unsigned long long) msg->len, c->cfg.host,
                        (unsigned long long) smtp_ehlo_size_max(caps));
        txn_fail_rest(x, SY_EPERM, "5.3.4", t);
        return SY_EPERM;
    }
    return SY_OK;
}

/* txn_mail_cmd - MAIL FROM with the parameters the server understands */
static int txn_mail_cmd(struct smtp_client *c, const struct transport_msg *msg, bool utf8, struct buf *b)
{
    const struct envelope *env = msg->env;
    const struct smtp_ehlo *caps = &c->caps;
    int rc = buf_printf(b, "MAIL FROM:<%s>", env->sender);

    if (rc == SY_OK && smtp_ehlo_has(caps, SMTP_EXT_SIZE))
        rc = buf_printf(b, " SIZE=%llu", (unsigned long long) msg->len);
    if (rc == SY_OK && smtp_ehlo_has(caps, SMTP_EXT_8BITMIME) &&
        ((env->flags & ENV_F_8BIT) || env->body == ENV_BODY_8BITMIME))
        rc = buf_append_str(b, " BODY=8BITMIME");
    if (rc == SY_OK && utf8)
        rc = buf_append_str(b, " SMTPUTF8");
    if (rc == SY_OK && smtp_ehlo_has(caps, SMTP_EXT_DSN) && env->ret != ENV_RET_UNSET)
        rc = buf_append_str(b, env->ret == ENV_RET_FULL ? " RET=FULL" : " RET=HDRS");
    if (rc == SY_OK && smtp_ehlo_has(caps, SMTP_EXT_DSN) && env->envid != NULL) {
        rc = buf_append_str(b, " ENVID=");
        if (rc == SY_OK)
            rc = smtp_xtext_append(b, env->envid);
    }
    if (rc == SY_OK && (env->flags & ENV_F_REQUIRETLS))
        rc = buf_append_str(b, " REQUIRETLS");
    if (rc == SY_OK)
        rc = buf_append_str(b, "\r\n");
    return rc;
}

/* txn_rcpt_cmd - RCPT TO with NOTIFY and ORCPT when the server has DSN */
static int txn_rcpt_cmd(const struct smtp_client *c, const struct env_rcpt *r, struct buf *b)
{
    int rc = buf_printf(b, "RCPT TO:<%s>", r->addr);

    if (rc == SY_OK && smtp_ehlo_has(&c->caps, SMTP_EXT_DSN) && r->notify != 0) {
        char nb[64];

        rc = buf_printf(b, " NOTIFY=%s", env_notify_str(r->notify, nb, sizeof(nb)));
    }
    if (rc == SY_OK && smtp_ehlo_has(&c->caps, SMTP_EXT_DSN) && r->orcpt_addr != NULL) {
        rc = buf_printf(b, " ORCPT=%s;", r->orcpt_type != NULL ? r->orcpt_type : "rfc822");
        if (rc == SY_OK)
            rc = smtp_xtext_append(b, r->orcpt_addr);
    }
    if (rc == SY_OK)
        rc = buf_append_str(b, "\r\n");
    return rc;
}

/* txn_data - stream the message, dot-stuffed, each write under the block timeout */
static int txn_data(struct smtp_client *c, const struct transport_msg *msg, struct sy_err *err)
{
    struct smtp_dotstuff ds;
    struct buf out;
    char *in = xmalloc(SMTP_CLIENT_CHUNK);
    uint64_t done = 0;
    int rc = SY_OK;

    smtp_dotstuff_init(&ds);
    buf_init(&out, 2 * SMTP_CLIENT_CHUNK);
    while (done < msg->len && rc == SY_OK) {
        size_t want = msg->len - done > SMTP_CLIENT_CHUNK ? SMTP_CLIENT_CHUNK : (size_t) (msg->len - done);
        ssize_t got = pread(msg->fd, in, want, (off_t) (msg->off + done));
        size_t used = 0;

        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            rc = sy_err_set(err, SY_ETEMP, "4.3.0", "cannot read the spooled message: %s",
                            got < 0 ? strerror(errno) : "file too short");
            break;
        }
        while (used < (size_t) got && rc == SY_OK) {
            used += smtp_dotstuff_feed(&ds, in + used, (size_t) got - used, &out);
            if (buf_room(&out) < SMTP_DOTSTUFF_EMIT_MAX || used == (size_t) got) {
                rc = smtp_conn_write(c->conn, buf_str(&out), buf_len(&out), client_deadline(c->cfg.data_block_timeout_ms), err);
                buf_reset(&out);
            }
        }
        done += (uint64_t) got;
    }
    if (rc == SY_OK) {
        rc = smtp_dotstuff_finish(&ds, &out);
        if (rc == SY_OK)
            rc = smtp_conn_write(c->conn, buf_str(&out), buf_len(&out), client_deadline(c->cfg.data_block_timeout_ms), err);
    }
    buf_free(&out);
    free(in);
    return rc;
}

/* txn_rcpts - send RCPTs from *next (pipelined in batches when allowed) and read
 * their replies; stops early after a 452 (too many recipients) */
static int txn_rcpts(struct smtp_client *c, const struct transport_msg *msg, struct client_txn *x,
                     bool pipelined_mail, bool *mail_ok, struct sy_err *err)
{
    bool pipe = smtp_ehlo_has(&c->caps, SMTP_EXT_PIPELINING);
    size_t i = 0;
    bool stop = false;
    struct buf b;
    int rc = SY_OK;

    buf_init(&b, SMTP_CLIENT_CMD_MAX * (SMTP_CLIENT_PIPELINE_MAX + 1));
    while (i < x->n && !stop) {
        size_t first = i, batch = pipe ? SMTP_CLIENT_PIPELINE_MAX : 1;
        bool with_mail = pipelined_mail && first == 0;

        buf_reset(&b);
        if (with_mail && (rc = txn_mail_cmd(c, msg, txn_needs_utf8(msg->env, x), &b)) != SY_OK)
            break;
        for (; i < x->n && i - first < batch; i++) {
            const struct env_rcpt *r = &msg->env->rcpts[x->rcpts[i].idx];

            x->sent[i] = false;
            if (!text_is_clean(r->addr, strlen(r->addr))) {
                txn_set(x, i, SY_EPERM, "5.1.3 bad recipient address syntax");
                continue;
            }
            if ((rc = txn_rcpt_cmd(c, r, &b)) != SY_OK)
                break;
            x->sent[i] = true;
        }
        if (rc != SY_OK)
            break;
        rc = smtp_conn_write(c->conn, buf_str(&b), buf_len(&b), client_deadline(c->cfg.command_timeout_ms), err);
        if (rc != SY_OK)
            break;
        if (with_mail) {
            rc = smtp_conn_read_reply(c->conn, &c->reply, client_deadline(c->cfg.command_timeout_ms), err);
            if (rc != SY_OK)
                break;
            *mail_ok = smtp_reply_is_positive(&c->reply);
            if (!*mail_ok)
                for (size_t k = 0; k < x->n; k++)
                    txn_set_reply(x, k, &c->reply);
        }
        for (size_t k = first; k < i; k++) {
            /* One reply per RCPT sent, also when MAIL was refused (its
             * results are set): the session stays in step. */
            if (!x->sent[k])
                continue;   /* not sent (bad syntax) */
            rc = smtp_conn_read_reply(c->conn, &c->reply, client_deadline(c->cfg.command_timeout_ms), err);
            if (rc != SY_OK)
                goto out;
            if (!*mail_ok)
                continue;
            txn_set_reply(x, k, &c->reply);
            if (smtp_reply_is_positive(&c->reply))
                x->accepted[k] = true;
            else if (smtp_reply_code(&c->reply) == 452 && !stop) {
                /* The peer's recipient limit, not this recipient: send it
                 * again in the next transaction when others got through. */
                x->rcpts[k].again = true;
                stop = true;
            } else if (smtp_reply_code(&c->reply) == 452) {
                x->rcpts[k].again = true;
            }
        }
        if (!*mail_ok)
            break;
    }
    if (stop) {
        /* RFC 5321 §4.5.3.1.10: the rest go in a later transaction */
        for (size_t k = 0; k < x->n; k++)
            if (!x->done[k])
                x->rcpts[k].again = true;
        txn_fail_rest(x, SY_ETEMP, "4.5.3", "too many recipients for one transaction: retried later");
    }
out:
    buf_free(&b);
    return rc == SY_ETOOBIG ? sy_err_set(err, SY_ETEMP, "4.3.0", "command too long") : rc;
}

int smtp_client_send(struct smtp_client *c, const struct transport_msg *msg,
                     struct transport_rcpt *rcpts, size_t n, struct sy_err *err)
{
    struct client_txn x = { .rcpts = rcpts, .n = n, .dsn = smtp_ehlo_has(&c->caps, SMTP_EXT_DSN) };
    bool mail_ok = true, any = false;
    size_t naccepted = 0;
    int rc;

    x.done = xcalloc(n, sizeof(bool));
    x.accepted = xcalloc(n, sizeof(bool));
    x.sent = xcalloc(n, sizeof(bool));
    for (size_t i = 0; i < n; i++) {
        rcpts[i].code = SY_ETEMP;
        rcpts[i].reply[0] = '\0';
        rcpts[i].relayed = false;
        rcpts[i].again = false;
    }
    if (txn_policy(c, msg, &x) != SY_OK) {
        rc = SY_OK;     /* nothing was sent: the session stays usable */
        goto out;
    }
    if (smtp_ehlo_has(&c->caps, SMTP_EXT_PIPELINING)) {
        rc = txn_rcpts(c, msg, &x, true, &mail_ok, err);
    } else {
        struct buf b;

        buf_init(&b, SMTP_CLIENT_CMD_MAX);
        rc = txn_mail_cmd(c, msg, txn_needs_utf8(msg->env, &x), &b);
        if (rc == SY_OK)
            rc = smtp_conn_write(c->conn, buf_str(&b), buf_len(&b), client_deadline(c->cfg.command_timeout_ms), err);
        else
            rc = sy_err_set(err, SY_ETEMP, "4.3.0", "MAIL command too long");
        buf_free(&b);
        if (rc == SY_OK)
            rc = smtp_conn_read_reply(c->conn, &c->reply, client_deadline(c->cfg.command_timeout_ms), err);
        if (rc == SY_OK) {
            mail_ok = smtp_reply_is_positive(&c->reply);
            if (!mail_ok)
                for (size_t k = 0; k < n; k++)
                    txn_set_reply(&x, k, &c->reply);
            else
                rc = txn_rcpts(c, msg, &x, false, &mail_ok, err);
        }
    }
    if (rc != SY_OK) {
        txn_fail_err(&x, err);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        naccepted += x.accepted[i];
    if (!mail_ok || naccepted == 0)
        goto out;       /* no DATA without an accepted recipient */
    for (size_t i = 0; i < n; i++)
        if (x.accepted[i])
            x.done[i] = false;     /* from here on, DATA and the data's reply decide */
    rc = client_cmd(c, "DATA", c->cfg.data_timeout_ms, err);
    if (rc != SY_OK) {
        txn_fail_err(&x, err);
        goto out;
    }
    if (smtp_reply_code(&c->reply) != 354) {
        for (size_t i = 0; i < n; i++)
            if (x.accepted[i]) {
                if (smtp_reply_is_positive(&c->reply))   /* a 2xx here is a protocol error */
                    txn_set(&x, i, SY_ETEMP, "4.5.0 unexpected reply to DATA");
                else
                    txn_set_reply(&x, i, &c->reply);
            }
        goto out;
    }
    rc = txn_data(c, msg, err);
    if (rc != SY_OK) {
        txn_fail_err(&x, err);
        goto out;
    }
    for (size_t i = 0; i < n && rc == SY_OK; i++) {
        if (!x.accepted[i] || (any && !c->cfg.lmtp)) {
            if (x.accepted[i])
                txn_set_reply(&x, i, &c->reply);
            continue;
        }
        rc = smtp_conn_read_reply(c->conn, &c->reply, client_deadline(c->cfg.data_done_timeout_ms), err);
        if (rc != SY_OK)
            break;
        any = true;
        txn_set_reply(&x, i, &c->reply);
    }
    if (rc != SY_OK) {
        /* The server may have the message: a duplicate beats a loss (RFC 1047). */
        struct sy_err e2;

        (void) sy_err_set(&e2, SY_ETEMP, "4.4.2", "connection lost after the end of data (%s): "
                          "the message may arrive twice", err != NULL ? err->text : "");
        txn_fail_err(&x, &e2);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (rcpts[i].code == SY_OK && !x.dsn && !c->cfg.lmtp &&
            (msg->env->rcpts[rcpts[i].idx].notify & ENV_NOTIFY_SUCCESS))
            rcpts[i].relayed = true;
out:
    /* an unset result is a bug in this file; never leave one behind */
    txn_fail_rest(&x, SY_ETEMP, "4.3.0", "internal error: no result");
    free(x.done);
    free(x.accepted);
    free(x.sent);
    return rc;
}
