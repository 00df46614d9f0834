/* window_mask_varlen.c: dm_window_mask_varlen, the top-k window mask of a varlen batch (dmattn.h):
 * validate, pick the wmask...varlen variant, launch one block per out row through the window-mask
 * family's launch pieces (window_mask.c). Nothing is read or written before validation passes,
 * and nothing at all when the window does not apply. Varlen rows are never split over blocks
 * (a long decode row is one block re-reading its keys per digit: correct, not yet fast). */
#include <string.h>

#include "device_check.h"
#include "kernel_params.h"
#include "kernels.h"
#include "wmask_plan.h"
#include "wmask_varlen_plan.h"

#define CALL "dm_window_mask_varlen"
#define VEC_KEYS 8 /* the kernel's vector step: 8 keys per load and per store */

/* A tensor's plan strides {token, head, key} as the kernel's {query token, head, first key of
 * the sequence} and key stride: a query-based tensor steps by query token, a key-based one by
 * the sequence's first key (window_mask.lua, varlen rows). */
static void kernel_strides(dm_layout l, const int64_t plan[3], int64_t out[3], int64_t *key)
{
    out[0] = l == DM_LAYOUT_Q ? plan[0] : 0;
    out[1] = plan[1];
    out[2] = l == DM_LAYOUT_K ? plan[0] : 0;
    *key = plan[2];
}

static void fill_params(const dm_window_mask_varlen_args *a, const dm_wmask_varlen_plan *p,
                        int resident, dm_wmask_params *k)
{
    memset(k, 0, sizeof *k);
    k->bias = (uintptr_t)a->bias.data;
    k->out = (uintptr_t)a->out.data;
    kernel_strides(p->bias_layout, p->bias_stride, k->bias_stride, &k->bias_key_stride);
    kernel_strides(p->out_layout, p->out_stride, k->out_stride, &k->out_key_stride);
    if (p->mask_layout != DM_LAYOUT_NONE) {
        k->mask = (uintptr_t)a->mask.data;
        kernel_strides(p->mask_layout, p->mask_stride, k->mask_stride, &k->mask_key_stride);
    }
    k->n_heads = (int32_t)p->heads;
    k->n_rows = 1;
    k->Lk = (int32_t)p->max_seqlen_k;
    k->block_size = p->block_size;
    k->min_key = p->min_key;
    k->resident = resident;
    k->cu_seqlens_q = (uintptr_t)a->cu_seqlens_q.data;
    k->cu_seqlens_k = (uintptr_t)a->cu_seqlens_k.data;
    k->n_seqs = (int32_t)p->B;
    k->total_q = (int32_t)p->total_q;
    k->total_k = (int32_t)p->total_k;
    k->max_seqlen_k = (int32_t)p->max_seqlen_k;
    k->window = p->window;
    k->out_by_key = p->out_layout == DM_LAYOUT_K;
    /* 8-key steps need every row aligned: a query-based row starts at a query token, whose
     * offset the host knows; a key-based one at a sequence's first key, which only the device
     * knows (cu_seqlens), so any key-based tensor keeps the scalar path. */
    bool all_q = p->bias_layout == DM_LAYOUT_Q && p->out_layout == DM_LAYOUT_Q &&
                 p->mask_layout != DM_LAYOUT_K;
    int64_t elem = p->bias_dtype == DM_F32 ? 4 : 2;
    k->vec = all_q && dm_wmask_rows_aligned(k->bias, k->bias_stride, elem, 16) &&
             dm_wmask_rows_aligned(k->out, k->out_stride, 1, VEC_KEYS);
    if (k->mask)
        k->vec = k->vec && dm_wmask_rows_aligned(k->mask, k->mask_stride, 1, VEC_KEYS);
}

dm_status dm_wmask_varlen_launch(dm_ctx *ctx, const char *call,
                                 const dm_window_mask_varlen_args *args,
                                 const dm_wmask_varlen_plan *plan, CUstream stream)
{
    const dm_kernel *kernel;
    dm_variant v;
    dm_wmask_params params;
    int64_t rows = dm_wmask_varlen_rows(plan);

    if (rows == 0) /* total_q = 0: out has no rows (a grid of 0 blocks is a launch error) */
        return DM_OK;
    dm_wmask_varlen_plan_variant(plan, ctx->arch, &v);
    dm_status st = dm_kernel_get(ctx, call, &v, &kernel, NULL);
    if (st != DM_OK)
        return st;
    /* As dm_wmask_launch: the template reports its resident capacity in block_n and sizes
     * smem_bytes for it; rows of at most max_seqlen_k keys ask for only that many. */
    int64_t key_bytes = plan->bias_dtype == DM_F32 ? 4 : 2;
    int resident = kernel->block_n > 0 && plan->max_seqlen_k <= kernel->block_n;
    int64_t smem = kernel->smem_bytes;
    if (kernel->block_n > 0) {
        smem -= (int64_t)kernel->block_n * key_bytes;
        if (resident)
            smem += (plan->max_seqlen_k * key_bytes + 15) / 16 * 16;
    }
    fill_params(args, plan, resident, &params);
    return dm_wmask_launch_grid(ctx, call, &v, kernel, rows,
                                dm_wmask_block_threads(kernel, plan->max_seqlen_k), smem, &params,
                                stream);
}

dm_status dm_window_mask_varlen(dm_ctx *ctx, const dm_window_mask_varlen_args *args,
                                int *applied, CUstream stream)
{
    dm_wmask_varlen_plan plan;
    if (!ctx)
        return DM_ERR_INVALID_ARG;
    dm_clear_error(ctx);
    if (!applied)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            CALL ": applied is NULL: expected an int to receive whether out was "
                                 "written");
    *applied = 0;
    dm_status st = dm_wmask_varlen_check(ctx, CALL, args, true, &plan);
    if (st != DM_OK || !plan.applied)
        return st;
    /* the kernel reads cu_seqlens: memory the device cannot address would fault there */
    if ((st = dm_check_device_readable(ctx, CALL, "cu_seqlens_q", &args->cu_seqlens_q)) != DM_OK ||
        (st = dm_check_device_readable(ctx, CALL, "cu_seqlens_k", &args->cu_seqlens_k)) != DM_OK)
        return st;
    if ((st = dm_ctx_enter(ctx, CALL)) != DM_OK)
        return st;
    st = dm_wmask_varlen_launch(ctx, CALL, args, &plan, stream);
    dm_ctx_leave(ctx);
    if (st == DM_OK)
        *applied = 1;
    return st;
}
