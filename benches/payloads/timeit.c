/* timeit REPS STAMPFILE CMD [ARGS...]: run CMD REPS times, one after the other, and print one
 * line per run:
 *
 *   <total_us> <launch_us> <child_us> <teardown_us> <maxrss_kib> <status>
 *
 * total: fork of CMD to its reaping by this harness. When STAMPFILE is not "-", CMD is expected
 * to start (directly or through claude-cage) a program that writes "<start_ns> <exit_ns>" there
 * (CLOCK_MONOTONIC; benches/payloads/leftovers does): launch is fork to that program's main(),
 * child is main() to just before its exit, teardown is its exit to the reaping of CMD. Without
 * a stamp file those three are -1. maxrss is ru_maxrss of CMD from wait4(2) (the largest
 * resident set of CMD and of the descendants it reaped). status is the wait status, decoded
 * (exit code, or 128+signal).
 * CMD's stdout and stderr are left alone (with TIMEIT_DEVNULL set in the environment, CMD's
 * stdout goes to /dev/null); this program writes only its result lines. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: timeit REPS STAMPFILE CMD [ARGS...]\n");
        return 2;
    }
    long reps = atol(argv[1]);
    const char *stamp = argv[2];
    int use_stamp = strcmp(stamp, "-") != 0;
    int devnull = getenv("TIMEIT_DEVNULL") != NULL;
    for (long r = 0; r < reps; r++) {
        if (use_stamp)
            unlink(stamp);
        long long t0 = now_ns();
        pid_t pid = fork();
        if (pid < 0) {
            perror("timeit: fork");
            return 1;
        }
        if (pid == 0) {
            if (devnull) {
                int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
                if (fd >= 0)
                    dup2(fd, 1);
            }
            execvp(argv[3], argv + 3);
            perror("timeit: exec");
            _exit(127);
        }
        int st;
        struct rusage ru;
        pid_t w;
        do
            w = wait4(pid, &st, 0, &ru);
        while (w < 0 && errno == EINTR);
        long long t3 = now_ns();
        if (w < 0) {
            perror("timeit: wait4");
            return 1;
        }
        int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        long long launch = -1, child = -1, teardown = -1;
        if (use_stamp) {
            FILE *f = fopen(stamp, "r");
            long long t1, t2;
            if (f && fscanf(f, "%lld %lld", &t1, &t2) == 2) {
                launch = (t1 - t0) / 1000;
                child = (t2 - t1) / 1000;
                teardown = (t3 - t2) / 1000;
            }
            if (f)
                fclose(f);
        }
        printf("%lld %lld %lld %lld %ld %d\n", (t3 - t0) / 1000, launch, child, teardown,
               ru.ru_maxrss, status);
        fflush(stdout);
    }
    return 0;
}
