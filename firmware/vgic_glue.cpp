#include "vgic_glue.hpp"

#include "armvcpu/mmio.hpp"

namespace fw {

std::uint32_t g_vgic_dirty[kMaxCpus];

std::uint64_t g_lr_shadow[kMaxCpus][kShadowLrs];

armvcpu::vgic::LrWriteLog g_lr_writes[kMaxCpus];
std::uint32_t g_lr_writes_waiting[kMaxCpus];

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
// it published them at its last exit, with the writes waiting for it
// applied (they took effect when they were made).
std::uint64_t list_register_of(const Vm& vm, unsigned vcpu, unsigned self_cpu, unsigned n) {
    const unsigned cpu = vm.first_cpu + vcpu;
    if (cpu == self_cpu) return gic::list_register(n);
    return g_lr_writes[cpu].apply(__atomic_load_n(&g_lr_shadow[cpu][n], __ATOMIC_RELAXED)).lr;
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
        // SGIs sent to it that its CPU has not put in a list register yet
        // (one it has not enabled waits there) are pending too.
        live.lr_pending[0] |=
            static_cast<std::uint32_t>(pending_sgis(vm.first_cpu + redist)) & 0xffffu;
    }
    for (unsigned bank = 1; bank < vg::kNumBanks; ++bank) {
        std::uint32_t owned = 0;
        for (unsigned b = 0; b < 32; ++b) {
            if (vm_owns_spi(vm, bank * 32 + b)) owned |= 1u << b;
        }
        if (owned != 0) live.line[bank] = gic::pending_bits(0, bank * 32) & owned;
    }
}

// Applies a write's clear-pending, set-active or clear-active bits to this
// CPU's list registers (the core's apply_lr_write says how).
void write_list_registers(Vm& vm, unsigned self_index, const armvcpu::vgic::LrWriteLog& w) {
    namespace vg = armvcpu::vgic;
    for (unsigned n = 0; n < gic::num_list_registers(); ++n) {
        const std::uint64_t lr = gic::list_register(n);
        const vg::LrWriteResult r = w.apply(lr);
        if (r.lr == lr) continue;
        gic::set_list_register(n, r.lr);
        if (r.took_active) vm.dist.clear_active(self_index, vg::lr_vintid(lr));
        if (r.deactivate_physical) gic::deactivate(vg::lr_pintid(lr));
    }
}

// True when vCPU `vcpu`'s published list registers hold an interrupt of
// bank `bank` named in `bits`.
bool shadow_holds(unsigned cpu, unsigned bank, std::uint32_t bits) {
    namespace vg = armvcpu::vgic;
    for (unsigned n = 0; n < kShadowLrs; ++n) {
        const std::uint64_t lr = __atomic_load_n(&g_lr_shadow[cpu][n], __ATOMIC_RELAXED);
        const std::uint32_t intid = vg::lr_vintid(lr);
        if (vg::lr_state(lr) != vg::LrState::Invalid && intid / 32 == bank &&
            ((bits >> (intid % 32)) & 1) != 0) {
            return true;
        }
    }
    return false;
}

// Carries a guest's clear-pending, set-active or clear-active write to the
// list registers that may hold what it names: this CPU's at once; another
// vCPU's (its redistributor's SGIs and PPIs, or an SPI any vCPU may hold)
// recorded for its CPU, which applies them before it enters the guest again
// (kicked out of the guest when its published list registers hold one).
// An SGI another vCPU sent and this one's CPU has not injected yet is
// cleared where it waits.
void apply_to_list_registers(Vm& vm, unsigned self_index, const armvcpu::vgic::WriteEffect& e) {
    namespace vg = armvcpu::vgic;
    const std::uint32_t touched = e.pending_cleared | e.active_set | e.active_cleared;
    if (e.bank == 0 && (e.pending_cleared & 0xffff) != 0) {
        clear_pending_sgi(vm.first_cpu + e.vcpu, e.pending_cleared & 0xffff);
    }
    if (touched == 0 && e.pending_set == 0) return;
    for (unsigned v = 0; v < vm.num_vcpus; ++v) {
        if (e.bank == 0 && v != e.vcpu) continue;
        const unsigned cpu = vm.first_cpu + v;
        if (v == self_index) {
            if (touched == 0) continue;
            vg::LrWriteLog now;
            now.record(e);
            write_list_registers(vm, self_index, now);
            continue;
        }
        // A set-pending only cancels a clear-pending still waiting.
        const bool recorded = g_lr_writes[cpu].record(e);
        if (!recorded) continue;
        __atomic_store_n(&g_lr_writes_waiting[cpu], 1, __ATOMIC_RELEASE);
        set_vgic_dirty(cpu);
        if (shadow_holds(cpu, e.bank, touched)) gic::kick(cpu);
    }
}

// Makes vCPU `vcpu` of `vm` look at its emulated GIC before its next entry,
// kicking its CPU out of the guest unless that is this CPU.
void mark_vgic_dirty(const Vm& vm, unsigned vcpu, unsigned self_cpu) {
    const unsigned cpu = vm.first_cpu + vcpu;
    set_vgic_dirty(cpu);
    if (cpu != self_cpu) gic::kick(cpu);
}

}  // namespace

void apply_lr_writes_locked(Vm& vm, unsigned cpu, unsigned index) {
    write_list_registers(vm, index, g_lr_writes[cpu]);
    g_lr_writes[cpu].clear();
    __atomic_store_n(&g_lr_writes_waiting[cpu], 0, __ATOMIC_RELEASE);
    publish_list_registers(cpu);
}

bool emulate_icc_group1(Vm& vm, unsigned cpu, unsigned index, const armvcpu::ExitReason& reason,
                        armvcpu::TrapFrame& frame) {
    namespace vg = armvcpu::vgic;
    if (lr_writes_waiting(cpu)) {
        // What another vCPU wrote before this access must show in it.
        SpinLock lock(vm.dist_lock);
        apply_lr_writes_locked(vm, cpu, index);
    }
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
    // An acknowledge or an end changed the list registers since the exit
    // published them: other vCPUs' GICD/GICR reads see the new state.
    if ((vm.features & armvcpu::kFeatureVgic) != 0 && !gic::v2()) publish_list_registers(cpu);
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
    const unsigned self_index = self_cpu - vm.first_cpu;
    if (lr_writes_waiting(self_cpu)) apply_lr_writes_locked(vm, self_cpu, self_index);
    if (reason.kind == armvcpu::ExitKind::MmioRead) {
        const auto& r = reason.mmio_read;
        vg::LiveState live;
        if (reads_live_state(r.addr)) collect_live_state(vm, self_cpu, r.addr, live);
        armvcpu::complete_mmio_read(frame, r, vm.dist.read(r.addr, r.width, &live).value);
        return;
    }
    const auto& w = reason.mmio_write;
    const vg::WriteEffect e = vm.dist.write(w.addr, w.width, w.data).effect;
    apply_to_list_registers(vm, self_index, e);
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
