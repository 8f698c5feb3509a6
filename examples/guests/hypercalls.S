// hypercalls: the foundation's example guest.
//
// Asks the hypervisor for eight values with hypercall 1, folds each answer
// into a checksum (checksum = checksum * 31 + x0, modulo 2^64), reports the
// checksum with hypercall 2 and powers off through PSCI SYSTEM_OFF.
//
//   hypercall 1 (GET_VALUE): x1 = i (0..7), x2 = i * i, x3 = 0xc0ffee
//   hypercall 2 (REPORT):    x1 = checksum, x2 = number of values folded

#define HC_GET_VALUE 1
#define HC_REPORT 2
#define PSCI_SYSTEM_OFF 0x84000008
#define COUNT 8

    .section .text.start, "ax"
    .global _start
_start:
    mov     x19, #0                 // checksum
    mov     x20, #0                 // i
    mov     x21, #31
1:  mov     x0, #HC_GET_VALUE
    mov     x1, x20
    mul     x2, x20, x20
    movz    x3, #0xffee
    movk    x3, #0xc0, lsl #16
    mov     x4, xzr
    mov     x5, xzr
    mov     x6, xzr
    hvc     #0
    madd    x19, x19, x21, x0       // checksum = checksum * 31 + answer
    add     x20, x20, #1
    cmp     x20, #COUNT
    b.lo    1b

    mov     x0, #HC_REPORT
    mov     x1, x19
    mov     x2, x20
    hvc     #0

    ldr     x0, =PSCI_SYSTEM_OFF
    hvc     #0
2:  wfi                             // not reached: SYSTEM_OFF does not return
    b       2b
