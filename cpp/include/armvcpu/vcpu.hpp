// VCpu<Hal>: one virtual CPU (the seeds' Aarch64VCpu), with axvcpu's state
// machine around it.
//
//   Created --setup--> Free --bind--> Ready --run--> Running --exit--> Ready
//   Running --exit with Halt--> Blocked --wake--> Ready
//   Ready --unbind--> Free
//
// A call in the wrong state moves the vCPU to Invalid and returns
// VCpuError::BadState (axvcpu's with_state_transition); an Invalid vCPU
// refuses everything.
#pragma once

#include <cstdint>

#include "armvcpu/classify.hpp"
#include "armvcpu/guest_context.hpp"
#include "armvcpu/hal.hpp"
#include "armvcpu/psci.hpp"
#include "armvcpu/trap_frame.hpp"

namespace armvcpu {

enum class VCpuState : std::uint8_t { Invalid = 0, Created, Free, Ready, Running, Blocked };

constexpr const char* vcpu_state_name(VCpuState s) {
    switch (s) {
        case VCpuState::Invalid: return "Invalid";
        case VCpuState::Created: return "Created";
        case VCpuState::Free: return "Free";
        case VCpuState::Ready: return "Ready";
        case VCpuState::Running: return "Running";
        case VCpuState::Blocked: return "Blocked";
    }
    return nullptr;
}

enum class VCpuError : std::uint8_t { None = 0, BadState, BadArgument };

// The EL2 traps every guest runs with (HCR_EL2, Arm ARM D17.2.48). VM turns
// on stage 2; FMO/IMO/AMO route physical FIQ/IRQ/SError to EL2; TSC traps
// SMC (PSCI reaches the core); TWI traps WFI so a halted vCPU is Blocked;
// RW makes EL1 AArch64. Dropping any of these loses control of the guest.
inline constexpr std::uint64_t kHcrVm = 1ull << 0;
inline constexpr std::uint64_t kHcrFmo = 1ull << 3;
inline constexpr std::uint64_t kHcrImo = 1ull << 4;
inline constexpr std::uint64_t kHcrAmo = 1ull << 5;
inline constexpr std::uint64_t kHcrTwi = 1ull << 13;
inline constexpr std::uint64_t kHcrTsc = 1ull << 19;
inline constexpr std::uint64_t kHcrRw = 1ull << 31;
inline constexpr std::uint64_t kHcrGuest = kHcrVm | kHcrFmo | kHcrImo | kHcrAmo | kHcrTsc | kHcrRw;

// SCTLR_EL1 with the MMU and caches off: the RES1 bits of Armv8.0.
inline constexpr std::uint64_t kSctlrEl1Reset = 0x30D00800;
// SPSR for entering EL1h with D, A, I and F masked (the arm64 boot protocol).
inline constexpr std::uint64_t kSpsrEl1h = 0x3c5;
// CNTHCTL_EL2: EL1PCTEN | EL1PCEN, the EL1 physical counter and timer untrapped.
inline constexpr std::uint64_t kCnthctlEl1Access = 0x3;

struct VCpuCreateConfig {
    std::uint64_t mpidr = 0;  // the guest's MPIDR_EL1 (VMPIDR_EL2)
    std::uint64_t dtb = 0;    // X0 at entry (the arm64 boot protocol's DTB)
};

struct VCpuSetupConfig {
    bool trap_wfi = false;          // HCR_EL2.TWI: WFI becomes a Halt exit
    std::uint64_t hcr_el2_set = 0;  // further traps, ORed into HCR_EL2
};

// What run() returns: the exit, and the raw facts it came from.
struct VCpuRunResult {
    VCpuError error;
    ExceptionType type;
    Syndrome syndrome;
    ExitReason reason;
    std::uint64_t exception_pc;  // ELR_EL2 at the exit, before classification moved it
};

template <Hal H>
class VCpu {
public:
    // The seeds' new(vm_id, vcpu_id, config).
    constexpr VCpu(H& hal, std::uint32_t vm_id, std::uint32_t vcpu_id,
                   const VCpuCreateConfig& config)
        : hal_(hal), vm_id_(vm_id), vcpu_id_(vcpu_id), mpidr_(config.mpidr) {
        ctx_.spsr = kSpsrEl1h;
        ctx_.set_argument(config.dtb);
        sysregs_.sctlr_el1 = kSctlrEl1Reset;
        sysregs_.vmpidr_el2 = config.mpidr;
        sysregs_.cnthctl_el2 = kCnthctlEl1Access;
        sysregs_.hcr_el2 = kHcrGuest;
        state_ = VCpuState::Created;
    }

    [[nodiscard]] constexpr VCpuState state() const { return state_; }
    [[nodiscard]] constexpr std::uint32_t vm_id() const { return vm_id_; }
    [[nodiscard]] constexpr std::uint32_t vcpu_id() const { return vcpu_id_; }
    [[nodiscard]] constexpr std::uint64_t mpidr() const { return mpidr_; }
    [[nodiscard]] constexpr const TrapFrame& context() const { return ctx_; }
    [[nodiscard]] constexpr TrapFrame& context() { return ctx_; }
    [[nodiscard]] constexpr const GuestSystemRegisters& guest_system_regs() const {
        return sysregs_;
    }
    [[nodiscard]] constexpr GuestSystemRegisters& guest_system_regs() { return sysregs_; }

    // The VM's shared PSCI power state, for CPU_ON/AFFINITY_INFO answers.
    constexpr void set_power_state(psci::VmPowerState* power) { power_ = power; }
    // The SMCCC its PSCI/SMCCC calls are answered by (classify_psci).
    constexpr void set_smccc(psci::Smccc smccc) { smccc_ = smccc; }

    // Created -> Free.
    constexpr VCpuError setup(const VCpuSetupConfig& config) {
        if (!expect(VCpuState::Created)) return VCpuError::BadState;
        sysregs_.vpidr_el2 = hal_.read_sysreg(SysReg::midr_el1);
        if (config.trap_wfi) sysregs_.hcr_el2 |= kHcrTwi;
        sysregs_.hcr_el2 |= config.hcr_el2_set;
        state_ = VCpuState::Free;
        return VCpuError::None;
    }

    // Where the guest starts; before the first bind().
    constexpr VCpuError set_entry(std::uint64_t entry) {
        if (!expect(VCpuState::Created, VCpuState::Free)) return VCpuError::BadState;
        ctx_.set_exception_pc(entry);
        return VCpuError::None;
    }

    // The stage-2 root: VTTBR_EL2 (table base and VMID) and VTCR_EL2.
    constexpr VCpuError set_ept_root(std::uint64_t vttbr, std::uint64_t vtcr) {
        if (!expect(VCpuState::Created, VCpuState::Free)) return VCpuError::BadState;
        sysregs_.vttbr_el2 = vttbr;
        sysregs_.vtcr_el2 = vtcr;
        return VCpuError::None;
    }

    // Free -> Ready: this physical CPU now holds the guest's EL1 context.
    constexpr VCpuError bind() {
        if (!expect(VCpuState::Free)) return VCpuError::BadState;
        sysregs_.restore(hal_);
        state_ = VCpuState::Ready;
        return VCpuError::None;
    }

    // Ready -> Free: the EL1 context goes back into this object.
    constexpr VCpuError unbind() {
        if (!expect(VCpuState::Ready, VCpuState::Blocked)) return VCpuError::BadState;
        sysregs_.store(hal_);
        state_ = VCpuState::Free;
        return VCpuError::None;
    }

    // Ready -> Running -> Ready (or Blocked after a Halt): enters the guest
    // and classifies how it came back.
    constexpr VCpuRunResult run() {
        if (!expect(VCpuState::Ready)) {
            return {
                VCpuError::BadState, ExceptionType::Synchronous, {}, make_exit(exit::Nothing{}), 0};
        }
        state_ = VCpuState::Running;
        const ExceptionType type = hal_.enter_guest(ctx_);
        const std::uint64_t exception_pc = ctx_.exception_pc();
        const Syndrome syndrome{hal_.read_sysreg(SysReg::esr_el2),
                                hal_.read_sysreg(SysReg::far_el2),
                                hal_.read_sysreg(SysReg::hpfar_el2)};
        ExitReason reason{};
        switch (type) {
            case ExceptionType::Synchronous:
                reason = classify_sync(ctx_, syndrome, ClassifyContext{power_, vcpu_id_, smccc_});
                break;
            case ExceptionType::Irq:
                reason = make_exit(exit::ExternalInterrupt{hal_.irq_fetch()});
                break;
            default:  // FIQ, SError: reported with what the hardware said
                reason = guest_exception(ctx_, syndrome);
                break;
        }
        state_ = reason.kind == ExitKind::Halt ? VCpuState::Blocked : VCpuState::Ready;
        return {VCpuError::None, type, syndrome, reason, exception_pc};
    }

    // Blocked -> Ready: an interrupt (or the VMM) woke the vCPU.
    constexpr VCpuError wake() {
        if (!expect(VCpuState::Blocked)) return VCpuError::BadState;
        state_ = VCpuState::Ready;
        return VCpuError::None;
    }

    constexpr VCpuError set_gpr(unsigned index, std::uint64_t value) {
        if (state_ == VCpuState::Invalid) return VCpuError::BadState;
        if (index >= TrapFrame::kNumGprs) return VCpuError::BadArgument;
        ctx_.set_gpr(index, value);
        return VCpuError::None;
    }

    // X0: a hypercall's result, or an MMIO read's value before completion.
    constexpr void set_return_value(std::uint64_t value) { ctx_.set_argument(value); }

    constexpr VCpuError inject_interrupt(std::uint64_t vector) {
        if (state_ == VCpuState::Invalid) return VCpuError::BadState;
        return hal_.inject_interrupt(vector) ? VCpuError::None : VCpuError::BadArgument;
    }

private:
    // axvcpu's with_state_transition check: anything else invalidates.
    constexpr bool expect(VCpuState a, VCpuState b = VCpuState::Invalid) {
        if (state_ != VCpuState::Invalid && (state_ == a || state_ == b)) return true;
        state_ = VCpuState::Invalid;
        return false;
    }

    H& hal_;
    std::uint32_t vm_id_;
    std::uint32_t vcpu_id_;
    std::uint64_t mpidr_;
    VCpuState state_ = VCpuState::Invalid;
    TrapFrame ctx_{};
    GuestSystemRegisters sysregs_{};
    psci::VmPowerState* power_ = nullptr;
    psci::Smccc smccc_ = psci::Smccc::V1_1;
};

}  // namespace armvcpu
