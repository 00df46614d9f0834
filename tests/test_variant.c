/* test_variant.c: the variant key's text form (SPEC §6): format and parse agree on every key,
 * parse accepts nothing else, and each error names the field it could not read.
 * CPU only; no Lua, no device. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gen.h"
#include "harness.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static bool variant_eq(const dm_variant *a, const dm_variant *b)
{
    return a->family == b->family && a->relu == b->relu && a->smooth == b->smooth &&
           a->dir == b->dir && a->head_dim == b->head_dim && a->dtype == b->dtype &&
           a->mask == b->mask && a->bias == b->bias && a->window == b->window &&
           a->varlen == b->varlen && a->causal == b->causal && a->softcap == b->softcap &&
           a->arch == b->arch;
}

/* Calls f on every variant over a few values of each axis: 2*5*2*3*3*3*8*5 = 21600 keys. */
static void for_each_variant(void (*f)(const dm_variant *v, void *ctx), void *ctx)
{
    static const int head_dims[] = {8, 64, 128, 136, 256};
    static const dm_dtype dtypes[] = {DM_F16, DM_BF16};
    static const int windows[] = {0, 1, 2048};

    for (int dir = 0; dir <= DM_DIR_BWD_DET; dir++) /* every direction */
        for (size_t d = 0; d < ARRAY_LEN(head_dims); d++)
            for (size_t t = 0; t < ARRAY_LEN(dtypes); t++)
                for (int mask = 0; mask < 3; mask++)
                    for (int bias = 0; bias < 3; bias++)
                        for (size_t w = 0; w < ARRAY_LEN(windows); w++)
                            for (int flags = 0; flags < 16; flags++)
                                for (int arch = 0; arch < DM_ARCH_COUNT; arch++) {
                                    dm_variant v = {
                                        .dir = (dm_dir)dir,
                                        .head_dim = head_dims[d],
                                        .dtype = dtypes[t],
                                        .mask = (dm_layout)mask,
                                        .bias = (dm_layout)bias,
                                        .window = windows[w],
                                        .varlen = (flags & 1) != 0,
                                        .causal = (flags & 2) != 0,
                                        .softcap = (flags & 4) != 0,
                                        .decode = (flags & 8) != 0,
                                        .arch = (dm_arch)arch,
                                    };
                                    f(&v, ctx);
                                }
}

START_TEST(format_prints_the_spec_example)
{
    dm_variant v = {.dir = DM_DIR_FWD, .head_dim = 128, .dtype = DM_BF16, .mask = DM_LAYOUT_K,
                    .bias = DM_LAYOUT_Q, .window = 0, .causal = true, .arch = DM_SM90};
    char buf[DM_VARIANT_TEXT_MAX];
    const char *want = "fwd.d128.bf16.mask-k.bias-q.w0.causal.sm90";

    ck_assert_int_eq(dm_variant_format(&v, buf, sizeof buf), (int)strlen(want));
    ck_assert_str_eq(buf, want);
}
END_TEST

static void check_round_trip(const dm_variant *v, void *ctx)
{
    char text[DM_VARIANT_TEXT_MAX], again[DM_VARIANT_TEXT_MAX], err[128] = "";
    dm_variant back;
    int n = dm_variant_format(v, text, sizeof text);

    (void)ctx;
    ck_assert_int_gt(n, 0);
    ck_assert_int_lt(n, (int)sizeof text);
    ck_assert_int_eq(n, (int)strlen(text));
    memset(&back, 0xa5, sizeof back);
    ck_assert_msg(dm_variant_parse(text, &back, err, sizeof err) == DM_OK, "%s: %s", text, err);
    ck_assert_msg(variant_eq(v, &back), "%s parsed to a different variant", text);
    ck_assert_int_eq(dm_variant_format(&back, again, sizeof again), n);
    ck_assert_str_eq(again, text);
}

START_TEST(parse_of_format_is_identity_for_every_combination_of_axes)
{
    for_each_variant(check_round_trip, NULL);
}
END_TEST

START_TEST(format_returns_the_full_length_when_the_buffer_is_short)
{
    dm_variant v = {.dir = DM_DIR_BWD, .head_dim = 256, .dtype = DM_F16, .window = 1 << 20,
                    .varlen = true, .causal = true, .softcap = true, .arch = DM_SM90A};
    const char *want = "bwd.d256.f16.mask-none.bias-none.w1048576.varlen.causal.softcap.sm90a";
    char buf[12];

    memset(buf, 'x', sizeof buf);
    ck_assert_int_eq(dm_variant_format(&v, buf, 8), (int)strlen(want));
    ck_assert_str_eq(buf, "bwd.d25");
    ck_assert_int_eq(buf[8], 'x');
    ck_assert_int_eq(dm_variant_format(&v, NULL, 0), (int)strlen(want));
    ck_assert_int_lt((int)strlen(want), DM_VARIANT_TEXT_MAX);
}
END_TEST

START_TEST(format_refuses_a_variant_that_would_not_parse_back)
{
    const dm_variant good = {.head_dim = 64, .dtype = DM_F16, .arch = DM_SM80};
    dm_variant bad[7];
    char buf[DM_VARIANT_TEXT_MAX];

    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        bad[i] = good;
    bad[0].head_dim = 60;
    bad[1].head_dim = 264;
    bad[2].dtype = DM_F32;
    bad[3].window = -1;
    bad[4].window = (1 << 20) + 1;
    bad[5].arch = DM_ARCH_COUNT;
    bad[6].mask = (dm_layout)3;
    ck_assert_int_gt(dm_variant_format(&good, buf, sizeof buf), 0);
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        ck_assert_msg(dm_variant_format(&bad[i], buf, sizeof buf) < 0, "bad[%zu] formatted", i);
    ck_assert_int_lt(dm_variant_format(NULL, buf, sizeof buf), 0);
}
END_TEST

/* Each malformed text, with the start of the message it must produce. */
static const struct bad_key {
    const char *text;
    const char *field; /* "field N (name)" */
} bad_keys[] = {
    {"", "field 1 (direction) ''"},
    {"FWD.d128.f16.mask-none.bias-none.w0.sm80", "field 1 (direction) 'FWD'"},
    {"fw.d128.f16.mask-none.bias-none.w0.sm80", "field 1 (direction) 'fw'"},
    {".fwd.d128.f16.mask-none.bias-none.w0.sm80", "field 1 (direction) ''"},
    {"fwd", "field 2 (head_dim) missing"},
    {"fwd.", "field 2 (head_dim) ''"},
    {"fwd..d128.f16.mask-none.bias-none.w0.sm80", "field 2 (head_dim) ''"},
    {"fwd.d130.f16.mask-none.bias-none.w0.sm80", "field 2 (head_dim) 'd130'"},
    {"fwd.d0.f16.mask-none.bias-none.w0.sm80", "field 2 (head_dim) 'd0'"},
    {"fwd.d264.f16.mask-none.bias-none.w0.sm80", "field 2 (head_dim) 'd264'"},
    {"fwd.d0128.f16.mask-none.bias-none.w0.sm80", "field 2 (head_dim) 'd0128'"},
    {"fwd.d+128.f16.mask-none.bias-none.w0.sm80", "field 2 (head_dim) 'd+128'"},
    {"fwd.d.f16.mask-none.bias-none.w0.sm80", "field 2 (head_dim) 'd'"},
    {"fwd.D128.f16.mask-none.bias-none.w0.sm80", "field 2 (head_dim) 'D128'"},
    {"fwd.128.f16.mask-none.bias-none.w0.sm80", "field 2 (head_dim) '128'"},
    {"fwd.d99999999999999999999.f16.mask-none.bias-none.w0.sm80", "field 2 (head_dim)"},
    {"fwd.d128", "field 3 (dtype) missing"},
    {"fwd.d128.fp16.mask-none.bias-none.w0.sm80", "field 3 (dtype) 'fp16'"},
    {"fwd.d128.F16.mask-none.bias-none.w0.sm80", "field 3 (dtype) 'F16'"},
    {"fwd.d128.f32.mask-none.bias-none.w0.sm80", "field 3 (dtype) 'f32'"},
    {"fwd.d128.f16", "field 4 (mask) missing"},
    {"fwd.d128.f16.mask-v.bias-none.w0.sm80", "field 4 (mask) 'mask-v'"},
    {"fwd.d128.f16.mask-.bias-none.w0.sm80", "field 4 (mask) 'mask-'"},
    {"fwd.d128.f16.mask.bias-none.w0.sm80", "field 4 (mask) 'mask'"},
    {"fwd.d128.f16.mask-NONE.bias-none.w0.sm80", "field 4 (mask) 'mask-NONE'"},
    {"fwd.d128.f16.bias-none.mask-none.w0.sm80", "field 4 (mask) 'bias-none'"},
    {"fwd.d128.f16.mask-none", "field 5 (bias) missing"},
    {"fwd.d128.f16.mask-none.bias-qk.w0.sm80", "field 5 (bias) 'bias-qk'"},
    {"fwd.d128.f16.mask-none.mask-none.w0.sm80", "field 5 (bias) 'mask-none'"},
    {"fwd.d128.f16.mask-none.bias-none", "field 6 (window) missing"},
    {"fwd.d128.f16.mask-none.bias-none.sm80", "field 6 (window) 'sm80'"},
    {"fwd.d128.f16.mask-none.bias-none.w00.sm80", "field 6 (window) 'w00'"},
    {"fwd.d128.f16.mask-none.bias-none.w01.sm80", "field 6 (window) 'w01'"},
    {"fwd.d128.f16.mask-none.bias-none.w-1.sm80", "field 6 (window) 'w-1'"},
    {"fwd.d128.f16.mask-none.bias-none.w1048577.sm80", "field 6 (window) 'w1048577'"},
    {"fwd.d128.f16.mask-none.bias-none.w10485760.sm80", "field 6 (window) 'w10485760'"},
    {"fwd.d128.f16.mask-none.bias-none.w.sm80", "field 6 (window) 'w'"},
    {"fwd.d128.f16.mask-none.bias-none.w0", "field 7 (flag or arch) missing"},
    {"fwd.d128.f16.mask-none.bias-none.w0.", "field 7 (flag or arch) ''"},
    {"fwd.d128.f16.mask-none.bias-none.w0.fast.sm80", "field 7 (flag or arch) 'fast'"},
    {"fwd.d128.f16.mask-none.bias-none.w0.SM80", "field 7 (flag or arch) 'SM80'"},
    {"fwd.d128.f16.mask-none.bias-none.w0.sm70", "field 7 (flag or arch) 'sm70'"},
    {"fwd.d128.f16.mask-none.bias-none.w0.sm90A", "field 7 (flag or arch) 'sm90A'"},
    {"fwd.d128.f16.mask-none.bias-none.w0.Causal.sm80", "field 7 (flag or arch) 'Causal'"},
    {"fwd.d128.f16.mask-none.bias-none.w0.causal", "field 8 (flag or arch) missing"},
    {"fwd.d128.f16.mask-none.bias-none.w0.causal..sm80", "field 8 (flag or arch) ''"},
    {"fwd.d128.f16.mask-none.bias-none.w0.softcap", "field 8 (flag or arch) missing"},
    {"fwd.d128.f16.mask-none.bias-none.w0.decode", "field 8 (arch) missing"},
    {"fwd.d128.f16.mask-none.bias-none.w0.decode.varlen.sm80", "field 8 (arch) 'varlen'"},
    {"combine.d128.bf16", "field 4 (arch) missing"},
    {"combine.d130.bf16.sm90a", "field 2 (head_dim) 'd130'"},
    {"combine.d128.f32.sm90a", "field 3 (dtype) 'f32'"},
    {"combine.d128.bf16.sm90a.decode", "field 5 (end) 'decode'"},
    {"fwd.d128.f16.mask-none.bias-none.w0.sm80.", "field 8 (end) ''"},
    {"fwd.d128.f16.mask-none.bias-none.w0.sm80.causal", "field 8 (end) 'causal'"},
    {"fwd.d128.f16.mask-none.bias-none.w0.sm80.sm90", "field 8 (end) 'sm90'"},
    {"fwd.d128.f16.mask-none.bias-none.w0.varlen.causal.softcap.sm80.x", "field 11 (end) 'x'"},
};

START_TEST(parse_rejects_each_malformed_field_and_names_it)
{
    for (size_t i = 0; i < ARRAY_LEN(bad_keys); i++) {
        char err[256];
        dm_variant v;

        memset(err, 0, sizeof err);
        ck_assert_msg(dm_variant_parse(bad_keys[i].text, &v, err, sizeof err) ==
                          DM_ERR_INVALID_ARG,
                      "'%s' parsed", bad_keys[i].text);
        ck_assert_msg(strncmp(err, bad_keys[i].field, strlen(bad_keys[i].field)) == 0,
                      "'%s': message '%s' does not start with '%s'", bad_keys[i].text, err,
                      bad_keys[i].field);
        ck_assert_msg(strstr(err, ": expected ") != NULL, "'%s': '%s' says nothing expected",
                      bad_keys[i].text, err);
    }
}
END_TEST

START_TEST(parse_messages_say_what_was_expected_in_the_documented_words)
{
    static const struct {
        const char *text, *message;
    } cases[] = {
        {"fwd.d128.fp16.mask-none.bias-none.w0.sm80",
         "field 3 (dtype) 'fp16': expected f16 or bf16"},
        {"fwd.d130.f16.mask-none.bias-none.w0.sm80",
         "field 2 (head_dim) 'd130': expected d<8..256, multiple of 8>"},
        {"fwd.d128.f16.mask-none.bias-none.w0.fast",
         "field 7 (flag or arch) 'fast': expected varlen, causal, softcap, decode or "
         "sm80|sm86|sm89|sm90|sm90a"},
        {"bwd.d64.bf16.mask-q.bias-k.w0.causal.fast",
         "field 8 (flag or arch) 'fast': expected softcap, decode or sm80|sm86|sm89|sm90|sm90a"},
        {"bwd.d64.bf16.mask-q.bias-k.w0.decode.fast",
         "field 8 (arch) 'fast': expected sm80|sm86|sm89|sm90|sm90a"},
        {"fwd.d128.f16.mask-none.bias-none.w0.sm86.x",
         "field 8 (end) 'x': expected nothing after the arch sm86"},
        {"fwd.d128", "field 3 (dtype) missing: expected f16 or bf16"},
        {"FWD.d128", "field 1 (direction) 'FWD': expected fwd, bwd, bwdrows, bwddet, wmask or combine"},
        {"fwd.d64.f16.mask-z", "field 4 (mask) 'mask-z': expected mask-none, mask-q or mask-k"},
        {"fwd.d64.f16.mask-q.bias-z",
         "field 5 (bias) 'bias-z': expected bias-none, bias-q or bias-k"},
        {"fwd.d64.f16.mask-q.bias-k.w01", "field 6 (window) 'w01': expected w<0..1048576>"},
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char err[256];
        dm_variant v;

        ck_assert_int_eq(dm_variant_parse(cases[i].text, &v, err, sizeof err),
                         DM_ERR_INVALID_ARG);
        ck_assert_str_eq(err, cases[i].message);
    }
}
END_TEST

START_TEST(parse_rejects_flags_out_of_order_or_repeated)
{
    static const char *const texts[] = {
        "fwd.d64.f16.mask-none.bias-none.w0.causal.varlen.sm80",
        "fwd.d64.f16.mask-none.bias-none.w0.softcap.causal.sm80",
        "fwd.d64.f16.mask-none.bias-none.w0.softcap.varlen.sm80",
        "fwd.d64.f16.mask-none.bias-none.w0.varlen.softcap.causal.sm80",
        "fwd.d64.f16.mask-none.bias-none.w0.causal.causal.sm80",
        "fwd.d64.f16.mask-none.bias-none.w0.varlen.varlen.sm80",
        "fwd.d64.f16.mask-none.bias-none.w0.softcap.softcap.sm80",
    };

    for (size_t i = 0; i < ARRAY_LEN(texts); i++) {
        char err[256] = "";
        dm_variant v;

        ck_assert_msg(dm_variant_parse(texts[i], &v, err, sizeof err) == DM_ERR_INVALID_ARG,
                      "'%s' parsed", texts[i]);
        ck_assert_msg(strstr(err, "(flag or arch)") || strstr(err, "(arch)"), "%s", err);
        ck_assert_msg(strstr(err, "in the order varlen, causal, softcap"), "%s", err);
    }
}
END_TEST

START_TEST(parse_rejects_null_text_and_null_out)
{
    char err[128] = "";
    dm_variant v;

    ck_assert_int_eq(dm_variant_parse(NULL, &v, err, sizeof err), DM_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err, "NULL"));
    err[0] = '\0';
    ck_assert_int_eq(dm_variant_parse("fwd.d64.f16.mask-none.bias-none.w0.sm80", NULL, err,
                                      sizeof err),
                     DM_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err, "out"));
}
END_TEST

START_TEST(parse_leaves_out_untouched_on_failure)
{
    dm_variant v, before;

    memset(&v, 0x5a, sizeof v);
    before = v;
    ck_assert_int_eq(dm_variant_parse("fwd.d64.f16.mask-q.bias-k.w7.causal.sm99", &v, NULL, 0),
                     DM_ERR_INVALID_ARG);
    ck_assert_int_eq(memcmp(&v, &before, sizeof v), 0);
}
END_TEST

START_TEST(parse_error_never_writes_past_err_bytes)
{
    char err[16];

    for (size_t i = 0; i < ARRAY_LEN(bad_keys); i++) {
        dm_variant v;

        memset(err, '#', sizeof err);
        ck_assert_int_eq(dm_variant_parse(bad_keys[i].text, &v, err, 8), DM_ERR_INVALID_ARG);
        ck_assert_int_eq(strlen(err), 7);
        ck_assert_int_eq(strncmp(err, "field ", 6), 0);
        for (size_t j = 8; j < sizeof err; j++)
            ck_assert_int_eq(err[j], '#');
    }
    memset(err, '#', sizeof err);
    ck_assert_int_eq(dm_variant_parse("x", NULL, err, 1), DM_ERR_INVALID_ARG);
    ck_assert_int_eq(err[0], '\0');
    ck_assert_int_eq(err[1], '#');
}
END_TEST

START_TEST(parse_accepts_null_err_and_zero_err_bytes)
{
    char err[4] = "abc";
    dm_variant v;

    ck_assert_int_eq(dm_variant_parse("fwd.d128.fp16", &v, NULL, 0), DM_ERR_INVALID_ARG);
    ck_assert_int_eq(dm_variant_parse("fwd.d128.fp16", &v, NULL, 64), DM_ERR_INVALID_ARG);
    ck_assert_int_eq(dm_variant_parse("fwd.d128.fp16", &v, err, 0), DM_ERR_INVALID_ARG);
    ck_assert_str_eq(err, "abc");
    ck_assert_int_eq(dm_variant_parse(NULL, &v, NULL, 0), DM_ERR_INVALID_ARG);
    ck_assert_int_eq(dm_variant_parse("fwd.d128.f16.mask-none.bias-none.w0.sm80", &v, NULL, 0),
                     DM_OK);
}
END_TEST

START_TEST(parse_quotes_a_long_field_shortened)
{
    char text[4096], err[256];
    dm_variant v;

    memcpy(text, "fwd.d64.", 8);
    memset(text + 8, 'z', sizeof text - 9);
    text[sizeof text - 1] = '\0';
    ck_assert_int_eq(dm_variant_parse(text, &v, err, sizeof err), DM_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err, "field 3 (dtype) 'zzzz"));
    ck_assert_ptr_nonnull(strstr(err, "...': expected f16 or bf16"));
}
END_TEST

/* Every text one edit away from a canonical one either fails or is itself canonical: parse
 * accepts exactly what format prints. */
static void check_single_edits(const char *text)
{
    static const char alphabet[] = ".0123456789-abcdfkmnqstvwxACDFS ";
    size_t len = strlen(text);
    char edited[DM_VARIANT_TEXT_MAX + 2];

    for (size_t i = 0; i <= len; i++) {
        for (size_t c = 0; c < sizeof alphabet; c++) { /* includes the NUL: truncation */
            for (int op = 0; op < 3; op++) { /* replace, insert, delete */
                char again[DM_VARIANT_TEXT_MAX];
                dm_variant v;

                if (op != 1 && i == len)
                    continue;
                if (op == 2 && c > 0)
                    continue;
                memcpy(edited, text, i);
                if (op == 0) {
                    edited[i] = alphabet[c];
                    memcpy(edited + i + 1, text + i + 1, len - i);
                } else if (op == 1) {
                    edited[i] = alphabet[c];
                    memcpy(edited + i + 1, text + i, len - i + 1);
                } else {
                    memcpy(edited + i, text + i + 1, len - i);
                }
                if (dm_variant_parse(edited, &v, NULL, 0) != DM_OK)
                    continue;
                ck_assert_int_gt(dm_variant_format(&v, again, sizeof again), 0);
                ck_assert_msg(strcmp(again, edited) == 0, "'%s' parsed, but prints as '%s'",
                              edited, again);
            }
        }
    }
}

START_TEST(parse_accepts_only_canonical_text_under_single_edits)
{
    static const char *const texts[] = {
        "fwd.d128.bf16.mask-k.bias-q.w0.causal.sm90",
        "bwd.d8.f16.mask-none.bias-none.w1048576.varlen.causal.softcap.sm90a",
        "fwd.d256.bf16.mask-q.bias-k.w2048.varlen.sm86",
        "bwd.d64.f16.mask-none.bias-q.w1.softcap.sm89",
        "bwdrows.d128.bf16.mask-q.bias-q.w0.varlen.causal.sm90a",
        "bwddet.d128.bf16.mask-k.bias-none.w0.causal.sm90a",
    };

    for (size_t i = 0; i < ARRAY_LEN(texts); i++)
        check_single_edits(texts[i]);
}
END_TEST

/* Copies text so that its NUL is the last byte before an inaccessible page: any read past the
 * string faults. */
static const char *at_page_end(char *page, long page_bytes, const char *text)
{
    size_t n = strlen(text) + 1;
    char *dst = page + page_bytes - (long)n;

    memcpy(dst, text, n);
    return dst;
}

START_TEST(parse_never_reads_past_the_end_of_the_text)
{
    long page_bytes = sysconf(_SC_PAGESIZE);
    char *pages = mmap(NULL, (size_t)page_bytes * 2, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char err[256];
    dm_variant v;
    dm_arch a;

    ck_assert_ptr_ne(pages, MAP_FAILED);
    ck_assert_int_eq(mprotect(pages + page_bytes, (size_t)page_bytes, PROT_NONE), 0);
    for (size_t i = 0; i < ARRAY_LEN(bad_keys); i++) {
        const char *t = at_page_end(pages, page_bytes, bad_keys[i].text);
        ck_assert_int_eq(dm_variant_parse(t, &v, err, sizeof err), DM_ERR_INVALID_ARG);
    }
    ck_assert_int_eq(dm_variant_parse(at_page_end(pages, page_bytes,
                                                  "fwd.d8.f16.mask-q.bias-k.w1.softcap.sm90a"),
                                      &v, err, sizeof err),
                     DM_OK);
    ck_assert_int_eq(dm_arch_parse(at_page_end(pages, page_bytes, "sm9"), &a),
                     DM_ERR_INVALID_ARG);
    munmap(pages, (size_t)page_bytes * 2);
}
END_TEST

START_TEST(arch_from_cc_maps_supported_devices_and_rejects_the_rest)
{
    static const struct {
        int major, minor;
        dm_arch arch;
    } known[] = {
        {8, 0, DM_SM80}, {8, 6, DM_SM86}, {8, 7, DM_SM86}, {8, 9, DM_SM89}, {9, 0, DM_SM90A},
    };
    static const int unknown[][2] = {{7, 0}, {7, 5}, {8, 1}, {8, 8}, {9, 1}, {10, 0},
                                     {12, 0}, {0, 0}, {-1, 0}, {8, -1}};
    dm_arch a;

    for (size_t i = 0; i < ARRAY_LEN(known); i++) {
        a = DM_ARCH_COUNT;
        ck_assert_int_eq(dm_arch_from_cc(known[i].major, known[i].minor, &a), 0);
        ck_assert_int_eq(a, known[i].arch);
    }
    for (size_t i = 0; i < ARRAY_LEN(unknown); i++) {
        a = DM_SM80;
        ck_assert_int_ne(dm_arch_from_cc(unknown[i][0], unknown[i][1], &a), 0);
        ck_assert_int_eq(a, DM_SM80);
    }
    ck_assert_int_ne(dm_arch_from_cc(8, 0, NULL), 0);
}
END_TEST

START_TEST(arch_table_gives_the_lists_messages_quote)
{
    char buf[64];

    ck_assert_int_eq(dm_arch_list_text(buf, sizeof buf, ", ", " or "),
                     (int)strlen("sm80, sm86, sm89, sm90 or sm90a"));
    ck_assert_str_eq(buf, "sm80, sm86, sm89, sm90 or sm90a");
    dm_arch_list_text(buf, sizeof buf, "|", "|");
    ck_assert_str_eq(buf, "sm80|sm86|sm89|sm90|sm90a");
    ck_assert_int_eq(dm_arch_device_ccs_text(buf, sizeof buf),
                     (int)strlen("8.0, 8.6, 8.7, 8.9 and 9.0"));
    ck_assert_str_eq(buf, "8.0, 8.6, 8.7, 8.9 and 9.0");
    /* Truncation is snprintf's: the length it would have had, the text cut and terminated. */
    ck_assert_int_eq(dm_arch_list_text(buf, 5, ", ", " or "), 31);
    ck_assert_str_eq(buf, "sm80");
    ck_assert_str_eq(dm_arch_get(DM_SM90A)->nvrtc, "sm_90a");
    ck_assert_int_eq(dm_arch_get(DM_SM90A)->cc, 90);
    ck_assert_ptr_null(dm_arch_get(DM_ARCH_COUNT));
    /* Every device cc a row lists maps back to that row. */
    for (int i = 0; i < DM_ARCH_COUNT; i++)
        for (const int *d = dm_arch_get((dm_arch)i)->device_ccs; *d; d++) {
            dm_arch a = DM_ARCH_COUNT;
            ck_assert_int_eq(dm_arch_from_cc(*d / 10, *d % 10, &a), 0);
            ck_assert_int_eq(a, i);
        }
}
END_TEST

START_TEST(arch_parse_accepts_exactly_the_arch_names)
{
    static const char *const bad[] = {"", "sm", "sm8", "sm800", "SM80", "sm90b", "sm90a ",
                                      " sm80", "sm70", "sm87", "sm100", "90"};
    dm_arch a;

    for (int i = 0; i < DM_ARCH_COUNT; i++) {
        a = DM_ARCH_COUNT;
        ck_assert_int_eq(dm_arch_parse(dm_arch_name((dm_arch)i), &a), DM_OK);
        ck_assert_int_eq(a, i);
    }
    ck_assert_str_eq(dm_arch_name(DM_SM90A), "sm90a");
    ck_assert_str_eq(dm_arch_name(DM_ARCH_COUNT), "?");
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        ck_assert_msg(dm_arch_parse(bad[i], &a) == DM_ERR_INVALID_ARG, "'%s' parsed", bad[i]);
    ck_assert_int_eq(dm_arch_parse(NULL, &a), DM_ERR_INVALID_ARG);
    ck_assert_int_eq(dm_arch_parse("sm80", NULL), DM_ERR_INVALID_ARG);
}
END_TEST

START_TEST(dtype_name_names_every_dtype)
{
    ck_assert_str_eq(dm_dtype_name(DM_DTYPE_NONE), "none");
    ck_assert_str_eq(dm_dtype_name(DM_F16), "f16");
    ck_assert_str_eq(dm_dtype_name(DM_BF16), "bf16");
    ck_assert_str_eq(dm_dtype_name(DM_F32), "f32");
    ck_assert_str_eq(dm_dtype_name(DM_BOOL), "bool");
    ck_assert_str_eq(dm_dtype_name(DM_I32), "i32");
    ck_assert_str_eq(dm_dtype_name((dm_dtype)99), "?");
}
END_TEST


/* ---- window-mask keys (wmask.w<W>.dtype.mask-<l>[.relu][.smooth][.varlen].sm<NN>) -------- */

START_TEST(wmask_keys_round_trip_over_every_axis)
{
    static const int windows[] = {1, 7, 2048, 1 << 20};
    static const dm_dtype dtypes[] = {DM_F16, DM_BF16, DM_F32};
    int n = 0;
    for (size_t t = 0; t < ARRAY_LEN(dtypes); t++)
        for (int m = 0; m < 3; m++)
            for (int flags = 0; flags < 8; flags++)
                for (size_t w = 0; w < ARRAY_LEN(windows); w++)
                    for (int a = 0; a < DM_ARCH_COUNT; a++) {
                        bool relu = flags & 1;
                        dm_variant v = {.family = DM_FAMILY_WMASK, .window = relu ? 0 : windows[w],
                                        .dtype = dtypes[t], .mask = (dm_layout)m, .relu = relu,
                                        .smooth = (flags & 2) != 0, .varlen = (flags & 4) != 0,
                                        .arch = (dm_arch)a};
                        check_round_trip(&v, NULL);
                        n++;
                    }
    ck_assert_int_eq(n, 3 * 3 * 8 * 4 * DM_ARCH_COUNT);
}
END_TEST

/* ---- split-KV combine keys (combine.d<D>.dtype.sm<NN>) -------------------------------------- */

START_TEST(combine_keys_round_trip_and_print_the_documented_form)
{
    static const int head_dims[] = {8, 64, 128, 256};
    char buf[DM_VARIANT_TEXT_MAX];
    for (size_t d = 0; d < ARRAY_LEN(head_dims); d++)
        for (int t = DM_F16; t <= DM_BF16; t++)
            for (int a = 0; a < DM_ARCH_COUNT; a++) {
                dm_variant v = {.family = DM_FAMILY_COMBINE, .head_dim = head_dims[d],
                                .dtype = (dm_dtype)t, .arch = (dm_arch)a};
                check_round_trip(&v, NULL);
            }
    dm_variant v = {.family = DM_FAMILY_COMBINE, .head_dim = 128, .dtype = DM_BF16,
                    .arch = DM_SM90A};
    dm_variant_format(&v, buf, sizeof buf);
    ck_assert_str_eq(buf, "combine.d128.bf16.sm90a");
    v.causal = true; /* a field the family does not use: no text names it */
    ck_assert_int_eq(dm_variant_format(&v, buf, sizeof buf), -1);
}
END_TEST

START_TEST(wmask_format_prints_the_documented_form)
{
    char buf[DM_VARIANT_TEXT_MAX];
    dm_variant v = {.family = DM_FAMILY_WMASK, .window = 2048, .dtype = DM_BF16,
                    .mask = DM_LAYOUT_K, .arch = DM_SM90};
    dm_variant_format(&v, buf, sizeof buf);
    ck_assert_str_eq(buf, "wmask.w2048.bf16.mask-k.sm90");
    v = (dm_variant){.family = DM_FAMILY_WMASK, .dtype = DM_F32, .relu = true, .smooth = true,
                     .arch = DM_SM80};
    dm_variant_format(&v, buf, sizeof buf);
    ck_assert_str_eq(buf, "wmask.w0.f32.mask-none.relu.smooth.sm80");
    v = (dm_variant){.family = DM_FAMILY_WMASK, .window = 64, .dtype = DM_BF16,
                     .mask = DM_LAYOUT_Q, .smooth = true, .varlen = true, .arch = DM_SM90A};
    dm_variant_format(&v, buf, sizeof buf);
    ck_assert_str_eq(buf, "wmask.w64.bf16.mask-q.smooth.varlen.sm90a");
}
END_TEST

START_TEST(wmask_format_refuses_fields_of_the_other_family)
{
    const dm_variant good = {.family = DM_FAMILY_WMASK, .window = 4, .dtype = DM_F16,
                             .arch = DM_SM80};
    dm_variant bad[8];
    char buf[DM_VARIANT_TEXT_MAX];
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        bad[i] = good;
    bad[0].head_dim = 64;
    bad[1].bias = DM_LAYOUT_K;
    bad[2].causal = true;
    bad[3].window = 0;            /* top-k needs a window */
    bad[4].relu = true;           /* relu has none */
    bad[5].dtype = DM_BOOL;
    bad[6].dir = DM_DIR_BWD;
    bad[7].family = (dm_family)7;
    ck_assert_int_gt(dm_variant_format(&good, buf, sizeof buf), 0);
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        ck_assert_msg(dm_variant_format(&bad[i], buf, sizeof buf) < 0, "bad[%zu] formatted", i);
    dm_variant attn_relu = {.head_dim = 64, .dtype = DM_F16, .relu = true};
    ck_assert_int_lt(dm_variant_format(&attn_relu, buf, sizeof buf), 0);
}
END_TEST

START_TEST(wmask_parse_names_the_field_it_could_not_read)
{
    static const struct {
        const char *text, *message;
    } cases[] = {
        {"wmask", "field 2 (window) missing: expected w<1..1048576> (w0 with relu)"},
        {"wmask.w01.bf16.mask-k.sm90", "field 2 (window) 'w01': expected w<1..1048576> (w0 with relu)"},
        {"wmask.w0.bf16.mask-k.sm90",
         "field 2 (window) 'w0': expected w<1..1048576> for top-k (w0 only with relu)"},
        {"wmask.w8.bf16.mask-k.relu.sm90",
         "field 2 (window) 'w8': expected w0 with relu (relu selects by sign, not top-k)"},
        {"wmask.w8.f64.mask-k.sm90", "field 3 (dtype) 'f64': expected f16, bf16 or f32"},
        {"wmask.w8.f16.bias-k.sm90",
         "field 4 (mask) 'bias-k': expected mask-none, mask-q or mask-k"},
        {"wmask.w8.f16.mask-k", "field 5 (flag or arch) missing: expected relu, smooth, varlen or "
                                "sm80|sm86|sm89|sm90|sm90a"},
        {"wmask.w8.f16.mask-k.causal.sm80", "field 5 (flag or arch) 'causal': expected relu, "
                                            "smooth, varlen or sm80|sm86|sm89|sm90|sm90a"},
        {"wmask.w0.f16.mask-k.smooth.relu.sm80",
         "field 6 (flag or arch) 'relu': expected varlen or sm80|sm86|sm89|sm90|sm90a (flags once "
         "each, in the order relu, smooth, varlen)"},
        {"wmask.w8.f16.mask-k.varlen.smooth.sm80",
         "field 6 (arch) 'smooth': expected sm80|sm86|sm89|sm90|sm90a (flags once each, in the "
         "order relu, smooth, varlen)"},
        {"wmask.w8.f16.mask-k.varlen.varlen.sm80",
         "field 6 (arch) 'varlen': expected sm80|sm86|sm89|sm90|sm90a (flags once each, in the "
         "order relu, smooth, varlen)"},
        {"wmask.w8.f16.mask-k.sm80.x", "field 6 (end) 'x': expected nothing after the arch sm80"},
        {"wmask.w8.f16.mask-k.bias-none.w0.sm80",
         "field 5 (flag or arch) 'bias-none': expected relu, smooth, varlen or "
         "sm80|sm86|sm89|sm90|sm90a"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char err[256] = "";
        dm_variant v;
        ck_assert_msg(dm_variant_parse(cases[i].text, &v, err, sizeof err) == DM_ERR_INVALID_ARG,
                      "'%s' parsed", cases[i].text);
        ck_assert_str_eq(err, cases[i].message);
    }
}
END_TEST

#define TESTS(X) \
    X(combine_keys_round_trip_and_print_the_documented_form) \
    X(wmask_keys_round_trip_over_every_axis) \
    X(wmask_format_prints_the_documented_form) \
    X(wmask_format_refuses_fields_of_the_other_family) \
    X(wmask_parse_names_the_field_it_could_not_read) \
    X(format_prints_the_spec_example) \
    X(parse_of_format_is_identity_for_every_combination_of_axes) \
    X(format_returns_the_full_length_when_the_buffer_is_short) \
    X(format_refuses_a_variant_that_would_not_parse_back) \
    X(parse_rejects_each_malformed_field_and_names_it) \
    X(parse_messages_say_what_was_expected_in_the_documented_words) \
    X(parse_rejects_flags_out_of_order_or_repeated) \
    X(parse_rejects_null_text_and_null_out) \
    X(parse_leaves_out_untouched_on_failure) \
    X(parse_error_never_writes_past_err_bytes) \
    X(parse_accepts_null_err_and_zero_err_bytes) \
    X(parse_quotes_a_long_field_shortened) \
    X(parse_accepts_only_canonical_text_under_single_edits) \
    X(parse_never_reads_past_the_end_of_the_text) \
    X(arch_from_cc_maps_supported_devices_and_rejects_the_rest) \
    X(arch_parse_accepts_exactly_the_arch_names) \
    X(arch_table_gives_the_lists_messages_quote) \
    X(dtype_name_names_every_dtype)

DM_TEST_MAIN("variant", TESTS)
