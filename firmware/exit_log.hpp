// The exit log (host_interface.hpp: ExitLog) and the firmware's own exit
// lines on the UART.
#pragma once

#include <cstdint>

#include "armvcpu/exit_reason.hpp"
#include "armvcpu/host_interface.hpp"
#include "armvcpu/trap_frame.hpp"
#include "armvcpu/vcpu.hpp"
#include "host_link.hpp"
#include "sysreg.hpp"
#include "vm.hpp"

namespace fw {

// Exits reported to the host (atomic: counted by every CPU).
extern std::uint64_t g_exits;

// Gives every CPU's ring the counter frequency its timestamps tick at.
void init_exit_logs();

// Prints one exit reported to the host (standalone runs: nobody else sees it).
// pc is the instruction that made the exit (for HVC one before ELR_EL2), as
// the host shows it.
void log_exit(std::uint64_t seq, const armvcpu::ExitReason& reason, std::uint64_t pc);

// Appends one entry to a ring (its only writer: the thread of the ring's
// vCPU slot) and publishes it.
inline void append_exit_log(armvcpu::ExitLog& log, const armvcpu::ExitLogEntry& e) {
    const std::uint64_t written = log.written;
    log.entries[written % armvcpu::kExitLogEntries] = e;
    __atomic_store_n(&log.written, written + 1, __ATOMIC_RELEASE);
}

// One exit log entry per exit (when the VM asks for the log), written and
// published when it is known who answered the exit. The entry is built here
// and takes its place in the ring only then: a halted vCPU's thread may give
// its CPU away with the scope open (the EL2 scheduler), and the switch is
// logged in the same ring meanwhile. Inline: it is on every exit's path.
class ExitLogScope {
public:
    ExitLogScope(unsigned cpu, const Vm& vm, unsigned vcpu, const armvcpu::VCpuRunResult& r)
        : log_((vm.features & armvcpu::kFeatureExitLog) != 0 ? &armvcpu_exit_log[cpu] : nullptr) {
        if (log_ == nullptr) return;
        entry_.time = ARMVCPU_READ_SYSREG(cntpct_el0);
        entry_.arg = armvcpu::exit_log_arg(r.reason);
        entry_.esr = r.type == armvcpu::ExceptionType::Synchronous
                         ? static_cast<std::uint32_t>(r.syndrome.esr)
                         : 0;
        entry_.kind = static_cast<std::uint8_t>(r.reason.kind);
        entry_.vm_id = static_cast<std::uint8_t>(vm.id);
        entry_.vcpu_id = static_cast<std::uint8_t>(vcpu);
        entry_.handler = armvcpu::ExitLogHandler::Firmware;
    }
    void set_handler(armvcpu::ExitLogHandler h) { entry_.handler = h; }
    ~ExitLogScope() {
        if (log_ != nullptr) append_exit_log(*log_, entry_);
    }
    ExitLogScope(const ExitLogScope&) = delete;
    ExitLogScope& operator=(const ExitLogScope&) = delete;

private:
    armvcpu::ExitLog* log_;
    armvcpu::ExitLogEntry entry_{};
};

}  // namespace fw
