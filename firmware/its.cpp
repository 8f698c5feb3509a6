#include "its.hpp"

#include "armvcpu/vgic_dist.hpp"
#include "passthrough.hpp"

namespace fw::its {

std::uint64_t g_waiting_lpis[kMaxCpus][kWaitingWords];
std::uint32_t g_lpis_waiting[kMaxCpus];
std::uint64_t armvcpu_lpis_delivered[kMaxCpus];

namespace {

// GICR_CTLR (IHI 0069H 12.11.2): EnableLPIs [0], CES [1], RWP [3].
constexpr std::uint64_t kCtlrEnableLpis = 1u << 0;
constexpr std::uint64_t kCtlrGuestBits = kCtlrEnableLpis | (1u << 1) | (1u << 3);
// GICR_PROPBASER.Physical_Address [51:12], IDbits [4:0] (12.11.30).
constexpr std::uint64_t kPropAddrMask = 0x000f'ffff'ffff'f000ull;

bool g_machine_its = false;
bool g_machine_its_known = false;

// GICR_PENDBASER.Physical_Address [51:16] (12.11.29).
constexpr std::uint64_t kPendAddrMask = 0x000f'ffff'ffff'0000ull;
// The INTID bits the machine has (GICD_TYPER.IDbits = 15: 16 bits); the
// guest's GICR_PROPBASER.IDbits above it are capped to it (12.11.30).
constexpr unsigned kMaxIdBits = 16;

unsigned propbaser_id_bits(std::uint64_t propbaser) {
    const unsigned bits = static_cast<unsigned>(propbaser & 0x1f) + 1;
    return bits > kMaxIdBits ? kMaxIdBits : bits;
}

// True when the table register `reg` (GICR_PROPBASER or GICR_PENDBASER)
// with value `value` names a table inside VM `vm`'s RAM: the configuration
// table is 2^IDbits - 8192 bytes, the pending table 2^IDbits / 8 (5.1.1,
// 5.1.2), with IDbits as PROPBASER says (the largest for PENDBASER, whose
// table the guest sizes by a PROPBASER it may write later).
bool table_in_vm_ram(const Vm& vm, std::uint64_t reg, std::uint64_t value) {
    namespace gicr = armvcpu::vgic::gicr;
    std::uint64_t pa = 0;
    std::uint64_t size = 0;
    if (reg == gicr::PROPBASER) {
        pa = value & kPropAddrMask;
        const unsigned bits = propbaser_id_bits(value);
        size = bits <= 13 ? 0 : (1ull << bits) - armvcpu::vgic::kFirstLpi;
    } else {
        pa = value & kPendAddrMask;
        size = (1ull << kMaxIdBits) / 8;
    }
    const std::uint64_t lo = vm.cfg.pa_base;
    const std::uint64_t hi = vm.cfg.pa_base + vm.cfg.size;
    return pa >= lo && pa <= hi && size <= hi - pa;
}

}  // namespace

bool machine_has_its() {
    if (!g_machine_its_known) {
        g_machine_its = gic::has_lpis();
        g_machine_its_known = true;
    }
    return g_machine_its;
}

bool vm_gets_its(const Vm& vm) {
    constexpr std::uint32_t kNeeds = armvcpu::kFeatureVgic | armvcpu::kFeaturePcie;
    return (vm.features & kNeeds) == kNeeds && vm.cfg.ipa_base == vm.cfg.pa_base &&
           machine_has_its();
}

bool access_lpi_register(const Vm& vm, unsigned vcpu, std::uint64_t off, unsigned width,
                         bool is_write, std::uint64_t& value) {
    namespace gicr = armvcpu::vgic::gicr;
    if (!vm.dist.lpis() || vcpu >= vm.num_vcpus) return false;
    const unsigned slot = vm.first_cpu + vcpu;
    if (off == gicr::CTLR && width == 4) {
        if (is_write) {
            // Only EnableLPIs is the guest's to write; QEMU ignores it once
            // set unless CES says clearing is supported.
            const std::uint64_t ctlr = gic::read_redistributor(slot, gicr::CTLR, 4);
            std::uint64_t enable = value & kCtlrEnableLpis;
            // With LPIs on, the redistributor reads and writes the tables the
            // registers name, whatever they hold: the reset value (PA 0, the
            // flash) when the guest never wrote them or its writes were
            // refused. LPIs stay off until both name the VM's RAM (found by
            // `armvcpu fuzz --its`: a refused PENDBASER, then EnableLPIs and
            // an INT, put the pending table on the flash at PA 0, and LPIs the
            // guest never raised stormed in, tens of thousands a second).
            const bool tables_ok =
                table_in_vm_ram(vm, gicr::PROPBASER,
                                gic::read_redistributor(slot, gicr::PROPBASER, 8)) &&
                table_in_vm_ram(vm, gicr::PENDBASER,
                                gic::read_redistributor(slot, gicr::PENDBASER, 8));
            if ((ctlr & kCtlrEnableLpis) == 0 && !tables_ok) enable = 0;
            gic::write_redistributor(slot, gicr::CTLR, 4, (ctlr & ~kCtlrEnableLpis) | enable);
        } else {
            value = gic::read_redistributor(slot, gicr::CTLR, 4) & kCtlrGuestBits;
        }
        return true;
    }
    const bool prop = off >= gicr::PROPBASER && off < gicr::PROPBASER + 8;
    const bool pend = off >= gicr::PENDBASER && off < gicr::PENDBASER + 8;
    if (!prop && !pend) return false;
    // 64-bit accesses to the register, 32-bit ones to either half (12.1.3).
    if (!((width == 8 && off % 8 == 0) || (width == 4 && off % 4 == 0))) {
        if (!is_write) value = 0;
        return true;
    }
    if (is_write) {
        // The redistributor reads and writes these tables at the PAs the
        // guest names, past any stage 2: a table outside the VM's RAM (the
        // firmware's, another VM's) is refused and the register keeps its
        // value (docs/threat-model.md).
        const std::uint64_t base = off & ~7ull;
        std::uint64_t full = value;
        if (width == 4) {
            const unsigned shift = off % 8 == 0 ? 0 : 32;
            full = (gic::read_redistributor(slot, base, 8) & ~(0xffffffffull << shift)) |
                   ((value & 0xffffffffull) << shift);
        }
        if (!table_in_vm_ram(vm, base, full)) return true;
        gic::write_redistributor(slot, off, width, value);
    } else {
        value = gic::read_redistributor(slot, off, width);
    }
    return true;
}

std::uint8_t lpi_priority(unsigned cpu, std::uint32_t intid) {
    namespace gicr = armvcpu::vgic::gicr;
    const std::uint64_t propbaser = gic::read_redistributor(cpu, gicr::PROPBASER, 8);
    const std::uint64_t table = propbaser & kPropAddrMask;
    const unsigned id_bits = static_cast<unsigned>(propbaser & 0x1f) + 1;
    if (table == 0 || id_bits < 14 || (intid >> id_bits) != 0) {
        return armvcpu::vgic::kDefaultPriority;
    }
    // The configuration byte: Priority [7:2], Enable [0] (5.1.1); the
    // ITS-translated LPI was enabled or the GIC would not have signalled it.
    const auto config =
        *reinterpret_cast<const volatile std::uint8_t*>(table + (intid - armvcpu::vgic::kFirstLpi));
    return static_cast<std::uint8_t>(config & 0xfc);
}

void take_lpi(unsigned cpu, std::uint32_t intid) {
    const std::uint32_t n = intid - armvcpu::vgic::kFirstLpi;
    if (n >= kMaxLpiIds - armvcpu::vgic::kFirstLpi) return;  // past GICD_TYPER.IDbits
    if (gic::inject(intid, false, lpi_priority(cpu, intid))) {
        ++armvcpu_lpis_delivered[cpu];
        return;
    }
    g_waiting_lpis[cpu][n / 64] |= 1ull << (n % 64);
    __atomic_store_n(&g_lpis_waiting[cpu], 1, __ATOMIC_RELEASE);
    gic::set_underflow_interrupt(true);
}

bool inject_waiting_lpis(unsigned cpu) {
    __atomic_store_n(&g_lpis_waiting[cpu], 0, __ATOMIC_RELEASE);
    for (unsigned w = 0; w < kWaitingWords; ++w) {
        while (g_waiting_lpis[cpu][w] != 0) {
            const auto b = static_cast<unsigned>(__builtin_ctzll(g_waiting_lpis[cpu][w]));
            const std::uint32_t intid = armvcpu::vgic::kFirstLpi + w * 64 + b;
            if (!gic::inject(intid, false, lpi_priority(cpu, intid))) {
                __atomic_store_n(&g_lpis_waiting[cpu], 1, __ATOMIC_RELEASE);
                return true;
            }
            ++armvcpu_lpis_delivered[cpu];
            g_waiting_lpis[cpu][w] &= g_waiting_lpis[cpu][w] - 1;
        }
    }
    return false;
}

}  // namespace fw::its
