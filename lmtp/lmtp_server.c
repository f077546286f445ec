/* lmtp_server.c - LMTP listeners and sessions
 *
 * One acceptor thread polls every listening socket; each connection gets a
 * session thread, up to lmtp.max_connections (past it: 421 4.3.2). A
 * session reads one line at a time under the command deadline; the line
 * is parsed by lmtp_proto.c, which has no I/O. Replies are collected and
 * written when the session is about to wait for input (PIPELINING, RFC
 * 2920): a pipelined burst gets its replies in one write.
 *
 * The DATA phase feeds the wire bytes through the lmtp_data.c decoder
 * into an intake transaction; only <CRLF>.<CRLF> ends it. Its deadline is
 * data_timeout plus the time min_data_rate allows for the bytes received
 * so far (Postfix smtpd_min_data_rate): a slow but steady client passes, a
 * trickle does not. After the final dot, one reply per accepted recipient
 * in RCPT order (RFC 2033 §4.2), all in one write, and all only after the
 * commit, so a 250 always means "durable".
 */
/* accept4() is a GNU extension. */
#define _GNU_SOURCE
#include "lmtp/lmtp_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "gateway/util/buf.h"
#include "gateway/util/clock.h"
#include "gateway/util/io.h"
#include "gateway/util/log.h"
#include "gateway/util/xalloc.h"
#include "lmtp/lmtp_data.h"
#include "lmtp/lmtp_proto.h"

/* Bytes read from the socket at a time. */
#define LMTP_READ_CHUNK ((size_t) 16384)
/* Decoded DATA bytes collected before they go to the spool writer. */
#define LMTP_DATA_CHUNK ((size_t) 65536)
/* Replies pending for one pipelined burst (1000 recipients × ~300 bytes). */
#define LMTP_REPLY_MAX ((size_t) 1024 * 1024)
/* How long a reply write may take before the session gives up. */
#define LMTP_WRITE_TIMEOUT_MS ((int64_t) 300000)
/* On shutdown, sessions inside DATA get this long to finish. */
#define LMTP_STOP_GRACE_MS ((int64_t) 5000)

struct lmtp_listener {
    const struct cfg_listener *cfg;
    int fd;
};

struct lmtp_server {
    const struct config *cfg;
    struct intake *in;
    struct lmtp_listener *ls;
    size_t nls;
    int wake[2];                    /* self-pipe: wakes the acceptor on stop */
    pthread_t acceptor;
    int started;

    pthread_mutex_t lock;           /* guards everything below */
    pthread_cond_t idle;            /* signalled when a session ends */
    int stopping;
    size_t nsessions;
    struct lmtp_slot *slots;        /* session threads not yet joined */
    size_t nslots, slots_cap;
};

/* One session thread. Threads are joined, never detached: a thread's exit
 * runs library destructors (OpenSSL's per-thread state) that must finish
 * before the process exits. */
struct lmtp_slot {
    pthread_t tid;
    int fd;                         /* its socket, for shutdown() at stop */
    int done;                       /* the session ended: join it */
};

enum lmtp_read {
    LMTP_LINE = 0, LMTP_LINE_TOO_LONG, LMTP_LINE_BARE_LF, LMTP_LINE_EOF, LMTP_LINE_TIMEOUT,
    LMTP_LINE_STOP
};

struct lmtp_session {
    struct lmtp_server *srv;
    const struct cfg_lmtp *lc;
    const struct cfg_listener *listener;
    int fd;
    char peer[64];
    struct buf rbuf;                /* unread input */
    struct buf wbuf;                /* replies not yet written */
    struct envelope env;
    int lhlo_done;
    int mail_done;
    unsigned errors;
    unsigned junk;
    int closing;                    /* the session ends after the next flush */
    int broken;                     /* the connection failed: no more writes */
};

/* lmtp_server_stopping - read the stop flag */
static int lmtp_server_stopping(struct lmtp_server *srv)
{
    int s;

    pthread_mutex_lock(&srv->lock);
    s = srv->stopping;
    pthread_mutex_unlock(&srv->lock);
    return s;
}

/* lmtp_flush - write every pending reply in one go */
static void lmtp_flush(struct lmtp_session *s)
{
    if (buf_len(&s->wbuf) == 0 || s->broken) {
        buf_reset(&s->wbuf);
        return;
    }
    if (io_write_all(s->fd, buf_str(&s->wbuf), buf_len(&s->wbuf),
                     clock_mono_ms() + LMTP_WRITE_TIMEOUT_MS) != SY_OK) {
        log_info(NULL, "lost connection after reply to %s", s->peer);
        s->broken = 1;
    }
    buf_reset(&s->wbuf);
}

/* lmtp_reply - queue one reply line "CODE ENH text" */
__attribute__((format(printf, 4, 5)))
static void lmtp_reply(struct lmtp_session *s, int code, const char *enh, const char *fmt, ...)
{
    char text[512];
    va_list ap;

    va_start(ap, fmt);
    (void) vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    /* Our replies carry peer text (addresses): keep them one line. */
    for (char *p = text; *p != '\0'; p++)
        if ((unsigned char) *p < 0x20)
            *p = '?';
    if (buf_printf(&s->wbuf, "%d %s %s\r\n", code, enh, text) != SY_OK) {
        /* Cannot happen within LMTP_REPLY_MAX unless the peer pipelines
         * absurdly: flush and retry once. */
        lmtp_flush(s);
        (void) buf_printf(&s->wbuf, "%d %s %s\r\n", code, enh, text);
    }
    if (code >= 400)
        s->errors++;
}

/* lmtp_reply_proto - queue a reply produced by the parser */
static void lmtp_reply_proto(struct lmtp_session *s, const struct lmtp_reply *r)
{
    lmtp_reply(s, r->code, r->enh, "%s", r->text);
}

/* lmtp_reply_err - queue a reply for an intake error */
static void lmtp_reply_err(struct lmtp_session *s, const struct sy_err *e, const char *prefix)
{
    const char *enh = sy_err_enh(e);
    int code = enh[0] == '5' ? 550 : (strcmp(enh, "4.3.1") == 0 ? 452 : 451);

    lmtp_reply(s, code, enh, "%s%s", prefix, e->text[0] != '\0' ? e->text
               : "Error: queue file write error");
}

/* lmtp_fill - read more input before the deadline; flushes replies first
 *
 * Between commands (interruptible) the wait also ends when the server
 * stops, so an idle session can say 421 instead of being cut off. */
static int lmtp_fill(struct lmtp_session *s, int64_t deadline, int interruptible)
{
    char chunk[LMTP_READ_CHUNK];
    size_t room = buf_room(&s->rbuf);

    lmtp_flush(s);
    if (s->broken)
        return LMTP_LINE_EOF;
    if (room > sizeof(chunk))
        room = sizeof(chunk);
    if (room == 0)
        return LMTP_LINE_TOO_LONG;
    for (;;) {
        struct pollfd p[2] = {
            { .fd = s->fd, .events = POLLIN },
            { .fd = s->srv->wake[0], .events = POLLIN },
        };
        ssize_t n = read(s->fd, chunk, room);
        int64_t left;

        if (n > 0) {
            (void) buf_append(&s->rbuf, chunk, (size_t) n);
            return LMTP_LINE;
        }
        if (n == 0)
            return LMTP_LINE_EOF;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return LMTP_LINE_EOF;
        left = deadline - clock_mono_ms();
        if (left <= 0)
            return LMTP_LINE_TIMEOUT;
        if (poll(p, interruptible ? 2 : 1, left > 60000 ? 60000 : (int) left) < 0 && errno != EINTR)
            return LMTP_LINE_EOF;
        if (interruptible && p[1].revents != 0)
            return LMTP_LINE_STOP;
    }
}

/* lmtp_read_line - the next command line, without CRLF, into line
 *
 * A line longer than the limit is skipped to its end and reported once
 * (Postfix SMTP_GET_FLAG_SKIP); a line ending in a bare LF is reported and
 * never executed (RFC 5321 §4.1.1.4: SMTP smuggling). */
static int lmtp_read_line(struct lmtp_session *s, struct buf *line)
{
    int64_t deadline = clock_mono_ms() + (int64_t) s->lc->command_timeout_ms;
    size_t limit = s->lc->line_length_limit;
    int skipping = 0;

    buf_reset(line);
    for (;;) {
        const char *d = buf_str(&s->rbuf);
        const char *nl = memchr(d, '\n', buf_len(&s->rbuf));
        int rc;

        if (nl != NULL) {
            size_t len = (size_t) (nl - d);
            int bare = len == 0 || d[len - 1] != '\r';

            if (skipping) {
                buf_consume(&s->rbuf, len + 1);
                return LMTP_LINE_TOO_LONG;
            }
            if (len + 1 > limit) {
                buf_consume(&s->rbuf, len + 1);
                return LMTP_LINE_TOO_LONG;
            }
            if (bare) {
                buf_consume(&s->rbuf, len + 1);
                return LMTP_LINE_BARE_LF;
            }
            (void) buf_append(line, d, len - 1);
            buf_consume(&s->rbuf, len + 1);
            return LMTP_LINE;
        }
        if (buf_len(&s->rbuf) >= limit) {
            /* No end of line within the limit: drop what we have and keep
             * dropping until the line ends; memory stays bounded. */
            buf_reset(&s->rbuf);
            skipping = 1;
        }
        /* Only a session with no partial command waiting may be told to
         * go away. */
        rc = lmtp_fill(s, deadline, buf_len(&s->rbuf) == 0);
        if (rc != LMTP_LINE)
            return rc;
    }
}

/* lmtp_reset_txn - forget the transaction (RSET, LHLO, after DATA) */
static void lmtp_reset_txn(struct lmtp_session *s)
{
    env_reset_txn(&s->env);
    s->mail_done = 0;
}

/* lmtp_cmd_lhlo - greet and list the extensions we honour */
static void lmtp_cmd_lhlo(struct lmtp_session *s, const struct lmtp_cmd *c)
{
    const struct cfg_lmtp *lc = s->lc;
    char maxdate[40];
    time_t until = time(NULL) + (time_t) (lc->futurerelease_max_ms / 1000);
    struct tm tm;
    char *name;

    if (c->arglen == 0 || c->arglen > 255) {
        lmtp_reply(s, 501, "5.5.4", "Syntax: LHLO hostname");
        return;
    }
    lmtp_reset_txn(s);
    name = xmemdup0(c->arg, c->arglen);
    env_set(&s->env.client_name, name);
    free(name);
    s->lhlo_done = 1;
    if (gmtime_r(&until, &tm) == NULL || strftime(maxdate, sizeof(maxdate), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        maxdate[0] = '\0';
    (void) buf_printf(&s->wbuf, "250-%s\r\n250-PIPELINING\r\n250-SIZE %llu\r\n"
                      "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
                      "250-DSN\r\n%s250 FUTURERELEASE %llu %s\r\n",
                      lc->hostname, (unsigned long long) lc->message_size_limit,
                      s->listener->trusted ? "250-REQUIRETLS\r\n" : "",
                      (unsigned long long) (lc->futurerelease_max_ms / 1000), maxdate);
}

/* lmtp_cmd_mail - MAIL FROM with its ESMTP parameters */
static void lmtp_cmd_mail(struct lmtp_session *s, const struct lmtp_cmd *c)
{
    struct lmtp_mail_policy pol = {
        .size_limit = s->lc->message_size_limit,
        .requiretls_ok = s->listener->trusted,
        .futurerelease_max_s = s->lc->futurerelease_max_ms / 1000,
        .now = time(NULL),
    };
    struct lmtp_reply rep;
    struct sy_err err;

    if (!s->lhlo_done) {
        lmtp_reply(s, 503, "5.5.1", "Error: send LHLO first");
        return;
    }
    if (s->mail_done) {
        lmtp_reply(s, 503, "5.5.1", "Error: nested MAIL command");
        return;
    }
    if (lmtp_parse_mail(c->arg, c->arglen, &pol, &s->env, &rep) != SY_OK) {
        lmtp_reply_proto(s, &rep);
        return;
    }
    sy_err_clear(&err);
    if (intake_check_mail(s->srv->in, &s->env, s->env.size_declared, &err) != SY_OK) {
        lmtp_reply_err(s, &err, "");
        lmtp_reset_txn(s);
        return;
    }
    s->mail_done = 1;
    lmtp_reply(s, 250, "2.1.0", "Ok");
}

/* lmtp_cmd_rcpt - RCPT TO with NOTIFY and ORCPT */
static void lmtp_cmd_rcpt(struct lmtp_session *s, const struct lmtp_cmd *c)
{
    struct env_rcpt r = { 0 };
    struct lmtp_reply rep;
    struct sy_err err;

    if (!s->mail_done) {
        lmtp_reply(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    if (s->env.nrcpt >= s->lc->recipient_limit) {
        lmtp_reply(s, 452, "4.5.3", "Error: too many recipients");
        return;
    }
    if (lmtp_parse_rcpt(c->arg, c->arglen, (s->env.flags & ENV_F_SMTPUTF8) != 0, &r, &rep) != SY_OK) {
        lmtp_reply_proto(s, &rep);
        return;
    }
    sy_err_clear(&err);
    if (intake_check_rcpt(s->srv->in, &s->env, &r, &err) != SY_OK) {
        lmtp_reply_err(s, &err, "");
        env_rcpt_free(&r);
        return;
    }
    env_add_rcpt(&s->env, &r);
    lmtp_reply(s, 250, "2.1.5", "Ok");
}

/* lmtp_data_reply_all - the same reply for every accepted recipient */
__attribute__((format(printf, 4, 5)))
static void lmtp_data_reply_all(struct lmtp_session *s, int code, const char *enh, const char *fmt, ...)
{
    char text[300];
    va_list ap;

    va_start(ap, fmt);
    (void) vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < s->env.nrcpt; i++) {
        char addr[LOG_SAFE_MAX];

        (void) buf_printf(&s->wbuf, "%d %s <%s> %s\r\n", code, enh,
                          log_safe(addr, sizeof(addr), s->env.rcpts[i].addr), text);
    }
}

/* lmtp_cmd_data - receive the message and answer once per recipient */
static void lmtp_cmd_data(struct lmtp_session *s, const struct lmtp_cmd *c)
{
    const struct cfg_lmtp *lc = s->lc;
    struct lmtp_data dec;
    struct buf out;
    struct intake_txn *txn;
    struct sy_err terr;
    int64_t start, deadline;
    uint64_t wire = 0;
    int too_big = 0, lost = 0;
    char from[LOG_SAFE_MAX];

    if (c->arglen != 0) {
        lmtp_reply(s, 501, "5.5.4", "Syntax: DATA");
        return;
    }
    if (!s->mail_done) {
        lmtp_reply(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    if (s->env.nrcpt == 0) {
        lmtp_reply(s, 503, "5.5.1", "Error: no valid recipients");
        return;
    }
    /* RFC 2034 §3: no enhanced status code on 354. */
    (void) buf_append_str(&s->wbuf, "354 End data with <CR><LF>.<CR><LF>\r\n");
    lmtp_flush(s);
    if (s->broken) {
        s->closing = 1;
        return;
    }

    sy_err_clear(&terr);
    s->env.arrival_us = clock_real_us();
    txn = intake_begin(s->srv->in, &s->env, &terr);
    lmtp_data_init(&dec, lc->bare_line_endings == CFG_BARE_NORMALIZE
                   ? LMTP_DATA_NORMALIZE_BARE : LMTP_DATA_REJECT_BARE);
    buf_init(&out, LMTP_DATA_CHUNK);
    start = clock_mono_ms();

    while (!lmtp_data_done(&dec)) {
        if (buf_len(&s->rbuf) > 0) {
            size_t used = lmtp_data_feed(&dec, buf_str(&s->rbuf), buf_len(&s->rbuf), &out);

            buf_consume(&s->rbuf, used);
            if (dec.out_bytes > lc->message_size_limit && !too_big) {
                too_big = 1;
                intake_abort(txn);
                txn = NULL;
            }
            if (txn != NULL && buf_len(&out) > 0 &&
                intake_write(txn, buf_str(&out), buf_len(&out), &terr) != SY_OK) {
                intake_abort(txn);
                txn = NULL;
            }
            buf_reset(&out);
            continue;
        }
        deadline = start + (int64_t) lc->data_timeout_ms;
        if (lc->min_data_rate > 0)
            deadline += (int64_t) (wire * 1000 / lc->min_data_rate);
        {
            size_t before = buf_len(&s->rbuf);
            int rc = lmtp_fill(s, deadline, 0);

            if (rc != LMTP_LINE) {
                lost = rc;
                break;
            }
            wire += buf_len(&s->rbuf) - before;
        }
    }
    buf_free(&out);

    if (lost) {
        /* Nothing is acknowledged: the client never saw the final reply. */
        intake_abort(txn);
        if (lost == LMTP_LINE_TIMEOUT)
            lmtp_reply(s, 421, "4.4.2", "%s Error: timeout exceeded", lc->hostname);
        log_info(NULL, "%s after DATA from %s (%llu bytes)",
                 lost == LMTP_LINE_TIMEOUT ? "timeout" : "lost connection",
                 s->peer, (unsigned long long) wire);
        s->closing = 1;
        lmtp_reset_txn(s);
        return;
    }

    log_safe(from, sizeof(from), s->env.sender);
    if (lmtp_data_bare_eol(&dec)) {
        intake_abort(txn);
        log_info(NULL, "reject: DATA from %s: from=<%s>: bare CR or LF in message", s->peer, from);
        lmtp_data_reply_all(s, 550, "5.6.0", "Message contains bare CR or LF characters");
        s->errors++;
    } else if (too_big) {
        log_info(NULL, "reject: DATA from %s: from=<%s>: message size %llu exceeds limit %llu",
                 s->peer, from, (unsigned long long) dec.out_bytes,
                 (unsigned long long) lc->message_size_limit);
        lmtp_data_reply_all(s, 552, "5.3.4", "Message size exceeds fixed limit");
        s->errors++;
    } else if (txn == NULL) {
        const char *enh = sy_err_enh(&terr);

        lmtp_data_reply_all(s, strcmp(enh, "4.3.1") == 0 ? 452 : 451, enh, "%s",
                            terr.text[0] != '\0' ? terr.text : "Error: queue file write error");
    } else {
        char qid[QID_SIZE];

        if (intake_commit(txn, qid, &terr) == SY_OK) {
            lmtp_data_reply_all(s, 250, "2.0.0", "Ok: queued as %s", qid);
            s->junk = 0;
        } else {
            const char *enh = sy_err_enh(&terr);

            lmtp_data_reply_all(s, strcmp(enh, "4.3.1") == 0 ? 452 : 451, enh, "%s",
                                terr.text[0] != '\0' ? terr.text : "Error: queue file write error");
        }
    }
    lmtp_reset_txn(s);
    /* One write for all per-recipient replies: the window in which some
     * but not all of them reach the MTA is as small as it can be. */
    lmtp_flush(s);
}

/* lmtp_dispatch - run one parsed command */
static void lmtp_dispatch(struct lmtp_session *s, const struct lmtp_cmd *c)
{
    switch (c->verb) {
    case LMTP_LHLO:
        lmtp_cmd_lhlo(s, c);
        break;
    case LMTP_HELO:
    case LMTP_EHLO:
        /* RFC 2033 §4.1: MUST NOT return a positive completion reply. */
        lmtp_reply(s, 500, "5.5.1", "Error: this is an LMTP server, use LHLO");
        break;
    case LMTP_MAIL:
        lmtp_cmd_mail(s, c);
        break;
    case LMTP_RCPT:
        lmtp_cmd_rcpt(s, c);
        break;
    case LMTP_DATA:
        lmtp_cmd_data(s, c);
        break;
    case LMTP_RSET:
        if (c->arglen != 0) {
            lmtp_reply(s, 501, "5.5.4", "Syntax: RSET");
            break;
        }
        lmtp_reset_txn(s);
        s->junk++;
        lmtp_reply(s, 250, "2.0.0", "Ok");
        break;
    case LMTP_NOOP:
        s->junk++;
        lmtp_reply(s, 250, "2.0.0", "Ok");
        break;
    case LMTP_VRFY:
        s->junk++;
        lmtp_reply(s, 252, "2.5.2", "Cannot VRFY user, but will accept message");
        break;
    case LMTP_HELP:
        s->junk++;
        lmtp_reply(s, 214, "2.0.0", "Commands: LHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP (RFC 2033)");
        break;
    case LMTP_QUIT:
        lmtp_reply(s, 221, "2.0.0", "Bye");
        s->closing = 1;
        break;
    case LMTP_BDAT:
    case LMTP_STARTTLS:
    case LMTP_EXPN:
    case LMTP_AUTH:
        lmtp_reply(s, 502, "5.5.1", "Error: command not implemented");
        break;
    default:
        s->junk++;
        lmtp_reply(s, 500, "5.5.1", "Error: command not recognized");
        break;
    }
}

/* lmtp_session_run - the command loop of one connection */
static void lmtp_session_run(struct lmtp_session *s)
{
    struct buf line;

    buf_init(&line, s->lc->line_length_limit);
    (void) buf_printf(&s->wbuf, "220 %s LMTP switchyard ready\r\n", s->lc->hostname);

    while (!s->closing && !s->broken) {
        struct lmtp_cmd cmd;
        struct lmtp_reply rep;
        int rc;

        /* Between commands: on shutdown an idle session is told so. */
        if (buf_len(&s->rbuf) == 0 && lmtp_server_stopping(s->srv)) {
            lmtp_reply(s, 421, "4.3.2", "%s Service shutting down, closing channel", s->lc->hostname);
            break;
        }
        rc = lmtp_read_line(s, &line);
        if (rc == LMTP_LINE_EOF)
            break;
        if (rc == LMTP_LINE_STOP) {
            lmtp_reply(s, 421, "4.3.2", "%s Service shutting down, closing channel", s->lc->hostname);
            break;
        }
        if (rc == LMTP_LINE_TIMEOUT) {
            lmtp_reply(s, 421, "4.4.2", "%s Error: timeout exceeded", s->lc->hostname);
            log_info(NULL, "timeout after command from %s", s->peer);
            break;
        }
        if (rc == LMTP_LINE_TOO_LONG) {
            lmtp_reply(s, 500, "5.5.2", "Error: line too long");
        } else if (rc == LMTP_LINE_BARE_LF) {
            lmtp_reply(s, 500, "5.5.2", "Error: bare <LF> received; commands must end with <CR><LF>");
        } else if (lmtp_parse_command(buf_str(&line), buf_len(&line), &cmd, &rep) != SY_OK) {
            lmtp_reply_proto(s, &rep);
        } else {
            lmtp_dispatch(s, &cmd);
        }
        if (s->errors >= s->lc->hard_error_limit) {
            lmtp_reply(s, 421, "4.7.0", "%s Error: too many errors", s->lc->hostname);
            log_info(NULL, "too many errors from %s", s->peer);
            break;
        }
        if (s->junk > s->lc->junk_command_limit) {
            lmtp_reply(s, 421, "4.7.0", "%s Error: too many junk commands", s->lc->hostname);
            break;
        }
    }
    lmtp_flush(s);
    buf_free(&line);
}

/* lmtp_session_done - a session ended: count it out (the thread is
 * joined later by the acceptor or at stop) */
static void lmtp_session_done(struct lmtp_server *srv, int fd)
{
    pthread_mutex_lock(&srv->lock);
    for (size_t i = 0; i < srv->nslots; i++)
        if (!srv->slots[i].done && srv->slots[i].fd == fd) {
            srv->slots[i].done = 1;
            break;
        }
    srv->nsessions--;
    pthread_cond_broadcast(&srv->idle);
    pthread_mutex_unlock(&srv->lock);
}

/* lmtp_reap - join the threads of ended sessions; with all, every thread
 * (at stop, after every session ended) */
static void lmtp_reap(struct lmtp_server *srv, int all)
{
    for (;;) {
        pthread_t tid;
        int found = 0;

        pthread_mutex_lock(&srv->lock);
        for (size_t i = 0; i < srv->nslots; i++)
            if (srv->slots[i].done || all) {
                tid = srv->slots[i].tid;
                srv->slots[i] = srv->slots[--srv->nslots];
                found = 1;
                break;
            }
        pthread_mutex_unlock(&srv->lock);
        if (!found)
            return;
        pthread_join(tid, NULL);
    }
}

/* lmtp_session_main - thread entry: run a session, then free it */
static void *lmtp_session_main(void *arg)
{
    struct lmtp_session *s = arg;
    struct lmtp_server *srv = s->srv;

    log_debug(NULL, "connect from %s listener=%s", s->peer, s->listener->name);
    lmtp_session_run(s);
    log_debug(NULL, "disconnect from %s", s->peer);
    lmtp_session_done(srv, s->fd);
    (void) close(s->fd);
    buf_free(&s->rbuf);
    buf_free(&s->wbuf);
    env_free(&s->env);
    free(s);
    return NULL;
}

/* lmtp_peer_name - printable peer address of an accepted socket */
static void lmtp_peer_name(const struct sockaddr_storage *ss, char *dst, size_t size)
{
    char host[INET6_ADDRSTRLEN];
    const void *addr = NULL;

    if (ss->ss_family == AF_INET)
        addr = &((const struct sockaddr_in *) (const void *) ss)->sin_addr;
    else if (ss->ss_family == AF_INET6)
        addr = &((const struct sockaddr_in6 *) (const void *) ss)->sin6_addr;
    if (addr == NULL || inet_ntop(ss->ss_family, addr, host, sizeof(host)) == NULL)
        (void) snprintf(host, sizeof(host), "unix");
    (void) snprintf(dst, size, "%s", host);
}

/* lmtp_accept_one - accept a connection and start its session thread */
static void lmtp_accept_one(struct lmtp_server *srv, struct lmtp_listener *l)
{
    struct sockaddr_storage ss = { .ss_family = AF_UNSPEC };
    socklen_t sl = sizeof(ss);
    struct lmtp_session *s;
    int fd = accept4(l->fd, (struct sockaddr *) &ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
    int over;

    if (fd < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
            log_warn(NULL, "accept on %s: %s", l->cfg->name, strerror(errno));
        if (errno == EMFILE || errno == ENFILE)
            (void) poll(NULL, 0, 100);   /* let descriptors come back */
        return;
    }
    pthread_mutex_lock(&srv->lock);
    over = srv->nsessions >= srv->cfg->lmtp.max_connections;
    if (!over)
        srv->nsessions++;
    pthread_mutex_unlock(&srv->lock);
    if (over) {
        static const char busy[] = "421 4.3.2 Error: too many connections, try again later\r\n";

        (void) send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void) close(fd);
        log_warn(NULL, "connection limit %u reached on %s", srv->cfg->lmtp.max_connections,
                 l->cfg->name);
        return;
    }

    s = xcalloc(1, sizeof(*s));
    s->srv = srv;
    s->lc = &srv->cfg->lmtp;
    s->listener = l->cfg;
    s->fd = fd;
    lmtp_peer_name(&ss, s->peer, sizeof(s->peer));
    buf_init(&s->rbuf, s->lc->line_length_limit + LMTP_READ_CHUNK);
    buf_init(&s->wbuf, LMTP_REPLY_MAX);
    env_init(&s->env);
    env_set(&s->env.listener, l->cfg->name);
    env_set(&s->env.client_addr, s->peer);

    /* The slot is added under the lock the thread's end takes, so the
     * thread cannot look for its slot before it exists. */
    pthread_mutex_lock(&srv->lock);
    srv->slots = xreallocarray_grow(srv->slots, &srv->slots_cap, srv->nslots + 1,
                                    sizeof(*srv->slots));
    if (pthread_create(&srv->slots[srv->nslots].tid, NULL, lmtp_session_main, s) != 0) {
        static const char busy[] = "421 4.3.2 Error: insufficient system resources\r\n";

        srv->nsessions--;
        pthread_mutex_unlock(&srv->lock);
        (void) send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        log_error(NULL, "cannot start a session thread for %s", s->peer);
        (void) close(fd);
        buf_free(&s->rbuf);
        buf_free(&s->wbuf);
        env_free(&s->env);
        free(s);
        return;
    }
    srv->slots[srv->nslots].fd = fd;
    srv->slots[srv->nslots].done = 0;
    srv->nslots++;
    pthread_mutex_unlock(&srv->lock);
}

/* lmtp_acceptor_main - poll every listener until stopped */
static void *lmtp_acceptor_main(void *arg)
{
    struct lmtp_server *srv = arg;
    struct pollfd *pfd = xcalloc(srv->nls + 1, sizeof(*pfd));

    for (size_t i = 0; i < srv->nls; i++)
        pfd[i] = (struct pollfd) { .fd = srv->ls[i].fd, .events = POLLIN };
    pfd[srv->nls] = (struct pollfd) { .fd = srv->wake[0], .events = POLLIN };
    for (;;) {
        int rc = poll(pfd, srv->nls + 1, -1);

        if (rc < 0 && errno != EINTR) {
            log_error(NULL, "poll on listeners: %s", strerror(errno));
            (void) poll(NULL, 0, 100);
            continue;
        }
        if (pfd[srv->nls].revents != 0 || lmtp_server_stopping(srv))
            break;
        lmtp_reap(srv, 0);
        for (size_t i = 0; i < srv->nls; i++)
            if (pfd[i].revents & POLLIN)
                lmtp_accept_one(srv, &srv->ls[i]);
    }
    free(pfd);
    return NULL;
}

/* lmtp_bind - open one listening socket */
static int lmtp_bind(const struct cfg_listener *l, struct sy_err *err)
{
    int fd;

    if (l->addr.is_unix) {
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        struct stat st;

        if (strlen(l->addr.path) >= sizeof(sun.sun_path))
            return sy_err_set(err, SY_EPERM, "", "listener %s: socket path too long", l->name);
        memcpy(sun.sun_path, l->addr.path, strlen(l->addr.path) + 1);
        /* A stale socket from a previous run is replaced; anything else
         * at that path is left alone. */
        if (lstat(l->addr.path, &st) == 0 && S_ISSOCK(st.st_mode))
            (void) unlink(l->addr.path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sun, sizeof(sun)) < 0 ||
            chmod(l->addr.path, l->mode) < 0 || listen(fd, 128) < 0) {
            int e = errno;

            if (fd >= 0)
                (void) close(fd);
            return sy_err_set(err, SY_EPERM, "", "listener %s: %s: %s", l->name, l->addr.path, strerror(e));
        }
        return fd;
    } else {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
        struct addrinfo *ai = NULL;
        char port[8];
        const char *host = l->addr.host;
        int one = 1, rc;

        /* RFC 2033 §5: LMTP MUST NOT be used on the SMTP port. */
        if (l->addr.port == 25)
            return sy_err_set(err, SY_EPERM, "", "listener %s: LMTP must not listen on TCP port 25 (RFC 2033 §5)", l->name);
        if (strcmp(host, "localhost") == 0)
            host = "127.0.0.1";
        else
            hints.ai_flags |= AI_NUMERICHOST;
        (void) snprintf(port, sizeof(port), "%u", l->addr.port);
        rc = getaddrinfo(host, port, &hints, &ai);
        if (rc != 0 || ai == NULL)
            return sy_err_set(err, SY_EPERM, "", "listener %s: %s: %s", l->name, l->address, gai_strerror(rc));
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd >= 0)
            (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (fd >= 0 && ai->ai_family == AF_INET6)
            (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
            int e = errno;

            if (fd >= 0)
                (void) close(fd);
            freeaddrinfo(ai);
            return sy_err_set(err, SY_EPERM, "", "listener %s: %s: %s", l->name, l->address, strerror(e));
        }
        freeaddrinfo(ai);
        return fd;
    }
}

struct lmtp_server *lmtp_server_new(const struct config *cfg, struct intake *in, struct sy_err *err)
{
    struct lmtp_server *srv = xcalloc(1, sizeof(*srv));

    srv->cfg = cfg;
    srv->in = in;
    srv->wake[0] = srv->wake[1] = -1;
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->idle, NULL);
    srv->ls = xcalloc(cfg->lmtp.nlisteners == 0 ? 1 : cfg->lmtp.nlisteners, sizeof(*srv->ls));
    for (size_t i = 0; i < cfg->lmtp.nlisteners; i++) {
        int fd = lmtp_bind(&cfg->lmtp.listeners[i], err);

        if (fd < 0) {
            lmtp_server_free(srv);
            return NULL;
        }
        srv->ls[srv->nls].cfg = &cfg->lmtp.listeners[i];
        srv->ls[srv->nls].fd = fd;
        srv->nls++;
    }
    if (pipe(srv->wake) < 0) {
        sy_err_set(err, SY_ETEMP, "", "pipe: %s", strerror(errno));
        lmtp_server_free(srv);
        return NULL;
    }
    return srv;
}

int lmtp_server_start(struct lmtp_server *srv, struct sy_err *err)
{
    if (pthread_create(&srv->acceptor, NULL, lmtp_acceptor_main, srv) != 0)
        return sy_err_set(err, SY_ETEMP, "", "cannot start the LMTP acceptor thread");
    srv->started = 1;
    for (size_t i = 0; i < srv->nls; i++)
        log_info(NULL, "lmtp listener %s on %s", srv->ls[i].cfg->name, srv->ls[i].cfg->address);
    return SY_OK;
}

void lmtp_server_stop(struct lmtp_server *srv)
{
    struct timespec ts;
    int64_t grace_end = clock_mono_ms() + LMTP_STOP_GRACE_MS;

    if (srv == NULL || !srv->started)
        return;
    pthread_mutex_lock(&srv->lock);
    srv->stopping = 1;
    pthread_mutex_unlock(&srv->lock);
    /* The byte stays in the pipe: every poller sees it from now on. */
    if (write(srv->wake[1], "x", 1) < 0)
        log_warn(NULL, "cannot wake the LMTP acceptor: %s", strerror(errno));
    pthread_join(srv->acceptor, NULL);
    srv->started = 0;

    /* Idle sessions see the wake pipe and say 421; a session inside DATA
     * gets the grace period to finish, then its connection is shut. */
    pthread_mutex_lock(&srv->lock);
    while (srv->nsessions > 0 && clock_mono_ms() < grace_end) {
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&srv->idle, &srv->lock, &ts);
    }
    for (size_t i = 0; i < srv->nslots; i++)
        if (!srv->slots[i].done)
            (void) shutdown(srv->slots[i].fd, SHUT_RDWR);
    while (srv->nsessions > 0)
        pthread_cond_wait(&srv->idle, &srv->lock);
    pthread_mutex_unlock(&srv->lock);
    lmtp_reap(srv, 1);
}

void lmtp_server_free(struct lmtp_server *srv)
{
    if (srv == NULL)
        return;
    lmtp_server_stop(srv);
    for (size_t i = 0; i < srv->nls; i++) {
        (void) close(srv->ls[i].fd);
        if (srv->ls[i].cfg->addr.is_unix)
            (void) unlink(srv->ls[i].cfg->addr.path);
    }
    if (srv->wake[0] >= 0)
        (void) close(srv->wake[0]);
    if (srv->wake[1] >= 0)
        (void) close(srv->wake[1]);
    free(srv->ls);
    free(srv->slots);
    pthread_mutex_destroy(&srv->lock);
    pthread_cond_destroy(&srv->idle);
    free(srv);
}
