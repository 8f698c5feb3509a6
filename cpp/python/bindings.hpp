// Shared helpers for the armvcpu._core binding files. Binding only: every
// decision lives in cpp/include/armvcpu.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "armvcpu/exit_reason.hpp"
#include "armvcpu/host_interface.hpp"

namespace armvcpu::py_bind {

namespace py = pybind11;

inline std::string hex(std::uint64_t v) {
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

// Waits (the caller has released the GIL) until one of `count` exit records
// has a seq other than its `lasts` entry, as mailbox_wait_any does (spin,
// then the doorbell `doorbell_fd` with the word `sleeping`, or timed sleeps):
// that record's index, with its seq in `seq`, or `count` when `timeout`
// seconds pass first.
// One look at the records without waiting: as wait_for_exit, `count` when
// none has a new seq.
std::size_t find_exit(ExitRecord* const* records, const std::uint64_t* lasts, std::size_t count,
                      std::uint64_t& seq);
std::size_t wait_for_exit(ExitRecord* const* records, const std::uint64_t* lasts, std::size_t count,
                          double timeout, int doorbell_fd, std::uint64_t* sleeping,
                          std::uint64_t& seq);

// A read-only property whose getter is the C function of `def` (METH_O: it
// gets the instance, and checks its type): about as quick as a slot, where
// a pybind11 property goes through pybind11's overload dispatch (0.1-0.3 us
// a read). The doc's first line is a signature in pybind11's form
// ("name(self: T) -> R"), which the stub generator reads for the type.
inline void add_c_property(const py::object& cls, PyMethodDef& def) {
    const py::object fget =
        py::reinterpret_steal<py::object>(PyCFunction_NewEx(&def, nullptr, nullptr));
    if (!fget) throw py::error_already_set();
    const auto property =
        py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(&PyProperty_Type));
    cls.attr(def.ml_name) = property(fget);
}

// The variant object (_core.Hypercall, ...) an exit reason holds.
py::object exit_variant(const ExitReason& reason);

void bind_syndrome(py::module_& m);
void bind_sysregs(py::module_& m);
void bind_trap_frame(py::module_& m);
void bind_exits(py::module_& m);
void bind_psci(py::module_& m);
void bind_host_interface(py::module_& m);
void bind_vcpu(py::module_& m);
void bind_stage2(py::module_& m);
void bind_mailbox(py::module_& m);
void bind_fast_rules(py::module_& m);
void bind_fdt(py::module_& m);
void bind_rsp(py::module_& m);
void bind_snapshot(py::module_& m);
void bind_exit_view(py::module_& m);
void bind_sched(py::module_& m);

}  // namespace armvcpu::py_bind
