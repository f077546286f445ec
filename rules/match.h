/* match.h - domain, address and name primitives shared by route and hold rules
 *
 * The one place that decides what a domain pattern is and when it matches,
 * so that route rules (rules/route.h) and hold rules (rules/hold.h) agree:
 *
 *   "example.com"    the domain itself, ASCII case-insensitive;
 *   ".example.com"   the domain and every subdomain of it
 *                    ("a.b.example.com"), but not "badexample.com";
 *   a trailing dot is ignored on both sides ("example.com." is
 *   "example.com"), an address literal ("[192.0.2.1]") never matches.
 *
 * There is no IDNA conversion (rules/ has no library but gateway/util):
 * an internationalised domain matches in the form it was written, so a
 * rule that must catch both forms lists both ("xn--bcher-kva.example"
 * and "bücher.example").
 *
 * Pure: no I/O, no allocation, no globals.
 * Thread safety: every function is reentrant.
 */
#ifndef SY_RULES_MATCH_H
#define SY_RULES_MATCH_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/util/err.h"

/* A domain without its trailing dot (RFC 1035 section 2.3.4: 255 octets
 * on the wire, 253 characters in text). */
#define RULES_DOMAIN_MAX ((size_t) 253)
/* One label (RFC 1035 section 2.3.4). */
#define RULES_LABEL_MAX ((size_t) 63)
/* A local part (RFC 5321 section 4.5.3.1.1). */
#define RULES_LOCAL_MAX ((size_t) 64)
/* A mailbox: the 256-octet path of RFC 5321 section 4.5.3.1.3 without
 * its angle brackets. */
#define RULES_ADDR_MAX ((size_t) 254)
/* Listener and transport names: [A-Za-z0-9._-]{1,64}, as in the config. */
#define RULES_NAME_MAX ((size_t) 64)

/* The enhanced status carried by every validation error here: 5.5.4,
 * "invalid command arguments" (RFC 3463), for a CLI or admin API to pass
 * back as it is. */
#define RULES_ENH_SYNTAX "5.5.4"

/* Flags of rules_domain_norm(). */
enum rules_domain_flag {
    RULES_DOMAIN_SUFFIX = 1     /* a leading dot ("the domain and its subdomains") is allowed */
};

/* Checks the domain pattern s[0..n) and writes its normalised form to out
 * (size outsize): ASCII letters lowercased, one trailing dot removed, a
 * leading dot kept when flags has RULES_DOMAIN_SUFFIX. Labels are 1 to 63
 * bytes of letters, digits, '-', '_' or UTF-8 (not starting or ending with
 * '-'); the domain is at most RULES_DOMAIN_MAX bytes.
 * SY_OK; SY_ESYNTAX (err says why, enh RULES_ENH_SYNTAX); SY_ETOOBIG when
 * out is too small. out is "" after a failure. */
int rules_domain_norm(const char *s, size_t n, unsigned flags, char *out,
                      size_t outsize, struct sy_err *err);

/* Checks the mailbox s[0..n) (local@domain) and writes its normalised form
 * to out: the domain as rules_domain_norm() makes it (no leading dot), the
 * local part as given (1 to 64 bytes of valid UTF-8 without control
 * characters; the last '@' separates it). At most RULES_ADDR_MAX bytes.
 * SY_OK, SY_ESYNTAX or SY_ETOOBIG as for rules_domain_norm(). */
int rules_addr_norm(const char *s, size_t n, char *out, size_t outsize,
                    struct sy_err *err);

/* The domain of an address for matching: the bytes after its last '@',
 * one trailing dot dropped; length 0 for the null sender ("") or an
 * address without '@'. addr may be NULL. The result is borrowed from
 * addr; *lenp gets its length. */
const char *rules_addr_domain(const char *addr, size_t *lenp);

/* True when the domain d[0..n) (as rules_addr_domain() returns it) matches
 * the normalised pattern p: equal, or for ".x" equal to x or ending in
 * ".x". ASCII case-insensitive. A domain of length 0 matches nothing. */
bool rules_domain_match(const char *p, const char *d, size_t n);

/* True when the address a (NULL allowed) equals the normalised mailbox
 * pattern p: ASCII case-insensitive in both parts (local parts are
 * case-sensitive in RFC 5321 but not in practice, and a hold that misses
 * "Bob@" for "bob@" would surprise), one trailing dot of a's domain
 * ignored. */
bool rules_addr_match(const char *p, const char *a);

/* True when s is a listener or transport name: 1 to RULES_NAME_MAX bytes
 * of [A-Za-z0-9._-]. s may be NULL (false). */
bool rules_name_ok(const char *s);

/* Copies n bytes of src to dst with ASCII letters lowercased (other bytes,
 * UTF-8 included, unchanged; no locale). dst gets no NUL. */
void rules_lower(char *dst, const char *src, size_t n);

/* ASCII case-insensitive equality of a[0..n) and b[0..n). */
bool rules_ieq(const char *a, const char *b, size_t n);

#endif
