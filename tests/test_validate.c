/* test_validate.c: dm_fwd_check, rule by rule. Every bad argument gets its status and a message
 * naming it; valid arguments give a normalized plan. Tensor pointers are fake device addresses:
 * dm_fwd_check never dereferences them. dm_fwd on bad arguments leaves its output untouched. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "fwd_plan.h"
#include "harness.h"
#include "test_compile.h"
#include "reference.h"

enum { B = 2, LQ = 5, H = 8, HKV = 2, D = 64, LK = 7 };

#define Q_ADDR 0x100000u
#define K_ADDR 0x200000u
#define V_ADDR 0x300000u
#define O_ADDR 0x400000u
#define MASK_ADDR 0x500001u /* bool: any address is aligned */
#define BIAS_ADDR 0x600000u
#define LSE_ADDR 0x700000u

/* A contiguous tensor at a fake address. */
static void set_tensor(dm_tensor *t, uintptr_t addr, dm_dtype dt, int rank, int64_t s0, int64_t s1,
                       int64_t s2, int64_t s3)
{
    const int64_t shape[4] = {s0, s1, s2, s3};

    memset(t, 0, sizeof *t);
    t->data = (void *)addr;
    t->dtype = dt;
    t->rank = rank;
    for (int d = 0; d < rank; d++)
        t->shape[d] = shape[d];
    int64_t stride = 1;
    for (int d = rank - 1; d >= 0; d--) {
        t->strides[d] = stride;
        stride *= t->shape[d];
    }
}

/* q (2, 5, 8, 64), k and v (2, 7, 2, 64), o like q: GQA, no optional tensors. */
static dm_fwd_args valid_args(void)
{
    dm_fwd_args a;

    memset(&a, 0, sizeof a);
    set_tensor(&a.q, Q_ADDR, DM_F16, 4, B, LQ, H, D);
    set_tensor(&a.k, K_ADDR, DM_F16, 4, B, LK, HKV, D);
    set_tensor(&a.v, V_ADDR, DM_F16, 4, B, LK, HKV, D);
    set_tensor(&a.o, O_ADDR, DM_F16, 4, B, LQ, H, D);
    return a;
}

/* valid_args plus a full mask (B, H, Lq, Lk), a broadcast bias (1, Hkv, 1, Lk) and lse. */
static dm_fwd_args valid_args_full(void)
{
    dm_fwd_args a = valid_args();

    set_tensor(&a.mask, MASK_ADDR, DM_BOOL, 4, B, H, LQ, LK);
    set_tensor(&a.bias, BIAS_ADDR, DM_F16, 4, 1, HKV, 1, LK);
    set_tensor(&a.lse, LSE_ADDR, DM_F32, 3, B, H, LQ, 0);
    return a;
}

static void set_shape(dm_tensor *t, int64_t s0, int64_t s1, int64_t s2, int64_t s3)
{
    set_tensor(t, (uintptr_t)t->data, t->dtype, t->rank, s0, s1, s2, s3);
}

/* The status, a message that names `needle`, starts with the call and has no full stop. */
static void expect_error(const dm_fwd_args *a, dm_status want, const char *needle)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    dm_fwd_plan plan;
    dm_status st = dm_fwd_check(ctx, "dm_fwd", a, &plan);

    expect_refusal(ctx, st, want, "dm_fwd", needle);
    dm_ctx_destroy(ctx);
}

static void expect_invalid(const dm_fwd_args *a, const char *needle)
{
    expect_error(a, DM_ERR_INVALID_ARG, needle);
}

static dm_fwd_plan expect_ok(const dm_fwd_args *a)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    dm_fwd_plan plan;
    dm_status st = dm_fwd_check(ctx, "dm_fwd", a, &plan);

    ck_assert_msg(st == DM_OK, "status %s: %s", dm_status_name(st), dm_errmsg(ctx));
    ck_assert_str_eq(dm_errmsg(ctx), "");
    dm_ctx_destroy(ctx);
    return plan;
}

static void expect_message(const dm_fwd_args *a, dm_status want, const char *text)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    dm_fwd_plan plan;

    ck_assert_int_eq(dm_fwd_check(ctx, "dm_fwd", a, &plan), want);
    ck_assert_str_eq(dm_errmsg(ctx), text);
    dm_ctx_destroy(ctx);
}

/* ---- valid arguments ---- */

START_TEST(check_accepts_valid_args_and_leaves_no_message)
{
    dm_fwd_args a = valid_args();
    expect_ok(&a);
    a = valid_args_full();
    expect_ok(&a);
}
END_TEST

START_TEST(check_accepts_one_query_and_one_key)
{
    dm_fwd_args a = valid_args_full();

    set_shape(&a.q, B, 1, H, D);
    set_shape(&a.o, B, 1, H, D);
    set_shape(&a.k, B, 1, HKV, D);
    set_shape(&a.v, B, 1, HKV, D);
    set_shape(&a.mask, B, H, 1, 1);
    set_shape(&a.bias, 1, 1, 1, 1);
    set_shape(&a.lse, B, H, 1, 0);
    dm_fwd_plan p = expect_ok(&a);
    ck_assert_int_eq(p.Lq, 1);
    ck_assert_int_eq(p.Lk, 1);
}
END_TEST

START_TEST(check_accepts_head_dims_from_8_to_256_in_steps_of_8)
{
    for (int64_t d = 8; d <= 256; d += 8) {
        dm_fwd_args a = valid_args();
        set_shape(&a.q, B, LQ, H, d);
        set_shape(&a.o, B, LQ, H, d);
        set_shape(&a.k, B, LK, HKV, d);
        set_shape(&a.v, B, LK, HKV, d);
        dm_fwd_plan p = expect_ok(&a);
        ck_assert_int_eq(p.D, d);
    }
}
END_TEST

START_TEST(check_accepts_f32_bias_with_bf16_inputs)
{
    dm_fwd_args a = valid_args_full();

    a.q.dtype = a.k.dtype = a.v.dtype = a.o.dtype = DM_BF16;
    a.bias.dtype = DM_F32;
    dm_fwd_plan p = expect_ok(&a);
    ck_assert_int_eq(p.dtype, DM_BF16);
    ck_assert_int_eq(p.bias_dtype, DM_F32);
}
END_TEST

START_TEST(check_accepts_inputs_broadcast_with_stride_0)
{
    dm_fwd_args a = valid_args_full();

    a.k.strides[0] = 0; /* one K for every batch, expanded */
    a.v.strides[0] = 0;
    a.mask.strides[1] = 0; /* (B, H, Lq, Lk) expanded over heads */
    dm_fwd_plan p = expect_ok(&a);
    ck_assert_int_eq(p.k_stride[0], 0);
    ck_assert_int_eq(p.mask_stride[1], 0);
}
END_TEST

START_TEST(check_accepts_outputs_in_permuted_and_padded_layouts)
{
    dm_fwd_args a = valid_args_full();

    /* o stored as (B, H, Lq, D), rows padded to 72 elements; lse stored as (B, Lq, H). */
    a.o.strides[3] = 1;
    a.o.strides[1] = 72;
    a.o.strides[2] = 72 * LQ;
    a.o.strides[0] = 72 * LQ * H;
    a.lse.strides[2] = H;
    a.lse.strides[1] = 1;
    a.lse.strides[0] = H * LQ;
    dm_fwd_plan p = expect_ok(&a);
    ck_assert_int_eq(p.o_stride[0], 72 * LQ * H);
    ck_assert_int_eq(p.o_stride[1], 72);
    ck_assert_int_eq(p.o_stride[2], 72 * LQ);
    ck_assert_int_eq(p.lse_stride[0], H * LQ);
    ck_assert_int_eq(p.lse_stride[1], 1);
    ck_assert_int_eq(p.lse_stride[2], H);
}
END_TEST

START_TEST(check_ignores_strides_of_size_1_dimensions)
{
    dm_fwd_args a = valid_args_full();

    set_shape(&a.q, 1, LQ, H, D);
    set_shape(&a.o, 1, LQ, H, D);
    set_shape(&a.k, 1, LK, HKV, D);
    set_shape(&a.v, 1, LK, HKV, D);
    set_shape(&a.mask, 1, H, LQ, LK);
    set_shape(&a.lse, 1, H, LQ, 0);
    a.q.strides[0] = 3; /* not a multiple of 8, but never stepped */
    a.o.strides[0] = 0; /* an output stride 0 on a size-1 dimension writes nothing twice */
    a.lse.strides[0] = 0;
    a.bias.strides[2] = 5;
    dm_fwd_plan p = expect_ok(&a);
    ck_assert_int_eq(p.q_stride[0], 0);
    ck_assert_int_eq(p.o_stride[0], 0);
    ck_assert_int_eq(p.bias_stride[2], 0);
}
END_TEST

START_TEST(check_without_context_returns_invalid_arg)
{
    dm_fwd_args a = valid_args();
    dm_fwd_plan p;

    ck_assert_int_eq(dm_fwd_check(NULL, "dm_fwd", &a, &p), DM_ERR_INVALID_ARG);
    ck_assert_int_eq(dm_fwd_check(NULL, "dm_fwd", NULL, &p), DM_ERR_INVALID_ARG);
}
END_TEST

START_TEST(check_clears_the_previous_message_on_success)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    dm_fwd_args a = valid_args();
    dm_fwd_plan p;

    a.causal = 2;
    ck_assert_int_eq(dm_fwd_check(ctx, "dm_fwd", &a, &p), DM_ERR_INVALID_ARG);
    ck_assert_str_ne(dm_errmsg(ctx), "");
    a.causal = 1;
    ck_assert_int_eq(dm_fwd_check(ctx, "dm_fwd", &a, &p), DM_OK);
    ck_assert_str_eq(dm_errmsg(ctx), "");
    dm_ctx_destroy(ctx);
}
END_TEST

START_TEST(check_prefixes_messages_with_the_call_it_was_given)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    dm_fwd_args a = valid_args();
    dm_fwd_plan p;

    a.causal = 3;
    ck_assert_int_eq(dm_fwd_check(ctx, "dm_ref_fwd", &a, &p), DM_ERR_INVALID_ARG);
    ck_assert_str_eq(dm_errmsg(ctx), "dm_ref_fwd: causal = 3: expected 0 or 1");
    dm_ctx_destroy(ctx);
}
END_TEST

/* ---- presence and rank ---- */

START_TEST(check_rejects_null_args)
{
    expect_invalid(NULL, "args");
}
END_TEST

START_TEST(check_rejects_null_data_of_q_k_v_and_o)
{
    static const char *const names[] = {"q.data", "k.data", "v.data", "o.data"};
    for (int t = 0; t < 4; t++) {
        dm_fwd_args a = valid_args();
        dm_tensor *ts[] = {&a.q, &a.k, &a.v, &a.o};
        ts[t]->data = NULL;
        expect_invalid(&a, names[t]);
    }
}
END_TEST

START_TEST(check_rejects_rank_other_than_4_for_q_k_v_and_o)
{
    static const char *const names[] = {"q.rank", "k.rank", "v.rank", "o.rank"};
    static const int ranks[] = {0, 3, 5, -1};
    for (int t = 0; t < 4; t++)
        for (int r = 0; r < 4; r++) {
            dm_fwd_args a = valid_args();
            dm_tensor *ts[] = {&a.q, &a.k, &a.v, &a.o};
            ts[t]->rank = ranks[r];
            expect_invalid(&a, names[t]);
        }
}
END_TEST

START_TEST(check_rejects_optional_tensors_with_data_but_rank_0)
{
    static const char *const names[] = {"mask.rank", "bias.rank", "lse.rank"};
    for (int t = 0; t < 3; t++) {
        dm_fwd_args a = valid_args_full();
        dm_tensor *ts[] = {&a.mask, &a.bias, &a.lse};
        ts[t]->rank = 0;
        expect_invalid(&a, names[t]);
    }
}
END_TEST

START_TEST(check_rejects_optional_tensors_with_rank_but_null_data)
{
    static const char *const names[] = {"mask.data", "bias.data", "lse.data"};
    for (int t = 0; t < 3; t++) {
        dm_fwd_args a = valid_args_full();
        dm_tensor *ts[] = {&a.mask, &a.bias, &a.lse};
        ts[t]->data = NULL;
        expect_invalid(&a, names[t]);
    }
}
END_TEST

START_TEST(check_rejects_mask_and_bias_of_rank_other_than_4)
{
    dm_fwd_args a = valid_args_full();
    a.mask.rank = 2;
    expect_invalid(&a, "mask.rank");
    a = valid_args_full();
    a.bias.rank = 3;
    expect_invalid(&a, "bias.rank");
}
END_TEST

START_TEST(check_rejects_lse_of_rank_other_than_3)
{
    dm_fwd_args a = valid_args_full();
    a.lse.rank = 4;
    expect_invalid(&a, "lse.rank");
}
END_TEST

/* ---- dtypes ---- */

START_TEST(check_rejects_q_that_is_not_f16_or_bf16)
{
    static const dm_dtype bad[] = {DM_F32, DM_BOOL, DM_I32, DM_DTYPE_NONE};
    for (int i = 0; i < 4; i++) {
        dm_fwd_args a = valid_args();
        a.q.dtype = a.k.dtype = a.v.dtype = a.o.dtype = bad[i];
        expect_invalid(&a, "q.dtype");
    }
}
END_TEST

START_TEST(check_rejects_k_v_or_o_of_another_dtype_than_q)
{
    static const char *const names[] = {"k.dtype", "v.dtype", "o.dtype"};
    for (int t = 0; t < 3; t++) {
        dm_fwd_args a = valid_args();
        dm_tensor *ts[] = {&a.k, &a.v, &a.o};
        ts[t]->dtype = DM_BF16;
        expect_invalid(&a, names[t]);
    }
}
END_TEST

START_TEST(check_rejects_mask_that_is_not_bool)
{
    dm_fwd_args a = valid_args_full();
    a.mask.dtype = DM_F16;
    a.mask.data = (void *)(uintptr_t)0x500000u;
    expect_invalid(&a, "mask.dtype");
}
END_TEST

START_TEST(check_rejects_integer_bias)
{
    dm_fwd_args a = valid_args_full();
    a.bias.dtype = DM_I32;
    expect_invalid(&a, "bias.dtype");
}
END_TEST

START_TEST(check_rejects_bias_of_the_other_half_precision_dtype)
{
    dm_fwd_args a = valid_args_full();
    a.bias.dtype = DM_BF16;
    expect_invalid(&a, "bias.dtype");
}
END_TEST

START_TEST(check_rejects_lse_that_is_not_f32)
{
    dm_fwd_args a = valid_args_full();
    a.lse.dtype = DM_F16;
    expect_invalid(&a, "lse.dtype");
}
END_TEST

/* ---- shapes of q, k, v, o ---- */

/* B and the lengths may be 0 (check_accepts_an_empty_batch_or_length_with_null_data); heads and
 * D may not, and no size may be negative. */
START_TEST(check_rejects_negative_sizes_and_heads_or_head_dim_of_0)
{
    static const char *const q_names[] = {"q.shape[0] (B) = -1: expected >= 0",
                                          "q.shape[1] (Lq) = -1: expected >= 0",
                                          "q.shape[2] (H) = 0: expected >= 1",
                                          "q.shape[3] (D) = 0: expected >= 1"};
    static const char *const k_names[] = {"k.shape[0] (B) = -1", "k.shape[1] (Lk) = -1",
                                          "k.shape[2] (Hkv) = 0", "k.shape[3] (D) = 0"};
    for (int d = 0; d < 4; d++) {
        dm_fwd_args a = valid_args();
        a.q.shape[d] = d < 2 ? -1 : 0;
        a.o.shape[d] = a.q.shape[d];
        expect_invalid(&a, q_names[d]);
        a = valid_args();
        a.k.shape[d] = d < 2 ? -1 : 0;
        a.v.shape[d] = a.k.shape[d];
        expect_invalid(&a, k_names[d]);
    }
}
END_TEST

/* As in PyTorch, B = 0, Lq = 0 or Lk = 0 is a valid call, and a tensor with no elements may have
 * data NULL: every tensor for B = 0; q, o, lse and a per-query mask for Lq = 0; k, v and the
 * mask and bias (their Lk keys) for Lk = 0. */
START_TEST(check_accepts_an_empty_batch_or_length_with_null_data)
{
    dm_fwd_args a = valid_args_full(); /* mask (B, H, Lq, Lk), bias (1, Hkv, 1, Lk) */
    set_shape(&a.q, 0, LQ, H, D);
    set_shape(&a.k, 0, LK, HKV, D);
    set_shape(&a.v, 0, LK, HKV, D);
    set_shape(&a.o, 0, LQ, H, D);
    set_shape(&a.mask, 0, H, LQ, LK);
    set_shape(&a.lse, 0, H, LQ, 0);
    a.q.data = a.k.data = a.v.data = a.o.data = a.mask.data = a.lse.data = NULL;
    dm_fwd_plan p = expect_ok(&a);
    ck_assert_int_eq(p.B, 0);
    ck_assert_int_eq(p.mask_layout, DM_LAYOUT_Q);

    a = valid_args_full();
    set_shape(&a.q, B, 0, H, D);
    set_shape(&a.o, B, 0, H, D);
    set_shape(&a.mask, B, H, 0, LK);
    set_shape(&a.lse, B, H, 0, 0);
    a.q.data = a.o.data = a.mask.data = a.lse.data = NULL;
    p = expect_ok(&a);
    ck_assert_int_eq(p.Lq, 0);

    a = valid_args_full();
    set_shape(&a.k, B, 0, HKV, D);
    set_shape(&a.v, B, 0, HKV, D);
    set_shape(&a.mask, B, H, LQ, 0);
    set_shape(&a.bias, 1, HKV, 1, 0);
    a.k.data = a.v.data = a.mask.data = a.bias.data = NULL;
    p = expect_ok(&a);
    ck_assert_int_eq(p.Lk, 0);
    ck_assert_int_eq(p.Lq, LQ);
    ck_assert(p.has_lse);
    ck_assert_int_eq(p.mask_layout, DM_LAYOUT_Q);
    ck_assert_int_eq(p.bias_layout, DM_LAYOUT_K);
}
END_TEST

/* NULL is for no elements only: with Lk = 0, q, o and lse still hold elements. */
START_TEST(check_rejects_null_data_of_a_tensor_with_elements_beside_empty_ones)
{
    static const char *const names[] = {"q.data is NULL: expected a pointer (NULL only for a "
                                        "tensor with a dimension of size 0)",
                                        "o.data is NULL", "lse.data is NULL but lse.rank = 3"};
    for (int t = 0; t < 3; t++) {
        dm_fwd_args a = valid_args_full();
        set_shape(&a.k, B, 0, HKV, D);
        set_shape(&a.v, B, 0, HKV, D);
        set_shape(&a.mask, B, H, LQ, 0);
        set_shape(&a.bias, 1, HKV, 1, 0);
        a.k.data = a.v.data = NULL;
        dm_tensor *ts[] = {&a.q, &a.o, &a.lse};
        ts[t]->data = NULL;
        expect_invalid(&a, names[t]);
    }
    /* a NULL tensor whose rank is wrong is not taken for an empty one */
    dm_fwd_args a = valid_args();
    set_shape(&a.k, B, 0, HKV, D);
    a.k.data = NULL;
    a.k.rank = 3;
    expect_invalid(&a, "k.data is NULL");
}
END_TEST

START_TEST(check_rejects_hkv_that_does_not_divide_h)
{
    dm_fwd_args a = valid_args();
    set_shape(&a.k, B, LK, 3, D);
    set_shape(&a.v, B, LK, 3, D);
    expect_message(&a, DM_ERR_INVALID_ARG,
                   "dm_fwd: k.shape[2] (Hkv) = 3 does not divide q.shape[2] (H) = 8");
}
END_TEST

START_TEST(check_rejects_head_dim_above_256)
{
    dm_fwd_args a = valid_args();
    set_shape(&a.q, B, LQ, H, 264);
    set_shape(&a.o, B, LQ, H, 264);
    set_shape(&a.k, B, LK, HKV, 264);
    set_shape(&a.v, B, LK, HKV, 264);
    expect_invalid(&a, "q.shape[3]");
}
END_TEST

START_TEST(check_rejects_head_dim_not_a_multiple_of_8)
{
    static const int64_t bad[] = {4, 60, 100, 7};
    for (int i = 0; i < 4; i++) {
        dm_fwd_args a = valid_args();
        set_shape(&a.q, B, LQ, H, bad[i]);
        set_shape(&a.o, B, LQ, H, bad[i]);
        set_shape(&a.k, B, LK, HKV, bad[i]);
        set_shape(&a.v, B, LK, HKV, bad[i]);
        expect_invalid(&a, "q.shape[3]");
    }
}
END_TEST

START_TEST(check_rejects_batch_of_k_unlike_q)
{
    dm_fwd_args a = valid_args();
    set_shape(&a.k, 3, LK, HKV, D);
    set_shape(&a.v, 3, LK, HKV, D);
    expect_invalid(&a, "k.shape[0]");
}
END_TEST

START_TEST(check_rejects_head_dim_of_k_unlike_q)
{
    dm_fwd_args a = valid_args();
    set_shape(&a.k, B, LK, HKV, 32);
    set_shape(&a.v, B, LK, HKV, 32);
    expect_invalid(&a, "k.shape[3]");
}
END_TEST

START_TEST(check_rejects_v_shape_unlike_k)
{
    static const char *const names[] = {"v.shape[0]", "v.shape[1]", "v.shape[2]", "v.shape[3]"};
    for (int d = 0; d < 4; d++) {
        dm_fwd_args a = valid_args();
        a.v.shape[d] *= 2;
        expect_invalid(&a, names[d]);
    }
}
END_TEST

START_TEST(check_rejects_o_shape_unlike_q)
{
    static const char *const names[] = {"o.shape[0]", "o.shape[1]", "o.shape[2]", "o.shape[3]"};
    for (int d = 0; d < 4; d++) {
        dm_fwd_args a = valid_args();
        a.o.shape[d] *= 2;
        expect_invalid(&a, names[d]);
    }
}
END_TEST

START_TEST(check_rejects_batch_and_heads_beyond_the_grid_limit)
{
    dm_fwd_args a = valid_args();
    set_shape(&a.q, 65536, LQ, H, D);
    set_shape(&a.o, 65536, LQ, H, D);
    set_shape(&a.k, 65536, LK, HKV, D);
    set_shape(&a.v, 65536, LK, HKV, D);
    expect_invalid(&a, "q.shape[0] (B) = 65536");

    a = valid_args();
    set_shape(&a.q, B, LQ, 65536, D);
    set_shape(&a.o, B, LQ, 65536, D);
    expect_invalid(&a, "q.shape[2] (H) = 65536");

    a = valid_args();
    set_shape(&a.q, 65535, LQ, 65535, D);
    set_shape(&a.o, 65535, LQ, 65535, D);
    set_shape(&a.k, 65535, LK, 1, D);
    set_shape(&a.v, 65535, LK, 1, D);
    expect_ok(&a);
}
END_TEST

START_TEST(check_rejects_lengths_beyond_int32)
{
    dm_fwd_args a = valid_args();
    set_shape(&a.q, 1, (int64_t)1 << 31, 1, D);
    set_shape(&a.o, 1, (int64_t)1 << 31, 1, D);
    set_shape(&a.k, 1, LK, 1, D);
    set_shape(&a.v, 1, LK, 1, D);
    expect_invalid(&a, "q.shape[1] (Lq)");

    a = valid_args();
    set_shape(&a.k, B, (int64_t)1 << 31, HKV, D);
    set_shape(&a.v, B, (int64_t)1 << 31, HKV, D);
    expect_invalid(&a, "k.shape[1] (Lk)");
}
END_TEST

/* ---- shapes of mask, bias, lse ---- */

/* Sets dimension d of the mask or bias to a size that broadcasts nowhere. */
static void expect_broadcast_error(bool bias, int d)
{
    static const int64_t bad[] = {3, 4, 3, 6}; /* not B/1, not H/Hkv/1, not Lq/1, not Lk */
    char needle[32];
    dm_fwd_args a = valid_args_full();
    dm_tensor *t = bias ? &a.bias : &a.mask;

    int64_t s[4] = {t->shape[0], t->shape[1], t->shape[2], t->shape[3]};
    s[d] = bad[d];
    set_shape(t, s[0], s[1], s[2], s[3]);
    snprintf(needle, sizeof needle, "%s.shape[%d]", bias ? "bias" : "mask", d);
    expect_invalid(&a, needle);
}

START_TEST(check_rejects_mask_batch_that_does_not_broadcast)
{
    expect_broadcast_error(false, 0);
}
END_TEST
START_TEST(check_rejects_mask_heads_that_do_not_broadcast)
{
    expect_broadcast_error(false, 1);
}
END_TEST
START_TEST(check_rejects_mask_rows_that_do_not_broadcast)
{
    expect_broadcast_error(false, 2);
}
END_TEST
START_TEST(check_rejects_mask_keys_unlike_lk)
{
    expect_broadcast_error(false, 3);
}
END_TEST
START_TEST(check_rejects_bias_batch_that_does_not_broadcast)
{
    expect_broadcast_error(true, 0);
}
END_TEST
START_TEST(check_rejects_bias_heads_that_do_not_broadcast)
{
    expect_broadcast_error(true, 1);
}
END_TEST
START_TEST(check_rejects_bias_rows_that_do_not_broadcast)
{
    expect_broadcast_error(true, 2);
}
END_TEST
START_TEST(check_rejects_bias_keys_unlike_lk)
{
    expect_broadcast_error(true, 3);
}
END_TEST

START_TEST(check_rejects_mask_keys_that_would_broadcast)
{
    /* Lk is never broadcast: one value per key is the least a mask says. */
    dm_fwd_args a = valid_args_full();
    set_shape(&a.mask, B, H, LQ, 1);
    expect_invalid(&a, "mask.shape[3]");
}
END_TEST

START_TEST(check_rejects_lse_shape_unlike_b_h_lq)
{
    static const char *const names[] = {"lse.shape[0]", "lse.shape[1]", "lse.shape[2]"};
    for (int d = 0; d < 3; d++) {
        dm_fwd_args a = valid_args_full();
        int64_t s[3] = {B, H, LQ};
        s[d] += 1;
        set_shape(&a.lse, s[0], s[1], s[2], 0);
        expect_invalid(&a, names[d]);
    }
    dm_fwd_args a = valid_args_full();
    set_shape(&a.lse, B, LQ, H, 0); /* (B, Lq, H): the o order, not lse's */
    expect_invalid(&a, "lse.shape[1]");
}
END_TEST

/* ---- strides, alignment, extents ---- */

START_TEST(check_rejects_misaligned_q_k_v_and_o_pointers)
{
    static const char *const names[] = {"q.data", "k.data", "v.data", "o.data"};
    for (int t = 0; t < 4; t++) {
        dm_fwd_args a = valid_args();
        dm_tensor *ts[] = {&a.q, &a.k, &a.v, &a.o};
        ts[t]->data = (char *)ts[t]->data + 8;
        expect_invalid(&a, names[t]);
        expect_invalid(&a, "16 bytes at a time");
    }
}
END_TEST

START_TEST(check_rejects_row_strides_not_a_multiple_of_8)
{
    dm_fwd_args a = valid_args();
    a.q.strides[1] = H * D + 4;
    a.q.strides[0] = 8 * LQ * H * D;
    expect_invalid(&a, "q.strides[1]");
    expect_invalid(&a, "16 bytes at a time");

    a = valid_args();
    a.v.strides[2] = 68;
    a.v.strides[1] = 68 * HKV;
    a.v.strides[0] = 68 * HKV * LK;
    expect_invalid(&a, "v.strides[2]");
}
END_TEST

START_TEST(check_rejects_negative_strides)
{
    dm_fwd_args a = valid_args_full();
    a.k.strides[0] = -a.k.strides[0];
    expect_invalid(&a, "k.strides[0]");

    a = valid_args_full();
    a.mask.strides[2] = -LK;
    expect_invalid(&a, "mask.strides[2]");

    a = valid_args_full();
    a.lse.strides[1] = -1;
    expect_invalid(&a, "lse.strides[1]");
}
END_TEST

START_TEST(check_rejects_a_last_dimension_that_is_not_contiguous)
{
    dm_fwd_args a = valid_args_full();
    a.q.strides[3] = 2;
    expect_invalid(&a, "q.strides[3]");

    a = valid_args_full();
    a.o.strides[3] = 0;
    expect_invalid(&a, "o.strides[3]");

    a = valid_args_full();
    a.mask.strides[3] = 2;
    expect_invalid(&a, "mask.strides[3]");

    a = valid_args_full();
    a.bias.strides[3] = 0;
    expect_invalid(&a, "bias.strides[3]");
}
END_TEST

START_TEST(check_rejects_bias_and_lse_not_aligned_to_their_elements)
{
    dm_fwd_args a = valid_args_full();
    a.bias.data = (void *)(uintptr_t)(BIAS_ADDR + 1);
    expect_invalid(&a, "bias.data");

    a = valid_args_full();
    a.bias.dtype = DM_F32;
    a.bias.data = (void *)(uintptr_t)(BIAS_ADDR + 2);
    expect_invalid(&a, "bias.data");

    a = valid_args_full();
    a.lse.data = (void *)(uintptr_t)(LSE_ADDR + 2);
    expect_invalid(&a, "lse.data");
}
END_TEST

START_TEST(check_rejects_output_stride_0_on_a_dimension_above_size_1)
{
    dm_fwd_args a = valid_args_full();
    a.o.strides[1] = 0;
    expect_invalid(&a, "o.strides[1]");

    a = valid_args_full();
    a.o.strides[0] = 0;
    expect_invalid(&a, "o.strides[0]");

    a = valid_args_full();
    a.lse.strides[2] = 0;
    expect_invalid(&a, "lse.strides[2]");
}
END_TEST

START_TEST(check_rejects_output_rows_that_overlap)
{
    dm_fwd_args a = valid_args_full();
    a.o.strides[2] = 8; /* heads 8 elements apart, rows 64 long */
    expect_invalid(&a, "o.strides[2]");

    a = valid_args_full();
    a.lse.strides[2] = 1; /* rows and heads both step by 1 */
    a.lse.strides[1] = 1;
    expect_invalid(&a, "lse.strides");
}
END_TEST

START_TEST(check_rejects_extents_that_overflow_int64)
{
    dm_fwd_args a = valid_args_full();
    a.q.strides[0] = (int64_t)1 << 62; /* (B - 1) * stride fits; * 2 bytes does not */
    expect_invalid(&a, "q.strides");
    expect_invalid(&a, "overflow");

    a = valid_args_full();
    set_shape(&a.k, B, LK, HKV, D);
    a.k.strides[1] = INT64_MAX / 4 - 7; /* (Lk - 1) * stride overflows */
    a.k.strides[1] -= a.k.strides[1] % 8;
    expect_invalid(&a, "k.strides");

    a = valid_args_full();
    a.mask.strides[0] = INT64_MAX;
    expect_invalid(&a, "mask.strides");

    a = valid_args_full();
    a.lse.strides[0] = INT64_MAX / 2 + 1;
    a.lse.strides[1] = INT64_MAX / 2 + 1;
    expect_invalid(&a, "lse.strides");
}
END_TEST

START_TEST(check_rejects_a_tensor_that_wraps_the_address_space)
{
    dm_fwd_args a = valid_args();
    a.v.data = (void *)(UINTPTR_MAX - 1023); /* 16-byte aligned, 1 KiB from the end */
    expect_invalid(&a, "v.strides");
}
END_TEST

/* ---- scalars ---- */

START_TEST(check_rejects_scale_that_is_nan_infinite_or_negative)
{
    static const float bad[] = {NAN, INFINITY, -INFINITY, -0.125f};
    for (int i = 0; i < 4; i++) {
        dm_fwd_args a = valid_args();
        a.scale = bad[i];
        expect_invalid(&a, "scale");
    }
}
END_TEST

START_TEST(check_rejects_softcap_that_is_nan_infinite_or_negative)
{
    static const float bad[] = {NAN, INFINITY, -1.0f};
    for (int i = 0; i < 3; i++) {
        dm_fwd_args a = valid_args();
        a.softcap = bad[i];
        expect_invalid(&a, "softcap");
    }
}
END_TEST

START_TEST(check_rejects_a_path_that_is_not_a_dm_fwd_path_and_num_splits_out_of_range)
{
    dm_fwd_args a = valid_args();
    a.path = 3;
    expect_invalid(&a, "path = 3: expected DM_PATH_AUTO (0), DM_PATH_TILED (1) or DM_PATH_DECODE");
    a.path = -1;
    expect_invalid(&a, "path = -1");
    a = valid_args();
    a.num_splits = -1;
    expect_invalid(&a, "num_splits = -1: expected 0 (picked from the shapes) to 1024");
    a.num_splits = 1025;
    expect_invalid(&a, "num_splits = 1025");
    a.num_splits = 1024;
    a.path = DM_PATH_DECODE;
    expect_ok(&a);
}
END_TEST

START_TEST(check_rejects_causal_other_than_0_or_1)
{
    dm_fwd_args a = valid_args();
    a.causal = 2;
    expect_invalid(&a, "causal");
    a.causal = -1;
    expect_invalid(&a, "causal");
}
END_TEST

START_TEST(check_accepts_a_window)
{
    /* dm_fwd_check passes it on; the window's own rules are dm_window_mask's (test_window_mask) */
    dm_fwd_args a = valid_args_full();
    a.window = 64;
    expect_ok(&a);
    a.window = 3;
    expect_ok(&a);
}
END_TEST

START_TEST(check_rejects_a_negative_window)
{
    dm_fwd_args a = valid_args();
    a.window = -1;
    expect_invalid(&a, "window");
}
END_TEST

START_TEST(check_reports_invalid_arguments_with_a_window)
{
    dm_fwd_args a = valid_args();
    a.window = 64;
    a.scale = -1;
    expect_invalid(&a, "scale");
}
END_TEST

/* ---- the plan ---- */

START_TEST(plan_holds_sizes_dtype_flags_and_caller_strides)
{
    dm_fwd_args a = valid_args_full();
    a.causal = 1;
    a.softcap = 30;
    a.scale = 0.5f;
    dm_fwd_plan p = expect_ok(&a);

    ck_assert_int_eq(p.B, B);
    ck_assert_int_eq(p.H, H);
    ck_assert_int_eq(p.Hkv, HKV);
    ck_assert_int_eq(p.Lq, LQ);
    ck_assert_int_eq(p.Lk, LK);
    ck_assert_int_eq(p.D, D);
    ck_assert_int_eq(p.dtype, DM_F16);
    ck_assert(p.causal);
    ck_assert_float_eq(p.softcap, 30.0f);
    ck_assert_float_eq(p.scale, 0.5f);
    ck_assert(p.has_lse);
    ck_assert_int_eq(p.q_stride[0], LQ * H * D);
    ck_assert_int_eq(p.q_stride[1], H * D);
    ck_assert_int_eq(p.q_stride[2], D);
    ck_assert_int_eq(p.k_stride[0], LK * HKV * D);
    ck_assert_int_eq(p.k_stride[1], HKV * D);
    ck_assert_int_eq(p.k_stride[2], D);
    ck_assert_int_eq(p.v_stride[1], HKV * D);
    ck_assert_int_eq(p.o_stride[1], H * D);
    ck_assert_int_eq(p.mask_stride[0], H * LQ * LK);
    ck_assert_int_eq(p.mask_stride[1], LQ * LK);
    ck_assert_int_eq(p.mask_stride[2], LK);
    ck_assert_int_eq(p.mask_stride[3], 1);
    ck_assert_int_eq(p.lse_stride[0], H * LQ);
    ck_assert_int_eq(p.lse_stride[1], LQ);
    ck_assert_int_eq(p.lse_stride[2], 1);
}
END_TEST

START_TEST(plan_gives_broadcast_dimensions_stride_0)
{
    dm_fwd_args a = valid_args_full();
    /* Caller strides on size-1 dimensions are whatever the caller's framework left there. */
    set_shape(&a.mask, 1, 1, LQ, LK);
    a.mask.strides[0] = 999;
    a.mask.strides[1] = 7;
    set_shape(&a.bias, B, 1, 1, LK);
    a.bias.strides[1] = 12345;
    a.bias.strides[2] = LK;
    dm_fwd_plan p = expect_ok(&a);

    ck_assert_int_eq(p.mask_stride[0], 0);
    ck_assert_int_eq(p.mask_stride[1], 0);
    ck_assert_int_eq(p.mask_stride[2], LK);
    ck_assert_int_eq(p.mask_stride[3], 1);
    ck_assert_int_eq(p.bias_stride[0], LK);
    ck_assert_int_eq(p.bias_stride[1], 0);
    ck_assert_int_eq(p.bias_stride[2], 0);
    ck_assert_int_eq(p.bias_stride[3], 1);
}
END_TEST

START_TEST(plan_detects_layout_q_and_k_of_mask_and_bias)
{
    dm_fwd_args a = valid_args_full();
    set_shape(&a.mask, B, H, LQ, LK);
    set_shape(&a.bias, B, H, 1, LK);
    dm_fwd_plan p = expect_ok(&a);
    ck_assert_int_eq(p.mask_layout, DM_LAYOUT_Q);
    ck_assert_int_eq(p.bias_layout, DM_LAYOUT_K);

    set_shape(&a.mask, 1, 1, 1, LK);
    set_shape(&a.bias, 1, 1, LQ, LK);
    p = expect_ok(&a);
    ck_assert_int_eq(p.mask_layout, DM_LAYOUT_K);
    ck_assert_int_eq(p.bias_layout, DM_LAYOUT_Q);
    ck_assert_int_eq(p.bias_dtype, DM_F16);

    a = valid_args();
    p = expect_ok(&a);
    ck_assert_int_eq(p.mask_layout, DM_LAYOUT_NONE);
    ck_assert_int_eq(p.bias_layout, DM_LAYOUT_NONE);
    ck_assert(!p.has_lse);
}
END_TEST

START_TEST(plan_chooses_layout_k_when_lq_is_1)
{
    dm_fwd_args a = valid_args_full();
    set_shape(&a.q, B, 1, H, D);
    set_shape(&a.o, B, 1, H, D);
    set_shape(&a.mask, B, H, 1, LK);
    set_shape(&a.bias, B, H, 1, LK);
    set_shape(&a.lse, B, H, 1, 0);
    dm_fwd_plan p = expect_ok(&a);
    ck_assert_int_eq(p.mask_layout, DM_LAYOUT_K);
    ck_assert_int_eq(p.bias_layout, DM_LAYOUT_K);
    ck_assert_int_eq(p.mask_stride[2], 0);
}
END_TEST

START_TEST(plan_head_div_maps_query_heads_to_h_hkv_or_1_heads)
{
    static const int64_t heads[] = {H, HKV, 1};
    static const int64_t div[] = {1, H / HKV, H};
    for (int i = 0; i < 3; i++) {
        dm_fwd_args a = valid_args_full();
        set_shape(&a.mask, B, heads[i], LQ, LK);
        set_shape(&a.bias, 1, heads[i], 1, LK);
        dm_fwd_plan p = expect_ok(&a);
        ck_assert_int_eq(p.mask_head_div, div[i]);
        ck_assert_int_eq(p.bias_head_div, div[i]);
    }
    /* MHA: Hkv == H, so H heads divide by 1. */
    dm_fwd_args a = valid_args_full();
    set_shape(&a.k, B, LK, H, D);
    set_shape(&a.v, B, LK, H, D);
    set_shape(&a.mask, B, H, LQ, LK);
    set_shape(&a.bias, 1, 1, 1, LK);
    dm_fwd_plan p = expect_ok(&a);
    ck_assert_int_eq(p.mask_head_div, 1);
    ck_assert_int_eq(p.bias_head_div, H);
}
END_TEST

START_TEST(plan_resolves_scale_0_to_one_over_sqrt_d)
{
    dm_fwd_args a = valid_args();
    dm_fwd_plan p = expect_ok(&a);
    ck_assert_float_eq(p.scale, 0.125f); /* D = 64 */

    set_shape(&a.q, B, LQ, H, 128);
    set_shape(&a.o, B, LQ, H, 128);
    set_shape(&a.k, B, LK, HKV, 128);
    set_shape(&a.v, B, LK, HKV, 128);
    p = expect_ok(&a);
    ck_assert_float_eq(p.scale, (float)(1.0 / sqrt(128.0)));
}
END_TEST

START_TEST(plan_variant_names_the_kernel_the_plan_needs)
{
    char text[DM_VARIANT_TEXT_MAX];
    dm_variant v;
    dm_fwd_args a = valid_args_full();
    a.causal = 1;
    a.softcap = 50;
    set_shape(&a.mask, B, H, LQ, LK);
    dm_fwd_plan p = expect_ok(&a);

    dm_fwd_plan_variant(&p, DM_SM90, &v);
    dm_variant_format(&v, text, sizeof text);
    ck_assert_str_eq(text, "fwd.d64.f16.mask-q.bias-k.w0.causal.softcap.sm90");

    a = valid_args();
    a.q.dtype = a.k.dtype = a.v.dtype = a.o.dtype = DM_BF16;
    p = expect_ok(&a);
    dm_fwd_plan_variant(&p, DM_SM80, &v);
    dm_variant_format(&v, text, sizeof text);
    ck_assert_str_eq(text, "fwd.d64.bf16.mask-none.bias-none.w0.sm80");
}
END_TEST

/* ---- dm_fwd validates before touching anything ---- */

enum { PATTERN = 0xa5 };

typedef struct host_out {
    dm_fwd_args a;
    void *o, *lse;
    size_t o_bytes, lse_bytes;
} host_out;

/* valid_args_full with o and lse in host memory filled with a pattern. */
static void host_out_init(host_out *h)
{
    h->a = valid_args_full();
    h->o_bytes = (size_t)B * LQ * H * D * 2;
    h->lse_bytes = (size_t)B * H * LQ * 4;
    h->o = aligned_alloc(64, h->o_bytes);
    h->lse = aligned_alloc(64, h->lse_bytes);
    ck_assert_ptr_nonnull(h->o);
    ck_assert_ptr_nonnull(h->lse);
    memset(h->o, PATTERN, h->o_bytes);
    memset(h->lse, PATTERN, h->lse_bytes);
    h->a.o.data = h->o;
    h->a.lse.data = h->lse;
}

static void expect_untouched(const host_out *h)
{
    const unsigned char *o = h->o, *lse = h->lse;
    for (size_t i = 0; i < h->o_bytes; i++)
        ck_assert_msg(o[i] == PATTERN, "o byte %zu changed to 0x%02x", i, o[i]);
    for (size_t i = 0; i < h->lse_bytes; i++)
        ck_assert_msg(lse[i] == PATTERN, "lse byte %zu changed to 0x%02x", i, lse[i]);
}

static void host_out_free(host_out *h)
{
    free(h->o);
    free(h->lse);
}

/* Applies bad argument `which` to h->a; returns the argument name the message must carry. */
static const char *break_args(dm_fwd_args *a, int which)
{
    switch (which) {
    case 0:
        set_shape(&a->k, B, LK, 3, D);
        set_shape(&a->v, B, LK, 3, D);
        return "k.shape[2]";
    case 1:
        set_shape(&a->mask, B, H, 3, LK);
        return "mask.shape[2]";
    case 2:
        a->k.data = (char *)a->k.data + 2;
        return "k.data";
    case 3:
        a->lse.strides[2] = 0;
        return "lse.strides[2]";
    case 4:
        a->o.strides[1] = 8;
        return "o.strides";
    case 5:
        a->v.data = NULL;
        return "v.data";
    default:
        a->scale = NAN;
        return "scale";
    }
}

START_TEST(fwd_returns_invalid_arg_and_leaves_the_output_untouched)
{
    for (int which = 0; which < 7; which++) {
        dm_ctx *ctx = dm_test_offline_ctx();
        host_out h;
        host_out_init(&h);
        const char *name = break_args(&h.a, which);
        dm_status st = dm_fwd(ctx, &h.a, NULL);
        ck_assert_msg(st == DM_ERR_INVALID_ARG, "case %d: status %s: %s", which, dm_status_name(st),
                      dm_errmsg(ctx));
        ck_assert_msg(strstr(dm_errmsg(ctx), name), "case %d: '%s' does not name '%s'", which,
                      dm_errmsg(ctx), name);
        expect_untouched(&h);
        host_out_free(&h);
        dm_ctx_destroy(ctx);
    }
}
END_TEST

START_TEST(fwd_checks_the_window_mask_rules_and_leaves_the_output_untouched)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    host_out h;
    host_out_init(&h);
    /* bias (1, Hkv, 1, Lk) against mask (B, H, Lq, Lk): valid for attention, but the window mask
     * broadcasts bias and mask, and Hkv = 2 against H = 8 does not broadcast */
    h.a.window = 3;
    ck_assert_int_eq(dm_fwd(ctx, &h.a, NULL), DM_ERR_INVALID_ARG);
    ck_assert_str_eq(dm_errmsg(ctx), "dm_fwd: mask.shape[1] = 8 and bias.shape[1] = 2 do not "
                                     "broadcast: expected equal sizes or 1");
    memset(&h.a.bias, 0, sizeof h.a.bias);
    ck_assert_int_eq(dm_fwd(ctx, &h.a, NULL), DM_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "dm_fwd: bias is absent"));
    /* Lk <= window: no window mask; the plain call goes on (and finds no device) */
    h.a.window = LK;
    ck_assert_int_eq(dm_fwd(ctx, &h.a, NULL), DM_ERR_NO_DEVICE);
    expect_untouched(&h);
    host_out_free(&h);
    dm_ctx_destroy(ctx);
}
END_TEST

START_TEST(fwd_on_an_offline_context_reports_no_device_and_leaves_the_output_untouched)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    host_out h;
    host_out_init(&h);
    ck_assert_int_eq(dm_fwd(ctx, &h.a, NULL), DM_ERR_NO_DEVICE);
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "dm_fwd"));
    expect_untouched(&h);
    host_out_free(&h);
    dm_ctx_destroy(ctx);
}
END_TEST

/* No query anywhere (B = 0 or Lq = 0): nothing to write, so nothing is launched and no device is
 * needed; with a window too (there is nothing to select from). Lk = 0 has rows to write (o = 0,
 * lse = +inf), so it needs the device, and skips the window (every key is in it: no bias
 * needed). */
START_TEST(fwd_with_no_query_is_a_no_op_and_with_no_key_still_runs)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    dm_fwd_args a = valid_args();
    set_shape(&a.q, B, 0, H, D);
    set_shape(&a.o, B, 0, H, D);
    a.q.data = a.o.data = NULL;
    ck_assert_int_eq(dm_fwd(ctx, &a, NULL), DM_OK);
    a.window = 3;
    ck_assert_int_eq(dm_fwd(ctx, &a, NULL), DM_OK);
    ck_assert_str_eq(dm_errmsg(ctx), "");

    a = valid_args();
    set_shape(&a.q, 0, LQ, H, D);
    set_shape(&a.k, 0, LK, HKV, D);
    set_shape(&a.v, 0, LK, HKV, D);
    set_shape(&a.o, 0, LQ, H, D);
    ck_assert_int_eq(dm_fwd(ctx, &a, NULL), DM_OK);

    a = valid_args();
    set_shape(&a.k, B, 0, HKV, D);
    set_shape(&a.v, B, 0, HKV, D);
    a.k.data = a.v.data = NULL;
    ck_assert_int_eq(dm_fwd(ctx, &a, NULL), DM_ERR_NO_DEVICE);
    a.window = 3; /* no bias: the window helper would refuse it, were it asked */
    ck_assert_int_eq(dm_fwd(ctx, &a, NULL), DM_ERR_NO_DEVICE);
    dm_ctx_destroy(ctx);
}
END_TEST

START_TEST(fwd_without_context_or_args_returns_invalid_arg)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    dm_fwd_args a = valid_args();
    ck_assert_int_eq(dm_fwd(NULL, &a, NULL), DM_ERR_INVALID_ARG);
    ck_assert_int_eq(dm_fwd(ctx, NULL, NULL), DM_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(dm_errmsg(ctx), "args"));
    dm_ctx_destroy(ctx);
}
END_TEST

#define TESTS(X) \
    X(check_accepts_valid_args_and_leaves_no_message) \
    X(check_accepts_one_query_and_one_key) \
    X(check_accepts_head_dims_from_8_to_256_in_steps_of_8) \
    X(check_accepts_f32_bias_with_bf16_inputs) \
    X(check_accepts_inputs_broadcast_with_stride_0) \
    X(check_accepts_outputs_in_permuted_and_padded_layouts) \
    X(check_ignores_strides_of_size_1_dimensions) \
    X(check_without_context_returns_invalid_arg) \
    X(check_clears_the_previous_message_on_success) \
    X(check_prefixes_messages_with_the_call_it_was_given) \
    X(check_rejects_null_args) \
    X(check_rejects_null_data_of_q_k_v_and_o) \
    X(check_rejects_rank_other_than_4_for_q_k_v_and_o) \
    X(check_rejects_optional_tensors_with_data_but_rank_0) \
    X(check_rejects_optional_tensors_with_rank_but_null_data) \
    X(check_rejects_mask_and_bias_of_rank_other_than_4) \
    X(check_rejects_lse_of_rank_other_than_3) \
    X(check_rejects_q_that_is_not_f16_or_bf16) \
    X(check_rejects_k_v_or_o_of_another_dtype_than_q) \
    X(check_rejects_mask_that_is_not_bool) \
    X(check_rejects_integer_bias) \
    X(check_rejects_bias_of_the_other_half_precision_dtype) \
    X(check_rejects_lse_that_is_not_f32) \
    X(check_rejects_negative_sizes_and_heads_or_head_dim_of_0) \
    X(check_accepts_an_empty_batch_or_length_with_null_data) \
    X(check_rejects_null_data_of_a_tensor_with_elements_beside_empty_ones) \
    X(check_rejects_hkv_that_does_not_divide_h) \
    X(check_rejects_head_dim_above_256) \
    X(check_rejects_head_dim_not_a_multiple_of_8) \
    X(check_rejects_batch_of_k_unlike_q) \
    X(check_rejects_head_dim_of_k_unlike_q) \
    X(check_rejects_v_shape_unlike_k) \
    X(check_rejects_o_shape_unlike_q) \
    X(check_rejects_batch_and_heads_beyond_the_grid_limit) \
    X(check_rejects_lengths_beyond_int32) \
    X(check_rejects_mask_batch_that_does_not_broadcast) \
    X(check_rejects_mask_heads_that_do_not_broadcast) \
    X(check_rejects_mask_rows_that_do_not_broadcast) \
    X(check_rejects_mask_keys_unlike_lk) \
    X(check_rejects_bias_batch_that_does_not_broadcast) \
    X(check_rejects_bias_heads_that_do_not_broadcast) \
    X(check_rejects_bias_rows_that_do_not_broadcast) \
    X(check_rejects_bias_keys_unlike_lk) \
    X(check_rejects_mask_keys_that_would_broadcast) \
    X(check_rejects_lse_shape_unlike_b_h_lq) \
    X(check_rejects_misaligned_q_k_v_and_o_pointers) \
    X(check_rejects_row_strides_not_a_multiple_of_8) \
    X(check_rejects_negative_strides) \
    X(check_rejects_a_last_dimension_that_is_not_contiguous) \
    X(check_rejects_bias_and_lse_not_aligned_to_their_elements) \
    X(check_rejects_output_stride_0_on_a_dimension_above_size_1) \
    X(check_rejects_output_rows_that_overlap) \
    X(check_rejects_extents_that_overflow_int64) \
    X(check_rejects_a_tensor_that_wraps_the_address_space) \
    X(check_rejects_scale_that_is_nan_infinite_or_negative) \
    X(check_rejects_softcap_that_is_nan_infinite_or_negative) \
    X(check_rejects_a_path_that_is_not_a_dm_fwd_path_and_num_splits_out_of_range) \
    X(check_rejects_causal_other_than_0_or_1) \
    X(check_accepts_a_window) \
    X(check_rejects_a_negative_window) \
    X(check_reports_invalid_arguments_with_a_window) \
    X(plan_holds_sizes_dtype_flags_and_caller_strides) \
    X(plan_gives_broadcast_dimensions_stride_0) \
    X(plan_detects_layout_q_and_k_of_mask_and_bias) \
    X(plan_chooses_layout_k_when_lq_is_1) \
    X(plan_head_div_maps_query_heads_to_h_hkv_or_1_heads) \
    X(plan_resolves_scale_0_to_one_over_sqrt_d) \
    X(plan_variant_names_the_kernel_the_plan_needs) \
    X(fwd_returns_invalid_arg_and_leaves_the_output_untouched) \
    X(fwd_checks_the_window_mask_rules_and_leaves_the_output_untouched) \
    X(fwd_on_an_offline_context_reports_no_device_and_leaves_the_output_untouched) \
    X(fwd_with_no_query_is_a_no_op_and_with_no_key_still_runs) \
    X(fwd_without_context_or_args_returns_invalid_arg)

DM_TEST_MAIN("validate", TESTS)
