-- cuda_ptx.lua: one named wrapper per PTX instruction the tensor-core kernels use: cp.async,
-- ldmatrix, mma.sync m16n8k16, packing to 16-bit pairs, ex2 (sm_80+), and on sm_90a the wgmma
-- family (emit_wgmma: fence, commit, wait, and one mma_async wrapper per shape a kernel asks for).
local errors = require("errors")

local M = {}

local mma_types = { f16 = "f16", bf16 = "bf16" }

-- ldmatrix.trans and mma.sync m16n8k16: only the mma.sync engine uses them.
local mma_sync_text = [=[
__device__ __forceinline__ void ldmatrix_x4_trans(u32 addr, u32 &r0, u32 &r1, u32 &r2, u32 &r3)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr));
}

// d += a (16x16, row) * b (16x8, col), fp32 accumulate.
__device__ __forceinline__ void mma_16816(float *d, const u32 *a, u32 b0, u32 b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.$t.$t.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
]=]

-- 4 bytes global -> shared through L1 (cp.async.cg takes only 16): a word a key of a strided
-- varlen key layout (attn_fwd_mask.lua, attn_fwd_bias.lua); emitted only where those are.
M.cp_async4 = [=[
// 4 bytes global -> shared; bytes past src_bytes (0 or 4) are zero-filled.
__device__ __forceinline__ void cp_async4(u32 dst, const void *src, int src_bytes)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n"
                 :: "r"(dst), "l"(src), "r"(src_bytes) : "memory");
}]=]

-- fp32 adds into global memory by the bulk-copy engine (sm_90): one instruction adds a whole row
-- from shared memory, where a thread's `red` adds 16 bytes a request; the backward's dq sums
-- (attn_bwd_wgmma.lua).
M.bulk_red_add = [=[
// dst[0, bytes / 4) += the fp32 values at shared address src (both 16-byte aligned, bytes a
// multiple of 16), asynchronously, in this thread's next bulk group.
__device__ __forceinline__ void bulk_red_add_f32(float *dst, u32 src, u32 bytes)
{
    asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n"
                 :: "l"(dst), "r"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void bulk_commit()
{
    asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}
// This thread's bulk groups have read their shared memory: it may be written again.
__device__ __forceinline__ void bulk_wait_read()
{
    asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}
// This thread's bulk groups are complete: their writes done (attn_bwd_turns.lua's order).
__device__ __forceinline__ void bulk_wait()
{
    asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
}]=]

-- Loads by the tensor memory accelerator (sm_90) into shared memory, their completion counted by
-- an mbarrier's transaction bytes: the backward keys phase's query tiles (attn_bwd_wgmma.lua),
-- issued by one thread for the whole block instead of a copy instruction every 16 bytes a thread.
M.tma = [=[
// An mbarrier in shared memory completing a phase after `arrivals` arrivals (and the bytes they
// announced); made visible to the async proxy and, behind the caller's barrier, to the block.
__device__ __forceinline__ void mbar_init(u64 *bar, u32 arrivals)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n"
                 :: "r"(smem_u32(bar)), "r"(arrivals) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// This thread's arrival, announcing `bytes` that async copies will complete on the barrier.
__device__ __forceinline__ void mbar_arrive_expect(u64 *bar, u32 bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n"
                 :: "r"(smem_u32(bar)), "r"(bytes) : "memory");
}
// Waits until the barrier's phase of parity `parity` has completed.
__device__ __forceinline__ void mbar_wait(u64 *bar, u32 parity)
{
    u32 done = 0;
    while (!done)
        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; "
                     "selp.u32 %0, 1, 0, p; }\n"
                     : "=r"(done) : "r"(smem_u32(bar)), "r"(parity) : "memory");
}
// The box at coordinates (c0, c1, c2, c3) of the tensor map at `map` (a kernel parameter's
// address) into shared memory at dst, completing on bar.
__device__ __forceinline__ void tma_load_4d(void *dst, const void *map, int c0, int c1, int c2,
                                            int c3, u64 *bar)
{
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3, %4, %5}], [%6];\n"
                 :: "r"(smem_u32(dst)), "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(c3),
                    "r"(smem_u32(bar)) : "memory");
}
// The box at coordinates (c0, c1, c2, c3) of the tensor map at `map` written from shared memory
// at src, in this thread's next bulk group (its read: bulk_wait_read); what lies outside the
// tensor is not written.
__device__ __forceinline__ void tma_store_4d(const void *map, const void *src, int c0, int c1,
                                             int c2, int c3)
{
    asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.tile.bulk_group"
                 " [%0, {%2, %3, %4, %5}], [%1];\n"
                 :: "l"(map), "r"(smem_u32(src)), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
                 : "memory");
}
// The box at coordinates (c0, c1, c2, c3) of the tensor map at `map` added to (fp32 add) from
// shared memory at src, in this thread's next bulk group (its read: bulk_wait_read); what lies
// outside the tensor is left alone.
__device__ __forceinline__ void tma_reduce_add_4d(const void *map, const void *src, int c0, int c1,
                                                  int c2, int c3)
{
    asm volatile("cp.reduce.async.bulk.tensor.4d.global.shared::cta.add.tile.bulk_group"
                 " [%0, {%2, %3, %4, %5}], [%1];\n"
                 :: "l"(map), "r"(smem_u32(src)), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
                 : "memory");
}
// bytes (a multiple of 16) from global src to shared dst (both 16-byte aligned), completing on
// bar.
__device__ __forceinline__ void bulk_load(void *dst, const void *src, u32 bytes, u64 *bar)
{
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1], %2, [%3];\n"
                 :: "r"(smem_u32(dst)), "l"(src), "r"(bytes), "r"(smem_u32(bar)) : "memory");
}]=]

-- A barrier of some of the block's warps (the backward keys phase's warpgroups, each over its own
-- staged dq): ids 1-15, id 0 being __syncthreads'.
M.named_barrier = [=[
// Waits until kCount threads (whole warps) of the block have arrived at barrier kId (constants:
// ptxas then counts the barriers the kernel uses, not all 16).
template <int kId, int kCount> __device__ __forceinline__ void named_barrier_sync()
{
    asm volatile("bar.sync %0, %1;\n" :: "n"(kId), "n"(kCount) : "memory");
}]=]

-- with_mma_sync: also the ldmatrix.trans and mma.sync wrappers (absent from wgmma kernels).
function M.emit(buf, dtype, with_mma_sync)
  local t = mma_types[dtype]
  if not t then
    errors.unsupported("dtype " .. tostring(dtype))
  end
  buf.add([=[
__device__ __forceinline__ u32 smem_u32(const void *p)
{
    u32 a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

// 16 bytes global -> shared, bypassing L1; bytes past src_bytes (0..16) are zero-filled.
__device__ __forceinline__ void cp_async16(u32 dst, const void *src, int src_bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
                 :: "r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
// Four 8x8 tiles of 16-bit elements, lanes 8i..8i+7 giving tile i's row addresses: thread t gets
// row t/4, elements 2(t%4) and 2(t%4)+1 of each, the accumulator layout of mma.sync and wgmma
// (the operand loads of the mma.sync engine, the staged bias tile of both).
__device__ __forceinline__ void ldmatrix_x4(u32 addr, u32 &r0, u32 &r1, u32 &r2, u32 &r3)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x2(u32 addr, u32 &r0, u32 &r1)  // lanes 0-15 give rows
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r0), "=r"(r1) : "r"(addr));
}
__device__ __forceinline__ void cp_async_commit()
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" :: "n"(N) : "memory");
}
]=], { t = t })
  if with_mma_sync then
    buf.add(mma_sync_text, { t = t })
  end
  buf.add([=[// Two floats -> one register of two 16-bit elements; lo lands at the lower address.
__device__ __forceinline__ u32 pack2(float lo, float hi)
{
    u32 r;
    asm("cvt.rn.$t" "x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ float fast_rcp(float x)  // rcp(+inf) = +0
{
    float y;
    asm("rcp.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ float fast_exp2(float x)  // ex2(-inf) = +0
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}]=], { t = t })
end

local wgmma_common = [=[
// wgmma (sm_90a): a warpgroup's matrix products run asynchronously; fence before the first one
// that touches registers written since, commit them as a group, wait before reading results.
__device__ __forceinline__ void wgmma_fence()
{
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit()
{
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void wgmma_wait()
{
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" :: "n"(N) : "memory");
}
// Pins a register after wgmma_wait: the compiler may not move its reads above the wait.
__device__ __forceinline__ void reg_fence(float &x) { asm volatile("" : "+f"(x) :: "memory"); }
// Ordinary shared-memory writes (cp.async, stores) made visible to the async proxy that wgmma
// reads through; each writing thread runs it after its writes landed, before the barrier.
__device__ __forceinline__ void fence_proxy_async()
{
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}]=]

-- One wrapper per (name, n, A source, B major-ness): d (n/2 fp32 per thread) += A (64x16) x B
-- (16xn). A comes from a shared-memory descriptor, K-major (trans_a 0, the default) or M-major
-- (1), or from four registers of 16-bit pairs laid out as mma.sync's A fragment; B from a
-- descriptor, K-major (trans_b 0) or N-major (1).
-- scale_d = 0 ignores d's old contents (the first k-step of a product).
local function wgmma_op(t, op)
  local nreg = op.n // 2
  local ds, outs = {}, {}
  for i = 0, nreg - 1 do
    ds[#ds + 1] = "%" .. i
    outs[#outs + 1] = string.format('"+f"(d[%d])', i)
  end
  local params, a_text, ins, tail, scale_pos
  if op.a_regs then
    params = "const u32 *a, u64 db, int scale_d"
    a_text = string.format("{%%%d, %%%d, %%%d, %%%d}", nreg, nreg + 1, nreg + 2, nreg + 3)
    ins = '"r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d)'
    tail = string.format("%%%d, p, 1, 1, %d", nreg + 4, op.trans_b)
    scale_pos = nreg + 5
  else
    params = "u64 da, u64 db, int scale_d"
    a_text = "%" .. nreg
    ins = '"l"(da), "l"(db), "r"(scale_d)'
    tail = string.format("%%%d, p, 1, 1, %d, %d", nreg + 1, op.trans_a or 0, op.trans_b)
    scale_pos = nreg + 2
  end
  -- 100 columns: six outputs a line, twelve registers a string piece
  local lines, regs = {}, {}
  for i = 1, #outs, 6 do
    lines[#lines + 1] = "                 " .. table.concat(outs, ", ", i, math.min(i + 5, #outs))
  end
  for i = 1, #ds, 12 do
    regs[#regs + 1] = table.concat(ds, ", ", i, math.min(i + 11, #ds))
  end
  return string.format([=[
__device__ __forceinline__ void %s(float *d, %s)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %%%d, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n%dk16.f32.%s.%s\n"
                 "{%s},\n"
                 "%s, %s;\n}\n"
                 :
%s
                 : %s);
}]=], op.name, params, scale_pos, op.n, t, t, table.concat(regs, ", \"\n                 \""), a_text, tail,
    table.concat(lines, ",\n"), ins)
end

function M.emit_wgmma(buf, dtype, ops)
  local t = mma_types[dtype]
  if not t then
    errors.unsupported("dtype " .. tostring(dtype))
  end
  buf.add(wgmma_common)
  for _, op in ipairs(ops) do
    if op.n % 8 ~= 0 or op.n < 8 or op.n > 256 then
      errors.unsupported("wgmma n" .. op.n .. " (a multiple of 8 up to 256)")
    end
    buf.add(wgmma_op(t, op))
  end
end

return M
