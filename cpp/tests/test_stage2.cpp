// Stage-2 descriptors and VTCR_EL2 checked against the field definitions in
// Arm ARM D8.3 (descriptor formats), D8.5.5 (stage 2 MemAttr) and D17.2
// (VTCR_EL2), not against the builder's own output.
#include <gtest/gtest.h>

#include <vector>

#include "armvcpu/stage2.hpp"

using namespace armvcpu::stage2;

namespace {

// Table pages in host memory, addressed as if they were physical memory
// starting at `base`.
struct HostTableMemory {
    std::uint64_t base = 0x80000000;
    std::vector<std::uint64_t> words = std::vector<std::uint64_t>(16 * 512, 0);
    unsigned used = 0;

    std::uint64_t read64(std::uint64_t pa) const { return words.at((pa - base) / 8); }
    void write64(std::uint64_t pa, std::uint64_t v) { words.at((pa - base) / 8) = v; }
    std::uint64_t alloc_table() {
        if (used == 16) return 0;
        return base + 4096ull * used++;
    }
};

}  // namespace

TEST(Stage2, VtcrFor32BitIpaAndPa) {
    // T0SZ=32, SL0=1 (start at level 1), IRGN0=ORGN0=1 (WB), SH0=3, TG0=4K,
    // PS=0 (32 bits), bit 31 RES1.
    EXPECT_EQ(vtcr_el2(32, 32), 0x80003560u);
}

TEST(Stage2, VtcrFor40BitIpaAnd48BitPa) {
    // T0SZ=24; 40 bits start at level 1 with two concatenated tables (SL0=1),
    // PS=5.
    EXPECT_EQ(vtcr_el2(40, 48), 0x80053558u);
}

TEST(Stage2, VtcrFor44BitIpaStartsAtLevelZero) {
    // T0SZ=20: beyond what 16 concatenated level-1 tables resolve (43 bits),
    // so level 0 (SL0=2), PS=4 (44 bits).
    EXPECT_EQ(vtcr_el2(44, 44), 0x80043594u);
}

TEST(Stage2, TwoMegabyteBlockDescriptor) {
    HostTableMemory mem;
    Tables<HostTableMemory> t(mem, mem.alloc_table(), 32, 32);
    ASSERT_EQ(t.map(0x40000000, 0x48000000, 0x200000, {}), MapError::None);
    const Translation tr = t.translate(0x40001234);
    ASSERT_TRUE(tr.valid);
    EXPECT_EQ(tr.level, 2u);
    EXPECT_EQ(tr.pa, 0x48001234u);
    // Block (bits[1:0]=01), MemAttr=1111, S2AP=11, SH=11, AF=1.
    EXPECT_EQ(tr.descriptor, 0x480007fdu);
}

TEST(Stage2, PageDescriptorsForUnalignedRanges) {
    HostTableMemory mem;
    Tables<HostTableMemory> t(mem, mem.alloc_table(), 32, 32);
    ASSERT_EQ(t.map(0x09000000, 0x09000000, 0x1000, {Access::ReadOnly, MemAttr::DeviceNGnRE, true}),
              MapError::None);
    const Translation tr = t.translate(0x09000ffc);
    ASSERT_TRUE(tr.valid);
    EXPECT_EQ(tr.level, 3u);
    EXPECT_EQ(tr.pa, 0x09000ffcu);
    // Page (bits[1:0]=11), MemAttr=0001, S2AP=01, SH=11, AF=1, XN (bit 54).
    EXPECT_EQ(tr.descriptor, 0x0040000009000747ull);
}

TEST(Stage2, UnmappedAddressesDoNotTranslate) {
    HostTableMemory mem;
    Tables<HostTableMemory> t(mem, mem.alloc_table(), 32, 32);
    ASSERT_EQ(t.map(0x40000000, 0x48000000, 0x400000, {}), MapError::None);
    EXPECT_FALSE(t.translate(0x40400000).valid);
    EXPECT_FALSE(t.translate(0x3fffffff).valid);
    EXPECT_TRUE(t.translate(0x403fffff).valid);
}

TEST(Stage2, Errors) {
    HostTableMemory mem;
    Tables<HostTableMemory> t(mem, mem.alloc_table(), 32, 32);
    EXPECT_EQ(t.map(0x40000800, 0x48000000, 0x1000, {}), MapError::Unaligned);
    EXPECT_EQ(t.map(0xfffff000, 0x48000000, 0x2000, {}), MapError::OutOfRange);
    ASSERT_EQ(t.map(0x40000000, 0x48000000, 0x200000, {}), MapError::None);
    EXPECT_EQ(t.map(0x40001000, 0x50000000, 0x1000, {}), MapError::AlreadyMapped);
}

TEST(Stage2, RunsOutOfTablesCleanly) {
    HostTableMemory mem;
    Tables<HostTableMemory> t(mem, mem.alloc_table(), 32, 32);
    // Each 4 KiB page in a different 2 MiB region needs its own L3 table.
    MapError last = MapError::None;
    for (std::uint64_t i = 0; i < 32 && last == MapError::None; ++i) {
        last = t.map(0x40000000 + i * 0x200000 + 0x1000, 0x48000000 + i * 0x1000, 0x1000, {});
    }
    EXPECT_EQ(last, MapError::OutOfTables);
}

TEST(Stage2, VttbrCarriesVmid) {
    HostTableMemory mem;
    Tables<HostTableMemory> t(mem, mem.alloc_table(), 32, 32);
    EXPECT_EQ(t.vttbr(5), 0x80000000ull | (5ull << 48));
}
