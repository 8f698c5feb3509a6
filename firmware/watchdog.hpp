// VM 1's watchdog (armvcpu fuzz): ends a guest that runs too long without an
// exit to the host, in guest time, with no host round trip. The EL2 physical
// timer (CNTHP) is armed whenever the host has answered an exit (and at the
// first entry) for armvcpu_watchdog.ms milliseconds; when it fires, the
// interrupt takes the CPU from the guest to EL2 (HCR_EL2.IMO), even from a
// WFI that nothing else wakes, and the run loop hands it to the host as an
// ExternalInterrupt exit with vector kPpi, which the host may answer like any
// other (e.g. by restoring a snapshot). A vCPU halted in EL2 (CPU_SUSPEND,
// trapped WFI) is woken by it too and marked in armvcpu_watchdog.halted.
// Off (ms = 0) unless the host asks, and never while vCPUs time-share CPUs
// (the scheduler owns CNTHP then).
#pragma once

#include <cstdint>

#include "vm.hpp"

namespace fw::watchdog {

// What the host writes before the firmware boots (so in .data, which the
// host's isolation digest covers: the firmware never writes it).
struct Control {
    std::uint64_t ms;  // guest time without an exit to the host; 0: off
};

// What the firmware reports (in .bss).
struct State {
    std::uint64_t fired;   // how many times it ended a run
    std::uint64_t halted;  // 1: the last one woke a vCPU halted in EL2; 2: one off
    std::uint64_t armed;   // 1 while the timer is set
};

// CNTHP's PPI on QEMU virt (the non-secure EL2 physical timer).
inline constexpr std::uint32_t kPpi = 26;

// After the host answered an exit of `vm` on `cpu` (or at its first entry):
// the timer starts again.
void arm(const Vm& vm, unsigned cpu);
// The vCPU leaves the CPU for good (CPU_OFF, the VM stopped).
void disarm();
// The CNTHP interrupt `intid` made the exit: true when it is the watchdog's
// (the timer is then off, so its level drops); the exit goes to the host.
bool take(std::uint32_t intid);
// A halted vCPU's wait ended: note whether the watchdog ended it.
void note_halt_ended();
// The only vCPU of `vm` turned itself off (CPU_OFF) while the watchdog
// runs: instead of leaving the CPU, wait here for the watchdog (so the host
// gets its exit, and may restore the VM, instead of a CPU lost in EL2) and
// mark it (State::halted = 2). False when it does not apply: the caller
// lets the vCPU go as usual.
bool park_off(const Vm& vm);

}  // namespace fw::watchdog

extern "C" {
extern fw::watchdog::Control armvcpu_watchdog;
extern fw::watchdog::State armvcpu_watchdog_state;
}
