#!/usr/bin/env bash
# test.sh: the whole test suite. Installs and builds what is missing, then runs every ctest test
# and the Python package's tests (scripts/test-python.sh).
# Without a GPU the tests labelled gpu report "skipped" (exit 77), never "passed".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
build=${DMATTN_BUILD_DIR:-build}
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" "$@"
# the Python package, built as users install it (pip install ./python), and its pytest suite
bash scripts/test-python.sh
