// The host end of the shared-memory exit mailbox (armvcpu/mailbox.hpp) over
// a Python buffer such as an mmap of guest RAM.
#include <poll.h>
#include <pybind11/stl.h>
#include <sys/socket.h>

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
// and a sleeping host would add a wake-up to each), then sleep. With a
// doorbell the host sleeps in poll() until the firmware rings it (about
// 10-20 us to wake, no CPU while the guest runs); without one it sleeps in
// doubling steps up to a cap, so that a guest running for seconds without an
// exit costs the host about one wake-up per cap, and an exit after a quiet
// spell waits for the end of the current step. The cap grows with the quiet
// spell (kQuietShare of it, up to kQuietMaxSleep): a Linux boot makes no host
// exit for seconds, and 1 ms steps cost it ~1000 wake-ups a second (3-6 % of
// the boot's CPU), while an exit after a long spell waits at most a
// sixteenth longer than the spell itself.
struct WaitPolicy {
    std::chrono::nanoseconds spin{std::chrono::microseconds(50)};
    std::chrono::nanoseconds first_sleep{std::chrono::microseconds(10)};
    std::chrono::nanoseconds max_sleep{std::chrono::microseconds(1000)};
};

WaitPolicy wait_policy;

constexpr int kQuietShare = 16;
constexpr std::chrono::nanoseconds kQuietMaxSleep{std::chrono::milliseconds(10)};

// Per waiting thread: when its quiet spell began (the start of the first wait
// since its last exit), and whether its last wait found an exit.
thread_local std::chrono::steady_clock::time_point t_quiet_since{};
thread_local bool t_last_found = true;

// The longest single poll() on a doorbell: a bound on a lost ring (there
// should be none) and on how late a timeout is noticed.
constexpr int kMaxPollMs = 100;

// The firmware's wake-up for a sleeping host (host_interface.hpp,
// kSymHostSleeping): a socket QEMU writes a byte to, and the shared word
// that tells the firmware to ring it. fd < 0: no doorbell.
struct Doorbell {
    int fd = -1;
    std::uint64_t* sleeping = nullptr;
};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// Sleeps until the doorbell rings or `until`; false when the socket has
// closed (QEMU is gone), so the caller falls back to timed sleeps.
bool sleep_on_doorbell(const Doorbell& bell, std::chrono::steady_clock::time_point until) {
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    pollfd p{bell.fd, POLLIN, 0};
    const int n =
        ::poll(&p, 1, static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, kMaxPollMs)));
    if (n <= 0) return true;  // timed out, or a signal: the caller looks again
    if ((p.revents & (POLLERR | POLLNVAL)) != 0) return false;
    char drain[256];
    for (;;) {
        const ssize_t got = ::recv(bell.fd, drain, sizeof drain, MSG_DONTWAIT);
        if (got == 0) return false;  // end of file: QEMU closed it
        if (got < 0) return true;    // drained (EAGAIN)
    }
}

// Looks at the mailbox with ready() until it returns true (then true) or
// timeout seconds pass (then false).
template <class Ready>
bool wait_until_found(const Ready& ready, double timeout, const Doorbell& bell) {
    using clock = std::chrono::steady_clock;
    if (ready()) return true;  // already there: no clock read
    const auto start = clock::now();
    const auto deadline =
        start + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(timeout));
    if (t_last_found) t_quiet_since = start;
    // Spin; the clock is read every 64 looks, not at each one.
    for (unsigned looks = 1;; ++looks) {
        if (ready()) return true;
        if ((looks & 0x3f) == 0) {
            const auto now = clock::now();
            if (now >= deadline) return false;
            if (now - start >= wait_policy.spin) break;
        }
        cpu_relax();
    }
    if (bell.fd >= 0) {
        for (bool alive = true; alive;) {
            // Say so, then look once more: the firmware publishes seq and
            // then reads `sleeping` (with a barrier between), so either this
            // look finds its exit or it rings.
            __atomic_store_n(bell.sleeping, 1, __ATOMIC_SEQ_CST);
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            const bool found = ready();
            const auto now = clock::now();
            if (!found && now < deadline) alive = sleep_on_doorbell(bell, deadline);
            __atomic_store_n(bell.sleeping, 0, __ATOMIC_RELEASE);
            if (found || ready()) return true;
            if (clock::now() >= deadline) return false;
        }
    }
    for (clock::duration step = wait_policy.first_sleep;;) {
        if (ready()) return true;
        const auto now = clock::now();
        if (now >= deadline) return false;
        std::this_thread::sleep_for(std::min<clock::duration>(step, deadline - now));
        const clock::duration cap = std::max<clock::duration>(
            wait_policy.max_sleep,
            std::min<clock::duration>((now - t_quiet_since) / kQuietShare, kQuietMaxSleep));
        step = std::min(step * 2, cap);
    }
}

// wait_until_found, keeping the thread's quiet spell: it ends when an exit
// is found, and goes on across waits that time out (the host's slices).
template <class Ready>
bool wait_until(const Ready& ready, double timeout, const Doorbell& bell) {
    t_last_found = wait_until_found(ready, timeout, bell);
    return t_last_found;
}

Doorbell doorbell_of(const py::buffer& buffer, int fd, std::optional<std::size_t> sleeping) {
    if (fd < 0) return {};
    if (!sleeping) throw py::value_error("a doorbell fd needs the offset of the sleeping word");
    return {fd, word_at(buffer, *sleeping, true)};
}

}  // namespace

std::size_t find_exit(ExitRecord* const* records, const std::uint64_t* lasts, std::size_t count,
                      std::uint64_t& seq) {
    for (std::size_t i = 0; i < count; ++i) {
        seq = mailbox::load_acquire(&records[i]->seq);
        if (seq != lasts[i]) return i;
    }
    return count;
}

std::size_t wait_for_exit(ExitRecord* const* records, const std::uint64_t* lasts, std::size_t count,
                          double timeout, int doorbell_fd, std::uint64_t* sleeping,
                          std::uint64_t& seq) {
    const Doorbell bell{doorbell_fd, sleeping};
    std::size_t hit = count;
    wait_until([&] { return (hit = find_exit(records, lasts, count, seq)) != count; }, timeout,
               bell);
    return hit;
}

void bind_mailbox(py::module_& m) {
    m.def(
        "mailbox_wait",
        [](const py::buffer& buffer, std::size_t offset, std::uint64_t last, double timeout,
           int doorbell_fd, std::optional<std::size_t> sleeping_offset) {
            const std::uint64_t* word = word_at(buffer, offset, false);
            const Doorbell bell = doorbell_of(buffer, doorbell_fd, sleeping_offset);
            py::gil_scoped_release release;
            std::uint64_t now = last;
            wait_until([&] { return (now = mailbox::load_acquire(word)) != last; }, timeout, bell);
            return now;
        },
        py::arg("buffer"), py::arg("offset"), py::arg("last"), py::arg("timeout"),
        py::arg("doorbell_fd") = -1, py::arg("sleeping_offset") = py::none(),
        "Wait until the 64-bit word at offset differs from last (acquire); returns it, or "
        "last when timeout seconds pass first. With doorbell_fd, sleep in poll() on it "
        "once the spin is over, with the word at sleeping_offset set to 1 meanwhile.");
    m.def(
        "mailbox_wait_any",
        [](const py::buffer& buffer, const std::vector<std::size_t>& offsets,
           const std::vector<std::uint64_t>& lasts, double timeout, int doorbell_fd,
           std::optional<std::size_t> sleeping_offset) -> py::object {
            if (offsets.size() != lasts.size() || offsets.empty()) {
                throw py::value_error("offsets and lasts must be non-empty and of equal length");
            }
            std::vector<const std::uint64_t*> words;
            for (std::size_t off : offsets) words.push_back(word_at(buffer, off, false));
            const Doorbell bell = doorbell_of(buffer, doorbell_fd, sleeping_offset);
            std::size_t hit = words.size();
            std::uint64_t now = 0;
            {
                py::gil_scoped_release release;
                wait_until(
                    [&] {
                        for (std::size_t i = 0; i < words.size(); ++i) {
                            now = mailbox::load_acquire(words[i]);
                            if (now != lasts[i]) {
                                hit = i;
                                return true;
                            }
                        }
                        return false;
                    },
                    timeout, bell);
            }
            if (hit == words.size()) return py::none();
            return py::make_tuple(hit, now);
        },
        py::arg("buffer"), py::arg("offsets"), py::arg("lasts"), py::arg("timeout"),
        py::arg("doorbell_fd") = -1, py::arg("sleeping_offset") = py::none(),
        "Wait until any word differs from its last value: (index, value), or None on timeout "
        "(the doorbell as for mailbox_wait).");
    m.def(
        "mailbox_serve_hypercalls",
        [](const py::buffer& buffer, const std::vector<std::size_t>& records,
           std::vector<std::uint64_t> lasts, const py::function& handler, double timeout,
           int doorbell_fd, std::optional<std::size_t> sleeping_offset) -> py::tuple {
            if (records.size() != lasts.size() || records.empty()) {
                throw py::value_error("records and lasts must be non-empty and of equal length");
            }
            std::vector<ExitRecord*> slots;
            for (std::size_t off : records) {
                word_at(buffer, off + sizeof(ExitRecord) - 8, true);  // bounds check
                slots.push_back(reinterpret_cast<ExitRecord*>(
                    static_cast<char*>(buffer.request(true).ptr) + off));
            }
            const Doorbell bell = doorbell_of(buffer, doorbell_fd, sleeping_offset);
            std::uint64_t served = 0;
            for (;;) {
                std::size_t hit = slots.size();
                std::uint64_t seq = 0;
                {
                    py::gil_scoped_release release;
                    wait_until(
                        [&] {
                            for (std::size_t i = 0; i < slots.size(); ++i) {
                                seq = mailbox::load_acquire(&slots[i]->seq);
                                if (seq != lasts[i]) {
                                    hit = i;
                                    return true;
                                }
                            }
                            return false;
                        },
                        timeout, bell);
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
        py::arg("timeout"), py::arg("doorbell_fd") = -1, py::arg("sleeping_offset") = py::none(),
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
        "first_sleep_us, doubling up to max_sleep_us (after a quiet spell with no exit, up to "
        "a sixteenth of the spell, at most 10 ms). Sets what is given; returns "
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
