// SMMUv3 (Arm IHI 0070): what the firmware needs to put PCIe devices' DMA
// through translation that only reaches their VM's RAM, and the record of a
// DMA it blocked, shared with the host. Field positions are the
// specification's (6.3 registers, 5.2 STE, 5.4 CD, 7.3 event records);
// names are its own.
//
// QEMU 7.2's SMMUv3 model translates at stage 1 only (SMMU_IDR0.S2P = 0), so
// a device's addresses go through stage-1 tables that map the VM's RAM at
// IPA = PA, the same identity the VM's stage 2 gives its CPUs: anything else
// faults, and the fault is an event the firmware hands to the host.
#pragma once

#include <cstddef>
#include <cstdint>

namespace armvcpu::smmu {

// ---- registers (offsets from the SMMU's base; page 1 at + 0x10000) ----
inline constexpr std::uint64_t kIdr0 = 0x00;
inline constexpr std::uint64_t kIdr1 = 0x04;
inline constexpr std::uint64_t kIdr5 = 0x14;
inline constexpr std::uint64_t kCr0 = 0x20;
inline constexpr std::uint64_t kCr0Ack = 0x24;
inline constexpr std::uint64_t kCr1 = 0x28;
inline constexpr std::uint64_t kCr2 = 0x2c;
inline constexpr std::uint64_t kIrqCtrl = 0x50;
inline constexpr std::uint64_t kIrqCtrlAck = 0x54;
inline constexpr std::uint64_t kGerror = 0x60;
inline constexpr std::uint64_t kStrtabBase = 0x80;  // 64-bit
inline constexpr std::uint64_t kStrtabBaseCfg = 0x88;
inline constexpr std::uint64_t kEventqBase = 0xa0;     // 64-bit
inline constexpr std::uint64_t kEventqProd = 0x100a8;  // page 1
inline constexpr std::uint64_t kEventqCons = 0x100ac;  // page 1

inline constexpr std::uint32_t kCr0SmmuEn = 1u << 0;
inline constexpr std::uint32_t kCr0EventqEn = 1u << 2;
inline constexpr std::uint32_t kIrqCtrlGerrorIrqEn = 1u << 0;
inline constexpr std::uint32_t kIrqCtrlEventqIrqEn = 1u << 2;
inline constexpr std::uint32_t kIdr0S1p = 1u << 1;  // stage 1 translation
inline constexpr std::uint32_t kIdr0S2p = 1u << 0;  // stage 2 translation

// The queue and stream-table base registers: address [51:5] (queues) or
// [51:6] (stream table), read-allocate hint at bit 62, queue LOG2SIZE [4:0].
inline constexpr std::uint64_t kBaseRa = 1ull << 62;
constexpr std::uint64_t queue_base(std::uint64_t addr, unsigned log2size) {
    return kBaseRa | (addr & 0x000fffffffffffe0ull) | (log2size & 0x1f);
}
// SMMU_STRTAB_BASE_CFG: linear format (FMT 0), LOG2SIZE [5:0].
constexpr std::uint32_t strtab_base_cfg_linear(unsigned log2size) { return log2size & 0x3f; }
// ... and the 2-level format (FMT [17:16] = 0b01): StreamID bits above
// SPLIT [10:6] index the level-1 table of descriptors, the low SPLIT bits a
// level-2 array of STEs.
constexpr std::uint32_t strtab_base_cfg_2level(unsigned log2size, unsigned split) {
    return (1u << 16) | ((split & 0x1f) << 6) | (log2size & 0x3f);
}
// SMMU_IDR0.ST_LEVEL [28:27]: 0b01 when the 2-level stream table is supported.
constexpr bool idr0_two_level_stream_table(std::uint32_t idr0) { return ((idr0 >> 27) & 3u) == 1u; }
// SMMU_IDR1.SIDSIZE [5:0]: the StreamID's width in bits.
constexpr unsigned idr1_sid_bits(std::uint32_t idr1) { return idr1 & 0x3f; }

// A level-1 stream table descriptor (5.1.1 "Level 1 Stream Table
// Descriptor"): L2Ptr [51:6] of a level-2 array of 2^(span - 1) STEs, Span
// [4:0] (0: no level-2 array, every StreamID of it is invalid).
constexpr std::uint64_t l1_stream_descriptor(std::uint64_t l2ptr, unsigned span) {
    return (l2ptr & 0x000fffffffffffc0ull) | (span & 0x1f);
}

// ---- Stream Table Entry: 64 bytes ----
inline constexpr std::uint64_t kSteValid = 1u << 0;
inline constexpr std::uint64_t kSteConfigAbort = 0b000u << 1;
inline constexpr std::uint64_t kSteConfigBypass = 0b100u << 1;
inline constexpr std::uint64_t kSteConfigS1 = 0b101u << 1;  // stage 1 translate, stage 2 bypass

struct Ste {
    std::uint64_t dword[8];
};
static_assert(sizeof(Ste) == 64);

// An STE that translates the stream through the single context descriptor
// at `cd` (S1Fmt 0, S1CDMax 0: no substreams), or one that aborts
// everything (`cd` = 0).
constexpr Ste stream_table_entry(std::uint64_t cd) {
    Ste s{};
    if (cd == 0) {
        s.dword[0] = kSteValid | kSteConfigAbort;
        return s;
    }
    // S1ContextPtr [51:6] of the 64-byte-aligned descriptor.
    s.dword[0] = kSteValid | kSteConfigS1 | (cd & 0x000fffffffffffc0ull);
    // dword 1: S1CIR/S1COR write-back (0b01 each), S1CSH inner shareable.
    s.dword[1] = (1ull << 2) | (1ull << 4) | (3ull << 6);
    return s;
}

// ---- Context Descriptor: 64 bytes ----
struct Cd {
    std::uint64_t dword[8];
};
static_assert(sizeof(Cd) == 64);

// A stage-1 context for a 4 KiB-granule, `va_bits`-wide (TTB0 only) address
// space whose tables start at `ttb0`, with MAIR attribute 0 Normal
// write-back. Faults are recorded (R) and the transaction terminated with an
// abort (A), never stalled; an access-flag of 0 is not a fault (AFFD).
constexpr Cd context_descriptor(std::uint64_t ttb0, unsigned va_bits, unsigned ips,
                                std::uint16_t asid) {
    Cd c{};
    const std::uint64_t t0sz = 64 - va_bits;
    const std::uint64_t word0 = t0sz | (0ull << 6) /*TG0 4K*/ | (1ull << 8) /*IR0 WB*/ |
                                (1ull << 10) /*OR0 WB*/ | (3ull << 12) /*SH0 inner*/ |
                                (1ull << 30) /*EPD1*/ | (1ull << 31) /*V*/;
    const std::uint64_t word1 = (ips & 7u) | (1ull << 3) /*AFFD*/ | (1ull << 9) /*AA64*/ |
                                (1ull << 13) /*R*/ | (1ull << 14) /*A*/ |
                                (static_cast<std::uint64_t>(asid) << 16);
    c.dword[0] = word0 | (word1 << 32);
    c.dword[1] = ttb0 & 0x000ffffffffffff0ull;  // TTB0 [51:4]
    c.dword[3] = 0xff;                          // MAIR0: attribute 0 Normal WB
    return c;
}

// Stage-1 descriptors for the device's tables (VMSAv8-64, 4 KiB granule).
inline constexpr std::uint64_t kS1Table = 0b11;
inline constexpr std::uint64_t kS1Block = 0b01;
// AttrIndx 0, AP[2:1] = 0b01 (read/write at any privilege), SH inner, AF.
inline constexpr std::uint64_t kS1BlockAttrs = (0u << 2) | (1u << 6) | (3u << 8) | (1u << 10);

// ---- event records: 32 bytes ----
inline constexpr std::uint8_t kEventFTranslation = 0x10;
inline constexpr std::uint8_t kEventFAddrSize = 0x11;
inline constexpr std::uint8_t kEventFPermission = 0x13;
inline constexpr std::uint8_t kEventCBadStreamid = 0x02;

struct EventRecord {
    std::uint32_t word[8];
};
static_assert(sizeof(EventRecord) == 32);

// ---- the record the host reads: DMA the firmware blocked ----
struct DmaFault {
    std::uint64_t address;    // the input (guest-physical) address
    std::uint32_t stream_id;  // the PCI requester ID: bus << 8 | device << 3 | function
    std::uint8_t event;       // the event type (kEventF*)
    std::uint8_t write;       // 1 for a write (RnW = 0), 0 for a read
    std::uint16_t reserved;
};
static_assert(sizeof(DmaFault) == 16);
static_assert(offsetof(DmaFault, stream_id) == 8);
static_assert(offsetof(DmaFault, event) == 12);
static_assert(offsetof(DmaFault, write) == 13);

constexpr DmaFault decode_event(const EventRecord& e) {
    DmaFault f{};
    f.event = static_cast<std::uint8_t>(e.word[0] & 0xff);
    f.stream_id = e.word[1];
    f.write = ((e.word[3] >> 3) & 1u) == 0 ? 1 : 0;  // RnW: 1 is a read
    f.address = (static_cast<std::uint64_t>(e.word[5]) << 32) | e.word[4];
    return f;
}

inline constexpr unsigned kDmaFaultEntries = 16;  // a ring, a power of two

struct DmaFaultLog {
    std::uint64_t count;  // every fault so far; entry i is at i % kDmaFaultEntries
    DmaFault entries[kDmaFaultEntries];
};
static_assert(offsetof(DmaFaultLog, entries) == 8);
static_assert(sizeof(DmaFaultLog) == 8 + 16 * kDmaFaultEntries);
inline constexpr const char* kSymDmaFaults = "armvcpu_dma_faults";

// QEMU virt's SMMUv3 (-M virt,iommu=smmuv3): its registers and its event
// queue's interrupt (SPI 74, edge).
inline constexpr std::uint64_t kVirtSmmuBase = 0x09050000;
inline constexpr std::uint32_t kVirtEventqIntid = 32 + 74;

}  // namespace armvcpu::smmu
