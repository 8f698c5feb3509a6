// The firmware's side of a VM's emulated GIC (kFeatureVgic): guest accesses
// to its GICD/GICR frames trapped and emulated by the core's Distributor,
// and the physical interrupts behind it (list registers, the timer PPIs, the
// devices' SPIs) kept in step with what the guest programmed.
#pragma once

#include <cstdint>

#include "armvcpu/exit_reason.hpp"
#include "armvcpu/trap_frame.hpp"
#include "armvcpu/vgic.hpp"
#include "armvcpu/vgic_icv.hpp"
#include "armvcpu/vgic_lr_write.hpp"
#include "gic.hpp"
#include "host_link.hpp"
#include "passthrough.hpp"
#include "sgi.hpp"
#include "spinlock.hpp"
#include "vm.hpp"

namespace fw {

// Set when a vCPU's emulated GIC state changed in a way it must act on
// before its next entry (something became pending or deliverable, its timer
// PPI was enabled or disabled); its CPU clears it.
extern std::uint32_t g_vgic_dirty[kMaxCpus];

inline void set_vgic_dirty(unsigned cpu) {
    __atomic_store_n(&g_vgic_dirty[cpu], 1, __ATOMIC_RELEASE);
}
inline bool vgic_dirty(unsigned cpu) {
    return __atomic_load_n(&g_vgic_dirty[cpu], __ATOMIC_ACQUIRE) != 0;
}

// Each CPU's list registers as it published them at its vCPU's last exit:
// what another vCPU's GICD/GICR reads fold in (list registers are only
// readable on their own CPU).
inline constexpr unsigned kShadowLrs = 4;
extern std::uint64_t g_lr_shadow[kMaxCpus][kShadowLrs];
void publish_list_registers(unsigned cpu);

// Guest writes (ICPENDR, ISACTIVER, ICACTIVER) to interrupts another CPU's
// vCPU holds in its list registers, waiting for that CPU (index: the vCPU's
// CPU slot; under its VM's dist_lock). g_lr_writes_waiting says there are
// some without taking the lock.
extern armvcpu::vgic::LrWriteLog g_lr_writes[kMaxCpus];
extern std::uint32_t g_lr_writes_waiting[kMaxCpus];

inline bool lr_writes_waiting(unsigned cpu) {
    return __atomic_load_n(&g_lr_writes_waiting[cpu], __ATOMIC_ACQUIRE) != 0;
}

// Applies them to this CPU's list registers (vCPU `index` of `vm`, run on
// slot `cpu`) and publishes the result. Called with vm.dist_lock held.
void apply_lr_writes_locked(Vm& vm, unsigned cpu, unsigned index);

// True when the exit is an access to the VM's emulated GICD/GICR frames.
inline bool is_vgic_access(const Vm& vm, const armvcpu::ExitReason& reason) {
    using armvcpu::ExitKind;
    return (reason.kind == ExitKind::MmioRead || reason.kind == ExitKind::MmioWrite) &&
           vm.dist.claims(reason.kind == ExitKind::MmioRead ? reason.mmio_read.addr
                                                            : reason.mmio_write.addr);
}

// True when the exit is a trapped EL1 access to a Group 1 GIC CPU interface
// register (ICH_HCR_EL2.TALL1, set for every VM: see gic.cpp).
inline bool is_icc_group1_access(const armvcpu::ExitReason& reason) {
    using armvcpu::ExitKind;
    namespace vg = armvcpu::vgic;
    if (reason.kind != ExitKind::SysRegRead && reason.kind != ExitKind::SysRegWrite) return false;
    const auto key = static_cast<std::uint32_t>(
        reason.kind == ExitKind::SysRegRead ? reason.sysreg_read.addr : reason.sysreg_write.addr);
    return key == vg::kIccIar1El1.iss_key() || key == vg::kIccEoir1El1.iss_key() ||
           key == vg::kIccHppir1El1.iss_key() || key == vg::kIccBpr1El1.iss_key() ||
           key == vg::kIccIgrpen1El1.iss_key() ||
           (key & ~(7u << armvcpu::SysRegEncoding::kIssOp2Shift)) == vg::kIccAp1r0El1.iss_key();
}

// Answers it from this CPU's virtual CPU interface with the architecture's
// rules (the core's vgic_icv.hpp), after the writes other vCPUs made to
// what its list registers hold (vCPU `index` of `vm` on slot `cpu`).
// Returns false when the access is UNDEFINED (the caller takes the
// exception to the guest).
bool emulate_icc_group1(Vm& vm, unsigned cpu, unsigned index, const armvcpu::ExitReason& reason,
                        armvcpu::TrapFrame& frame);

// Answers a guest access to its GICD/GICR frames from the VM's emulated GIC
// and carries the consequences to the physical GIC and the other vCPUs.
void emulate_vgic(Vm& vm, unsigned self_cpu, const armvcpu::ExitReason& reason,
                  armvcpu::TrapFrame& frame);

// The guest's timer PPIs (the virtual timer, and the EL1 physical timer it
// also runs directly) are enabled physically only while the guest's
// redistributor would deliver them; this is what the CPU has now.
struct TimerPpis {
    static constexpr std::uint32_t kIntid[2] = {armvcpu::vgic::kVirtualTimerPpi,
                                                armvcpu::vgic::kPhysicalTimerPpi};
    bool on[2] = {true, true};  // as gic::init_cpu left them
};

// Before vCPU `index` of `vm` enters on physical CPU `cpu` (with an
// emulated GIC): brings the timer PPIs in step and puts what the guest's GIC
// would deliver into free list registers: SGIs other vCPUs sent (`sgis`),
// then interrupts pended through its registers. What is not deliverable stays
// pending; `waiting` (in and out) says something did not fit. Always inlined:
// it runs before every entry (see run_loop.hpp).
[[gnu::always_inline]] inline bool inject_from_vgic(Vm& vm, unsigned cpu, unsigned index,
                                                    std::uint64_t sgis, bool waiting,
                                                    TimerPpis& timers) {
    const bool dirty = __atomic_exchange_n(&g_vgic_dirty[cpu], 0, __ATOMIC_ACQ_REL);
    if (!dirty && sgis == 0) return waiting;
    SpinLock lock(vm.dist_lock);
    // Other vCPUs' writes to what the list registers hold come first: what
    // is injected below is the model's state after them.
    if (lr_writes_waiting(cpu)) apply_lr_writes_locked(vm, cpu, index);
    const armvcpu::vgic::Distributor& dist = vm.dist;
    for (unsigned t = 0; t < 2; ++t) {
        if (dist.deliverable(index, TimerPpis::kIntid[t]) != timers.on[t]) {
            timers.on[t] = !timers.on[t];
            gic::set_enabled(cpu, TimerPpis::kIntid[t], timers.on[t]);
        }
    }
    for (std::uint32_t intid = 0; intid < 16 && !waiting; ++intid) {
        const std::uint64_t bit = 1ull << intid;
        if ((sgis & bit) == 0 || !dist.deliverable(index, intid)) continue;
        if (!gic::inject(intid, false, dist.priority(index, intid))) {
            waiting = true;
            break;
        }
        clear_pending_sgi(cpu, bit);
    }
    std::uint32_t intid = 0;
    while (!waiting && vm.dist.take_pending(index, intid)) {
        if (!gic::inject(intid, false, dist.priority(index, intid))) {
            vm.dist.set_pending(index, intid);
            waiting = true;
        }
    }
    if (waiting) set_vgic_dirty(cpu);
    // What went into the list registers shows in other vCPUs' reads at once
    // (the exit published them before).
    publish_list_registers(cpu);
    return waiting;
}

// A physical interrupt that made vCPU `index` of `vm` exit on CPU `cpu`.
// Returns true when the firmware has dealt with it; false when it is
// deactivated and the host decides what it means. Always inlined: the
// guest's timer interrupts take this path (see run_loop.hpp).
[[gnu::always_inline]] inline bool handle_physical_interrupt(Vm& vm, unsigned cpu, unsigned index,
                                                             std::uint32_t intid) {
    namespace vg = armvcpu::vgic;
    if (!vg::is_valid_intid(intid)) return true;  // spurious
    if (intid == gic::kKickSgi || intid == vg::kMaintenancePpi) {
        // Another CPU left us work, or list registers have room again: the
        // loop's top injects what is waiting.
        gic::deactivate(intid);
        return true;
    }
    const bool vgic = (vm.features & armvcpu::kFeatureVgic) != 0;
    if (intid == vg::kVirtualTimerPpi || vm_owns_spi(vm, intid) ||
        (vgic && intid == vg::kPhysicalTimerPpi)) {
        // The guest's own timers, or its device's SPI: handed over
        // hardware-linked, so the guest's deactivation deactivates the
        // physical interrupt.
        bool deliver = true;
        std::uint8_t priority = vg::kDefaultPriority;
        if (vgic) {
            // Under the lock, after the writes other vCPUs left: one they
            // make later must find this interrupt in the list register.
            SpinLock lock(vm.dist_lock);
            if (lr_writes_waiting(cpu)) apply_lr_writes_locked(vm, cpu, index);
            deliver = vm.dist.deliverable(index, intid);
            priority = vm.dist.priority(index, intid);
            if (!deliver && intid >= 32) gic::set_enabled(cpu, intid, false);
            if (!deliver || !gic::inject(intid, true, priority)) gic::deactivate(intid);
            publish_list_registers(cpu);
            return true;
        }
        if (!deliver || !gic::inject(intid, true, priority)) gic::deactivate(intid);
        return true;
    }
    gic::deactivate(intid);
    return false;
}

}  // namespace fw
