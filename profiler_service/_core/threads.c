/* The threads a walk looks at: tracked across periods with their clocks
 * (CPU or wall time since each one's previous sample), and the first pass
 * of a walk, which reads the clocks and chooses the threads to walk (see
 * walker.h). Calls nothing that can run Python code. */
#define _GNU_SOURCE
#include "walker.h"

#include "ps_error.h"
#include "ps_procstat.h"

ps_tracked_thread *
ps_threads_track(ps_walker *w, uint64_t ident, uint64_t native_id, int *created)
{
    *created = 0;
    for (size_t i = 0; i < w->tracked.len; i++) {
        ps_tracked_thread *t = ps_vec_at(&w->tracked, i);
        if (t->ident == ident && t->native_id == native_id) {
            return t;
        }
    }
    ps_tracked_thread *t = ps_vec_push(&w->tracked);  /* zeroed */
    if (t == NULL) {
        return NULL;
    }
    t->ident = ident;
    t->native_id = native_id;
    *created = 1;
    return t;
}

/* Forget threads the last walk did not see: they ended. */
void
ps_threads_prune(ps_walker *w)
{
    size_t kept = 0;
    for (size_t i = 0; i < w->tracked.len; i++) {
        ps_tracked_thread *t = ps_vec_at(&w->tracked, i);
        if (t->walk == w->walk) {
            *(ps_tracked_thread *)ps_vec_at(&w->tracked, kept++) = *t;
        }
        else {
            PyMem_RawFree(t->walked);
        }
    }
    ps_vec_truncate(&w->tracked, kept);
}

void
ps_threads_free(ps_walker *w)
{
    for (size_t i = 0; i < w->tracked.len; i++) {
        PyMem_RawFree(((ps_tracked_thread *)ps_vec_at(&w->tracked, i))->walked);
    }
    ps_vec_free(&w->tracked);
}

/* Time the thread `t` (first seen now: `created`) spent since its previous
 * sample, CPU or wall as the mode says, and remember its clock. At
 * `baseline`, a thread first seen has spent none. */
static int64_t
since_last_sample(ps_walker *w, ps_tracked_thread *t, int created, int64_t now_ns,
                  int baseline)
{
    if (w->cpu_mode) {
        int64_t cpu_ns = ps_thread_cpu_ns(t->native_id);
        /* A thread first seen now started after the previous walk: all of
         * its CPU time is new. At baseline, none of it is. */
        int64_t previous = created ? (baseline ? cpu_ns : 0) : t->last_cpu_ns;
        if (cpu_ns < 0) {
            return 0;
        }
        t->last_cpu_ns = cpu_ns;
        return cpu_ns - previous;
    }
    int64_t previous = created ? w->last_tick_ns : t->last_wall_ns;
    t->last_wall_ns = now_ns;
    return now_ns - previous;
}

/* The tracked entry of listed thread `ts`, stamped as seen by this walk,
 * with the time it spent since its previous sample in *since_ns. NULL for a
 * thread walks leave out (the skipped one, one not started yet) and when
 * memory ran out (counted as dropped in `p`, which may be NULL). Calls no
 * Python code. */
ps_tracked_thread *
ps_threads_clock(ps_walker *w, ps_period *p, PyThreadState *ts, int64_t now_ns,
             int baseline, int64_t *since_ns)
{
    int created;

    if (ts == w->skip || ps_py_thread_native_id(ts) == 0) {
        return NULL;
    }
    ps_tracked_thread *t =
        ps_threads_track(w, ps_py_thread_ident(ts), ps_py_thread_native_id(ts), &created);
    if (t == NULL) {
        if (p != NULL) {
            p->stats.dropped++;
        }
        return NULL;
    }
    t->walk = w->walk;
    *since_ns = since_last_sample(w, t, created, now_ns, baseline);
    return t;
}


/* Is `ts` still in the interpreter's thread list, for the same thread? A
 * thread state is freed when its thread ends, which can happen whenever
 * Python code ran since the list was read. Calls no Python code. */
int
ps_threads_still_listed(const ps_walker *w, PyThreadState *ts, uint64_t ident,
             uint64_t native_id)
{
    for (PyThreadState *it = PyInterpreterState_ThreadHead(w->interp); it != NULL;
         it = PyThreadState_Next(it)) {
        if (it == ts) {
            return ps_py_thread_ident(ts) == ident &&
                   ps_py_thread_native_id(ts) == native_id;
        }
    }
    return 0;
}


static uint32_t
to_us(int64_t ns)
{
    int64_t us = (ns + 500) / 1000;
    return us <= 0 ? 0 : us > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* CPU modes: the CPU time a thread must have used since its last sample to
 * take one: half a sampling interval. A thread that wakes for a few µs then
 * takes one sample per half interval of CPU, not one per wake-up; a busy
 * thread that shares the GIL with another (half an interval of CPU per
 * tick) is still looked at on every tick, which keeps the stack resolution
 * of the split between its functions. Counts do not depend on it: they are
 * computed from the weights (ps_period_count_sample). */
static int64_t
min_cpu_ns(const ps_period *p)
{
    uint64_t mhz = p->frequency_mhz ? p->frequency_mhz : 1;
    return (int64_t)(1000000000000u / mhz / 2);
}

/* Real mode: did thread `t` stand still (not run at all) since its last
 * walk, whose stack, in this period, can be reused (walker.c, "The walk
 * cache")? Reads its CPU clock into *cpu_ns (-1 when unread or
 * unreadable), for the walk to keep. A thread its last walk found waiting
 * is not asked: its walk stops at the leaf, which costs about what the
 * clock read (a syscall) does. */
static int
stood_still(const ps_walker *w, const ps_tracked_thread *t, int64_t *cpu_ns)
{
    int reusable = t->walked_gen == w->period_gen;
    if (reusable && t->walked_idle) {
        return 0;
    }
    *cpu_ns = ps_thread_cpu_ns(t->native_id);
    return reusable && *cpu_ns >= 0 && *cpu_ns == t->walked_cpu_ns && t->walked_folded &&
           t->named;
}

/* The first pass over the thread list: clocks, the CPU-idle test, and the
 * threads to walk into w->candidates. In CPU modes a thread that used less
 * than half a sampling interval since its last sample carries that time forward
 * instead of taking a sample (docs/FORMAT.md, "What a sample is, in each
 * mode"): a thread that naps takes one sample per interval of CPU it used,
 * not one per wake-up. Calls nothing that can run Python code, so the list
 * cannot change under it. */
void
ps_threads_choose(ps_walker *w, ps_period *p, int64_t start_ns)
{
    int64_t min_ns = min_cpu_ns(p);

    ps_vec_truncate(&w->candidates, 0);
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(w->interp);
         ts != NULL; ts = PyThreadState_Next(ts)) {
        int64_t since_ns;
        ps_tracked_thread *t = ps_threads_clock(w, p, ts, start_ns, 0, &since_ns);
        if (t == NULL) {
            continue;
        }
        if (w->cpu_mode) {
            t->carried_ns += since_ns > 0 ? since_ns : 0;
            if (t->carried_ns < min_ns) {
                p->stats.idle++;  /* too little CPU: carried forward */
                continue;
            }
            since_ns = t->carried_ns;
            t->carried_ns = 0;  /* the sample takes it, kept or not */
        }
        uint32_t weight_us = to_us(since_ns);
        if (weight_us == 0) {
            p->stats.idle++;  /* no time since its last sample */
            continue;
        }
        int64_t cpu_ns = -1;
        int still = !w->cpu_mode && stood_still(w, t, &cpu_ns);
        if (p->stats.samples + w->candidates.len >= w->max_samples) {
            p->stats.dropped++;
            continue;
        }
        ps_walk_candidate *c = ps_vec_push(&w->candidates);
        if (c == NULL) {
            p->stats.dropped++;
            continue;
        }
        c->ts = ts;
        c->ident = t->ident;
        c->native_id = t->native_id;
        c->tracked = t;
        c->weight_us = weight_us;
        c->cpu_ns = cpu_ns;
        c->still = still;
    }
}
