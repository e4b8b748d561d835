/* Thread names for the walker: the name threading knows a thread by, looked
 * up at the thread's first sample of a period (and again while threading
 * does not know it yet). Can run Python code: the walker checks for a
 * period swap after each lookup. */
#include "walker.h"

#include <string.h>

const char *
ps_walker_utf8_or(PyObject *s, const char *fallback, Py_ssize_t *len)
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
    const char *file = ps_walker_utf8_or(ps_py_code_filename(code), "", &file_len);
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

/* threading._active[ident]._name, or, when threading does not list the
 * thread (starting or ending), the name of the Thread whose _bootstrap is
 * its outermost frame `root`. */
size_t
ps_thread_name(uint64_t ident, uint64_t native_id, PyFrameObject *root,
               char *out, size_t cap, int *named)
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
