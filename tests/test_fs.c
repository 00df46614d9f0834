/* test_fs.c: scratch directories for the CPU tests (test_fs.h). */
#include "test_fs.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cache.h"

void dm_test_temp_dir(char *dir, const char *tag)
{
    snprintf(dir, 64, "/tmp/dm_%s_XXXXXX", tag);
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

void dm_test_remove_dir(const char *dir)
{
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "chmod -R u+w '%s'; rm -rf '%s'", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
}

int dm_test_count_entries(const char *dir)
{
    int n = -1;
    uint64_t bytes;
    ck_assert_int_eq(dm_cache_usage(dir, &n, &bytes, NULL, 0), DM_CACHE_OK);
    return n;
}
