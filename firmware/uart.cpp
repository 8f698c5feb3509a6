#include "uart.hpp"

namespace fw::uart {
namespace {

// PL011 TRM (DDI 0183): UARTDR at 0x000, UARTFR at 0x018, FR.TXFF is bit 5.
constexpr std::uintptr_t kPl011Base = 0x09000000;
constexpr std::uintptr_t kUartDr = 0x000;
constexpr std::uintptr_t kUartFr = 0x018;
constexpr std::uint32_t kFrTxff = 1u << 5;

volatile std::uint32_t* reg(std::uintptr_t offset) {
    return reinterpret_cast<volatile std::uint32_t*>(kPl011Base + offset);
}

}  // namespace

void put_char(char c) {
    if (c == '\n') put_char('\r');
    while ((*reg(kUartFr) & kFrTxff) != 0) {
    }
    *reg(kUartDr) = static_cast<std::uint8_t>(c);
}

void put_str(const char* s) {
    while (*s != '\0') put_char(*s++);
}

void put_hex(std::uint64_t value) {
    put_str("0x");
    int shift = 60;
    while (shift > 0 && ((value >> shift) & 0xf) == 0) shift -= 4;
    for (; shift >= 0; shift -= 4) put_char("0123456789abcdef"[(value >> shift) & 0xf]);
}

void put_dec(std::uint64_t value) {
    char digits[20];
    int n = 0;
    do {
        digits[n++] = static_cast<char>('0' + value % 10);
        value /= 10;
    } while (value != 0);
    while (n > 0) put_char(digits[--n]);
}

namespace {
std::uint32_t g_line_lock = 0;
}  // namespace

LineLock::LineLock() {
    while (__atomic_exchange_n(&g_line_lock, 1, __ATOMIC_ACQUIRE) != 0) {
        while (__atomic_load_n(&g_line_lock, __ATOMIC_RELAXED) != 0) asm volatile("yield");
    }
}

LineLock::~LineLock() { __atomic_store_n(&g_line_lock, 0, __ATOMIC_RELEASE); }

}  // namespace fw::uart
