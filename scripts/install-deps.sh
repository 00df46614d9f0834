#!/usr/bin/env bash
# install-deps.sh: installs the Debian packages dmattn builds against, where missing (SPEC §7).
# The CUDA toolkit (NVRTC, cuda.h) must already be on the machine: it does not come from Debian here.
set -euo pipefail

pkgs=(cmake gcc make pkg-config binutils python3 liblua5.4-dev check libsubunit-dev libxxhash-dev)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cuda=${CUDA_HOME:-/usr/local/cuda}
if [ ! -f "$cuda/include/nvrtc.h" ] || [ ! -f "$cuda/include/cuda.h" ]; then
    echo "install-deps: no CUDA toolkit at $cuda (need include/nvrtc.h and include/cuda.h); set CUDA_HOME" >&2
    exit 1
fi
