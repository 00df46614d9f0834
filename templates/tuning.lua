-- tuning.lua: tile shapes per (direction, head_dim range, arch[, causal]), then the knobs.
-- Rows only, no logic: the lookup lives in tune.lua. Each row says what chose it; `like` rows are
-- written-down fallbacks. block_m = 16 * m_tiles * warps query rows per block; block_n keys per
-- tile (the skip unit); mma = "wgmma" picks the sm_90a engine (default mma.sync); min_blocks: the
-- blocks an SM __launch_bounds__ promises (ptxas fits registers to it); causal, mask
-- and bias (a layout or a list of them) narrow a row to such variants (tune.lua). Sweeps:
-- bench/sweep_tiles.sh on the lent H100, 2026-11-23, bf16 B=2 H=16 L=4096.
return {
  -- The decode path (decode = true): one block per (sequence, K/V head, key split) whose 64 rows
  -- hold the group's heads x the sequence's queries (dmattn.h: group x queries <= 64). K/V
  -- streaming decides its speed, not the MMAs.
  { dir = "fwd", decode = true, d_min = 8, d_max = 128, arch = "sm80", warps = 4, m_tiles = 1,
    block_n = 64, why = "decode: 64 packed rows; first choice, not swept yet (NOTES issue 15)" },
  { dir = "fwd", decode = true, d_min = 136, d_max = 256, arch = "sm80", warps = 4, m_tiles = 1,
    block_n = 32, why = "decode d256: 64x32 fits sm86/sm89's 99 KB, as the tiled d256 row" },
  { dir = "fwd", decode = true, d_min = 8, d_max = 128, arch = "sm90a", mma = "wgmma", warps = 4,
    m_tiles = 1, block_n = 64, min_blocks = 3, pv_overlap = false,
    why = "decode: 64 packed rows, the tiled key-layout shape; three blocks an SM (168 registers): " ..
      "issue-bound at two, 8 warps an SM (NOTES issue 15, session 13)" },
  { dir = "fwd", decode = true, d_min = 136, d_max = 256, arch = "sm90a", mma = "wgmma",
    warps = 4, m_tiles = 1, block_n = 64, why = "decode d256: O's 128 registers with 64-key tiles" },
  { dir = "fwd", d_min = 8, d_max = 64, arch = "sm80", bias = "q", warps = 4, m_tiles = 1,
    block_n = 64, why = "d64 fullbias (timed as sm90 on the H100, RESULTS session 6): " ..
      "64x64 132.2 vs 128x64 112.1, 128x32 110.1, 64x128 107.1, 128x64 x8 111.4 TFLOP/s" },
  { dir = "fwd", d_min = 8, d_max = 64, arch = "sm80", warps = 4, m_tiles = 2, block_n = 64,
    why = "d64: FA2-like 128x64, 32 rows per warp, best of 5 shapes for nobias 286.3, keybias " ..
      "233.8, causal keybias 178.4 TFLOP/s (next: 64x64 264.0 / 201.7 / 170.3)" },
  { dir = "fwd", d_min = 72, d_max = 128, arch = "sm80", causal = true, warps = 4, m_tiles = 1,
    block_n = 64,
    why = "d128 causal keybias: 64x64 184 vs 128x32 158 TFLOP/s (short diagonal rows balance)" },
  { dir = "fwd", d_min = 72, d_max = 128, arch = "sm80", warps = 4, m_tiles = 2, block_n = 32,
    why = "d128: 128x32 x4 warps best of 4 shapes: nobias 323, keybias 210, fullbias 109 TFLOP/s" },
  { dir = "fwd", d_min = 136, d_max = 256, arch = "sm80", warps = 4, m_tiles = 1, block_n = 32,
    why = "d256: 64x32 x4, the only swept shape within sm86/sm89's 99 KB of smem; fullbias " ..
      "198.6 (best of 4); 128x64 x8 is faster on the H100 (nobias 269.4 vs 256.4, keybias 242.5 " ..
      "vs 211.3) but needs 168960+ bytes, more than the A100's 166912" },
  { dir = "fwd", arch = "sm86", like = "sm80" },
  { dir = "fwd", arch = "sm89", like = "sm80" },
  { dir = "fwd", arch = "sm90", like = "sm80" },
  -- sm90a: wgmma, one warpgroup (4 warps) or two of 64 rows each. d up to 128: 128-key tiles (S
  -- and O are 64 registers each per thread); larger d: 64-key tiles so O's 128 registers fit. One
  -- warpgroup where two blocks then share an SM (their loads and math interleave).
  { dir = "fwd", d_min = 8, d_max = 64, arch = "sm90a", mma = "wgmma", warps = 4, m_tiles = 1,
    block_n = 128, why = "d64: 64x128 x4 best of 4 shapes in every case: nobias 412.5, keybias " ..
      "281.4, fullbias 184.9, causal keybias 236.3 TFLOP/s (128x128 x8: 326.5 / 244.0 / 162.8 / " ..
      "202.2)" },
  { dir = "fwd", d_min = 72, d_max = 128, arch = "sm90a", causal = false, mask = { "none", "k" },
    bias = { "none", "k" }, mma = "wgmma", warps = 4, m_tiles = 1, block_n = 128,
    why = "key layouts d128: 64x128 x4 warps, two blocks an SM (<= 115712 bytes of smem each); " ..
      "L=4096 D=128 (RESULTS, session 6): key bias 392.8-406.9 vs 360.7, none 492.8-512.7 vs " ..
      "452.2 TFLOP/s for 128x128 x8" },
  { dir = "fwd", d_min = 72, d_max = 128, arch = "sm90a", mma = "wgmma", warps = 8, m_tiles = 1,
    block_n = 128, why = "swept (RESULTS, session 5): beats 128x64, 64x128 and 64x64 for every " ..
    "mask/bias layout by 15-30% (key layouts non-causal: the 4-warp row above)" },
  { dir = "fwd", d_min = 136, d_max = 256, arch = "sm90a", mma = "wgmma", warps = 8, m_tiles = 1,
    block_n = 64, why = "d256: 128x64 x8 best of 4 shapes in every case: nobias 490.7, keybias " ..
      "397.5, fullbias 262.5, causal keybias 339.9 TFLOP/s (128x32 x8: 394.5 / 299.4 / 262.7 / " ..
      "252.8; 4 warps far behind); block_n 128 spills 628+ bytes" },
  { dir = "fwd", arch = "sm90a", like = "sm90" },
  -- The backward (attn_bwd.lua): a kernel per phase, rows (dq) and keys (dk, dv) on tiles of 64
  -- queries x 64 keys, four warps of 16 rows; beyond d128 the SIMT baseline (a warp a row).
  { dir = "bwd", d_min = 8, d_max = 128, arch = "sm80", warps = 4, block_m = 64, block_n = 64,
    why = "first tensor-core backward: 16 rows a warp keep dK and dV (2 x 64 fp32 a thread at " ..
      "d128) in registers; not swept" },
  { dir = "bwd", d_min = 136, d_max = 256, arch = "sm80", mma = "simt", warps = 4,
    why = "d256 dK and dV of 16 rows would be 256 registers a thread: the SIMT baseline until " ..
      "a tiling that fits is written" },
  { dir = "bwd", arch = "sm86", like = "sm80" },
  { dir = "bwd", arch = "sm89", like = "sm80" },
  { dir = "bwd", arch = "sm90", like = "sm80" },
  { dir = "bwd", d_min = 128, d_max = 128, arch = "sm90a", mma = "wgmma", warps = 8, block_m = 128,
    block_n = 64,
    why = "d128: two warpgroups of 64 own rows, one block an SM; the keys phase adds one tile's " ..
      "dq for 128 keys (half the fp32 reduction bytes of 64-key blocks, the bound: NOTES issue " ..
      "16, sessions 18-19): key layouts 1.10-1.17x, query layouts 1.03-1.08x (RESULTS " ..
      "session 19)" },
  { dir = "bwd", d_min = 8, d_max = 128, arch = "sm90a", mma = "wgmma", warps = 4, block_m = 64,
    block_n = 64, why = "the mma.sync row's tiles and thread layout on wgmma (one warpgroup, " ..
      "products of 64 rows issued in pairs); not swept" },
  { dir = "bwd", arch = "sm90a", like = "sm80" },

  -- Knobs: a row { knob = NAME, on = true|false } sets one switch of the code for the variants
  -- it names (causal, mask, bias, and the tile row's mma and warps narrow it, as above); every
  -- matching row applies in order, so the later, narrower one wins; a knob no row sets is off.
  -- Most were decided by ptxas: the kernels sit at the register limit, where one more live value
  -- spills (tests/test_nvrtc.c holds the sm90a ones to 0 bytes).
  { dir = "bwd", knob = "query_ring", on = true, mma = "wgmma", warps = 8,
    why = "keys phase: three query stages, dq staged in its own buffer and summed a warpgroup " ..
      "at a time: one block-wide barrier a tile, not four (the 8-warp row: one block an SM " ..
      "either way; at 4 warps its 98-170 KB would cut blocks an SM); with p_select and the " ..
      "other session-23 changes, H200 d128 L4096: no bias 368.4 -> 434.8, key bias 362.4 -> " ..
      "414.4 TFLOP/s (RESULTS issue 16 session 24)" },
  { dir = "bwd", knob = "p_select", on = true, mma = "wgmma",
    why = "p computed for every score and selected, not branched around: the keys phase's test " ..
      "a thread's two key rows, its p loop 35-47% fewer instructions (d128 no bias: 243 -> 129 " ..
      "SASS lines), the causal softcap variants 13-25 registers fewer and their spills gone; " ..
      "mma.sync's d128 sm80 causal softcap rows spill more with it (k/none 12 -> 80 bytes)" },
  { dir = "bwd", knob = "mask_ring", on = true, mma = "wgmma",
    why = "query-layout mask: the keys phase's mask tiles copied 5 tiles ahead into a ring of 6 " ..
      "(55 KB at d128), so that a skipped tile costs its vote's barrier, not a copy's round trip" },
  { dir = "fwd", knob = "fast_loads", on = true,
    why = "interior K/V tiles load without row checks: 2 SASS instructions a copy, not 6" },
  { dir = "fwd", knob = "fast_loads", on = false, mask = "q", mma = "mma.sync",
    why = "spills: fwd.d128.bf16.mask-q.bias-q.w0.sm80 0 -> 108 bytes" },
  { dir = "fwd", knob = "fast_loads", on = false, mask = "q", causal = true,
    why = "spills: fwd.d128.bf16.mask-q.bias-k.w0.causal.sm90a 4 bytes" },
  { dir = "fwd", knob = "align_declared", on = true, mma = "wgmma", warps = 4,
    why = "wgmma's 1024-byte atom alignment declared on the dynamic smem array, not reached " ..
      "by 1024 bytes of slack: two 4-warp blocks must share an SM (<= 114 KB each); declaring " ..
      "it in 8-warp variants made ptxas spill 4-16 bytes in two of them" },
  { dir = "fwd", knob = "bias_stage_f32", on = true,
    why = "staged bias rows have room for fp32 values (block_n * 4 + 16 bytes a row)" },
  { dir = "fwd", knob = "bias_stage_f32", on = false, mma = "wgmma", bias = "q",
    why = "per-query fp32 rows do not fit next to wgmma's tiles: 2 bytes a value, fp32 bias " ..
      "read from global" },
  { dir = "fwd", knob = "bias_stage_f32", on = false, mma = "wgmma", warps = 4,
    why = "two blocks share an SM: the key row too at 2 bytes a value" },
  { dir = "fwd", knob = "scan_batched", on = true,
    why = "per-query skip scan: interior rounds issue all their loads before using any, one " ..
      "memory round trip, not one per chunk" },
  { dir = "fwd", knob = "scan_batched", on = false, causal = true,
    why = "spills: fwd.d128.bf16.mask-q.bias-q.w0.causal.sm90a 12 bytes" },
  { dir = "fwd", knob = "vote_on_barrier", on = true,
    why = "per-query mask: the all-true check of the staged candidate tile rides on the loop's " ..
      "first barrier (__syncthreads_and), no barrier of its own" },
  { dir = "fwd", knob = "vote_on_barrier", on = false, causal = true,
    why = "spills: the reads before the barrier, 8 bytes in fwd.d128.bf16.mask-q.bias-q.w0." ..
      "causal.sm90a" },
  { dir = "bwd", knob = "dq_turns", on = true, mma = "wgmma",
    why = "deterministic mode (bwddet kernels only): dq summed by the keys phase in key-block " ..
      "order (bits a query tile, attn_bwd_turns.lua), five products a tile pair, not the rows " ..
      "phase's seven (the deterministic/default time was 1.33x no bias, 1.41x key bias on the " ..
      "H200, RESULTS issue 16 session 24)" },
  { dir = "bwd", knob = "key_split", on = true, mma = "wgmma", mask = "k",
    why = "key-layout mask: a busy key block's walk split across up to 4 blocks where the busy " ..
      "ones would leave a last wave mostly idle (attn_bwd_split.lua; 138 busy blocks on 132 " ..
      "SMs: two walks of time for 1.05 of work, NOTES issue 16 session 23 item 8); H200 d128 " ..
      "L4096, 1/8 of the key blocks visible: 0.297x -> 0.273x of the dense time, the dense " ..
      "case unchanged (RESULTS issue 16 session 24)" },
}
