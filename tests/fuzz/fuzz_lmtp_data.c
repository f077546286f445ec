/* fuzz_lmtp_data.c - libFuzzer target for the DATA decoder (lmtp_data.c)
 *
 * Input: one control byte (bit 0: policy; the rest picks a split point
 * and an output buffer size), then the wire bytes after "354". Every
 * input is decoded three ways: whole, split in two at a data-derived
 * point, and one byte at a time through a tiny output buffer that is
 * drained between calls. The three must agree exactly, and the result
 * must match an independent line-based reference:
 *   - the end is the first <CRLF>.<CRLF> (the stream starts after a CRLF);
 *   - reject policy: lines between real CRLFs, leading dot removed;
 *   - normalize policy: the same, with bare CR/LF turned into CRLF and a
 *     leading dot removed after them too;
 *   - no bare CR or LF in the output unless bare_eol was reported.
 * Any disagreement aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/util/buf.h"
#include "lmtp/lmtp_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(c) do { if (!(c)) abort(); } while (0)
#define FUZZ_OUT_MAX ((size_t) 1 << 20)

struct fuzz_run {
    struct buf out;
    size_t consumed;
    bool done, bare, eightbit;
    uint64_t out_bytes;
};

/* fuzz_run - feed in[0..n) in pieces cut at the listed points */
static void fuzz_run(int policy, const char *in, size_t n, size_t split, size_t step, size_t outmax,
                     struct fuzz_run *r)
{
    struct lmtp_data d;
    struct buf out;
    size_t pos = 0;

    lmtp_data_init(&d, policy);
    buf_init(&r->out, FUZZ_OUT_MAX);
    buf_init(&out, outmax);
    while (pos < n && !lmtp_data_done(&d)) {
        size_t want = n - pos, used;

        if (step != 0 && want > step)
            want = step;
        if (pos < split && want > split - pos)
            want = split - pos;
        used = lmtp_data_feed(&d, in + pos, want, &out);
        FUZZ_CHECK(used <= want);
        FUZZ_CHECK(buf_len(&out) <= outmax);
        /* A drained buffer of at least 3 bytes always lets it progress. */
        FUZZ_CHECK(used > 0 || buf_len(&out) > 0 || lmtp_data_done(&d));
        pos += used;
        FUZZ_CHECK(buf_append(&r->out, buf_str(&out), buf_len(&out)) == 0);
        buf_reset(&out);
    }
    if (lmtp_data_done(&d) && pos < n)
        FUZZ_CHECK(lmtp_data_feed(&d, in + pos, n - pos, &out) == 0);
    buf_free(&out);
    r->consumed = pos;
    r->done = lmtp_data_done(&d);
    r->bare = lmtp_data_bare_eol(&d);
    r->eightbit = lmtp_data_eightbit(&d);
    r->out_bytes = d.out_bytes;
}

static void fuzz_same(struct fuzz_run *a, struct fuzz_run *b)
{
    FUZZ_CHECK(buf_len(&a->out) == buf_len(&b->out));
    FUZZ_CHECK(memcmp(buf_str(&a->out), buf_str(&b->out), buf_len(&a->out)) == 0);
    FUZZ_CHECK(a->consumed == b->consumed);
    FUZZ_CHECK(a->done == b->done);
    FUZZ_CHECK(a->bare == b->bare);
    FUZZ_CHECK(a->eightbit == b->eightbit);
    FUZZ_CHECK(a->out_bytes == b->out_bytes);
}

/* fuzz_reference_end - index just after the first terminator, or 0 */
static size_t fuzz_reference_end(const char *in, size_t n)
{
    if (n >= 3 && memcmp(in, ".\r\n", 3) == 0)
        return 3;
    for (size_t i = 0; i + 5 <= n; i++)
        if (memcmp(in + i, "\r\n.\r\n", 5) == 0)
            return i + 5;
    return 0;
}

/* fuzz_reference_line - one line (no CRLF inside) as the decoder must emit it */
static void fuzz_reference_line(int policy, const char *p, size_t n, struct buf *ref)
{
    size_t i = 0;

    for (;;) {
        size_t e = i;

        if (e < n && p[e] == '.')
            i = ++e;
        if (policy == LMTP_DATA_NORMALIZE_BARE)
            while (e < n && p[e] != '\r' && p[e] != '\n')
                e++;
        else
            e = n;
        FUZZ_CHECK(buf_append(ref, p + i, e - i) == 0);
        FUZZ_CHECK(buf_append(ref, "\r\n", 2) == 0);
        if (e >= n)
            return;
        i = e + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_run whole, split, bytes;
    const char *in;
    size_t n, cut, end;
    int policy;
    bool has8 = false, bare_seen = false;

    if (size < 1)
        return 0;
    policy = (data[0] & 1) ? LMTP_DATA_NORMALIZE_BARE : LMTP_DATA_REJECT_BARE;
    in = (const char *) data + 1;
    n = size - 1;
    cut = n == 0 ? 0 : (size_t) (data[0] >> 1) * 7919 % (n + 1);

    fuzz_run(policy, in, n, 0, 0, FUZZ_OUT_MAX, &whole);
    fuzz_run(policy, in, n, cut, 0, FUZZ_OUT_MAX, &split);
    fuzz_run(policy, in, n, 0, 1, 3 + (size_t) (data[0] >> 5), &bytes);
    fuzz_same(&whole, &split);
    fuzz_same(&whole, &bytes);

    /* The end is exactly the first CRLF.CRLF; nothing else ends DATA. */
    end = fuzz_reference_end(in, n);
    FUZZ_CHECK(whole.done == (end != 0));
    FUZZ_CHECK(whole.consumed == (end != 0 ? end : n));
    FUZZ_CHECK(whole.out_bytes == buf_len(&whole.out));
    for (size_t i = 0; i < buf_len(&whole.out); i++) {
        unsigned char c = (unsigned char) buf_str(&whole.out)[i];
        const char *o = buf_str(&whole.out);

        if (c >= 0x80)
            has8 = true;
        if ((c == '\r' && (i + 1 >= buf_len(&whole.out) || o[i + 1] != '\n')) ||
            (c == '\n' && (i == 0 || o[i - 1] != '\r')))
            bare_seen = true;
    }
    FUZZ_CHECK(has8 == whole.eightbit);
    if (policy == LMTP_DATA_NORMALIZE_BARE)
        FUZZ_CHECK(!whole.bare && !bare_seen);
    if (end != 0 && !whole.bare)
        FUZZ_CHECK(!bare_seen);

    /* Line-based reference for a complete message. */
    if (end != 0) {
        struct buf ref;
        size_t pos = 0, stop = end - 3;

        buf_init(&ref, FUZZ_OUT_MAX);
        while (pos < stop) {
            size_t e = pos;

            while (!(in[e] == '\r' && in[e + 1] == '\n'))
                e++;
            fuzz_reference_line(policy, in + pos, e - pos, &ref);
            pos = e + 2;
        }
        FUZZ_CHECK(buf_len(&ref) == buf_len(&whole.out));
        FUZZ_CHECK(memcmp(buf_str(&ref), buf_str(&whole.out), buf_len(&ref)) == 0);
        buf_free(&ref);
    }
    buf_free(&whole.out);
    buf_free(&split.out);
    buf_free(&bytes.out);
    return 0;
}
