// The flattened devicetree reader and writer against blobs put together
// byte by byte from the Devicetree Specification v0.4 chapter 5 (header
// 5.2, memory reservation block 5.3, structure block 5.4, strings block
// 5.5), never against the writer's own output alone.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "armvcpu/fdt.hpp"

using namespace armvcpu::fdt;

namespace {

using Buffer = std::vector<std::uint8_t>;

// / {
//     #address-cells = <2>;
//     model = "t";
//     cpus { cpu@0 { reg = <0>; }; };
// };
// with one reservation {0x40000000, 0x1000} and boot_cpuid_phys 0. dtc
// (device-tree-compiler 1.6.1) decompiles these bytes to exactly that tree.
const std::uint8_t kGolden[] = {
    // header (5.2)
    0xd0, 0x0d, 0xfe, 0xed,  // magic
    0x00, 0x00, 0x00, 0xc1,  // totalsize 193
    0x00, 0x00, 0x00, 0x48,  // off_dt_struct 72
    0x00, 0x00, 0x00, 0xa8,  // off_dt_strings 168
    0x00, 0x00, 0x00, 0x28,  // off_mem_rsvmap 40
    0x00, 0x00, 0x00, 0x11,  // version 17
    0x00, 0x00, 0x00, 0x10,  // last_comp_version 16
    0x00, 0x00, 0x00, 0x00,  // boot_cpuid_phys
    0x00, 0x00, 0x00, 0x19,  // size_dt_strings 25
    0x00, 0x00, 0x00, 0x60,  // size_dt_struct 96
    // memory reservation block (5.3), at 40
    0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00,  // address
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00,  // size
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // terminator
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    // structure block (5.4), at 72
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,  // BEGIN_NODE "" (root)
    0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04,  // PROP len 4
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,  //   nameoff 0, <2>
    0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x02,  // PROP len 2
    0x00, 0x00, 0x00, 0x0f, 't', 0x00, 0x00, 0x00,   //   nameoff 15, "t"
    0x00, 0x00, 0x00, 0x01, 'c', 'p', 'u', 's',      // BEGIN_NODE "cpus"
    0x00, 0x00, 0x00, 0x00,                          //
    0x00, 0x00, 0x00, 0x01, 'c', 'p', 'u', '@',      // BEGIN_NODE "cpu@0"
    '0', 0x00, 0x00, 0x00,                           //
    0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04,  // PROP len 4
    0x00, 0x00, 0x00, 0x15, 0x00, 0x00, 0x00, 0x00,  //   nameoff 21, <0>
    0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02,  // END_NODE x3
    0x00, 0x00, 0x00, 0x02,                          //
    0x00, 0x00, 0x00, 0x09,                          // END
    // strings block (5.5), at 168
    '#', 'a', 'd', 'd', 'r', 'e', 's', 's', '-', 'c', 'e', 'l', 'l', 's', 0x00,  // 0
    'm', 'o', 'd', 'e', 'l', 0x00,                                               // 15
    'r', 'e', 'g', 0x00,                                                         // 21
};
static_assert(sizeof(kGolden) == 193);

Buffer golden() { return Buffer(std::begin(kGolden), std::end(kGolden)); }

std::uint32_t get32(const Buffer& b, std::size_t at) { return load_be32(b.data() + at); }
void set32(Buffer& b, std::size_t at, std::uint32_t v) { store_be32(b.data() + at, v); }

ParseResult parse_buffer(const Buffer& b) { return parse(b.data(), b.size()); }
Error parse_error(const Buffer& b) { return parse_buffer(b).error; }

std::string text(Str s) { return {s.data, s.size}; }

// A blob laid out as 5.1 describes: header, reservations, structure block,
// strings block, each directly after the last, from parts a test spells out.
struct Parts {
    Buffer reservations = Buffer(16, 0);  // just the terminator
    Buffer structure;
    Buffer strings;

    Parts& token(std::uint32_t t) {
        put32(structure, t);
        return *this;
    }
    Parts& begin(const std::string& name) {
        token(kBeginNode);
        for (char c : name) structure.push_back(static_cast<std::uint8_t>(c));
        structure.push_back(0);
        while (structure.size() % 4) structure.push_back(0);
        return *this;
    }
    Parts& prop(std::uint32_t nameoff, const Buffer& value) {
        token(kProp);
        put32(structure, static_cast<std::uint32_t>(value.size()));
        put32(structure, nameoff);
        structure.insert(structure.end(), value.begin(), value.end());
        while (structure.size() % 4) structure.push_back(0);
        return *this;
    }
    Parts& end_node() { return token(kEndNode); }
    Parts& end() { return token(kEnd); }

    [[nodiscard]] Buffer assemble() const {
        Buffer b(kHeaderSize, 0);
        b.insert(b.end(), reservations.begin(), reservations.end());
        const auto off_struct = static_cast<std::uint32_t>(b.size());
        b.insert(b.end(), structure.begin(), structure.end());
        const auto off_strings = static_cast<std::uint32_t>(b.size());
        b.insert(b.end(), strings.begin(), strings.end());
        set32(b, kOffMagic, kMagic);
        set32(b, kOffTotalSize, static_cast<std::uint32_t>(b.size()));
        set32(b, kOffDtStruct, off_struct);
        set32(b, kOffDtStrings, off_strings);
        set32(b, kOffMemRsvmap, kHeaderSize);
        set32(b, kOffVersion, 17);
        set32(b, kOffLastCompVersion, 16);
        set32(b, kOffSizeDtStrings, static_cast<std::uint32_t>(strings.size()));
        set32(b, kOffSizeDtStruct, static_cast<std::uint32_t>(structure.size()));
        return b;
    }

    static void put32(Buffer& b, std::uint32_t v) {
        for (int shift = 24; shift >= 0; shift -= 8)
            b.push_back(static_cast<std::uint8_t>(v >> shift));
    }
};

// The strings "reg\0" at 0 for tests that need a property name.
Parts with_reg() {
    Parts p;
    p.strings = {'r', 'e', 'g', 0};
    return p;
}

// Writes the golden tree with the writer.
Error write_golden(Writer& w) {
    const std::uint8_t two[] = {0, 0, 0, 2};
    const std::uint8_t zero[] = {0, 0, 0, 0};
    w.add_reservation(0x40000000, 0x1000);
    w.begin_node("");
    w.property("#address-cells", {two, 4});
    w.property_string("model", "t");
    w.begin_node("cpus");
    w.begin_node("cpu@0");
    w.property("reg", {zero, 4});
    w.end_node();
    w.end_node();
    return w.end_node();
}

}  // namespace

// ---- reading well-formed blobs ----

TEST(FdtRead, GoldenHeaderAndReservations) {
    const Buffer b = golden();
    const ParseResult r = parse_buffer(b);
    ASSERT_EQ(r.error, Error::None) << error_name(r.error) << " at " << r.offset;
    const Header& h = r.blob.header();
    EXPECT_EQ(h.magic, 0xd00dfeedu);
    EXPECT_EQ(h.totalsize, 193u);
    EXPECT_EQ(h.version, 17u);
    EXPECT_EQ(h.last_comp_version, 16u);
    EXPECT_EQ(h.size_dt_struct, 96u);
    ASSERT_EQ(r.blob.reservation_count(), 1u);
    EXPECT_EQ(r.blob.reservation(0).address, 0x40000000u);
    EXPECT_EQ(r.blob.reservation(0).size, 0x1000u);
    EXPECT_EQ(r.blob.reservation(1).size, 0u);  // out of range reads as empty
}

TEST(FdtRead, GoldenItemsInOrder) {
    const Buffer b = golden();
    const ParseResult r = parse_buffer(b);
    ASSERT_EQ(r.error, Error::None);
    std::vector<std::string> seen;
    Cursor c = r.blob.items();
    Item item;
    while (c.next(item)) {
        const char* kind = item.kind == Item::Kind::BeginNode ? "begin"
                           : item.kind == Item::Kind::EndNode ? "end"
                                                              : "prop";
        seen.push_back(std::string(kind) + ":" + std::to_string(item.depth) + ":" +
                       text(item.name) + ":" + std::to_string(item.value.size));
    }
    const std::vector<std::string> want = {"begin:0::0",      "prop:0:#address-cells:4",
                                           "prop:0:model:2",  "begin:1:cpus:0",
                                           "begin:2:cpu@0:0", "prop:2:reg:4",
                                           "end:2::0",        "end:1::0",
                                           "end:0::0"};
    EXPECT_EQ(seen, want);
}

TEST(FdtRead, NodeWalkGivesPaths) {
    const Buffer b = golden();
    const ParseResult r = parse_buffer(b);
    ASSERT_EQ(r.error, Error::None);
    NodeWalk walk = r.blob.nodes();
    Node n;
    std::vector<std::string> paths;
    std::vector<unsigned> depths;
    char buf[64];
    while (walk.next(n)) {
        EXPECT_LT(walk.path(buf, sizeof buf), sizeof buf);
        paths.emplace_back(buf);
        depths.push_back(n.depth);
    }
    EXPECT_EQ(paths, (std::vector<std::string>{"/", "/cpus", "/cpus/cpu@0"}));
    EXPECT_EQ(depths, (std::vector<unsigned>{0, 1, 2}));
}

TEST(FdtRead, PathIsCutLikeSnprintf) {
    const Buffer b = golden();
    const ParseResult r = parse_buffer(b);
    NodeWalk walk = r.blob.nodes();
    Node n;
    walk.next(n);
    walk.next(n);
    walk.next(n);
    char buf[6];
    EXPECT_EQ(walk.path(buf, sizeof buf), 11u);  // "/cpus/cpu@0"
    EXPECT_STREQ(buf, "/cpus");
    EXPECT_EQ(walk.path(nullptr, 0), 11u);
}

TEST(FdtRead, FindNodeAndProperty) {
    const Buffer b = golden();
    const ParseResult r = parse_buffer(b);
    ASSERT_EQ(r.error, Error::None);
    Node n;
    ASSERT_TRUE(r.blob.find_node("/", n));
    EXPECT_EQ(n.depth, 0u);
    Property p;
    ASSERT_TRUE(r.blob.find_property(n, "model", p));
    ASSERT_EQ(p.value.size, 2u);
    EXPECT_EQ(std::memcmp(p.value.data, "t", 2), 0);
    ASSERT_TRUE(r.blob.find_property(n, "#address-cells", p));
    EXPECT_EQ(load_be32(p.value.data), 2u);
    EXPECT_FALSE(r.blob.find_property(n, "reg", p));  // cpu@0's, not the root's

    ASSERT_TRUE(r.blob.find_node("/cpus/cpu@0", n));
    EXPECT_EQ(text(n.name), "cpu@0");
    EXPECT_EQ(n.depth, 2u);
    ASSERT_TRUE(r.blob.find_property(n, "reg", p));
    EXPECT_EQ(load_be32(p.value.data), 0u);
    // 2.2.3: the unit address may be left out; stray slashes are ignored.
    ASSERT_TRUE(r.blob.find_node("/cpus/cpu", n));
    EXPECT_EQ(text(n.name), "cpu@0");
    ASSERT_TRUE(r.blob.find_node("//cpus/", n));
    EXPECT_EQ(text(n.name), "cpus");
    EXPECT_FALSE(r.blob.find_node("/cpus/cpu@1", n));
    EXPECT_FALSE(r.blob.find_node("/cp", n));
    EXPECT_FALSE(r.blob.find_node("cpus", n));  // not absolute
    EXPECT_FALSE(r.blob.find_node("/cpus/cpu@0/x", n));
}

TEST(FdtRead, ChildrenAndExactNameBeatsUnitAddress) {
    Parts p;
    p.begin("").begin("memory@40000000").end_node().begin("memory").end_node();
    p.begin("c").begin("x").end_node().end_node().end_node().end();
    const Buffer b = p.assemble();
    const ParseResult r = parse_buffer(b);
    ASSERT_EQ(r.error, Error::None);
    ChildCursor kids = r.blob.children(r.blob.root());
    Node n;
    std::vector<std::string> names;
    while (kids.next(n)) names.push_back(text(n.name));
    EXPECT_EQ(names, (std::vector<std::string>{"memory@40000000", "memory", "c"}));
    ASSERT_TRUE(r.blob.find_node("/memory", n));
    EXPECT_EQ(text(n.name), "memory");
    ASSERT_TRUE(r.blob.find_node("/c/x", n));
    EXPECT_EQ(n.depth, 2u);
}

TEST(FdtRead, NopsAreSkippedAnywhere) {
    Parts p = with_reg();
    p.token(kNop).begin("").token(kNop).prop(0, {1, 2, 3}).token(kNop).begin("a");
    p.token(kNop).end_node().token(kNop).end_node().token(kNop).end();
    const Buffer b = p.assemble();
    const ParseResult r = parse_buffer(b);
    ASSERT_EQ(r.error, Error::None) << error_name(r.error);
    Node n;
    ASSERT_TRUE(r.blob.find_node("/a", n));
    Property prop;
    ASSERT_TRUE(r.blob.find_property(r.blob.root(), "reg", prop));
    EXPECT_EQ(prop.value.size, 3u);
}

TEST(FdtRead, LaterVersionCompatibleWith17IsRead) {
    Buffer b = golden();
    set32(b, kOffVersion, 18);
    EXPECT_EQ(parse_error(b), Error::None);
}

TEST(FdtRead, NameOffsetMayPointIntoAnotherName) {
    // nameoff 1 reads "address-cells" out of "#address-cells\0".
    Parts p;
    p.strings = {'#', 'a', 'd', 'd', 'r', 'e', 's', 's', '-', 'c', 'e', 'l', 'l', 's', 0};
    p.begin("").prop(1, {}).end_node().end();
    const Buffer b = p.assemble();
    const ParseResult r = parse_buffer(b);
    ASSERT_EQ(r.error, Error::None);
    Property prop;
    EXPECT_TRUE(r.blob.find_property(r.blob.root(), "address-cells", prop));
}

TEST(FdtRead, DepthLimitIsExact) {
    auto nested = [](unsigned levels) {
        Parts p;
        p.begin("");
        for (unsigned i = 1; i < levels; ++i) p.begin("n");
        for (unsigned i = 0; i < levels; ++i) p.end_node();
        p.end();
        return p.assemble();
    };
    EXPECT_EQ(parse_error(nested(kMaxDepth)), Error::None);
    const Buffer deep = nested(kMaxDepth + 1);
    const ParseResult r = parse_buffer(deep);
    EXPECT_EQ(r.error, Error::TooDeep);
    // The offending BEGIN_NODE: after the header, the terminator and 32 nodes.
    EXPECT_EQ(r.offset, kHeaderSize + 16 + 8 + 8 * (kMaxDepth - 1));
}

TEST(FdtRead, EveryErrorHasAName) {
    for (int e = 0; e <= static_cast<int>(Error::TooLarge); ++e) {
        EXPECT_NE(error_name(static_cast<Error>(e)), nullptr) << e;
    }
}

// ---- malformed blobs ----

TEST(FdtMalformed, TruncatedHeader) {
    const Buffer b = golden();
    for (std::size_t n = 0; n < kHeaderSize; ++n) {
        EXPECT_EQ(parse(b.data(), n).error, Error::Truncated) << n;
    }
    EXPECT_EQ(parse(nullptr, 100).error, Error::Truncated);
}

TEST(FdtMalformed, TruncatedBody) {
    const Buffer b = golden();
    for (std::size_t n = kHeaderSize; n < b.size(); ++n) {
        EXPECT_EQ(parse(b.data(), n).error, Error::Truncated) << n;
    }
}

TEST(FdtMalformed, BadMagic) {
    Buffer b = golden();
    set32(b, kOffMagic, 0xedfe0dd0);  // little-endian magic
    EXPECT_EQ(parse_error(b), Error::BadMagic);
    const Buffer garbage(64, 0xa5);
    EXPECT_EQ(parse_error(garbage), Error::BadMagic);
}

TEST(FdtMalformed, BadVersion) {
    Buffer b = golden();
    set32(b, kOffVersion, 16);
    EXPECT_EQ(parse_error(b), Error::BadVersion);
    b = golden();
    set32(b, kOffLastCompVersion, 18);
    set32(b, kOffVersion, 18);
    EXPECT_EQ(parse_error(b), Error::BadVersion);  // needs a version 18 reader
    b = golden();
    set32(b, kOffVersion, 17);
    set32(b, kOffLastCompVersion, 17);
    EXPECT_EQ(parse_error(b), Error::None);
}

TEST(FdtMalformed, TotalSizeSmallerThanHeader) {
    Buffer b = golden();
    set32(b, kOffTotalSize, 39);
    EXPECT_EQ(parse_error(b), Error::BlockOutOfRange);
}

TEST(FdtMalformed, TotalSizeBeyondBuffer) {
    Buffer b = golden();
    set32(b, kOffTotalSize, 194);
    EXPECT_EQ(parse_error(b), Error::Truncated);
}

TEST(FdtMalformed, BlocksOutOfRange) {
    struct Case {
        std::size_t field;
        std::uint32_t value;
    };
    const Case cases[] = {
        {kOffDtStruct, 0xc4},            // starts past the end
        {kOffDtStruct, 0x24},            // inside the header
        {kOffSizeDtStruct, 0x7c},        // runs past totalsize
        {kOffSizeDtStruct, 0xfffffffc},  // offset + size wraps in 32 bits
        {kOffDtStrings, 0xc0},           // runs past totalsize
        {kOffDtStrings, 0x10},           // inside the header
        {kOffSizeDtStrings, 0xffffffff},
        {kOffMemRsvmap, 0},     // inside the header
        {kOffMemRsvmap, 0xc0},  // no room for even the terminator
    };
    for (const Case& c : cases) {
        Buffer b = golden();
        set32(b, c.field, c.value);
        const ParseResult r = parse_buffer(b);
        EXPECT_EQ(r.error, Error::BlockOutOfRange) << c.field << " = " << c.value;
    }
}

TEST(FdtMalformed, OverlappingBlocks) {
    Buffer b = golden();
    set32(b, kOffDtStrings, 0x48 + 0x5c);  // strings start on the END token
    EXPECT_EQ(parse_error(b), Error::BlocksOverlap);
    b = golden();
    set32(b, kOffDtStrings, 0x30);  // inside the reservation entry at 0x28
    set32(b, kOffSizeDtStrings, 8);
    EXPECT_EQ(parse_error(b), Error::BlocksOverlap);
}

TEST(FdtMalformed, OddAlignment) {
    // A struct block moved by one byte, with everything else consistent.
    Buffer b = golden();
    b.insert(b.begin() + 0x48, 0);
    set32(b, kOffTotalSize, 194);
    set32(b, kOffDtStruct, 0x49);
    set32(b, kOffDtStrings, 0xa9);
    EXPECT_EQ(parse_error(b), Error::BadAlignment);
    b = golden();
    set32(b, kOffSizeDtStruct, 0x5e);
    EXPECT_EQ(parse_error(b), Error::BadAlignment);
    b = golden();
    set32(b, kOffMemRsvmap, 0x2c);  // 4- but not 8-byte aligned
    EXPECT_EQ(parse_error(b), Error::BadAlignment);
}

TEST(FdtMalformed, ReservationBlockUnterminatedOrWrapping) {
    Parts p;
    p.begin("").end_node().end();
    Buffer b = p.assemble();
    // Reservations placed at the very end with no terminator inside the blob.
    b.insert(b.end(), {0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x10, 0});
    set32(b, kOffTotalSize, static_cast<std::uint32_t>(b.size()));
    set32(b, kOffMemRsvmap, static_cast<std::uint32_t>(b.size() - 16));
    EXPECT_EQ(parse_error(b), Error::BadReservation);

    Parts q;
    q.reservations = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf0, 0,
                      0,    0,    0,    0,    0,    0,    0x20, 0};  // wraps past 2^64
    q.reservations.resize(32, 0);
    q.begin("").end_node().end();
    EXPECT_EQ(parse_error(q.assemble()), Error::BadReservation);
    // Ending exactly at 2^64 is fine; so is a size of 0 at a non-zero address.
    q.reservations[14] = 0x10;
    EXPECT_EQ(parse_error(q.assemble()), Error::None);
    q.reservations = {0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    q.reservations.resize(32, 0);
    EXPECT_EQ(parse_error(q.assemble()), Error::None);
}

TEST(FdtMalformed, MissingEnd) {
    Parts p;
    p.begin("").end_node();
    EXPECT_EQ(parse_error(p.assemble()), Error::MissingEnd);
    Parts empty;
    EXPECT_EQ(parse_error(empty.assemble()), Error::MissingEnd);
}

TEST(FdtMalformed, EndWithNodesOpenOrNoRoot) {
    Parts open;
    open.begin("").begin("a").end_node().end();
    EXPECT_EQ(parse_error(open.assemble()), Error::BadStructure);
    Parts no_root;
    no_root.end();
    EXPECT_EQ(parse_error(no_root.assemble()), Error::BadStructure);
}

TEST(FdtMalformed, TokensAfterEnd) {
    Parts p;
    p.begin("").end_node().end().token(kNop);
    EXPECT_EQ(parse_error(p.assemble()), Error::BadStructure);
}

TEST(FdtMalformed, UnterminatedNodeName) {
    // "abcd" fills the block's last word with no NUL after it.
    Parts q;
    q.token(kBeginNode);
    for (char c : std::string("abcd")) q.structure.push_back(static_cast<std::uint8_t>(c));
    const ParseResult r = parse_buffer(q.assemble());
    EXPECT_EQ(r.error, Error::UnterminatedName);
    EXPECT_EQ(r.offset, kHeaderSize + 16);
}

TEST(FdtMalformed, BadNodeNames) {
    Parts slash;
    slash.begin("").begin("a/b").end_node().end_node().end();
    EXPECT_EQ(parse_error(slash.assemble()), Error::BadNodeName);
    Parts empty;
    empty.begin("").begin("").end_node().end_node().end();
    EXPECT_EQ(parse_error(empty.assemble()), Error::BadNodeName);
    Parts named_root;
    named_root.begin("root").end_node().end();
    EXPECT_EQ(parse_error(named_root.assemble()), Error::BadNodeName);
}

TEST(FdtMalformed, BadNameOffset) {
    Parts beyond = with_reg();
    beyond.begin("").prop(4, {}).end_node().end();  // the strings block is 4 bytes
    EXPECT_EQ(parse_error(beyond.assemble()), Error::BadNameOffset);
    Parts huge = with_reg();
    huge.begin("").prop(0xffffffff, {}).end_node().end();
    EXPECT_EQ(parse_error(huge.assemble()), Error::BadNameOffset);
    // The name's NUL lies past the strings block's end (but inside the blob).
    Parts cut = with_reg();
    cut.begin("").prop(0, {}).end_node().end();
    Buffer b = cut.assemble();
    set32(b, kOffSizeDtStrings, 3);
    EXPECT_EQ(parse_error(b), Error::BadNameOffset);
}

TEST(FdtMalformed, PropertyRunsOffTheStructureBlock) {
    Parts p = with_reg();
    p.begin("").prop(0, {1, 2, 3, 4}).end_node().end();
    Buffer b = p.assemble();
    // PROP's len is the word after the root's BEGIN_NODE and its name.
    const std::size_t len_at = kHeaderSize + 16 + 8 + 4;
    ASSERT_EQ(get32(b, len_at), 4u);
    set32(b, len_at, 13);  // 4 + END_NODE + END is 12 bytes
    EXPECT_EQ(parse_error(b), Error::PropertyOutOfRange);
    set32(b, len_at, 0xfffffff8);
    EXPECT_EQ(parse_error(b), Error::PropertyOutOfRange);
    // A PROP token with no room for len and nameoff.
    Parts q;
    q.begin("").token(kProp);
    EXPECT_EQ(parse_error(q.assemble()), Error::PropertyOutOfRange);
}

TEST(FdtMalformed, UnknownToken) {
    Parts p;
    p.begin("").token(5).end_node().end();
    EXPECT_EQ(parse_error(p.assemble()), Error::BadToken);
}

TEST(FdtMalformed, TokensOutOfOrder) {
    Parts prop_first = with_reg();
    prop_first.prop(0, {}).begin("").end_node().end();
    EXPECT_EQ(parse_error(prop_first.assemble()), Error::BadStructure);
    Parts prop_after_child = with_reg();
    prop_after_child.begin("").begin("a").end_node().prop(0, {}).end_node().end();
    EXPECT_EQ(parse_error(prop_after_child.assemble()), Error::BadStructure);
    Parts two_roots;
    two_roots.begin("").end_node().begin("").end_node().end();
    EXPECT_EQ(parse_error(two_roots.assemble()), Error::BadStructure);
    Parts stray_end;
    stray_end.end_node().begin("").end_node().end();
    EXPECT_EQ(parse_error(stray_end.assemble()), Error::BadStructure);
}

// ---- the writer ----

TEST(FdtWrite, ProducesTheGoldenBlob) {
    Buffer out(512, 0xcc);  // dirty, so padding the writer forgets shows
    Writer w(out.data(), out.size());
    EXPECT_EQ(write_golden(w), Error::None);
    std::size_t size = 0;
    ASSERT_EQ(w.finish(size), Error::None);
    ASSERT_EQ(size, sizeof(kGolden));
    out.resize(size);
    EXPECT_EQ(out, golden());
}

TEST(FdtWrite, BootCpuAndValuesRoundTrip) {
    Buffer out(256);
    Writer w(out.data(), out.size());
    w.set_boot_cpuid_phys(3);
    w.begin_node("");
    w.property_u64("linux,initrd-start", 0x1122334455667788ull);
    w.property("empty", {});
    w.end_node();
    std::size_t size = 0;
    ASSERT_EQ(w.finish(size), Error::None);
    const ParseResult r = parse(out.data(), size);
    ASSERT_EQ(r.error, Error::None);
    EXPECT_EQ(r.blob.header().boot_cpuid_phys, 3u);
    Property p;
    ASSERT_TRUE(r.blob.find_property(r.blob.root(), "linux,initrd-start", p));
    EXPECT_EQ(load_be64(p.value.data), 0x1122334455667788ull);
    ASSERT_TRUE(r.blob.find_property(r.blob.root(), "empty", p));
    EXPECT_EQ(p.value.size, 0u);
}

TEST(FdtWrite, StringTableSharesNames) {
    Buffer out(512);
    Writer w(out.data(), out.size());
    w.begin_node("");
    w.property_u32("#address-cells", 2);
    w.property_u32("address-cells", 1);  // the tail of the first name
    w.begin_node("a");
    w.property_u32("#address-cells", 1);  // the same name again
    w.end_node();
    w.end_node();
    std::size_t size = 0;
    ASSERT_EQ(w.finish(size), Error::None);
    out.resize(size);
    EXPECT_EQ(get32(out, kOffSizeDtStrings), 15u);  // "#address-cells\0", once
    // The three PROP tokens' nameoffs: 0, 1 (inside the first name), 0.
    const std::size_t s = get32(out, kOffDtStruct);
    EXPECT_EQ(get32(out, s + 8 + 8), 0u);
    EXPECT_EQ(get32(out, s + 8 + 16 + 8), 1u);
    EXPECT_EQ(get32(out, s + 8 + 32 + 8 + 8), 0u);
}

TEST(FdtWrite, TooSmallBufferAtEveryLength) {
    for (std::size_t cap = 0; cap < sizeof(kGolden); ++cap) {
        Buffer out(cap + 1);
        Writer w(out.data(), cap);
        write_golden(w);
        std::size_t size = 0;
        EXPECT_EQ(w.finish(size), Error::NoSpace) << cap;
        EXPECT_EQ(w.error(), Error::NoSpace);
        EXPECT_EQ(out[cap], 0u) << "wrote past the buffer at capacity " << cap;
    }
    Buffer exact(sizeof(kGolden));
    Writer w(exact.data(), exact.size());
    write_golden(w);
    std::size_t size = 0;
    ASSERT_EQ(w.finish(size), Error::None);
    EXPECT_EQ(exact, golden());
}

TEST(FdtWrite, StructureErrors) {
    Buffer out(256);
    std::size_t size = 0;
    {
        Writer w(out.data(), out.size());
        EXPECT_EQ(w.property_u32("x", 1), Error::BadStructure);  // no node open
        EXPECT_EQ(w.begin_node(""), Error::BadStructure);        // the error sticks
    }
    {
        Writer w(out.data(), out.size());
        w.begin_node("");
        w.begin_node("a");
        w.end_node();
        EXPECT_EQ(w.property_u32("x", 1), Error::BadStructure);  // after a child
    }
    {
        Writer w(out.data(), out.size());
        EXPECT_EQ(w.end_node(), Error::BadStructure);
    }
    {
        Writer w(out.data(), out.size());
        w.begin_node("");
        w.end_node();
        EXPECT_EQ(w.begin_node(""), Error::BadStructure);  // a second root
    }
    {
        Writer w(out.data(), out.size());
        w.begin_node("");
        EXPECT_EQ(w.finish(size), Error::BadStructure);  // root still open
    }
    {
        Writer w(out.data(), out.size());
        EXPECT_EQ(w.finish(size), Error::BadStructure);  // no root
    }
    {
        Writer w(out.data(), out.size());
        w.begin_node("");
        EXPECT_EQ(w.add_reservation(0x1000, 0x1000), Error::BadStructure);
    }
    {
        Writer w(out.data(), out.size());
        w.begin_node("");
        w.end_node();
        ASSERT_EQ(w.finish(size), Error::None);
        EXPECT_EQ(w.begin_node("x"), Error::BadStructure);  // already finished
        EXPECT_TRUE(w.finished());
    }
}

TEST(FdtWrite, BadReservations) {
    Buffer out(256);
    Writer zero(out.data(), out.size());
    EXPECT_EQ(zero.add_reservation(0, 0), Error::BadReservation);  // the terminator
    Writer wraps(out.data(), out.size());
    EXPECT_EQ(wraps.add_reservation(0xfffffffffffff000ull, 0x2000), Error::BadReservation);
    Writer fine(out.data(), out.size());
    EXPECT_EQ(fine.add_reservation(0xfffffffffffff000ull, 0x1000), Error::None);
}

TEST(FdtWrite, BadNames) {
    Buffer out(256);
    {
        Writer w(out.data(), out.size());
        EXPECT_EQ(w.begin_node("root"), Error::BadNodeName);
    }
    {
        Writer w(out.data(), out.size());
        w.begin_node("");
        EXPECT_EQ(w.begin_node(""), Error::BadNodeName);
    }
    {
        Writer w(out.data(), out.size());
        w.begin_node("");
        EXPECT_EQ(w.begin_node("a/b"), Error::BadNodeName);
    }
    {
        Writer w(out.data(), out.size());
        w.begin_node("");
        EXPECT_EQ(w.begin_node(Str{"a\0b", 3}), Error::BadNodeName);
    }
    {
        Writer w(out.data(), out.size());
        w.begin_node("");
        EXPECT_EQ(w.property(Str{"a\0b", 3}, {}), Error::BadPropertyName);
    }
}

TEST(FdtWrite, DepthLimit) {
    Buffer out(4096);
    Writer w(out.data(), out.size());
    w.begin_node("");
    for (unsigned i = 1; i < kMaxDepth; ++i) ASSERT_EQ(w.begin_node("n"), Error::None) << i;
    EXPECT_EQ(w.begin_node("n"), Error::TooDeep);
}

TEST(FdtWrite, WriterOutputParsesBack) {
    Buffer out(4096);
    Writer w(out.data(), out.size());
    w.add_reservation(0x48000000, 0x200000);
    w.add_reservation(0x50000000, 0);
    w.begin_node("");
    w.property_u32("#address-cells", 2);
    for (int i = 0; i < 4; ++i) {
        const std::string name = "virtio_mmio@a00" + std::to_string(i) + "00";
        w.begin_node(name.c_str());
        w.property_string("compatible", "virtio,mmio");
        w.property_u64("reg", 0xa000000ull + static_cast<unsigned>(i) * 0x200);
        w.end_node();
    }
    w.end_node();
    std::size_t size = 0;
    ASSERT_EQ(w.finish(size), Error::None);
    const ParseResult r = parse(out.data(), size);
    ASSERT_EQ(r.error, Error::None) << error_name(r.error);
    EXPECT_EQ(r.blob.reservation_count(), 2u);
    EXPECT_EQ(r.blob.reservation(1).address, 0x50000000u);
    Node n;
    ASSERT_TRUE(r.blob.find_node("/virtio_mmio@a00300", n));
    Property p;
    ASSERT_TRUE(r.blob.find_property(n, "reg", p));
    EXPECT_EQ(load_be64(p.value.data), 0xa000600u);
    EXPECT_EQ(get32(out, kOffSizeDtStrings), 15u + 11 + 4);  // each name once
}
