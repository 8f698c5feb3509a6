// Completing an emulated MMIO load: the value the device returned goes into
// Rt the way the faulting instruction would have put it there.
#pragma once

#include <cstdint>

#include "armvcpu/exit_reason.hpp"
#include "armvcpu/trap_frame.hpp"

namespace armvcpu {

// Bytes of `width` as a mask (width 8 or more covers the whole register).
constexpr std::uint64_t width_mask(std::uint32_t width) {
    return width >= 8 ? ~0ull : (1ull << (8 * width)) - 1;
}

// The register value a load of `width` bytes produces (Arm ARM C6.2, LDR*/
// LDRS*): truncate to the access size; with SSE sign-extend to the register;
// a W register (SF = 0) holds 32 bits and writing it zeroes bits [63:32].
constexpr std::uint64_t mmio_read_value(const exit::MmioRead& read, std::uint64_t value) {
    if (read.width == 0) return 0;  // no such access; classification never makes one
    std::uint64_t v = value & width_mask(read.width);
    if (read.signed_ext != 0 && read.width < 8) {
        const std::uint64_t sign = 1ull << (8 * read.width - 1);
        if ((v & sign) != 0) v |= ~width_mask(read.width);
    }
    if (read.reg_width == 4) v &= 0xffffffffull;
    return v;
}

// Writes the loaded value into Rt (XZR, register 31, discards it).
constexpr void complete_mmio_read(TrapFrame& frame, const exit::MmioRead& read,
                                  std::uint64_t value) {
    frame.set_gpr(read.reg, mmio_read_value(read, value));
}

}  // namespace armvcpu
