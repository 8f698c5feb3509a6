#include "sgi.hpp"

#include "gic.hpp"

namespace fw {

std::uint64_t g_pending_sgis[kMaxCpus];

void deliver_sgi(const Vm& vm, unsigned sender, const armvcpu::exit::SendIpi& ipi) {
    const std::uint64_t bit = 1ull << (ipi.vector & 0xf);
    for (unsigned target = 0; target < vm.num_vcpus; ++target) {
        bool hit = false;
        if (ipi.send_to_all != 0) {
            hit = target != sender;
        } else {
            // target_cpu is the affinity of TargetList bit 0 (Aff0 = RS * 16).
            const std::uint64_t aff = guest_mpidr(target) & 0xff00ffffffull & ~(1ull << 31);
            const std::uint64_t base = ipi.target_cpu & ~0xfull;
            hit = (aff & ~0xfull) == base && ((ipi.target_cpu_aux >> (aff & 0xf)) & 1) != 0;
        }
        if (!hit) continue;
        const unsigned cpu = vm.first_cpu + target;
        __atomic_fetch_or(&g_pending_sgis[cpu], bit, __ATOMIC_RELEASE);
        // The sender's own CPU injects at its next entry, which comes next.
        if (target != sender) gic::kick(cpu);
    }
}

}  // namespace fw
