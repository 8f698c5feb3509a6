// Which instruction made an exit. Golden values from the Arm ARM (DDI 0487),
// D1.3.2 "Preferred exception return address" and the ESR_EL2 encodings
// (EC = ESR[31:26], IL = ESR[25]): SVC and HVC return to the next instruction,
// every other synchronous exception to the one that made it.
#include <gtest/gtest.h>

#include "armvcpu/classify.hpp"

using namespace armvcpu;

namespace {
constexpr std::uint64_t kElr = 0x40000030;
constexpr std::uint64_t kIl = 1ull << 25;
constexpr std::uint64_t esr_of(std::uint64_t ec, bool il = true) {
    return (ec << 26) | (il ? kIl : 0);
}

std::uint64_t address(std::uint64_t esr, bool synchronous = true) {
    return instruction_address_from_preferred_return(kElr, Esr{esr}, synchronous);
}
}  // namespace

TEST(PreferredReturn, HvcAndSvcReturnPastTheCall) {
    EXPECT_EQ(address(0x5a000000), kElr - 4);           // HVC #0 from AArch64 (EC 0x16, IL 1)
    EXPECT_EQ(address(esr_of(0x15)), kElr - 4);         // SVC (AArch64)
    EXPECT_EQ(address(esr_of(0x12)), kElr - 4);         // HVC (AArch32; T32 HVC is 32 bits)
    EXPECT_EQ(address(esr_of(0x11)), kElr - 4);         // SVC (A32, or 32-bit T32)
    EXPECT_EQ(address(esr_of(0x11, false)), kElr - 2);  // SVC, 16-bit T32 encoding: IL 0
}

TEST(PreferredReturn, EveryOtherSynchronousClassReturnsToTheInstruction) {
    EXPECT_EQ(address(esr_of(0x17)), kElr);  // SMC trapped by HCR_EL2.TSC: ELR is the SMC
    EXPECT_EQ(address(esr_of(0x13)), kElr);  // SMC (AArch32), likewise
    EXPECT_EQ(address(esr_of(0x01)), kElr);  // WFI/WFE trap
    EXPECT_EQ(address(esr_of(0x18)), kElr);  // MSR/MRS trap
    EXPECT_EQ(address(esr_of(0x24)), kElr);  // data abort from a lower EL
    EXPECT_EQ(address(esr_of(0x20)), kElr);  // instruction abort from a lower EL
    EXPECT_EQ(address(esr_of(0x3c)), kElr);  // BRK
    EXPECT_EQ(address(esr_of(0x32)), kElr);  // software step: the instruction not yet stepped
    EXPECT_EQ(address(esr_of(0x22)), kElr);  // PC alignment fault
    EXPECT_EQ(address(esr_of(0x00, false)), kElr);  // unknown reason
}

TEST(PreferredReturn, InterruptsHaveNoCausingInstruction) {
    // ESR_EL2 is not written for an IRQ: a stale HVC syndrome must not move it.
    EXPECT_EQ(address(0x5a000000, false), kElr);
}

static_assert(instruction_address_from_preferred_return(0x1000, Esr{0x5a000000}) == 0xffc);
static_assert(preferred_return_is_next_instruction(ExceptionClass::Hvc64));
static_assert(!preferred_return_is_next_instruction(ExceptionClass::Smc64));
