/* Walking: for every Python thread, the idle tests (CPU used since its last
 * sample, waiting leaf frame), the frame walk with the public API (leaf
 * first, up to max_depth, code objects interned as frames by codemap.c), and
 * folding the stack into the walker's period. Runs with the GIL held, on the
 * main thread or the sampler thread (see sampler.c and signals.c).
 *
 * Re-entry and the GIL inside the walk (design note). The walk holds the GIL,
 * but it cannot keep Python code from running inside it: the frame getters
 * allocate frame objects, and on CPython 3.11 an allocation runs a garbage
 * collection right there, on the walking thread, whose finalizers, weakref
 * callbacks and deallocators (a file's close) may release the GIL
 * (time.sleep(0), I/O, a log line) or run any Python code on this thread
 * (a signal handler, _main_tick itself). The thread-name lookup can run
 * Python code too (a Thread subclass's attributes), and dropping our
 * reference to a frame may run its locals' finalizers once its thread moved
 * on. At such a point anything can happen before the call returns: another
 * walk (the main thread's _main_tick while the sampler thread's walk waits,
 * or the reverse), rotate(), stop(), start(), threads ending and their
 * thread states freed. Nothing is switched off for the application (no
 * gc.disable()); instead:
 *   - One walk at a time: a walk that finds another one in progress returns
 *     at once and counts its ticks as missed (walking).
 *   - The walk pins the period it began with and the period generation;
 *     after every call that can run Python code it compares the generation
 *     (ps_walker_set_period and ps_walker_free bump it: rotate, stop,
 *     start) and, if the period was swapped, abandons the walk without touching anything more: the sample is
 *     counted as dropped in the period that is active then.
 *   - The thread list is read in one pass that calls nothing that can run
 *     Python code; a thread state is used later only after checking that it
 *     is still listed (a thread that ended meanwhile is dropped).
 *   - stop() frees nothing a walk in progress uses: that walk frees it on
 *     its way out (release_deferred), and start() refuses to begin until
 *     it has. rotate() frees nothing the walk touches after a swap (the code
 *     map is detached before its references are dropped).
 *   - One thing the walk cannot survive is a collection inside a frame
 *     getter of another thread's frame: CPython itself goes on writing into
 *     that thread's interpreter frame after the allocation (GH-97002), and
 *     the thread may have popped it meanwhile. pycompat.h holds the
 *     collector off for the duration of that one call on 3.11 (invisible to
 *     any other code: nothing can run in it); 3.12+ never collects there. */
#define _GNU_SOURCE
#include "walker.h"

#include <stdlib.h>
#include <string.h>

#include "ps_error.h"
#include "ps_procstat.h"

#define NAME_MAX_BYTES 200
#define VEC_CHUNK_BYTES 4096

/* ---- lifecycle ---------------------------------------------------------- */

int
ps_walker_init(ps_walker *w, int mode, uint32_t max_depth,
               uint64_t max_samples, int lines, PyObject *idle)
{
    if (w->walking) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the previous sampler's last walk has not returned yet "
                        "(Python code it ran still holds it); try again");
        return -1;
    }
    /* period_gen and walk carry on: they only ever grow. */
    w->interp = PyInterpreterState_Get();
    w->cpu_mode = mode != PS_MODE_REAL;
    w->lines = lines;
    w->max_depth = max_depth;
    w->max_samples = max_samples;
    w->skip = NULL;
    w->period = NULL;
    w->last_tick_ns = ps_mono_ns();
    w->release_deferred = 0;
    w->still = 0;
    ps_vec_init(&w->tracked, sizeof(ps_tracked_thread), VEC_CHUNK_BYTES);
    ps_vec_init(&w->candidates, sizeof(ps_walk_candidate), VEC_CHUNK_BYTES);
    if (ps_idle_set(w, idle) < 0) {
        return -1;
    }
    w->stack_buf = PyMem_RawMalloc((max_depth + 1) * sizeof(uint32_t));
    w->line_buf = PyMem_RawMalloc((max_depth + 1) * sizeof(uint32_t));
    if (w->stack_buf == NULL || w->line_buf == NULL) {
        PyMem_RawFree(w->stack_buf);
        PyMem_RawFree(w->line_buf);
        w->stack_buf = w->line_buf = NULL;
        ps_idle_free(w);
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void
release_state(ps_walker *w)
{
    PyMem_RawFree(w->stack_buf);
    PyMem_RawFree(w->line_buf);
    w->stack_buf = w->line_buf = NULL;
    ps_threads_free(w);
    ps_vec_free(&w->candidates);
    ps_idle_free(w);
    /* Last: dropping code objects can run Python code, even a start(). */
    ps_code_map_clear(&w->codes);
}

void
ps_walker_free(ps_walker *w)
{
    w->period = NULL;
    w->period_gen++;  /* a walk still out abandons */
    if (w->walking) {
        w->release_deferred = 1;
        return;
    }
    release_state(w);
}

int
ps_walker_busy(const ps_walker *w)
{
    return w->walking;
}

void
ps_walker_skip(ps_walker *w, PyThreadState *ts)
{
    w->skip = ts;
}

void
ps_walker_set_period(ps_walker *w, ps_period *p)
{
    w->period = p;
    w->period_gen++;
    ps_code_map_clear(&w->codes);
}

void
ps_walker_after_fork_child(ps_walker *w)
{
    if (w->walking && !pthread_equal(w->walking_thread, pthread_self())) {
        w->walking = 0;  /* that walk's thread does not exist here */
    }
}

/* A walk in progress: what it pinned when it began. */
typedef struct {
    ps_walker *walker;
    ps_period *period;  /* Borrowed: walker->period when the walk began */
    uint64_t gen;       /* walker->period_gen then */
    int python_ran;     /* a call that can run Python code returned since the
                           thread list was read */
    int keep_idle;      /* keep a waiting leaf frame (stall stacks) */
} walk_ctx;

/* After a call that can run Python code: was the period swapped (rotate,
 * stop, start) meanwhile? Then the walk must touch nothing more. */
static inline int
swapped(walk_ctx *w)
{
    w->python_ran = 1;
    return w->walker->period_gen != w->gen;
}

enum { WALK_OK = 0, WALK_NOMEM = -1, WALK_SWAPPED = -2 };

/* Index of tracked thread `t` in the walk's period, adding it there on its
 * first kept sample of the period (a thread with no sample has no entry).
 * Returns WALK_OK, WALK_SWAPPED (the period was swapped during the name
 * lookup: touch nothing) or WALK_NOMEM (also for a full thread table). */
static int
period_thread(walk_ctx *w, ps_tracked_thread *t, PyFrameObject *root,
              uint16_t *index)
{
    char name[NAME_MAX_BYTES];
    int named;

    if (t->period_gen == w->gen) {
        *index = t->index;
        if (!t->named) {
            /* Sampled before threading knew it: ask again. */
            size_t len = ps_thread_name(t->ident, t->native_id, root, name,
                                        sizeof(name), &named);
            if (swapped(w)) {
                return WALK_SWAPPED;
            }
            if (named && ps_period_rename_thread(w->period, t->index, name, len) == 0) {
                t->named = 1;
            }
        }
        return WALK_OK;
    }
    size_t len = ps_thread_name(t->ident, t->native_id, root, name,
                                sizeof(name), &named);
    if (swapped(w)) {
        return WALK_SWAPPED;
    }
    if (ps_period_add_thread(w->period, t->ident, t->native_id, name, len,
                             &t->index) < 0) {
        return WALK_NOMEM;
    }
    t->period_gen = w->gen;
    t->named = named;
    *index = t->index;
    return WALK_OK;
}

/* ---- sampling ----------------------------------------------------------- */

#define BETWEEN_NAME "[finished between samples]"

/* The synthetic frame that stands, in CPU modes, for the CPU a thread used
 * in work that began and returned between two samples: the walk, which
 * needs the GIL, finds a thread that works in bursts shorter than the GIL's
 * switch interval (5 ms: a DB pool thread's short query) back in its wait
 * every time. Its waiting frames are left out and this one takes their
 * place, under the code that waits (and ran the work). Calls no Python
 * code. */
static int
between_samples_frame(ps_period *p, uint32_t *frame_id)
{
    return ps_stacks_frame(&p->stacks, BETWEEN_NAME, sizeof(BETWEEN_NAME) - 1, "", 0,
                           0, PS_FRAME_SYNTHETIC, frame_id);
}

/* Walk one thread's frames leaf first into stack_buf[1..], each frame's
 * line into line_buf[1..]: sets *depth,
 * *truncated when frames beyond max_depth were left out, *idle when the leaf
 * is a waiting frame in real mode (then the walk stops early; in CPU modes
 * the waiting frames give way to "[finished between samples]", unless
 * keep_idle), and *root to the outermost frame (new reference) when the
 * walk reached it. Returns WALK_OK,
 * WALK_NOMEM, or WALK_SWAPPED when the period was swapped while a frame
 * getter ran Python code (nothing held then). */
/* The walk cache (design note). A thread found on the same code objects at
 * the same instructions as at its last walk, frame by frame, has the same
 * frames, lines and stack node: a thread parked in a C call (a sleep, a
 * socket read) deep in its stack, a reactor waiting in its poll. Each
 * tracked thread keeps its last walk's (code object, instruction offset)
 * per frame with the frame id and line they gave, and the node it folded
 * into: a frame that matches is taken from there (no code-map or line
 * lookup), and a walk that matches to its end reuses the node (no fold).
 * The frames are still walked: only the frames themselves say whether
 * they are the same. Code objects are compared as addresses and never
 * dereferenced; they are the code map's keys of the same period
 * (walked_gen), which holds them, so an address cannot name another code
 * object meanwhile. Stall walks (keep_idle) neither use nor fill it.
 *
 * In real mode a thread that did not run since its last walk is not walked
 * at all: its frames change only while it runs, and its CPU clock says
 * whether it ran. The first pass (threads.c) reads the clock before the
 * walk, and the walk keeps that reading with its stack node; a later first
 * pass that reads the same clock reuses the node without touching the
 * thread's frames. The thread may run between the reading and the walk,
 * when Python code inside the walk lets go of the GIL: then its clock moves
 * past the reading, and the next walk is a full one. A thread last found
 * waiting is not asked: that walk stops at its leaf frame, no dearer than
 * the clock read. */

/* The cache of `t` for this walk, allocated on first use; NULL without
 * one (no memory: the walk works without). */
static ps_walked_frame *
walk_cache(walk_ctx *w, ps_tracked_thread *t)
{
    if (t == NULL || w->keep_idle) {
        return NULL;
    }
    if (t->walked == NULL) {
        t->walked = PyMem_RawMalloc((w->walker->max_depth + 1) * sizeof(ps_walked_frame));
        t->walked_gen = 0;
    }
    return t->walked;
}

static int
walk_frames(walk_ctx *w, PyThreadState *ts, ps_tracked_thread *t, int *depth,
            int *truncated, int *idle, int *same, PyFrameObject **root)
{
    ps_walker *walker = w->walker;
    PyFrameObject *frame = ps_py_thread_frame(ts);
    ps_walked_frame *cache = walk_cache(w, t);
    int matching = cache != NULL && t->walked_gen == w->gen;
    uint32_t n = 0, k = 0;  /* frames kept, frames walked */
    int skipped = 0;  /* CPU modes: stack_buf[1] stands for the waiting frames */
    int rc = WALK_OK;

    *depth = 0;
    *truncated = 0;
    *idle = 0;
    *same = 0;
    *root = NULL;
    while (frame != NULL) {
        if (swapped(w)) {
            rc = WALK_SWAPPED;
            break;
        }
        if (n == walker->max_depth) {
            *truncated = 1;
            break;
        }
        PyCodeObject *code = PyFrame_GetCode(frame);
        int lasti = ps_py_frame_lasti(frame);
        uint32_t frame_id, line;
        int known = matching && k < t->walked_n && cache[k].code == (PyObject *)code &&
                    cache[k].lasti == lasti;
        if (known) {
            frame_id = cache[k].frame_id;
            line = cache[k].line;
        }
        else {
            matching = 0;
            if (ps_code_map_intern(walker, code, &frame_id) < 0) {
                Py_DECREF(code);
                rc = WALK_NOMEM;
                break;
            }
            line = walker->lines ? ps_code_map_line(walker, code, lasti) : 0;
            if (cache != NULL && k > walker->max_depth) {
                cache = NULL;  /* leaf waiting frames past the cache: not kept */
                t->walked_gen = 0;
                t->walked_folded = 0;
            }
            if (cache != NULL) {
                cache[k] = (ps_walked_frame){.code = (PyObject *)code, .lasti = lasti,
                                             .frame_id = frame_id, .line = line};
            }
        }
        k++;
        /* A waiting frame at the leaf: no other frame kept before it. */
        int waiting = n == (uint32_t)skipped && !w->keep_idle &&
                      (ps_stacks_frame_at(&w->period->stacks, frame_id)->flags &
                       PS_FRAME_IDLE);
        if (waiting && !walker->cpu_mode) {
            Py_DECREF(code);
            *idle = 1;
            break;
        }
        if (!waiting) {
            walker->line_buf[1 + n] = line;
            walker->stack_buf[1 + n++] = frame_id;
        }
        else if (!skipped) {
            /* Its CPU went into work that already returned. */
            if (between_samples_frame(w->period, &walker->stack_buf[1]) < 0) {
                Py_DECREF(code);
                rc = WALK_NOMEM;
                break;
            }
            walker->line_buf[1] = 0;
            n = 1;
            skipped = 1;
        }
        Py_DECREF(code);  /* the frame and the code map still hold it */
        PyFrameObject *back = ps_py_frame_back(frame);
        if (back == NULL) {
            *root = frame;  /* keep it: it may name the thread */
            frame = NULL;
            break;
        }
        Py_DECREF(frame);
        frame = back;
    }
    *depth = (int)n;
    Py_XDECREF(frame);
    if (rc == WALK_OK && swapped(w)) {
        rc = WALK_SWAPPED;  /* dropping the frame ran Python code */
    }
    if (cache != NULL) {
        /* The same frames to the same end: the same stack. */
        *same = rc == WALK_OK && matching && k == t->walked_n && t->walked_folded;
        if (!*same) {
            t->walked_folded = 0;  /* the caller folds this walk, if it keeps it */
        }
        t->walked_n = k;
        t->walked_gen = rc == WALK_OK ? w->gen : 0;
    }
    if (rc == WALK_SWAPPED) {
        Py_CLEAR(*root);
    }
    return rc;
}

/* Fold the walked stack (leaf first in stack_buf[1..depth]) root first into
 * the tree of `p`; its leaf node into *node. Returns 0 (also when the table
 * was full: the stack then ends on its overflow node) or PS_ENOMEM. Calls no
 * Python code. */
static int
fold(ps_walker *w, ps_period *p, int depth, int truncated, uint32_t *node)
{
    uint32_t *frames = w->stack_buf + 1;
    uint32_t *lines = w->line_buf + 1;

    /* Reverse in place to root first. */
    for (int i = 0, j = depth - 1; i < j; i++, j--) {
        uint32_t tmp = frames[i];
        frames[i] = frames[j];
        frames[j] = tmp;
        tmp = lines[i];
        lines[i] = lines[j];
        lines[j] = tmp;
    }
    if (truncated) {
        frames = w->stack_buf;
        lines = w->line_buf;
        frames[0] = p->stacks.truncated_frame;
        lines[0] = 0;
        depth++;
        p->stats.truncated++;
    }
    int rc = ps_stacks_insert_lines(&p->stacks, frames, lines, (size_t)depth, node);
    if (rc == PS_EFULL) {
        p->stats.truncated++;
        rc = PS_OK;
    }
    return rc;
}

/* Fold the walked stack into the tree of `p`, or with `same` take the node
 * of the thread's last walk (the walk cache), and append the sample. Calls
 * no Python code. */
static void
record(ps_walker *w, ps_period *p, ps_tracked_thread *t, int same, uint16_t index,
       int depth, int truncated, int64_t now_ns, uint32_t weight_us)
{
    uint32_t node;

    if (same) {
        node = t->walked_node;
        p->stats.truncated += (uint64_t)t->walked_truncations;
    }
    else {
        uint64_t truncated_before = p->stats.truncated;
        if (fold(w, p, depth, truncated, &node) < 0) {
            p->stats.dropped++;
            return;
        }
        if (t->walked != NULL && t->walked_gen != 0) {
            t->walked_node = node;
            t->walked_depth = (uint32_t)depth;
            t->walked_folded = 1;
            t->walked_truncations = (int)(p->stats.truncated - truncated_before);
        }
    }
    if (ps_period_add_sample(p, now_ns, index, node, weight_us) < 0) {
        p->stats.dropped++;
    }
}

/* Walk and record one chosen thread. Returns WALK_OK or WALK_SWAPPED. */
static int
sample_thread(walk_ctx *w, const ps_walk_candidate *c, int64_t start_ns)
{
    ps_period *p = w->period;
    int depth, truncated, idle, same;
    PyFrameObject *root = NULL;
    uint16_t index;

    if (c->still) {
        /* It did not run since its last walk (real mode): that walk's stack. */
        ps_tracked_thread *t = c->tracked;
        int rc = period_thread(w, t, NULL, &index);
        if (rc == WALK_OK) {
            record(w->walker, p, t, 1, index, (int)t->walked_depth, 0, start_ns, c->weight_us);
            w->walker->still++;
        }
        else if (rc == WALK_NOMEM) {
            p->stats.dropped++;
        }
        return rc == WALK_SWAPPED ? rc : WALK_OK;
    }
    if (w->python_ran && !ps_threads_still_listed(w->walker, c->ts, c->ident, c->native_id)) {
        p->stats.dropped++;  /* it ended while Python code ran */
        return WALK_OK;
    }
    int rc = walk_frames(w, c->ts, c->tracked, &depth, &truncated, &idle, &same, &root);
    if (rc == WALK_SWAPPED) {
        return rc;
    }
    if (c->tracked != NULL) {
        /* What a first pass that finds the same clock may reuse. */
        c->tracked->walked_cpu_ns = c->cpu_ns;
        c->tracked->walked_idle = rc == WALK_OK && idle;
    }
    if (rc == WALK_NOMEM) {
        p->stats.dropped++;
    }
    else if (idle || depth == 0) {
        p->stats.idle++;
    }
    else {
        rc = period_thread(w, c->tracked, root, &index);
        if (rc == WALK_OK) {
            record(w->walker, p, c->tracked, same, index, depth, truncated, start_ns,
                   c->weight_us);
        }
        else if (rc == WALK_NOMEM) {
            p->stats.dropped++;
        }
    }
    Py_XDECREF(root);
    if (rc != WALK_SWAPPED && swapped(w)) {
        rc = WALK_SWAPPED;  /* dropping the root frame ran Python code */
    }
    return rc == WALK_SWAPPED ? rc : WALK_OK;
}

void
ps_walker_baseline(ps_walker *w)
{
    int64_t now_ns = ps_mono_ns();
    int64_t since_ns;  /* a baseline samples nothing */

    w->walk++;
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(w->interp);
         ts != NULL; ts = PyThreadState_Next(ts)) {
        ps_threads_clock(w, w->period, ts, now_ns, 1, &since_ns);
    }
    ps_threads_prune(w);
    w->last_tick_ns = now_ns;
}

void
ps_walker_sample(ps_walker *w, uint64_t ticks)
{
    ps_period *p = w->period;
    int64_t start_ns = ps_mono_ns();
    walk_ctx ctx = {.walker = w, .period = p, .gen = w->period_gen};

    if (w->walking) {
        /* Re-entered: from Python code run inside the walk in progress (a
         * finalizer, a signal handler), or from another thread while that
         * walk let go of the GIL. That walk covers these ticks. */
        if (p != NULL) {
            p->stats.missed += ticks ? ticks : 1;
        }
        return;
    }
    if (p == NULL) {
        return;
    }
    w->walking = 1;
    w->walking_thread = pthread_self();
    w->walk++;
    p->stats.ticks++;
    p->stats.missed += ticks > 1 ? ticks - 1 : 0;
    ps_threads_choose(w, p, start_ns);
    for (size_t i = 0; i < w->candidates.len; i++) {
        if (sample_thread(&ctx, ps_vec_at(&w->candidates, i), start_ns) ==
            WALK_SWAPPED) {
            /* `p` may be gone: count the lost sample where it can be seen. */
            if (w->period != NULL) {
                w->period->stats.dropped++;
            }
            goto done;
        }
    }
    ps_threads_prune(w);
    w->last_tick_ns = start_ns;
    p->stats.sampling_ns += (uint64_t)(ps_mono_ns() - start_ns);
done:
    PyErr_Clear();
    ps_vec_truncate(&w->candidates, 0);
    w->walking = 0;
    if (w->release_deferred) {
        w->release_deferred = 0;
        release_state(w);
    }
}

int
ps_walker_thread_stack(ps_walker *w, uint64_t native_id, uint16_t *thread_index,
                       uint32_t *node)
{
    walk_ctx ctx = {.walker = w, .period = w->period, .gen = w->period_gen,
                    .keep_idle = 1};
    PyThreadState *ts = NULL;
    PyFrameObject *root = NULL;
    int depth, truncated, idle, created;
    int rc = PS_ESTATE;

    if (w->walking || w->period == NULL || w->stack_buf == NULL) {
        return PS_ESTATE;
    }
    for (ts = PyInterpreterState_ThreadHead(w->interp); ts != NULL;
         ts = PyThreadState_Next(ts)) {
        if ((uint64_t)ps_py_thread_native_id(ts) == native_id) {
            break;
        }
    }
    if (ts == NULL || ts == w->skip) {
        return PS_ESTATE;
    }
    ps_tracked_thread *t = ps_threads_track(w, ps_py_thread_ident(ts), native_id, &created);
    if (t == NULL) {
        return PS_ENOMEM;
    }
    if (created) {
        /* First seen here: its clocks start now, as at a baseline, so the
         * next walk weighs only what it spends from now on. */
        int64_t cpu_ns = ps_thread_cpu_ns(native_id);
        t->last_cpu_ns = cpu_ns < 0 ? 0 : cpu_ns;
        t->last_wall_ns = ps_mono_ns();
        t->walk = w->walk;
    }
    w->walking = 1;
    w->walking_thread = pthread_self();
    int same;  /* always 0: stall walks do not use the walk cache */
    int walked = walk_frames(&ctx, ts, NULL, &depth, &truncated, &idle, &same, &root);
    if (walked == WALK_NOMEM) {
        rc = PS_ENOMEM;
    }
    else if (walked == WALK_OK && depth > 0) {
        /* t stays valid: ps_vec never moves elements, and the tracked list
         * changes only in a walk, which this is. */
        walked = period_thread(&ctx, t, root, thread_index);
        if (walked == WALK_OK) {
            rc = fold(w, ctx.period, depth, truncated, node);
        }
        else if (walked == WALK_NOMEM) {
            rc = PS_ENOMEM;
        }
    }
    Py_XDECREF(root);
    if (swapped(&ctx)) {
        rc = PS_ESTATE;  /* the node belongs to a period that is gone */
    }
    PyErr_Clear();
    w->walking = 0;
    if (w->release_deferred) {
        w->release_deferred = 0;
        release_state(w);
    }
    return rc;
}
