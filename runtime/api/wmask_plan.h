/* wmask_plan.h: a window-mask call (dm_window_mask, SPEC §4) after validation, in the one
 * normalized form that the launcher, dm_fwd's window path and the CPU reference all read. */
#ifndef DM_WMASK_PLAN_H
#define DM_WMASK_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctx.h"
#include "dmattn.h"
#include "gen.h"

/* Strides are in elements and index out's (b, h, i) row: 0 where the tensor broadcasts. */
typedef struct dm_wmask_plan {
    bool applied;           /* false: window 0 or Lk <= window; nothing else below is set */
    int64_t B, Lq, Lk;
    int64_t out_shape[4];   /* the broadcast of bias and (normalized) mask */
    int window;
    bool relu;
    int block_size;         /* 0 = no smoothing */
    dm_dtype bias_dtype;    /* f16, bf16 or f32 */
    int64_t bias_stride[3];
    dm_layout mask_layout;  /* NONE, Q (a row per query) or K (one row for all; 2-D masks) */
    int64_t mask_stride[3];
    int64_t mask_pad;       /* 2-D (B, Lq) mask: keys [0, mask_pad) are true without a byte */
    bool has_out;
    int64_t out_stride[3];
    uint32_t min_bits;      /* min_value in bias's dtype (low 16 bits for f16/bf16) */
    double min_value;       /* the same value, exactly */
    uint32_t min_key;       /* its order-preserving image, as the kernel computes keys */
} dm_wmask_plan;

/* Rows of out, (b, h, i): one selection each. */
static inline int64_t dm_wmask_plan_rows(const dm_wmask_plan *plan)
{
    return plan->out_shape[0] * plan->out_shape[1] * plan->out_shape[2];
}

/* Bytes of a bias element, and of a key in the kernel's shared memory (the same width). */
static inline int dm_wmask_bias_bytes(const dm_wmask_plan *plan)
{
    return plan->bias_dtype == DM_F32 ? 4 : 2;
}

/* Checks args (dmattn.h, SPEC §4) and fills plan. need_out = false skips out (dm_fwd's window
 * path sizes its scratch from plan->out_shape first). Messages start with `call`. Touches no
 * memory behind the tensors' pointers. */
dm_status dm_wmask_check(dm_ctx *ctx, const char *call, const dm_window_mask_args *args,
                         bool need_out, dm_wmask_plan *plan);

/* The kernel variant a plan needs on arch. */
void dm_wmask_plan_variant(const dm_wmask_plan *plan, dm_arch arch, dm_variant *out);

/* How a top-k call spreads its rows over blocks. One block per row (slices = 1) is the kernel of
 * choice when the rows alone fill the GPU or a row fits in one block's shared memory; few rows
 * longer than that (decode rows of 512k keys) are split into `slices` blocks of `slice_keys`
 * keys each (the last one shorter), which count, pick and write in stages (window_mask.lua). */
typedef struct dm_wmask_split {
    int slices;     /* blocks per row; 1 = the one-block-per-row kernel */
    int slice_keys; /* slices > 1: keys per block, a multiple of DM_WMASK_SLICE_ALIGN */
} dm_wmask_split;

#define DM_WMASK_SLICE_ALIGN 64      /* keys: 128 bytes of 16-bit bias, whole vector steps */
#define DM_WMASK_SPLIT_BLOCKS_PER_SM 4 /* target grid: four 512-thread blocks fill an SM */
#define DM_WMASK_MIN_SLICE_KEYS 8192 /* below, a block's fixed work (4 KiB of bins to clear,
                                      * store and sum) outweighs its share of the row */

/* The split for an applied plan (relu plans never split), for a kernel with split stages
 * (dm_kernel.split_stages > 0): resident_keys is the kernel's one-block capacity (its block_n),
 * n_sms the device's multiprocessors (<= 0: unknown, no split). forced_slices > 0 asks for that
 * many blocks per row on any top-k row (tests and sweeps: DMATTN_WMASK_SLICES; 1 = never
 * split); it is rounded to whole slices of the alignment, so fewer may come back. Pure: no
 * device, no environment. */
dm_wmask_split dm_wmask_plan_split(const dm_wmask_plan *plan, int64_t resident_keys, int n_sms,
                                   int forced_slices);

/* Scratch bytes a split call needs: one hist_bins-word histogram per (row, slice), then 4 words
 * of select state per row. */
size_t dm_wmask_split_scratch_bytes(int64_t rows, int slices, int hist_bins);

/* Queues the kernel for an applied plan whose out is set (ctx entered by the caller). Split rows
 * take several launches and stream-ordered scratch (cuMemAllocAsync / cuMemFreeAsync on
 * `stream`), so the call stays asynchronous. */
dm_status dm_wmask_launch(dm_ctx *ctx, const char *call, const dm_window_mask_args *args,
                          const dm_wmask_plan *plan, CUstream stream);

/* The order-preserving integer image of a value's bits in dtype (f16/bf16: the low 16 bits):
 * NaN above +inf, -0 equal to +0. The kernel's order_key, for the host. */
uint32_t dm_wmask_key(dm_dtype dtype, uint32_t bits);

/* The pieces dm_wmask_check shares with the varlen check (window_mask_varlen_check.c), so both
 * helpers word and resolve them alike (window_mask_check.c). */

/* relu, has_min_value 0 or 1; min_value not NaN when given; block_size >= 0; window at most
 * DM_WINDOW_MAX. */
dm_status dm_wmask_check_scalars(dm_ctx *ctx, const char *call, int window, int has_min_value,
                                 double min_value, int relu, int block_size);

/* min_value in dtype: its bits, its value exactly, and its dm_wmask_key. */
void dm_wmask_resolve_min(dm_dtype dtype, int has_min_value, double min_value, uint32_t *bits,
                          double *value, uint32_t *key);

/* out's bytes do not overlap in's (elements of in_elem bytes): a row is read while written. */
dm_status dm_wmask_check_apart(dm_ctx *ctx, const char *call, const dm_tensor *out,
                               const char *name, const dm_tensor *in, size_t in_elem);

/* A 2-D mask ({B|1}, S) (dtype and rank already checked): S == Lk sets *pad = 0, S == Lq < Lk
 * *pad = Lk - Lq (keys [0, pad) are true without a byte, SPEC §4); keys contiguous. */
dm_status dm_wmask_check_mask_2d(dm_ctx *ctx, const char *call, const dm_tensor *m, int64_t B,
                                 int64_t Lq, int64_t Lk, int64_t *pad);

/* The size both operands broadcast to along one dimension (equal, or one of them 1), or -1. */
int64_t dm_wmask_broadcast(int64_t a, int64_t b);

/* The launcher's pieces (window_mask.c), shared with the varlen launcher. */
struct dm_kernel;
struct dm_wmask_params;

/* Threads per block for rows of up to Lk keys: 128 up to the kernel's most, ~32 keys a thread. */
unsigned dm_wmask_block_threads(const struct dm_kernel *k, int64_t Lk);

/* Every row of a tensor starts `align`-byte aligned: the pointer and each stride (bytes). */
bool dm_wmask_rows_aligned(uint64_t data, const int64_t strides[3], int64_t elem_bytes,
                           int align);

/* One launch of grid x 1 x 1 blocks; a failure names the variant. */
dm_status dm_wmask_launch_grid(dm_ctx *ctx, const char *call, const dm_variant *v,
                               const struct dm_kernel *k, int64_t grid, unsigned threads,
                               int64_t smem, struct dm_wmask_params *params, CUstream stream);

#endif
