#include "vgic_v2_glue.hpp"

#include "armvcpu/mmio.hpp"
#include "passthrough.hpp"

namespace fw {

Vgic2 g_vgic2[kMaxVms];

namespace {

namespace v2 = armvcpu::vgic2;

// Makes vCPU `vcpu` of `vm` look at its vGIC before its next entry, kicking
// its CPU out of the guest unless that is this CPU.
void mark_dirty(const Vm& vm, unsigned vcpu, unsigned self_cpu) {
    const unsigned cpu = vm.first_cpu + vcpu;
    set_vgic_dirty(cpu);
    if (cpu != self_cpu) gic::kick(cpu);
}

// A physical SPI of the VM's devices is enabled exactly when the guest's
// distributor would deliver it, and targets the CPU of the vCPU that takes
// it: a level-triggered device interrupt the guest cannot take must not keep
// firing at EL2. Called with the lock held.
void sync_spi(const Vm& vm, const v2::Distributor& dist, std::uint32_t intid) {
    if (!vm_owns_spi(vm, intid)) return;
    const unsigned vcpu = dist.route_of(intid);
    gic::route_spi(intid, vm.first_cpu + vcpu);
    gic::set_enabled(0, intid, dist.deliverable(vcpu, intid));
}

// The list registers of this CPU (the vCPU it runs), at most 64 (GICH_VTR).
struct ListRegisters {
    std::uint32_t value[64];
    unsigned count;
    ListRegisters() : value{}, count(gicv2::num_list_registers()) {
        for (unsigned i = 0; i < count; ++i) value[i] = gicv2::read_list_register(i);
    }
};

// The GICD registers that show or clear what list registers hold:
// ISPENDR..ICACTIVER and CPENDSGIR/SPENDSGIR (their MMIO reads of GICH are
// spared for every other access).
constexpr bool holds_lr_state(std::uint64_t off) {
    return (off >= v2::gicd::ISPENDR && off < v2::gicd::IPRIORITYR) ||
           (off >= v2::gicd::CPENDSGIR && off < v2::gicd::SPENDSGIR + 16);
}

}  // namespace

void reset_vgic2(Vm& vm) {
    vgic2_of(vm).dist.reset(vm.num_vcpus);
    configure_passthrough_spis(vm);
}

void emulate_vgic2(Vm& vm, unsigned self_cpu, unsigned index, const armvcpu::ExitReason& reason,
                   armvcpu::TrapFrame& frame) {
    Vgic2& v = vgic2_of(vm);
    SpinLock lock(v.lock);
    if (reason.kind == armvcpu::ExitKind::MmioRead) {
        const auto& r = reason.mmio_read;
        std::uint64_t value = v.dist.read(index, r.addr, r.width).value;
        if (holds_lr_state(r.addr - v2::kGicdBase)) {
            // What this vCPU's list registers hold is still pending or active.
            const ListRegisters lrs;
            value = v2::fold_list_registers(r.addr - v2::kGicdBase, r.width, value, lrs.value,
                                            lrs.count);
        }
        armvcpu::complete_mmio_read(frame, r, value);
        return;
    }
    const auto& w = reason.mmio_write;
    if (holds_lr_state(w.addr - v2::kGicdBase)) {
        ListRegisters lrs;
        const std::uint64_t changed = v2::clear_pending_in_list_registers(
            w.addr - v2::kGicdBase, w.width, static_cast<std::uint32_t>(w.data), lrs.value,
            lrs.count);
        for (unsigned i = 0; i < lrs.count; ++i) {
            if (((changed >> i) & 1) != 0) gicv2::write_list_register(i, lrs.value[i]);
        }
    }
    const v2::WriteEffect e = v.dist.write(index, w.addr, w.width, w.data).effect;
    if (e.ctlr_changed) {
        // Group enables change what every interrupt's delivery means.
        for (std::uint32_t intid = 32; intid < v2::kNumIntids; ++intid) sync_spi(vm, v.dist, intid);
        for (unsigned i = 0; i < vm.num_vcpus; ++i) mark_dirty(vm, i, self_cpu);
        return;
    }
    for (unsigned i = 0; i < vm.num_vcpus; ++i) {
        if (((e.sgi_targets >> i) & 1) != 0) mark_dirty(vm, i, self_cpu);
    }
    if (e.bank == 0) {
        // A PPI enabled (the timers' physical PPIs follow) or pended: this
        // vCPU looks again before its next entry.
        if (e.enable_changed != 0 || e.pending_set != 0) mark_dirty(vm, index, self_cpu);
    } else {
        for (unsigned b = 0; b < 32; ++b) {
            const std::uint32_t bit = 1u << b;
            const std::uint32_t intid = e.bank * 32 + b;
            if ((e.enable_changed & bit) != 0) sync_spi(vm, v.dist, intid);
            // Pended, or enabled while pended: the vCPU that takes it looks.
            if (((e.pending_set | e.enable_changed) & bit) != 0) {
                mark_dirty(vm, v.dist.route_of(intid), self_cpu);
            }
        }
    }
    if (e.target_changed_intid != 0) {
        // A word access re-targets four SPIs, a byte access one; one pending
        // in the model goes to its new target.
        const unsigned count = w.width == 4 ? 4 : 1;
        for (unsigned i = 0; i < count; ++i) {
            const std::uint32_t intid = e.target_changed_intid + i;
            sync_spi(vm, v.dist, intid);
            mark_dirty(vm, v.dist.route_of(intid), self_cpu);
        }
    }
}

}  // namespace fw
