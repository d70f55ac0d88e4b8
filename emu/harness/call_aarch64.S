// void hc_call_regs(struct hc_call *c): calls c->fn with the argument
// registers and stack words of *c, with canaries in every callee-saved
// register (x19-x29, d8-d15), and stores the return registers, the stack
// pointer and the callee-saved registers as the callee left them. Offsets:
// struct hc_call in harness.c.
    .text
    .balign 16
    .globl hc_call_regs
    .type hc_call_regs, %function
hc_call_regs:
    adrp x9, hc_save
    add x9, x9, :lo12:hc_save
    stp x19, x20, [x9, #0]
    stp x21, x22, [x9, #16]
    stp x23, x24, [x9, #32]
    stp x25, x26, [x9, #48]
    stp x27, x28, [x9, #64]
    stp x29, x30, [x9, #80]
    stp d8, d9, [x9, #96]
    stp d10, d11, [x9, #112]
    stp d12, d13, [x9, #128]
    stp d14, d15, [x9, #144]
    mov x10, sp
    str x10, [x9, #160]
    str x0, [x9, #168]
    // Stack arguments: nstack words from sp up, area rounded to 16 bytes.
    ldr x11, [x0, #136]
    lsl x12, x11, #3
    add x12, x12, #15
    and x12, x12, #~15
    sub sp, sp, x12
    add x13, x0, #144
    mov x14, #0
1:  cmp x14, x11
    b.hs 2f
    ldr x15, [x13, x14, lsl #3]
    str x15, [sp, x14, lsl #3]
    add x14, x14, #1
    b 1b
2:  mov x10, sp
    str x10, [x0, #288]
    adrp x10, hc_canary
    add x10, x10, :lo12:hc_canary
    ldp x19, x20, [x10, #0]
    ldp x21, x22, [x10, #16]
    ldp x23, x24, [x10, #32]
    ldp x25, x26, [x10, #48]
    ldp x27, x28, [x10, #64]
    ldr x29, [x10, #80]
    ldp d8, d9, [x10, #88]
    ldp d10, d11, [x10, #104]
    ldp d12, d13, [x10, #120]
    ldp d14, d15, [x10, #136]
    ldp d0, d1, [x0, #72]
    ldp d2, d3, [x0, #88]
    ldp d4, d5, [x0, #104]
    ldp d6, d7, [x0, #120]
    ldr x16, [x0, #0]
    mov x17, x0
    ldp x2, x3, [x17, #24]
    ldp x4, x5, [x17, #40]
    ldp x6, x7, [x17, #56]
    ldp x0, x1, [x17, #8]
    blr x16
    adrp x9, hc_save
    add x9, x9, :lo12:hc_save
    ldr x10, [x9, #168]
    str x0, [x10, #272]
    str d0, [x10, #280]
    mov x11, sp
    str x11, [x10, #296]
    stp x19, x20, [x10, #304]
    stp x21, x22, [x10, #320]
    stp x23, x24, [x10, #336]
    stp x25, x26, [x10, #352]
    stp x27, x28, [x10, #368]
    str x29, [x10, #384]
    stp d8, d9, [x10, #392]
    stp d10, d11, [x10, #408]
    stp d12, d13, [x10, #424]
    stp d14, d15, [x10, #440]
    ldr x11, [x9, #160]
    mov sp, x11
    ldp x19, x20, [x9, #0]
    ldp x21, x22, [x9, #16]
    ldp x23, x24, [x9, #32]
    ldp x25, x26, [x9, #48]
    ldp x27, x28, [x9, #64]
    ldp x29, x30, [x9, #80]
    ldp d8, d9, [x9, #96]
    ldp d10, d11, [x9, #112]
    ldp d12, d13, [x9, #128]
    ldp d14, d15, [x9, #144]
    ret
    .size hc_call_regs, . - hc_call_regs
    .section .note.GNU-stack,"",%progbits
