/* fs.h - file-system helpers for unit tests
 *
 * Thread safety: test main thread only.
 */
#ifndef SY_TEST_FS_H
#define SY_TEST_FS_H

/* Removes path and everything below it (no symlink is followed). Only
 * paths under /tmp/ are accepted; 0 on success, -1 otherwise. */
int test_rmtree(const char *path);

#endif
