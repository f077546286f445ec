/* cli_hold.c - the hold subcommands: add, list, rm
 *
 * Rules are shared by every node (they live in Redis, queue_admin.c); new
 * mail matching one is held at intake on every node within a second.
 * `hold add --apply` also holds what this node (the configuration's node)
 * has queued; `hold rm` releases this node's recipients at once and the
 * other nodes' within a second (their schedulers sweep).
 */
#include "gateway/cli_hold.h"

#include <stdlib.h>
#include <string.h>

#include "gateway/cli_queue.h"
#include "gateway/queue.h"
#include "gateway/util/clock.h"
#include "gateway/util/log.h"
#include "gateway/util/text.h"
#include "rules/hold.h"

static const char cli_hold_usage[] =
    "usage: switchyard hold add [--sender P] [--recipient P] [--listener NAME]\n"
    "                           [--until TIME] [--apply] [-c FILE]\n"
    "       switchyard hold list [-c FILE]\n"
    "       switchyard hold rm ID [-c FILE]\n"
    "P: example.com, .example.com (and subdomains), bob@example.com, <> (null sender)\n"
    "TIME: 2026-12-24T18:00:00Z, unix seconds, or +DURATION (+30m, +2h, +1d)\n";

/* cli_hold_days - days since 1970-01-01 of a proleptic Gregorian date */
static int64_t cli_hold_days(int64_t y, int64_t m, int64_t d)
{
    /* Howard Hinnant's days_from_civil. */
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* cli_hold_num - exactly n digits at s into *v; -1 when not */
static int cli_hold_num(const char *s, size_t n, int64_t min, int64_t max, int64_t *v)
{
    uint64_t u;

    if (text_parse_u64(s, n, (uint64_t) min, (uint64_t) max, &u) != SY_OK)
        return -1;
    *v = (int64_t) u;
    return 0;
}

int cli_hold_parse_until(const char *s, int64_t now_s, int64_t *until)
{
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    size_t n = s != NULL ? strlen(s) : 0;
    int64_t y, mo, d, h, mi, sec = 0, off = 0, t;
    size_t p;

    if (n == 0)
        return SY_ESYNTAX;
    if (s[0] == '+') {
        uint64_t ms;

        if (text_parse_duration_ms(s + 1, 1000, (uint64_t) 100 * 366 * 86400 * 1000, &ms) != SY_OK)
            return SY_ESYNTAX;
        t = now_s + (int64_t) (ms / 1000);
    } else if (strspn(s, "0123456789") == n) {
        if (cli_hold_num(s, n, 1, HOLD_UNTIL_MAX, &t) != 0)
            return SY_ESYNTAX;
    } else {
        /* YYYY-MM-DDTHH:MM[:SS][.frac](Z|+HH:MM|-HH:MM) */
        if (n < 17 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
            s[13] != ':' || cli_hold_num(s, 4, 1970, 9999, &y) != 0 ||
            cli_hold_num(s + 5, 2, 1, 12, &mo) != 0 || cli_hold_num(s + 8, 2, 1, 31, &d) != 0 ||
            cli_hold_num(s + 11, 2, 0, 23, &h) != 0 || cli_hold_num(s + 14, 2, 0, 59, &mi) != 0)
            return SY_ESYNTAX;
        if (d > mdays[mo - 1] || (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)))
            return SY_ESYNTAX;
        p = 16;
        if (s[p] == ':') {
            if (n < p + 3 || cli_hold_num(s + p + 1, 2, 0, 60, &sec) != 0)
                return SY_ESYNTAX;
            p += 3;
            if (s[p] == '.') {
                p++;
                while (p < n && s[p] >= '0' && s[p] <= '9')
                    p++;
            }
        }
        if (p == n - 1 && (s[p] == 'Z' || s[p] == 'z')) {
            off = 0;
        } else if (p + 6 == n && (s[p] == '+' || s[p] == '-') && s[p + 3] == ':') {
            int64_t oh, om;

            if (cli_hold_num(s + p + 1, 2, 0, 23, &oh) != 0 || cli_hold_num(s + p + 4, 2, 0, 59, &om) != 0)
                return SY_ESYNTAX;
            off = (oh * 3600 + om * 60) * (s[p] == '-' ? -1 : 1);
        } else {
            return SY_ESYNTAX;  /* a time without a zone is ambiguous */
        }
        t = cli_hold_days(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
    }
    if (t < 1 || t > HOLD_UNTIL_MAX)
        return SY_ESYNTAX;
    *until = t;
    return SY_OK;
}

/* cli_hold_print - one rule: ID  sender=...  recipient=...  listener=...  until=... */
static void cli_hold_print(FILE *out, const struct queue_hold_rule *r, int64_t now_s)
{
    char s1[LOG_SAFE_MAX];

    (void) fprintf(out, "%llu", (unsigned long long) r->id);
    (void) fprintf(out, "  sender=%s", r->rule.sender[0] != '\0' ? log_safe(s1, sizeof(s1), r->rule.sender) : "*");
    (void) fprintf(out, "  recipient=%s",
                   r->rule.recipient[0] != '\0' ? log_safe(s1, sizeof(s1), r->rule.recipient) : "*");
    (void) fprintf(out, "  listener=%s",
                   r->rule.listener[0] != '\0' ? log_safe(s1, sizeof(s1), r->rule.listener) : "*");
    if (r->rule.until > 0) {
        char when[40];

        (void) clock_iso8601(r->rule.until * 1000000, when, sizeof(when));
        /* Whole seconds: drop ".000000". */
        if (strlen(when) > 8 && strcmp(when + strlen(when) - 8, ".000000Z") == 0)
            memcpy(when + strlen(when) - 8, "Z", 2);
        (void) fprintf(out, "  until=%s%s", when, hold_rule_expired(&r->rule, now_s) ? " (ended)" : "");
    } else {
        (void) fprintf(out, "  until=-");
    }
    (void) fputc('\n', out);
}

/* cli_hold_add - hold add [...] */
static int cli_hold_add(struct queue *q, int argc, char **argv, FILE *out)
{
    const char *sender = NULL, *recipient = NULL, *listener = NULL;
    int64_t until = 0, now_s = clock_real_ms() / 1000;
    int apply = 0, existed = 0;
    struct queue_hold_rule r;
    struct sy_err err;
    char safe[LOG_SAFE_MAX];

    for (int i = 1; i < argc; i++) {
        const char **dst = NULL;
        const char *a = argv[i], *v = NULL;

        if (strcmp(a, "--apply") == 0) {
            apply = 1;
            continue;
        }
        if (strncmp(a, "--sender", 8) == 0 && (a[8] == '\0' || a[8] == '='))
            dst = &sender;
        else if (strncmp(a, "--recipient", 11) == 0 && (a[11] == '\0' || a[11] == '='))
            dst = &recipient;
        else if (strncmp(a, "--listener", 10) == 0 && (a[10] == '\0' || a[10] == '='))
            dst = &listener;
        else if (strncmp(a, "--until", 7) == 0 && (a[7] == '\0' || a[7] == '='))
            dst = &v;
        if (dst == NULL) {
            (void) fprintf(stderr, "switchyard: hold add: unknown argument %s\n%s",
                           log_safe(safe, sizeof(safe), a), cli_hold_usage);
            return 2;
        }
        if (strchr(a, '=') != NULL) {
            *dst = strchr(a, '=') + 1;
        } else if (i + 1 < argc) {
            *dst = argv[++i];
        } else {
            (void) fprintf(stderr, "switchyard: hold add: %s needs a value\n", a);
            return 2;
        }
        if (dst == &v && cli_hold_parse_until(v, now_s, &until) != SY_OK) {
            (void) fprintf(stderr, "switchyard: hold add: --until: not a time: %s\n%s",
                           log_safe(safe, sizeof(safe), v), cli_hold_usage);
            return 2;
        }
    }
    if (until != 0 && until <= now_s) {
        (void) fprintf(stderr, "switchyard: hold add: --until is in the past\n");
        return 2;
    }
    hold_rule_init(&r.rule);
    if (hold_rule_set(&r.rule, sender, recipient, listener, until, &err) != SY_OK) {
        (void) fprintf(stderr, "switchyard: hold add: %s\n", err.text);
        return 2;
    }
    if (queue_hold_rule_add(q, &r.rule, &r.id, &existed, &err) != SY_OK) {
        (void) fprintf(stderr, "switchyard: hold add: %s\n", err.text);
        return 1;
    }
    (void) fputs(existed ? "exists " : "added ", out);
    cli_hold_print(out, &r, now_s);
    if (apply) {
        size_t n;

        if (cli_queue_apply_rule(q, r.id, &r.rule, &n, &err) != SY_OK) {
            (void) fprintf(stderr, "switchyard: hold add --apply: %s\n", err.text);
            return 1;
        }
        (void) fprintf(out, "%zu queued recipient(s) held\n", n);
    }
    return 0;
}

/* cli_hold_list - every rule, lowest id first */
static int cli_hold_list(struct queue *q, FILE *out)
{
    struct queue_hold_set s;
    struct sy_err err;
    int64_t now_s = clock_real_ms() / 1000;

    if (queue_hold_rules_load(q, &s, &err) != SY_OK) {
        (void) fprintf(stderr, "switchyard: hold list: %s\n", err.text);
        return 1;
    }
    for (size_t i = 0; i < s.n; i++)
        cli_hold_print(out, &s.v[i], now_s);
    (void) fprintf(stderr, "%zu hold rule(s)\n", s.n);
    queue_hold_set_free(&s);
    return 0;
}

/* cli_hold_rm - remove a rule and release this node's recipients it held */
static int cli_hold_rm(struct queue *q, const char *arg, FILE *out)
{
    struct sy_err err;
    uint64_t id;
    size_t n = 0;

    if (text_parse_u64(arg, strlen(arg), 1, INT64_MAX, &id) != SY_OK) {
        char safe[LOG_SAFE_MAX];

        (void) fprintf(stderr, "switchyard: hold rm: not a rule id: %s\n", log_safe(safe, sizeof(safe), arg));
        return 2;
    }
    if (queue_hold_rule_rm(q, id, clock_real_ms(), &err) != SY_OK) {
        (void) fprintf(stderr, "switchyard: hold rm: %s\n", err.text);
        return 1;
    }
    (void) fprintf(out, "removed %llu\n", (unsigned long long) id);
    if (queue_hold_sweep(q, clock_real_ms() / 1000, &n, &err) != SY_OK) {
        (void) fprintf(stderr, "switchyard: hold rm: releasing: %s (the daemon retries within a second)\n",
                       err.text);
        return 1;
    }
    (void) fprintf(out, "%zu recipient(s) released on this node\n", n);
    return 0;
}

int cli_hold(const struct config *cfg, int argc, char **argv, FILE *out)
{
    struct queue_pool *qp;
    struct queue *q;
    struct sy_err err;
    int rc;

    if (argc < 1 || (strcmp(argv[0], "add") != 0 && !(strcmp(argv[0], "list") == 0 && argc == 1) &&
                     !(strcmp(argv[0], "rm") == 0 && argc == 2))) {
        (void) fputs(cli_hold_usage, stderr);
        return 2;
    }
    if (cfg->redis.address == NULL) {
        (void) fprintf(stderr, "switchyard: %s: redis.address is not set\n", cfg->path);
        return 1;
    }
    qp = queue_pool_new(&cfg->redis, cfg->node);
    q = queue_get(qp, &err);
    if (q == NULL) {
        (void) fprintf(stderr, "switchyard: %s\n", err.text);
        queue_pool_free(qp);
        return 1;
    }
    if (strcmp(argv[0], "add") == 0)
        rc = cli_hold_add(q, argc, argv, out);
    else if (strcmp(argv[0], "list") == 0)
        rc = cli_hold_list(q, out);
    else
        rc = cli_hold_rm(q, argv[1], out);
    queue_put(qp, q);
    queue_pool_free(qp);
    return rc;
}
