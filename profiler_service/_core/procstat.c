/* Clocks and process figures: see ps_procstat.h. */
#define _GNU_SOURCE
#include "ps_procstat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int64_t
ps_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
ps_thread_cpu_ns(uint64_t tid)
{
    /* The kernel's per-thread CPU clock id, as pthread_getcpuclockid builds
     * it (MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)); unlike that call it is
     * safe for a thread that may already have exited: the kernel says EINVAL. */
    clockid_t clock = (clockid_t)((~(unsigned int)tid) << 3) | 6;
    struct timespec ts;

    if (tid == 0 || clock_gettime(clock, &ts) != 0) {
        return -1;
    }
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
ps_process_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) {
        return 0;
    }
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t
ps_rss_kb(void)
{
    char buf[128];
    ssize_t n;
    int fd;

    do {
        fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        return 0;
    }
    do {
        n = read(fd, buf, sizeof(buf) - 1);
    } while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    /* "size resident shared ...", in pages. */
    char *end;
    (void)strtoull(buf, &end, 10);
    uint64_t resident = strtoull(end, NULL, 10);
    long page = sysconf(_SC_PAGESIZE);
    return page > 0 ? resident * (uint64_t)page / 1024 : 0;
}

uint64_t
ps_ram_kb(void)
{
    long pages = sysconf(_SC_PHYS_PAGES);
    long page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) {
        return 0;
    }
    return (uint64_t)pages * (uint64_t)page / 1024;
}

int
ps_process_tids(uint64_t *tids, int cap)
{
    DIR *dir = opendir("/proc/self/task");
    int n = 0;

    if (dir == NULL) {
        return -1;
    }
    for (struct dirent *entry; n < cap && (entry = readdir(dir)) != NULL;) {
        char *end;
        unsigned long long tid = strtoull(entry->d_name, &end, 10);
        if (end != entry->d_name && *end == '\0' && tid != 0) {
            tids[n++] = tid;
        }
    }
    closedir(dir);
    return n;
}
