/* tensor_check.c: the per-tensor rules every entry point's check applies alike (presence, rank,
 * dtype, strides, alignment, extent, output overlap), each writing a message that names call and
 * tensor. Reads only the descriptors: the pointers may be device pointers and are never
 * dereferenced. The rules of one call (shapes against each other) stay in its own check file. */
#include <inttypes.h>
#include <stdio.h>

#include "tensor_check.h"

#define ROW_VEC_BYTES 16 /* q, k, v and o rows move 16 bytes at a time (cp.async, ldmatrix) */
#define ROW_VEC_ELEMS 8  /* ... that is 8 fp16/bf16 elements */

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

const char *dm_format_dims(const int64_t *v, int n, char *buf, size_t bytes)
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

/* NULL data is a tensor with no elements (PyTorch hands out NULL for those) when the rank is the
 * expected one and a dimension is 0; nothing behind it is ever read or written. The rank is
 * compared first, so only shape entries that exist are looked at. */
static bool null_but_empty(const dm_tensor *t, int rank)
{
    if (t->data || t->rank != rank)
        return false;
    for (int d = 0; d < rank; d++)
        if (t->shape[d] == 0)
            return true;
    return false;
}

dm_status dm_check_required(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                            int rank, const char *dims)
{
    if (!t->data && !null_but_empty(t, rank))
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s.data is NULL: expected a pointer (NULL only for a tensor with "
                            "a dimension of size 0)",
                            call, name);
    return check_rank(ctx, call, name, t, rank, dims);
}

/* An optional tensor is absent when data == NULL and rank == 0; anything in between is a mistake
 * (a forgotten pointer or a forgotten shape) and is reported rather than guessed at. A present
 * tensor with no elements may have data NULL, as a required one may. */
dm_status dm_check_optional(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                            int rank, const char *dims, bool *present)
{
    *present = false;
    if (!t->data && t->rank == 0)
        return DM_OK;
    if (!t->data && !null_but_empty(t, rank))
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s.data is NULL but %s.rank = %d: an absent %s has data NULL and "
                            "rank 0 (a present one data NULL only with a dimension of size 0)",
                            call, name, name, t->rank, name);
    if (t->rank == 0)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s.rank = 0 but %s.data is set: expected rank %d %s, or data "
                            "NULL for no %s",
                            call, name, name, rank, dims, name);
    *present = true;
    return check_rank(ctx, call, name, t, rank, dims);
}

dm_status dm_check_same_dtype(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                              dm_dtype want)
{
    if (t->dtype != want)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: %s.dtype = %s: expected q's dtype %s",
                            call, name, dm_dtype_name(t->dtype), dm_dtype_name(want));
    return DM_OK;
}

dm_status dm_check_same_shape(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                              const char *ref_name, const dm_tensor *ref)
{
    for (int d = 0; d < t->rank; d++)
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
                        call, name, dm_format_dims(t->strides, t->rank, strides, sizeof strides),
                        name, dm_format_dims(t->shape, t->rank, shape, sizeof shape));
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
    ROLE_ELEMS,    /* an input read element by element (varlen key-based mask, bias) */
    ROLE_OUT,      /* lse: element-aligned */
    ROLE_KEYS_OUT, /* a varlen query-based dbias: contiguous keys, element-aligned */
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
    if ((rows || role == ROLE_KEYS || role == ROLE_KEYS_OUT) && t->strides[last] != 1 &&
        t->shape[last] > 1)
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
    /* A tensor with no elements (a varlen total of 0, a dense batch or length of 0) spans no memory
     * and writes nothing twice, whatever its strides (and may be NULL: null_but_empty). */
    for (int d = 0; d < t->rank; d++)
        if (t->shape[d] == 0)
            return DM_OK;
    if ((st = check_extent(ctx, call, name, t)) != DM_OK)
        return st;
    if (role == ROLE_ROWS_OUT || role == ROLE_OUT || role == ROLE_KEYS_OUT)
        return check_no_overlap(ctx, call, name, t);
    return DM_OK;
}

dm_status dm_check_input_rows(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t)
{
    return check_layout(ctx, call, name, t, ROLE_ROWS);
}

dm_status dm_check_output_rows(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t)
{
    return check_layout(ctx, call, name, t, ROLE_ROWS_OUT);
}

dm_status dm_check_input_keys(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t)
{
    return check_layout(ctx, call, name, t, ROLE_KEYS);
}

dm_status dm_check_input_elems(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t)
{
    return check_layout(ctx, call, name, t, ROLE_ELEMS);
}

dm_status dm_check_output_elems(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t)
{
    return check_layout(ctx, call, name, t, ROLE_OUT);
}

dm_status dm_check_bwd_grads(dm_ctx *ctx, const char *call, int rank,
                             const dm_tensor *const grads[4], const dm_tensor *const likes[4])
{
    static const char *const names[4] = {"dout", "dq", "dk", "dv"};
    static const char *const like_names[4] = {"o", "q", "k", "v"};
    const dm_dtype dtype = likes[1]->dtype;
    dm_status st;

    for (int t = 0; t < 4; t++) {
        char dims[64];
        snprintf(dims, sizeof dims, "%s's shape", like_names[t]);
        if ((st = dm_check_required(ctx, call, names[t], grads[t], rank, dims)) != DM_OK ||
            (st = dm_check_same_dtype(ctx, call, names[t], grads[t], dtype)) != DM_OK ||
            (st = dm_check_same_shape(ctx, call, names[t], grads[t], like_names[t], likes[t])) !=
                DM_OK ||
            (st = check_layout(ctx, call, names[t], grads[t], t ? ROLE_ROWS_OUT : ROLE_ROWS)) !=
                DM_OK)
            return st;
    }
    return DM_OK;
}

dm_status dm_check_bias_grad(dm_ctx *ctx, const char *call, const dm_tensor *dbias,
                             const dm_tensor *bias, bool has_bias, bool contiguous_keys,
                             bool *present)
{
    dm_status st;
    *present = false;
    if ((dbias->data || dbias->rank) && !has_bias)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: dbias is given but bias is absent: expected no dbias", call);
    if ((st = dm_check_optional(ctx, call, "dbias", dbias, bias->rank, "bias's shape", present)) !=
            DM_OK ||
        !*present)
        return st;
    if (dbias->dtype != bias->dtype)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: dbias.dtype = %s: expected bias's dtype %s", call,
                            dm_dtype_name(dbias->dtype), dm_dtype_name(bias->dtype));
    if ((st = dm_check_same_shape(ctx, call, "dbias", dbias, "bias", bias)) != DM_OK)
        return st;
    return check_layout(ctx, call, "dbias", dbias, contiguous_keys ? ROLE_KEYS_OUT : ROLE_OUT);
}
