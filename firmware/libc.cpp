// The few C library functions that GCC emits calls to even in freestanding
// code (struct copies and zeroing). Their loops must not be turned back into
// calls to themselves, hence the optimize attribute.
#include <cstddef>
#include <cstdint>

#define ARMVCPU_NO_LIBCALL __attribute__((optimize("no-tree-loop-distribute-patterns")))

extern "C" {

// Word at a time once 8-byte aligned (for memcpy: when both ends can be,
// as in every struct copy of the run loop): byte loops alone were half of
// the EL2 instructions of an exit answered by a fast rule.
using Word = std::uint64_t __attribute__((may_alias));

ARMVCPU_NO_LIBCALL void* memset(void* dst, int value, std::size_t n) {
    auto* d = static_cast<unsigned char*>(dst);
    for (; n != 0 && reinterpret_cast<std::uintptr_t>(d) % 8 != 0; --n) {
        *d++ = static_cast<unsigned char>(value);
    }
    {
        const Word fill = 0x0101010101010101ull * static_cast<unsigned char>(value);
        for (; n >= 16; n -= 16, d += 16) {
            reinterpret_cast<Word*>(d)[0] = fill;
            reinterpret_cast<Word*>(d)[1] = fill;
        }
        for (; n >= 8; n -= 8, d += 8) *reinterpret_cast<Word*>(d) = fill;
    }
    for (std::size_t i = 0; i < n; ++i) d[i] = static_cast<unsigned char>(value);
    return dst;
}

ARMVCPU_NO_LIBCALL void* memcpy(void* dst, const void* src, std::size_t n) {
    auto* d = static_cast<unsigned char*>(dst);
    const auto* s = static_cast<const unsigned char*>(src);
    if ((reinterpret_cast<std::uintptr_t>(d) ^ reinterpret_cast<std::uintptr_t>(s)) % 8 == 0) {
        for (; n != 0 && reinterpret_cast<std::uintptr_t>(d) % 8 != 0; --n) *d++ = *s++;
        for (; n >= 16; n -= 16, d += 16, s += 16) {
            const Word a = reinterpret_cast<const Word*>(s)[0];
            const Word b = reinterpret_cast<const Word*>(s)[1];
            reinterpret_cast<Word*>(d)[0] = a;
            reinterpret_cast<Word*>(d)[1] = b;
        }
        for (; n >= 8; n -= 8, d += 8, s += 8) {
            *reinterpret_cast<Word*>(d) = *reinterpret_cast<const Word*>(s);
        }
    }
    for (std::size_t i = 0; i < n; ++i) d[i] = s[i];
    return dst;
}

ARMVCPU_NO_LIBCALL void* memmove(void* dst, const void* src, std::size_t n) {
    auto* d = static_cast<unsigned char*>(dst);
    const auto* s = static_cast<const unsigned char*>(src);
    if (d < s) {
        for (std::size_t i = 0; i < n; ++i) d[i] = s[i];
    } else {
        for (std::size_t i = n; i != 0; --i) d[i - 1] = s[i - 1];
    }
    return dst;
}

ARMVCPU_NO_LIBCALL int memcmp(const void* a, const void* b, std::size_t n) {
    const auto* x = static_cast<const unsigned char*>(a);
    const auto* y = static_cast<const unsigned char*>(b);
    for (std::size_t i = 0; i < n; ++i) {
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    }
    return 0;
}

}  // extern "C"
