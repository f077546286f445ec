/* err.c - status codes and error detail */
#include "gateway/util/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* sy_err_set - fill e and return code */
int sy_err_set(struct sy_err *e, int code, const char *enh, const char *fmt, ...)
{
    va_list ap;

    if (e == NULL)
        return code;
    e->code = code;
    if (enh == NULL || strlen(enh) >= sizeof(e->enh))
        enh = "";
    memcpy(e->enh, enh, strlen(enh) + 1);
    va_start(ap, fmt);
    (void) vsnprintf(e->text, sizeof(e->text), fmt, ap);
    va_end(ap);
    /* One printable line: peer text may have reached us through %s. */
    for (char *p = e->text; *p != '\0'; p++)
        if ((unsigned char) *p < 0x20 || (unsigned char) *p == 0x7f)
            *p = '?';
    return code;
}

/* sy_err_clear - reset to success */
void sy_err_clear(struct sy_err *e)
{
    if (e == NULL)
        return;
    e->code = SY_OK;
    e->enh[0] = '\0';
    e->text[0] = '\0';
}

/* sy_err_is_temp - anything not explicitly 5.x.x is temporary */
int sy_err_is_temp(const struct sy_err *e)
{
    if (e == NULL)
        return 1;
    return e->enh[0] != '5';
}

/* sy_err_enh - the enhanced status, defaulting to 4.3.0 */
const char *sy_err_enh(const struct sy_err *e)
{
    if (e == NULL || e->enh[0] == '\0')
        return "4.3.0";
    return e->enh;
}

/* sy_status_str - printable name of a status */
const char *sy_status_str(int code)
{
    switch (code) {
    case SY_OK: return "ok";
    case SY_ETEMP: return "temporary failure";
    case SY_EPERM: return "permanent failure";
    case SY_ETOOBIG: return "limit exceeded";
    case SY_ETIMEOUT: return "timeout";
    case SY_EIO: return "I/O error";
    case SY_ESYNTAX: return "syntax error";
    case SY_ENOSPACE: return "insufficient storage";
    case SY_ENOTFOUND: return "not found";
    default: return "unknown error";
    }
}
