// EL2 vector table and the world switch into and out of the guest.
// TrapFrame offsets come from the C++ definition via the generated header.
#include "asm_offsets.h"

    .cfi_sections .debug_frame

// ExceptionType values (cpp/include/armvcpu/host_interface.hpp).
#define EXC_SYNC 0
#define EXC_IRQ 1
#define EXC_FIQ 2
#define EXC_SERROR 3
// Added to the type for exits from an AArch32 lower EL.
#define EXC_AARCH32 4

    .text

// A guest exit: park x0/x1 on the host stack, pass the type in x1.
.macro guest_exit type
    .balign 0x80
    .cfi_startproc
    .cfi_undefined x30
    stp     x0, x1, [sp, #-16]!
    mov     x1, #\type
    b       armvcpu_guest_exit
    .cfi_endproc
.endm

// An exception taken while the firmware itself runs at EL2.
.macro el2_fault type
    .balign 0x80
    .cfi_startproc
    .cfi_undefined x30
    mov     x0, #\type
    b       armvcpu_el2_fault_entry
    .cfi_endproc
.endm

    .balign 0x800
    .global armvcpu_el2_vectors
armvcpu_el2_vectors:
    // Current EL with SP_EL0: the firmware never selects SP_EL0.
    el2_fault EXC_SYNC
    el2_fault EXC_IRQ
    el2_fault EXC_FIQ
    el2_fault EXC_SERROR
    // Current EL with SP_ELx: a fault in the firmware itself.
    el2_fault EXC_SYNC
    el2_fault EXC_IRQ
    el2_fault EXC_FIQ
    el2_fault EXC_SERROR
    // Lower EL, AArch64: the guest.
    guest_exit EXC_SYNC
    guest_exit EXC_IRQ
    guest_exit EXC_FIQ
    guest_exit EXC_SERROR
    // Lower EL, AArch32: reported, never run.
    guest_exit (EXC_AARCH32 + EXC_SYNC)
    guest_exit (EXC_AARCH32 + EXC_IRQ)
    guest_exit (EXC_AARCH32 + EXC_FIQ)
    guest_exit (EXC_AARCH32 + EXC_SERROR)

// uint64_t armvcpu_run_guest(TrapFrame* frame)
// Saves the host's callee-saved registers on the EL2 stack, loads the guest
// from *frame and enters it. Returns (from armvcpu_guest_exit) the exception
// type of the exit, with *frame holding the guest's registers at the exit.
    .global armvcpu_run_guest
    .type armvcpu_run_guest, %function
armvcpu_run_guest:
    .cfi_startproc
    stp     x29, x30, [sp, #-96]!
    .cfi_def_cfa_offset 96
    .cfi_offset x29, -96
    .cfi_offset x30, -88
    stp     x19, x20, [sp, #16]
    stp     x21, x22, [sp, #32]
    stp     x23, x24, [sp, #48]
    stp     x25, x26, [sp, #64]
    stp     x27, x28, [sp, #80]
    // TPIDR_EL2 tells the vectors where this vCPU's frame is.
    msr     tpidr_el2, x0
    ldr     x1, [x0, #TRAP_FRAME_SP_EL0]
    msr     sp_el0, x1
    ldp     x1, x2, [x0, #TRAP_FRAME_ELR]
    msr     elr_el2, x1
    msr     spsr_el2, x2
// Re-entry of the fast path: x0 = the frame; SP_EL0, ELR_EL2 and SPSR_EL2
// still hold the guest's values.
armvcpu_enter_gprs:
    ldp     x2, x3, [x0, #(TRAP_FRAME_X0 + 2 * 8)]
    ldp     x4, x5, [x0, #(TRAP_FRAME_X0 + 4 * 8)]
    ldp     x6, x7, [x0, #(TRAP_FRAME_X0 + 6 * 8)]
    ldp     x8, x9, [x0, #(TRAP_FRAME_X0 + 8 * 8)]
    ldp     x10, x11, [x0, #(TRAP_FRAME_X0 + 10 * 8)]
    ldp     x12, x13, [x0, #(TRAP_FRAME_X0 + 12 * 8)]
    ldp     x14, x15, [x0, #(TRAP_FRAME_X0 + 14 * 8)]
    ldp     x16, x17, [x0, #(TRAP_FRAME_X0 + 16 * 8)]
    ldp     x18, x19, [x0, #(TRAP_FRAME_X0 + 18 * 8)]
    ldp     x20, x21, [x0, #(TRAP_FRAME_X0 + 20 * 8)]
    ldp     x22, x23, [x0, #(TRAP_FRAME_X0 + 22 * 8)]
    ldp     x24, x25, [x0, #(TRAP_FRAME_X0 + 24 * 8)]
    ldp     x26, x27, [x0, #(TRAP_FRAME_X0 + 26 * 8)]
    ldp     x28, x29, [x0, #(TRAP_FRAME_X0 + 28 * 8)]
    ldr     x30, [x0, #(TRAP_FRAME_X0 + 30 * 8)]
    ldp     x0, x1, [x0, #TRAP_FRAME_X0]   // last: x0 was the frame pointer
    eret
    .cfi_endproc
    .size armvcpu_run_guest, . - armvcpu_run_guest

// Common exit path. On entry: guest x0/x1 at [sp], x1 = exception type,
// SP = where armvcpu_run_guest left it.
    .type armvcpu_guest_exit, %function
armvcpu_guest_exit:
    .cfi_startproc
    .cfi_undefined x30
    mrs     x0, tpidr_el2
    stp     x2, x3, [x0, #(TRAP_FRAME_X0 + 2 * 8)]
    stp     x4, x5, [x0, #(TRAP_FRAME_X0 + 4 * 8)]
    stp     x6, x7, [x0, #(TRAP_FRAME_X0 + 6 * 8)]
    stp     x8, x9, [x0, #(TRAP_FRAME_X0 + 8 * 8)]
    stp     x10, x11, [x0, #(TRAP_FRAME_X0 + 10 * 8)]
    stp     x12, x13, [x0, #(TRAP_FRAME_X0 + 12 * 8)]
    stp     x14, x15, [x0, #(TRAP_FRAME_X0 + 14 * 8)]
    stp     x16, x17, [x0, #(TRAP_FRAME_X0 + 16 * 8)]
    stp     x18, x19, [x0, #(TRAP_FRAME_X0 + 18 * 8)]
    stp     x20, x21, [x0, #(TRAP_FRAME_X0 + 20 * 8)]
    stp     x22, x23, [x0, #(TRAP_FRAME_X0 + 22 * 8)]
    stp     x24, x25, [x0, #(TRAP_FRAME_X0 + 24 * 8)]
    stp     x26, x27, [x0, #(TRAP_FRAME_X0 + 26 * 8)]
    stp     x28, x29, [x0, #(TRAP_FRAME_X0 + 28 * 8)]
    str     x30, [x0, #(TRAP_FRAME_X0 + 30 * 8)]
    ldp     x2, x3, [sp], #16
    stp     x2, x3, [x0, #TRAP_FRAME_X0]
    mrs     x2, sp_el0
    str     x2, [x0, #TRAP_FRAME_SP_EL0]
    mrs     x2, elr_el2
    mrs     x3, spsr_el2
    stp     x2, x3, [x0, #TRAP_FRAME_ELR]

    // The fast path: with the whole frame saved, an HVC whose x0 asks for
    // PSCI_VERSION or SMCCC_VERSION is answered here with the core's own
    // constants (classify_psci gives the same answers) and the guest
    // re-entered, without leaving the vector code. Off on a CPU whose flag
    // in armvcpu_fast_path is 0 (the exit log wants every exit; single-step).
    cbnz    x1, 2f                          // synchronous exits only
    mrs     x2, mpidr_el1
    and     x2, x2, #0xff                   // Aff0: the CPU's index on QEMU virt
    adrp    x3, armvcpu_current_slot        // the vCPU slot it runs (scheduler.cpp)
    add     x3, x3, :lo12:armvcpu_current_slot
    ldrb    w2, [x3, x2]
    adrp    x3, armvcpu_fast_path
    add     x3, x3, :lo12:armvcpu_fast_path
    ldrb    w4, [x3, x2]                    // its flags (x4 is saved in the frame)
    cbz     w4, 2f
    mrs     x2, esr_el2
    lsr     x2, x2, #26
    cmp     x2, #ESR_EC_HVC64
    b.ne    2f
    ldr     x2, [x0, #TRAP_FRAME_X0]
    mov     x3, #PSCI_VERSION_FID
    cmp     x2, x3
    b.ne    1f
    ldr     x2, =PSCI_VERSION_VALUE
    str     x2, [x0, #TRAP_FRAME_X0]
    b       armvcpu_enter_gprs
1:  tbnz    w4, #FAST_PATH_NO_SMCCC_VERSION_BIT, 2f  // QEMU virt's SMCCC: the core answers
    mov     x3, #SMCCC_VERSION_FID
    cmp     x2, x3
    b.ne    2f
    ldr     x2, =SMCCC_VERSION_VALUE
    str     x2, [x0, #TRAP_FRAME_X0]
    b       armvcpu_enter_gprs

2:  mov     x0, x1
    // Back on the host's stack frame of armvcpu_run_guest: unwind it.
    ldp     x19, x20, [sp, #16]
    ldp     x21, x22, [sp, #32]
    ldp     x23, x24, [sp, #48]
    ldp     x25, x26, [sp, #64]
    ldp     x27, x28, [sp, #80]
    ldp     x29, x30, [sp], #96
    ret
    .cfi_endproc
    .size armvcpu_guest_exit, . - armvcpu_guest_exit

// A fault inside the firmware: x0 = type. Hands the syndrome to C++.
armvcpu_el2_fault_entry:
    .cfi_startproc
    .cfi_undefined x30
    // Move to the fault stack first: the fault may be a stack overflow.
    mov     x4, sp
    ldr     x1, =__fault_stack_top
    mov     sp, x1
    mrs     x1, esr_el2
    mrs     x2, elr_el2
    mrs     x3, far_el2
    bl      fw_el2_fault
0:  wfe
    b       0b
    .cfi_endproc
