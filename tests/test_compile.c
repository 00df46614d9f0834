/* test_compile.c: see test_compile.h. */
#include "test_compile.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "nvrtc_compile.h"

dm_ctx *dm_test_offline_ctx(void)
{
    dm_ctx *ctx = NULL;
    ck_assert_int_eq(dm_ctx_create(&ctx, DM_NO_DEVICE), DM_OK);
    dm_ctx_set_verbosity(ctx, 0);
    return ctx;
}

void dm_test_compile_ok(dm_ctx *ctx, const dm_variant *v)
{
    char text[DM_VARIANT_TEXT_MAX], err[1024];
    dm_kernel_src k;
    void *cubin = NULL;
    size_t bytes = 0;
    dm_variant_format(v, text, sizeof text);
    ck_assert_msg(dm_gen_emit(v, &k, err, sizeof err) == DM_OK, "%s: %s", text, err);
    dm_status st = dm_nvrtc_compile(ctx, "test", text, k.source, v->arch, &cubin, &bytes, NULL);
    ck_assert_msg(st == DM_OK, "%s: %s", text, dm_errmsg(ctx));
    ck_assert_uint_gt(bytes, 4);
    ck_assert_int_eq(memcmp(cubin, "\177ELF", 4), 0);
    free(cubin);
    dm_kernel_src_free(&k);
}

char *dm_test_emit_ok(const dm_variant *v, dm_kernel_src *k_out)
{
    dm_kernel_src k;
    char err[1024];
    ck_assert_msg(dm_gen_emit(v, &k, err, sizeof err) == DM_OK, "emit failed: %s", err);
    if (k_out)
        *k_out = k;
    return k.source;
}
