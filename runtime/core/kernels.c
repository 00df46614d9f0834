/* kernels.c: turns a variant into a loaded kernel through the in-memory module table, the disk
 * cache, codegen and NVRTC (kernels.h). Owns the context's module table and the cache policy:
 * an unusable cache directory degrades to memory only with one warning, never a failure. */
#include "kernels.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "nvrtc_compile.h"

struct dm_module_entry {
    dm_variant variant;
    uint64_t hash;
    CUmodule module;
    dm_kernel kernel;
};

/* Every field of dm_variant, once: hash and equality read this list, never the struct's bytes
 * (padding is not part of the value). A field added to dm_variant must be added here. */
/* clang-format off */
#define VARIANT_FIELDS(X) \
    X(family) X(dir) X(head_dim) X(dtype) X(mask) X(bias) X(window) X(varlen) X(causal) \
    X(softcap) X(decode) X(relu) X(smooth) X(arch)
/* clang-format on */
_Static_assert(sizeof(dm_variant) == 40, "dm_variant changed: update VARIANT_FIELDS here");

static uint64_t variant_hash(const dm_variant *v)
{
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a over whole fields, then murmur3's finalizer */
#define HASH_FIELD(f) h = (h ^ (uint64_t)v->f) * 0x100000001b3u;
    VARIANT_FIELDS(HASH_FIELD)
#undef HASH_FIELD
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53u;
    h ^= h >> 33;
    return h;
}

static bool variant_equal(const dm_variant *a, const dm_variant *b)
{
#define SAME_FIELD(f) a->f == b->f &&
    return VARIANT_FIELDS(SAME_FIELD) true;
#undef SAME_FIELD
}

/* The slot holding v, or the free slot where it would go (the table is never full). */
static dm_module_entry **find_slot(const dm_module_table *t, const dm_variant *v, uint64_t hash)
{
    size_t mask = t->n_slots - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        dm_module_entry *e = t->slots[i];
        if (!e || (e->hash == hash && variant_equal(&e->variant, v)))
            return &t->slots[i];
    }
}

const dm_kernel *dm_module_find(const dm_ctx *ctx, const dm_variant *v)
{
    if (ctx->modules.count == 0)
        return NULL;
    dm_module_entry *e = *find_slot(&ctx->modules, v, variant_hash(v));
    return e ? &e->kernel : NULL;
}

/* Doubles the slots (16 to start) and re-places every entry. */
static bool grow(dm_module_table *t)
{
    size_t n = t->n_slots ? 2 * t->n_slots : 16;
    dm_module_table bigger = {.slots = calloc(n, sizeof *bigger.slots), .n_slots = n};
    if (!bigger.slots)
        return false;
    for (size_t i = 0; i < t->n_slots; i++)
        if (t->slots[i])
            *find_slot(&bigger, &t->slots[i]->variant, t->slots[i]->hash) = t->slots[i];
    bigger.count = t->count;
    free(t->slots);
    *t = bigger;
    return true;
}

dm_status dm_module_insert(dm_ctx *ctx, const char *call, const dm_variant *v, CUmodule module,
                           const dm_kernel *kernel, const dm_kernel **out)
{
    dm_module_table *t = &ctx->modules;
    dm_module_entry *e = NULL;
    if (2 * (t->count + 1) > t->n_slots && !grow(t))
        goto oom;
    uint64_t hash = variant_hash(v);
    dm_module_entry **slot = find_slot(t, v, hash);
    assert(!*slot); /* callers insert only after dm_module_find missed */
    if (!(e = malloc(sizeof *e)))
        goto oom;
    *e = (dm_module_entry){.variant = *v, .hash = hash, .module = module, .kernel = *kernel};
    *slot = e;
    t->count++;
    *out = &e->kernel;
    return DM_OK;
oom:
    return dm_set_error(ctx, DM_ERR_NOMEM, "%s: out of memory for the module table", call);
}

void dm_module_table_destroy(dm_ctx *ctx)
{
    dm_module_table *t = &ctx->modules;
    for (size_t i = 0; i < t->n_slots; i++) {
        dm_module_entry *e = t->slots[i];
        if (!e)
            continue;
        if (ctx->drv)
            ctx->drv->ModuleUnload(e->module);
        free(e);
    }
    free(t->slots);
    *t = (dm_module_table){0};
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
    if (dm_cache_prepare_dir(ctx->cache_dir, why, sizeof why) != DM_CACHE_OK) {
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
        case DM_CACHE_OK: /* not a read result */
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
            DM_CACHE_OK) {
            info->cache_written = true;
        } else if (!ctx->cache_write_warned) {
            ctx->cache_write_warned = true;
            dm_warn(ctx, "cannot write the cache (%s): kernels are kept in memory only", why);
        }
    }
    return DM_OK;
}

static dm_status cuda_error(dm_ctx *ctx, const char *call, const char *what, const char *variant,
                            CUresult r)
{
    char buf[160];
    return dm_set_error(ctx, DM_ERR_CUDA, "%s: variant '%s': %s: %s", call, variant, what,
                        dm_driver_error_text(ctx->drv, r, buf, sizeof buf));
}

/* The decode kernel's launch for a block fewer an SM (fwd_decode.c chooses it for equal lengths
 * whose waves fill the device better so): the least dynamic shared memory, in 1 KB steps from the
 * kernel's own, at which the driver counts blocks_per_sm - 1 (the least, so that the SM keeps the
 * most L1 cache). None up to the opt-in limit shared by that many blocks: 0, the kernel as it is. */
static dm_status find_fewer_blocks_smem(dm_ctx *ctx, const char *call, const char *text,
                                        dm_kernel *k)
{
    const int want = k->blocks_per_sm - 1, step = 1024, most = ctx->smem_optin_bytes / want;
    int got = 0;
    CUresult r;
    k->fewer_blocks_smem_bytes = 0;
    if (most <= k->smem_bytes)
        return DM_OK;
    if ((r = ctx->drv->FuncSetAttribute(k->fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                        most)) != CUDA_SUCCESS)
        return cuda_error(ctx, call, "cuFuncSetAttribute", text, r);
    for (int s = (k->smem_bytes / step + 1) * step; s <= most; s += step) {
        if ((r = ctx->drv->OccupancyMaxActiveBlocksPerMultiprocessor(&got, k->fn, k->threads,
                                                                      (size_t)s)) != CUDA_SUCCESS)
            return cuda_error(ctx, call, "cuOccupancyMaxActiveBlocksPerMultiprocessor", text, r);
        if (got <= want) {
            k->fewer_blocks_smem_bytes = got == want ? s : 0;
            return DM_OK;
        }
    }
    return DM_OK;
}

dm_status dm_kernel_get(dm_ctx *ctx, const char *call, const dm_variant *v, const dm_kernel **out,
                        dm_build_info *info)
{
    char text[DM_VARIANT_TEXT_MAX];
    dm_kernel_src src = {0};
    void *cubin = NULL;
    size_t cubin_bytes = 0;
    CUmodule module = NULL;
    dm_kernel kernel;
    dm_status st;
    CUresult r;

    if ((*out = dm_module_find(ctx, v))) {
        if (info) {
            memset(info, 0, sizeof *info);
            info->source = DM_BUILT_FROM_MEMORY;
        }
        return DM_OK;
    }
    dm_variant_format(v, text, sizeof text); /* a miss: messages name the variant */
    st = dm_build_cubin(ctx, call, v, &src, &cubin, &cubin_bytes, info);
    if (st != DM_OK)
        goto out;
    if (src.smem_bytes > ctx->smem_optin_bytes) {
        st = dm_set_error(ctx, DM_ERR_UNSUPPORTED,
                          "%s: variant '%s' needs %d bytes of shared memory; the device allows %d",
                          call, text, src.smem_bytes, ctx->smem_optin_bytes);
        goto out;
    }
    if ((r = ctx->drv->ModuleLoadData(&module, cubin)) != CUDA_SUCCESS) {
        st = cuda_error(ctx, call, "cuModuleLoadData", text, r);
        goto out;
    }
    kernel = (dm_kernel){.threads = src.threads,
                         .block_m = src.block_m,
                         .block_n = src.block_n,
                         .smem_bytes = src.smem_bytes,
                         .split_stages = src.split_stages,
                         .split_digit_stages = src.split_digit_stages,
                         .dq_atomic = src.dq_atomic,
                         .tma_maps = src.tma_maps,
                         .query_tile = src.query_tile ? src.query_tile : src.block_m,
                         .key_split = src.key_split,
                         .dq_turns = src.dq_turns,
                         .turn_order = src.turn_order};
    if ((r = ctx->drv->ModuleGetFunction(&kernel.fn, module, src.entry)) != CUDA_SUCCESS) {
        st = cuda_error(ctx, call, "cuModuleGetFunction", text, r);
        goto out;
    }
    if (src.rows_entry[0] &&
        (r = ctx->drv->ModuleGetFunction(&kernel.fn_rows, module, src.rows_entry)) !=
            CUDA_SUCCESS) {
        st = cuda_error(ctx, call, "cuModuleGetFunction", text, r);
        goto out;
    }
    if ((r = ctx->drv->FuncSetAttribute(kernel.fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                        src.smem_bytes)) != CUDA_SUCCESS) {
        st = cuda_error(ctx, call, "cuFuncSetAttribute", text, r);
        goto out;
    }
    if ((r = ctx->drv->OccupancyMaxActiveBlocksPerMultiprocessor(
             &kernel.blocks_per_sm, kernel.fn, kernel.threads, (size_t)kernel.smem_bytes)) !=
        CUDA_SUCCESS) {
        st = cuda_error(ctx, call, "cuOccupancyMaxActiveBlocksPerMultiprocessor", text, r);
        goto out;
    }
    if (v->decode && kernel.blocks_per_sm >= 3 &&
        (st = find_fewer_blocks_smem(ctx, call, text, &kernel)) != DM_OK)
        goto out;
    st = dm_module_insert(ctx, call, v, module, &kernel, out);
    if (st == DM_OK)
        module = NULL; /* the table owns it */
out:
    if (module)
        ctx->drv->ModuleUnload(module);
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

static dm_status launch_fn(dm_ctx *ctx, const char *call, const dm_variant *v, CUfunction fn,
                           unsigned threads, unsigned smem_bytes, unsigned gx, unsigned gy,
                           unsigned gz, void **kernel_args, CUstream stream)
{
    char text[DM_VARIANT_TEXT_MAX], buf[160];
    CUresult r = ctx->drv->LaunchKernel(fn, gx, gy, gz, threads, 1, 1, smem_bytes, stream,
                                        kernel_args, NULL);
    if (r == CUDA_SUCCESS)
        return DM_OK;
    dm_variant_format(v, text, sizeof text);
    return dm_set_error(ctx, DM_ERR_CUDA, "%s: variant '%s': cuLaunchKernel: %s", call, text,
                        dm_driver_error_text(ctx->drv, r, buf, sizeof buf));
}

static dm_status launch_args(dm_ctx *ctx, const char *call, const dm_variant *v,
                             const dm_kernel *k, unsigned gx, unsigned gy, unsigned gz,
                             void **kernel_args, CUstream stream)
{
    return launch_fn(ctx, call, v, k->fn, (unsigned)k->threads, (unsigned)k->smem_bytes, gx, gy,
                     gz, kernel_args, stream);
}

dm_status dm_kernel_launch(dm_ctx *ctx, const char *call, const dm_variant *v, const dm_kernel *k,
                           unsigned gx, unsigned gy, unsigned gz, void *params, CUstream stream)
{
    void *kernel_args[] = {params};
    return launch_args(ctx, call, v, k, gx, gy, gz, kernel_args, stream);
}

dm_status dm_kernel_launch2(dm_ctx *ctx, const char *call, const dm_variant *v,
                            const dm_kernel *k, unsigned gx, unsigned gy, unsigned gz,
                            void *params, void *extra, CUstream stream)
{
    void *kernel_args[] = {params, extra};
    return launch_args(ctx, call, v, k, gx, gy, gz, kernel_args, stream);
}

dm_status dm_kernel_launch_rows(dm_ctx *ctx, const char *call, const dm_variant *v,
                                const dm_kernel *k, unsigned gx, unsigned gy, unsigned gz,
                                void *params, CUstream stream)
{
    void *kernel_args[] = {params};
    return launch_fn(ctx, call, v, k->fn_rows, (unsigned)k->threads, 0, gx, gy, gz, kernel_args,
                     stream);
}
