/* ctx_lifecycle.c: dm_ctx_create / dm_ctx_destroy and the context's options (cache directory,
 * arch, verbosity). Sits above the module table (kernels.c), whose loaded modules it unloads at
 * destroy; ctx.c below both holds the messages and the CUDA-context enter/leave. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "ctx.h"
#include "kernels.h"

/* cuDeviceGetAttribute for dm_ctx_create; a failure names the attribute. */
#define DEVICE_ATTRIBUTE(ctx, device, attr, out) \
    device_attribute(ctx, device, CU_DEVICE_ATTRIBUTE_##attr, "CU_DEVICE_ATTRIBUTE_" #attr, out)

static dm_status device_attribute(dm_ctx *ctx, int device, CUdevice_attribute attr,
                                  const char *name, int *out)
{
    char buf[128];
    CUresult r = ctx->drv->DeviceGetAttribute(out, attr, ctx->cu_device);
    if (r != CUDA_SUCCESS)
        return dm_set_error(ctx, DM_ERR_CUDA,
                            "dm_ctx_create: cuDeviceGetAttribute(%s) on device %d: %s", name,
                            device, dm_driver_error_text(ctx->drv, r, buf, sizeof buf));
    return DM_OK;
}

/* Binds the context to a CUDA context on `device`: the caller's current one when it is on that
 * device (sharing memory and streams with PyTorch), else the device's primary context. */
static dm_status attach_device(dm_ctx *ctx, int device)
{
    char why[256] = "";
    const dm_driver *d = dm_driver_get(why, sizeof why);
    if (!d)
        return dm_set_error(ctx, DM_ERR_NO_DRIVER, "dm_ctx_create: %s", why);
    int count = 0;
    CUresult r = d->DeviceGetCount(&count);
    if (r != CUDA_SUCCESS || device >= count)
        return dm_set_error(ctx, DM_ERR_NO_DEVICE,
                            "dm_ctx_create: device %d does not exist (%d CUDA devices)", device,
                            r == CUDA_SUCCESS ? count : 0);
    if ((r = d->DeviceGet(&ctx->cu_device, device)) != CUDA_SUCCESS)
        return dm_set_error(ctx, DM_ERR_CUDA, "dm_ctx_create: cuDeviceGet(%d): %s", device,
                            dm_driver_error_text(d, r, why, sizeof why));

    CUcontext current = NULL;
    CUdevice current_dev = -1;
    if (d->CtxGetCurrent(&current) == CUDA_SUCCESS && current &&
        d->CtxGetDevice(&current_dev) == CUDA_SUCCESS && current_dev == ctx->cu_device) {
        ctx->cu_ctx = current;
    } else {
        if ((r = d->DevicePrimaryCtxRetain(&ctx->cu_ctx, ctx->cu_device)) != CUDA_SUCCESS)
            return dm_set_error(ctx, DM_ERR_CUDA,
                                "dm_ctx_create: cuDevicePrimaryCtxRetain(%d): %s", device,
                                dm_driver_error_text(d, r, why, sizeof why));
        ctx->retained_primary = true;
    }
    ctx->drv = d;
    ctx->device = device;

    int major, minor;
    dm_arch arch;
    dm_status st;
    if ((st = DEVICE_ATTRIBUTE(ctx, device, COMPUTE_CAPABILITY_MAJOR, &major)) != DM_OK ||
        (st = DEVICE_ATTRIBUTE(ctx, device, COMPUTE_CAPABILITY_MINOR, &minor)) != DM_OK ||
        (st = DEVICE_ATTRIBUTE(ctx, device, MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                               &ctx->smem_optin_bytes)) != DM_OK ||
        (st = DEVICE_ATTRIBUTE(ctx, device, MULTIPROCESSOR_COUNT, &ctx->sm_count)) != DM_OK)
        return st;
    /* A fresh context: no dm_ctx_set_arch can have come before this. */
    if (dm_arch_from_cc(major, minor, &arch) != 0) {
        char ccs[64];
        dm_arch_device_ccs_text(ccs, sizeof ccs);
        return dm_set_error(ctx, DM_ERR_UNSUPPORTED,
                            "dm_ctx_create: device %d has compute capability %d.%d; dmattn "
                            "builds for %s",
                            device, major, minor, ccs);
    }
    ctx->arch = arch;
    ctx->arch_known = true;
    return DM_OK;
}

/* After a failed attach_device: the context works offline, as a DM_NO_DEVICE one does, so
 * dm_fwd reports DM_ERR_NO_DEVICE instead of launching on a device it could not vet. */
static void detach_device(dm_ctx *ctx)
{
    if (ctx->retained_primary)
        ctx->drv->DevicePrimaryCtxRelease(ctx->cu_device);
    ctx->retained_primary = false;
    ctx->drv = NULL;
    ctx->cu_ctx = NULL;
    ctx->device = DM_NO_DEVICE;
}

dm_status dm_ctx_create(dm_ctx **out, int device)
{
    if (!out)
        return DM_ERR_INVALID_ARG;
    dm_ctx *ctx = calloc(1, sizeof *ctx);
    *out = ctx;
    if (!ctx)
        return DM_ERR_NOMEM;
    ctx->device = DM_NO_DEVICE;
    ctx->verbosity = 1;
    dm_status st = dm_ctx_set_cache_dir(ctx, NULL);
    if (st != DM_OK)
        return st;
    if (device == DM_NO_DEVICE)
        return DM_OK;
    if (device < 0)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "dm_ctx_create: device = %d: expected >= 0 or DM_NO_DEVICE", device);
    st = attach_device(ctx, device);
    if (st != DM_OK)
        detach_device(ctx);
    return st;
}

void dm_ctx_destroy(dm_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->drv && dm_ctx_enter(ctx, "dm_ctx_destroy") == DM_OK) {
        dm_module_table_destroy(ctx);
        dm_ctx_leave(ctx);
    } else {
        dm_module_table_destroy(ctx);
    }
    if (ctx->retained_primary)
        ctx->drv->DevicePrimaryCtxRelease(ctx->cu_device);
    free(ctx);
}

dm_status dm_ctx_set_cache_dir(dm_ctx *ctx, const char *dir)
{
    if (!ctx)
        return DM_ERR_INVALID_ARG;
    dm_clear_error(ctx);
    ctx->cache_dir_ready = false;
    ctx->cache_write_warned = false;
    if (dir) {
        if (strlen(dir) >= sizeof ctx->cache_dir)
            return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                                "dm_ctx_set_cache_dir: dir is %zu bytes long: expected under %zu",
                                strlen(dir), sizeof ctx->cache_dir);
        snprintf(ctx->cache_dir, sizeof ctx->cache_dir, "%s", dir);
        return DM_OK;
    }
    if (dm_cache_default_dir(ctx->cache_dir, sizeof ctx->cache_dir) != 0) {
        ctx->cache_dir[0] = '\0';
        dm_warn(ctx, "no cache directory ($DMATTN_CACHE_DIR, $XDG_CACHE_HOME and $HOME unset): "
                     "kernels are kept in memory only");
    }
    return DM_OK;
}

dm_status dm_ctx_set_arch(dm_ctx *ctx, const char *arch)
{
    if (!ctx)
        return DM_ERR_INVALID_ARG;
    dm_clear_error(ctx);
    if (!arch) {
        ctx->arch_known = false;
        int major, minor;
        if (ctx->drv)
            ctx->arch_known =
                dm_device_arch(ctx->drv, ctx->cu_device, &major, &minor, &ctx->arch) == 0;
        return DM_OK;
    }
    dm_arch a;
    if (dm_arch_parse(arch, &a) != DM_OK) {
        char archs[64];
        dm_arch_list_text(archs, sizeof archs, ", ", " or ");
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "dm_ctx_set_arch: arch '%s': expected %s",
                            arch, archs);
    }
    ctx->arch = a;
    ctx->arch_known = true;
    return DM_OK;
}

dm_status dm_ctx_set_verbosity(dm_ctx *ctx, int level)
{
    if (!ctx)
        return DM_ERR_INVALID_ARG;
    dm_clear_error(ctx);
    if (level < 0 || level > 2)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "dm_ctx_set_verbosity: level = %d: expected 0, 1 or 2", level);
    ctx->verbosity = level;
    return DM_OK;
}

dm_status dm_ctx_set_allocator(dm_ctx *ctx, dm_alloc_fn alloc, dm_free_fn free, void *user)
{
    if (!ctx)
        return DM_ERR_INVALID_ARG;
    dm_clear_error(ctx);
    if (!alloc != !free)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "dm_ctx_set_allocator: %s is NULL and %s is not: expected both or neither",
                            alloc ? "free" : "alloc", alloc ? "alloc" : "free");
    ctx->scratch_alloc = alloc;
    ctx->scratch_free = free;
    ctx->scratch_user = alloc ? user : NULL;
    return DM_OK;
}

const char *dm_ctx_cache_dir(const dm_ctx *ctx) { return ctx ? ctx->cache_dir : ""; }

const char *dm_ctx_arch(const dm_ctx *ctx)
{
    return ctx && ctx->arch_known ? dm_arch_name(ctx->arch) : "";
}
