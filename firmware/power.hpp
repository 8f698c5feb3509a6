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

// Publishes a start request for physical CPU `cpu`; it sees it after the
// next SEV (send_event), so one SEV may wake several.
inline void post_start_request(unsigned cpu, std::uint64_t entry, std::uint64_t context) {
    StartRequest& req = g_start[cpu];
    req.entry = entry;
    req.context = context;
    __atomic_store_n(&req.pending, 1, __ATOMIC_RELEASE);
}
inline void send_event() { asm volatile("sev" ::: "memory"); }

// Waits in WFE for a start request for physical CPU `cpu` and takes it.
// Always inlined: armvcpu fuzz recognises a CPU whose vCPU is off by the
// function this wait runs in (main.cpp's wait_for_vcpu).
[[gnu::always_inline]] inline StartRequest& take_start_request(unsigned cpu) {
    StartRequest& req = g_start[cpu];
    while (__atomic_load_n(&req.pending, __ATOMIC_ACQUIRE) == 0) {
        if (sched::sharing()) {
            sched::idle(cpu, false);  // other vCPUs of this CPU run meanwhile
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
