/* cli_queue.c - the queue subcommands */
#include "gateway/cli_queue.h"

#include <stdlib.h>
#include <string.h>

#include "gateway/intake.h"
#include "gateway/queue.h"
#include "gateway/spool.h"
#include "gateway/util/clock.h"
#include "gateway/util/log.h"

/* Messages fetched from Redis per round trip by `queue list`. */
#define CLI_QUEUE_PAGE ((size_t) 200)

/* cli_queue_list - one line per message in the index */
static int cli_queue_list(struct queue *q, FILE *out)
{
    char ids[CLI_QUEUE_PAGE][QID_SIZE];
    char after[QID_SIZE] = "";
    size_t n, total = 0;
    struct sy_err err;

    do {
        if (queue_list_ids(q, after, ids, CLI_QUEUE_PAGE, &n, &err) != SY_OK) {
            (void) fprintf(stderr, "switchyard: queue list: %s\n", err.text);
            return 1;
        }
        for (size_t i = 0; i < n; i++) {
            struct queue_msg_info m;
            char when[40], from[LOG_SAFE_MAX];

            memset(&m, 0, sizeof(m));
            if (queue_show(q, ids[i], &m, &err) != SY_OK)
                continue;   /* finished between the two calls */
            (void) fprintf(out, "%s  %s  %llu  <%s>  %zu  %s\n", m.qid,
                           clock_iso8601(m.arrival_us, when, sizeof(when)),
                           (unsigned long long) m.size, log_safe(from, sizeof(from), m.sender),
                           m.nrcpt, m.state != NULL ? m.state : "-");
            queue_msg_free(&m);
            total++;
        }
        if (n > 0)
            memcpy(after, ids[n - 1], QID_SIZE);
    } while (n == CLI_QUEUE_PAGE);
    (void) fprintf(stderr, "%zu message(s)\n", total);
    return 0;
}

/* cli_queue_show - everything Redis knows about one message */
static int cli_queue_show(struct queue *q, const char *qid, FILE *out)
{
    struct queue_msg_info m;
    struct sy_err err;
    char when[40], s1[LOG_SAFE_MAX], s2[LOG_SAFE_MAX];

    if (!qid_valid(qid)) {
        (void) fprintf(stderr, "switchyard: queue show: not a queue id: %s\n",
                       log_safe(s1, sizeof(s1), qid));
        return 2;
    }
    memset(&m, 0, sizeof(m));
    if (queue_show(q, qid, &m, &err) != SY_OK) {
        (void) fprintf(stderr, "switchyard: queue show %s: %s\n", qid, err.text);
        return 1;
    }
    (void) fprintf(out, "queue id:   %s\n", m.qid);
    (void) fprintf(out, "state:      %s\n", m.state != NULL ? m.state : "-");
    (void) fprintf(out, "arrival:    %s\n", clock_iso8601(m.arrival_us, when, sizeof(when)));
    (void) fprintf(out, "size:       %llu\n", (unsigned long long) m.size);
    (void) fprintf(out, "sender:     <%s>\n", log_safe(s1, sizeof(s1), m.sender));
    (void) fprintf(out, "listener:   %s\n", log_safe(s2, sizeof(s2), m.listener));
    if (m.mta_qid != NULL)
        (void) fprintf(out, "mta_qid:    %s\n", log_safe(s1, sizeof(s1), m.mta_qid));
    for (size_t i = 0; i < m.nrcpt; i++) {
        const struct queue_rcpt_info *r = &m.rcpts[i];

        (void) fprintf(out, "  rcpt %zu: <%s> state=%s attempts=%u", i,
                       log_safe(s1, sizeof(s1), r->addr), queue_state_name(r->state), r->attempts);
        if (r->next_ms > 0)
            (void) fprintf(out, " next=%s", clock_iso8601(r->next_ms * 1000, when, sizeof(when)));
        if (r->last_reply != NULL)
            (void) fprintf(out, " last=\"%s\"", log_safe(s2, sizeof(s2), r->last_reply));
        (void) fputc('\n', out);
    }
    queue_msg_free(&m);
    return 0;
}

/* cli_queue_rebuild - reconcile spool and Redis now (needs the spool lock) */
static int cli_queue_rebuild(const struct config *cfg, struct queue_pool *qp)
{
    struct sy_err err;
    struct spool *sp = spool_open(cfg->spool.dir, &err);
    struct intake *in;
    int rc;

    if (sp == NULL) {
        (void) fprintf(stderr, "switchyard: queue rebuild: %s (a running daemon reconciles at start-up)\n",
                       err.text);
        return 1;
    }
    in = intake_new(cfg, sp, qp);
    rc = intake_reconcile(in, &err);
    intake_free(in);
    spool_close(sp);
    if (rc != SY_OK) {
        (void) fprintf(stderr, "switchyard: queue rebuild: %s\n", err.text);
        return 1;
    }
    return 0;
}

int cli_queue(const struct config *cfg, int argc, char **argv, FILE *out)
{
    struct queue_pool *qp;
    struct queue *q;
    struct sy_err err;
    int rc;

    if (argc < 1) {
        (void) fprintf(stderr, "usage: switchyard queue list|show QID|rebuild -c FILE\n");
        return 2;
    }
    if (cfg->redis.address == NULL) {
        (void) fprintf(stderr, "switchyard: %s: redis.address is not set\n", cfg->path);
        return 1;
    }
    qp = queue_pool_new(&cfg->redis, cfg->node);
    if (strcmp(argv[0], "rebuild") == 0) {
        rc = cli_queue_rebuild(cfg, qp);
        queue_pool_free(qp);
        return rc;
    }
    q = queue_get(qp, &err);
    if (q == NULL) {
        (void) fprintf(stderr, "switchyard: %s\n", err.text);
        queue_pool_free(qp);
        return 1;
    }
    if (strcmp(argv[0], "list") == 0 && argc == 1) {
        rc = cli_queue_list(q, out);
    } else if (strcmp(argv[0], "show") == 0 && argc == 2) {
        rc = cli_queue_show(q, argv[1], out);
    } else {
        (void) fprintf(stderr, "usage: switchyard queue list|show QID|rebuild -c FILE\n");
        rc = 2;
    }
    queue_put(qp, q);
    queue_pool_free(qp);
    return rc;
}
