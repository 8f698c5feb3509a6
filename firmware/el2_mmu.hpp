// The EL2 translation regime: an identity map of the low 4 GiB with the
// firmware's stack guard page left out.
#pragma once

#include <cstdint>

namespace fw {

// Builds the tables and turns on the EL2 MMU and caches.
void enable_el2_mmu();

// True when an address lies in the stack guard page.
bool in_stack_guard(std::uint64_t addr);

}  // namespace fw
