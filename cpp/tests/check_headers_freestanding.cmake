# Compiles every header in cpp/include/armvcpu/ on its own, and all of them
# together with the core's templates instantiated, for aarch64 freestanding:
# the conditions the EL2 firmware builds the core under. Run by ctest as
#
#   cmake -DCOMPILER=<c++> -DKIND=clang|gcc -DINCLUDE_DIR=<cpp/include>
#         -DWORK_DIR=<scratch dir> [-DCROSS_PREFIX=/usr/aarch64-linux-gnu]
#         -P check_headers_freestanding.cmake
#
# KIND=gcc: COMPILER is aarch64-linux-gnu-g++, which finds its own
# freestanding headers.
# KIND=clang: COMPILER is a host clang++. With -nostdlibinc it searches only
# its builtin headers (stdint.h, stddef.h, ...), so the C++ library headers the
# core uses (<cstdint>, <cstddef>, <type_traits>, <concepts>) come from the
# GCC cross toolchain's libstdc++ (CROSS_PREFIX/include/c++/<version>, and its
# aarch64-linux-gnu/ subdirectory for bits/c++config.h). That c++config.h
# includes glibc's <features.h>, so CROSS_PREFIX/include is searched last
# (-idirafter): the builtin stdint.h still wins over glibc's.
cmake_minimum_required(VERSION 3.20)

foreach(var COMPILER KIND INCLUDE_DIR WORK_DIR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "check_headers_freestanding: -D${var}=... is required")
  endif()
endforeach()
if(NOT DEFINED CROSS_PREFIX OR "${CROSS_PREFIX}" STREQUAL "")
  set(CROSS_PREFIX /usr/aarch64-linux-gnu)
endif()

set(flags
  -std=c++20 -ffreestanding -fno-exceptions -fno-rtti -mgeneral-regs-only
  -Wall -Wextra -Werror -Wshadow -Wconversion -fsyntax-only
  "-I${INCLUDE_DIR}")

if(KIND STREQUAL "clang")
  file(GLOB cxx_dirs LIST_DIRECTORIES true "${CROSS_PREFIX}/include/c++/*")
  set(cxx_dir "")
  if(cxx_dirs)
    list(SORT cxx_dirs COMPARE NATURAL ORDER DESCENDING)
    foreach(dir IN LISTS cxx_dirs)
      if(EXISTS "${dir}/type_traits" AND EXISTS "${dir}/aarch64-linux-gnu/bits/c++config.h")
        set(cxx_dir "${dir}")
        break()
      endif()
    endforeach()
  endif()
  if(cxx_dir STREQUAL "")
    message(FATAL_ERROR
      "check_headers_freestanding: no aarch64 libstdc++ headers under ${CROSS_PREFIX}/include/c++ "
      "(install g++-aarch64-linux-gnu)")
  endif()
  list(PREPEND flags
    --target=aarch64-linux-gnu -nostdlibinc
    -isystem "${cxx_dir}" -isystem "${cxx_dir}/aarch64-linux-gnu"
    -idirafter "${CROSS_PREFIX}/include")
elseif(NOT KIND STREQUAL "gcc")
  message(FATAL_ERROR "check_headers_freestanding: KIND must be clang or gcc, not '${KIND}'")
endif()

file(GLOB headers RELATIVE "${INCLUDE_DIR}" "${INCLUDE_DIR}/armvcpu/*.hpp")
list(SORT headers)
list(LENGTH headers count)
if(count EQUAL 0)
  message(FATAL_ERROR "check_headers_freestanding: no headers in ${INCLUDE_DIR}/armvcpu")
endif()

file(MAKE_DIRECTORY "${WORK_DIR}")
string(REPLACE ";" " " shown "${flags}")
message(STATUS "${COMPILER} ${shown} <tu>")

set(failed "")
set(all_includes "")

# One translation unit per header: each must be self-contained.
foreach(header IN LISTS headers)
  get_filename_component(stem "${header}" NAME_WE)
  set(tu "${WORK_DIR}/only_${stem}.cpp")
  file(WRITE "${tu}" "#include \"${header}\"\n")
  string(APPEND all_includes "#include \"${header}\"\n")
  execute_process(COMMAND "${COMPILER}" ${flags} "${tu}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    list(APPEND failed "${header}")
    message("---- ${header} (exit ${rc}):\n${out}")
  endif()
endforeach()

# All headers at once, with the class templates instantiated so that their
# member functions are checked for the target as well.
set(tu "${WORK_DIR}/all_headers.cpp")
file(WRITE "${tu}" "${all_includes}
namespace {
struct FreestandingTableMemory {
    std::uint64_t read64(std::uint64_t) { return 0; }
    void write64(std::uint64_t, std::uint64_t) {}
    std::uint64_t alloc_table() { return 0; }
};
}  // namespace
template class armvcpu::VCpu<armvcpu::SimHal>;
template class armvcpu::PerCpu<armvcpu::SimHal>;
template class armvcpu::stage2::Tables<FreestandingTableMemory>;
")
execute_process(COMMAND "${COMPILER}" ${flags} "${tu}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  list(APPEND failed "all_headers.cpp")
  message("---- all headers together (exit ${rc}):\n${out}")
endif()

if(failed)
  list(JOIN failed ", " failed_list)
  message(FATAL_ERROR "check_headers_freestanding (${KIND}): failed: ${failed_list}")
endif()
message(STATUS "check_headers_freestanding (${KIND}): ${count} headers compile on their own and together")
