/* alloc MB [hold_s]: allocate MB megabytes, touch every page, optionally hold them.
 * Prints "alloc: touched MB MB" on stdout once all pages are resident.
 * Exit 0 on success, 2 on usage error, 3 if malloc fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: alloc MB [hold_s]\n");
        return 2;
    }
    long mb = atol(argv[1]);
    long hold = argc == 3 ? atol(argv[2]) : 0;
    size_t len = (size_t)mb << 20;
    char *p = malloc(len);
    if (!p) {
        perror("alloc: malloc");
        return 3;
    }
    long page = sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < len; i += (size_t)page)
        p[i] = (char)(i / (size_t)page) | 1; /* non-zero: a real anonymous page */
    printf("alloc: touched %ld MB\n", mb);
    fflush(stdout);
    if (hold > 0)
        sleep((unsigned)hold);
    return 0;
}
