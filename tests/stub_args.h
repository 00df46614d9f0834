/* stub_args.h: call arguments for tests against the stub driver (stub_libcuda.c), whose kernels
 * never touch memory: tensors at made-up addresses. Header only. */
#ifndef DM_STUB_ARGS_H
#define DM_STUB_ARGS_H

#include <stdint.h>

#include "dmattn.h"

/* A contiguous 4-D tensor (a, b, c, d) of dtype t at addr. */
static inline dm_tensor dm_test_t4(uintptr_t addr, dm_dtype t, int64_t a, int64_t b, int64_t c,
                                   int64_t d)
{
    return (dm_tensor){.data = (void *)addr,
                       .dtype = t,
                       .rank = 4,
                       .shape = {a, b, c, d},
                       .strides = {b * c * d, c * d, d, 1}};
}

/* dm_bwd's arguments for B x L queries and keys, H query heads over hkv K/V heads, head_dim d,
 * f16, no mask or bias, the default mode. */
static inline dm_bwd_args dm_test_bwd_args(int64_t B, int64_t H, int64_t hkv, int64_t L,
                                           int64_t d)
{
    return (dm_bwd_args){
        .dout = dm_test_t4(0x1000000, DM_F16, B, L, H, d),
        .q = dm_test_t4(0x2000000, DM_F16, B, L, H, d),
        .k = dm_test_t4(0x3000000, DM_F16, B, L, hkv, d),
        .v = dm_test_t4(0x4000000, DM_F16, B, L, hkv, d),
        .o = dm_test_t4(0x5000000, DM_F16, B, L, H, d),
        .dq = dm_test_t4(0x6000000, DM_F16, B, L, H, d),
        .dk = dm_test_t4(0x7000000, DM_F16, B, L, hkv, d),
        .dv = dm_test_t4(0x8000000, DM_F16, B, L, hkv, d),
        .lse = {.data = (void *)0x9000000,
                .dtype = DM_F32,
                .rank = 3,
                .shape = {B, H, L},
                .strides = {H * L, L, 1}},
    };
}

#endif
