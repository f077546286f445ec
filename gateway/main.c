/* main.c - subcommand dispatch only
 *
 *   switchyard serve [-c FILE]
 *   switchyard localserve [--state-dir DIR] [--lmtp-port PORT]
 *   switchyard check-config [-c FILE]
 *   switchyard queue list|show|rebuild|hold|release|kick|drop|fail|reroute ... [-c FILE]
 *   switchyard hold add|list|rm ... [-c FILE]
 *   switchyard version
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/cli_hold.h"
#include "gateway/cli_queue.h"
#include "gateway/config.h"
#include "gateway/daemon.h"
#include "gateway/localserve.h"
#include "gateway/util/buf.h"
#include "gateway/util/log.h"
#include "gateway/util/text.h"
#include "gateway/version.h"

#define MAIN_DEFAULT_CONFIG "/etc/switchyard/switchyard.yaml"
/* All configuration errors of one file, one line each. */
#define MAIN_ERRORS_MAX ((size_t) 256 * 1024)

static const char main_usage[] =
    "usage: switchyard COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  serve         run the gateway (LMTP listeners, delivery workers)\n"
    "  localserve    run everything on this machine with embedded defaults\n"
    "  check-config  validate the configuration and print it normalised\n"
    "  queue         list, show, rebuild the queue; hold, release, kick, drop,\n"
    "                fail, reroute recipients\n"
    "  hold          add, list, remove hold rules\n"
    "  version       print the version\n"
    "\n"
    "Run 'switchyard COMMAND --help' for the options of a command.\n";

struct main_cmd {
    const char *name;
    const char *usage;
};

static const struct main_cmd main_cmds[] = {
    { "serve", "usage: switchyard serve [-c FILE]\n"
      "  Runs the gateway in the foreground until SIGTERM or SIGINT.\n"
      "  -c FILE   configuration (default " MAIN_DEFAULT_CONFIG ")\n" },
    { "localserve", "usage: switchyard localserve [--state-dir DIR] [--lmtp-port PORT]\n"
      "  Starts a private redis-server under DIR, LMTP on 127.0.0.1:PORT (2424),\n"
      "  and delivers into DIR/capture.\n"
      "  --state-dir DIR   state directory (default ./localserve-state)\n"
      "  --lmtp-port PORT  LMTP port on 127.0.0.1 (default 2424)\n" },
    { "check-config", "usage: switchyard check-config [-c FILE]\n"
      "  Prints the normalised configuration (exit 0) or every error as\n"
      "  FILE:LINE: key: message (exit 1).\n" },
    { "queue", "usage: switchyard queue COMMAND [SELECTION] [options] [-c FILE]\n"
      "  list [--after QID] [--limit N] [-v]  one line per queued message\n"
      "                (-v: and one per selected recipient)\n"
      "  show QID      the envelope and every recipient's state\n"
      "  rebuild       re-index spool files missing from Redis, mark Redis records\n"
      "                whose spool file is gone (needs the spool lock: daemon stopped)\n"
      "  hold          queued -> held until released\n"
      "  release       held -> queued, due now\n"
      "  kick          next attempt now\n"
      "  drop          fail without a DSN\n"
      "  fail          fail with a DSN\n"
      "  reroute --transport NAME  use that transport instead of the routes\n"
      "SELECTION: QID or QID:IDX arguments and/or filters, all must match:\n"
      "  --sender P, --recipient P (example.com, .example.com, bob@example.com, <>),\n"
      "  --listener NAME, --held, --transport NAME (reroute: --via NAME),\n"
      "  --older-than AGE, --newer-than AGE (30m, 4h, 2d); --all selects everything\n" },
    { "hold", "usage: switchyard hold add|list|rm [options] [-c FILE]\n"
      "  add [--sender P] [--recipient P] [--listener NAME] [--until TIME] [--apply]\n"
      "           hold new mail that matches (every node); --apply: and what this\n"
      "           node has queued; TIME: 2026-12-24T18:00:00Z, unix seconds, +2h\n"
      "  list     every rule\n"
      "  rm ID    remove a rule and release what it held\n" },
    { "version", "usage: switchyard version\n" },
};

/* main_usage_of - the usage text of a command */
static const char *main_usage_of(const char *cmd)
{
    for (size_t i = 0; i < sizeof(main_cmds) / sizeof(main_cmds[0]); i++)
        if (strcmp(main_cmds[i].name, cmd) == 0)
            return main_cmds[i].usage;
    return main_usage;
}

/* main_load - load the configuration or print its errors */
static struct config *main_load(const char *path)
{
    struct buf errors;
    struct config *cfg;

    buf_init(&errors, MAIN_ERRORS_MAX);
    cfg = config_load(path, &errors);
    if (cfg == NULL)
        (void) fputs(buf_str(&errors), stderr);
    buf_free(&errors);
    return cfg;
}

/* main_admin - `queue` and `hold`: their own options go through untouched;
 * only -c/--config and --help are taken out here */
static int main_admin(const char *cmd, int argc, char **argv)
{
    const char *path = MAIN_DEFAULT_CONFIG;
    char **rest = calloc((size_t) argc + 1, sizeof(*rest));
    struct config *cfg;
    int n = 0, rc;

    if (rest == NULL)
        return 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            (void) fputs(main_usage_of(cmd), stdout);
            free(rest);
            return 0;
        }
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                (void) fputs(main_usage_of(cmd), stderr);
                free(rest);
                return 2;
            }
            path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        } else if (strncmp(argv[i], "-c", 2) == 0) {
            path = argv[i] + 2;
        } else {
            rest[n++] = argv[i];
        }
    }
    cfg = main_load(path);
    if (cfg == NULL) {
        free(rest);
        return 1;
    }
    log_init("switchyard", (enum log_level) cfg->log.level, 1, cfg->log.syslog);
    if (strcmp(cmd, "queue") == 0)
        rc = cli_queue(cfg, n, rest, stdout);
    else
        rc = cli_hold(cfg, n, rest, stdout);
    config_free(cfg);
    free(rest);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "state-dir", required_argument, NULL, 's' },
        { "lmtp-port", required_argument, NULL, 'p' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *cmd, *path = MAIN_DEFAULT_CONFIG;
    struct localserve_opts lo = { 0 };
    struct config *cfg;
    int c, rc;

    log_init("switchyard", LOG_LVL_INFO, 1, 0);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        (void) fputs(main_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    cmd = argv[1];
    if (strcmp(cmd, "--version") == 0)
        cmd = "version";
    if (main_usage_of(cmd) == main_usage) {
        (void) fprintf(stderr, "switchyard: unknown command \"%s\"\n\n%s", cmd, main_usage);
        return 2;
    }
    argv++;
    argc--;
    if (strcmp(cmd, "queue") == 0 || strcmp(cmd, "hold") == 0)
        return main_admin(cmd, argc, argv);
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 's':
            lo.state_dir = optarg;
            break;
        case 'p': {
            uint64_t port;

            if (text_parse_u64(optarg, strlen(optarg), 1, 65535, &port) != 0) {
                (void) fprintf(stderr, "switchyard: --lmtp-port: not a port: %s\n", optarg);
                return 2;
            }
            lo.lmtp_port = (unsigned) port;
            break;
        }
        case 'h':
            (void) fputs(main_usage_of(cmd), stdout);
            return 0;
        default:
            (void) fputs(main_usage_of(cmd), stderr);
            return 2;
        }
    }
    if (optind < argc) {
        (void) fprintf(stderr, "switchyard: %s: unexpected argument \"%s\"\n", cmd, argv[optind]);
        return 2;
    }
    if (strcmp(cmd, "version") == 0) {
        (void) printf("switchyard %s\n", SWITCHYARD_VERSION);
        return 0;
    }
    if (strcmp(cmd, "localserve") == 0) {
        daemon_block_signals();
        return localserve_run(&lo);
    }
    cfg = main_load(path);
    if (cfg == NULL)
        return 1;
    log_init("switchyard", (enum log_level) cfg->log.level, 1, cfg->log.syslog);
    if (strcmp(cmd, "check-config") == 0) {
        config_dump(cfg, stdout);
        rc = 0;
    } else {
        daemon_block_signals();
        rc = daemon_run(cfg);
    }
    config_free(cfg);
    return rc;
}
