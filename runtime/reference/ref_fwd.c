/* ref_fwd.c: the CPU reference of dense forward attention (SPEC §2) in float64, and the
 * fp16/bf16 <-> float converters everything else rounds with. Reads host pointers only, laid out
 * as dm_fwd_check's plan says; it is for tests and tools, not for speed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fwd_plan.h"
#include "wmask_plan.h"

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

static uint16_t round_out(double d, dm_dtype dt)
{
    float f = round_to_odd(d);
    return dt == DM_BF16 ? dm_float_to_bf16(f) : dm_float_to_half(f);
}

/* Element (b, h, i, j) of a mask or bias, with the plan's normalized strides. */
static int64_t mb_offset(const int64_t s[4], int64_t head_div, int64_t b, int64_t h, int64_t i,
                         int64_t j)
{
    return b * s[0] + (h / head_div) * s[1] + i * s[2] + j * s[3];
}

dm_status dm_ref_fwd(dm_ctx *ctx, const dm_fwd_args *host_args)
{
    dm_fwd_plan p;
    float *table = NULL, *qrow = NULL;
    double *s = NULL, *acc = NULL;
    unsigned char *visible = NULL;

    dm_status st = dm_fwd_check(ctx, "dm_ref_fwd", host_args, &p);
    if (st != DM_OK)
        return st;
    if (host_args->window > 0) /* mask' on the host (wmask_ref.c), then this call without one */
        return dm_ref_fwd_window(ctx, host_args);
    const dm_fwd_args *a = host_args;

    /* Every 16-bit code decoded once: the loops below read each K and V element many times. */
    table = malloc(65536 * sizeof *table);
    qrow = malloc((size_t)p.D * sizeof *qrow);
    acc = malloc((size_t)p.D * sizeof *acc);
    s = malloc((size_t)p.Lk * sizeof *s);
    visible = malloc((size_t)p.Lk);
    if (!table || !qrow || !acc || !s || !visible) {
        st = dm_set_error(ctx, DM_ERR_NOMEM, "dm_ref_fwd: out of memory for Lk = %lld, D = %lld",
                          (long long)p.Lk, (long long)p.D);
        goto out;
    }
    for (uint32_t c = 0; c < 65536; c++)
        table[c] =
            p.dtype == DM_BF16 ? dm_bf16_to_float((uint16_t)c) : dm_half_to_float((uint16_t)c);

    const uint16_t *q = a->q.data, *k = a->k.data, *v = a->v.data;
    uint16_t *o = a->o.data;
    const unsigned char *mask = a->mask.data;
    const void *bias = a->bias.data;
    float *lse = a->lse.data;
    int64_t group = p.H / p.Hkv;
    double scale = p.scale, cap = p.softcap;

    for (int64_t b = 0; b < p.B; b++)
        for (int64_t h = 0; h < p.H; h++) {
            int64_t hk = h / group;
            const uint16_t *kh = k + b * p.k_stride[0] + hk * p.k_stride[2];
            const uint16_t *vh = v + b * p.v_stride[0] + hk * p.v_stride[2];
            for (int64_t i = 0; i < p.Lq; i++) {
                const uint16_t *qi = q + b * p.q_stride[0] + i * p.q_stride[1] + h * p.q_stride[2];
                for (int64_t d = 0; d < p.D; d++)
                    qrow[d] = table[qi[d]];
                double m = -INFINITY;
                for (int64_t j = 0; j < p.Lk; j++) {
                    visible[j] = !(p.causal && j > i + p.Lk - p.Lq);
                    if (visible[j] && p.mask_layout != DM_LAYOUT_NONE)
                        visible[j] =
                            mask[mb_offset(p.mask_stride, p.mask_head_div, b, h, i, j)] != 0;
                    if (!visible[j])
                        continue;
                    const uint16_t *kj = kh + j * p.k_stride[1];
                    double dot = 0;
                    for (int64_t d = 0; d < p.D; d++)
                        dot += (double)qrow[d] * (double)table[kj[d]];
                    double x = scale * dot;
                    if (p.bias_layout != DM_LAYOUT_NONE) {
                        int64_t off = mb_offset(p.bias_stride, p.bias_head_div, b, h, i, j);
                        x += p.bias_dtype == DM_F32 ? (double)((const float *)bias)[off]
                                                    : (double)table[((const uint16_t *)bias)[off]];
                    }
                    if (cap > 0)
                        x = cap * tanh(x / cap);
                    s[j] = x;
                    if (x > m)
                        m = x;
                }
                uint16_t *oi = o + b * p.o_stride[0] + i * p.o_stride[1] + h * p.o_stride[2];
                float *lse_i = p.has_lse ? lse + b * p.lse_stride[0] + h * p.lse_stride[1] +
                                               i * p.lse_stride[2]
                                         : NULL;
                /* No visible key (or only -inf scores): o = 0 exactly, lse = +inf, never NaN. */
                if (m == -INFINITY) {
                    for (int64_t d = 0; d < p.D; d++)
                        oi[d] = 0;
                    if (lse_i)
                        *lse_i = INFINITY;
                    continue;
                }
                double sum = 0;
                for (int64_t d = 0; d < p.D; d++)
                    acc[d] = 0;
                for (int64_t j = 0; j < p.Lk; j++) {
                    if (!visible[j])
                        continue;
                    double e = exp(s[j] - m);
                    const uint16_t *vj = vh + j * p.v_stride[1];
                    sum += e;
                    for (int64_t d = 0; d < p.D; d++)
                        acc[d] += e * (double)table[vj[d]];
                }
                for (int64_t d = 0; d < p.D; d++)
                    oi[d] = round_out(acc[d] / sum, p.dtype);
                if (lse_i)
                    *lse_i = (float)(m + log(sum));
            }
        }
out:
    free(visible);
    free(s);
    free(acc);
    free(qrow);
    free(table);
    return st;
}
