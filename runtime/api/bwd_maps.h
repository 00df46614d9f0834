/* bwd_maps.h: the second parameter of a backward kernel whose keys phase loads its query tiles
 * through the tensor memory accelerator (k->tma_maps; struct BwdMaps in templates/attn_bwd.lua,
 * the same bytes): tensor maps of q and dO over (D, Lq, H, B) in boxes of 64 columns x query_tile
 * rows, 128-byte swizzled as the wgmma tiles, and, for a query-layout bias, maps of bias over
 * (Lk, Lq, bias heads, bias batches) and of the fused dbias over (Lk, Lq, H, B) in boxes of 128
 * bytes of keys x query_tile rows, swizzled the same way; where the keys phase sums dq
 * (p->dq_accum) and head_dim is a multiple of 32, a map of that fp32 scratch over (head_dim, Lq,
 * H, B) in boxes of 32 columns x query_tile rows, 128-byte swizzled, which the kernel adds its dq
 * tiles through.
 * A map the driver refuses (a stride the unit cannot step) is left unused: the kernel then copies
 * the query tiles by cp.async (and sums dq row by row) and its threads fill the bias's stage
 * element by element. */
#ifndef DM_BWD_MAPS_H
#define DM_BWD_MAPS_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda.h>

#include "driver.h"
#include "kernel_params.h"

typedef struct dm_bwd_maps {
    CUtensorMap q;     /* 128-byte aligned by cuda.h */
    CUtensorMap dout;
    CUtensorMap bias;
    CUtensorMap dbias;
    CUtensorMap dq;    /* the fp32 dq scratch (p->dq_accum) */
    uint32_t tma;      /* 1: q's and dout's maps encoded (and dq's where made); 0: the kernel's
                        * cp.async copies and row sums */
    uint32_t bias_tma; /* 1 (only with tma): bias's map encoded, and dbias's where it is fused */
    uint32_t bias_batch_step; /* 1; 0 where bias broadcasts over the batch (coordinate 0) */
} dm_bwd_maps;

_Static_assert(sizeof(dm_bwd_maps) == 768, "struct BwdMaps in templates/attn_bwd.lua");

/* The maps of p's q and dout (head_dim columns, boxes of box_rows rows) and, where p->dq_accum is
 * set and head_dim % 32 == 0, of dq's scratch, and whether all of them are made; with bias_tiles
 * (a query-layout bias the kernel stages) also bias's and, where p asks for a fused dbias,
 * dbias's. */
void dm_bwd_maps_fill(const dm_driver *drv, const dm_bwd_params *p, int head_dim, int box_rows,
                      bool bias_tiles, dm_bwd_maps *m);

#endif
