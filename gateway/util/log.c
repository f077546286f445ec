/* log.c - Postfix-shaped log records to stderr and syslog */
#include "gateway/util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

/* Write-once start-up facts (STYLE §13): set by log_init() before threads. */
static const char *log_ident = "switchyard";
static enum log_level log_min = LOG_LVL_INFO;
static int log_to_stderr = 1;
static int log_to_syslog = 0;

static const char *const log_names[] = { "debug", "info", "warning", "error", "fatal" };

void log_init(const char *ident, enum log_level min, int use_stderr, int use_syslog)
{
    log_ident = ident;
    log_min = min;
    log_to_stderr = use_stderr;
    log_to_syslog = use_syslog;
    if (use_syslog)
        openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_set_level(enum log_level min)
{
    log_min = min;
}

/* log_vmsg - format one record and emit it with a single write */
static void log_vmsg(enum log_level lvl, const char *qid, const char *fmt, va_list ap)
{
    char line[LOG_LINE_MAX];
    size_t off = 0;
    int n;
    static const int prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR, LOG_CRIT };

    if (lvl < log_min)
        return;
    n = snprintf(line, sizeof(line), "%s: %s: ", log_ident, log_names[lvl]);
    if (n > 0)
        off = (size_t) n < sizeof(line) ? (size_t) n : sizeof(line) - 1;
    if (qid != NULL && qid[0] != '\0') {
        n = snprintf(line + off, sizeof(line) - off, "%s: ", qid);
        if (n > 0)
            off += (size_t) n < sizeof(line) - off ? (size_t) n : sizeof(line) - off - 1;
    }
    (void) vsnprintf(line + off, sizeof(line) - off, fmt, ap);
    /* One record is one line, whatever a caller passed in. */
    for (char *p = line; *p != '\0'; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    if (log_to_syslog)
        syslog(prio[lvl], "%s", line + strlen(log_ident) + 2);
    if (log_to_stderr) {
        size_t len = strlen(line);

        if (len > sizeof(line) - 2)
            len = sizeof(line) - 2;
        line[len++] = '\n';
        /* A failed log write must never stop mail. */
        if (write(STDERR_FILENO, line, len) < 0)
            return;
    }
}

void log_msg(enum log_level lvl, const char *qid, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(lvl, qid, fmt, ap);
    va_end(ap);
}

const char *log_safe_n(char *dst, size_t dstsize, const char *src, size_t n)
{
    size_t o = 0;

    if (dstsize == 0)
        return dst;
    for (size_t i = 0; i < n && src != NULL; i++) {
        unsigned char c = (unsigned char) src[i];

        if (o + 1 >= dstsize) {
            if (dstsize > 4)
                memcpy(dst + dstsize - 4, "...", 3), o = dstsize - 1;
            break;
        }
        if (c >= 0x20 && c < 0x7f)
            dst[o++] = src[i];
        else
            dst[o++] = '?';
    }
    dst[o] = '\0';
    return dst;
}

const char *log_safe(char *dst, size_t dstsize, const char *src)
{
    return log_safe_n(dst, dstsize, src, src == NULL ? 0 : strlen(src));
}

void sy_fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(LOG_LVL_FATAL, NULL, fmt, ap);
    va_end(ap);
    exit(1);
}

void sy_panic(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(LOG_LVL_FATAL, NULL, fmt, ap);
    va_end(ap);
    abort();
}
