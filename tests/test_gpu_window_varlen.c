/* test_gpu_window_varlen.c: dm_window_mask_varlen on a GPU against dm_ref_window_mask_varlen,
 * bitwise: every bias dtype, bias and mask layouts (query- and key-based, packed and head-major),
 * head broadcasts, sequences of 0 and 1 keys, at most the window and far past it, rows longer
 * than shared memory holds (read per digit), ties and NaN, relu and smoothing, and cu_seqlens that
 * leave query tokens outside every sequence. Fresh random inputs each run (the seed is printed on
 * failure); out poisoned first, bytes outside out's elements must keep the poison. Skipped without
 * a GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_util.h"
#include "harness.h"
#include "reference.h"
#include "wmask_varlen_case.h"

/* A device copy of a host tensor built by wv_build: the same bytes, shape and strides. */
static void twin_of(gpu_twin *w, const dm_tensor *t, size_t elems)
{
    gpu_twin_alloc(w, t->dtype, t->rank, t->shape, t->strides, elems + 1, 0);
    memcpy(w->host.data, t->data, (elems + 1) * wv_elem_bytes(t->dtype)); /* + out's guard */
    gpu_twin_upload(w);
}

/* Runs the case on the GPU and through the reference; every out byte must match. */
static void check(const wv_spec *s, const char *label)
{
    uint64_t seed = gpu_fresh_seed();
    wv_case c;
    char what[768];
    gpu_twin bias, mask, out, cu_q, cu_k;
    dm_ctx *ctx = gpu_ctx();

    wv_build(&c, s, seed);
    wv_describe(&c, what, sizeof what);
    memset(&mask, 0, sizeof mask);
    twin_of(&bias, &c.bias, c.bias_elems);
    if (c.mask.data)
        twin_of(&mask, &c.mask, c.mask_elems);
    twin_of(&out, &c.out, c.out_elems); /* poisoned by wv_build, one guard byte past the end */
    twin_of(&cu_q, &c.cu_seqlens_q, (size_t)s->B);
    twin_of(&cu_k, &c.cu_seqlens_k, (size_t)s->B);

    dm_window_mask_varlen_args a = wv_args(&c);
    a.bias = bias.dev;
    a.mask = c.mask.data ? mask.dev : (dm_tensor){0};
    a.out = out.dev;
    a.cu_seqlens_q = cu_q.dev;
    a.cu_seqlens_k = cu_k.dev;
    int applied = -1;
    dm_status st = dm_window_mask_varlen(ctx, &a, &applied, NULL);
    ck_assert_msg(st == DM_OK, "%s: %s [seed %llu]: %s", label, what, (unsigned long long)seed,
                  dm_errmsg(ctx));
    ck_assert_int_eq(gpu_drv()->CtxSynchronize(), CUDA_SUCCESS);
    gpu_twin_download(&out);

    dm_window_mask_varlen_args h = wv_args(&c);
    dm_ctx *ref = NULL;
    dm_ctx_create(&ref, DM_NO_DEVICE);
    int ref_applied = -1;
    ck_assert_msg(dm_ref_window_mask_varlen(ref, &h, &ref_applied) == DM_OK, "%s",
                  dm_errmsg(ref));
    dm_ctx_destroy(ref);
    ck_assert_int_eq(applied, ref_applied);
    const unsigned char *gpu = out.host.data, *want = c.out.data;
    long bad = 0, first = -1, kept = 0;
    for (size_t e = 0; e <= c.out_elems; e++) { /* the guard byte too */
        kept += gpu[e] == 1;
        if (gpu[e] != want[e] && bad++ == 0)
            first = (long)e;
    }
    fprintf(stderr, "%-34s %s out=%zu kept=%ld mismatches=%ld\n", label, bad ? "FAIL" : "ok  ",
            c.out_elems, kept, bad);
    if (bad) { /* where: true bytes per 256-byte stretch from the first mismatch, gpu / ref */
        for (long e0 = first - first % 256, n = 0; n < 12 && e0 < (long)c.out_elems; n++, e0 += 256) {
            int g = 0, w = 0;
            for (long e = e0; e < e0 + 256 && e < (long)c.out_elems; e++) {
                g += gpu[e] == 1;
                w += want[e] == 1;
            }
            fprintf(stderr, "  bytes %ld..: true gpu %d ref %d (first gpu byte %d)\n", e0, g, w,
                    gpu[e0]);
        }
    }
    ck_assert_msg(bad == 0,
                  "%s: %s [seed %llu]: %ld bytes differ from the reference, first at %ld (gpu %d, "
                  "ref %d)",
                  label, what, (unsigned long long)seed, bad, first, first >= 0 ? gpu[first] : -1,
                  first >= 0 ? want[first] : -1);
    gpu_twin *all[] = {&bias, &mask, &out, &cu_q, &cu_k};
    for (int i = 0; i < 5; i++)
        gpu_twin_free(all[i]);
    wv_free(&c);
}

static wv_spec spec(dm_dtype dt, dm_layout bias, dm_layout mask, int window)
{
    wv_spec s = {.B = 7, .len_q = {3, 1, 0, 8, 2, 5, 1}, .len_k = {0, 1, 40, 64, 700, 3000, 300},
                 .dtype = dt, .bias = bias, .mask = mask, .bias_heads = 4, .mask_heads = 1,
                 .window = window, .percent_true = 85};
    return s;
}

START_TEST(every_layout_pair_dtype_and_head_broadcast_matches_bitwise)
{
    static const dm_dtype dts[] = {DM_F16, DM_BF16, DM_F32};
    int n = 0;
    for (int t = 0; t < 3; t++)
        for (int b = DM_LAYOUT_Q; b <= DM_LAYOUT_K; b++)
            for (int m = 0; m < 3; m++, n++) {
                wv_spec s = spec(dts[t], (dm_layout)b, (dm_layout)m, 64);
                s.bias_heads = n % 2 ? 4 : 1;
                s.mask_heads = n % 3 == 0 ? 4 : 1;
                s.head_major = n % 4 == 1;
                s.distinct = n % 3 == 1 ? 6 : 0; /* ties */
                s.nans = n % 5 == 2;
                char label[64];
                snprintf(label, sizeof label, "%s bias-%c mask-%c", dm_dtype_name(dts[t]),
                         "nqk"[b], "nqk"[m]);
                check(&s, label);
            }
}
END_TEST

START_TEST(windows_of_one_key_and_at_the_longest_sequence_match)
{
    for (int w = 0; w < 3; w++) {
        wv_spec s = spec(DM_BF16, w == 1 ? DM_LAYOUT_Q : DM_LAYOUT_K, DM_LAYOUT_K,
                         w == 0 ? 1 : w == 1 ? 2999 : 3000);
        check(&s, w == 2 ? "window = max_seqlen_k (untouched)" : "window 1 / 2999");
    }
}
END_TEST

START_TEST(relu_smoothing_and_min_value_match)
{
    for (int f = 0; f < 4; f++) {
        wv_spec s = spec(f % 2 ? DM_F16 : DM_F32, f < 2 ? DM_LAYOUT_K : DM_LAYOUT_Q,
                         DM_LAYOUT_K, 64);
        s.relu = f & 1;
        s.block_size = 32 + 16 * f;
        s.has_min = f == 2;
        s.min_value = -0.5;
        check(&s, s.relu ? "relu + smooth" : "top-k + smooth");
    }
}
END_TEST

START_TEST(rows_longer_than_shared_memory_match)
{
    /* bf16 rows keep 32768 keys resident; these are read from global memory once per digit */
    wv_spec s = {.B = 3, .len_q = {2, 1, 4}, .len_k = {70000, 33000, 100}, .dtype = DM_BF16,
                 .bias = DM_LAYOUT_K, .mask = DM_LAYOUT_NONE, .bias_heads = 8, .window = 2048,
                 .distinct = 50};
    check(&s, "key-based, 70000 keys");
    s.bias = DM_LAYOUT_Q;
    s.mask = DM_LAYOUT_K;
    s.mask_heads = 1;
    s.bias_heads = 2;
    s.percent_true = 90;
    check(&s, "query-based, 70000 keys");
}
END_TEST

#define TESTS(X) \
    X(every_layout_pair_dtype_and_head_broadcast_matches_bitwise) \
    X(windows_of_one_key_and_at_the_longest_sequence_match) \
    X(relu_smoothing_and_min_value_match) \
    X(rows_longer_than_shared_memory_match)
DM_TEST_MAIN_SKIP("gpu_window_varlen", TESTS, dm_gpu_absent)
