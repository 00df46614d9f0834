/* combine_ref.h: the split-KV combine in float64 on the host, for the tests: what
 * templates/attn_combine.lua computes, over the same partials' layout (runtime/api/fwd_combine.h).
 * Test code only: the library's CPU references (runtime/reference/) need no combine, since they
 * never split. */
#ifndef DM_COMBINE_REF_H
#define DM_COMBINE_REF_H

#include <stdint.h>

/* For each (token t < rows, head h < H): lse = log sum_s exp(lse_s), o = sum_s exp(lse_s - lse)
 * o_s, over split s's o_s at o_part + ((s * part_stride) + t * H + h) * D and lse_s at
 * lse_part + s * part_stride + t * H + h. A split with lse_s = -inf adds nothing (its o_s is not
 * read); a (token, head) with every split empty gets o = 0 and lse = +inf. o is (rows, H, D) and
 * lse (rows, H), packed. */
void combine_ref(const float *o_part, const float *lse_part, int n_splits, int64_t part_stride,
                 int rows, int H, int D, double *o, double *lse);

#endif
