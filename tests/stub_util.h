/* stub_util.h: pointing the library at the stub driver (stub_libcuda.c) from a test, as
 * test_launch and test_combine_launch do. Header only. */
#ifndef DM_STUB_UTIL_H
#define DM_STUB_UTIL_H

#include <dlfcn.h>
#include <stdlib.h>

#include "dmattn.h"
#include "harness.h"
#include "stub_libcuda.h"
#include "test_fs.h"

/* Before the library's first dlopen: DMATTN_LIBCUDA = path, a device of compute capability cc
 * ("80"), no attribute failing; opens the stub itself for its counters (*stats) and makes a
 * fresh cache directory tagged `tag` in cache_dir (64 bytes). Each test runs in a process of its
 * own, so the driver opens afresh. */
static inline void dm_test_use_stub(const char *path, const char *cc, const char *tag,
                                    void **stub, dmstub_stats_t **stats, char *cache_dir)
{
    setenv("DMATTN_LIBCUDA", path, 1);
    setenv("DMSTUB_CC", cc, 1);
    unsetenv("DMSTUB_FAIL_ATTRIBUTE");
    *stub = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(*stub != NULL, "%s", dlerror());
    *stats = dlsym(*stub, "dmstub_stats");
    ck_assert_ptr_nonnull(*stats);
    dm_test_temp_dir(cache_dir, tag);
}

/* A context on the stub's device 0, quiet, its disk cache in cache_dir (dm_test_use_stub's). */
static inline dm_ctx *dm_test_stub_ctx(const char *cache_dir)
{
    dm_ctx *ctx = NULL;
    ck_assert_int_eq(dm_ctx_create(&ctx, 0), DM_OK);
    dm_ctx_set_verbosity(ctx, 0);
    dm_ctx_set_cache_dir(ctx, cache_dir);
    return ctx;
}

/* The stub's pointer answers (stub_libcuda.h, dmstub_memory): all zero at the start, every
 * address device memory. */
static inline dmstub_memory_t *dm_test_stub_memory(void *stub)
{
    dmstub_memory_t *m = dlsym(stub, "dmstub_memory");
    ck_assert_ptr_nonnull(m);
    return m;
}

#endif
