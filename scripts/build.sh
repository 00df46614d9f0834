#!/usr/bin/env bash
# build.sh: configures and builds everything into build/ (or $DMATTN_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${DMATTN_BUILD_DIR:-build}
cuda=${CUDA_HOME:-/usr/local/cuda}
export PATH="$cuda/bin:$PATH"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCUDAToolkit_ROOT="$cuda" >/dev/null
cmake --build "$dir" -j "$(nproc)"
