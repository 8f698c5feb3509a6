// Stage-2 additions (stage2.hpp): PARange decoding, size validation, the start
// level, VTCR_EL2, range checks on the output address, and unmap().
//
// Golden values from the Arm ARM (DDI 0487):
//  - ID_AA64MMFR0_EL1.PARange [3:0]: 0b0000 32 bits, 0b0001 36, 0b0010 40,
//    0b0011 42, 0b0100 44, 0b0101 48, 0b0110 52 (FEAT_LPA); VTCR_EL2.PS uses the
//    same encoding.
//  - D8 (VMSAv8-64 translation), stage 2 with the 4KB granule and no
//    concatenated tables: a level resolves 9 bits above the 12-bit page offset,
//    so level 3 covers 21 bits, level 2 30, level 1 39, level 0 48. The initial
//    lookup level is the one whose range first covers the IPA: 25..30 bits ->
//    level 2, 31..39 -> level 1, 40..48 -> level 0. T0SZ = 64 - IPA bits, from
//    16 (48 bits) to 39 (25 bits) without FEAT_TTST/FEAT_LPA2.
//  - VTCR_EL2: T0SZ [5:0], SL0 [7:6] (4KB granule: 0b00 level 2, 0b01 level 1,
//    0b10 level 0), IRGN0 [9:8], ORGN0 [11:10], SH0 [13:12], TG0 [15:14]
//    (0b00 = 4KB), PS [18:16], bit 31 RES1.
//  - Descriptors (D8.3): bits [1:0] 0b01 block (levels 1-2), 0b11 table or
//    level-3 page, 0b00 invalid; the 2 MiB block is a level-2 entry.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "armvcpu/stage2.hpp"

using namespace armvcpu::stage2;

namespace {

// Table pages in host memory, addressed as if they were physical memory
// starting at `base`.
struct PageArena {
    std::uint64_t base = 0x80000000;
    unsigned pages = 32;
    std::vector<std::uint64_t> words = std::vector<std::uint64_t>(32 * 512, 0);
    unsigned used = 0;

    std::uint64_t read64(std::uint64_t pa) const { return words.at((pa - base) / 8); }
    void write64(std::uint64_t pa, std::uint64_t v) { words.at((pa - base) / 8) = v; }
    std::uint64_t alloc_table() {
        if (used == pages) return 0;
        return base + 4096ull * used++;
    }
    // `n` contiguous pages aligned to their total size: a concatenated first
    // level.
    std::uint64_t alloc_root(unsigned n) {
        while ((used % n) != 0) ++used;
        const std::uint64_t at = base + 4096ull * used;
        used += n;
        return at;
    }
};
static_assert(TableMemory<PageArena>);

constexpr std::uint64_t k2M = 0x200000;
constexpr std::uint64_t k4K = 0x1000;

}  // namespace

// ---------------------------------------------------------------- PARange

TEST(Stage2Sizes, PaBitsFromParange) {
    EXPECT_EQ(pa_bits_from_parange(0b0000), 32u);
    EXPECT_EQ(pa_bits_from_parange(0b0001), 36u);
    EXPECT_EQ(pa_bits_from_parange(0b0010), 40u);
    EXPECT_EQ(pa_bits_from_parange(0b0011), 42u);
    EXPECT_EQ(pa_bits_from_parange(0b0100), 44u);
    EXPECT_EQ(pa_bits_from_parange(0b0101), 48u);
    EXPECT_EQ(pa_bits_from_parange(0b0110), 52u);
    // 0b0111 is 56 bits only with FEAT_D128 (128-bit descriptors, which these
    // tables are not); the rest are reserved. All of them: unusable, 0.
    for (std::uint64_t r = 0b0111; r <= 0b1111; ++r) EXPECT_EQ(pa_bits_from_parange(r), 0u) << r;
}

TEST(Stage2Sizes, ParangeIsOnlyTheLowFourBits) {
    // The other ID_AA64MMFR0_EL1 fields (ASIDBits [7:4], ..., ECV [63:60]) are
    // ignored.
    EXPECT_EQ(pa_bits_from_parange(0x1122334455667705ull), 48u);
    EXPECT_EQ(pa_bits_from_parange(0xfffffffffffffff2ull), 40u);
    EXPECT_EQ(pa_bits_from_parange(0x00000000000000f0ull), 32u);
}

TEST(Stage2Sizes, VtcrPsUsesTheParangeEncoding) {
    for (unsigned parange = 0; parange <= 6; ++parange) {
        EXPECT_EQ(ps_for_pa_bits(pa_bits_from_parange(parange)), static_cast<int>(parange));
    }
    EXPECT_EQ(ps_for_pa_bits(33), -1);
    EXPECT_EQ(ps_for_pa_bits(0), -1);
}

// ------------------------------------------------------- sizes and levels

TEST(Stage2Sizes, StartLevelForTheFourKilobyteGranule) {
    EXPECT_EQ(start_level_for(25), 2u);
    EXPECT_EQ(start_level_for(30), 2u);
    EXPECT_EQ(start_level_for(31), 1u);
    EXPECT_EQ(start_level_for(36), 1u);
    EXPECT_EQ(start_level_for(39), 1u);
    // Up to 16 tables concatenated at level 1 resolve 4 more bits (Arm ARM,
    // "Concatenated translation tables for the initial stage 2 lookup").
    EXPECT_EQ(start_level_for(40), 1u);
    EXPECT_EQ(start_level_for(43), 1u);
    EXPECT_EQ(start_level_for(44), 0u);
    EXPECT_EQ(start_level_for(48), 0u);
}

TEST(Stage2Sizes, ConcatenatedFirstLevelTables) {
    EXPECT_EQ(root_tables_for(25), 1u);
    EXPECT_EQ(root_tables_for(30), 1u);
    EXPECT_EQ(root_tables_for(39), 1u);
    EXPECT_EQ(root_tables_for(40), 2u);
    EXPECT_EQ(root_tables_for(41), 4u);
    EXPECT_EQ(root_tables_for(43), 16u);
    EXPECT_EQ(root_tables_for(44), 1u);  // level 0: 2^5 entries of one table
    EXPECT_EQ(root_tables_for(48), 1u);
}

TEST(Stage2Sizes, TablesReportTheirStartLevel) {
    PageArena mem;
    Tables<PageArena> t39(mem, mem.alloc_table(), 39, 40);
    Tables<PageArena> t40(mem, mem.alloc_root(2), 40, 40);
    Tables<PageArena> t44(mem, mem.alloc_table(), 44, 44);
    EXPECT_EQ(t39.start_level(), 1u);
    EXPECT_EQ(t40.start_level(), 1u);
    EXPECT_EQ(t40.root_tables(), 2u);
    EXPECT_EQ(t44.start_level(), 0u);
}

TEST(Stage2Sizes, LevelShifts) {
    EXPECT_EQ(level_shift(3), 12u);
    EXPECT_EQ(level_shift(2), 21u);
    EXPECT_EQ(level_shift(1), 30u);
    EXPECT_EQ(level_shift(0), 39u);
}

// T0SZ 28 (0x1C), SL0 0b01, IRGN0 0b01, ORGN0 0b01, SH0 0b11, TG0 0b00, PS 0b010,
// RES1 bit 31.
TEST(Stage2Sizes, VtcrFor36BitIpaAnd40BitPa) {
    const std::uint64_t expected = 28u | (1u << 6) | (1u << 8) | (1u << 10) | (3u << 12) |
                                   (0u << 14) | (2u << 16) | (1ull << 31);
    EXPECT_EQ(expected, 0x8002355Cu);
    EXPECT_EQ(vtcr_el2(36, 40), 0x8002355Cu);
    PageArena mem;
    Tables<PageArena> t(mem, mem.alloc_table(), 36, 40);
    EXPECT_EQ(t.vtcr(), 0x8002355Cu);
}

TEST(Stage2Sizes, VtcrAtTheLevelBoundaries) {
    // 30 bits: T0SZ 34, SL0 0b00 (level 2), PS 0b000.
    EXPECT_EQ(vtcr_el2(30, 32), 0x80003522u);
    // 39 bits: T0SZ 25, SL0 0b01 (level 1), PS 0b100 (44 bits).
    EXPECT_EQ(vtcr_el2(39, 44), 0x80043559u);
    // 48 bits: T0SZ 16, SL0 0b10 (level 0), PS 0b101.
    EXPECT_EQ(vtcr_el2(48, 48), 0x80053590u);
}

TEST(Stage2Sizes, ValidSizes) {
    EXPECT_FALSE(valid_sizes(20, 40));
    EXPECT_FALSE(valid_sizes(24, 40));
    EXPECT_TRUE(valid_sizes(25, 40));
    EXPECT_TRUE(valid_sizes(48, 48));
    EXPECT_FALSE(valid_sizes(49, 48));
    EXPECT_FALSE(valid_sizes(40, 33));
    for (unsigned pa : {40u, 42u, 44u, 48u}) EXPECT_TRUE(valid_sizes(40, pa)) << pa;
    // An IPA wider than the output address size faults on the first lookup.
    for (unsigned pa : {32u, 36u}) EXPECT_FALSE(valid_sizes(40, pa)) << pa;
    EXPECT_FALSE(valid_sizes(48, 40));
    EXPECT_FALSE(valid_sizes(44, 42));
    // 52-bit output addresses need FEAT_LPA's descriptor layout (OA[51:48]
    // elsewhere); a 4 KiB descriptor of this format holds OA[47:12] only.
    EXPECT_FALSE(valid_sizes(40, 52));
}

TEST(Stage2Sizes, MapRejectsSizesTheGranuleCannotDescribe) {
    PageArena mem;
    Tables<PageArena> ipa20(mem, mem.alloc_table(), 20, 40);
    EXPECT_EQ(ipa20.map(0, 0, k4K, {}), MapError::BadSize);
    Tables<PageArena> ipa49(mem, mem.alloc_table(), 49, 48);
    EXPECT_EQ(ipa49.map(0, 0, k4K, {}), MapError::BadSize);
    Tables<PageArena> pa33(mem, mem.alloc_table(), 32, 33);
    EXPECT_EQ(pa33.map(0, 0, k4K, {}), MapError::BadSize);
    EXPECT_EQ(mem.used, 3u);  // no table was allocated for any of them
}

// ------------------------------------------------------ output-address range

TEST(Stage2Map, PaBeyondPaBitsIsOutOfRange) {
    PageArena mem;
    Tables<PageArena> t(mem, mem.alloc_table(), 32, 32);
    EXPECT_EQ(t.map(0x40000000, 0x100000000ull, k4K, {}), MapError::OutOfRange);
    EXPECT_EQ(t.map(0x40000000, 0xfffff000ull, 2 * k4K, {}), MapError::OutOfRange);
    EXPECT_FALSE(t.translate(0x40000000).valid);
    // The last page below 4 GiB is fine.
    ASSERT_EQ(t.map(0x40000000, 0xfffff000ull, k4K, {}), MapError::None);
    const Translation tr = t.translate(0x40000abc);
    ASSERT_TRUE(tr.valid);
    EXPECT_EQ(tr.pa, 0xfffffabcull);
}

TEST(Stage2Map, PaRangeWrapAroundIsOutOfRange) {
    PageArena mem;
    Tables<PageArena> t(mem, mem.alloc_table(), 39, 48);
    EXPECT_EQ(t.map(0, 0xfffffffffffff000ull, 2 * k4K, {}), MapError::OutOfRange);
}

TEST(Stage2Map, FortyBitIpaConcatenatesTwoLevelOneTables) {
    PageArena mem;
    mem.alloc_table();  // the root is 8 KiB aligned whatever came before
    Tables<PageArena> t(mem, mem.alloc_root(2), 40, 40);
    EXPECT_EQ(t.root() % 0x2000, 0u);
    // IPA 0x80'4000'0000: IPA[39:30] = 0x201, entry 1 of the second table.
    ASSERT_EQ(t.map(0x8040000000ull, 0x40000000, k2M, {}), MapError::None);
    const Translation tr = t.translate(0x8040001234ull);
    ASSERT_TRUE(tr.valid);
    EXPECT_EQ(tr.level, 2u);
    EXPECT_EQ(tr.pa, 0x40001234u);
    EXPECT_EQ(mem.read64(t.root() + 4096 + 8) & 3u, 3u);  // a table descriptor
    // The last IPA of the 40 bits maps; nothing beyond does.
    ASSERT_EQ(t.map(0xfffffff000ull, 0x1000, k4K, {}), MapError::None);
    EXPECT_EQ(t.translate(0xffffffffffull).pa, 0x1fffu);
    EXPECT_EQ(t.map(0x10000000000ull, 0x1000, k4K, {}), MapError::OutOfRange);
}

TEST(Stage2Map, FortyFourBitIpaUsesALevelZeroTable) {
    PageArena mem;
    Tables<PageArena> t(mem, mem.alloc_table(), 44, 44);
    // IPA[43:39] = 1 for 0x80'4000'0000: level-0 index 1.
    ASSERT_EQ(t.map(0x8040000000ull, 0x40000000, k2M, {}), MapError::None);
    EXPECT_EQ(t.translate(0x8040001234ull).pa, 0x40001234u);
    EXPECT_EQ(mem.read64(t.root() + 8) & 3u, 3u);
}

TEST(Stage2Map, OneGigabyteBlocksWhereBothSidesAreAligned) {
    PageArena mem;
    Tables<PageArena> t(mem, mem.alloc_root(2), 40, 40);
    // QEMU virt's 512 GiB high PCIe MMIO window: 512 level-1 blocks, no
    // further table.
    const unsigned before = mem.used;
    ASSERT_EQ(t.map(0x8000000000ull, 0x8000000000ull, 0x8000000000ull,
                    {Access::ReadWrite, MemAttr::DeviceNGnRE, true}),
              MapError::None);
    EXPECT_EQ(mem.used, before);
    const Translation tr = t.translate(0xc012345678ull);
    ASSERT_TRUE(tr.valid);
    EXPECT_EQ(tr.level, 1u);
    EXPECT_EQ(tr.pa, 0xc012345678ull);
    // A level-1 block descriptor: bits [1:0] = 0b01, OA[39:30].
    EXPECT_EQ(tr.descriptor & 3u, 1u);
    EXPECT_EQ(tr.descriptor & kOutputMask, 0xc000000000ull);
    // 1 GiB + 2 MiB misaligned by 2 MiB: 2 MiB blocks only.
    ASSERT_EQ(t.map(0x40200000, 0x40200000, 0x40000000, {}), MapError::None);
    EXPECT_EQ(t.translate(0x40200000).level, 2u);
    // Unmap takes a whole 1 GiB block, not part of it.
    EXPECT_EQ(t.unmap(0xc000000000ull, k2M), MapError::SplitBlock);
    EXPECT_EQ(t.unmap(0xc000000000ull, 0x40000000), MapError::None);
    EXPECT_FALSE(t.translate(0xc012345678ull).valid);
    EXPECT_TRUE(t.translate(0xc040000000ull).valid);
}

// ----------------------------------------------------------------- unmap

TEST(Stage2Unmap, TwoMegabyteBlock) {
    PageArena mem;
    Tables<PageArena> t(mem, mem.alloc_table(), 32, 32);
    ASSERT_EQ(t.map(0x40000000, 0x48000000, k2M, {}), MapError::None);
    ASSERT_EQ(t.translate(0x40000000).level, 2u);
    EXPECT_EQ(t.unmap(0x40000000, k2M), MapError::None);
    EXPECT_FALSE(t.translate(0x40000000).valid);
    EXPECT_FALSE(t.translate(0x40123456).valid);
    EXPECT_FALSE(t.translate(0x401fffff).valid);
    // The entry is invalid (bit 0 clear).
    EXPECT_EQ(t.translate(0x40000000).descriptor & 1u, 0u);
}

TEST(Stage2Unmap, FourKilobytePage) {
    PageArena mem;
    Tables<PageArena> t(mem, mem.alloc_table(), 32, 32);
    ASSERT_EQ(t.map(0x09000000, 0x09000000, 2 * k4K, {}), MapError::None);
    EXPECT_EQ(t.unmap(0x09000000, k4K), MapError::None);
    EXPECT_FALSE(t.translate(0x09000000).valid);
    EXPECT_FALSE(t.translate(0x09000fff).valid);
    const Translation next = t.translate(0x09001004);
    ASSERT_TRUE(next.valid);
    EXPECT_EQ(next.level, 3u);
    EXPECT_EQ(next.pa, 0x09001004u);
}

TEST(Stage2Unmap, MixedBlocksAndPagesInOneCall) {
    PageArena mem;
    Tables<PageArena> t(mem, mem.alloc_table(), 32, 32);
    // Block at 0x4000'0000, then two pages at 0x4020'0000 and 0x4020'1000.
    ASSERT_EQ(t.map(0x40000000, 0x48000000, k2M + 2 * k4K, {}), MapError::None);
    ASSERT_EQ(t.translate(0x40000000).level, 2u);
    ASSERT_EQ(t.translate(0x40201000).level, 3u);
    EXPECT_EQ(t.unmap(0x40000000, k2M + 2 * k4K), MapError::None);
    EXPECT_FALSE(t.translate(0x40000000).valid);
    EXPECT_FALSE(t.translate(0x40200000).valid);
    EXPECT_FALSE(t.translate(0x40201000).valid);
}

TEST(Stage2Unmap, PartOfABlockIsSplitBlock) {
    PageArena mem;
    Tables<PageArena> t(mem, mem.alloc_table(), 32, 32);
    ASSERT_EQ(t.map(0x40000000, 0x48000000, k2M, {}), MapError::None);
    EXPECT_EQ(t.unmap(0x40000000, k4K), MapError::SplitBlock);        // the first page
    EXPECT_EQ(t.unmap(0x40001000, k4K), MapError::SplitBlock);        // a middle page
    EXPECT_EQ(t.unmap(0x40100000, k2M), MapError::SplitBlock);        // straddles the end
    EXPECT_EQ(t.unmap(0x40000000, k2M - k4K), MapError::SplitBlock);  // all but one page
    // The block is untouched.
    const Translation tr = t.translate(0x40001234);
    ASSERT_TRUE(tr.valid);
    EXPECT_EQ(tr.pa, 0x48001234u);
}

TEST(Stage2Unmap, UnmappedIsNotMapped) {
    PageArena mem;
    Tables<PageArena> t(mem, mem.alloc_table(), 32, 32);
    EXPECT_EQ(t.unmap(0x40000000, k4K), MapError::NotMapped);  // no tables at all
    ASSERT_EQ(t.map(0x09000000, 0x09000000, k4K, {}), MapError::None);
    // The level-3 table exists, but this entry of it is invalid.
    EXPECT_EQ(t.unmap(0x09001000, k4K), MapError::NotMapped);
    ASSERT_EQ(t.unmap(0x09000000, k4K), MapError::None);
    EXPECT_EQ(t.unmap(0x09000000, k4K), MapError::NotMapped);  // twice
}

TEST(Stage2Unmap, RangeEndingInAHoleIsNotMapped) {
    PageArena mem;
    Tables<PageArena> t(mem, mem.alloc_table(), 32, 32);
    ASSERT_EQ(t.map(0x09000000, 0x09000000, k4K, {}), MapError::None);
    EXPECT_EQ(t.unmap(0x09000000, 2 * k4K), MapError::NotMapped);
}

TEST(Stage2Unmap, AlignmentAndRange) {
    PageArena mem;
    Tables<PageArena> t(mem, mem.alloc_table(), 32, 32);
    ASSERT_EQ(t.map(0x09000000, 0x09000000, k4K, {}), MapError::None);
    EXPECT_EQ(t.unmap(0x09000800, k4K), MapError::Unaligned);
    EXPECT_EQ(t.unmap(0x09000000, 0x800), MapError::Unaligned);
    EXPECT_EQ(t.unmap(0x100000000ull, k4K), MapError::OutOfRange);
    EXPECT_EQ(t.unmap(0xfffff000ull, 2 * k4K), MapError::OutOfRange);
    EXPECT_EQ(t.unmap(0xfffffffffffff000ull, 2 * k4K), MapError::OutOfRange);
    EXPECT_TRUE(t.translate(0x09000000).valid);  // nothing was removed
}

TEST(Stage2Unmap, ZeroSizeIsANoOp) {
    PageArena mem;
    Tables<PageArena> t(mem, mem.alloc_table(), 32, 32);
    ASSERT_EQ(t.map(0x09000000, 0x09000000, k4K, {}), MapError::None);
    EXPECT_EQ(t.unmap(0x09000000, 0), MapError::None);
    EXPECT_TRUE(t.translate(0x09000000).valid);
}

TEST(Stage2Unmap, RemapAfterUnmap) {
    PageArena mem;
    Tables<PageArena> t(mem, mem.alloc_table(), 32, 32);
    ASSERT_EQ(t.map(0x40000000, 0x48000000, k2M, {}), MapError::None);
    ASSERT_EQ(t.unmap(0x40000000, k2M), MapError::None);
    // The same IPA can now be mapped again, even as pages somewhere else.
    EXPECT_EQ(t.map(0x40000000, 0x50000000, k4K, {}), MapError::None);
    const Translation tr = t.translate(0x40000010);
    ASSERT_TRUE(tr.valid);
    EXPECT_EQ(tr.level, 3u);
    EXPECT_EQ(tr.pa, 0x50000010u);
}

TEST(Stage2Unmap, ThirtyNineBitIpaStartsAtLevelOne) {
    PageArena mem;
    Tables<PageArena> t(mem, mem.alloc_table(), 39, 40);
    ASSERT_EQ(t.map(0x7fc0000000ull, 0x40000000, k2M, {}), MapError::None);
    ASSERT_EQ(t.map(0x7fc0200000ull, 0x40200000, k4K, {}), MapError::None);
    // Level-1 index of IPA 0x7F'C000'0000 is IPA[38:30] = 0x1FF.
    EXPECT_EQ(mem.read64(t.root() + 8 * 0x1ff) & 3u, 3u);
    EXPECT_EQ(t.unmap(0x7fc0000000ull, k2M), MapError::None);
    EXPECT_EQ(t.unmap(0x7fc0200000ull, k4K), MapError::None);
    EXPECT_FALSE(t.translate(0x7fc0000000ull).valid);
    EXPECT_FALSE(t.translate(0x7fc0200000ull).valid);
}

TEST(Stage2Errors, EveryErrorHasAName) {
    EXPECT_STREQ(map_error_name(MapError::None), "None");
    EXPECT_STREQ(map_error_name(MapError::Unaligned), "Unaligned");
    EXPECT_STREQ(map_error_name(MapError::OutOfRange), "OutOfRange");
    EXPECT_STREQ(map_error_name(MapError::OutOfTables), "OutOfTables");
    EXPECT_STREQ(map_error_name(MapError::AlreadyMapped), "AlreadyMapped");
    EXPECT_STREQ(map_error_name(MapError::NotMapped), "NotMapped");
    EXPECT_STREQ(map_error_name(MapError::SplitBlock), "SplitBlock");
    EXPECT_STREQ(map_error_name(MapError::BadSize), "BadSize");
    EXPECT_EQ(map_error_name(static_cast<MapError>(200)), nullptr);
}

// ------------------------------------------------- findings (see report)

// With the 4KB granule and 64-bit descriptors (no FEAT_LPA2), a block or page
// descriptor holds OA[47:12] (D8.3), so no output address at or above 2^48 can
// be mapped. valid_sizes() nevertheless accepts pa_bits 52 and map() then
// masks the PA with kOutputMask: PA 2^48 is silently mapped to PA 0.
TEST(Stage2Findings, PaAboveFortyEightBitsIsNotSilentlyTruncated) {
    PageArena mem;
    Tables<PageArena> t(mem, mem.alloc_table(), 48, 52);
    const MapError err = t.map(0x40000000, 1ull << 48, k4K, {});
    if (err == MapError::None) {
        const Translation tr = t.translate(0x40000000);
        ASSERT_TRUE(tr.valid);
        EXPECT_EQ(tr.pa, 1ull << 48);
    } else {
        EXPECT_TRUE(err == MapError::OutOfRange || err == MapError::BadSize) << map_error_name(err);
    }
}

// map() answers BadSize for an IPA width the granule cannot describe; unmap()
// does not check the sizes at all (and shifts 1 by ipa_bits, which is
// undefined for ipa_bits >= 64).
TEST(Stage2Findings, UnmapRejectsUnsupportedSizesLikeMap) {
    PageArena mem;
    Tables<PageArena> t(mem, mem.alloc_table(), 20, 40);
    EXPECT_EQ(t.unmap(0, k4K), MapError::BadSize);
}

// Found by fuzz_stage2: a failing map() or unmap() must change nothing.
TEST(Stage2AllOrNothing, FailedUnmapRemovesNothing) {
    PageArena mem;
    Tables<PageArena> t(mem, mem.alloc_table(), 32, 40);
    ASSERT_EQ(t.map(0x10000, 0x100000000ull, 0x101000, {}), MapError::None);
    // Reaches past the mapped range: NotMapped, and the mapped part stays.
    EXPECT_EQ(t.unmap(0x21000, 0x101000), MapError::NotMapped);
    EXPECT_TRUE(t.translate(0x21000).valid);
    EXPECT_TRUE(t.translate(0x110000).valid);
}

TEST(Stage2AllOrNothing, FailedMapAddsNothing) {
    PageArena mem;
    Tables<PageArena> t(mem, mem.alloc_table(), 32, 40);
    ASSERT_EQ(t.map(0x50000, 0x100050000ull, 0x1000, {}), MapError::None);
    // Overlaps the page at 0x50000 half-way through: AlreadyMapped, and the
    // pages before it that this call had mapped are gone again.
    EXPECT_EQ(t.map(0x40000, 0x100000000ull, 0x20000, {}), MapError::AlreadyMapped);
    EXPECT_FALSE(t.translate(0x40000).valid);
    EXPECT_FALSE(t.translate(0x4f000).valid);
    EXPECT_TRUE(t.translate(0x50000).valid);
    EXPECT_EQ(t.translate(0x50000).pa, 0x100050000ull);
}
