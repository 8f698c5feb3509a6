// The EL2 firmware: sets up one VM with stage-2 translation, runs its vCPU
// and handles every exit with the core's classifier, asking the host when
// one is attached.
#include <cstdint>

#include "armvcpu/classify.hpp"
#include "armvcpu/host_interface.hpp"
#include "armvcpu/stage2.hpp"
#include "host_link.hpp"
#include "sysreg.hpp"
#include "uart.hpp"

extern "C" {
extern armvcpu::GuestConfig armvcpu_guest_config;
std::uint64_t armvcpu_run_guest(armvcpu::TrapFrame* frame);
[[noreturn]] void fw_main();
[[noreturn]] void fw_el2_fault(std::uint64_t type, std::uint64_t esr, std::uint64_t elr,
                               std::uint64_t far);
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

// HCR_EL2 (Arm ARM D17.2.48): VM enables stage 2; FMO/IMO/AMO route physical
// FIQ/IRQ/SError to EL2; TSC traps SMC so PSCI over SMC reaches us; RW makes
// EL1 AArch64. Dropping any of these loses control of the guest.
constexpr std::uint64_t kHcrVm = 1ull << 0;
constexpr std::uint64_t kHcrFmo = 1ull << 3;
constexpr std::uint64_t kHcrImo = 1ull << 4;
constexpr std::uint64_t kHcrAmo = 1ull << 5;
constexpr std::uint64_t kHcrTsc = 1ull << 19;
constexpr std::uint64_t kHcrRw = 1ull << 31;
constexpr std::uint64_t kHcrGuest = kHcrVm | kHcrFmo | kHcrImo | kHcrAmo | kHcrTsc | kHcrRw;

// SCTLR_EL1 with the MMU and caches off: only the RES1 bits of Armv8.0.
constexpr std::uint64_t kSctlrEl1Reset = 0x30D00800;
// SPSR for entering EL1h with D, A, I and F masked.
constexpr std::uint64_t kSpsrEl1h = 0x3c5;

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
                                          std::uint64_t far) {
    put_str("armvcpu: FATAL: exception at EL2, type ");
    put_dec(type);
    put_str(" ESR_EL2=");
    put_hex(esr);
    put_str(" ELR_EL2=");
    put_hex(elr);
    put_str(" FAR_EL2=");
    put_hex(far);
    put_str("\n");
    power_off();
}

extern "C" [[noreturn]] void fw_main() {
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
    put_str("\n");

    PhysicalTableMemory mem;
    armvcpu::stage2::Tables<PhysicalTableMemory> s2(mem, mem.alloc_table(), kIpaBits, kPaBits);
    const auto err = s2.map(cfg.ipa_base, cfg.pa_base, cfg.size, {});
    if (err != armvcpu::stage2::MapError::None) {
        put_str("armvcpu: FATAL: cannot map guest RAM, error ");
        put_dec(static_cast<unsigned>(err));
        put_str("\n");
        power_off();
    }

    ARMVCPU_WRITE_SYSREG(vtcr_el2, s2.vtcr());
    ARMVCPU_WRITE_SYSREG(vttbr_el2, s2.vttbr(1));
    ARMVCPU_WRITE_SYSREG(vpidr_el2, ARMVCPU_READ_SYSREG(midr_el1));
    ARMVCPU_WRITE_SYSREG(vmpidr_el2, ARMVCPU_READ_SYSREG(mpidr_el1));
    ARMVCPU_WRITE_SYSREG(cptr_el2, 0x33ff);  // RES1 bits only: FP/SIMD not trapped
    ARMVCPU_WRITE_SYSREG(cnthctl_el2, 0x3);  // EL1PCTEN | EL1PCEN
    ARMVCPU_WRITE_SYSREG(cntvoff_el2, 0);
    ARMVCPU_WRITE_SYSREG(sctlr_el1, kSctlrEl1Reset);
    ARMVCPU_WRITE_SYSREG(hcr_el2, kHcrGuest);
    fw::isb();
    asm volatile("tlbi vmalls12e1is" ::: "memory");
    fw::dsb_ish();
    fw::isb();

    TrapFrame frame{};
    frame.set_exception_pc(cfg.entry);
    frame.spsr = kSpsrEl1h;
    frame.set_argument(cfg.x0);

    constexpr unsigned kVcpu = 0;
    std::uint64_t exits = 0;
    for (;;) {
        const std::uint64_t raw_type = armvcpu_run_guest(&frame);
        const armvcpu::Syndrome syndrome{ARMVCPU_READ_SYSREG(esr_el2), ARMVCPU_READ_SYSREG(far_el2),
                                         ARMVCPU_READ_SYSREG(hpfar_el2)};
        const auto type = static_cast<ExceptionType>(raw_type & 3);
        ExitReason reason;
        if (raw_type == 0) {
            reason = armvcpu::classify_sync(frame, syndrome);
        } else if (raw_type == 1) {
            // No interrupt controller is set up yet: 1023 is GICv3's "spurious".
            reason = armvcpu::make_exit(armvcpu::exit::ExternalInterrupt{1023});
        } else {
            // FIQ, SError, or anything from AArch32: report what we saw.
            const armvcpu::Esr esr{syndrome.esr};
            reason = armvcpu::make_exit(armvcpu::exit::GuestException{
                syndrome.esr, frame.exception_pc(), esr.ec(), esr.iss()});
        }
        if (reason.kind == ExitKind::Nothing) continue;

        ++exits;
        if (!fw::host_attached()) log_exit(exits, reason, frame);
        const HostAction action = fw::report_exit(kVcpu, type, syndrome, reason, frame);
        bool keep_running = true;
        if (action == HostAction::Default) keep_running = apply_default(reason, frame);
        if (action == HostAction::Stop) keep_running = false;
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
