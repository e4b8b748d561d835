/* One profiling period as plain C data: threads, the stack tree, one record
 * per kept sample, the once-a-second load series, counters and the period's
 * time span. The sampler appends to the active period; a finished period is
 * immutable, which is what lets the writer read it with the GIL released. */
#ifndef PS_PERIOD_H
#define PS_PERIOD_H

#include <stddef.h>
#include <stdint.h>

#include "ps_stacks.h"
#include "ps_stall.h"
#include "ps_vec.h"

/* One kept sample: 16 bytes. */
typedef struct {
    uint32_t t_ms;       /* ms since the period's start */
    uint32_t node;       /* leaf stack node */
    uint32_t weight_us;  /* CPU time (CPU modes) or wall time (real) it stands for */
    uint16_t thread;     /* index in the period's thread table */
    uint16_t reserved;
} ps_sample;

/* One point of the load series, taken once a second. */
typedef struct {
    uint32_t t_ms;          /* ms since the period's start */
    uint32_t cpu_permille;  /* process CPU over the last interval; 1000 = one core */
    uint64_t rss_kb;        /* resident set size */
} ps_load;

typedef struct {
    uint64_t ident;      /* Python thread ident (threading.get_ident()) */
    uint64_t native_id;  /* kernel TID (threading.get_native_id()), 0 if unknown */
    char *name;          /* Owned, UTF-8, NUL-terminated; never NULL */
    uint64_t samples;    /* sampling intervals its samples stand for
                            (ps_period_count_sample) */
    uint64_t weight_us;  /* sum of their weights */
    uint64_t carry;      /* weight not yet counted, µs x millihertz */
} ps_thread;

typedef struct {
    uint64_t ticks;        /* timer ticks handled by the sampler */
    uint64_t missed;       /* ticks that arrived while a walk was under way */
    uint64_t samples;      /* samples kept */
    uint64_t idle;         /* thread samples dropped as idle */
    uint64_t truncated;    /* samples whose stack was cut (depth or table cap) */
    uint64_t dropped;      /* samples lost to a failed allocation or a cap */
    uint64_t sampling_ns;  /* time the sampler spent walking, GIL held */
    uint64_t signal_lost;  /* 1: somebody replaced the sampler's signal
                              handler during the period (ticks stopped) */
} ps_stats;

enum { PS_MODE_PROF = 0, PS_MODE_VIRTUAL = 1, PS_MODE_REAL = 2 };

#define PS_MAX_THREADS 65535u

typedef struct {
    /* What the period was recorded with. */
    int mode;                   /* PS_MODE_* */
    uint64_t frequency_mhz;     /* requested frequency in millihertz */
    uint32_t max_depth;         /* frames kept per stack, leaf first */
    int64_t pid;
    /* When. Wall clock for humans, monotonic for offsets. */
    int64_t start_unix_ms;
    int64_t end_unix_ms;        /* 0 while the period is active */
    int64_t start_mono_ns;
    int64_t end_mono_ns;
    /* What. */
    ps_stacks stacks;
    ps_vec threads;             /* ps_thread */
    ps_vec samples;             /* ps_sample, t_ms non-decreasing */
    ps_vec load;                /* ps_load, t_ms increasing */
    ps_stall_list stalls;       /* the reactor's longest stalls */
    ps_stats stats;
} ps_period;

/* Allocate an empty period started now (CLOCK_REALTIME and CLOCK_MONOTONIC).
 * Returns NULL when memory is exhausted. */
ps_period *ps_period_new(int mode, uint64_t frequency_mhz, uint32_t max_depth,
                         uint32_t max_nodes);

/* Free a period and everything it owns. NULL is allowed. */
void ps_period_free(ps_period *p);

/* Mark the period finished now. Idempotent. */
void ps_period_finish(ps_period *p);

/* Finish `done` and begin `next` (new, still empty) at one instant, now, so
 * that consecutive periods of a run meet exactly: `done` ends on a whole
 * millisecond of its wall clock and `next` starts there, on the same wall
 * clock (no drift builds up across rotations). A wall clock that was stepped
 * by more than a second since `done` began is read afresh instead. */
void ps_period_hand_over(ps_period *done, ps_period *next);

/* Add a thread and store its index in *index. `name` is copied. Returns 0,
 * PS_ENOMEM, or PS_EFULL past PS_MAX_THREADS. */
int ps_period_add_thread(ps_period *p, uint64_t ident, uint64_t native_id,
                         const char *name, size_t name_len, uint16_t *index);

/* Replace the name of thread `index` (copied). Returns 0 or PS_ENOMEM. */
int ps_period_rename_thread(ps_period *p, uint16_t index, const char *name,
                            size_t name_len);

static inline ps_thread *
ps_period_thread(const ps_period *p, uint16_t index)
{
    return (ps_thread *)ps_vec_at(&p->threads, index);
}

/* How many sampling intervals (1/frequency s) a sample of `weight_us` stands
 * for, given what its thread carries (*carry, µs x millihertz, less than one
 * interval; updated): the interval boundaries the thread's summed weight
 * crosses with it (docs/FORMAT.md, "What a sample is, in each mode"; the
 * readers compute the same). No overflow: weight_us * 10^7 mHz < 2^64. */
static inline uint64_t
ps_period_count_sample(uint64_t *carry, uint32_t weight_us,
                       uint64_t frequency_mhz)
{
    const uint64_t interval = 1000000000u;  /* µs x millihertz */
    uint64_t total =
        *carry + (uint64_t)weight_us * (frequency_mhz ? frequency_mhz : 1);
    *carry = total % interval;
    return total / interval;
}

/* Append a sample at monotonic time `now_ns`. Returns 0 or PS_ENOMEM. */
int ps_period_add_sample(ps_period *p, int64_t now_ns, uint16_t thread,
                         uint32_t node, uint32_t weight_us);

/* Append a load point at monotonic time `now_ns`. Returns 0 or PS_ENOMEM. */
int ps_period_add_load(ps_period *p, int64_t now_ns, uint32_t cpu_permille,
                       uint64_t rss_kb);

/* A new period holding `n` finished periods of one process, in time order,
 * as if they had been recorded as one: threads matched by (ident, native id),
 * frames and stacks re-interned, sample and load times re-based, stalls
 * re-mapped (the longest kept), counters
 * summed. Settings come from the first period, the stack cap is the largest.
 * Returns 0 with the new period in *out, PS_EINVAL (n == 0 or out of order)
 * or PS_ENOMEM. The sources are only read. */
int ps_period_concat(ps_period *const *periods, size_t n, ps_period **out);

/* Milliseconds the period spans (to now while it is active). */
int64_t ps_period_duration_ms(const ps_period *p);

/* Bytes of heap the period holds. */
size_t ps_period_heap_bytes(const ps_period *p);

/* "prof", "virtual" or "real". */
const char *ps_mode_name(int mode);

#endif /* PS_PERIOD_H */
