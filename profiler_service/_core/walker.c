/* Walking: for every Python thread, the idle tests (CPU used since its last
 * sample, waiting leaf frame), the frame walk with the public API (leaf
 * first, up to max_depth), interning code objects as frames, and folding the
 * stack into the active period. Runs with the GIL held, on the main thread or
 * the sampler thread (see sampler.c). */
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

static void
code_map_clear(code_map *m)
{
    for (size_t i = 0; i < m->n_slots; i++) {
        Py_XDECREF(m->keys[i]);
    }
    PyMem_RawFree(m->keys);
    PyMem_RawFree(m->values);
    memset(m, 0, sizeof(*m));
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

/* Frame id of `code` in the active period, interning it on first sight.
 * Returns 0 or PS_ENOMEM. Needs the GIL. */
static int
intern_code(PyCodeObject *code, uint32_t *frame_id)
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
    int rc = ps_stacks_frame(&S.active->stacks, name, (size_t)name_len, file,
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

/* The name threading knows the thread by, into `out` (NUL-terminated, cut
 * at a character boundary). Reads threading._active[ident]._name without
 * running Python code of ours. A thread too new (or not made by threading)
 * gets "Thread <native id>" and *named = 0. Needs the GIL. */
static size_t
thread_name(uint64_t ident, uint64_t native_id, char *out, size_t cap,
            int *named)
{
    PyObject *threading = NULL, *active = NULL, *key = NULL, *name = NULL;
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
        PyObject *thread = key ? PyDict_GetItemWithError(active, key) : NULL;
        if (thread != NULL) {
            name = PyObject_GetAttrString(thread, "_name");
        }
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

/* Index of tracked thread `t` in the active period, adding it on first sight
 * in this period. Returns 0 or a PS_E* code. Needs the GIL. */
static int
period_thread(tracked_thread *t, uint16_t *index)
{
    char name[NAME_MAX_BYTES];

    int named;

    if (t->period_gen == S.period_gen) {
        *index = t->index;
        if (!t->named) {
            /* Seen before threading registered it: ask again. */
            size_t len = thread_name(t->ident, t->native_id, name, sizeof(name),
                                     &named);
            if (named && ps_period_rename_thread(S.active, t->index, name, len) == 0) {
                t->named = 1;
            }
        }
        return PS_OK;
    }
    size_t len = thread_name(t->ident, t->native_id, name, sizeof(name), &named);
    int rc = ps_period_add_thread(S.active, t->ident, t->native_id, name, len,
                                  &t->index);
    if (rc < 0) {
        return rc;
    }
    t->period_gen = S.period_gen;
    t->named = named;
    *index = t->index;
    return PS_OK;
}

/* ---- sampling ----------------------------------------------------------- */

/* Walk one thread's frames leaf first into S.stack_buf[1..]; returns the
 * depth, sets *truncated when frames beyond max_depth were left out, and
 * *idle when the leaf is a waiting frame (then the walk stops early).
 * Returns -1 on memory exhaustion. Needs the GIL. */
static int
walk(PyThreadState *ts, int *truncated, int *idle)
{
    PyFrameObject *frame = PyThreadState_GetFrame(ts);
    uint32_t n = 0;

    *truncated = 0;
    *idle = 0;
    while (frame != NULL) {
        if (n == S.max_depth) {
            *truncated = 1;
            Py_DECREF(frame);
            break;
        }
        PyCodeObject *code = PyFrame_GetCode(frame);
        uint32_t frame_id;
        int rc = intern_code(code, &frame_id);
        Py_DECREF(code);
        if (rc < 0) {
            Py_DECREF(frame);
            return -1;
        }
        if (n == 0 && (ps_stacks_frame_at(&S.active->stacks, frame_id)->flags &
                       PS_FRAME_IDLE)) {
            *idle = 1;
            Py_DECREF(frame);
            return 0;
        }
        S.stack_buf[1 + n++] = frame_id;
        PyFrameObject *back = PyFrame_GetBack(frame);
        Py_DECREF(frame);
        frame = back;
    }
    return (int)n;
}

/* Fold the walked stack (leaf first in stack_buf[1..depth]) root first into
 * the tree and append the sample. */
static void
record(uint16_t index, int depth, int truncated, int64_t now_ns,
       uint32_t weight_us)
{
    ps_period *p = S.active;
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

void
ps_walk_all(uint64_t ticks, int baseline)
{
    ps_period *p = S.active;
    int64_t start_ns = ps_mono_ns();
    int cpu_mode = S.mode != PS_MODE_REAL;

    S.walk++;
    if (!baseline) {
        p->stats.ticks++;
        p->stats.missed += ticks > 1 ? ticks - 1 : 0;
    }
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
        uint16_t index;
        if (period_thread(t, &index) < 0) {
            p->stats.dropped++;
            continue;
        }
        uint32_t weight_us = to_us(since_ns);
        if (weight_us == 0) {
            p->stats.idle++;  /* no CPU since its last sample */
            continue;
        }
        if (p->stats.samples >= S.max_samples) {
            p->stats.dropped++;
            continue;
        }
        int truncated, idle;
        int depth = walk(ts, &truncated, &idle);
        if (depth < 0) {
            p->stats.dropped++;
        }
        else if (idle || depth == 0) {
            p->stats.idle++;
        }
        else {
            record(index, depth, truncated, start_ns, weight_us);
        }
    }
    prune_tracked();
    S.last_tick_ns = start_ns;
    PyErr_Clear();
    if (!baseline) {
        p->stats.sampling_ns += (uint64_t)(ps_mono_ns() - start_ns);
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
}
