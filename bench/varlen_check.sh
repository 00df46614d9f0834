#!/usr/bin/env bash
# varlen_check.sh: issue 15 (varlen + decode) on the GPU machine, in one call of the device tool:
# the varlen and combine GPU tests against the CPU reference, dmbench's varlen/decode sweeps of
# the issue's speed cases (with the copy bandwidth measured in the same process), then
# compare.py's cases (dm_fwd_varlen next to Flex and SDPA), and a short table last.
#   run(command="bash bench/varlen_check.sh", carry=["build"])
# Each step has its own time limit, so that a slow one leaves the others their turn: CTEST_S
# (default 120), BENCH_S (40, each of ten dmbench sweeps; most take under 10), COMPARE_S (180):
# about 6 minutes in practice, inside the device tool's 10; most of it is first-call JIT and Flex
# compiles. COMPARE=0 skips compare.py, COMPARE_CASES picks its cases (default varlen: all of
# them). Logs, CSV and JSON go to one tarball in $OUT (the device tool returns few files).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
logs=/tmp/dmattn-varlen-check
rm -rf "$logs" && mkdir -p "$logs"
# shellcheck disable=SC2034  # gpu-env.sh writes gpu.txt there
out=$logs
. "$root/scripts/gpu-env.sh" # $build, source-path link, cache dir, GPU and revision lines
bench="$build/dmbench"
seed=${SEED:-1}

# ---- GPU tests ---------------------------------------------------------------------------------
t0=$(date +%s)
(cd "$build" && timeout "${CTEST_S:-120}" ctest -L gpu -R "${CTEST_R:-varlen|combine}" -V -j 4 --timeout 110) \
    >"$logs/ctest.log" 2>&1
ctest_rc=$?
t1=$(date +%s)
grep -hE "^[0-9]+: .* (ok  |FAIL) rel=" "$logs/ctest.log" | sed 's/^[0-9]*: //' \
    >"$logs/gpu-cases.log"

# ---- dmbench sweeps (one process each: each measures the copy bandwidth it is compared with) ---
# The RMS length of the prefill batch: dense dm_fwd at B=16 x L_rms does the same non-causal work.
rms=$(cd "$root/bench" && python3 -c "
import compare_varlen as V
L = V.spec_lengths('16x256..4096', $seed)
print(round((sum(n * n for n in L) / len(L)) ** 0.5))" 2>/dev/null || echo 2400)
bench_rc=0
run_bench() { # NAME ARGS...: one dmbench sweep, its table in NAME.txt, CSV in NAME.csv
    local name=$1
    shift
    timeout "${BENCH_S:-40}" "$bench" "$@" --seed "$seed" --csv "$logs/$name.csv" \
        >"$logs/$name.txt" 2>"$logs/$name.err" || {
        bench_rc=1
        echo "dmbench $name failed: $(tail -2 "$logs/$name.err")"
    }
}
(
    # 1. decode batches: 8 and 1 queries x 4096 keys, mixed lengths; key mask + key bias (Hkv)
    run_bench decode --varlen --copy-bw --seqlens 64x4096 --seqlens 64x512..16384 \
        --q-per-seq 8 --q-per-seq 1 --path auto,tiled
    # the same batch through the dense entry point (the issue's 41% call) and its decode path
    run_bench dense-decode --copy-bw --B 64 --Lq 8 --Lk 4096 --H 32 --Hkv 8 --mask k --bias k \
        --Hm kv --path auto,tiled
    # 2. one long row: split-KV, the library's split count and a few forced ones
    run_bench long-row --varlen --copy-bw --seqlens 1x524288 --q-per-seq 1 --mask none \
        --num-splits 0,32,64,128
    # 3. varlen prefill, and dense dm_fwd on the same work
    run_bench prefill --varlen --seqlens 16x256..4096 --q-per-seq same --mask none --causal 0,1
    run_bench prefill-dense --B 16 --L "$rms" --H 32 --Hkv 8 --bias k --Hm kv --causal 0,1
    # the decode batches with a learned-looking key mask (random, 95% true: every tile a vote),
    # and the mixed batch's split count (0 = the library's choice) against forced ones
    run_bench decode-random --varlen --copy-bw --seqlens 64x4096 --seqlens 64x512..16384 \
        --q-per-seq 8 --mask-density 0.95 --Hm kv,1
    run_bench mixed-splits --varlen --copy-bw --seqlens 64x512..16384 --q-per-seq 8 \
        --num-splits 0,4,8,16,32
    # the varlen window (dm_window_mask_varlen, then attention on mask'): decode and prefill
    run_bench window --varlen --copy-bw --seqlens 64x4096 --q-per-seq 8 --mask none --window 0,256
    run_bench window-prefill --varlen --seqlens 16x256..4096 --q-per-seq same --mask none \
        --window 0,256
    # 4. key-based vs query-based mask and bias on the decode batch
    run_bench layouts --varlen --copy-bw --seqlens 64x4096 --q-per-seq 8 --mask k,q --bias k,q
    exit $bench_rc
) 2>&1 | tee "$logs/dmbench.log"
bench_rc=${PIPESTATUS[0]}
t2=$(date +%s)

# ---- compare.py: the same cases next to Flex and SDPA ------------------------------------------
cmp_rc=0
if [ "${COMPARE:-1}" != 0 ]; then
    (cd "$root" && PYTHONUNBUFFERED=1 timeout "${COMPARE_S:-180}" python3 bench/compare.py \
        --lib "$build/libdmattn.so" --case "${COMPARE_CASES:-varlen}" --seed "$seed" \
        --json "$logs/compare-varlen.json") >"$logs/compare.txt" 2>&1
    cmp_rc=$?
fi
t3=$(date +%s)
mkdir -p "${OUT:-/tmp}" && tar czf "${OUT:-/tmp}/varlen-check-logs.tgz" -C "$logs" . 2>/dev/null

# ---- the short table -----------------------------------------------------------------------------
echo
echo "== dmattn varlen-check (revision $(cat "$build/REVISION" 2>/dev/null || echo unknown)) =="
ctest_line=$(grep -E 'tests passed|tests failed|No tests were found' "$logs/ctest.log" | tail -1)
printf '%-26s %s\n' "gpu tests varlen|combine" "$ctest_line rc=$ctest_rc in $((t1 - t0)) s"
printf '%-26s %s\n' "cases checked" \
    "$(wc -l <"$logs/gpu-cases.log"), failing: $(grep -c FAIL "$logs/gpu-cases.log")"
grep -hE "Failed|\*\*\*|Assertion" "$logs/ctest.log" | head -8
echo
echo "-- dmbench (rc=$bench_rc, $((t2 - t1)) s): ms, GB/s, %copy (issue: decode >= 90%, row >= 80%)"
for name in decode dense-decode long-row prefill prefill-dense decode-random mixed-splits window window-prefill layouts; do
    [ -f "$logs/$name.txt" ] || continue
    echo "[$name]"
    grep -E "^# copy" "$logs/$name.txt"
    sed -n '/| *ms(med)/,$p' "$logs/$name.txt"
done
if [ "${COMPARE:-1}" != 0 ]; then
    echo
    echo "-- compare.py (rc=$cmp_rc, $((t3 - t2)) s; 124 = its time limit)"
    grep -E "^device copy" "$logs/compare.txt"
    sed -n '/^== summary/,$p' "$logs/compare.txt"
    [ $cmp_rc -eq 0 ] || tail -5 "$logs/compare.txt"
fi
exit $((ctest_rc | bench_rc | cmp_rc))
