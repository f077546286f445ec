/* ehlo.h - EHLO reply → server capabilities (RFC 5321 §4.1.1.1); pure
 *
 * Turns the lines of a 250 reply to EHLO into a fixed-size struct: the
 * server's name from the first line, then one extension per line
 * (ehlo-keyword *(SP ehlo-param)), keywords case-insensitive. Known
 * extensions set a bit; SIZE keeps its number and AUTH its mechanism
 * list; unknown keywords are kept (bounded) for logs and otherwise
 * ignored. Everything is bounded whatever the server sends (an absurd
 * SIZE, 10000 AUTH mechanisms, duplicated keywords, long lines:
 * research/reliability.md B3 #62); nothing here fails on peer input.
 *
 * The parser reports what the server said and infers nothing: policy
 * such as "SMTPUTF8 implies 8BITMIME" (Postfix) belongs to the client.
 * After STARTTLS, capabilities must be forgotten (RFC 3207 §4.2):
 * smtp_ehlo_init() again and parse the new EHLO reply.
 *
 * Thread safety: a struct smtp_ehlo belongs to one thread; reentrant.
 */
#ifndef SY_SMTP_EHLO_H
#define SY_SMTP_EHLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/smtp/reply.h"
#include "gateway/util/err.h"

/* RFC 5321 §4.5.3.1.2: a domain is at most 255 octets. */
#define SMTP_EHLO_NAME_MAX ((size_t) 256)
/* RFC 4422 §3.1: a SASL mechanism name is 1-20 of [A-Z0-9-_]. */
#define SMTP_EHLO_MECH_LEN_MAX ((size_t) 20)
/* Mechanisms kept; more are dropped (auth_dropped counts them). Real
 * servers offer fewer than ten. */
#define SMTP_EHLO_MECHS_MAX ((size_t) 32)
/* Unknown keywords kept for logs, and their length: more or longer are
 * counted and dropped. */
#define SMTP_EHLO_OTHERS_MAX ((size_t) 16)
#define SMTP_EHLO_KEYWORD_LEN_MAX ((size_t) 32)

/* Extensions (bits of struct smtp_ehlo.ext). */
enum smtp_ehlo_ext {
    SMTP_EXT_PIPELINING = 1u << 0,          /* RFC 2920 */
    SMTP_EXT_SIZE = 1u << 1,                /* RFC 1870 */
    SMTP_EXT_8BITMIME = 1u << 2,            /* RFC 6152 */
    SMTP_EXT_SMTPUTF8 = 1u << 3,            /* RFC 6531 */
    SMTP_EXT_DSN = 1u << 4,                 /* RFC 3461 */
    SMTP_EXT_STARTTLS = 1u << 5,            /* RFC 3207 */
    SMTP_EXT_ENHANCEDSTATUSCODES = 1u << 6, /* RFC 2034 */
    SMTP_EXT_CHUNKING = 1u << 7,            /* RFC 3030 */
    SMTP_EXT_BINARYMIME = 1u << 8,          /* RFC 3030 */
    SMTP_EXT_REQUIRETLS = 1u << 9,          /* RFC 8689 */
    SMTP_EXT_AUTH = 1u << 10                /* RFC 4954 ("AUTH" or the old "AUTH=") */
};

/* A server's capabilities. Declared for embedding (plain value, no
 * allocation: copy it freely); read it through the functions below. */
struct smtp_ehlo {
    unsigned ext;                           /* enum smtp_ehlo_ext bits */
    char name[SMTP_EHLO_NAME_MAX];          /* first word of the first line, printable */
    uint64_t size_max;                      /* SIZE limit in bytes; 0: none declared */
    bool size_bogus;                        /* a SIZE parameter was not a usable number */
    size_t nmechs;
    char mechs[SMTP_EHLO_MECHS_MAX][SMTP_EHLO_MECH_LEN_MAX + 1];  /* uppercase, unique */
    size_t mechs_dropped;                   /* invalid, duplicate or over the bound */
    size_t nothers;
    char others[SMTP_EHLO_OTHERS_MAX][SMTP_EHLO_KEYWORD_LEN_MAX + 1];  /* uppercase */
    size_t others_dropped;                  /* unknown keywords not kept, malformed lines */
};

/* Empties c: no extensions, no name. Cannot fail. */
void smtp_ehlo_init(struct smtp_ehlo *c);

/* Parses the reply to EHLO into c (initialised first, so nothing of an
 * earlier EHLO survives): the first line names the server, each further
 * line is one extension. SY_OK, or SY_ESYNTAX (err 4.5.0, c left empty)
 * when r is not a positive (2xx, as Postfix accepts) reply: the caller
 * handles a refusal (HELO fallback) before calling this. r is borrowed
 * for the duration of the call. */
int smtp_ehlo_parse(const struct smtp_reply *r, struct smtp_ehlo *c, struct sy_err *err);

/* The two steps of smtp_ehlo_parse() on their own (line texts as
 * smtp_reply_line() gives them, any bytes, borrowed for the call):
 * the first line's text (the server's name is its first word, bytes
 * outside 0x21..0x7e become '?', cut at 255), and one extension line.
 * Neither can fail: malformed parts are counted and dropped. */
void smtp_ehlo_set_name(struct smtp_ehlo *c, const char *t, size_t n);
void smtp_ehlo_add_line(struct smtp_ehlo *c, const char *t, size_t n);

/* True when every bit of ext (enum smtp_ehlo_ext) was advertised. */
static inline bool smtp_ehlo_has(const struct smtp_ehlo *c, unsigned ext)
{
    return ext != 0 && (c->ext & ext) == ext;
}
/* The server's name, "" when none. Borrowed from c. */
static inline const char *smtp_ehlo_name(const struct smtp_ehlo *c) { return c->name; }
/* RFC 1870: the declared maximum message size; 0 when there is none
 * ("SIZE" alone, "SIZE 0", no SIZE, or only unusable values: not a
 * decimal number, or over INT64_MAX). When SIZE appears more than once the
 * smallest non-zero value wins. */
static inline uint64_t smtp_ehlo_size_max(const struct smtp_ehlo *c) { return c->size_max; }

/* The AUTH mechanisms (RFC 4954), in the server's order, uppercase,
 * without duplicates; from "AUTH x y" and "AUTH=x y" lines alike. */
static inline size_t smtp_ehlo_nmechs(const struct smtp_ehlo *c) { return c->nmechs; }
/* Mechanism i (< nmechs), borrowed from c; "" when i is out of range. */
const char *smtp_ehlo_mech(const struct smtp_ehlo *c, size_t i);
/* True when the server offered mech (compared case-insensitively). */
bool smtp_ehlo_has_mech(const struct smtp_ehlo *c, const char *mech);

#endif
