/* envelope.h - the envelope of one message: sender, recipients, DSN
 * parameters and intake facts
 *
 * A plain data record passed between lmtp/, milter/, intake, spool and
 * queue. Every string field is owned by the envelope (NUL-terminated,
 * validated before it is stored: no CR, LF or NUL) and freed by
 * env_free(). Optional strings are NULL when absent.
 *
 * Thread safety: an envelope belongs to one thread at a time.
 */
#ifndef SY_ENVELOPE_H
#define SY_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

/* RFC 3461 NOTIFY bits; 0 means the parameter was not given. */
enum env_notify {
    ENV_NOTIFY_SUCCESS = 1,
    ENV_NOTIFY_FAILURE = 2,
    ENV_NOTIFY_DELAY = 4,
    ENV_NOTIFY_NEVER = 8
};

enum env_ret { ENV_RET_UNSET = 0, ENV_RET_FULL, ENV_RET_HDRS };
enum env_body { ENV_BODY_UNSET = 0, ENV_BODY_7BIT, ENV_BODY_8BITMIME };

/* Envelope flags (bits of struct envelope.flags). */
enum env_flag {
    ENV_F_SMTPUTF8 = 1,     /* SMTPUTF8 MAIL parameter given */
    ENV_F_REQUIRETLS = 2,   /* REQUIRETLS MAIL parameter (RFC 8689) */
    ENV_F_8BIT = 4          /* the content actually holds 8-bit bytes */
};

struct env_rcpt {
    char *addr;             /* mailbox, source route stripped; never "" */
    unsigned notify;        /* enum env_notify bits; 0 = not given */
    char *orcpt_type;       /* ORCPT addr-type ("rfc822", "utf-8"), or NULL */
    char *orcpt_addr;       /* ORCPT address, xtext-decoded, or NULL */
};

struct envelope {
    char *sender;           /* reverse-path; "" for the null sender */
    int ret;                /* enum env_ret */
    char *envid;            /* ENVID, xtext-decoded, or NULL */
    int body;               /* enum env_body */
    unsigned flags;         /* enum env_flag bits */
    uint64_t size_declared; /* SIZE= value, 0 when not given */
    uint64_t size;          /* message bytes as stored: set by intake at
                             * commit and by spool_read() (from the spool
                             * trailer, not the envelope record) */
    int64_t hold_until;     /* FUTURERELEASE: unix time, 0 = none */
    int64_t arrival_us;     /* arrival time, unix microseconds */

    /* intake facts */
    char *listener;         /* name of the listener (or milter) */
    char *client_name;      /* the MTA's host name (LHLO), or NULL */
    char *client_addr;      /* peer address ("127.0.0.1", "unix"), or NULL */
    char *mta_qid;          /* the MTA's queue id, or NULL */
    char *auth_user;        /* authenticated user the MTA reported, or NULL */
    char *message_id;       /* Message-ID header value, or NULL */

    struct env_rcpt *rcpts; /* nrcpt entries, in RCPT order */
    size_t nrcpt;
    size_t rcpt_cap;
};

void env_init(struct envelope *e);
/* Frees every field and leaves e as after env_init(). */
void env_free(struct envelope *e);
/* Clears the per-transaction part (sender, DSN, flags, recipients) and
 * keeps the per-session intake facts (listener, client, auth). */
void env_reset_txn(struct envelope *e);

/* Appends a recipient; takes ownership of r's strings (r is zeroed). */
void env_add_rcpt(struct envelope *e, struct env_rcpt *r);
void env_rcpt_free(struct env_rcpt *r);

/* Replaces *field with a copy of s (NULL allowed). */
void env_set(char **field, const char *s);

/* Deep copy of src into dst (dst must be freshly env_init'ed). */
void env_copy(struct envelope *dst, const struct envelope *src);

/* Formats NOTIFY bits as "SUCCESS,FAILURE" / "NEVER" / "" into dst. */
const char *env_notify_str(unsigned notify, char *dst, size_t dstsize);

#endif
