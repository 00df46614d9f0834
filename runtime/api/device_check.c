/* device_check.c: dm_check_device_readable (device_check.h), the one argument rule that asks the
 * driver. It lives apart from the descriptor checks (tensor_check.c, fwd_varlen_check.c) because
 * those must run where no driver or device is (the CPU reference runs dm_fwd_varlen_check on host
 * buffers, the validation tests on fake addresses); the entry point calls this after them, on its
 * device, before anything is launched. */
#include <stdint.h>

#include "device_check.h"

#define EXPECTED "expected device memory (or managed, or mapped page-locked host memory)"

dm_status dm_check_device_readable(dm_ctx *ctx, const char *call, const char *name,
                                   const dm_tensor *t)
{
    CUpointer_attribute attrs[3] = {CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                                    CU_POINTER_ATTRIBUTE_DEVICE_POINTER,
                                    CU_POINTER_ATTRIBUTE_IS_MANAGED};
    unsigned type = 0;
    CUdeviceptr dev = 0;
    uint32_t managed = 0;
    void *data[3] = {&type, &dev, &managed};
    CUdeviceptr ptr = (CUdeviceptr)(uintptr_t)t->data;
    char buf[160];
    dm_status st;

    if (!t->data)
        return DM_OK;
    /* The device pointer is the one kernels in the current context would use. */
    if ((st = dm_ctx_enter(ctx, call)) != DM_OK)
        return st;
    CUresult r = ctx->drv->PointerGetAttributes(3, attrs, data, ptr);
    dm_ctx_leave(ctx);
    if (r != CUDA_SUCCESS) {
        /* An unknown address is not an error of this query (attributes come back zero), so this
         * is the driver failing, not the caller: refusing would fail valid calls on a driver
         * hiccup. The launch itself goes on and reports any real trouble. */
        if (!ctx->pointer_query_warned) {
            ctx->pointer_query_warned = true;
            dm_warn(ctx,
                    "%s: cannot tell what memory %s.data = %p is (cuPointerGetAttributes: %s): "
                    "not checked",
                    call, name, t->data, dm_driver_error_text(ctx->drv, r, buf, sizeof buf));
        }
        return DM_OK;
    }
    /* Managed memory may report either type, wherever its pages are: the device reads it. */
    if (managed || type == CU_MEMORYTYPE_DEVICE)
        return DM_OK;
    if (type == CU_MEMORYTYPE_HOST && dev == ptr) /* pinned and mapped: read over the bus */
        return DM_OK;
    if (type == CU_MEMORYTYPE_HOST)
        return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                            "%s: %s.data = %p is page-locked host memory the device reaches at "
                            "another address (%p): pass that device address; %s",
                            call, name, t->data, (void *)(uintptr_t)dev, EXPECTED);
    return dm_set_error(ctx, DM_ERR_INVALID_ARG,
                        "%s: %s.data = %p is not memory CUDA allocated, registered or mapped "
                        "(host memory from malloc, a CPU tensor?): %s",
                        call, name, t->data, EXPECTED);
}
