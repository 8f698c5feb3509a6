// Taking a synchronous exception to the guest's EL1: what the PE would have
// done had the exception not been routed to (or made up by) EL2. The
// firmware uses it to give a guest the answer a machine without a
// hypervisor gives: a synchronous external abort for an access to an
// address with neither RAM nor a device, an Undefined Instruction when a
// policy says so.
//
// The rules are the Arm ARM's (DDI 0487, D1.10 "Exception entry", the
// AArch64.TakeException() pseudocode in J1, and the ESR_ELx description for
// the syndromes):
//  - SPSR_EL1 = the PSTATE the exception was taken from; ELR_EL1 = the
//    preferred exception return address, which for an abort and for an
//    Undefined Instruction is the instruction itself;
//  - ESR_EL1 = EC, IL, ISS; FAR_EL1 = the faulting virtual address for
//    aborts (and left alone otherwise: UNKNOWN for EC 0x00);
//  - the new PSTATE: EL1 with SP_EL1 (EL1h), D, A, I, F set, SS and IL
//    cleared, nRW = 0 (AArch64); with FEAT_PAN, PAN = 1 unless SCTLR_EL1.SPAN
//    is 1; with FEAT_UAO, UAO = 0; with FEAT_SSBS, SSBS = SCTLR_EL1.DSSBS;
//    with FEAT_BTI, BTYPE = 0; with FEAT_MTE, TCO = 1; with FEAT_NMI,
//    ALLINT = 1 unless SCTLR_EL1.SPINTMASK is 1; N, Z, C, V and DIT kept;
//  - the vector: VBAR_EL1 + 0x000 from EL1 with SP_EL0, + 0x200 from EL1
//    with SP_EL1, + 0x400 from AArch64 EL0, + 0x600 from AArch32 EL0
//    (a synchronous exception is the first entry of each group).
#pragma once

#include <cstdint>

#include "armvcpu/exit_reason.hpp"

namespace armvcpu {

// PSTATE as SPSR_ELx holds it for AArch64 (Arm ARM C5.2.18 "SPSR_EL1").
namespace pstate {
inline constexpr std::uint64_t kM = 0x1f;              // M[4:0]; M[4] = nRW
inline constexpr std::uint64_t kNrw = 1ull << 4;       // 1: taken from AArch32
inline constexpr std::uint64_t kEl1h = 0x5;            // M[3:0] = EL1 with SP_EL1
inline constexpr std::uint64_t kDaif = 0xfull << 6;    // D, A, I, F
inline constexpr std::uint64_t kBtype = 0x3ull << 10;  // FEAT_BTI
inline constexpr std::uint64_t kSsbs = 1ull << 12;     // FEAT_SSBS
inline constexpr std::uint64_t kAllint = 1ull << 13;   // FEAT_NMI
inline constexpr std::uint64_t kIl = 1ull << 20;
inline constexpr std::uint64_t kSs = 1ull << 21;
inline constexpr std::uint64_t kPan = 1ull << 22;  // FEAT_PAN
inline constexpr std::uint64_t kUao = 1ull << 23;  // FEAT_UAO
inline constexpr std::uint64_t kTco = 1ull << 25;  // FEAT_MTE
}  // namespace pstate

// SCTLR_EL1 bits that decide PSTATE on exception entry.
namespace sctlr {
inline constexpr std::uint64_t kSpan = 1ull << 23;
inline constexpr std::uint64_t kDssbs = 1ull << 44;
inline constexpr std::uint64_t kSpintmask = 1ull << 62;
}  // namespace sctlr

// The exception classes EL2 injects (ESR_ELx.EC).
inline constexpr std::uint32_t kEcUnknown = 0x00;
inline constexpr std::uint32_t kEcInstrAbortLower = 0x20;  // from EL0
inline constexpr std::uint32_t kEcInstrAbortSame = 0x21;   // from EL1
inline constexpr std::uint32_t kEcDataAbortLower = 0x24;
inline constexpr std::uint32_t kEcDataAbortSame = 0x25;
// DFSC/IFSC 0b010000: synchronous external abort, not on a translation
// table walk.
inline constexpr std::uint32_t kFscSyncExternalAbort = 0x10;
inline constexpr std::uint32_t kIssWnr = 1u << 6;  // data abort: the access was a write
inline constexpr std::uint64_t kEsrIl = 1ull << 25;

// The features of the PE that change how PSTATE is set on entry.
struct El1Features {
    bool pan = false;
    bool uao = false;
    bool ssbs = false;
    bool bti = false;
    bool mte = false;
    bool nmi = false;
};

// What a synchronous exception to EL1 is: its syndrome and, for aborts, the
// faulting virtual address.
enum class InjectKind : std::uint8_t {
    DataAbort,         // synchronous external abort on a data access
    InstructionAbort,  // synchronous external abort on an instruction fetch
    Undefined,         // EC 0x00, Unknown reason
};

struct InjectedException {
    InjectKind kind = InjectKind::Undefined;
    std::uint64_t address = 0;  // the instruction's address (ELR_EL1)
    std::uint64_t far = 0;      // aborts: the faulting VA (instruction abort: the PC)
    bool write = false;         // data abort: WnR
};

// The guest's state at the moment of the exception.
struct El1State {
    std::uint64_t pstate;     // SPSR_EL2 as the guest left EL1/EL0
    std::uint64_t sctlr_el1;  // SCTLR_EL1
    std::uint64_t vbar_el1;   // VBAR_EL1
};

// Everything the exception entry writes.
struct ExceptionEntry {
    std::uint64_t esr_el1;
    std::uint64_t far_el1;
    bool writes_far;        // false for EC 0x00: FAR_EL1 is left alone
    std::uint64_t elr_el1;  // the preferred return address
    std::uint64_t spsr_el1;
    std::uint64_t pc;      // the vector: where the guest continues (ELR_EL2)
    std::uint64_t pstate;  // the new PSTATE (SPSR_EL2 for the ERET)
};

// The PSTATE was taken from: EL (M[3:2]) and whether in AArch32.
constexpr bool from_aarch32(std::uint64_t pstate) { return (pstate & pstate::kNrw) != 0; }
constexpr unsigned exception_level_of(std::uint64_t pstate) {
    // AArch32 modes: only User (0b10000) is EL0 for a guest (EL1 is AArch64).
    if (from_aarch32(pstate)) return (pstate & 0xf) == 0 ? 0 : 1;
    return static_cast<unsigned>((pstate >> 2) & 3);
}

// The offset of the synchronous vector from VBAR_EL1 for an exception taken
// to EL1 from `pstate`.
constexpr std::uint64_t el1_sync_vector_offset(std::uint64_t pstate) {
    if (exception_level_of(pstate) == 0) return from_aarch32(pstate) ? 0x600 : 0x400;
    return (pstate & 1) != 0 ? 0x200 : 0x000;  // M[0]: SP_ELx selected
}

// ESR_EL1 of the exception (Arm ARM D17.2.37 "ESR_EL1").
constexpr std::uint64_t injected_esr(const InjectedException& e, std::uint64_t pstate) {
    const bool lower = exception_level_of(pstate) == 0;
    switch (e.kind) {
        case InjectKind::DataAbort: {
            // ISV = 0 (a synchronous external abort need not describe the
            // access), so IL is RES1; FnV = 0 (FAR valid), EA = 0, S1PTW = 0.
            const std::uint64_t ec = lower ? kEcDataAbortLower : kEcDataAbortSame;
            return (ec << 26) | kEsrIl | (e.write ? kIssWnr : 0) | kFscSyncExternalAbort;
        }
        case InjectKind::InstructionAbort: {
            const std::uint64_t ec = lower ? kEcInstrAbortLower : kEcInstrAbortSame;
            return (ec << 26) | kEsrIl | kFscSyncExternalAbort;  // IL is RES1 for aborts
        }
        case InjectKind::Undefined: break;
    }
    // EC 0x00: IL is RES1 and the ISS RES0.
    return (static_cast<std::uint64_t>(kEcUnknown) << 26) | kEsrIl;
}

// PSTATE on taking an exception to EL1 from `from` (AArch64.TakeException).
constexpr std::uint64_t el1_entry_pstate(std::uint64_t from, std::uint64_t sctlr_el1,
                                         const El1Features& f) {
    // N, Z, C, V and DIT carry over (an AArch32 PSTATE's own bits do not).
    std::uint64_t p = from_aarch32(from) ? (from & 0xf0000000ull) : (from & 0xf1000000ull);
    p |= pstate::kEl1h | pstate::kDaif;
    if (f.pan) p |= (sctlr_el1 & sctlr::kSpan) == 0 ? pstate::kPan : (from & pstate::kPan);
    if (f.ssbs && (sctlr_el1 & sctlr::kDssbs) != 0) p |= pstate::kSsbs;
    if (f.mte) p |= pstate::kTco;
    if (f.nmi)
        p |= (sctlr_el1 & sctlr::kSpintmask) == 0 ? pstate::kAllint : (from & pstate::kAllint);
    // UAO, BTYPE, SS and IL are 0 after entry (not set above).
    return p;
}

// The whole exception entry.
constexpr ExceptionEntry take_exception_to_el1(const InjectedException& e, const El1State& s,
                                               const El1Features& f) {
    ExceptionEntry x{};
    x.esr_el1 = injected_esr(e, s.pstate);
    x.writes_far = e.kind != InjectKind::Undefined;
    x.far_el1 = e.kind == InjectKind::InstructionAbort ? e.far : (x.writes_far ? e.far : 0);
    // From AArch32 the return address's upper half is 0.
    x.elr_el1 = from_aarch32(s.pstate) ? (e.address & 0xffffffffull) : e.address;
    x.spsr_el1 = s.pstate;
    x.pc = (s.vbar_el1 & ~0x7ffull) + el1_sync_vector_offset(s.pstate);  // VBAR_EL1[10:0] RES0
    x.pstate = el1_entry_pstate(s.pstate, s.sctlr_el1, f);
    return x;
}

// The synchronous external abort matching an exit: an instruction abort for
// an instruction fetch, otherwise a data abort (a write for MmioWrite or a
// faulting write). `instruction` is the address of the instruction that
// made the exit, `far` the faulting virtual address (FAR_EL2).
constexpr InjectedException abort_for_exit(const ExitReason& reason, std::uint64_t instruction,
                                           std::uint64_t far) {
    InjectedException e{InjectKind::DataAbort, instruction, far, false};
    if (reason.kind == ExitKind::MmioWrite) e.write = true;
    if (reason.kind == ExitKind::NestedPageFault) {
        const std::uint64_t flags = reason.nested_page_fault.access_flags;
        if ((flags & exit::kAccessExecute) != 0) {
            e.kind = InjectKind::InstructionAbort;
            e.far = instruction;
        }
        e.write = (flags & exit::kAccessWrite) != 0;
    }
    return e;
}

}  // namespace armvcpu
