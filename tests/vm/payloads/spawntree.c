/* spawntree N: create N long-lived descendants, then the top process exits 0.
 * Kinds, round-robin: plain child; child that called setsid(); double-forked
 * grandchild (its parent exits at once, so it is orphaned); setsid'd
 * grandchild of a child that stays; a child that SIGSTOPs itself.
 * Every descendant reports on a pipe when it is in place; the top waits for
 * N reports before it exits, so all N exist when it ends.
 * Prints "spawntree: N ready" on stdout. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int report_fd;

static void settle(int stop)
{
    char c = 'x';
    if (write(report_fd, &c, 1) != 1)
        _exit(1);
    close(report_fd);
    if (stop)
        raise(SIGSTOP);
    for (;;)
        pause();
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: spawntree N\n");
        return 2;
    }
    long n = atol(argv[1]);
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        return 1;
    }
    report_fd = fds[1];
    long made = 0;
    for (long i = 0; made < n; i++) {
        int kind = (int)(i % 5);
        if (kind == 3 && made + 2 > n)
            kind = 0; /* kind 3 makes two processes */
        pid_t pid = fork();
        if (pid < 0) {
            perror("spawntree: fork");
            return 1;
        }
        if (pid == 0) {
            close(fds[0]);
            switch (kind) {
            case 0:
                settle(0);
            case 1:
                setsid();
                settle(0);
            case 2: /* double fork: the grandchild is orphaned */
                if (fork() == 0) {
                    setsid();
                    settle(0);
                }
                _exit(0);
            case 3: /* a child that stays, with a setsid'd grandchild */
                if (fork() == 0) {
                    setsid();
                    settle(0);
                }
                settle(0);
            case 4:
                settle(1);
            }
        }
        if (kind == 2) {
            waitpid(pid, NULL, 0); /* the intermediate */
            made += 1;
        } else {
            made += kind == 3 ? 2 : 1;
        }
    }
    close(fds[1]);
    char buf[256];
    long got = 0;
    while (got < n) {
        ssize_t r = read(fds[0], buf, sizeof buf);
        if (r <= 0) {
            fprintf(stderr, "spawntree: only %ld of %ld reported\n", got, n);
            return 1;
        }
        got += r;
    }
    printf("spawntree: %ld ready\n", n);
    fflush(stdout);
    return 0;
}
