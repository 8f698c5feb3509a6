// retry: a guest that copes with failing hypercalls.
//
// Assembled at run time with Guest.from_asm (examples/guest_path.py), not by
// the CMake build: plain `as`, so no C preprocessor (.equ, not #define).
//
// Like the hypercalls guest it asks for eight values with hypercall 1
// (GET_VALUE, x1 = i) and folds them into checksum = checksum * 31 + value
// (mod 2^64). An answer with bit 63 set is an error (SMCCC style: -1 is
// NOT_SUPPORTED): the guest retries, up to MAX_TRIES times, then gives up on
// that value. It prints what happened to each value on the PL011 and reports
// with hypercall 2: x1 = checksum, x2 = errors seen, x3 = values given up.

    .equ UART_BASE, 0x09000000
    .equ HC_GET_VALUE, 1
    .equ HC_REPORT, 2
    .equ PSCI_SYSTEM_OFF, 0x84000008
    .equ COUNT, 8
    .equ MAX_TRIES, 8

    .section .text.start, "ax"
    .global _start
_start:
    ldr     x20, =UART_BASE
    mov     x19, #0                 // checksum
    mov     x21, #0                 // i
    mov     x22, #0                 // errors seen
    mov     x23, #0                 // values given up
    mov     x25, #31
1:  mov     x24, #0                 // tries for this value
2:  mov     x0, #HC_GET_VALUE
    mov     x1, x21
    hvc     #0
    tbz     x0, #63, 3f             // success
    add     x22, x22, #1
    add     x24, x24, #1
    cmp     x24, #MAX_TRIES
    b.lo    2b
    add     x23, x23, #1            // give up on this one
    adr     x1, msg_value
    bl      puts
    add     w0, w21, #'0'
    bl      putc
    adr     x1, msg_gave_up
    bl      puts
    b       4f
3:  madd    x19, x19, x25, x0
    mov     x28, x0
    adr     x1, msg_value
    bl      puts
    add     w0, w21, #'0'
    bl      putc
    adr     x1, msg_eq
    bl      puts
    mov     w0, w28
    bl      puthex32
    adr     x1, msg_after
    bl      puts
    add     w0, w24, #'0'
    bl      putc
    adr     x1, msg_retries
    bl      puts
4:  add     x21, x21, #1
    cmp     x21, #COUNT
    b.lo    1b

    mov     x0, #HC_REPORT
    mov     x1, x19
    mov     x2, x22
    mov     x3, x23
    hvc     #0
    ldr     x0, =PSCI_SYSTEM_OFF
    hvc     #0
5:  wfi
    b       5b

// putc: w0 -> the PL011 (waits while UARTFR.TXFF, bit 5, is set). Leaf.
putc:
    ldr     w9, [x20, #0x18]
    tbnz    w9, #5, putc
    str     w0, [x20]
    ret

// puts: the NUL-terminated string at x1. Keeps its return address in x27.
puts:
    mov     x27, x30
6:  ldrb    w0, [x1], #1
    cbz     w0, 7f
    bl      putc
    b       6b
7:  ret     x27

// puthex32: "0x" and w0 as eight hex digits. Keeps its return address in x26.
puthex32:
    mov     x26, x30
    mov     w10, w0
    mov     w0, #'0'
    bl      putc
    mov     w0, #'x'
    bl      putc
    mov     w11, #28
8:  lsr     w0, w10, w11
    and     w0, w0, #0xf
    cmp     w0, #10
    add     w12, w0, #'0'
    add     w13, w0, #('a' - 10)
    csel    w0, w12, w13, lo
    bl      putc
    subs    w11, w11, #4
    b.ge    8b
    ret     x26

msg_value:   .asciz "value "
msg_eq:      .asciz " = "
msg_after:   .asciz " after "
msg_retries: .asciz " retries\n"
msg_gave_up: .asciz ": gave up\n"
