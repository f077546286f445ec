/* milter.c - libmilter callbacks -> intake (see milter.h)
 *
 * Lifecycle as in OpenDKIM: xxfi_connect allocates a struct milter_conn
 * (smfi_setpriv); MAIL starts the per-message part (struct milter_msg),
 * which end of message and abort reset; close frees the connection. A
 * connection reused after QUIT_NC (or a second xxfi_connect without close)
 * starts from a fresh struct.
 *
 * Every callback goes through milter_enter()/milter_leave(): while the
 * server stops, callbacks answer TEMPFAIL without touching intake, and
 * milter_server_stop() waits until no callback is inside.
 */
#include "milter/milter.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

#include "gateway/util/buf.h"
#include "gateway/util/clock.h"
#include "gateway/util/log.h"
#include "gateway/util/text.h"
#include "gateway/util/xalloc.h"
#include "milter/milter_msg.h"
#include "rules/route.h"

/* Bytes collected before they go to the spool writer. */
#define MILTER_CHUNK_MAX ((size_t) 65536)
/* A macro value we keep ({i}, {auth_authen}, ...): longer ones are dropped. */
#define MILTER_MACRO_MAX ((size_t) 255)
/* libmilter's largest packet: 1 MB (SMFI_MDS_1M), so a header up to
 * Postfix's header_size_limit arrives whole and our own limit decides. */
#define MILTER_MAX_DATA ((size_t) 1048575)
/* On stop, callbacks in progress get this long to finish (a commit is
 * bounded by the Redis command timeout). */
#define MILTER_STOP_WAIT_MS ((int64_t) 30000)
/* Test hook: with this variable set, the process dies right after a
 * capture commit, before the reply (tests/integration/test_milter_postfix.py). */
#define MILTER_TEST_CRASH_ENV "SWITCHYARD_TEST_MILTER_CRASH_AFTER_COMMIT"

struct milter_msg {
    struct envelope env;            /* sender; recipients we act on */
    char **rcpt_args;               /* captured recipients as the MTA wrote them (smfi_delrcpt) */
    size_t nrcpt_args;
    size_t nrcpt_seen;              /* every accepted RCPT, captured or not */
    bool mail_seen;
    bool skip;                      /* not ours: the MTA keeps the message */
    struct intake_txn *txn;
    bool eoh_done;
    bool trace_done;                /* a Received field for the MTA's hop is there */
    unsigned nheaders;
    uint64_t size;
    struct milter_eol eol;
    struct buf chunk;               /* bytes not yet written to txn */
    bool failed;                    /* a reply is pending in fail_* */
    char fail_code[4], fail_enh[12], fail_text[200];
};

struct milter_conn {
    struct milter_server *srv;
    struct milter_conn *prev, *next;    /* the server's live connections */
    char *client_name, *client_addr, *daemon_name;
    char *mta_host;                 /* {j}: the MTA's host name, or NULL */
    int leadspc;                    /* SMFIP_HDR_LEADSPC negotiated: 1, not: 0, unknown: -1 */
    struct milter_msg msg;
};

struct milter_server {
    const struct config *cfg;
    const struct cfg_milter_listener *l;
    struct intake *in;
    pthread_t thread;
    bool started;
    bool crash_after_commit;
};

/* libmilter is process-wide, so is the server it calls back into. */
static pthread_mutex_t milter_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t milter_idle = PTHREAD_COND_INITIALIZER;
static struct milter_server *milter_g;     /* NULL: none, or stopping */
static unsigned milter_busy;                /* callbacks inside */
static struct milter_conn *milter_conns;    /* live connections */
static bool milter_stopping;

/* ---- guards ---------------------------------------------------------------- */

static struct milter_server *milter_enter(void)
{
    struct milter_server *s;

    pthread_mutex_lock(&milter_lock);
    s = milter_stopping ? NULL : milter_g;
    if (s != NULL)
        milter_busy++;
    pthread_mutex_unlock(&milter_lock);
    return s;
}

static void milter_leave(void)
{
    pthread_mutex_lock(&milter_lock);
    if (--milter_busy == 0)
        pthread_cond_broadcast(&milter_idle);
    pthread_mutex_unlock(&milter_lock);
}

/* ---- per-message state ------------------------------------------------------ */

static void milter_msg_init(struct milter_msg *m)
{
    memset(m, 0, sizeof(*m));
    env_init(&m->env);
    milter_eol_init(&m->eol);
    buf_init(&m->chunk, MILTER_CHUNK_MAX + 4096);
}

/* milter_msg_reset - end the message: abort a transaction, free all of it,
 * keep nothing of the message (the connection facts live in milter_conn) */
static void milter_msg_reset(struct milter_msg *m)
{
    intake_abort(m->txn);
    m->txn = NULL;
    env_free(&m->env);
    for (size_t i = 0; i < m->nrcpt_args; i++)
        free(m->rcpt_args[i]);
    free(m->rcpt_args);
    buf_free(&m->chunk);
    milter_msg_init(m);
}

static void milter_conn_free(struct milter_conn *c)
{
    struct intake_txn *txn;

    if (c == NULL)
        return;
    /* Unlinked and its transaction taken under the lock: a stopping
     * server aborts the transactions of the linked connections. */
    pthread_mutex_lock(&milter_lock);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else if (milter_conns == c)
        milter_conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    txn = c->msg.txn;
    c->msg.txn = NULL;
    pthread_mutex_unlock(&milter_lock);
    intake_abort(txn);
    milter_msg_reset(&c->msg);
    buf_free(&c->msg.chunk);
    free(c->client_name);
    free(c->client_addr);
    free(c->daemon_name);
    free(c->mta_host);
    free(c);
}

/* milter_macro - a macro's value when present, short and clean, else NULL */
static const char *milter_macro(SMFICTX *ctx, const char *name)
{
    const char *v = smfi_getsymval(ctx, (char *) (uintptr_t) name);

    if (v == NULL || v[0] == '\0' || strlen(v) > MILTER_MACRO_MAX || !text_is_clean(v, strlen(v)))
        return NULL;
    return v;
}

/* milter_fail - remember a refusal; the reply goes out with the return code */
static void milter_fail(struct milter_msg *m, const char *code, const char *enh, const char *text)
{
    m->failed = true;
    (void) snprintf(m->fail_code, sizeof(m->fail_code), "%s", code);
    (void) snprintf(m->fail_enh, sizeof(m->fail_enh), "%s", enh);
    (void) snprintf(m->fail_text, sizeof(m->fail_text), "%s", text);
    /* Reply text goes to the client: one line, no '%' (libmilter formats). */
    for (char *p = m->fail_text; *p != '\0'; p++)
        if ((unsigned char) *p < 0x20 || *p == '%' || (unsigned char) *p >= 0x7f)
            *p = '?';
    intake_abort(m->txn);
    m->txn = NULL;
}

/* milter_reply - send the pending refusal: REJECT for 5xx, TEMPFAIL for 4xx */
static sfsistat milter_reply(SMFICTX *ctx, struct milter_msg *m)
{
    (void) smfi_setreply(ctx, m->fail_code, m->fail_enh, m->fail_text);
    return m->fail_code[0] == '5' ? SMFIS_REJECT : SMFIS_TEMPFAIL;
}

static sfsistat milter_tempfail(SMFICTX *ctx, const char *text)
{
    (void) smfi_setreply(ctx, "451", "4.3.0", (char *) (uintptr_t) text);
    return SMFIS_TEMPFAIL;
}

/* milter_set_qid - {i} once the MTA has it (Postfix: from RCPT on) */
static void milter_set_qid(SMFICTX *ctx, struct milter_msg *m)
{
    const char *i = milter_macro(ctx, "i");

    if (i != NULL && m->env.mta_qid == NULL)
        env_set(&m->env.mta_qid, i);
}

/* milter_flush - write collected bytes to the transaction */
static int milter_flush(struct milter_msg *m)
{
    struct sy_err err;

    if (buf_len(&m->chunk) == 0)
        return SY_OK;
    if (intake_write(m->txn, buf_str(&m->chunk), buf_len(&m->chunk), &err) != SY_OK) {
        milter_fail(m, "451", "4.3.0", err.text[0] != '\0' ? err.text : "queue file write error");
        return SY_EIO;
    }
    buf_reset(&m->chunk);
    return SY_OK;
}

/* milter_begin - the transaction, begun at the first message byte */
static int milter_begin(struct milter_server *s, SMFICTX *ctx, struct milter_conn *c)
{
    struct milter_msg *m = &c->msg;
    struct sy_err err;

    if (m->txn != NULL)
        return SY_OK;
    milter_set_qid(ctx, m);
    m->txn = intake_begin(s->in, &m->env, &err);
    if (m->txn == NULL) {
        milter_fail(m, "451", "4.3.0", err.text[0] != '\0' ? err.text : "queue file write error");
        return SY_EIO;
    }
    return SY_OK;
}

/* milter_trace - the Received field for the hop client -> MTA (RFC 5321
 * §4.4), unless the MTA passed its own (Sendmail does, Postfix does not).
 * It goes to intake outside the duplicate digest: a retry has another
 * time and MTA queue id. */
static int milter_trace(struct milter_server *s, struct milter_conn *c)
{
    struct milter_msg *m = &c->msg;
    char date[64];
    struct buf t;
    struct sy_err err;
    struct tm tm;
    time_t now = time(NULL);
    int rc;

    if (m->trace_done)
        return SY_OK;
    m->trace_done = true;
    (void) gmtime_r(&now, &tm);
    (void) strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    buf_init(&t, 2048);
    (void) buf_printf(&t, "Received: from %s (%s)\r\n\tby %s (switchyard milter %s)",
                      c->client_name != NULL ? c->client_name : "unknown",
                      c->client_addr != NULL ? c->client_addr : "unknown",
                      c->mta_host != NULL ? c->mta_host : s->cfg->node, s->l->name);
    if (m->env.mta_qid != NULL)
        (void) buf_printf(&t, " id %s", m->env.mta_qid);
    (void) buf_printf(&t, ";\r\n\t%s\r\n", date);
    m->size += buf_len(&t);
    rc = milter_flush(m);
    if (rc == SY_OK) {
        rc = intake_write_trace(m->txn, buf_str(&t), buf_len(&t), &err);
        if (rc != SY_OK)
            milter_fail(m, "451", "4.3.0", err.text);
    }
    milter_eol_note(&m->eol, (const unsigned char *) buf_str(&t), buf_len(&t));
    buf_free(&t);
    return rc;
}

/* milter_capturing - a capture-mode message with captured recipients, no refusal */
static bool milter_capturing(const struct milter_server *s, const struct milter_msg *m)
{
    return s->l->mode == CFG_MILTER_CAPTURE && m->mail_seen && !m->skip && !m->failed &&
           m->env.nrcpt > 0;
}

/* milter_eoh_write - the empty line between header and body, once */
static int milter_eoh_write(struct milter_msg *m)
{
    if (m->eoh_done)
        return SY_OK;
    m->eoh_done = true;
    if (buf_append(&m->chunk, "\r\n", 2) != SY_OK)
        return SY_ETOOBIG;
    milter_eol_note(&m->eol, (const unsigned char *) "\r\n", 2);
    m->size += 2;
    return SY_OK;
}

/* milter_conn_get - the connection's state, created on first use
 * (negotiate, or connect after a QUIT_NC reuse, or MAIL when the MTA
 * skipped connect) */
static struct milter_conn *milter_conn_get(SMFICTX *ctx, struct milter_server *s)
{
    struct milter_conn *c = smfi_getpriv(ctx);

    if (c != NULL)
        return c;
    c = xcalloc(1, sizeof(*c));
    c->srv = s;
    c->leadspc = -1;
    milter_msg_init(&c->msg);
    pthread_mutex_lock(&milter_lock);
    c->next = milter_conns;
    if (milter_conns != NULL)
        milter_conns->prev = c;
    milter_conns = c;
    pthread_mutex_unlock(&milter_lock);
    if (smfi_setpriv(ctx, c) != MI_SUCCESS) {
        milter_conn_free(c);
        return NULL;
    }
    return c;
}

/* ---- callbacks ------------------------------------------------------------------ */

static sfsistat milter_cb_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *hostaddr)
{
    struct milter_server *s = milter_enter();
    struct milter_conn *c;
    const char *v;

    if (s == NULL)
        return SMFIS_TEMPFAIL;
    /* A connect without close: start clean, but keep what negotiation said. */
    c = milter_conn_get(ctx, s);
    if (c == NULL) {
        milter_leave();
        return SMFIS_TEMPFAIL;
    }
    milter_msg_reset(&c->msg);
    free(c->client_name);
    free(c->client_addr);
    free(c->daemon_name);
    free(c->mta_host);
    c->client_name = c->client_addr = c->daemon_name = c->mta_host = NULL;
    v = milter_macro(ctx, "{client_name}");
    if (v == NULL && hostname != NULL && hostname[0] != '\0' && strlen(hostname) <= MILTER_MACRO_MAX &&
        text_is_clean(hostname, strlen(hostname)))
        v = hostname;
    env_set(&c->client_name, v);
    v = milter_macro(ctx, "{client_addr}");
    if (v != NULL) {
        env_set(&c->client_addr, v);
    } else if (hostaddr != NULL) {
        char a[INET6_ADDRSTRLEN] = "";

        if (hostaddr->sa_family == AF_INET)
            (void) inet_ntop(AF_INET, &((struct sockaddr_in *) (void *) hostaddr)->sin_addr, a, sizeof(a));
        else if (hostaddr->sa_family == AF_INET6)
            (void) inet_ntop(AF_INET6, &((struct sockaddr_in6 *) (void *) hostaddr)->sin6_addr, a, sizeof(a));
        else if (hostaddr->sa_family == AF_UNIX)
            (void) snprintf(a, sizeof(a), "unix");
        if (a[0] != '\0')
            env_set(&c->client_addr, a);
    }
    env_set(&c->daemon_name, milter_macro(ctx, "{daemon_name}"));
    env_set(&c->mta_host, milter_macro(ctx, "j"));
    milter_leave();
    return SMFIS_CONTINUE;
}

static sfsistat milter_cb_envfrom(SMFICTX *ctx, char **argv)
{
    struct milter_server *s = milter_enter();
    struct milter_conn *c;
    struct milter_msg *m;
    struct sy_err err;
    sfsistat r = SMFIS_CONTINUE;

    if (s == NULL)
        return SMFIS_TEMPFAIL;
    c = milter_conn_get(ctx, s);
    if (c == NULL) {
        milter_leave();
        return SMFIS_TEMPFAIL;
    }
    m = &c->msg;
    milter_msg_reset(m);            /* a new MAIL ends whatever came before */
    m->mail_seen = true;
    env_set(&m->env.listener, s->l->name);
    env_set(&m->env.client_name, c->client_name);
    env_set(&m->env.client_addr, c->client_addr);
    env_set(&m->env.auth_user, milter_macro(ctx, "{auth_authen}"));
    milter_set_qid(ctx, m);
    if (milter_parse_mail(argv, &m->env, &err) != SY_OK) {
        char a[LOG_SAFE_MAX];

        /* The MTA accepted this sender; we cannot represent it: leave the
         * message to the MTA. */
        log_warn(NULL, "milter %s: MAIL %s not usable (%s): the message stays with the MTA",
                 s->l->name, log_safe(a, sizeof(a), argv != NULL ? argv[0] : NULL), err.text);
        m->skip = true;
        milter_leave();
        return SMFIS_ACCEPT;
    }
    /* Size and spool room are checked per captured recipient (RCPT): a
     * recipient the MTA keeps is none of our business. */
    milter_leave();
    return r;
}

static sfsistat milter_cb_envrcpt(SMFICTX *ctx, char **argv)
{
    struct milter_server *s = milter_enter();
    struct milter_conn *c;
    struct milter_msg *m;
    struct env_rcpt rc;
    struct sy_err err;
    sfsistat r = SMFIS_CONTINUE;
    bool capture;

    if (s == NULL)
        return SMFIS_TEMPFAIL;
    c = smfi_getpriv(ctx);
    if (c == NULL || !c->msg.mail_seen || c->msg.skip) {
        milter_leave();
        return SMFIS_CONTINUE;
    }
    m = &c->msg;
    milter_set_qid(ctx, m);
    memset(&rc, 0, sizeof(rc));
    if (milter_parse_rcpt(argv, (m->env.flags & ENV_F_SMTPUTF8) != 0, &rc, &err) != SY_OK) {
        char a[LOG_SAFE_MAX];

        /* Not ours to judge: the MTA delivers this one. */
        log_warn(NULL, "milter %s: RCPT %s not usable (%s): left to the MTA", s->l->name,
                 log_safe(a, sizeof(a), argv != NULL ? argv[0] : NULL), err.text);
        m->nrcpt_seen++;
        milter_leave();
        return SMFIS_CONTINUE;
    }
    capture = s->l->mode == CFG_MILTER_POLICY || milter_capture_match(s->l, rc.addr);
    if (capture && intake_check_rcpt(s->in, &m->env, &rc, &err) != SY_OK) {
        if (sy_err_enh(&err)[0] == '5') {
            (void) smfi_setreply(ctx, "550", "5.1.1", s->l->reject_text);
            r = SMFIS_REJECT;
        } else {
            r = milter_tempfail(ctx, "Recipient check failed, try again later");
        }
        env_rcpt_free(&rc);
        milter_leave();
        return r;
    }
    if (capture && s->l->mode == CFG_MILTER_CAPTURE) {
        const char *code = NULL, *enh = NULL, *text = NULL;

        if (m->env.nrcpt >= s->cfg->lmtp.recipient_limit) {
            code = "452", enh = "4.5.3", text = "Too many recipients";
        } else if (m->env.size_declared > s->cfg->milter.message_size_limit) {
            code = "552", enh = "5.3.4", text = "Message size exceeds fixed limit";
        } else if (intake_check_mail(s->in, &m->env, m->env.size_declared, &err) != SY_OK) {
            code = strcmp(sy_err_enh(&err), "4.3.1") == 0 ? "452" : "451";
            enh = sy_err_enh(&err)[0] == '4' ? sy_err_enh(&err) : "4.3.0";
            text = "Insufficient system storage";
        }
        if (code != NULL) {
            /* This recipient only: the others go on. */
            (void) smfi_setreply(ctx, (char *) (uintptr_t) code, (char *) (uintptr_t) enh,
                                 (char *) (uintptr_t) text);
            env_rcpt_free(&rc);
            milter_leave();
            return code[0] == '5' ? SMFIS_REJECT : SMFIS_TEMPFAIL;
        }
    }
    m->nrcpt_seen++;
    if (capture) {
        env_add_rcpt(&m->env, &rc);
        if (s->l->mode == CFG_MILTER_CAPTURE) {
            m->rcpt_args = xrealloc(m->rcpt_args, (m->nrcpt_args + 1) * sizeof(*m->rcpt_args));
            m->rcpt_args[m->nrcpt_args++] = xstrdup(argv[0]);
        }
    } else {
        env_rcpt_free(&rc);
    }
    milter_leave();
    return r;
}

static sfsistat milter_cb_header(SMFICTX *ctx, char *name, char *value)
{
    struct milter_server *s = milter_enter();
    struct milter_conn *c;
    struct milter_msg *m;
    struct buf line;
    sfsistat r = SMFIS_CONTINUE;
    struct sy_err err;
    int rc;

    if (s == NULL)
        return SMFIS_TEMPFAIL;
    c = smfi_getpriv(ctx);
    if (c == NULL || name == NULL || value == NULL || !milter_capturing(s, &c->msg)) {
        milter_leave();
        return SMFIS_CONTINUE;
    }
    m = &c->msg;
    if (++m->nheaders > s->cfg->milter.max_headers) {
        milter_fail(m, "552", "5.3.4", "Too many header fields");
        r = milter_reply(ctx, m);
        milter_leave();
        return r;
    }
    if (milter_begin(s, ctx, c) != SY_OK) {
        r = milter_reply(ctx, m);
        milter_leave();
        return r;
    }
    buf_init(&line, s->cfg->milter.header_size_limit + 2);
    rc = m->eoh_done ? SY_ESYNTAX : milter_header_line(&line, name, value, c->leadspc != 0);
    if (rc != SY_OK) {
        buf_free(&line);
        if (rc == SY_ETOOBIG)
            milter_fail(m, "552", "5.3.4", "Header field too long");
        else
            milter_fail(m, "550", "5.6.0", "Malformed header field");
        r = milter_reply(ctx, m);
        milter_leave();
        return r;
    }
    m->size += buf_len(&line);
    if (m->size > s->cfg->milter.message_size_limit) {
        buf_free(&line);
        milter_fail(m, "552", "5.3.4", "Message size exceeds fixed limit");
        r = milter_reply(ctx, m);
        milter_leave();
        return r;
    }
    if (!m->trace_done && milter_is_own_trace(name, value, m->env.mta_qid))
        m->trace_done = true;
    if (milter_trace(s, c) != SY_OK) {
        buf_free(&line);
        r = milter_reply(ctx, m);
        milter_leave();
        return r;
    }
    milter_eol_note(&m->eol, (const unsigned char *) buf_str(&line), buf_len(&line));
    if (milter_is_own_trace(name, value, m->env.mta_qid)) {
        /* The MTA's own Received field: a retry has a new id and time. */
        if (milter_flush(m) != SY_OK ||
            intake_write_trace(m->txn, buf_str(&line), buf_len(&line), &err) != SY_OK) {
            if (!m->failed)
                milter_fail(m, "451", "4.3.0", err.text);
            r = milter_reply(ctx, m);
        }
    } else if (buf_len(&m->chunk) + buf_len(&line) > MILTER_CHUNK_MAX) {
        if (milter_flush(m) != SY_OK ||
            intake_write(m->txn, buf_str(&line), buf_len(&line), &err) != SY_OK) {
            if (!m->failed)
                milter_fail(m, "451", "4.3.0", err.text);
            r = milter_reply(ctx, m);
        }
    } else {
        (void) buf_append(&m->chunk, buf_str(&line), buf_len(&line));
    }
    buf_free(&line);
    milter_leave();
    return r;
}

static sfsistat milter_cb_eoh(SMFICTX *ctx)
{
    struct milter_server *s = milter_enter();
    struct milter_conn *c;
    sfsistat r = SMFIS_CONTINUE;

    if (s == NULL)
        return SMFIS_TEMPFAIL;
    c = smfi_getpriv(ctx);
    if (c != NULL && milter_capturing(s, &c->msg)) {
        if (milter_begin(s, ctx, c) != SY_OK || milter_trace(s, c) != SY_OK)
            r = milter_reply(ctx, &c->msg);
        else
            (void) milter_eoh_write(&c->msg);
    }
    milter_leave();
    return r;
}

static sfsistat milter_cb_body(SMFICTX *ctx, unsigned char *p, size_t n)
{
    struct milter_server *s = milter_enter();
    struct milter_conn *c;
    struct milter_msg *m;
    sfsistat r = SMFIS_CONTINUE;

    if (s == NULL)
        return SMFIS_TEMPFAIL;
    c = smfi_getpriv(ctx);
    if (c == NULL || p == NULL || !milter_capturing(s, &c->msg)) {
        milter_leave();
        return SMFIS_CONTINUE;
    }
    m = &c->msg;
    if (milter_begin(s, ctx, c) != SY_OK || milter_trace(s, c) != SY_OK) {
        r = milter_reply(ctx, m);
        milter_leave();
        return r;
    }
    (void) milter_eoh_write(m);
    m->size += n;
    if (m->size > s->cfg->milter.message_size_limit) {
        milter_fail(m, "552", "5.3.4", "Message size exceeds fixed limit");
        r = milter_reply(ctx, m);
        milter_leave();
        return r;
    }
    /* Chunk by chunk into the buffer (bounded), flushing as it fills. */
    while (n > 0 && !m->failed) {
        size_t take = n > MILTER_CHUNK_MAX / 2 ? MILTER_CHUNK_MAX / 2 : n;

        if (buf_len(&m->chunk) > MILTER_CHUNK_MAX / 2 && milter_flush(m) != SY_OK)
            break;
        if (milter_body_crlf(&m->eol, p, take, &m->chunk) != SY_OK) {
            milter_fail(m, "451", "4.3.0", "internal buffer overflow");
            break;
        }
        p += take;
        n -= take;
    }
    if (m->failed)
        r = milter_reply(ctx, m);
    milter_leave();
    return r;
}

/* milter_eom_capture - commit, then tell the MTA what to drop */
static sfsistat milter_eom_capture(struct milter_server *s, SMFICTX *ctx, struct milter_conn *c)
{
    struct milter_msg *m = &c->msg;
    char qid[QID_SIZE], mta[LOG_SAFE_MAX];
    struct sy_err err;
    bool all;
    int rc;

    if (m->failed)
        return milter_reply(ctx, m);
    if (!milter_capturing(s, m))
        return SMFIS_CONTINUE;
    all = m->nrcpt_args == m->nrcpt_seen;
    if (milter_begin(s, ctx, c) != SY_OK || milter_trace(s, c) != SY_OK)
        return milter_reply(ctx, m);
    milter_set_qid(ctx, m);
    (void) milter_eoh_write(m);
    if (!milter_eol_at_line_start(&m->eol))
        (void) buf_append(&m->chunk, "\r\n", 2);
    if (milter_flush(m) != SY_OK)
        return milter_reply(ctx, m);
    rc = intake_commit(m->txn, qid, &err);
    m->txn = NULL;
    if (rc != SY_OK) {
        log_error(NULL, "milter %s: mta_qid=%s: commit failed, the MTA keeps the message: %s",
                  s->l->name, log_safe(mta, sizeof(mta), m->env.mta_qid), err.text);
        return milter_tempfail(ctx, "Error: queue file write error, try again later");
    }
    if (s->crash_after_commit) {
        log_warn(qid, "%s is set: dying between commit and reply", MILTER_TEST_CRASH_ENV);
        (void) raise(SIGKILL);
    }
    log_info(qid, "milter %s: captured %zu of %zu recipient(s), mta_qid=%s, daemon=%s: %s",
             s->l->name, m->nrcpt_args, m->nrcpt_seen, log_safe(mta, sizeof(mta), m->env.mta_qid),
             c->daemon_name != NULL ? c->daemon_name : "-", all ? "discard" : "delrcpt");
    if (all)
        return SMFIS_DISCARD;
    for (size_t i = 0; i < m->nrcpt_args; i++)
        if (smfi_delrcpt(ctx, m->rcpt_args[i]) != MI_SUCCESS) {
            /* Only when the MTA refused DELRCPT at negotiation, which the
             * negotiation excludes: the MTA would deliver a second copy. */
            log_error(qid, "milter %s: smfi_delrcpt failed: recipient may be delivered twice",
                      s->l->name);
        }
    /* CONTINUE at end of message accepts it, like ACCEPT, but leaves
     * libmilter's state machine where a QUIT_NC may follow (after ACCEPT
     * or DISCARD libmilter ignores one). */
    return SMFIS_CONTINUE;
}

/* milter_eom_policy - hold rule, headers */
static sfsistat milter_eom_policy(struct milter_server *s, SMFICTX *ctx, struct milter_conn *c)
{
    const struct cfg_milter_listener *l = s->l;
    struct milter_msg *m = &c->msg;
    char mta[LOG_SAFE_MAX], reason[64];
    struct sy_err err;
    uint64_t rule = 0;

    if (!m->mail_seen || m->skip || m->env.nrcpt == 0)
        return SMFIS_CONTINUE;
    milter_set_qid(ctx, m);
    if (intake_hold_check(s->in, &m->env, &rule, &err) != SY_OK) {
        log_error(NULL, "milter %s: mta_qid=%s: hold rules unreadable: %s", l->name,
                  log_safe(mta, sizeof(mta), m->env.mta_qid), err.text);
        return milter_tempfail(ctx, "Policy check failed, try again later");
    }
    if (l->route_header != NULL) {
        struct buf v;

        buf_init(&v, 998);
        for (size_t i = 0; i < m->env.nrcpt; i++) {
            struct route_facts f = { m->env.sender, m->env.rcpts[i].addr, 0, l->name,
                                     m->env.auth_user };
            const char *t = route_select(s->cfg->routes, &f, NULL);
            bool seen = false;
            const char *h = buf_str(&v);
            size_t tn = strlen(t);

            /* Distinct names only; never the addresses (Bcc). */
            for (const char *p = h; (p = strstr(p, t)) != NULL; p += tn)
                if ((p == h || p[-1] == ' ') && (p[tn] == ',' || p[tn] == '\0'))
                    seen = true;
            if (!seen)
                (void) buf_printf(&v, "%s%s", buf_len(&v) > 0 ? ", " : "", t);
        }
        if (smfi_addheader(ctx, l->route_header, (char *) (uintptr_t) buf_str(&v)) != MI_SUCCESS)
            log_warn(NULL, "milter %s: cannot add %s", l->name, l->route_header);
        buf_free(&v);
    }
    if (rule == 0)
        return SMFIS_CONTINUE;
    (void) snprintf(reason, sizeof(reason), "switchyard hold rule %llu", (unsigned long long) rule);
    if (l->hold_header != NULL) {
        char hv[32];

        (void) snprintf(hv, sizeof(hv), "%llu", (unsigned long long) rule);
        if (smfi_addheader(ctx, l->hold_header, hv) != MI_SUCCESS)
            log_warn(NULL, "milter %s: cannot add %s", l->name, l->hold_header);
    }
    if (smfi_quarantine(ctx, reason) != MI_SUCCESS) {
        log_error(NULL, "milter %s: mta_qid=%s: quarantine refused by the MTA", l->name,
                  log_safe(mta, sizeof(mta), m->env.mta_qid));
        return milter_tempfail(ctx, "Policy hold failed, try again later");
    }
    log_info(NULL, "milter %s: mta_qid=%s: held in the MTA by hold rule %llu", l->name,
             log_safe(mta, sizeof(mta), m->env.mta_qid), (unsigned long long) rule);
    return SMFIS_CONTINUE;
}

static sfsistat milter_cb_eom(SMFICTX *ctx)
{
    struct milter_server *s = milter_enter();
    struct milter_conn *c;
    sfsistat r = SMFIS_CONTINUE;

    if (s == NULL)
        return SMFIS_TEMPFAIL;
    c = smfi_getpriv(ctx);
    if (c != NULL) {
        r = s->l->mode == CFG_MILTER_CAPTURE ? milter_eom_capture(s, ctx, c)
                                             : milter_eom_policy(s, ctx, c);
        milter_msg_reset(&c->msg);
    }
    milter_leave();
    return r;
}

static sfsistat milter_cb_abort(SMFICTX *ctx)
{
    struct milter_server *s = milter_enter();
    struct milter_conn *c;

    if (s == NULL)
        return SMFIS_CONTINUE;
    c = smfi_getpriv(ctx);
    if (c != NULL)
        milter_msg_reset(&c->msg);
    milter_leave();
    return SMFIS_CONTINUE;
}

static sfsistat milter_cb_close(SMFICTX *ctx)
{
    struct milter_conn *c = smfi_getpriv(ctx);
    struct milter_server *s;

    if (c == NULL)
        return SMFIS_CONTINUE;
    (void) smfi_setpriv(ctx, NULL);
    s = milter_enter();
    if (s == NULL) {
        /* Stopped: milter_server_stop() aborted the transaction already. */
        milter_conn_free(c);
        return SMFIS_CONTINUE;
    }
    milter_conn_free(c);
    milter_leave();
    return SMFIS_CONTINUE;
}

static sfsistat milter_cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                                    unsigned long f2, unsigned long f3, unsigned long *pf0,
                                    unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
    struct milter_server *s = milter_enter();
    unsigned long act, proto;

    (void) f2;
    (void) f3;
    if (s == NULL)
        return SMFIS_REJECT;
    if (s->l->mode == CFG_MILTER_CAPTURE) {
        act = SMFIF_DELRCPT;
        proto = SMFIP_NOHELO | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_HDR_LEADSPC;
        if ((f0 & SMFIF_DELRCPT) == 0 &&
            (s->l->ncapture_domains > 0 || s->l->ncapture_addresses > 0)) {
            log_error(NULL, "milter %s: the MTA does not allow removing recipients: partial capture "
                      "impossible", s->l->name);
            milter_leave();
            return SMFIS_REJECT;
        }
    } else {
        act = SMFIF_QUARANTINE;
        if (s->l->route_header != NULL || s->l->hold_header != NULL)
            act |= SMFIF_ADDHDRS;
        proto = SMFIP_NOHELO | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NOHDRS | SMFIP_NOEOH |
                SMFIP_NOBODY;
    }
    *pf0 = act & f0;
    *pf1 = proto & f1;
    {
        struct milter_conn *c = milter_conn_get(ctx, s);

        if (c != NULL)
            c->leadspc = (*pf1 & SMFIP_HDR_LEADSPC) != 0;
    }
    *pf2 = 0;
    *pf3 = 0;
    if (f0 & SMFIF_SETSYMLIST) {
        *pf0 |= SMFIF_SETSYMLIST;
        (void) smfi_setsymlist(ctx, SMFIM_CONNECT, "j {client_addr} {client_name} {daemon_name}");
        (void) smfi_setsymlist(ctx, SMFIM_ENVFROM, "i {auth_authen}");
        (void) smfi_setsymlist(ctx, SMFIM_ENVRCPT, "i");
        (void) smfi_setsymlist(ctx, SMFIM_EOM, "i");
    }
    milter_leave();
    return SMFIS_CONTINUE;
}

/* ---- server ------------------------------------------------------------------- */

static struct smfiDesc milter_desc = {
    .xxfi_name = "switchyard",
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_DELRCPT | SMFIF_QUARANTINE | SMFIF_ADDHDRS | SMFIF_SETSYMLIST,
    .xxfi_connect = milter_cb_connect,
    .xxfi_envfrom = milter_cb_envfrom,
    .xxfi_envrcpt = milter_cb_envrcpt,
    .xxfi_header = milter_cb_header,
    .xxfi_eoh = milter_cb_eoh,
    .xxfi_body = milter_cb_body,
    .xxfi_eom = milter_cb_eom,
    .xxfi_abort = milter_cb_abort,
    .xxfi_close = milter_cb_close,
    .xxfi_negotiate = milter_cb_negotiate,
};

static bool milter_registered;

struct milter_server *milter_server_new(const struct config *cfg, struct intake *in,
                                        struct sy_err *err)
{
    return milter_server_new_at(cfg, 0, in, err);
}

struct milter_server *milter_server_new_at(const struct config *cfg, size_t idx, struct intake *in,
                                           struct sy_err *err)
{
    struct milter_server *s;
    const char *crash = getenv(MILTER_TEST_CRASH_ENV);

    if (idx >= cfg->milter.nlisteners) {
        sy_err_set(err, SY_EPERM, "", "no milter listener configured");
        return NULL;
    }
    pthread_mutex_lock(&milter_lock);
    if (milter_g != NULL || milter_registered) {
        pthread_mutex_unlock(&milter_lock);
        sy_err_set(err, SY_EPERM, "", "libmilter serves one milter per process");
        return NULL;
    }
    pthread_mutex_unlock(&milter_lock);
    s = xcalloc(1, sizeof(*s));
    s->cfg = cfg;
    s->l = &cfg->milter.listeners[idx];
    s->in = in;
    s->crash_after_commit = crash != NULL && crash[0] != '\0';
    if (smfi_register(milter_desc) != MI_SUCCESS ||
        smfi_setconn((char *) (uintptr_t) s->l->address) != MI_SUCCESS) {
        sy_err_set(err, SY_EPERM, "", "libmilter refused the listener %s", s->l->address);
        free(s);
        return NULL;
    }
    (void) smfi_setmaxdatasize(MILTER_MAX_DATA);
    (void) smfi_settimeout((int) (cfg->milter.timeout_ms / 1000));
    (void) smfi_setbacklog(128);
    if (smfi_opensocket(true) != MI_SUCCESS) {
        sy_err_set(err, SY_EIO, "", "milter %s: cannot listen on %s: %s", s->l->name,
                   s->l->address, strerror(errno));
        free(s);
        return NULL;
    }
    if ((strncmp(s->l->address, "unix:", 5) == 0 || strncmp(s->l->address, "local:", 6) == 0) &&
        chmod(strchr(s->l->address, ':') + 1, (mode_t) s->l->socket_mode) < 0) {
        sy_err_set(err, SY_EIO, "", "milter %s: chmod %s: %s", s->l->name, s->l->address,
                   strerror(errno));
        free(s);
        return NULL;
    }
    milter_registered = true;
    pthread_mutex_lock(&milter_lock);
    milter_g = s;
    milter_stopping = false;
    pthread_mutex_unlock(&milter_lock);
    return s;
}

static void *milter_thread(void *arg)
{
    struct milter_server *s = arg;
    int rc;
    bool stopping;

    log_info(NULL, "milter %s listening on %s (%s mode)", s->l->name, s->l->address,
             s->l->mode == CFG_MILTER_CAPTURE ? "capture" : "policy");
    rc = smfi_main();
    pthread_mutex_lock(&milter_lock);
    stopping = milter_stopping;
    pthread_mutex_unlock(&milter_lock);
    if (!stopping) {
        /* libmilter's own signal thread took SIGTERM/SIGINT/SIGHUP, or its
         * listener failed: stop the daemon rather than run without it. */
        log_warn(NULL, "milter %s: libmilter stopped (%s): stopping switchyard", s->l->name,
                 rc == MI_SUCCESS ? "signal" : "listener failure");
        (void) kill(getpid(), SIGTERM);
    }
    return NULL;
}

int milter_server_start(struct milter_server *s, struct sy_err *err)
{
    if (pthread_create(&s->thread, NULL, milter_thread, s) != 0)
        return sy_err_set(err, SY_ETEMP, "", "cannot start the milter thread");
    s->started = true;
    return SY_OK;
}

/* milter_poke - connect to our own socket so libmilter's accept loop wakes
 * up and sees the stop flag now rather than at its next poll timeout */
static void milter_poke(const char *address)
{
    int fd = -1;

    if (strncmp(address, "unix:", 5) == 0 || strncmp(address, "local:", 6) == 0) {
        struct sockaddr_un un;
        const char *path = strchr(address, ':') + 1;

        memset(&un, 0, sizeof(un));
        un.sun_family = AF_UNIX;
        if (strlen(path) >= sizeof(un.sun_path))
            return;
        memcpy(un.sun_path, path, strlen(path));
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd >= 0)
            (void) connect(fd, (struct sockaddr *) &un, sizeof(un));
    } else {
        const char *p = strchr(address, ':'), *at = strchr(address, '@');
        struct addrinfo hints, *ai = NULL;
        char port[8];

        if (p == NULL || at == NULL || at - p - 1 <= 0 || at - p - 1 >= (long) sizeof(port))
            return;
        memcpy(port, p + 1, (size_t) (at - p - 1));
        port[at - p - 1] = '\0';
        memset(&hints, 0, sizeof(hints));
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICSERV;
        if (getaddrinfo(at + 1, port, &hints, &ai) != 0 || ai == NULL)
            return;
        fd = socket(ai->ai_family, SOCK_STREAM, 0);
        if (fd >= 0)
            (void) connect(fd, ai->ai_addr, ai->ai_addrlen);
        freeaddrinfo(ai);
    }
    if (fd >= 0)
        (void) close(fd);
}

void milter_server_stop(struct milter_server *s)
{
    int64_t end;

    if (s == NULL)
        return;
    pthread_mutex_lock(&milter_lock);
    if (milter_stopping && !s->started) {
        pthread_mutex_unlock(&milter_lock);
        return;
    }
    milter_stopping = true;
    pthread_mutex_unlock(&milter_lock);
    if (s->started) {
        (void) smfi_stop();
        milter_poke(s->l->address);
        (void) pthread_join(s->thread, NULL);
        s->started = false;
    }
    /* Callbacks in progress finish (a commit is bounded by Redis timeouts). */
    end = clock_mono_ms() + MILTER_STOP_WAIT_MS;
    pthread_mutex_lock(&milter_lock);
    while (milter_busy > 0 && clock_mono_ms() < end) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        (void) pthread_cond_timedwait(&milter_idle, &milter_lock, &ts);
    }
    /* Connections still open keep their struct until close; what touches
     * intake goes now. */
    for (struct milter_conn *c = milter_conns; c != NULL; c = c->next) {
        intake_abort(c->msg.txn);
        c->msg.txn = NULL;
    }
    milter_g = NULL;
    pthread_mutex_unlock(&milter_lock);
    if (s->l->address != NULL && strncmp(s->l->address, "unix:", 5) == 0)
        (void) unlink(strchr(s->l->address, ':') + 1);
    log_info(NULL, "milter %s stopped", s->l->name);
}

void milter_server_free(struct milter_server *s)
{
    if (s == NULL)
        return;
    milter_server_stop(s);
    free(s);
}
