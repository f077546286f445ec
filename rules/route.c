/* route.c - route rules: build an immutable table, select a transport
 *
 * The builder collects (scope, key, sequence, rule) entries; finishing
 * sorts them by scope and key (the sequence keeps the configured order
 * within a key) and groups them into one sorted array of keyed rule lists
 * per scope, which route_select() searches with bsearch(). Sender domain
 * keys are stored lowercased, so the facts' domain is lowercased into a
 * stack buffer and compared bytewise.
 */
#include "rules/route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/util/log.h"
#include "gateway/util/text.h"
#include "gateway/util/xalloc.h"
#include "rules/match.h"

struct route_rule {
    char **sender_domains;      /* normalised patterns */
    size_t nsender_domains;
    char **recipient_domains;
    size_t nrecipient_domains;
    unsigned min_attempts;
    char **listeners;
    size_t nlisteners;
    char *transport;            /* "" = the default */
};

/* The rules of one key (or of the global scope), in configured order. */
struct route_set {
    char *key;
    struct route_rule *rules;
    size_t nrules;
};

struct route_entry {
    enum route_scope scope;
    char *key;
    size_t seq;
    struct route_rule rule;
};

struct route_builder {
    char *default_transport;
    struct route_entry *entries;
    size_t n, cap;
};

struct route_table {
    char *default_transport;
    struct route_set *accounts;     /* sorted by key (bytes) */
    size_t naccounts;
    struct route_set *domains;      /* sorted by key (lowercased domain) */
    size_t ndomains;
    struct route_set global;        /* key "" */
    size_t count;
};

/* route_strv_free - a list of strings from route_strv_norm */
static void route_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n && v != NULL; i++)
        free(v[i]);
    free(v);
}

static void route_rule_free(struct route_rule *r)
{
    route_strv_free(r->sender_domains, r->nsender_domains);
    route_strv_free(r->recipient_domains, r->nrecipient_domains);
    route_strv_free(r->listeners, r->nlisteners);
    free(r->transport);
    memset(r, 0, sizeof(*r));
}

/* route_domains_copy - normalised copies of n domain patterns, or NULL with err */
static int route_domains_copy(const char *const *in, size_t n, const char *what, char ***outp,
                              struct sy_err *err)
{
    char **out;

    *outp = NULL;
    if (n == 0)
        return SY_OK;
    if (n > ROUTE_LIST_MAX)
        return sy_err_set(err, SY_ETOOBIG, RULES_ENH_SYNTAX, "%s: more than %zu entries", what, ROUTE_LIST_MAX);
    if (in == NULL)
        return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX, "%s: no list given", what);
    out = xcalloc(n, sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        char d[RULES_DOMAIN_MAX + 2];
        struct sy_err e;

        if (in[i] == NULL ||
            rules_domain_norm(in[i], strlen(in[i]), RULES_DOMAIN_SUFFIX, d, sizeof(d), &e) != SY_OK) {
            if (in[i] == NULL) {
                (void) sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX, "%s[%zu]: missing", what, i);
            } else {
                char echo[LOG_SAFE_MAX];

                (void) sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX, "%s[%zu]: \"%s\": %s", what, i,
                                  log_safe(echo, 80, in[i]), e.text);
            }
            route_strv_free(out, n);
            return SY_ESYNTAX;
        }
        out[i] = xstrdup(d);
    }
    *outp = out;
    return SY_OK;
}

/* route_rule_copy - validate spec r and copy it into out */
static int route_rule_copy(const struct route_rule_spec *r, struct route_rule *out, struct sy_err *err)
{
    char echo[LOG_SAFE_MAX];
    int rc;

    memset(out, 0, sizeof(*out));
    if (r->transport != NULL && r->transport[0] != '\0' && !rules_name_ok(r->transport))
        return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX,
                          "transport: \"%s\" is not a valid name ([A-Za-z0-9._-], 1 to %zu)",
                          log_safe(echo, 80, r->transport), RULES_NAME_MAX);
    if (r->nlisteners > ROUTE_LIST_MAX)
        return sy_err_set(err, SY_ETOOBIG, RULES_ENH_SYNTAX, "listeners: more than %zu entries", ROUTE_LIST_MAX);
    if (r->nlisteners > 0 && r->listeners == NULL)
        return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX, "listeners: no list given");
    for (size_t i = 0; i < r->nlisteners; i++)
        if (!rules_name_ok(r->listeners[i]))
            return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX,
                              "listeners[%zu]: \"%s\" is not a valid name ([A-Za-z0-9._-], 1 to %zu)", i,
                              log_safe(echo, 80, r->listeners[i]), RULES_NAME_MAX);
    rc = route_domains_copy(r->sender_domains, r->nsender_domains, "sender_domains",
                            &out->sender_domains, err);
    if (rc != SY_OK)
        return rc;
    out->nsender_domains = r->nsender_domains;
    rc = route_domains_copy(r->recipient_domains, r->nrecipient_domains, "recipient_domains",
                            &out->recipient_domains, err);
    if (rc != SY_OK) {
        route_rule_free(out);
        return rc;
    }
    out->nrecipient_domains = r->nrecipient_domains;
    if (r->nlisteners > 0) {
        out->listeners = xcalloc(r->nlisteners, sizeof(*out->listeners));
        for (size_t i = 0; i < r->nlisteners; i++)
            out->listeners[i] = xstrdup(r->listeners[i]);
        out->nlisteners = r->nlisteners;
    }
    out->min_attempts = r->min_attempts;
    out->transport = xstrdup(r->transport != NULL ? r->transport : "");
    return SY_OK;
}

/* route_key_copy - the validated, normalised key of a scope */
static int route_key_copy(enum route_scope scope, const char *key, char **out, struct sy_err *err)
{
    char echo[LOG_SAFE_MAX], d[RULES_DOMAIN_MAX + 1];
    size_t n = key != NULL ? strlen(key) : 0;
    struct sy_err e;

    *out = NULL;
    switch (scope) {
    case ROUTE_SCOPE_GLOBAL:
        if (n != 0)
            return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX, "global rules have no key");
        *out = xstrdup("");
        return SY_OK;
    case ROUTE_SCOPE_ACCOUNT:
        if (n == 0 || n > ROUTE_ACCOUNT_MAX || !text_is_clean(key, n) || !text_is_utf8(key, n))
            return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX,
                              "account \"%s\": 1 to %zu bytes of UTF-8 without control characters",
                              log_safe(echo, 80, key), ROUTE_ACCOUNT_MAX);
        *out = xstrdup(key);
        return SY_OK;
    case ROUTE_SCOPE_SENDER_DOMAIN:
        if (key == NULL || rules_domain_norm(key, n, 0, d, sizeof(d), &e) != SY_OK)
            return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX, "sender domain \"%s\": %s",
                              log_safe(echo, 80, key), key == NULL ? "missing" : e.text);
        *out = xstrdup(d);
        return SY_OK;
    case ROUTE_SCOPE_NONE:
        break;
    }
    return sy_err_set(err, SY_ESYNTAX, RULES_ENH_SYNTAX, "unknown scope %d", (int) scope);
}

struct route_builder *route_builder_new(const char *default_transport)
{
    struct route_builder *b;

    if (!rules_name_ok(default_transport))
        sy_panic("route_builder_new: invalid default transport name");
    b = xcalloc(1, sizeof(*b));
    b->default_transport = xstrdup(default_transport);
    return b;
}

int route_builder_add(struct route_builder *b, enum route_scope scope, const char *key,
                      const struct route_rule_spec *r, struct sy_err *err)
{
    struct route_entry e;
    int rc;

    if (b->n >= ROUTE_RULES_MAX)
        return sy_err_set(err, SY_ETOOBIG, RULES_ENH_SYNTAX, "more than %zu route rules", ROUTE_RULES_MAX);
    memset(&e, 0, sizeof(e));
    rc = route_key_copy(scope, key, &e.key, err);
    if (rc != SY_OK)
        return rc;
    rc = route_rule_copy(r, &e.rule, err);
    if (rc != SY_OK) {
        free(e.key);
        return rc;
    }
    e.scope = scope;
    e.seq = b->n;
    if (b->n == b->cap)
        b->entries = xreallocarray_grow(b->entries, &b->cap, b->n + 1, sizeof(*b->entries));
    b->entries[b->n++] = e;
    return SY_OK;
}

/* route_entry_cmp - by scope, then key, then the order of addition */
static int route_entry_cmp(const void *pa, const void *pb)
{
    const struct route_entry *a = pa, *b = pb;
    int c;

    if (a->scope != b->scope)
        return a->scope < b->scope ? -1 : 1;
    c = strcmp(a->key, b->key);
    if (c != 0)
        return c;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* route_group - move the entries [i, j) (one scope, one key) into set */
static void route_group(struct route_entry *e, size_t i, size_t j, struct route_set *set)
{
    set->key = e[i].key;
    set->nrules = j - i;
    set->rules = xcalloc(set->nrules, sizeof(*set->rules));
    for (size_t k = i; k < j; k++) {
        set->rules[k - i] = e[k].rule;
        if (k > i)
            free(e[k].key);
    }
}

struct route_table *route_builder_finish(struct route_builder *b)
{
    struct route_table *t = xcalloc(1, sizeof(*t));
    size_t i = 0;

    t->default_transport = b->default_transport;
    t->count = b->n;
    if (b->n > 1)
        qsort(b->entries, b->n, sizeof(*b->entries), route_entry_cmp);
    /* At most one set per entry: allocate once rather than grow. */
    if (b->n > 0) {
        t->accounts = xcalloc(b->n, sizeof(*t->accounts));
        t->domains = xcalloc(b->n, sizeof(*t->domains));
    }
    while (i < b->n) {
        size_t j = i + 1;
        struct route_set *set;

        while (j < b->n && b->entries[j].scope == b->entries[i].scope &&
               strcmp(b->entries[j].key, b->entries[i].key) == 0)
            j++;
        switch (b->entries[i].scope) {
        case ROUTE_SCOPE_ACCOUNT:
            set = &t->accounts[t->naccounts++];
            break;
        case ROUTE_SCOPE_SENDER_DOMAIN:
            set = &t->domains[t->ndomains++];
            break;
        case ROUTE_SCOPE_GLOBAL:
            set = &t->global;
            break;
        case ROUTE_SCOPE_NONE:
        default:
            sy_panic("route_builder_finish: entry without a scope");
        }
        route_group(b->entries, i, j, set);
        i = j;
    }
    if (t->global.key == NULL)
        t->global.key = xstrdup("");
    free(b->entries);
    free(b);
    return t;
}

void route_builder_free(struct route_builder *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n; i++) {
        free(b->entries[i].key);
        route_rule_free(&b->entries[i].rule);
    }
    free(b->entries);
    free(b->default_transport);
    free(b);
}

static void route_set_free(struct route_set *s)
{
    for (size_t i = 0; i < s->nrules; i++)
        route_rule_free(&s->rules[i]);
    free(s->rules);
    free(s->key);
}

void route_table_free(struct route_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->naccounts; i++)
        route_set_free(&t->accounts[i]);
    for (size_t i = 0; i < t->ndomains; i++)
        route_set_free(&t->domains[i]);
    route_set_free(&t->global);
    free(t->accounts);
    free(t->domains);
    free(t->default_transport);
    free(t);
}

/* route_set_cmp - bsearch: a key string against a set */
static int route_set_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct route_set *) elem)->key);
}

static const struct route_set *route_find(const struct route_set *sets, size_t n, const char *key)
{
    if (n == 0)
        return NULL;
    return bsearch(key, sets, n, sizeof(*sets), route_set_cmp);
}

/* The facts as the rules need them, computed once per selection. */
struct route_view {
    const char *sdom, *rdom;    /* domains, borrowed from the facts */
    size_t sdom_n, rdom_n;
    const char *listener;       /* never NULL */
    unsigned attempts;
};

/* route_any_domain - one of the patterns matches d[0..n) */
static bool route_any_domain(char *const *pats, size_t npats, const char *d, size_t n)
{
    for (size_t i = 0; i < npats; i++)
        if (rules_domain_match(pats[i], d, n))
            return true;
    return false;
}

/* route_rule_match - every non-empty condition of r holds */
static bool route_rule_match(const struct route_rule *r, const struct route_view *v)
{
    if (v->attempts < r->min_attempts)
        return false;
    if (r->nsender_domains > 0 && !route_any_domain(r->sender_domains, r->nsender_domains, v->sdom, v->sdom_n))
        return false;
    if (r->nrecipient_domains > 0 &&
        !route_any_domain(r->recipient_domains, r->nrecipient_domains, v->rdom, v->rdom_n))
        return false;
    if (r->nlisteners > 0) {
        size_t i;

        for (i = 0; i < r->nlisteners; i++)
            if (strcmp(r->listeners[i], v->listener) == 0)
                break;
        if (i == r->nlisteners)
            return false;
    }
    return true;
}

/* route_try - the first matching rule of set; fills m and returns the transport */
static const char *route_try(const struct route_table *t, const struct route_set *set,
                             enum route_scope scope, const struct route_view *v, struct route_match *m)
{
    if (set == NULL)
        return NULL;
    for (size_t i = 0; i < set->nrules; i++) {
        const struct route_rule *r = &set->rules[i];

        if (!route_rule_match(r, v))
            continue;
        m->scope = scope;
        m->key = set->key;
        m->index = i;
        m->is_default = r->transport[0] == '\0';
        return m->is_default ? t->default_transport : r->transport;
    }
    return NULL;
}

const char *route_select(const struct route_table *t, const struct route_facts *f, struct route_match *m)
{
    struct route_match local;
    struct route_view v;
    const char *account, *tr;

    if (m == NULL)
        m = &local;
    m->scope = ROUTE_SCOPE_NONE;
    m->key = "";
    m->index = 0;
    m->is_default = true;
    v.sdom = rules_addr_domain(f->sender, &v.sdom_n);
    v.rdom = rules_addr_domain(f->recipient, &v.rdom_n);
    v.listener = f->listener != NULL ? f->listener : "";
    v.attempts = f->attempts_made;

    /* 1. account: the authenticated user, else the listener */
    account = f->account != NULL && f->account[0] != '\0' ? f->account : v.listener;
    if (account[0] != '\0') {
        tr = route_try(t, route_find(t->accounts, t->naccounts, account), ROUTE_SCOPE_ACCOUNT, &v, m);
        if (tr != NULL)
            return tr;
    }
    /* 2. sender domain: keys are lowercased, so lowercase the facts' copy */
    if (v.sdom_n > 0 && v.sdom_n <= RULES_DOMAIN_MAX && t->ndomains > 0) {
        char d[RULES_DOMAIN_MAX + 1];

        rules_lower(d, v.sdom, v.sdom_n);
        d[v.sdom_n] = '\0';
        tr = route_try(t, route_find(t->domains, t->ndomains, d), ROUTE_SCOPE_SENDER_DOMAIN, &v, m);
        if (tr != NULL)
            return tr;
    }
    /* 3. global */
    tr = route_try(t, &t->global, ROUTE_SCOPE_GLOBAL, &v, m);
    if (tr != NULL)
        return tr;
    return t->default_transport;
}

const char *route_table_default(const struct route_table *t)
{
    return t->default_transport;
}

size_t route_table_count(const struct route_table *t)
{
    return t->count;
}

const char *route_scope_name(enum route_scope s)
{
    switch (s) {
    case ROUTE_SCOPE_ACCOUNT: return "account";
    case ROUTE_SCOPE_SENDER_DOMAIN: return "sender_domain";
    case ROUTE_SCOPE_GLOBAL: return "global";
    case ROUTE_SCOPE_NONE: break;
    }
    return "none";
}

int route_match_format(const struct route_match *m, char *dst, size_t dstsize)
{
    int w;

    if (dstsize == 0)
        return SY_ETOOBIG;
    switch (m->scope) {
    case ROUTE_SCOPE_ACCOUNT:
    case ROUTE_SCOPE_SENDER_DOMAIN:
        w = snprintf(dst, dstsize, "%s:%s[%zu]", route_scope_name(m->scope), m->key, m->index);
        break;
    case ROUTE_SCOPE_GLOBAL:
        w = snprintf(dst, dstsize, "global[%zu]", m->index);
        break;
    case ROUTE_SCOPE_NONE:
    default:
        w = snprintf(dst, dstsize, "none");
        break;
    }
    if (w < 0 || (size_t) w >= dstsize) {
        dst[0] = '\0';
        return SY_ETOOBIG;
    }
    return SY_OK;
}
