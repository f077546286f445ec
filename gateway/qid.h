/* qid.h - queue ids: unique, sortable, never reused, safe as file names
 *
 * A queue id is QID_LEN characters of Crockford base32 (0-9, A-Z without
 * I, L, O, U): 11 characters of microseconds since the epoch (strictly
 * increasing within the process, even if the clock steps back), then 4
 * random characters so two nodes never mint the same id. Sorting ids as
 * strings sorts them by creation time.
 *
 * Thread safety: qid_new() is thread-safe.
 */
#ifndef SY_QID_H
#define SY_QID_H

#include <stddef.h>
#include <stdint.h>

#define QID_LEN 15
#define QID_SIZE ((size_t) QID_LEN + 1)

/* Writes a new id and its NUL into buf (QID_SIZE bytes). */
void qid_new(char buf[QID_SIZE]);
/* Makes later ids sort after `floor` (an id seen in the spool at start-up),
 * so ids are never reused after a clock step backwards. An invalid floor
 * is ignored. */
void qid_floor(const char *floor);
/* 1 when s is a well-formed queue id (exactly QID_LEN valid characters). */
int qid_valid(const char *s);
/* Microseconds since the epoch encoded in a valid id; -1 when qid is not
 * a valid id. */
int64_t qid_time_us(const char *qid);

#endif
