// armvcpu._core: the C++ core, bound to Python.
#include "bindings.hpp"

PYBIND11_MODULE(_core, m) {
    namespace b = armvcpu::py_bind;
    m.doc() =
        "armvcpu's C++ core: syndrome decoding, exit classification, TrapFrames, the vCPU "
        "state machine, stage-2 tables, device trees and the firmware's exit record.";
    m.attr("__version__") = ARMVCPU_VERSION;
    b::bind_syndrome(m);
    b::bind_sysregs(m);
    b::bind_trap_frame(m);
    b::bind_psci(m);  // before bind_exits: classify_sync's signature names VmPowerState
    b::bind_exits(m);
    b::bind_host_interface(m);
    b::bind_exit_view(m);  // after the record, frame and syndrome types it returns
    b::bind_vcpu(m);
    b::bind_stage2(m);
    b::bind_mailbox(m);
    b::bind_fast_rules(m);
    b::bind_fdt(m);
    b::bind_rsp(m);
    b::bind_snapshot(m);
    b::bind_sched(m);
}
