#!/usr/bin/env bash
# test-python.sh: the Python package (python/) built the way users install it, `pip install
# ./python` (scikit-build-core runs the project's CMake), into a virtual environment (.pyenv, or
# $DMATTN_PYENV; not under the build folder, which travels to the GPU machine), then its pytest
# suite. Tests that need torch or a GPU report "skipped". Needs
# PyPI for scikit-build-core and pytest (the GPU machine has no network: run it here).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${DMATTN_BUILD_DIR:-build}
venv=${DMATTN_PYENV:-$PWD/.pyenv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "scikit-build-core>=0.10" pytest
# no build isolation: the environment's scikit-build-core, nothing fetched again per build
"$venv/bin/pip" install -q --disable-pip-version-check --no-build-isolation ./python
# from outside the source tree, so that the installed package (with its library) is imported
(cd "$build" && "$venv/bin/python" -m pytest -q "$OLDPWD/python/tests")
