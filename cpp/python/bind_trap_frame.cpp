// TrapFrame: the guest registers saved at an exit.
#include <pybind11/stl.h>

#include "armvcpu/classify.hpp"
#include "armvcpu/exit_reason.hpp"
#include "armvcpu/host_interface.hpp"
#include "armvcpu/mmio.hpp"
#include "armvcpu/psci.hpp"
#include "armvcpu/trap_frame.hpp"
#include "bindings.hpp"

namespace armvcpu::py_bind {

namespace {

unsigned checked_gpr_index(int index) {
    if (index < 0 || index >= static_cast<int>(TrapFrame::kNumGprs)) {
        throw py::index_error("general-purpose register index " + std::to_string(index) +
                              " out of range: a TrapFrame holds x0..x30");
    }
    return static_cast<unsigned>(index);
}

}  // namespace

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
             [](const TrapFrame& a, const py::object& other) {
                 if (!py::isinstance<TrapFrame>(other)) return false;
                 const auto& b = other.cast<const TrapFrame&>();
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

}  // namespace armvcpu::py_bind
