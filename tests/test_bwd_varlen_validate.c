/* test_bwd_varlen_validate.c: dm_bwd_varlen_check (runtime/api/bwd_varlen_check.c), rule by rule:
 * the forward's arguments by dm_fwd_varlen_check's rules, then lse's presence and dout, dq, dk,
 * dv, dbias. Every refusal: DM_ERR_INVALID_ARG, a message naming the argument, the plan left as it
 * was. Tensor pointers, cu_seqlens included, are fake device addresses: the check never
 * dereferences them (a read would crash the test). */
#include <stdint.h>
#include <string.h>

#include "bwd_varlen_plan.h"
#include "check_util.h"
#include "harness.h"
#include "test_compile.h"

/* 3 sequences, 6 queries and 20 keys in all, the longest 3 queries and 9 keys; GQA 8 over 2. */
enum { NSEQ = 3, TQ = 6, TK = 20, H = 8, HKV = 2, D = 64, MAXQ = 3, MAXK = 9 };

#define CALL "dm_bwd_varlen"
#define MASK_ADDR 0x500001u /* bool: any address is aligned */
#define BIAS_ADDR 0x600000u
#define DBIAS_ADDR 0xc00000u

/* A contiguous tensor of rank <= 3 at a fake address. */
static void set_tensor(dm_tensor *t, uintptr_t addr, dm_dtype dt, int rank, int64_t s0, int64_t s1,
                       int64_t s2)
{
    const int64_t shape[3] = {s0, s1, s2};
    memset(t, 0, sizeof *t);
    t->data = (void *)addr;
    t->dtype = dt;
    t->rank = rank;
    int64_t stride = 1;
    for (int d = rank - 1; d >= 0; d--) {
        t->shape[d] = shape[d];
        t->strides[d] = stride;
        stride *= shape[d];
    }
}

/* Keeps address, dtype and rank; new shape, contiguous strides. */
static void set_shape(dm_tensor *t, int64_t s0, int64_t s1, int64_t s2)
{
    set_tensor(t, (uintptr_t)t->data, t->dtype, t->rank, s0, s1, s2);
}

/* A query-based mask (total_q, H, max_seqlen_k), a key-based bias (total_k, Hkv) with its dbias,
 * lse; bf16. */
static dm_bwd_varlen_args valid_args(void)
{
    dm_bwd_varlen_args a;
    memset(&a, 0, sizeof a);
    set_tensor(&a.q, 0x100000, DM_BF16, 3, TQ, H, D);
    set_tensor(&a.k, 0x200000, DM_BF16, 3, TK, HKV, D);
    set_tensor(&a.v, 0x300000, DM_BF16, 3, TK, HKV, D);
    set_tensor(&a.o, 0x400000, DM_BF16, 3, TQ, H, D);
    set_tensor(&a.mask, MASK_ADDR, DM_BOOL, 3, TQ, H, MAXK);
    set_tensor(&a.bias, BIAS_ADDR, DM_BF16, 2, TK, HKV, 0);
    set_tensor(&a.lse, 0x700000, DM_F32, 2, H, TQ, 0);
    set_tensor(&a.cu_seqlens_q, 0x800000, DM_I32, 1, NSEQ + 1, 0, 0);
    set_tensor(&a.cu_seqlens_k, 0x900000, DM_I32, 1, NSEQ + 1, 0, 0);
    a.max_seqlen_q = MAXQ;
    a.max_seqlen_k = MAXK;
    set_tensor(&a.dout, 0xa00000, DM_BF16, 3, TQ, H, D);
    set_tensor(&a.dq, 0xb00000, DM_BF16, 3, TQ, H, D);
    set_tensor(&a.dk, 0xd00000, DM_BF16, 3, TK, HKV, D);
    set_tensor(&a.dv, 0xe00000, DM_BF16, 3, TK, HKV, D);
    set_tensor(&a.dbias, DBIAS_ADDR, DM_BF16, 2, TK, HKV, 0);
    return a;
}

/* mask or bias (and dbias with the bias) in one layout with `heads` heads (NONE: absent). */
static void set_layout(dm_bwd_varlen_args *a, bool bias, dm_layout layout, int64_t heads)
{
    dm_tensor *ts[2] = {bias ? &a->bias : &a->mask, bias ? &a->dbias : NULL};
    const uintptr_t addrs[2] = {bias ? BIAS_ADDR : MASK_ADDR, DBIAS_ADDR};
    const dm_dtype dt = bias ? a->bias.dtype : DM_BOOL;
    for (int t = 0; t < 2 && ts[t]; t++) {
        if (layout == DM_LAYOUT_NONE)
            memset(ts[t], 0, sizeof *ts[t]);
        else if (layout == DM_LAYOUT_Q)
            set_tensor(ts[t], addrs[t], dt, 3, TQ, heads, MAXK);
        else
            set_tensor(ts[t], addrs[t], dt, 2, TK, heads, 0);
    }
}

/* The status, a message naming the argument, the call first, and the plan untouched. */
static void expect_invalid(const dm_bwd_varlen_args *a, const char *needle)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    dm_bwd_varlen_plan plan, before;
    memset(&plan, 0xa5, sizeof plan);
    before = plan;
    dm_status st = dm_bwd_varlen_check(ctx, CALL, a, &plan);
    expect_refusal(ctx, st, DM_ERR_INVALID_ARG, CALL, needle);
    ck_assert_msg(memcmp(&plan, &before, sizeof plan) == 0, "a refused check wrote the plan");
    dm_ctx_destroy(ctx);
}

static dm_bwd_varlen_plan expect_ok(const dm_bwd_varlen_args *a)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    dm_bwd_varlen_plan plan;
    dm_status st = dm_bwd_varlen_check(ctx, CALL, a, &plan);
    ck_assert_msg(st == DM_OK, "status %s: %s", dm_status_name(st), dm_errmsg(ctx));
    ck_assert_str_eq(dm_errmsg(ctx), "");
    dm_ctx_destroy(ctx);
    return plan;
}

/* ---- valid arguments ---- */

START_TEST(valid_args_give_a_plan_with_the_gradients_layouts)
{
    dm_bwd_varlen_args a = valid_args();
    a.deterministic = 1;
    dm_bwd_varlen_plan p = expect_ok(&a);
    ck_assert_int_eq(p.fwd.B, NSEQ);
    ck_assert_int_eq(p.fwd.H, H);
    ck_assert_int_eq(p.fwd.Hkv, HKV);
    ck_assert_int_eq(p.fwd.total_q, TQ);
    ck_assert_int_eq(p.fwd.total_k, TK);
    ck_assert(p.fwd.has_lse);
    ck_assert_int_eq(p.fwd.mask_layout, DM_LAYOUT_Q);
    ck_assert_int_eq(p.fwd.bias_layout, DM_LAYOUT_K);
    ck_assert(p.deterministic);
    ck_assert_int_eq(p.dout_stride[0], H * D);
    ck_assert_int_eq(p.dout_stride[1], D);
    ck_assert_int_eq(p.dq_stride[0], H * D);
    ck_assert_int_eq(p.dk_stride[0], HKV * D);
    ck_assert_int_eq(p.dv_stride[1], D);
    ck_assert(p.has_dbias);
    ck_assert_int_eq(p.dbias_stride[0], HKV); /* token */
    ck_assert_int_eq(p.dbias_stride[1], 1);   /* head */
    ck_assert_int_eq(p.dbias_stride[2], HKV); /* key: a key's own row */

    /* no mask, no bias, no dbias is valid too */
    set_layout(&a, false, DM_LAYOUT_NONE, 0);
    set_layout(&a, true, DM_LAYOUT_NONE, 0);
    a.deterministic = 0;
    p = expect_ok(&a);
    ck_assert(!p.has_dbias);
    ck_assert(!p.deterministic);
    ck_assert_int_eq(p.fwd.bias_layout, DM_LAYOUT_NONE);
}
END_TEST

/* Padded rows: the plan keeps the caller's strides, 0 where a dimension has size 1 (MQA). */
START_TEST(the_plan_keeps_the_gradients_strides)
{
    dm_bwd_varlen_args a = valid_args();
    a.dq.strides[0] = 2 * H * D;
    a.dk.strides[1] = 2 * D;
    a.dk.strides[0] = 2 * HKV * D;
    dm_bwd_varlen_plan p = expect_ok(&a);
    ck_assert_int_eq(p.dq_stride[0], 2 * H * D);
    ck_assert_int_eq(p.dq_stride[1], D);
    ck_assert_int_eq(p.dk_stride[0], 2 * HKV * D);
    ck_assert_int_eq(p.dk_stride[1], 2 * D);

    a = valid_args();
    set_shape(&a.k, TK, 1, D);
    set_shape(&a.v, TK, 1, D);
    set_shape(&a.dk, TK, 1, D);
    set_shape(&a.dv, TK, 1, D);
    a.dv.strides[1] = 4096; /* never stepped */
    set_layout(&a, true, DM_LAYOUT_K, 1);
    p = expect_ok(&a);
    ck_assert_int_eq(p.dk_stride[1], 0);
    ck_assert_int_eq(p.dv_stride[1], 0);
    ck_assert_int_eq(p.dv_stride[0], D);
    ck_assert_int_eq(p.dbias_stride[1], 0);
}
END_TEST

START_TEST(every_mask_and_bias_layout_pair_is_accepted)
{
    static const dm_layout layouts[] = {DM_LAYOUT_NONE, DM_LAYOUT_Q, DM_LAYOUT_K};
    for (int m = 0; m < 3; m++)
        for (int b = 0; b < 3; b++) {
            dm_bwd_varlen_args a = valid_args();
            set_layout(&a, false, layouts[m], HKV);
            set_layout(&a, true, layouts[b], H);
            dm_bwd_varlen_plan p = expect_ok(&a);
            ck_assert_int_eq(p.fwd.mask_layout, layouts[m]);
            ck_assert_int_eq(p.fwd.bias_layout, layouts[b]);
            ck_assert(p.has_dbias == (layouts[b] != DM_LAYOUT_NONE));
        }
}
END_TEST

/* dbias for both bias layouts and Hm = 1, Hkv, H, in bias's dtype (q's or f32): strides as
 * fwd.bias_stride has them (token, head with 0 for one head, key). */
START_TEST(dbias_is_accepted_for_each_bias_layout_and_head_count)
{
    static const int64_t heads[] = {1, HKV, H};
    static const dm_dtype dtypes[] = {DM_BF16, DM_F32};
    for (int dt = 0; dt < 2; dt++)
        for (int hm = 0; hm < 3; hm++) {
            const int64_t n = heads[hm];
            dm_bwd_varlen_args a = valid_args();
            a.bias.dtype = dtypes[dt];
            set_layout(&a, true, DM_LAYOUT_Q, n);
            dm_bwd_varlen_plan p = expect_ok(&a);
            ck_assert(p.has_dbias);
            ck_assert_int_eq(p.dbias_stride[0], n * MAXK);
            ck_assert_int_eq(p.dbias_stride[1], n == 1 ? 0 : MAXK);
            ck_assert_int_eq(p.dbias_stride[2], 1);
            set_layout(&a, true, DM_LAYOUT_K, n);
            p = expect_ok(&a);
            ck_assert(p.has_dbias);
            ck_assert_int_eq(p.dbias_stride[0], n);
            ck_assert_int_eq(p.dbias_stride[1], n == 1 ? 0 : 1);
            ck_assert_int_eq(p.dbias_stride[2], n);
        }
}
END_TEST

/* Empty tensors may come with data NULL (PyTorch's do): dk, dv and a key-based dbias when there
 * are no keys, dout and dq when there are no queries. */
START_TEST(gradients_without_elements_may_have_null_data)
{
    dm_bwd_varlen_args a = valid_args();
    set_shape(&a.k, 0, HKV, D);
    set_shape(&a.v, 0, HKV, D);
    set_shape(&a.dk, 0, HKV, D);
    set_shape(&a.dv, 0, HKV, D);
    set_shape(&a.mask, TQ, H, 0);
    set_shape(&a.bias, 0, HKV, 0);
    set_shape(&a.dbias, 0, HKV, 0);
    a.max_seqlen_k = 0;
    a.dk.data = a.dv.data = a.dbias.data = NULL;
    dm_bwd_varlen_plan p = expect_ok(&a);
    ck_assert(p.has_dbias); /* present, not absent */

    a = valid_args();
    set_shape(&a.q, 0, H, D);
    set_shape(&a.o, 0, H, D);
    set_shape(&a.dout, 0, H, D);
    set_shape(&a.dq, 0, H, D);
    set_shape(&a.mask, 0, H, MAXK);
    set_shape(&a.lse, H, 0, 0);
    a.max_seqlen_q = 0;
    a.dout.data = a.dq.data = NULL;
    expect_ok(&a);
}
END_TEST

START_TEST(a_null_plan_is_accepted_and_a_null_call_names_dm_bwd_varlen)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    dm_bwd_varlen_args a = valid_args();
    ck_assert_int_eq(dm_bwd_varlen_check(ctx, CALL, &a, NULL), DM_OK);
    a.dout.dtype = DM_F16;
    dm_status st = dm_bwd_varlen_check(ctx, NULL, &a, NULL);
    expect_refusal(ctx, st, DM_ERR_INVALID_ARG, "dm_bwd_varlen", "dout");
    ck_assert_int_eq(dm_bwd_varlen_check(NULL, CALL, &a, NULL), DM_ERR_INVALID_ARG);
    dm_ctx_destroy(ctx);
}
END_TEST

/* ---- the forward's arguments ---- */

START_TEST(the_forwards_arguments_follow_the_forwards_rules)
{
    expect_invalid(NULL, "args is NULL: expected a dm_bwd_varlen_args");
    dm_bwd_varlen_args a = valid_args();
    set_shape(&a.k, TK, 3, D);
    set_shape(&a.v, TK, 3, D);
    expect_invalid(&a, "does not divide q.shape[1] (H) = 8");
    a = valid_args();
    a.softcap = -1;
    expect_invalid(&a, "softcap");
    a = valid_args();
    a.causal = 2;
    expect_invalid(&a, "causal");
    a = valid_args();
    set_shape(&a.cu_seqlens_k, NSEQ + 2, 0, 0);
    expect_invalid(&a, "cu_seqlens_k.shape[0] = 5");
    a = valid_args();
    a.cu_seqlens_q.dtype = DM_F16;
    expect_invalid(&a, "cu_seqlens_q.dtype");
    a = valid_args();
    a.max_seqlen_k = TK + 1;
    expect_invalid(&a, "max_seqlen_k");
    a = valid_args();
    a.max_seqlen_q = -1;
    expect_invalid(&a, "max_seqlen_q");
    a = valid_args();
    set_shape(&a.mask, TQ, H, MAXK - 1); /* a query's row holds every key of its sequence */
    expect_invalid(&a, "mask.shape[2] = 8: expected at least max_seqlen_k = 9");
    a = valid_args();
    set_shape(&a.bias, TK, 3, 0);
    expect_invalid(&a, "bias.shape[1] (Hm) = 3");
    a = valid_args();
    a.bias.dtype = DM_F16;
    a.dbias.dtype = DM_F16;
    expect_invalid(&a, "bias.dtype");
    a = valid_args();
    a.q.data = (void *)0x100002; /* rows move 16 bytes at a time */
    expect_invalid(&a, "q.data");
}
END_TEST

START_TEST(o_is_required)
{
    dm_bwd_varlen_args a = valid_args();
    memset(&a.o, 0, sizeof a.o);
    expect_invalid(&a, "o.data is NULL");
    a = valid_args();
    set_shape(&a.o, TQ - 1, H, D);
    expect_invalid(&a, "o.shape[0] = 5: expected q.shape[0] = 6");
}
END_TEST

START_TEST(lse_is_required_and_shaped_h_by_total_q)
{
    dm_bwd_varlen_args a = valid_args();
    memset(&a.lse, 0, sizeof a.lse);
    expect_invalid(&a, "lse is absent: expected the forward's fp32 (H, total_q) lse");
    a = valid_args();
    set_shape(&a.lse, TQ, H, 0);
    expect_invalid(&a, "lse.shape[0] = 6: expected H = 8");
    a = valid_args();
    a.lse.dtype = DM_BF16;
    expect_invalid(&a, "lse.dtype = bf16: expected f32");
}
END_TEST

/* ---- dout and the gradients ---- */

START_TEST(dout_has_os_shape_and_qs_dtype_and_readable_rows)
{
    dm_bwd_varlen_args a = valid_args();
    memset(&a.dout, 0, sizeof a.dout);
    expect_invalid(&a, "dout.data is NULL");
    a = valid_args();
    a.dout.rank = 4;
    expect_invalid(&a, "dout.rank = 4: expected 3");
    a = valid_args();
    a.dout.dtype = DM_F16;
    expect_invalid(&a, "dout.dtype = f16: expected q's dtype bf16");
    a = valid_args();
    set_shape(&a.dout, TQ + 1, H, D);
    expect_invalid(&a, "dout.shape[0] = 7: expected o.shape[0] = 6");
    a = valid_args();
    set_shape(&a.dout, TQ, H, D - 8);
    expect_invalid(&a, "dout.shape[2] = 56: expected o.shape[2] = 64");
    a = valid_args();
    a.dout.data = (void *)0xa00002; /* rows move 16 bytes at a time */
    expect_invalid(&a, "dout.data");
    a = valid_args();
    a.dout.strides[2] = 2;
    expect_invalid(&a, "dout.strides[2] = 2: expected 1");
    a = valid_args();
    a.dout.strides[0] = H * D + 4;
    expect_invalid(&a, "dout.strides[0]");
    /* an input may repeat rows: dout broadcast over the heads is read, never written */
    a = valid_args();
    a.dout.strides[1] = 0;
    expect_ok(&a);
}
END_TEST

START_TEST(dq_dk_dv_have_q_k_v_shapes_and_qs_dtype)
{
    dm_bwd_varlen_args a = valid_args();
    memset(&a.dq, 0, sizeof a.dq);
    expect_invalid(&a, "dq.data is NULL");
    a = valid_args();
    memset(&a.dk, 0, sizeof a.dk);
    expect_invalid(&a, "dk.data is NULL");
    a = valid_args();
    memset(&a.dv, 0, sizeof a.dv);
    expect_invalid(&a, "dv.data is NULL");
    a = valid_args();
    set_shape(&a.dq, TQ, HKV, D);
    expect_invalid(&a, "dq.shape[1] = 2: expected q.shape[1] = 8");
    a = valid_args();
    set_shape(&a.dk, TK, H, D);
    expect_invalid(&a, "dk.shape[1] = 8: expected k.shape[1] = 2");
    a = valid_args();
    set_shape(&a.dv, TK - 1, HKV, D);
    expect_invalid(&a, "dv.shape[0] = 19: expected v.shape[0] = 20");
    a = valid_args();
    a.dq.dtype = DM_F16;
    expect_invalid(&a, "dq.dtype = f16: expected q's dtype bf16");
    a = valid_args();
    a.dk.dtype = DM_F32;
    expect_invalid(&a, "dk.dtype = f32: expected q's dtype bf16");
    a = valid_args();
    a.dv.rank = 2;
    expect_invalid(&a, "dv.rank = 2: expected 3");
}
END_TEST

START_TEST(dq_dk_dv_have_aligned_rows_and_no_two_elements_at_one_address)
{
    dm_bwd_varlen_args a = valid_args();
    a.dq.strides[0] = 0; /* every query row at one address: written many times */
    expect_invalid(&a, "dq.strides[0] = 0");
    a = valid_args();
    a.dk.strides[1] = 8; /* the two heads' rows overlap */
    expect_invalid(&a, "dk.strides");
    a = valid_args();
    a.dv.data = (void *)0xe00008;
    expect_invalid(&a, "dv.data");
    a = valid_args();
    a.dk.strides[2] = 2;
    expect_invalid(&a, "dk.strides[2] = 2: expected 1");
    a = valid_args();
    a.dq.strides[0] = -H * D;
    expect_invalid(&a, "dq.strides[0] = -512: expected >= 0");
}
END_TEST

/* ---- dbias ---- */

START_TEST(dbias_without_a_bias_is_refused_by_name)
{
    dm_bwd_varlen_args a = valid_args();
    memset(&a.bias, 0, sizeof a.bias);
    expect_invalid(&a, "dbias is given but bias is absent: expected no dbias");
    /* whatever its shape: a query-based one, or one with a rank but no data */
    set_tensor(&a.dbias, DBIAS_ADDR, DM_BF16, 3, TQ, H, MAXK);
    expect_invalid(&a, "dbias is given but bias is absent");
    a.dbias.data = NULL;
    expect_invalid(&a, "dbias is given but bias is absent");
}
END_TEST

START_TEST(dbias_has_bias_dtype)
{
    dm_bwd_varlen_args a = valid_args();
    a.dbias.dtype = DM_F32;
    expect_invalid(&a, "dbias.dtype = f32: expected bias's dtype bf16");
    a = valid_args();
    a.bias.dtype = DM_F32;
    expect_invalid(&a, "dbias.dtype = bf16: expected bias's dtype f32");
}
END_TEST

START_TEST(dbias_has_bias_rank_and_shape)
{
    dm_bwd_varlen_args a = valid_args();
    set_tensor(&a.dbias, DBIAS_ADDR, DM_BF16, 3, TQ, HKV, MAXK); /* the other layout */
    expect_invalid(&a, "dbias.rank = 3: expected 2 bias's shape");
    a = valid_args();
    set_shape(&a.dbias, TK, 1, 0); /* summed over heads: bias has Hkv */
    expect_invalid(&a, "dbias.shape[1] = 1: expected bias.shape[1] = 2");
    a = valid_args();
    set_shape(&a.dbias, TK - 1, HKV, 0);
    expect_invalid(&a, "dbias.shape[0] = 19: expected bias.shape[0] = 20");
    a = valid_args();
    set_layout(&a, true, DM_LAYOUT_Q, H);
    set_shape(&a.dbias, TQ, H, MAXK + 1);
    expect_invalid(&a, "dbias.shape[2] = 10: expected bias.shape[2] = 9");
    set_tensor(&a.dbias, DBIAS_ADDR, DM_BF16, 2, TK, H, 0);
    expect_invalid(&a, "dbias.rank = 2: expected 3 bias's shape");
}
END_TEST

START_TEST(dbias_is_present_or_absent_never_between)
{
    dm_bwd_varlen_args a = valid_args();
    a.dbias.data = NULL; /* (total_k, Hkv) holds elements */
    expect_invalid(&a, "dbias.data is NULL but dbias.rank = 2");
    a = valid_args();
    a.dbias.rank = 0;
    expect_invalid(&a, "dbias.rank = 0 but dbias.data is set");
}
END_TEST

START_TEST(dbias_has_no_two_elements_at_one_address)
{
    dm_bwd_varlen_args a = valid_args();
    a.dbias.strides[0] = 0; /* every key at one address */
    expect_invalid(&a, "dbias.strides[0] = 0");
    a = valid_args();
    a.dbias.strides[0] = 1; /* key t's head 1 is key t + 1's head 0 */
    expect_invalid(&a, "dbias.strides");
    a = valid_args();
    set_layout(&a, true, DM_LAYOUT_Q, HKV);
    a.dbias.strides[1] = 4; /* the heads' rows of keys overlap */
    expect_invalid(&a, "dbias.strides");
    a = valid_args();
    a.dbias.strides[1] = -1;
    expect_invalid(&a, "dbias.strides[1] = -1: expected >= 0");
}
END_TEST

/* A query-based dbias is written in rows of keys, as bias is read: the last stride 1. A
 * key-based one is written one element per key, any stride. Both element-aligned. */
START_TEST(dbias_keys_are_contiguous_in_the_query_layout_and_elements_aligned)
{
    dm_bwd_varlen_args a = valid_args();
    set_layout(&a, true, DM_LAYOUT_Q, HKV);
    a.dbias.strides[2] = 2;
    a.dbias.strides[1] = 2 * MAXK;
    a.dbias.strides[0] = 2 * HKV * MAXK;
    expect_invalid(&a, "dbias.strides[2] = 2: expected 1 (the last dimension must be contiguous)");
    a = valid_args();
    a.dbias.strides[1] = TK; /* head-major: (Hkv, total_k) transposed */
    a.dbias.strides[0] = 1;
    expect_ok(&a);
    a = valid_args();
    a.dbias.data = (void *)(DBIAS_ADDR + 1);
    expect_invalid(&a, "dbias.data");
    a = valid_args();
    a.bias.dtype = DM_F32;
    a.dbias.dtype = DM_F32;
    a.dbias.data = (void *)(DBIAS_ADDR + 2);
    expect_invalid(&a, "dbias.data");
    expect_invalid(&a, "4-byte f32 elements");
}
END_TEST

#define TESTS(X) \
    X(valid_args_give_a_plan_with_the_gradients_layouts) \
    X(the_plan_keeps_the_gradients_strides) \
    X(every_mask_and_bias_layout_pair_is_accepted) \
    X(dbias_is_accepted_for_each_bias_layout_and_head_count) \
    X(gradients_without_elements_may_have_null_data) \
    X(a_null_plan_is_accepted_and_a_null_call_names_dm_bwd_varlen) \
    X(the_forwards_arguments_follow_the_forwards_rules) \
    X(o_is_required) \
    X(lse_is_required_and_shaped_h_by_total_q) \
    X(dout_has_os_shape_and_qs_dtype_and_readable_rows) \
    X(dq_dk_dv_have_q_k_v_shapes_and_qs_dtype) \
    X(dq_dk_dv_have_aligned_rows_and_no_two_elements_at_one_address) \
    X(dbias_without_a_bias_is_refused_by_name) \
    X(dbias_has_bias_dtype) \
    X(dbias_has_bias_rank_and_shape) \
    X(dbias_is_present_or_absent_never_between) \
    X(dbias_has_no_two_elements_at_one_address) \
    X(dbias_keys_are_contiguous_in_the_query_layout_and_elements_aligned)
DM_TEST_MAIN("bwd_varlen_validate", TESTS)
