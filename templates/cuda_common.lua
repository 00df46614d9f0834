-- cuda_common.lua: pieces every kernel family emits: the text buffer, the header comment, the
-- fixed-width types and the fp16/bf16 conversions. Generated sources include no headers (NVRTC
-- sees only the text, so the cache key covers everything), hence the conversions in inline PTX.
local errors = require("errors")

local M = {}

-- A line buffer joined once. fill() replaces $NAME from a table of names; an unknown name is an
-- error so a typo cannot reach NVRTC.
function M.buffer()
  local lines = {}
  local b = {}
  function b.add(text, vars)
    if vars then
      text = text:gsub("%$([%a_][%w_]*)", function(name)
        local v = vars[name]
        if v == nil then
          error("template variable $" .. name .. " is not set", 2)
        end
        return tostring(v)
      end)
    end
    lines[#lines + 1] = text
  end
  function b.text()
    return table.concat(lines, "\n") .. "\n"
  end
  return b
end

-- "dm_fwd_d128_bf16_mask_k_bias_none_w0_causal_sm90": a C identifier named after the variant.
function M.entry_name(key)
  return "dm_" .. key:gsub("[%.%-]", "_")
end

function M.header(buf, v, family, summary)
  buf.add("// " .. v.key)
  buf.add(string.format("// dmattn %s, %s: %s", v.version, family, summary))
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

function M.conversions(buf, dtype)
  local text = convert[dtype]
  if not text then
    errors.unsupported("dtype " .. tostring(dtype))
  end
  buf.add(text)
end

return M
