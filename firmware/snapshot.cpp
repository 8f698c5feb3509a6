#include "snapshot.hpp"

#include <cstring>

#include "armvcpu/stage2.hpp"
#include "armvcpu/vgic.hpp"
#include "cpu.hpp"
#include "gic.hpp"
#include "sgi.hpp"
#include "spinlock.hpp"
#include "sysreg.hpp"
#include "uart.hpp"
#include "vgic_glue.hpp"

using armvcpu::SnapshotError;
using armvcpu::SnapshotState;

extern "C" {
// The host reads it (and writes load_ipa/load_size) only after the CPU runs,
// so it lives in .bss; the firmware fills it when it takes the snapshot.
[[gnu::used]] armvcpu::SnapshotControl armvcpu_snapshot;
[[gnu::used,
  gnu::aligned(4096)]] std::uint8_t armvcpu_snapshot_staging[armvcpu::kSnapshotStagingSize];
}

namespace fw::snapshot {

bool g_tracking = false;

namespace {

namespace s2 = armvcpu::stage2;

constexpr std::uint64_t kPage = s2::kPageSize;
constexpr std::uint64_t kBlock = 1ull << s2::level_shift(2);  // 2 MiB
// Guest RAM the snapshot can track: one level-3 table per 2 MiB of it.
constexpr unsigned kMaxBlocks = 64;  // 128 MiB
constexpr unsigned kMaxPages = kMaxBlocks * 512;
// Pages a guest may write between two restores (their first contents are
// kept here). A fuzz program writes a dozen or so.
constexpr unsigned kPoolPages = 1024;  // 4 MiB
// S2AP, descriptor bits [7:6].
constexpr std::uint64_t kS2apMask = 3ull << 6;
constexpr std::uint64_t kS2apReadOnly = static_cast<std::uint64_t>(s2::Access::ReadOnly) << 6;
constexpr std::uint64_t kS2apReadWrite = static_cast<std::uint64_t>(s2::Access::ReadWrite) << 6;

// Level-3 tables for the RAM's 2 MiB blocks, split for page-sized tracking.
// Not in the stage-2 table pool: their permission bits change with every
// program, while the pool's tables stay as the VM was set up.
// Each is filled in full before stage 2 points at it (linker.ld: .noinit).
[[gnu::section(".noinit.snapshot")]] alignas(4096) std::uint64_t
    g_snapshot_l3_tables[kMaxBlocks][512];
std::uint64_t* g_l3_of_block[kMaxBlocks];  // each 2 MiB of RAM's level-3 table
// A slot is read only after a page was saved into it (linker.ld: .noinit).
[[gnu::section(".noinit.snapshot")]] alignas(4096) std::uint8_t g_page_pool[kPoolPages][kPage];
std::uint64_t g_pool_ipa[kPoolPages];  // the page whose first contents pool slot i has
unsigned g_pool_used = 0;
std::uint64_t g_saved[kMaxPages / 64];  // bit per RAM page: saved (and so writable)
std::uint64_t g_ram_ipa = 0;
std::uint64_t g_ram_size = 0;

// The vCPU as it was.
armvcpu::TrapFrame g_frame;
armvcpu::GuestSystemRegisters g_sysregs;
// Its GIC virtual CPU interface (the guest's ICC_* view: ICH_VMCR_EL2, the
// active priorities, the list registers the firmware uses).
struct VirtualInterface {
    std::uint64_t hcr;
    std::uint64_t vmcr;
    std::uint64_t ap0r0;
    std::uint64_t ap1r0;
    std::uint64_t lr[4];
};
VirtualInterface g_vif;
armvcpu::vgic::Distributor g_dist;  // with kFeatureVgic

std::uint64_t read_lr(unsigned n) {
    switch (n) {
        case 0: return ARMVCPU_READ_SYSREG(ich_lr0_el2);
        case 1: return ARMVCPU_READ_SYSREG(ich_lr1_el2);
        case 2: return ARMVCPU_READ_SYSREG(ich_lr2_el2);
        default: return ARMVCPU_READ_SYSREG(ich_lr3_el2);
    }
}

void write_lr(unsigned n, std::uint64_t value) {
    switch (n) {
        case 0: ARMVCPU_WRITE_SYSREG(ich_lr0_el2, value); break;
        case 1: ARMVCPU_WRITE_SYSREG(ich_lr1_el2, value); break;
        case 2: ARMVCPU_WRITE_SYSREG(ich_lr2_el2, value); break;
        default: ARMVCPU_WRITE_SYSREG(ich_lr3_el2, value); break;
    }
}

// List registers the CPU has, up to the four the firmware uses
// (ICH_VTR_EL2.ListRegs [4:0] is the count minus one).
unsigned num_lrs() {
    const unsigned n = static_cast<unsigned>(ARMVCPU_READ_SYSREG(ich_vtr_el2) & 0x1f) + 1;
    return n < 4 ? n : 4;
}

// ICH_AP0R0/ICH_AP1R0 exist on every GICv3; the others only with more than
// five preemption bits, which the guest cannot use here (the firmware
// injects at priorities whose top five bits are enough).
VirtualInterface save_virtual_interface() {
    VirtualInterface v{};
    v.hcr = ARMVCPU_READ_SYSREG(ich_hcr_el2);
    v.vmcr = ARMVCPU_READ_SYSREG(ich_vmcr_el2);
    v.ap0r0 = ARMVCPU_READ_SYSREG(ich_ap0r0_el2);
    v.ap1r0 = ARMVCPU_READ_SYSREG(ich_ap1r0_el2);
    for (unsigned n = 0; n < num_lrs(); ++n) v.lr[n] = read_lr(n);
    return v;
}

void restore_virtual_interface(const VirtualInterface& v) {
    // A hardware-linked list register (the guest's timers) holds its
    // physical interrupt active until the guest deactivates it; dropping
    // the list register must deactivate it here, or it never fires again.
    for (unsigned n = 0; n < num_lrs(); ++n) {
        const std::uint64_t lr = read_lr(n);
        if (armvcpu::vgic::lr_state(lr) != armvcpu::vgic::LrState::Invalid && ((lr >> 61) & 1)) {
            gic::deactivate(static_cast<std::uint32_t>((lr >> 32) & 0x1fff));
        }
        // The snapshot's own hardware-linked entries (it was taken at the
        // first entry, so there are none) are not brought back: their
        // physical interrupts are no longer active.
        write_lr(n, ((v.lr[n] >> 61) & 1) ? 0 : v.lr[n]);
    }
    ARMVCPU_WRITE_SYSREG(ich_ap0r0_el2, v.ap0r0);
    ARMVCPU_WRITE_SYSREG(ich_ap1r0_el2, v.ap1r0);
    ARMVCPU_WRITE_SYSREG(ich_vmcr_el2, v.vmcr);
    ARMVCPU_WRITE_SYSREG(ich_hcr_el2, v.hcr);
    isb();
}

void fail(SnapshotError e) {
    armvcpu_snapshot.error = e;
    armvcpu_snapshot.state = SnapshotState::Failed;
}

// The descriptor of a table at `table` for `ipa` at `level`.
std::uint64_t* slot_of(std::uint64_t table, std::uint64_t ipa, unsigned level) {
    return reinterpret_cast<std::uint64_t*>(table) + ((ipa >> s2::level_shift(level)) & 511);
}

// RAM page -> its level-3 descriptor (the page is in RAM).
std::uint64_t& descriptor_of(std::uint64_t ipa) {
    const std::uint64_t off = ipa - g_ram_ipa;
    return g_l3_of_block[off / kBlock][(off / kPage) & 511];
}

// After descriptors for this VM changed (VTTBR_EL2 holds its VMID: EL2
// runs only this VM's vCPU on this CPU).
void flush_guest_tlbs() {
    asm volatile("dsb ishst\n tlbi vmalls12e1is\n dsb ish\n isb" ::: "memory");
}

// Stage 2 of VM 1's RAM with one level-3 table per 2 MiB, every page
// read-only. The VM has one vCPU, which is in EL2 now: no walk can see a
// descriptor change halfway, so no break-before-make is needed.
SnapshotError protect_ram(const Vm& vm) {
    const std::uint64_t root = vm.vttbr & s2::kOutputMask;
    const unsigned start = s2::start_level_for(39);
    if (start != 1) return SnapshotError::NotRam;
    for (unsigned b = 0; b < g_ram_size / kBlock; ++b) {
        const std::uint64_t ipa = g_ram_ipa + b * kBlock;
        const std::uint64_t l1 = *slot_of(root, ipa, 1);
        if ((l1 & 3) != 3) return SnapshotError::NotRam;  // not a table
        std::uint64_t* l2 = slot_of(l1 & s2::kOutputMask, ipa, 2);
        std::uint64_t* l3 = nullptr;
        if ((*l2 & 3) == 1) {  // a 2 MiB block: split it into pages
            l3 = g_snapshot_l3_tables[b];
            const std::uint64_t attrs = *l2 & ~s2::kOutputMask & ~3ull;
            const std::uint64_t pa = *l2 & s2::kOutputMask & ~(kBlock - 1);
            for (unsigned i = 0; i < 512; ++i) l3[i] = attrs | (pa + i * kPage) | 3;
            *l2 = reinterpret_cast<std::uint64_t>(l3) | 3;
        } else if ((*l2 & 3) == 3) {  // already pages
            l3 = reinterpret_cast<std::uint64_t*>(*l2 & s2::kOutputMask);
        } else {
            return SnapshotError::NotRam;
        }
        for (unsigned i = 0; i < 512; ++i) {
            if ((l3[i] & 3) != 3) return SnapshotError::NotRam;
            l3[i] = (l3[i] & ~kS2apMask) | kS2apReadOnly;
        }
        g_l3_of_block[b] = l3;
    }
    flush_guest_tlbs();
    return SnapshotError::None;
}

bool in_ram(std::uint64_t ipa) { return ipa >= g_ram_ipa && ipa - g_ram_ipa < g_ram_size; }

// Saves a RAM page's contents and makes it writable; false when the save
// area is full (the page is made writable all the same, so the guest goes
// on, but the snapshot can no longer be restored).
bool save_and_unprotect(std::uint64_t ipa) {
    const std::uint64_t index = (ipa - g_ram_ipa) / kPage;
    std::uint64_t& d = descriptor_of(ipa);
    bool saved = true;
    if (g_pool_used < kPoolPages) {
        std::memcpy(g_page_pool[g_pool_used], reinterpret_cast<const void*>(d & s2::kOutputMask),
                    kPage);
        g_pool_ipa[g_pool_used++] = ipa;
    } else {
        saved = false;
        fail(SnapshotError::DirtyOverflow);
    }
    g_saved[index / 64] |= 1ull << (index % 64);
    d = (d & ~kS2apMask) | kS2apReadWrite;
    ++armvcpu_snapshot.dirty_pages;
    // A more permissive descriptor needs no invalidation (a stale entry
    // only faults again, and is absorbed then); this one saves that trip.
    asm volatile("dsb ishst\n tlbi ipas2e1is, %0\n dsb ish\n isb" : : "r"(ipa >> 12) : "memory");
    return saved;
}

bool is_saved(std::uint64_t ipa) {
    const std::uint64_t index = (ipa - g_ram_ipa) / kPage;
    return ((g_saved[index / 64] >> (index % 64)) & 1) != 0;
}

}  // namespace

void take_if_asked(Vm& vm, Vcpu& vcpu, unsigned cpu) {
    (void)cpu;
    if (vm.id != 1 || (vm.features & armvcpu::kFeatureSnapshot) == 0) return;
    if (armvcpu_snapshot.magic == armvcpu::kSnapshotMagic) return;  // taken (or tried) once
    armvcpu_snapshot.magic = armvcpu::kSnapshotMagic;
    armvcpu_snapshot.page_capacity = kPoolPages;
    if (vm.num_vcpus != 1) return fail(SnapshotError::TooManyVcpus);
    g_ram_ipa = vm.cfg.ipa_base;
    g_ram_size = vm.cfg.size;
    if (g_ram_size / kBlock > kMaxBlocks || g_ram_size % kBlock != 0 || g_ram_ipa % kBlock != 0) {
        return fail(SnapshotError::RamTooLarge);
    }
    const SnapshotError e = protect_ram(vm);
    if (e != SnapshotError::None) return fail(e);
    g_frame = vcpu.context();
    g_sysregs = vcpu.guest_system_regs();
    g_vif = save_virtual_interface();
    if ((vm.features & armvcpu::kFeatureVgic) != 0) {
        SpinLock lock(vm.dist_lock);
        g_dist = vm.dist;
    }
    g_tracking = true;
    armvcpu_snapshot.state = SnapshotState::Taken;
}

bool save_page(const Vm& vm, std::uint64_t ipa) {
    (void)vm;
    if (!in_ram(ipa)) return false;
    ++armvcpu_snapshot.write_faults;
    if (is_saved(ipa)) {
        // Writable already: a stale TLB entry. Drop every entry of the VM.
        flush_guest_tlbs();
        return true;
    }
    save_and_unprotect(ipa);
    return true;
}

bool restore(Vm& vm, Vcpu& vcpu, unsigned cpu) {
    armvcpu::SnapshotControl& c = armvcpu_snapshot;
    if (c.state != SnapshotState::Taken) {
        if (c.state == SnapshotState::None) c.error = SnapshotError::NoSnapshot;
        return false;
    }
    // RAM: the pages written since, back to their first contents.
    for (unsigned i = 0; i < g_pool_used; ++i) {
        const std::uint64_t ipa = g_pool_ipa[i];
        std::uint64_t& d = descriptor_of(ipa);
        std::memcpy(reinterpret_cast<void*>(d & s2::kOutputMask), g_page_pool[i], kPage);
        d = (d & ~kS2apMask) | kS2apReadOnly;
        const std::uint64_t index = (ipa - g_ram_ipa) / kPage;
        g_saved[index / 64] &= ~(1ull << (index % 64));
    }
    c.pages_restored += g_pool_used;
    g_pool_used = 0;
    c.dirty_pages = 0;
    flush_guest_tlbs();
    // The host's bytes, written by this CPU: QEMU sees the stores and drops
    // what it translated from the old code. Their pages count as dirty.
    const std::uint64_t load_ipa = c.load_ipa;
    const std::uint64_t load_size = c.load_size;
    if (load_size != 0) {
        if (load_size > armvcpu::kSnapshotStagingSize || !in_ram(load_ipa) ||
            load_size > g_ram_ipa + g_ram_size - load_ipa) {
            c.error = SnapshotError::BadLoad;
            return false;
        }
        for (std::uint64_t page = load_ipa & ~(kPage - 1); page < load_ipa + load_size;
             page += kPage) {
            if (!is_saved(page) && !save_and_unprotect(page)) return false;
        }
        const std::uint64_t pa = (descriptor_of(load_ipa) & s2::kOutputMask) | (load_ipa % kPage);
        // RAM is one physically contiguous range (the VM's config maps it so).
        std::memcpy(reinterpret_cast<void*>(pa), armvcpu_snapshot_staging, load_size);
        asm volatile("dsb ish\n ic ialluis\n dsb ish\n isb" ::: "memory");
    }
    // The vCPU: registers, system registers (VTTBR/HCR included), its GIC
    // virtual CPU interface, and nothing of the last program's pending.
    if ((c.flags & armvcpu::kSnapshotSetTraps) != 0) {
        vm.cfg.hcr_el2_set = c.hcr_el2_set;
        vm.cfg.mdcr_el2 = c.mdcr_el2;
    }
    vcpu.context() = g_frame;
    armvcpu::GuestSystemRegisters& sysregs = vcpu.guest_system_regs();
    sysregs = g_sysregs;
    // HCR_EL2 as bind_vcpu makes it, with the traps the VM has now.
    sysregs.hcr_el2 = armvcpu::kHcrGuest | feature_hcr_bits() | vm.cfg.hcr_el2_set;
    g_hal[cpu].write_sysreg(armvcpu::SysReg::mdcr_el2, vm.cfg.mdcr_el2 | mdcr_el2_bits());
    sysregs.restore(g_hal[cpu]);
    if (vcpu.state() == armvcpu::VCpuState::Blocked) vcpu.wake();
    // On again if the program turned it off (CPU_OFF, parked by the watchdog).
    vm.power.store(0, armvcpu::psci::AffinityState::On);
    restore_virtual_interface(g_vif);
    clear_pending_sgi(cpu, ~0ull);
    if ((vm.features & armvcpu::kFeatureVgic) != 0) {
        {
            SpinLock lock(vm.dist_lock);
            vm.dist = g_dist;
        }
        set_vgic_dirty(cpu);
    }
    c.error = SnapshotError::None;
    ++c.restores;
    return true;
}

}  // namespace fw::snapshot
