// Completing an emulated MMIO load (mmio.hpp). The expected register values
// follow the load instructions' pseudocode in the Arm ARM (DDI 0487), C6.2:
//  - LDRB/LDRH/LDR (W): the loaded data is zero-extended to the register
//    ("ZeroExtend(data, regsize)");
//  - LDRSB/LDRSH/LDRSW: sign-extended to the register ("SignExtend(data,
//    regsize)"), where regsize is 32 for a W register and 64 for an X one;
//  - a write to a W register zeroes bits [63:32] of the X register (B1.2.1);
//  - register number 31 in these encodings is XZR/WZR: the result is discarded.
// In the syndrome (D17.2.37, Data Abort ISS) SAS gives the access size, SSE the
// sign extension, SF = 1 a 64-bit register.
#include <gtest/gtest.h>

#include <cstdint>

#include "armvcpu/mmio.hpp"

using namespace armvcpu;

namespace {

constexpr exit::MmioRead load(std::uint32_t width, std::uint32_t reg, std::uint32_t reg_width,
                              std::uint32_t signed_ext) {
    return exit::MmioRead{0x09000000, width, reg, reg_width, signed_ext};
}

TrapFrame filled_frame() {
    TrapFrame f{};
    for (unsigned i = 0; i < TrapFrame::kNumGprs; ++i) f.set_gpr(i, 0xa5a5a5a500000000ull | i);
    f.sp_el0 = 0x5555555555555555ull;
    f.elr = 0x40000000;
    f.spsr = 0x3c5;
    return f;
}

}  // namespace

TEST(Mmio, WidthMaskCoversTheAccessBytes) {
    EXPECT_EQ(width_mask(1), 0xffull);
    EXPECT_EQ(width_mask(2), 0xffffull);
    EXPECT_EQ(width_mask(4), 0xffffffffull);
    EXPECT_EQ(width_mask(8), 0xffffffffffffffffull);
    EXPECT_EQ(width_mask(16), 0xffffffffffffffffull);  // wider than a register
}

// LDRB/LDRH/LDR Wt and LDR Xt: zero extension, truncated to the access size.
TEST(Mmio, UnsignedLoadsTruncateAndZeroExtend) {
    const std::uint64_t device = 0xfedcba9876543280ull;
    EXPECT_EQ(mmio_read_value(load(1, 0, 4, 0), device), 0x80u);
    EXPECT_EQ(mmio_read_value(load(1, 0, 8, 0), device), 0x80u);
    EXPECT_EQ(mmio_read_value(load(2, 0, 4, 0), device), 0x3280u);
    EXPECT_EQ(mmio_read_value(load(2, 0, 8, 0), device), 0x3280u);
    EXPECT_EQ(mmio_read_value(load(4, 0, 4, 0), device), 0x76543280u);
    EXPECT_EQ(mmio_read_value(load(4, 0, 8, 0), device), 0x76543280u);
    EXPECT_EQ(mmio_read_value(load(8, 0, 8, 0), device), 0xfedcba9876543280ull);
}

// LDRSB Xt: 0x80 is -128, SignExtend(0x80, 64).
TEST(Mmio, LdrsbIntoX) {
    EXPECT_EQ(mmio_read_value(load(1, 0, 8, 1), 0x80), 0xffffffffffffff80ull);
    EXPECT_EQ(mmio_read_value(load(1, 0, 8, 1), 0x7f), 0x7full);
    EXPECT_EQ(mmio_read_value(load(1, 0, 8, 1), 0xff), 0xffffffffffffffffull);
}

// LDRSB Wt: SignExtend(0x80, 32) = 0xffffff80, and the W write zeroes [63:32].
TEST(Mmio, LdrsbIntoW) {
    EXPECT_EQ(mmio_read_value(load(1, 0, 4, 1), 0x80), 0x00000000ffffff80ull);
    EXPECT_EQ(mmio_read_value(load(1, 0, 4, 1), 0x7f), 0x7full);
}

TEST(Mmio, LdrshIntoXAndW) {
    EXPECT_EQ(mmio_read_value(load(2, 0, 8, 1), 0x8000), 0xffffffffffff8000ull);
    EXPECT_EQ(mmio_read_value(load(2, 0, 4, 1), 0x8000), 0x00000000ffff8000ull);
    EXPECT_EQ(mmio_read_value(load(2, 0, 8, 1), 0x7fff), 0x7fffull);
}

// LDRSW exists only with an X destination.
TEST(Mmio, LdrswIntoX) {
    EXPECT_EQ(mmio_read_value(load(4, 0, 8, 1), 0x80000000), 0xffffffff80000000ull);
    EXPECT_EQ(mmio_read_value(load(4, 0, 8, 1), 0x7fffffff), 0x7fffffffull);
}

// The sign bit is the access's top bit, taken after truncation: bits the device
// returned above the access size play no part.
TEST(Mmio, SignExtensionUsesTheTruncatedValue) {
    EXPECT_EQ(mmio_read_value(load(1, 0, 8, 1), 0x17f), 0x7full);  // bit 8 dropped
    EXPECT_EQ(mmio_read_value(load(1, 0, 8, 1), 0xffffff7f), 0x7full);
    EXPECT_EQ(mmio_read_value(load(1, 0, 8, 1), 0x1ff), 0xffffffffffffffffull);
    EXPECT_EQ(mmio_read_value(load(2, 0, 4, 1), 0xabcd8001), 0xffff8001ull);
}

// A doubleword load has nothing to extend, SSE or not.
TEST(Mmio, Width8IsTheWholeValue) {
    EXPECT_EQ(mmio_read_value(load(8, 0, 8, 0), 0x8000000000000001ull), 0x8000000000000001ull);
    EXPECT_EQ(mmio_read_value(load(8, 0, 8, 1), 0x8000000000000001ull), 0x8000000000000001ull);
    EXPECT_EQ(mmio_read_value(load(8, 0, 8, 1), 0x0123456789abcdefull), 0x0123456789abcdefull);
}

TEST(Mmio, CompleteWritesOnlyRt) {
    TrapFrame f = filled_frame();
    const TrapFrame before = f;
    complete_mmio_read(f, load(1, 7, 8, 1), 0x80);
    EXPECT_EQ(f.gpr(7), 0xffffffffffffff80ull);
    for (unsigned i = 0; i < TrapFrame::kNumGprs; ++i) {
        if (i != 7) {
            EXPECT_EQ(f.gpr(i), before.gpr(i)) << "x" << i;
        }
    }
    EXPECT_EQ(f.sp_el0, before.sp_el0);
    EXPECT_EQ(f.elr, before.elr);
    EXPECT_EQ(f.spsr, before.spsr);
}

TEST(Mmio, CompleteIntoWZeroesTheUpperHalf) {
    TrapFrame f = filled_frame();
    ASSERT_NE(f.gpr(3) >> 32, 0u);
    complete_mmio_read(f, load(4, 3, 4, 0), 0xffffffff12345678ull);
    EXPECT_EQ(f.gpr(3), 0x12345678u);
}

TEST(Mmio, CompleteIntoX30) {
    TrapFrame f = filled_frame();
    complete_mmio_read(f, load(8, 30, 8, 0), 0x1122334455667788ull);
    EXPECT_EQ(f.gpr(30), 0x1122334455667788ull);
}

// Rt = 31 is XZR: the value is discarded, and in particular SP (which the
// number 31 names in other encodings) is not touched.
TEST(Mmio, CompleteIntoXzrDiscards) {
    TrapFrame f = filled_frame();
    const TrapFrame before = f;
    complete_mmio_read(f, load(8, 31, 8, 0), 0x1122334455667788ull);
    for (unsigned i = 0; i < TrapFrame::kNumGprs; ++i) EXPECT_EQ(f.gpr(i), before.gpr(i));
    EXPECT_EQ(f.gpr(31), 0u);
    EXPECT_EQ(f.sp_el0, before.sp_el0);
    EXPECT_EQ(f.elr, before.elr);
    EXPECT_EQ(f.spsr, before.spsr);
}

TEST(Mmio, IsConstexpr) {
    static_assert(mmio_read_value(load(1, 0, 8, 1), 0x80) == 0xffffffffffffff80ull);
    static_assert(mmio_read_value(load(1, 0, 4, 1), 0x80) == 0xffffff80ull);
    static_assert(mmio_read_value(load(2, 0, 8, 0), 0x18000) == 0x8000ull);
    constexpr std::uint64_t x5 = [] {
        TrapFrame f{};
        complete_mmio_read(f, load(2, 5, 8, 1), 0xfffe);
        return f.gpr(5);
    }();
    static_assert(x5 == 0xfffffffffffffffeull);
    SUCCEED();
}
