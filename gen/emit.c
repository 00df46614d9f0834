/* emit.c: runs a kernel family's Lua template for one variant and returns its CUDA source.
 *
 * Each call gets a fresh Lua state with only base, string, table, math and package (for
 * require): templates cannot read files, clocks or the environment, so output depends on the
 * variant alone. Everything Lua does, opening the libraries included, runs under one lua_pcall
 * (protected_emit): an allocation failure anywhere is DM_ERR_NOMEM, never Lua's panic handler.
 * Inside it the template runs under a second lua_pcall, so that its error can be classified
 * while still protected (reading an error object may allocate). Nothing longjmps over our
 * frames, and Lua calls no C of ours but the functions here.
 *
 * What C tells the templates: the variant (an argument of emit), require("limits") (dm_limits.h)
 * and require("host_layout") (the kernel parameter structs of kernel_params.h: each field's
 * name, CUDA type, count, byte offset and comment, and the size).
 *
 * What templates tell C: a result table, or an error. A table error { code = "unsupported",
 * detail = "..." } (templates/errors.lua raises it) is DM_ERR_UNSUPPORTED with the detail; any
 * other error (a string, with the file:line Lua adds) is a template bug, DM_ERR_COMPILE. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"
#include "gen_test.h"
#include "kernel_params.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* One field of a kernel parameter struct, as require("host_layout") hands it to Lua. */
typedef struct param_field {
    const char *name;
    const char *type; /* CUDA spelling: u64, i64, int, u32, float */
    int count;        /* 1, or the array length */
    size_t offset;    /* offsetof in the C struct the library fills */
    const char *doc;
} param_field;

#define FWD_FIELD_(type, name, count, doc) \
    {#name, DM_PARAM_CUDA_##type, count, offsetof(dm_fwd_params, name), doc},
#define WMASK_FIELD_(type, name, count, doc) \
    {#name, DM_PARAM_CUDA_##type, count, offsetof(dm_wmask_params, name), doc},
static const param_field fwd_fields[] = {DM_FWD_PARAMS(FWD_FIELD_)};
#define COMBINE_FIELD_(type, name, count, doc) \
    {#name, DM_PARAM_CUDA_##type, count, offsetof(dm_combine_params, name), doc},
static const param_field wmask_fields[] = {DM_WMASK_PARAMS(WMASK_FIELD_)};
static const param_field combine_fields[] = {DM_COMBINE_PARAMS(COMBINE_FIELD_)};
#define BWD_FIELD_(type, name, count, doc) \
    {#name, DM_PARAM_CUDA_##type, count, offsetof(dm_bwd_params, name), doc},
static const param_field bwd_fields[] = {DM_BWD_PARAMS(BWD_FIELD_)};

static const struct param_struct {
    const char *name;   /* the CUDA struct: FwdParams */
    const char *c_name; /* the C struct: dm_fwd_params */
    size_t bytes;
    const param_field *fields;
    size_t n_fields;
} param_structs[] = {
    {"FwdParams", "dm_fwd_params", sizeof(dm_fwd_params), fwd_fields, ARRAY_LEN(fwd_fields)},
    {"WmaskParams", "dm_wmask_params", sizeof(dm_wmask_params), wmask_fields,
     ARRAY_LEN(wmask_fields)},
    {"CombineParams", "dm_combine_params", sizeof(dm_combine_params), combine_fields,
     ARRAY_LEN(combine_fields)},
    {"BwdParams", "dm_bwd_params", sizeof(dm_bwd_params), bwd_fields, ARRAY_LEN(bwd_fields)},
};

/* Error codes a template may raise as { code = ..., detail = ... }. */
static const struct {
    const char *code;
    dm_status status;
} error_codes[] = {
    {"unsupported", DM_ERR_UNSUPPORTED},
};

/* One dm_gen_emit call, as protected_emit sees it. */
typedef struct emit_job {
    const dm_variant *v;
    const char *key;          /* v's canonical text, for messages */
    const char *template_dir; /* $DMATTN_TEMPLATE_DIR, or NULL: the embedded copies */
    dm_kernel_src *out;
    char *err;
    size_t err_bytes;
    dm_status st; /* DM_OK until a step fails */
} emit_job;

/* Allocations counted, failing after `limit` of them (limit < 0: never). */
typedef struct alloc_budget {
    long limit;
    long used;
} alloc_budget;

static void *budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    alloc_budget *b = ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    /* Lua assumes a block never fails to shrink; with ptr NULL, osize is a type tag. */
    if (ptr == NULL || nsize > osize) {
        b->used++;
        if (b->limit >= 0 && b->used > b->limit)
            return NULL;
    }
    return realloc(ptr, nsize);
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void
fail(emit_job *job, dm_status st, const char *fmt, ...)
{
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (job->err_bytes > 0)
        snprintf(job->err, job->err_bytes, "variant '%s': %s", job->key, what);
    job->st = st;
}

/* The module a variant's kernel comes from. */
static const char *family_of(const dm_variant *v)
{
    if (v->family == DM_FAMILY_WMASK)
        return "window_mask";
    if (v->family == DM_FAMILY_COMBINE)
        return "attn_combine";
    return v->dir == DM_DIR_FWD ? "attn_fwd" : "attn_bwd";
}

static int load_embedded(lua_State *L)
{
    const dm_template_file *t = lua_touserdata(L, lua_upvalueindex(1));
    char chunk[96];
    snprintf(chunk, sizeof chunk, "@%s", t->name);
    if (luaL_loadbuffer(L, t->text, t->bytes, chunk) != LUA_OK)
        return lua_error(L);
    lua_call(L, 0, 1); /* inside the protected call that require runs under */
    return 1;
}

/* The sandboxed libraries, and package.preload[name] for each embedded template or
 * package.path = $DMATTN_TEMPLATE_DIR. */
static void install_templates(lua_State *L, const char *dir)
{
    static const luaL_Reg libs[] = {{LUA_GNAME, luaopen_base},       {LUA_LOADLIBNAME, luaopen_package},
                                    {LUA_STRLIBNAME, luaopen_string}, {LUA_TABLIBNAME, luaopen_table},
                                    {LUA_MATHLIBNAME, luaopen_math}};
    for (size_t i = 0; i < ARRAY_LEN(libs); i++) {
        luaL_requiref(L, libs[i].name, libs[i].func, 1);
        lua_pop(L, 1);
    }
    /* The base library's file loaders reach the file system: templates get require only. */
    static const char *const denied[] = {"dofile", "loadfile"};
    for (size_t i = 0; i < ARRAY_LEN(denied); i++) {
        lua_pushnil(L);
        lua_setglobal(L, denied[i]);
    }
    /* Random numbers would make the output differ run to run. */
    lua_getglobal(L, "math");
    lua_pushnil(L);
    lua_setfield(L, -2, "random");
    lua_pushnil(L);
    lua_setfield(L, -2, "randomseed");
    lua_pop(L, 1);
    lua_getglobal(L, "package");
    lua_pushstring(L, "");
    lua_setfield(L, -2, "cpath");
    if (dir) {
        lua_pushfstring(L, "%s/?.lua", dir);
        lua_setfield(L, -2, "path");
    } else {
        lua_pushstring(L, "");
        lua_setfield(L, -2, "path");
        lua_getfield(L, -1, "preload");
        for (size_t i = 0; i < dm_template_count; i++) {
            char mod[64];
            size_t n = strcspn(dm_templates[i].name, ".");
            snprintf(mod, sizeof mod, "%.*s", (int)n, dm_templates[i].name);
            lua_pushlightuserdata(L, (void *)&dm_templates[i]);
            lua_pushcclosure(L, load_embedded, 1);
            lua_setfield(L, -2, mod);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* package.loaded.limits and package.loaded.host_layout: facts the templates read from C. */
static void install_host_facts(lua_State *L)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");

    lua_createtable(L, 0, 4);
#define LIMIT_(name, value) \
    lua_pushinteger(L, value); \
    lua_setfield(L, -2, #name);
    DM_LIMITS(LIMIT_)
#undef LIMIT_
    lua_setfield(L, -2, "limits");

    lua_createtable(L, 0, (int)ARRAY_LEN(param_structs));
    for (size_t s = 0; s < ARRAY_LEN(param_structs); s++) {
        const struct param_struct *ps = &param_structs[s];
        lua_createtable(L, 0, 3);
        lua_pushstring(L, ps->c_name);
        lua_setfield(L, -2, "c_name");
        lua_pushinteger(L, (lua_Integer)ps->bytes);
        lua_setfield(L, -2, "size");
        lua_createtable(L, (int)ps->n_fields, 0);
        for (size_t i = 0; i < ps->n_fields; i++) {
            const param_field *f = &ps->fields[i];
            lua_createtable(L, 0, 5);
            lua_pushstring(L, f->name);
            lua_setfield(L, -2, "name");
            lua_pushstring(L, f->type);
            lua_setfield(L, -2, "type");
            lua_pushinteger(L, f->count);
            lua_setfield(L, -2, "count");
            lua_pushinteger(L, (lua_Integer)f->offset);
            lua_setfield(L, -2, "offset");
            lua_pushstring(L, f->doc);
            lua_setfield(L, -2, "doc");
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_setfield(L, -2, "fields");
        lua_setfield(L, -2, ps->name);
    }
    lua_setfield(L, -2, "host_layout");
    lua_pop(L, 2);
}

/* Whether the family's module exists, decided before require: a template that requires a
 * missing helper module is a template error, not a missing family. */
static bool family_exists(lua_State *L, const char *dir, const char *family)
{
    int top = lua_gettop(L);
    lua_getglobal(L, "package");
    if (dir) {
        lua_getfield(L, -1, "searchpath");
        lua_pushstring(L, family);
        lua_getfield(L, -3, "path");
        lua_call(L, 2, 1);
    } else {
        lua_getfield(L, -1, "preload");
        lua_getfield(L, -1, family);
    }
    bool found = !lua_isnil(L, -1);
    lua_settop(L, top);
    return found;
}

static void push_variant(lua_State *L, const emit_job *job)
{
    static const char *const layouts[] = {"none", "q", "k"};
    const dm_variant *v = job->v;
    lua_createtable(L, 0, 16);
    lua_pushstring(L, v->family == DM_FAMILY_WMASK     ? "wmask"
                      : v->family == DM_FAMILY_COMBINE ? "combine"
                                                       : "attn");
    lua_setfield(L, -2, "family");
    lua_pushboolean(L, v->relu);
    lua_setfield(L, -2, "relu");
    lua_pushboolean(L, v->smooth);
    lua_setfield(L, -2, "smooth");
    lua_pushstring(L, dm_dir_name(v->dir));
    lua_setfield(L, -2, "dir");
    lua_pushinteger(L, v->head_dim);
    lua_setfield(L, -2, "d");
    lua_pushstring(L, dm_dtype_name(v->dtype));
    lua_setfield(L, -2, "dtype");
    lua_pushstring(L, layouts[v->mask]);
    lua_setfield(L, -2, "mask");
    lua_pushstring(L, layouts[v->bias]);
    lua_setfield(L, -2, "bias");
    lua_pushinteger(L, v->window);
    lua_setfield(L, -2, "window");
    lua_pushboolean(L, v->varlen);
    lua_setfield(L, -2, "varlen");
    lua_pushboolean(L, v->causal);
    lua_setfield(L, -2, "causal");
    lua_pushboolean(L, v->softcap);
    lua_setfield(L, -2, "softcap");
    lua_pushboolean(L, v->decode);
    lua_setfield(L, -2, "decode");
    lua_pushstring(L, dm_arch_name(v->arch));
    lua_setfield(L, -2, "arch");
    lua_pushstring(L, job->key);
    lua_setfield(L, -2, "key");
    lua_pushstring(L, DM_VERSION_STRING);
    lua_setfield(L, -2, "version");
}

/* Runs require(family).emit(variant) on the stack; leaves the result table or an error. */
static int call_emit(lua_State *L)
{
    const char *family = lua_tostring(L, 1);
    lua_getglobal(L, "require");
    lua_pushstring(L, family);
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "emit");
    if (!lua_isfunction(L, -1))
        return luaL_error(L, "%s.lua has no emit function", family);
    lua_pushvalue(L, 2);
    lua_call(L, 1, 1);
    if (!lua_istable(L, -1))
        return luaL_error(L, "%s.emit returned %s, expected a table", family, luaL_typename(L, -1));
    return 1;
}

/* The template's error (on the stack top) as a status and message. */
static void classify_error(lua_State *L, int status, emit_job *job)
{
    int top = lua_gettop(L);
    if (status == LUA_ERRMEM) {
        fail(job, DM_ERR_NOMEM, "out of memory in the Lua template");
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        fail(job, DM_ERR_COMPILE, "template error: %s", lua_tostring(L, -1));
    } else if (lua_type(L, -1) == LUA_TTABLE) {
        lua_getfield(L, top, "code");
        lua_getfield(L, top, "detail");
        const char *code = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        const char *detail = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        size_t i = 0;
        while (code && i < ARRAY_LEN(error_codes) && strcmp(code, error_codes[i].code) != 0)
            i++;
        if (code && detail && i < ARRAY_LEN(error_codes))
            fail(job, error_codes[i].status, "%s", detail);
        else
            fail(job, DM_ERR_COMPILE,
                 "template error: an error table needs code = \"unsupported\" and a string "
                 "detail (got code %s%s%s)",
                 code ? "'" : "", code ? code : luaL_typename(L, -2), code ? "'" : "");
    } else {
        fail(job, DM_ERR_COMPILE,
             "template error: the error object is a %s (expected a string or {code, detail})",
             luaL_typename(L, -1));
    }
    lua_settop(L, top);
}

static int get_int_field(lua_State *L, int idx, const char *name, int *out)
{
    lua_getfield(L, idx, name);
    int ok = lua_isinteger(L, -1);
    if (ok)
        *out = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return ok;
}

/* An optional field: absent leaves *out at 0; present, it must be an integer. */
static int get_opt_int_field(lua_State *L, int idx, const char *name, int *out)
{
    lua_getfield(L, idx, name);
    int absent = lua_isnil(L, -1);
    lua_pop(L, 1);
    return absent || get_int_field(L, idx, name, out);
}

/* The result table (stack top) into job->out. The source is copied last: nothing after the
 * malloc can raise, so no path leaks it. */
static void take_result(lua_State *L, emit_job *job)
{
    int top = lua_gettop(L);
    dm_kernel_src *out = job->out;
    size_t len = 0;
    lua_getfield(L, top, "source");
    const char *src = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    lua_getfield(L, top, "entry");
    const char *entry = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_getfield(L, top, "rows_entry");
    const char *rows_entry = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    if (!src || !entry || strlen(entry) >= sizeof out->entry ||
        strlen(rows_entry) >= sizeof out->rows_entry ||
        !get_int_field(L, top, "threads", &out->threads) ||
        !get_int_field(L, top, "block_m", &out->block_m) ||
        !get_int_field(L, top, "block_n", &out->block_n) ||
        !get_int_field(L, top, "smem_bytes", &out->smem_bytes) ||
        !get_opt_int_field(L, top, "split_stages", &out->split_stages) ||
        !get_opt_int_field(L, top, "split_digit_stages", &out->split_digit_stages) ||
        !get_opt_int_field(L, top, "dq_atomic", &out->dq_atomic) ||
        !get_opt_int_field(L, top, "tma_maps", &out->tma_maps) ||
        !get_opt_int_field(L, top, "query_tile", &out->query_tile) ||
        !get_opt_int_field(L, top, "key_split", &out->key_split) ||
        !get_opt_int_field(L, top, "dq_turns", &out->dq_turns) ||
        !get_opt_int_field(L, top, "turn_order", &out->turn_order)) {
        fail(job, DM_ERR_COMPILE,
             "template returned an incomplete table (needs source, entry, threads, block_m, "
             "block_n, smem_bytes)");
    } else if (!(out->source = malloc(len + 1))) {
        fail(job, DM_ERR_NOMEM, "out of memory for %zu bytes of source", len);
    } else {
        memcpy(out->source, src, len + 1);
        out->source_bytes = len;
        snprintf(out->entry, sizeof out->entry, "%s", entry);
        snprintf(out->rows_entry, sizeof out->rows_entry, "%s", rows_entry);
    }
    lua_settop(L, top);
}

/* Everything one emit does in Lua; the job (a light userdata) is argument 1. */
static int protected_emit(lua_State *L)
{
    emit_job *job = lua_touserdata(L, 1);
    const char *family = family_of(job->v);

    install_templates(L, job->template_dir);
    install_host_facts(L);
    if (!family_exists(L, job->template_dir, family)) {
        fail(job, DM_ERR_UNSUPPORTED, "no template for family %s", family);
        return 0;
    }
    lua_pushcfunction(L, call_emit);
    lua_pushstring(L, family);
    push_variant(L, job);
    int status = lua_pcall(L, 2, 1, 0);
    if (status != LUA_OK)
        classify_error(L, status, job);
    else
        take_result(L, job);
    lua_settop(L, 1);
    return 0;
}

dm_status dm_gen_emit_alloc_limit(const dm_variant *v, long max_allocs, long *allocs,
                                  dm_kernel_src *out, char *err, size_t err_bytes)
{
    char key[DM_VARIANT_TEXT_MAX] = "?";
    const char *dir = getenv("DMATTN_TEMPLATE_DIR");
    alloc_budget budget = {max_allocs, 0};
    emit_job job = {.v = v, .key = key, .template_dir = dir && *dir ? dir : NULL, .out = out,
                    .err = err, .err_bytes = err_bytes, .st = DM_OK};

    memset(out, 0, sizeof *out);
    if (err_bytes > 0)
        err[0] = '\0';
    if (dm_variant_format(v, key, sizeof key) < 0)
        snprintf(key, sizeof key, "?");
    lua_State *L = lua_newstate(budget_alloc, &budget);
    if (!L) {
        fail(&job, DM_ERR_NOMEM, "cannot create a Lua state (out of memory)");
    } else {
        int top = lua_gettop(L);
        lua_pushcfunction(L, protected_emit); /* neither push allocates */
        lua_pushlightuserdata(L, &job);
        int status = lua_pcall(L, 1, 0, 0);
        if (status == LUA_ERRMEM)
            fail(&job, DM_ERR_NOMEM, "out of memory in the Lua state");
        else if (status != LUA_OK)
            fail(&job, DM_ERR_COMPILE, "error in the Lua state's setup (status %d)", status);
        lua_settop(L, top);
        lua_close(L);
    }
    if (allocs)
        *allocs = budget.used;
    if (job.st != DM_OK)
        dm_kernel_src_free(out);
    return job.st;
}

dm_status dm_gen_emit(const dm_variant *v, dm_kernel_src *out, char *err, size_t err_bytes)
{
    return dm_gen_emit_alloc_limit(v, -1, NULL, out, err, err_bytes);
}

void dm_kernel_src_free(dm_kernel_src *k)
{
    if (!k)
        return;
    free(k->source);
    k->source = NULL;
    k->source_bytes = 0;
}
