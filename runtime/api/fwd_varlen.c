/* fwd_varlen.c: dm_fwd_varlen, the varlen forward entry point (SPEC §5): check the arguments,
 * pick the path, fill FwdParams from the plan and launch: the tiled kernel over (query tile,
 * head, sequence) or the decode path (fwd_decode.c). The kernels read each sequence's extent
 * from cu_seqlens on the device. */
#include <string.h>

#include "device_check.h"
#include "fwd_decode.h"
#include "fwd_launch.h"
#include "fwd_varlen_plan.h"
#include "fwd_varlen_window.h"
#include "kernels.h"

#define CALL "dm_fwd_varlen"

void dm_varlen_layout_strides(dm_layout l, const int64_t plan_stride[3], int64_t out[3],
                              int64_t *key_stride)
{
    out[0] = plan_stride[0];
    out[1] = plan_stride[1];
    out[2] = l == DM_LAYOUT_Q ? plan_stride[0] : 0;
    *key_stride = l == DM_LAYOUT_K ? plan_stride[2] : 1;
}

void dm_varlen_token_strides(const int64_t plan_stride[2], int64_t out[3])
{
    out[0] = plan_stride[0];
    out[1] = plan_stride[0];
    out[2] = plan_stride[1];
}

void dm_varlen_lse_strides(const int64_t plan_stride[2], int64_t out[3])
{
    out[0] = plan_stride[1];
    out[1] = plan_stride[0];
    out[2] = plan_stride[1];
}

/* Whether rows can be read 16 (or 2) bytes at a time: keys contiguous and rows aligned. A K
 * layout's row is a sequence's keys, starting at any key: the kernel checks that start per
 * block, so here only the base and the head step count (its token "stride" is the key step). */
static int wide_rows(dm_layout l, const void *data, const int64_t strides[3], int64_t key_stride,
                     int64_t elem_bytes, int align)
{
    const int64_t head_only[3] = {0, strides[1], 0};
    return key_stride == 1 &&
           dm_rows_aligned(data, l == DM_LAYOUT_K ? head_only : strides, elem_bytes, align);
}

/* Whether a K layout's strided keys can be staged a 4-byte word per key (FwdParams.mask_words,
 * bias_words): keys not contiguous (those go 16 bytes at a time), and the base and the steps
 * between tokens and keys multiples of 4 bytes, so each key's value sits at the same byte of its
 * word and the word lies inside that key's stride span. Else the kernels read key by key. */
static int word_keys(const void *data, const int64_t strides[3], int64_t key_stride,
                     int64_t elem_bytes)
{
    return key_stride != 1 && (uintptr_t)data % 4 == 0 && strides[0] * elem_bytes % 4 == 0 &&
           key_stride * elem_bytes % 4 == 0;
}

static void fill_params(const dm_fwd_varlen_args *a, const dm_fwd_varlen_plan *p, dm_fwd_params *k)
{
    memset(k, 0, sizeof *k);
    k->q = (uintptr_t)a->q.data;
    k->k = (uintptr_t)a->k.data;
    k->v = (uintptr_t)a->v.data;
    k->o = (uintptr_t)a->o.data;
    k->lse = p->has_lse ? (uintptr_t)a->lse.data : 0;
    k->cu_seqlens_q = (uintptr_t)a->cu_seqlens_q.data;
    k->cu_seqlens_k = (uintptr_t)a->cu_seqlens_k.data;
    dm_varlen_token_strides(p->q_stride, k->q_stride);
    dm_varlen_token_strides(p->k_stride, k->k_stride);
    dm_varlen_token_strides(p->v_stride, k->v_stride);
    dm_varlen_token_strides(p->o_stride, k->o_stride);
    dm_varlen_lse_strides(p->lse_stride, k->lse_stride);
    k->mask_key_stride = k->bias_key_stride = 1;
    k->mask_head_div = k->bias_head_div = 1;
    if (p->mask_layout != DM_LAYOUT_NONE) {
        k->mask = (uintptr_t)a->mask.data;
        dm_varlen_layout_strides(p->mask_layout, p->mask_stride, k->mask_stride,
                                 &k->mask_key_stride);
        k->mask_head_div = p->mask_head_div;
        k->mask_pairs =
            wide_rows(p->mask_layout, a->mask.data, k->mask_stride, k->mask_key_stride, 1, 2);
        k->mask_vec16 =
            wide_rows(p->mask_layout, a->mask.data, k->mask_stride, k->mask_key_stride, 1, 16);
        k->mask_words = word_keys(a->mask.data, k->mask_stride, k->mask_key_stride, 1);
    }
    if (p->bias_layout != DM_LAYOUT_NONE) {
        k->bias = (uintptr_t)a->bias.data;
        k->bias_f32 = p->bias_dtype == DM_F32;
        dm_varlen_layout_strides(p->bias_layout, p->bias_stride, k->bias_stride,
                                 &k->bias_key_stride);
        k->bias_head_div = p->bias_head_div;
        k->bias_vec16 = wide_rows(p->bias_layout, a->bias.data, k->bias_stride, k->bias_key_stride,
                                  k->bias_f32 ? 4 : 2, 16);
        k->bias_words =
            word_keys(a->bias.data, k->bias_stride, k->bias_key_stride, k->bias_f32 ? 4 : 2);
    }
    k->B = (int32_t)p->B;
    k->H = (int32_t)p->H;
    k->Hkv = (int32_t)p->Hkv;
    k->Lq = (int32_t)p->max_seqlen_q; /* the kernels take each sequence's own counts */
    k->Lk = (int32_t)p->max_seqlen_k;
    k->group = (int32_t)(p->H / p->Hkv);
    dm_fwd_params_scalars(k, p->scale, p->softcap);
    k->total_q = (int32_t)p->total_q;
    k->total_k = (int32_t)p->total_k;
    k->max_seqlen_q = (int32_t)p->max_seqlen_q;
    k->max_seqlen_k = (int32_t)p->max_seqlen_k;
}

void dm_fwd_varlen_plan_variant(const dm_fwd_varlen_plan *p, dm_arch arch, bool decode,
                                dm_variant *v)
{
    memset(v, 0, sizeof *v);
    v->family = DM_FAMILY_ATTN;
    v->dir = DM_DIR_FWD;
    v->head_dim = (int)p->D;
    v->dtype = p->dtype;
    v->mask = p->mask_layout;
    v->bias = p->bias_layout;
    v->varlen = true;
    v->causal = p->causal;
    v->softcap = p->softcap > 0;
    v->decode = decode;
    v->arch = arch;
}

static dm_status launch_tiled(dm_ctx *ctx, const dm_fwd_varlen_args *args,
                              const dm_fwd_varlen_plan *plan, CUstream stream)
{
    dm_variant v;
    dm_fwd_params params;
    const dm_kernel *kernel;
    dm_status st;

    if ((st = dm_ctx_enter(ctx, CALL)) != DM_OK)
        return st;
    dm_fwd_varlen_plan_variant(plan, ctx->arch, false, &v);
    if ((st = dm_kernel_get(ctx, CALL, &v, &kernel, NULL)) != DM_OK)
        goto out;
    fill_params(args, plan, &params);
    unsigned grid_x = (unsigned)((plan->max_seqlen_q + kernel->block_m - 1) / kernel->block_m);
    st = dm_kernel_launch(ctx, CALL, &v, kernel, grid_x, (unsigned)plan->H, (unsigned)plan->B,
                          &params, stream);
out:
    dm_ctx_leave(ctx);
    return st;
}

static dm_status launch_decode(dm_ctx *ctx, const dm_fwd_varlen_args *args,
                               const dm_fwd_varlen_plan *plan, CUstream stream)
{
    dm_decode_job job = {.call = CALL,
                         .B = plan->B,
                         .Hkv = plan->Hkv,
                         .rows = plan->total_q,
                         .max_k = plan->max_seqlen_k,
                         .total_k = plan->total_k,
                         .num_splits = args->num_splits,
                         .combine_Lq = plan->total_q};
    dm_fwd_varlen_plan_variant(plan, ctx->arch, true, &job.variant);
    fill_params(args, plan, &job.params);
    /* the combine's token t is (0, t): o rows and lse columns are tokens */
    job.o_stride[0] = 0;
    job.o_stride[1] = plan->o_stride[0];
    job.o_stride[2] = plan->o_stride[1];
    job.lse_stride[0] = 0;
    job.lse_stride[1] = plan->lse_stride[0];
    job.lse_stride[2] = plan->lse_stride[1];
    return dm_fwd_decode_run(ctx, &job, stream);
}

/* window > 0: mask' = dm_window_mask_varlen(...) into scratch (fwd_varlen_window.c), then this
 * call without a window on it (checked again: mask' replaces the mask argument). */
static dm_status window_forward(dm_ctx *ctx, const dm_fwd_varlen_args *args, CUstream stream)
{
    dm_fwd_varlen_args plain;
    dm_varlen_window win;
    dm_status st = dm_fwd_varlen_window_begin(ctx, args, &plain, &win, stream);
    if (st != DM_OK)
        return st;
    return dm_fwd_varlen_window_end(ctx, &win, dm_fwd_varlen(ctx, &plain, stream), stream);
}

dm_status dm_fwd_varlen(dm_ctx *ctx, const dm_fwd_varlen_args *args, CUstream stream)
{
    dm_fwd_varlen_plan plan;
    const char *why;

    if (!ctx)
        return DM_ERR_INVALID_ARG;
    dm_status st = dm_fwd_varlen_check(ctx, CALL, args, &plan);
    if (st != DM_OK)
        return st;
    if (args->window > 0) { /* the window's own rules (SPEC §4), before the driver is asked */
        dm_window_mask_varlen_args w = dm_fwd_varlen_window_args(args);
        dm_wmask_varlen_plan wplan;
        if ((st = dm_wmask_varlen_check(ctx, CALL, &w, false, &wplan)) != DM_OK)
            return st;
    }
    /* Only the kernels read cu_seqlens: host memory there would fault on the device. Asked even
     * of an empty batch, so a call that passes empty passes full. */
    if ((st = dm_check_device_readable(ctx, CALL, "cu_seqlens_q", &args->cu_seqlens_q)) != DM_OK ||
        (st = dm_check_device_readable(ctx, CALL, "cu_seqlens_k", &args->cu_seqlens_k)) != DM_OK)
        return st;
    if (plan.total_q == 0 || plan.max_seqlen_q == 0) /* no query anywhere: nothing to write */
        return DM_OK;
    if (args->window > 0)
        return window_forward(ctx, args, stream);
    bool fits = dm_fwd_decode_fits(plan.mask_layout, plan.mask_head_div, plan.bias_layout,
                                   plan.bias_head_div, plan.H / plan.Hkv, plan.max_seqlen_q, &why);
    if (args->path == DM_PATH_DECODE && !fits)
        return dm_set_error(ctx, DM_ERR_UNSUPPORTED, CALL ": path = DM_PATH_DECODE: %s", why);
    if (args->path == DM_PATH_DECODE ||
        (args->path == DM_PATH_AUTO && fits && plan.max_seqlen_q <= DM_DECODE_AUTO_MAX_Q))
        return launch_decode(ctx, args, &plan, stream);
    return launch_tiled(ctx, args, &plan, stream);
}
