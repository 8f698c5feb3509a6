// exit_loop: makes many exits as fast as it can, for benchmarks.
//
// x0 at entry (GuestConfig.x0): bits [47:0] = how many exits, bits [63:48] =
// what kind:
//   0  HVC hypercall 1 (goes to the host unless a fast rule answers it)
//   1  HVC PSCI_VERSION (answered inside the firmware's core)
// Then hypercall 2 (REPORT, x1 = exits made) and PSCI SYSTEM_OFF.

#define HC_LOOP 1
#define HC_REPORT 2

    .section .text.start, "ax"
    .global _start
_start:
    ubfx    x19, x0, #0, #48        // count
    lsr     x20, x0, #48            // kind
    mov     x21, #0                 // done
    ldr     x22, =0x84000000        // PSCI_VERSION
    cbz     x19, 3f
1:  cbnz    x20, 2f
    mov     x0, #HC_LOOP
    hvc     #0
    b       4f
2:  mov     x0, x22
    hvc     #0
4:  add     x21, x21, #1
    cmp     x21, x19
    b.lo    1b
3:  mov     x0, #HC_REPORT
    mov     x1, x21
    hvc     #0
    ldr     x0, =0x84000008
    hvc     #0
5:  wfi
    b       5b
