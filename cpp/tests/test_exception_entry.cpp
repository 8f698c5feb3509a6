// Taking a synchronous exception to EL1 (exception_entry.hpp) against the
// Arm ARM (DDI 0487).
//
// Golden values:
//  - ESR_ELx (D17.2.37): EC [31:26], IL [25], ISS [24:0]. EC 0x00 Unknown
//    reason, 0x20/0x21 Instruction Abort from a lower/the same EL, 0x24/0x25
//    Data Abort from a lower/the same EL. IL is RES1 for EC 0x00, for
//    Instruction Aborts and for Data Aborts with ISV = 0.
//  - Data/Instruction Abort ISS: DFSC/IFSC [5:0] 0b010000 "Synchronous
//    External abort, not on translation table walk"; WnR [6]; ISV [24] 0.
//    So a load from the same EL is 0x96000010, a store 0x96000050, an
//    instruction fetch 0x86000010, a load from EL0 0x92000010, EC 0x00 is
//    0x02000000.
//  - D1.10.2 "Exception vectors": offsets 0x000 (current EL, SP_EL0), 0x200
//    (current EL, SP_ELx), 0x400 (lower EL, AArch64), 0x600 (lower EL,
//    AArch32); VBAR_EL1[10:0] are RES0.
//  - SPSR_EL1 (C5.2.18): M[3:0] 0b0101 EL1h, 0b0100 EL1t, 0b0000 EL0t;
//    M[4] 1 for AArch32 (User mode 0b10000); D, A, I, F [9:6]; IL [20];
//    SS [21]; PAN [22]; UAO [23]; DIT [24]; TCO [25]; SSBS [12]; ALLINT [13];
//    BTYPE [11:10]; N, Z, C, V [31:28].
//  - AArch64.TakeException (J1): PSTATE.{D,A,I,F} = 1, SP = 1, EL = 1,
//    nRW = 0, SS = 0, IL = 0, BTYPE = 0, UAO = 0; PAN = 1 when SCTLR_EL1.SPAN
//    (bit 23) is 0; SSBS = SCTLR_EL1.DSSBS (bit 44); TCO = 1; ALLINT = 1 when
//    SCTLR_EL1.SPINTMASK (bit 62) is 0; ELR_EL1 = the preferred return
//    address, which is the faulting instruction for aborts and UNDEFINED.
#include <gtest/gtest.h>

#include "armvcpu/exception_entry.hpp"

using namespace armvcpu;

namespace {

constexpr std::uint64_t kVbar = 0x40080000;
constexpr std::uint64_t kPc = 0x40001234;
constexpr std::uint64_t kVa = 0x0c000000;
constexpr std::uint64_t kEl1h = 0x5, kEl1t = 0x4, kEl0t = 0x0, kAarch32User = 0x10;
constexpr std::uint64_t kSctlrReset = 0x30D00800;  // SPAN (bit 23) is 1 in the RES1 set

ExceptionEntry take(InjectKind kind, std::uint64_t pstate, bool write = false,
                    const El1Features& f = {}, std::uint64_t sctlr = kSctlrReset) {
    return take_exception_to_el1(
        {kind, kPc, kind == InjectKind::InstructionAbort ? kPc : kVa, write},
        {pstate, sctlr, kVbar}, f);
}

}  // namespace

TEST(ExceptionEntry, DataAbortOnALoadFromEl1) {
    const ExceptionEntry e = take(InjectKind::DataAbort, 0x600003c5 & ~0x3c0ull);
    EXPECT_EQ(e.esr_el1, 0x96000010u);
    EXPECT_TRUE(e.writes_far);
    EXPECT_EQ(e.far_el1, kVa);
    EXPECT_EQ(e.elr_el1, kPc);
    EXPECT_EQ(e.spsr_el1, 0x60000005u);  // the PSTATE it came from
    EXPECT_EQ(e.pc, kVbar + 0x200);      // current EL with SP_EL1
    EXPECT_EQ(e.pstate, 0x600003c5u);    // EL1h, DAIF masked, NZCV kept
}

TEST(ExceptionEntry, DataAbortOnAStoreSetsWnR) {
    EXPECT_EQ(take(InjectKind::DataAbort, kEl1h, true).esr_el1, 0x96000050u);
}

TEST(ExceptionEntry, InstructionAbortFarIsThePc) {
    const ExceptionEntry e = take(InjectKind::InstructionAbort, kEl1h);
    EXPECT_EQ(e.esr_el1, 0x86000010u);
    EXPECT_EQ(e.far_el1, kPc);
    EXPECT_EQ(e.elr_el1, kPc);
}

TEST(ExceptionEntry, FromEl0TheClassesAreLowerEl) {
    EXPECT_EQ(take(InjectKind::DataAbort, kEl0t).esr_el1, 0x92000010u);
    EXPECT_EQ(take(InjectKind::InstructionAbort, kEl0t).esr_el1, 0x82000010u);
}

TEST(ExceptionEntry, UnknownReasonHasIlSetAndLeavesFar) {
    const ExceptionEntry e = take(InjectKind::Undefined, kEl1h);
    EXPECT_EQ(e.esr_el1, 0x02000000u);
    EXPECT_FALSE(e.writes_far);
    EXPECT_EQ(e.elr_el1, kPc);
}

TEST(ExceptionEntry, VectorOffsets) {
    EXPECT_EQ(take(InjectKind::DataAbort, kEl1t).pc, kVbar + 0x000);
    EXPECT_EQ(take(InjectKind::DataAbort, kEl1h).pc, kVbar + 0x200);
    EXPECT_EQ(take(InjectKind::DataAbort, kEl0t).pc, kVbar + 0x400);
    EXPECT_EQ(take(InjectKind::DataAbort, kAarch32User).pc, kVbar + 0x600);
}

TEST(ExceptionEntry, VbarLowBitsAreRes0) {
    const ExceptionEntry e = take_exception_to_el1({InjectKind::Undefined, kPc, 0, false},
                                                   {kEl1h, 0, kVbar | 0x7ff}, {});
    EXPECT_EQ(e.pc, kVbar + 0x200);
}

TEST(ExceptionEntry, FromAArch32TheReturnAddressIs32Bits) {
    const ExceptionEntry e =
        take_exception_to_el1({InjectKind::Undefined, 0xffffffff00008000ull, 0, false},
                              {kAarch32User, kSctlrReset, kVbar}, {});
    EXPECT_EQ(e.elr_el1, 0x8000u);
    EXPECT_EQ(e.pstate, 0x3c5u);  // AArch64 EL1h: M[4] = 0
}

TEST(ExceptionEntry, SsIlBtypeAndUaoAreCleared) {
    const std::uint64_t from = kEl1h | (1ull << 21) | (1ull << 20) | (3ull << 10) | (1ull << 23);
    const El1Features all{true, true, true, true, true, true};
    EXPECT_EQ(take(InjectKind::DataAbort, from, false, all).pstate &
                  ((1ull << 21) | (1ull << 20) | (3ull << 10) | (1ull << 23)),
              0u);
}

TEST(ExceptionEntry, DitIsKept) {
    EXPECT_EQ(take(InjectKind::DataAbort, kEl1h | (1ull << 24)).pstate, 0x010003c5u);
}

TEST(ExceptionEntry, PanIsSetWhenSpanIsZero) {
    El1Features f;
    f.pan = true;
    EXPECT_EQ(take(InjectKind::DataAbort, kEl1h, false, f, kSctlrReset & ~(1ull << 23)).pstate,
              0x004003c5u);
    // SPAN = 1: PAN is left as it was.
    EXPECT_EQ(take(InjectKind::DataAbort, kEl1h, false, f, kSctlrReset).pstate, 0x3c5u);
    EXPECT_EQ(take(InjectKind::DataAbort, kEl1h | (1ull << 22), false, f, kSctlrReset).pstate,
              0x004003c5u);
    // Without FEAT_PAN the bit stays 0.
    EXPECT_EQ(take(InjectKind::DataAbort, kEl1h, false, {}, 0).pstate, 0x3c5u);
}

TEST(ExceptionEntry, SsbsFollowsDssbs) {
    El1Features f;
    f.ssbs = true;
    EXPECT_EQ(take(InjectKind::DataAbort, kEl1h, false, f, kSctlrReset | (1ull << 44)).pstate,
              0x13c5u);
    EXPECT_EQ(take(InjectKind::DataAbort, kEl1h | (1ull << 12), false, f, kSctlrReset).pstate,
              0x3c5u);
}

TEST(ExceptionEntry, TcoIsSetWithMte) {
    El1Features f;
    f.mte = true;
    EXPECT_EQ(take(InjectKind::DataAbort, kEl1h, false, f).pstate, 0x020003c5u);
}

TEST(ExceptionEntry, AllintIsSetUnlessSpintmask) {
    El1Features f;
    f.nmi = true;
    EXPECT_EQ(take(InjectKind::DataAbort, kEl1h, false, f).pstate, 0x23c5u);
    EXPECT_EQ(take(InjectKind::DataAbort, kEl1h, false, f, kSctlrReset | (1ull << 62)).pstate,
              0x3c5u);
}

static_assert(el1_sync_vector_offset(0x3c5) == 0x200);
static_assert(injected_esr({InjectKind::DataAbort, 0, 0, false}, 0x5) == 0x96000010);

TEST(ExceptionEntry, AbortForExitMatchesTheAccess) {
    EXPECT_EQ(abort_for_exit(make_exit(exit::MmioRead{kVa, 4, 1, 4, 0}), kPc, kVa).kind,
              InjectKind::DataAbort);
    EXPECT_TRUE(abort_for_exit(make_exit(exit::MmioWrite{kVa, 0, 4, 0}), kPc, kVa).write);
    const InjectedException fetch =
        abort_for_exit(make_exit(exit::NestedPageFault{kVa, exit::kAccessExecute}), kVa, kVa);
    EXPECT_EQ(fetch.kind, InjectKind::InstructionAbort);
    EXPECT_EQ(fetch.far, kVa);
    const InjectedException stp = abort_for_exit(
        make_exit(exit::NestedPageFault{kVa, exit::kAccessWrite | exit::kAccessNoSyndrome}), kPc,
        kVa + 8);
    EXPECT_EQ(stp.kind, InjectKind::DataAbort);
    EXPECT_TRUE(stp.write);
    EXPECT_EQ(stp.far, kVa + 8);
    EXPECT_EQ(stp.address, kPc);
}
