/* wmask.c: dm_window_mask, the top-k window-mask helper (SPEC §4): validate, pick the variant,
 * get its kernel through build.c (the same module table, cache and NVRTC path as dm_fwd),
 * launch one block per output row. Nothing is read or written before validation passes, and
 * nothing at all when the window does not apply. */
#include <string.h>

#include "build.h"
#include "wmask_plan.h"

/* Kernel parameters, passed by value. Must match `struct WmaskParams` in
 * templates/window_mask.lua field for field (8-byte fields first). */
typedef struct dm_wmask_params {
    uint64_t bias, mask, out;
    int64_t bias_stride[3], mask_stride[3], out_stride[3];
    int32_t n_heads, n_rows, Lk, mask_pad, block_size;
    uint32_t min_key;
    int32_t resident, vec;
} dm_wmask_params;
_Static_assert(sizeof(dm_wmask_params) == 128,
               "dm_wmask_params layout changed: update window_mask.lua");

#define VEC_KEYS 8 /* the kernel's vector step: 8 keys per load and per store */

/* Every row of a tensor starts `align`-byte aligned: the pointer and each stride (bytes). */
static int rows_aligned(uint64_t data, const int64_t strides[3], int64_t elem_bytes, int align)
{
    if (data % (uint64_t)align)
        return 0;
    for (int i = 0; i < 3; i++)
        if (strides[i] * elem_bytes % align)
            return 0;
    return 1;
}

/* Threads per block: a power of two from 128 up to the template's most (kernel->threads), about
 * 32 keys a thread. Measured on the H100 (bench/NOTES.md, issue 5): per-query rows of 4096 keys
 * ran 1.65 ms at 128 threads against 1.79 at 256 and 2.70 at 512; key-side rows of 16384 keys
 * 0.018 ms at 512 against 0.023 at 256 and 0.036 at 128. */
static unsigned block_threads(const dm_kernel *k, int64_t Lk)
{
    unsigned t = 128;
    while ((int64_t)t * 32 < Lk && (int)t * 2 <= k->threads)
        t *= 2;
    return t;
}

static void fill_params(const dm_window_mask_args *a, const dm_wmask_plan *p, int resident,
                        dm_wmask_params *k)
{
    int64_t elem = p->bias_dtype == DM_F32 ? 4 : 2;
    memset(k, 0, sizeof *k);
    k->bias = (uintptr_t)a->bias.data;
    k->mask = p->mask_layout != DM_LAYOUT_NONE ? (uintptr_t)a->mask.data : 0;
    k->out = (uintptr_t)a->out.data;
    memcpy(k->bias_stride, p->bias_stride, sizeof k->bias_stride);
    memcpy(k->mask_stride, p->mask_stride, sizeof k->mask_stride);
    memcpy(k->out_stride, p->out_stride, sizeof k->out_stride);
    k->n_heads = (int32_t)p->out_shape[1];
    k->n_rows = (int32_t)p->out_shape[2];
    k->Lk = (int32_t)p->Lk;
    k->mask_pad = (int32_t)p->mask_pad;
    k->block_size = p->block_size;
    k->min_key = p->min_key;
    k->resident = resident;
    /* 16-byte bias loads (two for f32), 8-byte mask loads and out stores, each 8 keys apart. */
    k->vec = rows_aligned(k->bias, p->bias_stride, elem, 16) &&
             rows_aligned(k->out, p->out_stride, 1, VEC_KEYS);
    if (k->mask)
        k->vec = k->vec && rows_aligned(k->mask, p->mask_stride, 1, VEC_KEYS) &&
                 p->mask_pad % VEC_KEYS == 0;
}

dm_status dm_wmask_launch(dm_ctx *ctx, const char *call, const dm_window_mask_args *args,
                          const dm_wmask_plan *plan, CUstream stream)
{
    const dm_kernel *kernel;
    dm_variant v;
    dm_wmask_params params;
    char text[DM_VARIANT_TEXT_MAX], buf[160];

    dm_wmask_plan_variant(plan, ctx->arch, &v);
    dm_status st = dm_kernel_get(ctx, call, &v, &kernel, NULL);
    if (st != DM_OK)
        return st;
    /* The template reports its resident capacity in block_n and sizes smem_bytes for it: a
     * shorter row asks for only the keys it has, so more blocks fit on an SM. */
    int64_t key_bytes = plan->bias_dtype == DM_F32 ? 4 : 2;
    int resident = kernel->block_n > 0 && plan->Lk <= kernel->block_n;
    int64_t smem = kernel->smem_bytes;
    if (kernel->block_n > 0) {
        smem -= (int64_t)kernel->block_n * key_bytes;
        if (resident)
            smem += (plan->Lk * key_bytes + 15) / 16 * 16;
    }
    fill_params(args, plan, resident, &params);
    void *kernel_args[] = {&params};
    unsigned rows = (unsigned)(plan->out_shape[0] * plan->out_shape[1] * plan->out_shape[2]);
    CUresult r = ctx->drv->LaunchKernel(kernel->fn, rows, 1, 1, block_threads(kernel, plan->Lk),
                                        1, 1, (unsigned)smem, stream, kernel_args, NULL);
    if (r != CUDA_SUCCESS) {
        dm_variant_format(&v, text, sizeof text);
        return dm_set_error(ctx, DM_ERR_CUDA, "%s: variant '%s': cuLaunchKernel: %s", call, text,
                            dm_driver_error_text(ctx->drv, r, buf, sizeof buf));
    }
    return DM_OK;
}

dm_status dm_window_mask(dm_ctx *ctx, const dm_window_mask_args *args, int *applied,
                         CUstream stream)
{
    dm_wmask_plan plan;
    if (!ctx)
        return DM_ERR_INVALID_ARG;
    dm_clear_error(ctx);
    if (!applied)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "dm_window_mask: applied is NULL: expected an int to receive whether "
                            "out was written");
    *applied = 0;
    dm_status st = dm_wmask_check(ctx, "dm_window_mask", args, true, &plan);
    if (st != DM_OK || !plan.applied)
        return st;
    if ((st = dm_ctx_enter(ctx, "dm_window_mask")) != DM_OK)
        return st;
    st = dm_wmask_launch(ctx, "dm_window_mask", args, &plan, stream);
    dm_ctx_leave(ctx);
    if (st == DM_OK)
        *applied = 1;
    return st;
}
