/* dmgen.c: the offline tool (SPEC §6): emits a variant's CUDA source, builds cubins ahead of time
 * into the disk cache (no GPU needed), lists, clears and describes the cache and the toolchain.
 * It reaches every stage through the internal headers, and owns no cache policy of its own:
 * what lands on disk, and how, is kernels.c's and cache.c's business.
 *
 * Results go to stdout; progress and diagnostics to stderr. Exit 0 on success, 1 on failure,
 * 2 on a usage error (including a variant text that does not parse). */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lua.h> /* LUA_RELEASE for --version */

#include "cache.h"
#include "ctx.h"
#include "driver.h"
#include "gen.h"
#include "kernels.h"
#include "nvrtc_compile.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* A sweep larger than this is almost certainly a typo (every axis value at once is ~25k). */
#define MAX_VARIANTS 50000

/* Named sweeps for `dmgen build --preset NAME`. Each pattern is a variant without its arch
 * field, with comma lists inside fields; it is expanded once per arch of --arch. */
static const struct preset {
    const char *name;
    const char *what;
    const char *patterns[8]; /* NULL-terminated */
} presets[] = {
    /* What the README's main command builds: the forward kernels a typical deployment hits
     * (d64/d128, fp16/bf16, no mask or a key mask, any bias layout, causal or not): 48 per arch;
     * and what a decode server hits first (dm_fwd and dm_fwd_varlen with at most 16 queries a
     * sequence take the decode path): d128 f16/bf16 decode kernels with no mask or a key mask
     * and no bias or a key bias (the layouts the decode path runs), causal or not, dense and
     * varlen, and the split-KV combine that merges their splits: 34 per arch. */
    {"default",
     "fwd d64/128 f16/bf16 mask none/k bias none/k/q causal 0/1; decode d128 + combine",
     {"fwd.d64,128.f16,bf16.mask-none,k.bias-none,k,q.w0",
      "fwd.d64,128.f16,bf16.mask-none,k.bias-none,k,q.w0.causal",
      "fwd.d128.f16,bf16.mask-none,k.bias-none,k.w0.decode",
      "fwd.d128.f16,bf16.mask-none,k.bias-none,k.w0.causal.decode",
      "fwd.d128.f16,bf16.mask-none,k.bias-none,k.w0.varlen.decode",
      "fwd.d128.f16,bf16.mask-none,k.bias-none,k.w0.varlen.causal.decode",
      "combine.d128.f16,bf16", NULL}},
    /* What a training run's backward hits (dm_bwd; not in the main command, whose build time it
     * would double: NVRTC takes 2-3 s a d128 backward kernel on 2 cores): d64/d128, fp16/bf16,
     * no mask or a key mask, no bias or a key bias (the learned-bias models' layout), causal or
     * not: 32 per arch. */
    {"training", "bwd d64/128 f16/bf16 mask none/k bias none/k causal 0/1",
     {"bwd.d64,128.f16,bf16.mask-none,k.bias-none,k.w0",
      "bwd.d64,128.f16,bf16.mask-none,k.bias-none,k.w0.causal", NULL}},
    /* The same backward in the deterministic mode (dm_bwd with deterministic = 1): its bwddet
     * kernels (the dq turns, gen.h), which the default mode's bwd kernels leave out: 32 per arch. */
    {"training-deterministic", "bwddet d64/128 f16/bf16 mask none/k bias none/k causal 0/1",
     {"bwddet.d64,128.f16,bf16.mask-none,k.bias-none,k.w0",
      "bwddet.d64,128.f16,bf16.mask-none,k.bias-none,k.w0.causal", NULL}},
    /* A varlen (cu_seqlens) training run: the tiled varlen forward (dm_fwd_varlen with more than
     * 16 queries a sequence) and dm_bwd_varlen, over the same axes as "training": 64 per arch. */
    {"training-varlen", "fwd + bwd varlen d64/128 f16/bf16 mask none/k bias none/k causal 0/1",
     {"fwd.d64,128.f16,bf16.mask-none,k.bias-none,k.w0.varlen",
      "fwd.d64,128.f16,bf16.mask-none,k.bias-none,k.w0.varlen.causal",
      "bwd.d64,128.f16,bf16.mask-none,k.bias-none,k.w0.varlen",
      "bwd.d64,128.f16,bf16.mask-none,k.bias-none,k.w0.varlen.causal", NULL}},
};
#define N_PRESETS (sizeof presets / sizeof presets[0])
static const char *default_archs = "sm80,sm90a"; /* what A100 and H100 map to */

/* ---- messages ---------------------------------------------------------------------------- */

static void fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "dmgen: build: <reason>": one line on stderr. */
static void fail(const char *cmd, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "dmgen: %s: %s\n", cmd, line);
    else
        fprintf(stderr, "dmgen: %s\n", line);
}

static const char *lua_version_text(void)
{
    return LUA_RELEASE; /* "Lua 5.4.6" */
}

/* One %s: the arch list, from the arch table. */
static const char usage_main[] =
    "usage: dmgen [--help] [--version] COMMAND [ARGS]\n"
    "\n"
    "Generates, builds ahead of time and manages dmattn's CUDA kernels (attention, window masks).\n"
    "\n"
    "commands:\n"
    "  emit VARIANT      print the generated CUDA source of one variant\n"
    "  build VARIANT...  compile variants into the disk cache (no GPU needed)\n"
    "  list              list the cache entries\n"
    "  clear             remove the cache entries\n"
    "  info              versions, templates, cache and CUDA devices\n"
    "  help [COMMAND]    this text, or a command's\n"
    "\n"
    "A VARIANT is a canonical key, e.g. fwd.d128.bf16.mask-k.bias-q.w0.causal.sm90:\n"
    "  dir.d<head_dim>.dtype.mask-<none|q|k>.bias-<none|q|k>.w<window>[.varlen][.causal]\n"
    "  [.softcap].<%s>\n"
    "or a window-mask key (SPEC 4), e.g. wmask.w2048.bf16.mask-k.sm90:\n"
    "  wmask.w<window>.<f16|bf16|f32>.mask-<none|q|k>[.relu][.smooth][.varlen].sm<NN>\n"
    "  (relu: w0; varlen: dm_window_mask_varlen's kernel)\n"
    "or a split-KV combine key (the decode path's merge), e.g. combine.d128.bf16.sm90a:\n"
    "  combine.d<head_dim>.<f16|bf16>.sm<NN>\n"
    "\n"
    "The cache is $DMATTN_CACHE_DIR, else $XDG_CACHE_HOME/dmattn, else ~/.cache/dmattn;\n"
    "every command that uses it takes --cache DIR instead.\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

static const char usage_emit[] =
    "usage: dmgen emit VARIANT\n"
    "\n"
    "Prints the CUDA source the templates generate for VARIANT (the text NVRTC compiles).\n"
    "Templates come from $DMATTN_TEMPLATE_DIR when set, else the embedded copies.\n"
    "Exit status: 0 success, 1 generation failed, 2 usage error (VARIANT does not parse).\n";

static const char usage_build[] =
    "usage: dmgen build [-j N] [--cache DIR] [--preset NAME [--arch LIST]] [-n] [-v]\n"
    "                   [VARIANT...]\n"
    "\n"
    "Compiles each variant with NVRTC into the disk cache, so that later runs (on this or\n"
    "another machine sharing the directory) load cubins without compiling. No GPU needed.\n"
    "A VARIANT field may hold a comma list; the command builds the cartesian product. A later\n"
    "value may leave out the field's prefix (d64,128  mask-none,k  sm80,90):\n"
    "  fwd.d64,128.bf16,f16.mask-none,k.bias-none.w0.sm80,sm90   (16 variants)\n"
    "\n"
    "options:\n"
    "  -j, --jobs N      compile N variants at a time (default: the number of online CPUs)\n"
    "  --cache DIR       the cache directory (default: see dmgen --help)\n"
    "  --preset NAME     add a named set of variants (dmgen build --help lists them)\n"
    "  --arch LIST       archs for --preset, comma separated (default sm80,sm90a)\n"
    "  -n, --dry-run     print the variants that would be built, one a line; build nothing\n"
    "  -v, --verbose     one line per variant on stderr (compiled, cached or failed)\n"
    "\n"
    "presets:\n";

static const char usage_build_tail[] =
    "\n"
    "A progress line is shown on a terminal; a summary line always ends the run on stderr.\n"
    "Exit status: 0 all built or cached, 1 any failed, 2 usage error.\n";

static const char usage_list[] =
    "usage: dmgen list [--cache DIR]\n"
    "\n"
    "Prints one line per cache entry: file name, cubin bytes, variant, and CORRUPT for an entry\n"
    "whose checks fail (it is rebuilt on next use). A summary goes to stderr.\n";

static const char usage_clear[] =
    "usage: dmgen clear [--cache DIR]\n"
    "\n"
    "Removes every cache entry (and temporary files left by killed writers).\n";

static const char usage_info[] =
    "usage: dmgen info [--cache DIR]\n"
    "\n"
    "Prints the versions of dmattn, NVRTC and Lua, the templates, the cache location and size,\n"
    "and the CUDA devices (or why there are none). Needs no GPU or driver.\n";

static void print_build_usage(FILE *f)
{
    fputs(usage_build, f);
    for (size_t i = 0; i < N_PRESETS; i++)
        fprintf(f, "  %-16s  %s\n", presets[i].name, presets[i].what);
    fputs(usage_build_tail, f);
}

/* ---- option parsing ---------------------------------------------------------------------- */

/* A tiny argument scanner: "-j N", "-jN", "--jobs N", "--jobs=N"; "--" ends options. */
typedef struct args {
    int argc;
    char **argv;
    int i;
    bool only_operands; /* after "--" */
} args;

/* True when argv[i] is option `shortname` / `longname` taking a value; stores it in *value
 * (NULL when missing, which the caller reports). */
static bool take_valued(args *a, const char *shortname, const char *longname, const char **value)
{
    const char *s = a->argv[a->i];
    size_t ln = longname ? strlen(longname) : 0;
    if ((shortname && strcmp(s, shortname) == 0) || (longname && strcmp(s, longname) == 0)) {
        *value = a->i + 1 < a->argc ? a->argv[++a->i] : NULL;
        return true;
    }
    if (shortname && strncmp(s, shortname, strlen(shortname)) == 0 && s[1] != '-' &&
        s[strlen(shortname)] != '\0') {
        *value = s + strlen(shortname);
        return true;
    }
    if (longname && strncmp(s, longname, ln) == 0 && s[ln] == '=') {
        *value = s + ln + 1;
        return true;
    }
    return false;
}

static bool is_help(const char *s) { return strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0; }

/* Parses the one option list/clear/info take. Returns -1 to go on, else an exit status. */
static int parse_cache_only(const char *cmd, const char *usage, int argc, char **argv,
                            const char **cache)
{
    args a = {argc, argv, 0, false};
    for (; a.i < argc; a.i++) {
        const char *s = argv[a.i];
        const char *val;
        if (is_help(s)) {
            fputs(usage, stdout);
            return EXIT_OK;
        }
        if (take_valued(&a, NULL, "--cache", &val)) {
            if (!val || !*val) {
                fail(cmd, "--cache needs a directory");
                return EXIT_USAGE;
            }
            *cache = val;
            continue;
        }
        if (s[0] == '-')
            fail(cmd, "unknown option '%s' (see dmgen %s --help)", s, cmd);
        else
            fail(cmd, "unexpected argument '%s' (see dmgen %s --help)", s, cmd);
        return EXIT_USAGE;
    }
    return -1;
}

/* The cache directory to use: --cache, else the library default, resolved as an offline
 * context resolves it. Returns false (with a message) when there is none. */
static bool resolve_cache_dir(const char *cmd, const char *given, char *dir, size_t dir_bytes)
{
    dm_ctx *ctx = NULL;
    bool ok = false;
    if (dm_ctx_create(&ctx, DM_NO_DEVICE) != DM_OK) {
        fail(cmd, "%s", dm_errmsg(ctx));
        goto out;
    }
    dm_ctx_set_verbosity(ctx, 0);
    if (dm_ctx_set_cache_dir(ctx, given) != DM_OK) {
        fail(cmd, "%s", dm_errmsg(ctx));
        goto out;
    }
    if (!dm_ctx_cache_dir(ctx)[0]) {
        fail(cmd, "no cache directory: $DMATTN_CACHE_DIR, $XDG_CACHE_HOME and $HOME are unset; "
                  "give --cache DIR");
        goto out;
    }
    if (strlen(dm_ctx_cache_dir(ctx)) >= dir_bytes) {
        fail(cmd, "cache directory path too long");
        goto out;
    }
    snprintf(dir, dir_bytes, "%s", dm_ctx_cache_dir(ctx));
    ok = true;
out:
    dm_ctx_destroy(ctx);
    return ok;
}

static bool dir_exists(const char *dir)
{
    struct stat sb;
    return stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* ---- emit -------------------------------------------------------------------------------- */

static int cmd_emit(int argc, char **argv)
{
    const char *text = NULL;
    char err[1024];
    dm_variant v;
    dm_kernel_src src = {0};
    int rc;

    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(usage_emit, stdout);
            return EXIT_OK;
        }
        if (argv[i][0] == '-' && strcmp(argv[i], "-") != 0) {
            fail("emit", "unknown option '%s' (see dmgen emit --help)", argv[i]);
            return EXIT_USAGE;
        }
        if (text) {
            fail("emit", "one VARIANT at a time (got '%s' and '%s')", text, argv[i]);
            return EXIT_USAGE;
        }
        text = argv[i];
    }
    if (!text) {
        fail("emit", "no VARIANT given (see dmgen emit --help)");
        return EXIT_USAGE;
    }
    if (dm_variant_parse(text, &v, err, sizeof err) != DM_OK) {
        fail("emit", "cannot parse '%s': %s", text, err);
        return EXIT_USAGE;
    }
    if (dm_gen_emit(&v, &src, err, sizeof err) != DM_OK) {
        fail("emit", "%s", err); /* names the variant already */
        return EXIT_FAIL;
    }
    rc = EXIT_OK;
    if (fwrite(src.source, 1, src.source_bytes, stdout) != src.source_bytes ||
        fflush(stdout) != 0) {
        fail("emit", "cannot write to stdout: %s", strerror(errno));
        rc = EXIT_FAIL;
    }
    dm_kernel_src_free(&src);
    return rc;
}

/* ---- variant lists: axis expansion, presets ---------------------------------------------- */

typedef enum job_result { JOB_PENDING = 0, JOB_BUILT, JOB_CACHED, JOB_FAILED } job_result;

typedef struct job {
    char text[DM_VARIANT_TEXT_MAX]; /* canonical */
    dm_variant v;
    job_result result;
    bool dup; /* repeats an earlier job: dropped before building */
} job;

typedef struct job_list {
    job *jobs;
    int n, cap;
} job_list;

static bool job_add(job_list *l, const dm_variant *v)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        job *j = realloc(l->jobs, (size_t)cap * sizeof *j);
        if (!j)
            return false;
        l->jobs = j;
        l->cap = cap;
    }
    job *j = &l->jobs[l->n++];
    memset(j, 0, sizeof *j);
    j->v = *v;
    dm_variant_format(v, j->text, sizeof j->text);
    return true;
}

/* Splits `s` at `sep` into at most max_parts pieces (empty pieces kept), writing NULs into s. */
static int split(char *s, char sep, char **parts, int max_parts)
{
    int n = 0;
    parts[n++] = s;
    for (char *p = s; *p; p++)
        if (*p == sep) {
            if (n == max_parts)
                return -1;
            *p = '\0';
            parts[n++] = p + 1;
        }
    return n;
}

#define MAX_FIELDS 16
#define MAX_ALTS 64

/* How many leading characters of a field's first value a later value of a comma list borrows:
 * "mask-none,k" -> mask-k (the part up to '-'), "d64,128" -> d128 and "sm80,90" -> sm90 (the
 * letters before the number). A value that is complete already ("bf16,f16", "sm80,sm90")
 * borrows nothing. */
static int borrowed_prefix(const char *first, const char *value)
{
    const char *dash = strchr(first, '-');
    if (dash && !strchr(value, '-'))
        return (int)(dash - first) + 1;
    if (*value >= '0' && *value <= '9') {
        int n = 0;
        while (first[n] && !(first[n] >= '0' && first[n] <= '9'))
            n++;
        return n;
    }
    return 0;
}

/* Expands one argument: each '.'-separated field may hold a comma list, and the result is the
 * cartesian product (last field varying fastest), each parsed as a canonical variant.
 * Returns -1 to go on, else an exit status (a message is printed). */
static int expand_into(const char *cmd, const char *arg, job_list *out)
{
    /* A value plus its borrowed prefix is at most twice its field: 2x the argument suffices. */
    char *copy = strdup(arg), *text = malloc(2 * strlen(arg) + 2);
    char *fields[MAX_FIELDS], *alts[MAX_FIELDS][MAX_ALTS];
    int n_alts[MAX_FIELDS], prefix[MAX_FIELDS][MAX_ALTS], pick[MAX_FIELDS] = {0};
    int rc = -1, n_fields;

    if (!copy || !text) {
        fail(cmd, "out of memory");
        rc = EXIT_FAIL;
        goto out;
    }
    n_fields = split(copy, '.', fields, MAX_FIELDS);
    if (n_fields < 0) {
        fail(cmd, "cannot parse '%s': more than %d fields", arg, MAX_FIELDS);
        rc = EXIT_USAGE;
        goto out;
    }
    long total = 1;
    for (int f = 0; f < n_fields; f++) {
        n_alts[f] = split(fields[f], ',', alts[f], MAX_ALTS);
        if (n_alts[f] < 0) {
            fail(cmd, "cannot parse '%s': field %d has more than %d values", arg, f + 1, MAX_ALTS);
            rc = EXIT_USAGE;
            goto out;
        }
        prefix[f][0] = 0;
        for (int k = 1; k < n_alts[f]; k++)
            prefix[f][k] = borrowed_prefix(alts[f][0], alts[f][k]);
        total *= n_alts[f];
        if (total + out->n > MAX_VARIANTS) {
            fail(cmd, "'%s' expands to more than %d variants", arg, MAX_VARIANTS);
            rc = EXIT_USAGE;
            goto out;
        }
    }
    for (long k = 0; k < total; k++) {
        char err[512];
        dm_variant v;
        size_t len = 0;
        for (int f = 0; f < n_fields; f++)
            len += (size_t)sprintf(text + len, "%s%.*s%s", f ? "." : "", prefix[f][pick[f]],
                                   alts[f][0], alts[f][pick[f]]);
        if (dm_variant_parse(text, &v, err, sizeof err) != DM_OK) {
            fail(cmd, "cannot parse '%s': %s", text, err);
            rc = EXIT_USAGE;
            goto out;
        }
        if (!job_add(out, &v)) {
            fail(cmd, "out of memory");
            rc = EXIT_FAIL;
            goto out;
        }
        for (int f = n_fields - 1; f >= 0 && ++pick[f] == n_alts[f]; f--)
            pick[f] = 0;
    }
out:
    free(text);
    free(copy);
    return rc;
}

static int cmp_job_ptr(const void *a, const void *b)
{
    const job *x = *(const job *const *)a, *y = *(const job *const *)b;
    int c = strcmp(x->text, y->text);
    return c ? c : (x < y ? -1 : x > y);
}

/* Drops repeated variants (a preset and an explicit list may overlap), keeping first
 * occurrences in their given order. */
static bool dedupe(job_list *l)
{
    if (l->n < 2)
        return true;
    job **order = malloc((size_t)l->n * sizeof *order);
    if (!order)
        return false;
    for (int i = 0; i < l->n; i++)
        order[i] = &l->jobs[i];
    qsort(order, (size_t)l->n, sizeof *order, cmp_job_ptr);
    for (int i = 1; i < l->n; i++)
        if (strcmp(order[i]->text, order[i - 1]->text) == 0)
            order[i]->dup = true; /* the sort keeps equal texts in job order */
    free(order);
    int kept = 0;
    for (int i = 0; i < l->n; i++)
        if (!l->jobs[i].dup)
            l->jobs[kept++] = l->jobs[i];
    l->n = kept;
    return true;
}

/* ---- build ------------------------------------------------------------------------------- */

typedef struct pool {
    job_list *list;
    const char *cache_dir;
    bool tty;     /* stderr is a terminal: keep one progress line */
    bool verbose; /* one line per variant */
    pthread_mutex_t lock;
    int next, done;
    int built, cached, failed;
} pool;

/* Called with p->lock held. */
static void report(pool *p, const job *j, double ms, const char *why)
{
    p->done++;
    if (p->tty)
        fputs("\r\033[K", stderr);
    if (why)
        fprintf(stderr, "dmgen: %s\n", why); /* "build: variant '...': ..." */
    else if (p->verbose)
        fprintf(stderr, "[%d/%d] %s: %s%.0f ms\n", p->done, p->list->n, j->text,
                j->result == JOB_CACHED ? "cached, " : "compiled in ", ms);
    if (p->tty && p->done < p->list->n)
        fprintf(stderr, "[%d/%d] %s", p->done, p->list->n, j->text);
    fflush(stderr);
}

static void build_one(dm_ctx *ctx, pool *p, job *j)
{
    static const char call[] = "build";
    char why[DM_ERRMSG_BYTES + 256] = "";
    dm_kernel_src src = {0};
    void *cubin = NULL;
    size_t cubin_bytes = 0;
    dm_build_info info = {0};
    double t0 = now_s();

    /* Messages as the library words them: "build: variant '...': ...". */
    if (!ctx) {
        snprintf(why, sizeof why, "%s: variant '%s': cannot create a context: out of memory",
                 call, j->text);
    } else if (dm_build_cubin(ctx, call, &j->v, &src, &cubin, &cubin_bytes, &info) != DM_OK) {
        snprintf(why, sizeof why, "%s", dm_errmsg(ctx));
    } else if (info.source == DM_BUILT_BY_NVRTC && !info.cache_written) {
        /* The cache is what build makes: a cubin that only lived in memory is a failure. */
        snprintf(why, sizeof why,
                 "%s: variant '%s': compiled but not stored in '%s' (the directory is not "
                 "writable: see the warning above)",
                 call, j->text, p->cache_dir);
    }
    free(cubin);
    dm_kernel_src_free(&src);

    pthread_mutex_lock(&p->lock);
    if (why[0]) {
        j->result = JOB_FAILED;
        p->failed++;
    } else if (info.source == DM_BUILT_FROM_DISK) {
        j->result = JOB_CACHED;
        p->cached++;
    } else {
        j->result = JOB_BUILT;
        p->built++;
    }
    report(p, j, info.source == DM_BUILT_BY_NVRTC ? info.compile_ms : (now_s() - t0) * 1e3,
           why[0] ? why : NULL);
    pthread_mutex_unlock(&p->lock);
}

/* Each worker has its own offline context (contexts are single-thread objects) on the same
 * directory; the cache's temp-file-and-rename writes make that safe. */
static void *worker(void *arg)
{
    pool *p = arg;
    dm_ctx *ctx = NULL;
    if (dm_ctx_create(&ctx, DM_NO_DEVICE) != DM_OK || !ctx ||
        dm_ctx_set_cache_dir(ctx, p->cache_dir) != DM_OK) {
        dm_ctx_destroy(ctx);
        ctx = NULL;
    }
    for (;;) {
        pthread_mutex_lock(&p->lock);
        int i = p->next < p->list->n ? p->next++ : -1;
        pthread_mutex_unlock(&p->lock);
        if (i < 0)
            break;
        build_one(ctx, p, &p->list->jobs[i]);
    }
    dm_ctx_destroy(ctx);
    return NULL;
}

static const struct preset *find_preset(const char *name)
{
    for (size_t i = 0; i < N_PRESETS; i++)
        if (strcmp(presets[i].name, name) == 0)
            return &presets[i];
    return NULL;
}

/* Checks an --arch list: comma separated, each one dm_arch_parse accepts. */
static bool check_arch_list(const char *list)
{
    char *copy = strdup(list), *parts[MAX_ALTS];
    bool ok = copy != NULL;
    int n = ok ? split(copy, ',', parts, MAX_ALTS) : -1;
    if (n < 0) {
        fail("build", "--arch '%s': too many archs", list);
        ok = false;
    }
    for (int i = 0; ok && i < n; i++) {
        dm_arch a;
        if (dm_arch_parse(parts[i], &a) != DM_OK) {
            char archs[64];
            dm_arch_list_text(archs, sizeof archs, ", ", " or ");
            fail("build", "--arch '%s': '%s' is not an arch: expected %s, comma separated", list,
                 parts[i], archs);
            ok = false;
        }
    }
    free(copy);
    return ok;
}

static int add_preset(const struct preset *pr, const char *archs, job_list *jobs)
{
    for (int k = 0; pr->patterns[k]; k++) {
        size_t n = strlen(pr->patterns[k]) + strlen(archs) + 2;
        char *pattern = malloc(n);
        if (!pattern) {
            fail("build", "out of memory");
            return EXIT_FAIL;
        }
        snprintf(pattern, n, "%s.%s", pr->patterns[k], archs);
        int rc = expand_into("build", pattern, jobs);
        free(pattern);
        if (rc >= 0)
            return rc;
    }
    return -1;
}

/* Steps over a build option and its value (the first pass checked them all). */
static void skip_build_option(args *a)
{
    const char *val;
    if (!take_valued(a, "-j", "--jobs", &val) && !take_valued(a, NULL, "--cache", &val) &&
        !take_valued(a, NULL, "--preset", &val))
        take_valued(a, NULL, "--arch", &val);
}

static int cmd_build(int argc, char **argv)
{
    const char *cache = NULL, *preset_name = NULL, *archs = NULL, *val;
    bool dry_run = false, verbose = false;
    long n_threads = sysconf(_SC_NPROCESSORS_ONLN);
    char dir[DM_PATH_BYTES], why[1024];
    job_list jobs = {0};
    pthread_t *threads = NULL;
    int rc = EXIT_USAGE, started = 0;
    args a = {argc, argv, 0, false};
    pool p = {0};
    double t0 = now_s();

    if (n_threads < 1)
        n_threads = 1;
    /* Options first (they may follow variants), so that --arch is known before any --preset
     * expands and a usage error is reported before any work. */
    for (; a.i < argc; a.i++) {
        const char *s = argv[a.i];
        if (a.only_operands || s[0] != '-')
            continue;
        if (strcmp(s, "--") == 0) {
            a.only_operands = true;
        } else if (is_help(s)) {
            print_build_usage(stdout);
            rc = EXIT_OK;
            goto out;
        } else if (strcmp(s, "-n") == 0 || strcmp(s, "--dry-run") == 0) {
            dry_run = true;
        } else if (strcmp(s, "-v") == 0 || strcmp(s, "--verbose") == 0) {
            verbose = true;
        } else if (take_valued(&a, "-j", "--jobs", &val)) {
            char *end;
            errno = 0;
            long n = val ? strtol(val, &end, 10) : 0;
            if (!val || !*val || *end || errno || n < 1 || n > 1024) {
                fail("build", "-j '%s': expected a number of jobs from 1 to 1024",
                     val ? val : "");
                goto out;
            }
            n_threads = n;
        } else if (take_valued(&a, NULL, "--cache", &val)) {
            if (!val || !*val) {
                fail("build", "--cache needs a directory");
                goto out;
            }
            cache = val;
        } else if (take_valued(&a, NULL, "--preset", &val)) {
            if (!val || !*val) {
                fail("build", "--preset needs a name");
                goto out;
            }
            preset_name = val;
        } else if (take_valued(&a, NULL, "--arch", &val)) {
            if (!val || !*val) {
                fail("build", "--arch needs a list such as sm80,sm90");
                goto out;
            }
            archs = val;
        } else {
            fail("build", "unknown option '%s' (see dmgen build --help)", s);
            goto out;
        }
    }
    if (archs && !preset_name) {
        fail("build", "--arch applies to --preset; a VARIANT names its own arch");
        goto out;
    }
    if (archs && !check_arch_list(archs))
        goto out;
    if (preset_name) {
        const struct preset *pr = find_preset(preset_name);
        if (!pr) {
            char known[256] = "";
            for (size_t i = 0; i < N_PRESETS; i++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
                         i ? ", " : "", presets[i].name);
            fail("build", "unknown preset '%s': known presets are %s", preset_name, known);
            goto out;
        }
        if ((rc = add_preset(pr, archs ? archs : default_archs, &jobs)) >= 0)
            goto out;
    }
    a.only_operands = false;
    for (a.i = 0; a.i < argc; a.i++) {
        const char *s = argv[a.i];
        if (!a.only_operands && s[0] == '-') {
            if (strcmp(s, "--") == 0)
                a.only_operands = true;
            else
                skip_build_option(&a);
            continue;
        }
        if ((rc = expand_into("build", s, &jobs)) >= 0)
            goto out;
    }
    rc = EXIT_USAGE;
    if (jobs.n == 0) {
        fail("build", "nothing to build: give VARIANT... or --preset NAME (see dmgen build "
                      "--help)");
        goto out;
    }
    rc = EXIT_FAIL;
    if (!dedupe(&jobs)) {
        fail("build", "out of memory");
        goto out;
    }
    if (dry_run) {
        for (int i = 0; i < jobs.n; i++)
            printf("%s\n", jobs.jobs[i].text);
        rc = fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
        goto out;
    }

    if (!resolve_cache_dir("build", cache, dir, sizeof dir))
        goto out;
    /* Up front, before any compile: a directory that cannot hold entries fails the command. */
    if (dm_cache_prepare_dir(dir, why, sizeof why) != DM_CACHE_OK) {
        fail("build", "cache directory '%s' unusable: %s", dir, why);
        goto out;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        fail("build", "cache directory '%s' is not writable: %s", dir, strerror(errno));
        goto out;
    }

    p.list = &jobs;
    p.cache_dir = dir;
    p.tty = isatty(STDERR_FILENO);
    p.verbose = verbose;
    pthread_mutex_init(&p.lock, NULL);
    if (n_threads > jobs.n)
        n_threads = jobs.n;
    threads = calloc((size_t)n_threads, sizeof *threads);
    if (!threads) {
        fail("build", "out of memory");
        goto destroy_lock;
    }
    if (p.tty) /* compiles take seconds: say at once what is coming */
        fprintf(stderr, "[0/%d] compiling...", jobs.n);
    for (long t = 0; t < n_threads; t++) {
        if (pthread_create(&threads[t], NULL, worker, &p) != 0)
            break;
        started++;
    }
    if (started == 0) /* no thread could start: build here */
        worker(&p);
    for (int t = 0; t < started; t++)
        pthread_join(threads[t], NULL);
    if (p.tty)
        fputs("\r\033[K", stderr);
    fprintf(stderr, "built %d, cached %d, failed %d in %.1f s (cache %s)\n", p.built, p.cached,
            p.failed, now_s() - t0, dir);
    rc = p.failed ? EXIT_FAIL : EXIT_OK;
destroy_lock:
    pthread_mutex_destroy(&p.lock);
out:
    free(threads);
    free(jobs.jobs);
    return rc;
}

/* ---- list, clear, info ------------------------------------------------------------------- */

typedef struct list_totals {
    int entries, corrupt;
    uint64_t bytes;
} list_totals;

static void list_one(void *user, const char *name, const char *variant_text,
                     uint64_t payload_bytes, int valid)
{
    list_totals *t = user;
    t->entries++;
    t->bytes += payload_bytes;
    if (!valid)
        t->corrupt++;
    printf("%s  %10llu  %s%s\n", name, (unsigned long long)payload_bytes, variant_text,
           valid ? "" : "  CORRUPT");
}

static int cmd_list(int argc, char **argv)
{
    const char *cache = NULL;
    char dir[DM_PATH_BYTES], why[1024] = "";
    list_totals t = {0};
    int rc = parse_cache_only("list", usage_list, argc, argv, &cache);
    if (rc >= 0)
        return rc;
    if (!resolve_cache_dir("list", cache, dir, sizeof dir))
        return EXIT_FAIL;
    dm_cache_result r = dm_cache_list(dir, list_one, &t, why, sizeof why);
    if (fflush(stdout) != 0) {
        fail("list", "cannot write to stdout: %s", strerror(errno));
        return EXIT_FAIL;
    }
    if (r == DM_CACHE_IO_ERROR) {
        fail("list", "cannot read '%s': %s", dir, why);
        return EXIT_FAIL;
    }
    fprintf(stderr, "%d entries, %llu bytes", t.entries, (unsigned long long)t.bytes);
    if (t.corrupt)
        fprintf(stderr, ", %d corrupt (rebuilt on next use)", t.corrupt);
    fprintf(stderr, " in %s%s\n", dir, dir_exists(dir) ? "" : " (no directory)");
    return EXIT_OK;
}

static int cmd_clear(int argc, char **argv)
{
    const char *cache = NULL;
    char dir[DM_PATH_BYTES], why[1024] = "";
    int removed = 0;
    uint64_t bytes = 0;
    int rc = parse_cache_only("clear", usage_clear, argc, argv, &cache);
    if (rc >= 0)
        return rc;
    if (!resolve_cache_dir("clear", cache, dir, sizeof dir))
        return EXIT_FAIL;
    dm_cache_result r = dm_cache_clear(dir, &removed, &bytes, why, sizeof why);
    if (r == DM_CACHE_IO_ERROR || r == DM_CACHE_CORRUPT) {
        fail("clear", "'%s': %s (removed %d entries first)", dir, why, removed);
        return EXIT_FAIL;
    }
    printf("removed %d entries (%llu bytes) from %s\n", removed, (unsigned long long)bytes, dir);
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}

static void info_devices(void)
{
    char why[512] = "";
    const dm_driver *d = dm_driver_get(why, sizeof why);
    if (!d) {
        printf("devices: no CUDA driver (%s)\n", why);
        return;
    }
    int version = 0, count = 0;
    d->DriverGetVersion(&version);
    CUresult r = d->DeviceGetCount(&count);
    printf("CUDA driver: %d.%d\n", version / 1000, version % 1000 / 10);
    if (r != CUDA_SUCCESS) {
        printf("devices: none (cuDeviceGetCount: %s)\n",
               dm_driver_error_text(d, r, why, sizeof why));
        return;
    }
    printf("devices: %d\n", count);
    for (int i = 0; i < count; i++) {
        CUdevice dev;
        char name[256] = "?";
        int major, minor;
        dm_arch arch;
        if (d->DeviceGet(&dev, i) != CUDA_SUCCESS)
            continue;
        d->DeviceGetName(name, sizeof name, dev);
        int ok = dm_device_arch(d, dev, &major, &minor, &arch) == 0;
        printf("  %d: %s, compute capability %d.%d, arch %s\n", i, name, major, minor,
               ok ? dm_arch_name(arch) : "unsupported by dmattn");
    }
}

static int cmd_info(int argc, char **argv)
{
    const char *cache = NULL;
    char dir[DM_PATH_BYTES], why[1024] = "", nvrtc[32];
    int entries = 0;
    uint64_t bytes = 0;
    int rc = parse_cache_only("info", usage_info, argc, argv, &cache);
    if (rc >= 0)
        return rc;

    printf("dmattn %s\n", dm_version_string());
    printf("NVRTC %s\n", dm_nvrtc_version_text(nvrtc, sizeof nvrtc));
    printf("%s\n", lua_version_text());
    const char *tdir = getenv("DMATTN_TEMPLATE_DIR");
    if (tdir && *tdir)
        printf("templates: from DMATTN_TEMPLATE_DIR=%s (overrides the embedded copies)\n", tdir);
    else
        printf("templates: embedded (DMATTN_TEMPLATE_DIR unset)\n");
    for (size_t i = 0; i < dm_template_count; i++)
        printf("  %-20s %8zu bytes\n", dm_templates[i].name, dm_templates[i].bytes);

    if (resolve_cache_dir("info", cache, dir, sizeof dir)) {
        dm_cache_result r = dm_cache_usage(dir, &entries, &bytes, why, sizeof why);
        if (r != DM_CACHE_IO_ERROR && !dir_exists(dir))
            printf("cache: %s (not created yet)\n", dir);
        else if (r != DM_CACHE_IO_ERROR)
            printf("cache: %s (%d entries, %llu bytes)\n", dir, entries,
                   (unsigned long long)bytes);
        else
            printf("cache: %s (unreadable: %s)\n", dir, why);
    } else {
        printf("cache: none (memory only)\n");
    }
    info_devices();
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}

/* ---- main -------------------------------------------------------------------------------- */

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"emit", cmd_emit}, {"build", cmd_build}, {"list", cmd_list},
    {"clear", cmd_clear}, {"info", cmd_info},
};

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void print_usage_main(void)
{
    char archs[64];
    dm_arch_list_text(archs, sizeof archs, "|", "|");
    printf(usage_main, archs);
}

int main(int argc, char **argv)
{
    char nvrtc[32];
    if (argc < 2) {
        fail(NULL, "no command given (see dmgen --help)");
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (is_help(cmd)) {
        print_usage_main();
        return EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("dmgen %s (NVRTC %s, %s)\n", dm_version_string(),
               dm_nvrtc_version_text(nvrtc, sizeof nvrtc), lua_version_text());
        return EXIT_OK;
    }
    if (strcmp(cmd, "help") == 0) {
        if (argc < 3) {
            print_usage_main();
            return EXIT_OK;
        }
        const struct command *c = find_command(argv[2]);
        if (!c) {
            fail(NULL, "help: unknown command '%s' (commands: emit, build, list, clear, info)",
                 argv[2]);
            return EXIT_USAGE;
        }
        char *help_argv[] = {"--help", NULL};
        return c->run(1, help_argv);
    }
    if (cmd[0] == '-') {
        fail(NULL, "unknown option '%s' (see dmgen --help)", cmd);
        return EXIT_USAGE;
    }
    const struct command *c = find_command(cmd);
    if (!c) {
        fail(NULL, "unknown command '%s' (commands: emit, build, list, clear, info)", cmd);
        return EXIT_USAGE;
    }
    return c->run(argc - 2, argv + 2);
}
