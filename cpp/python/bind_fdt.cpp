// The core's devicetree reader and writer for Python: a blob becomes nested
// tuples and lists, and back. armvcpu.devicetree builds its editable tree
// on these two functions and turns FdtError into DeviceTreeError.
#include <string>
#include <vector>

#include "armvcpu/fdt.hpp"
#include "bindings.hpp"

namespace armvcpu::py_bind {

namespace {

struct FdtFailure : std::exception {
    fdt::Error error;
    std::string message;
    py::object offset;  // where in the blob, or None for the writer's errors

    FdtFailure(fdt::Error e, std::string what, py::object at)
        : error(e), message(std::move(what)), offset(std::move(at)) {}
    [[nodiscard]] const char* what() const noexcept override { return message.c_str(); }
};

// Names are bytes in a blob; surrogateescape keeps any that are not UTF-8
// (the specification allows only ASCII) round-trippable through str.
py::str name_to_str(fdt::Str s) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data, static_cast<Py_ssize_t>(s.size), "surrogateescape");
    if (o == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(o);
}

std::string str_to_name(py::handle h, const char* what) {
    if (!py::isinstance<py::str>(h)) {
        throw py::type_error(std::string(what) + " must be a str, not " +
                             std::string(py::str(py::type::of(h).attr("__name__"))));
    }
    PyObject* b = PyUnicode_AsEncodedString(h.ptr(), "utf-8", "surrogateescape");
    if (b == nullptr) throw py::error_already_set();
    return std::string(py::reinterpret_steal<py::bytes>(b));
}

// A contiguous read-only view of any bytes-like object, held while in scope.
class ByteView {
public:
    explicit ByteView(py::handle h) {
        if (PyObject_GetBuffer(h.ptr(), &view_, PyBUF_SIMPLE) != 0) throw py::error_already_set();
    }
    ~ByteView() { PyBuffer_Release(&view_); }
    ByteView(const ByteView&) = delete;
    ByteView& operator=(const ByteView&) = delete;

    [[nodiscard]] const std::uint8_t* data() const {
        return static_cast<const std::uint8_t*>(view_.buf);
    }
    [[nodiscard]] std::size_t size() const { return static_cast<std::size_t>(view_.len); }

private:
    Py_buffer view_{};
};

py::dict parse(const py::handle& data) {
    const ByteView view(data);
    const fdt::ParseResult r = fdt::parse(view.data(), view.size());
    if (r.error != fdt::Error::None) {
        throw FdtFailure(r.error,
                         std::string("malformed device tree blob: ") + fdt::error_name(r.error) +
                             " at byte " + hex(r.offset),
                         py::int_(r.offset));
    }
    const fdt::Header& h = r.blob.header();
    py::dict out;
    out["version"] = h.version;
    out["last_comp_version"] = h.last_comp_version;
    out["boot_cpuid_phys"] = h.boot_cpuid_phys;
    out["totalsize"] = h.totalsize;
    py::list reservations;
    for (std::size_t i = 0; i < r.blob.reservation_count(); ++i) {
        const fdt::Reservation res = r.blob.reservation(i);
        reservations.append(py::make_tuple(res.address, res.size));
    }
    out["reservations"] = reservations;

    // The open nodes' property and child lists (validation bounds the depth).
    std::vector<std::pair<py::list, py::list>> open;
    py::object root = py::none();
    fdt::Cursor c = r.blob.items();
    fdt::Item item;
    while (c.next(item)) {
        if (item.kind == fdt::Item::Kind::BeginNode) {
            py::list props;
            py::list children;
            py::tuple node = py::make_tuple(name_to_str(item.name), props, children);
            if (open.empty()) {
                root = node;
            } else {
                open.back().second.append(node);
            }
            open.emplace_back(props, children);
        } else if (item.kind == fdt::Item::Kind::Property) {
            open.back().first.append(py::make_tuple(
                name_to_str(item.name),
                py::bytes(reinterpret_cast<const char*>(item.value.data), item.value.size)));
        } else {
            open.pop_back();
        }
    }
    out["root"] = root;
    return out;
}

void writer_check(fdt::Error e) {
    if (e == fdt::Error::None) return;
    throw FdtFailure(e, std::string("cannot build the device tree: ") + fdt::error_name(e),
                     py::none());
}

// One node and everything below it. The writer stops at kMaxDepth, which
// also ends the recursion on a tree that contains itself.
void write_node(fdt::Writer& w, py::handle node) {
    if (!py::isinstance<py::sequence>(node) || py::isinstance<py::str>(node) ||
        py::len(node) != 3) {
        throw py::type_error("a node is (name, [(property, bytes), ...], [child nodes])");
    }
    const auto parts = py::reinterpret_borrow<py::sequence>(node);
    const std::string name = str_to_name(parts[0], "a node's name");
    if (w.begin_node(fdt::Str{name.data(), name.size()}) != fdt::Error::None) return;
    for (py::handle prop : py::iter(parts[1])) {
        if (!py::isinstance<py::sequence>(prop) || py::isinstance<py::str>(prop) ||
            py::len(prop) != 2) {
            throw py::type_error("a property is (name, bytes)");
        }
        const auto pair = py::reinterpret_borrow<py::sequence>(prop);
        const std::string pname = str_to_name(pair[0], "a property's name");
        const py::object value = pair[1];
        const ByteView bytes(value);
        if (w.property(fdt::Str{pname.data(), pname.size()}, {bytes.data(), bytes.size()}) !=
            fdt::Error::None) {
            return;
        }
    }
    for (py::handle child : py::iter(parts[2])) {
        write_node(w, child);
        if (w.error() != fdt::Error::None) return;
    }
    w.end_node();
}

py::bytes build(const py::handle& root, const py::iterable& reservations,
                std::uint32_t boot_cpuid_phys) {
    std::vector<fdt::Reservation> entries;
    for (py::handle entry : reservations) {
        if (!py::isinstance<py::sequence>(entry) || py::len(entry) != 2) {
            throw py::type_error("a reservation is (address, size)");
        }
        const auto pair = py::reinterpret_borrow<py::sequence>(entry);
        entries.push_back({pair[0].cast<std::uint64_t>(), pair[1].cast<std::uint64_t>()});
    }
    // The blob's size is known only once it is written: start small, and
    // double the buffer while the writer runs out of room.
    for (std::size_t capacity = 4096;; capacity *= 2) {
        std::vector<std::uint8_t> buffer(capacity);
        fdt::Writer w(buffer.data(), buffer.size());
        w.set_boot_cpuid_phys(boot_cpuid_phys);
        for (const fdt::Reservation& e : entries) w.add_reservation(e.address, e.size);
        write_node(w, root);
        std::size_t size = 0;
        const fdt::Error e = w.finish(size);
        if (e == fdt::Error::NoSpace && capacity <= 0xffffffffu / 2) continue;
        writer_check(e);
        return py::bytes(reinterpret_cast<const char*>(buffer.data()), size);
    }
}

}  // namespace

void bind_fdt(py::module_& m) {
    static py::exception<FdtFailure> fdt_error(m, "FdtError", PyExc_ValueError);
    fdt_error.doc() =
        "A malformed device tree blob, or a tree the writer cannot build. `code` names the "
        "core's fdt::Error; `offset` is the byte where reading failed (None when writing).";
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const FdtFailure& e) {
            // An instance with attributes, not just a message (set_error).
            py::object exc = py::handle(fdt_error.ptr())(e.message);
            exc.attr("code") = fdt::error_name(e.error);
            exc.attr("offset") = e.offset;
            PyErr_SetObject(fdt_error.ptr(), exc.ptr());
        }
    });
    m.attr("FDT_MAGIC") = fdt::kMagic;
    m.attr("FDT_VERSION") = fdt::kVersion;
    m.attr("FDT_MAX_DEPTH") = fdt::kMaxDepth;

    m.def("fdt_parse", &parse, py::arg("data"), R"doc(
Validates a flattened devicetree blob and returns its contents: a dict with
version, last_comp_version, boot_cpuid_phys, totalsize, reservations (a list
of (address, size)) and root, where a node is (name, [(property, bytes)],
[child nodes]) in blob order. Raises FdtError if the blob is malformed.

>>> from armvcpu._core import fdt_build, fdt_parse
>>> blob = fdt_build(("", [("model", b"t\0")], [("cpus", [], [])]))
>>> fdt_parse(blob)["root"]
('', [('model', b't\x00')], [('cpus', [], [])])
)doc");
    m.def("fdt_build", &build, py::arg("root"), py::arg("reservations") = py::list(),
          py::arg("boot_cpuid_phys") = 0, R"doc(
Builds a version 17 flattened devicetree blob from a root node shaped as
fdt_parse returns it, with memory reservations [(address, size)]. Property
names are shared in the strings block. Raises FdtError for a tree the format
cannot hold (a '/' in a node name, nodes nested too deep, ...).
)doc");
}

}  // namespace armvcpu::py_bind
