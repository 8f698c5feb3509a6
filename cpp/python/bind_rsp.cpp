// The GDB Remote Serial Protocol checksum (armvcpu/rsp.hpp), for gdbstub.py.
#include "armvcpu/rsp.hpp"
#include "bindings.hpp"

namespace armvcpu::py_bind {

void bind_rsp(py::module_& m) {
    m.def(
        "rsp_checksum",
        [](const py::bytes& payload) {
            char* data = nullptr;
            Py_ssize_t size = 0;
            PyBytes_AsStringAndSize(payload.ptr(), &data, &size);
            return rsp::checksum(reinterpret_cast<const unsigned char*>(data),
                                 static_cast<std::size_t>(size));
        },
        py::arg("payload"), "A GDB remote packet's checksum: its payload's bytes summed, mod 256.");
}

}  // namespace armvcpu::py_bind
