/* fuzz_lmtp_proto.c - libFuzzer target for lmtp_proto.c
 *
 * The first byte picks the parser (value % 5: command, MAIL, RCPT, path,
 * xtext) and its flags (the higher bits); the rest is the input. Checked
 * invariants, any violation aborts:
 *   - a refusal is a complete 5xx reply with a 5.x.x code and clean text;
 *   - a failed MAIL leaves the envelope exactly as it was; a failed RCPT
 *     leaves the recipient zeroed;
 *   - every address produced holds no control byte, fits the RFC 5321
 *     limits, and parses again to itself (the normal form is stable);
 *   - decoded xtext holds no NUL, CR or LF and re-encodes and decodes
 *     to the same bytes; encoding any NUL/CR/LF-free input round-trips.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/envelope.h"
#include "gateway/util/err.h"
#include "gateway/util/text.h"
#include "lmtp/lmtp_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(c) do { if (!(c)) abort(); } while (0)

/* fuzz_reply_ok - a refusal must be something the server can send */
static void fuzz_reply_ok(const struct lmtp_reply *rep)
{
    FUZZ_CHECK(rep->code >= 500 && rep->code <= 599);
    FUZZ_CHECK(rep->enh[0] == '5' && rep->enh[1] == '.');
    FUZZ_CHECK(rep->text[0] != '\0');
    FUZZ_CHECK(text_is_clean(rep->text, strlen(rep->text)));
}

/* fuzz_addr_ok - a stored address: no control bytes, within limits */
static void fuzz_addr_ok(const char *a, bool utf8)
{
    size_t n = strlen(a);

    FUZZ_CHECK(text_is_clean(a, n));
    FUZZ_CHECK(n + 2 <= LMTP_PATH_MAX);
    FUZZ_CHECK(text_is_utf8(a, n));
    if (!utf8)
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK((unsigned char) a[i] < 0x80);
}

/* fuzz_reparse - "<addr>" must parse to addr again */
static void fuzz_reparse(const char *addr, bool utf8)
{
    char buf[LMTP_PATH_MAX + 8];
    struct lmtp_reply rep;
    char *again = NULL;
    size_t used = 0;
    int n;

    if (addr[0] == '\0' || strcmp(addr, "postmaster") == 0)
        return;
    n = snprintf(buf, sizeof(buf), "<%s>", addr);
    FUZZ_CHECK(n > 0 && (size_t) n < sizeof(buf));
    FUZZ_CHECK(lmtp_parse_path(buf, (size_t) n, utf8, false, &again, &used, &rep) == SY_OK);
    FUZZ_CHECK(used == (size_t) n);
    FUZZ_CHECK(strcmp(again, addr) == 0);
    free(again);
}

static void fuzz_command(const char *s, size_t n)
{
    struct lmtp_cmd cmd;
    struct lmtp_reply rep;

    if (lmtp_parse_command(s, n, &cmd, &rep) != SY_OK) {
        fuzz_reply_ok(&rep);
        FUZZ_CHECK(rep.code == 500 && strcmp(rep.enh, "5.5.2") == 0);
        return;
    }
    FUZZ_CHECK(cmd.verb >= LMTP_UNKNOWN && cmd.verb <= LMTP_AUTH);
    FUZZ_CHECK(cmd.arglen <= n);
    if (cmd.arglen > 0)
        FUZZ_CHECK(cmd.arg > s && cmd.arg + cmd.arglen == s + n);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(s[i] != '\0' && s[i] != '\r' && s[i] != '\n');
}

static void fuzz_mail(unsigned flags, const char *s, size_t n)
{
    struct lmtp_mail_policy pol = {
        (flags & 1) ? 0 : 10000000, (flags & 2) != 0, 2592000, 1795424400
    };
    struct lmtp_reply rep;
    struct envelope e;
    char *sender, *envid;

    env_init(&e);
    e.sender = sender = strdup("old@example.org");
    e.envid = envid = strdup("OLDID");
    FUZZ_CHECK(sender != NULL && envid != NULL);
    e.ret = ENV_RET_FULL;
    e.body = ENV_BODY_7BIT;
    e.flags = ENV_F_8BIT | ENV_F_REQUIRETLS;
    e.size_declared = 42;
    e.hold_until = 7;
    if (lmtp_parse_mail(s, n, &pol, &e, &rep) != SY_OK) {
        fuzz_reply_ok(&rep);
        FUZZ_CHECK(e.sender == sender && strcmp(sender, "old@example.org") == 0);
        FUZZ_CHECK(e.envid == envid && strcmp(envid, "OLDID") == 0);
        FUZZ_CHECK(e.ret == ENV_RET_FULL && e.body == ENV_BODY_7BIT);
        FUZZ_CHECK(e.flags == (ENV_F_8BIT | ENV_F_REQUIRETLS));
        FUZZ_CHECK(e.size_declared == 42 && e.hold_until == 7);
    } else {
        bool utf8 = (e.flags & ENV_F_SMTPUTF8) != 0;

        fuzz_addr_ok(e.sender, utf8);
        fuzz_reparse(e.sender, utf8);
        if (e.envid != NULL) {
            size_t len = strlen(e.envid);

            FUZZ_CHECK(len >= 1 && len <= LMTP_ENVID_MAX);
            for (size_t i = 0; i < len; i++)
                FUZZ_CHECK(e.envid[i] >= 0x20 && e.envid[i] <= 0x7e);
        }
        FUZZ_CHECK((e.flags & ENV_F_8BIT) != 0);
        FUZZ_CHECK(pol.requiretls_ok || (e.flags & ENV_F_REQUIRETLS) == 0);
        FUZZ_CHECK(pol.size_limit == 0 || e.size_declared <= pol.size_limit);
        FUZZ_CHECK(e.hold_until == 0 || (e.hold_until >= pol.now &&
                   e.hold_until <= pol.now + (int64_t) pol.futurerelease_max_s));
    }
    env_free(&e);
}

static void fuzz_rcpt(unsigned flags, const char *s, size_t n)
{
    bool utf8 = (flags & 1) != 0;
    struct lmtp_reply rep;
    struct env_rcpt r = { 0 };

    if (lmtp_parse_rcpt(s, n, utf8, &r, &rep) != SY_OK) {
        fuzz_reply_ok(&rep);
        FUZZ_CHECK(r.addr == NULL && r.notify == 0 && r.orcpt_type == NULL && r.orcpt_addr == NULL);
        return;
    }
    FUZZ_CHECK(r.addr != NULL && r.addr[0] != '\0');
    fuzz_addr_ok(r.addr, utf8);
    fuzz_reparse(r.addr, utf8);
    FUZZ_CHECK((r.notify & ENV_NOTIFY_NEVER) == 0 || r.notify == ENV_NOTIFY_NEVER);
    FUZZ_CHECK((r.orcpt_type == NULL) == (r.orcpt_addr == NULL));
    if (r.orcpt_addr != NULL) {
        size_t len = strlen(r.orcpt_addr);

        FUZZ_CHECK(len >= 1 && len <= LMTP_ORCPT_MAX);
        FUZZ_CHECK(text_is_clean(r.orcpt_addr, len) && text_is_utf8(r.orcpt_addr, len));
        for (const char *t = r.orcpt_type; *t != '\0'; t++)
            FUZZ_CHECK(!(*t >= 'A' && *t <= 'Z'));
    }
    env_rcpt_free(&r);
}

static void fuzz_path(unsigned flags, const char *s, size_t n)
{
    bool utf8 = (flags & 1) != 0, null = (flags & 2) != 0;
    struct lmtp_reply rep;
    char *addr = NULL;
    size_t used = 0;

    if (lmtp_parse_path(s, n, utf8, null, &addr, &used, &rep) != SY_OK) {
        fuzz_reply_ok(&rep);
        FUZZ_CHECK(addr == NULL);
        return;
    }
    FUZZ_CHECK(used >= 2 && used <= n && used <= LMTP_PATH_MAX);
    FUZZ_CHECK(s[0] == '<' && s[used - 1] == '>');
    FUZZ_CHECK(addr[0] != '\0' || (null && used == 2));
    /* normalising never lengthens */
    FUZZ_CHECK(strlen(addr) + 2 <= used);
    fuzz_addr_ok(addr, utf8);
    fuzz_reparse(addr, utf8);
    free(addr);
}

static void fuzz_xtext(const char *s, size_t n)
{
    char *dec = NULL, *enc, *dec2 = NULL;
    size_t declen = 0, dec2len = 0;
    bool plain = true;

    if (lmtp_xtext_decode(s, n, &dec, &declen) == SY_OK) {
        FUZZ_CHECK(declen <= n && dec[declen] == '\0');
        FUZZ_CHECK(memchr(dec, '\0', declen) == NULL && memchr(dec, '\r', declen) == NULL &&
                   memchr(dec, '\n', declen) == NULL);
        enc = lmtp_xtext_encode(dec, declen);
        FUZZ_CHECK(lmtp_xtext_decode(enc, strlen(enc), &dec2, &dec2len) == SY_OK);
        FUZZ_CHECK(dec2len == declen && memcmp(dec, dec2, declen) == 0);
        free(enc);
        free(dec2);
        free(dec);
    } else {
        FUZZ_CHECK(dec == NULL);
    }
    /* Any input without NUL/CR/LF survives encode + decode. */
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\0' || s[i] == '\r' || s[i] == '\n')
            plain = false;
    enc = lmtp_xtext_encode(s, n);
    if (plain) {
        FUZZ_CHECK(lmtp_xtext_decode(enc, strlen(enc), &dec2, &dec2len) == SY_OK);
        FUZZ_CHECK(dec2len == n && memcmp(dec2, s, n) == 0);
        free(dec2);
    }
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s;
    size_t n;
    unsigned flags;

    if (size < 1)
        return 0;
    s = (const char *) data + 1;
    n = size - 1;
    flags = data[0] / 5;
    switch (data[0] % 5) {
    case 0:
        fuzz_command(s, n);
        break;
    case 1:
        fuzz_mail(flags, s, n);
        break;
    case 2:
        fuzz_rcpt(flags, s, n);
        break;
    case 3:
        fuzz_path(flags, s, n);
        break;
    default:
        fuzz_xtext(s, n);
        break;
    }
    return 0;
}
