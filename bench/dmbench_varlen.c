/* dmbench_varlen.c (dmbench --varlen): sweeps of the varlen forward, dm_fwd_varlen (SPEC §5), and
 * of its backward, dm_bwd_varlen, over packed batches of sequences: decode batches (a few queries
 * per sequence over long key ranges), varlen prefill and single long rows. Lengths come from
 * --seqlens specs, cu_seqlens are built on the host and copied to the device, and each case is
 * timed as the dense mode times dm_fwd and dm_bwd.
 * Reports ms, GB/s of what must move (issue 15's definition), useful TFLOP/s, and with
 * --copy-bw the share of the device's copy bandwidth measured in the same process. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dmbench.h"

#define MAX_SPECS 16     /* --seqlens and --q-per-seq given at most this many times each */
#define MAX_SEQS 1000000 /* sequences in one batch */
#define SPEC_TEXT 128    /* a spec's text, as given */
#define LENGTHS_SHOWN 24 /* lengths printed per batch before "..." */

static const char usage[] =
    "usage: dmbench --varlen [OPTIONS]\n"
    "\n"
    "Times dmattn's varlen attention, forward (dm_fwd_varlen) and backward (dm_bwd_varlen), on\n"
    "one GPU: B sequences packed along the first dimension, q (total_q, H, D), k and v (total_k,\n"
    "Hkv, D), cu_seqlens built on the host and copied to the device. Options taking a LIST\n"
    "accept comma-separated values; --seqlens and --q-per-seq take one SPEC each and may be\n"
    "given several times. The cases are the cartesian product of all of them (duplicates\n"
    "dropped).\n"
    "\n"
    "batch:\n"
    "  --seqlens SPEC      key lengths of the sequences, one batch per SPEC (default 64x4096):\n"
    "                        NxL        N sequences of L keys          64x4096\n"
    "                        NxLO..HI   N lengths uniform in [LO, HI]  16x256..4096\n"
    "                        L1,L2,...  one sequence per value         512,1024,16384\n"
    "                      random lengths are seeded by --seed and the SPEC's text\n"
    "  --q-per-seq QSPEC   query lengths (default 8): N (every sequence), LO..HI (uniform, per\n"
    "                      sequence), a SPEC as above with one value per sequence, or `same`\n"
    "                      (each sequence's key length: varlen prefill). A QSPEC whose count\n"
    "                      differs from a SPEC's is an error.\n"
    "  --H LIST            query heads (default 32)\n"
    "  --Hkv LIST          key/value heads; each must divide H, other pairs are dropped\n"
    "                      (default 8)\n"
    "  --D LIST            head dimension (default 128)\n"
    "\n"
    "variant:\n"
    "  --dir LIST          fwd (dm_fwd_varlen), bwd (dm_bwd_varlen alone: o and lse made once per\n"
    "                      input set by an untimed dm_fwd_varlen, so --path and --num-splits do\n"
    "                      not apply) or fwdbwd (each timed run queues dm_fwd_varlen, then\n"
    "                      dm_bwd_varlen) (default fwd)\n"
    "  --dbias LIST        0 or 1: with a bias, dm_bwd_varlen also writes dbias (bias's shape and\n"
    "                      dtype); 1 with no bias or with fwd is dropped (default 0)\n"
    "  --dtype LIST        bf16 or f16: q, k, v, o (default bf16)\n"
    "  --mask LIST         none, k (key-based: bool (total_k, Hm), one value per key shared by\n"
    "                      its sequence's queries) or q (query-based: bool (total_q, Hm,\n"
    "                      max_seqlen_k)) (default k); all true but with --mask-density\n"
    "  --mask-density X    each mask entry true with probability X, independently (default 1:\n"
    "                      all true, so every tile is taken whole; 0 < X < 1 makes each tile\n"
    "                      of a key mask a vote, as a learned mask does)\n"
    "  --bias LIST         none, k (total_k, Hm) or q (total_q, Hm, max_seqlen_k) (default k)\n"
    "  --Hm LIST           heads of mask and bias: 1, kv (= Hkv) or h (= H) (default kv)\n"
    "  --bias-dtype LIST   same (q's dtype) or f32 (default same)\n"
    "  --causal LIST       0 or 1; bottom-right aligned per sequence (default 0)\n"
    "  --softcap LIST      logit soft cap, 0 = off (default 0)\n"
    "  --window LIST       top-k window W over the bias, 0 = none (default 0): the timed call\n"
    "                      is dm_fwd_varlen's whole (window mask, then attention); needs a bias,\n"
    "                      combinations without one are dropped. FLOPs and bytes stay the\n"
    "                      full work's. A backward takes the window's mask', not a window:\n"
    "                      combinations of a window with bwd or fwdbwd are dropped\n"
    "  --path LIST         auto, tiled or decode (dm_fwd_varlen_args.path; default auto)\n"
    "  --num-splits LIST   decode path: blocks a key range is split over, 0 = picked from the\n"
    "                      shapes (default 0)\n"
    "  --lse               also write lse (H, total_q) fp32 (counted in GB/s then); a backward\n"
    "                      always has it (the forward writes it, dm_bwd_varlen reads it)\n"
    "  --head-major        key-based mask and bias stored head-major: (Hm, total_k) memory\n"
    "                      described as (total_k, Hm) with strides (1, total_k), keys\n"
    "                      contiguous (default: (total_k, Hm) packed, keys Hm apart)\n"
    "\n"
    "run:\n"
    "  --warmup N          untimed runs (default 10), after one untimed call that loads or\n"
    "                      JIT-compiles the kernels\n"
    "  --iters N           timed runs: median reported, min also in CSV/JSON (default 50)\n"
    "  --seed N            seed of the random lengths and inputs (default 1)\n"
    "  --device N          CUDA device (default 0)\n"
    "  --copy-bw           also time a device-to-device copy (cuMemcpyDtoDAsync, median of\n"
    "                      --iters) in the same process and give each case's GB/s as a\n"
    "                      percentage of it (a copy moves 2x its size: read once, written once)\n"
    "  --copy-mib N        the buffer --copy-bw copies, in MiB (default 1024)\n"
    "  --csv FILE          also write the results as CSV, one row per case\n"
    "  --json FILE         also write the results as JSON (lengths included)\n"
    "  --dry-run           print the batches and the expanded case list (GFLOP, GB) and exit;\n"
    "                      no GPU used\n"
    "  -v, --verbose       the library's messages for each compile and cache event\n"
    "  -h, --help          this text\n"
    "\n"
    "Bytes (GB/s) are what must move at least once: q, k, v, o (and lse with --lse), the mask\n"
    "and the bias, each counted once: a key-based mask or bias is total_k x Hm values, a\n"
    "query-based one the part of its rows inside each sequence, sum of Lq x Lk x Hm (the\n"
    "allocation, total_q x Hm x max_seqlen_k, is in the CSV/JSON as mask_bytes, bias_bytes).\n"
    "A backward (bwd, fwdbwd) adds dout and lse read, dq, dk, dv written and with --dbias 1\n"
    "dbias, counted as allocated (a query-based one's columns past a sequence's keys are\n"
    "written 0 too).\n"
    "TFLOP/s is useful work: 4 x D x H x the (query, key) pairs inside each sequence, with\n"
    "--causal 1 only the visible ones; the mask (all true) does not change it. bwd counts 2.5x\n"
    "the forward's FLOPs and fwdbwd 3.5x, as the dense mode (issue 16) and FlashAttention count\n"
    "them (the backward's five matrix products against the forward's two).\n"
    "Inputs: random q, k, v, bias, and for a backward dout (like q), with dq, dk, dv and dbias\n"
    "zeroed; one set per case, or when a set is smaller than 4x the L2 cache, enough sets (up to\n"
    "16) rotated between runs to exceed it. Timing: CUDA events around each timed run\n"
    "(dm_fwd_varlen, dm_bwd_varlen, or dm_fwd_varlen then dm_bwd_varlen) on a stream of its own\n"
    "(split-KV combine included).\n"
    "\n"
    "Results: a table on stdout (the batches' lengths as # lines first); progress and messages\n"
    "on stderr. Exit status: 0 success (skipped cases included), 1 a case failed or no GPU could\n"
    "be used, 2 usage error.\n"
    "\n"
    "examples (issue 15):\n"
    "  dmbench --varlen --copy-bw --seqlens 64x4096 --q-per-seq 8 --q-per-seq 1\n"
    "  dmbench --varlen --copy-bw --seqlens 64x512..16384 --q-per-seq 8\n"
    "  dmbench --varlen --copy-bw --seqlens 1x524288 --q-per-seq 1 --mask none\n"
    "  dmbench --varlen --seqlens 16x256..4096 --q-per-seq same --mask none --causal 0,1\n"
    "  dmbench --varlen --copy-bw --mask k,q --bias k,q\n"
    "  dmbench --varlen --dir bwd --dbias 0,1 --seqlens 16x256..4096 --q-per-seq same --mask none\n"
    "          --bias k\n";

/* ---- batches: lengths from specs ------------------------------------------------------------- */

typedef enum layout { LAYOUT_NONE = 0, LAYOUT_K, LAYOUT_Q } layout;
typedef enum heads { HM_1 = 0, HM_KV, HM_H } heads;
typedef enum direction { DIR_FWD = 0, DIR_BWD, DIR_FWDBWD } direction;

static const char *const layout_names[] = {"none", "k", "q"};
static const char *const heads_names[] = {"1", "kv", "h"};
static const char *const dir_names[] = {"fwd", "bwd", "fwdbwd"};

/* A --seqlens or --q-per-seq value, parsed: n = 0 for a QSPEC that fits any count (a single N,
 * LO..HI or `same`). */
typedef struct spec {
    char text[SPEC_TEXT];
    int64_t n;      /* sequences; 0 = any */
    int64_t lo, hi; /* every length in [lo, hi]; lo == hi for a fixed length */
    int64_t *list;  /* explicit lengths, n of them; NULL otherwise */
    bool same;      /* --q-per-seq same */
} spec;

/* One batch: the lengths of a (--seqlens, --q-per-seq) pair, and what follows from them. */
typedef struct batch {
    const spec *keys, *queries;
    int64_t B;
    int64_t *lq, *lk; /* B each */
    int64_t total_q, total_k, max_q, max_k;
} batch;

/* FNV-1a of a spec's text: random lengths depend on the seed and the text alone, so that the
 * same spec gives the same batch whatever else is swept (bench/compare.py draws them alike). */
static uint64_t text_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* Length i of a spec: uniform in [lo, hi] from hash4(seed, text, salt, i). */
static int64_t length_at(const spec *s, uint64_t seed, uint64_t salt, int64_t i)
{
    if (s->list)
        return s->list[i];
    if (s->lo == s->hi)
        return s->lo;
    double u = unit_of(hash4(seed, text_hash(s->text), salt, (uint64_t)i));
    int64_t v = s->lo + (int64_t)floor(u * (double)(s->hi - s->lo + 1));
    return v > s->hi ? s->hi : v;
}

/* "L" or "LO..HI" into [lo, hi]. */
static bool parse_range(const char *t, int64_t max, int64_t *lo, int64_t *hi)
{
    char buf[SPEC_TEXT];
    const char *dots = strstr(t, "..");
    if (!dots)
        return parse_int(t, 0, max, lo) && (*hi = *lo, true);
    size_t n = (size_t)(dots - t);
    if (n == 0 || n >= sizeof buf)
        return false;
    memcpy(buf, t, n);
    buf[n] = '\0';
    return parse_int(buf, 0, max, lo) && parse_int(dots + 2, 0, max, hi) && *lo <= *hi;
}

/* A SPEC (query_spec: a QSPEC) into *s; false after a message naming the option. */
static bool parse_spec(const char *opt, const char *text, bool query_spec, spec *s)
{
    const int64_t len_max = INT32_MAX;
    const char *x = strchr(text, 'x');
    memset(s, 0, sizeof *s);
    if (strlen(text) >= sizeof s->text) {
        fail("%s: '%s': longer than %d characters", opt, text, SPEC_TEXT - 1);
        return false;
    }
    snprintf(s->text, sizeof s->text, "%s", text);
    if (query_spec && strcmp(text, "same") == 0) {
        s->same = true;
        return true;
    }
    if (x) {
        char count[32];
        size_t n = (size_t)(x - text);
        if (n == 0 || n >= sizeof count)
            goto bad;
        memcpy(count, text, n);
        count[n] = '\0';
        if (!parse_int(count, 1, MAX_SEQS, &s->n) || !parse_range(x + 1, len_max, &s->lo, &s->hi))
            goto bad;
        return true;
    }
    if (!strchr(text, ',')) { /* one value or range: a SPEC of one sequence, a QSPEC for all */
        if (!parse_range(text, len_max, &s->lo, &s->hi))
            goto bad;
        s->n = query_spec ? 0 : 1;
        if (!query_spec && s->lo != s->hi)
            goto bad; /* LO..HI alone names no count */
        return true;
    }
    /* A list: MAX_LIST values per option list elsewhere; a batch may be longer, so count here. */
    int64_t items = 1;
    for (const char *p = text; *p; p++)
        items += *p == ',';
    s->list = calloc((size_t)items, sizeof *s->list);
    if (!s->list) {
        fail("out of memory");
        return false;
    }
    char item[32];
    int64_t k = 0;
    for (const char *p = text;; k++) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == 0 || n >= sizeof item)
            goto bad;
        memcpy(item, p, n);
        item[n] = '\0';
        if (!parse_int(item, 0, len_max, &s->list[k]))
            goto bad;
        if (!comma)
            break;
        p = comma + 1;
    }
    s->n = items;
    s->lo = s->hi = -1;
    return true;
bad:
    free(s->list);
    s->list = NULL;
    fail("%s: '%s': expected %s", opt, text,
         query_spec ? "N, LO..HI, NxL, NxLO..HI, L1,L2,... or same"
                    : "NxL, NxLO..HI or L1,L2,... (N from 1, lengths from 0)");
    return false;
}

static void batch_free(batch *b)
{
    free(b->lq);
    free(b->lk);
    b->lq = b->lk = NULL;
}

/* The batch of a key spec and a query spec; false after a usage message. */
static bool batch_make(const spec *keys, const spec *queries, uint64_t seed, batch *b)
{
    memset(b, 0, sizeof *b);
    b->keys = keys;
    b->queries = queries;
    if (queries->n && queries->n != keys->n) {
        fail("--q-per-seq '%s' has %lld sequences, --seqlens '%s' %lld", queries->text,
             (long long)queries->n, keys->text, (long long)keys->n);
        return false;
    }
    b->B = keys->n;
    b->lq = calloc((size_t)b->B, sizeof *b->lq);
    b->lk = calloc((size_t)b->B, sizeof *b->lk);
    if (!b->lq || !b->lk) {
        fail("out of memory");
        batch_free(b);
        return false;
    }
    for (int64_t i = 0; i < b->B; i++) {
        b->lk[i] = length_at(keys, seed, 0x6b657973ull /* "keys" */, i);
        b->lq[i] = queries->same ? b->lk[i] : length_at(queries, seed, 0x71756572ull, i);
        b->total_q += b->lq[i];
        b->total_k += b->lk[i];
        b->max_q = b->lq[i] > b->max_q ? b->lq[i] : b->max_q;
        b->max_k = b->lk[i] > b->max_k ? b->lk[i] : b->max_k;
    }
    if (b->total_q > INT32_MAX || b->total_k > INT32_MAX) {
        fail("--seqlens '%s' with --q-per-seq '%s': %lld queries, %lld keys: cu_seqlens are int32",
             keys->text, queries->text, (long long)b->total_q, (long long)b->total_k);
        batch_free(b);
        return false;
    }
    return true;
}

/* "# batch 16x256..4096 / same (seed 1): B=16, keys 1234,...; queries = keys" */
static void print_batch(FILE *f, const batch *b, uint64_t seed)
{
    fprintf(f, "# batch %s / %s (seed %llu): B=%lld, total_q %lld, total_k %lld; keys ",
            b->keys->text, b->queries->text, (unsigned long long)seed, (long long)b->B,
            (long long)b->total_q, (long long)b->total_k);
    for (int64_t i = 0; i < b->B && i < LENGTHS_SHOWN; i++)
        fprintf(f, "%s%lld", i ? "," : "", (long long)b->lk[i]);
    fputs(b->B > LENGTHS_SHOWN ? ",..." : "", f);
    if (b->queries->same) {
        fputs("; queries = keys\n", f);
        return;
    }
    fputs("; queries ", f);
    for (int64_t i = 0; i < b->B && i < LENGTHS_SHOWN; i++)
        fprintf(f, "%s%lld", i ? "," : "", (long long)b->lq[i]);
    fputs(b->B > LENGTHS_SHOWN ? ",...\n" : "\n", f);
}

/* ---- options and cases ----------------------------------------------------------------------- */

typedef struct voptions {
    spec keys[MAX_SPECS], queries[MAX_SPECS];
    int n_keys, n_queries;
    int_list H, Hkv, D, dtype, mask, bias, hm, bias_f32, causal, path, num_splits, window, dir,
        dbias;
    num_list softcap;
    int64_t warmup, iters, device, copy_mib;
    double mask_density;
    uint64_t seed;
    const char *csv, *json;
    bool dry_run, verbose, copy_bw, lse, head_major;
} voptions;

typedef struct vcase {
    const batch *b;
    int64_t H, Hkv, D, Hm;
    dm_dtype dtype;
    layout mask, bias;
    heads hm;
    bool bias_f32;
    int causal;
    float softcap;
    int window; /* top-k window over the bias, 0 = none */
    int path, num_splits;
    bool lse;            /* always for a backward: the forward writes it, the backward reads it */
    bool head_major;     /* key-based mask/bias stored (Hm, total_k) */
    double mask_density; /* --mask-density: 1 = all true */
    direction dir;
    bool dbias; /* dm_bwd_varlen writes dbias; only with a bias and a backward */
} vcase;

typedef struct vcase_list {
    batch *batches;
    int n_batches;
    vcase *c;
    int n;
} vcase_list;

static dm_dtype bias_dtype(const vcase *c) { return c->bias_f32 ? DM_F32 : c->dtype; }

/* The buffers of one input set (buf_set.p[]); cu_seqlens are one pair per case, not per set.
 * Those from BUF_DOUT on are the backward's, 0 bytes (not allocated) for fwd. */
enum {
    BUF_Q, BUF_K, BUF_V, BUF_O, BUF_LSE, BUF_MASK, BUF_BIAS,
    BUF_DOUT, BUF_DQ, BUF_DK, BUF_DV, BUF_DBIAS, N_BUFS
};
_Static_assert(N_BUFS <= MAX_BUFS, "buf_set holds every buffer of a case");

/* Bytes as doubles (exact below 2^53). moved: what must move once; alloc: the buffers. */
typedef struct vbytes {
    double alloc[N_BUFS];
    double moved_mask, moved_bias, total;
} vbytes;

/* Elements of a query-based mask or bias row set inside the sequences: sum of Lq x Lk. */
static double inside_pairs(const batch *b)
{
    double sum = 0;
    for (int64_t i = 0; i < b->B; i++)
        sum += (double)b->lq[i] * (double)b->lk[i];
    return sum;
}

static vbytes sizes_of(const vcase *c)
{
    const batch *b = c->b;
    double esz = dtype_size(c->dtype), besz = dtype_size(bias_dtype(c)), Hm = (double)c->Hm;
    double tq = (double)b->total_q, tk = (double)b->total_k;
    vbytes s;
    memset(&s, 0, sizeof s);
    s.alloc[BUF_Q] = s.alloc[BUF_O] = tq * (double)c->H * (double)c->D * esz;
    s.alloc[BUF_K] = s.alloc[BUF_V] = tk * (double)c->Hkv * (double)c->D * esz;
    s.alloc[BUF_LSE] = c->lse ? tq * (double)c->H * 4 : 0;
    double q_rows = tq * Hm * (double)b->max_k, inside = inside_pairs(b) * Hm;
    s.alloc[BUF_MASK] = c->mask == LAYOUT_K ? tk * Hm : c->mask == LAYOUT_Q ? q_rows : 0;
    s.alloc[BUF_BIAS] = (c->bias == LAYOUT_K ? tk * Hm : c->bias == LAYOUT_Q ? q_rows : 0) * besz;
    s.moved_mask = c->mask == LAYOUT_Q ? inside : s.alloc[BUF_MASK];
    s.moved_bias = c->bias == LAYOUT_Q ? inside * besz : s.alloc[BUF_BIAS];
    s.total = s.alloc[BUF_Q] + s.alloc[BUF_K] + s.alloc[BUF_V] + s.alloc[BUF_O] +
              s.alloc[BUF_LSE] + s.moved_mask + s.moved_bias;
    if (c->dir == DIR_FWD)
        return s;
    /* fwdbwd counts each buffer once too: what its two calls move at least once together. */
    s.alloc[BUF_DOUT] = s.alloc[BUF_DQ] = s.alloc[BUF_Q];
    s.alloc[BUF_DK] = s.alloc[BUF_DV] = s.alloc[BUF_K];
    /* All of dbias, not only its rows inside the sequences: dm_bwd_varlen writes 0 past a
     * sequence's keys in a query-based one, so those bytes move as well. */
    s.alloc[BUF_DBIAS] = c->dbias ? s.alloc[BUF_BIAS] : 0;
    s.total += s.alloc[BUF_DOUT] + s.alloc[BUF_DQ] + s.alloc[BUF_DK] + s.alloc[BUF_DV] +
               s.alloc[BUF_DBIAS];
    return s;
}

/* The forward's 4 x D x H per visible pair (two matrix products: QK^T, PV). The backward has five
 * (QK^T recomputed, dV, dP, dQ, dK): 2.5x, as the dense mode (issue 16) and FlashAttention count
 * it; fwdbwd the sum. */
static double flops_of(const vcase *c)
{
    static const double factor[] = {[DIR_FWD] = 1, [DIR_BWD] = 2.5, [DIR_FWDBWD] = 3.5};
    double pairs = 0;
    for (int64_t i = 0; i < c->b->B; i++)
        pairs += visible_pairs(c->b->lq[i], c->b->lk[i], c->causal);
    return factor[c->dir] * 4.0 * (double)c->D * (double)c->H * pairs;
}

/* "64x4096/8 H=32 Hkv=8 D=128 bf16 mask-k bias-k Hm=kv causal path=decode splits=4", then
 * " bwd dbias" and the like for a backward. */
static void describe(const vcase *c, char *buf, size_t bytes)
{
    int n = snprintf(buf, bytes, "%s/%s H=%lld Hkv=%lld D=%lld %s mask-%s bias-%s%s Hm=%s%s%s",
                     c->b->keys->text, c->b->queries->text, (long long)c->H, (long long)c->Hkv,
                     (long long)c->D, dtype_text(c->dtype), layout_names[c->mask],
                     layout_names[c->bias], c->bias_f32 ? "/f32" : "", heads_names[c->hm],
                     c->head_major ? " head-major" : "", c->causal ? " causal" : "");
    if (n > 0 && (size_t)n < bytes && c->softcap > 0)
        n += snprintf(buf + n, bytes - (size_t)n, " softcap=%g", (double)c->softcap);
    if (n > 0 && (size_t)n < bytes && c->window > 0)
        n += snprintf(buf + n, bytes - (size_t)n, " window=%d", c->window);
    if (n > 0 && (size_t)n < bytes && (c->path || c->num_splits))
        n += snprintf(buf + n, bytes - (size_t)n, " path=%s splits=%d", path_names[c->path],
                      c->num_splits);
    if (n > 0 && (size_t)n < bytes && c->dir != DIR_FWD)
        snprintf(buf + n, bytes - (size_t)n, " %s%s", dir_names[c->dir], c->dbias ? " dbias" : "");
}

/* Returns -1 to go on, else an exit status. */
static int parse_options(int argc, char **argv, voptions *o)
{
    static const char *const dtype_names[] = {"bf16", "f16"};
    static const int64_t dtype_values[] = {DM_BF16, DM_F16};
    static const int64_t lay_values[] = {LAYOUT_NONE, LAYOUT_K, LAYOUT_Q};
    static const int64_t hm_values[] = {HM_1, HM_KV, HM_H};
    static const char *const bdt_names[] = {"same", "f32"};
    static const int64_t bdt_values[] = {0, 1};
    static const int64_t dir_values[] = {DIR_FWD, DIR_BWD, DIR_FWDBWD};
    const int64_t grid_max = 65535;

    memset(o, 0, sizeof *o);
    o->warmup = 10;
    o->iters = 50;
    o->seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *val = NULL;
        bool ok = true;

        if (strcmp(s, "--varlen") == 0)
            continue;
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
        if (strcmp(s, "--lse") == 0) {
            o->lse = true;
            continue;
        }
        if (strcmp(s, "--head-major") == 0) {
            o->head_major = true;
            continue;
        }

        static const char *const valued[] = {
            "--seqlens", "--q-per-seq", "--H",       "--Hkv",        "--D",      "--dtype",
            "--mask",    "--bias",      "--Hm",      "--bias-dtype", "--causal", "--softcap",
            "--window",
            "--path",    "--num-splits", "--warmup", "--iters",      "--seed",   "--device",
            "--copy-mib", "--csv",      "--json",    "--mask-density", "--dir", "--dbias"};
        const char *opt = NULL;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0] && !opt; k++)
            if (take(argc, argv, &i, valued[k], &val))
                opt = valued[k];
        if (!opt) {
            if (s[0] == '-')
                fail("unknown option '%s' in --varlen mode (see dmbench --varlen --help)", s);
            else
                fail("unexpected argument '%s' (see dmbench --varlen --help)", s);
            return EXIT_USAGE;
        }
        if (!val || !*val) {
            fail("%s needs a value (see dmbench --varlen --help)", opt);
            return EXIT_USAGE;
        }

        if (strcmp(opt, "--seqlens") == 0 || strcmp(opt, "--q-per-seq") == 0) {
            bool query = opt[2] == 'q';
            int *n = query ? &o->n_queries : &o->n_keys;
            if (*n == MAX_SPECS) {
                fail("%s: given more than %d times", opt, MAX_SPECS);
                return EXIT_USAGE;
            }
            ok = parse_spec(opt, val, query, query ? &o->queries[*n] : &o->keys[*n]);
            *n += ok;
        } else if (strcmp(opt, "--H") == 0)
            ok = parse_int_list(opt, val, 1, grid_max, &o->H);
        else if (strcmp(opt, "--Hkv") == 0)
            ok = parse_int_list(opt, val, 1, grid_max, &o->Hkv);
        else if (strcmp(opt, "--D") == 0)
            ok = parse_int_list(opt, val, 1, 4096, &o->D);
        else if (strcmp(opt, "--dtype") == 0)
            ok = parse_name_list(opt, val, dtype_names, dtype_values, 2, "bf16 or f16",
                                 &o->dtype);
        else if (strcmp(opt, "--mask") == 0)
            ok = parse_name_list(opt, val, layout_names, lay_values, 3, "none, k or q",
                                 &o->mask);
        else if (strcmp(opt, "--bias") == 0)
            ok = parse_name_list(opt, val, layout_names, lay_values, 3, "none, k or q",
                                 &o->bias);
        else if (strcmp(opt, "--Hm") == 0)
            ok = parse_name_list(opt, val, heads_names, hm_values, 3, "1, kv or h", &o->hm);
        else if (strcmp(opt, "--bias-dtype") == 0)
            ok = parse_name_list(opt, val, bdt_names, bdt_values, 2, "same or f32",
                                 &o->bias_f32);
        else if (strcmp(opt, "--causal") == 0)
            ok = parse_int_list(opt, val, 0, 1, &o->causal);
        else if (strcmp(opt, "--window") == 0)
            ok = parse_int_list(opt, val, 0, INT32_MAX, &o->window);
        else if (strcmp(opt, "--softcap") == 0)
            ok = parse_num_list(opt, val, 0, 1e30, "numbers >= 0 (0 = off)", &o->softcap);
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
        } else if (strcmp(opt, "--copy-mib") == 0) {
            ok = parse_int(val, 1, 1 << 20, &o->copy_mib);
            if (!ok)
                fail("%s: '%s': expected a size in MiB from 1 to 1048576", opt, val);
        } else if (strcmp(opt, "--seed") == 0) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(val, &end, 0);
            ok = !errno && end != val && !*end && val[0] != '-';
            if (!ok)
                fail("%s: '%s': expected a non-negative integer", opt, val);
            o->seed = v;
        } else if (strcmp(opt, "--mask-density") == 0) {
            char *end;
            errno = 0;
            o->mask_density = strtod(val, &end);
            ok = !errno && end != val && !*end && o->mask_density > 0 && o->mask_density <= 1;
            if (!ok)
                fail("%s: '%s': expected a number in (0, 1]", opt, val);
        } else if (strcmp(opt, "--csv") == 0)
            o->csv = val;
        else if (strcmp(opt, "--json") == 0)
            o->json = val;
        if (!ok)
            return EXIT_USAGE;
    }

    if (o->n_keys == 0 && !parse_spec("--seqlens", "64x4096", false, &o->keys[o->n_keys++]))
        return EXIT_FAIL;
    if (o->n_queries == 0 && !parse_spec("--q-per-seq", "8", true, &o->queries[o->n_queries++]))
        return EXIT_FAIL;
    set_default(&o->H, 32);
    set_default(&o->Hkv, 8);
    set_default(&o->D, 128);
    set_default(&o->dtype, DM_BF16);
    set_default(&o->mask, LAYOUT_K);
    set_default(&o->bias, LAYOUT_K);
    set_default(&o->hm, HM_KV);
    set_default(&o->bias_f32, 0);
    set_default(&o->causal, 0);
    set_default(&o->path, DM_PATH_AUTO);
    set_default(&o->num_splits, 0);
    set_default(&o->window, 0);
    set_default(&o->dir, DIR_FWD);
    set_default(&o->dbias, 0);
    if (o->softcap.n == 0)
        o->softcap.v[o->softcap.n++] = 0;
    if (o->copy_mib == 0)
        o->copy_mib = (int64_t)(COPY_BYTES_DEFAULT >> 20);
    if (o->mask_density == 0)
        o->mask_density = 1;
    return -1;
}

static void free_options(voptions *o)
{
    for (int i = 0; i < o->n_keys; i++)
        free(o->keys[i].list);
    for (int i = 0; i < o->n_queries; i++)
        free(o->queries[i].list);
}

static bool same_case(const vcase *a, const vcase *b)
{
    return a->b == b->b && a->H == b->H && a->Hkv == b->Hkv && a->D == b->D && a->Hm == b->Hm &&
           a->dtype == b->dtype && a->mask == b->mask && a->bias == b->bias &&
           a->bias_f32 == b->bias_f32 && a->causal == b->causal && a->softcap == b->softcap &&
           a->window == b->window &&
           a->path == b->path && a->num_splits == b->num_splits && a->dir == b->dir &&
           a->dbias == b->dbias;
}

/* The axes, slowest first: the batch varies fastest, so that a table reads as one curve. */
enum {
    AX_DIR, AX_DTYPE, AX_D, AX_MASK, AX_BIAS, AX_HM, AX_BDT, AX_DBIAS, AX_CAUSAL, AX_SOFTCAP,
    AX_WINDOW, AX_PATH, AX_SPLITS,
    AX_H, AX_HKV, AX_BATCH, N_AXES
};

/* Why a combination is dropped (DROP_NONE: kept), counted per reason for one message each. */
typedef enum drop {
    DROP_NONE = 0, DROP_HKV, DROP_WINDOW_BIAS, DROP_WINDOW_BWD, DROP_DBIAS, N_DROPS
} drop;

static const char *const drop_texts[N_DROPS] = {
    [DROP_HKV] = "where Hkv does not divide H",
    [DROP_WINDOW_BIAS] = "with a window and no bias",
    [DROP_WINDOW_BWD] = "with a window and a backward (it takes the window's mask', not a window)",
    [DROP_DBIAS] = "with dbias 1 and no bias or no backward",
};

static drop drop_of(const vcase *c)
{
    if (c->H % c->Hkv != 0)
        return DROP_HKV;
    if (c->window > 0 && !c->bias) /* a window selects over the bias */
        return DROP_WINDOW_BIAS;
    if (c->window > 0 && c->dir != DIR_FWD)
        return DROP_WINDOW_BWD;
    if (c->dbias && (!c->bias || c->dir == DIR_FWD))
        return DROP_DBIAS;
    return DROP_NONE;
}

/* Returns -1 to go on, else an exit status. */
static int expand(const voptions *o, vcase_list *out)
{
    int count[N_AXES], pick[N_AXES] = {0}, dropped[N_DROPS] = {0};

    out->batches = calloc((size_t)(o->n_keys * o->n_queries), sizeof *out->batches);
    if (!out->batches) {
        fail("out of memory");
        return EXIT_FAIL;
    }
    for (int k = 0; k < o->n_keys; k++)
        for (int q = 0; q < o->n_queries; q++) {
            if (!batch_make(&o->keys[k], &o->queries[q], o->seed,
                            &out->batches[out->n_batches]))
                return EXIT_USAGE;
            out->n_batches++;
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
    count[AX_WINDOW] = o->window.n;
    count[AX_PATH] = o->path.n;
    count[AX_SPLITS] = o->num_splits.n;
    count[AX_H] = o->H.n;
    count[AX_HKV] = o->Hkv.n;
    count[AX_BATCH] = out->n_batches;
    double total = 1;
    for (int a = 0; a < N_AXES; a++)
        total *= count[a];
    if (total > MAX_CASES) {
        fail("the lists make %.0f cases, more than %d: sweep fewer values at once", total,
             MAX_CASES);
        return EXIT_USAGE;
    }
    out->c = calloc((size_t)total, sizeof *out->c);
    if (!out->c) {
        fail("out of memory");
        return EXIT_FAIL;
    }
    for (;;) {
        vcase c = {
            .b = &out->batches[pick[AX_BATCH]],
            .H = o->H.v[pick[AX_H]],
            .Hkv = o->Hkv.v[pick[AX_HKV]],
            .D = o->D.v[pick[AX_D]],
            .dtype = (dm_dtype)o->dtype.v[pick[AX_DTYPE]],
            .mask = (layout)o->mask.v[pick[AX_MASK]],
            .bias = (layout)o->bias.v[pick[AX_BIAS]],
            .hm = (heads)o->hm.v[pick[AX_HM]],
            .bias_f32 = o->bias_f32.v[pick[AX_BDT]] != 0,
            .causal = (int)o->causal.v[pick[AX_CAUSAL]],
            .softcap = (float)o->softcap.v[pick[AX_SOFTCAP]],
            .window = (int)o->window.v[pick[AX_WINDOW]],
            .path = (int)o->path.v[pick[AX_PATH]],
            .num_splits = (int)o->num_splits.v[pick[AX_SPLITS]],
            .lse = o->lse,
            .head_major = o->head_major,
            .mask_density = o->mask_density,
            .dir = (direction)o->dir.v[pick[AX_DIR]],
            .dbias = o->dbias.v[pick[AX_DBIAS]] != 0,
        };
        /* Normalize what does not change the work, so that the dedup below drops repeats. */
        if (!c.bias)
            c.bias_f32 = false;
        if (!c.mask && !c.bias)
            c.hm = HM_KV;
        c.Hm = c.hm == HM_1 ? 1 : c.hm == HM_KV ? c.Hkv : c.H;
        if (c.dir != DIR_FWD)
            c.lse = true;
        if (c.dir == DIR_BWD) { /* the forward's kernel path: its one call per set is untimed */
            c.path = DM_PATH_AUTO;
            c.num_splits = 0;
        }
        drop why = drop_of(&c);
        dropped[why]++;
        bool keep = why == DROP_NONE;
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
    for (int d = DROP_NONE + 1; d < N_DROPS; d++)
        if (dropped[d])
            fprintf(stderr, "dmbench: dropped %d combination%s %s\n", dropped[d],
                    dropped[d] == 1 ? "" : "s", drop_texts[d]);
    if (out->n == 0) {
        fail("no cases left to run: every combination was dropped, as said above");
        return EXIT_USAGE;
    }
    return -1;
}

static void free_cases(vcase_list *l)
{
    for (int i = 0; i < l->n_batches; i++)
        batch_free(&l->batches[i]);
    free(l->batches);
    free(l->c);
}

/* ---- one case -------------------------------------------------------------------------------- */

static bool zero(gpu *g, CUdeviceptr p, double bytes, const char *what)
{
    return cu_ok(g, g->drv->MemsetD8(p, 0, (size_t)bytes), what);
}

/* dout random like q; the gradients zeroed, as o is (the backward writes them all). */
static bool fill_grads(gpu *g, const vcase *c, const vbytes *b, const buf_set *s, uint64_t salt)
{
    const CUdeviceptr *p = s->p;
    return fill_values(g, p[BUF_DOUT], (uint64_t)b->alloc[BUF_DOUT], c->dtype, salt) &&
           zero(g, p[BUF_DQ], b->alloc[BUF_DQ], "cuMemsetD8 (dq)") &&
           zero(g, p[BUF_DK], b->alloc[BUF_DK], "cuMemsetD8 (dk)") &&
           zero(g, p[BUF_DV], b->alloc[BUF_DV], "cuMemsetD8 (dv)") &&
           (!c->dbias || zero(g, p[BUF_DBIAS], b->alloc[BUF_DBIAS], "cuMemsetD8 (dbias)"));
}

static bool fill_set(gpu *g, const vcase *c, const vbytes *b, const buf_set *s, int set)
{
    uint64_t salt = (uint64_t)set * 8;
    const CUdeviceptr *p = s->p;
    return fill_values(g, p[BUF_Q], (uint64_t)b->alloc[BUF_Q], c->dtype, salt + 1) &&
           fill_values(g, p[BUF_K], (uint64_t)b->alloc[BUF_K], c->dtype, salt + 2) &&
           fill_values(g, p[BUF_V], (uint64_t)b->alloc[BUF_V], c->dtype, salt + 3) &&
           zero(g, p[BUF_O], b->alloc[BUF_O], "cuMemsetD8 (o)") &&
           (!c->lse || zero(g, p[BUF_LSE], b->alloc[BUF_LSE], "cuMemsetD8 (lse)")) &&
           (!c->mask ||
            (c->mask_density < 1
                 ? fill_mask_random(g, p[BUF_MASK], (uint64_t)b->alloc[BUF_MASK], c->mask_density)
                 : cu_ok(g, g->drv->MemsetD8(p[BUF_MASK], 1, (size_t)b->alloc[BUF_MASK]),
                         "cuMemsetD8"))) &&
           (!c->bias ||
            fill_values(g, p[BUF_BIAS], (uint64_t)b->alloc[BUF_BIAS], bias_dtype(c), salt + 4)) &&
           (c->dir == DIR_FWD || fill_grads(g, c, b, s, salt + 5));
}

static dm_tensor ptr_tensor(CUdeviceptr p, dm_dtype t, int rank, const int64_t *shape)
{
    dm_tensor x = {.data = (void *)(uintptr_t)p, .dtype = t, .rank = rank};
    int64_t stride = 1;
    for (int i = rank - 1; i >= 0; i--) { /* packed */
        x.shape[i] = shape[i];
        x.strides[i] = stride;
        stride *= shape[i];
    }
    return x;
}

/* mask or bias: (total_k, Hm) key-based, (total_q, Hm, max_seqlen_k) query-based, packed; with
 * --head-major the key-based one's memory is (Hm, total_k): strides (1, total_k). */
static dm_tensor keys_tensor(CUdeviceptr p, dm_dtype t, const vcase *c, layout l)
{
    int64_t kshape[2] = {c->b->total_k, c->Hm}, qshape[3] = {c->b->total_q, c->Hm, c->b->max_k};
    if (l != LAYOUT_K)
        return ptr_tensor(p, t, 3, qshape);
    dm_tensor x = ptr_tensor(p, t, 2, kshape);
    if (c->head_major) {
        x.strides[0] = 1;
        x.strides[1] = c->b->total_k;
    }
    return x;
}

static dm_fwd_varlen_args fwd_args_of(const vcase *c, const buf_set *s, CUdeviceptr cu_q,
                                      CUdeviceptr cu_k)
{
    const batch *b = c->b;
    int64_t qs[3] = {b->total_q, c->H, c->D}, ks[3] = {b->total_k, c->Hkv, c->D};
    int64_t cs[1] = {b->B + 1}, ls[2] = {c->H, b->total_q};
    dm_fwd_varlen_args a = {
        .q = ptr_tensor(s->p[BUF_Q], c->dtype, 3, qs),
        .k = ptr_tensor(s->p[BUF_K], c->dtype, 3, ks),
        .v = ptr_tensor(s->p[BUF_V], c->dtype, 3, ks),
        .cu_seqlens_q = ptr_tensor(cu_q, DM_I32, 1, cs),
        .cu_seqlens_k = ptr_tensor(cu_k, DM_I32, 1, cs),
        .max_seqlen_q = b->max_q,
        .max_seqlen_k = b->max_k,
        .o = ptr_tensor(s->p[BUF_O], c->dtype, 3, qs),
        .softcap = c->softcap,
        .window = c->window,
        .causal = c->causal,
        .path = c->path,
        .num_splits = c->num_splits,
    };
    if (c->lse)
        a.lse = ptr_tensor(s->p[BUF_LSE], DM_F32, 2, ls);
    if (c->mask)
        a.mask = keys_tensor(s->p[BUF_MASK], DM_BOOL, c, c->mask);
    if (c->bias)
        a.bias = keys_tensor(s->p[BUF_BIAS], bias_dtype(c), c, c->bias);
    return a;
}

/* The backward of the forward `f` (its q, k, v, o, lse, cu_seqlens, mask, bias) into the set's
 * gradients. f has no window: those cases are dropped, so its mask is the one attended with. */
static dm_bwd_varlen_args bwd_args_of(const vcase *c, const buf_set *s,
                                      const dm_fwd_varlen_args *f)
{
    const batch *b = c->b;
    int64_t qs[3] = {b->total_q, c->H, c->D}, ks[3] = {b->total_k, c->Hkv, c->D};
    dm_bwd_varlen_args a = {
        .dout = ptr_tensor(s->p[BUF_DOUT], c->dtype, 3, qs),
        .q = f->q, .k = f->k, .v = f->v, .o = f->o, .lse = f->lse,
        .cu_seqlens_q = f->cu_seqlens_q,
        .cu_seqlens_k = f->cu_seqlens_k,
        .max_seqlen_q = f->max_seqlen_q,
        .max_seqlen_k = f->max_seqlen_k,
        .mask = f->mask, .bias = f->bias,
        .dq = ptr_tensor(s->p[BUF_DQ], c->dtype, 3, qs),
        .dk = ptr_tensor(s->p[BUF_DK], c->dtype, 3, ks),
        .dv = ptr_tensor(s->p[BUF_DV], c->dtype, 3, ks),
        .scale = f->scale,
        .softcap = f->softcap,
        .causal = f->causal,
    };
    if (c->dbias)
        a.dbias = keys_tensor(s->p[BUF_DBIAS], bias_dtype(c), c, c->bias);
    return a;
}

/* cu_seqlens of lengths len[0..B): B + 1 int32 prefix sums, copied to a new device buffer. */
static bool upload_cu_seqlens(gpu *g, const int64_t *len, int64_t B, CUdeviceptr *out)
{
    int32_t *cu = malloc((size_t)(B + 1) * sizeof *cu);
    bool ok = false;
    *out = 0;
    if (!cu) {
        snprintf(g->err, sizeof g->err, "out of host memory (cu_seqlens of %lld)", (long long)B);
        return false;
    }
    cu[0] = 0;
    for (int64_t i = 0; i < B; i++)
        cu[i + 1] = cu[i] + (int32_t)len[i]; /* totals checked against INT32_MAX in batch_make */
    ok = cu_ok(g, g->drv->MemAlloc(out, (size_t)(B + 1) * sizeof *cu), "cuMemAlloc (cu_seqlens)") &&
         cu_ok(g, g->drv->MemcpyHtoD(*out, cu, (size_t)(B + 1) * sizeof *cu), "cuMemcpyHtoD");
    free(cu);
    return ok;
}

/* One input set's calls; bwd is unused for a fwd case. */
typedef struct set_args {
    dm_fwd_varlen_args fwd;
    dm_bwd_varlen_args bwd;
} set_args;

typedef struct varlen_job {
    gpu *g;
    const set_args *args;
    int n_sets;
    direction dir;
    const char *label;
} varlen_job;

static bool queue_fwd(const varlen_job *j, const set_args *a)
{
    if (dm_fwd_varlen(j->g->ctx, &a->fwd, j->g->stream) == DM_OK)
        return true;
    fail("%s: %s", j->label, dm_errmsg(j->g->ctx)); /* the message names the call */
    return false;
}

static bool queue_bwd(const varlen_job *j, const set_args *a)
{
    if (dm_bwd_varlen(j->g->ctx, &a->bwd, j->g->stream) == DM_OK)
        return true;
    fail("%s: %s", j->label, dm_errmsg(j->g->ctx));
    return false;
}

/* One run of the case's direction on the set after the previous run's. */
static bool queue_run(void *ctx, int run)
{
    const varlen_job *j = ctx;
    const set_args *a = &j->args[run % j->n_sets];
    if (j->dir != DIR_BWD && !queue_fwd(j, a))
        return false;
    return j->dir == DIR_FWD || queue_bwd(j, a);
}

/* bwd: the o and lse that each set's timed dm_bwd_varlen reads, by one dm_fwd_varlen per set
 * (queued before the timing, finished by its synchronize). */
static bool queue_forwards(const varlen_job *j)
{
    for (int i = 0; j->dir == DIR_BWD && i < j->n_sets; i++)
        if (!queue_fwd(j, &j->args[i]))
            return false;
    return true;
}

/* Runs one case into *r. Returns false only when the CUDA context is unusable afterwards. */
static bool run_case(gpu *g, const voptions *o, const vcase *c, const char *label, result *r)
{
    vbytes b = sizes_of(c);
    buf_set sets[MAX_SETS];
    set_args args[MAX_SETS];
    CUdeviceptr cu_q = 0, cu_k = 0;
    bool alive = true;
    int n_sets = 0;

    memset(r, 0, sizeof *r);
    r->out = OUT_FAILED;
    if (!upload_cu_seqlens(g, c->b->lq, c->b->B, &cu_q) ||
        !upload_cu_seqlens(g, c->b->lk, c->b->B, &cu_k)) {
        fail("%s: %s", label, g->err);
        goto out;
    }
    n_sets = alloc_sets(g, b.alloc, N_BUFS, sets, label, &alive);
    if (n_sets <= 0) {
        r->out = n_sets == 0 ? OUT_SKIPPED : OUT_FAILED;
        n_sets = 0;
        goto out;
    }
    for (int i = 0; i < n_sets; i++) {
        if (!fill_set(g, c, &b, &sets[i], i)) {
            fail("%s: filling the inputs: %s", label, g->err);
            goto out;
        }
        args[i].fwd = fwd_args_of(c, &sets[i], cu_q, cu_k);
        args[i].bwd = bwd_args_of(c, &sets[i], &args[i].fwd);
    }
    varlen_job job = {g, args, n_sets, c->dir, label};
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
    if (alive) {
        free_sets(g, sets, n_sets);
        if (cu_q)
            g->drv->MemFree(cu_q);
        if (cu_k)
            g->drv->MemFree(cu_k);
    }
    return alive;
}

/* ---- reports --------------------------------------------------------------------------------- */

typedef struct columns {
    bool softcap, window, path, dir; /* shown in the table only when some case uses them */
    int spec_width;
    double copy_gbps; /* --copy-bw: the copy bandwidth measured; 0 = none */
} columns;

static columns columns_of(const vcase_list *l)
{
    columns k = {false, false, false, false, 5, 0};
    for (int i = 0; i < l->n; i++) {
        const vcase *c = &l->c[i];
        int w = (int)(strlen(c->b->keys->text) + 1 + strlen(c->b->queries->text));
        k.softcap |= c->softcap > 0;
        k.window |= c->window > 0;
        k.path |= c->path != DM_PATH_AUTO || c->num_splits != 0;
        k.dir |= c->dir != DIR_FWD;
        k.spec_width = w > k.spec_width ? (w < 40 ? w : 40) : k.spec_width;
    }
    return k;
}

static void table_header(const columns *k, const char *tail)
{
    printf("%-*s %4s %8s %8s %6s %7s %4s %4s %4s %5s %4s %8s %3s %6s", k->spec_width, "batch",
           "B", "total_q", "total_k", "max_q", "max_k", "H", "Hkv", "D", "dtype", "mask", "bias",
           "Hm", "causal");
    if (k->softcap)
        printf(" %7s", "softcap");
    if (k->window)
        printf(" %6s", "window");
    if (k->path)
        printf(" %6s %6s", "path", "splits");
    if (k->dir)
        printf(" %-12s", "dir");
    printf(" | %s\n", tail);
}

static void table_case(const columns *k, const vcase *c)
{
    char spec[2 * SPEC_TEXT + 2], bias[16];
    snprintf(spec, sizeof spec, "%s/%s", c->b->keys->text, c->b->queries->text);
    snprintf(bias, sizeof bias, "%s%s", layout_names[c->bias], c->bias_f32 ? ":f32" : "");
    printf("%-*s %4lld %8lld %8lld %6lld %7lld %4lld %4lld %4lld %5s %4s %8s %3s %6d",
           k->spec_width, spec, (long long)c->b->B, (long long)c->b->total_q,
           (long long)c->b->total_k, (long long)c->b->max_q, (long long)c->b->max_k,
           (long long)c->H, (long long)c->Hkv, (long long)c->D, dtype_text(c->dtype),
           layout_names[c->mask], bias, heads_names[c->hm], c->causal);
    if (k->softcap)
        printf(" %7g", (double)c->softcap);
    if (k->window)
        printf(" %6d", c->window);
    if (k->path)
        printf(" %6s %6d", path_names[c->path], c->num_splits);
    if (k->dir) {
        char dir[16]; /* "fwdbwd+dbias" at most */
        snprintf(dir, sizeof dir, "%s%s", dir_names[c->dir], c->dbias ? "+dbias" : "");
        printf(" %-12s", dir);
    }
}

static void table_result(const columns *k, const vcase *c, const result *r)
{
    table_case(k, c);
    table_tail(r, flops_of(c), sizes_of(c).total, k->copy_gbps);
}

/* A spec's text as one CSV field: quoted when it holds commas (a list of lengths). */
static void csv_text(FILE *f, const char *s)
{
    if (strchr(s, ','))
        fprintf(f, "\"%s\",", s);
    else
        fprintf(f, "%s,", s);
}

static const char csv_header[] =
    "seqlens,q_per_seq,B,total_q,total_k,max_seqlen_q,max_seqlen_k,H,Hkv,D,dtype,mask,bias,Hm,"
    "bias_dtype,causal,softcap,path,num_splits,lse,ms_median,ms_min,tflops,gbps,iters,sets,"
    "gflop,gbytes,mask_bytes,bias_bytes,copy_gbps,pct_copy,head_major,status,mask_density,window,"
    "dir,dbias\n";

/* New columns go at the end: scripts read them by name, but the order stays as it was. */
static void csv_row(FILE *f, const vcase *c, const result *r, double copy_gbps)
{
    vbytes b = sizes_of(c);
    csv_text(f, c->b->keys->text);
    csv_text(f, c->b->queries->text);
    fprintf(f, "%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%s,%s,%s,%lld,%s,%d,%g,%s,%d,%d,",
            (long long)c->b->B, (long long)c->b->total_q, (long long)c->b->total_k,
            (long long)c->b->max_q, (long long)c->b->max_k, (long long)c->H, (long long)c->Hkv,
            (long long)c->D, dtype_text(c->dtype), layout_names[c->mask], layout_names[c->bias],
            (long long)c->Hm, c->bias ? dtype_text(bias_dtype(c)) : "none", c->causal,
            (double)c->softcap, path_names[c->path], c->num_splits, c->lse);
    if (r->out == OUT_OK)
        fprintf(f, "%.4f,%.4f,%.2f,%.1f,%d,%d,", r->ms_median, r->ms_min,
                flops_of(c) / r->ms_median / 1e9, b.total / r->ms_median / 1e6, r->iters,
                r->sets);
    else
        fputs(",,,,,,", f);
    fprintf(f, "%.3f,%.4f,%.0f,%.0f,", flops_of(c) / 1e9, b.total / 1e9, b.alloc[BUF_MASK],
            b.alloc[BUF_BIAS]);
    if (copy_gbps > 0) {
        fprintf(f, "%.1f,", copy_gbps);
        if (r->out == OUT_OK)
            fprintf(f, "%.1f", 100 * b.total / r->ms_median / 1e6 / copy_gbps);
        fputc(',', f);
    } else
        fputs(",,", f);
    fprintf(f, "%d,%s,%g,%d,%s,%d\n", c->head_major, status_text(r->out), c->mask_density,
            c->window, dir_names[c->dir], c->dbias);
    fflush(f);
}

static void json_head(FILE *f, const gpu *g, const voptions *o, double copy_gbps)
{
    fprintf(f, "{\n  \"tool\": \"dmbench\",\n  \"mode\": \"varlen\",\n  \"version\": \"%s\",\n"
               "  \"dmattn\": ",
            DMBENCH_VERSION);
    json_string(f, dm_version_string());
    fputs(",\n  \"device\": ", f);
    json_string(f, g->name);
    fputs(",\n  \"arch\": ", f);
    json_string(f, dm_ctx_arch(g->ctx));
    fprintf(f,
            ",\n  \"l2_bytes\": %lld,\n  \"warmup\": %lld,\n  \"iters\": %lld,\n  \"seed\": "
            "%llu,\n  \"mask_density\": %g,\n",
            (long long)g->l2_bytes, (long long)o->warmup, (long long)o->iters,
            (unsigned long long)o->seed, o->mask_density);
    if (copy_gbps > 0)
        fprintf(f, "  \"copy_gbps\": %.1f,\n  \"copy_bytes\": %lld,\n", copy_gbps,
                (long long)o->copy_mib << 20);
    fputs("  \"cases\": [", f);
    fflush(f);
}

static void json_lengths(FILE *f, const char *name, const int64_t *len, int64_t n)
{
    fprintf(f, "\"%s\": [", name);
    for (int64_t i = 0; i < n; i++)
        fprintf(f, "%s%lld", i ? ", " : "", (long long)len[i]);
    fputs("], ", f);
}

static void json_row(FILE *f, const vcase *c, const result *r, bool first, double copy_gbps)
{
    vbytes b = sizes_of(c);
    fprintf(f, "%s\n    {\"seqlens\": ", first ? "" : ",");
    json_string(f, c->b->keys->text);
    fputs(", \"q_per_seq\": ", f);
    json_string(f, c->b->queries->text);
    fprintf(f,
            ", \"B\": %lld, \"total_q\": %lld, \"total_k\": %lld, \"max_seqlen_q\": %lld, "
            "\"max_seqlen_k\": %lld, \"H\": %lld, \"Hkv\": %lld, \"D\": %lld, \"dtype\": \"%s\", "
            "\"mask\": \"%s\", \"bias\": \"%s\", \"Hm\": %lld, \"bias_dtype\": \"%s\", "
            "\"causal\": %d, \"softcap\": %g, \"path\": \"%s\", \"num_splits\": %d, "
            "\"lse\": %s, \"head_major\": %s, \"window\": %d, \"dir\": \"%s\", \"dbias\": %d, ",
            (long long)c->b->B, (long long)c->b->total_q, (long long)c->b->total_k,
            (long long)c->b->max_q, (long long)c->b->max_k, (long long)c->H, (long long)c->Hkv,
            (long long)c->D, dtype_text(c->dtype), layout_names[c->mask], layout_names[c->bias],
            (long long)c->Hm, c->bias ? dtype_text(bias_dtype(c)) : "none", c->causal,
            (double)c->softcap, path_names[c->path], c->num_splits, c->lse ? "true" : "false",
            c->head_major ? "true" : "false", c->window, dir_names[c->dir], c->dbias);
    json_lengths(f, "seqlens_k", c->b->lk, c->b->B);
    json_lengths(f, "seqlens_q", c->b->lq, c->b->B);
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
    fprintf(f,
            "\"gflop\": %.3f, \"gbytes\": %.4f, \"mask_bytes\": %.0f, \"bias_bytes\": %.0f, "
            "\"status\": \"%s\"}",
            flops_of(c) / 1e9, b.total / 1e9, b.alloc[BUF_MASK], b.alloc[BUF_BIAS],
            status_text(r->out));
    fflush(f);
}

static int dry_run(const vcase_list *l, uint64_t seed)
{
    columns k = columns_of(l);
    for (int i = 0; i < l->n_batches; i++)
        print_batch(stdout, &l->batches[i], seed);
    table_header(&k, "    GFLOP       GB   mask+bias MB");
    for (int i = 0; i < l->n; i++) {
        vbytes b = sizes_of(&l->c[i]);
        table_case(&k, &l->c[i]);
        printf(" | %9.1f %8.3f %14.1f\n", flops_of(&l->c[i]) / 1e9, b.total / 1e9,
               (b.alloc[BUF_MASK] + b.alloc[BUF_BIAS]) / 1e6);
    }
    fflush(stdout);
    fprintf(stderr, "dmbench: %d case%s\n", l->n, l->n == 1 ? "" : "s");
    return EXIT_OK;
}

/* ---- the sweep, as sweep_run (dmbench_cli.c) drives it ---- */

typedef struct mode_sweep {
    gpu *g;
    const voptions *o;
    const vcase_list *cases;
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

/* ---- main ------------------------------------------------------------------------------------ */

int varlen_main(int argc, char **argv)
{
    voptions o;
    vcase_list cases = {0};
    result *res = NULL;
    FILE *csv = NULL, *json = NULL;
    gpu g;
    bool gpu_up = false, tty = isatty(2);
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0)
        goto out;
    if ((rc = expand(&o, &cases)) >= 0)
        goto out;
    if (o.dry_run) {
        rc = dry_run(&cases, o.seed);
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
    printf("# dmbench %s --varlen, dmattn %s, %s (%s), L2 %.0f MiB, %.1f of %.1f GiB free, "
           "warmup %lld, iters %lld\n",
           DMBENCH_VERSION, dm_version_string(), g.name, dm_ctx_arch(g.ctx),
           (double)g.l2_bytes / 1048576.0, (double)free_bytes / 1073741824.0,
           (double)total_bytes / 1073741824.0, (long long)o.warmup, (long long)o.iters);
    columns k = columns_of(&cases);
    if (o.copy_bw)
        k.copy_gbps = copy_bandwidth(&g, (uint64_t)o.copy_mib << 20, o.iters);
    if (o.head_major)
        printf("# key-based mask and bias stored head-major: (Hm, total_k) memory, keys "
               "contiguous\n");
    if (o.mask_density < 1)
        printf("# mask entries true with probability %g, independently\n", o.mask_density);
    for (int i = 0; i < cases.n_batches; i++)
        print_batch(stdout, &cases.batches[i], o.seed);
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
    free_cases(&cases);
    free_options(&o);
    return rc;
}
