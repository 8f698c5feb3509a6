// The emulated GICD/GICR (vgic_dist.hpp) against the GICv3 architecture
// specification (IHI 0069H, chapter 12): identification registers, reset
// values, set/clear register semantics, byte-accessible priorities, routing
// and the redistributor's TYPER/WAKER as a guest's GIC driver reads them.
#include <gtest/gtest.h>

#include "armvcpu/vgic_dist.hpp"

using namespace armvcpu::vgic;

namespace {

Distributor make(unsigned n = 2) {
    const std::uint64_t mpidr[kMaxVcpus] = {0x80000000, 0x80000001, 0x80000002, 0x80000003,
                                            0x80000004, 0x80000005, 0x80000006, 0x80000007};
    Distributor d;
    d.reset(n, mpidr);
    return d;
}

std::uint64_t rd(const Distributor& d, std::uint64_t addr, unsigned width = 4) {
    const Access a = d.read(addr, width);
    EXPECT_TRUE(a.handled) << std::hex << addr;
    return a.value;
}

WriteEffect wr(Distributor& d, std::uint64_t addr, std::uint64_t value, unsigned width = 4) {
    const Access a = d.write(addr, width, value);
    EXPECT_TRUE(a.handled) << std::hex << addr;
    return a.effect;
}

constexpr std::uint64_t D = kGicdBase;
constexpr std::uint64_t R0 = kGicrBase;
constexpr std::uint64_t R1 = kGicrBase + kGicrStride;
constexpr std::uint64_t S0 = R0 + kGicrSgiFrame;

}  // namespace

TEST(VgicDist, IdentifiesAsGicv3) {
    const Distributor d = make();
    // PIDR2.ArchRev [7:4] = 0x3: GICv3 (12.9.28 / 12.10.28).
    EXPECT_EQ((rd(d, D + 0xFFE8) >> 4) & 0xf, 3u);
    EXPECT_EQ((rd(d, R0 + 0xFFE8) >> 4) & 0xf, 3u);
    EXPECT_EQ((rd(d, R1 + 0xFFE8) >> 4) & 0xf, 3u);
    EXPECT_EQ(rd(d, D + 0x8) & 0xfff, 0x43Bu);  // IIDR.Implementer: Arm
}

TEST(VgicDist, TyperDescribesTheModel) {
    const Distributor d = make(2);
    const std::uint64_t typer = rd(d, D + 0x4);
    EXPECT_EQ(32u * ((typer & 0x1f) + 1), kNumIntids);  // ITLinesNumber
    EXPECT_EQ((typer >> 5) & 7, 1u);                    // CPUNumber = PEs - 1
    EXPECT_EQ((typer >> 17) & 1, 0u);                   // LPIS: no LPIs
    EXPECT_EQ((typer >> 10) & 1, 0u);                   // SecurityExtn: single Security state
    // Bare QEMU 7.2's -M virt,gic-version=3 with one CPU reads 0x037A0007;
    // the model is that less LPIS [17] (it has no LPIs).
    EXPECT_EQ(rd(make(1), D + 0x4), 0x037A0007u & ~(1u << 17));
    // GICR_TYPER of its only CPU: QEMU's 0x0100_0011 less PLPIS [0].
    EXPECT_EQ(rd(make(1), R0 + 0x8, 8), 0x0100'0010u);
    EXPECT_EQ(rd(make(1), R0 + 0x0), 2u);  // GICR_CTLR: CES, as QEMU's
}

// Reads of the pending and active registers fold in what the model does not
// hold (IHI 0069H 12.9.x GICD_ISPENDR<n>: "reads ... return the pending
// state"): interrupts in list registers and hardware lines asserted.
TEST(VgicDist, PendingAndActiveReadsFoldInLiveState) {
    Distributor d = make(2);
    LiveState live;
    live.lr_pending[0] = 1u << 1;            // SGI 1 pending in a list register
    live.lr_active[0] = 1u << 27;            // the virtual timer active
    live.line[0] = (1u << 27) | (1u << 30);  // both timer lines asserted
    live.lr_active[1] = 1u << 2;             // INTID 34 active
    live.line[1] = 1u << 2;                  // ... and its level line still high
    wr(d, S0 + 0x200, 1u << 5);              // SGI 5 pending in the model
    EXPECT_EQ(d.read(S0 + 0x200, 4, &live).value, (1u << 1) | (1u << 5) | (1u << 27) | (1u << 30));
    EXPECT_EQ(d.read(S0 + 0x280, 4, &live).value, (1u << 1) | (1u << 5) | (1u << 27) | (1u << 30));
    EXPECT_EQ(d.read(S0 + 0x300, 4, &live).value, 1u << 27);
    EXPECT_EQ(d.read(S0 + 0x380, 4, &live).value, 1u << 27);
    EXPECT_EQ(d.read(D + 0x204, 4, &live).value, 1u << 2);
    EXPECT_EQ(d.read(D + 0x304, 4, &live).value, 1u << 2);
    // Enables, groups and priorities do not change; without live state the
    // model's own bits alone.
    EXPECT_EQ(d.read(S0 + 0x100, 4, &live).value, 0u);
    EXPECT_EQ(rd(d, S0 + 0x200), 1u << 5);
    // Byte accesses to the bit registers are not allowed (32-bit only): RAZ.
    EXPECT_EQ(d.read(S0 + 0x200, 1, &live).value, 0u);
}

TEST(VgicDist, ClearAndActiveWritesNameEveryBitWritten) {
    Distributor d = make(2);
    // The model holds nothing, but the interrupts may be in list registers:
    // the effect names each 1 written, for the hypervisor to apply there.
    WriteEffect e = wr(d, S0 + 0x280, 0x8000'0002);
    EXPECT_EQ(e.pending_cleared, 0x8000'0002u);
    EXPECT_EQ(e.vcpu, 0u);
    EXPECT_EQ(e.bank, 0u);
    e = wr(d, R1 + kGicrSgiFrame + 0x300, 1u << 27);
    EXPECT_EQ(e.active_set, 1u << 27);
    EXPECT_EQ(e.vcpu, 1u);
    e = wr(d, D + 0x384, 1u << 2);
    EXPECT_EQ(e.active_cleared, 1u << 2);
    EXPECT_EQ(e.bank, 1u);
    // ISACTIVER sets the model's bit until the hypervisor moves it to a list
    // register (clear_active); ICACTIVER clears it.
    EXPECT_EQ(rd(d, S0 + 0x300), 0u);
    wr(d, S0 + 0x300, 1u << 3);
    EXPECT_EQ(rd(d, S0 + 0x300), 1u << 3);
    d.clear_active(0, 3);
    EXPECT_EQ(rd(d, S0 + 0x300), 0u);
    wr(d, D + 0x304, 1u << 4);
    wr(d, D + 0x384, 1u << 4);
    EXPECT_EQ(rd(d, D + 0x304), 0u);
}

TEST(VgicDist, RedistributorOfAnAddress) {
    const Distributor d = make(2);
    EXPECT_EQ(d.redistributor_of(R0 + 0x10200), 0u);
    EXPECT_EQ(d.redistributor_of(R1 + 0x10200), 1u);
    EXPECT_EQ(d.redistributor_of(D + 0x200), kMaxVcpus);
    EXPECT_EQ(d.redistributor_of(R1 + kGicrStride), kMaxVcpus);  // past the last
}

TEST(VgicDist, CtlrHasAffinityRoutingAndSingleSecurityState) {
    Distributor d = make();
    // With DS = 1, ARE [4] and DS [6] read as one; the group enables reset to 0
    // and RWP [31] never reads as one (writes take effect at once).
    EXPECT_EQ(rd(d, D + 0x0), (1u << 4) | (1u << 6));
    wr(d, D + 0x0, 0x13);  // ARE | EnableGrp1 | EnableGrp0, as Linux writes it
    EXPECT_EQ(rd(d, D + 0x0), 0x53u);
    EXPECT_EQ(d.ctlr(), 3u);
    wr(d, D + 0x0, 0);
    EXPECT_EQ(rd(d, D + 0x0) & 3, 0u);
}

TEST(VgicDist, SetAndClearEnableRegistersActOnOnesOnly) {
    Distributor d = make();
    // GICD_ISENABLER1 covers INTIDs 32..63; bit 1 is INTID 33.
    WriteEffect e = wr(d, D + 0x104, 0b1010);
    EXPECT_EQ(e.bank, 1u);
    EXPECT_EQ(e.enable_changed, 0b1010u);
    EXPECT_EQ(rd(d, D + 0x104), 0b1010u);
    EXPECT_EQ(rd(d, D + 0x184), 0b1010u);  // ICENABLER reads the same state
    e = wr(d, D + 0x104, 0b0010);          // already enabled: nothing changes
    EXPECT_EQ(e.enable_changed, 0u);
    e = wr(d, D + 0x184, 0b0010);  // clear INTID 33 only
    EXPECT_EQ(e.enable_changed, 0b0010u);
    EXPECT_EQ(rd(d, D + 0x104), 0b1000u);
    EXPECT_TRUE(d.enabled(0, 35));
    EXPECT_FALSE(d.enabled(0, 33));
}

TEST(VgicDist, PrivateInterruptsLiveInTheRedistributor) {
    Distributor d = make();
    // With affinity routing, GICD_ISENABLER0 and friends are RAZ/WI.
    wr(d, D + 0x100, 0xffffffff);
    EXPECT_EQ(rd(d, D + 0x100), 0u);
    EXPECT_FALSE(d.enabled(0, 27));
    // GICR_ISENABLER0 of vCPU 0 (SGI_base + 0x100) enables PPI 27 on vCPU 0 only.
    const WriteEffect e = wr(d, S0 + 0x100, 1u << 27);
    EXPECT_EQ(e.vcpu, 0u);
    EXPECT_EQ(e.bank, 0u);
    EXPECT_EQ(e.enable_changed, 1u << 27);
    EXPECT_TRUE(d.enabled(0, 27));
    EXPECT_FALSE(d.enabled(1, 27));
    EXPECT_EQ(wr(d, R1 + kGicrSgiFrame + 0x100, 0xffff).vcpu, 1u);
    EXPECT_TRUE(d.enabled(1, 5));
}

TEST(VgicDist, PrioritiesAreByteAccessible) {
    Distributor d = make();
    wr(d, D + 0x400 + 33, 0xa0, 1);
    wr(d, D + 0x400 + 36, 0x11223344, 4);  // INTIDs 36..39
    EXPECT_EQ(rd(d, D + 0x400 + 33, 1), 0xa0u);
    EXPECT_EQ(rd(d, D + 0x400 + 32, 4), 0xa000u);
    EXPECT_EQ(rd(d, D + 0x400 + 37, 1), 0x33u);
    EXPECT_EQ(d.priority(0, 39), 0x11u);
    // The private INTIDs' priorities are in GICR_IPRIORITYR<n>.
    wr(d, S0 + 0x400 + 27, 0x80, 1);
    EXPECT_EQ(d.priority(0, 27), 0x80u);
    EXPECT_EQ(rd(d, S0 + 0x418, 4), 0x80000000u);  // INTIDs 24..27
    EXPECT_EQ(rd(d, D + 0x400 + 27, 1), 0u);       // GICD_IPRIORITYR0..7: RAZ/WI
}

TEST(VgicDist, IcfgrUsesTheOddBitForEdge) {
    Distributor d = make();
    // GICD_ICFGR2 covers INTIDs 32..47; Int_config[1] of INTID 33 is bit 3.
    wr(d, D + 0xC08, 1u << 3);
    EXPECT_EQ(rd(d, D + 0xC08), 1u << 3);
    // SGIs are edge-triggered and GICR_ICFGR0 is read-only.
    EXPECT_EQ(rd(d, S0 + 0xC00), 0xaaaaaaaau);
    wr(d, S0 + 0xC00, 0);
    EXPECT_EQ(rd(d, S0 + 0xC00), 0xaaaaaaaau);
    // PPIs reset to level; GICR_ICFGR1 makes PPI 27 (bit 2 * 11 + 1) edge.
    EXPECT_EQ(rd(d, S0 + 0xC04), 0u);
    wr(d, S0 + 0xC04, 1u << 23);
    EXPECT_EQ(rd(d, S0 + 0xC04), 1u << 23);
}

TEST(VgicDist, IrouterRoutesSpisByAffinity) {
    Distributor d = make(4);
    EXPECT_EQ(d.route_of(33), 0u);  // reset: Aff = 0.0.0.0, vCPU 0
    const WriteEffect e = wr(d, D + 0x6000 + 33 * 8, 2, 8);
    EXPECT_EQ(e.route_changed_intid, 33u);
    EXPECT_EQ(d.route_of(33), 2u);
    EXPECT_EQ(rd(d, D + 0x6000 + 33 * 8, 8), 2u);
    // 32-bit halves are accessible; IRM [31] means "any PE" (here vCPU 0).
    wr(d, D + 0x6000 + 34 * 8, 3, 4);
    EXPECT_EQ(d.route_of(34), 3u);
    wr(d, D + 0x6000 + 34 * 8, 1u << 31, 4);
    EXPECT_EQ(d.route_of(34), 0u);
    // RES0 bits read back as written, as QEMU 7.2's GICv3 keeps them
    // (tests/test_gic_state.py reads 0xffffffff'ffffffff there on bare
    // QEMU), and do not change the route: Aff 0xff.ff.ff.ff is no vCPU's.
    wr(d, D + 0x6000 + 35 * 8, ~0ull, 8);
    EXPECT_EQ(rd(d, D + 0x6000 + 35 * 8, 8), ~0ull);
    EXPECT_EQ(rd(d, D + 0x6000 + 35 * 8 + 4, 4), 0xffffffffull);
    wr(d, D + 0x6000 + 36 * 8, 0x7f00'0001ull, 4);  // RES0 [30:24] and Aff0 = 1
    EXPECT_EQ(rd(d, D + 0x6000 + 36 * 8, 4), 0x7f00'0001ull);
    EXPECT_EQ(d.route_of(36), 1u);
    wr(d, D + 0x6000 + 36 * 8 + 4, 0xffff'ff00ull, 4);  // RES0 [63:40], Aff3 = 0
    EXPECT_EQ(rd(d, D + 0x6000 + 36 * 8, 8), 0xffff'ff00'7f00'0001ull);
    EXPECT_EQ(d.route_of(36), 1u);
    // IROUTER<n> for the private INTIDs (n < 32) is reserved: RAZ/WI.
    EXPECT_EQ(wr(d, D + 0x6000 + 27 * 8, 1, 8).route_changed_intid, 0u);
}

TEST(VgicDist, RedistributorTyperFindsEachVcpuAndTheLastOne) {
    const Distributor d = make(2);
    const std::uint64_t t0 = rd(d, R0 + 0x8, 8);
    const std::uint64_t t1 = rd(d, R1 + 0x8, 8);
    EXPECT_EQ(t0 >> 32, 0u);  // Affinity_Value of MPIDR 0x80000000
    EXPECT_EQ(t1 >> 32, 1u);
    EXPECT_EQ((t0 >> 8) & 0xffff, 0u);  // Processor_Number
    EXPECT_EQ((t1 >> 8) & 0xffff, 1u);
    EXPECT_EQ(t0 & (1u << 4), 0u);  // Last: only the final redistributor
    EXPECT_NE(t1 & (1u << 4), 0u);
    EXPECT_EQ(t0 & 1, 0u);  // PLPIS: no LPIs
    // The 32-bit halves read the same value.
    EXPECT_EQ(rd(d, R1 + 0x8, 4) | rd(d, R1 + 0xC, 4) << 32, t1);
    // Beyond the last redistributor is not the GIC's.
    EXPECT_FALSE(d.read(kGicrBase + 2 * kGicrStride + 0x8, 8).handled);
}

TEST(VgicDist, WakerWakesAtOnce) {
    Distributor d = make();
    // Reset: ProcessorSleep and ChildrenAsleep set (12.11.44).
    EXPECT_EQ(rd(d, R0 + 0x14), 0x6u);
    wr(d, R0 + 0x14, 0);  // Linux clears ProcessorSleep then polls ChildrenAsleep
    EXPECT_EQ(rd(d, R0 + 0x14), 0u);
    EXPECT_EQ(rd(d, R1 + 0x14), 0x6u);  // the other vCPU's stays asleep
}

TEST(VgicDist, PendingInterruptsWaitForEnableAndGroup) {
    Distributor d = make(2);
    std::uint32_t intid = 0;
    // Software makes SPI 40 pending (GICD_ISPENDR1 bit 8).
    const WriteEffect e = wr(d, D + 0x204, 1u << 8);
    EXPECT_EQ(e.pending_set, 1u << 8);
    EXPECT_FALSE(d.take_pending(0, intid));  // not enabled
    wr(d, D + 0x104, 1u << 8);               // enable it
    EXPECT_FALSE(d.take_pending(0, intid));  // its group (0) is not enabled
    wr(d, D + 0x84, 1u << 8);                // Group 1
    wr(d, D + 0x0, 0x12);                    // EnableGrp1
    EXPECT_FALSE(d.take_pending(1, intid));  // routed to vCPU 0, not 1
    ASSERT_TRUE(d.take_pending(0, intid));
    EXPECT_EQ(intid, 40u);
    EXPECT_FALSE(d.take_pending(0, intid));  // taken once
    // SETSPI_NSR pends an SPI by number.
    EXPECT_EQ(wr(d, D + 0x40, 40).pending_set, 1u << 8);
    EXPECT_EQ(rd(d, D + 0x204), 1u << 8);
    wr(d, D + 0x48, 40);  // CLRSPI_NSR
    EXPECT_EQ(rd(d, D + 0x204), 0u);
}

TEST(VgicDist, UnimplementedSpaceIsRazWi) {
    Distributor d = make();
    EXPECT_EQ(rd(d, D + 0x7000), 0u);
    EXPECT_EQ(rd(d, D + 0x104, 2), 0u);  // a 16-bit access to a 32-bit register
    EXPECT_EQ(wr(d, D + 0x7000, ~0ull).enable_changed, 0u);
    EXPECT_EQ(rd(d, R0 + 0x70, 8), 0u);  // PROPBASER: no LPIs
    // Widths other than 1, 2, 4, 8 are claimed but ignored.
    EXPECT_TRUE(d.read(D + 0x4, 3).handled);
    EXPECT_EQ(d.read(D + 0x4, 3).value, 0u);
    // Outside the frames: not the GIC's.
    EXPECT_FALSE(d.read(kGicdBase - 4, 4).handled);
    EXPECT_FALSE(d.read(0x09000000, 4).handled);
}
