// The host end of the shared-memory exit mailbox (armvcpu/mailbox.hpp) over
// a Python buffer such as an mmap of guest RAM.
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <optional>
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

// How the host waits for the firmware's next exit: spin for a short window
// (exits that come in bursts arrive within microseconds of the last answer,
// and a sleeping host would add a wake-up to each), then sleep in doubling
// steps up to a cap, so that a guest running for seconds without an exit (a
// Linux boot) costs the host about one wake-up per cap, not a spinning core.
// The firmware cannot wake a sleeping host (it only stores into shared RAM),
// so the cap bounds the latency an exit sees after a long quiet spell.
struct WaitPolicy {
    std::chrono::nanoseconds spin{std::chrono::microseconds(50)};
    std::chrono::nanoseconds first_sleep{std::chrono::microseconds(10)};
    std::chrono::nanoseconds max_sleep{std::chrono::microseconds(1000)};
};

WaitPolicy wait_policy;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// One wait: call pause() between looks at the mailbox; false once the
// timeout has passed.
class Backoff {
public:
    explicit Backoff(double timeout)
        : start_(std::chrono::steady_clock::now()),
          deadline_(start_ + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::duration<double>(timeout))) {}

    bool pause() {
        if (step_.count() == 0) {
            // Spinning: the clock is read every 64 looks, not at each one.
            if ((++looks_ & 0x3f) != 0) {
                cpu_relax();
                return true;
            }
            const auto now = std::chrono::steady_clock::now();
            if (now >= deadline_) return false;
            if (now - start_ < wait_policy.spin) {
                cpu_relax();
                return true;
            }
            step_ = wait_policy.first_sleep;
        } else {
            step_ = std::min(step_ * 2, wait_policy.max_sleep);
        }
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline_) return false;
        std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(step_, deadline_ - now));
        return true;
    }

private:
    std::chrono::steady_clock::time_point start_;
    std::chrono::steady_clock::time_point deadline_;
    std::chrono::nanoseconds step_{0};
    unsigned looks_ = 0;
};

}  // namespace

void bind_mailbox(py::module_& m) {
    m.def(
        "mailbox_wait",
        [](const py::buffer& buffer, std::size_t offset, std::uint64_t last, double timeout) {
            const std::uint64_t* word = word_at(buffer, offset, false);
            py::gil_scoped_release release;
            for (Backoff backoff(timeout);;) {
                const std::uint64_t now = mailbox::load_acquire(word);
                if (now != last) return now;
                if (!backoff.pause()) return last;
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
            for (Backoff backoff(timeout);;) {
                for (std::size_t i = 0; i < words.size(); ++i) {
                    const std::uint64_t now = mailbox::load_acquire(words[i]);
                    if (now != lasts[i]) {
                        py::gil_scoped_acquire acquire;
                        return py::make_tuple(i, now);
                    }
                }
                if (!backoff.pause()) {
                    py::gil_scoped_acquire acquire;
                    return py::none();
                }
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
                    for (Backoff backoff(timeout); hit == slots.size();) {
                        for (std::size_t i = 0; i < slots.size(); ++i) {
                            seq = mailbox::load_acquire(&slots[i]->seq);
                            if (seq != lasts[i]) {
                                hit = i;
                                break;
                            }
                        }
                        if (hit != slots.size() || !backoff.pause()) break;
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
        "mailbox_wait_policy",
        [](std::optional<double> spin_us, std::optional<double> first_sleep_us,
           std::optional<double> max_sleep_us) {
            const auto ns = [](double us) {
                if (!(us >= 0.0 && us <= 1e6)) {
                    throw py::value_error("wait policy times are 0 to 1e6 us, not " +
                                          std::to_string(us));
                }
                return std::chrono::nanoseconds(static_cast<std::int64_t>(us * 1000.0));
            };
            WaitPolicy next = wait_policy;
            if (spin_us) next.spin = ns(*spin_us);
            if (first_sleep_us) next.first_sleep = ns(*first_sleep_us);
            if (max_sleep_us) next.max_sleep = ns(*max_sleep_us);
            if (next.first_sleep.count() == 0 || next.first_sleep > next.max_sleep) {
                throw py::value_error("the first sleep must be above 0 and at most the cap");
            }
            wait_policy = next;
            const auto us = [](std::chrono::nanoseconds t) {
                return static_cast<double>(t.count()) / 1000.0;
            };
            return py::make_tuple(us(wait_policy.spin), us(wait_policy.first_sleep),
                                  us(wait_policy.max_sleep));
        },
        py::arg("spin_us") = py::none(), py::arg("first_sleep_us") = py::none(),
        py::arg("max_sleep_us") = py::none(),
        "How the mailbox waits (every session of the process): spin spin_us, then sleep "
        "first_sleep_us, doubling up to max_sleep_us. Sets what is given; returns "
        "(spin_us, first_sleep_us, max_sleep_us) as they now are.");
    m.def(
        "mailbox_store",
        [](const py::buffer& buffer, std::size_t offset, std::uint64_t value) {
            mailbox::store_release(word_at(buffer, offset, true), value);
        },
        py::arg("buffer"), py::arg("offset"), py::arg("value"),
        "Store a 64-bit word with release ordering (after every earlier write).");
}

}  // namespace armvcpu::py_bind
