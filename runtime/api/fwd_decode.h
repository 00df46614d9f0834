/* fwd_decode.h: the decode path (dmattn.h, DM_PATH_DECODE), shared by dm_fwd and dm_fwd_varlen:
 * one block per (key split, K/V head, sequence) with the group's heads x the sequence's queries
 * packed into its rows; with more than one split, partial (o, lse) go to stream-ordered fp32
 * scratch and the combine kernel merges them into o and lse. */
#ifndef DM_FWD_DECODE_H
#define DM_FWD_DECODE_H

#include <stdbool.h>
#include <stdint.h>

#include "ctx.h"
#include "gen.h"
#include "kernel_params.h"

/* Rows of the decode kernel's one query tile (tuning.lua's decode rows: 16 x 1 x 4 warps). */
#define DM_DECODE_ROWS 64
/* The automatic choice takes the decode path up to this many queries per sequence. */
#define DM_DECODE_AUTO_MAX_Q 16

/* Whether the decode kernel can run a call: group x max_q rows fit its tile and every mask and
 * bias is absent or one row per key shared by the whole group (head_div a multiple of group).
 * When not, *why (if not NULL) says what stands in the way, for a forced path's message. */
bool dm_fwd_decode_fits(dm_layout mask, int64_t mask_head_div, dm_layout bias,
                        int64_t bias_head_div, int64_t group, int64_t max_q, const char **why);

typedef struct dm_decode_job {
    const char *call;         /* message prefix: "dm_fwd", "dm_fwd_varlen" */
    dm_variant variant;       /* the decode variant (decode set), for ctx->arch */
    dm_fwd_params params;     /* every field but the split ones (split_keys, o_part,
                                 lse_part, part_stride), which the runner sets */
    int64_t B, Hkv;           /* grid.z, grid.y */
    int64_t rows;             /* query tokens: B * Lq (dense) or total_q (varlen) */
    int64_t max_k;            /* keys of the longest sequence */
    int64_t total_k;          /* keys of all sequences: B * max_k when they are equal */
    int num_splits;           /* requested; 0 = chosen from the shapes and the device */
    /* what the combine writes, as CombineParams has it (token t = (t / Lq, t % Lq)) */
    int64_t o_stride[3], lse_stride[3], combine_Lq;
} dm_decode_job;

/* Enters ctx, gets the decode kernel, picks the splits, queues the kernel (and the scratch, the
 * combine and the scratch's free when split) on stream. */
dm_status dm_fwd_decode_run(dm_ctx *ctx, dm_decode_job *job, CUstream stream);

/* A decode call's key splits: grid.x = n blocks a (K/V head, sequence) pair, each over
 * tiles_per_split key tiles from split x tiles_per_split on (a shorter sequence leaves its last
 * blocks empty). */
typedef struct dm_decode_splits {
    int n;
    int64_t tiles_per_split;
    bool unequal; /* sequences of unequal lengths (work_tiles < pairs x max_tiles) */
    double fill;  /* equal lengths: blocks over waves x slots (the last wave's raggedness); 1 for
                     unequal ones, whose splits are sized by work instead */
} dm_decode_splits;

/* The smallest tiles_per_split for sequences of unequal lengths: a split's partial o costs
 * 2 x rows x D x 4 bytes (written, then read by the combine) next to its K and V bytes,
 * 16 tiles x 64 keys x D x 4: at most 3% more for the decode kernel's 64 rows. */
#define DM_DECODE_MIN_SPLIT_TILES 16

/* The splits the runner uses for `pairs` = B x Hkv pairs of a kernel taking `blocks_per_sm`
 * blocks an SM: `max_tiles` key tiles in the longest sequence, `work_tiles` over all pairs
 * (pairs x max_tiles when every sequence is the longest); longest_first: unequal lengths would
 * run as work items, longest first (a varlen call of at most DM_DECODE_ORDER_MAX_SEQS
 * sequences), which takes bigger splits. Exposed for the tests. */
dm_decode_splits dm_fwd_decode_splits(int requested, int64_t pairs, int64_t max_tiles,
                                      int64_t work_tiles, int sm_count, int blocks_per_sm,
                                      bool longest_first);

/* Equal lengths run a block fewer an SM (the kernel's fewer_blocks_smem_bytes) when that fills
 * the last wave better by more than this. */
#define DM_DECODE_FILL_MARGIN 0.02

/* A varlen decode call over unequal lengths, split, of at most this many sequences runs its
 * blocks as work items, longest first (FwdParams.split_order; decode_item in
 * templates/attn_fwd.lua): the last wave is the short blocks, not a few full ones next to idle
 * slots. Each block finds its item in O(B / 32 x log2(tiles a split)) reads of cu_seqlens_k,
 * so a batch of thousands keeps the grid's order (its blocks fill the device anyway). */
#define DM_DECODE_ORDER_MAX_SEQS 512

/* Work items of B sequences holding total_k keys split every tiles_per_split tiles of block_n
 * keys: at most floor(tiles / tiles_per_split) full splits over all sequences, plus one partial
 * (or, for a sequence without keys, empty) item each. A bound, since the host cannot see the
 * lengths; the ordered grid is this times Hkv blocks, those past the real count exit at once. */
int64_t dm_fwd_decode_items(int64_t B, int64_t total_k, int64_t block_n, int64_t tiles_per_split);

/* The decode kernel's grid: with by_items (unequal lengths, split, and can_order: a varlen call
 * of at most DM_DECODE_ORDER_MAX_SEQS sequences) a 1-D grid of dm_fwd_decode_items x Hkv work
 * items (at most n x B x Hkv), FwdParams.split_order set; else (n splits, Hkv, B). */
typedef struct dm_decode_grid {
    unsigned x, y, z;
    bool by_items;
} dm_decode_grid;
dm_decode_grid dm_fwd_decode_grid(dm_decode_splits sp, bool can_order, int64_t B, int64_t Hkv,
                                  int64_t total_k, int64_t block_n);

#endif
