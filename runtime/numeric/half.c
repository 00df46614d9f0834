/* half.c: fp16/bf16 <-> float conversions with round-to-nearest-even, and one correctly rounded
 * double -> fp16/bf16 step. Production code (the window-mask check's min_value), the CPU
 * references, tests and tools all round with these, so they agree bit for bit. No state. */
#include "half.h"

#include <math.h>
#include <string.h>

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float dm_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;

    if (exp == 0) { /* zero or subnormal: mant * 2^-24, exact in float */
        float f = ldexpf((float)mant, -24);
        return sign ? -f : f;
    }
    if (exp == 31) /* inf, or NaN with its payload */
        return bits_float(sign | 0x7f800000u | (mant << 13));
    return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t dm_float_to_half(float f)
{
    uint32_t x = float_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);

    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) { /* inf stays inf; NaN stays a (quiet) NaN, keeping the payload top */
        if (x == 0x7f800000u)
            return sign | 0x7c00;
        return (uint16_t)(sign | 0x7e00 | ((x >> 13) & 0x3ff));
    }
    if (x >= 0x477ff000u) /* >= 65520, the midpoint above 65504: rounds to inf */
        return sign | 0x7c00;
    if (x < 0x38800000u) { /* below 2^-14: a half subnormal (or zero) in units of 2^-24 */
        uint32_t e = x >> 23;
        if (e < 102) /* below 2^-25: rounds to zero */
            return sign;
        uint32_t mant = (x & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++; /* may carry into the smallest normal, which is the right encoding */
        return (uint16_t)(sign | q);
    }
    x -= 0x38000000u; /* rebias the exponent from 127 to 15 */
    return (uint16_t)(sign | ((x + 0xfffu + ((x >> 13) & 1)) >> 13));
}

float dm_bf16_to_float(uint16_t h) { return bits_float((uint32_t)h << 16); }

uint16_t dm_float_to_bf16(float f)
{
    uint32_t x = float_bits(f);

    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: keep sign and payload top, force quiet */
        return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

/* double -> float rounding to odd: the sticky bit keeps a later float -> half/bf16 rounding to
 * nearest even exact (float has more than 2 bits beyond either), so there is no double rounding. */
static float round_to_odd(double d)
{
    float f = (float)d;

    if ((double)f == d || isnan(d))
        return f;
    if (fabs((double)f) > fabs(d))
        f = nextafterf(f, 0.0f);
    return bits_float(float_bits(f) | 1);
}

uint16_t dm_double_to_16(double d, dm_dtype dt)
{
    float f = round_to_odd(d);
    return dt == DM_BF16 ? dm_float_to_bf16(f) : dm_float_to_half(f);
}
