/* fs.c - file-system helpers for unit tests */
/* nftw() is an XSI interface. */
#define _XOPEN_SOURCE 700
#include "tests/unit/support/fs.h"

#include <ftw.h>
#include <stdio.h>
#include <string.h>

/* test_rm_one - nftw callback: remove one entry (children first) */
static int test_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) ftw;
    (void) flag;
    return remove(path) == 0 ? 0 : -1;
}

int test_rmtree(const char *path)
{
    if (strncmp(path, "/tmp/", 5) != 0 || strstr(path, "..") != NULL)
        return -1;
    return nftw(path, test_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
