#include <gtest/gtest.h>

#include "armvcpu/trap_frame.hpp"

using armvcpu::TrapFrame;

TEST(TrapFrame, SeedAccessors) {
    TrapFrame f{};
    f.set_gpr(5, 0x1234);
    EXPECT_EQ(f.gpr(5), 0x1234u);
    f.set_exception_pc(0x40000000);
    EXPECT_EQ(f.exception_pc(), 0x40000000u);
    EXPECT_EQ(f.elr, 0x40000000u);
    f.set_argument(99);
    EXPECT_EQ(f.gpr(0), 99u);
}

// Arm ARM C1.2.5: in load/store and MSR/MRS encodings, register number 31
// in the Rt position is XZR: reads give zero, writes are discarded.
TEST(TrapFrame, Register31IsZeroRegister) {
    TrapFrame f{};
    for (unsigned i = 0; i < 31; ++i) f.set_gpr(i, 0xffffffffffffffffull);
    f.set_gpr(31, 7);
    EXPECT_EQ(f.gpr(31), 0u);
    EXPECT_EQ(f.sp_el0, 0u) << "a write to register 31 must not spill into sp_el0";
}

TEST(TrapFrame, OutOfRangeIndexTouchesNothing) {
    TrapFrame f{};
    f.set_gpr(1000, 1);
    EXPECT_EQ(f.gpr(1000), 0u);
    EXPECT_EQ(f.sp_el0, 0u);
    EXPECT_EQ(f.elr, 0u);
    EXPECT_EQ(f.spsr, 0u);
}

TEST(TrapFrame, UsableInConstantExpressions) {
    constexpr auto f = [] {
        TrapFrame t{};
        t.set_gpr(30, 3);
        return t;
    }();
    static_assert(f.gpr(30) == 3);
    SUCCEED();
}
