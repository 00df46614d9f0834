/* test_gpu_window.c: the window-mask kernels on a GPU against the CPU reference, bitwise, over
 * random shapes and windows: every bias dtype, each mask form (none, per-query, per-key, both 2-D
 * forms), broadcasts, ties and NaN, relu and smoothing, misaligned rows (the scalar path), rows
 * too long for shared memory (512k-key decode rows), rows split over several blocks (the plan's
 * own split, and DMATTN_WMASK_SLICES forcing any number of slices on the same inputs the one-block
 * kernel gets), and dm_fwd with a window equal to dm_fwd on the explicit mask. Fresh random inputs
 * each run (the seed is printed on failure), outputs poisoned first. Skipped without a GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "fwd_plan.h"
#include "gpu_util.h"
#include "half.h"
#include "harness.h"
#include "reference.h"
#include "wmask_plan.h"

#define POISON 0x5a

static int64_t numel(const dm_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->rank; d++)
        n *= t->shape[d];
    return n;
}

typedef struct wcase {
    dm_dtype dt;
    int64_t B, Lq, Lk;
    int64_t bias_shape[4];
    int mask_rank; /* 0 = none, 2 or 4 */
    int64_t mask_shape[4];
    int window, relu, block_size;
    int distinct;     /* > 0: values from that many integers (ties); 0: spread out */
    bool nans;
    int percent_true; /* of the mask */
    int offset;       /* elements every pointer is moved by (misalignment) */
    bool has_min;
    double min_value;
} wcase;

static void fill(gpu_twin *w, const wcase *c, uint64_t *s)
{
    dm_tensor *t = &w->host;
    for (int64_t i = 0; i < numel(t); i++) {
        if (t->dtype == DM_BOOL) {
            ((unsigned char *)t->data)[i] = gpu_rng_next(s) % 100 < (uint64_t)c->percent_true
                                                ? (unsigned char)(1 + gpu_rng_next(s) % 250)
                                                : 0;
            continue;
        }
        double v = c->distinct
                       ? (double)(int)(gpu_rng_next(s) % (uint64_t)c->distinct) - c->distinct / 2
                       : (double)(int64_t)(gpu_rng_next(s) >> 11) / 4503599627370496.0 * 4 - 2;
        if (c->nans && gpu_rng_next(s) % 31 == 0)
            v = NAN;
        if (t->dtype == DM_F32)
            ((float *)t->data)[i] = (float)v;
        else if (t->dtype == DM_F16)
            ((uint16_t *)t->data)[i] = dm_float_to_half((float)v);
        else
            ((uint16_t *)t->data)[i] = dm_float_to_bf16((float)v);
    }
}

static int64_t bcast(int64_t a, int64_t b) { return a == 1 ? b : a; }

static void describe(const wcase *c, char *buf, size_t n)
{
    snprintf(buf, n,
             "%s B=%lld Lq=%lld Lk=%lld bias=(%lld,%lld,%lld,%lld) mask rank %d (%lld,%lld,%lld,"
             "%lld) window=%d relu=%d block=%d distinct=%d nans=%d p=%d offset=%d min=%s%g",
             dm_dtype_name(c->dt), (long long)c->B, (long long)c->Lq, (long long)c->Lk,
             (long long)c->bias_shape[0], (long long)c->bias_shape[1], (long long)c->bias_shape[2],
             (long long)c->bias_shape[3], c->mask_rank, (long long)c->mask_shape[0],
             (long long)c->mask_shape[1], (long long)c->mask_shape[2], (long long)c->mask_shape[3],
             c->window, c->relu, c->block_size, c->distinct, c->nans, c->percent_true, c->offset,
             c->has_min ? "" : "default ", c->has_min ? c->min_value : 0.0);
}

/* Runs c on the GPU and through the reference; every out byte must match. */
static void check_case(const wcase *c, const char *label)
{
    uint64_t seed = gpu_fresh_seed(), s = seed | 1;
    gpu_twin bias, mask, out;
    char what[512];
    dm_ctx *ctx = gpu_ctx();
    describe(c, what, sizeof what);
    memset(&mask, 0, sizeof mask);
    gpu_twin_alloc(&bias, c->dt, 4, c->bias_shape, NULL, 0, c->offset);
    fill(&bias, c, &s);
    gpu_twin_upload(&bias);
    int64_t m4[4] = {1, 1, 1, 1};
    if (c->mask_rank) {
        gpu_twin_alloc(&mask, DM_BOOL, c->mask_rank, c->mask_shape, NULL, 0, c->offset);
        fill(&mask, c, &s);
        gpu_twin_upload(&mask);
        if (c->mask_rank == 4)
            memcpy(m4, c->mask_shape, sizeof m4);
        else
            m4[0] = c->mask_shape[0];
    }
    int64_t oshape[4] = {bcast(c->bias_shape[0], m4[0]), bcast(c->bias_shape[1], m4[1]),
                         bcast(c->bias_shape[2], m4[2]), c->Lk};
    gpu_twin_alloc(&out, DM_BOOL, 4, oshape, NULL, 0, c->offset);
    memset(out.host_base, POISON, out.bytes);
    gpu_twin_upload(&out);

    dm_window_mask_args a = {.bias = bias.dev, .out = out.dev, .B = c->B, .Lq = c->Lq,
                             .Lk = c->Lk, .window = c->window, .relu = c->relu,
                             .block_size = c->block_size, .has_min_value = c->has_min,
                             .min_value = c->min_value};
    if (c->mask_rank)
        a.mask = mask.dev;
    int applied = -1;
    dm_status st = dm_window_mask(ctx, &a, &applied, NULL);
    ck_assert_msg(st == DM_OK, "%s: %s [seed %llu]: %s", label, what, (unsigned long long)seed,
                  dm_errmsg(ctx));
    ck_assert_int_eq(gpu_drv()->CtxSynchronize(), CUDA_SUCCESS);
    gpu_twin_download(&out);

    size_t n = (size_t)numel(&out.host);
    unsigned char *gpu = malloc(n);
    memcpy(gpu, out.host.data, n);
    dm_window_mask_args h = a;
    h.bias = bias.host;
    h.mask = c->mask_rank ? mask.host : (dm_tensor){0};
    h.out = out.host;
    memset(out.host_base, POISON, out.bytes);
    dm_ctx *ref = NULL;
    dm_ctx_create(&ref, DM_NO_DEVICE);
    int ref_applied = -1;
    ck_assert_msg(dm_ref_window_mask(ref, &h, &ref_applied) == DM_OK, "%s", dm_errmsg(ref));
    dm_ctx_destroy(ref);
    ck_assert_int_eq(applied, ref_applied);
    long bad = 0, first = -1, kept = 0;
    for (size_t e = 0; e < n; e++) {
        kept += gpu[e] == 1;
        if (gpu[e] != ((unsigned char *)out.host.data)[e]) {
            if (first < 0)
                first = (long)e;
            bad++;
        }
    }
    /* guard bytes before out (the misalignment offset) are never written */
    for (int e = 0; e < c->offset; e++)
        if (((unsigned char *)out.host_base)[e] != POISON)
            bad++;
    fprintf(stderr, "%-30s %s rows=%zu kept=%ld mismatches=%ld\n", label, bad ? "FAIL" : "ok  ",
            n / (size_t)c->Lk, kept, bad);
    ck_assert_msg(bad == 0,
                  "%s: %s [seed %llu]: %ld bytes differ from the reference, first at %ld (gpu %d, "
                  "ref %d)",
                  label, what, (unsigned long long)seed, bad, first, first >= 0 ? gpu[first] : -1,
                  first >= 0 ? ((unsigned char *)out.host.data)[first] : -1);
    free(gpu);
    gpu_twin_free(&bias);
    gpu_twin_free(&mask);
    gpu_twin_free(&out);
}

static wcase base(dm_dtype dt, int64_t B, int64_t H, int64_t Lq, int64_t Lk, int window)
{
    wcase c = {.dt = dt, .B = B, .Lq = Lq, .Lk = Lk, .window = window, .percent_true = 90,
               .bias_shape = {B, H, Lq, Lk}};
    return c;
}

START_TEST(random_shapes_and_windows_match_the_reference_bitwise)
{
    const dm_dtype dts[] = {DM_F16, DM_BF16, DM_F32};
    uint64_t s = gpu_fresh_seed() | 1;
    for (int n = 0; n < 60; n++) {
        int64_t B = 1 + gpu_rng_next(&s) % 3, H = 1 + gpu_rng_next(&s) % 4,
                Lq = 1 + gpu_rng_next(&s) % 9;
        int64_t Lk = 2 + gpu_rng_next(&s) % (n % 3 == 0 ? 6000 : 700);
        wcase c = base(dts[n % 3], B, H, Lq, Lk, (int)(1 + gpu_rng_next(&s) % (uint64_t)(Lk - 1)));
        c.bias_shape[0] = gpu_rng_next(&s) % 2 ? B : 1;
        c.bias_shape[2] = gpu_rng_next(&s) % 2 ? Lq : 1;
        switch (n % 5) {
        case 1: /* per-query 4-D mask */
            c.mask_rank = 4;
            c.mask_shape[0] = B, c.mask_shape[1] = gpu_rng_next(&s) % 2 ? H : 1;
            c.mask_shape[2] = Lq, c.mask_shape[3] = Lk;
            break;
        case 2: /* per-key 4-D mask */
            c.mask_rank = 4;
            c.mask_shape[0] = gpu_rng_next(&s) % 2 ? B : 1, c.mask_shape[1] = 1;
            c.mask_shape[2] = 1, c.mask_shape[3] = Lk;
            break;
        case 3: /* 2-D (B, Lk) */
            c.mask_rank = 2;
            c.mask_shape[0] = B, c.mask_shape[1] = Lk;
            break;
        case 4: /* 2-D (B, Lq), left-padded */
            if (Lq < Lk) {
                c.mask_rank = 2;
                c.mask_shape[0] = B, c.mask_shape[1] = Lq;
            }
            break;
        }
        c.distinct = n % 4 == 1 ? 7 : n % 4 == 3 ? 300 : 0;
        c.nans = n % 6 == 5;
        c.percent_true = (int)(gpu_rng_next(&s) % 101);
        c.offset = n % 7 == 4 ? 3 : 0;
        if (n % 8 == 6)
            c.has_min = true, c.min_value = n % 16 == 6 ? -1.0 : -1e4;
        char label[64];
        snprintf(label, sizeof label, "random %d", n);
        check_case(&c, label);
    }
}
END_TEST

START_TEST(ties_straddling_the_window_edge_go_to_the_lower_index)
{
    for (int t = 0; t < 3; t++) {
        wcase c = base(t == 0 ? DM_F16 : t == 1 ? DM_BF16 : DM_F32, 2, 3, 5, 3000, 1000);
        c.distinct = t == 2 ? 2 : 3; /* thousands of equal keys at the threshold */
        check_case(&c, "heavy ties");
        c.offset = 1;
        check_case(&c, "heavy ties, scalar path");
        c.distinct = 1; /* every key equal */
        c.offset = 0;
        check_case(&c, "all equal");
    }
}
END_TEST

START_TEST(masked_rows_and_min_valued_keys_are_never_selected)
{
    wcase c = base(DM_BF16, 2, 4, 8, 1024, 300);
    c.mask_rank = 4;
    c.mask_shape[0] = 2, c.mask_shape[1] = 4, c.mask_shape[2] = 8, c.mask_shape[3] = 1024;
    c.percent_true = 10; /* fewer visible keys than the window */
    check_case(&c, "sparse mask");
    c.percent_true = 0;
    check_case(&c, "empty mask");
    c.percent_true = 50;
    c.distinct = 9;
    c.has_min = true;
    c.min_value = -2.0; /* a value the bias holds */
    check_case(&c, "min value in the bias");
}
END_TEST

START_TEST(relu_and_smoothing_match)
{
    for (int t = 0; t < 3; t++) {
        wcase c = base(t == 0 ? DM_F16 : t == 1 ? DM_BF16 : DM_F32, 2, 2, 3, 777, 100);
        c.mask_rank = 2;
        c.mask_shape[0] = 2, c.mask_shape[1] = 777;
        c.percent_true = 70;
        c.relu = 1;
        check_case(&c, "relu");
        c.block_size = 64;
        check_case(&c, "relu smooth 64");
        c.relu = 0;
        c.block_size = 5;
        check_case(&c, "top-k smooth 5");
        c.block_size = 1000; /* one block, the tail */
        check_case(&c, "top-k smooth 1000");
    }
}
END_TEST

START_TEST(benchmark_shapes_match)
{
    /* the shapes bench/compare.py times, at reduced batch: key-side and per-query bias */
    wcase k = base(DM_BF16, 2, 16, 1, 16384, 2048);
    k.mask_rank = 4;
    k.mask_shape[0] = 2, k.mask_shape[1] = 16, k.mask_shape[2] = 1, k.mask_shape[3] = 16384;
    check_case(&k, "key-side 16k w2048");
    wcase q = base(DM_BF16, 1, 2, 256, 4096, 1024);
    q.mask_rank = 4;
    q.mask_shape[0] = 1, q.mask_shape[1] = 2, q.mask_shape[2] = 256, q.mask_shape[3] = 4096;
    check_case(&q, "per-query 4k w1024");
}
END_TEST

START_TEST(rows_longer_than_shared_memory_match)
{
    /* past the resident limit (32768 16-bit or 16384 f32 keys) every digit re-reads the row */
    wcase c = base(DM_BF16, 1, 4, 1, 524288, 2048);
    c.mask_rank = 2;
    c.mask_shape[0] = 1, c.mask_shape[1] = 524288;
    check_case(&c, "decode 512k w2048");
    c = base(DM_F32, 1, 2, 2, 40001, 4000);
    c.distinct = 50;
    check_case(&c, "f32 40001 ties");
    c = base(DM_F16, 1, 1, 3, 32769, 32768);
    c.offset = 1;
    check_case(&c, "f16 32769 w32768 scalar");
}
END_TEST

/* Few rows longer than shared memory: the plan splits each row over several blocks (count and
 * pick passes per digit, a write pass; api/window_mask.c), which must equal the reference
 * bitwise. */
START_TEST(split_rows_match_the_reference_bitwise)
{
    unsetenv("DMATTN_WMASK_SLICES"); /* the plan's own choice */
    /* the benchmark's decode shape: 32 rows of 512k keys, a 2-D (B, Lk) mask */
    wcase c = base(DM_BF16, 2, 16, 1, 524288, 4096);
    c.mask_rank = 2;
    c.mask_shape[0] = 2, c.mask_shape[1] = 524288;
    check_case(&c, "split decode 512k w4096");
    /* thousands of keys tie at the threshold, spread over every slice; the window spans many */
    for (int t = 0; t < 3; t++) {
        c = base(t == 0 ? DM_F16 : t == 1 ? DM_BF16 : DM_F32, 1, 2, 1, 200003, 70001);
        c.distinct = 3;
        check_case(&c, "split heavy ties");
        c.distinct = 1; /* every key equal: the first W by index */
        check_case(&c, "split all equal");
        c.distinct = 1;
        c.window = 7;
        check_case(&c, "split all equal w7");
    }
    /* masked-out keys: fewer visible keys than the window (T is min_value's image), a per-query
     * 4-D mask, and a min_value the bias holds */
    c = base(DM_BF16, 1, 2, 2, 100000, 30000);
    c.mask_rank = 4;
    c.mask_shape[0] = 1, c.mask_shape[1] = 2, c.mask_shape[2] = 2, c.mask_shape[3] = 100000;
    c.percent_true = 20;
    check_case(&c, "split sparse mask");
    c.percent_true = 0;
    check_case(&c, "split empty mask");
    c.percent_true = 60;
    c.distinct = 9;
    c.has_min = true, c.min_value = -2.0;
    check_case(&c, "split min value in the bias");
    /* f32 bias (four digits), key-side 4-D mask, NaN */
    c = base(DM_F32, 2, 1, 1, 70000, 5000);
    c.mask_rank = 4;
    c.mask_shape[0] = 2, c.mask_shape[1] = 1, c.mask_shape[2] = 1, c.mask_shape[3] = 70000;
    c.distinct = 50;
    c.nans = true;
    check_case(&c, "split f32 ties nan");
    c.distinct = 0;
    check_case(&c, "split f32 spread nan");
    /* 2-D masks: (B, Lk), and (B, Lq) left-padded by Lk - Lq = 99997 (not 8-key aligned: the
     * scalar path) */
    c = base(DM_F16, 2, 1, 3, 100000, 12345);
    c.mask_rank = 2;
    c.mask_shape[0] = 2, c.mask_shape[1] = 100000;
    c.distinct = 40;
    check_case(&c, "split 2-D (B, Lk) mask");
    c.mask_shape[1] = 3;
    c.percent_true = 0;
    check_case(&c, "split 2-D (B, Lq) mask");
    /* misaligned rows (scalar path) and smoothing over blocks that straddle slices */
    c = base(DM_BF16, 1, 1, 2, 65537, 20000);
    c.distinct = 5;
    c.offset = 3;
    check_case(&c, "split scalar path");
    c.offset = 0;
    c.block_size = 100;
    check_case(&c, "split smooth 100");
    c.block_size = 65537; /* one block: the whole row votes */
    check_case(&c, "split smooth whole row");
}
END_TEST

/* The same inputs through one block per row and through 2..many slices per row (forced with
 * DMATTN_WMASK_SLICES, down to 64-key slices): every result equals the reference, so the split
 * equals the one-block kernel bitwise. Rows short enough to be resident are split too. */
START_TEST(forced_slices_match_one_block_per_row_bitwise)
{
    static const char *const forced[] = {"1", "2", "3", "7", "64", "100000"};
    const dm_dtype dts[] = {DM_F16, DM_BF16, DM_F32};
    uint64_t s = gpu_fresh_seed() | 1;
    for (int n = 0; n < 12; n++) {
        int64_t Lk = 2 + gpu_rng_next(&s) % (n % 2 ? 5000 : 40000), Lq = 1 + gpu_rng_next(&s) % 3;
        wcase c = base(dts[n % 3], 1, 1 + gpu_rng_next(&s) % 3, Lq, Lk,
                       (int)(1 + gpu_rng_next(&s) % (uint64_t)(Lk - 1)));
        c.distinct = n % 3 == 0 ? 2 : n % 3 == 1 ? 100 : 0;
        c.nans = n % 4 == 3;
        if (n % 3 == 1) {
            c.mask_rank = 2;
            c.mask_shape[0] = 1, c.mask_shape[1] = Lk;
            c.percent_true = (int)(gpu_rng_next(&s) % 101);
        }
        c.offset = n % 5 == 2 ? 1 : 0;
        c.block_size = n % 6 == 5 ? 33 : 0;
        for (size_t f = 0; f < sizeof forced / sizeof forced[0]; f++) {
            char label[64];
            setenv("DMATTN_WMASK_SLICES", forced[f], 1);
            snprintf(label, sizeof label, "random %d, slices %s", n, forced[f]);
            check_case(&c, label);
        }
    }
    unsetenv("DMATTN_WMASK_SLICES");
}
END_TEST

START_TEST(attention_with_a_window_equals_attention_on_the_explicit_mask)
{
    const dm_driver *d = gpu_drv();
    dm_ctx *ctx = gpu_ctx();
    enum { Bn = 2, Lq = 100, Lk = 700, H = 4, Hkv = 2, D = 64, W = 128 };
    uint64_t s = gpu_fresh_seed() | 1;
    int64_t q4[4] = {Bn, Lq, H, D}, k4[4] = {Bn, Lk, Hkv, D}, b4[4] = {Bn, H, Lq, Lk};
    int64_t m2[2] = {Bn, Lk};
    gpu_twin q, k, v, o1, o2, bias, mask, mp;
    wcase fillc = {.percent_true = 80};
    gpu_twin_alloc(&q, DM_BF16, 4, q4, NULL, 0, 0);
    gpu_twin_alloc(&k, DM_BF16, 4, k4, NULL, 0, 0);
    gpu_twin_alloc(&v, DM_BF16, 4, k4, NULL, 0, 0);
    gpu_twin_alloc(&o1, DM_BF16, 4, q4, NULL, 0, 0);
    gpu_twin_alloc(&o2, DM_BF16, 4, q4, NULL, 0, 0);
    gpu_twin_alloc(&bias, DM_BF16, 4, b4, NULL, 0, 0);
    gpu_twin_alloc(&mask, DM_BOOL, 2, m2, NULL, 0, 0);
    gpu_twin_alloc(&mp, DM_BOOL, 4, b4, NULL, 0, 0);
    gpu_twin *in[] = {&q, &k, &v, &bias, &mask};
    for (int i = 0; i < 5; i++) {
        fill(in[i], &fillc, &s);
        gpu_twin_upload(in[i]);
    }
    d->MemsetD8(o1.dev_base, 0xff, o1.bytes);
    d->MemsetD8(o2.dev_base, 0x00, o2.bytes);

    /* the helper on the 2-D mask, and dm_fwd on its output */
    dm_window_mask_args w = {.bias = bias.dev, .mask = mask.dev, .out = mp.dev, .B = Bn,
                             .Lq = Lq, .Lk = Lk, .window = W};
    int applied = 0;
    ck_assert_msg(dm_window_mask(ctx, &w, &applied, NULL) == DM_OK, "%s", dm_errmsg(ctx));
    ck_assert_int_eq(applied, 1);
    dm_fwd_args explicit_mask = {.q = q.dev, .k = k.dev, .v = v.dev, .o = o2.dev,
                                 .bias = bias.dev, .mask = mp.dev};
    ck_assert_msg(dm_fwd(ctx, &explicit_mask, NULL) == DM_OK, "%s", dm_errmsg(ctx));

    /* the same through dm_fwd's window: the 2-D mask written out as (B, 1, 1, Lk) */
    gpu_twin m4;
    int64_t m4s[4] = {Bn, 1, 1, Lk};
    gpu_twin_alloc(&m4, DM_BOOL, 4, m4s, NULL, 0, 0);
    memcpy(m4.host.data, mask.host.data, (size_t)Bn * Lk);
    gpu_twin_upload(&m4);
    dm_fwd_args windowed = explicit_mask;
    windowed.o = o1.dev;
    windowed.mask = m4.dev;
    windowed.window = W;
    ck_assert_msg(dm_fwd(ctx, &windowed, NULL) == DM_OK, "%s", dm_errmsg(ctx));
    ck_assert_int_eq(d->CtxSynchronize(), CUDA_SUCCESS);
    gpu_twin_download(&o1);
    gpu_twin_download(&o2);
    ck_assert_msg(memcmp(o1.host_base, o2.host_base, o1.bytes) == 0,
                  "dm_fwd(window = %d) differs from dm_fwd(mask = dm_window_mask(...)) [seed "
                  "%llu]",
                  W, (unsigned long long)s);
    /* and it is the reference's windowed attention */
    dm_fwd_args h = windowed;
    h.q = q.host, h.k = k.host, h.v = v.host, h.bias = bias.host, h.mask = m4.host;
    h.o = o2.host; /* overwritten by the reference */
    dm_ctx *ref = NULL;
    dm_ctx_create(&ref, DM_NO_DEVICE);
    ck_assert_msg(dm_ref_fwd(ref, &h) == DM_OK, "%s", dm_errmsg(ref));
    dm_ctx_destroy(ref);
    double num = 0, den = 0;
    for (int64_t e = 0; e < (int64_t)Bn * Lq * H * D; e++) {
        double g = dm_bf16_to_float(((uint16_t *)o1.host.data)[e]);
        double r = dm_bf16_to_float(((uint16_t *)o2.host.data)[e]);
        num += (g - r) * (g - r);
        den += r * r;
    }
    fprintf(stderr, "fwd window %d: bitwise equal to the explicit mask; rel err vs ref %.2e\n", W,
            sqrt(num / den));
    ck_assert_msg(sqrt(num / den) < 1e-2, "rel err %.3e", sqrt(num / den));
    gpu_twin *all[] = {&q, &k, &v, &o1, &o2, &bias, &mask, &mp, &m4};
    for (int i = 0; i < 9; i++)
        gpu_twin_free(all[i]);
}
END_TEST

/* dm_fwd with a window and a 2-D mask: (B|1, Lk) and (B|1, Lq < Lk), the window applying
 * (W < Lk) or keeping every key (W >= Lk: the 2-D mask normalized without a top-k, S = Lq going
 * through the padded copy). Each equals dm_fwd on the normalized (B|1, 1, 1, Lk) mask bitwise and
 * the reference within bf16 tolerance. */
START_TEST(attention_with_a_2d_mask_and_a_window_matches_the_normalized_mask)
{
    const dm_driver *d = gpu_drv();
    dm_ctx *ctx = gpu_ctx();
    enum { Bn = 2, Lq = 37, Lk = 300, H = 4, Hkv = 2, D = 64 };
    static const int64_t widths[] = {Lk, Lq}, batches[] = {Bn, 1};
    static const int windows[] = {64, Lk, 4096};
    for (int wi = 0; wi < 2; wi++)
        for (int bi = 0; bi < 2; bi++)
            for (int wn = 0; wn < 3; wn++) {
                int64_t S = widths[wi], Bm = batches[bi];
                uint64_t s = gpu_fresh_seed() | 1, seed = s;
                int64_t q4[4] = {Bn, Lq, H, D}, k4[4] = {Bn, Lk, Hkv, D}, b4[4] = {Bn, H, Lq, Lk};
                int64_t m2[2] = {Bm, S}, m4s[4] = {Bm, 1, 1, Lk};
                gpu_twin q, k, v, o1, o2, bias, mask, m4;
                wcase fillc = {.percent_true = 70};
                gpu_twin_alloc(&q, DM_BF16, 4, q4, NULL, 0, 0);
                gpu_twin_alloc(&k, DM_BF16, 4, k4, NULL, 0, 0);
                gpu_twin_alloc(&v, DM_BF16, 4, k4, NULL, 0, 0);
                gpu_twin_alloc(&o1, DM_BF16, 4, q4, NULL, 0, 0);
                gpu_twin_alloc(&o2, DM_BF16, 4, q4, NULL, 0, 0);
                gpu_twin_alloc(&bias, DM_BF16, 4, b4, NULL, 0, 0);
                gpu_twin_alloc(&mask, DM_BOOL, 2, m2, NULL, 0, 0);
                gpu_twin_alloc(&m4, DM_BOOL, 4, m4s, NULL, 0, 0);
                gpu_twin *in[] = {&q, &k, &v, &bias, &mask};
                for (int i = 0; i < 5; i++)
                    fill(in[i], &fillc, &s);
                unsigned char *p = m4.host.data, *m = mask.host.data;
                for (int64_t b = 0; b < Bm; b++)
                    for (int64_t j = 0; j < Lk; j++)
                        p[b * Lk + j] = j < Lk - S ? 1 : m[b * S + j - (Lk - S)] != 0;
                gpu_twin *up[] = {&q, &k, &v, &bias, &mask, &m4};
                for (int i = 0; i < 6; i++)
                    gpu_twin_upload(up[i]);
                d->MemsetD8(o1.dev_base, 0xff, o1.bytes);
                d->MemsetD8(o2.dev_base, 0x00, o2.bytes);
                dm_fwd_args two_d = {.q = q.dev, .k = k.dev, .v = v.dev, .o = o1.dev,
                                     .bias = bias.dev, .mask = mask.dev, .window = windows[wn]};
                dm_fwd_args four_d = two_d;
                four_d.o = o2.dev;
                four_d.mask = m4.dev;
                ck_assert_msg(dm_fwd(ctx, &two_d, NULL) == DM_OK, "%s", dm_errmsg(ctx));
                ck_assert_msg(dm_fwd(ctx, &four_d, NULL) == DM_OK, "%s", dm_errmsg(ctx));
                ck_assert_int_eq(d->CtxSynchronize(), CUDA_SUCCESS);
                gpu_twin_download(&o1);
                gpu_twin_download(&o2);
                ck_assert_msg(memcmp(o1.host_base, o2.host_base, o1.bytes) == 0,
                              "2-D mask (%lld, %lld) window %d differs from its normalized "
                              "(%lld, 1, 1, %d) [seed %llu]",
                              (long long)Bm, (long long)S, windows[wn], (long long)Bm, Lk,
                              (unsigned long long)seed);
                dm_fwd_args h = two_d;
                h.q = q.host, h.k = k.host, h.v = v.host, h.bias = bias.host, h.mask = mask.host;
                h.o = o2.host;
                dm_ctx *ref = NULL;
                dm_ctx_create(&ref, DM_NO_DEVICE);
                ck_assert_msg(dm_ref_fwd(ref, &h) == DM_OK, "%s", dm_errmsg(ref));
                dm_ctx_destroy(ref);
                double num = 0, den = 0;
                for (int64_t e = 0; e < (int64_t)Bn * Lq * H * D; e++) {
                    double g = dm_bf16_to_float(((uint16_t *)o1.host.data)[e]);
                    double r = dm_bf16_to_float(((uint16_t *)o2.host.data)[e]);
                    num += (g - r) * (g - r);
                    den += r * r;
                }
                fprintf(stderr, "2-D mask (%lld, %lld) window %d: rel err vs ref %.2e\n",
                        (long long)Bm, (long long)S, windows[wn], sqrt(num / den));
                ck_assert_msg(isfinite(num) && sqrt(num / den) < 1e-2,
                              "2-D mask (%lld, %lld) window %d: rel err %.3e [seed %llu]",
                              (long long)Bm, (long long)S, windows[wn], sqrt(num / den),
                              (unsigned long long)seed);
                gpu_twin *all[] = {&q, &k, &v, &o1, &o2, &bias, &mask, &m4};
                for (int i = 0; i < 8; i++)
                    gpu_twin_free(all[i]);
            }
}
END_TEST

#define TESTS(X) \
    X(random_shapes_and_windows_match_the_reference_bitwise) \
    X(ties_straddling_the_window_edge_go_to_the_lower_index) \
    X(masked_rows_and_min_valued_keys_are_never_selected) \
    X(relu_and_smoothing_match) \
    X(benchmark_shapes_match) \
    X(rows_longer_than_shared_memory_match) \
    X(split_rows_match_the_reference_bitwise) \
    X(forced_slices_match_one_block_per_row_bitwise) \
    X(attention_with_a_window_equals_attention_on_the_explicit_mask) \
    X(attention_with_a_2d_mask_and_a_window_matches_the_normalized_mask)
DM_TEST_MAIN_SKIP("gpu_window", TESTS, dm_gpu_absent)
