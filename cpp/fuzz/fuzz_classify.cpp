// Syndrome decoding, exit classification and MMIO completion on arbitrary
// syndromes and registers. Invariants come from the architecture: the PC
// moves by 0 or by the instruction's length, MMIO data fits its width, a
// completed W-register load has a zero upper half, the reason is a known kind.
#include "armvcpu/classify.hpp"
#include "armvcpu/mmio.hpp"
#include "fuzz_input.hpp"

using namespace armvcpu;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::Input in(data, size);
    const Syndrome syndrome{in.take<std::uint64_t>(), in.take<std::uint64_t>(),
                            in.take<std::uint64_t>()};
    TrapFrame frame{};
    for (unsigned i = 0; i < 8; ++i) frame.set_gpr(i, in.take<std::uint64_t>());
    frame.elr = in.take<std::uint64_t>();
    psci::VmPowerState power{};
    power.num_vcpus = 1 + (in.take<std::uint8_t>() % psci::VmPowerState::kMaxVcpus);
    for (unsigned i = 0; i < power.num_vcpus; ++i) {
        power.mpidr[i] = i;
        power.state[i] = in.take<std::uint8_t>() % 3;
    }
    const bool with_power = (in.take<std::uint8_t>() & 1) != 0;
    const TrapFrame before = frame;
    const ExitReason r =
        classify_sync(frame, syndrome, ClassifyContext{with_power ? &power : nullptr, 0});

    ARMVCPU_FUZZ_CHECK(static_cast<std::uint32_t>(r.kind) < kNumExitKinds);
    const std::uint64_t moved = frame.elr - before.elr;
    ARMVCPU_FUZZ_CHECK(moved == 0 || moved == Esr{syndrome.esr}.instruction_length());
    for (unsigned i = 1; i < 31; ++i) {  // only x0 (PSCI results) may change
        ARMVCPU_FUZZ_CHECK(frame.gpr(i) == before.gpr(i));
    }
    const IssFieldList fields = iss_fields(Esr{syndrome.esr}.exception_class());
    for (unsigned i = 0; i < fields.count; ++i) {
        ARMVCPU_FUZZ_CHECK(fields.fields[i].hi >= fields.fields[i].lo && fields.fields[i].hi < 25);
    }
    if (r.kind == ExitKind::MmioWrite) {
        ARMVCPU_FUZZ_CHECK((r.mmio_write.data & ~width_mask(r.mmio_write.width)) == 0);
    }
    if (r.kind == ExitKind::MmioRead) {
        const std::uint64_t v = mmio_read_value(r.mmio_read, in.take<std::uint64_t>());
        if (r.mmio_read.reg_width == 4) ARMVCPU_FUZZ_CHECK((v >> 32) == 0);
        if (r.mmio_read.signed_ext == 0) {
            ARMVCPU_FUZZ_CHECK((v & ~width_mask(r.mmio_read.width)) == 0);
        }
    }
    return 0;
}
