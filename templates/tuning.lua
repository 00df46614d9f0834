-- tuning.lua: tile shapes per (direction, head_dim range, arch). Rows only, no logic: the
-- lookup lives in tune.lua. Each row says what chose it; `like` rows are written-down fallbacks.
-- block_m = 16 * m_tiles * warps query rows per block; block_n keys per tile (the skip unit).
return {
  { dir = "fwd", d_min = 8, d_max = 64, arch = "sm80", warps = 4, m_tiles = 2, block_n = 64,
    why = "FA2-like start: 128x64, 32 rows per warp; not yet swept" },
  { dir = "fwd", d_min = 72, d_max = 128, arch = "sm80", warps = 4, m_tiles = 2, block_n = 32,
    why = "FA2-like start: 128x64, 32 rows per warp; not yet swept" },
  { dir = "fwd", d_min = 136, d_max = 256, arch = "sm80", warps = 4, m_tiles = 1, block_n = 32,
    why = "64x64: acc_o of 16 rows x 256 fits the register file; not yet swept" },
  { dir = "fwd", arch = "sm86", like = "sm80" },
  { dir = "fwd", arch = "sm89", like = "sm80" },
  { dir = "fwd", arch = "sm90", like = "sm80" },
  { dir = "fwd", arch = "sm90a", like = "sm90" },
}
