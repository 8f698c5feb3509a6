// The memory interface between the EL2 firmware and a host (the Python
// control plane, or gdb by hand): the per-vCPU exit record, the guest
// configuration the host may overwrite before the first run, and the flag
// that says a host is attached. The firmware exports one object of each under
// the extern "C" symbol names below; the host finds them in the ELF's symbol
// table and reads or writes them through the gdbstub.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "armvcpu/exit_reason.hpp"
#include "armvcpu/trap_frame.hpp"

namespace armvcpu {

inline constexpr const char* kSymExitRecords = "armvcpu_exit_records";
inline constexpr const char* kSymGuestConfig = "armvcpu_guest_config";
inline constexpr const char* kSymHostAttached = "armvcpu_host_attached";
inline constexpr const char* kSymHostHandoff = "armvcpu_host_handoff";
// The gdb transport's other way in (handoff.S): a write watchpoint on the
// doorbell word, which armvcpu_host_handoff stores with the instruction at
// kSymHostDoorbellStore. Firmware older than these symbols has only the
// breakpoint.
inline constexpr const char* kSymHostDoorbell = "armvcpu_host_doorbell";
inline constexpr const char* kSymHostDoorbellStore = "armvcpu_host_doorbell_store";
// The shared-memory transport's wake-up: a 64-bit word the host sets to 1
// while it sleeps (it has a doorbell: QEMU's semihosting console routed to a
// host socket) and 0 while it spins. After publishing an exit the firmware
// rings the doorbell (semihosting SYS_WRITEC) when the word is 1. Firmware
// older than this symbol is only polled.
inline constexpr const char* kSymHostSleeping = "armvcpu_host_sleeping";
inline constexpr const char* kSymFastRules = "armvcpu_fast_rules";
inline constexpr const char* kSymGuestConsole = "armvcpu_guest_console";
// One 64-bit word per vCPU: INTID + 1 of a virtual interrupt the host wants
// injected before the vCPU next enters the guest (0: none). The firmware
// injects it through a list register and clears the word.
inline constexpr const char* kSymPendingIrq = "armvcpu_pending_irq";

inline constexpr std::uint32_t kExitRecordMagic = 0x58455641;  // "AVEX" little-endian
inline constexpr std::uint16_t kExitRecordVersion = 3;

// How the firmware hands exits to the host (the value the host writes into
// armvcpu_host_attached before it releases the CPU).
enum class HostTransport : std::uint32_t {
    None = 0,          // standalone: the firmware answers every exit itself
    Gdb = 1,           // the host stops the CPU in armvcpu_host_handoff through a gdbstub
    SharedMemory = 2,  // the host maps guest RAM and polls the record's seq
};

// How the vCPU left the guest: the vector-table entry that was taken.
enum class ExceptionType : std::uint32_t {
    Synchronous = 0,
    Irq = 1,
    Fiq = 2,
    SError = 3,
};

// What the host asks for when it hands an exit record back.
enum class HostAction : std::uint32_t {
    Default = 0,  // the firmware's built-in answer (as with no host attached)
    Resume = 1,   // resume the guest with the record's frame, verbatim
    Stop = 2,     // stop the VM
    Step = 3,     // resume with the record's frame for one instruction, then exit
    // Take a synchronous exception to the guest's EL1 (exception_entry.hpp)
    // at the exit's instruction, with the record's frame: a synchronous
    // external abort on a data access or an instruction fetch (FAR_EL1 = the
    // record's `far`, which the host may change), or an Undefined Instruction.
    InjectDataAbort = 4,
    InjectInstructionAbort = 5,
    InjectUndef = 6,
    // Put VM 1 back as its snapshot has it (snapshot.hpp) and enter the
    // guest from there; the record's frame is not used. Without a snapshot
    // the VM stops (SnapshotControl::error says why).
    Restore = 7,
};

// Shared-memory protocol: the firmware fills the record, then stores seq
// with release ordering; the host, polling seq with acquire ordering, reads
// the record, writes action (and frame), then stores ack = seq with release;
// the firmware spins until it loads ack == seq with acquire ordering.
struct ExitRecord {
    std::uint32_t magic;    // kExitRecordMagic once the firmware has written it
    std::uint16_t version;  // kExitRecordVersion
    std::uint16_t size;     // sizeof(ExitRecord)
    std::uint32_t vm_id;
    std::uint32_t vcpu_id;
    std::uint64_t seq;  // 1 for the first exit of this vCPU; published last
    std::uint64_t ack;  // written by the host (shared memory): the seq it answered
    ExceptionType exception_type;
    HostAction action;    // written by the host before it resumes
    std::uint64_t esr;    // ESR_EL2
    std::uint64_t far;    // FAR_EL2
    std::uint64_t hpfar;  // HPFAR_EL2
    std::uint64_t elr;    // ELR_EL2 as the exception left it (before any PC update)
    ExitReason reason;    // the firmware's classification
    TrapFrame frame;      // guest registers at the exit; the host may edit
};

static_assert(std::is_trivially_copyable_v<ExitRecord>);
static_assert(std::is_standard_layout_v<ExitRecord>);
static_assert(offsetof(ExitRecord, seq) == 16);
static_assert(offsetof(ExitRecord, ack) == 24);
static_assert(offsetof(ExitRecord, exception_type) == 32);
static_assert(offsetof(ExitRecord, action) == 36);
static_assert(offsetof(ExitRecord, esr) == 40);
static_assert(offsetof(ExitRecord, elr) == 64);
static_assert(offsetof(ExitRecord, reason) == 72);
static_assert(offsetof(ExitRecord, frame) == 144);
static_assert(sizeof(ExitRecord) == 144 + sizeof(TrapFrame));
static_assert(offsetof(ExitRecord, seq) % 8 == 0 && offsetof(ExitRecord, ack) % 8 == 0,
              "seq and ack are accessed atomically");
static_assert(sizeof(ExitRecord) < 0x10000);  // fits the 16-bit size field

// Where the guest lives and where it starts. The firmware carries defaults
// for a standalone run (guest placed with QEMU's -device loader); a host
// overwrites the fields before releasing the CPU.
// GuestConfig::selftest: overflow the EL2 stack before entering the guest;
// the guard page must turn that into a reported exit, not corruption.
inline constexpr std::uint32_t kSelfTestStackOverflow = 1u << 0;
// GuestConfig::selftest: count the instructions EL2 executes with the PMU
// (INST_RETIRED, EL2 only) into armvcpu_el2_instructions, for benchmarks.
// QEMU counts instructions exactly only with -icount.
inline constexpr std::uint32_t kSelfTestCountEl2 = 1u << 1;
inline constexpr const char* kSymEl2Instructions = "armvcpu_el2_instructions";

// GuestConfig::features: the VM's virtual platform.
// The GICv3 distributor and redistributors emulated in EL2 (vgic_dist.hpp);
// interrupts reach the guest only as its GIC programming allows. Without it
// the guest has the virtual CPU interface alone (bare-metal tests).
inline constexpr std::uint32_t kFeatureVgic = 1u << 0;
// Devices of QEMU virt passed through to the guest: their MMIO pages mapped
// in stage 2 and (with kFeatureVgic) their SPIs injected hardware-linked.
inline constexpr std::uint32_t kFeatureRtc = 1u << 1;     // PL031 at 0x0901_0000, SPI 34
inline constexpr std::uint32_t kFeatureVirtio = 1u << 2;  // virtio-mmio 0x0A00_0000, SPIs 48..79
// Every exit, also those the firmware handles itself, goes into the exit log.
inline constexpr std::uint32_t kFeatureExitLog = 1u << 3;
// (VM 1's config) The firmware prints nothing of its own on the PL011 but
// fatal errors: a guest with the UART passed through then owns the console,
// as on a machine without a hypervisor.
inline constexpr std::uint32_t kFeatureQuiet = 1u << 4;
// QEMU virt's two CFI flash banks (0x0000_0000, 128 MiB, no interrupt)
// passed through, for a guest booted as QEMU's -bios boots: from flash 0.
inline constexpr std::uint32_t kFeatureFlash = 1u << 5;
// QEMU's fw_cfg (0x0902_0000, DMA into guest RAM, which is identity-mapped)
// and the PL061 GPIO (0x0903_0000, SPI 7: the power button).
inline constexpr std::uint32_t kFeatureFwCfg = 1u << 6;
inline constexpr std::uint32_t kFeatureGpio = 1u << 7;
// QEMU virt's PCIe host bridge: ECAM (low 0x3F00_0000, 16 MiB, and high
// 0x40_1000_0000, 256 MiB), the MMIO windows (0x1000_0000 and the 512 GiB
// one at 0x80_0000_0000), the I/O window (0x3EFF_0000) and INTA..D (SPIs
// 3..6, INTIDs 35..38). Devices behind it DMA into guest RAM by IPA = PA.
inline constexpr std::uint32_t kFeaturePcie = 1u << 8;
// (VM 1's config, with kFeaturePcie) QEMU's SMMUv3 (-M virt,iommu=smmuv3)
// confines PCIe DMA to the VM's RAM (smmu.hpp); a blocked DMA is an exit.
inline constexpr std::uint32_t kFeatureSmmu = 1u << 9;
// The VM's PSCI and SMCCC calls are answered as QEMU 7.2's own PSCI answers a
// -M virt guest (psci::Smccc::QemuVirt: no SMCCC_VERSION, so SMCCC 1.0), for
// a guest booted as bare QEMU boots it; without it, SMCCC 1.1.
inline constexpr std::uint32_t kFeatureQemuSmccc = 1u << 10;

// The firmware's armvcpu_fast_path[slot]: bit 0 lets the vector code answer
// PSCI_VERSION and SMCCC_VERSION itself (vectors.S); bit 1 leaves
// SMCCC_VERSION to the core (a VM with kFeatureQemuSmccc).
inline constexpr std::uint8_t kFastPathOn = 1u << 0;
inline constexpr unsigned kFastPathNoSmcccVersionBit = 1;
// (VM 1's config) Snapshot the VM at its first guest entry, for
// HostAction::Restore (snapshot.hpp). A high bit: it is no device.
inline constexpr std::uint32_t kFeatureSnapshot = 1u << 16;

// The exit log: what each physical CPU's exits were, including those the
// firmware answers without the host (PSCI, WFI, SGIs, the emulated GIC and
// UART, fast rules). One ring per physical CPU; `written` counts every entry
// ever made (published with release ordering) and the host keeps its own
// read position, so a slow reader loses the oldest entries, never the
// firmware's time.
//
// The EL2 scheduler's world switches (vCPUs time-sharing physical CPUs) are
// entries of the same rings, so a reader sees them in order with the exits:
// kind kExitLogWorldSwitch (no ExitKind), handler Scheduler, vm_id/vcpu_id
// the vCPU switched out, in that vCPU's slot's ring (sched::switch_log_entry
// packs the rest).
enum class ExitLogHandler : std::uint8_t { Firmware = 0, FastRule = 1, Host = 2, Scheduler = 3 };
inline constexpr std::uint8_t kExitLogWorldSwitch = 0xff;
static_assert(kExitLogWorldSwitch >= kNumExitKinds);

struct ExitLogEntry {
    std::uint64_t time;  // CNTPCT_EL0 at the exit (the counter runs at CNTFRQ_EL0)
    std::uint64_t arg;   // the exit's subject: MMIO IPA, sysreg key, hypercall nr, INTID, ...
    std::uint32_t esr;   // ESR_EL2 (0 for interrupts)
    std::uint8_t kind;   // ExitKind
    std::uint8_t vm_id;
    std::uint8_t vcpu_id;
    ExitLogHandler handler;
};
static_assert(sizeof(ExitLogEntry) == 24);
static_assert(offsetof(ExitLogEntry, esr) == 16);
static_assert(offsetof(ExitLogEntry, kind) == 20);

inline constexpr unsigned kExitLogEntries = 4096;  // per CPU, a power of two

struct ExitLog {
    std::uint64_t written;
    std::uint64_t frequency;  // CNTFRQ_EL0
    ExitLogEntry entries[kExitLogEntries];
};
static_assert(offsetof(ExitLog, entries) == 16);
inline constexpr const char* kSymExitLog = "armvcpu_exit_log";

// The subject of an exit, as the log records it.
constexpr std::uint64_t exit_log_arg(const ExitReason& r) {
    switch (r.kind) {
        case ExitKind::MmioRead: return r.mmio_read.addr;
        case ExitKind::MmioWrite: return r.mmio_write.addr;
        case ExitKind::SysRegRead: return r.sysreg_read.addr;
        case ExitKind::SysRegWrite: return r.sysreg_write.addr;
        case ExitKind::Hypercall: return r.hypercall.nr;
        case ExitKind::ExternalInterrupt: return r.external_interrupt.vector;
        case ExitKind::NestedPageFault: return r.nested_page_fault.addr;
        case ExitKind::CpuUp: return r.cpu_up.target_cpu;
        case ExitKind::SendIpi: return r.send_ipi.vector;
        default: return 0;
    }
}

// The machine's physical memory, as the firmware and the host lay it out on
// QEMU virt. A guest sees QEMU virt's own map: its RAM at IPA 0x4000_0000,
// exactly as large as it asked for, mapped to the same physical addresses (so
// passed-through DMA lands in guest RAM). The firmware lives above any guest
// RAM, at a fixed address the linker script uses too, and other VMs' RAM
// follows it; the host gives QEMU enough RAM to reach them (QEMU's RAM is one
// block from 0x4000_0000, and pages never touched cost nothing).
inline constexpr std::uint64_t kRamBase = 0x4000'0000;
// Where the firmware image is linked (firmware/linker.ld) and what it may use.
inline constexpr std::uint64_t kFirmwareBase = 0x2'0000'0000;
inline constexpr std::uint64_t kFirmwareSize = 0x400'0000;  // 64 MiB
// The most RAM VM 1 can have: it must end where the firmware starts.
inline constexpr std::uint64_t kMaxGuestRam = kFirmwareBase - kRamBase;
// VMs 2.. get their RAM (not identity-mapped) from here on, one slice each.
inline constexpr std::uint64_t kExtraVmRamBase = kFirmwareBase + kFirmwareSize;
// QEMU virt's RAM may reach up to the high redistributors at 256 GiB.
inline constexpr std::uint64_t kMachineRamLimit = 0x40'0000'0000;
static_assert(kFirmwareBase % (1ull << 30) == 0, "the EL2 map gives the firmware its own GiB");
static_assert(kFirmwareSize <= (1ull << 30));
// Hypercall claims: the HVC/SMC function IDs the host wants to see. An ID no
// fast rule answers and nobody claimed gets SMCCC NOT_SUPPORTED in EL2,
// without a round trip; with no host attached nothing is claimed. The host
// fills ranges[count] and then publishes count (or `all`) with release
// ordering; the firmware loads them with acquire ordering.
inline constexpr const char* kSymHypercallClaims = "armvcpu_hypercall_claims";
inline constexpr std::uint32_t kHypercallClaimsMagic = 0x4D4C4348;  // "HCLM"
inline constexpr unsigned kMaxHypercallClaims = 32;

struct HypercallClaim {
    std::uint64_t first;  // the first ID claimed
    std::uint64_t last;   // the last ID claimed (inclusive)
};

struct HypercallClaims {
    std::uint32_t magic;
    std::uint32_t capacity;
    std::uint64_t all;    // nonzero: every ID is claimed
    std::uint64_t count;  // ranges[0..count) are in use
    HypercallClaim ranges[kMaxHypercallClaims];
};

static_assert(std::is_trivially_copyable_v<HypercallClaims>);
static_assert(offsetof(HypercallClaims, all) == 8);
static_assert(offsetof(HypercallClaims, count) == 16);
static_assert(offsetof(HypercallClaims, ranges) == 24);
static_assert(sizeof(HypercallClaim) == 16);
static_assert(sizeof(HypercallClaims) == 24 + 16 * kMaxHypercallClaims);

// Whether the host claimed hypercall `nr`.
inline bool hypercall_claimed(const HypercallClaims& claims, std::uint64_t nr) {
    if (claims.magic != kHypercallClaimsMagic) return false;
    if (__atomic_load_n(&claims.all, __ATOMIC_ACQUIRE) != 0) return true;
    std::uint64_t count = __atomic_load_n(&claims.count, __ATOMIC_ACQUIRE);
    if (count > kMaxHypercallClaims) count = kMaxHypercallClaims;
    for (std::uint64_t i = 0; i < count; ++i) {
        if (nr >= claims.ranges[i].first && nr <= claims.ranges[i].last) return true;
    }
    return false;
}

struct GuestConfig {
    std::uint64_t entry;     // IPA of the first instruction
    std::uint64_t ipa_base;  // guest RAM as the guest sees it
    std::uint64_t pa_base;   // guest RAM in physical memory
    std::uint64_t size;      // bytes of guest RAM (a multiple of 2 MiB)
    std::uint64_t x0;        // the guest's X0 at entry (e.g. a DTB address)
    // Extra traps the host asks for, ORed into the guest's HCR_EL2 (e.g. TID3,
    // bit 18, traps the ID registers; TWI, bit 13, traps WFI) ...
    std::uint64_t hcr_el2_set;
    // ... and MDCR_EL2 as the guest runs with it (e.g. TDA, bit 9, traps the
    // debug registers).
    std::uint64_t mdcr_el2;
    std::uint32_t uart_mode;  // UartMode (pl011.hpp)
    // Firmware self-tests the host can ask for (kSelfTest*), to show that
    // its protections work.
    std::uint32_t selftest;
    std::uint64_t uart_base;  // the PL011's address, for the guest and physically
    std::uint32_t num_vcpus;  // vCPUs of the VM (one per physical CPU at most); 0 means 1
    std::uint32_t features;   // kFeature* bits: what the VM's virtual platform has
};

static_assert(std::is_trivially_copyable_v<GuestConfig>);
static_assert(offsetof(GuestConfig, entry) == 0);
static_assert(offsetof(GuestConfig, x0) == 32);
static_assert(offsetof(GuestConfig, mdcr_el2) == 48);
static_assert(offsetof(GuestConfig, uart_mode) == 56);
static_assert(offsetof(GuestConfig, uart_base) == 64);
static_assert(offsetof(GuestConfig, num_vcpus) == 72);
static_assert(offsetof(GuestConfig, features) == 76);
static_assert(sizeof(GuestConfig) == 80);

}  // namespace armvcpu
