/* cpuid [PROGRAM [ARGS...]]...: what the CPUID instruction costs on this machine, and how many of
 * them a program's start-up executes. On a virtual machine each CPUID traps to the hypervisor,
 * and glibc's start-up (its CPU feature and cache detection, in every dynamic or static glibc
 * process) executes dozens of them before main(). Prints
 *   cpuid: X us per CPUID instruction (median of 21 rounds of 200)
 * then, for each PROGRAM given (separated by "--"), runs it under ptrace one instruction at a
 * time and prints
 *   cpuid: NAME: N instructions, M CPUID
 * (NAME: the program's file name; its own process only, not its children; its stdout goes to
 * /dev/null). x86_64 only: elsewhere it prints one line saying so. Exits 125 when a program
 * cannot be traced. */
#define _GNU_SOURCE
#include <stdio.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Steps through argv[0..] (NULL-terminated) and counts its instructions and CPUIDs (0f a2). */
static int count(char **argv)
{
    pid_t p = fork();
    if (p < 0)
        return 125;
    if (p == 0) {
        /* Only this program's lines on stdout. */
        if (!freopen("/dev/null", "w", stdout))
            _exit(127);
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    if (waitpid(p, &st, 0) < 0 || !WIFSTOPPED(st)) {
        fprintf(stderr, "cpuid: %s did not start under ptrace\n", argv[0]);
        return 125;
    }
    long steps = 0, cpuids = 0;
    for (;;) {
        struct user_regs_struct r;
        if (ptrace(PTRACE_GETREGS, p, 0, &r) < 0)
            break;
        errno = 0;
        long w = ptrace(PTRACE_PEEKTEXT, p, (void *)r.rip, 0);
        if (errno == 0 && (w & 0xffff) == 0xa20f)
            cpuids++;
        if (ptrace(PTRACE_SINGLESTEP, p, 0, 0) < 0 || waitpid(p, &st, 0) < 0)
            break;
        steps++;
        if (WIFEXITED(st) || WIFSIGNALED(st))
            break;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "cpuid: %s did not exit 0 under ptrace\n", argv[0]);
        return 125;
    }
    const char *name = strrchr(argv[0], '/');
    printf("cpuid: %s: %ld instructions, %ld CPUID\n", name ? name + 1 : argv[0], steps, cpuids);
    return 0;
}

int main(int argc, char **argv)
{
    enum { ROUNDS = 21, N = 200 };
    double per[ROUNDS];
    unsigned a, b, c, d;
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now_us();
        for (int i = 0; i < N; i++) {
            __cpuid_count(4, i & 3, a, b, c, d);
            __asm__ volatile("" : : "r"(a), "r"(b), "r"(c), "r"(d));
        }
        per[r] = (now_us() - t0) / N;
    }
    qsort(per, ROUNDS, sizeof per[0], cmp);
    printf("cpuid: %.2f us per CPUID instruction (median of %d rounds of %d)\n", per[ROUNDS / 2],
           ROUNDS, N);
    fflush(stdout);
    for (int i = 1; i < argc;) {
        int j = i;
        while (j < argc && strcmp(argv[j], "--") != 0)
            j++;
        argv[j] = NULL; /* the "--" (or argv[argc], NULL already) ends this program's argv */
        if (j > i && count(argv + i) != 0)
            return 125;
        fflush(stdout);
        i = j + 1;
    }
    return 0;
}
#else
int main(void)
{
    printf("cpuid: not an x86_64 machine\n");
    return 0;
}
#endif
