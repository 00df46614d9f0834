/* tensor_check.h: fwd_check.c's per-tensor rules, shared with the window-mask helper so that
 * every entry point words and enforces them alike. Each writes its message naming call and
 * tensor; none reads memory behind a pointer. */
#ifndef DM_TENSOR_CHECK_H
#define DM_TENSOR_CHECK_H

#include <stdbool.h>

#include "ctx.h"
#include "dmattn.h"

/* An input read by rows of keys: strides >= 0, the last one 1, element-aligned, extent in
 * range. */
dm_status dm_check_input_keys(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t);

/* An output: strides >= 0, element-aligned, extent in range, no two elements at one address. */
dm_status dm_check_output_elems(dm_ctx *ctx, const char *call, const char *name,
                                const dm_tensor *t);

/* Absent (data NULL, rank 0) or present with the given rank; anything between is an error. */
dm_status dm_check_optional(dm_ctx *ctx, const char *call, const char *name, const dm_tensor *t,
                            int rank, const char *dims, bool *present);

#endif
