/* nolibc: a program that exits at once without a C library (no glibc start-up: built with
 * -nostdlib), the floor beneath every exec. glibcstart minus nolibc is what glibc's start-up
 * costs each process (on a virtual machine, mostly the CPUID instructions of its CPU feature and
 * cache detection, each a trap to the hypervisor). Exits with status 0. */
#if defined(__x86_64__)
__asm__(".globl _start\n_start:\n\tmov $60, %eax\n\txor %edi, %edi\n\tsyscall\n");
#elif defined(__aarch64__)
__asm__(".globl _start\n_start:\n\tmov x8, #93\n\tmov x0, #0\n\tsvc #0\n");
#else
#error "nolibc: x86_64 or aarch64 only"
#endif
