/* ctx.c: the bottom of core: status names, version, error messages and warnings, and the CUDA
 * context a dm_ctx works in (enter/leave). Lifetime and options are in ctx_lifecycle.c, above
 * the module table. Holds no global state; libcuda is opened once per process by driver.c. */
#include "ctx.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *status_names[] = {
    "DM_OK",         "DM_ERR_INVALID_ARG", "DM_ERR_UNSUPPORTED", "DM_ERR_NO_DRIVER",
    "DM_ERR_NO_DEVICE", "DM_ERR_COMPILE",  "DM_ERR_CUDA",        "DM_ERR_NOMEM",
    "DM_ERR_IO",
};

const char *dm_status_name(dm_status st)
{
    if ((unsigned)st < sizeof status_names / sizeof status_names[0])
        return status_names[st];
    return "DM_ERR_UNKNOWN";
}

int dm_version(void) { return DM_VERSION_NUM; }
const char *dm_version_string(void) { return DM_VERSION_STRING; }

dm_status dm_set_error(dm_ctx *ctx, dm_status st, const char *fmt, ...)
{
    if (!ctx)
        return st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->errmsg, sizeof ctx->errmsg, fmt, ap);
    va_end(ap);
    return st;
}

void dm_clear_error(dm_ctx *ctx)
{
    if (!ctx)
        return;
    ctx->errmsg[0] = '\0'; /* one byte: dm_errmsg reads up to the first NUL */
}

static void vlog(const char *fmt, va_list ap)
{
    char line[DM_ERRMSG_BYTES];
    vsnprintf(line, sizeof line, fmt, ap);
    fprintf(stderr, "dmattn: %s\n", line);
}

void dm_warn(const dm_ctx *ctx, const char *fmt, ...)
{
    if (ctx && ctx->verbosity < 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

void dm_note(const dm_ctx *ctx, const char *fmt, ...)
{
    if (!ctx || ctx->verbosity < 2)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

const char *dm_errmsg(const dm_ctx *ctx)
{
    if (!ctx)
        return "no context (NULL dm_ctx; dm_ctx_create failed for lack of memory?)";
    return ctx->errmsg;
}

int dm_device_arch(const dm_driver *d, CUdevice dev, int *major, int *minor, dm_arch *arch)
{
    *major = *minor = 0;
    if (d->DeviceGetAttribute(major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev) !=
            CUDA_SUCCESS ||
        d->DeviceGetAttribute(minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev) !=
            CUDA_SUCCESS)
        return -1;
    return dm_arch_from_cc(*major, *minor, arch);
}

dm_status dm_ctx_enter(dm_ctx *ctx, const char *call)
{
    if (!ctx->drv)
        return dm_set_error(ctx, DM_ERR_NO_DEVICE,
                            "%s: the context has no CUDA device (offline context, or "
                            "dm_ctx_create failed: see its message)",
                            call);
    if (ctx->enter_depth > 0) { /* nested: the outer enter made cu_ctx current */
        ctx->enter_depth++;
        return DM_OK;
    }
    /* The usual caller (PyTorch, a runtime-API program) has cu_ctx current already: pushing it
     * and popping it again would leave the thread as it was, so the two calls are skipped.
     * Anything else current (or nothing) is pushed over and restored by dm_ctx_leave. */
    CUcontext current = NULL;
    if (ctx->drv->CtxGetCurrent(&current) == CUDA_SUCCESS && current == ctx->cu_ctx) {
        ctx->pushed = false;
        ctx->enter_depth = 1;
        return DM_OK;
    }
    CUresult r = ctx->drv->CtxPushCurrent(ctx->cu_ctx);
    if (r != CUDA_SUCCESS) {
        char buf[128];
        return dm_set_error(ctx, DM_ERR_CUDA, "%s: cuCtxPushCurrent: %s", call,
                            dm_driver_error_text(ctx->drv, r, buf, sizeof buf));
    }
    ctx->pushed = true;
    ctx->enter_depth = 1;
    return DM_OK;
}

void dm_ctx_leave(dm_ctx *ctx)
{
    assert(ctx->enter_depth > 0);
    if (--ctx->enter_depth > 0 || !ctx->pushed)
        return;
    CUcontext popped;
    ctx->drv->CtxPopCurrent(&popped);
    ctx->pushed = false;
}
