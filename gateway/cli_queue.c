/* cli_queue.c - the queue subcommands
 *
 * Selection: queue ids (QID: every recipient; QID:IDX: one) and filters,
 * all of which must match (AND). Sender and recipient filters use the hold
 * rule patterns (rules/hold.h: "example.com", ".example.com",
 * "bob@example.com", "<>"), so `queue hold --sender X` and `hold add
 * --sender X` select the same mail. The commands page through the index
 * (the messages that still have work), read each page in one script
 * (queue_admin_fetch), filter here, and act through queue_admin_apply() in
 * batches; every step is idempotent, so an interrupted command may simply
 * be run again.
 */
#include "gateway/cli_queue.h"

#include <stdlib.h>
#include <string.h>

#include "gateway/intake.h"
#include "gateway/queue.h"
#include "gateway/spool.h"
#include "gateway/util/clock.h"
#include "gateway/util/log.h"
#include "gateway/util/text.h"
#include "gateway/util/xalloc.h"

/* Messages fetched from Redis per round trip. */
#define CLI_QUEUE_PAGE ((size_t) 100)
/* Queue ids on one command line. */
#define CLI_QUEUE_IDS_MAX ((size_t) 10000)
/* The longest age a filter takes: ten years. */
#define CLI_QUEUE_AGE_MAX_MS ((uint64_t) 10 * 366 * 86400 * 1000)

static const char cli_queue_usage[] =
    "usage: switchyard queue list [SELECTION] [--after QID] [--limit N] [-v] [-c FILE]\n"
    "       switchyard queue show QID [-c FILE]\n"
    "       switchyard queue rebuild [-c FILE]\n"
    "       switchyard queue hold|release|kick|drop|fail SELECTION [-c FILE]\n"
    "       switchyard queue reroute --transport NAME SELECTION [-c FILE]\n"
    "SELECTION: QID or QID:IDX arguments and/or filters (all must match):\n"
    "  --sender P --recipient P --listener NAME --held --transport NAME (--via NAME\n"
    "  for reroute) --older-than AGE --newer-than AGE, or --all for everything\n";

struct cli_id {
    char qid[QID_SIZE];
    long idx;               /* -1: every recipient */
};

struct cli_sel {
    struct cli_id *ids;
    size_t nids;
    struct hold_rule rule;  /* sender/recipient/listener filter */
    int has_rule;
    int held;
    const char *via;        /* transport filter */
    int64_t older_us, newer_us;
    int all;
    char after[QID_SIZE];
    size_t limit;           /* 0: no limit */
    int verbose;
    const char *target;     /* reroute: the new transport */
    int64_t now_us;
};

/* cli_parse_id - "QID" or "QID:IDX"; -1 when malformed */
static int cli_parse_id(const char *s, struct cli_id *id)
{
    size_t n = strlen(s);
    uint64_t idx;

    if (n < QID_LEN)
        return -1;
    memcpy(id->qid, s, QID_LEN);
    id->qid[QID_LEN] = '\0';
    if (!qid_valid(id->qid))
        return -1;
    id->idx = -1;
    if (n == QID_LEN)
        return 0;
    if (s[QID_LEN] != ':' || text_parse_u64(s + QID_LEN + 1, n - QID_LEN - 1, 0, 99999, &idx) != SY_OK)
        return -1;
    id->idx = (long) idx;
    return 0;
}

/* cli_opt_value - "--name VALUE" or "--name=VALUE"; NULL when argv[*i] is
 * not that option. Advances *i past a separate value. */
static const char *cli_opt_value(const char *name, int argc, char **argv, int *i, int *missing)
{
    size_t n = strlen(name);
    const char *a = argv[*i];

    if (a == NULL || strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    (*i)++;
    return argv[*i];
}

/* cli_parse_age - a duration ("90s", "30m", "4h", "2d") into microseconds */
static int cli_parse_age(const char *opt, const char *v, int64_t *us)
{
    uint64_t ms;

    if (text_parse_duration_ms(v, 1, CLI_QUEUE_AGE_MAX_MS, &ms) != SY_OK) {
        char safe[LOG_SAFE_MAX];

        (void) fprintf(stderr, "switchyard: queue: %s: not a duration: %s\n", opt, log_safe(safe, sizeof(safe), v));
        return -1;
    }
    *us = (int64_t) ms * 1000;
    return 0;
}

/* cli_parse_sel - options and ids after the verb into sel; 0, or 2 (usage) */
static int cli_parse_sel(const char *verb, int argc, char **argv, struct cli_sel *sel)
{
    const char *sender = NULL, *recipient = NULL, *listener = NULL;
    int is_reroute = strcmp(verb, "reroute") == 0;
    char safe[LOG_SAFE_MAX];
    struct sy_err err;

    memset(sel, 0, sizeof(*sel));
    sel->now_us = clock_real_us();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int missing = 0;

        if ((v = cli_opt_value("--sender", argc, argv, &i, &missing)) != NULL) {
            sender = v;
        } else if ((v = cli_opt_value("--recipient", argc, argv, &i, &missing)) != NULL) {
            recipient = v;
        } else if ((v = cli_opt_value("--listener", argc, argv, &i, &missing)) != NULL) {
            listener = v;
        } else if ((v = cli_opt_value("--via", argc, argv, &i, &missing)) != NULL) {
            sel->via = v;
        } else if ((v = cli_opt_value("--transport", argc, argv, &i, &missing)) != NULL) {
            if (is_reroute)
                sel->target = v;
            else
                sel->via = v;
        } else if ((v = cli_opt_value("--older-than", argc, argv, &i, &missing)) != NULL) {
            if (cli_parse_age("--older-than", v, &sel->older_us) != 0)
                return 2;
        } else if ((v = cli_opt_value("--newer-than", argc, argv, &i, &missing)) != NULL) {
            if (cli_parse_age("--newer-than", v, &sel->newer_us) != 0)
                return 2;
        } else if ((v = cli_opt_value("--after", argc, argv, &i, &missing)) != NULL) {
            if (strlen(v) != QID_LEN || !qid_valid(v)) {
                (void) fprintf(stderr, "switchyard: queue: --after: not a queue id: %s\n",
                               log_safe(safe, sizeof(safe), v));
                return 2;
            }
            memcpy(sel->after, v, QID_SIZE);
        } else if ((v = cli_opt_value("--limit", argc, argv, &i, &missing)) != NULL) {
            uint64_t n;

            if (text_parse_u64(v, strlen(v), 1, 1000000, &n) != SY_OK) {
                (void) fprintf(stderr, "switchyard: queue: --limit: not a number 1-1000000: %s\n",
                               log_safe(safe, sizeof(safe), v));
                return 2;
            }
            sel->limit = (size_t) n;
        } else if (missing) {
            (void) fprintf(stderr, "switchyard: queue: %s needs a value\n", log_safe(safe, sizeof(safe), a));
            return 2;
        } else if (strcmp(a, "--held") == 0) {
            sel->held = 1;
        } else if (strcmp(a, "--all") == 0) {
            sel->all = 1;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            sel->verbose = 1;
        } else if (a[0] == '-') {
            (void) fprintf(stderr, "switchyard: queue %s: unknown option %s\n%s", verb,
                           log_safe(safe, sizeof(safe), a), cli_queue_usage);
            return 2;
        } else {
            if (sel->nids >= CLI_QUEUE_IDS_MAX) {
                (void) fprintf(stderr, "switchyard: queue: at most %zu ids\n", CLI_QUEUE_IDS_MAX);
                return 2;
            }
            if (sel->ids == NULL)
                sel->ids = xcalloc(CLI_QUEUE_IDS_MAX, sizeof(*sel->ids));
            if (cli_parse_id(a, &sel->ids[sel->nids]) != 0) {
                (void) fprintf(stderr, "switchyard: queue: not a queue id (QID or QID:IDX): %s\n",
                               log_safe(safe, sizeof(safe), a));
                return 2;
            }
            sel->nids++;
        }
    }
    if (sender != NULL || recipient != NULL || listener != NULL) {
        if (hold_rule_set(&sel->rule, sender, recipient, listener, 0, &err) != SY_OK) {
            (void) fprintf(stderr, "switchyard: queue: %s\n", err.text);
            return 2;
        }
        sel->has_rule = 1;
    }
    if (sel->via != NULL && !rules_name_ok(sel->via)) {
        (void) fprintf(stderr, "switchyard: queue: not a transport name: %s\n",
                       log_safe(safe, sizeof(safe), sel->via));
        return 2;
    }
    return 0;
}

/* cli_sel_filters - any filter besides ids */
static int cli_sel_filters(const struct cli_sel *sel)
{
    return sel->has_rule || sel->held || sel->via != NULL || sel->older_us > 0 || sel->newer_us > 0;
}

/* cli_sel_rcpt - recipient i of m is selected */
static int cli_sel_rcpt(const struct cli_sel *sel, const struct queue_admin_msg *m, size_t i)
{
    const struct queue_admin_rcpt *r = &m->rcpts[i];
    int64_t age = sel->now_us - m->arrival_us;

    if (sel->nids > 0) {
        int found = 0;

        for (size_t k = 0; k < sel->nids && !found; k++)
            found = strcmp(sel->ids[k].qid, m->qid) == 0 &&
                    (sel->ids[k].idx < 0 || (size_t) sel->ids[k].idx == i);
        if (!found)
            return 0;
    }
    if (sel->has_rule) {
        struct hold_facts f = { m->sender, r->addr, m->listener };

        if (!hold_rule_match(&sel->rule, &f, sel->now_us / 1000000))
            return 0;
    }
    if (sel->held && r->state != QUEUE_HELD)
        return 0;
    if (sel->via != NULL) {
        const char *t = r->reroute != NULL ? r->reroute : r->transport;

        if (t == NULL || strcmp(t, sel->via) != 0)
            return 0;
    }
    if (sel->older_us > 0 && age < sel->older_us)
        return 0;
    if (sel->newer_us > 0 && age >= sel->newer_us)
        return 0;
    return 1;
}

/* A visitor gets each message with at least one selected recipient
 * (match[i] set); it returns 1 to stop, -1 on error, 0 to go on. */
typedef int (*cli_visit_fn)(struct queue *q, const struct queue_admin_msg *m,
                            const unsigned char *match, void *arg);

/* cli_visit_page - fetch ids[0..n) and visit the selected messages */
static int cli_visit_page(struct queue *q, const struct cli_sel *sel, char (*ids)[QID_SIZE], size_t n,
                          cli_visit_fn fn, void *arg)
{
    struct queue_admin_msg *msgs = xcalloc(n, sizeof(*msgs));
    size_t off = 0;
    int rc = 0;

    while (off < n && rc == 0) {
        size_t nm, nu;
        struct sy_err err;

        if (queue_admin_fetch(q, (const char (*)[QID_SIZE]) ids + off, n - off, msgs, &nm, &nu, &err) != SY_OK) {
            (void) fprintf(stderr, "switchyard: queue: %s\n", err.text);
            rc = -1;
            break;
        }
        if (nu == 0)
            break;
        for (size_t i = 0; i < nm; i++) {
            unsigned char *match = xcalloc(msgs[i].nrcpt + 1, 1);
            size_t nmatch = 0;

            for (size_t k = 0; k < msgs[i].nrcpt; k++) {
                match[k] = (unsigned char) cli_sel_rcpt(sel, &msgs[i], k);
                nmatch += match[k];
            }
            if (rc == 0 && nmatch > 0)
                rc = fn(q, &msgs[i], match, arg);
            free(match);
            queue_admin_msg_free(&msgs[i]);
        }
        off += nu;
    }
    free(msgs);
    return rc;
}

/* cli_visit - every selected message: the named ids, or the whole index
 * (from sel->after). 0 done or stopped, -1 on error. */
static int cli_visit(struct queue *q, const struct cli_sel *sel, cli_visit_fn fn, void *arg)
{
    char (*ids)[QID_SIZE] = xcalloc(CLI_QUEUE_PAGE, sizeof(*ids));
    int rc = 0;

    if (sel->nids > 0) {
        size_t n = 0;

        for (size_t i = 0; i < sel->nids && rc == 0; i++) {
            int dup = 0;

            for (size_t k = 0; k < i && !dup; k++)
                dup = strcmp(sel->ids[k].qid, sel->ids[i].qid) == 0;
            if (dup)
                continue;
            memcpy(ids[n++], sel->ids[i].qid, QID_SIZE);
            if (n == CLI_QUEUE_PAGE) {
                rc = cli_visit_page(q, sel, ids, n, fn, arg);
                n = 0;
            }
        }
        if (rc == 0 && n > 0)
            rc = cli_visit_page(q, sel, ids, n, fn, arg);
    } else {
        char after[QID_SIZE];
        size_t n;

        memcpy(after, sel->after, QID_SIZE);
        do {
            struct sy_err err;

            if (queue_list_ids(q, after, ids, CLI_QUEUE_PAGE, &n, &err) != SY_OK) {
                (void) fprintf(stderr, "switchyard: queue: %s\n", err.text);
                rc = -1;
                break;
            }
            if (n > 0) {
                memcpy(after, ids[n - 1], QID_SIZE);
                rc = cli_visit_page(q, sel, ids, n, fn, arg);
            }
        } while (rc == 0 && n == CLI_QUEUE_PAGE);
    }
    free(ids);
    return rc < 0 ? -1 : 0;
}

/* ---- list ----------------------------------------------------------------- */

struct cli_list {
    FILE *out;
    const struct cli_sel *sel;
    size_t shown;
    int more;               /* stopped at the limit */
    char last[QID_SIZE];
};

/* cli_show_admin - a recipient's hold and the administrator's fields */
static void cli_show_admin(FILE *out, const struct queue_admin_rcpt *r)
{
    char when[40], s1[LOG_SAFE_MAX];

    if (r->state == QUEUE_HELD) {
        if (r->held_by > 0)
            (void) fprintf(out, " held_by=%llu", (unsigned long long) r->held_by);
        else
            (void) fprintf(out, " held_by=admin");
        if (r->held_by > 0 && r->held_score > 0 && r->held_score < INT64_MAX)
            (void) fprintf(out, " until=%s", clock_iso8601(r->held_score * 1000000, when, sizeof(when)));
    }
    if (r->released_ms > 0)
        (void) fprintf(out, " released=%s", clock_iso8601(r->released_ms * 1000, when, sizeof(when)));
    if (r->reroute != NULL)
        (void) fprintf(out, " reroute=%s", log_safe(s1, sizeof(s1), r->reroute));
    if (r->admin != NULL)
        (void) fprintf(out, " admin=%s", log_safe(s1, sizeof(s1), r->admin));
}

/* cli_print_rcpt - one recipient line of `queue list -v` */
static void cli_print_rcpt(FILE *out, size_t i, const struct queue_admin_rcpt *r)
{
    char s1[LOG_SAFE_MAX];

    (void) fprintf(out, "  %zu <%s> %s attempts=%u", i, log_safe(s1, sizeof(s1), r->addr),
                   queue_state_name(r->state), r->attempts);
    if (r->state == QUEUE_QUEUED && r->sched_ms > 0) {
        char when[40];

        (void) fprintf(out, " next=%s", clock_iso8601(r->sched_ms * 1000, when, sizeof(when)));
    }
    cli_show_admin(out, r);
    if (r->transport != NULL)
        (void) fprintf(out, " transport=%s", log_safe(s1, sizeof(s1), r->transport));
    if (r->last_reply != NULL)
        (void) fprintf(out, " last=\"%s\"", log_safe(s1, sizeof(s1), r->last_reply));
    (void) fputc('\n', out);
}

/* cli_list_one - QID  ARRIVAL  SIZE  <SENDER>  NRCPT  STATE (+ recipients with -v) */
static int cli_list_one(struct queue *q, const struct queue_admin_msg *m, const unsigned char *match,
                        void *arg)
{
    struct cli_list *l = arg;
    char when[40], from[LOG_SAFE_MAX];

    (void) q;
    if (l->sel->limit > 0 && l->shown >= l->sel->limit) {
        l->more = 1;
        return 1;
    }
    (void) fprintf(l->out, "%s  %s  %llu  <%s>  %zu  %s\n", m->qid,
                   clock_iso8601(m->arrival_us, when, sizeof(when)), (unsigned long long) m->size,
                   log_safe(from, sizeof(from), m->sender), m->nrcpt, m->state != NULL ? m->state : "-");
    if (l->sel->verbose)
        for (size_t i = 0; i < m->nrcpt; i++)
            if (match[i])
                cli_print_rcpt(l->out, i, &m->rcpts[i]);
    l->shown++;
    memcpy(l->last, m->qid, QID_SIZE);
    return 0;
}

static int cli_queue_list(struct queue *q, const struct cli_sel *sel, FILE *out)
{
    struct cli_list l = { out, sel, 0, 0, "" };

    if (cli_visit(q, sel, cli_list_one, &l) != 0)
        return 1;
    (void) fprintf(stderr, "%zu message(s)\n", l.shown);
    if (l.more)
        (void) fprintf(stderr, "more: --after %s\n", l.last);
    return 0;
}

/* ---- actions -------------------------------------------------------------- */

struct cli_act {
    struct queue_op_req req;
    struct queue_target *t;
    size_t n;
    size_t matched, changed;
    struct spool *sp;       /* DROP_NOW: the spool, locked by us */
    int failed;
};

/* cli_act_flush - apply the collected batch */
static int cli_act_flush(struct queue *q, struct cli_act *a)
{
    char (*done)[QID_SIZE];
    size_t nchanged, ndone;
    struct sy_err err;

    if (a->n == 0)
        return 0;
    done = xcalloc(a->n, sizeof(*done));
    if (queue_admin_apply(q, &a->req, a->t, a->n, &nchanged, done, &ndone, &err) != SY_OK) {
        (void) fprintf(stderr, "switchyard: queue: %s\n", err.text);
        free(done);
        a->failed = 1;
        return -1;
    }
    a->changed += nchanged;
    for (size_t i = 0; i < ndone && a->sp != NULL; i++) {
        struct sy_err rmerr;

        if (spool_remove(a->sp, done[i], &rmerr) != SY_OK && rmerr.code != SY_ENOTFOUND)
            (void) fprintf(stderr, "switchyard: queue: %s: cannot remove spool file: %s\n", done[i],
                           rmerr.text);
    }
    free(done);
    a->n = 0;
    return 0;
}

/* cli_act_one - collect a message's selected recipients */
static int cli_act_one(struct queue *q, const struct queue_admin_msg *m, const unsigned char *match,
                       void *arg)
{
    struct cli_act *a = arg;

    for (size_t i = 0; i < m->nrcpt; i++) {
        if (!match[i])
            continue;
        a->matched++;
        memcpy(a->t[a->n].qid, m->qid, QID_SIZE);
        a->t[a->n].idx = (unsigned) i;
        a->n++;
        if (a->n == QUEUE_OP_BATCH_MAX && cli_act_flush(q, a) != 0)
            return -1;
    }
    return 0;
}

/* cli_act_run - select, then apply req in batches */
static int cli_act_run(struct queue *q, const struct cli_sel *sel, struct cli_act *a)
{
    int rc;

    a->t = xcalloc(QUEUE_OP_BATCH_MAX, sizeof(*a->t));
    rc = cli_visit(q, sel, cli_act_one, a);
    if (rc == 0 && !a->failed)
        rc = cli_act_flush(q, a);
    free(a->t);
    a->t = NULL;
    return rc == 0 && !a->failed ? 0 : -1;
}

static const struct {
    const char *verb;
    int op;
    const char *done;       /* what happened, for the summary */
} cli_queue_ops[] = {
    { "hold", QUEUE_OP_HOLD, "held" },
    { "release", QUEUE_OP_RELEASE, "released" },
    { "kick", QUEUE_OP_KICK, "due now" },
    { "drop", QUEUE_OP_DROP, "marked for drop (the daemon fails them without a DSN)" },
    { "fail", QUEUE_OP_FAIL, "marked to fail (the daemon fails them with a DSN)" },
    { "reroute", QUEUE_OP_REROUTE, "rerouted" },
};

/* cli_queue_action - hold|release|kick|drop|fail|reroute */
static int cli_queue_action(const struct config *cfg, struct queue *q, int op, const char *what,
                            const struct cli_sel *sel, FILE *out)
{
    struct cli_act a;
    struct sy_err err;
    int rc;

    memset(&a, 0, sizeof(a));
    if (sel->nids == 0 && !cli_sel_filters(sel) && !sel->all) {
        (void) fprintf(stderr, "switchyard: queue: name queue ids or filters (or --all for every message)\n");
        return 2;
    }
    if (sel->limit > 0 || sel->after[0] != '\0') {
        (void) fprintf(stderr, "switchyard: queue: --after and --limit are for list\n");
        return 2;
    }
    a.req.op = op;
    a.req.now_ms = clock_real_ms();
    if (op == QUEUE_OP_REROUTE) {
        if (sel->target == NULL) {
            (void) fprintf(stderr, "switchyard: queue reroute: --transport NAME is required\n");
            return 2;
        }
        if (config_transport_find(cfg, sel->target) == NULL) {
            char safe[LOG_SAFE_MAX];

            (void) fprintf(stderr, "switchyard: queue reroute: no transport \"%s\" in %s\n",
                           log_safe(safe, sizeof(safe), sel->target), cfg->path);
            return 2;
        }
        a.req.transport = sel->target;
    }
    if (op == QUEUE_OP_DROP) {
        /* With no daemon running (we get the spool lock), drop at once and
         * remove the spool files ourselves; otherwise the daemon's
         * scheduler drops them on its next claim (within a second). */
        a.sp = spool_open(cfg->spool.dir, &err);
        if (a.sp != NULL) {
            a.req.op = QUEUE_OP_DROP_NOW;
            what = "dropped";
        }
    }
    rc = cli_act_run(q, sel, &a);
    spool_close(a.sp);
    (void) fprintf(out, "%zu recipient(s) %s (%zu selected)\n", a.changed, what, a.matched);
    return rc == 0 ? 0 : 1;
}

/* ---- hold add --apply ------------------------------------------------------ */

int cli_queue_apply_rule(struct queue *q, uint64_t id, const struct hold_rule *r, size_t *nheld,
                         struct sy_err *err)
{
    struct cli_sel sel;
    struct cli_act a;
    int rc;

    *nheld = 0;
    memset(&sel, 0, sizeof(sel));
    sel.now_us = clock_real_us();
    sel.rule = *r;
    sel.rule.until = 0;     /* the rule was just added: it matches now */
    sel.has_rule = 1;
    memset(&a, 0, sizeof(a));
    a.req.op = QUEUE_OP_RULE_HOLD;
    a.req.rule = id;
    a.req.rule_until = r->until;
    a.req.now_ms = clock_real_ms();
    rc = cli_act_run(q, &sel, &a);
    *nheld = a.changed;
    if (rc != 0)
        return sy_err_set(err, SY_ETEMP, "4.3.0", "holding queued mail failed (see above); run it again");
    return SY_OK;
}

/* ---- show, rebuild --------------------------------------------------------- */

/* cli_queue_show - everything Redis knows about one message */
static int cli_queue_show(struct queue *q, const char *qid, FILE *out)
{
    struct queue_admin_msg a;
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
    /* Hold and administrator fields: a second read; without it (an
     * error, or the message changed in between) they are left out. */
    memset(&a, 0, sizeof(a));
    {
        char id[1][QID_SIZE];
        size_t na, nu;

        memcpy(id[0], qid, QID_SIZE);
        if (queue_admin_fetch(q, (const char (*)[QID_SIZE]) id, 1, &a, &na, &nu, &err) != SY_OK || na != 1)
            memset(&a, 0, sizeof(a));
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
        if (a.nrcpt == m.nrcpt)
            cli_show_admin(out, &a.rcpts[i]);
        (void) fputc('\n', out);
        /* The attempt history (deliver.c), oldest first. */
        for (size_t k = 0; k < r->nhist; k++) {
            const struct queue_attempt_info *h = &r->hist[k];
            char s3[LOG_SAFE_MAX], reply[QUEUE_HIST_REPLY_MAX + 1];

            (void) fprintf(out, "    attempt %s %s transport=%s route=%s", clock_iso8601(h->at_ms * 1000, when, sizeof(when)),
                           log_safe(s1, sizeof(s1), h->state), log_safe(s2, sizeof(s2), h->transport),
                           log_safe(s3, sizeof(s3), h->route));
            if (h->remote_host[0] != '\0' || h->remote_addr[0] != '\0') {
                char s4[LOG_SAFE_MAX], s5[LOG_SAFE_MAX];

                (void) fprintf(out, " remote=%s[%s]", log_safe(s4, sizeof(s4), h->remote_host),
                               log_safe(s5, sizeof(s5), h->remote_addr));
            }
            if (h->tls[0] != '\0') {
                char s6[LOG_SAFE_MAX];

                (void) fprintf(out, " tls=\"%s\"", log_safe(s6, sizeof(s6), h->tls));
            }
            (void) fprintf(out, " duration=%.3fs reply=\"%s\"\n", (double) h->duration_ms / 1000.0,
                           log_safe(reply, sizeof(reply), h->reply));
        }
    }
    queue_msg_free(&m);
    queue_admin_msg_free(&a);
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
    struct cli_sel sel;
    struct sy_err err;
    int rc = -1, op = -1;
    const char *what = NULL;

    if (argc < 1) {
        (void) fputs(cli_queue_usage, stderr);
        return 2;
    }
    for (size_t i = 0; i < sizeof(cli_queue_ops) / sizeof(cli_queue_ops[0]); i++)
        if (strcmp(argv[0], cli_queue_ops[i].verb) == 0) {
            op = cli_queue_ops[i].op;
            what = cli_queue_ops[i].done;
        }
    if (op < 0 && strcmp(argv[0], "list") != 0 && !(strcmp(argv[0], "show") == 0 && argc == 2) &&
        !(strcmp(argv[0], "rebuild") == 0 && argc == 1)) {
        (void) fputs(cli_queue_usage, stderr);
        return 2;
    }
    memset(&sel, 0, sizeof(sel));
    if ((op >= 0 || strcmp(argv[0], "list") == 0) && cli_parse_sel(argv[0], argc, argv, &sel) != 0) {
        free(sel.ids);
        return 2;
    }
    if (cfg->redis.address == NULL) {
        (void) fprintf(stderr, "switchyard: %s: redis.address is not set\n", cfg->path);
        free(sel.ids);
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
        free(sel.ids);
        return 1;
    }
    if (strcmp(argv[0], "list") == 0)
        rc = cli_queue_list(q, &sel, out);
    else if (strcmp(argv[0], "show") == 0)
        rc = cli_queue_show(q, argv[1], out);
    else
        rc = cli_queue_action(cfg, q, op, what, &sel, out);
    queue_put(qp, q);
    queue_pool_free(qp);
    free(sel.ids);
    return rc;
}
