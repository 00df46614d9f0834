/* dmbench.h: what dmbench's two modes share: the dense sweep (dmbench.c) and the varlen/decode
 * sweep (dmbench_varlen.c) parse options (dmbench_cli.c) and drive the device (dmbench_gpu.c)
 * the same way. Only dmattn.h from the library, plus the CUDA driver API (opened at run time,
 * cuda_loader.h), so dmbench measures what users get. */
#ifndef DMBENCH_H
#define DMBENCH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cuda_loader.h"
#include "dmattn.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

#define DMBENCH_VERSION "0.1.0"
#define MAX_LIST 64           /* values per option list */
#define MAX_CASES 10000       /* a larger sweep is a typo: it would run for days */
#define MAX_SETS 16           /* input sets rotated between runs to defeat L2 */
#define MAX_BUFS 12           /* device buffers in one input set (a backward case has 12) */
#define L2_FACTOR 4           /* rotated sets together exceed this many L2 sizes */
#define HOST_BUF_BYTES (64ull << 20)   /* one random host buffer, copied over and over */
#define HEADROOM_BYTES (512ull << 20)  /* left free for modules, events and the driver */
#define ALLOC_ROUND_BYTES (2ull << 20) /* cuMemAlloc granularity, for the fit estimate */
#define COPY_BYTES_DEFAULT (1ull << 30) /* --copy-bw: the buffer copied, read once + written once */

/* ---- options and reports (dmbench_cli.c) ----------------------------------------------------- */

typedef struct int_list {
    int64_t v[MAX_LIST];
    int n;
} int_list;

typedef struct num_list {
    double v[MAX_LIST];
    int n;
} num_list;

typedef enum outcome { OUT_NOT_RUN = 0, OUT_OK, OUT_FAILED, OUT_SKIPPED } outcome;

typedef struct result {
    outcome out;
    double ms_median, ms_min;
    int iters, sets;
} result;

/* The kernel path (dm_fwd_path) as --path names it. */
extern const char *const path_names[3];      /* "auto", "tiled", "decode" */
extern const int64_t path_values[3];

void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* "dmbench: ..." */
double now_s(void);
double dtype_size(dm_dtype t);
const char *dtype_text(dm_dtype t);
/* (query, key) pairs of one (Lq x Lk) attention that the causal rule (bottom-right aligned)
 * leaves visible, or all Lq x Lk of them: what TFLOP/s counts (4 x D of work each, per head). */
double visible_pairs(int64_t Lq, int64_t Lk, bool causal);

bool take(int argc, char **argv, int *i, const char *name, const char **value);
bool parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out);
typedef bool (*item_fn)(const char *item, void *ctx, int index);
bool for_each_item(const char *opt, const char *text, const char *expected, item_fn fn, void *ctx,
                   int *count);
bool parse_int_list(const char *opt, const char *text, int64_t lo, int64_t hi, int_list *list);
bool parse_num_list(const char *opt, const char *text, double lo, double hi, const char *expected,
                    num_list *list);
bool parse_name_list(const char *opt, const char *text, const char *const *names,
                     const int64_t *values, int n, const char *expected, int_list *list);
void set_default(int_list *l, int64_t v);

int cmp_double(const void *a, const void *b);
const char *status_text(outcome o);
void json_string(FILE *f, const char *s);
bool close_file(FILE *f, const char *opt, const char *path);

/* A table row's measured tail: " | ms TFLOP/s GB/s [%copy]" for an OK result (flops and bytes
 * of one run; %copy only with copy_gbps > 0), else the outcome; then the line ends. */
void table_tail(const result *r, double flops, double bytes, double copy_gbps);

/* One mode's cases, as the sweep driver sees them: `ctx` is the mode's own state. */
typedef struct sweep_ops {
    void *ctx;
    int n;
    void (*describe)(void *ctx, int i, char *buf, size_t bytes);
    /* runs case i into *r; false only when the CUDA context is unusable afterwards */
    bool (*run)(void *ctx, int i, const char *label, result *r);
    void (*table_row)(void *ctx, int i, const result *r);
    void (*csv_row)(void *ctx, FILE *f, int i, const result *r);
    void (*json_row)(void *ctx, FILE *f, int i, const result *r, bool first);
} sweep_ops;

/* Runs the cases in order into res (n of them), progress on stderr when tty, a table row each
 * on stdout, CSV and JSON rows where those files are open (the JSON document then closed);
 * stops running (the rest reported "not run") once the context is unusable. Prints the summary
 * line on stderr; returns EXIT_OK, or EXIT_FAIL when a case failed or did not run. */
int sweep_run(const sweep_ops *ops, result *res, FILE *csv, FILE *json, bool tty);

/* ---- the device (dmbench_gpu.c) -------------------------------------------------------------- */

uint64_t mix64(uint64_t x);
uint64_t hash4(uint64_t a, uint64_t b, uint64_t c, uint64_t d);
double unit_of(uint64_t h);

typedef struct host_buf {
    void *p;
    bool pinned; /* cuMemAllocHost, else malloc */
} host_buf;

typedef struct gpu {
    const bench_driver *drv; /* every CUDA driver call goes through it (cuda_loader.h) */
    CUdevice dev;
    CUcontext cu;
    bool retained;
    CUstream stream;
    dm_ctx *ctx;
    char name[256];
    int64_t l2_bytes;
    CUevent *ev_start, *ev_stop;
    int n_events;
    /* Random host buffers of HOST_BUF_BYTES, made on first use: values in q's dtype (bf16,
     * f16) and f32, the mask bytes of --pattern random at one density, and a staging buffer. */
    host_buf vals_bf16, vals_f16, vals_f32, mask_random, stage;
    double mask_random_density;
    uint64_t seed;
    char err[512]; /* the last CUDA failure, "cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY" */
    CUresult last;
} gpu;

/* A case's device buffers; p[i] = 0 for a buffer it does not have. */
typedef struct buf_set {
    CUdeviceptr p[MAX_BUFS];
} buf_set;

bool cu_ok(gpu *g, CUresult r, const char *what);
bool host_alloc(gpu *g, host_buf *b, size_t bytes);
void host_free(gpu *g, host_buf *b);
bool fill_repeat(gpu *g, CUdeviceptr dst, uint64_t bytes, const void *src, uint64_t src_bytes);
bool fill_values(gpu *g, CUdeviceptr dst, uint64_t bytes, dm_dtype t, uint64_t salt);
/* Mask bytes, each true with probability `density` (0 < density < 1), independently. */
bool fill_mask_random(gpu *g, CUdeviceptr dst, uint64_t bytes, double density);

/* Opens the CUDA driver (bench_driver_open), `device`'s primary context, a stream and `iters`
 * pairs of events, and a dm_ctx on it. False with a one-line message printed when no GPU can be
 * used: "dmbench: cannot open the CUDA driver (libcuda.so.1): ..." when there is no driver. */
bool gpu_open(gpu *g, int64_t device, int64_t iters, uint64_t seed, bool verbose);
void gpu_close(gpu *g);

/* Allocates input sets of n buffers of bytes[i] each (0: none): one set, or when a set is
 * smaller than L2_FACTOR x L2, enough to exceed that together (up to MAX_SETS), as many as fit
 * in free memory. Returns the number of sets; 0 when not even one fits (skipped, said why); -1
 * on another failure (said why; *alive = false when the context is unusable). */
int alloc_sets(gpu *g, const double *bytes, int n, buf_set *sets, const char *label, bool *alive);
void free_sets(gpu *g, buf_set *sets, int n_sets);

/* Queues run number `run` of a case on g->stream: the untimed runs come first (run 0 loads or
 * JIT-compiles the kernel), then the timed ones. False when the call failed, said why. */
typedef bool (*queue_fn)(void *ctx, int run);

/* 1 + warmup untimed runs, then iters runs each between two CUDA events on g->stream: r gets
 * the median and min (r->out = OUT_OK), or r->out = OUT_FAILED. Returns false only when the CUDA
 * context is unusable afterwards: the sweep must stop. */
bool time_runs(gpu *g, int64_t warmup, int64_t iters, queue_fn queue, void *ctx,
               const char *label, result *r);

/* Device-to-device copy bandwidth in GB/s, counting each byte read once and written once
 * (2 x bytes per copy, as the attention figures count q read and o written): the median of
 * `iters` cuMemcpyDtoDAsync calls of `bytes` on g->stream between CUDA events, after warm-up,
 * printed as a "# copy bandwidth" line on stdout. 0 when it could not be measured (said why). */
double copy_bandwidth(gpu *g, uint64_t bytes, int64_t iters);

/* ---- the modes ------------------------------------------------------------------------------- */

/* dmbench --varlen (dmbench_varlen.c): argv as main got it, "--varlen" somewhere in it. */
int varlen_main(int argc, char **argv);

#endif
