/* fuzz_milter_msg.c - libFuzzer target for milter/milter_msg.c
 *
 * Input: one control byte (the split point of the body), then NUL
 * separated fields: MAIL arguments up to an empty field, RCPT arguments up
 * to an empty field, a header name, a header value, the rest is the body.
 * Checks:
 *   - the MAIL/RCPT parsers never crash, and on success give a clean,
 *     non-empty recipient;
 *   - the header line is name ':' value with every lone LF made CRLF,
 *     ending in CRLF, and has no bare LF;
 *   - the body comes out the same whole and split in two, with no bare LF
 *     and the line-start state agreeing with the output's last bytes.
 * Any disagreement aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/envelope.h"
#include "gateway/util/buf.h"
#include "gateway/util/text.h"
#include "milter/milter_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(c) do { if (!(c)) abort(); } while (0)
#define FUZZ_OUT_MAX ((size_t) 1 << 20)

/* fuzz_field - the next NUL-terminated field of p[*off..n), or NULL at the end */
static const char *fuzz_field(const char *p, size_t n, size_t *off)
{
    const char *s, *z;

    if (*off >= n)
        return NULL;
    s = p + *off;
    z = memchr(s, '\0', n - *off);
    if (z == NULL)
        return NULL;
    *off = (size_t) (z - p) + 1;
    return s;
}

static void fuzz_no_bare_lf(const struct buf *b)
{
    const char *s = buf_str(b);

    for (size_t i = 0; i < buf_len(b); i++)
        if (s[i] == '\n')
            FUZZ_CHECK(i > 0 && s[i - 1] == '\r');
}

static void fuzz_body(const char *p, size_t n, size_t split, struct buf *out, bool *start)
{
    struct milter_eol eol;

    milter_eol_init(&eol);
    buf_init(out, FUZZ_OUT_MAX);
    FUZZ_CHECK(milter_body_crlf(&eol, (const unsigned char *) p, split, out) == SY_OK);
    FUZZ_CHECK(milter_body_crlf(&eol, (const unsigned char *) p + split, n - split, out) == SY_OK);
    *start = milter_eol_at_line_start(&eol);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *) data + 1, *f, *name, *value;
    char *mail[MILTER_ARGS_MAX + 1], *rcpt[MILTER_ARGS_MAX + 1];
    size_t n, off = 0, nm = 0, nr = 0, split;
    struct envelope env;
    struct env_rcpt r;
    struct sy_err err;
    struct buf a, b, h;
    bool sa, sb;

    if (size < 1 || size > 65536)
        return 0;
    n = size - 1;
    while ((f = fuzz_field(p, n, &off)) != NULL && f[0] != '\0' && nm < MILTER_ARGS_MAX)
        mail[nm++] = (char *) (uintptr_t) f;
    mail[nm] = NULL;
    while ((f = fuzz_field(p, n, &off)) != NULL && f[0] != '\0' && nr < MILTER_ARGS_MAX)
        rcpt[nr++] = (char *) (uintptr_t) f;
    rcpt[nr] = NULL;

    env_init(&env);
    if (milter_parse_mail(nm > 0 ? mail : NULL, &env, &err) == SY_OK)
        FUZZ_CHECK(env.sender != NULL && text_is_clean(env.sender, strlen(env.sender)));
    memset(&r, 0, sizeof(r));
    if (milter_parse_rcpt(nr > 0 ? rcpt : NULL, (env.flags & ENV_F_SMTPUTF8) != 0, &r, &err) == SY_OK) {
        FUZZ_CHECK(r.addr != NULL && r.addr[0] != '\0' && text_is_clean(r.addr, strlen(r.addr)));
        env_rcpt_free(&r);
    } else {
        FUZZ_CHECK(r.addr == NULL);
    }
    env_free(&env);

    name = fuzz_field(p, n, &off);
    value = fuzz_field(p, n, &off);
    if (name != NULL && value != NULL) {
        buf_init(&h, FUZZ_OUT_MAX);
        if (milter_header_line(&h, name, value, data[0] & 1) == SY_OK) {
            FUZZ_CHECK(buf_len(&h) >= strlen(name) + 3);
            FUZZ_CHECK(memcmp(buf_str(&h), name, strlen(name)) == 0 && buf_str(&h)[strlen(name)] == ':');
            FUZZ_CHECK(memcmp(buf_str(&h) + buf_len(&h) - 2, "\r\n", 2) == 0);
            fuzz_no_bare_lf(&h);
        }
        buf_free(&h);
    }

    /* the body: whole, then split at a data-derived point */
    if (off > n)
        off = n;
    split = (n - off) > 0 ? data[0] % (n - off + 1) : 0;
    fuzz_body(p + off, n - off, 0, &a, &sa);
    fuzz_body(p + off, n - off, split, &b, &sb);
    FUZZ_CHECK(buf_len(&a) == buf_len(&b) && memcmp(buf_str(&a), buf_str(&b), buf_len(&a)) == 0);
    FUZZ_CHECK(sa == sb);
    fuzz_no_bare_lf(&a);
    FUZZ_CHECK(sa == (buf_len(&a) == 0 ||
                      (buf_len(&a) >= 2 && memcmp(buf_str(&a) + buf_len(&a) - 2, "\r\n", 2) == 0)));
    buf_free(&a);
    buf_free(&b);
    return 0;
}
