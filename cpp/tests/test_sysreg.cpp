// Golden encodings: typed in from the "Accessing <register>" tables of the Arm ARM
// (DDI 0487) and, for ICC_*, of the GICv3 specification (IHI 0069, chapter 12), never read
// from the table under test. ISS layout for EC 0x18: Arm ARM D17.2.37 "ESR_EL2", "ISS
// encoding for an exception from MSR, MRS, or System instruction execution in AArch64
// state": Op0 [21:20], Op2 [19:17], Op1 [16:14], CRn [13:10], Rt [9:5], CRm [4:1],
// Direction [0] (1 = MRS).
#include <gtest/gtest.h>

#include <cstdint>
#include <iterator>
#include <ostream>
#include <set>
#include <string>

#include "armvcpu/esr.hpp"
#include "armvcpu/sysreg.hpp"

using armvcpu::SysRegEncoding;

namespace {

struct Golden {
    const char* name;
    std::uint8_t op0, op1, crn, crm, op2;
    std::uint32_t key;  // the fields placed at their ISS positions by hand
};

constexpr Golden kGolden[] = {
    // Arm ARM, "Accessing MIDR_EL1": MRS <Xt>, MIDR_EL1 = op0 0b11, op1 0b000, CRn 0b0000,
    // CRm 0b0000, op2 0b000.
    {"MIDR_EL1", 3, 0, 0, 0, 0, 0x300000},
    // Arm ARM, "Accessing MPIDR_EL1": op2 0b101 -> 5 << 17.
    {"MPIDR_EL1", 3, 0, 0, 0, 5, 0x3A0000},
    // Arm ARM, "Accessing ID_AA64MMFR0_EL1": CRm 0b0111 -> 7 << 1.
    {"ID_AA64MMFR0_EL1", 3, 0, 0, 7, 0, 0x30000E},
    // Arm ARM, "Accessing SCTLR_EL1": CRn 0b0001 -> 1 << 10.
    {"SCTLR_EL1", 3, 0, 1, 0, 0, 0x300400},
    // Arm ARM, "Accessing CNTPCT_EL0": op1 0b011, CRn 0b1110, CRm 0b0000, op2 0b001.
    {"CNTPCT_EL0", 3, 3, 14, 0, 1, 0x32F800},
    // Arm ARM, "Accessing CNTV_CTL_EL0": op1 0b011, CRn 0b1110, CRm 0b0011, op2 0b001.
    {"CNTV_CTL_EL0", 3, 3, 14, 3, 1, 0x32F806},
    // IHI 0069, "Accessing ICC_SGI1R_EL1": MSR ICC_SGI1R_EL1, <Xt> = op0 0b11, op1 0b000,
    // CRn 0b1100, CRm 0b1011, op2 0b101.
    {"ICC_SGI1R_EL1", 3, 0, 12, 11, 5, 0x3A3016},
    // Arm ARM, "Accessing MDSCR_EL1": op0 0b10 (the debug space), CRm 0b0010, op2 0b010.
    {"MDSCR_EL1", 2, 0, 0, 2, 2, 0x240004},
};

// Every register the core promises to name (from the design brief).
constexpr const char* kRequired[] = {
    "SCTLR_EL1",        "ACTLR_EL1",        "CPACR_EL1",        "TTBR0_EL1",
    "TTBR1_EL1",        "TCR_EL1",          "ESR_EL1",          "FAR_EL1",
    "AFSR0_EL1",        "AFSR1_EL1",        "MAIR_EL1",         "AMAIR_EL1",
    "VBAR_EL1",         "CONTEXTIDR_EL1",   "TPIDR_EL0",        "TPIDR_EL1",
    "TPIDRRO_EL0",      "PAR_EL1",          "SP_EL0",           "ELR_EL1",
    "SPSR_EL1",         "CSSELR_EL1",       "CCSIDR_EL1",       "CLIDR_EL1",
    "CTR_EL0",          "DCZID_EL0",        "MDSCR_EL1",        "OSLAR_EL1",
    "OSLSR_EL1",        "OSDLR_EL1",        "DBGBVR0_EL1",      "DBGBVR15_EL1",
    "DBGBCR0_EL1",      "DBGBCR15_EL1",     "DBGWVR0_EL1",      "DBGWVR15_EL1",
    "DBGWCR0_EL1",      "DBGWCR15_EL1",     "PMCR_EL0",         "PMCNTENSET_EL0",
    "PMCNTENCLR_EL0",   "PMOVSCLR_EL0",     "PMSWINC_EL0",      "PMSELR_EL0",
    "PMCEID0_EL0",      "PMCEID1_EL0",      "PMCCNTR_EL0",      "PMXEVTYPER_EL0",
    "PMXEVCNTR_EL0",    "PMUSERENR_EL0",    "PMINTENSET_EL1",   "PMINTENCLR_EL1",
    "PMOVSSET_EL0",     "PMCCFILTR_EL0",    "MIDR_EL1",         "MPIDR_EL1",
    "REVIDR_EL1",       "ID_AA64PFR0_EL1",  "ID_AA64PFR1_EL1",  "ID_AA64ZFR0_EL1",
    "ID_AA64DFR0_EL1",  "ID_AA64DFR1_EL1",  "ID_AA64AFR0_EL1",  "ID_AA64AFR1_EL1",
    "ID_AA64ISAR0_EL1", "ID_AA64ISAR1_EL1", "ID_AA64ISAR2_EL1", "ID_AA64MMFR0_EL1",
    "ID_AA64MMFR1_EL1", "ID_AA64MMFR2_EL1", "ID_PFR0_EL1",      "ID_PFR1_EL1",
    "ID_DFR0_EL1",      "ID_AFR0_EL1",      "ID_ISAR0_EL1",     "ID_ISAR1_EL1",
    "ID_ISAR2_EL1",     "ID_ISAR3_EL1",     "ID_ISAR4_EL1",     "ID_ISAR5_EL1",
    "ID_MMFR0_EL1",     "ID_MMFR1_EL1",     "ID_MMFR2_EL1",     "ID_MMFR3_EL1",
    "ID_MMFR4_EL1",     "MVFR0_EL1",        "MVFR1_EL1",        "MVFR2_EL1",
    "CNTFRQ_EL0",       "CNTPCT_EL0",       "CNTVCT_EL0",       "CNTP_TVAL_EL0",
    "CNTP_CTL_EL0",     "CNTP_CVAL_EL0",    "CNTV_TVAL_EL0",    "CNTV_CTL_EL0",
    "CNTV_CVAL_EL0",    "CNTKCTL_EL1",      "ICC_PMR_EL1",      "ICC_IAR0_EL1",
    "ICC_IAR1_EL1",     "ICC_EOIR0_EL1",    "ICC_EOIR1_EL1",    "ICC_HPPIR0_EL1",
    "ICC_HPPIR1_EL1",   "ICC_BPR0_EL1",     "ICC_BPR1_EL1",     "ICC_DIR_EL1",
    "ICC_RPR_EL1",      "ICC_SGI1R_EL1",    "ICC_ASGI1R_EL1",   "ICC_SGI0R_EL1",
    "ICC_CTLR_EL1",     "ICC_SRE_EL1",      "ICC_IGRPEN0_EL1",  "ICC_IGRPEN1_EL1",
    "ICC_AP0R0_EL1",    "ICC_AP0R3_EL1",    "ICC_AP1R0_EL1",    "ICC_AP1R3_EL1",
};

constexpr bool streq(const char* a, const char* b) {
    for (; *a != '\0' && *a == *b; ++a, ++b) {
    }
    return *a == *b;
}

}  // namespace

namespace armvcpu {
// Readable failure messages: "{3, 0, 12, 11, 5}" rather than a byte dump.
void PrintTo(const SysRegEncoding& e, std::ostream* os) {
    *os << '{' << unsigned{e.op0} << ", " << unsigned{e.op1} << ", " << unsigned{e.crn} << ", "
        << unsigned{e.crm} << ", " << unsigned{e.op2} << '}';
}
}  // namespace armvcpu

// Both lookups must work where the firmware needs them: in constant expressions.
static_assert(streq(armvcpu::sysreg_name(0x3A3016), "ICC_SGI1R_EL1"));
static_assert(armvcpu::sysreg_name(0x3FFC1E) == nullptr);
static_assert([] {
    SysRegEncoding e{};
    return armvcpu::sysreg_lookup("icc_sgi1r_el1", e) && e == SysRegEncoding{3, 0, 12, 11, 5};
}());
static_assert(SysRegEncoding{3, 3, 14, 3, 1}.iss_key() == 0x32F806);
static_assert(SysRegEncoding::from_iss(0x32F8A7) == SysRegEncoding{3, 3, 14, 3, 1});

TEST(SysReg, IssKeyMaskCoversExactlyTheRegisterFields) {
    // Bits [21:10] and [4:1]; Rt [9:5] and Direction [0] belong to the access.
    EXPECT_EQ(SysRegEncoding::kIssKeyMask, 0x3FFC1Eu);
    EXPECT_EQ((SysRegEncoding{3, 7, 15, 15, 7}.iss_key()), 0x3FFC1Eu);
    EXPECT_EQ((SysRegEncoding{0, 0, 0, 0, 0}.iss_key()), 0u);
}

TEST(SysReg, GoldenEncodingsFromTheManual) {
    for (const Golden& g : kGolden) {
        SCOPED_TRACE(g.name);
        const SysRegEncoding want{g.op0, g.op1, g.crn, g.crm, g.op2};
        EXPECT_EQ(want.iss_key(), g.key);
        EXPECT_STREQ(armvcpu::sysreg_name(g.key), g.name);
        SysRegEncoding got{};
        ASSERT_TRUE(armvcpu::sysreg_lookup(g.name, got));
        EXPECT_EQ(got, want);
        EXPECT_EQ(SysRegEncoding::from_iss(g.key), want);
    }
}

TEST(SysReg, NamedConstantsMatchTheManual) {
    // Arm ARM, "Accessing CNTP_TVAL_EL0" / CNTP_CTL_EL0 / CNTP_CVAL_EL0: op1 0b011,
    // CRn 0b1110, CRm 0b0010, op2 0b000 / 0b001 / 0b010. The CNTV_* trio is CRm 0b0011.
    EXPECT_EQ(armvcpu::kCntpctEl0, (SysRegEncoding{3, 3, 14, 0, 1}));
    EXPECT_EQ(armvcpu::kCntpTvalEl0, (SysRegEncoding{3, 3, 14, 2, 0}));
    EXPECT_EQ(armvcpu::kCntpCtlEl0, (SysRegEncoding{3, 3, 14, 2, 1}));
    EXPECT_EQ(armvcpu::kCntpCvalEl0, (SysRegEncoding{3, 3, 14, 2, 2}));
    EXPECT_EQ(armvcpu::kCntvCtlEl0, (SysRegEncoding{3, 3, 14, 3, 1}));
    EXPECT_EQ(armvcpu::kCntvCvalEl0, (SysRegEncoding{3, 3, 14, 3, 2}));
    // IHI 0069: ICC_SGI1R_EL1, ICC_ASGI1R_EL1 and ICC_SGI0R_EL1 are op0 0b11, op1 0b000,
    // CRn 0b1100, CRm 0b1011 with op2 0b101, 0b110 and 0b111.
    EXPECT_EQ(armvcpu::kIccSgi1rEl1, (SysRegEncoding{3, 0, 12, 11, 5}));
    EXPECT_EQ(armvcpu::kIccAsgi1rEl1, (SysRegEncoding{3, 0, 12, 11, 6}));
    EXPECT_EQ(armvcpu::kIccSgi0rEl1, (SysRegEncoding{3, 0, 12, 11, 7}));
}

TEST(SysReg, TrappedMrsCntvCtl) {
    // mrs x5, cntv_ctl_el0 trapped to EL2: EC 0x18, IL 1, and the ISS built by hand:
    // Op0 3 << 20 | Op2 1 << 17 | Op1 3 << 14 | CRn 14 << 10 | Rt 5 << 5 | CRm 3 << 1 | 1.
    constexpr std::uint32_t iss =
        (3u << 20) | (1u << 17) | (3u << 14) | (14u << 10) | (5u << 5) | (3u << 1) | 1u;
    static_assert(iss == 0x32F8A7);
    const armvcpu::Esr esr{(0x18ull << 26) | (1ull << 25) | iss};
    ASSERT_EQ(esr.exception_class(), armvcpu::ExceptionClass::SysReg64);
    ASSERT_EQ(esr.iss(), iss);

    const std::uint32_t key = esr.iss() & 0x3FFC1E;
    EXPECT_EQ(key, 0x32F806u);
    EXPECT_STREQ(armvcpu::sysreg_name(key), "CNTV_CTL_EL0");
    // A raw ISS names the same register: Rt and Direction are masked off.
    EXPECT_STREQ(armvcpu::sysreg_name(esr.iss()), "CNTV_CTL_EL0");

    const SysRegEncoding e = SysRegEncoding::from_iss(esr.iss());
    EXPECT_EQ(e.op0, 3);
    EXPECT_EQ(e.op1, 3);
    EXPECT_EQ(e.crn, 14);
    EXPECT_EQ(e.crm, 3);
    EXPECT_EQ(e.op2, 1);
    EXPECT_EQ(e.iss_key(), key);
    EXPECT_EQ(e, armvcpu::kCntvCtlEl0);
}

TEST(SysReg, TrappedMsrSgi1r) {
    // msr icc_sgi1r_el1, x2: Direction 0 (write), Rt 2.
    constexpr std::uint32_t iss =
        (3u << 20) | (5u << 17) | (0u << 14) | (12u << 10) | (2u << 5) | (11u << 1) | 0u;
    static_assert(iss == 0x3A3056);
    EXPECT_STREQ(armvcpu::sysreg_name(iss & 0x3FFC1E), "ICC_SGI1R_EL1");
    EXPECT_EQ(SysRegEncoding::from_iss(iss), armvcpu::kIccSgi1rEl1);
}

TEST(SysReg, FromIssInvertsIssKeyForEveryRow) {
    for (const armvcpu::SysRegName& row : armvcpu::sysreg_table()) {
        SCOPED_TRACE(row.name);
        const std::uint32_t key = row.encoding.iss_key();
        EXPECT_EQ(key & ~0x3FFC1Eu, 0u);
        EXPECT_EQ(SysRegEncoding::from_iss(key), row.encoding);
        // Any Rt, either direction.
        EXPECT_EQ(SysRegEncoding::from_iss(key | (31u << 5) | 1u), row.encoding);
        EXPECT_STREQ(armvcpu::sysreg_name(key), row.name);
    }
}

TEST(SysReg, TableIsSortedWithUniqueKeysAndNames) {
    const armvcpu::SysRegTable table = armvcpu::sysreg_table();
    ASSERT_EQ(table.count, armvcpu::kSysRegCount);
    ASSERT_GE(table.count, std::size(kRequired));
    std::set<std::string> names;
    for (std::size_t i = 0; i < table.count; ++i) {
        const armvcpu::SysRegName& row = table.entries[i];
        ASSERT_NE(row.name, nullptr);
        if (i > 0) {
            EXPECT_LT(table.entries[i - 1].encoding.iss_key(), row.encoding.iss_key())
                << table.entries[i - 1].name << " / " << row.name;
        }
        // Upper-case ASCII, digits and '_', so case-insensitive lookup cannot collide.
        for (const char* p = row.name; *p != '\0'; ++p) {
            EXPECT_TRUE((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_')
                << row.name;
        }
        EXPECT_TRUE(names.insert(row.name).second) << "duplicate name " << row.name;
        EXPECT_TRUE(row.encoding.op0 == 2 || row.encoding.op0 == 3) << row.name;
    }
}

TEST(SysReg, EveryRequiredRegisterIsPresent) {
    for (const char* name : kRequired) {
        SCOPED_TRACE(name);
        SysRegEncoding e{};
        ASSERT_TRUE(armvcpu::sysreg_lookup(name, e));
        EXPECT_STREQ(armvcpu::sysreg_name(e), name);
    }
}

TEST(SysReg, LookupIgnoresCase) {
    SysRegEncoding upper{};
    SysRegEncoding lower{};
    SysRegEncoding mixed{};
    ASSERT_TRUE(armvcpu::sysreg_lookup("CNTV_CTL_EL0", upper));
    ASSERT_TRUE(armvcpu::sysreg_lookup("cntv_ctl_el0", lower));
    ASSERT_TRUE(armvcpu::sysreg_lookup("Cntv_Ctl_El0", mixed));
    EXPECT_EQ(upper, armvcpu::kCntvCtlEl0);
    EXPECT_EQ(lower, upper);
    EXPECT_EQ(mixed, upper);
}

TEST(SysReg, UnknownKeysHaveNoName) {
    EXPECT_EQ(armvcpu::sysreg_name(0u), nullptr);  // op0 0b00: not a register
    // HCR_EL2 (Arm ARM "Accessing HCR_EL2": 3, 4, 1, 1, 0): EL2 state, never a guest's.
    EXPECT_EQ(armvcpu::sysreg_name(SysRegEncoding{3, 4, 1, 1, 0}), nullptr);
    // ICC_SGI1R_EL1's neighbour with op2 0b100: no row (ICC_RPR_EL1 is 0b011).
    EXPECT_EQ(armvcpu::sysreg_name(SysRegEncoding{3, 0, 12, 11, 4}), nullptr);
    EXPECT_EQ(armvcpu::sysreg_name(0x3FFC1Eu), nullptr);  // S3_7_C15_C15_7: IMP DEF space
}

TEST(SysReg, UnknownNamesAreNotFound) {
    const SysRegEncoding sentinel{1, 2, 3, 4, 5};
    for (const char* name : {"", "NOT_A_REGISTER", "SCTLR_EL", "SCTLR_EL1X", "SCTLR_EL2",
                             "s3_0_c1_c0_0", " SCTLR_EL1"}) {
        SCOPED_TRACE(name);
        SysRegEncoding out = sentinel;
        EXPECT_FALSE(armvcpu::sysreg_lookup(name, out));
        EXPECT_EQ(out, sentinel);  // untouched
    }
    SysRegEncoding out = sentinel;
    EXPECT_FALSE(armvcpu::sysreg_lookup(nullptr, out));
    EXPECT_EQ(out, sentinel);
}
