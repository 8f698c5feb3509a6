// The steps of the vCPU run loop (main.cpp's run_vcpu): bind a vCPU to this
// physical CPU, put waiting interrupts into its list registers, and answer
// its exits, first in EL2 and last by asking the host. The steps are always
// inlined because every exit runs them: a call per step would cost EL2
// instructions on every exit (armvcpu bench el2), and a VcpuRun whose address
// reached another function would live on the stack instead of in registers.
#pragma once

#include <cstdint>
#include <new>

#include "armvcpu/classify.hpp"
#include "armvcpu/exception_entry.hpp"
#include "armvcpu/exit_reason.hpp"
#include "armvcpu/fast_rules.hpp"
#include "armvcpu/host_interface.hpp"
#include "armvcpu/pl011.hpp"
#include "armvcpu/psci.hpp"
#include "armvcpu/smmu.hpp"
#include "armvcpu/trap_frame.hpp"
#include "armvcpu/vcpu.hpp"
#include "cpu.hpp"
#include "exit_log.hpp"
#include "fw_hal.hpp"
#include "host_link.hpp"
#include "inject.hpp"
#include "power.hpp"
#include "sgi.hpp"
#include "smmu.hpp"
#include "snapshot.hpp"
#include "sysreg.hpp"
#include "uart.hpp"
#include "vgic_glue.hpp"
#include "vgic_v2_glue.hpp"
#include "vm.hpp"
#include "watchdog.hpp"

namespace fw {

using Vcpu = armvcpu::VCpu<FwHal>;

// Each physical CPU's vCPU object, built when the vCPU starts.
alignas(Vcpu) extern unsigned char g_vcpu_storage[kMaxCpus][sizeof(Vcpu)];

// Single-stepping (HostAction::Step): the guest's software-step exception is
// routed to EL2 with MDCR_EL2.TDE, armed with MDSCR_EL1.SS and SPSR_EL2.SS
// (Arm ARM D2.12 "Software Step exceptions"); the guest's own MDSCR_EL1 is
// restored after the step.
class SoftwareStep {
public:
    [[gnu::always_inline]] bool armed() const { return armed_; }

    [[gnu::always_inline]] void arm(FwHal& hal, const armvcpu::GuestConfig& cfg,
                                    armvcpu::TrapFrame& frame, unsigned cpu) {
        guest_mdscr_ = hal.read_sysreg(armvcpu::SysReg::mdscr_el1);
        hal.write_sysreg(armvcpu::SysReg::mdscr_el1, guest_mdscr_ | kMdscrSs);
        hal.write_sysreg(armvcpu::SysReg::mdcr_el2, cfg.mdcr_el2 | kMdcrTde | mdcr_el2_bits());
        frame.spsr |= kSpsrSs;
        armed_ = true;
        armvcpu_fast_path[cpu] = 0;  // the stepped instruction is an exit
    }

    [[gnu::always_inline]] void disarm(FwHal& hal, const armvcpu::GuestConfig& cfg,
                                       armvcpu::TrapFrame& frame, unsigned cpu,
                                       std::uint8_t fast_path) {
        armvcpu_fast_path[cpu] = fast_path;
        hal.write_sysreg(armvcpu::SysReg::mdscr_el1, guest_mdscr_);
        hal.write_sysreg(armvcpu::SysReg::mdcr_el2, cfg.mdcr_el2 | mdcr_el2_bits());
        frame.spsr &= ~kSpsrSs;
        armed_ = false;
    }

private:
    static constexpr std::uint64_t kMdscrSs = 1u << 0;
    static constexpr std::uint64_t kMdcrTde = 1u << 8;
    static constexpr std::uint64_t kSpsrSs = 1u << 21;
    bool armed_ = false;
    std::uint64_t guest_mdscr_ = 0;
};

// One vCPU running on this physical CPU: what the steps share.
struct VcpuRun {
    unsigned cpu;    // the physical CPU
    unsigned index;  // the vCPU's index in its VM
    Vm& vm;
    Vcpu& vcpu;
    FwHal& hal;
    bool vgic;               // the VM has an emulated GIC (kFeatureVgic)
    std::uint8_t fast_path;  // armvcpu_fast_path[cpu] while not stepping
    TimerPpis timers;
    SoftwareStep step;
    // Where the last exception this firmware injected sent the guest (its
    // VBAR_EL1 vector), while no other exit came between: a fetch fault at
    // exactly this address means the guest has no vectors (note_exit).
    std::uint64_t injected_vector = 0;
    bool injected = false;
};

// Builds vCPU `index` of `vm` on physical CPU `cpu`, starting at `entry`
// with x0 = `context`, and binds it (Ready: its context and stage 2 loaded).
[[gnu::always_inline]] inline Vcpu& bind_vcpu(unsigned cpu, Vm& vm, unsigned index,
                                              std::uint64_t entry, std::uint64_t context) {
    FwHal& hal = g_hal[cpu];
    const armvcpu::GuestConfig& cfg = vm.cfg;
    auto* vcpu = new (g_vcpu_storage[cpu]) Vcpu(hal, vm.id, index, {guest_mpidr(index), context});
    vcpu->set_power_state(&vm.power);
    vcpu->set_smccc((vm.features & armvcpu::kFeatureQemuSmccc) != 0 ? armvcpu::psci::Smccc::QemuVirt
                                                                    : armvcpu::psci::Smccc::V1_1);
    hal.write_sysreg(armvcpu::SysReg::mdcr_el2, cfg.mdcr_el2 | mdcr_el2_bits());
    if (vcpu->setup({false, cfg.hcr_el2_set | feature_hcr_bits()}) != armvcpu::VCpuError::None ||
        vcpu->set_entry(entry) != armvcpu::VCpuError::None ||
        vcpu->set_ept_root(vm.vttbr, vm.vtcr) != armvcpu::VCpuError::None ||
        vcpu->bind() != armvcpu::VCpuError::None) {
        uart::put_str("armvcpu: FATAL: vCPU set-up failed\n");
        power_off();
    }
    asm volatile("tlbi vmalls12e1is" ::: "memory");
    dsb_ish();
    isb();
    vm.power.store(index, armvcpu::psci::AffinityState::On);
    return *vcpu;
}

// armvcpu_fast_path for a VM: the vectors' fast path unless every exit must
// be seen (the exit log), SMCCC_VERSION left to the core for QEMU virt's SMCCC.
constexpr std::uint8_t fast_path_flags(std::uint32_t features) {
    if ((features & armvcpu::kFeatureExitLog) != 0) return 0;
    const bool qemu_smccc = (features & armvcpu::kFeatureQemuSmccc) != 0;
    return static_cast<std::uint8_t>(armvcpu::kFastPathOn |
                                     (qemu_smccc ? 1u << armvcpu::kFastPathNoSmcccVersionBit : 0u));
}

// Starts vCPU `cpu`'s run on this physical CPU (vCPU cpu - first_cpu of the
// VM that owns the CPU).
[[gnu::always_inline]] inline VcpuRun begin_run(unsigned cpu, std::uint64_t entry,
                                                std::uint64_t context) {
    Vm& vm = *g_cpu_vm[cpu];
    const unsigned index = cpu - vm.first_cpu;
    VcpuRun run{cpu,
                index,
                vm,
                bind_vcpu(cpu, vm, index, entry, context),
                g_hal[cpu],
                (vm.features & armvcpu::kFeatureVgic) != 0,
                fast_path_flags(vm.features),
                {},
                {}};
    // The timer PPIs follow the guest's GIC from the first entry on.
    if (run.vgic) set_vgic_dirty(cpu);
    armvcpu_fast_path[cpu] = run.fast_path;
    snapshot::take_if_asked(vm, run.vcpu, cpu);
    watchdog::arm(vm, cpu);
    return run;
}

// The interrupt the host asked for (armvcpu_pending_irq: INTID + 1), if a
// list register is free; true when it must wait.
[[gnu::always_inline]] inline bool inject_host_request(VcpuRun& run) {
    std::uint64_t requested = __atomic_load_n(&armvcpu_pending_irq[run.cpu], __ATOMIC_ACQUIRE);
    if (requested == 0) return false;
    if (run.vcpu.inject_interrupt(requested - 1) != armvcpu::VCpuError::None) return true;
    // The host may have asked for another since: only ours is taken back.
    __atomic_compare_exchange_n(&armvcpu_pending_irq[run.cpu], &requested, 0, false,
                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    return false;
}

// Interrupts waiting for this vCPU go into free list registers before the
// next entry: one the host asked for, then SGIs from other vCPUs (and with an
// emulated GIC what the guest pended through it). Returns true when some do
// not fit: they stay pending, and the underflow maintenance interrupt brings
// the CPU back once the guest has made room.
[[gnu::always_inline]] inline bool inject_waiting_interrupts(VcpuRun& run) {
    bool waiting = inject_host_request(run);
    const std::uint64_t sgis = pending_sgis(run.cpu);
    if (!run.vgic) {
        if (!waiting) waiting = inject_pending_sgis(run.vcpu, run.cpu, sgis);
        return waiting;
    }
    if (gic::v2()) return inject_from_vgic2(run.vm, run.cpu, run.index, waiting, run.timers);
    waiting = inject_from_vgic(run.vm, run.cpu, run.index, sgis, waiting, run.timers);
    if (its::lpis_waiting(run.cpu)) waiting = its::inject_waiting_lpis(run.cpu) || waiting;
    return waiting;
}

// After a stepped entry: the guest's own debug state back.
[[gnu::always_inline]] inline void end_step(VcpuRun& run) {
    run.step.disarm(run.hal, run.vm.cfg, run.vcpu.context(), run.cpu, run.fast_path);
}

// Exits the core answered itself (PSCI queries, WFE) come back as Nothing
// with their syndrome and are still logged; a spurious interrupt is not an
// exit at all.
[[gnu::always_inline]] inline bool is_exit(const armvcpu::VCpuRunResult& result) {
    return result.reason.kind != armvcpu::ExitKind::Nothing ||
           result.type == armvcpu::ExceptionType::Synchronous;
}

enum class El2Answer {
    Handled,  // answered; enter the guest again
    VcpuOff,  // the vCPU turned itself off (CPU_OFF): leave the loop
    NotMine,  // not something EL2 handles itself
};

// What the firmware handles itself whatever the host says: interrupts,
// waits, PSCI CPU_ON/CPU_OFF, SGIs between vCPUs. Always inlined: armvcpu
// fuzz recognises a halted vCPU by the WFI in run_vcpu.
[[gnu::always_inline]] inline El2Answer handle_in_el2(VcpuRun& run,
                                                      const armvcpu::ExitReason& reason) {
    using armvcpu::ExitKind;
    if (reason.kind == ExitKind::ExternalInterrupt) {
        const auto intid = static_cast<std::uint32_t>(reason.external_interrupt.vector);
        // A DMA the SMMU blocked: logged for the host, and (not ours) an exit.
        if (intid == armvcpu::smmu::kVirtEventqIntid) smmu::drain_events();
        // The guest ran too long without an exit: the host's to answer.
        if (watchdog::take(intid)) {
            gic::deactivate(intid);
            return El2Answer::NotMine;
        }
        const bool handled = gic::v2()
                                 ? handle_physical_interrupt_v2(run.vm, run.cpu, run.index, intid)
                                 : handle_physical_interrupt(run.vm, run.cpu, run.index, intid);
        return handled ? El2Answer::Handled : El2Answer::NotMine;
    }
    if (reason.kind == ExitKind::Halt) {
        // WFI (trapped) or CPU_SUSPEND: Blocked until a wake-up event.
        wait_for_wake_up(run.cpu);
        watchdog::note_halt_ended();
        run.vcpu.wake();
        return El2Answer::Handled;
    }
    if (reason.kind == ExitKind::CpuUp) {
        start_guest_cpu(run.vm, reason.cpu_up);
        return El2Answer::Handled;
    }
    if (reason.kind == ExitKind::SendIpi) {
        deliver_sgi(run.vm, run.index, reason.send_ipi);
        return El2Answer::Handled;
    }
    if (reason.kind == ExitKind::CpuDown) {
        // Back into the guest once the watchdog has fired: its interrupt
        // takes the CPU straight back to EL2, as the host's exit.
        if (watchdog::park_off(run.vm)) return El2Answer::Handled;
        run.vcpu.unbind();  // the core marked it OFF
        watchdog::disarm();
        return El2Answer::VcpuOff;
    }
    return El2Answer::NotMine;
}

// A guest access to its emulated GICD/GICR.
[[gnu::always_inline]] inline bool try_vgic(VcpuRun& run, const armvcpu::ExitReason& reason,
                                            armvcpu::TrapFrame& frame) {
    if (!run.vgic) return false;
    if (gic::v2()) {
        if (!is_vgic2_access(run.vm, reason)) return false;
        emulate_vgic2(run.vm, run.cpu, run.index, reason, frame);
        return true;
    }
    if (!is_vgic_access(run.vm, reason)) return false;
    emulate_vgic(run.vm, run.cpu, reason, frame);
    return true;
}

// The address of the instruction that made the exit (what exit.pc says).
[[gnu::always_inline]] inline std::uint64_t exit_instruction(const armvcpu::VCpuRunResult& result) {
    return armvcpu::instruction_address_from_preferred_return(
        result.exception_pc, armvcpu::Esr{result.syndrome.esr},
        result.type == armvcpu::ExceptionType::Synchronous);
}

// Takes the synchronous external abort matching the exit (FAR_EL1 = `far`)
// to the guest's EL1.
[[gnu::always_inline]] inline void inject_abort(VcpuRun& run, const armvcpu::VCpuRunResult& result,
                                                armvcpu::TrapFrame& frame, std::uint64_t far) {
    inject_exception(run.hal, frame,
                     armvcpu::abort_for_exit(result.reason, exit_instruction(result), far));
    run.injected_vector = frame.elr;
    run.injected = true;
}

// Takes an Undefined Instruction exception (EC 0x00) at the exit's instruction.
[[gnu::always_inline]] inline void inject_undef(VcpuRun& run, const armvcpu::VCpuRunResult& result,
                                                armvcpu::TrapFrame& frame) {
    inject_exception(run.hal, frame,
                     {armvcpu::InjectKind::Undefined, exit_instruction(result), 0, false});
    run.injected_vector = frame.elr;
    run.injected = true;
}

// A trapped Group 1 GIC CPU interface access (ICH_HCR_EL2.TALL1), answered in
// EL2 for every VM.
[[gnu::always_inline]] inline bool try_icc_group1(VcpuRun& run,
                                                  const armvcpu::VCpuRunResult& result,
                                                  armvcpu::TrapFrame& frame) {
    if (!is_icc_group1_access(result.reason)) return false;
    if (!emulate_icc_group1(run.vm, run.cpu, run.index, result.reason, frame))
        inject_undef(run, result, frame);
    return true;
}

// Before anyone answers an exit: marks a fetch fault at the vector the last
// injected exception sent the guest to (kAccessAtInjectedVector), so the
// default (here, or the host's Default) stops the VM there instead of
// injecting the same abort again for ever. Any exit elsewhere forgets the
// vector; one at the vector itself (an interrupt taken before the guest ran
// its first handler instruction) does not.
[[gnu::always_inline]] inline void note_exit(VcpuRun& run, armvcpu::VCpuRunResult& result) {
    if (!run.injected) return;
    if (exit_instruction(result) != run.injected_vector) {
        run.injected = false;
        return;
    }
    armvcpu::ExitReason& reason = result.reason;
    if (reason.kind == armvcpu::ExitKind::NestedPageFault &&
        (reason.nested_page_fault.access_flags & armvcpu::exit::kAccessExecute) != 0) {
        reason.nested_page_fault.access_flags |= armvcpu::exit::kAccessAtInjectedVector;
        run.injected = false;
    }
}

// An exit one of the host's fast rules covers (answered and counted in EL2).
[[gnu::always_inline]] inline bool try_fast_rules(VcpuRun& run,
                                                  const armvcpu::VCpuRunResult& result,
                                                  armvcpu::TrapFrame& frame, ExitLogScope& log) {
    const armvcpu::FastRuleAnswer answer =
        armvcpu::answer_fast_rules(armvcpu_fast_rules, result.reason, frame);
    if (answer == armvcpu::FastRuleAnswer::None) return false;
    if (answer == armvcpu::FastRuleAnswer::InjectAbort) {
        inject_abort(run, result, frame, result.syndrome.far);
    }
    if (answer == armvcpu::FastRuleAnswer::InjectUndef) inject_undef(run, result, frame);
    log.set_handler(armvcpu::ExitLogHandler::FastRule);
    if (run.vcpu.state() == armvcpu::VCpuState::Blocked) run.vcpu.wake();
    return true;
}

// A hypercall (HVC, or an SMC the core does not implement) that no host
// claimed: SMCCC NOT_SUPPORTED in EL2, as QEMU virt answers it without a
// hypervisor. With no host attached nothing is claimed, and the call is
// printed like every exit a standalone run sees (its only record).
[[gnu::always_inline]] inline bool try_unclaimed_hypercall(const armvcpu::VCpuRunResult& result,
                                                           armvcpu::TrapFrame& frame) {
    const armvcpu::ExitReason& reason = result.reason;
    if (reason.kind != armvcpu::ExitKind::Hypercall) return false;
    if (host_attached()) {
        if (armvcpu::hypercall_claimed(armvcpu_hypercall_claims, reason.hypercall.nr)) return false;
    } else {
        log_exit(__atomic_add_fetch(&g_exits, 1, __ATOMIC_RELAXED), reason,
                 exit_instruction(result));
    }
    frame.set_gpr(0, armvcpu::kSmcccNotSupported);
    return true;
}

// A guest access to its PL011 when EL2 emulates it (UartMode::Emulate).
[[gnu::always_inline]] inline bool try_emulated_uart(VcpuRun& run,
                                                     const armvcpu::ExitReason& reason,
                                                     armvcpu::TrapFrame& frame) {
    return run.vm.uart_mode == armvcpu::UartMode::Emulate &&
           armvcpu::emulate_pl011(armvcpu_guest_console[run.vm.id - 1], run.vm.cfg.uart_base,
                                  reason, frame);
}

// Reports the exit to the host (or, standalone, prints it) and returns the
// host's answer.
armvcpu::HostAction ask_host(unsigned cpu, const Vm& vm, unsigned index,
                             const armvcpu::VCpuRunResult& result, armvcpu::TrapFrame& frame);

// The firmware's answer when nobody else decides (the core's
// default_answer). Returns false when the VM must stop.
[[gnu::always_inline]] inline bool apply_default(VcpuRun& run, const armvcpu::VCpuRunResult& result,
                                                 armvcpu::TrapFrame& frame) {
    switch (armvcpu::default_answer(result.reason)) {
        case armvcpu::DefaultAnswer::Resume: return true;
        case armvcpu::DefaultAnswer::NotSupported:
            frame.set_gpr(0, armvcpu::kSmcccNotSupported);
            return true;
        case armvcpu::DefaultAnswer::InjectExternalAbort:
            inject_abort(run, result, frame, result.syndrome.far);
            return true;
        case armvcpu::DefaultAnswer::Stop: break;
    }
    return false;
}

// Carries out the host's answer; false when the VM must stop.
[[gnu::always_inline]] inline bool apply_host_action(VcpuRun& run, armvcpu::HostAction action,
                                                     const armvcpu::VCpuRunResult& result,
                                                     armvcpu::TrapFrame& frame) {
    using armvcpu::HostAction;
    bool keep_running = true;
    switch (action) {
        case HostAction::Default: keep_running = apply_default(run, result, frame); break;
        case HostAction::Stop: keep_running = false; break;
        case HostAction::Step: run.step.arm(run.hal, run.vm.cfg, frame, run.cpu); break;
        case HostAction::InjectDataAbort:
        case HostAction::InjectInstructionAbort: {
            // The host names the kind and may have changed the record's FAR.
            armvcpu::InjectedException e = armvcpu::abort_for_exit(
                result.reason, exit_instruction(result), armvcpu_exit_records[run.cpu].far);
            e.kind = action == HostAction::InjectDataAbort ? armvcpu::InjectKind::DataAbort
                                                           : armvcpu::InjectKind::InstructionAbort;
            inject_exception(run.hal, frame, e);
            run.injected_vector = frame.elr;
            run.injected = true;
            break;
        }
        case HostAction::InjectUndef: inject_undef(run, result, frame); break;
        case HostAction::Resume: break;
        case HostAction::Restore:
            // The snapshot's debug state wins over a pending step's.
            if (run.step.armed()) end_step(run);
            keep_running = snapshot::restore(run.vm, run.vcpu, run.cpu);
            run.injected = false;
            break;
    }
    // A halted vCPU resumes once someone has answered for it.
    if (keep_running && run.vcpu.state() == armvcpu::VCpuState::Blocked) run.vcpu.wake();
    return keep_running;
}

}  // namespace fw
