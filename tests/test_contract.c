/* test_contract.c: what C and the Lua templates promise each other (gen/emit.c): the kernel
 * parameter structs checked field by field against the library's layout, errors raised as
 * {code, detail} and told apart by code, a missing family told from a missing helper module,
 * and every Lua step protected (an allocation failure anywhere is DM_ERR_NOMEM, never an abort).
 * Crafted templates go through DMATTN_TEMPLATE_DIR in a temp dir. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"
#include "gen_test.h"
#include "harness.h"
#include "kernel_params.h"
#include "nvrtc_compile.h"
#include "test_compile.h"
#include "test_fs.h"

static dm_variant fwd_variant(dm_arch arch)
{
    dm_variant v = {.dir = DM_DIR_FWD, .head_dim = 64, .dtype = DM_F16, .mask = DM_LAYOUT_K,
                    .bias = DM_LAYOUT_Q, .arch = arch};
    return v;
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* A temp dir holding the source tree's templates, for a test to change. */
static void copy_templates(char *dir)
{
    const char *src_dir = getenv("DMATTN_SOURCE_DIR");
    char cmd[2048];
    ck_assert_ptr_nonnull(src_dir);
    dm_test_temp_dir(dir, "tpl");
    snprintf(cmd, sizeof cmd, "cp %s/templates/*.lua %s/", src_dir, dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Emits v with the templates of dir; err gets the message. */
static dm_status emit_in(const char *dir, const dm_variant *v, char *err, size_t err_bytes)
{
    dm_kernel_src k;
    setenv("DMATTN_TEMPLATE_DIR", dir, 1);
    dm_status st = dm_gen_emit(v, &k, err, err_bytes);
    unsetenv("DMATTN_TEMPLATE_DIR");
    dm_kernel_src_free(&k);
    return st;
}

/* ---- parameter structs ---------------------------------------------------------------------- */

/* The line kernel_params.lua writes for a field: its CUDA type and the host's offset. */
static void expect_field(const char *src, const char *st, const char *name, const char *type,
                         int count, size_t offset)
{
    char want[160];
    if (count == 1)
        snprintf(want, sizeof want, "host_layout::at<%s>(&%s::%s, %zu)", type, st, name, offset);
    else
        snprintf(want, sizeof want, "host_layout::at<%s[%d]>(&%s::%s, %zu)", type, count, st,
                 name, offset);
    ck_assert_msg(strstr(src, want) != NULL, "no '%s' in the source", want);
}

START_TEST(every_field_offset_in_the_emitted_source_is_the_hosts_offsetof)
{
    dm_variant fwd = fwd_variant(DM_SM80);
    dm_variant wmask = {.family = DM_FAMILY_WMASK, .window = 64, .dtype = DM_BF16,
                        .mask = DM_LAYOUT_K, .arch = DM_SM90A};
    dm_kernel_src k;
    char err[1024], want[128];

    ck_assert_msg(dm_gen_emit(&fwd, &k, err, sizeof err) == DM_OK, "%s", err);
#define FWD_(type, name, count, doc) \
    expect_field(k.source, "FwdParams", #name, DM_PARAM_CUDA_##type, count, \
                 offsetof(dm_fwd_params, name));
    DM_FWD_PARAMS(FWD_)
#undef FWD_
    snprintf(want, sizeof want, "sizeof(FwdParams) == %zu", sizeof(dm_fwd_params));
    ck_assert_ptr_nonnull(strstr(k.source, want));
    dm_kernel_src_free(&k);

    ck_assert_msg(dm_gen_emit(&wmask, &k, err, sizeof err) == DM_OK, "%s", err);
#define WMASK_(type, name, count, doc) \
    expect_field(k.source, "WmaskParams", #name, DM_PARAM_CUDA_##type, count, \
                 offsetof(dm_wmask_params, name));
    DM_WMASK_PARAMS(WMASK_)
#undef WMASK_
    snprintf(want, sizeof want, "sizeof(WmaskParams) == %zu", sizeof(dm_wmask_params));
    ck_assert_ptr_nonnull(strstr(k.source, want));
    dm_kernel_src_free(&k);
}
END_TEST

/* A forward template that declares FwdParams from the library's field table after `edit` (Lua
 * statements on `fields`, a copy of the table's list), checks it against the library's own
 * table, then defines an empty kernel. */
static void write_struct_template(const char *dir, const char *edit)
{
    char text[4096];
    snprintf(text, sizeof text,
             "local common = require('cuda_common')\n"
             "local kernel_params = require('kernel_params')\n"
             "local M = {}\n"
             "function M.emit(v)\n"
             "  local real = require('host_layout').FwdParams\n"
             "  local fields, at = {}, {}\n"
             "  for i, f in ipairs(real.fields) do\n"
             "    fields[i] = { name = f.name, type = f.type, count = f.count,\n"
             "                  offset = f.offset, doc = f.doc }\n"
             "    at[f.name] = i\n"
             "  end\n"
             "  %s\n"
             "  local buf = common.buffer()\n"
             "  common.header(buf, v, 'attn_fwd.lua', 'a struct test')\n"
             "  buf.add(kernel_params.declaration('FwdParams',\n"
             "    { c_name = real.c_name, size = real.size, fields = fields }))\n"
             "  buf.add(kernel_params.checks('FwdParams'))\n"
             "  local entry = common.entry_name(v.key)\n"
             "  buf.add('extern \"C\" __global__ void ' .. entry .. '(const FwdParams p) {}')\n"
             "  return { source = buf.text(), entry = entry, threads = 32, block_m = 1,\n"
             "           block_n = 32, smem_bytes = 0 }\n"
             "end\n"
             "return M\n",
             edit);
    write_file(dir, "attn_fwd.lua", text);
}

/* Emits the struct template with `edit` and compiles it with NVRTC; the status, and the
 * context's message in msg. */
static dm_status compile_struct(const char *edit, char *msg, size_t msg_bytes)
{
    char dir[64], err[1024];
    dm_variant v = fwd_variant(DM_SM90A);
    dm_kernel_src k;
    void *cubin = NULL;
    size_t bytes = 0;
    dm_ctx *ctx = dm_test_offline_ctx();

    copy_templates(dir);
    write_struct_template(dir, edit);
    setenv("DMATTN_TEMPLATE_DIR", dir, 1);
    ck_assert_msg(dm_gen_emit(&v, &k, err, sizeof err) == DM_OK, "%s", err);
    unsetenv("DMATTN_TEMPLATE_DIR");
    dm_status st = dm_nvrtc_compile(ctx, "test", "struct test", k.source, v.arch, &cubin,
                                    &bytes, NULL);
    snprintf(msg, msg_bytes, "%s", dm_errmsg(ctx));
    free(cubin);
    dm_kernel_src_free(&k);
    dm_ctx_destroy(ctx);
    dm_test_remove_dir(dir);
    return st;
}

START_TEST(the_library_struct_compiles)
{
    char msg[2048];
    dm_status st = compile_struct("", msg, sizeof msg); /* the control for the tests below */
    ck_assert_msg(st == DM_OK, "%s", msg);
}
END_TEST

START_TEST(two_swapped_int_fields_fail_to_compile_naming_the_field)
{
    char msg[2048];
    /* H and Hkv declared in each other's place: the sizes still agree, the offsets do not. */
    dm_status st = compile_struct("fields[at.H], fields[at.Hkv] = fields[at.Hkv], fields[at.H]",
                                  msg, sizeof msg);
    ck_assert_int_eq(st, DM_ERR_COMPILE);
    ck_assert_msg(strstr(msg, "static assertion failed") != NULL, "%s", msg);
    ck_assert_msg(strstr(msg, "FwdParams.Hkv: int at byte 248") != NULL ||
                      strstr(msg, "FwdParams.H: int at byte 244") != NULL,
                  "%s", msg);
}
END_TEST

START_TEST(a_field_of_another_type_fails_to_compile_naming_the_field)
{
    char msg[2048];
    /* float scale declared int: same size, same offset, another type. */
    dm_status st = compile_struct("fields[at.scale].type = 'int'", msg, sizeof msg);
    ck_assert_int_eq(st, DM_ERR_COMPILE);
    ck_assert_msg(strstr(msg, "FwdParams.scale: float at byte 288") != NULL, "%s", msg);
}
END_TEST

START_TEST(a_field_of_another_count_fails_to_compile_naming_the_field)
{
    char msg[2048];
    /* lse_stride declared [2]: it and every field after it are wrong. */
    dm_status st = compile_struct("fields[at.lse_stride].count = 2", msg, sizeof msg);
    ck_assert_int_eq(st, DM_ERR_COMPILE);
    ck_assert_msg(strstr(msg, "FwdParams.lse_stride: i64[3] at byte 200") != NULL, "%s", msg);
}
END_TEST

/* ---- errors by code ------------------------------------------------------------------------- */

/* Emits the forward variant with attn_fwd.lua replaced by `text`. */
static dm_status emit_with_fwd_template(const char *text, char *err, size_t err_bytes)
{
    char dir[64];
    dm_variant v = fwd_variant(DM_SM80);
    copy_templates(dir);
    write_file(dir, "attn_fwd.lua", text);
    dm_status st = emit_in(dir, &v, err, err_bytes);
    dm_test_remove_dir(dir);
    return st;
}

START_TEST(an_unsupported_error_table_is_unsupported_with_its_detail)
{
    char err[512];
    dm_status st = emit_with_fwd_template(
        "local errors = require('errors')\n"
        "return { emit = function(v) errors.unsupported('no kernel for this test') end }\n",
        err, sizeof err);
    ck_assert_int_eq(st, DM_ERR_UNSUPPORTED);
    ck_assert_str_eq(err, "variant 'fwd.d64.f16.mask-k.bias-q.w0.sm80': no kernel for this test");
}
END_TEST

START_TEST(a_string_saying_unsupported_is_a_template_error)
{
    /* Messages are not parsed: only a table's code makes an error "unsupported". */
    char err[512];
    dm_status st = emit_with_fwd_template(
        "return { emit = function(v) error('unsupported: a string', 0) end }\n", err, sizeof err);
    ck_assert_int_eq(st, DM_ERR_COMPILE);
    ck_assert_msg(strstr(err, "template error: unsupported: a string") != NULL, "%s", err);
}
END_TEST

START_TEST(an_unknown_error_code_is_a_template_error_naming_it)
{
    char err[512];
    dm_status st = emit_with_fwd_template(
        "return { emit = function(v) error({ code = 'later', detail = 'x' }, 0) end }\n", err,
        sizeof err);
    ck_assert_int_eq(st, DM_ERR_COMPILE);
    ck_assert_msg(strstr(err, "'later'") != NULL, "%s", err);
}
END_TEST

START_TEST(an_error_that_is_neither_string_nor_table_is_a_template_error)
{
    char err[512];
    dm_status st = emit_with_fwd_template("return { emit = function(v) error(true) end }\n", err,
                                          sizeof err);
    ck_assert_int_eq(st, DM_ERR_COMPILE);
    ck_assert_msg(strstr(err, "boolean") != NULL, "%s", err);
}
END_TEST

START_TEST(a_family_without_a_module_in_the_template_dir_is_unsupported)
{
    char dir[64], path[128], err[512];
    dm_variant v = fwd_variant(DM_SM80);
    copy_templates(dir);
    snprintf(path, sizeof path, "%s/attn_fwd.lua", dir);
    ck_assert_int_eq(remove(path), 0);
    dm_status st = emit_in(dir, &v, err, sizeof err);
    dm_test_remove_dir(dir);
    ck_assert_int_eq(st, DM_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err, "no template for family attn_fwd") != NULL, "%s", err);
}
END_TEST

START_TEST(the_backward_family_without_its_module_is_unsupported)
{
    char dir[64], path[128], err[512];
    dm_variant v = fwd_variant(DM_SM80);
    v.dir = DM_DIR_BWD;
    copy_templates(dir);
    snprintf(path, sizeof path, "%s/attn_bwd.lua", dir);
    ck_assert_int_eq(remove(path), 0);
    dm_status st = emit_in(dir, &v, err, sizeof err);
    dm_test_remove_dir(dir);
    ck_assert_int_eq(st, DM_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err, "no template for family attn_bwd") != NULL, "%s", err);
}
END_TEST

START_TEST(a_missing_helper_module_is_a_template_error_naming_it)
{
    char dir[64], path[128], err[1024];
    dm_variant v = fwd_variant(DM_SM80);
    copy_templates(dir);
    snprintf(path, sizeof path, "%s/attn_fwd_mask.lua", dir); /* attn_fwd.lua requires it */
    ck_assert_int_eq(remove(path), 0);
    dm_status st = emit_in(dir, &v, err, sizeof err);
    dm_test_remove_dir(dir);
    ck_assert_int_eq(st, DM_ERR_COMPILE);
    ck_assert_msg(strstr(err, "module 'attn_fwd_mask' not found") != NULL, "%s", err);
    ck_assert_msg(strstr(err, "no template for family") == NULL, "%s", err);
}
END_TEST

/* ---- every Lua step protected --------------------------------------------------------------- */

/* Emits v with allocation number n + 1 onwards failing (n = 0, step, 2 step, ... below the
 * unlimited run's count, then every n from there until the emit succeeds). Each failing run must
 * be DM_ERR_NOMEM, not an abort (that would kill this test), with nothing returned; the run that
 * succeeds must give the unlimited run's source. */
static dm_status emit_limited(const dm_variant *v, long n, dm_kernel_src *k, char *err,
                              size_t err_bytes)
{
    dm_status st = dm_gen_emit_alloc_limit(v, n, NULL, k, err, err_bytes);
    if (st != DM_OK) {
        ck_assert_msg(st == DM_ERR_NOMEM, "limit %ld: status %d: %s", n, st, err);
        ck_assert_ptr_null(k->source);
        ck_assert_msg(strstr(err, "memory") != NULL, "limit %ld: %s", n, err);
    }
    return st;
}

static void nomem_at_every_allocation(const dm_variant *v, long step)
{
    dm_kernel_src full, k;
    char err[1024];
    long total = 0, n;

    ck_assert_msg(dm_gen_emit_alloc_limit(v, -1, &total, &full, err, sizeof err) == DM_OK, "%s",
                  err);
    ck_assert_int_gt(total, 0);
    for (n = 0; n + step < total; n += step)
        ck_assert_int_eq(emit_limited(v, n, &k, err, sizeof err), DM_ERR_NOMEM);
    for (;; n++) {
        ck_assert_msg(n <= total, "limit %ld: still failing past the %ld allocations a run takes",
                      n, total);
        if (emit_limited(v, n, &k, err, sizeof err) == DM_OK)
            break;
    }
    ck_assert_str_eq(k.source, full.source);
    dm_kernel_src_free(&k);
    dm_kernel_src_free(&full);
}

START_TEST(allocation_failures_in_a_small_template_are_nomem_at_every_point)
{
    char dir[64];
    dm_variant v = fwd_variant(DM_SM80);
    dm_test_temp_dir(dir, "tpl");
    write_file(dir, "attn_fwd.lua",
               "local errors = require('errors')\n"
               "return { emit = function(v)\n"
               "  local t = {}\n"
               "  for i = 1, 64 do t[i] = string.rep(v.key, i % 5) end\n"
               "  return { source = table.concat(t, '\\n'), entry = 'k', threads = 32,\n"
               "           block_m = 1, block_n = 32, smem_bytes = 0 }\n"
               "end }\n");
    write_file(dir, "errors.lua", "return {}\n");
    setenv("DMATTN_TEMPLATE_DIR", dir, 1);
    nomem_at_every_allocation(&v, 1);
    unsetenv("DMATTN_TEMPLATE_DIR");
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(allocation_failures_in_the_real_templates_are_nomem_at_every_point)
{
    /* A run takes a few thousand allocations: every one of them, the state's setup included
     * (where install_templates once ran outside the protected call). */
    dm_variant v = fwd_variant(DM_SM90A);
    dm_variant w = {.family = DM_FAMILY_WMASK, .window = 64, .dtype = DM_BF16,
                    .mask = DM_LAYOUT_K, .arch = DM_SM80};
    nomem_at_every_allocation(&v, 1);
    nomem_at_every_allocation(&w, 1);
}
END_TEST

#define TESTS(X) \
    X(every_field_offset_in_the_emitted_source_is_the_hosts_offsetof) \
    X(the_library_struct_compiles) \
    X(two_swapped_int_fields_fail_to_compile_naming_the_field) \
    X(a_field_of_another_type_fails_to_compile_naming_the_field) \
    X(a_field_of_another_count_fails_to_compile_naming_the_field) \
    X(an_unsupported_error_table_is_unsupported_with_its_detail) \
    X(a_string_saying_unsupported_is_a_template_error) \
    X(an_unknown_error_code_is_a_template_error_naming_it) \
    X(an_error_that_is_neither_string_nor_table_is_a_template_error) \
    X(a_family_without_a_module_in_the_template_dir_is_unsupported) \
    X(the_backward_family_without_its_module_is_unsupported) \
    X(a_missing_helper_module_is_a_template_error_naming_it) \
    X(allocation_failures_in_a_small_template_are_nomem_at_every_point) \
    X(allocation_failures_in_the_real_templates_are_nomem_at_every_point)

DM_TEST_MAIN("contract", TESTS)
