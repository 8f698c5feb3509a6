#include "smmu.hpp"

#include "armvcpu/host_interface.hpp"
#include "armvcpu/smmu.hpp"
#include "gic.hpp"
#include "uart.hpp"

namespace sm = armvcpu::smmu;

// What the host reads: the DMAs the SMMU blocked.
extern "C" {
[[gnu::used]] sm::DmaFaultLog armvcpu_dma_faults;
}

namespace fw::smmu {

namespace {

// Stream IDs are PCI requester IDs, bus << 8 | devfn (QEMU's iommu-map is
// the identity). Every bus the guest can number (the ECAM's 256: a device
// behind a root port or switch gets bus 1 and up when the guest enumerates)
// translates through the VM's map: a 2-level stream table whose 256
// level-1 descriptors (one per bus) all point at one level-2 array of 256
// identical STEs (one per devfn), 18 KiB where a linear table of 2^16 STEs
// would take 4 MiB. An SMMU without the 2-level format gets the linear
// table of bus 0 only (other buses: C_BAD_STREAMID, their DMA aborted).
constexpr unsigned kSplit = 8;
constexpr unsigned kStreamLog2 = 16;
constexpr unsigned kEventqLog2 = 6;
// The device's address space: 40 bits, like the VM's IPA space.
constexpr unsigned kVaBits = 40;
constexpr unsigned kIps40Bits = 2;

alignas(1u << (kSplit + 6)) sm::Ste g_stream_table[1u << kSplit];
alignas(8u << (kStreamLog2 - kSplit)) std::uint64_t g_stream_l1[1u << (kStreamLog2 - kSplit)];
alignas(64) sm::Cd g_context;
alignas(32u << kEventqLog2) sm::EventRecord g_eventq[1u << kEventqLog2];
// Stage-1 tables: level 0 (VA[39]), level 1 (1 GiB each), level 2 for the
// RAM's last, partial GiB.
alignas(4096) std::uint64_t g_level0[512];
alignas(4096) std::uint64_t g_level1[512];
alignas(4096) std::uint64_t g_level2[512];
bool g_enabled = false;

volatile std::uint32_t& reg32(std::uint64_t off) {
    return *reinterpret_cast<volatile std::uint32_t*>(sm::kVirtSmmuBase + off);
}
volatile std::uint64_t& reg64(std::uint64_t off) {
    return *reinterpret_cast<volatile std::uint64_t*>(sm::kVirtSmmuBase + off);
}

std::uint64_t addr(const void* p) { return reinterpret_cast<std::uint64_t>(p); }

// Identity-maps [base, base + size) (2 MiB aligned) with 1 GiB blocks where
// aligned and 2 MiB blocks in the one level-2 table otherwise.
bool map_ram(std::uint64_t base, std::uint64_t size) {
    constexpr std::uint64_t k1G = 1ull << 30;
    constexpr std::uint64_t k2M = 1ull << 21;
    if (((base | size) & (k2M - 1)) != 0 || base + size > (1ull << 39)) return false;
    g_level0[0] = addr(g_level1) | sm::kS1Table;
    bool level2_used = false;
    for (std::uint64_t at = base; at < base + size;) {
        if ((at & (k1G - 1)) == 0 && base + size - at >= k1G) {
            g_level1[at >> 30] = at | sm::kS1BlockAttrs | sm::kS1Block;
            at += k1G;
            continue;
        }
        // Only one partial GiB has room here (RAM is contiguous).
        const std::uint64_t gib = at >> 30;
        if (level2_used && (g_level1[gib] & 3) != sm::kS1Table) return false;
        g_level1[gib] = addr(g_level2) | sm::kS1Table;
        level2_used = true;
        g_level2[(at >> 21) & 511] = at | sm::kS1BlockAttrs | sm::kS1Block;
        at += k2M;
    }
    return true;
}

}  // namespace

void init(const Vm& vm) {
    if ((vm.cfg.features & armvcpu::kFeatureSmmu) == 0) return;
    const std::uint32_t idr0 = reg32(sm::kIdr0);
    if ((idr0 & sm::kIdr0S1p) == 0 || vm.cfg.ipa_base != vm.cfg.pa_base ||
        !map_ram(vm.cfg.pa_base, vm.cfg.size)) {
        uart::put_str("armvcpu: the SMMU cannot confine this VM's DMA; PCIe DMA unconfined\n");
        return;
    }
    g_context = sm::context_descriptor(addr(g_level0), kVaBits, kIps40Bits, 1);
    for (sm::Ste& ste : g_stream_table) ste = sm::stream_table_entry(addr(&g_context));
    // Span 9: 2^8 STEs behind each level-1 descriptor.
    for (std::uint64_t& d : g_stream_l1)
        d = sm::l1_stream_descriptor(addr(g_stream_table), kSplit + 1);
    const bool two_level =
        sm::idr0_two_level_stream_table(idr0) && sm::idr1_sid_bits(reg32(sm::kIdr1)) >= kStreamLog2;
    // Everything in memory before the SMMU is told where it is.
    asm volatile("dsb sy" ::: "memory");
    reg32(sm::kCr0) = 0;
    while (reg32(sm::kCr0Ack) != 0) {
    }
    const std::uint64_t table = two_level ? addr(g_stream_l1) : addr(g_stream_table);
    reg64(sm::kStrtabBase) = sm::kBaseRa | (table & 0x000fffffffffffc0ull);
    reg32(sm::kStrtabBaseCfg) = two_level ? sm::strtab_base_cfg_2level(kStreamLog2, kSplit)
                                          : sm::strtab_base_cfg_linear(kSplit);
    reg64(sm::kEventqBase) = sm::queue_base(addr(g_eventq), kEventqLog2);
    reg32(sm::kEventqProd) = 0;
    reg32(sm::kEventqCons) = 0;
    reg32(sm::kIrqCtrl) = sm::kIrqCtrlEventqIrqEn;
    while ((reg32(sm::kIrqCtrlAck) & sm::kIrqCtrlEventqIrqEn) == 0) {
    }
    const std::uint32_t cr0 = sm::kCr0SmmuEn | sm::kCr0EventqEn;
    reg32(sm::kCr0) = cr0;
    while (reg32(sm::kCr0Ack) != cr0) {
    }
    // The event queue's interrupt (a pulse) to the VM's first CPU, where the
    // run loop turns it into an exit for the host.
    gic::configure_spi(sm::kVirtEventqIntid, vm.first_cpu);
    gic::set_edge_triggered(sm::kVirtEventqIntid);
    gic::set_enabled(vm.first_cpu, sm::kVirtEventqIntid, true);
    g_enabled = true;
}

void drain_events() {
    if (!g_enabled) return;
    constexpr std::uint32_t kMask = (2u << kEventqLog2) - 1;  // index and wrap bit
    const std::uint32_t prod = reg32(sm::kEventqProd) & kMask;
    std::uint32_t cons = reg32(sm::kEventqCons) & kMask;
    while (cons != prod) {
        const sm::EventRecord& e = g_eventq[cons & ((1u << kEventqLog2) - 1)];
        const std::uint64_t n = __atomic_load_n(&armvcpu_dma_faults.count, __ATOMIC_RELAXED);
        armvcpu_dma_faults.entries[n % sm::kDmaFaultEntries] = sm::decode_event(e);
        __atomic_store_n(&armvcpu_dma_faults.count, n + 1, __ATOMIC_RELEASE);
        cons = (cons + 1) & kMask;
    }
    reg32(sm::kEventqCons) = cons;
}

}  // namespace fw::smmu
