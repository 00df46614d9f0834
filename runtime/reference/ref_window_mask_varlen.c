/* ref_window_mask_varlen.c: the CPU reference of dm_window_mask_varlen (dmattn.h): per out row, b'
 * gathered from the row's own sequence's keys, then the dense reference's row selection
 * (dm_ref_wmask_row), so the two helpers cannot disagree about SPEC §4. Host buffers, cu_seqlens
 * included; for tests and tools, not for speed. */
#include <stdlib.h>

#include "reference.h"

#define CALL "dm_ref_window_mask_varlen"

/* One row: its token (the query's index, or for a key-based out the sequence's first key), head
 * and its sequence's first key k0 and key count n. */
typedef struct row_pos {
    int64_t t, h, k0, n;
} row_pos;

/* Offset of (row, key j) in a tensor of `layout` with plan strides {token, head, key}. */
static int64_t offset(dm_layout layout, const int64_t s[3], const row_pos *r, int64_t j)
{
    return (layout == DM_LAYOUT_Q ? r->t : r->k0) * s[0] + r->h * s[1] + j * s[2];
}

static void one_row(const dm_window_mask_varlen_args *a, const dm_wmask_varlen_plan *p,
                    const row_pos *r, dm_ref_ranked *row)
{
    const unsigned char *mask = a->mask.data;
    unsigned char *out = (unsigned char *)a->out.data + offset(p->out_layout, p->out_stride, r, 0);
    int64_t step = p->out_stride[2], cols = p->out_layout == DM_LAYOUT_K ? r->n : p->max_seqlen_k;

    for (int64_t j = r->n; j < cols; j++) /* past the sequence's keys: false */
        out[j * step] = 0;
    if (r->n <= p->window) { /* the window keeps every key: the mask stands */
        for (int64_t j = 0; j < r->n; j++)
            out[j * step] = p->mask_layout == DM_LAYOUT_NONE ||
                            mask[offset(p->mask_layout, p->mask_stride, r, j)] != 0;
        return;
    }
    for (int64_t j = 0; j < r->n; j++) {
        bool visible = p->mask_layout == DM_LAYOUT_NONE ||
                       mask[offset(p->mask_layout, p->mask_stride, r, j)] != 0;
        row[j].value = visible ? dm_ref_value_at(p->bias_dtype, a->bias.data,
                                                      offset(p->bias_layout, p->bias_stride, r, j))
                               : p->min_value;
    }
    dm_ref_wmask_row(row, r->n, p->window, p->relu, p->block_size, p->min_value, out, step);
}

/* Sequence s's keys: from cu_seqlens_k[s], at most max_seqlen_k of them (as the kernels clamp). */
static void keys_of(const int32_t *cu_k, int64_t s, int64_t max_k, row_pos *r)
{
    r->k0 = cu_k[s];
    r->n = cu_k[s + 1] - cu_k[s];
    if (r->n > max_k)
        r->n = max_k;
}

dm_status dm_ref_window_mask_varlen(dm_ctx *ctx, const dm_window_mask_varlen_args *host_args,
                                    int *applied)
{
    dm_wmask_varlen_plan p;
    dm_ref_ranked *row = NULL;

    if (!ctx)
        return DM_ERR_INVALID_ARG;
    dm_clear_error(ctx);
    if (!applied)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, CALL ": applied is NULL");
    *applied = 0;
    dm_status st = dm_wmask_varlen_check(ctx, CALL, host_args, true, &p);
    if (st != DM_OK || !p.applied)
        return st;
    const int32_t *cu_q = host_args->cu_seqlens_q.data, *cu_k = host_args->cu_seqlens_k.data;
    if ((st = dm_ref_check_cu_seqlens(ctx, CALL, "cu_seqlens_q", cu_q, p.B, p.total_q)) != DM_OK ||
        (st = dm_ref_check_cu_seqlens(ctx, CALL, "cu_seqlens_k", cu_k, p.B, p.total_k)) != DM_OK)
        return st;
    row = malloc((size_t)(p.max_seqlen_k > 0 ? p.max_seqlen_k : 1) * sizeof *row);
    if (!row)
        return dm_set_error(ctx, DM_ERR_NOMEM, CALL ": out of memory for max_seqlen_k = %lld",
                            (long long)p.max_seqlen_k);
    row_pos r;
    if (p.out_layout == DM_LAYOUT_K) { /* one row per (sequence, head) */
        for (int64_t s = 0; s < p.B; s++)
            for (r.h = 0; r.h < p.heads; r.h++) {
                keys_of(cu_k, s, p.max_seqlen_k, &r);
                r.t = r.k0;
                one_row(host_args, &p, &r, row);
            }
    } else { /* one row per (query token, head); a token no sequence holds: all false */
        for (r.t = 0; r.t < p.total_q; r.t++) {
            int64_t s = -1;
            for (int64_t b = 0; b < p.B; b++)
                if (cu_q[b] <= r.t && r.t < cu_q[b + 1])
                    s = b;
            for (r.h = 0; r.h < p.heads; r.h++) {
                r.k0 = 0;
                r.n = 0;
                if (s >= 0)
                    keys_of(cu_k, s, p.max_seqlen_k, &r);
                one_row(host_args, &p, &r, row);
            }
        }
    }
    free(row);
    *applied = 1;
    return DM_OK;
}
