#include "el2_fault.hpp"

#include "armvcpu/esr.hpp"
#include "armvcpu/exit_reason.hpp"
#include "armvcpu/trap_frame.hpp"
#include "el2_mmu.hpp"
#include "host_link.hpp"
#include "power.hpp"
#include "uart.hpp"

extern "C" [[noreturn]] void fw_el2_fault(std::uint64_t type, std::uint64_t esr, std::uint64_t elr,
                                          std::uint64_t far, std::uint64_t sp) {
    using fw::uart::put_hex;
    using fw::uart::put_str;
    const bool overflow = fw::in_stack_guard(far) || fw::in_stack_guard(sp);
    put_str(overflow ? "armvcpu: FATAL: EL2 stack overflow (guard page hit)"
                     : "armvcpu: FATAL: exception at EL2");
    put_str(", type ");
    fw::uart::put_dec(type);
    put_str(" ESR_EL2=");
    put_hex(esr);
    put_str(" ELR_EL2=");
    put_hex(elr);
    put_str(" FAR_EL2=");
    put_hex(far);
    put_str(" SP=");
    put_hex(sp);
    put_str("\n");
    // Tell the host before stopping: the exit carries EL2's own syndrome
    // (EC 0x25/0x21: an abort taken from EL2) and the faulting PC.
    const armvcpu::Esr e{esr};
    armvcpu::TrapFrame frame{};
    frame.set_exception_pc(elr);
    fw::report_exit(0, 1, 0, armvcpu::ExceptionType::Synchronous, {esr, far, 0}, elr,
                    armvcpu::make_exit(armvcpu::exit::GuestException{esr, elr, e.ec(), e.iss()}),
                    frame);
    fw::power_off();
}

// The limit is far beyond the stack's size; it only tells the compiler that
// the recursion ends.
[[gnu::noinline]] std::uint64_t selftest_recurse(std::uint64_t depth) {
    volatile std::uint8_t pad[512];
    pad[0] = static_cast<std::uint8_t>(depth);
    if (depth > (1u << 20)) return pad[0];
    return selftest_recurse(depth + 1) + pad[0];
}

namespace fw {

void overflow_el2_stack() { selftest_recurse(0); }

}  // namespace fw
