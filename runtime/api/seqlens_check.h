/* seqlens_check.h: the rules of a varlen call (SPEC §5) that every entry point taking one shares
 * (dm_fwd_varlen, dm_window_mask_varlen), so they are enforced and worded alike: cu_seqlens and
 * max_seqlen, and a mask or bias layout told by its rank. Descriptors only: cu_seqlens live on the
 * device and what they hold is never read (the kernels clamp it). */
#ifndef DM_SEQLENS_CHECK_H
#define DM_SEQLENS_CHECK_H

#include <stdbool.h>
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

/* The two layouts of a varlen mask or bias, as messages name them. Rank decides the layout, so
 * total_q == total_k is never ambiguous. */
#define DM_VARLEN_LAYOUTS \
    "rank 3 (total_q, Hm, max_seqlen_k) query-based or rank 2 (total_k, Hm) key-based"

/* A mask or bias (named `name`): absent, or present with rank 3 (query-based) or 2 (key-based);
 * any other rank is reported with the shape the caller passed and both layouts. */
dm_status dm_check_varlen_layout_rank(dm_ctx *ctx, const char *call, const char *name,
                                      const dm_tensor *t, bool *present);

/* Its first dimension, by the layout its rank picks: total_q (rank 3) or total_k (rank 2). The
 * message spells both layouts out: a caller with the wrong one most often meant the other. */
dm_status dm_check_varlen_layout_rows(dm_ctx *ctx, const char *call, const char *name,
                                      const dm_tensor *t, int64_t total_q, int64_t total_k);

#endif
