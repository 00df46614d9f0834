/* bwd_maps.c: the backward's tensor maps (bwd_maps.h). */
#include "bwd_maps.h"

#include <string.h>

/* A 16-bit tensor (b, row, head, column) with element strides stride[] = {batch, row, head} as
 * a rank-4 map (column, row, head, batch) of 64-column boxes. The unit steps each dimension by a
 * multiple of 16 bytes; a dimension of one element is never stepped, so its stride is replaced
 * by the packed one. Returns whether the driver accepted it. */
static int encode(const dm_driver *drv, CUtensorMap *map, uint64_t base, const int64_t stride[3],
                  int head_dim, int rows, int heads, int batches, int box_rows)
{
    const cuuint64_t dims[4] = {(cuuint64_t)head_dim, (cuuint64_t)rows, (cuuint64_t)heads,
                                (cuuint64_t)batches};
    const int64_t step[3] = {stride[1], stride[2], stride[0]}; /* elements, dims 1..3 */
    cuuint64_t bytes[3];
    int64_t packed = head_dim;
    for (int i = 0; i < 3; i++) {
        const int64_t s = dims[i + 1] > 1 ? step[i] : (packed + 7) / 8 * 8;
        if (s <= 0 || s % 8 != 0)
            return 0;
        bytes[i] = (cuuint64_t)s * 2;
        packed = s * (int64_t)dims[i + 1];
    }
    if (base % 16 != 0 || !drv->TensorMapEncodeTiled)
        return 0;
    const cuuint32_t box[4] = {64, (cuuint32_t)box_rows, 1, 1}, unit[4] = {1, 1, 1, 1};
    return drv->TensorMapEncodeTiled(map, CU_TENSOR_MAP_DATA_TYPE_UINT16, 4,
                                     (void *)(uintptr_t)base, dims, bytes, box, unit,
                                     CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                     CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                     CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

void dm_bwd_maps_fill(const dm_driver *drv, const dm_bwd_params *p, int head_dim, int box_rows,
                      dm_bwd_maps *m)
{
    memset(m, 0, sizeof *m);
    m->tma = encode(drv, &m->q, p->q, p->q_stride, head_dim, p->Lq, p->H, p->B, box_rows) &&
             encode(drv, &m->dout, p->dout, p->dout_stride, head_dim, p->Lq, p->H, p->B,
                    box_rows);
}
