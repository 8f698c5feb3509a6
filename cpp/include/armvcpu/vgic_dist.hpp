// The guest's GICv3 distributor (GICD) and redistributors (GICR), emulated:
// the guest's accesses to their frames are stage-2 faults, and this model
// answers them. Together with the virtual CPU interface (list registers,
// vgic.hpp) it is the vGICv3 an unmodified Linux drives.
//
// The model is a GIC with a single Security state (GICD_CTLR.DS = 1),
// affinity routing always on (ARE RAO/WI), no LPIs and no ITS, and
// kNumIntids interrupts: SGIs 0-15 and PPIs 16-31 per vCPU, SPIs 32 and up
// shared. Register offsets, reset values and access rules: GICv3
// architecture specification (IHI 0069H), chapter 12 "The GIC Programmers'
// Model". Registers the model does not implement read as zero and ignore
// writes (the specification's RAZ/WI for unimplemented space).
//
// It only keeps state; it does not touch hardware. Each write says what it
// changed (WriteEffect), so the hypervisor can mirror enables of interrupts
// that are backed by physical ones (a passed-through device's SPI, the
// virtual timer's PPI) and inject what became pending. Callers serialise
// accesses (one lock per VM).
#pragma once

#include <cstddef>
#include <cstdint>

namespace armvcpu::vgic {

// QEMU virt's GICv3 frames, which the guest sees at the same addresses.
inline constexpr std::uint64_t kGicdBase = 0x0800'0000;
inline constexpr std::uint64_t kGicdSize = 0x1'0000;
inline constexpr std::uint64_t kGicrBase = 0x080A'0000;
inline constexpr std::uint64_t kGicrStride = 0x2'0000;    // RD_base + SGI_base, 64 KiB each
inline constexpr std::uint64_t kGicrSgiFrame = 0x1'0000;  // SGI_base within a redistributor
inline constexpr unsigned kMaxVcpus = 8;
// INTIDs 0..255: GICD_TYPER.ITLinesNumber = 7 (32 * (N + 1) INTIDs), as
// QEMU virt's own GICv3 reports it. Its devices use SPIs 32..79 (UART 33,
// RTC 34, virtio-mmio 48..79).
inline constexpr unsigned kNumIntids = 256;
inline constexpr unsigned kNumSpis = kNumIntids - 32;
inline constexpr unsigned kNumBanks = kNumIntids / 32;  // bank 0: the private INTIDs

// Distributor register offsets (IHI 0069H, 12.9 "The GIC Distributor register map").
namespace gicd {
inline constexpr std::uint64_t CTLR = 0x0000;
inline constexpr std::uint64_t TYPER = 0x0004;
inline constexpr std::uint64_t IIDR = 0x0008;
inline constexpr std::uint64_t TYPER2 = 0x000C;
inline constexpr std::uint64_t STATUSR = 0x0010;
inline constexpr std::uint64_t SETSPI_NSR = 0x0040;
inline constexpr std::uint64_t CLRSPI_NSR = 0x0048;
inline constexpr std::uint64_t IGROUPR = 0x0080;
inline constexpr std::uint64_t ISENABLER = 0x0100;
inline constexpr std::uint64_t ICENABLER = 0x0180;
inline constexpr std::uint64_t ISPENDR = 0x0200;
inline constexpr std::uint64_t ICPENDR = 0x0280;
inline constexpr std::uint64_t ISACTIVER = 0x0300;
inline constexpr std::uint64_t ICACTIVER = 0x0380;
inline constexpr std::uint64_t IPRIORITYR = 0x0400;
inline constexpr std::uint64_t ITARGETSR = 0x0800;
inline constexpr std::uint64_t ICFGR = 0x0C00;
inline constexpr std::uint64_t IGRPMODR = 0x0D00;
inline constexpr std::uint64_t IROUTER = 0x6000;
inline constexpr std::uint64_t PIDR2 = 0xFFE8;
// GICD_CTLR with DS = 1 (12.9.4): EnableGrp0 [0], EnableGrp1 [1], ARE [4],
// DS [6], RWP [31].
inline constexpr std::uint32_t kCtlrEnableGrp0 = 1u << 0;
inline constexpr std::uint32_t kCtlrEnableGrp1 = 1u << 1;
inline constexpr std::uint32_t kCtlrAre = 1u << 4;
inline constexpr std::uint32_t kCtlrDs = 1u << 6;
// GICD_IROUTER<n>.Interrupt_Routing_Mode [31]: any participating PE.
inline constexpr std::uint64_t kIrouterIrm = 1ull << 31;
}  // namespace gicd

// Redistributor register offsets (12.10), RD_base and SGI_base frames.
namespace gicr {
inline constexpr std::uint64_t CTLR = 0x0000;
inline constexpr std::uint64_t IIDR = 0x0004;
inline constexpr std::uint64_t TYPER = 0x0008;
inline constexpr std::uint64_t STATUSR = 0x0010;
inline constexpr std::uint64_t WAKER = 0x0014;
inline constexpr std::uint64_t PROPBASER = 0x0070;
inline constexpr std::uint64_t PENDBASER = 0x0078;
inline constexpr std::uint64_t PIDR2 = 0xFFE8;
inline constexpr std::uint64_t IGROUPR0 = 0x0080;  // SGI_base frame offsets from here
inline constexpr std::uint64_t ISENABLER0 = 0x0100;
inline constexpr std::uint64_t ICENABLER0 = 0x0180;
inline constexpr std::uint64_t ISPENDR0 = 0x0200;
inline constexpr std::uint64_t ICPENDR0 = 0x0280;
inline constexpr std::uint64_t ISACTIVER0 = 0x0300;
inline constexpr std::uint64_t ICACTIVER0 = 0x0380;
inline constexpr std::uint64_t IPRIORITYR = 0x0400;
inline constexpr std::uint64_t ICFGR0 = 0x0C00;
inline constexpr std::uint64_t ICFGR1 = 0x0C04;
inline constexpr std::uint64_t IGRPMODR0 = 0x0D00;
// GICR_WAKER (12.11.44): ProcessorSleep [1], ChildrenAsleep [2].
inline constexpr std::uint32_t kWakerProcessorSleep = 1u << 1;
inline constexpr std::uint32_t kWakerChildrenAsleep = 1u << 2;
// GICR_TYPER (12.11.37): Last [4], Processor_Number [23:8], Affinity_Value [63:32].
inline constexpr std::uint64_t kTyperLast = 1u << 4;
}  // namespace gicr

// The PIDR2 both frames report: ArchRev [7:4] = 3 (GICv3), and bits [3:0]
// JEP106 identity code bits [6:4] of Arm (0x3B) with JEDEC used (bit 3).
inline constexpr std::uint32_t kPidr2 = 0x3B;
// GICD/GICR_IIDR: Implementer [11:0] = Arm's JEP106 code 0x43B, ProductID
// 0, so no guest applies a quirk meant for a real GIC-500/600.
inline constexpr std::uint32_t kIidr = 0x43B;

// GICR_CTLR as QEMU's GICv3 presents it: CES [1] (GICv3.1's "clear
// EnableLPIs supported"); everything else 0.
inline constexpr std::uint32_t kGicrCtlr = 1u << 1;

// Thirty-two interrupts' state: one bit each, a byte of priority each.
struct IrqBank {
    std::uint32_t group;    // IGROUPR: 1 = Group 1
    std::uint32_t enable;   // ISENABLER/ICENABLER
    std::uint32_t pending;  // pending in the model (not yet handed to a list register)
    std::uint32_t active;
    std::uint32_t edge;    // ICFGR Int_config[1]: 1 = edge-triggered
    std::uint32_t grpmod;  // IGRPMODR (no effect with DS = 1; kept for read-back)
    std::uint8_t priority[32];
};

// Which interrupts one write changed: bank `bank` (0 = vCPU `vcpu`'s private
// INTIDs), bits in `enable_changed` / `pending_set`, or an SPI's route.
// The set/clear-pending and -active writes also name every bit written as
// 1 (`pending_cleared`, `active_set`, `active_cleared`), whatever the model
// held: the interrupt may be in a list register, where the hypervisor
// applies the write.
struct WriteEffect {
    unsigned vcpu = 0;
    unsigned bank = 0;
    std::uint32_t enable_changed = 0;
    std::uint32_t pending_set = 0;
    std::uint32_t pending_cleared = 0;
    std::uint32_t active_set = 0;
    std::uint32_t active_cleared = 0;
    std::uint32_t route_changed_intid = 0;  // 0: none (0 is never an SPI)
};

// What the model alone does not know, for one access: the state of the
// interrupts held in list registers, and the hardware-linked interrupts
// whose input line is asserted (a passed-through device's level SPI, a
// timer PPI whose condition is met). One bit per INTID, per bank; bank 0
// is the private INTIDs of the redistributor accessed. Reads of
// ISPENDR/ICPENDR and ISACTIVER/ICACTIVER return the model's state OR'd
// with these, as the GIC's true state (IHI 0069H 12.9.x: "reads return the
// pending/active state"; a level interrupt whose line is asserted is pending).
struct LiveState {
    std::uint32_t lr_pending[kNumBanks] = {};
    std::uint32_t lr_active[kNumBanks] = {};
    std::uint32_t line[kNumBanks] = {};
};

// What an access to the GIC's frames turned out to be.
struct Access {
    bool handled = false;  // the address lies in a GICD/GICR frame of this VM
    std::uint64_t value = 0;
    WriteEffect effect{};
};

class Distributor {
public:
    // A distributor at reset (12.9.x reset values: everything disabled,
    // Group 0, level, priority 0, routed to Aff 0) for vCPUs whose MPIDR
    // affinity fields are mpidr[0..num_vcpus).
    void reset(unsigned num_vcpus, const std::uint64_t* mpidr) {
        *this = Distributor{};
        num_vcpus_ = num_vcpus > kMaxVcpus ? kMaxVcpus : num_vcpus;
        for (unsigned i = 0; i < num_vcpus_; ++i) {
            affinity_[i] = mpidr[i] & 0xff00ffffffull;
            redist_[i].waker = gicr::kWakerProcessorSleep | gicr::kWakerChildrenAsleep;
            // SGIs are always edge-triggered (GICR_ICFGR0 is read-only).
            redist_[i].bank.edge = 0xffff;
        }
    }

    unsigned num_vcpus() const { return num_vcpus_; }
    std::uint32_t ctlr() const { return ctlr_; }

    // True when the address falls in this VM's GICD or GICR frames.
    bool claims(std::uint64_t addr) const {
        return (addr >= kGicdBase && addr < kGicdBase + kGicdSize) ||
               (addr >= kGicrBase && addr < kGicrBase + num_vcpus_ * kGicrStride);
    }

    // A read; `live` folds in what the list registers and hardware lines
    // hold (none: the model's state alone).
    Access read(std::uint64_t addr, unsigned width, const LiveState* live = nullptr) const {
        Access a;
        if (!claims(addr) || !valid_width(width)) {
            a.handled = claims(addr);
            return a;
        }
        a.handled = true;
        static constexpr LiveState kNone{};
        const LiveState& l = live != nullptr ? *live : kNone;
        if (addr < kGicdBase + kGicdSize) {
            a.value = read_gicd(addr - kGicdBase, width, l);
        } else {
            const std::uint64_t off = addr - kGicrBase;
            a.value =
                read_gicr(static_cast<unsigned>(off / kGicrStride), off % kGicrStride, width, l);
        }
        return a;
    }

    // The redistributor (vCPU) an address in the GICR frames belongs to, or
    // kMaxVcpus for the distributor's frame and anything else.
    unsigned redistributor_of(std::uint64_t addr) const {
        if (addr < kGicrBase || addr >= kGicrBase + num_vcpus_ * kGicrStride) return kMaxVcpus;
        return static_cast<unsigned>((addr - kGicrBase) / kGicrStride);
    }

    // True when the INTID is configured edge-triggered.
    bool edge(unsigned vcpu, std::uint32_t intid) const {
        const IrqBank* b = bank_of(vcpu, intid);
        return b != nullptr && ((b->edge >> (intid % 32)) & 1) != 0;
    }

    Access write(std::uint64_t addr, unsigned width, std::uint64_t value) {
        Access a;
        a.handled = claims(addr);
        if (!a.handled || !valid_width(width)) return a;
        if (addr < kGicdBase + kGicdSize) {
            a.effect = write_gicd(addr - kGicdBase, width, value);
        } else {
            const std::uint64_t off = addr - kGicrBase;
            const auto vcpu = static_cast<unsigned>(off / kGicrStride);
            a.effect = write_gicr(vcpu, off % kGicrStride, width, value);
            a.effect.vcpu = vcpu;
        }
        return a;
    }

    // -- the hypervisor's view ------------------------------------------------

    // The bank holding `intid` for vCPU `vcpu` (its own for SGIs and PPIs).
    const IrqBank* bank_of(unsigned vcpu, std::uint32_t intid) const {
        if (intid < 32) return vcpu < num_vcpus_ ? &redist_[vcpu].bank : nullptr;
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

    // May the interrupt be signalled to vCPU `vcpu` now: enabled, and its
    // group enabled in GICD_CTLR.
    bool deliverable(unsigned vcpu, std::uint32_t intid) const {
        if (!enabled(vcpu, intid)) return false;
        const std::uint32_t grp_enable =
            group1(vcpu, intid) ? gicd::kCtlrEnableGrp1 : gicd::kCtlrEnableGrp0;
        return (ctlr_ & grp_enable) != 0;
    }

    // The vCPU an SPI is routed to (IROUTER's affinity; IRM = 1 or an
    // affinity no vCPU has: vCPU 0).
    unsigned route_of(std::uint32_t intid) const {
        if (intid < 32 || intid >= kNumIntids) return 0;
        const std::uint64_t r = irouter_[intid - 32];
        if ((r & gicd::kIrouterIrm) != 0) return 0;
        const std::uint64_t aff = (r & 0xffffff) | ((r >> 32 & 0xff) << 32);
        for (unsigned i = 0; i < num_vcpus_; ++i) {
            if (affinity_[i] == aff) return i;
        }
        return 0;
    }

    // Takes the lowest pending, deliverable INTID for vCPU `vcpu` (its own
    // SGIs/PPIs, then SPIs routed to it) out of the model, for a list
    // register; returns false when there is none.
    bool take_pending(unsigned vcpu, std::uint32_t& intid) {
        if (vcpu >= num_vcpus_) return false;
        for (std::uint32_t i = 0; i < kNumIntids; ++i) {
            IrqBank& b = i < 32 ? redist_[vcpu].bank : spis_[i / 32 - 1];
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

    // Marks an interrupt pending in the model (e.g. a software-generated one
    // that must wait until the guest enables it).
    void set_pending(unsigned vcpu, std::uint32_t intid) {
        IrqBank* b = bank_mut(vcpu, intid);
        if (b != nullptr) b->pending |= 1u << (intid % 32);
    }

    // Forgets the model's active bit of an interrupt (the hypervisor put the
    // guest's ISACTIVER write into the list register holding it instead).
    void clear_active(unsigned vcpu, std::uint32_t intid) {
        IrqBank* b = bank_mut(vcpu, intid);
        if (b != nullptr) b->active &= ~(1u << (intid % 32));
    }

private:
    struct Redistributor {
        IrqBank bank;
        std::uint32_t waker;
    };

    static constexpr bool valid_width(unsigned width) {
        return width == 1 || width == 2 || width == 4 || width == 8;
    }

    IrqBank* bank_mut(unsigned vcpu, std::uint32_t intid) {
        return const_cast<IrqBank*>(bank_of(vcpu, intid));
    }

    // The 32-bit word of a one-bit-per-interrupt register: for INTIDs
    // 32*n .. 32*n+31, register n of the block.
    static std::uint32_t& bit_field(IrqBank& b, std::uint64_t block) {
        switch (block) {
            case gicd::IGROUPR: return b.group;
            case gicd::ISENABLER:
            case gicd::ICENABLER: return b.enable;
            case gicd::ISPENDR:
            case gicd::ICPENDR: return b.pending;
            case gicd::ISACTIVER:
            case gicd::ICACTIVER: return b.active;
            default: return b.grpmod;
        }
    }

    // The one-bit-per-interrupt blocks share one layout in GICD and in
    // GICR's SGI frame: 0x80 IGROUPR .. 0x380 ICACTIVER, 0xD00 IGRPMODR.
    static bool is_bit_block(std::uint64_t off, std::uint64_t& block, unsigned& n) {
        if (off >= gicd::IGROUPR && off < gicd::IPRIORITYR) {
            block = off & ~0x7full;
            n = static_cast<unsigned>((off & 0x7f) / 4);
            return true;
        }
        if (off >= gicd::IGRPMODR && off < gicd::IGRPMODR + 0x80) {
            block = gicd::IGRPMODR;
            n = static_cast<unsigned>((off - gicd::IGRPMODR) / 4);
            return true;
        }
        return false;
    }

    static std::uint32_t read_bits(const IrqBank& b, std::uint64_t block, const LiveState& l,
                                   unsigned bank) {
        const std::uint32_t v = bit_field(const_cast<IrqBank&>(b), block);
        switch (block) {
            case gicd::ISPENDR:
            case gicd::ICPENDR: return v | l.lr_pending[bank] | l.line[bank];
            case gicd::ISACTIVER:
            case gicd::ICACTIVER: return v | l.lr_active[bank];
            default: return v;
        }
    }

    // Applies a write to a one-bit-per-interrupt register; set/clear blocks
    // only act on the 1 bits written (12.9.x "GICD_ISENABLER<n>" etc.).
    static WriteEffect write_bits(IrqBank& b, std::uint64_t block, std::uint32_t value,
                                  std::uint32_t writable) {
        WriteEffect e;
        std::uint32_t& field = bit_field(b, block);
        const std::uint32_t before = field;
        value &= writable;
        switch (block) {
            case gicd::ISENABLER:
            case gicd::ISPENDR:
            case gicd::ISACTIVER: field |= value; break;
            case gicd::ICENABLER:
            case gicd::ICPENDR:
            case gicd::ICACTIVER: field &= ~value; break;
            default: field = (field & ~writable) | value; break;
        }
        if (block == gicd::ISENABLER || block == gicd::ICENABLER) {
            e.enable_changed = before ^ field;
        }
        if (block == gicd::ISPENDR) e.pending_set = field & ~before;
        if (block == gicd::ICPENDR) e.pending_cleared = value;
        if (block == gicd::ISACTIVER) e.active_set = value;
        if (block == gicd::ICACTIVER) e.active_cleared = value;
        return e;
    }

    // ICFGR<n>: two bits per interrupt, Int_config[1] (the odd bit) = edge.
    static std::uint32_t read_cfg(const IrqBank& b, unsigned half) {
        std::uint32_t v = 0;
        for (unsigned i = 0; i < 16; ++i) {
            if (((b.edge >> (half * 16 + i)) & 1) != 0) v |= 2u << (2 * i);
        }
        return v;
    }
    static void write_cfg(IrqBank& b, unsigned half, std::uint32_t v) {
        for (unsigned i = 0; i < 16; ++i) {
            const std::uint32_t bit = 1u << (half * 16 + i);
            b.edge = ((v >> (2 * i + 1)) & 1) != 0 ? b.edge | bit : b.edge & ~bit;
        }
    }

    // Byte-wide IPRIORITYR access of `width` bytes from byte `first`.
    static std::uint64_t read_prio(const IrqBank& b, unsigned first, unsigned width) {
        std::uint64_t v = 0;
        for (unsigned i = 0; i < width && first + i < 32; ++i) {
            v |= static_cast<std::uint64_t>(b.priority[first + i]) << (8 * i);
        }
        return v;
    }
    static void write_prio(IrqBank& b, unsigned first, unsigned width, std::uint64_t v) {
        for (unsigned i = 0; i < width && first + i < 32; ++i) {
            b.priority[first + i] = static_cast<std::uint8_t>(v >> (8 * i));
        }
    }

    // The part of a wider register an access of `width` at byte `off` sees.
    static std::uint64_t slice(std::uint64_t reg, std::uint64_t off, unsigned width) {
        const unsigned shift = static_cast<unsigned>(off % 8) * 8;
        const std::uint64_t v = reg >> shift;
        return width == 8 ? v : v & ((1ull << (8 * width)) - 1);
    }

    std::uint64_t typer() const {
        // As QEMU 7.2's GICv3 on virt presents it (read from bare QEMU), less
        // what this model lacks: ITLinesNumber [4:0] = 7, CPUNumber [7:5],
        // IDbits [23:19] = 15 (16 bits), A3V [24] (Aff3 routable), No1N [25]
        // (no 1 of N routing). LPIS [17] is 0 (QEMU's 1: its ITS; this model
        // has no LPIs), SecurityExtn [10], MBIS [16], DVIS [18] are 0.
        return (kNumIntids / 32 - 1) | ((num_vcpus_ - 1u) & 7u) << 5 | 15u << 19 | 1u << 24 |
               1u << 25;
    }

    std::uint64_t read_gicd(std::uint64_t off, unsigned width, const LiveState& l) const {
        std::uint64_t block = 0;
        unsigned n = 0;
        if (is_bit_block(off, block, n) && width == 4) {
            // Register 0 covers the private INTIDs: RAZ/WI with affinity
            // routing (they live in the redistributors).
            return n >= 1 && n < kNumBanks ? read_bits(spis_[n - 1], block, l, n) : 0;
        }
        if (off >= gicd::IPRIORITYR && off < gicd::IPRIORITYR + kNumIntids &&
            (width == 1 || width == 4)) {
            const auto intid = static_cast<unsigned>(off - gicd::IPRIORITYR);
            return intid < 32 ? 0 : read_prio(spis_[intid / 32 - 1], intid % 32, width);
        }
        if (off >= gicd::ICFGR && off < gicd::ICFGR + kNumIntids / 4 && width == 4) {
            const auto reg = static_cast<unsigned>((off - gicd::ICFGR) / 4);
            return reg < 2 ? 0 : read_cfg(spis_[reg / 2 - 1], reg % 2);
        }
        if (off >= gicd::IROUTER + 32 * 8 && off < gicd::IROUTER + kNumIntids * 8 &&
            (width == 4 || width == 8)) {
            const auto intid = static_cast<unsigned>((off - gicd::IROUTER) / 8);
            return slice(irouter_[intid - 32], off, width);
        }
        if (width != 4) return 0;
        switch (off) {
            case gicd::CTLR: return ctlr_ | gicd::kCtlrAre | gicd::kCtlrDs;
            case gicd::TYPER: return typer();
            case gicd::IIDR: return kIidr;
            case gicd::PIDR2: return kPidr2;
            default: return 0;
        }
    }

    WriteEffect write_gicd(std::uint64_t off, unsigned width, std::uint64_t value) {
        WriteEffect e;
        std::uint64_t block = 0;
        unsigned n = 0;
        const auto v32 = static_cast<std::uint32_t>(value);
        if (is_bit_block(off, block, n) && width == 4) {
            if (n < 1 || n >= kNumBanks) return e;
            e = write_bits(spis_[n - 1], block, v32, ~0u);
            e.bank = n;
            return e;
        }
        if (off >= gicd::IPRIORITYR && off < gicd::IPRIORITYR + kNumIntids &&
            (width == 1 || width == 4)) {
            const auto intid = static_cast<unsigned>(off - gicd::IPRIORITYR);
            if (intid >= 32) write_prio(spis_[intid / 32 - 1], intid % 32, width, value);
            return e;
        }
        if (off >= gicd::ICFGR && off < gicd::ICFGR + kNumIntids / 4 && width == 4) {
            const auto reg = static_cast<unsigned>((off - gicd::ICFGR) / 4);
            if (reg >= 2) write_cfg(spis_[reg / 2 - 1], reg % 2, v32);
            return e;
        }
        if (off >= gicd::IROUTER + 32 * 8 && off < gicd::IROUTER + kNumIntids * 8 &&
            (width == 4 || width == 8)) {
            const auto intid = static_cast<unsigned>((off - gicd::IROUTER) / 8);
            std::uint64_t& r = irouter_[intid - 32];
            // Aff0-2 [23:0], IRM [31], Aff3 [39:32]; the rest is RES0, which
            // QEMU's GICv3 keeps as written (a guest reads back what it
            // wrote there, as on bare QEMU); route_of reads only the fields.
            if (width == 8) {
                r = value;
            } else if (off % 8 == 0) {
                r = (r & ~0xffff'ffffull) | (value & 0xffff'ffffull);
            } else {
                r = (r & 0xffff'ffffull) | (value << 32);
            }
            e.route_changed_intid = intid;
            return e;
        }
        if (width != 4) return e;
        if (off == gicd::CTLR) {
            ctlr_ = v32 & (gicd::kCtlrEnableGrp0 | gicd::kCtlrEnableGrp1);
        } else if (off == gicd::SETSPI_NSR || off == gicd::CLRSPI_NSR) {
            const std::uint32_t intid = v32 & 0x3ff;
            if (intid >= 32 && intid < kNumIntids) {
                IrqBank& b = spis_[intid / 32 - 1];
                const std::uint32_t bit = 1u << (intid % 32);
                if (off == gicd::SETSPI_NSR) {
                    if ((b.pending & bit) == 0) e.pending_set = bit;
                    b.pending |= bit;
                    e.bank = intid / 32;
                } else {
                    // Like ICPENDR: the interrupt may sit in a list register.
                    b.pending &= ~bit;
                    e.pending_cleared = bit;
                    e.bank = intid / 32;
                }
            }
        }
        return e;
    }

    std::uint64_t read_gicr(unsigned vcpu, std::uint64_t off, unsigned width,
                            const LiveState& l) const {
        const Redistributor& r = redist_[vcpu];
        if (off >= kGicrSgiFrame) {
            const std::uint64_t s = off - kGicrSgiFrame;
            std::uint64_t block = 0;
            unsigned n = 0;
            if (is_bit_block(s, block, n) && width == 4)
                return n == 0 ? read_bits(r.bank, block, l, 0) : 0;
            if (s >= gicr::IPRIORITYR && s < gicr::IPRIORITYR + 32 && (width == 1 || width == 4)) {
                return read_prio(r.bank, static_cast<unsigned>(s - gicr::IPRIORITYR), width);
            }
            if (width != 4) return 0;
            if (s == gicr::ICFGR0) return read_cfg(r.bank, 0);
            if (s == gicr::ICFGR1) return read_cfg(r.bank, 1);
            return 0;
        }
        if (off == gicr::TYPER || off == gicr::TYPER + 4) {
            if (width != 4 && !(width == 8 && off == gicr::TYPER)) return 0;
            const std::uint64_t aff = affinity_[vcpu];
            // Affinity_Value [63:32] = Aff3.Aff2.Aff1.Aff0. CommonLPIAff
            // [25:24] = 1 as QEMU presents it; PLPIS [0] = 0 (no LPIs, where
            // QEMU has them).
            const std::uint64_t aff32 = (aff & 0xffffff) | ((aff >> 32 & 0xff) << 24);
            const std::uint64_t typer = aff32 << 32 | 1u << 24 |
                                        static_cast<std::uint64_t>(vcpu) << 8 |
                                        (vcpu + 1 == num_vcpus_ ? gicr::kTyperLast : 0);
            return slice(typer, off, width);
        }
        if (width != 4) return 0;
        switch (off) {
            case gicr::CTLR: return kGicrCtlr;
            case gicr::IIDR: return kIidr;
            case gicr::WAKER: return r.waker;
            case gicr::PIDR2: return kPidr2;
            default: return 0;
        }
    }

    WriteEffect write_gicr(unsigned vcpu, std::uint64_t off, unsigned width, std::uint64_t value) {
        Redistributor& r = redist_[vcpu];
        WriteEffect e;
        const auto v32 = static_cast<std::uint32_t>(value);
        if (off >= kGicrSgiFrame) {
            const std::uint64_t s = off - kGicrSgiFrame;
            std::uint64_t block = 0;
            unsigned n = 0;
            if (is_bit_block(s, block, n) && width == 4) {
                if (n == 0) e = write_bits(r.bank, block, v32, ~0u);
                return e;
            }
            if (s >= gicr::IPRIORITYR && s < gicr::IPRIORITYR + 32 && (width == 1 || width == 4)) {
                write_prio(r.bank, static_cast<unsigned>(s - gicr::IPRIORITYR), width, value);
                return e;
            }
            // ICFGR0 (SGIs) is read-only; ICFGR1 configures the PPIs.
            if (s == gicr::ICFGR1 && width == 4) write_cfg(r.bank, 1, v32);
            return e;
        }
        if (off == gicr::WAKER && width == 4) {
            // No power management to wait for: ChildrenAsleep follows
            // ProcessorSleep at once.
            r.waker = (v32 & gicr::kWakerProcessorSleep) != 0
                          ? gicr::kWakerProcessorSleep | gicr::kWakerChildrenAsleep
                          : 0;
        }
        return e;
    }

    unsigned num_vcpus_ = 0;
    std::uint32_t ctlr_ = 0;
    std::uint64_t affinity_[kMaxVcpus] = {};
    Redistributor redist_[kMaxVcpus] = {};
    IrqBank spis_[kNumBanks - 1] = {};
    std::uint64_t irouter_[kNumSpis] = {};
};

}  // namespace armvcpu::vgic
