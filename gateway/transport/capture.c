/* capture.c - the capture transport */
#include "gateway/transport/capture.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "gateway/util/clock.h"
#include "gateway/util/io.h"

/* capture_local_is - local part of addr is word, or word+tag */
static int capture_local_is(const char *addr, const char *word)
{
    size_t n = strlen(word);

    return strncasecmp(addr, word, n) == 0 && (addr[n] == '@' || addr[n] == '+' || addr[n] == '\0');
}

/* capture_write_file - write one file atomically: tmp, fsync, rename */
static int capture_write_file(const char *dir, const char *name, int srcfd, uint64_t off,
                              uint64_t len, const char *text, struct sy_err *err)
{
    char tmp[4096], final[4096];
    int fd, rc = SY_OK;

    if ((size_t) snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name) >= sizeof(tmp) ||
        (size_t) snprintf(final, sizeof(final), "%s/%s", dir, name) >= sizeof(final))
        return sy_err_set(err, SY_ETEMP, "4.3.0", "capture: path too long");
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return sy_err_set(err, SY_ETEMP, "4.3.0", "capture: %s: %s", tmp, strerror(errno));
    if (text != NULL) {
        rc = io_file_write_all(fd, text, strlen(text));
    } else {
        char chunk[65536];

        while (len > 0 && rc == SY_OK) {
            size_t want = len < sizeof(chunk) ? (size_t) len : sizeof(chunk);
            ssize_t n = pread(srcfd, chunk, want, (off_t) off);

            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                rc = SY_EIO;
                break;
            }
            rc = io_file_write_all(fd, chunk, (size_t) n);
            off += (uint64_t) n;
            len -= (uint64_t) n;
        }
    }
    if (rc == SY_OK && fsync(fd) < 0)
        rc = SY_EIO;
    if (close(fd) < 0 && rc == SY_OK)
        rc = SY_EIO;
    if (rc == SY_OK && rename(tmp, final) < 0)
        rc = SY_EIO;
    if (rc != SY_OK) {
        int e = errno;

        (void) unlink(tmp);
        return sy_err_set(err, SY_ETEMP, "4.3.0", "capture: writing %s: %s", final, strerror(e));
    }
    return SY_OK;
}

/* capture_json - the envelope of one delivered recipient */
static char *capture_json(const char *qid, unsigned idx, const struct envelope *env)
{
    cJSON *o = cJSON_CreateObject();
    char when[40], notify[64];
    const struct env_rcpt *r = &env->rcpts[idx];
    char *s;

    cJSON_AddStringToObject(o, "qid", qid);
    cJSON_AddNumberToObject(o, "rcpt_index", idx);
    cJSON_AddStringToObject(o, "sender", env->sender);
    cJSON_AddStringToObject(o, "recipient", r->addr);
    cJSON_AddStringToObject(o, "notify", env_notify_str(r->notify, notify, sizeof(notify)));
    if (r->orcpt_addr != NULL)
        cJSON_AddStringToObject(o, "orcpt", r->orcpt_addr);
    if (env->envid != NULL)
        cJSON_AddStringToObject(o, "envid", env->envid);
    cJSON_AddStringToObject(o, "ret", env->ret == ENV_RET_FULL ? "FULL" : env->ret == ENV_RET_HDRS ? "HDRS" : "");
    cJSON_AddStringToObject(o, "listener", env->listener != NULL ? env->listener : "");
    cJSON_AddStringToObject(o, "client_addr", env->client_addr != NULL ? env->client_addr : "");
    cJSON_AddStringToObject(o, "client_name", env->client_name != NULL ? env->client_name : "");
    if (env->message_id != NULL)
        cJSON_AddStringToObject(o, "message_id", env->message_id);
    cJSON_AddStringToObject(o, "arrival", clock_iso8601(env->arrival_us, when, sizeof(when)));
    cJSON_AddBoolToObject(o, "smtputf8", (env->flags & ENV_F_SMTPUTF8) != 0);
    cJSON_AddBoolToObject(o, "eightbit", (env->flags & ENV_F_8BIT) != 0);
    cJSON_AddBoolToObject(o, "requiretls", (env->flags & ENV_F_REQUIRETLS) != 0);
    s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int capture_deliver(const char *dir, const char *qid, unsigned idx,
                    const struct envelope *env, int msgfd, uint64_t msg_off,
                    uint64_t msg_len, char *reply, size_t replysize,
                    struct sy_err *err)
{
    char name[64];
    const char *addr;
    char *json;
    int rc;

    if (idx >= env->nrcpt)
        return sy_err_set(err, SY_EPERM, "5.3.0", "capture: no recipient %u", idx);
    addr = env->rcpts[idx].addr;
    if (capture_local_is(addr, "tempfail"))
        return sy_err_set(err, SY_ETEMP, "4.2.0", "451 4.2.0 capture: simulated temporary failure");
    if (capture_local_is(addr, "permfail"))
        return sy_err_set(err, SY_EPERM, "5.1.1", "550 5.1.1 capture: simulated permanent failure");

    /* The envelope first: a reader that sees the .eml finds its .json. */
    json = capture_json(qid, idx, env);
    if (json == NULL)
        return sy_err_set(err, SY_ETEMP, "4.3.0", "capture: cannot encode the envelope");
    (void) snprintf(name, sizeof(name), "%s.%u.json", qid, idx);
    rc = capture_write_file(dir, name, -1, 0, 0, json, err);
    cJSON_free(json);
    if (rc != SY_OK)
        return rc;
    (void) snprintf(name, sizeof(name), "%s.%u.eml", qid, idx);
    rc = capture_write_file(dir, name, msgfd, msg_off, msg_len, NULL, err);
    if (rc != SY_OK)
        return rc;
    (void) snprintf(reply, replysize, "250 2.0.0 captured as %s", name);
    return SY_OK;
}
