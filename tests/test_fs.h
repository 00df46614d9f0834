/* test_fs.h: scratch directories for the CPU tests (cache, build, codegen, dmgen): made under
 * /tmp, counted as a cache, removed whole (read-only leftovers included). */
#ifndef DM_TEST_FS_H
#define DM_TEST_FS_H

/* dir receives "/tmp/dm_<tag>_XXXXXX" made by mkdtemp; it needs 64 bytes. */
void dm_test_temp_dir(char *dir, const char *tag);
void dm_test_remove_dir(const char *dir);
/* Valid entries in a cache directory, by dm_cache_usage. */
int dm_test_count_entries(const char *dir);

#endif
