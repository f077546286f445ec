/* test_spool.c - spool files: envelope codec, durability paths, corruption
 *
 * Every test works in its own mkdtemp() directory under /tmp and removes
 * it. Failures that need a real full disk use a tiny tmpfs, mounted only
 * when running as root and when mount(2) is allowed; otherwise those
 * tests are reported as skipped, never faked.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/envelope.h"
#include "gateway/qid.h"
#include "gateway/spool.h"
#include "gateway/util/err.h"

#define T_PATH_MAX ((size_t) 512)
#define T_BIG_MSG ((size_t) 5 * 1024 * 1024)
#define T_HDR_LEN ((size_t) 19)
#define T_TRAILER_LEN ((size_t) 52)

/* ---- fixtures ---- */

struct t_dir {
    char root[T_PATH_MAX];      /* mkdtemp dir */
    char spool[T_PATH_MAX];     /* root/spool */
};

static void t_dir_make(struct t_dir *d)
{
    memcpy(d->root, "/tmp/sy-spool-XXXXXX", sizeof("/tmp/sy-spool-XXXXXX"));
    assert_non_null(mkdtemp(d->root));
    assert_true((size_t) snprintf(d->spool, sizeof(d->spool), "%s/spool", d->root) < sizeof(d->spool));
}

/* t_rm_rf - remove a directory tree (at most a few levels deep here) */
static void t_rm_rf(const char *path) /* NOLINT(misc-no-recursion) */
{
    DIR *dir = opendir(path);
    struct dirent *de;

    if (dir == NULL) {
        (void) unlink(path);
        return;
    }
    while ((de = readdir(dir)) != NULL) {
        char sub[T_PATH_MAX];
        struct stat st;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if ((size_t) snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) >= sizeof(sub))
            continue;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            t_rm_rf(sub);
        else
            (void) unlink(sub);
    }
    (void) closedir(dir);
    (void) rmdir(path);
}

static void t_path(char *dst, const struct t_dir *d, const char *sub, const char *name)
{
    int n = snprintf(dst, T_PATH_MAX, "%s/%s/%s", d->spool, sub, name);

    assert_true(n > 0 && (size_t) n < T_PATH_MAX);
}

/* t_count - entries in spool/sub (without . and ..) */
static size_t t_count(const struct t_dir *d, const char *sub)
{
    char path[T_PATH_MAX];
    DIR *dir;
    struct dirent *de;
    size_t n = 0;

    assert_true((size_t) snprintf(path, sizeof(path), "%s/%s", d->spool, sub) < sizeof(path));
    dir = opendir(path);
    assert_non_null(dir);
    while ((de = readdir(dir)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    (void) closedir(dir);
    return n;
}

static void t_write_file(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, n), (ssize_t) n);
    assert_int_equal(close(fd), 0);
}

/* t_read_file - whole file into a new buffer */
static unsigned char *t_read_file(const char *path, size_t *lenp)
{
    struct stat st;
    unsigned char *p;
    int fd = open(path, O_RDONLY);

    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    p = malloc((size_t) st.st_size + 1);
    assert_non_null(p);
    assert_int_equal(pread(fd, p, (size_t) st.st_size, 0), st.st_size);
    (void) close(fd);
    *lenp = (size_t) st.st_size;
    return p;
}

static char *t_strdup(const char *s)
{
    return s == NULL ? NULL : strdup(s);
}

static void t_add_rcpt(struct envelope *e, const char *addr, unsigned notify, const char *type,
                       const char *orcpt)
{
    struct env_rcpt r = { 0 };

    r.addr = t_strdup(addr);
    r.notify = notify;
    r.orcpt_type = t_strdup(type);
    r.orcpt_addr = t_strdup(orcpt);
    env_add_rcpt(e, &r);
}

static void t_env_full(struct envelope *e)
{
    e->sender = t_strdup("alice@example.org");
    e->ret = ENV_RET_HDRS;
    e->envid = t_strdup("QQ314159");
    e->body = ENV_BODY_8BITMIME;
    e->flags = ENV_F_SMTPUTF8 | ENV_F_REQUIRETLS | ENV_F_8BIT;
    e->size_declared = 12345;
    e->hold_until = 1900000000;
    e->arrival_us = INT64_C(1763782949123456);
    e->listener = t_strdup("lmtp-main");
    e->client_name = t_strdup("mta.example.org");
    e->client_addr = t_strdup("192.0.2.7");
    e->mta_qid = t_strdup("4F3A9C21D0");
    e->auth_user = t_strdup("alice");
    e->message_id = t_strdup("<20261122.1@example.org>");
    t_add_rcpt(e, "bob@example.net", ENV_NOTIFY_SUCCESS | ENV_NOTIFY_FAILURE, "rfc822",
               "bob@example.net");
    t_add_rcpt(e, "carol@example.com", ENV_NOTIFY_NEVER, NULL, NULL);
    t_add_rcpt(e, "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a",
               ENV_NOTIFY_DELAY, "utf-8", "\xe7\x94\xa8\xe6\x88\xb7@example");
}

static void t_env_minimal(struct envelope *e)
{
    e->sender = t_strdup("");
    t_add_rcpt(e, "b@example.net", 0, NULL, NULL);
}

static void t_env_empty_strings(struct envelope *e)
{
    e->sender = t_strdup("");
    e->envid = t_strdup("");
    e->listener = t_strdup("");
    e->client_name = t_strdup("");
    e->client_addr = t_strdup("");
    e->mta_qid = t_strdup("");
    e->auth_user = t_strdup("");
    e->message_id = t_strdup("");
    t_add_rcpt(e, "x", 0, "", "");
}

static void t_env_extremes(struct envelope *e)
{
    e->sender = t_strdup("s@example.org");
    e->ret = ENV_RET_FULL;
    e->body = ENV_BODY_7BIT;
    e->size_declared = UINT64_MAX;
    e->hold_until = INT64_MAX;
    e->arrival_us = INT64_MAX;
    t_add_rcpt(e, "r@example.org", ENV_NOTIFY_SUCCESS | ENV_NOTIFY_FAILURE | ENV_NOTIFY_DELAY,
               "rfc822", "r@example.org");
}

static void t_env_many(struct envelope *e)
{
    e->sender = t_strdup("bulk@example.org");
    e->arrival_us = 1;
    for (int i = 0; i < 1000; i++) {
        char a[64];

        (void) snprintf(a, sizeof(a), "user%04d@example.net", i);
        t_add_rcpt(e, a, (unsigned) (i % 8), i % 3 == 0 ? "rfc822" : NULL, i % 3 == 0 ? a : NULL);
    }
}

static const struct {
    const char *name;
    void (*build)(struct envelope *e);
} t_envs[] = {
    { "full", t_env_full },
    { "minimal", t_env_minimal },
    { "empty strings", t_env_empty_strings },
    { "extremes", t_env_extremes },
    { "1000 recipients", t_env_many },
};

static void t_str_equal(const char *what, const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        if (a != b)
            fail_msg("%s: one side NULL (%s / %s)", what, a != NULL ? a : "NULL", b != NULL ? b : "NULL");
        return;
    }
    if (strcmp(a, b) != 0)
        fail_msg("%s: \"%s\" != \"%s\"", what, a, b);
}

static void t_env_equal(const struct envelope *a, const struct envelope *b)
{
    t_str_equal("sender", a->sender, b->sender);
    assert_int_equal(a->ret, b->ret);
    t_str_equal("envid", a->envid, b->envid);
    assert_int_equal(a->body, b->body);
    assert_int_equal(a->flags, b->flags);
    assert_true(a->size_declared == b->size_declared);
    assert_true(a->hold_until == b->hold_until);
    assert_true(a->arrival_us == b->arrival_us);
    t_str_equal("listener", a->listener, b->listener);
    t_str_equal("client_name", a->client_name, b->client_name);
    t_str_equal("client_addr", a->client_addr, b->client_addr);
    t_str_equal("mta_qid", a->mta_qid, b->mta_qid);
    t_str_equal("auth_user", a->auth_user, b->auth_user);
    t_str_equal("message_id", a->message_id, b->message_id);
    assert_int_equal(a->nrcpt, b->nrcpt);
    for (size_t i = 0; i < a->nrcpt; i++) {
        t_str_equal("rcpt addr", a->rcpts[i].addr, b->rcpts[i].addr);
        assert_int_equal(a->rcpts[i].notify, b->rcpts[i].notify);
        t_str_equal("orcpt type", a->rcpts[i].orcpt_type, b->rcpts[i].orcpt_type);
        t_str_equal("orcpt addr", a->rcpts[i].orcpt_addr, b->rcpts[i].orcpt_addr);
    }
}

/* t_env_is_empty - "on error env is left empty": as after env_init() */
static int t_env_is_empty(const struct envelope *e)
{
    return e->sender == NULL && e->ret == 0 && e->envid == NULL && e->body == 0 &&
           e->flags == 0 && e->size_declared == 0 && e->hold_until == 0 && e->arrival_us == 0 &&
           e->listener == NULL && e->client_name == NULL && e->client_addr == NULL &&
           e->mta_qid == NULL && e->auth_user == NULL && e->message_id == NULL &&
           e->rcpts == NULL && e->nrcpt == 0 && e->rcpt_cap == 0;
}

/* ---- the envelope codec ---- */

/* Every table envelope survives encode -> decode, and encoding is stable. */
static void test_env_round_trip(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(t_envs) / sizeof(t_envs[0]); i++) {
        struct envelope in, out;
        struct sy_err err;
        char *enc, *enc2;
        size_t n, n2;

        print_message("case %s\n", t_envs[i].name);
        env_init(&in);
        env_init(&out);
        t_envs[i].build(&in);
        enc = spool_env_encode(&in, &n);
        assert_non_null(enc);
        assert_int_equal(spool_env_decode(enc, n, &out, &err), SY_OK);
        t_env_equal(&in, &out);
        enc2 = spool_env_encode(&out, &n2);
        assert_int_equal(n, n2);
        assert_memory_equal(enc, enc2, n);
        free(enc);
        free(enc2);
        env_free(&in);
        env_free(&out);
    }
}

/* The exact bytes of the minimal envelope: pins the format that
 * docs/spool-format.md documents. */
#define R_V "V\0\0\0\4\0\0\0\1"
#define R_S "S\0\0\0\0"
#define R_R "R\0\0\0\1\0"
#define R_B "B\0\0\0\1\0"
#define R_F "F\0\0\0\4\0\0\0\0"
#define R_Z "Z\0\0\0\10\0\0\0\0\0\0\0\0"
#define R_H "H\0\0\0\10\0\0\0\0\0\0\0\0"
#define R_A "A\0\0\0\10\0\0\0\0\0\0\0\0"
#define R_P "P\0\0\0\33" "a\0\0\0\15" "b@example.net" "n\0\0\0\4\0\0\0\0"
#define R_X "X\0\0\0\0"
#define R_HEAD R_V R_S R_R R_B R_F R_Z R_H R_A

static void test_env_golden_bytes(void **state)
{
    static const char want[] = R_HEAD R_P R_X;
    struct envelope e;
    char *enc;
    size_t n;

    (void) state;
    env_init(&e);
    t_env_minimal(&e);
    enc = spool_env_encode(&e, &n);
    assert_int_equal(n, sizeof(want) - 1);
    assert_memory_equal(enc, want, n);
    free(enc);
    env_free(&e);
}

#define T_BYTES(s) s, sizeof(s) - 1

static const struct {
    const char *name;
    const char *p;
    size_t n;
    int rc;
    const char *text;   /* expected substring of err.text */
} t_decode_cases[] = {
    { "valid minimal", T_BYTES(R_HEAD R_P R_X), SY_OK, NULL },
    { "valid, records reordered", T_BYTES(R_V R_P R_A R_H R_Z R_F R_B R_R R_S R_X), SY_OK, NULL },
    { "empty input", T_BYTES(""), SY_ESYNTAX, "no end record" },
    { "no end record", T_BYTES(R_HEAD R_P), SY_ESYNTAX, "no end record" },
    { "bytes after end", T_BYTES(R_HEAD R_P R_X "\0"), SY_ESYNTAX, "after the end" },
    { "end with length", T_BYTES(R_HEAD R_P "X\0\0\0\1\0"), SY_ESYNTAX, "end record has length" },
    { "version not first", T_BYTES(R_S R_V R_R R_B R_F R_Z R_H R_A R_P R_X), SY_ESYNTAX, "version" },
    { "version 2", T_BYTES("V\0\0\0\4\0\0\0\2" R_S R_R R_B R_F R_Z R_H R_A R_P R_X), SY_ESYNTAX, "unsupported version" },
    { "repeated version", T_BYTES(R_HEAD R_V R_P R_X), SY_ESYNTAX, "repeated" },
    { "repeated sender", T_BYTES(R_HEAD R_S R_P R_X), SY_ESYNTAX, "repeated sender" },
    { "unknown record", T_BYTES(R_HEAD "?\0\0\0\0" R_P R_X), SY_ESYNTAX, "unknown record 0x3f" },
    { "no sender", T_BYTES(R_V R_R R_B R_F R_Z R_H R_A R_P R_X), SY_ESYNTAX, "no sender" },
    { "no arrival", T_BYTES(R_V R_S R_R R_B R_F R_Z R_H R_P R_X), SY_ESYNTAX, "no arrival" },
    { "no recipient", T_BYTES(R_HEAD R_X), SY_ESYNTAX, "no recipient" },
    { "ret 3", T_BYTES(R_V R_S "R\0\0\0\1\3" R_B R_F R_Z R_H R_A R_P R_X), SY_ESYNTAX, "ret value 3" },
    { "body 3", T_BYTES(R_V R_S R_R "B\0\0\0\1\3" R_F R_Z R_H R_A R_P R_X), SY_ESYNTAX, "body value 3" },
    { "unknown flag", T_BYTES(R_V R_S R_R R_B "F\0\0\0\4\0\0\0\10" R_Z R_H R_A R_P R_X), SY_ESYNTAX, "flags" },
    { "ret wide", T_BYTES(R_V R_S "R\0\0\0\4\0\0\0\0" R_B R_F R_Z R_H R_A R_P R_X), SY_ESYNTAX, "ret record has length 4" },
    { "size short", T_BYTES(R_V R_S R_R R_B R_F "Z\0\0\0\4\0\0\0\0" R_H R_A R_P R_X), SY_ESYNTAX, "length 4" },
    { "negative hold", T_BYTES(R_V R_S R_R R_B R_F R_Z "H\0\0\0\10\200\0\0\0\0\0\0\0" R_A R_P R_X), SY_ESYNTAX, "hold_until" },
    { "negative arrival", T_BYTES(R_V R_S R_R R_B R_F R_Z R_H "A\0\0\0\10\377\377\377\377\377\377\377\377" R_P R_X), SY_ESYNTAX, "arrival" },
    { "length past end", T_BYTES(R_HEAD "E\0\0\1\0abc"), SY_ESYNTAX, "runs past its end" },
    { "length 4 GiB", T_BYTES(R_HEAD "E\377\377\377\377"), SY_ESYNTAX, "runs past its end" },
    { "truncated header", T_BYTES(R_HEAD R_P "X\0\0"), SY_ESYNTAX, "truncated record" },
    { "CR in string", T_BYTES(R_HEAD "E\0\0\0\3a\rb" R_P R_X), SY_ESYNTAX, "envid holds NUL, CR or LF" },
    { "LF in string", T_BYTES(R_HEAD "M\0\0\0\3a\nb" R_P R_X), SY_ESYNTAX, "message_id holds" },
    { "NUL in string", T_BYTES(R_HEAD "L\0\0\0\3a\0b" R_P R_X), SY_ESYNTAX, "listener holds" },
    { "empty address", T_BYTES(R_HEAD "P\0\0\0\16" "a\0\0\0\0" "n\0\0\0\4\0\0\0\0" R_X), SY_ESYNTAX, "empty address" },
    { "rcpt without notify", T_BYTES(R_HEAD "P\0\0\0\22" "a\0\0\0\15" "b@example.net" R_X), SY_ESYNTAX, "recipient 1: no notify" },
    { "rcpt without address", T_BYTES(R_HEAD "P\0\0\0\11" "n\0\0\0\4\0\0\0\0" R_X), SY_ESYNTAX, "no address" },
    { "rcpt bad notify", T_BYTES(R_HEAD "P\0\0\0\33" "a\0\0\0\15" "b@example.net" "n\0\0\0\4\0\0\0\20" R_X), SY_ESYNTAX, "notify bits" },
    { "rcpt record overruns", T_BYTES(R_HEAD "P\0\0\0\10" "a\0\0\0\15" "b@e" R_X), SY_ESYNTAX, "recipient 1: record 0x61" },
    { "rcpt unknown sub", T_BYTES(R_HEAD "P\0\0\0\5" "z\0\0\0\0" R_X), SY_ESYNTAX, "unknown record 0x7a" },
    { "rcpt repeated addr", T_BYTES(R_HEAD "P\0\0\0\55" "a\0\0\0\15" "b@example.net" "a\0\0\0\15" "b@example.net" "n\0\0\0\4\0\0\0\0" R_X), SY_ESYNTAX, "repeated address" },
    { "second rcpt bad", T_BYTES(R_HEAD R_P "P\0\0\0\5" "z\0\0\0\0" R_X), SY_ESYNTAX, "recipient 2" },
    { "CR in address", T_BYTES(R_HEAD "P\0\0\0\33" "a\0\0\0\15" "b@exa\rple.net" "n\0\0\0\4\0\0\0\0" R_X), SY_ESYNTAX, "address holds" },
    { "nested end", T_BYTES(R_HEAD "P\0\0\0\5" "X\0\0\0\0" R_X), SY_ESYNTAX, "unknown record 0x58" },
};

static void test_env_decode_table(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(t_decode_cases) / sizeof(t_decode_cases[0]); i++) {
        struct envelope e;
        struct sy_err err;
        int rc;

        print_message("case %s\n", t_decode_cases[i].name);
        env_init(&e);
        sy_err_clear(&err);
        rc = spool_env_decode(t_decode_cases[i].p, t_decode_cases[i].n, &e, &err);
        assert_int_equal(rc, t_decode_cases[i].rc);
        if (rc == SY_OK) {
            assert_string_equal(e.sender, "");
            assert_int_equal(e.nrcpt, 1);
            assert_string_equal(e.rcpts[0].addr, "b@example.net");
        } else {
            assert_int_equal(err.code, rc);
            assert_string_equal(err.enh, "4.3.0");
            if (strstr(err.text, t_decode_cases[i].text) == NULL)
                fail_msg("error \"%s\" lacks \"%s\"", err.text, t_decode_cases[i].text);
            assert_true(t_env_is_empty(&e));
        }
        env_free(&e);
    }
}

/* A hostile recipient count stops at the bound; the bound itself passes. */
static void test_env_decode_rcpt_limit(void **state)
{
    static const char head[] = R_HEAD, rec[] = R_P, end[] = R_X;
    const size_t counts[] = { 100000, 100001 };

    (void) state;
    for (size_t c = 0; c < 2; c++) {
        size_t n = sizeof(head) - 1 + counts[c] * (sizeof(rec) - 1) + sizeof(end) - 1, o = 0;
        char *p = malloc(n);
        struct envelope e;
        struct sy_err err;

        print_message("case %zu recipients\n", counts[c]);
        assert_non_null(p);
        memcpy(p, head, sizeof(head) - 1);
        o = sizeof(head) - 1;
        for (size_t i = 0; i < counts[c]; i++, o += sizeof(rec) - 1)
            memcpy(p + o, rec, sizeof(rec) - 1);
        memcpy(p + o, end, sizeof(end) - 1);
        env_init(&e);
        if (c == 0) {
            assert_int_equal(spool_env_decode(p, n, &e, &err), SY_OK);
            assert_int_equal(e.nrcpt, counts[c]);
        } else {
            assert_int_equal(spool_env_decode(p, n, &e, &err), SY_ESYNTAX);
            assert_non_null(strstr(err.text, "more than 100000 recipients"));
            assert_true(t_env_is_empty(&e));
        }
        env_free(&e);
        free(p);
    }
}

/* A string may be 64 KiB long, not one byte more. */
static void test_env_decode_field_limit(void **state)
{
    static const char head[] = R_HEAD, tail[] = R_P R_X;
    const size_t lens[] = { 65536, 65537 };

    (void) state;
    for (size_t c = 0; c < 2; c++) {
        size_t n = sizeof(head) - 1 + 5 + lens[c] + sizeof(tail) - 1, o = sizeof(head) - 1;
        char *p = malloc(n);
        struct envelope e;
        struct sy_err err;

        print_message("case envid of %zu bytes\n", lens[c]);
        assert_non_null(p);
        memcpy(p, head, o);
        p[o] = 'E';
        for (int b = 0; b < 4; b++)
            p[o + 1 + (size_t) b] = (char) (lens[c] >> (24 - 8 * b));
        memset(p + o + 5, 'e', lens[c]);
        memcpy(p + o + 5 + lens[c], tail, sizeof(tail) - 1);
        env_init(&e);
        if (c == 0) {
            assert_int_equal(spool_env_decode(p, n, &e, &err), SY_OK);
            assert_int_equal(strlen(e.envid), lens[c]);
        } else {
            assert_int_equal(spool_env_decode(p, n, &e, &err), SY_ESYNTAX);
            assert_non_null(strstr(err.text, "envid record has length 65537"));
            assert_true(t_env_is_empty(&e));
        }
        env_free(&e);
        free(p);
    }
}

/* Every truncation fails cleanly; every single-byte change either fails
 * cleanly or yields an envelope that itself round-trips. */
static void test_env_decode_mutations(void **state)
{
    static const unsigned char masks[] = { 0x01, 0x20, 0x80, 0xff };

    (void) state;
    for (size_t c = 0; c < 2; c++) {
        struct envelope in;
        char *enc;
        size_t n;

        env_init(&in);
        t_envs[c].build(&in);
        enc = spool_env_encode(&in, &n);
        print_message("case %s: %zu bytes\n", t_envs[c].name, n);
        for (size_t len = 0; len < n; len++) {
            struct envelope e;
            struct sy_err err;

            env_init(&e);
            if (spool_env_decode(enc, len, &e, &err) != SY_ESYNTAX)
                fail_msg("truncation to %zu bytes accepted", len);
            assert_true(t_env_is_empty(&e));
        }
        for (size_t i = 0; i < n; i++)
            for (size_t m = 0; m < sizeof(masks); m++) {
                struct envelope e, e2;
                struct sy_err err;
                char *again;
                size_t n2;

                enc[i] = (char) (enc[i] ^ masks[m]);
                env_init(&e);
                if (spool_env_decode(enc, n, &e, &err) != SY_OK) {
                    assert_int_equal(err.code, SY_ESYNTAX);
                    assert_true(t_env_is_empty(&e));
                } else {
                    again = spool_env_encode(&e, &n2);
                    env_init(&e2);
                    assert_int_equal(spool_env_decode(again, n2, &e2, &err), SY_OK);
                    t_env_equal(&e, &e2);
                    env_free(&e2);
                    free(again);
                }
                env_free(&e);
                enc[i] = (char) (enc[i] ^ masks[m]);
            }
        free(enc);
        env_free(&in);
    }
}

static void test_crc32c(void **state)
{
    static const char check[] = "123456789";
    char big[1000];

    (void) state;
    /* The CRC-32C check value (RFC 3720 B.4; Castagnoli). */
    assert_int_equal(spool_crc32c(0, check, 9), 0xE3069283u);
    assert_int_equal(spool_crc32c(0, "", 0), 0);
    /* 32 zero bytes: RFC 3720 B.4 test vector. */
    memset(big, 0, 32);
    assert_int_equal(spool_crc32c(0, big, 32), 0x8A9136AAu);
    memset(big, 0xff, 32);
    assert_int_equal(spool_crc32c(0, big, 32), 0x62A8AB43u);
    /* Chaining over every split point equals one pass. */
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char) (i * 31 + 7);
    for (size_t cut = 0; cut <= 64; cut++)
        assert_int_equal(spool_crc32c(spool_crc32c(0, big, cut), big + cut, sizeof(big) - cut),
                         spool_crc32c(0, big, sizeof(big)));
}

/* ---- spool files ---- */

struct t_spool {
    struct t_dir d;
    struct spool *sp;
};

static int t_setup(void **state)
{
    struct t_spool *t = calloc(1, sizeof(*t));
    struct sy_err err;

    if (t == NULL)
        return -1;
    t_dir_make(&t->d);
    t->sp = spool_open(t->d.spool, &err);
    if (t->sp == NULL) {
        fprintf(stderr, "spool_open: %s\n", err.text);
        return -1;
    }
    *state = t;
    return 0;
}

static int t_teardown(void **state)
{
    struct t_spool *t = *state;

    spool_close(t->sp);
    t_rm_rf(t->d.root);
    free(t);
    return 0;
}

/* t_commit - write msg with env under a new id; SY_OK expected */
static void t_commit(struct spool *sp, char qid[QID_SIZE], const void *msg, size_t n,
                     const struct envelope *env)
{
    struct spool_writer *w;
    struct sy_err err;

    qid_new(qid);
    w = spool_begin(sp, qid, &err);
    assert_non_null(w);
    assert_int_equal(spool_write(w, msg, n, &err), SY_OK);
    if (spool_commit(w, env, &err) != SY_OK)
        fail_msg("commit: %s", err.text);
}

static const struct {
    const char *name;
    size_t size;
} t_msgs[] = {
    { "empty message", 0 },
    { "one byte", 1 },
    { "a little less than the buffer", 65536 - 19 - 1 },
    { "exactly fills the buffer", 65536 - 19 },
    { "one more than the buffer", 65536 - 19 + 1 },
    { "5 MB", T_BIG_MSG },
};

/* Write in awkward chunk sizes, read back: envelope, offsets, bytes. */
static void test_file_round_trip(void **state)
{
    static const size_t chunks[] = { 1, 7, 65535, 65536, 100000, 3 };
    struct t_spool *t = *state;
    unsigned char *msg = malloc(T_BIG_MSG), *back = malloc(T_BIG_MSG);

    assert_non_null(msg);
    assert_non_null(back);
    for (size_t i = 0; i < T_BIG_MSG; i++)
        msg[i] = (unsigned char) (i * 31 + 7);
    for (size_t c = 0; c < sizeof(t_msgs) / sizeof(t_msgs[0]); c++) {
        char qid[QID_SIZE], path[T_PATH_MAX];
        struct envelope in, out;
        struct spool_writer *w;
        struct sy_err err;
        uint64_t off = 0, len = 0;
        struct stat st;
        size_t done = 0, k = 0;
        int fd;

        print_message("case %s\n", t_msgs[c].name);
        env_init(&in);
        env_init(&out);
        t_env_full(&in);
        qid_new(qid);
        w = spool_begin(t->sp, qid, &err);
        assert_non_null(w);
        while (done < t_msgs[c].size) {
            size_t n = chunks[k++ % (sizeof(chunks) / sizeof(chunks[0]))];

            if (n > t_msgs[c].size - done)
                n = t_msgs[c].size - done;
            assert_int_equal(spool_write(w, msg + done, n, &err), SY_OK);
            done += n;
        }
        assert_int_equal(spool_write(w, msg, 0, &err), SY_OK);
        assert_int_equal(spool_commit(w, &in, &err), SY_OK);
        assert_int_equal(t_count(&t->d, "tmp"), 0);

        t_path(path, &t->d, "q", qid);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(spool_read(t->sp, qid, &out, &off, &len, &err), SY_OK);
        t_env_equal(&in, &out);
        assert_int_equal(off, T_HDR_LEN);
        assert_int_equal(len, t_msgs[c].size);
        assert_true((uint64_t) st.st_size > off + len + T_TRAILER_LEN);

        fd = spool_open_message(t->sp, qid, &err);
        assert_true(fd >= 0);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
        if (len > 0) {
            assert_int_equal(pread(fd, back, (size_t) len, (off_t) off), (ssize_t) len);
            assert_memory_equal(back, msg, (size_t) len);
        }
        (void) close(fd);
        assert_int_equal(spool_remove(t->sp, qid, &err), SY_OK);
        env_free(&in);
        env_free(&out);
    }
    free(msg);
    free(back);
}

/* Build a file by hand from the documented layout: proves the format
 * description and lets the envelope be bad behind valid checksums. */
static unsigned char *t_build_file(const void *msg, size_t mlen, const void *env, size_t elen,
                                   size_t *lenp)
{
    size_t n = T_HDR_LEN + mlen + elen + T_TRAILER_LEN;
    unsigned char *p = malloc(n), *tr = p + T_HDR_LEN + mlen + elen;
    uint64_t v[4] = { T_HDR_LEN, mlen, T_HDR_LEN + mlen, elen };
    uint32_t crc;

    assert_non_null(p);
    memcpy(p, "switchyard-spool 1\n", T_HDR_LEN);
    memcpy(p + T_HDR_LEN, msg, mlen);
    memcpy(p + T_HDR_LEN + mlen, env, elen);
    for (int i = 0; i < 4; i++)
        for (int b = 0; b < 8; b++)
            tr[i * 8 + b] = (unsigned char) (v[i] >> (56 - 8 * b));
    crc = spool_crc32c(0, p + T_HDR_LEN, mlen + elen);
    for (int b = 0; b < 4; b++) {
        tr[32 + b] = (unsigned char) (crc >> (24 - 8 * b));
        tr[36 + b] = (unsigned char) (b == 3 ? 1 : 0);
    }
    crc = spool_crc32c(0, tr, 40);
    for (int b = 0; b < 4; b++)
        tr[40 + b] = (unsigned char) (crc >> (24 - 8 * b));
    memcpy(tr + 44, "SYSPEND\n", 8); /* NOLINT(bugprone-not-null-terminated-result) */
    *lenp = n;
    return p;
}

static const struct {
    const char *name;
    const char *env;
    size_t elen;
    int rc;
    const char *text;
} t_built_cases[] = {
    { "valid", T_BYTES(R_HEAD R_P R_X), SY_OK, NULL },
    { "no recipient", T_BYTES(R_HEAD R_X), SY_ESYNTAX, "no recipient" },
    { "CR in sender", T_BYTES(R_V "S\0\0\0\3a\rb" R_R R_B R_F R_Z R_H R_A R_P R_X), SY_ESYNTAX, "sender holds" },
    { "empty envelope", "", 0, SY_ESYNTAX, "envelope length" },
};

static void test_file_built_by_hand(void **state)
{
    struct t_spool *t = *state;
    static const char msg[] = "Subject: hi\r\n\r\nbody\r\n";

    for (size_t c = 0; c < sizeof(t_built_cases) / sizeof(t_built_cases[0]); c++) {
        char qid[QID_SIZE], path[T_PATH_MAX];
        struct envelope e;
        struct sy_err err;
        uint64_t off = 99, len = 99;
        unsigned char *file;
        size_t n;
        int rc;

        print_message("case %s\n", t_built_cases[c].name);
        file = t_build_file(msg, sizeof(msg) - 1, t_built_cases[c].env, t_built_cases[c].elen, &n);
        qid_new(qid);
        t_path(path, &t->d, "q", qid);
        t_write_file(path, file, n);
        env_init(&e);
        rc = spool_read(t->sp, qid, &e, &off, &len, &err);
        assert_int_equal(rc, t_built_cases[c].rc);
        if (rc == SY_OK) {
            assert_int_equal(off, T_HDR_LEN);
            assert_int_equal(len, sizeof(msg) - 1);
            assert_string_equal(e.rcpts[0].addr, "b@example.net");
        } else {
            assert_int_equal(off, 99);
            assert_int_equal(len, 99);
            assert_true(t_env_is_empty(&e));
            assert_string_equal(err.enh, "4.3.0");
            assert_non_null(strstr(err.text, qid));
            if (strstr(err.text, t_built_cases[c].text) == NULL)
                fail_msg("error \"%s\" lacks \"%s\"", err.text, t_built_cases[c].text);
        }
        env_free(&e);
        free(file);
    }
}

/* t_expect_corrupt - write bytes as q/<new id>; spool_read must refuse */
static void t_expect_corrupt(struct t_spool *t, const unsigned char *p, size_t n, const char *what,
                             size_t pos)
{
    char qid[QID_SIZE], path[T_PATH_MAX];
    struct envelope e;
    struct sy_err err;
    uint64_t off = 77, len = 77;
    int rc;

    qid_new(qid);
    t_path(path, &t->d, "q", qid);
    t_write_file(path, p, n);
    env_init(&e);
    rc = spool_read(t->sp, qid, &e, &off, &len, &err);
    if (rc != SY_ESYNTAX)
        fail_msg("%s at %zu: spool_read returned %d (%s)", what, pos, rc,
                 rc == SY_OK ? "accepted" : err.text);
    assert_string_equal(err.enh, "4.3.0");
    assert_true(t_env_is_empty(&e));
    assert_int_equal(off, 77);
    assert_int_equal(len, 77);
    assert_int_equal(unlink(path), 0);
}

/* Every truncation and every single-byte change of a valid file is caught
 * (CRC-32C detects all bursts up to 32 bits). */
static void test_file_corruption(void **state)
{
    static const unsigned char masks[] = { 0x01, 0x80, 0xff };
    static const char msg[] = "From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n";
    struct t_spool *t = *state;
    char qid[QID_SIZE], path[T_PATH_MAX];
    struct envelope env;
    unsigned char *file, *copy;
    size_t n;

    env_init(&env);
    t_env_full(&env);
    t_commit(t->sp, qid, msg, sizeof(msg) - 1, &env);
    env_free(&env);
    t_path(path, &t->d, "q", qid);
    file = t_read_file(path, &n);
    copy = malloc(n + 1);
    assert_non_null(copy);

    print_message("case truncations of %zu bytes\n", n);
    for (size_t len = 0; len < n; len++)
        t_expect_corrupt(t, file, len, "truncation", len);
    print_message("case byte changes\n");
    for (size_t i = 0; i < n; i++)
        for (size_t m = 0; m < sizeof(masks); m++) {
            memcpy(copy, file, n);
            copy[i] ^= masks[m];
            t_expect_corrupt(t, copy, n, "flip", i);
        }
    print_message("case appended byte\n");
    memcpy(copy, file, n);
    copy[n] = '\n';
    t_expect_corrupt(t, copy, n + 1, "append", n);
    /* A byte slipped in before the trailer: both checksums still hold,
     * only the layout check (no gaps) catches it. */
    print_message("case inserted byte before the trailer\n");
    memcpy(copy, file, n - T_TRAILER_LEN);
    copy[n - T_TRAILER_LEN] = 'X';
    memcpy(copy + n - T_TRAILER_LEN + 1, file + n - T_TRAILER_LEN, T_TRAILER_LEN);
    t_expect_corrupt(t, copy, n + 1, "insert", n - T_TRAILER_LEN);
    free(copy);
    free(file);
}

static void test_read_not_found(void **state)
{
    static const char *ids[] = { "0000000000000ZZ", "../lock", "", "tmp", "0123456789abcde" };
    struct t_spool *t = *state;

    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        struct envelope e;
        struct sy_err err;
        uint64_t off = 5, len = 5;

        print_message("case \"%s\"\n", ids[i]);
        env_init(&e);
        assert_int_equal(spool_read(t->sp, ids[i], &e, &off, &len, &err), SY_ENOTFOUND);
        assert_int_equal(err.code, SY_ENOTFOUND);
        assert_true(t_env_is_empty(&e));
        assert_int_equal(off, 5);
        assert_int_equal(spool_open_message(t->sp, ids[i], &err), -1);
        assert_int_equal(err.code, SY_ENOTFOUND);
        assert_int_equal(spool_remove(t->sp, ids[i], &err), SY_ENOTFOUND);
    }
}

/* A directory or a symbolic link under q/ is not a spool file. */
static void test_read_not_regular(void **state)
{
    struct t_spool *t = *state;
    char qid[QID_SIZE], path[T_PATH_MAX];
    struct envelope e;
    struct sy_err err;
    uint64_t off, len;

    qid_new(qid);
    t_path(path, &t->d, "q", qid);
    assert_int_equal(mkdir(path, 0700), 0);
    env_init(&e);
    assert_int_equal(spool_read(t->sp, qid, &e, &off, &len, &err), SY_ESYNTAX);
    assert_non_null(strstr(err.text, "not a regular file"));
    assert_int_equal(rmdir(path), 0);

    assert_int_equal(symlink("/etc/passwd", path), 0);
    assert_int_equal(spool_read(t->sp, qid, &e, &off, &len, &err), SY_ESYNTAX);
    assert_non_null(strstr(err.text, "symbolic link"));
    assert_int_equal(spool_open_message(t->sp, qid, &err), -1);
    assert_int_equal(unlink(path), 0);
}

static void test_abort_leaves_nothing(void **state)
{
    struct t_spool *t = *state;
    char qid[QID_SIZE];
    struct spool_writer *w;
    struct sy_err err;

    qid_new(qid);
    w = spool_begin(t->sp, qid, &err);
    assert_non_null(w);
    assert_int_equal(t_count(&t->d, "tmp"), 1);
    assert_int_equal(spool_write(w, "abc", 3, &err), SY_OK);
    spool_abort(w);
    spool_abort(NULL);
    assert_int_equal(t_count(&t->d, "tmp"), 0);
    assert_int_equal(t_count(&t->d, "q"), 0);
}

static void test_begin_errors(void **state)
{
    static const char *bad[] = { "", "../../etc/x", "0123456789abcde", "0123456789ABCDEF", "lock" };
    struct t_spool *t = *state;
    char qid[QID_SIZE];
    struct spool_writer *w, *w2;
    struct envelope env;
    struct sy_err err;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        print_message("case \"%s\"\n", bad[i]);
        sy_err_clear(&err);
        assert_null(spool_begin(t->sp, bad[i], &err));
        assert_int_equal(err.code, SY_ESYNTAX);
        assert_int_equal(t_count(&t->d, "tmp"), 0);
    }
    /* The same id twice: O_EXCL refuses, the first writer is unharmed. */
    qid_new(qid);
    w = spool_begin(t->sp, qid, &err);
    assert_non_null(w);
    w2 = spool_begin(t->sp, qid, &err);
    assert_null(w2);
    assert_int_equal(err.code, SY_EIO);
    assert_string_equal(err.enh, "4.3.0");
    assert_non_null(strstr(err.text, "create tmp/"));
    assert_non_null(strstr(err.text, "File exists"));
    env_init(&env);
    t_env_minimal(&env);
    assert_int_equal(spool_write(w, "x", 1, &err), SY_OK);
    assert_int_equal(spool_commit(w, &env, &err), SY_OK);
    env_free(&env);
    assert_int_equal(t_count(&t->d, "q"), 1);
}

/* q/<qid> already there: commit fails, the old file is untouched, and
 * the temporary file is gone. */
static void test_commit_never_replaces(void **state)
{
    struct t_spool *t = *state;
    char qid[QID_SIZE], path[T_PATH_MAX];
    struct spool_writer *w;
    struct envelope env;
    struct sy_err err;
    unsigned char *back;
    size_t n;

    qid_new(qid);
    t_path(path, &t->d, "q", qid);
    t_write_file(path, "existing", 8);
    w = spool_begin(t->sp, qid, &err);
    assert_non_null(w);
    assert_int_equal(spool_write(w, "new message", 11, &err), SY_OK);
    env_init(&env);
    t_env_full(&env);
    assert_int_equal(spool_commit(w, &env, &err), SY_EIO);
    env_free(&env);
    assert_int_equal(err.code, SY_EIO);
    assert_string_equal(err.enh, "4.3.0");
    assert_non_null(strstr(err.text, qid));
    assert_non_null(strstr(err.text, "File exists"));
    assert_int_equal(t_count(&t->d, "tmp"), 0);
    back = t_read_file(path, &n);
    assert_int_equal(n, 8);
    assert_memory_equal(back, "existing", 8);
    free(back);
}

static void t_env_no_rcpt(struct envelope *e)
{
    e->sender = t_strdup("a@example.org");
}

static void t_env_null_sender(struct envelope *e)
{
    t_add_rcpt(e, "b@example.org", 0, NULL, NULL);
}

static void t_env_cr_sender(struct envelope *e)
{
    e->sender = t_strdup("a@example.org\r\nRCPT TO:<x@evil>");
    t_add_rcpt(e, "b@example.org", 0, NULL, NULL);
}

static void t_env_lf_orcpt(struct envelope *e)
{
    e->sender = t_strdup("a@example.org");
    t_add_rcpt(e, "b@example.org", 0, "rfc822", "b@example.org\nX: y");
}

static void t_env_empty_addr(struct envelope *e)
{
    e->sender = t_strdup("a@example.org");
    t_add_rcpt(e, "", 0, NULL, NULL);
}

static void t_env_bad_flags(struct envelope *e)
{
    t_env_minimal(e);
    e->flags = 0x100;
}

static void t_env_bad_ret(struct envelope *e)
{
    t_env_minimal(e);
    e->ret = 7;
}

static void t_env_negative_hold(struct envelope *e)
{
    t_env_minimal(e);
    e->hold_until = -5;
}

static const struct {
    const char *name;
    void (*build)(struct envelope *e);
    const char *text;
} t_unstorable[] = {
    { "no recipient", t_env_no_rcpt, "no recipient" },
    { "NULL sender", t_env_null_sender, "no sender" },
    { "CR LF in sender", t_env_cr_sender, "sender holds" },
    { "LF in ORCPT", t_env_lf_orcpt, "orcpt address holds" },
    { "empty address", t_env_empty_addr, "empty address" },
    { "unknown flag", t_env_bad_flags, "flags" },
    { "ret out of range", t_env_bad_ret, "ret" },
    { "negative hold", t_env_negative_hold, "hold_until" },
};

/* An envelope spool_read() would refuse is never written. */
static void test_commit_unstorable(void **state)
{
    struct t_spool *t = *state;

    for (size_t c = 0; c < sizeof(t_unstorable) / sizeof(t_unstorable[0]); c++) {
        char qid[QID_SIZE];
        struct spool_writer *w;
        struct envelope env;
        struct sy_err err;

        print_message("case %s\n", t_unstorable[c].name);
        qid_new(qid);
        w = spool_begin(t->sp, qid, &err);
        assert_non_null(w);
        assert_int_equal(spool_write(w, "m", 1, &err), SY_OK);
        env_init(&env);
        t_unstorable[c].build(&env);
        assert_int_equal(spool_commit(w, &env, &err), SY_ESYNTAX);
        assert_string_equal(err.enh, "4.3.0");
        if (strstr(err.text, t_unstorable[c].text) == NULL)
            fail_msg("error \"%s\" lacks \"%s\"", err.text, t_unstorable[c].text);
        env_free(&env);
        assert_int_equal(t_count(&t->d, "tmp"), 0);
        assert_int_equal(t_count(&t->d, "q"), 0);
    }
}

/* A real write error (EFBIG from RLIMIT_FSIZE, no root needed), in a
 * child so the limit does not touch the test runner. The error surfaces
 * at a write or at commit, is repeated, and leaves nothing behind. */
static int t_child_fsize(struct spool *sp)
{
    static char chunk[10000];
    struct rlimit rl = { 100000, 100000 };
    char qid[QID_SIZE];
    struct spool_writer *w;
    struct envelope env;
    struct sy_err err;
    int first = SY_OK, rc;

    if (signal(SIGXFSZ, SIG_IGN) == SIG_ERR || setrlimit(RLIMIT_FSIZE, &rl) != 0)
        return 10;
    memset(chunk, 'x', sizeof(chunk));
    qid_new(qid);
    w = spool_begin(sp, qid, &err);
    if (w == NULL)
        return 11;
    for (int i = 0; i < 30; i++) {
        rc = spool_write(w, chunk, sizeof(chunk), &err);
        if (first == SY_OK && rc != SY_OK)
            first = rc;
        else if (first != SY_OK && rc != first)
            return 12;      /* the error must repeat */
    }
    if (first != SY_EIO || strcmp(err.enh, "4.3.0") != 0 || strstr(err.text, "File too large") == NULL)
        return 13;
    env_init(&env);
    t_env_minimal(&env);
    rc = spool_commit(w, &env, &err);
    env_free(&env);
    if (rc != SY_EIO || strstr(err.text, "write tmp/") == NULL)
        return 14;
    return 0;
}

static void test_commit_write_error(void **state)
{
    struct t_spool *t = *state;
    int status;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0)
        _exit(t_child_fsize(t->sp));
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(t_count(&t->d, "tmp"), 0);
    assert_int_equal(t_count(&t->d, "q"), 0);
}

/* t_child_lock - a second daemon: must be refused, naming the holder */
static int t_child_lock(const char *dir, pid_t holder)
{
    char want[T_PATH_MAX + 64];
    struct sy_err err;
    struct spool *sp = spool_open(dir, &err);

    if (sp != NULL)
        return 20;
    (void) snprintf(want, sizeof(want), "spool %s is locked by pid %ld", dir, (long) holder);
    if (err.code != SY_ETEMP)
        return 21;
    if (strcmp(err.text, want) != 0)
        return 22;
    return 0;
}

static void test_lock(void **state)
{
    struct t_spool *t = *state;
    char path[T_PATH_MAX], want[32];
    struct sy_err err;
    struct spool *sp2;
    unsigned char *pidtext;
    size_t n;
    int status;
    pid_t pid;

    /* The lock file names us. */
    assert_true((size_t) snprintf(path, sizeof(path), "%s/lock", t->d.spool) < sizeof(path));
    pidtext = t_read_file(path, &n);
    (void) snprintf(want, sizeof(want), "%ld\n", (long) getpid());
    assert_int_equal(n, strlen(want));
    assert_memory_equal(pidtext, want, n);
    free(pidtext);

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(t_child_lock(t->d.spool, getppid()));
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    /* flock belongs to the open file description: a second open in the
     * same process is refused too. */
    assert_null(spool_open(t->d.spool, &err));
    assert_int_equal(err.code, SY_ETEMP);

    /* Released by spool_close(). */
    spool_close(t->sp);
    t->sp = NULL;
    sp2 = spool_open(t->d.spool, &err);
    assert_non_null(sp2);
    t->sp = sp2;
}

static const struct {
    const char *name;
    const char *sub;    /* relative to the test root; "" for none */
    int make_file;      /* create sub as a regular file first */
} t_open_errors[] = {
    { "parent missing", "missing/spool", 0 },
    { "dir is a file", "file", 1 },
    { "empty path", "", 0 },
};

static void test_open_errors(void **state)
{
    struct t_dir d;

    (void) state;
    t_dir_make(&d);
    for (size_t c = 0; c < sizeof(t_open_errors) / sizeof(t_open_errors[0]); c++) {
        char path[T_PATH_MAX];
        struct sy_err err;

        print_message("case %s\n", t_open_errors[c].name);
        if (t_open_errors[c].sub[0] == '\0')
            path[0] = '\0';
        else
            assert_true((size_t) snprintf(path, sizeof(path), "%s/%s", d.root, t_open_errors[c].sub) < sizeof(path));
        if (t_open_errors[c].make_file)
            t_write_file(path, "x", 1);
        sy_err_clear(&err);
        assert_null(spool_open(path, &err));
        assert_int_equal(err.code, SY_EIO);
        assert_string_equal(err.enh, "4.3.0");
        assert_true(err.text[0] != '\0');
    }
    assert_null(spool_open(NULL, NULL));
    t_rm_rf(d.root);
}

/* Fresh spool: dir, tmp/ and q/ are 0700 whatever the umask. */
static void test_open_modes(void **state)
{
    struct t_spool *t = *state;
    static const char *subs[] = { "", "/tmp", "/q" };

    for (size_t i = 0; i < 3; i++) {
        char path[T_PATH_MAX];
        struct stat st;

        assert_true((size_t) snprintf(path, sizeof(path), "%s%s", t->d.spool, subs[i]) < sizeof(path));
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 0077, 0);
    }
    assert_string_equal(spool_dir(t->sp), t->d.spool);
}

static void test_clean_tmp(void **state)
{
    struct t_spool *t = *state;
    static const char *names[] = { "0000000000000AA", "junk", ".hidden" };
    char qid[QID_SIZE];
    struct envelope env;

    env_init(&env);
    t_env_minimal(&env);
    t_commit(t->sp, qid, "m", 1, &env);
    env_free(&env);
    for (size_t i = 0; i < 3; i++) {
        char path[T_PATH_MAX];

        t_path(path, &t->d, "tmp", names[i]);
        t_write_file(path, "left by a crash", 15);
    }
    assert_int_equal(spool_clean_tmp(t->sp), 3);
    assert_int_equal(t_count(&t->d, "tmp"), 0);
    assert_int_equal(t_count(&t->d, "q"), 1);
    assert_int_equal(spool_clean_tmp(t->sp), 0);
}

struct t_scan {
    char seen[16][QID_SIZE];
    size_t n;
    size_t stop_after;  /* 0: never stop */
};

static int t_scan_fn(const char *qid, void *arg)
{
    struct t_scan *s = arg;

    if (s->n < 16)
        memcpy(s->seen[s->n], qid, QID_SIZE);
    s->n++;
    return s->stop_after != 0 && s->n == s->stop_after ? 7 : 0;
}

/* Ids come back sorted whatever the directory order; other names in q/
 * are skipped; a non-zero callback result stops the scan. */
static void test_scan(void **state)
{
    struct t_spool *t = *state;
    static const char *junk[] = { "junk", "0123456789abcde", "0123456789ABCDEF", "0000000000000I0" };
    char ids[8][QID_SIZE], dirid[QID_SIZE];
    struct envelope env;
    struct t_scan s = { .n = 0 };
    char path[T_PATH_MAX];

    env_init(&env);
    t_env_minimal(&env);
    for (int i = 0; i < 8; i++)
        qid_new(ids[i]);
    /* Commit in a scrambled order. */
    for (int k = 0; k < 8; k++) {
        int i = (k * 5 + 3) % 8;
        struct spool_writer *w;
        struct sy_err err;

        w = spool_begin(t->sp, ids[i], &err);
        assert_non_null(w);
        assert_int_equal(spool_commit(w, &env, &err), SY_OK);
    }
    env_free(&env);
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        t_path(path, &t->d, "q", junk[i]);
        t_write_file(path, "x", 1);
    }
    qid_new(dirid);
    t_path(path, &t->d, "q", dirid);
    assert_int_equal(mkdir(path, 0700), 0);   /* a directory with a valid id */

    assert_int_equal(spool_scan(t->sp, t_scan_fn, &s), 0);
    assert_int_equal(s.n, 8);
    for (int i = 0; i < 8; i++)
        assert_string_equal(s.seen[i], ids[i]);

    memset(&s, 0, sizeof(s));
    s.stop_after = 2;
    assert_int_equal(spool_scan(t->sp, t_scan_fn, &s), 7);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.seen[1], ids[1]);
}

static void test_remove(void **state)
{
    struct t_spool *t = *state;
    char qid[QID_SIZE];
    struct envelope env;
    struct sy_err err;

    env_init(&env);
    t_env_minimal(&env);
    t_commit(t->sp, qid, "m", 1, &env);
    env_free(&env);
    assert_int_equal(spool_remove(t->sp, qid, &err), SY_OK);
    assert_int_equal(t_count(&t->d, "q"), 0);
    assert_int_equal(spool_remove(t->sp, qid, &err), SY_ENOTFOUND);
    assert_int_equal(err.code, SY_ENOTFOUND);
    assert_int_equal(spool_open_message(t->sp, qid, &err), -1);
    assert_int_equal(err.code, SY_ENOTFOUND);
}

static void test_check_space(void **state)
{
    struct t_spool *t = *state;
    struct sy_err err;

    assert_int_equal(spool_check_space(t->sp, 0, &err), SY_OK);
    assert_int_equal(spool_check_space(t->sp, 4096, &err), SY_OK);
    sy_err_clear(&err);
    assert_int_equal(spool_check_space(t->sp, UINT64_MAX, &err), SY_ENOSPACE);
    assert_int_equal(err.code, SY_ENOSPACE);
    assert_string_equal(err.enh, "4.3.1");
    assert_non_null(strstr(err.text, "insufficient system storage"));
}

/* ---- a real full disk: a tiny tmpfs (root only) ---- */

struct t_mnt {
    struct t_dir d;
    char mnt[T_PATH_MAX];
    int mounted;
};

/* t_mount - mount a tmpfs with opts at <root>/mnt and point the spool
 * into it. The teardown unmounts even when the test failed. When mounting
 * is not possible here *state stays NULL and the test skips. */
static int t_mount(void **state, const char *opts)
{
    struct t_mnt *m = calloc(1, sizeof(*m));

    *state = NULL;
    if (m == NULL)
        return -1;
    t_dir_make(&m->d);
    if ((size_t) snprintf(m->mnt, sizeof(m->mnt), "%s/mnt", m->d.root) >= sizeof(m->mnt) ||
        mkdir(m->mnt, 0700) != 0) {
        t_rm_rf(m->d.root);
        free(m);
        return -1;
    }
    if (geteuid() != 0) {
        print_message("skipped: not root, cannot mount a small tmpfs\n");
    } else if (mount("tmpfs", m->mnt, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) {
        print_message("skipped: mount tmpfs: %s\n", strerror(errno));
    } else {
        m->mounted = 1;
        *state = m;
        if ((size_t) snprintf(m->d.spool, sizeof(m->d.spool), "%s/spool", m->mnt) >= sizeof(m->d.spool))
            return -1;
        return 0;
    }
    t_rm_rf(m->d.root);
    free(m);
    return 0;
}

static int t_mount_small(void **state)
{
    return t_mount(state, "size=64k");
}

static int t_mount_few_inodes(void **state)
{
    return t_mount(state, "size=1m,nr_inodes=32");
}

static int t_umount(void **state)
{
    struct t_mnt *m = *state;

    if (m == NULL)
        return 0;
    if (m->mounted && umount2(m->mnt, MNT_DETACH) != 0)
        fprintf(stderr, "umount %s: %s\n", m->mnt, strerror(errno));
    t_rm_rf(m->d.root);
    free(m);
    return 0;
}

/* ENOSPC mid-message: 452 4.3.1, nothing left, and once space is back
 * (the failed file is gone) the next message commits. */
static void test_enospc_tmpfs(void **state)
{
    static char chunk[8192];
    struct t_mnt *m = *state;
    struct spool *sp;
    struct spool_writer *w;
    struct envelope env;
    struct sy_err err;
    char qid[QID_SIZE];
    int rc = SY_OK;

    if (m == NULL) {
        skip();
        return;
    }
    sp = spool_open(m->d.spool, &err);
    assert_non_null(sp);
    assert_int_equal(spool_check_space(sp, (uint64_t) 1024 * 1024, &err), SY_ENOSPACE);
    assert_string_equal(err.enh, "4.3.1");

    memset(chunk, 'y', sizeof(chunk));
    qid_new(qid);
    w = spool_begin(sp, qid, &err);
    assert_non_null(w);
    for (int i = 0; i < 32 && rc == SY_OK; i++)
        rc = spool_write(w, chunk, sizeof(chunk), &err);
    if (rc != SY_OK) {
        assert_int_equal(rc, SY_ENOSPACE);
        assert_string_equal(err.enh, "4.3.1");
    }
    env_init(&env);
    t_env_full(&env);
    assert_int_equal(spool_commit(w, &env, &err), SY_ENOSPACE);
    assert_string_equal(err.enh, "4.3.1");
    assert_non_null(strstr(err.text, "No space left on device"));
    assert_int_equal(t_count(&m->d, "tmp"), 0);
    assert_int_equal(t_count(&m->d, "q"), 0);

    /* Space came back with the removed temp file. */
    assert_int_equal(spool_check_space(sp, 16384, &err), SY_OK);
    t_commit(sp, qid, chunk, 1024, &env);
    assert_int_equal(t_count(&m->d, "q"), 1);
    env_free(&env);
    spool_close(sp);
}

/* Out of inodes with bytes to spare is "full" too. */
static void test_no_inodes_tmpfs(void **state)
{
    struct t_mnt *m = *state;
    struct spool *sp;
    struct sy_err err;

    if (m == NULL) {
        skip();
        return;
    }
    sp = spool_open(m->d.spool, &err);
    assert_non_null(sp);
    assert_int_equal(spool_check_space(sp, 0, &err), SY_ENOSPACE);
    assert_string_equal(err.enh, "4.3.1");
    assert_non_null(strstr(err.text, "inodes"));
    spool_close(sp);
}

/* ---- threads ---- */

#define T_THREADS 4
#define T_PER_THREAD 25

struct t_worker {
    struct spool *sp;
    char ids[T_PER_THREAD][QID_SIZE];
    int failures;
};

static void *t_worker_run(void *arg)
{
    struct t_worker *wk = arg;
    struct envelope env;

    env_init(&env);
    t_env_full(&env);
    for (int i = 0; i < T_PER_THREAD; i++) {
        struct spool_writer *w;
        struct sy_err err;

        qid_new(wk->ids[i]);
        w = spool_begin(wk->sp, wk->ids[i], &err);
        if (w == NULL || spool_write(w, wk->ids[i], QID_LEN, &err) != SY_OK ||
            spool_commit(w, &env, &err) != SY_OK)
            wk->failures++;
    }
    env_free(&env);
    return NULL;
}

/* One struct spool shared by writers on several threads. */
static void test_threads(void **state)
{
    struct t_spool *t = *state;
    struct t_worker wk[T_THREADS];
    pthread_t th[T_THREADS];

    for (int i = 0; i < T_THREADS; i++) {
        memset(&wk[i], 0, sizeof(wk[i]));
        wk[i].sp = t->sp;
        assert_int_equal(pthread_create(&th[i], NULL, t_worker_run, &wk[i]), 0);
    }
    /* Join every thread before any assertion can leave the test. */
    for (int i = 0; i < T_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < T_THREADS; i++)
        assert_int_equal(wk[i].failures, 0);
    assert_int_equal(t_count(&t->d, "q"), T_THREADS * T_PER_THREAD);
    for (int i = 0; i < T_THREADS; i++)
        for (int k = 0; k < T_PER_THREAD; k++) {
            struct envelope env;
            struct sy_err err;
            uint64_t off, len;

            env_init(&env);
            assert_int_equal(spool_read(t->sp, wk[i].ids[k], &env, &off, &len, &err), SY_OK);
            assert_int_equal(len, QID_LEN);
            assert_int_equal(env.nrcpt, 3);
            env_free(&env);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_round_trip),
        cmocka_unit_test(test_env_golden_bytes),
        cmocka_unit_test(test_env_decode_table),
        cmocka_unit_test(test_env_decode_rcpt_limit),
        cmocka_unit_test(test_env_decode_field_limit),
        cmocka_unit_test(test_env_decode_mutations),
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test_setup_teardown(test_file_round_trip, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_file_built_by_hand, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_file_corruption, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_read_not_found, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_read_not_regular, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_abort_leaves_nothing, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_begin_errors, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_commit_never_replaces, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_commit_unstorable, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_commit_write_error, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_lock, t_setup, t_teardown),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test_setup_teardown(test_open_modes, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_clean_tmp, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_scan, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_remove, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_check_space, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_enospc_tmpfs, t_mount_small, t_umount),
        cmocka_unit_test_setup_teardown(test_no_inodes_tmpfs, t_mount_few_inodes, t_umount),
        cmocka_unit_test_setup_teardown(test_threads, t_setup, t_teardown),
    };

    /* Modes are checked against 0700/0600 whatever the caller's umask. */
    umask(022);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
