// SGIs between the vCPUs of a VM: a guest's ICC_SGI1R_EL1 write (decoded by
// the core into SendIpi) is marked pending for the target vCPUs, whose CPUs
// are kicked out of their guests to inject it before their next entry.
#pragma once

#include <cstdint>

#include "armvcpu/exit_reason.hpp"
#include "armvcpu/vcpu.hpp"
#include "fw_hal.hpp"
#include "host_link.hpp"
#include "vm.hpp"

namespace fw {

// SGIs (bit n = INTID n) other vCPUs sent to the vCPU each physical CPU runs.
extern std::uint64_t g_pending_sgis[kMaxCpus];

inline std::uint64_t pending_sgis(unsigned cpu) {
    return __atomic_load_n(&g_pending_sgis[cpu], __ATOMIC_ACQUIRE);
}
inline bool sgis_pending(unsigned cpu) { return pending_sgis(cpu) != 0; }
inline void clear_pending_sgi(unsigned cpu, std::uint64_t bit) {
    __atomic_fetch_and(&g_pending_sgis[cpu], ~bit, __ATOMIC_ACQ_REL);
}

// Marks the SGI pending for the vCPUs it names and kicks their CPUs.
void deliver_sgi(const Vm& vm, unsigned sender, const armvcpu::exit::SendIpi& ipi);

// Without an emulated GIC every SGI is deliverable: puts the pending ones
// (`sgis`) into free list registers, lowest INTID first. Returns true when
// one did not fit (it stays pending). Always inlined: it runs before every
// entry (see run_loop.hpp).
[[gnu::always_inline]] inline bool inject_pending_sgis(armvcpu::VCpu<FwHal>& vcpu, unsigned cpu,
                                                       std::uint64_t sgis) {
    for (std::uint32_t intid = 0; intid < 16 && sgis != 0; ++intid) {
        const std::uint64_t bit = 1ull << intid;
        if ((sgis & bit) == 0) continue;
        if (vcpu.inject_interrupt(intid) != armvcpu::VCpuError::None) return true;
        clear_pending_sgi(cpu, bit);
    }
    return false;
}

}  // namespace fw
