/* fwd_check.c: dm_fwd_check, every rule a dense forward call's arguments must meet (SPEC §2,
 * dmattn.h), and the normalized plan that the launcher and the CPU reference both read.
 * Reads only the descriptors: the pointers may be device pointers and are never dereferenced. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fwd_plan.h"
#include "tensor_check.h"

#define GRID_DIM_MAX 65535 /* cuLaunchKernel's limit on grid.y (H) and grid.z (B) */
#define ROW_VEC_BYTES 16   /* q, k, v and o rows move 16 bytes at a time (cp.async, ldmatrix) */
#define ROW_VEC_ELEMS 8    /* ... that is 8 fp16/bf16 elements */

static const char *const q_dims[] = {"B", "Lq", "H", "D"};
static const char *const kv_dims[] = {"B", "Lk", "Hkv", "D"};

static size_t dtype_bytes(dm_dtype t)
{
    switch (t) {
    case DM_F16:
    case DM_BF16:
        return 2;
    case DM_F32:
    case DM_I32:
        return 4;
    case DM_BOOL:
        return 1;
    case DM_DTYPE_NONE:
        break;
    }
    return 1;
}

/* "(2, 5, 8, 64)" for messages. */
static const char *format_dims(const int64_t *v, int n, char *buf, size_t bytes)
{
    size_t used = 0;

    buf[0] = '\0';
    for (int d = 0; d < n && used < bytes; d++) {
        int w = snprintf(buf + used, bytes - used, "%s%" PRId64 "%s", d ? ", " : "(", v[d],
                         d == n - 1 ? ")" : "");
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return buf;
}

static dm_status check_rank(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                            int rank, const char *dims)
{
    if (t->rank != rank)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: %s.rank = %d: expected %d %s", call, name,
                            t->rank, rank, dims);
    return DM_OK;
}

static dm_status check_required(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                                const char *dims)
{
    if (!t->data)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: %s.data is NULL: expected a pointer",
                            call, name);
    return check_rank(ctx, call, name, t, 4, dims);
}

/* An optional tensor is absent when data == NULL and rank == 0; anything in between is a mistake
 * (a forgotten pointer or a forgotten shape) and is reported rather than guessed at. */
static dm_status check_optional(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                                int rank, const char *dims, bool *present)
{
    *present = false;
    if (!t->data && t->rank == 0)
        return DM_OK;
    if (!t->data)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s.data is NULL but %s.rank = %d: an absent %s has data NULL and "
                            "rank 0",
                            call, name, name, t->rank, name);
    if (t->rank == 0)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s.rank = 0 but %s.data is set: expected rank %d %s, or data "
                            "NULL for no %s",
                            call, name, name, rank, dims, name);
    *present = true;
    return check_rank(ctx, call, name, t, rank, dims);
}

static dm_status check_same_dtype(dm_ctx *ctx, const char *call, const char *name,
                                  const dm_tensor *t, dm_dtype want)
{
    if (t->dtype != want)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: %s.dtype = %s: expected q's dtype %s",
                            call, name, dm_dtype_name(t->dtype), dm_dtype_name(want));
    return DM_OK;
}

static dm_status check_sizes(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                             const char *const *labels)
{
    for (int d = 0; d < t->rank; d++)
        if (t->shape[d] < 1)
            return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                                "%s: %s.shape[%d] (%s) = %" PRId64 ": expected >= 1", call, name, d,
                                labels[d], t->shape[d]);
    return DM_OK;
}

static dm_status check_same_shape(dm_ctx *ctx, const char *call, const char *name,
                                  const dm_tensor *t, const char *ref_name, const dm_tensor *ref)
{
    for (int d = 0; d < 4; d++)
        if (t->shape[d] != ref->shape[d])
            return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                                "%s: %s.shape[%d] = %" PRId64 ": expected %s.shape[%d] = %" PRId64
                                " (%s has %s's shape)",
                                call, name, d, t->shape[d], ref_name, d, ref->shape[d], name,
                                ref_name);
    return DM_OK;
}

/* Largest element offset, then byte extent, in int64 with overflow checks; the end address must
 * not wrap either. Runs after the strides are known to be non-negative. */
static dm_status check_extent(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t)
{
    int64_t last = 0, term, bytes;
    char shape[128], strides[128];

    for (int d = 0; d < t->rank; d++)
        if (__builtin_mul_overflow(t->shape[d] - 1, t->strides[d], &term) ||
            __builtin_add_overflow(last, term, &last))
            goto overflow;
    if (__builtin_add_overflow(last, (int64_t)1, &bytes) ||
        __builtin_mul_overflow(bytes, (int64_t)dtype_bytes(t->dtype), &bytes))
        goto overflow;
    if ((uint64_t)(uintptr_t)t->data > UINT64_MAX - (uint64_t)bytes)
        goto overflow;
    return DM_OK;
overflow:
    return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                        "%s: %s.strides = %s with %s.shape = %s: the last element's offset "
                        "overflows int64 (or the address space)",
                        call, name, format_dims(t->strides, t->rank, strides, sizeof strides), name,
                        format_dims(t->shape, t->rank, shape, sizeof shape));
}

/* Every element of an output needs its own address: no stride 0 on a dimension of size > 1, and,
 * taking dimensions from the smallest stride up, each stride must step past everything the
 * smaller ones span. Runs after check_extent, so the spans cannot overflow. */
static dm_status check_no_overlap(dm_ctx *ctx, const char *call, const char *name,
                                  const dm_tensor *t)
{
    int order[DM_MAX_RANK], n = 0;

    for (int d = 0; d < t->rank; d++) {
        if (t->shape[d] <= 1)
            continue;
        if (t->strides[d] == 0)
            return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                                "%s: %s.strides[%d] = 0 with %s.shape[%d] = %" PRId64
                                ": an output cannot broadcast (elements would be written twice); "
                                "expected > 0",
                                call, name, d, name, d, t->shape[d]);
        int i = n++;
        while (i > 0 && t->strides[order[i - 1]] > t->strides[d]) {
            order[i] = order[i - 1];
            i--;
        }
        order[i] = d;
    }
    int64_t span = 1; /* elements covered by the dimensions taken so far */
    for (int i = 0; i < n; i++) {
        int d = order[i];
        if (t->strides[d] < span)
            return dm_set_error(
                ctx, DM_ERR_INVALID_ARG,
                "%s: %s.strides[%d] = %" PRId64 " overlaps %s.strides[%d] = %" PRId64
                ": elements of an output would share an address",
                call, name, d, t->strides[d], name, order[i - 1], t->strides[order[i - 1]]);
        span += (t->shape[d] - 1) * t->strides[d];
    }
    return DM_OK;
}

typedef enum tensor_role {
    ROLE_ROWS,     /* q, k, v: 16-byte rows */
    ROLE_ROWS_OUT, /* o */
    ROLE_KEYS,     /* mask, bias: contiguous keys, element-aligned */
    ROLE_OUT,      /* lse: element-aligned */
} tensor_role;

static dm_status check_layout(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                              tensor_role role)
{
    size_t elem = dtype_bytes(t->dtype);
    int last = t->rank - 1;
    bool rows = role == ROLE_ROWS || role == ROLE_ROWS_OUT;
    dm_status st;

    for (int d = 0; d < t->rank; d++)
        if (t->strides[d] < 0)
            return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                                "%s: %s.strides[%d] = %" PRId64 ": expected >= 0", call, name, d,
                                t->strides[d]);
    if ((rows || role == ROLE_KEYS) && t->strides[last] != 1 && t->shape[last] > 1)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s.strides[%d] = %" PRId64
                            ": expected 1 (the last dimension must be contiguous)",
                            call, name, last, t->strides[last]);
    if (rows) {
        if ((uintptr_t)t->data % ROW_VEC_BYTES != 0)
            return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                                "%s: %s.data = %p is not %d-byte aligned: rows are read %d bytes "
                                "at a time",
                                call, name, t->data, ROW_VEC_BYTES, ROW_VEC_BYTES);
        for (int d = 0; d < last; d++)
            if (t->shape[d] > 1 && t->strides[d] % ROW_VEC_ELEMS != 0)
                return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                                    "%s: %s.strides[%d] = %" PRId64
                                    " is not a multiple of %d elements: rows are read %d bytes at "
                                    "a time",
                                    call, name, d, t->strides[d], ROW_VEC_ELEMS, ROW_VEC_BYTES);
    } else if ((uintptr_t)t->data % elem != 0) {
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s.data = %p is not aligned to its %zu-byte %s elements", call,
                            name, t->data, elem, dm_dtype_name(t->dtype));
    }
    if ((st = check_extent(ctx, call, name, t)) != DM_OK)
        return st;
    if (role == ROLE_ROWS_OUT || role == ROLE_OUT)
        return check_no_overlap(ctx, call, name, t);
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

static void plan_rows(const dm_tensor *t, int64_t out[3])
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
    memset(&p, 0, sizeof p);

    /* Presence and rank. */
    if ((st = check_required(ctx, call, "q", q, "(B, Lq, H, D)")) != DM_OK ||
        (st = check_required(ctx, call, "k", k, "(B, Lk, Hkv, D)")) != DM_OK ||
        (st = check_required(ctx, call, "v", v, "(B, Lk, Hkv, D)")) != DM_OK ||
        (st = check_required(ctx, call, "o", o, "(B, Lq, H, D)")) != DM_OK ||
        (st = check_optional(ctx, call, "mask", &args->mask, 4, "({B|1}, {H|Hkv|1}, {Lq|1}, Lk)",
                             &has_mask)) != DM_OK ||
        (st = check_optional(ctx, call, "bias", &args->bias, 4, "({B|1}, {H|Hkv|1}, {Lq|1}, Lk)",
                             &has_bias)) != DM_OK ||
        (st = check_optional(ctx, call, "lse", &args->lse, 3, "(B, H, Lq)", &p.has_lse)) != DM_OK)
        return st;

    /* Dtypes. */
    if (q->dtype != DM_F16 && q->dtype != DM_BF16)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: q.dtype = %s: expected f16 or bf16", call,
                            dm_dtype_name(q->dtype));
    if ((st = check_same_dtype(ctx, call, "k", k, q->dtype)) != DM_OK ||
        (st = check_same_dtype(ctx, call, "v", v, q->dtype)) != DM_OK ||
        (st = check_same_dtype(ctx, call, "o", o, q->dtype)) != DM_OK)
        return st;
    if (has_mask && args->mask.dtype != DM_BOOL)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: mask.dtype = %s: expected bool", call,
                            dm_dtype_name(args->mask.dtype));
    if (has_bias && args->bias.dtype != q->dtype && args->bias.dtype != DM_F32)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: bias.dtype = %s: expected q's dtype %s or f32", call,
                            dm_dtype_name(args->bias.dtype), dm_dtype_name(q->dtype));
    if (p.has_lse && args->lse.dtype != DM_F32)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: lse.dtype = %s: expected f32", call,
                            dm_dtype_name(args->lse.dtype));

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
    if (p.D < DM_HEAD_DIM_MIN || p.D % DM_HEAD_DIM_STEP != 0 || p.D > DM_HEAD_DIM_MAX)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: q.shape[3] (D) = %" PRId64
                            ": expected a multiple of %d from %d to %d",
                            call, p.D, DM_HEAD_DIM_STEP, DM_HEAD_DIM_MIN, DM_HEAD_DIM_MAX);
    if (k->shape[0] != p.B)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: k.shape[0] (B) = %" PRId64
                            " does not match q.shape[0] (B) = %" PRId64,
                            call, k->shape[0], p.B);
    if (k->shape[3] != p.D)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: k.shape[3] (D) = %" PRId64
                            " does not match q.shape[3] (D) = %" PRId64,
                            call, k->shape[3], p.D);
    if ((st = check_same_shape(ctx, call, "v", v, "k", k)) != DM_OK ||
        (st = check_same_shape(ctx, call, "o", o, "q", q)) != DM_OK)
        return st;
    if (p.H % p.Hkv != 0)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: k.shape[2] (Hkv) = %" PRId64
                            " does not divide q.shape[2] (H) = %" PRId64,
                            call, p.Hkv, p.H);
    if (p.B > GRID_DIM_MAX)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: q.shape[0] (B) = %" PRId64
                            ": expected at most %d (kernels launch one grid.z block per batch)",
                            call, p.B, GRID_DIM_MAX);
    if (p.H > GRID_DIM_MAX)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: q.shape[2] (H) = %" PRId64
                            ": expected at most %d (kernels launch one grid.y block per head)",
                            call, p.H, GRID_DIM_MAX);
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
    if (has_mask && (st = check_broadcast(ctx, call, "mask", &args->mask, &p, &p.mask_layout,
                                          &p.mask_head_div, p.mask_stride)) != DM_OK)
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
    if ((st = check_layout(ctx, call, "q", q, ROLE_ROWS)) != DM_OK ||
        (st = check_layout(ctx, call, "k", k, ROLE_ROWS)) != DM_OK ||
        (st = check_layout(ctx, call, "v", v, ROLE_ROWS)) != DM_OK ||
        (st = check_layout(ctx, call, "o", o, ROLE_ROWS_OUT)) != DM_OK)
        return st;
    if (has_mask && (st = check_layout(ctx, call, "mask", &args->mask, ROLE_KEYS)) != DM_OK)
        return st;
    if (has_bias && (st = check_layout(ctx, call, "bias", &args->bias, ROLE_KEYS)) != DM_OK)
        return st;
    if (p.has_lse && (st = check_layout(ctx, call, "lse", &args->lse, ROLE_OUT)) != DM_OK)
        return st;

    /* Scalars. */
    if (!isfinite(args->scale) || args->scale < 0)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: scale = %g: expected a finite value >= 0 (0 = 1/sqrt(D))", call,
                            (double)args->scale);
    if (!isfinite(args->softcap) || args->softcap < 0)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: softcap = %g: expected a finite value >= 0 (0 = off)", call,
                            (double)args->softcap);
    if (args->causal != 0 && args->causal != 1)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: causal = %d: expected 0 or 1", call,
                            args->causal);
    if (args->window < 0)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: window = %d: expected >= 0 (0 = no window)", call, args->window);
    /* window > 0 is applied by dm_fwd through dm_window_mask (fwd_window.c), which checks
     * bias and mask against its own rules (SPEC §4) before anything runs. */

    p.dtype = q->dtype;
    p.scale = args->scale != 0 ? args->scale : (float)(1.0 / sqrt((double)p.D));
    p.softcap = args->softcap;
    p.causal = args->causal != 0;
    plan_rows(q, p.q_stride);
    plan_rows(k, p.k_stride);
    plan_rows(v, p.v_stride);
    plan_rows(o, p.o_stride);
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

/* The same per-tensor rules for the window-mask helper (window_mask_check.c), so that both entry
 * points word and enforce them alike. */
dm_status dm_check_input_keys(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t)
{
    return check_layout(ctx, call, name, t, ROLE_KEYS);
}

dm_status dm_check_output_elems(dm_ctx *ctx, const char *call, const char *name,
                                const dm_tensor *t)
{
    return check_layout(ctx, call, name, t, ROLE_OUT);
}

dm_status dm_check_optional(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                            int rank, const char *dims, bool *present)
{
    return check_optional(ctx, call, name, t, rank, dims, present);
}
