// System-register access for the firmware: the real side of the core's Hal.
#pragma once

#include <cstdint>

#define ARMVCPU_READ_SYSREG(reg)                           \
    ([] {                                                  \
        std::uint64_t read_value_;                         \
        asm volatile("mrs %0, " #reg : "=r"(read_value_)); \
        return read_value_;                                \
    }())

#define ARMVCPU_WRITE_SYSREG(reg, value)                                    \
    do {                                                                    \
        const std::uint64_t sysreg_value_ = (value);                        \
        asm volatile("msr " #reg ", %0" : : "r"(sysreg_value_) : "memory"); \
    } while (0)

namespace fw {

inline void isb() { asm volatile("isb" ::: "memory"); }
inline void dsb_ish() { asm volatile("dsb ish" ::: "memory"); }

}  // namespace fw
