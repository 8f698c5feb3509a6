#include <gtest/gtest.h>

#include <string_view>

#include "armvcpu/rsp.hpp"

namespace {

std::uint8_t sum_of(std::string_view payload) {
    return armvcpu::rsp::checksum(reinterpret_cast<const unsigned char*>(payload.data()),
                                  payload.size());
}

// Checksums as GDB and QEMU put them on the wire.
TEST(Rsp, ChecksumOfKnownPackets) {
    EXPECT_EQ(sum_of("OK"), 0x9a);
    EXPECT_EQ(sum_of("c"), 0x63);
    EXPECT_EQ(sum_of(""), 0x00);
    EXPECT_EQ(sum_of("T05thread:01;"), 0x07);
}

TEST(Rsp, ChecksumWrapsModulo256) {
    const std::string long_payload(1000, '\xff');  // 255 * 1000 = 0x3e418
    EXPECT_EQ(sum_of(long_payload), 0x18);
}

constexpr unsigned char kOk[] = {'O', 'K'};
static_assert(armvcpu::rsp::checksum(kOk, sizeof kOk) == 0x9a);

}  // namespace
