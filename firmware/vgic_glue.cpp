#include "vgic_glue.hpp"

#include "armvcpu/mmio.hpp"
#include "its.hpp"

namespace fw {

std::uint32_t g_vgic_dirty[kMaxCpus];

std::uint64_t g_lr_shadow[kMaxCpus][kShadowLrs];

namespace {

// True for an address in a pending or active register block (ISPENDR ..
// ICACTIVER) of the distributor or of a redistributor's SGI frame: the reads
// that fold in the list registers and hardware lines.
bool reads_live_state(std::uint64_t addr) {
    namespace vg = armvcpu::vgic;
    std::uint64_t off = 0;
    if (addr >= vg::kGicdBase && addr < vg::kGicdBase + vg::kGicdSize) {
        off = addr - vg::kGicdBase;
    } else if (addr >= vg::kGicrBase &&
               (addr - vg::kGicrBase) % vg::kGicrStride >= vg::kGicrSgiFrame) {
        off = (addr - vg::kGicrBase) % vg::kGicrStride - vg::kGicrSgiFrame;
    } else {
        return false;
    }
    return off >= vg::gicd::ISPENDR && off < vg::gicd::IPRIORITYR;
}

// The list registers of vCPU `vcpu`: this CPU's own, live; another CPU's as
// it published them at its last exit.
std::uint64_t list_register_of(const Vm& vm, unsigned vcpu, unsigned self_cpu, unsigned n) {
    const unsigned cpu = vm.first_cpu + vcpu;
    if (cpu == self_cpu) return gic::list_register(n);
    return __atomic_load_n(&g_lr_shadow[cpu][n], __ATOMIC_RELAXED);
}

// What the model does not hold for a read at `addr`: the interrupts in the
// vCPUs' list registers (private ones only of the redistributor read) and
// the hardware-linked lines: the timer PPIs of that redistributor's CPU and
// the VM's passed-through SPIs, from the physical GIC's pending bits.
void collect_live_state(const Vm& vm, unsigned self_cpu, std::uint64_t addr,
                        armvcpu::vgic::LiveState& live) {
    namespace vg = armvcpu::vgic;
    const unsigned redist = vm.dist.redistributor_of(addr);
    for (unsigned v = 0; v < vm.num_vcpus; ++v) {
        for (unsigned n = 0; n < kShadowLrs; ++n) {
            const std::uint64_t lr = list_register_of(vm, v, self_cpu, n);
            const auto state = static_cast<unsigned>(vg::lr_state(lr));
            const std::uint32_t intid = vg::lr_vintid(lr);
            if (state == 0 || intid >= vg::kNumIntids || (intid < 32 && v != redist)) continue;
            const std::uint32_t bit = 1u << (intid % 32);
            if ((state & 1) != 0) live.lr_pending[intid / 32] |= bit;
            if ((state & 2) != 0) live.lr_active[intid / 32] |= bit;
        }
    }
    if (redist < vm.num_vcpus) {
        constexpr std::uint32_t kTimers =
            (1u << vg::kVirtualTimerPpi) | (1u << vg::kPhysicalTimerPpi);
        live.line[0] = gic::pending_bits(vm.first_cpu + redist, 0) & kTimers;
    }
    for (unsigned bank = 1; bank < vg::kNumBanks; ++bank) {
        std::uint32_t owned = 0;
        for (unsigned b = 0; b < 32; ++b) {
            if (vm_owns_spi(vm, bank * 32 + b)) owned |= 1u << b;
        }
        if (owned != 0) live.line[bank] = gic::pending_bits(0, bank * 32) & owned;
    }
}

// Carries a guest's clear-pending, set-active or clear-active write to an
// interrupt this CPU holds in a list register (its own private INTIDs, or an
// SPI): clearing pending or active leaves it invalid, or in the other state;
// a hardware-linked one's physical interrupt is deactivated, so a level
// line still asserted signals it again (IHI 0069H 4.1.2: a level
// interrupt's pending state follows its line).
void apply_to_list_registers(Vm& vm, unsigned self_index, const armvcpu::vgic::WriteEffect& e) {
    namespace vg = armvcpu::vgic;
    const std::uint32_t touched = e.pending_cleared | e.active_set | e.active_cleared;
    if (touched == 0 || (e.bank == 0 && e.vcpu != self_index)) return;
    for (unsigned n = 0; n < gic::num_list_registers(); ++n) {
        std::uint64_t lr = gic::list_register(n);
        const std::uint32_t intid = vg::lr_vintid(lr);
        if (vg::lr_state(lr) == vg::LrState::Invalid || intid / 32 != e.bank) continue;
        const std::uint32_t bit = 1u << (intid % 32);
        if ((touched & bit) == 0) continue;
        const bool hw = (lr & vg::kLrHwBit) != 0;
        bool deactivate = false;
        if ((e.pending_cleared & bit) != 0 && (lr & vg::kLrPendingBit) != 0) {
            lr &= ~vg::kLrPendingBit;
            deactivate = hw && (lr & vg::kLrActiveBit) == 0;
        }
        if ((e.active_cleared & bit) != 0 && (lr & vg::kLrActiveBit) != 0) {
            lr &= ~vg::kLrActiveBit;
            deactivate = hw;
            if (hw) lr &= ~vg::kLrPendingBit;  // the physical interrupt signals again if it must
        }
        if ((e.active_set & bit) != 0 && !hw && vg::lr_state(lr) == vg::LrState::Pending) {
            lr |= vg::kLrActiveBit;
            vm.dist.clear_active(self_index, intid);
        }
        gic::set_list_register(n, lr);
        if (deactivate) gic::deactivate(vg::lr_pintid(lr));
    }
}

// Makes vCPU `vcpu` of `vm` look at its emulated GIC before its next entry,
// kicking its CPU out of the guest unless that is this CPU.
void mark_vgic_dirty(const Vm& vm, unsigned vcpu, unsigned self_cpu) {
    const unsigned cpu = vm.first_cpu + vcpu;
    set_vgic_dirty(cpu);
    if (cpu != self_cpu) gic::kick(cpu);
}

// A redistributor's LPI registers, which the physical redistributor holds
// (its.hpp); true when the access was one.
bool lpi_register_access(const Vm& vm, const armvcpu::ExitReason& reason,
                         armvcpu::TrapFrame& frame) {
    namespace vg = armvcpu::vgic;
    const bool is_read = reason.kind == armvcpu::ExitKind::MmioRead;
    const std::uint64_t addr = is_read ? reason.mmio_read.addr : reason.mmio_write.addr;
    const unsigned vcpu = vm.dist.redistributor_of(addr);
    if (vcpu >= vm.num_vcpus) return false;
    const std::uint64_t off = (addr - vg::kGicrBase) % vg::kGicrStride;
    const unsigned width = is_read ? reason.mmio_read.width : reason.mmio_write.width;
    std::uint64_t value = is_read ? 0 : reason.mmio_write.data;
    if (!its::access_lpi_register(vm, vcpu, off, width, !is_read, value)) return false;
    if (is_read) armvcpu::complete_mmio_read(frame, reason.mmio_read, value);
    return true;
}

}  // namespace

bool emulate_icc_group1(const armvcpu::ExitReason& reason, armvcpu::TrapFrame& frame) {
    namespace vg = armvcpu::vgic;
    const bool is_read = reason.kind == armvcpu::ExitKind::SysRegRead;
    vg::IcvState s;
    gic::load_icv(s);
    const vg::IcvAccess a = vg::icv_group1_access(
        s, static_cast<std::uint32_t>(is_read ? reason.sysreg_read.addr : reason.sysreg_write.addr),
        is_read, is_read ? 0 : reason.sysreg_write.value);
    if (a.undefined) return false;
    gic::store_icv(s);
    // The guest's EOI of a hardware-linked interrupt deactivates the physical
    // one, as the virtual interface does by itself (the firmware already
    // dropped its priority when it took it).
    if (a.deactivate_pintid != vg::kNoInterrupt) gic::deactivate(a.deactivate_pintid);
    if (is_read) frame.set_gpr(reason.sysreg_read.reg, a.value);
    return true;
}

void publish_list_registers(unsigned cpu) {
    for (unsigned n = 0; n < kShadowLrs; ++n) {
        __atomic_store_n(&g_lr_shadow[cpu][n], gic::list_register(n), __ATOMIC_RELAXED);
    }
}

void emulate_vgic(Vm& vm, unsigned self_cpu, const armvcpu::ExitReason& reason,
                  armvcpu::TrapFrame& frame) {
    namespace vg = armvcpu::vgic;
    SpinLock lock(vm.dist_lock);
    if (vm.dist.lpis() && lpi_register_access(vm, reason, frame)) return;
    if (reason.kind == armvcpu::ExitKind::MmioRead) {
        const auto& r = reason.mmio_read;
        vg::LiveState live;
        if (reads_live_state(r.addr)) collect_live_state(vm, self_cpu, r.addr, live);
        armvcpu::complete_mmio_read(frame, r, vm.dist.read(r.addr, r.width, &live).value);
        return;
    }
    const auto& w = reason.mmio_write;
    const vg::WriteEffect e = vm.dist.write(w.addr, w.width, w.data).effect;
    apply_to_list_registers(vm, self_cpu - vm.first_cpu, e);
    if (w.addr == vg::kGicdBase + vg::gicd::CTLR) {
        // Group enables change what every interrupt's delivery means.
        for (std::uint32_t intid = 32; intid < vg::kNumIntids; ++intid) {
            sync_passthrough_spi(vm, intid);
        }
        for (unsigned v = 0; v < vm.num_vcpus; ++v) mark_vgic_dirty(vm, v, self_cpu);
        return;
    }
    if (e.bank == 0) {
        constexpr std::uint32_t kTimerBits =
            (1u << vg::kVirtualTimerPpi) | (1u << vg::kPhysicalTimerPpi);
        if ((e.enable_changed & kTimerBits) != 0 || e.pending_set != 0) {
            mark_vgic_dirty(vm, e.vcpu, self_cpu);
        }
    } else {
        for (unsigned b = 0; b < 32; ++b) {
            const std::uint32_t bit = 1u << b;
            const std::uint32_t intid = e.bank * 32 + b;
            if ((e.enable_changed & bit) != 0) sync_passthrough_spi(vm, intid);
            if ((e.pending_set & bit) != 0) mark_vgic_dirty(vm, vm.dist.route_of(intid), self_cpu);
        }
    }
    if (e.route_changed_intid != 0 && vm_owns_spi(vm, e.route_changed_intid)) {
        gic::route_spi(e.route_changed_intid,
                       vm.first_cpu + vm.dist.route_of(e.route_changed_intid));
    }
}

}  // namespace fw
