#include "passthrough.hpp"

#include "gic.hpp"

namespace fw {

void configure_passthrough_spis(const Vm& vm) {
    for (std::uint32_t intid = 32; intid < armvcpu::vgic::kNumIntids; ++intid) {
        if (!vm_owns_spi(vm, intid)) continue;
        gic::set_enabled(0, intid, false);
        gic::configure_spi(intid, vm.first_cpu);
    }
}

void sync_passthrough_spi(const Vm& vm, std::uint32_t intid) {
    if (!vm_owns_spi(vm, intid)) return;
    gic::set_enabled(0, intid, vm.dist.deliverable(vm.dist.route_of(intid), intid));
}

}  // namespace fw
