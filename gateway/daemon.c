/* daemon.c - run the gateway */
/* setresuid(), getresuid(), setresgid() are GNU extensions. */
#define _GNU_SOURCE
#include "gateway/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gateway/deliver.h"
#include "gateway/intake.h"
#include "gateway/queue.h"
#include "gateway/spool.h"
#include "gateway/util/clock.h"
#include "gateway/util/log.h"
#include "gateway/util/xalloc.h"
#include "lmtp/lmtp_server.h"
#include "milter/milter.h"

/* While Redis is unreachable at start-up, reconciliation is retried this
 * often; the listeners answer 451 4.3.0 meanwhile. */
#define DAEMON_RECONCILE_RETRY_S 5
/* A milter child has this long to bind and report, and to stop on SIGTERM
 * (its milter waits up to 10 s for callbacks in progress). */
#define DAEMON_CHILD_START_MS 60000
#define DAEMON_CHILD_STOP_MS 20000

/* The milter child processes: one per milter listener after the first. */
struct daemon_kids {
    pid_t *pid;             /* [n]; 0 once reaped */
    size_t n;
};

void daemon_block_signals(void)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int daemon_mkdirs(const char *path, unsigned mode, struct sy_err *err)
{
    char tmp[4096];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof(tmp))
        return sy_err_set(err, SY_EIO, "", "bad directory path");
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        tmp[i] = '\0';
        if (mkdir(tmp, (mode_t) mode) < 0 && errno != EEXIST)
            return sy_err_set(err, SY_EIO, "", "mkdir %s: %s", tmp, strerror(errno));
        tmp[i] = path[i];
    }
    return SY_OK;
}

/* daemon_user - look up cfg->user; NULL pw when no drop is needed */
static int daemon_user(const char *user, struct passwd **pwp, struct sy_err *err)
{
    struct passwd *pw;

    *pwp = NULL;
    if (user == NULL)
        return SY_OK;
    pw = getpwnam(user);
    if (pw == NULL)
        return sy_err_set(err, SY_EPERM, "", "unknown user %s", user);
    if (getuid() != 0) {
        if (getuid() == pw->pw_uid)
            return SY_OK;
        return sy_err_set(err, SY_EPERM, "", "must start as root to become %s", user);
    }
    *pwp = pw;
    return SY_OK;
}

/* daemon_drop_privileges - become pw for good (OpenSMTPD, Unbound) */
static int daemon_drop_privileges(const struct passwd *pw, struct sy_err *err)
{
    uid_t r, e, s;

    if (pw == NULL)
        return SY_OK;
    if (setgroups(1, &pw->pw_gid) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
        setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0)
        return sy_err_set(err, SY_EPERM, "", "dropping privileges to %s: %s", pw->pw_name, strerror(errno));
    if (getresuid(&r, &e, &s) < 0 || r != pw->pw_uid || e != pw->pw_uid || s != pw->pw_uid)
        return sy_err_set(err, SY_EPERM, "", "privileges to %s not dropped", pw->pw_name);
    return SY_OK;
}

/* daemon_milter_child - the body of a milter child process: its own queue
 * pool and intake on the inherited spool (same open file description, so
 * the parent's lock covers it), the listener cfg->milter.listeners[idx],
 * no LMTP, no workers (the parent's workers find its mail within 1 s).
 * Reports "ok" or the start-up error on wfd once bound, then accepts mail
 * only after SIGUSR1: the parent's first reconciliation removes stale
 * files from the spool's tmp/, which must not meet a message of ours in
 * progress. Returns the exit code. */
static int daemon_milter_child(const struct config *cfg, size_t idx, struct spool *sp,
                               const struct passwd *pw, pid_t parent, int wfd)
{
    struct sy_err err;
    struct queue_pool *qp;
    struct intake *in;
    struct milter_server *ml;
    sigset_t set;
    int rc = 0;
    bool started = false;

    sy_err_clear(&err);
    qp = queue_pool_new(&cfg->redis, cfg->node);
    in = intake_new(cfg, sp, qp);
    /* Bound before the privilege drop, like the parent's listeners. The
     * parent-death signal is set after it: a change of credentials clears
     * it. getppid() catches a parent that died before prctl(). */
    ml = milter_server_new_at(cfg, idx, in, &err);
    if (ml != NULL && daemon_drop_privileges(pw, &err) == SY_OK) {
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
            sy_err_set(&err, SY_EIO, "", "prctl(PR_SET_PDEATHSIG): %s", strerror(errno));
        else if (getppid() != parent)
            sy_err_set(&err, SY_EIO, "", "the daemon exited during start-up");
    }
    if (err.text[0] != '\0') {
        (void) !write(wfd, err.text, strlen(err.text));
        (void) close(wfd);
        milter_server_free(ml);
        intake_free(in);
        queue_pool_free(qp);
        return 1;
    }
    (void) !write(wfd, "ok", 2);
    (void) close(wfd);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    for (;;) {
        int sig = sigwaitinfo(&set, NULL);

        if (sig == SIGTERM || sig == SIGINT)
            break;
        if (sig != SIGUSR1 || started)
            continue;
        if (milter_server_start(ml, &err) != SY_OK) {
            log_error(NULL, "%s", err.text);
            rc = 1;
            break;
        }
        started = true;
        log_info(NULL, "milter child for %s started (pid %ld)", cfg->milter.listeners[idx].name,
                 (long) getpid());
    }
    milter_server_stop(ml);
    milter_server_free(ml);
    intake_free(in);
    queue_pool_free(qp);
    log_info(NULL, "milter child for %s stopped", cfg->milter.listeners[idx].name);
    return rc;
}

/* daemon_fork_milter - start the child for milter listener idx and wait
 * for its report; the child's pid in *pidp (also on failure, to reap) */
static int daemon_fork_milter(const struct config *cfg, size_t idx, struct spool *sp,
                              const struct passwd *pw, pid_t *pidp, struct sy_err *err)
{
    char msg[SY_ERR_TEXT_MAX];
    size_t got = 0;
    int64_t end;
    pid_t parent = getpid(), pid;
    int pfd[2];

    *pidp = 0;
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return sy_err_set(err, SY_EIO, "", "pipe: %s", strerror(errno));
    pid = fork();
    if (pid < 0) {
        (void) close(pfd[0]);
        (void) close(pfd[1]);
        return sy_err_set(err, SY_EIO, "", "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        (void) close(pfd[0]);
        /* _exit: the parent's atexit handlers (localserve) are not ours. */
        _exit(daemon_milter_child(cfg, idx, sp, pw, parent, pfd[1]));
    }
    *pidp = pid;
    (void) close(pfd[1]);
    end = clock_mono_ms() + DAEMON_CHILD_START_MS;
    for (;;) {
        struct pollfd pf = { .fd = pfd[0], .events = POLLIN, .revents = 0 };
        int64_t left = end - clock_mono_ms();
        ssize_t n;

        if (left <= 0) {
            got = 0;
            (void) snprintf(msg, sizeof(msg), "no answer in time");
            break;
        }
        if (poll(&pf, 1, (int) left) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        n = read(pfd[0], msg + got, sizeof(msg) - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t) n;
        if (got == sizeof(msg) - 1)
            break;
    }
    (void) close(pfd[0]);
    msg[got] = '\0';
    if (strcmp(msg, "ok") == 0)
        return SY_OK;
    return sy_err_set(err, SY_EIO, "", "milter %s (child process): %s", cfg->milter.listeners[idx].name,
                      got > 0 ? msg : "exited during start-up");
}

/* daemon_kids_signal - SIGTERM to the children still running */
static void daemon_kids_signal(const struct daemon_kids *k)
{
    for (size_t i = 0; i < k->n; i++)
        if (k->pid[i] > 0)
            (void) kill(k->pid[i], SIGTERM);
}

/* daemon_kids_go - SIGUSR1: the children may accept mail now */
static void daemon_kids_go(const struct daemon_kids *k)
{
    for (size_t i = 0; i < k->n; i++)
        if (k->pid[i] > 0)
            (void) kill(k->pid[i], SIGUSR1);
}

/* daemon_kids_stop - SIGTERM, wait (bounded), then SIGKILL; reaps all */
static void daemon_kids_stop(struct daemon_kids *k)
{
    int64_t end = clock_mono_ms() + DAEMON_CHILD_STOP_MS;

    daemon_kids_signal(k);
    for (;;) {
        struct timespec ts = { .tv_sec = 0, .tv_nsec = 50000000L };
        size_t left = 0;

        for (size_t i = 0; i < k->n; i++) {
            pid_t r;

            if (k->pid[i] <= 0)
                continue;
            r = waitpid(k->pid[i], NULL, WNOHANG);
            if (r == k->pid[i] || (r < 0 && errno == ECHILD))
                k->pid[i] = 0;
            else
                left++;
        }
        if (left == 0 || clock_mono_ms() >= end)
            break;
        (void) nanosleep(&ts, NULL);
    }
    for (size_t i = 0; i < k->n; i++) {
        if (k->pid[i] <= 0)
            continue;
        log_warn(NULL, "milter child pid %ld did not stop in time: killing it", (long) k->pid[i]);
        (void) kill(k->pid[i], SIGKILL);
        (void) waitpid(k->pid[i], NULL, 0);
        k->pid[i] = 0;
    }
}

/* daemon_kids_dead - true (and logged) when a child exited on its own */
static bool daemon_kids_dead(struct daemon_kids *k, const struct config *cfg)
{
    bool dead = false;

    for (size_t i = 0; i < k->n; i++) {
        int st = 0;

        if (k->pid[i] <= 0 || waitpid(k->pid[i], &st, WNOHANG) != k->pid[i])
            continue;
        if (WIFSIGNALED(st))
            log_error(NULL, "milter child for %s (pid %ld) was killed by signal %d: stopping switchyard",
                      cfg->milter.listeners[i + 1].name, (long) k->pid[i], WTERMSIG(st));
        else
            log_error(NULL, "milter child for %s (pid %ld) exited with status %d: stopping switchyard",
                      cfg->milter.listeners[i + 1].name, (long) k->pid[i], WEXITSTATUS(st));
        k->pid[i] = 0;
        dead = true;
    }
    return dead;
}

static int daemon_serve(const struct config *cfg, struct spool *sp, struct passwd *pw,
                        struct daemon_kids *kids);

int daemon_run(const struct config *cfg)
{
    struct sy_err err;
    struct spool *sp;
    struct passwd *pw;
    struct daemon_kids kids = { NULL, 0 };
    sigset_t chld;
    int rc;

    sy_err_clear(&err);
    if (cfg->redis.address == NULL) {
        log_error(NULL, "%s: redis.address is required (localserve starts its own Redis)", cfg->path);
        return 1;
    }
    if (daemon_user(cfg->user, &pw, &err) != SY_OK ||
        daemon_mkdirs(cfg->spool.dir, 0700, &err) != SY_OK ||
        (cfg->delivery.workers > 0 && daemon_mkdirs(cfg->capture.dir, 0755, &err) != SY_OK)) {
        log_error(NULL, "%s", err.text);
        return 1;
    }
    /* The spool lock comes before binding: a second daemon must fail
     * before it could replace the first one's UNIX socket. */
    sp = spool_open(cfg->spool.dir, &err);
    if (sp == NULL) {
        log_error(NULL, "%s", err.text);
        return 1;
    }
    /* What we created as root must stay usable once we are pw. */
    if (pw != NULL && spool_chown(sp, pw->pw_uid, pw->pw_gid, &err) != SY_OK) {
        log_error(NULL, "%s", err.text);
        spool_close(sp);
        return 1;
    }
    if (pw != NULL && cfg->delivery.workers > 0 &&
        chown(cfg->capture.dir, pw->pw_uid, pw->pw_gid) < 0) {
        log_error(NULL, "chown %s: %s", cfg->capture.dir, strerror(errno));
        spool_close(sp);
        return 1;
    }
    /* libmilter serves one socket per process: every milter listener after
     * the first gets a child process. They are forked here, while this
     * process has no thread, no Redis connection and no libmilter state;
     * each binds its socket and drops privileges itself. SIGCHLD is
     * blocked first so that an early death is not missed, SIGUSR1 (the
     * children's go, daemon_kids_go()) so that an early one is kept. */
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigaddset(&chld, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &chld, NULL);
    if (cfg->milter.nlisteners > 1) {
        kids.n = cfg->milter.nlisteners - 1;
        kids.pid = xcalloc(kids.n, sizeof(*kids.pid));
        for (size_t i = 0; i < kids.n; i++)
            if (daemon_fork_milter(cfg, i + 1, sp, pw, &kids.pid[i], &err) != SY_OK) {
                log_error(NULL, "%s", err.text);
                daemon_kids_stop(&kids);
                free(kids.pid);
                spool_close(sp);
                return 1;
            }
    }
    rc = daemon_serve(cfg, sp, pw, &kids);
    daemon_kids_stop(&kids);
    free(kids.pid);
    spool_close(sp);
    if (rc == 0)
        log_info(NULL, "stopped");
    return rc;
}

/* daemon_serve - the parent's part: LMTP, the first milter listener,
 * reconciliation, workers; returns the exit code. On a stop signal the
 * children get SIGTERM at once (daemon_run reaps them). */
static int daemon_serve(const struct config *cfg, struct spool *sp, struct passwd *pw,
                        struct daemon_kids *kids)
{
    struct sy_err err;
    struct queue_pool *qp;
    struct intake *in;
    struct lmtp_server *srv;
    struct milter_server *ml = NULL;
    struct deliver *dl;
    sigset_t set;
    int reconciled, sig = 0, rc = 0;

    sy_err_clear(&err);
    qp = queue_pool_new(&cfg->redis, cfg->node);
    in = intake_new(cfg, sp, qp);
    srv = lmtp_server_new(cfg, in, &err);
    /* The milter socket is bound before the privilege drop too. */
    if (srv != NULL && cfg->milter.nlisteners > 0 && (ml = milter_server_new(cfg, in, &err)) == NULL) {
        lmtp_server_free(srv);
        srv = NULL;
    }
    if (srv == NULL || daemon_drop_privileges(pw, &err) != SY_OK) {
        log_error(NULL, "%s", err.text);
        milter_server_free(ml);
        lmtp_server_free(srv);
        intake_free(in);
        queue_pool_free(qp);
        daemon_kids_signal(kids);
        return 1;
    }

    /* Spool first, then listeners: mail accepted before reconciliation is
     * simply indexed twice, which the idempotent insert makes harmless. */
    reconciled = intake_reconcile(in, &err) == SY_OK;
    if (!reconciled)
        log_warn(NULL, "start-up reconciliation deferred: %s", err.text);
    daemon_kids_go(kids);

    dl = deliver_new(cfg, sp, qp, in);
    intake_set_notify(in, deliver_kick, dl);
    if (lmtp_server_start(srv, &err) != SY_OK || deliver_start(dl, &err) != SY_OK ||
        (ml != NULL && milter_server_start(ml, &err) != SY_OK)) {
        log_error(NULL, "%s", err.text);
        milter_server_free(ml);
        deliver_free(dl);
        lmtp_server_free(srv);
        intake_free(in);
        queue_pool_free(qp);
        daemon_kids_signal(kids);
        return 1;
    }
    log_info(NULL, "switchyard started: node=%s spool=%s", cfg->node, cfg->spool.dir);

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    for (;;) {
        struct timespec ts = { .tv_sec = DAEMON_RECONCILE_RETRY_S, .tv_nsec = 0 };

        sig = reconciled ? sigwaitinfo(&set, NULL) : sigtimedwait(&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        /* A milter child that dies takes the daemon down: a supervisor
         * restarts the whole set (no half-served listener list). */
        if (sig == SIGCHLD && daemon_kids_dead(kids, cfg)) {
            rc = 1;
            break;
        }
        if (sig == SIGHUP)
            log_info(NULL, "SIGHUP: configuration reload is not supported yet; restart to apply changes");
        if (!reconciled && sig < 0 && errno == EAGAIN) {
            reconciled = intake_reconcile(in, &err) == SY_OK;
            if (reconciled)
                log_info(NULL, "start-up reconciliation done");
        }
    }
    log_info(NULL, "stopping on signal %d", sig);
    daemon_kids_signal(kids);
    milter_server_stop(ml);
    lmtp_server_stop(srv);
    deliver_stop(dl);
    intake_set_notify(in, NULL, NULL);
    deliver_free(dl);
    milter_server_free(ml);
    lmtp_server_free(srv);
    intake_free(in);
    queue_pool_free(qp);
    return rc;
}
