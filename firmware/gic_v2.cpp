// GICv2 register offsets and bits: the GICv2 architecture specification
// (IHI 0048B): 4.3 distributor, 4.4 CPU interface, 5.3 virtual interface
// control. QEMU virt's frames: GICD 0x0800_0000, GICC 0x0801_0000, GICH
// 0x0803_0000 (each CPU sees its own interface at the same address), GICV
// 0x0804_0000 (the guest's, through stage 2).
#include "gic_v2.hpp"

#include "gic.hpp"
#include "power.hpp"
#include "sysreg.hpp"
#include "uart.hpp"

namespace fw::gicv2 {
namespace {

namespace v2 = armvcpu::vgic2;

constexpr std::uintptr_t kGicd = v2::kGicdBase;
constexpr std::uintptr_t kGicc = v2::kGiccBase;
constexpr std::uintptr_t kGich = v2::kGichBase;

constexpr std::uintptr_t kGiccCtlr = 0x00;
constexpr std::uintptr_t kGiccPmr = 0x04;
constexpr std::uintptr_t kGiccIar = 0x0C;
constexpr std::uintptr_t kGiccEoir = 0x10;
constexpr std::uintptr_t kGiccHppir = 0x18;
constexpr std::uintptr_t kGiccDir = 0x1000;
// GICC_CTLR without the Security Extensions (4.4.1): EnableGrp0 [0],
// EnableGrp1 [1], EOImode [9] (priority drop and deactivation split).
constexpr std::uint32_t kGiccCtlrValue = (1u << 0) | (1u << 1) | (1u << 9);

constexpr std::uintptr_t kGichHcr = 0x000;
constexpr std::uintptr_t kGichVtr = 0x004;
constexpr std::uintptr_t kGichVmcr = 0x008;
constexpr std::uintptr_t kGichLr0 = 0x100;
constexpr unsigned kMaxLrs = 64;

volatile std::uint32_t& reg32(std::uintptr_t addr) {
    return *reinterpret_cast<volatile std::uint32_t*>(addr);
}
volatile std::uint8_t& reg8(std::uintptr_t addr) {
    return *reinterpret_cast<volatile std::uint8_t*>(addr);
}

unsigned g_num_lrs = 0;

std::uint32_t read_lr(unsigned n) { return reg32(kGich + kGichLr0 + 4 * n); }
void write_lr(unsigned n, std::uint32_t v) { reg32(kGich + kGichLr0 + 4 * n) = v; }

}  // namespace

bool detect() {
    const std::uint64_t pfr0 = ARMVCPU_READ_SYSREG(id_aa64pfr0_el1);
    if (((pfr0 >> 24) & 0xf) != 0) return false;  // GICv3 system registers: a GICv3
    const std::uint32_t arch_rev = (reg32(kGicd + v2::gicd::PIDR2) >> 4) & 0xf;
    if (arch_rev == 2) return true;
    uart::put_str(
        "armvcpu: FATAL: no GICv3 system registers and no GICv2 at 0x8000000 "
        "(GICD_PIDR2.ArchRev ");
    uart::put_hex(arch_rev);
    uart::put_str(")\n");
    power_off();
}

void init() {
    // Both groups on; every interrupt stays Group 0, which a GIC without the
    // Security Extensions signals as IRQ (GICC_CTLR.FIQEn = 0).
    reg32(kGicd + v2::gicd::CTLR) = v2::gicd::kCtlrEnableGrp0 | v2::gicd::kCtlrEnableGrp1;
    init_cpu(0);
}

void init_cpu(unsigned cpu) {
    (void)cpu;  // the banked registers are the calling CPU's
    const std::uint32_t ppis[] = {armvcpu::vgic::kVirtualTimerPpi, armvcpu::vgic::kPhysicalTimerPpi,
                                  armvcpu::vgic::kMaintenancePpi, gic::kKickSgi};
    for (std::uint32_t intid : ppis) {
        reg8(kGicd + v2::gicd::IPRIORITYR + intid) = v2::kDefaultPriority;
        reg32(kGicd + v2::gicd::ISENABLER) = 1u << intid;
    }
    reg32(kGicc + kGiccPmr) = 0xff;
    reg32(kGicc + kGiccCtlr) = kGiccCtlrValue;
    // GICH_VTR.ListRegs [5:0] is the count minus one.
    g_num_lrs = (reg32(kGich + kGichVtr) & 0x3f) + 1;
    if (g_num_lrs > kMaxLrs) g_num_lrs = kMaxLrs;
    for (unsigned n = 0; n < g_num_lrs; ++n) write_lr(n, 0);
    reg32(kGich + kGichHcr) = v2::kHcrEn;
    dsb_ish();
}

std::uint32_t acknowledge() {
    const std::uint32_t iar = reg32(kGicc + kGiccIar);
    const std::uint32_t intid = iar & 0x3ff;
    if (intid < 1020) {
        reg32(kGicc + kGiccEoir) = iar;
        if (intid < 16) reg32(kGicc + kGiccDir) = iar;
    }
    return intid;
}

void deactivate(std::uint32_t intid) {
    if (intid >= 16) reg32(kGicc + kGiccDir) = intid;
}

namespace {

// A list register whose linked interrupt the guest has ended: deactivate
// the physical one and free the register. True when it was one.
bool complete_eoi(unsigned n, std::uint32_t lr) {
    if (v2::lr_state(lr) != v2::LrState::Invalid || !v2::lr_eoi(lr)) return false;
    write_lr(n, 0);
    reg32(kGicc + kGiccDir) = v2::lr_vintid(lr);
    return true;
}

}  // namespace

void complete_eois() {
    for (unsigned n = 0; n < g_num_lrs; ++n) complete_eoi(n, read_lr(n));
}

bool inject(std::uint32_t vintid, bool linked, std::uint8_t priority, bool group1,
            unsigned source) {
    using v2::LrState;
    int free_lr = -1;
    for (unsigned n = 0; n < g_num_lrs; ++n) {
        std::uint32_t lr = read_lr(n);
        if (complete_eoi(n, lr)) lr = 0;
        const LrState state = v2::lr_state(lr);
        if (state == LrState::Invalid) {
            if (free_lr < 0) free_lr = static_cast<int>(n);
            continue;
        }
        // One list register per interrupt (5.3.9: the same VirtualID twice
        // is UNPREDICTABLE; an SGI is one interrupt per requesting CPU).
        if (v2::lr_vintid(lr) != vintid) continue;
        if (vintid < 16 && v2::lr_cpuid(lr) != source) continue;
        if (state == LrState::Active && !v2::lr_eoi(lr)) {
            write_lr(n, lr | (static_cast<std::uint32_t>(LrState::Pending) << 28));
        }
        return true;
    }
    if (free_lr < 0) return false;
    write_lr(static_cast<unsigned>(free_lr),
             v2::lr_value(vintid, LrState::Pending, group1, false, linked ? 0 : source, priority) |
                 (linked ? v2::kLrEoi : 0));
    return true;
}

void set_enabled(unsigned cpu, std::uint32_t intid, bool on) {
    (void)cpu;
    const std::uintptr_t reg = on ? v2::gicd::ISENABLER : v2::gicd::ICENABLER;
    reg32(kGicd + reg + (intid / 32) * 4) = 1u << (intid % 32);
}

void configure_spi(std::uint32_t intid, unsigned cpu) {
    reg8(kGicd + v2::gicd::IPRIORITYR + intid) = v2::kDefaultPriority;
    route_spi(intid, cpu);
}

void route_spi(std::uint32_t intid, unsigned cpu) {
    reg8(kGicd + v2::gicd::ITARGETSR + intid) = static_cast<std::uint8_t>(1u << (cpu & 7));
}

unsigned num_list_registers() { return g_num_lrs; }
std::uint32_t read_list_register(unsigned n) { return n < g_num_lrs ? read_lr(n) : 0; }
void write_list_register(unsigned n, std::uint32_t value) {
    if (n < g_num_lrs) write_lr(n, value);
}

void set_underflow_interrupt(bool on) {
    reg32(kGich + kGichHcr) = v2::kHcrEn | (on ? v2::kHcrUie : 0);
}

bool pending() { return (reg32(kGicc + kGiccHppir) & 0x3ff) < 1020; }

bool virtual_pending() {
    const std::uint32_t vmcr = reg32(kGich + kGichVmcr);
    for (unsigned n = 0; n < g_num_lrs; ++n) {
        if (v2::lr_signals(read_lr(n), vmcr)) return true;
    }
    return false;
}

void send_sgi(unsigned cpu, std::uint32_t sgi) {
    dsb_ish();
    reg32(kGicd + v2::gicd::SGIR) = (1u << (16 + (cpu & 7))) | (sgi & 0xf);
}

}  // namespace fw::gicv2
