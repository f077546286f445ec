/* route.h - route rules: which transport a recipient leaves by, per attempt
 *
 * A route rule is a match (sender domains, recipient domains, a minimum
 * number of attempts already made, listeners) and a transport name, where
 * "" means the default transport. Rules live in three scopes, evaluated in
 * this order on every delivery attempt:
 *
 *   1. account: the rules of the intake identity, which is the user the
 *      MTA reported as authenticated, else the name of the listener the
 *      message came in by (exact, case-sensitive);
 *   2. sender domain: the rules of the envelope sender's domain (exact,
 *      ASCII case-insensitive, trailing dot ignored; the null sender has
 *      none);
 *   3. global.
 *
 * Within a scope the first rule that matches wins, and the first scope
 * with a match ends the search. No match, or a match whose transport is
 * "", gives the table's default transport. Matching within a rule is an
 * AND of its non-empty conditions, and an OR within one list; domain
 * patterns are those of rules/match.h ("example.com", ".example.com").
 *
 * A table is built with a struct route_builder and is immutable from then
 * on: route_select() does not write to it, so one table may be shared by
 * any number of threads. The configuration (gateway/config_relay.c) builds the
 * table from the `routes:` section; rules/ knows nothing of YAML.
 *
 * Thread safety: a builder belongs to one thread; a finished table may be
 * read from any thread (route_select() is reentrant).
 */
#ifndef SY_RULES_ROUTE_H
#define SY_RULES_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/util/err.h"

/* An account key: an authenticated user name or a listener name. */
#define ROUTE_ACCOUNT_MAX ((size_t) 255)
/* Entries in one condition list of one rule. */
#define ROUTE_LIST_MAX ((size_t) 1024)
/* Rules in one table, all scopes together. */
#define ROUTE_RULES_MAX ((size_t) 100000)
/* route_match_format() output, NUL included, for the longest key. */
#define ROUTE_MATCH_TEXT_MAX ((size_t) 300)

enum route_scope {
    ROUTE_SCOPE_NONE = 0,           /* no rule matched */
    ROUTE_SCOPE_ACCOUNT,
    ROUTE_SCOPE_SENDER_DOMAIN,
    ROUTE_SCOPE_GLOBAL
};

/* What is known about one recipient at one attempt. Every pointer is
 * borrowed for the duration of the call; NULL is the same as "". */
struct route_facts {
    const char *sender;         /* reverse-path mailbox; "" for the null sender */
    const char *recipient;      /* forward-path mailbox */
    unsigned attempts_made;     /* attempts already made: 0 on the first */
    const char *listener;       /* name of the listener the message came in by */
    const char *account;        /* authenticated user the MTA reported; "" when none */
};

/* One rule as the builder takes it. Every pointer is borrowed for the
 * duration of route_builder_add(); the builder keeps copies. */
struct route_rule_spec {
    const char *const *sender_domains;      /* domain patterns; any matches */
    size_t nsender_domains;                 /* 0: any sender, the null sender too */
    const char *const *recipient_domains;   /* domain patterns; any matches */
    size_t nrecipient_domains;              /* 0: any recipient */
    unsigned min_attempts;                  /* matches when attempts_made >= this */
    const char *const *listeners;           /* listener names; any matches */
    size_t nlisteners;                      /* 0: any listener */
    const char *transport;                  /* transport name; "" or NULL: the default */
};

/* Which rule chose the transport: for logs and the attempt history. */
struct route_match {
    enum route_scope scope;     /* ROUTE_SCOPE_NONE: no rule matched */
    const char *key;            /* the account or sender domain of the scope; "" for
                                 * global and none. Borrowed from the table. */
    size_t index;               /* position of the rule in its list, from 0 */
    bool is_default;            /* the default transport was chosen (no match, or "") */
};

struct route_builder;           /* opaque: a table being built */
struct route_table;             /* opaque: a finished, immutable table */

/* Returns a new, empty builder owned by the caller (end it with
 * route_builder_finish() or route_builder_free()). default_transport
 * (copied) is what route_select() returns when no rule decides; it must
 * be a valid name (rules_name_ok()), else this is a broken invariant. */
struct route_builder *route_builder_new(const char *default_transport);

/* Appends a copy of rule r to the list of (scope, key): key is the account
 * for ROUTE_SCOPE_ACCOUNT, the sender domain for
 * ROUTE_SCOPE_SENDER_DOMAIN (normalised; no leading dot), and NULL or ""
 * for ROUTE_SCOPE_GLOBAL. Rules added under the same key keep the order
 * in which they were added. Domain patterns are normalised as
 * rules_domain_norm() does (leading dot allowed).
 * SY_OK; SY_ESYNTAX for a bad key, domain, listener or transport name
 * (err->text names the field, enh 5.5.4); SY_ETOOBIG past ROUTE_LIST_MAX
 * entries in a list or ROUTE_RULES_MAX rules. b is unchanged on failure. */
int route_builder_add(struct route_builder *b, enum route_scope scope, const char *key,
                      const struct route_rule_spec *r, struct sy_err *err);

/* Frees b, whatever the outcome, and returns the finished table, owned by
 * the caller (free with route_table_free()). Never NULL. */
struct route_table *route_builder_finish(struct route_builder *b);

void route_builder_free(struct route_builder *b);   /* NULL is a no-op */
void route_table_free(struct route_table *t);       /* NULL is a no-op */

/* The transport for one recipient at one attempt: the name of the chosen
 * transport, borrowed from t (valid as long as t). When m is not NULL it
 * says which rule decided. Never NULL; facts are never written. */
const char *route_select(const struct route_table *t, const struct route_facts *f,
                         struct route_match *m);

/* The default transport of t (borrowed from t). */
const char *route_table_default(const struct route_table *t);

/* Number of rules in t, all scopes together. */
size_t route_table_count(const struct route_table *t);

/* "none", "account", "sender_domain", "global". Static. */
const char *route_scope_name(enum route_scope s);

/* Writes m as text for logs and history: "global[0]",
 * "account:alice@example.org[1]", "sender_domain:example.com[0]", "none".
 * The key is copied as it is: pass the result through log_safe() before
 * logging it. SY_OK or SY_ETOOBIG (dst then holds ""). */
int route_match_format(const struct route_match *m, char *dst, size_t dstsize);

#endif
