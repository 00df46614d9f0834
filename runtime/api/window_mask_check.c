/* window_mask_check.c: dm_wmask_check, every rule a window-mask call's arguments must meet (SPEC §4,
 * dmattn.h), and the normalized plan the launcher and the reference read. Reads only the
 * descriptors: the pointers may be device pointers and are never dereferenced. */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fwd_plan.h"
#include "half.h"
#include "tensor_check.h"
#include "wmask_plan.h"


static const char *const dims4[] = {"B", "H", "Lq", "Lk"};

uint32_t dm_wmask_key(dm_dtype dtype, uint32_t bits)
{
    if (dtype == DM_F32) {
        uint32_t a = bits & 0x7fffffffu;
        if (a > 0x7f800000u)
            return 0xffffffffu;
        if (a == 0)
            return 0x80000000u;
        return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
    }
    uint32_t x = bits & 0xffffu, a = x & 0x7fffu;
    if (a > (dtype == DM_F16 ? 0x7c00u : 0x7f80u))
        return 0xffffu;
    if (a == 0)
        return 0x8000u;
    return (x & 0x8000u) ? (~x & 0xffffu) : (x | 0x8000u);
}

/* min_value in the bias dtype: the caller's (through float, as torch's masked_fill rounds a
 * Python float) or the dtype's lowest finite value. */
void dm_wmask_resolve_min(dm_dtype dtype, int has_min_value, double min_value, uint32_t *bits,
                          double *value, uint32_t *key)
{
    float f;
    switch (dtype) {
    case DM_F16:
        *bits = has_min_value ? dm_float_to_half((float)min_value) : 0xfbffu;
        *value = dm_half_to_float((uint16_t)*bits);
        break;
    case DM_BF16:
        *bits = has_min_value ? dm_float_to_bf16((float)min_value) : 0xff7fu;
        *value = dm_bf16_to_float((uint16_t)*bits);
        break;
    default:
        f = has_min_value ? (float)min_value : -FLT_MAX;
        memcpy(bits, &f, sizeof f);
        *value = f;
        break;
    }
    *key = dm_wmask_key(dtype, *bits);
}

/* One broadcast dimension of bias or mask: its size must be `want` or 1. */
static dm_status check_dim(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                           int d, int64_t want, const char *want_name)
{
    if (t->shape[d] == want || t->shape[d] == 1)
        return DM_OK;
    return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                        "%s: %s.shape[%d] = %" PRId64 ": expected %s = %" PRId64 " or 1", call,
                        name, d, t->shape[d], want_name, want);
}

static dm_status check_4d(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                          const dm_wmask_plan *p)
{
    dm_status st;
    for (int d = 0; d < 4; d++)
        if (t->shape[d] < 1)
            return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                                "%s: %s.shape[%d] (%s) = %" PRId64 ": expected >= 1", call, name,
                                d, dims4[d], t->shape[d]);
    if ((st = check_dim(ctx, call, name, t, 0, p->B, "B")) != DM_OK ||
        (st = check_dim(ctx, call, name, t, 2, p->Lq, "Lq")) != DM_OK)
        return st;
    if (t->shape[3] != p->Lk)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s.shape[3] = %" PRId64 ": expected Lk = %" PRId64, call, name,
                            t->shape[3], p->Lk);
    return DM_OK;
}

/* Byte range [begin, end) a tensor's elements span (extents already checked not to overflow). */
static void byte_range(const dm_tensor *t, size_t elem, uint64_t *begin, uint64_t *end)
{
    uint64_t last = 0;
    for (int d = 0; d < t->rank; d++)
        last += (uint64_t)(t->shape[d] - 1) * (uint64_t)t->strides[d];
    *begin = (uint64_t)(uintptr_t)t->data;
    *end = *begin + (last + 1) * elem;
}

dm_status dm_wmask_check_apart(dm_ctx *ctx, const char *call, const dm_tensor *out,
                               const char *name, const dm_tensor *in, size_t in_elem)
{
    uint64_t ob, oe, ib, ie;
    byte_range(out, 1, &ob, &oe);
    byte_range(in, in_elem, &ib, &ie);
    if (ob < ie && ib < oe)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: out overlaps %s: expected separate memory (a row is read while "
                            "it is written)",
                            call, name);
    return DM_OK;
}

dm_status dm_wmask_check_scalars(dm_ctx *ctx, const char *call, int window, int has_min_value,
                                 double min_value, int relu, int block_size)
{
    if (relu != 0 && relu != 1)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: relu = %d: expected 0 or 1", call,
                            relu);
    if (has_min_value != 0 && has_min_value != 1)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: has_min_value = %d: expected 0 or 1",
                            call, has_min_value);
    if (has_min_value && isnan(min_value))
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: min_value is NaN: expected a number (or has_min_value = 0 for "
                            "the dtype's lowest)",
                            call);
    if (block_size < 0)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: block_size = %d: expected >= 0 (0 = no smoothing)", call,
                            block_size);
    if (window > DM_WINDOW_MAX)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: window = %d: expected at most %d",
                            call, window, DM_WINDOW_MAX);
    return DM_OK;
}

dm_status dm_wmask_check_mask_2d(dm_ctx *ctx, const char *call, const dm_tensor *m, int64_t B,
                                 int64_t Lq, int64_t Lk, int64_t *pad)
{
    if (m->shape[0] < 1 || (m->shape[0] != B && m->shape[0] != 1))
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: mask.shape[0] = %" PRId64 ": expected B = %" PRId64
                            " or 1 for a 2-D mask",
                            call, m->shape[0], B);
    if (m->shape[1] == Lk)
        *pad = 0;
    else if (m->shape[1] == Lq && Lq < Lk)
        *pad = Lk - Lq;
    else
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: mask.shape[1] = %" PRId64 ": expected Lk (%" PRId64
                            ") or Lq (%" PRId64 ") < Lk for a 2-D mask",
                            call, m->shape[1], Lk, Lq);
    return dm_check_input_keys(ctx, call, "mask", m);
}

/* mask: 2-D ({B|1}, S) normalized to ({B|1}, 1, 1, Lk), or 4-D like bias. */
static dm_status check_mask(dm_ctx *ctx, const char *call, const dm_tensor *m, dm_wmask_plan *p,
                            int64_t *heads, int64_t *rows, int64_t *batch)
{
    dm_status st;
    if (m->dtype != DM_BOOL)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: mask.dtype = %s: expected bool", call,
                            dm_dtype_name(m->dtype));
    if (m->rank == 2) {
        if ((st = dm_wmask_check_mask_2d(ctx, call, m, p->B, p->Lq, p->Lk, &p->mask_pad)) !=
            DM_OK)
            return st;
        p->mask_layout = DM_LAYOUT_K;
        p->mask_stride[0] = m->shape[0] == 1 ? 0 : m->strides[0];
        *batch = m->shape[0];
        *heads = 1;
        *rows = 1;
        return DM_OK;
    }
    if ((st = check_4d(ctx, call, "mask", m, p)) != DM_OK ||
        (st = dm_check_input_keys(ctx, call, "mask", m)) != DM_OK)
        return st;
    for (int d = 0; d < 3; d++)
        p->mask_stride[d] = m->shape[d] == 1 ? 0 : m->strides[d];
    p->mask_layout = m->shape[2] == p->Lq && p->Lq > 1 ? DM_LAYOUT_Q : DM_LAYOUT_K;
    *batch = m->shape[0];
    *heads = m->shape[1];
    *rows = m->shape[2];
    return DM_OK;
}

static dm_status check_out(dm_ctx *ctx, const char *call, const dm_window_mask_args *a,
                           dm_wmask_plan *p, bool has_mask)
{
    const dm_tensor *o = &a->out;
    char want[128];
    dm_status st;
    bool present;
    snprintf(want, sizeof want, "(%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 ")",
             p->out_shape[0], p->out_shape[1], p->out_shape[2], p->out_shape[3]);
    if ((st = dm_check_optional(ctx, call, "out", o, 4, want, &present)) != DM_OK)
        return st;
    if (!present)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: out is absent: expected a bool tensor %s (the window applies: "
                            "window = %d < Lk = %" PRId64 ")",
                            call, want, a->window, p->Lk);
    if (o->dtype != DM_BOOL)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: out.dtype = %s: expected bool", call,
                            dm_dtype_name(o->dtype));
    for (int d = 0; d < 4; d++)
        if (o->shape[d] != p->out_shape[d])
            return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                                "%s: out.shape[%d] = %" PRId64 ": expected %" PRId64
                                " (the broadcast of bias and mask is %s)",
                                call, d, o->shape[d], p->out_shape[d], want);
    if (o->strides[3] != 1 && o->shape[3] > 1)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: out.strides[3] = %" PRId64
                            ": expected 1 (the last dimension must be contiguous)",
                            call, o->strides[3]);
    if ((st = dm_check_output_elems(ctx, call, "out", o)) != DM_OK ||
        (st = dm_wmask_check_apart(ctx, call, o, "bias", &a->bias, dm_wmask_bias_bytes(p))) !=
            DM_OK ||
        (has_mask && (st = dm_wmask_check_apart(ctx, call, o, "mask", &a->mask, 1)) != DM_OK))
        return st;
    for (int d = 0; d < 3; d++)
        p->out_stride[d] = o->shape[d] == 1 ? 0 : o->strides[d];
    p->has_out = true;
    return DM_OK;
}

int64_t dm_wmask_broadcast(int64_t a, int64_t b)
{
    return a == b || b == 1 ? a : a == 1 ? b : -1;
}

dm_status dm_wmask_check(dm_ctx *ctx, const char *call, const dm_window_mask_args *args,
                         bool need_out, dm_wmask_plan *plan)
{
    dm_wmask_plan p;
    dm_status st;
    bool has_bias, has_mask;
    int64_t m_batch = 1, m_heads = 1, m_rows = 1;

    if (!ctx)
        return DM_ERR_INVALID_ARG;
    dm_clear_error(ctx);
    if (!args)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: args is NULL: expected a dm_window_mask_args", call);
    memset(&p, 0, sizeof p);
    const dm_window_mask_args *a = args;
    if (a->window < 0)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: window = %d: expected >= 0 (0 = no window)", call, a->window);
    if (a->B < 1 || a->Lq < 1 || a->Lk < 1)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: B = %" PRId64 ", Lq = %" PRId64 ", Lk = %" PRId64
                            ": expected each >= 1",
                            call, a->B, a->Lq, a->Lk);
    p.B = a->B;
    p.Lq = a->Lq;
    p.Lk = a->Lk;
    /* SPEC §4: no window, or one that keeps every key: the mask stands as it is. */
    if (a->window == 0 || a->Lk <= a->window) {
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
    if (a->Lk > INT32_MAX)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: Lk = %" PRId64 ": expected at most %d", call, a->Lk, INT32_MAX);

    if ((st = dm_check_optional(ctx, call, "bias", &a->bias, 4, "({B|1}, H, {Lq|1}, Lk)",
                                &has_bias)) != DM_OK)
        return st;
    if (!has_bias)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: bias is absent: expected a bias ({B|1}, H, {Lq|1}, Lk) when "
                            "window = %d (the window keeps the largest bias values)",
                            call, a->window);
    if (a->bias.dtype != DM_F16 && a->bias.dtype != DM_BF16 && a->bias.dtype != DM_F32)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: bias.dtype = %s: expected a floating dtype (f16, bf16 or f32) "
                            "when window = %d",
                            call, dm_dtype_name(a->bias.dtype), a->window);
    p.bias_dtype = a->bias.dtype;
    if ((st = check_4d(ctx, call, "bias", &a->bias, &p)) != DM_OK ||
        (st = dm_check_input_keys(ctx, call, "bias", &a->bias)) != DM_OK)
        return st;
    for (int d = 0; d < 3; d++)
        p.bias_stride[d] = a->bias.shape[d] == 1 ? 0 : a->bias.strides[d];

    /* rank 2 or 4: check_optional's rank check is given whichever the caller's is nearer. */
    if ((st = dm_check_optional(ctx, call, "mask", &a->mask, a->mask.rank == 2 ? 2 : 4,
                                "({B|1}, H, {Lq|1}, Lk) or 2-D ({B|1}, Lk or Lq)", &has_mask)) !=
        DM_OK)
        return st;
    if (has_mask &&
        (st = check_mask(ctx, call, &a->mask, &p, &m_heads, &m_rows, &m_batch)) != DM_OK)
        return st;

    p.out_shape[0] = dm_wmask_broadcast(a->bias.shape[0], m_batch);
    p.out_shape[1] = dm_wmask_broadcast(a->bias.shape[1], m_heads);
    p.out_shape[2] = dm_wmask_broadcast(a->bias.shape[2], m_rows);
    p.out_shape[3] = p.Lk;
    if (p.out_shape[1] < 0)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: mask.shape[1] = %" PRId64 " and bias.shape[1] = %" PRId64
                            " do not broadcast: expected equal sizes or 1",
                            call, m_heads, a->bias.shape[1]);
    /* B and Lq were each checked against the call's size or 1, so they always broadcast. */
    int64_t rows = dm_wmask_plan_rows(&p);
    if (p.out_shape[1] > INT32_MAX || rows > INT32_MAX)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: out has %" PRId64 " rows (B x H x Lq): expected at most %d (one "
                            "block per row)",
                            call, rows, INT32_MAX);
    dm_wmask_resolve_min(p.bias_dtype, a->has_min_value, a->min_value, &p.min_bits, &p.min_value,
                         &p.min_key);
    if (need_out && (st = check_out(ctx, call, a, &p, has_mask)) != DM_OK)
        return st;
    if (plan)
        *plan = p;
    return DM_OK;
}

void dm_wmask_plan_variant(const dm_wmask_plan *plan, dm_arch arch, dm_variant *out)
{
    memset(out, 0, sizeof *out);
    out->family = DM_FAMILY_WMASK;
    out->window = plan->relu ? 0 : plan->window;
    out->dtype = plan->bias_dtype;
    out->mask = plan->mask_layout;
    out->relu = plan->relu;
    out->smooth = plan->block_size > 0;
    out->arch = arch;
}
