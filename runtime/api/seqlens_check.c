/* seqlens_check.c: the cu_seqlens / max_seqlen rules of a varlen call (seqlens_check.h). Reads
 * only the descriptors: cu_seqlens are device memory and never dereferenced. */
#include <inttypes.h>

#include "gen.h"
#include "seqlens_check.h"
#include "tensor_check.h"

dm_status dm_check_cu_seqlens(dm_ctx *ctx, const char *call, const dm_tensor *cu_q,
                              const dm_tensor *cu_k, int64_t *B)
{
    dm_status st;

    if ((st = dm_check_required(ctx, call, "cu_seqlens_q", cu_q, 1, "(B + 1)")) != DM_OK ||
        (st = dm_check_required(ctx, call, "cu_seqlens_k", cu_k, 1, "(B + 1)")) != DM_OK)
        return st;
    if (cu_q->dtype != DM_I32)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: cu_seqlens_q.dtype = %s: expected i32",
                            call, dm_dtype_name(cu_q->dtype));
    if (cu_k->dtype != DM_I32)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: cu_seqlens_k.dtype = %s: expected i32",
                            call, dm_dtype_name(cu_k->dtype));
    if (cu_q->shape[0] < 2)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: cu_seqlens_q.shape[0] = %" PRId64
                            ": expected B + 1 >= 2 (B >= 1 sequences, offsets from 0 to total_q)",
                            call, cu_q->shape[0]);
    if (cu_q->shape[0] > INT32_MAX)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: cu_seqlens_q.shape[0] = %" PRId64 ": expected at most %d", call,
                            cu_q->shape[0], INT32_MAX);
    if (cu_k->shape[0] != cu_q->shape[0])
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: cu_seqlens_k.shape[0] = %" PRId64 ": expected B + 1 = %" PRId64
                            " (cu_seqlens_q's length)",
                            call, cu_k->shape[0], cu_q->shape[0]);
    if ((st = dm_check_input_keys(ctx, call, "cu_seqlens_q", cu_q)) != DM_OK ||
        (st = dm_check_input_keys(ctx, call, "cu_seqlens_k", cu_k)) != DM_OK)
        return st;
    *B = cu_q->shape[0] - 1;
    return DM_OK;
}

dm_status dm_check_max_seqlen(dm_ctx *ctx, const char *call, const char *name, int64_t max,
                              const char *total_name, int64_t total, int64_t B)
{
    int64_t least = (total + B - 1) / B; /* 0 <= total <= INT32_MAX, 1 <= B < INT32_MAX */

    if (max < 0)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: %s = %" PRId64 ": expected >= 0", call,
                            name, max);
    if (max > total)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s = %" PRId64 ": expected at most %s = %" PRId64
                            " (a sequence cannot be longer than the whole batch)",
                            call, name, max, total_name, total);
    if (max < least)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s = %" PRId64 ": expected at least ceil(%s / B) = %" PRId64
                            " (B = %" PRId64 " sequences share %s = %" PRId64
                            ", so the longest holds at least that many)",
                            call, name, max, total_name, least, B, total_name, total);
    return DM_OK;
}

dm_status dm_check_varlen_layout_rank(dm_ctx *ctx, const char *call, const char *name,
                                      const dm_tensor *t, bool *present)
{
    char shape[128];

    if (t->data && t->rank != 0 && t->rank != 2 && t->rank != 3) {
        if (t->rank < 1 || t->rank > DM_MAX_RANK)
            return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: %s.rank = %d: expected %s", call,
                                name, t->rank, DM_VARLEN_LAYOUTS);
        return dm_set_error(
            ctx, DM_ERR_INVALID_ARG, "%s: %s.rank = %d with %s.shape = %s: expected %s", call, name,
            t->rank, name, dm_format_dims(t->shape, t->rank, shape, sizeof shape),
            DM_VARLEN_LAYOUTS);
    }
    return dm_check_optional(ctx, call, name, t, t->rank == 2 ? 2 : 3,
                             "(total_q, Hm, max_seqlen_k) or rank 2 (total_k, Hm)", present);
}

dm_status dm_check_varlen_layout_rows(dm_ctx *ctx, const char *call, const char *name,
                                      const dm_tensor *t, int64_t total_q, int64_t total_k)
{
    bool by_query = t->rank == 3;
    int64_t rows = by_query ? total_q : total_k;
    char shape[128];

    if (t->shape[0] != rows)
        return dm_set_error(
            ctx, DM_ERR_INVALID_ARG,
            "%s: %s.shape[0] = %" PRId64 " with %s.shape = %s: expected %s = %" PRId64
            " (the rank picks the layout: %s)",
            call, name, t->shape[0], name, dm_format_dims(t->shape, t->rank, shape, sizeof shape),
            by_query ? "total_q" : "total_k", rows, DM_VARLEN_LAYOUTS);
    return DM_OK;
}
