/* cache.c: the on-disk cubin cache of SPEC §6, as declared in cache.h. Plain file I/O only: no
 * CUDA, no Lua, no locks. A final entry file is never written in place (temp file, then
 * rename), so a reader sees a whole old entry, a whole new one, or none; every check failure
 * is reported in `why`, naming the file, and never written anywhere else. */
#include "cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

static const char kMagic[8] = {'D', 'M', 'C', 'U', 'B', 'I', 'N', '1'};
enum {
    kFormatVersion = 1,
    kHeaderBytes = 32, /* magic 8, version 4, key_bytes 4, payload_bytes 8, checksum 8 */
};
#define MAX_KEY_BYTES ((uint64_t)64 << 10)      /* variant text; real ones are under 100 */
#define MAX_PAYLOAD_BYTES ((uint64_t)256 << 20) /* refuse to malloc more for one cubin */
#define TMP_INFIX ".tmp."                       /* <name>.cubin.tmp.<pid>.<16 hex> */
#define COPY_CHUNK 65536

static void say(char *why, size_t why_bytes, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t why_bytes, const char *fmt, ...)
{
    if (!why || why_bytes == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_bytes, fmt, ap);
    va_end(ap);
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static bool is_hex_name(const char *s, size_t n)
{
    if (n != DM_CACHE_NAME_CHARS)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

/* The kinds of file a cache directory holds; anything else there is left alone. */
typedef enum file_kind { FILE_OTHER, FILE_ENTRY, FILE_TEMP } file_kind;

/* "<pid>.<16 hex digits>": the tail of a temp name as dm_cache_write makes it. */
static bool is_temp_tail(const char *s)
{
    size_t digits = strspn(s, "0123456789");
    if (digits == 0 || s[digits] != '.')
        return false;
    s += digits + 1;
    return strlen(s) == 16 && strspn(s, "0123456789abcdef") == 16;
}

/* Recognises exactly the names dm_cache_write creates: "<name>.cubin" and
 * "<name>.cubin.tmp.<pid>.<16 hex digits>". */
static file_kind classify(const char *fname)
{
    size_t n = strlen(fname), suffix = strlen(DM_CACHE_SUFFIX), infix = strlen(TMP_INFIX);
    if (n <= DM_CACHE_NAME_CHARS || !is_hex_name(fname, DM_CACHE_NAME_CHARS))
        return FILE_OTHER;
    const char *rest = fname + DM_CACHE_NAME_CHARS;
    if (strcmp(rest, DM_CACHE_SUFFIX) == 0)
        return FILE_ENTRY;
    if (strncmp(rest, DM_CACHE_SUFFIX, suffix) == 0 &&
        strncmp(rest + suffix, TMP_INFIX, infix) == 0 && is_temp_tail(rest + suffix + infix))
        return FILE_TEMP;
    return FILE_OTHER;
}

static void hash_field(XXH3_state_t *st, const void *bytes, size_t n)
{
    unsigned char len[8];
    put_u64(len, (uint64_t)n);
    XXH3_128bits_update(st, len, sizeof len);
    if (n)
        XXH3_128bits_update(st, bytes, n);
}

static void hash_text(XXH3_state_t *st, const char *s)
{
    hash_field(st, s ? s : "", s ? strlen(s) : 0);
}

void dm_cache_key_make(const dm_cache_key_fields *f, dm_cache_key *out)
{
    static const char hex[] = "0123456789abcdef";
    XXH3_state_t st;
    XXH3_INITSTATE(&st);
    XXH3_128bits_reset(&st);
    hash_text(&st, f->lib_version);
    hash_text(&st, f->nvrtc_version);
    hash_text(&st, f->arch);
    hash_text(&st, f->options);
    hash_field(&st, f->source ? f->source : "", f->source ? f->source_bytes : 0);
    XXH128_canonical_t canon;
    XXH128_canonicalFromHash(&canon, XXH3_128bits_digest(&st));
    for (int i = 0; i < 16; i++) {
        out->name[2 * i] = hex[canon.digest[i] >> 4];
        out->name[2 * i + 1] = hex[canon.digest[i] & 15];
    }
    out->name[DM_CACHE_NAME_CHARS] = '\0';
}

int dm_cache_default_dir(char *buf, size_t buf_bytes)
{
    if (!buf || buf_bytes == 0)
        return -1;
    const char *own = getenv("DMATTN_CACHE_DIR");
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int n;
    if (own && own[0])
        n = snprintf(buf, buf_bytes, "%s", own);
    else if (xdg && xdg[0] == '/')
        n = snprintf(buf, buf_bytes, "%s/dmattn", xdg);
    else if (home && home[0])
        n = snprintf(buf, buf_bytes, "%s/.cache/dmattn", home);
    else
        n = -1;
    if (n < 0 || (size_t)n >= buf_bytes) {
        buf[0] = '\0';
        return -1;
    }
    return 0;
}

/* Joins dir and file name into path; false (with why) when it does not fit. */
static bool join(char *path, size_t path_bytes, const char *dir, const char *fname, char *why,
                 size_t why_bytes)
{
    int n = snprintf(path, path_bytes, "%s/%s", dir, fname);
    if (n < 0 || (size_t)n >= path_bytes) {
        say(why, why_bytes, "%s: path too long", dir);
        return false;
    }
    return true;
}

/* Builds <dir>/<name>.cubin after checking the arguments every entry call shares. */
static bool entry_path(char *path, size_t path_bytes, const char *dir, const dm_cache_key *key,
                       char *why, size_t why_bytes)
{
    if (!dir || !dir[0]) {
        say(why, why_bytes, "no cache directory given");
        return false;
    }
    if (!key || !is_hex_name(key->name, strnlen(key->name, sizeof key->name))) {
        say(why, why_bytes, "%s: bad cache key (expected %d hex digits)", dir,
            DM_CACHE_NAME_CHARS);
        return false;
    }
    char fname[DM_CACHE_NAME_CHARS + sizeof DM_CACHE_SUFFIX];
    snprintf(fname, sizeof fname, "%s%s", key->name, DM_CACHE_SUFFIX);
    return join(path, path_bytes, dir, fname, why, why_bytes);
}

dm_cache_result dm_cache_prepare_dir(const char *dir, char *why, size_t why_bytes)
{
    char path[PATH_MAX];
    struct stat sb;
    if (!dir || !dir[0]) {
        say(why, why_bytes, "no cache directory given");
        return DM_CACHE_IO_ERROR;
    }
    int n = snprintf(path, sizeof path, "%s", dir);
    if (n < 0 || (size_t)n >= sizeof path) {
        say(why, why_bytes, "%.64s...: path too long", dir);
        return DM_CACHE_IO_ERROR;
    }
    /* each prefix ending before a '/', then the whole path */
    for (char *p = path + 1;; p++) {
        bool last = *p == '\0';
        if (!last && *p != '/')
            continue;
        if (!last && p[-1] == '/')
            continue; /* "a//b": the prefix was done at the first slash */
        char saved = *p;
        *p = '\0';
        /* an existing prefix may refuse mkdir with EACCES or EROFS: what is there decides */
        int mkdir_errno = mkdir(path, 0755) == 0 ? 0 : errno;
        if (stat(path, &sb) != 0) {
            say(why, why_bytes, "%s: cannot create directory: %s", path,
                strerror(mkdir_errno ? mkdir_errno : errno));
            return DM_CACHE_IO_ERROR;
        }
        if (!S_ISDIR(sb.st_mode)) {
            say(why, why_bytes, "%s: exists and is not a directory", path);
            return DM_CACHE_IO_ERROR;
        }
        *p = saved;
        if (last)
            break;
    }
    return DM_CACHE_OK;
}

/* Reads exactly n bytes; returns how many it got before end of file (or -1 on error). */
static ssize_t read_full(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static bool write_full(int fd, const void *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, (const char *)buf + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return false;
        }
        done += (size_t)w;
    }
    return true;
}

/* What check_entry learned about one entry file. */
typedef struct entry_info {
    char *variant_text;     /* malloc'd, NUL-terminated; NULL when the header was unusable */
    uint64_t payload_bytes; /* from the header; 0 when the header was unusable */
    void *payload;          /* malloc'd when asked for and every check passed */
} entry_info;

/* Validates an open entry file: magic, version, size limits, sizes against the file size,
 * checksum. Reads the payload into memory only when want_payload, else streams it. */
static dm_cache_result check_entry(int fd, const char *path, bool want_payload, entry_info *out,
                                   char *why, size_t why_bytes)
{
    unsigned char head[kHeaderBytes];
    unsigned char *chunk = NULL;
    dm_cache_result res = DM_CACHE_CORRUPT;
    struct stat sb;
    memset(out, 0, sizeof *out);

    if (fstat(fd, &sb) != 0) {
        say(why, why_bytes, "%s: %s", path, strerror(errno));
        return DM_CACHE_IO_ERROR;
    }
    if (!S_ISREG(sb.st_mode)) {
        say(why, why_bytes, "%s: not a regular file", path);
        return DM_CACHE_IO_ERROR;
    }
    uint64_t file_bytes = (uint64_t)sb.st_size;
    ssize_t got = read_full(fd, head, sizeof head);
    if (got < 0) {
        say(why, why_bytes, "%s: read: %s", path, strerror(errno));
        return DM_CACHE_IO_ERROR;
    }
    if ((size_t)got < sizeof head) {
        say(why, why_bytes, "%s: truncated (expected at least %d bytes, found %zd)", path,
            kHeaderBytes, got);
        return DM_CACHE_CORRUPT;
    }
    if (memcmp(head, kMagic, sizeof kMagic) != 0) {
        say(why, why_bytes, "%s: bad magic (expected DMCUBIN1)", path);
        return DM_CACHE_CORRUPT;
    }
    uint32_t version = get_u32(head + 8);
    uint64_t key_bytes = get_u32(head + 12);
    uint64_t payload_bytes = get_u64(head + 16);
    uint64_t checksum = get_u64(head + 24);
    if (version != kFormatVersion) {
        say(why, why_bytes, "%s: format version %u (expected %d)", path, (unsigned)version,
            kFormatVersion);
        return DM_CACHE_CORRUPT;
    }
    if (key_bytes > MAX_KEY_BYTES || payload_bytes > MAX_PAYLOAD_BYTES) {
        say(why, why_bytes, "%s: header sizes out of range (key %llu, payload %llu bytes)", path,
            (unsigned long long)key_bytes, (unsigned long long)payload_bytes);
        return DM_CACHE_CORRUPT;
    }
    uint64_t expected = kHeaderBytes + key_bytes + payload_bytes;
    if (file_bytes != expected) {
        say(why, why_bytes, "%s: %s (expected %llu bytes, found %llu)", path,
            file_bytes < expected ? "truncated" : "extra bytes", (unsigned long long)expected,
            (unsigned long long)file_bytes);
        return DM_CACHE_CORRUPT;
    }

    XXH64_state_t st;
    XXH64_reset(&st, 0);
    out->variant_text = malloc(key_bytes + 1);
    if (!out->variant_text) {
        say(why, why_bytes, "%s: out of memory", path);
        res = DM_CACHE_IO_ERROR;
        goto out;
    }
    got = read_full(fd, out->variant_text, key_bytes);
    if (got < 0 || (uint64_t)got != key_bytes)
        goto short_read;
    out->variant_text[key_bytes] = '\0';
    XXH64_update(&st, out->variant_text, key_bytes);
    out->payload_bytes = payload_bytes;

    if (want_payload) {
        /* one byte more than needed, so a zero-byte payload is still a real pointer */
        out->payload = malloc(payload_bytes + 1);
        if (!out->payload) {
            say(why, why_bytes, "%s: out of memory for %llu bytes", path,
                (unsigned long long)payload_bytes);
            res = DM_CACHE_IO_ERROR;
            goto out;
        }
        got = read_full(fd, out->payload, payload_bytes);
        if (got < 0 || (uint64_t)got != payload_bytes)
            goto short_read;
        XXH64_update(&st, out->payload, payload_bytes);
    } else {
        chunk = malloc(COPY_CHUNK);
        if (!chunk) {
            say(why, why_bytes, "%s: out of memory", path);
            res = DM_CACHE_IO_ERROR;
            goto out;
        }
        for (uint64_t left = payload_bytes; left > 0;) {
            size_t n = left < COPY_CHUNK ? (size_t)left : COPY_CHUNK;
            got = read_full(fd, chunk, n);
            if (got < 0 || (size_t)got != n)
                goto short_read;
            XXH64_update(&st, chunk, n);
            left -= n;
        }
    }
    if (XXH64_digest(&st) != checksum) {
        say(why, why_bytes, "%s: checksum mismatch", path);
        res = DM_CACHE_CORRUPT;
        goto out;
    }
    res = DM_CACHE_HIT;
    goto out;

short_read:
    /* the size matched at fstat, so the file shrank under us: someone truncated it in place */
    if (got < 0) {
        say(why, why_bytes, "%s: read: %s", path, strerror(errno));
        res = DM_CACHE_IO_ERROR;
    } else {
        say(why, why_bytes, "%s: truncated while reading (expected %llu bytes)", path,
            (unsigned long long)expected);
        res = DM_CACHE_CORRUPT;
    }
out:
    free(chunk);
    if (res != DM_CACHE_HIT) {
        free(out->payload);
        out->payload = NULL;
    }
    return res;
}

dm_cache_result dm_cache_read(const char *dir, const dm_cache_key *key, void **cubin,
                              size_t *cubin_bytes, char *why, size_t why_bytes)
{
    char path[PATH_MAX];
    entry_info info;
    if (cubin)
        *cubin = NULL;
    if (cubin_bytes)
        *cubin_bytes = 0;
    if (!cubin || !cubin_bytes) {
        say(why, why_bytes, "dm_cache_read: no place for the cubin");
        return DM_CACHE_IO_ERROR;
    }
    if (!entry_path(path, sizeof path, dir, key, why, why_bytes))
        return DM_CACHE_IO_ERROR;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            say(why, why_bytes, "%s: no such entry", path);
            return DM_CACHE_MISS;
        }
        say(why, why_bytes, "%s: open: %s", path, strerror(errno));
        return DM_CACHE_IO_ERROR;
    }
    dm_cache_result res = check_entry(fd, path, true, &info, why, why_bytes);
    close(fd);
    free(info.variant_text);
    if (res == DM_CACHE_HIT) {
        *cubin = info.payload;
        *cubin_bytes = (size_t)info.payload_bytes;
    }
    return res;
}

/* Fills buf with random bytes: getrandom, else /dev/urandom. */
static bool random_bytes(void *buf, size_t n)
{
    if (getrandom(buf, n, GRND_NONBLOCK) == (ssize_t)n)
        return true;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t got = read_full(fd, buf, n);
    close(fd);
    return got == (ssize_t)n;
}

dm_cache_result dm_cache_write(const char *dir, const dm_cache_key *key, const char *variant_text,
                               const void *cubin, size_t cubin_bytes, char *why, size_t why_bytes)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    unsigned char head[kHeaderBytes];
    int fd = -1;
    bool tmp_made = false;
    dm_cache_result res = DM_CACHE_IO_ERROR;

    if (!entry_path(path, sizeof path, dir, key, why, why_bytes))
        return DM_CACHE_IO_ERROR;
    if (!variant_text)
        variant_text = "";
    size_t key_bytes = strlen(variant_text);
    if (!cubin && cubin_bytes) {
        say(why, why_bytes, "%s: no cubin given", path);
        return DM_CACHE_IO_ERROR;
    }
    if ((uint64_t)key_bytes > MAX_KEY_BYTES || (uint64_t)cubin_bytes > MAX_PAYLOAD_BYTES) {
        say(why, why_bytes, "%s: entry too large (key %zu, payload %zu bytes)", path, key_bytes,
            cubin_bytes);
        return DM_CACHE_IO_ERROR;
    }

    /* O_EXCL makes a clash with another writer's temp name a retry, never a shared file */
    for (int attempt = 0; attempt < 8 && fd < 0; attempt++) {
        uint64_t r;
        if (!random_bytes(&r, sizeof r)) {
            say(why, why_bytes, "%s: no random bytes for the temp name", path);
            goto out;
        }
        int n = snprintf(tmp, sizeof tmp, "%s%s%ld.%016llx", path, TMP_INFIX, (long)getpid(),
                         (unsigned long long)r);
        if (n < 0 || (size_t)n >= sizeof tmp) {
            say(why, why_bytes, "%s: path too long", dir);
            goto out;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST) {
            say(why, why_bytes, "%s: cannot create: %s", tmp, strerror(errno));
            goto out;
        }
    }
    if (fd < 0) {
        say(why, why_bytes, "%s: cannot create a unique temp file", path);
        goto out;
    }
    tmp_made = true;

    XXH64_state_t st;
    XXH64_reset(&st, 0);
    XXH64_update(&st, variant_text, key_bytes);
    if (cubin_bytes)
        XXH64_update(&st, cubin, cubin_bytes);
    memcpy(head, kMagic, sizeof kMagic);
    put_u32(head + 8, kFormatVersion);
    put_u32(head + 12, (uint32_t)key_bytes);
    put_u64(head + 16, (uint64_t)cubin_bytes);
    put_u64(head + 24, XXH64_digest(&st));
    if (!write_full(fd, head, sizeof head) || !write_full(fd, variant_text, key_bytes) ||
        !write_full(fd, cubin, cubin_bytes)) {
        say(why, why_bytes, "%s: write: %s", tmp, strerror(errno));
        goto out;
    }
    int rc = close(fd);
    fd = -1;
    if (rc != 0) {
        say(why, why_bytes, "%s: close: %s", tmp, strerror(errno));
        goto out;
    }
    if (rename(tmp, path) != 0) {
        say(why, why_bytes, "%s: cannot rename into place: %s", path, strerror(errno));
        goto out;
    }
    tmp_made = false;
    res = DM_CACHE_OK;
out:
    if (fd >= 0)
        close(fd);
    if (tmp_made)
        unlink(tmp);
    return res;
}

/* The names of one kind of file in dir, sorted; *names is NULL and *count 0 for a missing dir. */
static dm_cache_result scan_dir(const char *dir, bool temps_too, char ***names, size_t *count,
                                char *why, size_t why_bytes)
{
    *names = NULL;
    *count = 0;
    if (!dir || !dir[0]) {
        say(why, why_bytes, "no cache directory given");
        return DM_CACHE_IO_ERROR;
    }
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return DM_CACHE_OK; /* nothing there is nothing to list */
        say(why, why_bytes, "%s: %s", dir, strerror(errno));
        return DM_CACHE_IO_ERROR;
    }
    char **list = NULL;
    size_t n = 0, cap = 0;
    dm_cache_result res = DM_CACHE_OK;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        file_kind kind = classify(e->d_name);
        if (kind == FILE_OTHER || (kind == FILE_TEMP && !temps_too))
            continue;
        if (n == cap) {
            size_t new_cap = cap ? 2 * cap : 64;
            char **grown = realloc(list, new_cap * sizeof *grown);
            if (!grown)
                goto oom;
            list = grown;
            cap = new_cap;
        }
        list[n] = strdup(e->d_name);
        if (!list[n])
            goto oom;
        n++;
        errno = 0;
    }
    if (errno != 0) {
        say(why, why_bytes, "%s: readdir: %s", dir, strerror(errno));
        res = DM_CACHE_IO_ERROR;
    }
    goto out;
oom:
    say(why, why_bytes, "%s: out of memory listing entries", dir);
    res = DM_CACHE_IO_ERROR;
out:
    closedir(d);
    if (res != DM_CACHE_OK) {
        for (size_t i = 0; i < n; i++)
            free(list[i]);
        free(list);
        return res;
    }
    *names = list;
    *count = n;
    return res;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

dm_cache_result dm_cache_list(const char *dir, dm_cache_list_fn fn, void *user, char *why,
                              size_t why_bytes)
{
    char **names;
    size_t count;
    if (!fn) {
        say(why, why_bytes, "dm_cache_list: no callback given");
        return DM_CACHE_IO_ERROR;
    }
    dm_cache_result res = scan_dir(dir, false, &names, &count, why, why_bytes);
    if (res != DM_CACHE_OK)
        return res;
    if (count)
        qsort(names, count, sizeof *names, compare_names);
    for (size_t i = 0; i < count; i++) {
        char path[PATH_MAX], stem[DM_CACHE_NAME_CHARS + 1];
        if (!join(path, sizeof path, dir, names[i], why, why_bytes)) {
            res = DM_CACHE_IO_ERROR;
            break;
        }
        memcpy(stem, names[i], DM_CACHE_NAME_CHARS);
        stem[DM_CACHE_NAME_CHARS] = '\0';
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT)
                continue; /* removed since the scan */
            fn(user, stem, "?", 0, 0);
            continue;
        }
        entry_info info;
        dm_cache_result r = check_entry(fd, path, false, &info, NULL, 0);
        close(fd);
        fn(user, stem, info.variant_text ? info.variant_text : "?", info.payload_bytes,
           r == DM_CACHE_HIT);
        free(info.variant_text);
    }
    free_names(names, count);
    return res;
}

/* Counts (and, when remove, unlinks) the regular entry files in dir, and temps when asked. */
static dm_cache_result walk_files(const char *dir, bool temps_too, bool remove, int *files,
                                  uint64_t *bytes, char *why, size_t why_bytes)
{
    char **names;
    size_t count;
    int n = 0;
    uint64_t total = 0;
    dm_cache_result res = scan_dir(dir, temps_too, &names, &count, why, why_bytes);
    for (size_t i = 0; res == DM_CACHE_OK && i < count; i++) {
        char path[PATH_MAX];
        struct stat sb;
        if (!join(path, sizeof path, dir, names[i], why, why_bytes)) {
            res = DM_CACHE_IO_ERROR;
            break;
        }
        if (lstat(path, &sb) != 0) {
            if (errno == ENOENT)
                continue; /* replaced or removed since the scan */
            say(why, why_bytes, "%s: %s", path, strerror(errno));
            res = DM_CACHE_IO_ERROR;
            break;
        }
        if (!S_ISREG(sb.st_mode))
            continue; /* a directory named like an entry is not ours to remove */
        if (remove && unlink(path) != 0) {
            if (errno == ENOENT)
                continue;
            say(why, why_bytes, "%s: cannot remove: %s", path, strerror(errno));
            res = DM_CACHE_IO_ERROR;
            break;
        }
        n++;
        total += (uint64_t)sb.st_size;
    }
    free_names(names, count);
    if (files)
        *files = n;
    if (bytes)
        *bytes = total;
    return res;
}

dm_cache_result dm_cache_clear(const char *dir, int *removed, uint64_t *bytes_freed, char *why,
                               size_t why_bytes)
{
    return walk_files(dir, true, true, removed, bytes_freed, why, why_bytes);
}

dm_cache_result dm_cache_usage(const char *dir, int *entries, uint64_t *bytes, char *why,
                               size_t why_bytes)
{
    return walk_files(dir, false, false, entries, bytes, why, why_bytes);
}
