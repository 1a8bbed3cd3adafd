/* migrate CGROUP2-PARENT [N [GAP-MS...]]: what moving a process between cgroups costs (a write of
 * its pid to cgroup.procs), which a systemd cage pays when it moves its holder into
 * <scope>/hold right after systemd moved it into the scope. The kernel takes
 * cgroup_threadgroup_rwsem for writing, and entering that lock waits for an RCU grace period
 * unless a writer left it within about one grace period (rcu_sync). So each of N rounds (default
 * 20) moves a sleeping child "cold", 50 ms after the previous move, then again GAP-MS after that
 * (default 1 ms), for each GAP-MS given. Prints "migrate: cold median X ms (min, max), N rounds"
 * and a line "migrate: G ms after a move: median Y ms (min, max)" per gap. Makes
 * PARENT/migrate-<pid>/{a,b} and removes them; exits 125 when it cannot. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* move PID into DIR; the time the write took, in ms, or -1 */
static double move(const char *dir, pid_t pid)
{
    char path[4200], s[32];
    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    int n = snprintf(s, sizeof s, "%d", (int)pid);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    double t0 = now_ms();
    ssize_t w = write(fd, s, n);
    double t1 = now_ms();
    close(fd);
    return w == n ? t1 - t0 : -1;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void summary(const char *what, double *v, int n)
{
    qsort(v, n, sizeof *v, cmp);
    double m = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    printf("%s median %.3f ms (min %.3f, max %.3f)", what, m, v[0], v[n - 1]);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: migrate CGROUP2-PARENT [N [GAP-MS...]]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 20;
    if (n < 1 || n > 10000) {
        fprintf(stderr, "migrate: N must be 1 to 10000\n");
        return 2;
    }
    int ngaps = argc > 3 ? argc - 3 : 1;
    int gaps[16] = {1};
    if (ngaps > 16) {
        fprintf(stderr, "migrate: at most 16 gaps\n");
        return 2;
    }
    for (int g = 0; argc > 3 && g < ngaps; g++) {
        gaps[g] = atoi(argv[3 + g]);
        if (gaps[g] < 0 || gaps[g] > 1000) {
            fprintf(stderr, "migrate: a gap is 0 to 1000 ms, not %s\n", argv[3 + g]);
            return 2;
        }
    }
    char top[4096], a[4100], b[4100];
    snprintf(top, sizeof top, "%s/migrate-%d", argv[1], (int)getpid());
    snprintf(a, sizeof a, "%s/a", top);
    snprintf(b, sizeof b, "%s/b", top);
    if (mkdir(top, 0755) != 0 || mkdir(a, 0755) != 0 || mkdir(b, 0755) != 0) {
        perror("migrate: mkdir");
        rmdir(a);
        rmdir(top);
        return 125;
    }
    pid_t child = fork();
    if (child == 0) {
        for (;;)
            pause();
    }
    int status = 0;
    double *cold = calloc(n, sizeof *cold), *after = calloc((size_t)n * ngaps, sizeof *after);
    if (child < 0 || !cold || !after) {
        perror("migrate: fork");
        status = 125;
    }
    const char *in = a;
    for (int i = 0; status == 0 && i < n * ngaps; i++) {
        usleep(50000);
        in = in == a ? b : a;
        double c = move(in, child);
        usleep(gaps[i % ngaps] * 1000);
        in = in == a ? b : a;
        double w = move(in, child);
        if (c < 0 || w < 0) {
            fprintf(stderr, "migrate: moving %d: %s\n", (int)child, strerror(errno));
            status = 125;
            break;
        }
        if (i % ngaps == 0)
            cold[i / ngaps] = c;
        after[(i % ngaps) * n + i / ngaps] = w;
    }
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
    if (status == 0) {
        printf("migrate: ");
        summary("cold", cold, n);
        printf(", %d rounds\n", n);
        for (int g = 0; g < ngaps; g++) {
            printf("migrate: %d ms after a move:", gaps[g]);
            summary("", after + (size_t)g * n, n);
            printf("\n");
        }
    }
    /* the child is reaped, so both are empty; a reaped task may linger a moment (EBUSY) */
    const char *dirs[] = {a, b, top};
    for (int d = 0; d < 3; d++) {
        int r, i = 0;
        while ((r = rmdir(dirs[d])) != 0 && errno == EBUSY && i++ < 100)
            usleep(10000);
        if (r != 0) {
            fprintf(stderr, "migrate: rmdir %s: %s\n", dirs[d], strerror(errno));
            status = 125;
        }
    }
    return status;
}
