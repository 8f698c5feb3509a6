// EL2 stage-1 translation (Arm ARM D8: VMSAv8-64, the EL2 regime with
// TTBR0_EL2 only): a 4 KiB-granule identity map of the low 256 GiB, the most
// RAM QEMU virt can have (armvcpu::kMachineRamLimit).
//  - 0x0000_0000..0x3FFF_FFFF: devices (GIC, PL011, ...): Device-nGnRnE, XN.
//  - 0x4000_0000..: RAM (guest RAM, the firmware, other VMs' RAM): Normal
//    write-back, in 1 GiB blocks, except the firmware's own GiB
//    (armvcpu::kFirmwareBase), in 2 MiB blocks, and the 2 MiB that holds the
//    stack guard, in 4 KiB pages with the guard pages invalid.
// Mapping RAM QEMU was not given is harmless: nothing the firmware does
// reaches past the RAM the host asked QEMU for.
// Normal memory also makes the firmware's atomics architecturally valid
// (exclusives on Device memory are not).
#include "el2_mmu.hpp"

#include "armvcpu/host_interface.hpp"
#include "host_link.hpp"
#include "scheduler.hpp"
#include "sysreg.hpp"

extern "C" {
extern char __stacks_start[];
}

namespace fw {
namespace {

alignas(4096) std::uint64_t g_l1[512];
alignas(4096) std::uint64_t g_l2_firmware[512];
// 4 KiB pages for the 2 MiB blocks that hold guard pages: the CPUs' stacks
// and the scheduler's thread stacks, each at most two blocks.
constexpr unsigned kL3Tables = 4;
alignas(4096) std::uint64_t g_l3_guard[kL3Tables][512];

// Stage-1 descriptor bits (Arm ARM D8.3): valid, table/page, AttrIndx [4:2],
// AP [7:6] (00: read/write at EL2), SH [9:8], AF [10], XN [54].
constexpr std::uint64_t kValid = 1u << 0;
constexpr std::uint64_t kTableOrPage = 1u << 1;
constexpr std::uint64_t kAttrDevice = 0u << 2;  // MAIR_EL2 Attr0
constexpr std::uint64_t kAttrNormal = 1u << 2;  // MAIR_EL2 Attr1
constexpr std::uint64_t kInnerShareable = 3u << 8;
constexpr std::uint64_t kAf = 1u << 10;
constexpr std::uint64_t kXn = 1ull << 54;

// MAIR_EL2: Attr0 = Device-nGnRnE (0x00), Attr1 = Normal, inner and outer
// write-back read/write-allocate (0xFF).
constexpr std::uint64_t kMair = 0xFFull << 8;
// TCR_EL2: T0SZ = 25 (a 39-bit space: the walk starts at level 1, 1 GiB per
// entry), IRGN0 = ORGN0 = write-back, SH0 inner, TG0 4 KiB, PS = 0b010 (40
// bits: every AArch64 CPU QEMU models has at least that PARange), and the
// RES1 bits 31 and 23.
constexpr std::uint64_t kTcr =
    25u | (1u << 8) | (1u << 10) | (3u << 12) | (2ull << 16) | (1u << 23) | (1ull << 31);
constexpr unsigned kL1Entries = armvcpu::kMachineRamLimit >> 30;  // 1 GiB each
static_assert(kL1Entries <= 512);
// SCTLR_EL2 (non-VHE): RES1 bits, then M (MMU), C (data cache), SA (stack
// alignment check), I (instruction cache).
constexpr std::uint64_t kSctlrRes1 = 0x30C50830;
constexpr std::uint64_t kSctlrM = 1u << 0;
constexpr std::uint64_t kSctlrC = 1u << 2;
constexpr std::uint64_t kSctlrSa = 1u << 3;
constexpr std::uint64_t kSctlrI = 1u << 12;

constexpr std::uint64_t k2M = 0x200000;
constexpr std::uint64_t k1G = 0x40000000;

// CPU i's guard page is the first page of its stack slot.
std::uint64_t guard_page(unsigned cpu) {
    return reinterpret_cast<std::uint64_t>(__stacks_start) + cpu * kStackStride;
}

// The guard pages: every CPU's stack's, then every EL2 thread's.
constexpr unsigned kGuards = 2 * kMaxCpus;
std::uint64_t guard(unsigned i) {
    return i < kMaxCpus ? guard_page(i) : sched::thread_guard_page(i - kMaxCpus);
}

bool is_guard(std::uint64_t page) {
    for (unsigned i = 0; i < kGuards; ++i) {
        if (page == guard(i)) return true;
    }
    return false;
}

bool holds_guard(std::uint64_t block) {
    for (unsigned i = 0; i < kGuards; ++i) {
        if ((guard(i) & ~(k2M - 1)) == block) return true;
    }
    return false;
}

void program_registers() {
    ARMVCPU_WRITE_SYSREG(mair_el2, kMair);
    ARMVCPU_WRITE_SYSREG(tcr_el2, kTcr);
    ARMVCPU_WRITE_SYSREG(ttbr0_el2, reinterpret_cast<std::uint64_t>(g_l1));
    asm volatile("isb; tlbi alle2; dsb ish; isb" ::: "memory");
    ARMVCPU_WRITE_SYSREG(sctlr_el2, kSctlrRes1 | kSctlrM | kSctlrC | kSctlrSa | kSctlrI);
    asm volatile("isb" ::: "memory");
}

}  // namespace

bool in_stack_guard(std::uint64_t addr) { return is_guard(addr & ~0xfffull); }

void enable_el2_mmu_secondary() { program_registers(); }

void enable_el2_mmu() {
    const std::uint64_t ram_leaf = kValid | kAttrNormal | kInnerShareable | kAf;
    // Devices: one 1 GiB block; RAM: 1 GiB blocks but for the firmware's.
    g_l1[0] = 0x0 | kValid | kAttrDevice | kAf | kXn;
    for (unsigned i = 1; i < kL1Entries; ++i) g_l1[i] = i * k1G | ram_leaf;
    g_l1[armvcpu::kFirmwareBase / k1G] =
        reinterpret_cast<std::uint64_t>(g_l2_firmware) | kValid | kTableOrPage;
    // The 2 MiB blocks with guard pages in 4 KiB pages (the stacks of each
    // kind span at most two blocks: 8 x 68 KiB, 8 x 36 KiB).
    static_assert(kMaxCpus * kStackStride < k2M / 2);
    unsigned tables = 0;
    for (unsigned i = 0; i < 512; ++i) {
        const std::uint64_t pa = armvcpu::kFirmwareBase + i * k2M;
        if (!holds_guard(pa) || tables == kL3Tables) {
            g_l2_firmware[i] = pa | ram_leaf;
            continue;
        }
        std::uint64_t* l3 = g_l3_guard[tables++];
        for (unsigned j = 0; j < 512; ++j) {
            const std::uint64_t page = pa + j * 4096ull;
            l3[j] = is_guard(page) ? 0 : page | ram_leaf | kTableOrPage;
        }
        g_l2_firmware[i] = reinterpret_cast<std::uint64_t>(l3) | kValid | kTableOrPage;
    }
    asm volatile("dsb ish" ::: "memory");
    program_registers();
}

}  // namespace fw
