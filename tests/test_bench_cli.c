/* test_bench_cli.c: dmbench and dmlatency where no CUDA driver is (issue 17): the built binaries
 * ($DMATTN_BUILD_DIR) run as subprocesses with LD_LIBRARY_PATH an empty directory and
 * DMATTN_LIBCUDA a file that is not there, so that no libcuda can be opened even on a GPU
 * machine. --help, --version, --dry-run and usage errors need no driver; a real run exits 1 with
 * one line naming the driver it could not open. Exit statuses: 0 success, 1 failure, 2 usage. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "run_util.h"
#include "test_fs.h"

/* Runs $DMATTN_BUILD_DIR/<prog> with the NULL-terminated arguments, without a driver: the
 * loader's search path is `empty` (an empty directory) and DMATTN_LIBCUDA names a missing file
 * in it. stdin is /dev/null, stdout and stderr are captured. */
static run_result run_without_driver(const char *empty, const char *prog, ...)
{
    char ld_path[4096 + 16], driver[4096 + 32];
    snprintf(ld_path, sizeof ld_path, "LD_LIBRARY_PATH=%s", empty);
    snprintf(driver, sizeof driver, "DMATTN_LIBCUDA=%s/libcuda.so.1", empty);
    const char *env[] = {ld_path, driver, NULL};
    va_list ap;
    va_start(ap, prog);
    const char *first = va_arg(ap, const char *);
    run_result r = dm_test_run_built(prog, env, first, ap);
    va_end(ap);
    return r;
}

#define run(empty, ...) run_without_driver(empty, __VA_ARGS__, (const char *)NULL)

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* exit 0, nothing on stderr, stdout opening with `first` */
static void check_prints(const run_result *r, const char *first)
{
    ck_assert_msg(r->code == 0, "exit %d: %.800s", r->code, r->err);
    ck_assert_str_eq(r->err, "");
    ck_assert_msg(starts(r->out, first), "expected '%s...', got: %.400s", first, r->out);
}

/* "<prog> X.Y.Z (dmattn X.Y.Z)\n" and nothing else */
static void check_version_line(const run_result *r, const char *prog)
{
    char fmt[64];
    int v[6], used = 0;
    snprintf(fmt, sizeof fmt, "%s %%d.%%d.%%d (dmattn %%d.%%d.%%d)\n%%n", prog);
    ck_assert_msg(sscanf(r->out, fmt, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &used) == 6 &&
                      used == (int)strlen(r->out),
                  "version line: '%s'", r->out);
}

/* exit 1, nothing on stdout, one line on stderr naming the driver that could not be opened */
static void check_no_driver(const run_result *r, const char *prog, const char *empty)
{
    char want[256];
    snprintf(want, sizeof want, "%s: cannot open the CUDA driver (%s/libcuda.so.1): ", prog, empty);
    ck_assert_msg(r->code == 1, "exit %d: %.800s", r->code, r->err);
    ck_assert_str_eq(r->out, "");
    ck_assert_msg(count_lines(r->err) == 1 && starts(r->err, want), "stderr: %.800s", r->err);
}

START_TEST(dmbench_help_works_without_a_driver)
{
    char empty[64];
    dm_test_temp_dir(empty, "benchcli");
    run_result r = run(empty, "dmbench", "--help");
    check_prints(&r, "usage: dmbench [OPTIONS]\n");
    ck_assert(strstr(r.out, "--dry-run"));
    run_free(&r);
    r = run(empty, "dmbench", "--varlen", "--help");
    check_prints(&r, "usage: dmbench --varlen [OPTIONS]\n");
    run_free(&r);
    dm_test_remove_dir(empty);
}
END_TEST

START_TEST(dmbench_version_works_without_a_driver)
{
    char empty[64];
    dm_test_temp_dir(empty, "benchcli");
    run_result r = run(empty, "dmbench", "--version");
    check_prints(&r, "dmbench ");
    check_version_line(&r, "dmbench");
    run_free(&r);
    dm_test_remove_dir(empty);
}
END_TEST

START_TEST(dmlatency_help_works_without_a_driver)
{
    char empty[64];
    dm_test_temp_dir(empty, "benchcli");
    run_result r = run(empty, "dmlatency", "--help");
    check_prints(&r, "usage: dmlatency [OPTIONS]\n");
    ck_assert(strstr(r.out, "launch_floor_us"));
    run_free(&r);
    dm_test_remove_dir(empty);
}
END_TEST

START_TEST(dmlatency_version_works_without_a_driver)
{
    char empty[64];
    dm_test_temp_dir(empty, "benchcli");
    run_result r = run(empty, "dmlatency", "--version");
    check_prints(&r, "dmlatency ");
    check_version_line(&r, "dmlatency");
    run_free(&r);
    dm_test_remove_dir(empty);
}
END_TEST

START_TEST(dmbench_dry_run_lists_the_cases_without_a_driver)
{
    char empty[64];
    dm_test_temp_dir(empty, "benchcli");
    run_result r = run(empty, "dmbench", "--dry-run", "--L", "1024,2048", "--causal", "0,1");
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert_str_eq(r.err, "dmbench: 4 cases\n");
    ck_assert_msg(starts(r.out, "  B ") && strstr(r.out, "GFLOP"), "%.800s", r.out);
    ck_assert_int_eq(count_lines(r.out), 1 + 4); /* the header, then one row a case */
    run_free(&r);
    dm_test_remove_dir(empty);
}
END_TEST

START_TEST(dmbench_varlen_dry_run_lists_the_cases_without_a_driver)
{
    char empty[64];
    dm_test_temp_dir(empty, "benchcli");
    run_result r = run(empty, "dmbench", "--varlen", "--dry-run", "--seqlens", "4x512");
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert_str_eq(r.err, "dmbench: 1 case\n");
    ck_assert_msg(starts(r.out, "# batch 4x512") && strstr(r.out, "GFLOP"), "%.800s", r.out);
    run_free(&r);
    dm_test_remove_dir(empty);
}
END_TEST

/* bwd with and without dbias; dbias 1 with fwd or with no bias dropped, and said so */
START_TEST(dmbench_varlen_dry_run_lists_backward_cases_and_drops_dbias_without_one)
{
    char empty[64];
    dm_test_temp_dir(empty, "benchcli");
    run_result r = run(empty, "dmbench", "--varlen", "--dry-run", "--seqlens", "4x512", "--dir",
                       "fwd,bwd", "--dbias", "0,1", "--bias", "k,none");
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert_str_eq(r.err, "dmbench: dropped 3 combinations with dbias 1 and no bias or no "
                            "backward\ndmbench: 5 cases\n");
    ck_assert_msg(strstr(r.out, " dir ") && strstr(r.out, " bwd+dbias "), "%.800s", r.out);
    ck_assert_int_eq(count_lines(r.out), 1 + 1 + 5); /* the batch, the header, the cases */
    run_free(&r);
    dm_test_remove_dir(empty);
}
END_TEST

START_TEST(dmbench_varlen_drops_a_window_with_a_backward_and_says_so)
{
    char empty[64];
    dm_test_temp_dir(empty, "benchcli");
    run_result r = run(empty, "dmbench", "--varlen", "--dry-run", "--seqlens", "4x512", "--dir",
                       "bwd,fwdbwd", "--window", "0,64");
    ck_assert_msg(r.code == 0, "exit %d: %.800s", r.code, r.err);
    ck_assert_msg(starts(r.err, "dmbench: dropped 2 combinations with a window and a backward"),
                  "%.800s", r.err);
    ck_assert_msg(strstr(r.err, "dmbench: 2 cases\n"), "%.800s", r.err);
    run_free(&r);
    r = run(empty, "dmbench", "--varlen", "--dry-run", "--dir", "bwd", "--window", "64");
    ck_assert_msg(r.code == 2, "exit %d: %.800s", r.code, r.err);
    ck_assert_str_eq(r.out, "");
    run_free(&r);
    dm_test_remove_dir(empty);
}
END_TEST

START_TEST(dmbench_varlen_rejects_a_bad_dir_or_dbias_with_exit_2)
{
    char empty[64];
    dm_test_temp_dir(empty, "benchcli");
    const char *bad[][2] = {{"--dir", "sideways"}, {"--dbias", "2"}};
    for (int i = 0; i < 2; i++) {
        run_result r = run(empty, "dmbench", "--varlen", "--dry-run", bad[i][0], bad[i][1]);
        ck_assert_msg(r.code == 2, "%s %s: exit %d: %.800s", bad[i][0], bad[i][1], r.code, r.err);
        ck_assert_str_eq(r.out, "");
        ck_assert_int_eq(count_lines(r.err), 1);
        ck_assert_msg(strstr(r.err, bad[i][0]) && strstr(r.err, bad[i][1]), "%.800s", r.err);
        run_free(&r);
    }
    dm_test_remove_dir(empty);
}
END_TEST

START_TEST(usage_errors_exit_2_without_a_driver)
{
    char empty[64];
    dm_test_temp_dir(empty, "benchcli");
    const char *progs[] = {"dmbench", "dmlatency"};
    for (int i = 0; i < 2; i++) {
        run_result r = run(empty, progs[i], "--frob");
        ck_assert_msg(r.code == 2, "%s --frob: exit %d: %.800s", progs[i], r.code, r.err);
        ck_assert_str_eq(r.out, "");
        ck_assert_int_eq(count_lines(r.err), 1);
        ck_assert_msg(starts(r.err, progs[i]) && strstr(r.err, "'--frob'"), "%.800s", r.err);
        run_free(&r);
    }
    dm_test_remove_dir(empty);
}
END_TEST

START_TEST(dmbench_sweep_without_a_driver_exits_1_naming_libcuda)
{
    char empty[64];
    dm_test_temp_dir(empty, "benchcli");
    run_result r = run(empty, "dmbench", "--L", "256", "--warmup", "0", "--iters", "1");
    check_no_driver(&r, "dmbench", empty);
    run_free(&r);
    r = run(empty, "dmbench", "--varlen", "--seqlens", "4x512", "--warmup", "0", "--iters", "1");
    check_no_driver(&r, "dmbench", empty);
    run_free(&r);
    dm_test_remove_dir(empty);
}
END_TEST

START_TEST(dmlatency_without_a_driver_exits_1_naming_libcuda)
{
    char empty[64];
    dm_test_temp_dir(empty, "benchcli");
    run_result r = run_without_driver(empty, "dmlatency", (const char *)NULL);
    check_no_driver(&r, "dmlatency", empty);
    run_free(&r);
    dm_test_remove_dir(empty);
}
END_TEST

#define TESTS(X) \
    X(dmbench_help_works_without_a_driver) \
    X(dmbench_version_works_without_a_driver) \
    X(dmlatency_help_works_without_a_driver) \
    X(dmlatency_version_works_without_a_driver) \
    X(dmbench_dry_run_lists_the_cases_without_a_driver) \
    X(dmbench_varlen_dry_run_lists_the_cases_without_a_driver) \
    X(dmbench_varlen_dry_run_lists_backward_cases_and_drops_dbias_without_one) \
    X(dmbench_varlen_drops_a_window_with_a_backward_and_says_so) \
    X(dmbench_varlen_rejects_a_bad_dir_or_dbias_with_exit_2) \
    X(usage_errors_exit_2_without_a_driver) \
    X(dmbench_sweep_without_a_driver_exits_1_naming_libcuda) \
    X(dmlatency_without_a_driver_exits_1_naming_libcuda)

DM_TEST_MAIN("bench_cli", TESTS)
