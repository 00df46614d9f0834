/* ref_util.h: what the CPU reference tests (test_reference, test_ref_varlen) share: a check for
 * loops, a seeded splitmix64, 16-bit conversions in double and the dtype's ulp. Header only:
 * each test program takes what it uses. */
#ifndef DM_REF_UTIL_H
#define DM_REF_UTIL_H

#include <math.h>
#include <stdint.h>

#include "dmattn.h"
#include "half.h"
#include "harness.h"

/* ck_assert records every passing check through the test's pipe, which is far too slow in loops
 * over millions of values: loops test with a plain if and fail with ck_abort_msg. */
#define CHECK(cond, ...) \
    do { \
        if (!(cond)) \
            ck_abort_msg(__VA_ARGS__); \
    } while (0)

/* ---- random numbers (splitmix64) ---- */

typedef struct rng {
    uint64_t s;
} rng;

static inline uint64_t next_u64(rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline double uniform(rng *r, double lo, double hi)
{
    return lo + (hi - lo) * ((double)(next_u64(r) >> 11) * 0x1.0p-53);
}

static inline int64_t pick(rng *r, int64_t lo, int64_t hi) /* inclusive */
{
    return lo + (int64_t)(next_u64(r) % (uint64_t)(hi - lo + 1));
}

/* ---- 16-bit dtypes ---- */

static inline double from16(dm_dtype t, uint16_t c)
{
    return t == DM_BF16 ? dm_bf16_to_float(c) : dm_half_to_float(c);
}

static inline uint16_t to16(dm_dtype t, double x)
{
    return t == DM_BF16 ? dm_float_to_bf16((float)x) : dm_float_to_half((float)x);
}

/* One unit in the last place of the output dtype at |x|'s binade (subnormals included). */
static inline double ulp_at(dm_dtype t, double x)
{
    int e, mant_bits = t == DM_BF16 ? 7 : 10, min_exp = t == DM_BF16 ? -126 : -14;
    frexp(fabs(x), &e); /* |x| = m * 2^e, m in [0.5, 1) */
    if (x == 0 || e - 1 < min_exp)
        e = min_exp + 1;
    return ldexp(1.0, e - 1 - mant_bits);
}

#endif
