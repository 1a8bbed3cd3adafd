/* forkstorm W [orphans]: W workers fork in a tight loop for ever, each child exiting at once
 * (the worker reaps it). With "orphans", each child first forks a grandchild and exits before
 * it, so the grandchild is orphaned and reparented to the nearest child subreaper (claude-cage),
 * which then has a flood of processes to reap. No fork is ever waited for in a sleep: this is
 * churn, not a count held at pids.max (a failed fork backs off 1 ms).
 * Prints "forkstorm: W workers" once every worker runs; the top process then waits for ever. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void worker(int orphans, int ready_fd)
{
    char c = 'w';
    if (write(ready_fd, &c, 1) != 1)
        _exit(1);
    close(ready_fd);
    for (;;) {
        pid_t pid = fork();
        if (pid == 0) {
            if (orphans && fork() == 0)
                _exit(0); /* the grandchild: orphaned if its parent is gone first */
            _exit(0);
        }
        if (pid < 0) {
            usleep(1000);
            continue;
        }
        while (waitpid(pid, NULL, 0) < 0)
            ;
    }
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "orphans") != 0)) {
        fprintf(stderr, "usage: forkstorm W [orphans]\n");
        return 2;
    }
    int w = atoi(argv[1]);
    int orphans = argc == 3;
    int fds[2];
    if (pipe(fds) != 0) {
        perror("forkstorm: pipe");
        return 1;
    }
    for (int i = 0; i < w; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("forkstorm: fork");
            return 1;
        }
        if (pid == 0) {
            close(fds[0]);
            worker(orphans, fds[1]);
        }
    }
    close(fds[1]);
    int got = 0;
    char buf[64];
    while (got < w) {
        ssize_t r = read(fds[0], buf, sizeof buf);
        if (r <= 0) {
            fprintf(stderr, "forkstorm: only %d of %d workers started\n", got, w);
            return 1;
        }
        got += (int)r;
    }
    printf("forkstorm: %d workers\n", w);
    fflush(stdout);
    for (;;)
        pause();
}
