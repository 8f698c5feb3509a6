// The scheduler's host interface: SchedConfig (placement the host asks for)
// and the switch log's counters; the switches themselves are exit-log
// entries (which vCPU ran where, for how long).
#include <pybind11/stl.h>

#include <array>
#include <cstddef>

#include "armvcpu/scheduler.hpp"
#include "armvcpu/world_switch.hpp"
#include "bindings.hpp"

namespace armvcpu::py_bind {

void bind_sched(py::module_& m) {
    namespace as = armvcpu::sched;
    py::class_<as::SchedConfig>(
        m, "SchedConfig",
        "Where each vCPU slot may run (firmware symbol armvcpu_sched_config): "
        "phys_cpu_set bit masks (0 = any CPU) and favor_phys_cpu (0xff = none).")
        .def(py::init([]() { return as::kDefaultSchedConfig; }))
        .def_static(
            "from_bytes",
            [](const py::buffer& b) { return from_buffer<as::SchedConfig>(b, "SchedConfig"); },
            py::arg("data"))
        .def("to_bytes", &to_bytes<as::SchedConfig>)
        .def_readwrite("slice_us", &as::SchedConfig::slice_us)
        .def_property(
            "phys_cpu_set",
            [](const as::SchedConfig& c) {
                return std::array<std::uint8_t, as::kMaxSlots>{
                    c.phys_cpu_set[0], c.phys_cpu_set[1], c.phys_cpu_set[2], c.phys_cpu_set[3],
                    c.phys_cpu_set[4], c.phys_cpu_set[5], c.phys_cpu_set[6], c.phys_cpu_set[7]};
            },
            [](as::SchedConfig& c, const std::array<std::uint8_t, as::kMaxSlots>& v) {
                for (unsigned i = 0; i < as::kMaxSlots; ++i) c.phys_cpu_set[i] = v[i];
            })
        .def_property(
            "favor_phys_cpu",
            [](const as::SchedConfig& c) {
                return std::array<std::uint8_t, as::kMaxSlots>{
                    c.favor_phys_cpu[0], c.favor_phys_cpu[1], c.favor_phys_cpu[2],
                    c.favor_phys_cpu[3], c.favor_phys_cpu[4], c.favor_phys_cpu[5],
                    c.favor_phys_cpu[6], c.favor_phys_cpu[7]};
            },
            [](as::SchedConfig& c, const std::array<std::uint8_t, as::kMaxSlots>& v) {
                for (unsigned i = 0; i < as::kMaxSlots; ++i) c.favor_phys_cpu[i] = v[i];
            })
        .def_property_readonly_static("SIZE", [](py::object) { return sizeof(as::SchedConfig); });

    m.def(
        "place_vcpus",
        [](const as::SchedConfig& cfg, unsigned slots, unsigned cpus) -> py::object {
            if (slots > as::kMaxSlots || cpus == 0 || cpus > as::kMaxPhysCpus) {
                throw py::value_error("place_vcpus: 1..8 CPUs and at most 8 vCPU slots");
            }
            std::uint8_t where[as::kMaxSlots] = {};
            if (as::place_vcpus(cfg, slots, cpus, where) != as::PlaceError::None) {
                return py::none();
            }
            py::list out;
            for (unsigned s = 0; s < slots; ++s) out.append(where[s]);
            return out;
        },
        py::arg("config"), py::arg("slots"), py::arg("cpus"),
        "The firmware's placement: each slot's physical CPU, or None when a slot's set names "
        "no CPU of the machine.");

    m.attr("NO_FAVOR") = as::kNoFavor;
    py::dict sizes;
    sizes["size"] = sizeof(as::SwitchLog);
    sizes["ran_mask"] = as::kSwitchRanMask;
    m.attr("SWITCH_LOG_LAYOUT") = sizes;
    m.def(
        "switch_log_entry",
        [](std::uint64_t time, std::uint64_t ran, unsigned cpu, std::array<unsigned, 3> from,
           std::array<unsigned, 3> to, unsigned reason) {
            const ExitLogEntry e =
                as::switch_log_entry(time, ran, cpu, {from[0], from[1], from[2]},
                                     {to[0], to[1], to[2]}, static_cast<as::SwitchReason>(reason));
            return py::bytes(reinterpret_cast<const char*>(&e), sizeof(e));
        },
        py::arg("time"), py::arg("ran"), py::arg("cpu"), py::arg("from_"), py::arg("to"),
        py::arg("reason"),
        "The exit-log entry (bytes) the firmware writes for one world switch; from_ and to are "
        "(slot, VM id, vCPU index).");
    py::list reasons;
    for (unsigned r = 0; r <= static_cast<unsigned>(as::SwitchReason::Yield); ++r) {
        reasons.append(as::switch_reason_name(static_cast<as::SwitchReason>(r)));
    }
    m.attr("SWITCH_REASONS") = reasons;
    py::dict symbols;
    symbols["sched_config"] = as::kSymSchedConfig;
    symbols["switch_log"] = as::kSymSwitchLog;
    symbols["current_slot"] = as::kSymCurrentSlot;
    m.attr("SCHED_SYMBOLS") = symbols;

    m.def(
        "world_features",
        [](std::uint64_t pfr0, std::uint64_t pfr1, std::uint64_t isar1, std::uint64_t isar2,
           std::uint64_t ich_vtr) {
            const WorldFeatures f = world_features(pfr0, pfr1, isar1, isar2, ich_vtr);
            py::dict d;
            d["gicv3"] = f.gicv3;
            d["list_regs"] = f.list_regs;
            d["ap_regs"] = f.ap_regs;
            d["pauth"] = f.pauth;
            d["mte"] = f.mte;
            d["sve"] = f.sve;
            return d;
        },
        py::arg("pfr0"), py::arg("pfr1"), py::arg("isar1"), py::arg("isar2"), py::arg("ich_vtr"),
        "Which optional state a world switch saves on a CPU with these ID registers.");
}

}  // namespace armvcpu::py_bind
