// VM snapshots: the firmware's SnapshotControl (snapshot.hpp), read by the host.
#include "armvcpu/host_interface.hpp"
#include "armvcpu/snapshot.hpp"
#include "bindings.hpp"

namespace armvcpu::py_bind {

void bind_snapshot(py::module_& m) {
    py::enum_<SnapshotState>(m, "SnapshotState", "Whether VM 1's snapshot was taken.")
        .value("None_", SnapshotState::None)
        .value("Taken", SnapshotState::Taken)
        .value("Failed", SnapshotState::Failed);
    py::enum_<SnapshotError>(m, "SnapshotError", "Why a snapshot or a restore failed.")
        .value("None_", SnapshotError::None)
        .value("NoSnapshot", SnapshotError::NoSnapshot)
        .value("TooManyVcpus", SnapshotError::TooManyVcpus)
        .value("RamTooLarge", SnapshotError::RamTooLarge)
        .value("DirtyOverflow", SnapshotError::DirtyOverflow)
        .value("BadLoad", SnapshotError::BadLoad)
        .value("NotRam", SnapshotError::NotRam);
    m.def(
        "snapshot_error_text", [](SnapshotError e) { return snapshot_error_text(e); },
        py::arg("error"), "What a SnapshotError means, in words.");
    py::class_<SnapshotControl>(m, "SnapshotControl",
                                "VM 1's snapshot as the firmware reports it "
                                "(firmware symbol armvcpu_snapshot).")
        .def_static(
            "from_bytes",
            [](const py::buffer& b) { return from_buffer<SnapshotControl>(b, "SnapshotControl"); },
            py::arg("data"))
        .def_readonly("magic", &SnapshotControl::magic)
        .def_readonly("state", &SnapshotControl::state)
        .def_readonly("error", &SnapshotControl::error)
        .def_readonly("page_capacity", &SnapshotControl::page_capacity)
        .def_readonly("restores", &SnapshotControl::restores)
        .def_readonly("dirty_pages", &SnapshotControl::dirty_pages)
        .def_readonly("pages_restored", &SnapshotControl::pages_restored)
        .def_readonly("write_faults", &SnapshotControl::write_faults)
        .def_readonly("load_ipa", &SnapshotControl::load_ipa)
        .def_readonly("load_size", &SnapshotControl::load_size)
        .def_readonly("hcr_el2_set", &SnapshotControl::hcr_el2_set)
        .def_readonly("mdcr_el2", &SnapshotControl::mdcr_el2)
        .def_readonly("flags", &SnapshotControl::flags)
        .def_property_readonly_static("SIZE", [](py::object) { return sizeof(SnapshotControl); })
        .def_property_readonly_static("OFFSETS", [](py::object) {
            py::dict d;
            d["magic"] = offsetof(SnapshotControl, magic);
            d["state"] = offsetof(SnapshotControl, state);
            d["error"] = offsetof(SnapshotControl, error);
            d["restores"] = offsetof(SnapshotControl, restores);
            d["dirty_pages"] = offsetof(SnapshotControl, dirty_pages);
            d["pages_restored"] = offsetof(SnapshotControl, pages_restored);
            d["write_faults"] = offsetof(SnapshotControl, write_faults);
            d["load_ipa"] = offsetof(SnapshotControl, load_ipa);
            d["load_size"] = offsetof(SnapshotControl, load_size);
            d["hcr_el2_set"] = offsetof(SnapshotControl, hcr_el2_set);
            d["mdcr_el2"] = offsetof(SnapshotControl, mdcr_el2);
            d["flags"] = offsetof(SnapshotControl, flags);
            return d;
        });
    m.attr("SNAPSHOT_MAGIC") = kSnapshotMagic;
    m.attr("SNAPSHOT_STAGING_SIZE") = kSnapshotStagingSize;
    m.attr("FEATURE_SNAPSHOT") = kFeatureSnapshot;
    m.attr("SNAPSHOT_SET_TRAPS") = kSnapshotSetTraps;
}

}  // namespace armvcpu::py_bind
