/* test_compile.h: what the codegen/NVRTC tests share: an offline context, and "emit this variant
 * and compile it; it must give an ELF cubin" (a failure names the variant and says why). */
#ifndef DM_TEST_COMPILE_H
#define DM_TEST_COMPILE_H

#include "dmattn.h"
#include "gen.h"

dm_ctx *dm_test_offline_ctx(void); /* verbosity 0; destroy with dm_ctx_destroy */
void dm_test_compile_ok(dm_ctx *ctx, const dm_variant *v);

#endif
