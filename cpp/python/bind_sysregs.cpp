// The system-register encoding <-> Arm name table.
#include "armvcpu/sysreg.hpp"
#include "bindings.hpp"

namespace armvcpu::py_bind {

void bind_sysregs(py::module_& m) {
    py::class_<SysRegEncoding>(m, "SysRegEncoding", R"doc(
A system register's encoding (op0, op1, CRn, CRm, op2).

>>> from armvcpu._core import sysreg_encoding
>>> e = sysreg_encoding("cntv_ctl_el0")
>>> (e.op0, e.op1, e.crn, e.crm, e.op2), e.name
((3, 3, 14, 3, 1), 'CNTV_CTL_EL0')
)doc")
        .def(py::init([](unsigned op0, unsigned op1, unsigned crn, unsigned crm, unsigned op2) {
                 if (op0 > 3 || op1 > 7 || crn > 15 || crm > 15 || op2 > 7) {
                     throw py::value_error("op0 is 2 bits, op1 and op2 3 bits, CRn and CRm 4 bits");
                 }
                 return SysRegEncoding{
                     static_cast<std::uint8_t>(op0), static_cast<std::uint8_t>(op1),
                     static_cast<std::uint8_t>(crn), static_cast<std::uint8_t>(crm),
                     static_cast<std::uint8_t>(op2)};
             }),
             py::arg("op0"), py::arg("op1"), py::arg("crn"), py::arg("crm"), py::arg("op2"))
        .def_static("from_key", &SysRegEncoding::from_iss, py::arg("key"),
                    "The encoding of an exit's SysRegRead/SysRegWrite addr (or a raw ISS).")
        .def_property_readonly("op0", [](const SysRegEncoding& e) { return e.op0; })
        .def_property_readonly("op1", [](const SysRegEncoding& e) { return e.op1; })
        .def_property_readonly("crn", [](const SysRegEncoding& e) { return e.crn; })
        .def_property_readonly("crm", [](const SysRegEncoding& e) { return e.crm; })
        .def_property_readonly("op2", [](const SysRegEncoding& e) { return e.op2; })
        .def_property_readonly("key", &SysRegEncoding::iss_key)
        .def_property_readonly("name",
                               [](const SysRegEncoding& e) -> py::object {
                                   const char* n = sysreg_name(e);
                                   return n ? py::object(py::str(n)) : py::none();
                               })
        .def("__eq__", [](const SysRegEncoding& a, const SysRegEncoding& b) { return a == b; })
        .def("__hash__", &SysRegEncoding::iss_key)
        .def("__repr__", [](const SysRegEncoding& e) {
            const char* n = sysreg_name(e);
            return std::string("SysRegEncoding(") + (n ? n : "unnamed") +
                   ": op0=" + std::to_string(e.op0) + ", op1=" + std::to_string(e.op1) +
                   ", CRn=" + std::to_string(e.crn) + ", CRm=" + std::to_string(e.crm) +
                   ", op2=" + std::to_string(e.op2) + ")";
        });

    m.def(
        "sysreg_name",
        [](std::uint32_t key) -> py::object {
            const char* n = sysreg_name(key);
            return n ? py::object(py::str(n)) : py::none();
        },
        py::arg("key"), "The Arm name of a SysRegRead/SysRegWrite addr, or None if unknown.");
    m.def(
        "sysreg_encoding",
        [](const std::string& name) {
            SysRegEncoding e{};
            if (!sysreg_lookup(name.c_str(), e)) {
                throw py::key_error("unknown system register " + name);
            }
            return e;
        },
        py::arg("name"), "The encoding of a register by its Arm name (any case).");
    m.def(
        "sysreg_table",
        [] {
            py::list out;
            for (const SysRegName& r : sysreg_table()) {
                out.append(py::make_tuple(r.name, r.encoding));
            }
            return out;
        },
        "Every (name, SysRegEncoding) the core knows, sorted by encoding.");
}

}  // namespace armvcpu::py_bind
