/* test_cache.c: cache.c on its own, with no compiler behind it: the entry name, the entry file
 * checks (each corruption caught and named), atomic writes under concurrent writers and killed
 * writers, the directory helpers and the default directory. Every test works in a mkdtemp
 * directory of its own and removes it. */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache.h"
#include "harness.h"
#include "test_fs.h"

static const char *kVariant = "fwd.d64.f16.mask-k.bias-none.w0.sm80";
enum { kHeaderBytes = 32 }; /* magic 8, version 4, key_bytes 4, payload_bytes 8, checksum 8 */

static dm_cache_key_fields sample_fields(void)
{
    static const char source[] = "extern \"C\" __global__ void k() {}\n";
    dm_cache_key_fields f = {
        .lib_version = "0.1.0",
        .nvrtc_version = "13.0",
        .arch = "sm90",
        .options = "--std=c++17\n-arch=sm_90",
        .source = source,
        .source_bytes = sizeof source - 1,
    };
    return f;
}

static dm_cache_key sample_key(void)
{
    dm_cache_key_fields f = sample_fields();
    dm_cache_key key;
    dm_cache_key_make(&f, &key);
    return key;
}

/* A payload that looks like a cubin and differs at every byte position from its neighbours. */
static unsigned char *sample_cubin(size_t n)
{
    unsigned char *p = malloc(n);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 131 + 7);
    if (n >= 4)
        memcpy(p, "\177ELF", 4);
    return p;
}

static void entry_file(const char *dir, const dm_cache_key *key, char *path, size_t path_bytes)
{
    snprintf(path, path_bytes, "%s/%s%s", dir, key->name, DM_CACHE_SUFFIX);
}

static void write_sample(const char *dir, const dm_cache_key *key, size_t cubin_bytes)
{
    char why[512] = "";
    unsigned char *cubin = sample_cubin(cubin_bytes);
    ck_assert_msg(dm_cache_write(dir, key, kVariant, cubin, cubin_bytes, why, sizeof why) ==
                      DM_CACHE_OK,
                  "%s", why);
    free(cubin);
}

static long file_size(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return -1;
    return (long)sb.st_size;
}

static int count_files(const char *dir)
{
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    int n = -1;
    ck_assert_int_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

static void patch_byte(const char *path, long offset, unsigned char xor_with)
{
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    unsigned char b;
    ck_assert_int_eq(pread(fd, &b, 1, offset), 1);
    b ^= xor_with;
    ck_assert_int_eq(pwrite(fd, &b, 1, offset), 1);
    close(fd);
}

static void write_bytes(const char *path, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(bytes, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static dm_cache_result read_entry(const char *dir, const dm_cache_key *key, char *why,
                                  size_t why_bytes)
{
    void *cubin = (void *)1;
    size_t bytes = 1;
    dm_cache_result r = dm_cache_read(dir, key, &cubin, &bytes, why, why_bytes);
    if (r != DM_CACHE_HIT) {
        ck_assert_ptr_null(cubin);
        ck_assert_uint_eq(bytes, 0);
    }
    free(cubin);
    return r;
}

START_TEST(key_is_32_lowercase_hex_digits_and_stable_for_equal_fields)
{
    dm_cache_key a = sample_key(), b;
    dm_cache_key_fields f = sample_fields();
    char copy[64];
    strcpy(copy, f.arch); /* equal text at another address */
    f.arch = copy;
    dm_cache_key_make(&f, &b);
    ck_assert_uint_eq(strlen(a.name), DM_CACHE_NAME_CHARS);
    ck_assert_uint_eq(strspn(a.name, "0123456789abcdef"), DM_CACHE_NAME_CHARS);
    ck_assert_str_eq(a.name, b.name);
}
END_TEST

START_TEST(key_changes_when_any_single_field_changes)
{
    const dm_cache_key base = sample_key();
    for (int field = 0; field < 6; field++) {
        dm_cache_key_fields f = sample_fields();
        static const char other_source[] = "extern \"C\" __global__ void k() {}\n\n";
        switch (field) {
        case 0:
            f.lib_version = "0.1.1";
            break;
        case 1:
            f.nvrtc_version = "12.4";
            break;
        case 2:
            f.arch = "sm80";
            break;
        case 3:
            f.options = "--std=c++17\n-arch=sm_90\n-lineinfo";
            break;
        case 4:
            f.source = other_source;
            f.source_bytes = sizeof other_source - 1;
            break;
        case 5:
            f.source_bytes -= 1; /* same pointer, one byte fewer */
            break;
        }
        dm_cache_key k;
        dm_cache_key_make(&f, &k);
        ck_assert_msg(strcmp(k.name, base.name) != 0, "field %d did not change the key", field);
    }
}
END_TEST

START_TEST(key_tells_apart_bytes_moved_between_fields)
{
    dm_cache_key_fields f = sample_fields(), g = sample_fields();
    f.lib_version = "0.1";
    f.nvrtc_version = "013.0";
    g.lib_version = "0.10";
    g.nvrtc_version = "13.0";
    dm_cache_key a, b;
    dm_cache_key_make(&f, &a);
    dm_cache_key_make(&g, &b);
    ck_assert_str_ne(a.name, b.name);
}
END_TEST

START_TEST(written_entry_reads_back_identical_bytes)
{
    char dir[64], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    dm_cache_key key = sample_key();
    unsigned char *cubin = sample_cubin(5000);
    ck_assert_int_eq(dm_cache_write(dir, &key, kVariant, cubin, 5000, why, sizeof why),
                     DM_CACHE_OK);
    void *got = NULL;
    size_t got_bytes = 0;
    ck_assert_msg(dm_cache_read(dir, &key, &got, &got_bytes, why, sizeof why) == DM_CACHE_HIT,
                  "%s", why);
    ck_assert_uint_eq(got_bytes, 5000);
    ck_assert_int_eq(memcmp(got, cubin, 5000), 0);
    char path[256];
    entry_file(dir, &key, path, sizeof path);
    ck_assert_int_eq(file_size(path), kHeaderBytes + (long)strlen(kVariant) + 5000);
    ck_assert_int_eq(count_files(dir), 1); /* no temp file left next to it */
    free(got);
    free(cubin);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(empty_payload_round_trips)
{
    char dir[64], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    dm_cache_key key = sample_key();
    ck_assert_int_eq(dm_cache_write(dir, &key, kVariant, NULL, 0, why, sizeof why), DM_CACHE_OK);
    void *got = NULL;
    size_t got_bytes = 7;
    ck_assert_int_eq(dm_cache_read(dir, &key, &got, &got_bytes, why, sizeof why), DM_CACHE_HIT);
    ck_assert_uint_eq(got_bytes, 0);
    ck_assert_ptr_nonnull(got);
    free(got);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(missing_entry_is_a_miss)
{
    char dir[64], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    dm_cache_key key = sample_key();
    ck_assert_int_eq(read_entry(dir, &key, why, sizeof why), DM_CACHE_MISS);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(missing_directory_is_a_miss)
{
    char dir[64], sub[128], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    snprintf(sub, sizeof sub, "%s/not/there", dir);
    dm_cache_key key = sample_key();
    ck_assert_int_eq(read_entry(sub, &key, why, sizeof why), DM_CACHE_MISS);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(truncated_entry_is_corrupt_and_names_the_file)
{
    char dir[64], path[256], why[512] = "", expect[64];
    dm_test_temp_dir(dir, "cache");
    dm_cache_key key = sample_key();
    write_sample(dir, &key, 5000);
    entry_file(dir, &key, path, sizeof path);
    long full = file_size(path);
    ck_assert_int_eq(truncate(path, 100), 0);
    ck_assert_int_eq(read_entry(dir, &key, why, sizeof why), DM_CACHE_CORRUPT);
    ck_assert_msg(strstr(why, path) != NULL, "why: %s", why);
    snprintf(expect, sizeof expect, "truncated (expected %ld bytes, found 100)", full);
    ck_assert_msg(strstr(why, expect) != NULL, "why: %s", why);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(entry_cut_inside_its_header_is_corrupt)
{
    char dir[64], path[256], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    dm_cache_key key = sample_key();
    write_sample(dir, &key, 100);
    entry_file(dir, &key, path, sizeof path);
    ck_assert_int_eq(truncate(path, 10), 0);
    ck_assert_int_eq(read_entry(dir, &key, why, sizeof why), DM_CACHE_CORRUPT);
    ck_assert_msg(strstr(why, "truncated") != NULL, "why: %s", why);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(entry_with_extra_bytes_is_corrupt)
{
    char dir[64], path[256], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    dm_cache_key key = sample_key();
    write_sample(dir, &key, 100);
    entry_file(dir, &key, path, sizeof path);
    FILE *f = fopen(path, "ab");
    ck_assert_ptr_nonnull(f);
    fputs("junk", f);
    fclose(f);
    ck_assert_int_eq(read_entry(dir, &key, why, sizeof why), DM_CACHE_CORRUPT);
    ck_assert_msg(strstr(why, "extra bytes") != NULL, "why: %s", why);
    ck_assert_msg(strstr(why, path) != NULL, "why: %s", why);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(flipped_payload_byte_fails_the_checksum)
{
    char dir[64], path[256], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    dm_cache_key key = sample_key();
    write_sample(dir, &key, 5000);
    entry_file(dir, &key, path, sizeof path);
    patch_byte(path, kHeaderBytes + (long)strlen(kVariant) + 2500, 0x01);
    ck_assert_int_eq(read_entry(dir, &key, why, sizeof why), DM_CACHE_CORRUPT);
    ck_assert_msg(strstr(why, "checksum") != NULL, "why: %s", why);
    ck_assert_msg(strstr(why, path) != NULL, "why: %s", why);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(flipped_variant_text_byte_fails_the_checksum)
{
    char dir[64], path[256], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    dm_cache_key key = sample_key();
    write_sample(dir, &key, 100);
    entry_file(dir, &key, path, sizeof path);
    patch_byte(path, kHeaderBytes + 3, 0x20);
    ck_assert_int_eq(read_entry(dir, &key, why, sizeof why), DM_CACHE_CORRUPT);
    ck_assert_msg(strstr(why, "checksum") != NULL, "why: %s", why);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(bad_magic_is_corrupt)
{
    char dir[64], path[256], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    dm_cache_key key = sample_key();
    write_sample(dir, &key, 100);
    entry_file(dir, &key, path, sizeof path);
    patch_byte(path, 0, 0x01);
    ck_assert_int_eq(read_entry(dir, &key, why, sizeof why), DM_CACHE_CORRUPT);
    ck_assert_msg(strstr(why, "bad magic") != NULL, "why: %s", why);
    ck_assert_msg(strstr(why, path) != NULL, "why: %s", why);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(unknown_format_version_is_corrupt)
{
    char dir[64], path[256], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    dm_cache_key key = sample_key();
    write_sample(dir, &key, 100);
    entry_file(dir, &key, path, sizeof path);
    patch_byte(path, 8, 0x03); /* version 1 -> 2 */
    ck_assert_int_eq(read_entry(dir, &key, why, sizeof why), DM_CACHE_CORRUPT);
    ck_assert_msg(strstr(why, "format version 2") != NULL, "why: %s", why);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(header_claiming_a_huge_payload_is_corrupt_before_any_allocation)
{
    char dir[64], path[256], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    dm_cache_key key = sample_key();
    write_sample(dir, &key, 100);
    entry_file(dir, &key, path, sizeof path);
    patch_byte(path, 16 + 7, 0x80); /* payload_bytes gains bit 63 */
    ck_assert_int_eq(read_entry(dir, &key, why, sizeof why), DM_CACHE_CORRUPT);
    ck_assert_msg(strstr(why, "out of range") != NULL, "why: %s", why);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(rewriting_a_corrupt_entry_makes_it_readable_again)
{
    char dir[64], path[256], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    dm_cache_key key = sample_key();
    write_sample(dir, &key, 3000);
    entry_file(dir, &key, path, sizeof path);
    ck_assert_int_eq(truncate(path, 1000), 0);
    ck_assert_int_eq(read_entry(dir, &key, why, sizeof why), DM_CACHE_CORRUPT);
    write_sample(dir, &key, 3000); /* what kernels.c does after a corrupt read */
    ck_assert_msg(read_entry(dir, &key, why, sizeof why) == DM_CACHE_HIT, "%s", why);
    ck_assert_int_eq(count_files(dir), 1);
    dm_test_remove_dir(dir);
}
END_TEST

enum { kWriters = 2, kWritesEach = 200, kRaceBytes = 64 << 10 };

/* Child: writes the one entry again and again; exit status 0 when every write succeeded. */
static void race_writer(const char *dir, const dm_cache_key *key, const unsigned char *cubin)
{
    for (int i = 0; i < kWritesEach; i++) {
        char why[512];
        if (dm_cache_write(dir, key, kVariant, cubin, kRaceBytes, why, sizeof why) !=
            DM_CACHE_OK) {
            fprintf(stderr, "writer %ld: %s\n", (long)getpid(), why);
            _exit(1);
        }
    }
    _exit(0);
}

/* One read during the race: a hit with the exact bytes or a miss; anything else is a failure. */
static int race_read_ok(const char *dir, const dm_cache_key *key, const unsigned char *cubin,
                        int *hits)
{
    char why[512] = "";
    void *got = NULL;
    size_t bytes = 0;
    dm_cache_result r = dm_cache_read(dir, key, &got, &bytes, why, sizeof why);
    int ok = r == DM_CACHE_MISS ||
             (r == DM_CACHE_HIT && bytes == kRaceBytes && memcmp(got, cubin, bytes) == 0);
    if (!ok)
        fprintf(stderr, "reader %ld: result %d: %s\n", (long)getpid(), (int)r, why);
    *hits += r == DM_CACHE_HIT;
    free(got);
    return ok;
}

START_TEST(concurrent_writers_all_succeed_and_readers_never_see_a_partial_entry)
{
    char dir[64];
    dm_test_temp_dir(dir, "cache");
    dm_cache_key key = sample_key();
    unsigned char *cubin = sample_cubin(kRaceBytes);
    pid_t writers[kWriters], reader;
    for (int i = 0; i < kWriters; i++) {
        writers[i] = fork();
        ck_assert_int_ge(writers[i], 0);
        if (writers[i] == 0)
            race_writer(dir, &key, cubin);
    }
    reader = fork();
    ck_assert_int_ge(reader, 0);
    if (reader == 0) {
        int hits = 0;
        for (int i = 0; i < 2000; i++)
            if (!race_read_ok(dir, &key, cubin, &hits))
                _exit(1);
        _exit(0);
    }
    /* the parent reads too, for as long as any writer runs */
    int running = kWriters, bad_reads = 0, reads = 0, hits = 0, failed_children = 0;
    while (running > 0) {
        bad_reads += !race_read_ok(dir, &key, cubin, &hits);
        reads++;
        for (int i = 0; i < kWriters; i++) {
            int status;
            if (writers[i] > 0 && waitpid(writers[i], &status, WNOHANG) == writers[i]) {
                failed_children += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                writers[i] = 0;
                running--;
            }
        }
    }
    int status;
    ck_assert_int_eq(waitpid(reader, &status, 0), reader);
    failed_children += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_int_eq(failed_children, 0);
    ck_assert_msg(bad_reads == 0, "%d of %d reads were neither a hit nor a miss", bad_reads,
                  reads);
    ck_assert_int_eq(race_read_ok(dir, &key, cubin, &hits), 1);
    ck_assert_int_eq(count_files(dir), 1); /* every temp was renamed away */
    free(cubin);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(killed_writer_temp_file_neither_blocks_nor_misleads_and_clear_removes_it)
{
    char dir[64], other[64], path[256], tmp[300], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    dm_test_temp_dir(other, "cache");
    dm_cache_key key = sample_key();
    /* what a writer killed halfway leaves: the first half of a real entry under a temp name */
    write_sample(other, &key, 4000);
    entry_file(other, &key, path, sizeof path);
    ck_assert_int_eq(truncate(path, 2000), 0);
    entry_file(dir, &key, tmp, sizeof tmp);
    strcat(tmp, ".tmp.99999.00c0ffee00c0ffee");
    ck_assert_int_eq(rename(path, tmp), 0);

    ck_assert_int_eq(read_entry(dir, &key, why, sizeof why), DM_CACHE_MISS);
    int entries = -1;
    uint64_t bytes = 1;
    ck_assert_int_eq(dm_cache_usage(dir, &entries, &bytes, why, sizeof why), DM_CACHE_OK);
    ck_assert_int_eq(entries, 0);
    ck_assert_uint_eq(bytes, 0);
    write_sample(dir, &key, 4000);
    ck_assert_msg(read_entry(dir, &key, why, sizeof why) == DM_CACHE_HIT, "%s", why);

    int removed = -1;
    ck_assert_int_eq(dm_cache_clear(dir, &removed, &bytes, why, sizeof why), DM_CACHE_OK);
    ck_assert_int_eq(removed, 2);
    ck_assert_int_eq(count_files(dir), 0);
    dm_test_remove_dir(dir);
    dm_test_remove_dir(other);
}
END_TEST

START_TEST(prepare_dir_creates_missing_parents)
{
    char dir[64], sub[128], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    snprintf(sub, sizeof sub, "%s/a/b//c/", dir);
    ck_assert_msg(dm_cache_prepare_dir(sub, why, sizeof why) == DM_CACHE_OK, "%s", why);
    struct stat sb;
    ck_assert_int_eq(stat(sub, &sb), 0);
    ck_assert(S_ISDIR(sb.st_mode));
    ck_assert_int_eq(sb.st_mode & 0777 & ~0755, 0);
    ck_assert_int_eq(dm_cache_prepare_dir(sub, why, sizeof why), DM_CACHE_OK); /* idempotent */
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(prepare_dir_under_a_regular_file_is_an_io_error)
{
    char dir[64], file[128], sub[160], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    snprintf(file, sizeof file, "%s/file", dir);
    write_bytes(file, "x", 1);
    snprintf(sub, sizeof sub, "%s/sub", file);
    ck_assert_int_eq(dm_cache_prepare_dir(sub, why, sizeof why), DM_CACHE_IO_ERROR);
    ck_assert_msg(strstr(why, file) && strstr(why, "not a directory"), "why: %s", why);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(prepare_dir_on_an_existing_file_is_an_io_error)
{
    char dir[64], file[128], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    snprintf(file, sizeof file, "%s/file", dir);
    write_bytes(file, "x", 1);
    ck_assert_int_eq(dm_cache_prepare_dir(file, why, sizeof why), DM_CACHE_IO_ERROR);
    ck_assert_msg(strstr(why, "not a directory") != NULL, "why: %s", why);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(write_into_a_path_under_a_regular_file_is_an_io_error)
{
    char dir[64], sub[160], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    snprintf(sub, sizeof sub, "%s/file", dir);
    write_bytes(sub, "x", 1);
    strcat(sub, "/sub");
    dm_cache_key key = sample_key();
    unsigned char *cubin = sample_cubin(100);
    ck_assert_int_eq(dm_cache_write(sub, &key, kVariant, cubin, 100, why, sizeof why),
                     DM_CACHE_IO_ERROR);
    ck_assert_msg(strstr(why, sub) != NULL, "why: %s", why);
    ck_assert_int_eq(count_files(dir), 1); /* only the file we made */
    free(cubin);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(write_into_an_unwritable_directory_is_an_io_error)
{
    /* tests run as root, where chmod stops nothing; /proc/self is a directory nobody can
     * create files in, so it stands in for a read-only shipped cache */
    char why[512] = "";
    dm_cache_key key = sample_key();
    unsigned char *cubin = sample_cubin(100);
    ck_assert_int_eq(dm_cache_prepare_dir("/proc/self", why, sizeof why), DM_CACHE_OK);
    ck_assert_int_eq(dm_cache_write("/proc/self", &key, kVariant, cubin, 100, why, sizeof why),
                     DM_CACHE_IO_ERROR);
    ck_assert_msg(strstr(why, "/proc/self/") != NULL, "why: %s", why);
    free(cubin);
}
END_TEST

START_TEST(write_failing_midway_leaves_no_temp_file)
{
    /* a file size limit makes write() fail with EFBIG partway through, even for root */
    char dir[64];
    dm_test_temp_dir(dir, "cache");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char why[512] = "";
        struct rlimit lim = {.rlim_cur = 1000, .rlim_max = 1000};
        signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &lim) != 0)
            _exit(2);
        dm_cache_key key = sample_key();
        unsigned char *cubin = sample_cubin(5000);
        dm_cache_result r = dm_cache_write(dir, &key, kVariant, cubin, 5000, why, sizeof why);
        _exit(r == DM_CACHE_IO_ERROR && strstr(why, "write") ? 0 : 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    ck_assert_int_eq(count_files(dir), 0);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(failed_rename_leaves_no_temp_file)
{
    char dir[64], path[256], inner[300], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    dm_cache_key key = sample_key();
    /* a non-empty directory where the entry belongs: rename() over it must fail */
    entry_file(dir, &key, path, sizeof path);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    snprintf(inner, sizeof inner, "%s/keep", path);
    write_bytes(inner, "x", 1);
    unsigned char *cubin = sample_cubin(100);
    ck_assert_int_eq(dm_cache_write(dir, &key, kVariant, cubin, 100, why, sizeof why),
                     DM_CACHE_IO_ERROR);
    ck_assert_msg(strstr(why, "rename") != NULL, "why: %s", why);
    ck_assert_int_eq(count_files(dir), 1); /* only the blocking directory */
    free(cubin);
    dm_test_remove_dir(dir);
}
END_TEST

typedef struct listed {
    int n;
    char names[8][DM_CACHE_NAME_CHARS + 1];
    char texts[8][64];
    uint64_t payload_bytes[8];
    int valid[8];
} listed;

static void collect(void *user, const char *name, const char *variant_text,
                    uint64_t payload_bytes, int valid)
{
    listed *l = user;
    ck_assert_int_lt(l->n, 8);
    snprintf(l->names[l->n], sizeof l->names[l->n], "%s", name);
    snprintf(l->texts[l->n], sizeof l->texts[l->n], "%s", variant_text);
    l->payload_bytes[l->n] = payload_bytes;
    l->valid[l->n] = valid;
    l->n++;
}

static const char *kThreeVariants[3] = {
    "fwd.d64.f16.mask-k.bias-none.w0.sm80",
    "fwd.d64.f16.mask-k.bias-none.w0.sm86",
    "fwd.d64.f16.mask-k.bias-none.w0.sm90",
};

/* Writes entry i with variant kThreeVariants[i] and a payload of 100 * (i + 1) bytes. */
static void write_three(const char *dir, dm_cache_key keys[3])
{
    for (int i = 0; i < 3; i++) {
        dm_cache_key_fields f = sample_fields();
        f.arch = kThreeVariants[i] + strlen(kThreeVariants[i]) - 4;
        dm_cache_key_make(&f, &keys[i]);
        size_t n = 100 * (size_t)(i + 1);
        unsigned char *cubin = sample_cubin(n);
        ck_assert_int_eq(dm_cache_write(dir, &keys[i], kThreeVariants[i], cubin, n, NULL, 0),
                         DM_CACHE_OK);
        free(cubin);
    }
}

static int index_of(const dm_cache_key keys[3], const char *name)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(keys[i].name, name) == 0)
            return i;
    ck_abort_msg("listed name %s was never written", name);
    return -1;
}

START_TEST(list_returns_entries_sorted_by_name_with_their_variant_text)
{
    char dir[64], other[128], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    dm_cache_key keys[3];
    write_three(dir, keys);
    snprintf(other, sizeof other, "%s/README", dir); /* not an entry: ignored */
    write_bytes(other, "x", 1);
    snprintf(other, sizeof other, "%s/%.31s.cubin", dir, keys[0].name); /* stem too short */
    write_bytes(other, "x", 1);
    listed l = {0};
    ck_assert_msg(dm_cache_list(dir, collect, &l, why, sizeof why) == DM_CACHE_OK, "%s", why);
    ck_assert_int_eq(l.n, 3);
    for (int i = 0; i < 3; i++) {
        if (i > 0)
            ck_assert_int_lt(strcmp(l.names[i - 1], l.names[i]), 0);
        int k = index_of(keys, l.names[i]);
        ck_assert_str_eq(l.texts[i], kThreeVariants[k]);
        ck_assert_uint_eq(l.payload_bytes[i], 100 * (uint64_t)(k + 1));
        ck_assert_int_eq(l.valid[i], 1);
    }
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(list_marks_corrupt_entries_invalid)
{
    char dir[64], path[256], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    dm_cache_key keys[3];
    write_three(dir, keys);
    entry_file(dir, &keys[0], path, sizeof path);
    patch_byte(path, 0, 0x01); /* bad magic: header unreadable */
    entry_file(dir, &keys[1], path, sizeof path);
    patch_byte(path, file_size(path) - 1, 0x01); /* checksum: header still readable */
    listed l = {0};
    ck_assert_int_eq(dm_cache_list(dir, collect, &l, why, sizeof why), DM_CACHE_OK);
    ck_assert_int_eq(l.n, 3);
    for (int i = 0; i < 3; i++) {
        if (strcmp(l.names[i], keys[0].name) == 0) {
            ck_assert_int_eq(l.valid[i], 0);
            ck_assert_str_eq(l.texts[i], "?");
        } else if (strcmp(l.names[i], keys[1].name) == 0) {
            ck_assert_int_eq(l.valid[i], 0);
            ck_assert_str_eq(l.texts[i], kThreeVariants[1]);
            ck_assert_uint_eq(l.payload_bytes[i], 200);
        } else {
            ck_assert_int_eq(l.valid[i], 1);
        }
    }
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(list_of_a_missing_directory_is_empty)
{
    char dir[64], sub[128], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    snprintf(sub, sizeof sub, "%s/none", dir);
    listed l = {0};
    ck_assert_int_eq(dm_cache_list(sub, collect, &l, why, sizeof why), DM_CACHE_OK);
    ck_assert_int_eq(l.n, 0);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(clear_removes_entries_and_temps_and_counts_them)
{
    char dir[64], path[256], other[128], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    dm_cache_key keys[3];
    write_three(dir, keys);
    entry_file(dir, &keys[2], path, sizeof path);
    strcat(path, ".tmp.4242.0123456789abcdef");
    write_bytes(path, "partial", 7);
    snprintf(other, sizeof other, "%s/notes.txt", dir); /* not ours: kept */
    write_bytes(other, "x", 1);
    uint64_t expected = 0;
    for (int i = 0; i < 3; i++) {
        entry_file(dir, &keys[i], path, sizeof path);
        expected += (uint64_t)file_size(path);
    }
    expected += 7;
    int removed = -1;
    uint64_t freed = 0;
    ck_assert_msg(dm_cache_clear(dir, &removed, &freed, why, sizeof why) == DM_CACHE_OK, "%s",
                  why);
    ck_assert_int_eq(removed, 4);
    ck_assert_uint_eq(freed, expected);
    ck_assert_int_eq(count_files(dir), 1);
    ck_assert_int_eq(file_size(other), 1);
    dm_test_remove_dir(dir);
}
END_TEST

/* dm_cache_write makes "<name>.cubin.tmp.<pid>.<16 hex>" and nothing else: only that form is
 * a stale temp for clear to remove; look-alikes (the "<name>.tmp.*" spelling no writer ever used
 * included) belong to someone else and stay. */
START_TEST(clear_recognises_exactly_the_temp_names_write_makes)
{
    static const char *const kept[] = {
        ".tmp.4242.0123456789abcdef",        /* no .cubin: never written by any version */
        ".cubin.tmp.4242.0123456789abcde",   /* 15 hex digits */
        ".cubin.tmp.4242.0123456789ABCDEF",  /* upper case */
        ".cubin.tmp..0123456789abcdef",      /* no pid */
        ".cubin.tmp.x42.0123456789abcdef",   /* pid not a number */
        ".cubin.tmp.4242.0123456789abcdef~", /* an editor's backup of one */
        ".cubin.bak",
    };
    const size_t n_kept = sizeof kept / sizeof kept[0];
    char dir[64], path[256], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    dm_cache_key key = sample_key();
    for (size_t i = 0; i < n_kept; i++) {
        snprintf(path, sizeof path, "%s/%s%s", dir, key.name, kept[i]);
        write_bytes(path, "x", 1);
    }
    snprintf(path, sizeof path, "%s/%s.cubin.tmp.4242.0123456789abcdef", dir, key.name);
    write_bytes(path, "partial", 7);

    int entries = -1, removed = -1;
    uint64_t bytes = 1;
    ck_assert_int_eq(dm_cache_usage(dir, &entries, &bytes, why, sizeof why), DM_CACHE_OK);
    ck_assert_int_eq(entries, 0);
    ck_assert_int_eq(dm_cache_clear(dir, &removed, &bytes, why, sizeof why), DM_CACHE_OK);
    ck_assert_int_eq(removed, 1);
    ck_assert_uint_eq(bytes, 7);
    ck_assert_int_eq(count_files(dir), (int)n_kept);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(usage_counts_entries_and_their_bytes)
{
    char dir[64], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    dm_cache_key keys[3];
    write_three(dir, keys);
    uint64_t expected = 3 * (kHeaderBytes + strlen(kVariant)) + 100 + 200 + 300;
    int entries = -1;
    uint64_t bytes = 0;
    ck_assert_msg(dm_cache_usage(dir, &entries, &bytes, why, sizeof why) == DM_CACHE_OK, "%s",
                  why);
    ck_assert_int_eq(entries, 3);
    ck_assert_uint_eq(bytes, expected);
    ck_assert_int_eq(count_files(dir), 3); /* usage removed nothing */
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(why_may_be_null_or_empty_and_a_short_one_is_never_overrun)
{
    char dir[64], path[256], why[16];
    dm_test_temp_dir(dir, "cache");
    dm_cache_key key = sample_key();
    write_sample(dir, &key, 100);
    entry_file(dir, &key, path, sizeof path);
    patch_byte(path, 0, 0x01);
    ck_assert_int_eq(read_entry(dir, &key, NULL, 0), DM_CACHE_CORRUPT);
    memset(why, 'z', sizeof why);
    ck_assert_int_eq(read_entry(dir, &key, why, 0), DM_CACHE_CORRUPT);
    ck_assert_int_eq(why[0], 'z');
    ck_assert_int_eq(read_entry(dir, &key, why, 8), DM_CACHE_CORRUPT);
    ck_assert_uint_eq(strlen(why), 7);
    ck_assert_int_eq(why[8], 'z');
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(malformed_key_name_is_refused_before_touching_the_disk)
{
    char dir[64], why[512] = "";
    dm_test_temp_dir(dir, "cache");
    dm_cache_key key;
    snprintf(key.name, sizeof key.name, "../../etc/passwd");
    ck_assert_int_eq(dm_cache_write(dir, &key, kVariant, "x", 1, why, sizeof why),
                     DM_CACHE_IO_ERROR);
    ck_assert_msg(strstr(why, "bad cache key") != NULL, "why: %s", why);
    ck_assert_int_eq(read_entry(dir, &key, why, sizeof why), DM_CACHE_IO_ERROR);
    ck_assert_int_eq(count_files(dir), 0);
    dm_test_remove_dir(dir);
}
END_TEST

static void set_env(const char *name, const char *value)
{
    if (value)
        ck_assert_int_eq(setenv(name, value, 1), 0);
    else
        ck_assert_int_eq(unsetenv(name), 0);
}

static void env_is(const char *own, const char *xdg, const char *home)
{
    set_env("DMATTN_CACHE_DIR", own);
    set_env("XDG_CACHE_HOME", xdg);
    set_env("HOME", home);
}

START_TEST(default_dir_prefers_dmattn_cache_dir)
{
    char buf[256];
    env_is("/srv/dm", "/x/cache", "/home/u");
    ck_assert_int_eq(dm_cache_default_dir(buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "/srv/dm");
}
END_TEST

START_TEST(default_dir_falls_back_to_xdg_cache_home)
{
    char buf[256];
    env_is("", "/x/cache", "/home/u");
    ck_assert_int_eq(dm_cache_default_dir(buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "/x/cache/dmattn");
    env_is(NULL, "/x/cache", "/home/u");
    ck_assert_int_eq(dm_cache_default_dir(buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "/x/cache/dmattn");
}
END_TEST

START_TEST(default_dir_falls_back_to_home_when_xdg_is_unset_empty_or_relative)
{
    static const char *xdgs[3] = {NULL, "", "relative/cache"};
    for (int i = 0; i < 3; i++) {
        char buf[256];
        env_is(NULL, xdgs[i], "/home/u");
        ck_assert_int_eq(dm_cache_default_dir(buf, sizeof buf), 0);
        ck_assert_str_eq(buf, "/home/u/.cache/dmattn");
    }
}
END_TEST

START_TEST(default_dir_fails_without_home)
{
    char buf[256];
    env_is(NULL, NULL, NULL);
    ck_assert_int_eq(dm_cache_default_dir(buf, sizeof buf), -1);
    env_is(NULL, NULL, "");
    ck_assert_int_eq(dm_cache_default_dir(buf, sizeof buf), -1);
}
END_TEST

START_TEST(default_dir_fails_when_the_buffer_is_too_small)
{
    char buf[16];
    memset(buf, 'z', sizeof buf);
    env_is(NULL, NULL, "/home/u"); /* "/home/u/.cache/dmattn" needs 22 bytes */
    ck_assert_int_eq(dm_cache_default_dir(buf, 12), -1);
    ck_assert_int_eq(buf[12], 'z');
    ck_assert_int_eq(dm_cache_default_dir(buf, 0), -1);
}
END_TEST

#define TESTS(X) \
    X(key_is_32_lowercase_hex_digits_and_stable_for_equal_fields) \
    X(key_changes_when_any_single_field_changes) \
    X(key_tells_apart_bytes_moved_between_fields) \
    X(written_entry_reads_back_identical_bytes) \
    X(empty_payload_round_trips) \
    X(missing_entry_is_a_miss) \
    X(missing_directory_is_a_miss) \
    X(truncated_entry_is_corrupt_and_names_the_file) \
    X(entry_cut_inside_its_header_is_corrupt) \
    X(entry_with_extra_bytes_is_corrupt) \
    X(flipped_payload_byte_fails_the_checksum) \
    X(flipped_variant_text_byte_fails_the_checksum) \
    X(bad_magic_is_corrupt) \
    X(unknown_format_version_is_corrupt) \
    X(header_claiming_a_huge_payload_is_corrupt_before_any_allocation) \
    X(rewriting_a_corrupt_entry_makes_it_readable_again) \
    X(concurrent_writers_all_succeed_and_readers_never_see_a_partial_entry) \
    X(killed_writer_temp_file_neither_blocks_nor_misleads_and_clear_removes_it) \
    X(prepare_dir_creates_missing_parents) \
    X(prepare_dir_under_a_regular_file_is_an_io_error) \
    X(prepare_dir_on_an_existing_file_is_an_io_error) \
    X(write_into_a_path_under_a_regular_file_is_an_io_error) \
    X(write_into_an_unwritable_directory_is_an_io_error) \
    X(write_failing_midway_leaves_no_temp_file) \
    X(failed_rename_leaves_no_temp_file) \
    X(list_returns_entries_sorted_by_name_with_their_variant_text) \
    X(list_marks_corrupt_entries_invalid) \
    X(list_of_a_missing_directory_is_empty) \
    X(clear_removes_entries_and_temps_and_counts_them) \
    X(clear_recognises_exactly_the_temp_names_write_makes) \
    X(usage_counts_entries_and_their_bytes) \
    X(why_may_be_null_or_empty_and_a_short_one_is_never_overrun) \
    X(malformed_key_name_is_refused_before_touching_the_disk) \
    X(default_dir_prefers_dmattn_cache_dir) \
    X(default_dir_falls_back_to_xdg_cache_home) \
    X(default_dir_falls_back_to_home_when_xdg_is_unset_empty_or_relative) \
    X(default_dir_fails_without_home) \
    X(default_dir_fails_when_the_buffer_is_too_small)

DM_TEST_MAIN("cache", TESTS)
