#!/usr/bin/env bash
# profile.sh: what costs no reasoning on the GPU machine: the SASS instruction mix of compiled
# variants (from a dmgen-built cache) and Nsight Compute's scheduler and warp-state sections for
# one dmbench case per mask/bias layout pair. Run there after scripts/build.sh:
#   run(command="bash bench/profile.sh", carry=["build"])
# ARCH (default sm90a) picks the engine; DMATTN_TEMPLATE_DIR the templates profiled; SOURCE=1
# adds per-instruction counts (below); DMATTN_BUILD_DIR the carried build folder; PAIRS the
# mask,bias layouts; the full warp-state section (stall reasons) is printed for each. DIR=bwd
# profiles the backward instead: the three launches of one timed dm_bwd (phases 0, 1 and 3 in the
# default mode; the keys phase, 1, is the long one), and its variants' SASS. EXTRA: more dmbench
# arguments for the profiled cases (say "--density 0": the key split's fixed costs, phase by phase).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/${DMATTN_BUILD_DIR:-build}
arch=${ARCH:-sm90a}
out=${OUT:-/tmp/dmattn-profile}
mkdir -p "$out"
cache=$(mktemp -d)
pairs=${PAIRS:-"none,none none,k k,none k,k q,q"}
dir=${DIR:-fwd}
warmup=2  # dmbench's untimed runs, after its one untimed first call
if [ "$dir" = bwd ]; then  # skip the untimed calls' launches (3 a dm_bwd), then one call's three
    ncu_pick=(--kernel-name regex:dm_bwd --launch-skip $(((1 + warmup) * 3)) --launch-count 3)
else
    ncu_pick=(--launch-skip $((1 + warmup)) --launch-count 1)
fi
for pair in $pairs; do
    IFS=, read -r m b <<<"$pair"
    v="$dir.d128.bf16.mask-$m.bias-$b.w0.$arch"
    "$build/dmgen" build --cache "$cache" "$v" >/dev/null 2>&1
done
for f in "$cache"/*.cubin; do
    # the entry holds a header and the key text before the ELF image: cut at the ELF magic
    off=$(grep -abo $'\x7fELF' "$f" | head -1 | cut -d: -f1)
    tail -c +$((off + 1)) "$f" >"$f.elf"
    name=$(strings "$f" | grep -m1 "^$dir\\.")
    cuobjdump -sass "$f.elf" >"$out/$name.sass" 2>/dev/null
    s="$out/$name.sass"
    printf '%-44s instr %5d HMMA %4d LDSM %3d MUFU %3d BAR %2d LDG %3d LDS %3d SHFL %3d BRA %3d LDL %d\n' "$name" \
        "$(grep -cE '^\s+/\*[0-9a-f]{4}\*/' "$s")" "$(grep -cE 'HMMA|HGMMA' "$s")" "$(grep -c LDSM "$s")" \
        "$(grep -c MUFU "$s")" "$(grep -c 'BAR' "$s")" "$(grep -c 'LDG' "$s")" \
        "$(grep -cE 'LDS(\.| )' "$s")" "$(grep -c SHFL "$s")" "$(grep -c 'BRA' "$s")" "$(grep -c 'LDL' "$s")"
done
# warp stall reasons, in warps stalled per issued instruction
reasons="barrier long_scoreboard short_scoreboard wait math_pipe_throttle mio_throttle lg_throttle dispatch_stall no_instruction not_selected selected membar branch_resolving sleeping"
stall_metrics=$(for r in $reasons; do printf 'smsp__average_warps_issue_stalled_%s_per_issue_active.ratio,' "$r"; done)
stall_metrics=${stall_metrics%,}
for pair in $pairs; do
    IFS=, read -r m b <<<"$pair"
    ncu --clock-control none "${ncu_pick[@]}" --section SchedulerStats --section WarpStateStats \
        --section Occupancy --section ComputeWorkloadAnalysis --section SpeedOfLight \
        --section MemoryWorkloadAnalysis --metrics "$stall_metrics" \
        "$build/dmbench" --dir "$dir" --L 4096 --D 128 --mask "$m" --bias "$b" --warmup "$warmup" \
        --iters 2 ${EXTRA:-} \
        >"$out/ncu-$m-$b.txt" 2>&1
    echo "== ncu mask-$m bias-$b"
    grep -E "L2 Cache Throughput|Compute \(SM\) Throughput|Issue Slots Busy|Issued Warp Per Scheduler|No Eligible|Active Warps Per Scheduler|Eligible Warps|Warp Cycles Per Issued|Achieved Occupancy|Registers Per Thread|Block Limit|SM Busy|Executed Ipc Active|DRAM Throughput|Memory Throughput|L2 Hit Rate|L1/TEX Hit Rate|Mem Busy|Max Bandwidth|Duration" \
        "$out/ncu-$m-$b.txt" | sed 's/^ */  /'
    grep -E "issue_stalled" "$out/ncu-$m-$b.txt" | awk '{printf "  %s %s\n", $1, $NF}' |
        sed 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//' | sort -k2 -g -r | head -8
done
# SOURCE=1: per-instruction counts (executed, stall samples) for bench/sass_counts.py, gzipped;
# at L=4096 D=128 the grid is 1024 blocks x 8 warps, each walking 32 key tiles:
#   python3 bench/sass_counts.py src-q-q.csv.gz --warps 8192 --tiles 32
if [ "${SOURCE:-0}" = 1 ]; then
    for pair in $pairs; do
        IFS=, read -r m b <<<"$pair"
        ncu --clock-control none --launch-skip 3 --launch-count 1 --section SourceCounters \
            --page source --print-source sass --csv "$build/dmbench" --L 4096 --D 128 --mask "$m" \
            --bias "$b" --warmup 2 --iters 2 >"$out/src-$m-$b.csv" 2>"$out/src-$m-$b.err"
        gzip -f "$out/src-$m-$b.csv"
        python3 "$root/bench/sass_counts.py" "$out/src-$m-$b.csv.gz" --warps 8192 --tiles 32 --top 12
    done
fi
rm -rf "$cache"
