// GICv3 register offsets and bits: the GICv3 architecture specification
// (IHI 0069), chapter 12. QEMU virt places the distributor at 0x0800_0000
// and the redistributors at 0x080A_0000 (128 KiB each: RD_base, SGI_base).
#include "gic.hpp"

#include "armvcpu/vgic.hpp"
#include "armvcpu/vgic_icv.hpp"
#include "gic_v2.hpp"
#include "scheduler.hpp"
#include "sysreg.hpp"

namespace fw::gic {
namespace {

constexpr std::uintptr_t kGicd = 0x08000000;
constexpr std::uintptr_t kGicr = 0x080A0000;     // CPU 0's RD_base
constexpr std::uintptr_t kGicrStride = 0x20000;  // RD_base + SGI_base per CPU

constexpr std::uintptr_t kGicdCtlr = 0x0000;
constexpr std::uint32_t kGicdCtlrRwp = 1u << 31;
constexpr std::uint32_t kGicdCtlrAre = 1u << 4;  // ARE (DS = 1: no Secure state)
constexpr std::uint32_t kGicdCtlrEnableGrp1 = 1u << 1;
constexpr std::uintptr_t kGicdIgroupr = 0x0080;
constexpr std::uintptr_t kGicdIpriorityr = 0x0400;
constexpr std::uintptr_t kGicdIrouter = 0x6000;
constexpr std::uintptr_t kGicrWaker = 0x0014;
constexpr std::uint32_t kWakerProcessorSleep = 1u << 1;
constexpr std::uint32_t kWakerChildrenAsleep = 1u << 2;
constexpr std::uintptr_t kGicrIgroupr0 = 0x0080;
constexpr std::uintptr_t kGicrIsenabler0 = 0x0100;
constexpr std::uintptr_t kGicrIpriorityr = 0x0400;

volatile std::uint32_t& reg32(std::uintptr_t addr) {
    return *reinterpret_cast<volatile std::uint32_t*>(addr);
}
volatile std::uint8_t& reg8(std::uintptr_t addr) {
    return *reinterpret_cast<volatile std::uint8_t*>(addr);
}

unsigned g_num_lrs = 0;
bool g_v2 = false;  // set once by init(), before any other CPU runs

// The virtual interface enabled, with the guest's Group 1 register accesses
// trapped (TALL1): QEMU 7.2 aborts on an ICV_BPR1_EL1 write with RES0 bits
// set, so EL2 answers them (vgic_icv.hpp).
constexpr std::uint64_t kIchHcr = armvcpu::vgic::kIchHcrEn | armvcpu::vgic::kIchHcrTall1;

std::uint64_t read_lr(unsigned n) {
    switch (n) {
        case 0: return ARMVCPU_READ_SYSREG(ich_lr0_el2);
        case 1: return ARMVCPU_READ_SYSREG(ich_lr1_el2);
        case 2: return ARMVCPU_READ_SYSREG(ich_lr2_el2);
        case 3: return ARMVCPU_READ_SYSREG(ich_lr3_el2);
        default: return ~0ull;  // not implemented: never free
    }
}

void write_lr(unsigned n, std::uint64_t value) {
    switch (n) {
        case 0: ARMVCPU_WRITE_SYSREG(ich_lr0_el2, value); break;
        case 1: ARMVCPU_WRITE_SYSREG(ich_lr1_el2, value); break;
        case 2: ARMVCPU_WRITE_SYSREG(ich_lr2_el2, value); break;
        case 3: ARMVCPU_WRITE_SYSREG(ich_lr3_el2, value); break;
        default: break;
    }
}

}  // namespace

bool g_machine_v2 = false;

void init() {
    g_v2 = gicv2::detect();
    g_machine_v2 = g_v2;
    if (g_v2) return gicv2::init();
    // Distributor: affinity routing, group 1 enabled.
    reg32(kGicd + kGicdCtlr) = kGicdCtlrAre | kGicdCtlrEnableGrp1;
    while ((reg32(kGicd + kGicdCtlr) & kGicdCtlrRwp) != 0) {
    }
    init_cpu(0);
}

void init_cpu(unsigned cpu) {
    if (g_v2) return gicv2::init_cpu(cpu);
    const std::uintptr_t rd = kGicr + cpu * kGicrStride;
    const std::uintptr_t sgi = rd + 0x10000;
    // Redistributor: wake it and wait for its interfaces to be awake.
    reg32(rd + kGicrWaker) = reg32(rd + kGicrWaker) & ~kWakerProcessorSleep;
    while ((reg32(rd + kGicrWaker) & kWakerChildrenAsleep) != 0) {
    }
    // SGIs and PPIs in group 1; the timers' PPIs enabled at a middle priority.
    reg32(sgi + kGicrIgroupr0) = 0xffffffffu;
    const std::uint32_t timer_ppis[] = {armvcpu::vgic::kVirtualTimerPpi,
                                        armvcpu::vgic::kPhysicalTimerPpi,
                                        armvcpu::vgic::kMaintenancePpi};
    for (std::uint32_t ppi : timer_ppis) {
        reg8(sgi + kGicrIpriorityr + ppi) = armvcpu::vgic::kDefaultPriority;
        reg32(sgi + kGicrIsenabler0) = 1u << ppi;
    }
    reg8(sgi + kGicrIpriorityr + kKickSgi) = armvcpu::vgic::kDefaultPriority;
    reg32(sgi + kGicrIsenabler0) = 1u << kKickSgi;
    // CPU interface: system registers (SRE) for EL2, and Enable so EL1's own
    // ICC_SRE_EL1 accesses are not trapped; all priorities unmasked; group 1
    // on; EOImode = 1 so that priority drop and deactivation are separate
    // (a hardware-linked virtual interrupt is deactivated by the guest).
    ARMVCPU_WRITE_SYSREG(icc_sre_el2, 0xf);  // SRE | DFB | DIB | Enable
    fw::isb();
    ARMVCPU_WRITE_SYSREG(icc_pmr_el1, 0xff);
    ARMVCPU_WRITE_SYSREG(icc_ctlr_el1, 1u << 1);  // EOImode
    ARMVCPU_WRITE_SYSREG(icc_igrpen1_el1, 1);
    // Virtual interface on; ICH_VTR_EL2.ListRegs [4:0] is the count minus one.
    g_num_lrs = static_cast<unsigned>(ARMVCPU_READ_SYSREG(ich_vtr_el2) & 0x1f) + 1;
    for (unsigned n = 0; n < g_num_lrs; ++n) write_lr(n, 0);
    ARMVCPU_WRITE_SYSREG(ich_hcr_el2, kIchHcr);
    fw::isb();
}

std::uint32_t acknowledge() {
    if (g_v2) return gicv2::acknowledge();
    const auto intid = static_cast<std::uint32_t>(ARMVCPU_READ_SYSREG(icc_iar1_el1) & 0xffffff);
    // An LPI's EOI drops its priority and ends it (it has no active state).
    if (armvcpu::vgic::is_valid_intid(intid) || armvcpu::vgic::is_lpi(intid)) {
        ARMVCPU_WRITE_SYSREG(icc_eoir1_el1, intid);
    }
    return intid;
}

bool has_lpis() { return !g_v2 && (reg32(kGicd + 0x0004) & (1u << 17)) != 0; }

std::uint64_t read_redistributor(unsigned cpu, std::uint64_t off, unsigned width) {
    const std::uintptr_t addr = kGicr + sched::phys_cpu(cpu) * kGicrStride + off;
    if (width == 8) return *reinterpret_cast<volatile std::uint64_t*>(addr);
    return reg32(addr);
}

void write_redistributor(unsigned cpu, std::uint64_t off, unsigned width, std::uint64_t value) {
    const std::uintptr_t addr = kGicr + sched::phys_cpu(cpu) * kGicrStride + off;
    if (width == 8) {
        *reinterpret_cast<volatile std::uint64_t*>(addr) = value;
    } else {
        reg32(addr) = static_cast<std::uint32_t>(value);
    }
}

void deactivate(std::uint32_t intid) {
    if (g_v2) return gicv2::deactivate(intid);
    ARMVCPU_WRITE_SYSREG(icc_dir_el1, intid);
}

bool inject(std::uint32_t vintid, bool hw, std::uint8_t priority) {
    if (g_v2) return gicv2::inject(vintid, hw, priority, false, 0);
    using armvcpu::vgic::LrState;
    // Two list registers must never hold the same vINTID (GICv3 spec,
    // 4.9.2: UNPREDICTABLE): one already there absorbs the new edge.
    int free_lr = -1;
    for (unsigned n = 0; n < g_num_lrs && n < 4; ++n) {
        const std::uint64_t lr = read_lr(n);
        const LrState state = armvcpu::vgic::lr_state(lr);
        if (state == LrState::Invalid) {
            if (free_lr < 0) free_lr = static_cast<int>(n);
            continue;
        }
        if (armvcpu::vgic::lr_vintid(lr) != vintid) continue;
        if (state == LrState::Active && ((lr >> 61) & 1) == 0) {
            write_lr(n, lr | (1ull << 62));  // active and pending again
            fw::isb();
        }
        return true;
    }
    if (free_lr < 0) return false;
    write_lr(static_cast<unsigned>(free_lr),
             armvcpu::vgic::lr_value(vintid, LrState::Pending, true, hw, vintid, priority));
    fw::isb();
    return true;
}

void set_enabled(unsigned cpu, std::uint32_t intid, bool on) {
    cpu = sched::phys_cpu(cpu);  // callers name the vCPU slot
    if (g_v2) return gicv2::set_enabled(cpu, intid, on);
    const std::uintptr_t reg = (on ? 0x100 : 0x180) + (intid / 32) * 4;
    if (intid < 32) {
        reg32(kGicr + cpu * kGicrStride + 0x10000 + reg) = 1u << intid;
    } else {
        reg32(kGicd + reg) = 1u << (intid % 32);
        while ((reg32(kGicd + kGicdCtlr) & kGicdCtlrRwp) != 0) {
        }
    }
}

void configure_spi(std::uint32_t intid, unsigned cpu) {
    if (g_v2) return gicv2::configure_spi(intid, cpu);
    const std::uint32_t bit = 1u << (intid % 32);
    reg32(kGicd + kGicdIgroupr + (intid / 32) * 4) =
        reg32(kGicd + kGicdIgroupr + (intid / 32) * 4) | bit;
    reg8(kGicd + kGicdIpriorityr + intid) = armvcpu::vgic::kDefaultPriority;
    route_spi(intid, cpu);
}

void set_edge_triggered(std::uint32_t intid) {
    // GICD_ICFGR<n>: two bits per INTID, Int_config (the upper one) 1 = edge.
    const std::uintptr_t icfgr = kGicd + 0x0c00 + (intid / 16) * 4;
    reg32(icfgr) = reg32(icfgr) | (2u << ((intid % 16) * 2));
}

void route_spi(std::uint32_t intid, unsigned cpu) {
    cpu = sched::phys_cpu(cpu);  // callers name the vCPU slot
    if (g_v2) return gicv2::route_spi(intid, cpu);
    // GICD_IROUTER<n>: Aff0 = cpu (QEMU virt numbers CPUs 0..15 in Aff0).
    *reinterpret_cast<volatile std::uint64_t*>(kGicd + kGicdIrouter + intid * 8) = cpu;
}

void set_underflow_interrupt(bool on) {
    if (g_v2) return gicv2::set_underflow_interrupt(on);
    ARMVCPU_WRITE_SYSREG(ich_hcr_el2, kIchHcr | (on ? armvcpu::vgic::kIchHcrUie : 0));
    fw::isb();
}

unsigned num_list_registers() { return g_num_lrs < 4 ? g_num_lrs : 4; }

std::uint64_t list_register(unsigned n) { return n < num_list_registers() ? read_lr(n) : 0; }

void set_list_register(unsigned n, std::uint64_t value) {
    if (n < num_list_registers()) {
        write_lr(n, value);
        fw::isb();
    }
}

std::uint32_t pending_bits(unsigned cpu, std::uint32_t first) {
    constexpr std::uintptr_t kIspendr = 0x200;
    if (first < 32) return reg32(kGicr + cpu * kGicrStride + 0x10000 + kIspendr);
    return reg32(kGicd + kIspendr + (first / 32) * 4);
}

void load_icv(armvcpu::vgic::IcvState& s) {
    const std::uint64_t vtr = ARMVCPU_READ_SYSREG(ich_vtr_el2);
    s.num_lrs = num_list_registers();
    s.prebits = static_cast<unsigned>((vtr >> 26) & 7) + 1;  // ICH_VTR_EL2.PREbits [28:26]
    for (unsigned n = 0; n < s.num_lrs; ++n) s.lr[n] = read_lr(n);
    // Only AP<g>R0 exists with 5 preemption bits (QEMU's); more are read
    // when implemented.
    s.ap0r[0] = static_cast<std::uint32_t>(ARMVCPU_READ_SYSREG(ich_ap0r0_el2));
    s.ap1r[0] = static_cast<std::uint32_t>(ARMVCPU_READ_SYSREG(ich_ap1r0_el2));
    if (s.num_aprs() > 1) {
        s.ap0r[1] = static_cast<std::uint32_t>(ARMVCPU_READ_SYSREG(ich_ap0r1_el2));
        s.ap1r[1] = static_cast<std::uint32_t>(ARMVCPU_READ_SYSREG(ich_ap1r1_el2));
    }
    if (s.num_aprs() > 2) {
        s.ap0r[2] = static_cast<std::uint32_t>(ARMVCPU_READ_SYSREG(ich_ap0r2_el2));
        s.ap1r[2] = static_cast<std::uint32_t>(ARMVCPU_READ_SYSREG(ich_ap1r2_el2));
        s.ap0r[3] = static_cast<std::uint32_t>(ARMVCPU_READ_SYSREG(ich_ap0r3_el2));
        s.ap1r[3] = static_cast<std::uint32_t>(ARMVCPU_READ_SYSREG(ich_ap1r3_el2));
    }
    s.vmcr = ARMVCPU_READ_SYSREG(ich_vmcr_el2);
    s.hcr = ARMVCPU_READ_SYSREG(ich_hcr_el2);
}

void store_icv(const armvcpu::vgic::IcvState& s) {
    for (unsigned n = 0; n < s.num_lrs; ++n) write_lr(n, s.lr[n]);
    // Group 1 active priorities only: the Group 1 accesses never change
    // Group 0's, but an EOI's priority drop may clear a Group 0 bit.
    ARMVCPU_WRITE_SYSREG(ich_ap0r0_el2, s.ap0r[0]);
    ARMVCPU_WRITE_SYSREG(ich_ap1r0_el2, s.ap1r[0]);
    if (s.num_aprs() > 1) {
        ARMVCPU_WRITE_SYSREG(ich_ap0r1_el2, s.ap0r[1]);
        ARMVCPU_WRITE_SYSREG(ich_ap1r1_el2, s.ap1r[1]);
    }
    if (s.num_aprs() > 2) {
        ARMVCPU_WRITE_SYSREG(ich_ap0r2_el2, s.ap0r[2]);
        ARMVCPU_WRITE_SYSREG(ich_ap1r2_el2, s.ap1r[2]);
        ARMVCPU_WRITE_SYSREG(ich_ap0r3_el2, s.ap0r[3]);
        ARMVCPU_WRITE_SYSREG(ich_ap1r3_el2, s.ap1r[3]);
    }
    ARMVCPU_WRITE_SYSREG(ich_vmcr_el2, s.vmcr);
    ARMVCPU_WRITE_SYSREG(ich_hcr_el2, s.hcr);
    fw::isb();
}

bool virtual_pending() {
    if (g_v2) return gicv2::virtual_pending();
    // Only an interrupt the virtual CPU interface would signal is a wake-up
    // event: its group enabled (ICH_VMCR_EL2.VENG0 [0], VENG1 [1]) and its
    // priority above the priority mask (VPMR [31:24]).
    const std::uint64_t vmcr = ARMVCPU_READ_SYSREG(ich_vmcr_el2);
    const std::uint64_t vpmr = (vmcr >> 24) & 0xff;
    for (unsigned n = 0; n < g_num_lrs && n < 4; ++n) {
        const std::uint64_t lr = read_lr(n);
        const armvcpu::vgic::LrState state = armvcpu::vgic::lr_state(lr);
        if (state != armvcpu::vgic::LrState::Pending &&
            state != armvcpu::vgic::LrState::PendingActive) {
            continue;
        }
        const bool group1 = ((lr >> 60) & 1) != 0;
        const bool enabled = ((vmcr >> (group1 ? 1 : 0)) & 1) != 0;
        if (enabled && ((lr >> 48) & 0xff) < vpmr) return true;
    }
    return false;
}

void kick(unsigned cpu) {
    cpu = sched::phys_cpu(cpu);  // callers name the vCPU slot
    if (g_v2) return gicv2::send_sgi(cpu, kKickSgi);
    // ICC_SGI1R_EL1: TargetList [15:0] (Aff0 bits), INTID [27:24], Aff1-3 = 0.
    const std::uint64_t value = (static_cast<std::uint64_t>(kKickSgi) << 24) | (1u << (cpu & 0xf));
    asm volatile("dsb ish" ::: "memory");
    ARMVCPU_WRITE_SYSREG(icc_sgi1r_el1, value);
    fw::isb();
}

bool pending() {
    if (g_v2) return gicv2::pending();
    const std::uint64_t hppi = ARMVCPU_READ_SYSREG(icc_hppir1_el1) & 0xffffff;
    return armvcpu::vgic::is_valid_intid(hppi) || armvcpu::vgic::is_lpi(hppi);
}

}  // namespace fw::gic
