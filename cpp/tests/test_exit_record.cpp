#include <gtest/gtest.h>

#include <cstring>

#include "armvcpu/host_interface.hpp"

using namespace armvcpu;

TEST(ExitRecord, MagicSpellsAvexInMemory) {
    char bytes[4];
    std::memcpy(bytes, &kExitRecordMagic, 4);
    EXPECT_EQ(std::string(bytes, 4), "AVEX");
}

TEST(ExitRecord, MakeExitSetsKindAndPayload) {
    const ExitReason r = make_exit(exit::SendIpi{1, 2, 0, 1, 5});
    EXPECT_EQ(r.kind, ExitKind::SendIpi);
    EXPECT_EQ(r.send_ipi.target_cpu, 1u);
    EXPECT_EQ(r.send_ipi.send_to_self, 1u);
    EXPECT_EQ(r.send_ipi.vector, 5u);
}

TEST(ExitRecord, EveryKindHasAName) {
    for (std::uint32_t k = 0; k < kNumExitKinds; ++k) {
        EXPECT_NE(exit_kind_name(static_cast<ExitKind>(k)), nullptr) << k;
    }
    EXPECT_EQ(exit_kind_name(static_cast<ExitKind>(kNumExitKinds)), nullptr);
}
