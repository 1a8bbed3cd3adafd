/* mincage [--limits] CGROUP2-PARENT PROGRAM [ARGS...]: the least a cage costs, as a floor for
 * claude-cage's start-up overhead. Makes PARENT/mincage-bot/mincage-<pid>/main, starts PROGRAM in
 * it with clone3(CLONE_INTO_CGROUP), waits for it, writes cgroup.kill, and removes the three
 * cgroups. No policy, no state file, no supervision, no events: only the kernel's part. With
 * --limits it also does the cgroup writes of claude-cage's built-in default policy: enables the
 * memory and pids controllers for the parent's, the bot's and the cage's children, and writes the cage's
 * memory.high, memory.max, memory.swap.max, memory.oom.group and pids.max. Exits with PROGRAM's
 * status (or 125 when the cgroups cannot be made). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* put DIR/FILE VALUE: one cgroup file write; 0 or -1 (said on stderr) */
static int put(const char *dir, const char *file, const char *value)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, value, strlen(value)) != (ssize_t)strlen(value)) {
        fprintf(stderr, "mincage: %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    int limits = argc > 1 && strcmp(argv[1], "--limits") == 0;
    if (limits) {
        argv++;
        argc--;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: mincage [--limits] CGROUP2-PARENT PROGRAM [ARGS...]\n");
        return 2;
    }
    char bot[4096], cage[4200], main_[4300], kill_[4300];
    snprintf(bot, sizeof bot, "%s/mincage-bot", argv[1]);
    snprintf(cage, sizeof cage, "%s/mincage-%d", bot, (int)getpid());
    snprintf(main_, sizeof main_, "%s/main", cage);
    snprintf(kill_, sizeof kill_, "%s/cgroup.kill", cage);
    if ((mkdir(bot, 0755) != 0 && errno != EEXIST) || mkdir(cage, 0755) != 0 || mkdir(main_, 0755) != 0) {
        perror("mincage: mkdir");
        return 125;
    }
    if (limits && (put(argv[1], "cgroup.subtree_control", "+memory +pids") || put(bot, "cgroup.subtree_control", "+memory +pids") ||
                   put(cage, "cgroup.subtree_control", "+memory +pids") ||
                   put(cage, "memory.high", "858993459") || put(cage, "memory.max", "1073741824") ||
                   put(cage, "memory.swap.max", "0") || put(cage, "memory.oom.group", "1") || put(cage, "pids.max", "4096")))
        return 125;
    int cfd = open(main_, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cfd < 0) {
        perror("mincage: open");
        return 125;
    }
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = CLONE_INTO_CGROUP;
    ca.exit_signal = SIGCHLD;
    ca.cgroup = (unsigned long long)cfd;
    long pid = syscall(SYS_clone3, &ca, sizeof ca);
    if (pid < 0) {
        perror("mincage: clone3");
        return 125;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        _exit(127);
    }
    close(cfd);
    int st;
    waitpid((pid_t)pid, &st, 0);
    int k = open(kill_, O_WRONLY | O_CLOEXEC);
    if (k >= 0) {
        if (write(k, "1", 1) != 1)
            perror("mincage: cgroup.kill");
        close(k);
    }
    rmdir(main_);
    rmdir(cage);
    rmdir(bot); /* fails while another mincage is running: fine */
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
