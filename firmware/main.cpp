// The EL2 firmware: sets up one VM with stage-2 translation, runs its vCPU
// and handles every exit with the core's classifier, asking the host when
// one is attached.
#include <cstdint>

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
extern armvcpu::GuestConfig armvcpu_guest_config;
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
    fw::report_exit(0, ExceptionType::Synchronous, {esr, far, 0}, elr,
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

extern "C" [[noreturn]] void fw_main() {
    fw::enable_el2_mmu();
    fw::gic::init();
    const armvcpu::GuestConfig cfg = armvcpu_guest_config;
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

    PhysicalTableMemory mem;
    armvcpu::stage2::Tables<PhysicalTableMemory> s2(mem, mem.alloc_table(), kIpaBits, kPaBits);
    auto err = s2.map(cfg.ipa_base, cfg.pa_base, cfg.size, {});
    const auto uart_mode = static_cast<armvcpu::UartMode>(cfg.uart_mode);
    if (err == armvcpu::stage2::MapError::None && uart_mode == armvcpu::UartMode::Passthrough) {
        // The guest writes the physical PL011 directly: Device memory, no execute.
        err = s2.map(
            cfg.uart_base, cfg.uart_base, 0x1000,
            {armvcpu::stage2::Access::ReadWrite, armvcpu::stage2::MemAttr::DeviceNGnRE, true});
    }
    if (err != armvcpu::stage2::MapError::None) {
        put_str("armvcpu: FATAL: cannot map guest RAM, error ");
        put_dec(static_cast<unsigned>(err));
        put_str("\n");
        power_off();
    }

    fw::FwHal hal;
    static armvcpu::PerCpu<fw::FwHal> percpu(hal, 0);
    percpu.hardware_enable(reinterpret_cast<std::uint64_t>(armvcpu_el2_vectors));
    // EL2 traps the guest keeps (not part of its context): FP/SIMD untrapped
    // (CPTR_EL2 RES1 bits only), debug and PMU registers not trapped.
    hal.write_sysreg(armvcpu::SysReg::cptr_el2, 0x33ff);
    hal.write_sysreg(armvcpu::SysReg::mdcr_el2, cfg.mdcr_el2);

    const std::uint64_t mpidr = hal.read_sysreg(armvcpu::SysReg::mpidr_el1);
    static armvcpu::psci::VmPowerState power{};
    power.num_vcpus = 1;
    power.mpidr[0] = mpidr;
    power.state[0] = static_cast<std::uint8_t>(armvcpu::psci::AffinityState::On);

    static armvcpu::VCpu<fw::FwHal> vcpu(hal, 1, 0, {mpidr, cfg.x0});
    vcpu.set_power_state(&power);
    if (vcpu.setup({false, cfg.hcr_el2_set}) != armvcpu::VCpuError::None ||
        vcpu.set_entry(cfg.entry) != armvcpu::VCpuError::None ||
        vcpu.set_ept_root(s2.vttbr(1), s2.vtcr()) != armvcpu::VCpuError::None ||
        vcpu.bind() != armvcpu::VCpuError::None) {
        put_str("armvcpu: FATAL: vCPU set-up failed\n");
        power_off();
    }
    asm volatile("tlbi vmalls12e1is" ::: "memory");
    fw::dsb_ish();
    fw::isb();
    if ((cfg.selftest & armvcpu::kSelfTestStackOverflow) != 0) {
        put_str("armvcpu: self-test: overflowing the EL2 stack\n");
        selftest_recurse(0);
    }

    // Single-stepping (HostAction::Step): the guest's software-step
    // exception is routed to EL2 with MDCR_EL2.TDE, armed with MDSCR_EL1.SS
    // and SPSR_EL2.SS (Arm ARM D2.12 "Software Step exceptions"); the guest's
    // own MDSCR_EL1 is restored after the step.
    constexpr std::uint64_t kMdscrSs = 1u << 0;
    constexpr std::uint64_t kMdcrTde = 1u << 8;
    constexpr std::uint64_t kSpsrSs = 1u << 21;
    bool stepping = false;
    std::uint64_t guest_mdscr = 0;

    std::uint64_t exits = 0;
    for (;;) {
        // An interrupt the host asked for, injected before the next entry.
        const std::uint64_t requested =
            __atomic_exchange_n(&armvcpu_pending_irq[0], 0, __ATOMIC_ACQ_REL);
        if (requested != 0 && vcpu.inject_interrupt(requested - 1) != armvcpu::VCpuError::None) {
            put_str("armvcpu: cannot inject INTID ");
            put_dec(requested - 1);
            put_str(" (no free list register)\n");
        }
        const armvcpu::VCpuRunResult result = vcpu.run();
        if (stepping) {
            hal.write_sysreg(armvcpu::SysReg::mdscr_el1, guest_mdscr);
            hal.write_sysreg(armvcpu::SysReg::mdcr_el2, cfg.mdcr_el2);
            vcpu.context().spsr &= ~kSpsrSs;
            stepping = false;
        }
        const ExitReason& reason = result.reason;
        if (reason.kind == ExitKind::Nothing) continue;

        // Interrupts and waits the firmware handles itself.
        if (reason.kind == ExitKind::ExternalInterrupt) {
            const auto intid = static_cast<std::uint32_t>(reason.external_interrupt.vector);
            if (!armvcpu::vgic::is_valid_intid(intid)) continue;  // spurious
            if (intid == armvcpu::vgic::kVirtualTimerPpi) {
                // The guest's own timer: hand it over, hardware-linked, so
                // the guest's deactivation deactivates the physical PPI.
                if (!fw::gic::inject(intid, true)) fw::gic::deactivate(intid);
                continue;
            }
            fw::gic::deactivate(intid);  // the host decides what it means
        } else if (reason.kind == ExitKind::Halt) {
            // WFI (trapped) or CPU_SUSPEND: Blocked until an interrupt is
            // pending for this CPU; the next entry then takes it as an exit.
            while (!fw::gic::pending()) asm volatile("wfi");
            vcpu.wake();
            continue;
        }

        TrapFrame& frame = vcpu.context();
        if (armvcpu::apply_fast_rules(armvcpu_fast_rules, reason, frame) ||
            (uart_mode == armvcpu::UartMode::Emulate &&
             armvcpu::emulate_pl011(armvcpu_guest_console, cfg.uart_base, reason, frame))) {
            if (vcpu.state() == armvcpu::VCpuState::Blocked) vcpu.wake();
            continue;
        }
        ++exits;
        if (!fw::host_attached()) log_exit(exits, reason, frame);
        const HostAction action = fw::report_exit(vcpu.vcpu_id(), result.type, result.syndrome,
                                                  result.exception_pc, reason, frame);
        bool keep_running = true;
        if (action == HostAction::Default) keep_running = apply_default(reason, frame);
        if (action == HostAction::Stop) keep_running = false;
        if (action == HostAction::Step) {
            guest_mdscr = hal.read_sysreg(armvcpu::SysReg::mdscr_el1);
            hal.write_sysreg(armvcpu::SysReg::mdscr_el1, guest_mdscr | kMdscrSs);
            hal.write_sysreg(armvcpu::SysReg::mdcr_el2, cfg.mdcr_el2 | kMdcrTde);
            frame.spsr |= kSpsrSs;
            stepping = true;
        }
        // A halted vCPU resumes once someone has answered for it.
        if (keep_running && vcpu.state() == armvcpu::VCpuState::Blocked) vcpu.wake();
        if (!keep_running) {
            put_str("armvcpu: VM 1 stopped after ");
            put_dec(exits);
            put_str(" exits (last: ");
            put_str(armvcpu::exit_kind_name(reason.kind));
            put_str(")\n");
            power_off();
        }
    }
}
