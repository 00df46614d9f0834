/* build.c: turns a variant into a loaded kernel through the in-memory module table, the disk
 * cache, codegen and NVRTC (build.h). Owns the context's module table and the cache policy:
 * an unusable cache directory degrades to memory only with one warning, never a failure. */
#include "build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "nvrtc_jit.h"

struct dm_module_entry {
    char key[DM_VARIANT_TEXT_MAX];
    CUmodule module;
    dm_kernel kernel;
    dm_module_entry *next;
};

void dm_module_table_destroy(dm_ctx *ctx)
{
    pthread_mutex_lock(&ctx->modules_lock);
    dm_module_entry *e = ctx->modules;
    while (e) {
        dm_module_entry *next = e->next;
        if (ctx->drv)
            ctx->drv->ModuleUnload(e->module);
        free(e);
        e = next;
    }
    ctx->modules = NULL;
    pthread_mutex_unlock(&ctx->modules_lock);
}

/* Makes sure the cache directory exists once per context; on failure the context goes memory
 * only, with a warning that says why. */
static bool cache_usable(dm_ctx *ctx)
{
    if (!ctx->cache_dir[0])
        return false;
    if (ctx->cache_dir_ready)
        return true;
    char why[512];
    if (dm_cache_prepare_dir(ctx->cache_dir, why, sizeof why) != DM_CACHE_HIT) {
        dm_warn(ctx, "cache directory unusable (%s): kernels are kept in memory only", why);
        ctx->cache_dir[0] = '\0';
        return false;
    }
    ctx->cache_dir_ready = true;
    return true;
}

static void make_key(const dm_variant *v, const dm_kernel_src *src, dm_cache_key *key)
{
    char nvrtc_version[32], options[512];
    dm_nvrtc_version_text(nvrtc_version, sizeof nvrtc_version);
    dm_nvrtc_options_text(v->arch, options, sizeof options);
    dm_cache_key_fields f = {
        .lib_version = DM_VERSION_STRING,
        .nvrtc_version = nvrtc_version,
        .arch = dm_arch_name(v->arch),
        .options = options,
        .source = src->source,
        .source_bytes = src->source_bytes,
    };
    dm_cache_key_make(&f, key);
}

dm_status dm_build_cubin(dm_ctx *ctx, const char *call, const dm_variant *v, dm_kernel_src *src,
                         void **cubin, size_t *cubin_bytes, dm_build_info *info)
{
    char text[DM_VARIANT_TEXT_MAX], err[1024], why[1024];
    dm_cache_key key;
    dm_build_info local;
    dm_status st;
    if (!info)
        info = &local;
    memset(info, 0, sizeof *info);
    dm_variant_format(v, text, sizeof text);
    *cubin = NULL;
    *cubin_bytes = 0;

    st = dm_gen_emit(v, src, err, sizeof err);
    if (st != DM_OK)
        return dm_set_error(ctx, st, "%s: %s", call, err);
    make_key(v, src, &key);

    bool disk = cache_usable(ctx);
    if (disk) {
        snprintf(info->entry_path, sizeof info->entry_path, "%s/%s%s", ctx->cache_dir, key.name,
                 DM_CACHE_SUFFIX);
        switch (dm_cache_read(ctx->cache_dir, &key, cubin, cubin_bytes, why, sizeof why)) {
        case DM_CACHE_HIT:
            info->source = DM_BUILT_FROM_DISK;
            dm_note(ctx, "%s: disk cache hit %s", text, info->entry_path);
            return DM_OK;
        case DM_CACHE_CORRUPT:
            dm_warn(ctx, "%s; rebuilding it", why);
            break;
        case DM_CACHE_IO_ERROR:
            dm_warn(ctx, "cache read failed (%s); compiling", why);
            break;
        case DM_CACHE_MISS:
            break;
        }
    }

    st = dm_nvrtc_compile(ctx, call, text, src->source, v->arch, cubin, cubin_bytes,
                          &info->compile_ms);
    if (st != DM_OK)
        return st;
    info->source = DM_BUILT_BY_NVRTC;
    dm_note(ctx, "%s: compiled in %.1f ms", text, info->compile_ms);
    if (disk) {
        if (dm_cache_write(ctx->cache_dir, &key, text, *cubin, *cubin_bytes, why, sizeof why) ==
            DM_CACHE_HIT) {
            info->cache_written = true;
        } else if (!ctx->cache_write_warned) {
            ctx->cache_write_warned = true;
            dm_warn(ctx, "cannot write the cache (%s): kernels are kept in memory only", why);
        }
    }
    return DM_OK;
}

static const dm_kernel *find_loaded(dm_ctx *ctx, const char *key)
{
    const dm_kernel *k = NULL;
    pthread_mutex_lock(&ctx->modules_lock);
    for (dm_module_entry *e = ctx->modules; e; e = e->next)
        if (strcmp(e->key, key) == 0) {
            k = &e->kernel;
            break;
        }
    pthread_mutex_unlock(&ctx->modules_lock);
    return k;
}

static dm_status cuda_error(dm_ctx *ctx, const char *call, const char *what, const char *variant,
                            CUresult r)
{
    char buf[160];
    return dm_set_error(ctx, DM_ERR_CUDA, "%s: variant '%s': %s: %s", call, variant, what,
                        dm_driver_error_text(ctx->drv, r, buf, sizeof buf));
}

dm_status dm_kernel_get(dm_ctx *ctx, const char *call, const dm_variant *v, const dm_kernel **out,
                        dm_build_info *info)
{
    char text[DM_VARIANT_TEXT_MAX];
    dm_kernel_src src = {0};
    void *cubin = NULL;
    size_t cubin_bytes = 0;
    dm_module_entry *e = NULL;
    dm_status st;
    CUresult r;

    dm_variant_format(v, text, sizeof text);
    if ((*out = find_loaded(ctx, text))) {
        if (info) {
            memset(info, 0, sizeof *info);
            info->source = DM_BUILT_FROM_MEMORY;
        }
        return DM_OK;
    }
    st = dm_build_cubin(ctx, call, v, &src, &cubin, &cubin_bytes, info);
    if (st != DM_OK)
        goto out;
    if (src.smem_bytes > ctx->smem_optin_bytes) {
        st = dm_set_error(ctx, DM_ERR_UNSUPPORTED,
                          "%s: variant '%s' needs %d bytes of shared memory; the device allows %d",
                          call, text, src.smem_bytes, ctx->smem_optin_bytes);
        goto out;
    }
    e = calloc(1, sizeof *e);
    if (!e) {
        st = dm_set_error(ctx, DM_ERR_NOMEM, "%s: out of memory", call);
        goto out;
    }
    snprintf(e->key, sizeof e->key, "%s", text);
    if ((r = ctx->drv->ModuleLoadData(&e->module, cubin)) != CUDA_SUCCESS) {
        st = cuda_error(ctx, call, "cuModuleLoadData", text, r);
        goto out;
    }
    if ((r = ctx->drv->ModuleGetFunction(&e->kernel.fn, e->module, src.entry)) != CUDA_SUCCESS) {
        st = cuda_error(ctx, call, "cuModuleGetFunction", text, r);
        goto out;
    }
    if ((r = ctx->drv->FuncSetAttribute(e->kernel.fn,
                                        CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                        src.smem_bytes)) != CUDA_SUCCESS) {
        st = cuda_error(ctx, call, "cuFuncSetAttribute", text, r);
        goto out;
    }
    e->kernel.threads = src.threads;
    e->kernel.block_m = src.block_m;
    e->kernel.block_n = src.block_n;
    e->kernel.smem_bytes = src.smem_bytes;
    e->kernel.split_stages = src.split_stages;
    e->kernel.split_digit_stages = src.split_digit_stages;
    pthread_mutex_lock(&ctx->modules_lock);
    e->next = ctx->modules;
    ctx->modules = e;
    pthread_mutex_unlock(&ctx->modules_lock);
    *out = &e->kernel;
    e = NULL;
out:
    if (e) {
        if (e->module)
            ctx->drv->ModuleUnload(e->module);
        free(e);
    }
    free(cubin);
    dm_kernel_src_free(&src);
    return st;
}

dm_status dm_prebuild(dm_ctx *ctx, const char *variant, int *was_cached)
{
    char err[512];
    dm_variant v;
    dm_kernel_src src = {0};
    void *cubin = NULL;
    size_t cubin_bytes = 0;
    dm_build_info info;
    if (!ctx)
        return DM_ERR_INVALID_ARG;
    dm_clear_error(ctx);
    if (!variant)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "dm_prebuild: variant is NULL");
    if (dm_variant_parse(variant, &v, err, sizeof err) != DM_OK)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "dm_prebuild: cannot parse '%s': %s", variant,
                            err);
    dm_status st = dm_build_cubin(ctx, "dm_prebuild", &v, &src, &cubin, &cubin_bytes, &info);
    if (st == DM_OK && info.source == DM_BUILT_BY_NVRTC && !info.cache_written)
        st = dm_set_error(ctx, DM_ERR_IO,
                          "dm_prebuild: '%s' compiled but not stored: the cache directory '%s' "
                          "is not writable",
                          variant, ctx->cache_dir[0] ? ctx->cache_dir : "(none)");
    if (was_cached)
        *was_cached = st == DM_OK && info.source == DM_BUILT_FROM_DISK;
    free(cubin);
    dm_kernel_src_free(&src);
    return st;
}
