// VM snapshots: the firmware keeps VM 1 as it was at its first guest entry
// and puts it back when the host answers an exit with HostAction::Restore,
// without QEMU starting again (a fuzzer's reset between programs).
//
// What a snapshot holds: the vCPU's TrapFrame and system-register context
// (guest_context.hpp), its GIC virtual CPU interface (ICH_HCR/VMCR, active
// priorities, list registers), the emulated distributor with kFeatureVgic,
// and guest RAM. RAM is not copied when the snapshot is taken: stage 2 maps
// every RAM page read-only from then on, and the first write to a page
// (a stage-2 permission fault, answered in EL2 without the host) saves the
// page before it makes it writable. A restore copies back only those pages.
//
// The host asks for a snapshot with kFeatureSnapshot in VM 1's GuestConfig
// before it releases the CPU, and reads how it went here (the firmware
// writes every field but the load request).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "armvcpu/esr.hpp"
#include "armvcpu/iss.hpp"

namespace armvcpu {

inline constexpr const char* kSymSnapshot = "armvcpu_snapshot";
// Bytes a restore copies into guest RAM after it (SnapshotControl::load_*):
// what the host wants there instead of the snapshot's contents (a fuzzer's
// next program). The firmware writes them through its own stores, so QEMU
// drops code it translated from the old bytes, which a host's write into
// shared RAM would not make it do.
inline constexpr const char* kSymSnapshotStaging = "armvcpu_snapshot_staging";
inline constexpr std::uint64_t kSnapshotStagingSize = 0x10000;
inline constexpr std::uint32_t kSnapshotMagic = 0x50414E53;  // "SNAP" little-endian

enum class SnapshotState : std::uint32_t {
    None = 0,    // no snapshot asked for (or not yet at the first entry)
    Taken = 1,   // taken; restores possible
    Failed = 2,  // asked for, but it could not be taken or can no longer be restored
};

// Why a snapshot or a restore failed (SnapshotControl::error).
enum class SnapshotError : std::uint32_t {
    None = 0,
    NoSnapshot = 1,     // Restore without a snapshot taken
    TooManyVcpus = 2,   // snapshots are of VMs with one vCPU
    RamTooLarge = 3,    // more guest RAM than the firmware has page tables to track
    DirtyOverflow = 4,  // the guest wrote more pages than the save area holds
    BadLoad = 5,        // the load request lies outside guest RAM or the staging area
    NotRam = 6,         // VM 1's RAM is not mapped with 2 MiB blocks or 4 KiB pages of its own
};

struct SnapshotControl {
    std::uint32_t magic;           // kSnapshotMagic once the firmware has set it up
    SnapshotState state;           // firmware
    SnapshotError error;           // firmware: the last failure (None after a good restore)
    std::uint32_t page_capacity;   // firmware: pages the save area holds
    std::uint64_t restores;        // firmware: restores done
    std::uint64_t dirty_pages;     // firmware: pages saved since the last restore
    std::uint64_t pages_restored;  // firmware: pages copied back by all restores
    std::uint64_t write_faults;    // firmware: first writes to a page, answered in EL2
    // Written by the host before it answers with Restore: after the restore,
    // copy load_size bytes from the staging area to guest IPA load_ipa
    // (load_size 0: nothing). The firmware leaves them as they are.
    std::uint64_t load_ipa;
    std::uint64_t load_size;
    // With kSnapshotSetTraps in flags: from this restore on, the VM runs
    // with these extra traps (GuestConfig::hcr_el2_set and mdcr_el2) instead
    // of those it had; without it, with the traps it has.
    std::uint64_t hcr_el2_set;
    std::uint64_t mdcr_el2;
    std::uint32_t flags;
    std::uint32_t reserved;
};

inline constexpr std::uint32_t kSnapshotSetTraps = 1u << 0;

static_assert(std::is_trivially_copyable_v<SnapshotControl>);
static_assert(std::is_standard_layout_v<SnapshotControl>);
static_assert(offsetof(SnapshotControl, state) == 4);
static_assert(offsetof(SnapshotControl, error) == 8);
static_assert(offsetof(SnapshotControl, page_capacity) == 12);
static_assert(offsetof(SnapshotControl, restores) == 16);
static_assert(offsetof(SnapshotControl, dirty_pages) == 24);
static_assert(offsetof(SnapshotControl, pages_restored) == 32);
static_assert(offsetof(SnapshotControl, write_faults) == 40);
static_assert(offsetof(SnapshotControl, load_ipa) == 48);
static_assert(offsetof(SnapshotControl, load_size) == 56);
static_assert(offsetof(SnapshotControl, hcr_el2_set) == 64);
static_assert(offsetof(SnapshotControl, mdcr_el2) == 72);
static_assert(offsetof(SnapshotControl, flags) == 80);
static_assert(sizeof(SnapshotControl) == 88);

constexpr const char* snapshot_error_text(SnapshotError e) {
    switch (e) {
        case SnapshotError::None: return "no error";
        case SnapshotError::NoSnapshot: return "no snapshot was taken";
        case SnapshotError::TooManyVcpus: return "snapshots are of VMs with one vCPU";
        case SnapshotError::RamTooLarge:
            return "the guest RAM is larger than the firmware can track for a snapshot";
        case SnapshotError::DirtyOverflow:
            return "the guest dirtied more pages than the snapshot save area holds";
        case SnapshotError::BadLoad:
            return "the load after the restore lies outside guest RAM or the staging area";
        case SnapshotError::NotRam: return "VM 1's RAM is not mapped as the snapshot expects";
    }
    return "unknown snapshot error";
}

// A stage-2 data abort a write-protected RAM page causes: a permission
// fault (DFSC 0b0011xx) of a write, or of a stage-1 walk (S1PTW, which may
// write descriptors), taken from the guest (EC 0x24). Arm ARM D17.2.40,
// "ISS encoding for an exception from a Data Abort".
constexpr bool is_stage2_write_permission_fault(std::uint64_t esr) {
    const Esr e{esr};
    if (e.exception_class() != ExceptionClass::DataAbortLower) return false;
    const DataAbortIss iss{e.iss()};
    return iss.dfsc().kind() == FaultStatus::Permission && (iss.wnr() || iss.s1ptw());
}

}  // namespace armvcpu
