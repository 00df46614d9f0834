/* scratch.h: a call's temporary device memory, stream-ordered: the context's allocator
 * (dm_ctx_set_allocator) or cuMemAllocAsync / cuMemFreeAsync. The caller has entered ctx. */
#ifndef DM_SCRATCH_H
#define DM_SCRATCH_H

#include <stddef.h>

#include "ctx.h"

/* bytes (> 0) on stream into *out; on failure *out = 0 and the message says "CALL: ... of BYTES
 * bytes for WHAT": DM_ERR_NOMEM from the context's allocator, DM_ERR_CUDA from the driver's. */
dm_status dm_scratch_alloc(dm_ctx *ctx, const char *call, const char *what, size_t bytes,
                           CUstream stream, CUdeviceptr *out);

/* Gives p (from dm_scratch_alloc, same bytes; 0 is a no-op) back in stream order. Returns st,
 * or, when st is DM_OK and the driver's free fails, that failure (the first failure is kept). */
dm_status dm_scratch_free(dm_ctx *ctx, dm_status st, const char *call, const char *what,
                          CUdeviceptr p, size_t bytes, CUstream stream);

#endif
