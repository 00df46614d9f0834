-- kernel_params.lua: a kernel's parameter struct, emitted from the library's own layout.
--
-- The library fills the struct (api/fwd_launch.c, api/window_mask.c) from its C definition, whose
-- fields are listed once in gen/kernel_params.h. emit.c hands that list to the templates as
-- require("host_layout")[name]: each field's name, CUDA type, count, byte offset (offsetof in C)
-- and comment, and the struct's size. The struct is declared from the list, then each field is
-- checked against it: NVRTC has no offsetof, so a field's offset is probed by bit-casting a
-- struct whose bytes at the host's offset are marked 1, 2, ..., and reading the field back. A
-- struct that differs from the library's (fields swapped, a type or count changed) fails to
-- compile, the static_assert naming the field. One struct per source (the helpers are emitted
-- with its checks).
local common = require("cuda_common")

local M = {}

local COLUMNS = 100  -- the longest line emitted

local helpers = [=[
// Each field must have the type and byte offset the library's $c_name gives it.
namespace host_layout {
template <class A, class B> struct Same { static constexpr bool value = false; };
template <class A> struct Same<A, A> { static constexpr bool value = true; };
template <class T> struct Bytes { unsigned char b[sizeof(T)]; };
// an S whose bytes [off, off + n) read 1, 2, ..., n and all others 0
template <class S> __host__ __device__ constexpr S marked(int off, int n)
{
    Bytes<S> r{};
    for (int i = 0; i < n; i++)
        r.b[off + i] = (unsigned char)(i + 1);
    return __builtin_bit_cast(S, r);
}
// x's bytes read first, first + 1, ... (arrays element by element: bit_cast takes no arrays)
template <class T> __host__ __device__ constexpr bool reads_marks(const T &x, int first)
{
    Bytes<T> b = __builtin_bit_cast(Bytes<T>, x);
    for (int i = 0; i < (int)sizeof(T); i++)
        if (b.b[i] != first + i)
            return false;
    return true;
}
template <class T, int N> __host__ __device__ constexpr bool reads_marks(const T (&x)[N], int first)
{
    for (int i = 0; i < N; i++)
        if (!reads_marks(x[i], first + i * (int)sizeof(T)))
            return false;
    return true;
}
// member m of S is a T at byte off
template <class T, class S, class M> __host__ __device__ constexpr bool at(M S::*m, int off)
{
    return Same<M, T>::value && reads_marks(marked<S>(off, (int)sizeof(M)).*m, 1);
}
}  // namespace host_layout]=]

local function type_of(f)
  return f.count == 1 and f.type or string.format("%s[%d]", f.type, f.count)
end

local function declarator(f)
  return f.count == 1 and f.name or string.format("%s[%d]", f.name, f.count)
end

-- Words of text in lines of at most `width` characters after `prefix`.
local function wrap(prefix, text, width)
  local lines, line = {}, nil
  for word in text:gmatch("%S+") do
    if line and #line + 1 + #word > width then
      lines[#lines + 1] = prefix .. line
      line = word
    else
      line = line and (line .. " " .. word) or word
    end
  end
  lines[#lines + 1] = prefix .. line
  return lines
end

-- The member lines: consecutive fields of one type and one comment share a declaration; a
-- comment goes after its declaration, aligned, or above it where that line would be too long.
local function members(fields)
  local decls = {}
  for _, f in ipairs(fields) do
    local last = decls[#decls]
    if last and last.type == f.type and last.doc == f.doc then
      last.names[#last.names + 1] = declarator(f)
    else
      decls[#decls + 1] = { type = f.type, doc = f.doc, names = { declarator(f) } }
    end
  end
  for _, d in ipairs(decls) do
    d.text = "    " .. d.type .. " " .. table.concat(d.names, ", ") .. ";"
  end
  -- one comment column for the struct: the one that keeps the most comments beside their
  -- declarations (the nearest of equals); the rest go above theirs
  local function fits(d, column)
    return d.doc ~= "" and #d.text < column and column + 3 + #d.doc <= COLUMNS
  end
  local column, best = 0, 0
  for _, c in ipairs(decls) do
    local n = 0
    for _, d in ipairs(decls) do
      n = n + (fits(d, #c.text + 1) and 1 or 0)
    end
    if n > best or (n == best and #c.text + 1 < column) then
      column, best = #c.text + 1, n
    end
  end
  local lines = {}
  for _, d in ipairs(decls) do
    if d.doc == "" then
      lines[#lines + 1] = d.text
    elseif fits(d, column) then
      lines[#lines + 1] = d.text .. string.rep(" ", column - #d.text) .. "// " .. d.doc
    else
      for _, l in ipairs(wrap("    // ", d.doc, COLUMNS - 7)) do
        lines[#lines + 1] = l
      end
      lines[#lines + 1] = d.text
    end
  end
  return lines
end

-- static_assert(cond, "msg"); on two lines when one would be too long
local function assert_line(cond, msg)
  local one = string.format('static_assert(%s, "%s");', cond, msg)
  if #one <= COLUMNS then
    return one
  end
  return string.format('static_assert(%s,\n              "%s");', cond, msg)
end

local function layout_of(name, layout)
  layout = layout or require("host_layout")[name]
  if not layout then
    error("kernel_params.lua: the library has no parameter struct " .. name, 0)
  end
  return layout
end

-- struct `name` declared from a layout: the library's (require("host_layout")[name]) unless
-- another is given (tests).
function M.declaration(name, layout)
  layout = layout_of(name, layout)
  local lines = { "struct " .. name .. " {" }
  for _, l in ipairs(members(layout.fields)) do
    lines[#lines + 1] = l
  end
  lines[#lines + 1] = "};"
  return table.concat(lines, "\n")
end

-- static_asserts that struct `name`, however declared, has each field of the layout at its
-- type and offset, and the layout's size.
function M.checks(name, layout)
  layout = layout_of(name, layout)
  local lines = { common.fill(helpers, { c_name = layout.c_name }) }
  lines[#lines + 1] = assert_line(string.format("sizeof(%s) == %d", name, layout.size),
    string.format("%s: %d bytes, as %s", name, layout.size, layout.c_name))
  for _, f in ipairs(layout.fields) do
    local t = type_of(f)
    lines[#lines + 1] = assert_line(
      string.format("host_layout::at<%s>(&%s::%s, %d)", t, name, f.name, f.offset),
      string.format("%s.%s: %s at byte %d", name, f.name, t, f.offset))
  end
  return table.concat(lines, "\n")
end

-- The library's struct `name`, declared and checked.
function M.struct(name)
  return M.declaration(name) .. "\n" .. M.checks(name)
end

return M
