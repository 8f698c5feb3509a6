#include <gtest/gtest.h>

#include "armvcpu/classify.hpp"

using namespace armvcpu;

namespace {
constexpr std::uint64_t kHvc0 = 0x5a000000;  // HVC #0 from AArch64 (EC 0x16, IL 1)

TrapFrame frame_with(std::uint64_t x0, std::uint64_t pc = 0x40000030) {
    TrapFrame f{};
    f.set_gpr(0, x0);
    for (unsigned i = 1; i < 31; ++i) f.set_gpr(i, 0x100 + i);
    f.set_exception_pc(pc);
    return f;
}
}  // namespace

TEST(Classify, HypercallTakesNumberFromX0AndArgsFromX1ToX6) {
    TrapFrame f = frame_with(0x42);
    const ExitReason r = classify_sync(f, {kHvc0, 0, 0});
    ASSERT_EQ(r.kind, ExitKind::Hypercall);
    EXPECT_EQ(r.hypercall.nr, 0x42u);
    for (unsigned i = 0; i < 6; ++i) EXPECT_EQ(r.hypercall.args[i], 0x101u + i);
}

// HVC's preferred return address is the next instruction (Arm ARM D1.3.2):
// ELR_EL2 already points past it, so classification must not move the PC.
TEST(Classify, HypercallLeavesPcAlone) {
    TrapFrame f = frame_with(1, 0x40000034);
    classify_sync(f, {kHvc0, 0, 0});
    EXPECT_EQ(f.exception_pc(), 0x40000034u);
}

// PSCI function IDs: DEN0022 table 5.1.
TEST(Classify, PsciSystemOffIsSystemDown) {
    TrapFrame f = frame_with(0x84000008);
    EXPECT_EQ(classify_sync(f, {kHvc0, 0, 0}).kind, ExitKind::SystemDown);
}

TEST(Classify, PsciCpuOnBothConventions) {
    for (std::uint64_t id : {0x84000003ull, 0xc4000003ull}) {
        TrapFrame f = frame_with(id);
        f.set_gpr(1, 1);           // target MPIDR
        f.set_gpr(2, 0x40001000);  // entry
        f.set_gpr(3, 0xabc);       // context id
        const ExitReason r = classify_sync(f, {kHvc0, 0, 0});
        ASSERT_EQ(r.kind, ExitKind::CpuUp) << std::hex << id;
        EXPECT_EQ(r.cpu_up.target_cpu, 1u);
        EXPECT_EQ(r.cpu_up.entry_point, 0x40001000u);
        EXPECT_EQ(r.cpu_up.arg, 0xabcu);
    }
}

TEST(Classify, PsciCpuOffIsCpuDown) {
    TrapFrame f = frame_with(0x84000002);
    EXPECT_EQ(classify_sync(f, {kHvc0, 0, 0}).kind, ExitKind::CpuDown);
}

// SMCCC (DEN0028 6.2): the owner of a service answers unknown function IDs
// in its range with NOT_SUPPORTED; other owners' IDs are ordinary hypercalls.
TEST(Classify, UnknownIdsInCoreOwnedRangesAreNotSupported) {
    TrapFrame f = frame_with(0x84000020);  // Standard Secure Service, unassigned
    EXPECT_EQ(classify_sync(f, {kHvc0, 0, 0}).kind, ExitKind::Nothing);
    EXPECT_EQ(f.gpr(0), 0xffffffffffffffffull);  // -1, sign-extended
}

TEST(Classify, OtherOwnersAndNonFastCallsAreHypercalls) {
    TrapFrame f = frame_with(0x85000000);  // Standard Hypervisor Service (owner 5)
    EXPECT_EQ(classify_sync(f, {kHvc0, 0, 0}).kind, ExitKind::Hypercall);
    TrapFrame g = frame_with(0x1'84000008ull);  // upper bits set: not a 32-bit function ID
    EXPECT_EQ(classify_sync(g, {kHvc0, 0, 0}).kind, ExitKind::Hypercall);
    TrapFrame h = frame_with(0x04000008);  // bit 31 clear: a yielding call, not ours
    EXPECT_EQ(classify_sync(h, {kHvc0, 0, 0}).kind, ExitKind::Hypercall);
}

// The original panics on classes it does not handle; armvcpu reports them.
TEST(Classify, UnhandledClassesAreReportedWithEcIssAndPc) {
    TrapFrame f = frame_with(0, 0x40000100);
    const ExitReason r = classify_sync(f, {0xf2000007, 0, 0});  // BRK #7
    ASSERT_EQ(r.kind, ExitKind::GuestException);
    EXPECT_EQ(r.guest_exception.ec, 0x3cu);
    EXPECT_EQ(r.guest_exception.iss, 7u);
    EXPECT_EQ(r.guest_exception.pc, 0x40000100u);
    EXPECT_EQ(r.guest_exception.esr, 0xf2000007u);
}

TEST(Classify, EveryEcValueClassifiesWithoutCrashing) {
    for (std::uint64_t ec = 0; ec < 64; ++ec) {
        TrapFrame f = frame_with(0);
        const ExitReason r = classify_sync(f, {(ec << 26) | (1u << 25), 0, 0});
        EXPECT_LT(static_cast<std::uint32_t>(r.kind), kNumExitKinds);
    }
}

TEST(Classify, IsConstexpr) {
    constexpr ExitReason r = [] {
        TrapFrame f{};
        f.set_gpr(0, 9);
        return classify_sync(f, {kHvc0, 0, 0});
    }();
    static_assert(r.kind == ExitKind::Hypercall && r.hypercall.nr == 9);
    SUCCEED();
}
