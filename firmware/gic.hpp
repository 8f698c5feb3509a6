// The GICv3 on QEMU virt, driven at EL2: the distributor, this CPU's
// redistributor, the physical CPU interface, and the virtual interface's
// list registers.
#pragma once

#include <cstdint>

#include "armvcpu/vgic.hpp"
#include "armvcpu/vgic_icv.hpp"

namespace fw::gic {

// Finds the machine's GIC version (gic_v2.hpp's detect), then brings up
// the distributor (once, on CPU 0) and this CPU's side.
void init();

// The machine has a GICv2 (every function here then drives it, gic_v2.hpp).
// Inline, a load: the waits that call it are recognised by the function
// they run in (armvcpu fuzz samples a stuck CPU's PC).
extern bool g_machine_v2;
inline bool v2() { return g_machine_v2; }

// Brings up CPU `cpu`'s redistributor and this CPU's interfaces (physical
// and virtual); enables the generic timers' PPIs. Runs on that CPU.
void init_cpu(unsigned cpu);

// Acknowledges the highest-priority pending interrupt (ICC_IAR1_EL1) and
// drops its running priority (EOImode = 1: it stays active until deactivated).
std::uint32_t acknowledge();

// Deactivates an interrupt the firmware has finished with (ICC_DIR_EL1).
void deactivate(std::uint32_t intid);

// Puts a virtual interrupt into a free list register. With hw, the physical
// INTID is linked and is deactivated when the guest deactivates it.
// Returns false when every list register is in use.
// An INTID already in a list register is not added twice (an active one
// becomes active and pending).
bool inject(std::uint32_t vintid, bool hw, std::uint8_t priority = armvcpu::vgic::kDefaultPriority);
// Enables or disables a physical interrupt: an SPI in the distributor, or a
// PPI/SGI in physical CPU `cpu`'s redistributor.
void set_enabled(unsigned cpu, std::uint32_t intid, bool on);
// Makes SPI `intid` a Group 1 interrupt at the default priority, routed to
// physical CPU `cpu` (it stays disabled until set_enabled).
void configure_spi(std::uint32_t intid, unsigned cpu);
// Routes SPI `intid` to physical CPU `cpu`.
void route_spi(std::uint32_t intid, unsigned cpu);
// Makes SPI `intid` edge-triggered (a device that pulses its line).
void set_edge_triggered(std::uint32_t intid);

// Asks for the underflow maintenance interrupt (ICH_HCR_EL2.UIE) while
// interrupts wait for a free list register, and stops asking when none do.
void set_underflow_interrupt(bool on);

// True when a physical interrupt is pending for this CPU (ICC_HPPIR1_EL1).
bool pending();
// True when a list register holds a pending virtual interrupt the virtual
// CPU interface would signal: the vCPU has a wake-up event already, whatever
// its PSTATE.I (Arm ARM D1.16.2, "Wait for Interrupt").
bool virtual_pending();

// List register `n` of this CPU (0 past the implemented ones), and how many
// the firmware uses.
std::uint64_t list_register(unsigned n);
unsigned num_list_registers();

// Writes list register `n` of this CPU.
void set_list_register(unsigned n, std::uint64_t value);

// The physical pending bits (GICD/GICR_ISPENDR<n>: the pending latch OR'd
// with the input line of a level interrupt, as QEMU's GICv3 reads them) of
// INTIDs first..first+31: the private ones of physical CPU `cpu`'s
// redistributor when first is 0, else SPIs from the distributor.
std::uint32_t pending_bits(unsigned cpu, std::uint32_t first);

// The machine's GIC has LPIs (GICD_TYPER.LPIS [17]): QEMU's has them exactly
// when it has an ITS.
bool has_lpis();

// A register of the RD_base frame of vCPU slot `cpu`'s physical
// redistributor, read or written with an access of `width` bytes (4 or 8).
std::uint64_t read_redistributor(unsigned cpu, std::uint64_t off, unsigned width);
void write_redistributor(unsigned cpu, std::uint64_t off, unsigned width, std::uint64_t value);

// This CPU's virtual CPU interface (list registers, active priorities,
// ICH_VMCR_EL2, ICH_HCR_EL2) into `s`, and back (an emulated ICV access).
void load_icv(armvcpu::vgic::IcvState& s);
void store_icv(const armvcpu::vgic::IcvState& s);

// The physical SGI one CPU sends another to make it leave its guest and look
// at what is pending for it (armvcpu reserves SGI 8 of the 16).
inline constexpr std::uint32_t kKickSgi = 8;

// Sends kKickSgi to physical CPU `cpu` (Aff0 = cpu, QEMU virt's numbering).
void kick(unsigned cpu);

}  // namespace fw::gic
