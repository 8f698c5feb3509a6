// PerCpu<SimHal>: enabling and disabling virtualisation on one physical CPU
// (percpu.hpp). HCR_EL2 bit positions from the Arm ARM (DDI 0487), D17.2.48
// "HCR_EL2": VM [0], FMO [3], IMO [4], AMO [5], TWI [13], TSC [19], RW [31].
// VBAR_EL2 holds the EL2 vector base (2 KiB aligned, bits [10:0] RES0).
#include <gtest/gtest.h>

#include <cstdint>

#include "armvcpu/percpu.hpp"
#include "armvcpu/sim_hal.hpp"

using namespace armvcpu;

namespace {

constexpr std::uint64_t kVm = 1ull << 0;
constexpr std::uint64_t kFmo = 1ull << 3;
constexpr std::uint64_t kImo = 1ull << 4;
constexpr std::uint64_t kAmo = 1ull << 5;
constexpr std::uint64_t kTwi = 1ull << 13;
constexpr std::uint64_t kTsc = 1ull << 19;
constexpr std::uint64_t kRw = 1ull << 31;

constexpr std::uint64_t kOldVectors = 0x80001000;  // firmware's own, before enable
constexpr std::uint64_t kHypVectors = 0x80200800;

std::uint64_t reg(const SimHal& hal, SysReg r) { return hal.read_sysreg(r); }

}  // namespace

TEST(PerCpu, StartsDisabled) {
    SimHal hal;
    PerCpu<SimHal> cpu(hal, 2);
    EXPECT_EQ(cpu.cpu_id(), 2u);
    EXPECT_FALSE(cpu.is_enabled());
    EXPECT_EQ(cpu.saved_vbar(), 0u);
    EXPECT_EQ(cpu.current_vcpu, nullptr);
    EXPECT_EQ(hal.write_log_len, 0u);
}

TEST(PerCpu, IsPageAligned) {
    EXPECT_EQ(alignof(PerCpu<SimHal>), 4096u);
    SimHal hal;
    PerCpu<SimHal> cpu(hal, 0);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(&cpu) % 4096, 0u);
}

TEST(PerCpu, HardwareEnableSavesVbarInstallsVectorsAndTraps) {
    SimHal hal;
    hal.regs[static_cast<unsigned>(SysReg::vbar_el2)] = kOldVectors;
    PerCpu<SimHal> cpu(hal, 0);
    cpu.hardware_enable(kHypVectors);
    EXPECT_TRUE(cpu.is_enabled());
    EXPECT_EQ(cpu.saved_vbar(), kOldVectors);
    EXPECT_EQ(reg(hal, SysReg::vbar_el2), kHypVectors);
    const std::uint64_t hcr = reg(hal, SysReg::hcr_el2);
    EXPECT_NE(hcr & kVm, 0u);
    EXPECT_NE(hcr & kRw, 0u);
    EXPECT_NE(hcr & kImo, 0u);
    EXPECT_NE(hcr & kFmo, 0u);
    EXPECT_NE(hcr & kAmo, 0u);
    EXPECT_NE(hcr & kTsc, 0u);
    EXPECT_EQ(hcr, kVm | kFmo | kImo | kAmo | kTsc | kRw);
    EXPECT_EQ(hcr, 0x80080039u);
    EXPECT_EQ(hal.isb_count, 1u);
    // VBAR_EL2 before HCR_EL2, then the ISB.
    ASSERT_EQ(hal.write_log_len, 2u);
    EXPECT_EQ(hal.write_log[0], SysReg::vbar_el2);
    EXPECT_EQ(hal.write_log[1], SysReg::hcr_el2);
}

TEST(PerCpu, EnableTwiceKeepsTheFirstSavedVbar) {
    SimHal hal;
    hal.regs[static_cast<unsigned>(SysReg::vbar_el2)] = kOldVectors;
    PerCpu<SimHal> cpu(hal, 0);
    cpu.hardware_enable(kHypVectors);
    cpu.hardware_enable(0x80400000);
    EXPECT_EQ(cpu.saved_vbar(), kOldVectors);
    EXPECT_EQ(reg(hal, SysReg::vbar_el2), kHypVectors);
    EXPECT_EQ(hal.isb_count, 1u);
}

TEST(PerCpu, HardwareDisableRestoresVbarAndClearsOnlyVm) {
    SimHal hal;
    hal.regs[static_cast<unsigned>(SysReg::vbar_el2)] = kOldVectors;
    PerCpu<SimHal> cpu(hal, 0);
    cpu.hardware_enable(kHypVectors);
    // A vCPU's bind() has since added TWI.
    hal.write_sysreg(SysReg::hcr_el2, reg(hal, SysReg::hcr_el2) | kTwi);
    cpu.hardware_disable();
    EXPECT_FALSE(cpu.is_enabled());
    EXPECT_EQ(reg(hal, SysReg::vbar_el2), kOldVectors);
    EXPECT_EQ(reg(hal, SysReg::hcr_el2), kFmo | kImo | kAmo | kTwi | kTsc | kRw);
    EXPECT_EQ(reg(hal, SysReg::hcr_el2) & kVm, 0u);
    EXPECT_EQ(hal.isb_count, 2u);
}

TEST(PerCpu, DisableWhenDisabledDoesNothing) {
    SimHal hal;
    hal.regs[static_cast<unsigned>(SysReg::hcr_el2)] = kVm | kRw;
    hal.regs[static_cast<unsigned>(SysReg::vbar_el2)] = kOldVectors;
    PerCpu<SimHal> cpu(hal, 0);
    cpu.hardware_disable();
    EXPECT_EQ(reg(hal, SysReg::hcr_el2), kVm | kRw);
    EXPECT_EQ(reg(hal, SysReg::vbar_el2), kOldVectors);
    EXPECT_EQ(hal.write_log_len, 0u);
    EXPECT_EQ(hal.isb_count, 0u);
}

TEST(PerCpu, EnableAfterDisableSavesAgain) {
    SimHal hal;
    hal.regs[static_cast<unsigned>(SysReg::vbar_el2)] = kOldVectors;
    PerCpu<SimHal> cpu(hal, 0);
    cpu.hardware_enable(kHypVectors);
    cpu.hardware_disable();
    hal.regs[static_cast<unsigned>(SysReg::vbar_el2)] = 0x80003000;
    cpu.hardware_enable(kHypVectors);
    EXPECT_TRUE(cpu.is_enabled());
    EXPECT_EQ(cpu.saved_vbar(), 0x80003000u);
    EXPECT_NE(reg(hal, SysReg::hcr_el2) & kVm, 0u);
}

TEST(PerCpu, CurrentElIrqGoesToTheHalsHandler) {
    SimHal hal;
    PerCpu<SimHal> cpu(hal, 0);
    EXPECT_EQ(hal.irq_handled, 0u);
    cpu.handle_current_el_irq();
    EXPECT_EQ(hal.irq_handled, 1u);
    cpu.handle_current_el_irq();
    EXPECT_EQ(hal.irq_handled, 2u);
}

// Each CPU keeps its own state: enabling one does not enable another.
TEST(PerCpu, CpusAreIndependent) {
    SimHal hal0, hal1;
    hal0.regs[static_cast<unsigned>(SysReg::vbar_el2)] = 0x1000;
    hal1.regs[static_cast<unsigned>(SysReg::vbar_el2)] = 0x2000;
    PerCpu<SimHal> cpu0(hal0, 0);
    PerCpu<SimHal> cpu1(hal1, 1);
    cpu0.hardware_enable(kHypVectors);
    EXPECT_TRUE(cpu0.is_enabled());
    EXPECT_FALSE(cpu1.is_enabled());
    EXPECT_EQ(reg(hal1, SysReg::vbar_el2), 0x2000u);
    cpu1.hardware_enable(kHypVectors);
    EXPECT_EQ(cpu1.saved_vbar(), 0x2000u);
    EXPECT_EQ(cpu0.saved_vbar(), 0x1000u);
    cpu1.handle_current_el_irq();
    EXPECT_EQ(hal0.irq_handled, 0u);
    EXPECT_EQ(hal1.irq_handled, 1u);
}
