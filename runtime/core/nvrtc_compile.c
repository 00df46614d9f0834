/* nvrtc_compile.c: compiles generated CUDA source to a cubin for one arch with NVRTC. */
#include "nvrtc_compile.h"

#include <nvrtc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* "--gpu-architecture=sm_90a" for each row of the arch table (arch.h), made once: options are
 * handed out as pointers that live as long as the library. */
#define ARCH_OPTION_(id, name, cc, nvrtc, ccs) [DM_##id] = "--gpu-architecture=" nvrtc,
static const char *const arch_options[DM_ARCH_COUNT] = {DM_ARCH_TABLE(ARCH_OPTION_)};
#undef ARCH_OPTION_

int dm_nvrtc_options(dm_arch arch, const char *opts[DM_NVRTC_MAX_OPTIONS])
{
    int n = 0;
    opts[n++] = (int)arch >= 0 && (int)arch < DM_ARCH_COUNT ? arch_options[arch] : NULL;
    opts[n++] = "--std=c++17";
    opts[n++] = "--fmad=true";
    /* Line info maps compute-sanitizer and profiler reports to the generated source. */
    opts[n++] = "--generate-line-info";
    return n;
}

int dm_nvrtc_options_text(dm_arch arch, char *buf, size_t buf_bytes)
{
    const char *opts[DM_NVRTC_MAX_OPTIONS];
    int n = dm_nvrtc_options(arch, opts);
    int len = 0;
    for (int i = 0; i < n; i++)
        len += snprintf(buf + (len < (int)buf_bytes ? len : 0),
                        len < (int)buf_bytes ? buf_bytes - len : 0, "%s%s", i ? "\n" : "",
                        opts[i]);
    return len;
}

const char *dm_nvrtc_version_text(char *buf, size_t buf_bytes)
{
    int major = 0, minor = 0;
    nvrtcVersion(&major, &minor);
    snprintf(buf, buf_bytes, "%d.%d", major, minor);
    return buf;
}

/* The source with line numbers, so a compile error can be read against it. */
static void dump_numbered(const dm_ctx *ctx, const char *src)
{
    int line = 1;
    const char *p = src;
    while (*p) {
        const char *nl = strchr(p, '\n');
        int n = nl ? (int)(nl - p) : (int)strlen(p);
        dm_warn(ctx, "%4d  %.*s", line++, n, p);
        p += n + (nl ? 1 : 0);
    }
}

dm_status dm_nvrtc_compile(dm_ctx *ctx, const char *call, const char *variant_text,
                           const char *src, dm_arch arch, void **cubin, size_t *cubin_bytes,
                           double *compile_ms)
{
    nvrtcProgram prog = NULL;
    char *log = NULL;
    dm_status st = DM_OK;
    const char *opts[DM_NVRTC_MAX_OPTIONS];
    int n_opts = dm_nvrtc_options(arch, opts);
    struct timespec t0, t1;
    *cubin = NULL;
    *cubin_bytes = 0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    nvrtcResult r = nvrtcCreateProgram(&prog, src, "dmattn_kernel.cu", 0, NULL, NULL);
    if (r != NVRTC_SUCCESS) {
        st = dm_set_error(ctx, DM_ERR_COMPILE, "%s: variant '%s': nvrtcCreateProgram: %s", call,
                          variant_text, nvrtcGetErrorString(r));
        goto out;
    }
    r = nvrtcCompileProgram(prog, n_opts, opts);
    if (r != NVRTC_SUCCESS) {
        size_t log_bytes = 0;
        nvrtcGetProgramLogSize(prog, &log_bytes);
        log = malloc(log_bytes + 1);
        if (log && nvrtcGetProgramLog(prog, log) == NVRTC_SUCCESS)
            log[log_bytes] = '\0';
        else if (log)
            log[0] = '\0';
        dm_warn(ctx, "%s: variant '%s' failed to compile; source follows", call, variant_text);
        dump_numbered(ctx, src);
        st = dm_set_error(ctx, DM_ERR_COMPILE, "%s: variant '%s': NVRTC (%s): %s", call,
                          variant_text, opts[0], log ? log : nvrtcGetErrorString(r));
        goto out;
    }
    size_t bytes = 0;
    if ((r = nvrtcGetCUBINSize(prog, &bytes)) != NVRTC_SUCCESS || bytes == 0) {
        st = dm_set_error(ctx, DM_ERR_COMPILE, "%s: variant '%s': nvrtcGetCUBINSize: %s", call,
                          variant_text, nvrtcGetErrorString(r));
        goto out;
    }
    *cubin = malloc(bytes);
    if (!*cubin) {
        st = dm_set_error(ctx, DM_ERR_NOMEM, "%s: out of memory for a %zu-byte cubin", call, bytes);
        goto out;
    }
    if ((r = nvrtcGetCUBIN(prog, *cubin)) != NVRTC_SUCCESS) {
        free(*cubin);
        *cubin = NULL;
        st = dm_set_error(ctx, DM_ERR_COMPILE, "%s: variant '%s': nvrtcGetCUBIN: %s", call,
                          variant_text, nvrtcGetErrorString(r));
        goto out;
    }
    *cubin_bytes = bytes;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (compile_ms)
        *compile_ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
out:
    free(log);
    if (prog)
        nvrtcDestroyProgram(&prog);
    return st;
}
