// rng_driver: a driver for the Python RNG device of examples/policies/rng_device.py.
//
// Assembled at run time with Guest.from_asm (examples/guest_path.py), not by
// the CMake build: plain `as`, so no C preprocessor (.equ, not #define).
//
// The device, at IPA 0x0a00_0000 (unmapped, so every access is an exit):
//   0x00 CTRL   (W) bit 0: enable
//   0x04 SEED   (W) the generator's seed (non-zero)
//   0x08 STATUS (R) bit 0: a value is ready
//   0x0c DATA   (R) the next 32-bit value (reading it takes it)
//   0x10 COUNT  (R) how many values the device has produced
// The guest seeds and enables it, reads eight values (polling STATUS before
// each), prints them on the PL011 and reports with hypercall 2:
//   x1 = XOR of the values, x2 = COUNT as the device reports it.

    .equ RNG_BASE, 0x0a000000
    .equ UART_BASE, 0x09000000
    .equ HC_REPORT, 2
    .equ PSCI_SYSTEM_OFF, 0x84000008
    .equ COUNT, 8

    .section .text.start, "ax"
    .global _start
_start:
    ldr     x19, =RNG_BASE
    ldr     x20, =UART_BASE
    ldr     w0, =0x2545f491
    str     w0, [x19, #0x04]        // SEED
    mov     w0, #1
    str     w0, [x19, #0x00]        // CTRL.enable
    mov     x21, #0                 // i
    mov     x22, #0                 // xor of the values
1:  ldr     w0, [x19, #0x08]        // STATUS
    tbz     w0, #0, 1b              // not ready yet: poll again
    ldr     w23, [x19, #0x0c]       // DATA
    eor     x22, x22, x23
    adr     x1, msg_rng
    bl      puts
    add     w0, w21, #'0'
    bl      putc
    adr     x1, msg_eq
    bl      puts
    mov     w0, w23
    bl      puthex32
    mov     w0, #'\n'
    bl      putc
    add     x21, x21, #1
    cmp     x21, #COUNT
    b.lo    1b

    ldr     w2, [x19, #0x10]        // COUNT
    mov     x0, #HC_REPORT
    mov     x1, x22
    hvc     #0
    ldr     x0, =PSCI_SYSTEM_OFF
    hvc     #0
2:  wfi
    b       2b

// putc: w0 -> the PL011 (waits while UARTFR.TXFF, bit 5, is set). Leaf.
putc:
    ldr     w9, [x20, #0x18]
    tbnz    w9, #5, putc
    str     w0, [x20]
    ret

// puts: the NUL-terminated string at x1. Keeps its return address in x27.
puts:
    mov     x27, x30
3:  ldrb    w0, [x1], #1
    cbz     w0, 4f
    bl      putc
    b       3b
4:  ret     x27

// puthex32: "0x" and w0 as eight hex digits. Keeps its return address in x26.
puthex32:
    mov     x26, x30
    mov     w10, w0
    mov     w0, #'0'
    bl      putc
    mov     w0, #'x'
    bl      putc
    mov     w11, #28
5:  lsr     w0, w10, w11
    and     w0, w0, #0xf
    cmp     w0, #10
    add     w12, w0, #'0'
    add     w13, w0, #('a' - 10)
    csel    w0, w12, w13, lo
    bl      putc
    subs    w11, w11, #4
    b.ge    5b
    ret     x26

msg_rng: .asciz "rng["
msg_eq:  .asciz "] = "
