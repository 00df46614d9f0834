/* scratch.c: a call's temporary device memory (scratch.h): the context's allocator or the
 * driver's stream-ordered one. Nothing here decides sizes or lifetimes: the entry points do. */
#include <stdint.h>

#include "scratch.h"

dm_status dm_scratch_alloc(dm_ctx *ctx, const char *call, const char *what, size_t bytes,
                           CUstream stream, CUdeviceptr *out)
{
    char buf[160];
    *out = 0;
    if (ctx->scratch_alloc) {
        void *p = NULL;
        int rc = ctx->scratch_alloc(&p, bytes, stream, ctx->scratch_user);
        if (rc != 0 || !p)
            return dm_set_error(ctx, DM_ERR_NOMEM,
                                "%s: the context's allocator (dm_ctx_set_allocator) failed on %zu "
                                "bytes for %s (it returned %d%s)",
                                call, bytes, what, rc, rc == 0 ? " and a NULL pointer" : "");
        *out = (CUdeviceptr)(uintptr_t)p;
        return DM_OK;
    }
    CUresult r = ctx->drv->MemAllocAsync(out, bytes, stream);
    if (r != CUDA_SUCCESS) {
        *out = 0;
        return dm_set_error(ctx, DM_ERR_CUDA, "%s: cuMemAllocAsync of %zu bytes for %s: %s", call,
                            bytes, what, dm_driver_error_text(ctx->drv, r, buf, sizeof buf));
    }
    return DM_OK;
}

dm_status dm_scratch_free(dm_ctx *ctx, dm_status st, const char *call, const char *what,
                          CUdeviceptr p, size_t bytes, CUstream stream)
{
    char buf[160];
    if (!p)
        return st;
    if (ctx->scratch_free) {
        ctx->scratch_free((void *)(uintptr_t)p, bytes, stream, ctx->scratch_user);
        return st;
    }
    CUresult r = ctx->drv->MemFreeAsync(p, stream);
    if (r != CUDA_SUCCESS && st == DM_OK)
        return dm_set_error(ctx, DM_ERR_CUDA, "%s: cuMemFreeAsync of %s: %s", call, what,
                            dm_driver_error_text(ctx->drv, r, buf, sizeof buf));
    return st;
}
