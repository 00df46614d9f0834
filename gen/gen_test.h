/* gen_test.h: hooks into gen/ for the tests only; nothing in the library or the tools calls
 * them. */
#ifndef DM_GEN_TEST_H
#define DM_GEN_TEST_H

#include "gen.h"

/* dm_gen_emit with a Lua allocator that fails every allocation after the first max_allocs
 * (max_allocs < 0: never). *allocs (may be NULL) receives how many allocations were asked for.
 * A failure anywhere, state creation included, gives DM_ERR_NOMEM and no abort. */
dm_status dm_gen_emit_alloc_limit(const dm_variant *v, long max_allocs, long *allocs,
                                  dm_kernel_src *out, char *err, size_t err_bytes);

#endif
