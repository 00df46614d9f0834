/* gpu_util.h: what the GPU tests share: a device check for skipping, seeded random tensors,
 * host/device copies through the driver table, NaN poisoning, and one forward case run on the
 * GPU and through the CPU reference with its errors measured. */
#ifndef DM_GPU_UTIL_H
#define DM_GPU_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "dmattn.h"
#include "gen.h"

/* Non-zero when no CUDA device can be used: the test program then reports "skipped". */
int dm_gpu_absent(void);

/* One forward problem. Layout NONE = absent; *_batch and *_heads are the stored sizes (1 or B;
 * H, Hkv or 1). mask_density is the chance a mask entry is true. */
typedef struct gpu_case {
    int B, H, Hkv, Lq, Lk, D;
    dm_dtype dtype;
    dm_layout mask, bias;
    int mask_batch, mask_heads, bias_batch, bias_heads;
    bool bias_f32;
    double mask_density;
    bool causal;
    float softcap, scale;
    bool no_lse;
    bool strided;          /* q/k/v/o stored (B, H, L, D+pad) instead of (B, L, H, D) */
    int masked_key_begin;  /* keys [begin, end) false in every mask row; their K, V and bias NaN */
    int masked_key_end;
    int masked_row_every;  /* every n-th query row fully masked (0 = none) */
    int hot_key;           /* 1 + a key false in every mask row whose bias is +30: were it read as
                            * visible it would take over its rows' softmax (0 = none) */
} gpu_case;

typedef struct gpu_result {
    double o_rel_err;     /* ||o - ref|| / ||ref|| over every element */
    double o_max_abs_err;
    double lse_max_abs_err; /* over rows with a finite reference lse */
    long nan_count;       /* non-finite outputs (poison never overwritten, or NaN computed) */
    long empty_row_errors; /* rows the reference says are empty but o != 0 or lse != +inf */
    long guard_writes;    /* elements written in padding that o's strides skip */
    uint64_t seed;
} gpu_result;

/* Runs c on the GPU with dm_fwd and on the CPU with dm_ref_fwd, on fresh random inputs drawn from
 * seed, outputs poisoned first. Returns DM_OK or the failing status (message in *msg). */
dm_status gpu_run_case(const gpu_case *c, uint64_t seed, gpu_result *r, char *msg, size_t msg_bytes);

/* A seed from the clock, so every run draws new inputs; printed by the caller on failure. */
uint64_t gpu_fresh_seed(void);

/* Asserts the result against the dtype's tolerance; prints the case and seed when it fails. */
void gpu_check_case(const gpu_case *c, const char *label);

#endif
