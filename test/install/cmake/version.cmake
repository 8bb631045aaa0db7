# cmake -DCONFIG_DIR=DIR -P version.cmake: check which find_package(weft
# VERSION) requests DIR/weftConfigVersion.cmake accepts. SameMajorVersion:
# the same major version, not newer than the installed one; and not for a
# project whose pointers have another size.
if(NOT CONFIG_DIR)
  message(FATAL_ERROR "usage: cmake -DCONFIG_DIR=<lib/cmake/weft> -P version.cmake")
endif()
include("${CONFIG_DIR}/weftConfigVersion.cmake")
set(installed "${PACKAGE_VERSION}")
string(REPLACE "." ";" parts "${installed}")
list(GET parts 0 major)
list(GET parts 1 minor)
math(EXPR next_minor "${minor} + 1")
math(EXPR next_major "${major} + 1")

# expect(REQUEST TRUE|FALSE): find_package(weft REQUEST) would (not) accept it.
function(expect request expected)
  set(PACKAGE_FIND_VERSION "${request}")
  string(REGEX MATCH "^[0-9]+" PACKAGE_FIND_VERSION_MAJOR "${request}")
  set(PACKAGE_VERSION_COMPATIBLE "")
  include("${CONFIG_DIR}/weftConfigVersion.cmake")
  if(NOT "${PACKAGE_VERSION_COMPATIBLE}" STREQUAL "${expected}")
    message(FATAL_ERROR "weft ${installed}: a request for ${request} gives "
                        "compatible=${PACKAGE_VERSION_COMPATIBLE}, expected ${expected}")
  endif()
endfunction()

expect("${installed}" TRUE)
expect("${major}.${minor}" TRUE)
expect("${major}" TRUE)
expect("${major}.${next_minor}" FALSE)
expect("${next_major}.0" FALSE)
if(major GREATER 0)
  math(EXPR previous_major "${major} - 1")
  expect("${previous_major}.0" FALSE)
endif()
# A project of another pointer size (2 bytes: no real build has it).
set(CMAKE_SIZEOF_VOID_P 2)
set(PACKAGE_VERSION_UNSUITABLE FALSE)
include("${CONFIG_DIR}/weftConfigVersion.cmake")
if(NOT PACKAGE_VERSION_UNSUITABLE)
  message(FATAL_ERROR "weft ${installed}: accepted by a project with 2-byte pointers")
endif()
message(STATUS "weftConfigVersion.cmake ${installed}: SameMajorVersion requests as expected")
