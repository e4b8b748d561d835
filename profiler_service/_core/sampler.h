/* The one process-wide sampler's state, shared by sampler.c (the sampler
 * thread, signals, lifecycle, the Python API) and walker.c (walking threads'
 * frames into the active period). Binding-private: includes Python.h. */
#ifndef PS_SAMPLER_H
#define PS_SAMPLER_H

#include "binding.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct {
    char *file_suffix;  /* Owned; matched against the end of co_filename */
    size_t file_suffix_len;
    char *qualname;     /* Owned; equal to co_qualname */
} idle_pattern;

/* A thread the sampler has seen, kept across periods for its clocks. */
typedef struct {
    uint64_t ident;
    uint64_t native_id;
    int64_t last_cpu_ns;
    int64_t last_wall_ns;
    uint64_t walk;         /* last walk that saw it */
    uint64_t period_gen;   /* period generation `index` belongs to */
    uint16_t index;        /* thread index in that period */
    int named;             /* threading knew its name when it was added */
} tracked_thread;

/* code object -> frame id for the active period. Each key holds a strong
 * reference, so an address cannot be reused by another code object while the
 * mapping exists. */
typedef struct {
    PyObject **keys;   /* Owned references; NULL = empty slot */
    uint32_t *values;
    size_t n_slots;    /* power of two */
    size_t count;
} code_map;

typedef struct ps_walk_candidate ps_walk_candidate;  /* walker.c */

typedef struct {
    int running;                /* guarded by the GIL */
    atomic_int stopping;
    int mode;
    double frequency;
    int64_t interval_ns;
    uint32_t max_depth;
    uint32_t max_stacks;
    uint64_t max_samples;
    PyInterpreterState *interp;
    PyThreadState *tstate;      /* the sampler thread's own; Borrowed */
    pthread_t thread;
    pthread_mutex_t load_lock;
    ps_period *active;          /* Owned */
    uint64_t period_gen;
    code_map codes;
    tracked_thread *tracked;    /* Owned */
    size_t n_tracked;
    size_t cap_tracked;
    uint64_t walk;
    int walking;                /* a walk is in progress (GIL) */
    pthread_t walker;           /* the thread doing it */
    int release_deferred;       /* stop() came during that walk: it frees
                                   the walk state on its way out (GIL) */
    ps_walk_candidate *candidates;  /* Owned; threads the walk chose */
    size_t n_candidates;
    size_t cap_candidates;
    idle_pattern *idle;         /* Owned */
    size_t n_idle;
    uint32_t *stack_buf;        /* Owned; max_depth + 1 frame ids */
    int64_t last_tick_ns;
    long main_tid;              /* kernel TID of the main thread, 0 = no trip route */
    int trip_signum;            /* the signal whose Python handler is _main_tick */
    int64_t main_cpu_ns;        /* main thread's CPU at the last tick */
    atomic_uint_fast64_t main_ticks;  /* ticks handed to the main thread */
    atomic_int signal_lost;     /* somebody replaced our signal handler */
    int64_t load_cpu_ns;
    int64_t load_wall_ns;
    uint64_t rng;
} ps_sampler;

/* The one mutable C global: signals and interval timers are per process. */
extern ps_sampler ps_sampler_state;
#define S ps_sampler_state

/* Walk every Python thread but the sampler's into the active period. With
 * `baseline`, only record each thread's clocks (used at start). `ticks` is
 * how many timer ticks this walk covers. Needs the GIL. Python code can run
 * inside it (see walker.c): a walk begun while another is in progress
 * returns at once, counting its ticks as missed. */
void ps_walk_all(uint64_t ticks, int baseline);

/* Free what the walk uses (code map, tracked threads, stack buffer, idle
 * patterns): what stop() deferred while a walk was in progress. Needs the
 * GIL. Defined in sampler.c. */
void ps_sampler_release_walk_state(void);

/* Drop the code-object map of the active period (its references). Needs the
 * GIL. */
void ps_walker_forget_codes(void);

/* Forget every tracked thread (and the walk's candidate list). */
void ps_walker_forget_threads(void);

#endif /* PS_SAMPLER_H */
