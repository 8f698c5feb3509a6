#include "vm.hpp"

#include "armvcpu/stage2.hpp"
#include "exit_log.hpp"
#include "gic.hpp"
#include "its.hpp"
#include "passthrough.hpp"
#include "power.hpp"
#include "smmu.hpp"
#include "uart.hpp"
#include "vgic_v2_glue.hpp"

namespace fw {

Vm g_vms[kMaxVms];
unsigned g_num_vms = 0;
Vm* g_cpu_vm[kMaxCpus];

namespace {

using uart::put_dec;
using uart::put_str;

unsigned g_vms_stopped = 0;  // atomic

// Stage-2 tables live in a static pool; at EL2 the MMU is off, so a
// physical address is a pointer.
// (A GICv2 machine maps each VM's GICC to GICV: one more level-3 table each.)
constexpr unsigned kTablePages = 48;  // kMaxVms VMs of ~8 tables, with room
alignas(16384) std::uint64_t g_table_pool[kTablePages][512];
unsigned g_tables_used = 0;

struct PhysicalTableMemory {
    std::uint64_t read64(std::uint64_t pa) const {
        return *reinterpret_cast<const volatile std::uint64_t*>(pa);
    }
    void write64(std::uint64_t pa, std::uint64_t value) {
        *reinterpret_cast<volatile std::uint64_t*>(pa) = value;
    }
    std::uint64_t alloc_table() {
        if (g_tables_used == kTablePages) return 0;
        auto* page = g_table_pool[g_tables_used++];
        for (unsigned i = 0; i < 512; ++i) page[i] = 0;  // BSS is zero, but be explicit
        return reinterpret_cast<std::uint64_t>(page);
    }
    // A first level of `n` concatenated tables: contiguous, aligned to their
    // total size (pages skipped for the alignment stay unused).
    std::uint64_t alloc_root(unsigned n) {
        while (g_tables_used % n != 0) ++g_tables_used;
        if (g_tables_used + n > kTablePages) return 0;
        const std::uint64_t root = alloc_table();
        for (unsigned i = 1; i < n; ++i) alloc_table();
        return root;
    }
};

// Guest IPA space: 40 bits (1 TiB: QEMU virt's high PCIe ECAM at 256 GiB and
// its 512 GiB MMIO window up to 1 TiB), walked from level 1 with two
// concatenated tables, which every AArch64 CPU QEMU models allows (a level-0
// start would need a 44-bit PA). Machine PA: 40 bits, for other VMs' RAM
// above the firmware at 8 GiB and the PCIe windows; every AArch64 CPU QEMU
// models has at least a 40-bit PARange.
constexpr unsigned kIpaBits = 40;
constexpr unsigned kPaBits = 40;

// Builds VM k's stage 2 from its configuration; false when it cannot.
bool build_vm(Vm& vm, PhysicalTableMemory& mem) {
    const armvcpu::GuestConfig& cfg = vm.cfg;
    const std::uint64_t root = mem.alloc_root(armvcpu::stage2::root_tables_for(kIpaBits));
    if (root == 0) {
        put_str("armvcpu: no room for VM stage-2 tables\n");
        return false;
    }
    armvcpu::stage2::Tables<PhysicalTableMemory> s2(mem, root, kIpaBits, kPaBits);
    vm.uart_mode = static_cast<armvcpu::UartMode>(cfg.uart_mode);
    vm.features = cfg.features;
    auto err = s2.map(cfg.ipa_base, cfg.pa_base, cfg.size, {});
    if (err == armvcpu::stage2::MapError::None) err = map_passthrough_devices(s2, vm);
    if (err == armvcpu::stage2::MapError::None) err = its::map_its(s2, vm);
    if (err == armvcpu::stage2::MapError::None && gic::v2()) err = map_guest_gicc(s2);
    if (err != armvcpu::stage2::MapError::None) {
        put_str("armvcpu: cannot map VM ");
        put_dec(vm.id);
        put_str("'s RAM, error ");
        put_dec(static_cast<unsigned>(err));
        put_str("\n");
        return false;
    }
    vm.vttbr = s2.vttbr(static_cast<std::uint16_t>(vm.id));
    vm.vtcr = s2.vtcr();
    if ((vm.features & armvcpu::kFeatureVgic) != 0 && gic::v2()) {
        reset_vgic2(vm);
    } else if ((vm.features & armvcpu::kFeatureVgic) != 0) {
        std::uint64_t mpidr[armvcpu::vgic::kMaxVcpus] = {};
        for (unsigned i = 0; i < vm.num_vcpus; ++i) mpidr[i] = guest_mpidr(i);
        vm.dist.reset(vm.num_vcpus, mpidr);
        vm.dist.set_lpis(its::vm_gets_its(vm));
        configure_passthrough_spis(vm);
    }
    return true;
}

void print_layout(unsigned cpus) {
    put_str("armvcpu: ");
    put_dec(cpus);
    put_str(" CPUs");
    for (unsigned v = 0; v < g_num_vms; ++v) {
        put_str(v == 0 ? ", " : "; ");
        put_str("VM ");
        put_dec(g_vms[v].id);
        put_str(" has ");
        put_dec(g_vms[v].num_vcpus);
        put_str(g_vms[v].num_vcpus == 1 ? " vCPU" : " vCPUs");
    }
    put_str("\n");
}

}  // namespace

void setup_vms(unsigned cpus) {
    PhysicalTableMemory mem;
    unsigned next_cpu = 0;
    for (unsigned k = 0; k < kMaxVms; ++k) {
        const armvcpu::GuestConfig& c = armvcpu_guest_config[k];
        if (k > 0 && c.size == 0) continue;
        Vm& vm = g_vms[g_num_vms];
        vm.id = k + 1;
        vm.cfg = c;
        const unsigned wanted = c.num_vcpus == 0 ? 1 : c.num_vcpus;
        // vCPU slots, not physical CPUs: the scheduler time-shares CPUs
        // when there are more vCPUs than CPUs (scheduler.hpp).
        const unsigned left = kMaxCpus - next_cpu;
        vm.num_vcpus = wanted < left ? wanted : left;
        vm.first_cpu = next_cpu;
        if (vm.num_vcpus == 0 || !build_vm(vm, mem)) {
            put_str("armvcpu: VM ");
            put_dec(vm.id);
            put_str(" not started (no CPU or memory for it)\n");
            if (k == 0) power_off();
            continue;
        }
        if (k == 0) smmu::init(vm);  // PCIe DMA confined to VM 1's RAM, if asked
        next_cpu += vm.num_vcpus;
        vm.power.num_vcpus = vm.num_vcpus;
        for (unsigned i = 0; i < vm.num_vcpus; ++i) {
            vm.power.mpidr[i] = guest_mpidr(i);
            vm.power.store(i, armvcpu::psci::AffinityState::Off);
            g_cpu_vm[vm.first_cpu + i] = &vm;
        }
        ++g_num_vms;
    }
    // The layout is worth a line only when there is more than one of anything.
    if (!quiet() && (cpus > 1 || g_num_vms > 1 || g_vms[0].num_vcpus > 1)) print_layout(cpus);
}

void stop_vm(Vm& vm, const armvcpu::ExitReason& reason) {
    if (__atomic_exchange_n(&vm.stopped, 1, __ATOMIC_ACQ_REL) != 0) return;
    if (!quiet()) {
        const uart::LineLock line;
        put_str("armvcpu: VM ");
        put_dec(vm.id);
        put_str(" stopped after ");
        const auto exits = __atomic_load_n(&g_exits, __ATOMIC_RELAXED);
        put_dec(exits);
        put_str(exits == 1 ? " exit (last: " : " exits (last: ");
        put_str(armvcpu::exit_kind_name(reason.kind));
        put_str(")\n");
    }
    if (__atomic_add_fetch(&g_vms_stopped, 1, __ATOMIC_ACQ_REL) == g_num_vms) power_off();
    for (unsigned i = 0; i < vm.num_vcpus; ++i) gic::kick(vm.first_cpu + i);
}

}  // namespace fw
