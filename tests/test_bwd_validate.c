/* test_bwd_validate.c: dm_bwd_check (runtime/api/bwd_check.c), rule by rule: the forward's
 * arguments by the forward's rules, then lse's presence and dout, dq, dk, dv, dbias. Tensor
 * pointers are fake device addresses: the check never dereferences them. */
#include <stdint.h>
#include <string.h>

#include "bwd_plan.h"
#include "check_util.h"
#include "harness.h"
#include "test_compile.h"

enum { B = 2, LQ = 5, H = 8, HKV = 2, D = 64, LK = 7 };

/* A contiguous tensor at a fake address. */
static void set_tensor(dm_tensor *t, uintptr_t addr, dm_dtype dt, int rank, int64_t s0, int64_t s1,
                       int64_t s2, int64_t s3)
{
    const int64_t shape[4] = {s0, s1, s2, s3};
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

/* GQA, a full mask, a key bias (1, Hkv, 1, Lk) with its dbias, lse; bf16. */
static dm_bwd_args valid_args(void)
{
    dm_bwd_args a;
    memset(&a, 0, sizeof a);
    set_tensor(&a.q, 0x100000, DM_BF16, 4, B, LQ, H, D);
    set_tensor(&a.k, 0x200000, DM_BF16, 4, B, LK, HKV, D);
    set_tensor(&a.v, 0x300000, DM_BF16, 4, B, LK, HKV, D);
    set_tensor(&a.o, 0x400000, DM_BF16, 4, B, LQ, H, D);
    set_tensor(&a.dout, 0x500000, DM_BF16, 4, B, LQ, H, D);
    set_tensor(&a.lse, 0x600000, DM_F32, 3, B, H, LQ, 0);
    set_tensor(&a.mask, 0x700001, DM_BOOL, 4, B, H, LQ, LK);
    set_tensor(&a.bias, 0x800000, DM_BF16, 4, 1, HKV, 1, LK);
    set_tensor(&a.dq, 0x900000, DM_BF16, 4, B, LQ, H, D);
    set_tensor(&a.dk, 0xa00000, DM_BF16, 4, B, LK, HKV, D);
    set_tensor(&a.dv, 0xb00000, DM_BF16, 4, B, LK, HKV, D);
    set_tensor(&a.dbias, 0xc00000, DM_BF16, 4, 1, HKV, 1, LK);
    return a;
}

static void expect_invalid(const dm_bwd_args *a, const char *needle)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    dm_bwd_plan plan;
    dm_status st = dm_bwd_check(ctx, "dm_bwd", a, &plan);
    expect_refusal(ctx, st, DM_ERR_INVALID_ARG, "dm_bwd", needle);
    dm_ctx_destroy(ctx);
}

static dm_bwd_plan expect_ok(const dm_bwd_args *a)
{
    dm_ctx *ctx = dm_test_offline_ctx();
    dm_bwd_plan plan;
    dm_status st = dm_bwd_check(ctx, "dm_bwd", a, &plan);
    ck_assert_msg(st == DM_OK, "status %s: %s", dm_status_name(st), dm_errmsg(ctx));
    ck_assert_str_eq(dm_errmsg(ctx), "");
    dm_ctx_destroy(ctx);
    return plan;
}

START_TEST(valid_args_give_a_plan_with_the_gradients_layouts)
{
    dm_bwd_args a = valid_args();
    a.deterministic = 1;
    dm_bwd_plan p = expect_ok(&a);
    ck_assert_int_eq(p.fwd.H, H);
    ck_assert_int_eq(p.fwd.Hkv, HKV);
    ck_assert(p.fwd.has_lse);
    ck_assert_int_eq(p.fwd.bias_layout, DM_LAYOUT_K);
    ck_assert(p.has_dbias);
    ck_assert(p.deterministic);
    ck_assert_int_eq(p.dq_stride[1], H * D);
    ck_assert_int_eq(p.dk_stride[2], D);
    ck_assert_int_eq(p.dbias_stride[0], 0); /* broadcast: size 1 */
    ck_assert_int_eq(p.dbias_stride[1], LK);
    ck_assert_int_eq(p.dbias_stride[3], 1);
    /* no mask, no bias, no dbias is valid too */
    memset(&a.mask, 0, sizeof a.mask);
    memset(&a.bias, 0, sizeof a.bias);
    memset(&a.dbias, 0, sizeof a.dbias);
    p = expect_ok(&a);
    ck_assert(!p.has_dbias);
}
END_TEST

START_TEST(the_forwards_arguments_follow_the_forwards_rules)
{
    dm_bwd_args a = valid_args();
    set_tensor(&a.k, 0x200000, DM_BF16, 4, B, LK, 3, D);
    set_tensor(&a.v, 0x300000, DM_BF16, 4, B, LK, 3, D);
    expect_invalid(&a, "does not divide q.shape[2] (H) = 8");
    a = valid_args();
    a.softcap = -1;
    expect_invalid(&a, "softcap");
    expect_invalid(NULL, "args is NULL");
}
END_TEST

START_TEST(lse_is_required)
{
    dm_bwd_args a = valid_args();
    memset(&a.lse, 0, sizeof a.lse);
    expect_invalid(&a, "lse is absent: expected the forward's fp32 (B, H, Lq) lse");
}
END_TEST

START_TEST(dout_has_os_shape_and_qs_dtype_and_readable_rows)
{
    dm_bwd_args a = valid_args();
    memset(&a.dout, 0, sizeof a.dout);
    expect_invalid(&a, "dout");
    a = valid_args();
    a.dout.dtype = DM_F16;
    expect_invalid(&a, "dout.dtype = f16: expected q's dtype bf16");
    a = valid_args();
    set_tensor(&a.dout, 0x500000, DM_BF16, 4, B, LQ + 1, H, D);
    expect_invalid(&a, "dout.shape[1] = 6: expected o.shape[1] = 5");
    a = valid_args();
    a.dout.data = (void *)0x500002; /* rows move 16 bytes at a time */
    expect_invalid(&a, "dout");
}
END_TEST

START_TEST(dq_dk_dv_have_q_k_v_shapes_qs_dtype_and_no_two_elements_at_one_address)
{
    dm_bwd_args a = valid_args();
    memset(&a.dq, 0, sizeof a.dq);
    expect_invalid(&a, "dq");
    a = valid_args();
    set_tensor(&a.dk, 0xa00000, DM_BF16, 4, B, LK, H, D);
    expect_invalid(&a, "dk.shape[2] = 8: expected k.shape[2] = 2");
    a = valid_args();
    a.dv.dtype = DM_F32;
    expect_invalid(&a, "dv.dtype = f32: expected q's dtype bf16");
    a = valid_args();
    a.dq.strides[1] = 0; /* every query row at one address: written many times */
    expect_invalid(&a, "dq");
    a = valid_args();
    set_tensor(&a.dv, 0xb00000, DM_BF16, 3, B, LK, HKV, 0);
    expect_invalid(&a, "dv");
}
END_TEST

START_TEST(dbias_needs_a_bias_and_has_its_shape_and_dtype)
{
    dm_bwd_args a = valid_args();
    memset(&a.bias, 0, sizeof a.bias);
    expect_invalid(&a, "dbias is given but bias is absent");
    a = valid_args();
    a.dbias.dtype = DM_F32;
    expect_invalid(&a, "dbias.dtype = f32: expected bias's dtype bf16");
    a = valid_args();
    set_tensor(&a.dbias, 0xc00000, DM_BF16, 4, B, HKV, 1, LK); /* summed over B: bias has 1 */
    expect_invalid(&a, "dbias.shape[0] = 2: expected bias.shape[0] = 1");
    a = valid_args();
    set_tensor(&a.dbias, 0xc00000, DM_BF16, 3, 1, HKV, LK, 0);
    expect_invalid(&a, "dbias");
    a = valid_args();
    a.dbias.strides[3] = 0; /* every key at one address */
    expect_invalid(&a, "dbias");
    /* an fp32 bias takes an fp32 dbias */
    a = valid_args();
    a.bias.dtype = DM_F32;
    a.dbias.dtype = DM_F32;
    expect_ok(&a);
}
END_TEST

#define TESTS(X) \
    X(valid_args_give_a_plan_with_the_gradients_layouts) \
    X(the_forwards_arguments_follow_the_forwards_rules) \
    X(lse_is_required) \
    X(dout_has_os_shape_and_qs_dtype_and_readable_rows) \
    X(dq_dk_dv_have_q_k_v_shapes_qs_dtype_and_no_two_elements_at_one_address) \
    X(dbias_needs_a_bias_and_has_its_shape_and_dtype)
DM_TEST_MAIN("bwd_validate", TESTS)
