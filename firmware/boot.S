// Reset entry: QEMU's -kernel loader jumps to _start at EL2 with the MMU off.
// Secondary CPUs stay powered off until PSCI CPU_ON, so only CPU 0 gets here.

    .cfi_sections .debug_frame

    .section .text.boot, "ax"
    .global _start
    .type _start, %function
_start:
    .cfi_startproc
    .cfi_undefined x30              // outermost frame: gdb's unwinder stops here
    mrs     x1, CurrentEL
    cmp     x1, #(2 << 2)
    b.ne    1f                      // not at EL2: nothing we can do
    ldr     x1, =__stack_top
    mov     sp, x1
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
0:  cmp     x1, x2
    b.hs    2f
    str     xzr, [x1], #8
    b       0b
2:  ldr     x1, =armvcpu_el2_vectors
    msr     vbar_el2, x1
    isb
    bl      fw_main
1:  wfe
    b       1b
    .cfi_endproc
    .size _start, . - _start

// Secondary CPUs: started by CPU 0 with PSCI CPU_ON at EL2, context = the
// CPU's index. Each takes its own stack and vectors, then joins C++.
    .text
    .global _secondary_start
    .type _secondary_start, %function
_secondary_start:
    .cfi_startproc
    .cfi_undefined x30
    mov     x19, x0
    ldr     x1, =__stacks_start
    ldr     x2, =0x11000
    add     x3, x19, #1
    madd    x1, x3, x2, x1
    mov     sp, x1
    ldr     x1, =armvcpu_el2_vectors
    msr     vbar_el2, x1
    isb
    mov     x0, x19
    bl      fw_secondary_main
1:  wfe
    b       1b
    .cfi_endproc
    .size _secondary_start, . - _secondary_start
