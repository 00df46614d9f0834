/* bwd_maps.c: the backward's tensor maps (bwd_maps.h). */
#include "bwd_maps.h"

#include <string.h>

/* A tensor of es-byte elements (b, row, head, column) with element strides stride[] = {batch,
 * row, head} and dims {columns, rows, heads, batches} as a rank-4 map (column, row, head, batch)
 * of boxes 128 bytes of columns wide, box_rows rows. The unit steps each dimension by a multiple
 * of 16 bytes; a dimension of one element is never stepped, so its stride (0 where the tensor
 * broadcasts) is replaced by the packed one. Returns whether the driver accepted it. */
static int encode(const dm_driver *drv, CUtensorMap *map, uint64_t base, int es,
                  const int64_t stride[3], const cuuint64_t dims[4], int box_rows)
{
    const int64_t step[3] = {stride[1], stride[2], stride[0]}; /* elements, dims 1..3 */
    const int64_t unit = 16 / es;                              /* elements of 16 bytes */
    cuuint64_t bytes[3];
    int64_t packed = (int64_t)dims[0];
    for (int i = 0; i < 3; i++) {
        const int64_t s = dims[i + 1] > 1 ? step[i] : (packed + unit - 1) / unit * unit;
        if (s <= 0 || s % unit != 0)
            return 0;
        bytes[i] = (cuuint64_t)(s * es);
        packed = s * (int64_t)dims[i + 1];
    }
    if (base % 16 != 0 || !drv->TensorMapEncodeTiled)
        return 0;
    const cuuint32_t box[4] = {(cuuint32_t)(128 / es), (cuuint32_t)box_rows, 1, 1},
                     one[4] = {1, 1, 1, 1};
    return drv->TensorMapEncodeTiled(
               map, es == 4 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT32 : CU_TENSOR_MAP_DATA_TYPE_UINT16, 4,
               (void *)(uintptr_t)base, dims, bytes, box, one, CU_TENSOR_MAP_INTERLEAVE_NONE,
               CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

/* bias (or dbias, whose strides and sizes p also gives) of a query-layout bias: rows of Lk keys,
 * contiguous, Lq of them; heads and batches as stored. */
static int encode_bias(const dm_driver *drv, CUtensorMap *map, uint64_t base,
                       const int64_t stride[3], int64_t key_stride, int heads, int batches,
                       const dm_bwd_params *p, int box_rows)
{
    const cuuint64_t dims[4] = {(cuuint64_t)p->Lk, (cuuint64_t)p->Lq, (cuuint64_t)heads,
                                (cuuint64_t)batches};
    const int64_t s[3] = {stride[0], stride[2], stride[1]}; /* batch, row, head */
    return key_stride == 1 && encode(drv, map, base, p->bias_f32 ? 4 : 2, s, dims, box_rows);
}

void dm_bwd_maps_fill(const dm_driver *drv, const dm_bwd_params *p, int head_dim, int box_rows,
                      bool bias_tiles, dm_bwd_maps *m)
{
    const cuuint64_t dims[4] = {(cuuint64_t)head_dim, (cuuint64_t)p->Lq, (cuuint64_t)p->H,
                                (cuuint64_t)p->B};
    memset(m, 0, sizeof *m);
    /* dq's scratch: fp32 (B, H, Lq, head_dim), packed (bwd_launch.h) */
    const int64_t dq_stride[3] = {(int64_t)p->H * p->Lq * head_dim, head_dim,
                                  (int64_t)p->Lq * head_dim};
    m->tma = encode(drv, &m->q, p->q, 2, p->q_stride, dims, box_rows) &&
             encode(drv, &m->dout, p->dout, 2, p->dout_stride, dims, box_rows) &&
             (!p->dq_accum || head_dim % 32 != 0 ||
              encode(drv, &m->dq, p->dq_accum, 4, dq_stride, dims, box_rows));
    if (!m->tma || !bias_tiles || !p->bias)
        return;
    /* stored heads: H / bias_head_div (1 where bias broadcasts: bias_head_div = H) */
    const int bias_batches = p->bias_stride[0] != 0 ? p->B : 1;
    m->bias_batch_step = p->bias_stride[0] != 0;
    m->bias_tma = encode_bias(drv, &m->bias, p->bias, p->bias_stride, p->bias_key_stride,
                              (int)(p->H / p->bias_head_div), bias_batches, p, box_rows) &&
                  (!p->dbias || !p->dbias_fused ||
                   encode_bias(drv, &m->dbias, p->dbias, p->dbias_stride, p->dbias_key_stride,
                               p->dbias_H, p->dbias_B, p, box_rows));
}
