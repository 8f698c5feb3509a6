// Class-specific ISS decoding for ESR_EL2 (Arm ARM DDI 0487, D17.2.37
// "ESR_EL2", the "ISS encoding for an exception from ..." tables), and the
// faulting IPA from HPFAR_EL2 and FAR_EL2 (D17.2.53 "HPFAR_EL2").
#pragma once

#include <cstdint>

#include "armvcpu/esr.hpp"

namespace armvcpu {

namespace detail {
constexpr std::uint32_t bits(std::uint32_t v, unsigned hi, unsigned lo) {
    return (v >> lo) & ((1u << (hi - lo + 1)) - 1);
}
constexpr bool bit(std::uint32_t v, unsigned n) { return ((v >> n) & 1u) != 0; }
}  // namespace detail

// One named ISS field: its Arm ARM name and bit positions. Each class's
// fields are listed once, and both the accessors and the named-field listing
// (iss_fields(), `armvcpu decode esr`) read them from there.
struct IssField {
    const char* name;
    std::uint8_t hi;
    std::uint8_t lo;

    [[nodiscard]] constexpr std::uint32_t of(std::uint32_t iss) const {
        return detail::bits(iss, hi, lo);
    }
};

// A field list for one exception class.
struct IssFieldList {
    const IssField* fields;
    unsigned count;
};

template <unsigned N>
constexpr IssFieldList list_of(const IssField (&fields)[N]) {
    return {fields, N};
}

// Fault status codes shared by DFSC and IFSC (the low six bits).
enum class FaultStatus : std::uint8_t {
    AddressSize = 0b0000'00,       // + level 0..3
    Translation = 0b0001'00,       // + level 0..3
    AccessFlag = 0b0010'00,        // + level 0..3
    Permission = 0b0011'00,        // + level 0..3
    SyncExternal = 0b0100'00,      // not on a table walk
    SyncExternalWalk = 0b0101'00,  // + level 0..3
    Alignment = 0b1000'01,
    TlbConflict = 0b1100'00,
    Other = 0xff,
};

// The kind of a fault status code, with the level in `level` when it has one.
struct FaultStatusCode {
    std::uint8_t raw;

    [[nodiscard]] constexpr unsigned level() const { return raw & 3u; }
    [[nodiscard]] constexpr FaultStatus kind() const {
        switch (raw & 0b111100) {
            case 0b000000: return FaultStatus::AddressSize;
            case 0b000100: return FaultStatus::Translation;
            case 0b001000: return FaultStatus::AccessFlag;
            case 0b001100: return FaultStatus::Permission;
            case 0b010100: return FaultStatus::SyncExternalWalk;
            default: break;
        }
        if (raw == 0b010000) return FaultStatus::SyncExternal;
        if (raw == 0b100001) return FaultStatus::Alignment;
        if (raw == 0b110000) return FaultStatus::TlbConflict;
        return FaultStatus::Other;
    }
    // Translation, access-flag and permission faults are what a hypervisor
    // resolves or emulates; the others are errors in the guest or the system.
    [[nodiscard]] constexpr bool is_stage2_resolvable() const {
        const auto k = kind();
        return k == FaultStatus::Translation || k == FaultStatus::AccessFlag ||
               k == FaultStatus::Permission;
    }
};

// EC 0x24/0x25: "ISS encoding for an exception from a Data Abort".
struct DataAbortIss {
    std::uint32_t iss;

    static constexpr IssField kIsv{"ISV", 24, 24};
    static constexpr IssField kSas{"SAS", 23, 22};
    static constexpr IssField kSse{"SSE", 21, 21};
    static constexpr IssField kSrt{"SRT", 20, 16};
    static constexpr IssField kSf{"SF", 15, 15};
    static constexpr IssField kAr{"AR", 14, 14};
    static constexpr IssField kVncr{"VNCR", 13, 13};
    static constexpr IssField kLst{"LST", 12, 11};
    static constexpr IssField kFnv{"FnV", 10, 10};
    static constexpr IssField kEa{"EA", 9, 9};
    static constexpr IssField kCm{"CM", 8, 8};
    static constexpr IssField kS1ptw{"S1PTW", 7, 7};
    static constexpr IssField kWnr{"WnR", 6, 6};
    static constexpr IssField kDfsc{"DFSC", 5, 0};
    static constexpr IssField kFields[] = {kIsv, kSas, kSse, kSrt, kSf,    kAr,  kVncr,
                                           kLst, kFnv, kEa,  kCm,  kS1ptw, kWnr, kDfsc};

    [[nodiscard]] constexpr bool isv() const { return kIsv.of(iss) != 0; }
    // The fields up to AR are valid only when ISV is 1.
    [[nodiscard]] constexpr unsigned sas() const { return kSas.of(iss); }
    [[nodiscard]] constexpr unsigned access_size() const { return 1u << sas(); }
    [[nodiscard]] constexpr bool sse() const { return kSse.of(iss) != 0; }
    [[nodiscard]] constexpr unsigned srt() const { return kSrt.of(iss); }
    [[nodiscard]] constexpr bool sf() const { return kSf.of(iss) != 0; }
    [[nodiscard]] constexpr bool ar() const { return kAr.of(iss) != 0; }
    [[nodiscard]] constexpr bool vncr() const { return kVncr.of(iss) != 0; }
    [[nodiscard]] constexpr unsigned lst() const { return kLst.of(iss); }
    [[nodiscard]] constexpr bool fnv() const { return kFnv.of(iss) != 0; }
    [[nodiscard]] constexpr bool ea() const { return kEa.of(iss) != 0; }
    [[nodiscard]] constexpr bool cm() const { return kCm.of(iss) != 0; }
    [[nodiscard]] constexpr bool s1ptw() const { return kS1ptw.of(iss) != 0; }
    [[nodiscard]] constexpr bool wnr() const { return kWnr.of(iss) != 0; }
    [[nodiscard]] constexpr FaultStatusCode dfsc() const {
        return {static_cast<std::uint8_t>(kDfsc.of(iss))};
    }
};

// EC 0x20/0x21: "ISS encoding for an exception from an Instruction Abort".
struct InstrAbortIss {
    std::uint32_t iss;

    static constexpr IssField kSet{"SET", 12, 11};
    static constexpr IssField kFnv{"FnV", 10, 10};
    static constexpr IssField kEa{"EA", 9, 9};
    static constexpr IssField kS1ptw{"S1PTW", 7, 7};
    static constexpr IssField kIfsc{"IFSC", 5, 0};
    static constexpr IssField kFields[] = {kSet, kFnv, kEa, kS1ptw, kIfsc};

    [[nodiscard]] constexpr unsigned set() const { return kSet.of(iss); }
    [[nodiscard]] constexpr bool fnv() const { return kFnv.of(iss) != 0; }
    [[nodiscard]] constexpr bool ea() const { return kEa.of(iss) != 0; }
    [[nodiscard]] constexpr bool s1ptw() const { return kS1ptw.of(iss) != 0; }
    [[nodiscard]] constexpr FaultStatusCode ifsc() const {
        return {static_cast<std::uint8_t>(kIfsc.of(iss))};
    }
};

// EC 0x18: "ISS encoding for an exception from MSR, MRS, or System
// instruction execution in AArch64 state".
struct SysRegIss {
    std::uint32_t iss;

    static constexpr IssField kOp0{"Op0", 21, 20};
    static constexpr IssField kOp2{"Op2", 19, 17};
    static constexpr IssField kOp1{"Op1", 16, 14};
    static constexpr IssField kCrn{"CRn", 13, 10};
    static constexpr IssField kRt{"Rt", 9, 5};
    static constexpr IssField kCrm{"CRm", 4, 1};
    static constexpr IssField kDirection{"Direction", 0, 0};
    static constexpr IssField kFields[] = {kOp0, kOp2, kOp1, kCrn, kRt, kCrm, kDirection};

    [[nodiscard]] constexpr unsigned op0() const { return kOp0.of(iss); }
    [[nodiscard]] constexpr unsigned op2() const { return kOp2.of(iss); }
    [[nodiscard]] constexpr unsigned op1() const { return kOp1.of(iss); }
    [[nodiscard]] constexpr unsigned crn() const { return kCrn.of(iss); }
    [[nodiscard]] constexpr unsigned rt() const { return kRt.of(iss); }
    [[nodiscard]] constexpr unsigned crm() const { return kCrm.of(iss); }
    // Direction: 1 for a read (MRS), 0 for a write (MSR).
    [[nodiscard]] constexpr bool is_read() const { return kDirection.of(iss) != 0; }
    // The register's identity without Rt and Direction (the seeds' SysRegAddr).
    [[nodiscard]] constexpr std::uint32_t key() const { return iss & 0x3FFC1Eu; }
    static_assert(0x3FFC1Eu == ((3u << 20) | (7u << 17) | (7u << 14) | (15u << 10) | (15u << 1)),
                  "key() keeps Op0, Op2, Op1, CRn and CRm");
};

// WFI, WFE, WFIT, WFET: TI[1:0].
enum class WfxKind : std::uint8_t { Wfi = 0, Wfe = 1, Wfit = 2, Wfet = 3 };

// EC 0x01: "ISS encoding for an exception from a WF* instruction".
struct WfxIss {
    std::uint32_t iss;

    static constexpr IssField kCv{"CV", 24, 24};
    static constexpr IssField kCond{"COND", 23, 20};
    static constexpr IssField kRn{"RN", 9, 5};
    static constexpr IssField kRv{"RV", 2, 2};
    static constexpr IssField kTi{"TI", 1, 0};
    static constexpr IssField kFields[] = {kCv, kCond, kRn, kRv, kTi};

    [[nodiscard]] constexpr bool cv() const { return kCv.of(iss) != 0; }
    [[nodiscard]] constexpr unsigned cond() const { return kCond.of(iss); }
    [[nodiscard]] constexpr unsigned rn() const { return kRn.of(iss); }
    [[nodiscard]] constexpr bool rv() const { return kRv.of(iss) != 0; }
    [[nodiscard]] constexpr WfxKind ti() const { return static_cast<WfxKind>(kTi.of(iss)); }
};

// EC 0x07: "ISS encoding for an exception from an access to SVE, Advanced
// SIMD or floating-point functionality" (CV/COND only matter for AArch32).
struct SimdFpIss {
    std::uint32_t iss;

    static constexpr IssField kCv{"CV", 24, 24};
    static constexpr IssField kCond{"COND", 23, 20};
    static constexpr IssField kFields[] = {kCv, kCond};

    [[nodiscard]] constexpr bool cv() const { return kCv.of(iss) != 0; }
    [[nodiscard]] constexpr unsigned cond() const { return kCond.of(iss); }
};

// EC 0x32/0x33: "ISS encoding for an exception from a Software Step exception".
struct SoftwareStepIss {
    std::uint32_t iss;

    static constexpr IssField kIsv{"ISV", 24, 24};
    static constexpr IssField kEx{"EX", 6, 6};
    static constexpr IssField kIfsc{"IFSC", 5, 0};
    static constexpr IssField kFields[] = {kIsv, kEx, kIfsc};

    [[nodiscard]] constexpr bool isv() const { return kIsv.of(iss) != 0; }
    [[nodiscard]] constexpr bool ex() const { return kEx.of(iss) != 0; }  // valid if ISV
    [[nodiscard]] constexpr unsigned ifsc() const { return kIfsc.of(iss); }
};

// EC 0x30/0x31: "ISS encoding for an exception from a Breakpoint or Vector
// Catch debug exception": IFSC only (0b100010, debug exception).
struct BreakpointIss {
    std::uint32_t iss;

    static constexpr IssField kIfsc{"IFSC", 5, 0};
    static constexpr IssField kFields[] = {kIfsc};
    [[nodiscard]] constexpr unsigned ifsc() const { return kIfsc.of(iss); }
};

// EC 0x34/0x35: "ISS encoding for an exception from a Watchpoint exception".
struct WatchpointIss {
    std::uint32_t iss;

    static constexpr IssField kFnv{"FnV", 10, 10};
    static constexpr IssField kCm{"CM", 8, 8};
    static constexpr IssField kWnr{"WnR", 6, 6};
    static constexpr IssField kDfsc{"DFSC", 5, 0};
    static constexpr IssField kFields[] = {kFnv, kCm, kWnr, kDfsc};

    [[nodiscard]] constexpr bool fnv() const { return kFnv.of(iss) != 0; }
    [[nodiscard]] constexpr bool cm() const { return kCm.of(iss) != 0; }
    [[nodiscard]] constexpr bool wnr() const { return kWnr.of(iss) != 0; }
    [[nodiscard]] constexpr unsigned dfsc() const { return kDfsc.of(iss); }
};

// EC 0x2F: "ISS encoding for an SError exception".
struct SErrorIss {
    std::uint32_t iss;

    static constexpr IssField kIds{"IDS", 24, 24};
    static constexpr IssField kIesb{"IESB", 13, 13};
    static constexpr IssField kAet{"AET", 12, 10};
    static constexpr IssField kEa{"EA", 9, 9};
    static constexpr IssField kDfsc{"DFSC", 5, 0};
    static constexpr IssField kFields[] = {kIds, kIesb, kAet, kEa, kDfsc};

    // IDS = 1: the rest is IMPLEMENTATION DEFINED syndrome.
    [[nodiscard]] constexpr bool ids() const { return kIds.of(iss) != 0; }
    [[nodiscard]] constexpr bool iesb() const { return kIesb.of(iss) != 0; }
    [[nodiscard]] constexpr unsigned aet() const { return kAet.of(iss); }
    [[nodiscard]] constexpr bool ea() const { return kEa.of(iss) != 0; }
    [[nodiscard]] constexpr unsigned dfsc() const { return kDfsc.of(iss); }
};

// EC 0x13: "ISS encoding for an exception from SMC instruction execution in
// AArch32 state": no immediate, only the condition fields.
struct Smc32Iss {
    std::uint32_t iss;

    static constexpr IssField kCv{"CV", 24, 24};
    static constexpr IssField kCond{"COND", 23, 20};
    static constexpr IssField kCcknownpass{"CCKNOWNPASS", 19, 19};
    static constexpr IssField kFields[] = {kCv, kCond, kCcknownpass};
};

// HVC, SVC (EC 0x15, 0x16, 0x11, 0x12), SMC64 (0x17) and BRK (0x3C): imm16.
struct ImmediateIss {
    std::uint32_t iss;

    static constexpr IssField kImm16{"imm16", 15, 0};
    static constexpr IssField kFields[] = {kImm16};
    [[nodiscard]] constexpr std::uint16_t imm16() const {
        return static_cast<std::uint16_t>(kImm16.of(iss));
    }
};

// The named ISS fields of an exception class (empty for classes whose ISS
// the Arm ARM leaves RES0 or IMPLEMENTATION DEFINED for AArch64 guests).
constexpr IssFieldList iss_fields(ExceptionClass ec) {
    switch (ec) {
        case ExceptionClass::DataAbortLower:
        case ExceptionClass::DataAbortSame: return list_of(DataAbortIss::kFields);
        case ExceptionClass::InstrAbortLower:
        case ExceptionClass::InstrAbortSame: return list_of(InstrAbortIss::kFields);
        case ExceptionClass::SysReg64: return list_of(SysRegIss::kFields);
        case ExceptionClass::WfxTrap: return list_of(WfxIss::kFields);
        case ExceptionClass::SimdFpAccess: return list_of(SimdFpIss::kFields);
        case ExceptionClass::SoftwareStepLower:
        case ExceptionClass::SoftwareStepSame: return list_of(SoftwareStepIss::kFields);
        case ExceptionClass::WatchpointLower:
        case ExceptionClass::WatchpointSame: return list_of(WatchpointIss::kFields);
        case ExceptionClass::SError: return list_of(SErrorIss::kFields);
        case ExceptionClass::BreakpointLower:
        case ExceptionClass::BreakpointSame: return list_of(BreakpointIss::kFields);
        case ExceptionClass::Smc32: return list_of(Smc32Iss::kFields);
        case ExceptionClass::Hvc64:
        case ExceptionClass::Smc64:
        case ExceptionClass::Svc64:
        case ExceptionClass::Hvc32:
        case ExceptionClass::Svc32:
        case ExceptionClass::Brk64: return list_of(ImmediateIss::kFields);
        default: return {nullptr, 0};
    }
}

// The faulting guest physical address of a stage-2 abort.
struct FaultAddress {
    std::uint64_t ipa;
    // False when FAR_EL2 was not valid (FnV = 1): then only the page is known
    // and `ipa` holds its base.
    bool offset_valid;
};

// HPFAR_EL2.FIPA is [39:4] holding IPA[47:12], or [43:4] holding IPA[51:12]
// with FEAT_LPA; FAR_EL2 supplies the offset in the page when FnV = 0.
constexpr FaultAddress fault_ipa(std::uint64_t hpfar, std::uint64_t far, bool fnv) {
    const std::uint64_t page = ((hpfar >> 4) & 0xFFFFFFFFFFFull) << 12;
    if (fnv) return {page, false};
    return {page | (far & 0xfffu), true};
}

}  // namespace armvcpu
