/* dm_limits.h: the bounds of a variant's fields, stated once. The key grammar (variant.c), argument
 * validation (api/fwd_check.c, api/window_mask_check.c) and the templates (exported to Lua as
 * require("limits") by emit.c) all read them from here. */
#ifndef DM_LIMITS_H
#define DM_LIMITS_H

/* head_dim: q, k, v and o rows move 16 bytes (8 fp16/bf16 elements) at a time, so D is a
 * multiple of 8; 256 is the largest the tuning table has tiles for. */
#define DM_HEAD_DIM_MIN 8
#define DM_HEAD_DIM_MAX 256
#define DM_HEAD_DIM_STEP 8

/* The top-k window of a variant key (w<W>): 2^20 keys, 7 decimal digits. */
#define DM_WINDOW_MAX (1 << 20)

/* X(name, value): the list emit.c hands the templates as require("limits").name. */
#define DM_LIMITS(X) \
    X(head_dim_min, DM_HEAD_DIM_MIN) \
    X(head_dim_max, DM_HEAD_DIM_MAX) \
    X(head_dim_step, DM_HEAD_DIM_STEP) \
    X(window_max, DM_WINDOW_MAX)

#endif
