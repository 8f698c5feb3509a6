// PerCpu<Hal>: one physical CPU's virtualisation state (the seeds'
// Aarch64PerCpu). Each CPU initialises its own; virtualisation can be
// enabled CPU by CPU.
#pragma once

#include <cstdint>

#include "armvcpu/guest_context.hpp"
#include "armvcpu/hal.hpp"
#include "armvcpu/vcpu.hpp"

namespace armvcpu {

template <Hal H>
class alignas(4096) PerCpu {
public:
    // The seeds' new(cpu_id): also registers this CPU's IRQ handler, which
    // forwards to the Hal's.
    constexpr PerCpu(H& hal, std::uint32_t cpu_id) : hal_(hal), cpu_id_(cpu_id) {
        irq_handler_ = &PerCpu::forward_irq;
    }

    [[nodiscard]] constexpr std::uint32_t cpu_id() const { return cpu_id_; }
    [[nodiscard]] constexpr bool is_enabled() const { return enabled_; }
    [[nodiscard]] constexpr std::uint64_t saved_vbar() const { return ori_vbar_; }

    // Saves VBAR_EL2, installs the hypervisor's vectors and the guest traps.
    constexpr void hardware_enable(std::uint64_t vectors) {
        if (enabled_) return;
        ori_vbar_ = hal_.read_sysreg(SysReg::vbar_el2);
        hal_.write_sysreg(SysReg::vbar_el2, vectors);
        hal_.write_sysreg(SysReg::hcr_el2, kHcrGuest);
        hal_.isb();
        enabled_ = true;
    }

    // Restores VBAR_EL2 and turns stage 2 off (HCR_EL2.VM = 0).
    constexpr void hardware_disable() {
        if (!enabled_) return;
        hal_.write_sysreg(SysReg::vbar_el2, ori_vbar_);
        hal_.write_sysreg(SysReg::hcr_el2, hal_.read_sysreg(SysReg::hcr_el2) & ~kHcrVm);
        hal_.isb();
        enabled_ = false;
    }

    // The seeds' current_el_irq_handler: an IRQ taken while EL2 code runs.
    constexpr void handle_current_el_irq() { irq_handler_(hal_); }

    // CURRENT_VCPU: the vCPU running on this CPU, if any (opaque here).
    void* current_vcpu = nullptr;

private:
    static constexpr void forward_irq(H& hal) { hal.irq_handler(); }

    H& hal_;
    std::uint32_t cpu_id_;
    bool enabled_ = false;
    std::uint64_t ori_vbar_ = 0;
    void (*irq_handler_)(H&) = nullptr;
};

}  // namespace armvcpu
