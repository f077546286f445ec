/* daemon.h - run the gateway: spool, Redis, reconciliation, listeners, workers
 *
 * Start-up order (STYLE §9): open the spool (taking its lock), bind the
 * listeners, drop privileges, reconcile the spool with Redis, start the
 * session and worker threads, then wait for SIGTERM/SIGINT in the main
 * thread. Shutdown stops accepting, lets sessions finish briefly, stops the
 * workers, and releases the spool lock.
 *
 * Milter listeners after the first: right after the spool lock, before any
 * thread, one child process each is forked (libmilter serves one socket
 * per process). A child binds its socket, drops privileges, sets
 * PR_SET_PDEATHSIG, and accepts mail once the daemon's first
 * reconciliation is done (SIGUSR1); its own Redis pool and intake, no LMTP,
 * no workers. The daemon SIGTERMs and reaps them on stop (bounded, then
 * SIGKILL); a child that dies on its own stops the daemon (exit 1).
 *
 * Thread safety: call from the main thread, before any other thread exists.
 */
#ifndef SY_DAEMON_H
#define SY_DAEMON_H

#include "gateway/config.h"
#include "gateway/util/err.h"

/* Runs until a stop signal; returns the process exit code (0 on a clean
 * stop, 1 when start-up failed). cfg is borrowed. */
int daemon_run(const struct config *cfg);

/* Blocks the signals the main thread waits for, in the calling thread and
 * so in every thread created after it; ignores SIGPIPE. */
void daemon_block_signals(void);

/* mkdir -p with mode for new components. SY_OK or SY_EIO with err. */
int daemon_mkdirs(const char *path, unsigned mode, struct sy_err *err);

#endif
