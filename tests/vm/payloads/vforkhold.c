/* vforkhold: the parent calls vfork(); the vfork child prints "vforkhold: parent P child C"
 * and sleeps for ever without exec or _exit, so the parent stays blocked inside vfork (in the
 * kernel's wait for the child to release the shared memory) until the child dies.
 * The child only makes raw system calls (write, pause): nothing that would touch the parent's
 * stack frames or libc state it shares. */
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* decimal digits of n into buf (which has room), returns the length */
static int digits(char *buf, long n)
{
    char tmp[24];
    int k = 0, len = 0;
    do {
        tmp[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0);
    while (k > 0)
        buf[len++] = tmp[--k];
    return len;
}

int main(void)
{
    static char line[96];
    int len = 0;
    const char *head = "vforkhold: parent ";
    memcpy(line, head, strlen(head));
    len = (int)strlen(head);
    len += digits(line + len, (long)getpid());
    pid_t pid = vfork();
    if (pid == 0) {
        const char *mid = " child ";
        memcpy(line + len, mid, strlen(mid));
        len += (int)strlen(mid);
        len += digits(line + len, syscall(SYS_getpid));
        line[len++] = '\n';
        if (syscall(SYS_write, 1, line, len) != len)
            syscall(SYS_exit, 1);
        for (;;)
            syscall(SYS_pause);
    }
    /* Reached only once the child is gone (it cannot exit normally). */
    return pid < 0 ? 1 : 0;
}
