// A guest's write to GICD/GICR ICPENDR, ISACTIVER or ICACTIVER acting on an
// interrupt that sits in a list register, and the record of such writes kept
// for a vCPU whose list registers another CPU cannot reach.
//
// The distributor model (vgic_dist.hpp) holds an interrupt's state only until
// the hypervisor hands it to a list register; from then on the list register
// holds it, and only the CPU running that vCPU can read or write it. A write
// on vCPU A to vCPU B's redistributor, or to an SPI that B holds, is kept in
// B's LrWriteLog; B applies it to its list registers before it enters the
// guest again, and reads in between see B's list registers as they will be
// (IHI 0069H 12.9.x: a write to ICPENDR/ISACTIVER/ICACTIVER changes the
// interrupt's state at once, whoever holds it).
#pragma once

#include <cstdint>

#include "armvcpu/vgic.hpp"
#include "armvcpu/vgic_dist.hpp"
#include "armvcpu/vgic_icv.hpp"

namespace armvcpu::vgic {

// What one write does to one list register.
struct LrWriteResult {
    std::uint64_t lr = 0;
    // A hardware-linked interrupt left its active state: the physical one is
    // deactivated, so a level line still asserted signals it again (IHI
    // 0069H 4.1.2: a level interrupt's pending state follows its line).
    bool deactivate_physical = false;
    // The list register took the write's active state: the model forgets
    // its own active bit (it would otherwise be active twice).
    bool took_active = false;
};

// Applies a clear-pending, set-active and/or clear-active write to the
// interrupt list register `lr` holds. Clearing pending or active leaves it
// invalid or in the other state. A hardware-linked interrupt's pending state
// is its line's: clearing its active state also drops the list register's
// pending bit (the physical interrupt signals again if the line is still
// asserted), and set-active is not applied to it (the model keeps it).
constexpr LrWriteResult apply_lr_write(std::uint64_t lr, bool clear_pending, bool set_active,
                                       bool clear_active) {
    LrWriteResult r{lr, false, false};
    if (lr_state(lr) == LrState::Invalid) return r;
    const bool hw = (lr & kLrHwBit) != 0;
    if (clear_pending && (r.lr & kLrPendingBit) != 0) {
        r.lr &= ~kLrPendingBit;
        r.deactivate_physical = hw && (r.lr & kLrActiveBit) == 0;
    }
    if (clear_active && (r.lr & kLrActiveBit) != 0) {
        r.lr &= ~kLrActiveBit;
        r.deactivate_physical = hw;
        if (hw) r.lr &= ~kLrPendingBit;
    }
    if (set_active && !hw && lr_state(r.lr) == LrState::Pending) {
        r.lr |= kLrActiveBit;
        r.took_active = true;
    }
    return r;
}

// The writes to a vCPU's list-register-held interrupts that wait for its
// CPU: per bank (0: its private INTIDs), the INTIDs written with 1 to
// ICPENDR, ISACTIVER and ICACTIVER since it last applied them. Per INTID the
// later write wins: set-active and clear-active cancel each other, and a
// set-pending cancels an earlier clear-pending (the interrupt is pending
// again, wherever it is held).
struct LrWriteLog {
    std::uint32_t pending_cleared[kNumBanks] = {};
    std::uint32_t active_set[kNumBanks] = {};
    std::uint32_t active_cleared[kNumBanks] = {};

    bool empty() const {
        std::uint32_t any = 0;
        for (unsigned b = 0; b < kNumBanks; ++b) {
            any |= pending_cleared[b] | active_set[b] | active_cleared[b];
        }
        return any == 0;
    }

    // Records what write `e` did to bank `e.bank`; true when it recorded
    // (or cancelled) anything.
    bool record(const WriteEffect& e) {
        if (e.bank >= kNumBanks) return false;
        const unsigned b = e.bank;
        pending_cleared[b] = (pending_cleared[b] & ~e.pending_set) | e.pending_cleared;
        active_set[b] = (active_set[b] & ~e.active_cleared) | e.active_set;
        active_cleared[b] = (active_cleared[b] & ~e.active_set) | e.active_cleared;
        return (e.pending_cleared | e.active_set | e.active_cleared) != 0;
    }

    // What list register `lr` becomes once the recorded writes reach it.
    LrWriteResult apply(std::uint64_t lr) const {
        const std::uint32_t intid = lr_vintid(lr);
        if (lr_state(lr) == LrState::Invalid || intid >= kNumIntids) return {lr, false, false};
        const unsigned b = intid / 32;
        const std::uint32_t bit = 1u << (intid % 32);
        return apply_lr_write(lr, (pending_cleared[b] & bit) != 0, (active_set[b] & bit) != 0,
                              (active_cleared[b] & bit) != 0);
    }

    void clear() { *this = LrWriteLog{}; }
};

}  // namespace armvcpu::vgic
