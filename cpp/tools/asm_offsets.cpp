// Emits the offsets that assembly needs as marker lines in this file's
// compiler-generated assembly; cmake/gen_asm_offsets.cmake turns them into
// asm_offsets.h. This is how firmware/vectors.S learns the TrapFrame layout
// without a second copy of it.
#include <cstddef>

#include "armvcpu/esr.hpp"
#include "armvcpu/host_interface.hpp"
#include "armvcpu/psci.hpp"
#include "armvcpu/trap_frame.hpp"

#define ARMVCPU_OFFSET(name, value) \
    asm volatile("\n.ascii \"@@ASM_OFFSET " #name " %c0@@\"" : : "i"(value))

using armvcpu::ExitRecord;
using armvcpu::TrapFrame;

void armvcpu_asm_offsets();
void armvcpu_asm_offsets() {
    ARMVCPU_OFFSET(TRAP_FRAME_X0, offsetof(TrapFrame, gpr_));
    ARMVCPU_OFFSET(TRAP_FRAME_SP_EL0, offsetof(TrapFrame, sp_el0));
    ARMVCPU_OFFSET(TRAP_FRAME_ELR, offsetof(TrapFrame, elr));
    ARMVCPU_OFFSET(TRAP_FRAME_SPSR, offsetof(TrapFrame, spsr));
    ARMVCPU_OFFSET(TRAP_FRAME_SIZE, sizeof(TrapFrame));
    ARMVCPU_OFFSET(EXIT_RECORD_SIZE, sizeof(ExitRecord));
    ARMVCPU_OFFSET(EXIT_RECORD_SEQ, offsetof(ExitRecord, seq));
    ARMVCPU_OFFSET(EXIT_RECORD_ACK, offsetof(ExitRecord, ack));
    // The EL2 fast path answers these calls exactly as the core's
    // classify_psci() does, from the same constants.
    ARMVCPU_OFFSET(ESR_EC_HVC64, static_cast<unsigned>(armvcpu::ExceptionClass::Hvc64));
    ARMVCPU_OFFSET(PSCI_VERSION_FID,
                   static_cast<std::uint64_t>(armvcpu::psci::Function::PsciVersion));
    ARMVCPU_OFFSET(PSCI_VERSION_VALUE, armvcpu::psci::kPsciVersion);
    ARMVCPU_OFFSET(SMCCC_VERSION_FID,
                   static_cast<std::uint64_t>(armvcpu::psci::Function::SmcccVersion));
    ARMVCPU_OFFSET(SMCCC_VERSION_VALUE, armvcpu::psci::kSmcccVersion);
    ARMVCPU_OFFSET(FAST_PATH_NO_SMCCC_VERSION_BIT, armvcpu::kFastPathNoSmcccVersionBit);
}
