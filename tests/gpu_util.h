/* gpu_util.h: what the GPU tests share: a device check for skipping, the test context, seeded
 * random numbers, tensors kept twice (host and device, copied through the driver table), one
 * forward case run on the GPU and through the CPU reference with its errors measured, and the
 * pieces that case is made of (its inputs, poison, the error measure) for the other entry points'
 * tests to build theirs from. */
#ifndef DM_GPU_UTIL_H
#define DM_GPU_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmattn.h"
#include "driver.h"
#include "gen.h"

/* Non-zero when no CUDA device can be used: the test program then reports "skipped". */
int dm_gpu_absent(void);

/* The driver table (dlopen'ed libcuda); the tests call it directly to allocate and copy. */
const dm_driver *gpu_drv(void);

/* One context per test process, on device 0's primary context (current on this thread), so
 * kernels stay loaded across cases. DMATTN_TEST_ARCH overrides its arch (sm90 on a 9.0 part: the
 * mma.sync engine instead of wgmma). */
dm_ctx *gpu_ctx(void);

/* xorshift64*: small, seedable, the same on every machine. */
uint64_t gpu_rng_next(uint64_t *s);

size_t gpu_elem_bytes(dm_dtype t);
/* A uniform draw in [-1, 1) from gpu_rng_next. */
double gpu_uniform(uint64_t *s);
/* Element i of a host buffer of dtype t (f32, f16 or bf16), written from or read as float. */
void gpu_put(void *buf, dm_dtype t, size_t i, float x);
float gpu_get(const void *buf, dm_dtype t, size_t i);

/* A tensor twice: host and device copies of the same bytes. dev and host are its descriptors
 * (same shape and strides); the data starts `offset` elements past an aligned base, so that
 * offset != 0 misaligns rows and sends kernels down their scalar paths. */
typedef struct gpu_twin {
    dm_tensor dev, host;
    void *host_base; /* zeroed on allocation */
    CUdeviceptr dev_base;
    size_t bytes; /* of the whole allocation */
} gpu_twin;

/* strides NULL: packed, elems taken from shape; else elems is the span the strides reach. Makes
 * the test's context current first (gpu_ctx), so it may come before any other GPU call. */
void gpu_twin_alloc(gpu_twin *w, dm_dtype dtype, int rank, const int64_t *shape,
                    const int64_t *strides, size_t elems, int offset);
void gpu_twin_upload(gpu_twin *w);
void gpu_twin_download(gpu_twin *w);
void gpu_twin_free(gpu_twin *w); /* a zeroed twin is a no-op */
/* Every byte of the device copy set to 0xff (NaN in f16, bf16 and f32): an output never written
 * reads back as NaN. */
void gpu_twin_poison(gpu_twin *w);

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
    int path;              /* dm_fwd_args.path and num_splits (0: picked from the shapes) */
    int num_splits;
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

/* The pieces of gpu_run_case, in the order it draws from the seed.
 * gpu_case_rows_alloc: a (B, L, heads, D) tensor of c's dtype (q, k, v, o and their gradients),
 * packed, or stored (B, heads, L, D + 8) when c->strided; gpu_case_rows_index: element (b, l, h, d)
 * of one. gpu_fill_uniform: every element of the allocation (padding too) uniform in [-1, 1).
 * gpu_case_mb_alloc: a packed ({B|1}, heads, {Lq|1}, Lk) tensor (rows Lq for layout q, 1 for k).
 * gpu_case_mask, gpu_case_bias: c's mask and bias allocated and drawn (mask_density, the forced
 * masked keys and rows, hot_key), a zeroed twin when the layout is NONE. */
void gpu_case_rows_alloc(gpu_twin *w, const gpu_case *c, int L, int heads);
size_t gpu_case_rows_index(const gpu_twin *w, int b, int l, int h, int d);
void gpu_fill_uniform(gpu_twin *w, uint64_t *s);
void gpu_case_mb_alloc(gpu_twin *w, const gpu_case *c, dm_layout layout, int batch, int heads,
                       dm_dtype dtype);
void gpu_case_mask(gpu_twin *mask, const gpu_case *c, uint64_t *s);
void gpu_case_bias(gpu_twin *bias, const gpu_case *c, uint64_t *s);
/* One line naming every field of c, for failure messages. */
void gpu_case_describe(const gpu_case *c, char *buf, size_t n);

/* How far an output is from the reference's, over the elements its shape and strides reach. */
typedef struct gpu_err {
    double rel; /* ||got - ref|| / ||ref|| (||got - ref|| when ref is all zero) */
    double max_abs;
    long nan_count; /* non-finite got (poison never overwritten, or NaN computed): not in rel */
} gpu_err;

/* got and ref: host tensors (f32, f16 or bf16) of one shape, each read through its own strides. */
void gpu_compare(const dm_tensor *got, const dm_tensor *ref, gpu_err *e);

/* Runs c on the GPU with dm_fwd and on the CPU with dm_ref_fwd, on fresh random inputs drawn from
 * seed, outputs poisoned first. Returns DM_OK or the failing status (message in *msg). */
dm_status gpu_run_case(const gpu_case *c, uint64_t seed, gpu_result *r, char *msg, size_t msg_bytes);

/* A seed from the clock, so every run draws new inputs; printed by the caller on failure. */
uint64_t gpu_fresh_seed(void);

/* Asserts the result against the dtype's tolerance; prints the case and seed when it fails. */
void gpu_check_case(const gpu_case *c, const char *label);

#endif
