# Turns the "@@ASM_OFFSET NAME VALUE@@" markers that cpp/tools/asm_offsets.cpp
# leaves in its assembly into a header of #defines for the .S files.
# Usage: cmake -DIN=asm_offsets.s -DOUT=asm_offsets.h -P gen_asm_offsets.cmake
file(READ "${IN}" text)
string(REGEX MATCHALL "@@ASM_OFFSET [A-Z0-9_]+ #?[0-9]+@@" markers "${text}")
if(NOT markers)
  message(FATAL_ERROR "no @@ASM_OFFSET markers in ${IN}")
endif()
set(body "/* Generated from cpp/tools/asm_offsets.cpp by cmake/gen_asm_offsets.cmake. Do not edit. */\n#pragma once\n")
foreach(m IN LISTS markers)
  string(REGEX REPLACE "@@ASM_OFFSET ([A-Z0-9_]+) #?([0-9]+)@@" "#define \\1 \\2" line "${m}")
  string(APPEND body "${line}\n")
endforeach()
# Rewrite only on change so dependants do not rebuild needlessly.
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
  if(old STREQUAL body)
    return()
  endif()
endif()
file(WRITE "${OUT}" "${body}")
