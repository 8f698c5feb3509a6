// System registers: the (op0, op1, CRn, CRm, op2) encoding of each AArch64 system
// register a guest OS touches, and its Arm name.
//
// A trapped MSR or MRS (EC 0x18) reports the encoding in ESR_EL2.ISS. Arm ARM (DDI 0487)
// D17.2.37 "ESR_EL2", "ISS encoding for an exception from MSR, MRS, or System instruction
// execution in AArch64 state": Op0 = ISS[21:20], Op2 = ISS[19:17], Op1 = ISS[16:14],
// CRn = ISS[13:10], Rt = ISS[9:5], CRm = ISS[4:1], Direction = ISS[0] (1 = read, MRS).
//
// The ISS with Rt and Direction masked off (iss & 0x3ffc1e) is the register's key. The
// SysRegRead/SysRegWrite exits carry it in their addr field, as the original arm_vcpu crate
// does, so the same number names a register in the exit record, in Python and here.
#pragma once

#include <cstddef>
#include <cstdint>

namespace armvcpu {

struct SysRegEncoding {
    std::uint8_t op0, op1, crn, crm, op2;

    // Field positions in the EC 0x18 ISS (see the top of this file).
    static constexpr unsigned kIssOp0Shift = 20;
    static constexpr unsigned kIssOp2Shift = 17;
    static constexpr unsigned kIssOp1Shift = 14;
    static constexpr unsigned kIssCrnShift = 10;
    static constexpr unsigned kIssCrmShift = 1;
    // Every bit of the ISS that belongs to the register rather than to the access.
    static constexpr std::uint32_t kIssKeyMask = 0x3ffc1e;

    // The fields at their ISS positions, i.e. what a trap of this register reports in
    // iss & kIssKeyMask. Each field is cut to its ISS width so that a stray value can
    // never spill into a neighbour.
    [[nodiscard]] constexpr std::uint32_t iss_key() const {
        return ((std::uint32_t{op0} & 0x3u) << kIssOp0Shift) |
               ((std::uint32_t{op2} & 0x7u) << kIssOp2Shift) |
               ((std::uint32_t{op1} & 0x7u) << kIssOp1Shift) |
               ((std::uint32_t{crn} & 0xfu) << kIssCrnShift) |
               ((std::uint32_t{crm} & 0xfu) << kIssCrmShift);
    }
    // The register a trapped MSR/MRS names. Rt and Direction are ignored, so a raw ISS and
    // an exit's key decode alike.
    [[nodiscard]] static constexpr SysRegEncoding from_iss(std::uint32_t iss) {
        return SysRegEncoding{static_cast<std::uint8_t>((iss >> kIssOp0Shift) & 0x3u),
                              static_cast<std::uint8_t>((iss >> kIssOp1Shift) & 0x7u),
                              static_cast<std::uint8_t>((iss >> kIssCrnShift) & 0xfu),
                              static_cast<std::uint8_t>((iss >> kIssCrmShift) & 0xfu),
                              static_cast<std::uint8_t>((iss >> kIssOp2Shift) & 0x7u)};
    }

    friend constexpr bool operator==(const SysRegEncoding&, const SysRegEncoding&) = default;
};

static_assert(SysRegEncoding{3, 7, 15, 15, 7}.iss_key() == SysRegEncoding::kIssKeyMask);

struct SysRegName {
    SysRegEncoding encoding;
    const char* name;  // upper case, as the Arm ARM spells it
};

// Every register a guest OS is expected to touch from EL0/EL1: the VMSA and exception
// registers, cache identification, self-hosted debug (all 16 breakpoint and watchpoint
// pairs), PMUv3 (all 31 event counters), the ID registers, the generic timer and the GICv3
// CPU interface. Sorted by iss_key() so that sysreg_name() can binary-search it.
//
// Derived from the GNU assembler's encodings, not typed in: each name was assembled with
// binutils 2.40 (aarch64-linux-gnu-as --fatal-warnings -march=armv9.1-a+sve+sme+memtag) as
// `mrs x0, <name>`, or `msr <name>, x0` for the write-only registers (so the assembler also
// vouches for the access direction), and the fields were read back from the MRS/MSR word
// (Arm ARM C5.2 / C6.2 "MRS": op0 = [20:19], op1 = [18:16], CRn = [15:12], CRm = [11:8],
// op2 = [7:5]). Every row was then re-derived with LLVM's assembler (llvm-mc 14), which
// agrees, and the registers in cpp/tests/test_sysreg.cpp were checked against the "Accessing
// <register>" tables of the Arm ARM and the GICv3 specification (IHI 0069). The trailing
// comment on each row is its key.
inline constexpr SysRegName kSysRegTable[] = {
    {{2, 0, 0, 2, 0}, "MDCCINT_EL1"},         // 0x200004
    {{2, 0, 1, 0, 0}, "MDRAR_EL1"},           // 0x200400
    {{2, 3, 0, 1, 0}, "MDCCSR_EL0"},          // 0x20c002
    {{2, 0, 0, 2, 2}, "MDSCR_EL1"},           // 0x240004
    {{2, 0, 0, 6, 2}, "OSECCR_EL1"},          // 0x24000c
    {{2, 0, 0, 0, 4}, "DBGBVR0_EL1"},         // 0x280000
    {{2, 0, 0, 1, 4}, "DBGBVR1_EL1"},         // 0x280002
    {{2, 0, 0, 2, 4}, "DBGBVR2_EL1"},         // 0x280004
    {{2, 0, 0, 3, 4}, "DBGBVR3_EL1"},         // 0x280006
    {{2, 0, 0, 4, 4}, "DBGBVR4_EL1"},         // 0x280008
    {{2, 0, 0, 5, 4}, "DBGBVR5_EL1"},         // 0x28000a
    {{2, 0, 0, 6, 4}, "DBGBVR6_EL1"},         // 0x28000c
    {{2, 0, 0, 7, 4}, "DBGBVR7_EL1"},         // 0x28000e
    {{2, 0, 0, 8, 4}, "DBGBVR8_EL1"},         // 0x280010
    {{2, 0, 0, 9, 4}, "DBGBVR9_EL1"},         // 0x280012
    {{2, 0, 0, 10, 4}, "DBGBVR10_EL1"},       // 0x280014
    {{2, 0, 0, 11, 4}, "DBGBVR11_EL1"},       // 0x280016
    {{2, 0, 0, 12, 4}, "DBGBVR12_EL1"},       // 0x280018
    {{2, 0, 0, 13, 4}, "DBGBVR13_EL1"},       // 0x28001a
    {{2, 0, 0, 14, 4}, "DBGBVR14_EL1"},       // 0x28001c
    {{2, 0, 0, 15, 4}, "DBGBVR15_EL1"},       // 0x28001e
    {{2, 0, 1, 0, 4}, "OSLAR_EL1"},           // 0x280400
    {{2, 0, 1, 1, 4}, "OSLSR_EL1"},           // 0x280402
    {{2, 0, 1, 3, 4}, "OSDLR_EL1"},           // 0x280406
    {{2, 0, 1, 4, 4}, "DBGPRCR_EL1"},         // 0x280408
    {{2, 0, 0, 0, 5}, "DBGBCR0_EL1"},         // 0x2a0000
    {{2, 0, 0, 1, 5}, "DBGBCR1_EL1"},         // 0x2a0002
    {{2, 0, 0, 2, 5}, "DBGBCR2_EL1"},         // 0x2a0004
    {{2, 0, 0, 3, 5}, "DBGBCR3_EL1"},         // 0x2a0006
    {{2, 0, 0, 4, 5}, "DBGBCR4_EL1"},         // 0x2a0008
    {{2, 0, 0, 5, 5}, "DBGBCR5_EL1"},         // 0x2a000a
    {{2, 0, 0, 6, 5}, "DBGBCR6_EL1"},         // 0x2a000c
    {{2, 0, 0, 7, 5}, "DBGBCR7_EL1"},         // 0x2a000e
    {{2, 0, 0, 8, 5}, "DBGBCR8_EL1"},         // 0x2a0010
    {{2, 0, 0, 9, 5}, "DBGBCR9_EL1"},         // 0x2a0012
    {{2, 0, 0, 10, 5}, "DBGBCR10_EL1"},       // 0x2a0014
    {{2, 0, 0, 11, 5}, "DBGBCR11_EL1"},       // 0x2a0016
    {{2, 0, 0, 12, 5}, "DBGBCR12_EL1"},       // 0x2a0018
    {{2, 0, 0, 13, 5}, "DBGBCR13_EL1"},       // 0x2a001a
    {{2, 0, 0, 14, 5}, "DBGBCR14_EL1"},       // 0x2a001c
    {{2, 0, 0, 15, 5}, "DBGBCR15_EL1"},       // 0x2a001e
    {{2, 0, 0, 0, 6}, "DBGWVR0_EL1"},         // 0x2c0000
    {{2, 0, 0, 1, 6}, "DBGWVR1_EL1"},         // 0x2c0002
    {{2, 0, 0, 2, 6}, "DBGWVR2_EL1"},         // 0x2c0004
    {{2, 0, 0, 3, 6}, "DBGWVR3_EL1"},         // 0x2c0006
    {{2, 0, 0, 4, 6}, "DBGWVR4_EL1"},         // 0x2c0008
    {{2, 0, 0, 5, 6}, "DBGWVR5_EL1"},         // 0x2c000a
    {{2, 0, 0, 6, 6}, "DBGWVR6_EL1"},         // 0x2c000c
    {{2, 0, 0, 7, 6}, "DBGWVR7_EL1"},         // 0x2c000e
    {{2, 0, 0, 8, 6}, "DBGWVR8_EL1"},         // 0x2c0010
    {{2, 0, 0, 9, 6}, "DBGWVR9_EL1"},         // 0x2c0012
    {{2, 0, 0, 10, 6}, "DBGWVR10_EL1"},       // 0x2c0014
    {{2, 0, 0, 11, 6}, "DBGWVR11_EL1"},       // 0x2c0016
    {{2, 0, 0, 12, 6}, "DBGWVR12_EL1"},       // 0x2c0018
    {{2, 0, 0, 13, 6}, "DBGWVR13_EL1"},       // 0x2c001a
    {{2, 0, 0, 14, 6}, "DBGWVR14_EL1"},       // 0x2c001c
    {{2, 0, 0, 15, 6}, "DBGWVR15_EL1"},       // 0x2c001e
    {{2, 0, 7, 8, 6}, "DBGCLAIMSET_EL1"},     // 0x2c1c10
    {{2, 0, 7, 9, 6}, "DBGCLAIMCLR_EL1"},     // 0x2c1c12
    {{2, 0, 7, 14, 6}, "DBGAUTHSTATUS_EL1"},  // 0x2c1c1c
    {{2, 0, 0, 0, 7}, "DBGWCR0_EL1"},         // 0x2e0000
    {{2, 0, 0, 1, 7}, "DBGWCR1_EL1"},         // 0x2e0002
    {{2, 0, 0, 2, 7}, "DBGWCR2_EL1"},         // 0x2e0004
    {{2, 0, 0, 3, 7}, "DBGWCR3_EL1"},         // 0x2e0006
    {{2, 0, 0, 4, 7}, "DBGWCR4_EL1"},         // 0x2e0008
    {{2, 0, 0, 5, 7}, "DBGWCR5_EL1"},         // 0x2e000a
    {{2, 0, 0, 6, 7}, "DBGWCR6_EL1"},         // 0x2e000c
    {{2, 0, 0, 7, 7}, "DBGWCR7_EL1"},         // 0x2e000e
    {{2, 0, 0, 8, 7}, "DBGWCR8_EL1"},         // 0x2e0010
    {{2, 0, 0, 9, 7}, "DBGWCR9_EL1"},         // 0x2e0012
    {{2, 0, 0, 10, 7}, "DBGWCR10_EL1"},       // 0x2e0014
    {{2, 0, 0, 11, 7}, "DBGWCR11_EL1"},       // 0x2e0016
    {{2, 0, 0, 12, 7}, "DBGWCR12_EL1"},       // 0x2e0018
    {{2, 0, 0, 13, 7}, "DBGWCR13_EL1"},       // 0x2e001a
    {{2, 0, 0, 14, 7}, "DBGWCR14_EL1"},       // 0x2e001c
    {{2, 0, 0, 15, 7}, "DBGWCR15_EL1"},       // 0x2e001e
    {{3, 0, 0, 0, 0}, "MIDR_EL1"},            // 0x300000
    {{3, 0, 0, 1, 0}, "ID_PFR0_EL1"},         // 0x300002
    {{3, 0, 0, 2, 0}, "ID_ISAR0_EL1"},        // 0x300004
    {{3, 0, 0, 3, 0}, "MVFR0_EL1"},           // 0x300006
    {{3, 0, 0, 4, 0}, "ID_AA64PFR0_EL1"},     // 0x300008
    {{3, 0, 0, 5, 0}, "ID_AA64DFR0_EL1"},     // 0x30000a
    {{3, 0, 0, 6, 0}, "ID_AA64ISAR0_EL1"},    // 0x30000c
    {{3, 0, 0, 7, 0}, "ID_AA64MMFR0_EL1"},    // 0x30000e
    {{3, 0, 1, 0, 0}, "SCTLR_EL1"},           // 0x300400
    {{3, 0, 1, 2, 0}, "ZCR_EL1"},             // 0x300404
    {{3, 0, 2, 0, 0}, "TTBR0_EL1"},           // 0x300800
    {{3, 0, 4, 0, 0}, "SPSR_EL1"},            // 0x301000
    {{3, 0, 4, 1, 0}, "SP_EL0"},              // 0x301002
    {{3, 0, 4, 2, 0}, "SPSEL"},               // 0x301004
    {{3, 0, 4, 6, 0}, "ICC_PMR_EL1"},         // 0x30100c
    {{3, 0, 5, 1, 0}, "AFSR0_EL1"},           // 0x301402
    {{3, 0, 5, 2, 0}, "ESR_EL1"},             // 0x301404
    {{3, 0, 6, 0, 0}, "FAR_EL1"},             // 0x301800
    {{3, 0, 7, 4, 0}, "PAR_EL1"},             // 0x301c08
    {{3, 0, 10, 2, 0}, "MAIR_EL1"},           // 0x302804
    {{3, 0, 10, 3, 0}, "AMAIR_EL1"},          // 0x302806
    {{3, 0, 12, 0, 0}, "VBAR_EL1"},           // 0x303000
    {{3, 0, 12, 1, 0}, "ISR_EL1"},            // 0x303002
    {{3, 0, 12, 8, 0}, "ICC_IAR0_EL1"},       // 0x303010
    {{3, 0, 12, 9, 0}, "ICC_AP1R0_EL1"},      // 0x303012
    {{3, 0, 12, 12, 0}, "ICC_IAR1_EL1"},      // 0x303018
    {{3, 0, 14, 1, 0}, "CNTKCTL_EL1"},        // 0x303802
    {{3, 1, 0, 0, 0}, "CCSIDR_EL1"},          // 0x304000
    {{3, 2, 0, 0, 0}, "CSSELR_EL1"},          // 0x308000
    {{3, 3, 4, 2, 0}, "NZCV"},                // 0x30d004
    {{3, 3, 4, 4, 0}, "FPCR"},                // 0x30d008
    {{3, 3, 9, 12, 0}, "PMCR_EL0"},           // 0x30e418
    {{3, 3, 9, 13, 0}, "PMCCNTR_EL0"},        // 0x30e41a
    {{3, 3, 9, 14, 0}, "PMUSERENR_EL0"},      // 0x30e41c
    {{3, 3, 14, 0, 0}, "CNTFRQ_EL0"},         // 0x30f800
    {{3, 3, 14, 2, 0}, "CNTP_TVAL_EL0"},      // 0x30f804
    {{3, 3, 14, 3, 0}, "CNTV_TVAL_EL0"},      // 0x30f806
    {{3, 3, 14, 8, 0}, "PMEVCNTR0_EL0"},      // 0x30f810
    {{3, 3, 14, 9, 0}, "PMEVCNTR8_EL0"},      // 0x30f812
    {{3, 3, 14, 10, 0}, "PMEVCNTR16_EL0"},    // 0x30f814
    {{3, 3, 14, 11, 0}, "PMEVCNTR24_EL0"},    // 0x30f816
    {{3, 3, 14, 12, 0}, "PMEVTYPER0_EL0"},    // 0x30f818
    {{3, 3, 14, 13, 0}, "PMEVTYPER8_EL0"},    // 0x30f81a
    {{3, 3, 14, 14, 0}, "PMEVTYPER16_EL0"},   // 0x30f81c
    {{3, 3, 14, 15, 0}, "PMEVTYPER24_EL0"},   // 0x30f81e
    {{3, 0, 0, 1, 1}, "ID_PFR1_EL1"},         // 0x320002
    {{3, 0, 0, 2, 1}, "ID_ISAR1_EL1"},        // 0x320004
    {{3, 0, 0, 3, 1}, "MVFR1_EL1"},           // 0x320006
    {{3, 0, 0, 4, 1}, "ID_AA64PFR1_EL1"},     // 0x320008
    {{3, 0, 0, 5, 1}, "ID_AA64DFR1_EL1"},     // 0x32000a
    {{3, 0, 0, 6, 1}, "ID_AA64ISAR1_EL1"},    // 0x32000c
    {{3, 0, 0, 7, 1}, "ID_AA64MMFR1_EL1"},    // 0x32000e
    {{3, 0, 1, 0, 1}, "ACTLR_EL1"},           // 0x320400
    {{3, 0, 2, 0, 1}, "TTBR1_EL1"},           // 0x320800
    {{3, 0, 4, 0, 1}, "ELR_EL1"},             // 0x321000
    {{3, 0, 5, 1, 1}, "AFSR1_EL1"},           // 0x321402
    {{3, 0, 9, 14, 1}, "PMINTENSET_EL1"},     // 0x32241c
    {{3, 0, 12, 8, 1}, "ICC_EOIR0_EL1"},      // 0x323010
    {{3, 0, 12, 9, 1}, "ICC_AP1R1_EL1"},      // 0x323012
    {{3, 0, 12, 11, 1}, "ICC_DIR_EL1"},       // 0x323016
    {{3, 0, 12, 12, 1}, "ICC_EOIR1_EL1"},     // 0x323018
    {{3, 0, 13, 0, 1}, "CONTEXTIDR_EL1"},     // 0x323400
    {{3, 1, 0, 0, 1}, "CLIDR_EL1"},           // 0x324000
    {{3, 3, 0, 0, 1}, "CTR_EL0"},             // 0x32c000
    {{3, 3, 4, 2, 1}, "DAIF"},                // 0x32d004
    {{3, 3, 4, 4, 1}, "FPSR"},                // 0x32d008
    {{3, 3, 9, 12, 1}, "PMCNTENSET_EL0"},     // 0x32e418
    {{3, 3, 9, 13, 1}, "PMXEVTYPER_EL0"},     // 0x32e41a
    {{3, 3, 14, 0, 1}, "CNTPCT_EL0"},         // 0x32f800
    {{3, 3, 14, 2, 1}, "CNTP_CTL_EL0"},       // 0x32f804
    {{3, 3, 14, 3, 1}, "CNTV_CTL_EL0"},       // 0x32f806
    {{3, 3, 14, 8, 1}, "PMEVCNTR1_EL0"},      // 0x32f810
    {{3, 3, 14, 9, 1}, "PMEVCNTR9_EL0"},      // 0x32f812
    {{3, 3, 14, 10, 1}, "PMEVCNTR17_EL0"},    // 0x32f814
    {{3, 3, 14, 11, 1}, "PMEVCNTR25_EL0"},    // 0x32f816
    {{3, 3, 14, 12, 1}, "PMEVTYPER1_EL0"},    // 0x32f818
    {{3, 3, 14, 13, 1}, "PMEVTYPER9_EL0"},    // 0x32f81a
    {{3, 3, 14, 14, 1}, "PMEVTYPER17_EL0"},   // 0x32f81c
    {{3, 3, 14, 15, 1}, "PMEVTYPER25_EL0"},   // 0x32f81e
    {{3, 0, 0, 1, 2}, "ID_DFR0_EL1"},         // 0x340002
    {{3, 0, 0, 2, 2}, "ID_ISAR2_EL1"},        // 0x340004
    {{3, 0, 0, 3, 2}, "MVFR2_EL1"},           // 0x340006
    {{3, 0, 0, 6, 2}, "ID_AA64ISAR2_EL1"},    // 0x34000c
    {{3, 0, 0, 7, 2}, "ID_AA64MMFR2_EL1"},    // 0x34000e
    {{3, 0, 1, 0, 2}, "CPACR_EL1"},           // 0x340400
    {{3, 0, 2, 0, 2}, "TCR_EL1"},             // 0x340800
    {{3, 0, 4, 2, 2}, "CURRENTEL"},           // 0x341004
    {{3, 0, 9, 14, 2}, "PMINTENCLR_EL1"},     // 0x34241c
    {{3, 0, 12, 8, 2}, "ICC_HPPIR0_EL1"},     // 0x343010
    {{3, 0, 12, 9, 2}, "ICC_AP1R2_EL1"},      // 0x343012
    {{3, 0, 12, 12, 2}, "ICC_HPPIR1_EL1"},    // 0x343018
    {{3, 3, 9, 12, 2}, "PMCNTENCLR_EL0"},     // 0x34e418
    {{3, 3, 9, 13, 2}, "PMXEVCNTR_EL0"},      // 0x34e41a
    {{3, 3, 13, 0, 2}, "TPIDR_EL0"},          // 0x34f400
    {{3, 3, 14, 0, 2}, "CNTVCT_EL0"},         // 0x34f800
    {{3, 3, 14, 2, 2}, "CNTP_CVAL_EL0"},      // 0x34f804
    {{3, 3, 14, 3, 2}, "CNTV_CVAL_EL0"},      // 0x34f806
    {{3, 3, 14, 8, 2}, "PMEVCNTR2_EL0"},      // 0x34f810
    {{3, 3, 14, 9, 2}, "PMEVCNTR10_EL0"},     // 0x34f812
    {{3, 3, 14, 10, 2}, "PMEVCNTR18_EL0"},    // 0x34f814
    {{3, 3, 14, 11, 2}, "PMEVCNTR26_EL0"},    // 0x34f816
    {{3, 3, 14, 12, 2}, "PMEVTYPER2_EL0"},    // 0x34f818
    {{3, 3, 14, 13, 2}, "PMEVTYPER10_EL0"},   // 0x34f81a
    {{3, 3, 14, 14, 2}, "PMEVTYPER18_EL0"},   // 0x34f81c
    {{3, 3, 14, 15, 2}, "PMEVTYPER26_EL0"},   // 0x34f81e
    {{3, 0, 0, 1, 3}, "ID_AFR0_EL1"},         // 0x360002
    {{3, 0, 0, 2, 3}, "ID_ISAR3_EL1"},        // 0x360004
    {{3, 0, 12, 8, 3}, "ICC_BPR0_EL1"},       // 0x363010
    {{3, 0, 12, 9, 3}, "ICC_AP1R3_EL1"},      // 0x363012
    {{3, 0, 12, 11, 3}, "ICC_RPR_EL1"},       // 0x363016
    {{3, 0, 12, 12, 3}, "ICC_BPR1_EL1"},      // 0x363018
    {{3, 3, 9, 12, 3}, "PMOVSCLR_EL0"},       // 0x36e418
    {{3, 3, 9, 14, 3}, "PMOVSSET_EL0"},       // 0x36e41c
    {{3, 3, 13, 0, 3}, "TPIDRRO_EL0"},        // 0x36f400
    {{3, 3, 14, 8, 3}, "PMEVCNTR3_EL0"},      // 0x36f810
    {{3, 3, 14, 9, 3}, "PMEVCNTR11_EL0"},     // 0x36f812
    {{3, 3, 14, 10, 3}, "PMEVCNTR19_EL0"},    // 0x36f814
    {{3, 3, 14, 11, 3}, "PMEVCNTR27_EL0"},    // 0x36f816
    {{3, 3, 14, 12, 3}, "PMEVTYPER3_EL0"},    // 0x36f818
    {{3, 3, 14, 13, 3}, "PMEVTYPER11_EL0"},   // 0x36f81a
    {{3, 3, 14, 14, 3}, "PMEVTYPER19_EL0"},   // 0x36f81c
    {{3, 3, 14, 15, 3}, "PMEVTYPER27_EL0"},   // 0x36f81e
    {{3, 0, 0, 1, 4}, "ID_MMFR0_EL1"},        // 0x380002
    {{3, 0, 0, 2, 4}, "ID_ISAR4_EL1"},        // 0x380004
    {{3, 0, 0, 3, 4}, "ID_PFR2_EL1"},         // 0x380006
    {{3, 0, 0, 4, 4}, "ID_AA64ZFR0_EL1"},     // 0x380008
    {{3, 0, 0, 5, 4}, "ID_AA64AFR0_EL1"},     // 0x38000a
    {{3, 0, 12, 8, 4}, "ICC_AP0R0_EL1"},      // 0x383010
    {{3, 0, 12, 12, 4}, "ICC_CTLR_EL1"},      // 0x383018
    {{3, 0, 13, 0, 4}, "TPIDR_EL1"},          // 0x383400
    {{3, 3, 9, 12, 4}, "PMSWINC_EL0"},        // 0x38e418
    {{3, 3, 14, 8, 4}, "PMEVCNTR4_EL0"},      // 0x38f810
    {{3, 3, 14, 9, 4}, "PMEVCNTR12_EL0"},     // 0x38f812
    {{3, 3, 14, 10, 4}, "PMEVCNTR20_EL0"},    // 0x38f814
    {{3, 3, 14, 11, 4}, "PMEVCNTR28_EL0"},    // 0x38f816
    {{3, 3, 14, 12, 4}, "PMEVTYPER4_EL0"},    // 0x38f818
    {{3, 3, 14, 13, 4}, "PMEVTYPER12_EL0"},   // 0x38f81a
    {{3, 3, 14, 14, 4}, "PMEVTYPER20_EL0"},   // 0x38f81c
    {{3, 3, 14, 15, 4}, "PMEVTYPER28_EL0"},   // 0x38f81e
    {{3, 0, 0, 0, 5}, "MPIDR_EL1"},           // 0x3a0000
    {{3, 0, 0, 1, 5}, "ID_MMFR1_EL1"},        // 0x3a0002
    {{3, 0, 0, 2, 5}, "ID_ISAR5_EL1"},        // 0x3a0004
    {{3, 0, 0, 3, 5}, "ID_DFR1_EL1"},         // 0x3a0006
    {{3, 0, 0, 4, 5}, "ID_AA64SMFR0_EL1"},    // 0x3a0008
    {{3, 0, 0, 5, 5}, "ID_AA64AFR1_EL1"},     // 0x3a000a
    {{3, 0, 12, 8, 5}, "ICC_AP0R1_EL1"},      // 0x3a3010
    {{3, 0, 12, 11, 5}, "ICC_SGI1R_EL1"},     // 0x3a3016
    {{3, 0, 12, 12, 5}, "ICC_SRE_EL1"},       // 0x3a3018
    {{3, 3, 9, 12, 5}, "PMSELR_EL0"},         // 0x3ae418
    {{3, 3, 14, 0, 5}, "CNTPCTSS_EL0"},       // 0x3af800
    {{3, 3, 14, 8, 5}, "PMEVCNTR5_EL0"},      // 0x3af810
    {{3, 3, 14, 9, 5}, "PMEVCNTR13_EL0"},     // 0x3af812
    {{3, 3, 14, 10, 5}, "PMEVCNTR21_EL0"},    // 0x3af814
    {{3, 3, 14, 11, 5}, "PMEVCNTR29_EL0"},    // 0x3af816
    {{3, 3, 14, 12, 5}, "PMEVTYPER5_EL0"},    // 0x3af818
    {{3, 3, 14, 13, 5}, "PMEVTYPER13_EL0"},   // 0x3af81a
    {{3, 3, 14, 14, 5}, "PMEVTYPER21_EL0"},   // 0x3af81c
    {{3, 3, 14, 15, 5}, "PMEVTYPER29_EL0"},   // 0x3af81e
    {{3, 0, 0, 0, 6}, "REVIDR_EL1"},          // 0x3c0000
    {{3, 0, 0, 1, 6}, "ID_MMFR2_EL1"},        // 0x3c0002
    {{3, 0, 0, 2, 6}, "ID_MMFR4_EL1"},        // 0x3c0004
    {{3, 0, 0, 3, 6}, "ID_MMFR5_EL1"},        // 0x3c0006
    {{3, 0, 9, 14, 6}, "PMMIR_EL1"},          // 0x3c241c
    {{3, 0, 12, 8, 6}, "ICC_AP0R2_EL1"},      // 0x3c3010
    {{3, 0, 12, 11, 6}, "ICC_ASGI1R_EL1"},    // 0x3c3016
    {{3, 0, 12, 12, 6}, "ICC_IGRPEN0_EL1"},   // 0x3c3018
    {{3, 3, 9, 12, 6}, "PMCEID0_EL0"},        // 0x3ce418
    {{3, 3, 14, 0, 6}, "CNTVCTSS_EL0"},       // 0x3cf800
    {{3, 3, 14, 8, 6}, "PMEVCNTR6_EL0"},      // 0x3cf810
    {{3, 3, 14, 9, 6}, "PMEVCNTR14_EL0"},     // 0x3cf812
    {{3, 3, 14, 10, 6}, "PMEVCNTR22_EL0"},    // 0x3cf814
    {{3, 3, 14, 11, 6}, "PMEVCNTR30_EL0"},    // 0x3cf816
    {{3, 3, 14, 12, 6}, "PMEVTYPER6_EL0"},    // 0x3cf818
    {{3, 3, 14, 13, 6}, "PMEVTYPER14_EL0"},   // 0x3cf81a
    {{3, 3, 14, 14, 6}, "PMEVTYPER22_EL0"},   // 0x3cf81c
    {{3, 3, 14, 15, 6}, "PMEVTYPER30_EL0"},   // 0x3cf81e
    {{3, 0, 0, 1, 7}, "ID_MMFR3_EL1"},        // 0x3e0002
    {{3, 0, 0, 2, 7}, "ID_ISAR6_EL1"},        // 0x3e0004
    {{3, 0, 12, 8, 7}, "ICC_AP0R3_EL1"},      // 0x3e3010
    {{3, 0, 12, 11, 7}, "ICC_SGI0R_EL1"},     // 0x3e3016
    {{3, 0, 12, 12, 7}, "ICC_IGRPEN1_EL1"},   // 0x3e3018
    {{3, 1, 0, 0, 7}, "AIDR_EL1"},            // 0x3e4000
    {{3, 3, 0, 0, 7}, "DCZID_EL0"},           // 0x3ec000
    {{3, 3, 9, 12, 7}, "PMCEID1_EL0"},        // 0x3ee418
    {{3, 3, 14, 8, 7}, "PMEVCNTR7_EL0"},      // 0x3ef810
    {{3, 3, 14, 9, 7}, "PMEVCNTR15_EL0"},     // 0x3ef812
    {{3, 3, 14, 10, 7}, "PMEVCNTR23_EL0"},    // 0x3ef814
    {{3, 3, 14, 12, 7}, "PMEVTYPER7_EL0"},    // 0x3ef818
    {{3, 3, 14, 13, 7}, "PMEVTYPER15_EL0"},   // 0x3ef81a
    {{3, 3, 14, 14, 7}, "PMEVTYPER23_EL0"},   // 0x3ef81c
    {{3, 3, 14, 15, 7}, "PMCCFILTR_EL0"},     // 0x3ef81e
};

inline constexpr std::size_t kSysRegCount = sizeof(kSysRegTable) / sizeof(kSysRegTable[0]);

// The table as pointer and count: what the Python binding enumerates.
struct SysRegTable {
    const SysRegName* entries;
    std::size_t count;

    [[nodiscard]] constexpr const SysRegName* begin() const { return entries; }
    [[nodiscard]] constexpr const SysRegName* end() const { return entries + count; }
};

[[nodiscard]] constexpr SysRegTable sysreg_table() {
    return SysRegTable{kSysRegTable, kSysRegCount};
}

namespace detail {

constexpr char ascii_upper(char c) {
    return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}

// strcasecmp() == 0 without <cstring>, which is neither constexpr nor freestanding.
constexpr bool ascii_iequal(const char* a, const char* b) {
    for (;; ++a, ++b) {
        if (ascii_upper(*a) != ascii_upper(*b)) return false;
        if (*a == '\0') return true;
    }
}

// Binary search needs strictly ascending keys; strictness also rules out two names for one
// encoding. Fields must fit their ISS widths, or iss_key() would alias another register.
constexpr bool sysreg_table_is_well_formed() {
    for (std::size_t i = 0; i < kSysRegCount; ++i) {
        const SysRegEncoding& e = kSysRegTable[i].encoding;
        // op0 is 0b10 (debug) or 0b11 (everything else) for a system register; 0b00 and
        // 0b01 encode instructions (Arm ARM C5.2).
        if ((e.op0 != 2 && e.op0 != 3) || e.op1 > 7 || e.crn > 15 || e.crm > 15 || e.op2 > 7)
            return false;
        if (i > 0 && kSysRegTable[i - 1].encoding.iss_key() >= e.iss_key()) return false;
    }
    return true;
}

}  // namespace detail

static_assert(detail::sysreg_table_is_well_formed());

// The Arm name of the register with this key, or nullptr when the table does not know it.
// The Rt and Direction bits are masked off first, so a raw ISS works as well as a key.
[[nodiscard]] constexpr const char* sysreg_name(std::uint32_t iss_key) {
    const std::uint32_t key = iss_key & SysRegEncoding::kIssKeyMask;
    std::size_t lo = 0;
    std::size_t hi = kSysRegCount;
    while (lo < hi) {
        const std::size_t mid = lo + (hi - lo) / 2;
        const std::uint32_t k = kSysRegTable[mid].encoding.iss_key();
        if (k == key) return kSysRegTable[mid].name;
        if (k < key) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return nullptr;
}

[[nodiscard]] constexpr const char* sysreg_name(const SysRegEncoding& encoding) {
    return sysreg_name(encoding.iss_key());
}

// Finds a register by name, ignoring ASCII case ("cntv_ctl_el0" as the assembler writes
// it, "CNTV_CTL_EL0" as the Arm ARM does). Leaves out untouched when the name is unknown.
[[nodiscard]] constexpr bool sysreg_lookup(const char* name, SysRegEncoding& out) {
    if (name == nullptr) return false;
    for (const SysRegName& entry : kSysRegTable) {
        if (detail::ascii_iequal(entry.name, name)) {
            out = entry.encoding;
            return true;
        }
    }
    return false;
}

// Registers the core itself emulates or inspects (values from the table above).
inline constexpr SysRegEncoding kCntpctEl0{3, 3, 14, 0, 1};
inline constexpr SysRegEncoding kCntpTvalEl0{3, 3, 14, 2, 0};
inline constexpr SysRegEncoding kCntpCtlEl0{3, 3, 14, 2, 1};
inline constexpr SysRegEncoding kCntpCvalEl0{3, 3, 14, 2, 2};
inline constexpr SysRegEncoding kCntvCtlEl0{3, 3, 14, 3, 1};
inline constexpr SysRegEncoding kCntvCvalEl0{3, 3, 14, 3, 2};
inline constexpr SysRegEncoding kIccSgi1rEl1{3, 0, 12, 11, 5};
inline constexpr SysRegEncoding kIccAsgi1rEl1{3, 0, 12, 11, 6};
inline constexpr SysRegEncoding kIccSgi0rEl1{3, 0, 12, 11, 7};

// Each constant must be the table's row of that name, or the two would drift apart.
static_assert(detail::ascii_iequal(sysreg_name(kCntpctEl0), "CNTPCT_EL0"));
static_assert(detail::ascii_iequal(sysreg_name(kCntpTvalEl0), "CNTP_TVAL_EL0"));
static_assert(detail::ascii_iequal(sysreg_name(kCntpCtlEl0), "CNTP_CTL_EL0"));
static_assert(detail::ascii_iequal(sysreg_name(kCntpCvalEl0), "CNTP_CVAL_EL0"));
static_assert(detail::ascii_iequal(sysreg_name(kCntvCtlEl0), "CNTV_CTL_EL0"));
static_assert(detail::ascii_iequal(sysreg_name(kCntvCvalEl0), "CNTV_CVAL_EL0"));
static_assert(detail::ascii_iequal(sysreg_name(kIccSgi1rEl1), "ICC_SGI1R_EL1"));
static_assert(detail::ascii_iequal(sysreg_name(kIccAsgi1rEl1), "ICC_ASGI1R_EL1"));
static_assert(detail::ascii_iequal(sysreg_name(kIccSgi0rEl1), "ICC_SGI0R_EL1"));

}  // namespace armvcpu
