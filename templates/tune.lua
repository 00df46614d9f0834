-- tune.lua: looks a variant up in tuning.lua, following `like` fallbacks. A missing row is an
-- error naming the (dir, d, arch) sought, so a new head_dim or arch cannot silently get a guess.
-- A row may also name `causal = true|false`, `mask` or `bias` (a layout, "none" | "k" | "q", or a
-- list of them); it then matches only such variants; `decode = true` rows match only the decode
-- path's variants and the others never match them, and rows are tried in order, so a narrower
-- row stands before the general one. Knob rows ({ knob = NAME, on = ... }) are looked up after:
-- the row handed back carries each knob as a field, true or false (off where no row sets it).
local rows = require("tuning")
local errors = require("errors")

local M = {}

-- true when a row's layout field (nil, a layout, or a list of layouts) admits `layout`
local function admits(field, layout)
  if field == nil then
    return true
  end
  if type(field) == "string" then
    return field == layout
  end
  for _, l in ipairs(field) do
    if l == layout then
      return true
    end
  end
  return false
end

local function find(dir, d, arch, v, seen)
  for _, row in ipairs(rows) do
    if row.dir == dir and row.arch == arch and not row.knob then
      if row.like then
        if seen[row.like] then
          error("tuning.lua: `like` loop through " .. arch, 0)
        end
        seen[arch] = true
        return find(dir, d, row.like, v, seen)
      end
      if d >= row.d_min and d <= row.d_max and (row.causal == nil or row.causal == v.causal) and
          row.decode == v.decode and admits(row.mask, v.mask) and admits(row.bias, v.bias) then
        return row
      end
    end
  end
  return nil
end

-- layouts: { mask = "none"|"k"|"q", bias = ... }; absent ones are "none"
function M.lookup(dir, d, arch, causal, layouts)
  layouts = layouts or {}
  local v = { causal = causal == true, mask = layouts.mask or "none", bias = layouts.bias or "none",
    decode = layouts.decode == true or nil }
  local row = find(dir, d, arch, v, {})
  if not row then
    errors.unsupported(string.format("no tuning row for (%s, d%d, %s)", dir, d, arch))
  end
  local out = {}
  for k, val in pairs(row) do  -- a copy: the table's rows stay as written
    out[k] = val
  end
  out.mma = row.mma or "mma.sync"
  for _, r in ipairs(rows) do
    if r.knob and r.dir == dir and (r.causal == nil or r.causal == v.causal) and
        admits(r.mask, v.mask) and admits(r.bias, v.bias) and admits(r.mma, out.mma) and
        (r.warps == nil or r.warps == row.warps) then
      out[r.knob] = r.on
    end
  end
  return out
end

return M
