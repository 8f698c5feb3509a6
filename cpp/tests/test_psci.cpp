// PSCI (Arm DEN0022, "Arm Power State Coordination Interface") and SMCCC (Arm
// DEN0028, "SMC Calling Convention") as classify_sync() answers them.
//
// Golden values:
//  - Function IDs, DEN0022 5.1 / table "PSCI function IDs": PSCI_VERSION
//    0x84000000, CPU_SUSPEND 0x84000001/0xC4000001, CPU_OFF 0x84000002, CPU_ON
//    0x84000003/0xC4000003, AFFINITY_INFO 0x84000004/0xC4000004, MIGRATE
//    0x84000005/0xC4000005, MIGRATE_INFO_TYPE 0x84000006, SYSTEM_OFF
//    0x84000008, SYSTEM_RESET 0x84000009, PSCI_FEATURES 0x8400000A,
//    SYSTEM_SUSPEND 0x8400000E/0xC400000E, SYSTEM_RESET2 0x84000012/0xC4000012.
//  - Return codes, DEN0022 5.2.2: SUCCESS 0, NOT_SUPPORTED -1,
//    INVALID_PARAMETERS -2, DENIED -3, ALREADY_ON -4, ON_PENDING -5; returned
//    in X0 as a signed value (so -1 is 0xFFFFFFFFFFFFFFFF).
//  - PSCI_VERSION: major [30:16], minor [15:0] (1.1 = 0x00010001).
//  - AFFINITY_INFO results (DEN0022 5.1.5): 0 ON, 1 OFF, 2 ON_PENDING;
//    INVALID_PARAMETERS for an unknown target or an unsupported level.
//  - CPU_ON (DEN0022 5.1.4 and 5.6): X1 target MPIDR affinity, X2 entry point,
//    X3 context ID; ALREADY_ON for a core that is on, ON_PENDING for one that
//    is being turned on.
//  - MIGRATE_INFO_TYPE (DEN0022 5.1.7): 2 = "Trusted OS is either not present
//    or does not require migration".
//  - SMCCC_VERSION 0x80000000, SMCCC_ARCH_FEATURES 0x80000001,
//    SMCCC_ARCH_WORKAROUND_1 0x80008000 (DEN0028 7.x); SMCCC 1.1 = 0x10001.
//  - HVC64 ESR: EC 0x16, IL 1 -> 0x5A000000; SMC64: EC 0x17 -> 0x5E000000
//    (Arm ARM D17.2.37).
#include <gtest/gtest.h>

#include <array>
#include <barrier>
#include <cstdint>
#include <thread>
#include <vector>

#include "armvcpu/classify.hpp"

using namespace armvcpu;
using psci::AffinityState;
using psci::ReturnCode;
using psci::VmPowerState;

namespace {

constexpr std::uint64_t kHvc = 0x5A000000;
constexpr std::uint64_t kSmc = 0x5E000000;
constexpr std::uint64_t kPc = 0x40001000;

// Return codes as X0 holds them: sign-extended to 64 bits.
constexpr std::uint64_t kSuccess = 0;
constexpr std::uint64_t kNotSupported = 0xFFFFFFFFFFFFFFFFull;
constexpr std::uint64_t kInvalidParameters = 0xFFFFFFFFFFFFFFFEull;
constexpr std::uint64_t kAlreadyOn = 0xFFFFFFFFFFFFFFFCull;
constexpr std::uint64_t kOnPending = 0xFFFFFFFFFFFFFFFBull;

constexpr auto kCpuOn32 =
    0x84000003ull;  // unsigned long long, like the literals in the lists below
constexpr auto kCpuOn64 = 0xC4000003ull;
constexpr auto kAffinityInfo32 = 0x84000004ull;
constexpr auto kAffinityInfo64 = 0xC4000004ull;

TrapFrame call(std::uint64_t fid, std::uint64_t x1 = 0, std::uint64_t x2 = 0,
               std::uint64_t x3 = 0) {
    TrapFrame f{};
    f.set_gpr(0, fid);
    f.set_gpr(1, x1);
    f.set_gpr(2, x2);
    f.set_gpr(3, x3);
    f.set_exception_pc(kPc);
    return f;
}

// Two vCPUs with MPIDR affinities 0 and 1; vCPU 0 on, vCPU 1 off.
VmPowerState two_cpus() {
    VmPowerState p{};
    p.num_vcpus = 2;
    p.mpidr[0] = 0;
    p.mpidr[1] = 1;
    p.state[0] = static_cast<std::uint8_t>(AffinityState::On);
    p.state[1] = static_cast<std::uint8_t>(AffinityState::Off);
    return p;
}

}  // namespace

// ----------------------------------------------------------- version calls

TEST(Psci, VersionIs1Point1) {
    TrapFrame f = call(0x84000000);
    EXPECT_EQ(classify_sync(f, {kHvc, 0, 0}).kind, ExitKind::Nothing);
    EXPECT_EQ(f.gpr(0), 0x10001u);
    EXPECT_EQ(f.exception_pc(), kPc);
}

TEST(Psci, SmcccVersionIs1Point1) {
    TrapFrame f = call(0x80000000);
    EXPECT_EQ(classify_sync(f, {kHvc, 0, 0}).kind, ExitKind::Nothing);
    EXPECT_EQ(f.gpr(0), 0x10001u);
}

TEST(Psci, OtherArgumentRegistersAreLeftAlone) {
    TrapFrame f = call(0x84000000, 0x111, 0x222, 0x333);
    classify_sync(f, {kHvc, 0, 0});
    EXPECT_EQ(f.gpr(1), 0x111u);
    EXPECT_EQ(f.gpr(2), 0x222u);
    EXPECT_EQ(f.gpr(3), 0x333u);
}

// ------------------------------------------------------------ PSCI_FEATURES

TEST(PsciFeatures, ImplementedFunctionsReturnSuccess) {
    for (std::uint64_t fid :
         {0x84000000ull, 0x84000001ull, 0xC4000001ull, 0x84000002ull, kCpuOn32, kCpuOn64,
          kAffinityInfo32, kAffinityInfo64, 0x84000006ull, 0x84000008ull, 0x84000009ull,
          0x8400000Aull, 0x84000012ull, 0xC4000012ull}) {
        TrapFrame f = call(0x8400000A, fid);
        EXPECT_EQ(classify_sync(f, {kHvc, 0, 0}).kind, ExitKind::Nothing);
        EXPECT_EQ(f.gpr(0), kSuccess) << std::hex << fid;
    }
}

TEST(PsciFeatures, CpuOnIsSupported) {
    TrapFrame f = call(0x8400000A, kCpuOn32);
    classify_sync(f, {kHvc, 0, 0});
    EXPECT_EQ(f.gpr(0), 0u);
}

TEST(PsciFeatures, MigrateIsNotSupported) {
    TrapFrame f = call(0x8400000A, 0x84000005);
    classify_sync(f, {kHvc, 0, 0});
    EXPECT_EQ(f.gpr(0), kNotSupported);
}

// (PSCI_FEATURES is an SMC32 call: its fid is W1, so upper bits of X1 are
// ignored; see PsciFindings.Smc32CallsUseOnlyTheLowWordOfArguments.)
TEST(PsciFeatures, UnimplementedAndForeignIdsAreNotSupported) {
    for (std::uint64_t fid :
         {0x84000005ull, 0xC4000005ull, 0x84000007ull, 0x8400000Bull, 0x8400000Eull, 0xC400000Eull,
          0x84000013ull, 0x84000020ull, 0x82000000ull, 0x12345678ull, 0x80008000ull}) {
        TrapFrame f = call(0x8400000A, fid);
        classify_sync(f, {kHvc, 0, 0});
        EXPECT_EQ(f.gpr(0), kNotSupported) << std::hex << fid;
    }
}

// DEN0028: from SMCCC 1.1 on, PSCI_FEATURES(SMCCC_VERSION) returns SUCCESS so
// that a caller can discover SMCCC_VERSION.
TEST(PsciFeatures, SmcccVersionIsDiscoverable) {
    TrapFrame f = call(0x8400000A, 0x80000000);
    classify_sync(f, {kHvc, 0, 0});
    EXPECT_EQ(f.gpr(0), kSuccess);
}

// psci::Smccc::QemuVirt: what QEMU 7.2's own PSCI answers a -M virt guest,
// measured on qemu-system-aarch64 7.2 (cortex-a57, PSCI over HVC): PSCI 1.1;
// PSCI_FEATURES NOT_SUPPORTED for SMCCC_VERSION, SMCCC_ARCH_FEATURES and
// SYSTEM_RESET2 (SMC32 and SMC64), SUCCESS for PSCI_FEATURES, CPU_SUSPEND
// (both), MIGRATE_INFO_TYPE and AFFINITY_INFO64; the three calls themselves
// NOT_SUPPORTED, so Linux assumes SMCCC 1.0.
TEST(QemuVirtSmccc, SmcccCallsAreNotSupportedAndNotReported) {
    const ClassifyContext qemu{nullptr, 0, psci::Smccc::QemuVirt};
    for (std::uint64_t fid : {0x80000000ull, 0x80000001ull, 0x84000012ull, 0xC4000012ull}) {
        TrapFrame features = call(0x8400000A, fid);
        EXPECT_EQ(classify_sync(features, {kHvc, 0, 0}, qemu).kind, ExitKind::Nothing);
        EXPECT_EQ(features.gpr(0), kNotSupported) << std::hex << fid;
        TrapFrame direct = call(fid, 0x80000000);
        EXPECT_EQ(classify_sync(direct, {kHvc, 0, 0}, qemu).kind, ExitKind::Nothing)
            << std::hex << fid;
        EXPECT_EQ(direct.gpr(0), kNotSupported) << std::hex << fid;
    }
}

TEST(QemuVirtSmccc, PsciIsAsQemusOwn) {
    const ClassifyContext qemu{nullptr, 0, psci::Smccc::QemuVirt};
    TrapFrame version = call(0x84000000);
    classify_sync(version, {kHvc, 0, 0}, qemu);
    EXPECT_EQ(version.gpr(0), 0x10001u);
    for (std::uint64_t fid :
         {0x8400000Aull, 0x84000001ull, 0xC4000001ull, 0x84000006ull, kAffinityInfo64}) {
        TrapFrame f = call(0x8400000A, fid);
        classify_sync(f, {kHvc, 0, 0}, qemu);
        EXPECT_EQ(f.gpr(0), kSuccess) << std::hex << fid;
    }
    for (std::uint64_t fid : {0x84000005ull, 0x8400000Bull, 0x8400000Eull, 0x84000013ull}) {
        TrapFrame f = call(0x8400000A, fid);
        classify_sync(f, {kHvc, 0, 0}, qemu);
        EXPECT_EQ(f.gpr(0), kNotSupported) << std::hex << fid;
    }
    // SYSTEM_RESET (not SYSTEM_RESET2) still resets.
    TrapFrame reset = call(0x84000009);
    EXPECT_EQ(classify_sync(reset, {kHvc, 0, 0}, qemu).kind, ExitKind::SystemDown);
}

TEST(SmcccArchFeatures, WorkaroundsAreNotSupported) {
    for (std::uint64_t fid : {0x80008000ull, 0x80007FFFull, 0x80003FFFull}) {
        TrapFrame f = call(0x80000001, fid);
        EXPECT_EQ(classify_sync(f, {kHvc, 0, 0}).kind, ExitKind::Nothing);
        EXPECT_EQ(f.gpr(0), kNotSupported) << std::hex << fid;
    }
}

// ----------------------------------------------------- simple PSCI calls

TEST(Psci, MigrateInfoTypeIsTwo) {
    TrapFrame f = call(0x84000006);
    EXPECT_EQ(classify_sync(f, {kHvc, 0, 0}).kind, ExitKind::Nothing);
    EXPECT_EQ(f.gpr(0), 2u);
}

TEST(Psci, MigrateIsNotSupported) {
    for (std::uint64_t fid : {0x84000005ull, 0xC4000005ull}) {
        TrapFrame f = call(fid, 1);
        EXPECT_EQ(classify_sync(f, {kHvc, 0, 0}).kind, ExitKind::Nothing);
        EXPECT_EQ(f.gpr(0), kNotSupported);
    }
}

TEST(Psci, CpuSuspendHaltsAndReturnsSuccess) {
    for (std::uint64_t fid : {0x84000001ull, 0xC4000001ull}) {
        TrapFrame f = call(fid, 0x0, 0x40000000, 0);
        EXPECT_EQ(classify_sync(f, {kHvc, 0, 0}).kind, ExitKind::Halt) << std::hex << fid;
        EXPECT_EQ(f.gpr(0), kSuccess);
        EXPECT_EQ(f.exception_pc(), kPc);
    }
}

TEST(Psci, SystemOffIsSystemDownWithoutReset) {
    TrapFrame f = call(0x84000008);
    const ExitReason r = classify_sync(f, {kHvc, 0, 0});
    ASSERT_EQ(r.kind, ExitKind::SystemDown);
    EXPECT_EQ(r.system_down.reset, 0u);
}

TEST(Psci, SystemResetAndReset2AreSystemDownWithReset) {
    for (std::uint64_t fid : {0x84000009ull, 0x84000012ull, 0xC4000012ull}) {
        TrapFrame f = call(fid);
        const ExitReason r = classify_sync(f, {kHvc, 0, 0});
        ASSERT_EQ(r.kind, ExitKind::SystemDown) << std::hex << fid;
        EXPECT_EQ(r.system_down.reset, 1u) << std::hex << fid;
    }
}

// The same calls over SMC (HCR_EL2.TSC) answer the same and skip the SMC.
TEST(Psci, SmcConduitAnswersTheSameAndAdvances) {
    TrapFrame f = call(0x8400000A, 0x84000005);
    EXPECT_EQ(classify_sync(f, {kSmc, 0, 0}).kind, ExitKind::Nothing);
    EXPECT_EQ(f.gpr(0), kNotSupported);
    EXPECT_EQ(f.exception_pc(), kPc + 4);
    TrapFrame g = call(0x84000009);
    EXPECT_EQ(classify_sync(g, {kSmc, 0, 0}).kind, ExitKind::SystemDown);
    EXPECT_EQ(g.exception_pc(), kPc + 4);
}

// --------------------------------------------------------------- CPU_ON

TEST(PsciCpuOn, FirstCallSucceedsSecondIsPendingThenAlreadyOn) {
    for (std::uint64_t fid : {kCpuOn32, kCpuOn64}) {
        VmPowerState power = two_cpus();
        const ClassifyContext ctx{&power, 0};

        TrapFrame f = call(fid, 1, 0x40080000, 0xc0ffee);
        const ExitReason r = classify_sync(f, {kHvc, 0, 0}, ctx);
        ASSERT_EQ(r.kind, ExitKind::CpuUp) << std::hex << fid;
        EXPECT_EQ(r.cpu_up.target_cpu, 1u);
        EXPECT_EQ(r.cpu_up.entry_point, 0x40080000u);
        EXPECT_EQ(r.cpu_up.arg, 0xc0ffeeu);
        EXPECT_EQ(f.gpr(0), kSuccess);
        EXPECT_EQ(power.load(1), AffinityState::OnPending);

        TrapFrame g = call(fid, 1, 0x40080000, 0);
        EXPECT_EQ(classify_sync(g, {kHvc, 0, 0}, ctx).kind, ExitKind::Nothing);
        EXPECT_EQ(g.gpr(0), kOnPending);

        power.store(1, AffinityState::On);
        TrapFrame h = call(fid, 1, 0x40080000, 0);
        EXPECT_EQ(classify_sync(h, {kHvc, 0, 0}, ctx).kind, ExitKind::Nothing);
        EXPECT_EQ(h.gpr(0), kAlreadyOn);
        EXPECT_EQ(power.load(1), AffinityState::On);
    }
}

TEST(PsciCpuOn, CallerItselfIsAlreadyOn) {
    VmPowerState power = two_cpus();
    TrapFrame f = call(kCpuOn64, 0, 0x40080000, 0);
    EXPECT_EQ(classify_sync(f, {kHvc, 0, 0}, {&power, 0}).kind, ExitKind::Nothing);
    EXPECT_EQ(f.gpr(0), kAlreadyOn);
}

TEST(PsciCpuOn, UnknownTargetIsInvalidParameters) {
    VmPowerState power = two_cpus();
    TrapFrame f = call(kCpuOn32, 7, 0x40080000, 0);
    EXPECT_EQ(classify_sync(f, {kHvc, 0, 0}, {&power, 0}).kind, ExitKind::Nothing);
    EXPECT_EQ(f.gpr(0), kInvalidParameters);
    EXPECT_EQ(power.load(0), AffinityState::On);
    EXPECT_EQ(power.load(1), AffinityState::Off);
}

// target_cpu carries MPIDR's affinity fields (Aff3 [39:32], Aff2..Aff0
// [23:0]); MPIDR_EL1 bit 31 is RES1 and bits [30:24] are U/MT/RES0, so a
// stored MPIDR with them set still matches a plain affinity value.
TEST(PsciCpuOn, TargetsMatchOnAffinityFieldsOnly) {
    VmPowerState power{};
    power.num_vcpus = 3;
    power.mpidr[0] = 0x80000000;
    power.mpidr[1] = 0x81000100;          // MT set, Aff1 1
    power.mpidr[2] = 0x0000000180000000;  // Aff3 1
    power.state[1] = static_cast<std::uint8_t>(AffinityState::Off);
    power.state[2] = static_cast<std::uint8_t>(AffinityState::Off);
    EXPECT_EQ(power.index_of(0x100), 1);
    EXPECT_EQ(power.index_of(0x100000000), 2);
    EXPECT_EQ(power.index_of(0x1), -1);
    TrapFrame f = call(kCpuOn64, 0x100, 0x40080000, 0);
    EXPECT_EQ(classify_sync(f, {kHvc, 0, 0}, {&power, 0}).kind, ExitKind::CpuUp);
    EXPECT_EQ(power.load(1), AffinityState::OnPending);
    EXPECT_EQ(power.load(2), AffinityState::Off);
}

TEST(PsciCpuOn, WithoutPowerStateEveryCallIsCpuUp) {
    TrapFrame f = call(kCpuOn64, 5, 0x40080000, 9);
    const ExitReason r = classify_sync(f, {kHvc, 0, 0});
    ASSERT_EQ(r.kind, ExitKind::CpuUp);
    EXPECT_EQ(r.cpu_up.target_cpu, 5u);
    EXPECT_EQ(f.gpr(0), kSuccess);
}

TEST(PsciCpuOn, TryCpuOnReturnCodes) {
    VmPowerState power = two_cpus();
    EXPECT_EQ(power.try_cpu_on(1), ReturnCode::Success);
    EXPECT_EQ(power.try_cpu_on(1), ReturnCode::OnPending);
    EXPECT_EQ(power.try_cpu_on(0), ReturnCode::AlreadyOn);
    EXPECT_EQ(power.try_cpu_on(2), ReturnCode::InvalidParameters);
    EXPECT_EQ(static_cast<std::int32_t>(ReturnCode::Success), 0);
    EXPECT_EQ(static_cast<std::int32_t>(ReturnCode::NotSupported), -1);
    EXPECT_EQ(static_cast<std::int32_t>(ReturnCode::InvalidParameters), -2);
    EXPECT_EQ(static_cast<std::int32_t>(ReturnCode::Denied), -3);
    EXPECT_EQ(static_cast<std::int32_t>(ReturnCode::AlreadyOn), -4);
    EXPECT_EQ(static_cast<std::int32_t>(ReturnCode::OnPending), -5);
    EXPECT_EQ(static_cast<std::int32_t>(ReturnCode::InternalFailure), -6);
    EXPECT_EQ(static_cast<std::int32_t>(ReturnCode::NotPresent), -7);
    EXPECT_EQ(static_cast<std::int32_t>(ReturnCode::Disabled), -8);
    EXPECT_EQ(static_cast<std::int32_t>(ReturnCode::InvalidAddress), -9);
}

// -------------------------------------------------------- AFFINITY_INFO

TEST(PsciAffinityInfo, ReportsOnOffAndOnPending) {
    for (std::uint64_t fid : {kAffinityInfo32, kAffinityInfo64}) {
        VmPowerState power = two_cpus();
        const ClassifyContext ctx{&power, 0};
        TrapFrame on = call(fid, 0, 0);
        EXPECT_EQ(classify_sync(on, {kHvc, 0, 0}, ctx).kind, ExitKind::Nothing);
        EXPECT_EQ(on.gpr(0), 0u);
        TrapFrame off = call(fid, 1, 0);
        classify_sync(off, {kHvc, 0, 0}, ctx);
        EXPECT_EQ(off.gpr(0), 1u);
        power.store(1, AffinityState::OnPending);
        TrapFrame pending = call(fid, 1, 0);
        classify_sync(pending, {kHvc, 0, 0}, ctx);
        EXPECT_EQ(pending.gpr(0), 2u);
    }
}

TEST(PsciAffinityInfo, HigherLevelsAreInvalidParameters) {
    VmPowerState power = two_cpus();
    for (std::uint64_t level : {1ull, 2ull, 3ull}) {
        TrapFrame f = call(kAffinityInfo64, 0, level);
        EXPECT_EQ(classify_sync(f, {kHvc, 0, 0}, {&power, 0}).kind, ExitKind::Nothing);
        EXPECT_EQ(f.gpr(0), kInvalidParameters) << level;
    }
    TrapFrame g = call(kAffinityInfo32, 0, 1);  // no power state either
    classify_sync(g, {kHvc, 0, 0});
    EXPECT_EQ(g.gpr(0), kInvalidParameters);
}

TEST(PsciAffinityInfo, UnknownTargetIsInvalidParameters) {
    VmPowerState power = two_cpus();
    TrapFrame f = call(kAffinityInfo32, 7, 0);
    classify_sync(f, {kHvc, 0, 0}, {&power, 0});
    EXPECT_EQ(f.gpr(0), kInvalidParameters);
}

TEST(PsciAffinityInfo, WithoutPowerStateEverythingIsOn) {
    TrapFrame f = call(kAffinityInfo64, 3, 0);
    classify_sync(f, {kHvc, 0, 0});
    EXPECT_EQ(f.gpr(0), 0u);
}

// ---------------------------------------------------------------- CPU_OFF

TEST(PsciCpuOff, IsCpuDownAndTurnsTheCallerOff) {
    VmPowerState power = two_cpus();
    power.store(1, AffinityState::On);
    TrapFrame f = call(0x84000002);
    EXPECT_EQ(classify_sync(f, {kHvc, 0, 0}, {&power, 1}).kind, ExitKind::CpuDown);
    EXPECT_EQ(power.load(1), AffinityState::Off);
    EXPECT_EQ(power.load(0), AffinityState::On);
    // Off again: CPU_ON may bring it back.
    TrapFrame g = call(kCpuOn32, 1, 0x40080000, 0);
    EXPECT_EQ(classify_sync(g, {kHvc, 0, 0}, {&power, 0}).kind, ExitKind::CpuUp);
}

// ------------------------------------------------------------ concurrency

// DEN0022 5.6: of concurrent CPU_ON calls for one core exactly one succeeds.
TEST(PsciConcurrency, ExactlyOneTryCpuOnWinsEachRound) {
    constexpr unsigned kThreads = 4;
    constexpr unsigned kRounds = 2000;
    VmPowerState power = two_cpus();
    std::vector<std::array<ReturnCode, kThreads>> results(kRounds);
    std::barrier sync(kThreads + 1);
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (unsigned round = 0; round < kRounds; ++round) {
                sync.arrive_and_wait();  // the round's state is set
                results[round][t] = power.try_cpu_on(1);
                sync.arrive_and_wait();  // the round is over
            }
        });
    }
    for (unsigned round = 0; round < kRounds; ++round) {
        power.store(1, AffinityState::Off);
        sync.arrive_and_wait();
        sync.arrive_and_wait();
    }
    for (auto& th : threads) th.join();
    for (unsigned round = 0; round < kRounds; ++round) {
        unsigned wins = 0, pending = 0;
        for (ReturnCode rc : results[round]) {
            if (rc == ReturnCode::Success) ++wins;
            if (rc == ReturnCode::OnPending) ++pending;
        }
        ASSERT_EQ(wins, 1u) << "round " << round;
        ASSERT_EQ(pending, kThreads - 1) << "round " << round;
    }
    EXPECT_EQ(power.load(1), AffinityState::OnPending);
}

// The same race through the full classification path: one CpuUp per round.
TEST(PsciConcurrency, ExactlyOneCpuUpExitEachRound) {
    constexpr unsigned kThreads = 2;
    constexpr unsigned kRounds = 2000;
    VmPowerState power = two_cpus();
    std::vector<std::array<ExitKind, kThreads>> kinds(kRounds);
    std::vector<std::array<std::uint64_t, kThreads>> x0(kRounds);
    std::barrier sync(kThreads + 1);
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (unsigned round = 0; round < kRounds; ++round) {
                sync.arrive_and_wait();
                TrapFrame f = call(t % 2 == 0 ? kCpuOn64 : kCpuOn32, 1, 0x40080000, t);
                kinds[round][t] = classify_sync(f, {kHvc, 0, 0}, {&power, 0}).kind;
                x0[round][t] = f.gpr(0);
                sync.arrive_and_wait();
            }
        });
    }
    for (unsigned round = 0; round < kRounds; ++round) {
        power.store(1, AffinityState::Off);
        sync.arrive_and_wait();
        sync.arrive_and_wait();
    }
    for (auto& th : threads) th.join();
    for (unsigned round = 0; round < kRounds; ++round) {
        unsigned up = 0;
        for (unsigned t = 0; t < kThreads; ++t) {
            if (kinds[round][t] == ExitKind::CpuUp) {
                ++up;
                EXPECT_EQ(x0[round][t], kSuccess);
            } else {
                EXPECT_EQ(kinds[round][t], ExitKind::Nothing);
                EXPECT_EQ(x0[round][t], kOnPending);
            }
        }
        ASSERT_EQ(up, 1u) << "round " << round;
    }
}

// --------------------------------------------------------------- constexpr

namespace {

constexpr VmPowerState kTwoCpus{2, {0, 1}, {0 /* ON */, 1 /* OFF */}};

struct CallResult {
    ExitKind kind;
    std::uint64_t x0;
    AffinityState target_state;
    std::uint64_t pc;
};

constexpr CallResult psci_at_compile_time(std::uint64_t esr, std::uint64_t fid, std::uint64_t x1,
                                          std::uint64_t x2 = 0) {
    VmPowerState power = kTwoCpus;
    TrapFrame f{};
    f.set_gpr(0, fid);
    f.set_gpr(1, x1);
    f.set_gpr(2, x2);
    f.set_exception_pc(kPc);
    const ExitReason r = classify_sync(f, {esr, 0, 0}, {&power, 0});
    return {r.kind, f.gpr(0), power.load(1), f.exception_pc()};
}

}  // namespace

TEST(PsciConstexpr, ClassificationWithPowerStateIsAConstantExpression) {
    static_assert(psci_at_compile_time(kHvc, kCpuOn64, 1, 0x40080000).kind == ExitKind::CpuUp);
    static_assert(psci_at_compile_time(kHvc, kCpuOn64, 1, 0x40080000).x0 == kSuccess);
    static_assert(psci_at_compile_time(kHvc, kCpuOn64, 1, 0x40080000).target_state ==
                  AffinityState::OnPending);
    static_assert(psci_at_compile_time(kHvc, kCpuOn32, 0).x0 == kAlreadyOn);
    static_assert(psci_at_compile_time(kHvc, kCpuOn32, 7).x0 == kInvalidParameters);
    static_assert(psci_at_compile_time(kHvc, kAffinityInfo64, 1).x0 == 1);
    static_assert(psci_at_compile_time(kHvc, kAffinityInfo64, 0, 1).x0 == kInvalidParameters);
    static_assert(psci_at_compile_time(kSmc, 0x84000000, 0).x0 == 0x10001);
    static_assert(psci_at_compile_time(kSmc, 0x84000000, 0).pc == kPc + 4);
    static_assert(psci_at_compile_time(kHvc, 0x8400000A, 0x84000005).x0 == kNotSupported);
    static_assert(psci_at_compile_time(kHvc, 0x84000002, 0).kind == ExitKind::CpuDown);
    SUCCEED();
}

// ------------------------------------------------- findings (see report)

// DEN0022 5.1.14: PSCI_FEATURES returns NOT_SUPPORTED for a function ID that
// is not implemented or not present. SYSTEM_OFF (0x84000008), SYSTEM_RESET
// (0x84000009), PSCI_VERSION (0x84000000) and PSCI_FEATURES (0x8400000A) have
// no SMC64 IDs, so 0xC4000008 etc. are not PSCI functions; the core folds bit
// 30 away and answers them as if they were.
TEST(PsciFindings, Smc64IdsThatDoNotExistAreNotSupported) {
    for (std::uint64_t fid :
         {0xC4000000ull, 0xC4000008ull, 0xC4000009ull, 0xC400000Aull, 0xC0000000ull}) {
        TrapFrame f = call(0x8400000A, fid);
        classify_sync(f, {kHvc, 0, 0});
        EXPECT_EQ(f.gpr(0), kNotSupported) << std::hex << fid;
        TrapFrame g = call(fid);
        EXPECT_EQ(classify_sync(g, {kHvc, 0, 0}).kind, ExitKind::Nothing) << std::hex << fid;
        EXPECT_EQ(g.gpr(0), kNotSupported) << std::hex << fid;
    }
}

// DEN0028 (SMC32/HVC32 from AArch64): arguments are passed in W1-W7, so an
// SMC32-convention CPU_ON (0x84000003) names its target in W1 and its entry
// point in W2; the upper halves of X1/X2 are not part of the call.
TEST(PsciFindings, Smc32CallsUseOnlyTheLowWordOfArguments) {
    VmPowerState power = two_cpus();
    TrapFrame f = call(kCpuOn32, 0xffffffff00000001ull, 0xffffffff40080000ull, 0);
    const ExitReason r = classify_sync(f, {kHvc, 0, 0}, {&power, 0});
    ASSERT_EQ(r.kind, ExitKind::CpuUp);
    EXPECT_EQ(r.cpu_up.target_cpu, 1u);
    EXPECT_EQ(r.cpu_up.entry_point, 0x40080000u);
    TrapFrame g = call(kAffinityInfo32, 0xffffffff00000000ull, 0xffffffff00000000ull);
    classify_sync(g, {kHvc, 0, 0}, {&power, 0});
    EXPECT_EQ(g.gpr(0), 0u);  // vCPU 0 is ON
}
