#include "cpu.hpp"

#include <new>

#include "power.hpp"
#include "sysreg.hpp"

extern "C" {
extern const char armvcpu_el2_vectors[];
extern char _secondary_start[];  // boot.S
}

namespace fw {

FwHal g_hal[kMaxCpus];

namespace {

alignas(armvcpu::PerCpu<FwHal>) unsigned char g_percpu_storage[kMaxCpus]
                                                              [sizeof(armvcpu::PerCpu<FwHal>)];

}  // namespace

armvcpu::PerCpu<FwHal>& enable_this_cpu(unsigned cpu) {
    FwHal& hal = g_hal[cpu];
    auto* percpu = new (g_percpu_storage[cpu]) armvcpu::PerCpu<FwHal>(hal, cpu);
    percpu->hardware_enable(reinterpret_cast<std::uint64_t>(armvcpu_el2_vectors));
    // EL2 traps the guest keeps (not part of its context): FP/SIMD, SVE and
    // SME untrapped, so guests that use them run (CPTR_EL2, Arm ARM D17.2.30:
    // RES1 bits [7:0], 9 and 13; TZ [8] and TSM [12] are RES1 only without
    // SVE / SME). Each physical CPU runs one vCPU and EL2 never touches
    // FP/SIMD/SVE/SME state (-mgeneral-regs-only), so that state needs no
    // saving.
    const std::uint64_t pfr0 = ARMVCPU_READ_SYSREG(id_aa64pfr0_el1);
    const std::uint64_t pfr1 = ARMVCPU_READ_SYSREG(id_aa64pfr1_el1);
    const bool sve = ((pfr0 >> 32) & 0xf) != 0;
    const bool sme = ((pfr1 >> 24) & 0xf) != 0;
    hal.write_sysreg(armvcpu::SysReg::cptr_el2,
                     0x22ffu | (sve ? 0 : 1u << 8) | (sme ? 0 : 1u << 12));
    isb();
    // The largest vector lengths the CPU has (LEN = 0xf is clamped to them):
    // ZCR_EL2 (S3_4_C1_C2_0) and SMCR_EL2 (S3_4_C1_C2_6).
    if (sve) asm volatile("msr S3_4_C1_C2_0, %0" : : "r"(std::uint64_t{0xf}));
    if (sme) asm volatile("msr S3_4_C1_C2_6, %0" : : "r"(std::uint64_t{0xf}));
    hal.write_sysreg(armvcpu::SysReg::mdcr_el2, mdcr_el2_bits());
    return *percpu;
}

// Pointer authentication (API | APK: its instructions and key registers
// untrapped) when ID_AA64ISAR1_EL1 APA/API/GPA/GPI or ID_AA64ISAR2_EL1
// APA3/GPA3 say it is there, and allocation tags (ATA) with FEAT_MTE2.
std::uint64_t feature_hcr_bits() {
    const std::uint64_t isar1 = ARMVCPU_READ_SYSREG(id_aa64isar1_el1);
    const std::uint64_t isar2 = ARMVCPU_READ_SYSREG(S3_0_C0_C6_2);  // ID_AA64ISAR2_EL1
    const std::uint64_t pfr1 = ARMVCPU_READ_SYSREG(id_aa64pfr1_el1);
    const bool pauth = (isar1 & 0xff000ff0ull) != 0 || (isar2 & 0xff00ull) != 0;
    const bool mte2 = ((pfr1 >> 8) & 0xf) >= 2;
    return (pauth ? (1ull << 41) | (1ull << 40) : 0) | (mte2 ? 1ull << 56 : 0);
}

unsigned start_secondary_cpus() {
    // QEMU's PSCI answers INVALID_PARAMETERS past the last CPU.
    unsigned cpus = 1;
    for (unsigned i = 1; i < kMaxCpus; ++i) {
        if (psci_cpu_on(i, reinterpret_cast<std::uint64_t>(_secondary_start), i) != 0) break;
        ++cpus;
    }
    return cpus;
}

}  // namespace fw
