// Power: PSCI calls the firmware makes to QEMU's own PSCI firmware, a
// guest's CPU_ON carried to the target vCPU's physical CPU, and the waits of
// a CPU whose vCPU is off or halted.
#pragma once

#include <cstdint>

#include "armvcpu/exit_reason.hpp"
#include "gic.hpp"
#include "host_link.hpp"
#include "scheduler.hpp"
#include "sgi.hpp"
#include "sysreg.hpp"
#include "vgic_glue.hpp"
#include "vm.hpp"

namespace fw {

// PSCI SYSTEM_OFF to QEMU's PSCI (conduit SMC at EL2).
[[noreturn]] void power_off();

// PSCI CPU_ON to QEMU's PSCI, for physical CPUs; returns PSCI's status.
std::int64_t psci_cpu_on(std::uint64_t mpidr, std::uint64_t entry, std::uint64_t context);

// A vCPU start request for one physical CPU (the VM's start, or a guest's
// PSCI CPU_ON): entry and context, published by storing `pending` with
// release ordering.
struct StartRequest {
    std::uint64_t entry;
    std::uint64_t context;
    std::uint64_t pending;
};
extern StartRequest g_start[kMaxCpus];

// Publishes a start request for physical CPU `cpu` (never the caller's own)
// and kicks that CPU out of its WFI (take_start_request).
inline void post_start_request(unsigned cpu, std::uint64_t entry, std::uint64_t context) {
    StartRequest& req = g_start[cpu];
    req.entry = entry;
    req.context = context;
    __atomic_store_n(&req.pending, 1, __ATOMIC_RELEASE);
    gic::kick(cpu);  // its DSB makes the request visible before the SGI
}
inline void send_event() { asm volatile("sev" ::: "memory"); }

// Takes this CPU's kick SGI, the pending interrupt, off its CPU interface.
void consume_kick();

// Waits for a start request for physical CPU `cpu` and takes it. In WFI, not
// WFE: QEMU's TCG runs WFE as a yield, so a CPU waiting for its vCPU spun a
// host core until the guest's CPU_ON (most of a Linux boot's first seconds).
// The poster kicks this CPU; a kick that found no request (sent while the
// vCPU was off) would end every WFI at once, so it is taken off first. With
// another interrupt pending the wait yields as before, leaving it for the
// vCPU's next entry. Always inlined, and ICC_HPPIR1_EL1 (the pending INTID,
// not acknowledged) read here rather than through gic::pending(): armvcpu
// fuzz recognises a CPU whose vCPU is off by the function this wait runs in
// (main.cpp's wait_for_vcpu).
[[gnu::always_inline]] inline StartRequest& take_start_request(unsigned cpu) {
    StartRequest& req = g_start[cpu];
    while (__atomic_load_n(&req.pending, __ATOMIC_ACQUIRE) == 0) {
        if (sched::sharing()) {
            sched::idle(cpu, false);  // other vCPUs of this CPU run meanwhile
            continue;
        }
        if (gic::v2()) {  // no ICC_HPPIR1_EL1 on a GICv2: wait as before
            asm volatile("wfe");
            continue;
        }
        const std::uint32_t hppi =
            static_cast<std::uint32_t>(ARMVCPU_READ_SYSREG(icc_hppir1_el1) & 0xffffff);
        if (!armvcpu::vgic::is_valid_intid(hppi)) {
            asm volatile("wfi");
        } else if (hppi == gic::kKickSgi) {
            consume_kick();
        } else {
            asm volatile("wfe");
        }
    }
    __atomic_store_n(&req.pending, 0, __ATOMIC_RELAXED);
    return req;
}

// A guest's PSCI CPU_ON after the core has checked the state rules (the
// target is ON_PENDING, the caller's x0 set): the target vCPU's physical CPU
// starts it.
void start_guest_cpu(const Vm& vm, const armvcpu::exit::CpuUp& cpu_up);

// A halted vCPU (trapped WFI, CPU_SUSPEND) on physical CPU `cpu`: waits in
// WFI until an interrupt is pending for this CPU (a kick from another CPU
// included); the next entry then takes it as an exit. A virtual interrupt
// already pending in a list register is a wake-up event too (found by
// armvcpu fuzz: a masked, pending timer interrupt left CPU_SUSPEND asleep for
// ever). Always inlined: armvcpu fuzz recognises a halted vCPU by a WFI in
// main.cpp's run_vcpu.
[[gnu::always_inline]] inline void wait_for_wake_up(unsigned cpu) {
    while (!gic::pending() && !gic::virtual_pending() && !sgis_pending(cpu) && !vgic_dirty(cpu)) {
        if (!sched::sharing()) {
            asm volatile("wfi");
        } else if (sched::idle(cpu, true)) {
            return;  // other vCPUs of this CPU ran meanwhile; this one has an event
        }
    }
}

}  // namespace fw
