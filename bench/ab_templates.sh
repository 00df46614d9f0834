#!/usr/bin/env bash
# ab_templates.sh: time template versions side by side in one call of the device tool, on one
# carried build. dmbench runs once per version and round (DMATTN_TEMPLATE_DIR picks the version),
# rounds interleaved so that clock and thermal drift hit every version alike; a table of TFLOP/s
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
echo "== TFLOP/s by template version (mean of ${ROUNDS:-2} rounds; ratio to ${names[0]}) =="
# CSV columns: B,H,Hkv,Lq,Lk,D,dtype,mask,bias,bias_dtype,causal,softcap,density,pattern,
# ms_median,ms_min,tflops,...,status
for i in "${!names[@]}"; do
    for f in "$out/${names[$i]}"-*.csv; do
        awk -F, -v v="$i" 'NR > 1 && $NF == "ok" {
            printf "%s Lq%s Lk%s D%s mask-%s bias-%s causal%s dens%s %s,%s,%s\n",
                   $1 "x" $2, $4, $5, $6, $8, $9, $11, $13, $14, v, $17 }' "$f"
    done
done | awk -F, -v names="${names[*]}" '
    BEGIN { n = split(names, nm, " ") }
    { key = $1; if (!(key in seen)) { seen[key] = 1; order[++k] = key }
      sum[key, $2] += $3; cnt[key, $2]++ }
    END { printf "%-62s", "case"; for (i = 1; i <= n; i++) printf " %9s", nm[i]; printf "\n"
          for (o = 1; o <= k; o++) { key = order[o]; printf "%-62s", key
              base = cnt[key, 0] ? sum[key, 0] / cnt[key, 0] : 0
              for (i = 0; i < n; i++) {
                  t = cnt[key, i] ? sum[key, i] / cnt[key, i] : 0
                  if (i == 0 || base == 0) printf " %9.1f", t
                  else printf " %5.1f %.2fx", t, t / base }
              printf "\n" } }'
exit $rc
