// The host end of the shared-memory exit mailbox (armvcpu/mailbox.hpp) over
// a Python buffer such as an mmap of guest RAM.
#include <pybind11/stl.h>

#include <chrono>
#include <thread>
#include <vector>

#include "armvcpu/mailbox.hpp"
#include "bindings.hpp"

namespace armvcpu::py_bind {

namespace {

std::uint64_t* word_at(const py::buffer& buffer, std::size_t offset, bool writable) {
    const py::buffer_info info = buffer.request(writable);
    const auto size = static_cast<std::size_t>(info.size * info.itemsize);
    if (offset % 8 != 0 || offset + 8 > size) {
        throw py::value_error("mailbox word at offset " + std::to_string(offset) +
                              " is unaligned or outside the buffer of " + std::to_string(size) +
                              " bytes");
    }
    return reinterpret_cast<std::uint64_t*>(static_cast<char*>(info.ptr) + offset);
}

}  // namespace

void bind_mailbox(py::module_& m) {
    m.def(
        "mailbox_wait",
        [](const py::buffer& buffer, std::size_t offset, std::uint64_t last, double timeout) {
            const std::uint64_t* word = word_at(buffer, offset, false);
            py::gil_scoped_release release;
            const auto deadline =
                std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
            // Spin first (an exit usually follows within microseconds), then
            // back off so a long-running guest does not cost a host core.
            for (unsigned spins = 0;; ++spins) {
                const std::uint64_t now = mailbox::load_acquire(word);
                if (now != last) return now;
                if ((spins & 0x3ff) == 0 && std::chrono::steady_clock::now() >= deadline) {
                    return last;
                }
                if (spins > 200'000) std::this_thread::sleep_for(std::chrono::microseconds(50));
            }
        },
        py::arg("buffer"), py::arg("offset"), py::arg("last"), py::arg("timeout"),
        "Wait until the 64-bit word at offset differs from last (acquire); returns it, or "
        "last when timeout seconds pass first.");
    m.def(
        "mailbox_wait_any",
        [](const py::buffer& buffer, const std::vector<std::size_t>& offsets,
           const std::vector<std::uint64_t>& lasts, double timeout) -> py::object {
            if (offsets.size() != lasts.size() || offsets.empty()) {
                throw py::value_error("offsets and lasts must be non-empty and of equal length");
            }
            std::vector<const std::uint64_t*> words;
            for (std::size_t off : offsets) words.push_back(word_at(buffer, off, false));
            py::gil_scoped_release release;
            const auto deadline =
                std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
            for (unsigned spins = 0;; ++spins) {
                for (std::size_t i = 0; i < words.size(); ++i) {
                    const std::uint64_t now = mailbox::load_acquire(words[i]);
                    if (now != lasts[i]) {
                        py::gil_scoped_acquire acquire;
                        return py::make_tuple(i, now);
                    }
                }
                if ((spins & 0x3ff) == 0 && std::chrono::steady_clock::now() >= deadline) {
                    py::gil_scoped_acquire acquire;
                    return py::none();
                }
                if (spins > 200'000) std::this_thread::sleep_for(std::chrono::microseconds(50));
            }
        },
        py::arg("buffer"), py::arg("offsets"), py::arg("lasts"), py::arg("timeout"),
        "Wait until any word differs from its last value: (index, value), or None on timeout.");
    m.def(
        "mailbox_serve_hypercalls",
        [](const py::buffer& buffer, const std::vector<std::size_t>& records,
           std::vector<std::uint64_t> lasts, const py::function& handler,
           double timeout) -> py::tuple {
            if (records.size() != lasts.size() || records.empty()) {
                throw py::value_error("records and lasts must be non-empty and of equal length");
            }
            std::vector<ExitRecord*> slots;
            for (std::size_t off : records) {
                word_at(buffer, off + sizeof(ExitRecord) - 8, true);  // bounds check
                slots.push_back(reinterpret_cast<ExitRecord*>(
                    static_cast<char*>(buffer.request(true).ptr) + off));
            }
            std::uint64_t served = 0;
            for (;;) {
                std::size_t hit = slots.size();
                std::uint64_t seq = 0;
                {
                    py::gil_scoped_release release;
                    const auto deadline =
                        std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
                    for (unsigned spins = 0; hit == slots.size(); ++spins) {
                        for (std::size_t i = 0; i < slots.size(); ++i) {
                            seq = mailbox::load_acquire(&slots[i]->seq);
                            if (seq != lasts[i]) {
                                hit = i;
                                break;
                            }
                        }
                        if (hit != slots.size()) break;
                        if ((spins & 0x3ff) == 0 && std::chrono::steady_clock::now() >= deadline) {
                            break;
                        }
                        if (spins > 200'000) {
                            std::this_thread::sleep_for(std::chrono::microseconds(50));
                        }
                    }
                }
                if (hit == slots.size()) return py::make_tuple(served, py::none(), 0, lasts);
                ExitRecord& r = *slots[hit];
                if (r.reason.kind != ExitKind::Hypercall) {
                    return py::make_tuple(served, hit, seq, lasts);
                }
                const auto& h = r.reason.hypercall;
                const py::object value =
                    handler(h.nr, h.args[0], h.args[1], h.args[2], h.args[3], h.args[4], h.args[5]);
                if (value.is_none()) return py::make_tuple(served, hit, seq, lasts);
                if (!PyLong_Check(value.ptr())) {
                    throw py::type_error("a hypercall handler returns an int (x0) or None, not " +
                                         std::string(py::str(py::type::handle_of(value))));
                }
                // x0 as the guest sees it: the value modulo 2^64 (-1 is all ones).
                const unsigned long long x0 = PyLong_AsUnsignedLongLongMask(value.ptr());
                if (PyErr_Occurred() != nullptr) throw py::error_already_set();
                mailbox::answer_hypercall(r, x0);
                lasts[hit] = seq;
                ++served;
            }
        },
        py::arg("buffer"), py::arg("records"), py::arg("lasts"), py::arg("handler"),
        py::arg("timeout"),
        "Answer hypercall exits in place with handler(nr, x1..x6) -> x0 until an exit that is "
        "not a hypercall, one the handler returns None for, or timeout seconds without an "
        "exit: returns (served, slot, seq, lasts) for that exit (slot None on timeout) and the "
        "seq each slot was last answered at.");
    m.def(
        "mailbox_store",
        [](const py::buffer& buffer, std::size_t offset, std::uint64_t value) {
            mailbox::store_release(word_at(buffer, offset, true), value);
        },
        py::arg("buffer"), py::arg("offset"), py::arg("value"),
        "Store a 64-bit word with release ordering (after every earlier write).");
}

}  // namespace armvcpu::py_bind
