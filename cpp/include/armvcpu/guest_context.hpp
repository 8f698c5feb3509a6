// The guest's system-register context: what a world switch must save and
// restore besides the TrapFrame, and the order it does so in.
#pragma once

#include <cstdint>

namespace armvcpu {

// Every register of the guest context, in RESTORE order (store uses the same
// order; reads have no side effects). Each entry: (field, assembler name).
// Why this order:
//  1. The EL2 controls that shape what the guest reads: VPIDR/VMPIDR (its
//     MIDR/MPIDR), CNTVOFF then CNTHCTL, so the virtual counter is offset
//     before any guest timer state is live.
//  2. EL1 translation state (TTBR0/1, TCR, MAIR, AMAIR) before SCTLR_EL1, so
//     that if SCTLR_EL1.M turns the MMU on the tables it names are already
//     in place (no walk ever sees a mix of two contexts).
//  3. The rest of EL1/EL0 state, which takes effect only in the guest.
//  4. Timers: each CVAL before its CTL, so that enabling a timer never
//     compares against a stale CVAL and fires a spurious interrupt.
//  5. Last the stage-2 and trap controls, VTCR, VTTBR, HCR: the guest's
//     translation regime switches only when everything it depends on is
//     loaded. The caller then issues an ISB.
#define ARMVCPU_GUEST_SYSREGS(X)      \
    X(vpidr_el2, vpidr_el2)           \
    X(vmpidr_el2, vmpidr_el2)         \
    X(cntvoff_el2, cntvoff_el2)       \
    X(cnthctl_el2, cnthctl_el2)       \
    X(ttbr0_el1, ttbr0_el1)           \
    X(ttbr1_el1, ttbr1_el1)           \
    X(tcr_el1, tcr_el1)               \
    X(mair_el1, mair_el1)             \
    X(amair_el1, amair_el1)           \
    X(sctlr_el1, sctlr_el1)           \
    X(cpacr_el1, cpacr_el1)           \
    X(vbar_el1, vbar_el1)             \
    X(contextidr_el1, contextidr_el1) \
    X(tpidr_el0, tpidr_el0)           \
    X(tpidrro_el0, tpidrro_el0)       \
    X(tpidr_el1, tpidr_el1)           \
    X(par_el1, par_el1)               \
    X(esr_el1, esr_el1)               \
    X(far_el1, far_el1)               \
    X(afsr0_el1, afsr0_el1)           \
    X(afsr1_el1, afsr1_el1)           \
    X(csselr_el1, csselr_el1)         \
    X(mdscr_el1, mdscr_el1)           \
    X(sp_el1, sp_el1)                 \
    X(elr_el1, elr_el1)               \
    X(spsr_el1, spsr_el1)             \
    X(cntkctl_el1, cntkctl_el1)       \
    X(cntv_cval_el0, cntv_cval_el0)   \
    X(cntv_ctl_el0, cntv_ctl_el0)     \
    X(cntp_cval_el0, cntp_cval_el0)   \
    X(cntp_ctl_el0, cntp_ctl_el0)     \
    X(pmcr_el0, pmcr_el0)             \
    X(vtcr_el2, vtcr_el2)             \
    X(vttbr_el2, vttbr_el2)           \
    X(hcr_el2, hcr_el2)

// Registers the hypervisor itself reads or writes.
#define ARMVCPU_HOST_SYSREGS_RW(X) \
    X(vbar_el2, vbar_el2)          \
    X(esr_el2, esr_el2)            \
    X(far_el2, far_el2)            \
    X(hpfar_el2, hpfar_el2)        \
    X(cptr_el2, cptr_el2)          \
    X(mdcr_el2, mdcr_el2)
// Read-only identification registers (a write is ignored).
#define ARMVCPU_HOST_SYSREGS_RO(X) \
    X(midr_el1, midr_el1)          \
    X(mpidr_el1, mpidr_el1)
#define ARMVCPU_HOST_SYSREGS(X) ARMVCPU_HOST_SYSREGS_RW(X) ARMVCPU_HOST_SYSREGS_RO(X)

// Identifies a register for a Hal's read_sysreg/write_sysreg.
enum class SysReg : std::uint16_t {
#define ARMVCPU_X(field, name) field,
    ARMVCPU_GUEST_SYSREGS(ARMVCPU_X) ARMVCPU_HOST_SYSREGS(ARMVCPU_X)
#undef ARMVCPU_X
        kCount
};

inline constexpr unsigned kNumSysRegs = static_cast<unsigned>(SysReg::kCount);

constexpr const char* sysreg_id_name(SysReg r) {
    switch (r) {
#define ARMVCPU_X(field, name) \
    case SysReg::field: return #name;
        ARMVCPU_GUEST_SYSREGS(ARMVCPU_X)
        ARMVCPU_HOST_SYSREGS(ARMVCPU_X)
#undef ARMVCPU_X
        case SysReg::kCount: break;
    }
    return nullptr;
}

// GIC virtual CPU interface state (GICv3 ICH_*_EL2), kept beside the context
// for the vGIC; saved and restored by the interrupt code, not by store().
struct VgicCpuState {
    std::uint64_t ich_hcr_el2;
    std::uint64_t ich_vmcr_el2;
    std::uint64_t ich_lr_el2[16];
    std::uint64_t ich_ap0r_el2[4];
    std::uint64_t ich_ap1r_el2[4];
};

struct GuestSystemRegisters {
#define ARMVCPU_X(field, name) std::uint64_t field;
    ARMVCPU_GUEST_SYSREGS(ARMVCPU_X)
#undef ARMVCPU_X
    VgicCpuState vgic;

    // Loads every register from the CPU into this context.
    template <class H>
    constexpr void store(H& hal) {
#define ARMVCPU_X(field, name) field = hal.read_sysreg(SysReg::field);
        ARMVCPU_GUEST_SYSREGS(ARMVCPU_X)
#undef ARMVCPU_X
    }

    // Writes this context to the CPU, in the documented order, then ISB.
    template <class H>
    constexpr void restore(H& hal) const {
#define ARMVCPU_X(field, name) hal.write_sysreg(SysReg::field, field);
        ARMVCPU_GUEST_SYSREGS(ARMVCPU_X)
#undef ARMVCPU_X
        hal.isb();
    }
};

}  // namespace armvcpu
