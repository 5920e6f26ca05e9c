/* A native service for bench/revival: appends "<pid> <CLOCK_MONOTONIC ns>" to ./stamps as its
 * first act, then waits to be killed. The time is the new process's own first instruction. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    FILE *f = fopen("stamps", "a");
    if (!f) return 1;
    fprintf(f, "%d %lld\n", (int)getpid(), (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
    fclose(f);
    for (;;) pause();
}
