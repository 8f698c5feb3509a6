// The GICv2 on QEMU virt (gic-version=2 with virtualization=on), driven at
// EL2: the distributor (GICD), this CPU's interface (GICC) and its virtual
// interface control (GICH) with the list registers. gic.cpp's functions
// dispatch here when the machine has a GICv2 (gic::v2()).
#pragma once

#include <cstdint>

#include "armvcpu/vgic_v2.hpp"

namespace fw::gicv2 {

// True when the machine's GIC is a GICv2: the CPU has no GIC system
// register interface (ID_AA64PFR0_EL1.GIC [27:24] = 0) and the distributor's
// GICD_PIDR2.ArchRev [7:4] is 2. Powers off, saying so, when there is
// neither a GICv3 nor a GICv2.
bool detect();

// Brings up the distributor (once, on CPU 0).
void init();
// Brings up this CPU's banked distributor registers (its SGIs and PPIs), its
// CPU interface (EOImode = 1) and its virtual interface. Runs on CPU `cpu`.
void init_cpu(unsigned cpu);

// Acknowledges (GICC_IAR) and drops the priority (GICC_EOIR) of the highest
// pending interrupt. An SGI (only the kick: armvcpu sends no other) is
// deactivated at once too, since its deactivation needs the source CPU
// GICC_IAR returned with it.
std::uint32_t acknowledge();
// Deactivates an interrupt (GICC_DIR); SGIs were deactivated when acknowledged.
void deactivate(std::uint32_t intid);

// Puts a virtual interrupt into a free list register; a software SGI
// carries its requesting vCPU (`source`). With `linked`, physical interrupt
// `vintid` (acknowledged, still active) is deactivated when the guest ends
// the virtual one. An interrupt already in a list register is not added
// twice. False when every list register is in use.
//
// Linked interrupts use EOI maintenance (GICH_LR.EOI, then GICC_DIR from
// complete_eois), not the HW bit: QEMU 7.2 forwards a HW list register's
// deactivation to the distributor without re-evaluating the physical CPU
// interface (arm_gic.c, gic_complete_irq on a vCPU updates only the virtual
// one), so a level interrupt still asserted at that moment, or one that
// became pending while active, is not signalled until some other GIC event;
// a guest idle in WFI with nothing else due then never wakes. GICC_DIR does
// re-evaluate it.
bool inject(std::uint32_t vintid, bool linked, std::uint8_t priority, bool group1, unsigned source);

// Deactivates the physical interrupts behind list registers whose virtual
// interrupt the guest has ended (EOI maintenance), freeing them. Runs on the
// maintenance interrupt and whenever inject() looks for room.
void complete_eois();

// Enables or disables a physical interrupt. An SGI or PPI only on the
// calling CPU (its banked GICD_ISENABLER0 is its own), which is `cpu` for
// every caller.
void set_enabled(unsigned cpu, std::uint32_t intid, bool on);
// Makes SPI `intid` Group 0 (signalled as IRQ) at the default priority,
// targeting physical CPU `cpu` (it stays disabled until set_enabled).
void configure_spi(std::uint32_t intid, unsigned cpu);
// Targets SPI `intid` at physical CPU `cpu` only (GICD_ITARGETSR).
void route_spi(std::uint32_t intid, unsigned cpu);

// This CPU's list registers (GICH_LR<n>), for what the guest's distributor
// reads and clears of the interrupts they hold.
unsigned num_list_registers();
std::uint32_t read_list_register(unsigned n);
void write_list_register(unsigned n, std::uint32_t value);

// GICH_HCR.UIE: a maintenance interrupt once the guest has made room.
void set_underflow_interrupt(bool on);

// A physical interrupt is pending for this CPU (GICC_HPPIR).
bool pending();
// A list register holds a pending interrupt the virtual CPU interface would
// signal (its group enabled and above the priority mask, GICH_VMCR).
bool virtual_pending();

// Sends SGI `sgi` to physical CPU `cpu` (GICD_SGIR's CPUTargetList).
void send_sgi(unsigned cpu, std::uint32_t sgi);

}  // namespace fw::gicv2
