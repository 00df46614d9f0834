-- cuda_common.lua: pieces every kernel family emits: the text buffer, the header comment, the
-- fixed-width types and the fp16/bf16 conversions. Generated sources include no headers (NVRTC
-- sees only the text, so the cache key covers everything), hence the conversions in inline PTX.
local errors = require("errors")

local M = {}

-- The one substitution of every template: $name in `text` becomes pieces[name] (a string or a
-- number); an unknown name is an error, so a typo cannot reach NVRTC. A piece standing alone on
-- its line is indented as the `$name` is (its preprocessor lines stay in column 0), so pieces are
-- written once at indent 0 and used at any depth; an empty one removes its line, so a feature
-- that is off leaves nothing behind, not even a blank line.
function M.fill(text, pieces)
  if not text:find("$", 1, true) then
    return text  -- most pieces: nothing to fill (and the lines need no splitting)
  end
  local function piece(name)
    local v = pieces[name]
    if v == nil then
      error("template variable $" .. name .. " is not set", 4)
    end
    return tostring(v)
  end
  -- Lines found with plain finds: a (.-)\n pattern retries at every character, which made
  -- codegen (the first call's cost) twice what it was.
  local out, pos = {}, 1
  repeat
    local nl = text:find("\n", pos, true)
    local line = text:sub(pos, (nl or #text + 1) - 1)
    if not line:find("$", 1, true) then
      out[#out + 1] = line
    else
      local indent, name = line:match("^( *)%$([%a_][%w_]*)$")
      if name then
        local v = piece(name)
        if v ~= "" then
          out[#out + 1] = v:gsub("[^\n]+", function(l)
            return l:sub(1, 1) == "#" and l or indent .. l
          end)
        end
      else
        out[#out + 1] = line:gsub("%$([%a_][%w_]*)", piece)
      end
    end
    pos = nl and nl + 1
  until not pos
  return table.concat(out, "\n")
end

-- A line buffer joined once; add(text, pieces) fills text first (M.fill).
function M.buffer()
  local lines = {}
  local b = {}
  function b.add(text, pieces)
    lines[#lines + 1] = pieces and M.fill(text, pieces) or text
  end
  function b.text()
    return table.concat(lines, "\n") .. "\n"
  end
  return b
end

-- Code lines with their comments in one column (two spaces past the longest commented line);
-- a row is "code" or { "code", "comment" }; false rows (a feature that is off) are skipped.
function M.aligned(rows)
  local width = 0
  for _, r in ipairs(rows) do
    if type(r) == "table" then
      width = math.max(width, #r[1])
    end
  end
  local out = {}
  for _, r in ipairs(rows) do
    if type(r) == "table" then
      out[#out + 1] = r[1] .. string.rep(" ", width - #r[1]) .. "  // " .. r[2]
    elseif r then
      out[#out + 1] = r
    end
  end
  return table.concat(out, "\n")
end

-- `head(args...)tail`, wrapped at 100 columns as clang-format would: continuation lines line up
-- after the "(". `indent`: the columns the text will stand at (fill adds them).
function M.call(indent, head, args, tail)
  local lines, line = {}, head .. "("
  local pad = string.rep(" ", #line)
  for i, a in ipairs(args) do
    local piece = a .. (i < #args and "," or tail)
    if #line > #pad and indent + #line + 1 + #piece > 100 then
      lines[#lines + 1] = line
      line = pad .. piece
    else
      line = line .. (#line > #pad and " " or "") .. piece
    end
  end
  if #args == 0 then
    line = line .. tail
  end
  lines[#lines + 1] = line
  return table.concat(lines, "\n")
end

-- "dm_fwd_d128_bf16_mask_k_bias_none_w0_causal_sm90": a C identifier named after the variant.
function M.entry_name(key)
  return "dm_" .. key:gsub("[%.%-]", "_")
end

function M.header(buf, v, family, summary)
  buf.add("// " .. v.key)
  -- the summary wraps at 100 columns, at a ", "
  local line = string.format("// dmattn %s, %s: %s", v.version, family, summary)
  while #line > 100 do
    local cut = line:sub(1, 100):match("^.*(), ")
    buf.add(line:sub(1, cut))
    line = "//   " .. line:sub(cut + 2)
  end
  buf.add(line)
  buf.add([[
typedef unsigned long long u64;
typedef long long i64;
typedef unsigned short u16;
typedef unsigned int u32;
#define kInf __int_as_float(0x7f800000)  // no math.h under NVRTC without headers
]])
end

-- Conversions for the element type of q/k/v/o. bf16 -> float is exact (a shift).
local convert = {
  f16 = [=[
__device__ __forceinline__ float elem_to_float(u16 x)
{
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x));
    return f;
}
__device__ __forceinline__ u16 float_to_elem(float f)
{
    u16 x;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(x) : "f"(f));
    return x;
}]=],
  bf16 = [=[
__device__ __forceinline__ float elem_to_float(u16 x) { return __uint_as_float((u32)x << 16); }
__device__ __forceinline__ u16 float_to_elem(float f)
{
    u16 x;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(x) : "f"(f));
    return x;
}]=],
}

-- Varlen: which tokens a block's sequence holds (the forward's and the backward's, over their
-- parameter struct `params`, which has cu_seqlens_q/k, total_q/k and max_seqlen_q/k).
local sequence_fn = [=[
// Sequence b's first query and key tokens and its counts: cu_seqlens clamped to the tensors and
// the counts to max_seqlen (dmattn.h), so no cu_seqlens makes a block read outside its tensors.
struct Sequence {
    int q_tok, k_tok, Lq, Lk;
};
__device__ __forceinline__ Sequence sequence_of(const $params &p, int b)
{
    const int *cu_q = (const int *)p.cu_seqlens_q, *cu_k = (const int *)p.cu_seqlens_k;
    Sequence s;
    s.q_tok = min(max(cu_q[b], 0), p.total_q);
    s.k_tok = min(max(cu_k[b], 0), p.total_k);
    s.Lq = min(min(max(cu_q[b + 1], s.q_tok), p.total_q) - s.q_tok, p.max_seqlen_q);
    s.Lk = min(min(max(cu_k[b + 1], s.k_tok), p.total_k) - s.k_tok, p.max_seqlen_k);
    return s;
}
]=]

function M.sequence_fn(params)
  return M.fill(sequence_fn, { params = params })
end

function M.conversions(buf, dtype)
  local text = convert[dtype]
  if not text then
    errors.unsupported("dtype " .. tostring(dtype))
  end
  buf.add(text)
end

return M
