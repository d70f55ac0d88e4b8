# void hc_call_regs(struct hc_call *c): calls c->fn with the argument
# registers and stack words of *c (System V: rdi rsi rdx rcx r8 r9, xmm0-7),
# with canaries in every callee-saved register (rbx, rbp, r12-r15) and junk
# in rax, and stores the return registers, the stack pointer and the
# callee-saved registers as the callee left them. Offsets: struct hc_call in
# harness.c.
    .intel_syntax noprefix
    .text
    .balign 16
    .globl hc_call_regs
    .type hc_call_regs, @function
hc_call_regs:
    lea rax, [rip + hc_save]
    mov [rax + 0], rbx
    mov [rax + 8], rbp
    mov [rax + 16], r12
    mov [rax + 24], r13
    mov [rax + 32], r14
    mov [rax + 40], r15
    mov [rax + 160], rsp
    mov [rax + 168], rdi
    # Stack arguments at rsp, rsp 16-aligned at the call.
    mov rcx, [rdi + 136]
    lea rdx, [rcx * 8 + 15]
    and rdx, -16
    sub rsp, rdx
    and rsp, -16
    xor r8, r8
1:  cmp r8, rcx
    jae 2f
    mov r9, [rdi + 144 + r8 * 8]
    mov [rsp + r8 * 8], r9
    inc r8
    jmp 1b
2:  mov [rdi + 288], rsp
    lea rax, [rip + hc_canary]
    mov rbx, [rax + 0]
    mov rbp, [rax + 8]
    mov r12, [rax + 16]
    mov r13, [rax + 24]
    mov r14, [rax + 32]
    mov r15, [rax + 40]
    movq xmm0, [rdi + 72]
    movq xmm1, [rdi + 80]
    movq xmm2, [rdi + 88]
    movq xmm3, [rdi + 96]
    movq xmm4, [rdi + 104]
    movq xmm5, [rdi + 112]
    movq xmm6, [rdi + 120]
    movq xmm7, [rdi + 128]
    mov r11, [rdi]
    mov rsi, [rdi + 16]
    mov rdx, [rdi + 24]
    mov rcx, [rdi + 32]
    mov r8, [rdi + 40]
    mov r9, [rdi + 48]
    mov rdi, [rdi + 8]
    mov rax, 0x5a5a5a5a5a5a5a5a
    call r11
    lea r11, [rip + hc_save]
    mov r10, [r11 + 168]
    mov [r10 + 272], rax
    movq [r10 + 280], xmm0
    mov [r10 + 296], rsp
    mov [r10 + 304], rbx
    mov [r10 + 312], rbp
    mov [r10 + 320], r12
    mov [r10 + 328], r13
    mov [r10 + 336], r14
    mov [r10 + 344], r15
    mov rsp, [r11 + 160]
    mov rbx, [r11 + 0]
    mov rbp, [r11 + 8]
    mov r12, [r11 + 16]
    mov r13, [r11 + 24]
    mov r14, [r11 + 32]
    mov r15, [r11 + 40]
    ret
    .size hc_call_regs, . - hc_call_regs
    .section .note.GNU-stack,"",@progbits
