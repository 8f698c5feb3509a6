// armvcpu._core: the core, bound to Python. This file only binds; every
// decision lives in cpp/include/armvcpu.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "armvcpu/classify.hpp"
#include "armvcpu/esr.hpp"
#include "armvcpu/exit_reason.hpp"
#include "armvcpu/host_interface.hpp"
#include "armvcpu/psci.hpp"
#include "armvcpu/trap_frame.hpp"

namespace py = pybind11;
using namespace armvcpu;

namespace {

std::string hex(std::uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

// Copies a bytes-like object into a trivially copyable struct, insisting on
// the exact size so a truncated read from the target is an error, not garbage.
template <class T>
T from_buffer(const py::buffer& data, const char* what) {
    const py::buffer_info info = data.request();
    const auto size = static_cast<std::size_t>(info.size * info.itemsize);
    if (size != sizeof(T)) {
        throw py::value_error(std::string(what) + " needs exactly " + std::to_string(sizeof(T)) +
                              " bytes, got " + std::to_string(size));
    }
    T value;
    std::memcpy(&value, info.ptr, sizeof(T));
    return value;
}

template <class T>
py::bytes to_bytes(const T& value) {
    return py::bytes(reinterpret_cast<const char*>(&value), sizeof(T));
}

unsigned checked_gpr_index(int index) {
    if (index < 0 || index >= static_cast<int>(TrapFrame::kNumGprs)) {
        throw py::index_error("general-purpose register index " + std::to_string(index) +
                              " out of range: a TrapFrame holds x0..x30");
    }
    return static_cast<unsigned>(index);
}

py::tuple args_tuple(const std::uint64_t (&args)[6]) {
    py::tuple t(6);
    for (std::size_t i = 0; i < 6; ++i) t[i] = args[i];
    return t;
}

py::object variant_of(const ExitReason& r) {
    switch (r.kind) {
#define ARMVCPU_X(Name, member) \
    case ExitKind::Name: return py::cast(r.member);
        ARMVCPU_EXIT_VARIANTS(ARMVCPU_X)
#undef ARMVCPU_X
    }
    throw py::value_error("exit record holds an unknown exit kind " +
                          std::to_string(static_cast<std::uint32_t>(r.kind)));
}

void bind_syndrome(py::module_& m) {
    auto ec =
        py::enum_<ExceptionClass>(m, "ExceptionClass", "ESR_EL2.EC values (Arm ARM D17.2.37).");
#define EC(name) ec.value(#name, ExceptionClass::name)
    EC(Unknown);
    EC(WfxTrap);
    EC(Mcr15Mrc15);
    EC(Mcrr15Mrrc15);
    EC(Mcr14Mrc14);
    EC(Ldc14Stc14);
    EC(SimdFpAccess);
    EC(Vmrs);
    EC(PointerAuth);
    EC(Ld64bSt64b);
    EC(Mrrc14);
    EC(BranchTarget);
    EC(IllegalState);
    EC(Svc32);
    EC(Hvc32);
    EC(Smc32);
    EC(Svc64);
    EC(Hvc64);
    EC(Smc64);
    EC(SysReg64);
    EC(SveAccess);
    EC(Eret);
    EC(Tstart);
    EC(PacFail);
    EC(SmeAccess);
    EC(InstrAbortLower);
    EC(InstrAbortSame);
    EC(PcAlignment);
    EC(DataAbortLower);
    EC(DataAbortSame);
    EC(SpAlignment);
    EC(MemoryOp);
    EC(FpException32);
    EC(FpException64);
    EC(SError);
    EC(BreakpointLower);
    EC(BreakpointSame);
    EC(SoftwareStepLower);
    EC(SoftwareStepSame);
    EC(WatchpointLower);
    EC(WatchpointSame);
    EC(Bkpt32);
    EC(VectorCatch32);
    EC(Brk64);
#undef EC

    m.def(
        "exception_class_name",
        [](unsigned ec_value) -> py::object {
            if (ec_value > 0x3f) throw py::value_error("EC is a 6-bit field (0..0x3f)");
            const char* name = exception_class_name(static_cast<std::uint8_t>(ec_value));
            if (name == nullptr) return py::none();
            return py::str(name);
        },
        py::arg("ec"), "The Arm ARM's name of an exception class, or None when reserved.");

    py::class_<Esr>(m, "Esr", R"doc(
A raw ESR_EL2 value and its class-independent fields.

>>> from armvcpu._core import Esr
>>> e = Esr(0x5a000000)   # HVC #0 from AArch64
>>> e.exception_class.name, e.il, e.imm16
('Hvc64', True, 0)
)doc")
        .def(py::init([](std::uint64_t v) { return Esr{v}; }), py::arg("value"))
        .def_readonly("value", &Esr::value)
        .def_property_readonly("ec", &Esr::ec)
        .def_property_readonly("exception_class", &Esr::exception_class)
        .def_property_readonly("il", &Esr::il)
        .def_property_readonly("instruction_length", &Esr::instruction_length)
        .def_property_readonly("iss", &Esr::iss)
        .def_property_readonly("iss2", &Esr::iss2)
        .def_property_readonly("imm16", &Esr::imm16)
        .def("__repr__", [](const Esr& e) {
            const char* name = exception_class_name(e.ec());
            return "Esr(" + hex(e.value) + ": EC=" + hex(e.ec()) + " " +
                   (name ? name : "reserved") + ", IL=" + std::to_string(e.il()) +
                   ", ISS=" + hex(e.iss()) + ")";
        });

    py::class_<Syndrome>(m, "Syndrome", "ESR_EL2, FAR_EL2 and HPFAR_EL2 at an exit.")
        .def(py::init([](std::uint64_t esr, std::uint64_t far, std::uint64_t hpfar) {
                 return Syndrome{esr, far, hpfar};
             }),
             py::arg("esr"), py::arg("far") = 0, py::arg("hpfar") = 0)
        .def_readwrite("esr", &Syndrome::esr)
        .def_readwrite("far", &Syndrome::far)
        .def_readwrite("hpfar", &Syndrome::hpfar)
        .def("__repr__", [](const Syndrome& s) {
            return "Syndrome(esr=" + hex(s.esr) + ", far=" + hex(s.far) +
                   ", hpfar=" + hex(s.hpfar) + ")";
        });
}

void bind_trap_frame(py::module_& m) {
    py::class_<TrapFrame>(m, "TrapFrame", R"doc(
The guest's general-purpose registers as the EL2 vectors saved them:
x0..x30, SP_EL0, ELR_EL2 (the PC the guest resumes at) and SPSR_EL2.

>>> from armvcpu._core import TrapFrame
>>> f = TrapFrame()
>>> f.set_gpr(0, 42); f.gpr(0)
42
>>> f.gpr(31)
Traceback (most recent call last):
IndexError: general-purpose register index 31 out of range: a TrapFrame holds x0..x30
)doc")
        .def(py::init([]() { return TrapFrame{}; }))
        .def(
            "gpr", [](const TrapFrame& f, int i) { return f.gpr(checked_gpr_index(i)); },
            py::arg("index"))
        .def(
            "set_gpr",
            [](TrapFrame& f, int i, std::uint64_t v) { f.set_gpr(checked_gpr_index(i), v); },
            py::arg("index"), py::arg("value"))
        .def_readwrite("sp_el0", &TrapFrame::sp_el0)
        .def_readwrite("elr", &TrapFrame::elr)
        .def_readwrite("spsr", &TrapFrame::spsr)
        .def("exception_pc", &TrapFrame::exception_pc)
        .def("set_exception_pc", &TrapFrame::set_exception_pc, py::arg("pc"))
        .def("set_argument", &TrapFrame::set_argument, py::arg("arg"))
        .def("to_bytes", &to_bytes<TrapFrame>)
        .def_static(
            "from_bytes",
            [](const py::buffer& b) { return from_buffer<TrapFrame>(b, "TrapFrame"); },
            py::arg("data"))
        .def("__eq__",
             [](const TrapFrame& a, const TrapFrame& b) {
                 return std::memcmp(&a, &b, sizeof(TrapFrame)) == 0;
             })
        .def("__copy__", [](const TrapFrame& f) { return f; })
        .def("__deepcopy__", [](const TrapFrame& f, const py::object&) { return f; })
        .def("__repr__",
             [](const TrapFrame& f) {
                 return "TrapFrame(pc=" + hex(f.elr) + ", spsr=" + hex(f.spsr) +
                        ", x0=" + hex(f.gpr(0)) + ", x1=" + hex(f.gpr(1)) + ", ...)";
             })
        .def_property_readonly_static("SIZE", [](py::object) { return sizeof(TrapFrame); })
        .def_property_readonly_static("OFFSETS", [](py::object) {
            py::dict d;
            d["x0"] = offsetof(TrapFrame, gpr_);
            d["sp_el0"] = offsetof(TrapFrame, sp_el0);
            d["elr"] = offsetof(TrapFrame, elr);
            d["spsr"] = offsetof(TrapFrame, spsr);
            return d;
        });
}

void bind_exit_reasons(py::module_& m) {
    auto kind = py::enum_<ExitKind>(m, "ExitKind",
                                    "Why the vCPU left the guest (axvcpu's AxVCpuExitReason).");
#define ARMVCPU_X(Name, member) kind.value(#Name, ExitKind::Name);
    ARMVCPU_EXIT_VARIANTS(ARMVCPU_X)
#undef ARMVCPU_X

    py::class_<exit::Nothing>(m, "Nothing", "Handled inside the vCPU; nothing for the VMM.")
        .def("__repr__", [](const exit::Nothing&) { return std::string("Nothing()"); });
    py::class_<exit::Hypercall>(m, "Hypercall", "HVC with the number in x0 and arguments x1..x6.")
        .def_readonly("nr", &exit::Hypercall::nr)
        .def_property_readonly("args", [](const exit::Hypercall& h) { return args_tuple(h.args); })
        .def("__repr__", [](const exit::Hypercall& h) {
            std::string s = "Hypercall(nr=" + hex(h.nr) + ", args=(";
            for (int i = 0; i < 6; ++i) s += (i ? ", " : "") + hex(h.args[i]);
            return s + "))";
        });
    py::class_<exit::MmioRead>(m, "MmioRead", "A guest load from an address with no RAM behind it.")
        .def_readonly("addr", &exit::MmioRead::addr)
        .def_readonly("width", &exit::MmioRead::width)
        .def_readonly("reg", &exit::MmioRead::reg)
        .def_readonly("reg_width", &exit::MmioRead::reg_width)
        .def_property_readonly("signed_ext",
                               [](const exit::MmioRead& r) { return r.signed_ext != 0; })
        .def("__repr__", [](const exit::MmioRead& r) {
            return "MmioRead(addr=" + hex(r.addr) + ", width=" + std::to_string(r.width) +
                   ", reg=x" + std::to_string(r.reg) +
                   ", reg_width=" + std::to_string(r.reg_width) +
                   ", signed_ext=" + (r.signed_ext ? "True" : "False") + ")";
        });
    py::class_<exit::MmioWrite>(m, "MmioWrite",
                                "A guest store to an address with no RAM behind it.")
        .def_readonly("addr", &exit::MmioWrite::addr)
        .def_readonly("width", &exit::MmioWrite::width)
        .def_readonly("data", &exit::MmioWrite::data)
        .def("__repr__", [](const exit::MmioWrite& w) {
            return "MmioWrite(addr=" + hex(w.addr) + ", width=" + std::to_string(w.width) +
                   ", data=" + hex(w.data) + ")";
        });
    py::class_<exit::SysRegRead>(m, "SysRegRead", "A trapped MRS.")
        .def_readonly("addr", &exit::SysRegRead::addr)
        .def_readonly("reg", &exit::SysRegRead::reg)
        .def("__repr__", [](const exit::SysRegRead& r) {
            return "SysRegRead(addr=" + hex(r.addr) + ", reg=x" + std::to_string(r.reg) + ")";
        });
    py::class_<exit::SysRegWrite>(m, "SysRegWrite", "A trapped MSR.")
        .def_readonly("addr", &exit::SysRegWrite::addr)
        .def_readonly("value", &exit::SysRegWrite::value)
        .def("__repr__", [](const exit::SysRegWrite& w) {
            return "SysRegWrite(addr=" + hex(w.addr) + ", value=" + hex(w.value) + ")";
        });
    py::class_<exit::IoRead>(m, "IoRead",
                             "x86 port input: kept for parity, never produced on arm64.")
        .def_readonly("port", &exit::IoRead::port)
        .def_readonly("width", &exit::IoRead::width)
        .def("__repr__", [](const exit::IoRead& r) {
            return "IoRead(port=" + hex(r.port) + ", width=" + std::to_string(r.width) + ")";
        });
    py::class_<exit::IoWrite>(m, "IoWrite",
                              "x86 port output: kept for parity, never produced on arm64.")
        .def_readonly("port", &exit::IoWrite::port)
        .def_readonly("width", &exit::IoWrite::width)
        .def_readonly("data", &exit::IoWrite::data)
        .def("__repr__", [](const exit::IoWrite& w) {
            return "IoWrite(port=" + hex(w.port) + ", width=" + std::to_string(w.width) +
                   ", data=" + hex(w.data) + ")";
        });
    py::class_<exit::ExternalInterrupt>(m, "ExternalInterrupt",
                                        "A physical interrupt taken to EL2.")
        .def_readonly("vector", &exit::ExternalInterrupt::vector)
        .def("__repr__", [](const exit::ExternalInterrupt& e) {
            return "ExternalInterrupt(vector=" + std::to_string(e.vector) + ")";
        });
    py::class_<exit::NestedPageFault>(m, "NestedPageFault", "A stage-2 fault the VMM must resolve.")
        .def_readonly("addr", &exit::NestedPageFault::addr)
        .def_readonly("access_flags", &exit::NestedPageFault::access_flags)
        .def("__repr__", [](const exit::NestedPageFault& f) {
            return "NestedPageFault(addr=" + hex(f.addr) + ", access_flags=" + hex(f.access_flags) +
                   ")";
        });
    py::class_<exit::Halt>(m, "Halt", "The vCPU waits (WFI/WFE).")
        .def("__repr__", [](const exit::Halt&) { return std::string("Halt()"); });
    py::class_<exit::CpuUp>(m, "CpuUp", "PSCI CPU_ON.")
        .def_readonly("target_cpu", &exit::CpuUp::target_cpu)
        .def_readonly("entry_point", &exit::CpuUp::entry_point)
        .def_readonly("arg", &exit::CpuUp::arg)
        .def("__repr__", [](const exit::CpuUp& c) {
            return "CpuUp(target_cpu=" + hex(c.target_cpu) + ", entry_point=" + hex(c.entry_point) +
                   ", arg=" + hex(c.arg) + ")";
        });
    py::class_<exit::CpuDown>(m, "CpuDown", "PSCI CPU_OFF.")
        .def_readonly("state", &exit::CpuDown::state)
        .def("__repr__",
             [](const exit::CpuDown& c) { return "CpuDown(state=" + hex(c.state) + ")"; });
    py::class_<exit::SystemDown>(m, "SystemDown", "PSCI SYSTEM_OFF.")
        .def("__repr__", [](const exit::SystemDown&) { return std::string("SystemDown()"); });
    py::class_<exit::FailEntry>(m, "FailEntry", "The vCPU could not enter the guest.")
        .def_readonly("hardware_entry_failure_reason",
                      &exit::FailEntry::hardware_entry_failure_reason)
        .def("__repr__", [](const exit::FailEntry& f) {
            return "FailEntry(hardware_entry_failure_reason=" +
                   hex(f.hardware_entry_failure_reason) + ")";
        });
    py::class_<exit::SendIpi>(m, "SendIpi", "An SGI the guest sent through ICC_SGI1R_EL1.")
        .def_readonly("target_cpu", &exit::SendIpi::target_cpu)
        .def_readonly("target_cpu_aux", &exit::SendIpi::target_cpu_aux)
        .def_property_readonly("send_to_all",
                               [](const exit::SendIpi& s) { return s.send_to_all != 0; })
        .def_property_readonly("send_to_self",
                               [](const exit::SendIpi& s) { return s.send_to_self != 0; })
        .def_readonly("vector", &exit::SendIpi::vector)
        .def("__repr__", [](const exit::SendIpi& s) {
            return "SendIpi(target_cpu=" + hex(s.target_cpu) +
                   ", target_cpu_aux=" + hex(s.target_cpu_aux) +
                   ", send_to_all=" + (s.send_to_all ? "True" : "False") +
                   ", send_to_self=" + (s.send_to_self ? "True" : "False") +
                   ", vector=" + std::to_string(s.vector) + ")";
        });
    py::class_<exit::GuestException>(
        m, "GuestException",
        "Any other exception from the guest: the original panics, armvcpu reports.")
        .def_readonly("esr", &exit::GuestException::esr)
        .def_readonly("pc", &exit::GuestException::pc)
        .def_readonly("ec", &exit::GuestException::ec)
        .def_readonly("iss", &exit::GuestException::iss)
        .def("__repr__", [](const exit::GuestException& e) {
            const char* name = exception_class_name(static_cast<std::uint8_t>(e.ec));
            return "GuestException(ec=" + hex(e.ec) + " " + (name ? name : "reserved") +
                   ", iss=" + hex(e.iss) + ", pc=" + hex(e.pc) + ")";
        });

    py::class_<ExitReason>(m, "ExitReason", "A tagged exit reason; .value is the variant object.")
        .def_readonly("kind", &ExitReason::kind)
        .def_property_readonly("value", &variant_of)
        .def("__repr__",
             [](const ExitReason& r) { return py::repr(variant_of(r)).cast<std::string>(); });

    m.def(
        "classify_sync",
        [](const TrapFrame& frame, const Syndrome& syndrome) {
            TrapFrame updated = frame;
            const ExitReason reason = classify_sync(updated, syndrome);
            return py::make_tuple(reason, updated);
        },
        py::arg("frame"), py::arg("syndrome"), R"doc(
Classify a synchronous exit exactly as the firmware does.

Returns (ExitReason, TrapFrame): the frame as the firmware would resume it
(for example with the PC moved past an emulated instruction).

>>> from armvcpu._core import TrapFrame, Syndrome, classify_sync
>>> f = TrapFrame(); f.set_gpr(0, 7)
>>> reason, _ = classify_sync(f, Syndrome(esr=0x5a000000))
>>> reason
Hypercall(nr=0x7, args=(0x0, 0x0, 0x0, 0x0, 0x0, 0x0))
)doc");

    m.def("default_stops_vm", &default_stops_vm, py::arg("kind"),
          "True when the firmware's default answer to this kind of exit stops the VM.");
    m.def("is_psci_function_id", &psci::is_psci_function_id, py::arg("x0"),
          "True when x0 is a PSCI or SMCCC function ID (DEN0022, DEN0028).");
}

void bind_host_interface(py::module_& m) {
    py::enum_<ExceptionType>(m, "ExceptionType", "The vector-table entry an exit came through.")
        .value("Synchronous", ExceptionType::Synchronous)
        .value("Irq", ExceptionType::Irq)
        .value("Fiq", ExceptionType::Fiq)
        .value("SError", ExceptionType::SError);
    py::enum_<HostAction>(m, "HostAction", "What the host asks the firmware to do with an exit.")
        .value("Default", HostAction::Default)
        .value("Resume", HostAction::Resume)
        .value("Stop", HostAction::Stop);

    py::class_<ExitRecord>(m, "ExitRecord", R"doc(
The per-vCPU exit record the firmware publishes to the host.
Read it from target memory with ExitRecord.from_bytes(); write it back with
to_bytes() after changing .action and .frame.
)doc")
        .def(py::init([]() {
            ExitRecord r{};
            r.magic = kExitRecordMagic;
            r.version = kExitRecordVersion;
            r.size = sizeof(ExitRecord);
            return r;
        }))
        .def_static(
            "from_bytes",
            [](const py::buffer& b) {
                const auto r = from_buffer<ExitRecord>(b, "ExitRecord");
                if (r.magic != kExitRecordMagic) {
                    throw py::value_error("not an exit record: magic " + hex(r.magic) +
                                          ", expected " + hex(kExitRecordMagic));
                }
                if (r.version != kExitRecordVersion || r.size != sizeof(ExitRecord)) {
                    throw py::value_error("exit record version " + std::to_string(r.version) +
                                          " size " + std::to_string(r.size) +
                                          " does not match this armvcpu (version " +
                                          std::to_string(kExitRecordVersion) + ", size " +
                                          std::to_string(sizeof(ExitRecord)) + ")");
                }
                if (static_cast<std::uint32_t>(r.reason.kind) >= kNumExitKinds) {
                    throw py::value_error(
                        "exit record holds an unknown exit kind " +
                        std::to_string(static_cast<std::uint32_t>(r.reason.kind)));
                }
                return r;
            },
            py::arg("data"))
        .def("to_bytes", &to_bytes<ExitRecord>)
        .def_readonly("vm_id", &ExitRecord::vm_id)
        .def_readonly("vcpu_id", &ExitRecord::vcpu_id)
        .def_readonly("seq", &ExitRecord::seq)
        .def_readonly("exception_type", &ExitRecord::exception_type)
        .def_readwrite("action", &ExitRecord::action)
        .def_readonly("esr", &ExitRecord::esr)
        .def_readonly("far", &ExitRecord::far)
        .def_readonly("hpfar", &ExitRecord::hpfar)
        .def_property_readonly("syndrome",
                               [](const ExitRecord& r) { return Syndrome{r.esr, r.far, r.hpfar}; })
        .def_readonly("reason", &ExitRecord::reason)
        .def_readwrite("frame", &ExitRecord::frame)
        .def_property_readonly_static("SIZE", [](py::object) { return sizeof(ExitRecord); })
        .def_property_readonly_static("OFFSETS", [](py::object) {
            py::dict d;
            d["magic"] = offsetof(ExitRecord, magic);
            d["seq"] = offsetof(ExitRecord, seq);
            d["action"] = offsetof(ExitRecord, action);
            d["esr"] = offsetof(ExitRecord, esr);
            d["reason"] = offsetof(ExitRecord, reason);
            d["frame"] = offsetof(ExitRecord, frame);
            return d;
        });

    py::class_<GuestConfig>(
        m, "GuestConfig",
        "Where the guest lives and starts (firmware symbol armvcpu_guest_config).")
        .def(py::init([]() { return GuestConfig{}; }))
        .def_static(
            "from_bytes",
            [](const py::buffer& b) { return from_buffer<GuestConfig>(b, "GuestConfig"); },
            py::arg("data"))
        .def("to_bytes", &to_bytes<GuestConfig>)
        .def_readwrite("entry", &GuestConfig::entry)
        .def_readwrite("ipa_base", &GuestConfig::ipa_base)
        .def_readwrite("pa_base", &GuestConfig::pa_base)
        .def_readwrite("size", &GuestConfig::size)
        .def_readwrite("x0", &GuestConfig::x0)
        .def_property_readonly_static("SIZE", [](py::object) { return sizeof(GuestConfig); })
        .def("__repr__", [](const GuestConfig& c) {
            return "GuestConfig(entry=" + hex(c.entry) + ", ipa_base=" + hex(c.ipa_base) +
                   ", pa_base=" + hex(c.pa_base) + ", size=" + hex(c.size) + ", x0=" + hex(c.x0) +
                   ")";
        });

    py::dict symbols;
    symbols["exit_records"] = kSymExitRecords;
    symbols["guest_config"] = kSymGuestConfig;
    symbols["host_attached"] = kSymHostAttached;
    symbols["host_handoff"] = kSymHostHandoff;
    m.attr("FIRMWARE_SYMBOLS") = symbols;
    m.attr("EXIT_RECORD_MAGIC") = kExitRecordMagic;
    m.attr("EXIT_RECORD_VERSION") = kExitRecordVersion;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() =
        "armvcpu's C++ core: syndrome decoding, exit classification, TrapFrames, exit records.";
    m.attr("__version__") = ARMVCPU_VERSION;
    bind_syndrome(m);
    bind_trap_frame(m);
    bind_exit_reasons(m);
    bind_host_interface(m);
}
