// Each physical CPU's life after boot.S: CPU 0 builds the machine (fw_main),
// every CPU then waits for a vCPU and runs it (wait_for_vcpu, run_vcpu).
// run_vcpu and wait_for_vcpu stay here, with internal linkage and these
// names, beside the entry points that call them: gdb's backtrace through the
// world switch reads "(anonymous namespace)::run_vcpu" called from fw_main
// (tests/test_gdb_extension.py), and armvcpu fuzz names a stuck CPU's place
// by these two functions.
#include <cstdint>

#include "armvcpu/host_interface.hpp"
#include "cpu.hpp"
#include "el2_fault.hpp"
#include "el2_mmu.hpp"
#include "exit_log.hpp"
#include "fuzz_answers.hpp"
#include "gic.hpp"
#include "host_link.hpp"
#include "power.hpp"
#include "run_loop.hpp"
#include "scheduler.hpp"
#include "sysreg.hpp"
#include "uart.hpp"
#include "vm.hpp"

extern "C" {
[[noreturn]] void fw_main();
[[noreturn]] void fw_secondary_main(std::uint64_t cpu_index);
}

namespace {

// Runs vCPU `cpu` on this physical CPU until it turns itself off (CPU_OFF)
// or its VM stops. Each pass enters the guest once and answers its exit by
// the first that can: EL2 itself, the emulated GIC, a host's fast rule, the
// emulated UART, NOT_SUPPORTED for a hypercall no host claimed, and last the
// host.
void run_vcpu(unsigned cpu, std::uint64_t entry, std::uint64_t context) {
    fw::VcpuRun run = fw::begin_run(cpu, entry, context);
    for (;;) {
        if (fw::vm_stopped(run.vm)) {
            run.vcpu.unbind();
            return;
        }
        fw::gic::set_underflow_interrupt(fw::inject_waiting_interrupts(run));
        armvcpu::VCpuRunResult result = run.vcpu.run();
        if (run.vgic && !fw::gic::v2()) fw::publish_list_registers(cpu);
        if (run.step.armed()) fw::end_step(run);
        if (!fw::is_exit(result)) continue;
        // A first write to a page a snapshot tracks: saved, then retried. Only
        // a synchronous exit has a syndrome of its own: an interrupt's is the
        // last abort's, and taking it for one would swallow the interrupt.
        if (result.type == armvcpu::ExceptionType::Synchronous &&
            fw::snapshot::absorb_write_fault(run.vm, result.syndrome)) {
            run.vcpu.context().set_exception_pc(result.exception_pc);
            continue;
        }
        fw::note_exit(run, result);
        fw::ExitLogScope log(cpu, run.vm, run.index, result);
        const armvcpu::ExitReason& reason = result.reason;
        if (reason.kind == armvcpu::ExitKind::Nothing) continue;

        const fw::El2Answer answer = fw::handle_in_el2(run, reason);
        if (answer == fw::El2Answer::VcpuOff) return;
        if (answer == fw::El2Answer::Handled) continue;
        armvcpu::TrapFrame& frame = run.vcpu.context();
        if (fw::try_icc_group1(run, result, frame)) continue;
        if (fw::try_vgic(run, reason, frame)) continue;
        if (fw::try_fast_rules(run, result, frame, log)) continue;
        if (fw::try_emulated_uart(run, reason, frame)) continue;
        if (fw::try_unclaimed_hypercall(result, frame)) continue;
        const fw::fuzz::Answer fuzz =
            fw::fuzz::try_answer(reason, fw::exit_instruction(result), frame);
        if (fuzz == fw::fuzz::Answer::InjectAbort) {
            fw::inject_abort(run, result, frame, result.syndrome.far);
        }
        if (fuzz != fw::fuzz::Answer::Host) continue;

        log.set_handler(armvcpu::ExitLogHandler::Host);
        const armvcpu::HostAction action = fw::ask_host(cpu, run.vm, run.index, result, frame);
        fw::watchdog::arm(run.vm, cpu);  // the guest's time starts again
        if (!fw::apply_host_action(run, action, result, frame)) {
            fw::watchdog::disarm();
            fw::stop_vm(run.vm, reason);
            run.vcpu.unbind();
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
    fw::sched::run_cpu(cpu, wait_for_vcpu);  // returns unless vCPUs time-share CPUs
    wait_for_vcpu(cpu);
}

extern "C" [[noreturn]] void fw_main() {
    fw::enable_el2_mmu();
    fw::gic::init();
    const armvcpu::GuestConfig& cfg = armvcpu_guest_config[0];
    if (!fw::quiet()) print_banner(cfg);
    fw::enable_this_cpu(0);
    fw::init_exit_logs();
    const unsigned cpus = fw::start_secondary_cpus();
    fw::setup_vms(cpus);
    const bool shared = fw::sched::place(cpus);
    // (With time-shared CPUs the first EL2 thread overflows its own stack.)
    if ((cfg.selftest & armvcpu::kSelfTestStackOverflow) != 0 && !shared) {
        fw::uart::put_str("armvcpu: self-test: overflowing the EL2 stack\n");
        fw::overflow_el2_stack();
    }
    if ((cfg.selftest & armvcpu::kSelfTestCountEl2) != 0) fw::start_counting_el2();
    // Every VM's first vCPU starts now; CPU 0 runs VM 1's (when CPUs are
    // time-shared, VM 1's is a start request like the others').
    for (unsigned v = shared ? 0 : 1; v < fw::g_num_vms; ++v) {
        fw::post_start_request(fw::g_vms[v].first_cpu, fw::g_vms[v].cfg.entry, fw::g_vms[v].cfg.x0);
    }
    fw::sched::run_cpu(0, wait_for_vcpu);  // returns unless vCPUs time-share CPUs
    fw::send_event();
    run_vcpu(0, cfg.entry, cfg.x0);
    wait_for_vcpu(0);
}
