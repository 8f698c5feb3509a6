#include "inject.hpp"

#include "sysreg.hpp"

namespace fw {

armvcpu::El1Features el1_features() {
    const std::uint64_t mmfr1 = ARMVCPU_READ_SYSREG(id_aa64mmfr1_el1);
    const std::uint64_t mmfr2 = ARMVCPU_READ_SYSREG(id_aa64mmfr2_el1);
    const std::uint64_t pfr1 = ARMVCPU_READ_SYSREG(id_aa64pfr1_el1);
    armvcpu::El1Features f;
    f.pan = ((mmfr1 >> 20) & 0xf) != 0;  // ID_AA64MMFR1_EL1.PAN
    f.uao = ((mmfr2 >> 4) & 0xf) != 0;   // ID_AA64MMFR2_EL1.UAO
    f.bti = (pfr1 & 0xf) != 0;           // ID_AA64PFR1_EL1.BT
    f.ssbs = ((pfr1 >> 4) & 0xf) != 0;   // ID_AA64PFR1_EL1.SSBS
    f.mte = ((pfr1 >> 8) & 0xf) != 0;    // ID_AA64PFR1_EL1.MTE
    f.nmi = ((pfr1 >> 36) & 0xf) != 0;   // ID_AA64PFR1_EL1.NMI
    return f;
}

}  // namespace fw
