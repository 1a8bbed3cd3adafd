/* forkbomb: every process calls fork() forever, ignoring failures.
 * After a failed fork it sleeps 10 ms so a capped bomb does not starve the
 * (emulated) machine; it still holds its cgroup at pids.max. */
#include <unistd.h>

int main(void)
{
    for (;;) {
        if (fork() < 0)
            usleep(10000);
    }
}
