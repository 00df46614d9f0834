# install.cmake: `cmake --install` lays out what a C/C++ user links against (issue 17):
#   lib/libdmattn.so (+ the liblua5.4.so.0 it runs with, beside it: RPATH $ORIGIN), lib/libdmattn.a,
#   include/dmattn.h, bin/dmgen, lib/cmake/dmattn/ (find_package(dmattn) -> dmattn::dmattn, the
#   shared library) and lib/pkgconfig/dmattn.pc. NVRTC is found where the CUDA toolkit put it
#   (RPATH), libcuda at run time (dlopen), as in the build tree.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

target_include_directories(dmattn PUBLIC
  $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/runtime> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
set_target_properties(dmattn PROPERTIES
  INSTALL_RPATH "$ORIGIN;${CUDAToolkit_LIBRARY_DIR}" PUBLIC_HEADER ${CMAKE_SOURCE_DIR}/runtime/dmattn.h)
set_target_properties(dmgen PROPERTIES INSTALL_RPATH "${CUDAToolkit_LIBRARY_DIR}")

install(TARGETS dmattn EXPORT dmattnTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  PUBLIC_HEADER DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS dmattn_static ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS dmgen RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${LUA_SHARED_REAL} DESTINATION ${CMAKE_INSTALL_LIBDIR} RENAME ${LUA_SHARED_SONAME})

install(EXPORT dmattnTargets NAMESPACE dmattn:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/dmattn)
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/dmattnConfig.cmake.in
  ${CMAKE_BINARY_DIR}/dmattnConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/dmattn)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/dmattnConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/dmattnConfig.cmake ${CMAKE_BINARY_DIR}/dmattnConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/dmattn)

configure_file(${CMAKE_SOURCE_DIR}/cmake/dmattn.pc.in ${CMAKE_BINARY_DIR}/dmattn.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/dmattn.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
