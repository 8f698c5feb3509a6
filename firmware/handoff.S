// The host hand-off: the firmware calls armvcpu_host_handoff(record) when an
// exit needs the host, after it has published the record's seq. A host
// attached through the gdbstub stops the CPU here in one of two ways:
//
//  - breakpoint: on the first instruction (the NOP). The host reads and
//    rewrites the record, moves the PC to the next instruction and continues.
//  - watchpoint: a write watchpoint on armvcpu_host_doorbell, which the store
//    at armvcpu_host_doorbell_store writes. Arm reports a watchpoint before
//    the store is done (QEMU does too), so the host moves the PC past it;
//    a target that stops after the store needs no PC change.
//
// Either way the CPU then waits here until the host has answered: the host
// writes ack = seq with the answer (as the shared-memory host does). With
// several CPUs a stop reply names one of them, and QEMU reports only the last
// CPU that stopped; a CPU whose watchpoint stop went unreported stores the
// doorbell when it runs again and stops after the store, and if that stop
// goes unreported too it would run on with no answer. Waiting for the ack
// keeps it here (still on this page) until the host, which looks at every
// record at every stop, has answered it.
//
// The watchpoint is the fast way with QEMU's TCG: a stop at a breakpoint
// throws away every translated block (gdb_vm_state_change calls tb_flush), a
// watchpoint stop does not. With nobody attached this is a call that stores
// a word and returns.
//
// The code sits alone on its own 4 KiB page: QEMU's TCG slows every
// translation block on a page that holds a breakpoint. The doorbell sits
// alone on its own page of data, outside .bss (the boot code's clear must not
// hit the watchpoint): every access to a watched page takes QEMU's slow path.

#include "asm_offsets.h"

    .cfi_sections .debug_frame

    .section .handoff, "ax"
    .balign 4096
    .global armvcpu_host_handoff
    .type armvcpu_host_handoff, %function
armvcpu_host_handoff:
    .cfi_startproc
    nop                             // the host's breakpoint
    adrp    x1, armvcpu_host_doorbell
    .global armvcpu_host_doorbell_store
armvcpu_host_doorbell_store:
    str     x0, [x1, :lo12:armvcpu_host_doorbell]   // the host's write watchpoint
    ldr     x2, [x0, #EXIT_RECORD_SEQ]
    add     x4, x0, #EXIT_RECORD_ACK
1:  ldar    x3, [x4]                    // the answer is complete once ack == seq
    cmp     x3, x2
    b.eq    2f
    yield
    b       1b
2:  ret
    .cfi_endproc
    .size armvcpu_host_handoff, . - armvcpu_host_handoff
    .balign 4096

    .section .doorbell, "aw"
    .balign 4096
    .global armvcpu_host_doorbell
    .type armvcpu_host_doorbell, %object
armvcpu_host_doorbell:
    .quad 0                         // the last record handed over (its address)
    .size armvcpu_host_doorbell, . - armvcpu_host_doorbell
    .balign 4096
