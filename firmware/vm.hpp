// The VM model: a VM's configuration, its stage 2, and the physical CPUs its
// vCPUs are pinned to.
#pragma once

#include <cstdint>

#include "armvcpu/exit_reason.hpp"
#include "armvcpu/host_interface.hpp"
#include "armvcpu/pl011.hpp"
#include "armvcpu/psci.hpp"
#include "armvcpu/vgic_dist.hpp"
#include "host_link.hpp"

namespace fw {

// The guest's MPIDR for vCPU i: Aff0 = i, with the RES1 bit 31.
constexpr std::uint64_t guest_mpidr(unsigned i) { return (1ull << 31) | i; }

// A VM: its configuration, stage 2, and vCPUs pinned to physical CPUs
// first_cpu .. first_cpu + num_vcpus - 1 (vCPU i on CPU first_cpu + i).
struct Vm {
    unsigned id;  // also its VMID
    armvcpu::GuestConfig cfg;
    armvcpu::UartMode uart_mode;
    std::uint64_t vttbr;
    std::uint64_t vtcr;
    unsigned first_cpu;
    unsigned num_vcpus;
    armvcpu::psci::VmPowerState power;
    std::uint32_t stopped;   // atomic
    std::uint32_t features;  // GuestConfig::features
    // The emulated GICD/GICR (with kFeatureVgic), under dist_lock.
    armvcpu::vgic::Distributor dist;
    std::uint32_t dist_lock;
};

extern Vm g_vms[kMaxVms];
extern unsigned g_num_vms;
extern Vm* g_cpu_vm[kMaxCpus];  // the VM whose vCPU each physical CPU runs

// Creates the VMs the host configured (armvcpu_guest_config: VM 1 always,
// VM k > 1 when it has a size), each with its own stage 2 and VMID, on
// consecutive vCPU slots (slot s runs on CPU s unless the scheduler
// time-shares CPUs); `cpus` is how many CPUs the machine has (for the
// layout line). Powers off when VM 1 cannot run.
void setup_vms(unsigned cpus);

// Ends a VM: its other CPUs are kicked out of the guest and go back to
// waiting; QEMU powers off when the last VM has ended.
void stop_vm(Vm& vm, const armvcpu::ExitReason& reason);

inline bool vm_stopped(const Vm& vm) { return __atomic_load_n(&vm.stopped, __ATOMIC_ACQUIRE) != 0; }

}  // namespace fw
