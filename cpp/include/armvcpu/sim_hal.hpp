// SimHal: the host's Hal. System registers are a register file; the world
// switch replays scripted exits. With it, VCpu<SimHal> makes exactly the
// decisions the firmware makes, on the host (tests, Python, replay).
#pragma once

#include <cstdint>

#include "armvcpu/hal.hpp"

namespace armvcpu {

struct ScriptedExit {
    ExceptionType type;
    Syndrome syndrome;
    std::uint64_t irq;  // what irq_fetch() returns for an Irq exit
};

class SimHal {
public:
    static constexpr unsigned kMaxScript = 64;
    static constexpr unsigned kMaxInjected = 64;

    std::uint64_t regs[kNumSysRegs] = {};
    ScriptedExit script[kMaxScript] = {};
    unsigned script_len = 0;
    unsigned script_pos = 0;
    std::uint64_t injected[kMaxInjected] = {};
    unsigned injected_len = 0;
    unsigned isb_count = 0;
    unsigned irq_handled = 0;
    std::uint64_t last_irq = 1023;  // GICv3's "no pending interrupt"

    // The order in which registers were last written (for order checks).
    SysReg write_log[256] = {};
    unsigned write_log_len = 0;

    constexpr bool push_exit(const ScriptedExit& e) {
        if (script_len == kMaxScript) return false;
        script[script_len++] = e;
        return true;
    }

    [[nodiscard]] constexpr std::uint64_t read_sysreg(SysReg r) const {
        return regs[static_cast<unsigned>(r)];
    }
    constexpr void write_sysreg(SysReg r, std::uint64_t v) {
        // Identification registers are read-only, as on the real CPU (FwHal).
        if (r == SysReg::midr_el1 || r == SysReg::mpidr_el1) return;
        regs[static_cast<unsigned>(r)] = v;
        if (write_log_len < 256) write_log[write_log_len++] = r;
    }
    constexpr void isb() { ++isb_count; }

    // Plays the next scripted exit as if the guest had trapped: the syndrome
    // registers take its values. With the script exhausted, the guest
    // "faults" with EC 0 (Unknown), which classification reports.
    constexpr ExceptionType enter_guest(TrapFrame&) {
        ScriptedExit e{ExceptionType::Synchronous, {0x02000000, 0, 0}, 1023};
        if (script_pos < script_len) e = script[script_pos++];
        regs[static_cast<unsigned>(SysReg::esr_el2)] = e.syndrome.esr;
        regs[static_cast<unsigned>(SysReg::far_el2)] = e.syndrome.far;
        regs[static_cast<unsigned>(SysReg::hpfar_el2)] = e.syndrome.hpfar;
        last_irq = e.irq;
        return e.type;
    }

    [[nodiscard]] constexpr std::uint64_t irq_fetch() const { return last_irq; }
    constexpr void irq_handler() { ++irq_handled; }
    constexpr bool inject_interrupt(std::uint64_t vector) {
        if (injected_len == kMaxInjected || vector > 1019) return false;
        injected[injected_len++] = vector;
        return true;
    }
};

static_assert(Hal<SimHal>);

}  // namespace armvcpu
