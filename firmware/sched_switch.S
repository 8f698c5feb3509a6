// The scheduler's assembly: switching EL2 threads, and saving and loading
// a vCPU's FP/SIMD or SVE registers (the C++ is built -mgeneral-regs-only,
// so EL2 itself never holds FP state of its own).
//
// FpState (firmware/scheduler.cpp): [0] FPSR, [8] FPCR, [16] ZCR_EL1,
// [32...] V0-V31 (16 bytes each), or with SVE Z0-Z31, P0-P15 and FFR at the
// CPU's largest vector length (ZCR_EL2.LEN = 0xf, set at bring-up), so any
// vector length the guest chose in ZCR_EL1 is kept whole.

    .arch armv8.2-a+sve
    .text

// void armvcpu_sched_switch(ThreadContext* from, const ThreadContext* to)
// ThreadContext: x19..x28, x29, x30, sp (13 words).
    .global armvcpu_sched_switch
    .type armvcpu_sched_switch, %function
armvcpu_sched_switch:
    stp     x19, x20, [x0, #0]
    stp     x21, x22, [x0, #16]
    stp     x23, x24, [x0, #32]
    stp     x25, x26, [x0, #48]
    stp     x27, x28, [x0, #64]
    stp     x29, x30, [x0, #80]
    mov     x9, sp
    str     x9, [x0, #96]
    ldp     x19, x20, [x1, #0]
    ldp     x21, x22, [x1, #16]
    ldp     x23, x24, [x1, #32]
    ldp     x25, x26, [x1, #48]
    ldp     x27, x28, [x1, #64]
    ldp     x29, x30, [x1, #80]
    ldr     x9, [x1, #96]
    mov     sp, x9
    ret
    .size armvcpu_sched_switch, . - armvcpu_sched_switch

// A new thread's first return lands here: x19 = its slot, x20 = its body.
    .global armvcpu_sched_thread_start
    .type armvcpu_sched_thread_start, %function
armvcpu_sched_thread_start:
    mov     x29, #0
    mov     x0, x19
    blr     x20
0:  wfe                       // a body never returns
    b       0b
    .size armvcpu_sched_thread_start, . - armvcpu_sched_thread_start

// void armvcpu_fpsimd_save(FpState*), armvcpu_fpsimd_load(const FpState*)
    .global armvcpu_fpsimd_save
    .type armvcpu_fpsimd_save, %function
armvcpu_fpsimd_save:
    mrs     x1, fpsr
    mrs     x2, fpcr
    stp     x1, x2, [x0]
    add     x0, x0, #32
    stp     q0, q1, [x0, #0]
    stp     q2, q3, [x0, #32]
    stp     q4, q5, [x0, #64]
    stp     q6, q7, [x0, #96]
    stp     q8, q9, [x0, #128]
    stp     q10, q11, [x0, #160]
    stp     q12, q13, [x0, #192]
    stp     q14, q15, [x0, #224]
    stp     q16, q17, [x0, #256]
    stp     q18, q19, [x0, #288]
    stp     q20, q21, [x0, #320]
    stp     q22, q23, [x0, #352]
    stp     q24, q25, [x0, #384]
    stp     q26, q27, [x0, #416]
    stp     q28, q29, [x0, #448]
    stp     q30, q31, [x0, #480]
    ret
    .size armvcpu_fpsimd_save, . - armvcpu_fpsimd_save

    .global armvcpu_fpsimd_load
    .type armvcpu_fpsimd_load, %function
armvcpu_fpsimd_load:
    ldp     x1, x2, [x0]
    msr     fpsr, x1
    msr     fpcr, x2
    add     x0, x0, #32
    ldp     q0, q1, [x0, #0]
    ldp     q2, q3, [x0, #32]
    ldp     q4, q5, [x0, #64]
    ldp     q6, q7, [x0, #96]
    ldp     q8, q9, [x0, #128]
    ldp     q10, q11, [x0, #160]
    ldp     q12, q13, [x0, #192]
    ldp     q14, q15, [x0, #224]
    ldp     q16, q17, [x0, #256]
    ldp     q18, q19, [x0, #288]
    ldp     q20, q21, [x0, #320]
    ldp     q22, q23, [x0, #352]
    ldp     q24, q25, [x0, #384]
    ldp     q26, q27, [x0, #416]
    ldp     q28, q29, [x0, #448]
    ldp     q30, q31, [x0, #480]
    ret
    .size armvcpu_fpsimd_load, . - armvcpu_fpsimd_load

// void armvcpu_sve_save(FpState*), armvcpu_sve_load(const FpState*)
// Z registers at [32], then P0-P15 and FFR after 32 vector lengths.
.macro z_regs op
    \op     z0, [x1, #0, mul vl]
    \op     z1, [x1, #1, mul vl]
    \op     z2, [x1, #2, mul vl]
    \op     z3, [x1, #3, mul vl]
    \op     z4, [x1, #4, mul vl]
    \op     z5, [x1, #5, mul vl]
    \op     z6, [x1, #6, mul vl]
    \op     z7, [x1, #7, mul vl]
    \op     z8, [x1, #8, mul vl]
    \op     z9, [x1, #9, mul vl]
    \op     z10, [x1, #10, mul vl]
    \op     z11, [x1, #11, mul vl]
    \op     z12, [x1, #12, mul vl]
    \op     z13, [x1, #13, mul vl]
    \op     z14, [x1, #14, mul vl]
    \op     z15, [x1, #15, mul vl]
    \op     z16, [x1, #16, mul vl]
    \op     z17, [x1, #17, mul vl]
    \op     z18, [x1, #18, mul vl]
    \op     z19, [x1, #19, mul vl]
    \op     z20, [x1, #20, mul vl]
    \op     z21, [x1, #21, mul vl]
    \op     z22, [x1, #22, mul vl]
    \op     z23, [x1, #23, mul vl]
    \op     z24, [x1, #24, mul vl]
    \op     z25, [x1, #25, mul vl]
    \op     z26, [x1, #26, mul vl]
    \op     z27, [x1, #27, mul vl]
    \op     z28, [x1, #28, mul vl]
    \op     z29, [x1, #29, mul vl]
    \op     z30, [x1, #30, mul vl]
    \op     z31, [x1, #31, mul vl]
.endm
.macro p_regs op
    \op     p0, [x2, #0, mul vl]
    \op     p1, [x2, #1, mul vl]
    \op     p2, [x2, #2, mul vl]
    \op     p3, [x2, #3, mul vl]
    \op     p4, [x2, #4, mul vl]
    \op     p5, [x2, #5, mul vl]
    \op     p6, [x2, #6, mul vl]
    \op     p7, [x2, #7, mul vl]
    \op     p8, [x2, #8, mul vl]
    \op     p9, [x2, #9, mul vl]
    \op     p10, [x2, #10, mul vl]
    \op     p11, [x2, #11, mul vl]
    \op     p12, [x2, #12, mul vl]
    \op     p13, [x2, #13, mul vl]
    \op     p14, [x2, #14, mul vl]
    \op     p15, [x2, #15, mul vl]
.endm

    .global armvcpu_sve_save
    .type armvcpu_sve_save, %function
armvcpu_sve_save:
    mrs     x3, fpsr
    mrs     x4, fpcr
    stp     x3, x4, [x0]
    mrs     x3, S3_0_C1_C2_0          // ZCR_EL1
    str     x3, [x0, #16]
    add     x1, x0, #32
    z_regs  str
    addvl   x2, x1, #16
    addvl   x2, x2, #16
    p_regs  str
    rdffr   p0.b                      // after P0 is saved
    str     p0, [x2, #16, mul vl]
    ret
    .size armvcpu_sve_save, . - armvcpu_sve_save

    .global armvcpu_sve_load
    .type armvcpu_sve_load, %function
armvcpu_sve_load:
    ldp     x3, x4, [x0]
    msr     fpsr, x3
    msr     fpcr, x4
    ldr     x3, [x0, #16]
    msr     S3_0_C1_C2_0, x3          // ZCR_EL1
    add     x1, x0, #32
    addvl   x2, x1, #16
    addvl   x2, x2, #16
    ldr     p0, [x2, #16, mul vl]
    wrffr   p0.b                      // before P0 is loaded
    p_regs  ldr
    z_regs  ldr
    ret
    .size armvcpu_sve_load, . - armvcpu_sve_load
