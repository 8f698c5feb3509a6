// PSCI/SMCCC function IDs, return codes and the VM's power state.
#include <pybind11/stl.h>

#include "armvcpu/psci.hpp"
#include "bindings.hpp"

namespace armvcpu::py_bind {

void bind_psci(py::module_& m) {
    // Flat in _core (PsciFunction, ...) so that one generated stub types it all.
    py::module_& p = m;
    py::enum_<psci::Function>(
        p, "PsciFunction", "PSCI 1.1 / SMCCC 1.1 function IDs (SMC32 form; bit 30 selects SMC64).")
        .value("PSCI_VERSION", psci::Function::PsciVersion)
        .value("CPU_SUSPEND", psci::Function::CpuSuspend)
        .value("CPU_OFF", psci::Function::CpuOff)
        .value("CPU_ON", psci::Function::CpuOn)
        .value("AFFINITY_INFO", psci::Function::AffinityInfo)
        .value("MIGRATE", psci::Function::Migrate)
        .value("MIGRATE_INFO_TYPE", psci::Function::MigrateInfoType)
        .value("MIGRATE_INFO_UP_CPU", psci::Function::MigrateInfoUpCpu)
        .value("SYSTEM_OFF", psci::Function::SystemOff)
        .value("SYSTEM_RESET", psci::Function::SystemReset)
        .value("PSCI_FEATURES", psci::Function::PsciFeatures)
        .value("SYSTEM_RESET2", psci::Function::SystemReset2)
        .value("SMCCC_VERSION", psci::Function::SmcccVersion)
        .value("SMCCC_ARCH_FEATURES", psci::Function::SmcccArchFeatures);
    py::enum_<psci::ReturnCode>(p, "PsciReturnCode", "PSCI return codes (DEN0022 5.2.2).")
        .value("SUCCESS", psci::ReturnCode::Success)
        .value("NOT_SUPPORTED", psci::ReturnCode::NotSupported)
        .value("INVALID_PARAMETERS", psci::ReturnCode::InvalidParameters)
        .value("DENIED", psci::ReturnCode::Denied)
        .value("ALREADY_ON", psci::ReturnCode::AlreadyOn)
        .value("ON_PENDING", psci::ReturnCode::OnPending)
        .value("INTERNAL_FAILURE", psci::ReturnCode::InternalFailure)
        .value("NOT_PRESENT", psci::ReturnCode::NotPresent)
        .value("DISABLED", psci::ReturnCode::Disabled)
        .value("INVALID_ADDRESS", psci::ReturnCode::InvalidAddress);
    py::enum_<psci::AffinityState>(p, "AffinityState", "AFFINITY_INFO results.")
        .value("ON", psci::AffinityState::On)
        .value("OFF", psci::AffinityState::Off)
        .value("ON_PENDING", psci::AffinityState::OnPending);
    p.attr("PSCI_VERSION") = psci::kPsciVersion;
    p.attr("SMCCC_VERSION") = psci::kSmcccVersion;
    p.def("is_core_function", &psci::is_core_function, py::arg("x0"),
          "True when the core answers this function ID (SMCCC owners 0 and 4, fast calls).");
    p.def(
        "psci_is_implemented",
        [](std::uint64_t fid, bool qemu_virt) {
            return psci::is_implemented(fid, qemu_virt ? psci::Smccc::QemuVirt : psci::Smccc::V1_1);
        },
        py::arg("fid"), py::arg("qemu_virt") = false,
        "True when PSCI_FEATURES reports the function as implemented (qemu_virt: as QEMU "
        "7.2's own PSCI reports it, without SMCCC 1.1's calls).");

    py::class_<psci::VmPowerState>(p, "VmPowerState", R"doc(
The PSCI power state of a VM's vCPUs, shared by them (CPU_ON, CPU_OFF,
AFFINITY_INFO). Pass it to classify_sync(power=...).

>>> from armvcpu._core import VmPowerState
>>> vm = VmPowerState([0x0, 0x1])   # two vCPUs, Aff0 = 0 and 1
>>> vm.state(1)
<AffinityState.OFF: 1>
)doc")
        .def(py::init([](const std::vector<std::uint64_t>& mpidrs) {
                 if (mpidrs.empty() || mpidrs.size() > psci::VmPowerState::kMaxVcpus) {
                     throw py::value_error("a VM has 1 to " +
                                           std::to_string(psci::VmPowerState::kMaxVcpus) +
                                           " vCPUs");
                 }
                 psci::VmPowerState s{};
                 s.num_vcpus = static_cast<unsigned>(mpidrs.size());
                 for (std::size_t i = 0; i < mpidrs.size(); ++i) {
                     s.mpidr[i] = mpidrs[i];
                     s.state[i] = static_cast<std::uint8_t>(i == 0 ? psci::AffinityState::On
                                                                   : psci::AffinityState::Off);
                 }
                 return s;
             }),
             py::arg("mpidrs"), "vCPU 0 starts ON, the others OFF.")
        .def_readonly("num_vcpus", &psci::VmPowerState::num_vcpus)
        .def(
            "state",
            [](const psci::VmPowerState& s, unsigned i) {
                if (i >= s.num_vcpus) throw py::index_error("no vCPU " + std::to_string(i));
                return s.load(i);
            },
            py::arg("index"))
        .def(
            "set_state",
            [](psci::VmPowerState& s, unsigned i, psci::AffinityState st) {
                if (i >= s.num_vcpus) throw py::index_error("no vCPU " + std::to_string(i));
                s.store(i, st);
            },
            py::arg("index"), py::arg("state"))
        .def("index_of", &psci::VmPowerState::index_of, py::arg("mpidr"))
        .def("try_cpu_on", &psci::VmPowerState::try_cpu_on, py::arg("target"),
             py::call_guard<py::gil_scoped_release>());
}

}  // namespace armvcpu::py_bind
