// The EL2 PL011 emulation (pl011.hpp): registers per the PL011 TRM (DDI 0183).
#include <gtest/gtest.h>

#include "armvcpu/classify.hpp"
#include "armvcpu/pl011.hpp"

using namespace armvcpu;

namespace {
constexpr std::uint64_t kBase = 0x09000000;

// A single-register store/load with a valid syndrome (Arm ARM D17.2.37).
Syndrome access(bool write, unsigned srt, std::uint64_t ipa) {
    const std::uint64_t iss = (1u << 24) | (2u << 22) | (srt << 16) | (write ? 1u << 6 : 0u) | 7u;
    return {(0x24ull << 26) | (1u << 25) | iss, ipa, (ipa >> 12) << 4};
}
}  // namespace

TEST(Pl011, WritesToUartdrFillTheRing) {
    ConsoleRing ring{};
    TrapFrame f{};
    for (char c : {'o', 'k'}) {
        f.set_gpr(3, static_cast<std::uint64_t>(c));
        const ExitReason r = classify_sync(f, access(true, 3, kBase + kPl011Dr));
        EXPECT_TRUE(emulate_pl011(ring, kBase, r, f));
    }
    EXPECT_EQ(ring.written, 2u);
    EXPECT_EQ(ring.data[0], 'o');
    EXPECT_EQ(ring.data[1], 'k');
}

TEST(Pl011, FlagRegisterSaysTransmitterReadyAndReceiverEmpty) {
    ConsoleRing ring{};
    TrapFrame f{};
    f.set_gpr(4, 0xdead);
    const ExitReason r = classify_sync(f, access(false, 4, kBase + kPl011Fr));
    EXPECT_TRUE(emulate_pl011(ring, kBase, r, f));
    EXPECT_EQ(f.gpr(4), 0x90u);  // TXFE (bit 7) | RXFE (bit 4); TXFF (bit 5) clear
}

TEST(Pl011, RingWrapsAndOtherAddressesAreNotOurs) {
    ConsoleRing ring{};
    ring.written = kConsoleRingSize - 1;
    TrapFrame f{};
    f.set_gpr(1, 'x');
    EXPECT_TRUE(emulate_pl011(ring, kBase, classify_sync(f, access(true, 1, kBase)), f));
    EXPECT_TRUE(emulate_pl011(ring, kBase, classify_sync(f, access(true, 1, kBase)), f));
    EXPECT_EQ(ring.data[kConsoleRingSize - 1], 'x');
    EXPECT_EQ(ring.data[0], 'x');
    EXPECT_FALSE(emulate_pl011(ring, kBase, classify_sync(f, access(true, 1, kBase + 0x1000)), f));
    EXPECT_FALSE(emulate_pl011(ring, kBase, classify_sync(f, {0x5a000000, 0, 0}), f));
}
