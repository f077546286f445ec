/* io.h - timed socket I/O: poll() with a deadline, never a bare blocking read
 *
 * Deadlines are absolute CLOCK_MONOTONIC milliseconds (clock_mono_ms()).
 *
 * Thread safety: reentrant; a descriptor belongs to one thread.
 */
#ifndef SY_UTIL_IO_H
#define SY_UTIL_IO_H

#include <stddef.h>
#include <stdint.h>

/* Writes all n bytes (looping over short writes and EINTR) before
 * deadline_ms. SY_OK, SY_ETIMEOUT or SY_EIO. Never raises SIGPIPE. */
int io_write_all(int fd, const void *p, size_t n, int64_t deadline_ms);

/* Writes all n bytes to a regular file (EINTR and short writes handled).
 * SY_OK, or SY_ENOSPACE / SY_EIO with errno preserved. */
int io_file_write_all(int fd, const void *p, size_t n);

#endif
