// The shared-memory side of the exit record (host_interface.hpp): the two
// ordered accesses both ends make. Used by the firmware (publishing an exit,
// waiting for the answer) and by the host (waiting for an exit, answering).
#pragma once

#include <cstdint>

#include "armvcpu/host_interface.hpp"

namespace armvcpu::mailbox {

// Everything written before this store is visible to whoever loads `value`
// with load_acquire (STLR on AArch64).
inline void store_release(std::uint64_t* word, std::uint64_t value) {
    __atomic_store_n(word, value, __ATOMIC_RELEASE);
}

// Later reads see everything the releasing side wrote before its store
// (LDAR on AArch64).
inline std::uint64_t load_acquire(const std::uint64_t* word) {
    return __atomic_load_n(word, __ATOMIC_ACQUIRE);
}

// The host's answer to a hypercall exit, written into the shared record: the
// guest's x0 becomes `value`, the action Resume, and the ack is published
// last so the firmware sees the whole answer. The firmware copies the frame
// back only for Resume, so nothing else needs writing.
inline void answer_hypercall(ExitRecord& record, std::uint64_t value) {
    record.frame.set_gpr(0, value);
    record.action = HostAction::Resume;
    store_release(&record.ack, record.seq);
}

}  // namespace armvcpu::mailbox
