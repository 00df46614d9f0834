#!/usr/bin/env bash
# bwd_stack_check.sh: issue 16's backward stack against a base version of the templates in one
# call of the device tool, on one carried build (the tree's host code runs both: a base template
# without a new kernel attribute takes the old path). Run the GPU tests first (ctest -L gpu -R
# test_gpu_bwd in the carried build); then this prints, per step, ab_templates.sh's tables:
#   1 deterministic / default (no bias, key bias, full bias; plain and causal: the turns' order
#     goes down the key blocks where causal)   1b the turns' orders, session 25's vs the tree's
#   2 masks at 1/8, both modes
#   3 a broadcast dbias (phase 2)   4 the key split's parts, 4 (tree) vs 2 vs 1   5 first-round cold
#   compile a variant   6 compare.py --bwd (the peers side by side, L 4096)
#   7 the turns as bits (s26: session 26's counts, 8367113) at 1/8 masks, both modes
#   8 the default mode, base against the tree, 2 rounds interleaved (session 27 saw 0.95-1.0x in
#     one round with base always first; session 28 0.933x, then 1.003x once the turns moved to
#     bwddet kernels)
#   9 the deterministic mode, the tree against pass (wip-det-pass's templates: the last tile's
#     turn passed after P and dS instead of right after S^T / dP^T's issue), 2 rounds
#   10 the default mode, the tree against mem (wip-mem-pass's templates: the memory passes, phases
#     0 and 3, in one wave at a full SM of threads), 2 rounds
# Templates from before af85a03 know no bwddet key: their deterministic cases fail (dmbench
# says so in its table); compare the deterministic mode only among versions that have it.
# Round 1 of a variant's cold compile is only the machine's first when run first on a fresh
# start: `bash bench/bwd_stack_check.sh --compile` alone (session 21's second round took 0.26-0.33
# s a variant, its first 1.4-2.2 s: NVRTC's own time, "compiled in", against the wall tells
# libraries paged in from the compile itself).
# Prepared here (the machine's .git may be stale): BASE=<rev> bash bench/bwd_stack_check.sh --prep
# exports <rev>'s templates to $build/tpl-base and the tree's with M.parts = 2, 1 to
# $build/tpl-split2, tpl-split1;
# then run(command="bash bench/bwd_stack_check.sh", carry=[$build]) with DMATTN_BUILD_DIR as
# build.sh (a lean carry: the build without CMakeFiles, Testing and libdmattn.a, ~56 MB).
# STEPS="1 1b 2" (say) runs those steps alone: two device calls where one would pass 10 minutes.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bdir=$root/${DMATTN_BUILD_DIR:-build}
if [ "${1:-}" = "--prep" ]; then
    rm -rf "$bdir/tpl-base" "$bdir/tpl-s25" "$bdir/tpl-s26" "$bdir/tpl-split2" "$bdir/tpl-split1" \
        "$bdir/tpl-pass" "$bdir/tpl-mem"
    mkdir -p "$bdir/tpl-base" "$bdir/tpl-s25" "$bdir/tpl-s26" "$bdir/tpl-split2" "$bdir/tpl-split1" \
        "$bdir/tpl-pass" "$bdir/tpl-mem"
    git -C "$root" archive "${BASE:?BASE=<rev>}" templates | tar x -C "$bdir/tpl-base"
    # session 25's turns (ascending, one head's key blocks in a row: no turn_order attribute)
    git -C "$root" archive "${S25:-b68a801}" templates | tar x -C "$bdir/tpl-s25"
    # session 26's turns (a count a tile, skipped tiles waited for: measured in session 27)
    git -C "$root" archive "${S26:-8367113}" templates | tar x -C "$bdir/tpl-s26"
    # the turn passed later in the tile (step 9; a branch until measured)
    git -C "$root" archive "${PASS:-wip-det-pass}" templates | tar x -C "$bdir/tpl-pass"
    # the memory passes in one wave (step 10; a branch until measured)
    git -C "$root" archive "${MEM:-wip-mem-pass}" templates | tar x -C "$bdir/tpl-mem"
    for n in 2 1; do
        cp -r "$root/templates" "$bdir/tpl-split$n/"
        sed -i "s/^M.parts = 4/M.parts = $n/" "$bdir/tpl-split$n/templates/attn_bwd_split.lua"
        grep -q "^M.parts = $n" "$bdir/tpl-split$n/templates/attn_bwd_split.lua" ||
            { echo "tpl-split$n: M.parts not found"; exit 1; }
    done
    exit 0
fi
out=${OUT:-/tmp/dmattn-bwd-stack}
mkdir -p "$out"
. "$root/scripts/gpu-env.sh"  # $build, source-path link, cache dir, GPU and revision lines
cold_compile() {  # two rounds of five variants, an empty cache each
    echo "== 5-cold-compile (an empty cache each; two rounds)"
    for r in 1 2; do
        for V in mask-none.bias-q mask-k.bias-q mask-k.bias-none mask-none.bias-none \
            mask-none.bias-k; do
            /usr/bin/time -f "wall %e s" "$build/dmgen" build -v --cache "$(mktemp -d)" \
                "bwd.d128.bf16.$V.w0.sm90a" 2>&1 | grep -E "compiled|wall|rror" | tr '\n' ' '
            echo " [round $r, $V]"
        done
    done
}
if [ "${1:-}" = "--compile" ]; then  # alone, first thing on a fresh machine (above)
    echo "load: $(cat /proc/loadavg)"  # (session 27: every variant of round 1 slow, not the first)
    cold_compile
    exit 0
fi
want() {  # want STEP: STEP is in $STEPS (unset: every step)
    [[ " ${STEPS:-1 1b 2 3 4 5 6 7 8 9 10} " == *" $1 "* ]]
}
ab() {  # ab NAME TIMEOUT ROUNDS VERSIONS... -- DMBENCH_ARGS (NAME's number in $STEPS)
    local name=$1 t=$2 rounds=$3
    shift 3
    want "${name%%-*}" || return 0
    echo "== $name"
    OUT=$out/$name ROUNDS=$rounds timeout "$t" bash "$root/bench/ab_templates.sh" "$@" 2>&1 |
        tail -30
}
S="--L 4096 --D 128 --B 2 --H 16"
base="base=$build/tpl-base/templates tree=templates"
ab 1-deterministic 240 1 $base -- --dir bwd --mask none --bias none,k,q --causal 0,1 \
    --deterministic 0,1 $S --warmup 3 --iters 10
# the turns' orders alone: session 25's (ascending, no interleave) against the tree's
ab 1b-turn-orders 120 1 s25="$build/tpl-s25/templates" tree=templates -- --dir bwd --mask none \
    --bias none --causal 0,1 --deterministic 1 $S --warmup 3 --iters 10
ab 2-masks 100 1 $base -- --dir bwd --mask q,k --bias none --density 1,0.125 \
    --deterministic 0,1 $S --warmup 3 --iters 10
ab 3-broadcast-dbias 120 1 $base -- --dir bwd --bias q,k --Hm 1 --dbias 1 --deterministic 0,1 \
    $S --warmup 1 --iters 3
# (density 0: no key block busy, every block idle: the time against the parts' grid, 4096, 2048
# or 1024 blocks, is what a block that exits at once costs; split1 = M.parts 1, no split)
ab 4-split-parts 120 2 tree=templates split2="$build/tpl-split2/templates" \
    split1="$build/tpl-split1/templates" -- --dir bwd --mask k --bias none --density 1,0.125,0 \
    $S --warmup 3 --iters 10
ab 7-bits 120 1 s26="$build/tpl-s26/templates" tree=templates -- --dir bwd --mask none,q,k \
    --density 0.125 --deterministic 0,1 $S --warmup 3 --iters 10
ab 8-default 90 2 $base -- --dir bwd --mask none --deterministic 0 $S --warmup 3 --iters 10
ab 9-det-pass 150 2 tree=templates pass="$build/tpl-pass/templates" -- --dir bwd --mask none,q,k \
    --density 1,0.125 --deterministic 1 $S --warmup 3 --iters 10
ab 10-mem-pass 150 2 tree=templates mem="$build/tpl-mem/templates" -- --dir bwd --mask none,k \
    --bias none,k --density 1,0.125 $S --warmup 3 --iters 10
want 5 && cold_compile  # (warm by now: NVRTC paged in by steps 1-4)
want 6 || exit 0
echo "== 6-compare"
timeout 260 python3 "$root/bench/compare.py" --lib "$build/libdmattn.so" --bwd --L 4096 --rep 30 \
    --bwd-cases nobias,keybias,keybias_dbias,fullbias,fullbias_dbias \
    --json "$out/compare.json" 2>&1 | tail -16
