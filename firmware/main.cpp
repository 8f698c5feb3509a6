// Each physical CPU's life after boot.S: CPU 0 builds the machine (fw_main),
// every CPU then waits for a vCPU and runs it (wait_for_vcpu, run_vcpu).
// run_vcpu and wait_for_vcpu stay here, with internal linkage and these
// names, beside the entry points that call them: gdb's backtrace through the
// world switch reads "(anonymous namespace)::run_vcpu" called from fw_main
// (tests/test_gdb_extension.py), and armvcpu fuzz names a stuck CPU's place
// by these two functions.
#include <cstdint>
#include <new>

#include "armvcpu/fast_rules.hpp"
#include "armvcpu/host_interface.hpp"
#include "armvcpu/pl011.hpp"
#include "armvcpu/vcpu.hpp"
#include "cpu.hpp"
#include "el2_fault.hpp"
#include "el2_mmu.hpp"
#include "exit_log.hpp"
#include "gic.hpp"
#include "host_link.hpp"
#include "power.hpp"
#include "sgi.hpp"
#include "sysreg.hpp"
#include "uart.hpp"
#include "vgic_glue.hpp"
#include "vm.hpp"

extern "C" {
[[noreturn]] void fw_main();
[[noreturn]] void fw_secondary_main(std::uint64_t cpu_index);
}

namespace {

using armvcpu::ExceptionType;
using armvcpu::ExitKind;
using armvcpu::ExitReason;
using armvcpu::HostAction;
using armvcpu::TrapFrame;

alignas(armvcpu::VCpu<fw::FwHal>) unsigned char g_vcpu_storage[fw::kMaxCpus]
                                                              [sizeof(armvcpu::VCpu<fw::FwHal>)];

// The firmware's answer when nobody else decides (see default_stops_vm).
// Returns false when the VM must stop.
bool apply_default(const ExitReason& reason, TrapFrame& frame) {
    if (armvcpu::default_stops_vm(reason.kind)) return false;
    if (reason.kind == ExitKind::Hypercall) frame.set_gpr(0, 0);
    return true;
}

// Runs vCPU `cpu` on this physical CPU until it turns itself off (CPU_OFF).
void run_vcpu(unsigned cpu, std::uint64_t entry, std::uint64_t context) {
    fw::FwHal& hal = fw::g_hal[cpu];
    fw::Vm& vm = *fw::g_cpu_vm[cpu];
    const armvcpu::GuestConfig& cfg = vm.cfg;
    const unsigned index = cpu - vm.first_cpu;
    auto* vcpu = new (g_vcpu_storage[cpu])
        armvcpu::VCpu<fw::FwHal>(hal, vm.id, index, {fw::guest_mpidr(index), context});
    vcpu->set_power_state(&vm.power);
    hal.write_sysreg(armvcpu::SysReg::mdcr_el2, cfg.mdcr_el2 | fw::mdcr_el2_bits());
    if (vcpu->setup({false, cfg.hcr_el2_set | fw::feature_hcr_bits()}) !=
            armvcpu::VCpuError::None ||
        vcpu->set_entry(entry) != armvcpu::VCpuError::None ||
        vcpu->set_ept_root(vm.vttbr, vm.vtcr) != armvcpu::VCpuError::None ||
        vcpu->bind() != armvcpu::VCpuError::None) {
        fw::uart::put_str("armvcpu: FATAL: vCPU set-up failed\n");
        fw::power_off();
    }
    asm volatile("tlbi vmalls12e1is" ::: "memory");
    fw::dsb_ish();
    fw::isb();
    vm.power.store(index, armvcpu::psci::AffinityState::On);

    // With an emulated GIC the guest's timer PPIs (the virtual timer, and
    // the EL1 physical timer it also runs directly) are enabled physically
    // only while the guest's redistributor would deliver them (synced below).
    const bool vgic = (vm.features & armvcpu::kFeatureVgic) != 0;
    fw::TimerPpis timers;
    if (vgic) fw::set_vgic_dirty(cpu);

    // Single-stepping (HostAction::Step): the guest's software-step
    // exception is routed to EL2 with MDCR_EL2.TDE, armed with MDSCR_EL1.SS
    // and SPSR_EL2.SS (Arm ARM D2.12 "Software Step exceptions"); the guest's
    // own MDSCR_EL1 is restored after the step.
    constexpr std::uint64_t kMdscrSs = 1u << 0;
    constexpr std::uint64_t kMdcrTde = 1u << 8;
    constexpr std::uint64_t kSpsrSs = 1u << 21;
    bool stepping = false;
    std::uint64_t guest_mdscr = 0;
    // The vectors' fast path, unless every exit must be seen (the exit log).
    const std::uint8_t fast_path = (vm.features & armvcpu::kFeatureExitLog) != 0 ? 0 : 1;
    armvcpu_fast_path[cpu] = fast_path;

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
        const std::uint64_t sgis = fw::pending_sgis(cpu);
        if (!vgic) {
            if (!waiting) waiting = fw::inject_pending_sgis(*vcpu, cpu, sgis);
        } else {
            waiting = fw::inject_from_vgic(vm, cpu, index, sgis, waiting, timers);
        }
        fw::gic::set_underflow_interrupt(waiting);
        const armvcpu::VCpuRunResult result = vcpu->run();
        if (stepping) {
            armvcpu_fast_path[cpu] = fast_path;
            hal.write_sysreg(armvcpu::SysReg::mdscr_el1, guest_mdscr);
            hal.write_sysreg(armvcpu::SysReg::mdcr_el2, cfg.mdcr_el2 | fw::mdcr_el2_bits());
            vcpu->context().spsr &= ~kSpsrSs;
            stepping = false;
        }
        const ExitReason& reason = result.reason;
        // Exits the core answered itself (PSCI queries, WFE) are logged as
        // Nothing with their syndrome; a spurious interrupt is not an exit.
        if (reason.kind == ExitKind::Nothing && result.type != ExceptionType::Synchronous) continue;
        fw::ExitLogScope log(cpu, vm, index, result);
        if (reason.kind == ExitKind::Nothing) continue;

        // What the firmware handles itself: interrupts, waits, PSCI.
        if (reason.kind == ExitKind::ExternalInterrupt) {
            const auto intid = static_cast<std::uint32_t>(reason.external_interrupt.vector);
            if (fw::handle_physical_interrupt(vm, cpu, index, intid)) continue;
        } else if (reason.kind == ExitKind::Halt) {
            // WFI (trapped) or CPU_SUSPEND: Blocked until a wake-up event.
            fw::wait_for_wake_up(cpu);
            vcpu->wake();
            continue;
        } else if (reason.kind == ExitKind::CpuUp) {
            fw::start_guest_cpu(vm, reason.cpu_up);
            continue;
        } else if (reason.kind == ExitKind::SendIpi) {
            fw::deliver_sgi(vm, index, reason.send_ipi);
            continue;
        } else if (reason.kind == ExitKind::CpuDown) {
            vcpu->unbind();  // the core marked it OFF
            return;
        }

        TrapFrame& frame = vcpu->context();
        if (vgic && fw::is_vgic_access(vm, reason)) {
            fw::emulate_vgic(vm, cpu, reason, frame);
            continue;
        }
        if (armvcpu::apply_fast_rules(armvcpu_fast_rules, reason, frame)) {
            log.set_handler(armvcpu::ExitLogHandler::FastRule);
            if (vcpu->state() == armvcpu::VCpuState::Blocked) vcpu->wake();
            continue;
        }
        if (vm.uart_mode == armvcpu::UartMode::Emulate &&
            armvcpu::emulate_pl011(armvcpu_guest_console[vm.id - 1], cfg.uart_base, reason,
                                   frame)) {
            continue;
        }
        log.set_handler(armvcpu::ExitLogHandler::Host);
        const std::uint64_t n = __atomic_add_fetch(&fw::g_exits, 1, __ATOMIC_RELAXED);
        if (!fw::host_attached()) fw::log_exit(n, reason, frame);
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
            armvcpu_fast_path[cpu] = 0;  // the stepped instruction is an exit
        }
        // A halted vCPU resumes once someone has answered for it.
        if (keep_running && vcpu->state() == armvcpu::VCpuState::Blocked) vcpu->wake();
        if (!keep_running) {
            fw::stop_vm(vm, reason);
            vcpu->unbind();
            return;
        }
    }
}

// A physical CPU without a running vCPU: wait for a start request for its
// vCPU (its VM's start, or the guest's CPU_ON) and run it.
[[noreturn]] void wait_for_vcpu(unsigned cpu) {
    for (;;) {
        const fw::StartRequest& req = fw::take_start_request(cpu);
        run_vcpu(cpu, req.entry, req.context);
    }
}

void print_banner(const armvcpu::GuestConfig& cfg) {
    using fw::uart::put_hex;
    using fw::uart::put_str;
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
}

}  // namespace

extern "C" [[noreturn]] void fw_secondary_main(std::uint64_t cpu_index) {
    const auto cpu = static_cast<unsigned>(cpu_index);
    fw::enable_el2_mmu_secondary();
    fw::gic::init_cpu(cpu);
    fw::enable_this_cpu(cpu);
    wait_for_vcpu(cpu);
}

extern "C" [[noreturn]] void fw_main() {
    fw::enable_el2_mmu();
    fw::gic::init();
    const armvcpu::GuestConfig& cfg = armvcpu_guest_config[0];
    print_banner(cfg);
    fw::enable_this_cpu(0);
    fw::init_exit_logs();
    fw::setup_vms(fw::start_secondary_cpus());
    if ((cfg.selftest & armvcpu::kSelfTestStackOverflow) != 0) {
        fw::uart::put_str("armvcpu: self-test: overflowing the EL2 stack\n");
        fw::overflow_el2_stack();
    }
    if ((cfg.selftest & armvcpu::kSelfTestCountEl2) != 0) fw::start_counting_el2();
    // Every VM's first vCPU starts now; CPU 0 runs VM 1's.
    for (unsigned v = 1; v < fw::g_num_vms; ++v) {
        fw::post_start_request(fw::g_vms[v].first_cpu, fw::g_vms[v].cfg.entry, fw::g_vms[v].cfg.x0);
    }
    fw::send_event();
    run_vcpu(0, cfg.entry, cfg.x0);
    wait_for_vcpu(0);
}
