/* flashmoe CUDA-on-CPU emulator: the fiber context switch (x86-64 System V).
 *   void cuemu_switch(void **save_sp, void *new_sp)
 * saves the callee-saved registers on the current stack, stores the stack
 * pointer in *save_sp, and resumes the stack
 * new_sp (built by cuemu_switch's own epilogue or by fiber_frame() in
 * cuda_emu.cpp). cuemu_fiber_start is the first "return address" of a new
 * fiber: it calls cuemu_fiber_main(r12), which never returns. MXCSR and the
 * x87 control word are not switched (reloading them stalls the pipeline):
 * kernels never change rounding modes, and all fibers share the thread's. */
#if defined(__x86_64__)
    .text
    .globl cuemu_switch
    .type cuemu_switch, @function
cuemu_switch:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .cfi_endproc
    .size cuemu_switch, .-cuemu_switch

    .globl cuemu_fiber_start
    .type cuemu_fiber_start, @function
cuemu_fiber_start:
    .cfi_startproc
    .cfi_undefined rip
    movq %r12, %rdi
    andq $-16, %rsp
    call cuemu_fiber_main
    ud2
    .cfi_endproc
    .size cuemu_fiber_start, .-cuemu_fiber_start
#endif
    .section .note.GNU-stack,"",@progbits
