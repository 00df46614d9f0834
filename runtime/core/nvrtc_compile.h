/* nvrtc_compile.h: CUDA source -> cubin with NVRTC, for one arch. Needs no GPU or driver. */
#ifndef DM_NVRTC_COMPILE_H
#define DM_NVRTC_COMPILE_H

#include <stddef.h>

#include "ctx.h"
#include "gen.h"

#define DM_NVRTC_MAX_OPTIONS 8

/* The options every compile for arch uses, in a fixed order (the cache key hashes them). */
int dm_nvrtc_options(dm_arch arch, const char *opts[DM_NVRTC_MAX_OPTIONS]);
/* The same joined with '\n', for the cache key. Returns the length (snprintf-like). */
int dm_nvrtc_options_text(dm_arch arch, char *buf, size_t buf_bytes);
/* "13.0" */
const char *dm_nvrtc_version_text(char *buf, size_t buf_bytes);

/* Compiles src; *cubin is malloc'd. On failure DM_ERR_COMPILE with NVRTC's log in the message
 * (and the numbered source on stderr when ctx's verbosity allows warnings). */
dm_status dm_nvrtc_compile(dm_ctx *ctx, const char *call, const char *variant_text,
                           const char *src, dm_arch arch, void **cubin, size_t *cubin_bytes,
                           double *compile_ms);

#endif
