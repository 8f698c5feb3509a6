// The guest's PL011 UART, emulated inside EL2: the transmit side (what the
// guest writes to UARTDR goes into a ring the host reads as the guest's own
// console stream) and the flag register a polling driver needs. Register
// offsets and bits: PL011 TRM (DDI 0183), 3.2 "Summary of registers".
#pragma once

#include <cstddef>
#include <cstdint>

#include "armvcpu/exit_reason.hpp"
#include "armvcpu/mmio.hpp"
#include "armvcpu/trap_frame.hpp"

namespace armvcpu {

// How a VM's UART is provided.
enum class UartMode : std::uint32_t {
    Host = 0,         // not mapped: every access is an exit for the host
    Emulate = 1,      // trapped and emulated in EL2 into the console ring
    Passthrough = 2,  // the physical PL011 mapped into the guest (shares the firmware's log)
};

inline constexpr std::uint64_t kPl011Dr = 0x000;
inline constexpr std::uint64_t kPl011Fr = 0x018;
inline constexpr std::uint64_t kPl011FrTxfe = 1u << 7;  // transmit FIFO empty
inline constexpr std::uint64_t kPl011FrRxfe = 1u << 4;  // receive FIFO empty
inline constexpr unsigned kConsoleRingSize = 4096;

// The console ring in firmware memory. `written` counts every byte ever
// written (the host keeps its own read position; bytes older than the last
// kConsoleRingSize are overwritten). Published with release ordering.
struct ConsoleRing {
    std::uint64_t written;
    std::uint64_t reserved;
    std::uint8_t data[kConsoleRingSize];
};

static_assert(offsetof(ConsoleRing, data) == 16);

// Answers an MMIO exit that falls in the UART's page [base, base + 4 KiB).
// Returns false for any other exit.
inline bool emulate_pl011(ConsoleRing& ring, std::uint64_t base, const ExitReason& reason,
                          TrapFrame& frame) {
    if (reason.kind == ExitKind::MmioWrite) {
        const auto& w = reason.mmio_write;
        if (w.addr < base || w.addr >= base + 0x1000) return false;
        if (w.addr - base == kPl011Dr) {
            const std::uint64_t n = ring.written;
            ring.data[n % kConsoleRingSize] = static_cast<std::uint8_t>(w.data & 0xff);
            __atomic_store_n(&ring.written, n + 1, __ATOMIC_RELEASE);
        }
        return true;  // other registers: writes ignored
    }
    if (reason.kind == ExitKind::MmioRead) {
        const auto& r = reason.mmio_read;
        if (r.addr < base || r.addr >= base + 0x1000) return false;
        // A transmitter that is always ready and a receiver that is always
        // empty; other registers read as zero.
        const std::uint64_t value = r.addr - base == kPl011Fr ? kPl011FrTxfe | kPl011FrRxfe : 0;
        complete_mmio_read(frame, r, value);
        return true;
    }
    return false;
}

}  // namespace armvcpu
