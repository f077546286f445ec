/* spool.h - one fsync'd file per message: the source of truth for the queue
 *
 * A spool file holds the message bytes exactly as received, then a
 * self-describing envelope record (struct envelope: sender, recipients with
 * their DSN parameters, intake facts, flags, release time), then a fixed
 * trailer with offsets, lengths, a checksum and an end marker. The file is
 * written under tmp/<qid>, fsync'd, closed, renamed to q/<qid>, and the
 * directory is fsync'd: only after spool_commit() returns SY_OK is the
 * message durable. The spool alone is enough to rebuild the Redis queue.
 *
 * Errors: SY_ENOSPACE (disk full, 452 4.3.1), SY_EIO (write, fsync, rename
 * errors, 451 4.3.0; the temporary file is then removed and fsync is never
 * retried on the same descriptor), SY_ESYNTAX (a corrupt file on read).
 * The byte layout is described in spool.c and docs/spool-format.md.
 *
 * Thread safety: struct spool is shared by all threads; a struct
 * spool_writer belongs to the thread that began it.
 */
#ifndef SY_SPOOL_H
#define SY_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gateway/envelope.h"
#include "gateway/util/err.h"

struct spool;           /* opaque: the spool directory */
struct spool_writer;    /* opaque: one message being written */

/* Opens (creating when missing, mode 0700) dir with tmp/ and q/ inside,
 * and takes an exclusive lock (flock on dir/lock, which then holds our pid)
 * so a second daemon on the same spool fails with SY_ETEMP "spool DIR is
 * locked by pid N". The parent of dir must exist. Returns a new spool
 * owned by the caller (spool_close()), or NULL with err set (SY_ETEMP when
 * locked, SY_EIO otherwise). */
struct spool *spool_open(const char *dir, struct sy_err *err);
void spool_close(struct spool *sp);              /* releases the lock; NULL ok */
/* Gives the spool directory, tmp/, q/ and the lock file to uid:gid: a
 * daemon that opened the spool as root before dropping privileges keeps
 * using it as that user. Files already in q/ keep their owner. SY_OK or
 * SY_EIO. */
int spool_chown(struct spool *sp, uid_t uid, gid_t gid, struct sy_err *err);
const char *spool_dir(const struct spool *sp);   /* borrowed */

/* SY_OK when the spool file system has at least need free bytes (and
 * more than a small reserve of free inodes); SY_ENOSPACE with 4.3.1
 * otherwise; SY_EIO (4.3.0) when statvfs fails. */
int spool_check_space(struct spool *sp, uint64_t need, struct sy_err *err);

/* Starts tmp/<qid> (O_CREAT|O_EXCL, mode 0600). Returns a new writer owned
 * by the caller: end it with spool_commit() or spool_abort(). NULL with
 * err set: SY_ESYNTAX for an invalid qid, SY_ENOSPACE or SY_EIO. */
struct spool_writer *spool_begin(struct spool *sp, const char *qid, struct sy_err *err);
/* Appends message bytes (buffered; errors may surface at commit). After a
 * failure every later call on w returns the same error; w must still be
 * ended with spool_commit() or spool_abort(). p is borrowed. */
int spool_write(struct spool_writer *w, const void *p, size_t n, struct sy_err *err);
/* Writes env and the trailer, fsyncs, renames into q/ (never replacing
 * an existing q/<qid>), fsyncs the directory. Frees w, whatever the
 * outcome; on failure nothing is left behind. SY_ENOSPACE (4.3.1), SY_EIO
 * (4.3.0), or SY_ESYNTAX (4.3.0) when env could not be read back (no
 * recipient, NULL sender or address, CR/LF in a string, a value out of
 * range): a file spool_read() would refuse is never written. env is
 * borrowed. */
int spool_commit(struct spool_writer *w, const struct envelope *env, struct sy_err *err);
void spool_abort(struct spool_writer *w);        /* removes the temp file, frees w; NULL ok */

/* Reads and validates q/<qid>: env (freshly env_init'ed) receives the
 * envelope; *msg_off and *msg_len locate the message bytes in the file.
 * SY_ENOTFOUND when the file is gone (or qid is not a valid id),
 * SY_ESYNTAX when it is corrupt, SY_EIO on a read error. On failure env is
 * left empty and *msg_off and *msg_len are unchanged. */
int spool_read(struct spool *sp, const char *qid, struct envelope *env,
               uint64_t *msg_off, uint64_t *msg_len, struct sy_err *err);
/* Opens q/<qid> read-only (O_CLOEXEC); returns the fd (caller closes) or
 * -1 with err (SY_ENOTFOUND when absent). */
int spool_open_message(struct spool *sp, const char *qid, struct sy_err *err);

/* Removes q/<qid> (and fsyncs the directory). SY_ENOTFOUND when absent. */
int spool_remove(struct spool *sp, const char *qid, struct sy_err *err);

/* Calls fn for every q/ file whose name is a valid queue id, in id order;
 * stops early when fn returns non-zero (and returns that value). Returns
 * 0 after the last file, SY_EIO when q/ cannot be listed. */
int spool_scan(struct spool *sp, int (*fn)(const char *qid, void *arg), void *arg);

/* Removes stale files in tmp/ (left by a crash); returns how many. Only
 * safe while no writer is active (start-up, or under the spool lock). */
size_t spool_clean_tmp(struct spool *sp);

/* Record codec, exposed for tests and the fuzz target: encodes env into a
 * new buffer owned by the caller (free()), length in *lenp ... */
char *spool_env_encode(const struct envelope *env, size_t *lenp);
/* ... and decodes it back (env freshly env_init'ed; on error env is left
 * empty). SY_OK or SY_ESYNTAX with err set. p is untrusted: every record is
 * bounds-checked. */
int spool_env_decode(const char *p, size_t n, struct envelope *env, struct sy_err *err);

/* CRC-32C (Castagnoli) of p[0..n), continuing from crc (0 to start):
 * spool_crc32c(spool_crc32c(0, a, na), b, nb) is the CRC of a || b.
 * Exposed for tests and tools that inspect spool files. */
uint32_t spool_crc32c(uint32_t crc, const void *p, size_t n);

#endif
