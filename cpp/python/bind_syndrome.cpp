// ESR_EL2, its ISS fields, fault addresses, and the vectorised decode.
#include <pybind11/numpy.h>

#include "armvcpu/esr.hpp"
#include "armvcpu/iss.hpp"
#include "bindings.hpp"

namespace armvcpu::py_bind {

namespace {

py::list named_fields(const Esr& e) {
    py::list out;
    const IssFieldList list = iss_fields(e.exception_class());
    for (unsigned i = 0; i < list.count; ++i) {
        const IssField& f = list.fields[i];
        out.append(py::make_tuple(f.name, f.hi, f.lo, f.of(e.iss())));
    }
    return out;
}

}  // namespace

void bind_syndrome(py::module_& m) {
    auto classes =
        py::enum_<ExceptionClass>(m, "ExceptionClass", "ESR_EL2.EC values (Arm ARM D17.2.37).");
#define EC(name) classes.value(#name, ExceptionClass::name)
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
A raw ESR_EL2 value and its fields.

>>> from armvcpu._core import Esr
>>> e = Esr(0x5a000000)   # HVC #0 from AArch64
>>> e.exception_class.name, e.il, e.imm16
('Hvc64', True, 0)
>>> Esr(0x93020004).fields()[:4]   # LDRB w2 from an MMIO page: ISV, SAS, SSE, SRT
[('ISV', 24, 24, 1), ('SAS', 23, 22, 0), ('SSE', 21, 21, 0), ('SRT', 20, 16, 2)]
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
        .def("fields", &named_fields,
             "The class's ISS fields as (Arm ARM name, high bit, low bit, value) tuples.")
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

    m.def(
        "fault_ipa",
        [](std::uint64_t hpfar, std::uint64_t far, bool fnv) {
            const FaultAddress fa = fault_ipa(hpfar, far, fnv);
            return py::make_tuple(fa.ipa, fa.offset_valid);
        },
        py::arg("hpfar"), py::arg("far"), py::arg("fnv") = false,
        "The faulting IPA from HPFAR_EL2 and FAR_EL2: (ipa, offset_valid).");

    m.def(
        "decode_esr_array",
        [](const py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast>& esr) {
            const auto n = esr.size();
            py::array_t<std::uint8_t> ec(n);
            py::array_t<bool> il(n);
            py::array_t<std::uint32_t> iss(n);
            py::array_t<std::uint32_t> iss2(n);
            const std::uint64_t* in = esr.data();
            auto* ec_out = ec.mutable_data();
            auto* il_out = il.mutable_data();
            auto* iss_out = iss.mutable_data();
            auto* iss2_out = iss2.mutable_data();
            {
                py::gil_scoped_release release;
                for (py::ssize_t i = 0; i < n; ++i) {
                    const Esr e{in[i]};
                    ec_out[i] = e.ec();
                    il_out[i] = e.il();
                    iss_out[i] = e.iss();
                    iss2_out[i] = e.iss2();
                }
            }
            py::dict out;
            out["ec"] = ec.reshape(std::vector<py::ssize_t>(esr.shape(), esr.shape() + esr.ndim()));
            out["il"] = il.reshape(std::vector<py::ssize_t>(esr.shape(), esr.shape() + esr.ndim()));
            out["iss"] =
                iss.reshape(std::vector<py::ssize_t>(esr.shape(), esr.shape() + esr.ndim()));
            out["iss2"] =
                iss2.reshape(std::vector<py::ssize_t>(esr.shape(), esr.shape() + esr.ndim()));
            return out;
        },
        py::arg("esr"), R"doc(
Decode an array of ESR_EL2 values at once: {"ec", "il", "iss", "iss2"} arrays of
the input's shape (for traces of millions of exits).

>>> import numpy as np
>>> decode_esr_array(np.array([0x5a000000, 0x92000046], dtype=np.uint64))["ec"]
array([22, 36], dtype=uint8)
)doc");
}

}  // namespace armvcpu::py_bind
