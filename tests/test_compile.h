/* test_compile.h: what the codegen/NVRTC tests share: an offline context, and "emit this variant
 * and compile it; it must give an ELF cubin" (a failure names the variant and says why). */
#ifndef DM_TEST_COMPILE_H
#define DM_TEST_COMPILE_H

#include "dmattn.h"
#include "gen.h"

dm_ctx *dm_test_offline_ctx(void); /* verbosity 0; destroy with dm_ctx_destroy */
void dm_test_compile_ok(dm_ctx *ctx, const dm_variant *v);
/* v's source (the caller frees it, or *k_out when given, with dm_kernel_src_free); a failed
 * emit fails the test with the template's message. */
char *dm_test_emit_ok(const dm_variant *v, dm_kernel_src *k_out);

#endif
