// FwHal: the core's Hal on the real (emulated) CPU: mrs/msr and the
// assembly world switch. Every register access the core makes goes through
// here, generated from the core's own register lists.
#pragma once

#include <cstdint>

#include "armvcpu/guest_context.hpp"
#include "armvcpu/hal.hpp"
#include "gic.hpp"
#include "scheduler.hpp"
#include "sysreg.hpp"

extern "C" std::uint64_t armvcpu_run_guest(armvcpu::TrapFrame* frame);

namespace fw {

struct FwHal {
    std::uint64_t read_sysreg(armvcpu::SysReg r) {
        switch (r) {
#define ARMVCPU_X(field, name) \
    case armvcpu::SysReg::field: return ARMVCPU_READ_SYSREG(name);
            ARMVCPU_GUEST_SYSREGS(ARMVCPU_X)
            ARMVCPU_HOST_SYSREGS(ARMVCPU_X)
#undef ARMVCPU_X
            case armvcpu::SysReg::kCount: break;
        }
        return 0;
    }

    void write_sysreg(armvcpu::SysReg r, std::uint64_t v) {
        switch (r) {
#define ARMVCPU_X(field, name) \
    case armvcpu::SysReg::field: ARMVCPU_WRITE_SYSREG(name, v); return;
            ARMVCPU_GUEST_SYSREGS(ARMVCPU_X)
            ARMVCPU_HOST_SYSREGS_RW(ARMVCPU_X)
#undef ARMVCPU_X
            default: return;  // identification registers are read-only
        }
    }

    void isb() { fw::isb(); }

    armvcpu::ExceptionType enter_guest(armvcpu::TrapFrame& frame) {
        // Bit 2 of the vectors' code marks an AArch32 lower EL; the syndrome
        // (ESR_EL2) already tells a VMM which state the guest was in.
        // A time-shared CPU's scheduler may switch vCPUs before the entry and
        // keeps its own exits (slice timer, lazy FP) from the run loop.
        for (;;) {
            if (sched::sharing()) sched::before_entry();
            const std::uint64_t type = armvcpu_run_guest(&frame);
            if (!sched::sharing() || !sched::after_exit(type, frame)) {
                return static_cast<armvcpu::ExceptionType>(type & 3);
            }
        }
    }

    // The physical interrupt that made the guest exit (acknowledged).
    std::uint64_t irq_fetch() { return fw::gic::acknowledge(); }
    void irq_handler() {}
    bool inject_interrupt(std::uint64_t vector) {
        return vector < 1020 && fw::gic::inject(static_cast<std::uint32_t>(vector), false);
    }
};

static_assert(armvcpu::Hal<FwHal>);

}  // namespace fw
