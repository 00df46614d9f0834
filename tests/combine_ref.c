/* combine_ref.c: see combine_ref.h. */
#include "combine_ref.h"

#include <math.h>
#include <stddef.h>

void combine_ref(const float *o_part, const float *lse_part, int n_splits, int64_t part_stride,
                 int rows, int H, int D, double *o, double *lse)
{
    for (int64_t pair = 0; pair < (int64_t)rows * H; pair++) {
        double *out = o + pair * D;
        double m = -INFINITY, sum = 0;
        for (int s = 0; s < n_splits; s++)
            m = fmax(m, lse_part[s * part_stride + pair]);
        for (int d = 0; d < D; d++)
            out[d] = 0;
        if (m == -INFINITY) {
            lse[pair] = INFINITY;
            continue;
        }
        for (int s = 0; s < n_splits; s++)
            sum += exp(lse_part[s * part_stride + pair] - m);
        lse[pair] = m + log(sum);
        for (int s = 0; s < n_splits; s++) {
            const double x = lse_part[s * part_stride + pair];
            if (x == -INFINITY)
                continue;
            const double w = exp(x - lse[pair]);
            const float *part = o_part + (s * part_stride + pair) * D;
            for (int d = 0; d < D; d++)
                out[d] += w * part[d];
        }
    }
}
