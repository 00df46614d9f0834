-- errors.lua: the errors a template raises on purpose, as tables C reads by code (gen/emit.c),
-- never by matching message text. Anything else a template raises (a string, with the file:line
-- Lua adds) is a template bug and reaches the caller as DM_ERR_COMPILE.
local M = {}

-- A well-formed variant this template does not build (DM_ERR_UNSUPPORTED): detail says what,
-- e.g. "varlen forward is not built yet"; the caller's message adds the variant.
function M.unsupported(detail)
  error({ code = "unsupported", detail = detail }, 0)
end

return M
