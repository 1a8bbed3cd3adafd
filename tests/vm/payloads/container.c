/* container CMD [ARGS...]: what a container runtime does to cgroups, without the rest: a new
 * cgroup namespace rooted at the current cgroup and a new mount namespace with a fresh cgroup2
 * mount at /sys/fs/cgroup (its root is the namespace's root), then exec CMD. busybox's unshare
 * has no -C (cgroup namespace), hence this payload. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <sys/mount.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: container CMD [ARGS...]\n");
        return 2;
    }
    if (unshare(CLONE_NEWCGROUP | CLONE_NEWNS) != 0) {
        perror("container: unshare");
        return 1;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        perror("container: make / private");
        return 1;
    }
    if (umount2("/sys/fs/cgroup", MNT_DETACH) != 0) {
        perror("container: umount /sys/fs/cgroup");
        return 1;
    }
    if (mount("none", "/sys/fs/cgroup", "cgroup2", 0, NULL) != 0) {
        perror("container: mount cgroup2");
        return 1;
    }
    execvp(argv[1], argv + 1);
    perror("container: exec");
    return 127;
}
