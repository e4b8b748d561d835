/* Code objects as frames: the walker's map from code object to frame id in
 * the current period (interning a code object into the period's stack table
 * on first sight), the idle patterns that flag a frame as waiting, and the
 * line cache (the line of a code object's instruction offset). */
#include "walker.h"

#include <string.h>

#include "ps_error.h"

/* ---- idle patterns ------------------------------------------------------ */

void
ps_idle_free(ps_walker *w)
{
    for (size_t i = 0; i < w->n_idle; i++) {
        PyMem_RawFree(w->idle[i].file_suffix);
        PyMem_RawFree(w->idle[i].qualname);
    }
    PyMem_RawFree(w->idle);
    w->idle = NULL;
    w->n_idle = 0;
}

static char *
raw_strdup(const char *s, size_t len)
{
    char *copy = PyMem_RawMalloc(len + 1);
    if (copy != NULL) {
        memcpy(copy, s, len);
        copy[len] = '\0';
    }
    return copy;
}

int
ps_idle_set(ps_walker *w, PyObject *idle)
{
    PyObject *seq = PySequence_Fast(idle, "idle must be a sequence of (file, qualname) pairs");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    w->idle = PyMem_RawCalloc(n ? (size_t)n : 1, sizeof(ps_idle_pattern));
    if (w->idle == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *file, *name;
        Py_ssize_t file_len, name_len;
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
            (file = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(item, 0), &file_len)) == NULL ||
            (name = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(item, 1), &name_len)) == NULL) {
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError,
                            "idle entries must be (file suffix, qualname) pairs of str");
            goto error;
        }
        ps_idle_pattern *p = &w->idle[w->n_idle++];
        p->file_suffix = raw_strdup(file, (size_t)file_len);
        p->file_suffix_len = (size_t)file_len;
        p->qualname = raw_strdup(name, (size_t)name_len);
        p->qualname_len = (size_t)name_len;
        if (p->file_suffix == NULL || p->qualname == NULL) {
            PyErr_NoMemory();
            goto error;
        }
    }
    Py_DECREF(seq);
    return 0;

error:
    Py_DECREF(seq);
    ps_idle_free(w);
    return -1;
}

static int
is_idle_frame(const ps_walker *w, const char *name, size_t name_len,
              const char *file, size_t file_len)
{
    for (size_t i = 0; i < w->n_idle; i++) {
        const ps_idle_pattern *p = &w->idle[i];
        size_t n = p->file_suffix_len;
        if (p->qualname_len != name_len ||
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

/* ---- the map ------------------------------------------------------------ */

static inline size_t
ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

void
ps_code_map_clear(ps_code_map *m)
{
    ps_code_map old = *m;
    memset(m, 0, sizeof(*m));
    PyMem_RawFree(old.lines);  /* holds no references */
    for (size_t i = 0; i < old.n_slots; i++) {
        Py_XDECREF(old.keys[i]);
    }
    PyMem_RawFree(old.keys);
    PyMem_RawFree(old.values);
}

static int
code_map_grow(ps_code_map *m)
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

int
ps_code_map_intern(ps_walker *w, PyCodeObject *code, uint32_t *frame_id)
{
    ps_code_map *m = &w->codes;
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
    const char *name = ps_walker_utf8_or(ps_py_code_qualname(code), "?", &name_len);
    const char *file = ps_walker_utf8_or(ps_py_code_filename(code), "?", &file_len);
    int first_line = ps_py_code_firstlineno(code);
    uint32_t line = first_line > 0 ? (uint32_t)first_line : 0;
    uint32_t flags =
        is_idle_frame(w, name, (size_t)name_len, file, (size_t)file_len)
            ? PS_FRAME_IDLE
            : 0;
    int rc = ps_stacks_frame(&w->period->stacks, name, (size_t)name_len, file,
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

/* ---- the line cache ------------------------------------------------------ */

static inline size_t
line_hash(const void *code, int lasti)
{
    return ptr_hash(code) ^ ((size_t)(unsigned)lasti * 0x9E3779B97F4A7C15ull);
}

static int
line_cache_grow(ps_code_map *m)
{
    size_t n = m->n_line_slots ? m->n_line_slots * 2 : 1024;
    ps_code_line *lines = PyMem_RawCalloc(n, sizeof(*lines));
    if (lines == NULL) {
        return PS_ENOMEM;
    }
    for (size_t i = 0; i < m->n_line_slots; i++) {
        const ps_code_line *e = &m->lines[i];
        if (e->code != NULL) {
            size_t j = line_hash(e->code, e->lasti) & (n - 1);
            while (lines[j].code != NULL) {
                j = (j + 1) & (n - 1);
            }
            lines[j] = *e;
        }
    }
    PyMem_RawFree(m->lines);
    m->lines = lines;
    m->n_line_slots = n;
    return PS_OK;
}

/* The line of offset `lasti` in `code`: PyCode_Addr2Line decodes the line
 * table from its start, so the answer is kept. */
static uint32_t
line_at(PyCodeObject *code, int lasti)
{
    int line = lasti < 0 ? ps_py_code_firstlineno(code) : ps_py_code_line_at(code, lasti);
    return line > 0 ? (uint32_t)line : 0;
}

uint32_t
ps_code_map_line(ps_walker *w, PyCodeObject *code, int lasti)
{
    ps_code_map *m = &w->codes;
    size_t i;

    if (m->n_line_slots != 0) {
        i = line_hash(code, lasti) & (m->n_line_slots - 1);
        while (m->lines[i].code != NULL) {
            if (m->lines[i].code == (PyObject *)code && m->lines[i].lasti == lasti) {
                return m->lines[i].line;
            }
            i = (i + 1) & (m->n_line_slots - 1);
        }
    }
    uint32_t line = line_at(code, lasti);
    if ((m->line_count + 1) * 2 > m->n_line_slots && line_cache_grow(m) < 0) {
        return line;  /* not kept: computed again next time */
    }
    i = line_hash(code, lasti) & (m->n_line_slots - 1);
    while (m->lines[i].code != NULL) {
        i = (i + 1) & (m->n_line_slots - 1);
    }
    m->lines[i].code = (PyObject *)code;
    m->lines[i].lasti = lasti;
    m->lines[i].line = line;
    m->line_count++;
    return line;
}
