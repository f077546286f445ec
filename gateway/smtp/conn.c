/* conn.c - client sockets with deadlines (see conn.h) */
#include "gateway/smtp/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "gateway/util/clock.h"
#include "gateway/util/xalloc.h"

struct smtp_conn {
    int fd;
    bool broken;                        /* an I/O error: never reuse */
    struct tls_conn *tls;
    char addr[64];
    size_t rlen, roff;                  /* rbuf[roff..rlen) not yet parsed */
    char rbuf[SMTP_CONN_RBUF_MAX];
    struct smtp_reply_parser parser;
};

/* conn_poll - wait for ev on fd until the deadline */
static int conn_poll(int fd, short ev, int64_t deadline_ms, struct sy_err *err, const char *what)
{
    struct pollfd pfd = { .fd = fd, .events = ev };
    for (;;) {
        int64_t left = deadline_ms - clock_mono_ms();
        int rc;

        if (left <= 0)
            return sy_err_set(err, SY_ETIMEOUT, "4.4.2", "timeout %s", what);
        rc = poll(&pfd, 1, left > 60000 ? 60000 : (int) left);
        if (rc > 0)
            return SY_OK;
        if (rc < 0 && errno != EINTR)
            return sy_err_set(err, SY_EIO, "4.4.2", "poll: %s", strerror(errno));
    }
}

/* conn_try - one non-blocking connect to one address */
static int conn_try(const struct addrinfo *ai, int64_t deadline_ms, int *fdp, struct sy_err *err)
{
    int fd, soerr = 0, one = 1;
    socklen_t sl = sizeof(soerr);

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0)
        return sy_err_set(err, SY_ETEMP, "4.4.1", "socket: %s", strerror(errno));
    if (ai->ai_family != AF_UNIX)
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            soerr = errno;
            goto fail;
        }
        if (conn_poll(fd, POLLOUT, deadline_ms, err, "connecting") != SY_OK) {
            (void) close(fd);
            return sy_err_set(err, SY_ETIMEOUT, "4.4.1", "connection timed out");
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
            soerr = errno;
        if (soerr != 0)
            goto fail;
    }
    *fdp = fd;
    return SY_OK;
fail:
    (void) close(fd);
    return sy_err_set(err, SY_ETEMP, "4.4.1", "connect: %s", strerror(soerr));
}

/* conn_open_unix - an LMTP server's UNIX socket (host is its absolute path) */
static struct smtp_conn *conn_open_unix(const char *path, int64_t deadline, struct sy_err *err)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    struct addrinfo ai = { .ai_family = AF_UNIX, .ai_socktype = SOCK_STREAM,
                           .ai_addr = (struct sockaddr *) &sun, .ai_addrlen = sizeof(sun) };
    struct smtp_conn *c;
    int fd = -1;

    if (strlen(path) >= sizeof(sun.sun_path))
        return sy_err_set(err, SY_ETEMP, "4.3.5", "socket path too long: %s", path), NULL;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    if (conn_try(&ai, deadline, &fd, err) != SY_OK) {
        if (err != NULL) {
            char why[SY_ERR_TEXT_MAX];

            (void) snprintf(why, sizeof(why), "%s", err->text);
            (void) sy_err_set(err, err->code, "4.4.1", "connect to %s: %s", path, why);
        }
        return NULL;
    }
    c = xcalloc(1, sizeof(*c));
    c->fd = fd;
    (void) snprintf(c->addr, sizeof(c->addr), "unix");
    smtp_reply_parser_init(&c->parser);
    return c;
}

/* smtp_conn_open - try each address of host in turn, all within one deadline */
struct smtp_conn *smtp_conn_open(const char *host, unsigned port, int64_t connect_timeout_ms,
                                 struct sy_err *err)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG }, *res, *ai;
    int64_t deadline = clock_mono_ms() + connect_timeout_ms;
    char portstr[16];
    struct smtp_conn *c;
    struct sy_err e;
    int fd = -1, rc;

    sy_err_clear(&e);
    if (host[0] == '/')
        return conn_open_unix(host, deadline, err);
    (void) snprintf(portstr, sizeof(portstr), "%u", port);
    rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        if (rc == EAI_NONAME)
            return sy_err_set(err, SY_ETEMP, "4.4.4", "cannot find the address of %s: %s", host,
                              gai_strerror(rc)), NULL;
        return sy_err_set(err, SY_ETEMP, "4.4.3", "cannot resolve %s: %s", host, gai_strerror(rc)), NULL;
    }
    c = xcalloc(1, sizeof(*c));
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        if (conn_try(ai, deadline, &fd, &e) != SY_OK)
            continue;
        if (ai->ai_family == AF_INET6)
            (void) inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) (const void *) ai->ai_addr)->sin6_addr,
                             c->addr, sizeof(c->addr));
        else
            (void) inet_ntop(AF_INET, &((const struct sockaddr_in *) (const void *) ai->ai_addr)->sin_addr,
                             c->addr, sizeof(c->addr));
        break;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        free(c);
        return sy_err_set(err, e.code != SY_OK ? e.code : SY_ETEMP, "4.4.1", "connect to %s port %u: %s",
                          host, port, e.text), NULL;
    }
    c->fd = fd;
    smtp_reply_parser_init(&c->parser);
    return c;
}

void smtp_conn_close(struct smtp_conn *c)
{
    if (c == NULL)
        return;
    tls_conn_free(c->tls);
    (void) close(c->fd);
    smtp_reply_parser_free(&c->parser);
    free(c);
}

bool smtp_conn_input_idle(const struct smtp_conn *c)
{
    return c->roff == c->rlen && smtp_reply_parser_idle(&c->parser) &&
           (c->tls == NULL || !tls_pending(c->tls));
}

int smtp_conn_starttls(struct smtp_conn *c, struct tls_ctx *ctx, const char *host, bool verify,
                       int64_t deadline_ms, struct sy_err *err)
{
    if (!smtp_conn_input_idle(c)) {
        c->broken = true;
        return sy_err_set(err, SY_EIO, "4.7.0", "the server sent data after its reply to STARTTLS");
    }
    c->tls = tls_connect(ctx, c->fd, host, verify, deadline_ms, err);
    if (c->tls == NULL) {
        c->broken = true;
        return err != NULL && err->code != SY_OK ? err->code : SY_EIO;
    }
    smtp_reply_parser_reset(&c->parser);
    return SY_OK;
}

/* conn_fill - read more bytes into rbuf (it is empty when called) */
static int conn_fill(struct smtp_conn *c, int64_t deadline_ms, struct sy_err *err)
{
    long n;

    c->roff = c->rlen = 0;
    if (c->tls != NULL) {
        n = tls_read(c->tls, c->rbuf, sizeof(c->rbuf), deadline_ms, err);
        if (n < 0)
            return (int) n;
    } else {
        for (;;) {
            n = read(c->fd, c->rbuf, sizeof(c->rbuf));
            if (n >= 0)
                break;
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return sy_err_set(err, SY_EIO, "4.4.2", "read: %s", strerror(errno));
            int rc = conn_poll(c->fd, POLLIN, deadline_ms, err, "waiting for the server's reply");

            if (rc != SY_OK)
                return rc;
        }
    }
    if (n == 0)
        return sy_err_set(err, SY_EIO, "4.4.2", "connection closed by the server");
    c->rlen = (size_t) n;
    return SY_OK;
}

int smtp_conn_read_reply(struct smtp_conn *c, struct smtp_reply *r, int64_t deadline_ms,
                         struct sy_err *err)
{
    size_t used;
    int rc;

    if (c->broken)
        return sy_err_set(err, SY_EIO, "4.4.2", "connection already failed");
    for (;;) {
        if (c->roff == c->rlen) {
            rc = conn_fill(c, deadline_ms, err);
            if (rc != SY_OK) {
                c->broken = true;
                return rc;
            }
        }
        rc = smtp_reply_feed(&c->parser, c->rbuf + c->roff, c->rlen - c->roff, &used, err);
        if (rc < 0) {
            c->broken = true;
            return rc;
        }
        c->roff += used;
        if (rc == SMTP_REPLY_DONE)
            return smtp_reply_parser_take(&c->parser, r);
    }
}

int smtp_conn_write(struct smtp_conn *c, const void *p, size_t n, int64_t deadline_ms,
                    struct sy_err *err)
{
    const char *q = p;
    int rc;

    if (c->broken)
        return sy_err_set(err, SY_EIO, "4.4.2", "connection already failed");
    if (c->tls != NULL) {
        rc = tls_write(c->tls, p, n, deadline_ms, err);
        if (rc != SY_OK)
            c->broken = true;
        return rc;
    }
    while (n > 0) {
        ssize_t w = send(c->fd, q, n, MSG_NOSIGNAL);

        if (w > 0) {
            q += w;
            n -= (size_t) w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            rc = conn_poll(c->fd, POLLOUT, deadline_ms, err, "sending to the server");
            if (rc != SY_OK) {
                c->broken = true;
                return rc;
            }
            continue;
        }
        c->broken = true;
        return sy_err_set(err, SY_EIO, "4.4.2", "write: %s", w < 0 ? strerror(errno) : "no progress");
    }
    return SY_OK;
}

struct tls_conn *smtp_conn_tls(struct smtp_conn *c)
{
    return c->tls;
}

const char *smtp_conn_addr(const struct smtp_conn *c)
{
    return c->addr;
}

/* smtp_conn_alive - an idle SMTP connection has nothing to read: readable means
 * EOF (the server hung up) or junk; either way it is not reusable */
bool smtp_conn_alive(struct smtp_conn *c)
{
    struct pollfd pfd = { .fd = c->fd, .events = POLLIN };

    if (c->broken || !smtp_conn_input_idle(c))
        return false;
    return poll(&pfd, 1, 0) == 0;
}
