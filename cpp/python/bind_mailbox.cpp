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
        "mailbox_store",
        [](const py::buffer& buffer, std::size_t offset, std::uint64_t value) {
            mailbox::store_release(word_at(buffer, offset, true), value);
        },
        py::arg("buffer"), py::arg("offset"), py::arg("value"),
        "Store a 64-bit word with release ordering (after every earlier write).");
}

}  // namespace armvcpu::py_bind
