#!/usr/bin/env bash
# consumer_test.sh BUILD_DIR SOURCE_DIR: `cmake --install` the build into a temporary prefix, then
# build tests/consumer against it twice, as users would: find_package(dmattn) (CMake) and
# pkg-config, and run both (an offline context compiling one kernel: no GPU needed).
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log"
for f in include/dmattn.h lib/libdmattn.so lib/libdmattn.a bin/dmgen \
    lib/cmake/dmattn/dmattnConfig.cmake lib/pkgconfig/dmattn.pc; do
    [ -e "$tmp/prefix/$f" ] || { echo "consumer_test: $f not installed"; exit 1; }
done
cmake -S "$src/tests/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
"$tmp/consumer/consumer" "$tmp/cache-cmake"
# pkg-config: flags from the installed .pc (its prefix is where the file lies)
flags=$(PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" pkg-config --cflags --libs dmattn)
# shellcheck disable=SC2086  # the flags are meant to split
cc -o "$tmp/consumer-pc" "$src/tests/consumer/consumer.c" $flags
"$tmp/consumer-pc" "$tmp/cache-pc"
"$tmp/prefix/bin/dmgen" --version
echo "consumer_test: find_package and pkg-config builds ran"
