#!/usr/bin/env bash
# setup.sh: the main job on a fresh machine. Installs what is missing, builds, compiles the
# default kernel variants ahead of time for sm80 and sm90a (A100, H100) into the cache, and where a GPU is
# present runs one attention call checked against the CPU reference.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
build=${DMATTN_BUILD_DIR:-build}
"$build/dmgen" build --preset default --arch sm80,sm90a
if "$build/dmgen" info | grep -qE "^devices: [1-9]"; then
    echo "setup: GPU found: one attention call checked against the CPU reference" >&2
    CK_RUN_CASE=longer_sequences_match "$build/tests/test_gpu_fwd"
else
    echo "setup: no GPU here: skipped the checked attention call (run scripts/gpu-check.sh on a GPU)" >&2
fi
