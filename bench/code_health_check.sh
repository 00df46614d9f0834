#!/usr/bin/env bash
# code_health_check.sh: issue 14's acceptance in one call of the device tool. Structure changed,
# behaviour must not have: the GPU suite on both engines with memcheck (scripts/gpu-check.sh),
# then speed side by side with the build from before (dmbench rounds interleaved) and the
# per-call host time of both builds. Carry the new build and a slim copy of the old one:
#   run(command="bash bench/code_health_check.sh", carry=["build", "build-base"])
# build-base needs dmbench, dmlatency, CMakeCache.txt (how ab_templates.sh tells a build).
# Each step has its own time limit so that a slow one still leaves the others their turn; logs
# go to one tarball in $OUT (the device tool returns at most 8 files).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
logs=/tmp/dmattn-code-health
mkdir -p "$logs"
base=${BASE_BUILD:-build-base}
cd "$root"

OUT=$logs/check GPU_CHECK_ARCHS=sm90 timeout "${CHECK_S:-330}" bash scripts/gpu-check.sh \
    >"$logs/check.txt" 2>&1
check_rc=$?
OUT=$logs/ab ROUNDS=${ROUNDS:-1} timeout "${AB_S:-100}" bash bench/ab_templates.sh \
    base="$base" new="${DMATTN_BUILD_DIR:-build}" -- --L 4096 --D 128 --mask none,k,q \
    --bias none,k,q >"$logs/ab.txt" 2>&1
ab_rc=$?
(cd "$base" && DMATTN_CACHE_DIR=/tmp/dmattn-cache-base timeout 40 ./dmlatency) \
    >"$logs/latency-base.txt" 2>&1
tar czf "${OUT:-/tmp}/code-health-logs.tgz" -C "$logs" . 2>/dev/null

echo "== gpu-check (rc=$check_rc; 124 = its time limit) =="
sed -n '/^== dmattn gpu-check/,$p' "$logs/check.txt"
[ $check_rc -eq 124 ] && tail -5 "$logs/check.txt"
echo
echo "== per_call host time: base (before) =="
grep -E "^(cold|first|per_call)" "$logs/latency-base.txt" | awk '{printf "%-28s %s\n", $1, $2}'
echo
echo "== dmbench side by side (rc=$ab_rc) =="
sed -n '/^== TFLOP/,$p' "$logs/ab.txt"
exit $((check_rc | ab_rc))
