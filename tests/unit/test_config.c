/* test_config.c - gateway/config: load, validate, dump, addresses, secrets
 *
 * Tables of good documents (checked through the dump, which prints every
 * field) and bad ones (checked against the exact error text, so the line
 * and key path of each problem are asserted), then the dump -> load round
 * trip, password files, file-level limits and cfg_addr_parse().
 * Runs with cwd tests/unit (data/config/ holds the example file).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/config.h"
#include "gateway/util/buf.h"
#include "gateway/util/err.h"
#include "gateway/util/log.h"

#define ERRORS_MAX ((size_t) 64 * 1024)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A valid tail: five lines, so problems placed before it keep their line. */
#define BASE "spool:\n  dir: /srv/sy/spool\nlmtp:\n  listeners:\n    - address: unix:/run/sy/lmtp.sock\n"
#define LISTENER "  listeners:\n    - address: unix:/run/sy/lmtp.sock\n"
#define SPOOL "spool:\n  dir: /srv/sy/spool\n"

/* load - config_load_mem on a C string, name "t.yaml" */
static struct config *load(const char *yaml, struct buf *errors)
{
    return config_load_mem("t.yaml", yaml, strlen(yaml), errors);
}

/* dump - config_dump into a new string (free() it) */
static char *dump(const struct config *cfg)
{
    char *p = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&p, &n);

    assert_non_null(f);
    config_dump(cfg, f);
    assert_int_equal(fclose(f), 0);
    return p;
}

/* ---- good documents ------------------------------------------------------ */

/* Every field of a minimal document, straight from the struct. */
static void test_defaults(void **state)
{
    struct buf e;
    struct config *c;
    const struct cfg_listener *l;

    (void) state;
    buf_init(&e, ERRORS_MAX);
    c = load("node: n1\n" BASE, &e);
    assert_string_equal(buf_str(&e), "");
    assert_non_null(c);
    assert_string_equal(c->path, "t.yaml");
    assert_string_equal(c->node, "n1");
    assert_null(c->user);
    assert_int_equal(c->log.level, LOG_LVL_INFO);
    assert_false(c->log.syslog);
    assert_null(c->redis.address);
    assert_null(c->redis.password);
    assert_int_equal(c->redis.db, 0);
    assert_string_equal(c->redis.prefix, "sy");
    assert_int_equal(c->redis.connect_timeout_ms, 2000);
    assert_int_equal(c->redis.command_timeout_ms, 2000);
    assert_string_equal(c->spool.dir, "/srv/sy/spool");
    assert_int_equal(c->spool.min_free, 2 * 10240000ULL);
    assert_string_equal(c->lmtp.hostname, "n1");
    assert_int_equal(c->lmtp.max_connections, 100);
    assert_int_equal(c->lmtp.line_length_limit, 2048);
    assert_int_equal(c->lmtp.message_size_limit, 10240000);
    assert_int_equal(c->lmtp.recipient_limit, 1000);
    assert_int_equal(c->lmtp.soft_error_limit, 10);
    assert_int_equal(c->lmtp.hard_error_limit, 20);
    assert_int_equal(c->lmtp.junk_command_limit, 100);
    assert_int_equal(c->lmtp.command_timeout_ms, 300000);
    assert_int_equal(c->lmtp.data_timeout_ms, 300000);
    assert_int_equal(c->lmtp.min_data_rate, 500);
    assert_int_equal(c->lmtp.bare_line_endings, CFG_BARE_REJECT);
    assert_int_equal(c->lmtp.futurerelease_max_ms, 7ULL * 86400000);
    assert_int_equal(c->lmtp.nlisteners, 1);
    l = &c->lmtp.listeners[0];
    assert_string_equal(l->name, "lmtp0");
    assert_string_equal(l->address, "unix:/run/sy/lmtp.sock");
    assert_true(l->addr.is_unix);
    assert_string_equal(l->addr.path, "/run/sy/lmtp.sock");
    assert_null(l->addr.host);
    assert_int_equal(l->mode, 0660);
    assert_false(l->trusted);
    assert_string_equal(c->delivery.default_transport, "capture");
    assert_int_equal(c->delivery.workers, 4);
    assert_int_equal(c->delivery.retry_first_ms, 5ULL * 60000);
    assert_int_equal(c->delivery.retry_max_ms, 4ULL * 3600000);
    assert_int_equal(c->delivery.expiry_ms, 5ULL * 86400000);
    assert_int_equal(c->delivery.lease_ms, 10ULL * 60000);
    assert_string_equal(c->capture.dir, "/srv/sy/capture");
    config_free(c);
    buf_free(&e);
}

/* Without node:, the host name is used, made to fit [A-Za-z0-9._-]{1,64}. */
static void test_default_node(void **state)
{
    struct buf e;
    struct config *c;
    size_t n;

    (void) state;
    buf_init(&e, ERRORS_MAX);
    c = load(BASE, &e);
    assert_non_null(c);
    n = strlen(c->node);
    assert_true(n >= 1 && n <= 64);
    assert_int_equal(strspn(c->node, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"), n);
    assert_string_equal(c->lmtp.hostname, c->node);
    config_free(c);
    buf_free(&e);
}

struct good_case {
    const char *name;
    const char *yaml;
    const char *want[10];       /* substrings of the dump */
};

static const struct good_case good_cases[] = {
    { "every key set",
      "node: mx1.example\n"
      "user: switchyard\n"
      "log:\n  level: DEBUG\n  syslog: yes\n"
      "redis:\n  address: \"[::1]:6380\"\n  db: 15\n  prefix: sy_test-1\n"
      "  connect_timeout: 1500ms\n  command_timeout: 300s\n"
      "spool:\n  dir: /var/spool/switchyard/spool\n  min_free: 1g\n"
      "lmtp:\n  hostname: lmtp.example\n  max_connections: 10000\n  line_length_limit: 512\n"
      "  message_size_limit: 2g\n  recipient_limit: 100\n  soft_error_limit: 5\n"
      "  hard_error_limit: 5\n  junk_command_limit: 1\n  command_timeout: 1h\n"
      "  data_timeout: 1s\n  min_data_rate: 0\n  bare_line_endings: normalize\n"
      "  futurerelease_max: 365d\n"
      "  listeners:\n    - name: mta\n      address: unix:/run/switchyard/lmtp.sock\n"
      "      mode: 0600\n      trusted: true\n"
      "    - address: 127.0.0.1:2525\n"
      "delivery:\n  default_transport: relay\n  workers: 256\n  retry_first: 1s\n"
      "  retry_max: 7d\n  expiry: 30d\n  lease: 10s\n"
      "capture:\n  dir: /var/lib/switchyard/capture\n",
      { "node: \"mx1.example\"\nuser: \"switchyard\"\nlog:\n  level: debug\n  syslog: true\n",
        "  address: \"[::1]:6380\"\n  # password: (not set)\n  db: 15\n  prefix: \"sy_test-1\"\n"
        "  connect_timeout: 1500ms\n  command_timeout: 5m\n",
        "  dir: \"/var/spool/switchyard/spool\"\n  min_free: 1073741824\n",
        "  hostname: \"lmtp.example\"\n  max_connections: 10000\n  line_length_limit: 512\n"
        "  message_size_limit: 2147483648\n  recipient_limit: 100\n  soft_error_limit: 5\n"
        "  hard_error_limit: 5\n  junk_command_limit: 1\n  command_timeout: 1h\n  data_timeout: 1s\n"
        "  min_data_rate: 0\n  bare_line_endings: normalize\n  futurerelease_max: 365d\n",
        "    - name: \"mta\"\n      address: \"unix:/run/switchyard/lmtp.sock\"\n"
        "      mode: \"0600\"\n      trusted: true\n"
        "    - name: \"lmtp1\"\n      address: \"127.0.0.1:2525\"\n      mode: \"0660\"\n      trusted: false\n",
        "  default_transport: \"relay\"\n  workers: 256\n  retry_first: 1s\n  retry_max: 7d\n"
        "  expiry: 30d\n  lease: 10s\n",
        "capture:\n  dir: \"/var/lib/switchyard/capture\"\n" } },
    { "durations: plain seconds, ms, minutes, days",
      "redis:\n  connect_timeout: 30\n  command_timeout: 100ms\n"
      "delivery:\n  retry_first: 90\n  retry_max: 1d\n  expiry: 1m\n  lease: 86400\n" BASE,
      { "  connect_timeout: 30s\n  command_timeout: 100ms\n",
        "  retry_first: 90s\n  retry_max: 1d\n  expiry: 1m\n  lease: 1d\n" } },
    { "sizes: k, m, g and min_free following message_size_limit",
      "lmtp:\n  message_size_limit: 10m\n  min_data_rate: 1k\n" LISTENER SPOOL,
      { "  message_size_limit: 10485760\n", "  min_free: 20971520\n", "  min_data_rate: 1024\n" } },
    { "booleans and modes",
      "log:\n  syslog: No\n" SPOOL
      "lmtp:\n  listeners:\n    - address: unix:/a\n      mode: \"0o640\"\n      trusted: YES\n"
      "    - address: unix:/b\n      mode: 644\n      trusted: False\n"
      "    - address: unix:/c\n      mode: 0\n",
      { "  syslog: false\n", "      mode: \"0640\"\n      trusted: true\n",
        "      mode: \"0644\"\n      trusted: false\n", "      mode: \"0000\"\n" } },
    { "empty sections and null values take the defaults",
      "user:\nlog: ~\nredis:\n  db: null\n  prefix: ~\ndelivery:\ncapture:\n" BASE,
      { "# user: (not set: no privilege drop)\n", "  db: 0\n  prefix: \"sy\"\n",
        "  workers: 4\n", "capture:\n  dir: \"/srv/sy/capture\"\n" } },
    { "quoted null is a string, not null",
      "node: \"null\"\n" BASE, { "node: \"null\"\n" } },
    { "spool.dir normalised, capture beside it",
      "spool:\n  dir: //srv//sy/spool/\nlmtp:\n" LISTENER,
      { "  dir: \"/srv/sy/spool\"\n", "capture:\n  dir: \"/srv/sy/capture\"\n" } },
    { "spool directly under /: capture is /capture",
      "spool:\n  dir: /spool\nlmtp:\n" LISTENER, { "capture:\n  dir: \"/capture\"\n" } },
    { "addresses: localhost, IPv6, unix",
      "redis:\n  address: unix:/run/redis/redis.sock\n" SPOOL
      "lmtp:\n  listeners:\n    - address: localhost:24\n    - address: \"[2001:db8::1]:10024\"\n",
      { "  address: \"unix:/run/redis/redis.sock\"\n", "      address: \"localhost:24\"\n",
        "      address: \"[2001:db8::1]:10024\"\n" } },
    { "CRLF line ends and a byte order mark",
      "\xef\xbb\xbfnode: crlf\r\nspool:\r\n  dir: /srv/sy/spool\r\nlmtp:\r\n  listeners:\r\n"
      "    - address: unix:/x\r\n", { "node: \"crlf\"\n" } },
    { "flow style",
      "{node: flow, spool: {dir: /s/p}, lmtp: {listeners: [{address: \"127.0.0.1:2424\", name: a}]}}\n",
      { "node: \"flow\"\n", "    - name: \"a\"\n      address: \"127.0.0.1:2424\"\n" } },
    { "the document localserve embeds",
      "# switchyard localserve: embedded defaults\nnode: localserve\n"
      "redis:\n  address: \"unix:/tmp/ls/redis.sock\"\nspool:\n  dir: \"/tmp/ls/spool\"\n"
      "lmtp:\n  hostname: localhost\n  listeners:\n    - name: local\n      address: \"127.0.0.1:2424\"\n"
      "delivery:\n  default_transport: capture\n  workers: 2\n"
      "  retry_first: 30s\n  retry_max: 5m\n  expiry: 1h\n  lease: 1m\n"
      "capture:\n  dir: \"/tmp/ls/capture\"\n",
      { "  hostname: \"localhost\"\n", "  workers: 2\n  retry_first: 30s\n  retry_max: 5m\n  expiry: 1h\n  lease: 1m\n" } },
    { "strings with quotes and backslashes are escaped in the dump",
      "lmtp:\n  listeners:\n    - address: unix:/run/a\"b\\c\n" SPOOL,
      { "      address: \"unix:/run/a\\\"b\\\\c\"\n" } },
};

/* Good documents: no error, and the dump shows each expected value. */
static void test_good(void **state)
{
    (void) state;
    for (size_t i = 0; i < ARRAY_SIZE(good_cases); i++) {
        const struct good_case *g = &good_cases[i];
        struct buf e;
        struct config *c;
        char *d;

        print_message("good: %s\n", g->name);
        buf_init(&e, ERRORS_MAX);
        c = load(g->yaml, &e);
        assert_string_equal(buf_str(&e), "");
        assert_non_null(c);
        d = dump(c);
        for (size_t k = 0; k < ARRAY_SIZE(g->want) && g->want[k] != NULL; k++) {
            if (strstr(d, g->want[k]) == NULL)
                print_message("missing:\n%s\nin:\n%s\n", g->want[k], d);
            assert_non_null(strstr(d, g->want[k]));
        }
        free(d);
        config_free(c);
        buf_free(&e);
    }
}

/* dump -> load -> dump gives the same text, for every good document. */
static void test_round_trip(void **state)
{
    (void) state;
    for (size_t i = 0; i < ARRAY_SIZE(good_cases); i++) {
        struct buf e;
        struct config *c, *c2;
        char *d, *d2;

        print_message("round trip: %s\n", good_cases[i].name);
        buf_init(&e, ERRORS_MAX);
        c = load(good_cases[i].yaml, &e);
        assert_non_null(c);
        d = dump(c);
        c2 = config_load_mem("t.yaml", d, strlen(d), &e);
        assert_string_equal(buf_str(&e), "");
        assert_non_null(c2);
        d2 = dump(c2);
        assert_string_equal(d, d2);
        assert_string_equal(c2->node, c->node);
        assert_int_equal(c2->lmtp.nlisteners, c->lmtp.nlisteners);
        free(d);
        free(d2);
        config_free(c);
        config_free(c2);
        buf_free(&e);
    }
}

/* The IPv6 and localhost listeners parse to numeric hosts. */
static void test_listener_hosts(void **state)
{
    struct buf e;
    struct config *c;

    (void) state;
    buf_init(&e, ERRORS_MAX);
    c = load(good_cases[8].yaml, &e);
    assert_non_null(c);
    assert_string_equal(c->redis.addr.path, "/run/redis/redis.sock");
    assert_true(c->redis.addr.is_unix);
    assert_false(c->lmtp.listeners[0].addr.is_unix);
    assert_string_equal(c->lmtp.listeners[0].addr.host, "127.0.0.1");
    assert_int_equal(c->lmtp.listeners[0].addr.port, 24);
    assert_string_equal(c->lmtp.listeners[1].addr.host, "2001:db8::1");
    assert_int_equal(c->lmtp.listeners[1].addr.port, 10024);
    config_free(c);
    buf_free(&e);
}

/* ---- bad documents ------------------------------------------------------- */

struct bad_case {
    const char *name;
    const char *yaml;
    const char *errors;         /* the exact error text */
};

static const struct bad_case bad_cases[] = {
    /* structure */
    { "unknown top-level key", "bogus: 1\n" BASE, "t.yaml:1: bogus: unknown key\n" },
    { "unknown key with a suggestion", "log:\n  levle: info\n" BASE,
      "t.yaml:2: log.levle: unknown key (did you mean \"level\"?)\n" },
    { "unknown key three levels down",
      SPOOL "lmtp:\n  listeners:\n    - adress: unix:/x\n",
      "t.yaml:5: lmtp.listeners[0].adress: unknown key (did you mean \"address\"?)\n"
      "t.yaml:5: lmtp.listeners[0].address: required key is missing (unix:/path or host:port)\n" },
    { "unknown key holding a subtree is skipped whole",
      "extra:\n  a: [1, {b: c}]\n  d: {e: f}\n" BASE, "t.yaml:1: extra: unknown key\n" },
    { "duplicate key", "node: a\nnode: b\n" BASE, "t.yaml:2: node: duplicate key (first given on line 1)\n" },
    { "duplicate key in a listener",
      SPOOL "lmtp:\n  listeners:\n    - address: unix:/x\n      address: unix:/y\n",
      "t.yaml:6: lmtp.listeners[0].address: duplicate key (first given on line 5)\n" },
    { "scalar where a mapping belongs", "redis: 5\n" BASE,
      "t.yaml:1: redis: expected a mapping, found a single value\n" },
    { "quoted null where a mapping belongs", "redis: \"null\"\n" BASE,
      "t.yaml:1: redis: expected a mapping, found a single value\n" },
    { "list where a value belongs", "node: [a, b]\n" BASE,
      "t.yaml:1: node: expected a single value, found a list\n" },
    { "mapping where a list belongs", SPOOL "lmtp:\n  listeners:\n    address: unix:/x\n",
      "t.yaml:4: lmtp.listeners: expected a list, found a mapping\n" },
    { "null list entry", SPOOL "lmtp:\n  listeners:\n    -\n",
      "t.yaml:5: lmtp.listeners[0]: expected a mapping, found a single value\n" },
    { "top level is a list", "- a\n- b\n", "t.yaml:1: the configuration must be a mapping of keys, found a list\n" },
    { "top level is a scalar", "hello\n", "t.yaml:1: the configuration must be a mapping of keys, found a single value\n" },
    { "empty document", "---\n", "t.yaml:1: the configuration is empty\n" },
    { "only comments", "# nothing\n\n", "t.yaml:1: the configuration is empty\n" },
    { "empty input", "", "t.yaml:1: the configuration is empty\n" },
    { "syntax error", "node: a\nuser: b: c\n" BASE,
      "t.yaml:2: YAML syntax error: mapping values are not allowed in this context\n" },
    { "unterminated flow", "node: a\nextra: [\n",
      "t.yaml:2: extra: unknown key\n"
      "t.yaml:3: YAML syntax error: while parsing a flow node, did not find expected node content\n" },
    { "tab indentation", "spool:\n\tdir: /x\n",
      "t.yaml:2: YAML syntax error: while scanning for the next token, found character that cannot start any token\n" },
    { "second document", BASE "---\nnode: b\n", "t.yaml:6: only one YAML document is allowed\n" },
    { "anchor and alias", "node: &n a\nuser: *n\n" BASE,
      "t.yaml:1: anchors (&name) are not supported\nt.yaml:2: aliases (*name) are not supported\n" },
    { "tag", "node: !!str a\n" BASE, "t.yaml:1: tags (!name) are not supported\n" },
    { "complex key", "? [a]\n: b\n" BASE, "t.yaml:1: a key must be a single value, not a list\n" },
    { "invalid UTF-8", "node: a\nuser: \"\xc3\x28\"\n" BASE, "t.yaml:2: the file is not valid UTF-8\n" },

    /* types and ranges */
    { "integer expected", "redis:\n  db: abc\n" BASE,
      "t.yaml:2: redis.db: expected an integer from 0 to 15, got \"abc\"\n" },
    { "negative integer", "delivery:\n  workers: -1\n" BASE,
      "t.yaml:2: delivery.workers: expected an integer from 0 to 256, got \"-1\"\n" },
    { "integer out of range", "redis:\n  db: 16\n" BASE, "t.yaml:2: redis.db: 16 is out of range (0 to 15)\n" },
    { "huge integer", "redis:\n  db: 99999999999999999999999\n" BASE,
      "t.yaml:2: redis.db: 99999999999999999999999 is out of range (0 to 15)\n" },
    { "RFC 5321 minimums", SPOOL "lmtp:\n  line_length_limit: 511\n  recipient_limit: 99\n" LISTENER,
      "t.yaml:4: lmtp.line_length_limit: 511 is out of range (512 to 65536)\n"
      "t.yaml:5: lmtp.recipient_limit: 99 is out of range (100 to 100000)\n" },
    { "boolean expected", "log:\n  syslog: maybe\n" BASE,
      "t.yaml:2: log.syslog: expected true or false, got \"maybe\"\n" },
    { "log level", "log:\n  level: verbose\n" BASE,
      "t.yaml:2: log.level: expected one of debug, info, warning, error, got \"verbose\"\n" },
    { "bare line endings", SPOOL "lmtp:\n  bare_line_endings: accept\n" LISTENER,
      "t.yaml:4: lmtp.bare_line_endings: expected one of reject, normalize, got \"accept\"\n" },
    { "bad duration", "redis:\n  connect_timeout: 5x\n  command_timeout: 1.5s\n" BASE,
      "t.yaml:2: redis.connect_timeout: \"5x\" is not a duration (examples: 1500ms, 30s, 5m, 4h, 5d)\n"
      "t.yaml:3: redis.command_timeout: \"1.5s\" is not a duration (examples: 1500ms, 30s, 5m, 4h, 5d)\n" },
    { "duration out of range", "redis:\n  connect_timeout: 50ms\n" BASE,
      "t.yaml:2: redis.connect_timeout: \"50ms\" is out of range (100ms to 1m)\n" },
    { "duration too long", "delivery:\n  expiry: 31d\n" BASE,
      "t.yaml:2: delivery.expiry: \"31d\" is out of range (1m to 30d)\n" },
    { "bad size", SPOOL "  min_free: 10q\nlmtp:\n" LISTENER,
      "t.yaml:3: spool.min_free: \"10q\" is not a size (examples: 10240000, 512k, 10m, 1g)\n" },
    { "size out of range", SPOOL "lmtp:\n  message_size_limit: 3g\n" LISTENER,
      "t.yaml:4: lmtp.message_size_limit: \"3g\" is out of range (1k to 2g)\n" },
    { "size below minimum", SPOOL "lmtp:\n  message_size_limit: 512\n" LISTENER,
      "t.yaml:4: lmtp.message_size_limit: \"512\" is out of range (1k to 2g)\n" },
    { "value too long (reported by libcyaml)", NULL,
      "t.yaml:7: lmtp.listeners[1].name: value is too long (at most 4096 bytes)\n" },

    /* required keys */
    { "missing spool section", "lmtp:\n" LISTENER,
      "t.yaml:1: spool.dir: required key is missing (the spool directory)\n" },
    { "missing spool.dir", "node: a\nspool:\n  min_free: 1g\nlmtp:\n" LISTENER,
      "t.yaml:2: spool.dir: required key is missing (the spool directory)\n" },
    { "null spool.dir", "spool:\n  dir: ~\nlmtp:\n" LISTENER,
      "t.yaml:2: spool.dir: required key is missing (the spool directory)\n" },
    { "missing listeners", SPOOL "lmtp:\n  hostname: a\n", "t.yaml:3: lmtp.listeners: at least one listener is required\n" },
    { "missing lmtp", SPOOL, "t.yaml:1: lmtp.listeners: at least one listener is required\n" },
    { "empty listener list", SPOOL "lmtp:\n  listeners: []\n",
      "t.yaml:4: lmtp.listeners: at least one listener is required\n" },
    { "listener without address", SPOOL "lmtp:\n  listeners:\n    - name: a\n",
      "t.yaml:5: lmtp.listeners[0].address: required key is missing (unix:/path or host:port)\n" },

    /* paths and names */
    { "relative spool.dir", "spool:\n  dir: var/spool\nlmtp:\n" LISTENER,
      "t.yaml:2: spool.dir: \"var/spool\" is not an absolute path\n" },
    { "dot-dot in spool.dir", "spool:\n  dir: /srv/../etc\nlmtp:\n" LISTENER,
      "t.yaml:2: spool.dir: \"/srv/../etc\": \".\" and \"..\" are not allowed in the path\n" },
    { "spool.dir is /", "spool:\n  dir: /\nlmtp:\n" LISTENER,
      "t.yaml:2: spool.dir: the root directory cannot be used\n" },
    { "capture.dir equals spool.dir", "capture:\n  dir: /srv/sy/spool/\n" BASE,
      "t.yaml:2: capture.dir: capture.dir and spool.dir must be different directories\n" },
    { "bad node name", "node: \"mx 1\"\n" BASE,
      "t.yaml:1: node: \"mx 1\" is not a valid node name (1 to 64 characters from A-Z a-z 0-9 ._-)\n" },
    { "node name too long",
      "node: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n" BASE,
      "t.yaml:1: node: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" "
      "is not a valid node name (1 to 64 characters from A-Z a-z 0-9 ._-)\n" },
    { "bad user", "user: -root\n" BASE, "t.yaml:1: user: a user name cannot start with \"-\"\n" },
    { "bad prefix", "redis:\n  prefix: \"sy:x\"\n" BASE,
      "t.yaml:2: redis.prefix: \"sy:x\" is not a valid key prefix (1 to 32 characters from A-Z a-z 0-9 _-)\n" },
    { "bad listener name", SPOOL "lmtp:\n  listeners:\n    - name: \"a/b\"\n      address: unix:/x\n",
      "t.yaml:5: lmtp.listeners[0].name: \"a/b\" is not a valid listener name "
      "(1 to 64 characters from A-Z a-z 0-9 ._-)\n" },
    { "bad mode", SPOOL "lmtp:\n  listeners:\n    - address: unix:/x\n      mode: 0999\n"
      "    - address: unix:/y\n      mode: 01777\n",
      "t.yaml:6: lmtp.listeners[0].mode: expected octal permissions from 0000 to 0777, got \"0999\"\n"
      "t.yaml:8: lmtp.listeners[1].mode: expected octal permissions from 0000 to 0777, got \"01777\"\n" },

    /* addresses */
    { "TCP port 25", SPOOL "lmtp:\n  listeners:\n    - address: 127.0.0.1:25\n",
      "t.yaml:5: lmtp.listeners[0].address: TCP port 25 is refused: LMTP must not be used on the SMTP port "
      "(RFC 2033 section 5)\n" },
    { "host name instead of an address", "redis:\n  address: redis.example:6379\n" BASE,
      "t.yaml:2: redis.address: \"redis.example:6379\": the host must be a numeric IP address or localhost\n" },
    { "no port", SPOOL "lmtp:\n  listeners:\n    - address: localhost\n",
      "t.yaml:5: lmtp.listeners[0].address: \"localhost\": expected unix:/path, host:port or [IPv6-address]:port\n" },
    { "port 0", SPOOL "lmtp:\n  listeners:\n    - address: 127.0.0.1:0\n",
      "t.yaml:5: lmtp.listeners[0].address: \"127.0.0.1:0\": the port must be a number from 1 to 65535\n" },
    { "IPv6 without brackets", SPOOL "lmtp:\n  listeners:\n    - address: \"::1:24\"\n",
      "t.yaml:5: lmtp.listeners[0].address: \"::1:24\": an IPv6 address must be written in brackets: [::1]:port\n" },
    { "relative unix path", SPOOL "lmtp:\n  listeners:\n    - address: unix:lmtp.sock\n",
      "t.yaml:5: lmtp.listeners[0].address: \"unix:lmtp.sock\": a UNIX socket needs an absolute path (unix:/path)\n" },
    { "duplicate listener names and addresses",
      SPOOL "lmtp:\n  listeners:\n    - address: unix:/a\n    - name: lmtp0\n      address: unix:/a\n",
      "t.yaml:6: lmtp.listeners[1].name: the name \"lmtp0\" is already used by lmtp.listeners[0]\n"
      "t.yaml:7: lmtp.listeners[1].address: the same address as lmtp.listeners[0]\n" },

    /* secrets */
    { "password and password_file", "redis:\n  password: pw\n  password_file: /run/secret\n" BASE,
      "t.yaml:3: redis.password_file: set either redis.password or redis.password_file, not both\n" },
    { "password with a control character", "redis:\n  password: \"sec\\tret\"\n" BASE,
      "t.yaml:2: redis.password: the password must be non-empty, without control characters\n" },
    { "redacted placeholder", "redis:\n  password: \"<redacted>\"\n" BASE,
      "t.yaml:2: redis.password: \"<redacted>\" is the placeholder written by check-config: "
      "put the real password here, or use password_file\n" },
    { "relative password_file", "redis:\n  password_file: secret\n" BASE,
      "t.yaml:2: redis.password_file: \"secret\" is not an absolute path\n" },

    /* cross-field rules */
    { "hard < soft", SPOOL "lmtp:\n  soft_error_limit: 15\n  hard_error_limit: 12\n" LISTENER,
      "t.yaml:5: lmtp.hard_error_limit: hard_error_limit (12) must not be lower than soft_error_limit (15)\n" },
    { "soft above the default hard", SPOOL "lmtp:\n  soft_error_limit: 30\n" LISTENER,
      "t.yaml:4: lmtp.soft_error_limit: hard_error_limit (20) must not be lower than soft_error_limit (30)\n" },
    { "retry_max < retry_first", "delivery:\n  retry_first: 1h\n  retry_max: 30m\n" BASE,
      "t.yaml:3: delivery.retry_max: retry_max (30m) must not be shorter than retry_first (1h)\n" },

    /* several problems: all reported, in line order */
    { "every kind at once",
      "log:\n  level: loud\nbogus: 1\nnode: a\nspool:\n  min_free: x\n"
      "lmtp:\n  listeners:\n    - address: 127.0.0.1:25\n      mode: 8\n",
      "t.yaml:2: log.level: expected one of debug, info, warning, error, got \"loud\"\n"
      "t.yaml:3: bogus: unknown key\n"
      "t.yaml:5: spool.dir: required key is missing (the spool directory)\n"
      "t.yaml:6: spool.min_free: \"x\" is not a size (examples: 10240000, 512k, 10m, 1g)\n"
      "t.yaml:9: lmtp.listeners[0].address: TCP port 25 is refused: LMTP must not be used on the SMTP port "
      "(RFC 2033 section 5)\n"
      "t.yaml:10: lmtp.listeners[0].mode: expected octal permissions from 0000 to 0777, got \"8\"\n" },
};

/* long_value_yaml - a listener name past libcyaml's length limit */
static char *long_value_yaml(void)
{
    struct buf b;

    buf_init(&b, 16384);
    assert_int_equal(buf_append_str(&b, SPOOL "lmtp:\n  listeners:\n    - address: unix:/a\n"
                                    "    - address: unix:/b\n      name: "), SY_OK);
    for (int i = 0; i < 5000; i++)
        assert_int_equal(buf_append_byte(&b, 'n'), SY_OK);
    assert_int_equal(buf_append_str(&b, "\n"), SY_OK);
    return buf_take(&b, NULL);
}

/* Bad documents: NULL, the exact errors, and earlier text in errors kept. */
static void test_bad(void **state)
{
    (void) state;
    for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++) {
        const struct bad_case *b = &bad_cases[i];
        char *gen = b->yaml == NULL ? long_value_yaml() : NULL;
        struct buf e;
        struct config *c;

        print_message("bad: %s\n", b->name);
        buf_init(&e, ERRORS_MAX);
        assert_int_equal(buf_append_str(&e, "earlier\n"), SY_OK);
        c = load(gen != NULL ? gen : b->yaml, &e);
        assert_null(c);
        assert_true(strncmp(buf_str(&e), "earlier\n", 8) == 0);
        if (strcmp(buf_str(&e) + 8, b->errors) != 0)
            print_message("got:\n%s", buf_str(&e) + 8);
        assert_string_equal(buf_str(&e) + 8, b->errors);
        /* No secret ever reaches the error text. */
        assert_null(strstr(buf_str(&e), "sec\tret"));
        assert_null(strstr(buf_str(&e), "pw\n"));
        free(gen);
        buf_free(&e);
    }
}

/* ---- limits -------------------------------------------------------------- */

enum gen_kind { GEN_BRACKET, GEN_LISTENER, GEN_UNKNOWN_KEY };

/* gen_many - head, n generated lines (or brackets), tail: a new string */
static char *gen_many(const char *head, enum gen_kind kind, int n, const char *tail)
{
    struct buf b;

    buf_init(&b, (size_t) 2 * 1024 * 1024);
    assert_int_equal(buf_append_str(&b, head), SY_OK);
    for (int i = 0; i < n; i++) {
        int rc = SY_OK;

        switch (kind) {
        case GEN_BRACKET:
            rc = buf_append_str(&b, "[");
            break;
        case GEN_LISTENER:
            rc = buf_printf(&b, "    - address: unix:/s/%d\n      name: l%d\n", i, i);
            break;
        case GEN_UNKNOWN_KEY:
            rc = buf_printf(&b, "k%d: %d\n", i, i);
            break;
        }
        assert_int_equal(rc, SY_OK);
    }
    assert_int_equal(buf_append_str(&b, tail), SY_OK);
    return buf_take(&b, NULL);
}

static void test_limits(void **state)
{
    struct buf e;
    char *y;
    struct config *c;

    (void) state;
    buf_init(&e, ERRORS_MAX);

    print_message("nesting\n");
    y = gen_many("extra: ", GEN_BRACKET, 40, "]\n");
    c = load(y, &e);
    assert_null(c);
    assert_string_equal(buf_str(&e), "t.yaml:1: extra: unknown key\nt.yaml:1: nesting deeper than 16 levels\n");
    free(y);

    print_message("64 listeners are fine, 65 are not\n");
    buf_reset(&e);
    y = gen_many(SPOOL "lmtp:\n  listeners:\n", GEN_LISTENER, 64, "");
    c = load(y, &e);
    assert_string_equal(buf_str(&e), "");
    assert_non_null(c);
    assert_int_equal(c->lmtp.nlisteners, 64);
    config_free(c);
    free(y);
    y = gen_many(SPOOL "lmtp:\n  listeners:\n", GEN_LISTENER, 65, "");
    c = load(y, &e);
    assert_null(c);
    assert_string_equal(buf_str(&e), "t.yaml:133: lmtp.listeners: too many entries (at most 64)\n");
    free(y);

    print_message("errors past 100 are counted, not shown\n");
    buf_reset(&e);
    y = gen_many("", GEN_UNKNOWN_KEY, 150, BASE);
    c = load(y, &e);
    assert_null(c);
    assert_non_null(strstr(buf_str(&e), "t.yaml:100: k99: unknown key\nt.yaml: 50 more error(s) not shown\n"));
    assert_null(strstr(buf_str(&e), "k100:"));
    free(y);

    print_message("an errors buffer too small: output cut at a line, still NULL\n");
    buf_free(&e);
    buf_init(&e, 40);
    c = load("bogus: 1\nbogus2: 2\n" BASE, &e);
    assert_null(c);
    assert_string_equal(buf_str(&e), "t.yaml:1: bogus: unknown key\n");
    c = load("bogus: 1\n" BASE, NULL);
    assert_null(c);

    print_message("NUL byte and over-long input\n");
    buf_reset(&e);
    buf_free(&e);
    buf_init(&e, ERRORS_MAX);
    c = config_load_mem("t.yaml", "node: a\nuser: b\0c\n", 17, &e);
    assert_null(c);
    assert_string_equal(buf_str(&e), "t.yaml:2: the file contains a NUL byte\n");
    buf_reset(&e);
    c = config_load_mem("t.yaml", "node: a\n", (size_t) 1024 * 1024 + 1, &e);
    assert_null(c);
    assert_string_equal(buf_str(&e), "t.yaml: the configuration is larger than 1048576 bytes\n");
    buf_free(&e);
    config_free(NULL);
}

/* ---- files --------------------------------------------------------------- */

/* write_file - create path with content and mode */
static void write_file(const char *path, const char *data, size_t n, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t) n);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

/* The example file of docs/configuration.md, and file-level refusals. */
static void test_load_file(void **state)
{
    char dir[] = "/tmp/test_config.XXXXXX", path[256], *big;
    struct buf e;
    struct config *c;

    (void) state;
    buf_init(&e, ERRORS_MAX);
    c = config_load("data/config/full.yaml", &e);
    assert_string_equal(buf_str(&e), "");
    assert_non_null(c);
    assert_string_equal(c->path, "data/config/full.yaml");
    assert_string_equal(c->node, "mx1");
    assert_string_equal(c->redis.address, "127.0.0.1:6379");
    assert_int_equal(c->lmtp.nlisteners, 2);
    assert_string_equal(c->lmtp.listeners[1].addr.host, "127.0.0.1");
    assert_int_equal(c->lmtp.listeners[1].addr.port, 2424);
    assert_true(c->lmtp.listeners[0].trusted);
    config_free(c);

    assert_non_null(mkdtemp(dir));
    print_message("missing file\n");
    (void) snprintf(path, sizeof(path), "%s/none.yaml", dir);
    assert_null(config_load(path, &e));
    assert_non_null(strstr(buf_str(&e), "none.yaml: cannot open: No such file or directory\n"));

    print_message("directory\n");
    buf_reset(&e);
    assert_null(config_load(dir, &e));
    assert_non_null(strstr(buf_str(&e), ": not a regular file\n"));

    print_message("FIFO: refused without blocking\n");
    buf_reset(&e);
    (void) snprintf(path, sizeof(path), "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_null(config_load(path, &e));
    assert_non_null(strstr(buf_str(&e), "fifo: not a regular file\n"));
    assert_int_equal(unlink(path), 0);

    print_message("larger than 1 MiB\n");
    buf_reset(&e);
    (void) snprintf(path, sizeof(path), "%s/big.yaml", dir);
    big = malloc((size_t) 1024 * 1024 + 1);
    assert_non_null(big);
    memset(big, '#', (size_t) 1024 * 1024 + 1);
    write_file(path, big, (size_t) 1024 * 1024 + 1, 0600);
    assert_null(config_load(path, &e));
    assert_non_null(strstr(buf_str(&e), "big.yaml: the file is larger than 1048576 bytes\n"));
    /* exactly 1 MiB of comment is read (and is an empty configuration) */
    buf_reset(&e);
    write_file(path, big, (size_t) 1024 * 1024, 0600);
    assert_null(config_load(path, &e));
    assert_non_null(strstr(buf_str(&e), "big.yaml:1: the configuration is empty\n"));
    free(big);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
    buf_free(&e);
}

/* ---- password_file ------------------------------------------------------- */

struct pw_case {
    const char *name;
    const char *data;
    size_t len;                 /* 0: strlen(data); SIZE_MAX: do not create */
    mode_t mode;
    const char *password;       /* expected, or NULL for an error */
    const char *error;          /* substring of the error */
};

static const struct pw_case pw_cases[] = {
    { "trailing LF stripped", "s3cret\n", 0, 0600, "s3cret", NULL },
    { "no newline", "s3cret", 0, 0400, "s3cret", NULL },
    { "trailing CRLF stripped", "s3cret\r\n", 0, 0600, "s3cret", NULL },
    { "two lines", "s3cret\nmore\n", 0, 0600, NULL, ": the password must be one line without NUL, CR or LF\n" },
    { "CR inside", "s3c\rret", 0, 0600, NULL, ": the password must be one line without NUL, CR or LF\n" },
    { "NUL inside", "s3c\0ret", 7, 0600, NULL, ": the password must be one line without NUL, CR or LF\n" },
    { "empty", "", 0, 0600, NULL, ": the file is empty\n" },
    { "only a newline", "\n", 0, 0600, NULL, ": the file is empty\n" },
    { "missing", NULL, SIZE_MAX, 0, NULL, ": No such file or directory\n" },
    { "4096 bytes with the newline", NULL, 4096, 0600, "", NULL },
    { "4097 bytes", NULL, 4097, 0600, NULL, ": larger than 4096 bytes\n" },
};

static void test_password_file(void **state)
{
    char dir[] = "/tmp/test_config.XXXXXX", file[256], yaml[512], big[4097];
    struct buf e;

    (void) state;
    assert_non_null(mkdtemp(dir));
    (void) snprintf(file, sizeof(file), "%s/redis.pw", dir);
    (void) snprintf(yaml, sizeof(yaml), "redis:\n  password_file: %s\n" BASE, file);
    memset(big, 'p', sizeof(big));
    big[4095] = '\n';
    buf_init(&e, ERRORS_MAX);
    for (size_t i = 0; i < ARRAY_SIZE(pw_cases); i++) {
        const struct pw_case *p = &pw_cases[i];
        const char *data = p->data != NULL ? p->data : big;
        size_t len = p->len == 0 ? strlen(data) : p->len;
        struct config *c;

        print_message("password_file: %s\n", p->name);
        buf_reset(&e);
        if (p->len != SIZE_MAX)
            write_file(file, data, len, p->mode);
        c = load(yaml, &e);
        if (p->password != NULL) {
            assert_string_equal(buf_str(&e), "");
            assert_non_null(c);
            if (p->password[0] != '\0')
                assert_string_equal(c->redis.password, p->password);
            else
                assert_int_equal(strspn(c->redis.password, "p"), 4095);
        } else {
            assert_null(c);
            assert_true(strncmp(buf_str(&e), "t.yaml:2: redis.password_file: /tmp/", 36) == 0);
            if (strstr(buf_str(&e), p->error) == NULL)
                print_message("got: %s", buf_str(&e));
            assert_non_null(strstr(buf_str(&e), p->error));
            assert_null(strstr(buf_str(&e), "s3c"));
        }
        config_free(c);
        if (p->len != SIZE_MAX)
            assert_int_equal(unlink(file), 0);
    }
    print_message("password_file: a directory\n");
    buf_reset(&e);
    (void) snprintf(yaml, sizeof(yaml), "redis:\n  password_file: %s\n" BASE, dir);
    assert_null(load(yaml, &e));
    assert_non_null(strstr(buf_str(&e), ": not a regular file\n"));
    assert_int_equal(rmdir(dir), 0);
    buf_free(&e);
}

/* capture_stderr - run a load with fd 2 redirected; returns what was written */
static char *capture_stderr(const char *yaml, struct config **out)
{
    char tmp[] = "/tmp/test_config.err.XXXXXX", *text;
    int fd = mkstemp(tmp), saved = dup(2);
    struct buf e;
    off_t n;

    assert_true(fd >= 0 && saved >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    buf_init(&e, ERRORS_MAX);
    *out = load(yaml, &e);
    assert_int_equal(dup2(saved, 2), 2);
    (void) close(saved);
    assert_string_equal(buf_str(&e), "");
    buf_free(&e);
    n = lseek(fd, 0, SEEK_END);
    assert_true(n >= 0 && n < 4096);
    text = calloc(1, (size_t) n + 1);
    assert_non_null(text);
    assert_int_equal(pread(fd, text, (size_t) n, 0), n);
    (void) close(fd);
    (void) unlink(tmp);
    return text;
}

/* Group/world-readable password file: a warning, never the password;
 * the dump shows the placeholder, which does not load again. */
static void test_password_secrecy(void **state)
{
    char dir[] = "/tmp/test_config.XXXXXX", file[256], yaml[512];
    struct config *c, *c2;
    char *err, *d;
    struct buf e;

    (void) state;
    assert_non_null(mkdtemp(dir));
    (void) snprintf(file, sizeof(file), "%s/redis.pw", dir);
    (void) snprintf(yaml, sizeof(yaml), "redis:\n  password_file: %s\n" BASE, file);
    write_file(file, "t0p-s3cret\n", 11, 0640);
    err = capture_stderr(yaml, &c);
    assert_non_null(c);
    assert_non_null(strstr(err, "warning: t.yaml: redis.password_file "));
    assert_non_null(strstr(err, "is readable by group or others (mode 0640)"));
    assert_null(strstr(err, "t0p-s3cret"));
    free(err);
    assert_string_equal(c->redis.password, "t0p-s3cret");
    d = dump(c);
    assert_null(strstr(d, "t0p-s3cret"));
    assert_non_null(strstr(d, "  password: \"<redacted>\"\n"));
    buf_init(&e, ERRORS_MAX);
    c2 = config_load_mem("dump.yaml", d, strlen(d), &e);
    assert_null(c2);
    assert_non_null(strstr(buf_str(&e), "dump.yaml:9: redis.password: \"<redacted>\" is the placeholder"));
    buf_free(&e);
    free(d);
    config_free(c);

    print_message("mode 0600: no warning\n");
    assert_int_equal(chmod(file, 0600), 0);
    err = capture_stderr(yaml, &c);
    assert_non_null(c);
    assert_string_equal(err, "");
    free(err);
    config_free(c);
    assert_int_equal(unlink(file), 0);
    assert_int_equal(rmdir(dir), 0);
}

/* ---- cfg_addr_parse ------------------------------------------------------ */

struct addr_case {
    const char *in;
    int rc;
    bool is_unix;
    const char *host_or_path;
    unsigned port;
    const char *why;            /* substring */
};

static const struct addr_case addr_cases[] = {
    { "unix:/run/x.sock", SY_OK, true, "/run/x.sock", 0, NULL },
    { "127.0.0.1:24", SY_OK, false, "127.0.0.1", 24, NULL },
    { "localhost:65535", SY_OK, false, "127.0.0.1", 65535, NULL },
    { "[::1]:1", SY_OK, false, "::1", 1, NULL },
    { "0.0.0.0:2424", SY_OK, false, "0.0.0.0", 2424, NULL },
    { "[2001:db8::1]:25", SY_OK, false, "2001:db8::1", 25, NULL },
    { "", SY_ESYNTAX, false, NULL, 0, "empty" },
    { "unix:", SY_ESYNTAX, false, NULL, 0, "absolute path" },
    { "unix:x", SY_ESYNTAX, false, NULL, 0, "absolute path" },
    { "1.2.3.4", SY_ESYNTAX, false, NULL, 0, "expected unix:/path, host:port" },
    { "1.2.3.4:", SY_ESYNTAX, false, NULL, 0, "port must be" },
    { "1.2.3.4:0", SY_ESYNTAX, false, NULL, 0, "port must be" },
    { "1.2.3.4:65536", SY_ESYNTAX, false, NULL, 0, "port must be" },
    { "1.2.3.4:+5", SY_ESYNTAX, false, NULL, 0, "port must be" },
    { "1.2.3.256:5", SY_ESYNTAX, false, NULL, 0, "numeric IP address or localhost" },
    { "mail.example:24", SY_ESYNTAX, false, NULL, 0, "numeric IP address or localhost" },
    { ":24", SY_ESYNTAX, false, NULL, 0, "numeric IP address or localhost" },
    { "::1:24", SY_ESYNTAX, false, NULL, 0, "brackets" },
    { "[::1]", SY_ESYNTAX, false, NULL, 0, "expected [IPv6-address]:port" },
    { "[::1:24", SY_ESYNTAX, false, NULL, 0, "expected [IPv6-address]:port" },
    { "[1.2.3.4]:24", SY_ESYNTAX, false, NULL, 0, "not a valid IPv6 address" },
    { "[localhost]:24", SY_ESYNTAX, false, NULL, 0, "not a valid IPv6 address" },
    { "127.0.0.1:24\n", SY_ESYNTAX, false, NULL, 0, "control characters" },
};

static void test_addr_parse(void **state)
{
    (void) state;
    for (size_t i = 0; i < ARRAY_SIZE(addr_cases); i++) {
        const struct addr_case *a = &addr_cases[i];
        struct cfg_addr out;
        char why[128] = "unchanged";

        print_message("addr %zu: \"%.40s\"\n", i, a->in);
        assert_int_equal(cfg_addr_parse(a->in, &out, why, sizeof(why)), a->rc);
        if (a->rc == SY_OK) {
            assert_string_equal(why, "unchanged");
            assert_int_equal(out.is_unix, a->is_unix);
            assert_string_equal(a->is_unix ? out.path : out.host, a->host_or_path);
            assert_null(a->is_unix ? out.host : out.path);
            assert_int_equal(out.port, a->port);
        } else {
            assert_non_null(strstr(why, a->why));
            assert_null(out.path);
            assert_null(out.host);
            assert_int_equal(out.port, 0);
        }
        cfg_addr_free(&out);
        assert_null(out.path);
        assert_null(out.host);
    }
    /* sun_path holds 107 bytes and the NUL */
    {
        char s[5 + 109];
        struct cfg_addr out;
        char why[128];

        memcpy(s, "unix:/", 6);
        memset(s + 6, 'a', 106);
        s[112] = '\0';
        assert_int_equal(cfg_addr_parse(s, &out, why, sizeof(why)), SY_OK);
        assert_int_equal(strlen(out.path), 107);
        cfg_addr_free(&out);
        s[112] = 'a';
        s[113] = '\0';
        assert_int_equal(cfg_addr_parse(s, &out, why, sizeof(why)), SY_ESYNTAX);
        assert_string_equal(why, "the socket path is longer than 107 bytes");
    }
    assert_int_equal(cfg_addr_parse("x", &(struct cfg_addr){ 0 }, NULL, 0), SY_ESYNTAX);
    cfg_addr_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_default_node),
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_listener_hosts),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_password_file),
        cmocka_unit_test(test_password_secrecy),
        cmocka_unit_test(test_addr_parse),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
