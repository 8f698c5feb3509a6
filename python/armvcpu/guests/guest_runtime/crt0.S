// The C guest's start: a stack, a zeroed BSS, main(), then hypercall 0 with
// main's return value in x1, then PSCI SYSTEM_OFF.
    .section .text.start, "ax"
    .global _start
_start:
    ldr     x1, =__stack_top
    mov     sp, x1
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
1:  cmp     x1, x2
    b.hs    2f
    strb    wzr, [x1], #1
    b       1b
2:  bl      main
    mov     x1, x0
    mov     x0, #0
    hvc     #0
    ldr     x0, =0x84000008
    hvc     #0
3:  wfi
    b       3b
