// LPIs through QEMU's own ITS, passed through to the VM that owns the PCIe
// devices. Why not an ITS emulated in EL2: a PCIe device's MSI is a DMA write
// to GITS_TRANSLATER that no stage 2 sees, so it reaches the physical ITS
// whatever the guest was shown; an emulated ITS would still have to program
// the physical one behind the guest's back (docs/architecture.md, "ITS and
// LPIs", has the measurements). The guest therefore drives the ITS frames
// directly (mapped in its stage 2) with tables in its own RAM, which works
// because its IPAs are the machine's PAs; the firmware forwards what the
// redistributors hold for LPIs (GICR_PROPBASER, GICR_PENDBASER,
// GICR_CTLR.EnableLPIs) to the physical ones, takes each physical LPI at EL2
// and hands it to the guest as a virtual LPI in a list register (HW = 0: an
// LPI has no active state to link).
#pragma once

#include <cstdint>

#include "armvcpu/stage2.hpp"
#include "armvcpu/vgic.hpp"
#include "gic.hpp"
#include "host_link.hpp"
#include "vm.hpp"

namespace fw::its {

// QEMU virt's ITS: the control frame and the translation frame (GITS_TRANSLATER
// at 0x0809_0040), 64 KiB each.
inline constexpr std::uint64_t kGitsBase = 0x0808'0000;
inline constexpr std::uint64_t kGitsSize = 0x2'0000;
inline constexpr std::uint64_t kGitsTranslater = kGitsBase + 0x1'0040;

// True when the machine's GIC has LPIs (QEMU sets GICD_TYPER.LPIS exactly
// when it has an ITS). Read once the GIC is up.
bool machine_has_its();

// True when VM `vm` gets the ITS: it owns the PCIe devices, the machine has
// an ITS, and its IPAs are PAs (the ITS reads its tables, and devices DMA,
// at the addresses the guest writes).
bool vm_gets_its(const Vm& vm);

// Maps the ITS frames into `vm`'s stage 2 when it gets them.
template <typename Tables>
armvcpu::stage2::MapError map_its(Tables& s2, const Vm& vm) {
    if (!vm_gets_its(vm)) return armvcpu::stage2::MapError::None;
    constexpr armvcpu::stage2::Attributes kDevice{armvcpu::stage2::Access::ReadWrite,
                                                  armvcpu::stage2::MemAttr::DeviceNGnRE, true};
    return s2.map(kGitsBase, kGitsBase, kGitsSize, kDevice);
}

// A guest access to its redistributors' LPI registers (GICR_CTLR,
// GICR_PROPBASER, GICR_PENDBASER of vCPU `vcpu`'s RD_base frame), answered
// from the physical redistributor of that vCPU's CPU. Returns false for any
// other offset (the emulated GIC answers it). `value` in: a write's data;
// out: a read's result.
bool access_lpi_register(const Vm& vm, unsigned vcpu, std::uint64_t off, unsigned width,
                         bool is_write, std::uint64_t& value);

// LPIs taken at EL2 that found no free list register, per vCPU slot; put
// into list registers before the slot's next entry.
inline constexpr unsigned kMaxLpiIds = 1u << 16;  // GICD_TYPER.IDbits = 15: 16-bit INTIDs
inline constexpr unsigned kWaitingWords = (kMaxLpiIds - armvcpu::vgic::kFirstLpi) / 64;
extern std::uint64_t g_waiting_lpis[kMaxCpus][kWaitingWords];
extern std::uint32_t g_lpis_waiting[kMaxCpus];  // non-zero: some bit is set

// Delivered LPIs, per slot (what the bench and tests read to count exits
// per MSI).
extern std::uint64_t armvcpu_lpis_delivered[kMaxCpus];

// The priority the guest gave LPI `intid` in its LPI configuration table
// (byte intid - 8192 of the table GICR_PROPBASER names, bits [7:2]).
std::uint8_t lpi_priority(unsigned cpu, std::uint32_t intid);

// A physical LPI taken at EL2 on vCPU slot `cpu`: into a list register, or
// waiting for one.
void take_lpi(unsigned cpu, std::uint32_t intid);

// Puts waiting LPIs into free list registers; true when some still wait.
bool inject_waiting_lpis(unsigned cpu);

inline bool lpis_waiting(unsigned cpu) {
    return __atomic_load_n(&g_lpis_waiting[cpu], __ATOMIC_ACQUIRE) != 0;
}

}  // namespace fw::its
