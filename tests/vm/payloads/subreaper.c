/* subreaper CMD [ARGS...]: become a child subreaper (PR_SET_CHILD_SUBREAPER), run CMD, wait for
 * CMD alone (never for anything else), then count the processes reparented to us: every
 * /proc/PID/stat whose parent is this process. Prints
 *   "subreaper: status S, inherited Z zombies and L live processes"
 * (S: CMD's exit status, 128+N for a signal), kills and reaps what it inherited, and exits with
 * CMD's status. Orphans of CMD's tree that nobody below reaped end up here. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: subreaper CMD [ARGS...]\n");
        return 2;
    }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
        perror("subreaper: prctl");
        return 1;
    }
    pid_t cmd = fork();
    if (cmd < 0) {
        perror("subreaper: fork");
        return 1;
    }
    if (cmd == 0) {
        execvp(argv[1], argv + 1);
        perror("subreaper: exec");
        _exit(127);
    }
    int st;
    while (waitpid(cmd, &st, 0) < 0)
        ;
    int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    pid_t me = getpid();
    int zombies = 0, live = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        char state;
        int ppid;
        if (!p || sscanf(p + 1, " %c %d", &state, &ppid) != 2 || ppid != me)
            continue;
        if (state == 'Z') {
            zombies++;
        } else {
            live++;
            kill(atoi(e->d_name), SIGKILL);
        }
    }
    if (d)
        closedir(d);
    printf("subreaper: status %d, inherited %d zombies and %d live processes\n", status, zombies, live);
    fflush(stdout);
    while (waitpid(-1, NULL, 0) > 0)
        ;
    return status;
}
