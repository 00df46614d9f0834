#!/usr/bin/env bash
# sweep_tiles.sh: times the forward kernel under other tile shapes without rebuilding, through
# DMATTN_TEMPLATE_DIR: for each "warps,m_tiles,block_n" it writes a copy of templates/ whose
# tuning rows for head dims d_lo..d_hi use that shape, then runs compare.py (SDPA only, no Flex
# compile) on the issue-4 cases. ARCH picks the tuning row (default sm80, which sm90 falls back
# to; sm90a: the wgmma rows, where warps is 4 or 8, m_tiles 1, block_n a power of two <= 128).
# Knob rows (tuning.lua, { knob = ... }) are left alone; those narrowed by warps follow the shape.
# Run on the GPU machine:
#   bash bench/sweep_tiles.sh 72 128 "4,2,32 8,1,64"   [extra compare.py args]
#   ARCH=sm90a bash bench/sweep_tiles.sh 72 128 "8,1,128 8,1,64 4,1,128" --quick
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
d_lo=$1 d_hi=$2 shapes=$3
shift 3
for shape in $shapes; do
    IFS=, read -r warps mt bn <<<"$shape"
    dir=$(mktemp -d)
    cp "$root"/templates/*.lua "$dir"/
    # the row covering [d_lo, d_hi] for $ARCH gets the shape
    python3 - "$dir/tuning.lua" "$d_lo" "$d_hi" "$warps" "$mt" "$bn" "${ARCH:-sm80}" <<'PY' || { rm -rf "$dir"; exit 2; }
import re, sys
path, lo, hi, w, mt, bn, arch = sys.argv[1:]
text = open(path).read()
pat = re.compile(r'(\{ dir = "fwd", d_min = %s, d_max = %s, arch = "%s",(?: mma = "\w+",)? )'
                 r'warps = \d+, m_tiles = \d+,(\s+)block_n = \d+' % (lo, hi, arch))
new, n = pat.subn(r'\g<1>warps = %s, m_tiles = %s,\g<2>block_n = %s' % (w, mt, bn), text)
if n != 1:
    sys.exit("sweep_tiles: no %s tuning row d_min = %s, d_max = %s" % (arch, lo, hi))
open(path, "w").write(new)
PY
    echo "== tile shape warps=$warps m_tiles=$mt block_n=$bn (d $d_lo..$d_hi, ${ARCH:-sm80})"
    DMATTN_TEMPLATE_DIR=$dir DMATTN_CACHE_DIR=$dir/cache python3 "$root/bench/compare.py" --no-flex "$@" 2>&1 |
        sed -n '/== summary/,$p'
    rm -rf "$dir"
done
