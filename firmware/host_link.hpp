// The firmware's side of the host interface (cpp/include/armvcpu/host_interface.hpp).
#pragma once

#include <cstdint>

#include "armvcpu/esr.hpp"
#include "armvcpu/fast_rules.hpp"
#include "armvcpu/host_interface.hpp"
#include "armvcpu/pl011.hpp"

// What the host reads and writes in the image (defined in host_link.cpp,
// found by the host through the ELF's symbols).
extern "C" {
extern armvcpu::GuestConfig armvcpu_guest_config[];
extern armvcpu::FastRuleTable armvcpu_fast_rules;
extern armvcpu::HypercallClaims armvcpu_hypercall_claims;
extern armvcpu::ExitRecord armvcpu_exit_records[];
extern armvcpu::ConsoleRing armvcpu_guest_console[];
extern std::uint64_t armvcpu_pending_irq[];
extern armvcpu::ExitLog armvcpu_exit_log[];
extern std::uint8_t armvcpu_fast_path[];
}

namespace fw {

inline constexpr unsigned kMaxVcpus = 8;
inline constexpr unsigned kMaxCpus = 8;
inline constexpr unsigned kMaxVms = 4;

// Publishes an exit to the host and returns what the host asked for.
// With no host attached it returns HostAction::Default at once.
// `slot` is the exit record's index (the physical CPU); vm_id and vcpu_id
// name the vCPU as its VM sees it.
armvcpu::HostAction report_exit(unsigned slot, unsigned vm_id, unsigned vcpu_id,
                                armvcpu::ExceptionType type, const armvcpu::Syndrome& syndrome,
                                std::uint64_t exception_pc, const armvcpu::ExitReason& reason,
                                armvcpu::TrapFrame& frame);

bool host_attached();

// True when the host asked the firmware not to print on the shared PL011
// (armvcpu::kFeatureQuiet in VM 1's config): the guest owns the console.
inline bool quiet() { return (armvcpu_guest_config[0].features & armvcpu::kFeatureQuiet) != 0; }

// Starts counting EL2 instructions with PMU counter 0 (kSelfTestCountEl2).
void start_counting_el2();

// MDCR_EL2 bits the firmware itself needs on top of the host's (the count).
std::uint64_t mdcr_el2_bits();

}  // namespace fw
