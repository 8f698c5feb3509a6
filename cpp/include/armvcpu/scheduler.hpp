// The EL2 scheduler's decisions, apart from the machine: where each vCPU
// runs (the seeds' affinity hints favor_phys_cpu and phys_cpu_set), which
// vCPU a physical CPU runs next (round-robin among the runnable), and the
// shared-memory layouts the host fills in (SchedConfig) and reads back
// (SwitchLog, and each switch's exit-log entry). The firmware
// (firmware/scheduler.cpp) does the switching.
//
// A vCPU "slot" is its place among all vCPUs of all VMs (VM 1's vCPUs
// first, then VM 2's ...), the index of its exit record. Without time
// sharing slot s runs on physical CPU s.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "armvcpu/host_interface.hpp"

namespace armvcpu::sched {

inline constexpr unsigned kMaxSlots = 8;     // vCPUs of all VMs together
inline constexpr unsigned kMaxPhysCpus = 8;  // physical CPUs the firmware starts
inline constexpr std::uint8_t kNoFavor = 0xff;

// Symbols the host writes and reads (found in the firmware ELF).
inline constexpr const char* kSymSchedConfig = "armvcpu_sched_config";
inline constexpr const char* kSymSwitchLog = "armvcpu_switch_log";
inline constexpr const char* kSymCurrentSlot = "armvcpu_current_slot";

// What the host says about placement, before the guest starts. The image's
// default (kDefaultSchedConfig) lets every vCPU run anywhere, favouring
// none, with the default slice.
struct SchedConfig {
    std::uint32_t slice_us;  // 0: kDefaultSliceUs
    std::uint32_t reserved;
    std::uint8_t phys_cpu_set[kMaxSlots];    // bit p: may run on physical CPU p; 0: any
    std::uint8_t favor_phys_cpu[kMaxSlots];  // preferred CPU, or kNoFavor (0xff)
};
static_assert(std::is_trivially_copyable_v<SchedConfig>);
static_assert(offsetof(SchedConfig, slice_us) == 0);
static_assert(offsetof(SchedConfig, phys_cpu_set) == 8);
static_assert(offsetof(SchedConfig, favor_phys_cpu) == 16);
static_assert(sizeof(SchedConfig) == 24);

inline constexpr std::uint32_t kDefaultSliceUs = 4000;
inline constexpr SchedConfig kDefaultSchedConfig{
    0, 0, {}, {kNoFavor, kNoFavor, kNoFavor, kNoFavor, kNoFavor, kNoFavor, kNoFavor, kNoFavor}};

enum class PlaceError : std::uint8_t { None = 0, NoCpuInSet };

// Places `slots` vCPUs on `cpus` physical CPUs: each on its favoured CPU
// when that is in its set, otherwise on the CPU of its set with the fewest
// vCPUs so far (the lowest-numbered of equals). With every set "any", no
// favour and slots <= cpus, slot s lands on CPU s, as without time sharing.
constexpr PlaceError place_vcpus(const SchedConfig& cfg, unsigned slots, unsigned cpus,
                                 std::uint8_t* where) {
    unsigned load[kMaxPhysCpus] = {};
    const std::uint32_t all = cpus >= 8 ? 0xffu : (1u << cpus) - 1;
    for (unsigned s = 0; s < slots && s < kMaxSlots; ++s) {
        const std::uint32_t set = cfg.phys_cpu_set[s] == 0 ? all : (cfg.phys_cpu_set[s] & all);
        if (set == 0) return PlaceError::NoCpuInSet;
        const std::uint8_t favor = cfg.favor_phys_cpu[s];
        unsigned best = kMaxPhysCpus;
        if (favor < cpus && (set & (1u << favor)) != 0) {
            best = favor;
        } else {
            for (unsigned p = 0; p < cpus; ++p) {
                if ((set & (1u << p)) == 0) continue;
                if (best == kMaxPhysCpus || load[p] < load[best]) best = p;
            }
        }
        where[s] = static_cast<std::uint8_t>(best);
        ++load[best];
    }
    return PlaceError::None;
}

// True when the placement needs the scheduler: some CPU runs a vCPU other
// than "its own" (slot s on CPU s) or more than one.
constexpr bool time_shared(const std::uint8_t* where, unsigned slots) {
    for (unsigned s = 0; s < slots; ++s) {
        if (where[s] != s) return true;
    }
    return false;
}

// The seeds' vCPU states as the scheduler sees a slot (vcpu.hpp's VCpuState
// names the same states for the vCPU object): Free has no vCPU to run (not
// started, or off), Ready could run, Running runs, Blocked halted (WFI,
// CPU_SUSPEND) until an event.
enum class SlotState : std::uint8_t { Unused = 0, Free, Ready, Running, Blocked };

// Round-robin: the first runnable slot placed on `cpu` after `current` in
// slot order, wrapping around, `current` itself last; -1 when none is.
// `runnable(slot)` decides for every other slot (its state and events).
template <class Runnable>
constexpr int pick_next(const std::uint8_t* where, unsigned slots, unsigned cpu, unsigned current,
                        Runnable&& runnable) {
    for (unsigned k = 1; k <= slots; ++k) {
        const unsigned s = (current + k) % slots;
        if (where[s] != cpu) continue;
        if (runnable(s)) return static_cast<int>(s);
    }
    return -1;
}

enum class SwitchReason : std::uint8_t {
    Slice = 0,    // its time slice ended (the EL2 physical timer)
    Blocked = 1,  // it halted (WFI, CPU_SUSPEND)
    Off = 2,      // it has no vCPU to run (CPU_OFF, its VM stopped, not started)
    Wake = 3,     // another vCPU on the CPU woke (an IPI, an interrupt, its timer)
    Yield = 4,    // it waited in WFE (a spinlock whose holder may be descheduled)
};

constexpr const char* switch_reason_name(SwitchReason r) {
    switch (r) {
        case SwitchReason::Slice: return "slice";
        case SwitchReason::Blocked: return "blocked";
        case SwitchReason::Off: return "off";
        case SwitchReason::Wake: return "wake";
        case SwitchReason::Yield: return "yield";
    }
    return nullptr;
}

// One world switch as an exit-log entry (host_interface.hpp's ExitLog):
// physical CPU `cpu` took vCPU slot `from` (VM from_vm, vCPU from_vcpu) off,
// after `ran` counter ticks on it, and put slot `to` (VM to_vm, vCPU to_vcpu)
// on at counter time `time`, for `why`. It goes into `from`'s ring:
//   time   when `to` went on the CPU (CNTPCT_EL0)
//   arg    [55:0] ticks `from` had run, [63:56] the physical CPU
//   esr    [7:0] `to`'s slot, [15:8] its VM id, [23:16] its vCPU index,
//          [31:24] the SwitchReason
//   kind kExitLogWorldSwitch, vm_id/vcpu_id `from`'s, handler Scheduler.
inline constexpr std::uint64_t kSwitchRanMask = (1ull << 56) - 1;

struct SwitchSide {
    unsigned slot, vm, vcpu;
};

constexpr ExitLogEntry switch_log_entry(std::uint64_t time, std::uint64_t ran, unsigned cpu,
                                        SwitchSide from, SwitchSide to, SwitchReason why) {
    ExitLogEntry e{};
    e.time = time;
    // A vCPU that ran 2^56 ticks (36 years at 62.5 MHz) saturates.
    e.arg = (ran > kSwitchRanMask ? kSwitchRanMask : ran) | (std::uint64_t{cpu & 0xff} << 56);
    e.esr = (to.slot & 0xff) | ((to.vm & 0xff) << 8) | ((to.vcpu & 0xff) << 16) |
            (static_cast<std::uint32_t>(why) << 24);
    e.kind = kExitLogWorldSwitch;
    e.vm_id = static_cast<std::uint8_t>(from.vm);
    e.vcpu_id = static_cast<std::uint8_t>(from.vcpu);
    e.handler = ExitLogHandler::Scheduler;
    return e;
}

// The scheduler's counters the host reads (the switches themselves are in
// the exit log). With the firmware counting its own instructions
// (kSelfTestCountEl2), it also adds up those of each world switch it can
// measure (from the outgoing vCPU's save to the incoming one's return into
// its thread) and of each lazy FP/SIMD/SVE hand-over.
struct SwitchLog {
    std::uint64_t count;              // world switches ever made (atomic)
    std::uint64_t counter_frequency;  // CNTFRQ_EL0, to turn ticks into seconds
    std::uint64_t measured;           // switches whose instructions were counted
    std::uint64_t instructions;       // EL2 instructions of those switches
    std::uint64_t fp_switches;        // lazy FP hand-overs counted
    std::uint64_t fp_instructions;    // EL2 instructions of those
};
static_assert(offsetof(SwitchLog, measured) == 16);
static_assert(sizeof(SwitchLog) == 48);

}  // namespace armvcpu::sched
