/* test_gpu_fwd.c: the forward kernels against the CPU reference on a GPU, over a matrix of
 * shapes: odd lengths, Lq != Lk causal, GQA and MQA, every mask and bias layout and broadcast,
 * fully masked rows and all-false tiles, D from 8 to 256, both dtypes. Fresh random inputs each
 * run (the seed is printed on failure), outputs NaN-poisoned first. Skipped without a GPU. */
#include "gpu_util.h"
#include "harness.h"

static gpu_case base(int D, dm_dtype t)
{
    gpu_case c = {.B = 2, .H = 4, .Hkv = 4, .Lq = 77, .Lk = 131, .D = D, .dtype = t,
                  .mask_batch = 1, .mask_heads = 1, .bias_batch = 1, .bias_heads = 1,
                  .mask_density = 0.7};
    return c;
}

START_TEST(every_head_dim_matches_the_reference_in_both_dtypes)
{
    for (int D = 8; D <= 256; D += 8)
        for (int t = 0; t < 2; t++) {
            gpu_case c = base(D, t ? DM_BF16 : DM_F16);
            c.Lq = 33 + D % 17;
            c.Lk = 45 + D % 23;
            char label[64];
            snprintf(label, sizeof label, "d%d %s", D, t ? "bf16" : "f16");
            gpu_check_case(&c, label);
        }
}
END_TEST

START_TEST(every_mask_and_bias_layout_and_broadcast_matches)
{
    const int heads_of[3] = {8, 2, 1}; /* H, Hkv, 1 with H = 8, Hkv = 2 */
    int n = 0;
    for (int m = 0; m < 3; m++)
        for (int b = 0; b < 3; b++)
            for (int bc = 0; bc < 6; bc++) {
                gpu_case c = base(64, n % 2 ? DM_BF16 : DM_F16);
                c.H = 8;
                c.Hkv = 2;
                c.B = 3;
                c.mask = (dm_layout)m;
                c.bias = (dm_layout)b;
                c.mask_batch = bc % 2 ? c.B : 1;
                c.mask_heads = heads_of[bc % 3];
                c.bias_batch = (bc / 2) % 2 ? c.B : 1;
                c.bias_heads = heads_of[(bc + 1) % 3];
                char label[64];
                snprintf(label, sizeof label, "mask-%d bias-%d bcast %d", m, b, bc);
                gpu_check_case(&c, label);
                n++;
            }
}
END_TEST

START_TEST(causal_is_bottom_right_aligned_for_lq_not_equal_lk)
{
    const int shapes[][2] = {{77, 131}, {131, 77}, {1, 300}, {300, 1}, {64, 64}, {129, 128}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int m = 0; m < 3; m++) {
            gpu_case c = base(128, i % 2 ? DM_F16 : DM_BF16);
            c.Lq = shapes[i][0];
            c.Lk = shapes[i][1];
            c.causal = true;
            c.mask = (dm_layout)m;
            c.bias = DM_LAYOUT_K;
            char label[64];
            snprintf(label, sizeof label, "causal %dx%d mask-%d", c.Lq, c.Lk, m);
            gpu_check_case(&c, label);
        }
}
END_TEST

START_TEST(gqa_and_mqa_read_the_right_kv_head)
{
    const int kv[] = {8, 4, 2, 1};
    for (size_t i = 0; i < 4; i++) {
        gpu_case c = base(96, DM_BF16);
        c.H = 8;
        c.Hkv = kv[i];
        c.mask = DM_LAYOUT_Q;
        c.mask_heads = kv[i];
        c.bias = DM_LAYOUT_Q;
        c.bias_heads = 8;
        char label[64];
        snprintf(label, sizeof label, "H=8 Hkv=%d", kv[i]);
        gpu_check_case(&c, label);
    }
}
END_TEST

START_TEST(fully_masked_rows_give_zero_output_and_infinite_lse)
{
    for (int t = 0; t < 2; t++) {
        gpu_case c = base(64, t ? DM_BF16 : DM_F16);
        c.mask = DM_LAYOUT_Q;
        c.mask_heads = 4;
        c.mask_batch = 2;
        c.masked_row_every = 3;
        c.bias = DM_LAYOUT_Q;
        gpu_check_case(&c, "masked rows");
        c.mask_density = 0.0; /* everything masked */
        gpu_check_case(&c, "all masked");
    }
}
END_TEST

START_TEST(all_false_tiles_are_skipped_without_reading_k_v_or_bias)
{
    /* Keys [128, 384) are false in every mask row and their K, V and bias are NaN: any read of
     * them reaching the arithmetic would turn the output NaN. */
    for (int m = 1; m < 3; m++) {
        gpu_case c = base(128, DM_BF16);
        c.Lk = 517;
        c.Lq = 100;
        c.mask = (dm_layout)m;
        c.bias = (dm_layout)m;
        c.masked_key_begin = 128;
        c.masked_key_end = 384;
        gpu_check_case(&c, m == 1 ? "skip tiles mask-q" : "skip tiles mask-k");
        c.causal = true;
        gpu_check_case(&c, m == 1 ? "skip tiles mask-q causal" : "skip tiles mask-k causal");
    }
}
END_TEST

START_TEST(staged_mask_tiles_match_when_rows_are_16_byte_aligned)
{
    /* Lk a multiple of 16: per-query mask rows are staged by cp.async (mask_vec16), including
     * skipped tiles (NaN K, V, bias behind them), a partial last row block and broadcasts. */
    for (int cz = 0; cz < 2; cz++) {
        gpu_case c = base(128, cz ? DM_F16 : DM_BF16);
        c.Lk = 512;
        c.Lq = 100;
        c.mask = DM_LAYOUT_Q;
        c.mask_heads = 4;
        c.bias = DM_LAYOUT_Q;
        c.masked_key_begin = 128;
        c.masked_key_end = 384;
        c.causal = cz;
        gpu_check_case(&c, cz ? "staged mask causal" : "staged mask");
        c.masked_key_begin = c.masked_key_end = 0;
        c.masked_row_every = 5;
        c.Lq = 333;
        gpu_check_case(&c, cz ? "staged mask rows causal" : "staged mask rows");
    }
}
END_TEST

START_TEST(a_lone_false_key_in_an_all_true_mask_is_masked)
{
    /* Every other mask byte true (a dense mask, the case the vote can shortcut): one false key,
     * mid-tile or at a tile's last byte, must still be masked. Its bias is +30, so a tile wrongly
     * taken as all-true lets it take over the softmax of every row (NaN K/V would not do here:
     * a masked key inside a visible tile is loaded, and 0 * NaN is NaN in P V). Lk a multiple of
     * 16: rows are staged. */
    static const int lone[] = {200, 255};
    for (int m = 1; m < 3; m++)
        for (int cz = 0; cz < 2; cz++)
            for (int x = 0; x < 2; x++) {
                gpu_case c = base(128, DM_BF16);
                c.Lk = 512;
                c.Lq = 160;
                c.mask = c.bias = (dm_layout)m;
                c.mask_density = 1.0;
                c.hot_key = lone[x] + 1;
                c.causal = cz;
                gpu_check_case(&c, m == 1 ? "lone false key mask-q" : "lone false key mask-k");
            }
}
END_TEST

START_TEST(softcap_and_explicit_scale_match)
{
    for (int t = 0; t < 2; t++) {
        gpu_case c = base(128, t ? DM_BF16 : DM_F16);
        c.bias = DM_LAYOUT_Q;
        c.softcap = 5.f;
        gpu_check_case(&c, "softcap 5");
        c.softcap = 0.f;
        c.scale = 0.3f;
        gpu_check_case(&c, "scale 0.3");
        c.softcap = 2.f;
        c.causal = true;
        c.mask = DM_LAYOUT_K;
        gpu_check_case(&c, "softcap 2 scale 0.3 causal");
    }
}
END_TEST

START_TEST(single_query_and_single_key_match)
{
    const int shapes[][2] = {{1, 1}, {1, 1000}, {1000, 1}, {1, 33}, {17, 1}};
    for (size_t i = 0; i < 5; i++) {
        gpu_case c = base(64, DM_F16);
        c.Lq = shapes[i][0];
        c.Lk = shapes[i][1];
        c.mask = DM_LAYOUT_K;
        c.bias = DM_LAYOUT_K;
        c.mask_density = 0.9;
        char label[64];
        snprintf(label, sizeof label, "Lq=%d Lk=%d", c.Lq, c.Lk);
        gpu_check_case(&c, label);
    }
}
END_TEST

START_TEST(fp32_bias_matches)
{
    for (int b = 1; b < 3; b++) {
        gpu_case c = base(64, DM_BF16);
        c.bias = (dm_layout)b;
        c.bias_f32 = true;
        c.bias_heads = 4;
        gpu_check_case(&c, b == 1 ? "f32 bias q" : "f32 bias k");
    }
}
END_TEST

START_TEST(caller_strides_are_honoured_and_nothing_is_written_outside_o)
{
    for (int t = 0; t < 2; t++) {
        gpu_case c = base(80, t ? DM_BF16 : DM_F16);
        c.strided = true;
        c.mask = DM_LAYOUT_Q;
        c.bias = DM_LAYOUT_K;
        c.causal = t;
        gpu_check_case(&c, "strided (B,H,L,D+8)");
    }
}
END_TEST

START_TEST(lse_may_be_omitted)
{
    gpu_case c = base(256, DM_BF16);
    c.no_lse = true;
    c.mask = DM_LAYOUT_K;
    gpu_check_case(&c, "no lse d256");
}
END_TEST

START_TEST(longer_sequences_match)
{
    gpu_case c = base(128, DM_BF16);
    c.B = 1;
    c.H = 2;
    c.Hkv = 1;
    c.Lq = 1000;
    c.Lk = 2051;
    c.mask = DM_LAYOUT_Q;
    c.bias = DM_LAYOUT_Q;
    c.causal = true;
    c.mask_density = 0.5;
    gpu_check_case(&c, "1000x2051 causal");
}
END_TEST

#define TESTS(X) \
    X(every_head_dim_matches_the_reference_in_both_dtypes) \
    X(every_mask_and_bias_layout_and_broadcast_matches) \
    X(causal_is_bottom_right_aligned_for_lq_not_equal_lk) \
    X(gqa_and_mqa_read_the_right_kv_head) \
    X(fully_masked_rows_give_zero_output_and_infinite_lse) \
    X(all_false_tiles_are_skipped_without_reading_k_v_or_bias) \
    X(staged_mask_tiles_match_when_rows_are_16_byte_aligned) \
    X(a_lone_false_key_in_an_all_true_mask_is_masked) \
    X(softcap_and_explicit_scale_match) \
    X(single_query_and_single_key_match) \
    X(fp32_bias_matches) \
    X(caller_strides_are_honoured_and_nothing_is_written_outside_o) \
    X(lse_may_be_omitted) \
    X(longer_sequences_match)
DM_TEST_MAIN_SKIP("gpu_fwd", TESTS, dm_gpu_absent)
