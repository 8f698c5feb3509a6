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
#include "armvcpu/vgic_dist.hpp"
#include "el2_mmu.hpp"
#include "fw_hal.hpp"
#include "gic.hpp"
#include "host_link.hpp"
#include "sysreg.hpp"
#include "uart.hpp"

extern "C" {
extern armvcpu::GuestConfig armvcpu_guest_config[];
extern armvcpu::FastRuleTable armvcpu_fast_rules;
extern armvcpu::ConsoleRing armvcpu_guest_console[];
extern std::uint64_t armvcpu_pending_irq[];
extern armvcpu::ExitLog armvcpu_exit_log[];
extern std::uint8_t armvcpu_fast_path[];
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

// pc is the instruction that made the exit (for HVC one before ELR_EL2), as
// the host shows it.
void log_exit(std::uint64_t seq, const ExitReason& reason, std::uint64_t pc) {
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
    put_hex(pc);
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
    std::uint32_t stopped;   // atomic
    std::uint32_t features;  // GuestConfig::features
    // The emulated GICD/GICR (with kFeatureVgic), under dist_lock.
    armvcpu::vgic::Distributor dist;
    std::uint32_t dist_lock;
};
Vm g_vms[fw::kMaxVms];
unsigned g_num_vms = 0;
unsigned g_vms_stopped = 0;  // atomic
Vm* g_cpu_vm[fw::kMaxCpus];  // the VM whose vCPU each physical CPU runs
std::uint64_t g_exits = 0;   // atomic: counted by every CPU

// A spin lock for state several CPUs share (a VM's emulated GIC).
class SpinLock {
public:
    explicit SpinLock(std::uint32_t& word) : word_(word) {
        while (__atomic_exchange_n(&word_, 1, __ATOMIC_ACQUIRE) != 0) {
            while (__atomic_load_n(&word_, __ATOMIC_RELAXED) != 0) asm volatile("yield");
        }
    }
    ~SpinLock() { __atomic_store_n(&word_, 0, __ATOMIC_RELEASE); }
    SpinLock(const SpinLock&) = delete;
    SpinLock& operator=(const SpinLock&) = delete;

private:
    std::uint32_t& word_;
};

// Devices of QEMU virt a VM may have passed through (GuestConfig::features):
// MMIO mapped into its stage 2, SPIs injected hardware-linked. The PL011
// (SPI 33) follows the VM's UartMode instead.
struct PassthroughDevice {
    std::uint32_t feature;
    std::uint64_t base;
    std::uint64_t size;
    std::uint32_t first_spi;
    std::uint32_t num_spis;
};
constexpr PassthroughDevice kPassthroughDevices[] = {
    {armvcpu::kFeatureRtc, 0x09010000, 0x1000, 34, 1},
    {armvcpu::kFeatureVirtio, 0x0a000000, 0x4000, 48, 32},
};
constexpr std::uint32_t kUartSpi = 33;

// True when physical SPI `intid` belongs to VM `vm` (and is injected into it).
bool vm_owns_spi(const Vm& vm, std::uint32_t intid) {
    if ((vm.features & armvcpu::kFeatureVgic) == 0) return false;
    if (intid == kUartSpi) return vm.uart_mode == armvcpu::UartMode::Passthrough;
    for (const PassthroughDevice& d : kPassthroughDevices) {
        if ((vm.features & d.feature) != 0 && intid >= d.first_spi &&
            intid < d.first_spi + d.num_spis) {
            return true;
        }
    }
    return false;
}

// Set when a vCPU's emulated GIC state changed in a way it must act on
// before its next entry (something became pending or deliverable, its timer
// PPI was enabled or disabled); its CPU clears it.
std::uint32_t g_vgic_dirty[fw::kMaxCpus];

void mark_vgic_dirty(const Vm& vm, unsigned vcpu, unsigned self_cpu) {
    const unsigned cpu = vm.first_cpu + vcpu;
    __atomic_store_n(&g_vgic_dirty[cpu], 1, __ATOMIC_RELEASE);
    if (cpu != self_cpu) fw::gic::kick(cpu);
}

// The exit log (host_interface.hpp): one entry per exit, published when it
// is known who answered it.
class ExitLogScope {
public:
    ExitLogScope(unsigned cpu, const Vm& vm, unsigned vcpu, const armvcpu::VCpuRunResult& r)
        : log_((vm.features & armvcpu::kFeatureExitLog) != 0 ? &armvcpu_exit_log[cpu] : nullptr) {
        if (log_ == nullptr) return;
        entry_ = &log_->entries[log_->written % armvcpu::kExitLogEntries];
        entry_->time = ARMVCPU_READ_SYSREG(cntpct_el0);
        entry_->arg = armvcpu::exit_log_arg(r.reason);
        entry_->esr =
            r.type == ExceptionType::Synchronous ? static_cast<std::uint32_t>(r.syndrome.esr) : 0;
        entry_->kind = static_cast<std::uint8_t>(r.reason.kind);
        entry_->vm_id = static_cast<std::uint8_t>(vm.id);
        entry_->vcpu_id = static_cast<std::uint8_t>(vcpu);
        entry_->handler = armvcpu::ExitLogHandler::Firmware;
    }
    void set_handler(armvcpu::ExitLogHandler h) {
        if (entry_ != nullptr) entry_->handler = h;
    }
    ~ExitLogScope() {
        if (log_ != nullptr) __atomic_store_n(&log_->written, log_->written + 1, __ATOMIC_RELEASE);
    }
    ExitLogScope(const ExitLogScope&) = delete;
    ExitLogScope& operator=(const ExitLogScope&) = delete;

private:
    armvcpu::ExitLog* log_;
    armvcpu::ExitLogEntry* entry_ = nullptr;
};

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
    // EL2 traps the guest keeps (not part of its context): FP/SIMD, SVE and
    // SME untrapped, so guests that use them run (CPTR_EL2, Arm ARM D17.2.30:
    // RES1 bits [7:0], 9 and 13; TZ [8] and TSM [12] are RES1 only without
    // SVE / SME). Each physical CPU runs one vCPU and EL2 never touches
    // FP/SIMD/SVE/SME state (-mgeneral-regs-only), so that state needs no
    // saving.
    const std::uint64_t pfr0 = ARMVCPU_READ_SYSREG(id_aa64pfr0_el1);
    const std::uint64_t pfr1 = ARMVCPU_READ_SYSREG(id_aa64pfr1_el1);
    const bool sve = ((pfr0 >> 32) & 0xf) != 0;
    const bool sme = ((pfr1 >> 24) & 0xf) != 0;
    hal.write_sysreg(armvcpu::SysReg::cptr_el2,
                     0x22ffu | (sve ? 0 : 1u << 8) | (sme ? 0 : 1u << 12));
    fw::isb();
    // The largest vector lengths the CPU has (LEN = 0xf is clamped to them):
    // ZCR_EL2 (S3_4_C1_C2_0) and SMCR_EL2 (S3_4_C1_C2_6).
    if (sve) asm volatile("msr S3_4_C1_C2_0, %0" : : "r"(std::uint64_t{0xf}));
    if (sme) asm volatile("msr S3_4_C1_C2_6, %0" : : "r"(std::uint64_t{0xf}));
    hal.write_sysreg(armvcpu::SysReg::mdcr_el2, fw::mdcr_el2_bits());
    return *percpu;
}

// HCR_EL2 bits that let a guest use what the CPU has: pointer
// authentication (API | APK: its instructions and key registers untrapped)
// when ID_AA64ISAR1_EL1 APA/API/GPA/GPI or ID_AA64ISAR2_EL1 APA3/GPA3 say it
// is there, and allocation tags (ATA) with FEAT_MTE2.
std::uint64_t feature_hcr_bits() {
    const std::uint64_t isar1 = ARMVCPU_READ_SYSREG(id_aa64isar1_el1);
    const std::uint64_t isar2 = ARMVCPU_READ_SYSREG(S3_0_C0_C6_2);  // ID_AA64ISAR2_EL1
    const std::uint64_t pfr1 = ARMVCPU_READ_SYSREG(id_aa64pfr1_el1);
    const bool pauth = (isar1 & 0xff000ff0ull) != 0 || (isar2 & 0xff00ull) != 0;
    const bool mte2 = ((pfr1 >> 8) & 0xf) >= 2;
    return (pauth ? (1ull << 41) | (1ull << 40) : 0) | (mte2 ? 1ull << 56 : 0);
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

// Makes each physical SPI of the VM's devices enabled exactly when the
// guest's GIC would deliver it: a level-triggered device interrupt the guest
// cannot take must not keep firing at EL2. Called with dist_lock held.
void sync_passthrough_spi(const Vm& vm, std::uint32_t intid) {
    if (!vm_owns_spi(vm, intid)) return;
    fw::gic::set_enabled(0, intid, vm.dist.deliverable(vm.dist.route_of(intid), intid));
}

// Answers a guest access to its GICD/GICR frames from the VM's emulated GIC
// and carries the consequences to the physical GIC and the other vCPUs.
void emulate_vgic(Vm& vm, unsigned self_cpu, const ExitReason& reason, TrapFrame& frame) {
    namespace vg = armvcpu::vgic;
    SpinLock lock(vm.dist_lock);
    if (reason.kind == ExitKind::MmioRead) {
        const auto& r = reason.mmio_read;
        armvcpu::complete_mmio_read(frame, r, vm.dist.read(r.addr, r.width).value);
        return;
    }
    const auto& w = reason.mmio_write;
    const vg::WriteEffect e = vm.dist.write(w.addr, w.width, w.data).effect;
    if (w.addr == vg::kGicdBase + vg::gicd::CTLR) {
        // Group enables change what every interrupt's delivery means.
        for (std::uint32_t intid = 32; intid < vg::kNumIntids; ++intid) {
            sync_passthrough_spi(vm, intid);
        }
        for (unsigned v = 0; v < vm.num_vcpus; ++v) mark_vgic_dirty(vm, v, self_cpu);
        return;
    }
    if (e.bank == 0) {
        constexpr std::uint32_t kTimerBits =
            (1u << vg::kVirtualTimerPpi) | (1u << vg::kPhysicalTimerPpi);
        if ((e.enable_changed & kTimerBits) != 0 || e.pending_set != 0) {
            mark_vgic_dirty(vm, e.vcpu, self_cpu);
        }
    } else {
        for (unsigned b = 0; b < 32; ++b) {
            const std::uint32_t bit = 1u << b;
            const std::uint32_t intid = e.bank * 32 + b;
            if ((e.enable_changed & bit) != 0) sync_passthrough_spi(vm, intid);
            if ((e.pending_set & bit) != 0) mark_vgic_dirty(vm, vm.dist.route_of(intid), self_cpu);
        }
    }
    if (e.route_changed_intid != 0 && vm_owns_spi(vm, e.route_changed_intid)) {
        fw::gic::route_spi(e.route_changed_intid,
                           vm.first_cpu + vm.dist.route_of(e.route_changed_intid));
    }
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
    if (vcpu->setup({false, cfg.hcr_el2_set | feature_hcr_bits()}) != armvcpu::VCpuError::None ||
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

    // With an emulated GIC the guest's timer PPIs (the virtual timer, and
    // the EL1 physical timer it also runs directly) are enabled physically
    // only while the guest's redistributor would deliver them (synced below).
    const bool vgic = (vm.features & armvcpu::kFeatureVgic) != 0;
    constexpr std::uint32_t kTimerPpis[] = {armvcpu::vgic::kVirtualTimerPpi,
                                            armvcpu::vgic::kPhysicalTimerPpi};
    bool timer_ppi_on[2] = {true, true};  // as gic::init_cpu left them
    if (vgic) __atomic_store_n(&g_vgic_dirty[cpu], 1, __ATOMIC_RELEASE);

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
        const std::uint64_t sgis = __atomic_load_n(&g_pending_sgis[cpu], __ATOMIC_ACQUIRE);
        if (!vgic) {
            for (std::uint32_t intid = 0; intid < 16 && sgis != 0 && !waiting; ++intid) {
                const std::uint64_t bit = 1ull << intid;
                if ((sgis & bit) == 0) continue;
                if (vcpu->inject_interrupt(intid) != armvcpu::VCpuError::None) {
                    waiting = true;
                    break;
                }
                __atomic_fetch_and(&g_pending_sgis[cpu], ~bit, __ATOMIC_ACQ_REL);
            }
        } else if (const bool dirty = __atomic_exchange_n(&g_vgic_dirty[cpu], 0, __ATOMIC_ACQ_REL);
                   dirty || sgis != 0) {
            // The guest's GIC programming decides: SGIs it has not enabled
            // stay pending, and so do interrupts pended through its registers.
            SpinLock lock(vm.dist_lock);
            const armvcpu::vgic::Distributor& dist = vm.dist;
            for (unsigned t = 0; t < 2; ++t) {
                if (dist.deliverable(index, kTimerPpis[t]) != timer_ppi_on[t]) {
                    timer_ppi_on[t] = !timer_ppi_on[t];
                    fw::gic::set_enabled(cpu, kTimerPpis[t], timer_ppi_on[t]);
                }
            }
            for (std::uint32_t intid = 0; intid < 16 && !waiting; ++intid) {
                const std::uint64_t bit = 1ull << intid;
                if ((sgis & bit) == 0 || !dist.deliverable(index, intid)) continue;
                if (!fw::gic::inject(intid, false, dist.priority(index, intid))) {
                    waiting = true;
                    break;
                }
                __atomic_fetch_and(&g_pending_sgis[cpu], ~bit, __ATOMIC_ACQ_REL);
            }
            std::uint32_t intid = 0;
            while (!waiting && vm.dist.take_pending(index, intid)) {
                if (!fw::gic::inject(intid, false, dist.priority(index, intid))) {
                    vm.dist.set_pending(index, intid);
                    waiting = true;
                }
            }
            if (waiting) __atomic_store_n(&g_vgic_dirty[cpu], 1, __ATOMIC_RELEASE);
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
        ExitLogScope log(cpu, vm, index, result);
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
            if (intid == armvcpu::vgic::kVirtualTimerPpi || vm_owns_spi(vm, intid) ||
                (vgic && intid == armvcpu::vgic::kPhysicalTimerPpi)) {
                // The guest's own timers, or its device's SPI: handed over
                // hardware-linked, so the guest's deactivation deactivates
                // the physical interrupt.
                bool deliver = true;
                std::uint8_t priority = armvcpu::vgic::kDefaultPriority;
                if (vgic) {
                    SpinLock lock(vm.dist_lock);
                    deliver = vm.dist.deliverable(index, intid);
                    priority = vm.dist.priority(index, intid);
                    if (!deliver && intid >= 32) fw::gic::set_enabled(cpu, intid, false);
                }
                if (!deliver || !fw::gic::inject(intid, true, priority)) fw::gic::deactivate(intid);
                continue;
            }
            fw::gic::deactivate(intid);  // the host decides what it means
        } else if (reason.kind == ExitKind::Halt) {
            // WFI (trapped) or CPU_SUSPEND: Blocked until an interrupt is
            // pending for this CPU (a kick from another CPU included); the
            // next entry then takes it as an exit. A virtual interrupt
            // already pending in a list register is a wake-up event too
            // (found by armvcpu fuzz: a masked, pending timer interrupt left
            // CPU_SUSPEND asleep for ever).
            while (!fw::gic::pending() && !fw::gic::virtual_pending() &&
                   __atomic_load_n(&g_pending_sgis[cpu], __ATOMIC_ACQUIRE) == 0 &&
                   __atomic_load_n(&g_vgic_dirty[cpu], __ATOMIC_ACQUIRE) == 0) {
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
        if (vgic && (reason.kind == ExitKind::MmioRead || reason.kind == ExitKind::MmioWrite) &&
            vm.dist.claims(reason.kind == ExitKind::MmioRead ? reason.mmio_read.addr
                                                             : reason.mmio_write.addr)) {
            emulate_vgic(vm, cpu, reason, frame);
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
        const std::uint64_t n = __atomic_add_fetch(&g_exits, 1, __ATOMIC_RELAXED);
        if (!fw::host_attached()) {
            log_exit(n, reason,
                     armvcpu::instruction_address_from_preferred_return(
                         result.exception_pc, armvcpu::Esr{result.syndrome.esr},
                         result.type == armvcpu::ExceptionType::Synchronous));
        }
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
    vm.features = cfg.features;
    for (const PassthroughDevice& d : kPassthroughDevices) {
        if (err != armvcpu::stage2::MapError::None || (vm.features & d.feature) == 0) continue;
        err = s2.map(
            d.base, d.base, d.size,
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
    if ((vm.features & armvcpu::kFeatureVgic) != 0) {
        std::uint64_t mpidr[armvcpu::vgic::kMaxVcpus] = {};
        for (unsigned i = 0; i < vm.num_vcpus; ++i) mpidr[i] = guest_mpidr(i);
        vm.dist.reset(vm.num_vcpus, mpidr);
        // The devices' SPIs: Group 1, to the VM's first CPU, disabled until
        // the guest enables them in its own distributor.
        for (std::uint32_t intid = 32; intid < armvcpu::vgic::kNumIntids; ++intid) {
            if (!vm_owns_spi(vm, intid)) continue;
            fw::gic::set_enabled(0, intid, false);
            fw::gic::configure_spi(intid, vm.first_cpu);
        }
    }
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
    for (unsigned i = 0; i < fw::kMaxCpus; ++i) {
        armvcpu_exit_log[i].frequency = ARMVCPU_READ_SYSREG(cntfrq_el0);
    }

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
        vm.first_cpu = next_cpu;
        if (vm.num_vcpus == 0 || !build_vm(vm, mem)) {
            put_str("armvcpu: VM ");
            put_dec(vm.id);
            put_str(" not started (no CPU or memory for it)\n");
            if (k == 0) power_off();
            continue;
        }
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
