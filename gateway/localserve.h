/* localserve.h - everything on one machine with embedded defaults
 *
 * `switchyard localserve` starts a private redis-server on a UNIX socket
 * under its state directory (append-only file on), listens for LMTP on 127.0.0.1:2424, and delivers through
 * the capture transport into STATE/capture. It writes the effective
 * configuration to STATE/switchyard.yaml so the queue commands can use it,
 * and stops its redis-server on exit.
 *
 * Thread safety: main thread only.
 */
#ifndef SY_LOCALSERVE_H
#define SY_LOCALSERVE_H

/* Options from the command line; strings borrowed. */
struct localserve_opts {
    const char *state_dir;      /* NULL: ./localserve-state */
    unsigned lmtp_port;         /* 0: 2424 */
};

/* Runs until SIGTERM/SIGINT; returns the exit code. */
int localserve_run(const struct localserve_opts *o);

#endif
