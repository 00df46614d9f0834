# gpu-env.sh: sourced by the scripts that run on the GPU machine (gpu-check.sh, bench/*_check.sh):
# sets $build (the carried build folder, $DMATTN_BUILD_DIR as scripts/build.sh), makes the
# absolute source path its ctest files hold resolve there, sets a cache dir and prints the GPU and
# the revision that was built (the machine's copy of .git can be stale). Expects $root and $out.
build=$root/${DMATTN_BUILD_DIR:-build}
src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")
if [ -n "$src" ] && [ "$src" != "$root" ] && [ ! -e "$src" ]; then
    mkdir -p "$(dirname "$src")" && ln -s "$root" "$src"
fi
export DMATTN_CACHE_DIR=${DMATTN_CACHE_DIR:-/tmp/dmattn-cache}
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader | tee "$out/gpu.txt"
echo "revision $(cat "$build/REVISION" 2>/dev/null || echo unknown) (as built)" | tee -a "$out/gpu.txt"
