#include "host_link.hpp"

#include "armvcpu/classify.hpp"
#include "armvcpu/fast_rules.hpp"
#include "armvcpu/mailbox.hpp"
#include "armvcpu/pl011.hpp"
#include "sysreg.hpp"

using armvcpu::ExitRecord;
using armvcpu::GuestConfig;
using armvcpu::HostAction;
using armvcpu::HostTransport;

extern "C" {

// Written by the host through the gdbstub before it releases the CPU. Both
// live in .data, not .bss, so that the boot code's BSS clear leaves them be.
[[gnu::used, gnu::section(".data")]] volatile std::uint32_t armvcpu_host_attached = 0;

// Defaults for a standalone run: 64 MiB of guest RAM at IPA = PA 0x4000_0000
// (QEMU virt's RAM, where QEMU also puts its device tree, 1 MiB of it), entry
// at 0x4020_0000, the first 2 MiB boundary past that tree, with x0 = the
// tree; one vCPU, the PL011 passed through (the guest's output shares the
// serial line). Put a position-independent guest there with QEMU's
// "-device loader,file=guest.bin,addr=0x40200000".
// One per VM: VM 1 always runs; VM k > 1 runs when the host gives it a size.
[[gnu::used, gnu::section(".data")]] GuestConfig armvcpu_guest_config[fw::kMaxVms] = {
    {0x40200000, armvcpu::kRamBase, armvcpu::kRamBase, 0x04000000, armvcpu::kRamBase, 0, 0,
     static_cast<std::uint32_t>(armvcpu::UartMode::Passthrough), 0, 0x09000000, 1, 0}};

// The guest's console stream when its UART is emulated (pl011.hpp).
[[gnu::used]] armvcpu::ConsoleRing armvcpu_guest_console[fw::kMaxVms];

// Empty until the host adds rules (fast_rules.hpp); in .data so that a host
// may fill it before the first instruction runs.
[[gnu::used, gnu::section(".data")]] armvcpu::FastRuleTable armvcpu_fast_rules = {
    armvcpu::kFastRuleMagic, armvcpu::kMaxFastRules, 0, {}};

// Hypercall IDs the host wants to see (host_interface.hpp); none until the
// host claims some. In .data like the fast rules.
[[gnu::used, gnu::section(".data")]] armvcpu::HypercallClaims armvcpu_hypercall_claims = {
    armvcpu::kHypercallClaimsMagic, armvcpu::kMaxHypercallClaims, 0, 0, {}};

// 1 while the host sleeps on its doorbell (host_interface.hpp); written by
// the host only when QEMU routes semihosting output to it, so the firmware's
// semihosting call below never meets a QEMU without semihosting. In .data:
// the host may set it while this CPU still clears the BSS at boot, and a
// cleared word would cost the first exit its ring.
[[gnu::used, gnu::section(".data")]] volatile std::uint64_t armvcpu_host_sleeping = 0;

[[gnu::used]] ExitRecord armvcpu_exit_records[fw::kMaxVcpus];
[[gnu::used]] std::uint64_t armvcpu_pending_irq[fw::kMaxVcpus];

// Per physical CPU: 1 while the vector code may answer PSCI_VERSION and
// SMCCC_VERSION itself (vectors.S), without the exit reaching the run loop.
[[gnu::used]] std::uint8_t armvcpu_fast_path[fw::kMaxCpus];

// Every exit, when a VM asks for it (kFeatureExitLog): one ring per CPU.
[[gnu::used]] armvcpu::ExitLog armvcpu_exit_log[fw::kMaxCpus];
// EL2 instructions retired so far (kSelfTestCountEl2), updated at each report.
[[gnu::used]] std::uint64_t armvcpu_el2_instructions;

// handoff.S: a call the host stops the CPU in (a breakpoint, or a write
// watchpoint on the doorbell word it stores).
void armvcpu_host_handoff(ExitRecord* record);
}

namespace fw {

bool host_attached() { return armvcpu_host_attached != 0; }

bool counting_el2 = false;

std::uint64_t mdcr_el2_bits() {
    // With HPMN = 0 every counter belongs to EL2 and is enabled by HPME (bit 7),
    // so the guest's own PMCR_EL0 cannot stop the count.
    // Otherwise the guest has every counter: HPMN = PMCR_EL0.N [15:11].
    return counting_el2 ? 1u << 7 : (ARMVCPU_READ_SYSREG(pmcr_el0) >> 11) & 0x1f;
}

void start_counting_el2() {
    // PMEVTYPER0_EL0: INST_RETIRED (0x08); P (bit 31) and U (bit 30) exclude
    // EL1 and EL0, NSH (bit 27) includes EL2 (Arm ARM D13.2 "PMEVTYPER<n>_EL0").
    ARMVCPU_WRITE_SYSREG(pmevtyper0_el0, (1ull << 31) | (1ull << 30) | (1ull << 27) | 0x08);
    ARMVCPU_WRITE_SYSREG(pmevcntr0_el0, 0);
    ARMVCPU_WRITE_SYSREG(pmcntenset_el0, 1);
    ARMVCPU_WRITE_SYSREG(pmcr_el0, 1);  // E: counters on
    asm volatile("isb" ::: "memory");
    counting_el2 = true;
}

namespace {

HostTransport transport() { return static_cast<HostTransport>(armvcpu_host_attached); }

// Wakes a host sleeping in poll() on its doorbell socket: semihosting
// SYS_WRITEC (0x03) of one byte, which QEMU writes to the chardev the host
// named in -semihosting-config. A few microseconds in QEMU, paid only when
// the host sleeps.
void ring_host_doorbell() {
    static const char bell = '!';
    register std::uint64_t op asm("x0") = 0x03;
    register const char* arg asm("x1") = &bell;
    asm volatile("hlt #0xf000" : "+r"(op) : "r"(arg) : "memory");
}

}  // namespace

HostAction report_exit(unsigned slot, unsigned vm_id, unsigned vcpu_id, armvcpu::ExceptionType type,
                       const armvcpu::Syndrome& syndrome, std::uint64_t exception_pc,
                       const armvcpu::ExitReason& reason, armvcpu::TrapFrame& frame) {
    ExitRecord& record = armvcpu_exit_records[slot];
    record.magic = armvcpu::kExitRecordMagic;
    record.version = armvcpu::kExitRecordVersion;
    record.size = sizeof(ExitRecord);
    record.vm_id = vm_id;
    record.vcpu_id = vcpu_id;
    if (counting_el2) armvcpu_el2_instructions = ARMVCPU_READ_SYSREG(pmevcntr0_el0);
    const std::uint64_t seq = record.seq + 1;
    record.exception_type = type;
    record.action = HostAction::Default;
    record.esr = syndrome.esr;
    record.far = syndrome.far;
    record.hpfar = syndrome.hpfar;
    record.elr = exception_pc;
    record.reason = reason;
    record.frame = frame;

    switch (transport()) {
        case HostTransport::Gdb:
            // seq last, with release ordering: the host reads every CPU's
            // record at every stop, so a CPU stopped before it reaches the
            // hand-off must show either its old seq or a complete record. The
            // hand-off returns once the host has stored ack = seq; the call is
            // a compiler barrier, so the record is read again after that.
            armvcpu::mailbox::store_release(&record.seq, seq);
            armvcpu_host_handoff(&record);
            break;
        case HostTransport::SharedMemory:
            armvcpu::mailbox::store_release(&record.seq, seq);
            // The host sets `sleeping` and then looks at seq once more before
            // it sleeps; here seq is published before `sleeping` is read. The
            // full barrier on each side means one of the two sees the other's
            // store: either the host finds this exit or it is rung awake.
            asm volatile("dmb ish" ::: "memory");
            if (armvcpu_host_sleeping != 0) ring_host_doorbell();
            while (armvcpu::mailbox::load_acquire(&record.ack) != seq) {
                asm volatile("yield");
            }
            break;
        default: record.seq = seq; return HostAction::Default;
    }
    const HostAction action = record.action;
    // Resume, Step and the Inject* actions carry the frame the host left.
    if (action != HostAction::Default && action != HostAction::Stop) frame = record.frame;
    return action;
}

}  // namespace fw
