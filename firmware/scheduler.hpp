// The EL2 scheduler: vCPUs time-share physical CPUs when the host placed
// more than one on a CPU (armvcpu_sched_config, the core's place_vcpus).
//
// Each vCPU slot gets its own EL2 thread (a stack and saved callee-saved
// registers) running the ordinary run loop (main.cpp's wait_for_vcpu), so
// the run loop needs no knowledge of sharing: a thread gives up its CPU at
// three points only, all inside calls the run loop already makes:
//   - entering the guest (FwHal::enter_guest -> before_entry): its slice
//     ended (the EL2 physical timer, CNTHP) or a halted vCPU on the CPU woke;
//   - a halted vCPU's wait (power.hpp's wait_for_wake_up -> idle);
//   - a vCPU-less slot's wait for a start request (take_start_request -> idle).
// The world switch between two threads saves the outgoing vCPU's state and
// loads the incoming one's (world_switch.hpp's order); FP/SIMD/SVE follow
// lazily on the first trapped use (after_exit).
//
// A CPU that would wait idle pulls a Ready vCPU of another CPU first (load
// balancing, within the vCPU's phys_cpu_set): threads move between CPUs,
// and g_where follows them.
//
// Without sharing (every slot s alone on CPU s) none of this runs: every
// hook is one load of g_sharing.
#pragma once

#include <cstdint>

#include "armvcpu/scheduler.hpp"
#include "armvcpu/trap_frame.hpp"
#include "host_link.hpp"

namespace fw::sched {

extern bool g_sharing;                  // set by CPU 0 before any vCPU runs
extern std::uint8_t g_where[kMaxCpus];  // each slot's physical CPU (now: pulls move it)

[[gnu::always_inline]] inline bool sharing() {
    return __atomic_load_n(&g_sharing, __ATOMIC_RELAXED);
}

// The physical CPU vCPU slot `slot` runs on (kicks, PPIs, SPI routing).
[[gnu::always_inline]] inline unsigned phys_cpu(unsigned slot) {
    return sharing() ? g_where[slot] : slot;
}

// CPU 0, once the VMs exist: places their vCPUs on `cpus` CPUs; true when
// some share a CPU. Powers off when the host's sets name no existing CPU.
bool place(unsigned cpus);

// Each slot's EL2 thread stack: a guard page (at thread_guard_page(slot),
// left unmapped by the EL2 MMU), then the stack.
inline constexpr std::uint64_t kThreadGuard = 4096;
inline constexpr std::uint64_t kThreadStack = 32 * 1024;
std::uint64_t thread_guard_page(unsigned slot);

// Every CPU after its bring-up (CPU 0's call publishes place()'s answer to
// the others): returns at once without sharing, otherwise runs the threads
// of the slots placed on this CPU, each in body(slot), and never returns.
using ThreadBody = void (*)(unsigned slot);
void run_cpu(unsigned cpu, ThreadBody body);

// A slot with nothing to do (`blocked`: its vCPU halted; otherwise it has no
// vCPU): runs another runnable slot of this CPU, or waits for an interrupt
// with the EL2 timer set to the earliest timer of a halted, descheduled
// vCPU. Returns true when the caller should look again at once (it was
// switched away and picked again because it had become runnable, or its VM
// stopped).
bool idle(unsigned slot, bool blocked);

// The hooks in FwHal::enter_guest (sharing only): before_entry may switch
// to another vCPU and back; after_exit returns true when the exit was the
// scheduler's own (a lazy FP trap, the slice timer, a WFE yield) and the
// guest is to be entered again without the run loop seeing it.
void before_entry();
bool after_exit(std::uint64_t type, armvcpu::TrapFrame& frame);

}  // namespace fw::sched
