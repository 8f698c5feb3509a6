// Exit reasons and the classification that produces them.
#include <pybind11/stl.h>

#include "armvcpu/classify.hpp"
#include "armvcpu/exit_reason.hpp"
#include "armvcpu/host_interface.hpp"
#include "armvcpu/mmio.hpp"
#include "armvcpu/psci.hpp"
#include "armvcpu/sysreg.hpp"
#include "armvcpu/trap_frame.hpp"
#include "bindings.hpp"

namespace armvcpu::py_bind {

namespace {

// A register's Arm name, or its raw key when the table does not know it.
std::string sysreg_label(std::uint64_t key) {
    const char* name = sysreg_name(static_cast<std::uint32_t>(key));
    return name ? std::string(name) : hex(key);
}

py::tuple args_tuple(const std::uint64_t (&args)[6]) {
    py::tuple t(6);
    for (std::size_t i = 0; i < 6; ++i) t[i] = args[i];
    return t;
}

}  // namespace

py::object exit_variant(const ExitReason& r) {
    switch (r.kind) {
#define ARMVCPU_X(Name, member) \
    case ExitKind::Name: return py::cast(r.member);
        ARMVCPU_EXIT_VARIANTS(ARMVCPU_X)
#undef ARMVCPU_X
    }
    throw py::value_error("exit record holds an unknown exit kind " +
                          std::to_string(static_cast<std::uint32_t>(r.kind)));
}

namespace {

// ExitKind's == and hash as C slots. pybind11 gives an enum these as Python
// methods with its overload dispatch (about 0.4 us a comparison, 0.5 us a
// hash); a policy compares and hashes exit kinds several times per exit.
// The meaning is pybind11's: equal when both are ExitKinds of the same value
// (anything else compares unequal, not NotImplemented), the hash the value.
PyTypeObject* exit_kind_type = nullptr;

ExitKind kind_value(PyObject* obj) {
    auto* inst = reinterpret_cast<py::detail::instance*>(obj);
    if (inst->simple_layout && inst->simple_holder_constructed) {
        return *static_cast<ExitKind*>(inst->simple_value_holder[0]);
    }
    return py::handle(obj).cast<ExitKind>();
}

PyObject* kind_richcompare(PyObject* a, PyObject* b, int op) {
    if (op != Py_EQ && op != Py_NE) Py_RETURN_NOTIMPLEMENTED;
    try {
        const bool equal = Py_TYPE(a) == exit_kind_type && Py_TYPE(b) == exit_kind_type &&
                           kind_value(a) == kind_value(b);
        return PyBool_FromLong((op == Py_EQ) == equal ? 1 : 0);
    } catch (py::error_already_set& e) {
        e.restore();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_TypeError, e.what());
    }
    return nullptr;
}

Py_hash_t kind_hash(PyObject* self) {
    try {
        return static_cast<Py_hash_t>(kind_value(self));
    } catch (py::error_already_set& e) {
        e.restore();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_TypeError, e.what());
    }
    return -1;
}

PyObject* kind_eq_method(PyObject* self, PyObject* other) {
    return kind_richcompare(self, other, Py_EQ);
}
PyObject* kind_ne_method(PyObject* self, PyObject* other) {
    return kind_richcompare(self, other, Py_NE);
}
PyObject* kind_hash_method(PyObject* self, PyObject* /*unused*/) {
    const Py_hash_t h = kind_hash(self);
    return h == -1 && PyErr_Occurred() != nullptr ? nullptr : PyLong_FromSsize_t(h);
}

PyMethodDef kind_eq_def = {"__eq__", kind_eq_method, METH_O, "Return self==value."};
PyMethodDef kind_ne_def = {"__ne__", kind_ne_method, METH_O, "Return self!=value."};
PyMethodDef kind_hash_def = {"__hash__", kind_hash_method, METH_NOARGS, "Return hash(self)."};

void speed_up_exit_kind(const py::object& cls) {
    auto* type = reinterpret_cast<PyTypeObject*>(cls.ptr());
    exit_kind_type = type;
    // The class attributes first (what ExitKind.__eq__ shows), which points
    // the slots at CPython's generic callers of them; then the slots at the
    // C functions directly.
    for (PyMethodDef* def : {&kind_eq_def, &kind_ne_def, &kind_hash_def}) {
        const py::object method = py::reinterpret_steal<py::object>(PyDescr_NewMethod(type, def));
        if (!method) throw py::error_already_set();
        cls.attr(def->ml_name) = method;
    }
    type->tp_richcompare = kind_richcompare;
    type->tp_hash = kind_hash;
    PyType_Modified(type);
}

// The 64-bit fields a policy matches on every exit (Hypercall.nr, the
// addresses of MMIO and system-register accesses) as C getters (see
// add_c_property).
template <class T, auto Member>
PyObject* get_u64_field(PyObject* /*module*/, PyObject* self) {
    try {
        const py::handle type = py::detail::get_type_handle(typeid(T), true);
        if (PyObject_TypeCheck(self, reinterpret_cast<PyTypeObject*>(type.ptr())) == 0) {
            throw py::type_error(std::string("a field of ") +
                                 reinterpret_cast<PyTypeObject*>(type.ptr())->tp_name +
                                 ", read from a " + Py_TYPE(self)->tp_name);
        }
        auto* inst = reinterpret_cast<py::detail::instance*>(self);
        const T* value = inst->simple_layout && inst->simple_holder_constructed
                             ? static_cast<const T*>(inst->simple_value_holder[0])
                             : &py::handle(self).cast<const T&>();
        return PyLong_FromUnsignedLongLong(value->*Member);
    } catch (py::error_already_set& e) {
        e.restore();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_TypeError, e.what());
    }
    return nullptr;
}

template <class T, auto Member>
void fast_u64_field(const py::object& cls, const char* name, const char* doc) {
    // The definition lives as long as the module (the getter points at it).
    static PyMethodDef def{name, &get_u64_field<T, Member>, METH_O, doc};
    add_c_property(cls, def);
}

}  // namespace

void bind_exits(py::module_& m) {
    auto kind = py::enum_<ExitKind>(m, "ExitKind",
                                    "Why the vCPU left the guest (axvcpu's AxVCpuExitReason).");
#define ARMVCPU_X(Name, member) kind.value(#Name, ExitKind::Name);
    ARMVCPU_EXIT_VARIANTS(ARMVCPU_X)
#undef ARMVCPU_X
    speed_up_exit_kind(kind);

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
        .def_property_readonly("name",
                               [](const exit::SysRegRead& r) -> py::object {
                                   const char* n = sysreg_name(static_cast<std::uint32_t>(r.addr));
                                   return n ? py::object(py::str(n)) : py::none();
                               })
        .def_readonly("reg", &exit::SysRegRead::reg)
        .def("__repr__", [](const exit::SysRegRead& r) {
            return "SysRegRead(" + sysreg_label(r.addr) + ", reg=x" + std::to_string(r.reg) + ")";
        });
    py::class_<exit::SysRegWrite>(m, "SysRegWrite", "A trapped MSR.")
        .def_readonly("addr", &exit::SysRegWrite::addr)
        .def_property_readonly("name",
                               [](const exit::SysRegWrite& r) -> py::object {
                                   const char* n = sysreg_name(static_cast<std::uint32_t>(r.addr));
                                   return n ? py::object(py::str(n)) : py::none();
                               })
        .def_readonly("value", &exit::SysRegWrite::value)
        .def("__repr__", [](const exit::SysRegWrite& w) {
            return "SysRegWrite(" + sysreg_label(w.addr) + ", value=" + hex(w.value) + ")";
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
    py::class_<exit::SystemDown>(m, "SystemDown", "PSCI SYSTEM_OFF, or SYSTEM_RESET(2) with reset.")
        .def_property_readonly("reset", [](const exit::SystemDown& s) { return s.reset != 0; })
        .def("__repr__", [](const exit::SystemDown& s) {
            return std::string(s.reset ? "SystemDown(reset=True)" : "SystemDown()");
        });
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
        .def_property_readonly("value", &exit_variant)
        .def("__repr__",
             [](const ExitReason& r) { return py::repr(exit_variant(r)).cast<std::string>(); });

    m.attr("ACCESS_READ") = exit::kAccessRead;
    m.attr("ACCESS_WRITE") = exit::kAccessWrite;
    m.attr("ACCESS_EXECUTE") = exit::kAccessExecute;
    m.attr("ACCESS_NO_SYNDROME") = exit::kAccessNoSyndrome;
    m.attr("ACCESS_STAGE1_WALK") = exit::kAccessStage1Walk;
    m.attr("ACCESS_PAGE_ONLY") = exit::kAccessPageOnly;
    m.attr("ACCESS_AT_INJECTED_VECTOR") = exit::kAccessAtInjectedVector;

    m.def("default_stops_vm", py::overload_cast<ExitKind>(&default_stops_vm), py::arg("kind"),
          "True when the firmware's default answer to this kind of exit stops the VM.");
    m.def("default_stops_vm", py::overload_cast<const ExitReason&>(&default_stops_vm),
          py::arg("reason"),
          "True when the firmware's default answer to this very exit stops the VM (its "
          "kind's default, or a fetch fault at the vector of the abort just injected).");

    m.def(
        "classify_sync",
        [](const TrapFrame& frame, const Syndrome& syndrome, psci::VmPowerState* power,
           unsigned vcpu_index) {
            TrapFrame updated = frame;
            const ExitReason reason =
                classify_sync(updated, syndrome, ClassifyContext{power, vcpu_index});
            return py::make_tuple(reason, updated);
        },
        py::arg("frame"), py::arg("syndrome"), py::arg("power") = nullptr,
        py::arg("vcpu_index") = 0, R"doc(
Classify a synchronous exit exactly as the firmware does.

Returns (ExitReason, TrapFrame): the frame as the firmware would resume it
(the PC past an emulated instruction, X0 for a call answered in the core).
`power` is the VM's PSCI state (VmPowerState) for CPU_ON/AFFINITY_INFO.

>>> from armvcpu._core import TrapFrame, Syndrome, classify_sync
>>> f = TrapFrame(); f.set_gpr(0, 7)
>>> reason, _ = classify_sync(f, Syndrome(esr=0x5a000000))
>>> reason
Hypercall(nr=0x7, args=(0x0, 0x0, 0x0, 0x0, 0x0, 0x0))
)doc");

    m.def(
        "instruction_address_from_preferred_return",
        [](std::uint64_t elr, std::uint64_t esr, bool synchronous) {
            return instruction_address_from_preferred_return(elr, Esr{esr}, synchronous);
        },
        py::arg("elr"), py::arg("esr"), py::arg("synchronous") = true, R"doc(
The address of the instruction that caused an exception, from ELR_EL2 (the
preferred exception return address) and ESR_EL2: for SVC/HVC the instruction
before ELR (ESR.IL says 4 or 2 bytes), for every other class ELR itself.

>>> from armvcpu._core import instruction_address_from_preferred_return
>>> hex(instruction_address_from_preferred_return(0x40000030, 0x5a000000))  # HVC #0
'0x4000002c'
)doc");

    fast_u64_field<exit::Hypercall, &exit::Hypercall::nr>(
        m.attr("Hypercall"), "nr",
        "nr(self: armvcpu._core.Hypercall) -> int\n\nThe function ID (x0).");
    fast_u64_field<exit::MmioRead, &exit::MmioRead::addr>(
        m.attr("MmioRead"), "addr",
        "addr(self: armvcpu._core.MmioRead) -> int\n\nThe faulting IPA.");
    fast_u64_field<exit::MmioWrite, &exit::MmioWrite::addr>(
        m.attr("MmioWrite"), "addr",
        "addr(self: armvcpu._core.MmioWrite) -> int\n\nThe faulting IPA.");
    fast_u64_field<exit::SysRegRead, &exit::SysRegRead::addr>(
        m.attr("SysRegRead"), "addr",
        "addr(self: armvcpu._core.SysRegRead) -> int\n\nThe register's encoding (op0, op1, CRn, "
        "CRm, op2).");
    fast_u64_field<exit::SysRegWrite, &exit::SysRegWrite::addr>(
        m.attr("SysRegWrite"), "addr",
        "addr(self: armvcpu._core.SysRegWrite) -> int\n\nThe register's encoding (op0, op1, "
        "CRn, CRm, op2).");

    m.def("mmio_read_value", &mmio_read_value, py::arg("read"), py::arg("value"),
          "The register value an MMIO load produces: truncated to width, SSE/SF applied.");
    m.def(
        "complete_mmio_read",
        [](const TrapFrame& frame, const exit::MmioRead& read, std::uint64_t value) {
            TrapFrame updated = frame;
            complete_mmio_read(updated, read, value);
            return updated;
        },
        py::arg("frame"), py::arg("read"), py::arg("value"),
        "A copy of frame with the loaded value written into Rt (as the load would).");
}

}  // namespace armvcpu::py_bind
