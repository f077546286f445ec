/* test_dsn.c - gateway/dsn.c: the NOTIFY decision, and DSNs composed for
 * table-driven scenarios and parsed back with GMime 3, field by field:
 * top-level header, the multipart/report structure and report-type, the
 * per-message and per-recipient delivery-status fields, the returned
 * original; plus the line promises (CRLF only, <= 998 octets) on every
 * output, and the error paths (exact enhanced code, output unchanged).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <gmime/gmime.h>

#include "gateway/dsn.h"
#include "gateway/envelope.h"
#include "gateway/util/buf.h"
#include "gateway/util/err.h"
#include "gateway/util/xalloc.h"

/* 2026-11-23T09:00:00Z: arrival; the last attempt an hour later; the DSN
 * a minute after that; retries until five days after arrival. */
#define T_ARR ((int64_t) 1795424400 * 1000000)
#define T_LAST (T_ARR + (int64_t) 3600 * 1000000)
#define T_NOW (T_ARR + (int64_t) 3660 * 1000000)
#define T_UNTIL (T_ARR + (int64_t) 5 * 86400 * 1000000)
#define D_ARR "Mon, 23 Nov 2026 09:00:00 +0000"
#define D_LAST "Mon, 23 Nov 2026 10:00:00 +0000"
#define D_NOW "Mon, 23 Nov 2026 10:01:00 +0000"
#define D_UNTIL "Sat, 28 Nov 2026 09:00:00 +0000"

#define HOST "mta.example.com"
#define TOKEN "4F3A9C21D0.1795428060"
#define OUT_MAX ((size_t) 4 << 20)

#define MSG_HDRS "Received: from client.example.org by mx.example.org\r\n" \
                 "From: Alice <alice@example.org>\r\nTo: <bob@example.net>\r\n" \
                 "Subject: quarterly report\r\nMessage-ID: <orig.1@example.org>\r\n"
#define MSG MSG_HDRS "\r\nbody text line one\r\nbody text line two\r\n"

#define SUBJ_FAIL "Undelivered Mail Returned to Sender"
#define SUBJ_DELAY "Delayed Mail (still being retried)"
#define SUBJ_OK "Successful Mail Delivery Report"
#define DS "message/delivery-status"
#define GDS "message/global-delivery-status"

#define NOTIFY_ALL (ENV_NOTIFY_SUCCESS | ENV_NOTIFY_FAILURE | ENV_NOTIFY_DELAY)

/* ---- the NOTIFY decision ---- */

struct wanted_case {
    const char *name;
    const char *sender;
    unsigned notify;
    size_t rcpt;
    int action;
    int want;
};

static const struct wanted_case wanted_cases[] = {
    { "default failed", "a@x", 0, 0, DSN_ACTION_FAILED, 1 },
    { "default delayed", "a@x", 0, 0, DSN_ACTION_DELAYED, 1 },
    { "default delivered", "a@x", 0, 0, DSN_ACTION_DELIVERED, 0 },
    { "default relayed", "a@x", 0, 0, DSN_ACTION_RELAYED, 0 },
    { "default expanded", "a@x", 0, 0, DSN_ACTION_EXPANDED, 0 },
    { "null sender failed", "", 0, 0, DSN_ACTION_FAILED, 0 },
    { "null sender success", "", ENV_NOTIFY_SUCCESS, 0, DSN_ACTION_DELIVERED, 0 },
    { "missing sender", NULL, 0, 0, DSN_ACTION_FAILED, 0 },
    { "NEVER failed", "a@x", ENV_NOTIFY_NEVER, 0, DSN_ACTION_FAILED, 0 },
    { "NEVER delayed", "a@x", ENV_NOTIFY_NEVER, 0, DSN_ACTION_DELAYED, 0 },
    { "NEVER relayed", "a@x", ENV_NOTIFY_NEVER, 0, DSN_ACTION_RELAYED, 0 },
    { "NEVER wins over SUCCESS", "a@x", ENV_NOTIFY_NEVER | ENV_NOTIFY_SUCCESS, 0,
      DSN_ACTION_DELIVERED, 0 },
    { "SUCCESS delivered", "a@x", ENV_NOTIFY_SUCCESS, 0, DSN_ACTION_DELIVERED, 1 },
    { "SUCCESS relayed", "a@x", ENV_NOTIFY_SUCCESS, 0, DSN_ACTION_RELAYED, 1 },
    { "SUCCESS expanded", "a@x", ENV_NOTIFY_SUCCESS, 0, DSN_ACTION_EXPANDED, 1 },
    { "SUCCESS failed", "a@x", ENV_NOTIFY_SUCCESS, 0, DSN_ACTION_FAILED, 0 },
    { "SUCCESS delayed", "a@x", ENV_NOTIFY_SUCCESS, 0, DSN_ACTION_DELAYED, 0 },
    { "FAILURE failed", "a@x", ENV_NOTIFY_FAILURE, 0, DSN_ACTION_FAILED, 1 },
    { "FAILURE delayed", "a@x", ENV_NOTIFY_FAILURE, 0, DSN_ACTION_DELAYED, 0 },
    { "FAILURE delivered", "a@x", ENV_NOTIFY_FAILURE, 0, DSN_ACTION_DELIVERED, 0 },
    { "DELAY delayed", "a@x", ENV_NOTIFY_DELAY, 0, DSN_ACTION_DELAYED, 1 },
    { "DELAY failed", "a@x", ENV_NOTIFY_DELAY, 0, DSN_ACTION_FAILED, 0 },
    { "all failed", "a@x", NOTIFY_ALL, 0, DSN_ACTION_FAILED, 1 },
    { "all delayed", "a@x", NOTIFY_ALL, 0, DSN_ACTION_DELAYED, 1 },
    { "all relayed", "a@x", NOTIFY_ALL, 0, DSN_ACTION_RELAYED, 1 },
    { "second recipient", "a@x", 0, 1, DSN_ACTION_FAILED, 1 },
    { "index out of range", "a@x", 0, 2, DSN_ACTION_FAILED, 0 },
    { "action 0", "a@x", NOTIFY_ALL, 0, 0, 0 },
    { "action 99", "a@x", NOTIFY_ALL, 0, 99, 0 },
};

static void test_wanted_table(void **state)
{
    (void) state;
    for (size_t k = 0; k < sizeof(wanted_cases) / sizeof(wanted_cases[0]); k++) {
        const struct wanted_case *c = &wanted_cases[k];
        struct envelope env;

        print_message("wanted case %s\n", c->name);
        env_init(&env);
        env_set(&env.sender, c->sender);
        for (int i = 0; i < 2; i++) {
            struct env_rcpt r = { 0 };

            r.addr = xstrdup(i == 0 ? "b@y" : "c@y");
            r.notify = c->notify;
            env_add_rcpt(&env, &r);
        }
        assert_int_equal(dsn_wanted(&env, c->rcpt, c->action), c->want);
        env_free(&env);
    }
    assert_int_equal(dsn_wanted(NULL, 0, DSN_ACTION_FAILED), 0);
}

static void test_action_names(void **state)
{
    (void) state;
    assert_string_equal(dsn_action_name(DSN_ACTION_FAILED), "failed");
    assert_string_equal(dsn_action_name(DSN_ACTION_DELAYED), "delayed");
    assert_string_equal(dsn_action_name(DSN_ACTION_DELIVERED), "delivered");
    assert_string_equal(dsn_action_name(DSN_ACTION_RELAYED), "relayed");
    assert_string_equal(dsn_action_name(DSN_ACTION_EXPANDED), "expanded");
    assert_null(dsn_action_name(0));
    assert_null(dsn_action_name(DSN_ACTION_EXPANDED + 1));
}

/* ---- scenarios ---- */

struct rcpt_spec {
    const char *addr;
    unsigned notify;
    const char *orcpt_type;
    const char *orcpt_addr;
};

/* Expected fields of one per-recipient block; NULL means "absent". */
struct block_want {
    const char *original;
    const char *final;
    const char *action;
    const char *status;
    const char *remote;
    const char *diag;
    const char *last;
    const char *until;
};

struct compose_case {
    const char *name;
    /* envelope */
    const char *sender;
    int ret;
    const char *envid;
    unsigned flags;
    const char *message_id;
    int64_t arrival;
    struct rcpt_spec rcpts[3];
    /* results */
    struct dsn_rcpt res[3];
    size_t nres;
    /* original message: msg, then pad octets of body lines when pad > 0 */
    const char *msg;
    size_t pad;
    size_t return_max;
    /* expectations */
    const char *subject;
    const char *refs;           /* In-Reply-To and References; NULL: absent */
    const char *report;         /* part 2 type */
    const char *envid_field;    /* Original-Envelope-Id; NULL: absent */
    const char *arrival_field;  /* Arrival-Date; NULL: absent */
    int returned;               /* enum dsn_returned */
    const char *part3;          /* part 3 type; NULL when none */
    const char *part3_has;      /* text inside part 3 */
    const char *part3_lacks;    /* text not inside part 3 */
    const char *text_has[3];    /* texts inside part 1 */
    const char *charset;
    unsigned out_flags;
    const char *boundary;       /* expected boundary; NULL: "=_" TOKEN */
    struct block_want want[3];
};

#define R(i, act, st, diag, type, remote, last, until) \
    { (i), (act), (st), (diag), (type), (remote), (last), (until) }
#define W(orig, fin, act, st, rem, diag, last, until) \
    { (orig), (fin), (act), (st), (rem), (diag), (last), (until) }

static const struct compose_case compose_cases[] = {
    {
        "one failed recipient, RET=HDRS",
        "alice@example.org", ENV_RET_HDRS, NULL, 0, "<orig.1@example.org>", T_ARR,
        { { "bob@example.net", 0, NULL, NULL } },
        { R(0, DSN_ACTION_FAILED, "5.1.1", "550 5.1.1 <bob@example.net>: no such user", NULL,
            "mx.example.net", T_LAST, 0) }, 1,
        MSG, 0, DSN_RETURN_MAX_DEFAULT,
        SUBJ_FAIL, "<orig.1@example.org>", DS, NULL, D_ARR,
        DSN_RETURNED_HEADERS, "text/rfc822-headers", "Subject: quarterly report", "body text",
        { "<bob@example.net>: delivery failed",
          "The server mx.example.net said: 550 5.1.1 <bob@example.net>: no such user",
          "The header of your message is attached." },
        "us-ascii", 0, NULL,
        { W(NULL, "rfc822; bob@example.net", "failed", "5.1.1", "dns; mx.example.net",
            "smtp; 550 5.1.1 <bob@example.net>: no such user", D_LAST, NULL) },
    },
    {
        "two recipients, failed and delayed",
        "alice@example.org", ENV_RET_UNSET, NULL, 0, "<orig.1@example.org>", T_ARR,
        { { "bob@example.net", 0, NULL, NULL }, { "carol@example.com", 0, NULL, NULL } },
        { R(0, DSN_ACTION_FAILED, "5.2.2", "552-5.2.2 mailbox full\r\n552 5.2.2 try later", NULL,
            "mx.example.net", T_LAST, 0),
          R(1, DSN_ACTION_DELAYED, "4.4.1", "connect to mx.example.com[192.0.2.7]:25: timed out",
            "x-switchyard", NULL, T_LAST, T_UNTIL) }, 2,
        MSG, 0, DSN_RETURN_MAX_DEFAULT,
        SUBJ_FAIL, "<orig.1@example.org>", DS, NULL, D_ARR,
        DSN_RETURNED_HEADERS, "text/rfc822-headers", "Message-ID: <orig.1@example.org>", "body",
        { "<bob@example.net>: delivery failed",
          "<carol@example.com>: not delivered yet; delivery will be retried until " D_UNTIL,
          "Reason: connect to mx.example.com[192.0.2.7]:25: timed out" },
        "us-ascii", 0, NULL,
        { W(NULL, "rfc822; bob@example.net", "failed", "5.2.2", "dns; mx.example.net",
            "smtp; 552-5.2.2 mailbox full 552 5.2.2 try later", D_LAST, NULL),
          W(NULL, "rfc822; carol@example.com", "delayed", "4.4.1", NULL,
            "x-switchyard; connect to mx.example.com[192.0.2.7]:25: timed out", D_LAST,
            D_UNTIL) },
    },
    {
        "delay only: headers even with RET=FULL",
        "alice@example.org", ENV_RET_FULL, NULL, 0, "<orig.1@example.org>", T_ARR,
        { { "bob@example.net", ENV_NOTIFY_DELAY, NULL, NULL } },
        { R(0, DSN_ACTION_DELAYED, NULL, "451 4.7.1 greylisted, try again", NULL,
            "[192.0.2.9]", T_LAST, T_UNTIL) }, 1,
        MSG, 0, DSN_RETURN_MAX_DEFAULT,
        SUBJ_DELAY, "<orig.1@example.org>", DS, NULL, D_ARR,
        DSN_RETURNED_HEADERS, "text/rfc822-headers", "Subject: quarterly report", "body",
        { "This is a warning only", "The server [192.0.2.9] said: 451 4.7.1 greylisted",
          "received on " D_ARR },
        "us-ascii", 0, NULL,
        { W(NULL, "rfc822; bob@example.net", "delayed", "4.0.0", "dns; [192.0.2.9]",
            "smtp; 451 4.7.1 greylisted, try again", D_LAST, D_UNTIL) },
    },
    {
        "RET=FULL returns the message",
        "alice@example.org", ENV_RET_FULL, NULL, 0, "<orig.1@example.org>", T_ARR,
        { { "bob@example.net", 0, NULL, NULL } },
        { R(0, DSN_ACTION_FAILED, "5.7.1", "550 5.7.1 relaying denied", NULL, "mx.example.net",
            T_LAST, 0) }, 1,
        MSG, 0, DSN_RETURN_MAX_DEFAULT,
        SUBJ_FAIL, "<orig.1@example.org>", DS, NULL, D_ARR,
        DSN_RETURNED_FULL, "message/rfc822", "body text line two", NULL,
        { "Your message is attached.", NULL, NULL },
        "us-ascii", 0, NULL,
        { W(NULL, "rfc822; bob@example.net", "failed", "5.7.1", "dns; mx.example.net",
            "smtp; 550 5.7.1 relaying denied", D_LAST, NULL) },
    },
    {
        "ENVID is returned in xtext",
        "alice@example.org", ENV_RET_HDRS, "QQ+314159=x y~", 0, "<orig.1@example.org>", T_ARR,
        { { "bob@example.net", 0, NULL, NULL } },
        { R(0, DSN_ACTION_FAILED, "5.1.1", "550 5.1.1 unknown", NULL, NULL, T_LAST, 0) }, 1,
        MSG, 0, DSN_RETURN_MAX_DEFAULT,
        SUBJ_FAIL, "<orig.1@example.org>", DS, "QQ+2B314159+3Dx+20y~", D_ARR,
        DSN_RETURNED_HEADERS, "text/rfc822-headers", "Subject:", NULL,
        { "The server said: 550 5.1.1 unknown", NULL, NULL },
        "us-ascii", 0, NULL,
        { W(NULL, "rfc822; bob@example.net", "failed", "5.1.1", NULL, "smtp; 550 5.1.1 unknown",
            D_LAST, NULL) },
    },
    {
        "ORCPT: rfc822, and utf-8 in a 7-bit report",
        "alice@example.org", ENV_RET_HDRS, NULL, 0, "<orig.1@example.org>", T_ARR,
        { { "bob@example.net", 0, "rfc822", "Bob+Tag@Example.NET" },
          { "joerg@example.de", 0, "utf-8", "j\xc3\xb6rg+x@example.de" } },
        { R(0, DSN_ACTION_FAILED, "5.1.1", "550 5.1.1 unknown", NULL, NULL, T_LAST, 0),
          R(1, DSN_ACTION_FAILED, "5.1.1", "550 5.1.1 unknown", NULL, NULL, T_LAST, 0) }, 2,
        MSG, 0, DSN_RETURN_MAX_DEFAULT,
        SUBJ_FAIL, "<orig.1@example.org>", DS, NULL, D_ARR,
        DSN_RETURNED_HEADERS, "text/rfc822-headers", "Subject:", NULL,
        { "<joerg@example.de>: delivery failed", NULL, NULL },
        "us-ascii", 0, NULL,
        { W("rfc822; Bob+Tag@Example.NET", "rfc822; bob@example.net", "failed", "5.1.1", NULL,
            "smtp; 550 5.1.1 unknown", D_LAST, NULL),
          W("utf-8; j\\x{F6}rg\\x{2B}x@example.de", "rfc822; joerg@example.de", "failed",
            "5.1.1", NULL, "smtp; 550 5.1.1 unknown", D_LAST, NULL) },
    },
    {
        "SMTPUTF8: global report, UTF-8 kept",
        "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.example", ENV_RET_HDRS, NULL,
        ENV_F_SMTPUTF8, "<orig.2@example.org>", T_ARR,
        { { "j\xc3\xb6rg@example.de", 0, "utf-8", "j\xc3\xb6rg@example.de" } },
        { R(0, DSN_ACTION_FAILED, "5.1.1", "550 5.1.1 J\xc3\xb6rg unbekannt \xff", NULL,
            "mx.example.de", T_LAST, 0) }, 1,
        "Subject: Gr\xc3\xbc\xc3\x9f""e\r\nMessage-ID: <orig.2@example.org>\r\n\r\nHallo\r\n", 0,
        DSN_RETURN_MAX_DEFAULT,
        SUBJ_FAIL, "<orig.2@example.org>", GDS, NULL, D_ARR,
        DSN_RETURNED_HEADERS, "message/global-headers", "Subject: Gr\xc3\xbc\xc3\x9f""e", "Hallo",
        { "<j\xc3\xb6rg@example.de>: delivery failed", "J\xc3\xb6rg unbekannt ?", NULL },
        "utf-8", DSN_OUT_SMTPUTF8 | DSN_OUT_8BIT, NULL,
        { W("utf-8; j\xc3\xb6rg@example.de", "utf-8; j\xc3\xb6rg@example.de", "failed", "5.1.1",
            "dns; mx.example.de", "smtp; 550 5.1.1 J\xc3\xb6rg unbekannt ?", D_LAST, NULL) },
    },
    {
        "SMTPUTF8 with RET=FULL: message/global",
        "alice@example.org", ENV_RET_FULL, NULL, ENV_F_SMTPUTF8, "<orig.2@example.org>", T_ARR,
        { { "bob@example.net", 0, NULL, NULL } },
        { R(0, DSN_ACTION_FAILED, "5.2.1", "550 5.2.1 mailbox disabled", NULL, NULL, T_LAST, 0) },
        1,
        "Subject: Gr\xc3\xbc\xc3\x9f""e\r\nMessage-ID: <orig.2@example.org>\r\n\r\nHall\xc3\xb6\r\n",
        0, DSN_RETURN_MAX_DEFAULT,
        SUBJ_FAIL, "<orig.2@example.org>", GDS, NULL, D_ARR,
        DSN_RETURNED_FULL, "message/global", "Hall\xc3\xb6", NULL,
        { "Your message is attached.", NULL, NULL },
        "utf-8", DSN_OUT_SMTPUTF8 | DSN_OUT_8BIT, NULL,
        { W(NULL, "rfc822; bob@example.net", "failed", "5.2.1", NULL,
            "smtp; 550 5.2.1 mailbox disabled", D_LAST, NULL) },
    },
    {
        "SMTPUTF8 flag but all ASCII: global types, no SMTPUTF8 needed",
        "alice@example.org", ENV_RET_HDRS, NULL, ENV_F_SMTPUTF8, "<orig.1@example.org>", T_ARR,
        { { "bob@example.net", 0, NULL, NULL } },
        { R(0, DSN_ACTION_FAILED, "5.1.1", "550 5.1.1 unknown", NULL, NULL, T_LAST, 0) }, 1,
        MSG, 0, DSN_RETURN_MAX_DEFAULT,
        SUBJ_FAIL, "<orig.1@example.org>", GDS, NULL, D_ARR,
        DSN_RETURNED_HEADERS, "message/global-headers", "Subject: quarterly report", "body",
        { "The header of your message is attached.", NULL, NULL },
        "utf-8", 0, NULL,
        { W(NULL, "rfc822; bob@example.net", "failed", "5.1.1", NULL, "smtp; 550 5.1.1 unknown",
            D_LAST, NULL) },
    },
    {
        "no Message-ID in the original, no arrival time",
        "alice@example.org", ENV_RET_HDRS, NULL, 0, NULL, 0,
        { { "bob@example.net", 0, NULL, NULL } },
        { R(0, DSN_ACTION_FAILED, NULL, NULL, NULL, NULL, 0, 0) }, 1,
        "Subject: no id\r\n\r\nx\r\n", 0, DSN_RETURN_MAX_DEFAULT,
        SUBJ_FAIL, NULL, DS, NULL, NULL,
        DSN_RETURNED_HEADERS, "text/rfc822-headers", "Subject: no id", NULL,
        { "<bob@example.net>: delivery failed", NULL, NULL },
        "us-ascii", 0, NULL,
        { W(NULL, "rfc822; bob@example.net", "failed", "5.0.0", NULL, NULL, NULL, NULL) },
    },
    {
        "huge original with RET=FULL: headers only",
        "alice@example.org", ENV_RET_FULL, NULL, 0, "<orig.1@example.org>", T_ARR,
        { { "bob@example.net", 0, NULL, NULL } },
        { R(0, DSN_ACTION_FAILED, "5.3.4", "552 5.3.4 message too big", NULL, "mx.example.net",
            T_LAST, 0) }, 1,
        MSG, 300000, 65536,
        SUBJ_FAIL, "<orig.1@example.org>", DS, NULL, D_ARR,
        DSN_RETURNED_HEADERS, "text/rfc822-headers", "Subject: quarterly report", "padding",
        { "too large to return in full", "only its header is attached", NULL },
        "us-ascii", 0, NULL,
        { W(NULL, "rfc822; bob@example.net", "failed", "5.3.4", "dns; mx.example.net",
            "smtp; 552 5.3.4 message too big", D_LAST, NULL) },
    },
    {
        "reply and values with CR/LF and non-ASCII",
        "alice@example.org", ENV_RET_HDRS, "id\r\nX-Injected: 1", 0,
        "<orig.3@example.org>\r\nX-Injected: 1", T_ARR,
        { { "evil@example.net\r\nX-Injected: 2", 0, "rfc822", "o@x\r\nX-Injected: 3" } },
        { R(0, DSN_ACTION_FAILED, "5.7.1",
            "550 5.7.1 bad\r\nX-Injected: 4\r\n\x01\x80\xff caf\xc3\xa9\r\n", NULL,
            "mx.example.net\r\nX-Injected: 5", T_LAST, 0) }, 1,
        MSG, 0, DSN_RETURN_MAX_DEFAULT,
        SUBJ_FAIL, "<orig.3@example.org>", DS, "id+0D+0AX-Injected:+201", D_ARR,
        DSN_RETURNED_HEADERS, "text/rfc822-headers", "Subject:", NULL,
        { "<evil@example.net X-Injected: 2>: delivery failed",
          "The server said: 550 5.7.1 bad X-Injected: 4 ??? caf??", NULL },
        "us-ascii", 0, NULL,
        { W("rfc822; o@x X-Injected: 3", "rfc822; evil@example.net X-Injected: 2", "failed",
            "5.7.1", NULL, "smtp; 550 5.7.1 bad X-Injected: 4 ??? caf??", D_LAST, NULL) },
    },
    {
        "relayed success report",
        "alice@example.org", ENV_RET_FULL, NULL, 0, "<orig.1@example.org>", T_ARR,
        { { "bob@example.net", ENV_NOTIFY_SUCCESS, NULL, NULL } },
        { R(0, DSN_ACTION_RELAYED, "2.0.0", "250 2.0.0 Ok: queued as 9B1C2D", NULL,
            "smarthost.example.com", T_LAST, 0) }, 1,
        MSG, 0, DSN_RETURN_MAX_DEFAULT,
        SUBJ_OK, "<orig.1@example.org>", DS, NULL, D_ARR,
        DSN_RETURNED_HEADERS, "text/rfc822-headers", "Subject:", "body",
        { "delivery report you asked for",
          "delivered to the next server smarthost.example.com, which does not report", NULL },
        "us-ascii", 0, NULL,
        { W(NULL, "rfc822; bob@example.net", "relayed", "2.0.0", "dns; smarthost.example.com",
            "smtp; 250 2.0.0 Ok: queued as 9B1C2D", D_LAST, NULL) },
    },
    {
        "original unavailable",
        "alice@example.org", ENV_RET_FULL, NULL, 0, "<orig.1@example.org>", T_ARR,
        { { "bob@example.net", 0, NULL, NULL } },
        { R(0, DSN_ACTION_FAILED, "4.4.7", "message expired after 5 days", "x-switchyard",
            NULL, T_LAST, 0) }, 1,
        NULL, 0, DSN_RETURN_MAX_DEFAULT,
        SUBJ_FAIL, "<orig.1@example.org>", DS, NULL, D_ARR,
        DSN_RETURNED_NONE, NULL, NULL, NULL,
        { "no longer available", NULL, NULL },
        "us-ascii", 0, NULL,
        { W(NULL, "rfc822; bob@example.net", "failed", "4.4.7", NULL,
            "x-switchyard; message expired after 5 days", D_LAST, NULL) },
    },
    {
        "header section over the limit: nothing returned",
        "alice@example.org", ENV_RET_HDRS, NULL, 0, "<orig.1@example.org>", T_ARR,
        { { "bob@example.net", 0, NULL, NULL } },
        { R(0, DSN_ACTION_FAILED, "5.1.1", NULL, NULL, NULL, T_LAST, 0) }, 1,
        MSG, 0, 40,
        SUBJ_FAIL, "<orig.1@example.org>", DS, NULL, D_ARR,
        DSN_RETURNED_NONE, NULL, NULL, NULL,
        { "The header of your message is too large to attach", NULL, NULL },
        "us-ascii", 0, NULL,
        { W(NULL, "rfc822; bob@example.net", "failed", "5.1.1", NULL, NULL, D_LAST, NULL) },
    },
    {
        "original holds the boundary: the next free suffix",
        "alice@example.org", ENV_RET_FULL, NULL, 0, "<orig.1@example.org>", T_ARR,
        { { "bob@example.net", 0, NULL, NULL } },
        { R(0, DSN_ACTION_FAILED, "5.1.1", "550 5.1.1 see --=_" TOKEN ".00000001", NULL, NULL,
            T_LAST, 0) }, 1,
        "Subject: trap\r\n\r\n--=_" TOKEN "\r\n--=_" TOKEN ".00000000--\r\n", 0,
        DSN_RETURN_MAX_DEFAULT,
        SUBJ_FAIL, "<orig.1@example.org>", DS, NULL, D_ARR,
        DSN_RETURNED_FULL, "message/rfc822", "--=_" TOKEN ".00000000--", NULL,
        { "see --=_" TOKEN ".00000001", NULL, NULL },
        "us-ascii", 0, "=_" TOKEN ".00000002",
        { W(NULL, "rfc822; bob@example.net", "failed", "5.1.1", NULL,
            "smtp; 550 5.1.1 see --=_" TOKEN ".00000001", D_LAST, NULL) },
    },
    {
        "LF-only original, expanded report",
        "alice@example.org", ENV_RET_HDRS, NULL, 0, "orig.4@example.org", T_ARR,
        { { "list@example.net", ENV_NOTIFY_SUCCESS, NULL, NULL } },
        { R(0, DSN_ACTION_EXPANDED, NULL, NULL, NULL, NULL, T_LAST, 0) }, 1,
        "Subject: lf only\nX-Other: yes\n\nbody\n", 0, DSN_RETURN_MAX_DEFAULT,
        SUBJ_OK, "<orig.4@example.org>", DS, NULL, D_ARR,
        DSN_RETURNED_HEADERS, "text/rfc822-headers", "X-Other: yes", "body",
        { "mailing list or alias", NULL, NULL },
        "us-ascii", 0, NULL,
        { W(NULL, "rfc822; list@example.net", "expanded", "2.0.0", NULL, NULL, D_LAST, NULL) },
    },
};

/* ---- GMime helpers ---- */

/* msg_parse - a GMimeMessage from bytes; the caller unrefs it */
static GMimeMessage *msg_parse(const char *p, size_t n)
{
    GMimeStream *s = g_mime_stream_mem_new_with_buffer(p, n);
    GMimeParser *parser = g_mime_parser_new_with_stream(s);
    GMimeMessage *m = g_mime_parser_construct_message(parser, NULL);

    g_object_unref(parser);
    g_object_unref(s);
    assert_non_null(m);
    return m;
}

/* part_bytes - decoded content of a leaf part, NUL-terminated, with CR
 * removed; the caller frees it */
static char *part_bytes(GMimeObject *o)
{
    GMimeStream *ms = g_mime_stream_mem_new();
    GByteArray *ba;
    char *out;
    size_t k = 0;

    assert_true(GMIME_IS_PART(o));
    assert_true(g_mime_data_wrapper_write_to_stream(g_mime_part_get_content(GMIME_PART(o)), ms) >= 0);
    ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(ms));
    out = xmalloc(ba->len + 1);
    for (guint i = 0; i < ba->len; i++)
        if (ba->data[i] != '\r')
            out[k++] = (char) ba->data[i];
    out[k] = '\0';
    g_object_unref(ms);
    return out;
}

/* content_type - "type/subtype" of o; the caller g_free()s it */
static char *content_type(GMimeObject *o)
{
    return g_mime_content_type_get_mime_type(g_mime_object_get_content_type(o));
}

/* assert_header - header name of o equals want, or is absent (want NULL) */
static void assert_header(GMimeObject *o, const char *name, const char *want)
{
    const char *v = g_mime_object_get_header(o, name);

    if (want == NULL) {
        if (v != NULL)
            print_error("unexpected %s: %s\n", name, v);
        assert_null(v);
        return;
    }
    if (v == NULL)
        print_error("missing %s\n", name);
    assert_non_null(v);
    assert_string_equal(v, want);
}

/* assert_lines - CRLF endings only, no line over 998 octets, ends in CRLF */
static void assert_lines(const char *p, size_t n)
{
    size_t col = 0;

    assert_true(n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n');
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r') {
            assert_true(i + 1 < n && p[i + 1] == '\n');
            assert_true(col <= 998);
            col = 0;
            i++;
        } else {
            assert_true(p[i] != '\n');
            col++;
        }
    }
}

/* squash - s with every run of whitespace (line breaks of wrapped prose
 * included) turned into one space, in place; returns s */
static char *squash(char *s)
{
    char *w = s;
    int space = 0;

    for (char *r = s; *r != '\0'; r++) {
        if (*r == ' ' || *r == '\t' || *r == '\r' || *r == '\n') {
            space = 1;
            continue;
        }
        if (space && w != s)
            *w++ = ' ';
        space = 0;
        *w++ = *r;
    }
    *w = '\0';
    return s;
}

/* count - occurrences of needle in p[0..n) */
static size_t count(const char *p, size_t n, const char *needle)
{
    size_t c = 0, nl = strlen(needle);

    for (size_t i = 0; i + nl <= n; i++)
        if (memcmp(p + i, needle, nl) == 0)
            c++;
    return c;
}

/* build_env - the case's envelope */
static void build_env(const struct compose_case *c, struct envelope *env)
{
    env_init(env);
    env_set(&env->sender, c->sender);
    env->ret = c->ret;
    env_set(&env->envid, c->envid);
    env->flags = c->flags;
    env_set(&env->message_id, c->message_id);
    env->arrival_us = c->arrival;
    for (size_t i = 0; i < 3 && c->rcpts[i].addr != NULL; i++) {
        struct env_rcpt r = { 0 };

        r.addr = xstrdup(c->rcpts[i].addr);
        r.notify = c->rcpts[i].notify;
        env_set(&r.orcpt_type, c->rcpts[i].orcpt_type);
        env_set(&r.orcpt_addr, c->rcpts[i].orcpt_addr);
        env_add_rcpt(env, &r);
    }
}

/* build_msg - the case's original message (NULL when unavailable) */
static char *build_msg(const struct compose_case *c, size_t *lenp)
{
    struct buf b;

    *lenp = 0;
    if (c->msg == NULL)
        return NULL;
    buf_init(&b, OUT_MAX);
    assert_int_equal(buf_append_str(&b, c->msg), SY_OK);
    while (buf_len(&b) < strlen(c->msg) + c->pad)
        assert_int_equal(buf_append_str(&b, "padding padding padding padding padding padding\r\n"),
                         SY_OK);
    return buf_take(&b, lenp);
}

/* check_block - one per-recipient block of part 2 */
static void check_block(const char *block, const struct block_want *w)
{
    GMimeMessage *m = msg_parse(block, strlen(block));
    GMimeObject *o = GMIME_OBJECT(m);

    assert_header(o, "Original-Recipient", w->original);
    assert_header(o, "Final-Recipient", w->final);
    assert_header(o, "Action", w->action);
    assert_header(o, "Status", w->status);
    assert_header(o, "Remote-MTA", w->remote);
    assert_header(o, "Diagnostic-Code", w->diag);
    assert_header(o, "Last-Attempt-Date", w->last);
    assert_header(o, "Will-Retry-Until", w->until);
    assert_header(o, "X-Injected", NULL);
    g_object_unref(m);
}

/* check_status - part 2: per-message block, then one block per result */
static void check_status(const struct compose_case *c, GMimeObject *part)
{
    char *body = part_bytes(part), *p = body, *blocks[4];
    size_t n = 0;
    GMimeMessage *m;

    /* Blocks are separated by one empty line (RFC 3464 §2.1). */
    while (n < 4) {
        char *e = strstr(p, "\n\n");

        blocks[n++] = p;
        if (e == NULL)
            break;
        e[1] = '\0';
        p = e + 2;
        if (*p == '\0')
            break;
    }
    assert_int_equal(n, 1 + c->nres);
    m = msg_parse(blocks[0], strlen(blocks[0]));
    assert_header(GMIME_OBJECT(m), "Reporting-MTA", "dns; " HOST);
    assert_header(GMIME_OBJECT(m), "Original-Envelope-Id", c->envid_field);
    assert_header(GMIME_OBJECT(m), "Arrival-Date", c->arrival_field);
    assert_header(GMIME_OBJECT(m), "X-Injected", NULL);
    g_object_unref(m);
    for (size_t k = 0; k < c->nres; k++)
        check_block(blocks[1 + k], &c->want[k]);
    free(body);
}

/* check_part3 - the returned original */
static void check_part3(const struct compose_case *c, GMimeObject *part)
{
    char *type = content_type(part), *text;

    assert_string_equal(type, c->part3);
    g_free(type);
    if (GMIME_IS_MESSAGE_PART(part)) {
        GMimeMessage *orig = g_mime_message_part_get_message(GMIME_MESSAGE_PART(part));
        GMimeStream *ms = g_mime_stream_mem_new();
        GByteArray *ba;

        assert_non_null(orig);
        assert_true(g_mime_object_write_to_stream(GMIME_OBJECT(orig), NULL, ms) >= 0);
        ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(ms));
        text = xmemdup0(ba->data, ba->len);
        g_object_unref(ms);
    } else {
        text = part_bytes(part);
        /* Headers only: the section ends before the empty line. */
        assert_int_equal(c->returned, DSN_RETURNED_HEADERS);
        assert_null(strstr(text, "\n\n"));
    }
    assert_non_null(strstr(text, c->part3_has));
    if (c->part3_lacks != NULL)
        assert_null(strstr(text, c->part3_lacks));
    free(text);
}

/* check_dsn - everything about one composed DSN */
static void check_dsn(const struct compose_case *c, const char *out, size_t len,
                      const struct dsn_info *info)
{
    GMimeMessage *m = msg_parse(out, len);
    GMimeObject *top = GMIME_OBJECT(m), *body, *p1, *p2;
    InternetAddressList *from = g_mime_message_get_from(m), *to = g_mime_message_get_to(m);
    GMimeContentType *ct;
    char *type, *text, want_boundary[DSN_BOUNDARY_SIZE];
    const char *boundary;

    assert_lines(out, len);
    (void) snprintf(want_boundary, sizeof(want_boundary), "%s",
                    c->boundary != NULL ? c->boundary : "=_" TOKEN);
    assert_string_equal(info->boundary, want_boundary);
    assert_int_equal(info->returned, c->returned);
    assert_int_equal(info->flags, c->out_flags);

    /* Top-level header. */
    assert_int_equal(internet_address_list_length(from), 1);
    assert_string_equal(internet_address_mailbox_get_addr(
                            INTERNET_ADDRESS_MAILBOX(internet_address_list_get_address(from, 0))),
                        "MAILER-DAEMON@" HOST);
    assert_int_equal(internet_address_list_length(to), 1);
    assert_string_equal(internet_address_mailbox_get_addr(
                            INTERNET_ADDRESS_MAILBOX(internet_address_list_get_address(to, 0))),
                        c->sender);
    assert_string_equal(g_mime_message_get_subject(m), c->subject);
    assert_string_equal(g_mime_message_get_message_id(m), TOKEN "@" HOST);
    assert_header(top, "Date", D_NOW);
    assert_header(top, "Auto-Submitted", "auto-replied");
    assert_header(top, "MIME-Version", "1.0");
    assert_header(top, "In-Reply-To", c->refs);
    assert_header(top, "References", c->refs);
    assert_header(top, "X-Injected", NULL);

    /* multipart/report; report-type=delivery-status (RFC 6522). */
    body = g_mime_message_get_mime_part(m);
    assert_non_null(body);
    assert_true(GMIME_IS_MULTIPART(body));
    ct = g_mime_object_get_content_type(body);
    type = content_type(body);
    assert_string_equal(type, "multipart/report");
    g_free(type);
    assert_string_equal(g_mime_content_type_get_parameter(ct, "report-type"), "delivery-status");
    boundary = g_mime_multipart_get_boundary(GMIME_MULTIPART(body));
    assert_string_equal(boundary, want_boundary);
    assert_int_equal(g_mime_multipart_get_count(GMIME_MULTIPART(body)),
                     c->returned == DSN_RETURNED_NONE ? 2 : 3);
    /* Delimiters only: the boundary occurs nowhere else in the body. */
    {
        char delim[DSN_BOUNDARY_SIZE + 4];
        const char *b0 = strstr(out, "\r\n\r\n");

        (void) snprintf(delim, sizeof(delim), "--%s", want_boundary);
        assert_non_null(b0);
        assert_int_equal(count(b0, len - (size_t) (b0 - out), want_boundary),
                         (c->returned == DSN_RETURNED_NONE ? 2 : 3) + 1);
        assert_int_equal(count(b0, len - (size_t) (b0 - out), delim),
                         (c->returned == DSN_RETURNED_NONE ? 2 : 3) + 1);
    }

    /* Part 1: human-readable. */
    p1 = g_mime_multipart_get_part(GMIME_MULTIPART(body), 0);
    type = content_type(p1);
    assert_string_equal(type, "text/plain");
    g_free(type);
    assert_string_equal(g_mime_object_get_content_type_parameter(p1, "charset"), c->charset);
    text = squash(part_bytes(p1));
    assert_non_null(strstr(text, "This is the mail system at host " HOST "."));
    for (size_t k = 0; k < 3; k++) {
        if (c->text_has[k] == NULL)
            continue;
        if (strstr(text, c->text_has[k]) == NULL)
            print_error("text part lacks \"%s\":\n%s\n", c->text_has[k], text);
        assert_non_null(strstr(text, c->text_has[k]));
    }
    free(text);

    /* Part 2: machine-readable. */
    p2 = g_mime_multipart_get_part(GMIME_MULTIPART(body), 1);
    type = content_type(p2);
    assert_string_equal(type, c->report);
    g_free(type);
    check_status(c, p2);

    /* Part 3: the original. */
    if (c->returned != DSN_RETURNED_NONE)
        check_part3(c, g_mime_multipart_get_part(GMIME_MULTIPART(body), 2));
    g_object_unref(m);
}

static void test_compose_table(void **state)
{
    (void) state;
    for (size_t k = 0; k < sizeof(compose_cases) / sizeof(compose_cases[0]); k++) {
        const struct compose_case *c = &compose_cases[k];
        struct envelope env;
        struct dsn_input in;
        struct dsn_info info;
        struct sy_err err;
        struct buf out;
        size_t mlen;
        char *msg;

        print_message("compose case %s\n", c->name);
        build_env(c, &env);
        msg = build_msg(c, &mlen);
        memset(&in, 0, sizeof(in));
        in.env = &env;
        in.rcpts = c->res;
        in.nrcpts = c->nres;
        in.reporting_mta = HOST;
        in.token = TOKEN;
        in.now_us = T_NOW;
        in.msg = msg;
        in.msg_len = mlen;
        in.return_max = c->return_max;
        buf_init(&out, OUT_MAX);
        sy_err_clear(&err);
        assert_int_equal(dsn_compose(&in, &out, &info, &err), SY_OK);
        check_dsn(c, buf_str(&out), buf_len(&out), &info);
        buf_free(&out);
        free(msg);
        env_free(&env);
    }
}

/* ---- long values: folding and line breaking ---- */

static void test_long_values(void **state)
{
    struct envelope env;
    struct dsn_rcpt res = { 0 };
    struct dsn_input in;
    struct dsn_info info;
    struct buf out, diag, msg, want;
    struct env_rcpt r = { 0 };
    GMimeMessage *m, *blk;
    GMimeObject *body;
    char *st, *second, *hdrs;
    const char *v;

    (void) state;
    /* A 2000-word reply (10 KB) folds at spaces; unfolding gives back its
     * first DSN_DIAG_MAX octets. */
    buf_init(&diag, OUT_MAX);
    assert_int_equal(buf_append_str(&diag, "550 5.7.1"), SY_OK);
    for (int i = 0; i < 2000; i++)
        assert_int_equal(buf_printf(&diag, " w%d", i), SY_OK);
    /* An original header line of 2500 octets without a space. */
    buf_init(&msg, OUT_MAX);
    assert_int_equal(buf_append_str(&msg, "Subject: short\r\nX-Long: "), SY_OK);
    for (int i = 0; i < 2500; i++)
        assert_int_equal(buf_append_byte(&msg, (unsigned char) ('a' + i % 26)), SY_OK);
    assert_int_equal(buf_append_str(&msg, "\r\nX-After: 1\r\n\r\nbody\r\n"), SY_OK);

    env_init(&env);
    env_set(&env.sender, "alice@example.org");
    r.addr = xstrdup("bob@example.net");
    env_add_rcpt(&env, &r);
    res.rcpt = 0;
    res.action = DSN_ACTION_FAILED;
    res.status = "5.7.1";
    res.diagnostic = buf_str(&diag);
    memset(&in, 0, sizeof(in));
    in.env = &env;
    in.rcpts = &res;
    in.nrcpts = 1;
    in.reporting_mta = HOST;
    in.token = TOKEN;
    in.now_us = T_NOW;
    in.msg = buf_str(&msg);
    in.msg_len = buf_len(&msg);
    in.return_max = DSN_RETURN_MAX_DEFAULT;
    buf_init(&out, OUT_MAX);
    assert_int_equal(dsn_compose(&in, &out, &info, NULL), SY_OK);
    assert_lines(buf_str(&out), buf_len(&out));

    m = msg_parse(buf_str(&out), buf_len(&out));
    body = g_mime_message_get_mime_part(m);
    st = part_bytes(g_mime_multipart_get_part(GMIME_MULTIPART(body), 1));
    second = strstr(st, "\n\n");
    assert_non_null(second);
    blk = msg_parse(second + 2, strlen(second + 2));
    v = g_mime_object_get_header(GMIME_OBJECT(blk), "Diagnostic-Code");
    assert_non_null(v);
    /* DSN_DIAG_MAX cut the reply: a prefix of it, then the marker. */
    buf_init(&want, OUT_MAX);
    assert_int_equal(buf_printf(&want, "smtp; %s", buf_str(&diag)), SY_OK);
    assert_true(strlen(v) < buf_len(&want));
    assert_true(strlen(v) > DSN_DIAG_MAX - 16);
    assert_string_equal(v + strlen(v) - 6, " [...]");
    assert_memory_equal(v, buf_str(&want), strlen(v) - 12);
    g_object_unref(blk);

    /* The long header line is broken into continuation lines: the field
     * is still there, and the next field after it. */
    hdrs = part_bytes(g_mime_multipart_get_part(GMIME_MULTIPART(body), 2));
    assert_non_null(strstr(hdrs, "X-Long: abcdefghij"));
    assert_non_null(strstr(hdrs, "\nX-After: 1\n"));
    assert_null(strstr(hdrs, "body"));
    free(hdrs);
    free(st);
    g_object_unref(m);
    buf_free(&want);
    buf_free(&out);
    buf_free(&msg);
    buf_free(&diag);
    env_free(&env);
}

/* ---- errors: exact code, output unchanged ---- */

struct error_case {
    const char *name;
    const char *sender;
    const char *token;
    const char *host;
    size_t rcpt;
    size_t nres;
    int action;
    const char *status;
    const char *diag_type;
    int64_t now;
    int64_t last;
    size_t out_max;
    int rc;
    const char *enh;
};

static const struct error_case error_cases[] = {
    { "null sender", "", TOKEN, HOST, 0, 1, DSN_ACTION_FAILED, "5.1.1", NULL, T_NOW, 0,
      OUT_MAX, SY_EPERM, "5.1.7" },
    { "missing sender", NULL, TOKEN, HOST, 0, 1, DSN_ACTION_FAILED, "5.1.1", NULL, T_NOW, 0,
      OUT_MAX, SY_EPERM, "5.1.7" },
    { "sender with CR LF", "a@x\r\nBcc: v@x", TOKEN, HOST, 0, 1, DSN_ACTION_FAILED, "5.1.1",
      NULL, T_NOW, 0, OUT_MAX, SY_ESYNTAX, "5.1.7" },
    { "sender bad UTF-8", "a\xff@x", TOKEN, HOST, 0, 1, DSN_ACTION_FAILED, "5.1.1", NULL,
      T_NOW, 0, OUT_MAX, SY_ESYNTAX, "5.1.7" },
    { "no results", "a@x", TOKEN, HOST, 0, 0, DSN_ACTION_FAILED, "5.1.1", NULL, T_NOW, 0,
      OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "index out of range", "a@x", TOKEN, HOST, 1, 1, DSN_ACTION_FAILED, "5.1.1", NULL, T_NOW,
      0, OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "action 0", "a@x", TOKEN, HOST, 0, 1, 0, NULL, NULL, T_NOW, 0, OUT_MAX, SY_ESYNTAX,
      "5.3.0" },
    { "action 6", "a@x", TOKEN, HOST, 0, 1, 6, NULL, NULL, T_NOW, 0, OUT_MAX, SY_ESYNTAX,
      "5.3.0" },
    { "status too short", "a@x", TOKEN, HOST, 0, 1, DSN_ACTION_FAILED, "5.1", NULL, T_NOW, 0,
      OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "status trailing", "a@x", TOKEN, HOST, 0, 1, DSN_ACTION_FAILED, "5.1.1 ", NULL, T_NOW, 0,
      OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "status 4 digits", "a@x", TOKEN, HOST, 0, 1, DSN_ACTION_FAILED, "5.1.1000", NULL, T_NOW,
      0, OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "status empty subject", "a@x", TOKEN, HOST, 0, 1, DSN_ACTION_FAILED, "5..1", NULL, T_NOW,
      0, OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "failed with 2.x.x", "a@x", TOKEN, HOST, 0, 1, DSN_ACTION_FAILED, "2.0.0", NULL, T_NOW, 0,
      OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "delayed with 5.x.x", "a@x", TOKEN, HOST, 0, 1, DSN_ACTION_DELAYED, "5.0.0", NULL, T_NOW,
      0, OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "delivered with 4.x.x", "a@x", TOKEN, HOST, 0, 1, DSN_ACTION_DELIVERED, "4.0.0", NULL,
      T_NOW, 0, OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "diag type with ';'", "a@x", TOKEN, HOST, 0, 1, DSN_ACTION_FAILED, "5.1.1", "smtp;x",
      T_NOW, 0, OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "diag type with CR", "a@x", TOKEN, HOST, 0, 1, DSN_ACTION_FAILED, "5.1.1", "x\r",
      T_NOW, 0, OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "empty token", "a@x", "", HOST, 0, 1, DSN_ACTION_FAILED, "5.1.1", NULL, T_NOW, 0,
      OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "token with space", "a@x", "a b", HOST, 0, 1, DSN_ACTION_FAILED, "5.1.1", NULL, T_NOW, 0,
      OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "token leading dot", "a@x", ".a", HOST, 0, 1, DSN_ACTION_FAILED, "5.1.1", NULL, T_NOW, 0,
      OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "token double dot", "a@x", "a..b", HOST, 0, 1, DSN_ACTION_FAILED, "5.1.1", NULL, T_NOW, 0,
      OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "token 65 octets", "a@x",
      "12345678901234567890123456789012345678901234567890123456789012345", HOST, 0, 1,
      DSN_ACTION_FAILED, "5.1.1", NULL, T_NOW, 0, OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "host empty", "a@x", TOKEN, "", 0, 1, DSN_ACTION_FAILED, "5.1.1", NULL, T_NOW, 0,
      OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "host with CR LF", "a@x", TOKEN, "h\r\nX: y", 0, 1, DSN_ACTION_FAILED, "5.1.1", NULL,
      T_NOW, 0, OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "host leading hyphen", "a@x", TOKEN, "-h.example", 0, 1, DSN_ACTION_FAILED, "5.1.1",
      NULL, T_NOW, 0, OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "negative now", "a@x", TOKEN, HOST, 0, 1, DSN_ACTION_FAILED, "5.1.1", NULL, -1, 0,
      OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "now past year 9999", "a@x", TOKEN, HOST, 0, 1, DSN_ACTION_FAILED, "5.1.1", NULL,
      (int64_t) 253402300800 * 1000000, 0, OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "negative last attempt", "a@x", TOKEN, HOST, 0, 1, DSN_ACTION_FAILED, "5.1.1", NULL,
      T_NOW, -5, OUT_MAX, SY_ESYNTAX, "5.3.0" },
    { "output does not fit", "a@x", TOKEN, HOST, 0, 1, DSN_ACTION_FAILED, "5.1.1", NULL, T_NOW,
      T_LAST, 600, SY_ETOOBIG, "5.3.4" },
};

static void test_error_table(void **state)
{
    (void) state;
    for (size_t k = 0; k < sizeof(error_cases) / sizeof(error_cases[0]); k++) {
        const struct error_case *c = &error_cases[k];
        struct envelope env;
        struct env_rcpt r = { 0 };
        struct dsn_rcpt res = { 0 };
        struct dsn_input in;
        struct dsn_info info;
        struct sy_err err;
        struct buf out;

        print_message("error case %s\n", c->name);
        env_init(&env);
        env_set(&env.sender, c->sender);
        env.arrival_us = T_ARR;
        r.addr = xstrdup("bob@example.net");
        env_add_rcpt(&env, &r);
        res.rcpt = c->rcpt;
        res.action = c->action;
        res.status = c->status;
        res.diag_type = c->diag_type;
        res.diagnostic = "550 5.1.1 unknown";
        res.last_attempt_us = c->last;
        memset(&in, 0, sizeof(in));
        in.env = &env;
        in.rcpts = &res;
        in.nrcpts = c->nres;
        in.reporting_mta = c->host;
        in.token = c->token;
        in.now_us = c->now;
        in.msg = MSG;
        in.msg_len = strlen(MSG);
        in.return_max = DSN_RETURN_MAX_DEFAULT;
        memset(&info, 0x5a, sizeof(info));
        buf_init(&out, c->out_max);
        assert_int_equal(buf_append_str(&out, "kept"), SY_OK);
        sy_err_clear(&err);
        assert_int_equal(dsn_compose(&in, &out, &info, &err), c->rc);
        assert_int_equal(err.code, c->rc);
        assert_string_equal(err.enh, c->enh);
        assert_true(err.text[0] != '\0');
        /* A failed call leaves the output and info as they were. */
        assert_int_equal(buf_len(&out), 4);
        assert_string_equal(buf_str(&out), "kept");
        assert_int_equal(info.flags, 0x5a5a5a5a);
        buf_free(&out);
        env_free(&env);
    }
}

static void test_no_input(void **state)
{
    struct buf out;
    struct sy_err err;
    struct dsn_input in;

    (void) state;
    buf_init(&out, OUT_MAX);
    assert_int_equal(dsn_compose(NULL, &out, NULL, &err), SY_ESYNTAX);
    assert_string_equal(err.enh, "5.3.0");
    memset(&in, 0, sizeof(in));
    assert_int_equal(dsn_compose(&in, &out, NULL, &err), SY_ESYNTAX);
    assert_string_equal(err.enh, "5.3.0");
    assert_int_equal(buf_len(&out), 0);
}

/* Appending to a non-empty buffer keeps what was there. */
static void test_appends(void **state)
{
    struct envelope env;
    struct env_rcpt r = { 0 };
    struct dsn_rcpt res = { 0 };
    struct dsn_input in;
    struct buf out;

    (void) state;
    env_init(&env);
    env_set(&env.sender, "a@example.org");
    r.addr = xstrdup("b@example.net");
    env_add_rcpt(&env, &r);
    res.action = DSN_ACTION_FAILED;
    memset(&in, 0, sizeof(in));
    in.env = &env;
    in.rcpts = &res;
    in.nrcpts = 1;
    in.reporting_mta = "[192.0.2.1]";
    in.token = "t";
    in.now_us = T_NOW;
    buf_init(&out, OUT_MAX);
    assert_int_equal(buf_append_str(&out, "X-Prefix: 1\r\n"), SY_OK);
    assert_int_equal(dsn_compose(&in, &out, NULL, NULL), SY_OK);
    assert_memory_equal(buf_str(&out), "X-Prefix: 1\r\nFrom: Mail Delivery System "
                        "<MAILER-DAEMON@[192.0.2.1]>\r\n", 67);
    assert_lines(buf_str(&out), buf_len(&out));
    buf_free(&out);
    env_free(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wanted_table),
        cmocka_unit_test(test_action_names),
        cmocka_unit_test(test_compose_table),
        cmocka_unit_test(test_long_values),
        cmocka_unit_test(test_error_table),
        cmocka_unit_test(test_no_input),
        cmocka_unit_test(test_appends),
    };
    int rc;

    g_mime_init();
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    g_mime_shutdown();
    return rc;
}
