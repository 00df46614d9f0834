/* dmattn.h: the public C API of dmattn, dynamic mask attention with JIT-compiled CUDA kernels.
 *
 * libc headers only: a caller needs neither cuda.h nor Lua to use this header.
 * Every call returns a dm_status; dm_errmsg(ctx) says in words what went wrong.
 *
 * Thread safety: one thread at a time per dm_ctx. Calls that take a dm_ctx (dm_errmsg and
 * dm_ctx_destroy included) must not overlap on one context; a context is not tied to a thread and
 * may pass from thread to thread between calls (serialize them yourself, e.g. with a mutex, to
 * share one). The library takes no lock of its own. Separate contexts, even on one device and
 * one cache directory, may run concurrently. Context-free calls (dm_version, dm_version_string,
 * dm_status_name) are safe from any thread. */
#ifndef DMATTN_H
#define DMATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DM_VERSION_MAJOR 0
#define DM_VERSION_MINOR 1
#define DM_VERSION_PATCH 0
#define DM_VERSION_NUM (DM_VERSION_MAJOR * 10000 + DM_VERSION_MINOR * 100 + DM_VERSION_PATCH)
#define DM_VERSION_STRING "0.1.0"

typedef struct CUstream_st *CUstream; /* as cuda.h has it; NULL = the legacy default stream */
typedef struct dm_ctx dm_ctx;         /* opaque, one per device */

typedef enum dm_status {
    DM_OK = 0,
    DM_ERR_INVALID_ARG,  /* caller mistake; the message names the argument */
    DM_ERR_UNSUPPORTED,  /* well-formed, but no such variant (yet) */
    DM_ERR_NO_DRIVER,    /* libcuda could not be opened or initialised */
    DM_ERR_NO_DEVICE,    /* the context has no device (offline) or the device does not exist */
    DM_ERR_COMPILE,      /* code generation or NVRTC failed; the message has the log */
    DM_ERR_CUDA,         /* a CUDA driver call failed; the message names it */
    DM_ERR_NOMEM,        /* host allocation failed */
    DM_ERR_IO,           /* a file could not be read or written (dmgen build into a cache) */
} dm_status;

typedef enum dm_dtype {
    DM_DTYPE_NONE = 0, /* unset: an optional tensor that is absent */
    DM_F16,
    DM_BF16,
    DM_F32,
    DM_BOOL, /* one byte, 0 = false, anything else = true */
    DM_I32,
} dm_dtype;

#define DM_MAX_RANK 4

/* A tensor in device memory: a pointer, a dtype and a shape with strides in elements.
 * An optional tensor is absent when data == NULL and rank == 0. A tensor with a dimension of size
 * 0 holds no elements and may have data == NULL, as PyTorch's empty tensors do (nothing behind it
 * is read or written); data == NULL on any other tensor is DM_ERR_INVALID_ARG. */
typedef struct dm_tensor {
    void *data; /* device pointer (a CUdeviceptr cast to void *) */
    dm_dtype dtype;
    int rank;
    int64_t shape[DM_MAX_RANK];
    int64_t strides[DM_MAX_RANK]; /* in elements; the last must be 1 for q, k, v, o */
} dm_tensor;

/* Dense-batch forward attention, SPEC §2.
 *   q (B, Lq, H, D), k and v (B, Lk, Hkv, D), o (B, Lq, H, D): fp16 or bf16, all one dtype;
 *   H % Hkv == 0; D a multiple of 8 up to 256; pointers 16-byte aligned, strides other than the
 *   last a multiple of 8 elements (so that rows can be read 16 bytes at a time).
 *   mask (optional): bool, ({B|1}, {H|Hkv|1}, {Lq|1}, Lk); true = visible.
 *   bias (optional): q's dtype or fp32, the same shapes as mask.
 *   lse (optional output): fp32 (B, H, Lq); +inf for a row with no visible key.
 * B, Lq and Lk may be 0: B = 0 or Lq = 0 does nothing; Lk = 0 writes every row as one with no
 * visible key (o = 0, lse = +inf), with or without a window. H, Hkv and D are at least 1.
 * Zero means the default: scale 0 = 1/sqrt(D); softcap 0 = off; window 0 = no top-k window.
 * window W > 0 with Lk > W: the mask attended with is dm_window_mask(bias, mask, window = W)
 * (default min_value, top-k, no smoothing), computed on `stream` into stream-ordered scratch
 * (cuMemAllocAsync) and freed in stream order; the result equals dm_fwd on that explicit mask
 * bitwise. A window needs a bias whose heads broadcast against the mask's (equal, or one is 1).
 * With window > 0 the mask may also be dm_window_mask's 2-D ({B|1}, S): S == Lk is one row of keys
 * for every query and head; S == Lq < Lk is left-padded with true to Lk (the queries are the last
 * Lq keys). When Lk <= W (no top-k) such a mask is still applied as that: S == Lk through a
 * strided view of the caller's bytes, S == Lq < Lk through a padded ({B|1}, 1, 1, Lk) copy in
 * stream-ordered scratch (cuMemsetD8Async + cuMemcpy2DAsync). Without a window masks are 4-D. */
typedef struct dm_fwd_args {
    dm_tensor q, k, v;
    dm_tensor mask;
    dm_tensor bias;
    dm_tensor o;
    dm_tensor lse;
    float scale;
    float softcap;
    int causal; /* bottom-right aligned: key j visible to query i iff j <= i + Lk - Lq */
    int window; /* top-k window over the bias (SPEC §4); 0 = none */
    int path;       /* dm_fwd_path: DM_PATH_AUTO (0) picks from the shapes */
    int num_splits; /* decode path: blocks a key range is split over, 0 (picked from the shapes)
                       to 1024; more than the key tiles are not made */
} dm_fwd_args;

/* Which kernel a forward call runs (dm_fwd_args.path, dm_fwd_varlen_args.path); results agree
 * within rounding whichever runs. Forcing one is for tests and sweeps.
 *   DM_PATH_TILED: one block per (query tile of kBlockM rows, head): long query ranges (prefill).
 *   DM_PATH_DECODE: one block per (sequence, KV head, key split): the group's H/Hkv heads x the
 *     sequence's queries packed into one tile, so each K/V byte is read once; long key ranges
 *     split over num_splits blocks whose partial (o, lse) a combine kernel merges. Needs
 *     (H/Hkv) x max query count <= 64 and every mask/bias absent or one value per key shared by
 *     the group (key layout with 1 or Hkv heads); otherwise DM_ERR_UNSUPPORTED when forced.
 *   DM_PATH_AUTO: decode where it applies and the query count is small (at most 16 per sequence),
 *     tiled otherwise. */
typedef enum dm_fwd_path { DM_PATH_AUTO = 0, DM_PATH_TILED, DM_PATH_DECODE } dm_fwd_path;

/* Variable-length forward attention (cu_seqlens), SPEC §5. B sequences packed along the first
 * dimension; sequence b holds queries [cu_seqlens_q[b], cu_seqlens_q[b + 1]) and keys
 * [cu_seqlens_k[b], cu_seqlens_k[b + 1]).
 *   q (total_q, H, D), k and v (total_k, Hkv, D), o (total_q, H, D): as in dm_fwd_args.
 *   cu_seqlens_q, cu_seqlens_k: int32 (B + 1), in device memory, non-decreasing from 0, last
 *     entry total_q (total_k). The host cannot read them: a violation is not detected, but reads
 *     stay inside q/k/v/mask/bias as long as every entry lies in [0, total] (kernels clamp).
 *     Where they live is asked of the driver: device memory, managed memory and page-locked host
 *     memory the device maps at the same address (cudaHostAlloc, read over the bus) are
 *     accepted; pageable host memory (malloc, a CPU tensor), or registered host memory whose
 *     device address differs, is DM_ERR_INVALID_ARG (also when total_q = 0). Should the driver
 *     fail that query, the call goes on unchecked and one warning per context says so.
 *   max_seqlen_q, max_seqlen_k: at least every sequence's length; a longer sequence is cut to
 *     them (keys past max_seqlen_k are ignored; rows past max_seqlen_q are not computed: left
 *     untouched, except on the decode path with split keys, where they are unspecified);
 *     max_seqlen_k is also the last dimension of a query-based mask or bias.
 *   mask (optional, bool) and bias (optional, q's dtype or fp32), each in one of two layouts
 *     told apart by rank, chosen independently:
 *       rank 3, query-based (total_q, Hm, max_seqlen_k): row = the query's global index, column =
 *         the key's index inside its own sequence (keys contiguous);
 *       rank 2, key-based (total_k, Hm): one value per key, shared by every query of its sequence.
 *     Hm is 1, Hkv or H (head h reads h / (H / Hm)).
 *   lse (optional output): fp32 (H, total_q); +inf for a row with no visible key.
 * causal is bottom-right aligned per sequence. A sequence with 0 queries writes nothing; one with
 * 0 keys gives its queries o = 0 and lse = +inf. total_q = 0 is a valid call that does nothing.
 * window W > 0 with max_seqlen_k > W: the mask attended with is dm_window_mask_varlen(bias, mask,
 * window = W) (default min_value, top-k, no smoothing): each query keeps the W largest bias values
 * among its own sequence's keys (a sequence of at most W keys keeps its mask). It is computed on
 * `stream` into stream-ordered scratch, key-based (total_k, Hm') when bias and mask are (one
 * selection per sequence and head, nothing of size total_q x max_seqlen_k), else query-based
 * (total_q, Hm', max_seqlen_k); the result equals dm_fwd_varlen on that explicit mask bitwise. A
 * window needs a bias whose heads broadcast against the mask's (equal, or one is 1). */
typedef struct dm_fwd_varlen_args {
    dm_tensor q, k, v;
    dm_tensor cu_seqlens_q, cu_seqlens_k;
    int64_t max_seqlen_q, max_seqlen_k;
    dm_tensor mask;
    dm_tensor bias;
    dm_tensor o;
    dm_tensor lse;
    float scale;
    float softcap;
    int causal;
    int window;     /* top-k window, per sequence (dm_window_mask_varlen below); 0 = none */
    int path;       /* dm_fwd_path */
    int num_splits; /* as in dm_fwd_args */
} dm_fwd_varlen_args;

#define DM_NO_DEVICE (-1) /* dm_ctx_create: an offline context (codegen, AOT builds, no launches) */

/* Creates a context for CUDA device `device`, or an offline one for DM_NO_DEVICE. It uses the
 * CUDA context current on the calling thread if that is on `device`, else the device's primary
 * context, so it shares memory and streams with PyTorch or any runtime-API program.
 * On failure *out is still a context (unless memory ran out: then NULL) that dm_errmsg explains
 * and that can do offline work; destroy it either way. */
dm_status dm_ctx_create(dm_ctx **out, int device);
void dm_ctx_destroy(dm_ctx *ctx); /* NULL is a no-op */

/* Never NULL, even for a NULL ctx; valid until the next call on ctx. "" after success. */
const char *dm_errmsg(const dm_ctx *ctx);
const char *dm_status_name(dm_status st); /* "DM_ERR_INVALID_ARG", ... */
int dm_version(void);                     /* DM_VERSION_NUM of the library */
const char *dm_version_string(void);      /* "0.1.0" */

/* Options. Cache dir: NULL = the default ($DMATTN_CACHE_DIR, else $XDG_CACHE_HOME/dmattn,
 * else ~/.cache/dmattn); "" = no disk cache (memory only). Arch: NULL = the device's own;
 * else "sm80", "sm86", "sm89", "sm90" or "sm90a". Verbosity: 0 silent, 1 warnings (default),
 * 2 also each compile and cache event, on stderr. */
dm_status dm_ctx_set_cache_dir(dm_ctx *ctx, const char *dir);
dm_status dm_ctx_set_arch(dm_ctx *ctx, const char *arch);
dm_status dm_ctx_set_verbosity(dm_ctx *ctx, int level);
/* Scratch memory: what a call needs for itself (split-KV partials, the backward's dO.O rows, a
 * window mask it computes) comes from alloc and goes back by free, both in `stream`'s order: free
 * is called right after the kernels that use the memory are queued (as cuMemFreeAsync and
 * PyTorch's caching allocator allow), never while a call could still queue work on it. alloc
 * returns 0 and sets *ptr, or non-zero for failure (the call then fails with DM_ERR_NOMEM); it
 * may be asked for any size but 0. NULL for both (the default): cuMemAllocAsync /
 * cuMemFreeAsync. One of the two NULL is an error. user is passed through. */
typedef int (*dm_alloc_fn)(void **ptr, size_t bytes, CUstream stream, void *user);
typedef void (*dm_free_fn)(void *ptr, size_t bytes, CUstream stream, void *user);
dm_status dm_ctx_set_allocator(dm_ctx *ctx, dm_alloc_fn alloc, dm_free_fn free, void *user);
const char *dm_ctx_cache_dir(const dm_ctx *ctx); /* the directory in use; "" when memory only */
const char *dm_ctx_arch(const dm_ctx *ctx);      /* "sm90", or "" when none is known */

/* Compiles the variant named by its canonical text (e.g. "fwd.d128.bf16.mask-k.bias-none.w0.sm90")
 * into the disk cache, without a device. *was_cached (may be NULL) says whether it was there. */
dm_status dm_prebuild(dm_ctx *ctx, const char *variant, int *was_cached);

/* Forward attention, asynchronous on `stream`. The output is untouched on any error status. */
dm_status dm_fwd(dm_ctx *ctx, const dm_fwd_args *args, CUstream stream);
dm_status dm_fwd_varlen(dm_ctx *ctx, const dm_fwd_varlen_args *args, CUstream stream);

/* Gradients of a dm_fwd call, SPEC §3.
 *   dout (B, Lq, H, D), q's dtype: the gradient of the forward's o.
 *   q, k, v, o, mask, bias, scale, softcap, causal: the forward's, as dm_fwd_args has them (o is
 *     the forward's output, read). A forward with a window attended with mask' =
 *     dm_window_mask(bias, mask, window): pass that mask' as mask (4-D). The top-k is not redone:
 *     dm_window_mask is deterministic, so the mask' of the forward is the one to use.
 *   lse: the forward's, fp32 (B, H, Lq): required (the probabilities are recomputed from it).
 *   dq, dk, dv: outputs shaped as q, k, v, in q's dtype. dk and dv sum over the query heads of
 *     their K/V head's group.
 *   dbias (optional output, only with a bias): bias's shape and dtype; the sum over every
 *     dimension bias broadcasts (size 1 for B, heads or Lq) and over the query heads that share
 *     a stored head (Hkv-headed: the group's; 1-headed: all).
 *   deterministic: nonzero = the same bits run to run (a fixed order for every reduction);
 *     0 (default) = dq may differ in its last bits run to run (see dm_bwd), as in FlashAttention.
 * Masked scores and rows with no visible key (lse = +inf) contribute exactly zero. */
typedef struct dm_bwd_args {
    dm_tensor dout;
    dm_tensor q, k, v;
    dm_tensor o;
    dm_tensor lse;
    dm_tensor mask;
    dm_tensor bias;
    dm_tensor dq, dk, dv;
    dm_tensor dbias;
    float scale;
    float softcap;
    int causal;
    int deterministic;
} dm_bwd_args;

/* The gradients of a dm_fwd call (SPEC §3), asynchronous on stream like dm_fwd. Every argument is
 * checked first (DM_ERR_INVALID_ARG naming it; nothing written). Scratch is stream-ordered
 * (cuMemAllocAsync, or the context's allocator) and freed in stream order: fp32 B x H x Lq for
 * the rows' dO.O, plus B x H x Lq x D for dq's sums on sm_90a (in the deterministic mode also
 * an int32 count a 64-row query tile of each (b, h), which orders them); there, with
 * a key-layout mask, also int32 marks (1 + 2 B Hkv ceil(Lk / K), K keys a block: 128 at D = 128)
 * and fp32 sums of up to 1.25 x the blocks resident at once x 4 parts x 2 x K x D (84 MB at D =
 * 128 on 132 SMs), so that when few key blocks are visible, each one's walk over the queries can
 * be split across blocks.
 * dk, dv and dbias come from a pass over keys, every sum in a fixed order (a split walk's parts
 * added in part order): the same bits run to run in either mode. A dbias whose sums cross blocks
 * (a broadcast batch, a query-layout bias with fewer heads than H, a key-layout one whose heads
 * span K/V heads) is first written unbroadcast into scratch of bias's dtype, B x H / d x (Lq, or 1
 * for the key layout) x Lk (d = 1, or for the key layout the query heads of a K/V head that share
 * a bias head), which a last pass sums in order: for a (1, H, Lq, Lk) bias as much scratch as a
 * (B, H, Lq, Lk) dbias. Where that scratch cannot be had, the last pass recomputes ds instead
 * (the same result, many times slower).
 * dq, deterministic: on sm_90a the pass over keys adds each tile's share to fp32 sums as in the
 *   default mode, in key-block order (a block adds once the blocks before it have added or
 *   skipped that query tile), then a pass scales them into dq (five products a tile pair).
 *   Elsewhere a pass over query rows of its own, recomputing the probabilities (seven).
 * dq, default: on sm_90a (the wgmma kernels) the pass over keys adds each tile's share to fp32
 *   sums by atomic reductions, then a pass scales them into dq (five products; run to run the
 *   order of the additions, hence dq's last bits, may differ). Elsewhere as in deterministic
 *   mode.
 * A row with no visible key gets dq = +0; keys no query sees get dk = dv = +0. */
dm_status dm_bwd(dm_ctx *ctx, const dm_bwd_args *args, CUstream stream);

/* Gradients of a dm_fwd_varlen call (SPEC §3 and §5).
 *   dout (total_q, H, D), q's dtype: the gradient of the forward's o.
 *   q, k, v, o, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, mask, bias, scale,
 *     softcap, causal: the forward's, as dm_fwd_varlen_args has them (same rules, same
 *     messages). A forward with a window attended with dm_window_mask_varlen's mask': pass that
 *     as mask.
 *   lse: the forward's, fp32 (H, total_q): required.
 *   dq, dk, dv: outputs shaped as q, k, v, in q's dtype. dk and dv sum over the query heads of
 *     their K/V head's group.
 *   dbias (optional output, only with a bias): bias's shape and dtype. Key-based (total_k, Hm):
 *     each key's sum over its sequence's queries and over the query heads that share a stored
 *     head. Query-based (total_q, Hm, max_seqlen_k): ds summed over the query heads that share a
 *     stored head; the columns past a sequence's keys are written 0.
 *   deterministic: as dm_bwd (the default mode's dq may differ in its last bits run to run).
 * Rows of dq, dk, dv and dbias for tokens outside every sequence (past cu_seqlens[B]) are not
 * written. Masked scores and rows with no visible key contribute exactly zero. */
typedef struct dm_bwd_varlen_args {
    dm_tensor dout;
    dm_tensor q, k, v;
    dm_tensor o;
    dm_tensor lse;
    dm_tensor cu_seqlens_q, cu_seqlens_k;
    int64_t max_seqlen_q, max_seqlen_k;
    dm_tensor mask;
    dm_tensor bias;
    dm_tensor dq, dk, dv;
    dm_tensor dbias;
    float scale;
    float softcap;
    int causal;
    int deterministic;
} dm_bwd_varlen_args;

/* The gradients of a dm_fwd_varlen call, asynchronous on stream, checked first as dm_bwd is
 * (nothing written on an error). Scratch: fp32 H x total_q for the rows' dO.O, stream-ordered.
 * The same kernels as dm_bwd, each block reading its sequence's extent from cu_seqlens. */
dm_status dm_bwd_varlen(dm_ctx *ctx, const dm_bwd_varlen_args *args, CUstream stream);

/* Top-k window mask, SPEC §4 (flash-dmattn's maybe_create_mask): the one helper every attention
 * entry point with a window calls.
 *   bias: f16, bf16 or f32, ({B|1}, Hb, {Lq|1}, Lk); required when a window applies.
 *   mask (optional): bool, ({B|1}, Hm, {Lq|1}, Lk), or 2-D ({B|1}, S): S == Lk is one row for
 *     every query; S == Lq < Lk is left-padded with true to Lk (the queries are the last keys);
 *     any other S is an error.
 *   out: bool, the broadcast shape of bias and mask ({B|1}, {Hb|Hm}, {Lq|1}, Lk), keys contiguous,
 *     not overlapping bias or mask.
 * b' = bias where mask is true, else min_value (has_min_value = 0: the lowest finite value of
 * bias's dtype; else min_value rounded to that dtype through float, as torch's masked_fill does).
 * Per row: keep the `window` largest b' (NaN above +inf, -0 equal to +0; ties to the lower key
 * index); out_j = kept and b'_j != min_value. relu = 1 selects out_j = b'_j > 0 instead (the
 * window then only decides the early exit below). block_size > 0 then smooths: each aligned block
 * of block_size keys (the tail block over its own length) becomes all true when more than half
 * of it is true, else all false.
 * "Mask unchanged": when window == 0 or Lk <= window, nothing runs, out is neither read nor
 * written (it may be absent) and *applied = 0: the caller keeps its own mask (which may be
 * absent). Otherwise *applied = 1 once the kernel is queued on `stream`. applied must not be NULL.
 * B, Lq, Lk are the attention's sizes; bias's and mask's dimensions must each match or be 1. */
typedef struct dm_window_mask_args {
    dm_tensor bias;
    dm_tensor mask;
    dm_tensor out;
    int64_t B, Lq, Lk;
    int window;        /* keys kept per row; 0 = no window */
    int has_min_value; /* 0: min_value is ignored and the dtype's lowest finite value is used */
    double min_value;  /* not NaN */
    int relu;          /* 0 = top-k, 1 = relu selection */
    int block_size;    /* 0 = no smoothing */
} dm_window_mask_args;

dm_status dm_window_mask(dm_ctx *ctx, const dm_window_mask_args *args, int *applied,
                         CUstream stream);

/* Top-k window mask for a varlen batch (SPEC §4 over SPEC §5's layouts): dm_window_mask per
 * sequence, what dm_fwd_varlen with a window calls. Sequence s holds queries [cu_seqlens_q[s],
 * cu_seqlens_q[s + 1]) and keys [cu_seqlens_k[s], cu_seqlens_k[s + 1]), its key count Lk_s clamped
 * to max_seqlen_k (cu_seqlens as in dm_fwd_varlen_args: on the device, entries clamped to
 * [0, total], so a bad one gives wrong rows, never an access outside the tensors).
 *   bias: f16, bf16 or f32, query-based (total_q, Hb, >= max_seqlen_k) (rank 3) or key-based
 *     (total_k, Hb) (rank 2); required when the window applies.
 *   mask (optional): bool, the same two layouts, chosen independently of bias's.
 *   out: bool, Hm' = the broadcast of Hb and the mask's heads (equal, or one of them 1):
 *     key-based (total_k, Hm'), any strides, when bias and mask (if present) are key-based: one
 *       selection per (sequence, head), shared by the sequence's queries;
 *     else query-based (total_q, Hm', max_seqlen_k), keys contiguous: one selection per (query,
 *       head) over its own sequence's keys; columns from Lk_s on are false, and a query token that
 *       no sequence holds gets an all-false row.
 *     out must not overlap bias or mask.
 * Each row is dm_window_mask's (b' = bias where mask, else min_value; the `window` largest kept,
 * ties to the lower key index; relu, block_size as there), over the row's Lk_s keys; a sequence
 * with Lk_s <= window keeps its mask (out = mask over its keys, true where the mask is absent).
 * "Mask unchanged" for the whole call: when window == 0 or max_seqlen_k <= window, nothing runs,
 * out is neither read nor written (it may be absent) and *applied = 0. Otherwise *applied = 1 once
 * the kernel is queued on `stream` (also when out has no rows: total_q = 0). total_q, total_k and
 * max_seqlen_q, max_seqlen_k are the attention's sizes, checked as dm_fwd_varlen checks them. */
typedef struct dm_window_mask_varlen_args {
    dm_tensor bias;
    dm_tensor mask;
    dm_tensor out;
    dm_tensor cu_seqlens_q, cu_seqlens_k; /* int32 (B + 1), device memory */
    int64_t total_q, total_k;
    int64_t max_seqlen_q, max_seqlen_k;
    int window;        /* keys kept per row; 0 = no window */
    int has_min_value; /* as in dm_window_mask_args */
    double min_value;
    int relu;
    int block_size;
} dm_window_mask_varlen_args;

dm_status dm_window_mask_varlen(dm_ctx *ctx, const dm_window_mask_varlen_args *args,
                                int *applied, CUstream stream);

#ifdef __cplusplus
}
#endif
#endif
