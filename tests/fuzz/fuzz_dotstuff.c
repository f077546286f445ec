/* fuzz_dotstuff.c - libFuzzer target for gateway/smtp/dotstuff.c
 *
 * The first byte picks a chunk size for the input (low nibble: 1-15, or
 * 0 for one byte at a time) and the second the size of the output buffer
 * (SMTP_DOTSTUFF_EMIT_MAX + 0..31); the rest is the message. Checked
 * invariants, any violation aborts:
 *   - the wire bytes are the same whole and split (any chunking, any
 *     output buffer size), and so are the flags and counters;
 *   - they equal an independent reference: line endings made CRLF, a
 *     CRLF added to an unterminated last line, every line starting with
 *     "." given one more, then ".\r\n";
 *   - no bare CR or LF, no line "." before the terminator, and the
 *     terminator at the end;
 *   - the LMTP DATA decoder (lmtp/lmtp_data.c, both policies) reads the
 *     wire back to the canonical message, ends exactly at the terminator
 *     and sees no bare line ending;
 *   - eightbit, bare_eol, out_bytes and line_max match the input.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/smtp/dotstuff.h"
#include "gateway/util/buf.h"
#include "gateway/util/err.h"
#include "lmtp/lmtp_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(c) do { if (!(c)) abort(); } while (0)

/* fuzz_encode - in[0..n) in chunks of step (0: whole), through an output
 * buffer of max bytes, into all */
static void fuzz_encode(const char *in, size_t n, size_t step, size_t max, struct buf *all,
                        struct smtp_dotstuff *d)
{
    struct buf out;
    size_t pos = 0;

    buf_init(&out, max);
    smtp_dotstuff_init(d);
    while (pos < n) {
        size_t want = step == 0 || step > n - pos ? n - pos : step, off = 0;

        while (off < want) {
            size_t used = smtp_dotstuff_feed(d, in + pos + off, want - off, &out);

            FUZZ_CHECK(used <= want - off);
            FUZZ_CHECK(used > 0 || buf_len(&out) > 0);
            off += used;
            FUZZ_CHECK(buf_append(all, out.data, buf_len(&out)) == SY_OK);
            buf_reset(&out);
        }
        pos += want;
    }
    while (smtp_dotstuff_finish(d, &out) != SY_OK) {
        FUZZ_CHECK(buf_len(&out) > 0 || max < SMTP_DOTSTUFF_FINISH_MAX);
        FUZZ_CHECK(buf_append(all, out.data, buf_len(&out)) == SY_OK);
        buf_reset(&out);
        if (max < SMTP_DOTSTUFF_FINISH_MAX) {
            buf_free(&out);
            buf_init(&out, SMTP_DOTSTUFF_FINISH_MAX);
        }
    }
    FUZZ_CHECK(buf_append(all, out.data, buf_len(&out)) == SY_OK);
    FUZZ_CHECK(smtp_dotstuff_finished(d));
    FUZZ_CHECK(smtp_dotstuff_feed(d, "x", 1, &out) == 0);
    buf_free(&out);
}

/* fuzz_canon - the message with CRLF line endings and a final CRLF;
 * sets *bare when a line ending had to be fixed */
static void fuzz_canon(const char *in, size_t n, struct buf *c, bool *bare)
{
    *bare = false;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\r' || in[i] == '\n') {
            if (in[i] == '\r' && i + 1 < n && in[i + 1] == '\n')
                i++;
            else
                *bare = true;
            FUZZ_CHECK(buf_append(c, "\r\n", 2) == SY_OK);
        } else {
            FUZZ_CHECK(buf_append_byte(c, (unsigned char) in[i]) == SY_OK);
        }
    }
    if (c->len > 0 && !(c->len >= 2 && c->data[c->len - 2] == '\r' && c->data[c->len - 1] == '\n'))
        FUZZ_CHECK(buf_append(c, "\r\n", 2) == SY_OK);
}

/* fuzz_reference - stuff the canonical message; *line_max its longest line */
static void fuzz_reference(const struct buf *c, struct buf *w, uint64_t *line_max)
{
    size_t bol = 0;

    *line_max = 0;
    for (size_t i = 0; i < c->len; i++) {
        if (i == bol && c->data[i] == '.')
            FUZZ_CHECK(buf_append_byte(w, '.') == SY_OK);
        FUZZ_CHECK(buf_append_byte(w, (unsigned char) c->data[i]) == SY_OK);
        if (c->data[i] == '\n') {
            size_t len = i - 1 - bol + (c->data[bol] == '.' ? 1 : 0);

            if (len > *line_max)
                *line_max = len;
            bol = i + 1;
        }
    }
    FUZZ_CHECK(buf_append(w, ".\r\n", 3) == SY_OK);
}

/* fuzz_wire_ok - CR and LF only as CRLF; "." alone only as the last line */
static void fuzz_wire_ok(const struct buf *w)
{
    const char *s = w->data;
    size_t n = w->len, bol = 0;

    FUZZ_CHECK(n >= 3 && memcmp(s + n - 3, ".\r\n", 3) == 0);
    FUZZ_CHECK(n == 3 || (s[n - 5] == '\r' && s[n - 4] == '\n'));
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r')
            FUZZ_CHECK(i + 1 < n && s[i + 1] == '\n');
        if (s[i] == '\n') {
            FUZZ_CHECK(i > 0 && s[i - 1] == '\r');
            if (i - 1 - bol == 1 && s[bol] == '.')
                FUZZ_CHECK(i == n - 1);
            bol = i + 1;
        }
    }
}

/* fuzz_decode - the LMTP decoder must read w back to c */
static void fuzz_decode(const struct buf *w, const struct buf *c, int policy)
{
    struct lmtp_data dec;
    struct buf out;
    size_t used;

    lmtp_data_init(&dec, policy);
    buf_init(&out, w->len + 16);
    used = lmtp_data_feed(&dec, w->data, w->len, &out);
    FUZZ_CHECK(used == w->len);
    FUZZ_CHECK(lmtp_data_done(&dec));
    FUZZ_CHECK(!lmtp_data_bare_eol(&dec));
    FUZZ_CHECK(out.len == c->len && (c->len == 0 || memcmp(out.data, c->data, c->len) == 0));
    buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf whole, split, canon, ref;
    struct smtp_dotstuff dw, ds;
    const char *in;
    size_t n, step, max;
    bool bare, eightbit = false;
    uint64_t line_max;

    if (size < 2)
        return 0;
    step = data[0] & 0x0f;
    step = step == 0 ? 1 : step;
    max = SMTP_DOTSTUFF_EMIT_MAX + (data[1] & 0x1f);
    in = (const char *) data + 2;
    n = size - 2;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char) in[i] >= 0x80)
            eightbit = true;

    buf_init(&whole, 4 * n + 16);
    buf_init(&split, 4 * n + 16);
    buf_init(&canon, 2 * n + 16);
    buf_init(&ref, 4 * n + 16);
    fuzz_encode(in, n, 0, 4 * n + 16, &whole, &dw);
    fuzz_encode(in, n, (data[0] & 0x10) ? 0 : step, max, &split, &ds);

    /* whole and split agree */
    FUZZ_CHECK(whole.len == split.len && memcmp(whole.data, split.data, whole.len) == 0);
    FUZZ_CHECK(smtp_dotstuff_eightbit(&dw) == smtp_dotstuff_eightbit(&ds));
    FUZZ_CHECK(smtp_dotstuff_bare_eol(&dw) == smtp_dotstuff_bare_eol(&ds));
    FUZZ_CHECK(smtp_dotstuff_out_bytes(&dw) == smtp_dotstuff_out_bytes(&ds));
    FUZZ_CHECK(smtp_dotstuff_line_max(&dw) == smtp_dotstuff_line_max(&ds));

    /* the reference encoder */
    fuzz_canon(in, n, &canon, &bare);
    fuzz_reference(&canon, &ref, &line_max);
    FUZZ_CHECK(ref.len == whole.len && memcmp(ref.data, whole.data, ref.len) == 0);
    fuzz_wire_ok(&whole);
    FUZZ_CHECK(smtp_dotstuff_eightbit(&dw) == eightbit);
    FUZZ_CHECK(smtp_dotstuff_bare_eol(&dw) == bare);
    FUZZ_CHECK(smtp_dotstuff_out_bytes(&dw) == whole.len);
    FUZZ_CHECK(smtp_dotstuff_line_max(&dw) == line_max);

    /* and back through the LMTP decoder */
    fuzz_decode(&whole, &canon, LMTP_DATA_REJECT_BARE);
    fuzz_decode(&whole, &canon, LMTP_DATA_NORMALIZE_BARE);

    buf_free(&whole);
    buf_free(&split);
    buf_free(&canon);
    buf_free(&ref);
    return 0;
}
