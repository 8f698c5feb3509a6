// Stage-2 tables built by the core into host memory that numpy can view.
#include <pybind11/numpy.h>

#include <vector>

#include "armvcpu/stage2.hpp"
#include "bindings.hpp"

namespace armvcpu::py_bind {

namespace {

// Table pages in a host buffer, addressed as physical memory from `base`.
struct BufferTableMemory {
    std::uint64_t base;
    std::vector<std::uint64_t> words;
    unsigned used = 0;

    [[nodiscard]] unsigned capacity() const { return static_cast<unsigned>(words.size() / 512); }
    std::uint64_t read64(std::uint64_t pa) const { return words.at((pa - base) / 8); }
    void write64(std::uint64_t pa, std::uint64_t v) { words.at((pa - base) / 8) = v; }
    std::uint64_t alloc_table() {
        if (used == capacity()) return 0;
        return base + stage2::kPageSize * used++;
    }
};

struct PyStage2 {
    BufferTableMemory mem;
    stage2::Tables<BufferTableMemory> tables;

    // The first-level tables are the buffer's first pages (checked to fit and
    // be aligned by the caller).
    PyStage2(unsigned ipa_bits, unsigned pa_bits, std::uint64_t base, unsigned max_tables)
        : mem{base, std::vector<std::uint64_t>(512ull * max_tables, 0),
              stage2::root_tables_for(ipa_bits)},
          tables(mem, base, ipa_bits, pa_bits) {}
};

void raise_on(stage2::MapError e, const char* what, std::uint64_t ipa) {
    if (e == stage2::MapError::None) return;
    throw py::value_error(std::string(what) + " at IPA " + hex(ipa) +
                          " failed: " + stage2::map_error_name(e));
}

stage2::Access parse_access(const std::string& s) {
    if (s == "rw") return stage2::Access::ReadWrite;
    if (s == "r" || s == "ro") return stage2::Access::ReadOnly;
    if (s == "w" || s == "wo") return stage2::Access::WriteOnly;
    if (s == "" || s == "none") return stage2::Access::None;
    throw py::value_error("access must be 'rw', 'ro', 'wo' or 'none', not '" + s + "'");
}

stage2::MemAttr parse_attr(const std::string& s) {
    if (s == "normal") return stage2::MemAttr::NormalWriteBack;
    if (s == "normal-nc") return stage2::MemAttr::NormalNonCacheable;
    if (s == "device") return stage2::MemAttr::DeviceNGnRE;
    if (s == "device-nGnRnE") return stage2::MemAttr::DeviceNGnRnE;
    throw py::value_error("memory must be 'normal', 'normal-nc', 'device' or 'device-nGnRnE'");
}

}  // namespace

void bind_stage2(py::module_& m) {
    m.def("pa_bits_from_parange", &stage2::pa_bits_from_parange, py::arg("id_aa64mmfr0"),
          "Physical address bits for ID_AA64MMFR0_EL1.PARange (0 when reserved).");
    m.def("vtcr_el2", &stage2::vtcr_el2, py::arg("ipa_bits"), py::arg("pa_bits"),
          "VTCR_EL2 for 4 KiB-granule tables of this IPA and PA width.");

    py::class_<PyStage2>(m, "Stage2Tables", py::buffer_protocol(), R"doc(
Stage-2 translation tables (4 KiB granule) built by the core in host memory,
addressed as if they lived at physical address `base`. The buffer protocol
exposes the descriptors: numpy.asarray(tables) is a uint64 view.

>>> from armvcpu._core import Stage2Tables
>>> s2 = Stage2Tables(ipa_bits=32, pa_bits=40, base=0x80000000)
>>> s2.map(0x40000000, 0x48000000, 0x200000)
>>> hex(s2.translate(0x40001234)[0])
'0x48001234'
)doc")
        .def(py::init([](unsigned ipa_bits, unsigned pa_bits, std::uint64_t base,
                         unsigned max_tables) {
                 if (!stage2::valid_sizes(ipa_bits, pa_bits)) {
                     throw py::value_error(
                         "ipa_bits must be 25..48 and at most pa_bits, pa_bits one of 32, 36, "
                         "40, 42, 44, 48");
                 }
                 const unsigned roots = stage2::root_tables_for(ipa_bits);
                 if (base % (stage2::kPageSize * roots) != 0 || max_tables < roots) {
                     throw py::value_error("base must be aligned to the first level's tables (" +
                                           std::to_string(roots * 4) +
                                           " KiB) and max_tables >= " + std::to_string(roots));
                 }
                 return std::make_unique<PyStage2>(ipa_bits, pa_bits, base, max_tables);
             }),
             py::arg("ipa_bits") = 40, py::arg("pa_bits") = 40, py::arg("base") = 0x8000'0000,
             py::arg("max_tables") = 64)
        .def(
            "map",
            [](PyStage2& s, std::uint64_t ipa, std::uint64_t pa, std::uint64_t size,
               const std::string& access, const std::string& memory, bool execute_never) {
                const stage2::Attributes a{parse_access(access), parse_attr(memory), execute_never};
                raise_on(s.tables.map(ipa, pa, size, a), "map", ipa);
            },
            py::arg("ipa"), py::arg("pa"), py::arg("size"), py::arg("access") = "rw",
            py::arg("memory") = "normal", py::arg("execute_never") = false)
        .def(
            "unmap",
            [](PyStage2& s, std::uint64_t ipa, std::uint64_t size) {
                raise_on(s.tables.unmap(ipa, size), "unmap", ipa);
            },
            py::arg("ipa"), py::arg("size"))
        .def(
            "translate",
            [](const PyStage2& s, std::uint64_t ipa) -> py::object {
                const stage2::Translation t = s.tables.translate(ipa);
                if (!t.valid) return py::none();
                return py::make_tuple(t.pa, t.level, t.descriptor);
            },
            py::arg("ipa"), "(pa, level, descriptor) of a mapped IPA, or None.")
        .def_property_readonly("root", [](const PyStage2& s) { return s.tables.root(); })
        .def_property_readonly("start_level",
                               [](const PyStage2& s) { return s.tables.start_level(); })
        .def_property_readonly(
            "root_tables", [](const PyStage2& s) { return s.tables.root_tables(); },
            "4 KiB tables concatenated at the first level (2..16 for a 40..43-bit IPA).")
        .def_property_readonly("vtcr", [](const PyStage2& s) { return s.tables.vtcr(); })
        .def(
            "vttbr", [](const PyStage2& s, std::uint16_t vmid) { return s.tables.vttbr(vmid); },
            py::arg("vmid"))
        .def_property_readonly("tables_used", [](const PyStage2& s) { return s.mem.used; })
        .def(
            "to_bytes",
            [](const PyStage2& s) {
                return py::bytes(reinterpret_cast<const char*>(s.mem.words.data()),
                                 s.mem.used * stage2::kPageSize);
            },
            "The used table pages, as they would sit in memory from `base`.")
        .def_buffer([](PyStage2& s) {
            return py::buffer_info(s.mem.words.data(), sizeof(std::uint64_t),
                                   py::format_descriptor<std::uint64_t>::format(), 1,
                                   {s.mem.words.size()}, {sizeof(std::uint64_t)});
        });
}

}  // namespace armvcpu::py_bind
