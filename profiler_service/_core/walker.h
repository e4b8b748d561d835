/* The walker: walks every Python thread's frames with the public frame API
 * and folds the stacks into a period. Its state (code-object map, tracked
 * threads and their clocks, idle patterns, stack buffer, re-entry guard) is
 * its own; the sampler embeds one and tells it which period to walk into.
 * Binding-private: includes Python.h. Every function needs the GIL.
 *
 * walker.c walks, threads.c keeps the threads' clocks and chooses which to
 * walk, codemap.c interns code objects as frames (and tests them against
 * the idle patterns) and keeps their lines, threadname.c names threads. */
#ifndef PS_WALKER_H
#define PS_WALKER_H

#include "binding.h"

#include <pthread.h>
#include <stdint.h>

#include "ps_vec.h"

typedef struct {
    char *file_suffix;  /* Owned; matched against the end of co_filename */
    size_t file_suffix_len;
    char *qualname;     /* Owned; equal to co_qualname */
    size_t qualname_len;
} ps_idle_pattern;

/* One entry of the line cache: the line of an instruction offset. */
typedef struct {
    const PyObject *code;  /* a key of the code map (which holds it); NULL = empty */
    int lasti;
    uint32_t line;
} ps_code_line;

/* code object -> frame id for the current period, and (code object,
 * instruction offset) -> line. Each key of `keys` holds a strong reference,
 * so an address cannot be reused by another code object while the mapping
 * exists; the line cache only names code objects that are keys. */
typedef struct {
    PyObject **keys;   /* Owned references; NULL = empty slot */
    uint32_t *values;
    size_t n_slots;    /* power of two */
    size_t count;
    ps_code_line *lines;  /* Owned */
    size_t n_line_slots;  /* power of two */
    size_t line_count;
} ps_code_map;

/* A thread the walker has seen, kept across periods for its clocks. */
typedef struct {
    uint64_t ident;
    uint64_t native_id;
    int64_t last_cpu_ns;
    int64_t last_wall_ns;
    int64_t carried_ns;    /* CPU modes: CPU time not yet in a sample */
    uint64_t walk;         /* last walk that saw it */
    uint64_t period_gen;   /* period generation `index` belongs to */
    uint16_t index;        /* thread index in that period */
    int named;             /* threading knew its name when it was added */
    /* Its last walk, frame by frame (leaf first), to reuse when the thread
     * is found on the same code objects at the same instructions: see
     * "The walk cache" in walker.c. */
    struct ps_walked_frame *walked;  /* Owned; max_depth + 1 entries, or NULL */
    uint32_t walked_n;     /* frames of the last walk in `walked` */
    uint64_t walked_gen;   /* period generation they belong to (0: none) */
    uint32_t walked_node;  /* the leaf node that walk folded into */
    uint32_t walked_depth; /* frames kept in that stack */
    int64_t walked_cpu_ns; /* real mode: its CPU clock before that walk (-1: unknown) */
    int walked_idle;       /* real mode: that walk found it waiting */
    int walked_folded;     /* walked_node is set */
    int walked_truncations;  /* stats.truncated it added (depth, full table) */
} ps_tracked_thread;

/* One frame of a thread's last walk. */
typedef struct ps_walked_frame {
    const PyObject *code;  /* compared only; held by the code map in walked_gen */
    int lasti;
    uint32_t frame_id;
    uint32_t line;
} ps_walked_frame;

/* A thread the first pass of a walk chose to walk. */
typedef struct {
    PyThreadState *ts;     /* Borrowed; valid only while still listed */
    uint64_t ident;
    uint64_t native_id;
    ps_tracked_thread *tracked;  /* Borrowed; ps_vec never moves elements */
    uint32_t weight_us;
    int64_t cpu_ns;        /* real mode: its CPU clock now (-1: unknown) */
    int still;             /* real mode: it did not run since its last walk,
                              which folded a stack: reuse it */
} ps_walk_candidate;

typedef struct {
    /* Settings, from ps_walker_init. */
    PyInterpreterState *interp;
    int cpu_mode;               /* weights are CPU time (else wall time) */
    int lines;                  /* record the line of every frame (else 0) */
    uint32_t max_depth;
    uint64_t max_samples;
    PyThreadState *skip;        /* Borrowed: the sampler thread's own */
    ps_idle_pattern *idle;      /* Owned */
    size_t n_idle;
    /* The period walked into. */
    ps_period *period;          /* Borrowed; NULL: none */
    uint64_t period_gen;        /* bumped whenever `period` changes */
    ps_code_map codes;          /* frame ids of `period` */
    /* Threads, kept across periods for their clocks. */
    ps_vec tracked;             /* ps_tracked_thread (threads.c) */
    ps_vec candidates;          /* ps_walk_candidate: the threads a walk chose */
    uint64_t walk;              /* walks so far */
    uint64_t still;             /* samples of this run taken without walking:
                                   the thread did not run (real mode) */
    int64_t last_tick_ns;       /* when the last whole walk began */
    uint32_t *stack_buf;        /* Owned; max_depth + 1 frame ids */
    uint32_t *line_buf;         /* Owned; their lines */
    /* Re-entry: see the design note in walker.c. */
    int walking;                /* a walk is in progress */
    pthread_t walking_thread;   /* the thread doing it */
    int release_deferred;       /* ps_walker_free came during that walk: the
                                   walk frees the state on its way out */
} ps_walker;

/* Set up `w` for a run: `lines` records each frame's line (else every
 * line is 0, unknown); `idle` is a sequence of (file suffix, qualname)
 * pairs of str (borrowed). Refuses while a walk of the previous run is still
 * in progress (ps_walker_busy). Returns 0, or -1 with an exception set (the
 * walker then holds nothing). */
int ps_walker_init(ps_walker *w, int mode, uint32_t max_depth,
                   uint64_t max_samples, int lines, PyObject *idle);

/* Stop walking into any period and release the walker's state; a walk in
 * progress (Python code ran inside it) keeps it until it returns, and frees
 * it then. Dropping code objects can run Python code, even a start(): it is
 * the last thing done. */
void ps_walker_free(ps_walker *w);

/* 1 while a walk is in progress (its state is not free yet). */
int ps_walker_busy(const ps_walker *w);

/* Walks skip `ts` (the sampler thread's own thread state; borrowed). */
void ps_walker_skip(ps_walker *w, PyThreadState *ts);

/* Walk into `p` (borrowed, not NULL) from now on. A walk in progress
 * abandons; the code map of the previous period is dropped (that can run
 * Python code: it is the last thing done). */
void ps_walker_set_period(ps_walker *w, ps_period *p);

/* Record every thread's clocks without sampling, so the first samples of a
 * run weigh only what was spent after it began. Calls no Python code. */
void ps_walker_baseline(ps_walker *w);

/* Walk every Python thread but the skipped one into the period: one walk
 * covering `ticks` timer ticks. Python code can run inside it (see
 * walker.c): a walk begun while another is in progress returns at once,
 * counting its ticks as missed. */
void ps_walker_sample(ps_walker *w, uint64_t ticks);

/* The stack of one thread, for the stall detector (stalldetect.c): walk the
 * thread whose kernel TID is `native_id` into the period's tree, its leaf
 * frame kept even when it is a waiting one (a reactor parked on an Event is
 * the stall), and return its leaf node and thread index; no sample is
 * added. A thread no walk has seen yet is tracked from here on, its clocks
 * starting now. Returns 0, PS_ESTATE (no period, a walk in progress, no
 * such thread, or the period was swapped under the walk) or PS_ENOMEM.
 * Python code can run inside it, as in ps_walker_sample. */
int ps_walker_thread_stack(ps_walker *w, uint64_t native_id,
                           uint16_t *thread_index, uint32_t *node);

/* In a forked child: a walk by a thread that does not exist here is over. */
void ps_walker_after_fork_child(ps_walker *w);

/* ---- shared by the walker's files (walker.c, threads.c, codemap.c,
 *      threadname.c) ---- */

/* threads.c. The tracked entry of thread (ident, native_id), added when
 * new (*created = 1, clocks zero); NULL when memory ran out. */
ps_tracked_thread *ps_threads_track(ps_walker *w, uint64_t ident, uint64_t native_id,
                                    int *created);

/* Forget threads the last walk did not see: they ended. */
void ps_threads_prune(ps_walker *w);

/* Forget every thread. */
void ps_threads_free(ps_walker *w);

/* The tracked entry of listed thread `ts`, stamped as seen by this walk,
 * with the time it spent since its previous sample in *since_ns (none at
 * `baseline` for a thread first seen). NULL for a thread walks leave out
 * and when memory ran out (counted as dropped in `p`, which may be NULL). */
ps_tracked_thread *ps_threads_clock(ps_walker *w, ps_period *p, PyThreadState *ts,
                                    int64_t now_ns, int baseline, int64_t *since_ns);

/* Is `ts` still in the interpreter's thread list, for the same thread? */
int ps_threads_still_listed(const ps_walker *w, PyThreadState *ts, uint64_t ident,
                            uint64_t native_id);

/* The first pass of a walk: clocks, the CPU-idle test, and the threads to
 * walk into w->candidates (see threads.c). */
void ps_threads_choose(ps_walker *w, ps_period *p, int64_t start_ns);

/* The UTF-8 of str `s` (borrowed, may be NULL), else `fallback`; sets *len. */
const char *ps_walker_utf8_or(PyObject *s, const char *fallback,
                              Py_ssize_t *len);

/* Parse `idle` into w->idle. Returns 0 or -1 with an exception set. */
int ps_idle_set(ps_walker *w, PyObject *idle);
void ps_idle_free(ps_walker *w);

/* Frame id of `code` in w->period, interning it on first sight. Calls
 * nothing that can run Python code. Returns 0 or PS_ENOMEM. */
int ps_code_map_intern(ps_walker *w, PyCodeObject *code, uint32_t *frame_id);

/* The line of instruction offset `lasti` (ps_py_frame_lasti) in `code`
 * (interned: a key of the map), computed once per (code, offset) in a
 * period; the function's first line when `lasti` < 0 (not started); 0 if
 * unknown. Calls nothing that can run Python code. */
uint32_t ps_code_map_line(ps_walker *w, PyCodeObject *code, int lasti);

/* Drop every entry. Detaches the map first: dropping a code object can run
 * Python code (a weakref callback), which may intern into a fresh map. */
void ps_code_map_clear(ps_code_map *m);

/* The name threading knows the thread by, into `out` (NUL-terminated, cut
 * at a character boundary), or "Thread <native id>" with *named = 0. `root`
 * is the thread's outermost frame (borrowed, may be NULL). Can run Python
 * code (the caller checks for a swap). */
size_t ps_thread_name(uint64_t ident, uint64_t native_id, PyFrameObject *root,
                      char *out, size_t cap, int *named);

#endif /* PS_WALKER_H */
