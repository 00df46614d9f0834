/* fwd_varlen_check.c: dm_fwd_varlen_check, every rule of a varlen forward call (SPEC §5, dmattn.h's
 * dm_fwd_varlen_args) that the host can see, and the plan the launcher and the CPU reference both
 * read (fwd_varlen_plan.h). Reads only the descriptors: every pointer, cu_seqlens included, may
 * be device memory and is never dereferenced, so what cu_seqlens hold is the caller's promise
 * (the kernels clamp it); only their length, dtype and layout are checked here, and where they
 * live by the entry point (device_check.c), which asks the driver. */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "attn_check.h"
#include "fwd_varlen_plan.h"
#include "seqlens_check.h"
#include "tensor_check.h"

static const char *const q_dims[] = {"total_q", "H", "D"};
static const char *const kv_dims[] = {"total_k", "Hkv", "D"};

/* q, k, v, o: (total, heads, D). A total may be 0 (an empty batch, or no keys at all) but must
 * fit the int32 offsets of cu_seqlens; heads and D are at least 1. */
static dm_status check_sizes(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                             const char *const *labels, const char *offsets)
{
    if (t->shape[0] < 0)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s.shape[0] (%s) = %" PRId64 ": expected >= 0", call, name,
                            labels[0], t->shape[0]);
    if (t->shape[0] > INT32_MAX)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s.shape[0] (%s) = %" PRId64
                            ": expected at most %d (%s are int32)",
                            call, name, labels[0], t->shape[0], INT32_MAX, offsets);
    for (int d = 1; d < 3; d++)
        if (t->shape[d] < 1)
            return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                                "%s: %s.shape[%d] (%s) = %" PRId64 ": expected >= 1", call, name, d,
                                labels[d], t->shape[d]);
    return DM_OK;
}

/* mask or bias, rank 3 (query-based) or rank 2 (key-based): the first dimension, the heads Hm and
 * a query-based row's length. Fills the layout and the head divisor. */
static dm_status check_mask_shape(dm_ctx *ctx, const char *call, const char *name,
                                  const dm_tensor *t, const dm_fwd_varlen_plan *p,
                                  dm_layout *layout, int64_t *head_div)
{
    bool by_query = t->rank == 3;
    dm_status st = dm_check_varlen_layout_rows(ctx, call, name, t, p->total_q, p->total_k);

    if (st != DM_OK)
        return st;
    if (t->shape[1] == p->H)
        *head_div = 1;
    else if (t->shape[1] == p->Hkv)
        *head_div = p->H / p->Hkv;
    else if (t->shape[1] == 1)
        *head_div = p->H;
    else
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s.shape[1] (Hm) = %" PRId64 ": expected H = %" PRId64
                            ", Hkv = %" PRId64 " or 1",
                            call, name, t->shape[1], p->H, p->Hkv);
    if (by_query && t->shape[2] < p->max_seqlen_k)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s.shape[2] = %" PRId64
                            ": expected at least max_seqlen_k = %" PRId64
                            " (a query's row holds every key of its sequence)",
                            call, name, t->shape[2], p->max_seqlen_k);
    *layout = by_query ? DM_LAYOUT_Q : DM_LAYOUT_K;
    return DM_OK;
}

/* A dimension of size 1 is never stepped: stride 0, whatever the caller passed. */
static int64_t plan_stride(const dm_tensor *t, int d)
{
    return t->shape[d] == 1 ? 0 : t->strides[d];
}

/* The plan's (token, head, key) strides: a query-based row's keys are contiguous; a key-based
 * tensor steps from key to key by its own token stride (fwd_varlen_plan.h). */
static void plan_mask(const dm_tensor *t, dm_layout layout, int64_t stride[3])
{
    stride[0] = plan_stride(t, 0);
    stride[1] = plan_stride(t, 1);
    stride[2] = layout == DM_LAYOUT_Q ? 1 : stride[0];
}

dm_status dm_fwd_varlen_check(dm_ctx *ctx, const char *call, const dm_fwd_varlen_args *args,
                              dm_fwd_varlen_plan *plan)
{
    dm_fwd_varlen_plan p;
    bool has_mask, has_bias;
    dm_status st;

    if (!ctx)
        return DM_ERR_INVALID_ARG;
    dm_clear_error(ctx);
    if (!call)
        call = "dm_fwd_varlen";
    if (!args)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: args is NULL: expected a dm_fwd_varlen_args", call);
    const dm_tensor *q = &args->q, *k = &args->k, *v = &args->v, *o = &args->o;
    const dm_tensor *cu_q = &args->cu_seqlens_q, *cu_k = &args->cu_seqlens_k;
    const dm_tensor *mask = &args->mask, *bias = &args->bias, *lse = &args->lse;
    memset(&p, 0, sizeof p);

    /* Presence and rank. */
    if ((st = dm_check_required(ctx, call, "q", q, 3, "(total_q, H, D)")) != DM_OK ||
        (st = dm_check_required(ctx, call, "k", k, 3, "(total_k, Hkv, D)")) != DM_OK ||
        (st = dm_check_required(ctx, call, "v", v, 3, "(total_k, Hkv, D)")) != DM_OK ||
        (st = dm_check_required(ctx, call, "o", o, 3, "(total_q, H, D)")) != DM_OK ||
        (st = dm_check_required(ctx, call, "cu_seqlens_q", cu_q, 1, "(B + 1)")) != DM_OK ||
        (st = dm_check_required(ctx, call, "cu_seqlens_k", cu_k, 1, "(B + 1)")) != DM_OK ||
        (st = dm_check_varlen_layout_rank(ctx, call, "mask", mask, &has_mask)) != DM_OK ||
        (st = dm_check_varlen_layout_rank(ctx, call, "bias", bias, &has_bias)) != DM_OK ||
        (st = dm_check_optional(ctx, call, "lse", lse, 2, "(H, total_q)", &p.has_lse)) != DM_OK)
        return st;

    /* Dtypes. */
    if ((st = dm_check_attn_dtypes(ctx, call, q, k, v, o, has_mask ? mask : NULL,
                                   has_bias ? bias : NULL, p.has_lse ? lse : NULL)) != DM_OK)
        return st;

    /* Shapes of q, k, v, o. */
    if ((st = check_sizes(ctx, call, "q", q, q_dims, "cu_seqlens_q")) != DM_OK ||
        (st = check_sizes(ctx, call, "k", k, kv_dims, "cu_seqlens_k")) != DM_OK ||
        (st = check_sizes(ctx, call, "v", v, kv_dims, "cu_seqlens_k")) != DM_OK ||
        (st = check_sizes(ctx, call, "o", o, q_dims, "cu_seqlens_q")) != DM_OK)
        return st;
    p.total_q = q->shape[0];
    p.H = q->shape[1];
    p.D = q->shape[2];
    p.total_k = k->shape[0];
    p.Hkv = k->shape[1];
    if ((st = dm_check_attn_heads(ctx, call, q, k, v, o, 1)) != DM_OK)
        return st;

    /* cu_seqlens and max_seqlen: B comes from cu_seqlens_q (the rules dm_window_mask_varlen
     * shares: seqlens_check.c). */
    if ((st = dm_check_cu_seqlens(ctx, call, cu_q, cu_k, &p.B)) != DM_OK)
        return st;
    if (p.B > DM_GRID_YZ_MAX)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: cu_seqlens_q.shape[0] = %" PRId64
                            ": expected B + 1 <= %d (kernels launch one grid.z block per "
                            "sequence)",
                            call, cu_q->shape[0], DM_GRID_YZ_MAX + 1);
    p.max_seqlen_q = args->max_seqlen_q;
    p.max_seqlen_k = args->max_seqlen_k;
    if ((st = dm_check_max_seqlen(ctx, call, "max_seqlen_q", p.max_seqlen_q, "total_q",
                                  p.total_q, p.B)) != DM_OK ||
        (st = dm_check_max_seqlen(ctx, call, "max_seqlen_k", p.max_seqlen_k, "total_k",
                                  p.total_k, p.B)) != DM_OK)
        return st;

    /* Shapes of mask, bias, lse. */
    p.mask_head_div = 1;
    p.bias_head_div = 1;
    if (has_mask && (st = check_mask_shape(ctx, call, "mask", mask, &p, &p.mask_layout,
                                           &p.mask_head_div)) != DM_OK)
        return st;
    if (has_bias && (st = check_mask_shape(ctx, call, "bias", bias, &p, &p.bias_layout,
                                           &p.bias_head_div)) != DM_OK)
        return st;
    if (p.has_lse) {
        const int64_t want[2] = {p.H, p.total_q};
        static const char *const lse_dims[] = {"H", "total_q"};
        for (int d = 0; d < 2; d++)
            if (lse->shape[d] != want[d])
                return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                                    "%s: lse.shape[%d] = %" PRId64 ": expected %s = %" PRId64
                                    " (lse is (H, total_q))",
                                    call, d, lse->shape[d], lse_dims[d], want[d]);
    }

    /* Strides, alignment, extents, output overlap. A query-based row's keys are contiguous; a
     * key-based tensor is read one element per key, in whatever order its strides say. */
    if ((st = dm_check_input_rows(ctx, call, "q", q)) != DM_OK ||
        (st = dm_check_input_rows(ctx, call, "k", k)) != DM_OK ||
        (st = dm_check_input_rows(ctx, call, "v", v)) != DM_OK ||
        (st = dm_check_output_rows(ctx, call, "o", o)) != DM_OK)
        return st;
    if (has_mask && (st = p.mask_layout == DM_LAYOUT_Q
                              ? dm_check_input_keys(ctx, call, "mask", mask)
                              : dm_check_input_elems(ctx, call, "mask", mask)) != DM_OK)
        return st;
    if (has_bias && (st = p.bias_layout == DM_LAYOUT_Q
                              ? dm_check_input_keys(ctx, call, "bias", bias)
                              : dm_check_input_elems(ctx, call, "bias", bias)) != DM_OK)
        return st;
    if (p.has_lse && (st = dm_check_output_elems(ctx, call, "lse", lse)) != DM_OK)
        return st;

    /* Scalars. window > 0 is applied by dm_fwd_varlen through dm_window_mask_varlen
     * (fwd_varlen_window.c), which checks bias and mask against its own rules (SPEC §4). */
    if ((st = dm_check_attn_scalars(ctx, call, args->scale, args->softcap, args->causal,
                                    args->path, args->num_splits, args->window)) != DM_OK)
        return st;

    p.dtype = q->dtype;
    p.scale = args->scale != 0 ? args->scale : (float)(1.0 / sqrt((double)p.D));
    p.softcap = args->softcap;
    p.causal = args->causal != 0;
    for (int d = 0; d < 2; d++) {
        p.q_stride[d] = plan_stride(q, d);
        p.k_stride[d] = plan_stride(k, d);
        p.v_stride[d] = plan_stride(v, d);
        p.o_stride[d] = plan_stride(o, d);
        if (p.has_lse)
            p.lse_stride[d] = plan_stride(lse, d);
    }
    if (has_mask)
        plan_mask(mask, p.mask_layout, p.mask_stride);
    if (has_bias)
        plan_mask(bias, p.bias_layout, p.bias_stride);
    p.bias_dtype = has_bias ? bias->dtype : DM_DTYPE_NONE;
    if (plan)
        *plan = p;
    return DM_OK;
}
