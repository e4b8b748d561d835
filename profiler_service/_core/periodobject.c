/* The Period type: a read-only view of one finished period, with collapsed
 * stacks and the file writer. A Period never changes after it is made, which
 * is what lets write() release the GIL. */
#include "binding.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ps_collapsed.h"
#include "ps_error.h"
#include "ps_writer.h"

static void
Period_dealloc(PeriodObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    ps_period_free(self->period);
    self->period = NULL;
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

PyObject *
ps_period_wrap(PyObject *module, ps_period *period)
{
    ps_state *state = ps_get_state(module);
    PeriodObject *self = PyObject_New(PeriodObject, state->period_type);
    if (self == NULL) {
        ps_period_free(period);
        return NULL;
    }
    self->period = period;
    return (PyObject *)self;
}

static PyObject *
Period_get_samples(PeriodObject *self, void *closure)
{
    return PyLong_FromSize_t(self->period->samples.len);
}

static PyObject *
Period_get_stacks(PeriodObject *self, void *closure)
{
    /* Distinct leaf stacks that received samples. */
    const ps_period *p = self->period;
    size_t n_nodes = ps_stacks_node_count(&p->stacks), distinct = 0;
    unsigned char *seen = PyMem_Calloc(n_nodes ? n_nodes : 1, 1);
    if (seen == NULL) {
        return PyErr_NoMemory();
    }
    for (size_t i = 0; i < p->samples.len; i++) {
        const ps_sample *s = ps_vec_at(&p->samples, i);
        if (!seen[s->node]) {
            seen[s->node] = 1;
            distinct++;
        }
    }
    PyMem_Free(seen);
    return PyLong_FromSize_t(distinct);
}

static PyObject *
Period_get_nodes(PeriodObject *self, void *closure)
{
    return PyLong_FromUnsignedLong(ps_stacks_node_count(&self->period->stacks));
}

static PyObject *
Period_get_frames(PeriodObject *self, void *closure)
{
    return PyLong_FromUnsignedLong(ps_stacks_frame_count(&self->period->stacks));
}

static PyObject *
Period_get_start_time(PeriodObject *self, void *closure)
{
    return PyFloat_FromDouble((double)self->period->start_unix_ms / 1000.0);
}

static PyObject *
Period_get_end_time(PeriodObject *self, void *closure)
{
    return PyFloat_FromDouble((double)self->period->end_unix_ms / 1000.0);
}

static PyObject *
Period_get_duration(PeriodObject *self, void *closure)
{
    const ps_period *p = self->period;
    return PyFloat_FromDouble((double)(p->end_mono_ns - p->start_mono_ns) / 1e9);
}

static PyObject *
Period_get_mode(PeriodObject *self, void *closure)
{
    return PyUnicode_FromString(ps_mode_name(self->period->mode));
}

static PyObject *
Period_get_frequency(PeriodObject *self, void *closure)
{
    return PyFloat_FromDouble((double)self->period->frequency_mhz / 1000.0);
}

static PyObject *
Period_get_max_depth(PeriodObject *self, void *closure)
{
    return PyLong_FromUnsignedLong(self->period->max_depth);
}

static PyObject *
Period_get_heap_bytes(PeriodObject *self, void *closure)
{
    return PyLong_FromSize_t(ps_period_heap_bytes(self->period));
}

static PyObject *
Period_get_threads(PeriodObject *self, void *closure)
{
    const ps_period *p = self->period;
    PyObject *list = PyList_New((Py_ssize_t)p->threads.len);
    if (list == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < p->threads.len; i++) {
        const ps_thread *t = ps_period_thread(p, (uint16_t)i);
        PyObject *item = Py_BuildValue(
            "{s:K,s:K,s:s,s:K,s:K}", "ident", (unsigned long long)t->ident,
            "native_id", (unsigned long long)t->native_id, "name", t->name,
            "samples", (unsigned long long)t->samples, "weight_us",
            (unsigned long long)t->weight_us);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    return list;
}

static PyObject *
Period_get_stats(PeriodObject *self, void *closure)
{
    const ps_stats *s = &self->period->stats;
    return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K}", "ticks",
                         (unsigned long long)s->ticks, "missed",
                         (unsigned long long)s->missed, "samples",
                         (unsigned long long)s->samples, "idle",
                         (unsigned long long)s->idle, "truncated",
                         (unsigned long long)s->truncated, "dropped",
                         (unsigned long long)s->dropped, "sampling_ns",
                         (unsigned long long)s->sampling_ns, "signal_lost",
                         (unsigned long long)s->signal_lost);
}

static PyObject *
Period_get_load(PeriodObject *self, void *closure)
{
    const ps_period *p = self->period;
    PyObject *list = PyList_New((Py_ssize_t)p->load.len);
    if (list == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < p->load.len; i++) {
        const ps_load *l = ps_vec_at(&p->load, i);
        PyObject *item = Py_BuildValue("(IIK)", l->t_ms, l->cpu_permille,
                                       (unsigned long long)l->rss_kb);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    return list;
}

/* Thread index for a name (str) or an ident / native id (int); -1 for None.
 * Returns -2 with an exception set when nothing matches. */
static int
find_thread(const ps_period *p, PyObject *thread)
{
    if (thread == Py_None) {
        return -1;
    }
    if (PyUnicode_Check(thread)) {
        const char *name = PyUnicode_AsUTF8(thread);
        if (name == NULL) {
            return -2;
        }
        for (size_t i = 0; i < p->threads.len; i++) {
            if (strcmp(ps_period_thread(p, (uint16_t)i)->name, name) == 0) {
                return (int)i;
            }
        }
    }
    else if (PyLong_Check(thread)) {
        unsigned long long id = PyLong_AsUnsignedLongLong(thread);
        if (id == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
        }
        else {
            for (size_t i = 0; i < p->threads.len; i++) {
                const ps_thread *t = ps_period_thread(p, (uint16_t)i);
                if (t->ident == id || t->native_id == id) {
                    return (int)i;
                }
            }
        }
    }
    else {
        PyErr_SetString(PyExc_TypeError,
                        "thread must be None, a thread name (str) or an id (int)");
        return -2;
    }
    PyErr_Format(PyExc_KeyError, "no thread %R in this period", thread);
    return -2;
}

static PyObject *
Period_collapsed(PeriodObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"thread", "weighted", "lines", NULL};
    PyObject *thread = Py_None;
    int weighted = 0, lines = 0;
    char *text = NULL;
    size_t len = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O$pp:collapsed", keywords,
                                     &thread, &weighted, &lines)) {
        return NULL;
    }
    int index = find_thread(self->period, thread);
    if (index == -2) {
        return NULL;
    }
    int rc = ps_collapsed_render(self->period, index, weighted, lines, &text, &len);
    if (rc < 0) {
        return ps_raise(rc, "collapsed", NULL);
    }
    PyObject *result = PyUnicode_DecodeUTF8(text, (Py_ssize_t)len, "replace");
    free(text);
    return result;
}

/* json.dumps(obj) as bytes (new reference), or NULL with an exception. */
static PyObject *
dumps(PyObject *obj)
{
    PyObject *json = PyImport_ImportModule("json"), *text = NULL, *bytes = NULL;
    if (json == NULL) {
        return NULL;
    }
    text = PyObject_CallMethod(json, "dumps", "O", obj);
    Py_DECREF(json);
    if (text == NULL) {
        return NULL;
    }
    bytes = PyUnicode_AsUTF8String(text);
    Py_DECREF(text);
    return bytes;
}

/* 0 if `builds` is a list of dicts (JSON objects, which is what a reader
 * accepts), else -1 with a TypeError naming the first bad item. */
static int
check_builds(PyObject *builds)
{
    if (!PyList_Check(builds)) {
        PyErr_Format(PyExc_TypeError, "builds must be a list or None, got %s",
                     Py_TYPE(builds)->tp_name);
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(builds); i++) {
        PyObject *build = PyList_GET_ITEM(builds, i);  /* borrowed */
        if (!PyDict_Check(build)) {
            PyErr_Format(PyExc_TypeError,
                         "builds[%zd] must be a dict (a JSON object), got %s",
                         i, Py_TYPE(build)->tp_name);
            return -1;
        }
    }
    return 0;
}

static PyObject *
Period_write(PeriodObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"path", "builds", "meta", "level", NULL};
    PyObject *path_obj = NULL, *path_bytes = NULL, *builds = Py_None,
             *meta = Py_None, *builds_json = NULL, *meta_json = NULL,
             *result = NULL;
    int level = 0;
    ps_write_options options = {0};
    ps_write_error err = {0};

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|OOi:write", keywords,
                                     &path_obj, &builds, &meta, &level)) {
        return NULL;
    }
    if (builds != Py_None && check_builds(builds) < 0) {
        return NULL;
    }
    if (meta != Py_None && !PyDict_Check(meta)) {
        PyErr_SetString(PyExc_TypeError, "meta must be a dict or None");
        return NULL;
    }
    if (level < 0 || level > 9) {
        PyErr_SetString(PyExc_ValueError, "level must be between 0 and 9");
        return NULL;
    }
    if (!PyUnicode_FSConverter(path_obj, &path_bytes)) {
        return NULL;
    }
    if (builds != Py_None && (builds_json = dumps(builds)) == NULL) {
        goto error;
    }
    if (meta != Py_None && (meta_json = dumps(meta)) == NULL) {
        goto error;
    }
    if (builds_json != NULL) {
        options.builds_json = PyBytes_AS_STRING(builds_json);
        options.builds_len = (size_t)PyBytes_GET_SIZE(builds_json);
    }
    if (meta_json != NULL) {
        options.meta_json = PyBytes_AS_STRING(meta_json);
        options.meta_len = (size_t)PyBytes_GET_SIZE(meta_json);
    }
    options.level = level;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = ps_writer_write(self->period, PyBytes_AS_STRING(path_bytes), &options,
                         &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        if (rc == PS_EOS) {
            /* OSError(errno, "strerror (step)", path): the constructor picks
             * the subclass (FileNotFoundError, PermissionError, ...). */
            PyObject *exc = PyObject_CallFunction(
                PyExc_OSError, "isO", err.os_errno,
                strerror(err.os_errno), path_obj);
            if (exc != NULL) {
                PyObject *message = PyUnicode_FromFormat(
                    "%s (while writing: %s)", strerror(err.os_errno), err.what);
                if (message != NULL) {
                    PyObject_SetAttrString(exc, "strerror", message);
                    Py_DECREF(message);
                }
                PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
                Py_DECREF(exc);
            }
        }
        else if (rc == PS_ENOMEM) {
            PyErr_NoMemory();
        }
        else {
            PyObject *path_repr = PyObject_Repr(path_obj);
            PyErr_Format(rc == PS_EJSON ? PyExc_ValueError : PyExc_OSError,
                         "writing %U failed at %s: %s",
                         path_repr ? path_repr : path_obj, err.what,
                         ps_strerror(rc));
            Py_XDECREF(path_repr);
        }
        goto error;
    }
    result = Py_NewRef(Py_None);
error:
    Py_XDECREF(path_bytes);
    Py_XDECREF(builds_json);
    Py_XDECREF(meta_json);
    return result;
}

/* A rotation starts the next period a moment before it finishes the last
 * one: chunks of one sampler overlap by that much, never more. */
#define CONCAT_MAX_OVERLAP_NS 1000000000LL

/* "100", "12.5": millihertz as decimal text, locale-independent. */
static void
format_hz(char *text, size_t size, uint64_t mhz)
{
    int n = snprintf(text, size, "%llu", (unsigned long long)(mhz / 1000));
    unsigned frac = (unsigned)(mhz % 1000);
    if (frac != 0 && n > 0 && (size_t)n < size) {
        snprintf(text + n, size - (size_t)n, ".%03u", frac);
        for (size_t end = strlen(text); text[end - 1] == '0'; end--) {
            text[end - 1] = '\0';
        }
    }
}

/* 0 if the periods can be joined into one: one mode, frequency and depth
 * (a file has one of each), each a distinct period following the one
 * before in time; else -1 with a ValueError naming the item. O(n). */
static int
check_concat(ps_period *const *items, Py_ssize_t n)
{
    for (Py_ssize_t i = 1; i < n; i++) {
        const ps_period *first = items[0], *prev = items[i - 1], *p = items[i];
        if (p->mode != first->mode || p->frequency_mhz != first->frequency_mhz ||
            p->max_depth != first->max_depth) {
            char hz[32], first_hz[32];
            format_hz(hz, sizeof(hz), p->frequency_mhz);
            format_hz(first_hz, sizeof(first_hz), first->frequency_mhz);
            PyErr_Format(PyExc_ValueError,
                         "concat() needs Periods of one mode, frequency and "
                         "max_depth: item %zd is %s %s Hz (depth %u), item 0 "
                         "is %s %s Hz (depth %u)",
                         i, ps_mode_name(p->mode), hz, (unsigned)p->max_depth,
                         ps_mode_name(first->mode), first_hz,
                         (unsigned)first->max_depth);
            return -1;
        }
        /* A repeat further back starts before its predecessor: the time
         * check below refuses it. */
        if (p == prev) {
            PyErr_Format(PyExc_ValueError,
                         "concat() item %zd is item %zd again: each Period "
                         "may appear once", i, i - 1);
            return -1;
        }
        int64_t prev_end = prev->end_mono_ns ? prev->end_mono_ns
                                             : prev->start_mono_ns;
        if (p->start_mono_ns < prev->start_mono_ns ||
            p->start_mono_ns < prev_end - CONCAT_MAX_OVERLAP_NS) {
            PyErr_Format(PyExc_ValueError,
                         "concat() needs consecutive Periods in time order: "
                         "item %zd starts before item %zd ends", i, i - 1);
            return -1;
        }
    }
    return 0;
}

PyObject *
ps_period_concat_py(PyObject *module, PyObject *periods)
{
    ps_state *state = ps_get_state(module);
    PyObject *seq = NULL, *result = NULL;
    ps_period **items = NULL;
    ps_period *merged = NULL;
    int rc;

    seq = PySequence_Fast(periods, "concat() takes a sequence of Periods");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "concat() needs at least one Period");
        goto error;
    }
    items = PyMem_Malloc((size_t)n * sizeof(*items));
    if (items == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyObject_TypeCheck(item, state->period_type)) {
            PyErr_Format(PyExc_TypeError, "concat() item %zd is not a Period", i);
            goto error;
        }
        items[i] = ((PeriodObject *)item)->period;
    }
    if (check_concat(items, n) < 0) {
        goto error;
    }
    /* The sources are immutable and `seq` keeps them alive. */
    Py_BEGIN_ALLOW_THREADS
    rc = ps_period_concat(items, (size_t)n, &merged);
    Py_END_ALLOW_THREADS
    if (rc == PS_EINVAL) {
        PyErr_SetString(PyExc_ValueError,
                        "concat() needs Periods in time order");
        goto error;
    }
    if (rc < 0) {
        ps_raise(rc, "concat", NULL);
        goto error;
    }
    result = ps_period_wrap(module, merged);
error:
    PyMem_Free(items);
    Py_DECREF(seq);
    return result;
}

static Py_ssize_t
Period_len(PeriodObject *self)
{
    return (Py_ssize_t)self->period->samples.len;
}

static PyObject *
Period_repr(PeriodObject *self)
{
    const ps_period *p = self->period;
    return PyUnicode_FromFormat("<Period %s %zu samples, %zu threads, %lld ms>",
                                ps_mode_name(p->mode), p->samples.len,
                                p->threads.len,
                                (long long)ps_period_duration_ms(p));
}

static PyGetSetDef Period_getset[] = {
    {"samples", (getter)Period_get_samples, NULL, "Samples kept.", NULL},
    {"stacks", (getter)Period_get_stacks, NULL,
     "Distinct stacks that received samples.", NULL},
    {"nodes", (getter)Period_get_nodes, NULL, "Nodes in the stack tree.", NULL},
    {"frames", (getter)Period_get_frames, NULL, "Distinct frames.", NULL},
    {"start_time", (getter)Period_get_start_time, NULL,
     "Start, seconds since the epoch.", NULL},
    {"end_time", (getter)Period_get_end_time, NULL,
     "End, seconds since the epoch.", NULL},
    {"duration", (getter)Period_get_duration, NULL, "Seconds covered.", NULL},
    {"mode", (getter)Period_get_mode, NULL, "'prof', 'virtual' or 'real'.", NULL},
    {"frequency", (getter)Period_get_frequency, NULL, "Requested Hz.", NULL},
    {"max_depth", (getter)Period_get_max_depth, NULL, "Frames kept per stack.", NULL},
    {"heap_bytes", (getter)Period_get_heap_bytes, NULL,
     "Bytes of C heap the period holds.", NULL},
    {"threads", (getter)Period_get_threads, NULL,
     "Threads seen: dicts of ident, native_id, name, samples, weight_us.", NULL},
    {"stats", (getter)Period_get_stats, NULL,
     "Counters: ticks, missed, samples, idle, truncated, dropped, sampling_ns, "
     "signal_lost.", NULL},
    {"load", (getter)Period_get_load, NULL,
     "Load series: (t_ms, cpu_permille, rss_kb) once a second.", NULL},
    {NULL},
};

static PyMethodDef Period_methods[] = {
    {"collapsed", (PyCFunction)(void (*)(void))Period_collapsed,
     METH_VARARGS | METH_KEYWORDS,
     "collapsed(thread=None, *, weighted=False, lines=False) -> str\n"
     "Brendan Gregg collapsed stacks, the thread name as the root frame; each\n"
     "line ends with the sample count (the sampling intervals its samples\n"
     "weigh, docs/FORMAT.md; a stack that counts none has no line), or with\n"
     "weighted=True the CPU (or wall) microseconds the samples stand for.\n"
     "Frames are functions, 'name (file:first line)'; with lines=True each\n"
     "frame is 'name (file:line)' with the line it was on."},
    {"write", (PyCFunction)(void (*)(void))Period_write,
     METH_VARARGS | METH_KEYWORDS,
     "write(path, builds=None, meta=None, level=0)\n"
     "Write the period as gzip JSON, atomically, with the GIL released."},
    {NULL},
};

static PyType_Slot Period_slots[] = {
    {Py_tp_dealloc, Period_dealloc},
    {Py_tp_repr, Period_repr},
    {Py_tp_getset, Period_getset},
    {Py_tp_methods, Period_methods},
    {Py_sq_length, Period_len},
    {Py_tp_doc, "One finished sampling period (read-only)."},
    {0, NULL},
};

PyType_Spec ps_period_spec = {
    .name = "profiler_service._core.Period",
    .basicsize = sizeof(PeriodObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = Period_slots,
};
