// Stage-2 translation tables, 4 KiB granule (Arm ARM D8.3 "Translation table
// descriptor formats", D8.5.5 stage 2 memory attributes, D17.2 VTCR_EL2).
//
// The builder never touches memory itself: it reads and writes descriptors
// through a TableMemory, so the firmware builds tables in physical memory and
// the host builds the very same tables into a Python buffer.
#pragma once

#include <concepts>
#include <cstdint>

namespace armvcpu::stage2 {

// Where descriptors live: 64-bit reads and writes at physical addresses, and
// a zeroed, 4 KiB-aligned page for each new table (0 when none is left).
template <class M>
concept TableMemory = requires(M m, std::uint64_t pa, std::uint64_t value) {
    { m.read64(pa) } -> std::same_as<std::uint64_t>;
    m.write64(pa, value);
    { m.alloc_table() } -> std::same_as<std::uint64_t>;
};

// S2AP, descriptor bits [7:6].
enum class Access : std::uint8_t { None = 0, ReadOnly = 1, WriteOnly = 2, ReadWrite = 3 };

// MemAttr, descriptor bits [5:2], as stage 2 encodes it when FWB is off.
enum class MemAttr : std::uint8_t {
    DeviceNGnRnE = 0b0000,
    DeviceNGnRE = 0b0001,
    NormalNonCacheable = 0b0101,
    NormalWriteBack = 0b1111,
};

struct Attributes {
    Access access = Access::ReadWrite;
    MemAttr mem_attr = MemAttr::NormalWriteBack;
    bool execute_never = false;
};

inline constexpr std::uint64_t kPageSize = 4096;
inline constexpr std::uint64_t kDescValid = 1u << 0;
inline constexpr std::uint64_t kDescTableOrPage = 1u << 1;  // table (L0-L2) or page (L3)
inline constexpr std::uint64_t kDescAf = 1u << 10;
inline constexpr std::uint64_t kDescShInner = 3u << 8;
inline constexpr std::uint64_t kDescXn = 1ull << 54;  // XN[1] of the stage-2 XN field
inline constexpr std::uint64_t kOutputMask = 0x0000fffffffff000ull;  // OA[47:12]

// VTCR_EL2.PS for a physical address size, or -1 when the size has no code.
constexpr int ps_for_pa_bits(unsigned pa_bits) {
    switch (pa_bits) {
        case 32: return 0;
        case 36: return 1;
        case 40: return 2;
        case 42: return 3;
        case 44: return 4;
        case 48: return 5;
        case 52: return 6;
        default: return -1;
    }
}

// ID_AA64MMFR0_EL1.PARange [3:0] -> physical address bits, 0 when reserved.
constexpr unsigned pa_bits_from_parange(std::uint64_t id_aa64mmfr0) {
    switch (id_aa64mmfr0 & 0xf) {
        case 0: return 32;
        case 1: return 36;
        case 2: return 40;
        case 3: return 42;
        case 4: return 44;
        case 5: return 48;
        case 6: return 52;
        default: return 0;
    }
}

// Bits of input address resolved below each level with a 4 KiB granule.
constexpr unsigned level_shift(unsigned level) { return 12 + 9 * (3 - level); }

// The first lookup level for an IPA width. Stage 2 may concatenate up to 16
// tables at its first level (4 more bits resolved there), so 40..43-bit IPAs
// start at level 1 with 2..16 tables side by side, as KVM does: a level-0
// start with a 4 KiB granule needs a PA size of 44 bits or more, which not
// every CPU has (Cortex-A53: 40), while concatenation works on all of them.
constexpr unsigned start_level_for(unsigned ipa_bits) {
    if (ipa_bits > 43) return 0;
    if (ipa_bits > 30) return 1;
    return 2;
}

// How many 4 KiB tables the first level concatenates for an IPA width (1, or
// 2..16 for 40..43 bits). They are contiguous and aligned to their total size.
constexpr unsigned root_tables_for(unsigned ipa_bits) {
    const unsigned resolved = level_shift(start_level_for(ipa_bits)) + 9;
    return ipa_bits > resolved ? 1u << (ipa_bits - resolved) : 1u;
}

// VTCR_EL2 for these tables: inner-shareable write-back walks, 4 KiB TG0.
constexpr std::uint64_t vtcr_el2(unsigned ipa_bits, unsigned pa_bits) {
    const std::uint64_t t0sz = 64 - ipa_bits;
    // SL0 for a 4 KiB granule: 0 = level 2, 1 = level 1, 2 = level 0.
    const std::uint64_t sl0 = 2 - start_level_for(ipa_bits);
    const auto ps = static_cast<std::uint64_t>(ps_for_pa_bits(pa_bits));
    return t0sz | (sl0 << 6) | (1u << 8) /*IRGN0 WB*/ | (1u << 10) /*ORGN0 WB*/ |
           (3u << 12) /*SH0 inner*/ | (0u << 14) /*TG0 4K*/ | (ps << 16) | (1ull << 31) /*RES1*/;
}

// The descriptor bits of a block or page mapping, without the output address.
constexpr std::uint64_t leaf_attributes(const Attributes& a) {
    std::uint64_t d = kDescValid | kDescAf | kDescShInner;
    d |= static_cast<std::uint64_t>(a.mem_attr) << 2;
    d |= static_cast<std::uint64_t>(a.access) << 6;
    if (a.execute_never) d |= kDescXn;
    return d;
}

enum class MapError : std::uint8_t {
    None = 0,
    Unaligned,      // an address or size not 4 KiB aligned
    OutOfRange,     // IPA beyond the configured width
    OutOfTables,    // TableMemory had no page left
    AlreadyMapped,  // the range overlaps an existing mapping
    NotMapped,      // unmap of a range that is not mapped
    SplitBlock,     // unmap of part of a 2 MiB block (blocks are not split)
    BadSize,        // an IPA or PA width the 4 KiB granule cannot describe
};

constexpr const char* map_error_name(MapError e) {
    switch (e) {
        case MapError::None: return "None";
        case MapError::Unaligned: return "Unaligned";
        case MapError::OutOfRange: return "OutOfRange";
        case MapError::OutOfTables: return "OutOfTables";
        case MapError::AlreadyMapped: return "AlreadyMapped";
        case MapError::NotMapped: return "NotMapped";
        case MapError::SplitBlock: return "SplitBlock";
        case MapError::BadSize: return "BadSize";
    }
    return nullptr;
}

// IPA and PA widths these tables support: 4 KiB granule, IPA from 25 to 48
// bits (T0SZ 16..39) and no wider than the PA (an IPA wider than the output
// address size faults on the walk's first level), PA one of PARange's sizes
// up to 48 bits: a 4 KiB descriptor holds OA[47:12] only (52 bits need
// FEAT_LPA's other layout).
constexpr bool valid_sizes(unsigned ipa_bits, unsigned pa_bits) {
    return ipa_bits >= 25 && ipa_bits <= 48 && ipa_bits <= pa_bits && pa_bits <= 48 &&
           ps_for_pa_bits(pa_bits) >= 0;
}

struct Translation {
    bool valid;
    std::uint64_t pa;
    std::uint64_t descriptor;
    unsigned level;
};

template <TableMemory Mem>
class Tables {
public:
    // root: root_tables_for(ipa_bits) zeroed, contiguous table pages already
    // taken from mem, aligned to their total size (one 4 KiB page up to 39 bits).
    constexpr Tables(Mem& mem, std::uint64_t root, unsigned ipa_bits, unsigned pa_bits)
        : mem_(mem), root_(root), ipa_bits_(ipa_bits), pa_bits_(pa_bits) {}

    [[nodiscard]] constexpr std::uint64_t root() const { return root_; }
    [[nodiscard]] constexpr unsigned start_level() const { return start_level_for(ipa_bits_); }
    [[nodiscard]] constexpr unsigned root_tables() const { return root_tables_for(ipa_bits_); }
    [[nodiscard]] constexpr std::uint64_t vtcr() const { return vtcr_el2(ipa_bits_, pa_bits_); }
    // VTTBR_EL2: table base with the VMID in bits [55:48].
    [[nodiscard]] constexpr std::uint64_t vttbr(std::uint16_t vmid) const {
        return root_ | (static_cast<std::uint64_t>(vmid & 0xff) << 48);
    }

    // Maps [ipa, ipa + size) to [pa, pa + size), with 1 GiB or 2 MiB blocks
    // where both sides are aligned and 4 KiB pages elsewhere. All or nothing:
    // when it fails, the mappings it had made are removed again (tables it
    // allocated stay, empty).
    constexpr MapError map(std::uint64_t ipa, std::uint64_t pa, std::uint64_t size,
                           const Attributes& attrs) {
        if (!valid_sizes(ipa_bits_, pa_bits_)) return MapError::BadSize;
        if ((ipa | pa | size) & (kPageSize - 1)) return MapError::Unaligned;
        if (pa + size > (1ull << pa_bits_) || pa + size < pa) return MapError::OutOfRange;
        if (ipa + size > (1ull << ipa_bits_) || ipa + size < ipa) return MapError::OutOfRange;
        const std::uint64_t leaf = leaf_attributes(attrs);
        const std::uint64_t start = ipa;
        std::uint64_t done = 0;
        while (done != size) {
            const std::uint64_t at = ipa + done;
            const std::uint64_t to = pa + done;
            // The largest leaf that fits: level 1 (1 GiB), 2 (2 MiB) or 3.
            unsigned level = start_level() < 1 ? 1 : start_level();
            while (level < 3) {
                const std::uint64_t span = 1ull << level_shift(level);
                if (((at | to) & (span - 1)) == 0 && size - done >= span) break;
                ++level;
            }
            const auto err = set_leaf(at, to, level, leaf);
            if (err != MapError::None) {
                clear(start, done);
                return err;
            }
            done += 1ull << level_shift(level);
        }
        return MapError::None;
    }

    // Removes the mappings of [ipa, ipa + size): whole 2 MiB blocks or 4 KiB
    // pages. All or nothing: the whole range is checked before anything is
    // removed. Tables emptied by it stay allocated. The caller invalidates TLBs.
    constexpr MapError unmap(std::uint64_t ipa, std::uint64_t size) {
        if (!valid_sizes(ipa_bits_, pa_bits_)) return MapError::BadSize;
        if ((ipa | size) & (kPageSize - 1)) return MapError::Unaligned;
        if (ipa + size > (1ull << ipa_bits_) || ipa + size < ipa) return MapError::OutOfRange;
        for (std::uint64_t done = 0; done != size;) {
            const Slot slot = find_leaf(ipa + done);
            if (slot.address == 0) return MapError::NotMapped;
            const std::uint64_t span = 1ull << level_shift(slot.level);
            if (((ipa + done) & (span - 1)) != 0 || size - done < span) {
                return MapError::SplitBlock;
            }
            done += span;
        }
        clear(ipa, size);
        return MapError::None;
    }

    [[nodiscard]] constexpr Translation translate(std::uint64_t ipa) const {
        std::uint64_t table = root_;
        for (unsigned level = start_level(); level <= 3; ++level) {
            const std::uint64_t d = mem_.read64(table + 8 * index(ipa, level));
            if ((d & kDescValid) == 0) return {false, 0, d, level};
            const bool is_table = level < 3 && (d & kDescTableOrPage) != 0;
            if (!is_table) {
                const std::uint64_t mask = (1ull << level_shift(level)) - 1;
                return {true, (d & kOutputMask & ~mask) | (ipa & mask), d, level};
            }
            table = d & kOutputMask;
        }
        return {false, 0, 0, 3};
    }

private:
    struct Slot {
        std::uint64_t address;  // of the leaf descriptor, 0 if none
        unsigned level;
    };

    // Clears the leaves that cover [ipa, ipa + size), known to be mapped
    // leaf by leaf with nothing straddling its ends.
    constexpr void clear(std::uint64_t ipa, std::uint64_t size) {
        for (std::uint64_t done = 0; done < size;) {
            const Slot slot = find_leaf(ipa + done);
            if (slot.address == 0) {
                done += kPageSize;
                continue;
            }
            mem_.write64(slot.address, 0);
            done += 1ull << level_shift(slot.level);
        }
    }

    [[nodiscard]] constexpr Slot find_leaf(std::uint64_t ipa) const {
        std::uint64_t table = root_;
        for (unsigned level = start_level(); level <= 3; ++level) {
            const std::uint64_t slot = table + 8 * index(ipa, level);
            const std::uint64_t d = mem_.read64(slot);
            if ((d & kDescValid) == 0) return {0, level};
            if (level == 3 || (d & kDescTableOrPage) == 0) return {slot, level};
            table = d & kOutputMask;
        }
        return {0, 3};
    }

    // A table's index for `ipa`: 9 bits, or more at a concatenated first level
    // (the tables side by side act as one of 512 * root_tables() entries).
    [[nodiscard]] constexpr unsigned index(std::uint64_t ipa, unsigned level) const {
        const std::uint64_t entries = level == start_level() ? 512ull * root_tables() : 512ull;
        return static_cast<unsigned>((ipa >> level_shift(level)) & (entries - 1));
    }

    constexpr MapError set_leaf(std::uint64_t ipa, std::uint64_t pa, unsigned level,
                                std::uint64_t leaf) {
        std::uint64_t table = root_;
        for (unsigned l = start_level(); l < level; ++l) {
            const std::uint64_t slot = table + 8 * index(ipa, l);
            std::uint64_t d = mem_.read64(slot);
            if ((d & kDescValid) == 0) {
                const std::uint64_t next = mem_.alloc_table();
                if (next == 0) return MapError::OutOfTables;
                d = next | kDescValid | kDescTableOrPage;
                mem_.write64(slot, d);
            } else if ((d & kDescTableOrPage) == 0) {
                return MapError::AlreadyMapped;  // a block covers this range
            }
            table = d & kOutputMask;
        }
        const std::uint64_t slot = table + 8 * index(ipa, level);
        if ((mem_.read64(slot) & kDescValid) != 0) return MapError::AlreadyMapped;
        const std::uint64_t type = level == 3 ? kDescTableOrPage : 0;  // page vs block
        mem_.write64(slot, (pa & kOutputMask) | leaf | type);
        return MapError::None;
    }

    Mem& mem_;
    std::uint64_t root_;
    unsigned ipa_bits_;
    unsigned pa_bits_;
};

}  // namespace armvcpu::stage2
