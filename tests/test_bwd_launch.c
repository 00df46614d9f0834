/* test_bwd_launch.c: dm_bwd's launch plan against the stub driver (stub_libcuda.c, loaded through
 * DMATTN_LIBCUDA): the phases it launches and their grids (rows, keys, and dbias only for the
 * broadcasts whose sums cross blocks), the parameters the kernel gets (dbias_fused, dbias's
 * sizes), and nothing launched for B = 0. No GPU: the stub runs nothing; the results are
 * test_gpu_bwd's. */
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "kernel_params.h"
#include "kernels.h"
#include "stub_args.h"
#include "stub_libcuda.h"
#include "stub_util.h"
#include "test_fs.h"

static void *stub;
static dmstub_stats_t *stats;
static char cache_dir[64];

enum { B = 2, H = 4, HKV = 2, L = 100, D = 64 };

/* GQA (4 query heads, 2 K/V heads), 100 queries and keys, d64 f16: addresses the stub never
 * touches. bias (and dbias) of shape (bb, bh, bl, L) when bb > 0. */
static dm_bwd_args args(int64_t bb, int64_t bh, int64_t bl)
{
    dm_bwd_args a = dm_test_bwd_args(B, H, HKV, L, D);
    if (bb > 0) {
        a.bias = dm_test_t4(0xa000000, DM_F16, bb, bh, bl, L);
        a.dbias = dm_test_t4(0xb000000, DM_F16, bb, bh, bl, L);
    }
    return a;
}

/* args(0, 0, 0) at head_dim 128, where sm_90a runs blocks of two warpgroups (tuning.lua). */
static dm_bwd_args args_d128(void)
{
    return dm_test_bwd_args(B, H, HKV, L, 128);
}

/* A context on a stub device of compute capability cc ("80": the mma.sync engine, which has no
 * dq reductions; "90": sm_90a's wgmma engine, which has them). */
static dm_ctx *stub_ctx_cc(const char *cc)
{
    dm_test_use_stub(DM_STUB_LIBCUDA, cc, "bwd_launch", &stub, &stats, cache_dir);
    dm_ctx *ctx = dm_test_stub_ctx(cache_dir);
    stats->capture_bytes = sizeof(dm_bwd_params);
    return ctx;
}

static dm_ctx *stub_ctx(void)
{
    return stub_ctx_cc("80");
}

/* the stub keeps this many bytes of a launch's first parameter */
_Static_assert(sizeof(dm_bwd_params) <= sizeof(((dmstub_stats_t *)0)->params),
               "the stub's parameter capture is shorter than dm_bwd_params");

static dm_bwd_params last_params(void)
{
    dm_bwd_params p;
    memcpy(&p, stats->params, sizeof p);
    return p;
}

static dm_bwd_params prev_params(void) /* the launch before the last one's */
{
    dm_bwd_params p;
    memcpy(&p, stats->params_prev, sizeof p);
    return p;
}

/* A dbias whose sums cross blocks, through partials (bwd.c): the keys phase (the launch before
 * the last) wrote a fused dbias into packed scratch of bias's dtype, (B, H / div, rows, L); phase
 * 2 (the last) sums it into the caller's dbias, 32 elements a warp. */
static void check_dbias_partials(const dm_kernel *k, const dm_bwd_args *a, int div, int rows)
{
    const dm_bwd_params keys = prev_params(), sums = last_params();
    ck_assert(keys.phase == 1 && keys.dbias_fused == 1 && keys.dbias_head_div == div);
    ck_assert(keys.dbias != 0 && keys.dbias != (uint64_t)(uintptr_t)a->dbias.data);
    ck_assert(keys.dbias_B == B && keys.dbias_H == H / div && keys.dbias_Lq == rows);
    ck_assert(keys.dbias_key_stride == 1 && keys.dbias_stride[2] == L);
    ck_assert(keys.dbias_stride[1] == (int64_t)rows * L);
    ck_assert(keys.dbias_stride[0] == (int64_t)H / div * rows * L);
    ck_assert(sums.phase == 2 && sums.dbias_fused == 0 && sums.dbias_part == keys.dbias);
    ck_assert_uint_eq(sums.dbias, (uint64_t)(uintptr_t)a->dbias.data);
    ck_assert(sums.dbias_B == a->dbias.shape[0] && sums.dbias_H == a->dbias.shape[1]);
    ck_assert(sums.dbias_Lq == a->dbias.shape[2] && sums.dbias_head_div == div);
    const int64_t elems = a->dbias.shape[0] * a->dbias.shape[1] * a->dbias.shape[2] * L;
    ck_assert_uint_eq(stats->grid[0], ((elems + 31) / 32 + k->block_n - 1) / k->block_n);
    ck_assert_uint_eq(stats->grid[1], 1);
}

static void bwd_ok(dm_ctx *ctx, const dm_bwd_args *a)
{
    dm_status st = dm_bwd(ctx, a, NULL);
    ck_assert_msg(st == DM_OK, "%s: %s", dm_status_name(st), dm_errmsg(ctx));
}

static const dm_kernel *bwd_kernel(dm_ctx *ctx, dm_layout bias)
{
    dm_variant v = {
        .dir = DM_DIR_BWD, .head_dim = D, .dtype = DM_F16, .bias = bias, .arch = DM_SM80};
    const dm_kernel *k = dm_module_find(ctx, &v);
    ck_assert_ptr_nonnull(k);
    return k;
}

/* Without a bias: phase 0 over (query blocks, H, B), then phase 1 over (key blocks, Hkv, B). */
START_TEST(rows_then_keys_over_their_grids_without_dbias)
{
    dm_ctx *ctx = stub_ctx();
    dm_bwd_args a = args(0, 0, 0);
    bwd_ok(ctx, &a);
    const dm_kernel *k = bwd_kernel(ctx, DM_LAYOUT_NONE);
    ck_assert_int_eq(stats->launches, 2);
    ck_assert_ptr_null(k->fn_rows); /* mma.sync: dq in phase 0, no memory-pass entry */
    dm_bwd_params p = last_params();
    ck_assert_int_eq(p.phase, 1);
    ck_assert_uint_eq(stats->grid[0], (L + k->block_m - 1) / k->block_m);
    ck_assert_uint_eq(stats->grid[1], HKV);
    ck_assert_uint_eq(stats->grid[2], B);
    ck_assert_int_eq(p.group, H / HKV);
    ck_assert(p.dbias == 0 && p.dbias_fused == 0);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

/* A key-layout dbias whose sums stay inside a block (B not broadcast; H or Hkv heads) is written
 * by the keys phase: two launches. One head over two K/V heads, or a broadcast batch, sums across
 * blocks: the keys phase writes partials (a head for each query head pair of a K/V head's group,
 * or each batch's own) and phase 2 sums them. */
START_TEST(a_key_layout_dbias_is_fused_unless_its_sums_cross_blocks)
{
    dm_ctx *ctx = stub_ctx();
    static const int64_t fused[][3] = {{B, H, 1}, {B, HKV, 1}};
    for (size_t i = 0; i < 2; i++) {
        dm_bwd_args a = args(fused[i][0], fused[i][1], fused[i][2]);
        long before = stats->launches;
        bwd_ok(ctx, &a);
        ck_assert_int_eq(stats->launches - before, 2);
        dm_bwd_params p = last_params();
        ck_assert_int_eq(p.phase, 1);
        ck_assert_int_eq(p.dbias_fused, 1);
        ck_assert_int_eq(p.dbias_H, fused[i][1]);
    }
    static const int64_t crossing[][3] = {{B, 1, 1}, {1, H, 1}};
    for (size_t i = 0; i < 2; i++) {
        dm_bwd_args a = args(crossing[i][0], crossing[i][1], crossing[i][2]);
        long before = stats->launches;
        bwd_ok(ctx, &a);
        ck_assert_int_eq(stats->launches - before, 3);
        /* (B, 1, 1, L): one head, H / HKV = 2 query heads a block: partial heads of 2 */
        check_dbias_partials(bwd_kernel(ctx, DM_LAYOUT_K), &a, i == 0 ? H / HKV : 1, 1);
    }
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

/* A query-layout dbias that broadcasts nothing is ds itself, written by the rows phase (two
 * launches); one that sums over heads or batches goes through partials, ds of each (b, h),
 * which phase 2 sums. */
START_TEST(a_query_layout_dbias_is_fused_only_without_broadcast)
{
    dm_ctx *ctx = stub_ctx();
    dm_bwd_args a = args(B, H, L);
    bwd_ok(ctx, &a);
    ck_assert_int_eq(stats->launches, 2);
    ck_assert_int_eq(last_params().dbias_fused, 1);
    a = args(B, HKV, L);
    bwd_ok(ctx, &a);
    ck_assert_int_eq(stats->launches, 5);
    check_dbias_partials(bwd_kernel(ctx, DM_LAYOUT_Q), &a, 1, L);
    a = args(1, H, L); /* a broadcast batch */
    bwd_ok(ctx, &a);
    ck_assert_int_eq(stats->launches, 8);
    check_dbias_partials(bwd_kernel(ctx, DM_LAYOUT_Q), &a, 1, L);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

/* On an engine with dq reductions (sm_90a), the default mode launches rows (row_dot, the scratch
 * zeroed), keys (dk, dv, dq's sums) and phase 3 over the query rows' grid, the fp32 sums placed
 * after row_dot in one scratch, with or without a fused dbias (a query-layout one is then the keys
 * phase's too); the deterministic mode launches the same three, its sums in a fixed order
 * (templates/attn_bwd_turns.lua): their bits, 2 a key block a 64-row query tile of each (b, h),
 * after the keys phase's tile rows (phase 0 zeroes them: no memset), and no bwdrows kernel
 * (loaded only where a kernel cannot order its sums: the varlen kernels). */
START_TEST(the_default_mode_sums_dq_by_reductions_where_the_engine_has_them)
{
    dm_ctx *ctx = stub_ctx_cc("90");
    dm_bwd_args a = args(0, 0, 0);
    bwd_ok(ctx, &a);
    ck_assert_int_eq(stats->launches, 3);
    dm_bwd_params p = last_params();
    ck_assert_int_eq(p.phase, 3);
    ck_assert(p.dq_accum != 0 && p.row_dot != 0 && p.dq_turns == 0);
    ck_assert_uint_ge(p.dq_accum - p.row_dot, (uint64_t)B * H * L * sizeof(float));
    ck_assert_uint_eq(p.dq_accum % 16, 0);
    dm_variant v = {.dir = DM_DIR_BWD, .head_dim = D, .dtype = DM_F16, .arch = DM_SM90A};
    const dm_kernel *k = dm_module_find(ctx, &v);
    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(k->dq_atomic, 1);
    ck_assert_int_eq(k->dq_turns, 0); /* the default mode's kernel: no turns (bwddet's) */
    ck_assert_uint_eq(stats->grid[0], (L + k->block_m - 1) / k->block_m);
    ck_assert_uint_eq(stats->grid[1], H);
    ck_assert_uint_eq(stats->grid[2], B);
    /* phases 0 and 3 are memory passes: the module's own entry for them, no shared memory */
    ck_assert_ptr_nonnull(k->fn_rows);
    ck_assert_ptr_ne(k->fn_rows, k->fn);
    ck_assert_ptr_eq(stats->launch_fn, k->fn_rows);
    ck_assert_uint_eq(stats->smem_bytes, 0);

    const long memsets = stats->memsets;
    a.deterministic = 1;
    bwd_ok(ctx, &a);
    ck_assert_int_eq(stats->launches, 6);
    p = last_params();
    ck_assert(p.phase == 3 && p.dq_accum != 0 && p.dq_turns != 0);
    ck_assert_uint_eq(p.dq_turns % 256, 0);
    ck_assert_uint_ge(p.dq_turns, p.query_rows + (uint64_t)B * H * ((L + 63) / 64) * 128 * 4);
    dm_variant vd = v;
    vd.dir = DM_DIR_BWD_DET; /* the deterministic mode's kernel: the turns' */
    const dm_kernel *kd = dm_module_find(ctx, &vd);
    ck_assert_ptr_nonnull(kd);
    ck_assert_int_eq(kd->dq_turns, 1);
    ck_assert_ptr_eq(stats->fns[3], kd->fn_rows); /* phase 0 zeroes the sums and their bits */
    ck_assert_ptr_eq(stats->fns[4], kd->fn);
    /* the turns' launch order: the key blocks of HKV = 2 heads interleaved (grid x), one group */
    ck_assert_int_eq(p.turn_shift, 1);
    ck_assert_uint_eq(stats->grids[4][0], (L + k->block_m - 1) / k->block_m * HKV);
    ck_assert_uint_eq(stats->grids[4][1], 1);
    ck_assert_uint_eq(stats->grids[4][2], B);
    ck_assert_int_eq(stats->memsets, memsets);
    dm_variant vr = v;
    vr.dir = DM_DIR_BWD_ROWS;
    ck_assert_ptr_null(dm_module_find(ctx, &vr)); /* neither mode loads it */

    a = args(B, H, 1); /* a key-layout dbias (keys phase): reductions still */
    bwd_ok(ctx, &a);
    ck_assert_int_eq(stats->launches, 9);
    ck_assert(last_params().phase == 3 && last_params().dq_accum != 0);
    a = args(B, H, L); /* a query-layout dbias that broadcasts nothing: the keys phase's now */
    bwd_ok(ctx, &a);
    ck_assert_int_eq(stats->launches, 12);
    p = last_params();
    ck_assert(p.phase == 3 && p.dbias_fused == 1 && p.dq_accum != 0);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

/* The deterministic keys phase's launch order (attn_bwd_turns.lua's key_block_order): the key
 * blocks of the largest power of two <= 4 of K/V heads dividing Hkv interleaved along grid x;
 * the default mode's grid is the plain (key blocks, Hkv, B). */
START_TEST(the_deterministic_keys_phase_interleaves_up_to_four_kv_heads)
{
    dm_ctx *ctx = stub_ctx_cc("90");
    const int hkvs[] = {1, 2, 4}, shifts[] = {0, 1, 2};
    for (int i = 0; i < 3; i++) {
        dm_bwd_args a = dm_test_bwd_args(B, H, hkvs[i], L, D);
        for (int det = 0; det < 2; det++) {
            a.deterministic = det;
            bwd_ok(ctx, &a);
            const unsigned *g = stats->grids[stats->launches - 2]; /* phase 1 */
            dm_variant v = {.dir = det ? DM_DIR_BWD_DET : DM_DIR_BWD, /* (turns: bwddet's) */
                            .head_dim = D, .dtype = DM_F16, .arch = DM_SM90A};
            const int64_t blocks =
                (L + dm_module_find(ctx, &v)->block_m - 1) / dm_module_find(ctx, &v)->block_m;
            ck_assert_int_eq(dm_module_find(ctx, &v)->turn_order, det); /* the kernel decodes it */
            const int shift = det ? shifts[i] : 0;
            ck_assert_int_eq(last_params().turn_shift, shift);
            ck_assert_uint_eq(g[0], (uint64_t)blocks << shift);
            ck_assert_uint_eq(g[1], (unsigned)hkvs[i] >> shift);
            ck_assert_uint_eq(g[2], B);
        }
    }
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

/* The deterministic mode's dq turns are indexed by int32 in the kernels: 2^23 queries and keys
 * over B 2, H 4 make 2^20 query tiles of 2048 words, past 2^31 - 1, so the call is refused with
 * a message naming it; the default mode (no turns) runs. */
START_TEST(turns_past_int32_words_refuse_the_deterministic_mode)
{
    dm_ctx *ctx = stub_ctx_cc("90");
    const int64_t l = (int64_t)1 << 23;
    dm_bwd_args a = dm_test_bwd_args(B, H, HKV, l, D);
    bwd_ok(ctx, &a);
    a.deterministic = 1;
    ck_assert_int_eq(dm_bwd(ctx, &a, NULL), DM_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "deterministic"));
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "exceed 2^31 - 1"));
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

/* sm_90a's dense kernels without a query-layout mask load the keys phase's query tiles (and a
 * query-layout bias's) by tensor maps (a second kernel parameter, api/bwd_maps.c) and lse and
 * row_dot from scratch laid out by query tile, after dq's sums; a query-layout mask keeps the
 * copies: no maps, no tiles. */
START_TEST(the_keys_phase_gets_tensor_maps_and_tile_rows_unless_a_query_mask_is_staged)
{
    dm_ctx *ctx = stub_ctx_cc("90");
    dm_bwd_args a = args(0, 0, 0);
    bwd_ok(ctx, &a);
    dm_bwd_params p = last_params();
    ck_assert(p.query_rows != 0 && p.query_rows % 16 == 0);
    ck_assert_uint_ge(p.query_rows - p.dq_accum, (uint64_t)B * H * L * D * sizeof(float));
    dm_variant v = {.dir = DM_DIR_BWD, .head_dim = D, .dtype = DM_F16, .arch = DM_SM90A};
    ck_assert_int_eq(dm_module_find(ctx, &v)->tma_maps, 1);

    a = args(B, H, L); /* a query-layout bias: its tiles by a map too */
    bwd_ok(ctx, &a);
    ck_assert(last_params().query_rows != 0);
    v.bias = DM_LAYOUT_Q;
    ck_assert_int_eq(dm_module_find(ctx, &v)->tma_maps, 1);

    a.mask = dm_test_t4(0xc000000, DM_BOOL, B, H, L, L); /* and a query-layout mask: copies */
    bwd_ok(ctx, &a);
    ck_assert(last_params().query_rows == 0);
    v.mask = DM_LAYOUT_Q;
    ck_assert_int_eq(dm_module_find(ctx, &v)->tma_maps, 0);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

/* d128 on sm_90a: a block of two warpgroups owns 128 rows (every phase's grid.x is ceil(L / 128))
 * and its keys phase walks query tiles of 64 (the maps' boxes, the lse / row_dot tiles placed
 * after dq's sums); the last launch, phase 3, is the memory-pass entry's. */
START_TEST(d128_blocks_own_128_rows_and_walk_64_row_query_tiles)
{
    dm_ctx *ctx = stub_ctx_cc("90");
    dm_bwd_args a = args_d128();
    bwd_ok(ctx, &a);
    dm_variant v = {.dir = DM_DIR_BWD, .head_dim = 128, .dtype = DM_F16, .arch = DM_SM90A};
    const dm_kernel *k = dm_module_find(ctx, &v);
    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(k->threads, 256);
    ck_assert_int_eq(k->block_m, 128);
    ck_assert_int_eq(k->query_tile, 64);
    ck_assert_int_eq(k->tma_maps, 1);
    ck_assert_int_eq(stats->launches, 3);
    dm_bwd_params p = last_params();
    ck_assert_int_eq(p.phase, 3);
    ck_assert_uint_eq(stats->grid[0], (L + 127) / 128);
    ck_assert_ptr_eq(stats->launch_fn, k->fn_rows);
    ck_assert(p.query_rows != 0 && p.dq_accum != 0);
    ck_assert_uint_eq(p.query_rows - p.dq_accum, (uint64_t)B * H * L * 128 * sizeof(float));
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

/* A key-layout mask on sm_90a (d128: one block an SM, the stub's 132 SMs): the default mode's
 * keys phase can split a busy key block's walk (templates/attn_bwd_split.lua): its grid has
 * key_split blocks a key block (z = B x key_split), its scratch the marks (zeroed on the stream
 * before phase 0) and the parts' fp32 sums after the rows' scratch, for at most 1.25 x the
 * resident blocks or every key block, whichever is fewer. No split without a key mask or in the
 * deterministic mode, which keeps the marks alone: they rank the busy blocks' dq turns. */
START_TEST(a_key_mask_lets_the_default_mode_split_the_keys_phase)
{
    dm_ctx *ctx = stub_ctx_cc("90");
    dm_bwd_args a = args_d128();
    a.mask = dm_test_t4(0xc000000, DM_BOOL, B, H, 1, L);
    long memsets = stats->memsets;
    bwd_ok(ctx, &a);
    dm_variant v = {
        .dir = DM_DIR_BWD, .head_dim = 128, .dtype = DM_F16, .mask = DM_LAYOUT_K, .arch = DM_SM90A};
    const dm_kernel *k = dm_module_find(ctx, &v);
    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(k->key_split, 4);
    ck_assert_int_eq(k->blocks_per_sm, 1);
    ck_assert_int_eq(stats->launches, 3);
    ck_assert_uint_eq(stats->grids[1][0], (L + 127) / 128);
    ck_assert_uint_eq(stats->grids[1][1], HKV);
    ck_assert_uint_eq(stats->grids[1][2], B * 4);
    ck_assert_uint_eq(stats->grids[0][2], B); /* the memory passes: one block a row block */
    ck_assert_uint_eq(stats->grids[2][2], B);
    dm_bwd_params p = last_params();
    const uint64_t blocks = (uint64_t)B * HKV * ((L + 127) / 128);
    ck_assert(p.key_split != 0 && p.key_split % 256 == 0);
    ck_assert_uint_ge(p.key_split, p.query_rows + (uint64_t)B * H * ((L + 63) / 64) * 128 * 4);
    ck_assert_uint_eq(p.key_partials - p.key_split, ((1 + 2 * blocks) * 4 + 255) / 256 * 256);
    ck_assert_int_eq(p.key_slots, 132);
    ck_assert_int_eq(p.key_split_cap, (int)blocks);
    ck_assert_int_eq(stats->memsets, memsets + 1);
    ck_assert_uint_eq(stats->memset_ptr, p.key_split);
    ck_assert_uint_eq(stats->memset_bytes, p.key_partials - p.key_split);
    ck_assert_uint_eq(stats->memset_value, 0);

    /* deterministic: no split, the marks alone (ranks for the dq turns), then the turns */
    a.deterministic = 1;
    bwd_ok(ctx, &a);
    ck_assert_uint_eq(stats->grids[stats->launches - 2][2], B); /* phase 1: no parts */
    p = last_params();
    ck_assert(p.phase == 3 && p.key_split != 0 && p.key_partials == 0 && p.key_split_cap == 0);
    ck_assert_uint_eq(p.dq_turns - p.key_split, ((1 + 2 * blocks) * 4 + 255) / 256 * 256);
    ck_assert_int_eq(stats->memsets, memsets + 2);
    ck_assert_uint_eq(stats->memset_ptr, p.key_split);
    ck_assert_uint_eq(stats->memset_bytes, p.dq_turns - p.key_split);
    a = args_d128();
    a.deterministic = 0;
    bwd_ok(ctx, &a);
    v.mask = DM_LAYOUT_NONE;
    ck_assert_int_eq(dm_module_find(ctx, &v)->key_split, 0);
    ck_assert_uint_eq(stats->grids[stats->launches - 2][2], B);
    ck_assert(last_params().key_split == 0);
    ck_assert_int_eq(stats->memsets, memsets + 2);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

/* B = 0 has no element of any gradient: nothing built, nothing launched. */
START_TEST(an_empty_batch_launches_nothing)
{
    dm_ctx *ctx = stub_ctx();
    dm_bwd_args a = args(0, 0, 0);
    dm_tensor *rows[] = {&a.dout, &a.q, &a.k, &a.v, &a.o, &a.dq, &a.dk, &a.dv};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        rows[i]->shape[0] = 0;
        rows[i]->data = NULL;
    }
    a.lse.shape[0] = 0;
    a.lse.data = NULL;
    bwd_ok(ctx, &a);
    ck_assert_int_eq(stats->launches, 0);
    ck_assert_int_eq(stats->module_loads, 0);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(cache_dir);
}
END_TEST

#define TESTS(X) \
    X(rows_then_keys_over_their_grids_without_dbias) \
    X(a_key_layout_dbias_is_fused_unless_its_sums_cross_blocks) \
    X(a_query_layout_dbias_is_fused_only_without_broadcast) \
    X(the_default_mode_sums_dq_by_reductions_where_the_engine_has_them) \
    X(the_deterministic_keys_phase_interleaves_up_to_four_kv_heads) \
    X(turns_past_int32_words_refuse_the_deterministic_mode) \
    X(the_keys_phase_gets_tensor_maps_and_tile_rows_unless_a_query_mask_is_staged) \
    X(d128_blocks_own_128_rows_and_walk_64_row_query_tiles) \
    X(a_key_mask_lets_the_default_mode_split_the_keys_phase) \
    X(an_empty_batch_launches_nothing)
DM_TEST_MAIN("bwd_launch", TESTS)
