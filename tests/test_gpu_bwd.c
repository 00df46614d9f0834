/* test_gpu_bwd.c: dm_bwd (SPEC §3) against dm_ref_bwd on a GPU: MHA, GQA and MQA, causal with
 * Lq != Lk, every mask x bias layout pair, each broadcast pattern of bias (dbias summed over it),
 * fp32 bias, softcap, fully masked rows and an all-false tile (exact zeros, no NaN), deterministic
 * runs bitwise equal, caller strides, head dims 32 to 256 in both dtypes. Each case runs dm_fwd on
 * the GPU first, so the backward reads the o and lse of the forward it follows; the reference
 * reads host copies of the same bytes. Fresh random inputs each run (the seed is printed on
 * failure); o, lse and every gradient NaN-poisoned on the device before the call that writes them.
 * Skipped without a GPU. Shapes stay small (under 1e6 scores a case): the first kernels are a
 * slow baseline, and the float64 reference runs on the host. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctx.h"
#include "gpu_util.h"
#include "harness.h"
#include "reference.h"

/* bf16 keeps 8 significant bits, f16 11: each gradient is rounded once to them (up to 2^-9, about
 * 2e-3 relative, in bf16), and before that dS = P (dP - D) is built from the forward's rounded o
 * (D = dO . o) and its fp32 lse, and tensor-core kernels round P and dS to the input dtype for
 * their products: a chain of a few such roundings. 2e-2 (4e-3 in f16: the forward tests' bf16 to
 * f16 ratio) leaves room for that chain and is still far below what a wrong index, a missed group
 * member or a lost mask entry gives (errors of order 1). An fp32 dbias is held to its inputs'
 * dtype: it sums dS, rounded as above. */
#define TOL_BF16 2e-2
#define TOL_F16 4e-3

/* The all-false block's side: one aligned tile of the backward's rows and keys (tuning.lua's bwd
 * rows: block_m = block_n = 64), so a kernel that skips all-false tiles skips exactly it. */
#define TILE 64

typedef struct bwd_case {
    gpu_case f; /* the forward: shapes, dtype, mask, bias, causal, softcap, scale, strides */
    bool dbias; /* ask for dbias (f has a bias) */
    bool deterministic; /* dm_bwd twice with deterministic = 1: the same bytes both times */
    int false_tile_row; /* 1 + the first row of a TILE x TILE block of false entries in every
                         * (batch, head) of a query-layout mask (0 = none) */
    int false_tile_key; /* the block's first key */
    int false_key_begin, false_key_end; /* keys false in every mask row: no query sees them */
    uint32_t false_row_tiles; /* query tiles t (rows [t TILE, + TILE)) with bit t % 32 set: all
                               * false in every (batch, head) of a query-layout mask */
    int busy_key_blocks; /* > 0: of a key-layout mask's (batch, head, KEY_BLOCK keys) blocks, this
                          * many are left as drawn, scattered; the rest all false */
    bool q_batch_shared; /* q read by every batch from batch 0's rows (strides[0] = 0; B > 1):
                          * no tensor map takes it (test_bwd_maps), so sm_90a's keys phase
                          * copies its tiles instead */
} bwd_case;

/* The key blocks of sm_90a's d128 backward (tuning.lua: two warpgroups, 128 keys a block). */
#define KEY_BLOCK 128

typedef struct bwd_data {
    gpu_twin q, k, v, o, lse, dout, mask, bias;
    gpu_twin dq, dk, dv, dbias;                 /* dm_bwd's */
    gpu_twin dq_ref, dk_ref, dv_ref, dbias_ref; /* dm_ref_bwd's (the host halves) */
} bwd_data;

typedef struct bwd_result {
    gpu_err dq, dk, dv, dbias;
    long empty_rows, empty_keys; /* rows with no visible key; keys no query of their group sees */
    long empty_row_errors;       /* dq elements of empty rows that are not bitwise +0 */
    long empty_key_errors;       /* dk, dv elements of unseen keys that are not 0 */
    long empty_dbias_errors;     /* dbias elements whose every score is masked, not 0 */
    long guard_writes;           /* gradient elements written in padding the strides skip */
    long runs_differing;         /* deterministic: gradients whose bytes differ between runs */
} bwd_result;

static bwd_case base(int D, dm_dtype t)
{
    bwd_case c = {.f = {.B = 2,
                        .H = 4,
                        .Hkv = 4,
                        .Lq = 77,
                        .Lk = 77,
                        .D = D,
                        .dtype = t,
                        .mask_batch = 2,
                        .mask_heads = 4,
                        .bias_batch = 2,
                        .bias_heads = 4,
                        .mask_density = 0.7}};
    return c;
}

/* ---- inputs ---- */

static int64_t gcd(int64_t a, int64_t b)
{
    while (b) {
        const int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* The case's extra false entries, on the host mask gpu_case_mask drew. */
static void hide_entries(gpu_twin *mask, const bwd_case *c)
{
    const dm_tensor *m = &mask->host;
    unsigned char *bytes = mask->host_base;
    /* busy_key_blocks: block n (of `blocks`, batch-major) kept where n * step % blocks is below
     * the count, step coprime with blocks: exactly that many, spread over the rows */
    const int64_t row_blocks = (m->shape[3] + KEY_BLOCK - 1) / KEY_BLOCK;
    const int64_t blocks = m->shape[0] * m->shape[1] * row_blocks;
    int64_t step = 37;
    while (c->busy_key_blocks && gcd(blocks, step) != 1)
        step += 2;
    for (int64_t b = 0; b < m->shape[0]; b++)
        for (int64_t h = 0; h < m->shape[1]; h++)
            for (int64_t i = 0; i < m->shape[2]; i++)
                for (int64_t j = 0; j < m->shape[3]; j++) {
                    bool in_tile = c->false_tile_row && m->shape[2] > 1 &&
                                   i >= c->false_tile_row - 1 && i < c->false_tile_row - 1 + TILE &&
                                   j >= c->false_tile_key && j < c->false_tile_key + TILE;
                    bool row_tile = m->shape[2] > 1 && (c->false_row_tiles >> (i / TILE % 32) & 1);
                    const int64_t n = (b * m->shape[1] + h) * row_blocks + j / KEY_BLOCK;
                    bool idle_block = c->busy_key_blocks && m->shape[2] == 1 &&
                                      n * step % blocks >= c->busy_key_blocks;
                    if (in_tile || row_tile || idle_block ||
                        (j >= c->false_key_begin && j < c->false_key_end))
                        bytes[b * m->strides[0] + h * m->strides[1] + i * m->strides[2] + j] = 0;
                }
}

/* Fresh inputs for c from seed, uploaded; every output allocated (poisoned when it is run). */
static void bwd_build(bwd_data *d, const bwd_case *c, uint64_t seed)
{
    const gpu_case *f = &c->f;
    uint64_t s = seed ? seed : 1;
    memset(d, 0, sizeof *d);
    gpu_case_rows_alloc(&d->q, f, f->Lq, f->H);
    if (c->q_batch_shared)
        d->q.dev.strides[0] = d->q.host.strides[0] = 0;
    gpu_case_rows_alloc(&d->k, f, f->Lk, f->Hkv);
    gpu_case_rows_alloc(&d->v, f, f->Lk, f->Hkv);
    gpu_case_rows_alloc(&d->o, f, f->Lq, f->H);
    gpu_case_rows_alloc(&d->dout, f, f->Lq, f->H);
    gpu_case_rows_alloc(&d->dq, f, f->Lq, f->H);
    gpu_case_rows_alloc(&d->dk, f, f->Lk, f->Hkv);
    gpu_case_rows_alloc(&d->dv, f, f->Lk, f->Hkv);
    gpu_case_rows_alloc(&d->dq_ref, f, f->Lq, f->H);
    gpu_case_rows_alloc(&d->dk_ref, f, f->Lk, f->Hkv);
    gpu_case_rows_alloc(&d->dv_ref, f, f->Lk, f->Hkv);
    gpu_fill_uniform(&d->q, &s);
    gpu_fill_uniform(&d->k, &s);
    gpu_fill_uniform(&d->v, &s);
    gpu_fill_uniform(&d->dout, &s);
    gpu_case_mask(&d->mask, f, &s);
    if (d->mask.dev_base)
        hide_entries(&d->mask, c);
    gpu_case_bias(&d->bias, f, &s);
    if (c->dbias) {
        ck_assert_msg(f->bias != DM_LAYOUT_NONE, "a case asking for dbias needs a bias");
        const dm_dtype t = d->bias.dev.dtype;
        gpu_case_mb_alloc(&d->dbias, f, f->bias, f->bias_batch, f->bias_heads, t);
        gpu_case_mb_alloc(&d->dbias_ref, f, f->bias, f->bias_batch, f->bias_heads, t);
    }
    int64_t shape[3] = {f->B, f->H, f->Lq}, strides[3] = {(int64_t)f->H * f->Lq, f->Lq, 1};
    gpu_twin_alloc(&d->lse, DM_F32, 3, shape, strides, (size_t)f->B * f->H * f->Lq, 0);
    gpu_twin_upload(&d->q);
    gpu_twin_upload(&d->k);
    gpu_twin_upload(&d->v);
    gpu_twin_upload(&d->dout);
    if (d->mask.dev_base)
        gpu_twin_upload(&d->mask);
    if (d->bias.dev_base)
        gpu_twin_upload(&d->bias);
}

static void bwd_free(bwd_data *d)
{
    gpu_twin *all[] = {&d->q,      &d->k,      &d->v,      &d->o,        &d->lse, &d->dout,
                       &d->mask,   &d->bias,   &d->dq,     &d->dk,       &d->dv,  &d->dbias,
                       &d->dq_ref, &d->dk_ref, &d->dv_ref, &d->dbias_ref};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        gpu_twin_free(all[i]);
}

/* ---- the runs ---- */

static dm_status synchronize(const char *call, char *msg, size_t msg_bytes)
{
    CUresult cr = gpu_drv()->CtxSynchronize();
    if (cr == CUDA_SUCCESS)
        return DM_OK;
    snprintf(msg, msg_bytes, "%s: kernel failed: CUresult %d", call, (int)cr);
    return DM_ERR_CUDA;
}

/* dm_fwd on the GPU into the poisoned o and lse, both read back. */
static dm_status run_fwd(bwd_data *d, const bwd_case *c, char *msg, size_t msg_bytes)
{
    dm_ctx *ctx = gpu_ctx();
    dm_fwd_args a = {.q = d->q.dev,
                     .k = d->k.dev,
                     .v = d->v.dev,
                     .mask = d->mask.dev, /* a zeroed twin: absent */
                     .bias = d->bias.dev,
                     .o = d->o.dev,
                     .lse = d->lse.dev,
                     .scale = c->f.scale,
                     .softcap = c->f.softcap,
                     .causal = c->f.causal};
    gpu_twin_poison(&d->o);
    gpu_twin_poison(&d->lse);
    dm_status st = dm_fwd(ctx, &a, NULL);
    if (st != DM_OK) {
        snprintf(msg, msg_bytes, "dm_fwd: %s", dm_errmsg(ctx));
        return st;
    }
    if ((st = synchronize("dm_fwd", msg, msg_bytes)) != DM_OK)
        return st;
    gpu_twin_download(&d->o);
    gpu_twin_download(&d->lse);
    return DM_OK;
}

/* The backward's arguments: the device descriptors, or (host) the host copies with the
 * reference's outputs. */
static dm_bwd_args bwd_args(const bwd_data *d, const bwd_case *c, bool host)
{
#define PICK(t) (host ? d->t.host : d->t.dev)
    dm_bwd_args a = {.dout = PICK(dout),
                     .q = PICK(q),
                     .k = PICK(k),
                     .v = PICK(v),
                     .o = PICK(o),
                     .lse = PICK(lse),
                     .mask = PICK(mask),
                     .bias = PICK(bias),
                     .dq = host ? d->dq_ref.host : d->dq.dev,
                     .dk = host ? d->dk_ref.host : d->dk.dev,
                     .dv = host ? d->dv_ref.host : d->dv.dev,
                     .dbias = host ? d->dbias_ref.host : d->dbias.dev,
                     .scale = c->f.scale,
                     .softcap = c->f.softcap,
                     .causal = c->f.causal,
                     .deterministic = c->deterministic};
#undef PICK
    return a;
}

/* dm_bwd on the GPU into poisoned gradients, read back. */
static dm_status run_bwd(bwd_data *d, const bwd_case *c, char *msg, size_t msg_bytes)
{
    dm_ctx *ctx = gpu_ctx();
    gpu_twin *grads[] = {&d->dq, &d->dk, &d->dv, &d->dbias};
    for (int g = 0; g < 4; g++)
        if (grads[g]->dev_base)
            gpu_twin_poison(grads[g]);
    dm_bwd_args a = bwd_args(d, c, false);
    dm_status st = dm_bwd(ctx, &a, NULL);
    if (st != DM_OK) {
        snprintf(msg, msg_bytes, "dm_bwd: %s", dm_errmsg(ctx));
        return st;
    }
    if ((st = synchronize("dm_bwd", msg, msg_bytes)) != DM_OK)
        return st;
    for (int g = 0; g < 4; g++)
        if (grads[g]->dev_base)
            gpu_twin_download(grads[g]);
    return DM_OK;
}

/* deterministic: dm_bwd a second time (poisoned again); counts the gradients whose bytes differ
 * from the first run's. */
static dm_status rerun_bwd(bwd_data *d, const bwd_case *c, long *differing, char *msg,
                           size_t msg_bytes)
{
    gpu_twin *grads[] = {&d->dq, &d->dk, &d->dv, &d->dbias};
    void *first[4] = {NULL, NULL, NULL, NULL};
    for (int g = 0; g < 4; g++)
        if (grads[g]->dev_base) {
            first[g] = malloc(grads[g]->bytes);
            ck_assert_ptr_nonnull(first[g]);
            memcpy(first[g], grads[g]->host_base, grads[g]->bytes);
        }
    dm_status st = run_bwd(d, c, msg, msg_bytes);
    for (int g = 0; g < 4; g++)
        if (first[g]) {
            if (st == DM_OK && memcmp(first[g], grads[g]->host_base, grads[g]->bytes) != 0)
                (*differing)++;
            free(first[g]);
        }
    return st;
}

static dm_status run_ref(bwd_data *d, const bwd_case *c, char *msg, size_t msg_bytes)
{
    dm_ctx *ref_ctx = NULL;
    dm_ctx_create(&ref_ctx, DM_NO_DEVICE);
    dm_bwd_args h = bwd_args(d, c, true);
    dm_status st = dm_ref_bwd(ref_ctx, &h);
    if (st != DM_OK)
        snprintf(msg, msg_bytes, "dm_ref_bwd: %s", dm_errmsg(ref_ctx));
    dm_ctx_destroy(ref_ctx);
    return st;
}

/* ---- what must hold exactly ---- */

/* Score (b, h, i, j) is visible: not above the bottom-right diagonal, its mask byte non-zero. */
static bool visible(const bwd_data *d, const gpu_case *f, int b, int h, int i, int j)
{
    if (f->causal && j > i + f->Lk - f->Lq)
        return false;
    const dm_tensor *m = &d->mask.host;
    if (!m->data)
        return true;
    int64_t off = (m->shape[0] == 1 ? 0 : b) * m->strides[0] +
                  h / (f->H / m->shape[1]) * m->strides[1] +
                  (m->shape[2] == 1 ? 0 : i) * m->strides[2] + j * m->strides[3];
    return ((const unsigned char *)m->data)[off] != 0;
}

/* dbias element (b, h, i, j) maps to, packed as gpu_case_mb_alloc packs it. */
static size_t dbias_element(const dm_tensor *t, const gpu_case *f, int b, int h, int i, int j)
{
    int64_t bb = t->shape[0] == 1 ? 0 : b, hh = h / (f->H / t->shape[1]);
    int64_t ii = t->shape[2] == 1 ? 0 : i;
    return (size_t)(((bb * t->shape[1] + hh) * t->shape[2] + ii) * t->shape[3] + j);
}

/* Rows with no visible key: dq bitwise +0 (a sum that starts at 0 and adds only zero terms is +0
 * in round-to-nearest; a -0 or a NaN would show a term computed from a masked score). Keys no
 * query of their group sees: dk, dv zero; dbias elements all of whose scores are masked: zero
 * (-0 allowed there: one masked dS may be 0 times a negative number). */
static void check_zeros(const bwd_data *d, const bwd_case *c, bwd_result *r)
{
    const gpu_case *f = &c->f;
    const int group = f->H / f->Hkv;
    unsigned char *row_seen = calloc((size_t)f->B * f->H * f->Lq, 1);
    unsigned char *key_seen = calloc((size_t)f->B * f->Hkv * f->Lk, 1);
    size_t n_dbias = d->dbias.dev_base ? d->dbias.bytes / gpu_elem_bytes(d->dbias.dev.dtype) : 0;
    unsigned char *dbias_seen = calloc(n_dbias + 1, 1);
    ck_assert(row_seen && key_seen && dbias_seen);
    for (int b = 0; b < f->B; b++)
        for (int h = 0; h < f->H; h++)
            for (int i = 0; i < f->Lq; i++)
                for (int j = 0; j < f->Lk; j++)
                    if (visible(d, f, b, h, i, j)) {
                        row_seen[((size_t)b * f->H + h) * f->Lq + i] = 1;
                        key_seen[((size_t)b * f->Hkv + h / group) * f->Lk + j] = 1;
                        if (n_dbias)
                            dbias_seen[dbias_element(&d->dbias.host, f, b, h, i, j)] = 1;
                    }
    for (int b = 0; b < f->B; b++)
        for (int h = 0; h < f->H; h++)
            for (int i = 0; i < f->Lq; i++) {
                if (row_seen[((size_t)b * f->H + h) * f->Lq + i])
                    continue;
                r->empty_rows++;
                for (int e = 0; e < f->D; e++)
                    if (((const uint16_t *)
                             d->dq.host_base)[gpu_case_rows_index(&d->dq, b, i, h, e)] != 0)
                        r->empty_row_errors++;
            }
    for (int b = 0; b < f->B; b++)
        for (int hk = 0; hk < f->Hkv; hk++)
            for (int j = 0; j < f->Lk; j++) {
                if (key_seen[((size_t)b * f->Hkv + hk) * f->Lk + j])
                    continue;
                r->empty_keys++;
                for (int e = 0; e < f->D; e++) {
                    size_t ix = gpu_case_rows_index(&d->dk, b, j, hk, e);
                    if (gpu_get(d->dk.host_base, f->dtype, ix) != 0.0f)
                        r->empty_key_errors++;
                    ix = gpu_case_rows_index(&d->dv, b, j, hk, e);
                    if (gpu_get(d->dv.host_base, f->dtype, ix) != 0.0f)
                        r->empty_key_errors++;
                }
            }
    for (size_t e = 0; e < n_dbias; e++)
        if (!dbias_seen[e] && gpu_get(d->dbias.host_base, d->dbias.dev.dtype, e) != 0.0f)
            r->empty_dbias_errors++;
    free(row_seen);
    free(key_seen);
    free(dbias_seen);
}

/* Strided cases: the 8 pad columns past D of every dq, dk, dv row keep their poison. */
static long guard_writes(const gpu_twin *w, const gpu_case *f, int L, int heads)
{
    long n = 0;
    for (int b = 0; b < f->B; b++)
        for (int l = 0; l < L; l++)
            for (int h = 0; h < heads; h++)
                for (int e = f->D; e < f->D + 8; e++)
                    if (((const uint16_t *)w->host_base)[gpu_case_rows_index(w, b, l, h, e)] !=
                        0xffff)
                        n++;
    return n;
}

/* ---- one case ---- */

static dm_status bwd_run_case(const bwd_case *c, uint64_t seed, bwd_result *r, char *msg,
                              size_t msg_bytes)
{
    bwd_data d;
    memset(r, 0, sizeof *r);
    bwd_build(&d, c, seed);
    dm_status st = run_fwd(&d, c, msg, msg_bytes);
    if (st == DM_OK)
        st = run_bwd(&d, c, msg, msg_bytes);
    if (st == DM_OK && c->deterministic)
        st = rerun_bwd(&d, c, &r->runs_differing, msg, msg_bytes);
    if (st == DM_OK)
        st = run_ref(&d, c, msg, msg_bytes);
    if (st == DM_OK) {
        gpu_compare(&d.dq.host, &d.dq_ref.host, &r->dq);
        gpu_compare(&d.dk.host, &d.dk_ref.host, &r->dk);
        gpu_compare(&d.dv.host, &d.dv_ref.host, &r->dv);
        if (c->dbias)
            gpu_compare(&d.dbias.host, &d.dbias_ref.host, &r->dbias);
        check_zeros(&d, c, r);
        if (c->f.strided)
            r->guard_writes = guard_writes(&d.dq, &c->f, c->f.Lq, c->f.H) +
                              guard_writes(&d.dk, &c->f, c->f.Lk, c->f.Hkv) +
                              guard_writes(&d.dv, &c->f, c->f.Lk, c->f.Hkv);
    }
    bwd_free(&d);
    return st;
}

/* Runs c on fresh inputs and asserts it: every gradient within the dtype's tolerance, no NaN, the
 * exact zeros, no guard write, (deterministic) the same bytes twice. Returns the result for checks
 * of the case's own (that it had empty rows, say). */
static bwd_result check_case(const bwd_case *c, const char *label)
{
    bwd_result r;
    char msg[1024] = "", what[640], fwd[512];
    uint64_t seed = gpu_fresh_seed();
    dm_status st = bwd_run_case(c, seed, &r, msg, sizeof msg);
    gpu_case_describe(&c->f, fwd, sizeof fwd);
    snprintf(what, sizeof what,
             "%s dbias=%d deterministic=%d false_tile=(%d,%d) false_keys=[%d,%d) "
             "false_row_tiles=%#x busy_key_blocks=%d q_batch_shared=%d",
             fwd, c->dbias, c->deterministic, c->false_tile_row - 1, c->false_tile_key,
             c->false_key_begin, c->false_key_end, (unsigned)c->false_row_tiles, c->busy_key_blocks,
             c->q_batch_shared);
    const double tol = c->f.dtype == DM_BF16 ? TOL_BF16 : TOL_F16;
    const long nan = r.dq.nan_count + r.dk.nan_count + r.dv.nan_count + r.dbias.nan_count;
    const bool ok = st == DM_OK && nan == 0 && r.dq.rel < tol && r.dk.rel < tol && r.dv.rel < tol &&
                    (!c->dbias || r.dbias.rel < tol) && r.empty_row_errors == 0 &&
                    r.empty_key_errors == 0 && r.empty_dbias_errors == 0 && r.guard_writes == 0 &&
                    r.runs_differing == 0;
    fprintf(stderr,
            "%-34s %s dq=%.2e dk=%.2e dv=%.2e dbias=%.2e nan=%ld zero_err=%ld/%ld/%ld "
            "(rows %ld, keys %ld) guard=%ld differing=%ld\n",
            label, ok ? "ok  " : "FAIL", r.dq.rel, r.dk.rel, r.dv.rel, r.dbias.rel, nan,
            r.empty_row_errors, r.empty_key_errors, r.empty_dbias_errors, r.empty_rows,
            r.empty_keys, r.guard_writes, r.runs_differing);
    ck_assert_msg(ok,
                  "%s: %s [seed %llu] status=%s %s rel_err dq=%.3e dk=%.3e dv=%.3e dbias=%.3e "
                  "(tol %.0e) max_abs dq=%.3e dk=%.3e dv=%.3e dbias=%.3e nan=%ld "
                  "empty_row_errors=%ld empty_key_errors=%ld empty_dbias_errors=%ld "
                  "guard_writes=%ld runs_differing=%ld",
                  label, what, (unsigned long long)seed, dm_status_name(st), msg, r.dq.rel,
                  r.dk.rel, r.dv.rel, r.dbias.rel, tol, r.dq.max_abs, r.dk.max_abs, r.dv.max_abs,
                  r.dbias.max_abs, nan, r.empty_row_errors, r.empty_key_errors,
                  r.empty_dbias_errors, r.guard_writes, r.runs_differing);
    return r;
}

/* ---- the cases ---- */

START_TEST(mha_without_mask_or_bias_matches_causal_or_not)
{
    for (int cz = 0; cz < 2; cz++) {
        bwd_case c = base(64, DM_BF16);
        c.f.causal = cz;
        check_case(&c, cz ? "mha 77x77 causal" : "mha 77x77");
    }
}
END_TEST

START_TEST(causal_is_bottom_right_aligned_when_lq_differs_from_lk)
{
    /* 33 x 100: every query sees the first 68 + i keys. 100 x 33: queries 0-66 see no key (their
     * dq must be exactly 0), the others the first i - 66. */
    const int shapes[][2] = {{33, 100}, {100, 33}};
    for (int s = 0; s < 2; s++) {
        bwd_case c = base(64, DM_BF16);
        c.f.Lq = shapes[s][0];
        c.f.Lk = shapes[s][1];
        c.f.causal = true;
        char label[64];
        snprintf(label, sizeof label, "causal %dx%d", c.f.Lq, c.f.Lk);
        bwd_result r = check_case(&c, label);
        ck_assert_int_eq(r.empty_rows,
                         c.f.Lq > c.f.Lk ? (long)c.f.B * c.f.H * (c.f.Lq - c.f.Lk) : 0);
    }
}
END_TEST

START_TEST(gqa_and_mqa_sum_dk_and_dv_over_the_group)
{
    const int kv[] = {2, 1};
    for (int x = 0; x < 2; x++)
        for (int cz = 0; cz < 2; cz++) {
            bwd_case c = base(128, DM_BF16);
            c.f.H = 8;
            c.f.Hkv = kv[x];
            c.f.Lq = 65;
            c.f.Lk = 97;
            c.f.causal = cz;
            char label[64];
            snprintf(label, sizeof label, "H=8 Hkv=%d d128%s", kv[x], cz ? " causal" : "");
            check_case(&c, label);
        }
}
END_TEST

START_TEST(every_mask_and_bias_layout_pair_matches_with_dbias)
{
    /* layout q: (B, H, Lq, Lk); layout k: (B, H, 1, Lk); dbias whenever there is a bias */
    int n = 0;
    for (int m = 0; m < 3; m++)
        for (int b = 0; b < 3; b++, n++) {
            bwd_case c = base(64, DM_BF16);
            c.f.Lk = 131;
            c.f.mask = (dm_layout)m;
            c.f.bias = (dm_layout)b;
            c.dbias = b != DM_LAYOUT_NONE;
            c.f.causal = n % 2;
            char label[64];
            snprintf(label, sizeof label, "mask-%c bias-%c%s", "nqk"[m], "nqk"[b],
                     c.f.causal ? " causal" : "");
            check_case(&c, label);
        }
}
END_TEST

START_TEST(dbias_sums_over_every_broadcast_dimension_of_bias)
{
    /* B = 2, H = 8, Hkv = 2: (1, H, Lq, Lk), (B, 1, Lq, Lk), (B, Hkv, Lq, Lk), (1, 1, 1, Lk),
     * (B, Hkv, 1, Lk); in q's dtype and in fp32 */
    static const struct {
        dm_layout layout;
        int batch, heads;
    } shapes[] = {{DM_LAYOUT_Q, 1, 8},
                  {DM_LAYOUT_Q, 2, 1},
                  {DM_LAYOUT_Q, 2, 2},
                  {DM_LAYOUT_K, 1, 1},
                  {DM_LAYOUT_K, 2, 2}};
    int n = 0;
    for (int f32 = 0; f32 < 2; f32++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++, n++) {
            bwd_case c = base(64, DM_BF16);
            c.f.H = 8;
            c.f.Hkv = 2;
            c.f.Lq = 45;
            c.f.Lk = 70;
            c.f.bias = shapes[s].layout;
            c.f.bias_batch = shapes[s].batch;
            c.f.bias_heads = shapes[s].heads;
            c.f.bias_f32 = f32;
            c.dbias = true;
            if (n % 2) { /* a key-layout mask broadcast over heads on every other case */
                c.f.mask = DM_LAYOUT_K;
                c.f.mask_heads = 1;
            }
            char label[64];
            snprintf(label, sizeof label, "bias (%d,%d,%s,Lk)%s%s", c.f.bias_batch, c.f.bias_heads,
                     c.f.bias == DM_LAYOUT_Q ? "Lq" : "1", f32 ? " f32" : "",
                     c.f.mask ? " mask-k" : "");
            check_case(&c, label);
        }
}
END_TEST

START_TEST(softcap_with_bias_matches_including_dbias)
{
    /* softcap 30 with scores of a few units is nearly linear; softcap 5 with an explicit scale
     * bends them enough for the tanh derivative to matter */
    bwd_case c = base(64, DM_BF16);
    c.f.Lk = 100;
    c.f.bias = DM_LAYOUT_Q;
    c.dbias = true;
    c.f.softcap = 30.f;
    check_case(&c, "softcap 30 bias-q");
    c.f.bias = DM_LAYOUT_K;
    c.f.bias_heads = 1;
    c.f.mask = DM_LAYOUT_Q;
    c.f.causal = true;
    check_case(&c, "softcap 30 bias-k mask-q causal");
    c.f.softcap = 5.f;
    c.f.scale = 0.5f;
    c.f.bias = DM_LAYOUT_Q;
    c.f.bias_heads = 4;
    check_case(&c, "softcap 5 scale 0.5 causal");
}
END_TEST

START_TEST(fully_masked_rows_give_exactly_zero_dq_and_no_nan)
{
    /* every third query row false for every key (per head, then shared by the heads), then a
     * mask false everywhere: every gradient 0 */
    const int heads[] = {4, 1};
    for (int x = 0; x < 2; x++) {
        bwd_case c = base(64, DM_BF16);
        c.f.Lk = 90;
        c.f.mask = DM_LAYOUT_Q;
        c.f.mask_heads = heads[x];
        c.f.masked_row_every = 3;
        c.f.bias = DM_LAYOUT_Q;
        c.dbias = true;
        bwd_result r = check_case(&c, x ? "masked rows (B,1,Lq,Lk)" : "masked rows");
        ck_assert_int_eq(r.empty_rows, (long)c.f.B * c.f.H * ((c.f.Lq + 2) / 3));
    }
    bwd_case c = base(64, DM_BF16);
    c.f.mask = DM_LAYOUT_Q;
    c.f.mask_density = 0.0;
    c.f.bias = DM_LAYOUT_K;
    c.dbias = true;
    bwd_result r = check_case(&c, "all masked");
    ck_assert_int_eq(r.empty_rows, (long)c.f.B * c.f.H * c.f.Lq);
    ck_assert_int_eq(r.empty_keys, (long)c.f.B * c.f.Hkv * c.f.Lk);
}
END_TEST

START_TEST(an_all_false_tile_and_unseen_keys_contribute_exactly_zero)
{
    /* Rows [64, 128) x keys [64, 128) false in every (batch, head): a whole tile skipped in the
     * middle of visible ones. Keys [128, 192) false in every row: their dk, dv and dbias columns
     * exactly 0, while keys [192, 200) are visible again. */
    for (int x = 0; x < 3; x++) {
        bwd_case c = base(64, DM_BF16);
        c.f.Lq = 200;
        c.f.Lk = 200;
        c.f.mask = x == 2 ? DM_LAYOUT_K : DM_LAYOUT_Q;
        c.f.mask_density = 0.8;
        c.f.bias = c.f.mask;
        c.dbias = true;
        c.f.causal = x == 1;
        c.false_tile_row = TILE + 1;
        c.false_tile_key = TILE;
        c.false_key_begin = 2 * TILE;
        c.false_key_end = 3 * TILE;
        static const char *labels[] = {"false tile mask-q", "false tile mask-q causal",
                                       "false keys mask-k"};
        bwd_result r = check_case(&c, labels[x]);
        ck_assert_int_ge(r.empty_keys, (long)c.f.B * c.f.Hkv * TILE);
    }
}
END_TEST

START_TEST(a_long_query_walk_with_runs_of_all_false_tiles_matches)
{
    /* d128 (two warpgroups): a key block walks 18 query tiles (the last partial). With a query
     * mask, tiles 1-2 and 6-12 are all false: the walk skips runs of 2 and 7 tiles between visible
     * ones. A keys phase that loads or votes on tiles ahead of the one it works on wraps its
     * stages several times; GQA (two heads a block) starts the walk again at each head, also in
     * the deterministic mode (no dq barrier after a tile's p); a query bias with its dbias (zeros
     * for the skipped tiles), a key bias, causal; without a query mask, the tiles come by tensor
     * maps */
    for (int x = 0; x < 6; x++) {
        bwd_case c = base(128, DM_BF16);
        c.f.B = 1;
        c.f.H = 2;
        c.f.Hkv = x == 1 || x == 3 || x == 4 ? 1 : 2;
        c.f.Lq = 1100;
        c.f.Lk = x == 2 || x == 5 ? 1100 : 200;
        c.f.mask = x == 4 ? DM_LAYOUT_NONE : x == 5 ? DM_LAYOUT_K : DM_LAYOUT_Q;
        c.f.mask_batch = 1;
        c.f.mask_heads = 2;
        c.f.mask_density = 0.9;
        c.false_row_tiles = 0x1fc6u; /* tiles 1, 2, 6-12 (a query-layout mask's) */
        c.f.bias = x == 1 || x == 3 ? DM_LAYOUT_Q : x >= 4 ? DM_LAYOUT_K : DM_LAYOUT_NONE;
        c.f.bias_batch = 1;
        c.f.bias_heads = x == 4 ? 1 : 2;
        c.dbias = c.f.bias != DM_LAYOUT_NONE;
        c.f.causal = x == 2 || x == 5;
        c.deterministic = x == 3 || x == 5;
        static const char *labels[] = {"long walk mask-q",
                                       "long walk mask-q bias-q GQA",
                                       "long walk mask-q causal 1100x1100",
                                       "long walk mask-q bias-q GQA deterministic",
                                       "long walk bias-k GQA",
                                       "long walk mask-k bias-k causal deterministic 1100x1100"};
        check_case(&c, labels[x]);
    }
}
END_TEST

START_TEST(more_busy_key_blocks_than_sms_split_the_keys_phase_and_match)
{
    /* A key mask under which n + n / 8 key blocks have a visible key (n: the GPU's SMs; sm_90a's
     * d128 keys phase runs one block an SM): the default mode splits each busy block's walk in
     * parts whose dk, dv are summed by the last to finish (templates/attn_bwd_split.lua). 70
     * queries: two query tiles for up to four parts, so some parts walk none. A query bias's
     * dbias (its zero rows written once), a key bias with causal. More scores than the other
     * cases (n + n / 8 blocks of 128 keys are needed): 1.7e6 on 132 SMs. The deterministic mode
     * does not split, and its dq turns (templates/attn_bwd_turns.lua) are passed through the
     * idle blocks between busy ones (a block that passed none would hang the next); causal, in
     * descending order among the busy ones. */
    const int n = gpu_ctx()->sm_count, busy = n + n / 8;
    for (int x = 0; x < 6; x++) {
        bwd_case c = base(128, DM_BF16);
        c.f.B = 1;
        c.f.H = c.f.Hkv = 2;
        c.f.Lq = 70;
        c.f.Lk = (busy + busy / 4 + 1) / 2 * KEY_BLOCK; /* a quarter of the blocks idle */
        c.f.mask = DM_LAYOUT_K;
        c.f.mask_batch = 1;
        c.f.mask_heads = 2;
        c.f.mask_density = 0.5;
        c.busy_key_blocks = busy;
        c.f.bias = x == 1 || x == 4 ? DM_LAYOUT_Q : x == 2 || x == 5 ? DM_LAYOUT_K : DM_LAYOUT_NONE;
        c.f.bias_batch = 1;
        c.f.bias_heads = 2;
        c.dbias = x == 1 || x == 4;
        c.f.causal = x == 2 || x == 5;
        c.deterministic = x >= 3;
        static const char *labels[] = {"busy key blocks mask-k",
                                       "busy key blocks bias-q dbias",
                                       "busy key blocks bias-k causal",
                                       "busy key blocks deterministic",
                                       "busy key blocks bias-q dbias deterministic",
                                       "busy key blocks bias-k causal deterministic"};
        check_case(&c, labels[x]);
    }
}
END_TEST

START_TEST(deterministic_runs_give_identical_bytes)
{
    /* GQA and MQA with biases broadcast over batch and heads, so dk, dv and dbias are sums over
     * several blocks' work; an fp32 dbias shows every bit of its summation order */
    bwd_case c = base(64, DM_BF16);
    c.deterministic = true;
    c.f.H = 8;
    c.f.Hkv = 2;
    c.f.Lq = 100;
    c.f.Lk = 150;
    c.f.mask = DM_LAYOUT_K;
    c.f.mask_heads = 8;
    c.f.bias = DM_LAYOUT_Q;
    c.f.bias_batch = 1;
    c.f.bias_heads = 2;
    c.dbias = true;
    check_case(&c, "deterministic GQA bias (1,Hkv,Lq,Lk)");
    c.f.Hkv = 1;
    c.f.bias = DM_LAYOUT_K;
    c.f.bias_heads = 1;
    c.f.bias_f32 = true;
    c.f.causal = true;
    check_case(&c, "deterministic MQA f32 bias (1,1,1,Lk)");
    /* q shared by the batch (strides[0] = 0): no tensor map for it, so sm_90a's keys phase
     * copies the query tiles and red_tile's lanes add dq (no turn passes before its barrier);
     * three key blocks of 128 a chain, four query tiles */
    bwd_case q = base(128, DM_BF16);
    q.deterministic = true;
    q.q_batch_shared = true;
    q.f.Lq = 250;
    q.f.Lk = 300;
    check_case(&q, "deterministic q shared by the batch");
    q.f.causal = true;
    check_case(&q, "deterministic q shared by the batch causal");
}
END_TEST

START_TEST(long_chains_of_key_blocks_add_dq_in_order_and_repeat_bitwise)
{
    /* The deterministic mode's dq turns (templates/attn_bwd_turns.lua) over chains of 16 key
     * blocks of 128 a (batch, K/V head) and 32 query tiles, GQA (two heads a block's walk); a
     * key bias with its dbias broadcast over the heads (the partials, phase 2); causal (walks
     * that start later with the block) and a query mask (skipped tiles whose turns are passed),
     * each run twice for the same bytes. Then causal with Lq < Lk over 4 K/V heads (the
     * launch order interleaves 4 heads' key blocks) and causal under a key mask with Lq > Lk
     * (the marked blocks' descending order; the first 512 queries see no key). Then 36 key
     * blocks (Lk 4608: a tile's 72 turn bits span 2 words, the last in part), with a query mask's
     * skipped tiles and causal with Lq < Lk. (Kept to 1.7e7 scores for the float64 reference.) */
    for (int x = 0; x < 7; x++) {
        bwd_case c = base(128, DM_BF16);
        c.deterministic = true;
        c.f.B = 1;
        c.f.H = x >= 5 ? 2 : 4;
        c.f.Hkv = x == 3 ? 4 : 2;
        c.f.Lq = x == 3 || x >= 5 ? 1536 : 2048;
        c.f.Lk = x == 4 ? 1536 : x >= 5 ? 4608 : 2048;
        c.f.mask = x == 2 || x == 5 ? DM_LAYOUT_Q : x == 4 ? DM_LAYOUT_K : DM_LAYOUT_NONE;
        c.f.mask_batch = 1;
        c.f.mask_heads = c.f.H;
        c.f.mask_density = 0.9;
        c.false_row_tiles = x == 2 || x == 5 ? 0x0f0f00f0u : 0;
        c.f.bias = x == 0 ? DM_LAYOUT_K : DM_LAYOUT_NONE;
        c.f.bias_batch = 1;
        c.f.bias_heads = 1;
        c.dbias = x == 0;
        c.f.causal = x == 1 || x == 3 || x == 4 || x == 6;
        static const char *labels[] = {"long chains bias-k (1,1,1,L) dbias deterministic",
                                       "long chains causal deterministic",
                                       "long chains mask-q skipped tiles deterministic",
                                       "long chains causal Lq < Lk Hkv 4 deterministic",
                                       "long chains causal mask-k Lq > Lk deterministic",
                                       "36 key blocks mask-q skipped tiles deterministic",
                                       "36 key blocks causal Lq < Lk deterministic"};
        check_case(&c, labels[x]);
    }
}
END_TEST

START_TEST(head_dims_32_to_256_match_and_f16_too)
{
    const int dims[] = {32, 64, 96, 128, 256};
    for (int x = 0; x < 5; x++) {
        bwd_case c = base(dims[x], DM_BF16);
        c.f.Lq = 45;
        c.f.Lk = 70;
        c.f.mask = DM_LAYOUT_Q;
        c.f.bias = DM_LAYOUT_K;
        c.dbias = true;
        c.f.causal = x % 2;
        char label[64];
        snprintf(label, sizeof label, "d%d bf16%s", dims[x], c.f.causal ? " causal" : "");
        check_case(&c, label);
    }
    bwd_case c = base(128, DM_F16);
    c.f.Lq = 45;
    c.f.Lk = 70;
    c.f.mask = DM_LAYOUT_K;
    c.f.bias = DM_LAYOUT_Q;
    c.dbias = true;
    check_case(&c, "d128 f16");
}
END_TEST

START_TEST(two_warpgroup_blocks_at_d128_match_for_every_layout_across_blocks)
{
    /* d128 runs blocks of two warpgroups over 128 rows, whose keys phase adds dq for all 128
     * keys at once (tuning.lua): several blocks each side, partial last ones, GQA, causal both
     * ways, keys [128, 256) unseen (a whole block's keys: its walk is empty), softcap, the
     * deterministic mode, and the query layouts' staged tiles (kTile x 128 keys in the keys
     * phase, 128 queries x kTile in the deterministic rows phase), their dbias fused or summed */
    for (int x = 0; x < 8; x++) {
        bwd_case c = base(128, DM_BF16);
        c.f.H = 4;
        c.f.Hkv = x % 3 ? 2 : 1;
        c.f.Lq = x % 2 ? 300 : 257;
        c.f.Lk = x % 2 ? 331 : 200;
        c.f.mask = x >= 6 ? DM_LAYOUT_Q : x & 2 ? DM_LAYOUT_K : DM_LAYOUT_NONE;
        c.f.mask_heads = 4;
        c.f.bias = x >= 6 ? DM_LAYOUT_Q : x >= 2 ? DM_LAYOUT_K : DM_LAYOUT_NONE;
        c.f.bias_heads = x == 6 ? 4 : c.f.Hkv; /* x 6: dbias is ds; else summed over heads */
        c.f.bias_f32 = x == 3;
        c.dbias = c.f.bias != DM_LAYOUT_NONE;
        c.f.causal = x == 1 || x == 4 || x == 6;
        c.f.softcap = x == 4 ? 20.f : 0.f;
        c.deterministic = x == 5 || x == 7;
        if (x == 3) {
            c.false_key_begin = 128;
            c.false_key_end = 256;
        }
        char label[96];
        snprintf(label, sizeof label, "d128 %dx%d Hkv=%d mask-%c bias-%c%s%s%s%s", c.f.Lq, c.f.Lk,
                 c.f.Hkv, "nqk"[c.f.mask], "nqk"[c.f.bias], c.f.causal ? " causal" : "",
                 c.f.softcap > 0 ? " softcap" : "", c.deterministic ? " deterministic" : "",
                 x == 3 ? " keys 128-255 unseen" : "");
        bwd_result r = check_case(&c, label);
        if (x == 3)
            ck_assert_int_ge(r.empty_keys, (long)c.f.B * c.f.Hkv * 128);
    }
}
END_TEST

START_TEST(a_full_bias_loaded_by_tensor_maps_matches_with_its_dbias_in_fp32_and_16_bit)
{
    /* rows of 16-byte multiples (Lk 264 and 200): sm_90a's keys phase loads the query-layout
     * bias by a tensor map into swizzled stages and writes a fused dbias from them by another
     * (api/bwd_maps.c); partial query tiles and key blocks at both ends, fp32 and bf16 bias,
     * broadcast batch and heads (dbias summed by phase 2), an Hkv-headed bias, causal both ways,
     * softcap, the deterministic mode, d128 (two warpgroups) and d64 (one) */
    for (int x = 0; x < 6; x++) {
        bwd_case c = base(x < 4 ? 128 : 64, DM_BF16);
        c.f.H = 4;
        c.f.Hkv = x == 3 ? 2 : 4;
        c.f.Lq = x == 5 ? 264 : 200;
        c.f.Lk = x == 5 ? 200 : 264;
        c.f.mask = x == 2 ? DM_LAYOUT_K : DM_LAYOUT_NONE;
        c.f.mask_heads = 4;
        c.f.bias = DM_LAYOUT_Q;
        c.f.bias_batch = x == 2 ? 1 : 2;
        c.f.bias_heads = x == 2 ? 1 : x == 3 ? 2 : 4;
        c.f.bias_f32 = x % 2 == 0;
        c.dbias = true;
        c.f.causal = x == 1 || x == 5;
        c.f.softcap = x == 4 ? 20.f : 0.f;
        c.deterministic = x == 3;
        char label[96];
        snprintf(label, sizeof label, "d%d %dx%d bias (%d,%d,Lq,Lk)%s%s%s%s%s", c.f.D, c.f.Lq,
                 c.f.Lk, c.f.bias_batch, c.f.bias_heads, c.f.bias_f32 ? " f32" : " bf16",
                 c.f.mask ? " mask-k" : "", c.f.causal ? " causal" : "",
                 c.f.softcap > 0 ? " softcap" : "", c.deterministic ? " deterministic" : "");
        check_case(&c, label);
    }
}
END_TEST

START_TEST(caller_strides_are_honoured_and_nothing_is_written_outside_the_gradients)
{
    /* q, k, v, o, dout and the gradients stored (B, H, L, D + 8): the pad columns of dq, dk and
     * dv keep their poison */
    for (int cz = 0; cz < 2; cz++) {
        bwd_case c = base(64, DM_BF16);
        c.f.Lk = 90;
        c.f.strided = true;
        c.f.mask = DM_LAYOUT_Q;
        c.f.bias = DM_LAYOUT_K;
        c.dbias = true;
        c.f.causal = cz;
        check_case(&c, cz ? "strided (B,H,L,D+8) causal" : "strided (B,H,L,D+8)");
    }
}
END_TEST

#define TESTS(X) \
    X(mha_without_mask_or_bias_matches_causal_or_not) \
    X(causal_is_bottom_right_aligned_when_lq_differs_from_lk) \
    X(gqa_and_mqa_sum_dk_and_dv_over_the_group) \
    X(every_mask_and_bias_layout_pair_matches_with_dbias) \
    X(dbias_sums_over_every_broadcast_dimension_of_bias) \
    X(softcap_with_bias_matches_including_dbias) \
    X(fully_masked_rows_give_exactly_zero_dq_and_no_nan) \
    X(an_all_false_tile_and_unseen_keys_contribute_exactly_zero) \
    X(a_long_query_walk_with_runs_of_all_false_tiles_matches) \
    X(more_busy_key_blocks_than_sms_split_the_keys_phase_and_match) \
    X(deterministic_runs_give_identical_bytes) \
    X(long_chains_of_key_blocks_add_dq_in_order_and_repeat_bitwise) \
    X(head_dims_32_to_256_match_and_f16_too) \
    X(two_warpgroup_blocks_at_d128_match_for_every_layout_across_blocks) \
    X(a_full_bias_loaded_by_tensor_maps_matches_with_its_dbias_in_fp32_and_16_bit) \
    X(caller_strides_are_honoured_and_nothing_is_written_outside_the_gradients)
DM_TEST_MAIN_SKIP("gpu_bwd", TESTS, dm_gpu_absent)
