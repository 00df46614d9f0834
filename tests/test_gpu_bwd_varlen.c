/* test_gpu_bwd_varlen.c: dm_bwd_varlen (SPEC §3 and §5) against dm_ref_bwd_varlen on a GPU: every
 * mask x bias layout pair x {MHA, GQA, MQA} x {causal, not} with dbias, the bias's heads cycling
 * through 1, Hkv and H so that both the fused dbias and the cross-block one (phase 2) run for
 * each layout; sequence mixes with empty sequences, single queries and keys and lengths off the
 * tiles; max_seqlen larger than every sequence; fp32 bias with softcap at d128 in bf16 and f16;
 * the d256 SIMT engine; tokens past the last sequence. Each case runs dm_fwd_varlen (tiled) on
 * the GPU first, so the backward reads the o and lse of the forward it follows; the reference
 * reads host copies of the same bytes. Fresh random inputs each run (the seed is printed on
 * failure); every gradient is NaN-poisoned on the device before each call, and what the
 * reference leaves alone (tokens past cu_seqlens[B], guard rows past the tensors) must keep the
 * poison. Rows with no visible key give dq = +0 bitwise; keys no query sees give dk = dv = 0;
 * every case runs twice and must give the same bytes (all but dq's in the default mode, whose
 * fp32 reductions may round in another order). Skipped without a GPU. Sequences stay
 * small (under 3e5 scores a case): the float64 reference runs on the host. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_util.h"
#include "harness.h"
#include "reference.h"
#include "varlen_case.h"

/* As test_gpu_bwd.c: bf16 keeps 8 significant bits, f16 11: each gradient is rounded once to them
 * (up to 2^-9, about 2e-3 relative, in bf16), and before that dS = P (dP - D) is built from the
 * forward's rounded o (D = dO . o) and its fp32 lse, and tensor-core kernels round P and dS to the
 * input dtype for their products: a chain of a few such roundings. 2e-2 (4e-3 in f16: the forward
 * tests' bf16 to f16 ratio) leaves room for that chain and is still far below what a wrong index,
 * a missed group member, a key of the wrong sequence or a lost mask entry gives (errors of order
 * 1). An fp32 dbias is held to its inputs' dtype: it sums dS, rounded as above. */
#define TOL_BF16 2e-2
#define TOL_F16 4e-3

enum { G_DQ, G_DK, G_DV, G_DBIAS, N_GRADS };

typedef struct bv_case {
    vl_case c;          /* the forward: sequences, heads, dtype, mask, bias, causal, softcap */
    bool dbias;         /* ask for dbias (c has a bias) */
    bool deterministic; /* dm_bwd_varlen_args.deterministic (both modes must repeat bitwise) */
} bv_case;

/* One gradient: the GPU's (a twin) and the reference's (a host buffer of the twin's bytes). Its
 * token rows [rows_used, the allocation's end) lie past the last sequence: never written. */
typedef struct bv_grad {
    gpu_twin gpu;
    void *ref;         /* poisoned, then dm_ref_bwd_varlen's */
    size_t elems;      /* of the allocation, guard rows included */
    int64_t row_elems; /* elements a token */
    int64_t rows_used; /* cu_seqlens[B] of the tensor's tokens */
} bv_grad;

typedef struct bv_data {
    vl_data in; /* q, k, v, mask, bias, cu_seqlens, and o and lse of the GPU forward */
    gpu_twin dout;
    bv_grad g[N_GRADS]; /* G_DBIAS zeroed (absent) unless the case asks for it */
} bv_data;

typedef struct bv_grad_result {
    double rel, max_abs; /* over the elements the reference wrote */
    long written;        /* elements the reference wrote */
    long expected;       /* elements of tokens inside a sequence: the reference must write them */
    long nan;            /* non-finite GPU elements where the reference wrote a value */
    long poison_lost;    /* GPU elements written where the reference wrote nothing */
    long outside_writes; /* GPU elements of tokens past cu_seqlens[B] (guard rows too) written */
} bv_grad_result;

typedef struct bv_result {
    bv_grad_result g[N_GRADS];
    long empty_rows, empty_row_errors;      /* (query, head) with no visible key; dq not +0 bits */
    long unseen_keys, unseen_key_errors;    /* (key, K/V head) no query sees; dk or dv not 0 */
    long unseen_dbias, unseen_dbias_errors; /* dbias elements with every score masked; not 0 */
    long past_key_elems, past_key_errors;   /* query-layout dbias columns past the keys; not 0 */
    long runs_differing;                    /* gradients whose bytes differ between the two runs */
} bv_result;

/* What a test's cases covered, asserted at its end. */
typedef struct bv_tally {
    long cases, empty_rows, unseen_keys, past_key_elems;
    long fused[3], phase2[3]; /* dbias cases by bias layout (dm_layout) */
} bv_tally;

/* Whether every dbias element is summed inside one block of the kernels (dmattn.h: key layout:
 * each stored head gathers query heads of one K/V head, i.e. the group of H / Hkv query heads
 * is a multiple of the H / Hm a stored head serves; query layout: one stored head a query head);
 * otherwise a separate pass (phase 2) sums across blocks. */
static bool dbias_fused(const vl_case *c)
{
    const int heads_a_stored_head = c->H / c->bias_heads;
    if (c->bias == DM_LAYOUT_K)
        return (c->H / c->Hkv) % heads_a_stored_head == 0;
    return heads_a_stored_head == 1;
}

/* ---- inputs ---- */

static void grad_alloc(bv_grad *g, dm_dtype t, int rank, const int64_t *shape, int64_t rows_used)
{
    vl_twin(&g->gpu, t, rank, shape, shape[0] + VL_GUARD_ROWS);
    g->elems = g->gpu.bytes / gpu_elem_bytes(t);
    g->row_elems = (int64_t)(g->elems / (size_t)(shape[0] + VL_GUARD_ROWS));
    g->rows_used = rows_used;
    const size_t bytes = (g->gpu.bytes + 63) / 64 * 64;
    g->ref = aligned_alloc(64, bytes);
    ck_assert_ptr_nonnull(g->ref);
    memset(g->ref, 0xff, bytes); /* NaN in f16, bf16 and f32 */
}

/* Fresh inputs for bc from seed (vl_build, then dout), uploaded; the gradients allocated, the
 * reference's poisoned. */
static void bv_build(bv_data *d, const bv_case *bc, uint64_t seed)
{
    const vl_case *c = &bc->c;
    memset(d, 0, sizeof *d);
    vl_build(&d->in, c, seed);
    for (int b = 0; b < c->B; b++)
        ck_assert_msg(c->len_q[b] <= d->in.max_q && c->len_k[b] <= d->in.max_k,
                      "the checks here read whole sequences: max_seqlen below a length");
    const vl_data *in = &d->in;
    uint64_t s = (seed ^ 0xd1b54a32d192ed03ull) | 1; /* dout's own stream */
    int64_t qs[3] = {in->total_q, c->H, c->D}, ks[3] = {in->total_k, c->Hkv, c->D};
    vl_twin(&d->dout, c->dtype, 3, qs, in->total_q);
    vl_fill16(d->dout.host.data, c->dtype, (size_t)(in->total_q * c->H * c->D), &s);
    gpu_twin_upload(&d->dout);

    const int64_t used_q = in->cu_q_host[c->B], used_k = in->cu_k_host[c->B];
    grad_alloc(&d->g[G_DQ], c->dtype, 3, qs, used_q);
    grad_alloc(&d->g[G_DK], c->dtype, 3, ks, used_k);
    grad_alloc(&d->g[G_DV], c->dtype, 3, ks, used_k);
    if (bc->dbias) {
        ck_assert_msg(c->bias != DM_LAYOUT_NONE && !c->head_major,
                      "a case asking for dbias needs a packed bias");
        const dm_dtype bt = c->bias_f32 ? DM_F32 : c->dtype;
        if (c->bias == DM_LAYOUT_K) {
            int64_t shape[2] = {in->total_k, c->bias_heads};
            grad_alloc(&d->g[G_DBIAS], bt, 2, shape, used_k);
        } else {
            int64_t shape[3] = {in->total_q, c->bias_heads, in->max_k};
            grad_alloc(&d->g[G_DBIAS], bt, 3, shape, used_q);
        }
    }
}

static void bv_free(bv_data *d)
{
    vl_free(&d->in);
    gpu_twin_free(&d->dout);
    for (int g = 0; g < N_GRADS; g++) {
        gpu_twin_free(&d->g[g].gpu);
        free(d->g[g].ref);
    }
    memset(d, 0, sizeof *d);
}

/* ---- the runs ---- */

/* The backward's arguments: the device descriptors, or (host) the host copies with the
 * reference's gradient buffers. */
static dm_bwd_varlen_args bwd_args(const bv_data *d, const bv_case *bc, bool host)
{
    const dm_fwd_varlen_args f = vl_args(&d->in, &bc->c, host);
    dm_bwd_varlen_args a = {.dout = host ? d->dout.host : d->dout.dev,
                            .q = f.q,
                            .k = f.k,
                            .v = f.v,
                            .o = f.o,
                            .lse = f.lse,
                            .cu_seqlens_q = f.cu_seqlens_q,
                            .cu_seqlens_k = f.cu_seqlens_k,
                            .max_seqlen_q = f.max_seqlen_q,
                            .max_seqlen_k = f.max_seqlen_k,
                            .mask = f.mask,
                            .bias = f.bias,
                            .softcap = f.softcap,
                            .causal = f.causal,
                            .deterministic = bc->deterministic};
    dm_tensor *out[N_GRADS] = {&a.dq, &a.dk, &a.dv, &a.dbias};
    for (int g = 0; g < N_GRADS; g++) {
        const gpu_twin *w = &d->g[g].gpu;
        *out[g] = host ? w->host : w->dev; /* a zeroed twin: absent */
        if (host && w->dev_base)
            out[g]->data = d->g[g].ref;
    }
    return a;
}

static void synchronize(const char *what, uint64_t seed, const char *call)
{
    CUresult cr = gpu_drv()->CtxSynchronize();
    ck_assert_msg(cr == CUDA_SUCCESS, "%s [seed %llu]: %s: kernel failed: CUresult %d", what,
                  (unsigned long long)seed, call, (int)cr);
}

/* dm_fwd_varlen (tiled) on the GPU into the poisoned o and lse, both read back. */
static void run_fwd(bv_data *d, const bv_case *bc, const char *what, uint64_t seed)
{
    dm_ctx *ctx = gpu_ctx();
    dm_fwd_varlen_args a = vl_args(&d->in, &bc->c, false);
    a.path = DM_PATH_TILED;
    gpu_twin_poison(&d->in.o);
    gpu_twin_poison(&d->in.lse);
    dm_status st = dm_fwd_varlen(ctx, &a, NULL);
    ck_assert_msg(st == DM_OK, "%s [seed %llu]: dm_fwd_varlen: %s", what, (unsigned long long)seed,
                  dm_errmsg(ctx));
    synchronize(what, seed, "dm_fwd_varlen");
    gpu_twin_download(&d->in.o);
    gpu_twin_download(&d->in.lse);
}

/* dm_bwd_varlen on the GPU into poisoned gradients, read back. */
static void run_bwd(bv_data *d, const bv_case *bc, const char *what, uint64_t seed)
{
    dm_ctx *ctx = gpu_ctx();
    for (int g = 0; g < N_GRADS; g++)
        if (d->g[g].gpu.dev_base)
            gpu_twin_poison(&d->g[g].gpu);
    dm_bwd_varlen_args a = bwd_args(d, bc, false);
    dm_status st = dm_bwd_varlen(ctx, &a, NULL);
    ck_assert_msg(st == DM_OK, "%s [seed %llu]: dm_bwd_varlen: %s", what, (unsigned long long)seed,
                  dm_errmsg(ctx));
    synchronize(what, seed, "dm_bwd_varlen");
    for (int g = 0; g < N_GRADS; g++)
        if (d->g[g].gpu.dev_base)
            gpu_twin_download(&d->g[g].gpu);
}

/* dm_bwd_varlen a second time (poisoned again): the gradients whose bytes differ from the first
 * run's, dq only in deterministic mode (the default mode sums dq by reductions in any order). */
static long rerun_bwd(bv_data *d, const bv_case *bc, const char *what, uint64_t seed)
{
    void *first[N_GRADS] = {NULL};
    long differing = 0;
    for (int g = bc->deterministic ? 0 : G_DQ + 1; g < N_GRADS; g++)
        if (d->g[g].gpu.dev_base) {
            first[g] = malloc(d->g[g].gpu.bytes);
            ck_assert_ptr_nonnull(first[g]);
            memcpy(first[g], d->g[g].gpu.host_base, d->g[g].gpu.bytes);
        }
    run_bwd(d, bc, what, seed);
    for (int g = 0; g < N_GRADS; g++)
        if (first[g]) {
            if (memcmp(first[g], d->g[g].gpu.host_base, d->g[g].gpu.bytes) != 0)
                differing++;
            free(first[g]);
        }
    return differing;
}

static void run_ref(bv_data *d, const bv_case *bc, const char *what, uint64_t seed)
{
    dm_ctx *ref_ctx = NULL;
    ck_assert_int_eq(dm_ctx_create(&ref_ctx, DM_NO_DEVICE), DM_OK);
    dm_bwd_varlen_args h = bwd_args(d, bc, true);
    dm_status st = dm_ref_bwd_varlen(ref_ctx, &h);
    ck_assert_msg(st == DM_OK, "%s [seed %llu]: dm_ref_bwd_varlen: %s", what,
                  (unsigned long long)seed, dm_errmsg(ref_ctx));
    dm_ctx_destroy(ref_ctx);
}

/* ---- the comparison ---- */

static bool is_poison(const void *buf, size_t esize, size_t i)
{
    return esize == 4 ? ((const uint32_t *)buf)[i] == 0xffffffffu
                      : ((const uint16_t *)buf)[i] == 0xffffu;
}

/* Element by element over the whole allocation: where the reference wrote, the GPU's value
 * (finite, within the relative L2 error); where it did not, the GPU's poison. */
static void compare_grad(const bv_grad *g, bv_grad_result *r)
{
    const dm_dtype t = g->gpu.host.dtype;
    const size_t esize = gpu_elem_bytes(t);
    const void *got = g->gpu.host_base;
    double num = 0, den = 0;
    memset(r, 0, sizeof *r);
    r->expected = (long)(g->rows_used * g->row_elems);
    for (size_t i = 0; i < g->elems; i++) {
        const bool outside = i >= (size_t)(g->rows_used * g->row_elems);
        if (outside && !is_poison(got, esize, i))
            r->outside_writes++;
        if (is_poison(g->ref, esize, i)) {
            if (!outside && !is_poison(got, esize, i))
                r->poison_lost++;
            continue;
        }
        r->written++;
        const double x = gpu_get(got, t, i), y = gpu_get(g->ref, t, i);
        if (!isfinite(x)) {
            r->nan++;
            continue;
        }
        num += (x - y) * (x - y);
        den += y * y;
        if (fabs(x - y) > r->max_abs)
            r->max_abs = fabs(x - y);
    }
    r->rel = den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Score (i, j) of sequence b, head h: not above the bottom-right diagonal, its mask byte true.
 * Only keys j < Lk of the sequence are scores (the true columns past them are not). */
static bool visible(const vl_data *d, const vl_case *c, int b, int h, int64_t i, int64_t j)
{
    if (c->causal && j > i + c->len_k[b] - c->len_q[b])
        return false;
    if (!d->mask.dev_base)
        return true;
    const unsigned char *m = d->mask.host.data;
    const int64_t hm = h / (c->H / c->mask_heads);
    if (c->mask == DM_LAYOUT_Q)
        return m[vl_mb_index(&d->mask, d->cu_q_host[b] + i, hm * d->max_k + j,
                             c->mask_heads * d->max_k)] != 0;
    return m[vl_mb_index(&d->mask, d->cu_k_host[b] + j, hm, c->mask_heads)] != 0;
}

/* What must hold exactly, sequence by sequence: rows with no visible key give dq = +0 bitwise (a
 * sum that starts at 0 and adds only zero terms is +0); keys no query of their group sees give
 * dk = dv = 0; dbias elements all of whose scores are masked give 0 (-0 allowed: one masked dS
 * may be 0 times a negative number); a query-layout dbias is 0 in the columns past its sequence's
 * keys. */
static void check_exact(const bv_data *d, const bv_case *bc, bv_result *r)
{
    const vl_case *c = &bc->c;
    const vl_data *in = &d->in;
    const int H = c->H, Hkv = c->Hkv, D = c->D, group = H / Hkv;
    const int Hm = c->bias_heads, per_stored = bc->dbias ? H / Hm : 1;
    const bv_grad *dq = &d->g[G_DQ], *dk = &d->g[G_DK], *dv = &d->g[G_DV], *db = &d->g[G_DBIAS];
    const dm_dtype bt = bc->dbias ? db->gpu.host.dtype : DM_DTYPE_NONE;
    for (int b = 0; b < c->B; b++) {
        const int64_t q0 = in->cu_q_host[b], k0 = in->cu_k_host[b];
        const int64_t Lq = c->len_q[b], Lk = c->len_k[b];
        unsigned char *key_seen = calloc((size_t)(Lk * Hkv) + 1, 1);
        /* dbias elements of the sequence that some score reaches: (key, head) or (query, head,
         * key) */
        const int64_t n_db = !bc->dbias ? 0 : c->bias == DM_LAYOUT_K ? Lk * Hm : Lq * Hm * Lk;
        unsigned char *db_seen = calloc((size_t)n_db + 1, 1);
        ck_assert(key_seen && db_seen);
        for (int h = 0; h < H; h++)
            for (int64_t i = 0; i < Lq; i++) {
                bool any = false;
                for (int64_t j = 0; j < Lk; j++) {
                    if (!visible(in, c, b, h, i, j))
                        continue;
                    any = true;
                    key_seen[j * Hkv + h / group] = 1;
                    if (n_db && c->bias == DM_LAYOUT_K)
                        db_seen[j * Hm + h / per_stored] = 1;
                    else if (n_db)
                        db_seen[(i * Hm + h / per_stored) * Lk + j] = 1;
                }
                if (any)
                    continue;
                r->empty_rows++;
                const uint16_t *row = (const uint16_t *)dq->gpu.host_base + ((q0 + i) * H + h) * D;
                for (int e = 0; e < D; e++)
                    if (row[e] != 0)
                        r->empty_row_errors++;
            }
        for (int64_t j = 0; j < Lk; j++)
            for (int hk = 0; hk < Hkv; hk++) {
                if (key_seen[j * Hkv + hk])
                    continue;
                r->unseen_keys++;
                const size_t at = (size_t)(((k0 + j) * Hkv + hk) * D);
                for (int e = 0; e < D; e++) {
                    if (gpu_get(dk->gpu.host_base, c->dtype, at + (size_t)e) != 0.0f)
                        r->unseen_key_errors++;
                    if (gpu_get(dv->gpu.host_base, c->dtype, at + (size_t)e) != 0.0f)
                        r->unseen_key_errors++;
                }
            }
        if (bc->dbias && c->bias == DM_LAYOUT_K) {
            for (int64_t j = 0; j < Lk; j++)
                for (int hm = 0; hm < Hm; hm++)
                    if (!db_seen[j * Hm + hm]) {
                        r->unseen_dbias++;
                        if (gpu_get(db->gpu.host_base, bt, (size_t)((k0 + j) * Hm + hm)) != 0.0f)
                            r->unseen_dbias_errors++;
                    }
        } else if (bc->dbias) { /* query layout */
            for (int64_t i = 0; i < Lq; i++)
                for (int hm = 0; hm < Hm; hm++) {
                    const size_t row = (size_t)(((q0 + i) * Hm + hm) * in->max_k);
                    for (int64_t j = 0; j < in->max_k; j++) {
                        const float x = gpu_get(db->gpu.host_base, bt, row + (size_t)j);
                        if (j >= Lk) {
                            r->past_key_elems++;
                            if (x != 0.0f)
                                r->past_key_errors++;
                        } else if (!db_seen[(i * Hm + hm) * Lk + j]) {
                            r->unseen_dbias++;
                            if (x != 0.0f)
                                r->unseen_dbias_errors++;
                        }
                    }
                }
        }
        free(key_seen);
        free(db_seen);
    }
}

/* ---- one case ---- */

/* Runs bc on fresh inputs and asserts it: every gradient within the dtype's tolerance where the
 * reference wrote it, no NaN there, the poison kept everywhere else, the exact zeros, the same
 * bytes twice. Adds what it covered to tally. */
static void check_case(const bv_case *bc, const char *label, bv_tally *tally)
{
    bv_data d;
    bv_result r;
    char what[1024], fields[768];
    const uint64_t seed = gpu_fresh_seed();
    memset(&r, 0, sizeof r);
    bv_build(&d, bc, seed);
    vl_case shown = bc->c;
    shown.max_q = d.in.max_q;
    shown.max_k = d.in.max_k;
    vl_describe(&shown, fields, sizeof fields);
    snprintf(what, sizeof what, "%s: %s dbias=%d deterministic=%d", label, fields, bc->dbias,
             bc->deterministic);

    run_fwd(&d, bc, what, seed);
    run_bwd(&d, bc, what, seed);
    r.runs_differing = rerun_bwd(&d, bc, what, seed);
    run_ref(&d, bc, what, seed);
    for (int g = 0; g < N_GRADS; g++)
        if (d.g[g].gpu.dev_base)
            compare_grad(&d.g[g], &r.g[g]);
    check_exact(&d, bc, &r);

    const double tol = bc->c.dtype == DM_BF16 ? TOL_BF16 : TOL_F16;
    bool ok = r.empty_row_errors == 0 && r.unseen_key_errors == 0 && r.unseen_dbias_errors == 0 &&
              r.past_key_errors == 0 && r.runs_differing == 0;
    long nan = 0, lost = 0, outside = 0, unwritten = 0;
    for (int g = 0; g < N_GRADS; g++) {
        const bv_grad_result *e = &r.g[g];
        ok = ok && e->rel < tol;
        nan += e->nan;
        lost += e->poison_lost;
        outside += e->outside_writes;
        unwritten += e->expected - e->written;
    }
    ok = ok && nan == 0 && lost == 0 && outside == 0 && unwritten == 0;
    const char *kernel = !bc->dbias ? "" : dbias_fused(&bc->c) ? " (fused)" : " (phase 2)";
    fprintf(stderr,
            "%-44s %s dq=%.2e dk=%.2e dv=%.2e dbias=%.2e%s nan=%ld poison_lost=%ld outside=%ld "
            "zero_err=%ld/%ld/%ld/%ld (rows %ld, keys %ld, dbias %ld, past %ld) differing=%ld\n",
            label, ok ? "ok  " : "FAIL", r.g[G_DQ].rel, r.g[G_DK].rel, r.g[G_DV].rel,
            r.g[G_DBIAS].rel, kernel, nan, lost, outside, r.empty_row_errors, r.unseen_key_errors,
            r.unseen_dbias_errors, r.past_key_errors, r.empty_rows, r.unseen_keys, r.unseen_dbias,
            r.past_key_elems, r.runs_differing);
    ck_assert_msg(ok,
                  "%s [seed %llu] rel_err dq=%.3e dk=%.3e dv=%.3e dbias=%.3e (tol %.0e) max_abs "
                  "dq=%.3e dk=%.3e dv=%.3e dbias=%.3e nan=%ld/%ld/%ld/%ld "
                  "poison_overwritten=%ld/%ld/%ld/%ld (where the reference wrote nothing) "
                  "outside_writes=%ld/%ld/%ld/%ld (tokens past cu_seqlens[B] and guard rows) "
                  "ref_unwritten=%ld (elements of tokens in a sequence the reference left "
                  "poisoned) empty_row_errors=%ld (of %ld rows) unseen_key_errors=%ld (of %ld) "
                  "unseen_dbias_errors=%ld (of %ld) past_key_errors=%ld (of %ld) "
                  "runs_differing=%ld",
                  what, (unsigned long long)seed, r.g[G_DQ].rel, r.g[G_DK].rel, r.g[G_DV].rel,
                  r.g[G_DBIAS].rel, tol, r.g[G_DQ].max_abs, r.g[G_DK].max_abs, r.g[G_DV].max_abs,
                  r.g[G_DBIAS].max_abs, r.g[G_DQ].nan, r.g[G_DK].nan, r.g[G_DV].nan,
                  r.g[G_DBIAS].nan, r.g[G_DQ].poison_lost, r.g[G_DK].poison_lost,
                  r.g[G_DV].poison_lost, r.g[G_DBIAS].poison_lost, r.g[G_DQ].outside_writes,
                  r.g[G_DK].outside_writes, r.g[G_DV].outside_writes, r.g[G_DBIAS].outside_writes,
                  unwritten, r.empty_row_errors, r.empty_rows, r.unseen_key_errors, r.unseen_keys,
                  r.unseen_dbias_errors, r.unseen_dbias, r.past_key_errors, r.past_key_elems,
                  r.runs_differing);
    tally->cases++;
    tally->empty_rows += r.empty_rows;
    tally->unseen_keys += r.unseen_keys;
    tally->past_key_elems += r.past_key_elems;
    if (bc->dbias) {
        if (dbias_fused(&bc->c))
            tally->fused[bc->c.bias]++;
        else
            tally->phase2[bc->c.bias]++;
    }
    bv_free(&d);
}

/* ---- the cases ---- */

typedef struct mix {
    int B;
    int q[VL_MAX_SEQS], k[VL_MAX_SEQS];
} mix;

static const mix mixes[] = {
    /* empty sequences (0 queries over 9 keys, 1 query over 0 keys, neither), one query, one key
     * (2 queries over 1 key: causal leaves the first without a key), lengths off the 64-row
     * tiles */
    {7, {0, 1, 13, 0, 77, 2, 1}, {9, 0, 200, 0, 131, 1, 1}},
    /* prefill: queries = keys over several tiles, the second sequence starting mid-tile */
    {2, {150, 97}, {150, 97}},
};
#define N_MIXES (int)(sizeof mixes / sizeof mixes[0])

static void set_mix(vl_case *c, const mix *m)
{
    c->B = m->B;
    memcpy(c->len_q, m->q, sizeof c->len_q);
    memcpy(c->len_k, m->k, sizeof c->len_k);
}

static void heads_of(int kind, int *H, int *Hkv)
{
    static const int h[3][2] = {{4, 4}, {8, 2}, {8, 1}}; /* MHA, GQA, MQA */
    *H = h[kind][0];
    *Hkv = h[kind][1];
}

static void print_tally(const char *what, const bv_tally *t)
{
    fprintf(stderr,
            "%s: %ld cases, %ld empty rows, %ld unseen keys, %ld dbias columns past the keys; "
            "dbias-q fused %ld phase 2 %ld, dbias-k fused %ld phase 2 %ld\n",
            what, t->cases, t->empty_rows, t->unseen_keys, t->past_key_elems, t->fused[DM_LAYOUT_Q],
            t->phase2[DM_LAYOUT_Q], t->fused[DM_LAYOUT_K], t->phase2[DM_LAYOUT_K]);
}

/* Every bias layout x head kind x causal x mix for one mask layout, D = 64 bf16, dbias whenever
 * there is a bias. Hm cycles through 1, Hkv and H (as test_gpu_varlen.c's check_mask_layout), so
 * each bias layout meets both dbias kernels: fused (key layout with Hm = H or Hkv, query layout
 * with Hm = H) and phase 2 (key layout with Hm = 1 < Hkv, query layout with Hm < H); the test
 * asserts both ran for both layouts. The deterministic flag alternates (both modes must repeat). */
static void check_mask_layout(dm_layout mask)
{
    bv_tally tally;
    int n = 0;
    memset(&tally, 0, sizeof tally);
    for (int bias = 0; bias < 3; bias++)
        for (int kind = 0; kind < 3; kind++)
            for (int causal = 0; causal < 2; causal++)
                for (int m = 0; m < N_MIXES; m++, n++) {
                    bv_case bc = {.c = {.D = 64,
                                        .dtype = DM_BF16,
                                        .mask = mask,
                                        .bias = (dm_layout)bias,
                                        .mask_density = 0.8,
                                        .causal = causal},
                                  .dbias = bias != DM_LAYOUT_NONE,
                                  .deterministic = n % 2};
                    heads_of(kind, &bc.c.H, &bc.c.Hkv);
                    int hm[3] = {1, bc.c.Hkv, bc.c.H};
                    bc.c.mask_heads = hm[n % 3];
                    bc.c.bias_heads = hm[(n + 1) % 3];
                    set_mix(&bc.c, &mixes[m]);
                    char label[96];
                    snprintf(label, sizeof label, "mask-%c(%d) bias-%c(%d) H=%d/%d%s mix %d",
                             "nqk"[mask], bc.c.mask_heads, "nqk"[bias], bc.c.bias_heads, bc.c.H,
                             bc.c.Hkv, causal ? " causal" : "", m);
                    check_case(&bc, label, &tally);
                }
    print_tally("layout matrix", &tally);
    ck_assert_int_gt(tally.empty_rows, 0);
    ck_assert_int_gt(tally.unseen_keys, 0);
    ck_assert_int_gt(tally.past_key_elems, 0);
    ck_assert_int_gt(tally.fused[DM_LAYOUT_Q], 0);
    ck_assert_int_gt(tally.phase2[DM_LAYOUT_Q], 0);
    ck_assert_int_gt(tally.fused[DM_LAYOUT_K], 0);
    ck_assert_int_gt(tally.phase2[DM_LAYOUT_K], 0);
}

START_TEST(no_mask_matches_for_every_bias_layout_head_kind_and_dbias_kernel)
{
    check_mask_layout(DM_LAYOUT_NONE);
}
END_TEST

START_TEST(a_query_based_mask_matches_for_every_bias_layout_head_kind_and_dbias_kernel)
{
    check_mask_layout(DM_LAYOUT_Q);
}
END_TEST

START_TEST(a_key_based_mask_matches_for_every_bias_layout_head_kind_and_dbias_kernel)
{
    check_mask_layout(DM_LAYOUT_K);
}
END_TEST

START_TEST(query_dbias_is_zero_past_each_sequences_keys_when_max_seqlen_exceeds_every_sequence)
{
    /* max_seqlen_k = 256 over sequences of at most 200 keys, max_seqlen_q = 90 over at most 77
     * queries: every query-layout dbias row has columns past its sequence's keys (bias +30 and a
     * true mask there), all of which must come back exactly 0; fused (Hm = H) and phase 2 (Hm = 1,
     * causal) */
    bv_tally tally;
    memset(&tally, 0, sizeof tally);
    for (int x = 0; x < 2; x++) {
        bv_case bc = {.c = {.max_q = 90,
                            .max_k = 256,
                            .H = 8,
                            .Hkv = 2,
                            .D = 64,
                            .dtype = DM_BF16,
                            .mask = DM_LAYOUT_Q,
                            .bias = DM_LAYOUT_Q,
                            .mask_heads = x ? 8 : 2,
                            .bias_heads = x ? 1 : 8,
                            .mask_density = 0.8,
                            .causal = x},
                      .dbias = true,
                      .deterministic = x};
        set_mix(&bc.c, &mixes[0]);
        check_case(&bc, x ? "max 90/256 bias-q(1) causal" : "max 90/256 bias-q(H)", &tally);
    }
    print_tally("max_seqlen past the sequences", &tally);
    ck_assert_int_gt(tally.fused[DM_LAYOUT_Q], 0);
    ck_assert_int_gt(tally.phase2[DM_LAYOUT_Q], 0);
    /* every stored head of every query token: 256 - Lk columns (Hm = 8, then 1) */
    long past = 0;
    for (int b = 0; b < mixes[0].B; b++)
        past += (long)mixes[0].q[b] * (256 - mixes[0].k[b]);
    ck_assert_int_eq(tally.past_key_elems, (8 + 1) * past);
}
END_TEST

START_TEST(an_fp32_key_bias_with_softcap_matches_at_d128_in_bf16_and_f16)
{
    /* bf16: fp32 dbias summed across K/V heads (Hm = 1, phase 2), causal, softcap 4;
     * f16: Hm = Hkv (fused), softcap 10, the prefill mix */
    bv_tally tally;
    memset(&tally, 0, sizeof tally);
    for (int x = 0; x < 2; x++) {
        bv_case bc = {.c = {.H = 8,
                            .Hkv = 2,
                            .D = 128,
                            .dtype = x ? DM_F16 : DM_BF16,
                            .mask = x ? DM_LAYOUT_K : DM_LAYOUT_Q,
                            .bias = DM_LAYOUT_K,
                            .mask_heads = x ? 2 : 1,
                            .bias_heads = x ? 2 : 1,
                            .bias_f32 = true,
                            .mask_density = 0.7,
                            .causal = !x,
                            .softcap = x ? 10.f : 4.f},
                      .dbias = true,
                      .deterministic = x};
        set_mix(&bc.c, &mixes[x]);
        check_case(&bc,
                   x ? "d128 f16 f32 bias-k(Hkv) softcap 10"
                     : "d128 bf16 f32 bias-k(1) softcap 4 causal",
                   &tally);
    }
    ck_assert_int_eq(tally.fused[DM_LAYOUT_K], 1);
    ck_assert_int_eq(tally.phase2[DM_LAYOUT_K], 1);
}
END_TEST

START_TEST(the_d256_simt_engine_matches_with_a_query_based_bias_and_dbias)
{
    /* D = 256 runs the SIMT kernels (tuning.lua): its dbias written in the rows pass (Hm = H)
     * and by phase 2 (Hm = Hkv < H), GQA, a key-based mask */
    bv_tally tally;
    memset(&tally, 0, sizeof tally);
    for (int x = 0; x < 2; x++) {
        bv_case bc = {.c = {.H = 8,
                            .Hkv = 2,
                            .D = 256,
                            .dtype = DM_BF16,
                            .mask = DM_LAYOUT_K,
                            .bias = DM_LAYOUT_Q,
                            .mask_heads = 1,
                            .bias_heads = x ? 2 : 8,
                            .mask_density = 0.8,
                            .causal = x},
                      .dbias = true,
                      .deterministic = true};
        set_mix(&bc.c, &mixes[0]);
        check_case(&bc, x ? "d256 bias-q(Hkv) causal" : "d256 bias-q(H)", &tally);
    }
    ck_assert_int_eq(tally.fused[DM_LAYOUT_Q], 1);
    ck_assert_int_eq(tally.phase2[DM_LAYOUT_Q], 1);
}
END_TEST

START_TEST(gradients_of_tokens_past_the_last_sequence_stay_poisoned)
{
    /* cu_seqlens_q[B] = 53 < total_q = 64, cu_seqlens_k[B] = 97 < total_k = 110: dq, dk, dv and
     * dbias rows of the tail tokens (and the guard rows past them) keep the poison; a key-based
     * dbias (phase 2: Hm = 1 < Hkv) and a query-based one (fused: Hm = H) */
    static const mix tail = {3, {20, 0, 33}, {50, 7, 40}};
    bv_tally tally;
    memset(&tally, 0, sizeof tally);
    for (int x = 0; x < 2; x++) {
        bv_case bc = {.c = {.H = 8,
                            .Hkv = 2,
                            .D = 64,
                            .dtype = DM_BF16,
                            .mask = x ? DM_LAYOUT_K : DM_LAYOUT_Q,
                            .bias = x ? DM_LAYOUT_Q : DM_LAYOUT_K,
                            .mask_heads = 2,
                            .bias_heads = x ? 8 : 1,
                            .mask_density = 0.8,
                            .causal = x,
                            .tail_q = 11,
                            .tail_k = 13},
                      .dbias = true,
                      .deterministic = x};
        set_mix(&bc.c, &tail);
        check_case(&bc, x ? "tail tokens bias-q(H) causal" : "tail tokens bias-k(1)", &tally);
    }
    ck_assert_int_eq(tally.fused[DM_LAYOUT_Q], 1);
    ck_assert_int_eq(tally.phase2[DM_LAYOUT_K], 1);
}
END_TEST

#define TESTS(X) \
    X(no_mask_matches_for_every_bias_layout_head_kind_and_dbias_kernel) \
    X(a_query_based_mask_matches_for_every_bias_layout_head_kind_and_dbias_kernel) \
    X(a_key_based_mask_matches_for_every_bias_layout_head_kind_and_dbias_kernel) \
    X(query_dbias_is_zero_past_each_sequences_keys_when_max_seqlen_exceeds_every_sequence) \
    X(an_fp32_key_bias_with_softcap_matches_at_d128_in_bf16_and_f16) \
    X(the_d256_simt_engine_matches_with_a_query_based_bias_and_dbias) \
    X(gradients_of_tokens_past_the_last_sequence_stay_poisoned)
DM_TEST_MAIN_SKIP("gpu_bwd_varlen", TESTS, dm_gpu_absent)
