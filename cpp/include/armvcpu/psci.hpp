// PSCI 1.1 (Arm DEN0022) and SMCCC 1.1 (Arm DEN0028) as the core answers them.
//
// Function IDs: DEN0022 section 5.1 "Function prototypes"; return codes:
// DEN0022 table 5.2 / section 5.2.2; SMCCC ranges: DEN0028 section 6.
#pragma once

#include <cstdint>
#include <type_traits>

namespace armvcpu::psci {

// Bit 30 of a function ID selects the 64-bit (SMC64/HVC64) convention.
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

enum class ReturnCode : std::int32_t {
    Success = 0,
    NotSupported = -1,
    InvalidParameters = -2,
    Denied = -3,
    AlreadyOn = -4,
    OnPending = -5,
    InternalFailure = -6,
    NotPresent = -7,
    Disabled = -8,
    InvalidAddress = -9,
};

// Version words: major in [31:16], minor in [15:0].
inline constexpr std::uint32_t kPsciVersion = 0x00010001;   // PSCI 1.1
inline constexpr std::uint32_t kSmcccVersion = 0x00010001;  // SMCCC 1.1
// MIGRATE_INFO_TYPE: 2 = no Trusted OS needing migration.
inline constexpr std::uint32_t kMigrateInfoNotRequired = 2;

// AFFINITY_INFO results.
enum class AffinityState : std::uint8_t { On = 0, Off = 1, OnPending = 2 };

// Fast calls owned by the core: the Arm Architecture Service (owner 0,
// SMCCC's own calls) and the Standard Secure Service (owner 4, PSCI), in
// both conventions. Unknown IDs there are answered NOT_SUPPORTED, as SMCCC
// requires of the service owner.
constexpr bool is_core_function(std::uint64_t x0) {
    if (x0 > 0xffffffffu) return false;
    const auto id = static_cast<std::uint32_t>(x0);
    if ((id & 0x80000000u) == 0) return false;  // yielding calls: not ours
    const std::uint32_t owner = (id >> 24) & 0x3f;
    return owner == 0 || owner == 4;
}

// Functions that also have an SMC64/HVC64 ID (DEN0022 table 5.1): those
// whose arguments are addresses or affinities. PSCI_VERSION, CPU_OFF,
// SYSTEM_OFF, ... exist only in the 32-bit convention.
constexpr bool has_smc64_form(std::uint32_t smc32_id) {
    switch (static_cast<Function>(smc32_id)) {
        case Function::CpuSuspend:
        case Function::CpuOn:
        case Function::AffinityInfo:
        case Function::Migrate:
        case Function::MigrateInfoUpCpu:
        case Function::SystemReset2: return true;
        default: return false;
    }
}

// True for an ID of the 64-bit calling convention (bit 30).
constexpr bool is_smc64(std::uint64_t x0) { return (x0 & kSmc64Bit) != 0; }

// The SMC32 form of an ID, so SMC64 and SMC32 variants compare equal. An
// SMC64 ID that PSCI does not define stays as it is, matching no Function.
constexpr Function canonical(std::uint64_t x0) {
    const auto id = static_cast<std::uint32_t>(x0);
    if (!is_smc64(id)) return static_cast<Function>(id);
    const std::uint32_t id32 = id & ~kSmc64Bit;
    return has_smc64_form(id32) ? static_cast<Function>(id32) : static_cast<Function>(id);
}

// The SMCCC a VM's firmware interface offers.
enum class Smccc : std::uint8_t {
    // SMCCC 1.1 (DEN0028): SMCCC_VERSION answers 1.1, SMCCC_ARCH_FEATURES and
    // SYSTEM_RESET2 are implemented and PSCI_FEATURES says so.
    V1_1 = 0,
    // What QEMU 7.2's own PSCI offers a -M virt guest (measured on
    // qemu-system-aarch64 7.2 with PSCI over HVC): SMCCC_VERSION,
    // SMCCC_ARCH_FEATURES and SYSTEM_RESET2 answer NOT_SUPPORTED and
    // PSCI_FEATURES reports them so, which makes a caller assume SMCCC 1.0
    // (Linux prints "SMC Calling Convention v1.0").
    QemuVirt = 1,
};

// The calls SMCCC 1.1 offers and QEMU virt's own PSCI does not.
constexpr bool absent_on_qemu_virt(std::uint64_t fid) {
    switch (canonical(fid)) {
        case Function::SmcccVersion:
        case Function::SmcccArchFeatures:
        case Function::SystemReset2: return is_core_function(fid);
        default: return false;
    }
}

// Whether PSCI_FEATURES reports a function as implemented.
constexpr bool is_implemented(std::uint64_t fid, Smccc smccc = Smccc::V1_1) {
    if (!is_core_function(fid)) return false;
    if (smccc == Smccc::QemuVirt && absent_on_qemu_virt(fid)) return false;
    switch (canonical(fid)) {
        case Function::PsciVersion:
        case Function::CpuSuspend:
        case Function::CpuOff:
        case Function::CpuOn:
        case Function::AffinityInfo:
        case Function::MigrateInfoType:
        case Function::SystemOff:
        case Function::SystemReset:
        case Function::SystemReset2:
        case Function::PsciFeatures:
        case Function::SmcccVersion:
        case Function::SmcccArchFeatures: return true;
        default: return false;
    }
}

// The affinity fields of an MPIDR (Aff3 [39:32], Aff2..Aff0 [23:0]).
constexpr std::uint64_t affinity_of(std::uint64_t mpidr) { return mpidr & 0xff00ffffffull; }

// Power state of every vCPU of one VM, shared by its vCPUs. CPU_ON and
// CPU_OFF change it with atomic compare-and-swap so that of several
// concurrent CPU_ON calls for one CPU exactly one succeeds.
struct VmPowerState {
    static constexpr unsigned kMaxVcpus = 8;

    unsigned num_vcpus;
    std::uint64_t mpidr[kMaxVcpus];  // each vCPU's affinity (as its VMPIDR_EL2)
    std::uint8_t state[kMaxVcpus];   // AffinityState

    // The vCPU index of an affinity value, or -1.
    [[nodiscard]] constexpr int index_of(std::uint64_t target) const {
        for (unsigned i = 0; i < num_vcpus && i < kMaxVcpus; ++i) {
            if (affinity_of(mpidr[i]) == affinity_of(target)) return static_cast<int>(i);
        }
        return -1;
    }

    // Atomic at run time; plain in constant evaluation, so that classification
    // stays usable in static_asserts.
    [[nodiscard]] constexpr AffinityState load(unsigned index) const {
        if (std::is_constant_evaluated()) return static_cast<AffinityState>(state[index]);
        return static_cast<AffinityState>(__atomic_load_n(&state[index], __ATOMIC_ACQUIRE));
    }

    constexpr void store(unsigned index, AffinityState s) {
        if (std::is_constant_evaluated()) {
            state[index] = static_cast<std::uint8_t>(s);
            return;
        }
        __atomic_store_n(&state[index], static_cast<std::uint8_t>(s), __ATOMIC_RELEASE);
    }

    // CPU_ON's state rules (DEN0022 5.6): OFF -> ON_PENDING succeeds; a CPU
    // already on answers ALREADY_ON, one being turned on ON_PENDING.
    constexpr ReturnCode try_cpu_on(std::uint64_t target) {
        const int index = index_of(target);
        if (index < 0) return ReturnCode::InvalidParameters;
        auto expected = static_cast<std::uint8_t>(AffinityState::Off);
        const auto desired = static_cast<std::uint8_t>(AffinityState::OnPending);
        bool won = false;
        if (std::is_constant_evaluated()) {
            expected = state[index];
            won = expected == static_cast<std::uint8_t>(AffinityState::Off);
            if (won) state[index] = desired;
        } else {
            won = __atomic_compare_exchange_n(&state[index], &expected, desired, false,
                                              __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
        }
        if (won) return ReturnCode::Success;
        return expected == static_cast<std::uint8_t>(AffinityState::On) ? ReturnCode::AlreadyOn
                                                                        : ReturnCode::OnPending;
    }
};

}  // namespace armvcpu::psci
