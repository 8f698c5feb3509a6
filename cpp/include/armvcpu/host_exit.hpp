// One exit as the host holds it: the record as the firmware delivered it, the
// answer being built beside it, and how that answer goes back into the shared
// record. Host-side only (the Python Exit object is a view over this), but
// freestanding like the rest of the core, so the rules stay in one place.
//
// The delivered record is a snapshot: once answered, the firmware reuses the
// shared record for the vCPU's next exit, and the host keeps reading this one
// (traces, recent_exits). The answer is written back in place, only the parts
// that changed, and the ack last with release ordering (mailbox.hpp).
#pragma once

#include <cstdint>
#include <cstring>

#include "armvcpu/classify.hpp"
#include "armvcpu/exit_reason.hpp"
#include "armvcpu/host_interface.hpp"
#include "armvcpu/mailbox.hpp"

namespace armvcpu {

// Register names a host answer may set (Python's exit.resume(x5=...)): x0..x30,
// pc (ELR_EL2, where the guest resumes), elr (the same), sp_el0 and spsr.
enum class HostRegister : std::uint8_t { Gpr, Elr, SpEl0, Spsr, Unknown };

struct HostRegisterName {
    HostRegister kind;
    unsigned index;  // for Gpr: 0..30
};

constexpr HostRegisterName parse_host_register(const char* name, std::size_t len) {
    if (len >= 2 && len <= 3 && name[0] == 'x') {
        unsigned value = 0;
        for (std::size_t i = 1; i < len; ++i) {
            if (name[i] < '0' || name[i] > '9') return {HostRegister::Unknown, 0};
            value = value * 10 + static_cast<unsigned>(name[i] - '0');
        }
        // "x05" is not a register name (Python's int("05") would take it; Arm does not).
        if (len == 3 && name[1] == '0') return {HostRegister::Unknown, 0};
        if (value < TrapFrame::kNumGprs) return {HostRegister::Gpr, value};
        return {HostRegister::Unknown, 0};
    }
    auto is = [&](const char* want) {
        std::size_t n = 0;
        while (want[n] != '\0') ++n;
        if (n != len) return false;
        for (std::size_t i = 0; i < n; ++i) {
            if (want[i] != name[i]) return false;
        }
        return true;
    };
    if (is("pc") || is("elr")) return {HostRegister::Elr, 0};
    if (is("sp_el0")) return {HostRegister::SpEl0, 0};
    if (is("spsr")) return {HostRegister::Spsr, 0};
    return {HostRegister::Unknown, 0};
}

constexpr void set_host_register(TrapFrame& frame, HostRegisterName reg, std::uint64_t value) {
    switch (reg.kind) {
        case HostRegister::Gpr: frame.set_gpr(reg.index, value); break;
        case HostRegister::Elr: frame.elr = value; break;
        case HostRegister::SpEl0: frame.sp_el0 = value; break;
        case HostRegister::Spsr: frame.spsr = value; break;
        case HostRegister::Unknown: break;
    }
}

// Exits after which the guest has no next instruction to resume at: the
// firmware's default for them ends the VM (default_stops_vm), and a plain
// "resume" means that default unless the host moved the PC (a reset).
constexpr bool vm_is_down(ExitKind kind) {
    return kind == ExitKind::SystemDown || kind == ExitKind::FailEntry;
}

struct HostExit {
    ExitRecord delivered;  // as the firmware wrote it
    ExitRecord answer;     // what goes back: action, frame, far (for an abort)

    // A copy of `record`, its answer starting as the firmware's default.
    static HostExit from_record(const ExitRecord& record) {
        HostExit e;
        e.delivered = record;
        e.answer = record;
        e.answer.action = HostAction::Default;
        return e;
    }

    [[nodiscard]] ExitKind kind() const { return delivered.reason.kind; }

    // The instruction that made the exit (for HVC/SVC one before ELR_EL2).
    [[nodiscard]] std::uint64_t instruction_address() const {
        return instruction_address_from_preferred_return(
            delivered.elr, Esr{delivered.esr},
            delivered.exception_type == ExceptionType::Synchronous);
    }

    [[nodiscard]] bool frame_changed() const {
        return std::memcmp(&answer.frame, &delivered.frame, sizeof(TrapFrame)) != 0;
    }

    // A resume whose answer would be the firmware's default: the VM is down
    // and the host did not move the PC (exit.resume() after SYSTEM_OFF).
    [[nodiscard]] bool resume_means_default() const {
        return vm_is_down(kind()) && answer.frame.elr == delivered.frame.elr;
    }

    // Whether the session must see this answer before it goes out: it may end
    // the VM (Stop, or a default that stops), which the session keeps count of.
    [[nodiscard]] bool may_stop_vm() const {
        return answer.action == HostAction::Stop ||
               (answer.action == HostAction::Default && default_stops_vm(delivered.reason));
    }

    // Writes the answer into the shared record (the vCPU waits in the
    // firmware until the ack): the frame only when the host changed it (the
    // firmware reads it back only for actions that resume), FAR for an
    // injected abort, the action, then ack = seq with release ordering, so
    // the firmware sees all of it once it sees the ack.
    void publish(ExitRecord& shared) const {
        if (frame_changed()) shared.frame = answer.frame;
        if (answer.action == HostAction::InjectDataAbort ||
            answer.action == HostAction::InjectInstructionAbort) {
            shared.far = answer.far;
        }
        shared.action = answer.action;
        mailbox::store_release(&shared.ack, delivered.seq);
    }
};

}  // namespace armvcpu
