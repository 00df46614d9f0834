# deps.cmake: finds the Debian packages and CUDA pieces dmattn builds against (SPEC §7).
# scripts/install-deps.sh installs them; a missing one stops here with the package to install.
find_package(Threads REQUIRED)
find_package(CUDAToolkit REQUIRED)

find_path(LUA_INCLUDE_DIR lua.h PATH_SUFFIXES lua5.4 REQUIRED)
find_library(LUA_STATIC_LIBRARY NAMES liblua5.4.a REQUIRED)
find_library(LUA_SHARED_LIBRARY NAMES lua5.4 REQUIRED)
file(REAL_PATH ${LUA_SHARED_LIBRARY} LUA_SHARED_REAL)
get_filename_component(LUA_SHARED_NAME ${LUA_SHARED_REAL} NAME)
string(REGEX REPLACE "^(liblua5\\.4\\.so\\.[0-9]+).*" "\\1" LUA_SHARED_SONAME ${LUA_SHARED_NAME})

# xxHash is used header-only (XXH_INLINE_ALL): nothing to link.
find_path(XXHASH_INCLUDE_DIR xxhash.h REQUIRED)

# Check, linked statically so test programs run on the GPU machine, which has no -dev packages.
if(DMATTN_BUILD_TESTS)
  find_path(CHECK_INCLUDE_DIR check.h REQUIRED)
  find_library(CHECK_STATIC_LIBRARY NAMES libcheck_pic.a libcheck.a REQUIRED)
  find_library(SUBUNIT_STATIC_LIBRARY NAMES libsubunit.a REQUIRED)
  set(CHECK_LIBRARIES ${CHECK_STATIC_LIBRARY} ${SUBUNIT_STATIC_LIBRARY} rt m)
endif()
