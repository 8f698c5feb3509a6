// The stage-2 builder against a simple model: a list of 4 KiB pages the
// sequence of map/unmap calls should have left mapped, checked through
// translate() after every step.
#include <cstdlib>
#include <map>
#include <vector>

#include "armvcpu/stage2.hpp"
#include "fuzz_input.hpp"

using namespace armvcpu::stage2;

namespace {

struct Memory {
    std::uint64_t base = 0x8000'0000;
    std::vector<std::uint64_t> words = std::vector<std::uint64_t>(64 * 512, 0);
    unsigned used = 0;
    std::uint64_t read64(std::uint64_t pa) const { return words.at((pa - base) / 8); }
    void write64(std::uint64_t pa, std::uint64_t v) { words.at((pa - base) / 8) = v; }
    std::uint64_t alloc_table() { return used == 64 ? 0 : base + 4096ull * used++; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    armvcpu::fuzz::Input in(data, size);
    Memory mem;
    Tables<Memory> t(mem, mem.alloc_table(), 32, 40);
    std::map<std::uint64_t, std::uint64_t> model;  // IPA page -> PA page
    for (int step = 0; step < 16 && !in.empty(); ++step) {
        const bool unmap = (in.take<std::uint8_t>() & 1) != 0;
        // Small, mostly aligned ranges in the low 64 MiB of a 4 GiB space.
        const std::uint64_t ipa = (in.take<std::uint16_t>() % 0x4000) * kPageSize;
        const std::uint64_t pages = 1 + in.take<std::uint16_t>() % 1024;
        const std::uint64_t pa = 0x1'0000'0000ull + (in.take<std::uint16_t>() % 0x4000) * kPageSize;
        if (unmap) {
            if (t.unmap(ipa, pages * kPageSize) == MapError::None) {
                for (std::uint64_t p = 0; p < pages; ++p) model.erase(ipa + p * kPageSize);
            }
        } else {
            if (t.map(ipa, pa, pages * kPageSize, {}) == MapError::None) {
                for (std::uint64_t p = 0; p < pages; ++p) {
                    ARMVCPU_FUZZ_CHECK(model.count(ipa + p * kPageSize) == 0);
                    model[ipa + p * kPageSize] = pa + p * kPageSize;
                }
            }
        }
        // Every page the model holds translates there, and a few others do not.
        for (const auto& [page, target] : model) {
            const Translation tr = t.translate(page + 0x123);
            ARMVCPU_FUZZ_CHECK(tr.valid && tr.pa == target + 0x123);
        }
        const std::uint64_t probe = (in.take<std::uint16_t>() % 0x4000) * kPageSize;
        ARMVCPU_FUZZ_CHECK(t.translate(probe).valid == (model.count(probe) != 0));
    }
    return 0;
}
