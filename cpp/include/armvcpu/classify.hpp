// Exit classification: the seeds' handle_exception_sync, done right. One
// function that the firmware runs on every synchronous exit and that Python
// runs on recorded syndromes, so both sides reach the same conclusion from
// the same bits.
//
// Rules the original got wrong, and this gets right:
//  - a data abort with ISV = 0 is a NestedPageFault flagged kAccessNoSyndrome,
//    never decoded from the invalid SAS/SRT/SF fields;
//  - MMIO write data is masked to the access width;
//  - the PC advances by IL for instructions that are emulated here (SMC,
//    MSR/MRS, data aborts, WFx) and never for HVC, whose ELR_EL2 already
//    points past it (instruction_address_from_preferred_return() says which
//    instruction made an exit);
//  - an exception class without a better exit is reported (GuestException),
//    never a panic.
#pragma once

#include <cstdint>

#include "armvcpu/esr.hpp"
#include "armvcpu/exit_reason.hpp"
#include "armvcpu/iss.hpp"
#include "armvcpu/mmio.hpp"
#include "armvcpu/psci.hpp"
#include "armvcpu/sysreg.hpp"
#include "armvcpu/trap_frame.hpp"

namespace armvcpu {

// What classification may consult besides the syndrome and the frame.
struct ClassifyContext {
    // The VM's vCPU power states for PSCI; nullptr for a VM without one (then
    // CPU_ON always becomes a CpuUp exit and AFFINITY_INFO reports ON).
    psci::VmPowerState* power = nullptr;
    unsigned vcpu_index = 0;
    // Which SMCCC the VM's firmware interface offers (QEMU virt's, for a
    // guest booted as bare QEMU would boot it).
    psci::Smccc smccc = psci::Smccc::V1_1;
};

// The seeds' hypercall convention: number in X0, arguments in X1..X6.
constexpr ExitReason hypercall_from(const TrapFrame& frame) {
    exit::Hypercall h{};
    h.nr = frame.gpr(0);
    for (unsigned i = 0; i < 6; ++i) h.args[i] = frame.gpr(i + 1);
    return make_exit(h);
}

constexpr void set_psci_result(TrapFrame& frame, psci::ReturnCode code) {
    // Return codes are signed 32-bit values, sign-extended in X0.
    frame.set_gpr(0, static_cast<std::uint64_t>(static_cast<std::int64_t>(code)));
}

// A PSCI or SMCCC call (the caller has checked psci::is_core_function).
// Calls the core can answer set X0 and return Nothing; the rest are exits.
constexpr ExitReason classify_psci(TrapFrame& frame, const ClassifyContext& ctx) {
    using psci::Function;
    using psci::ReturnCode;
    const std::uint64_t x0 = frame.gpr(0);
    // SMC32-convention calls pass their arguments in W1..W7 (DEN0028 2.4):
    // the upper halves of X1..X7 are not part of the call.
    const bool wide = psci::is_smc64(x0);
    const auto arg = [&frame, wide](unsigned i) {
        const std::uint64_t v = frame.gpr(i);
        return wide ? v : (v & 0xffffffffu);
    };
    if (ctx.smccc == psci::Smccc::QemuVirt && psci::absent_on_qemu_virt(x0)) {
        set_psci_result(frame, ReturnCode::NotSupported);
        return make_exit(exit::Nothing{});
    }
    switch (psci::canonical(x0)) {
        case Function::PsciVersion: frame.set_gpr(0, psci::kPsciVersion); break;
        case Function::SmcccVersion: frame.set_gpr(0, psci::kSmcccVersion); break;
        case Function::PsciFeatures:
            set_psci_result(frame, psci::is_implemented(arg(1), ctx.smccc)
                                       ? ReturnCode::Success
                                       : ReturnCode::NotSupported);
            break;
        case Function::SmcccArchFeatures:
            // No ARCH_WORKAROUND_* service is offered; only the call itself.
            set_psci_result(frame, psci::canonical(arg(1)) == Function::SmcccArchFeatures
                                       ? ReturnCode::Success
                                       : ReturnCode::NotSupported);
            break;
        case Function::MigrateInfoType: frame.set_gpr(0, psci::kMigrateInfoNotRequired); break;
        case Function::CpuSuspend:
            // Every power state is treated as standby: wait for an interrupt,
            // then return SUCCESS (DEN0022 5.4.2 allows this).
            set_psci_result(frame, ReturnCode::Success);
            return make_exit(exit::Halt{});
        case Function::CpuOn: {
            const std::uint64_t target = arg(1);
            if (ctx.power != nullptr) {
                const ReturnCode rc = ctx.power->try_cpu_on(target);
                set_psci_result(frame, rc);
                if (rc != ReturnCode::Success) break;
            } else {
                set_psci_result(frame, ReturnCode::Success);
            }
            return make_exit(exit::CpuUp{target, arg(2), arg(3)});
        }
        case Function::CpuOff:
            if (ctx.power != nullptr) ctx.power->store(ctx.vcpu_index, psci::AffinityState::Off);
            return make_exit(exit::CpuDown{0});
        case Function::AffinityInfo: {
            if (arg(2) != 0) {  // only affinity level 0 is described
                set_psci_result(frame, ReturnCode::InvalidParameters);
                break;
            }
            if (ctx.power == nullptr) {
                frame.set_gpr(0, static_cast<std::uint64_t>(psci::AffinityState::On));
                break;
            }
            const int index = ctx.power->index_of(arg(1));
            if (index < 0) {
                set_psci_result(frame, ReturnCode::InvalidParameters);
            } else {
                frame.set_gpr(
                    0, static_cast<std::uint64_t>(ctx.power->load(static_cast<unsigned>(index))));
            }
            break;
        }
        case Function::SystemOff: return make_exit(exit::SystemDown{0, 0});
        case Function::SystemReset:
        case Function::SystemReset2: return make_exit(exit::SystemDown{1, 0});
        default: set_psci_result(frame, ReturnCode::NotSupported); break;
    }
    return make_exit(exit::Nothing{});
}

// ICC_SGI1R_EL1, ICC_ASGI1R_EL1 and ICC_SGI0R_EL1 share one layout (GICv3,
// IHI 0069, 12.11.x): TargetList [15:0], Aff1 [23:16], INTID [27:24],
// Aff2 [39:32], IRM [40], RS [47:44], Aff3 [55:48].
// SendIpi.target_cpu is the affinity of the first PE the TargetList can name
// (Aff3.Aff2.Aff1.(RS * 16)) in MPIDR layout; target_cpu_aux is TargetList,
// bit n naming Aff0 = RS * 16 + n. With IRM = 1 the SGI goes to every PE but
// the sender and the target fields are ignored.
constexpr exit::SendIpi decode_sgi_register(std::uint64_t value) {
    exit::SendIpi ipi{};
    ipi.vector = (value >> 24) & 0xf;
    if (((value >> 40) & 1) != 0) {
        ipi.send_to_all = 1;
        return ipi;
    }
    const std::uint64_t aff1 = (value >> 16) & 0xff;
    const std::uint64_t aff2 = (value >> 32) & 0xff;
    const std::uint64_t aff3 = (value >> 48) & 0xff;
    const std::uint64_t rs = (value >> 44) & 0xf;
    ipi.target_cpu = (aff3 << 32) | (aff2 << 16) | (aff1 << 8) | (rs << 4);
    ipi.target_cpu_aux = value & 0xffff;
    return ipi;
}

// The seeds' builtin_sysreg_access_handler: accesses the core turns into a
// specific exit instead of a generic SysRegWrite. Returns false when the
// access is not one of them.
constexpr bool builtin_sysreg_access(const SysRegIss& iss, const TrapFrame& frame,
                                     ExitReason& out) {
    if (iss.is_read()) return false;
    const std::uint32_t key = iss.key();
    if (key == kIccSgi1rEl1.iss_key() || key == kIccAsgi1rEl1.iss_key() ||
        key == kIccSgi0rEl1.iss_key()) {
        out = make_exit(decode_sgi_register(frame.gpr(iss.rt())));
        return true;
    }
    return false;
}

// ELR_EL2 holds the "preferred exception return address" (Arm ARM DDI 0487,
// D1.3.2 "Preferred exception return address"; per class in the ESR_EL2
// descriptions): for SVC and HVC it is the instruction after the call, so
// the call returns past it; for every other synchronous exception (a trapped
// instruction, SMC trapped by HCR_EL2.TSC included, an abort, BRK, a WFx
// trap, a software step, an alignment fault) it is the instruction that made
// the exception. For an interrupt or SError no instruction made it: the
// address is the instruction that had not run yet.
constexpr bool preferred_return_is_next_instruction(ExceptionClass ec) {
    switch (ec) {
        case ExceptionClass::Svc64:
        case ExceptionClass::Hvc64:
        case ExceptionClass::Svc32:
        case ExceptionClass::Hvc32: return true;
        default: return false;
    }
}

// The address of the instruction that caused an exception, from its preferred
// exception return address (ELR_EL2 as the exception left it) and ESR_EL2:
// for SVC/HVC one instruction back (ESR_EL2.IL: 4 bytes, or 2 for a 16-bit
// T32 SVC), otherwise the return address itself. This is what "the exit's
// pc" means everywhere (firmware log, host, traces).
constexpr std::uint64_t instruction_address_from_preferred_return(std::uint64_t preferred_return,
                                                                  const Esr& esr,
                                                                  bool synchronous = true) {
    if (synchronous && preferred_return_is_next_instruction(esr.exception_class())) {
        return preferred_return - esr.instruction_length();
    }
    return preferred_return;
}

constexpr void advance_pc(TrapFrame& frame, const Esr& esr) {
    frame.set_exception_pc(frame.exception_pc() + esr.instruction_length());
}

constexpr ExitReason guest_exception(const TrapFrame& frame, const Syndrome& s) {
    const Esr esr{s.esr};
    return make_exit(exit::GuestException{s.esr, frame.exception_pc(), esr.ec(), esr.iss()});
}

constexpr ExitReason classify_data_abort(TrapFrame& frame, const Syndrome& s) {
    const Esr esr{s.esr};
    const DataAbortIss da{esr.iss()};
    if (!da.dfsc().is_stage2_resolvable() || da.ea()) return guest_exception(frame, s);
    const FaultAddress fa = fault_ipa(s.hpfar, s.far, da.fnv());
    std::uint64_t flags = da.wnr() ? exit::kAccessWrite : exit::kAccessRead;
    if (!da.isv()) flags |= exit::kAccessNoSyndrome;
    if (da.s1ptw()) flags |= exit::kAccessStage1Walk;
    if (!fa.offset_valid) flags |= exit::kAccessPageOnly;
    // Only a fully described, single-register access is emulated here; the
    // VMM gets everything else with the PC still on the instruction.
    if (!da.isv() || da.s1ptw() || da.cm() || !fa.offset_valid) {
        return make_exit(exit::NestedPageFault{fa.ipa, flags});
    }
    const std::uint32_t width = da.access_size();
    ExitReason r{};
    if (da.wnr()) {
        r = make_exit(exit::MmioWrite{fa.ipa, frame.gpr(da.srt()) & width_mask(width), width, 0});
    } else {
        r = make_exit(
            exit::MmioRead{fa.ipa, width, da.srt(), da.sf() ? 8u : 4u, da.sse() ? 1u : 0u});
    }
    advance_pc(frame, esr);
    return r;
}

// Classifies a synchronous exception taken from the guest. May update the
// frame: the PC past an emulated instruction, X0 for calls answered here.
constexpr ExitReason classify_sync(TrapFrame& frame, const Syndrome& syndrome,
                                   const ClassifyContext& ctx = {}) {
    const Esr esr{syndrome.esr};
    switch (esr.exception_class()) {
        case ExceptionClass::Hvc64:
            if (psci::is_core_function(frame.gpr(0))) return classify_psci(frame, ctx);
            return hypercall_from(frame);
        case ExceptionClass::Smc64:
            // A trapped SMC (HCR_EL2.TSC) leaves ELR_EL2 on the SMC itself.
            if (psci::is_core_function(frame.gpr(0))) {
                advance_pc(frame, esr);
                return classify_psci(frame, ctx);
            }
            // Not ours and no secure firmware to forward it to: an SMCCC call
            // like an HVC (x0 = function ID), returning past the SMC; nobody
            // claims it by default, so it gets NOT_SUPPORTED.
            advance_pc(frame, esr);
            return hypercall_from(frame);
        case ExceptionClass::SysReg64: {
            const SysRegIss iss{esr.iss()};
            ExitReason r{};
            if (!builtin_sysreg_access(iss, frame, r)) {
                r = iss.is_read() ? make_exit(exit::SysRegRead{iss.key(), iss.rt(), 0})
                                  : make_exit(exit::SysRegWrite{iss.key(), frame.gpr(iss.rt())});
            }
            advance_pc(frame, esr);
            return r;
        }
        case ExceptionClass::WfxTrap: {
            const WfxIss iss{esr.iss()};
            advance_pc(frame, esr);
            // WFE is a hint a VMM may treat as a yield; WFI waits for an interrupt.
            if (iss.ti() == WfxKind::Wfe || iss.ti() == WfxKind::Wfet) {
                return make_exit(exit::Nothing{});
            }
            return make_exit(exit::Halt{});
        }
        case ExceptionClass::DataAbortLower: return classify_data_abort(frame, syndrome);
        case ExceptionClass::InstrAbortLower: {
            const InstrAbortIss ia{esr.iss()};
            if (!ia.ifsc().is_stage2_resolvable() || ia.ea()) {
                return guest_exception(frame, syndrome);
            }
            const FaultAddress fa = fault_ipa(syndrome.hpfar, syndrome.far, ia.fnv());
            std::uint64_t flags = exit::kAccessExecute;
            if (ia.s1ptw()) flags |= exit::kAccessStage1Walk;
            if (!fa.offset_valid) flags |= exit::kAccessPageOnly;
            return make_exit(exit::NestedPageFault{fa.ipa, flags});
        }
        default: break;
    }
    return guest_exception(frame, syndrome);
}

}  // namespace armvcpu
