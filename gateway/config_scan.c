/* config_scan.c - the config module's context, pass 1 and libcyaml's log
 *
 * The context (struct cfg_ctx) is what every pass reports into: the line
 * of every key path the scan saw, and the errors, each with its line,
 * sorted and appended to the caller's buffer as "FILE:LINE: KEY.PATH:
 * message" (at most CFG_ERRORS_MAX shown, the rest counted).
 *
 * Pass 1 (cfg_scan) is a libyaml event walk that follows the libcyaml
 * schema config.c gives it. It records the line of every key path
 * ("lmtp.listeners[0].address") and reports unknown keys, duplicate keys,
 * values of the wrong shape (a list where a mapping belongs), anchors,
 * aliases, tags, a second document, nesting deeper than CFG_DEPTH_MAX and
 * bytes that are not UTF-8. libcyaml 1.3.1 stops at its first error, so
 * this pass is what lets one run report every structural problem. Only
 * the failures that libcyaml would also choke on (shape, duplicates) set
 * cx->fatal; an unknown key does not, so a typo and a bad value show up in
 * the same run.
 *
 * `transports:` and `routes:` are maps whose keys the user chooses, which
 * a libcyaml schema cannot express: the scan copies those two sections
 * into a tree of cfg_node, with the line of every key, for config_relay.c.
 *
 * Pass 2 is libcyaml's load (config.c). What it still refuses comes only
 * through its log: cfg_cyaml_log keeps the first message and its backtrace
 * of mapping fields and sequence entries, and cfg_cyaml_report turns them
 * back into a key path and a line.
 *
 * Thread safety: no globals; each call works on its own context.
 */
#include "gateway/config_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "gateway/util/err.h"
#include "gateway/util/log.h"
#include "gateway/util/text.h"
#include "gateway/util/xalloc.h"

#define CFG_KEYS_MAX        1024        /* key paths remembered with their line */
#define CFG_ERRORS_MAX      100         /* error lines shown; the rest are counted */
#define CFG_DOM_ENTRIES_MAX 10000u      /* entries in one map or list of transports:/routes: */

/* ---- error collection --------------------------------------------------- */

struct cfg_key {
    char *path;             /* "lmtp.listeners[0].address" */
    unsigned line;          /* 1-based line of the key (or list entry) */
    bool is_null;           /* plain empty, "~" or "null": same as absent */
};

struct cfg_error {
    unsigned line;          /* 0: about the file, no line */
    size_t seq;             /* keeps the order of errors on one line */
    char *path;
    char *msg;
};

/* cfg_key_find - the entry recorded for path, or NULL */
static struct cfg_key *cfg_key_find(const struct cfg_ctx *cx, const char *path)
{
    for (size_t i = 0; i < cx->nkeys; i++)
        if (strcmp(cx->keys[i].path, path) == 0)
            return &cx->keys[i];
    return NULL;
}

/* cfg_key_add - remember the line of a key path (the first one wins) */
static struct cfg_key *cfg_key_add(struct cfg_ctx *cx, const char *path, unsigned line)
{
    struct cfg_key *k = cfg_key_find(cx, path);

    if (k != NULL || cx->nkeys >= CFG_KEYS_MAX)
        return k;
    if (cx->nkeys == cx->capkeys)
        cx->keys = xreallocarray_grow(cx->keys, &cx->capkeys, cx->nkeys + 1, sizeof(*cx->keys));
    k = &cx->keys[cx->nkeys++];
    k->path = xstrdup(path);
    k->line = line;
    k->is_null = false;
    return k;
}

/* cfg_key_is_null - path was given as YAML null */
bool cfg_key_is_null(const struct cfg_ctx *cx, const char *path)
{
    const struct cfg_key *k = cfg_key_find(cx, path);

    return k != NULL && k->is_null;
}

/* cfg_key_line - line of path, else of its nearest recorded parent, else 1 */
static unsigned cfg_key_line(const struct cfg_ctx *cx, const char *path)
{
    char p[CFG_KEYPATH_MAX];

    if (cx->at_line > 0 && strcmp(cx->at_path, path) == 0)
        return cx->at_line;
    if (text_copy(p, sizeof(p), path) != SY_OK)
        return 1;
    for (;;) {
        const struct cfg_key *k = cfg_key_find(cx, p);
        size_t n;

        if (k != NULL)
            return k->line;
        n = strlen(p);
        while (n > 0 && p[n - 1] != '.' && p[n - 1] != '[')
            n--;
        if (n == 0)
            return 1;
        p[n - 1] = '\0';
    }
}

/* cfg_verr - record one problem; a second one on the same key and line is dropped */
__attribute__((format(printf, 4, 0)))
static void cfg_verr(struct cfg_ctx *cx, unsigned line, const char *path, const char *fmt, va_list ap)
{
    char msg[512];
    struct cfg_error *e;

    for (size_t i = 0; i < cx->nerrs; i++)
        if (cx->errs[i].line == line && strcmp(cx->errs[i].path, path) == 0)
            return;
    cx->nproblems++;
    if (cx->nerrs >= CFG_ERRORS_MAX)
        return;
    (void) vsnprintf(msg, sizeof(msg), fmt, ap);
    if (cx->nerrs == cx->caperrs)
        cx->errs = xreallocarray_grow(cx->errs, &cx->caperrs, cx->nerrs + 1, sizeof(*cx->errs));
    e = &cx->errs[cx->nerrs];
    e->line = line;
    e->seq = cx->nerrs++;
    e->path = xstrdup(path);
    e->msg = xstrdup(msg);
}

/* cfg_err_at - a problem at a known line (0: the file as a whole) */
__attribute__((format(printf, 4, 5)))
void cfg_err_at(struct cfg_ctx *cx, unsigned line, const char *path, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cfg_verr(cx, line, path, fmt, ap);
    va_end(ap);
}

/* cfg_err_key - a problem with a key: the line comes from the scan */
__attribute__((format(printf, 3, 4)))
void cfg_err_key(struct cfg_ctx *cx, const char *path, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cfg_verr(cx, cfg_key_line(cx, path), path, fmt, ap);
    va_end(ap);
}

/* cfg_err_cmp - order errors by line, then as found */
static int cfg_err_cmp(const void *a, const void *b)
{
    const struct cfg_error *x = a, *y = b;

    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* cfg_ctx_flush - append the sorted errors to the caller's buffer */
void cfg_ctx_flush(struct cfg_ctx *cx, struct buf *errors)
{
    if (cx->nerrs > 1)
        qsort(cx->errs, cx->nerrs, sizeof(*cx->errs), cfg_err_cmp);
    for (size_t i = 0; errors != NULL && i < cx->nerrs; i++) {
        const struct cfg_error *e = &cx->errs[i];
        const char *sep = e->path[0] != '\0' ? ": " : "";
        int rc;

        if (e->line > 0)
            rc = buf_printf(errors, "%s:%u: %s%s%s\n", cx->name, e->line, e->path, sep, e->msg);
        else
            rc = buf_printf(errors, "%s: %s%s%s\n", cx->name, e->path, sep, e->msg);
        if (rc != SY_OK)
            return;
    }
    if (errors != NULL && cx->nproblems > cx->nerrs)
        (void) buf_printf(errors, "%s: %zu more error(s) not shown\n", cx->name,
                          cx->nproblems - cx->nerrs);
}

/* cfg_ctx_init - an empty context; name is shown in every error */
void cfg_ctx_init(struct cfg_ctx *cx, const char *name)
{
    memset(cx, 0, sizeof(*cx));
    (void) log_safe(cx->name, sizeof(cx->name), name != NULL ? name : "<config>");
}

/* cfg_node_free - one node (not its children); scalar text is wiped, as
 * it may be a password */
static void cfg_node_free(struct cfg_node *n)
{
    if (n->value != NULL) {
        explicit_bzero(n->value, strlen(n->value));
        free(n->value);
    }
    free(n->kids);
    free(n->key);
    free(n);
}

/* cfg_ctx_free - what cx holds (keys, errors, the tree), not cx */
void cfg_ctx_free(struct cfg_ctx *cx)
{
    for (size_t i = 0; i < cx->ndom_all; i++)
        cfg_node_free(cx->dom_all[i]);
    free(cx->dom_all);
    for (size_t i = 0; i < cx->nkeys; i++)
        free(cx->keys[i].path);
    for (size_t i = 0; i < cx->nerrs; i++) {
        free(cx->errs[i].path);
        free(cx->errs[i].msg);
    }
    free(cx->keys);
    free(cx->errs);
}

/* ---- pass 1: the libyaml scan ------------------------------------------- */

enum cfg_frame_kind { CFG_FRAME_MAP, CFG_FRAME_SEQ };

struct cfg_frame {
    enum cfg_frame_kind kind;
    const cyaml_schema_value_t *schema;     /* the mapping or sequence */
    size_t base;                            /* strlen(path) of this node */
    uint64_t seen;                          /* MAP: fields given so far */
    bool want_key;                          /* MAP: the next node is a key */
    const cyaml_schema_value_t *pending;    /* MAP: schema of the value; NULL: ignore */
    unsigned next;                          /* SEQ: index of the next entry */
};

/* A mapping or list being copied into the transports:/routes: tree. */
struct cfg_dframe {
    struct cfg_node *node;
    size_t base;                            /* strlen(path) of this node */
    bool want_key;                          /* MAP: the next node is a key */
    char *key;                              /* MAP: the key whose value comes next */
    unsigned key_line;
};

struct cfg_scan {
    struct cfg_ctx *cx;
    const cyaml_schema_value_t *top;    /* the document's schema */
    struct cfg_frame st[CFG_DEPTH_MAX];
    size_t depth;
    size_t skip;            /* > 0: nesting inside a subtree being ignored */
    struct cfg_dframe dst[CFG_DEPTH_MAX];
    size_t ddepth;          /* > 0: inside a section copied into a tree */
    struct cfg_node **dtarget;  /* the next node is the root of that section */
    char path[CFG_KEYPATH_MAX];
    unsigned docs;
    bool stop;
};

/* cfg_scan_fatal - a problem that libcyaml would also stop at */
__attribute__((format(printf, 4, 5)))
static void cfg_scan_fatal(struct cfg_scan *sc, unsigned line, const char *path, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cfg_verr(sc->cx, line, path, fmt, ap);
    va_end(ap);
    sc->cx->fatal = true;
}

/* cfg_is_plain_null - YAML's null: an empty plain scalar, "~" or "null" */
static bool cfg_is_plain_null(const yaml_event_t *ev)
{
    static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };
    const char *v = (const char *) ev->data.scalar.value;

    if (ev->type != YAML_SCALAR_EVENT || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
        if (ev->data.scalar.length == strlen(nulls[i]) && strcmp(v, nulls[i]) == 0)
            return true;
    return false;
}

static const char *cfg_event_kind(const yaml_event_t *ev)
{
    if (ev->type == YAML_MAPPING_START_EVENT)
        return "a mapping";
    if (ev->type == YAML_SEQUENCE_START_EVENT)
        return "a list";
    return "a single value";
}

static const char *cfg_schema_kind(const cyaml_schema_value_t *vs)
{
    if (vs->type == CYAML_MAPPING)
        return "a mapping";
    if (vs->type == CYAML_SEQUENCE)
        return "a list";
    return "a single value";
}

/* cfg_scan_enter - nest one level deeper; false when that is too deep */
static bool cfg_scan_enter(struct cfg_scan *sc, unsigned line)
{
    if (sc->depth + sc->skip + sc->ddepth + 1 > CFG_DEPTH_MAX) {
        cfg_scan_fatal(sc, line, "", "nesting deeper than %d levels", CFG_DEPTH_MAX);
        sc->stop = true;
        return false;
    }
    return true;
}

/* cfg_scan_push - a mapping or sequence the schema knows */
static void cfg_scan_push(struct cfg_scan *sc, enum cfg_frame_kind kind,
                          const cyaml_schema_value_t *vs, unsigned line)
{
    struct cfg_frame *f;

    if (!cfg_scan_enter(sc, line))
        return;
    f = &sc->st[sc->depth++];
    memset(f, 0, sizeof(*f));
    f->kind = kind;
    f->schema = vs;
    f->base = strlen(sc->path);
    f->want_key = true;
}

/* cfg_scan_ignore - skip the subtree that starts with ev (if it is one) */
static void cfg_scan_ignore(struct cfg_scan *sc, const yaml_event_t *ev, unsigned line)
{
    if (ev->type != YAML_MAPPING_START_EVENT && ev->type != YAML_SEQUENCE_START_EVENT)
        return;
    if (cfg_scan_enter(sc, line))
        sc->skip++;
}

/* cfg_scan_value - a value node where the schema expects vs (NULL: ignore it) */
static void cfg_scan_value(struct cfg_scan *sc, const cyaml_schema_value_t *vs,
                           const yaml_event_t *ev, unsigned line)
{
    bool null_ok;

    if (vs == NULL) {
        cfg_scan_ignore(sc, ev, line);
        return;
    }
    null_ok = (vs->flags & CYAML_FLAG_POINTER_NULL) == CYAML_FLAG_POINTER_NULL;
    if (vs->type == CYAML_STRING && ev->type == YAML_SCALAR_EVENT) {
        if (cfg_is_plain_null(ev)) {
            struct cfg_key *k = cfg_key_find(sc->cx, sc->path);

            if (k != NULL)
                k->is_null = true;
        }
        return;
    }
    if (vs->type == CYAML_MAPPING && ev->type == YAML_MAPPING_START_EVENT) {
        cfg_scan_push(sc, CFG_FRAME_MAP, vs, line);
        return;
    }
    if (vs->type == CYAML_SEQUENCE && ev->type == YAML_SEQUENCE_START_EVENT) {
        cfg_scan_push(sc, CFG_FRAME_SEQ, vs, line);
        return;
    }
    if (null_ok && cfg_is_plain_null(ev))
        return;
    cfg_scan_fatal(sc, cfg_key_line(sc->cx, sc->path), sc->path, "expected %s, found %s",
                   cfg_schema_kind(vs), cfg_event_kind(ev));
    cfg_scan_ignore(sc, ev, line);
}

/* Top-level keys read into a cfg_node tree (see the file comment), and
 * where their tree goes. */
static const char *const cfg_dom_keys[] = { "transports", "routes" };

/* cfg_edit_distance - Levenshtein distance of two short keys, capped at 9 */
static size_t cfg_edit_distance(const char *a, size_t na, const char *b)
{
    size_t nb = strlen(b), row[33];

    if (na > 32 || nb > 32)
        return 9;
    for (size_t j = 0; j <= nb; j++)
        row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        size_t diag = row[0];

        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);

            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[nb];
}

/* cfg_suggest - the candidate closest to key[0..klen), or NULL when none is
 * near enough to be a likely typo */
static const char *cfg_suggest(const char *key, size_t klen, const char *const *cands, size_t ncands)
{
    size_t best = 0, bestd = 9;

    for (size_t j = 0; j < ncands; j++) {
        size_t d = cfg_edit_distance(key, klen, cands[j]);

        if (d < bestd) {
            bestd = d;
            best = j;
        }
    }
    return bestd <= 2 && bestd < klen ? cands[best] : NULL;
}

/* cfg_err_unknown - "unknown key", with a suggestion when one is close */
void cfg_err_unknown(struct cfg_ctx *cx, unsigned line, const char *path, const char *key,
                     size_t klen, const char *const *cands, size_t ncands)
{
    const char *s = cfg_suggest(key, klen, cands, ncands);

    if (s != NULL)
        cfg_err_at(cx, line, path, "unknown key (did you mean \"%s\"?)", s);
    else
        cfg_err_at(cx, line, path, "unknown key");
}

/* cfg_scan_dom_key - a top-level key whose value is copied into a tree */
static bool cfg_scan_dom_key(struct cfg_scan *sc, const char *key, size_t klen, unsigned line)
{
    struct cfg_node **target[] = { &sc->cx->dom_transports, &sc->cx->dom_routes };

    for (size_t j = 0; j < sizeof(cfg_dom_keys) / sizeof(cfg_dom_keys[0]); j++) {
        if (strlen(cfg_dom_keys[j]) != klen || memcmp(cfg_dom_keys[j], key, klen) != 0)
            continue;
        if (cfg_key_find(sc->cx, sc->path) != NULL) {
            cfg_scan_fatal(sc, line, sc->path, "duplicate key (first given on line %u)",
                           cfg_key_line(sc->cx, sc->path));
            return true;
        }
        (void) cfg_key_add(sc->cx, sc->path, line);
        sc->dtarget = target[j];
        return true;
    }
    return false;
}

/* cfg_scan_key - a key inside a mapping the schema knows */
static void cfg_scan_key(struct cfg_scan *sc, struct cfg_frame *f, const yaml_event_t *ev, unsigned line)
{
    const cyaml_schema_field_t *fields = f->schema->mapping.fields;
    const char *key = (const char *) ev->data.scalar.value;
    size_t klen = ev->data.scalar.length, i;
    char seg[CFG_SEG_MAX];

    f->want_key = false;
    f->pending = NULL;
    (void) log_safe_n(seg, sizeof(seg), key, klen);
    (void) snprintf(sc->path + f->base, sizeof(sc->path) - f->base, "%s%s",
                    f->base > 0 ? "." : "", seg);
    if (f->schema == sc->top && cfg_scan_dom_key(sc, key, klen, line))
        return;
    for (i = 0; fields[i].key != NULL; i++)
        if (strlen(fields[i].key) == klen && memcmp(fields[i].key, key, klen) == 0)
            break;
    if (fields[i].key == NULL) {
        const char *cands[64];
        size_t nc = 0;

        /* A near miss is almost always a typo: say which key was meant. */
        for (size_t j = 0; fields[j].key != NULL && nc < 62; j++)
            cands[nc++] = fields[j].key;
        if (f->schema == sc->top)
            for (size_t j = 0; j < sizeof(cfg_dom_keys) / sizeof(cfg_dom_keys[0]); j++)
                cands[nc++] = cfg_dom_keys[j];
        cfg_err_unknown(sc->cx, line, sc->path, key, klen, cands, nc);
        return;
    }
    if (i < 64 && (f->seen & ((uint64_t) 1 << i)) != 0) {
        cfg_scan_fatal(sc, line, sc->path, "duplicate key (first given on line %u)",
                       cfg_key_line(sc->cx, sc->path));
        return;
    }
    if (i < 64)
        f->seen |= (uint64_t) 1 << i;
    (void) cfg_key_add(sc->cx, sc->path, line);
    f->pending = &fields[i].value;
}

/* cfg_scan_dom_keynode - a key inside a copied mapping */
static void cfg_scan_dom_keynode(struct cfg_scan *sc, struct cfg_dframe *d, const yaml_event_t *ev, unsigned line)
{
    const char *key = (const char *) ev->data.scalar.value;
    size_t klen = ev->data.scalar.length;
    char seg[CFG_SEG_MAX];

    (void) log_safe_n(seg, sizeof(seg), key, klen);
    (void) snprintf(sc->path + d->base, sizeof(sc->path) - d->base, ".%s", seg);
    if (klen > CFG_SCALAR_MAX) {
        cfg_scan_fatal(sc, line, sc->path, "key is too long (at most %u bytes)", CFG_SCALAR_MAX);
        sc->stop = true;
        return;
    }
    for (size_t i = 0; i < d->node->nkids; i++) {
        const struct cfg_node *k = d->node->kids[i];

        if (strlen(k->key) == klen && memcmp(k->key, key, klen) == 0) {
            cfg_scan_fatal(sc, line, sc->path, "duplicate key (first given on line %u)", k->key_line);
            break;
        }
    }
    if (d->node->nkids >= CFG_DOM_ENTRIES_MAX) {
        sc->path[d->base] = '\0';
        cfg_scan_fatal(sc, line, sc->path, "too many entries (at most %u)", CFG_DOM_ENTRIES_MAX);
        sc->stop = true;
        return;
    }
    d->key = xmemdup0(key, klen);
    d->key_line = line;
    d->want_key = false;
}

/* cfg_scan_dom - one node of a section copied into a tree */
static void cfg_scan_dom(struct cfg_scan *sc, const yaml_event_t *ev, unsigned line)
{
    struct cfg_dframe *d = sc->ddepth > 0 ? &sc->dst[sc->ddepth - 1] : NULL;
    struct cfg_node *n;

    if (d != NULL && d->node->kind == CFG_NODE_MAP && d->want_key) {
        if (ev->type != YAML_SCALAR_EVENT) {
            cfg_scan_fatal(sc, line, sc->path, "a key must be a single value, not %s", cfg_event_kind(ev));
            sc->stop = true;
            return;
        }
        cfg_scan_dom_keynode(sc, d, ev, line);
        return;
    }
    if (d != NULL && d->node->kind == CFG_NODE_SEQ) {
        (void) snprintf(sc->path + d->base, sizeof(sc->path) - d->base, "[%zu]", d->node->nkids);
        if (d->node->nkids >= CFG_DOM_ENTRIES_MAX) {
            sc->path[d->base] = '\0';
            cfg_scan_fatal(sc, line, sc->path, "too many entries (at most %u)", CFG_DOM_ENTRIES_MAX);
            sc->stop = true;
            return;
        }
    }
    if (ev->type == YAML_SCALAR_EVENT && ev->data.scalar.length > CFG_SCALAR_MAX) {
        cfg_scan_fatal(sc, line, sc->path, "value is too long (at most %u bytes)", CFG_SCALAR_MAX);
        sc->stop = true;
        return;
    }
    n = xcalloc(1, sizeof(*n));
    if (sc->cx->ndom_all == sc->cx->capdom_all)
        sc->cx->dom_all = xreallocarray_grow(sc->cx->dom_all, &sc->cx->capdom_all, sc->cx->ndom_all + 1,
                                             sizeof(struct cfg_node *));
    sc->cx->dom_all[sc->cx->ndom_all++] = n;
    n->line = line;
    if (ev->type == YAML_SCALAR_EVENT) {
        n->kind = CFG_NODE_SCALAR;
        n->value = xmemdup0(ev->data.scalar.value, ev->data.scalar.length);
        n->is_null = cfg_is_plain_null(ev);
    } else {
        n->kind = ev->type == YAML_MAPPING_START_EVENT ? CFG_NODE_MAP : CFG_NODE_SEQ;
    }
    if (d == NULL) {
        *sc->dtarget = n;
        sc->dtarget = NULL;
    } else {
        if (d->node->kind == CFG_NODE_MAP) {
            n->key = d->key;
            n->key_line = d->key_line;
            d->key = NULL;
            d->want_key = true;
        }
        if (d->node->nkids == d->node->capkids)
            d->node->kids = xreallocarray_grow(d->node->kids, &d->node->capkids, d->node->nkids + 1,
                                               sizeof(struct cfg_node *));
        d->node->kids[d->node->nkids++] = n;
    }
    if (n->kind != CFG_NODE_SCALAR && cfg_scan_enter(sc, line)) {
        d = &sc->dst[sc->ddepth++];
        memset(d, 0, sizeof(*d));
        d->node = n;
        d->base = strlen(sc->path);
        d->want_key = true;
    }
}

/* cfg_scan_dom_end - the end of a copied mapping or list */
static void cfg_scan_dom_end(struct cfg_scan *sc)
{
    struct cfg_dframe *d = &sc->dst[--sc->ddepth];

    free(d->key);
    d->key = NULL;
}

/* cfg_scan_node - a scalar, mapping start or sequence start */
static void cfg_scan_node(struct cfg_scan *sc, const yaml_event_t *ev)
{
    unsigned line = (unsigned) ev->start_mark.line + 1;
    const cyaml_schema_value_t *vs;
    struct cfg_frame *f;

    if (sc->skip > 0) {
        cfg_scan_ignore(sc, ev, line);
        return;
    }
    if (sc->depth == 0) {
        sc->path[0] = '\0';
        if (ev->type == YAML_MAPPING_START_EVENT) {
            cfg_scan_push(sc, CFG_FRAME_MAP, sc->top, line);
        } else if (cfg_is_plain_null(ev)) {
            cfg_scan_fatal(sc, 1, "", "the configuration is empty");
        } else {
            cfg_scan_fatal(sc, line, "", "the configuration must be a mapping of keys, found %s",
                           cfg_event_kind(ev));
            cfg_scan_ignore(sc, ev, line);
        }
        return;
    }
    f = &sc->st[sc->depth - 1];
    if (sc->ddepth > 0) {
        cfg_scan_dom(sc, ev, line);
        return;
    }
    if (sc->dtarget != NULL && f->kind == CFG_FRAME_MAP && !f->want_key) {
        f->want_key = true;         /* this node is the value of the key */
        cfg_scan_dom(sc, ev, line);
        return;
    }
    if (f->kind == CFG_FRAME_MAP && f->want_key) {
        if (ev->type != YAML_SCALAR_EVENT) {
            cfg_scan_fatal(sc, line, sc->path, "a key must be a single value, not %s", cfg_event_kind(ev));
            sc->stop = true;
            return;
        }
        cfg_scan_key(sc, f, ev, line);
        return;
    }
    if (f->kind == CFG_FRAME_MAP) {
        f->want_key = true;
        vs = f->pending;
    } else {
        unsigned idx = f->next++;

        (void) snprintf(sc->path + f->base, sizeof(sc->path) - f->base, "[%u]", idx);
        vs = NULL;
        if (idx < f->schema->sequence.max) {
            vs = f->schema->sequence.entry;
            (void) cfg_key_add(sc->cx, sc->path, line);
        } else if (idx == f->schema->sequence.max) {
            sc->path[f->base] = '\0';
            cfg_scan_fatal(sc, line, sc->path, "too many entries (at most %u)", f->schema->sequence.max);
        }
    }
    cfg_scan_value(sc, vs, ev, line);
}

/* cfg_scan_props - anchors, aliases and tags have no use in a configuration */
static void cfg_scan_props(struct cfg_scan *sc, const yaml_event_t *ev)
{
    const yaml_char_t *anchor = NULL, *tag = NULL;
    unsigned line = (unsigned) ev->start_mark.line + 1;

    if (ev->type == YAML_SCALAR_EVENT) {
        anchor = ev->data.scalar.anchor;
        tag = ev->data.scalar.tag;
    } else if (ev->type == YAML_MAPPING_START_EVENT) {
        anchor = ev->data.mapping_start.anchor;
        tag = ev->data.mapping_start.tag;
    } else if (ev->type == YAML_SEQUENCE_START_EVENT) {
        anchor = ev->data.sequence_start.anchor;
        tag = ev->data.sequence_start.tag;
    }
    if (anchor != NULL)
        cfg_scan_fatal(sc, line, "", "anchors (&name) are not supported");
    if (tag != NULL)
        cfg_scan_fatal(sc, line, "", "tags (!name) are not supported");
}

/* cfg_scan_encoding - NUL bytes and invalid UTF-8, with the line they are on */
static bool cfg_scan_encoding(struct cfg_ctx *cx, const char *data, size_t len)
{
    unsigned line = 1;
    size_t start = 0;

    for (size_t i = 0; i <= len; i++) {
        if (i < len && data[i] != '\n' && data[i] != '\0')
            continue;
        if (!text_is_utf8(data + start, i - start)) {
            cfg_err_at(cx, line, "", "the file is not valid UTF-8");
            cx->fatal = true;
            return false;
        }
        if (i < len && data[i] == '\0') {
            cfg_err_at(cx, line, "", "the file contains a NUL byte");
            cx->fatal = true;
            return false;
        }
        line++;
        start = i + 1;
    }
    return true;
}

/* cfg_scan - pass 1 over the whole document */
void cfg_scan(struct cfg_ctx *cx, const cyaml_schema_value_t *top, const char *data, size_t len)
{
    struct cfg_scan sc;
    yaml_parser_t parser;
    yaml_event_t ev;

    if (!cfg_scan_encoding(cx, data, len))
        return;
    memset(&sc, 0, sizeof(sc));
    sc.cx = cx;
    sc.top = top;
    if (!yaml_parser_initialize(&parser))
        sy_panic("config: yaml_parser_initialize failed");
    /* No yaml_parser_set_encoding(): then libyaml skips a byte order mark.
     * The input was checked above, so it can only be UTF-8. */
    yaml_parser_set_input_string(&parser, (const unsigned char *) data, len);
    while (!sc.stop) {
        if (!yaml_parser_parse(&parser, &ev)) {
            const char *ctx = parser.context != NULL ? parser.context : "";

            cfg_scan_fatal(&sc, (unsigned) parser.problem_mark.line + 1, "", "YAML syntax error: %s%s%s",
                           ctx, ctx[0] != '\0' ? ", " : "",
                           parser.problem != NULL ? parser.problem : "unknown problem");
            break;
        }
        switch (ev.type) {
        case YAML_DOCUMENT_START_EVENT:
            if (++sc.docs > 1) {
                cfg_scan_fatal(&sc, (unsigned) ev.start_mark.line + 1, "",
                               "only one YAML document is allowed");
                sc.stop = true;
            }
            break;
        case YAML_ALIAS_EVENT:
            cfg_scan_fatal(&sc, (unsigned) ev.start_mark.line + 1, "", "aliases (*name) are not supported");
            sc.stop = true;
            break;
        case YAML_SCALAR_EVENT:
        case YAML_MAPPING_START_EVENT:
        case YAML_SEQUENCE_START_EVENT:
            cfg_scan_props(&sc, &ev);
            cfg_scan_node(&sc, &ev);
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            if (sc.ddepth > 0)
                cfg_scan_dom_end(&sc);
            else if (sc.skip > 0)
                sc.skip--;
            else if (sc.depth > 0)
                sc.depth--;
            break;
        case YAML_STREAM_END_EVENT:
            sc.stop = true;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    while (sc.ddepth > 0)
        cfg_scan_dom_end(&sc);
    if (sc.docs == 0 && !cx->fatal)
        cfg_scan_fatal(&sc, 1, "", "the configuration is empty");
}

/* ---- pass 2: libcyaml ---------------------------------------------------- */

/* cfg_cyaml_msg - our wording for libcyaml's error; never its value text,
 * which for an over-long password would be the password */
static void cfg_cyaml_msg(struct cfg_ctx *cx, const char *fmt, const char *line)
{
    const char *text = strncmp(line, "Load: ", 6) == 0 ? line + 6 : line;
    char tmp[128];
    char *q;

    if (strstr(fmt, "STRING length >") != NULL) {
        (void) snprintf(cx->cy_msg, sizeof(cx->cy_msg), "value is too long (at most %u bytes)", CFG_SCALAR_MAX);
    } else if (strstr(fmt, "STRING length <") != NULL) {
        (void) snprintf(cx->cy_msg, sizeof(cx->cy_msg), "value is too short");
    } else if (strncmp(text, "Unexpected key: ", 16) == 0) {
        (void) log_safe(cx->cy_key, sizeof(cx->cy_key), text + 16);
        (void) snprintf(cx->cy_msg, sizeof(cx->cy_msg), "unknown key");
    } else if (strncmp(text, "Mapping field already seen", 26) == 0) {
        (void) snprintf(cx->cy_msg, sizeof(cx->cy_msg), "duplicate key");
    } else {
        (void) log_safe(tmp, sizeof(tmp), text);
        q = strchr(tmp, '\'');
        if (q != NULL)
            *q = '\0';
        (void) snprintf(cx->cy_msg, sizeof(cx->cy_msg), "libcyaml: %s", tmp);
    }
}

/* cfg_cyaml_frame - one "  in mapping field 'x' (line: N, column: M)" line */
static void cfg_cyaml_frame(struct cfg_ctx *cx, const char *s)
{
    struct cfg_cyframe *fr;
    const char *q, *ln = strstr(s, "(line: ");
    uint64_t v;

    if (ln != NULL && cx->cy_nbt == 0) {
        size_t d = 0;

        ln += 7;
        while (ln[d] >= '0' && ln[d] <= '9')
            d++;
        if (text_parse_u64(ln, d, 1, UINT32_MAX, &v) == SY_OK)
            cx->cy_line = (unsigned) v;
    }
    if (cx->cy_nbt >= CFG_DEPTH_MAX)
        return;
    fr = &cx->cy_bt[cx->cy_nbt];
    memset(fr, 0, sizeof(*fr));
    if (strncmp(s, "mapping field '", 15) == 0) {
        s += 15;
        q = strstr(s, "' (line");
        if (q == NULL || (size_t) (q - s) >= sizeof(fr->name))
            return;
        memcpy(fr->name, s, (size_t) (q - s));
        cx->cy_nbt++;
    } else if (strncmp(s, "sequence entry '", 16) == 0) {
        s += 16;
        q = strchr(s, '\'');
        if (q == NULL || text_parse_u64(s, (size_t) (q - s), 0, UINT32_MAX, &v) != SY_OK)
            return;
        fr->is_entry = true;
        fr->index = (unsigned) v;
        cx->cy_nbt++;
    }
}

/* cfg_cyaml_log - libcyaml's log_fn: keep the first error and its backtrace */
__attribute__((format(printf, 3, 0)))
void cfg_cyaml_log(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    struct cfg_ctx *cx = ctx;
    char line[512];
    size_t n;

    if (level < CYAML_LOG_ERROR || cx->cy_closed)
        return;
    (void) vsnprintf(line, sizeof(line), fmt, args);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (strncmp(line, "Load: Backtrace", 15) == 0)
        return;
    if (strncmp(line, "  in ", 5) == 0) {
        if (cx->cy_have_msg)
            cfg_cyaml_frame(cx, line + 5);
        return;
    }
    if (cx->cy_have_msg) {
        cx->cy_closed = true;   /* a second error: the first one is enough */
        return;
    }
    cfg_cyaml_msg(cx, fmt, line);
    cx->cy_have_msg = true;
}

/* cfg_cyaml_report - turn the captured backtrace into "lmtp.listeners[1].name" */
void cfg_cyaml_report(struct cfg_ctx *cx, cyaml_err_t rc)
{
    char path[CFG_KEYPATH_MAX] = "";
    size_t off = 0;
    const struct cfg_key *k;

    if (!cx->cy_have_msg) {
        cfg_err_at(cx, 1, "", "libcyaml: %s", cyaml_strerror(rc));
        return;
    }
    /* The backtrace lists the innermost frame first. */
    for (size_t i = cx->cy_nbt; i-- > 0 && off < sizeof(path);) {
        const struct cfg_cyframe *fr = &cx->cy_bt[i];
        int w;

        if (fr->is_entry)
            w = snprintf(path + off, sizeof(path) - off, "[%u]", fr->index > 0 ? fr->index - 1 : 0);
        else
            w = snprintf(path + off, sizeof(path) - off, "%s%s", off > 0 ? "." : "", fr->name);
        if (w > 0)
            off += (size_t) w;
    }
    if (cx->cy_key[0] != '\0' && off < sizeof(path))
        (void) snprintf(path + off, sizeof(path) - off, "%s%s", off > 0 ? "." : "", cx->cy_key);
    k = cfg_key_find(cx, path);
    cfg_err_at(cx, k != NULL ? k->line : (cx->cy_line > 0 ? cx->cy_line : 1), path, "%s", cx->cy_msg);
}
