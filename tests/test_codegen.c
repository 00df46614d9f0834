/* test_codegen.c: the Lua templates through dm_gen_emit: deterministic text, the header lines,
 * features that are off absent from the text, unsupported variants named, template overrides. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gen.h"
#include "harness.h"
#include "test_fs.h"

static dm_variant make(int d, dm_dtype t, dm_layout mask, dm_layout bias, bool causal, bool softcap,
                       dm_arch arch)
{
    dm_variant v = {.dir = DM_DIR_FWD, .head_dim = d, .dtype = t, .mask = mask, .bias = bias,
                    .causal = causal, .softcap = softcap, .arch = arch};
    return v;
}

static char *emit_ok(const dm_variant *v)
{
    dm_kernel_src k;
    char err[1024];
    dm_status st = dm_gen_emit(v, &k, err, sizeof err);
    ck_assert_msg(st == DM_OK, "emit failed: %s", err);
    return k.source; /* the caller frees */
}

START_TEST(emit_is_byte_identical_in_fresh_states_for_every_axis)
{
    static const int dims[] = {8, 64, 96, 128, 200, 256};
    int n = 0;
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
        for (int t = 0; t < 2; t++)
            for (int m = 0; m < 3; m++)
                for (int b = 0; b < 3; b++)
                    for (int f = 0; f < 4; f++) {
                        dm_variant v = make(dims[di], t ? DM_BF16 : DM_F16, (dm_layout)m,
                                            (dm_layout)b, f & 1, f & 2, (dm_arch)(n % DM_ARCH_COUNT));
                        char *a = emit_ok(&v), *c = emit_ok(&v);
                        ck_assert_str_eq(a, c);
                        free(a);
                        free(c);
                        n++;
                    }
    ck_assert_int_eq(n, 6 * 2 * 3 * 3 * 4);
}
END_TEST

START_TEST(source_opens_with_the_variant_key_and_the_template_line)
{
    dm_variant v = make(128, DM_BF16, DM_LAYOUT_K, DM_LAYOUT_NONE, true, false, DM_SM90);
    char *src = emit_ok(&v);
    const char *want = "// fwd.d128.bf16.mask-k.bias-none.w0.causal.sm90\n// dmattn 0.1.0, "
                       "attn_fwd.lua: tile ";
    ck_assert_msg(strncmp(src, want, strlen(want)) == 0, "source starts: %.120s", src);
    ck_assert_ptr_null(strstr(src, "#include"));
    free(src);
}
END_TEST

START_TEST(features_that_are_off_are_absent_from_the_text)
{
    dm_variant plain = make(64, DM_F16, DM_LAYOUT_NONE, DM_LAYOUT_NONE, false, false, DM_SM80);
    char *src = emit_ok(&plain);
    ck_assert_ptr_null(strstr(src, "next_tile("));
    ck_assert_ptr_null(strstr(src, "bias_at("));
    ck_assert_ptr_null(strstr(src, "p.softcap_k"));  /* the softcap stage */
    ck_assert_ptr_null(strstr(src, "j > i + diag"));
    free(src);

    dm_variant all = make(64, DM_F16, DM_LAYOUT_Q, DM_LAYOUT_K, true, true, DM_SM80);
    src = emit_ok(&all);
    ck_assert_ptr_nonnull(strstr(src, "next_tile("));
    ck_assert_ptr_nonnull(strstr(src, "bias_at("));
    ck_assert_ptr_nonnull(strstr(src, "p.softcap_k"));
    ck_assert_ptr_nonnull(strstr(src, "j > i + diag"));
    free(src);
}
END_TEST

START_TEST(entry_point_is_named_after_the_variant)
{
    dm_variant v = make(32, DM_F16, DM_LAYOUT_Q, DM_LAYOUT_Q, false, true, DM_SM86);
    dm_kernel_src k;
    char err[256];
    ck_assert_int_eq(dm_gen_emit(&v, &k, err, sizeof err), DM_OK);
    ck_assert_str_eq(k.entry, "dm_fwd_d32_f16_mask_q_bias_q_w0_softcap_sm86");
    ck_assert_ptr_nonnull(strstr(k.source, "extern \"C\" __global__"));
    ck_assert_ptr_nonnull(strstr(k.source, k.entry));
    ck_assert_int_gt(k.threads, 0);
    ck_assert_int_gt(k.block_m, 0);
    ck_assert_int_eq(k.block_n % 16, 0);
    ck_assert_int_gt(k.smem_bytes, 0);
    dm_kernel_src_free(&k);
}
END_TEST

/* A varlen backward reads its sequences from cu_seqlens and sums a key-layout dbias per key
 * token; the dense backward has neither. */
START_TEST(varlen_backward_variant_reads_cu_seqlens)
{
    dm_variant v = make(64, DM_F16, DM_LAYOUT_NONE, DM_LAYOUT_K, false, false, DM_SM80);
    v.dir = DM_DIR_BWD;
    dm_kernel_src dense, varlen;
    char err[256];
    ck_assert_int_eq(dm_gen_emit(&v, &dense, err, sizeof err), DM_OK);
    v.varlen = true;
    ck_assert_int_eq(dm_gen_emit(&v, &varlen, err, sizeof err), DM_OK);
    ck_assert_ptr_null(strstr(dense.source, "cu_seqlens_k["));
    ck_assert_ptr_nonnull(strstr(varlen.source, "sequence_at("));
    ck_assert_ptr_nonnull(strstr(varlen.source, "view_sequence("));
    dm_kernel_src_free(&dense);
    dm_kernel_src_free(&varlen);
}
END_TEST

/* Windows are applied before the kernel (w0 only); the decode kernel packs rows of different
 * queries, so a per-query mask or bias has no decode variant. */
START_TEST(window_and_per_query_decode_variants_are_unsupported)
{
    dm_variant v = make(64, DM_F16, DM_LAYOUT_NONE, DM_LAYOUT_K, false, false, DM_SM80);
    dm_kernel_src k;
    char err[512];
    v.window = 16;
    ck_assert_int_eq(dm_gen_emit(&v, &k, err, sizeof err), DM_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err, "w16"));
    v.window = 0;
    v.varlen = true;
    v.decode = true;
    v.bias = DM_LAYOUT_Q;
    ck_assert_int_eq(dm_gen_emit(&v, &k, err, sizeof err), DM_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err, "one row per key"));
}
END_TEST

/* bwdrows keys (the deterministic rows phase alone): an entry that runs rows_tile and nothing
 * else, no memory-pass entry, no tensor maps; the bwd kernel of an engine with dq reductions
 * leaves the phase out (its phase 0 returns), one without keeps it; SIMT has no bwdrows. */
START_TEST(bwdrows_is_the_rows_phase_alone_and_the_bwd_kernel_leaves_it_out)
{
    dm_variant v = make(128, DM_BF16, DM_LAYOUT_NONE, DM_LAYOUT_Q, false, false, DM_SM90A);
    dm_kernel_src k;
    char err[512];
    v.dir = DM_DIR_BWD_ROWS;
    ck_assert_int_eq(dm_gen_emit(&v, &k, err, sizeof err), DM_OK);
    ck_assert_int_eq(k.rows_entry[0], 0);
    ck_assert_int_eq(k.tma_maps, 0);
    ck_assert_ptr_nonnull(strstr(k.source, "dm_bwdrows_d128_bf16_mask_none_bias_q_w0_sm90a("));
    ck_assert_ptr_nonnull(strstr(k.source, "    rows_tile(p, (u16 *)smem_raw, blockIdx.z"));
    ck_assert_ptr_null(strstr(k.source, "keys_tile(p, maps, smem"));
    dm_kernel_src_free(&k);
    v.dir = DM_DIR_BWD;
    ck_assert_int_eq(dm_gen_emit(&v, &k, err, sizeof err), DM_OK);
    ck_assert_int_ne(k.rows_entry[0], 0);
    ck_assert_ptr_null(strstr(k.source, "rows_tile(p, smem"));
    ck_assert_ptr_nonnull(strstr(k.source, "keys_tile(p, maps, smem"));
    dm_kernel_src_free(&k);
    v.arch = DM_SM80; /* mma.sync: no dq reductions, the rows phase stays */
    ck_assert_int_eq(dm_gen_emit(&v, &k, err, sizeof err), DM_OK);
    ck_assert_ptr_nonnull(strstr(k.source, "rows_tile(p, smem, blockIdx.z"));
    dm_kernel_src_free(&k);
    v.dir = DM_DIR_BWD_ROWS;
    v.head_dim = 256; /* the SIMT engine */
    ck_assert_int_eq(dm_gen_emit(&v, &k, err, sizeof err), DM_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err, "bwdrows"));
}
END_TEST

/* v's kernel has the dq turns (on) or none: their attributes and the launch order's decode. */
static char *emit_turns(const dm_variant *v, bool on)
{
    dm_kernel_src k;
    char err[512];
    ck_assert_int_eq(dm_gen_emit(v, &k, err, sizeof err), DM_OK);
    ck_assert_int_eq(k.dq_turns, on);
    ck_assert_int_eq(k.turn_order, on); /* api/bwd.c shapes the grid by it */
    ck_assert_int_eq(strstr(k.source, "    key_block_order(p, b, hk, n0);") != NULL, on);
    char *src = strdup(k.source);
    dm_kernel_src_free(&k);
    ck_assert_ptr_nonnull(src);
    return src;
}

/* The deterministic mode's dq turns (attn_bwd_turns.lua) in dense sm_90a keys phases: the launch
 * order's decode first; the last tile's turn passed early only where the call has tensor maps
 * (without them red_tile's lanes in every warp issue dq's sums, and the holder's own wait would
 * not cover them); under a key mask's marks, an unmarked key block skips its K and V loads.
 * Only bwddet keys have them: the default mode's bwd kernel compiles them to nothing, and varlen
 * and sm_80 kernels have none either. */
START_TEST(dense_sm90a_keys_phases_order_their_turns_and_pass_early_only_by_maps)
{
    dm_variant v = make(128, DM_BF16, DM_LAYOUT_NONE, DM_LAYOUT_NONE, false, false, DM_SM90A);
    v.dir = DM_DIR_BWD;
    char *src = emit_turns(&v, false);
    ck_assert_ptr_nonnull(strstr(src, "constexpr bool kDqTurns = false;"));
    ck_assert_ptr_null(strstr(src, "dq_turn_release_early(p"));
    free(src);
    v.dir = DM_DIR_BWD_DET;
    src = emit_turns(&v, true);
    ck_assert_ptr_nonnull(strstr(src, "constexpr bool kDqTurns = true;"));
    ck_assert_ptr_nonnull(strstr(src, "dq_turn_release_early(p, maps.tma);"));
    ck_assert_ptr_null(strstr(src, "key_block_idle("));
    free(src);
    v.mask = DM_LAYOUT_K; /* the split kernel: marks */
    src = emit_turns(&v, true);
    const char *idle = strstr(src, "    if (!key_block_idle(p, b, hk, n0))");
    ck_assert_ptr_nonnull(idle);
    const char *load = strstr(idle, "\n");
    ck_assert_ptr_nonnull(load);
    const char *guarded = "\n        load_own_tiles(sK, "; /* the if's statement */
    ck_assert_int_eq(strncmp(load, guarded, strlen(guarded)), 0);
    free(src);
    v.mask = DM_LAYOUT_Q; /* copies its query tiles: red_tile only, no early pass */
    src = emit_turns(&v, true);
    ck_assert_ptr_null(strstr(src, "dq_turn_release_early(p"));
    free(src);
    v.mask = DM_LAYOUT_NONE;
    v.varlen = true;
    src = emit_turns(&v, false);
    ck_assert_ptr_null(strstr(src, "dq_turn_release_early(p"));
    free(src);
    v.varlen = false;
    v.arch = DM_SM80;
    free(emit_turns(&v, false));
}
END_TEST

START_TEST(embedded_templates_include_every_module)
{
    const char *want[] = {"attn_fwd.lua", "attn_fwd_bias.lua", "attn_fwd_mask.lua",
                          "attn_fwd_mma.lua", "attn_fwd_wgmma.lua", "cuda_common.lua",
                          "cuda_ptx.lua", "errors.lua", "kernel_params.lua", "tune.lua",
                          "tuning.lua", "window_mask.lua", "attn_combine.lua"};
    for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
        int found = 0;
        for (size_t i = 0; i < dm_template_count; i++)
            if (strcmp(dm_templates[i].name, want[w]) == 0 && dm_templates[i].bytes > 0 &&
                strlen(dm_templates[i].text) == dm_templates[i].bytes)
                found = 1;
        ck_assert_msg(found, "%s not embedded", want[w]);
    }
}
END_TEST

/* Copies the source tree's templates into a temp dir, so a test can change one file. */
static void copy_templates(char *dir)
{
    const char *src_dir = getenv("DMATTN_SOURCE_DIR");
    ck_assert_ptr_nonnull(src_dir);
    dm_test_temp_dir(dir, "tpl");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cp %s/templates/*.lua %s/", src_dir, dir);
    ck_assert_int_eq(system(cmd), 0);
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

START_TEST(template_dir_overrides_the_embedded_templates)
{
    char dir[64];
    copy_templates(dir);
    write_file(dir, "attn_fwd.lua",
               "return { emit = function(v) return { source = '// override ' .. v.key, "
               "entry = 'k', threads = 32, block_m = 1, block_n = 32, smem_bytes = 0 } end }\n");
    setenv("DMATTN_TEMPLATE_DIR", dir, 1);
    dm_variant v = make(64, DM_F16, DM_LAYOUT_NONE, DM_LAYOUT_NONE, false, false, DM_SM80);
    char *src = emit_ok(&v);
    unsetenv("DMATTN_TEMPLATE_DIR");
    ck_assert_str_eq(src, "// override fwd.d64.f16.mask-none.bias-none.w0.sm80");
    free(src);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(template_error_is_a_compile_error_with_file_and_line)
{
    char dir[64];
    copy_templates(dir);
    write_file(dir, "attn_fwd.lua", "local M = {}\nfunction M.emit(v)\n  return nil + 1\nend\n"
                                    "return M\n");
    setenv("DMATTN_TEMPLATE_DIR", dir, 1);
    dm_variant v = make(64, DM_F16, DM_LAYOUT_NONE, DM_LAYOUT_NONE, false, false, DM_SM80);
    dm_kernel_src k;
    char err[512];
    dm_status st = dm_gen_emit(&v, &k, err, sizeof err);
    unsetenv("DMATTN_TEMPLATE_DIR");
    ck_assert_int_eq(st, DM_ERR_COMPILE);
    ck_assert_msg(strstr(err, "attn_fwd.lua:3:") != NULL, "err: %s", err);
    dm_test_remove_dir(dir);
}
END_TEST

/* Emits v with the embedded templates but this tuning table; err gets the message. */
static dm_status emit_with_tuning(const char *tuning, const dm_variant *v, char *err,
                                  size_t err_bytes)
{
    char dir[64];
    dm_kernel_src k;
    copy_templates(dir);
    write_file(dir, "tuning.lua", tuning);
    setenv("DMATTN_TEMPLATE_DIR", dir, 1);
    dm_status st = dm_gen_emit(v, &k, err, err_bytes);
    unsetenv("DMATTN_TEMPLATE_DIR");
    if (st == DM_OK)
        dm_kernel_src_free(&k);
    dm_test_remove_dir(dir);
    return st;
}

START_TEST(missing_tuning_row_is_unsupported_naming_what_was_sought)
{
    dm_variant v = make(128, DM_F16, DM_LAYOUT_NONE, DM_LAYOUT_NONE, false, false, DM_SM80);
    char err[512];
    dm_status st = emit_with_tuning("return { { dir = 'fwd', d_min = 8, d_max = 64, arch = 'sm80', "
                                    "block_m = 16, block_n = 32, warps = 4, why = 'test' } }\n",
                                    &v, err, sizeof err);
    ck_assert_int_eq(st, DM_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err, "(fwd, d128, sm80)") != NULL, "err: %s", err);
}
END_TEST

START_TEST(templates_cannot_reach_files_or_randomness)
{
    char dir[64];
    copy_templates(dir);
    write_file(dir, "attn_fwd.lua",
               "return { emit = function(v) return { source = tostring(io) .. tostring(os) .. "
               "tostring(dofile) .. tostring(math.random), entry = 'k', threads = 32, "
               "block_m = 1, block_n = 32, smem_bytes = 0 } end }\n");
    setenv("DMATTN_TEMPLATE_DIR", dir, 1);
    dm_variant v = make(64, DM_F16, DM_LAYOUT_NONE, DM_LAYOUT_NONE, false, false, DM_SM80);
    char *src = emit_ok(&v);
    unsetenv("DMATTN_TEMPLATE_DIR");
    ck_assert_str_eq(src, "nilnilnilnil");
    free(src);
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(causal_variants_take_the_causal_tuning_row)
{
    dm_variant v = make(128, DM_BF16, DM_LAYOUT_K, DM_LAYOUT_K, true, false, DM_SM90);
    char *src = emit_ok(&v);
    ck_assert_msg(strstr(src, ": tile 64x64,") != NULL, "causal header: %.160s", src);
    free(src);
    v.causal = false;
    src = emit_ok(&v);
    ck_assert_msg(strstr(src, ": tile 128x32,") != NULL, "non-causal header: %.160s", src);
    free(src);
}
END_TEST

START_TEST(layout_rows_match_only_their_mask_and_bias_layouts)
{
    /* A row naming bias = "q" (or a list of mask layouts) stands before the general one and
     * takes only those variants; the rest fall through to the general row. */
    const char *table =
        "return {\n"
        "  { dir = 'fwd', d_min = 8, d_max = 256, arch = 'sm80', bias = 'q', warps = 4,\n"
        "    m_tiles = 1, block_n = 64, why = 'test' },\n"
        "  { dir = 'fwd', d_min = 8, d_max = 256, arch = 'sm80', mask = { 'k', 'q' }, warps = 4,\n"
        "    m_tiles = 2, block_n = 64, why = 'test' },\n"
        "  { dir = 'fwd', d_min = 8, d_max = 256, arch = 'sm80', warps = 4, m_tiles = 2,\n"
        "    block_n = 32, why = 'test' },\n"
        "}\n";
    struct { dm_layout mask, bias; const char *tile; } cases[] = {
        {DM_LAYOUT_NONE, DM_LAYOUT_Q, ": tile 64x64,"},  {DM_LAYOUT_K, DM_LAYOUT_Q, ": tile 64x64,"},
        {DM_LAYOUT_K, DM_LAYOUT_NONE, ": tile 128x64,"}, {DM_LAYOUT_Q, DM_LAYOUT_K, ": tile 128x64,"},
        {DM_LAYOUT_NONE, DM_LAYOUT_K, ": tile 128x32,"}, {DM_LAYOUT_NONE, DM_LAYOUT_NONE, ": tile 128x32,"},
    };
    char dir[64];
    copy_templates(dir);
    write_file(dir, "tuning.lua", table);
    setenv("DMATTN_TEMPLATE_DIR", dir, 1);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dm_variant v = make(64, DM_F16, cases[i].mask, cases[i].bias, false, false, DM_SM80);
        char *src = emit_ok(&v);
        ck_assert_msg(strstr(src, cases[i].tile) != NULL, "case %zu wants %s: %.160s", i,
                      cases[i].tile, src);
        free(src);
    }
    unsetenv("DMATTN_TEMPLATE_DIR");
    dm_test_remove_dir(dir);
}
END_TEST

START_TEST(the_tuning_row_picks_the_engine)
{
    /* sm90a (what a 9.0 device maps to) gets wgmma; sm90 and sm80 keep mma.sync; the engine's
     * instructions appear only in its own variants. */
    dm_variant v = make(128, DM_BF16, DM_LAYOUT_K, DM_LAYOUT_Q, false, false, DM_SM90A);
    char *src = emit_ok(&v);
    ck_assert_msg(strstr(src, "wgmma m64n") != NULL, "header: %.200s", src);
    ck_assert_ptr_nonnull(strstr(src, "wgmma.mma_async"));
    ck_assert_ptr_null(strstr(src, "mma.sync.aligned.m16n8k16"));
    free(src);
    v.arch = DM_SM90;
    src = emit_ok(&v);
    ck_assert_msg(strstr(src, "mma.sync m16n8k16") != NULL, "header: %.200s", src);
    ck_assert_ptr_null(strstr(src, "wgmma.mma_async"));
    free(src);
}
END_TEST

START_TEST(an_unknown_engine_in_the_tuning_table_is_an_error_naming_it)
{
    dm_variant v = make(64, DM_F16, DM_LAYOUT_NONE, DM_LAYOUT_NONE, false, false, DM_SM80);
    char err[512];
    dm_status st = emit_with_tuning("return { { dir = 'fwd', d_min = 8, d_max = 256, arch = 'sm80', "
                                    "mma = 'tcgen05', block_n = 64, warps = 4, m_tiles = 1, "
                                    "why = 'test' } }\n",
                                    &v, err, sizeof err);
    ck_assert_int_ne(st, DM_OK);
    ck_assert_msg(strstr(err, "unknown mma engine 'tcgen05'") != NULL, "err: %s", err);
}
END_TEST

#define TESTS(X) \
    X(emit_is_byte_identical_in_fresh_states_for_every_axis) \
    X(bwdrows_is_the_rows_phase_alone_and_the_bwd_kernel_leaves_it_out) \
    X(source_opens_with_the_variant_key_and_the_template_line) \
    X(features_that_are_off_are_absent_from_the_text) \
    X(entry_point_is_named_after_the_variant) \
    X(varlen_backward_variant_reads_cu_seqlens) \
    X(window_and_per_query_decode_variants_are_unsupported) \
    X(embedded_templates_include_every_module) \
    X(template_dir_overrides_the_embedded_templates) \
    X(template_error_is_a_compile_error_with_file_and_line) \
    X(missing_tuning_row_is_unsupported_naming_what_was_sought) \
    X(templates_cannot_reach_files_or_randomness) \
    X(causal_variants_take_the_causal_tuning_row) \
    X(layout_rows_match_only_their_mask_and_bias_layouts) \
    X(the_tuning_row_picks_the_engine) \
    X(an_unknown_engine_in_the_tuning_table_is_an_error_naming_it) \
    X(dense_sm90a_keys_phases_order_their_turns_and_pass_early_only_by_maps)
DM_TEST_MAIN("codegen", TESTS)
