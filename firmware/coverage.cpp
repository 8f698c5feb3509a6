// The coverage build's runtime (armvcpu-firmware-cov.elf only; the normal
// image has neither this file nor the instrumentation).
//
// GCC's -fsanitize-coverage=trace-pc puts a call to __sanitizer_cov_trace_pc()
// at the start of every basic block of the instrumented code, as kcov uses it
// for Linux. The call's return address names the block, so the map needs no
// table of blocks: it has one byte per instruction word of the image from
// __image_start, and the byte after a block's `bl` is set to 1 when the block
// runs. A plain byte store is enough on several CPUs at once: every writer
// stores the same value.
//
// The host reads and clears the map through the shared guest RAM file (the
// firmware image lies in it; see python/armvcpu/tools/fuzz/coverage.py): it
// finds armvcpu_cov_map and its size by symbol, and turns offsets back into
// source lines with the image's DWARF.
#include <cstddef>
#include <cstdint>

extern "C" {
extern char __image_start[];

// One byte per 4-byte instruction word: 64 KiB covers 256 KiB of code, several
// times the instrumented .text (tests/test_fuzz_coverage.py checks it fits).
constexpr std::size_t kCoverageMapBytes = 0x10000;

[[gnu::used, gnu::aligned(4096)]] volatile std::uint8_t armvcpu_cov_map[kCoverageMapBytes];

// Not instrumented itself (this file is built without the flag): it would call itself.
void __sanitizer_cov_trace_pc() {
    const auto ra = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
    const std::uintptr_t word = (ra - reinterpret_cast<std::uintptr_t>(__image_start)) >> 2;
    if (word < kCoverageMapBytes) {
        armvcpu_cov_map[word] = 1;
    }
}
}
