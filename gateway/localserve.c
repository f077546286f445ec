/* localserve.c - one-machine mode with a private redis-server */
#include "gateway/localserve.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gateway/config.h"
#include "gateway/daemon.h"
#include "gateway/queue.h"
#include "gateway/util/buf.h"
#include "gateway/util/clock.h"
#include "gateway/util/log.h"

/* How long redis-server may take to answer PING after it was started. */
#define LOCALSERVE_REDIS_START_MS ((int64_t) 15000)
#define LOCALSERVE_DEFAULT_PORT 2424u
/* The capture milter (OpenDKIM's customary port: `smtpd_milters =
 * inet:127.0.0.1:8891` is what a local Postfix needs). */
#define LOCALSERVE_MILTER_PORT 8891u

/* localserve_path_ok - a state path we can put in YAML and argv safely */
static int localserve_path_ok(const char *p)
{
    for (; *p != '\0'; p++)
        if ((unsigned char) *p < 0x20 || *p == '"' || *p == '\\' || *p == 0x7f)
            return 0;
    return 1;
}

/* localserve_port_free - 127.0.0.1:port can be bound now (else the milter
 * is left out with a warning rather than failing the whole start) */
static int localserve_port_free(unsigned port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, ok;

    if (fd < 0)
        return 0;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t) port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ok = bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0;
    (void) close(fd);
    return ok;
}

/* localserve_redis_orphan - stop a private redis-server a killed run left */
static void localserve_redis_orphan(const char *pidf)
{
    char buf[32], comm[64], path[64];
    FILE *f = fopen(pidf, "r");
    long pid;
    char *end;

    if (f == NULL)
        return;
    if (fgets(buf, sizeof(buf), f) == NULL) {
        (void) fclose(f);
        return;
    }
    (void) fclose(f);
    errno = 0;
    pid = strtol(buf, &end, 10);
    if (errno != 0 || pid <= 1 || (*end != '\n' && *end != '\0'))
        return;
    /* Only a process that really is redis-server. */
    (void) snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return;
    if (fgets(comm, sizeof(comm), f) != NULL && strncmp(comm, "redis-server", 12) == 0) {
        int64_t end_ms = clock_mono_ms() + 10000;

        log_warn(NULL, "localserve: stopping the private redis-server (pid %ld) a previous run left", pid);
        (void) kill((pid_t) pid, SIGTERM);
        while (kill((pid_t) pid, 0) == 0 && clock_mono_ms() < end_ms)
            (void) usleep(20000);
    }
    (void) fclose(f);
}

/* localserve_redis_start - fork/exec redis-server; returns its pid or -1 */
static pid_t localserve_redis_start(const char *state, const char *sock)
{
    char logf[PATH_MAX + 32], pidf[PATH_MAX + 32];
    pid_t pid;

    (void) snprintf(logf, sizeof(logf), "%s/redis.log", state);
    (void) snprintf(pidf, sizeof(pidf), "%s/redis.pid", state);
    localserve_redis_orphan(pidf);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        sigset_t none;

        /* The child must not inherit our blocked signals: SIGTERM stops it. */
        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, NULL);
        (void) setpgid(0, 0);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock,
               "--unixsocketperm", "700", "--dir", state, "--appendonly", "yes",
               "--save", "", "--daemonize", "no", "--logfile", logf, "--pidfile", pidf,
               (char *) NULL);
        _exit(127);
    }
    return pid;
}

/* localserve_redis_wait - until the private Redis answers PING */
static int localserve_redis_wait(const struct config *cfg, pid_t pid)
{
    struct queue_pool *qp = queue_pool_new(&cfg->redis, cfg->node);
    int64_t end = clock_mono_ms() + LOCALSERVE_REDIS_START_MS;
    int ok = 0;

    while (clock_mono_ms() < end) {
        struct sy_err err;
        struct queue *q = queue_get(qp, &err);
        int status;

        if (q != NULL) {
            ok = queue_ping(q, &err) == SY_OK;
            queue_put(qp, q);
            if (ok)
                break;
        }
        if (pid > 0 && waitpid(pid, &status, WNOHANG) == pid)
            break;
        (void) usleep(50000);
    }
    queue_pool_free(qp);
    return ok;
}

/* localserve_redis_stop - SIGTERM (Redis flushes its AOF), wait, SIGKILL */
static void localserve_redis_stop(pid_t pid)
{
    int64_t end = clock_mono_ms() + 10000;
    int status;

    if (pid <= 0)
        return;
    (void) kill(pid, SIGTERM);
    while (clock_mono_ms() < end) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return;
        (void) usleep(20000);
    }
    (void) kill(pid, SIGKILL);
    (void) waitpid(pid, &status, 0);
}

int localserve_run(const struct localserve_opts *o)
{
    char state[PATH_MAX], sock[PATH_MAX + 16], yamlpath[PATH_MAX + 32];
    const char *dir = o->state_dir != NULL ? o->state_dir : "localserve-state";
    unsigned port = o->lmtp_port != 0 ? o->lmtp_port : LOCALSERVE_DEFAULT_PORT;
    struct buf yaml, errors;
    struct config *cfg;
    int milter = localserve_port_free(LOCALSERVE_MILTER_PORT);
    struct sy_err err;
    pid_t redis = -1;
    FILE *f;
    int rc;

    if (daemon_mkdirs(dir, 0700, &err) != SY_OK) {
        log_error(NULL, "localserve: %s", err.text);
        return 1;
    }
    /* The Redis socket path must fit in sun_path (108 bytes). */
    if (realpath(dir, state) == NULL || !localserve_path_ok(state) || strlen(state) > 90) {
        log_error(NULL, "localserve: unusable state directory %s", dir);
        return 1;
    }
    (void) snprintf(sock, sizeof(sock), "%s/redis.sock", state);
    (void) snprintf(yamlpath, sizeof(yamlpath), "%s/switchyard.yaml", state);

    buf_init(&errors, 65536);
    buf_init(&yaml, 8192);
    (void) buf_printf(&yaml,
        "# switchyard localserve: embedded defaults\n"
        "node: localserve\n"
        "redis:\n  address: \"unix:%s\"\n"
        "spool:\n  dir: \"%s/spool\"\n"
        "lmtp:\n  hostname: localhost\n  listeners:\n"
        "    - name: local\n      address: \"127.0.0.1:%u\"\n"
        "delivery:\n  default_transport: capture\n  workers: 2\n"
        "  retry_first: 30s\n  retry_max: 5m\n  expiry: 1h\n  lease: 1m\n"
        "capture:\n  dir: \"%s/capture\"\n",
        sock, state, port, state);
    if (milter)
        (void) buf_printf(&yaml, "milter:\n  listeners:\n    - name: milter\n"
                          "      address: \"inet:%u@127.0.0.1\"\n      mode: capture\n",
                          LOCALSERVE_MILTER_PORT);
    else
        log_warn(NULL, "localserve: 127.0.0.1:%u is busy: running without the capture milter",
                 LOCALSERVE_MILTER_PORT);
    cfg = config_load_mem("<localserve>", buf_str(&yaml), buf_len(&yaml), &errors);
    buf_free(&yaml);
    if (cfg == NULL) {
        (void) fprintf(stderr, "%s", buf_str(&errors));
        buf_free(&errors);
        return 1;
    }
    buf_free(&errors);

    redis = localserve_redis_start(state, sock);
    if (redis < 0 || !localserve_redis_wait(cfg, redis)) {
        log_error(NULL, "localserve: redis-server did not start (see %s/redis.log)", state);
        localserve_redis_stop(redis);
        config_free(cfg);
        return 1;
    }

    f = fopen(yamlpath, "w");
    if (f != NULL) {
        config_dump(cfg, f);
        (void) fclose(f);
    }
    (void) fprintf(stderr,
        "\nswitchyard localserve\n"
        "  LMTP:            127.0.0.1:%u\n"
        "  milter:          %s (capture mode; Postfix: smtpd_milters = inet:127.0.0.1:%u)\n"
        "  Redis:           %s (private, append-only file on)\n"
        "  spool:           %s\n"
        "  delivered mail:  %s  (one .eml + .json per recipient)\n"
        "  configuration:   %s\n\n"
        "Try:\n"
        "  swaks --protocol LMTP --server 127.0.0.1:%u --from you@example.org --to someone@example.net\n"
        "  swaks --protocol LMTP --server 127.0.0.1:%u --to tempfail@example.net   # retried\n"
        "  swaks --protocol LMTP --server 127.0.0.1:%u --to permfail@example.net   # fails\n"
        "  switchyard queue list -c %s\n\n",
        port, milter ? "inet:8891@127.0.0.1" : "off (port busy)", LOCALSERVE_MILTER_PORT,
        cfg->redis.address, cfg->spool.dir, cfg->capture.dir, yamlpath,
        port, port, port, yamlpath);

    rc = daemon_run(cfg);
    localserve_redis_stop(redis);
    config_free(cfg);
    return rc;
}
