// The EL2 translation regime: an identity map of the low 4 GiB with the
// firmware's stack guard page left out.
#pragma once

#include <cstdint>

namespace fw {

// Builds the tables and turns on the EL2 MMU and caches (CPU 0, once).
void enable_el2_mmu();

// Turns on the EL2 MMU of another CPU with the tables CPU 0 built.
void enable_el2_mmu_secondary();

inline constexpr std::uint64_t kStackStride = 0x11000;  // guard page + 64 KiB

// True when an address lies in any CPU's stack guard page.
bool in_stack_guard(std::uint64_t addr);

}  // namespace fw
