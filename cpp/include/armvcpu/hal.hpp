// The Hal: everything the core needs from the machine, and nothing else.
// The firmware's Hal executes mrs/msr and the world switch; the host's
// (sim_hal.hpp) is a register file with scripted exits, so every decision
// the firmware makes can be run, tested and fuzzed on the host.
#pragma once

#include <concepts>
#include <cstdint>

#include "armvcpu/esr.hpp"
#include "armvcpu/guest_context.hpp"
#include "armvcpu/host_interface.hpp"
#include "armvcpu/trap_frame.hpp"

namespace armvcpu {

template <class H>
concept Hal = requires(H h, const H ch, SysReg reg, std::uint64_t value, TrapFrame& frame) {
    // System registers of this physical CPU.
    { h.read_sysreg(reg) } -> std::same_as<std::uint64_t>;
    h.write_sysreg(reg, value);
    h.isb();
    // The world switch: run the guest described by frame (and the loaded
    // context) until it exits; frame then holds its registers.
    { h.enter_guest(frame) } -> std::same_as<ExceptionType>;
    // The seeds' AxVCpuHal: the pending physical interrupt, and its handler.
    { h.irq_fetch() } -> std::same_as<std::uint64_t>;
    h.irq_handler();
    // Make a virtual interrupt pending for the guest (list registers).
    { h.inject_interrupt(value) } -> std::same_as<bool>;
};

}  // namespace armvcpu
