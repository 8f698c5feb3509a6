// The host hand-off: the firmware calls armvcpu_host_handoff(record) when an
// exit needs the host. A host attached through the gdbstub keeps a breakpoint
// on its first instruction, reads and rewrites the record, moves the PC to the
// RET and continues. With nobody attached this is just a call that returns.
//
// It sits alone on its own 4 KiB page: QEMU's TCG flushes and slows every
// translation block on a page that holds a breakpoint.

    .cfi_sections .debug_frame

    .section .handoff, "ax"
    .balign 4096
    .global armvcpu_host_handoff
    .type armvcpu_host_handoff, %function
armvcpu_host_handoff:
    .cfi_startproc
    nop                             // the host's breakpoint
    ret
    .cfi_endproc
    .size armvcpu_host_handoff, . - armvcpu_host_handoff
    .balign 4096
