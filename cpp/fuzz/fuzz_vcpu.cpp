// The vCPU state machine under random calls and scripted exits: once a call
// is refused the vCPU is Invalid for good; run() only succeeds from Ready.
#include "armvcpu/sim_hal.hpp"
#include "armvcpu/vcpu.hpp"
#include "fuzz_input.hpp"

using namespace armvcpu;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::Input in(data, size);
    SimHal hal;
    for (unsigned i = 0; i < SimHal::kMaxScript; ++i) {
        hal.push_exit(
            {static_cast<ExceptionType>(in.take<std::uint8_t>() % 4),
             {in.take<std::uint64_t>(), in.take<std::uint64_t>(), in.take<std::uint64_t>()},
             in.take<std::uint16_t>()});
    }
    VCpu<SimHal> v(hal, 1, 0, {0, 0});
    bool invalid = false;
    for (int step = 0; step < 64 && !in.empty(); ++step) {
        const VCpuState before = v.state();
        VCpuError err = VCpuError::None;
        switch (in.take<std::uint8_t>() % 8) {
            case 0: err = v.setup({(in.take<std::uint8_t>() & 1) != 0, 0}); break;
            case 1: err = v.set_entry(in.take<std::uint64_t>()); break;
            case 2: err = v.bind(); break;
            case 3: err = v.unbind(); break;
            case 4: err = v.run().error; break;
            case 5: err = v.wake(); break;
            case 6: err = v.set_gpr(in.take<std::uint8_t>() % 40, in.take<std::uint64_t>()); break;
            default: err = v.inject_interrupt(in.take<std::uint16_t>()); break;
        }
        if (invalid) ARMVCPU_FUZZ_CHECK(v.state() == VCpuState::Invalid && err != VCpuError::None);
        if (err == VCpuError::BadState) {
            ARMVCPU_FUZZ_CHECK(v.state() == VCpuState::Invalid);
            invalid = true;
        }
        if (err == VCpuError::None && before == VCpuState::Ready) {
            const VCpuState s = v.state();
            ARMVCPU_FUZZ_CHECK(s == VCpuState::Ready || s == VCpuState::Blocked ||
                               s == VCpuState::Free);
        }
    }
    return 0;
}
