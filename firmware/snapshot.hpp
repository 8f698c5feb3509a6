// VM 1's snapshot (cpp/include/armvcpu/snapshot.hpp): taken at its first
// guest entry when the host asked for it (kFeatureSnapshot), put back when
// the host answers an exit with HostAction::Restore. Guest RAM is tracked by
// stage 2: read-only after the snapshot, each page saved at its first write.
#pragma once

#include <cstdint>

#include "armvcpu/exit_reason.hpp"
#include "armvcpu/snapshot.hpp"
#include "armvcpu/vcpu.hpp"
#include "fw_hal.hpp"
#include "vm.hpp"

extern "C" {
extern armvcpu::SnapshotControl armvcpu_snapshot;
extern std::uint8_t armvcpu_snapshot_staging[];
}

namespace fw::snapshot {

using Vcpu = armvcpu::VCpu<FwHal>;

// True while VM 1 has a snapshot whose RAM is being tracked.
extern bool g_tracking;

// At the first entry of vCPU `vcpu` (bound) of `vm` on CPU `cpu`: takes the
// snapshot when the VM asked for one. A snapshot that cannot be taken is
// reported in armvcpu_snapshot (state Failed, error) and the guest runs on.
void take_if_asked(Vm& vm, Vcpu& vcpu, unsigned cpu);

// The out-of-line part of absorb_write_fault.
bool save_page(const Vm& vm, std::uint64_t ipa);

// A guest write to a page the snapshot write-protected: saves the page and
// makes it writable; the guest then retries the access. True when the exit
// was one of these (the caller enters the guest again, its PC at
// `exception_pc`, the faulting instruction). Every other exit: false.
[[gnu::always_inline]] inline bool absorb_write_fault(const Vm& vm,
                                                      const armvcpu::Syndrome& syndrome) {
    if (!g_tracking || vm.id != 1) return false;
    if (!armvcpu::is_stage2_write_permission_fault(syndrome.esr)) return false;
    return save_page(vm, armvcpu::fault_ipa(syndrome.hpfar, 0, true).ipa);
}

// Puts the VM back as the snapshot has it (RAM pages written since, the
// vCPU's registers and system registers, its virtual CPU interface, the
// emulated GIC, pending SGIs), then copies the host's load request into RAM.
// False, with armvcpu_snapshot.error set, when it cannot.
bool restore(Vm& vm, Vcpu& vcpu, unsigned cpu);

}  // namespace fw::snapshot
