// The firmware's side of a VM's vGICv2 (a GICv2 machine, kFeatureVgic): the
// guest's GICD accesses trapped and emulated by the core's vgic2
// Distributor, its CPU interface the hardware GICV that stage 2 maps at its
// GICC address, and interrupts carried in through GICH_LR list registers.
// The GICv2 counterpart of vgic_glue.hpp; run_loop.hpp and vm.cpp choose
// between them by gic::v2().
#pragma once

#include <cstdint>

#include "armvcpu/exit_reason.hpp"
#include "armvcpu/stage2.hpp"
#include "armvcpu/trap_frame.hpp"
#include "armvcpu/vgic_v2.hpp"
#include "gic.hpp"
#include "gic_v2.hpp"
#include "spinlock.hpp"
#include "vgic_glue.hpp"
#include "vm.hpp"

namespace fw {

// Each VM's emulated GICv2 distributor (index: VM id - 1), under its lock.
struct Vgic2 {
    armvcpu::vgic2::Distributor dist;
    std::uint32_t lock;
};
extern Vgic2 g_vgic2[kMaxVms];

inline Vgic2& vgic2_of(const Vm& vm) { return g_vgic2[vm.id - 1]; }

// Every VM on a GICv2 machine has the hardware virtual CPU interface (GICV)
// where the guest's device tree puts its GICC, emulated GIC or not.
template <typename Tables>
armvcpu::stage2::MapError map_guest_gicc(Tables& s2) {
    constexpr armvcpu::stage2::Attributes kDevice{armvcpu::stage2::Access::ReadWrite,
                                                  armvcpu::stage2::MemAttr::DeviceNGnRE, true};
    return s2.map(armvcpu::vgic2::kGiccBase, armvcpu::vgic2::kGicvBase,
                  armvcpu::vgic2::kGicvMapSize, kDevice);
}

// A VM's vGICv2 at reset, and its devices' SPIs configured (disabled).
void reset_vgic2(Vm& vm);

inline bool is_vgic2_access(const Vm& vm, const armvcpu::ExitReason& reason) {
    using armvcpu::ExitKind;
    return (reason.kind == ExitKind::MmioRead || reason.kind == ExitKind::MmioWrite) &&
           vgic2_of(vm).dist.claims(reason.kind == ExitKind::MmioRead ? reason.mmio_read.addr
                                                                      : reason.mmio_write.addr);
}

// Answers vCPU `index`'s access to its GICD and carries the consequences to
// the physical GIC and the other vCPUs (SGIs they were sent, SPIs whose
// enables or targets changed).
void emulate_vgic2(Vm& vm, unsigned self_cpu, unsigned index, const armvcpu::ExitReason& reason,
                   armvcpu::TrapFrame& frame);

// Before vCPU `index` of `vm` enters on physical CPU `cpu`: the timer PPIs
// enabled as the guest's distributor says, then what it would deliver into
// free list registers (SGIs with their sources, PPIs, SPIs). Returns true
// when something waits for room. Always inlined: it runs before every entry.
[[gnu::always_inline]] inline bool inject_from_vgic2(Vm& vm, unsigned cpu, unsigned index,
                                                     bool waiting, TimerPpis& timers) {
    const bool dirty = __atomic_exchange_n(&g_vgic_dirty[cpu], 0, __ATOMIC_ACQ_REL);
    if (!dirty) return waiting;
    Vgic2& v = vgic2_of(vm);
    SpinLock lock(v.lock);
    for (unsigned t = 0; t < 2; ++t) {
        if (v.dist.deliverable(index, TimerPpis::kIntid[t]) != timers.on[t]) {
            timers.on[t] = !timers.on[t];
            gic::set_enabled(cpu, TimerPpis::kIntid[t], timers.on[t]);
        }
    }
    std::uint32_t intid = 0;
    unsigned source = 0;
    while (!waiting && v.dist.take_pending(index, intid, source)) {
        if (!gicv2::inject(intid, false, v.dist.priority(index, intid), v.dist.group1(index, intid),
                           source)) {
            v.dist.set_pending(index, intid, source);
            waiting = true;
        }
    }
    if (waiting) set_vgic_dirty(cpu);
    return waiting;
}

// A physical interrupt that made vCPU `index` of `vm` exit on CPU `cpu`
// (the GICv2 counterpart of handle_physical_interrupt). True when the
// firmware dealt with it; false when the host decides what it means.
[[gnu::always_inline]] inline bool handle_physical_interrupt_v2(Vm& vm, unsigned cpu,
                                                                unsigned index,
                                                                std::uint32_t intid) {
    namespace vg = armvcpu::vgic;
    if (!vg::is_valid_intid(intid)) return true;  // spurious
    if (intid == gic::kKickSgi || intid == vg::kMaintenancePpi) {
        // The maintenance interrupt: the guest ended linked interrupts
        // (EOI), or list registers have room again (underflow).
        if (intid == vg::kMaintenancePpi) gicv2::complete_eois();
        gic::deactivate(intid);
        return true;
    }
    const bool vgic = (vm.features & armvcpu::kFeatureVgic) != 0;
    if (intid == vg::kVirtualTimerPpi || vm_owns_spi(vm, intid) ||
        (vgic && intid == vg::kPhysicalTimerPpi)) {
        // Linked: the guest's end of the interrupt (GICV_EOIR) deactivates
        // the physical one (EOI maintenance, gic_v2.hpp's inject).
        bool deliver = true;
        std::uint8_t priority = armvcpu::vgic2::kDefaultPriority;
        bool group1 = false;
        if (vgic) {
            Vgic2& v = vgic2_of(vm);
            SpinLock lock(v.lock);
            deliver = v.dist.deliverable(index, intid);
            priority = v.dist.priority(index, intid);
            group1 = v.dist.group1(index, intid);
            if (!deliver && intid >= 32) gic::set_enabled(cpu, intid, false);
        }
        if (!deliver || !gicv2::inject(intid, true, priority, group1, 0)) gic::deactivate(intid);
        return true;
    }
    gic::deactivate(intid);
    return false;
}

}  // namespace fw
