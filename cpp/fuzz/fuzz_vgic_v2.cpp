// The emulated GICv2 distributor (vgic_v2.hpp) on arbitrary sequences of
// guest accesses from any vCPU, with the hypervisor taking and returning
// pending interrupts in between, and the list-register fold/clear rules on
// arbitrary list registers. After every step the model must still say what
// IHI 0048B fixes whatever was written: SGIs always enabled and
// edge-triggered (4.3.5, 4.3.13), TYPER constant, SPI targets only among
// CPUs that exist (4.3.12), an SGI pending exactly when some source CPU has
// it pending (4.3.14), and what take_pending hands out deliverable.
#include "armvcpu/vgic_v2.hpp"
#include "fuzz_input.hpp"

using namespace armvcpu::vgic2;
using armvcpu::fuzz::Input;

namespace {

void check_invariants(const Distributor& d) {
    const unsigned n = d.num_vcpus();
    const auto all = static_cast<std::uint8_t>((1u << n) - 1);
    const std::uint64_t typer = d.read(0, kGicdBase + gicd::TYPER, 4).value;
    ARMVCPU_FUZZ_CHECK(typer == ((kNumIntids / 32 - 1) | (n - 1) << 5));
    for (unsigned v = 0; v < n; ++v) {
        ARMVCPU_FUZZ_CHECK((d.read(v, kGicdBase + gicd::ISENABLER, 4).value & 0xffff) == 0xffff);
        ARMVCPU_FUZZ_CHECK(d.read(v, kGicdBase + gicd::ICFGR, 4).value == 0xAAAAAAAAu);
        const std::uint64_t pending = d.read(v, kGicdBase + gicd::ISPENDR, 4).value;
        for (std::uint32_t sgi = 0; sgi < 16; ++sgi) {
            const std::uint8_t src = d.sgi_sources(v, sgi);
            ARMVCPU_FUZZ_CHECK((src & ~all) == 0);
            ARMVCPU_FUZZ_CHECK(((pending >> sgi) & 1) == (src != 0 ? 1u : 0u));
        }
    }
    for (std::uint32_t intid = 32; intid < kNumIntids; ++intid) {
        ARMVCPU_FUZZ_CHECK((d.targets(intid) & ~all) == 0);
        ARMVCPU_FUZZ_CHECK(d.route_of(intid) < n);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Input in(data, size);
    Distributor d;
    d.reset(1 + in.take<std::uint8_t>() % kMaxVcpus);
    const unsigned n = d.num_vcpus();
    for (unsigned step = 0; step < 64 && !in.empty(); ++step) {
        const unsigned vcpu = in.take<std::uint8_t>() % n;
        const std::uint8_t op = in.take<std::uint8_t>();
        const std::uint64_t addr = kGicdBase + in.take<std::uint16_t>() % (kGicdSize + 0x100);
        const unsigned width = 1u << (in.take<std::uint8_t>() % 4);
        const auto value = in.take<std::uint32_t>();
        switch (op % 4) {
            case 0: {
                const Access a = d.read(vcpu, addr, width);
                ARMVCPU_FUZZ_CHECK(a.handled == (addr < kGicdBase + kGicdSize));
                break;
            }
            case 1: {
                const Access a = d.write(vcpu, addr, width, value);
                ARMVCPU_FUZZ_CHECK(a.handled == (addr < kGicdBase + kGicdSize));
                ARMVCPU_FUZZ_CHECK((a.effect.sgi_targets >> n) == 0);
                break;
            }
            case 2: {
                std::uint32_t intid = 0;
                unsigned source = 0;
                if (d.take_pending(vcpu, intid, source)) {
                    ARMVCPU_FUZZ_CHECK(intid < kNumIntids && source < n);
                    ARMVCPU_FUZZ_CHECK(d.deliverable(vcpu, intid));
                    if ((value & 1) != 0) d.set_pending(vcpu, intid, source);  // no room
                }
                break;
            }
            default: {
                std::uint32_t lrs[4] = {value, value * 2654435761u, ~value, value >> 3};
                const std::uint64_t off = addr - kGicdBase;
                const std::uint64_t before = in.take<std::uint32_t>();
                const std::uint64_t folded = fold_list_registers(off, width, before, lrs, 4);
                ARMVCPU_FUZZ_CHECK((folded & before) == before);  // folding only adds state
                const std::uint64_t changed =
                    clear_pending_in_list_registers(off, width, value, lrs, 4);
                ARMVCPU_FUZZ_CHECK((changed >> 4) == 0);
                for (unsigned i = 0; i < 4; ++i) {
                    if (((changed >> i) & 1) != 0) {
                        const LrState s = lr_state(lrs[i]);
                        ARMVCPU_FUZZ_CHECK(s == LrState::Invalid || s == LrState::Active);
                    }
                }
                break;
            }
        }
        check_invariants(d);
    }
    return 0;
}
