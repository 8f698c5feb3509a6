// The devicetree reader on arbitrary bytes, and the writer on everything the
// reader accepts: a valid blob is walked every way the reader offers (the
// token stream, node by node with paths, each node's properties and
// children, lookups by path and name), all of which must agree; then it is
// written again and must read back the same, and writing that once more
// must give the very same bytes.
//
// Seeds (corpus/fuzz_fdt/): qemu_virt_gicv3 is QEMU 7.2's own tree from
//   qemu-system-aarch64 -machine virt,virtualization=on,gic-version=3,dumpdtb=virt.dtb
//     -cpu cortex-a57 -smp 2 -m 512 -nographic
// cut to its used bytes (QEMU pads the blob to 1 MiB; totalsize says so);
// golden is the unit tests' hand-built blob; nops_reservations adds NOP
// tokens, two reservations and a shared property name.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "armvcpu/fdt.hpp"
#include "fuzz_input.hpp"

using namespace armvcpu::fdt;

namespace {

struct Record {
    Item::Kind kind;
    unsigned depth;
    std::string name;
    std::string value;

    bool operator==(const Record&) const = default;
};

std::string str(Str s) { return {s.data, s.size}; }
std::string str(Bytes b) { return {reinterpret_cast<const char*>(b.data), b.size}; }

std::vector<Record> records(const Blob& blob) {
    std::vector<Record> out;
    Cursor c = blob.items();
    Item item;
    while (c.next(item)) out.push_back({item.kind, item.depth, str(item.name), str(item.value)});
    return out;
}

std::vector<Reservation> reservations(const Blob& blob) {
    std::vector<Reservation> out;
    for (std::size_t i = 0; i < blob.reservation_count(); ++i) out.push_back(blob.reservation(i));
    return out;
}

// Every way of walking the blob agrees with its token stream.
void check_walks(const Blob& blob, const std::vector<Record>& items) {
    // Per node (in order): its properties and its number of children.
    std::vector<std::vector<Record>> props;
    std::vector<std::size_t> child_count;
    std::vector<std::size_t> open;  // indices of the open nodes
    // Siblings with one name make a path ambiguous (2.2.3 wants paths
    // unique; the reader does not pay for checking it).
    std::vector<std::set<std::string>> child_names;
    bool unique_paths = true;
    for (const Record& r : items) {
        if (r.kind == Item::Kind::BeginNode) {
            if (!open.empty()) {
                ++child_count[open.back()];
                unique_paths = child_names[open.back()].insert(r.name).second && unique_paths;
            }
            open.push_back(props.size());
            props.emplace_back();
            child_count.push_back(0);
            child_names.emplace_back();
        } else if (r.kind == Item::Kind::Property) {
            ARMVCPU_FUZZ_CHECK(!open.empty() && r.depth == open.size() - 1);
            props[open.back()].push_back(r);
        } else {
            ARMVCPU_FUZZ_CHECK(!open.empty() && r.depth == open.size() - 1);
            open.pop_back();
        }
    }
    ARMVCPU_FUZZ_CHECK(open.empty() && !props.empty());

    NodeWalk walk = blob.nodes();
    Node node;
    std::size_t index = 0;
    while (walk.next(node)) {
        ARMVCPU_FUZZ_CHECK(index < props.size());
        PropertyCursor pc = blob.properties(node);
        Property p;
        std::size_t k = 0;
        while (pc.next(p)) {
            ARMVCPU_FUZZ_CHECK(k < props[index].size());
            ARMVCPU_FUZZ_CHECK(str(p.name) == props[index][k].name);
            ARMVCPU_FUZZ_CHECK(str(p.value) == props[index][k].value);
            Property found;
            ARMVCPU_FUZZ_CHECK(blob.find_property(node, p.name, found));
            ARMVCPU_FUZZ_CHECK(str(found.name) == str(p.name));
            ++k;
        }
        ARMVCPU_FUZZ_CHECK(k == props[index].size());

        ChildCursor cc = blob.children(node);
        Node child;
        std::size_t children = 0;
        while (cc.next(child)) {
            ARMVCPU_FUZZ_CHECK(child.depth == node.depth + 1);
            ++children;
        }
        ARMVCPU_FUZZ_CHECK(children == child_count[index]);

        // Its path leads back to it. Bounded: each lookup walks the tree
        // again.
        if (unique_paths && index < 256) {
            const std::size_t len = walk.path(nullptr, 0);
            std::string path(len + 1, '\0');
            ARMVCPU_FUZZ_CHECK(walk.path(path.data(), path.size()) == len);
            path.resize(len);
            Node found;
            ARMVCPU_FUZZ_CHECK(blob.find_node(path.c_str(), found));
            ARMVCPU_FUZZ_CHECK(found.offset == node.offset && found.depth == node.depth);
        }
        ++index;
    }
    ARMVCPU_FUZZ_CHECK(index == props.size());
}

// Writes `blob` again into a buffer of `capacity` bytes.
Error rewrite(const Blob& blob, std::vector<std::uint8_t>& out, std::size_t capacity,
              std::size_t& size) {
    out.assign(capacity, 0);
    Writer w(out.data(), capacity);
    w.set_boot_cpuid_phys(blob.header().boot_cpuid_phys);
    for (std::size_t i = 0; i < blob.reservation_count(); ++i) {
        w.add_reservation(blob.reservation(i).address, blob.reservation(i).size);
    }
    Cursor c = blob.items();
    Item item;
    while (c.next(item)) {
        if (item.kind == Item::Kind::BeginNode) {
            w.begin_node(item.name);
        } else if (item.kind == Item::Kind::Property) {
            w.property(item.name, item.value);
        } else {
            w.end_node();
        }
    }
    const Error e = w.finish(size);
    if (e == Error::None) out.resize(size);
    return e;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const ParseResult a = parse(data, size);
    ARMVCPU_FUZZ_CHECK(error_name(a.error) != nullptr);
    if (a.error != Error::None) {
        ARMVCPU_FUZZ_CHECK(a.offset <= size);
        return 0;
    }
    ARMVCPU_FUZZ_CHECK(a.blob.header().totalsize <= size);
    const std::vector<Record> items = records(a.blob);
    check_walks(a.blob, items);

    // Room for the rewrite: no NOPs, so a structure block no larger than
    // this one, and each distinct name once.
    std::map<std::string, int> names;
    for (const Record& r : items) {
        if (r.kind == Item::Kind::Property) names[r.name] = 0;
    }
    std::size_t bound = kHeaderSize + kReservationSize * (a.blob.reservation_count() + 1) +
                        a.blob.header().size_dt_struct;
    for (const auto& [name, unused] : names) bound += name.size() + 1;

    std::vector<std::uint8_t> b;
    std::size_t b_size = 0;
    ARMVCPU_FUZZ_CHECK(rewrite(a.blob, b, bound, b_size) == Error::None);
    const ParseResult rb = parse(b.data(), b.size());
    ARMVCPU_FUZZ_CHECK(rb.error == Error::None);
    ARMVCPU_FUZZ_CHECK(records(rb.blob) == items);
    const auto ra = reservations(a.blob);
    const auto rr = reservations(rb.blob);
    ARMVCPU_FUZZ_CHECK(ra.size() == rr.size());
    for (std::size_t i = 0; i < ra.size(); ++i) {
        ARMVCPU_FUZZ_CHECK(ra[i].address == rr[i].address && ra[i].size == rr[i].size);
    }
    ARMVCPU_FUZZ_CHECK(rb.blob.header().boot_cpuid_phys == a.blob.header().boot_cpuid_phys);
    ARMVCPU_FUZZ_CHECK(rb.blob.header().version == kVersion);

    // The writer's output is canonical: writing it again changes nothing,
    // and one byte less room is not enough.
    std::vector<std::uint8_t> c;
    std::size_t c_size = 0;
    ARMVCPU_FUZZ_CHECK(rewrite(rb.blob, c, b.size(), c_size) == Error::None);
    ARMVCPU_FUZZ_CHECK(c == b);
    ARMVCPU_FUZZ_CHECK(rewrite(rb.blob, c, b.size() - 1, c_size) == Error::NoSpace);
    return 0;
}
