/* The two functions of pycompat.h that need CPython's internal headers (up
 * to 3.12: the interpreter state's eval breaker). Those headers want
 * Py_BUILD_CORE defined before Python.h, so this file is the only one built
 * with it, and includes nothing of ours but pycompat.h. */
#include <patchlevel.h>

#if PY_VERSION_HEX < 0x030D0000
#define Py_BUILD_CORE 1
#endif

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if PY_VERSION_HEX < 0x030D0000
#include "internal/pycore_interp.h"
#endif

#include "pycompat.h"

int
ps_py_trip_main_from_any_thread(int signum)
{
    if (PyErr_SetInterruptEx(signum) != 0) {
        return 0;
    }
#if PY_VERSION_HEX < 0x030D0000
    /* Release: the main thread that sees the breaker sees the pending
     * signal stored before it. */
    _Py_atomic_store_explicit(&PyInterpreterState_Main()->ceval.eval_breaker, 1,
                              _Py_memory_order_release);
#endif
    return 1;
}

int
ps_py_can_trip_main_from_any_thread(void)
{
#if PY_VERSION_HEX < 0x030D0000
    PyInterpreterState *interp = PyInterpreterState_Main();
    return interp->id == PyInterpreterState_GetID(interp) &&
           interp->ceval.recursion_limit == Py_GetRecursionLimit();
#else
    return 1;
#endif
}
