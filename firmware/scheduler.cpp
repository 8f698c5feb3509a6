// The EL2 scheduler (see scheduler.hpp): EL2 threads per vCPU slot, the
// world switch between them, lazy FP/SIMD/SVE, the slice timer, and the
// switches' entries in the exit log.
#include "scheduler.hpp"

#include <new>

#include "armvcpu/guest_context.hpp"
#include "armvcpu/scheduler.hpp"
#include "armvcpu/vgic_v2.hpp"
#include "armvcpu/world_switch.hpp"
#include "el2_fault.hpp"
#include "exit_log.hpp"
#include "gic.hpp"
#include "gic_v2.hpp"
#include "power.hpp"
#include "run_loop.hpp"
#include "sgi.hpp"
#include "spinlock.hpp"
#include "sysreg.hpp"
#include "uart.hpp"
#include "vgic_glue.hpp"
#include "vm.hpp"

namespace as = armvcpu::sched;

namespace fw::sched {
namespace {

struct ThreadContext {
    std::uint64_t x19_x30[12];
    std::uint64_t sp;
};

// FP/SIMD or SVE registers of one vCPU (layout: sched_switch.S). With SVE,
// 32 Z and 16 P registers and FFR at the largest vector length, 2048 bits.
struct alignas(16) FpState {
    std::uint64_t fpsr, fpcr, zcr_el1, reserved;
    std::uint8_t regs[32 * 256 + 17 * 32];
};

}  // namespace
}  // namespace fw::sched

extern "C" {
// The host's placement request, written before the firmware boots (so in
// .data: boot.S clears .bss).
[[gnu::used, gnu::section(".data")]] armvcpu::sched::SchedConfig armvcpu_sched_config =
    armvcpu::sched::kDefaultSchedConfig;
[[gnu::used]] armvcpu::sched::SwitchLog armvcpu_switch_log;
// The slot each physical CPU runs now: the vectors' fast path reads its flag
// by it, and a host that stops a CPU (the gdb transport) finds its record.
[[gnu::used, gnu::section(".data")]] std::uint8_t armvcpu_current_slot[fw::kMaxCpus] = {0, 1, 2, 3,
                                                                                        4, 5, 6, 7};

void armvcpu_sched_switch(fw::sched::ThreadContext* from, const fw::sched::ThreadContext* to);
void armvcpu_sched_thread_start();
void armvcpu_fpsimd_save(fw::sched::FpState* s);
void armvcpu_fpsimd_load(const fw::sched::FpState* s);
void armvcpu_sve_save(fw::sched::FpState* s);
void armvcpu_sve_load(const fw::sched::FpState* s);
}

namespace fw {
extern bool counting_el2;  // host_link.cpp: kSelfTestCountEl2 is on (PMU counter 0)
}

namespace fw::sched {

bool g_sharing = false;
std::uint8_t g_where[kMaxCpus];

namespace {

using as::SlotState;
using as::SwitchReason;

// The timer PPIs whose physical state belongs to the vCPU that runs: their
// enables follow its emulated GIC, and a hardware-linked one stays active
// until its guest deactivates it.
constexpr std::uint32_t kGuestPpis =
    (1u << armvcpu::vgic::kVirtualTimerPpi) | (1u << armvcpu::vgic::kPhysicalTimerPpi);
constexpr std::uint32_t kHypTimerPpi = 26;  // CNTHP, the slice timer
constexpr std::uint64_t kEcWfx = 0x01, kEcFp = 0x07, kEcSve = 0x19;
constexpr std::uint64_t kHcrTwi = 1ull << 13, kHcrTwe = 1ull << 14;
constexpr std::uint64_t kCptrTfp = 1u << 10, kCptrTz = 1u << 8;
constexpr std::uint64_t kTimerEnable = 1, kTimerIstatus = 4;

// This CPU's SGI and PPI enable and active registers on QEMU virt: its
// redistributor's SGI_base on a GICv3 (gic.cpp's layout), the distributor's
// first registers, banked per CPU at the same offsets, on a GICv2.
volatile std::uint32_t& ppi_reg(unsigned cpu, std::uintptr_t offset) {
    const std::uintptr_t base =
        gic::v2() ? armvcpu::vgic2::kGicdBase : 0x080A0000 + cpu * 0x20000 + 0x10000;
    return *reinterpret_cast<volatile std::uint32_t*>(base + offset);
}
constexpr std::uintptr_t kIsenabler0 = 0x100, kIcenabler0 = 0x180, kIsactiver0 = 0x300,
                         kIcactiver0 = 0x380;

// The PMU state a guest owns (MDCR_EL2.HPMN = PMCR_EL0.N gives it every
// counter, host_link.cpp's mdcr_el2_bits): configuration, enables and
// counts (Arm ARM D13, "The Performance Monitors Extension").
struct PmuState {
    std::uint64_t pmcr, cntenset, intenset, ovsset, selr, userenr, ccntr, ccfiltr;
    std::uint64_t evcntr[31], evtyper[31];
};

struct Slot {
    ThreadContext ctx;
    SlotState state;
    bool bound;  // sys holds a vCPU's EL1 context (it was bound when switched out)
    armvcpu::GuestSystemRegisters sys;
    armvcpu::GuestWorld world;
    armvcpu::GichWorld gich;  // on a GICv2, instead of world's ICH_* registers
    PmuState pmu;
    std::uint64_t mdcr_el2;
    std::uint32_t ppi_enabled, ppi_active;
    std::uint64_t deadline;  // of its timers, while descheduled
    std::uint64_t since;     // CNTPCT when it was switched in
    // Its thread's context is stored in ctx and no CPU runs it (atomic):
    // only then may another CPU pull it (a Ready slot is marked Ready by
    // its own thread before that thread's registers are stored).
    bool saved;
};

struct Cpu {
    unsigned current;
    armvcpu::LazyFpOwner fp;
    std::uint64_t cptr;   // CPTR_EL2 as bring-up left it (FP untrapped)
    int last_bound = -1;  // the last slot whose vCPU context this CPU held
    bool slice_over;
    bool yielded;                  // the vCPU waited in WFE: another Ready one may run
    std::uint64_t switch_started;  // PMU count when the current switch began
    int prev = -1;                 // the slot whose context the thread switched to marks saved
    bool idle;                     // waiting for an interrupt with nothing to run (atomic)
};

Slot g_slots[kMaxCpus];
Cpu g_cpus[kMaxCpus];
FpState g_fp[kMaxCpus];
// Each thread's stack, below it a guard page the EL2 MMU leaves unmapped
// (el2_mmu.cpp): an overflow faults instead of running into the next
// thread's stack.
alignas(4096) std::uint8_t g_stacks[kMaxCpus][kThreadGuard + kThreadStack];
unsigned g_slot_count = 0;
// Who runs which slot: picking a slot and claiming it (state Running), and
// pulling one to another CPU (g_where), happen under this lock.
std::uint32_t g_run_lock = 0;
ThreadBody g_body = nullptr;
std::uint64_t g_slice_ticks = 0;
armvcpu::WorldFeatures g_features;
unsigned g_pmu_counters = 0;  // PMCR_EL0.N with PMUv3, else 0
bool g_pmu = false;
std::uint32_t g_placed = 0;  // atomic: place() has run

struct WorldHal {
    std::uint64_t read_world(armvcpu::WorldReg r) {
        using armvcpu::WorldReg;
        // Asynchronous tag-check faults reach TFSR*_EL1 only after a DSB.
        if (r == WorldReg::tfsr_el1 || r == WorldReg::tfsre0_el1) asm volatile("dsb nsh");
        switch (r) {
#define ARMVCPU_X(field, name) \
    case WorldReg::field: return ARMVCPU_READ_SYSREG(name);
            ARMVCPU_WORLD_SYSREGS(ARMVCPU_X)
#undef ARMVCPU_X
            case WorldReg::kCount: break;
        }
        return 0;
    }
    void write_world(armvcpu::WorldReg r, std::uint64_t v) {
        using armvcpu::WorldReg;
        switch (r) {
#define ARMVCPU_X(field, name) \
    case WorldReg::field: ARMVCPU_WRITE_SYSREG(name, v); return;
            ARMVCPU_WORLD_SYSREGS(ARMVCPU_X)
#undef ARMVCPU_X
            case WorldReg::kCount: break;
        }
    }
};

// GICH, the GICv2 virtual interface control (the vCPU's part of it on a
// GICv2, GichWorld).
struct GichHal {
    std::uint32_t read_gich(std::uint32_t offset) {
        return *reinterpret_cast<volatile std::uint32_t*>(armvcpu::vgic2::kGichBase + offset);
    }
    void write_gich(std::uint32_t offset, std::uint32_t v) {
        *reinterpret_cast<volatile std::uint32_t*>(armvcpu::vgic2::kGichBase + offset) = v;
    }
};

// The virtual GIC interface a vCPU owns, whichever GIC the machine has.
void save_gic(Slot& s) {
    if (gic::v2()) {
        GichHal h;
        s.gich.save(h, gicv2::num_list_registers());
    }
}
void restore_gic(const Slot& s) {
    if (gic::v2()) {
        GichHal h;
        s.gich.restore(h, gicv2::num_list_registers());
    }
}

// The guest's PMU, while it owns it (not while EL2 counts its own
// instructions: then every counter is EL2's). Counting stops first, so a
// descheduled vCPU's counts stay as they were when it left.
void save_pmu(PmuState& p) {
    if (!g_pmu || counting_el2) return;
    p.cntenset = ARMVCPU_READ_SYSREG(pmcntenset_el0);
    ARMVCPU_WRITE_SYSREG(pmcntenclr_el0, ~0ull);
    isb();
    p.selr = ARMVCPU_READ_SYSREG(pmselr_el0);
    p.pmcr = ARMVCPU_READ_SYSREG(pmcr_el0);
    p.intenset = ARMVCPU_READ_SYSREG(pmintenset_el1);
    p.ovsset = ARMVCPU_READ_SYSREG(pmovsset_el0);
    p.userenr = ARMVCPU_READ_SYSREG(pmuserenr_el0);
    p.ccntr = ARMVCPU_READ_SYSREG(pmccntr_el0);
    p.ccfiltr = ARMVCPU_READ_SYSREG(pmccfiltr_el0);
    for (unsigned n = 0; n < g_pmu_counters; ++n) {
        ARMVCPU_WRITE_SYSREG(pmselr_el0, n);  // PMXEV* reach counter n
        isb();
        p.evcntr[n] = ARMVCPU_READ_SYSREG(pmxevcntr_el0);
        p.evtyper[n] = ARMVCPU_READ_SYSREG(pmxevtyper_el0);
    }
}

// Counters stay disabled until all is back; PMCNTENSET and PMCR_EL0 last.
void restore_pmu(const PmuState& p) {
    if (!g_pmu || counting_el2) return;
    ARMVCPU_WRITE_SYSREG(pmcntenclr_el0, ~0ull);
    ARMVCPU_WRITE_SYSREG(pmintenclr_el1, ~0ull);
    ARMVCPU_WRITE_SYSREG(pmovsclr_el0, ~0ull);
    isb();
    for (unsigned n = 0; n < g_pmu_counters; ++n) {
        ARMVCPU_WRITE_SYSREG(pmselr_el0, n);
        isb();
        ARMVCPU_WRITE_SYSREG(pmxevtyper_el0, p.evtyper[n]);
        ARMVCPU_WRITE_SYSREG(pmxevcntr_el0, p.evcntr[n]);
    }
    ARMVCPU_WRITE_SYSREG(pmccfiltr_el0, p.ccfiltr);
    ARMVCPU_WRITE_SYSREG(pmccntr_el0, p.ccntr);
    ARMVCPU_WRITE_SYSREG(pmuserenr_el0, p.userenr);
    ARMVCPU_WRITE_SYSREG(pmovsset_el0, p.ovsset);
    ARMVCPU_WRITE_SYSREG(pmintenset_el1, p.intenset);
    ARMVCPU_WRITE_SYSREG(pmselr_el0, p.selr);
    // P [1] and C [2] reset the counters when written as 1 (they read as 0).
    ARMVCPU_WRITE_SYSREG(pmcr_el0, p.pmcr & ~0x6ull);
    ARMVCPU_WRITE_SYSREG(pmcntenset_el0, p.cntenset);
}

unsigned this_cpu() { return static_cast<unsigned>(ARMVCPU_READ_SYSREG(mpidr_el1) & 0xff); }
std::uint64_t el2_count() { return counting_el2 ? ARMVCPU_READ_SYSREG(pmevcntr0_el0) : 0; }

std::uint64_t now() {
    isb();
    return ARMVCPU_READ_SYSREG(cntpct_el0);
}

Vcpu& vcpu_of(unsigned slot) {
    return *std::launder(reinterpret_cast<Vcpu*>(g_vcpu_storage[slot]));
}
// A thread whose vCPU is bound (its EL1 context on the CPU); BSS makes a
// never-built vCPU Invalid.
bool vcpu_bound(unsigned slot) {
    const armvcpu::VCpuState s = vcpu_of(slot).state();
    return s == armvcpu::VCpuState::Ready || s == armvcpu::VCpuState::Running ||
           s == armvcpu::VCpuState::Blocked;
}

// A saved list register holding a pending interrupt: a wake-up event the
// vCPU would see the moment it is back (gic::virtual_pending, saved).
bool saved_lr_pending(const Slot& s) {
    if (gic::v2()) return s.gich.pending(gicv2::num_list_registers());
    if (!g_features.gicv3) return false;
    for (unsigned n = 0; n < g_features.list_regs; ++n) {
        const std::uint64_t lr =
            s.world.regs[static_cast<unsigned>(armvcpu::WorldReg::ich_lr0_el2) + n];
        if (((lr >> 62) & 1) != 0) return true;  // State[63:62]: pending (or pending+active)
    }
    return false;
}

// A halted, descheduled vCPU that has a wake-up event.
bool blocked_can_run(unsigned s) {
    const Vm* vm = g_cpu_vm[s];
    return sgis_pending(s) || vgic_dirty(s) || (vm != nullptr && vm_stopped(*vm)) ||
           now() >= g_slots[s].deadline || saved_lr_pending(g_slots[s]);
}

bool start_waiting(unsigned s) {
    return __atomic_load_n(&g_start[s].pending, __ATOMIC_ACQUIRE) != 0;
}

// A descheduled slot that would make progress if it ran.
bool runnable(unsigned s) {
    switch (g_slots[s].state) {
        case SlotState::Ready: return true;
        case SlotState::Blocked: return blocked_can_run(s);
        case SlotState::Free: return start_waiting(s);
        default: return false;
    }
}
// ... and one that was waiting for an event and now has it (worth cutting
// the running vCPU's slice short for).
bool woke(unsigned s) {
    return (g_slots[s].state == SlotState::Blocked && blocked_can_run(s)) ||
           (g_slots[s].state == SlotState::Free && start_waiting(s));
}

// The EL2 physical timer: the slice's end (when `slice` and another slot
// shares the CPU) or the earliest timer of a halted, descheduled vCPU.
void program_timer(unsigned cpu, bool slice) {
    std::uint64_t at = armvcpu::kNoDeadline;
    const std::uint64_t t = now();
    for (unsigned s = 0; s < g_slot_count; ++s) {
        if (g_where[s] != cpu || s == g_cpus[cpu].current) continue;
        if (slice && g_slots[s].state == SlotState::Ready && t + g_slice_ticks < at) {
            at = t + g_slice_ticks;
        }
        if (g_slots[s].state == SlotState::Blocked && g_slots[s].deadline < at) {
            at = g_slots[s].deadline;
        }
    }
    if (at == armvcpu::kNoDeadline) {
        ARMVCPU_WRITE_SYSREG(cnthp_ctl_el2, 0);
        return;
    }
    ARMVCPU_WRITE_SYSREG(cnthp_cval_el2, at);
    ARMVCPU_WRITE_SYSREG(cnthp_ctl_el2, kTimerEnable);
}

as::SwitchSide side(unsigned slot) {
    const Vm* vm = g_cpu_vm[slot];
    return {slot, vm != nullptr ? vm->id : 0, vm != nullptr ? slot - vm->first_cpu : slot};
}

// Into the exit log, in `from`'s ring (its thread runs this, the ring's only
// writer), whether or not the host reads the exits: hv.world_switches()
// reads the switches from there either way.
void log_switch(unsigned cpu, unsigned from, unsigned to, SwitchReason why, std::uint64_t t) {
    __atomic_fetch_add(&armvcpu_switch_log.count, 1, __ATOMIC_RELAXED);
    append_exit_log(armvcpu_exit_log[from], as::switch_log_entry(t, t - g_slots[from].since, cpu,
                                                                 side(from), side(to), why));
}

// A thread just got its CPU: the slot that CPU switched away from has its
// context stored now, so another CPU may pull it.
void offer(unsigned cpu, unsigned s);

void mark_previous_saved() {
    const unsigned cpu = this_cpu();
    Cpu& c = g_cpus[cpu];
    const int prev = c.prev;
    c.prev = -1;
    if (prev < 0) return;
    __atomic_store_n(&g_slots[prev].saved, true, __ATOMIC_RELEASE);
    // It waits now, Ready: an idle CPU may take it.
    if (g_slots[prev].state == SlotState::Ready) offer(cpu, static_cast<unsigned>(prev));
}

// With g_run_lock held: slot `s` runs next on this CPU.
void claim(unsigned s) {
    g_slots[s].state = SlotState::Running;
    __atomic_store_n(&g_slots[s].saved, false, __ATOMIC_RELAXED);
}

bool allowed(unsigned s, unsigned cpu) {
    const std::uint8_t set = armvcpu_sched_config.phys_cpu_set[s];
    return set == 0 || ((set >> cpu) & 1) != 0;
}

// Load balancing, with g_run_lock held: an idle CPU pulls a Ready vCPU of
// another CPU that its phys_cpu_set allows here. Not one whose FP/SIMD/SVE
// registers its CPU still holds (lazily: they can be saved only there).
int pull(unsigned cpu) {
    for (unsigned s = 0; s < g_slot_count; ++s) {
        const unsigned from = g_where[s];
        if (from == cpu || g_slots[s].state != SlotState::Ready || !allowed(s, cpu)) continue;
        // A vCPU, not a thread still to look for its start request.
        if (!vcpu_bound(s)) continue;
        if (!__atomic_load_n(&g_slots[s].saved, __ATOMIC_ACQUIRE)) continue;
        if (g_cpus[from].fp.owner() == static_cast<int>(s)) continue;
        __atomic_store_n(&g_where[s], static_cast<std::uint8_t>(cpu), __ATOMIC_RELAXED);
        // Back on its old CPU one day, it finds that CPU's TLB flushed.
        if (g_cpus[from].last_bound == static_cast<int>(s)) g_cpus[from].last_bound = -1;
        return static_cast<int>(s);
    }
    return -1;
}

// A slot of this CPU is Ready and waits: an idle CPU its set allows may
// pull it (a kick wakes that CPU's wait; the kick names one of its slots).
void offer(unsigned cpu, unsigned s) {
    for (unsigned p = 0; p < kMaxCpus; ++p) {
        if (p == cpu || !allowed(s, p) || !__atomic_load_n(&g_cpus[p].idle, __ATOMIC_ACQUIRE)) {
            continue;
        }
        for (unsigned t = 0; t < g_slot_count; ++t) {
            if (g_where[t] == p) {
                gic::kick(t);
                return;
            }
        }
    }
}

// The world switch: everything vCPU `from` owns on this CPU goes into its
// slot, `to`'s comes back (world_switch.hpp's order), then the stacks.
void switch_to(unsigned cpu, unsigned from, unsigned to, SwitchReason why) {
    FwHal& hal = g_hal[cpu];
    WorldHal whal;
    Slot& out = g_slots[from];
    Slot& in = g_slots[to];
    Cpu& c = g_cpus[cpu];
    c.switch_started = el2_count();

    out.bound = vcpu_bound(from);
    if (out.bound) {
        out.sys.store(hal);
        out.deadline = armvcpu::timer_deadline(out.sys);
        // Its timers stop asserting their PPIs for the next vCPU.
        ARMVCPU_WRITE_SYSREG(cntv_ctl_el0, 0);
        ARMVCPU_WRITE_SYSREG(cntp_ctl_el0, 0);
        c.last_bound = static_cast<int>(from);
    } else {
        out.deadline = armvcpu::kNoDeadline;
    }
    out.world.save(whal, g_features);
    save_gic(out);
    save_pmu(out.pmu);
    out.mdcr_el2 = ARMVCPU_READ_SYSREG(mdcr_el2);
    out.ppi_enabled = ppi_reg(cpu, kIsenabler0) & kGuestPpis;
    out.ppi_active = ppi_reg(cpu, kIsactiver0) & kGuestPpis;
    ppi_reg(cpu, kIcactiver0) = out.ppi_active;

    in.world.restore(whal, g_features);
    restore_gic(in);
    restore_pmu(in.pmu);
    ppi_reg(cpu, kIcenabler0) = kGuestPpis & ~in.ppi_enabled;
    ppi_reg(cpu, kIsenabler0) = in.ppi_enabled;
    if (in.ppi_active != 0) ppi_reg(cpu, kIsactiver0) = in.ppi_active;
    ARMVCPU_WRITE_SYSREG(mdcr_el2, in.mdcr_el2);
    if (in.bound) {
        in.sys.restore(hal);
        // Another vCPU of the same VM (same VMID) may have left stage-1
        // entries its guest's local TLB maintenance never reached here.
        if (c.last_bound != static_cast<int>(to)) {
            asm volatile("tlbi vmalle1\n dsb nsh" ::: "memory");
        }
        c.last_bound = static_cast<int>(to);
    }
    ARMVCPU_WRITE_SYSREG(cptr_el2, c.fp.trap_for(static_cast<int>(to))
                                       ? c.cptr | kCptrTfp | (g_features.sve ? kCptrTz : 0)
                                       : c.cptr);
    isb();

    const std::uint64_t t = now();
    log_switch(cpu, from, to, why, t);
    in.since = t;
    in.state = SlotState::Running;
    c.current = to;
    armvcpu_current_slot[cpu] = static_cast<std::uint8_t>(to);
    program_timer(cpu, true);
    c.prev = static_cast<int>(from);
    armvcpu_sched_switch(&out.ctx, &in.ctx);
    // Back on `from`'s stack (maybe on another CPU, which pulled it):
    // someone switched to it; that switch ends here.
    mark_previous_saved();
    if (counting_el2) {
        armvcpu_switch_log.instructions += el2_count() - g_cpus[this_cpu()].switch_started;
        ++armvcpu_switch_log.measured;
    }
}

// A new thread's first code (armvcpu_sched_thread_start).
void thread_main(unsigned slot) {
    mark_previous_saved();
    // The stack self-test, on a thread's stack when CPUs are time-shared.
    if ((armvcpu_guest_config[0].selftest & armvcpu::kSelfTestStackOverflow) != 0) {
        overflow_el2_stack();
    }
    g_body(slot);
}

// The guest used FP/SIMD/SVE for the first time since it was switched in:
// the owner's registers out, its own in.
void take_fp(unsigned cpu) {
    const std::uint64_t started = el2_count();
    Cpu& c = g_cpus[cpu];
    ARMVCPU_WRITE_SYSREG(cptr_el2, c.cptr);
    isb();
    const int previous = c.fp.take(static_cast<int>(c.current));
    if (g_features.sve) {
        if (previous != armvcpu::LazyFpOwner::kNone) armvcpu_sve_save(&g_fp[previous]);
        armvcpu_sve_load(&g_fp[c.current]);
    } else {
        if (previous != armvcpu::LazyFpOwner::kNone) armvcpu_fpsimd_save(&g_fp[previous]);
        armvcpu_fpsimd_load(&g_fp[c.current]);
    }
    if (counting_el2) {
        armvcpu_switch_log.fp_instructions += el2_count() - started;
        ++armvcpu_switch_log.fp_switches;
    }
}

// Physical interrupts the scheduler itself consumes while no guest runs: the
// slice timer (turned off, so its level drops) and kicks (their meaning is
// in the slots' flags).
void consume_own_interrupts() {
    const std::uint64_t ctl = ARMVCPU_READ_SYSREG(cnthp_ctl_el2);
    if ((ctl & (kTimerEnable | kTimerIstatus)) == (kTimerEnable | kTimerIstatus)) {
        ARMVCPU_WRITE_SYSREG(cnthp_ctl_el2, 0);
    }
    if (gic::v2()) {
        // GICC_HPPIR (INTID [9:0]); acknowledge() deactivates an SGI itself.
        const std::uint32_t hppi =
            *reinterpret_cast<volatile std::uint32_t*>(armvcpu::vgic2::kGiccBase + 0x18) & 0x3ff;
        if (hppi == gic::kKickSgi) gic::acknowledge();
        return;
    }
    const auto hppi = static_cast<std::uint32_t>(ARMVCPU_READ_SYSREG(icc_hppir1_el1) & 0xffffff);
    if (hppi == gic::kKickSgi) {
        const std::uint32_t intid = gic::acknowledge();
        if (armvcpu::vgic::is_valid_intid(intid)) gic::deactivate(intid);
    }
}

}  // namespace

bool place(unsigned cpus) {
    unsigned slots = 0;
    for (unsigned v = 0; v < g_num_vms; ++v) slots = g_vms[v].first_cpu + g_vms[v].num_vcpus;
    g_slot_count = slots;
    const as::PlaceError err = as::place_vcpus(armvcpu_sched_config, slots, cpus, g_where);
    if (err != as::PlaceError::None) {
        uart::put_str("armvcpu: FATAL: a vCPU's phys_cpu_set names no CPU of this machine\n");
        power_off();
    }
    g_sharing = as::time_shared(g_where, slots);
    if (g_sharing) {
        const std::uint32_t us = armvcpu_sched_config.slice_us != 0 ? armvcpu_sched_config.slice_us
                                                                    : as::kDefaultSliceUs;
        const std::uint64_t freq = ARMVCPU_READ_SYSREG(cntfrq_el0);
        armvcpu_switch_log.counter_frequency = freq;
        // ID_AA64DFR0_EL1.PMUVer [11:8]: 0 none, 0xf IMPLEMENTATION DEFINED.
        const std::uint64_t pmuver = (ARMVCPU_READ_SYSREG(id_aa64dfr0_el1) >> 8) & 0xf;
        g_pmu = pmuver != 0 && pmuver != 0xf;
        g_pmu_counters = g_pmu ? (ARMVCPU_READ_SYSREG(pmcr_el0) >> 11) & 0x1f : 0;
        g_slice_ticks = freq * us / 1000000;
        // ICH_VTR_EL2 UNDEFs without the GIC system registers (a GICv2).
        const std::uint64_t pfr0 = ARMVCPU_READ_SYSREG(id_aa64pfr0_el1);
        g_features = armvcpu::world_features(
            pfr0, ARMVCPU_READ_SYSREG(id_aa64pfr1_el1), ARMVCPU_READ_SYSREG(id_aa64isar1_el1),
            ARMVCPU_READ_SYSREG(S3_0_C0_C6_2),
            ((pfr0 >> 24) & 0xf) != 0 ? ARMVCPU_READ_SYSREG(ich_vtr_el2) : 0);
        if (!quiet()) {
            uart::put_str("armvcpu: time-sharing:");
            for (unsigned s = 0; s < slots; ++s) {
                uart::put_str(" vCPU slot ");
                uart::put_dec(s);
                uart::put_str(" on CPU ");
                uart::put_dec(g_where[s]);
                uart::put_str(s + 1 < slots ? "," : "\n");
            }
        }
    }
    return g_sharing;
}

void run_cpu(unsigned cpu, ThreadBody body) {
    if (cpu == 0) {
        __atomic_store_n(&g_placed, 1, __ATOMIC_RELEASE);
        send_event();
    }
    while (__atomic_load_n(&g_placed, __ATOMIC_ACQUIRE) == 0) asm volatile("wfe");
    if (!sharing()) return;
    Cpu& c = g_cpus[cpu];
    c.cptr = ARMVCPU_READ_SYSREG(cptr_el2);
    g_body = body;
    ppi_reg(cpu, kIsenabler0) = 1u << kHypTimerPpi;
    // Every slot of this CPU starts from the world bring-up left (empty list
    // registers, the timer PPIs enabled).
    WorldHal whal;
    int first = -1;
    {
        SpinLock lock(g_run_lock);  // another CPU may pull a slot once it is Ready
        for (unsigned s = 0; s < g_slot_count; ++s) {
            if (g_where[s] != cpu) continue;
            Slot& slot = g_slots[s];
            slot.world.save(whal, g_features);
            save_gic(slot);
            save_pmu(slot.pmu);
            slot.mdcr_el2 = ARMVCPU_READ_SYSREG(mdcr_el2);
            slot.ppi_enabled = ppi_reg(cpu, kIsenabler0) & kGuestPpis;
            slot.ppi_active = 0;
            slot.deadline = armvcpu::kNoDeadline;
            slot.ctx.sp = reinterpret_cast<std::uint64_t>(g_stacks[s] + sizeof(g_stacks[s]));
            slot.ctx.x19_x30[0] = s;                                              // x19
            slot.ctx.x19_x30[1] = reinterpret_cast<std::uint64_t>(&thread_main);  // x20
            slot.ctx.x19_x30[11] = reinterpret_cast<std::uint64_t>(&armvcpu_sched_thread_start);
            slot.saved = true;
            slot.state = SlotState::Ready;
            if (first < 0) first = static_cast<int>(s);
        }
        if (first >= 0) {
            c.current = static_cast<unsigned>(first);
            armvcpu_current_slot[cpu] = static_cast<std::uint8_t>(first);
            claim(static_cast<unsigned>(first));
            g_slots[first].since = now();
        }
    }
    if (first < 0) {
        for (;;) asm volatile("wfi");  // no vCPU was placed here
    }
    ARMVCPU_WRITE_SYSREG(cptr_el2, c.cptr | kCptrTfp | (g_features.sve ? kCptrTz : 0));
    isb();
    program_timer(cpu, true);  // the others are Ready: the first slice ends
    ThreadContext boot{};
    armvcpu_sched_switch(&boot, &g_slots[first].ctx);
    for (;;) asm volatile("wfe");  // never switched back to
}

std::uint64_t thread_guard_page(unsigned slot) {
    return reinterpret_cast<std::uint64_t>(g_stacks[slot]);
}

bool idle(unsigned slot, bool blocked) {
    const unsigned cpu = g_where[slot];
    Cpu& c = g_cpus[cpu];
    Slot& me = g_slots[slot];
    int next = -1;
    {
        SpinLock lock(g_run_lock);
        me.state = blocked ? SlotState::Blocked : SlotState::Free;
        next = as::pick_next(g_where, g_slot_count, cpu, slot,
                             [slot](unsigned s) { return s != slot && runnable(s); });
        if (next < 0) next = pull(cpu);
        if (next >= 0) claim(static_cast<unsigned>(next));
        __atomic_store_n(&c.idle, next < 0, __ATOMIC_RELEASE);
    }
    if (next >= 0) {
        switch_to(cpu, slot, static_cast<unsigned>(next),
                  blocked ? SwitchReason::Blocked : SwitchReason::Off);
        return true;
    }
    program_timer(cpu, false);
    asm volatile("wfi" ::: "memory");
    consume_own_interrupts();
    __atomic_store_n(&c.idle, false, __ATOMIC_RELEASE);
    me.state = SlotState::Running;
    const Vm* vm = g_cpu_vm[slot];
    return blocked && vm != nullptr && vm_stopped(*vm);
}

void before_entry() {
    const unsigned cpu = this_cpu();
    Cpu& c = g_cpus[cpu];
    const unsigned slot = c.current;
    int next = -1;
    SwitchReason why = SwitchReason::Wake;
    {
        SpinLock lock(g_run_lock);
        next = as::pick_next(g_where, g_slot_count, cpu, slot,
                             [slot](unsigned s) { return s != slot && woke(s); });
        if (next < 0 && (c.slice_over || c.yielded)) {
            next = as::pick_next(g_where, g_slot_count, cpu, slot,
                                 [slot](unsigned s) { return s != slot && runnable(s); });
            why = c.slice_over ? SwitchReason::Slice : SwitchReason::Yield;
        }
        if (next >= 0) {
            g_slots[slot].state = SlotState::Ready;
            claim(static_cast<unsigned>(next));
        }
    }
    if (c.slice_over && next < 0) program_timer(cpu, true);
    c.slice_over = false;
    c.yielded = false;
    // WFI and WFE trap while CPUs are shared (HCR_EL2.TWI/TWE, part of the
    // vCPU's context from then on): a halted vCPU is Blocked and gives its
    // CPU away instead of sleeping on it, and one spinning on a lock whose
    // holder is descheduled yields instead of burning its slice.
    const std::uint64_t hcr = ARMVCPU_READ_SYSREG(hcr_el2);
    if ((hcr & (kHcrTwi | kHcrTwe)) != (kHcrTwi | kHcrTwe)) {
        ARMVCPU_WRITE_SYSREG(hcr_el2, hcr | kHcrTwi | kHcrTwe);
    }
    if (next < 0) return;
    switch_to(cpu, slot, static_cast<unsigned>(next), why);
}

bool after_exit(std::uint64_t type, armvcpu::TrapFrame& frame) {
    const std::uint64_t kind = type & 3;
    if (kind == 0) {
        const std::uint64_t esr = ARMVCPU_READ_SYSREG(esr_el2);
        const std::uint64_t ec = esr >> 26;
        if (ec == kEcWfx && (esr & 1) != 0) {  // ISS.TI[0]: WFE; it completes at once
            frame.set_exception_pc(frame.exception_pc() + (((esr >> 25) & 1) != 0 ? 4 : 2));  // IL
            g_cpus[this_cpu()].yielded = true;
            return true;
        }
        if (ec != kEcFp && ec != kEcSve) return false;
        if ((ARMVCPU_READ_SYSREG(cptr_el2) & kCptrTfp) == 0) return false;
        take_fp(this_cpu());
        return true;
    }
    if (kind == 1) {
        const std::uint64_t ctl = ARMVCPU_READ_SYSREG(cnthp_ctl_el2);
        if ((ctl & (kTimerEnable | kTimerIstatus)) != (kTimerEnable | kTimerIstatus)) return false;
        ARMVCPU_WRITE_SYSREG(cnthp_ctl_el2, 0);
        isb();
        // A vCPU whose VM stopped goes back to the run loop, which ends it
        // (the interrupt is gone: the core sees a spurious one).
        const Vm* vm = g_cpu_vm[g_cpus[this_cpu()].current];
        if (vm != nullptr && vm_stopped(*vm)) return false;
        g_cpus[this_cpu()].slice_over = true;
        return true;
    }
    return false;
}

}  // namespace fw::sched
