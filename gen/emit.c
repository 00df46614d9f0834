/* emit.c: runs a kernel family's Lua template for one variant and returns its CUDA source.
 *
 * Each call gets a fresh Lua state with only base, string, table, math and package (for
 * require): templates cannot read files, clocks or the environment, so output depends on the
 * variant alone. C and Lua meet at one lua_pcall; nothing longjmps over our frames, and Lua calls
 * no C of ours. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

/* The module a variant's kernel comes from. */
static const char *family_of(const dm_variant *v)
{
    if (v->family == DM_FAMILY_WMASK)
        return "window_mask";
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

/* package.preload[name] for each embedded template, or package.path = $DMATTN_TEMPLATE_DIR. */
static void install_templates(lua_State *L)
{
    static const luaL_Reg libs[] = {{LUA_GNAME, luaopen_base},       {LUA_LOADLIBNAME, luaopen_package},
                                    {LUA_STRLIBNAME, luaopen_string}, {LUA_TABLIBNAME, luaopen_table},
                                    {LUA_MATHLIBNAME, luaopen_math}};
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
        luaL_requiref(L, libs[i].name, libs[i].func, 1);
        lua_pop(L, 1);
    }
    /* The base library's file loaders reach the file system: templates get require only. */
    static const char *const denied[] = {"dofile", "loadfile"};
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) {
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
    const char *dir = getenv("DMATTN_TEMPLATE_DIR");
    if (dir && *dir) {
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

static void push_variant(lua_State *L, const dm_variant *v)
{
    static const char *const layouts[] = {"none", "q", "k"};
    char key[DM_VARIANT_TEXT_MAX];
    dm_variant_format(v, key, sizeof key);
    lua_createtable(L, 0, 15);
    lua_pushstring(L, v->family == DM_FAMILY_WMASK ? "wmask" : "attn");
    lua_setfield(L, -2, "family");
    lua_pushboolean(L, v->relu);
    lua_setfield(L, -2, "relu");
    lua_pushboolean(L, v->smooth);
    lua_setfield(L, -2, "smooth");
    lua_pushstring(L, v->dir == DM_DIR_FWD ? "fwd" : "bwd");
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
    lua_pushstring(L, dm_arch_name(v->arch));
    lua_setfield(L, -2, "arch");
    lua_pushstring(L, key);
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

dm_status dm_gen_emit(const dm_variant *v, dm_kernel_src *out, char *err, size_t err_bytes)
{
    char key[DM_VARIANT_TEXT_MAX];
    dm_status st = DM_OK;
    memset(out, 0, sizeof *out);
    dm_variant_format(v, key, sizeof key);

    lua_State *L = luaL_newstate();
    if (!L) {
        snprintf(err, err_bytes, "variant '%s': cannot create a Lua state", key);
        return DM_ERR_NOMEM;
    }
    install_templates(L);

    lua_pushcfunction(L, call_emit);
    lua_pushstring(L, family_of(v));
    push_variant(L, v);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        if (!msg)
            msg = "(error object is not a string)";
        const char *unsup = "unsupported: ";
        if (strncmp(msg, unsup, strlen(unsup)) == 0) {
            snprintf(err, err_bytes, "variant '%s': %s", key, msg + strlen(unsup));
            st = DM_ERR_UNSUPPORTED;
        } else if (strstr(msg, "module '") && strstr(msg, "' not found")) {
            snprintf(err, err_bytes, "variant '%s': no template for family %s", key,
                     family_of(v));
            st = DM_ERR_UNSUPPORTED;
        } else {
            snprintf(err, err_bytes, "variant '%s': template error: %s", key, msg);
            st = DM_ERR_COMPILE;
        }
        goto out;
    }

    size_t len = 0;
    lua_getfield(L, -1, "source");
    const char *src = lua_tolstring(L, -1, &len);
    lua_getfield(L, -2, "entry");
    const char *entry = lua_tostring(L, -1);
    if (!src || !entry || strlen(entry) >= sizeof out->entry ||
        !get_int_field(L, -3, "threads", &out->threads) ||
        !get_int_field(L, -3, "block_m", &out->block_m) ||
        !get_int_field(L, -3, "block_n", &out->block_n) ||
        !get_int_field(L, -3, "smem_bytes", &out->smem_bytes) ||
        !get_opt_int_field(L, -3, "split_stages", &out->split_stages) ||
        !get_opt_int_field(L, -3, "split_digit_stages", &out->split_digit_stages)) {
        snprintf(err, err_bytes,
                 "variant '%s': template returned an incomplete table (needs source, entry, "
                 "threads, block_m, block_n, smem_bytes)",
                 key);
        st = DM_ERR_COMPILE;
        goto out;
    }
    out->source = malloc(len + 1);
    if (!out->source) {
        snprintf(err, err_bytes, "variant '%s': out of memory for %zu bytes of source", key, len);
        st = DM_ERR_NOMEM;
        goto out;
    }
    memcpy(out->source, src, len + 1);
    out->source_bytes = len;
    snprintf(out->entry, sizeof out->entry, "%s", entry);
out:
    lua_close(L);
    return st;
}

void dm_kernel_src_free(dm_kernel_src *k)
{
    if (!k)
        return;
    free(k->source);
    k->source = NULL;
    k->source_bytes = 0;
}
