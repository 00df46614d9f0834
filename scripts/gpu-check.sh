#!/usr/bin/env bash
# gpu-check.sh: everything a kernel change needs on the GPU machine, in one call of the device
# tool: the GPU tests (ctest -L gpu) against the CPU reference, compute-sanitizer memcheck on a
# subset, the latency benchmark and, when a wheel travels (.whl), the Python package's pytest, with
# a short table last. Logs go to $OUT when set.
#
# The GPU machine has no Lua/Check/xxHash packages, so the build is made here (scripts/build.sh,
# everything linked statically) and carried:  run(command="bash scripts/gpu-check.sh", carry=["build"])
# GPU_CHECK_ARCHS: more archs to run the GPU tests on besides the device's own (default "sm90" on
# a 9.0 part: the mma.sync engine next to wgmma). GPU_CHECK_COMPARE: arguments for bench/compare.py
# (run last, its table printed), e.g. "--quick --D 128"; unset: no compare run.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/dmattn-gpu-check}
mkdir -p "$out"

. "$root/scripts/gpu-env.sh"  # $build, source-path link, cache dir, GPU and revision lines
cd "$build"

t0=$(date +%s)
ctest -L gpu -V -j 8 --timeout 900 >"$out/ctest-gpu.log" 2>&1
gpu_rc=$?
t1=$(date +%s)
grep -E "tests passed|tests failed|Failed|\*\*\*" "$out/ctest-gpu.log" | tail -20
# per-case error figures the tests print (-V keeps them in the log)
grep -hE "^[0-9]+: .* (ok  |FAIL) rel=" "$out/ctest-gpu.log" | sed 's/^[0-9]*: //' >"$out/gpu-cases.log"
echo "cases checked: $(wc -l <"$out/gpu-cases.log"), failing: $(grep -c FAIL "$out/gpu-cases.log")"
own_arch=$(grep -m1 -o "gpu tests run arch [a-z0-9]*" "$out/ctest-gpu.log" | awk '{print $5}')
extra_archs=${GPU_CHECK_ARCHS-$([ "$own_arch" = sm90a ] && echo sm90)}
extra_summary=""
for a in $extra_archs; do
    DMATTN_TEST_ARCH=$a ctest -L gpu -V -j 8 --timeout 900 >"$out/ctest-gpu-$a.log" 2>&1
    rc=$?
    gpu_rc=$((gpu_rc | rc))
    extra_summary+="$(printf '%-28s %s' "gpu tests on $a" "$(grep -E 'tests passed' "$out/ctest-gpu-$a.log" | tail -1) rc=$rc")"$'\n'
done

san_rc=0
# PROGRAM:CASE; CK_FORK=no: a forked child would inherit a CUDA driver it cannot use
for pc in test_gpu_fwd:single_query_and_single_key_match \
    test_gpu_fwd:all_false_tiles_are_skipped_without_reading_k_v_or_bias \
    test_gpu_fwd:caller_strides_are_honoured_and_nothing_is_written_outside_o \
    test_gpu_bwd:every_mask_and_bias_layout_pair_matches_with_dbias \
    test_gpu_bwd:an_all_false_tile_and_unseen_keys_contribute_exactly_zero; do
    prog=${pc%%:*} case=${pc#*:}
    CK_FORK=no CK_RUN_CASE=$case compute-sanitizer --tool memcheck --error-exitcode 99 \
        "./tests/$prog" >"$out/sanitizer-$case.log" 2>&1
    rc=$?
    echo "memcheck $case: rc=$rc $(grep -m1 'ERROR SUMMARY' "$out/sanitizer-$case.log")"
    [ $rc -eq 0 ] || san_rc=1
done

./dmlatency >"$out/latency.txt" 2>&1
lat_rc=$?
# the backward at one shape (issue 16's, L 4096): TFLOP/s counting 2.5x the forward's FLOPs
./dmbench --dir bwd --bias none,k --dbias 0,1 --L 4096 --D 128 --B 2 --H 16 \
    --csv "$out/bwd.csv" >"$out/bwd.txt" 2>&1
bwd_rc=$?

echo
echo "== dmattn gpu-check =="
printf '%-28s %s\n' "gpu tests on ${own_arch:-?}" "$(grep -E 'tests passed' "$out/ctest-gpu.log" | tail -1) in $((t1 - t0)) s"
printf '%s' "$extra_summary"
printf '%-28s %s\n' "memcheck subset" "$([ $san_rc -eq 0 ] && echo clean || echo ERRORS)"
grep -E "^(cold|first|per_call|launch_floor)" "$out/latency.txt" | awk '{printf "%-28s %s\n", $1, $2}'
[ $lat_rc -eq 0 ] || echo "dmlatency failed: $(tail -2 "$out/latency.txt")"
awk -F, 'NR > 1 && $NF == "ok" {printf "%-28s %s TFLOP/s\n", "bwd L4096 bias-" $9 " dbias " $(NF-2), $17}' \
    "$out/bwd.csv" 2>/dev/null
[ $bwd_rc -eq 0 ] || echo "dmbench --dir bwd failed: $(tail -2 "$out/bwd.txt")"
# The Python package, when its wheel travels too (built here, where PyPI is: `.pyenv/bin/pip
# wheel ./python -w .whl --no-build-isolation --no-deps` after the C library's last change;
# carry ["build", ".whl"]): installed into a scratch directory, its pytest suite run from outside
# the tree, and the host cost of a tiny call next to SDPA's.
py_rc=0
whl=$(ls "$root"/.whl/dmattn-*.whl 2>/dev/null | head -1)
if [ -n "$whl" ]; then
    site=$(mktemp -d)
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$whl" \
        >"$out/pip.log" 2>&1
    (cd /tmp && PYTHONPATH=$site timeout "${PYTEST_S:-240}" python3 -m pytest -q -rs \
        -p no:cacheprovider "$root/python/tests") >"$out/pytest.log" 2>&1
    py_rc=$?
    PYTHONPATH=$site timeout 120 python3 "$root/bench/host_overhead_torch.py" --n 2000 \
        --rounds 3 >"$out/host_overhead.txt" 2>&1
    printf '%-28s %s\n' "python pytest (rc=$py_rc)" "$(grep -E "passed|failed" "$out/pytest.log" | tail -1)"
    grep -E "^(FAILED|ERROR) " "$out/pytest.log" | head -10
    printf '%-28s %s\n' "python host cost" "$(grep -E "^ratio" "$out/host_overhead.txt")"
else
    printf '%-28s %s\n' "python package" "not run: no .whl carried"
fi
cmp_rc=0
if [ -n "${GPU_CHECK_COMPARE:-}" ]; then
    # shellcheck disable=SC2086  # the arguments are meant to split
    PYTHONUNBUFFERED=1 python3 "$root/bench/compare.py" --lib "$build/libdmattn.so" $GPU_CHECK_COMPARE \
        --json "$out/compare.json" \
        >"$out/compare.txt" 2>&1
    cmp_rc=$?
    echo
    sed -n '/^== summary/,$p' "$out/compare.txt" | tail -40
    [ $cmp_rc -eq 0 ] || { echo "compare.py failed (rc=$cmp_rc):"; tail -5 "$out/compare.txt"; }
fi
exit $((gpu_rc | san_rc | lat_rc | bwd_rc | py_rc | cmp_rc))
