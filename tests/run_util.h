/* run_util.h: running a built tool as a subprocess, as a user would, for the command-line tests
 * (test_dmgen.c, test_bench_cli.c): its exit status, stdout and stderr (stdin /dev/null), with
 * extra environment entries set in the child only. Header only. */
#ifndef DM_RUN_UTIL_H
#define DM_RUN_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

typedef struct run_result {
    int code; /* exit status, or 128 + signal */
    char *out;
    char *err;
} run_result;

static inline char *dm_test_slurp_fd(int fd)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
    for (;;) {
        if (n + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        ssize_t got = read(fd, buf + n, cap - n - 1);
        ck_assert_int_ge(got, 0);
        if (got == 0)
            break;
        n += (size_t)got;
    }
    buf[n] = '\0';
    close(fd);
    return buf;
}

static inline int dm_test_temp_fd(void)
{
    char name[] = "/tmp/dm_run_out_XXXXXX";
    int fd = mkstemp(name);
    ck_assert_int_ge(fd, 0);
    unlink(name);
    return fd;
}

/* Runs path with argv (argv[0] = path, NULL-terminated); env: NULL or a NULL-terminated list of
 * "NAME=value" set in the child before exec. */
static inline run_result dm_test_run(const char *path, const char *const *argv,
                                     const char *const *env)
{
    int out_fd = dm_test_temp_fd(), err_fd = dm_test_temp_fd();
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        for (int i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        int null_fd = open("/dev/null", O_RDONLY);
        dup2(null_fd, STDIN_FILENO);
        dup2(out_fd, STDOUT_FILENO);
        dup2(err_fd, STDERR_FILENO);
        execv(path, (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    run_result r = {
        .code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
        .out = dm_test_slurp_fd(out_fd),
        .err = dm_test_slurp_fd(err_fd),
    };
    return r;
}

/* Runs the built tool $DMATTN_BUILD_DIR/<prog> with the arguments `first` and then those of ap up
 * to a NULL (first NULL: none), env as dm_test_run's. */
static inline run_result dm_test_run_built(const char *prog, const char *const *env,
                                           const char *first, va_list ap)
{
    const char *build = getenv("DMATTN_BUILD_DIR");
    ck_assert_msg(build && *build, "DMATTN_BUILD_DIR is not set (run through ctest)");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", build, prog);

    const char *argv[64] = {path};
    int argc = 1;
    for (const char *a = first; a; a = va_arg(ap, const char *)) {
        ck_assert_int_lt(argc, 63);
        argv[argc++] = a;
    }
    argv[argc] = NULL;
    return dm_test_run(path, argv, env);
}

static inline void run_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

static inline int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

#endif
