// The emulated GICv2 distributor and the GICv2 list-register encoding
// (vgic_v2.hpp) against the GICv2 architecture specification (IHI 0048B):
// chapter 4's register semantics and reset values, 4.3.15 GICD_SGIR,
// 5.3.9 GICH_LRn; and the identification values QEMU's GICv2 model reports
// (a guest reading them on QEMU without armvcpu sees the same).
#include <gtest/gtest.h>

#include "armvcpu/vgic_v2.hpp"

using namespace armvcpu::vgic2;

namespace {

Distributor make(unsigned n = 2) {
    Distributor d;
    d.reset(n);
    return d;
}

std::uint64_t rd(const Distributor& d, unsigned vcpu, std::uint64_t off, unsigned width = 4) {
    const Access a = d.read(vcpu, kGicdBase + off, width);
    EXPECT_TRUE(a.handled) << std::hex << off;
    return a.value;
}

WriteEffect wr(Distributor& d, unsigned vcpu, std::uint64_t off, std::uint64_t value,
               unsigned width = 4) {
    const Access a = d.write(vcpu, kGicdBase + off, width, value);
    EXPECT_TRUE(a.handled) << std::hex << off;
    return a.effect;
}

}  // namespace

TEST(VgicV2, ListRegisterFieldsArePerTheSpecification) {
    // 5.3.9: HW [31], Grp1 [30], State [29:28], Priority [27:23],
    // PhysicalID [19:10], VirtualID [9:0].
    EXPECT_EQ(lr_value(27, LrState::Pending, false, true, 27, 0xa0),
              (1u << 31) | (1u << 28) | (0x14u << 23) | (27u << 10) | 27u);
    // A software SGI carries the requesting CPU in [12:10]; EOI [19] stays 0.
    const std::uint32_t sgi = lr_value(3, LrState::Pending, true, false, 5, 0x80);
    EXPECT_EQ(sgi, (1u << 30) | (1u << 28) | (0x10u << 23) | (5u << 10) | 3u);
    EXPECT_EQ(lr_cpuid(sgi), 5u);
    EXPECT_EQ(lr_vintid(sgi), 3u);
    EXPECT_EQ(lr_state(sgi), LrState::Pending);
    EXPECT_TRUE(lr_group1(sgi));
    EXPECT_FALSE(lr_hw(sgi));
    // Only the top five priority bits are kept.
    EXPECT_EQ(lr_priority(lr_value(40, LrState::Active, false, false, 0, 0xa7)), 0xa0);
    // EOI [19]: a software interrupt whose EOI the hypervisor wants to see.
    EXPECT_EQ(kLrEoi, 1u << 19);
    EXPECT_TRUE(lr_eoi(lr_value(33, LrState::Invalid, false, false) | kLrEoi));
    EXPECT_FALSE(lr_eoi(lr_value(33, LrState::Invalid, false, true, 33)));  // PhysicalID bit
    EXPECT_EQ(lr_state(lr_value(40, LrState::PendingActive, false, false)), LrState::PendingActive);
}

TEST(VgicV2, ListRegisterSignalsOnlyAboveThePriorityMaskWithItsGroupOn) {
    const std::uint32_t lr = lr_value(27, LrState::Pending, false, true, 27, 0xa0);
    const std::uint32_t grp0_on_mask_ff = (0x1fu << 27) | 1u;
    EXPECT_TRUE(lr_signals(lr, grp0_on_mask_ff));
    EXPECT_FALSE(lr_signals(lr, 0x1fu << 27));         // VMGrp0En off
    EXPECT_FALSE(lr_signals(lr, (0x14u << 27) | 1u));  // mask == priority
    EXPECT_FALSE(lr_signals(lr_value(27, LrState::Active, false, true, 27), grp0_on_mask_ff));
    EXPECT_FALSE(lr_signals(lr_value(27, LrState::Pending, true, true, 27), grp0_on_mask_ff));
}

TEST(VgicV2, IdentifiesAsQemusGicv2) {
    const Distributor d = make(2);
    EXPECT_EQ((rd(d, 0, gicd::PIDR2) >> 4) & 0xf, 2u);  // ArchRev = GICv2
    EXPECT_EQ(rd(d, 0, gicd::PIDR2), 0x2Bu);
    EXPECT_EQ(rd(d, 0, 0xFF0), 0x0Du);  // CIDR0..3: the PrimeCell preamble 0xB105F00D
    EXPECT_EQ(rd(d, 0, 0xFFC), 0xB1u);
    EXPECT_EQ(rd(d, 1, gicd::IIDR), 0x43Bu);  // Implementer: Arm
}

TEST(VgicV2, TyperCountsInterruptsAndCpus) {
    for (unsigned n : {1u, 2u, 4u, 8u}) {
        const Distributor d = make(n);
        const std::uint64_t typer = rd(d, 0, gicd::TYPER);
        EXPECT_EQ(32u * ((typer & 0x1f) + 1), kNumIntids);
        EXPECT_EQ(((typer >> 5) & 7) + 1, n);
        EXPECT_EQ((typer >> 10) & 1, 0u);  // no Security Extensions
    }
}

TEST(VgicV2, ResetValues) {
    const Distributor d = make(2);
    EXPECT_EQ(rd(d, 0, gicd::CTLR), 0u);
    // SGIs always enabled; PPIs and SPIs disabled.
    EXPECT_EQ(rd(d, 0, gicd::ISENABLER), 0x0000ffffu);
    EXPECT_EQ(rd(d, 1, gicd::ICENABLER), 0x0000ffffu);
    EXPECT_EQ(rd(d, 0, gicd::ISENABLER + 4), 0u);
    EXPECT_EQ(rd(d, 0, gicd::IGROUPR), 0u);  // Group 0
    // ICFGR0: SGIs edge (0b10 each); SPIs level.
    EXPECT_EQ(rd(d, 0, gicd::ICFGR), 0xAAAAAAAAu);
    EXPECT_EQ(rd(d, 0, gicd::ICFGR + 8), 0u);
    EXPECT_EQ(rd(d, 0, gicd::IPRIORITYR + 40, 1), 0u);
}

TEST(VgicV2, CtlrKeepsTheTwoGroupEnables) {
    Distributor d = make();
    const WriteEffect e = wr(d, 0, gicd::CTLR, 0xffffffff);
    EXPECT_TRUE(e.ctlr_changed);
    EXPECT_EQ(rd(d, 1, gicd::CTLR), 3u);
    EXPECT_FALSE(wr(d, 1, gicd::CTLR, 3).ctlr_changed);
}

TEST(VgicV2, SgiEnablesArePinnedAndPpisAreBanked) {
    Distributor d = make(2);
    const WriteEffect off = wr(d, 0, gicd::ICENABLER, 0xffffffff);
    EXPECT_EQ(off.enable_changed, 0u);  // nothing was on among the PPIs
    EXPECT_EQ(rd(d, 0, gicd::ISENABLER), 0x0000ffffu);
    const WriteEffect on = wr(d, 1, gicd::ISENABLER, 1u << 27);
    EXPECT_EQ(on.vcpu, 1u);
    EXPECT_EQ(on.bank, 0u);
    EXPECT_EQ(on.enable_changed, 1u << 27);
    EXPECT_TRUE(d.enabled(1, 27));
    EXPECT_FALSE(d.enabled(0, 27));  // vCPU 0's PPI 27 is its own
    EXPECT_EQ(rd(d, 0, gicd::ISENABLER) >> 16, 0u);
}

TEST(VgicV2, SetAndClearRegistersActOnlyOnOnes) {
    Distributor d = make();
    wr(d, 0, gicd::ISENABLER + 4, 0x5);
    wr(d, 0, gicd::ISENABLER + 4, 0x2);
    EXPECT_EQ(rd(d, 1, gicd::ISENABLER + 4), 0x7u);
    const WriteEffect e = wr(d, 0, gicd::ICENABLER + 4, 0x4);
    EXPECT_EQ(e.bank, 1u);
    EXPECT_EQ(e.enable_changed, 0x4u);
    EXPECT_EQ(rd(d, 0, gicd::ICENABLER + 4), 0x3u);
    const WriteEffect p = wr(d, 0, gicd::ISPENDR + 4, 0x10);
    EXPECT_EQ(p.pending_set, 0x10u);
    EXPECT_EQ(rd(d, 0, gicd::ISPENDR + 4), 0x10u);
    wr(d, 0, gicd::ICPENDR + 4, 0x10);
    EXPECT_EQ(rd(d, 0, gicd::ICPENDR + 4), 0u);
    wr(d, 0, gicd::ISACTIVER + 4, 0x3);
    wr(d, 0, gicd::ICACTIVER + 4, 0x1);
    EXPECT_EQ(rd(d, 0, gicd::ISACTIVER + 4), 0x2u);
    // SGI pending bits are not set through ISPENDR (only GICD_SGIR/SPENDSGIR).
    EXPECT_EQ(wr(d, 0, gicd::ISPENDR, 0xffff).pending_set, 0u);
}

TEST(VgicV2, PrioritiesAreByteAccessible) {
    Distributor d = make();
    wr(d, 0, gicd::IPRIORITYR + 41, 0x80, 1);
    EXPECT_EQ(rd(d, 1, gicd::IPRIORITYR + 40), 0x8000u);
    wr(d, 0, gicd::IPRIORITYR + 44, 0x11223344);
    EXPECT_EQ(rd(d, 0, gicd::IPRIORITYR + 46, 1), 0x22u);
    EXPECT_EQ(d.priority(0, 47), 0x11);
    // SGI/PPI priorities are banked.
    wr(d, 1, gicd::IPRIORITYR + 27, 0x40, 1);
    EXPECT_EQ(d.priority(1, 27), 0x40);
    EXPECT_EQ(d.priority(0, 27), 0);
    // A halfword access is not one the specification allows: RAZ/WI.
    wr(d, 0, gicd::IPRIORITYR + 48, 0xffff, 2);
    EXPECT_EQ(rd(d, 0, gicd::IPRIORITYR + 48), 0u);
}

TEST(VgicV2, ItargetsrOfPrivateInterruptsIsTheReadersOwnCpu) {
    Distributor d = make(4);
    EXPECT_EQ(rd(d, 0, gicd::ITARGETSR), 0x01010101u);
    EXPECT_EQ(rd(d, 2, gicd::ITARGETSR + 28), 0x04040404u);
    EXPECT_EQ(rd(d, 3, gicd::ITARGETSR + 16, 1), 0x08u);
    wr(d, 0, gicd::ITARGETSR + 16, 0xffffffff);  // read-only
    EXPECT_EQ(rd(d, 1, gicd::ITARGETSR + 16), 0x02020202u);
}

TEST(VgicV2, ItargetsrOfSpisIsWritableForCpusThatExist) {
    Distributor d = make(2);
    EXPECT_EQ(rd(d, 0, gicd::ITARGETSR + 32), 0u);  // reset: no target
    const WriteEffect e = wr(d, 0, gicd::ITARGETSR + 33, 0xff, 1);
    EXPECT_EQ(e.target_changed_intid, 33u);
    EXPECT_EQ(rd(d, 0, gicd::ITARGETSR + 33, 1), 0x03u);  // CPUs 2..7 RAZ/WI
    EXPECT_EQ(d.route_of(33), 0u);
    wr(d, 1, gicd::ITARGETSR + 32, 0x02000000);
    EXPECT_EQ(d.targets(35), 0x02);
    EXPECT_EQ(d.route_of(35), 1u);
    EXPECT_EQ(d.route_of(34), 0u);  // targets none: vCPU 0
}

TEST(VgicV2, UniprocessorItargetsrIsRazWi) {
    Distributor d = make(1);
    wr(d, 0, gicd::ITARGETSR + 40, 0x01, 1);
    EXPECT_EQ(rd(d, 0, gicd::ITARGETSR + 40, 1), 0u);
    EXPECT_EQ(rd(d, 0, gicd::ITARGETSR), 0u);
    EXPECT_EQ(d.targets(40), 1);  // every interrupt goes to the one CPU
}

TEST(VgicV2, IcfgrConfiguresPpisAndSpisButNotSgis) {
    Distributor d = make();
    wr(d, 0, gicd::ICFGR, 0);
    EXPECT_EQ(rd(d, 0, gicd::ICFGR), 0xAAAAAAAAu);
    wr(d, 1, gicd::ICFGR + 4, 0x00800000);  // PPI 27 edge, on vCPU 1 only
    EXPECT_EQ(rd(d, 1, gicd::ICFGR + 4), 0x00800000u);
    EXPECT_EQ(rd(d, 0, gicd::ICFGR + 4), 0u);
    wr(d, 0, gicd::ICFGR + 8, 0xffffffff);  // SPIs 32..47 edge; the even bits RAZ
    EXPECT_EQ(rd(d, 1, gicd::ICFGR + 8), 0xAAAAAAAAu);
}

TEST(VgicV2, SgirTargetListAndFilters) {
    Distributor d = make(4);
    // CPUTargetList = 0b0110, SGI 5, from vCPU 0.
    WriteEffect e = wr(d, 0, gicd::SGIR, (0b0110u << 16) | 5);
    EXPECT_EQ(e.sgi_targets, 0b0110);
    EXPECT_EQ(d.sgi_sources(1, 5), 0x01);
    EXPECT_EQ(d.sgi_sources(2, 5), 0x01);
    EXPECT_EQ(d.sgi_sources(0, 5), 0);
    // All but self, from vCPU 2.
    e = wr(d, 2, gicd::SGIR, (1u << 24) | 7);
    EXPECT_EQ(e.sgi_targets, 0b1011);
    // Self only, from vCPU 3.
    e = wr(d, 3, gicd::SGIR, (2u << 24) | (0xffu << 16) | 1);
    EXPECT_EQ(e.sgi_targets, 0b1000);
    // The reserved filter sends nothing; targets past the last CPU are dropped.
    EXPECT_EQ(wr(d, 0, gicd::SGIR, (3u << 24) | (0xffu << 16)).sgi_targets, 0);
    EXPECT_EQ(wr(d, 0, gicd::SGIR, (0xf0u << 16) | 2).sgi_targets, 0);
    // GICD_SGIR is write-only.
    EXPECT_EQ(rd(d, 0, gicd::SGIR), 0u);
    // SPENDSGIR shows the sources, one byte per SGI, for the reader.
    // (SGI 5 from vCPU 0, SGI 7 from vCPU 2.)
    EXPECT_EQ(rd(d, 1, gicd::SPENDSGIR + 4), (0x01u << 8) | (0x04u << 24));
    EXPECT_EQ(rd(d, 1, gicd::SPENDSGIR + 7, 1), 0x04u);
    EXPECT_EQ(rd(d, 1, gicd::ISPENDR) & 0xffff, (1u << 5) | (1u << 7));
}

TEST(VgicV2, SgiSourcesAreTakenOneByOne) {
    Distributor d = make(3);
    wr(d, 0, gicd::CTLR, 1);
    wr(d, 0, gicd::SGIR, (0b100u << 16) | 3);
    wr(d, 1, gicd::SGIR, (0b100u << 16) | 3);
    std::uint32_t intid = 0;
    unsigned source = 9;
    ASSERT_TRUE(d.take_pending(2, intid, source));
    EXPECT_EQ(intid, 3u);
    EXPECT_EQ(source, 0u);
    EXPECT_NE(rd(d, 2, gicd::ISPENDR) & (1u << 3), 0u);  // still pending from vCPU 1
    ASSERT_TRUE(d.take_pending(2, intid, source));
    EXPECT_EQ(source, 1u);
    EXPECT_EQ(rd(d, 2, gicd::ISPENDR) & (1u << 3), 0u);
    EXPECT_FALSE(d.take_pending(2, intid, source));
    // One that found no list register goes back with its source.
    d.set_pending(2, 3, 1);
    EXPECT_EQ(d.sgi_sources(2, 3), 0x02);
}

TEST(VgicV2, CpendsgirClearsSources) {
    Distributor d = make(2);
    wr(d, 0, gicd::SPENDSGIR, 0x00000300);  // SGI 1 from vCPUs 0 and 1 (own view: vCPU 0)
    EXPECT_EQ(d.sgi_sources(0, 1), 0x03);
    wr(d, 0, gicd::CPENDSGIR + 1, 0x01, 1);
    EXPECT_EQ(d.sgi_sources(0, 1), 0x02);
    wr(d, 0, gicd::CPENDSGIR, 0xffffffff);
    EXPECT_EQ(d.sgi_sources(0, 1), 0);
    EXPECT_EQ(rd(d, 0, gicd::ISPENDR) & 0xffff, 0u);
}

TEST(VgicV2, DeliveryNeedsEnableGroupAndTarget) {
    Distributor d = make(2);
    wr(d, 0, gicd::ISENABLER + 4, 1u << 1);  // SPI 33
    wr(d, 0, gicd::ITARGETSR + 33, 0x02, 1);
    EXPECT_FALSE(d.deliverable(1, 33));  // distributor off
    wr(d, 0, gicd::CTLR, gicd::kCtlrEnableGrp1);
    EXPECT_FALSE(d.deliverable(1, 33));  // it is Group 0
    wr(d, 0, gicd::IGROUPR + 4, 1u << 1);
    EXPECT_TRUE(d.deliverable(1, 33));
    EXPECT_TRUE(d.group1(1, 33));
    EXPECT_FALSE(d.deliverable(0, 33));  // not its target
    wr(d, 0, gicd::ISPENDR + 4, 1u << 1);
    std::uint32_t intid = 0;
    unsigned source = 0;
    EXPECT_FALSE(d.take_pending(0, intid, source));
    ASSERT_TRUE(d.take_pending(1, intid, source));
    EXPECT_EQ(intid, 33u);
}

TEST(VgicV2, OnlyTheDistributorFrameIsClaimed) {
    Distributor d = make();
    EXPECT_TRUE(d.claims(kGicdBase + 0xFFFC));
    EXPECT_FALSE(d.claims(kGiccBase));
    EXPECT_FALSE(d.read(0, kGiccBase, 4).handled);
    // Past the 4 KiB of registers: RAZ/WI, still the distributor's.
    EXPECT_EQ(rd(d, 0, 0x2000), 0u);
    // An access by a vCPU the model does not have changes nothing.
    EXPECT_FALSE(d.write(5, kGicdBase + gicd::CTLR, 4, 3).effect.ctlr_changed);
    EXPECT_EQ(rd(d, 0, gicd::CTLR), 0u);
}

TEST(VgicV2, UnalignedWordAccessesAreRazWi) {
    Distributor d = make();
    wr(d, 0, gicd::ISENABLER + 6, 0xffffffff);
    EXPECT_EQ(rd(d, 0, gicd::ISENABLER + 4), 0u);
    EXPECT_EQ(rd(d, 0, gicd::TYPER + 1), 0u);
    EXPECT_EQ(rd(d, 0, gicd::TYPER, 8), 0u);
}

TEST(VgicV2, ListRegistersFoldIntoPendingAndActiveReads) {
    const std::uint32_t lrs[4] = {
        lr_value(5, LrState::Pending, false, false, 1),        // SGI 5 from CPU 1
        lr_value(27, LrState::Active, false, false) | kLrEoi,  // the timer, taken
        lr_value(33, LrState::PendingActive, false, false) | kLrEoi,
        0,
    };
    EXPECT_EQ(fold_list_registers(gicd::ISPENDR, 4, 0x10, lrs, 4), 0x10u | (1u << 5));
    EXPECT_EQ(fold_list_registers(gicd::ICPENDR + 4, 4, 0, lrs, 4), 1u << 1);
    EXPECT_EQ(fold_list_registers(gicd::ISACTIVER, 4, 0, lrs, 4), 1u << 27);
    EXPECT_EQ(fold_list_registers(gicd::ICACTIVER + 4, 4, 0, lrs, 4), 1u << 1);
    // SPENDSGIR1 covers SGIs 4..7: byte 1 is SGI 5, bit 1 its source CPU.
    EXPECT_EQ(fold_list_registers(gicd::SPENDSGIR + 4, 4, 0, lrs, 4), 0x0200u);
    EXPECT_EQ(fold_list_registers(gicd::CPENDSGIR + 5, 1, 0x01, lrs, 4), 0x03u);
    // Other registers and accesses the bit blocks do not allow are left alone.
    EXPECT_EQ(fold_list_registers(gicd::ISENABLER, 4, 7, lrs, 4), 7u);
    EXPECT_EQ(fold_list_registers(gicd::ISPENDR + 1, 1, 0, lrs, 4), 0u);
}

TEST(VgicV2, ClearingPendingReachesTheListRegisters) {
    std::uint32_t lrs[3] = {
        lr_value(5, LrState::Pending, false, false, 1),
        lr_value(33, LrState::PendingActive, false, false) | kLrEoi,
        lr_value(40, LrState::Active, false, false),
    };
    // ICPENDR1 bit 1 = SPI 33: pending and active becomes active.
    EXPECT_EQ(clear_pending_in_list_registers(gicd::ICPENDR + 4, 4, 0xffffffff, lrs, 3), 0b010u);
    EXPECT_EQ(lr_state(lrs[1]), LrState::Active);
    EXPECT_EQ(lr_state(lrs[2]), LrState::Active);  // not pending: untouched
    // ICPENDR0 cannot clear an SGI; CPENDSGIR must name its source CPU.
    EXPECT_EQ(clear_pending_in_list_registers(gicd::ICPENDR, 4, 0xffffffff, lrs, 3), 0u);
    EXPECT_EQ(clear_pending_in_list_registers(gicd::CPENDSGIR + 5, 1, 0x01, lrs, 3), 0u);
    EXPECT_EQ(clear_pending_in_list_registers(gicd::CPENDSGIR + 4, 4, 0x0200, lrs, 3), 0b001u);
    EXPECT_EQ(lr_state(lrs[0]), LrState::Invalid);
}
