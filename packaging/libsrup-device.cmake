# libsrup-device for device makers: the shared library (package
# libsrup-device1) and, in the dev component, its header as
# <srup/srup_device.h>, the .so link, pkg-config srup-device and the CMake
# package srup-device (find_package(srup-device), target srup::device).
# Included from packaging/CMakeLists.txt; only when device-side/ builds the
# library (target srup_device).
if(NOT TARGET srup_device)
  return()
endif()

# The library's own version (1.0.0 for SONAME 1) is the one the pkg-config
# file and the CMake package report: it is the ABI a program is built for.
get_target_property(srup_device_version srup_device VERSION)
if(NOT srup_device_version)
  set(srup_device_version ${PROJECT_VERSION})
endif()
# What a static link would need besides libsystemd (Requires): libsrup,
# the MQTT client, libcurl (update downloads), libcrypto, inih (the INI
# file), libnfc (the observation channels) and threads, as device-side/
# links them. Only plain -l flags: pkg-config reads Requires.private even
# for a shared link, and libsrup-device-dev need not pull in their -dev
# packages.
set(srup_device_libs_private "-lsrup -lpaho-mqtt3as -lcurl -lcrypto -linih -lnfc -pthread")

# Exported as srup::device; its header directory is the include root, so
# that programs write <srup/srup_device.h>.
get_target_property(srup_device_export_name srup_device EXPORT_NAME)
if(NOT srup_device_export_name)
  set_target_properties(srup_device PROPERTIES EXPORT_NAME device)
endif()
install(TARGETS srup_device EXPORT srup-deviceTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} NAMELINK_COMPONENT dev
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/device-side/srup_device.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/srup COMPONENT dev)

set(srup_device_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/srup-device)
configure_file(srup-device.pc.in ${CMAKE_CURRENT_BINARY_DIR}/srup-device.pc @ONLY)
configure_package_config_file(srup-deviceConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/srup-deviceConfig.cmake INSTALL_DESTINATION ${srup_device_cmake_dir})
# SameMajorVersion: the SONAME changes with the major version.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/srup-deviceConfigVersion.cmake
  VERSION ${srup_device_version} COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/srup-device.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/srup-deviceConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/srup-deviceConfigVersion.cmake
  DESTINATION ${srup_device_cmake_dir} COMPONENT dev)
install(EXPORT srup-deviceTargets NAMESPACE srup:: DESTINATION ${srup_device_cmake_dir}
  COMPONENT dev)
