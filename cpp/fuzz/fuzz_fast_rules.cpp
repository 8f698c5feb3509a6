// Fast rules on random tables and exits: a rule's hit counter moves exactly
// when apply_fast_rules() found it, and an answered exit changes at most the
// register the access names.
#include "armvcpu/classify.hpp"
#include "armvcpu/fast_rules.hpp"
#include "fuzz_input.hpp"

using namespace armvcpu;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::Input in(data, size);
    FastRuleTable table{kFastRuleMagic, kMaxFastRules, 0, {}};
    const unsigned rules = in.take<std::uint8_t>() % 8;
    for (unsigned i = 0; i < rules; ++i) {
        table.rules[i] = {static_cast<RuleKind>(in.take<std::uint8_t>() % 4),
                          in.take<std::uint8_t>() & 7u,
                          in.take<std::uint64_t>() & 0xffffffff,
                          in.take<std::uint64_t>() & 0xffffffff,
                          in.take<std::uint64_t>(),
                          0};
    }
    TrapFrame frame{};
    for (unsigned i = 0; i < 31; ++i) frame.set_gpr(i, in.take<std::uint64_t>());
    const Syndrome s{in.take<std::uint64_t>(), in.take<std::uint64_t>(), in.take<std::uint64_t>()};
    const ExitReason reason = classify_sync(frame, s);
    const TrapFrame before = frame;
    const FastRule* match = match_fast_rule(table, reason);
    const bool answered = apply_fast_rules(table, reason, frame);
    std::uint64_t hits = 0;
    for (const FastRule& r : table.rules) hits += r.hits;
    ARMVCPU_FUZZ_CHECK(hits == (match != nullptr ? 1u : 0u));
    if (answered) ARMVCPU_FUZZ_CHECK(match != nullptr && (match->flags & kRuleCountOnly) == 0);
    unsigned changed = 0;
    for (unsigned i = 0; i < 31; ++i) changed += frame.gpr(i) != before.gpr(i);
    ARMVCPU_FUZZ_CHECK(changed <= 1 && frame.elr == before.elr);
    return 0;
}
