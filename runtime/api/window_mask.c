/* window_mask.c: dm_window_mask, the top-k window-mask helper (SPEC §4): validate, pick the variant,
 * get its kernel through kernels.c (the same module table, cache and NVRTC path as dm_fwd),
 * launch one block per output row, or, for few long rows, several blocks per row in stages
 * with stream-ordered scratch. Nothing is read or written before validation passes, and
 * nothing at all when the window does not apply. */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "kernel_params.h"
#include "scratch.h"
#include "wmask_plan.h"

/* dm_wmask_params, the kernel's parameters passed by value: defined with its field list in
 * gen/kernel_params.h, from which the template declares struct WmaskParams and checks each field. */

#define VEC_KEYS 8 /* the kernel's vector step: 8 keys per load and per store */
#define PICK_THREADS 256 /* a pick pass sums n_slices words per bin: short, one block per row */
#define SPLIT_ROWS "the split rows' scratch" /* for messages */
_Static_assert(DM_WMASK_SLICE_ALIGN % VEC_KEYS == 0, "slices start on a vector step");

bool dm_wmask_rows_aligned(uint64_t data, const int64_t strides[3], int64_t elem_bytes,
                           int align)
{
    if (data % (uint64_t)align)
        return false;
    for (int i = 0; i < 3; i++)
        if (strides[i] * elem_bytes % align)
            return false;
    return true;
}

/* Threads per block: a power of two from 128 up to the template's most (kernel->threads), about
 * 32 keys a thread. Measured on the H100 (bench/NOTES.md, issue 5): per-query rows of 4096 keys
 * ran 1.65 ms at 128 threads against 1.79 at 256 and 2.70 at 512; key-side rows of 16384 keys
 * 0.018 ms at 512 against 0.023 at 256 and 0.036 at 128. */
unsigned dm_wmask_block_threads(const dm_kernel *k, int64_t Lk)
{
    unsigned t = 128;
    while ((int64_t)t * 32 < Lk && (int)t * 2 <= k->threads)
        t *= 2;
    return t;
}

static void fill_params(const dm_window_mask_args *a, const dm_wmask_plan *p, int resident,
                        dm_wmask_params *k)
{
    int64_t elem = dm_wmask_bias_bytes(p);
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
    k->vec = dm_wmask_rows_aligned(k->bias, p->bias_stride, elem, 16) &&
             dm_wmask_rows_aligned(k->out, p->out_stride, 1, VEC_KEYS);
    if (k->mask)
        k->vec = k->vec && dm_wmask_rows_aligned(k->mask, p->mask_stride, 1, VEC_KEYS) &&
                 p->mask_pad % VEC_KEYS == 0;
}

dm_wmask_split dm_wmask_plan_split(const dm_wmask_plan *plan, int64_t resident_keys, int n_sms,
                                   int forced_slices)
{
    dm_wmask_split none = {.slices = 1, .slice_keys = 0}, s;
    int64_t want, rows = dm_wmask_plan_rows(plan);
    if (!plan->applied || plan->relu || rows < 1)
        return none;
    if (forced_slices > 0) {
        want = forced_slices;
    } else {
        /* A resident row is read once by one block; rows that fill the GPU by themselves gain
         * nothing from being split but the extra passes. */
        if (plan->Lk <= resident_keys || n_sms <= 0)
            return none;
        want = (int64_t)n_sms * DM_WMASK_SPLIT_BLOCKS_PER_SM / rows;
        if (want > plan->Lk / DM_WMASK_MIN_SLICE_KEYS)
            want = plan->Lk / DM_WMASK_MIN_SLICE_KEYS;
    }
    if (want < 2)
        return none;
    int64_t keys = (plan->Lk + want - 1) / want;
    keys = (keys + DM_WMASK_SLICE_ALIGN - 1) / DM_WMASK_SLICE_ALIGN * DM_WMASK_SLICE_ALIGN;
    int64_t slices = (plan->Lk + keys - 1) / keys; /* every slice holds at least one key */
    if (slices < 2 || rows * slices > INT32_MAX)     /* grid.x */
        return none;
    s.slices = (int)slices;
    s.slice_keys = (int)keys;
    return s;
}

size_t dm_wmask_split_scratch_bytes(int64_t rows, int slices, int hist_bins)
{
    return ((size_t)rows * (size_t)slices * (size_t)hist_bins + 4 * (size_t)rows) *
           sizeof(uint32_t);
}

dm_status dm_wmask_launch_grid(dm_ctx *ctx, const char *call, const dm_variant *v,
                               const dm_kernel *k, int64_t grid, unsigned threads, int64_t smem,
                               dm_wmask_params *params, CUstream stream)
{
    char text[DM_VARIANT_TEXT_MAX], buf[160];
    void *kernel_args[] = {params}; /* copied at launch: params may change for the next one */
    CUresult r = ctx->drv->LaunchKernel(k->fn, (unsigned)grid, 1, 1, threads, 1, 1,
                                        (unsigned)smem, stream, kernel_args, NULL);
    if (r == CUDA_SUCCESS)
        return DM_OK;
    dm_variant_format(v, text, sizeof text);
    if (params->phase > 0)
        return dm_set_error(ctx, DM_ERR_CUDA,
                            "%s: variant '%s': cuLaunchKernel (split stage %d, %d blocks per "
                            "row): %s",
                            call, text, params->phase, params->n_slices,
                            dm_driver_error_text(ctx->drv, r, buf, sizeof buf));
    return dm_set_error(ctx, DM_ERR_CUDA, "%s: variant '%s': cuLaunchKernel: %s", call, text,
                        dm_driver_error_text(ctx->drv, r, buf, sizeof buf));
}

/* Split rows: scratch, then the kernel's k->split_stages stages in order, as window_mask.lua
 * lists them: per digit (the first k->split_digit_stages) a count pass (rows x slices blocks,
 * each storing its slice's histogram) and a pick pass (one block per row), then the write pass
 * over every slice and (smooth) the smoothing pass; the scratch is freed in stream order
 * behind them. */
static dm_status launch_split(dm_ctx *ctx, const char *call, const dm_variant *v,
                              const dm_kernel *k, const dm_wmask_plan *plan,
                              const dm_wmask_split *split, int64_t hist_bytes,
                              dm_wmask_params *params, CUstream stream)
{
    CUdeviceptr scratch = 0;
    int64_t rows = dm_wmask_plan_rows(plan);
    int hist_bins = (int)(hist_bytes / 4);
    size_t bytes = dm_wmask_split_scratch_bytes(rows, split->slices, hist_bins);
    unsigned slice_threads = dm_wmask_block_threads(k, split->slice_keys);
    unsigned pick_threads = k->threads < PICK_THREADS ? (unsigned)k->threads : PICK_THREADS;
    dm_status st = dm_scratch_alloc(ctx, call, SPLIT_ROWS, bytes, stream, &scratch);
    if (st != DM_OK)
        return st;
    params->scratch = scratch;
    params->n_slices = split->slices;
    params->slice_keys = split->slice_keys;
    params->split_rows = (int32_t)rows;
    for (int phase = 1; phase <= k->split_stages && st == DM_OK; phase++) {
        params->phase = phase;
        if (phase <= k->split_digit_stages && phase % 2 == 0) /* pick */
            st = dm_wmask_launch_grid(ctx, call, v, k, rows, pick_threads, hist_bytes, params,
                                      stream);
        else if (phase <= k->split_digit_stages) /* count */
            st = dm_wmask_launch_grid(ctx, call, v, k, rows * split->slices, slice_threads,
                                      hist_bytes, params, stream);
        else /* write, smooth: no dynamic shared memory */
            st = dm_wmask_launch_grid(ctx, call, v, k, rows * split->slices, slice_threads, 0,
                                      params, stream);
    }
    /* Freed in stream order: the passes queued above run before the memory is reused. */
    return dm_scratch_free(ctx, st, call, SPLIT_ROWS, scratch, bytes, stream);
}

/* DMATTN_WMASK_SLICES=n: n blocks per top-k row whatever the shape (1: never split), for the
 * GPU tests and for sweeps; unset or not a positive number: the plan's own choice. */
static int forced_slices(void)
{
    const char *e = getenv("DMATTN_WMASK_SLICES");
    char *end;
    if (!e || !*e)
        return 0;
    long n = strtol(e, &end, 10);
    return *end == '\0' && n > 0 && n <= INT32_MAX ? (int)n : 0;
}

dm_status dm_wmask_launch(dm_ctx *ctx, const char *call, const dm_window_mask_args *args,
                          const dm_wmask_plan *plan, CUstream stream)
{
    const dm_kernel *kernel;
    dm_variant v;
    dm_wmask_params params;

    dm_wmask_plan_variant(plan, ctx->arch, &v);
    dm_status st = dm_kernel_get(ctx, call, &v, &kernel, NULL);
    if (st != DM_OK)
        return st;
    /* The template reports its resident capacity in block_n and sizes smem_bytes for it: a
     * shorter row asks for only the keys it has, so more blocks fit on an SM. What is left is the
     * histogram. */
    int64_t key_bytes = dm_wmask_bias_bytes(plan);
    int resident = kernel->block_n > 0 && plan->Lk <= kernel->block_n;
    int64_t smem = kernel->smem_bytes;
    if (kernel->block_n > 0) {
        smem -= (int64_t)kernel->block_n * key_bytes;
        int64_t hist_bytes = smem;
        dm_wmask_split split = {.slices = 1};
        if (kernel->split_stages > 0) { /* the kernel has split stages to launch */
            int n_sms = 0;
            if (ctx->drv->DeviceGetAttribute(&n_sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                                             ctx->cu_device) != CUDA_SUCCESS)
                n_sms = 0; /* unknown: one block per row, always correct */
            split = dm_wmask_plan_split(plan, kernel->block_n, n_sms, forced_slices());
        }
        if (split.slices > 1) {
            fill_params(args, plan, 0, &params);
            return launch_split(ctx, call, &v, kernel, plan, &split, hist_bytes, &params, stream);
        }
        if (resident)
            smem += (plan->Lk * key_bytes + 15) / 16 * 16;
    }
    fill_params(args, plan, resident, &params);
    return dm_wmask_launch_grid(ctx, call, &v, kernel, dm_wmask_plan_rows(plan),
                                dm_wmask_block_threads(kernel, plan->Lk), smem, &params, stream);
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
