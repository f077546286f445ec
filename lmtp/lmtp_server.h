/* lmtp_server.h - the LMTP listeners (RFC 2033): sockets, limits, deadlines
 *
 * Binds every configured listener (TCP or UNIX socket) in lmtp_server_new()
 * so the caller can drop privileges before lmtp_server_start() starts the
 * acceptor and, per connection, one session thread. Each session reads
 * commands under a per-command deadline and a line-length limit, hands the
 * envelope and message to intake, and answers one reply per accepted
 * recipient after DATA, only after intake_commit() said the message is
 * durable.
 *
 * Thread safety: new/start/stop/free from the main thread only.
 */
#ifndef SY_LMTP_SERVER_H
#define SY_LMTP_SERVER_H

#include "gateway/config.h"
#include "gateway/intake.h"
#include "gateway/util/err.h"

struct lmtp_server;     /* opaque */

/* Binds all listeners of cfg->lmtp. cfg and in are borrowed and must
 * outlive the server. Returns a new server owned by the caller
 * (lmtp_server_free()), or NULL with err set. */
struct lmtp_server *lmtp_server_new(const struct config *cfg, struct intake *in,
                                    struct sy_err *err);
/* Starts accepting. SY_OK or SY_ETEMP (thread creation failed). */
int lmtp_server_start(struct lmtp_server *s, struct sy_err *err);
/* Stops accepting; idle sessions get 421 4.3.2, a session inside DATA may
 * finish for a short grace period, then every connection is closed.
 * Returns when no session thread is left. */
void lmtp_server_stop(struct lmtp_server *s);
/* Closes the listeners (removing UNIX socket files) and frees s. */
void lmtp_server_free(struct lmtp_server *s);

#endif
