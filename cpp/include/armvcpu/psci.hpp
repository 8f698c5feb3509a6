// PSCI and SMCCC function identifiers. Values: Arm DEN0022 (PSCI 1.1),
// section 5.1 "Function prototypes", and DEN0028 (SMCCC 1.1), section 7.
// Bit 30 of a function ID selects the SMC64/HVC64 calling convention.
#pragma once

#include <cstdint>

namespace armvcpu::psci {

inline constexpr std::uint32_t kSmc64Bit = 1u << 30;

enum class Function : std::uint32_t {
    PsciVersion = 0x84000000,
    CpuSuspend = 0x84000001,
    CpuOff = 0x84000002,
    CpuOn = 0x84000003,
    AffinityInfo = 0x84000004,
    Migrate = 0x84000005,
    MigrateInfoType = 0x84000006,
    MigrateInfoUpCpu = 0x84000007,
    SystemOff = 0x84000008,
    SystemReset = 0x84000009,
    PsciFeatures = 0x8400000A,
    SystemReset2 = 0x84000012,
    SmcccVersion = 0x80000000,
    SmcccArchFeatures = 0x80000001,
};

// PSCI owns the Standard Secure Service range 0x00..0x1F of both conventions;
// SMCCC's own calls live in the Arm Architecture Service range.
constexpr bool is_psci_function_id(std::uint64_t x0) {
    if (x0 > 0xffffffffu) return false;
    const auto id = static_cast<std::uint32_t>(x0) & ~kSmc64Bit;
    return (id >= 0x84000000u && id <= 0x8400001Fu) || id == 0x80000000u || id == 0x80000001u;
}

// The SMC32 form of an ID, so SMC64 and SMC32 variants compare equal.
constexpr Function canonical(std::uint64_t x0) {
    return static_cast<Function>(static_cast<std::uint32_t>(x0) & ~kSmc64Bit);
}

}  // namespace armvcpu::psci
