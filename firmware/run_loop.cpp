#include "run_loop.hpp"

#include "armvcpu/classify.hpp"

namespace fw {

alignas(Vcpu) unsigned char g_vcpu_storage[kMaxCpus][sizeof(Vcpu)];

armvcpu::HostAction ask_host(unsigned cpu, const Vm& vm, unsigned index,
                             const armvcpu::VCpuRunResult& result, armvcpu::TrapFrame& frame) {
    const std::uint64_t n = __atomic_add_fetch(&g_exits, 1, __ATOMIC_RELAXED);
    if (!host_attached()) {
        log_exit(n, result.reason,
                 armvcpu::instruction_address_from_preferred_return(
                     result.exception_pc, armvcpu::Esr{result.syndrome.esr},
                     result.type == armvcpu::ExceptionType::Synchronous));
    }
    return report_exit(cpu, vm.id, index, result.type, result.syndrome, result.exception_pc,
                       result.reason, frame);
}

}  // namespace fw
