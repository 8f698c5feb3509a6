// Flattened Devicetree (DTB), Devicetree Specification v0.4 chapter 5: a
// reader that validates a whole blob before anything looks inside it, and a
// writer that builds one into a caller's buffer.
//
// Freestanding like the rest of the core (no heap, no exceptions, no libc):
// the firmware may one day hand a guest a tree, and the host builds the
// guest's tree with this same code. A blob is untrusted input (a user's
// --dtb, QEMU's dump), so every offset and size is checked against the
// buffer before it is used, in 64-bit arithmetic so no sum can wrap.
#pragma once

#include <cstddef>
#include <cstdint>

namespace armvcpu::fdt {

inline constexpr std::uint32_t kMagic = 0xd00dfeed;
inline constexpr std::uint32_t kVersion = 17;
inline constexpr std::uint32_t kLastCompVersion = 16;
inline constexpr std::size_t kHeaderSize = 40;       // ten big-endian 32-bit fields (5.2)
inline constexpr std::size_t kReservationSize = 16;  // address and size, 64 bits each (5.3)
// Open nodes at once, root included. The specification sets no limit; this
// one bounds the path stack a walk keeps (no heap) and is far beyond any
// real tree (QEMU's virt tree is 5 deep).
inline constexpr unsigned kMaxDepth = 32;

// Structure-block tokens (5.4.1), each a big-endian 32-bit word.
inline constexpr std::uint32_t kBeginNode = 1;
inline constexpr std::uint32_t kEndNode = 2;
inline constexpr std::uint32_t kProp = 3;
inline constexpr std::uint32_t kNop = 4;
inline constexpr std::uint32_t kEnd = 9;

// Header field offsets (5.2).
inline constexpr std::size_t kOffMagic = 0;
inline constexpr std::size_t kOffTotalSize = 4;
inline constexpr std::size_t kOffDtStruct = 8;
inline constexpr std::size_t kOffDtStrings = 12;
inline constexpr std::size_t kOffMemRsvmap = 16;
inline constexpr std::size_t kOffVersion = 20;
inline constexpr std::size_t kOffLastCompVersion = 24;
inline constexpr std::size_t kOffBootCpuidPhys = 28;
inline constexpr std::size_t kOffSizeDtStrings = 32;
inline constexpr std::size_t kOffSizeDtStruct = 36;

enum class Error : std::uint8_t {
    None = 0,
    Truncated,           // the buffer is shorter than the header or than totalsize
    BadMagic,            // magic is not 0xd00dfeed
    BadVersion,          // not readable by a version 17 reader
    BadAlignment,        // rsvmap not 8-aligned, or struct offset/size not 4-aligned
    BlockOutOfRange,     // a block outside [header end, totalsize)
    BlocksOverlap,       // two blocks share bytes
    BadReservation,      // rsvmap unterminated, or an entry whose end wraps
    BadToken,            // a word in the structure block that is no token
    BadStructure,        // tokens out of order (no root, two roots, stray END_NODE, ...)
    UnterminatedName,    // a node name runs off the structure block
    BadNodeName,         // root with a name, another node without one, or a '/' in it
    BadNameOffset,       // nameoff outside the strings block, or its string unterminated
    PropertyOutOfRange,  // a property's value runs off the structure block
    TooDeep,             // more than kMaxDepth nodes open at once
    MissingEnd,          // the structure block ends before FDT_END
    NoSpace,             // writer: the buffer is too small
    BadPropertyName,     // writer: a property name with a NUL in it
    TooLarge,            // writer: a value longer than 32 bits can say
};

constexpr const char* error_name(Error e) {
    switch (e) {
        case Error::None: return "None";
        case Error::Truncated: return "Truncated";
        case Error::BadMagic: return "BadMagic";
        case Error::BadVersion: return "BadVersion";
        case Error::BadAlignment: return "BadAlignment";
        case Error::BlockOutOfRange: return "BlockOutOfRange";
        case Error::BlocksOverlap: return "BlocksOverlap";
        case Error::BadReservation: return "BadReservation";
        case Error::BadToken: return "BadToken";
        case Error::BadStructure: return "BadStructure";
        case Error::UnterminatedName: return "UnterminatedName";
        case Error::BadNodeName: return "BadNodeName";
        case Error::BadNameOffset: return "BadNameOffset";
        case Error::PropertyOutOfRange: return "PropertyOutOfRange";
        case Error::TooDeep: return "TooDeep";
        case Error::MissingEnd: return "MissingEnd";
        case Error::NoSpace: return "NoSpace";
        case Error::BadPropertyName: return "BadPropertyName";
        case Error::TooLarge: return "TooLarge";
    }
    return nullptr;
}

// A run of bytes someone else owns.
struct Bytes {
    const std::uint8_t* data = nullptr;
    std::size_t size = 0;
};

// A name: not NUL-terminated as seen here (a view into the blob).
struct Str {
    const char* data = nullptr;
    std::size_t size = 0;

    static constexpr Str of(const char* s) {
        std::size_t n = 0;
        while (s[n] != '\0') ++n;
        return {s, n};
    }
    [[nodiscard]] constexpr bool operator==(const Str& o) const {
        if (size != o.size) return false;
        for (std::size_t i = 0; i < size; ++i) {
            if (data[i] != o.data[i]) return false;
        }
        return true;
    }
};

constexpr std::uint32_t load_be32(const std::uint8_t* p) {
    return static_cast<std::uint32_t>(p[0]) << 24 | static_cast<std::uint32_t>(p[1]) << 16 |
           static_cast<std::uint32_t>(p[2]) << 8 | static_cast<std::uint32_t>(p[3]);
}
constexpr std::uint64_t load_be64(const std::uint8_t* p) {
    return static_cast<std::uint64_t>(load_be32(p)) << 32 | load_be32(p + 4);
}
constexpr void store_be32(std::uint8_t* p, std::uint32_t v) {
    p[0] = static_cast<std::uint8_t>(v >> 24);
    p[1] = static_cast<std::uint8_t>(v >> 16);
    p[2] = static_cast<std::uint8_t>(v >> 8);
    p[3] = static_cast<std::uint8_t>(v);
}
constexpr void store_be64(std::uint8_t* p, std::uint64_t v) {
    store_be32(p, static_cast<std::uint32_t>(v >> 32));
    store_be32(p + 4, static_cast<std::uint32_t>(v));
}
constexpr std::uint64_t align4(std::uint64_t v) { return (v + 3) & ~std::uint64_t{3}; }

struct Header {
    std::uint32_t magic;
    std::uint32_t totalsize;
    std::uint32_t off_dt_struct;
    std::uint32_t off_dt_strings;
    std::uint32_t off_mem_rsvmap;
    std::uint32_t version;
    std::uint32_t last_comp_version;
    std::uint32_t boot_cpuid_phys;
    std::uint32_t size_dt_strings;
    std::uint32_t size_dt_struct;
};

struct Reservation {
    std::uint64_t address;
    std::uint64_t size;
};

// A node: where its FDT_BEGIN_NODE token sits in the structure block, how
// deep it is (the root is 0) and its name (with any unit address).
struct Node {
    std::uint32_t offset = 0;
    unsigned depth = 0;
    Str name;
};

struct Property {
    Str name;
    Bytes value;
};

// One step through the structure block with NOPs skipped: a node opens
// (depth of that node), a property of the innermost open node (depth of
// that node), or a node closes (depth of the node closing).
struct Item {
    enum class Kind : std::uint8_t { BeginNode, Property, EndNode };
    Kind kind = Kind::BeginNode;
    unsigned depth = 0;
    std::uint32_t offset = 0;  // of the token, in the structure block
    Str name;
    Bytes value;
};

class Blob;
struct ParseResult;
inline ParseResult parse(const std::uint8_t* data, std::size_t size);

namespace detail {

// One token decoded at `offset` of the structure block, every field bounds
// checked: the same code validates a blob and later walks it.
struct Token {
    std::uint32_t kind = 0;
    std::uint32_t next = 0;  // offset of the following token
    Str name;
    Bytes value;
};

struct Blocks {
    const std::uint8_t* structure = nullptr;
    std::uint32_t structure_size = 0;
    const std::uint8_t* strings = nullptr;
    std::uint32_t strings_size = 0;

    // Error::None with `t` filled in, or what is wrong with the token.
    [[nodiscard]] Error decode(std::uint32_t offset, Token& t) const {
        const std::uint64_t at = offset;
        if (at + 4 > structure_size) return Error::MissingEnd;
        t = Token{};
        t.kind = load_be32(structure + at);
        std::uint64_t next = at + 4;
        if (t.kind == kBeginNode) {
            std::uint64_t end = next;
            while (end < structure_size && structure[end] != 0) ++end;
            if (end == structure_size) return Error::UnterminatedName;
            t.name = {reinterpret_cast<const char*>(structure + next),
                      static_cast<std::size_t>(end - next)};
            next = align4(end + 1);
        } else if (t.kind == kProp) {
            if (at + 12 > structure_size) return Error::PropertyOutOfRange;
            const std::uint32_t len = load_be32(structure + at + 4);
            const std::uint32_t nameoff = load_be32(structure + at + 8);
            if (len > structure_size - (at + 12)) return Error::PropertyOutOfRange;
            if (nameoff >= strings_size) return Error::BadNameOffset;
            std::uint64_t end = nameoff;
            while (end < strings_size && strings[end] != 0) ++end;
            if (end == strings_size) return Error::BadNameOffset;
            t.name = {reinterpret_cast<const char*>(strings + nameoff),
                      static_cast<std::size_t>(end - nameoff)};
            t.value = {structure + at + 12, len};
            next = align4(at + 12 + len);
        } else if (t.kind != kEndNode && t.kind != kNop && t.kind != kEnd) {
            return Error::BadToken;
        }
        // structure_size is a multiple of 4, so an aligned end stays inside.
        t.next = static_cast<std::uint32_t>(next);
        return Error::None;
    }
};

// A node name the specification allows (2.2.1 as far as paths depend on
// it): the root has none, every other node has one, and none holds a '/'.
constexpr Error check_node_name(Str name, bool is_root) {
    if (is_root) return name.size == 0 ? Error::None : Error::BadNodeName;
    if (name.size == 0) return Error::BadNodeName;
    for (std::size_t i = 0; i < name.size; ++i) {
        if (name.data[i] == '/' || name.data[i] == '\0') return Error::BadNodeName;
    }
    return Error::None;
}

}  // namespace detail

// The structure block as a stream of Items. Made by Blob; on a validated
// blob every step succeeds.
class Cursor {
public:
    // false at FDT_END (or, on a blob that was not validated, at any error).
    bool next(Item& item) {
        while (!done_) {
            detail::Token t;
            if (blocks_.decode(offset_, t) != Error::None) break;
            const std::uint32_t at = offset_;
            offset_ = t.next;
            if (t.kind == kNop) continue;
            if (t.kind == kEnd) break;
            if (t.kind == kBeginNode) {
                item = {Item::Kind::BeginNode, depth_++, at, t.name, {}};
            } else if (t.kind == kEndNode) {
                if (depth_ == 0) break;
                item = {Item::Kind::EndNode, --depth_, at, {}, {}};
            } else {
                item = {Item::Kind::Property, depth_ == 0 ? 0 : depth_ - 1, at, t.name, t.value};
            }
            return true;
        }
        done_ = true;
        return false;
    }

private:
    friend class Blob;
    Cursor(const detail::Blocks& blocks, std::uint32_t offset, unsigned depth)
        : blocks_(blocks), offset_(offset), depth_(depth) {}

    detail::Blocks blocks_;
    std::uint32_t offset_;
    unsigned depth_;
    bool done_ = false;
};

// The properties of one node, in blob order.
class PropertyCursor {
public:
    bool next(Property& p) {
        Item item;
        if (done_ || !cursor_.next(item) || item.kind != Item::Kind::Property) {
            done_ = true;
            return false;
        }
        p = {item.name, item.value};
        return true;
    }

private:
    friend class Blob;
    explicit PropertyCursor(Cursor c) : cursor_(c) {}
    Cursor cursor_;
    bool done_ = false;
};

// The direct children of one node, in blob order.
class ChildCursor {
public:
    bool next(Node& child) {
        Item item;
        while (!done_ && cursor_.next(item)) {
            if (item.kind == Item::Kind::EndNode && item.depth == parent_depth_) break;
            if (item.kind == Item::Kind::BeginNode && item.depth == parent_depth_ + 1) {
                child = {item.offset, item.depth, item.name};
                return true;
            }
        }
        done_ = true;
        return false;
    }

private:
    friend class Blob;
    ChildCursor(Cursor c, unsigned parent_depth) : cursor_(c), parent_depth_(parent_depth) {}
    Cursor cursor_;
    unsigned parent_depth_;
    bool done_ = false;
};

// Every node in blob order (depth first), remembering the names above the
// current one so it can say its path.
class NodeWalk {
public:
    bool next(Node& node) {
        Item item;
        while (cursor_.next(item)) {
            if (item.kind != Item::Kind::BeginNode || item.depth >= kMaxDepth) continue;
            stack_[item.depth] = item.name;
            depth_ = item.depth;
            node = {item.offset, item.depth, item.name};
            return true;
        }
        return false;
    }

    // Writes the path of the node next() returned last ("/" for the root,
    // "/cpus/cpu@0" below it) into out, NUL-terminated when cap allows, and
    // returns its length: like snprintf, a result >= cap means it was cut.
    std::size_t path(char* out, std::size_t cap) const {
        std::size_t n = 0;
        auto put = [&](char c) {
            if (n + 1 < cap) out[n] = c;
            ++n;
        };
        if (depth_ == 0) put('/');
        for (unsigned d = 1; d <= depth_; ++d) {
            put('/');
            for (std::size_t i = 0; i < stack_[d].size; ++i) put(stack_[d].data[i]);
        }
        if (cap != 0) out[n < cap ? n : cap - 1] = '\0';
        return n;
    }

private:
    friend class Blob;
    explicit NodeWalk(Cursor c) : cursor_(c) {}
    Cursor cursor_;
    Str stack_[kMaxDepth] = {};
    unsigned depth_ = 0;
};

// A blob that passed validation: only parse() makes one, so everything
// reached through it lies inside the buffer. It points into the caller's
// buffer, which must outlive it.
class Blob {
public:
    Blob() = default;

    [[nodiscard]] const Header& header() const { return header_; }
    [[nodiscard]] Bytes bytes() const { return {data_, header_.totalsize}; }

    [[nodiscard]] std::size_t reservation_count() const { return reservations_; }
    [[nodiscard]] Reservation reservation(std::size_t i) const {
        if (i >= reservations_) return {0, 0};
        const std::uint8_t* p = data_ + header_.off_mem_rsvmap + i * kReservationSize;
        return {load_be64(p), load_be64(p + 8)};
    }

    [[nodiscard]] Cursor items() const { return {blocks_, 0, 0}; }
    [[nodiscard]] NodeWalk nodes() const { return NodeWalk(items()); }

    [[nodiscard]] Node root() const {
        Cursor c = items();
        Item item;
        c.next(item);  // validation saw to it that the first item opens the root
        return {item.offset, 0, item.name};
    }

    [[nodiscard]] PropertyCursor properties(const Node& node) const {
        Cursor c(blocks_, node.offset, node.depth);
        Item begin;
        c.next(begin);
        return PropertyCursor(c);
    }

    [[nodiscard]] ChildCursor children(const Node& node) const {
        Cursor c(blocks_, node.offset, node.depth);
        Item begin;
        c.next(begin);
        return ChildCursor(c, node.depth);
    }

    bool find_property(const Node& node, Str name, Property& out) const {
        PropertyCursor props = properties(node);
        Property p;
        while (props.next(p)) {
            if (p.name == name) {
                out = p;
                return true;
            }
        }
        return false;
    }
    bool find_property(const Node& node, const char* name, Property& out) const {
        return find_property(node, Str::of(name), out);
    }

    // The child of `parent` called `name`. Like paths in 2.2.3, a name
    // without '@' also matches a child with a unit address ("memory" finds
    // "memory@40000000"); an exact match wins, otherwise the first in order.
    bool find_child(const Node& parent, Str name, Node& out) const {
        bool has_unit = false;
        for (std::size_t i = 0; i < name.size; ++i) has_unit = has_unit || name.data[i] == '@';
        ChildCursor kids = children(parent);
        Node child;
        bool found = false;
        while (kids.next(child)) {
            if (child.name == name) {
                out = child;
                return true;
            }
            const bool unit_match = !has_unit && child.name.size > name.size &&
                                    child.name.data[name.size] == '@' &&
                                    Str{child.name.data, name.size} == name;
            if (unit_match && !found) {
                out = child;
                found = true;
            }
        }
        return found;
    }

    // A node by absolute path ("/", "/cpus/cpu@0", "/memory"); empty
    // components ("//", a trailing '/') are skipped.
    bool find_node(Str path, Node& out) const {
        if (path.size == 0 || path.data[0] != '/') return false;
        Node at = root();
        std::size_t i = 0;
        while (i < path.size) {
            while (i < path.size && path.data[i] == '/') ++i;
            const std::size_t start = i;
            while (i < path.size && path.data[i] != '/') ++i;
            if (i == start) break;
            if (!find_child(at, {path.data + start, i - start}, at)) return false;
        }
        out = at;
        return true;
    }
    bool find_node(const char* path, Node& out) const { return find_node(Str::of(path), out); }

private:
    friend ParseResult parse(const std::uint8_t* data, std::size_t size);

    const std::uint8_t* data_ = nullptr;
    Header header_{};
    detail::Blocks blocks_{};
    std::size_t reservations_ = 0;
};

struct ParseResult {
    Error error = Error::None;
    std::size_t offset = 0;  // where in the buffer the problem was found
    Blob blob;
};

namespace detail {

constexpr bool overlaps(std::uint64_t a, std::uint64_t a_size, std::uint64_t b,
                        std::uint64_t b_size) {
    return a_size != 0 && b_size != 0 && a < b + b_size && b < a + a_size;
}

}  // namespace detail

// Validates the whole blob in data[0, size): header, block layout, the
// memory reservation block and every token of the structure block. Only
// with Error::None is the Blob usable.
inline ParseResult parse(const std::uint8_t* data, std::size_t size) {
    ParseResult r;
    auto fail = [&r](Error e, std::uint64_t at) {
        r.error = e;
        r.offset = static_cast<std::size_t>(at);
        return r;
    };
    if (data == nullptr || size < 4) return fail(Error::Truncated, 0);
    if (load_be32(data) != kMagic) return fail(Error::BadMagic, kOffMagic);
    if (size < kHeaderSize) return fail(Error::Truncated, size);

    Header h{};
    h.magic = load_be32(data + kOffMagic);
    h.totalsize = load_be32(data + kOffTotalSize);
    h.off_dt_struct = load_be32(data + kOffDtStruct);
    h.off_dt_strings = load_be32(data + kOffDtStrings);
    h.off_mem_rsvmap = load_be32(data + kOffMemRsvmap);
    h.version = load_be32(data + kOffVersion);
    h.last_comp_version = load_be32(data + kOffLastCompVersion);
    h.boot_cpuid_phys = load_be32(data + kOffBootCpuidPhys);
    h.size_dt_strings = load_be32(data + kOffSizeDtStrings);
    h.size_dt_struct = load_be32(data + kOffSizeDtStruct);

    // A later version is readable when it says it is compatible with 17
    // (5.2: last_comp_version); anything before 17 lacks size_dt_struct.
    if (h.version < kVersion) return fail(Error::BadVersion, kOffVersion);
    if (h.last_comp_version > kVersion || h.last_comp_version > h.version) {
        return fail(Error::BadVersion, kOffLastCompVersion);
    }
    if (h.totalsize < kHeaderSize) return fail(Error::BlockOutOfRange, kOffTotalSize);
    if (h.totalsize > size) return fail(Error::Truncated, size);

    // 5.3 and 5.4: 8-byte aligned reservations, 4-byte aligned tokens.
    if (h.off_mem_rsvmap % 8 != 0) return fail(Error::BadAlignment, kOffMemRsvmap);
    if (h.off_dt_struct % 4 != 0) return fail(Error::BadAlignment, kOffDtStruct);
    if (h.size_dt_struct % 4 != 0) return fail(Error::BadAlignment, kOffSizeDtStruct);

    const std::uint64_t total = h.totalsize;
    auto inside = [total](std::uint64_t off, std::uint64_t len) {
        return off >= kHeaderSize && off <= total && len <= total - off;
    };
    if (!inside(h.off_dt_struct, h.size_dt_struct)) {
        return fail(Error::BlockOutOfRange, kOffDtStruct);
    }
    if (!inside(h.off_dt_strings, h.size_dt_strings)) {
        return fail(Error::BlockOutOfRange, kOffDtStrings);
    }
    if (!inside(h.off_mem_rsvmap, kReservationSize)) {
        return fail(Error::BlockOutOfRange, kOffMemRsvmap);
    }
    if (detail::overlaps(h.off_dt_struct, h.size_dt_struct, h.off_dt_strings, h.size_dt_strings)) {
        return fail(Error::BlocksOverlap, kOffDtStrings);
    }

    // The reservation block has no size of its own: it runs to the entry
    // whose address and size are both 0 (5.3).
    std::size_t count = 0;
    std::uint64_t at = h.off_mem_rsvmap;
    for (;;) {
        if (at + kReservationSize > total) return fail(Error::BadReservation, at);
        const std::uint64_t address = load_be64(data + at);
        const std::uint64_t length = load_be64(data + at + 8);
        if (address == 0 && length == 0) break;
        if (length != 0 && address + length - 1 < address) return fail(Error::BadReservation, at);
        ++count;
        at += kReservationSize;
    }
    const std::uint64_t rsv_size = at + kReservationSize - h.off_mem_rsvmap;
    if (detail::overlaps(h.off_mem_rsvmap, rsv_size, h.off_dt_struct, h.size_dt_struct) ||
        detail::overlaps(h.off_mem_rsvmap, rsv_size, h.off_dt_strings, h.size_dt_strings)) {
        return fail(Error::BlocksOverlap, kOffMemRsvmap);
    }

    const detail::Blocks blocks{data + h.off_dt_struct, h.size_dt_struct, data + h.off_dt_strings,
                                h.size_dt_strings};
    // 5.4.2: one root node; each node's properties come before its
    // children; NOPs anywhere; FDT_END last.
    std::uint32_t offset = 0;
    unsigned depth = 0;
    bool had_root = false;
    bool properties_allowed = false;
    for (;;) {
        detail::Token t;
        const std::uint64_t where = std::uint64_t{h.off_dt_struct} + offset;
        const Error e = blocks.decode(offset, t);
        if (e != Error::None) return fail(e, where);
        if (t.kind == kBeginNode) {
            if (had_root && depth == 0) return fail(Error::BadStructure, where);
            if (depth == kMaxDepth) return fail(Error::TooDeep, where);
            const Error name_error = detail::check_node_name(t.name, depth == 0);
            if (name_error != Error::None) return fail(name_error, where + 4);
            ++depth;
            had_root = true;
            properties_allowed = true;
        } else if (t.kind == kEndNode) {
            if (depth == 0) return fail(Error::BadStructure, where);
            --depth;
            properties_allowed = false;
        } else if (t.kind == kProp) {
            if (!properties_allowed) return fail(Error::BadStructure, where);
        } else if (t.kind == kEnd) {
            if (!had_root || depth != 0 || t.next != h.size_dt_struct) {
                return fail(Error::BadStructure, where);
            }
            break;
        }
        offset = t.next;
    }

    r.blob.data_ = data;
    r.blob.header_ = h;
    r.blob.blocks_ = blocks;
    r.blob.reservations_ = count;
    return r;
}

// Builds a blob into a caller's buffer: reservations first, then the nodes
// depth first (begin_node, its properties, its children, end_node), then
// finish(). The first error sticks: every later call returns it, so a
// caller may check only finish().
//
// While building, the header and reservations sit at the start of the
// buffer and the structure block grows after them; the strings block, whose
// place is only known at the end, grows down from the buffer's end, stored
// back to front (its byte k at cap - 1 - k). So a name's offset is final
// the moment it is added, and finish() only has to turn the strings around
// and move them behind the structure block. Names come out in the order of
// first use, as dtc writes them.
class Writer {
public:
    Writer(std::uint8_t* buffer, std::size_t capacity)
        : buf_(buffer),
          // Every offset in a blob is 32 bits: more room than that is unusable.
          cap_(capacity > 0xffffffffu ? 0xffffffffu : static_cast<std::uint32_t>(capacity)),
          end_(kHeaderSize),
          strings_low_(cap_) {
        if (buffer == nullptr || cap_ < kHeaderSize) error_ = Error::NoSpace;
    }

    [[nodiscard]] Error error() const { return error_; }
    [[nodiscard]] bool finished() const { return finished_; }
    void set_boot_cpuid_phys(std::uint32_t id) { boot_cpuid_phys_ = id; }

    Error add_reservation(std::uint64_t address, std::uint64_t size) {
        if (usable() != Error::None) return error_;
        if (struct_start_ != 0) return fail(Error::BadStructure);
        // {0, 0} is the terminator and so cannot be an entry.
        if ((address == 0 && size == 0) || (size != 0 && address + size - 1 < address)) {
            return fail(Error::BadReservation);
        }
        if (!room(kReservationSize)) return fail(Error::NoSpace);
        store_be64(buf_ + end_, address);
        store_be64(buf_ + end_ + 8, size);
        end_ += kReservationSize;
        return Error::None;
    }

    Error begin_node(Str name) {
        if (usable() != Error::None) return error_;
        if (!start_structure()) return error_;
        if (had_root_ && depth_ == 0) return fail(Error::BadStructure);
        if (depth_ == kMaxDepth) return fail(Error::TooDeep);
        const Error e = detail::check_node_name(name, depth_ == 0);
        if (e != Error::None) return fail(e);
        const std::uint64_t need = 4 + align4(name.size + 1);
        if (!room(need)) return fail(Error::NoSpace);
        store_be32(buf_ + end_, kBeginNode);
        for (std::size_t i = 0; i < name.size; ++i)
            buf_[end_ + 4 + i] = static_cast<std::uint8_t>(name.data[i]);
        zero(end_ + 4 + name.size, need - 4 - name.size);
        end_ += static_cast<std::uint32_t>(need);
        ++depth_;
        had_root_ = true;
        properties_allowed_ = true;
        return Error::None;
    }
    Error begin_node(const char* name) { return begin_node(Str::of(name)); }

    Error property(Str name, Bytes value) {
        if (usable() != Error::None) return error_;
        if (!properties_allowed_) return fail(Error::BadStructure);
        for (std::size_t i = 0; i < name.size; ++i) {
            if (name.data[i] == '\0') return fail(Error::BadPropertyName);
        }
        if (value.size > 0xffffffffu) return fail(Error::TooLarge);
        const std::uint64_t need = 12 + align4(value.size);
        std::uint32_t nameoff = 0;
        const bool shared = find_string(name, nameoff);
        const std::uint64_t new_string = shared ? 0 : name.size + 1;
        if (!room(need + new_string)) return fail(Error::NoSpace);
        if (!shared) {
            nameoff = strings_size();
            strings_low_ -= static_cast<std::uint32_t>(new_string);
            for (std::size_t i = 0; i < name.size; ++i) {
                string_byte(nameoff + i) = static_cast<std::uint8_t>(name.data[i]);
            }
            string_byte(nameoff + name.size) = 0;
        }
        store_be32(buf_ + end_, kProp);
        store_be32(buf_ + end_ + 4, static_cast<std::uint32_t>(value.size));
        store_be32(buf_ + end_ + 8, nameoff);
        for (std::size_t i = 0; i < value.size; ++i) buf_[end_ + 12 + i] = value.data[i];
        zero(end_ + 12 + value.size, need - 12 - value.size);
        end_ += static_cast<std::uint32_t>(need);
        return Error::None;
    }
    Error property(const char* name, Bytes value) { return property(Str::of(name), value); }
    Error property_u32(const char* name, std::uint32_t v) {
        std::uint8_t cell[4];
        store_be32(cell, v);
        return property(name, {cell, 4});
    }
    Error property_u64(const char* name, std::uint64_t v) {
        std::uint8_t cells[8];
        store_be64(cells, v);
        return property(name, {cells, 8});
    }
    // A string property: the text and its terminating NUL (2.2.4).
    Error property_string(const char* name, const char* text) {
        const Str s = Str::of(text);
        return property(name, {reinterpret_cast<const std::uint8_t*>(s.data), s.size + 1});
    }

    Error end_node() {
        if (usable() != Error::None) return error_;
        if (depth_ == 0) return fail(Error::BadStructure);
        if (!room(4)) return fail(Error::NoSpace);
        store_be32(buf_ + end_, kEndNode);
        end_ += 4;
        --depth_;
        properties_allowed_ = false;
        return Error::None;
    }

    // Completes the blob: FDT_END, the strings block, the header. On
    // success `total_size` is the blob's length from the buffer's start.
    Error finish(std::size_t& total_size) {
        if (usable() != Error::None) return error_;
        if (!had_root_ || depth_ != 0) return fail(Error::BadStructure);
        if (!room(4)) return fail(Error::NoSpace);
        store_be32(buf_ + end_, kEnd);
        end_ += 4;
        const std::uint32_t strings = strings_size();
        // Turned around in place, then moved down front to back, which is
        // safe however the two ranges overlap.
        for (std::uint32_t i = 0; i < strings / 2; ++i) {
            const std::uint8_t low = buf_[strings_low_ + i];
            buf_[strings_low_ + i] = buf_[cap_ - 1 - i];
            buf_[cap_ - 1 - i] = low;
        }
        for (std::uint32_t i = 0; i < strings; ++i) buf_[end_ + i] = buf_[strings_low_ + i];
        const std::uint32_t total = end_ + strings;
        store_be32(buf_ + kOffMagic, kMagic);
        store_be32(buf_ + kOffTotalSize, total);
        store_be32(buf_ + kOffDtStruct, struct_start_);
        store_be32(buf_ + kOffDtStrings, end_);
        store_be32(buf_ + kOffMemRsvmap, static_cast<std::uint32_t>(kHeaderSize));
        store_be32(buf_ + kOffVersion, kVersion);
        store_be32(buf_ + kOffLastCompVersion, kLastCompVersion);
        store_be32(buf_ + kOffBootCpuidPhys, boot_cpuid_phys_);
        store_be32(buf_ + kOffSizeDtStrings, strings);
        store_be32(buf_ + kOffSizeDtStruct, end_ - struct_start_);
        total_size = total;
        finished_ = true;
        return Error::None;
    }

private:
    Error fail(Error e) {
        error_ = e;
        return e;
    }

    // The sticky error, or BadStructure for anything after finish().
    Error usable() {
        if (error_ == Error::None && finished_) error_ = Error::BadStructure;
        return error_;
    }

    [[nodiscard]] bool room(std::uint64_t bytes) const { return bytes <= strings_low_ - end_; }

    void zero(std::uint64_t from, std::uint64_t count) {
        for (std::uint64_t i = 0; i < count; ++i) buf_[from + i] = 0;
    }

    // The reservation block ends (with its terminator) where the first
    // node begins.
    bool start_structure() {
        if (struct_start_ != 0) return true;
        if (!room(kReservationSize)) {
            fail(Error::NoSpace);
            return false;
        }
        zero(end_, kReservationSize);
        end_ += kReservationSize;
        struct_start_ = end_;
        return true;
    }

    [[nodiscard]] std::uint32_t strings_size() const { return cap_ - strings_low_; }
    // Byte k of the strings block while it is stored back to front.
    std::uint8_t& string_byte(std::uint64_t k) { return buf_[cap_ - 1 - k]; }
    [[nodiscard]] std::uint8_t string_byte(std::uint64_t k) const { return buf_[cap_ - 1 - k]; }

    // A name already in the table, whole or as the tail of a longer one, is
    // shared: 5.5 makes nameoff just an offset to a NUL-terminated string.
    bool find_string(Str name, std::uint32_t& nameoff) const {
        const std::uint64_t len = name.size + 1;
        const std::uint64_t size = strings_size();
        for (std::uint64_t at = 0; at + len <= size; ++at) {
            if (string_byte(at + name.size) != 0) continue;
            bool same = true;
            for (std::size_t i = 0; i < name.size && same; ++i) {
                same = string_byte(at + i) == static_cast<std::uint8_t>(name.data[i]);
            }
            if (same) {
                nameoff = static_cast<std::uint32_t>(at);
                return true;
            }
        }
        return false;
    }

    std::uint8_t* buf_;
    std::uint32_t cap_;
    std::uint32_t end_;          // end of what is written from the front
    std::uint32_t strings_low_;  // lowest byte of the strings, which grow down from cap_
    std::uint32_t struct_start_ = 0;
    std::uint32_t boot_cpuid_phys_ = 0;
    unsigned depth_ = 0;
    bool had_root_ = false;
    bool properties_allowed_ = false;
    bool finished_ = false;
    Error error_ = Error::None;
};

}  // namespace armvcpu::fdt
