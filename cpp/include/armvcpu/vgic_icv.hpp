// The guest's Group 1 virtual CPU interface registers (ICV_*_EL1), emulated
// in EL2 over the list registers, active priorities and ICH_VMCR_EL2.
//
// Why: QEMU 7.2's ICV_BPR1_EL1 write clamps the whole written value to the
// minimum before keeping its three valid bits, so a guest writing 8 stores
// VBPR1 = 0, and QEMU's next group-priority computation fails an assertion
// and aborts the whole machine (docs/threat-model.md). The architecture
// offers no trap for ICC_BPR1_EL1 alone: ICH_HCR_EL2.TALL1 traps every EL1
// access to the Group 1 registers (ICC_IAR1, EOIR1, HPPIR1, BPR1, AP1R<n>,
// IGRPEN1), so EL2 answers all of them with the architecture's rules.
//
// Rules: GICv3 architecture specification (IHI 0069H), 12.4 "AArch64 virtual
// CPU interface System register descriptions" (ICV_IAR1_EL1, ICV_EOIR1_EL1,
// ICV_HPPIR1_EL1, ICV_BPR1_EL1, ICV_AP1R<n>_EL1, ICV_IGRPEN1_EL1) and their
// pseudocode (VirtualReadIAR1, VirtualWriteEOIR1, VPriorityGroup,
// CanSignalVirtualInterrupt, VPriorityDrop). The model only computes: the
// caller loads the registers into IcvState, applies one access, and writes
// back what changed (and deactivates a hardware-linked physical INTID).
#pragma once

#include <cstdint>

#include "armvcpu/sysreg.hpp"
#include "armvcpu/vgic.hpp"

namespace armvcpu::vgic {

// ICH_HCR_EL2.EOIcount [31:27]: EOIs that found no list register.
inline constexpr unsigned kIchHcrEoiCountShift = 27;

// ICH_VMCR_EL2 fields (12.5.x): VENG0 [0], VENG1 [1], VCBPR [4], VEOIM [9],
// VBPR1 [20:18], VBPR0 [23:21], VPMR [31:24].
namespace vmcr {
inline constexpr std::uint64_t kVeng0 = 1u << 0;
inline constexpr std::uint64_t kVeng1 = 1u << 1;
inline constexpr std::uint64_t kVcbpr = 1u << 4;
inline constexpr std::uint64_t kVeoim = 1u << 9;
inline constexpr unsigned kVbpr1Shift = 18;
inline constexpr unsigned kVbpr0Shift = 21;
inline constexpr unsigned kVpmrShift = 24;
}  // namespace vmcr

// List register fields beyond vgic.hpp's: State [63:62] as two bits.
inline constexpr std::uint64_t kLrPendingBit = 1ull << 62;
inline constexpr std::uint64_t kLrActiveBit = 1ull << 63;
inline constexpr std::uint64_t kLrHwBit = 1ull << 61;
inline constexpr std::uint64_t kLrGroupBit = 1ull << 60;
constexpr std::uint8_t lr_priority(std::uint64_t lr) { return static_cast<std::uint8_t>(lr >> 48); }
constexpr std::uint32_t lr_pintid(std::uint64_t lr) {
    return static_cast<std::uint32_t>((lr >> 32) & 0x1fff);
}

inline constexpr unsigned kMaxLrs = 16;
inline constexpr std::uint32_t kNoInterrupt = ~0u;

// The Group 1 registers TALL1 traps (ISS keys of their encodings).
inline constexpr SysRegEncoding kIccIar1El1{3, 0, 12, 12, 0};
inline constexpr SysRegEncoding kIccEoir1El1{3, 0, 12, 12, 1};
inline constexpr SysRegEncoding kIccHppir1El1{3, 0, 12, 12, 2};
inline constexpr SysRegEncoding kIccBpr1El1{3, 0, 12, 12, 3};
inline constexpr SysRegEncoding kIccIgrpen1El1{3, 0, 12, 12, 7};
inline constexpr SysRegEncoding kIccAp1r0El1{3, 0, 12, 9, 0};  // AP1R<n>: op2 = n
static_assert(detail::ascii_iequal(sysreg_name(kIccIar1El1), "ICC_IAR1_EL1"));
static_assert(detail::ascii_iequal(sysreg_name(kIccEoir1El1), "ICC_EOIR1_EL1"));
static_assert(detail::ascii_iequal(sysreg_name(kIccHppir1El1), "ICC_HPPIR1_EL1"));
static_assert(detail::ascii_iequal(sysreg_name(kIccBpr1El1), "ICC_BPR1_EL1"));
static_assert(detail::ascii_iequal(sysreg_name(kIccIgrpen1El1), "ICC_IGRPEN1_EL1"));
static_assert(detail::ascii_iequal(sysreg_name(kIccAp1r0El1), "ICC_AP1R0_EL1"));

// The virtual CPU interface as EL2 sees it.
struct IcvState {
    std::uint64_t lr[kMaxLrs] = {};
    unsigned num_lrs = 0;        // ICH_VTR_EL2.ListRegs + 1
    unsigned prebits = 5;        // ICH_VTR_EL2.PREbits + 1 (5..7)
    std::uint32_t ap0r[4] = {};  // ICH_AP0R<n>_EL2
    std::uint32_t ap1r[4] = {};  // ICH_AP1R<n>_EL2
    std::uint64_t vmcr = 0;      // ICH_VMCR_EL2
    std::uint64_t hcr = 0;       // ICH_HCR_EL2

    // The active-priority registers implemented: 1 << (PREbits - 5).
    constexpr unsigned num_aprs() const {
        return prebits < 5 ? 1u : prebits > 7 ? 4u : 1u << (prebits - 5);
    }
    // The smallest ICV_BPR0 value (the group priority uses every preemption
    // bit); ICV_BPR1's is one more.
    constexpr unsigned min_bpr0() const { return 7 - (prebits > 7 ? 7 : prebits); }
    constexpr unsigned vbpr0() const {
        return static_cast<unsigned>(vmcr >> vmcr::kVbpr0Shift) & 7;
    }
    constexpr unsigned vbpr1() const {
        return static_cast<unsigned>(vmcr >> vmcr::kVbpr1Shift) & 7;
    }
    constexpr std::uint8_t vpmr() const {
        return static_cast<std::uint8_t>(vmcr >> vmcr::kVpmrShift);
    }
};

// What one trapped access did.
struct IcvAccess {
    bool handled = false;     // a Group 1 register this model answers
    bool undefined = false;   // not implemented here: UNDEFINED (AP1R<n> past the last)
    std::uint64_t value = 0;  // a read's result
    // A hardware-linked interrupt the guest deactivated: the physical INTID
    // the caller deactivates (ICC_DIR_EL1), or kNoInterrupt.
    std::uint32_t deactivate_pintid = kNoInterrupt;
};

// The mask of an interrupt priority's group-priority bits (VPriorityGroup):
// Group 0, or Group 1 with VCBPR, uses VBPR0 (bits [7:VBPR0+1]); Group 1
// uses VBPR1 (bits [7:VBPR1]).
constexpr std::uint8_t group_priority_mask(const IcvState& s, bool group1) {
    unsigned bits_below = 0;
    if (!group1 || (s.vmcr & vmcr::kVcbpr) != 0) {
        bits_below = s.vbpr0() + 1;
    } else {
        // VBPR1 is never below 1 (the minimum is at least 1); guard anyway.
        bits_below = s.vbpr1() == 0 ? 1 : s.vbpr1();
    }
    return static_cast<std::uint8_t>(0xffu << bits_below);
}

// The running priority: the lowest active-priority bit set in either group,
// as a priority (bit n is priority n << (8 - PREbits)); 0xff when idle.
constexpr unsigned running_priority(const IcvState& s) {
    for (unsigned i = 0; i < s.num_aprs(); ++i) {
        const std::uint32_t both = s.ap0r[i] | s.ap1r[i];
        if (both == 0) continue;
        const unsigned bit = static_cast<unsigned>(__builtin_ctz(both)) + 32 * i;
        return bit << (8 - s.prebits);
    }
    return 0xff;
}

// The list register of the highest-priority pending interrupt whose group
// is enabled (HighestPriorityVirtualInterrupt); -1 when none. Priority 0xff
// is never signalled.
constexpr int highest_pending_lr(const IcvState& s) {
    int idx = -1;
    unsigned best = 0xff;
    for (unsigned i = 0; i < s.num_lrs && i < kMaxLrs; ++i) {
        const std::uint64_t lr = s.lr[i];
        if (lr_state(lr) != LrState::Pending) continue;
        const std::uint64_t enable = (lr & kLrGroupBit) != 0 ? vmcr::kVeng1 : vmcr::kVeng0;
        if ((s.vmcr & enable) == 0) continue;
        if (lr_priority(lr) < best) {
            best = lr_priority(lr);
            idx = static_cast<int>(i);
        }
    }
    return idx;
}

// May the pending interrupt in `lr` be signalled now (CanSignalVirtualInt):
// the interface enabled, the priority above the mask and its group priority
// above the running priority.
constexpr bool can_signal(const IcvState& s, std::uint64_t lr) {
    if ((s.hcr & kIchHcrEn) == 0) return false;
    const unsigned prio = lr_priority(lr);
    if (prio >= s.vpmr()) return false;
    const unsigned rprio = running_priority(s);
    if (rprio == 0xff) return true;
    const std::uint8_t mask = group_priority_mask(s, (lr & kLrGroupBit) != 0);
    return (prio & mask) < (rprio & mask);
}

constexpr bool is_special_intid(std::uint32_t intid) { return intid >= 1020 && intid <= 1023; }

// ICV_IAR1_EL1 read: acknowledges the highest-priority pending Group 1
// interrupt (pending -> active, its group priority's active bit set), or
// returns 1023.
constexpr std::uint64_t read_iar1(IcvState& s) {
    const int idx = highest_pending_lr(s);
    if (idx < 0) return kSpurious;
    std::uint64_t& lr = s.lr[idx];
    if ((lr & kLrGroupBit) == 0 || !can_signal(s, lr)) return kSpurious;
    const std::uint32_t intid = lr_vintid(lr);
    lr &= ~kLrPendingBit;
    if (is_special_intid(intid)) return intid;  // pending -> invalid, ID returned as is
    lr |= kLrActiveBit;
    const unsigned bit = (lr_priority(lr) & group_priority_mask(s, true)) >> (8 - s.prebits);
    s.ap1r[bit / 32] |= 1u << (bit % 32);
    return intid;
}

// ICV_HPPIR1_EL1 read: the highest-priority pending interrupt if it is Group 1.
constexpr std::uint64_t read_hppir1(const IcvState& s) {
    const int idx = highest_pending_lr(s);
    if (idx < 0 || (s.lr[idx] & kLrGroupBit) == 0) return kSpurious;
    return lr_vintid(s.lr[idx]);
}

// Clears the lowest active-priority bit set (Group 0 first at equal
// priority) and returns its priority; 0xff when none was set (VPriorityDrop).
constexpr unsigned drop_priority(IcvState& s) {
    for (unsigned i = 0; i < s.num_aprs(); ++i) {
        if (s.ap0r[i] == 0 && s.ap1r[i] == 0) continue;
        const unsigned c0 = s.ap0r[i] != 0 ? static_cast<unsigned>(__builtin_ctz(s.ap0r[i])) : 32;
        const unsigned c1 = s.ap1r[i] != 0 ? static_cast<unsigned>(__builtin_ctz(s.ap1r[i])) : 32;
        std::uint32_t& apr = c0 <= c1 ? s.ap0r[i] : s.ap1r[i];
        apr &= apr - 1;
        return ((c0 <= c1 ? c0 : c1) + 32 * i) << (8 - s.prebits);
    }
    return 0xff;
}

// Deactivates the interrupt in list register `i` (active -> invalid,
// pending and active -> pending); a hardware-linked one names its pINTID.
constexpr void deactivate_lr(IcvState& s, unsigned i, IcvAccess& out) {
    if ((s.lr[i] & kLrHwBit) != 0 && is_valid_intid(lr_pintid(s.lr[i]))) {
        out.deactivate_pintid = lr_pintid(s.lr[i]);
    }
    s.lr[i] &= ~kLrActiveBit;
}

// ICV_EOIR1_EL1 write: priority drop, and with VEOIM = 0 deactivation of the
// list register holding the INTID (when its group and group priority match
// what was dropped). An EOI that finds no list register counts in
// ICH_HCR_EL2.EOIcount. Special INTIDs are ignored. An LPI has no active
// state to keep: its list register is deactivated whatever VEOIM says, and
// one in no list register is not counted (VirtualWriteEOIR1's pseudocode).
constexpr void write_eoir1(IcvState& s, std::uint64_t value, IcvAccess& out) {
    const auto intid = static_cast<std::uint32_t>(value & 0xffffff);
    if (intid >= 1020 && !is_lpi(intid)) return;
    const unsigned dropped = drop_priority(s);
    if (dropped == 0xff) return;  // nothing active: CONSTRAINED UNPREDICTABLE, ignored
    for (unsigned i = 0; i < s.num_lrs && i < kMaxLrs; ++i) {
        const std::uint64_t lr = s.lr[i];
        if ((lr & kLrActiveBit) == 0 || lr_vintid(lr) != intid) continue;
        const bool matches =
            (lr & kLrGroupBit) != 0 && (lr_priority(lr) & group_priority_mask(s, true)) == dropped;
        if (matches && ((s.vmcr & vmcr::kVeoim) == 0 || is_lpi(intid))) deactivate_lr(s, i, out);
        return;
    }
    if (is_lpi(intid)) return;
    const std::uint64_t count = ((s.hcr >> kIchHcrEoiCountShift) + 1) & 0x1f;
    s.hcr = (s.hcr & ~(0x1full << kIchHcrEoiCountShift)) | (count << kIchHcrEoiCountShift);
}

// ICV_BPR1_EL1 read: VBPR1, or with VCBPR VBPR0 + 1 saturated at 7.
constexpr std::uint64_t read_bpr1(const IcvState& s) {
    if ((s.vmcr & vmcr::kVcbpr) != 0) return s.vbpr0() + 1 > 7 ? 7 : s.vbpr0() + 1;
    return s.vbpr1();
}

// ICV_BPR1_EL1 write: bits [63:3] are RES0 and ignored; a BinaryPoint below
// the minimum (min VBPR0 + 1) sets the minimum; with VCBPR the write is
// ignored.
constexpr void write_bpr1(IcvState& s, std::uint64_t value) {
    if ((s.vmcr & vmcr::kVcbpr) != 0) return;
    unsigned bpr = static_cast<unsigned>(value & 7);
    const unsigned min = s.min_bpr0() + 1;
    if (bpr < min) bpr = min;
    s.vmcr = (s.vmcr & ~(7ull << vmcr::kVbpr1Shift)) |
             (static_cast<std::uint64_t>(bpr) << vmcr::kVbpr1Shift);
}

// Answers one trapped access to a Group 1 register (`key` the access's ISS
// key, `value` a write's Rt); handled = false for any other register.
constexpr IcvAccess icv_group1_access(IcvState& s, std::uint32_t key, bool is_read,
                                      std::uint64_t value) {
    IcvAccess out;
    out.handled = true;
    if (key == kIccIar1El1.iss_key() && is_read) {
        out.value = read_iar1(s);
    } else if (key == kIccHppir1El1.iss_key() && is_read) {
        out.value = read_hppir1(s);
    } else if (key == kIccEoir1El1.iss_key() && !is_read) {
        write_eoir1(s, value, out);
    } else if (key == kIccBpr1El1.iss_key()) {
        if (is_read) {
            out.value = read_bpr1(s);
        } else {
            write_bpr1(s, value);
        }
    } else if (key == kIccIgrpen1El1.iss_key()) {
        if (is_read) {
            out.value = (s.vmcr & vmcr::kVeng1) != 0 ? 1 : 0;
        } else {
            s.vmcr = (value & 1) != 0 ? s.vmcr | vmcr::kVeng1 : s.vmcr & ~vmcr::kVeng1;
        }
    } else if ((key & ~(7u << 17)) == kIccAp1r0El1.iss_key()) {
        // AP1R<n>: op2 (ISS [19:17]) is n; only 1 << (PREbits - 5) exist.
        const unsigned n = (key >> 17) & 7;
        if (n >= s.num_aprs()) {
            out.undefined = true;
        } else if (is_read) {
            out.value = s.ap1r[n];
        } else {
            s.ap1r[n] = static_cast<std::uint32_t>(value);
        }
    } else {
        // IAR1/HPPIR1 are read-only, EOIR1 write-only: the other direction
        // is UNDEFINED; anything else is not a Group 1 register.
        const bool group1 = key == kIccIar1El1.iss_key() || key == kIccHppir1El1.iss_key() ||
                            key == kIccEoir1El1.iss_key();
        out.handled = group1;
        out.undefined = group1;
    }
    return out;
}

}  // namespace armvcpu::vgic
