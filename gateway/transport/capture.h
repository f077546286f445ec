/* capture.h - the capture transport: delivered mail lands as local files
 *
 * For localserve and tests. Each delivered recipient becomes
 * DIR/<qid>.<idx>.eml (the message, byte-exact) and DIR/<qid>.<idx>.json
 * (the envelope), each written to a temporary name, fsync'd and renamed,
 * so a reader never sees half a file. Special local parts simulate
 * failures: "tempfail" (or "tempfail+tag") gives 451 4.2.0, "permfail"
 * gives 550 5.1.1.
 *
 * Thread safety: reentrant.
 */
#ifndef SY_TRANSPORT_CAPTURE_H
#define SY_TRANSPORT_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/envelope.h"
#include "gateway/util/err.h"

/* Delivers recipient idx of env, whose message is msg_len bytes at msg_off
 * in msgfd (borrowed). SY_OK with the reply line in reply; otherwise
 * SY_ETEMP or SY_EPERM with err carrying the reply's status and text. */
int capture_deliver(const char *dir, const char *qid, unsigned idx,
                    const struct envelope *env, int msgfd, uint64_t msg_off,
                    uint64_t msg_len, char *reply, size_t replysize,
                    struct sy_err *err);

#endif
