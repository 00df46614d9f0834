/* test_gpu_combine.c: the split-KV combine kernel (templates/attn_combine.lua, launched by
 * dm_fwd_combine_launch) on a GPU against the float64 combine (tests/combine_ref.c), on random
 * partials as the decode kernel leaves them: rows with every split empty (o = 0 exactly, lse =
 * +inf), rows with one split empty or all but one, lse spreads that underflow exp without the max,
 * the empty splits' o_s NaN (never to be used). Split counts 1, 2, 7, 64 (more than a group's 32
 * weights), head dims 64, 128, 256 and the smaller groups, both dtypes, with and without lse,
 * strided and misaligned o. Outputs poisoned first; o's pad columns and an unrequested lse must
 * stay poisoned. Fresh random inputs each run (the seed is printed on failure). Skipped without
 * a GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "combine_ref.h"
#include "fwd_combine.h"
#include "gpu_util.h"
#include "half.h"
#include "harness.h"

enum { O_PAD = 8 }; /* o rows are D + O_PAD elements apart; the pad is never written */

typedef struct combine_case {
    int B, Lq, H, D, n_splits;
    dm_dtype dtype;
    bool with_lse;
    int o_offset;  /* o starts this many elements past an aligned base: 1 = scalar stores */
    int part_pad;  /* part_stride = rows * H + part_pad (the gap is NaN, never read) */
    double spread; /* lse_s drawn from [-spread, spread] */
} combine_case;

typedef struct combine_errors {
    double o_rel_err, o_max_abs_err, lse_max_rel_err;
    long nan_count, empty_row_errors, guard_writes, lse_untouched_errors;
} combine_errors;

static float elem_to_float(dm_dtype t, uint16_t x)
{
    return t == DM_F16 ? dm_half_to_float(x) : dm_bf16_to_float(x);
}

/* Split s of pair p: empty when the pair's pattern says so. Pattern p % 6: 0 every split empty,
 * 1 split p % n_splits empty, 2 every split but p % n_splits empty, else none empty. */
static bool split_empty(int64_t p, int s, int n_splits)
{
    switch (p % 6) {
    case 0: return true;
    case 1: return s == p % n_splits;
    case 2: return s != p % n_splits;
    default: return false;
    }
}

static void fill_partials(const combine_case *c, int64_t part_stride, gpu_twin *o_part,
                          gpu_twin *lse_part, uint64_t *seed)
{
    const int64_t pairs = (int64_t)c->B * c->Lq * c->H;
    float *o = o_part->host.data, *lse = lse_part->host.data;
    for (int64_t i = 0; i < (int64_t)c->n_splits * part_stride; i++) {
        lse[i] = NAN; /* the gap between splits stays NaN */
        for (int d = 0; d < c->D; d++)
            o[i * c->D + d] = NAN;
    }
    for (int s = 0; s < c->n_splits; s++)
        for (int64_t p = 0; p < pairs; p++) {
            const int64_t at = s * part_stride + p;
            if (split_empty(p, s, c->n_splits)) {
                lse[at] = -INFINITY; /* and its o_s stays NaN: the kernel must not use it */
                continue;
            }
            lse[at] = (float)(c->spread * gpu_uniform(seed));
            for (int d = 0; d < c->D; d++)
                o[at * c->D + d] = (float)gpu_uniform(seed);
        }
}

/* Runs c on the GPU and through combine_ref; returns DM_OK or the failing status (msg says). */
static dm_status run_case(const combine_case *c, uint64_t seed, combine_errors *e, char *msg,
                          size_t msg_bytes)
{
    const int rows = c->B * c->Lq;
    const int64_t pairs = (int64_t)rows * c->H, part_stride = pairs + c->part_pad;
    gpu_twin o_part, lse_part, o, lse;
    uint64_t s = seed ? seed : 1;
    memset(e, 0, sizeof *e);

    int64_t n_part = c->n_splits * part_stride;
    int64_t part_shape[1] = {n_part * c->D}, lse_part_shape[1] = {n_part};
    gpu_twin_alloc(&o_part, DM_F32, 1, part_shape, NULL, 0, 0);
    gpu_twin_alloc(&lse_part, DM_F32, 1, lse_part_shape, NULL, 0, 0);
    const int64_t pitch = c->D + O_PAD;
    int64_t o_shape[4] = {c->B, c->Lq, c->H, c->D};
    int64_t o_strides[4] = {(int64_t)c->Lq * c->H * pitch, c->H * pitch, pitch, 1};
    gpu_twin_alloc(&o, c->dtype, 4, o_shape, o_strides, (size_t)(pairs * pitch), c->o_offset);
    int64_t lse_shape[3] = {c->B, c->H, c->Lq};
    gpu_twin_alloc(&lse, DM_F32, 3, lse_shape, NULL, 0, 0);

    fill_partials(c, part_stride, &o_part, &lse_part, &s);
    memset(o.host_base, 0xff, o.bytes); /* NaN in f16 and bf16 */
    memset(lse.host_base, 0xff, lse.bytes);
    gpu_twin_upload(&o_part);
    gpu_twin_upload(&lse_part);
    gpu_twin_upload(&o);
    gpu_twin_upload(&lse);

    dm_combine_params p = {.o_part = o_part.dev_base, .lse_part = lse_part.dev_base,
                           .o = (uint64_t)(uintptr_t)o.dev.data,
                           .lse = c->with_lse ? lse.dev_base : 0,
                           .o_stride = {o_strides[0], o_strides[1], o_strides[2]},
                           .lse_stride = {(int64_t)c->H * c->Lq, c->Lq, 1},
                           .part_stride = part_stride, .n_splits = c->n_splits, .rows = rows,
                           .H = c->H, .Lq = c->Lq};
    dm_ctx *ctx = gpu_ctx();
    dm_status st = dm_fwd_combine_launch(ctx, "test_gpu_combine", c->dtype, c->D, &p, NULL);
    if (st != DM_OK) {
        snprintf(msg, msg_bytes, "dm_fwd_combine_launch: %s", dm_errmsg(ctx));
    } else {
        CUresult cr = gpu_drv()->CtxSynchronize();
        if (cr != CUDA_SUCCESS) {
            snprintf(msg, msg_bytes, "kernel failed: CUresult %d", (int)cr);
            st = DM_ERR_CUDA;
        }
    }
    double *o_ref = NULL, *lse_ref = NULL;
    if (st == DM_OK) {
        gpu_twin_download(&o);
        gpu_twin_download(&lse);
        o_ref = malloc(sizeof *o_ref * (size_t)(pairs * c->D));
        lse_ref = malloc(sizeof *lse_ref * (size_t)pairs);
        ck_assert(o_ref && lse_ref);
        combine_ref(o_part.host.data, lse_part.host.data, c->n_splits, part_stride, rows, c->H,
                    c->D, o_ref, lse_ref);

        const uint16_t *ob = o.host_base, *og = o.host.data;
        const float *lg = lse.host.data;
        double num = 0, den = 0;
        for (int i = 0; i < c->o_offset; i++) /* before o's first element */
            e->guard_writes += ob[i] != 0xffff;
        for (int64_t pr = 0; pr < pairs; pr++) {
            const int64_t t = pr / c->H, h = pr % c->H, b = t / c->Lq, i = t % c->Lq;
            const uint16_t *row = og + b * o_strides[0] + i * o_strides[1] + h * o_strides[2];
            const bool empty = isinf(lse_ref[pr]);
            for (int d = 0; d < c->D; d++) {
                const double got = elem_to_float(c->dtype, row[d]), want = o_ref[pr * c->D + d];
                if (!isfinite(got))
                    e->nan_count++;
                else if (empty && got != 0)
                    e->empty_row_errors++;
                num += (got - want) * (got - want);
                den += want * want;
                e->o_max_abs_err = fmax(e->o_max_abs_err, fabs(got - want));
            }
            for (int d = c->D; d < pitch; d++)
                e->guard_writes += row[d] != 0xffff;
            const float l = lg[b * c->H * c->Lq + h * c->Lq + i];
            if (!c->with_lse) {
                uint32_t bits;
                memcpy(&bits, &l, 4);
                e->lse_untouched_errors += bits != 0xffffffffu;
            } else if (empty) {
                e->empty_row_errors += !(isinf(l) && l > 0);
            } else if (!isfinite(l)) {
                e->nan_count++;
            } else {
                e->lse_max_rel_err =
                    fmax(e->lse_max_rel_err, fabs(l - lse_ref[pr]) / fmax(1, fabs(lse_ref[pr])));
            }
        }
        e->o_rel_err = den > 0 ? sqrt(num / den) : sqrt(num);
    }
    free(o_ref);
    free(lse_ref);
    gpu_twin_free(&o_part);
    gpu_twin_free(&lse_part);
    gpu_twin_free(&o);
    gpu_twin_free(&lse);
    return st;
}

static void check_case(const combine_case *c, const char *label)
{
    combine_errors e;
    char msg[1024] = "";
    const uint64_t seed = gpu_fresh_seed();
    dm_status st = run_case(c, seed, &e, msg, sizeof msg);
    /* o is a convex combination of values in [-1, 1]: its own rounding (bf16 8 significant bits,
     * f16 11) dominates; lse is fp32 throughout */
    const double rel_tol = c->dtype == DM_BF16 ? 1e-2 : 2e-3;
    const double abs_tol = c->dtype == DM_BF16 ? 4e-3 : 1e-3;
    const bool ok = st == DM_OK && e.nan_count == 0 && e.empty_row_errors == 0 &&
                    e.guard_writes == 0 && e.lse_untouched_errors == 0 && e.o_rel_err < rel_tol &&
                    e.o_max_abs_err < abs_tol && e.lse_max_rel_err < 2e-5;
    fprintf(stderr, "%-40s %s rel=%.2e max_abs=%.2e lse=%.2e nan=%ld empty=%ld guard=%ld\n", label,
            ok ? "ok  " : "FAIL", e.o_rel_err, e.o_max_abs_err, e.lse_max_rel_err, e.nan_count,
            e.empty_row_errors, e.guard_writes + e.lse_untouched_errors);
    ck_assert_msg(ok,
                  "%s: B=%d Lq=%d H=%d D=%d splits=%d %s lse=%d o_offset=%d part_pad=%d "
                  "[seed %llu] status=%s %s rel_err=%.3e max_abs=%.3e lse_rel_err=%.3e nan=%ld "
                  "empty_row_errors=%ld guard_writes=%ld lse_written=%ld",
                  label, c->B, c->Lq, c->H, c->D, c->n_splits, dm_dtype_name(c->dtype),
                  c->with_lse, c->o_offset, c->part_pad, (unsigned long long)seed,
                  dm_status_name(st), msg, e.o_rel_err, e.o_max_abs_err, e.lse_max_rel_err,
                  e.nan_count, e.empty_row_errors, e.guard_writes, e.lse_untouched_errors);
}

/* 3 x 7 tokens x 5 heads = 105 pairs: not a multiple of any block's pair count. */
static combine_case base(int D, dm_dtype t, int n_splits)
{
    combine_case c = {.B = 3, .Lq = 7, .H = 5, .D = D, .n_splits = n_splits, .dtype = t,
                      .with_lse = true, .spread = 20};
    return c;
}

START_TEST(every_split_count_head_dim_and_dtype_matches_with_and_without_lse)
{
    static const int splits[] = {1, 2, 7, 64}, dims[] = {64, 128, 256};
    for (size_t s = 0; s < 4; s++)
        for (size_t d = 0; d < 3; d++)
            for (int t = 0; t < 2; t++)
                for (int l = 0; l < 2; l++) {
                    combine_case c = base(dims[d], t ? DM_BF16 : DM_F16, splits[s]);
                    c.with_lse = l;
                    char label[64];
                    snprintf(label, sizeof label, "d%d %s %d splits%s", dims[d],
                             t ? "bf16" : "f16", splits[s], l ? "" : " no lse");
                    check_case(&c, label);
                }
}
END_TEST

/* Groups smaller than a warp (d8: 2 threads a pair, d16: 4, d24: 8 with 2 idle), a group with
 * idle threads (d72: 18 columns on 32) and two columns a thread with idle ones (d200); 33 splits
 * are two rounds of weights for a 32-thread group and 17 for a 2-thread one. */
START_TEST(small_and_odd_head_dims_match)
{
    static const int dims[] = {8, 16, 24, 72, 200};
    for (size_t d = 0; d < 5; d++)
        for (int k = 0; k < 2; k++) {
            combine_case c = base(dims[d], k ? DM_F16 : DM_BF16, k ? 33 : 3);
            char label[64];
            snprintf(label, sizeof label, "d%d %s %d splits", dims[d], k ? "f16" : "bf16",
                     c.n_splits);
            check_case(&c, label);
        }
}
END_TEST

START_TEST(misaligned_o_rows_and_a_wider_part_stride_match)
{
    for (int t = 0; t < 2; t++) {
        combine_case c = base(128, t ? DM_BF16 : DM_F16, 7);
        c.o_offset = 1; /* rows 2-byte aligned only: element stores */
        check_case(&c, t ? "o misaligned bf16" : "o misaligned f16");
        c.o_offset = 0;
        c.part_pad = 13;
        check_case(&c, t ? "part_stride + 13 bf16" : "part_stride + 13 f16");
    }
}
END_TEST

/* lse_s spread over [-80, 80]: exp without the max subtracted would overflow or underflow. */
START_TEST(wide_lse_spreads_match)
{
    for (int s = 0; s < 2; s++) {
        combine_case c = base(128, DM_BF16, s ? 64 : 5);
        c.spread = 80;
        check_case(&c, s ? "spread 80, 64 splits" : "spread 80, 5 splits");
    }
}
END_TEST

/* The varlen layout: one batch entry holds every token (Lq = rows = total_q); lse (H, total_q). */
START_TEST(the_varlen_layout_matches)
{
    combine_case c = base(128, DM_BF16, 16);
    c.B = 1;
    c.Lq = 300;
    c.H = 8;
    check_case(&c, "varlen 300 tokens x 8 heads");
}
END_TEST

/* The decode batch's shape: 64 sequences x 8 queries x 32 heads. */
START_TEST(a_decode_batch_sized_call_matches)
{
    combine_case c = base(128, DM_BF16, 4);
    c.B = 64;
    c.Lq = 8;
    c.H = 32;
    check_case(&c, "64 x 8 tokens x 32 heads, 4 splits");
}
END_TEST

#define TESTS(X) \
    X(every_split_count_head_dim_and_dtype_matches_with_and_without_lse) \
    X(small_and_odd_head_dims_match) \
    X(misaligned_o_rows_and_a_wider_part_stride_match) \
    X(wide_lse_spreads_match) \
    X(the_varlen_layout_matches) \
    X(a_decode_batch_sized_call_matches)
DM_TEST_MAIN_SKIP("gpu_combine", TESTS, dm_gpu_absent)
