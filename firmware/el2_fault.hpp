// Exceptions taken from EL2 itself (vectors.S), and the self-test that
// provokes one on purpose.
#pragma once

#include <cstdint>

extern "C" [[noreturn]] void fw_el2_fault(std::uint64_t type, std::uint64_t esr, std::uint64_t elr,
                                          std::uint64_t far, std::uint64_t sp);

namespace fw {

// Recurses until the stack runs into its guard page (kSelfTestStackOverflow):
// the fault must be reported, not run into whatever lies below the stack.
void overflow_el2_stack();

}  // namespace fw
