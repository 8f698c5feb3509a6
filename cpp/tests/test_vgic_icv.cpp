// The Group 1 virtual CPU interface registers emulated in EL2 (vgic_icv.hpp)
// against the GICv3 specification (IHI 0069H, 12.4: ICV_IAR1_EL1,
// ICV_EOIR1_EL1, ICV_HPPIR1_EL1, ICV_BPR1_EL1, ICV_AP1R<n>_EL1,
// ICV_IGRPEN1_EL1) with QEMU virt's virtual interface: 4 list registers,
// 5 priority and preemption bits (ICH_VTR_EL2.PREbits = 4).
#include <gtest/gtest.h>

#include "armvcpu/vgic_icv.hpp"

using namespace armvcpu::vgic;

namespace {

// VENG1, VPMR = 0xf8 (everything but the lowest priority unmasked), VBPR1 =
// 3 (the minimum with 5 preemption bits), VBPR0 = 2.
constexpr std::uint64_t kVmcr =
    vmcr::kVeng1 | (3ull << vmcr::kVbpr1Shift) | (2ull << vmcr::kVbpr0Shift) | (0xf8ull << 24);

IcvState make() {
    IcvState s;
    s.num_lrs = 4;
    s.prebits = 5;
    s.vmcr = kVmcr;
    s.hcr = kIchHcrEn | kIchHcrTall1;
    return s;
}

std::uint64_t read(IcvState& s, armvcpu::SysRegEncoding reg) {
    const IcvAccess a = icv_group1_access(s, reg.iss_key(), true, 0);
    EXPECT_TRUE(a.handled);
    EXPECT_FALSE(a.undefined);
    return a.value;
}

IcvAccess write(IcvState& s, armvcpu::SysRegEncoding reg, std::uint64_t value) {
    const IcvAccess a = icv_group1_access(s, reg.iss_key(), false, value);
    EXPECT_TRUE(a.handled);
    return a;
}

constexpr armvcpu::SysRegEncoding ap1r(std::uint8_t n) { return {3, 0, 12, 9, n}; }

}  // namespace

TEST(VgicIcv, Bpr1WriteIgnoresRes0BitsAndClampsToTheMinimum) {
    IcvState s = make();
    // 8: BinaryPoint field 0 with bit 3 (RES0) set. The RES0 bits are
    // ignored, and 0 is below the minimum (min VBPR0 + 1 = 3): VBPR1 = 3.
    // (QEMU 7.2 stores 0 here and later aborts.)
    write(s, kIccBpr1El1, 8);
    EXPECT_EQ(s.vbpr1(), 3u);
    EXPECT_EQ(read(s, kIccBpr1El1), 3u);
    write(s, kIccBpr1El1, 0xffff'fffd);  // field 5 with RES0 bits set
    EXPECT_EQ(read(s, kIccBpr1El1), 5u);
    write(s, kIccBpr1El1, 1);
    EXPECT_EQ(read(s, kIccBpr1El1), 3u);
    write(s, kIccBpr1El1, 7);
    EXPECT_EQ(read(s, kIccBpr1El1), 7u);
    // The other ICH_VMCR_EL2 fields are untouched.
    EXPECT_EQ(s.vmcr & ~(7ull << vmcr::kVbpr1Shift), kVmcr & ~(7ull << vmcr::kVbpr1Shift));
}

TEST(VgicIcv, Bpr1WithVcbprReadsBpr0PlusOneAndIgnoresWrites) {
    IcvState s = make();
    s.vmcr |= vmcr::kVcbpr;
    EXPECT_EQ(read(s, kIccBpr1El1), 3u);  // VBPR0 (2) + 1
    write(s, kIccBpr1El1, 6);
    EXPECT_EQ(s.vbpr1(), 3u);
    s.vmcr |= 7ull << vmcr::kVbpr0Shift;
    EXPECT_EQ(read(s, kIccBpr1El1), 7u);  // saturated
}

TEST(VgicIcv, MinimumFollowsPreemptionBits) {
    IcvState s = make();
    s.prebits = 7;  // min VBPR0 = 0, so VBPR1's minimum is 1
    write(s, kIccBpr1El1, 0);
    EXPECT_EQ(s.vbpr1(), 1u);
    EXPECT_EQ(s.num_aprs(), 4u);
}

TEST(VgicIcv, IarAcknowledgesTheHighestPriorityPendingInterrupt) {
    IcvState s = make();
    s.lr[0] = lr_value(40, LrState::Pending, true, false, 0, 0xa0);
    s.lr[2] = lr_value(27, LrState::Pending, true, true, 27, 0x80);
    EXPECT_EQ(read(s, kIccHppir1El1), 27u);
    EXPECT_EQ(read(s, kIccIar1El1), 27u);
    EXPECT_EQ(lr_state(s.lr[2]), LrState::Active);
    // Its group priority's active bit: 0x80 >> 3 = bit 16.
    EXPECT_EQ(s.ap1r[0], 1u << 16);
    // 40 (0xa0) cannot preempt the running priority 0x80.
    EXPECT_EQ(read(s, kIccHppir1El1), 40u);
    EXPECT_EQ(read(s, kIccIar1El1), kSpurious);
    EXPECT_EQ(lr_state(s.lr[0]), LrState::Pending);
}

TEST(VgicIcv, HigherPriorityPreemptsOnlyByGroupPriority) {
    IcvState s = make();
    s.lr[0] = lr_value(40, LrState::Active, true, false, 0, 0xa0);
    s.ap1r[0] = 1u << (0xa0 >> 3);
    s.lr[1] = lr_value(41, LrState::Pending, true, false, 0, 0x98);
    EXPECT_EQ(read(s, kIccIar1El1), 41u);  // 0x98 < 0xa0 in group priority (BPR1 = 3)
    IcvState t = make();
    write(t, kIccBpr1El1, 6);  // group priority bits [7:6]: 0x98 and 0xa0 are both 0x80
    t.lr[0] = lr_value(40, LrState::Active, true, false, 0, 0xa0);
    t.ap1r[0] = 1u << (0x80 >> 3);
    t.lr[1] = lr_value(41, LrState::Pending, true, false, 0, 0x98);
    EXPECT_EQ(read(t, kIccIar1El1), kSpurious);
}

TEST(VgicIcv, IarHonoursMaskGroupEnableAndInterfaceEnable) {
    IcvState s = make();
    s.lr[0] = lr_value(40, LrState::Pending, true, false, 0, 0xf8);  // == VPMR: masked
    EXPECT_EQ(read(s, kIccIar1El1), kSpurious);
    s.lr[0] = lr_value(40, LrState::Pending, true, false, 0, 0xa0);
    write(s, kIccIgrpen1El1, 0);
    EXPECT_EQ(read(s, kIccIgrpen1El1), 0u);
    EXPECT_EQ(read(s, kIccIar1El1), kSpurious);
    EXPECT_EQ(read(s, kIccHppir1El1), kSpurious);
    write(s, kIccIgrpen1El1, 0xff);  // only bit 0 is Enable
    EXPECT_EQ(s.vmcr, kVmcr);
    s.hcr &= ~kIchHcrEn;
    EXPECT_EQ(read(s, kIccIar1El1), kSpurious);
    s.hcr |= kIchHcrEn;
    EXPECT_EQ(read(s, kIccIar1El1), 40u);
}

TEST(VgicIcv, Group0InterruptIsNotAcknowledgedByIar1) {
    IcvState s = make();
    s.vmcr |= vmcr::kVeng0;
    s.lr[0] = lr_value(40, LrState::Pending, false, false, 0, 0x80);
    EXPECT_EQ(read(s, kIccHppir1El1), kSpurious);
    EXPECT_EQ(read(s, kIccIar1El1), kSpurious);
    EXPECT_EQ(lr_state(s.lr[0]), LrState::Pending);
}

TEST(VgicIcv, EoiDropsPriorityAndDeactivates) {
    IcvState s = make();
    s.lr[1] = lr_value(40, LrState::Pending, true, false, 0, 0xa0);
    ASSERT_EQ(read(s, kIccIar1El1), 40u);
    const IcvAccess a = write(s, kIccEoir1El1, 40);
    EXPECT_EQ(s.ap1r[0], 0u);
    EXPECT_EQ(lr_state(s.lr[1]), LrState::Invalid);
    EXPECT_EQ(a.deactivate_pintid, kNoInterrupt);
}

TEST(VgicIcv, EoiOfHardwareInterruptDeactivatesThePhysicalOne) {
    IcvState s = make();
    s.lr[0] = lr_value(30, LrState::Pending, true, true, 30, 0xa0);
    ASSERT_EQ(read(s, kIccIar1El1), 30u);
    EXPECT_EQ(write(s, kIccEoir1El1, 30).deactivate_pintid, 30u);
    EXPECT_EQ(lr_state(s.lr[0]), LrState::Invalid);
}

TEST(VgicIcv, EoiWithEoiModeOneOnlyDropsPriority) {
    IcvState s = make();
    s.vmcr |= vmcr::kVeoim;
    s.lr[0] = lr_value(30, LrState::Pending, true, true, 30, 0xa0);
    ASSERT_EQ(read(s, kIccIar1El1), 30u);
    EXPECT_EQ(write(s, kIccEoir1El1, 30).deactivate_pintid, kNoInterrupt);
    EXPECT_EQ(s.ap1r[0], 0u);
    EXPECT_EQ(lr_state(s.lr[0]), LrState::Active);  // ICV_DIR_EL1 deactivates it
}

TEST(VgicIcv, PendingAndActiveBecomesPendingOnDeactivation) {
    IcvState s = make();
    s.lr[0] = lr_value(40, LrState::Pending, true, false, 0, 0xa0);
    ASSERT_EQ(read(s, kIccIar1El1), 40u);
    s.lr[0] |= kLrPendingBit;  // the device signalled it again
    write(s, kIccEoir1El1, 40);
    EXPECT_EQ(lr_state(s.lr[0]), LrState::Pending);
}

TEST(VgicIcv, EoiWithNoListRegisterCountsInEoiCount) {
    IcvState s = make();
    s.ap1r[0] = 1u << 20;  // an active interrupt whose list register was reused
    write(s, kIccEoir1El1, 77);
    EXPECT_EQ((s.hcr >> 27) & 0x1f, 1u);
    EXPECT_EQ(s.ap1r[0], 0u);
    // Nothing active: ignored. Special INTIDs: ignored.
    write(s, kIccEoir1El1, 77);
    EXPECT_EQ((s.hcr >> 27) & 0x1f, 1u);
    s.ap1r[0] = 1u << 20;
    write(s, kIccEoir1El1, 1023);
    EXPECT_EQ(s.ap1r[0], 1u << 20);
}

TEST(VgicIcv, ActivePrioritiesReadAndWrite) {
    IcvState s = make();
    write(s, kIccAp1r0El1, 0x1234'5678);
    EXPECT_EQ(read(s, kIccAp1r0El1), 0x1234'5678u);
    EXPECT_EQ(s.ap1r[0], 0x1234'5678u);
    // With 5 preemption bits only AP1R0 exists: AP1R1..3 are UNDEFINED.
    for (std::uint8_t n = 1; n < 4; ++n) {
        EXPECT_TRUE(icv_group1_access(s, ap1r(n).iss_key(), true, 0).undefined);
        EXPECT_TRUE(icv_group1_access(s, ap1r(n).iss_key(), false, 1).undefined);
    }
    s.prebits = 6;
    const IcvAccess a = icv_group1_access(s, ap1r(1).iss_key(), false, 5);
    EXPECT_FALSE(a.undefined);
    EXPECT_EQ(s.ap1r[1], 5u);
}

TEST(VgicIcv, WrongDirectionIsUndefinedAndOtherRegistersAreNotMine) {
    IcvState s = make();
    EXPECT_TRUE(icv_group1_access(s, kIccIar1El1.iss_key(), false, 0).undefined);
    EXPECT_TRUE(icv_group1_access(s, kIccEoir1El1.iss_key(), true, 0).undefined);
    const armvcpu::SysRegEncoding pmr{3, 0, 4, 6, 0};
    EXPECT_FALSE(icv_group1_access(s, pmr.iss_key(), true, 0).handled);
}

TEST(VgicIcv, SpecialIntidInAListRegisterIsReturnedAndDropped) {
    IcvState s = make();
    s.lr[0] = lr_value(1021, LrState::Pending, true, false, 0, 0x80);
    EXPECT_EQ(read(s, kIccIar1El1), 1021u);
    EXPECT_EQ(lr_state(s.lr[0]), LrState::Invalid);
    EXPECT_EQ(s.ap1r[0], 0u);
}

// LPIs (VirtualReadIAR1, VirtualWriteEOIR1): acknowledged like any other
// interrupt, and an EOI both drops the priority and deactivates the list
// register, whatever VEOIM says (an LPI has no active state to keep).
TEST(VgicIcv, LpiIsAcknowledgedAndItsEoiDeactivatesEvenWithEoiModeOne) {
    for (const bool eoimode : {false, true}) {
        IcvState s = make();
        if (eoimode) s.vmcr |= vmcr::kVeoim;
        s.lr[2] = lr_value(8195, LrState::Pending, true, false, 0, 0xa0);
        ASSERT_EQ(read(s, kIccIar1El1), 8195u);
        EXPECT_NE(s.ap1r[0], 0u);
        const IcvAccess a = write(s, kIccEoir1El1, 8195);
        EXPECT_EQ(s.ap1r[0], 0u) << eoimode;
        EXPECT_EQ(lr_state(s.lr[2]), LrState::Invalid) << eoimode;
        EXPECT_EQ(a.deactivate_pintid, kNoInterrupt);
    }
}

// An LPI's EOI that finds no list register drops the priority and is not
// counted in EOIcount (it asks the hypervisor for nothing).
TEST(VgicIcv, LpiEoiWithNoListRegisterIsNotCounted) {
    IcvState s = make();
    s.ap1r[0] = 1u << 20;
    write(s, kIccEoir1El1, 8200);
    EXPECT_EQ(s.ap1r[0], 0u);
    EXPECT_EQ((s.hcr >> 27) & 0x1f, 0u);
}
