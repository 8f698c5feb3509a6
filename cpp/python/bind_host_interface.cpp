// The firmware/host exit record and guest configuration.
#include <pybind11/stl.h>

#include "armvcpu/classify.hpp"
#include "armvcpu/exit_reason.hpp"
#include "armvcpu/host_interface.hpp"
#include "armvcpu/mmio.hpp"
#include "armvcpu/pl011.hpp"
#include "armvcpu/psci.hpp"
#include "armvcpu/smmu.hpp"
#include "armvcpu/snapshot.hpp"
#include "armvcpu/trap_frame.hpp"
#include "bindings.hpp"

namespace armvcpu::py_bind {

void bind_host_interface(py::module_& m) {
    py::enum_<ExceptionType>(m, "ExceptionType", "The vector-table entry an exit came through.")
        .value("Synchronous", ExceptionType::Synchronous)
        .value("Irq", ExceptionType::Irq)
        .value("Fiq", ExceptionType::Fiq)
        .value("SError", ExceptionType::SError);
    py::enum_<HostTransport>(m, "HostTransport", "How the firmware hands exits to the host.")
        .value("None_", HostTransport::None)
        .value("Gdb", HostTransport::Gdb)
        .value("SharedMemory", HostTransport::SharedMemory);
    py::enum_<HostAction>(m, "HostAction", "What the host asks the firmware to do with an exit.")
        .value("Default", HostAction::Default)
        .value("Resume", HostAction::Resume)
        .value("Stop", HostAction::Stop)
        .value("Step", HostAction::Step)
        .value("InjectDataAbort", HostAction::InjectDataAbort)
        .value("InjectInstructionAbort", HostAction::InjectInstructionAbort)
        .value("InjectUndef", HostAction::InjectUndef)
        .value("Restore", HostAction::Restore);
    m.attr("HYPERCALL_CLAIMS_MAGIC") = kHypercallClaimsMagic;
    m.attr("MAX_HYPERCALL_CLAIMS") = kMaxHypercallClaims;
    m.attr("HYPERCALL_CLAIMS_OFFSETS") =
        py::dict(py::arg("magic") = offsetof(HypercallClaims, magic),
                 py::arg("all") = offsetof(HypercallClaims, all),
                 py::arg("count") = offsetof(HypercallClaims, count),
                 py::arg("ranges") = offsetof(HypercallClaims, ranges));
    m.attr("HYPERCALL_CLAIM_SIZE") = sizeof(HypercallClaim);
    m.attr("SMCCC_NOT_SUPPORTED") = kSmcccNotSupported;

    py::class_<ExitRecord>(m, "ExitRecord", R"doc(
The per-vCPU exit record the firmware publishes to the host.
Read it from target memory with ExitRecord.from_bytes(); write it back with
to_bytes() after changing .action and .frame.
)doc")
        .def(py::init([]() {
            ExitRecord r{};
            r.magic = kExitRecordMagic;
            r.version = kExitRecordVersion;
            r.size = sizeof(ExitRecord);
            return r;
        }))
        .def_static(
            "from_bytes",
            [](const py::buffer& b) {
                const auto r = from_buffer<ExitRecord>(b, "ExitRecord");
                if (r.magic != kExitRecordMagic) {
                    throw py::value_error("not an exit record: magic " + hex(r.magic) +
                                          ", expected " + hex(kExitRecordMagic));
                }
                if (r.version != kExitRecordVersion || r.size != sizeof(ExitRecord)) {
                    throw py::value_error("exit record version " + std::to_string(r.version) +
                                          " size " + std::to_string(r.size) +
                                          " does not match this armvcpu (version " +
                                          std::to_string(kExitRecordVersion) + ", size " +
                                          std::to_string(sizeof(ExitRecord)) + ")");
                }
                if (static_cast<std::uint32_t>(r.reason.kind) >= kNumExitKinds) {
                    throw py::value_error(
                        "exit record holds an unknown exit kind " +
                        std::to_string(static_cast<std::uint32_t>(r.reason.kind)));
                }
                return r;
            },
            py::arg("data"))
        .def("to_bytes", &to_bytes<ExitRecord>)
        .def_readonly("vm_id", &ExitRecord::vm_id)
        .def_readonly("vcpu_id", &ExitRecord::vcpu_id)
        .def_readonly("seq", &ExitRecord::seq)
        .def_readonly("ack", &ExitRecord::ack)
        .def_readonly("exception_type", &ExitRecord::exception_type)
        .def_readwrite("action", &ExitRecord::action)
        .def_readonly("esr", &ExitRecord::esr)
        .def_readwrite("far", &ExitRecord::far)
        .def_readonly("hpfar", &ExitRecord::hpfar)
        .def_readonly("elr", &ExitRecord::elr)
        .def_property_readonly(
            "instruction_address",
            [](const ExitRecord& r) {
                return instruction_address_from_preferred_return(
                    r.elr, Esr{r.esr}, r.exception_type == ExceptionType::Synchronous);
            },
            "The instruction that made the exit (for HVC/SVC one before elr).")
        .def_property_readonly("syndrome",
                               [](const ExitRecord& r) { return Syndrome{r.esr, r.far, r.hpfar}; })
        .def_readonly("reason", &ExitRecord::reason)
        .def_readwrite("frame", &ExitRecord::frame)
        .def_property_readonly_static("SIZE", [](py::object) { return sizeof(ExitRecord); })
        .def_property_readonly_static("OFFSETS", [](py::object) {
            py::dict d;
            d["magic"] = offsetof(ExitRecord, magic);
            d["version"] = offsetof(ExitRecord, version);
            d["size"] = offsetof(ExitRecord, size);
            d["vm_id"] = offsetof(ExitRecord, vm_id);
            d["vcpu_id"] = offsetof(ExitRecord, vcpu_id);
            d["seq"] = offsetof(ExitRecord, seq);
            d["ack"] = offsetof(ExitRecord, ack);
            d["exception_type"] = offsetof(ExitRecord, exception_type);
            d["action"] = offsetof(ExitRecord, action);
            d["esr"] = offsetof(ExitRecord, esr);
            d["far"] = offsetof(ExitRecord, far);
            d["hpfar"] = offsetof(ExitRecord, hpfar);
            d["elr"] = offsetof(ExitRecord, elr);
            d["reason"] = offsetof(ExitRecord, reason);
            d["frame"] = offsetof(ExitRecord, frame);
            return d;
        });

    py::class_<GuestConfig>(
        m, "GuestConfig",
        "Where the guest lives and starts (firmware symbol armvcpu_guest_config).")
        .def(py::init([]() { return GuestConfig{}; }))
        .def_static(
            "from_bytes",
            [](const py::buffer& b) { return from_buffer<GuestConfig>(b, "GuestConfig"); },
            py::arg("data"))
        .def("to_bytes", &to_bytes<GuestConfig>)
        .def_readwrite("entry", &GuestConfig::entry)
        .def_readwrite("ipa_base", &GuestConfig::ipa_base)
        .def_readwrite("pa_base", &GuestConfig::pa_base)
        .def_readwrite("size", &GuestConfig::size)
        .def_readwrite("x0", &GuestConfig::x0)
        .def_readwrite("hcr_el2_set", &GuestConfig::hcr_el2_set)
        .def_readwrite("mdcr_el2", &GuestConfig::mdcr_el2)
        .def_readwrite("uart_mode", &GuestConfig::uart_mode)
        .def_readwrite("uart_base", &GuestConfig::uart_base)
        .def_readwrite("selftest", &GuestConfig::selftest)
        .def_readwrite("num_vcpus", &GuestConfig::num_vcpus)
        .def_readwrite("features", &GuestConfig::features)
        .def_property_readonly_static("SIZE", [](py::object) { return sizeof(GuestConfig); })
        .def("__repr__", [](const GuestConfig& c) {
            return "GuestConfig(entry=" + hex(c.entry) + ", ipa_base=" + hex(c.ipa_base) +
                   ", pa_base=" + hex(c.pa_base) + ", size=" + hex(c.size) + ", x0=" + hex(c.x0) +
                   ")";
        });

    py::dict symbols;
    symbols["exit_records"] = kSymExitRecords;
    symbols["guest_config"] = kSymGuestConfig;
    symbols["host_attached"] = kSymHostAttached;
    symbols["host_handoff"] = kSymHostHandoff;
    symbols["fast_rules"] = kSymFastRules;
    symbols["guest_console"] = kSymGuestConsole;
    symbols["pending_irq"] = kSymPendingIrq;
    symbols["el2_instructions"] = kSymEl2Instructions;
    symbols["exit_log"] = kSymExitLog;
    m.attr("FIRMWARE_SYMBOLS") = symbols;
    // Symbols a firmware image may lack (older images): the host does without.
    py::dict optional_symbols;
    optional_symbols["host_doorbell"] = kSymHostDoorbell;
    optional_symbols["host_doorbell_store"] = kSymHostDoorbellStore;
    optional_symbols["hypercall_claims"] = kSymHypercallClaims;
    optional_symbols["dma_faults"] = smmu::kSymDmaFaults;
    optional_symbols["snapshot"] = kSymSnapshot;
    optional_symbols["snapshot_staging"] = kSymSnapshotStaging;
    optional_symbols["host_sleeping"] = kSymHostSleeping;
    m.attr("FIRMWARE_OPTIONAL_SYMBOLS") = optional_symbols;
    py::enum_<UartMode>(m, "UartMode", "How a VM's PL011 is provided.")
        .value("Host", UartMode::Host)
        .value("Emulate", UartMode::Emulate)
        .value("Passthrough", UartMode::Passthrough);
    m.attr("SELFTEST_STACK_OVERFLOW") = kSelfTestStackOverflow;
    m.attr("SELFTEST_COUNT_EL2") = kSelfTestCountEl2;
    m.attr("RAM_BASE") = kRamBase;
    m.attr("FIRMWARE_BASE") = kFirmwareBase;
    m.attr("FIRMWARE_SIZE") = kFirmwareSize;
    m.attr("MAX_GUEST_RAM") = kMaxGuestRam;
    m.attr("EXTRA_VM_RAM_BASE") = kExtraVmRamBase;
    m.attr("MACHINE_RAM_LIMIT") = kMachineRamLimit;
    m.attr("FEATURE_VGIC") = kFeatureVgic;
    m.attr("FEATURE_RTC") = kFeatureRtc;
    m.attr("FEATURE_VIRTIO") = kFeatureVirtio;
    m.attr("FEATURE_EXIT_LOG") = kFeatureExitLog;
    m.attr("FEATURE_QUIET") = kFeatureQuiet;
    m.attr("FEATURE_FLASH") = kFeatureFlash;
    m.attr("FEATURE_FWCFG") = kFeatureFwCfg;
    m.attr("FEATURE_GPIO") = kFeatureGpio;
    m.attr("FEATURE_PCIE") = kFeaturePcie;
    m.attr("FEATURE_SMMU") = kFeatureSmmu;
    m.attr("FEATURE_QEMU_SMCCC") = kFeatureQemuSmccc;
    m.attr("DMA_FAULT_INTID") = smmu::kVirtEventqIntid;
    m.attr("DMA_FAULT_ENTRIES") = smmu::kDmaFaultEntries;
    m.attr("DMA_FAULT_LAYOUT") =
        py::dict(py::arg("size") = sizeof(smmu::DmaFault),
                 py::arg("entries_offset") = offsetof(smmu::DmaFaultLog, entries),
                 py::arg("address") = offsetof(smmu::DmaFault, address),
                 py::arg("stream_id") = offsetof(smmu::DmaFault, stream_id),
                 py::arg("event") = offsetof(smmu::DmaFault, event),
                 py::arg("write") = offsetof(smmu::DmaFault, write));
    py::enum_<ExitLogHandler>(m, "ExitLogHandler", "Who answered an exit in the exit log.")
        .value("Firmware", ExitLogHandler::Firmware)
        .value("FastRule", ExitLogHandler::FastRule)
        .value("Host", ExitLogHandler::Host)
        .value("Scheduler", ExitLogHandler::Scheduler);
    m.attr("EXIT_LOG_WORLD_SWITCH") = kExitLogWorldSwitch;
    m.def(
        "exit_log_layout",
        []() {
            py::dict d;
            d["entries"] = kExitLogEntries;
            d["header_size"] = offsetof(ExitLog, entries);
            d["written"] = offsetof(ExitLog, written);
            d["frequency"] = offsetof(ExitLog, frequency);
            d["entry_size"] = sizeof(ExitLogEntry);
            d["size"] = sizeof(ExitLog);
            py::dict f;
            f["time"] = offsetof(ExitLogEntry, time);
            f["arg"] = offsetof(ExitLogEntry, arg);
            f["esr"] = offsetof(ExitLogEntry, esr);
            f["kind"] = offsetof(ExitLogEntry, kind);
            f["vm_id"] = offsetof(ExitLogEntry, vm_id);
            f["vcpu_id"] = offsetof(ExitLogEntry, vcpu_id);
            f["handler"] = offsetof(ExitLogEntry, handler);
            d["fields"] = f;
            return d;
        },
        "The firmware's exit log (armvcpu_exit_log): one ring per physical CPU.\n\n"
        ">>> layout = exit_log_layout()\n>>> layout['entry_size'], layout['fields']['esr']\n"
        "(24, 16)");
    m.attr("CONSOLE_RING_SIZE") = kConsoleRingSize;
    m.attr("CONSOLE_RING_DATA_OFFSET") = offsetof(ConsoleRing, data);
    m.attr("CONSOLE_RING_STRIDE") = sizeof(ConsoleRing);  // one ring per VM
    m.attr("EXIT_RECORD_MAGIC") = kExitRecordMagic;
    m.attr("EXIT_RECORD_VERSION") = kExitRecordVersion;
}

}  // namespace armvcpu::py_bind
