/* log.h - Postfix-shaped log records: queue id first, key=value after
 *
 *   switchyard: info: 4F3A9C21D0: to=<b@example.net>, status=sent (...)
 *
 * Records go to stderr, and to syslog (facility mail) when enabled. Peer
 * text must pass through log_safe() before it reaches a format; secrets
 * never reach a log line. One record is one line, written with one
 * write(2) so concurrent threads do not interleave.
 *
 * Thread safety: log_msg() may be called from any thread; log_init() once
 * at start-up before threads exist.
 */
#ifndef SY_UTIL_LOG_H
#define SY_UTIL_LOG_H

#include <stddef.h>

enum log_level { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_WARNING, LOG_LVL_ERROR, LOG_LVL_FATAL };

#define LOG_LINE_MAX ((size_t) 2048)
/* Peer strings in a record are cut here (Postfix logs %.100s). */
#define LOG_SAFE_MAX ((size_t) 256)

/* ident is borrowed and must live for the process ("switchyard"). */
void log_init(const char *ident, enum log_level min, int use_stderr, int use_syslog);
void log_set_level(enum log_level min);

/* qid may be NULL for records not about one message. */
void log_msg(enum log_level lvl, const char *qid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(qid, ...) log_msg(LOG_LVL_DEBUG, (qid), __VA_ARGS__)
#define log_info(qid, ...)  log_msg(LOG_LVL_INFO, (qid), __VA_ARGS__)
#define log_warn(qid, ...)  log_msg(LOG_LVL_WARNING, (qid), __VA_ARGS__)
#define log_error(qid, ...) log_msg(LOG_LVL_ERROR, (qid), __VA_ARGS__)

/* Copies untrusted src into dst as printable ASCII ('?' for the rest),
 * truncated to fit (a trailing "..." marks the cut), always NUL-terminated.
 * src may be NULL (""). Returns dst. */
const char *log_safe(char *dst, size_t dstsize, const char *src);
/* The same for a length-counted source that may hold NUL bytes. */
const char *log_safe_n(char *dst, size_t dstsize, const char *src, size_t n);

/* Start-up only: log at fatal level and exit(1). Never after threads run. */
void sy_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Broken invariant: log and abort(), leaving a core. */
void sy_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
