/* err.h - status codes and the error detail every fallible call fills in
 *
 * Fallible functions return SY_OK (0) or a negative enum sy_status, or a
 * pointer with NULL meaning failure; detail goes into a caller-owned
 * struct sy_err (which may be NULL). The RFC 3463 enhanced status code
 * travels with the error, so a front end turns it into a reply without
 * parsing text. err.text goes into logs and SMTP replies: never a secret.
 *
 * Thread safety: no shared state.
 */
#ifndef SY_UTIL_ERR_H
#define SY_UTIL_ERR_H

#include <stddef.h>

enum sy_status {
    SY_OK = 0,
    SY_ETEMP = -1,      /* temporary failure: retry later */
    SY_EPERM = -2,      /* permanent failure */
    SY_ETOOBIG = -3,    /* a limit was passed */
    SY_ETIMEOUT = -4,   /* a deadline passed */
    SY_EIO = -5,        /* I/O error, peer gone */
    SY_ESYNTAX = -6,    /* malformed input */
    SY_ENOSPACE = -7,   /* disk full (452 4.3.1) */
    SY_ENOTFOUND = -8   /* no such object */
};

#define SY_ERR_TEXT_MAX ((size_t) 256)

struct sy_err {
    int code;                   /* enum sy_status */
    char enh[12];               /* RFC 3463 status, "4.4.1"; "" means 4.3.0 */
    char text[SY_ERR_TEXT_MAX]; /* one printable line, no secrets */
};

/* Fills e (when not NULL) and returns code. enh may be NULL (""); the text
 * is made printable (control characters become '?') and truncated. */
int sy_err_set(struct sy_err *e, int code, const char *enh,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Resets e to SY_OK with empty text. NULL is a no-op. */
void sy_err_clear(struct sy_err *e);

/* 1 unless e carries an explicit permanent (5.x.x) status: if in doubt,
 * defer rather than bounce. */
int sy_err_is_temp(const struct sy_err *e);

/* The enhanced status of e, "4.3.0" when none was set. Borrowed from e. */
const char *sy_err_enh(const struct sy_err *e);

/* Name of a status code for logs ("temporary failure", ...). Static. */
const char *sy_status_str(int code);

#endif
