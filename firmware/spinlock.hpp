// A spin lock for state several physical CPUs share (a VM's emulated GIC).
#pragma once

#include <cstdint>

namespace fw {

class SpinLock {
public:
    explicit SpinLock(std::uint32_t& word) : word_(word) {
        while (__atomic_exchange_n(&word_, 1, __ATOMIC_ACQUIRE) != 0) {
            while (__atomic_load_n(&word_, __ATOMIC_RELAXED) != 0) asm volatile("yield");
        }
    }
    ~SpinLock() { __atomic_store_n(&word_, 0, __ATOMIC_RELEASE); }
    SpinLock(const SpinLock&) = delete;
    SpinLock& operator=(const SpinLock&) = delete;

private:
    std::uint32_t& word_;
};

}  // namespace fw
