// Pulls fixed-size values out of a fuzzer's bytes (zeros once they run out).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace armvcpu::fuzz {

class Input {
public:
    Input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

    template <class T>
    T take() {
        T value{};
        const std::size_t n = size_ - pos_ < sizeof(T) ? size_ - pos_ : sizeof(T);
        if (n != 0) std::memcpy(&value, data_ + pos_, n);
        pos_ += n;
        return value;
    }

    [[nodiscard]] bool empty() const { return pos_ >= size_; }

private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
};

// A check that must hold for every input; abort() makes libFuzzer keep the input.
#define ARMVCPU_FUZZ_CHECK(cond)       \
    do {                               \
        if (!(cond)) __builtin_trap(); \
    } while (0)

}  // namespace armvcpu::fuzz
