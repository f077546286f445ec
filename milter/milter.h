/* milter.h - the milter front end (libmilter): capture and policy modes
 *
 * Capture mode: the MTA hands switchyard the message. The envelope comes
 * from MAIL/RCPT and the macros ({i}, {auth_authen}, {client_addr},
 * {client_name}, {daemon_name}); the message is rebuilt byte-exact from
 * the header (SMFIP_HDR_LEADSPC) and body callbacks and streamed into an
 * intake transaction. At end of message the transaction is committed
 * (spool fsync + Redis) BEFORE the reply: then smfi_delrcpt() for every
 * captured recipient and ACCEPT, or DISCARD when all were captured. A
 * failed commit is 451 4.3.0 + TEMPFAIL, so the MTA keeps the message.
 * When the MTA passes no Received field of its own (Postfix), one for the
 * hop into the MTA is put on top. That field (ours, or the MTA's naming
 * {i}) stays out of the duplicate digest, so the client's retry of a
 * message whose reply was lost is recognised by intake and not queued
 * twice. Size, spool room and the recipient limit are checked per
 * captured recipient at RCPT; recipients the MTA keeps are never refused.
 *
 * Policy mode: the MTA keeps delivering. A matching hold rule quarantines
 * the message in the MTA's hold queue (smfi_quarantine, the rule as the
 * reason); optional headers name the route and the hold rule; RCPT goes
 * through intake_check_rcpt(), whose refusal is 550 5.1.1 with the
 * configured text.
 *
 * libmilter keeps one listener per process (smfi_main is process-wide):
 * one server per process. With several milter.listeners the daemon
 * (gateway/daemon.c) forks one child process per listener after the
 * first, and each child builds its server with milter_server_new_at().
 * smfi_main runs in a thread of
 * its own; per connection, libmilter runs its own threads that call our
 * callbacks. Per-connection state hangs off smfi_setpriv() (OpenDKIM's
 * connctx), the per-message part is reset at end of message and abort,
 * all of it is freed at close.
 *
 * Signals: libmilter starts a thread that also waits for SIGTERM, SIGINT
 * and SIGHUP. Should it take one, the milter stops and the server sends
 * the process SIGTERM, so the daemon stops as a whole.
 *
 * Thread safety: new/start/stop/free from the main thread only; one server
 * per process.
 */
#ifndef SY_MILTER_H
#define SY_MILTER_H

#include "gateway/config.h"
#include "gateway/intake.h"
#include "gateway/util/err.h"

struct milter_server;   /* opaque */

/* Registers with libmilter and binds cfg->milter.listeners[0] (which must
 * exist). cfg and in are borrowed and must outlive the server. Returns a
 * new server owned by the caller (milter_server_free()), or NULL with err
 * set (also when a server exists already). */
struct milter_server *milter_server_new(const struct config *cfg, struct intake *in,
                                        struct sy_err *err);
/* The same for cfg->milter.listeners[idx] (idx < nlisteners). */
struct milter_server *milter_server_new_at(const struct config *cfg, size_t idx, struct intake *in,
                                           struct sy_err *err);
/* Starts smfi_main in its thread. SY_OK or SY_ETEMP. */
int milter_server_start(struct milter_server *m, struct sy_err *err);
/* Stops accepting, waits for callbacks in progress (a commit finishes),
 * aborts open transactions. Later callbacks answer TEMPFAIL. */
void milter_server_stop(struct milter_server *m);
/* Frees m (stopping it first if needed). NULL is a no-op. */
void milter_server_free(struct milter_server *m);

#endif
