#!/usr/bin/env bash
# build.sh: configures and builds everything into build/ (or $DMATTN_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${DMATTN_BUILD_DIR:-build}
cuda=${CUDA_HOME:-/usr/local/cuda}
export PATH="$cuda/bin:$PATH"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCUDAToolkit_ROOT="$cuda" >/dev/null
cmake --build "$dir" -j "$(nproc)"
# What was built, for the GPU machine's logs (its copy of .git can be stale): commit + "-dirty"
git describe --always --dirty --abbrev=12 >"$dir/REVISION" 2>/dev/null || echo unknown >"$dir/REVISION"
