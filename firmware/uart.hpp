// The firmware log: QEMU virt's PL011 at 0x0900_0000, polled, no interrupts.
#pragma once

#include <cstdint>

namespace fw::uart {

void put_char(char c);
void put_str(const char* s);
void put_hex(std::uint64_t value);  // 0x-prefixed, no leading zeros
void put_dec(std::uint64_t value);

}  // namespace fw::uart
