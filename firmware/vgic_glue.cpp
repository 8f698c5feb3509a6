#include "vgic_glue.hpp"

#include "armvcpu/mmio.hpp"

namespace fw {

std::uint32_t g_vgic_dirty[kMaxCpus];

namespace {

// Makes vCPU `vcpu` of `vm` look at its emulated GIC before its next entry,
// kicking its CPU out of the guest unless that is this CPU.
void mark_vgic_dirty(const Vm& vm, unsigned vcpu, unsigned self_cpu) {
    const unsigned cpu = vm.first_cpu + vcpu;
    set_vgic_dirty(cpu);
    if (cpu != self_cpu) gic::kick(cpu);
}

}  // namespace

void emulate_vgic(Vm& vm, unsigned self_cpu, const armvcpu::ExitReason& reason,
                  armvcpu::TrapFrame& frame) {
    namespace vg = armvcpu::vgic;
    SpinLock lock(vm.dist_lock);
    if (reason.kind == armvcpu::ExitKind::MmioRead) {
        const auto& r = reason.mmio_read;
        armvcpu::complete_mmio_read(frame, r, vm.dist.read(r.addr, r.width).value);
        return;
    }
    const auto& w = reason.mmio_write;
    const vg::WriteEffect e = vm.dist.write(w.addr, w.width, w.data).effect;
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
