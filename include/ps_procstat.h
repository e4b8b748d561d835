/* Clocks and process figures read by the sampler: per-thread CPU time from a
 * kernel TID, process CPU time, resident memory and physical memory. Pure C. */
#ifndef PS_PROCSTAT_H
#define PS_PROCSTAT_H

#include <stdint.h>

/* CLOCK_MONOTONIC in ns. */
int64_t ps_mono_ns(void);

/* CPU time consumed by kernel thread `tid` in ns, or -1 when it cannot be
 * read (the thread exited). Costs one clock_gettime. */
int64_t ps_thread_cpu_ns(uint64_t tid);

/* CPU time consumed by the whole process in ns. */
int64_t ps_process_cpu_ns(void);

/* Kernel TIDs of this process's threads (from /proc/self/task) into `tids`,
 * at most `cap`; returns how many, or -1 when the list cannot be read. */
int ps_process_tids(uint64_t *tids, int cap);

/* Resident set size in kB, 0 when unknown. */
uint64_t ps_rss_kb(void);

/* Physical memory in kB, 0 when unknown. */
uint64_t ps_ram_kb(void);

#endif /* PS_PROCSTAT_H */
