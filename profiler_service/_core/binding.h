/* What the binding files (the only ones that include Python.h) share: the
 * module state, the Period type and the error translator. */
#ifndef PS_BINDING_H
#define PS_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pycompat.h"

#include "ps_period.h"

typedef struct {
    PyTypeObject *period_type;  /* Owned */
} ps_state;

/* The module state of `module` (borrowed). */
ps_state *ps_get_state(PyObject *module);

/* Set a Python exception for PS_E* `code` and return NULL. For PS_EOS the
 * current errno and `path` (may be NULL) make an OSError. */
PyObject *ps_raise(int code, const char *what, PyObject *path);

/* Period objects. */
typedef struct {
    PyObject_HEAD
    ps_period *period;  /* Owned; immutable once wrapped */
} PeriodObject;

/* Wrap a finished period; takes ownership of `period` even on failure.
 * Returns a new reference or NULL with an exception set. */
PyObject *ps_period_wrap(PyObject *module, ps_period *period);

extern PyType_Spec ps_period_spec;

/* _core.concat(periods) -> Period (periodobject.c). */
PyObject *ps_period_concat_py(PyObject *module, PyObject *periods);

#endif /* PS_BINDING_H */
