/* minlaunch PROGRAM [ARGS...]: the least any launcher adds to a program's start-up, as the floor
 * beneath mincage's: its own exec, a fork (clone3 without a cgroup, as mincage's without
 * CLONE_INTO_CGROUP), the program's exec and a wait. No cgroup. mincage minus minlaunch is the
 * kernel's part of a cage; minlaunch minus the bare program is the launcher's. Exits with
 * PROGRAM's status. */
#define _GNU_SOURCE
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: minlaunch PROGRAM [ARGS...]\n");
        return 2;
    }
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &ca, sizeof ca);
    if (pid < 0) {
        perror("minlaunch: clone3");
        return 125;
    }
    if (pid == 0) {
        execvp(argv[1], argv + 1);
        _exit(127);
    }
    int st;
    waitpid((pid_t)pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
