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
#include "rules/route.h"

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
    assert_int_equal(c->delivery.delay_warning_ms, 4ULL * 3600000);
    assert_string_equal(c->capture.dir, "/srv/sy/capture");
    /* the implicit capture transport, and an empty route table */
    assert_int_equal(c->ntransports, 1);
    assert_string_equal(c->transports[0].name, "capture");
    assert_true(c->transports[0].builtin);
    assert_int_equal(c->transports[0].type, CFG_TRANSPORT_CAPTURE);
    assert_int_equal(c->transports[0].max_connections, 10);
    assert_int_equal(c->transports[0].max_recipients, 50);
    assert_int_equal(c->transports[0].retry_first_ms, 5ULL * 60000);
    assert_int_equal(c->transports[0].retry_max_ms, 4ULL * 3600000);
    assert_int_equal(c->transports[0].expiry_ms, 5ULL * 86400000);
    assert_null(c->transports[0].host);
    assert_false(c->transports[0].has_auth);
    assert_ptr_equal(config_transport_find(c, "capture"), &c->transports[0]);
    assert_null(config_transport_find(c, "relay"));
    assert_null(config_transport_find(c, NULL));
    assert_non_null(c->routes);
    assert_int_equal(route_table_count(c->routes), 0);
    assert_string_equal(route_table_default(c->routes), "capture");
    assert_int_equal(c->route_rules.naccounts + c->route_rules.nsender_domains + c->route_rules.nglobal, 0);
    assert_false(config_has_redacted_secrets(c));
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

/* The SMTP client's timeouts as dumped by default (RFC 5321 4.5.3.2). */
#define CLIENT_TIMEOUTS "    greeting_timeout: 5m\n    command_timeout: 5m\n    data_timeout: 2m\n" \
    "    data_block_timeout: 3m\n    data_done_timeout: 10m\n    idle_timeout: 30s\n"
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
      "  retry_max: 7d\n  expiry: 30d\n  lease: 1h\n"
      "capture:\n  dir: /var/lib/switchyard/capture\n"
      "transports:\n  relay:\n    type: smtp\n    host: smtp.example.net\n",
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
        "  expiry: 30d\n  lease: 1h\n",
        "capture:\n  dir: \"/var/lib/switchyard/capture\"\n",
        "transports:\n  \"relay\":\n    type: smtp\n    host: \"smtp.example.net\"\n    port: 25\n"
        "    tls: required\n    allow_plaintext_auth: false\n    helo_name: \"lmtp.example\"\n" } },
    { "durations: plain seconds, ms, minutes, days",
      "redis:\n  connect_timeout: 30\n  command_timeout: 100ms\n"
      "delivery:\n  retry_first: 90\n  retry_max: 1d\n  expiry: 1m\n  lease: 86400\n  delay_warning: 0\n" BASE,
      { "  connect_timeout: 30s\n  command_timeout: 100ms\n",
        "  retry_first: 90s\n  retry_max: 1d\n  expiry: 1m\n  lease: 1d\n", "  delay_warning: 0s\n" } },
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

    /* transports and routes */
    { "transports: every type, every key",
      "node: n1\n"
      "transports:\n"
      "  relay:\n    type: SMTP\n    host: Smarthost.Example.NET.\n    port: 2525\n    tls: opportunistic\n"
      "    helo_name: mx1.example.org\n    connect_timeout: 1m\n    max_connections: 1000\n    max_recipients: 7\n"
      "    retry:\n      first: 1m\n      max: 2h\n      expiry: 2d\n"
      "  sub: {type: submission, host: \"192.0.2.1\", tls: required-unverified}\n"
      "  subs: {type: submissions, host: \"[2001:DB8::1]\"}\n"
      "  dovecot: {type: lmtp, host: \"unix:/run/dovecot/lmtp\"}\n"
      "  lmtp-tcp: {type: lmtp, host: \"2001:db8::2\", port: 10024, tls: none}\n"
      "  plain: {type: smtp, host: localhost, tls: none}\n"
      "delivery:\n  default_transport: relay\n" BASE,
      { "  default_transport: \"relay\"\n",
        "transports:\n  \"relay\":\n    type: smtp\n    host: \"smarthost.example.net\"\n    port: 2525\n"
        "    tls: opportunistic\n    allow_plaintext_auth: false\n    helo_name: \"mx1.example.org\"\n"
        "    connect_timeout: 1m\n" CLIENT_TIMEOUTS "    max_connections: 1000\n    max_recipients: 7\n    retry:\n      first: 1m\n      max: 2h\n"
        "      expiry: 2d\n",
        "  \"sub\":\n    type: submission\n    host: \"192.0.2.1\"\n    port: 587\n    tls: required-unverified\n"
        "    allow_plaintext_auth: false\n    helo_name: \"n1\"\n    connect_timeout: 30s\n" CLIENT_TIMEOUTS
        "    max_connections: 10\n    max_recipients: 50\n"
        "    # retry: (delivery.retry_first, retry_max and expiry apply)\n",
        "  \"subs\":\n    type: submissions\n    host: \"2001:DB8::1\"\n    port: 465\n    tls: required\n",
        "  \"dovecot\":\n    type: lmtp\n    host: \"unix:/run/dovecot/lmtp\"\n    tls: none\n    helo_name: \"n1\"\n",
        "  \"lmtp-tcp\":\n    type: lmtp\n    host: \"2001:db8::2\"\n    port: 10024\n    tls: none\n",
        "  \"plain\":\n    type: smtp\n    host: \"localhost\"\n    port: 25\n    tls: none\n",
        "  \"capture\":\n    type: capture\n    max_connections: 10\n"
        "    # retry: (delivery.retry_first, retry_max and expiry apply)\n"
        "routes:\n  # accounts: (none)\n  # sender_domains: (none)\n  # global: (none)\n" } },
    { "routes: every scope, normalised",
      "transports:\n  relay: {type: smtp, host: relay.example}\n"
      "routes:\n"
      "  accounts:\n"
      "    \"alice@example.org\":\n      - match: {recipient_domains: [.Partner.Example]}\n        transport: \"\"\n"
      "    apps: []\n"
      "    bob:\n"
      "  sender_domains:\n"
      "    Example.COM.:\n"
      "      - match:\n          sender_domains: [a.example]\n          recipient_domains: [b.example, .c.example.]\n"
      "          min_attempts: 2\n          listeners: [lmtp0]\n        transport: relay\n"
      "      - transport: capture\n"
      "        match: {sender_domains: [], min_attempts: 1000000}\n"
      "  global:\n    - transport: relay\n" BASE,
      { "routes:\n  accounts:\n    \"alice@example.org\":\n      - transport: \"\"\n        match:\n"
        "          min_attempts: 0\n          recipient_domains: [\".partner.example\"]\n"
        "    \"apps\": []\n    \"bob\": []\n"
        "  sender_domains:\n    \"example.com\":\n      - transport: \"relay\"\n        match:\n"
        "          min_attempts: 2\n          sender_domains: [\"a.example\"]\n"
        "          recipient_domains: [\"b.example\", \".c.example\"]\n          listeners: [\"lmtp0\"]\n"
        "      - transport: \"capture\"\n        match:\n          min_attempts: 1000000\n"
        "  global:\n    - transport: \"relay\"\n      match:\n        min_attempts: 0\n" } },
    { "SMTP client timeouts and the CA file",
      "transports:\n  t: {type: smtp, host: a.example, greeting_timeout: 1m, command_timeout: 90s,\n"
      "      data_timeout: 10s, data_block_timeout: 20s, data_done_timeout: 1h, idle_timeout: 5s,\n"
      "      tls_ca_file: /etc/ssl/ca.pem}\n" BASE,
      { "    connect_timeout: 30s\n    greeting_timeout: 1m\n    command_timeout: 90s\n"
        "    data_timeout: 10s\n    data_block_timeout: 20s\n    data_done_timeout: 1h\n"
        "    idle_timeout: 5s\n    tls_ca_file: \"/etc/ssl/ca.pem\"\n    max_connections: 10\n" } },
    { "capture defined in the file, and a second capture transport",
      "transports:\n  capture: {type: capture, max_connections: 3, retry: {max: 30m}}\n"
      "  mycap: {type: capture}\n" BASE,
      { "transports:\n  \"capture\":\n    type: capture\n    max_connections: 3\n    retry:\n      max: 30m\n"
        "  \"mycap\":\n    type: capture\n    max_connections: 10\n"
        "    # retry: (delivery.retry_first, retry_max and expiry apply)\nroutes:\n" } },
    { "empty transports and routes sections",
      "transports:\nroutes:\n  accounts:\n  global: []\n" BASE,
      { "transports:\n  \"capture\":\n    type: capture\n", "  # global: (none)\n" } },
    { "flow-style transports and routes",
      "{node: f, spool: {dir: /s/p}, lmtp: {listeners: [{address: \"127.0.0.1:2424\"}]},\n"
      " transports: {a: {type: smtp, host: a.example}},\n"
      " routes: {global: [{transport: a, match: {min_attempts: 1}}]}}\n",
      { "  \"a\":\n    type: smtp\n    host: \"a.example\"\n",
        "  global:\n    - transport: \"a\"\n      match:\n        min_attempts: 1\n" } },
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
    { "workers past 256", "delivery:\n  workers: 257\n" BASE,
      "t.yaml:2: delivery.workers: 257 is out of range (0 to 256)\n" },
    { "delay_warning past 30 days", "delivery:\n  delay_warning: 31d\n" BASE,
      "t.yaml:2: delivery.delay_warning: \"31d\" is out of range (0s to 30d)\n" },
    { "retention past a year", "delivery:\n  retention: 366d\n" BASE,
      "t.yaml:2: delivery.retention: \"366d\" is out of range (0s to 365d)\n" },
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
    { "lease shorter than the longest attempt",
      "delivery:\n  lease: 25m\n" BASE "transports:\n  relay:\n    type: smtp\n    host: smtp.example.net\n"
      "  fast:\n    type: lmtp\n    host: unix:/run/lmtp\n    greeting_timeout: 10s\n    command_timeout: 10s\n"
      "    data_timeout: 10s\n    data_block_timeout: 10s\n    data_done_timeout: 10s\n",
      "t.yaml:2: delivery.lease: lease (25m) is shorter than the longest attempt through transport relay "
      "(1540s: connect, greeting, command, data, data_block and data_done timeouts and 10s waiting for a "
      "connection); a second worker could deliver the same mail\n" },

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
    /* transports */
    { "unknown default_transport", "delivery:\n  default_transport: relay\n" BASE,
      "t.yaml:2: delivery.default_transport: unknown transport \"relay\" (defined: capture)\n" },
    { "unknown default_transport, some defined",
      "transports:\n  a: {type: capture}\n  b: {type: smtp, host: b.example}\ndelivery:\n  default_transport: c\n" BASE,
      "t.yaml:5: delivery.default_transport: unknown transport \"c\" (defined: a, b, capture)\n" },
    { "top-level key misspelt", "transport:\n  a: {type: capture}\n" BASE,
      "t.yaml:1: transport: unknown key (did you mean \"transports\"?)\n" },
    { "transports is a list", "transports:\n  - a\n" BASE,
      "t.yaml:1: transports: expected a mapping of transport names, found a list\n" },
    { "transports given twice", "transports: {}\ntransports: {}\n" BASE,
      "t.yaml:2: transports: duplicate key (first given on line 1)\n" },
    { "duplicate transport name", "transports:\n  a:\n    type: capture\n  a:\n    type: capture\n" BASE,
      "t.yaml:4: transports.a: duplicate key (first given on line 2)\n" },
    { "duplicate key inside a transport", "transports:\n  a:\n    type: capture\n    type: smtp\n" BASE,
      "t.yaml:4: transports.a.type: duplicate key (first given on line 3)\n" },
    { "transport without type, null, not a mapping, bad name",
      "transports:\n  relay:\n    host: a.example\n  c:\n  d: 5\n  \"a b\": {type: capture}\n" BASE,
      "t.yaml:2: transports.relay.type: required key is missing (smtp, submission, submissions, lmtp, capture)\n"
      "t.yaml:4: transports.c: a transport needs at least a type (smtp, submission, submissions, lmtp, capture)\n"
      "t.yaml:5: transports.d: expected a mapping, found a single value\n"
      "t.yaml:6: transports.a b: \"a b\" is not a valid transport name (1 to 64 characters from A-Z a-z 0-9 ._-)\n" },
    { "bad type, unknown keys", "transports:\n  a:\n    type: smtps\n    hots: x\n    retry: {expiri: 5d}\n" BASE,
      "t.yaml:3: transports.a.type: expected one of smtp, submission, submissions, lmtp, capture, got \"smtps\"\n"
      "t.yaml:4: transports.a.hots: unknown key (did you mean \"host\"?)\n"
      "t.yaml:5: transports.a.retry.expiri: unknown key (did you mean \"expiry\"?)\n" },
    { "capture is reserved for the capture type", "transports:\n  capture:\n    type: smtp\n    host: a.example\n" BASE,
      "t.yaml:3: transports.capture.type: the name \"capture\" belongs to the built-in capture transport: "
      "use type: capture, or another name\n" },
    { "missing host", "transports:\n  relay:\n    type: smtp\n" BASE,
      "t.yaml:2: transports.relay.host: required key is missing (the host to connect to)\n" },
    { "bad hosts",
      "transports:\n  a: {type: smtp, host: \"smtp.exa mple.com\"}\n  b: {type: smtp, host: 300.1.2.3}\n"
      "  c: {type: smtp, host: \"[::g]\"}\n  d: {type: smtp, host: \"b\xc3\xbc" "cher.example\"}\n"
      "  e: {type: smtp, host: _x.example}\n  f: {type: smtp, host: -a.example}\n  g: {type: smtp, host: \"[::1\"}\n"
      "  h: {type: lmtp, host: \"unix:run/x\"}\n  i: {type: smtp, host: \"unix:/run/x\"}\n" BASE,
      "t.yaml:2: transports.a.host: \"smtp.exa mple.com\": the domain holds the byte 0x20 "
      "(labels are letters, digits, '-' and '_')\n"
      "t.yaml:3: transports.b.host: \"300.1.2.3\" is not a valid IPv4 address\n"
      "t.yaml:4: transports.c.host: \"[::g]\" is not a valid IPv6 address\n"
      "t.yaml:5: transports.d.host: \"b??cher.example\": a host name is letters, digits, '-' and '.' "
      "(write an internationalised name in its xn-- form)\n"
      "t.yaml:6: transports.e.host: \"_x.example\": a host name is letters, digits, '-' and '.' "
      "(write an internationalised name in its xn-- form)\n"
      "t.yaml:7: transports.f.host: \"-a.example\": a label starts or ends with '-'\n"
      "t.yaml:8: transports.g.host: \"[::1\" is not a valid IPv6 address\n"
      "t.yaml:9: transports.h.host: \"unix:run/x\": a UNIX socket needs an absolute path (unix:/path)\n"
      "t.yaml:10: transports.i.host: \"unix:/run/x\" is not a valid IPv6 address\n" },
    { "ports and tls by type",
      "transports:\n  a: {type: smtp, host: a.example, port: 0}\n  b: {type: lmtp, host: a.example, port: 25}\n"
      "  c: {type: lmtp, host: \"unix:/run/x\", port: 24, tls: required}\n"
      "  d: {type: submissions, host: a.example, tls: opportunistic}\n"
      "  e: {type: smtp, host: a.example, tls: maybe}\n  f: {type: submission, host: a.example, port: 65536}\n" BASE,
      "t.yaml:2: transports.a.port: 0 is out of range (1 to 65535)\n"
      "t.yaml:3: transports.b.port: port 25 is refused: LMTP must not be used on the SMTP port (RFC 2033 section 5)\n"
      "t.yaml:4: transports.c.port: a UNIX socket has no port\n"
      "t.yaml:4: transports.c.tls: TLS is not used over a UNIX socket: remove tls or set it to none\n"
      "t.yaml:5: transports.d.tls: submissions is implicit TLS (RFC 8314): tls must be required or required-unverified\n"
      "t.yaml:6: transports.e.tls: expected one of required, required-unverified, opportunistic, none, got \"maybe\"\n"
      "t.yaml:7: transports.f.port: 65536 is out of range (1 to 65535)\n" },
    { "keys a capture transport does not use",
      "transports:\n  a:\n    type: capture\n    host: x\n    auth: {username: u, password: p}\n"
      "    connect_timeout: 5s\n" BASE,
      "t.yaml:4: transports.a.host: not used by a capture transport\n"
      "t.yaml:5: transports.a.auth: not used by a capture transport\n"
      "t.yaml:6: transports.a.connect_timeout: not used by a capture transport\n" },
    { "SMTP client timeouts and CA file out of range",
      "transports:\n  a:\n    type: smtp\n    host: a.example\n    data_done_timeout: 2h\n"
      "    idle_timeout: 0s\n    tls_ca_file: ca.pem\n" BASE,
      "t.yaml:5: transports.a.data_done_timeout: \"2h\" is out of range (1s to 1h)\n"
      "t.yaml:6: transports.a.idle_timeout: \"0s\" is out of range (1s to 1h)\n"
      "t.yaml:7: transports.a.tls_ca_file: expected an absolute path to a PEM file\n" },
    { "limits of a transport",
      "transports:\n  a:\n    type: smtp\n    host: a.example\n    connect_timeout: 11m\n    max_connections: 0\n"
      "    helo_name: \"mx 1\"\n    retry: {first: 2h, max: 1h}\n  b: {type: capture, retry: {first: soon}}\n"
      "  c: {type: capture, retry: {expiry: 31d}}\n  d: {type: capture, retry: [1m]}\n" BASE,
      "t.yaml:5: transports.a.connect_timeout: \"11m\" is out of range (1s to 10m)\n"
      "t.yaml:6: transports.a.max_connections: 0 is out of range (1 to 1000)\n"
      "t.yaml:7: transports.a.helo_name: \"mx 1\" is not a valid host name (1 to 255 characters from "
      "A-Z a-z 0-9 .-_:[])\n"
      "t.yaml:8: transports.a.retry.max: retry max (1h) must not be shorter than retry first (2h)\n"
      "t.yaml:9: transports.b.retry.first: \"soon\" is not a duration (examples: 1500ms, 30s, 5m, 4h, 5d)\n"
      "t.yaml:10: transports.c.retry.expiry: \"31d\" is out of range (1m to 30d)\n"
      "t.yaml:11: transports.d.retry: expected a mapping, found a list\n" },
    { "retry first above the inherited max", "transports:\n  a: {type: capture, retry: {first: 5h}}\n" BASE,
      "t.yaml:2: transports.a.retry.first: retry max (4h) must not be shorter than retry first (5h)\n" },
    { "auth problems",
      "transports:\n"
      "  a: {type: lmtp, host: a.example, auth: {username: u, password: p}}\n"
      "  c: {type: submission, host: a.example, auth: {password: p}}\n"
      "  d: {type: submission, host: a.example, auth: {username: u}}\n"
      "  e: {type: submission, host: a.example, auth: {username: u, password: p, password_file: /x}}\n"
      "  f: {type: submission, host: a.example, auth: {username: u, password: \"<redacted>\"}}\n"
      "  g: {type: submission, host: a.example, auth: {username: u, password: p, mechanisms: [PLAIN, XOAUTH2, plain]}}\n"
      "  h: {type: submission, host: a.example, auth: {username: u, password: p, mechanisms: []}}\n"
      "  i: {type: submission, host: a.example, auth: {username: u, password: p, mechanisms: PLAIN}}\n"
      "  j: {type: submission, host: a.example, tls: none, auth: {username: u, password: p}}\n"
      "  k: {type: submission, host: a.example, allow_plaintext_auth: true}\n"
      "  l: {type: submission, host: a.example, auth: {username: \"\", password: \"sec\\tret\", usernme: x}}\n"
      "  m: {type: submission, host: a.example, auth: [u, p]}\n" BASE,
      "t.yaml:2: transports.a.auth: auth is only for smtp, submission and submissions transports\n"
      "t.yaml:3: transports.c.auth.username: required key is missing (the user name to authenticate as)\n"
      "t.yaml:4: transports.d.auth.password: required key is missing (password or password_file)\n"
      "t.yaml:5: transports.e.auth.password_file: set either password or password_file, not both\n"
      "t.yaml:6: transports.f.auth.password: \"<redacted>\" is the placeholder written by check-config: "
      "put the real password here, or use password_file\n"
      "t.yaml:7: transports.g.auth.mechanisms[1]: expected one of SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS, "
      "SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, PLAIN, LOGIN, got \"XOAUTH2\"\n"
      "t.yaml:7: transports.g.auth.mechanisms[2]: PLAIN is listed twice\n"
      "t.yaml:8: transports.h.auth.mechanisms: at least one mechanism is required\n"
      "t.yaml:9: transports.i.auth.mechanisms: expected a list, found a single value\n"
      "t.yaml:10: transports.j.auth: tls is none, so the password would cross the network in clear: "
      "set allow_plaintext_auth: true to allow that\n"
      "t.yaml:11: transports.k.allow_plaintext_auth: has no effect without auth\n"
      "t.yaml:12: transports.l.auth.usernme: unknown key (did you mean \"username\"?)\n"
      "t.yaml:12: transports.l.auth.username: \"\": the user name must be 1 to 255 bytes without control characters\n"
      "t.yaml:12: transports.l.auth.password: the password must be non-empty, without control characters\n"
      "t.yaml:13: transports.m.auth: expected a mapping, found a list\n" },
    { "too many transports", NULL, "t.yaml:1: transports: too many transports (at most 64)\n" },

    /* routes */
    { "routes is a list", "routes: [a]\n" BASE,
      "t.yaml:1: routes: expected a mapping (accounts, sender_domains, global), found a list\n" },
    { "routes.global is a mapping", "routes:\n  global: {a: b}\n" BASE,
      "t.yaml:2: routes.global: expected a list, found a mapping\n" },
    { "route rule problems",
      "routes:\n"
      "  global:\n"
      "    - match:\n        recipient_domain: [a.example]\n      transport: nope\n"
      "    - transport:\n"
      "    - match: {sender_domains: [\"exa mple.com\", \".\", \"*.example.com\", \"..example.com\", ~], min_attempts: -1}\n"
      "      transport: \"\"\n"
      "    - match: {sender_domains: example.com, listeners: [lmtp0, postfix, ~]}\n      transprt: capture\n"
      "    -\n"
      "    - match: [a]\n      transport: [capture]\n"
      "  sender_domains:\n    Example.com: []\n    example.COM.:\n      - transport: capture\n    \"-bad.example\": []\n"
      "  accounts:\n    alice: {transport: capture}\n    \"\": []\n"
      "  global_rules: []\n" BASE,
      "t.yaml:4: routes.global[0].match.recipient_domain: unknown key (did you mean \"recipient_domains\"?)\n"
      "t.yaml:5: routes.global[0].transport: unknown transport \"nope\" (defined: capture)\n"
      "t.yaml:6: routes.global[1].transport: a transport name is required (\"\" for the default transport)\n"
      "t.yaml:7: routes.global[2].match.sender_domains[0]: \"exa mple.com\": the domain holds the byte 0x20 "
      "(labels are letters, digits, '-' and '_')\n"
      "t.yaml:7: routes.global[2].match.sender_domains[1]: \".\": the domain is empty\n"
      "t.yaml:7: routes.global[2].match.sender_domains[2]: \"*.example.com\": the domain holds '*' "
      "(labels are letters, digits, '-' and '_')\n"
      "t.yaml:7: routes.global[2].match.sender_domains[3]: \"..example.com\": the domain has an empty label\n"
      "t.yaml:7: routes.global[2].match.sender_domains[4]: expected a domain (\"example.com\", or \".example.com\" "
      "for it and its subdomains)\n"
      "t.yaml:7: routes.global[2].match.min_attempts: expected an integer from 0 to 1000000, got \"-1\"\n"
      "t.yaml:9: routes.global[3].match.sender_domains: expected a list, found a single value\n"
      "t.yaml:9: routes.global[3].match.listeners[1]: unknown listener \"postfix\" (lmtp.listeners names them)\n"
      "t.yaml:9: routes.global[3].match.listeners[2]: expected a listener name\n"
      "t.yaml:9: routes.global[3].transport: a transport name is required (\"\" for the default transport)\n"
      "t.yaml:10: routes.global[3].transprt: unknown key (did you mean \"transport\"?)\n"
      "t.yaml:11: routes.global[4]: expected a rule (match: and transport:)\n"
      "t.yaml:12: routes.global[5].match: expected a mapping, found a list\n"
      "t.yaml:13: routes.global[5].transport: expected a single value, found a list\n"
      "t.yaml:16: routes.sender_domains.example.COM.: the same domain as line 15\n"
      "t.yaml:18: routes.sender_domains.-bad.example: \"-bad.example\": a label starts or ends with '-'\n"
      "t.yaml:20: routes.accounts.alice: expected a list, found a mapping\n"
      "t.yaml:21: routes.accounts.: \"\": an account is 1 to 255 bytes without control characters\n"
      "t.yaml:22: routes.global_rules: unknown key\n" },
    { "a sender domain key with a leading dot", "routes:\n  sender_domains:\n    .example.com: []\n" BASE,
      "t.yaml:3: routes.sender_domains..example.com: \".example.com\": a leading dot is not allowed here\n" },
    { "value too long inside transports", NULL,
      "t.yaml:3: transports.a.host: value is too long (at most 4096 bytes)\n" },
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

/* gen_bad_yaml - the documents of the bad cases too long to write out */
static char *gen_bad_yaml(const char *name)
{
    struct buf b;

    if (strcmp(name, "value too long (reported by libcyaml)") == 0)
        return long_value_yaml();
    buf_init(&b, 64 * 1024);
    if (strcmp(name, "too many transports") == 0) {
        assert_int_equal(buf_append_str(&b, "transports:\n"), SY_OK);
        for (int i = 0; i < 65; i++)
            assert_int_equal(buf_printf(&b, "  t%d: {type: capture}\n", i), SY_OK);
    } else {
        assert_string_equal(name, "value too long inside transports");
        assert_int_equal(buf_append_str(&b, "transports:\n  a:\n    host: "), SY_OK);
        for (int i = 0; i < 5000; i++)
            assert_int_equal(buf_append_byte(&b, 'h'), SY_OK);
        assert_int_equal(buf_append_str(&b, "\n    type: smtp\n"), SY_OK);
    }
    assert_int_equal(buf_append_str(&b, BASE), SY_OK);
    return buf_take(&b, NULL);
}

/* Bad documents: NULL, the exact errors, and earlier text in errors kept. */
/* delivery.lease and the transports' timeouts (review finding 1c): the
 * default lease grows to the longest attempt plus a minute; a lease given
 * that covers it is kept; capture alone keeps the 10 min default. */
static void test_lease_fits_attempts(void **state)
{
    static const struct { const char *yaml; uint64_t lease_ms; } cases[] = {
        { BASE, 10ULL * 60000 },
        { BASE "transports:\n  relay:\n    type: smtp\n    host: smtp.example.net\n"
               "    data_done_timeout: 30m\n",
          (30 + 300 + 300 + 120 + 180 + 1800 + 10 + 60) * 1000ULL },
        { "delivery:\n  lease: 26m\n" BASE "transports:\n  relay:\n    type: smtp\n"
          "    host: smtp.example.net\n", 26ULL * 60000 },
        { BASE "transports:\n  l:\n    type: lmtp\n    host: unix:/run/l\n    connect_timeout: 1s\n"
          "    greeting_timeout: 1s\n    command_timeout: 1s\n    data_timeout: 1s\n"
          "    data_block_timeout: 1s\n    data_done_timeout: 1s\n", 10ULL * 60000 },
    };

    (void) state;
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct buf e;
        struct config *c;

        buf_init(&e, ERRORS_MAX);
        c = load(cases[i].yaml, &e);
        assert_string_equal(buf_str(&e), "");
        assert_non_null(c);
        assert_int_equal(c->delivery.lease_ms, cases[i].lease_ms);
        config_free(c);
        buf_free(&e);
    }
}

static void test_bad(void **state)
{
    (void) state;
    for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++) {
        const struct bad_case *b = &bad_cases[i];
        char *gen = b->yaml == NULL ? gen_bad_yaml(b->name) : NULL;
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

/* ---- transports and routes: the structs -------------------------------- */

/* The fields the relay engine reads, straight from the struct. */
static void test_transports(void **state)
{
    const struct cfg_transport *t;
    struct route_facts f = { "a@example.org", "b@gmail.com", 3, "lmtp0", NULL };
    struct route_match m;
    struct config *c;
    struct buf e;

    (void) state;
    buf_init(&e, ERRORS_MAX);
    c = load(good_cases[ARRAY_SIZE(good_cases) - 6].yaml, &e);
    assert_string_equal(buf_str(&e), "");
    assert_non_null(c);
    assert_int_equal(c->ntransports, 7);
    t = config_transport_find(c, "relay");
    assert_ptr_equal(t, &c->transports[0]);
    assert_int_equal(t->type, CFG_TRANSPORT_SMTP);
    assert_false(t->builtin);
    assert_string_equal(t->host, "smarthost.example.net");
    assert_null(t->socket);
    assert_int_equal(t->port, 2525);
    assert_int_equal(t->tls, CFG_TLS_OPPORTUNISTIC);
    assert_false(t->has_auth);
    assert_false(t->allow_plaintext_auth);
    assert_string_equal(t->helo_name, "mx1.example.org");
    assert_int_equal(t->connect_timeout_ms, 60000);
    assert_int_equal(t->greeting_timeout_ms, 300000);
    assert_int_equal(t->command_timeout_ms, 300000);
    assert_int_equal(t->data_timeout_ms, 120000);
    assert_int_equal(t->data_block_timeout_ms, 180000);
    assert_int_equal(t->data_done_timeout_ms, 600000);
    assert_int_equal(t->idle_timeout_ms, 30000);
    assert_null(t->tls_ca_file);
    assert_int_equal(t->max_connections, 1000);
    assert_int_equal(t->retry_first_ms, 60000);
    assert_int_equal(t->retry_max_ms, 2ULL * 3600000);
    assert_int_equal(t->expiry_ms, 2ULL * 86400000);
    assert_true(t->retry_first_set && t->retry_max_set && t->expiry_set);
    t = config_transport_find(c, "sub");
    assert_int_equal(t->type, CFG_TRANSPORT_SUBMISSION);
    assert_int_equal(t->port, 587);
    assert_int_equal(t->tls, CFG_TLS_REQUIRED_UNVERIFIED);
    assert_string_equal(t->helo_name, "n1");
    assert_int_equal(t->connect_timeout_ms, 30000);
    assert_int_equal(t->max_connections, 10);
    assert_false(t->retry_first_set || t->retry_max_set || t->expiry_set);
    assert_int_equal(t->retry_first_ms, 5ULL * 60000);
    assert_int_equal(t->expiry_ms, 5ULL * 86400000);
    t = config_transport_find(c, "subs");
    assert_int_equal(t->port, 465);
    assert_int_equal(t->tls, CFG_TLS_REQUIRED);
    assert_string_equal(t->host, "2001:DB8::1");
    t = config_transport_find(c, "dovecot");
    assert_int_equal(t->type, CFG_TRANSPORT_LMTP);
    assert_null(t->host);
    assert_string_equal(t->socket, "/run/dovecot/lmtp");
    assert_int_equal(t->port, 0);
    assert_int_equal(t->tls, CFG_TLS_NONE);
    t = config_transport_find(c, "lmtp-tcp");
    assert_int_equal(t->port, 10024);
    t = config_transport_find(c, "capture");
    assert_true(t->builtin);
    assert_ptr_equal(t, &c->transports[6]);
    assert_null(t->helo_name);
    /* default_transport feeds the route table */
    assert_string_equal(route_table_default(c->routes), "relay");
    assert_string_equal(route_select(c->routes, &f, &m), "relay");
    assert_true(m.is_default);
    config_free(c);

    print_message("lmtp over TCP: opportunistic TLS by default, port 24\n");
    c = load("transports:\n  d: {type: lmtp, host: 192.0.2.24}\n" BASE, &e);
    assert_non_null(c);
    assert_int_equal(c->transports[0].tls, CFG_TLS_OPPORTUNISTIC);
    assert_int_equal(c->transports[0].port, 24);
    config_free(c);

    print_message("a capture transport in the file replaces the implicit one\n");
    c = load(good_cases[ARRAY_SIZE(good_cases) - 3].yaml, &e);
    assert_non_null(c);
    assert_int_equal(c->ntransports, 2);
    assert_false(c->transports[0].builtin);
    assert_int_equal(c->transports[0].max_connections, 3);
    assert_int_equal(c->transports[0].retry_max_ms, 30ULL * 60000);
    assert_int_equal(c->transports[0].retry_first_ms, 5ULL * 60000);
    assert_true(c->transports[0].retry_max_set);
    assert_false(c->transports[0].retry_first_set);
    config_free(c);

    print_message("the routes: section, normalised, and its table\n");
    c = load(good_cases[ARRAY_SIZE(good_cases) - 5].yaml, &e);
    assert_non_null(c);
    assert_int_equal(c->route_rules.naccounts, 3);
    assert_string_equal(c->route_rules.accounts[0].key, "alice@example.org");
    assert_int_equal(c->route_rules.accounts[0].nrules, 1);
    assert_string_equal(c->route_rules.accounts[0].rules[0].transport, "");
    assert_string_equal(c->route_rules.accounts[0].rules[0].recipient_domains[0], ".partner.example");
    assert_int_equal(c->route_rules.accounts[1].nrules, 0);
    assert_int_equal(c->route_rules.nsender_domains, 1);
    assert_string_equal(c->route_rules.sender_domains[0].key, "example.com");
    assert_int_equal(c->route_rules.sender_domains[0].nrules, 2);
    assert_int_equal(c->route_rules.sender_domains[0].rules[0].min_attempts, 2);
    assert_string_equal(c->route_rules.sender_domains[0].rules[0].recipient_domains[1], ".c.example");
    assert_string_equal(c->route_rules.sender_domains[0].rules[0].listeners[0], "lmtp0");
    assert_int_equal(c->route_rules.nglobal, 1);
    assert_int_equal(route_table_count(c->routes), 4);
    f.sender = "x@EXAMPLE.com";
    f.recipient = "y@d.c.example";
    f.attempts_made = 2;
    f.account = "alice@example.org";
    /* sender_domain example.com [0] also wants sender domain a.example: never true there */
    assert_string_equal(route_select(c->routes, &f, &m), "relay");
    assert_int_equal(m.scope, ROUTE_SCOPE_GLOBAL);
    f.attempts_made = 1000000;
    assert_string_equal(route_select(c->routes, &f, &m), "capture");
    assert_int_equal(m.scope, ROUTE_SCOPE_SENDER_DOMAIN);
    assert_int_equal(m.index, 1);
    assert_string_equal(m.key, "example.com");
    f.recipient = "y@x.partner.example";
    assert_string_equal(route_select(c->routes, &f, &m), "capture");
    assert_int_equal(m.scope, ROUTE_SCOPE_ACCOUNT);
    assert_true(m.is_default);
    config_free(c);

    assert_string_equal(cfg_transport_type_name(CFG_TRANSPORT_SUBMISSIONS), "submissions");
    assert_string_equal(cfg_transport_type_name(-1), "?");
    assert_string_equal(cfg_transport_type_name(CFG_TRANSPORT_TYPE_COUNT), "?");
    assert_string_equal(cfg_tls_name(CFG_TLS_REQUIRED_UNVERIFIED), "required-unverified");
    assert_string_equal(cfg_tls_name(CFG_TLS_COUNT), "?");
    assert_string_equal(cfg_sasl_mech_name(CFG_SASL_SCRAM_SHA_256_PLUS), "SCRAM-SHA-256-PLUS");
    assert_string_equal(cfg_sasl_mech_name(CFG_SASL_LOGIN), "LOGIN");
    assert_string_equal(cfg_sasl_mech_name(CFG_SASL_MECH_COUNT), "?");
    buf_free(&e);
}

/* Transport passwords: from a file (its path kept for the dump) or inline
 * (redacted); never in an error, a warning or the dump. */
static void test_transport_auth(void **state)
{
    char dir[] = "/tmp/test_config.XXXXXX", file[256], yaml[1024], *d, *err;
    struct config *c, *c2;
    const struct cfg_transport *t;
    struct buf e;

    (void) state;
    assert_non_null(mkdtemp(dir));
    (void) snprintf(file, sizeof(file), "%s/provider.pw", dir);
    write_file(file, "Pr0v1der-s3cret\n", 16, 0600);
    (void) snprintf(yaml, sizeof(yaml),
                    "node: n1\n"
                    "transports:\n"
                    "  fromfile:\n    type: submission\n    host: smtp.provider.example\n"
                    "    auth:\n      username: mx1@example.org\n      password_file: %s\n"
                    "      mechanisms: [scram-sha-256-plus, Plain, LOGIN]\n"
                    "  clear:\n    type: smtp\n    host: 192.0.2.1\n    tls: none\n    allow_plaintext_auth: yes\n"
                    "    auth: {username: u, password: \"Inl1ne-s3cret\"}\n" BASE, file);
    buf_init(&e, ERRORS_MAX);
    c = load(yaml, &e);
    assert_string_equal(buf_str(&e), "");
    assert_non_null(c);
    assert_true(config_has_redacted_secrets(c));
    t = config_transport_find(c, "fromfile");
    assert_true(t->has_auth);
    assert_string_equal(t->auth.username, "mx1@example.org");
    assert_string_equal(t->auth.password, "Pr0v1der-s3cret");
    assert_string_equal(t->auth.password_file, file);
    assert_int_equal(t->auth.nmechanisms, 3);
    assert_int_equal(t->auth.mechanisms[0], CFG_SASL_SCRAM_SHA_256_PLUS);
    assert_int_equal(t->auth.mechanisms[1], CFG_SASL_PLAIN);
    assert_int_equal(t->auth.mechanisms[2], CFG_SASL_LOGIN);
    t = config_transport_find(c, "clear");
    assert_string_equal(t->auth.password, "Inl1ne-s3cret");
    assert_null(t->auth.password_file);
    assert_true(t->allow_plaintext_auth);
    assert_int_equal(t->tls, CFG_TLS_NONE);
    /* default: every mechanism, strongest first */
    assert_int_equal(t->auth.nmechanisms, CFG_SASL_MECH_COUNT);
    for (size_t i = 0; i < CFG_SASL_MECH_COUNT; i++)
        assert_int_equal(t->auth.mechanisms[i], (int) i);
    d = dump(c);
    assert_null(strstr(d, "s3cret"));
    assert_non_null(strstr(d, "      password_file: \""));
    assert_non_null(strstr(d, "      mechanisms: [SCRAM-SHA-256-PLUS, PLAIN, LOGIN]\n"));
    assert_non_null(strstr(d, "    auth:\n      username: \"u\"\n      password: \"<redacted>\"\n"));
    /* The inline one does not load back; the one from a file would. */
    c2 = config_load_mem("dump.yaml", d, strlen(d), &e);
    assert_null(c2);
    assert_non_null(strstr(buf_str(&e), "dump.yaml:"));
    assert_non_null(strstr(buf_str(&e), ": transports.clear.auth.password: \"<redacted>\" is the placeholder"));
    assert_null(strstr(buf_str(&e), "fromfile"));
    assert_null(strstr(buf_str(&e), "s3cret"));
    free(d);
    config_free(c);

    print_message("password_file only: the dump loads again, to the same password\n");
    buf_reset(&e);
    (void) snprintf(yaml, sizeof(yaml),
                    "transports:\n  p:\n    type: submissions\n    host: a.example\n"
                    "    auth: {username: u, password_file: %s}\n" BASE, file);
    c = load(yaml, &e);
    assert_non_null(c);
    assert_false(config_has_redacted_secrets(c));
    d = dump(c);
    c2 = config_load_mem("dump.yaml", d, strlen(d), &e);
    assert_string_equal(buf_str(&e), "");
    assert_non_null(c2);
    assert_string_equal(config_transport_find(c2, "p")->auth.password, "Pr0v1der-s3cret");
    free(d);
    config_free(c2);
    config_free(c);

    print_message("group-readable: a warning naming the key, never the password\n");
    assert_int_equal(chmod(file, 0644), 0);
    err = capture_stderr(yaml, &c);
    assert_non_null(c);
    assert_non_null(strstr(err, "warning: t.yaml: transports.p.auth.password_file "));
    assert_non_null(strstr(err, "is readable by group or others (mode 0644)"));
    assert_null(strstr(err, "s3cret"));
    free(err);
    config_free(c);

    print_message("a missing file, and a relative path\n");
    assert_int_equal(unlink(file), 0);
    c = load(yaml, &e);
    assert_null(c);
    assert_non_null(strstr(buf_str(&e), "t.yaml:5: transports.p.auth.password_file: /tmp/"));
    assert_non_null(strstr(buf_str(&e), ": No such file or directory\n"));
    buf_reset(&e);
    c = load("transports:\n  p:\n    type: submissions\n    host: a.example\n"
             "    auth:\n      username: u\n      password_file: pw.txt\n" BASE, &e);
    assert_null(c);
    assert_string_equal(buf_str(&e), "t.yaml:7: transports.p.auth.password_file: \"pw.txt\" is not an absolute path\n");
    assert_int_equal(rmdir(dir), 0);
    buf_free(&e);
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
        cmocka_unit_test(test_lease_fits_attempts),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_password_file),
        cmocka_unit_test(test_password_secrecy),
        cmocka_unit_test(test_addr_parse),
        cmocka_unit_test(test_transports),
        cmocka_unit_test(test_transport_auth),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
