// Guest writes to ICPENDR/ISACTIVER/ICACTIVER reaching interrupts held in
// list registers (vgic_lr_write.hpp), against the GICv3 specification (IHI
// 0069H): 12.9.x "GICD_ICPENDR<n>" etc. change the interrupt's state
// whoever holds it; 4.1.2, a hardware interrupt's pending state follows
// its line (here: the physical interrupt signals again once deactivated).
#include <gtest/gtest.h>

#include "armvcpu/vgic_lr_write.hpp"

using namespace armvcpu::vgic;

namespace {

std::uint64_t lr(std::uint32_t intid, LrState state, bool hw = false) {
    return lr_value(intid, state, true, hw, intid, 0x80);
}

WriteEffect effect(unsigned bank, std::uint32_t pending_set, std::uint32_t pending_cleared,
                   std::uint32_t active_set, std::uint32_t active_cleared) {
    WriteEffect e;
    e.bank = bank;
    e.pending_set = pending_set;
    e.pending_cleared = pending_cleared;
    e.active_set = active_set;
    e.active_cleared = active_cleared;
    return e;
}

}  // namespace

TEST(VgicLrWrite, ClearPendingLeavesInvalidOrActive) {
    EXPECT_EQ(apply_lr_write(lr(40, LrState::Pending), true, false, false).lr,
              lr(40, LrState::Invalid));
    EXPECT_EQ(apply_lr_write(lr(40, LrState::PendingActive), true, false, false).lr,
              lr(40, LrState::Active));
    // Nothing pending: unchanged.
    const LrWriteResult r = apply_lr_write(lr(40, LrState::Active), true, false, false);
    EXPECT_EQ(r.lr, lr(40, LrState::Active));
    EXPECT_FALSE(r.deactivate_physical);
}

TEST(VgicLrWrite, ClearActiveLeavesInvalidOrPending) {
    EXPECT_EQ(apply_lr_write(lr(1, LrState::Active), false, false, true).lr,
              lr(1, LrState::Invalid));
    EXPECT_EQ(apply_lr_write(lr(1, LrState::PendingActive), false, false, true).lr,
              lr(1, LrState::Pending));
}

TEST(VgicLrWrite, SetActiveOnAPendingSoftwareInterrupt) {
    const LrWriteResult r = apply_lr_write(lr(33, LrState::Pending), false, true, false);
    EXPECT_EQ(r.lr, lr(33, LrState::PendingActive));
    EXPECT_TRUE(r.took_active);
    // Already active: nothing to take.
    EXPECT_FALSE(apply_lr_write(lr(33, LrState::Active), false, true, false).took_active);
}

TEST(VgicLrWrite, HardwareLinkedInterruptsDeactivateTheirPhysicalOne) {
    // Clear-active of a linked one: invalid, and the physical interrupt is
    // deactivated (a level line still asserted signals it again).
    LrWriteResult r = apply_lr_write(lr(27, LrState::PendingActive, true), false, false, true);
    EXPECT_EQ(lr_state(r.lr), LrState::Invalid);
    EXPECT_TRUE(r.deactivate_physical);
    // Clear-pending of a pending-only linked one likewise.
    r = apply_lr_write(lr(34, LrState::Pending, true), true, false, false);
    EXPECT_EQ(lr_state(r.lr), LrState::Invalid);
    EXPECT_TRUE(r.deactivate_physical);
    // Clear-pending of an active one keeps it active: still in service.
    r = apply_lr_write(lr(34, LrState::PendingActive, true), true, false, false);
    EXPECT_EQ(lr_state(r.lr), LrState::Active);
    EXPECT_FALSE(r.deactivate_physical);
    // Set-active is the model's for a linked interrupt.
    r = apply_lr_write(lr(34, LrState::Pending, true), false, true, false);
    EXPECT_EQ(lr_state(r.lr), LrState::Pending);
    EXPECT_FALSE(r.took_active);
}

TEST(VgicLrWrite, InvalidListRegistersAreLeftAlone) {
    const LrWriteResult r = apply_lr_write(lr(5, LrState::Invalid), true, true, true);
    EXPECT_EQ(r.lr, lr(5, LrState::Invalid));
    EXPECT_FALSE(r.deactivate_physical);
    EXPECT_FALSE(r.took_active);
}

TEST(VgicLrWrite, LogAppliesOnlyToTheInterruptsItNames) {
    LrWriteLog log;
    EXPECT_TRUE(log.empty());
    EXPECT_TRUE(log.record(effect(1, 0, 1u << 8, 0, 0)));  // ICPENDR1: INTID 40
    EXPECT_FALSE(log.empty());
    EXPECT_EQ(log.apply(lr(40, LrState::Pending)).lr, lr(40, LrState::Invalid));
    EXPECT_EQ(log.apply(lr(41, LrState::Pending)).lr, lr(41, LrState::Pending));
    // INTID 8 is in bank 0, not bank 1.
    EXPECT_EQ(log.apply(lr(8, LrState::Pending)).lr, lr(8, LrState::Pending));
    log.clear();
    EXPECT_TRUE(log.empty());
}

TEST(VgicLrWrite, LogKeepsTheLaterWriteOfEachInterrupt) {
    LrWriteLog log;
    log.record(effect(0, 0, 0, 0, 1u << 1));  // ICACTIVER0: SGI 1
    log.record(effect(0, 0, 0, 1u << 1, 0));  // then ISACTIVER0
    EXPECT_EQ(log.apply(lr(1, LrState::Pending)).lr, lr(1, LrState::PendingActive));
    log.record(effect(0, 0, 0, 0, 1u << 1));  // and ICACTIVER0 again
    EXPECT_EQ(log.apply(lr(1, LrState::Active)).lr, lr(1, LrState::Invalid));
    EXPECT_EQ(log.active_set[0], 0u);

    log.clear();
    log.record(effect(2, 0, 1u << 3, 0, 0));                // ICPENDR2: INTID 67
    EXPECT_FALSE(log.record(effect(2, 1u << 3, 0, 0, 0)));  // ISPENDR2: pending again
    EXPECT_EQ(log.apply(lr(67, LrState::Pending)).lr, lr(67, LrState::Pending));
    EXPECT_TRUE(log.empty());
}

TEST(VgicLrWrite, OutOfRangeBanksAndIntidsAreIgnored) {
    LrWriteLog log;
    EXPECT_FALSE(log.record(effect(kNumBanks, 0, ~0u, ~0u, ~0u)));
    EXPECT_TRUE(log.empty());
    log.record(effect(0, 0, ~0u, 0, ~0u));
    // An LPI-numbered vINTID beyond the model's range is not the log's.
    const std::uint64_t lpi = lr(8192, LrState::PendingActive);
    EXPECT_EQ(log.apply(lpi).lr, lpi);
}

TEST(VgicLrWrite, ClrspiReportsTheClearedInterrupt) {
    const std::uint64_t mpidr[kMaxVcpus] = {0x80000000, 0x80000001};
    Distributor d;
    d.reset(2, mpidr);
    const WriteEffect e = d.write(kGicdBase + gicd::CLRSPI_NSR, 4, 42).effect;
    EXPECT_EQ(e.bank, 1u);
    EXPECT_EQ(e.pending_cleared, 1u << 10);
}
