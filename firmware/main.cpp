// The EL2 firmware: sets up one VM with stage-2 translation, runs its vCPU
// and handles every exit with the core's classifier, asking the host when
// one is attached.
#include <cstdint>
#include <new>

#include "armvcpu/fast_rules.hpp"
#include "armvcpu/host_interface.hpp"
#include "armvcpu/percpu.hpp"
#include "armvcpu/pl011.hpp"
#include "armvcpu/psci.hpp"
#include "armvcpu/stage2.hpp"
#include "armvcpu/sysreg.hpp"
#include "armvcpu/vcpu.hpp"
#include "armvcpu/vgic.hpp"
#include "el2_mmu.hpp"
#include "fw_hal.hpp"
#include "gic.hpp"
#include "host_link.hpp"
#include "sysreg.hpp"
#include "uart.hpp"

extern "C" {
extern armvcpu::GuestConfig armvcpu_guest_config[];
extern armvcpu::FastRuleTable armvcpu_fast_rules;
extern armvcpu::ConsoleRing armvcpu_guest_console;
extern std::uint64_t armvcpu_pending_irq[];
extern const char armvcpu_el2_vectors[];
[[noreturn]] void fw_main();
[[noreturn]] void fw_el2_fault(std::uint64_t type, std::uint64_t esr, std::uint64_t elr,
                               std::uint64_t far, std::uint64_t sp);
}

namespace {

using armvcpu::ExceptionType;
using armvcpu::ExitKind;
using armvcpu::ExitReason;
using armvcpu::HostAction;
using armvcpu::TrapFrame;
using fw::uart::put_dec;
using fw::uart::put_hex;
using fw::uart::put_str;

// Stage-2 tables live in a static pool; at EL2 the MMU is off, so a
// physical address is a pointer.
constexpr unsigned kTablePages = 16;
alignas(4096) std::uint64_t g_table_pool[kTablePages][512];
unsigned g_tables_used = 0;

struct PhysicalTableMemory {
    std::uint64_t read64(std::uint64_t pa) const {
        return *reinterpret_cast<const volatile std::uint64_t*>(pa);
    }
    void write64(std::uint64_t pa, std::uint64_t value) {
        *reinterpret_cast<volatile std::uint64_t*>(pa) = value;
    }
    std::uint64_t alloc_table() {
        if (g_tables_used == kTablePages) return 0;
        auto* page = g_table_pool[g_tables_used++];
        for (unsigned i = 0; i < 512; ++i) page[i] = 0;  // BSS is zero, but be explicit
        return reinterpret_cast<std::uint64_t>(page);
    }
};

// Guest IPA space: 32 bits covers QEMU virt's low RAM and devices.
constexpr unsigned kIpaBits = 32;
constexpr unsigned kPaBits = 32;

// PSCI SYSTEM_OFF to QEMU's own PSCI firmware (conduit SMC at EL2).
[[noreturn]] void power_off() {
    register std::uint64_t x0 asm("x0") = 0x84000008;
    asm volatile("smc #0" : "+r"(x0) : : "memory");
    for (;;) asm volatile("wfe");
}

void log_exit(std::uint64_t seq, const ExitReason& reason, const TrapFrame& frame) {
    put_str("armvcpu: exit ");
    put_dec(seq);
    put_str(": ");
    put_str(armvcpu::exit_kind_name(reason.kind));
    if (reason.kind == ExitKind::Hypercall) {
        put_str(" nr=");
        put_hex(reason.hypercall.nr);
        put_str(" x1=");
        put_hex(reason.hypercall.args[0]);
    } else if (reason.kind == ExitKind::SysRegRead || reason.kind == ExitKind::SysRegWrite) {
        const std::uint64_t key = reason.kind == ExitKind::SysRegRead ? reason.sysreg_read.addr
                                                                      : reason.sysreg_write.addr;
        const char* name = armvcpu::sysreg_name(static_cast<std::uint32_t>(key));
        put_str(" ");
        if (name != nullptr) {
            put_str(name);
        } else {
            put_hex(key);
        }
    } else if (reason.kind == ExitKind::GuestException) {
        put_str(" EC=");
        put_hex(reason.guest_exception.ec);
        put_str(" ISS=");
        put_hex(reason.guest_exception.iss);
    }
    put_str(" pc=");
    put_hex(frame.exception_pc());
    put_str("\n");
}

// The firmware's answer when nobody else decides (see default_stops_vm).
// Returns false when the VM must stop.
bool apply_default(const ExitReason& reason, TrapFrame& frame) {
    if (armvcpu::default_stops_vm(reason.kind)) return false;
    if (reason.kind == ExitKind::Hypercall) frame.set_gpr(0, 0);
    return true;
}

}  // namespace

extern "C" [[noreturn]] void fw_el2_fault(std::uint64_t type, std::uint64_t esr, std::uint64_t elr,
                                          std::uint64_t far, std::uint64_t sp) {
    const bool overflow = fw::in_stack_guard(far) || fw::in_stack_guard(sp);
    put_str(overflow ? "armvcpu: FATAL: EL2 stack overflow (guard page hit)"
                     : "armvcpu: FATAL: exception at EL2");
    put_str(", type ");
    put_dec(type);
    put_str(" ESR_EL2=");
    put_hex(esr);
    put_str(" ELR_EL2=");
    put_hex(elr);
    put_str(" FAR_EL2=");
    put_hex(far);
    put_str(" SP=");
    put_hex(sp);
    put_str("\n");
    // Tell the host before stopping: the exit carries EL2's own syndrome
    // (EC 0x25/0x21: an abort taken from EL2) and the faulting PC.
    const armvcpu::Esr e{esr};
    TrapFrame frame{};
    frame.set_exception_pc(elr);
    fw::report_exit(0, 1, 0, ExceptionType::Synchronous, {esr, far, 0}, elr,
                    armvcpu::make_exit(armvcpu::exit::GuestException{esr, elr, e.ec(), e.iss()}),
                    frame);
    power_off();
}

// Recurses until the stack runs into the guard page (the self-test). The
// limit is far beyond the stack's size; it only tells the compiler that the
// recursion ends.
[[gnu::noinline]] std::uint64_t selftest_recurse(std::uint64_t depth) {
    volatile std::uint8_t pad[512];
    pad[0] = static_cast<std::uint8_t>(depth);
    if (depth > (1u << 20)) return pad[0];
    return selftest_recurse(depth + 1) + pad[0];
}

namespace {

// The guest's MPIDR for vCPU i: Aff0 = i, with the RES1 bit 31.
constexpr std::uint64_t guest_mpidr(unsigned i) { return (1ull << 31) | i; }

// A VM: its configuration, stage 2, and vCPUs pinned to physical CPUs
// first_cpu .. first_cpu + num_vcpus - 1 (vCPU i on CPU first_cpu + i).
struct Vm {
    unsigned id;  // also its VMID
    armvcpu::GuestConfig cfg;
    armvcpu::UartMode uart_mode;
    std::uint64_t vttbr;
    std::uint64_t vtcr;
    unsigned first_cpu;
    unsigned num_vcpus;
    armvcpu::psci::VmPowerState power;
    std::uint32_t stopped;  // atomic
};
Vm g_vms[fw::kMaxVms];
unsigned g_num_vms = 0;
unsigned g_vms_stopped = 0;  // atomic
Vm* g_cpu_vm[fw::kMaxCpus];  // the VM whose vCPU each physical CPU runs
std::uint64_t g_exits = 0;   // atomic: counted by every CPU

// A vCPU start request for one physical CPU (PSCI CPU_ON from the guest):
// entry and context, published by storing `pending` with release ordering.
struct StartRequest {
    std::uint64_t entry;
    std::uint64_t context;
    std::uint64_t pending;
};
StartRequest g_start[fw::kMaxCpus];

// SGIs (bit n = INTID n) other vCPUs sent to each vCPU, injected by the
// target's CPU before its next entry (it is kicked to get there).
std::uint64_t g_pending_sgis[fw::kMaxCpus];

// Delivers a guest's ICC_SGI1R_EL1 write (decoded by the core into SendIpi)
// to the vCPUs it names.
void deliver_sgi(const Vm& vm, unsigned sender, const armvcpu::exit::SendIpi& ipi) {
    const std::uint64_t bit = 1ull << (ipi.vector & 0xf);
    for (unsigned target = 0; target < vm.num_vcpus; ++target) {
        bool hit = false;
        if (ipi.send_to_all != 0) {
            hit = target != sender;
        } else {
            // target_cpu is the affinity of TargetList bit 0 (Aff0 = RS * 16).
            const std::uint64_t aff = guest_mpidr(target) & 0xff00ffffffull & ~(1ull << 31);
            const std::uint64_t base = ipi.target_cpu & ~0xfull;
            hit = (aff & ~0xfull) == base && ((ipi.target_cpu_aux >> (aff & 0xf)) & 1) != 0;
        }
        if (!hit) continue;
        const unsigned cpu = vm.first_cpu + target;
        __atomic_fetch_or(&g_pending_sgis[cpu], bit, __ATOMIC_RELEASE);
        if (target != sender) fw::gic::kick(cpu);
    }
}

alignas(armvcpu::VCpu<fw::FwHal>) unsigned char g_vcpu_storage[fw::kMaxCpus]
                                                              [sizeof(armvcpu::VCpu<fw::FwHal>)];
alignas(armvcpu::PerCpu<fw::FwHal>) unsigned char g_percpu_storage[fw::kMaxCpus][sizeof(
    armvcpu::PerCpu<fw::FwHal>)];
fw::FwHal g_hal[fw::kMaxCpus];

// PSCI CPU_ON to QEMU's own PSCI (SMC conduit at EL2), for physical CPUs.
std::int64_t psci_cpu_on(std::uint64_t mpidr, std::uint64_t entry, std::uint64_t context) {
    register std::uint64_t x0 asm("x0") = 0xC4000003;
    register std::uint64_t x1 asm("x1") = mpidr;
    register std::uint64_t x2 asm("x2") = entry;
    register std::uint64_t x3 asm("x3") = context;
    asm volatile("smc #0" : "+r"(x0) : "r"(x1), "r"(x2), "r"(x3) : "memory");
    return static_cast<std::int64_t>(x0);
}

// The EL2 set-up every physical CPU makes for itself.
armvcpu::PerCpu<fw::FwHal>& enable_this_cpu(unsigned cpu) {
    fw::FwHal& hal = g_hal[cpu];
    auto* percpu = new (g_percpu_storage[cpu]) armvcpu::PerCpu<fw::FwHal>(hal, cpu);
    percpu->hardware_enable(reinterpret_cast<std::uint64_t>(armvcpu_el2_vectors));
    // EL2 traps the guest keeps (not part of its context): FP/SIMD untrapped
    // (CPTR_EL2 RES1 bits only), debug traps as the host asked.
    hal.write_sysreg(armvcpu::SysReg::cptr_el2, 0x33ff);
    hal.write_sysreg(armvcpu::SysReg::mdcr_el2, 0);
    return *percpu;
}

// Ends a VM: its other CPUs are kicked out of the guest and go back to
// waiting; QEMU powers off when the last VM has ended.
void stop_vm(Vm& vm, const ExitReason& reason) {
    if (__atomic_exchange_n(&vm.stopped, 1, __ATOMIC_ACQ_REL) != 0) return;
    put_str("armvcpu: VM ");
    put_dec(vm.id);
    put_str(" stopped after ");
    put_dec(__atomic_load_n(&g_exits, __ATOMIC_RELAXED));
    put_str(" exits (last: ");
    put_str(armvcpu::exit_kind_name(reason.kind));
    put_str(")\n");
    if (__atomic_add_fetch(&g_vms_stopped, 1, __ATOMIC_ACQ_REL) == g_num_vms) power_off();
    for (unsigned i = 0; i < vm.num_vcpus; ++i) fw::gic::kick(vm.first_cpu + i);
}

// Runs vCPU `cpu` on this physical CPU until it turns itself off (CPU_OFF).
void run_vcpu(unsigned cpu, std::uint64_t entry, std::uint64_t context) {
    fw::FwHal& hal = g_hal[cpu];
    Vm& vm = *g_cpu_vm[cpu];
    const armvcpu::GuestConfig& cfg = vm.cfg;
    const unsigned index = cpu - vm.first_cpu;
    auto* vcpu = new (g_vcpu_storage[cpu])
        armvcpu::VCpu<fw::FwHal>(hal, vm.id, index, {guest_mpidr(index), context});
    vcpu->set_power_state(&vm.power);
    hal.write_sysreg(armvcpu::SysReg::mdcr_el2, cfg.mdcr_el2 | fw::mdcr_el2_bits());
    if (vcpu->setup({false, cfg.hcr_el2_set}) != armvcpu::VCpuError::None ||
        vcpu->set_entry(entry) != armvcpu::VCpuError::None ||
        vcpu->set_ept_root(vm.vttbr, vm.vtcr) != armvcpu::VCpuError::None ||
        vcpu->bind() != armvcpu::VCpuError::None) {
        put_str("armvcpu: FATAL: vCPU set-up failed\n");
        power_off();
    }
    asm volatile("tlbi vmalls12e1is" ::: "memory");
    fw::dsb_ish();
    fw::isb();
    vm.power.store(index, armvcpu::psci::AffinityState::On);

    // Single-stepping (HostAction::Step): the guest's software-step
    // exception is routed to EL2 with MDCR_EL2.TDE, armed with MDSCR_EL1.SS
    // and SPSR_EL2.SS (Arm ARM D2.12 "Software Step exceptions"); the guest's
    // own MDSCR_EL1 is restored after the step.
    constexpr std::uint64_t kMdscrSs = 1u << 0;
    constexpr std::uint64_t kMdcrTde = 1u << 8;
    constexpr std::uint64_t kSpsrSs = 1u << 21;
    bool stepping = false;
    std::uint64_t guest_mdscr = 0;

    for (;;) {
        if (__atomic_load_n(&vm.stopped, __ATOMIC_ACQUIRE) != 0) {
            vcpu->unbind();
            return;
        }
        // Interrupts waiting for this vCPU go into free list registers before
        // the next entry: one the host asked for, then SGIs from other vCPUs.
        // What does not fit stays pending, and the underflow maintenance
        // interrupt brings the CPU back here once the guest has made room.
        bool waiting = false;
        std::uint64_t requested = __atomic_load_n(&armvcpu_pending_irq[cpu], __ATOMIC_ACQUIRE);
        if (requested != 0) {
            if (vcpu->inject_interrupt(requested - 1) == armvcpu::VCpuError::None) {
                __atomic_compare_exchange_n(&armvcpu_pending_irq[cpu], &requested, 0, false,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
            } else {
                waiting = true;
            }
        }
        const std::uint64_t sgis = __atomic_load_n(&g_pending_sgis[cpu], __ATOMIC_ACQUIRE);
        for (std::uint32_t intid = 0; intid < 16 && !waiting; ++intid) {
            const std::uint64_t bit = 1ull << intid;
            if ((sgis & bit) == 0) continue;
            if (vcpu->inject_interrupt(intid) != armvcpu::VCpuError::None) {
                waiting = true;
                break;
            }
            __atomic_fetch_and(&g_pending_sgis[cpu], ~bit, __ATOMIC_ACQ_REL);
        }
        fw::gic::set_underflow_interrupt(waiting);
        const armvcpu::VCpuRunResult result = vcpu->run();
        if (stepping) {
            hal.write_sysreg(armvcpu::SysReg::mdscr_el1, guest_mdscr);
            hal.write_sysreg(armvcpu::SysReg::mdcr_el2, cfg.mdcr_el2 | fw::mdcr_el2_bits());
            vcpu->context().spsr &= ~kSpsrSs;
            stepping = false;
        }
        const ExitReason& reason = result.reason;
        if (reason.kind == ExitKind::Nothing) continue;

        // What the firmware handles itself: interrupts, waits, PSCI.
        if (reason.kind == ExitKind::ExternalInterrupt) {
            const auto intid = static_cast<std::uint32_t>(reason.external_interrupt.vector);
            if (!armvcpu::vgic::is_valid_intid(intid)) continue;  // spurious
            if (intid == fw::gic::kKickSgi || intid == armvcpu::vgic::kMaintenancePpi) {
                // Another CPU left us work, or list registers have room again:
                // the loop's top injects what is waiting.
                fw::gic::deactivate(intid);
                continue;
            }
            if (intid == armvcpu::vgic::kVirtualTimerPpi) {
                // The guest's own timer: hand it over, hardware-linked, so
                // the guest's deactivation deactivates the physical PPI.
                if (!fw::gic::inject(intid, true)) fw::gic::deactivate(intid);
                continue;
            }
            fw::gic::deactivate(intid);  // the host decides what it means
        } else if (reason.kind == ExitKind::Halt) {
            // WFI (trapped) or CPU_SUSPEND: Blocked until an interrupt is
            // pending for this CPU (a kick from another CPU included); the
            // next entry then takes it as an exit.
            while (!fw::gic::pending() &&
                   __atomic_load_n(&g_pending_sgis[cpu], __ATOMIC_ACQUIRE) == 0) {
                asm volatile("wfi");
            }
            vcpu->wake();
            continue;
        } else if (reason.kind == ExitKind::CpuUp) {
            // The core has checked the state rules (ON_PENDING now) and set
            // x0; the target's physical CPU starts it.
            const int target = vm.power.index_of(reason.cpu_up.target_cpu);
            if (target > 0 && static_cast<unsigned>(target) < vm.num_vcpus) {
                StartRequest& req = g_start[vm.first_cpu + static_cast<unsigned>(target)];
                req.entry = reason.cpu_up.entry_point;
                req.context = reason.cpu_up.arg;
                __atomic_store_n(&req.pending, 1, __ATOMIC_RELEASE);
                asm volatile("sev" ::: "memory");
            }
            continue;
        } else if (reason.kind == ExitKind::SendIpi) {
            deliver_sgi(vm, index, reason.send_ipi);
            continue;
        } else if (reason.kind == ExitKind::CpuDown) {
            vcpu->unbind();  // the core marked it OFF
            return;
        }

        TrapFrame& frame = vcpu->context();
        if (armvcpu::apply_fast_rules(armvcpu_fast_rules, reason, frame) ||
            (vm.uart_mode == armvcpu::UartMode::Emulate &&
             armvcpu::emulate_pl011(armvcpu_guest_console, cfg.uart_base, reason, frame))) {
            if (vcpu->state() == armvcpu::VCpuState::Blocked) vcpu->wake();
            continue;
        }
        const std::uint64_t n = __atomic_add_fetch(&g_exits, 1, __ATOMIC_RELAXED);
        if (!fw::host_attached()) log_exit(n, reason, frame);
        const HostAction action = fw::report_exit(cpu, vm.id, index, result.type, result.syndrome,
                                                  result.exception_pc, reason, frame);
        bool keep_running = true;
        if (action == HostAction::Default) keep_running = apply_default(reason, frame);
        if (action == HostAction::Stop) keep_running = false;
        if (action == HostAction::Step) {
            guest_mdscr = hal.read_sysreg(armvcpu::SysReg::mdscr_el1);
            hal.write_sysreg(armvcpu::SysReg::mdscr_el1, guest_mdscr | kMdscrSs);
            hal.write_sysreg(armvcpu::SysReg::mdcr_el2,
                             cfg.mdcr_el2 | kMdcrTde | fw::mdcr_el2_bits());
            frame.spsr |= kSpsrSs;
            stepping = true;
        }
        // A halted vCPU resumes once someone has answered for it.
        if (keep_running && vcpu->state() == armvcpu::VCpuState::Blocked) vcpu->wake();
        if (!keep_running) {
            stop_vm(vm, reason);
            vcpu->unbind();
            return;
        }
    }
}

// A physical CPU without a running vCPU: wait for a CPU_ON for its vCPU.
[[noreturn]] void wait_for_vcpu(unsigned cpu) {
    for (;;) {
        StartRequest& req = g_start[cpu];
        while (__atomic_load_n(&req.pending, __ATOMIC_ACQUIRE) == 0) asm volatile("wfe");
        __atomic_store_n(&req.pending, 0, __ATOMIC_RELAXED);
        run_vcpu(cpu, req.entry, req.context);
    }
}

}  // namespace

extern "C" [[noreturn]] void fw_secondary_main(std::uint64_t cpu_index) {
    const auto cpu = static_cast<unsigned>(cpu_index);
    fw::enable_el2_mmu_secondary();
    fw::gic::init_cpu(cpu);
    enable_this_cpu(cpu);
    wait_for_vcpu(cpu);
}

namespace {

// Builds VM k's stage 2 from its configuration; false when it cannot.
bool build_vm(Vm& vm, PhysicalTableMemory& mem) {
    const armvcpu::GuestConfig& cfg = vm.cfg;
    armvcpu::stage2::Tables<PhysicalTableMemory> s2(mem, mem.alloc_table(), kIpaBits, kPaBits);
    auto err = s2.map(cfg.ipa_base, cfg.pa_base, cfg.size, {});
    vm.uart_mode = static_cast<armvcpu::UartMode>(cfg.uart_mode);
    if (err == armvcpu::stage2::MapError::None && vm.uart_mode == armvcpu::UartMode::Passthrough) {
        // The guest writes the physical PL011 directly: Device memory, no execute.
        err = s2.map(
            cfg.uart_base, cfg.uart_base, 0x1000,
            {armvcpu::stage2::Access::ReadWrite, armvcpu::stage2::MemAttr::DeviceNGnRE, true});
    }
    if (err != armvcpu::stage2::MapError::None) {
        put_str("armvcpu: cannot map VM ");
        put_dec(vm.id);
        put_str("'s RAM, error ");
        put_dec(static_cast<unsigned>(err));
        put_str("\n");
        return false;
    }
    vm.vttbr = s2.vttbr(static_cast<std::uint16_t>(vm.id));
    vm.vtcr = s2.vtcr();
    return true;
}

}  // namespace

extern "C" [[noreturn]] void fw_main() {
    fw::enable_el2_mmu();
    fw::gic::init();
    const armvcpu::GuestConfig& cfg = armvcpu_guest_config[0];
    put_str("armvcpu EL2 firmware 0.1.0 (");
    put_str(fw::host_attached() ? "host attached" : "standalone");
    put_str(")\n");
    put_str("armvcpu: MIDR_EL1=");
    put_hex(ARMVCPU_READ_SYSREG(midr_el1));
    put_str(" guest RAM IPA ");
    put_hex(cfg.ipa_base);
    put_str(" -> PA ");
    put_hex(cfg.pa_base);
    put_str(" size ");
    put_hex(cfg.size);
    put_str(", UART ");
    put_str(cfg.uart_mode == 1 ? "emulated" : cfg.uart_mode == 2 ? "passthrough" : "host");
    put_str("\n");
    enable_this_cpu(0);

    // Bring up the other physical CPUs (QEMU's PSCI answers INVALID_PARAMETERS
    // past the last one).
    unsigned cpus = 1;
    for (unsigned i = 1; i < fw::kMaxCpus; ++i) {
        extern char _secondary_start[];
        if (psci_cpu_on(i, reinterpret_cast<std::uint64_t>(_secondary_start), i) != 0) break;
        ++cpus;
    }

    // The VMs, each with its own stage 2 and VMID, on consecutive CPUs.
    PhysicalTableMemory mem;
    unsigned next_cpu = 0;
    for (unsigned k = 0; k < fw::kMaxVms; ++k) {
        const armvcpu::GuestConfig& c = armvcpu_guest_config[k];
        if (k > 0 && c.size == 0) continue;
        Vm& vm = g_vms[g_num_vms];
        vm.id = k + 1;
        vm.cfg = c;
        const unsigned wanted = c.num_vcpus == 0 ? 1 : c.num_vcpus;
        const unsigned left = cpus - next_cpu;
        vm.num_vcpus = wanted < left ? wanted : left;
        if (vm.num_vcpus == 0 || !build_vm(vm, mem)) {
            put_str("armvcpu: VM ");
            put_dec(vm.id);
            put_str(" not started (no CPU or memory for it)\n");
            if (k == 0) power_off();
            continue;
        }
        vm.first_cpu = next_cpu;
        next_cpu += vm.num_vcpus;
        vm.power.num_vcpus = vm.num_vcpus;
        for (unsigned i = 0; i < vm.num_vcpus; ++i) {
            vm.power.mpidr[i] = guest_mpidr(i);
            vm.power.store(i, armvcpu::psci::AffinityState::Off);
            g_cpu_vm[vm.first_cpu + i] = &vm;
        }
        ++g_num_vms;
    }
    if (cpus > 1 || g_num_vms > 1 || g_vms[0].num_vcpus > 1) {
        put_str("armvcpu: ");
        put_dec(cpus);
        put_str(" CPUs");
        for (unsigned v = 0; v < g_num_vms; ++v) {
            put_str(v == 0 ? ", " : "; ");
            put_str("VM ");
            put_dec(g_vms[v].id);
            put_str(" has ");
            put_dec(g_vms[v].num_vcpus);
            put_str(g_vms[v].num_vcpus == 1 ? " vCPU" : " vCPUs");
        }
        put_str("\n");
    }
    if ((cfg.selftest & armvcpu::kSelfTestStackOverflow) != 0) {
        put_str("armvcpu: self-test: overflowing the EL2 stack\n");
        selftest_recurse(0);
    }
    if ((cfg.selftest & armvcpu::kSelfTestCountEl2) != 0) fw::start_counting_el2();
    // Every VM's first vCPU starts now; CPU 0 runs VM 1's.
    for (unsigned v = 1; v < g_num_vms; ++v) {
        StartRequest& req = g_start[g_vms[v].first_cpu];
        req.entry = g_vms[v].cfg.entry;
        req.context = g_vms[v].cfg.x0;
        __atomic_store_n(&req.pending, 1, __ATOMIC_RELEASE);
    }
    asm volatile("sev" ::: "memory");
    run_vcpu(0, cfg.entry, cfg.x0);
    wait_for_vcpu(0);
}
