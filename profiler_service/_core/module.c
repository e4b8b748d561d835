/* The extension module profiler_service._core: multi-phase init, module
 * state, and the one translator from PS_E* codes to Python exceptions. The
 * sampler is process-wide, so the module refuses subinterpreters and builds
 * without a GIL. */
#include "binding.h"

#include <errno.h>

#include "ps_error.h"

ps_state *
ps_get_state(PyObject *module)
{
    return (ps_state *)PyModule_GetState(module);
}

PyObject *
ps_raise(int code, const char *what, PyObject *path)
{
    switch (code) {
    case PS_ENOMEM:
        return PyErr_NoMemory();
    case PS_EOS:
        if (path != NULL) {
            return PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
        }
        return PyErr_SetFromErrno(PyExc_OSError);
    case PS_EINVAL:
    case PS_EJSON:
        PyErr_Format(PyExc_ValueError, "%s: %s", what, ps_strerror(code));
        return NULL;
    default:
        PyErr_Format(PyExc_RuntimeError, "%s: %s", what, ps_strerror(code));
        return NULL;
    }
}

static int
core_exec(PyObject *module)
{
    ps_state *state = ps_get_state(module);

    if (PS_FREE_THREADED) {
        PyErr_Format(PyExc_ImportError,
                     "buildbot-profiler needs the GIL: this free-threaded "
                     "CPython build (%s) is not supported",
                     Py_GetVersion());
        return -1;
    }
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_ImportError,
                        "profiler_service._core samples the whole process and "
                        "cannot be loaded in a subinterpreter");
        return -1;
    }
    state->period_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &ps_period_spec, NULL);
    if (state->period_type == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "Period",
                              (PyObject *)state->period_type) < 0) {
        return -1;
    }
    return 0;
}

static int
core_traverse(PyObject *module, visitproc visit, void *arg)
{
    ps_state *state = ps_get_state(module);
    Py_VISIT(state->period_type);
    return 0;
}

static int
core_clear(PyObject *module)
{
    ps_state *state = ps_get_state(module);
    Py_CLEAR(state->period_type);
    return 0;
}

static void
core_free(void *module)
{
    core_clear((PyObject *)module);
}

static PyModuleDef_Slot core_slots[] = {
    {Py_mod_exec, core_exec},
    {0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "profiler_service._core",
    .m_doc = "C core of buildbot-profiler: the sampler, periods and the writer.",
    .m_size = sizeof(ps_state),
    .m_methods = NULL,  /* set in PyInit: the sampler's functions */
    .m_slots = core_slots,
    .m_traverse = core_traverse,
    .m_clear = core_clear,
    .m_free = core_free,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    core_module.m_methods = ps_sampler_methods;
    return PyModuleDef_Init(&core_module);
}
