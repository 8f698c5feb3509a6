// The full world switch: the guest state a vCPU owns beyond its TrapFrame and
// GuestSystemRegisters, and the order a physical CPU that time-shares vCPUs
// saves and restores it in. The EL1 context itself is GuestSystemRegisters
// (guest_context.hpp, its order documented there); this header adds what
// only matters once two vCPUs share one CPU:
//
//   - the GICv3 virtual CPU interface (ICH_*_EL2): list registers, active
//     priorities, ICH_VMCR_EL2 and ICH_HCR_EL2; on a GICv2 the same state
//     in GICH's registers (GichWorld);
//   - the pointer-authentication keys (AP*Key*_EL1), with FEAT_PAuth;
//   - the MTE tag state (GCR_EL1, RGSR_EL1, TFSRE0_EL1, TFSR_EL1), with MTE2;
//   - (the PMU state the guest owns: firmware/scheduler.cpp's PmuState);
//   - FP/SIMD (V0-V31, FPSR, FPCR), or with SVE Z0-Z31, P0-P15, FFR and
//     ZCR_EL1: switched lazily (LazyFpOwner below), because most exits and
//     most switches never see the guest touch them.
//
// A register the CPU does not implement is never touched (it would UNDEF):
// WorldFeatures, read once from the ID registers, says which groups exist.
#pragma once

#include <concepts>
#include <cstdint>

#include "armvcpu/guest_context.hpp"

namespace armvcpu {

// The optional registers, each (field, assembler name). The encodings are
// the Arm ARM's (D24.2, "General system control registers"; the GICv3
// architecture specification 12.4 for ICH_*).
#define ARMVCPU_PAUTH_SYSREGS(X)   \
    X(apiakeylo_el1, S3_0_C2_C1_0) \
    X(apiakeyhi_el1, S3_0_C2_C1_1) \
    X(apibkeylo_el1, S3_0_C2_C1_2) \
    X(apibkeyhi_el1, S3_0_C2_C1_3) \
    X(apdakeylo_el1, S3_0_C2_C2_0) \
    X(apdakeyhi_el1, S3_0_C2_C2_1) \
    X(apdbkeylo_el1, S3_0_C2_C2_2) \
    X(apdbkeyhi_el1, S3_0_C2_C2_3) \
    X(apgakeylo_el1, S3_0_C2_C3_0) \
    X(apgakeyhi_el1, S3_0_C2_C3_1)
#define ARMVCPU_MTE_SYSREGS(X)  \
    X(gcr_el1, S3_0_C1_C0_6)    \
    X(rgsr_el1, S3_0_C1_C0_5)   \
    X(tfsre0_el1, S3_0_C5_C6_1) \
    X(tfsr_el1, S3_0_C5_C6_0)
#define ARMVCPU_ICH_AP_SYSREGS(X)   \
    X(ich_ap0r0_el2, S3_4_C12_C8_0) \
    X(ich_ap0r1_el2, S3_4_C12_C8_1) \
    X(ich_ap0r2_el2, S3_4_C12_C8_2) \
    X(ich_ap0r3_el2, S3_4_C12_C8_3) \
    X(ich_ap1r0_el2, S3_4_C12_C9_0) \
    X(ich_ap1r1_el2, S3_4_C12_C9_1) \
    X(ich_ap1r2_el2, S3_4_C12_C9_2) \
    X(ich_ap1r3_el2, S3_4_C12_C9_3)
#define ARMVCPU_ICH_LR_SYSREGS(X)   \
    X(ich_lr0_el2, S3_4_C12_C12_0)  \
    X(ich_lr1_el2, S3_4_C12_C12_1)  \
    X(ich_lr2_el2, S3_4_C12_C12_2)  \
    X(ich_lr3_el2, S3_4_C12_C12_3)  \
    X(ich_lr4_el2, S3_4_C12_C12_4)  \
    X(ich_lr5_el2, S3_4_C12_C12_5)  \
    X(ich_lr6_el2, S3_4_C12_C12_6)  \
    X(ich_lr7_el2, S3_4_C12_C12_7)  \
    X(ich_lr8_el2, S3_4_C12_C13_0)  \
    X(ich_lr9_el2, S3_4_C12_C13_1)  \
    X(ich_lr10_el2, S3_4_C12_C13_2) \
    X(ich_lr11_el2, S3_4_C12_C13_3) \
    X(ich_lr12_el2, S3_4_C12_C13_4) \
    X(ich_lr13_el2, S3_4_C12_C13_5) \
    X(ich_lr14_el2, S3_4_C12_C13_6) \
    X(ich_lr15_el2, S3_4_C12_C13_7)
#define ARMVCPU_ICH_CTL_SYSREGS(X)  \
    X(ich_vmcr_el2, S3_4_C12_C11_7) \
    X(ich_hcr_el2, S3_4_C12_C11_0)
#define ARMVCPU_WORLD_SYSREGS(X) \
    ARMVCPU_ICH_LR_SYSREGS(X)    \
    ARMVCPU_ICH_AP_SYSREGS(X)    \
    ARMVCPU_ICH_CTL_SYSREGS(X)   \
    ARMVCPU_PAUTH_SYSREGS(X)     \
    ARMVCPU_MTE_SYSREGS(X)

// Identifies one of those registers for a WorldHal.
enum class WorldReg : std::uint8_t {
#define ARMVCPU_X(field, name) field,
    ARMVCPU_WORLD_SYSREGS(ARMVCPU_X)
#undef ARMVCPU_X
        kCount
};
inline constexpr unsigned kNumWorldRegs = static_cast<unsigned>(WorldReg::kCount);

constexpr const char* world_reg_name(WorldReg r) {
    switch (r) {
#define ARMVCPU_X(field, name) \
    case WorldReg::field: return #field;
        ARMVCPU_WORLD_SYSREGS(ARMVCPU_X)
#undef ARMVCPU_X
        case WorldReg::kCount: break;
    }
    return nullptr;
}

// What this CPU has, from its ID registers (field positions: Arm ARM D24.2.64
// ID_AA64PFR0_EL1, D24.2.65 ID_AA64PFR1_EL1, D24.2.61/62 ID_AA64ISAR1/2_EL1;
// ICH_VTR_EL2 from the GICv3 specification 12.4.10).
struct WorldFeatures {
    bool gicv3 = false;      // the GIC system-register interface (PFR0.GIC != 0)
    unsigned list_regs = 0;  // ICH_VTR_EL2.ListRegs + 1
    unsigned ap_regs = 0;    // ICH_AP0R/AP1R registers in use: 1, 2 or 4 (PREbits 5, 6, 7)
    bool pauth = false;      // any of APA/API/GPA/GPI, APA3/GPA3
    bool mte = false;        // FEAT_MTE2: the tag registers are architected state
    bool sve = false;        // PFR0.SVE != 0
};

constexpr WorldFeatures world_features(std::uint64_t pfr0, std::uint64_t pfr1, std::uint64_t isar1,
                                       std::uint64_t isar2, std::uint64_t ich_vtr) {
    WorldFeatures f;
    f.gicv3 = ((pfr0 >> 24) & 0xf) != 0;
    if (f.gicv3) {
        f.list_regs = static_cast<unsigned>(ich_vtr & 0x1f) + 1;
        const unsigned prebits = static_cast<unsigned>((ich_vtr >> 29) & 0x7) + 1;
        f.ap_regs = prebits >= 7 ? 4 : prebits == 6 ? 2 : 1;
    }
    f.pauth = (isar1 & 0xff000ff0ull) != 0 || (isar2 & 0xff00ull) != 0;
    f.mte = ((pfr1 >> 8) & 0xf) >= 2;
    f.sve = ((pfr0 >> 32) & 0xf) != 0;
    return f;
}

// A Hal that can also reach the world registers; the firmware's executes
// mrs/msr (after a DSB before TFSR*, so asynchronous tag-check faults are
// recorded first), the tests' records the order.
template <class H>
concept WorldHal = requires(H h, WorldReg reg, std::uint64_t value) {
    { h.read_world(reg) } -> std::same_as<std::uint64_t>;
    h.write_world(reg, value);
};

// One vCPU's state beyond its EL1 context, while it is not on a CPU.
struct GuestWorld {
    std::uint64_t regs[kNumWorldRegs] = {};

    constexpr std::uint64_t& operator[](WorldReg r) { return regs[static_cast<unsigned>(r)]; }
    constexpr std::uint64_t operator[](WorldReg r) const { return regs[static_cast<unsigned>(r)]; }

    // Whether this CPU has register r at all.
    static constexpr bool present(const WorldFeatures& f, WorldReg r) {
        const auto i = static_cast<unsigned>(r);
        const auto lr0 = static_cast<unsigned>(WorldReg::ich_lr0_el2);
        const auto ap0 = static_cast<unsigned>(WorldReg::ich_ap0r0_el2);
        const auto ap1 = static_cast<unsigned>(WorldReg::ich_ap1r0_el2);
        const auto key0 = static_cast<unsigned>(WorldReg::apiakeylo_el1);
        const auto mte0 = static_cast<unsigned>(WorldReg::gcr_el1);
        if (i < ap0) return f.gicv3 && i - lr0 < f.list_regs;
        if (i < ap1) return f.gicv3 && i - ap0 < f.ap_regs;
        if (i < ap1 + 4) return f.gicv3 && i - ap1 < f.ap_regs;
        if (i < key0) return f.gicv3;  // ICH_VMCR_EL2, ICH_HCR_EL2
        if (i < mte0) return f.pauth;
        return f.mte;
    }

    // Loads the CPU's registers into this world (any order: reads have no
    // side effects).
    template <class H>
        requires WorldHal<H>
    constexpr void save(H& hal, const WorldFeatures& f) {
        for (unsigned i = 0; i < kNumWorldRegs; ++i) {
            const auto r = static_cast<WorldReg>(i);
            if (present(f, r)) regs[i] = hal.read_world(r);
        }
    }

    // Writes this world to the CPU in the documented order: list registers,
    // active priorities and ICH_VMCR_EL2 first and ICH_HCR_EL2 (its En bit
    // turns the virtual CPU interface on) last of the GIC's, so the
    // interface never signals one vCPU's interrupts with another's
    // priorities; then the keys and tag state, used only once the guest runs.
    // GuestSystemRegisters::restore() follows, and its ISB makes all of it
    // the guest's.
    template <class H>
        requires WorldHal<H>
    constexpr void restore(H& hal, const WorldFeatures& f) const {
        for (unsigned i = 0; i < kNumWorldRegs; ++i) {
            const auto r = static_cast<WorldReg>(i);
            if (present(f, r)) hal.write_world(r, regs[i]);
        }
    }
};

// The GICv2 virtual interface control (GICH, memory-mapped at kGichBase on
// QEMU virt: the GIC architecture specification v2.0, 5.3): what a vCPU owns
// of it on a machine with a GICv2, in place of the ICH_*_EL2 registers.
// Offsets: GICH_HCR 0x000, GICH_VMCR 0x008, GICH_APR 0x0F0, GICH_LR<n>
// 0x100 + 4n (up to 64, GICH_VTR.ListRegs + 1).
inline constexpr unsigned kMaxGichLrs = 64;
namespace gich {
inline constexpr std::uint32_t HCR = 0x000;
inline constexpr std::uint32_t VMCR = 0x008;
inline constexpr std::uint32_t APR = 0x0F0;
inline constexpr std::uint32_t LR0 = 0x100;
}  // namespace gich

// A Hal that reaches GICH by offset; the tests' records the order.
template <class H>
concept GichHal = requires(H h, std::uint32_t offset, std::uint32_t value) {
    { h.read_gich(offset) } -> std::same_as<std::uint32_t>;
    h.write_gich(offset, value);
};

struct GichWorld {
    std::uint32_t hcr = 0, vmcr = 0, apr = 0;
    std::uint32_t lr[kMaxGichLrs] = {};

    // Loads the virtual interface's registers (reads have no side effects;
    // `list_regs` of them exist).
    template <class H>
        requires GichHal<H>
    constexpr void save(H& hal, unsigned list_regs) {
        for (unsigned n = 0; n < list_regs && n < kMaxGichLrs; ++n) {
            lr[n] = hal.read_gich(gich::LR0 + 4 * n);
        }
        apr = hal.read_gich(gich::APR);
        vmcr = hal.read_gich(gich::VMCR);
        hcr = hal.read_gich(gich::HCR);
    }

    // Writes them back in GuestWorld::restore's order: list registers, the
    // active priorities and GICH_VMCR first, GICH_HCR (its En bit) last.
    template <class H>
        requires GichHal<H>
    constexpr void restore(H& hal, unsigned list_regs) const {
        for (unsigned n = 0; n < list_regs && n < kMaxGichLrs; ++n) {
            hal.write_gich(gich::LR0 + 4 * n, lr[n]);
        }
        hal.write_gich(gich::APR, apr);
        hal.write_gich(gich::VMCR, vmcr);
        hal.write_gich(gich::HCR, hcr);
    }

    // A list register holds a pending interrupt (GICH_LR.State [29:28]:
    // pending 01 or pending and active 11): an event the vCPU sees the
    // moment it is back.
    [[nodiscard]] constexpr bool pending(unsigned list_regs) const {
        for (unsigned n = 0; n < list_regs && n < kMaxGichLrs; ++n) {
            if (((lr[n] >> 28) & 1) != 0) return true;
        }
        return false;
    }
};

// The physical count at which a descheduled vCPU's EL1 timers would assert
// their interrupt (Arm ARM D11.2.4: a timer fires when enabled, unmasked and
// its counter >= CVAL; the virtual counter is the physical one less
// CNTVOFF_EL2), or kNoDeadline. A halted vCPU whose deadline has passed is
// runnable: its interrupt is pending the moment its context is back.
inline constexpr std::uint64_t kNoDeadline = ~0ull;

constexpr std::uint64_t timer_deadline(const GuestSystemRegisters& s) {
    constexpr std::uint64_t kEnable = 1, kImask = 2;
    std::uint64_t deadline = kNoDeadline;
    if ((s.cntv_ctl_el0 & (kEnable | kImask)) == kEnable) {
        // CVAL is compared with the virtual count: physical = CVAL + offset,
        // saturated (a CVAL near 2^64 never fires in practice).
        const std::uint64_t p = s.cntv_cval_el0 + s.cntvoff_el2;
        deadline = p < s.cntv_cval_el0 ? kNoDeadline : p;
    }
    if ((s.cntp_ctl_el0 & (kEnable | kImask)) == kEnable && s.cntp_cval_el0 < deadline) {
        deadline = s.cntp_cval_el0;
    }
    return deadline;
}

// Lazy FP/SIMD/SVE: which vCPU's registers the CPU holds. Switching a vCPU
// in traps its FP use (CPTR_EL2.TFP, and TZ with SVE) unless it already owns
// them; its first FP instruction traps, and only then are the owner's
// registers saved and its own loaded.
class LazyFpOwner {
public:
    static constexpr int kNone = -1;

    // vCPU `slot` is about to run: true when its FP use must trap.
    [[nodiscard]] constexpr bool trap_for(int slot) const { return owner_ != slot; }

    // vCPU `slot` trapped on FP: whose registers to save (kNone: nobody's),
    // and `slot` owns them from now on.
    constexpr int take(int slot) {
        const int previous = owner_;
        owner_ = slot;
        return previous == slot ? kNone : previous;
    }

    [[nodiscard]] constexpr int owner() const { return owner_; }

private:
    int owner_ = kNone;
};

}  // namespace armvcpu
