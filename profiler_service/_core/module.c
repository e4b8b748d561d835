/* The extension module profiler_service._core: its method table,
 * multi-phase init, module state, and the one translator from PS_E* codes to
 * Python exceptions. The sampler is process-wide, so the module refuses
 * subinterpreters and builds without a GIL. */
#include "binding.h"

#include <errno.h>

#include "ps_error.h"
#include "sampler.h"
#include "stalldetect.h"
#include "signals.h"

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

static PyMethodDef core_methods[] = {
    {"start", (PyCFunction)(void (*)(void))ps_sampler_start,
     METH_VARARGS | METH_KEYWORDS,
     "start(mode, frequency, max_depth, max_stacks, max_samples, idle)\n"
     "Arm the process-wide sampler. Arguments are validated by Profiler."},
    {"rotate", ps_sampler_rotate, METH_NOARGS,
     "Finish the active period and start a new one; returns the finished Period."},
    {"stop", (PyCFunction)(void (*)(void))ps_sampler_stop,
     METH_VARARGS | METH_KEYWORDS,
     "stop(route_disposition=-1)\n"
     "Disarm, join the sampler thread and return the final Period."},
    {"is_running", ps_sampler_is_running, METH_NOARGS,
     "True while the sampler runs."},
    {"status", ps_sampler_status, METH_NOARGS,
     "A dict describing the active period, or None when stopped."},
    {"concat", ps_period_concat_py, METH_O,
     "concat(periods) -> Period\n"
     "One Period holding consecutive Periods of this process, in time order."},
    {"watch_poll", ps_stalls_watch_poll, METH_O,
     "watch_poll(poll) -> callable\n"
     "Wrap the reactor's poller call so that the stall detector sees the "
     "reactor enter and leave it."},
    {"_main_tick", ps_signals_main_tick, METH_VARARGS,
     "Python-level handler of the trip signal (internal)."},
    {"_before_fork", ps_sampler_before_fork, METH_NOARGS, NULL},
    {"_after_fork_parent", ps_sampler_after_fork_parent, METH_NOARGS, NULL},
    {"_after_fork_child", ps_sampler_after_fork_child, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot core_slots[] = {
    {Py_mod_exec, core_exec},
    {0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "profiler_service._core",
    .m_doc = "C core of buildbot-profiler: the sampler, periods and the writer.",
    .m_size = sizeof(ps_state),
    .m_methods = core_methods,
    .m_slots = core_slots,
    .m_traverse = core_traverse,
    .m_clear = core_clear,
    .m_free = core_free,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    return PyModuleDef_Init(&core_module);
}
