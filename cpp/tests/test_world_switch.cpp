// The world switch's host-testable parts (world_switch.hpp) and the
// scheduler's decisions (scheduler.hpp).
//
// Golden values from the Arm ARM (DDI 0487) and the GICv3 specification
// (IHI 0069):
//  - ID_AA64PFR0_EL1: GIC [27:24], SVE [35:32]; ID_AA64PFR1_EL1: MTE [11:8]
//    (2 = FEAT_MTE2); ID_AA64ISAR1_EL1: APA [7:4], API [11:8], GPA [27:24],
//    GPI [31:28]; ID_AA64ISAR2_EL1: APA3 [15:12], GPA3 [11:8].
//  - ICH_VTR_EL2: ListRegs [4:0] (count - 1), PREbits [31:29] (bits - 1);
//    5 preemption bits use ICH_AP*R0 only, 6 also AP*R1, 7 all four.
//  - Generic timer (D11.2.4): a timer's condition is met when
//    counter - CVAL >= 0; CTL.ENABLE [0], IMASK [1]; the virtual counter is
//    the physical one less CNTVOFF_EL2.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "armvcpu/guest_context.hpp"
#include "armvcpu/scheduler.hpp"
#include "armvcpu/world_switch.hpp"

using namespace armvcpu;

namespace {

struct RecordingHal {
    std::uint64_t regs[kNumWorldRegs] = {};
    std::vector<WorldReg> reads, writes;
    std::uint64_t read_world(WorldReg r) {
        reads.push_back(r);
        return regs[static_cast<unsigned>(r)];
    }
    void write_world(WorldReg r, std::uint64_t v) {
        writes.push_back(r);
        regs[static_cast<unsigned>(r)] = v;
    }
};
static_assert(WorldHal<RecordingHal>);

constexpr std::uint64_t kPfr0GicSve = (1ull << 24) | (1ull << 32);
constexpr std::uint64_t kPfr1Mte2 = 2ull << 8;
constexpr std::uint64_t kIsar1Api = 1ull << 8;
constexpr std::uint64_t kVtr4Lrs5Bits = 0x90000003;  // PREbits 4 (+1 = 5), ListRegs 3

TEST(WorldFeatures, FromIdRegisters) {
    const WorldFeatures f = world_features(kPfr0GicSve, kPfr1Mte2, kIsar1Api, 0, kVtr4Lrs5Bits);
    EXPECT_TRUE(f.gicv3);
    EXPECT_EQ(f.list_regs, 4u);
    EXPECT_EQ(f.ap_regs, 1u);
    EXPECT_TRUE(f.pauth);
    EXPECT_TRUE(f.mte);
    EXPECT_TRUE(f.sve);
    // PREbits 6 and 7 bring AP*R1 and then AP*R2-3 (GICv3 12.4.1).
    EXPECT_EQ(world_features(kPfr0GicSve, 0, 0, 0, 5ull << 29).ap_regs, 2u);
    EXPECT_EQ(world_features(kPfr0GicSve, 0, 0, 0, 6ull << 29).ap_regs, 4u);
    // 16 list registers at most (ListRegs = 15).
    EXPECT_EQ(world_features(kPfr0GicSve, 0, 0, 0, 0xf).list_regs, 16u);
}

TEST(WorldFeatures, AbsentFeatures) {
    const WorldFeatures f = world_features(0, 1ull << 8, 0, 0, 0xffffffff);
    EXPECT_FALSE(f.gicv3);
    EXPECT_EQ(f.list_regs, 0u);  // no system-register GIC: ICH_VTR_EL2 is not read into it
    EXPECT_FALSE(f.pauth);
    EXPECT_FALSE(f.mte);  // FEAT_MTE (1) has no tag-check state of its own to switch
    EXPECT_FALSE(f.sve);
    EXPECT_TRUE(world_features(0, 0, 0, 1ull << 12, 0).pauth);  // APA3 (ISAR2)
    EXPECT_TRUE(world_features(0, 0, 1ull << 28, 0, 0).pauth);  // GPI
}

TEST(GuestWorld, TouchesOnlyWhatTheCpuHas) {
    RecordingHal hal;
    GuestWorld w;
    const WorldFeatures none{};
    w.save(hal, none);
    w.restore(hal, none);
    EXPECT_TRUE(hal.reads.empty());
    EXPECT_TRUE(hal.writes.empty());

    const WorldFeatures gic = world_features(kPfr0GicSve, 0, 0, 0, kVtr4Lrs5Bits);
    w.restore(hal, gic);
    // 4 list registers, AP0R0, AP1R0, VMCR, HCR; no keys, no tag state.
    EXPECT_EQ(hal.writes.size(), 8u);
    for (WorldReg r : hal.writes) {
        EXPECT_NE(r, WorldReg::ich_lr4_el2);
        EXPECT_NE(r, WorldReg::ich_ap0r1_el2);
        EXPECT_NE(r, WorldReg::apiakeylo_el1);
        EXPECT_NE(r, WorldReg::tfsr_el1);
    }
}

TEST(GuestWorld, RestoreOrderEndsTheGicWithHcr) {
    RecordingHal hal;
    GuestWorld w;
    const WorldFeatures all =
        world_features(kPfr0GicSve, kPfr1Mte2, kIsar1Api, 0, (6ull << 29) | 0xf);
    w.restore(hal, all);
    ASSERT_EQ(hal.writes.size(), 16u + 8u + 2u + 10u + 4u);
    // The list registers and active priorities before ICH_VMCR_EL2, and
    // ICH_HCR_EL2 (whose En turns the interface on) after all of them.
    auto pos = [&](WorldReg r) {
        for (unsigned i = 0; i < hal.writes.size(); ++i) {
            if (hal.writes[i] == r) return i;
        }
        return ~0u;
    };
    EXPECT_LT(pos(WorldReg::ich_lr15_el2), pos(WorldReg::ich_vmcr_el2));
    EXPECT_LT(pos(WorldReg::ich_ap1r3_el2), pos(WorldReg::ich_vmcr_el2));
    EXPECT_LT(pos(WorldReg::ich_vmcr_el2), pos(WorldReg::ich_hcr_el2));
    EXPECT_LT(pos(WorldReg::ich_hcr_el2), pos(WorldReg::apiakeylo_el1));
}

TEST(GuestWorld, SaveRestoreRoundTrip) {
    const WorldFeatures all = world_features(kPfr0GicSve, kPfr1Mte2, kIsar1Api, 0, 0xf);
    RecordingHal a;
    for (unsigned i = 0; i < kNumWorldRegs; ++i) a.regs[i] = 0x1000 + i;
    GuestWorld w;
    w.save(a, all);
    RecordingHal b;
    w.restore(b, all);
    for (unsigned i = 0; i < kNumWorldRegs; ++i) {
        const auto r = static_cast<WorldReg>(i);
        EXPECT_EQ(b.regs[i], GuestWorld::present(all, r) ? 0x1000 + i : 0u) << world_reg_name(r);
    }
}

TEST(TimerDeadline, EnabledUnmaskedTimersOnly) {
    GuestSystemRegisters s{};
    EXPECT_EQ(timer_deadline(s), kNoDeadline);
    s.cntv_cval_el0 = 1000;
    s.cntvoff_el2 = 500;
    s.cntv_ctl_el0 = 1;                   // ENABLE
    EXPECT_EQ(timer_deadline(s), 1500u);  // virtual 1000 = physical 1500
    s.cntv_ctl_el0 = 3;                   // ENABLE | IMASK: no interrupt, no wake-up
    EXPECT_EQ(timer_deadline(s), kNoDeadline);
    s.cntp_cval_el0 = 1200;
    s.cntp_ctl_el0 = 1;
    EXPECT_EQ(timer_deadline(s), 1200u);
    s.cntv_ctl_el0 = 1;
    EXPECT_EQ(timer_deadline(s), 1200u);  // the earlier of the two
    s.cntv_cval_el0 = ~0ull - 10;         // offset past 2^64: never
    s.cntp_ctl_el0 = 0;
    EXPECT_EQ(timer_deadline(s), kNoDeadline);
}

TEST(LazyFpOwner, SavesThePreviousOwnerOnce) {
    LazyFpOwner fp;
    EXPECT_TRUE(fp.trap_for(0));
    EXPECT_EQ(fp.take(0), LazyFpOwner::kNone);  // nobody's registers to save
    EXPECT_FALSE(fp.trap_for(0));               // back on the CPU: no trap
    EXPECT_TRUE(fp.trap_for(1));
    EXPECT_EQ(fp.take(1), 0);  // vCPU 0's registers saved, vCPU 1's loaded
    EXPECT_EQ(fp.owner(), 1);
    EXPECT_EQ(fp.take(1), LazyFpOwner::kNone);
}

namespace as = armvcpu::sched;

TEST(Placement, OneVcpuPerCpuWhenThereAreEnough) {
    std::uint8_t where[8] = {};
    ASSERT_EQ(as::place_vcpus(as::kDefaultSchedConfig, 4, 4, where), as::PlaceError::None);
    for (unsigned s = 0; s < 4; ++s) EXPECT_EQ(where[s], s);
    EXPECT_FALSE(as::time_shared(where, 4));
}

TEST(Placement, SpreadsExtraVcpusRoundRobin) {
    std::uint8_t where[8] = {};
    ASSERT_EQ(as::place_vcpus(as::kDefaultSchedConfig, 4, 2, where), as::PlaceError::None);
    EXPECT_EQ(where[0], 0);
    EXPECT_EQ(where[1], 1);
    EXPECT_EQ(where[2], 0);
    EXPECT_EQ(where[3], 1);
    EXPECT_TRUE(as::time_shared(where, 4));
}

TEST(Placement, SetsAndFavours) {
    as::SchedConfig cfg = as::kDefaultSchedConfig;
    cfg.phys_cpu_set[0] = 0b01;  // VM 1's vCPU: CPU 0
    cfg.phys_cpu_set[1] = 0b01;  // VM 2's: CPU 0 too
    cfg.favor_phys_cpu[2] = 1;
    std::uint8_t where[8] = {};
    ASSERT_EQ(as::place_vcpus(cfg, 3, 2, where), as::PlaceError::None);
    EXPECT_EQ(where[0], 0);
    EXPECT_EQ(where[1], 0);
    EXPECT_EQ(where[2], 1);
    cfg.favor_phys_cpu[1] = 1;  // a favour outside the set is ignored
    ASSERT_EQ(as::place_vcpus(cfg, 3, 2, where), as::PlaceError::None);
    EXPECT_EQ(where[1], 0);
    cfg.phys_cpu_set[2] = 0b100;  // CPU 2 of a 2-CPU machine
    EXPECT_EQ(as::place_vcpus(cfg, 3, 2, where), as::PlaceError::NoCpuInSet);
}

TEST(PickNext, RoundRobinOnItsCpu) {
    const std::uint8_t where[4] = {0, 1, 0, 0};
    auto all = [](unsigned) { return true; };
    EXPECT_EQ(as::pick_next(where, 4, 0, 0, all), 2);
    EXPECT_EQ(as::pick_next(where, 4, 0, 2, all), 3);
    EXPECT_EQ(as::pick_next(where, 4, 0, 3, all), 0);  // wraps, skipping CPU 1's slot
    auto only_current = [](unsigned s) { return s == 2; };
    EXPECT_EQ(as::pick_next(where, 4, 0, 2, only_current), 2);  // itself last
    auto none = [](unsigned) { return false; };
    EXPECT_EQ(as::pick_next(where, 4, 0, 0, none), -1);
}

}  // namespace

namespace {
struct GichRecorder {
    std::uint32_t regs[0x200 / 4] = {};
    std::vector<std::uint32_t> reads, writes;
    std::uint32_t read_gich(std::uint32_t off) {
        reads.push_back(off);
        return regs[off / 4];
    }
    void write_gich(std::uint32_t off, std::uint32_t v) {
        writes.push_back(off);
        regs[off / 4] = v;
    }
};
static_assert(GichHal<GichRecorder>);
}  // namespace

// GICv2 architecture specification 5.3: GICH_HCR 0x000 (En [0]), GICH_VMCR
// 0x008, GICH_APR 0x0F0, GICH_LR<n> 0x100 + 4n, State [29:28].
TEST(GichWorld, SavesAndRestoresInOrderEnLast) {
    GichRecorder hal;
    hal.regs[0x000 / 4] = 1;           // En
    hal.regs[0x008 / 4] = 0xf0000003;  // VMCR: PMR, both groups
    hal.regs[0x0f0 / 4] = 0x1;
    hal.regs[0x100 / 4] = (1u << 28) | 27;  // LR0: pending, vINTID 27
    hal.regs[0x104 / 4] = (2u << 28) | 33;  // LR1: active
    GichWorld w;
    w.save(hal, 2);
    EXPECT_EQ(hal.reads, (std::vector<std::uint32_t>{0x100, 0x104, 0x0f0, 0x008, 0x000}));
    EXPECT_TRUE(w.pending(2));
    EXPECT_EQ(w.lr[1], (2u << 28) | 33);
    GichRecorder other;
    w.restore(other, 2);
    EXPECT_EQ(other.writes, (std::vector<std::uint32_t>{0x100, 0x104, 0x0f0, 0x008, 0x000}));
    EXPECT_EQ(other.regs[0], 1u);
    EXPECT_EQ(other.regs[0x008 / 4], 0xf0000003u);
    GichWorld idle;
    idle.lr[0] = (2u << 28) | 27;  // active only: no event
    EXPECT_FALSE(idle.pending(4));
    idle.lr[3] = (3u << 28) | 30;  // pending and active
    EXPECT_TRUE(idle.pending(4));
    EXPECT_FALSE(idle.pending(3));
}

// A world switch as an exit-log entry (the layout scheduler.hpp documents).
TEST(SwitchLogEntry, PacksBothSides) {
    const ExitLogEntry e =
        sched::switch_log_entry(1000, 250, 3, {1, 1, 1}, {4, 2, 0}, sched::SwitchReason::Yield);
    EXPECT_EQ(e.time, 1000u);
    EXPECT_EQ(e.arg & sched::kSwitchRanMask, 250u);
    EXPECT_EQ(e.arg >> 56, 3u);
    EXPECT_EQ(e.esr, 4u | (2u << 8) | (0u << 16) | (4u << 24));
    EXPECT_EQ(e.kind, kExitLogWorldSwitch);
    EXPECT_EQ(e.vm_id, 1u);
    EXPECT_EQ(e.vcpu_id, 1u);
    EXPECT_EQ(e.handler, ExitLogHandler::Scheduler);
    EXPECT_EQ(sched::switch_log_entry(0, ~0ull, 0, {}, {}, sched::SwitchReason::Slice).arg,
              sched::kSwitchRanMask);
}
