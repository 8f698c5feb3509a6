// classify_sync() on every exception class it decodes, with syndromes built by
// hand from the Arm ARM (DDI 0487):
//  - ESR_EL2 (D17.2.37): EC [31:26], IL [25], ISS [24:0]; the ISS layouts are
//    listed at the top of test_iss.cpp.
//  - EC values: 0x01 WFx, 0x16 HVC64, 0x17 SMC64, 0x18 MSR/MRS, 0x20/0x21
//    instruction abort (lower/same EL), 0x24/0x25 data abort (lower/same EL).
//  - HPFAR_EL2 (D17.2.53): IPA[51:12] from bit 4; FAR_EL2 the faulting VA,
//    UNKNOWN when FnV = 1.
//  - Preferred return addresses (D1.3.x "exception entry"): a trapped SMC
//    (HCR_EL2.TSC), MSR/MRS, WFx and a stage-2 data abort leave ELR_EL2 on the
//    trapping instruction; HVC leaves it on the next one.
//  - ICC_SGI1R_EL1 (GICv3, IHI 0069, 12.11.x "ICC_SGI1R_EL1"): TargetList
//    [15:0], Aff1 [23:16], INTID [27:24], Aff2 [39:32], IRM [40], RS [47:44],
//    Aff3 [55:48]; encoded op0 3, op1 0, CRn 12, CRm 11, op2 5 (ICC_ASGI1R_EL1
//    op2 6, ICC_SGI0R_EL1 op2 7).
#include <gtest/gtest.h>

#include <cstdint>

#include "armvcpu/classify.hpp"

using namespace armvcpu;

namespace {

constexpr unsigned kEcWfx = 0x01;
constexpr unsigned kEcHvc64 = 0x16;
constexpr unsigned kEcSmc64 = 0x17;
constexpr unsigned kEcSysReg = 0x18;
constexpr unsigned kEcIabtLower = 0x20;
constexpr unsigned kEcIabtSame = 0x21;
constexpr unsigned kEcDabtLower = 0x24;
constexpr unsigned kEcDabtSame = 0x25;

constexpr std::uint64_t esr_of(unsigned ec, std::uint32_t iss, bool il = true) {
    return (std::uint64_t{ec} << 26) | (il ? (1ull << 25) : 0) | iss;
}

// Data Abort ISS fields at their Arm ARM positions.
struct Dabt {
    unsigned isv = 1, sas = 2, sse = 0, srt = 0, sf = 0, fnv = 0, ea = 0, cm = 0, s1ptw = 0,
             wnr = 0, dfsc = 0b000111;  // translation fault, level 3
    constexpr std::uint32_t iss() const {
        return (isv << 24) | (sas << 22) | (sse << 21) | (srt << 16) | (sf << 15) | (fnv << 10) |
               (ea << 9) | (cm << 8) | (s1ptw << 7) | (wnr << 6) | dfsc;
    }
};

// Instruction Abort ISS: FnV [10], EA [9], S1PTW [7], IFSC [5:0].
constexpr std::uint32_t iabt_iss(unsigned ifsc, unsigned fnv = 0, unsigned ea = 0,
                                 unsigned s1ptw = 0) {
    return (fnv << 10) | (ea << 9) | (s1ptw << 7) | ifsc;
}

// MSR/MRS ISS.
constexpr std::uint32_t sysreg_iss(unsigned op0, unsigned op1, unsigned crn, unsigned crm,
                                   unsigned op2, unsigned rt, bool read) {
    return (op0 << 20) | (op2 << 17) | (op1 << 14) | (crn << 10) | (rt << 5) | (crm << 1) |
           (read ? 1u : 0u);
}

constexpr std::uint64_t kPc = 0x40080000;
// The faulting IPA used by the data/instruction abort tests, and its syndrome.
constexpr std::uint64_t kIpa = 0x09000010;
constexpr std::uint64_t kHpfar = (kIpa >> 12) << 4;    // 0x90000
constexpr std::uint64_t kFar = 0xffff000012345010ull;  // guest VA; page offset 0x010

TrapFrame frame() {
    TrapFrame f{};
    for (unsigned i = 0; i < TrapFrame::kNumGprs; ++i) f.set_gpr(i, 0x1000 + i);
    f.set_exception_pc(kPc);
    return f;
}

}  // namespace

// ------------------------------------------------------------- data aborts

TEST(ClassifyDataAbort, ReadWithSyndromeIsMmioRead) {
    TrapFrame f = frame();
    Dabt d;  // LDR W3, [Xn]: SAS word, SRT 3, SF 0
    d.srt = 3;
    const ExitReason r = classify_sync(f, {esr_of(kEcDabtLower, d.iss()), kFar, kHpfar});
    ASSERT_EQ(r.kind, ExitKind::MmioRead);
    EXPECT_EQ(r.mmio_read.addr, kIpa);
    EXPECT_EQ(r.mmio_read.width, 4u);
    EXPECT_EQ(r.mmio_read.reg, 3u);
    EXPECT_EQ(r.mmio_read.reg_width, 4u);
    EXPECT_EQ(r.mmio_read.signed_ext, 0u);
    EXPECT_EQ(f.exception_pc(), kPc + 4);  // IL = 1: a 32-bit instruction
}

TEST(ClassifyDataAbort, SignedByteLoadIntoX) {
    TrapFrame f = frame();
    Dabt d;  // LDRSB X9, [Xn]: SAS byte, SSE 1, SF 1
    d.sas = 0;
    d.sse = 1;
    d.sf = 1;
    d.srt = 9;
    const ExitReason r = classify_sync(f, {esr_of(kEcDabtLower, d.iss()), kFar, kHpfar});
    ASSERT_EQ(r.kind, ExitKind::MmioRead);
    EXPECT_EQ(r.mmio_read.width, 1u);
    EXPECT_EQ(r.mmio_read.reg, 9u);
    EXPECT_EQ(r.mmio_read.reg_width, 8u);
    EXPECT_EQ(r.mmio_read.signed_ext, 1u);
    EXPECT_EQ(f.exception_pc(), kPc + 4);
    // And the completion gives the architectural result.
    complete_mmio_read(f, r.mmio_read, 0x80);
    EXPECT_EQ(f.gpr(9), 0xffffffffffffff80ull);
}

TEST(ClassifyDataAbort, EveryAccessSize) {
    const std::uint32_t widths[] = {1, 2, 4, 8};
    for (unsigned sas = 0; sas < 4; ++sas) {
        TrapFrame f = frame();
        Dabt d;
        d.sas = sas;
        d.sf = 1;
        const ExitReason r = classify_sync(f, {esr_of(kEcDabtLower, d.iss()), kFar, kHpfar});
        ASSERT_EQ(r.kind, ExitKind::MmioRead);
        EXPECT_EQ(r.mmio_read.width, widths[sas]) << "SAS " << sas;
    }
}

TEST(ClassifyDataAbort, WriteDataIsMaskedToTheAccessSize) {
    const std::uint64_t rt = 0x1122334455667788ull;
    const std::uint64_t expected[] = {0x88, 0x7788, 0x55667788, 0x1122334455667788ull};
    for (unsigned sas = 0; sas < 4; ++sas) {
        TrapFrame f = frame();
        f.set_gpr(5, rt);
        Dabt d;  // STR{B,H,} W5 / STR X5
        d.sas = sas;
        d.srt = 5;
        d.wnr = 1;
        d.sf = sas == 3 ? 1 : 0;
        const ExitReason r = classify_sync(f, {esr_of(kEcDabtLower, d.iss()), kFar, kHpfar});
        ASSERT_EQ(r.kind, ExitKind::MmioWrite) << "SAS " << sas;
        EXPECT_EQ(r.mmio_write.addr, kIpa);
        EXPECT_EQ(r.mmio_write.data, expected[sas]) << "SAS " << sas;
        EXPECT_EQ(r.mmio_write.width, 1u << sas);
        EXPECT_EQ(f.exception_pc(), kPc + 4);
    }
}

TEST(ClassifyDataAbort, HalfwordWriteOfX5) {
    TrapFrame f = frame();
    f.set_gpr(5, 0x1122334455667788ull);
    Dabt d;
    d.sas = 1;
    d.srt = 5;
    d.wnr = 1;
    const ExitReason r = classify_sync(f, {esr_of(kEcDabtLower, d.iss()), kFar, kHpfar});
    ASSERT_EQ(r.kind, ExitKind::MmioWrite);
    EXPECT_EQ(r.mmio_write.data, 0x7788u);
    EXPECT_EQ(r.mmio_write.width, 2u);
}

// STR WZR: SRT 31 reads as zero, not as SP or a stale frame slot.
TEST(ClassifyDataAbort, WriteFromXzrIsZero) {
    TrapFrame f = frame();
    f.sp_el0 = 0xdeadbeef;
    Dabt d;
    d.srt = 31;
    d.wnr = 1;
    const ExitReason r = classify_sync(f, {esr_of(kEcDabtLower, d.iss()), kFar, kHpfar});
    ASSERT_EQ(r.kind, ExitKind::MmioWrite);
    EXPECT_EQ(r.mmio_write.data, 0u);
}

// A permission fault (e.g. a write to a read-only mapping) is still an
// emulatable access when the syndrome is valid.
TEST(ClassifyDataAbort, PermissionFaultWithSyndromeIsEmulated) {
    TrapFrame f = frame();
    f.set_gpr(2, 0xabcd);
    Dabt d;
    d.dfsc = 0b001111;  // permission fault, level 3
    d.wnr = 1;
    d.srt = 2;
    d.sas = 1;
    const ExitReason r = classify_sync(f, {esr_of(kEcDabtLower, d.iss()), kFar, kHpfar});
    ASSERT_EQ(r.kind, ExitKind::MmioWrite);
    EXPECT_EQ(r.mmio_write.data, 0xabcdu);
}

// ISV = 0 (e.g. LDP, or a load with writeback): SAS/SSE/SRT/SF are not valid,
// so the access is not decoded and the PC stays on the instruction.
TEST(ClassifyDataAbort, NoSyndromeIsANestedPageFault) {
    for (unsigned wnr = 0; wnr < 2; ++wnr) {
        TrapFrame f = frame();
        Dabt d;
        d.isv = 0;
        d.wnr = wnr;
        const ExitReason r = classify_sync(f, {esr_of(kEcDabtLower, d.iss()), kFar, kHpfar});
        ASSERT_EQ(r.kind, ExitKind::NestedPageFault);
        EXPECT_EQ(r.nested_page_fault.addr, kIpa);
        const std::uint64_t dir = wnr ? exit::kAccessWrite : exit::kAccessRead;
        EXPECT_EQ(r.nested_page_fault.access_flags, dir | exit::kAccessNoSyndrome);
        EXPECT_EQ(f.exception_pc(), kPc);
    }
}

// The ISV = 0 decision must not look at the invalid fields at all.
TEST(ClassifyDataAbort, NoSyndromeIgnoresGarbageInTheInvalidFields) {
    TrapFrame f = frame();
    Dabt d;
    d.isv = 0;
    d.sas = 3;
    d.sse = 1;
    d.srt = 31;
    d.sf = 1;
    const ExitReason r = classify_sync(f, {esr_of(kEcDabtLower, d.iss()), kFar, kHpfar});
    ASSERT_EQ(r.kind, ExitKind::NestedPageFault);
    EXPECT_NE(r.nested_page_fault.access_flags & exit::kAccessNoSyndrome, 0u);
    EXPECT_EQ(f.exception_pc(), kPc);
}

// S1PTW: stage 2 faulted on the guest's own stage-1 walk (ISV is 0 then).
TEST(ClassifyDataAbort, Stage1WalkIsANestedPageFault) {
    TrapFrame f = frame();
    Dabt d;
    d.isv = 0;
    d.s1ptw = 1;
    const ExitReason r = classify_sync(f, {esr_of(kEcDabtLower, d.iss()), kFar, kHpfar});
    ASSERT_EQ(r.kind, ExitKind::NestedPageFault);
    EXPECT_NE(r.nested_page_fault.access_flags & exit::kAccessStage1Walk, 0u);
    EXPECT_NE(r.nested_page_fault.access_flags & exit::kAccessNoSyndrome, 0u);
    EXPECT_EQ(f.exception_pc(), kPc);
}

TEST(ClassifyDataAbort, Stage1WalkIsNeverEmulatedEvenWithIsv) {
    TrapFrame f = frame();
    Dabt d;
    d.s1ptw = 1;
    const ExitReason r = classify_sync(f, {esr_of(kEcDabtLower, d.iss()), kFar, kHpfar});
    ASSERT_EQ(r.kind, ExitKind::NestedPageFault);
    EXPECT_EQ(r.nested_page_fault.access_flags, exit::kAccessRead | exit::kAccessStage1Walk);
    EXPECT_EQ(f.exception_pc(), kPc);
}

// FnV = 1: FAR_EL2 is UNKNOWN, only the page from HPFAR_EL2 is known.
TEST(ClassifyDataAbort, FarNotValidIsPageOnly) {
    TrapFrame f = frame();
    Dabt d;
    d.fnv = 1;
    const ExitReason r =
        classify_sync(f, {esr_of(kEcDabtLower, d.iss()), 0xdeadbeefcafef00dull, kHpfar});
    ASSERT_EQ(r.kind, ExitKind::NestedPageFault);
    EXPECT_EQ(r.nested_page_fault.addr, 0x09000000u);
    EXPECT_EQ(r.nested_page_fault.addr & 0xfffu, 0u);
    EXPECT_NE(r.nested_page_fault.access_flags & exit::kAccessPageOnly, 0u);
    EXPECT_EQ(f.exception_pc(), kPc);
}

// CM = 1: a cache maintenance instruction (for which WnR reads 1) is not a
// device access.
TEST(ClassifyDataAbort, CacheMaintenanceIsNotEmulated) {
    TrapFrame f = frame();
    Dabt d;
    d.cm = 1;
    d.wnr = 1;
    const ExitReason r = classify_sync(f, {esr_of(kEcDabtLower, d.iss()), kFar, kHpfar});
    ASSERT_EQ(r.kind, ExitKind::NestedPageFault);
    EXPECT_EQ(r.nested_page_fault.addr, kIpa);
    EXPECT_NE(r.nested_page_fault.access_flags & exit::kAccessWrite, 0u);
    EXPECT_EQ(f.exception_pc(), kPc);
}

TEST(ClassifyDataAbort, AlignmentFaultIsAGuestException) {
    TrapFrame f = frame();
    Dabt d;
    d.dfsc = 0b100001;
    const std::uint64_t esr = esr_of(kEcDabtLower, d.iss());
    const ExitReason r = classify_sync(f, {esr, kFar, kHpfar});
    ASSERT_EQ(r.kind, ExitKind::GuestException);
    EXPECT_EQ(r.guest_exception.esr, esr);
    EXPECT_EQ(r.guest_exception.ec, kEcDabtLower);
    EXPECT_EQ(r.guest_exception.iss, d.iss());
    EXPECT_EQ(r.guest_exception.pc, kPc);
    EXPECT_EQ(f.exception_pc(), kPc);
}

TEST(ClassifyDataAbort, ExternalAbortIsAGuestException) {
    // EA = 1 with a synchronous external abort (DFSC 0b010000) ...
    TrapFrame f = frame();
    Dabt d;
    d.ea = 1;
    d.dfsc = 0b010000;
    EXPECT_EQ(classify_sync(f, {esr_of(kEcDabtLower, d.iss()), kFar, kHpfar}).kind,
              ExitKind::GuestException);
    EXPECT_EQ(f.exception_pc(), kPc);
    // ... and EA = 1 whatever the DFSC says.
    TrapFrame g = frame();
    Dabt e;
    e.ea = 1;
    EXPECT_EQ(classify_sync(g, {esr_of(kEcDabtLower, e.iss()), kFar, kHpfar}).kind,
              ExitKind::GuestException);
    EXPECT_EQ(g.exception_pc(), kPc);
    // An external abort on a table walk (0b010101) without EA.
    TrapFrame h = frame();
    Dabt w;
    w.dfsc = 0b010101;
    EXPECT_EQ(classify_sync(h, {esr_of(kEcDabtLower, w.iss()), kFar, kHpfar}).kind,
              ExitKind::GuestException);
}

TEST(ClassifyDataAbort, AddressSizeAndTlbConflictAreGuestExceptions) {
    for (unsigned dfsc : {0b000000u, 0b000011u, 0b110000u, 0b010001u}) {
        TrapFrame f = frame();
        Dabt d;
        d.dfsc = dfsc;
        EXPECT_EQ(classify_sync(f, {esr_of(kEcDabtLower, d.iss()), kFar, kHpfar}).kind,
                  ExitKind::GuestException)
            << "DFSC " << dfsc;
        EXPECT_EQ(f.exception_pc(), kPc);
    }
}

// EC 0x25 is a data abort taken from EL2 itself, never from the guest.
TEST(ClassifyDataAbort, SameElDataAbortIsAGuestException) {
    TrapFrame f = frame();
    const ExitReason r = classify_sync(f, {esr_of(kEcDabtSame, Dabt{}.iss()), kFar, kHpfar});
    ASSERT_EQ(r.kind, ExitKind::GuestException);
    EXPECT_EQ(r.guest_exception.ec, kEcDabtSame);
    EXPECT_EQ(f.exception_pc(), kPc);
}

// IL = 0 (a 16-bit T32 instruction): the PC moves by 2.
TEST(ClassifyDataAbort, SixteenBitInstructionAdvancesByTwo) {
    TrapFrame f = frame();
    const ExitReason r =
        classify_sync(f, {esr_of(kEcDabtLower, Dabt{}.iss(), false), kFar, kHpfar});
    ASSERT_EQ(r.kind, ExitKind::MmioRead);
    EXPECT_EQ(f.exception_pc(), kPc + 2);
}

// ------------------------------------------------------ instruction aborts

TEST(ClassifyInstrAbort, TranslationFaultIsAnExecuteNestedPageFault) {
    TrapFrame f = frame();
    const ExitReason r = classify_sync(f, {esr_of(kEcIabtLower, iabt_iss(0b000110)), kFar, kHpfar});
    ASSERT_EQ(r.kind, ExitKind::NestedPageFault);
    EXPECT_EQ(r.nested_page_fault.addr, kIpa);
    EXPECT_EQ(r.nested_page_fault.access_flags, exit::kAccessExecute);
    EXPECT_EQ(f.exception_pc(), kPc);
}

TEST(ClassifyInstrAbort, PermissionAndAccessFlagFaultsToo) {
    for (unsigned ifsc : {0b001111u, 0b001011u}) {
        TrapFrame f = frame();
        const ExitReason r = classify_sync(f, {esr_of(kEcIabtLower, iabt_iss(ifsc)), kFar, kHpfar});
        ASSERT_EQ(r.kind, ExitKind::NestedPageFault) << ifsc;
        EXPECT_EQ(r.nested_page_fault.access_flags, exit::kAccessExecute);
    }
}

TEST(ClassifyInstrAbort, Stage1WalkAndFnv) {
    TrapFrame f = frame();
    ExitReason r =
        classify_sync(f, {esr_of(kEcIabtLower, iabt_iss(0b000111, 0, 0, 1)), kFar, kHpfar});
    ASSERT_EQ(r.kind, ExitKind::NestedPageFault);
    EXPECT_EQ(r.nested_page_fault.access_flags, exit::kAccessExecute | exit::kAccessStage1Walk);

    r = classify_sync(f, {esr_of(kEcIabtLower, iabt_iss(0b000111, 1)), kFar, kHpfar});
    ASSERT_EQ(r.kind, ExitKind::NestedPageFault);
    EXPECT_EQ(r.nested_page_fault.addr, 0x09000000u);
    EXPECT_EQ(r.nested_page_fault.access_flags, exit::kAccessExecute | exit::kAccessPageOnly);
    EXPECT_EQ(f.exception_pc(), kPc);
}

TEST(ClassifyInstrAbort, ExternalAbortsAndSameElAreGuestExceptions) {
    TrapFrame f = frame();
    EXPECT_EQ(classify_sync(f, {esr_of(kEcIabtLower, iabt_iss(0b010000)), kFar, kHpfar}).kind,
              ExitKind::GuestException);
    EXPECT_EQ(classify_sync(f, {esr_of(kEcIabtLower, iabt_iss(0b000111, 0, 1)), kFar, kHpfar}).kind,
              ExitKind::GuestException);
    EXPECT_EQ(classify_sync(f, {esr_of(kEcIabtSame, iabt_iss(0b000111)), kFar, kHpfar}).kind,
              ExitKind::GuestException);
    EXPECT_EQ(f.exception_pc(), kPc);
}

// ----------------------------------------------------------------- MSR/MRS

// MRS X7, ID_AA64MMFR0_EL1 (op0 3, op1 0, CRn 0, CRm 7, op2 0).
TEST(ClassifySysReg, MrsIsSysRegRead) {
    TrapFrame f = frame();
    const std::uint32_t iss = sysreg_iss(3, 0, 0, 7, 0, 7, true);
    EXPECT_EQ(esr_of(kEcSysReg, iss), 0x623000EFu);
    const ExitReason r = classify_sync(f, {esr_of(kEcSysReg, iss), 0, 0});
    ASSERT_EQ(r.kind, ExitKind::SysRegRead);
    EXPECT_EQ(r.sysreg_read.addr, iss & 0x3FFC1Eu);
    EXPECT_EQ(r.sysreg_read.addr, 0x30000Eu);
    EXPECT_EQ(r.sysreg_read.reg, 7u);
    EXPECT_EQ(f.exception_pc(), kPc + 4);
}

// MSR SCTLR_EL1, X9 (op0 3, op1 0, CRn 1, CRm 0, op2 0).
TEST(ClassifySysReg, MsrIsSysRegWriteWithRtsValue) {
    TrapFrame f = frame();
    f.set_gpr(9, 0x30d00801);
    const std::uint32_t iss = sysreg_iss(3, 0, 1, 0, 0, 9, false);
    const ExitReason r = classify_sync(f, {esr_of(kEcSysReg, iss), 0, 0});
    ASSERT_EQ(r.kind, ExitKind::SysRegWrite);
    EXPECT_EQ(r.sysreg_write.addr, 0x300400u);
    EXPECT_EQ(r.sysreg_write.value, 0x30d00801u);
    EXPECT_EQ(f.exception_pc(), kPc + 4);
}

TEST(ClassifySysReg, MsrFromXzrWritesZero) {
    TrapFrame f = frame();
    f.sp_el0 = 0x1234;
    const ExitReason r =
        classify_sync(f, {esr_of(kEcSysReg, sysreg_iss(3, 0, 1, 0, 0, 31, false)), 0, 0});
    ASSERT_EQ(r.kind, ExitKind::SysRegWrite);
    EXPECT_EQ(r.sysreg_write.value, 0u);
}

// ICC_EOIR1_EL1 (op0 3, op1 0, CRn 12, CRm 12, op2 1) sits next to the SGI
// registers but is an ordinary register write.
TEST(ClassifySysReg, NeighbourOfTheSgiRegistersIsAPlainWrite) {
    TrapFrame f = frame();
    const ExitReason r =
        classify_sync(f, {esr_of(kEcSysReg, sysreg_iss(3, 0, 12, 12, 1, 4, false)), 0, 0});
    ASSERT_EQ(r.kind, ExitKind::SysRegWrite);
    EXPECT_EQ(r.sysreg_write.addr, 0x323018u);
    EXPECT_EQ(r.sysreg_write.value, 0x1004u);
}

TEST(ClassifySysReg, Sgi1rWriteIsSendIpi) {
    TrapFrame f = frame();
    // INTID 0xB, TargetList 0b0101 (Aff0 = RS*16 + 0 and + 2), Aff1 0x12,
    // Aff2 0x34, RS 3, Aff3 0x56, IRM 0.
    const std::uint64_t value = (0x56ull << 48) | (0x3ull << 44) | (0x34ull << 32) |
                                (0xBull << 24) | (0x12ull << 16) | 0x0005;
    EXPECT_EQ(value, 0x005630340B120005ull);
    f.set_gpr(2, value);
    const ExitReason r =
        classify_sync(f, {esr_of(kEcSysReg, sysreg_iss(3, 0, 12, 11, 5, 2, false)), 0, 0});
    ASSERT_EQ(r.kind, ExitKind::SendIpi);
    EXPECT_EQ(r.send_ipi.vector, 0xBu);
    EXPECT_EQ(r.send_ipi.target_cpu_aux, 0x5u);
    // classify.hpp: Aff3.Aff2.Aff1.(RS*16) in MPIDR layout (Aff3 [39:32],
    // Aff2 [23:16], Aff1 [15:8], Aff0 [7:0]).
    EXPECT_EQ(r.send_ipi.target_cpu,
              (0x56ull << 32) | (0x34ull << 16) | (0x12ull << 8) | (3ull << 4));
    EXPECT_EQ(r.send_ipi.target_cpu, 0x5600341230ull);
    EXPECT_EQ(r.send_ipi.send_to_all, 0u);
    EXPECT_EQ(r.send_ipi.send_to_self, 0u);
    EXPECT_EQ(f.exception_pc(), kPc + 4);
}

TEST(ClassifySysReg, Sgi1rEachFieldAlone) {
    struct Case {
        std::uint64_t value;
        std::uint64_t vector, target_cpu, aux;
    } cases[] = {
        {0xfull << 24, 0xf, 0, 0},             // INTID 15
        {0xffffull, 0, 0, 0xffff},             // TargetList
        {0xffull << 16, 0, 0xffull << 8, 0},   // Aff1 -> MPIDR [15:8]
        {0xffull << 32, 0, 0xffull << 16, 0},  // Aff2 -> MPIDR [23:16]
        {0xffull << 48, 0, 0xffull << 32, 0},  // Aff3 -> MPIDR [39:32]
        {0xfull << 44, 0, 0xf0, 0},            // RS -> Aff0 = RS * 16
        {0xfull << 28, 0, 0, 0},               // [31:28] RES0
        {0xffull << 56, 0, 0, 0},              // [63:56] RES0
    };
    for (const Case& c : cases) {
        TrapFrame f = frame();
        f.set_gpr(1, c.value);
        const ExitReason r =
            classify_sync(f, {esr_of(kEcSysReg, sysreg_iss(3, 0, 12, 11, 5, 1, false)), 0, 0});
        ASSERT_EQ(r.kind, ExitKind::SendIpi);
        EXPECT_EQ(r.send_ipi.vector, c.vector) << std::hex << c.value;
        EXPECT_EQ(r.send_ipi.target_cpu, c.target_cpu) << std::hex << c.value;
        EXPECT_EQ(r.send_ipi.target_cpu_aux, c.aux) << std::hex << c.value;
        EXPECT_EQ(r.send_ipi.send_to_all, 0u);
    }
}

// IRM = 1: "Interrupts routed to all PEs in the system, excluding self".
TEST(ClassifySysReg, Sgi1rIrmIsSendToAll) {
    TrapFrame f = frame();
    f.set_gpr(3, (1ull << 40) | (3ull << 24) | 0x1);
    const ExitReason r =
        classify_sync(f, {esr_of(kEcSysReg, sysreg_iss(3, 0, 12, 11, 5, 3, false)), 0, 0});
    ASSERT_EQ(r.kind, ExitKind::SendIpi);
    EXPECT_EQ(r.send_ipi.send_to_all, 1u);
    EXPECT_EQ(r.send_ipi.send_to_self, 0u);
    EXPECT_EQ(r.send_ipi.vector, 3u);
    EXPECT_EQ(f.exception_pc(), kPc + 4);
}

TEST(ClassifySysReg, Asgi1rAndSgi0rAreSendIpiToo) {
    for (unsigned op2 : {6u, 7u}) {
        TrapFrame f = frame();
        f.set_gpr(4, (0x2ull << 24) | 0x2);
        const ExitReason r =
            classify_sync(f, {esr_of(kEcSysReg, sysreg_iss(3, 0, 12, 11, op2, 4, false)), 0, 0});
        ASSERT_EQ(r.kind, ExitKind::SendIpi) << "op2 " << op2;
        EXPECT_EQ(r.send_ipi.vector, 2u);
        EXPECT_EQ(r.send_ipi.target_cpu_aux, 2u);
        EXPECT_EQ(f.exception_pc(), kPc + 4);
    }
}

// Only a write sends an SGI; the (write-only) register read is reported as is.
TEST(ClassifySysReg, Sgi1rReadIsNotAnIpi) {
    TrapFrame f = frame();
    const ExitReason r =
        classify_sync(f, {esr_of(kEcSysReg, sysreg_iss(3, 0, 12, 11, 5, 2, true)), 0, 0});
    ASSERT_EQ(r.kind, ExitKind::SysRegRead);
    EXPECT_EQ(r.sysreg_read.addr, 0x3A3016u);
}

TEST(ClassifySysReg, DecodeSgiRegisterDirectly) {
    constexpr exit::SendIpi ipi = decode_sgi_register(0x005630340B120005ull);
    static_assert(ipi.vector == 0xB);
    static_assert(ipi.target_cpu == 0x5600341230ull);
    static_assert(ipi.target_cpu_aux == 5);
    static_assert(ipi.send_to_all == 0);
    static_assert(decode_sgi_register(1ull << 40).send_to_all == 1);
    SUCCEED();
}

// ------------------------------------------------------------------- WFx

TEST(ClassifyWfx, WfiIsHaltAndAdvances) {
    TrapFrame f = frame();
    EXPECT_EQ(esr_of(kEcWfx, 0), 0x06000000u);
    EXPECT_EQ(classify_sync(f, {esr_of(kEcWfx, 0b00), 0, 0}).kind, ExitKind::Halt);
    EXPECT_EQ(f.exception_pc(), kPc + 4);
}

TEST(ClassifyWfx, WfeIsNothingAndAdvances) {
    TrapFrame f = frame();
    EXPECT_EQ(classify_sync(f, {esr_of(kEcWfx, 0b01), 0, 0}).kind, ExitKind::Nothing);
    EXPECT_EQ(f.exception_pc(), kPc + 4);
}

TEST(ClassifyWfx, WfitHaltsAndWfetDoesNot) {
    TrapFrame f = frame();
    // WFIT X3: RN 3, RV 1, TI 0b10. WFET X3: TI 0b11.
    EXPECT_EQ(classify_sync(f, {esr_of(kEcWfx, (3u << 5) | (1u << 2) | 0b10), 0, 0}).kind,
              ExitKind::Halt);
    EXPECT_EQ(f.exception_pc(), kPc + 4);
    EXPECT_EQ(classify_sync(f, {esr_of(kEcWfx, (3u << 5) | (1u << 2) | 0b11), 0, 0}).kind,
              ExitKind::Nothing);
    EXPECT_EQ(f.exception_pc(), kPc + 8);
}

// ------------------------------------------------------------- SMC / HVC

TEST(ClassifySmc, PsciOverSmcIsHandledAndSkipsTheSmc) {
    TrapFrame f = frame();
    f.set_gpr(0, 0x84000000);  // PSCI_VERSION
    const ExitReason r = classify_sync(f, {esr_of(kEcSmc64, 0), 0, 0});
    EXPECT_EQ(r.kind, ExitKind::Nothing);
    EXPECT_EQ(f.gpr(0), 0x10001u);
    // ELR_EL2 pointed at the SMC (HCR_EL2.TSC trap): it must move past it.
    EXPECT_EQ(f.exception_pc(), kPc + 4);
}

TEST(ClassifySmc, PsciExitsOverSmcAlsoSkipTheSmc) {
    TrapFrame f = frame();
    f.set_gpr(0, 0x84000008);  // SYSTEM_OFF
    EXPECT_EQ(classify_sync(f, {esr_of(kEcSmc64, 0), 0, 0}).kind, ExitKind::SystemDown);
    EXPECT_EQ(f.exception_pc(), kPc + 4);
    TrapFrame g = frame();
    g.set_gpr(0, 0xc4000001);  // CPU_SUSPEND (SMC64)
    EXPECT_EQ(classify_sync(g, {esr_of(kEcSmc64, 0), 0, 0}).kind, ExitKind::Halt);
    EXPECT_EQ(g.exception_pc(), kPc + 4);
}

TEST(ClassifySmc, NonPsciSmcIsAHypercallPastTheSmc) {
    // An SMCCC call the core does not implement is a call like an HVC
    // (x0 = function ID, x1.. arguments) that returns past the trapped SMC.
    TrapFrame f = frame();
    f.set_gpr(0, 0x82000010);  // SiP Service Calls (owner 2): not the core's
    f.set_gpr(1, 7);
    const std::uint64_t esr = esr_of(kEcSmc64, 0);
    const ExitReason r = classify_sync(f, {esr, 0, 0});
    ASSERT_EQ(r.kind, ExitKind::Hypercall);
    EXPECT_EQ(r.hypercall.nr, 0x82000010u);
    EXPECT_EQ(r.hypercall.args[0], 7u);
    EXPECT_EQ(f.exception_pc(), kPc + 4);
    // The instruction that made the exit is still the SMC.
    EXPECT_EQ(instruction_address_from_preferred_return(kPc, Esr{esr}), kPc);
    EXPECT_EQ(f.gpr(0), 0x82000010u);  // answered later (claimed, or NOT_SUPPORTED)
}

TEST(ClassifyHvc, NeverMovesThePc) {
    for (std::uint64_t x0 : {0x84000000ull, 0x84000008ull, 0xc4000001ull, 0x84000003ull,
                             0x80000000ull, 0x84000020ull, 0x42ull, 0x82000010ull}) {
        TrapFrame f = frame();
        f.set_gpr(0, x0);
        f.set_gpr(1, 0);  // CPU_ON target 0
        classify_sync(f, {esr_of(kEcHvc64, 0), 0, 0});
        EXPECT_EQ(f.exception_pc(), kPc) << std::hex << x0;
    }
}

TEST(ClassifyHvc, Imm16DoesNotChangeTheDecision) {
    TrapFrame f = frame();
    f.set_gpr(0, 0x84000000);
    EXPECT_EQ(classify_sync(f, {esr_of(kEcHvc64, 0xffff), 0, 0}).kind, ExitKind::Nothing);
    EXPECT_EQ(f.gpr(0), 0x10001u);
}

// ------------------------------------------------------------ other classes

TEST(ClassifyOther, UnknownAndSvcAreGuestExceptions) {
    for (unsigned ec : {0x00u, 0x15u, 0x07u, 0x3cu, 0x2fu}) {
        TrapFrame f = frame();
        const ExitReason r = classify_sync(f, {esr_of(ec, 0x1234), 0, 0});
        ASSERT_EQ(r.kind, ExitKind::GuestException) << ec;
        EXPECT_EQ(r.guest_exception.ec, ec);
        EXPECT_EQ(r.guest_exception.iss, 0x1234u);
        EXPECT_EQ(f.exception_pc(), kPc);
    }
}
