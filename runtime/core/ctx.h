/* ctx.h: the dm_ctx behind the opaque handle, and the error and warning helpers every runtime
 * file uses. The function that detects an error writes the message; callers pass the status up. */
#ifndef DM_CTX_H
#define DM_CTX_H

#include <stdbool.h>
#include <stddef.h>

#include "dmattn.h"
#include "driver.h"
#include "gen.h"

#define DM_ERRMSG_BYTES 4096
#define DM_PATH_BYTES 4096

typedef struct dm_module_entry dm_module_entry; /* kernels.c: one loaded variant */

/* The loaded kernels, by variant (kernels.c): open addressing over a hash of the variant's fields,
 * at most half full. Entries are allocated one by one, so a dm_kernel pointer handed out stays
 * valid while the table grows. No lock: a dm_ctx is used by one thread at a time (dmattn.h). */
typedef struct dm_module_table {
    dm_module_entry **slots; /* NULL = free */
    size_t n_slots;          /* 0 or a power of two */
    size_t count;
} dm_module_table;

struct dm_ctx {
    int device; /* DM_NO_DEVICE for an offline context */
    const dm_driver *drv;   /* NULL when offline or when the driver failed */
    CUdevice cu_device;
    CUcontext cu_ctx;       /* the context kernels are loaded into and launched in */
    bool retained_primary;  /* we hold a primary-context reference to release */
    int enter_depth;        /* dm_ctx_enter calls not yet left */
    bool pushed;            /* the outermost enter pushed cu_ctx (it was not current) */
    int smem_optin_bytes;   /* the device's opt-in shared memory per block */
    int sm_count;           /* multiprocessors: how many blocks fill the device (split-KV) */

    dm_arch arch;           /* target for compiles: override, else the device's */
    bool arch_known;

    char cache_dir[DM_PATH_BYTES]; /* "" = memory only */
    bool cache_dir_ready;          /* prepare_dir done (or failed and warned) */
    bool cache_write_warned;       /* a write failure is reported once per context */
    bool pointer_query_warned;     /* so is a failed pointer query (device_check.c) */
    int verbosity;
    dm_alloc_fn scratch_alloc; /* dm_ctx_set_allocator; NULL: cuMemAllocAsync */
    dm_free_fn scratch_free;
    void *scratch_user;

    dm_module_table modules;

    char errmsg[DM_ERRMSG_BYTES];
};

/* Writes the message (printf-style) and returns st, so `return dm_set_error(ctx, ...)` reads
 * well. ctx may be NULL (then only the status comes back). */
dm_status dm_set_error(dm_ctx *ctx, dm_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void dm_clear_error(dm_ctx *ctx);

/* Warnings (verbosity >= 1) and progress notes (verbosity >= 2) go to stderr, "dmattn: ...". */
void dm_warn(const dm_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void dm_note(const dm_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The device's compute capability and the arch dmattn compiles for it (dm_arch_from_cc): 0 when
 * dmattn supports the device. */
int dm_device_arch(const dm_driver *d, CUdevice dev, int *major, int *minor, dm_arch *arch);

/* Makes ctx->cu_ctx current for the calling thread around driver calls, and leave restores what
 * was current before; pairs nest. When cu_ctx is current already, neither pushes nor pops. */
dm_status dm_ctx_enter(dm_ctx *ctx, const char *call);
void dm_ctx_leave(dm_ctx *ctx);

#endif
