/* leftovers N STAMPFILE: leave N processes behind, then exit 0.
 *
 * Writes "<start_ns> <exit_ns>\n" (CLOCK_MONOTONIC, nanoseconds) to STAMPFILE: the time main()
 * began and the time just before _exit, once all N processes exist. A harness that records
 * when its own child (claude-cage, or this program run directly) was reaped gets from these the
 * launch time (fork to main) and the clean-up time (exit to reaped) without tracing anything.
 *
 * The N processes, round-robin: a plain child that pause()s, a child that called setsid()
 * first, and a child that stopped itself with SIGSTOP. Each reports on a pipe once in place, so
 * all N exist when the top exits. N may be 0 (then it only writes the stamps).
 * With STAMPFILE "-" no stamps are written. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    long long start = now_ns();
    if (argc != 3) {
        fprintf(stderr, "usage: leftovers N STAMPFILE\n");
        return 2;
    }
    long n = atol(argv[1]);
    int fds[2];
    if (pipe(fds) != 0) {
        perror("leftovers: pipe");
        return 1;
    }
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "leftovers: fork %ld of %ld: ", i + 1, n);
            perror("");
            return 1;
        }
        if (pid == 0) {
            close(fds[0]);
            if (i % 3 == 1)
                setsid();
            char c = 'x';
            if (write(fds[1], &c, 1) != 1)
                _exit(1);
            close(fds[1]);
            if (i % 3 == 2)
                raise(SIGSTOP);
            for (;;)
                pause();
        }
    }
    close(fds[1]);
    char buf[4096];
    long got = 0;
    while (got < n) {
        ssize_t r = read(fds[0], buf, sizeof buf);
        if (r <= 0) {
            fprintf(stderr, "leftovers: only %ld of %ld reported\n", got, n);
            return 1;
        }
        got += r;
    }
    if (strcmp(argv[2], "-") == 0)
        _exit(0);
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror("leftovers: open the stamp file");
        return 1;
    }
    char line[64];
    long long end = now_ns();
    int len = snprintf(line, sizeof line, "%lld %lld\n", start, end);
    if (write(fd, line, len) != len)
        _exit(1);
    _exit(0); /* the stamp file is closed by the exit itself */
}
