/* fwd_launch.c: the launch of a checked dense forward plan (dm_fwd_launch): pick the variant, get
 * its kernel, fill its parameters, cuLaunchKernel. Shared by dm_fwd and its window path, so
 * neither entry calls the other. */
#include <string.h>

#include "kernels.h"
#include "fwd_decode.h"
#include "fwd_plan.h"
#include "kernel_params.h"
#include "fwd_launch.h"

/* dm_fwd_params, the kernel's parameters passed by value: defined with its field list in
 * gen/kernel_params.h, from which the template declares struct FwdParams and checks each field. */

int dm_rows_aligned(const void *data, const int64_t *strides, int64_t elem_bytes, int align)
{
    if ((uintptr_t)data % align)
        return 0;
    for (int i = 0; i < 3; i++)
        if (strides[i] * elem_bytes % align)
            return 0;
    return 1;
}

void dm_fwd_params_scalars(dm_fwd_params *k, float scale, float softcap)
{
    k->scale_log2 = scale * 1.4426950408889634f;
    k->softcap = softcap;
    k->scale = scale;
    k->softcap_k = softcap > 0 ? 2.f * 1.4426950408889634f / softcap : 0.f;
}

static void fill_params(const dm_fwd_args *a, const dm_fwd_plan *p, dm_fwd_params *k)
{
    memset(k, 0, sizeof *k);
    k->q = (uintptr_t)a->q.data;
    k->k = (uintptr_t)a->k.data;
    k->v = (uintptr_t)a->v.data;
    k->o = (uintptr_t)a->o.data;
    k->mask = p->mask_layout != DM_LAYOUT_NONE ? (uintptr_t)a->mask.data : 0;
    k->bias = p->bias_layout != DM_LAYOUT_NONE ? (uintptr_t)a->bias.data : 0;
    k->lse = p->has_lse ? (uintptr_t)a->lse.data : 0;
    memcpy(k->q_stride, p->q_stride, sizeof k->q_stride);
    memcpy(k->k_stride, p->k_stride, sizeof k->k_stride);
    memcpy(k->v_stride, p->v_stride, sizeof k->v_stride);
    memcpy(k->o_stride, p->o_stride, sizeof k->o_stride);
    memcpy(k->mask_stride, p->mask_stride, sizeof k->mask_stride);
    memcpy(k->bias_stride, p->bias_stride, sizeof k->bias_stride);
    memcpy(k->lse_stride, p->lse_stride, sizeof k->lse_stride);
    k->mask_head_div = p->mask_head_div ? p->mask_head_div : 1;
    k->bias_head_div = p->bias_head_div ? p->bias_head_div : 1;
    k->B = (int32_t)p->B;
    k->H = (int32_t)p->H;
    k->Hkv = (int32_t)p->Hkv;
    k->Lq = (int32_t)p->Lq;
    k->Lk = (int32_t)p->Lk;
    k->group = (int32_t)(p->H / p->Hkv);
    dm_fwd_params_scalars(k, p->scale, p->softcap);
    k->mask_key_stride = 1;
    k->bias_key_stride = 1;
    k->bias_f32 = p->bias_dtype == DM_F32;
    /* A key layout's one row is staged from the aligned address at or before its first key
     * (templates: stage_key_row), wherever the row starts: only the base must be aligned, so
     * that no copy starts before the tensor. */
    if (p->bias_layout == DM_LAYOUT_K)
        k->bias_vec16 = (uintptr_t)a->bias.data % 16 == 0;
    else if (p->bias_layout != DM_LAYOUT_NONE)
        k->bias_vec16 = dm_rows_aligned(a->bias.data, p->bias_stride, k->bias_f32 ? 4 : 2, 16);
    if (p->mask_layout != DM_LAYOUT_NONE) {
        k->mask_pairs = dm_rows_aligned(a->mask.data, p->mask_stride, 1, 2);
        k->mask_vec16 = p->mask_layout == DM_LAYOUT_K
                            ? (uintptr_t)a->mask.data % 16 == 0
                            : dm_rows_aligned(a->mask.data, p->mask_stride, 1, 16);
    }
}

/* The decode path for a dense call: sequence b is batch entry b, its Lq queries packed. */
static dm_status launch_decode(dm_ctx *ctx, const dm_fwd_args *args, const dm_fwd_plan *plan,
                               CUstream stream)
{
    dm_decode_job job = {.call = "dm_fwd", .B = plan->B, .Hkv = plan->Hkv,
                         .rows = plan->B * plan->Lq, .max_k = plan->Lk,
                         .total_k = plan->B * plan->Lk,
                         .num_splits = args->num_splits, .combine_Lq = plan->Lq};
    dm_fwd_plan_variant(plan, ctx->arch, &job.variant);
    job.variant.decode = true;
    fill_params(args, plan, &job.params);
    memcpy(job.o_stride, plan->o_stride, sizeof job.o_stride);
    memcpy(job.lse_stride, plan->lse_stride, sizeof job.lse_stride);
    return dm_fwd_decode_run(ctx, &job, stream);
}

static dm_status launch_tiled(dm_ctx *ctx, const dm_fwd_args *args, const dm_fwd_plan *plan,
                              CUstream stream)
{
    dm_variant v;
    dm_fwd_params params;
    const dm_kernel *kernel;
    dm_status st;

    if ((st = dm_ctx_enter(ctx, "dm_fwd")) != DM_OK)
        return st;
    dm_fwd_plan_variant(plan, ctx->arch, &v);
    st = dm_kernel_get(ctx, "dm_fwd", &v, &kernel, NULL);
    if (st != DM_OK)
        goto out;

    fill_params(args, plan, &params);
    unsigned grid_x = (unsigned)((plan->Lq + kernel->block_m - 1) / kernel->block_m);
    st = dm_kernel_launch(ctx, "dm_fwd", &v, kernel, grid_x, (unsigned)plan->H,
                          (unsigned)plan->B, &params, stream);
out:
    dm_ctx_leave(ctx);
    return st;
}

dm_status dm_fwd_launch(dm_ctx *ctx, const dm_fwd_args *args, const dm_fwd_plan *plan,
                        CUstream stream)
{
    const char *why;
    bool fits = dm_fwd_decode_fits(plan->mask_layout, plan->mask_head_div, plan->bias_layout,
                                   plan->bias_head_div, plan->H / plan->Hkv, plan->Lq, &why);
    if (args->path == DM_PATH_DECODE && !fits)
        return dm_set_error(ctx, DM_ERR_UNSUPPORTED, "dm_fwd: path = DM_PATH_DECODE: %s", why);
    if (args->path == DM_PATH_DECODE ||
        (args->path == DM_PATH_AUTO && fits && plan->Lq <= DM_DECODE_AUTO_MAX_Q))
        return launch_decode(ctx, args, plan, stream);
    return launch_tiled(ctx, args, plan, stream);
}
