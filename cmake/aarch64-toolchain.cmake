# Cross toolchain for the bare-metal parts (firmware, example guests):
# Debian's aarch64-linux-gnu GCC used freestanding.
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(ARMVCPU_CROSS_PREFIX "aarch64-linux-gnu-" CACHE STRING "Cross tool prefix")
set(CMAKE_C_COMPILER ${ARMVCPU_CROSS_PREFIX}gcc)
set(CMAKE_CXX_COMPILER ${ARMVCPU_CROSS_PREFIX}g++)
set(CMAKE_ASM_COMPILER ${ARMVCPU_CROSS_PREFIX}gcc)
set(CMAKE_OBJCOPY ${ARMVCPU_CROSS_PREFIX}objcopy CACHE FILEPATH "")
# No C library to link test programs against.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
