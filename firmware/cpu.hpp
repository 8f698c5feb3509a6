// CPU bring-up: the EL2 set-up each physical CPU makes for itself (PerCpu),
// the CPU features guests may use, and starting the other physical CPUs.
#pragma once

#include <cstdint>

#include "armvcpu/percpu.hpp"
#include "fw_hal.hpp"
#include "host_link.hpp"

namespace fw {

extern FwHal g_hal[kMaxCpus];

// PerCpu::hardware_enable with the firmware's vectors, then the EL2 traps
// the guest keeps (CPTR_EL2, MDCR_EL2) and the vector lengths (ZCR_EL2,
// SMCR_EL2). Runs on CPU `cpu`.
armvcpu::PerCpu<FwHal>& enable_this_cpu(unsigned cpu);

// HCR_EL2 bits that let a guest use what the CPU has (pointer
// authentication, allocation tags).
std::uint64_t feature_hcr_bits();

// Starts the other physical CPUs at _secondary_start (boot.S); returns how
// many CPUs there are, this one included.
unsigned start_secondary_cpus();

}  // namespace fw
