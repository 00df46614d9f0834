/* bwd_maps.h: the second parameter of a backward kernel whose keys phase loads its query tiles
 * through the tensor memory accelerator (k->tma_maps; struct BwdMaps in templates/attn_bwd.lua,
 * the same bytes): tensor maps of q and dO over (D, Lq, H, B) in boxes of 64 columns x query_tile
 * rows, 128-byte swizzled as the wgmma tiles. A map the driver refuses (a stride the unit cannot
 * step) is left unused: the kernel then copies those tiles by cp.async, as before. */
#ifndef DM_BWD_MAPS_H
#define DM_BWD_MAPS_H

#include <stdint.h>

#include <cuda.h>

#include "driver.h"
#include "kernel_params.h"

typedef struct dm_bwd_maps {
    CUtensorMap q;     /* 128-byte aligned by cuda.h */
    CUtensorMap dout;
    uint32_t tma;      /* 1: both maps encoded; 0: the kernel's cp.async copies */
} dm_bwd_maps;

_Static_assert(sizeof(dm_bwd_maps) == 384, "struct BwdMaps in templates/attn_bwd.lua");

/* The maps of p's q and dout (head_dim columns, boxes of box_rows rows) and whether both are
 * made. */
void dm_bwd_maps_fill(const dm_driver *drv, const dm_bwd_params *p, int head_dim, int box_rows,
                      dm_bwd_maps *m);

#endif
