// Class-specific ISS decoding (iss.hpp). Every ISS value below is built by
// hand from the field positions in the Arm ARM (DDI 0487), D17.2.37 "ESR_EL2",
// never from the decoder under test:
//
//  "ISS encoding for an exception from a Data Abort" (EC 0x24/0x25):
//    ISV [24], SAS [23:22], SSE [21], SRT [20:16], SF [15], AR [14], VNCR [13],
//    SET/LST [12:11], FnV [10], EA [9], CM [8], S1PTW [7], WnR [6], DFSC [5:0].
//  "ISS encoding for an exception from an Instruction Abort" (EC 0x20/0x21):
//    SET [12:11], FnV [10], EA [9], S1PTW [7], IFSC [5:0].
//  "ISS encoding for an exception from MSR, MRS, or System instruction execution
//   in AArch64 state" (EC 0x18):
//    Op0 [21:20], Op2 [19:17], Op1 [16:14], CRn [13:10], Rt [9:5], CRm [4:1],
//    Direction [0] (1 = read, MRS).
//  "ISS encoding for an exception from a WF* instruction" (EC 0x01):
//    CV [24], COND [23:20], RN [9:5], RV [2], TI [1:0] (00 WFI, 01 WFE, 10 WFIT,
//    11 WFET).
//  "ISS encoding for an SError exception" (EC 0x2F):
//    IDS [24], IESB [13], AET [12:10], EA [9], DFSC [5:0].
//  "ISS encoding for an exception from a Software Step exception" (EC 0x32/0x33):
//    ISV [24], EX [6], IFSC [5:0].
//  "ISS encoding for an exception from a Watchpoint exception" (EC 0x34/0x35):
//    FnV [10], CM [8], WnR [6], DFSC [5:0].
//  "ISS encoding for an exception from an access to SVE, Advanced SIMD or
//   floating-point functionality" (EC 0x07): CV [24], COND [23:20].
//  HVC/SMC/SVC/BRK: imm16 [15:0].
//
// HPFAR_EL2 (D17.2.53): FIPA holds the faulting IPA from bit 12 up, starting
// at register bit 4: IPA[47:12] in [39:4], and with FEAT_LPA IPA[51:48] in
// [43:40]; NS is bit 63; bits [3:0] are RES0.
#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <ostream>

#include "armvcpu/iss.hpp"
#include "armvcpu/sysreg.hpp"

using namespace armvcpu;

namespace {

// Places `value` in a field of `width` bits whose lowest bit is `lsb`.
constexpr std::uint32_t field(std::uint32_t value, unsigned lsb, unsigned width) {
    return (value & ((1u << width) - 1u)) << lsb;
}

// ---------------------------------------------------------------- Data Abort
struct DataAbortFields {
    unsigned isv = 0, sas = 0, sse = 0, srt = 0, sf = 0, ar = 0, vncr = 0, lst = 0, fnv = 0, ea = 0,
             cm = 0, s1ptw = 0, wnr = 0, dfsc = 0;
    friend bool operator==(const DataAbortFields&, const DataAbortFields&) = default;
};

std::ostream& operator<<(std::ostream& os, const DataAbortFields& f) {
    return os << "{isv " << f.isv << " sas " << f.sas << " sse " << f.sse << " srt " << f.srt
              << " sf " << f.sf << " ar " << f.ar << " vncr " << f.vncr << " lst " << f.lst
              << " fnv " << f.fnv << " ea " << f.ea << " cm " << f.cm << " s1ptw " << f.s1ptw
              << " wnr " << f.wnr << " dfsc " << f.dfsc << "}";
}

// The Arm ARM's positions, typed in from the table (see the top of the file).
constexpr std::uint32_t encode(const DataAbortFields& f) {
    return field(f.isv, 24, 1) | field(f.sas, 22, 2) | field(f.sse, 21, 1) | field(f.srt, 16, 5) |
           field(f.sf, 15, 1) | field(f.ar, 14, 1) | field(f.vncr, 13, 1) | field(f.lst, 11, 2) |
           field(f.fnv, 10, 1) | field(f.ea, 9, 1) | field(f.cm, 8, 1) | field(f.s1ptw, 7, 1) |
           field(f.wnr, 6, 1) | field(f.dfsc, 0, 6);
}

DataAbortFields decode(const DataAbortIss& d) {
    DataAbortFields f;
    f.isv = d.isv();
    f.sas = d.sas();
    f.sse = d.sse();
    f.srt = d.srt();
    f.sf = d.sf();
    f.ar = d.ar();
    f.vncr = d.vncr();
    f.lst = d.lst();
    f.fnv = d.fnv();
    f.ea = d.ea();
    f.cm = d.cm();
    f.s1ptw = d.s1ptw();
    f.wnr = d.wnr();
    f.dfsc = d.dfsc().raw;
    return f;
}

// Every field alone at its largest value: catches a field read from the wrong
// bits or overlapping a neighbour.
DataAbortFields only(unsigned DataAbortFields::*member, unsigned value) {
    DataAbortFields f;
    f.*member = value;
    return f;
}

}  // namespace

TEST(DataAbortIss, EveryFieldAloneDecodesToItselfAndNothingElse) {
    const struct {
        const char* name;
        unsigned DataAbortFields::*member;
        unsigned max;
    } fields[] = {
        {"ISV", &DataAbortFields::isv, 1},   {"SAS", &DataAbortFields::sas, 3},
        {"SSE", &DataAbortFields::sse, 1},   {"SRT", &DataAbortFields::srt, 31},
        {"SF", &DataAbortFields::sf, 1},     {"AR", &DataAbortFields::ar, 1},
        {"VNCR", &DataAbortFields::vncr, 1}, {"LST", &DataAbortFields::lst, 3},
        {"FnV", &DataAbortFields::fnv, 1},   {"EA", &DataAbortFields::ea, 1},
        {"CM", &DataAbortFields::cm, 1},     {"S1PTW", &DataAbortFields::s1ptw, 1},
        {"WnR", &DataAbortFields::wnr, 1},   {"DFSC", &DataAbortFields::dfsc, 63},
    };
    for (const auto& fd : fields) {
        const DataAbortFields f = only(fd.member, fd.max);
        EXPECT_EQ(decode(DataAbortIss{encode(f)}), f) << fd.name;
    }
}

TEST(DataAbortIss, SingleBitPositionsFromTheManual) {
    // Each single-bit field checked against its literal bit number.
    EXPECT_TRUE(DataAbortIss{1u << 24}.isv());
    EXPECT_TRUE(DataAbortIss{1u << 21}.sse());
    EXPECT_TRUE(DataAbortIss{1u << 15}.sf());
    EXPECT_TRUE(DataAbortIss{1u << 14}.ar());
    EXPECT_TRUE(DataAbortIss{1u << 13}.vncr());
    EXPECT_TRUE(DataAbortIss{1u << 10}.fnv());
    EXPECT_TRUE(DataAbortIss{1u << 9}.ea());
    EXPECT_TRUE(DataAbortIss{1u << 8}.cm());
    EXPECT_TRUE(DataAbortIss{1u << 7}.s1ptw());
    EXPECT_TRUE(DataAbortIss{1u << 6}.wnr());
    const DataAbortIss none{0};
    EXPECT_FALSE(none.isv());
    EXPECT_FALSE(none.sse());
    EXPECT_FALSE(none.sf());
    EXPECT_FALSE(none.ar());
    EXPECT_FALSE(none.vncr());
    EXPECT_FALSE(none.fnv());
    EXPECT_FALSE(none.ea());
    EXPECT_FALSE(none.cm());
    EXPECT_FALSE(none.s1ptw());
    EXPECT_FALSE(none.wnr());
}

TEST(DataAbortIss, AllOnesDecodesEveryFieldAtItsMaximum) {
    const DataAbortIss d{0x1ffffff};
    EXPECT_TRUE(d.isv());
    EXPECT_EQ(d.sas(), 3u);
    EXPECT_TRUE(d.sse());
    EXPECT_EQ(d.srt(), 31u);
    EXPECT_TRUE(d.sf());
    EXPECT_TRUE(d.ar());
    EXPECT_TRUE(d.vncr());
    EXPECT_EQ(d.lst(), 3u);
    EXPECT_TRUE(d.fnv());
    EXPECT_TRUE(d.ea());
    EXPECT_TRUE(d.cm());
    EXPECT_TRUE(d.s1ptw());
    EXPECT_TRUE(d.wnr());
    EXPECT_EQ(d.dfsc().raw, 0x3fu);
}

// SAS: 0b00 byte, 0b01 halfword, 0b10 word, 0b11 doubleword.
TEST(DataAbortIss, AccessSizeFromSas) {
    EXPECT_EQ(DataAbortIss{field(0, 22, 2)}.access_size(), 1u);
    EXPECT_EQ(DataAbortIss{field(1, 22, 2)}.access_size(), 2u);
    EXPECT_EQ(DataAbortIss{field(2, 22, 2)}.access_size(), 4u);
    EXPECT_EQ(DataAbortIss{field(3, 22, 2)}.access_size(), 8u);
}

// A stage-2 translation fault at level 3 on "LDRSH X3, [X2]": ISV 1, SAS 0b01,
// SSE 1, SRT 3, SF 1, WnR 0, DFSC 0b000111.
TEST(DataAbortIss, RealisticSignedHalfwordLoad) {
    constexpr std::uint32_t iss =
        (1u << 24) | (1u << 22) | (1u << 21) | (3u << 16) | (1u << 15) | 0b000111u;
    static_assert(iss == 0x1638007);
    constexpr DataAbortIss d{iss};
    static_assert(d.isv() && d.sse() && d.sf() && !d.wnr());
    static_assert(d.access_size() == 2 && d.srt() == 3);
    static_assert(d.dfsc().kind() == FaultStatus::Translation && d.dfsc().level() == 3);
    SUCCEED();
}

// ---------------------------------------------------------- Instruction Abort
TEST(InstrAbortIss, FieldsAtTheirPositions) {
    const InstrAbortIss set{field(3, 11, 2)};
    EXPECT_EQ(set.set(), 3u);
    EXPECT_FALSE(set.fnv());
    EXPECT_FALSE(set.ea());
    EXPECT_FALSE(set.s1ptw());
    EXPECT_EQ(set.ifsc().raw, 0u);

    const InstrAbortIss fnv{1u << 10};
    EXPECT_TRUE(fnv.fnv());
    EXPECT_EQ(fnv.set(), 0u);
    EXPECT_FALSE(fnv.ea());

    const InstrAbortIss ea{1u << 9};
    EXPECT_TRUE(ea.ea());
    EXPECT_FALSE(ea.fnv());
    EXPECT_FALSE(ea.s1ptw());

    const InstrAbortIss s1ptw{1u << 7};
    EXPECT_TRUE(s1ptw.s1ptw());
    EXPECT_FALSE(s1ptw.ea());
    EXPECT_EQ(s1ptw.ifsc().raw, 0u);

    const InstrAbortIss ifsc{0b111111};
    EXPECT_EQ(ifsc.ifsc().raw, 0x3fu);
    EXPECT_FALSE(ifsc.s1ptw());
    EXPECT_EQ(ifsc.set(), 0u);
}

// Bits [8] and [6] are RES0 in an instruction abort's ISS (they are CM and
// WnR for data aborts): setting them must not show up in any field.
TEST(InstrAbortIss, Res0BitsDoNotLeakIntoFields) {
    const InstrAbortIss ia{(1u << 8) | (1u << 6)};
    EXPECT_FALSE(ia.s1ptw());
    EXPECT_FALSE(ia.ea());
    EXPECT_FALSE(ia.fnv());
    EXPECT_EQ(ia.ifsc().raw, 0u);
    EXPECT_EQ(ia.set(), 0u);
}

// ------------------------------------------------------------------ MSR/MRS
namespace {
constexpr std::uint32_t sysreg_iss(unsigned op0, unsigned op1, unsigned crn, unsigned crm,
                                   unsigned op2, unsigned rt, unsigned read) {
    return field(op0, 20, 2) | field(op2, 17, 3) | field(op1, 14, 3) | field(crn, 10, 4) |
           field(rt, 5, 5) | field(crm, 1, 4) | field(read, 0, 1);
}
}  // namespace

TEST(SysRegIss, EveryFieldAlone) {
    EXPECT_EQ(SysRegIss{sysreg_iss(3, 0, 0, 0, 0, 0, 0)}.op0(), 3u);
    EXPECT_EQ(SysRegIss{sysreg_iss(0, 7, 0, 0, 0, 0, 0)}.op1(), 7u);
    EXPECT_EQ(SysRegIss{sysreg_iss(0, 0, 15, 0, 0, 0, 0)}.crn(), 15u);
    EXPECT_EQ(SysRegIss{sysreg_iss(0, 0, 0, 15, 0, 0, 0)}.crm(), 15u);
    EXPECT_EQ(SysRegIss{sysreg_iss(0, 0, 0, 0, 7, 0, 0)}.op2(), 7u);
    EXPECT_EQ(SysRegIss{sysreg_iss(0, 0, 0, 0, 0, 31, 0)}.rt(), 31u);
    EXPECT_TRUE(SysRegIss{sysreg_iss(0, 0, 0, 0, 0, 0, 1)}.is_read());

    // Each field at its maximum, with all others zero, reads as zero elsewhere.
    const SysRegIss rt_only{field(31, 5, 5)};
    EXPECT_EQ(rt_only.op0(), 0u);
    EXPECT_EQ(rt_only.op2(), 0u);
    EXPECT_EQ(rt_only.op1(), 0u);
    EXPECT_EQ(rt_only.crn(), 0u);
    EXPECT_EQ(rt_only.crm(), 0u);
    EXPECT_FALSE(rt_only.is_read());
    EXPECT_EQ(rt_only.key(), 0u);
}

// MSR ICC_SGI1R_EL1, X5: op0 3, op1 0, CRn 12, CRm 11, op2 5 (GICv3 IHI 0069,
// "ICC_SGI1R_EL1"), Rt 5, Direction 0.
TEST(SysRegIss, MsrIccSgi1rEl1) {
    const std::uint32_t iss = sysreg_iss(3, 0, 12, 11, 5, 5, 0);
    EXPECT_EQ(iss, 0x3A30B6u);
    const SysRegIss s{iss};
    EXPECT_EQ(s.op0(), 3u);
    EXPECT_EQ(s.op1(), 0u);
    EXPECT_EQ(s.crn(), 12u);
    EXPECT_EQ(s.crm(), 11u);
    EXPECT_EQ(s.op2(), 5u);
    EXPECT_EQ(s.rt(), 5u);
    EXPECT_FALSE(s.is_read());
    // The key drops Rt [9:5] and Direction [0]: 0x3A30B6 & ~(0x3E0 | 1).
    EXPECT_EQ(s.key(), 0x3A3016u);
    EXPECT_EQ(s.key(), kIccSgi1rEl1.iss_key());
}

// MRS X30, ID_AA64MMFR0_EL1: op0 3, op1 0, CRn 0, CRm 7, op2 0 (Arm ARM,
// "Accessing ID_AA64MMFR0_EL1").
TEST(SysRegIss, MrsIdAa64mmfr0El1) {
    const SysRegIss s{sysreg_iss(3, 0, 0, 7, 0, 30, 1)};
    EXPECT_TRUE(s.is_read());
    EXPECT_EQ(s.rt(), 30u);
    EXPECT_EQ(s.crm(), 7u);
    EXPECT_EQ(s.key(), 0x30000Eu);
}

TEST(SysRegIss, KeyIgnoresRtAndDirectionOnly) {
    for (unsigned rt = 0; rt < 32; ++rt) {
        for (unsigned dir = 0; dir < 2; ++dir) {
            EXPECT_EQ(SysRegIss{sysreg_iss(2, 5, 9, 6, 3, rt, dir)}.key(),
                      sysreg_iss(2, 5, 9, 6, 3, 0, 0));
        }
    }
    // Bits above the MSR/MRS fields ([24:22] are RES0) are not part of the key.
    EXPECT_EQ(SysRegIss{0x1C00000u | sysreg_iss(3, 0, 1, 0, 0, 0, 0)}.key(), 0x300400u);
}

// ---------------------------------------------------------------------- WFx
TEST(WfxIss, TiSelectsTheInstruction) {
    EXPECT_EQ(WfxIss{0b00}.ti(), WfxKind::Wfi);
    EXPECT_EQ(WfxIss{0b01}.ti(), WfxKind::Wfe);
    EXPECT_EQ(WfxIss{0b10}.ti(), WfxKind::Wfit);
    EXPECT_EQ(WfxIss{0b11}.ti(), WfxKind::Wfet);
}

TEST(WfxIss, FieldsAtTheirPositions) {
    const WfxIss cv{1u << 24};
    EXPECT_TRUE(cv.cv());
    EXPECT_EQ(cv.cond(), 0u);
    const WfxIss cond{field(0xe, 20, 4)};
    EXPECT_FALSE(cond.cv());
    EXPECT_EQ(cond.cond(), 0xeu);
    // WFIT X17: RN [9:5] = 17, RV [2] = 1, TI = 0b10.
    const WfxIss wfit{field(17, 5, 5) | (1u << 2) | 0b10u};
    EXPECT_EQ(wfit.rn(), 17u);
    EXPECT_TRUE(wfit.rv());
    EXPECT_EQ(wfit.ti(), WfxKind::Wfit);
    EXPECT_EQ(wfit.cond(), 0u);
    EXPECT_FALSE(wfit.cv());
    // RV alone does not change TI.
    EXPECT_EQ(WfxIss{1u << 2}.ti(), WfxKind::Wfi);
}

// -------------------------------------------------------------- SIMD/FP, imm
TEST(SimdFpIss, CvAndCond) {
    const SimdFpIss s{(1u << 24) | field(0x5, 20, 4)};
    EXPECT_TRUE(s.cv());
    EXPECT_EQ(s.cond(), 0x5u);
    EXPECT_FALSE(SimdFpIss{field(0xf, 20, 4)}.cv());
}

TEST(ImmediateIss, Imm16IsTheLowSixteenBits) {
    EXPECT_EQ(ImmediateIss{0x1ffffff}.imm16(), 0xffffu);
    EXPECT_EQ(ImmediateIss{0x0001234}.imm16(), 0x1234u);
    EXPECT_EQ(ImmediateIss{0x1ff0000}.imm16(), 0u);
}

// ------------------------------------------------------------------- SError
TEST(SErrorIss, FieldsAtTheirPositions) {
    EXPECT_TRUE(SErrorIss{1u << 24}.ids());
    EXPECT_FALSE(SErrorIss{1u << 24}.iesb());
    EXPECT_TRUE(SErrorIss{1u << 13}.iesb());
    EXPECT_EQ(SErrorIss{1u << 13}.aet(), 0u);
    EXPECT_EQ(SErrorIss{field(7, 10, 3)}.aet(), 7u);
    EXPECT_FALSE(SErrorIss{field(7, 10, 3)}.iesb());
    EXPECT_FALSE(SErrorIss{field(7, 10, 3)}.ea());
    EXPECT_TRUE(SErrorIss{1u << 9}.ea());
    EXPECT_EQ(SErrorIss{1u << 9}.aet(), 0u);
    EXPECT_EQ(SErrorIss{0x3f}.dfsc(), 0x3fu);
    // AET 0b000 "Uncontainable", DFSC 0b010001 "Asynchronous SError interrupt".
    const SErrorIss uc{field(0, 10, 3) | 0b010001u};
    EXPECT_EQ(uc.aet(), 0u);
    EXPECT_EQ(uc.dfsc(), 0b010001u);
    EXPECT_FALSE(uc.ids());
}

// ------------------------------------------------------- Software step, WP
TEST(SoftwareStepIss, FieldsAtTheirPositions) {
    const SoftwareStepIss s{(1u << 24) | (1u << 6) | 0b100010u};
    EXPECT_TRUE(s.isv());
    EXPECT_TRUE(s.ex());
    EXPECT_EQ(s.ifsc(), 0b100010u);
    EXPECT_FALSE(SoftwareStepIss{0}.isv());
    EXPECT_FALSE(SoftwareStepIss{1u << 24}.ex());
    EXPECT_EQ(SoftwareStepIss{1u << 6}.ifsc(), 0u);
}

TEST(WatchpointIss, FieldsAtTheirPositions) {
    EXPECT_TRUE(WatchpointIss{1u << 10}.fnv());
    EXPECT_FALSE(WatchpointIss{1u << 10}.cm());
    EXPECT_TRUE(WatchpointIss{1u << 8}.cm());
    EXPECT_FALSE(WatchpointIss{1u << 8}.wnr());
    EXPECT_TRUE(WatchpointIss{1u << 6}.wnr());
    EXPECT_EQ(WatchpointIss{1u << 6}.dfsc(), 0u);
    // A watchpoint reports DFSC 0b100010 ("Debug exception").
    const WatchpointIss w{(1u << 6) | 0b100010u};
    EXPECT_EQ(w.dfsc(), 0b100010u);
    EXPECT_FALSE(w.fnv());
}

// ------------------------------------------------------- Fault status codes
// The DFSC/IFSC encodings of the Arm ARM's Data Abort ISS table:
//   0b0000LL address size fault, level LL     0b0001LL translation fault
//   0b0010LL access flag fault                 0b0011LL permission fault
//   0b010000 synchronous external abort, not on a translation table walk
//   0b0101LL synchronous external abort on a translation table walk, level LL
//   0b100001 alignment fault                   0b110000 TLB conflict abort
// Everything else (tag check 0b010001, parity/ECC 0b011000 and 0b0111LL,
// granule protection 0b1001LL, level -1 encodings 0b101001/0b101011/0b010011,
// unsupported atomic update 0b110001, IMPLEMENTATION DEFINED 0b110100/0b110101,
// debug 0b100010, ...) is not one of the kinds the decoder names.
namespace {
FaultStatus manual_kind(unsigned raw) {
    if (raw <= 0b000011) return FaultStatus::AddressSize;
    if (raw >= 0b000100 && raw <= 0b000111) return FaultStatus::Translation;
    if (raw >= 0b001000 && raw <= 0b001011) return FaultStatus::AccessFlag;
    if (raw >= 0b001100 && raw <= 0b001111) return FaultStatus::Permission;
    if (raw == 0b010000) return FaultStatus::SyncExternal;
    if (raw >= 0b010100 && raw <= 0b010111) return FaultStatus::SyncExternalWalk;
    if (raw == 0b100001) return FaultStatus::Alignment;
    if (raw == 0b110000) return FaultStatus::TlbConflict;
    return FaultStatus::Other;
}
}  // namespace

TEST(FaultStatusCode, EverySixBitCodeHasTheManualsKind) {
    for (unsigned raw = 0; raw < 64; ++raw) {
        const FaultStatus expected = manual_kind(raw);
        const FaultStatusCode code{static_cast<std::uint8_t>(raw)};
        EXPECT_EQ(code.kind(), expected) << "raw 0x" << std::hex << raw;
        const bool resolvable = expected == FaultStatus::Translation ||
                                expected == FaultStatus::AccessFlag ||
                                expected == FaultStatus::Permission;
        EXPECT_EQ(code.is_stage2_resolvable(), resolvable) << "raw 0x" << std::hex << raw;
    }
}

TEST(FaultStatusCode, LevelIsTheLowTwoBits) {
    for (unsigned level = 0; level < 4; ++level) {
        EXPECT_EQ((FaultStatusCode{static_cast<std::uint8_t>(0b000100 | level)}.level()), level);
        EXPECT_EQ((FaultStatusCode{static_cast<std::uint8_t>(0b001100 | level)}.level()), level);
        EXPECT_EQ((FaultStatusCode{static_cast<std::uint8_t>(0b010100 | level)}.level()), level);
    }
}

TEST(FaultStatusCode, SpecificCodes) {
    // Translation fault, level 1: 0b000101.
    EXPECT_EQ(FaultStatusCode{0b000101}.kind(), FaultStatus::Translation);
    EXPECT_EQ(FaultStatusCode{0b000101}.level(), 1u);
    // Permission fault, level 3: 0b001111.
    EXPECT_EQ(FaultStatusCode{0b001111}.kind(), FaultStatus::Permission);
    EXPECT_EQ(FaultStatusCode{0b001111}.level(), 3u);
    // Access flag fault, level 2: 0b001010.
    EXPECT_EQ(FaultStatusCode{0b001010}.kind(), FaultStatus::AccessFlag);
    // Synchronous Tag Check Fault (FEAT_MTE2): 0b010001, not an external abort.
    EXPECT_EQ(FaultStatusCode{0b010001}.kind(), FaultStatus::Other);
    // Translation fault level -1 (FEAT_LPA2): 0b101011, not level 3 of anything.
    EXPECT_EQ(FaultStatusCode{0b101011}.kind(), FaultStatus::Other);
    EXPECT_FALSE(FaultStatusCode{0b101011}.is_stage2_resolvable());
}

TEST(FaultStatusCode, DataAbortDfscIsTheLowSixBits) {
    const DataAbortIss d{(1u << 24) | (1u << 6) | 0b001101u};
    EXPECT_EQ(d.dfsc().kind(), FaultStatus::Permission);
    EXPECT_EQ(d.dfsc().level(), 1u);
    const InstrAbortIss i{(1u << 10) | 0b000110u};
    EXPECT_EQ(i.ifsc().kind(), FaultStatus::Translation);
    EXPECT_EQ(i.ifsc().level(), 2u);
}

// --------------------------------------------------------------- fault_ipa()
namespace {
// HPFAR_EL2 for an IPA: IPA[51:12] placed from register bit 4 upwards.
constexpr std::uint64_t hpfar_for(std::uint64_t ipa) { return (ipa >> 12) << 4; }
}  // namespace

TEST(FaultIpa, PageFromHpfarOffsetFromFar) {
    // IPA 0x0900'0abc: FIPA = 0x09000, HPFAR_EL2 = 0x90000. FAR_EL2 holds the
    // guest's virtual address; only its page offset [11:0] belongs to the IPA.
    EXPECT_EQ(hpfar_for(0x09000abc), 0x90000u);
    const FaultAddress fa = fault_ipa(0x90000, 0xffff800012345abcull, false);
    EXPECT_EQ(fa.ipa, 0x09000abcu);
    EXPECT_TRUE(fa.offset_valid);
}

TEST(FaultIpa, FnvMeansPageOnly) {
    // FnV = 1: FAR_EL2 is UNKNOWN, so nothing of it may be used.
    const FaultAddress fa = fault_ipa(0x90000, 0xdeadbeefcafef00dull, true);
    EXPECT_EQ(fa.ipa, 0x09000000u);
    EXPECT_FALSE(fa.offset_valid);
}

TEST(FaultIpa, FortyEightBitIpa) {
    // IPA[47:12] all ones -> FIPA [39:4] all ones.
    EXPECT_EQ(hpfar_for(0xfffffffff000ull), 0xfffffffff0ull);
    const FaultAddress fa = fault_ipa(0xfffffffff0ull, 0xfff, false);
    EXPECT_EQ(fa.ipa, 0xffffffffffffull);
}

TEST(FaultIpa, FiftyTwoBitIpaWithFeatLpa) {
    // FEAT_LPA: IPA[51:48] in HPFAR_EL2[43:40].
    EXPECT_EQ(hpfar_for(0xf000000000000ull), 0xf0000000000ull);
    const FaultAddress fa = fault_ipa(0xf0000000000ull | 0x10, 0x123, false);
    EXPECT_EQ(fa.ipa, 0xf000000001123ull);
}

TEST(FaultIpa, NsAndRes0BitsAreNotPartOfTheAddress) {
    // NS is bit 63; bits [3:0] are RES0.
    const std::uint64_t hpfar = (1ull << 63) | 0x90000 | 0xf;
    const FaultAddress fa = fault_ipa(hpfar, 0x10, false);
    EXPECT_EQ(fa.ipa, 0x09000010u);
}

TEST(FaultIpa, IsConstexpr) {
    static_assert(fault_ipa(0x90000, 0x7f8, false).ipa == 0x090007f8);
    static_assert(!fault_ipa(0x90000, 0x7f8, true).offset_valid);
    SUCCEED();
}

// ------------------------------------------------------- named field lists
namespace {

struct ExpectedField {
    const char* name;
    unsigned hi, lo;
};

// Compares a class's field list with the Arm ARM's, in the manual's order
// (highest bits first), and checks that no two fields share a bit.
void expect_fields(IssFieldList list, std::initializer_list<ExpectedField> expected,
                   const char* what) {
    ASSERT_NE(list.fields, nullptr) << what;
    ASSERT_EQ(list.count, expected.size()) << what;
    std::uint32_t seen = 0;
    unsigned i = 0;
    for (const ExpectedField& e : expected) {
        const IssField& f = list.fields[i++];
        EXPECT_STREQ(f.name, e.name) << what;
        EXPECT_EQ(f.hi, e.hi) << what << " " << e.name;
        EXPECT_EQ(f.lo, e.lo) << what << " " << e.name;
        EXPECT_LE(f.hi, 24u) << what << " " << e.name;  // ISS is [24:0]
        const std::uint32_t mask = ((2u << f.hi) - 1u) & ~((1u << f.lo) - 1u);
        EXPECT_EQ(seen & mask, 0u) << what << " " << e.name << " overlaps";
        seen |= mask;
    }
}

}  // namespace

TEST(IssFields, DataAbort) {
    const std::initializer_list<ExpectedField> expected = {
        {"ISV", 24, 24}, {"SAS", 23, 22},  {"SSE", 21, 21}, {"SRT", 20, 16}, {"SF", 15, 15},
        {"AR", 14, 14},  {"VNCR", 13, 13}, {"LST", 12, 11}, {"FnV", 10, 10}, {"EA", 9, 9},
        {"CM", 8, 8},    {"S1PTW", 7, 7},  {"WnR", 6, 6},   {"DFSC", 5, 0}};
    expect_fields(iss_fields(ExceptionClass::DataAbortLower), expected, "EC 0x24");
    expect_fields(iss_fields(ExceptionClass::DataAbortSame), expected, "EC 0x25");
}

TEST(IssFields, InstructionAbort) {
    const std::initializer_list<ExpectedField> expected = {
        {"SET", 12, 11}, {"FnV", 10, 10}, {"EA", 9, 9}, {"S1PTW", 7, 7}, {"IFSC", 5, 0}};
    expect_fields(iss_fields(ExceptionClass::InstrAbortLower), expected, "EC 0x20");
    expect_fields(iss_fields(ExceptionClass::InstrAbortSame), expected, "EC 0x21");
}

TEST(IssFields, MsrMrs) {
    expect_fields(iss_fields(ExceptionClass::SysReg64),
                  {{"Op0", 21, 20},
                   {"Op2", 19, 17},
                   {"Op1", 16, 14},
                   {"CRn", 13, 10},
                   {"Rt", 9, 5},
                   {"CRm", 4, 1},
                   {"Direction", 0, 0}},
                  "EC 0x18");
}

TEST(IssFields, WfxSimdStepWatchpointSError) {
    expect_fields(iss_fields(ExceptionClass::WfxTrap),
                  {{"CV", 24, 24}, {"COND", 23, 20}, {"RN", 9, 5}, {"RV", 2, 2}, {"TI", 1, 0}},
                  "EC 0x01");
    expect_fields(iss_fields(ExceptionClass::SimdFpAccess), {{"CV", 24, 24}, {"COND", 23, 20}},
                  "EC 0x07");
    for (ExceptionClass ec :
         {ExceptionClass::SoftwareStepLower, ExceptionClass::SoftwareStepSame}) {
        expect_fields(iss_fields(ec), {{"ISV", 24, 24}, {"EX", 6, 6}, {"IFSC", 5, 0}}, "step");
    }
    for (ExceptionClass ec : {ExceptionClass::WatchpointLower, ExceptionClass::WatchpointSame}) {
        expect_fields(iss_fields(ec),
                      {{"FnV", 10, 10}, {"CM", 8, 8}, {"WnR", 6, 6}, {"DFSC", 5, 0}}, "watchpoint");
    }
    expect_fields(
        iss_fields(ExceptionClass::SError),
        {{"IDS", 24, 24}, {"IESB", 13, 13}, {"AET", 12, 10}, {"EA", 9, 9}, {"DFSC", 5, 0}},
        "EC 0x2F");
}

// "ISS encoding for an exception from HVC or SVC instruction execution" and
// "... from SMC instruction execution in AArch64 state": imm16 [15:0]; BRK:
// the comment, [15:0].
TEST(IssFields, ImmediateClasses) {
    for (ExceptionClass ec :
         {ExceptionClass::Hvc64, ExceptionClass::Smc64, ExceptionClass::Svc64,
          ExceptionClass::Hvc32, ExceptionClass::Svc32, ExceptionClass::Brk64}) {
        const IssFieldList list = iss_fields(ec);
        ASSERT_EQ(list.count, 1u) << static_cast<unsigned>(ec);
        EXPECT_EQ(list.fields[0].hi, 15u);
        EXPECT_EQ(list.fields[0].lo, 0u);
    }
}

TEST(IssFields, ClassesWithoutNamedFieldsAreEmpty) {
    for (ExceptionClass ec : {ExceptionClass::Unknown, ExceptionClass::IllegalState,
                              ExceptionClass::PcAlignment, ExceptionClass::SpAlignment}) {
        const IssFieldList list = iss_fields(ec);
        EXPECT_EQ(list.fields, nullptr) << static_cast<unsigned>(ec);
        EXPECT_EQ(list.count, 0u) << static_cast<unsigned>(ec);
    }
}

TEST(IssFields, FieldOfExtractsItsBits) {
    const IssField srt{"SRT", 20, 16};
    EXPECT_EQ(srt.of(0x1f0000u), 31u);
    EXPECT_EQ(srt.of(0x1e0ffffu), 0u);
    EXPECT_EQ(srt.of(field(0x15, 16, 5)), 0x15u);
}

// "ISS encoding for an exception from SMC instruction execution in AArch32
// state" (EC 0x13) is CV [24], COND [23:20], CCKNOWNPASS [19], [18:0] RES0:
// unlike HVC/SVC and SMC64 it has no imm16. iss_fields() lists imm16 for it.
TEST(IssFindings, Smc32HasNoImm16) {
    const IssFieldList list = iss_fields(ExceptionClass::Smc32);
    for (unsigned i = 0; i < list.count; ++i) {
        EXPECT_STRNE(list.fields[i].name, "imm16");
        EXPECT_GT(list.fields[i].lo, 18u) << list.fields[i].name;  // only [24:19] are defined
    }
}
