/* fuzz_rules.c - libFuzzer target: rules/ on hostile input
 *
 * Hold rules come out of Redis, written by any node; route facts come from
 * envelopes. The first input byte picks what the rest feeds (mod 4):
 *
 *   0  hold_rule_decode(): anything accepted must be the canonical form,
 *      i.e. encode back to exactly the input, and must be usable by
 *      hold_rule_match();
 *   1  route_select() over facts cut from the input (4 bytes of attempts,
 *      then sender, recipient, listener, account separated by NUL) against
 *      a fixed table with rules in every scope: the answer is always one of
 *      the table's transports and its match formats;
 *   2  hold_rule_set() on fields cut the same way: an accepted rule
 *      survives encode -> decode unchanged and matches its own facts the
 *      way hold_rule_match() says;
 *   3  rules_domain_norm(): an accepted pattern is its own normal form.
 *
 * Every string handed over is an exact-size heap copy, so ASan sees a read
 * one byte past it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/util/err.h"
#include "gateway/util/xalloc.h"
#include "rules/hold.h"
#include "rules/match.h"
#include "rules/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_FIELDS 4

static const char *const fuzz_transports[] = { "dflt", "acct", "dom", "glob", "late" };

/* fuzz_table - one table for the whole run (built on first use) */
static const struct route_table *fuzz_table(void)
{
    static struct route_table *t;
    static const char *const gm[] = { "gmail.com", ".googlemail.com" };
    static const char *const ex[] = { ".example.org", "Example.NET." };
    static const char *const ls[] = { "postfix", "apps" };
    const struct route_rule_spec rules[] = {
        { .recipient_domains = gm, .nrecipient_domains = 2, .transport = "acct" },
        { .min_attempts = 2, .listeners = ls, .nlisteners = 2, .transport = "" },
        { .sender_domains = ex, .nsender_domains = 2, .recipient_domains = gm, .nrecipient_domains = 1,
          .transport = "dom" },
        { .min_attempts = 3, .recipient_domains = gm, .nrecipient_domains = 2, .transport = "late" },
        { .listeners = ls + 1, .nlisteners = 1, .transport = "glob" },
    };
    struct route_builder *b;

    if (t != NULL)
        return t;
    b = route_builder_new("dflt");
    if (route_builder_add(b, ROUTE_SCOPE_ACCOUNT, "alice@example.org", &rules[0], NULL) != SY_OK ||
        route_builder_add(b, ROUTE_SCOPE_ACCOUNT, "apps", &rules[1], NULL) != SY_OK ||
        route_builder_add(b, ROUTE_SCOPE_ACCOUNT, "apps", &rules[0], NULL) != SY_OK ||
        route_builder_add(b, ROUTE_SCOPE_SENDER_DOMAIN, "example.org", &rules[2], NULL) != SY_OK ||
        route_builder_add(b, ROUTE_SCOPE_SENDER_DOMAIN, "Example.COM", &rules[1], NULL) != SY_OK ||
        route_builder_add(b, ROUTE_SCOPE_GLOBAL, NULL, &rules[3], NULL) != SY_OK ||
        route_builder_add(b, ROUTE_SCOPE_GLOBAL, NULL, &rules[4], NULL) != SY_OK)
        abort();
    t = route_builder_finish(b);
    return t;
}

/* fuzz_split - up to FUZZ_FIELDS NUL-separated fields, each an exact-size
 * copy (NULL for a field the input does not reach) */
static void fuzz_split(const uint8_t *p, size_t n, char **f)
{
    size_t k = 0;

    for (size_t i = 0; i < FUZZ_FIELDS; i++)
        f[i] = NULL;
    while (k < FUZZ_FIELDS && n > 0) {
        const uint8_t *z = memchr(p, 0, n);
        size_t len = z != NULL ? (size_t) (z - p) : n;

        f[k++] = xmemdup0(p, len);
        p += len;
        n -= len;
        if (z != NULL) {
            p++;
            n--;
        }
    }
}

static void fuzz_free(char **f)
{
    for (size_t i = 0; i < FUZZ_FIELDS; i++)
        free(f[i]);
}

static uint32_t fuzz_u32(const uint8_t **p, size_t *n)
{
    uint32_t v = 0;

    for (int i = 0; i < 4 && *n > 0; i++, (*p)++, (*n)--)
        v = v << 8 | **p;
    return v;
}

/* fuzz_decode - mode 0 */
static void fuzz_decode(const uint8_t *p, size_t n)
{
    char *in = malloc(n > 0 ? n : 1), out[HOLD_ENCODED_MAX + 1];
    struct hold_facts f = { "a@example.org", "b@example.net", "postfix" };
    struct hold_rule r;
    struct sy_err e;
    size_t len;

    if (in == NULL)
        abort();
    memcpy(in, p, n);
    if (hold_rule_decode(in, n, &r, &e) == SY_OK) {
        if (hold_rule_encode(&r, out, sizeof(out), &len) != SY_OK || len != n || memcmp(out, in, n) != 0)
            abort();            /* a non-canonical encoding was accepted */
        (void) hold_rule_match(&r, &f, 1700000000);
    } else if (e.code != SY_ESYNTAX || strcmp(e.enh, HOLD_ENH_CORRUPT) != 0) {
        abort();
    }
    free(in);
}

/* fuzz_route - mode 1 */
static void fuzz_route(const uint8_t *p, size_t n)
{
    const struct route_table *t = fuzz_table();
    char *fld[FUZZ_FIELDS], what[ROUTE_MATCH_TEXT_MAX];
    struct route_facts f;
    struct route_match m;
    const char *tr;
    size_t i;

    f.attempts_made = fuzz_u32(&p, &n);
    fuzz_split(p, n, fld);
    f.sender = fld[0];
    f.recipient = fld[1];
    f.listener = fld[2];
    f.account = fld[3];
    tr = route_select(t, &f, &m);
    for (i = 0; i < sizeof(fuzz_transports) / sizeof(fuzz_transports[0]); i++)
        if (tr != NULL && strcmp(tr, fuzz_transports[i]) == 0)
            break;
    if (i == sizeof(fuzz_transports) / sizeof(fuzz_transports[0]))
        abort();
    if (m.is_default != (strcmp(tr, "dflt") == 0) || (m.scope == ROUTE_SCOPE_NONE && !m.is_default))
        abort();
    if (route_match_format(&m, what, sizeof(what)) != SY_OK)
        abort();
    if (route_select(t, &f, NULL) != tr)
        abort();
    fuzz_free(fld);
}

/* fuzz_hold_set - mode 2 */
static void fuzz_hold_set(const uint8_t *p, size_t n)
{
    char *fld[FUZZ_FIELDS], enc[HOLD_ENCODED_MAX + 1];
    struct hold_rule r, back;
    struct hold_facts f;
    int64_t until = (int64_t) fuzz_u32(&p, &n);
    size_t len;

    fuzz_split(p, n, fld);
    if (hold_rule_set(&r, fld[0], fld[1], fld[2], until, NULL) == SY_OK) {
        if (hold_rule_encode(&r, enc, sizeof(enc), &len) != SY_OK)
            abort();            /* HOLD_ENCODED_MAX is too small */
        if (hold_rule_decode(enc, len, &back, NULL) != SY_OK || memcmp(&back, &r, sizeof(r)) != 0)
            abort();
        f.sender = fld[0];
        f.recipient = fld[1];
        f.listener = fld[3];
        (void) hold_rule_match(&r, &f, until - 1);
        if (until != 0 && hold_rule_match(&r, &f, until))
            abort();            /* until has passed: it must not hold */
    }
    fuzz_free(fld);
}

/* fuzz_domain - mode 3 */
static void fuzz_domain(const uint8_t *p, size_t n)
{
    char *in = xmemdup0(p, n), out[RULES_DOMAIN_MAX + 2], again[RULES_DOMAIN_MAX + 2];
    struct sy_err e;

    if (rules_domain_norm(in, n, RULES_DOMAIN_SUFFIX, out, sizeof(out), &e) == SY_OK) {
        if (rules_domain_norm(out, strlen(out), RULES_DOMAIN_SUFFIX, again, sizeof(again), &e) != SY_OK ||
            strcmp(out, again) != 0)
            abort();
        if (out[0] != '.' && !rules_domain_match(out, again, strlen(again)))
            abort();
    }
    free(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    switch (data[0] % 4) {
    case 0:
        fuzz_decode(data + 1, size - 1);
        break;
    case 1:
        fuzz_route(data + 1, size - 1);
        break;
    case 2:
        fuzz_hold_set(data + 1, size - 1);
        break;
    default:
        fuzz_domain(data + 1, size - 1);
        break;
    }
    return 0;
}
