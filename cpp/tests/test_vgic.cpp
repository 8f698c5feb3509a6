// List-register encoding (vgic.hpp) against the GICv3 specification's field
// positions (IHI 0069, ICH_LR<n>_EL2): vINTID [31:0], pINTID [44:32],
// Priority [55:48], Group [60], HW [61], State [63:62].
#include <gtest/gtest.h>

#include "armvcpu/exit_reason.hpp"
#include "armvcpu/vgic.hpp"

using namespace armvcpu;
using namespace armvcpu::vgic;

TEST(Vgic, HardwareLinkedPendingGroup1) {
    const std::uint64_t lr = lr_value(27, LrState::Pending, true, true, 27, 0xa0);
    EXPECT_EQ(lr >> 62, 1u);              // State = pending
    EXPECT_EQ((lr >> 61) & 1, 1u);        // HW
    EXPECT_EQ((lr >> 60) & 1, 1u);        // Group 1
    EXPECT_EQ((lr >> 48) & 0xff, 0xa0u);  // Priority
    EXPECT_EQ((lr >> 32) & 0x1fff, 27u);  // pINTID
    EXPECT_EQ(lr & 0xffffffff, 27u);      // vINTID
}

TEST(Vgic, SoftwareInterruptHasNoPhysicalId) {
    const std::uint64_t lr = lr_value(5, LrState::Pending, true, false, 99);
    EXPECT_EQ((lr >> 61) & 1, 0u);
    EXPECT_EQ((lr >> 32) & 0x1fff, 0u);  // pINTID only with HW (else EOI/other bits)
    EXPECT_EQ(lr_vintid(lr), 5u);
    EXPECT_EQ(lr_state(lr), LrState::Pending);
    EXPECT_EQ(lr_state(0), LrState::Invalid);
}

TEST(Vgic, SpecialIntids) {
    EXPECT_TRUE(is_valid_intid(0));
    EXPECT_TRUE(is_valid_intid(1019));
    EXPECT_FALSE(is_valid_intid(1020));
    EXPECT_FALSE(is_valid_intid(kSpurious));
}

TEST(Vgic, InterruptsAndHaltsDoNotStopTheVmByDefault) {
    EXPECT_FALSE(default_stops_vm(ExitKind::ExternalInterrupt));
    EXPECT_FALSE(default_stops_vm(ExitKind::Halt));
    EXPECT_FALSE(default_stops_vm(ExitKind::MmioRead));  // an external abort for the guest
}
