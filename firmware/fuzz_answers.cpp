#include "fuzz_answers.hpp"

#include "armvcpu/mmio.hpp"

extern "C" {
// In .bss: the host writes it between programs, never before the boot.
[[gnu::used]] fw::fuzz::Answers armvcpu_fuzz_answers;
}

namespace fw::fuzz {
namespace {

// EL1 exceptions a program cannot go on from by skipping the instruction
// (illegal execution state, instruction aborts, PC alignment, software
// step), and those whose ELR_EL1 is past the instruction already (SVC):
// the host's rules (python/armvcpu/tools/fuzz/runner.py).
bool ends_program(std::uint64_t ec) {
    return ec == 0x0E || ec == 0x20 || ec == 0x21 || ec == 0x22 || ec == 0x32 || ec == 0x33;
}
bool returns_past(std::uint64_t ec) { return ec == 0x11 || ec == 0x15; }

// The vector table's report of a synchronous EL1 exception inside the body:
// back past the instruction with the SPSR_EL1 the vector read (x1 = ESR_EL1,
// x2 = ELR_EL1, x4 = SPSR_EL1; x0..x4 stay as the vector left them).
bool try_report(Answers& a, const armvcpu::exit::Hypercall& call, std::uint64_t instruction,
                armvcpu::TrapFrame& frame) {
    const std::uint64_t k = call.nr - a.report_nr;
    if (k >= 16 || instruction != a.vectors + 0x80 * k + a.report_offset) return false;
    if (k % 4 != 0 || k >= 12) return false;  // IRQ/FIQ/SError, or from AArch32
    const std::uint64_t ec = (frame.gpr(1) >> 26) & 0x3F;
    const std::uint64_t elr = frame.gpr(2);
    if (ends_program(ec) || elr < a.body_lo || elr >= a.body_hi) return false;
    frame.set_exception_pc(elr + (returns_past(ec) ? 0 : 4));
    frame.spsr = frame.gpr(4);
    ++a.skipped[k / 4][ec];
    return true;
}

// An access to IPA space with nothing behind it (the RAM window past the
// guest's RAM, as on a machine without memory there) is an external abort.
bool aborts(const Answers& a, std::uint64_t ipa) { return ipa >= a.abort_lo && ipa < a.abort_hi; }

}  // namespace

Answer try_answer(const armvcpu::ExitReason& reason, std::uint64_t instruction,
                  armvcpu::TrapFrame& frame) {
    Answers& a = armvcpu_fuzz_answers;
    if (a.enabled == 0 || a.host_exits + a.answered + 1 >= a.budget) return Answer::Host;
    Answer answer = Answer::Host;
    switch (reason.kind) {
        case armvcpu::ExitKind::Hypercall:
            if (try_report(a, reason.hypercall, instruction, frame)) answer = Answer::Answered;
            break;
        case armvcpu::ExitKind::MmioRead:  // reads return 0
            if (aborts(a, reason.mmio_read.addr)) {
                answer = Answer::InjectAbort;
            } else {
                armvcpu::complete_mmio_read(frame, reason.mmio_read, 0);
                answer = Answer::Answered;
            }
            break;
        case armvcpu::ExitKind::MmioWrite:  // ignored
            answer = aborts(a, reason.mmio_write.addr) ? Answer::InjectAbort : Answer::Answered;
            break;
        case armvcpu::ExitKind::NestedPageFault:
            // A data access nobody emulates is skipped; a fetch ends the program.
            if ((reason.nested_page_fault.access_flags & armvcpu::exit::kAccessExecute) != 0) break;
            if (aborts(a, reason.nested_page_fault.addr)) {
                answer = Answer::InjectAbort;
            } else {
                frame.set_exception_pc(instruction + 4);
                answer = Answer::Answered;
            }
            break;
        default: break;
    }
    if (answer != Answer::Host) ++a.answered;
    return answer;
}

}  // namespace fw::fuzz
