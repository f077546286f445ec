/* envelope.c - the envelope record */
#include "gateway/envelope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/util/xalloc.h"

void env_init(struct envelope *e)
{
    memset(e, 0, sizeof(*e));
}

void env_rcpt_free(struct env_rcpt *r)
{
    if (r == NULL)
        return;
    free(r->addr);
    free(r->orcpt_type);
    free(r->orcpt_addr);
    memset(r, 0, sizeof(*r));
}

void env_reset_txn(struct envelope *e)
{
    for (size_t i = 0; i < e->nrcpt; i++)
        env_rcpt_free(&e->rcpts[i]);
    e->nrcpt = 0;
    free(e->sender);
    free(e->envid);
    free(e->mta_qid);
    free(e->message_id);
    e->sender = e->envid = e->mta_qid = e->message_id = NULL;
    e->ret = ENV_RET_UNSET;
    e->body = ENV_BODY_UNSET;
    e->flags = 0;
    e->size_declared = 0;
    e->size = 0;
    e->hold_until = 0;
    e->arrival_us = 0;
}

void env_free(struct envelope *e)
{
    env_reset_txn(e);
    free(e->rcpts);
    free(e->listener);
    free(e->client_name);
    free(e->client_addr);
    free(e->auth_user);
    env_init(e);
}

void env_add_rcpt(struct envelope *e, struct env_rcpt *r)
{
    e->rcpts = xreallocarray_grow(e->rcpts, &e->rcpt_cap, e->nrcpt + 1, sizeof(*e->rcpts));
    e->rcpts[e->nrcpt++] = *r;
    memset(r, 0, sizeof(*r));
}

void env_set(char **field, const char *s)
{
    free(*field);
    *field = s == NULL ? NULL : xstrdup(s);
}

void env_copy(struct envelope *dst, const struct envelope *src)
{
    *dst = *src;
    dst->rcpts = NULL;
    dst->nrcpt = dst->rcpt_cap = 0;
    dst->sender = dst->envid = dst->listener = dst->client_name = NULL;
    dst->client_addr = dst->mta_qid = dst->auth_user = dst->message_id = NULL;
    env_set(&dst->sender, src->sender);
    env_set(&dst->envid, src->envid);
    env_set(&dst->listener, src->listener);
    env_set(&dst->client_name, src->client_name);
    env_set(&dst->client_addr, src->client_addr);
    env_set(&dst->mta_qid, src->mta_qid);
    env_set(&dst->auth_user, src->auth_user);
    env_set(&dst->message_id, src->message_id);
    for (size_t i = 0; i < src->nrcpt; i++) {
        struct env_rcpt r = { 0 };

        env_set(&r.addr, src->rcpts[i].addr);
        env_set(&r.orcpt_type, src->rcpts[i].orcpt_type);
        env_set(&r.orcpt_addr, src->rcpts[i].orcpt_addr);
        r.notify = src->rcpts[i].notify;
        env_add_rcpt(dst, &r);
    }
}

const char *env_notify_str(unsigned notify, char *dst, size_t dstsize)
{
    static const struct { unsigned bit; const char *name; } names[] = {
        { ENV_NOTIFY_NEVER, "NEVER" }, { ENV_NOTIFY_SUCCESS, "SUCCESS" },
        { ENV_NOTIFY_FAILURE, "FAILURE" }, { ENV_NOTIFY_DELAY, "DELAY" },
    };
    size_t o = 0;

    if (dstsize == 0)
        return dst;
    dst[0] = '\0';
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int n;

        if (!(notify & names[i].bit))
            continue;
        n = snprintf(dst + o, dstsize - o, "%s%s", o > 0 ? "," : "", names[i].name);
        if (n < 0 || (size_t) n >= dstsize - o)
            break;
        o += (size_t) n;
    }
    return dst;
}
