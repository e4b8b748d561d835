/* Walking: for every Python thread, the idle tests (CPU used since its last
 * sample, waiting leaf frame), the frame walk with the public API (leaf
 * first, up to max_depth), interning code objects as frames, and folding the
 * stack into the active period. Runs with the GIL held, on the main thread or
 * the sampler thread (see sampler.c).
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
 *     at once and counts its ticks as missed (S.walking).
 *   - The walk pins the period it began with and the period generation;
 *     after every call that can run Python code it compares the generation
 *     (rotate, stop and start bump it) and, if the period was swapped,
 *     abandons the walk without touching anything more: the sample is
 *     counted as dropped in the period that is active then.
 *   - The thread list is read in one pass that calls nothing that can run
 *     Python code; a thread state is used later only after checking that it
 *     is still listed (a thread that ended meanwhile is dropped).
 *   - stop() frees nothing a walk in progress uses: that walk frees it on
 *     its way out (S.release_deferred), and start() refuses to begin until
 *     it has. rotate() frees nothing the walk touches after a swap (the code
 *     map is detached before its references are dropped).
 *   - One thing the walk cannot survive is a collection inside a frame
 *     getter of another thread's frame: CPython itself goes on writing into
 *     that thread's interpreter frame after the allocation (GH-97002), and
 *     the thread may have popped it meanwhile. pycompat.h holds the
 *     collector off for the duration of that one call on 3.11 (invisible to
 *     any other code: nothing can run in it); 3.12+ never collects there. */
#define _GNU_SOURCE
#include "sampler.h"

#include <stdlib.h>
#include <string.h>

#include "ps_error.h"
#include "ps_procstat.h"

#define NAME_MAX_BYTES 200

/* ---- code map ---------------------------------------------------------- */

static inline size_t
ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

/* Detach the map first: dropping a code object can run Python code (a
 * weakref callback), which may walk and intern into a fresh map meanwhile. */
static void
code_map_clear(code_map *m)
{
    code_map old = *m;
    memset(m, 0, sizeof(*m));
    for (size_t i = 0; i < old.n_slots; i++) {
        Py_XDECREF(old.keys[i]);
    }
    PyMem_RawFree(old.keys);
    PyMem_RawFree(old.values);
}

static int
code_map_grow(code_map *m)
{
    size_t n = m->n_slots ? m->n_slots * 2 : 1024;
    PyObject **keys = PyMem_RawCalloc(n, sizeof(*keys));
    uint32_t *values = PyMem_RawCalloc(n, sizeof(*values));
    if (keys == NULL || values == NULL) {
        PyMem_RawFree(keys);
        PyMem_RawFree(values);
        return PS_ENOMEM;
    }
    for (size_t i = 0; i < m->n_slots; i++) {
        if (m->keys[i] != NULL) {
            size_t j = ptr_hash(m->keys[i]) & (n - 1);
            while (keys[j] != NULL) {
                j = (j + 1) & (n - 1);
            }
            keys[j] = m->keys[i];
            values[j] = m->values[i];
        }
    }
    PyMem_RawFree(m->keys);
    PyMem_RawFree(m->values);
    m->keys = keys;
    m->values = values;
    m->n_slots = n;
    return PS_OK;
}

/* ---- frames ------------------------------------------------------------- */

static const char *
utf8_or(PyObject *s, const char *fallback, Py_ssize_t *len)
{
    const char *utf8 = NULL;
    if (s != NULL && PyUnicode_Check(s)) {
        utf8 = PyUnicode_AsUTF8AndSize(s, len);
    }
    if (utf8 == NULL) {
        PyErr_Clear();
        *len = (Py_ssize_t)strlen(fallback);
        return fallback;
    }
    return utf8;
}

static int
is_idle_frame(const char *name, size_t name_len, const char *file,
              size_t file_len)
{
    for (size_t i = 0; i < S.n_idle; i++) {
        const idle_pattern *p = &S.idle[i];
        size_t n = p->file_suffix_len;
        if (strlen(p->qualname) != name_len ||
            memcmp(p->qualname, name, name_len) != 0 || n > file_len ||
            memcmp(file + file_len - n, p->file_suffix, n) != 0) {
            continue;
        }
        /* The suffix must start at a path component. */
        if (n == file_len || n == 0 || file[file_len - n - 1] == '/' ||
            p->file_suffix[0] == '/') {
            return 1;
        }
    }
    return 0;
}

/* Frame id of `code` in period `p` (the active one), interning it on first
 * sight. Calls nothing that can run Python code. Returns 0 or PS_ENOMEM.
 * Needs the GIL. */
static int
intern_code(ps_period *p, PyCodeObject *code, uint32_t *frame_id)
{
    code_map *m = &S.codes;
    Py_ssize_t name_len, file_len;

    if (m->n_slots != 0) {
        size_t i = ptr_hash(code) & (m->n_slots - 1);
        while (m->keys[i] != NULL) {
            if (m->keys[i] == (PyObject *)code) {
                *frame_id = m->values[i];
                return PS_OK;
            }
            i = (i + 1) & (m->n_slots - 1);
        }
    }
    if ((m->count + 1) * 2 > m->n_slots && code_map_grow(m) < 0) {
        return PS_ENOMEM;
    }
    const char *name = utf8_or(ps_py_code_qualname(code), "?", &name_len);
    const char *file = utf8_or(ps_py_code_filename(code), "?", &file_len);
    int first_line = ps_py_code_firstlineno(code);
    uint32_t line = first_line > 0 ? (uint32_t)first_line : 0;
    uint32_t flags = is_idle_frame(name, (size_t)name_len, file, (size_t)file_len)
                         ? PS_FRAME_IDLE
                         : 0;
    int rc = ps_stacks_frame(&p->stacks, name, (size_t)name_len, file,
                             (size_t)file_len, line, flags, frame_id);
    if (rc < 0) {
        return rc;
    }
    size_t i = ptr_hash(code) & (m->n_slots - 1);
    while (m->keys[i] != NULL) {
        i = (i + 1) & (m->n_slots - 1);
    }
    Py_INCREF(code);
    m->keys[i] = (PyObject *)code;
    m->values[i] = *frame_id;
    m->count++;
    return PS_OK;
}

/* ---- threads ------------------------------------------------------------ */

static tracked_thread *
track(uint64_t ident, uint64_t native_id, int *created)
{
    *created = 0;
    for (size_t i = 0; i < S.n_tracked; i++) {
        if (S.tracked[i].ident == ident && S.tracked[i].native_id == native_id) {
            return &S.tracked[i];
        }
    }
    if (S.n_tracked == S.cap_tracked) {
        size_t cap = S.cap_tracked ? S.cap_tracked * 2 : 32;
        tracked_thread *t = PyMem_RawRealloc(S.tracked, cap * sizeof(*t));
        if (t == NULL) {
            return NULL;
        }
        S.tracked = t;
        S.cap_tracked = cap;
    }
    tracked_thread *t = &S.tracked[S.n_tracked++];
    memset(t, 0, sizeof(*t));
    t->ident = ident;
    t->native_id = native_id;
    *created = 1;
    return t;
}

/* Forget threads the last walk did not see: they ended. */
static void
prune_tracked(void)
{
    size_t kept = 0;
    for (size_t i = 0; i < S.n_tracked; i++) {
        if (S.tracked[i].walk == S.walk) {
            S.tracked[kept++] = S.tracked[i];
        }
    }
    S.n_tracked = kept;
}

/* A walk in progress: what it pinned when it began. */
typedef struct {
    ps_period *period;  /* Borrowed: S.active when the walk began */
    uint64_t gen;       /* S.period_gen then */
    int python_ran;     /* a call that can run Python code returned since the
                           thread list was read */
} walk_ctx;

/* After a call that can run Python code: was the period swapped (rotate,
 * stop, start) meanwhile? Then the walk must touch nothing more. */
static inline int
swapped(walk_ctx *w)
{
    w->python_ran = 1;
    return S.period_gen != w->gen;
}

/* Is `ts` still in the interpreter's thread list, for the same thread? A
 * thread state is freed when its thread ends, which can happen whenever
 * Python code ran since the list was read. Calls no Python code. */
static int
still_listed(PyThreadState *ts, uint64_t ident, uint64_t native_id)
{
    for (PyThreadState *it = PyInterpreterState_ThreadHead(S.interp); it != NULL;
         it = PyThreadState_Next(it)) {
        if (it == ts) {
            return ps_py_thread_ident(ts) == ident &&
                   ps_py_thread_native_id(ts) == native_id;
        }
    }
    return 0;
}

/* The threading.Thread object that runs `root`, the outermost frame of a
 * thread, when that frame is threading's Thread._bootstrap (new reference),
 * else NULL. It names a thread threading already forgot (after _delete, at
 * its end) or does not know yet (before _bootstrap_inner registers it).
 * Can run Python code. */
static PyObject *
bootstrap_thread(PyFrameObject *root)
{
    static const char suffix[] = "threading.py";
    PyObject *self = NULL;
    PyCodeObject *code = PyFrame_GetCode(root);
    Py_ssize_t file_len;
    const char *file = utf8_or(ps_py_code_filename(code), "", &file_len);
    PyObject *qualname = ps_py_code_qualname(code);

    if (qualname != NULL && PyUnicode_Check(qualname) &&
        PyUnicode_CompareWithASCIIString(qualname, "Thread._bootstrap") == 0 &&
        (size_t)file_len >= sizeof(suffix) - 1 &&
        strcmp(file + file_len - (sizeof(suffix) - 1), suffix) == 0) {
        self = ps_py_frame_local(root, "self");
    }
    Py_DECREF(code);
    return self;
}

/* The name threading knows the thread by, into `out` (NUL-terminated, cut
 * at a character boundary): threading._active[ident]._name, or, when
 * threading does not list it (starting or ending), the name of the Thread
 * whose _bootstrap is the thread's outermost frame `root` (may be NULL). A
 * thread threading does not know gets "Thread <native id>" and *named = 0.
 * Can run Python code (the caller checks for a swap). Needs the GIL. */
static size_t
thread_name(uint64_t ident, uint64_t native_id, PyFrameObject *root, char *out,
            size_t cap, int *named)
{
    PyObject *threading = NULL, *active = NULL, *key = NULL, *name = NULL;
    PyObject *thread = NULL;
    size_t len = 0;

    PyObject *module_name = PyUnicode_FromString("threading");
    if (module_name != NULL) {
        threading = PyImport_GetModule(module_name);
        Py_DECREF(module_name);
    }
    if (threading != NULL) {
        active = PyObject_GetAttrString(threading, "_active");
    }
    if (active != NULL && PyDict_Check(active)) {
        key = PyLong_FromUnsignedLongLong(ident);
        thread = key ? PyDict_GetItemWithError(active, key) : NULL;
        Py_XINCREF(thread);
    }
    PyErr_Clear();
    if (thread == NULL && root != NULL) {
        thread = bootstrap_thread(root);
    }
    if (thread != NULL) {
        name = PyObject_GetAttrString(thread, "_name");
    }
    if (name != NULL && PyUnicode_Check(name)) {
        Py_ssize_t n;
        const char *utf8 = PyUnicode_AsUTF8AndSize(name, &n);
        if (utf8 != NULL) {
            len = (size_t)n < cap - 1 ? (size_t)n : cap - 1;
            if (len < (size_t)n) {
                while (len > 0 && ((unsigned char)utf8[len] & 0xC0) == 0x80) {
                    len--;  /* do not cut a UTF-8 sequence */
                }
            }
            memcpy(out, utf8, len);
        }
    }
    PyErr_Clear();
    Py_XDECREF(name);
    Py_XDECREF(thread);
    Py_XDECREF(key);
    Py_XDECREF(active);
    Py_XDECREF(threading);
    *named = len > 0;
    if (len == 0) {
        len = (size_t)PyOS_snprintf(out, cap, "Thread %llu",
                                    (unsigned long long)native_id);
    }
    out[len] = '\0';
    return len;
}

enum { WALK_OK = 0, WALK_NOMEM = -1, WALK_SWAPPED = -2 };

/* Index of tracked thread `t` in the walk's period, adding it there on its
 * first kept sample of the period (a thread with no sample has no entry).
 * Returns WALK_OK, WALK_SWAPPED (the period was swapped during the name
 * lookup: touch nothing) or WALK_NOMEM (also for a full thread table).
 * Needs the GIL. */
static int
period_thread(walk_ctx *w, tracked_thread *t, PyFrameObject *root,
              uint16_t *index)
{
    char name[NAME_MAX_BYTES];
    int named;

    if (t->period_gen == w->gen) {
        *index = t->index;
        if (!t->named) {
            /* Sampled before threading knew it: ask again. */
            size_t len = thread_name(t->ident, t->native_id, root, name,
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
    size_t len = thread_name(t->ident, t->native_id, root, name, sizeof(name),
                             &named);
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

/* Walk one thread's frames leaf first into S.stack_buf[1..]: sets *depth,
 * *truncated when frames beyond max_depth were left out, *idle when the leaf
 * is a waiting frame (then the walk stops early), and *root to the outermost
 * frame (new reference) when the walk reached it. Returns WALK_OK,
 * WALK_NOMEM, or WALK_SWAPPED when the period was swapped while a frame
 * getter ran Python code (nothing held then). Needs the GIL. */
static int
walk(walk_ctx *w, PyThreadState *ts, int *depth, int *truncated, int *idle,
     PyFrameObject **root)
{
    PyFrameObject *frame = ps_py_thread_frame(ts);
    uint32_t n = 0;
    int rc = WALK_OK;

    *depth = 0;
    *truncated = 0;
    *idle = 0;
    *root = NULL;
    while (frame != NULL) {
        if (swapped(w)) {
            rc = WALK_SWAPPED;
            break;
        }
        if (n == S.max_depth) {
            *truncated = 1;
            break;
        }
        PyCodeObject *code = PyFrame_GetCode(frame);
        uint32_t frame_id;
        int interned = intern_code(w->period, code, &frame_id);
        Py_DECREF(code);  /* the frame still holds it */
        if (interned < 0) {
            rc = WALK_NOMEM;
            break;
        }
        if (n == 0 && (ps_stacks_frame_at(&w->period->stacks, frame_id)->flags &
                       PS_FRAME_IDLE)) {
            *idle = 1;
            break;
        }
        S.stack_buf[1 + n++] = frame_id;
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
    if (rc == WALK_SWAPPED) {
        Py_CLEAR(*root);
    }
    return rc;
}

/* Fold the walked stack (leaf first in stack_buf[1..depth]) root first into
 * the tree of `p` and append the sample. Calls no Python code. */
static void
record(ps_period *p, uint16_t index, int depth, int truncated, int64_t now_ns,
       uint32_t weight_us)
{
    uint32_t *frames = S.stack_buf + 1;
    uint32_t node;

    /* Reverse in place to root first. */
    for (int i = 0, j = depth - 1; i < j; i++, j--) {
        uint32_t tmp = frames[i];
        frames[i] = frames[j];
        frames[j] = tmp;
    }
    if (truncated) {
        frames = S.stack_buf;
        frames[0] = p->stacks.truncated_frame;
        depth++;
        p->stats.truncated++;
    }
    int rc = ps_stacks_insert(&p->stacks, frames, (size_t)depth, &node);
    if (rc == PS_EFULL) {
        p->stats.truncated++;
    }
    else if (rc < 0) {
        p->stats.dropped++;
        return;
    }
    if (ps_period_add_sample(p, now_ns, index, node, weight_us) < 0) {
        p->stats.dropped++;
    }
}

static uint32_t
to_us(int64_t ns)
{
    int64_t us = (ns + 500) / 1000;
    return us <= 0 ? 0 : us > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* A thread the first pass chose to walk. */
struct ps_walk_candidate {
    PyThreadState *ts;  /* Borrowed; valid only while still listed */
    uint64_t ident;
    uint64_t native_id;
    size_t tracked;     /* index in S.tracked (stable for the whole walk) */
    uint32_t weight_us;
};

static ps_walk_candidate *
add_candidate(void)
{
    if (S.n_candidates == S.cap_candidates) {
        size_t cap = S.cap_candidates ? S.cap_candidates * 2 : 32;
        ps_walk_candidate *c = PyMem_RawRealloc(S.candidates, cap * sizeof(*c));
        if (c == NULL) {
            return NULL;
        }
        S.candidates = c;
        S.cap_candidates = cap;
    }
    return &S.candidates[S.n_candidates++];
}

/* The first pass over the thread list: clocks, the CPU-idle test, and the
 * threads to walk into S.candidates. Calls nothing that can run Python code,
 * so the list cannot change under it. */
static void
choose_threads(ps_period *p, int64_t start_ns, int baseline)
{
    int cpu_mode = S.mode != PS_MODE_REAL;

    S.n_candidates = 0;
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(S.interp);
         ts != NULL; ts = PyThreadState_Next(ts)) {
        if (ts == S.tstate || ps_py_thread_native_id(ts) == 0) {
            continue;
        }
        int created;
        tracked_thread *t =
            track(ps_py_thread_ident(ts), ps_py_thread_native_id(ts), &created);
        if (t == NULL) {
            p->stats.dropped++;
            continue;
        }
        t->walk = S.walk;
        int64_t cpu_ns = cpu_mode ? ps_thread_cpu_ns(t->native_id) : 0;
        int64_t since_ns;
        if (cpu_mode) {
            /* A thread first seen now started after the previous walk: all
             * of its CPU time is new. At baseline, none of it is. */
            int64_t previous = created ? (baseline ? cpu_ns : 0) : t->last_cpu_ns;
            since_ns = cpu_ns < 0 ? 0 : cpu_ns - previous;
            if (cpu_ns >= 0) {
                t->last_cpu_ns = cpu_ns;
            }
        }
        else {
            int64_t previous = created ? S.last_tick_ns : t->last_wall_ns;
            since_ns = start_ns - previous;
            t->last_wall_ns = start_ns;
        }
        if (baseline) {
            continue;
        }
        uint32_t weight_us = to_us(since_ns);
        if (weight_us == 0) {
            p->stats.idle++;  /* no CPU since its last sample */
            continue;
        }
        if (p->stats.samples + S.n_candidates >= S.max_samples) {
            p->stats.dropped++;
            continue;
        }
        ps_walk_candidate *c = add_candidate();
        if (c == NULL) {
            p->stats.dropped++;
            continue;
        }
        c->ts = ts;
        c->ident = t->ident;
        c->native_id = t->native_id;
        c->tracked = (size_t)(t - S.tracked);
        c->weight_us = weight_us;
    }
}

/* Walk and record one chosen thread. Returns WALK_OK or WALK_SWAPPED. */
static int
sample_thread(walk_ctx *w, const ps_walk_candidate *c, int64_t start_ns)
{
    ps_period *p = w->period;
    int depth, truncated, idle;
    PyFrameObject *root = NULL;
    uint16_t index;

    if (w->python_ran && !still_listed(c->ts, c->ident, c->native_id)) {
        p->stats.dropped++;  /* it ended while Python code ran */
        return WALK_OK;
    }
    int rc = walk(w, c->ts, &depth, &truncated, &idle, &root);
    if (rc == WALK_SWAPPED) {
        return rc;
    }
    if (rc == WALK_NOMEM) {
        p->stats.dropped++;
    }
    else if (idle || depth == 0) {
        p->stats.idle++;
    }
    else {
        rc = period_thread(w, &S.tracked[c->tracked], root, &index);
        if (rc == WALK_OK) {
            record(p, index, depth, truncated, start_ns, c->weight_us);
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
ps_walk_all(uint64_t ticks, int baseline)
{
    ps_period *p = S.active;
    int64_t start_ns = ps_mono_ns();
    walk_ctx w = {.period = p, .gen = S.period_gen, .python_ran = 0};

    if (S.walking) {
        /* Re-entered: from Python code run inside the walk in progress (a
         * finalizer, a signal handler), or from another thread while that
         * walk let go of the GIL. That walk covers these ticks. */
        if (!baseline && p != NULL) {
            p->stats.missed += ticks ? ticks : 1;
        }
        return;
    }
    S.walking = 1;
    S.walker = pthread_self();
    S.walk++;
    if (!baseline) {
        p->stats.ticks++;
        p->stats.missed += ticks > 1 ? ticks - 1 : 0;
    }
    choose_threads(p, start_ns, baseline);
    for (size_t i = 0; i < S.n_candidates; i++) {
        if (sample_thread(&w, &S.candidates[i], start_ns) == WALK_SWAPPED) {
            /* `p` may be gone: count the lost sample where it can be seen. */
            if (S.active != NULL) {
                S.active->stats.dropped++;
            }
            goto done;
        }
    }
    prune_tracked();
    S.last_tick_ns = start_ns;
    if (!baseline) {
        p->stats.sampling_ns += (uint64_t)(ps_mono_ns() - start_ns);
    }
done:
    PyErr_Clear();
    S.n_candidates = 0;
    S.walking = 0;
    if (S.release_deferred) {
        S.release_deferred = 0;
        ps_sampler_release_walk_state();
    }
}

void
ps_walker_forget_codes(void)
{
    code_map_clear(&S.codes);
}

void
ps_walker_forget_threads(void)
{
    PyMem_RawFree(S.tracked);
    S.tracked = NULL;
    S.n_tracked = S.cap_tracked = 0;
    PyMem_RawFree(S.candidates);
    S.candidates = NULL;
    S.n_candidates = S.cap_candidates = 0;
}
