/* io.c - timed socket I/O */
#include "gateway/util/io.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/util/clock.h"
#include "gateway/util/err.h"

/* io_wait - wait for events on fd until the deadline */
static int io_wait(int fd, short events, int64_t deadline_ms)
{
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = events, .revents = 0 };
        int64_t left = deadline_ms - clock_mono_ms();
        int rc;

        if (left <= 0)
            return SY_ETIMEOUT;
        rc = poll(&pfd, 1, left > 60000 ? 60000 : (int) left);
        if (rc > 0)
            return SY_OK;
        if (rc < 0 && errno != EINTR)
            return SY_EIO;
    }
}

int io_write_all(int fd, const void *p, size_t n, int64_t deadline_ms)
{
    const char *c = p;

    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);

        if (w > 0) {
            c += w;
            n -= (size_t) w;
            continue;
        }
        if (w < 0 && errno == ENOTSOCK)
            w = write(fd, c, n);
        if (w > 0) {
            c += w;
            n -= (size_t) w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = io_wait(fd, POLLOUT, deadline_ms);

            if (rc != SY_OK)
                return rc;
            continue;
        }
        return SY_EIO;
    }
    return SY_OK;
}

int io_file_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;

    while (n > 0) {
        ssize_t w = write(fd, c, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return (errno == ENOSPC || errno == EDQUOT) ? SY_ENOSPACE : SY_EIO;
        }
        if (w == 0) {
            errno = ENOSPC;
            return SY_ENOSPACE;
        }
        c += w;
        n -= (size_t) w;
    }
    return SY_OK;
}
