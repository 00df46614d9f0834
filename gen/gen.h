/* gen.h: variant keys and code generation. The boundary between runtime/ and the Lua templates.
 *
 * gen/ includes Lua and dmattn.h types, never cuda.h; runtime/ includes this header, never lua.h.
 * Nothing here touches a device, a file cache or global mutable state: every call is safe from
 * any thread. */
#ifndef DM_GEN_H
#define DM_GEN_H

#include <stdbool.h>
#include <stddef.h>

#include "arch.h"
#include "dmattn.h"
#include "dm_limits.h"

/* bwdrows: the backward's deterministic rows phase alone (its phase 0), a module of its own for
 * the engines whose bwd kernel leaves it out (those with dq reductions: their default mode never
 * runs it, and it was a third of every bwd variant's compile). bwddet: the dense backward's
 * deterministic mode, the bwd module with the dq turns (templates/attn_bwd_turns.lua) that the
 * default mode's bwd kernel leaves out (their text cost its keys phase 9 registers and 7% of its
 * time, bench/NOTES.md issue 16 session 28); where a variant has no turns, the bwd module again. */
typedef enum dm_dir { DM_DIR_FWD = 0, DM_DIR_BWD, DM_DIR_BWD_ROWS, DM_DIR_BWD_DET } dm_dir;
typedef enum dm_layout { DM_LAYOUT_NONE = 0, DM_LAYOUT_Q, DM_LAYOUT_K } dm_layout;
/* Which template family a key belongs to; zero is attention, so existing initializers keep
 * meaning what they meant. */
typedef enum dm_family { DM_FAMILY_ATTN = 0, DM_FAMILY_WMASK, DM_FAMILY_COMBINE } dm_family;

/* One kernel variant (SPEC §6). An attention key's canonical text is
 * dir.d<D>.dtype.mask-<l>.bias-<l>.w<W>[.varlen][.causal][.softcap][.decode].sm<NN>, e.g.
 * fwd.d128.bf16.mask-k.bias-q.w0.causal.sm90. decode (after SPEC §6's flags) is the forward's
 * decode path: a sequence's queries and its KV head's group of query heads packed into one tile,
 * key ranges split over blocks (dmattn.h, DM_PATH_DECODE).
 * A split-KV combine key is combine.d<D>.dtype.sm<NN> (dtype: o's), e.g. combine.d128.bf16.sm90a:
 * it merges the decode path's per-split (o, lse) into o and lse.
 * A window-mask key (SPEC §4) is wmask.w<W>.dtype.mask-<l>[.relu][.smooth][.varlen].sm<NN>,
 * e.g. wmask.w2048.bf16.mask-k.sm90: dtype is the bias's (f16, bf16 or f32), mask the input mask's
 * layout (none, q = one row per query, k = one row for every query; a 2-D mask is k). Top-k keys
 * have 1 <= W <= DM_WINDOW_MAX; relu keys select by sign and have no window, so W = 0. varlen is
 * dm_window_mask_varlen's kernel: a row is a query token's (or, all layouts key-based, a
 * sequence's) keys, located through cu_seqlens (mask-q: query-based (total_q, Hm, max_seqlen_k),
 * mask-k: key-based (total_k, Hm)). Fields a family does not use (dir, head_dim, bias, causal,
 * softcap for wmask; relu, smooth for attention) are zero. */
typedef struct dm_variant {
    dm_family family;
    dm_dir dir;
    int head_dim;   /* DM_HEAD_DIM_MIN..MAX, a multiple of DM_HEAD_DIM_STEP (dm_limits.h) */
    dm_dtype dtype; /* DM_F16 or DM_BF16 */
    dm_layout mask;
    dm_layout bias;
    int window; /* 0 = no top-k window */
    bool varlen;
    bool causal;
    bool softcap;
    bool decode; /* attention fwd: the decode path's kernel (packed group, split keys) */
    bool relu;   /* wmask: mask' = b' > 0 instead of the top-k window */
    bool smooth; /* wmask: majority vote over aligned blocks of keys after selecting */
    dm_arch arch;
} dm_variant;

#define DM_VARIANT_TEXT_MAX 96 /* longest canonical text plus NUL, with room to spare */

/* Writes the canonical text; returns its length (snprintf-like: >= n means truncated). */
int dm_variant_format(const dm_variant *v, char *buf, size_t n);

/* Parses exactly what dm_variant_format prints. On failure returns DM_ERR_INVALID_ARG and writes
 * to err a message naming the field: "field 3 (dtype) 'fp16': expected f16 or bf16". */
dm_status dm_variant_parse(const char *text, dm_variant *out, char *err, size_t err_bytes);

/* The arch table (arch.h), in arch.c. */
const char *dm_arch_name(dm_arch a);                  /* "sm90a"; "?" outside the enum */
dm_status dm_arch_parse(const char *text, dm_arch *out); /* DM_ERR_INVALID_ARG if unknown */
int dm_arch_from_cc(int major, int minor, dm_arch *out); /* device cc -> arch; 0 = ok */
const char *dm_dtype_name(dm_dtype t);                 /* "f16", "bf16", "f32", "bool", "i32" */
const char *dm_dir_name(dm_dir d); /* "fwd", "bwd", "bwdrows", "bwddet"; "?" outside */

/* What a template returns for one variant: self-contained CUDA source and its launch facts. */
typedef struct dm_kernel_src {
    char *source;     /* NUL-terminated CUDA C++, no #include; free with dm_kernel_src_free */
    size_t source_bytes;
    char entry[128];  /* extern "C" entry point */
    /* bwd, engines with dq_atomic: the entry point of the default mode's memory passes (phase 0
     * with BwdParams.dq_accum, phase 3), launched without shared memory; "" when left out */
    char rows_entry[128];
    int threads;      /* threads per block */
    int block_m;      /* query rows per block (grid.x = ceil(Lq / block_m)) */
    int block_n;      /* keys per tile: the skip granularity (wmask: keys of a resident row) */
    int smem_bytes;   /* dynamic shared memory per block */
    /* wmask: the launches one split row takes (0, also when the template leaves it out: rows
     * are never split), of which the first split_digit_stages are a count (odd) and a pick
     * (even) stage per radix digit; api/window_mask.c launches them in order. */
    int split_stages;
    int split_digit_stages;
    /* bwd: 1 when the kernel can compute dq by fp32 reductions (phases 0, 1 and 3 with
     * BwdParams.dq_accum set: api/bwd.c's default mode); 0 when left out */
    int dq_atomic;
    /* bwd: 1 when the kernel takes a second parameter, struct BwdMaps (api/bwd_maps.h: the
     * tensor maps its keys phase loads Q, dO and query-layout bias tiles through, and writes a
     * fused dbias through); 0 when left out */
    int tma_maps;
    /* bwd: rows of the query tiles the keys phase walks (BwdParams.query_rows' tiles, the
     * tensor maps' boxes; block_m, the rows a block owns, may hold several); 0 when left out:
     * block_m */
    int query_tile;
    /* bwd: the most blocks the keys phase splits a key block's walk across (BwdParams.key_split,
     * templates/attn_bwd_split.lua: phase 1's grid has that many blocks a key block); 0 when
     * left out: one */
    int key_split;
    /* bwd: 1 where the keys phase can add dq in a fixed order (BwdParams.dq_turns,
     * templates/attn_bwd_turns.lua: the deterministic mode without the rows phase); 0 when left
     * out */
    int dq_turns;
    /* bwd, with dq_turns: 1 where the keys phase decodes the deterministic mode's launch order
     * (BwdParams.turn_shift: grid (key blocks << turn_shift, Hkv >> turn_shift, B),
     * attn_bwd_turns.lua's key_block_order); 0 when left out: the grid is (key blocks, Hkv, B) */
    int turn_order;
} dm_kernel_src;

/* Runs the family's Lua template for v in a fresh Lua state. Templates come from the copies
 * embedded at build time, or from $DMATTN_TEMPLATE_DIR when it is set. On failure returns
 * DM_ERR_UNSUPPORTED (no module for v's family, or the template raised {code = "unsupported"}:
 * e.g. no tuning row), DM_ERR_COMPILE (any other template error, with its file:line; a helper
 * module not found) or DM_ERR_NOMEM, and writes "variant 'KEY': reason" to err. */
dm_status dm_gen_emit(const dm_variant *v, dm_kernel_src *out, char *err, size_t err_bytes);
void dm_kernel_src_free(dm_kernel_src *k);

/* Name and text of each embedded template, for dmgen info and the tests. */
typedef struct dm_template_file {
    const char *name; /* "attn_fwd.lua" */
    const char *text;
    size_t bytes;
} dm_template_file;
extern const dm_template_file dm_templates[];
extern const size_t dm_template_count;

#endif
