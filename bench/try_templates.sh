#!/usr/bin/env bash
# try_templates.sh: template versions tried on the GPU machine in one call of the device tool,
# correctness first: each version but the first (the baseline, the tree's own) runs the GPU tests
# that match TRY_TESTS with DMATTN_TEMPLATE_DIR set to it; then ab_templates.sh times the first
# version and every one whose tests all passed (none skipped), its table last. Versions are
# folders of templates, e.g. an experiment kept in git history as a commit and its revert,
# extracted here first:
#   git archive REV templates | tar x -C build/tpl-NAME
#   run(command="bash bench/try_templates.sh base=templates ring=build/tpl-ring/templates -- \
#       --dir bwd --L 4096 --D 128 --B 2 --H 16 --bias none,k", carry=["build"])
# TRY_TESTS: ctest's -R regex (default "bwd"); ROUNDS as ab_templates.sh; DMATTN_BUILD_DIR as
# scripts/build.sh. Logs go to $OUT when set.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/dmattn-try}
mkdir -p "$out"
. "$root/scripts/gpu-env.sh"  # $build, cache dir, GPU and revision lines

versions=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    versions+=("$1")
    shift
done
[ "${1:-}" = "--" ] && shift
if [ ${#versions[@]} -lt 2 ]; then
    echo "usage: try_templates.sh NAME=DIR NAME=DIR... -- DMBENCH_ARGS" >&2
    exit 2
fi

timed=("${versions[0]}")
for v in "${versions[@]:1}"; do
    name=${v%%=*} dir=${v#*=}
    [ "${dir#/}" = "$dir" ] && dir=$root/$dir
    [ -d "$dir" ] || { echo "try_templates.sh: no directory '$dir'" >&2; exit 2; }
    (cd "$build" && DMATTN_TEMPLATE_DIR=$dir ctest -L gpu -R "${TRY_TESTS:-bwd}" -j 4 \
        --timeout 280 >"$out/ctest-$name.log" 2>&1)
    rc=$?
    # a skipped test (no GPU, no such test) is not a pass: the version is not timed
    skipped=$(grep -c '\*\*\*Skipped' "$out/ctest-$name.log")
    echo "$name: $(grep -E 'tests passed' "$out/ctest-$name.log" | tail -1)," \
        "$skipped skipped, rc=$rc"
    grep -E "\*\*\*Failed|Timeout" "$out/ctest-$name.log" | head -5
    [ $rc -eq 0 ] && [ "$skipped" -eq 0 ] && grep -q "tests passed" "$out/ctest-$name.log" &&
        timed+=("$v")
done
[ ${#timed[@]} -ge 2 ] || { echo "try_templates.sh: no version passed its tests"; exit 1; }
OUT=$out/ab bash "$root/bench/ab_templates.sh" "${timed[@]}" -- "$@"
