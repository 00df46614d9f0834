-- tune.lua: looks a variant up in tuning.lua, following `like` fallbacks. A missing row is an
-- error naming the (dir, d, arch) sought, so a new head_dim or arch cannot silently get a guess.
local rows = require("tuning")

local M = {}

local function find(dir, d, arch, seen)
  for _, row in ipairs(rows) do
    if row.dir == dir and row.arch == arch then
      if row.like then
        if seen[row.like] then
          error("tuning.lua: `like` loop through " .. arch, 0)
        end
        seen[arch] = true
        return find(dir, d, row.like, seen)
      end
      if d >= row.d_min and d <= row.d_max then
        return row
      end
    end
  end
  return nil
end

function M.lookup(dir, d, arch)
  local row = find(dir, d, arch, {})
  if not row then
    error(string.format("unsupported: no tuning row for (%s, d%d, %s)", dir, d, arch), 0)
  end
  return row
end

return M
