/* redis_server.c - a private redis-server for unit tests */
#include "tests/unit/support/redis_server.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gateway/util/clock.h"

/* test_redis_ping - 1 when the server on sock answers PING */
static int test_redis_ping(const char *sock, const char *password)
{
    redisContext *c = redisConnectUnix(sock);
    redisReply *r;
    int ok = 0;

    if (c == NULL || c->err != 0) {
        if (c != NULL)
            redisFree(c);
        return 0;
    }
    if (password != NULL) {
        r = redisCommand(c, "AUTH %s", password);
        if (r != NULL)
            freeReplyObject(r);
    }
    r = redisCommand(c, "PING");
    ok = r != NULL && r->type == REDIS_REPLY_STATUS;
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return ok;
}

pid_t test_redis_start(const char *dir, const char *sock, const char *password,
                       int64_t timeout_ms)
{
    char logf[256];
    int64_t end;
    pid_t pid;

    (void) snprintf(logf, sizeof(logf), "%s/redis.log", dir);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* Dies with us, even when a failed assertion skips the teardown. */
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (password != NULL)
            execl("/usr/bin/redis-server", "redis-server", "--port", "0", "--unixsocket", sock,
                  "--unixsocketperm", "700", "--dir", dir, "--save", "", "--appendonly", "no",
                  "--daemonize", "no", "--requirepass", password, "--logfile", logf, (char *) NULL);
        else
            execl("/usr/bin/redis-server", "redis-server", "--port", "0", "--unixsocket", sock,
                  "--unixsocketperm", "700", "--dir", dir, "--save", "", "--appendonly", "no",
                  "--daemonize", "no", "--logfile", logf, (char *) NULL);
        _exit(127);
    }
    end = clock_mono_ms() + timeout_ms;
    while (clock_mono_ms() < end) {
        if (test_redis_ping(sock, password))
            return pid;
        (void) usleep(20000);
    }
    test_redis_kill(pid);
    return -1;
}

void test_redis_kill(pid_t pid)
{
    if (pid <= 0)
        return;
    (void) kill(pid, SIGCONT);
    (void) kill(pid, SIGKILL);
    (void) waitpid(pid, NULL, 0);
}
