/* dmbench_cli.c: dmbench's command-line and report helpers, shared by its modes: messages,
 * "--name VALUE" options and comma lists, and the CSV/JSON/status text. No device calls. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dmbench.h"

const char *const path_names[3] = {"auto", "tiled", "decode"};
const int64_t path_values[3] = {DM_PATH_AUTO, DM_PATH_TILED, DM_PATH_DECODE};

/* ---- messages -------------------------------------------------------------------------------- */

/* "dmbench: <reason>": one line on stderr. */
void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("dmbench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

double dtype_size(dm_dtype t)
{
    return t == DM_F32 ? 4 : t == DM_BOOL ? 1 : 2;
}

const char *dtype_text(dm_dtype t)
{
    return t == DM_BF16 ? "bf16" : t == DM_F16 ? "f16" : t == DM_F32 ? "f32" : "?";
}

/* (query i, key j) pairs visible under the causal rule j <= i + Lk - Lq, or all of them:
 * the sum over i of clamp(i + Lk - Lq + 1, 0, Lk), in closed form. */
double visible_pairs(int64_t Lq_, int64_t Lk_, bool causal)
{
    double Lq = (double)Lq_, Lk = (double)Lk_;
    if (!causal)
        return Lq * Lk;
    double lo = Lk - Lq + 1, hi = Lk; /* the count for i = 0 and for i = Lq - 1, unclamped */
    double sum = 0, a = fmax(lo, 1), b = fmin(hi, Lk);
    if (a <= b)
        sum += (a + b) * (b - a + 1) / 2;
    double full_from = fmax(lo, Lk + 1); /* never above Lk: hi = Lk */
    if (full_from <= hi)
        sum += (hi - full_from + 1) * Lk;
    return sum;
}


/* ---- option parsing -------------------------------------------------------------------------- */

/* Matches "--name VALUE" or "--name=VALUE". *value is NULL when the value is missing. */
bool take(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *s = argv[*i];
    size_t n = strlen(name);
    if (strcmp(s, name) == 0) {
        *value = *i + 1 < argc ? argv[++*i] : NULL;
        return true;
    }
    if (strncmp(s, name, n) == 0 && s[n] == '=') {
        *value = s + n + 1;
        return true;
    }
    return false;
}

bool parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Splits `text` at commas and hands each item to `item`, which returns false (and prints
 * nothing) on a bad value; then the message names the option, the item and what was expected. */
bool for_each_item(const char *opt, const char *text, const char *expected, item_fn fn,
                          void *ctx, int *count)
{
    char item[256];
    int n = 0;
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= sizeof item) {
            fail("%s: '%s': %s", opt, text, len ? "item too long" : "empty item in the list");
            return false;
        }
        if (n == MAX_LIST) {
            fail("%s: '%s': more than %d values", opt, text, MAX_LIST);
            return false;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (!fn(item, ctx, n)) {
            fail("%s: '%s': expected %s", opt, item, expected);
            return false;
        }
        n++;
        if (!comma)
            break;
        p = comma + 1;
    }
    *count = n;
    return true;
}

typedef struct int_range {
    int_list *list;
    int64_t lo, hi;
} int_range;

static bool int_item(const char *item, void *ctx, int index)
{
    int_range *r = ctx;
    return parse_int(item, r->lo, r->hi, &r->list->v[index]);
}

bool parse_int_list(const char *opt, const char *text, int64_t lo, int64_t hi,
                           int_list *list)
{
    char expected[96];
    int_range r = {list, lo, hi};
    snprintf(expected, sizeof expected, "integers from %lld to %lld", (long long)lo,
             (long long)hi);
    return for_each_item(opt, text, expected, int_item, &r, &list->n);
}

typedef struct num_range {
    num_list *list;
    double lo, hi;
} num_range;

static bool num_item(const char *item, void *ctx, int index)
{
    num_range *r = ctx;
    char *end;
    errno = 0;
    double v = strtod(item, &end);
    if (errno || end == item || *end || !isfinite(v) || v < r->lo || v > r->hi)
        return false;
    r->list->v[index] = v;
    return true;
}

bool parse_num_list(const char *opt, const char *text, double lo, double hi,
                           const char *expected, num_list *list)
{
    num_range r = {list, lo, hi};
    return for_each_item(opt, text, expected, num_item, &r, &list->n);
}

typedef struct name_set {
    int_list *list;
    const char *const *names;
    const int64_t *values;
    int n;
} name_set;

static bool name_item(const char *item, void *ctx, int index)
{
    name_set *s = ctx;
    for (int i = 0; i < s->n; i++)
        if (strcmp(item, s->names[i]) == 0) {
            s->list->v[index] = s->values[i];
            return true;
        }
    return false;
}

bool parse_name_list(const char *opt, const char *text, const char *const *names,
                            const int64_t *values, int n, const char *expected, int_list *list)
{
    name_set s = {list, names, values, n};
    return for_each_item(opt, text, expected, name_item, &s, &list->n);
}

void set_default(int_list *l, int64_t v)
{
    if (l->n == 0) {
        l->v[0] = v;
        l->n = 1;
    }
}


/* ---- reports --------------------------------------------------------------------------------- */

int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

const char *status_text(outcome o)
{
    return o == OUT_OK ? "ok" : o == OUT_FAILED ? "failed" : o == OUT_SKIPPED ? "skipped"
                                                                              : "not_run";
}

void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

bool close_file(FILE *f, const char *opt, const char *path)
{
    if (!f)
        return true;
    bool ok = !ferror(f);
    ok = fclose(f) == 0 && ok;
    if (!ok)
        fail("%s: cannot write '%s': %s", opt, path, strerror(errno));
    return ok;
}

void table_tail(const result *r, double flops, double bytes, double copy_gbps)
{
    if (r->out == OUT_OK) {
        double gbps = bytes / r->ms_median / 1e6;
        printf(" | %9.4f %8.1f %8.1f", r->ms_median, flops / r->ms_median / 1e9, gbps);
        if (copy_gbps > 0)
            printf(" %6.1f", 100 * gbps / copy_gbps);
        putchar('\n');
    } else
        printf(" | %9s\n", r->out == OUT_SKIPPED ? "skipped" : r->out == OUT_FAILED ? "FAILED"
                                                                                     : "not run");
    fflush(stdout);
}

int sweep_run(const sweep_ops *ops, result *res, FILE *csv, FILE *json, bool tty)
{
    double t0 = now_s();
    int n_ok = 0, n_failed = 0, n_skipped = 0, n_not_run = 0;
    bool alive = true;
    for (int i = 0; i < ops->n; i++) {
        char label[512];
        ops->describe(ops->ctx, i, label, sizeof label);
        if (alive) {
            if (tty)
                fprintf(stderr, "\r\033[K[%d/%d] %s", i + 1, ops->n, label);
            alive = ops->run(ops->ctx, i, label, &res[i]);
            if (tty)
                fputs("\r\033[K", stderr);
            if (!alive)
                fail("the CUDA context is unusable: the remaining cases are not run");
        }
        ops->table_row(ops->ctx, i, &res[i]);
        if (csv)
            ops->csv_row(ops->ctx, csv, i, &res[i]);
        if (json)
            ops->json_row(ops->ctx, json, i, &res[i], i == 0);
        n_ok += res[i].out == OUT_OK;
        n_failed += res[i].out == OUT_FAILED;
        n_skipped += res[i].out == OUT_SKIPPED;
        n_not_run += res[i].out == OUT_NOT_RUN;
    }
    if (json)
        fputs("\n  ]\n}\n", json);
    fprintf(stderr, "dmbench: %d case%s: %d ok, %d failed, %d skipped", ops->n,
            ops->n == 1 ? "" : "s", n_ok, n_failed, n_skipped);
    if (n_not_run)
        fprintf(stderr, ", %d not run", n_not_run);
    fprintf(stderr, " in %.1f s\n", now_s() - t0);
    return n_failed || n_not_run ? EXIT_FAIL : EXIT_OK;
}
