/* ref_window_mask.c: the CPU reference of the top-k window mask (SPEC §4). It works on the values, not
 * on the kernel's integer images: each row's b' is sorted (value descending, NaN first, then key
 * index ascending) and the first `window` are kept. Reads and writes host pointers only, laid out
 * as dm_wmask_check's plan says; for tests and tools, not for speed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "reference.h"

typedef dm_ref_ranked ranked;

/* Larger first; NaN above everything (torch.topk's order); -0 == +0; equal values by index. */
static int cmp_ranked(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    bool na = isnan(a->value), nb = isnan(b->value);
    if (na != nb)
        return na ? -1 : 1;
    if (!na && a->value != b->value)
        return a->value > b->value ? -1 : 1;
    return a->j < b->j ? -1 : a->j > b->j;
}

double dm_ref_value_at(dm_dtype dtype, const void *t, int64_t off)
{
    switch (dtype) {
    case DM_F16:
        return dm_half_to_float(((const uint16_t *)t)[off]);
    case DM_BF16:
        return dm_bf16_to_float(((const uint16_t *)t)[off]);
    default:
        return ((const float *)t)[off];
    }
}

/* Majority vote over aligned blocks; the tail block votes over its own length. */
static void smooth_row(unsigned char *out, int64_t out_step, int64_t Lk, int64_t block)
{
    for (int64_t j0 = 0; j0 < Lk; j0 += block) {
        int64_t len = Lk - j0 < block ? Lk - j0 : block, on = 0;
        for (int64_t j = j0; j < j0 + len; j++)
            on += out[j * out_step] != 0;
        for (int64_t j = j0; j < j0 + len; j++)
            out[j * out_step] = 2 * on > len;
    }
}

void dm_ref_wmask_row(ranked *row, int64_t n, int window, bool relu, int block_size,
                      double min_value, unsigned char *out, int64_t out_step)
{
    for (int64_t j = 0; j < n; j++)
        row[j].j = j;
    if (relu) {
        for (int64_t j = 0; j < n; j++)
            out[j * out_step] = row[j].value > 0;
    } else {
        for (int64_t j = 0; j < n; j++)
            out[j * out_step] = 0;
        qsort(row, (size_t)n, sizeof *row, cmp_ranked);
        for (int64_t k = 0; k < window && k < n; k++)
            out[row[k].j * out_step] = row[k].value != min_value; /* NaN != min: kept */
    }
    if (block_size > 0)
        smooth_row(out, out_step, n, block_size);
}

dm_status dm_ref_window_mask(dm_ctx *ctx, const dm_window_mask_args *host_args, int *applied)
{
    dm_wmask_plan p;
    ranked *row = NULL;
    if (!ctx)
        return DM_ERR_INVALID_ARG;
    dm_clear_error(ctx);
    if (!applied)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "dm_ref_window_mask: applied is NULL");
    *applied = 0;
    dm_status st = dm_wmask_check(ctx, "dm_ref_window_mask", host_args, true, &p);
    if (st != DM_OK || !p.applied)
        return st;
    const dm_window_mask_args *a = host_args;
    row = malloc((size_t)p.Lk * sizeof *row);
    if (!row)
        return dm_set_error(ctx, DM_ERR_NOMEM, "dm_ref_window_mask: out of memory for Lk = %lld",
                            (long long)p.Lk);
    const unsigned char *mask = a->mask.data;
    unsigned char *out_base = a->out.data;

    for (int64_t b = 0; b < p.out_shape[0]; b++)
        for (int64_t h = 0; h < p.out_shape[1]; h++)
            for (int64_t i = 0; i < p.out_shape[2]; i++) {
                int64_t boff = b * p.bias_stride[0] + h * p.bias_stride[1] + i * p.bias_stride[2];
                int64_t moff = b * p.mask_stride[0] + h * p.mask_stride[1] + i * p.mask_stride[2];
                unsigned char *out =
                    out_base + b * p.out_stride[0] + h * p.out_stride[1] + i * p.out_stride[2];
                for (int64_t j = 0; j < p.Lk; j++) {
                    bool visible = p.mask_layout == DM_LAYOUT_NONE || j < p.mask_pad ||
                                   mask[moff + j - p.mask_pad] != 0;
                    row[j].value = visible ? dm_ref_value_at(p.bias_dtype, a->bias.data,
                                                                  boff + j)
                                           : p.min_value;
                }
                dm_ref_wmask_row(row, p.Lk, p.window, p.relu, p.block_size, p.min_value, out, 1);
            }
    free(row);
    *applied = 1;
    return DM_OK;
}
