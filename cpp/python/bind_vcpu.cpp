// VCpu and PerCpu over the simulated Hal: the firmware's decisions, on the host.
#include <pybind11/stl.h>

#include <memory>
#include <stdexcept>

#include "armvcpu/guest_context.hpp"
#include "armvcpu/percpu.hpp"
#include "armvcpu/sim_hal.hpp"
#include "armvcpu/vcpu.hpp"
#include "bindings.hpp"

namespace armvcpu::py_bind {

namespace {

struct VCpuStateError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

SysReg sysreg_by_name(const std::string& name) {
    for (unsigned i = 0; i < kNumSysRegs; ++i) {
        const auto r = static_cast<SysReg>(i);
        if (name == sysreg_id_name(r)) return r;
    }
    throw py::key_error("the Hal has no register " + name);
}

// One simulated physical CPU: a SimHal with a VCpu and a PerCpu bound to it.
struct SimCpu {
    SimHal hal;
    VCpu<SimHal> vcpu;
    PerCpu<SimHal> percpu;
    std::unique_ptr<psci::VmPowerState> power;

    SimCpu(std::uint32_t vm_id, std::uint32_t vcpu_id, std::uint64_t mpidr, std::uint64_t dtb,
           std::uint64_t midr)
        : vcpu(hal, vm_id, vcpu_id, {mpidr, dtb}), percpu(hal, vcpu_id) {
        hal.regs[static_cast<unsigned>(SysReg::midr_el1)] = midr;
        hal.regs[static_cast<unsigned>(SysReg::mpidr_el1)] = mpidr;
    }

    void check(VCpuError err, const char* call, VCpuState before, const char* needs) const {
        if (err == VCpuError::None) return;
        if (err == VCpuError::BadArgument) {
            throw py::value_error(std::string(call) + ": bad argument");
        }
        throw VCpuStateError(std::string("vCPU ") + std::to_string(vcpu.vcpu_id()) + " of VM " +
                             std::to_string(vcpu.vm_id()) + ": " + call + " needs state " + needs +
                             " but it was " + vcpu_state_name(before) + "; the vCPU is now " +
                             vcpu_state_name(vcpu.state()));
    }
};

py::dict context_dict(const GuestSystemRegisters& g) {
    py::dict d;
#define ARMVCPU_X(field, name) d[#name] = g.field;
    ARMVCPU_GUEST_SYSREGS(ARMVCPU_X)
#undef ARMVCPU_X
    return d;
}

}  // namespace

void bind_vcpu(py::module_& m) {
    static py::exception<VCpuStateError> state_error(m, "VCpuStateError", PyExc_RuntimeError);
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const VCpuStateError& e) {
            py::set_error(state_error, e.what());
        }
    });

    py::enum_<VCpuState>(m, "VCpuState", "axvcpu's vCPU states.")
        .value("Invalid", VCpuState::Invalid)
        .value("Created", VCpuState::Created)
        .value("Free", VCpuState::Free)
        .value("Ready", VCpuState::Ready)
        .value("Running", VCpuState::Running)
        .value("Blocked", VCpuState::Blocked);

    py::list order;
#define ARMVCPU_X(field, name) order.append(#name);
    ARMVCPU_GUEST_SYSREGS(ARMVCPU_X)
#undef ARMVCPU_X
    m.attr("GUEST_SYSREG_RESTORE_ORDER") = py::tuple(order);

    py::class_<SimCpu>(m, "VCpu", R"doc(
A vCPU running on a simulated CPU: the firmware's VCpu<Hal> with a Hal whose
registers are memory and whose world switch replays scripted exits. Every
decision (state transitions, classification, PSCI answers, PC updates) is
the firmware's own code.

>>> from armvcpu._core import VCpu, ExceptionType
>>> v = VCpu(vm_id=1, vcpu_id=0)
>>> v.setup(); v.set_entry(0x40000000); v.bind()
>>> v.push_exit(ExceptionType.Synchronous, esr=0x5a000000)   # HVC #0
>>> v.set_gpr(0, 5); v.run()
Hypercall(nr=0x5, args=(0x0, 0x0, 0x0, 0x0, 0x0, 0x0))
>>> v.state
<VCpuState.Ready: 3>
)doc")
        .def(py::init<std::uint32_t, std::uint32_t, std::uint64_t, std::uint64_t, std::uint64_t>(),
             py::arg("vm_id") = 1, py::arg("vcpu_id") = 0, py::arg("mpidr") = 0, py::arg("dtb") = 0,
             py::arg("midr") = 0x410fd034)
        .def_property_readonly("state", [](const SimCpu& c) { return c.vcpu.state(); })
        .def_property_readonly("vm_id", [](const SimCpu& c) { return c.vcpu.vm_id(); })
        .def_property_readonly("vcpu_id", [](const SimCpu& c) { return c.vcpu.vcpu_id(); })
        .def_property_readonly("mpidr", [](const SimCpu& c) { return c.vcpu.mpidr(); })
        .def(
            "setup",
            [](SimCpu& c, bool trap_wfi) {
                const auto before = c.vcpu.state();
                c.check(c.vcpu.setup({trap_wfi}), "setup()", before, "Created");
            },
            py::arg("trap_wfi") = false)
        .def(
            "set_entry",
            [](SimCpu& c, std::uint64_t entry) {
                const auto before = c.vcpu.state();
                c.check(c.vcpu.set_entry(entry), "set_entry()", before, "Created or Free");
            },
            py::arg("entry"))
        .def(
            "set_ept_root",
            [](SimCpu& c, std::uint64_t vttbr, std::uint64_t vtcr) {
                const auto before = c.vcpu.state();
                c.check(c.vcpu.set_ept_root(vttbr, vtcr), "set_ept_root()", before,
                        "Created or Free");
            },
            py::arg("vttbr"), py::arg("vtcr"))
        .def("bind",
             [](SimCpu& c) {
                 const auto before = c.vcpu.state();
                 c.check(c.vcpu.bind(), "bind()", before, "Free");
             })
        .def("unbind",
             [](SimCpu& c) {
                 const auto before = c.vcpu.state();
                 c.check(c.vcpu.unbind(), "unbind()", before, "Ready or Blocked");
             })
        .def("wake",
             [](SimCpu& c) {
                 const auto before = c.vcpu.state();
                 c.check(c.vcpu.wake(), "wake()", before, "Blocked");
             })
        .def("run",
             [](SimCpu& c) {
                 const auto before = c.vcpu.state();
                 const VCpuRunResult r = c.vcpu.run();
                 c.check(r.error, "run()", before, "Ready");
                 return r.reason;
             })
        .def(
            "set_gpr",
            [](SimCpu& c, unsigned i, std::uint64_t v) {
                if (c.vcpu.set_gpr(i, v) != VCpuError::None) {
                    throw py::index_error("general-purpose register index " + std::to_string(i) +
                                          " out of range: x0..x30");
                }
            },
            py::arg("index"), py::arg("value"))
        .def(
            "set_return_value", [](SimCpu& c, std::uint64_t v) { c.vcpu.set_return_value(v); },
            py::arg("value"))
        .def(
            "inject_interrupt",
            [](SimCpu& c, std::uint64_t vector) {
                const auto before = c.vcpu.state();
                c.check(c.vcpu.inject_interrupt(vector), "inject_interrupt()", before,
                        "any valid state");
            },
            py::arg("vector"))
        .def_property_readonly("injected",
                               [](const SimCpu& c) {
                                   return std::vector<std::uint64_t>(
                                       c.hal.injected, c.hal.injected + c.hal.injected_len);
                               })
        .def_property(
            "frame", [](const SimCpu& c) { return c.vcpu.context(); },
            [](SimCpu& c, const TrapFrame& f) { c.vcpu.context() = f; })
        .def_property_readonly(
            "guest_system_regs",
            [](const SimCpu& c) { return context_dict(c.vcpu.guest_system_regs()); })
        .def(
            "set_power_state",
            [](SimCpu& c, const std::vector<std::uint64_t>& mpidrs) {
                if (mpidrs.empty() || mpidrs.size() > psci::VmPowerState::kMaxVcpus) {
                    throw py::value_error("a VM has 1 to 8 vCPUs");
                }
                c.power = std::make_unique<psci::VmPowerState>();
                c.power->num_vcpus = static_cast<unsigned>(mpidrs.size());
                for (std::size_t i = 0; i < mpidrs.size(); ++i) {
                    c.power->mpidr[i] = mpidrs[i];
                    c.power->state[i] = static_cast<std::uint8_t>(
                        i == c.vcpu.vcpu_id() ? psci::AffinityState::On : psci::AffinityState::Off);
                }
                c.vcpu.set_power_state(c.power.get());
            },
            py::arg("mpidrs"), "Give the VM PSCI power state: one MPIDR per vCPU.")
        .def(
            "push_exit",
            [](SimCpu& c, ExceptionType type, std::uint64_t esr, std::uint64_t far,
               std::uint64_t hpfar, std::uint64_t irq) {
                if (!c.hal.push_exit({type, {esr, far, hpfar}, irq})) {
                    throw py::value_error("the exit script is full (" +
                                          std::to_string(SimHal::kMaxScript) + " exits)");
                }
            },
            py::arg("type"), py::arg("esr") = 0, py::arg("far") = 0, py::arg("hpfar") = 0,
            py::arg("irq") = 1023,
            "Script the next exit the simulated guest takes (consumed by run()).")
        .def(
            "hal_sysreg",
            [](const SimCpu& c, const std::string& name) {
                return c.hal.read_sysreg(sysreg_by_name(name));
            },
            py::arg("name"), "A register of the simulated CPU, by its lower-case name.")
        .def(
            "set_hal_sysreg",
            [](SimCpu& c, const std::string& name, std::uint64_t value) {
                c.hal.regs[static_cast<unsigned>(sysreg_by_name(name))] = value;
            },
            py::arg("name"), py::arg("value"))
        .def_property_readonly("hal_write_log",
                               [](const SimCpu& c) {
                                   py::list out;
                                   for (unsigned i = 0; i < c.hal.write_log_len; ++i) {
                                       out.append(sysreg_id_name(c.hal.write_log[i]));
                                   }
                                   return out;
                               })
        // PerCpu on the same simulated CPU.
        .def(
            "hardware_enable",
            [](SimCpu& c, std::uint64_t vectors) { c.percpu.hardware_enable(vectors); },
            py::arg("vectors"))
        .def("hardware_disable", [](SimCpu& c) { c.percpu.hardware_disable(); })
        .def_property_readonly("hardware_enabled",
                               [](const SimCpu& c) { return c.percpu.is_enabled(); })
        .def("__repr__", [](const SimCpu& c) {
            return "<VCpu " + std::to_string(c.vcpu.vcpu_id()) + " of VM " +
                   std::to_string(c.vcpu.vm_id()) + ": " + vcpu_state_name(c.vcpu.state()) +
                   ", pc=" + hex(c.vcpu.context().elr) + ">";
        });
}

}  // namespace armvcpu::py_bind
