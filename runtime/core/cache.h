/* cache.h: the on-disk cubin cache (SPEC §6). Pure file I/O: no CUDA, no Lua, no dm_ctx.
 *
 * Entry name: XXH3-128 (hex) over length-prefixed fields: library version, NVRTC version, arch,
 * compile options, generated source. Entry file: header (magic "DMCUBIN1", format version,
 * key_bytes, payload_bytes, XXH64 of what follows), the variant key text, the cubin.
 * Writes go to "<name>.cubin.tmp.<pid>.<random>" in the same directory, then rename(): atomic, no
 * locks, so two processes writing one entry both succeed and a killed writer leaves only a
 * temp file that no reader ever opens. Callers decide what to tell the user; these functions
 * only report what happened, in `why`. */
#ifndef DM_CACHE_H
#define DM_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define DM_CACHE_NAME_CHARS 32 /* hex digits of the XXH3-128 entry name */
#define DM_CACHE_SUFFIX ".cubin"

typedef struct dm_cache_key {
    char name[DM_CACHE_NAME_CHARS + 1]; /* hex; the file is <dir>/<name>.cubin */
} dm_cache_key;

/* The fields that can change a cubin; every one is hashed, length-prefixed, in this order. */
typedef struct dm_cache_key_fields {
    const char *lib_version;   /* "0.1.0" */
    const char *nvrtc_version; /* "13.0" */
    const char *arch;          /* "sm90" */
    const char *options;       /* every NVRTC option, joined with '\n' */
    const char *source;
    size_t source_bytes;
} dm_cache_key_fields;

void dm_cache_key_make(const dm_cache_key_fields *f, dm_cache_key *out);

typedef enum dm_cache_result {
    DM_CACHE_OK = 0,    /* prepare, write, list, clear, usage: done */
    DM_CACHE_HIT,       /* read: *cubin holds the payload (malloc'd) */
    DM_CACHE_MISS,      /* read: no entry (or no directory) */
    DM_CACHE_CORRUPT,   /* an entry exists but fails a check: why names the file and check */
    DM_CACHE_IO_ERROR,  /* the directory or file could not be read or written: why says which */
} dm_cache_result;

/* Resolves the default directory: $DMATTN_CACHE_DIR, else $XDG_CACHE_HOME/dmattn, else
 * $HOME/.cache/dmattn. Returns 0, or -1 when none can be formed (no HOME) or buf is too small. */
int dm_cache_default_dir(char *buf, size_t buf_bytes);

/* Creates dir and its parents (mode 0755) if missing. DM_CACHE_OK on success. */
dm_cache_result dm_cache_prepare_dir(const char *dir, char *why, size_t why_bytes);

dm_cache_result dm_cache_read(const char *dir, const dm_cache_key *key, void **cubin,
                              size_t *cubin_bytes, char *why, size_t why_bytes);

/* Writes atomically; DM_CACHE_OK on success. On failure nothing is left behind. */
dm_cache_result dm_cache_write(const char *dir, const dm_cache_key *key, const char *variant_text,
                               const void *cubin, size_t cubin_bytes, char *why, size_t why_bytes);

/* Calls fn for each entry file (in name order, so output is stable): its name, the variant text
 * from its header ("?" when unreadable), payload bytes and whether its checks pass. */
typedef void (*dm_cache_list_fn)(void *user, const char *name, const char *variant_text,
                                 uint64_t payload_bytes, int valid);
dm_cache_result dm_cache_list(const char *dir, dm_cache_list_fn fn, void *user, char *why,
                              size_t why_bytes);

/* Removes entries and stale temp files; counts what it removed and the bytes freed. */
dm_cache_result dm_cache_clear(const char *dir, int *removed, uint64_t *bytes_freed, char *why,
                               size_t why_bytes);

/* Total bytes and number of entries, for dmgen info. */
dm_cache_result dm_cache_usage(const char *dir, int *entries, uint64_t *bytes, char *why,
                               size_t why_bytes);

#endif
