// The firmware log: QEMU virt's PL011 at 0x0900_0000, polled, no interrupts.
#pragma once

#include <cstdint>

namespace fw::uart {

void put_char(char c);
void put_str(const char* s);
void put_hex(std::uint64_t value);  // 0x-prefixed, no leading zeros
void put_dec(std::uint64_t value);

// Held while one line is put together from several calls, so that lines two
// CPUs print at the same moment (two VMs stopping together) do not mix
// character by character. Only for lines printed outside fault handlers: a
// CPU that faulted while holding it would leave it held.
class LineLock {
public:
    LineLock();
    ~LineLock();
    LineLock(const LineLock&) = delete;
    LineLock& operator=(const LineLock&) = delete;
};

}  // namespace fw::uart
