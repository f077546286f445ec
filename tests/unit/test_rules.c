/* test_rules.c - rules/: route selection, hold rules, the hold encoding
 *
 * Golden files first (Postfix dict_cidr_test style): every
 * data/rules/NAME.yaml is loaded with config_load(), every line of
 * NAME.facts ("sender recipient attempts_made listener account", "<>" for
 * the null sender, "-" for none) goes through route_select(), and the
 * output must equal NAME.ref. On a mismatch the differing lines are
 * printed and the whole output is written to /tmp/test_rules.NAME.out for
 * diff -u; SY_UPDATE_GOLDEN=1 rewrites the .ref files instead (review the
 * diff before committing them).
 *
 * Then tables: domain patterns, the route builder's refusals, hold rule
 * validation and matching, and the hold encoding: exact encodings pinned
 * (their CRC-32C computed independently here), every truncation and every
 * single-byte change of an encoding refused, malformed encodings with a
 * valid checksum refused by the grammar.
 * Runs with cwd tests/unit.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/config.h"
#include "gateway/util/buf.h"
#include "gateway/util/err.h"
#include "gateway/util/text.h"
#include "rules/hold.h"
#include "rules/match.h"
#include "rules/route.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define GOLDEN_DIR "data/rules"
#define GOLDEN_MAX ((size_t) 1024 * 1024)
#define GOLDEN_FIELDS 5

/* ---- golden files -------------------------------------------------------- */

/* slurp - a whole file as a new string (free() it), or NULL when missing */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    struct buf b;
    char chunk[4096];
    size_t n;

    if (f == NULL)
        return NULL;
    buf_init(&b, GOLDEN_MAX);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        assert_int_equal(buf_append(&b, chunk, n), SY_OK);
    assert_int_equal(ferror(f), 0);
    (void) fclose(f);
    return buf_take(&b, NULL);
}

static void spit(const char *path, const char *data)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, strlen(data), f), strlen(data));
    assert_int_equal(fclose(f), 0);
}

/* golden_line - evaluate one facts line into out */
static void golden_line(const struct config *cfg, const char *name, size_t lineno, char *line,
                        struct buf *out)
{
    char *field[GOLDEN_FIELDS], *save = NULL, what[ROUTE_MATCH_TEXT_MAX];
    struct route_facts f;
    struct route_match m;
    const char *tr;
    uint64_t attempts;
    size_t nf = 0;

    for (char *p = line; nf < GOLDEN_FIELDS;) {
        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        field[nf++] = p;
        p += strcspn(p, " ");
        if (*p != '\0')
            *p++ = '\0';
        save = p;
    }
    if (nf != GOLDEN_FIELDS || (save != NULL && save[strspn(save, " ")] != '\0'))
        fail_msg("%s.facts:%zu: expected %d fields: sender recipient attempts_made listener account",
                 name, lineno, GOLDEN_FIELDS);
    if (text_parse_u64(field[2], strlen(field[2]), 0, UINT32_MAX, &attempts) != SY_OK)
        fail_msg("%s.facts:%zu: attempts_made \"%s\" is not a number", name, lineno, field[2]);
    f.sender = strcmp(field[0], "<>") == 0 ? "" : field[0];
    f.recipient = field[1];
    f.attempts_made = (unsigned) attempts;
    f.listener = strcmp(field[3], "-") == 0 ? NULL : field[3];
    f.account = strcmp(field[4], "-") == 0 ? NULL : field[4];
    tr = route_select(cfg->routes, &f, &m);
    assert_non_null(tr);
    assert_int_equal(route_match_format(&m, what, sizeof(what)), SY_OK);
    assert_int_equal(buf_printf(out, "%s %s %s %s %s => %s%s via %s\n", field[0], field[1], field[2],
                                field[3], field[4], tr, m.is_default ? " (default)" : "", what), SY_OK);
}

/* golden_eval - every line of facts: comments and blank lines copied */
static void golden_eval(const struct config *cfg, const char *name, char *facts, struct buf *out)
{
    size_t lineno = 0;
    char *p = facts;

    while (*p != '\0') {
        char *nl = strchr(p, '\n');

        if (nl != NULL)
            *nl = '\0';
        lineno++;
        if (p[0] == '\0' || p[0] == '#')
            assert_int_equal(buf_printf(out, "%s\n", p), SY_OK);
        else
            golden_line(cfg, name, lineno, p, out);
        if (nl == NULL)
            break;
        p = nl + 1;
    }
}

/* golden_compare - got against the .ref; a diff-like report on mismatch */
static void golden_compare(const char *name, const char *ref, const char *got)
{
    const char *r = ref, *g = got;
    char outpath[256];
    size_t line = 1, shown = 0;

    if (strcmp(ref, got) == 0)
        return;
    while ((*r != '\0' || *g != '\0') && shown < 20) {
        size_t rn = strcspn(r, "\n"), gn = strcspn(g, "\n");

        if (rn != gn || memcmp(r, g, rn) != 0) {
            print_message("%s.ref:%zu:\n- %.*s\n+ %.*s\n", name, line, (int) rn, r, (int) gn, g);
            shown++;
        }
        r += rn + (r[rn] == '\n');
        g += gn + (g[gn] == '\n');
        line++;
    }
    (void) snprintf(outpath, sizeof(outpath), "/tmp/test_rules.%s.out", name);
    spit(outpath, got);
    fail_msg("%s: output differs from %s/%s.ref: diff -u %s/%s.ref %s "
             "(SY_UPDATE_GOLDEN=1 rewrites the .ref)", name, GOLDEN_DIR, name, GOLDEN_DIR, name, outpath);
}

static int golden_filter(const struct dirent *d)
{
    size_t n = strlen(d->d_name);

    return n > 5 && strcmp(d->d_name + n - 5, ".yaml") == 0;
}

/* Every data/rules/NAME.yaml with its .facts and .ref. */
static void test_golden(void **state)
{
    const char *update = getenv("SY_UPDATE_GOLDEN");
    struct dirent **ents = NULL;
    int n;

    (void) state;
    n = scandir(GOLDEN_DIR, &ents, golden_filter, alphasort);
    assert_true(n >= 3);
    for (int i = 0; i < n; i++) {
        char name[128], path[256], *facts, *ref;
        struct config *cfg;
        struct buf errors, out;

        assert_true(strlen(ents[i]->d_name) - 5 < sizeof(name));
        (void) snprintf(name, sizeof(name), "%.*s", (int) (strlen(ents[i]->d_name) - 5), ents[i]->d_name);
        print_message("golden: %s\n", name);
        buf_init(&errors, 64 * 1024);
        (void) snprintf(path, sizeof(path), "%s/%s.yaml", GOLDEN_DIR, name);
        cfg = config_load(path, &errors);
        if (cfg == NULL)
            fail_msg("%s", buf_str(&errors));
        assert_non_null(cfg->routes);
        (void) snprintf(path, sizeof(path), "%s/%s.facts", GOLDEN_DIR, name);
        facts = slurp(path);
        if (facts == NULL)
            fail_msg("%s: missing", path);
        buf_init(&out, GOLDEN_MAX);
        golden_eval(cfg, name, facts, &out);
        (void) snprintf(path, sizeof(path), "%s/%s.ref", GOLDEN_DIR, name);
        if (update != NULL && strcmp(update, "1") == 0) {
            spit(path, buf_str(&out));
            print_message("golden: wrote %s\n", path);
        } else {
            ref = slurp(path);
            if (ref == NULL)
                fail_msg("%s: missing (SY_UPDATE_GOLDEN=1 writes it)", path);
            golden_compare(name, ref, buf_str(&out));
            free(ref);
        }
        free(facts);
        buf_free(&out);
        buf_free(&errors);
        config_free(cfg);
        free(ents[i]);
    }
    free(ents);
}

/* ---- domain and address primitives ---------------------------------------- */

struct dom_case {
    const char *in;
    unsigned flags;
    int rc;
    const char *out;            /* SY_OK: the normal form; else a substring of err.text */
};

#define L63 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define D253 L63 "." L63 "." L63 "." "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static const struct dom_case dom_cases[] = {
    { "Example.COM.", 0, SY_OK, "example.com" },
    { ".Example.com", RULES_DOMAIN_SUFFIX, SY_OK, ".example.com" },
    { "example.com", RULES_DOMAIN_SUFFIX, SY_OK, "example.com" },
    { "a_b-c.example", 0, SY_OK, "a_b-c.example" },
    { "B\xc3\xbc" "cher.Example", 0, SY_OK, "b\xc3\xbc" "cher.example" },
    { "localhost", 0, SY_OK, "localhost" },
    { L63 ".example", 0, SY_OK, L63 ".example" },
    { D253, 0, SY_OK, D253 },
    { "." D253 ".", RULES_DOMAIN_SUFFIX, SY_OK, "." D253 },
    { ".example.com", 0, SY_ESYNTAX, "a leading dot is not allowed here" },
    { ".", RULES_DOMAIN_SUFFIX, SY_ESYNTAX, "the domain is empty" },
    { ".", 0, SY_ESYNTAX, "the domain is empty" },
    { "", 0, SY_ESYNTAX, "the domain is empty" },
    { "..example.com", RULES_DOMAIN_SUFFIX, SY_ESYNTAX, "empty label" },
    { "a..b", 0, SY_ESYNTAX, "empty label" },
    { "example.com..", 0, SY_ESYNTAX, "empty label" },
    { "-a.example", 0, SY_ESYNTAX, "starts or ends with '-'" },
    { "a-.example", 0, SY_ESYNTAX, "starts or ends with '-'" },
    { "a" L63 ".example", 0, SY_ESYNTAX, "a label is longer than 63 bytes" },
    { D253 "a", 0, SY_ESYNTAX, "longer than 253 bytes" },
    { "exa mple.com", 0, SY_ESYNTAX, "the byte 0x20" },
    { "a@example.com", 0, SY_ESYNTAX, "holds '@'" },
    { "*.example.com", RULES_DOMAIN_SUFFIX, SY_ESYNTAX, "holds '*'" },
    { "[192.0.2.1]", 0, SY_ESYNTAX, "holds '['" },
    { "\xff.example", 0, SY_ESYNTAX, "not valid UTF-8" },
    { "a\tb.example", 0, SY_ESYNTAX, "the byte 0x09" },
};

static void test_domain_norm(void **state)
{
    (void) state;
    for (size_t i = 0; i < ARRAY_SIZE(dom_cases); i++) {
        const struct dom_case *c = &dom_cases[i];
        char out[RULES_DOMAIN_MAX + 2] = "junk";
        struct sy_err e;
        int rc;

        print_message("domain %zu: \"%.40s\"\n", i, c->in);
        sy_err_clear(&e);
        rc = rules_domain_norm(c->in, strlen(c->in), c->flags, out, sizeof(out), &e);
        assert_int_equal(rc, c->rc);
        if (rc == SY_OK) {
            assert_string_equal(out, c->out);
            assert_int_equal(e.code, SY_OK);
        } else {
            assert_string_equal(out, "");
            assert_int_equal(e.code, c->rc);
            assert_string_equal(e.enh, "5.5.4");
            if (strstr(e.text, c->out) == NULL)
                fail_msg("error \"%s\" lacks \"%s\"", e.text, c->out);
        }
    }
    /* Counted input: bytes past n are not read; an output too small is refused. */
    {
        char out[12];

        assert_int_equal(rules_domain_norm("example.comXYZ", 11, 0, out, sizeof(out), NULL), SY_OK);
        assert_string_equal(out, "example.com");
        assert_int_equal(rules_domain_norm("example.com", 11, 0, out, 11, NULL), SY_ETOOBIG);
        assert_string_equal(out, "");
    }
}

struct addr_norm_case {
    const char *in;
    int rc;
    const char *out;            /* normal form, or error substring */
};

static const struct addr_norm_case addr_norm_cases[] = {
    { "Bob@Example.COM.", SY_OK, "Bob@example.com" },
    { "\"a@b\"@example.org", SY_OK, "\"a@b\"@example.org" },
    { "j\xc3\xa9r\xc3\xb4me@b\xc3\xbc" "cher.example", SY_OK, "j\xc3\xa9r\xc3\xb4me@b\xc3\xbc" "cher.example" },
    { "example.com", SY_ESYNTAX, "has no '@'" },
    { "@example.com", SY_ESYNTAX, "local part is empty" },
    { "bob@", SY_ESYNTAX, "the domain is empty" },
    { "bob@.example.com", SY_ESYNTAX, "a leading dot is not allowed here" },
    { "b\tob@example.com", SY_ESYNTAX, "control characters" },
    { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com", SY_ESYNTAX,
      "longer than 64 bytes" },
    { "bob@" D253, SY_ESYNTAX, "the address is longer than 254 bytes" },
};

static void test_addr_norm(void **state)
{
    (void) state;
    for (size_t i = 0; i < ARRAY_SIZE(addr_norm_cases); i++) {
        const struct addr_norm_case *c = &addr_norm_cases[i];
        char out[RULES_ADDR_MAX + 1];
        struct sy_err e;
        int rc;

        print_message("address %zu: \"%.40s\"\n", i, c->in);
        rc = rules_addr_norm(c->in, strlen(c->in), out, sizeof(out), &e);
        assert_int_equal(rc, c->rc);
        if (rc == SY_OK) {
            assert_string_equal(out, c->out);
        } else {
            assert_string_equal(out, "");
            assert_string_equal(e.enh, "5.5.4");
            if (strstr(e.text, c->out) == NULL)
                fail_msg("error \"%s\" lacks \"%s\"", e.text, c->out);
        }
    }
}

struct dmatch_case {
    const char *pattern;        /* normalised */
    const char *addr;           /* an address: its domain is matched */
    bool match;
};

static const struct dmatch_case dmatch_cases[] = {
    { "example.com", "a@example.com", true },
    { "example.com", "a@EXAMPLE.Com.", true },
    { "example.com", "a@sub.example.com", false },
    { "example.com", "a@example.com.au", false },
    { "example.com", "a@example.co", false },
    { ".example.com", "a@example.com", true },
    { ".example.com", "a@x.y.example.com", true },
    { ".example.com", "a@X.EXAMPLE.COM.", true },
    { ".example.com", "a@badexample.com", false },
    { ".example.com", "a@example.com.evil", false },
    { ".example.com", "a@xample.com", false },
    { ".example.com", "a@.example.com", false },  /* not a domain: no label before the dot */
    { "example.com", "example.com", false },       /* no '@': no domain */
    { "example.com", "", false },
    { "example.com", NULL, false },
    { "example.com", "a@", false },
    { "example.com", "a@.", false },
    { "c", "a@b@c", true },                         /* the last '@' */
    { "b\xc3\xbc" "cher.example", "a@b\xc3\xbc" "cher.EXAMPLE", true },
    { "b\xc3\xbc" "cher.example", "a@B\xc3\x9c" "CHER.example", false },  /* ASCII folding only */
};

static void test_domain_match(void **state)
{
    (void) state;
    for (size_t i = 0; i < ARRAY_SIZE(dmatch_cases); i++) {
        const struct dmatch_case *c = &dmatch_cases[i];
        const char *d;
        size_t n;

        print_message("match %zu: %s ~ %s\n", i, c->pattern, c->addr != NULL ? c->addr : "(null)");
        d = rules_addr_domain(c->addr, &n);
        assert_non_null(d);
        assert_int_equal(rules_domain_match(c->pattern, d, n), c->match);
    }
    assert_true(rules_addr_match("bob@example.com", "BOB@Example.COM."));
    assert_false(rules_addr_match("bob@example.com", "bobby@example.com"));
    assert_false(rules_addr_match("bob@example.com", "bo@example.com"));
    assert_false(rules_addr_match("bob@example.com", "bob@sub.example.com"));
    assert_false(rules_addr_match("bob@example.com", "bob"));
    assert_false(rules_addr_match("bob@example.com", NULL));
    assert_true(rules_name_ok("lmtp0"));
    assert_true(rules_name_ok("a.b_c-D"));
    assert_false(rules_name_ok(""));
    assert_false(rules_name_ok(NULL));
    assert_false(rules_name_ok("a b"));
    assert_false(rules_name_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

/* ---- route builder ------------------------------------------------------- */

struct builder_case {
    const char *name;
    enum route_scope scope;
    const char *key;
    const char *sd[3];          /* sender domains, NULL-terminated */
    const char *rd[3];          /* recipient domains */
    const char *ls[3];          /* listeners */
    const char *transport;
    int rc;
    const char *err;            /* substring; NULL when rc is SY_OK */
};

static const struct builder_case builder_cases[] = {
    { "global", ROUTE_SCOPE_GLOBAL, NULL, { NULL }, { ".Example.NET." }, { "lmtp0" }, "relay", SY_OK, NULL },
    { "global with an empty key", ROUTE_SCOPE_GLOBAL, "", { NULL }, { NULL }, { NULL }, "", SY_OK, NULL },
    { "account", ROUTE_SCOPE_ACCOUNT, "alice@example.org", { "example.org" }, { NULL }, { NULL }, NULL,
      SY_OK, NULL },
    { "sender domain", ROUTE_SCOPE_SENDER_DOMAIN, "Example.ORG.", { NULL }, { NULL }, { NULL }, "relay",
      SY_OK, NULL },
    { "global with a key", ROUTE_SCOPE_GLOBAL, "x", { NULL }, { NULL }, { NULL }, "relay", SY_ESYNTAX,
      "global rules have no key" },
    { "empty account", ROUTE_SCOPE_ACCOUNT, "", { NULL }, { NULL }, { NULL }, "relay", SY_ESYNTAX,
      "account \"\": 1 to 255 bytes" },
    { "account with a control character", ROUTE_SCOPE_ACCOUNT, "a\nb", { NULL }, { NULL }, { NULL }, "relay",
      SY_ESYNTAX, "account \"a?b\"" },
    { "sender domain with a leading dot", ROUTE_SCOPE_SENDER_DOMAIN, ".example.org", { NULL }, { NULL },
      { NULL }, "relay", SY_ESYNTAX, "sender domain \".example.org\": a leading dot is not allowed here" },
    { "missing sender domain", ROUTE_SCOPE_SENDER_DOMAIN, NULL, { NULL }, { NULL }, { NULL }, "relay",
      SY_ESYNTAX, "missing" },
    { "no scope", ROUTE_SCOPE_NONE, NULL, { NULL }, { NULL }, { NULL }, "relay", SY_ESYNTAX, "unknown scope" },
    { "bad sender domain", ROUTE_SCOPE_GLOBAL, NULL, { "ok.example", "bad domain" }, { NULL }, { NULL },
      "relay", SY_ESYNTAX, "sender_domains[1]: \"bad domain\": the domain holds the byte 0x20" },
    { "bad recipient domain", ROUTE_SCOPE_GLOBAL, NULL, { NULL }, { "." }, { NULL }, "relay", SY_ESYNTAX,
      "recipient_domains[0]: \".\": the domain is empty" },
    { "bad listener", ROUTE_SCOPE_GLOBAL, NULL, { NULL }, { NULL }, { "a/b" }, "relay", SY_ESYNTAX,
      "listeners[0]: \"a/b\" is not a valid name" },
    { "bad transport", ROUTE_SCOPE_GLOBAL, NULL, { NULL }, { NULL }, { NULL }, "re lay", SY_ESYNTAX,
      "transport: \"re lay\" is not a valid name" },
};

static size_t strv_len(const char *const *v)
{
    size_t n = 0;

    while (n < 3 && v[n] != NULL)
        n++;
    return n;
}

/* Refusals leave the builder as it was: only the good rules end up in the table. */
static void test_route_builder(void **state)
{
    struct route_builder *b;
    struct route_table *t;
    size_t good = 0;

    (void) state;
    b = route_builder_new("relay");
    for (size_t i = 0; i < ARRAY_SIZE(builder_cases); i++) {
        const struct builder_case *c = &builder_cases[i];
        struct route_rule_spec spec = {
            .sender_domains = c->sd, .nsender_domains = strv_len(c->sd),
            .recipient_domains = c->rd, .nrecipient_domains = strv_len(c->rd),
            .listeners = c->ls, .nlisteners = strv_len(c->ls),
            .transport = c->transport,
        };
        struct sy_err e;

        print_message("builder: %s\n", c->name);
        sy_err_clear(&e);
        assert_int_equal(route_builder_add(b, c->scope, c->key, &spec, &e), c->rc);
        if (c->rc == SY_OK) {
            good++;
            assert_int_equal(e.code, SY_OK);
            continue;
        }
        assert_int_equal(e.code, c->rc);
        assert_string_equal(e.enh, "5.5.4");
        if (strstr(e.text, c->err) == NULL)
            fail_msg("error \"%s\" lacks \"%s\"", e.text, c->err);
    }
    {
        /* A list longer than ROUTE_LIST_MAX, and a list pointer missing. */
        const char **many = calloc(ROUTE_LIST_MAX + 1, sizeof(*many));
        struct route_rule_spec spec = { .recipient_domains = many, .nrecipient_domains = ROUTE_LIST_MAX + 1 };
        struct sy_err e;

        assert_non_null(many);
        for (size_t i = 0; i <= ROUTE_LIST_MAX; i++)
            many[i] = "example.com";
        assert_int_equal(route_builder_add(b, ROUTE_SCOPE_GLOBAL, NULL, &spec, &e), SY_ETOOBIG);
        assert_non_null(strstr(e.text, "recipient_domains: more than 1024 entries"));
        spec.nrecipient_domains = ROUTE_LIST_MAX;
        assert_int_equal(route_builder_add(b, ROUTE_SCOPE_GLOBAL, NULL, &spec, &e), SY_OK);
        good++;
        spec.recipient_domains = NULL;
        spec.nrecipient_domains = 1;
        assert_int_equal(route_builder_add(b, ROUTE_SCOPE_GLOBAL, NULL, &spec, &e), SY_ESYNTAX);
        assert_non_null(strstr(e.text, "recipient_domains: no list given"));
        free(many);
    }
    t = route_builder_finish(b);
    assert_int_equal(route_table_count(t), good);
    assert_string_equal(route_table_default(t), "relay");
    route_table_free(t);

    /* Freeing a builder that was never finished frees its rules. */
    b = route_builder_new("capture");
    {
        const char *d[] = { "example.com" };
        struct route_rule_spec spec = { .sender_domains = d, .nsender_domains = 1, .transport = "x" };

        assert_int_equal(route_builder_add(b, ROUTE_SCOPE_SENDER_DOMAIN, "example.com", &spec, NULL), SY_OK);
        assert_int_equal(route_builder_add(b, ROUTE_SCOPE_GLOBAL, "bad", &spec, NULL), SY_ESYNTAX);
    }
    route_builder_free(b);
    route_builder_free(NULL);
    route_table_free(NULL);
}

/* route_select on a table built here: order within a key, NULL facts fields. */
static void test_route_select(void **state)
{
    struct route_builder *b = route_builder_new("dflt");
    const char *gm[] = { "gmail.com" };
    struct route_rule_spec r1 = { .recipient_domains = gm, .nrecipient_domains = 1, .transport = "one" };
    struct route_rule_spec r2 = { .transport = "two" };
    struct route_rule_spec r3 = { .min_attempts = 1, .transport = "three" };
    struct route_facts f;
    struct route_match m;
    struct route_table *t;
    char what[ROUTE_MATCH_TEXT_MAX];

    (void) state;
    /* Added interleaved: each key keeps its own order. */
    assert_int_equal(route_builder_add(b, ROUTE_SCOPE_SENDER_DOMAIN, "b.example", &r1, NULL), SY_OK);
    assert_int_equal(route_builder_add(b, ROUTE_SCOPE_SENDER_DOMAIN, "a.example", &r3, NULL), SY_OK);
    assert_int_equal(route_builder_add(b, ROUTE_SCOPE_SENDER_DOMAIN, "b.example", &r2, NULL), SY_OK);
    assert_int_equal(route_builder_add(b, ROUTE_SCOPE_SENDER_DOMAIN, "a.example", &r1, NULL), SY_OK);
    t = route_builder_finish(b);
    assert_int_equal(route_table_count(t), 4);

    memset(&f, 0, sizeof(f));
    assert_string_equal(route_select(t, &f, &m), "dflt");
    assert_int_equal(m.scope, ROUTE_SCOPE_NONE);
    assert_true(m.is_default);
    assert_string_equal(m.key, "");
    assert_string_equal(route_select(t, &f, NULL), "dflt");

    f.sender = "x@B.Example";
    f.recipient = "y@gmail.com";
    assert_string_equal(route_select(t, &f, &m), "one");
    assert_int_equal(m.scope, ROUTE_SCOPE_SENDER_DOMAIN);
    assert_string_equal(m.key, "b.example");
    assert_int_equal(m.index, 0);
    assert_false(m.is_default);
    f.recipient = "y@example.net";
    assert_string_equal(route_select(t, &f, &m), "two");
    assert_int_equal(m.index, 1);
    assert_int_equal(route_match_format(&m, what, sizeof(what)), SY_OK);
    assert_string_equal(what, "sender_domain:b.example[1]");
    f.sender = "x@a.example";
    f.recipient = "y@gmail.com";
    assert_string_equal(route_select(t, &f, &m), "one");
    assert_int_equal(m.index, 1);
    f.attempts_made = 1;
    assert_string_equal(route_select(t, &f, &m), "three");
    assert_int_equal(m.index, 0);
    /* A sender domain longer than any domain cannot have rules. */
    f.sender = "x@" D253 "a";
    assert_string_equal(route_select(t, &f, &m), "dflt");

    /* route_match_format: every scope, and a buffer too small */
    assert_int_equal(route_match_format(&m, what, sizeof(what)), SY_OK);
    assert_string_equal(what, "none");
    m.scope = ROUTE_SCOPE_GLOBAL;
    m.index = 12;
    assert_int_equal(route_match_format(&m, what, sizeof(what)), SY_OK);
    assert_string_equal(what, "global[12]");
    m.scope = ROUTE_SCOPE_ACCOUNT;
    m.key = "alice";
    m.index = 0;
    assert_int_equal(route_match_format(&m, what, sizeof(what)), SY_OK);
    assert_string_equal(what, "account:alice[0]");
    assert_int_equal(route_match_format(&m, what, 16), SY_ETOOBIG);
    assert_string_equal(what, "");
    assert_int_equal(route_match_format(&m, what, 17), SY_OK);
    assert_int_equal(route_match_format(&m, what, 0), SY_ETOOBIG);
    assert_string_equal(route_scope_name(ROUTE_SCOPE_SENDER_DOMAIN), "sender_domain");
    assert_string_equal(route_scope_name((enum route_scope) 42), "none");
    route_table_free(t);
}

/* ---- hold rules ---------------------------------------------------------- */

struct hold_set_case {
    const char *name;
    const char *sender, *recipient, *listener;
    int64_t until;
    int rc;
    const char *want_sender, *want_recipient;   /* SY_OK: normalised; else want_sender is the error */
};

static const struct hold_set_case hold_set_cases[] = {
    { "empty", NULL, "", NULL, 0, SY_OK, "", "" },
    { "domains", "Example.ORG.", ".Example.NET", "postfix", 1, SY_OK, "example.org", ".example.net" },
    { "mailboxes", "Bob@Example.ORG", "carol@example.net.", "", HOLD_UNTIL_MAX, SY_OK,
      "Bob@example.org", "carol@example.net" },
    { "null sender", "<>", NULL, NULL, 0, SY_OK, "<>", "" },
    { "null recipient", NULL, "<>", NULL, 0, SY_ESYNTAX, "recipient: \"<>\" (the null sender) is only a sender",
      NULL },
    { "bad sender", "exa mple.org", NULL, NULL, 0, SY_ESYNTAX,
      "sender: \"exa mple.org\": the domain holds the byte 0x20", NULL },
    { "bad recipient mailbox", NULL, "@example.net", NULL, 0, SY_ESYNTAX,
      "recipient: \"@example.net\": the local part is empty", NULL },
    { "domain too long", "." D253 "a", NULL, NULL, 0, SY_ESYNTAX, "longer than 253 bytes", NULL },
    { "bad listener", NULL, NULL, "a b", 0, SY_ESYNTAX, "listener: \"a b\" is not a valid name", NULL },
    { "negative until", NULL, NULL, NULL, -1, SY_ESYNTAX, "until: -1 is out of range", NULL },
    { "until too late", NULL, NULL, NULL, HOLD_UNTIL_MAX + 1, SY_ESYNTAX,
      "until: 253402300800 is out of range", NULL },
};

static void test_hold_set(void **state)
{
    (void) state;
    for (size_t i = 0; i < ARRAY_SIZE(hold_set_cases); i++) {
        const struct hold_set_case *c = &hold_set_cases[i];
        struct hold_rule r, before;
        struct sy_err e;

        print_message("hold_rule_set: %s\n", c->name);
        assert_int_equal(hold_rule_set(&r, "keep.example", "k@keep.example", "keep", 99, NULL), SY_OK);
        before = r;
        assert_int_equal(hold_rule_set(&r, c->sender, c->recipient, c->listener, c->until, &e), c->rc);
        if (c->rc == SY_OK) {
            assert_string_equal(r.sender, c->want_sender);
            assert_string_equal(r.recipient, c->want_recipient);
            assert_string_equal(r.listener, c->listener != NULL ? c->listener : "");
            assert_int_equal(r.until, c->until);
            continue;
        }
        assert_memory_equal(&r, &before, sizeof(r));
        assert_int_equal(e.code, SY_ESYNTAX);
        assert_string_equal(e.enh, "5.5.4");
        if (strstr(e.text, c->want_sender) == NULL)
            fail_msg("error \"%s\" lacks \"%s\"", e.text, c->want_sender);
    }
}

struct hold_match_case {
    const char *name;
    const char *rs, *rr, *rl;   /* the rule */
    int64_t until;
    const char *fs, *fr, *fl;   /* the facts */
    int64_t now;
    bool match;
};

static const struct hold_match_case hold_match_cases[] = {
    { "empty rule holds everything", NULL, NULL, NULL, 0, "a@b.example", "c@d.example", "postfix", 5, true },
    { "empty rule, null sender, no listener", NULL, NULL, NULL, 0, "", "c@d.example", NULL, 5, true },
    { "sender domain", "b.example", NULL, NULL, 0, "a@B.Example.", "c@d.example", "x", 0, true },
    { "sender domain, other domain", "b.example", NULL, NULL, 0, "a@sub.b.example", "c@d.example", "x", 0, false },
    { "sender subdomains", ".b.example", NULL, NULL, 0, "a@sub.b.example", "c@d.example", "x", 0, true },
    { "sender subdomains, the domain itself", ".b.example", NULL, NULL, 0, "a@b.example", "c", "x", 0, true },
    { "sender subdomains, lookalike", ".b.example", NULL, NULL, 0, "a@bb.example", "c", "x", 0, false },
    { "sender mailbox", "a@b.example", NULL, NULL, 0, "A@B.EXAMPLE", "c@d.example", "x", 0, true },
    { "sender mailbox, other local part", "a@b.example", NULL, NULL, 0, "aa@b.example", "c@d", "x", 0, false },
    { "null sender", "<>", NULL, NULL, 0, "", "c@d.example", "x", 0, true },
    { "null sender as NULL", "<>", NULL, NULL, 0, NULL, "c@d.example", "x", 0, true },
    { "null sender rule, real sender", "<>", NULL, NULL, 0, "a@b.example", "c@d.example", "x", 0, false },
    { "domain rule, null sender", "b.example", NULL, NULL, 0, "", "c@d.example", "x", 0, false },
    { "recipient domain", NULL, "d.example", NULL, 0, "a@b.example", "c@d.example", "x", 0, true },
    { "recipient mailbox", NULL, "c@d.example", NULL, 0, "a@b.example", "C@d.example.", "x", 0, true },
    { "recipient, other", NULL, "c@d.example", NULL, 0, "a@b.example", "c@e.example", "x", 0, false },
    { "listener", NULL, NULL, "postfix", 0, "a@b.example", "c@d.example", "postfix", 0, true },
    { "listener is exact", NULL, NULL, "postfix", 0, "a@b.example", "c@d.example", "Postfix", 0, false },
    { "listener, none in facts", NULL, NULL, "postfix", 0, "a@b.example", "c@d.example", NULL, 0, false },
    { "every field: AND", "b.example", "d.example", "postfix", 0, "a@b.example", "c@d.example", "postfix", 0,
      true },
    { "every field, one differs", "b.example", "d.example", "postfix", 0, "a@b.example", "c@e.example",
      "postfix", 0, false },
    { "until: before", NULL, NULL, NULL, 1000, "a@b", "c@d", "x", 999, true },
    { "until: at", NULL, NULL, NULL, 1000, "a@b", "c@d", "x", 1000, false },
    { "until: after", NULL, NULL, NULL, 1000, "a@b", "c@d", "x", 1001, false },
    { "until: far before", "b.example", NULL, NULL, 1000, "a@b.example", "c@d", "x", -5, true },
};

static void test_hold_match(void **state)
{
    (void) state;
    for (size_t i = 0; i < ARRAY_SIZE(hold_match_cases); i++) {
        const struct hold_match_case *c = &hold_match_cases[i];
        struct hold_facts f = { c->fs, c->fr, c->fl };
        struct hold_rule r;

        print_message("hold match: %s\n", c->name);
        assert_int_equal(hold_rule_set(&r, c->rs, c->rr, c->rl, c->until, NULL), SY_OK);
        assert_int_equal(hold_rule_match(&r, &f, c->now), c->match);
        assert_int_equal(hold_rule_expired(&r, c->now), c->until != 0 && c->now >= c->until);
    }
    {
        struct hold_rule r;

        hold_rule_init(&r);
        assert_true(hold_rule_is_empty(&r));
        assert_false(hold_rule_expired(&r, INT64_MAX));
        assert_int_equal(hold_rule_set(&r, NULL, NULL, NULL, 5, NULL), SY_OK);
        assert_true(hold_rule_is_empty(&r));
        assert_int_equal(hold_rule_set(&r, NULL, NULL, "x", 0, NULL), SY_OK);
        assert_false(hold_rule_is_empty(&r));
    }
}

/* ---- the hold encoding --------------------------------------------------- */

/* crc32c - an independent CRC-32C (Castagnoli) for building test encodings */
static uint32_t crc32c(const char *s, size_t n)
{
    uint32_t c = 0xffffffffu;

    for (size_t i = 0; i < n; i++) {
        c ^= (unsigned char) s[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1u) != 0 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    }
    return ~c;
}

/* with_crc - body plus ";c=" and its CRC-32C as 8 hex digits, into dst */
static const char *with_crc(char *dst, size_t n, const char *body, size_t blen)
{
    assert_true(blen + 12 <= n);
    memcpy(dst, body, blen);
    (void) snprintf(dst + blen, n - blen, ";c=%08X", (unsigned) crc32c(body, blen));
    return dst;
}

struct enc_case {
    const char *sender, *recipient, *listener;
    int64_t until;
    const char *encoding;
};

static const struct enc_case enc_cases[] = {
    { NULL, NULL, NULL, 0, "h1;c=2E615BDE" },
    { "<>", NULL, NULL, 0, "h1;s=<>;c=6B4F8A94" },
    { ".Example.COM", "bob@example.net", "postfix", 1700000000,
      "h1;s=.example.com;r=bob@example.net;l=postfix;u=1700000000;c=FAB72C7E" },
    { NULL, "\xc3\xa9t\xc3\xa9@b\xc3\xbc" "cher.example", NULL, 0,
      "h1;r=%C3%A9t%C3%A9@b%C3%BCcher.example;c=86CE89AE" },
    { "a b@example.org", NULL, NULL, 0, "h1;s=a%20b@example.org;c=DACB13B6" },
    { NULL, NULL, "apps", 1, "h1;l=apps;u=1;c=3251CF2B" },
};

/* The pinned encodings decode to the rule they came from. */
static void test_hold_encode(void **state)
{
    (void) state;
    for (size_t i = 0; i < ARRAY_SIZE(enc_cases); i++) {
        const struct enc_case *c = &enc_cases[i];
        char enc[HOLD_ENCODED_MAX + 1];
        struct hold_rule r, back;
        struct sy_err e;
        size_t n = 99, need;

        print_message("encode %zu: %s\n", i, c->encoding);
        assert_int_equal(hold_rule_set(&r, c->sender, c->recipient, c->listener, c->until, NULL), SY_OK);
        assert_int_equal(hold_rule_encode(&r, enc, sizeof(enc), &n), SY_OK);
        assert_string_equal(enc, c->encoding);
        assert_int_equal(n, strlen(c->encoding));
        hold_rule_init(&back);
        assert_int_equal(hold_rule_decode(enc, n, &back, &e), SY_OK);
        assert_memory_equal(&back, &r, sizeof(r));
        /* Every buffer too small is refused with "", and the exact size works. */
        need = n + 1;
        for (size_t sz = 0; sz < need; sz++) {
            n = 99;
            assert_int_equal(hold_rule_encode(&r, enc, sz, &n), SY_ETOOBIG);
            assert_int_equal(n, 0);
            if (sz > 0)
                assert_string_equal(enc, "");
        }
        assert_int_equal(hold_rule_encode(&r, enc, need, NULL), SY_OK);
        assert_string_equal(enc, c->encoding);
    }
}

/* The longest rule fits in HOLD_ENCODED_MAX and survives the trip. */
static void test_hold_encode_max(void **state)
{
    char local[RULES_LOCAL_MAX + 1], dom[RULES_DOMAIN_MAX + 1], addr[RULES_ADDR_MAX + 1];
    char enc[HOLD_ENCODED_MAX + 1];
    struct hold_rule r, back;
    size_t n;

    (void) state;
    /* 32 two-byte characters: every byte of the local part is escaped. */
    for (size_t i = 0; i < RULES_LOCAL_MAX; i += 2)
        memcpy(local + i, "\xc3\xa9", 2);
    local[RULES_LOCAL_MAX] = '\0';
    /* Labels of 2-byte characters, 62 + 1 + 62 + 1 + 63 = 189 bytes, so
     * that the mailbox is 64 + 1 + 189 = 254 bytes, every non-dot byte escaped. */
    {
        size_t o = 0;

        for (int l = 0; l < 3; l++) {
            for (int k = 0; k < 31; k++, o += 2)
                memcpy(dom + o, "\xc3\xbc", 2);
            dom[o++] = l < 2 ? '.' : 'x';
        }
        dom[o] = '\0';
        assert_int_equal(o, RULES_ADDR_MAX - RULES_LOCAL_MAX - 1);
    }
    memcpy(addr, local, RULES_LOCAL_MAX);
    addr[RULES_LOCAL_MAX] = '@';
    memcpy(addr + RULES_LOCAL_MAX + 1, dom, strlen(dom) + 1);
    assert_int_equal(strlen(addr), RULES_ADDR_MAX);
    assert_int_equal(hold_rule_set(&r, addr, addr, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                                   HOLD_UNTIL_MAX, NULL), SY_OK);
    assert_int_equal(hold_rule_encode(&r, enc, sizeof(enc), &n), SY_OK);
    print_message("longest encoding: %zu of %zu bytes\n", n, HOLD_ENCODED_MAX);
    assert_true(n <= HOLD_ENCODED_MAX);
    assert_true(n > HOLD_ENCODED_MAX / 2);
    assert_int_equal(hold_rule_decode(enc, n, &back, NULL), SY_OK);
    assert_memory_equal(&back, &r, sizeof(r));
}

/* Every prefix and every single-byte change of every pinned encoding is
 * refused, with the 4.3.0 status, leaving the rule untouched. */
static void test_hold_decode_damage(void **state)
{
    (void) state;
    for (size_t i = 0; i < ARRAY_SIZE(enc_cases); i++) {
        const char *enc = enc_cases[i].encoding;
        size_t n = strlen(enc), tried = 0;
        char copy[HOLD_ENCODED_MAX + 1];
        struct hold_rule r, before;
        struct sy_err e;

        print_message("damage: %s\n", enc);
        assert_int_equal(hold_rule_set(&r, "keep.example", NULL, NULL, 7, NULL), SY_OK);
        before = r;
        for (size_t len = 0; len < n; len++) {
            /* An exact-size heap copy: ASan catches a read past len. */
            char *p = malloc(len > 0 ? len : 1);

            assert_non_null(p);
            memcpy(p, enc, len);
            sy_err_clear(&e);
            if (hold_rule_decode(p, len, &r, &e) != SY_ESYNTAX)
                fail_msg("the prefix of %zu bytes was accepted", len);
            assert_string_equal(e.enh, "4.3.0");
            assert_memory_equal(&r, &before, sizeof(r));
            free(p);
        }
        for (size_t pos = 0; pos < n; pos++)
            for (unsigned v = 0; v < 256; v++) {
                char *p;

                if ((unsigned char) enc[pos] == v)
                    continue;
                p = malloc(n);
                assert_non_null(p);
                memcpy(p, enc, n);
                p[pos] = (char) v;
                sy_err_clear(&e);
                if (hold_rule_decode(p, n, &r, &e) != SY_ESYNTAX)
                    fail_msg("byte %zu changed to 0x%02x was accepted", pos, v);
                assert_int_equal(e.code, SY_ESYNTAX);
                assert_string_equal(e.enh, "4.3.0");
                assert_memory_equal(&r, &before, sizeof(r));
                free(p);
                tried++;
            }
        assert_int_equal(tried, n * 255);
        /* One byte more is refused too. */
        memcpy(copy, enc, n);
        copy[n] = 'x';
        assert_int_equal(hold_rule_decode(copy, n + 1, &r, NULL), SY_ESYNTAX);
    }
}

struct dec_case {
    const char *body;           /* crc appended by the test unless raw */
    bool raw;
    const char *err;            /* substring */
};

static const struct dec_case dec_cases[] = {
    { "", true, "not a hold rule encoding" },
    { "x1;c=00000000", true, "not a hold rule encoding" },
    { "h2", false, "unsupported version" },
    { "h", true, "not a hold rule encoding" },
    { "h1", true, "no checksum" },
    { "h1;c=2e615bde", true, "malformed checksum" },
    { "h1;c=2E615BDF", true, "checksum mismatch" },
    { "h1;c=+E615BDE", true, "malformed checksum" },
    { "h1;s=a.example;c=2E615BDE", true, "checksum mismatch" },
    { "h1;x=a", false, "malformed field at byte 2" },
    { "h1s=a", false, "malformed field at byte 2" },
    { "h1;", false, "malformed field at byte 2" },
    { "h1;s", false, "malformed field at byte 2" },
    { "h1;s=", false, "malformed field at byte 2" },
    { "h1;s==", false, "hold rule: sender" },
    { "h1;s=a.example;", false, "malformed field at byte 14" },
    { "h1;s=a.example;;r=b.example", false, "malformed field at byte 14" },
    { "h1;r=a.example;s=b.example", false, "field 's' out of order or repeated" },
    { "h1;s=a.example;s=b.example", false, "field 's' out of order or repeated" },
    { "h1;s=%41.example", false, "bad value for field 's'" },
    { "h1;s=%c3%a9.example", false, "bad value for field 's'" },
    { "h1;s=%C3", false, "hold rule: sender" },
    { "h1;s=%C", false, "bad value for field 's'" },
    { "h1;s=%00a.example", false, "bad value for field 's'" },
    { "h1;s=a b.example", false, "bad value for field 's'" },
    { "h1;s=Example.com", false, "not in canonical form" },
    { "h1;s=example.com.", false, "not in canonical form" },
    { "h1;r=<>", false, "is only a sender" },
    { "h1;l=a%20b", false, "listener: \"a b\" is not a valid name" },
    { "h1;u=0", false, "bad until" },
    { "h1;u=012", false, "bad until" },
    { "h1;u=253402300800", false, "bad until" },
    { "h1;u=1x", false, "bad until" },
    { "h1;u=123456789012345678901234", false, "bad value for field 'u'" },
};

static void test_hold_decode_grammar(void **state)
{
    (void) state;
    for (size_t i = 0; i < ARRAY_SIZE(dec_cases); i++) {
        const struct dec_case *c = &dec_cases[i];
        char buf[HOLD_ENCODED_MAX + 16];
        const char *in = c->raw ? c->body : with_crc(buf, sizeof(buf), c->body, strlen(c->body));
        struct hold_rule r, before;
        struct sy_err e;

        print_message("decode: %s\n", in);
        assert_int_equal(hold_rule_set(&r, "keep.example", NULL, NULL, 0, NULL), SY_OK);
        before = r;
        assert_int_equal(hold_rule_decode(in, strlen(in), &r, &e), SY_ESYNTAX);
        assert_string_equal(e.enh, "4.3.0");
        assert_true(sy_err_is_temp(&e));
        if (strstr(e.text, c->err) == NULL)
            fail_msg("error \"%s\" lacks \"%s\"", e.text, c->err);
        assert_memory_equal(&r, &before, sizeof(r));
    }
    {
        /* NUL inside, and longer than HOLD_ENCODED_MAX */
        char big[HOLD_ENCODED_MAX + 2];
        struct hold_rule r;

        assert_int_equal(hold_rule_decode("h1\0;c=2E615BDE", 14, &r, NULL), SY_ESYNTAX);
        memset(big, 'a', sizeof(big));
        assert_int_equal(hold_rule_decode(big, HOLD_ENCODED_MAX + 1, &r, NULL), SY_ESYNTAX);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_domain_norm),
        cmocka_unit_test(test_addr_norm),
        cmocka_unit_test(test_domain_match),
        cmocka_unit_test(test_route_builder),
        cmocka_unit_test(test_route_select),
        cmocka_unit_test(test_hold_set),
        cmocka_unit_test(test_hold_match),
        cmocka_unit_test(test_hold_encode),
        cmocka_unit_test(test_hold_encode_max),
        cmocka_unit_test(test_hold_decode_damage),
        cmocka_unit_test(test_hold_decode_grammar),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
