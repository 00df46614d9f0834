-- tune.lua: looks a variant up in tuning.lua, following `like` fallbacks. A missing row is an
-- error naming the (dir, d, arch) sought, so a new head_dim or arch cannot silently get a guess.
-- A row may also name `causal = true|false`; it then matches only such variants, and rows are
-- tried in order, so a causal-only row stands before the general one.
local rows = require("tuning")

local M = {}

local function find(dir, d, arch, causal, seen)
  for _, row in ipairs(rows) do
    if row.dir == dir and row.arch == arch then
      if row.like then
        if seen[row.like] then
          error("tuning.lua: `like` loop through " .. arch, 0)
        end
        seen[arch] = true
        return find(dir, d, row.like, causal, seen)
      end
      if d >= row.d_min and d <= row.d_max and (row.causal == nil or row.causal == causal) then
        return row
      end
    end
  end
  return nil
end

function M.lookup(dir, d, arch, causal)
  local row = find(dir, d, arch, causal == true, {})
  if not row then
    error(string.format("unsupported: no tuning row for (%s, d%d, %s)", dir, d, arch), 0)
  end
  return row
end

return M
