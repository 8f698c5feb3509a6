// Devices of QEMU virt a VM may have passed through (GuestConfig::features):
// MMIO mapped into its stage 2, SPIs injected hardware-linked. The PL011
// (SPI 33) follows the VM's UartMode instead.
#pragma once

#include <cstdint>

#include "armvcpu/host_interface.hpp"
#include "armvcpu/pl011.hpp"
#include "armvcpu/stage2.hpp"
#include "vm.hpp"

namespace fw {

struct PassthroughDevice {
    std::uint32_t feature;
    std::uint64_t base;
    std::uint64_t size;
    std::uint32_t first_spi;
    std::uint32_t num_spis;
    // Code runs from it (flash): mapped as Normal memory, executable. QEMU's
    // flash device still sees every write (CFI commands), since it is MMIO
    // to QEMU whatever the stage-2 attributes say.
    bool executable = false;
};
inline constexpr PassthroughDevice kPassthroughDevices[] = {
    {armvcpu::kFeatureRtc, 0x09010000, 0x1000, 34, 1, false},
    {armvcpu::kFeatureVirtio, 0x0a000000, 0x4000, 48, 32, false},
    {armvcpu::kFeatureFlash, 0x00000000, 0x08000000, 0, 0, true},
    {armvcpu::kFeatureFwCfg, 0x09020000, 0x1000, 0, 0, false},
    {armvcpu::kFeatureGpio, 0x09030000, 0x1000, 39, 1, false},
    // The PCIe host bridge's regions (QEMU's highmem layout for a machine of
    // less than 256 GiB of RAM); INTA..D on the first.
    {armvcpu::kFeaturePcie, 0x10000000, 0x2eff0000, 35, 4, false},     // MMIO
    {armvcpu::kFeaturePcie, 0x3eff0000, 0x10000, 0, 0, false},         // I/O ports
    {armvcpu::kFeaturePcie, 0x3f000000, 0x1000000, 0, 0, false},       // ECAM (low)
    {armvcpu::kFeaturePcie, 0x4010000000, 0x10000000, 0, 0, false},    // ECAM (high)
    {armvcpu::kFeaturePcie, 0x8000000000, 0x8000000000, 0, 0, false},  // MMIO (high)
};
inline constexpr std::uint32_t kUartSpi = 33;

// True when physical SPI `intid` belongs to VM `vm` (and is injected into it).
// On the interrupt path, so inline.
inline bool vm_owns_spi(const Vm& vm, std::uint32_t intid) {
    if ((vm.features & armvcpu::kFeatureVgic) == 0) return false;
    if (intid == kUartSpi) return vm.uart_mode == armvcpu::UartMode::Passthrough;
    for (const PassthroughDevice& d : kPassthroughDevices) {
        if ((vm.features & d.feature) != 0 && intid >= d.first_spi &&
            intid < d.first_spi + d.num_spis) {
            return true;
        }
    }
    return false;
}

// Maps what VM `vm` passes through into its stage 2 at the same addresses:
// the physical PL011 (UartMode::Passthrough: the guest writes it directly)
// and the devices its features name: Device memory, never executable, but
// for the flash a guest runs from.
template <typename Tables>
armvcpu::stage2::MapError map_passthrough_devices(Tables& s2, const Vm& vm) {
    constexpr armvcpu::stage2::Attributes kDevice{armvcpu::stage2::Access::ReadWrite,
                                                  armvcpu::stage2::MemAttr::DeviceNGnRE, true};
    auto err = armvcpu::stage2::MapError::None;
    if (vm.uart_mode == armvcpu::UartMode::Passthrough) {
        err = s2.map(vm.cfg.uart_base, vm.cfg.uart_base, 0x1000, kDevice);
    }
    constexpr armvcpu::stage2::Attributes kCode{armvcpu::stage2::Access::ReadWrite,
                                                armvcpu::stage2::MemAttr::NormalWriteBack, false};
    for (const PassthroughDevice& d : kPassthroughDevices) {
        if (err != armvcpu::stage2::MapError::None || (vm.features & d.feature) == 0) continue;
        err = s2.map(d.base, d.base, d.size, d.executable ? kCode : kDevice);
    }
    return err;
}

// The VM's device SPIs: Group 1, to the VM's first CPU, disabled until the
// guest enables them in its own distributor.
void configure_passthrough_spis(const Vm& vm);

// Makes a physical SPI of the VM's devices enabled exactly when the guest's
// GIC would deliver it: a level-triggered device interrupt the guest cannot
// take must not keep firing at EL2. Called with dist_lock held.
void sync_passthrough_spi(const Vm& vm, std::uint32_t intid);

}  // namespace fw
