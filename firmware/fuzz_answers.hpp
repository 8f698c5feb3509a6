// armvcpu fuzz's answers in EL2: in a session whose programs are restored
// from a snapshot, the host hands the firmware the answers it would give
// itself to the exits that do not end a program (an EL1 exception the
// program goes on from, reported by its vector table's HVC; MMIO; a data
// access to unmapped IPA space), so those exits cost no round trip to the
// host. The firmware counts them (the exit budget stays the host's: it
// answers only while the program has exits left before the budget) and the
// EL1 exceptions by vector and class, which the host reads when the program
// ends. Everything else, and every exit that ends a program, still goes to
// the host. The host writes the block before each restore; the firmware
// boots with it zeroed (off), so a fresh session's first program is the
// host's alone.
#pragma once

#include <cstdint>

#include "armvcpu/exit_reason.hpp"
#include "armvcpu/trap_frame.hpp"
#include "armvcpu/vcpu.hpp"

namespace fw::fuzz {

struct Answers {
    std::uint64_t enabled;        // host: 1 to answer in EL2
    std::uint64_t vectors;        // host: the program's vector table (VBAR_EL1)
    std::uint64_t report_nr;      // host: x0 of vector 0's reporting HVC (n: + n)
    std::uint64_t report_offset;  // host: that HVC's offset in each 0x80-byte entry
    std::uint64_t body_lo;        // host: [body_lo, body_hi) is the program's body
    std::uint64_t body_hi;
    std::uint64_t budget;  // host: the program's exit budget
    // host: [abort_lo, abort_hi) is IPA space with nothing behind it: a data
    // access there is answered with a synchronous external abort.
    std::uint64_t abort_lo;
    std::uint64_t abort_hi;
    std::uint64_t host_exits;  // host: exits it has seen of this program
    std::uint64_t answered;    // firmware: exits of this program answered here
    // firmware: EL1 exceptions returned from, by vector group (current EL
    // with SP_EL0, with SP_ELx, lower EL AArch64) and exception class.
    std::uint64_t skipped[3][64];
};

enum class Answer : std::uint8_t {
    Host,        // not answered here: the host's
    Answered,    // answered in the frame
    InjectAbort  // the caller takes the synchronous external abort for it
};

// Answers the exit (with `instruction`, the address of the instruction
// that made it) as the host would.
Answer try_answer(const armvcpu::ExitReason& reason, std::uint64_t instruction,
                  armvcpu::TrapFrame& frame);

}  // namespace fw::fuzz

extern "C" {
extern fw::fuzz::Answers armvcpu_fuzz_answers;
}
