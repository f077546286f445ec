/* daemon.c - run the gateway */
/* setresuid(), getresuid(), setresgid() are GNU extensions. */
#define _GNU_SOURCE
#include "gateway/daemon.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gateway/deliver.h"
#include "gateway/intake.h"
#include "gateway/queue.h"
#include "gateway/spool.h"
#include "gateway/util/log.h"
#include "lmtp/lmtp_server.h"
#include "milter/milter.h"

/* While Redis is unreachable at start-up, reconciliation is retried this
 * often; the listeners answer 451 4.3.0 meanwhile. */
#define DAEMON_RECONCILE_RETRY_S 5

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

int daemon_run(const struct config *cfg)
{
    struct sy_err err;
    struct spool *sp;
    struct queue_pool *qp;
    struct intake *in;
    struct lmtp_server *srv;
    struct milter_server *ml = NULL;
    struct deliver *dl;
    struct passwd *pw;
    sigset_t set;
    int reconciled, sig = 0;

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
        spool_close(sp);
        return 1;
    }

    /* Spool first, then listeners: mail accepted before reconciliation is
     * simply indexed twice, which the idempotent insert makes harmless. */
    reconciled = intake_reconcile(in, &err) == SY_OK;
    if (!reconciled)
        log_warn(NULL, "start-up reconciliation deferred: %s", err.text);

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
        spool_close(sp);
        return 1;
    }
    log_info(NULL, "switchyard started: node=%s spool=%s", cfg->node, cfg->spool.dir);

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    for (;;) {
        struct timespec ts = { .tv_sec = DAEMON_RECONCILE_RETRY_S, .tv_nsec = 0 };

        sig = reconciled ? sigwaitinfo(&set, NULL) : sigtimedwait(&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        if (sig == SIGHUP)
            log_info(NULL, "SIGHUP: configuration reload is not supported yet; restart to apply changes");
        if (!reconciled && sig < 0 && errno == EAGAIN) {
            reconciled = intake_reconcile(in, &err) == SY_OK;
            if (reconciled)
                log_info(NULL, "start-up reconciliation done");
        }
    }
    log_info(NULL, "stopping on signal %d", sig);
    milter_server_stop(ml);
    lmtp_server_stop(srv);
    deliver_stop(dl);
    intake_set_notify(in, NULL, NULL);
    deliver_free(dl);
    milter_server_free(ml);
    lmtp_server_free(srv);
    intake_free(in);
    queue_pool_free(qp);
    spool_close(sp);
    log_info(NULL, "stopped");
    return 0;
}
