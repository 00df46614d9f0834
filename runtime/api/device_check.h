/* device_check.h: the argument rules that need the driver, not just the descriptor: whether
 * memory the kernels read (cu_seqlens) is memory the device can address. */
#ifndef DM_DEVICE_CHECK_H
#define DM_DEVICE_CHECK_H

#include "ctx.h"
#include "dmattn.h"

/* t's data is device memory, managed memory, or page-locked host memory that the device reads at
 * the same address; anything else (pageable host memory from malloc or a CPU tensor, host memory
 * registered with a different device address) is DM_ERR_INVALID_ARG naming `name`. A tensor with
 * data NULL (no elements) passes: nothing is read. A query the driver fails is not held against
 * the caller: the check passes and the failure is warned about, once per context. Enters ctx's
 * CUDA context itself (the query answers for the current one): DM_ERR_NO_DEVICE offline. */
dm_status dm_check_device_readable(dm_ctx *ctx, const char *call, const char *name,
                                   const dm_tensor *t);

#endif
