// The hypercall claims table (host_interface.hpp) and the defaults for an
// exit nobody answers (exit_reason.hpp).
//
// Golden values: SMCCC (DEN0028) "Return codes": NOT_SUPPORTED is -1,
// returned in X0 sign-extended (0xFFFFFFFFFFFFFFFF).
#include <gtest/gtest.h>

#include "armvcpu/exit_reason.hpp"
#include "armvcpu/host_interface.hpp"

using namespace armvcpu;

TEST(HypercallClaims, NothingIsClaimedWithoutTheMagic) {
    HypercallClaims c{};
    c.all = 1;
    EXPECT_FALSE(hypercall_claimed(c, 1));
}

TEST(HypercallClaims, RangesAreInclusive) {
    HypercallClaims c{kHypercallClaimsMagic, kMaxHypercallClaims, 0, 2, {}};
    c.ranges[0] = {0x10, 0x1f};
    c.ranges[1] = {0xc6000000, 0xc6000000};
    EXPECT_FALSE(hypercall_claimed(c, 0x0f));
    EXPECT_TRUE(hypercall_claimed(c, 0x10));
    EXPECT_TRUE(hypercall_claimed(c, 0x1f));
    EXPECT_FALSE(hypercall_claimed(c, 0x20));
    EXPECT_TRUE(hypercall_claimed(c, 0xc6000000));
    // Ranges past count are not in use.
    c.ranges[2] = {0, ~0ull};
    EXPECT_FALSE(hypercall_claimed(c, 0x42));
}

TEST(HypercallClaims, AllClaimsEverything) {
    HypercallClaims c{kHypercallClaimsMagic, kMaxHypercallClaims, 1, 0, {}};
    EXPECT_TRUE(hypercall_claimed(c, 0));
    EXPECT_TRUE(hypercall_claimed(c, ~0ull));
}

TEST(HypercallClaims, ACorruptCountIsBounded) {
    HypercallClaims c{kHypercallClaimsMagic, kMaxHypercallClaims, 0, 1000, {}};
    EXPECT_FALSE(hypercall_claimed(c, 5));  // reads only the table's own ranges
}

TEST(Defaults, AnswersOfAMachineWithoutAHypervisor) {
    EXPECT_EQ(kSmcccNotSupported, 0xFFFFFFFFFFFFFFFFull);
    EXPECT_EQ(default_answer(ExitKind::Hypercall), DefaultAnswer::NotSupported);
    EXPECT_EQ(default_answer(ExitKind::MmioRead), DefaultAnswer::InjectExternalAbort);
    EXPECT_EQ(default_answer(ExitKind::MmioWrite), DefaultAnswer::InjectExternalAbort);
    EXPECT_EQ(default_answer(ExitKind::NestedPageFault), DefaultAnswer::InjectExternalAbort);
    EXPECT_EQ(default_answer(ExitKind::Halt), DefaultAnswer::Resume);
    EXPECT_EQ(default_answer(ExitKind::GuestException), DefaultAnswer::Stop);
    EXPECT_EQ(default_answer(ExitKind::SysRegRead), DefaultAnswer::Stop);
    EXPECT_TRUE(default_stops_vm(ExitKind::SystemDown));
    EXPECT_FALSE(default_stops_vm(ExitKind::NestedPageFault));
}

TEST(Defaults, AFetchFaultAtTheInjectedVectorStopsInsteadOfAbortingAgain) {
    // A guest without vectors: the abort's vector is itself unmapped, and
    // another abort would send the guest straight back there.
    ExitReason at_vector = make_exit(exit::NestedPageFault{
        0x200, exit::kAccessRead | exit::kAccessExecute | exit::kAccessAtInjectedVector});
    EXPECT_EQ(default_answer(at_vector), DefaultAnswer::Stop);
    EXPECT_TRUE(default_stops_vm(at_vector));
    const ExitReason elsewhere =
        make_exit(exit::NestedPageFault{0x200, exit::kAccessRead | exit::kAccessExecute});
    EXPECT_EQ(default_answer(elsewhere), DefaultAnswer::InjectExternalAbort);
    EXPECT_FALSE(default_stops_vm(elsewhere));
    EXPECT_EQ(default_answer(make_exit(exit::Hypercall{1, {}})), DefaultAnswer::NotSupported);
}
