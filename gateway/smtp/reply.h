/* reply.h - SMTP reply parser (RFC 5321 §4.2): bytes in, complete replies out; pure
 *
 * An incremental parser for what an SMTP server sends back. Feed it bytes
 * as they arrive (any split: one byte at a time, one line, or many
 * pipelined replies at once); it says "need more", "a complete reply" (and
 * how many bytes that took: the rest belongs to the next reply), or a
 * protocol error. No sockets, no globals, no allocation beyond the reply
 * it fills in.
 *
 * What a server may send (Reply-line, RFC 5321 §4.2):
 *   *( code "-" [ text ] CRLF )  code [ SP text ] CRLF
 * with code = [2-5][0-5][0-9], the same code on every line of a reply.
 * Everything else is a protocol error: "25 ok", "2500 ok", "250ok",
 * "099", "600", an empty line, a code change inside a multi-line reply
 * ("250-" then "550 "), NUL, a bare CR or bare LF. Limits (hostile server,
 * research/reliability.md B3 #56-#58): a line is at most
 * SMTP_REPLY_LINE_MAX bytes including CRLF and a reply at most
 * SMTP_REPLY_LINES_MAX lines, so a 1 MB line or a reply that never ends
 * fails as soon as it passes the bound, with bounded memory. Every error
 * means: abort the session and defer (SY_ESYNTAX or SY_ETOOBIG, enhanced
 * status 4.5.0, never a 5.x.x): the OpenSMTPD client had an RCE here
 * (CVE-2020-8794), so the parser is a fuzz target
 * (tests/fuzz/fuzz_smtp_reply.c).
 *
 * RFC 3463 enhanced status codes (RFC 2034) are taken only from the first
 * line, only when well formed (class 2/4/5 equal to the reply code's first
 * digit, subject and detail 1-3 digits, then SP or end of line); anything
 * else ("2.0", "9.9.9", "5.1.") means "none", and smtp_reply_status()
 * falls back to the basic code. A reply never inherits anything from the
 * previous one.
 *
 * Thread safety: a parser and a reply belong to one thread; no shared state.
 */
#ifndef SY_SMTP_REPLY_H
#define SY_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/util/buf.h"
#include "gateway/util/err.h"

/* Reply line including CRLF: Postfix line_length_limit 2048 (RFC 5321
 * §4.5.3.1.5 asks for at least 512). */
#define SMTP_REPLY_LINE_MAX ((size_t) 2048)
/* Lines per reply: msmtp SMTP_MAXLINES. */
#define SMTP_REPLY_LINES_MAX ((size_t) 50)
/* The whole reply as one printable line, NUL included (Diagnostic-Code,
 * logs); longer replies are cut and end in "...". */
#define SMTP_REPLY_FULL_MAX ((size_t) 2048)
/* "class.subject.detail" at most 3+1+3+1+3 characters, plus the NUL. */
#define SMTP_REPLY_ENH_MAX ((size_t) 12)

/* feed results other than errors (negative SY_E*). */
enum smtp_reply_feed_status {
    SMTP_REPLY_MORE = 1,    /* all input consumed, the reply is not complete */
    SMTP_REPLY_DONE = 2     /* a complete reply is ready */
};

/* A complete reply. Declared for embedding; read it through the functions
 * below. It owns the line texts (in lines): free with smtp_reply_free().
 * A zeroed or smtp_reply_init()ed reply is empty (code 0, no lines). */
struct smtp_reply {
    int code;                               /* 200..559, 0 when empty */
    char enh[SMTP_REPLY_ENH_MAX];           /* "5.1.1", "" when none */
    size_t nlines;
    uint32_t off[SMTP_REPLY_LINES_MAX];     /* text of line i at lines.data + off[i] */
    uint32_t len[SMTP_REPLY_LINES_MAX];
    struct buf lines;                       /* the texts, each NUL-terminated */
    size_t full_len;                        /* strlen(full) */
    bool full_cut;                          /* full was cut (ends in "...") */
    char full[SMTP_REPLY_FULL_MAX];         /* "250-a 250 b", printable ASCII */
};

/* The parser. Declared for embedding; fields private to reply.c. It keeps
 * the line being received and the reply being built (about 4.5 KB: embed
 * it in a session on the heap rather than on a small stack). */
struct smtp_reply_parser {
    int state;
    int error;                              /* sticky SY_E* once failed, else SY_OK */
    size_t linelen;                         /* bytes of line[] in use (no CRLF) */
    char line[SMTP_REPLY_LINE_MAX];
    struct smtp_reply cur;
};

/* ---- replies ---- */

void smtp_reply_init(struct smtp_reply *r);     /* allocates nothing */
void smtp_reply_free(struct smtp_reply *r);     /* releases the texts; r is then empty; NULL ok */

static inline int smtp_reply_code(const struct smtp_reply *r) { return r->code; }
static inline size_t smtp_reply_nlines(const struct smtp_reply *r) { return r->nlines; }
/* The RFC 3463 code of the first line, "" when it carried none. Borrowed
 * from r. */
static inline const char *smtp_reply_enh(const struct smtp_reply *r) { return r->enh; }
/* The enhanced code, or the basic code's default when there is none:
 * "2.0.0" for 2xx and 3xx, "4.0.0" for 4xx, "5.0.0" for 5xx, "4.0.0" for
 * an empty reply. Borrowed from r (or static). */
const char *smtp_reply_status(const struct smtp_reply *r);

/* The text of line i (after "250-" / "250 ", enhanced code included, raw:
 * may hold any byte except NUL, CR and LF), NUL-terminated; *lenp (when
 * not NULL) gets its length. i must be < nlines. Borrowed from r: valid
 * until r next changes. */
const char *smtp_reply_line(const struct smtp_reply *r, size_t i, size_t *lenp);

/* All lines, codes included, joined with one space ("250-a 250 b"), every
 * byte outside 0x20..0x7e replaced by '?', cut at SMTP_REPLY_FULL_MAX - 1
 * with a trailing "..." when longer. For Diagnostic-Code and logs: never
 * holds a control character. Borrowed from r. */
static inline const char *smtp_reply_full(const struct smtp_reply *r) { return r->full; }

/* Classification by the first digit. An empty reply is none of these. */
static inline bool smtp_reply_is_positive(const struct smtp_reply *r) { return r->code / 100 == 2; }
static inline bool smtp_reply_is_intermediate(const struct smtp_reply *r) { return r->code / 100 == 3; }
static inline bool smtp_reply_is_transient(const struct smtp_reply *r) { return r->code / 100 == 4; }
static inline bool smtp_reply_is_permanent(const struct smtp_reply *r) { return r->code / 100 == 5; }

/* ---- the parser ---- */

void smtp_reply_parser_init(struct smtp_reply_parser *p);  /* allocates nothing */
/* Releases what p holds; p must be initialised again before reuse. NULL ok. */
void smtp_reply_parser_free(struct smtp_reply_parser *p);
/* Forgets any partial line, partial reply and error (a new connection, or
 * the plaintext side of STARTTLS left behind). Keeps the allocation. */
void smtp_reply_parser_reset(struct smtp_reply_parser *p);

/* Feeds in[0..n). *used (never NULL) gets the number of bytes consumed.
 * Returns
 *   SMTP_REPLY_MORE  *used == n, no complete reply yet;
 *   SMTP_REPLY_DONE  the reply ends at in[*used - 1]: the bytes after it
 *                    belong to the next reply (pipelining) and must be fed
 *                    again. Get the reply with smtp_reply_parser_take() or
 *                    smtp_reply_parser_reply() before the next feed,
 *                    which starts a new reply;
 *   SY_ESYNTAX       a malformed line (see the file comment);
 *   SY_ETOOBIG       a line or a reply over its limit.
 * Errors fill err (4.5.0, the offending line made printable) and are
 * sticky: every later feed returns the same error until
 * smtp_reply_parser_reset(). */
int smtp_reply_feed(struct smtp_reply_parser *p, const char *in, size_t n,
                    size_t *used, struct sy_err *err);

/* Feeds exactly one line, in[0..n) including its final CRLF (for callers
 * that read lines). The same results as smtp_reply_feed(); a line that
 * does not end in CRLF, or holds another CR or LF, is SY_ESYNTAX. */
int smtp_reply_feed_line(struct smtp_reply_parser *p, const char *in, size_t n,
                         struct sy_err *err);

/* The input ended (the peer closed). SY_OK when p was between replies,
 * else SY_ESYNTAX with err: a line without CRLF, or a multi-line reply
 * without its final line. The sticky error, if any, comes back again. */
int smtp_reply_parser_eof(struct smtp_reply_parser *p, struct sy_err *err);

/* True when no byte of an unfinished reply is held (before STARTTLS: bytes
 * after the 220 are an injection attempt, CVE-2011-0411). */
bool smtp_reply_parser_idle(const struct smtp_reply_parser *p);

/* After SMTP_REPLY_DONE: the complete reply, borrowed from p and valid
 * until the next feed, reset or take. NULL when no complete reply is
 * waiting. */
const struct smtp_reply *smtp_reply_parser_reply(const struct smtp_reply_parser *p);

/* After SMTP_REPLY_DONE: moves the complete reply into dst (what dst held
 * is freed first; dst must be initialised). SY_OK, or SY_ENOTFOUND (dst
 * unchanged) when no complete reply is waiting. */
int smtp_reply_parser_take(struct smtp_reply_parser *p, struct smtp_reply *dst);

#endif
