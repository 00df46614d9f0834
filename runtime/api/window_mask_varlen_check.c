/* window_mask_varlen_check.c: dm_wmask_varlen_check, every rule of a dm_window_mask_varlen call
 * (dmattn.h) and the plan the launcher and the CPU reference read (wmask_varlen_plan.h). The
 * scalar, min_value and overlap rules are the dense helper's (window_mask_check.c), the cu_seqlens
 * and max_seqlen rules the varlen forward's (seqlens_check.c). Reads only the descriptors: every
 * pointer, cu_seqlens included, may be device memory and is never dereferenced. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "seqlens_check.h"
#include "tensor_check.h"
#include "wmask_plan.h"
#include "wmask_varlen_plan.h"

/* bias or mask (rank known 2 or 3): the first dimension, heads >= 1, a query-based row holding
 * max_seqlen_k keys, the strides. Fills the layout and the plan's {token, head, key} strides. */
static dm_status check_shape(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                             const dm_wmask_varlen_plan *p, dm_layout *layout, int64_t stride[3])
{
    bool by_query = t->rank == 3;
    dm_status st = dm_check_varlen_layout_rows(ctx, call, name, t, p->total_q, p->total_k);

    if (st != DM_OK)
        return st;
    if (t->shape[1] < 1)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s.shape[1] (Hm) = %" PRId64 ": expected >= 1", call, name,
                            t->shape[1]);
    if (by_query && t->shape[2] < p->max_seqlen_k)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s.shape[2] = %" PRId64
                            ": expected at least max_seqlen_k = %" PRId64
                            " (a query's row holds every key of its sequence)",
                            call, name, t->shape[2], p->max_seqlen_k);
    /* A query-based row's keys are read in runs; a key-based tensor one element per key. */
    if ((st = by_query ? dm_check_input_keys(ctx, call, name, t)
                       : dm_check_input_elems(ctx, call, name, t)) != DM_OK)
        return st;
    *layout = by_query ? DM_LAYOUT_Q : DM_LAYOUT_K;
    stride[0] = t->shape[0] == 1 ? 0 : t->strides[0];
    stride[1] = t->shape[1] == 1 ? 0 : t->strides[1];
    stride[2] = by_query ? 1 : stride[0];
    return DM_OK;
}

static dm_status check_out(dm_ctx *ctx, const char *call, const dm_window_mask_varlen_args *a,
                           dm_wmask_varlen_plan *p, bool has_mask)
{
    const dm_tensor *o = &a->out;
    bool by_key = p->out_layout == DM_LAYOUT_K, present;
    int rank = by_key ? 2 : 3;
    int64_t want[3] = {by_key ? p->total_k : p->total_q, p->heads, p->max_seqlen_k};
    const char *form =
        by_key ? "key-based (total_k, Hm')" : "query-based (total_q, Hm', max_seqlen_k)";
    char shape[96];
    dm_status st;

    dm_format_dims(want, rank, shape, sizeof shape);
    if ((st = dm_check_optional(ctx, call, "out", o, rank, form, &present)) != DM_OK)
        return st;
    if (!present)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: out is absent: expected a bool tensor %s = %s (the window "
                            "applies: window = %d < max_seqlen_k = %" PRId64 ")",
                            call, form, shape, a->window, p->max_seqlen_k);
    if (o->dtype != DM_BOOL)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: out.dtype = %s: expected bool", call,
                            dm_dtype_name(o->dtype));
    for (int d = 0; d < rank; d++)
        if (o->shape[d] != want[d])
            return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                                "%s: out.shape[%d] = %" PRId64 ": expected %" PRId64
                                " (out is %s = %s; Hm' is the broadcast of bias's and mask's "
                                "heads)",
                                call, d, o->shape[d], want[d], form, shape);
    if (!by_key && o->strides[2] != 1 && o->shape[2] > 1)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: out.strides[2] = %" PRId64
                            ": expected 1 (a query-based out's keys must be contiguous)",
                            call, o->strides[2]);
    if ((st = dm_check_output_elems(ctx, call, "out", o)) != DM_OK ||
        (st = dm_wmask_check_apart(ctx, call, o, "bias", &a->bias,
                                   p->bias_dtype == DM_F32 ? 4 : 2)) != DM_OK ||
        (has_mask && (st = dm_wmask_check_apart(ctx, call, o, "mask", &a->mask, 1)) != DM_OK))
        return st;
    p->out_stride[0] = o->shape[0] == 1 ? 0 : o->strides[0];
    p->out_stride[1] = o->shape[1] == 1 ? 0 : o->strides[1];
    p->out_stride[2] = by_key ? p->out_stride[0] : 1;
    p->has_out = true;
    return DM_OK;
}

/* total_q or total_k: a count of tokens that int32 offsets reach. */
static dm_status check_total(dm_ctx *ctx, const char *call, const char *name, int64_t total)
{
    if (total < 0 || total > INT32_MAX)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s = %" PRId64 ": expected 0 to %d (cu_seqlens are int32)", call,
                            name, total, INT32_MAX);
    return DM_OK;
}

dm_status dm_wmask_varlen_check(dm_ctx *ctx, const char *call,
                                const dm_window_mask_varlen_args *args, bool need_out,
                                dm_wmask_varlen_plan *plan)
{
    dm_wmask_varlen_plan p;
    dm_status st;
    bool has_bias, has_mask;
    int64_t mask_heads = 1;

    if (!ctx)
        return DM_ERR_INVALID_ARG;
    dm_clear_error(ctx);
    if (!args)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: args is NULL: expected a dm_window_mask_varlen_args", call);
    memset(&p, 0, sizeof p);
    const dm_window_mask_varlen_args *a = args;
    if (a->window < 0)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: window = %d: expected >= 0 (0 = no window)", call, a->window);
    if ((st = check_total(ctx, call, "total_q", a->total_q)) != DM_OK ||
        (st = check_total(ctx, call, "total_k", a->total_k)) != DM_OK ||
        (st = dm_check_cu_seqlens(ctx, call, &a->cu_seqlens_q, &a->cu_seqlens_k, &p.B)) != DM_OK ||
        (st = dm_check_max_seqlen(ctx, call, "max_seqlen_q", a->max_seqlen_q, "total_q",
                                  a->total_q, p.B)) != DM_OK ||
        (st = dm_check_max_seqlen(ctx, call, "max_seqlen_k", a->max_seqlen_k, "total_k",
                                  a->total_k, p.B)) != DM_OK)
        return st;
    p.total_q = a->total_q;
    p.total_k = a->total_k;
    p.max_seqlen_q = a->max_seqlen_q;
    p.max_seqlen_k = a->max_seqlen_k;
    /* SPEC §4 per sequence: no window, or one that keeps every key of every sequence. */
    if (a->window == 0 || a->max_seqlen_k <= a->window) {
        if (plan)
            *plan = p;
        return DM_OK;
    }
    p.applied = true;
    p.window = a->window;
    p.relu = a->relu != 0;
    p.block_size = a->block_size;
    if ((st = dm_wmask_check_scalars(ctx, call, a->window, a->has_min_value, a->min_value,
                                     a->relu, a->block_size)) != DM_OK)
        return st;

    if ((st = dm_check_varlen_layout_rank(ctx, call, "bias", &a->bias, &has_bias)) != DM_OK)
        return st;
    if (!has_bias)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: bias is absent: expected a bias (%s) when window = %d (the "
                            "window keeps the largest bias values)",
                            call, DM_VARLEN_LAYOUTS, a->window);
    if (a->bias.dtype != DM_F16 && a->bias.dtype != DM_BF16 && a->bias.dtype != DM_F32)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: bias.dtype = %s: expected a floating dtype (f16, bf16 or f32) "
                            "when window = %d",
                            call, dm_dtype_name(a->bias.dtype), a->window);
    p.bias_dtype = a->bias.dtype;
    if ((st = check_shape(ctx, call, "bias", &a->bias, &p, &p.bias_layout, p.bias_stride)) !=
        DM_OK)
        return st;

    if ((st = dm_check_varlen_layout_rank(ctx, call, "mask", &a->mask, &has_mask)) != DM_OK)
        return st;
    if (has_mask) {
        if (a->mask.dtype != DM_BOOL)
            return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: mask.dtype = %s: expected bool",
                                call, dm_dtype_name(a->mask.dtype));
        if ((st = check_shape(ctx, call, "mask", &a->mask, &p, &p.mask_layout, p.mask_stride)) !=
            DM_OK)
            return st;
        mask_heads = a->mask.shape[1];
    }
    p.heads = dm_wmask_broadcast(a->bias.shape[1], mask_heads);
    if (p.heads < 0)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: mask.shape[1] = %" PRId64 " and bias.shape[1] = %" PRId64
                            " do not broadcast: expected equal sizes or 1",
                            call, mask_heads, a->bias.shape[1]);
    p.out_layout = p.bias_layout == DM_LAYOUT_Q || p.mask_layout == DM_LAYOUT_Q ? DM_LAYOUT_Q
                                                                                 : DM_LAYOUT_K;
    int64_t rows = dm_wmask_varlen_rows(&p);
    if (p.heads > INT32_MAX || rows > INT32_MAX)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: out has %" PRId64 " rows (%s x heads): expected at most %d (one "
                            "block per row)",
                            call, rows, p.out_layout == DM_LAYOUT_K ? "B" : "total_q", INT32_MAX);
    dm_wmask_resolve_min(p.bias_dtype, a->has_min_value, a->min_value, &p.min_bits, &p.min_value,
                         &p.min_key);
    if (need_out && (st = check_out(ctx, call, a, &p, has_mask)) != DM_OK)
        return st;
    if (plan)
        *plan = p;
    return DM_OK;
}

void dm_wmask_varlen_plan_variant(const dm_wmask_varlen_plan *plan, dm_arch arch,
                                  dm_variant *out)
{
    memset(out, 0, sizeof *out);
    out->family = DM_FAMILY_WMASK;
    out->window = plan->relu ? 0 : plan->window;
    out->dtype = plan->bias_dtype;
    out->mask = plan->mask_layout;
    out->relu = plan->relu;
    out->smooth = plan->block_size > 0;
    out->varlen = true;
    out->arch = arch;
}
