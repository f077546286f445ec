/* fuzz_dsn.c - libFuzzer target for the DSN composer (gateway/dsn.c)
 *
 * Input: five control bytes, then fields separated by 0xff (never part
 * of UTF-8): sender, first recipient, second recipient, ORCPT address,
 * ENVID, Message-ID, remote reply, remote MTA; everything after the last
 * separator is the original message (any bytes). Control bytes:
 *   [0] bit 0 SMTPUTF8, bits 1-2 RET, bit 3 no original, bit 4 ORCPT
 *       type utf-8 (else rfc822), bit 5 second result, bit 6 no times,
 *       bit 7 diag_type "x-switchyard";
 *   [1], [2] actions of the two results;
 *   [3] return_max: 0 is DSN_RETURN_MAX_DEFAULT, else 16 * [3];
 *   [4] status subject/detail, or NULL status when 0.
 * The token is fixed, so the fuzzer can plant the boundary in the content.
 *
 * On success the output must have CRLF line endings only, no line over
 * 998 octets, a header of our fields only (no injected field), exactly
 * one boundary per delimiter (the boundary nowhere inside the parts) and
 * only known fields or continuations in the delivery-status part. On
 * failure the output must be unchanged and the error one of dsn.h's.
 * Any violation aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/dsn.h"
#include "gateway/envelope.h"
#include "gateway/util/buf.h"
#include "gateway/util/err.h"
#include "gateway/util/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(c) do { if (!(c)) abort(); } while (0)
#define FUZZ_OUT_MAX ((size_t) 64 << 20)
#define FUZZ_TOKEN "fuzz.Tok-1"
#define FUZZ_HOST "mta.example.com"
#define FUZZ_NFIELDS 8
#define FUZZ_T0 ((int64_t) 1795424400 * 1000000)

static const char *const fuzz_top_fields[] = {
    "From:", "To:", "Subject:", "Date:", "Message-ID:", "In-Reply-To:", "References:",
    "Auto-Submitted:", "MIME-Version:", "Content-Type:", "Content-Transfer-Encoding:", NULL
};

static const char *const fuzz_status_fields[] = {
    "Reporting-MTA:", "Original-Envelope-Id:", "Arrival-Date:", "Original-Recipient:",
    "Final-Recipient:", "Action:", "Status:", "Remote-MTA:", "Diagnostic-Code:",
    "Last-Attempt-Date:", "Will-Retry-Until:", NULL
};

/* fuzz_count - occurrences of needle in p[0..n) */
static size_t fuzz_count(const char *p, size_t n, const char *needle)
{
    size_t c = 0, nl = strlen(needle);

    for (size_t i = 0; i + nl <= n; i++)
        if (memcmp(p + i, needle, nl) == 0)
            c++;
    return c;
}

/* fuzz_find - first needle in p[0..n), or NULL */
static const char *fuzz_find(const char *p, size_t n, const char *needle)
{
    size_t nl = strlen(needle);

    for (size_t i = 0; i + nl <= n; i++)
        if (memcmp(p + i, needle, nl) == 0)
            return p + i;
    return NULL;
}

/* fuzz_lines_known - every line of p[0..n) (CRLF-terminated) is empty, a
 * continuation, or starts with one of names */
static void fuzz_lines_known(const char *p, size_t n, const char *const *names)
{
    size_t i = 0;

    while (i < n) {
        const char *e = fuzz_find(p + i, n - i, "\r\n");
        size_t len;
        int ok = 0;

        FUZZ_CHECK(e != NULL);
        len = (size_t) (e - (p + i));
        if (len == 0 || p[i] == ' ')
            ok = 1;
        for (size_t k = 0; !ok && names[k] != NULL; k++)
            ok = len >= strlen(names[k]) && memcmp(p + i, names[k], strlen(names[k])) == 0;
        FUZZ_CHECK(ok);
        i += len + 2;
    }
}

/* fuzz_check_output - the promises of dsn.h on one composed DSN */
static void fuzz_check_output(const char *out, size_t len, const struct dsn_info *info)
{
    const char *body, *p2, *p2body, *p2end;
    char delim[DSN_BOUNDARY_SIZE + 8];
    size_t col = 0, nparts = info->returned == DSN_RETURNED_NONE ? 2 : 3;

    /* CRLF only, <= 998 octets per line, ends with CRLF. */
    FUZZ_CHECK(len >= 2 && out[len - 2] == '\r' && out[len - 1] == '\n');
    for (size_t i = 0; i < len; i++) {
        if (out[i] == '\r') {
            FUZZ_CHECK(i + 1 < len && out[i + 1] == '\n');
            FUZZ_CHECK(col <= 998);
            col = 0;
            i++;
        } else {
            FUZZ_CHECK(out[i] != '\n');
            col++;
        }
    }

    /* Our header fields only: nothing injected through an address, the
     * Message-ID or the host names. */
    body = fuzz_find(out, len, "\r\n\r\n");
    FUZZ_CHECK(body != NULL);
    fuzz_lines_known(out, (size_t) (body - out) + 2, fuzz_top_fields);
    body += 4;

    /* The boundary appears in the body only as the delimiters. */
    FUZZ_CHECK(info->boundary[0] != '\0' && strlen(info->boundary) <= 70);
    FUZZ_CHECK(fuzz_count(body, len - (size_t) (body - out), info->boundary) == nparts + 1);
    (void) snprintf(delim, sizeof(delim), "\r\n--%s", info->boundary);
    FUZZ_CHECK(fuzz_count(body - 2, len - (size_t) (body - 2 - out), delim) == nparts + 1);

    /* Part 2 holds delivery-status fields and continuations only. */
    p2 = fuzz_find(body, len - (size_t) (body - out), delim);
    FUZZ_CHECK(p2 != NULL);
    p2 = fuzz_find(p2 + 1, len - (size_t) (p2 + 1 - out), delim);
    FUZZ_CHECK(p2 != NULL);
    p2body = fuzz_find(p2 + 1, len - (size_t) (p2 + 1 - out), "\r\n\r\n");
    FUZZ_CHECK(p2body != NULL);
    p2body += 4;
    p2end = fuzz_find(p2body - 2, len - (size_t) (p2body - 2 - out), delim);
    FUZZ_CHECK(p2end != NULL && p2end + 2 >= p2body);
    fuzz_lines_known(p2body, (size_t) (p2end + 2 - p2body), fuzz_status_fields);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *field[FUZZ_NFIELDS] = { NULL };
    const char *p, *end, *msg = NULL;
    char status[2][16];
    struct envelope env;
    struct dsn_rcpt res[2];
    struct dsn_input in;
    struct dsn_info info;
    struct sy_err err;
    struct buf out;
    size_t nf = 0, msg_len = 0;
    uint8_t ctl[5];
    int rc;

    if (size < sizeof(ctl))
        return 0;
    memcpy(ctl, data, sizeof(ctl));
    p = (const char *) data + sizeof(ctl);
    end = (const char *) data + size;
    while (nf < FUZZ_NFIELDS) {
        const char *sep = memchr(p, 0xff, (size_t) (end - p));

        if (sep == NULL) {
            field[nf++] = xmemdup0(p, (size_t) (end - p));
            p = end;
            break;
        }
        field[nf++] = xmemdup0(p, (size_t) (sep - p));
        p = sep + 1;
    }
    if (!(ctl[0] & 8)) {
        msg = p;
        msg_len = (size_t) (end - p);
    }

    env_init(&env);
    env_set(&env.sender, field[0] != NULL ? field[0] : "a@example.org");
    env.flags = (ctl[0] & 1) ? ENV_F_SMTPUTF8 : 0;
    env.ret = (ctl[0] >> 1) & 3;
    env_set(&env.envid, field[4]);
    env_set(&env.message_id, field[5]);
    env.arrival_us = (ctl[0] & 64) ? 0 : FUZZ_T0;
    for (size_t i = 0; i < 2; i++) {
        struct env_rcpt r = { 0 };

        r.addr = xstrdup(field[1 + i] != NULL ? field[1 + i] : "b@example.net");
        r.notify = ctl[1 + i] & 0x0f;
        if (i == 0 && field[3] != NULL && field[3][0] != '\0') {
            r.orcpt_type = xstrdup((ctl[0] & 16) ? "utf-8" : "rfc822");
            r.orcpt_addr = xstrdup(field[3]);
        }
        env_add_rcpt(&env, &r);
    }

    memset(res, 0, sizeof(res));
    for (size_t i = 0; i < 2; i++) {
        int action = 1 + (ctl[1 + i] >> 4) % 5;
        char cls = action == DSN_ACTION_FAILED ? ((ctl[4] & 1) ? '4' : '5')
                   : action == DSN_ACTION_DELAYED ? '4' : '2';

        (void) snprintf(status[i], sizeof(status[i]), "%c.%u.%u", cls, (unsigned) (ctl[4] >> 1) % 8,
                        (unsigned) ctl[4] * 7 % 1000);
        res[i].rcpt = i;
        res[i].action = action;
        res[i].status = ctl[4] == 0 ? NULL : status[i];
        res[i].diagnostic = field[6];
        res[i].diag_type = (ctl[0] & 128) ? "x-switchyard" : NULL;
        res[i].remote_mta = field[7];
        res[i].last_attempt_us = (ctl[0] & 64) ? 0 : FUZZ_T0 + 3600000000LL;
        res[i].retry_until_us = (ctl[0] & 64) ? 0 : FUZZ_T0 + 432000000000LL;
        (void) dsn_wanted(&env, i, action);
    }
    if (env.sender[0] == '\0')
        FUZZ_CHECK(dsn_wanted(&env, 0, DSN_ACTION_FAILED) == 0);

    memset(&in, 0, sizeof(in));
    in.env = &env;
    in.rcpts = res;
    in.nrcpts = (ctl[0] & 32) ? 2 : 1;
    in.reporting_mta = FUZZ_HOST;
    in.token = FUZZ_TOKEN;
    in.now_us = FUZZ_T0 + 3660000000LL;
    in.msg = msg;
    in.msg_len = msg_len;
    in.return_max = ctl[3] == 0 ? DSN_RETURN_MAX_DEFAULT : (size_t) ctl[3] * 16;

    buf_init(&out, FUZZ_OUT_MAX);
    sy_err_clear(&err);
    rc = dsn_compose(&in, &out, &info, &err);
    if (rc == SY_OK) {
        fuzz_check_output(buf_str(&out), buf_len(&out), &info);
        FUZZ_CHECK(env.sender[0] != '\0');
    } else {
        FUZZ_CHECK(buf_len(&out) == 0);
        FUZZ_CHECK(err.code == rc);
        FUZZ_CHECK(rc == SY_EPERM || rc == SY_ESYNTAX || rc == SY_ETOOBIG);
        FUZZ_CHECK(err.enh[0] == '5' && err.text[0] != '\0');
    }
    buf_free(&out);
    env_free(&env);
    for (size_t i = 0; i < nf; i++)
        free(field[i]);
    return 0;
}
