/* variant.c: the canonical text forms of variant keys (SPEC §6): attention and window-mask
 * (wmask) keys, and the names of dtypes (archs: arch.c). Parsing accepts exactly what formatting
 * prints; anything else is an error naming the field it could not read. Bounds come from
 * dm_limits.h. No allocation, no global state, no Lua: safe anywhere. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "gen.h"

#define QUOTE_MAX 40 /* longest field text quoted in a message; longer ones end in "..." */
#define ARCH_LIST_MAX 64 /* "sm80|sm86|sm89|sm90|sm90a" and room for more rows */

static const char *const layout_names[] = {"none", "q", "k"};
static const char *const dir_names[] = {"fwd", "bwd", "bwdrows", "bwddet"};

enum { FLAG_VARLEN, FLAG_CAUSAL, FLAG_SOFTCAP, FLAG_DECODE, FLAG_COUNT };
static const char *const flag_names[FLAG_COUNT] = {"varlen", "causal", "softcap", "decode"};

/* One '.'-separated field of the text: not NUL-terminated. */
typedef struct span {
    const char *s;
    size_t len;
} span;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void
set_err(char *err, size_t err_bytes, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || err_bytes == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, err_bytes, fmt, ap);
    va_end(ap);
}

/* "field 3 (dtype) 'fp16': expected f16 or bf16"; a field the text ran out before is "missing". */
static dm_status field_err(char *err, size_t err_bytes, int index, const char *name,
                           const span *f, const char *expected)
{
    if (f == NULL) {
        set_err(err, err_bytes, "field %d (%s) missing: expected %s", index, name, expected);
    } else {
        int shown = f->len > QUOTE_MAX ? QUOTE_MAX : (int)f->len;
        set_err(err, err_bytes, "field %d (%s) '%.*s%s': expected %s", index, name, shown, f->s,
                f->len > QUOTE_MAX ? "..." : "", expected);
    }
    return DM_ERR_INVALID_ARG;
}

/* Takes the next field from *p. After the last field *p is NULL; a trailing '.' leaves one more,
 * empty, field, so "fwd." has a second field '' rather than a missing one. */
static bool next_field(const char **p, span *f)
{
    const char *s = *p;
    size_t len;

    if (s == NULL)
        return false;
    len = strcspn(s, ".");
    f->s = s;
    f->len = len;
    *p = s[len] == '.' ? s + len + 1 : NULL;
    return true;
}

static bool span_is(const span *f, const char *word)
{
    size_t n = strlen(word);
    return f->len == n && memcmp(f->s, word, n) == 0;
}

/* A decimal after a one-letter prefix: digits only, no sign, no leading zero except "0" itself,
 * at most max_digits digits (so the value cannot overflow). Returns -1 if malformed. */
static long prefixed_decimal(const span *f, char prefix, size_t max_digits)
{
    const char *d = f->s + 1;
    size_t n = f->len - 1;
    long value = 0;

    if (f->len < 2 || f->s[0] != prefix || n > max_digits)
        return -1;
    if (d[0] == '0' && n > 1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (d[i] < '0' || d[i] > '9')
            return -1;
        value = value * 10 + (d[i] - '0');
    }
    return value;
}

/* "mask-q" -> DM_LAYOUT_Q; false if the prefix or the layout is wrong. */
static bool parse_layout(const span *f, const char *prefix, dm_layout *out)
{
    size_t n = strlen(prefix);

    if (f->len <= n || memcmp(f->s, prefix, n) != 0)
        return false;
    for (int i = 0; i < 3; i++) {
        span rest = {f->s + n, f->len - n};
        if (span_is(&rest, layout_names[i])) {
            *out = (dm_layout)i;
            return true;
        }
    }
    return false;
}

static bool parse_arch_span(const span *f, dm_arch *out)
{
    for (int i = 0; i < DM_ARCH_COUNT; i++) {
        if (span_is(f, dm_arch_name((dm_arch)i))) {
            *out = (dm_arch)i;
            return true;
        }
    }
    return false;
}

/* What may come after flags [0, first) have been passed: "causal, softcap or sm80|...". */
static void expected_after_flags(int first, char *buf, size_t n)
{
    size_t used = 0;

    buf[0] = '\0';
    for (int i = first; i < FLAG_COUNT; i++) {
        const char *sep = i == first ? "" : ", ";
        used += (size_t)snprintf(buf + used, n - used, "%s%s", sep, flag_names[i]);
    }
    used += (size_t)snprintf(buf + used, n - used, "%s", first < FLAG_COUNT ? " or " : "");
    dm_arch_list_text(buf + used, n - used, "|", "|");
}

static bool layout_ok(dm_layout l)
{
    return l == DM_LAYOUT_NONE || l == DM_LAYOUT_Q || l == DM_LAYOUT_K;
}

/* A wmask key uses window, dtype, mask, relu, smooth, varlen and arch; everything else stays zero
 * so that one text names one struct. */
static bool wmask_ok(const dm_variant *v)
{
    bool window_ok = v->relu ? v->window == 0 : v->window >= 1 && v->window <= DM_WINDOW_MAX;
    return window_ok && (v->dtype == DM_F16 || v->dtype == DM_BF16 || v->dtype == DM_F32) &&
           layout_ok(v->mask) && v->dir == DM_DIR_FWD && v->head_dim == 0 &&
           v->bias == DM_LAYOUT_NONE && !v->causal && !v->softcap && !v->decode &&
           (int)v->arch >= 0 && (int)v->arch < DM_ARCH_COUNT;
}

static bool head_dim_ok(int d)
{
    return d >= DM_HEAD_DIM_MIN && d <= DM_HEAD_DIM_MAX && d % DM_HEAD_DIM_STEP == 0;
}

/* A combine key uses head_dim, dtype and arch only. */
static bool combine_ok(const dm_variant *v)
{
    return head_dim_ok(v->head_dim) && (v->dtype == DM_F16 || v->dtype == DM_BF16) &&
           v->dir == DM_DIR_FWD && v->mask == DM_LAYOUT_NONE && v->bias == DM_LAYOUT_NONE &&
           v->window == 0 && !v->varlen && !v->causal && !v->softcap && !v->decode && !v->relu &&
           !v->smooth && (int)v->arch >= 0 && (int)v->arch < DM_ARCH_COUNT;
}

static bool variant_ok(const dm_variant *v)
{
    if (v->family == DM_FAMILY_WMASK)
        return wmask_ok(v);
    if (v->family == DM_FAMILY_COMBINE)
        return combine_ok(v);
    return v->family == DM_FAMILY_ATTN && !v->relu && !v->smooth &&
           (v->dir == DM_DIR_FWD || v->dir == DM_DIR_BWD || v->dir == DM_DIR_BWD_ROWS ||
            v->dir == DM_DIR_BWD_DET) &&
           head_dim_ok(v->head_dim) &&
           (v->dtype == DM_F16 || v->dtype == DM_BF16) && layout_ok(v->mask) &&
           layout_ok(v->bias) && v->window >= 0 && v->window <= DM_WINDOW_MAX &&
           (int)v->arch >= 0 && (int)v->arch < DM_ARCH_COUNT;
}

/* Returns -1 (as snprintf does on error) for a NULL or invalid variant, so that every text this
 * prints parses back to the same variant. */
int dm_variant_format(const dm_variant *v, char *buf, size_t n)
{
    if (v == NULL || !variant_ok(v) || (buf == NULL && n > 0))
        return -1;
    if (v->family == DM_FAMILY_WMASK)
        return snprintf(buf, n, "wmask.w%d.%s.mask-%s%s%s%s.%s", v->window,
                        dm_dtype_name(v->dtype), layout_names[v->mask], v->relu ? ".relu" : "",
                        v->smooth ? ".smooth" : "", v->varlen ? ".varlen" : "",
                        dm_arch_name(v->arch));
    if (v->family == DM_FAMILY_COMBINE)
        return snprintf(buf, n, "combine.d%d.%s.%s", v->head_dim, dm_dtype_name(v->dtype),
                        dm_arch_name(v->arch));
    return snprintf(buf, n, "%s.d%d.%s.mask-%s.bias-%s.w%d%s%s%s%s.%s",
                    dm_dir_name(v->dir), v->head_dim, dm_dtype_name(v->dtype),
                    layout_names[v->mask], layout_names[v->bias], v->window,
                    v->varlen ? ".varlen" : "", v->causal ? ".causal" : "",
                    v->softcap ? ".softcap" : "", v->decode ? ".decode" : "",
                    dm_arch_name(v->arch));
}

/* Decimal digits of the largest value a numeric field takes: prefixed_decimal's max_digits. */
static size_t digits_of(long max)
{
    size_t n = 1;
    while (max >= 10) {
        max /= 10;
        n++;
    }
    return n;
}

/* wmask.w<W>.dtype.mask-<l>[.relu][.smooth][.varlen].sm<NN>, from field 2 on (p is past
 * "wmask."). */
static dm_status parse_wmask(const char *p, dm_variant *out, char *err, size_t err_bytes)
{
    enum { N_WFLAGS = 3 };
    static const char *const wflags[N_WFLAGS] = {"relu", "smooth", "varlen"};
    static const char *const flags_after[N_WFLAGS + 1] = {"relu, smooth, varlen or ",
                                                          "smooth, varlen or ", "varlen or ", ""};
    dm_variant v = {.family = DM_FAMILY_WMASK};
    span f, wf;
    long num;
    int index, next_flag = 0;
    char expected[160], archs[ARCH_LIST_MAX], windows[48], after[96];

    dm_arch_list_text(archs, sizeof archs, "|", "|");
    snprintf(windows, sizeof windows, "w<1..%d> (w0 with relu)", DM_WINDOW_MAX);
    if (!next_field(&p, &f))
        return field_err(err, err_bytes, 2, "window", NULL, windows);
    num = prefixed_decimal(&f, 'w', digits_of(DM_WINDOW_MAX));
    if (num < 0 || num > DM_WINDOW_MAX)
        return field_err(err, err_bytes, 2, "window", &f, windows);
    v.window = (int)num;
    wf = f;

    if (!next_field(&p, &f))
        return field_err(err, err_bytes, 3, "dtype", NULL, "f16, bf16 or f32");
    if (span_is(&f, "f16"))
        v.dtype = DM_F16;
    else if (span_is(&f, "bf16"))
        v.dtype = DM_BF16;
    else if (span_is(&f, "f32"))
        v.dtype = DM_F32;
    else
        return field_err(err, err_bytes, 3, "dtype", &f, "f16, bf16 or f32");

    if (!next_field(&p, &f))
        return field_err(err, err_bytes, 4, "mask", NULL, "mask-none, mask-q or mask-k");
    if (!parse_layout(&f, "mask-", &v.mask))
        return field_err(err, err_bytes, 4, "mask", &f, "mask-none, mask-q or mask-k");

    for (index = 5;; index++) {
        const char *name = next_flag < N_WFLAGS ? "flag or arch" : "arch";
        int flag = -1;
        snprintf(after, sizeof after, "%s%s", flags_after[next_flag], archs);
        if (!next_field(&p, &f))
            return field_err(err, err_bytes, index, name, NULL, after);
        if (parse_arch_span(&f, &v.arch))
            break;
        for (int i = 0; i < N_WFLAGS; i++)
            if (span_is(&f, wflags[i]))
                flag = i;
        if (flag < next_flag) {
            snprintf(expected, sizeof expected, "%s%s", after,
                     flag >= 0 ? " (flags once each, in the order relu, smooth, varlen)" : "");
            return field_err(err, err_bytes, index, name, &f, expected);
        }
        if (flag == 0)
            v.relu = true;
        else if (flag == 1)
            v.smooth = true;
        else
            v.varlen = true;
        next_flag = flag + 1;
    }
    if (next_field(&p, &f)) {
        snprintf(expected, sizeof expected, "nothing after the arch %s", dm_arch_name(v.arch));
        return field_err(err, err_bytes, index + 1, "end", &f, expected);
    }
    /* The window's meaning depends on the selection, known only now. */
    if (v.relu && v.window != 0)
        return field_err(err, err_bytes, 2, "window", &wf,
                         "w0 with relu (relu selects by sign, not top-k)");
    if (!v.relu && v.window == 0) {
        snprintf(expected, sizeof expected, "w<1..%d> for top-k (w0 only with relu)",
                 DM_WINDOW_MAX);
        return field_err(err, err_bytes, 2, "window", &wf, expected);
    }
    *out = v;
    return DM_OK;
}

/* combine.d<D>.dtype.sm<NN>, from field 2 on (p is past "combine."). */
static dm_status parse_combine(const char *p, dm_variant *out, char *err, size_t err_bytes)
{
    dm_variant v = {.family = DM_FAMILY_COMBINE};
    span f;
    long num;
    char head_dims[48], archs[ARCH_LIST_MAX], expected[96];

    snprintf(head_dims, sizeof head_dims, "d<%d..%d, multiple of %d>", DM_HEAD_DIM_MIN,
             DM_HEAD_DIM_MAX, DM_HEAD_DIM_STEP);
    dm_arch_list_text(archs, sizeof archs, "|", "|");
    if (!next_field(&p, &f))
        return field_err(err, err_bytes, 2, "head_dim", NULL, head_dims);
    num = prefixed_decimal(&f, 'd', digits_of(DM_HEAD_DIM_MAX));
    if (!head_dim_ok((int)num))
        return field_err(err, err_bytes, 2, "head_dim", &f, head_dims);
    v.head_dim = (int)num;
    if (!next_field(&p, &f))
        return field_err(err, err_bytes, 3, "dtype", NULL, "f16 or bf16");
    if (span_is(&f, "f16"))
        v.dtype = DM_F16;
    else if (span_is(&f, "bf16"))
        v.dtype = DM_BF16;
    else
        return field_err(err, err_bytes, 3, "dtype", &f, "f16 or bf16");
    if (!next_field(&p, &f))
        return field_err(err, err_bytes, 4, "arch", NULL, archs);
    if (!parse_arch_span(&f, &v.arch))
        return field_err(err, err_bytes, 4, "arch", &f, archs);
    if (next_field(&p, &f)) {
        snprintf(expected, sizeof expected, "nothing after the arch %s", dm_arch_name(v.arch));
        return field_err(err, err_bytes, 5, "end", &f, expected);
    }
    *out = v;
    return DM_OK;
}

dm_status dm_variant_parse(const char *text, dm_variant *out, char *err, size_t err_bytes)
{
    dm_variant v = {0};
    const char *p = text;
    span f;
    long num;
    int index = 1;
    int next_flag = 0; /* flags [0, next_flag) are passed: each may appear once, in order */
    char expected[192]; /* longest: three flags, the arch list and the order note */
    char head_dims[48], windows[32];

    snprintf(head_dims, sizeof head_dims, "d<%d..%d, multiple of %d>", DM_HEAD_DIM_MIN,
             DM_HEAD_DIM_MAX, DM_HEAD_DIM_STEP);
    snprintf(windows, sizeof windows, "w<0..%d>", DM_WINDOW_MAX);
    if (text == NULL) {
        set_err(err, err_bytes, "variant text is NULL: expected e.g. %s",
                "fwd.d128.bf16.mask-none.bias-none.w0.sm80");
        return DM_ERR_INVALID_ARG;
    }
    if (out == NULL) {
        set_err(err, err_bytes, "out is NULL: expected a dm_variant to fill in");
        return DM_ERR_INVALID_ARG;
    }

    next_field(&p, &f); /* the first field always exists, if only as '' */
    if (span_is(&f, "fwd"))
        v.dir = DM_DIR_FWD;
    else if (span_is(&f, "bwd"))
        v.dir = DM_DIR_BWD;
    else if (span_is(&f, "bwdrows"))
        v.dir = DM_DIR_BWD_ROWS;
    else if (span_is(&f, "bwddet"))
        v.dir = DM_DIR_BWD_DET;
    else if (span_is(&f, "wmask"))
        return parse_wmask(p, out, err, err_bytes);
    else if (span_is(&f, "combine"))
        return parse_combine(p, out, err, err_bytes);
    else
        return field_err(err, err_bytes, 1, "direction", &f,
                         "fwd, bwd, bwdrows, bwddet, wmask or combine");

    index = 2;
    if (!next_field(&p, &f))
        return field_err(err, err_bytes, index, "head_dim", NULL, head_dims);
    num = prefixed_decimal(&f, 'd', digits_of(DM_HEAD_DIM_MAX));
    if (num < DM_HEAD_DIM_MIN || num > DM_HEAD_DIM_MAX || num % DM_HEAD_DIM_STEP != 0)
        return field_err(err, err_bytes, index, "head_dim", &f, head_dims);
    v.head_dim = (int)num;

    index = 3;
    if (!next_field(&p, &f))
        return field_err(err, err_bytes, index, "dtype", NULL, "f16 or bf16");
    if (span_is(&f, "f16"))
        v.dtype = DM_F16;
    else if (span_is(&f, "bf16"))
        v.dtype = DM_BF16;
    else
        return field_err(err, err_bytes, index, "dtype", &f, "f16 or bf16");

    index = 4;
    if (!next_field(&p, &f))
        return field_err(err, err_bytes, index, "mask", NULL, "mask-none, mask-q or mask-k");
    if (!parse_layout(&f, "mask-", &v.mask))
        return field_err(err, err_bytes, index, "mask", &f, "mask-none, mask-q or mask-k");

    index = 5;
    if (!next_field(&p, &f))
        return field_err(err, err_bytes, index, "bias", NULL, "bias-none, bias-q or bias-k");
    if (!parse_layout(&f, "bias-", &v.bias))
        return field_err(err, err_bytes, index, "bias", &f, "bias-none, bias-q or bias-k");

    index = 6;
    if (!next_field(&p, &f))
        return field_err(err, err_bytes, index, "window", NULL, windows);
    num = prefixed_decimal(&f, 'w', digits_of(DM_WINDOW_MAX));
    if (num < 0 || num > DM_WINDOW_MAX)
        return field_err(err, err_bytes, index, "window", &f, windows);
    v.window = (int)num;

    /* Flags in order, then the arch, which must be last. */
    for (index = 7;; index++) {
        const char *name = next_flag < FLAG_COUNT ? "flag or arch" : "arch";
        int flag = -1;

        expected_after_flags(next_flag, expected, sizeof expected);
        if (!next_field(&p, &f))
            return field_err(err, err_bytes, index, name, NULL, expected);
        if (parse_arch_span(&f, &v.arch))
            break;
        for (int i = 0; i < FLAG_COUNT; i++) {
            if (span_is(&f, flag_names[i]))
                flag = i;
        }
        if (flag >= 0 && flag < next_flag) {
            size_t used = strlen(expected);
            snprintf(expected + used, sizeof expected - used,
                     " (flags once each, in the order varlen, causal, softcap, decode)");
        }
        if (flag < next_flag)
            return field_err(err, err_bytes, index, name, &f, expected);
        if (flag == FLAG_VARLEN)
            v.varlen = true;
        else if (flag == FLAG_CAUSAL)
            v.causal = true;
        else if (flag == FLAG_SOFTCAP)
            v.softcap = true;
        else
            v.decode = true;
        next_flag = flag + 1;
    }

    if (next_field(&p, &f)) {
        snprintf(expected, sizeof expected, "nothing after the arch %s", dm_arch_name(v.arch));
        return field_err(err, err_bytes, index + 1, "end", &f, expected);
    }
    *out = v;
    return DM_OK;
}

const char *dm_dir_name(dm_dir d)
{
    return (int)d >= 0 && (int)d < (int)(sizeof dir_names / sizeof dir_names[0]) ? dir_names[d]
                                                                                : "?";
}

const char *dm_dtype_name(dm_dtype t)
{
    switch (t) {
    case DM_DTYPE_NONE:
        return "none";
    case DM_F16:
        return "f16";
    case DM_BF16:
        return "bf16";
    case DM_F32:
        return "f32";
    case DM_BOOL:
        return "bool";
    case DM_I32:
        return "i32";
    }
    return "?";
}
