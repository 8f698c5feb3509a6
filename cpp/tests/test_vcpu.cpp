// VCpu<SimHal>: the vCPU state machine (vcpu.hpp, after axvcpu's
// with_state_transition), the guest-context load order (guest_context.hpp) and
// the EL2 traps a guest runs with.
//
// Golden values from the Arm ARM (DDI 0487):
//  - HCR_EL2 (D17.2.48): VM [0], FMO [3], IMO [4], AMO [5], TWI [13], TSC [19],
//    RW [31].
//  - ESR_EL2 (D17.2.37): WFI trapped from AArch64 = EC 0x01, IL 1, TI 0b00 ->
//    0x06000000; HVC #0 = EC 0x16, IL 1 -> 0x5A000000; MSR/MRS EC 0x18.
//  - MIDR_EL1: Implementer [31:24], Variant [23:20], Architecture [19:16],
//    PartNum [15:4], Revision [3:0]; 0x410FD034 is Arm (0x41) Cortex-A53
//    (0xD03) r0p4.
//  - SPSR_EL2: M[3:0] 0b0101 = EL1h, F [6], I [7], A [8], D [9].
//  - SCTLR_EL1: the RES1 bits of Armv8.0 are 29, 28, 23, 22, 20 and 11.
//  - CNTHCTL_EL2 (E2H = 0): EL1PCTEN [0], EL1PCEN [1].
//  - VPIDR_EL2 holds the value an EL1 read of MIDR_EL1 returns, VMPIDR_EL2 that
//    of MPIDR_EL1.
//  - GICv3 (IHI 0069, 2.2): INTIDs 1020-1023 are special and never delivered.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>

#include "armvcpu/mmio.hpp"
#include "armvcpu/psci.hpp"
#include "armvcpu/sim_hal.hpp"
#include "armvcpu/vcpu.hpp"

using namespace armvcpu;

namespace {

constexpr std::uint64_t kMidr = 0x410FD034;
constexpr std::uint64_t kMpidr = 0x80000001;  // RES1 bit 31, Aff0 1
constexpr std::uint64_t kDtb = 0x48000000;
constexpr std::uint64_t kEntry = 0x40080000;

constexpr std::uint64_t kHcrVmBit = 1ull << 0;
constexpr std::uint64_t kHcrFmoBit = 1ull << 3;
constexpr std::uint64_t kHcrImoBit = 1ull << 4;
constexpr std::uint64_t kHcrAmoBit = 1ull << 5;
constexpr std::uint64_t kHcrTwiBit = 1ull << 13;
constexpr std::uint64_t kHcrTscBit = 1ull << 19;
constexpr std::uint64_t kHcrRwBit = 1ull << 31;
constexpr std::uint64_t kGuestTraps =
    kHcrVmBit | kHcrFmoBit | kHcrImoBit | kHcrAmoBit | kHcrTscBit | kHcrRwBit;

constexpr std::uint64_t kEsrWfi = 0x06000000;
constexpr std::uint64_t kEsrHvc = 0x5A000000;

constexpr ScriptedExit sync_exit(std::uint64_t esr, std::uint64_t far = 0,
                                 std::uint64_t hpfar = 0) {
    return ScriptedExit{ExceptionType::Synchronous, {esr, far, hpfar}, 1023};
}

unsigned position(const SimHal& hal, SysReg r) {
    for (unsigned i = 0; i < hal.write_log_len; ++i) {
        if (hal.write_log[i] == r) return i;
    }
    ADD_FAILURE() << sysreg_id_name(r) << " was never written";
    return ~0u;
}

unsigned write_count(const SimHal& hal, SysReg r) {
    unsigned n = 0;
    for (unsigned i = 0; i < hal.write_log_len; ++i) n += hal.write_log[i] == r ? 1u : 0u;
    return n;
}

// Records where each ISB fell in the write sequence.
struct SeqHal : SimHal {
    unsigned isb_at[8] = {};
    unsigned isbs = 0;
    constexpr void isb() {
        if (isbs < 8) isb_at[isbs++] = write_log_len;
        SimHal::isb();
    }
};
static_assert(Hal<SeqHal>);

// Lets a test look at the vCPU while the "guest" runs.
struct ProbeHal : SimHal {
    std::function<void()> on_enter;
    ExceptionType enter_guest(TrapFrame& frame) {
        if (on_enter) on_enter();
        return SimHal::enter_guest(frame);
    }
};
static_assert(Hal<ProbeHal>);

class VCpuTest : public ::testing::Test {
protected:
    void SetUp() override { hal.regs[static_cast<unsigned>(SysReg::midr_el1)] = kMidr; }

    // A vCPU taken to Ready.
    VCpu<SimHal> ready(VCpuSetupConfig setup = {}) {
        VCpu<SimHal> v(hal, 3, 1, {kMpidr, kDtb});
        EXPECT_EQ(v.setup(setup), VCpuError::None);
        EXPECT_EQ(v.set_entry(kEntry), VCpuError::None);
        EXPECT_EQ(v.bind(), VCpuError::None);
        EXPECT_EQ(v.state(), VCpuState::Ready);
        return v;
    }

    SimHal hal;
};

}  // namespace

// ---------------------------------------------------------- construction

TEST_F(VCpuTest, CreatedWithBootProtocolState) {
    VCpu<SimHal> v(hal, 3, 1, {kMpidr, kDtb});
    EXPECT_EQ(v.state(), VCpuState::Created);
    EXPECT_EQ(v.vm_id(), 3u);
    EXPECT_EQ(v.vcpu_id(), 1u);
    EXPECT_EQ(v.mpidr(), kMpidr);
    EXPECT_EQ(v.context().gpr(0), kDtb);  // arm64 boot protocol: X0 = DTB
    // EL1h (0b0101) with D, A, I, F masked: 0x5 | 1<<6 | 1<<7 | 1<<8 | 1<<9.
    EXPECT_EQ(v.context().spsr, 0x5u | (1u << 6) | (1u << 7) | (1u << 8) | (1u << 9));
    EXPECT_EQ(v.context().spsr, 0x3c5u);
    EXPECT_EQ(v.guest_system_regs().sctlr_el1, (1ull << 29) | (1ull << 28) | (1ull << 23) |
                                                   (1ull << 22) | (1ull << 20) | (1ull << 11));
    EXPECT_EQ(v.guest_system_regs().vmpidr_el2, kMpidr);
    EXPECT_EQ(hal.write_log_len, 0u);  // nothing touches the CPU before bind()
}

// ------------------------------------------------------------ setup traps

TEST_F(VCpuTest, SetupSetsTheGuestTrapsWithoutTwi) {
    VCpu<SimHal> v(hal, 0, 0, {});
    ASSERT_EQ(v.setup({}), VCpuError::None);
    EXPECT_EQ(v.state(), VCpuState::Free);
    const std::uint64_t hcr = v.guest_system_regs().hcr_el2;
    EXPECT_EQ(hcr, kGuestTraps);
    EXPECT_EQ(hcr, 0x80080039u);
    EXPECT_EQ(hcr & kHcrTwiBit, 0u);
}

TEST_F(VCpuTest, SetupWithTrapWfiAddsTwi) {
    VCpu<SimHal> v(hal, 0, 0, {});
    ASSERT_EQ(v.setup({true}), VCpuError::None);
    EXPECT_EQ(v.guest_system_regs().hcr_el2, kGuestTraps | kHcrTwiBit);
    EXPECT_EQ(v.guest_system_regs().hcr_el2, 0x80082039u);
}

TEST_F(VCpuTest, SetupCopiesMidrIntoVpidr) {
    VCpu<SimHal> v(hal, 0, 0, {kMpidr, 0});
    ASSERT_EQ(v.setup({}), VCpuError::None);
    EXPECT_EQ(v.guest_system_regs().vpidr_el2, kMidr);
    ASSERT_EQ(v.bind(), VCpuError::None);
    EXPECT_EQ(hal.read_sysreg(SysReg::vpidr_el2), kMidr);
    EXPECT_EQ(hal.read_sysreg(SysReg::vmpidr_el2), kMpidr);
    EXPECT_EQ(hal.read_sysreg(SysReg::hcr_el2), kGuestTraps);
}

// ----------------------------------------------------------- state machine

TEST_F(VCpuTest, FullLifecycle) {
    VCpu<SimHal> v(hal, 0, 0, {kMpidr, kDtb});
    EXPECT_EQ(v.state(), VCpuState::Created);
    ASSERT_EQ(v.setup({}), VCpuError::None);
    EXPECT_EQ(v.state(), VCpuState::Free);
    ASSERT_EQ(v.set_entry(kEntry), VCpuError::None);
    ASSERT_EQ(v.bind(), VCpuError::None);
    EXPECT_EQ(v.state(), VCpuState::Ready);

    hal.push_exit(sync_exit(kEsrHvc));
    ASSERT_EQ(v.set_gpr(0, 0x42), VCpuError::None);  // a seeds-convention hypercall
    const VCpuRunResult r = v.run();
    EXPECT_EQ(r.error, VCpuError::None);
    EXPECT_EQ(r.type, ExceptionType::Synchronous);
    EXPECT_EQ(r.syndrome.esr, kEsrHvc);
    ASSERT_EQ(r.reason.kind, ExitKind::Hypercall);
    EXPECT_EQ(r.reason.hypercall.nr, 0x42u);
    EXPECT_EQ(v.state(), VCpuState::Ready);
    EXPECT_EQ(v.context().exception_pc(), kEntry);  // HVC: ELR already past it

    ASSERT_EQ(v.unbind(), VCpuError::None);
    EXPECT_EQ(v.state(), VCpuState::Free);
    ASSERT_EQ(v.bind(), VCpuError::None);  // and back
    EXPECT_EQ(v.state(), VCpuState::Ready);
}

TEST_F(VCpuTest, StateIsRunningWhileTheGuestRuns) {
    ProbeHal probe;
    probe.regs[static_cast<unsigned>(SysReg::midr_el1)] = kMidr;
    VCpu<ProbeHal> v(probe, 0, 0, {});
    VCpuState seen = VCpuState::Invalid;
    probe.on_enter = [&] { seen = v.state(); };
    ASSERT_EQ(v.setup({}), VCpuError::None);
    ASSERT_EQ(v.bind(), VCpuError::None);
    probe.push_exit(sync_exit(kEsrHvc));
    v.run();
    EXPECT_EQ(seen, VCpuState::Running);
    EXPECT_EQ(v.state(), VCpuState::Ready);
}

TEST_F(VCpuTest, RunBeforeSetupIsBadStateAndInvalidates) {
    VCpu<SimHal> v(hal, 0, 0, {});
    const VCpuRunResult r = v.run();
    EXPECT_EQ(r.error, VCpuError::BadState);
    EXPECT_EQ(r.reason.kind, ExitKind::Nothing);
    EXPECT_EQ(v.state(), VCpuState::Invalid);
    EXPECT_EQ(hal.script_pos, 0u);  // the guest was never entered
}

TEST_F(VCpuTest, InvalidRefusesEverything) {
    VCpu<SimHal> v(hal, 0, 0, {});
    ASSERT_EQ(v.bind(), VCpuError::BadState);  // Created -> Invalid
    ASSERT_EQ(v.state(), VCpuState::Invalid);
    EXPECT_EQ(v.setup({}), VCpuError::BadState);
    EXPECT_EQ(v.set_entry(kEntry), VCpuError::BadState);
    EXPECT_EQ(v.set_ept_root(0x80000000, 0x80023558), VCpuError::BadState);
    EXPECT_EQ(v.bind(), VCpuError::BadState);
    EXPECT_EQ(v.unbind(), VCpuError::BadState);
    EXPECT_EQ(v.run().error, VCpuError::BadState);
    EXPECT_EQ(v.wake(), VCpuError::BadState);
    EXPECT_EQ(v.inject_interrupt(27), VCpuError::BadState);
    EXPECT_EQ(v.state(), VCpuState::Invalid);
    EXPECT_EQ(hal.write_log_len, 0u);
    EXPECT_EQ(hal.injected_len, 0u);
}

TEST_F(VCpuTest, WrongStateCallsInvalidate) {
    {
        VCpu<SimHal> v(hal, 0, 0, {});
        ASSERT_EQ(v.setup({}), VCpuError::None);
        EXPECT_EQ(v.setup({}), VCpuError::BadState);  // setup twice
        EXPECT_EQ(v.state(), VCpuState::Invalid);
    }
    {
        VCpu<SimHal> v = ready();
        EXPECT_EQ(v.set_entry(0x1000), VCpuError::BadState);  // entry after bind
        EXPECT_EQ(v.state(), VCpuState::Invalid);
    }
    {
        VCpu<SimHal> v = ready();
        EXPECT_EQ(v.wake(), VCpuError::BadState);  // wake when not Blocked
        EXPECT_EQ(v.state(), VCpuState::Invalid);
    }
    {
        VCpu<SimHal> v(hal, 0, 0, {});
        ASSERT_EQ(v.setup({}), VCpuError::None);
        EXPECT_EQ(v.unbind(), VCpuError::BadState);  // unbind when Free
        EXPECT_EQ(v.state(), VCpuState::Invalid);
    }
    {
        VCpu<SimHal> v = ready();
        EXPECT_EQ(v.bind(), VCpuError::BadState);  // bind twice
        EXPECT_EQ(v.state(), VCpuState::Invalid);
    }
}

TEST_F(VCpuTest, UnbindStoresTheContextBack) {
    VCpu<SimHal> v = ready();
    // The guest changed its EL1 state while it ran.
    hal.regs[static_cast<unsigned>(SysReg::tpidr_el1)] = 0xfeedface;
    hal.regs[static_cast<unsigned>(SysReg::sctlr_el1)] = 0x30d00801;
    ASSERT_EQ(v.unbind(), VCpuError::None);
    EXPECT_EQ(v.state(), VCpuState::Free);
    EXPECT_EQ(v.guest_system_regs().tpidr_el1, 0xfeedfaceu);
    EXPECT_EQ(v.guest_system_regs().sctlr_el1, 0x30d00801u);
    // Another context is loaded in between; binding again restores ours.
    hal.regs[static_cast<unsigned>(SysReg::tpidr_el1)] = 0;
    ASSERT_EQ(v.bind(), VCpuError::None);
    EXPECT_EQ(hal.read_sysreg(SysReg::tpidr_el1), 0xfeedfaceu);
}

TEST_F(VCpuTest, EptRootReachesTheCpuOnBind) {
    VCpu<SimHal> v(hal, 0, 0, {});
    ASSERT_EQ(v.set_ept_root(0x0005000080000000ull, 0x80023558), VCpuError::None);
    ASSERT_EQ(v.setup({}), VCpuError::None);
    ASSERT_EQ(v.set_ept_root(0x0007000080000000ull, 0x80023558), VCpuError::None);
    ASSERT_EQ(v.bind(), VCpuError::None);
    EXPECT_EQ(hal.read_sysreg(SysReg::vttbr_el2), 0x0007000080000000ull);
    EXPECT_EQ(hal.read_sysreg(SysReg::vtcr_el2), 0x80023558u);
}

TEST_F(VCpuTest, EntrySetsThePc) {
    VCpu<SimHal> v(hal, 0, 0, {});
    ASSERT_EQ(v.set_entry(0x40000000), VCpuError::None);
    EXPECT_EQ(v.context().exception_pc(), 0x40000000u);
    ASSERT_EQ(v.setup({}), VCpuError::None);
    ASSERT_EQ(v.set_entry(kEntry), VCpuError::None);
    EXPECT_EQ(v.context().exception_pc(), kEntry);
}

// ------------------------------------------------------------- Halt/wake

TEST_F(VCpuTest, WfiHaltBlocksAndWakeReadies) {
    VCpu<SimHal> v = ready({true});
    ASSERT_NE(hal.read_sysreg(SysReg::hcr_el2) & kHcrTwiBit, 0u);
    hal.push_exit(sync_exit(kEsrWfi));
    const VCpuRunResult r = v.run();
    EXPECT_EQ(r.error, VCpuError::None);
    EXPECT_EQ(r.reason.kind, ExitKind::Halt);
    EXPECT_EQ(v.state(), VCpuState::Blocked);
    EXPECT_EQ(v.context().exception_pc(), kEntry + 4);  // past the WFI
    EXPECT_EQ(v.run().error, VCpuError::BadState);      // a Blocked vCPU cannot run
    EXPECT_EQ(v.state(), VCpuState::Invalid);
}

TEST_F(VCpuTest, WakeReturnsToReady) {
    VCpu<SimHal> v = ready({true});
    hal.push_exit(sync_exit(kEsrWfi));
    hal.push_exit(sync_exit(kEsrHvc));
    ASSERT_EQ(v.run().reason.kind, ExitKind::Halt);
    ASSERT_EQ(v.state(), VCpuState::Blocked);
    ASSERT_EQ(v.wake(), VCpuError::None);
    EXPECT_EQ(v.state(), VCpuState::Ready);
    EXPECT_EQ(v.run().error, VCpuError::None);
    EXPECT_EQ(v.state(), VCpuState::Ready);
}

TEST_F(VCpuTest, UnbindFromBlocked) {
    VCpu<SimHal> v = ready({true});
    hal.push_exit(sync_exit(kEsrWfi));
    v.run();
    ASSERT_EQ(v.state(), VCpuState::Blocked);
    EXPECT_EQ(v.unbind(), VCpuError::None);
    EXPECT_EQ(v.state(), VCpuState::Free);
}

// WFE is a hint: the vCPU stays Ready.
TEST_F(VCpuTest, WfeDoesNotBlock) {
    VCpu<SimHal> v = ready({true});
    hal.push_exit(sync_exit(kEsrWfi | 0b01));
    EXPECT_EQ(v.run().reason.kind, ExitKind::Nothing);
    EXPECT_EQ(v.state(), VCpuState::Ready);
}

// --------------------------------------------------------- registers, IRQs

TEST_F(VCpuTest, SetGprChecksTheIndex) {
    VCpu<SimHal> v = ready();
    EXPECT_EQ(v.set_gpr(30, 0x1234), VCpuError::None);
    EXPECT_EQ(v.context().gpr(30), 0x1234u);
    EXPECT_EQ(v.set_gpr(31, 0x5678), VCpuError::BadArgument);
    EXPECT_EQ(v.set_gpr(1000, 0x5678), VCpuError::BadArgument);
    EXPECT_EQ(v.context().sp_el0, 0u);       // index 31 did not land in SP
    EXPECT_EQ(v.state(), VCpuState::Ready);  // a bad argument is not a bad state
}

TEST_F(VCpuTest, SetReturnValueWritesX0) {
    VCpu<SimHal> v = ready();
    v.set_return_value(0xffffffffffffffffull);
    EXPECT_EQ(v.context().gpr(0), 0xffffffffffffffffull);
    EXPECT_EQ(v.context().gpr(1), 0u);
}

TEST_F(VCpuTest, InjectInterruptGoesToTheHal) {
    VCpu<SimHal> v = ready();
    EXPECT_EQ(v.inject_interrupt(27), VCpuError::None);  // the virtual timer PPI
    EXPECT_EQ(v.inject_interrupt(1019), VCpuError::None);
    ASSERT_EQ(hal.injected_len, 2u);
    EXPECT_EQ(hal.injected[0], 27u);
    EXPECT_EQ(hal.injected[1], 1019u);
    EXPECT_EQ(v.inject_interrupt(1020), VCpuError::BadArgument);  // special INTID
    EXPECT_EQ(v.inject_interrupt(1023), VCpuError::BadArgument);
    EXPECT_EQ(hal.injected_len, 2u);
    EXPECT_EQ(v.state(), VCpuState::Ready);
}

TEST_F(VCpuTest, InjectBeforeBindIsAllowed) {
    VCpu<SimHal> v(hal, 0, 0, {});
    EXPECT_EQ(v.inject_interrupt(33), VCpuError::None);
    EXPECT_EQ(hal.injected_len, 1u);
}

TEST_F(VCpuTest, IrqExitIsExternalInterruptWithTheFetchedVector) {
    VCpu<SimHal> v = ready();
    hal.push_exit(ScriptedExit{ExceptionType::Irq, {0, 0, 0}, 30});
    const VCpuRunResult r = v.run();
    EXPECT_EQ(r.type, ExceptionType::Irq);
    ASSERT_EQ(r.reason.kind, ExitKind::ExternalInterrupt);
    EXPECT_EQ(r.reason.external_interrupt.vector, 30u);
    EXPECT_EQ(v.state(), VCpuState::Ready);
    EXPECT_EQ(v.context().exception_pc(), kEntry);
}

TEST_F(VCpuTest, FiqAndSErrorAreGuestExceptions) {
    VCpu<SimHal> v = ready();
    hal.push_exit(ScriptedExit{ExceptionType::Fiq, {0, 0, 0}, 1023});
    // SError: EC 0x2F, IL 1, ISS with IDS 0 and DFSC 0b010001.
    hal.push_exit(ScriptedExit{ExceptionType::SError, {0xBE000011, 0, 0}, 1023});
    VCpuRunResult r = v.run();
    EXPECT_EQ(r.type, ExceptionType::Fiq);
    EXPECT_EQ(r.reason.kind, ExitKind::GuestException);
    r = v.run();
    EXPECT_EQ(r.type, ExceptionType::SError);
    ASSERT_EQ(r.reason.kind, ExitKind::GuestException);
    EXPECT_EQ(r.reason.guest_exception.ec, 0x2Fu);
    EXPECT_EQ(r.reason.guest_exception.iss, 0x11u);
    EXPECT_EQ(v.state(), VCpuState::Ready);
}

TEST_F(VCpuTest, ExhaustedScriptIsAnUnknownException) {
    VCpu<SimHal> v = ready();
    const VCpuRunResult r = v.run();
    ASSERT_EQ(r.reason.kind, ExitKind::GuestException);
    EXPECT_EQ(r.reason.guest_exception.ec, 0u);
}

// ------------------------------------------------------------ MMIO round trip

TEST_F(VCpuTest, MmioReadRoundTrip) {
    VCpu<SimHal> v = ready();
    // LDRSH X4, [Xn] at IPA 0x0900'0002: ISV 1, SAS 0b01, SSE 1, SRT 4, SF 1,
    // DFSC translation level 3; EC 0x24, IL 1.
    const std::uint64_t esr = (0x24ull << 26) | (1ull << 25) | (1u << 24) | (1u << 22) |
                              (1u << 21) | (4u << 16) | (1u << 15) | 0b000111u;
    hal.push_exit(sync_exit(esr, 0xffff000000001002ull, 0x90000));
    const VCpuRunResult r = v.run();
    ASSERT_EQ(r.reason.kind, ExitKind::MmioRead);
    EXPECT_EQ(r.reason.mmio_read.addr, 0x09000002u);
    EXPECT_EQ(r.syndrome.far, 0xffff000000001002ull);
    EXPECT_EQ(r.syndrome.hpfar, 0x90000u);
    EXPECT_EQ(v.context().exception_pc(), kEntry + 4);
    complete_mmio_read(v.context(), r.reason.mmio_read, 0xabcd8000);
    EXPECT_EQ(v.context().gpr(4), 0xffffffffffff8000ull);
}

// ------------------------------------------------------------------- PSCI

TEST_F(VCpuTest, PsciThroughTheVCpuUsesTheSharedPowerState) {
    psci::VmPowerState power{};
    power.num_vcpus = 2;
    power.mpidr[0] = 0x80000000;
    power.mpidr[1] = 0x80000001;
    power.state[1] = static_cast<std::uint8_t>(psci::AffinityState::Off);

    SimHal hal1;
    VCpu<SimHal> boot(hal, 0, 0, {0x80000000, 0});
    VCpu<SimHal> second(hal1, 0, 1, {0x80000001, 0});
    boot.set_power_state(&power);
    second.set_power_state(&power);
    for (auto* v : {&boot, &second}) {
        ASSERT_EQ(v->setup({}), VCpuError::None);
        ASSERT_EQ(v->bind(), VCpuError::None);
    }

    // vCPU 0: CPU_ON(1, entry) over HVC.
    hal.push_exit(sync_exit(kEsrHvc));
    boot.set_gpr(0, 0xC4000003);
    boot.set_gpr(1, 1);
    boot.set_gpr(2, kEntry);
    VCpuRunResult r = boot.run();
    ASSERT_EQ(r.reason.kind, ExitKind::CpuUp);
    EXPECT_EQ(r.reason.cpu_up.entry_point, kEntry);
    EXPECT_EQ(boot.context().gpr(0), 0u);
    EXPECT_EQ(power.load(1), psci::AffinityState::OnPending);

    // vCPU 1 comes up, then calls CPU_OFF: its own entry goes Off.
    power.store(1, psci::AffinityState::On);
    hal1.push_exit(sync_exit(kEsrHvc));
    second.set_gpr(0, 0x84000002);
    r = second.run();
    EXPECT_EQ(r.reason.kind, ExitKind::CpuDown);
    EXPECT_EQ(power.load(1), psci::AffinityState::Off);
    EXPECT_EQ(power.load(0), psci::AffinityState::On);
}

// ----------------------------------------------------------- bind ordering

TEST(VCpuBindOrder, GuestContextIsWrittenInTheDocumentedOrder) {
    SeqHal hal;
    hal.regs[static_cast<unsigned>(SysReg::midr_el1)] = kMidr;
    VCpu<SeqHal> v(hal, 0, 0, {kMpidr, 0});
    ASSERT_EQ(v.setup({}), VCpuError::None);
    ASSERT_EQ(hal.write_log_len, 0u);
    ASSERT_EQ(v.bind(), VCpuError::None);

    // Every register of the guest context is written exactly once.
    unsigned guest_regs = 0;
#define ARMVCPU_X(field, name)                               \
    EXPECT_EQ(write_count(hal, SysReg::field), 1u) << #name; \
    ++guest_regs;
    ARMVCPU_GUEST_SYSREGS(ARMVCPU_X)
#undef ARMVCPU_X
    EXPECT_EQ(hal.write_log_len, guest_regs);

    // Translation state before SCTLR_EL1 (whose M bit may turn the MMU on).
    const unsigned sctlr = position(hal, SysReg::sctlr_el1);
    EXPECT_LT(position(hal, SysReg::ttbr0_el1), sctlr);
    EXPECT_LT(position(hal, SysReg::ttbr1_el1), sctlr);
    EXPECT_LT(position(hal, SysReg::tcr_el1), sctlr);
    EXPECT_LT(position(hal, SysReg::mair_el1), sctlr);
    EXPECT_LT(position(hal, SysReg::amair_el1), sctlr);
    // Each timer's compare value before its control register.
    EXPECT_LT(position(hal, SysReg::cntv_cval_el0), position(hal, SysReg::cntv_ctl_el0));
    EXPECT_LT(position(hal, SysReg::cntp_cval_el0), position(hal, SysReg::cntp_ctl_el0));
    // The virtual offset before any virtual timer state, CNTVOFF before CNTHCTL.
    EXPECT_LT(position(hal, SysReg::cntvoff_el2), position(hal, SysReg::cntv_ctl_el0));
    EXPECT_LT(position(hal, SysReg::cntvoff_el2), position(hal, SysReg::cnthctl_el2));
    // The stage-2 and trap controls last: VTCR, then VTTBR, then HCR_EL2.
    EXPECT_EQ(position(hal, SysReg::hcr_el2), hal.write_log_len - 1);
    EXPECT_EQ(position(hal, SysReg::vttbr_el2), hal.write_log_len - 2);
    EXPECT_LT(position(hal, SysReg::vtcr_el2), position(hal, SysReg::vttbr_el2));
    // Then one ISB, after every write.
    ASSERT_EQ(hal.isbs, 1u);
    EXPECT_EQ(hal.isb_at[0], hal.write_log_len);
    EXPECT_EQ(hal.isb_count, 1u);
}

TEST(VCpuBindOrder, WrittenValuesAreTheContexts) {
    SimHal hal;
    hal.regs[static_cast<unsigned>(SysReg::midr_el1)] = kMidr;
    VCpu<SimHal> v(hal, 0, 0, {kMpidr, 0});
    v.guest_system_regs().ttbr0_el1 = 0x40100000;
    v.guest_system_regs().cntv_cval_el0 = 0x1234567;
    ASSERT_EQ(v.setup({true}), VCpuError::None);
    ASSERT_EQ(v.bind(), VCpuError::None);
    EXPECT_EQ(hal.read_sysreg(SysReg::ttbr0_el1), 0x40100000u);
    EXPECT_EQ(hal.read_sysreg(SysReg::cntv_cval_el0), 0x1234567u);
    EXPECT_EQ(hal.read_sysreg(SysReg::hcr_el2), kGuestTraps | kHcrTwiBit);
    EXPECT_EQ(hal.read_sysreg(SysReg::sctlr_el1), 0x30D00800u);
    EXPECT_EQ(hal.read_sysreg(SysReg::cnthctl_el2), 0x3u);  // EL1PCTEN [0], EL1PCEN [1]
}

// ------------------------------------------------------------------- misc

TEST(VCpuStateName, EveryState) {
    EXPECT_STREQ(vcpu_state_name(VCpuState::Invalid), "Invalid");
    EXPECT_STREQ(vcpu_state_name(VCpuState::Created), "Created");
    EXPECT_STREQ(vcpu_state_name(VCpuState::Free), "Free");
    EXPECT_STREQ(vcpu_state_name(VCpuState::Ready), "Ready");
    EXPECT_STREQ(vcpu_state_name(VCpuState::Running), "Running");
    EXPECT_STREQ(vcpu_state_name(VCpuState::Blocked), "Blocked");
    EXPECT_EQ(vcpu_state_name(static_cast<VCpuState>(99)), nullptr);
}

namespace {
constexpr VCpuState halted_at_compile_time() {
    SimHal hal{};
    hal.regs[static_cast<unsigned>(SysReg::midr_el1)] = kMidr;
    hal.push_exit(sync_exit(kEsrWfi));
    VCpu<SimHal> v(hal, 0, 0, {});
    if (v.setup({true}) != VCpuError::None) return VCpuState::Invalid;
    if (v.bind() != VCpuError::None) return VCpuState::Invalid;
    if (v.run().reason.kind != ExitKind::Halt) return VCpuState::Invalid;
    return v.state();
}
}  // namespace

TEST(VCpuConstexpr, LifecycleIsAConstantExpression) {
    static_assert(halted_at_compile_time() == VCpuState::Blocked);
    SUCCEED();
}

// ------------------------------------------------- findings (see report)

// vcpu.hpp: "an Invalid vCPU refuses everything". set_gpr() has no state
// check, so it still succeeds and changes the context of an Invalid vCPU.
TEST(VCpuFindings, InvalidVcpuRefusesSetGpr) {
    SimHal hal;
    VCpu<SimHal> v(hal, 0, 0, {});
    ASSERT_EQ(v.run().error, VCpuError::BadState);
    ASSERT_EQ(v.state(), VCpuState::Invalid);
    EXPECT_EQ(v.set_gpr(1, 0x1234), VCpuError::BadState);
    EXPECT_EQ(v.context().gpr(1), 0u);
}

// guest_context.hpp: MIDR_EL1 and MPIDR_EL1 are "Read-only identification
// registers (a write is ignored)", and the firmware's FwHal ignores such
// writes; SimHal stores them, so host and firmware can disagree.
TEST(SimHalFindings, WritesToIdentificationRegistersAreIgnored) {
    SimHal hal;
    hal.regs[static_cast<unsigned>(SysReg::midr_el1)] = kMidr;
    hal.write_sysreg(SysReg::midr_el1, 0);
    hal.write_sysreg(SysReg::mpidr_el1, 0x5);
    EXPECT_EQ(hal.read_sysreg(SysReg::midr_el1), kMidr);
    EXPECT_EQ(hal.read_sysreg(SysReg::mpidr_el1), 0u);
}
