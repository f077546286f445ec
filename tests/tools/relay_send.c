/* relay_send.c - test driver: one message through relay_deliver(), results on stdout
 *
 *   relay_send -c CONFIG -t TRANSPORT -m MESSAGE -f SENDER [options] RCPT...
 *     -n N          deliver N times (connection reuse), relay_tick() between
 *     -w MS         wait MS milliseconds before each repeat (after the tick)
 *     -u            SMTPUTF8 parameter given
 *     -R            REQUIRETLS parameter given
 *     -N NOTIFY     NOTIFY bits for every recipient: S, F, D letters or "never"
 *     -E ENVID      ENVID;  -e full|hdrs  RET;  -O  ORCPT=rfc822;<rcpt>
 *     -B            BODY=8BITMIME declared (8-bit content is detected anyway)
 *     -P N          N deliveries at once, one thread each (max_connections tests)
 *
 * Prints, per delivery, "attempt host=H addr=A tls=T not_attempted=0|1"
 * and one "rcpt ADDR ok|temp|perm relayed=0|1 REPLY" line per recipient.
 * Exit 0 when every result was printed. Lets tests/integration drive the
 * SMTP client against real servers without the scheduler.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gateway/config.h"
#include "gateway/envelope.h"
#include "gateway/transport/relay.h"
#include "gateway/util/buf.h"
#include "gateway/util/log.h"
#include "gateway/util/xalloc.h"

static void usage(void)
{
    (void) fprintf(stderr, "usage: relay_send -c CONFIG -t TRANSPORT -m MESSAGE -f SENDER "
                           "[-n N] [-w MS] [-u] [-R] [-N NOTIFY] [-E ENVID] [-e full|hdrs] [-O] [-B] RCPT...\n");
    exit(2);
}

struct job {
    struct relay *r;
    const struct cfg_transport *t;
    struct transport_msg msg;
    pthread_t th;
};

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

/* deliver_once - one relay_deliver() and its lines on stdout */
static void deliver_once(struct relay *r, const struct cfg_transport *t, const struct transport_msg *msg)
{
    const struct envelope *env = msg->env;
    struct transport_rcpt *rcpts = xcalloc(env->nrcpt, sizeof(*rcpts));
    struct transport_attempt att;

    for (size_t i = 0; i < env->nrcpt; i++)
        rcpts[i].idx = (unsigned) i;
    (void) relay_deliver(r, t, msg, rcpts, env->nrcpt, &att);
    (void) pthread_mutex_lock(&out_mu);
    (void) printf("attempt host=%s addr=%s tls=%s not_attempted=%d\n", att.remote_host,
                  att.remote_addr, att.tls[0] ? att.tls : "-", att.not_attempted ? 1 : 0);
    for (size_t i = 0; i < env->nrcpt; i++)
        (void) printf("rcpt %s %s relayed=%d %s\n", env->rcpts[i].addr,
                      rcpts[i].code == SY_OK ? "ok" : rcpts[i].code == SY_EPERM ? "perm" : "temp",
                      rcpts[i].relayed ? 1 : 0, rcpts[i].reply);
    (void) fflush(stdout);
    (void) pthread_mutex_unlock(&out_mu);
    free(rcpts);
}

static void *job_main(void *arg)
{
    struct job *j = arg;

    deliver_once(j->r, j->t, &j->msg);
    return NULL;
}

static unsigned parse_notify(const char *s)
{
    unsigned n = 0;

    if (strcmp(s, "never") == 0)
        return ENV_NOTIFY_NEVER;
    for (; *s; s++)
        n |= *s == 'S' ? ENV_NOTIFY_SUCCESS : *s == 'F' ? ENV_NOTIFY_FAILURE : *s == 'D' ? ENV_NOTIFY_DELAY : 0;
    return n;
}

int main(int argc, char **argv)
{
    const char *cfgpath = NULL, *tname = NULL, *msgpath = NULL, *sender = NULL, *envid = NULL;
    unsigned notify = 0, repeat = 1, waitms = 0, parallel = 0;
    int opt, ret = ENV_RET_UNSET, fd;
    bool utf8 = false, reqtls = false, orcpt = false, body8 = false;
    struct envelope env;
    struct buf errs;
    struct config *cfg;
    const struct cfg_transport *t;
    struct relay *r;
    struct stat st;

    while ((opt = getopt(argc, argv, "c:t:m:f:n:w:uRN:E:e:OBP:")) != -1) {
        switch (opt) {
        case 'c': cfgpath = optarg; break;
        case 't': tname = optarg; break;
        case 'm': msgpath = optarg; break;
        case 'f': sender = optarg; break;
        case 'n': repeat = (unsigned) strtoul(optarg, NULL, 10); break;
        case 'w': waitms = (unsigned) strtoul(optarg, NULL, 10); break;
        case 'u': utf8 = true; break;
        case 'R': reqtls = true; break;
        case 'N': notify = parse_notify(optarg); break;
        case 'E': envid = optarg; break;
        case 'e': ret = strcmp(optarg, "full") == 0 ? ENV_RET_FULL : ENV_RET_HDRS; break;
        case 'O': orcpt = true; break;
        case 'B': body8 = true; break;
        case 'P': parallel = (unsigned) strtoul(optarg, NULL, 10); break;
        default: usage();
        }
    }
    if (cfgpath == NULL || tname == NULL || msgpath == NULL || sender == NULL || optind >= argc)
        usage();
    (void) signal(SIGPIPE, SIG_IGN);    /* as the daemon: OpenSSL writes with write() */
    log_init("relay_send", LOG_LVL_DEBUG, 1, 0);
    buf_init(&errs, 65536);
    cfg = config_load(cfgpath, &errs);
    if (cfg == NULL) {
        (void) fprintf(stderr, "%s", buf_str(&errs));
        return 1;
    }
    t = config_transport_find(cfg, tname);
    if (t == NULL) {
        (void) fprintf(stderr, "no transport %s\n", tname);
        return 1;
    }
    fd = open(msgpath, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        perror(msgpath);
        return 1;
    }
    env_init(&env);
    env_set(&env.sender, sender);
    env_set(&env.envid, envid);
    env.ret = ret;
    env.body = body8 ? ENV_BODY_8BITMIME : ENV_BODY_UNSET;
    env.flags = (utf8 ? ENV_F_SMTPUTF8 : 0) | (reqtls ? ENV_F_REQUIRETLS : 0);
    env.size = (uint64_t) st.st_size;
    {
        char *m = xmalloc((size_t) st.st_size + 1);

        if (pread(fd, m, (size_t) st.st_size, 0) != st.st_size) {
            perror("read");
            return 1;
        }
        for (off_t i = 0; i < st.st_size; i++)
            if ((unsigned char) m[i] >= 0x80)
                env.flags |= ENV_F_8BIT;
        free(m);
    }
    for (int i = optind; i < argc; i++) {
        struct env_rcpt rc = { 0 };

        rc.addr = xstrdup(argv[i]);
        rc.notify = notify;
        if (orcpt) {
            rc.orcpt_type = xstrdup("rfc822");
            rc.orcpt_addr = xstrdup(argv[i]);
        }
        env_add_rcpt(&env, &rc);
    }
    r = relay_new(cfg);
    if (parallel > 0 && parallel <= 64) {
        struct job *jobs = xcalloc(parallel, sizeof(*jobs));

        for (unsigned k = 0; k < parallel; k++) {
            jobs[k] = (struct job) { .r = r, .t = t, .msg = { .qid = "RELAYSEND", .env = &env, .fd = fd,
                                                            .off = 0, .len = (uint64_t) st.st_size } };
            if (pthread_create(&jobs[k].th, NULL, job_main, &jobs[k]) != 0)
                return 1;
        }
        for (unsigned k = 0; k < parallel; k++)
            (void) pthread_join(jobs[k].th, NULL);
        free(jobs);
        repeat = 0;
    }
    for (unsigned k = 0; k < repeat; k++) {
        struct transport_msg msg = { .qid = "RELAYSEND", .env = &env, .fd = fd, .off = 0,
                                     .len = (uint64_t) st.st_size };
        if (k > 0 && waitms > 0) {
            struct timespec ts = { .tv_sec = waitms / 1000, .tv_nsec = (long) (waitms % 1000) * 1000000L };

            (void) nanosleep(&ts, NULL);
        }
        relay_tick(r);
        deliver_once(r, t, &msg);
    }
    relay_free(r);
    env_free(&env);
    (void) close(fd);
    config_free(cfg);
    buf_free(&errs);
    return 0;
}
