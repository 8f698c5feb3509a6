#include "watchdog.hpp"

#include "gic.hpp"
#include "scheduler.hpp"
#include "sysreg.hpp"

extern "C" {
// Written by the host before the firmware boots: .data, as boot.S clears .bss.
[[gnu::used, gnu::section(".data")]] fw::watchdog::Control armvcpu_watchdog = {0};
[[gnu::used]] fw::watchdog::State armvcpu_watchdog_state;
}

namespace fw::watchdog {
namespace {

constexpr std::uint64_t kEnable = 1, kIstatus = 4;
bool g_enabled_ppi = false;

}  // namespace

void arm(const Vm& vm, unsigned cpu) {
    const std::uint64_t ms = armvcpu_watchdog.ms;
    if (ms == 0 || vm.id != 1 || sched::sharing()) return;
    if (!g_enabled_ppi) {
        gic::set_enabled(cpu, kPpi, true);
        g_enabled_ppi = true;
    }
    const std::uint64_t ticks = ARMVCPU_READ_SYSREG(cntfrq_el0) / 1000 * ms;
    ARMVCPU_WRITE_SYSREG(cnthp_cval_el2, ARMVCPU_READ_SYSREG(cntpct_el0) + ticks);
    ARMVCPU_WRITE_SYSREG(cnthp_ctl_el2, kEnable);
    isb();
    armvcpu_watchdog_state.armed = 1;
    armvcpu_watchdog_state.halted = 0;
}

void disarm() {
    if (armvcpu_watchdog_state.armed == 0) return;
    ARMVCPU_WRITE_SYSREG(cnthp_ctl_el2, 0);
    isb();
    armvcpu_watchdog_state.armed = 0;
}

bool take(std::uint32_t intid) {
    if (intid != kPpi || armvcpu_watchdog_state.armed == 0) return false;
    if ((ARMVCPU_READ_SYSREG(cnthp_ctl_el2) & (kEnable | kIstatus)) != (kEnable | kIstatus)) {
        return false;
    }
    disarm();
    ++armvcpu_watchdog_state.fired;
    return true;
}

void note_halt_ended() {
    if (armvcpu_watchdog_state.armed == 0) return;
    armvcpu_watchdog_state.halted =
        (ARMVCPU_READ_SYSREG(cnthp_ctl_el2) & (kEnable | kIstatus)) == (kEnable | kIstatus) ? 1 : 0;
}

bool park_off(const Vm& vm) {
    if (armvcpu_watchdog_state.armed == 0 || vm.num_vcpus != 1) return false;
    // WFI ends at any pending interrupt (masked here in EL2 or not); only the
    // watchdog's ends the wait.
    while ((ARMVCPU_READ_SYSREG(cnthp_ctl_el2) & kIstatus) == 0) asm volatile("wfi");
    armvcpu_watchdog_state.halted = 2;
    return true;
}

}  // namespace fw::watchdog
