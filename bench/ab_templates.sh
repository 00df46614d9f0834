#!/usr/bin/env bash
# ab_templates.sh: time template versions side by side in one call of the device tool, on one
# carried build. dmbench runs once per version and round (DMATTN_TEMPLATE_DIR picks the version),
# rounds interleaved so that clock and thermal drift hit every version alike; a table of TFLOP/s
# (or, for a --copy-bw sweep, % of copy bandwidth; dense or --varlen)
# per case (mean over rounds) and the ratio of each version to the first comes last.
#   run(command="bash bench/ab_templates.sh base=tpl-base/templates new=templates -- --L 4096 \
#       --D 128 --mask none,q --bias q", carry=["build"])   # DMATTN_BUILD_DIR as build.sh
# A version is NAME=DIR (DIR relative to the repository root, or absolute): a templates folder
# (run on the carried build) or a build folder (its own dmbench with its embedded templates, to
# set two builds side by side: carry both). ROUNDS (default 2).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/dmattn-ab}
mkdir -p "$out"
. "$root/scripts/gpu-env.sh"  # $build, cache dir, GPU and revision lines

names=() dirs=() benches=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    names+=("${1%%=*}")
    d=${1#*=}
    [ "${d#/}" = "$d" ] && d=$root/$d
    [ -d "$d" ] || { echo "ab_templates.sh: no directory '$d'" >&2; exit 2; }
    if [ -f "$d/CMakeCache.txt" ]; then  # a build: its own dmbench, its embedded templates
        dirs+=("")
        benches+=("$d/dmbench")
    else
        dirs+=("$d")
        benches+=("$build/dmbench")
    fi
    shift
done
[ "${1:-}" = "--" ] && shift
[ ${#names[@]} -ge 1 ] || { echo "usage: ab_templates.sh NAME=DIR... -- DMBENCH_ARGS" >&2; exit 2; }

rc=0
for r in $(seq 1 "${ROUNDS:-2}"); do
    for i in "${!names[@]}"; do
        DMATTN_TEMPLATE_DIR=${dirs[$i]} "${benches[$i]}" "$@" --csv "$out/${names[$i]}-$r.csv" \
            >"$out/${names[$i]}-$r.txt" 2>&1 || { rc=1; tail -2 "$out/${names[$i]}-$r.txt"; }
    done
done

echo
# One row per case (the CSV's shape columns), the mean of the rounds per version and its ratio to
# the first: TFLOP/s, or for a --copy-bw sweep the % of copy bandwidth (dense and --varlen CSVs).
python3 - "$out" "${names[@]}" <<'PY'
import csv, glob, sys
out, names = sys.argv[1], sys.argv[2:]
measures = {"ms_median", "ms_min", "tflops", "gbps", "iters", "sets", "gflop", "gbytes",
            "copy_gbps", "pct_copy", "status"}
rows, order, metric = {}, [], None
for i, name in enumerate(names):
    for f in sorted(glob.glob("%s/%s-*.csv" % (out, name))):
        for r in csv.DictReader(open(f)):
            if r.get("status") != "ok":
                continue
            metric = metric or ("pct_copy" if r.get("pct_copy") else "tflops")
            key = " ".join("%s=%s" % (k, v) for k, v in r.items()
                           if k not in measures and v not in ("", "0", "none"))
            if key not in rows:
                rows[key] = {}
                order.append(key)
            rows[key].setdefault(i, []).append(float(r[metric]))
print("== %s by version (mean of the rounds; ratio to %s) ==" % (metric, names[0]))
for key in order:
    vals = [sum(v) / len(v) if v else 0 for v in (rows[key].get(i, []) for i in range(len(names)))]
    cells = ["%s %.1f" % (names[0], vals[0])] + [
        "%s %.1f %.3fx" % (n, v, v / vals[0] if vals[0] else 0) for n, v in zip(names[1:], vals[1:])]
    print(key)
    print("    " + "   ".join(cells))
PY
exit $rc
