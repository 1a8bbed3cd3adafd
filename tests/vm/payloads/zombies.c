/* zombies N HOLD_S: fork N children that exit at once and are never waited for, wait until
 * every one of them is a zombie (its /proc/PID/stat state is Z), print "zombies: N ready",
 * hold HOLD_S seconds, and exit 0 without reaping any: the N zombies are then reparented to the
 * nearest child subreaper. Exit 1 if a child does not turn into a zombie within 10 s. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char state_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return '?';
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return '?';
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : '?';
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: zombies N HOLD_S\n");
        return 2;
    }
    int n = atoi(argv[1]);
    int hold = atoi(argv[2]);
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    if (!pids)
        return 1;
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        if (pids[i] < 0) {
            perror("zombies: fork");
            return 1;
        }
        if (pids[i] == 0)
            _exit(0);
    }
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++) {
        while (state_of(pids[i]) != 'Z') {
            clock_gettime(CLOCK_MONOTONIC, &t);
            if (t.tv_sec - t0.tv_sec > 10) {
                fprintf(stderr, "zombies: child %d is not a zombie after 10 s\n", (int)pids[i]);
                return 1;
            }
            usleep(1000);
        }
    }
    printf("zombies: %d ready\n", n);
    fflush(stdout);
    sleep((unsigned)hold);
    return 0;
}
