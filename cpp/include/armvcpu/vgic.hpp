// The GICv3 virtual CPU interface as the hypervisor drives it: list
// registers (ICH_LR<n>_EL2) and the INTIDs the core knows by name.
// Field positions: GICv3 architecture specification (IHI 0069), 12.5.x
// "ICH_LR<n>_EL2": vINTID [31:0], pINTID [44:32], Priority [55:48],
// Group [60], HW [61], State [63:62].
#pragma once

#include <cstdint>

namespace armvcpu::vgic {

// PPIs of the generic timer (the Arm Base System Architecture's numbers,
// which QEMU's virt uses): EL1 virtual timer 27, EL1 physical timer 30.
inline constexpr std::uint32_t kVirtualTimerPpi = 27;
inline constexpr std::uint32_t kPhysicalTimerPpi = 30;
// The GIC's maintenance interrupt (BSA; QEMU virt wires it to PPI 9 = 25).
inline constexpr std::uint32_t kMaintenancePpi = 25;
// ICH_HCR_EL2.UIE: a maintenance interrupt while at most one list register
// holds a valid interrupt: the moment to refill them.
inline constexpr std::uint64_t kIchHcrEn = 1u << 0;
inline constexpr std::uint64_t kIchHcrUie = 1u << 1;
// ICH_HCR_EL2.TALL1 [12]: EL1 accesses to the Group 1 ICC registers trap to
// EL2 (vgic_icv.hpp says why the firmware sets it).
inline constexpr std::uint64_t kIchHcrTall1 = 1u << 12;
// INTIDs 1020..1023 are special: 1023 means "no pending interrupt".
inline constexpr std::uint32_t kSpurious = 1023;

enum class LrState : std::uint8_t { Invalid = 0, Pending = 1, Active = 2, PendingActive = 3 };

inline constexpr std::uint8_t kDefaultPriority = 0xa0;

// A list register value. With hw, the virtual interrupt is linked to the
// physical pINTID: the guest deactivating it deactivates the physical one.
constexpr std::uint64_t lr_value(std::uint32_t vintid, LrState state, bool group1, bool hw,
                                 std::uint32_t pintid = 0,
                                 std::uint8_t priority = kDefaultPriority) {
    return (static_cast<std::uint64_t>(state) << 62) | (hw ? 1ull << 61 : 0) |
           (group1 ? 1ull << 60 : 0) | (static_cast<std::uint64_t>(priority) << 48) |
           (hw ? (static_cast<std::uint64_t>(pintid & 0x1fff) << 32) : 0) | vintid;
}

constexpr LrState lr_state(std::uint64_t lr) { return static_cast<LrState>(lr >> 62); }
constexpr std::uint32_t lr_vintid(std::uint64_t lr) { return static_cast<std::uint32_t>(lr); }

// True for INTIDs that name a real interrupt (not 1020..1023, not LPIs).
constexpr bool is_valid_intid(std::uint64_t intid) { return intid < 1020; }

// LPIs: INTIDs 8192 and up (IHI 0069H 2.2.1, "INTIDs"), message-signalled
// through an ITS; edge-like, with no active state (1.2.1).
inline constexpr std::uint32_t kFirstLpi = 8192;
constexpr bool is_lpi(std::uint64_t intid) { return intid >= kFirstLpi; }

}  // namespace armvcpu::vgic
