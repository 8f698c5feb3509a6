// The GDB Remote Serial Protocol's packet checksum, for the host's gdbstub
// client (python/armvcpu/gdbstub.py): a packet is "$payload#cc", cc the sum of
// the payload's bytes modulo 256 as two hex digits (GDB manual, "Overview" of
// the remote protocol). The host checks it on every reply, some of 800 bytes
// and more (an exit record in hex), where Python's sum() is slow.
#pragma once

#include <cstddef>
#include <cstdint>

namespace armvcpu::rsp {

constexpr std::uint8_t checksum(const unsigned char* data, std::size_t size) {
    unsigned sum = 0;
    for (std::size_t i = 0; i < size; ++i) sum += data[i];
    return static_cast<std::uint8_t>(sum);
}

}  // namespace armvcpu::rsp
