-- tuning.lua: tile shapes per (direction, head_dim range, arch[, causal]). Rows only, no logic:
-- the lookup lives in tune.lua. Each row says what chose it; `like` rows are written-down
-- fallbacks. block_m = 16 * m_tiles * warps query rows per block; block_n keys per tile (the
-- skip unit); mma = "wgmma" picks the sm_90a engine (default mma.sync); causal, mask and bias
-- (a layout or a list of them) narrow a row to such variants (tune.lua). Sweeps:
-- bench/sweep_tiles.sh on the lent H100, 2026-11-23, bf16 B=2 H=16 L=4096.
return {
  { dir = "fwd", d_min = 8, d_max = 64, arch = "sm80", warps = 4, m_tiles = 2, block_n = 64,
    why = "FA2-like 128x64, 32 rows per warp; not yet swept (d64 keybias 181 TFLOP/s)" },
  { dir = "fwd", d_min = 72, d_max = 128, arch = "sm80", causal = true, warps = 4, m_tiles = 1,
    block_n = 64,
    why = "d128 causal keybias: 64x64 184 vs 128x32 158 TFLOP/s (short diagonal rows balance)" },
  { dir = "fwd", d_min = 72, d_max = 128, arch = "sm80", warps = 4, m_tiles = 2, block_n = 32,
    why = "d128: 128x32 x4 warps best of 4 shapes: nobias 323, keybias 210, fullbias 109 TFLOP/s" },
  { dir = "fwd", d_min = 136, d_max = 256, arch = "sm80", warps = 4, m_tiles = 1, block_n = 32,
    why = "64x32: acc_o of 16 rows x 256 fits without spills; not yet swept (d256 keybias 198)" },
  { dir = "fwd", arch = "sm86", like = "sm80" },
  { dir = "fwd", arch = "sm89", like = "sm80" },
  { dir = "fwd", arch = "sm90", like = "sm80" },
  -- sm90a: wgmma, two warpgroups of 64 rows. d up to 128: 128-key tiles (S and O are 64
  -- registers each per thread); larger d: 64-key tiles so O's 128 registers fit.
  { dir = "fwd", d_min = 8, d_max = 64, arch = "sm90a", mma = "wgmma", warps = 8, m_tiles = 1,
    block_n = 128, why = "as d128; not yet swept (legal wgmma shapes: warps 4|8, block_n 64|128)" },
  { dir = "fwd", d_min = 72, d_max = 128, arch = "sm90a", causal = false, mask = { "none", "k" },
    bias = { "none", "k" }, mma = "wgmma", warps = 4, m_tiles = 1, block_n = 128,
    why = "key layouts d128: 64x128 x4 warps, two blocks an SM (<= 115712 bytes of smem each); " ..
      "L=4096 D=128 (RESULTS, session 6): key bias 392.8-406.9 vs 360.7, none 492.8-512.7 vs " ..
      "452.2 TFLOP/s for 128x128 x8" },
  { dir = "fwd", d_min = 72, d_max = 128, arch = "sm90a", mma = "wgmma", warps = 8, m_tiles = 1,
    block_n = 128, why = "swept (RESULTS, session 5): beats 128x64, 64x128 and 64x64 for every " ..
    "mask/bias layout by 15-30% (key layouts non-causal: the 4-warp row above)" },
  { dir = "fwd", d_min = 136, d_max = 256, arch = "sm90a", mma = "wgmma", warps = 8, m_tiles = 1,
    block_n = 64, why = "FA3 uses 128x80 for d256; 64 keeps whole 16-key steps; not yet swept " ..
    "(legal: warps 4|8, block_n 32|64; 128 spills 628+ bytes)" },
  { dir = "fwd", arch = "sm90a", like = "sm90" },
}
