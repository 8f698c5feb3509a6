// TrapFrame: the guest's general-purpose state as the EL2 vectors save it.
//
// The layout is shared with firmware/vectors.S (through the generated
// asm_offsets.h) and with Python (through armvcpu._core), so it is pinned here
// with static_asserts and nowhere else.
#pragma once

#include <cstddef>
#include <cstdint>

namespace armvcpu {

struct TrapFrame {
    static constexpr unsigned kNumGprs = 31;  // X0..X30; encoding 31 is XZR or SP

    std::uint64_t gpr_[kNumGprs];
    std::uint64_t sp_el0;
    std::uint64_t elr;   // ELR_EL2: where the guest resumes
    std::uint64_t spsr;  // SPSR_EL2: the guest's PSTATE at the exception

    // Register encoding 31 reads as zero and ignores writes: in the load/store
    // and MSR/MRS encodings that reach EL2 (Rt, SRT), 31 names XZR, so callers
    // can pass a decoded register field straight through.
    [[nodiscard]] constexpr std::uint64_t gpr(unsigned index) const {
        return index < kNumGprs ? gpr_[index] : 0;
    }
    constexpr void set_gpr(unsigned index, std::uint64_t value) {
        if (index < kNumGprs) gpr_[index] = value;
    }

    [[nodiscard]] constexpr std::uint64_t exception_pc() const { return elr; }
    constexpr void set_exception_pc(std::uint64_t pc) { elr = pc; }
    // The seeds' set_argument: the first argument / return register, X0.
    constexpr void set_argument(std::uint64_t arg) { gpr_[0] = arg; }
};

static_assert(sizeof(TrapFrame) == 34 * 8);
static_assert(offsetof(TrapFrame, gpr_) == 0);
static_assert(offsetof(TrapFrame, sp_el0) == 31 * 8);
static_assert(offsetof(TrapFrame, elr) == 32 * 8);
static_assert(offsetof(TrapFrame, spsr) == 33 * 8);
// The vectors save registers in pairs with STP, which needs 16-byte-friendly
// offsets for x0..x29 and a frame size that keeps the stack 16-byte aligned.
static_assert(sizeof(TrapFrame) % 16 == 0);

}  // namespace armvcpu
