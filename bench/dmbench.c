/* dmbench.c (dmbench): dense attention sweeps on one GPU (SPEC §6). Expands comma lists of
 * shapes and variants into cases, times dm_fwd, dm_bwd or both on each with CUDA events (median of
 * N runs, inputs rotated so that they do not sit in L2) and reports ms, TFLOP/s and GB/s as a
 * table on stdout, and optionally as CSV and JSON (bench/plot.py draws the CSV).
 * Uses only dmattn.h plus the CUDA driver API for memory, streams and events, so it measures
 * what users get; it never reaches into the library's internals. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dmbench.h"

#define MASK_BLOCK 128 /* --pattern blocks: visible or not per 128 x 128 (or 128 keys) */

static const char usage[] =
    "usage: dmbench [OPTIONS]\n"
    "\n"
    "Times dmattn's dense attention, forward (dm_fwd) and backward (dm_bwd), on one GPU over a\n"
    "sweep of shapes and variants. An option taking a LIST accepts comma-separated values; the\n"
    "cases are the cartesian product of all lists (duplicates dropped).\n"
    "\n"
    "shape:\n"
    "  --B LIST            batch size (default 2)\n"
    "  --H LIST            query heads (default 16)\n"
    "  --Hkv LIST          key/value heads; each must divide H, other pairs are dropped\n"
    "                      (default: Hkv = H)\n"
    "  --L LIST            sequence length, Lq = Lk = L (default 4096)\n"
    "  --Lq LIST           query length, swept independently of --Lk\n"
    "  --Lk LIST           key length; with only one of --Lq/--Lk the other takes --L's values\n"
    "  --D LIST            head dimension (default 128)\n"
    "\n"
    "variant:\n"
    "  --dir LIST          fwd (dm_fwd), bwd (dm_bwd alone: o and lse made once per input set\n"
    "                      by an untimed dm_fwd, so --path and --num-splits do not apply) or\n"
    "                      fwdbwd (each timed run queues dm_fwd, then dm_bwd) (default fwd)\n"
    "  --dbias LIST        0 or 1: with a bias, dm_bwd also writes dbias (bwd and fwdbwd only;\n"
    "                      a case without a bias runs once) (default 0)\n"
    "  --deterministic LIST\n"
    "                      0 or 1: dm_bwd_args.deterministic (bwd and fwdbwd only) (default 0)\n"
    "  --dtype LIST        bf16 or f16: q, k, v, o (default bf16)\n"
    "  --mask LIST         none, k (bool (B, H, 1, Lk): one row for every query) or\n"
    "                      q (bool (B, H, Lq, Lk)) (default none)\n"
    "  --bias LIST         none, k (B, H, 1, Lk) or q (B, H, Lq, Lk) (default none)\n"
    "  --Hm LIST           heads of mask and bias: h (= H), kv (= Hkv) or 1 (default h); the\n"
    "                      decode path takes key-layout masks and biases of kv or 1 heads\n"
    "  --bias-dtype LIST   same (q's dtype) or f32 (default same)\n"
    "  --causal LIST       0 or 1; bottom-right aligned (default 0)\n"
    "  --softcap LIST      logit soft cap, 0 = off (default 0)\n"
    "  --density LIST      fraction of visible mask entries, 0 to 1 (default 1; only with a mask)\n"
    "  --pattern LIST      how the invisible entries lie (only with a mask and density < 1):\n"
    "                      blocks: 128 x 128 blocks (128-key runs for mask k), each visible with\n"
    "                      probability DENSITY, so whole tiles can be skipped; random: each\n"
    "                      entry independently (default blocks)\n"
    "  --path LIST         kernel path (dm_fwd_args.path): auto, tiled (one block per query tile\n"
    "                      and head) or decode (a KV-head group's queries packed into one tile,\n"
    "                      key ranges split over blocks); forcing one that cannot serve the\n"
    "                      case fails it (default auto)\n"
    "  --num-splits LIST   decode path: blocks a key range is split over, 0 = picked from the\n"
    "                      shapes (default 0)\n"
    "\n"
    "run:\n"
    "  --warmup N          untimed runs (default 10), after one untimed call that loads or\n"
    "                      JIT-compiles the kernel\n"
    "  --iters N           timed runs: median reported, min also in CSV/JSON (default 50)\n"
    "  --seed N            seed of the random inputs and mask patterns (default 1)\n"
    "  --device N          CUDA device (default 0)\n"
    "  --csv FILE          also write the results as CSV, one row per case\n"
    "  --json FILE         also write the results as JSON\n"
    "  --copy-bw           also time a device-to-device copy (cuMemcpyDtoDAsync, median of\n"
    "                      --iters) in the same process, and give each case's GB/s as a\n"
    "                      percentage of it (a copy moves 2x its size: read once, written once)\n"
    "  --copy-mib N        the buffer --copy-bw copies, in MiB (default 1024)\n"
    "  --varlen            the varlen/decode sweep of dm_fwd_varlen instead, with options of\n"
    "                      its own: see dmbench --varlen --help\n"
    "  --dry-run           print the expanded case list (with GFLOP and GB) and exit; no GPU used\n"
    "  -v, --verbose       the library's messages for each compile and cache event\n"
    "  -h, --help          this text\n"
    "  --version           the version\n"
    "\n"
    "Each case allocates q, k, v, o (B, L, H, D) packed, lse (B, H, Lq) fp32 and the mask and\n"
    "bias it names, and fills them with random values; bwd and fwdbwd cases also dout (random,\n"
    "like q), dq, dk, dv and, with --dbias 1, dbias (bias's shape and dtype). When one such set\n"
    "is smaller than 4x the L2 cache, enough sets (up to 16) to exceed that together are made\n"
    "and rotated between runs. A case that does not fit in free device memory is skipped.\n"
    "Timing uses CUDA events around each timed run (dm_fwd, dm_bwd, or dm_fwd then dm_bwd) on a\n"
    "stream of its own.\n"
    "\n"
    "TFLOP/s counts 4*B*H*Lq*Lk*D, times for --causal 1 the exact fraction of (query, key)\n"
    "pairs the causal rule leaves visible (bottom-right aligned: about 1/2 for Lq = Lk). It is\n"
    "NOT scaled by --density: density is its own column, and a sparse mask shows as a higher\n"
    "rate on the dense problem. bwd counts 2.5x the forward's FLOPs and fwdbwd 3.5x, as\n"
    "FlashAttention's benchmarks count them (the backward's five matrix products against the\n"
    "forward's two). GB/s counts what must move at least once: q, k, v, o, lse, mask and bias,\n"
    "each as stored; bwd and fwdbwd add dout, dq, dk, dv and dbias.\n"
    "\n"
    "Results: a table on stdout; progress and messages on stderr.\n"
    "Exit status: 0 success (skipped cases included), 1 a case failed or no GPU could be used,\n"
    "2 usage error.\n"
    "\n"
    "example:\n"
    "  dmbench --L 4096,16384 --mask none,k --bias k,q --causal 0,1 --csv fwd.csv\n"
    "  dmbench --dir bwd,fwdbwd --bias k --dbias 0,1 --L 4096 --D 128\n";

/* ---- the sweep: options, lists, cases -------------------------------------------------------- */

typedef enum layout { LAYOUT_NONE = 0, LAYOUT_K, LAYOUT_Q } layout;
typedef enum pattern { PATTERN_BLOCKS = 0, PATTERN_RANDOM } pattern;
typedef enum direction { DIR_FWD = 0, DIR_BWD, DIR_FWDBWD } direction;

static const char *const layout_names[] = {"none", "k", "q"};
static const char *const pattern_names[] = {"blocks", "random"};
static const char *const dir_names[] = {"fwd", "bwd", "fwdbwd"};

typedef struct options {
    int_list B, H, Hkv, L, Lq, Lk, D, dtype, mask, bias, hm, bias_f32, causal, pattern, path,
        num_splits, dir, dbias, deterministic;
    num_list softcap, density;
    int64_t warmup, iters, device, copy_mib;
    uint64_t seed;
    const char *csv, *json;
    bool dry_run, verbose, copy_bw;
} options;

typedef enum heads { HM_H = 0, HM_KV, HM_1 } heads;
static const char *const heads_names[] = {"h", "kv", "1"};

typedef struct bench_case {
    int64_t B, H, Hkv, Lq, Lk, D;
    heads hm;   /* mask and bias heads; h when there is neither */
    int64_t Hm; /* H, Hkv or 1 */
    dm_dtype dtype;
    layout mask, bias;
    bool bias_f32;
    int causal;
    float softcap;
    double density; /* 1 when there is no mask */
    pattern pat;    /* blocks when density is 1 or there is no mask */
    int path;       /* dm_fwd_path */
    int num_splits; /* 0 = the library's choice */
    direction dir;
    bool dbias;        /* dm_bwd writes dbias; only with a bias and a backward */
    int deterministic; /* dm_bwd_args.deterministic; 0 for fwd */
} bench_case;

/* Byte sizes as doubles: exact below 2^53, and a case too large for that cannot fit anyway.
 * Checked against free memory before any becomes an allocation size. */
typedef struct case_bytes {
    double q, kv, o, lse, mask, bias;
    double dout, dq, dkv, dbias; /* the backward's (dkv: each of dk and dv); 0 for fwd */
    double total;
} case_bytes;

static dm_dtype bias_dtype(const bench_case *c) { return c->bias_f32 ? DM_F32 : c->dtype; }

static double rows_of(layout l, const bench_case *c) { return l == LAYOUT_Q ? (double)c->Lq : 1; }

static case_bytes sizes_of(const bench_case *c)
{
    case_bytes s;
    double B = (double)c->B, H = (double)c->H, Lq = (double)c->Lq, Lk = (double)c->Lk;
    s.q = B * Lq * H * (double)c->D * 2;
    s.kv = B * Lk * (double)c->Hkv * (double)c->D * 2; /* each of k and v */
    s.o = s.q;
    s.lse = B * H * Lq * 4;
    double Hm = (double)c->Hm;
    s.mask = c->mask ? B * Hm * rows_of(c->mask, c) * Lk : 0;
    s.bias = c->bias ? B * Hm * rows_of(c->bias, c) * Lk * dtype_size(bias_dtype(c)) : 0;
    s.total = s.q + 2 * s.kv + s.o + s.lse + s.mask + s.bias;
    bool bwd = c->dir != DIR_FWD;
    s.dout = s.dq = bwd ? s.q : 0;
    s.dkv = bwd ? s.kv : 0;
    s.dbias = c->dbias ? s.bias : 0;
    s.total += s.dout + s.dq + 2 * s.dkv + s.dbias;
    return s;
}

/* The forward's 4 x B x H x D per visible pair (two matrix products: QK^T, PV). The backward has
 * five (QK^T recomputed, dV, dP, dQ, dK): 2.5x, as FlashAttention counts it; fwdbwd the sum. */
static double flops_of(const bench_case *c)
{
    static const double factor[] = {[DIR_FWD] = 1, [DIR_BWD] = 2.5, [DIR_FWDBWD] = 3.5};
    return factor[c->dir] * 4.0 * (double)c->B * (double)c->H * (double)c->D *
           visible_pairs(c->Lq, c->Lk, c->causal);
}

/* "B=2 H=16 Hkv=16 Lq=4096 Lk=4096 D=128 bf16 mask-k bias-q/f32 causal density=0.5/blocks",
 * then " bwd dbias" and the like for a backward. */
static void describe(const bench_case *c, char *buf, size_t bytes)
{
    int n = snprintf(buf, bytes,
                     "B=%lld H=%lld Hkv=%lld Lq=%lld Lk=%lld D=%lld %s mask-%s bias-%s%s%s",
                     (long long)c->B, (long long)c->H, (long long)c->Hkv, (long long)c->Lq,
                     (long long)c->Lk, (long long)c->D, dtype_text(c->dtype),
                     layout_names[c->mask], layout_names[c->bias], c->bias_f32 ? "/f32" : "",
                     c->causal ? " causal" : "");
    if (n > 0 && (size_t)n < bytes && c->softcap > 0)
        n += snprintf(buf + n, bytes - (size_t)n, " softcap=%g", (double)c->softcap);
    if (n > 0 && (size_t)n < bytes && c->mask && c->density < 1)
        n += snprintf(buf + n, bytes - (size_t)n, " density=%g/%s", c->density,
                      pattern_names[c->pat]);
    if (n > 0 && (size_t)n < bytes && c->hm != HM_H)
        n += snprintf(buf + n, bytes - (size_t)n, " Hm=%s", heads_names[c->hm]);
    if (n > 0 && (size_t)n < bytes && (c->path || c->num_splits))
        n += snprintf(buf + n, bytes - (size_t)n, " path=%s splits=%d", path_names[c->path],
                      c->num_splits);
    if (n > 0 && (size_t)n < bytes && c->dir != DIR_FWD)
        snprintf(buf + n, bytes - (size_t)n, " %s%s%s", dir_names[c->dir],
                 c->dbias ? " dbias" : "", c->deterministic ? " deterministic" : "");
}

static int parse_options(int argc, char **argv, options *o)
{
    static const char *const dtype_names[] = {"bf16", "f16"};
    static const int64_t dtype_values[] = {DM_BF16, DM_F16};
    static const char *const lay_names[] = {"none", "k", "q"};
    static const int64_t lay_values[] = {LAYOUT_NONE, LAYOUT_K, LAYOUT_Q};
    static const char *const bdt_names[] = {"same", "f32"};
    static const int64_t bdt_values[] = {0, 1};
    static const int64_t pat_values[] = {PATTERN_BLOCKS, PATTERN_RANDOM};
    static const int64_t hm_values[] = {HM_H, HM_KV, HM_1};
    static const int64_t dir_values[] = {DIR_FWD, DIR_BWD, DIR_FWDBWD};
    const int64_t grid_max = 65535, len_max = INT32_MAX;

    memset(o, 0, sizeof *o);
    o->warmup = 10;
    o->iters = 50;
    o->seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *val = NULL;
        bool ok = true;

        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            fputs(usage, stdout);
            return EXIT_OK;
        }
        if (strcmp(s, "--version") == 0) {
            printf("dmbench %s (dmattn %s)\n", DMBENCH_VERSION, dm_version_string());
            return EXIT_OK;
        }
        if (strcmp(s, "--dry-run") == 0 || strcmp(s, "-n") == 0) {
            o->dry_run = true;
            continue;
        }
        if (strcmp(s, "-v") == 0 || strcmp(s, "--verbose") == 0) {
            o->verbose = true;
            continue;
        }
        if (strcmp(s, "--copy-bw") == 0) {
            o->copy_bw = true;
            continue;
        }

        /* Every other option takes a value. */
        static const char *const valued[] = {
            "--B",       "--H",       "--Hkv",     "--L",      "--Lq",   "--Lk",
            "--D",       "--dtype",   "--mask",    "--bias",   "--bias-dtype",
            "--causal",  "--softcap", "--density", "--pattern", "--warmup", "--iters",
            "--seed",    "--device",  "--csv",     "--json",   "--path", "--num-splits",
            "--copy-mib", "--Hm",     "--dir",     "--dbias",  "--deterministic"};
        const char *opt = NULL;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0] && !opt; k++)
            if (take(argc, argv, &i, valued[k], &val))
                opt = valued[k];
        if (!opt) {
            if (s[0] == '-')
                fail("unknown option '%s' (see dmbench --help)", s);
            else
                fail("unexpected argument '%s' (see dmbench --help)", s);
            return EXIT_USAGE;
        }
        if (!val || !*val) {
            fail("%s needs a value (see dmbench --help)", opt);
            return EXIT_USAGE;
        }

        if (strcmp(opt, "--B") == 0)
            ok = parse_int_list(opt, val, 1, grid_max, &o->B);
        else if (strcmp(opt, "--H") == 0)
            ok = parse_int_list(opt, val, 1, grid_max, &o->H);
        else if (strcmp(opt, "--Hkv") == 0)
            ok = parse_int_list(opt, val, 1, grid_max, &o->Hkv);
        else if (strcmp(opt, "--L") == 0)
            ok = parse_int_list(opt, val, 1, len_max, &o->L);
        else if (strcmp(opt, "--Lq") == 0)
            ok = parse_int_list(opt, val, 1, len_max, &o->Lq);
        else if (strcmp(opt, "--Lk") == 0)
            ok = parse_int_list(opt, val, 1, len_max, &o->Lk);
        else if (strcmp(opt, "--D") == 0)
            ok = parse_int_list(opt, val, 1, 4096, &o->D);
        else if (strcmp(opt, "--dtype") == 0)
            ok = parse_name_list(opt, val, dtype_names, dtype_values, 2, "bf16 or f16",
                                 &o->dtype);
        else if (strcmp(opt, "--mask") == 0)
            ok = parse_name_list(opt, val, lay_names, lay_values, 3, "none, k or q", &o->mask);
        else if (strcmp(opt, "--bias") == 0)
            ok = parse_name_list(opt, val, lay_names, lay_values, 3, "none, k or q", &o->bias);
        else if (strcmp(opt, "--Hm") == 0)
            ok = parse_name_list(opt, val, heads_names, hm_values, 3, "h, kv or 1", &o->hm);
        else if (strcmp(opt, "--bias-dtype") == 0)
            ok = parse_name_list(opt, val, bdt_names, bdt_values, 2, "same or f32",
                                 &o->bias_f32);
        else if (strcmp(opt, "--causal") == 0)
            ok = parse_int_list(opt, val, 0, 1, &o->causal);
        else if (strcmp(opt, "--softcap") == 0)
            ok = parse_num_list(opt, val, 0, 1e30, "numbers >= 0 (0 = off)", &o->softcap);
        else if (strcmp(opt, "--density") == 0)
            ok = parse_num_list(opt, val, 0, 1, "numbers from 0 to 1", &o->density);
        else if (strcmp(opt, "--pattern") == 0)
            ok = parse_name_list(opt, val, pattern_names, pat_values, 2, "blocks or random",
                                 &o->pattern);
        else if (strcmp(opt, "--warmup") == 0) {
            ok = parse_int(val, 0, 1000000, &o->warmup);
            if (!ok)
                fail("%s: '%s': expected an integer from 0 to 1000000", opt, val);
        } else if (strcmp(opt, "--iters") == 0) {
            ok = parse_int(val, 1, 100000, &o->iters);
            if (!ok)
                fail("%s: '%s': expected an integer from 1 to 100000", opt, val);
        } else if (strcmp(opt, "--device") == 0) {
            ok = parse_int(val, 0, 1024, &o->device);
            if (!ok)
                fail("%s: '%s': expected a device number from 0", opt, val);
        } else if (strcmp(opt, "--seed") == 0) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(val, &end, 0);
            ok = !errno && end != val && !*end && val[0] != '-';
            if (!ok)
                fail("%s: '%s': expected a non-negative integer", opt, val);
            o->seed = v;
        } else if (strcmp(opt, "--csv") == 0)
            o->csv = val;
        else if (strcmp(opt, "--json") == 0)
            o->json = val;
        else if (strcmp(opt, "--path") == 0)
            ok = parse_name_list(opt, val, path_names, path_values, 3, "auto, tiled or decode",
                                 &o->path);
        else if (strcmp(opt, "--num-splits") == 0)
            ok = parse_int_list(opt, val, 0, 1024, &o->num_splits);
        else if (strcmp(opt, "--dir") == 0)
            ok = parse_name_list(opt, val, dir_names, dir_values, 3, "fwd, bwd or fwdbwd",
                                 &o->dir);
        else if (strcmp(opt, "--dbias") == 0)
            ok = parse_int_list(opt, val, 0, 1, &o->dbias);
        else if (strcmp(opt, "--deterministic") == 0)
            ok = parse_int_list(opt, val, 0, 1, &o->deterministic);
        else if (strcmp(opt, "--copy-mib") == 0) {
            ok = parse_int(val, 1, 1 << 20, &o->copy_mib);
            if (!ok)
                fail("%s: '%s': expected a size in MiB from 1 to 1048576", opt, val);
        }
        if (!ok)
            return EXIT_USAGE;
    }

    set_default(&o->B, 2);
    set_default(&o->H, 16);
    set_default(&o->L, 4096);
    set_default(&o->D, 128);
    set_default(&o->dtype, DM_BF16);
    set_default(&o->mask, LAYOUT_NONE);
    set_default(&o->bias, LAYOUT_NONE);
    set_default(&o->bias_f32, 0);
    set_default(&o->causal, 0);
    set_default(&o->pattern, PATTERN_BLOCKS);
    set_default(&o->hm, HM_H);
    set_default(&o->path, DM_PATH_AUTO);
    set_default(&o->num_splits, 0);
    set_default(&o->dir, DIR_FWD);
    set_default(&o->dbias, 0);
    set_default(&o->deterministic, 0);
    if (o->copy_mib == 0)
        o->copy_mib = (int64_t)(COPY_BYTES_DEFAULT >> 20);
    if (o->softcap.n == 0)
        o->softcap.v[o->softcap.n++] = 0;
    if (o->density.n == 0)
        o->density.v[o->density.n++] = 1;
    return -1;
}

/* ---- case expansion -------------------------------------------------------------------------- */

typedef struct case_list {
    bench_case *c;
    int n, cap;
} case_list;

static bool same_case(const bench_case *a, const bench_case *b)
{
    return a->B == b->B && a->H == b->H && a->Hkv == b->Hkv && a->Lq == b->Lq && a->Lk == b->Lk &&
           a->D == b->D && a->hm == b->hm && a->dtype == b->dtype && a->mask == b->mask &&
           a->bias == b->bias &&
           a->bias_f32 == b->bias_f32 && a->causal == b->causal && a->softcap == b->softcap &&
           a->density == b->density && a->pat == b->pat && a->path == b->path &&
           a->num_splits == b->num_splits && a->dir == b->dir && a->dbias == b->dbias &&
           a->deterministic == b->deterministic;
}

/* The axes, slowest first: L varies fastest so that a table reads as one curve per block. */
enum {
    AX_DIR, AX_DTYPE, AX_D, AX_MASK, AX_BIAS, AX_HM, AX_BDT, AX_DBIAS, AX_CAUSAL, AX_SOFTCAP,
    AX_DENSITY, AX_PATTERN, AX_PATH, AX_SPLITS, AX_DET, AX_B, AX_H, AX_HKV, AX_LEN, N_AXES
};

/* What the direction leaves out of the timed work: the backward's options for fwd; dbias without
 * a bias; for bwd, the forward's kernel path (its one call per input set is not timed). */
static void normalize_dir(bench_case *c)
{
    if (c->dir == DIR_FWD || !c->bias)
        c->dbias = false;
    if (c->dir == DIR_FWD)
        c->deterministic = 0;
    if (c->dir == DIR_BWD) {
        c->path = DM_PATH_AUTO;
        c->num_splits = 0;
    }
}

/* Returns -1 to go on, else an exit status. */
static int expand(const options *o, case_list *out)
{
    int64_t lq[MAX_LIST * MAX_LIST], lk[MAX_LIST * MAX_LIST];
    int n_len = 0, count[N_AXES], pick[N_AXES] = {0}, dropped_hkv = 0;

    if (o->Lq.n == 0 && o->Lk.n == 0) {
        for (int i = 0; i < o->L.n; i++, n_len++)
            lq[n_len] = lk[n_len] = o->L.v[i];
    } else {
        const int_list *ql = o->Lq.n ? &o->Lq : &o->L, *kl = o->Lk.n ? &o->Lk : &o->L;
        for (int i = 0; i < ql->n; i++)
            for (int j = 0; j < kl->n; j++, n_len++) {
                lq[n_len] = ql->v[i];
                lk[n_len] = kl->v[j];
            }
    }
    count[AX_DIR] = o->dir.n;
    count[AX_DTYPE] = o->dtype.n;
    count[AX_D] = o->D.n;
    count[AX_MASK] = o->mask.n;
    count[AX_BIAS] = o->bias.n;
    count[AX_HM] = o->hm.n;
    count[AX_BDT] = o->bias_f32.n;
    count[AX_DBIAS] = o->dbias.n;
    count[AX_CAUSAL] = o->causal.n;
    count[AX_SOFTCAP] = o->softcap.n;
    count[AX_DENSITY] = o->density.n;
    count[AX_PATTERN] = o->pattern.n;
    count[AX_PATH] = o->path.n;
    count[AX_SPLITS] = o->num_splits.n;
    count[AX_DET] = o->deterministic.n;
    count[AX_B] = o->B.n;
    count[AX_H] = o->H.n;
    count[AX_HKV] = o->Hkv.n ? o->Hkv.n : 1;
    count[AX_LEN] = n_len;

    double total = 1;
    for (int a = 0; a < N_AXES; a++)
        total *= count[a];
    if (total > MAX_CASES) {
        fail("the lists make %.0f cases, more than %d: sweep fewer values at once", total,
             MAX_CASES);
        return EXIT_USAGE;
    }
    out->cap = (int)total;
    out->c = calloc((size_t)out->cap, sizeof *out->c);
    if (!out->c) {
        fail("out of memory");
        return EXIT_FAIL;
    }
    for (;;) {
        bench_case c = {
            .B = o->B.v[pick[AX_B]],
            .H = o->H.v[pick[AX_H]],
            .Lq = lq[pick[AX_LEN]],
            .Lk = lk[pick[AX_LEN]],
            .D = o->D.v[pick[AX_D]],
            .dtype = (dm_dtype)o->dtype.v[pick[AX_DTYPE]],
            .mask = (layout)o->mask.v[pick[AX_MASK]],
            .bias = (layout)o->bias.v[pick[AX_BIAS]],
            .hm = (heads)o->hm.v[pick[AX_HM]],
            .bias_f32 = o->bias_f32.v[pick[AX_BDT]] != 0,
            .causal = (int)o->causal.v[pick[AX_CAUSAL]],
            .softcap = (float)o->softcap.v[pick[AX_SOFTCAP]],
            .density = o->density.v[pick[AX_DENSITY]],
            .pat = (pattern)o->pattern.v[pick[AX_PATTERN]],
            .path = (int)o->path.v[pick[AX_PATH]],
            .num_splits = (int)o->num_splits.v[pick[AX_SPLITS]],
            .dir = (direction)o->dir.v[pick[AX_DIR]],
            .dbias = o->dbias.v[pick[AX_DBIAS]] != 0,
            .deterministic = (int)o->deterministic.v[pick[AX_DET]],
        };
        c.Hkv = o->Hkv.n ? o->Hkv.v[pick[AX_HKV]] : c.H;
        /* Normalize what does not change the work, so that the dedup below drops repeats. */
        if (!c.bias)
            c.bias_f32 = false;
        if (!c.mask && !c.bias)
            c.hm = HM_H;
        c.Hm = c.hm == HM_H ? c.H : c.hm == HM_KV ? c.Hkv : 1;
        if (!c.mask)
            c.density = 1;
        if (c.density >= 1)
            c.pat = PATTERN_BLOCKS;
        normalize_dir(&c);
        bool keep = true;
        if (c.H % c.Hkv != 0) {
            dropped_hkv++;
            keep = false;
        }
        for (int i = 0; keep && i < out->n; i++)
            if (same_case(&out->c[i], &c))
                keep = false;
        if (keep)
            out->c[out->n++] = c;

        int a = N_AXES - 1;
        while (a >= 0 && ++pick[a] == count[a])
            pick[a--] = 0;
        if (a < 0)
            break;
    }
    if (dropped_hkv)
        fprintf(stderr, "dmbench: dropped %d combination%s where Hkv does not divide H\n",
                dropped_hkv, dropped_hkv == 1 ? "" : "s");
    if (out->n == 0) {
        fail("no cases left to run (every Hkv fails to divide H)");
        return EXIT_USAGE;
    }
    return -1;
}

typedef struct stager {
    gpu *g;
    unsigned char *buf;
    size_t used;
    CUdeviceptr dst;
    bool ok;
} stager;

static void stage_flush(stager *s)
{
    if (s->ok && s->used)
        s->ok = cu_ok(s->g, s->g->drv->MemcpyHtoD(s->dst, s->buf, s->used), "cuMemcpyHtoD");
    s->dst += s->used;
    s->used = 0;
}

static void stage_write(stager *s, const unsigned char *src, size_t n)
{
    while (n && s->ok) {
        size_t take = HOST_BUF_BYTES - s->used < n ? HOST_BUF_BYTES - s->used : n;
        memcpy(s->buf + s->used, src, take);
        s->used += take;
        src += take;
        n -= take;
        if (s->used == HOST_BUF_BYTES)
            stage_flush(s);
    }
}

/* The mask of a case: `slices` = B*H matrices of `rows` (Lq, or 1 for layout k) x Lk bytes.
 * Every set of a case gets the same pattern (seeded by --seed alone), so that each timed run
 * does the same work. */
static bool fill_mask(gpu *g, CUdeviceptr dst, const bench_case *c)
{
    uint64_t slices = (uint64_t)(c->B * c->Hm), rows = c->mask == LAYOUT_Q ? (uint64_t)c->Lq : 1,
             Lk = (uint64_t)c->Lk, bytes = slices * rows * Lk;

    if (c->density >= 1 || c->density <= 0)
        return cu_ok(g, g->drv->MemsetD8(dst, c->density >= 1 ? 1 : 0, bytes), "cuMemsetD8");

    if (c->pat == PATTERN_RANDOM)
        return fill_mask_random(g, dst, bytes, c->density);

    /* Blocks: a row template per band of MASK_BLOCK rows, made from a hash of (seed, slice,
     * band, key block), written through the staging buffer. */
    unsigned char *row = malloc((size_t)Lk);
    if (!row) {
        snprintf(g->err, sizeof g->err, "out of host memory (a mask row of %llu bytes)",
                 (unsigned long long)Lk);
        return false;
    }
    bool ok = host_alloc(g, &g->stage, HOST_BUF_BYTES);
    stager s = {g, g->stage.p, 0, dst, ok};
    for (uint64_t sl = 0; sl < slices && s.ok; sl++)
        for (uint64_t i = 0; i < rows && s.ok; i++) {
            if (i % MASK_BLOCK == 0) {
                uint64_t band = i / MASK_BLOCK;
                for (uint64_t j = 0; j < Lk; j += MASK_BLOCK) {
                    uint64_t h = hash4(g->seed, sl, band, j / MASK_BLOCK);
                    uint64_t n = Lk - j < MASK_BLOCK ? Lk - j : MASK_BLOCK;
                    memset(row + j, unit_of(h) < c->density, (size_t)n);
                }
            }
            stage_write(&s, row, (size_t)Lk);
        }
    stage_flush(&s);
    free(row);
    return s.ok;
}

/* ---- one case -------------------------------------------------------------------------------- */

/* The buffers of one input set (buf_set.p[]); those from BUF_DOUT on only for a backward. */
enum {
    BUF_Q, BUF_K, BUF_V, BUF_O, BUF_LSE, BUF_MASK, BUF_BIAS,
    BUF_DOUT, BUF_DQ, BUF_DK, BUF_DV, BUF_DBIAS, N_BUFS
};
_Static_assert(N_BUFS <= MAX_BUFS, "buf_set holds every buffer of a case");

static void buffer_bytes(const bench_case *c, const case_bytes *b, double bytes[N_BUFS])
{
    bytes[BUF_Q] = b->q;
    bytes[BUF_K] = bytes[BUF_V] = b->kv;
    bytes[BUF_O] = b->o;
    bytes[BUF_LSE] = b->lse;
    bytes[BUF_MASK] = c->mask ? b->mask : 0;
    bytes[BUF_BIAS] = c->bias ? b->bias : 0;
    bytes[BUF_DOUT] = b->dout;
    bytes[BUF_DQ] = b->dq;
    bytes[BUF_DK] = bytes[BUF_DV] = b->dkv;
    bytes[BUF_DBIAS] = b->dbias;
}

static bool zero(gpu *g, CUdeviceptr p, double bytes, const char *what)
{
    return cu_ok(g, g->drv->MemsetD8(p, 0, (size_t)bytes), what);
}

/* dout random like q; the gradients zeroed, as o is (the backward writes them all). */
static bool fill_grads(gpu *g, const bench_case *c, const case_bytes *b, const buf_set *s,
                       uint64_t salt)
{
    return fill_values(g, s->p[BUF_DOUT], (uint64_t)b->dout, c->dtype, salt) &&
           zero(g, s->p[BUF_DQ], b->dq, "cuMemsetD8 (dq)") &&
           zero(g, s->p[BUF_DK], b->dkv, "cuMemsetD8 (dk)") &&
           zero(g, s->p[BUF_DV], b->dkv, "cuMemsetD8 (dv)") &&
           (!c->dbias || zero(g, s->p[BUF_DBIAS], b->dbias, "cuMemsetD8 (dbias)"));
}

static bool fill_set(gpu *g, const bench_case *c, const case_bytes *b, const buf_set *s, int set)
{
    uint64_t salt = (uint64_t)set * 8;
    return fill_values(g, s->p[BUF_Q], (uint64_t)b->q, c->dtype, salt + 1) &&
           fill_values(g, s->p[BUF_K], (uint64_t)b->kv, c->dtype, salt + 2) &&
           fill_values(g, s->p[BUF_V], (uint64_t)b->kv, c->dtype, salt + 3) &&
           zero(g, s->p[BUF_O], b->o, "cuMemsetD8 (o)") &&
           zero(g, s->p[BUF_LSE], b->lse, "cuMemsetD8 (lse)") &&
           (!c->mask || fill_mask(g, s->p[BUF_MASK], c)) &&
           (!c->bias ||
            fill_values(g, s->p[BUF_BIAS], (uint64_t)b->bias, bias_dtype(c), salt + 4)) &&
           (c->dir == DIR_FWD || fill_grads(g, c, b, s, salt + 5));
}

static dm_tensor rows_tensor(CUdeviceptr p, dm_dtype t, int64_t B, int64_t L, int64_t H,
                             int64_t D)
{
    dm_tensor x = {.data = (void *)(uintptr_t)p, .dtype = t, .rank = 4,
                   .shape = {B, L, H, D}, .strides = {L * H * D, H * D, D, 1}};
    return x;
}

/* mask or bias: (B, Hm, Lq, Lk) for layout q, (B, Hm, 1, Lk) for layout k, packed. */
static dm_tensor keys_tensor(CUdeviceptr p, dm_dtype t, const bench_case *c, layout l)
{
    int64_t rows = l == LAYOUT_Q ? c->Lq : 1;
    dm_tensor x = {.data = (void *)(uintptr_t)p, .dtype = t, .rank = 4,
                   .shape = {c->B, c->Hm, rows, c->Lk},
                   .strides = {c->Hm * rows * c->Lk, rows * c->Lk, c->Lk, 1}};
    return x;
}

static dm_fwd_args fwd_args_of(const bench_case *c, const buf_set *s)
{
    dm_fwd_args a = {
        .q = rows_tensor(s->p[BUF_Q], c->dtype, c->B, c->Lq, c->H, c->D),
        .k = rows_tensor(s->p[BUF_K], c->dtype, c->B, c->Lk, c->Hkv, c->D),
        .v = rows_tensor(s->p[BUF_V], c->dtype, c->B, c->Lk, c->Hkv, c->D),
        .o = rows_tensor(s->p[BUF_O], c->dtype, c->B, c->Lq, c->H, c->D),
        .lse = {.data = (void *)(uintptr_t)s->p[BUF_LSE], .dtype = DM_F32, .rank = 3,
                .shape = {c->B, c->H, c->Lq}, .strides = {c->H * c->Lq, c->Lq, 1}},
        .softcap = c->softcap,
        .causal = c->causal,
        .path = c->path,
        .num_splits = c->num_splits,
    };
    if (c->mask)
        a.mask = keys_tensor(s->p[BUF_MASK], DM_BOOL, c, c->mask);
    if (c->bias)
        a.bias = keys_tensor(s->p[BUF_BIAS], bias_dtype(c), c, c->bias);
    return a;
}

/* The backward of the forward `f` (its q, k, v, o, lse, mask, bias) into the set's gradients. */
static dm_bwd_args bwd_args_of(const bench_case *c, const buf_set *s, const dm_fwd_args *f)
{
    dm_bwd_args a = {
        .dout = rows_tensor(s->p[BUF_DOUT], c->dtype, c->B, c->Lq, c->H, c->D),
        .q = f->q, .k = f->k, .v = f->v, .o = f->o, .lse = f->lse,
        .mask = f->mask, .bias = f->bias,
        .dq = rows_tensor(s->p[BUF_DQ], c->dtype, c->B, c->Lq, c->H, c->D),
        .dk = rows_tensor(s->p[BUF_DK], c->dtype, c->B, c->Lk, c->Hkv, c->D),
        .dv = rows_tensor(s->p[BUF_DV], c->dtype, c->B, c->Lk, c->Hkv, c->D),
        .scale = f->scale,
        .softcap = f->softcap,
        .causal = f->causal,
        .deterministic = c->deterministic,
    };
    if (c->dbias)
        a.dbias = keys_tensor(s->p[BUF_DBIAS], bias_dtype(c), c, c->bias);
    return a;
}

/* One input set's calls; bwd is unused for a fwd case. */
typedef struct set_args {
    dm_fwd_args fwd;
    dm_bwd_args bwd;
} set_args;

typedef struct case_job {
    gpu *g;
    const set_args *args;
    int n_sets;
    direction dir;
    const char *label;
} case_job;

static bool queue_fwd(const case_job *j, const set_args *a)
{
    if (dm_fwd(j->g->ctx, &a->fwd, j->g->stream) == DM_OK)
        return true;
    fail("%s: %s", j->label, dm_errmsg(j->g->ctx)); /* the message names the call */
    return false;
}

static bool queue_bwd(const case_job *j, const set_args *a)
{
    if (dm_bwd(j->g->ctx, &a->bwd, j->g->stream) == DM_OK)
        return true;
    fail("%s: %s", j->label, dm_errmsg(j->g->ctx));
    return false;
}

/* One run of the case's direction on the set after the previous run's. */
static bool queue_run(void *ctx, int run)
{
    const case_job *j = ctx;
    const set_args *a = &j->args[run % j->n_sets];
    if (j->dir != DIR_BWD && !queue_fwd(j, a))
        return false;
    return j->dir == DIR_FWD || queue_bwd(j, a);
}

/* bwd: the o and lse that each set's timed dm_bwd reads, by one dm_fwd per set (queued). */
static bool queue_forwards(const case_job *j)
{
    for (int i = 0; j->dir == DIR_BWD && i < j->n_sets; i++)
        if (!queue_fwd(j, &j->args[i]))
            return false;
    return true;
}

/* Runs one case into *r. Returns false only when the CUDA context is unusable afterwards (a
 * sticky error such as a kernel fault): the sweep must stop. A failed dm_fwd or dm_bwd or a case
 * that does not fit is reported and the sweep goes on. */
static bool run_case(gpu *g, const options *o, const bench_case *c, const char *label, result *r)
{
    case_bytes b = sizes_of(c);
    double bytes[N_BUFS];
    buf_set sets[MAX_SETS];
    set_args args[MAX_SETS];
    bool alive = true;

    memset(r, 0, sizeof *r);
    r->out = OUT_FAILED;
    buffer_bytes(c, &b, bytes);
    int n_sets = alloc_sets(g, bytes, N_BUFS, sets, label, &alive);
    if (n_sets <= 0) {
        r->out = n_sets == 0 ? OUT_SKIPPED : OUT_FAILED;
        return alive;
    }
    for (int i = 0; i < n_sets; i++) {
        if (!fill_set(g, c, &b, &sets[i], i)) {
            fail("%s: filling the inputs: %s", label, g->err);
            goto out;
        }
        args[i].fwd = fwd_args_of(c, &sets[i]);
        args[i].bwd = bwd_args_of(c, &sets[i], &args[i].fwd);
    }
    case_job job = {g, args, n_sets, c->dir, label};
    bool ready = queue_forwards(&job);
    if (!cu_ok(g, g->drv->CtxSynchronize(), "cuCtxSynchronize")) {
        fail("%s: filling the inputs: %s", label, g->err);
        alive = false;
        goto out;
    }
    if (!ready)
        goto out;
    alive = time_runs(g, o->warmup, o->iters, queue_run, &job, label, r);
    r->sets = n_sets;
out:
    if (alive)
        free_sets(g, sets, n_sets);
    return alive;
}

typedef struct columns {
    /* shown in the table only when some case uses them, so a fwd sweep's table is unchanged */
    bool softcap, pattern, path, hm, dir, dbias, det;
    double copy_gbps; /* --copy-bw: the copy bandwidth measured; 0 = none */
} columns;

static columns columns_of(const case_list *l)
{
    columns k = {0};
    for (int i = 0; i < l->n; i++) {
        k.softcap |= l->c[i].softcap > 0;
        k.pattern |= l->c[i].mask && l->c[i].density < 1;
        k.path |= l->c[i].path != DM_PATH_AUTO || l->c[i].num_splits != 0;
        k.hm |= l->c[i].hm != HM_H;
        k.dir |= l->c[i].dir != DIR_FWD;
        k.dbias |= l->c[i].dbias;
        k.det |= l->c[i].deterministic != 0;
    }
    return k;
}

/* Achieved GB/s as a percentage of the copy bandwidth; "" without --copy-bw. */
static void pct_text(char *buf, size_t bytes, double gbps, double copy_gbps)
{
    if (copy_gbps > 0)
        snprintf(buf, bytes, "%.1f", 100 * gbps / copy_gbps);
    else
        buf[0] = '\0';
}

static void table_header(const columns *k, const char *tail)
{
    printf("%3s %4s %4s %7s %7s %4s %5s %4s %8s %6s %7s", "B", "H", "Hkv", "Lq", "Lk", "D",
           "dtype", "mask", "bias", "causal", "density");
    if (k->hm)
        printf(" %3s", "Hm");
    if (k->pattern)
        printf(" %7s", "pattern");
    if (k->softcap)
        printf(" %7s", "softcap");
    if (k->path)
        printf(" %6s %6s", "path", "splits");
    if (k->dir)
        printf(" %6s", "dir");
    if (k->dbias)
        printf(" %5s", "dbias");
    if (k->det)
        printf(" %3s", "det");
    printf(" | %s\n", tail);
}

static void table_case(const columns *k, const bench_case *c)
{
    char bias[16];
    snprintf(bias, sizeof bias, "%s%s", layout_names[c->bias], c->bias_f32 ? ":f32" : "");
    printf("%3lld %4lld %4lld %7lld %7lld %4lld %5s %4s %8s %6d %7.3g", (long long)c->B,
           (long long)c->H, (long long)c->Hkv, (long long)c->Lq, (long long)c->Lk,
           (long long)c->D, dtype_text(c->dtype), layout_names[c->mask], bias, c->causal,
           c->density);
    if (k->hm)
        printf(" %3s", heads_names[c->hm]);
    if (k->pattern)
        printf(" %7s", c->mask && c->density < 1 ? pattern_names[c->pat] : "-");
    if (k->softcap)
        printf(" %7g", (double)c->softcap);
    if (k->path)
        printf(" %6s %6d", path_names[c->path], c->num_splits);
    if (k->dir)
        printf(" %6s", dir_names[c->dir]);
    if (k->dbias)
        printf(" %5d", c->dbias);
    if (k->det)
        printf(" %3d", c->deterministic);
}

static void table_result(const columns *k, const bench_case *c, const result *r)
{
    table_case(k, c);
    table_tail(r, flops_of(c), sizes_of(c).total, k->copy_gbps);
}

static const char csv_header[] =
    "B,H,Hkv,Lq,Lk,D,dtype,mask,bias,bias_dtype,causal,softcap,density,pattern,ms_median,ms_min,"
    "tflops,gbps,iters,sets,gflop,gbytes,path,num_splits,Hm,copy_gbps,pct_copy,dir,dbias,"
    "deterministic,status\n";

/* New columns go before status: ab_templates.sh reads tflops as field 17 and status as the last. */
static void csv_row(FILE *f, const bench_case *c, const result *r, double copy_gbps)
{
    case_bytes b = sizes_of(c);
    char pct[32] = "";
    fprintf(f, "%lld,%lld,%lld,%lld,%lld,%lld,%s,%s,%s,%s,%d,%g,%g,%s,", (long long)c->B,
            (long long)c->H, (long long)c->Hkv, (long long)c->Lq, (long long)c->Lk,
            (long long)c->D, dtype_text(c->dtype), layout_names[c->mask], layout_names[c->bias],
            c->bias ? dtype_text(bias_dtype(c)) : "none", c->causal, (double)c->softcap,
            c->density, pattern_names[c->pat]);
    if (r->out == OUT_OK) {
        fprintf(f, "%.4f,%.4f,%.2f,%.1f,%d,%d,", r->ms_median, r->ms_min,
                flops_of(c) / r->ms_median / 1e9, b.total / r->ms_median / 1e6, r->iters,
                r->sets);
        pct_text(pct, sizeof pct, b.total / r->ms_median / 1e6, copy_gbps);
    } else
        fputs(",,,,,,", f);
    fprintf(f, "%.3f,%.4f,%s,%d,%lld,", flops_of(c) / 1e9, b.total / 1e9, path_names[c->path],
            c->num_splits, (long long)c->Hm);
    if (copy_gbps > 0)
        fprintf(f, "%.1f", copy_gbps);
    fprintf(f, ",%s,%s,%d,%d,%s\n", pct, dir_names[c->dir], c->dbias, c->deterministic,
            status_text(r->out));
    fflush(f);
}

static void json_head(FILE *f, const gpu *g, const options *o, double copy_gbps)
{
    fprintf(f, "{\n  \"tool\": \"dmbench\",\n  \"version\": \"%s\",\n  \"dmattn\": ",
            DMBENCH_VERSION);
    json_string(f, dm_version_string());
    fputs(",\n  \"device\": ", f);
    json_string(f, g->name);
    fputs(",\n  \"arch\": ", f);
    json_string(f, dm_ctx_arch(g->ctx));
    fprintf(f,
            ",\n  \"l2_bytes\": %lld,\n  \"warmup\": %lld,\n  \"iters\": %lld,\n  \"seed\": "
            "%llu,\n",
            (long long)g->l2_bytes, (long long)o->warmup, (long long)o->iters,
            (unsigned long long)o->seed);
    if (copy_gbps > 0)
        fprintf(f, "  \"copy_gbps\": %.1f,\n  \"copy_bytes\": %lld,\n", copy_gbps,
                (long long)o->copy_mib << 20);
    fputs("  \"cases\": [", f);
    fflush(f);
}

static void json_row(FILE *f, const bench_case *c, const result *r, bool first, double copy_gbps)
{
    case_bytes b = sizes_of(c);
    fprintf(f,
            "%s\n    {\"B\": %lld, \"H\": %lld, \"Hkv\": %lld, \"Lq\": %lld, \"Lk\": %lld, "
            "\"D\": %lld, \"dtype\": \"%s\", \"mask\": \"%s\", \"bias\": \"%s\", "
            "\"bias_dtype\": \"%s\", \"causal\": %d, \"softcap\": %g, \"density\": %g, "
            "\"pattern\": \"%s\", \"path\": \"%s\", \"num_splits\": %d, \"Hm\": %lld, "
            "\"dir\": \"%s\", \"dbias\": %d, \"deterministic\": %d, ",
            first ? "" : ",", (long long)c->B, (long long)c->H, (long long)c->Hkv,
            (long long)c->Lq, (long long)c->Lk, (long long)c->D, dtype_text(c->dtype),
            layout_names[c->mask], layout_names[c->bias],
            c->bias ? dtype_text(bias_dtype(c)) : "none", c->causal, (double)c->softcap,
            c->density, pattern_names[c->pat], path_names[c->path], c->num_splits,
            (long long)c->Hm, dir_names[c->dir], c->dbias, c->deterministic);
    if (r->out == OUT_OK) {
        fprintf(f,
                "\"ms_median\": %.4f, \"ms_min\": %.4f, \"tflops\": %.2f, \"gbps\": %.1f, "
                "\"iters\": %d, \"sets\": %d, ",
                r->ms_median, r->ms_min, flops_of(c) / r->ms_median / 1e9,
                b.total / r->ms_median / 1e6, r->iters, r->sets);
        if (copy_gbps > 0)
            fprintf(f, "\"pct_copy\": %.1f, ", 100 * b.total / r->ms_median / 1e6 / copy_gbps);
    } else
        fputs("\"ms_median\": null, \"ms_min\": null, \"tflops\": null, \"gbps\": null, "
              "\"iters\": 0, \"sets\": 0, ",
              f);
    fprintf(f, "\"gflop\": %.3f, \"gbytes\": %.4f, \"status\": \"%s\"}", flops_of(c) / 1e9,
            b.total / 1e9, status_text(r->out));
    fflush(f);
}

static int dry_run(const case_list *l)
{
    columns k = columns_of(l);
    table_header(&k, "    GFLOP       GB");
    for (int i = 0; i < l->n; i++) {
        table_case(&k, &l->c[i]);
        printf(" | %9.1f %8.3f\n", flops_of(&l->c[i]) / 1e9, sizes_of(&l->c[i]).total / 1e9);
    }
    fflush(stdout);
    fprintf(stderr, "dmbench: %d case%s\n", l->n, l->n == 1 ? "" : "s");
    return EXIT_OK;
}

/* ---- the sweep, as sweep_run (dmbench_cli.c) drives it ---- */

typedef struct mode_sweep {
    gpu *g;
    const options *o;
    const case_list *cases;
    const columns *k;
} mode_sweep;

static void sweep_describe(void *ctx, int i, char *buf, size_t bytes)
{
    const mode_sweep *m = ctx;
    describe(&m->cases->c[i], buf, bytes);
}

static bool sweep_case(void *ctx, int i, const char *label, result *r)
{
    const mode_sweep *m = ctx;
    return run_case(m->g, m->o, &m->cases->c[i], label, r);
}

static void sweep_table(void *ctx, int i, const result *r)
{
    const mode_sweep *m = ctx;
    table_result(m->k, &m->cases->c[i], r);
}

static void sweep_csv(void *ctx, FILE *f, int i, const result *r)
{
    const mode_sweep *m = ctx;
    csv_row(f, &m->cases->c[i], r, m->k->copy_gbps);
}

static void sweep_json(void *ctx, FILE *f, int i, const result *r, bool first)
{
    const mode_sweep *m = ctx;
    json_row(f, &m->cases->c[i], r, first, m->k->copy_gbps);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--varlen") == 0)
            return varlen_main(argc, argv);

    options o;
    case_list cases = {0};
    result *res = NULL;
    FILE *csv = NULL, *json = NULL;
    gpu g;
    bool gpu_up = false, tty = isatty(2);
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if ((rc = expand(&o, &cases)) >= 0)
        goto out;
    if (o.dry_run) {
        rc = dry_run(&cases);
        goto out;
    }
    rc = EXIT_FAIL;
    res = calloc((size_t)cases.n, sizeof *res);
    if (!res) {
        fail("out of memory");
        goto out;
    }
    if (o.csv && !(csv = fopen(o.csv, "w"))) {
        fail("--csv: cannot open '%s': %s", o.csv, strerror(errno));
        goto out;
    }
    if (o.json && !(json = fopen(o.json, "w"))) {
        fail("--json: cannot open '%s': %s", o.json, strerror(errno));
        goto out;
    }
    if (!(gpu_up = gpu_open(&g, o.device, o.iters, o.seed, o.verbose)))
        goto out;

    size_t free_bytes = 0, total_bytes = 0;
    g.drv->MemGetInfo(&free_bytes, &total_bytes);
    printf("# dmbench %s, dmattn %s, %s (%s), L2 %.0f MiB, %.1f of %.1f GiB free, warmup %lld, "
           "iters %lld\n",
           DMBENCH_VERSION, dm_version_string(), g.name, dm_ctx_arch(g.ctx),
           (double)g.l2_bytes / 1048576.0, (double)free_bytes / 1073741824.0,
           (double)total_bytes / 1073741824.0, (long long)o.warmup, (long long)o.iters);
    columns k = columns_of(&cases);
    if (o.copy_bw)
        k.copy_gbps = copy_bandwidth(&g, (uint64_t)o.copy_mib << 20, o.iters);
    table_header(&k, k.copy_gbps > 0 ? "  ms(med)  TFLOP/s     GB/s  %copy"
                                      : "  ms(med)  TFLOP/s     GB/s");
    fflush(stdout);
    if (csv) {
        fputs(csv_header, csv);
        fflush(csv);
    }
    if (json)
        json_head(json, &g, &o, k.copy_gbps);

    mode_sweep m = {&g, &o, &cases, &k};
    const sweep_ops ops = {&m, cases.n, sweep_describe, sweep_case, sweep_table, sweep_csv,
                           sweep_json};
    rc = sweep_run(&ops, res, csv, json, tty);
out:
    if (!close_file(csv, "--csv", o.csv) && rc == EXIT_OK)
        rc = EXIT_FAIL;
    if (!close_file(json, "--json", o.json) && rc == EXIT_OK)
        rc = EXIT_FAIL;
    if (gpu_up)
        gpu_close(&g);
    free(res);
    free(cases.c);
    return rc;
}
