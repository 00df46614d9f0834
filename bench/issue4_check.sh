#!/usr/bin/env bash
# issue4_check.sh: issue 4's acceptance numbers in one call of the device tool, after
# scripts/gpu-check.sh has passed on the same build: compare.py over the issue's shapes (every
# case; L 4096 and 16384; key bias at D 128, 64 and 256) and the tile-skipping target (dmbench:
# 1/8 of the 128x128 tiles visible against the all-true mask). Short table last; logs in $OUT.
#   run(command="bash bench/issue4_check.sh", carry=["build"])   # DMATTN_BUILD_DIR as build.sh
# D=128 goes first in --D: Flex's D=64 number has only ever been measured as the first key-bias
# case (5.4 TFLOP/s, a broken compile); this order tells a first-case artefact from a D=64 one.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/dmattn-issue4}
mkdir -p "$out"
. "$root/scripts/gpu-env.sh"  # $build, source-path link, cache dir, GPU and revision lines

"$build/dmbench" --L 16384 --D 128 --mask k,q --bias k --density 1,0.125 --pattern blocks \
    --csv "$out/skip.csv" >"$out/skip.txt" 2>&1
skip_rc=$?
PYTHONUNBUFFERED=1 python3 "$root/bench/compare.py" --lib "$build/libdmattn.so" --D 128,64,256 \
    --json "$out/compare.json" >"$out/compare.txt" 2>&1
cmp_rc=$?

echo
echo "== tile skipping (L=16384 D=128, bias k; ms; target: 1/8 of the tiles <= 0.2x all-true) =="
# CSV columns: B,H,Hkv,Lq,Lk,D,dtype,mask,bias,bias_dtype,causal,softcap,density,pattern,ms_median
awk -F, 'NR > 1 && $NF == "ok" { ms[$8 "," $13] = $15 }
    END { for (m in ms) { split(m, a, ","); if (a[2] == 1) full[a[1]] = ms[m] }
          for (m in ms) { split(m, a, ","); if (a[2] != 1 && full[a[1]] > 0)
              printf "mask %s density %s: %.3f ms vs %.3f ms all-true = %.3fx\n",
                     a[1], a[2], ms[m], full[a[1]], ms[m] / full[a[1]] } }' "$out/skip.csv"
[ $skip_rc -eq 0 ] || { echo "dmbench failed (rc=$skip_rc):"; tail -3 "$out/skip.txt"; }
echo
sed -n '/^== summary/,$p' "$out/compare.txt" | tail -30
[ $cmp_rc -eq 0 ] || { echo "compare.py failed (rc=$cmp_rc):"; tail -5 "$out/compare.txt"; }
exit $((skip_rc | cmp_rc))
