#!/usr/bin/env bash
# window_check.sh: issue 5 on the GPU machine, in one call of the device tool: the window-mask
# GPU tests against the CPU reference (bitwise), compute-sanitizer memcheck on two of them, and
# compare.py --window (torch masked_fill -> topk -> scatter vs dm_window_mask), optionally over
# template variants: SWEEP="THREADS=256 FIRST_BITS=12" times each as a copy of
# templates/ with that one setting of window_mask.lua changed.
#   run(command="bash bench/window_check.sh", carry=["build"])
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/dmattn-window-check}
mkdir -p "$out"
. "$root/scripts/gpu-env.sh"  # $build, source-path link, cache dir, GPU and revision lines

cd "$build"
ctest -L gpu -R window -V -j 4 --timeout 600 >"$out/ctest-window.log" 2>&1
rc=$?
grep -hE "^[0-9]+: .* (ok  |FAIL) |fwd window|Assertion|Failed|tests passed" "$out/ctest-window.log" |
    sed 's/^[0-9]*: //' | tail -${TAIL:-40}
for case in random_shapes_and_windows_match_the_reference_bitwise rows_longer_than_shared_memory_match; do
    CK_FORK=no CK_RUN_CASE=$case compute-sanitizer --tool memcheck --error-exitcode 99 \
        ./tests/test_gpu_window >"$out/sanitizer-$case.log" 2>&1
    r=$?
    echo "memcheck $case: rc=$r $(grep -m1 'ERROR SUMMARY' "$out/sanitizer-$case.log")"
    [ $r -eq 0 ] || rc=1
done

dirs=""
for s in ${SWEEP:-}; do
    d="/tmp/dmattn-tpl-${s//=/-}"
    mkdir -p "$d" && cp "$root"/templates/*.lua "$d"/
    sed -i "s/^local ${s%%=*} = .*/local ${s%%=*} = ${s#*=}/" "$d/window_mask.lua"
    dirs="$dirs,$d"
done
cd "$root"
[ "${COMPARE:-1}" = 0 ] || PYTHONUNBUFFERED=1 python3 bench/compare.py --lib "$build/libdmattn.so" --window \
    --template-dirs "$dirs" \
    --json "$out/compare-window.json" 2>&1 | grep -v Warning
exit $rc
