/* test_gpu_varlen.c: dm_fwd_varlen on a GPU against dm_ref_fwd_varlen (SPEC §5), and the dense
 * dm_fwd with few queries through the decode path against dm_ref_fwd. Every mask x bias layout
 * pair x {MHA, GQA, MQA} x {causal, not} x sequence mixes (empty sequences, single queries and
 * keys, lengths off the tile sizes, 1-16 queries over thousands of keys); the tiled path and the
 * decode path (where it applies) with 1 and several key splits must each match the reference on
 * the same inputs. Fresh random inputs each run (the seed is printed on failure); o and lse are
 * poisoned before every call, and rows no sequence owns (guard rows past total_q, rows past
 * max_seqlen_q) must keep the poison. Skipped without a GPU. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fwd_varlen_plan.h"
#include "gpu_util.h"
#include "half.h"
#include "harness.h"
#include "reference.h"
#include "varlen_case.h"

/* One kernel choice a case is run with; the reference is computed once per case. */
typedef struct vl_run {
    int path, num_splits;
} vl_run;

typedef struct vl_tally {
    long rows, empty_rows, unwritten_rows, runs;
} vl_tally;

/* The reference, once per case, into o_ref and lse_ref (poisoned first, like the GPU's). */
static void vl_reference(vl_data *d, const vl_case *c)
{
    dm_fwd_varlen_args h = vl_args(d, c, true);
    dm_fwd_varlen_plan plan;
    dm_ctx *ctx = NULL;
    d->o_ref = malloc(d->o_elems * 2);
    d->lse_ref = malloc(d->lse_elems * sizeof(float));
    ck_assert(d->o_ref && d->lse_ref);
    memset(d->o_ref, 0xff, d->o_elems * 2);
    memset(d->lse_ref, 0xff, d->lse_elems * sizeof(float));
    h.o.data = d->o_ref;
    h.lse.data = d->lse_ref;
    ck_assert_int_eq(dm_ctx_create(&ctx, DM_NO_DEVICE), DM_OK);
    dm_status st = dm_fwd_varlen_check(ctx, "dm_ref_fwd_varlen", &h, &plan);
    if (st == DM_OK)
        st = dm_ref_fwd_varlen(ctx, &h, &plan);
    ck_assert_msg(st == DM_OK, "reference: %s", dm_errmsg(ctx));
    dm_ctx_destroy(ctx);
}

/* The decode path's conditions (dmattn.h, dm_fwd_path), on the mask attended with: with a window
 * that applies, mask' (key-based iff bias and mask are, heads their broadcast). */
static bool decode_applies(const vl_case *c, int64_t max_q, int64_t max_k)
{
    dm_layout mask = c->mask;
    int mask_heads = c->mask_heads;
    if (c->window > 0 && max_k > c->window) {
        mask = c->bias == DM_LAYOUT_Q || c->mask == DM_LAYOUT_Q ? DM_LAYOUT_Q : DM_LAYOUT_K;
        mask_heads =
            c->mask == DM_LAYOUT_NONE || c->mask_heads == 1 ? c->bias_heads : c->mask_heads;
    }
    bool mask_ok = mask == DM_LAYOUT_NONE ||
                   (mask == DM_LAYOUT_K && (mask_heads == 1 || mask_heads == c->Hkv));
    bool bias_ok = c->bias == DM_LAYOUT_NONE ||
                   (c->bias == DM_LAYOUT_K && (c->bias_heads == 1 || c->bias_heads == c->Hkv));
    return (int64_t)(c->H / c->Hkv) * max_q <= 64 && mask_ok && bias_ok;
}

static bool all_bits(const void *p, size_t bytes, unsigned char b)
{
    for (size_t i = 0; i < bytes; i++)
        if (((const unsigned char *)p)[i] != b)
            return false;
    return true;
}

/* Poisons o and lse, runs the kernel, compares with the reference; fails with the seed. */
static void vl_run_once(vl_data *d, const vl_case *c, const vl_run *r, uint64_t seed,
                        vl_tally *tally)
{
    static const char *path[] = {"auto", "tiled", "decode"};
    char what[768];
    dm_ctx *ctx = gpu_ctx();
    vl_case shown = *c;
    shown.max_q = d->max_q;
    shown.max_k = d->max_k;
    int w = snprintf(what, sizeof what, "path=%s splits=%d ", path[r->path], r->num_splits);
    vl_describe(&shown, what + w, sizeof what - (size_t)w);

    memset(d->o.host_base, 0xff, d->o.bytes); /* NaN in f16 and bf16 */
    memset(d->lse.host_base, 0xff, d->lse.bytes);
    gpu_twin_upload(&d->o);
    gpu_twin_upload(&d->lse);
    dm_fwd_varlen_args a = vl_args(d, c, false);
    a.path = r->path;
    a.num_splits = r->num_splits;
    dm_status st = dm_fwd_varlen(ctx, &a, NULL);
    ck_assert_msg(st == DM_OK, "%s [seed %llu]: dm_fwd_varlen: %s", what, (unsigned long long)seed,
                  dm_errmsg(ctx));
    CUresult cr = gpu_drv()->CtxSynchronize();
    ck_assert_msg(cr == CUDA_SUCCESS, "%s [seed %llu]: kernel failed: CUresult %d", what,
                  (unsigned long long)seed, (int)cr);
    gpu_twin_download(&d->o);
    gpu_twin_download(&d->lse);

    const uint16_t *o = d->o.host.data;
    const float *lse = d->lse.host.data;
    int64_t H = c->H, D = c->D, ls = d->total_q + VL_GUARD_ROWS;
    double num = 0, den = 0, lse_err = 0;
    long nan = 0, empty_err = 0, poison_err = 0;
    for (int64_t t = 0; t < d->total_q + VL_GUARD_ROWS; t++)
        for (int64_t h = 0; h < H; h++) {
            size_t row = (size_t)((t * H + h) * D), li = (size_t)(h * ls + t);
            /* rows the reference leaves alone (guard rows, rows past max_seqlen_q) */
            if (t >= d->total_q || all_bits(d->o_ref + row, (size_t)D * 2, 0xff)) {
                if (!all_bits(o + row, (size_t)D * 2, 0xff) || !all_bits(lse + li, 4, 0xff))
                    poison_err++;
                tally->unwritten_rows++;
                continue;
            }
            float lr = d->lse_ref[li], lg = lse[li];
            if (isinf(lr) && lr > 0) { /* no visible key: o = 0 exactly, lse = +inf */
                tally->empty_rows++;
                for (int64_t e = 0; e < D; e++)
                    if (gpu_get(o, c->dtype, row + (size_t)e) != 0.f)
                        empty_err++;
                if (!(isinf(lg) && lg > 0))
                    empty_err++;
                continue;
            }
            tally->rows++;
            if (!isfinite(lg))
                nan++;
            else if (fabs(lg - lr) > lse_err)
                lse_err = fabs(lg - lr);
            for (int64_t e = 0; e < D; e++) {
                float g = gpu_get(o, c->dtype, row + (size_t)e),
                      x = gpu_get(d->o_ref, c->dtype, row + (size_t)e);
                if (!isfinite(g)) {
                    nan++;
                    continue;
                }
                num += (double)(g - x) * (g - x);
                den += (double)x * x;
            }
        }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    double tol = c->dtype == DM_BF16 ? 1e-2 : 2e-3; /* as test_gpu_fwd */
    bool ok = nan == 0 && empty_err == 0 && poison_err == 0 && rel < tol && lse_err < 2e-3;
    tally->runs++;
    ck_assert_msg(ok,
                  "%s [seed %llu]: rel_err=%.3e (tol %.0e) lse_err=%.3e nan=%ld "
                  "empty_row_errors=%ld poison_overwritten=%ld",
                  what, (unsigned long long)seed, rel, tol, lse_err, nan, empty_err, poison_err);
}

/* One case on fresh inputs: the reference once, then every run; decode runs only where the
 * decode path applies. */
static vl_tally vl_check(const vl_case *c, const vl_run *runs, int n_runs)
{
    vl_data d;
    vl_tally tally = {0, 0, 0, 0};
    uint64_t seed = gpu_fresh_seed();
    vl_build(&d, c, seed);
    vl_reference(&d, c);
    bool decode = decode_applies(c, d.max_q, d.max_k);
    for (int i = 0; i < n_runs; i++)
        if (runs[i].path != DM_PATH_DECODE || decode)
            vl_run_once(&d, c, &runs[i], seed, &tally);
    vl_free(&d);
    return tally;
}

static const vl_run every_path[] = {
    {DM_PATH_AUTO, 0},   {DM_PATH_TILED, 0},   {DM_PATH_DECODE, 1},
    {DM_PATH_DECODE, 4}, {DM_PATH_DECODE, 13}, {DM_PATH_DECODE, 0},
};
#define N_EVERY_PATH (int)(sizeof every_path / sizeof every_path[0])

/* ---- sequence mixes ---- */

typedef struct mix {
    int B;
    int q[VL_MAX_SEQS], k[VL_MAX_SEQS];
} mix;

static const mix mixes[] = {
    /* empty sequences (no queries, no keys, neither), one query, one key, lengths off the tiles;
     * 77 queries: the decode path does not apply */
    {7, {0, 1, 13, 0, 77, 2, 1}, {9, 0, 200, 0, 131, 1, 1}},
    /* decode: 1-16 queries over thousands of keys (MHA and GQA: (H/Hkv) x 16 <= 64) */
    {6, {1, 16, 0, 7, 3, 1}, {2049, 4000, 1500, 0, 65, 1}},
    /* decode for MQA (8 heads x 8 queries = 64) */
    {5, {8, 1, 0, 5, 1}, {3001, 1, 900, 0, 2500}},
    /* prefill: queries = keys over several tiles, the second sequence starting at a key whose
     * packed key-layout row is not 16-byte aligned (staged a word a key, or read key by key) */
    {2, {301, 520}, {301, 520}},
};

static void heads_of(int kind, int *H, int *Hkv)
{
    static const int h[3][2] = {{4, 4}, {8, 2}, {8, 1}}; /* MHA, GQA, MQA */
    *H = h[kind][0];
    *Hkv = h[kind][1];
}

/* Every bias layout x head kind x causal x mix for one mask layout: Hm cycles through 1, Hkv
 * and H, so decode sees both head counts it takes and tiled the one it must take alone. */
static void check_mask_layout(dm_layout mask)
{
    vl_tally total = {0, 0, 0, 0};
    int n = 0;
    for (int bias = 0; bias < 3; bias++)
        for (int kind = 0; kind < 3; kind++)
            for (int causal = 0; causal < 2; causal++)
                for (size_t m = 0; m < sizeof mixes / sizeof mixes[0]; m++, n++) {
                    vl_case c = {.B = mixes[m].B,
                                 .D = 64,
                                 .dtype = DM_BF16,
                                 .mask = mask,
                                 .bias = (dm_layout)bias,
                                 .mask_density = 0.8,
                                 .causal = causal};
                    heads_of(kind, &c.H, &c.Hkv);
                    int hm[3] = {1, c.Hkv, c.H};
                    c.mask_heads = hm[n % 3];
                    c.bias_heads = hm[(n + 1) % 3];
                    memcpy(c.len_q, mixes[m].q, sizeof c.len_q);
                    memcpy(c.len_k, mixes[m].k, sizeof c.len_k);
                    vl_tally t = vl_check(&c, every_path, N_EVERY_PATH);
                    total.rows += t.rows;
                    total.empty_rows += t.empty_rows;
                    total.runs += t.runs;
                }
    fprintf(stderr, "mask-%d: %ld runs, %ld rows, %ld empty rows\n", (int)mask, total.runs,
            total.rows, total.empty_rows);
    ck_assert_int_gt(total.empty_rows, 0);
}

START_TEST(varlen_without_a_mask_matches_every_bias_layout_head_kind_and_path)
{
    check_mask_layout(DM_LAYOUT_NONE);
}
END_TEST

START_TEST(varlen_with_a_query_based_mask_matches_every_bias_layout_head_kind_and_path)
{
    check_mask_layout(DM_LAYOUT_Q);
}
END_TEST

START_TEST(varlen_with_a_key_based_mask_matches_every_bias_layout_head_kind_and_path)
{
    check_mask_layout(DM_LAYOUT_K);
}
END_TEST

/* A key-based mask and bias stored head-major ((Hkv, total_k) memory, keys contiguous per head)
 * take the staged, cp.async paths that (total_k, Hkv) rows, keys Hkv apart, cannot: the same
 * results on every path. */
START_TEST(head_major_key_layouts_match_on_every_path)
{
    for (int causal = 0; causal < 2; causal++)
        for (size_t m = 0; m < sizeof mixes / sizeof mixes[0]; m++) {
            vl_case c = {.B = mixes[m].B, .D = 128, .dtype = DM_BF16, .mask = DM_LAYOUT_K,
                         .bias = DM_LAYOUT_K, .mask_density = 0.8, .causal = causal,
                         .head_major = true};
            heads_of(1, &c.H, &c.Hkv);
            c.mask_heads = c.Hkv;
            c.bias_heads = m % 2 ? c.Hkv : 1;
            memcpy(c.len_q, mixes[m].q, sizeof c.len_q);
            memcpy(c.len_k, mixes[m].k, sizeof c.len_k);
            vl_check(&c, every_path, N_EVERY_PATH);
        }
}
END_TEST

START_TEST(zero_query_sequences_write_nothing_and_zero_key_sequences_give_zero_and_inf)
{
    /* Many sequences without queries or keys among a few real ones; the last two calls hold no
     * query at all (total_q = 0: nothing may be written, the guard rows included). */
    static const mix edge[] = {
        {8, {0, 3, 0, 0, 5, 1, 0, 2}, {7, 0, 0, 40, 0, 9, 0, 0}},
        {3, {0, 0, 0}, {5, 0, 17}},
        {2, {0, 0}, {0, 0}},
    };
    vl_tally total = {0, 0, 0, 0};
    for (size_t m = 0; m < 3; m++)
        for (int kind = 0; kind < 3; kind++) {
            vl_case c = {.B = edge[m].B,
                         .D = 128,
                         .dtype = DM_F16,
                         .mask = DM_LAYOUT_K,
                         .bias = DM_LAYOUT_K,
                         .mask_density = 0.9,
                         .causal = kind == 1};
            heads_of(kind, &c.H, &c.Hkv);
            c.mask_heads = 1;
            c.bias_heads = c.Hkv;
            memcpy(c.len_q, edge[m].q, sizeof c.len_q);
            memcpy(c.len_k, edge[m].k, sizeof c.len_k);
            vl_tally t = vl_check(&c, every_path, N_EVERY_PATH);
            total.empty_rows += t.empty_rows;
            total.unwritten_rows += t.unwritten_rows;
        }
    ck_assert_int_gt(total.empty_rows, 0);
    ck_assert_int_gt(total.unwritten_rows, 0);
}
END_TEST

START_TEST(rows_past_max_seqlen_q_stay_unwritten_and_keys_past_max_seqlen_k_are_ignored)
{
    /* max_seqlen below some sequences' lengths: the kernels clamp (dmattn.h); the reference
     * clamps the same way (causal on the clamped lengths). Unsplit paths only: with split keys
     * the combine writes every token's row, and rows past max_seqlen_q are unspecified there
     * (dmattn.h). */
    static const vl_run runs[] = {{DM_PATH_TILED, 0}, {DM_PATH_DECODE, 1}};
    for (int causal = 0; causal < 2; causal++) {
        vl_case c = {.B = 4,
                     .len_q = {3, 12, 1, 6},
                     .len_k = {500, 90, 2000, 7},
                     .max_q = 8,
                     .max_k = 1000,
                     .H = 8,
                     .Hkv = 2,
                     .D = 64,
                     .dtype = DM_BF16,
                     .mask = DM_LAYOUT_K,
                     .bias = DM_LAYOUT_K,
                     .mask_heads = 2,
                     .bias_heads = 1,
                     .mask_density = 0.8,
                     .causal = causal};
        vl_check(&c, runs, 2);
    }
}
END_TEST

START_TEST(an_fp32_bias_and_softcap_match_in_f16)
{
    for (int b = 1; b < 3; b++) {
        vl_case c = {.B = 6,
                     .len_q = {1, 16, 0, 7, 3, 1},
                     .len_k = {2049, 400, 150, 0, 65, 1},
                     .H = 8,
                     .Hkv = 2,
                     .D = 128,
                     .dtype = DM_F16,
                     .mask = DM_LAYOUT_K,
                     .bias = (dm_layout)b,
                     .mask_heads = 2,
                     .bias_heads = 2,
                     .bias_f32 = true,
                     .mask_density = 0.7,
                     .causal = true,
                     .softcap = 4.f};
        vl_check(&c, every_path, N_EVERY_PATH);
    }
}
END_TEST

START_TEST(one_query_over_524288_keys_matches)
{
    /* The long row of issue 15's speed target: split-KV must carry it. */
    static const vl_run runs[] = {{DM_PATH_AUTO, 0}, {DM_PATH_DECODE, 0}, {DM_PATH_DECODE, 13}};
    vl_case c = {.B = 1,
                 .len_q = {1},
                 .len_k = {524288},
                 .H = 32,
                 .Hkv = 8,
                 .D = 128,
                 .dtype = DM_BF16,
                 .bias = DM_LAYOUT_K,
                 .bias_heads = 8};
    vl_check(&c, runs, 3);
}
END_TEST

START_TEST(unequal_decode_batches_run_as_work_items_longest_first_and_match)
{
    /* Unequal lengths on the decode path, split: the blocks are work items, longest first
     * (decode_item), 70 sequences so the lanes take three chunks of 32. The automatic splits
     * here are 1024 keys (DM_DECODE_MIN_SPLIT_TILES x 64), forced ones 9000 / 8 -> 1152:
     * lengths of whole splits (no partial item), none (an empty item), equal partials (ties
     * broken by the sequence), and a few long ones, so full items, partial items and the splits
     * past a sequence all occur. Equal lengths (the last case) keep the grid's order. The tiled
     * path must agree. */
    static const int pattern[10] = {1024, 0, 700, 2048, 700, 1, 9000, 3000, 65, 5120};
    static const vl_run runs[] = {{DM_PATH_DECODE, 0}, {DM_PATH_DECODE, 8}, {DM_PATH_TILED, 0}};
    for (int m = 0; m < 3; m++) {
        vl_case c = {.B = 70, .H = 32, .Hkv = 8, .D = 128, .dtype = DM_BF16,
                     .mask = DM_LAYOUT_K, .bias = DM_LAYOUT_K, .mask_heads = 1, .bias_heads = 8,
                     .mask_density = 0.9, .causal = m == 1};
        for (int b = 0; b < c.B; b++) {
            c.len_q[b] = 1 + (b * 3 + m) % 8;
            c.len_k[b] = m == 2 ? 3000 : pattern[b % 10] + (b / 10 == 3 ? 64 : 0);
        }
        vl_check(&c, runs, 3);
    }
}
END_TEST

START_TEST(dense_few_query_calls_match_through_the_decode_and_tiled_paths)
{
    /* dm_fwd with Lq = 4 and a key-layout bias: the decode path's dense use (issue 15: today's
     * decode batches are dense calls), forced each way, with and without splits. */
    static const int paths[][2] = {{DM_PATH_TILED, 0},
                                   {DM_PATH_DECODE, 1},
                                   {DM_PATH_DECODE, 4},
                                   {DM_PATH_DECODE, 13},
                                   {DM_PATH_AUTO, 0}};
    for (int causal = 0; causal < 2; causal++)
        for (int p = 0; p < 5; p++) {
            gpu_case c = {.B = 3,
                          .H = 32,
                          .Hkv = 8,
                          .Lq = 4,
                          .Lk = 3001,
                          .D = 128,
                          .dtype = DM_BF16,
                          .mask = causal ? DM_LAYOUT_K : DM_LAYOUT_NONE,
                          .bias = DM_LAYOUT_K,
                          .mask_batch = 3,
                          .mask_heads = 1,
                          .bias_batch = 3,
                          .bias_heads = 8,
                          .mask_density = 0.8,
                          .causal = causal,
                          .path = paths[p][0],
                          .num_splits = paths[p][1]};
            char label[64];
            snprintf(label, sizeof label, "dense Lq=4 path %d splits %d%s", paths[p][0],
                     paths[p][1], causal ? " causal" : "");
            gpu_check_case(&c, label);
        }
}
END_TEST

/* ---- a top-k window (dm_window_mask_varlen inside dm_fwd_varlen) ---- */

/* W = 64 over sequences of 0, 1, 40, 64 (<= W: the mask stands) and 300-3000 keys (>> W), one
 * without queries; every bias layout x mask layout x head kind x causal, heads cycling through
 * 1, Hkv and H (a mask's either the bias's or 1, so they broadcast). The reference computes
 * mask' itself (dm_ref_window_mask_varlen): a wrong selection moves o by far more than bf16
 * rounding, the +30 bias of query-layout columns past a sequence's keys above all. */
START_TEST(varlen_with_a_window_matches_for_every_layout_pair_head_kind_and_path)
{
    static const mix wmix = {7, {3, 1, 0, 8, 2, 16, 1}, {0, 1, 40, 64, 700, 3000, 300}};
    static const vl_run runs[] = {
        {DM_PATH_AUTO, 0}, {DM_PATH_TILED, 0}, {DM_PATH_DECODE, 1}, {DM_PATH_DECODE, 0}};
    vl_tally total = {0, 0, 0, 0};
    int n = 0;
    for (int bias = DM_LAYOUT_Q; bias <= DM_LAYOUT_K; bias++)
        for (int mask = 0; mask < 3; mask++)
            for (int kind = 0; kind < 3; kind++)
                for (int causal = 0; causal < 2; causal++, n++) {
                    vl_case c = {.B = wmix.B, .D = 64, .dtype = DM_BF16, .mask = (dm_layout)mask,
                                 .bias = (dm_layout)bias, .mask_density = 0.8, .causal = causal,
                                 .window = 64, .head_major = n % 4 == 3};
                    heads_of(kind, &c.H, &c.Hkv);
                    int hm[3] = {1, c.Hkv, c.H};
                    c.bias_heads = hm[n % 3];
                    c.mask_heads = n % 2 ? c.bias_heads : 1;
                    memcpy(c.len_q, wmix.q, sizeof c.len_q);
                    memcpy(c.len_k, wmix.k, sizeof c.len_k);
                    vl_tally t = vl_check(&c, runs, 4);
                    total.rows += t.rows;
                    total.runs += t.runs;
                }
    fprintf(stderr, "window 64: %ld runs, %ld rows\n", total.runs, total.rows);
    ck_assert_int_gt(total.runs, 36 * 2);
}
END_TEST

/* A window that keeps every key of every sequence (max_seqlen_k <= W): no helper runs, the call
 * is the plain one; and decode-sized batches with a key-based bias, where mask' is key-based and
 * the decode path takes it. */
START_TEST(varlen_windows_at_and_past_the_longest_sequence_and_on_the_decode_path_match)
{
    static const vl_run runs[] = {{DM_PATH_AUTO, 0}, {DM_PATH_DECODE, 4}, {DM_PATH_TILED, 0}};
    for (int w = 0; w < 3; w++) {
        vl_case c = {.B = 6,
                     .len_q = {1, 8, 0, 7, 3, 1},
                     .len_k = {2049, 4000, 1500, 0, 65, 1},
                     .H = 32,
                     .Hkv = 8,
                     .D = 128,
                     .dtype = DM_BF16,
                     .mask = w == 2 ? DM_LAYOUT_K : DM_LAYOUT_NONE,
                     .bias = DM_LAYOUT_K,
                     .mask_heads = 1,
                     .bias_heads = 8,
                     .mask_density = 0.9,
                     .causal = w == 1,
                     .window = w == 0 ? 4000 : w == 1 ? 5000 : 256};
        vl_check(&c, runs, 3);
    }
}
END_TEST

#define TESTS(X) \
    X(varlen_without_a_mask_matches_every_bias_layout_head_kind_and_path) \
    X(varlen_with_a_query_based_mask_matches_every_bias_layout_head_kind_and_path) \
    X(varlen_with_a_key_based_mask_matches_every_bias_layout_head_kind_and_path) \
    X(head_major_key_layouts_match_on_every_path) \
    X(zero_query_sequences_write_nothing_and_zero_key_sequences_give_zero_and_inf) \
    X(rows_past_max_seqlen_q_stay_unwritten_and_keys_past_max_seqlen_k_are_ignored) \
    X(an_fp32_bias_and_softcap_match_in_f16) \
    X(one_query_over_524288_keys_matches) \
    X(unequal_decode_batches_run_as_work_items_longest_first_and_match) \
    X(dense_few_query_calls_match_through_the_decode_and_tiled_paths) \
    X(varlen_with_a_window_matches_for_every_layout_pair_head_kind_and_path) \
    X(varlen_windows_at_and_past_the_longest_sequence_and_on_the_decode_path_match)
DM_TEST_MAIN_SKIP("gpu_varlen", TESTS, dm_gpu_absent)
