// SMMUv3 structures checked against the field positions of the SMMUv3
// specification (Arm IHI 0070: 5.2 STE, 5.4 CD, 7.3 event records), not
// against the builders' own output.
#include <gtest/gtest.h>

#include "armvcpu/smmu.hpp"

using namespace armvcpu::smmu;

TEST(Smmu, StreamTableEntryTranslatesAtStageOneThroughOneContext) {
    const Ste s = stream_table_entry(0x2'0001'2340ull);
    // V = 1; Config [3:1] = 0b101 (S1 translate, S2 bypass); S1Fmt 0;
    // S1ContextPtr [51:6]; S1CDMax [63:59] = 0.
    EXPECT_EQ(s.dword[0] & 1u, 1u);
    EXPECT_EQ((s.dword[0] >> 1) & 7u, 0b101u);
    EXPECT_EQ((s.dword[0] >> 4) & 3u, 0u);
    EXPECT_EQ(s.dword[0] & 0x000fffffffffffc0ull, 0x2'0001'2340ull);
    EXPECT_EQ(s.dword[0] >> 59, 0u);
    // Everything of stage 2 (dwords 2..3) stays 0.
    EXPECT_EQ(s.dword[2], 0u);
    EXPECT_EQ(s.dword[3], 0u);
}

TEST(Smmu, AStreamWithoutContextAborts) {
    const Ste s = stream_table_entry(0);
    EXPECT_EQ(s.dword[0], 1u);  // V = 1, Config = 0b000: abort
}

TEST(Smmu, ContextDescriptorFields) {
    const Cd c = context_descriptor(0x2'0004'5000ull, 40, 2, 7);
    const std::uint64_t d0 = c.dword[0];
    EXPECT_EQ(d0 & 0x3f, 24u);                // T0SZ = 64 - 40
    EXPECT_EQ((d0 >> 6) & 3u, 0u);            // TG0: 4 KiB
    EXPECT_EQ((d0 >> 14) & 1u, 0u);           // EPD0: TTB0 walks
    EXPECT_EQ((d0 >> 30) & 1u, 1u);           // EPD1: no TTB1
    EXPECT_EQ((d0 >> 31) & 1u, 1u);           // V
    EXPECT_EQ((d0 >> 32) & 7u, 2u);           // IPS: 40 bits
    EXPECT_EQ((d0 >> 41) & 1u, 1u);           // AA64
    EXPECT_EQ((d0 >> 44) & 1u, 0u);           // S: never stall
    EXPECT_EQ((d0 >> 45) & 1u, 1u);           // R: record faults
    EXPECT_EQ((d0 >> 46) & 1u, 1u);           // A: abort faulting transactions
    EXPECT_EQ(d0 >> 48, 7u);                  // ASID
    EXPECT_EQ(c.dword[1], 0x2'0004'5000ull);  // TTB0 [51:4]
    EXPECT_EQ(c.dword[3] & 0xff, 0xffu);      // MAIR0 Attr0: Normal write-back
}

TEST(Smmu, TwoLevelStreamTable) {
    // SMMU_STRTAB_BASE_CFG (6.3.25): FMT [17:16] = 0b01 (2-level), SPLIT
    // [10:6], LOG2SIZE [5:0].
    const std::uint32_t cfg = strtab_base_cfg_2level(16, 8);
    EXPECT_EQ((cfg >> 16) & 3u, 1u);
    EXPECT_EQ((cfg >> 6) & 0x1fu, 8u);
    EXPECT_EQ(cfg & 0x3fu, 16u);
    EXPECT_EQ(cfg & ~((3u << 16) | (0x1fu << 6) | 0x3fu), 0u);  // the rest RES0
    // Level-1 descriptor (5.1.1): Span [4:0]; L2Ptr [51:6].
    const std::uint64_t d = l1_stream_descriptor(0x2'0004'c000ull, 9);
    EXPECT_EQ(d & 0x1fu, 9u);
    EXPECT_EQ(d & 0x000fffffffffffc0ull, 0x2'0004'c000ull);
    EXPECT_EQ((d >> 5) & 1u, 0u);  // [5] RES0
    EXPECT_EQ(d >> 52, 0u);
    // SMMU_IDR0.ST_LEVEL [28:27] (6.3.1); SMMU_IDR1.SIDSIZE [5:0] (6.3.2).
    EXPECT_TRUE(idr0_two_level_stream_table(1u << 27));
    EXPECT_FALSE(idr0_two_level_stream_table(0));
    EXPECT_FALSE(idr0_two_level_stream_table(2u << 27));  // reserved
    EXPECT_EQ(idr1_sid_bits(0x0000'0010u | (1u << 6)), 16u);
}

TEST(Smmu, QueueBaseRegister) {
    // SMMU_EVENTQ_BASE: RA [62], ADDR [51:5], LOG2SIZE [4:0].
    EXPECT_EQ(queue_base(0x2'0000'8000ull, 6), (1ull << 62) | 0x2'0000'8000ull | 6u);
}

TEST(Smmu, TranslationFaultEventDecodes) {
    // F_TRANSLATION (0x10): StreamID in word 1, RnW at word 3 bit 3, InputAddr
    // in words 4..5.
    EventRecord e{};
    e.word[0] = 0x10;
    e.word[1] = 0x0010;  // 00:02.0
    e.word[3] = 0;       // RnW = 0: a write
    e.word[4] = 0x0010'0000;
    e.word[5] = 0x2;
    const DmaFault f = decode_event(e);
    EXPECT_EQ(f.event, kEventFTranslation);
    EXPECT_EQ(f.stream_id, 0x10u);
    EXPECT_EQ(f.write, 1u);
    EXPECT_EQ(f.address, 0x2'0010'0000ull);
    e.word[3] = 1u << 3;  // a read
    EXPECT_EQ(decode_event(e).write, 0u);
}
