#include "power.hpp"

namespace fw {

StartRequest g_start[kMaxCpus];

void consume_kick() {
    // The acknowledge takes the kick its caller saw pending: nothing the
    // firmware enables outranks it (every priority is the default, and at
    // equal priority the lowest INTID, SGI 8 of those in use, wins).
    gic::deactivate(gic::acknowledge());
}

void power_off() {
    register std::uint64_t x0 asm("x0") = 0x84000008;
    asm volatile("smc #0" : "+r"(x0) : : "memory");
    for (;;) asm volatile("wfe");
}

std::int64_t psci_cpu_on(std::uint64_t mpidr, std::uint64_t entry, std::uint64_t context) {
    register std::uint64_t x0 asm("x0") = 0xC4000003;
    register std::uint64_t x1 asm("x1") = mpidr;
    register std::uint64_t x2 asm("x2") = entry;
    register std::uint64_t x3 asm("x3") = context;
    asm volatile("smc #0" : "+r"(x0) : "r"(x1), "r"(x2), "r"(x3) : "memory");
    return static_cast<std::int64_t>(x0);
}

void start_guest_cpu(const Vm& vm, const armvcpu::exit::CpuUp& cpu_up) {
    const int target = vm.power.index_of(cpu_up.target_cpu);
    if (target > 0 && static_cast<unsigned>(target) < vm.num_vcpus) {
        post_start_request(vm.first_cpu + static_cast<unsigned>(target), cpu_up.entry_point,
                           cpu_up.arg);
        send_event();
        // A time-shared CPU idles in WFI, which no SEV ends.
        if (sched::sharing()) gic::kick(vm.first_cpu + static_cast<unsigned>(target));
    }
}

}  // namespace fw
