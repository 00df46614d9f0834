/* test_bwd_maps.c: the backward's tensor maps (runtime/api/bwd_maps.c) against a recording
 * stand-in for cuTensorMapEncodeTiled: what the unit is asked for (dims, byte strides, 64-column
 * boxes, the 128-byte swizzle the wgmma tiles use), the strides it cannot step (then no map:
 * the kernel copies by cp.async), and dimensions of one element, whose stride is never stepped;
 * a query-layout bias's and fused dbias's maps (fp32 or 16-bit, boxes of 128 bytes of keys,
 * broadcast dimensions); the dq scratch's map (fp32, boxes of 32 columns). The loads themselves
 * are test_gpu_bwd's. */
#include <stdint.h>
#include <string.h>

#include "bwd_maps.h"
#include "harness.h"

static struct {
    int calls;
    cuuint64_t dims[4], strides[3], first_strides[3]; /* the last call's; the first's strides */
    cuuint32_t box[4];
    CUtensorMapSwizzle swizzle;
    CUtensorMapDataType type;
    uint64_t addr;
    CUresult answer;
    int refuse_call; /* 1-based call answered CUDA_ERROR_INVALID_VALUE; 0: none */
} rec;

static CUresult record(CUtensorMap *map, CUtensorMapDataType type, cuuint32_t rank, void *addr,
                       const cuuint64_t *dims, const cuuint64_t *strides, const cuuint32_t *box,
                       const cuuint32_t *unit, CUtensorMapInterleave il, CUtensorMapSwizzle sw,
                       CUtensorMapL2promotion l2, CUtensorMapFloatOOBfill fill)
{
    rec.calls++;
    ck_assert_int_eq(rank, 4);
    ck_assert(type == CU_TENSOR_MAP_DATA_TYPE_UINT16 || type == CU_TENSOR_MAP_DATA_TYPE_FLOAT32);
    rec.type = type;
    rec.addr = (uint64_t)(uintptr_t)addr;
    ck_assert_int_eq(fill, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE); /* rows past Lq read as zero */
    memcpy(rec.dims, dims, sizeof rec.dims);
    memcpy(rec.strides, strides, sizeof rec.strides);
    if (rec.calls == 1)
        memcpy(rec.first_strides, strides, sizeof rec.first_strides);
    memcpy(rec.box, box, sizeof rec.box);
    rec.swizzle = sw;
    memset(map, 0, sizeof *map);
    return rec.calls == rec.refuse_call ? CUDA_ERROR_INVALID_VALUE : rec.answer;
}

static dm_driver drv = {.TensorMapEncodeTiled = record};

/* (B, L, H, D) = (2, 100, 4, 64), packed, 16-byte aligned bases */
static dm_bwd_params params(void)
{
    dm_bwd_params p = {.q = 0x10000, .dout = 0x20000, .B = 2, .H = 4, .Lq = 100};
    const int64_t s[3] = {100 * 4 * 64, 4 * 64, 64};
    memcpy(p.q_stride, s, sizeof s);
    memcpy(p.dout_stride, s, sizeof s);
    return p;
}

static dm_bwd_maps fill(const dm_bwd_params *p)
{
    dm_bwd_maps m;
    memset(&rec, 0, sizeof rec);
    rec.answer = CUDA_SUCCESS;
    dm_bwd_maps_fill(&drv, p, 64, 64, false, &m);
    return m;
}

START_TEST(packed_q_and_dout_become_swizzled_maps_of_64_column_boxes)
{
    const dm_bwd_params p = params();
    const dm_bwd_maps m = fill(&p);
    ck_assert_int_eq(m.tma, 1);
    ck_assert_int_eq(rec.calls, 2);
    const cuuint64_t dims[4] = {64, 100, 4, 2}, strides[3] = {4 * 64 * 2, 64 * 2, 100 * 4 * 64 * 2};
    ck_assert_mem_eq(rec.dims, dims, sizeof dims); /* column, row, head, batch */
    ck_assert_mem_eq(rec.strides, strides, sizeof strides);
    ck_assert_int_eq(rec.box[0], 64);
    ck_assert_int_eq(rec.box[1], 64);
    ck_assert_int_eq(rec.box[2], 1);
    ck_assert_int_eq(rec.box[3], 1);
    ck_assert_int_eq(rec.swizzle, CU_TENSOR_MAP_SWIZZLE_128B);
}
END_TEST

START_TEST(a_stride_the_unit_cannot_step_or_a_misaligned_base_gives_no_maps)
{
    dm_bwd_params p = params();
    p.dout_stride[1] = 4 * 64 + 4; /* rows 8 bytes apart from a 16-byte step */
    ck_assert_int_eq(fill(&p).tma, 0);
    p = params();
    p.q_stride[0] = -p.q_stride[0];
    ck_assert_int_eq(fill(&p).tma, 0);
    p = params();
    p.q += 8;
    ck_assert_int_eq(fill(&p).tma, 0);
    ck_assert_int_eq(rec.calls, 0); /* refused before asking the driver */
    /* q shared by B = 2 batches (strides[0] = 0): no map steps it (test_gpu_bwd's
     * q_batch_shared case runs the copies, red_tile's sums, through this) */
    p = params();
    ck_assert_int_gt(p.B, 1);
    p.q_stride[0] = 0;
    ck_assert_int_eq(fill(&p).tma, 0);
}
END_TEST

START_TEST(a_dimension_of_one_element_takes_the_packed_stride)
{
    dm_bwd_params p = params();
    p.B = 1;
    p.q_stride[0] = 3; /* never stepped: batch 0 only */
    p.H = 1;
    p.q_stride[2] = 5;
    const dm_bwd_maps m = fill(&p);
    ck_assert_int_eq(m.tma, 1);
    /* q's map (the first call): rows as given, then the packed head and batch steps */
    const cuuint64_t strides[3] = {4 * 64 * 2, 100 * 4 * 64 * 2, 100 * 4 * 64 * 2};
    ck_assert_mem_eq(rec.first_strides, strides, sizeof strides);
}
END_TEST

START_TEST(a_map_the_driver_refuses_leaves_the_copies)
{
    const dm_bwd_params p = params();
    dm_bwd_maps m;
    memset(&rec, 0, sizeof rec);
    rec.answer = CUDA_ERROR_INVALID_VALUE;
    dm_bwd_maps_fill(&drv, &p, 64, 64, false, &m);
    ck_assert_int_eq(m.tma, 0);
}
END_TEST

START_TEST(a_driver_without_tensor_maps_leaves_the_copies)
{
    const dm_bwd_params p = params();
    const dm_driver old = {.TensorMapEncodeTiled = NULL}; /* before CUDA 12.0 */
    dm_bwd_maps m;
    dm_bwd_maps_fill(&old, &p, 64, 64, false, &m);
    ck_assert_int_eq(m.tma, 0);
}
END_TEST

/* params() with a query-layout bias (B, H, Lq, Lk) = (2, 4, 100, 200), fp32 or 16-bit, packed,
 * and a fused dbias of the same shape */
static dm_bwd_params with_bias(int f32)
{
    dm_bwd_params p = params();
    p.Lk = 200;
    p.bias = 0x30000;
    p.dbias = 0x40000;
    p.bias_f32 = f32;
    p.bias_head_div = 1;
    p.bias_key_stride = p.dbias_key_stride = 1;
    const int64_t s[3] = {4 * 100 * 200, 100 * 200, 200}; /* batch, head, row */
    memcpy(p.bias_stride, s, sizeof s);
    memcpy(p.dbias_stride, s, sizeof s);
    p.dbias_B = 2;
    p.dbias_H = 4;
    p.dbias_Lq = 100;
    p.dbias_fused = 1;
    return p;
}

static dm_bwd_maps fill_bias(const dm_bwd_params *p, int refuse_call)
{
    dm_bwd_maps m;
    memset(&rec, 0, sizeof rec);
    rec.answer = CUDA_SUCCESS;
    rec.refuse_call = refuse_call;
    dm_bwd_maps_fill(&drv, p, 64, 64, true, &m);
    return m;
}

START_TEST(a_query_layout_bias_and_its_fused_dbias_become_maps_of_128_byte_key_boxes)
{
    for (int f32 = 0; f32 < 2; f32++) {
        const int es = f32 ? 4 : 2;
        const dm_bwd_params p = with_bias(f32);
        const dm_bwd_maps m = fill_bias(&p, 0);
        ck_assert_int_eq(m.tma, 1);
        ck_assert_int_eq(m.bias_tma, 1);
        ck_assert_int_eq(m.bias_batch_step, 1);
        ck_assert_int_eq(rec.calls, 4); /* q, dout, bias, dbias: the last one recorded */
        ck_assert_uint_eq(rec.addr, 0x40000);
        ck_assert_int_eq(rec.type, f32 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT32
                                       : CU_TENSOR_MAP_DATA_TYPE_UINT16);
        const cuuint64_t dims[4] = {200, 100, 4, 2}; /* key, query, head, batch */
        const cuuint64_t strides[3] = {200 * es, 100 * 200 * es, 4 * 100 * 200 * es};
        ck_assert_mem_eq(rec.dims, dims, sizeof dims);
        ck_assert_mem_eq(rec.strides, strides, sizeof strides);
        ck_assert_int_eq(rec.box[0], 128 / es);
        ck_assert_int_eq(rec.box[1], 64);
        ck_assert_int_eq(rec.swizzle, CU_TENSOR_MAP_SWIZZLE_128B);
    }
}
END_TEST

START_TEST(a_bias_broadcast_over_batch_and_heads_is_one_of_each_and_coordinate_zero)
{
    dm_bwd_params p = with_bias(1);
    p.bias_stride[0] = p.bias_stride[1] = 0; /* (1, 1, Lq, Lk) */
    p.bias_head_div = 4;
    p.dbias = 0; /* summed over the broadcasts: not the keys phase's */
    const dm_bwd_maps m = fill_bias(&p, 0);
    ck_assert_int_eq(m.bias_tma, 1);
    ck_assert_int_eq(m.bias_batch_step, 0);
    ck_assert_int_eq(rec.calls, 3);
    const cuuint64_t dims[4] = {200, 100, 1, 1};
    const cuuint64_t strides[3] = {800, 100 * 800, 100 * 800}; /* the packed steps */
    ck_assert_mem_eq(rec.dims, dims, sizeof dims);
    ck_assert_mem_eq(rec.strides, strides, sizeof strides);
}
END_TEST

START_TEST(a_bias_map_not_made_leaves_the_bias_read_per_element)
{
    dm_bwd_params p = with_bias(1);
    p.bias_stride[2] = 201; /* rows 804 bytes apart: not a multiple of 16 */
    dm_bwd_maps m = fill_bias(&p, 0);
    ck_assert_int_eq(m.tma, 1); /* q's and dO's still by the unit */
    ck_assert_int_eq(m.bias_tma, 0);
    p = with_bias(0);
    p.bias_key_stride = 2;
    ck_assert_int_eq(fill_bias(&p, 0).bias_tma, 0);
    p = with_bias(0);
    ck_assert_int_eq(fill_bias(&p, 4).bias_tma, 0); /* dbias's map refused */
    ck_assert_int_eq(fill_bias(&p, 1).bias_tma, 0); /* q's: no maps at all */
    ck_assert_int_eq(rec.calls, 1);
    p.dbias_fused = 0; /* dbias summed by phase 2: no dbias map needed */
    m = fill_bias(&p, 4);
    ck_assert_int_eq(m.bias_tma, 1);
    ck_assert_int_eq(rec.calls, 3);
}
END_TEST

/* The keys phase's dq sums (p.dq_accum, fp32 (B, H, Lq, D) packed) by a third map: 32-column
 * boxes (128 bytes) of 64 rows, swizzled as the staged tile; none where D % 32 != 0 (the kernel
 * sums by rows there) or where there is no scratch (the deterministic mode). */
START_TEST(dq_sums_get_a_map_of_32_column_fp32_boxes_where_the_head_dim_allows)
{
    dm_bwd_params p = params();
    p.dq_accum = 0x40000;
    dm_bwd_maps m = fill(&p);
    ck_assert_int_eq(m.tma, 1);
    ck_assert_int_eq(rec.calls, 3);
    ck_assert_uint_eq(rec.addr, 0x40000);
    ck_assert_int_eq(rec.type, CU_TENSOR_MAP_DATA_TYPE_FLOAT32);
    const cuuint64_t dims[4] = {64, 100, 4, 2},
                     strides[3] = {64 * 4, 100 * 64 * 4, 4 * 100 * 64 * 4};
    ck_assert_mem_eq(rec.dims, dims, sizeof dims);
    ck_assert_mem_eq(rec.strides, strides, sizeof strides);
    ck_assert_int_eq(rec.box[0], 32);
    ck_assert_int_eq(rec.box[1], 64);
    ck_assert_int_eq(rec.swizzle, CU_TENSOR_MAP_SWIZZLE_128B);
    /* refused: no maps at all (the kernel's copies and row sums go together) */
    memset(&rec, 0, sizeof rec);
    rec.answer = CUDA_SUCCESS;
    rec.refuse_call = 3;
    dm_bwd_maps_fill(&drv, &p, 64, 64, false, &m);
    ck_assert_int_eq(m.tma, 0);
    /* head_dim 48: no dq map asked for, q's and dO's made */
    memset(&rec, 0, sizeof rec);
    rec.answer = CUDA_SUCCESS;
    dm_bwd_maps_fill(&drv, &p, 48, 64, false, &m);
    ck_assert_int_eq(m.tma, 1);
    ck_assert_int_eq(rec.calls, 2);
    /* no scratch: no dq map */
    p.dq_accum = 0;
    m = fill(&p);
    ck_assert_int_eq(m.tma, 1);
    ck_assert_int_eq(rec.calls, 2);
}
END_TEST

#define TESTS(X) \
    X(packed_q_and_dout_become_swizzled_maps_of_64_column_boxes) \
    X(a_stride_the_unit_cannot_step_or_a_misaligned_base_gives_no_maps) \
    X(a_dimension_of_one_element_takes_the_packed_stride) \
    X(a_map_the_driver_refuses_leaves_the_copies) \
    X(a_driver_without_tensor_maps_leaves_the_copies) \
    X(a_query_layout_bias_and_its_fused_dbias_become_maps_of_128_byte_key_boxes) \
    X(a_bias_broadcast_over_batch_and_heads_is_one_of_each_and_coordinate_zero) \
    X(a_bias_map_not_made_leaves_the_bias_read_per_element) \
    X(dq_sums_get_a_map_of_32_column_fp32_boxes_where_the_head_dim_allows)
DM_TEST_MAIN("bwd_maps", TESTS)
