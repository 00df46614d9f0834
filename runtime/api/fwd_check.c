/* fwd_check.c: dm_fwd_check, every rule a dense forward call's arguments must meet (SPEC §2,
 * dmattn.h), and the normalized plan that the launcher and the CPU reference both read.
 * Reads only the descriptors: the pointers may be device pointers and are never dereferenced. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "attn_check.h"
#include "fwd_plan.h"
#include "tensor_check.h"
#include "wmask_plan.h"

static const char *const q_dims[] = {"B", "Lq", "H", "D"};
static const char *const kv_dims[] = {"B", "Lk", "Hkv", "D"};

/* B and the lengths may be 0, as in PyTorch (dm_fwd then writes nothing, or with Lk = 0 every
 * row as one with no visible key); heads and D are at least 1. */
static dm_status check_sizes(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                             const char *const *labels)
{
    for (int d = 0; d < t->rank; d++) {
        int least = d < 2 ? 0 : 1;
        if (t->shape[d] < least)
            return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                                "%s: %s.shape[%d] (%s) = %" PRId64 ": expected >= %d", call, name,
                                d, labels[d], t->shape[d], least);
    }
    return DM_OK;
}

/* mask or bias: ({B|1}, {H|Hkv|1}, {Lq|1}, Lk). Fills the layout, head divisor and strides. */
static dm_status check_broadcast(dm_ctx *ctx, const char *call, const char *name,
                                 const dm_tensor *t, const dm_fwd_plan *p, dm_layout *layout,
                                 int64_t *head_div, int64_t stride[4])
{
    const int64_t *s = t->shape;

    if (s[0] != p->B && s[0] != 1)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s.shape[0] = %" PRId64 ": expected B = %" PRId64 " or 1", call,
                            name, s[0], p->B);
    if (s[1] == p->H)
        *head_div = 1;
    else if (s[1] == p->Hkv)
        *head_div = p->H / p->Hkv;
    else if (s[1] == 1)
        *head_div = p->H;
    else
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s.shape[1] = %" PRId64 ": expected H = %" PRId64
                            ", Hkv = %" PRId64 " or 1",
                            call, name, s[1], p->H, p->Hkv);
    /* With Lq == 1 both layouts fit; K is the one that skips tiles by key alone. */
    if (s[2] == 1)
        *layout = DM_LAYOUT_K;
    else if (s[2] == p->Lq)
        *layout = DM_LAYOUT_Q;
    else
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s.shape[2] = %" PRId64 ": expected Lq = %" PRId64
                            " (one row per query) or 1 (one row for every query)",
                            call, name, s[2], p->Lq);
    if (s[3] != p->Lk)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s.shape[3] = %" PRId64 ": expected Lk = %" PRId64 " (k.shape[1])",
                            call, name, s[3], p->Lk);
    for (int d = 0; d < 4; d++)
        stride[d] = s[d] == 1 ? 0 : t->strides[d];
    return DM_OK;
}

void dm_plan_rows(const dm_tensor *t, int64_t out[3])
{
    for (int d = 0; d < 3; d++)
        out[d] = t->shape[d] == 1 ? 0 : t->strides[d];
}

dm_status dm_fwd_check(dm_ctx *ctx, const char *call, const dm_fwd_args *args, dm_fwd_plan *plan)
{
    dm_fwd_plan p;
    bool has_mask, has_bias;
    dm_status st;

    if (!ctx)
        return DM_ERR_INVALID_ARG;
    dm_clear_error(ctx);
    if (!call)
        call = "dm_fwd";
    if (!args)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: args is NULL: expected a dm_fwd_args",
                            call);
    const dm_tensor *q = &args->q, *k = &args->k, *v = &args->v, *o = &args->o;
    /* With a window the mask may also be dm_window_mask's 2-D ({B|1}, S) (fwd_window.c). */
    bool mask_2d = args->window > 0 && args->mask.rank == 2;
    memset(&p, 0, sizeof p);

    /* Presence and rank. */
    if ((st = dm_check_required(ctx, call, "q", q, 4, "(B, Lq, H, D)")) != DM_OK ||
        (st = dm_check_required(ctx, call, "k", k, 4, "(B, Lk, Hkv, D)")) != DM_OK ||
        (st = dm_check_required(ctx, call, "v", v, 4, "(B, Lk, Hkv, D)")) != DM_OK ||
        (st = dm_check_required(ctx, call, "o", o, 4, "(B, Lq, H, D)")) != DM_OK ||
        (st = dm_check_optional(ctx, call, "mask", &args->mask, mask_2d ? 2 : 4,
                                mask_2d ? "({B|1}, Lk or Lq)"
                                        : "({B|1}, {H|Hkv|1}, {Lq|1}, Lk) (or 2-D ({B|1}, Lk or "
                                          "Lq) with window > 0)",
                                &has_mask)) != DM_OK ||
        (st = dm_check_optional(ctx, call, "bias", &args->bias, 4, "({B|1}, {H|Hkv|1}, {Lq|1}, Lk)",
                                &has_bias)) != DM_OK ||
        (st = dm_check_optional(ctx, call, "lse", &args->lse, 3, "(B, H, Lq)", &p.has_lse)) !=
            DM_OK)
        return st;

    /* Dtypes. */
    if ((st = dm_check_attn_dtypes(ctx, call, q, k, v, o, has_mask ? &args->mask : NULL,
                                   has_bias ? &args->bias : NULL,
                                   p.has_lse ? &args->lse : NULL)) != DM_OK)
        return st;

    /* Shapes of q, k, v, o. */
    if ((st = check_sizes(ctx, call, "q", q, q_dims)) != DM_OK ||
        (st = check_sizes(ctx, call, "k", k, kv_dims)) != DM_OK ||
        (st = check_sizes(ctx, call, "v", v, kv_dims)) != DM_OK ||
        (st = check_sizes(ctx, call, "o", o, q_dims)) != DM_OK)
        return st;
    p.B = q->shape[0];
    p.Lq = q->shape[1];
    p.H = q->shape[2];
    p.D = q->shape[3];
    p.Lk = k->shape[1];
    p.Hkv = k->shape[2];
    if (k->shape[0] != p.B)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: k.shape[0] (B) = %" PRId64
                            " does not match q.shape[0] (B) = %" PRId64,
                            call, k->shape[0], p.B);
    if ((st = dm_check_attn_heads(ctx, call, q, k, v, o, 2)) != DM_OK)
        return st;
    if (p.B > DM_GRID_YZ_MAX)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: q.shape[0] (B) = %" PRId64
                            ": expected at most %d (kernels launch one grid.z block per batch)",
                            call, p.B, DM_GRID_YZ_MAX);
    if (p.Lq > INT32_MAX)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: q.shape[1] (Lq) = %" PRId64 ": expected at most %d", call, p.Lq,
                            INT32_MAX);
    if (p.Lk > INT32_MAX)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: k.shape[1] (Lk) = %" PRId64 ": expected at most %d", call, p.Lk,
                            INT32_MAX);

    /* Shapes of mask, bias, lse. */
    p.mask_head_div = 1;
    p.bias_head_div = 1;
    if (has_mask && mask_2d) {
        /* SPEC §4's normalization, checked here since the window path needs it even when the
         * window keeps every key; the plan's layout is left NONE (only the window path, which
         * reads the arguments, runs such a call). */
        int64_t pad;
        if ((st = dm_wmask_check_mask_2d(ctx, call, &args->mask, p.B, p.Lq, p.Lk, &pad)) !=
            DM_OK)
            return st;
    } else if (has_mask && (st = check_broadcast(ctx, call, "mask", &args->mask, &p,
                                                 &p.mask_layout, &p.mask_head_div,
                                                 p.mask_stride)) != DM_OK)
        return st;
    if (has_bias && (st = check_broadcast(ctx, call, "bias", &args->bias, &p, &p.bias_layout,
                                          &p.bias_head_div, p.bias_stride)) != DM_OK)
        return st;
    if (p.has_lse) {
        const int64_t want[3] = {p.B, p.H, p.Lq};
        static const char *const lse_dims[] = {"B", "H", "Lq"};
        for (int d = 0; d < 3; d++)
            if (args->lse.shape[d] != want[d])
                return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                                    "%s: lse.shape[%d] = %" PRId64 ": expected %s = %" PRId64
                                    " (lse is (B, H, Lq))",
                                    call, d, args->lse.shape[d], lse_dims[d], want[d]);
    }

    /* Strides, alignment, extents, output overlap. */
    if ((st = dm_check_input_rows(ctx, call, "q", q)) != DM_OK ||
        (st = dm_check_input_rows(ctx, call, "k", k)) != DM_OK ||
        (st = dm_check_input_rows(ctx, call, "v", v)) != DM_OK ||
        (st = dm_check_output_rows(ctx, call, "o", o)) != DM_OK)
        return st;
    if (has_mask && (st = dm_check_input_keys(ctx, call, "mask", &args->mask)) != DM_OK)
        return st;
    if (has_bias && (st = dm_check_input_keys(ctx, call, "bias", &args->bias)) != DM_OK)
        return st;
    if (p.has_lse && (st = dm_check_output_elems(ctx, call, "lse", &args->lse)) != DM_OK)
        return st;

    /* Scalars. */
    if ((st = dm_check_attn_scalars(ctx, call, args->scale, args->softcap, args->causal,
                                    args->path, args->num_splits, args->window)) != DM_OK)
        return st;
    /* window > 0 is applied by dm_fwd through dm_window_mask (fwd_window.c), which checks
     * bias and mask against its own rules (SPEC §4) before anything runs. */

    p.dtype = q->dtype;
    p.scale = args->scale != 0 ? args->scale : (float)(1.0 / sqrt((double)p.D));
    p.softcap = args->softcap;
    p.causal = args->causal != 0;
    dm_plan_rows(q, p.q_stride);
    dm_plan_rows(k, p.k_stride);
    dm_plan_rows(v, p.v_stride);
    dm_plan_rows(o, p.o_stride);
    p.bias_dtype = has_bias ? args->bias.dtype : DM_DTYPE_NONE;
    if (p.has_lse)
        for (int d = 0; d < 3; d++)
            p.lse_stride[d] = args->lse.shape[d] == 1 ? 0 : args->lse.strides[d];
    if (plan)
        *plan = p;
    return DM_OK;
}

void dm_fwd_plan_variant(const dm_fwd_plan *plan, dm_arch arch, dm_variant *out)
{
    memset(out, 0, sizeof *out);
    out->dir = DM_DIR_FWD;
    out->head_dim = (int)plan->D;
    out->dtype = plan->dtype;
    out->mask = plan->mask_layout;
    out->bias = plan->bias_layout;
    out->window = 0;
    out->varlen = false;
    out->causal = plan->causal;
    out->softcap = plan->softcap > 0;
    out->arch = arch;
}
