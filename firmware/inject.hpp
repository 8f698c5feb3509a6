// Exceptions the firmware takes to the guest's EL1 on its behalf (the core's
// exception_entry.hpp): the synchronous external abort a machine without a
// hypervisor gives for an address with nothing behind it, and what a policy
// asks for (HostAction::Inject*, fast rules with kRuleInject*).
#pragma once

#include "armvcpu/exception_entry.hpp"
#include "armvcpu/trap_frame.hpp"
#include "fw_hal.hpp"

namespace fw {

// The PE features that change PSTATE on exception entry, from the ID
// registers (the guest sees the same ones).
armvcpu::El1Features el1_features();

// Takes `e` to the guest's EL1: writes ESR_EL1, FAR_EL1 (aborts), ELR_EL1
// and SPSR_EL1 with msr (the guest's EL1 registers are live while its vCPU
// is bound to this CPU), and points the frame's ELR_EL2/SPSR_EL2 at the
// vector, so the next entry runs the guest's handler.
inline void inject_exception(FwHal& hal, armvcpu::TrapFrame& frame,
                             const armvcpu::InjectedException& e) {
    using armvcpu::SysReg;
    const armvcpu::ExceptionEntry x = armvcpu::take_exception_to_el1(
        e, {frame.spsr, hal.read_sysreg(SysReg::sctlr_el1), hal.read_sysreg(SysReg::vbar_el1)},
        el1_features());
    hal.write_sysreg(SysReg::esr_el1, x.esr_el1);
    if (x.writes_far) hal.write_sysreg(SysReg::far_el1, x.far_el1);
    hal.write_sysreg(SysReg::elr_el1, x.elr_el1);
    hal.write_sysreg(SysReg::spsr_el1, x.spsr_el1);
    frame.elr = x.pc;
    frame.spsr = x.pstate;
}

}  // namespace fw
