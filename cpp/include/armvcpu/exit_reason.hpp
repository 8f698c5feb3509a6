// ExitReason: why the guest stopped running, as axvcpu's AxVCpuExitReason
// names it, plus GuestException for every exit the classifier has no better word
// for (the original panics there; armvcpu reports it).
//
// ExitReason is a tagged union of trivially copyable structs so that the
// firmware can place it in the exit record verbatim and Python can read it
// back through armvcpu._core.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace armvcpu {

enum class ExitKind : std::uint32_t {
    Nothing = 0,  // handled inside the vCPU; nothing for the VMM to do
    Hypercall = 1,
    MmioRead = 2,
    MmioWrite = 3,
    SysRegRead = 4,
    SysRegWrite = 5,
    IoRead = 6,   // x86 port I/O: kept for parity, never produced on arm64
    IoWrite = 7,  // x86 port I/O: kept for parity, never produced on arm64
    ExternalInterrupt = 8,
    NestedPageFault = 9,
    Halt = 10,
    CpuUp = 11,
    CpuDown = 12,
    SystemDown = 13,
    FailEntry = 14,  // parity with axvcpu; never produced on arm64: a failed ERET
                     // is an Illegal State exception taken in the guest
    SendIpi = 15,
    GuestException = 16,  // any other exception: EC, ISS and PC for the host
};

inline constexpr std::uint32_t kNumExitKinds = 17;

constexpr const char* exit_kind_name(ExitKind kind) {
    switch (kind) {
        case ExitKind::Nothing: return "Nothing";
        case ExitKind::Hypercall: return "Hypercall";
        case ExitKind::MmioRead: return "MmioRead";
        case ExitKind::MmioWrite: return "MmioWrite";
        case ExitKind::SysRegRead: return "SysRegRead";
        case ExitKind::SysRegWrite: return "SysRegWrite";
        case ExitKind::IoRead: return "IoRead";
        case ExitKind::IoWrite: return "IoWrite";
        case ExitKind::ExternalInterrupt: return "ExternalInterrupt";
        case ExitKind::NestedPageFault: return "NestedPageFault";
        case ExitKind::Halt: return "Halt";
        case ExitKind::CpuUp: return "CpuUp";
        case ExitKind::CpuDown: return "CpuDown";
        case ExitKind::SystemDown: return "SystemDown";
        case ExitKind::FailEntry: return "FailEntry";
        case ExitKind::SendIpi: return "SendIpi";
        case ExitKind::GuestException: return "GuestException";
    }
    return nullptr;
}

namespace exit {

struct Nothing {};
struct Hypercall {
    std::uint64_t nr;       // X0
    std::uint64_t args[6];  // X1..X6
};
struct MmioRead {
    std::uint64_t addr;        // faulting IPA
    std::uint32_t width;       // access size in bytes
    std::uint32_t reg;         // Rt (SRT); 31 is XZR
    std::uint32_t reg_width;   // 8 when SF = 1, else 4
    std::uint32_t signed_ext;  // SSE
};
struct MmioWrite {
    std::uint64_t addr;
    std::uint64_t data;  // Rt's value masked to width
    std::uint32_t width;
    std::uint32_t reserved;
};
struct SysRegRead {
    std::uint64_t addr;  // encoding: op0, op1, CRn, CRm, op2 (see sysreg.hpp)
    std::uint32_t reg;   // Rt
    std::uint32_t reserved;
};
struct SysRegWrite {
    std::uint64_t addr;
    std::uint64_t value;
};
struct IoRead {
    std::uint32_t port;
    std::uint32_t width;
};
struct IoWrite {
    std::uint32_t port;
    std::uint32_t width;
    std::uint64_t data;
};
struct ExternalInterrupt {
    std::uint64_t vector;  // INTID
};
// NestedPageFault::access_flags bits.
inline constexpr std::uint64_t kAccessRead = 1u << 0;
inline constexpr std::uint64_t kAccessWrite = 1u << 1;
inline constexpr std::uint64_t kAccessExecute = 1u << 2;
// The syndrome did not describe the access (ISV = 0: LDP/STP, writeback
// forms, ...): the VMM must decode the instruction itself to emulate it.
inline constexpr std::uint64_t kAccessNoSyndrome = 1u << 3;
// The fault hit stage 2 during the guest's own stage-1 table walk (S1PTW).
inline constexpr std::uint64_t kAccessStage1Walk = 1u << 4;
// FAR_EL2 was not valid (FnV = 1): addr is the page's base only.
inline constexpr std::uint64_t kAccessPageOnly = 1u << 5;
// Set by the firmware: an instruction fetch at the very vector the previous
// exception it injected into this vCPU sent the guest to. The guest has no
// handler there (no vectors at all), so injecting another abort would only
// send it back here, for ever: the default stops the VM at this exit instead.
inline constexpr std::uint64_t kAccessAtInjectedVector = 1u << 6;

struct NestedPageFault {
    std::uint64_t addr;  // faulting IPA
    std::uint64_t access_flags;
};
struct Halt {};
struct CpuUp {
    std::uint64_t target_cpu;  // MPIDR affinity of the target
    std::uint64_t entry_point;
    std::uint64_t arg;
};
struct CpuDown {
    std::uint64_t state;
};
struct SystemDown {
    std::uint32_t reset;  // 1 for SYSTEM_RESET/SYSTEM_RESET2, 0 for SYSTEM_OFF
    std::uint32_t reserved;
};
struct FailEntry {
    std::uint64_t hardware_entry_failure_reason;
};
struct SendIpi {
    std::uint64_t target_cpu;
    std::uint64_t target_cpu_aux;
    std::uint32_t send_to_all;
    std::uint32_t send_to_self;
    std::uint64_t vector;
};
struct GuestException {
    std::uint64_t esr;
    std::uint64_t pc;
    std::uint32_t ec;
    std::uint32_t iss;
};

}  // namespace exit

// Every variant once: (ExitKind enumerator and struct name, union member).
// The union, make_exit() and the Python binding are all generated from it.
#define ARMVCPU_EXIT_VARIANTS(X)             \
    X(Nothing, nothing)                      \
    X(Hypercall, hypercall)                  \
    X(MmioRead, mmio_read)                   \
    X(MmioWrite, mmio_write)                 \
    X(SysRegRead, sysreg_read)               \
    X(SysRegWrite, sysreg_write)             \
    X(IoRead, io_read)                       \
    X(IoWrite, io_write)                     \
    X(ExternalInterrupt, external_interrupt) \
    X(NestedPageFault, nested_page_fault)    \
    X(Halt, halt)                            \
    X(CpuUp, cpu_up)                         \
    X(CpuDown, cpu_down)                     \
    X(SystemDown, system_down)               \
    X(FailEntry, fail_entry)                 \
    X(SendIpi, send_ipi)                     \
    X(GuestException, guest_exception)

struct ExitReason {
    ExitKind kind;
    std::uint32_t reserved;
    union {
#define ARMVCPU_X(Name, member) exit::Name member;
        ARMVCPU_EXIT_VARIANTS(ARMVCPU_X)
#undef ARMVCPU_X
        std::uint64_t raw[8];  // fixes the union's size for the exit record
    };
};

// make_exit(exit::Hypercall{...}) -> an ExitReason with the matching kind.
#define ARMVCPU_X(Name, member)                               \
    constexpr ExitReason make_exit(const exit::Name& value) { \
        ExitReason r{};                                       \
        r.kind = ExitKind::Name;                              \
        r.member = value;                                     \
        return r;                                             \
    }
ARMVCPU_EXIT_VARIANTS(ARMVCPU_X)
#undef ARMVCPU_X

#define ARMVCPU_X(Name, member) +1
static_assert(kNumExitKinds == 0 ARMVCPU_EXIT_VARIANTS(ARMVCPU_X));
#undef ARMVCPU_X
static_assert(std::is_trivially_copyable_v<ExitReason>);
static_assert(std::is_standard_layout_v<ExitReason>);
static_assert(sizeof(ExitReason) == 8 + 8 * 8);
static_assert(offsetof(ExitReason, raw) == 8);

// SMCCC's NOT_SUPPORTED (DEN0028 "Return codes"): -1 sign-extended into X0,
// what an HVC/SMC with a function ID nobody implements returns, as on a
// machine without a hypervisor (QEMU virt's own SMCCC handling).
inline constexpr std::uint64_t kSmcccNotSupported = ~0ull;

// What happens to an exit nobody answers (no host attached, the host asks for
// the default, or no host claimed it): the machine's own answer where a
// machine without a hypervisor has one.
enum class DefaultAnswer : std::uint8_t {
    Resume,               // Nothing, ExternalInterrupt, Halt: taken care of already
    NotSupported,         // Hypercall: x0 = NOT_SUPPORTED (-1), resume past the call
    InjectExternalAbort,  // an access to an IPA with neither RAM nor a device:
                          // a synchronous external abort taken to the guest's EL1
    Stop,                 // everything else: reported, then the VM stops (resuming an
                          // exit nobody emulated would re-execute it forever)
};

constexpr DefaultAnswer default_answer(ExitKind kind) {
    switch (kind) {
        case ExitKind::Nothing:
        case ExitKind::ExternalInterrupt:
        case ExitKind::Halt: return DefaultAnswer::Resume;
        case ExitKind::Hypercall: return DefaultAnswer::NotSupported;
        // Stage 2 maps RAM and passed-through devices; what faults outside
        // them (and no emulated device or host answered) is an address with
        // nothing behind it.
        case ExitKind::MmioRead:
        case ExitKind::MmioWrite:
        case ExitKind::NestedPageFault: return DefaultAnswer::InjectExternalAbort;
        default: return DefaultAnswer::Stop;
    }
}

// The default for this very exit: its kind's, except that a fetch fault at
// the vector of the abort just injected (kAccessAtInjectedVector) stops the
// VM rather than inject the same abort again.
constexpr DefaultAnswer default_answer(const ExitReason& reason) {
    if (reason.kind == ExitKind::NestedPageFault &&
        (reason.nested_page_fault.access_flags & exit::kAccessAtInjectedVector) != 0) {
        return DefaultAnswer::Stop;
    }
    return default_answer(reason.kind);
}

// True when the default answer ends the VM. The firmware applies the default
// and the host reads this, so both agree on when a VM ends.
constexpr bool default_stops_vm(ExitKind kind) {
    return default_answer(kind) == DefaultAnswer::Stop;
}
constexpr bool default_stops_vm(const ExitReason& reason) {
    return default_answer(reason) == DefaultAnswer::Stop;
}

}  // namespace armvcpu
