// Fast rules: simple, declarative answers the host installs in firmware
// memory so that matching exits never leave EL2.
//
//   MMIO range [lo, hi)      -> reads return `value`, writes are ignored
//   hypercall number lo      -> x0 = value
//   system register (key lo) -> reads return `value` (0: read-as-zero),
//                               writes are ignored
//
// A rule with kFlagCountOnly counts the hit and still sends the exit on.
// Every rule counts its hits. The host may add rules while the guest runs:
// it fills a free slot and publishes it by storing `kind` last with release
// ordering; the firmware reads `kind` with acquire ordering.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "armvcpu/exit_reason.hpp"
#include "armvcpu/mmio.hpp"
#include "armvcpu/trap_frame.hpp"

namespace armvcpu {

enum class RuleKind : std::uint32_t {
    Empty = 0,
    Mmio = 1,
    Hypercall = 2,
    SysReg = 3,
};

inline constexpr std::uint32_t kRuleCountOnly = 1u << 0;  // count, then forward the exit
inline constexpr std::uint32_t kRuleReads = 1u << 1;      // MMIO: applies to reads
inline constexpr std::uint32_t kRuleWrites = 1u << 2;     // MMIO: applies to writes
// The answer is an exception taken to the guest's EL1 instead of a value:
// the synchronous external abort matching the access, or an Undefined
// Instruction (exception_entry.hpp; the firmware takes it).
inline constexpr std::uint32_t kRuleInjectAbort = 1u << 3;
inline constexpr std::uint32_t kRuleInjectUndef = 1u << 4;

// What a matching rule asks for.
enum class FastRuleAnswer : std::uint8_t {
    None,         // no rule answers: the exit goes on
    Answered,     // answered in the frame
    InjectAbort,  // take the matching synchronous external abort
    InjectUndef,  // take an Undefined Instruction exception
};

struct FastRule {
    RuleKind kind;
    std::uint32_t flags;
    std::uint64_t lo;     // MMIO: first address; hypercall: number; sysreg: key
    std::uint64_t hi;     // MMIO: end address (exclusive); otherwise unused
    std::uint64_t value;  // what reads / the hypercall return
    std::uint64_t hits;   // incremented by the firmware on every match
};

static_assert(sizeof(FastRule) == 40);
static_assert(offsetof(FastRule, kind) == 0);
static_assert(offsetof(FastRule, hits) == 32);

inline constexpr std::uint32_t kFastRuleMagic = 0x4C555246;  // "FRUL"
inline constexpr unsigned kMaxFastRules = 64;

struct FastRuleTable {
    std::uint32_t magic;
    std::uint32_t capacity;
    std::uint64_t reserved;
    FastRule rules[kMaxFastRules];
};

static_assert(std::is_trivially_copyable_v<FastRuleTable>);
static_assert(offsetof(FastRuleTable, rules) == 16);

namespace detail {
inline RuleKind load_kind(const FastRule& r) {
    return static_cast<RuleKind>(
        __atomic_load_n(reinterpret_cast<const std::uint32_t*>(&r.kind), __ATOMIC_ACQUIRE));
}
inline void count_hit(FastRule& r) { __atomic_fetch_add(&r.hits, 1, __ATOMIC_RELAXED); }
}  // namespace detail

// The first rule matching this exit, or nullptr. The host fills slots in
// order and never empties one, so the first Empty slot ends the table: an
// exit with a few rules installed looks at a few slots, not all 64.
inline FastRule* match_fast_rule(FastRuleTable& table, const ExitReason& reason) {
    for (unsigned i = 0; i < kMaxFastRules; ++i) {
        FastRule& r = table.rules[i];
        const RuleKind kind = detail::load_kind(r);
        if (kind == RuleKind::Empty) return nullptr;
        switch (reason.kind) {
            case ExitKind::MmioRead:
                if (kind == RuleKind::Mmio && (r.flags & kRuleReads) != 0 &&
                    reason.mmio_read.addr >= r.lo && reason.mmio_read.addr < r.hi) {
                    return &r;
                }
                break;
            case ExitKind::MmioWrite:
                if (kind == RuleKind::Mmio && (r.flags & kRuleWrites) != 0 &&
                    reason.mmio_write.addr >= r.lo && reason.mmio_write.addr < r.hi) {
                    return &r;
                }
                break;
            case ExitKind::Hypercall:
                if (kind == RuleKind::Hypercall && reason.hypercall.nr == r.lo) return &r;
                break;
            case ExitKind::SysRegRead:
                if (kind == RuleKind::SysReg && reason.sysreg_read.addr == r.lo) return &r;
                break;
            case ExitKind::SysRegWrite:
                if (kind == RuleKind::SysReg && reason.sysreg_write.addr == r.lo) return &r;
                break;
            default: return nullptr;
        }
    }
    return nullptr;
}

// Applies the first matching rule: counts the hit and, unless the rule only
// counts, answers the exit in the frame or says which exception to take.
inline FastRuleAnswer answer_fast_rules(FastRuleTable& table, const ExitReason& reason,
                                        TrapFrame& frame) {
    if (table.magic != kFastRuleMagic) return FastRuleAnswer::None;
    FastRule* r = match_fast_rule(table, reason);
    if (r == nullptr) return FastRuleAnswer::None;
    detail::count_hit(*r);
    if ((r->flags & kRuleCountOnly) != 0) return FastRuleAnswer::None;
    if ((r->flags & kRuleInjectAbort) != 0) return FastRuleAnswer::InjectAbort;
    if ((r->flags & kRuleInjectUndef) != 0) return FastRuleAnswer::InjectUndef;
    switch (reason.kind) {
        case ExitKind::MmioRead: complete_mmio_read(frame, reason.mmio_read, r->value); break;
        case ExitKind::Hypercall: frame.set_gpr(0, r->value); break;
        case ExitKind::SysRegRead: frame.set_gpr(reason.sysreg_read.reg, r->value); break;
        default: break;  // writes: ignored (the PC is already past them)
    }
    return FastRuleAnswer::Answered;
}

// answer_fast_rules() for callers that cannot take exceptions (replays, the
// fuzzer): true when the exit was answered in the frame.
inline bool apply_fast_rules(FastRuleTable& table, const ExitReason& reason, TrapFrame& frame) {
    return answer_fast_rules(table, reason, frame) == FastRuleAnswer::Answered;
}

}  // namespace armvcpu
