/* armvcpu_guest.h: what a C guest (Guest.from_c) needs to talk to the host.
 *
 * Guests run at EL1 with the MMU off, so memory is Device memory: keep
 * accesses aligned (the build uses -mstrict-align) and avoid atomics. */
#ifndef ARMVCPU_GUEST_H
#define ARMVCPU_GUEST_H

#include <stdint.h>

/* A hypercall: number in x0, arguments in x1..x3, the host's answer in x0. */
static inline uint64_t armvcpu_hvc(uint64_t nr, uint64_t a1, uint64_t a2, uint64_t a3) {
    register uint64_t x0 __asm__("x0") = nr;
    register uint64_t x1 __asm__("x1") = a1;
    register uint64_t x2 __asm__("x2") = a2;
    register uint64_t x3 __asm__("x3") = a3;
    __asm__ volatile("hvc #0" : "+r"(x0) : "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
}

static inline uint32_t armvcpu_read32(uintptr_t addr) {
    return *(volatile uint32_t *)addr;
}

static inline void armvcpu_write32(uintptr_t addr, uint32_t value) {
    *(volatile uint32_t *)addr = value;
}

/* Writes a string to the PL011 at 0x0900_0000 (emulated, modelled or real). */
static inline void armvcpu_puts(const char *s) {
    while (*s) {
        while (armvcpu_read32(0x09000018) & (1u << 5)) { /* UARTFR.TXFF */
        }
        armvcpu_write32(0x09000000, (uint8_t)*s++);
    }
}

/* PSCI SYSTEM_OFF (DEN0022): does not return. */
static inline void armvcpu_system_off(void) {
    armvcpu_hvc(0x84000008, 0, 0, 0);
    for (;;) {
        __asm__ volatile("wfi");
    }
}

#endif
