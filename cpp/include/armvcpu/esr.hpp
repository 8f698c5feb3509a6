// ESR_EL2 (Exception Syndrome Register, EL2): the exception class and the
// fields common to every class. Field positions: Arm ARM (DDI 0487), D17.2.37
// "ESR_EL2": EC = [31:26], IL = [25], ISS = [24:0], ISS2 = [55:32].
#pragma once

#include <cstdint>

namespace armvcpu {

// Exception classes that can be taken to EL2. Names follow the Arm ARM's
// description of each EC value.
enum class ExceptionClass : std::uint8_t {
    Unknown = 0x00,
    WfxTrap = 0x01,       // WFI, WFE, WFIT, WFET
    Mcr15Mrc15 = 0x03,    // AArch32 MCR/MRC, coproc 0b1111
    Mcrr15Mrrc15 = 0x04,  // AArch32 MCRR/MRRC, coproc 0b1111
    Mcr14Mrc14 = 0x05,    // AArch32 MCR/MRC, coproc 0b1110
    Ldc14Stc14 = 0x06,    // AArch32 LDC/STC
    SimdFpAccess = 0x07,  // SVE, Advanced SIMD or FP access (CPTR_EL2)
    Vmrs = 0x08,          // AArch32 VMRS (ID group traps)
    PointerAuth = 0x09,   // trapped pointer-authentication instruction
    Ld64bSt64b = 0x0A,    // LD64B/ST64B family
    Mrrc14 = 0x0C,        // AArch32 MRRC, coproc 0b1110
    BranchTarget = 0x0D,  // BTI
    IllegalState = 0x0E,  // illegal execution state
    Svc32 = 0x11,
    Hvc32 = 0x12,
    Smc32 = 0x13,
    Svc64 = 0x15,
    Hvc64 = 0x16,
    Smc64 = 0x17,
    SysReg64 = 0x18,  // MSR, MRS or system instruction
    SveAccess = 0x19,
    Eret = 0x1A,     // ERET/ERETAA/ERETAB (FEAT_NV)
    Tstart = 0x1B,   // TSTART (FEAT_TME)
    PacFail = 0x1C,  // FEAT_FPAC
    SmeAccess = 0x1D,
    InstrAbortLower = 0x20,
    InstrAbortSame = 0x21,
    PcAlignment = 0x22,
    DataAbortLower = 0x24,
    DataAbortSame = 0x25,
    SpAlignment = 0x26,
    MemoryOp = 0x27,  // FEAT_MOPS
    FpException32 = 0x28,
    FpException64 = 0x2C,
    SError = 0x2F,
    BreakpointLower = 0x30,
    BreakpointSame = 0x31,
    SoftwareStepLower = 0x32,
    SoftwareStepSame = 0x33,
    WatchpointLower = 0x34,
    WatchpointSame = 0x35,
    Bkpt32 = 0x38,
    VectorCatch32 = 0x3A,
    Brk64 = 0x3C,
};

// The Arm ARM's short name of an exception class, or nullptr for a value the
// architecture reserves.
constexpr const char* exception_class_name(std::uint8_t ec) {
    switch (static_cast<ExceptionClass>(ec)) {
        case ExceptionClass::Unknown: return "Unknown";
        case ExceptionClass::WfxTrap: return "WFx";
        case ExceptionClass::Mcr15Mrc15: return "MCR/MRC (cp15)";
        case ExceptionClass::Mcrr15Mrrc15: return "MCRR/MRRC (cp15)";
        case ExceptionClass::Mcr14Mrc14: return "MCR/MRC (cp14)";
        case ExceptionClass::Ldc14Stc14: return "LDC/STC (cp14)";
        case ExceptionClass::SimdFpAccess: return "SIMD/FP access";
        case ExceptionClass::Vmrs: return "VMRS";
        case ExceptionClass::PointerAuth: return "PAuth";
        case ExceptionClass::Ld64bSt64b: return "LD64B/ST64B";
        case ExceptionClass::Mrrc14: return "MRRC (cp14)";
        case ExceptionClass::BranchTarget: return "BTI";
        case ExceptionClass::IllegalState: return "Illegal execution state";
        case ExceptionClass::Svc32: return "SVC32";
        case ExceptionClass::Hvc32: return "HVC32";
        case ExceptionClass::Smc32: return "SMC32";
        case ExceptionClass::Svc64: return "SVC64";
        case ExceptionClass::Hvc64: return "HVC64";
        case ExceptionClass::Smc64: return "SMC64";
        case ExceptionClass::SysReg64: return "MSR/MRS";
        case ExceptionClass::SveAccess: return "SVE access";
        case ExceptionClass::Eret: return "ERET";
        case ExceptionClass::Tstart: return "TSTART";
        case ExceptionClass::PacFail: return "PAC failure";
        case ExceptionClass::SmeAccess: return "SME access";
        case ExceptionClass::InstrAbortLower: return "Instruction abort (lower EL)";
        case ExceptionClass::InstrAbortSame: return "Instruction abort (same EL)";
        case ExceptionClass::PcAlignment: return "PC alignment";
        case ExceptionClass::DataAbortLower: return "Data abort (lower EL)";
        case ExceptionClass::DataAbortSame: return "Data abort (same EL)";
        case ExceptionClass::SpAlignment: return "SP alignment";
        case ExceptionClass::MemoryOp: return "MOPS";
        case ExceptionClass::FpException32: return "FP exception (AArch32)";
        case ExceptionClass::FpException64: return "FP exception (AArch64)";
        case ExceptionClass::SError: return "SError";
        case ExceptionClass::BreakpointLower: return "Breakpoint (lower EL)";
        case ExceptionClass::BreakpointSame: return "Breakpoint (same EL)";
        case ExceptionClass::SoftwareStepLower: return "Software step (lower EL)";
        case ExceptionClass::SoftwareStepSame: return "Software step (same EL)";
        case ExceptionClass::WatchpointLower: return "Watchpoint (lower EL)";
        case ExceptionClass::WatchpointSame: return "Watchpoint (same EL)";
        case ExceptionClass::Bkpt32: return "BKPT (AArch32)";
        case ExceptionClass::VectorCatch32: return "Vector catch (AArch32)";
        case ExceptionClass::Brk64: return "BRK";
    }
    return nullptr;
}

// A raw ESR_EL2 value with accessors for the class-independent fields.
struct Esr {
    std::uint64_t value;

    [[nodiscard]] constexpr std::uint8_t ec() const {
        return static_cast<std::uint8_t>((value >> 26) & 0x3f);
    }
    [[nodiscard]] constexpr ExceptionClass exception_class() const {
        return static_cast<ExceptionClass>(ec());
    }
    // IL: 1 when the trapped instruction was 32 bits wide. The PC of an
    // emulated instruction advances by instruction_length().
    [[nodiscard]] constexpr bool il() const { return ((value >> 25) & 1) != 0; }
    [[nodiscard]] constexpr unsigned instruction_length() const { return il() ? 4 : 2; }
    [[nodiscard]] constexpr std::uint32_t iss() const {
        return static_cast<std::uint32_t>(value & 0x1ffffff);
    }
    [[nodiscard]] constexpr std::uint32_t iss2() const {
        return static_cast<std::uint32_t>((value >> 32) & 0xffffff);
    }
    // HVC, SMC, SVC and BRK: the instruction's imm16 is ISS[15:0].
    [[nodiscard]] constexpr std::uint16_t imm16() const {
        return static_cast<std::uint16_t>(value & 0xffff);
    }
};

// The registers the hardware fills on an exception to EL2.
struct Syndrome {
    std::uint64_t esr;    // ESR_EL2
    std::uint64_t far;    // FAR_EL2
    std::uint64_t hpfar;  // HPFAR_EL2
};

}  // namespace armvcpu
