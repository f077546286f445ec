/* fuzz_spool_env.c - libFuzzer target: the spool envelope record decoder
 *
 * A spool file is hostile input when it is read back (reliability.md C21
 * item 7), so the decoder must never read out of bounds, leak, or accept
 * what it cannot reproduce. For every input:
 *   - decode fails: the envelope is left empty and the error is one
 *     printable line with SY_ESYNTAX;
 *   - decode succeeds: encode(env) decodes again to an equal envelope, and
 *     encoding that gives the same bytes (the encoding is canonical).
 * Any violation aborts, which libFuzzer reports as a crash.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/envelope.h"
#include "gateway/spool.h"
#include "gateway/util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* fz_str_eq - both NULL, or equal strings */
static int fz_str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

/* fz_env_eq - field-by-field equality of two envelopes */
static int fz_env_eq(const struct envelope *a, const struct envelope *b)
{
    if (!fz_str_eq(a->sender, b->sender) || a->ret != b->ret || !fz_str_eq(a->envid, b->envid) ||
        a->body != b->body || a->flags != b->flags || a->size_declared != b->size_declared ||
        a->hold_until != b->hold_until || a->arrival_us != b->arrival_us ||
        !fz_str_eq(a->listener, b->listener) || !fz_str_eq(a->client_name, b->client_name) ||
        !fz_str_eq(a->client_addr, b->client_addr) || !fz_str_eq(a->mta_qid, b->mta_qid) ||
        !fz_str_eq(a->auth_user, b->auth_user) || !fz_str_eq(a->message_id, b->message_id) ||
        a->nrcpt != b->nrcpt)
        return 0;
    for (size_t i = 0; i < a->nrcpt; i++)
        if (!fz_str_eq(a->rcpts[i].addr, b->rcpts[i].addr) ||
            a->rcpts[i].notify != b->rcpts[i].notify ||
            !fz_str_eq(a->rcpts[i].orcpt_type, b->rcpts[i].orcpt_type) ||
            !fz_str_eq(a->rcpts[i].orcpt_addr, b->rcpts[i].orcpt_addr))
            return 0;
    return 1;
}

/* fz_env_empty - as after env_init() */
static int fz_env_empty(const struct envelope *e)
{
    return e->sender == NULL && e->ret == 0 && e->envid == NULL && e->body == 0 &&
           e->flags == 0 && e->size_declared == 0 && e->hold_until == 0 && e->arrival_us == 0 &&
           e->listener == NULL && e->client_name == NULL && e->client_addr == NULL &&
           e->mta_qid == NULL && e->auth_user == NULL && e->message_id == NULL &&
           e->rcpts == NULL && e->nrcpt == 0 && e->rcpt_cap == 0;
}

/* fz_err_ok - a failure is SY_ESYNTAX with one printable line */
static int fz_err_ok(const struct sy_err *err)
{
    size_t n = strnlen(err->text, sizeof(err->text));

    if (err->code != SY_ESYNTAX || n == 0 || n == sizeof(err->text))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char) err->text[i] < 0x20 || err->text[i] == 0x7f)
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct envelope a, b;
    struct sy_err err;
    char *enc, *enc2;
    size_t n, n2;

    env_init(&a);
    memset(&err, 0, sizeof(err));
    if (spool_env_decode((const char *) data, size, &a, &err) != SY_OK) {
        if (!fz_env_empty(&a) || !fz_err_ok(&err))
            abort();
        return 0;
    }
    /* Every accepted string is free of NUL, CR and LF. */
    for (size_t i = 0; i < a.nrcpt; i++)
        if (a.rcpts[i].addr == NULL || a.rcpts[i].addr[0] == '\0' ||
            strpbrk(a.rcpts[i].addr, "\r\n") != NULL)
            abort();
    if (a.sender == NULL || strpbrk(a.sender, "\r\n") != NULL || a.nrcpt == 0)
        abort();

    enc = spool_env_encode(&a, &n);
    env_init(&b);
    if (spool_env_decode(enc, n, &b, &err) != SY_OK || !fz_env_eq(&a, &b))
        abort();
    enc2 = spool_env_encode(&b, &n2);
    if (n2 != n || memcmp(enc, enc2, n) != 0)
        abort();
    free(enc);
    free(enc2);
    env_free(&a);
    env_free(&b);
    return 0;
}
