/* milter_msg.h - the milter front end's pure parts: no libmilter, no I/O
 *
 * Turning what libmilter hands over into intake's terms: the envelope from
 * the MAIL and RCPT arguments (as the MTA passes them: "<addr>" then the
 * ESMTP parameters, one per argv entry), the message rebuilt byte-exact
 * from the header and body callbacks, and the capture selection. Kept
 * apart from the callbacks so unit tests and fuzzers reach them.
 *
 * Thread safety: no globals; every function works on its arguments.
 */
#ifndef SY_MILTER_MSG_H
#define SY_MILTER_MSG_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/config.h"
#include "gateway/envelope.h"
#include "gateway/util/buf.h"
#include "gateway/util/err.h"

/* Most ESMTP parameters looked at on one MAIL or RCPT. */
#define MILTER_ARGS_MAX ((size_t) 32)

/* Fills env's sender and transaction parameters (RET, ENVID, BODY,
 * SMTPUTF8, SIZE) from the MAIL arguments argv[0..] (NULL-terminated;
 * argv[0] is the reverse-path with its angle brackets). Parameters we do
 * not use (AUTH=, ...) are ignored: the MTA has accepted them already.
 * SY_OK, or SY_ESYNTAX with err set when the path is unusable (the message
 * then stays with the MTA). On failure env is unchanged. */
int milter_parse_mail(char *const *argv, struct envelope *env, struct sy_err *err);

/* Parses the RCPT arguments (argv[0] the forward-path) into r (zeroed by
 * the caller; left zeroed on failure): address, NOTIFY, ORCPT. SY_OK or
 * SY_ESYNTAX with err. */
int milter_parse_rcpt(char *const *argv, bool smtputf8, struct env_rcpt *r, struct sy_err *err);

/* True when listener l captures the mailbox addr: every recipient when
 * both capture lists are empty, else those whose domain matches one of
 * capture_domains or that equal one of capture_addresses. */
bool milter_capture_match(const struct cfg_milter_listener *l, const char *addr);

/* Appends the header field "name:value" CRLF to out, exactly as the MTA
 * received it: value as given with SMFIP_HDR_LEADSPC (leading white space
 * kept); without it (leadspc false) one space is put back after the colon
 * when the value is not empty. Folded lines keep their white space; a
 * line end inside value (LF or CRLF, as MTAs differ) becomes CRLF.
 * SY_OK, SY_ESYNTAX when name is not an RFC 5322 field name (printable
 * ASCII but ':'), or SY_ETOOBIG when out's limit is reached. */
int milter_header_line(struct buf *out, const char *name, const char *value, bool leadspc);

/* Line-end state of a body stream: bare LF becomes CRLF; a CRLF split
 * across two chunks is recognised. Zero it for each message. */
struct milter_eol {
    int last;               /* last byte written, -1 before any */
    int prev;               /* the one before it */
};
void milter_eol_init(struct milter_eol *s);
/* Appends p[0..n) to out with every LF not preceded by CR turned into
 * CRLF. SY_OK or SY_ETOOBIG (out's limit). */
int milter_body_crlf(struct milter_eol *s, const unsigned char *p, size_t n, struct buf *out);
/* True when the stream so far ends with CRLF (or is empty). */
bool milter_eol_at_line_start(const struct milter_eol *s);
/* Records bytes written without conversion (header lines, the blank line). */
void milter_eol_note(struct milter_eol *s, const unsigned char *p, size_t n);

/* True when the header value holds the MTA's queue id as an "id" clause
 * ("... with ESMTP id QID ..."; RFC 5321 §4.4): the MTA's own Received
 * field, which a retry of the message does not repeat byte for byte. */
bool milter_is_own_trace(const char *name, const char *value, const char *mta_qid);

#endif
