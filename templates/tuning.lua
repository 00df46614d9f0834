-- tuning.lua: tile shapes per (direction, head_dim range, arch). Rows only, no logic: the
-- lookup lives in tune.lua. Each row says what chose it; `like` rows are written-down fallbacks.
--
-- The issue-3 forward kernel (attn_fwd.lua) is the simple, correct one: one key per lane, rows
-- of a block split across warps. Its tiles are set for correctness and register budget (each
-- lane keeps rows_per_warp * ceil(d/32) accumulators), not yet measured: issue 4 sweeps them.
return {
  { dir = "fwd", d_min = 8, d_max = 128, arch = "sm80", block_m = 16, block_n = 32, warps = 4,
    why = "simple kernel: 4 rows per warp keeps <= 16 fp32 accumulators per lane" },
  { dir = "fwd", d_min = 136, d_max = 256, arch = "sm80", block_m = 8, block_n = 32, warps = 4,
    why = "simple kernel: 2 rows per warp keeps <= 16 fp32 accumulators per lane" },
  { dir = "fwd", arch = "sm86", like = "sm80" },
  { dir = "fwd", arch = "sm89", like = "sm80" },
  { dir = "fwd", arch = "sm90", like = "sm80" },
  { dir = "fwd", arch = "sm90a", like = "sm90" },
}
