// Golden syndromes: ESR_EL2 layout from Arm ARM D17.2.37 (EC [31:26],
// IL [25], ISS [24:0]) and the EC table there; the values for HVC/SMC/BRK
// are what QEMU reports for those instructions.
#include <gtest/gtest.h>

#include "armvcpu/esr.hpp"

using armvcpu::Esr;
using armvcpu::ExceptionClass;

TEST(Esr, Hvc64Immediate) {
    const Esr e{0x5a001234};  // HVC #0x1234 from AArch64
    EXPECT_EQ(e.ec(), 0x16);
    EXPECT_EQ(e.exception_class(), ExceptionClass::Hvc64);
    EXPECT_TRUE(e.il());
    EXPECT_EQ(e.instruction_length(), 4u);
    EXPECT_EQ(e.imm16(), 0x1234);
    EXPECT_EQ(e.iss(), 0x1234u);
}

TEST(Esr, ClassesFromTheManual) {
    EXPECT_EQ(Esr{0x5e000000}.exception_class(), ExceptionClass::Smc64);
    EXPECT_EQ(Esr{0x56000000}.exception_class(), ExceptionClass::Svc64);
    EXPECT_EQ(Esr{0xf2000000}.exception_class(), ExceptionClass::Brk64);
    EXPECT_EQ(Esr{0x92000000}.exception_class(), ExceptionClass::DataAbortLower);
    EXPECT_EQ(Esr{0x82000000}.exception_class(), ExceptionClass::InstrAbortLower);
    EXPECT_EQ(Esr{0x62000000}.exception_class(), ExceptionClass::SysReg64);
    EXPECT_EQ(Esr{0x06000000}.exception_class(), ExceptionClass::WfxTrap);
    EXPECT_EQ(Esr{0xbe000000}.exception_class(), ExceptionClass::SError);
    EXPECT_EQ(Esr{0x02000000}.exception_class(), ExceptionClass::Unknown);
}

TEST(Esr, SixteenBitInstructionLength) {
    const Esr e{0x4c000000};  // SVC from AArch32 T32 with IL = 0
    EXPECT_FALSE(e.il());
    EXPECT_EQ(e.instruction_length(), 2u);
}

TEST(Esr, Iss2IsAboveBit32) {
    const Esr e{0x0000'0abc'9200'0000ull};
    EXPECT_EQ(e.iss2(), 0xabcu);
    EXPECT_EQ(e.ec(), 0x24);
}

TEST(Esr, EveryDefinedClassHasAName) {
    unsigned named = 0;
    for (unsigned ec = 0; ec < 64; ++ec) {
        if (armvcpu::exception_class_name(static_cast<std::uint8_t>(ec)) != nullptr) ++named;
    }
    EXPECT_EQ(named, 44u);
    EXPECT_EQ(armvcpu::exception_class_name(0x02), nullptr);  // reserved
    EXPECT_STREQ(armvcpu::exception_class_name(0x16), "HVC64");
}
