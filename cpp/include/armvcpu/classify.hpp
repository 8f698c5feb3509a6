// Exit classification: the seeds' handle_exception_sync. One function that the
// firmware runs on every synchronous exit and that Python runs on recorded
// syndromes, so both sides reach the same conclusion from the same bits.
#pragma once

#include <cstdint>

#include "armvcpu/esr.hpp"
#include "armvcpu/exit_reason.hpp"
#include "armvcpu/psci.hpp"
#include "armvcpu/trap_frame.hpp"

namespace armvcpu {

// The seeds' hypercall convention: number in X0, arguments in X1..X6.
constexpr ExitReason hypercall_from(const TrapFrame& frame) {
    exit::Hypercall h{};
    h.nr = frame.gpr(0);
    for (unsigned i = 0; i < 6; ++i) h.args[i] = frame.gpr(i + 1);
    return make_exit(h);
}

// A PSCI call from the guest. Calls that need the VMM become exits; the
// rest are answered in X0 and reported as Nothing.
constexpr ExitReason classify_psci(TrapFrame& frame) {
    using psci::Function;
    switch (psci::canonical(frame.gpr(0))) {
        case Function::CpuOn:
            return make_exit(exit::CpuUp{frame.gpr(1), frame.gpr(2), frame.gpr(3)});
        case Function::CpuOff: return make_exit(exit::CpuDown{0});
        case Function::SystemOff: return make_exit(exit::SystemDown{});
        default:
            // Not yet answered by the core: the VMM sees a hypercall.
            break;
    }
    return hypercall_from(frame);
}

// Classifies a synchronous exception taken from the guest. May update the
// frame (e.g. advance the PC past an emulated instruction).
constexpr ExitReason classify_sync(TrapFrame& frame, const Syndrome& syndrome) {
    const Esr esr{syndrome.esr};
    switch (esr.exception_class()) {
        case ExceptionClass::Hvc64: {
            // HVC is taken with ELR_EL2 already past the instruction (Arm ARM
            // D1.3.2 "preferred exception return address"), so no PC change.
            if (psci::is_psci_function_id(frame.gpr(0))) return classify_psci(frame);
            return hypercall_from(frame);
        }
        default: break;
    }
    return make_exit(exit::GuestException{syndrome.esr, frame.exception_pc(), esr.ec(), esr.iss()});
}

}  // namespace armvcpu
