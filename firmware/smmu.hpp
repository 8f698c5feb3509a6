// QEMU virt's SMMUv3 (-M virt,iommu=smmuv3), programmed so that every PCIe
// device's DMA reaches VM 1's RAM and nothing else: the machine's other
// memory (the firmware, other VMs) is out of a passed-through device's
// reach. A blocked DMA becomes an event, its interrupt an exit the host sees.
#pragma once

#include <cstdint>

#include "vm.hpp"

namespace fw::smmu {

// Sets the SMMU up for `vm` (the VM the PCIe host bridge is passed through
// to) when its features ask for it; does nothing otherwise. At boot, on the
// first CPU, before any guest runs.
void init(const Vm& vm);

// The event queue's interrupt: records each new event in the DMA-fault log
// the host reads (armvcpu_dma_faults) and consumes it.
void drain_events();

}  // namespace fw::smmu
