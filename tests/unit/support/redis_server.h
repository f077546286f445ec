/* redis_server.h - a private redis-server for unit tests
 *
 * Started on a UNIX socket in a test's temporary directory, persistence
 * off, killed by PID (and with the test process: PR_SET_PDEATHSIG), so a
 * failed assertion never leaves a server behind.
 *
 * Thread safety: test main thread only.
 */
#ifndef SY_TEST_REDIS_SERVER_H
#define SY_TEST_REDIS_SERVER_H

#include <stdint.h>
#include <sys/types.h>

/* Starts /usr/bin/redis-server on sock (log in dir/redis.log), with
 * requirepass when password is not NULL, and waits until it answers PING
 * (timeout_ms). Returns the pid, or -1 (nothing left running). */
pid_t test_redis_start(const char *dir, const char *sock, const char *password,
                       int64_t timeout_ms);
/* SIGCONT + SIGKILL + waitpid; pid <= 0 is a no-op. */
void test_redis_kill(pid_t pid);

#endif
