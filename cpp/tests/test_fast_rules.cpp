// Fast rules (fast_rules.hpp): matching, answers, counters.
#include <gtest/gtest.h>

#include "armvcpu/classify.hpp"
#include "armvcpu/fast_rules.hpp"

using namespace armvcpu;

namespace {

FastRuleTable empty_table() { return FastRuleTable{kFastRuleMagic, kMaxFastRules, 0, {}}; }

// Data abort ISS (Arm ARM D17.2.37): ISV [24], SAS [23:22], SRT [20:16],
// WnR [6], DFSC translation fault level 3 = 0b000111.
Syndrome mmio(unsigned sas, unsigned srt, bool write, std::uint64_t ipa) {
    const std::uint64_t iss = (1u << 24) | (sas << 22) | (srt << 16) | (write ? 1u << 6 : 0u) | 7u;
    return {(0x24ull << 26) | (1u << 25) | iss, ipa, (ipa >> 12) << 4};
}

}  // namespace

TEST(FastRules, HypercallRuleSetsX0AndCounts) {
    FastRuleTable t = empty_table();
    t.rules[0] = {RuleKind::Hypercall, 0, 0x10, 0, 42, 0};
    TrapFrame f{};
    f.set_gpr(0, 0x10);
    const ExitReason r = classify_sync(f, {0x5a000000, 0, 0});
    EXPECT_TRUE(apply_fast_rules(t, r, f));
    EXPECT_EQ(f.gpr(0), 42u);
    EXPECT_EQ(t.rules[0].hits, 1u);
}

TEST(FastRules, MmioRuleAnswersReadsWithLoadSemanticsAndIgnoresWrites) {
    FastRuleTable t = empty_table();
    t.rules[0] = {RuleKind::Mmio, kRuleReads | kRuleWrites, 0x9000000, 0x9001000, 0xABCD, 0};
    TrapFrame f{};
    const ExitReason rd = classify_sync(f, mmio(0, 4, false, 0x9000010));  // LDRB w4
    ASSERT_EQ(rd.kind, ExitKind::MmioRead);
    EXPECT_TRUE(apply_fast_rules(t, rd, f));
    EXPECT_EQ(f.gpr(4), 0xCDu);  // truncated to the byte the load reads
    const ExitReason wr = classify_sync(f, mmio(2, 4, true, 0x9000ffc));
    EXPECT_TRUE(apply_fast_rules(t, wr, f));
    EXPECT_EQ(t.rules[0].hits, 2u);
}

TEST(FastRules, RangesAreHalfOpenAndDirectionsSeparate) {
    FastRuleTable t = empty_table();
    t.rules[0] = {RuleKind::Mmio, kRuleReads, 0x9000000, 0x9001000, 0, 0};
    TrapFrame f{};
    EXPECT_FALSE(apply_fast_rules(t, classify_sync(f, mmio(2, 1, false, 0x9001000)), f));
    EXPECT_FALSE(apply_fast_rules(t, classify_sync(f, mmio(2, 1, true, 0x9000000)), f));
    EXPECT_EQ(t.rules[0].hits, 0u);
}

TEST(FastRules, CountOnlyCountsAndForwards) {
    FastRuleTable t = empty_table();
    t.rules[0] = {RuleKind::Hypercall, kRuleCountOnly, 0x20, 0, 0, 0};
    TrapFrame f{};
    f.set_gpr(0, 0x20);
    const ExitReason r = classify_sync(f, {0x5a000000, 0, 0});
    EXPECT_FALSE(apply_fast_rules(t, r, f));
    EXPECT_EQ(f.gpr(0), 0x20u);
    EXPECT_EQ(t.rules[0].hits, 1u);
}

TEST(FastRules, SysRegRuleWritesRt) {
    FastRuleTable t = empty_table();
    t.rules[0] = {RuleKind::SysReg, 0, kCntpctEl0.iss_key(), 0, 0x1234, 0};
    TrapFrame f{};
    // MRS x7, CNTPCT_EL0 trapped: Op0 3, Op2 1, Op1 3, CRn 14, Rt 7, CRm 0, read.
    const std::uint64_t iss = (3u << 20) | (1u << 17) | (3u << 14) | (14u << 10) | (7u << 5) | 1u;
    const ExitReason r = classify_sync(f, {(0x18ull << 26) | (1u << 25) | iss, 0, 0});
    ASSERT_EQ(r.kind, ExitKind::SysRegRead);
    EXPECT_TRUE(apply_fast_rules(t, r, f));
    EXPECT_EQ(f.gpr(7), 0x1234u);
}

TEST(FastRules, TableWithoutMagicIsIgnored) {
    FastRuleTable t = empty_table();
    t.magic = 0;
    t.rules[0] = {RuleKind::Hypercall, 0, 0, 0, 1, 0};
    TrapFrame f{};
    EXPECT_FALSE(apply_fast_rules(t, classify_sync(f, {0x5a000000, 0, 0}), f));
}

TEST(FastRules, OtherExitsNeverMatch) {
    FastRuleTable t = empty_table();
    for (unsigned i = 0; i < kMaxFastRules; ++i) t.rules[i] = {RuleKind::Mmio, 7, 0, ~0ull, 0, 0};
    TrapFrame f{};
    EXPECT_FALSE(apply_fast_rules(t, classify_sync(f, {0xf2000000, 0, 0}), f));  // BRK
}

TEST(FastRules, TheFirstEmptySlotEndsTheTable) {
    // The host fills slots in order; a rule after an empty slot is not part
    // of the table (and costs nothing to exits that match no rule).
    FastRuleTable t = empty_table();
    t.rules[0] = {RuleKind::Hypercall, 0, 0x10, 0, 1, 0};
    t.rules[2] = {RuleKind::Hypercall, 0, 0x20, 0, 2, 0};
    TrapFrame f{};
    f.set_gpr(0, 0x20);
    const ExitReason r = classify_sync(f, {0x5a000000, 0, 0});
    EXPECT_FALSE(apply_fast_rules(t, r, f));
    EXPECT_EQ(t.rules[2].hits, 0u);
    t.rules[1] = {RuleKind::Hypercall, 0, 0x30, 0, 3, 0};
    EXPECT_TRUE(apply_fast_rules(t, r, f));
    EXPECT_EQ(f.gpr(0), 2u);
}
