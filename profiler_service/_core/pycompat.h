/* Every difference between the CPython versions we support (3.11 to 3.14)
 * that the binding files meet, behind one small inline API, so that the
 * walker and the sampler carry no version #if of their own. Binding-private:
 * included through binding.h, after Python.h. */
#ifndef PS_PYCOMPAT_H
#define PS_PYCOMPAT_H

#ifndef Py_PYTHON_H
#error "pycompat.h needs Python.h first (include binding.h)"
#endif

#if PY_VERSION_HEX < 0x030B0000
#error "buildbot-profiler needs CPython 3.11 or later"
#endif

/* Free-threaded builds (3.13t, 3.14t) have no GIL to walk under: the module
 * refuses to load there, naming the build (module.c). */
#ifdef Py_GIL_DISABLED
#define PS_FREE_THREADED 1
#else
#define PS_FREE_THREADED 0
#endif

/* Is the interpreter finalizing? Taking the GIL then kills (up to 3.13) or
 * hangs (3.14) a native thread. 3.13 made the private _Py_IsFinalizing
 * public as Py_IsFinalizing and removed the old name. */
static inline int
ps_py_is_finalizing(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing();
#else
    return _Py_IsFinalizing();
#endif
}

/* Ask the main thread to run `signum`'s Python-level handler at its next
 * bytecode boundary, from a thread with no thread state (the sampler
 * thread), without sending a signal and without the GIL. From 3.13
 * PyErr_SetInterruptEx sets the main thread's eval breaker from any thread.
 * Up to 3.12 it marks the signal pending (the main thread's eval loop
 * checks that flag, and only the main thread clears it) but sets the eval
 * breaker only when called on the main thread; from elsewhere the main
 * thread notices at its next GIL switch, which a busy thread running alone
 * never makes. So there we set the eval breaker too, as CPython does for a
 * GIL drop request: a field of the interpreter state that only CPython's
 * internal headers describe, which is why these two functions are compiled
 * on their own, in pycompat.c. A thread other than the main one that meets
 * the breaker finds nothing it may handle and runs on; the breaker is
 * recomputed at the next GIL switch. Returns 1 when tripped, 0 when not (an
 * unknown signal number). tests/test_cpython_behaviour.py checks both
 * halves on each version. */
int ps_py_trip_main_from_any_thread(int signum);

/* Does the interpreter state have the layout this module was built for, so
 * that ps_py_trip_main_from_any_thread writes where the eval loop reads?
 * Checked on two fields next to the eval breaker that public functions read
 * back (the interpreter's id and its recursion limit). Always 1 from 3.13.
 * Call with the GIL held. */
int ps_py_can_trip_main_from_any_thread(void);

/* Take the current exception out of the error indicator (new reference, or
 * NULL when none is set) and put it back. 3.12 made the exception a single
 * object; the (type, value, traceback) triple is deprecated there. */
typedef struct {
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc;
#else
    PyObject *type, *value, *traceback;
#endif
} ps_saved_error;

static inline void
ps_py_error_save(ps_saved_error *saved)
{
#if PY_VERSION_HEX >= 0x030C0000
    saved->exc = PyErr_GetRaisedException();
#else
    PyErr_Fetch(&saved->type, &saved->value, &saved->traceback);
#endif
}

/* Restores (and steals) what ps_py_error_save took. */
static inline void
ps_py_error_restore(ps_saved_error *saved)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(saved->exc);
#else
    PyErr_Restore(saved->type, saved->value, saved->traceback);
#endif
}

/* The thread's `threading.get_ident()` and kernel TID. The fields are not in
 * the limited API but have kept their names and meaning from 3.11 to 3.14
 * (checked on each); a 0 native id is a thread state not bound to a running
 * OS thread yet. */
static inline unsigned long long
ps_py_thread_ident(PyThreadState *ts)
{
    return (unsigned long long)ts->thread_id;
}

static inline unsigned long long
ps_py_thread_native_id(PyThreadState *ts)
{
    return (unsigned long long)ts->native_thread_id;
}

/* Borrowed references to a code object's names, and its first line. */
static inline PyObject *
ps_py_code_qualname(PyCodeObject *code)
{
    return code->co_qualname;
}

static inline PyObject *
ps_py_code_filename(PyCodeObject *code)
{
    return code->co_filename;
}

static inline int
ps_py_code_firstlineno(PyCodeObject *code)
{
    return code->co_firstlineno;
}

/* The byte offset of `frame`'s last instruction, -1 if it has not started,
 * and the line of an offset in `code` (-1 if none). Neither allocates. */
static inline int
ps_py_frame_lasti(PyFrameObject *frame)
{
    return PyFrame_GetLasti(frame);
}

static inline int
ps_py_code_line_at(PyCodeObject *code, int lasti)
{
    return PyCode_Addr2Line(code, lasti);
}

/* Frame getters for another thread's frames. They materialize a frame
 * object, and on 3.11 that allocation can run a garbage collection right
 * inside the getter (GH-97002), whose finalizers may release the GIL; the
 * getter then goes on writing into the other thread's interpreter frame,
 * which that thread may have popped meanwhile (reproduced: ASan SEGV in
 * _PyFrame_MakeAndSetFrameObject). No public API avoids the allocation, so
 * on 3.11 a collection is held off for the duration of the one call: the GIL
 * is held and nothing in it can run Python code, so no other code can see
 * the collector switched off; a collection that came due runs at the next
 * allocation. From 3.12 an allocation only schedules a collection (it runs
 * at the next eval-breaker check, never inside the getter). New
 * references, or NULL (no exception set). */
#if PY_VERSION_HEX < 0x030C0000
#define PS_HOLD_OFF_GC(call)             \
    do {                                 \
        int gc_was_enabled = PyGC_Disable(); \
        call;                            \
        if (gc_was_enabled) {            \
            PyGC_Enable();               \
        }                                \
    } while (0)
#else
#define PS_HOLD_OFF_GC(call) \
    do {                     \
        call;                \
    } while (0)
#endif

static inline PyFrameObject *
ps_py_thread_frame(PyThreadState *ts)
{
    PyFrameObject *frame;
    PS_HOLD_OFF_GC(frame = PyThreadState_GetFrame(ts));
    return frame;
}

static inline PyFrameObject *
ps_py_frame_back(PyFrameObject *frame)
{
    PyFrameObject *back;
    PS_HOLD_OFF_GC(back = PyFrame_GetBack(frame));
    return back;
}

/* The value of local variable `name` of `frame` (new reference), or NULL
 * with no exception set when it has none. 3.12 added PyFrame_GetVarString;
 * on 3.11 the locals come as a dict snapshot (an allocation: see above). */
static inline PyObject *
ps_py_frame_local(PyFrameObject *frame, const char *name)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *value = PyFrame_GetVarString(frame, name);
#else
    PyObject *value = NULL;
    PyObject *locals;
    PS_HOLD_OFF_GC(locals = PyFrame_GetLocals(frame));
    if (locals != NULL && PyDict_Check(locals)) {
        value = PyDict_GetItemString(locals, name);
        Py_XINCREF(value);
    }
    Py_XDECREF(locals);
#endif
    if (value == NULL) {
        PyErr_Clear();
    }
    return value;
}

#endif /* PS_PYCOMPAT_H */
