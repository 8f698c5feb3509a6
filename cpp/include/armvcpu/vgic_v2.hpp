// The guest's GICv2: the distributor (GICD) emulated, and the GICv2 virtual
// interface's list registers (GICH_LR<n>) that carry interrupts into the
// hardware virtual CPU interface (GICV), which stage 2 maps at the guest's
// GICC address. The GICv2 counterpart of vgic.hpp + vgic_dist.hpp.
//
// The model is a GICv2 without the Security Extensions, as QEMU's virt
// presents its GICv2 without secure=on: GICD_TYPER.SecurityExtn = 0, two
// interrupt groups (GICD_IGROUPR read/write, GICD_CTLR EnableGrp0/1), SGIs
// always enabled and edge-triggered, and kNumIntids interrupts: SGIs 0-15
// and PPIs 16-31 banked per vCPU, SPIs 32 and up shared and targeted with
// GICD_ITARGETSR. Register offsets, reset values and access rules: ARM
// Generic Interrupt Controller Architecture Specification v2.0 (IHI 0048B),
// chapter 4 "Programmers' Model" (4.3 distributor registers) and chapter 5
// "GIC Support for Virtualization" (5.3.9 GICH_LRn). Unimplemented registers
// are RAZ/WI (4.1.5 "reserved register addresses").
//
// It only keeps state; it touches no hardware. Each write says what it
// changed (WriteEffect), so the hypervisor can mirror enables of interrupts
// backed by physical ones and kick the vCPUs that got something to take.
// Callers serialise accesses (one lock per VM).
#pragma once

#include <cstdint>

namespace armvcpu::vgic2 {

// QEMU virt's GICv2 frames (hw/arm/virt.c's memory map, and the device tree
// QEMU generates for gic-version=2): the guest sees GICD and GICC; the
// hypervisor drives GICH, and GICV is what stage 2 shows at GICC's address.
inline constexpr std::uint64_t kGicdBase = 0x0800'0000;
inline constexpr std::uint64_t kGicdSize = 0x1'0000;  // the 64 KiB the device tree gives it
inline constexpr std::uint64_t kGiccBase = 0x0801'0000;
inline constexpr std::uint64_t kGichBase = 0x0803'0000;
inline constexpr std::uint64_t kGicvBase = 0x0804'0000;
// GICV's registers span two 4 KiB pages: GICV_DIR is at 0x1000 (5.5).
inline constexpr std::uint64_t kGicvMapSize = 0x2000;
// GICv2 names CPU interfaces 0..7 (ITARGETSR bytes, SGIR's CPUTargetList).
inline constexpr unsigned kMaxVcpus = 8;
// INTIDs 0..287: GICD_TYPER.ITLinesNumber = 8 (32 * (N + 1) interrupts),
// what QEMU virt's GICv2 has (256 external lines + 32), so a guest reads the
// same GICD_TYPER under armvcpu as on the bare machine.
inline constexpr unsigned kNumIntids = 288;
inline constexpr unsigned kNumBanks = kNumIntids / 32;  // bank 0: the private INTIDs

// Distributor register offsets (IHI 0048B, 4.1.2 table 4-1).
namespace gicd {
inline constexpr std::uint64_t CTLR = 0x000;
inline constexpr std::uint64_t TYPER = 0x004;
inline constexpr std::uint64_t IIDR = 0x008;
inline constexpr std::uint64_t IGROUPR = 0x080;
inline constexpr std::uint64_t ISENABLER = 0x100;
inline constexpr std::uint64_t ICENABLER = 0x180;
inline constexpr std::uint64_t ISPENDR = 0x200;
inline constexpr std::uint64_t ICPENDR = 0x280;
inline constexpr std::uint64_t ISACTIVER = 0x300;
inline constexpr std::uint64_t ICACTIVER = 0x380;
inline constexpr std::uint64_t IPRIORITYR = 0x400;
inline constexpr std::uint64_t ITARGETSR = 0x800;
inline constexpr std::uint64_t ICFGR = 0xC00;
inline constexpr std::uint64_t SGIR = 0xF00;
inline constexpr std::uint64_t CPENDSGIR = 0xF10;
inline constexpr std::uint64_t SPENDSGIR = 0xF20;
inline constexpr std::uint64_t PIDR4 = 0xFD0;  // the identification block: 0xFD0..0xFFC
inline constexpr std::uint64_t PIDR2 = 0xFE8;
// GICD_CTLR without the Security Extensions (4.3.1): EnableGrp0 [0], EnableGrp1 [1].
inline constexpr std::uint32_t kCtlrEnableGrp0 = 1u << 0;
inline constexpr std::uint32_t kCtlrEnableGrp1 = 1u << 1;
}  // namespace gicd

// GICD_IIDR (4.3.3): Implementer [11:0] = Arm's JEP106 code 0x43B; QEMU's
// GICv2 reports exactly this.
inline constexpr std::uint32_t kIidr = 0x43B;
// The identification registers at 0xFD0..0xFFC (PIDR4..7, PIDR0..3,
// CIDR0..3), one byte each, as QEMU's GICv2 model presents them: PIDR2 =
// 0x2B is ArchRev [7:4] = 2 (GICv2, 4.3.16 "Identification registers").
inline constexpr std::uint8_t kIdRegs[12] = {0x04, 0x00, 0x00, 0x00, 0x90, 0xb4,
                                             0x2b, 0x00, 0x0d, 0xf0, 0x05, 0xb1};

// GICD_SGIR (4.3.15): TargetListFilter [25:24], CPUTargetList [23:16],
// SGIINTID [3:0].
enum class SgiFilter : std::uint8_t { TargetList = 0, AllButSelf = 1, Self = 2, Reserved = 3 };

// -- list registers (5.3.9 "List Registers, GICH_LRn") --------------------------------
// VirtualID [9:0]; PhysicalID [19:10] with HW = 1, otherwise EOI [19] and,
// for an SGI, the requesting CPUID [12:10]; Priority [27:23] (the top five
// bits of an 8-bit priority); State [29:28]; Grp1 [30]; HW [31].
enum class LrState : std::uint8_t { Invalid = 0, Pending = 1, Active = 2, PendingActive = 3 };

inline constexpr std::uint8_t kDefaultPriority = 0xa0;

constexpr bool lr_hw(std::uint32_t lr) { return (lr >> 31) != 0; }

constexpr std::uint32_t lr_value(std::uint32_t vintid, LrState state, bool group1, bool hw,
                                 std::uint32_t pintid_or_cpuid = 0,
                                 std::uint8_t priority = kDefaultPriority) {
    const std::uint32_t id_field = hw ? (pintid_or_cpuid & 0x3ff) : (pintid_or_cpuid & 0x7);
    return (hw ? 1u << 31 : 0) | (group1 ? 1u << 30 : 0) | static_cast<std::uint32_t>(state) << 28 |
           static_cast<std::uint32_t>(priority >> 3) << 23 | id_field << 10 | (vintid & 0x3ff);
}
// EOI [19] of a software (HW = 0) list register: the guest's EOI of the
// interrupt raises the EOI maintenance interrupt (GICH_MISR.EOI, GICH_EISR),
// the moment for the hypervisor to deactivate a physical interrupt behind it.
inline constexpr std::uint32_t kLrEoi = 1u << 19;
constexpr bool lr_eoi(std::uint32_t lr) { return !lr_hw(lr) && (lr & kLrEoi) != 0; }

constexpr LrState lr_state(std::uint32_t lr) { return static_cast<LrState>((lr >> 28) & 3); }
constexpr std::uint32_t lr_vintid(std::uint32_t lr) { return lr & 0x3ff; }
constexpr bool lr_group1(std::uint32_t lr) { return ((lr >> 30) & 1) != 0; }
// The 8-bit priority the five stored bits stand for.
constexpr std::uint8_t lr_priority(std::uint32_t lr) {
    return static_cast<std::uint8_t>(((lr >> 23) & 0x1f) << 3);
}
// The requesting CPU of a software (HW = 0) SGI.
constexpr unsigned lr_cpuid(std::uint32_t lr) { return (lr >> 10) & 7; }

// GICH_HCR (5.3.1): En [0], UIE [1] (underflow: at most one valid LR).
inline constexpr std::uint32_t kHcrEn = 1u << 0;
inline constexpr std::uint32_t kHcrUie = 1u << 1;

// True when a pending interrupt in `lr` would be signalled by the virtual
// CPU interface whose GICH_VMCR (5.3.3) is `vmcr`: its group enabled
// (VMGrp0En [0], VMGrp1En [1]) and its priority above VMPriMask [31:27].
constexpr bool lr_signals(std::uint32_t lr, std::uint32_t vmcr) {
    const LrState s = lr_state(lr);
    if (s != LrState::Pending && s != LrState::PendingActive) return false;
    const bool enabled = ((vmcr >> (lr_group1(lr) ? 1 : 0)) & 1) != 0;
    return enabled && ((lr >> 23) & 0x1f) < ((vmcr >> 27) & 0x1f);
}

// Thirty-two interrupts' state.
struct IrqBank {
    std::uint32_t group;    // IGROUPR: 1 = Group 1
    std::uint32_t enable;   // ISENABLER/ICENABLER
    std::uint32_t pending;  // pending in the model (not yet handed to a list register)
    std::uint32_t active;
    std::uint32_t edge;  // ICFGR Int_config[1]: 1 = edge-triggered
    std::uint8_t priority[32];
};

// What one write changed: bank `bank` (0 = vCPU `vcpu`'s private INTIDs),
// its bits in `enable_changed`/`pending_set`; an SPI's targets; the vCPUs
// that got an SGI (GICD_SGIR, SPENDSGIR); the distributor's enables.
struct WriteEffect {
    unsigned vcpu = 0;
    unsigned bank = 0;
    std::uint32_t enable_changed = 0;
    std::uint32_t pending_set = 0;
    std::uint32_t target_changed_intid = 0;  // 0: none (0 is never an SPI)
    std::uint8_t sgi_targets = 0;            // bit i: vCPU i has a new SGI pending
    bool ctlr_changed = false;
};

struct Access {
    bool handled = false;  // the address lies in this VM's GICD frame
    std::uint64_t value = 0;
    WriteEffect effect{};
};

// -- the list registers' share of the distributor's state ---------------------------
// An interrupt the hypervisor has put into a list register has left the
// model, but the guest must still read it as pending or active in GICD
// (4.3.7 GICD_ISPENDRn, 4.3.9 GICD_ISACTIVERn, 4.3.14 GICD_SPENDSGIRn), and
// clearing it there must reach the list register. These act on the reading
// vCPU's list registers (`lrs`, `n` of them): the ones its CPU holds.

// `value`, read by a `width`-byte access at GICD offset `off`, with the
// state the list registers hold folded in.
constexpr std::uint64_t fold_list_registers(std::uint64_t off, unsigned width, std::uint64_t value,
                                            const std::uint32_t* lrs, unsigned n) {
    const bool set_or_clear_pending = off >= gicd::ISPENDR && off < gicd::ISACTIVER;
    const bool set_or_clear_active = off >= gicd::ISACTIVER && off < gicd::IPRIORITYR;
    const bool sgi_pending = off >= gicd::CPENDSGIR && off < gicd::SPENDSGIR + 16;
    if ((set_or_clear_pending || set_or_clear_active) && (width != 4 || (off & 3) != 0)) {
        return value;
    }
    for (unsigned i = 0; i < n; ++i) {
        const LrState s = lr_state(lrs[i]);
        const std::uint32_t id = lr_vintid(lrs[i]);
        const bool pending = s == LrState::Pending || s == LrState::PendingActive;
        const bool active = s == LrState::Active || s == LrState::PendingActive;
        if (set_or_clear_pending || set_or_clear_active) {
            const std::uint64_t first = ((off & 0x7f) / 4) * 32;
            if (id < first || id >= first + 32) continue;
            if ((set_or_clear_pending && pending) || (set_or_clear_active && active)) {
                value |= 1ull << (id - first);
            }
        } else if (sgi_pending && pending && id < 16 && !lr_hw(lrs[i])) {
            const std::uint64_t first = (off - gicd::CPENDSGIR) % 16;
            if (id >= first && id < first + width) {
                value |= static_cast<std::uint64_t>(1u << lr_cpuid(lrs[i])) << (8 * (id - first));
            }
        }
    }
    return value;
}

// A write of `value` (`width` bytes at GICD offset `off`) to ICPENDR or
// CPENDSGIR takes the pending state out of the list registers it names;
// returns which of them changed (bit i = lrs[i]), to be written back.
constexpr std::uint64_t clear_pending_in_list_registers(std::uint64_t off, unsigned width,
                                                        std::uint32_t value, std::uint32_t* lrs,
                                                        unsigned n) {
    std::uint64_t changed = 0;
    const bool icpendr =
        off >= gicd::ICPENDR && off < gicd::ISACTIVER && width == 4 && (off & 3) == 0;
    const bool cpendsgir = off >= gicd::CPENDSGIR && off < gicd::SPENDSGIR;
    if (!icpendr && !cpendsgir) return 0;
    for (unsigned i = 0; i < n && i < 64; ++i) {
        const LrState s = lr_state(lrs[i]);
        if (s != LrState::Pending && s != LrState::PendingActive) continue;
        const std::uint32_t id = lr_vintid(lrs[i]);
        bool hit = false;
        if (icpendr) {
            const std::uint32_t first = static_cast<std::uint32_t>((off - gicd::ICPENDR) / 4) * 32;
            // SGIs are cleared through CPENDSGIR only (ICPENDR0's SGI bits are WI).
            hit = id >= 16 && id >= first && id < first + 32 && ((value >> (id - first)) & 1) != 0;
        } else if (id < 16 && !lr_hw(lrs[i])) {
            const auto first = static_cast<std::uint32_t>(off - gicd::CPENDSGIR);
            hit = id >= first && id < first + width &&
                  ((value >> (8 * (id - first) + lr_cpuid(lrs[i]))) & 1) != 0;
        }
        if (!hit) continue;
        lrs[i] &= ~(static_cast<std::uint32_t>(LrState::Pending) << 28);
        changed |= 1ull << i;
    }
    return changed;
}

class Distributor {
public:
    // A distributor at reset (4.3.x reset values): disabled, every interrupt
    // Group 0, disabled but the SGIs (always enabled), priority 0, SPIs
    // level-sensitive and targeting no CPU.
    void reset(unsigned num_vcpus) {
        *this = Distributor{};
        num_vcpus_ = num_vcpus == 0 ? 1 : num_vcpus > kMaxVcpus ? kMaxVcpus : num_vcpus;
        for (unsigned i = 0; i < num_vcpus_; ++i) {
            private_[i].enable = 0xffff;
            private_[i].edge = 0xffff;
        }
    }

    unsigned num_vcpus() const { return num_vcpus_; }
    std::uint32_t ctlr() const { return ctlr_; }

    bool claims(std::uint64_t addr) const {
        return addr >= kGicdBase && addr < kGicdBase + kGicdSize;
    }

    // An access by vCPU `vcpu` (the banked registers are its own).
    Access read(unsigned vcpu, std::uint64_t addr, unsigned width) const {
        Access a;
        a.handled = claims(addr);
        if (!a.handled || vcpu >= num_vcpus_) return a;
        a.value = read_reg(vcpu, addr - kGicdBase, width);
        return a;
    }

    Access write(unsigned vcpu, std::uint64_t addr, unsigned width, std::uint64_t value) {
        Access a;
        a.handled = claims(addr);
        if (!a.handled || vcpu >= num_vcpus_) return a;
        a.effect = write_reg(vcpu, addr - kGicdBase, width, static_cast<std::uint32_t>(value));
        a.effect.vcpu = vcpu;
        return a;
    }

    // -- the hypervisor's view ------------------------------------------------

    const IrqBank* bank_of(unsigned vcpu, std::uint32_t intid) const {
        if (intid < 32) return vcpu < num_vcpus_ ? &private_[vcpu] : nullptr;
        return intid < kNumIntids ? &spis_[intid / 32 - 1] : nullptr;
    }

    bool enabled(unsigned vcpu, std::uint32_t intid) const {
        const IrqBank* b = bank_of(vcpu, intid);
        return b != nullptr && ((b->enable >> (intid % 32)) & 1) != 0;
    }
    bool group1(unsigned vcpu, std::uint32_t intid) const {
        const IrqBank* b = bank_of(vcpu, intid);
        return b != nullptr && ((b->group >> (intid % 32)) & 1) != 0;
    }
    std::uint8_t priority(unsigned vcpu, std::uint32_t intid) const {
        const IrqBank* b = bank_of(vcpu, intid);
        return b != nullptr ? b->priority[intid % 32] : 0xff;
    }

    // May the interrupt be signalled to vCPU `vcpu` now: enabled, its group
    // enabled in GICD_CTLR, and (an SPI) targeting that vCPU.
    bool deliverable(unsigned vcpu, std::uint32_t intid) const {
        if (!enabled(vcpu, intid)) return false;
        const std::uint32_t grp =
            group1(vcpu, intid) ? gicd::kCtlrEnableGrp1 : gicd::kCtlrEnableGrp0;
        if ((ctlr_ & grp) == 0) return false;
        return intid < 32 || ((targets(intid) >> vcpu) & 1) != 0;
    }

    // GICD_ITARGETSR of SPI `intid`: bit i = vCPU i. A uniprocessor GIC
    // sends every interrupt to its one CPU (4.3.12: the registers are then
    // RAZ/WI).
    std::uint8_t targets(std::uint32_t intid) const {
        if (intid < 32 || intid >= kNumIntids) return 0;
        return num_vcpus_ == 1 ? 1 : targets_[intid - 32];
    }

    // The vCPU an SPI is taken by: the lowest one it targets (a GICv2
    // signals a multi-target SPI to all of them and the first to acknowledge
    // takes it; one vCPU taking it is what any of them could see), or vCPU 0
    // when it targets none.
    unsigned route_of(std::uint32_t intid) const {
        const std::uint8_t t = targets(intid);
        for (unsigned i = 0; i < num_vcpus_; ++i) {
            if (((t >> i) & 1) != 0) return i;
        }
        return 0;
    }

    // Takes the lowest pending, deliverable INTID for vCPU `vcpu` out of the
    // model, for a list register: its SGIs (with the requesting vCPU in
    // `source`), its PPIs, then SPIs it takes. False when there is none.
    bool take_pending(unsigned vcpu, std::uint32_t& intid, unsigned& source) {
        if (vcpu >= num_vcpus_) return false;
        source = 0;
        for (std::uint32_t i = 0; i < 16; ++i) {
            std::uint8_t& src = sgi_sources_[vcpu][i];
            if (src == 0 || !deliverable(vcpu, i)) continue;
            source = static_cast<unsigned>(__builtin_ctz(src));
            src = static_cast<std::uint8_t>(src & (src - 1));
            if (src == 0) private_[vcpu].pending &= ~(1u << i);
            intid = i;
            return true;
        }
        for (std::uint32_t i = 16; i < kNumIntids; ++i) {
            IrqBank& b = i < 32 ? private_[vcpu] : spis_[i / 32 - 1];
            const std::uint32_t bit = 1u << (i % 32);
            if ((b.pending & bit) == 0) continue;
            if (i >= 32 && route_of(i) != vcpu) continue;
            if (!deliverable(vcpu, i)) continue;
            b.pending &= ~bit;
            intid = i;
            return true;
        }
        return false;
    }

    // Marks an interrupt pending again in the model (one that found no free
    // list register); for an SGI, from vCPU `source`.
    void set_pending(unsigned vcpu, std::uint32_t intid, unsigned source = 0) {
        if (vcpu >= num_vcpus_) return;
        if (intid < 16) {
            pend_sgi(vcpu, intid, source);
            return;
        }
        if (IrqBank* b = bank_mut(vcpu, intid)) b->pending |= 1u << (intid % 32);
    }

    // SGI `intid` pending on vCPU `vcpu`, from which vCPUs (bit i = vCPU i).
    std::uint8_t sgi_sources(unsigned vcpu, std::uint32_t intid) const {
        return vcpu < num_vcpus_ && intid < 16 ? sgi_sources_[vcpu][intid] : 0;
    }

private:
    IrqBank* bank_mut(unsigned vcpu, std::uint32_t intid) {
        return const_cast<IrqBank*>(bank_of(vcpu, intid));
    }

    void pend_sgi(unsigned target, std::uint32_t sgi, unsigned source) {
        sgi_sources_[target][sgi] |= static_cast<std::uint8_t>(1u << (source & 7));
        private_[target].pending |= 1u << sgi;
    }

    // The 32-bit field behind a one-bit-per-interrupt register block.
    static std::uint32_t& bit_field(IrqBank& b, std::uint64_t block) {
        switch (block) {
            case gicd::IGROUPR: return b.group;
            case gicd::ISENABLER:
            case gicd::ICENABLER: return b.enable;
            case gicd::ISPENDR:
            case gicd::ICPENDR: return b.pending;
            default: return b.active;  // ISACTIVER, ICACTIVER
        }
    }

    // The private bank's read-only bits of each block (4.3.x): SGIs are
    // always enabled (their ISENABLER/ICENABLER bits are RAO/WI, as QEMU
    // implements them) and become pending only through GICD_SGIR and
    // SPENDSGIR (their ISPENDR/ICPENDR bits are WI).
    static std::uint32_t writable_private(std::uint64_t block) {
        switch (block) {
            case gicd::ISENABLER:
            case gicd::ICENABLER:
            case gicd::ISPENDR:
            case gicd::ICPENDR: return 0xffff0000u;
            default: return ~0u;
        }
    }

    std::uint32_t read_bits(unsigned vcpu, std::uint64_t block, unsigned n) const {
        IrqBank& b = const_cast<IrqBank&>(n == 0 ? private_[vcpu] : spis_[n - 1]);
        return bit_field(b, block);
    }

    WriteEffect write_bits(unsigned vcpu, std::uint64_t block, unsigned n, std::uint32_t value) {
        WriteEffect e;
        IrqBank& b = n == 0 ? private_[vcpu] : spis_[n - 1];
        if (n == 0) value &= writable_private(block);
        std::uint32_t& field = bit_field(b, block);
        const std::uint32_t before = field;
        switch (block) {
            case gicd::ISENABLER:
            case gicd::ISPENDR:
            case gicd::ISACTIVER: field |= value; break;
            case gicd::ICENABLER:
            case gicd::ICPENDR:
            case gicd::ICACTIVER: field &= ~value; break;
            default: field = value; break;  // IGROUPR
        }
        if (block == gicd::ISENABLER || block == gicd::ICENABLER) e.enable_changed = before ^ field;
        if (block == gicd::ISPENDR) e.pending_set = field & ~before;
        e.bank = n;
        return e;
    }

    // The byte of GICD_ITARGETSR for `intid` as vCPU `vcpu` reads it: SGIs
    // and PPIs read as that CPU's own bit (4.3.12: "each field returns a
    // value that corresponds only to the processor reading the register").
    std::uint8_t target_byte(unsigned vcpu, std::uint32_t intid) const {
        if (num_vcpus_ == 1) return 0;
        if (intid < 32) return static_cast<std::uint8_t>(1u << vcpu);
        return targets_[intid - 32];
    }

    std::uint32_t read_cfg(unsigned vcpu, unsigned reg) const {
        // Two bits per interrupt; Int_config[1] (the odd bit) = edge; the
        // even bit is reserved in GICv2 (RAZ).
        const std::uint32_t edge = reg < 2 ? private_[vcpu].edge : spis_[reg / 2 - 1].edge;
        std::uint32_t v = 0;
        for (unsigned i = 0; i < 16; ++i) {
            if (((edge >> ((reg % 2) * 16 + i)) & 1) != 0) v |= 2u << (2 * i);
        }
        return v;
    }
    void write_cfg(unsigned vcpu, unsigned reg, std::uint32_t v) {
        if (reg == 0) return;  // the SGIs' ICFGR0 is read-only: always edge
        std::uint32_t& edge = reg < 2 ? private_[vcpu].edge : spis_[reg / 2 - 1].edge;
        for (unsigned i = 0; i < 16; ++i) {
            const std::uint32_t bit = 1u << ((reg % 2) * 16 + i);
            edge = ((v >> (2 * i + 1)) & 1) != 0 ? edge | bit : edge & ~bit;
        }
    }

    std::uint32_t typer() const {
        // ITLinesNumber [4:0], CPUNumber [7:5]; SecurityExtn [10] = 0.
        return (kNumIntids / 32 - 1) | ((num_vcpus_ - 1u) & 7u) << 5;
    }

    // One byte of a byte-accessible block: IPRIORITYR, ITARGETSR, CPENDSGIR,
    // SPENDSGIR (4.1.4: these are byte-accessible; the rest word-only).
    bool read_byte_reg(unsigned vcpu, std::uint64_t off, std::uint8_t& out) const {
        if (off >= gicd::IPRIORITYR && off < gicd::IPRIORITYR + kNumIntids) {
            const auto intid = static_cast<std::uint32_t>(off - gicd::IPRIORITYR);
            out = bank_of(vcpu, intid)->priority[intid % 32];
            return true;
        }
        if (off >= gicd::ITARGETSR && off < gicd::ITARGETSR + kNumIntids) {
            out = target_byte(vcpu, static_cast<std::uint32_t>(off - gicd::ITARGETSR));
            return true;
        }
        if (off >= gicd::CPENDSGIR && off < gicd::SPENDSGIR + 16) {
            out = sgi_sources_[vcpu][(off - gicd::CPENDSGIR) % 16];
            return true;
        }
        return false;
    }

    bool write_byte_reg(unsigned vcpu, std::uint64_t off, std::uint8_t v, WriteEffect& e) {
        if (off >= gicd::IPRIORITYR && off < gicd::IPRIORITYR + kNumIntids) {
            const auto intid = static_cast<std::uint32_t>(off - gicd::IPRIORITYR);
            bank_mut(vcpu, intid)->priority[intid % 32] = v;
            return true;
        }
        if (off >= gicd::ITARGETSR && off < gicd::ITARGETSR + kNumIntids) {
            const auto intid = static_cast<std::uint32_t>(off - gicd::ITARGETSR);
            // ITARGETSR0-7 (SGIs, PPIs) are read-only; bits of CPU
            // interfaces that do not exist are RAZ/WI.
            if (intid >= 32 && num_vcpus_ > 1) {
                const auto mask = static_cast<std::uint8_t>((1u << num_vcpus_) - 1);
                if (targets_[intid - 32] != (v & mask)) e.target_changed_intid = intid;
                targets_[intid - 32] = v & mask;
            }
            return true;
        }
        if (off >= gicd::CPENDSGIR && off < gicd::SPENDSGIR + 16) {
            const auto sgi = static_cast<unsigned>((off - gicd::CPENDSGIR) % 16);
            const auto mask = static_cast<std::uint8_t>((1u << num_vcpus_) - 1);
            std::uint8_t& src = sgi_sources_[vcpu][sgi];
            if (off >= gicd::SPENDSGIR) {
                if ((v & mask & ~src) != 0) e.sgi_targets |= static_cast<std::uint8_t>(1u << vcpu);
                src |= v & mask;
            } else {
                src = static_cast<std::uint8_t>(src & ~v);
            }
            private_[vcpu].pending = src != 0 ? private_[vcpu].pending | (1u << sgi)
                                              : private_[vcpu].pending & ~(1u << sgi);
            return true;
        }
        return false;
    }

    std::uint64_t read_reg(unsigned vcpu, std::uint64_t off, unsigned width) const {
        std::uint8_t byte = 0;
        if (width == 1 && read_byte_reg(vcpu, off, byte)) return byte;
        if (width != 4 || (off & 3) != 0) return 0;
        if (read_byte_reg(vcpu, off, byte)) {
            std::uint32_t v = byte;
            for (unsigned i = 1; i < 4; ++i) {
                read_byte_reg(vcpu, off + i, byte);
                v |= static_cast<std::uint32_t>(byte) << (8 * i);
            }
            return v;
        }
        if (off >= gicd::IGROUPR && off < gicd::IPRIORITYR) {
            const std::uint64_t block = off & ~0x7full;
            const auto n = static_cast<unsigned>((off & 0x7f) / 4);
            return n < kNumBanks ? read_bits(vcpu, block, n) : 0;
        }
        if (off >= gicd::ICFGR && off < gicd::ICFGR + kNumIntids / 4) {
            return read_cfg(vcpu, static_cast<unsigned>((off - gicd::ICFGR) / 4));
        }
        if (off >= gicd::PIDR4 && off < gicd::PIDR4 + 4 * sizeof kIdRegs) {
            return kIdRegs[(off - gicd::PIDR4) / 4];
        }
        switch (off) {
            case gicd::CTLR: return ctlr_;
            case gicd::TYPER: return typer();
            case gicd::IIDR: return kIidr;
            default: return 0;  // GICD_SGIR is write-only; the rest RAZ
        }
    }

    WriteEffect write_reg(unsigned vcpu, std::uint64_t off, unsigned width, std::uint32_t v) {
        WriteEffect e;
        if (width == 1) {
            write_byte_reg(vcpu, off, static_cast<std::uint8_t>(v), e);
            return e;
        }
        if (width != 4 || (off & 3) != 0) return e;
        WriteEffect probe;
        if (write_byte_reg(vcpu, off, static_cast<std::uint8_t>(v), probe)) {
            e = probe;
            for (unsigned i = 1; i < 4; ++i) {
                WriteEffect more;
                write_byte_reg(vcpu, off + i, static_cast<std::uint8_t>(v >> (8 * i)), more);
                if (more.target_changed_intid != 0 && e.target_changed_intid == 0) {
                    e.target_changed_intid = more.target_changed_intid;
                }
                e.sgi_targets |= more.sgi_targets;
            }
            // One word covers four SPIs: the firmware re-targets them all.
            if (e.target_changed_intid != 0) {
                e.target_changed_intid = static_cast<std::uint32_t>(off - gicd::ITARGETSR);
            }
            return e;
        }
        if (off >= gicd::IGROUPR && off < gicd::IPRIORITYR) {
            const std::uint64_t block = off & ~0x7full;
            const auto n = static_cast<unsigned>((off & 0x7f) / 4);
            return n < kNumBanks ? write_bits(vcpu, block, n, v) : e;
        }
        if (off >= gicd::ICFGR && off < gicd::ICFGR + kNumIntids / 4) {
            write_cfg(vcpu, static_cast<unsigned>((off - gicd::ICFGR) / 4), v);
            return e;
        }
        if (off == gicd::CTLR) {
            const std::uint32_t before = ctlr_;
            ctlr_ = v & (gicd::kCtlrEnableGrp0 | gicd::kCtlrEnableGrp1);
            e.ctlr_changed = before != ctlr_;
        } else if (off == gicd::SGIR) {
            e.sgi_targets = send_sgi(vcpu, v);
        }
        return e;
    }

    // GICD_SGIR: marks SGI [3:0] pending from `sender` on the vCPUs the
    // filter names; returns them (bit i = vCPU i).
    std::uint8_t send_sgi(unsigned sender, std::uint32_t v) {
        const std::uint32_t sgi = v & 0xf;
        const auto all = static_cast<std::uint8_t>((1u << num_vcpus_) - 1);
        std::uint8_t targets = 0;
        switch (static_cast<SgiFilter>((v >> 24) & 3)) {
            case SgiFilter::TargetList: targets = static_cast<std::uint8_t>(v >> 16) & all; break;
            case SgiFilter::AllButSelf:
                targets = static_cast<std::uint8_t>(all & ~(1u << sender));
                break;
            case SgiFilter::Self: targets = static_cast<std::uint8_t>(1u << sender); break;
            case SgiFilter::Reserved: break;  // 4.3.15: reserved, no SGI is sent
        }
        for (unsigned t = 0; t < num_vcpus_; ++t) {
            if (((targets >> t) & 1) != 0) pend_sgi(t, sgi, sender);
        }
        return targets;
    }

    unsigned num_vcpus_ = 1;
    std::uint32_t ctlr_ = 0;
    IrqBank private_[kMaxVcpus] = {};
    IrqBank spis_[kNumBanks - 1] = {};
    std::uint8_t targets_[kNumIntids - 32] = {};
    std::uint8_t sgi_sources_[kMaxVcpus][16] = {};
};

}  // namespace armvcpu::vgic2
