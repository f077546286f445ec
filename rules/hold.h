/* hold.h - hold rules: which mail waits until an administrator releases it
 *
 * A hold rule matches on the envelope sender, the recipient and the
 * listener the message came in by; every field that is set must match
 * (AND), and a rule with no field set holds everything. Sender and
 * recipient are each one of:
 *
 *   ""                 anything;
 *   "example.com"      that domain (rules/match.h: ASCII case-insensitive,
 *   ".example.com"     trailing dot ignored; the leading dot adds every
 *                      subdomain);
 *   "bob@example.com"  that mailbox (ASCII case-insensitive);
 *   "<>"               (sender only) the null sender, i.e. bounces.
 *
 * An optional `until` (unix seconds) ends the rule: it matches while
 * now < until, so held mail is released by the clock without anyone
 * removing the rule.
 *
 * Hold rules are stored in Redis and shared by every node, so they have a
 * compact, versioned text encoding (hold_rule_encode()). Its decoder treats
 * its input as hostile: a strict grammar, the same validation as
 * hold_rule_set(), a CRC-32C over the whole text, and only the canonical
 * form is accepted, so any truncation or changed byte is refused.
 *
 *   h1[;s=SENDER][;r=RECIPIENT][;l=LISTENER][;u=UNTIL];c=CRC
 *
 * Fields appear in that order, each at most once and never empty. Values
 * are the normalised patterns, with '%', ';', space, control bytes and
 * bytes >= 0x7f written as %XX (upper-case hex) and nothing else encoded;
 * UNTIL is decimal without leading zeros; CRC is the CRC-32C (Castagnoli)
 * of every byte before ";c=", as 8 upper-case hex digits. The empty rule
 * is "h1;c=2E615BDE": a version and a checksum.
 *
 * struct hold_rule is a small value type: read its fields freely, change
 * them only through hold_rule_set() / hold_rule_decode(), which validate.
 * Pure: no I/O, no allocation. Thread safety: all functions are reentrant;
 * a rule that is not being changed may be read from any thread.
 */
#ifndef SY_RULES_HOLD_H
#define SY_RULES_HOLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/util/err.h"
#include "rules/match.h"

/* A sender or recipient pattern: a mailbox, or a domain with its leading dot. */
#define HOLD_PATTERN_MAX RULES_ADDR_MAX
/* The latest `until`: 9999-12-31T23:59:59Z. */
#define HOLD_UNTIL_MAX ((int64_t) 253402300799)
/* The longest encoding: every pattern byte as %XX, plus the framing. */
#define HOLD_ENCODED_MAX ((size_t) 3 * (2 * HOLD_PATTERN_MAX + RULES_NAME_MAX) + 64)
/* Status carried by hold_rule_decode() errors: stored data that cannot be
 * read is a local problem, never the message's (4.3.0, temporary). */
#define HOLD_ENH_CORRUPT "4.3.0"

struct hold_rule {
    char sender[HOLD_PATTERN_MAX + 1];      /* "" any, "<>", domain, .domain or mailbox */
    char recipient[HOLD_PATTERN_MAX + 1];   /* "" any, domain, .domain or mailbox */
    char listener[RULES_NAME_MAX + 1];      /* "" any, or a listener name */
    int64_t until;                          /* 0: no end; else matches while now < until */
};

/* What is known about one recipient of one message; pointers borrowed for
 * the duration of the call, NULL is the same as "". */
struct hold_facts {
    const char *sender;         /* reverse-path; "" for the null sender */
    const char *recipient;      /* forward-path mailbox */
    const char *listener;       /* listener name */
};

/* Makes r the empty rule (holds everything, no end). Cannot fail. */
void hold_rule_init(struct hold_rule *r);

/* Validates and normalises the patterns (NULL or "" for "any") and until
 * (0 for none, else 1..HOLD_UNTIL_MAX) into r.
 * SY_OK, or SY_ESYNTAX with err saying which field and why (enh 5.5.4);
 * r is unchanged on failure. */
int hold_rule_set(struct hold_rule *r, const char *sender, const char *recipient,
                  const char *listener, int64_t until, struct sy_err *err);

/* True when r holds the recipient described by f at time now (unix
 * seconds): every set field matches and now < until (when until is set). */
bool hold_rule_match(const struct hold_rule *r, const struct hold_facts *f, int64_t now);

/* True when no field but possibly until is set: the rule holds everything. */
bool hold_rule_is_empty(const struct hold_rule *r);

/* True when r has an until and now >= until: it matches nothing any more. */
bool hold_rule_expired(const struct hold_rule *r, int64_t now);

/* Writes the encoding of r, NUL-terminated, into dst (dstsize bytes;
 * HOLD_ENCODED_MAX + 1 is always enough). *lenp (when not NULL) gets its
 * length. SY_OK, or SY_ETOOBIG (dst then holds ""). r must have been made
 * by hold_rule_init/set/decode. */
int hold_rule_encode(const struct hold_rule *r, char *dst, size_t dstsize, size_t *lenp);

/* Reads the encoding s[0..n) (not NUL-terminated; any bytes) into r.
 * SY_OK, or SY_ESYNTAX (err says why, enh HOLD_ENH_CORRUPT) for anything
 * but a canonical encoding with a correct checksum; r is unchanged on
 * failure. */
int hold_rule_decode(const char *s, size_t n, struct hold_rule *r, struct sy_err *err);

#endif
