/* seqlens_check.h: the cu_seqlens / max_seqlen rules of a varlen call (SPEC §5), for every entry
 * point that takes them (dm_window_mask_varlen; dm_fwd_varlen words its own the same way), so they
 * are enforced and worded alike. Descriptors only: cu_seqlens live on the device and what they
 * hold is never read (the kernels clamp it). */
#ifndef DM_SEQLENS_CHECK_H
#define DM_SEQLENS_CHECK_H

#include <stdint.h>

#include "ctx.h"
#include "dmattn.h"

/* cu_seqlens_q and cu_seqlens_k: present, rank 1, int32, contiguous, of one length B + 1 >= 2.
 * Sets *B. */
dm_status dm_check_cu_seqlens(dm_ctx *ctx, const char *call, const dm_tensor *cu_q,
                              const dm_tensor *cu_k, int64_t *B);

/* max_seqlen (named `name`) against its total (named `total_name`): 0 <= max <= total, and at
 * least ceil(total / B), the least the longest of B sequences sharing total tokens holds. */
dm_status dm_check_max_seqlen(dm_ctx *ctx, const char *call, const char *name, int64_t max,
                              const char *total_name, int64_t total, int64_t B);

#endif
