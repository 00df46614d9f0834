/* test_varlen_validate.c: dm_fwd_varlen_check, rule by rule. Every bad argument gets its status and
 * a message naming it; valid arguments give the plan fwd_varlen_plan.h documents. Tensor pointers,
 * cu_seqlens included, are fake device addresses: the check never dereferences them (a read
 * would crash the test). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check_util.h"
#include "fwd_varlen_plan.h"
#include "harness.h"
#include "test_compile.h"

/* 3 sequences, 6 queries and 20 keys in all, the longest 3 queries and 9 keys; GQA 8 over 2. */
enum { NSEQ = 3, TQ = 6, TK = 20, H = 8, HKV = 2, D = 64, MAXQ = 3, MAXK = 9 };

#define Q_ADDR 0x100000u
#define K_ADDR 0x200000u
#define V_ADDR 0x300000u
#define O_ADDR 0x400000u
#define MASK_ADDR 0x500001u /* bool: any address is aligned */
#define BIAS_ADDR 0x600000u
#define LSE_ADDR 0x700000u
#define CUQ_ADDR 0x800000u
#define CUK_ADDR 0x900000u

/* A contiguous tensor of rank <= 3 at a fake address. */
static void set_tensor(dm_tensor *t, uintptr_t addr, dm_dtype dt, int rank, int64_t s0, int64_t s1,
                       int64_t s2)
{
    const int64_t shape[3] = {s0, s1, s2};

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

/* Keeps address, dtype and rank; new shape, contiguous strides. */
static void set_shape(dm_tensor *t, int64_t s0, int64_t s1, int64_t s2)
{
    set_tensor(t, (uintptr_t)t->data, t->dtype, t->rank, s0, s1, s2);
}

/* q (6, 8, 64), k and v (20, 2, 64), o like q, cu_seqlens (4): no optional tensors. */
static dm_fwd_varlen_args valid_args(void)
{
    dm_fwd_varlen_args a;

    memset(&a, 0, sizeof a);
    set_tensor(&a.q, Q_ADDR, DM_F16, 3, TQ, H, D);
    set_tensor(&a.k, K_ADDR, DM_F16, 3, TK, HKV, D);
    set_tensor(&a.v, V_ADDR, DM_F16, 3, TK, HKV, D);
    set_tensor(&a.o, O_ADDR, DM_F16, 3, TQ, H, D);
    set_tensor(&a.cu_seqlens_q, CUQ_ADDR, DM_I32, 1, NSEQ + 1, 0, 0);
    set_tensor(&a.cu_seqlens_k, CUK_ADDR, DM_I32, 1, NSEQ + 1, 0, 0);
    a.max_seqlen_q = MAXQ;
    a.max_seqlen_k = MAXK;
    return a;
}

/* valid_args plus a query-based mask (total_q, H, max_seqlen_k), a key-based bias
 * (total_k, Hkv) and lse (H, total_q). */
static dm_fwd_varlen_args valid_args_full(void)
{
    dm_fwd_varlen_args a = valid_args();

    set_tensor(&a.mask, MASK_ADDR, DM_BOOL, 3, TQ, H, MAXK);
    set_tensor(&a.bias, BIAS_ADDR, DM_F16, 2, TK, HKV, 0);
    set_tensor(&a.lse, LSE_ADDR, DM_F32, 2, H, TQ, 0);
    return a;
}

/* mask or bias in one layout with `heads` heads (NONE: absent). */
static void set_layout(dm_tensor *t, bool bias, dm_layout layout, int64_t heads)
{
    uintptr_t addr = bias ? BIAS_ADDR : MASK_ADDR;
    dm_dtype dt = bias ? DM_F16 : DM_BOOL;

    if (layout == DM_LAYOUT_NONE)
        memset(t, 0, sizeof *t);
    else if (layout == DM_LAYOUT_Q)
        set_tensor(t, addr, dt, 3, TQ, heads, MAXK);
    else
        set_tensor(t, addr, dt, 2, TK, heads, 0);
}

/* The status, a message that holds `needle`, starts with the call and has no full stop. */
static void expect_error(const dm_fwd_varlen_args *a, dm_status want, const char *needle)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    dm_fwd_varlen_plan plan;
    dm_status st = dm_fwd_varlen_check(ctx, "dm_fwd_varlen", a, &plan);

    expect_refusal(ctx, st, want, "dm_fwd_varlen", needle);
    dm_ctx_destroy(ctx);
}

static void expect_invalid(const dm_fwd_varlen_args *a, const char *needle)
{
    expect_error(a, DM_ERR_INVALID_ARG, needle);
}

static dm_fwd_varlen_plan expect_ok(const dm_fwd_varlen_args *a)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    dm_fwd_varlen_plan plan;
    dm_status st = dm_fwd_varlen_check(ctx, "dm_fwd_varlen", a, &plan);

    ck_assert_msg(st == DM_OK, "status %s: %s", dm_status_name(st), dm_errmsg(ctx));
    ck_assert_str_eq(dm_errmsg(ctx), "");
    dm_ctx_destroy(ctx);
    return plan;
}

static void expect_message(const dm_fwd_varlen_args *a, dm_status want, const char *text)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    dm_fwd_varlen_plan plan;

    ck_assert_int_eq(dm_fwd_varlen_check(ctx, "dm_fwd_varlen", a, &plan), want);
    ck_assert_str_eq(dm_errmsg(ctx), text);
    dm_ctx_destroy(ctx);
}

/* ---- valid arguments ---- */

START_TEST(check_accepts_valid_args_and_leaves_no_message)
{
    dm_fwd_varlen_args a = valid_args();
    expect_ok(&a);
    a = valid_args_full();
    expect_ok(&a);
}
END_TEST

START_TEST(check_accepts_total_q_0_and_still_checks_shapes)
{
    dm_fwd_varlen_args a = valid_args_full();

    set_shape(&a.q, 0, H, D);
    set_shape(&a.o, 0, H, D);
    set_shape(&a.mask, 0, H, MAXK);
    set_shape(&a.lse, H, 0, 0);
    a.max_seqlen_q = 0;
    dm_fwd_varlen_plan p = expect_ok(&a);
    ck_assert_int_eq(p.total_q, 0);
    ck_assert_int_eq(p.B, NSEQ);

    set_shape(&a.k, TK, HKV, 32);
    set_shape(&a.v, TK, HKV, 32);
    expect_invalid(&a, "k.shape[2] (D) = 32");
}
END_TEST

START_TEST(check_accepts_total_k_0)
{
    /* every sequence without keys: its queries output 0 and lse +inf */
    dm_fwd_varlen_args a = valid_args_full();

    set_shape(&a.k, 0, HKV, D);
    set_shape(&a.v, 0, HKV, D);
    set_shape(&a.mask, TQ, H, 0);
    set_shape(&a.bias, 0, HKV, 0);
    a.max_seqlen_k = 0;
    dm_fwd_varlen_plan p = expect_ok(&a);
    ck_assert_int_eq(p.total_k, 0);
    ck_assert_int_eq(p.max_seqlen_k, 0);
}
END_TEST

/* A tensor with no elements may come with data NULL (PyTorch's empty tensors do): q, o, lse and a
 * query-based mask when total_q = 0; k, v and a key-based bias when total_k = 0; a query-based
 * row of max_seqlen_k = 0 keys. The plan is the one non-NULL data would give. */
START_TEST(check_accepts_null_data_for_tensors_without_elements)
{
    dm_fwd_varlen_args a = valid_args_full();
    set_shape(&a.q, 0, H, D);
    set_shape(&a.o, 0, H, D);
    set_shape(&a.mask, 0, H, MAXK);
    set_shape(&a.lse, H, 0, 0);
    a.max_seqlen_q = 0;
    a.q.data = a.o.data = a.mask.data = a.lse.data = NULL;
    dm_fwd_varlen_plan p = expect_ok(&a);
    ck_assert_int_eq(p.total_q, 0);
    ck_assert_int_eq(p.mask_layout, DM_LAYOUT_Q); /* present, not absent */
    ck_assert(p.has_lse);

    a = valid_args_full();
    set_shape(&a.k, 0, HKV, D);
    set_shape(&a.v, 0, HKV, D);
    set_shape(&a.mask, TQ, H, 0);
    set_shape(&a.bias, 0, HKV, 0);
    a.max_seqlen_k = 0;
    a.k.data = a.v.data = a.mask.data = a.bias.data = NULL;
    p = expect_ok(&a);
    ck_assert_int_eq(p.mask_layout, DM_LAYOUT_Q);
    ck_assert_int_eq(p.bias_layout, DM_LAYOUT_K);
}
END_TEST

/* NULL is for no elements only: beside empty tensors, a tensor holding elements with data NULL is
 * still refused by name (q when only the keys are empty, k when only the queries are). */
START_TEST(check_rejects_null_data_of_a_tensor_with_elements_beside_empty_ones)
{
    dm_fwd_varlen_args a = valid_args_full();
    set_shape(&a.k, 0, HKV, D);
    set_shape(&a.v, 0, HKV, D);
    set_shape(&a.mask, TQ, H, 0);
    set_shape(&a.bias, 0, HKV, 0);
    a.max_seqlen_k = 0;
    a.k.data = a.v.data = NULL;
    static const char *const names[] = {"q.data is NULL", "o.data is NULL", "lse.data is NULL"};
    for (int t = 0; t < 3; t++) {
        dm_fwd_varlen_args b = a;
        dm_tensor *ts[] = {&b.q, &b.o, &b.lse};
        ts[t]->data = NULL;
        expect_invalid(&b, names[t]);
    }
    a = valid_args_full();
    set_shape(&a.q, 0, H, D);
    set_shape(&a.o, 0, H, D);
    set_shape(&a.mask, 0, H, MAXK);
    set_shape(&a.lse, H, 0, 0);
    a.max_seqlen_q = 0;
    a.q.data = a.o.data = NULL;
    a.k.data = NULL;
    expect_message(&a, DM_ERR_INVALID_ARG,
                   "dm_fwd_varlen: k.data is NULL: expected a pointer (NULL only for a tensor with "
                   "a dimension of size 0)");
    a.k.data = (void *)(uintptr_t)K_ADDR;
    a.bias.data = NULL; /* (total_k, Hkv) holds elements */
    expect_invalid(&a, "bias.data is NULL but bias.rank = 2");
    /* a NULL tensor of the wrong rank is not taken for an empty one */
    a.bias.data = (void *)(uintptr_t)BIAS_ADDR;
    a.o.rank = 2;
    expect_invalid(&a, "o.data is NULL");
}
END_TEST

START_TEST(check_accepts_head_dims_from_8_to_256_in_steps_of_8)
{
    for (int64_t d = 8; d <= 256; d += 8) {
        dm_fwd_varlen_args a = valid_args();
        set_shape(&a.q, TQ, H, d);
        set_shape(&a.o, TQ, H, d);
        set_shape(&a.k, TK, HKV, d);
        set_shape(&a.v, TK, HKV, d);
        dm_fwd_varlen_plan p = expect_ok(&a);
        ck_assert_int_eq(p.D, d);
    }
}
END_TEST

START_TEST(check_accepts_f32_bias_with_bf16_inputs)
{
    dm_fwd_varlen_args a = valid_args_full();

    a.q.dtype = a.k.dtype = a.v.dtype = a.o.dtype = DM_BF16;
    a.bias.dtype = DM_F32;
    dm_fwd_varlen_plan p = expect_ok(&a);
    ck_assert_int_eq(p.dtype, DM_BF16);
    ck_assert_int_eq(p.bias_dtype, DM_F32);
}
END_TEST

START_TEST(check_accepts_a_query_based_row_longer_than_max_seqlen_k)
{
    dm_fwd_varlen_args a = valid_args_full();

    set_shape(&a.mask, TQ, H, MAXK + 7); /* padded rows: keys past max_seqlen_k are never read */
    dm_fwd_varlen_plan p = expect_ok(&a);
    ck_assert_int_eq(p.mask_stride[1], MAXK + 7);
}
END_TEST

START_TEST(check_accepts_a_key_based_layout_whose_heads_are_not_contiguous)
{
    dm_fwd_varlen_args a = valid_args_full();

    /* (total_k, H) stored head-major: key after key is 1 element, head after head TK */
    set_layout(&a.mask, false, DM_LAYOUT_K, H);
    a.mask.strides[0] = 1;
    a.mask.strides[1] = TK;
    dm_fwd_varlen_plan p = expect_ok(&a);
    ck_assert_int_eq(p.mask_stride[0], 1);
    ck_assert_int_eq(p.mask_stride[1], TK);
    ck_assert_int_eq(p.mask_stride[2], 1);
}
END_TEST

START_TEST(check_accepts_inputs_broadcast_with_stride_0)
{
    dm_fwd_varlen_args a = valid_args_full();

    a.mask.strides[1] = 0; /* (total_q, H, max_seqlen_k) expanded over heads */
    a.bias.strides[0] = 0; /* one value for every key, expanded */
    dm_fwd_varlen_plan p = expect_ok(&a);
    ck_assert_int_eq(p.mask_stride[1], 0);
    ck_assert_int_eq(p.bias_stride[0], 0);
    ck_assert_int_eq(p.bias_stride[2], 0);
}
END_TEST

START_TEST(check_without_context_returns_invalid_arg)
{
    dm_fwd_varlen_args a = valid_args();
    dm_fwd_varlen_plan p;

    ck_assert_int_eq(dm_fwd_varlen_check(NULL, "dm_fwd_varlen", &a, &p), DM_ERR_INVALID_ARG);
    ck_assert_int_eq(dm_fwd_varlen_check(NULL, "dm_fwd_varlen", NULL, &p), DM_ERR_INVALID_ARG);
}
END_TEST

START_TEST(check_clears_the_previous_message_on_success)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    dm_fwd_varlen_args a = valid_args();
    dm_fwd_varlen_plan p;

    a.causal = 2;
    ck_assert_int_eq(dm_fwd_varlen_check(ctx, "dm_fwd_varlen", &a, &p), DM_ERR_INVALID_ARG);
    ck_assert_str_ne(dm_errmsg(ctx), "");
    a.causal = 1;
    ck_assert_int_eq(dm_fwd_varlen_check(ctx, "dm_fwd_varlen", &a, &p), DM_OK);
    ck_assert_str_eq(dm_errmsg(ctx), "");
    dm_ctx_destroy(ctx);
}
END_TEST

START_TEST(check_prefixes_messages_with_the_call_it_was_given)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    dm_fwd_varlen_args a = valid_args();
    dm_fwd_varlen_plan p;

    a.causal = 3;
    ck_assert_int_eq(dm_fwd_varlen_check(ctx, "dm_ref_fwd_varlen", &a, &p), DM_ERR_INVALID_ARG);
    ck_assert_str_eq(dm_errmsg(ctx), "dm_ref_fwd_varlen: causal = 3: expected 0 or 1");
    ck_assert_int_eq(dm_fwd_varlen_check(ctx, NULL, &a, &p), DM_ERR_INVALID_ARG);
    ck_assert_str_eq(dm_errmsg(ctx), "dm_fwd_varlen: causal = 3: expected 0 or 1");
    dm_ctx_destroy(ctx);
}
END_TEST

START_TEST(check_accepts_a_null_plan)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    dm_fwd_varlen_args a = valid_args_full();

    ck_assert_int_eq(dm_fwd_varlen_check(ctx, "dm_fwd_varlen", &a, NULL), DM_OK);
    dm_ctx_destroy(ctx);
}
END_TEST

/* ---- presence and rank ---- */

START_TEST(check_rejects_null_args)
{
    expect_invalid(NULL, "args is NULL");
}
END_TEST

START_TEST(check_rejects_null_data_of_q_k_v_o_and_cu_seqlens)
{
    static const char *const names[] = {"q.data is NULL",
                                        "k.data is NULL",
                                        "v.data is NULL",
                                        "o.data is NULL",
                                        "cu_seqlens_q.data is NULL",
                                        "cu_seqlens_k.data is NULL"};
    for (int t = 0; t < 6; t++) {
        dm_fwd_varlen_args a = valid_args();
        dm_tensor *ts[] = {&a.q, &a.k, &a.v, &a.o, &a.cu_seqlens_q, &a.cu_seqlens_k};
        ts[t]->data = NULL;
        expect_invalid(&a, names[t]);
    }
}
END_TEST

START_TEST(check_rejects_rank_other_than_3_for_q_k_v_and_o)
{
    static const char *const names[] = {"q.rank", "k.rank", "v.rank", "o.rank"};
    static const char *const dims[] = {"(total_q, H, D)", "(total_k, Hkv, D)", "(total_k, Hkv, D)",
                                       "(total_q, H, D)"};
    static const int ranks[] = {0, 2, 4, -1};
    for (int t = 0; t < 4; t++)
        for (int r = 0; r < 4; r++) {
            dm_fwd_varlen_args a = valid_args();
            dm_tensor *ts[] = {&a.q, &a.k, &a.v, &a.o};
            ts[t]->rank = ranks[r];
            expect_invalid(&a, names[t]);
            expect_invalid(&a, dims[t]);
        }
}
END_TEST

START_TEST(check_rejects_cu_seqlens_of_rank_other_than_1)
{
    dm_fwd_varlen_args a = valid_args();
    a.cu_seqlens_q.rank = 2;
    expect_message(&a, DM_ERR_INVALID_ARG,
                   "dm_fwd_varlen: cu_seqlens_q.rank = 2: expected 1 (B + 1)");
    a = valid_args();
    a.cu_seqlens_k.rank = 0;
    expect_invalid(&a, "cu_seqlens_k.rank = 0");
}
END_TEST

START_TEST(check_rejects_optional_tensors_with_data_but_rank_0)
{
    static const char *const names[] = {"mask.rank = 0", "bias.rank = 0", "lse.rank = 0"};
    for (int t = 0; t < 3; t++) {
        dm_fwd_varlen_args a = valid_args_full();
        dm_tensor *ts[] = {&a.mask, &a.bias, &a.lse};
        ts[t]->rank = 0;
        expect_invalid(&a, names[t]);
    }
    dm_fwd_varlen_args a = valid_args_full();
    a.mask.rank = 0;
    expect_invalid(&a, "rank 3 (total_q, Hm, max_seqlen_k) or rank 2 (total_k, Hm)");
}
END_TEST

START_TEST(check_rejects_optional_tensors_with_rank_but_null_data)
{
    static const char *const names[] = {"mask.data is NULL", "bias.data is NULL",
                                        "lse.data is NULL"};
    for (int t = 0; t < 3; t++) {
        dm_fwd_varlen_args a = valid_args_full();
        dm_tensor *ts[] = {&a.mask, &a.bias, &a.lse};
        ts[t]->data = NULL;
        expect_invalid(&a, names[t]);
    }
}
END_TEST

START_TEST(check_rejects_mask_and_bias_of_rank_other_than_2_or_3_naming_shape_and_layouts)
{
    dm_fwd_varlen_args a = valid_args_full();
    a.mask.rank = 4;
    a.mask.shape[3] = 5;
    expect_message(&a, DM_ERR_INVALID_ARG,
                   "dm_fwd_varlen: mask.rank = 4 with mask.shape = (6, 8, 9, 5): expected rank 3 "
                   "(total_q, Hm, max_seqlen_k) query-based or rank 2 (total_k, Hm) key-based");

    a = valid_args_full();
    a.bias.rank = 1;
    expect_invalid(&a, "bias.rank = 1 with bias.shape = (20)");

    a = valid_args_full();
    a.bias.rank = 7; /* beyond DM_MAX_RANK: no shape to show */
    expect_invalid(&a, "bias.rank = 7: expected rank 3");
}
END_TEST

START_TEST(check_rejects_lse_of_rank_other_than_2)
{
    dm_fwd_varlen_args a = valid_args_full();
    a.lse.rank = 3;
    expect_invalid(&a, "lse.rank = 3: expected 2 (H, total_q)");
}
END_TEST

/* ---- dtypes ---- */

START_TEST(check_rejects_q_that_is_not_f16_or_bf16)
{
    static const dm_dtype bad[] = {DM_F32, DM_BOOL, DM_I32, DM_DTYPE_NONE};
    for (int i = 0; i < 4; i++) {
        dm_fwd_varlen_args a = valid_args();
        a.q.dtype = a.k.dtype = a.v.dtype = a.o.dtype = bad[i];
        expect_invalid(&a, "q.dtype");
        expect_invalid(&a, "expected f16 or bf16");
    }
}
END_TEST

START_TEST(check_rejects_k_v_or_o_of_another_dtype_than_q)
{
    static const char *const names[] = {"k.dtype = bf16", "v.dtype = bf16", "o.dtype = bf16"};
    for (int t = 0; t < 3; t++) {
        dm_fwd_varlen_args a = valid_args();
        dm_tensor *ts[] = {&a.k, &a.v, &a.o};
        ts[t]->dtype = DM_BF16;
        expect_invalid(&a, names[t]);
        expect_invalid(&a, "expected q's dtype f16");
    }
}
END_TEST

START_TEST(check_rejects_cu_seqlens_that_are_not_i32)
{
    dm_fwd_varlen_args a = valid_args();
    a.cu_seqlens_q.dtype = DM_F32;
    expect_message(&a, DM_ERR_INVALID_ARG, "dm_fwd_varlen: cu_seqlens_q.dtype = f32: expected i32");
    a = valid_args();
    a.cu_seqlens_k.dtype = DM_F16;
    expect_invalid(&a, "cu_seqlens_k.dtype = f16: expected i32");
}
END_TEST

START_TEST(check_rejects_mask_that_is_not_bool)
{
    dm_fwd_varlen_args a = valid_args_full();
    a.mask.dtype = DM_F16;
    expect_invalid(&a, "mask.dtype = f16: expected bool");
}
END_TEST

START_TEST(check_rejects_bias_that_is_neither_q_dtype_nor_f32)
{
    static const dm_dtype bad[] = {DM_I32, DM_BOOL, DM_BF16};
    for (int i = 0; i < 3; i++) {
        dm_fwd_varlen_args a = valid_args_full();
        a.bias.dtype = bad[i];
        expect_invalid(&a, "bias.dtype");
        expect_invalid(&a, "expected q's dtype f16 or f32");
    }
}
END_TEST

START_TEST(check_rejects_lse_that_is_not_f32)
{
    dm_fwd_varlen_args a = valid_args_full();
    a.lse.dtype = DM_F16;
    expect_invalid(&a, "lse.dtype = f16: expected f32");
}
END_TEST

/* ---- shapes of q, k, v, o ---- */

START_TEST(check_rejects_negative_totals_and_heads_or_dims_below_1)
{
    dm_fwd_varlen_args a = valid_args();
    set_shape(&a.q, -1, H, D);
    expect_invalid(&a, "q.shape[0] (total_q) = -1: expected >= 0");

    a = valid_args();
    set_shape(&a.k, -2, HKV, D);
    expect_invalid(&a, "k.shape[0] (total_k) = -2: expected >= 0");

    a = valid_args();
    set_shape(&a.q, TQ, 0, D);
    expect_invalid(&a, "q.shape[1] (H) = 0: expected >= 1");

    a = valid_args();
    set_shape(&a.v, TK, HKV, 0);
    expect_invalid(&a, "v.shape[2] (D) = 0: expected >= 1");
}
END_TEST

START_TEST(check_rejects_totals_beyond_int32)
{
    dm_fwd_varlen_args a = valid_args();
    set_shape(&a.q, (int64_t)1 << 31, H, D);
    set_shape(&a.o, (int64_t)1 << 31, H, D);
    expect_invalid(&a, "q.shape[0] (total_q) = 2147483648: expected at most 2147483647");
    expect_invalid(&a, "cu_seqlens_q are int32");

    a = valid_args();
    set_shape(&a.k, (int64_t)1 << 32, HKV, D);
    set_shape(&a.v, (int64_t)1 << 32, HKV, D);
    expect_invalid(&a, "k.shape[0] (total_k)");
    expect_invalid(&a, "cu_seqlens_k are int32");
}
END_TEST

START_TEST(check_rejects_hkv_that_does_not_divide_h)
{
    dm_fwd_varlen_args a = valid_args();
    set_shape(&a.k, TK, 3, D);
    set_shape(&a.v, TK, 3, D);
    expect_message(&a, DM_ERR_INVALID_ARG,
                   "dm_fwd_varlen: k.shape[1] (Hkv) = 3 does not divide q.shape[1] (H) = 8");
}
END_TEST

START_TEST(check_rejects_head_dim_not_a_multiple_of_8_or_above_256)
{
    static const int64_t bad[] = {4, 60, 264, 512};
    for (int i = 0; i < 4; i++) {
        dm_fwd_varlen_args a = valid_args();
        set_shape(&a.q, TQ, H, bad[i]);
        set_shape(&a.o, TQ, H, bad[i]);
        set_shape(&a.k, TK, HKV, bad[i]);
        set_shape(&a.v, TK, HKV, bad[i]);
        expect_invalid(&a, "q.shape[2] (D)");
        expect_invalid(&a, "expected a multiple of 8 from 8 to 256");
    }
}
END_TEST

START_TEST(check_rejects_head_dim_of_k_unlike_q)
{
    dm_fwd_varlen_args a = valid_args();
    set_shape(&a.k, TK, HKV, 32);
    set_shape(&a.v, TK, HKV, 32);
    expect_invalid(&a, "k.shape[2] (D) = 32 does not match q.shape[2] (D) = 64");
}
END_TEST

START_TEST(check_rejects_v_shape_unlike_k)
{
    static const char *const names[] = {"v.shape[0] = 40: expected k.shape[0] = 20",
                                        "v.shape[1] = 4: expected k.shape[1] = 2",
                                        "v.shape[2] = 128: expected k.shape[2] = 64"};
    for (int d = 0; d < 3; d++) {
        dm_fwd_varlen_args a = valid_args();
        a.v.shape[d] *= 2;
        expect_invalid(&a, names[d]);
    }
}
END_TEST

START_TEST(check_rejects_o_shape_unlike_q)
{
    static const char *const names[] = {"o.shape[0] = 12: expected q.shape[0] = 6",
                                        "o.shape[1] = 16: expected q.shape[1] = 8",
                                        "o.shape[2] = 128: expected q.shape[2] = 64"};
    for (int d = 0; d < 3; d++) {
        dm_fwd_varlen_args a = valid_args();
        a.o.shape[d] *= 2;
        expect_invalid(&a, names[d]);
    }
}
END_TEST

START_TEST(check_rejects_heads_beyond_the_grid_limit)
{
    dm_fwd_varlen_args a = valid_args();
    set_shape(&a.q, TQ, 65536, D);
    set_shape(&a.o, TQ, 65536, D);
    expect_invalid(&a, "q.shape[1] (H) = 65536: expected at most 65535");

    set_shape(&a.q, TQ, 65535, D);
    set_shape(&a.o, TQ, 65535, D);
    set_shape(&a.k, TK, 1, D);
    set_shape(&a.v, TK, 1, D);
    expect_ok(&a);
}
END_TEST

/* ---- cu_seqlens and max_seqlen ---- */

START_TEST(check_rejects_cu_seqlens_q_shorter_than_2)
{
    dm_fwd_varlen_args a = valid_args();
    set_shape(&a.cu_seqlens_q, 1, 0, 0);
    set_shape(&a.cu_seqlens_k, 1, 0, 0);
    expect_invalid(&a, "cu_seqlens_q.shape[0] = 1: expected B + 1 >= 2");
    set_shape(&a.cu_seqlens_q, 0, 0, 0);
    expect_invalid(&a, "cu_seqlens_q.shape[0] = 0: expected B + 1 >= 2");
}
END_TEST

START_TEST(check_rejects_cu_seqlens_k_of_another_length_than_cu_seqlens_q)
{
    dm_fwd_varlen_args a = valid_args();
    set_shape(&a.cu_seqlens_q, 5, 0, 0);
    expect_message(&a, DM_ERR_INVALID_ARG,
                   "dm_fwd_varlen: cu_seqlens_k.shape[0] = 4: expected B + 1 = 5 "
                   "(cu_seqlens_q's length)");
}
END_TEST

START_TEST(check_rejects_more_sequences_than_the_grid_holds)
{
    dm_fwd_varlen_args a = valid_args();
    set_shape(&a.cu_seqlens_q, 65537, 0, 0);
    set_shape(&a.cu_seqlens_k, 65537, 0, 0);
    expect_invalid(&a, "cu_seqlens_q.shape[0] = 65537: expected B + 1 <= 65536");

    set_shape(&a.cu_seqlens_q, 65536, 0, 0);
    set_shape(&a.cu_seqlens_k, 65536, 0, 0);
    expect_ok(&a);
}
END_TEST

START_TEST(check_rejects_cu_seqlens_that_are_not_contiguous)
{
    dm_fwd_varlen_args a = valid_args();
    a.cu_seqlens_q.strides[0] = 2;
    expect_invalid(&a, "cu_seqlens_q.strides[0] = 2: expected 1");
    a = valid_args();
    a.cu_seqlens_k.strides[0] = 0;
    expect_invalid(&a, "cu_seqlens_k.strides[0] = 0: expected 1");
}
END_TEST

START_TEST(check_rejects_cu_seqlens_not_aligned_to_int32)
{
    dm_fwd_varlen_args a = valid_args();
    a.cu_seqlens_k.data = (void *)(uintptr_t)(CUK_ADDR + 2);
    expect_invalid(&a, "cu_seqlens_k.data");
    expect_invalid(&a, "4-byte i32 elements");
}
END_TEST

START_TEST(check_rejects_negative_max_seqlen)
{
    dm_fwd_varlen_args a = valid_args();
    a.max_seqlen_q = -1;
    expect_message(&a, DM_ERR_INVALID_ARG, "dm_fwd_varlen: max_seqlen_q = -1: expected >= 0");
    a = valid_args();
    a.max_seqlen_k = -5;
    expect_invalid(&a, "max_seqlen_k = -5: expected >= 0");
}
END_TEST

START_TEST(check_rejects_max_seqlen_longer_than_the_total)
{
    dm_fwd_varlen_args a = valid_args();
    a.max_seqlen_q = TQ + 1;
    expect_invalid(&a, "max_seqlen_q = 7: expected at most total_q = 6");
    a = valid_args();
    a.max_seqlen_k = TK + 1;
    expect_invalid(&a, "max_seqlen_k = 21: expected at most total_k = 20");
    a.max_seqlen_k = TK; /* one sequence holds every key */
    expect_ok(&a);
}
END_TEST

START_TEST(check_rejects_max_seqlen_below_what_b_sequences_need)
{
    /* 3 sequences share 20 keys: the longest has at least 7 */
    dm_fwd_varlen_args a = valid_args();
    a.max_seqlen_k = 6;
    expect_invalid(&a, "max_seqlen_k = 6: expected at least ceil(total_k / B) = 7");
    a.max_seqlen_k = 7;
    expect_ok(&a);
    a.max_seqlen_q = 1; /* 6 queries over 3 sequences: at least 2 */
    expect_invalid(&a, "max_seqlen_q = 1: expected at least ceil(total_q / B) = 2");
}
END_TEST

/* ---- shapes of mask, bias, lse ---- */

START_TEST(check_rejects_a_query_based_mask_or_bias_whose_first_dimension_is_not_total_q)
{
    dm_fwd_varlen_args a = valid_args_full();
    set_shape(&a.mask, TK, H, MAXK); /* total_k rows, but rank 3 says query-based */
    expect_message(&a, DM_ERR_INVALID_ARG,
                   "dm_fwd_varlen: mask.shape[0] = 20 with mask.shape = (20, 8, 9): expected "
                   "total_q = 6 (the rank picks the layout: rank 3 (total_q, Hm, max_seqlen_k) "
                   "query-based or rank 2 (total_k, Hm) key-based)");

    a = valid_args_full();
    set_layout(&a.bias, true, DM_LAYOUT_Q, 1);
    set_shape(&a.bias, TQ + 1, 1, MAXK);
    expect_invalid(&a, "bias.shape[0] = 7 with bias.shape = (7, 1, 9): expected total_q = 6");
}
END_TEST

START_TEST(check_rejects_a_key_based_mask_or_bias_whose_first_dimension_is_not_total_k)
{
    dm_fwd_varlen_args a = valid_args_full();
    set_shape(&a.bias, TQ, HKV, 0); /* total_q rows, but rank 2 says key-based */
    expect_invalid(&a, "bias.shape[0] = 6 with bias.shape = (6, 2): expected total_k = 20");
    expect_invalid(&a, "the rank picks the layout");

    a = valid_args_full();
    set_layout(&a.mask, false, DM_LAYOUT_K, H);
    set_shape(&a.mask, TK - 1, H, 0);
    expect_invalid(&a, "mask.shape[0] = 19 with mask.shape = (19, 8): expected total_k = 20");
}
END_TEST

START_TEST(check_picks_the_layout_by_rank_when_total_q_equals_total_k)
{
    /* 20 queries and 20 keys: a (20, Hm, ...) tensor is query-based for rank 3, key-based for
     * rank 2, never a guess */
    dm_fwd_varlen_args a = valid_args_full();
    set_shape(&a.q, TK, H, D);
    set_shape(&a.o, TK, H, D);
    set_shape(&a.lse, H, TK, 0);
    a.max_seqlen_q = MAXK;
    set_tensor(&a.mask, MASK_ADDR, DM_BOOL, 3, TK, H, MAXK);
    set_tensor(&a.bias, BIAS_ADDR, DM_F16, 2, TK, H, 0);
    dm_fwd_varlen_plan p = expect_ok(&a);
    ck_assert_int_eq(p.mask_layout, DM_LAYOUT_Q);
    ck_assert_int_eq(p.bias_layout, DM_LAYOUT_K);

    set_tensor(&a.mask, MASK_ADDR, DM_BOOL, 2, TK, 1, 0);
    set_tensor(&a.bias, BIAS_ADDR, DM_F16, 3, TK, 1, MAXK);
    p = expect_ok(&a);
    ck_assert_int_eq(p.mask_layout, DM_LAYOUT_K);
    ck_assert_int_eq(p.bias_layout, DM_LAYOUT_Q);
}
END_TEST

START_TEST(check_rejects_mask_and_bias_heads_not_1_hkv_or_h)
{
    static const int64_t bad[] = {3, 4, 16};
    for (int i = 0; i < 3; i++) {
        dm_fwd_varlen_args a = valid_args_full();
        set_shape(&a.mask, TQ, bad[i], MAXK);
        expect_invalid(&a, "mask.shape[1] (Hm)");
        expect_invalid(&a, "expected H = 8, Hkv = 2 or 1");

        a = valid_args_full();
        set_shape(&a.bias, TK, bad[i], 0);
        expect_invalid(&a, "bias.shape[1] (Hm)");
    }
}
END_TEST

START_TEST(check_rejects_a_query_based_row_shorter_than_max_seqlen_k)
{
    dm_fwd_varlen_args a = valid_args_full();
    set_shape(&a.mask, TQ, H, MAXK - 1);
    expect_invalid(&a, "mask.shape[2] = 8: expected at least max_seqlen_k = 9");

    a = valid_args_full();
    set_layout(&a.bias, true, DM_LAYOUT_Q, HKV);
    set_shape(&a.bias, TQ, HKV, 1);
    expect_invalid(&a, "bias.shape[2] = 1: expected at least max_seqlen_k = 9");
}
END_TEST

START_TEST(check_rejects_lse_shape_unlike_h_total_q)
{
    dm_fwd_varlen_args a = valid_args_full();
    set_shape(&a.lse, H + 1, TQ, 0);
    expect_invalid(&a, "lse.shape[0] = 9: expected H = 8 (lse is (H, total_q))");
    a = valid_args_full();
    set_shape(&a.lse, TQ, H, 0); /* (total_q, H): o's order, not lse's */
    expect_invalid(&a, "lse.shape[0] = 6: expected H = 8");
    a = valid_args_full();
    set_shape(&a.lse, H, TQ - 1, 0);
    expect_invalid(&a, "lse.shape[1] = 5: expected total_q = 6");
}
END_TEST

/* ---- strides, alignment, extents ---- */

START_TEST(check_rejects_misaligned_q_k_v_and_o_pointers)
{
    static const char *const names[] = {"q.data", "k.data", "v.data", "o.data"};
    for (int t = 0; t < 4; t++) {
        dm_fwd_varlen_args a = valid_args();
        dm_tensor *ts[] = {&a.q, &a.k, &a.v, &a.o};
        ts[t]->data = (char *)ts[t]->data + 8;
        expect_invalid(&a, names[t]);
        expect_invalid(&a, "is not 16-byte aligned");
    }
}
END_TEST

START_TEST(check_rejects_row_strides_not_a_multiple_of_8)
{
    dm_fwd_varlen_args a = valid_args();
    a.q.strides[1] = D + 4;
    a.q.strides[0] = 8 * H * D;
    expect_invalid(&a, "q.strides[1] = 68 is not a multiple of 8 elements");

    a = valid_args();
    a.v.strides[0] = HKV * D + 4;
    expect_invalid(&a, "v.strides[0] = 132 is not a multiple of 8 elements");
}
END_TEST

START_TEST(check_rejects_negative_strides)
{
    dm_fwd_varlen_args a = valid_args_full();
    a.k.strides[0] = -a.k.strides[0];
    expect_invalid(&a, "k.strides[0] = -128: expected >= 0");

    a = valid_args_full();
    a.mask.strides[1] = -MAXK;
    expect_invalid(&a, "mask.strides[1] = -9: expected >= 0");

    a = valid_args_full();
    a.bias.strides[0] = -1;
    expect_invalid(&a, "bias.strides[0] = -1: expected >= 0");

    a = valid_args_full();
    a.lse.strides[1] = -1;
    expect_invalid(&a, "lse.strides[1] = -1: expected >= 0");
}
END_TEST

START_TEST(check_rejects_a_last_dimension_that_is_not_contiguous)
{
    dm_fwd_varlen_args a = valid_args_full();
    a.q.strides[2] = 2;
    expect_invalid(&a, "q.strides[2] = 2: expected 1 (the last dimension must be contiguous)");

    a = valid_args_full();
    a.o.strides[2] = 0;
    expect_invalid(&a, "o.strides[2] = 0: expected 1");

    a = valid_args_full();
    a.mask.strides[2] = 2; /* a query-based row's keys */
    expect_invalid(&a, "mask.strides[2] = 2: expected 1");
}
END_TEST

START_TEST(check_rejects_bias_and_lse_not_aligned_to_their_elements)
{
    dm_fwd_varlen_args a = valid_args_full();
    a.bias.data = (void *)(uintptr_t)(BIAS_ADDR + 1);
    expect_invalid(&a, "bias.data");
    expect_invalid(&a, "is not aligned to its 2-byte f16 elements");

    a = valid_args_full();
    a.bias.dtype = DM_F32;
    a.bias.data = (void *)(uintptr_t)(BIAS_ADDR + 2);
    expect_invalid(&a, "bias.data");

    a = valid_args_full();
    set_layout(&a.bias, true, DM_LAYOUT_Q, H);
    a.bias.data = (void *)(uintptr_t)(BIAS_ADDR + 1);
    expect_invalid(&a, "bias.data");

    a = valid_args_full();
    a.lse.data = (void *)(uintptr_t)(LSE_ADDR + 2);
    expect_invalid(&a, "lse.data");
    expect_invalid(&a, "4-byte f32 elements");
}
END_TEST

START_TEST(check_rejects_output_rows_that_overlap)
{
    dm_fwd_varlen_args a = valid_args_full();
    a.o.strides[1] = 8; /* heads 8 elements apart, rows 64 long */
    expect_invalid(&a, "o.strides[1] = 8 overlaps o.strides[2] = 1");

    a = valid_args_full();
    a.o.strides[0] = 0;
    expect_invalid(&a, "o.strides[0] = 0 with o.shape[0] = 6: an output cannot broadcast");
}
END_TEST

START_TEST(check_rejects_lse_elements_that_share_an_address)
{
    dm_fwd_varlen_args a = valid_args_full();
    a.lse.strides[0] = 1; /* heads and tokens both step by 1 */
    expect_invalid(&a, "elements of an output would share an address");

    a = valid_args_full();
    a.lse.strides[1] = 0;
    expect_invalid(&a, "lse.strides[1] = 0 with lse.shape[1] = 6");
}
END_TEST

START_TEST(check_rejects_extents_that_overflow_int64)
{
    dm_fwd_varlen_args a = valid_args_full();
    a.q.strides[0] = (int64_t)1 << 60; /* (total_q - 1) * stride fits; * 2 bytes does not */
    expect_invalid(&a, "q.strides = (1152921504606846976, 64, 1)");
    expect_invalid(&a, "overflows int64");

    a = valid_args_full();
    a.bias.strides[0] = INT64_MAX / 4;
    expect_invalid(&a, "bias.strides");
    expect_invalid(&a, "overflows int64");

    a = valid_args_full();
    a.k.data = (void *)(UINTPTR_MAX - 1023); /* 16-byte aligned, 1 KiB from the end */
    expect_invalid(&a, "k.strides");
    expect_invalid(&a, "(or the address space)");
}
END_TEST

/* ---- scalars ---- */

START_TEST(check_rejects_scale_that_is_nan_infinite_or_negative)
{
    static const float bad[] = {NAN, INFINITY, -INFINITY, -0.125f};
    for (int i = 0; i < 4; i++) {
        dm_fwd_varlen_args a = valid_args();
        a.scale = bad[i];
        expect_invalid(&a, "scale");
        expect_invalid(&a, "expected a finite value >= 0 (0 = 1/sqrt(D))");
    }
}
END_TEST

START_TEST(check_rejects_softcap_that_is_nan_infinite_or_negative)
{
    static const float bad[] = {NAN, INFINITY, -1.0f};
    for (int i = 0; i < 3; i++) {
        dm_fwd_varlen_args a = valid_args();
        a.softcap = bad[i];
        expect_invalid(&a, "softcap");
        expect_invalid(&a, "expected a finite value >= 0 (0 = off)");
    }
}
END_TEST

START_TEST(check_rejects_causal_other_than_0_or_1)
{
    dm_fwd_varlen_args a = valid_args();
    a.causal = 2;
    expect_invalid(&a, "causal = 2: expected 0 or 1");
    a.causal = -1;
    expect_invalid(&a, "causal = -1: expected 0 or 1");
}
END_TEST

START_TEST(check_accepts_each_path)
{
    static const int paths[] = {DM_PATH_AUTO, DM_PATH_TILED, DM_PATH_DECODE};
    for (int i = 0; i < 3; i++) {
        dm_fwd_varlen_args a = valid_args_full();
        a.path = paths[i];
        expect_ok(&a);
    }
}
END_TEST

START_TEST(check_rejects_an_unknown_path)
{
    dm_fwd_varlen_args a = valid_args();
    a.path = 3;
    expect_message(&a, DM_ERR_INVALID_ARG,
                   "dm_fwd_varlen: path = 3: expected DM_PATH_AUTO (0), DM_PATH_TILED (1) or "
                   "DM_PATH_DECODE (2)");
    a.path = -1;
    expect_invalid(&a, "path = -1");
}
END_TEST

START_TEST(check_rejects_num_splits_below_0_or_above_1024)
{
    dm_fwd_varlen_args a = valid_args();
    a.num_splits = -1;
    expect_invalid(&a, "num_splits = -1: expected 0 (picked from the shapes) to 1024");
    a.num_splits = 1025;
    expect_invalid(&a, "num_splits = 1025");
    a.num_splits = 1024;
    expect_ok(&a);
    a.num_splits = 1;
    expect_ok(&a);
}
END_TEST

START_TEST(check_rejects_a_negative_window)
{
    dm_fwd_varlen_args a = valid_args();
    a.window = -1;
    expect_invalid(&a, "window = -1: expected >= 0 (0 = no window)");
}
END_TEST

START_TEST(check_accepts_a_window)
{
    /* dm_fwd_varlen_check passes it on; the window's own rules are dm_window_mask_varlen's
     * (test_window_mask) */
    dm_fwd_varlen_args a = valid_args_full();
    a.window = 64;
    expect_ok(&a);
}
END_TEST

START_TEST(check_reports_invalid_arguments_with_a_window)
{
    dm_fwd_varlen_args a = valid_args();
    a.window = 64;
    a.scale = -1;
    expect_invalid(&a, "scale");
    a = valid_args();
    a.window = 64;
    a.cu_seqlens_k.dtype = DM_F32;
    expect_invalid(&a, "cu_seqlens_k.dtype");
}
END_TEST

/* ---- the plan ---- */

START_TEST(plan_holds_sizes_dtype_flags_and_caller_strides)
{
    dm_fwd_varlen_args a = valid_args_full();
    a.causal = 1;
    a.softcap = 30;
    a.scale = 0.5f;
    dm_fwd_varlen_plan p = expect_ok(&a);

    ck_assert_int_eq(p.B, NSEQ);
    ck_assert_int_eq(p.H, H);
    ck_assert_int_eq(p.Hkv, HKV);
    ck_assert_int_eq(p.D, D);
    ck_assert_int_eq(p.total_q, TQ);
    ck_assert_int_eq(p.total_k, TK);
    ck_assert_int_eq(p.max_seqlen_q, MAXQ);
    ck_assert_int_eq(p.max_seqlen_k, MAXK);
    ck_assert_int_eq(p.dtype, DM_F16);
    ck_assert(p.causal);
    ck_assert_float_eq(p.softcap, 30.0f);
    ck_assert_float_eq(p.scale, 0.5f);
    ck_assert_int_eq(p.q_stride[0], H * D);
    ck_assert_int_eq(p.q_stride[1], D);
    ck_assert_int_eq(p.k_stride[0], HKV * D);
    ck_assert_int_eq(p.k_stride[1], D);
    ck_assert_int_eq(p.v_stride[0], HKV * D);
    ck_assert_int_eq(p.v_stride[1], D);
    ck_assert_int_eq(p.o_stride[0], H * D);
    ck_assert_int_eq(p.o_stride[1], D);
    ck_assert(p.has_lse);
    ck_assert_int_eq(p.lse_stride[0], TQ);
    ck_assert_int_eq(p.lse_stride[1], 1);
    ck_assert_int_eq(p.bias_dtype, DM_F16);
}
END_TEST

START_TEST(plan_keeps_padded_and_permuted_strides)
{
    dm_fwd_varlen_args a = valid_args_full();
    /* o stored as (H, total_q, D) with rows padded to 72; lse stored as (total_q, H) */
    a.o.strides[1] = 72 * TQ;
    a.o.strides[0] = 72;
    a.lse.strides[0] = 1;
    a.lse.strides[1] = H;
    a.k.strides[0] = 256; /* a paged-looking cache: keys 256 elements apart */
    dm_fwd_varlen_plan p = expect_ok(&a);
    ck_assert_int_eq(p.o_stride[0], 72);
    ck_assert_int_eq(p.o_stride[1], 72 * TQ);
    ck_assert_int_eq(p.lse_stride[0], 1);
    ck_assert_int_eq(p.lse_stride[1], H);
    ck_assert_int_eq(p.k_stride[0], 256);
}
END_TEST

/* Expected plan strides of a contiguous mask or bias set by set_layout. */
static void expect_mask_plan(dm_layout layout, int64_t heads, dm_layout got_layout,
                             const int64_t *stride, int64_t head_div)
{
    ck_assert_int_eq(got_layout, layout);
    if (layout == DM_LAYOUT_NONE)
        return;
    ck_assert_int_eq(head_div, H / heads);
    if (layout == DM_LAYOUT_Q) {
        ck_assert_int_eq(stride[0], heads * MAXK);
        ck_assert_int_eq(stride[1], heads == 1 ? 0 : MAXK);
        ck_assert_int_eq(stride[2], 1);
    } else {
        ck_assert_int_eq(stride[0], heads);
        ck_assert_int_eq(stride[1], heads == 1 ? 0 : 1);
        ck_assert_int_eq(stride[2], heads); /* the key's own row */
    }
}

START_TEST(plan_fills_all_nine_mask_and_bias_layout_pairs)
{
    static const dm_layout layouts[] = {DM_LAYOUT_NONE, DM_LAYOUT_Q, DM_LAYOUT_K};
    static const int64_t heads[] = {1, HKV, H};
    for (int m = 0; m < 3; m++)
        for (int b = 0; b < 3; b++)
            for (int hm = 0; hm < 3; hm++) {
                /* mask and bias with different head counts, so neither copies the other */
                int64_t mh = heads[hm], bh = heads[(hm + 1) % 3];
                dm_fwd_varlen_args a = valid_args_full();
                set_layout(&a.mask, false, layouts[m], mh);
                set_layout(&a.bias, true, layouts[b], bh);
                dm_fwd_varlen_plan p = expect_ok(&a);
                expect_mask_plan(layouts[m], mh, p.mask_layout, p.mask_stride, p.mask_head_div);
                expect_mask_plan(layouts[b], bh, p.bias_layout, p.bias_stride, p.bias_head_div);
                ck_assert_int_eq(p.bias_dtype, layouts[b] ? DM_F16 : DM_DTYPE_NONE);
            }
}
END_TEST

START_TEST(plan_head_div_maps_query_heads_to_h_hkv_or_1_heads)
{
    static const int64_t heads[] = {H, HKV, 1};
    static const int64_t div[] = {1, H / HKV, H};
    for (int i = 0; i < 3; i++) {
        dm_fwd_varlen_args a = valid_args_full();
        set_layout(&a.mask, false, DM_LAYOUT_Q, heads[i]);
        set_layout(&a.bias, true, DM_LAYOUT_K, heads[i]);
        dm_fwd_varlen_plan p = expect_ok(&a);
        ck_assert_int_eq(p.mask_head_div, div[i]);
        ck_assert_int_eq(p.bias_head_div, div[i]);
    }
    /* absent: 1, as in the dense plan */
    dm_fwd_varlen_args a = valid_args();
    dm_fwd_varlen_plan p = expect_ok(&a);
    ck_assert_int_eq(p.mask_head_div, 1);
    ck_assert_int_eq(p.bias_head_div, 1);
    ck_assert_int_eq(p.mask_layout, DM_LAYOUT_NONE);
    ck_assert_int_eq(p.bias_layout, DM_LAYOUT_NONE);
    ck_assert(!p.has_lse);
    /* MQA: Hkv == 1, so one head is H / 1 = H either way */
    a = valid_args_full();
    set_shape(&a.k, TK, 1, D);
    set_shape(&a.v, TK, 1, D);
    set_layout(&a.bias, true, DM_LAYOUT_K, 1);
    p = expect_ok(&a);
    ck_assert_int_eq(p.bias_head_div, H);
}
END_TEST

START_TEST(plan_gives_size_1_dimensions_stride_0_whatever_the_caller_passed)
{
    dm_fwd_varlen_args a = valid_args_full();
    set_layout(&a.mask, false, DM_LAYOUT_Q, 1);
    a.mask.strides[1] = 12345;
    set_layout(&a.bias, true, DM_LAYOUT_K, 1);
    a.bias.strides[1] = 7;
    set_shape(&a.q, TQ, 1, D);
    set_shape(&a.o, TQ, 1, D);
    set_shape(&a.k, TK, 1, D);
    set_shape(&a.v, TK, 1, D);
    set_shape(&a.lse, 1, TQ, 0);
    a.q.strides[1] = 3; /* not a multiple of 8, but never stepped */
    a.lse.strides[0] = 999;
    dm_fwd_varlen_plan p = expect_ok(&a);
    ck_assert_int_eq(p.mask_stride[1], 0);
    ck_assert_int_eq(p.bias_stride[1], 0);
    ck_assert_int_eq(p.q_stride[1], 0);
    ck_assert_int_eq(p.lse_stride[0], 0);
    ck_assert_int_eq(p.mask_stride[0], MAXK);
    ck_assert_int_eq(p.bias_stride[0], 1);
    ck_assert_int_eq(p.bias_stride[2], 1);
}
END_TEST

START_TEST(plan_resolves_scale_0_to_one_over_sqrt_d)
{
    dm_fwd_varlen_args a = valid_args();
    dm_fwd_varlen_plan p = expect_ok(&a);
    ck_assert_float_eq(p.scale, 0.125f); /* D = 64 */

    set_shape(&a.q, TQ, H, 128);
    set_shape(&a.o, TQ, H, 128);
    set_shape(&a.k, TK, HKV, 128);
    set_shape(&a.v, TK, HKV, 128);
    p = expect_ok(&a);
    ck_assert_float_eq(p.scale, (float)(1.0 / sqrt(128.0)));
}
END_TEST

#define TESTS(X) \
    X(check_accepts_valid_args_and_leaves_no_message) \
    X(check_accepts_total_q_0_and_still_checks_shapes) \
    X(check_accepts_total_k_0) \
    X(check_accepts_null_data_for_tensors_without_elements) \
    X(check_rejects_null_data_of_a_tensor_with_elements_beside_empty_ones) \
    X(check_accepts_head_dims_from_8_to_256_in_steps_of_8) \
    X(check_accepts_f32_bias_with_bf16_inputs) \
    X(check_accepts_a_query_based_row_longer_than_max_seqlen_k) \
    X(check_accepts_a_key_based_layout_whose_heads_are_not_contiguous) \
    X(check_accepts_inputs_broadcast_with_stride_0) \
    X(check_without_context_returns_invalid_arg) \
    X(check_clears_the_previous_message_on_success) \
    X(check_prefixes_messages_with_the_call_it_was_given) \
    X(check_accepts_a_null_plan) \
    X(check_rejects_null_args) \
    X(check_rejects_null_data_of_q_k_v_o_and_cu_seqlens) \
    X(check_rejects_rank_other_than_3_for_q_k_v_and_o) \
    X(check_rejects_cu_seqlens_of_rank_other_than_1) \
    X(check_rejects_optional_tensors_with_data_but_rank_0) \
    X(check_rejects_optional_tensors_with_rank_but_null_data) \
    X(check_rejects_mask_and_bias_of_rank_other_than_2_or_3_naming_shape_and_layouts) \
    X(check_rejects_lse_of_rank_other_than_2) \
    X(check_rejects_q_that_is_not_f16_or_bf16) \
    X(check_rejects_k_v_or_o_of_another_dtype_than_q) \
    X(check_rejects_cu_seqlens_that_are_not_i32) \
    X(check_rejects_mask_that_is_not_bool) \
    X(check_rejects_bias_that_is_neither_q_dtype_nor_f32) \
    X(check_rejects_lse_that_is_not_f32) \
    X(check_rejects_negative_totals_and_heads_or_dims_below_1) \
    X(check_rejects_totals_beyond_int32) \
    X(check_rejects_hkv_that_does_not_divide_h) \
    X(check_rejects_head_dim_not_a_multiple_of_8_or_above_256) \
    X(check_rejects_head_dim_of_k_unlike_q) \
    X(check_rejects_v_shape_unlike_k) \
    X(check_rejects_o_shape_unlike_q) \
    X(check_rejects_heads_beyond_the_grid_limit) \
    X(check_rejects_cu_seqlens_q_shorter_than_2) \
    X(check_rejects_cu_seqlens_k_of_another_length_than_cu_seqlens_q) \
    X(check_rejects_more_sequences_than_the_grid_holds) \
    X(check_rejects_cu_seqlens_that_are_not_contiguous) \
    X(check_rejects_cu_seqlens_not_aligned_to_int32) \
    X(check_rejects_negative_max_seqlen) \
    X(check_rejects_max_seqlen_longer_than_the_total) \
    X(check_rejects_max_seqlen_below_what_b_sequences_need) \
    X(check_rejects_a_query_based_mask_or_bias_whose_first_dimension_is_not_total_q) \
    X(check_rejects_a_key_based_mask_or_bias_whose_first_dimension_is_not_total_k) \
    X(check_picks_the_layout_by_rank_when_total_q_equals_total_k) \
    X(check_rejects_mask_and_bias_heads_not_1_hkv_or_h) \
    X(check_rejects_a_query_based_row_shorter_than_max_seqlen_k) \
    X(check_rejects_lse_shape_unlike_h_total_q) \
    X(check_rejects_misaligned_q_k_v_and_o_pointers) \
    X(check_rejects_row_strides_not_a_multiple_of_8) \
    X(check_rejects_negative_strides) \
    X(check_rejects_a_last_dimension_that_is_not_contiguous) \
    X(check_rejects_bias_and_lse_not_aligned_to_their_elements) \
    X(check_rejects_output_rows_that_overlap) \
    X(check_rejects_lse_elements_that_share_an_address) \
    X(check_rejects_extents_that_overflow_int64) \
    X(check_rejects_scale_that_is_nan_infinite_or_negative) \
    X(check_rejects_softcap_that_is_nan_infinite_or_negative) \
    X(check_rejects_causal_other_than_0_or_1) \
    X(check_accepts_each_path) \
    X(check_rejects_an_unknown_path) \
    X(check_rejects_num_splits_below_0_or_above_1024) \
    X(check_rejects_a_negative_window) \
    X(check_accepts_a_window) \
    X(check_reports_invalid_arguments_with_a_window) \
    X(plan_holds_sizes_dtype_flags_and_caller_strides) \
    X(plan_keeps_padded_and_permuted_strides) \
    X(plan_fills_all_nine_mask_and_bias_layout_pairs) \
    X(plan_head_div_maps_query_heads_to_h_hkv_or_1_heads) \
    X(plan_gives_size_1_dimensions_stride_0_whatever_the_caller_passed) \
    X(plan_resolves_scale_0_to_one_over_sqrt_d)

DM_TEST_MAIN("varlen_validate", TESTS)
