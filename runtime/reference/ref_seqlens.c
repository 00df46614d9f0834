/* ref_seqlens.c: cu_seqlens as the CPU references read them (host memory), for dm_ref_fwd_varlen
 * and dm_ref_window_mask_varlen alike. The entries the host can read: within [0, total] and
 * non-decreasing. Past that the GPU's behaviour is not defined (dmattn.h), so there is nothing to
 * be a reference of. */
#include "reference.h"

dm_status dm_ref_check_cu_seqlens(dm_ctx *ctx, const char *call, const char *name,
                                  const int32_t *cu, int64_t B, int64_t total)
{
    if (!cu)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG, "%s: %s is NULL", call, name);
    for (int64_t b = 0; b <= B; b++) {
        if (cu[b] < 0 || cu[b] > total)
            return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                                "%s: %s[%lld] = %d: expected within [0, %lld]", call, name,
                                (long long)b, (int)cu[b], (long long)total);
        if (b > 0 && cu[b] < cu[b - 1])
            return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                                "%s: %s[%lld] = %d: expected at least %s[%lld] = %d", call, name,
                                (long long)b, (int)cu[b], name, (long long)(b - 1),
                                (int)cu[b - 1]);
    }
    return DM_OK;
}
