/* The one process-wide sampler: a native thread that waits for ticks, has
 * every Python thread walked with the public frame API while the GIL is held,
 * drops idle threads, folds the rest into the active period, and records the
 * load series once a second. Python calls start/rotate/stop with the GIL
 * held; the active period is touched only with the GIL held (samples) or
 * under load_lock (load points), so rotate() is an O(1) swap under both.
 *
 * Who walks. A timer tick that lands on the main thread (the reactor of a
 * Buildbot master, busy on the CPU since the tick found it running) trips
 * CPython's signal machinery right in our handler (PyErr_SetInterruptEx is
 * async-signal-safe, and up to 3.12 only reaches the eval loop when called
 * on the main thread): the main thread runs _main_tick at its next bytecode boundary and
 * walks every thread there, its own stack taken where it was running, with
 * no GIL hand-off and no other thread woken. (Sample times then sit on the
 * kernel's CPU-time tick grid: a workload that repeats exactly with a period
 * that divides the grid could alias with it. Jittering them costs a thread
 * wake-up, or a tick lost to each timer re-arm, per sample; a master's work
 * is not phase-locked to its CPU time, so the CPU modes do without. Real
 * mode, whose grid is wall time like a LoopingCall's, jitters.) Any other
 * tick wakes the sampler thread: if the main thread
 * used the CPU since the last tick it is asked to walk the same way (from
 * 3.13 by tripping it from the sampler thread, before by a tgkill poke);
 * otherwise the sampler thread takes the GIL and walks (walker.c). Taking the
 * GIL from a busy thread samples it where it lets go of the GIL (often an
 * I/O call, after up to the 5 ms switch interval): that bias is why a busy
 * main thread walks itself. Each sample is weighted by the CPU (or wall) time
 * since that thread's previous one, so a late or redundant walk shifts no
 * weight. */
#define _GNU_SOURCE
#include "sampler.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ps_error.h"
#include "ps_procstat.h"
#include "ps_ticker.h"

#define LOAD_INTERVAL_NS 1000000000LL

ps_sampler ps_sampler_state = {.load_lock = PTHREAD_MUTEX_INITIALIZER};

static void
sample_load(int64_t now_ns)
{
    int64_t cpu_ns = ps_process_cpu_ns();
    int64_t wall = now_ns - S.load_wall_ns;
    uint32_t permille = 0;

    if (wall > 0 && cpu_ns >= S.load_cpu_ns) {
        permille = (uint32_t)((cpu_ns - S.load_cpu_ns) * 1000 / wall);
    }
    S.load_cpu_ns = cpu_ns;
    S.load_wall_ns = now_ns;
    uint64_t rss = ps_rss_kb();
    pthread_mutex_lock(&S.load_lock);
    if (ps_period_add_load(S.active, now_ns, permille, rss) < 0) {
        S.active->stats.dropped++;
    }
    pthread_mutex_unlock(&S.load_lock);
}

/* xorshift64, for real mode's jitter (sampler thread only). */
static uint64_t
next_random(void)
{
    S.rng ^= S.rng << 13;
    S.rng ^= S.rng >> 7;
    S.rng ^= S.rng << 17;
    return S.rng;
}

/* Next real-mode tick: the interval with +-10 % jitter, so we do not alias
 * with LoopingCalls that run at round frequencies. */
static int64_t
jittered_interval(void)
{
    int64_t spread = S.interval_ns / 5;
    if (spread <= 0) {
        return S.interval_ns;
    }
    return S.interval_ns - spread / 2 + (int64_t)(next_random() % (uint64_t)spread);
}

/* In the signal handler, on the main thread: mark trip_signum pending, so
 * the main thread runs _main_tick at its next bytecode boundary. */
static void
on_poke(void)
{
    PyErr_SetInterruptEx(S.trip_signum);
}

/* Ask the main thread to walk: trip it from here where the version allows
 * (pycompat.h), else poke it with the trip signal, whose handler trips it:
 * ours (on_poke) in the CPU modes, CPython's in real mode. Tripping
 * also writes a byte to the wakeup fd if one is set (Twisted's SIGCHLD
 * waker): the reactor reads it at its next iteration, one read() and a
 * waitpid(WNOHANG) per child process, only on ticks that found it busy. */
static void
trip_main(uint64_t ticks)
{
    atomic_fetch_add(&S.main_ticks, ticks);
    if (ps_py_trip_main_from_any_thread(S.trip_signum)) {
        return;
    }
    if (ps_ticker_poke(S.main_tid, S.trip_signum) < 0) {
        atomic_fetch_sub(&S.main_ticks, ticks);  /* the main thread is gone */
    }
}

/* Did the main thread use the CPU since the last tick? Then it is asked to
 * walk at its next bytecode; otherwise it waits (for I/O, for the GIL) and
 * the sampler thread walks. */
static int
main_is_busy(void)
{
    int64_t cpu = ps_thread_cpu_ns((uint64_t)S.main_tid);
    int busy = cpu >= 0 && cpu - S.main_cpu_ns > S.interval_ns / 10;
    S.main_cpu_ns = cpu;
    return busy;
}

static void *
sampler_main(void *arg)
{
    (void)arg;
    PyGILState_STATE gil = PyGILState_Ensure();
    S.tstate = PyThreadState_Get();  /* walks skip it */
    PyThreadState *ts = PyEval_SaveThread();
    int64_t now = ps_mono_ns();
    int64_t next_load = now + LOAD_INTERVAL_NS;
    int64_t next_tick = now + jittered_interval();

    while (!atomic_load(&S.stopping)) {
        int real = S.mode == PS_MODE_REAL;
        int64_t deadline = real && next_tick < next_load ? next_tick : next_load;
        uint64_t ticks = ps_ticker_wait(deadline);
        if (atomic_load(&S.stopping)) {
            break;
        }
        now = ps_mono_ns();
        if (now >= next_load) {
            sample_load(now);
            next_load += LOAD_INTERVAL_NS;
            if (next_load <= now) {
                next_load = now + LOAD_INTERVAL_NS;
            }
        }
        if (real && now >= next_tick) {
            ticks = 1 + (uint64_t)((now - next_tick) / S.interval_ns);
            next_tick = now + jittered_interval();
        }
        if (!atomic_load(&S.signal_lost) && ps_ticker_yield()) {
            /* Our handler was replaced: no more pokes (they would reach the
             * new handler), and in the CPU modes no more ticks. */
            atomic_store(&S.signal_lost, 1);
            S.main_tid = 0;
        }
        if (ticks == 0) {
            continue;
        }
        if (S.main_tid != 0 && main_is_busy()) {
            trip_main(ticks);
            continue;
        }
        if (ps_py_is_finalizing()) {
            break;  /* taking the GIL now would kill or hang this thread */
        }
        PyEval_RestoreThread(ts);
        if (!atomic_load(&S.stopping)) {
            ps_walk_all(ticks, 0);
            /* Ticks that came in while we waited for the GIL are covered by
             * this walk: weights are time since each thread's last sample.
             * (stop() joins this thread before it takes the period.) */
            S.active->stats.missed += ps_ticker_drain();
        }
        ts = PyEval_SaveThread();
    }
    if (!ps_py_is_finalizing()) {
        PyEval_RestoreThread(ts);
        PyGILState_Release(gil);
    }
    return NULL;
}

/* ---- Python API ----------------------------------------------------------- */

static void
free_idle(void)
{
    for (size_t i = 0; i < S.n_idle; i++) {
        PyMem_RawFree(S.idle[i].file_suffix);
        PyMem_RawFree(S.idle[i].qualname);
    }
    PyMem_RawFree(S.idle);
    S.idle = NULL;
    S.n_idle = 0;
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

/* idle: a sequence of (file_suffix, qualname) pairs of str. */
static int
set_idle(PyObject *idle)
{
    PyObject *seq = PySequence_Fast(idle, "idle must be a sequence of (file, qualname) pairs");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    S.idle = PyMem_RawCalloc(n ? (size_t)n : 1, sizeof(idle_pattern));
    if (S.idle == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
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
            Py_DECREF(seq);
            free_idle();
            return -1;
        }
        idle_pattern *p = &S.idle[S.n_idle++];
        p->file_suffix = raw_strdup(file, (size_t)file_len);
        p->file_suffix_len = (size_t)file_len;
        p->qualname = raw_strdup(name, (size_t)name_len);
        if (p->file_suffix == NULL || p->qualname == NULL) {
            Py_DECREF(seq);
            free_idle();
            PyErr_NoMemory();
            return -1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

static ps_period *
new_period(void)
{
    return ps_period_new(S.mode, (uint64_t)llround(S.frequency * 1000.0),
                         S.max_depth, S.max_stacks);
}

void
ps_sampler_release_walk_state(void)
{
    PyMem_RawFree(S.stack_buf);
    S.stack_buf = NULL;
    ps_walker_forget_threads();
    free_idle();
    /* Last: dropping code objects can run Python code, even a start(). */
    ps_walker_forget_codes();
}

/* Release what start() allocated. A walk in progress (Python code ran inside
 * it: see walker.c) keeps using its state until it returns, and frees it
 * then. Needs the GIL (code references). */
static void
release_all(void)
{
    ps_period_free(S.active);
    S.active = NULL;
    if (S.walking) {
        S.release_deferred = 1;
        return;
    }
    ps_sampler_release_walk_state();
}

static PyObject *
sampler_start(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"mode", "frequency", "max_depth", "max_stacks",
                               "max_samples", "idle", "main_tid", "trip_signum",
                               NULL};
    int mode, trip_signum = 0;
    double frequency;
    unsigned int max_depth, max_stacks;
    unsigned long long max_samples;
    long main_tid = 0;
    PyObject *idle;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "idIIKO|li:start", keywords,
                                     &mode, &frequency, &max_depth, &max_stacks,
                                     &max_samples, &idle, &main_tid,
                                     &trip_signum)) {
        return NULL;
    }
    if (S.running) {
        PyErr_SetString(PyExc_RuntimeError,
                        "a sampler is already running in this process; stop it "
                        "first (one sampler per process)");
        return NULL;
    }
    if (S.walking) {
        /* stop() ran inside a walk that has not returned yet (a finalizer
         * released the GIL in it): its state is not free yet. */
        PyErr_SetString(PyExc_RuntimeError,
                        "the previous sampler's last walk has not returned yet "
                        "(Python code it ran still holds it); try again");
        return NULL;
    }
    if (mode < PS_MODE_PROF || mode > PS_MODE_REAL) {
        PyErr_SetString(PyExc_ValueError, "mode: unknown mode");
        return NULL;
    }
    if (!(frequency > 0 && frequency <= 10000)) {
        PyErr_SetString(PyExc_ValueError, "frequency must be in (0, 10000]");
        return NULL;
    }
    if (max_depth < 1 || max_depth > 10000 || max_stacks < 16) {
        PyErr_SetString(PyExc_ValueError, "max_depth or max_stacks out of range");
        return NULL;
    }
    S.mode = mode;
    S.frequency = frequency;
    S.interval_ns = (int64_t)(1e9 / frequency);
    S.max_depth = max_depth;
    S.max_stacks = max_stacks;
    S.max_samples = max_samples;
    S.interp = PyInterpreterState_Get();
    S.rng = (uint64_t)ps_mono_ns() | 1;
    S.main_tid = trip_signum > 0 ? main_tid : 0;
    atomic_store(&S.signal_lost, 0);
    S.trip_signum = trip_signum;
    S.main_cpu_ns = S.main_tid ? ps_thread_cpu_ns((uint64_t)S.main_tid) : 0;
    if (set_idle(idle) < 0) {
        return NULL;
    }
    S.stack_buf = PyMem_RawMalloc((max_depth + 1) * sizeof(uint32_t));
    S.active = new_period();
    if (S.stack_buf == NULL || S.active == NULL) {
        release_all();
        return PyErr_NoMemory();
    }
    S.period_gen++;
    S.tstate = NULL;
    atomic_store(&S.stopping, 0);
    /* Baseline every thread's clock, so the first samples weigh only what
     * was spent after start. */
    S.last_tick_ns = ps_mono_ns();
    ps_walk_all(0, 1);
    S.load_wall_ns = ps_mono_ns();
    S.load_cpu_ns = ps_process_cpu_ns();

    atomic_store(&S.main_ticks, 0);
    ps_ticker_set_poke_handler(S.main_tid ? on_poke : NULL, S.main_tid);
    /* With the main-thread route the caller has just put CPython's handler
     * on the timer signal; ours replaces it at the C level. */
    int rc = ps_ticker_start(mode, S.interval_ns, S.main_tid ? trip_signum : 0);
    if (rc < 0) {
        int saved_errno = errno;
        release_all();
        if (rc == PS_ESTATE) {
            PyErr_Format(PyExc_RuntimeError,
                         "signal %d already has a handler installed by the "
                         "application; refusing to replace it (use mode='real')",
                         ps_ticker_signal(mode));
            return NULL;
        }
        errno = saved_errno;
        return ps_raise(rc, "start", NULL);
    }
    /* The sampler thread does not block the timer signals: the kernel sends
     * them to the thread that was running, and one blocked there would be
     * redirected to another thread, perhaps a sleeping one that it would
     * wake (and charge with CPU). Its own waits retry on EINTR. */
    int err = pthread_create(&S.thread, NULL, sampler_main, NULL);
    if (err != 0) {
        ps_ticker_stop();
        release_all();
        errno = err;
        return ps_raise(PS_EOS, "start", NULL);
    }
    S.running = 1;
    Py_RETURN_NONE;
}

/* Swap in a new active period and return the finished one (owned), or NULL
 * on memory exhaustion. Needs the GIL. */
static ps_period *
swap_period(void)
{
    ps_period *fresh = new_period();
    if (fresh == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&S.load_lock);
    ps_period *done = S.active;
    S.active = fresh;
    /* One instant ends this period and starts the next (the files of a
     * run meet exactly), set while the sampler thread cannot append. */
    ps_period_hand_over(done, fresh);
    pthread_mutex_unlock(&S.load_lock);
    S.period_gen++;
    ps_walker_forget_codes();
    if (atomic_load(&S.signal_lost)) {
        done->stats.signal_lost = 1;
    }
    return done;
}

static PyObject *
sampler_rotate(PyObject *module, PyObject *unused)
{
    if (!S.running) {
        PyErr_SetString(PyExc_RuntimeError, "the sampler is not running");
        return NULL;
    }
    ps_period *done = swap_period();
    if (done == NULL) {
        return PyErr_NoMemory();
    }
    return ps_period_wrap(module, done);
}

/* stop(route_disposition=-1). The C level can stop from any thread; only
 * the Python-level handler table needs the main thread. A caller on another
 * thread passes the disposition (0 SIG_DFL, 1 SIG_IGN) the route signal
 * must end with, as signal.signal() would have set it; CPython's table then
 * still names _main_tick, which does nothing while stopped. */
static PyObject *
sampler_stop(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"route_disposition", NULL};
    int route_disposition = -1;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|i:stop", keywords,
                                     &route_disposition)) {
        return NULL;
    }
    if (!S.running) {
        PyErr_SetString(PyExc_RuntimeError, "the sampler is not running");
        return NULL;
    }
    if (pthread_equal(pthread_self(), S.thread)) {
        /* Python code run inside the sampler thread's own walk (a finalizer
         * of a garbage collection it triggered) cannot join that thread. */
        PyErr_SetString(PyExc_RuntimeError,
                        "stop() cannot run on the sampler's own thread (from a "
                        "finalizer run during a walk)");
        return NULL;
    }
    int route_signum = S.trip_signum;
    atomic_store(&S.stopping, 1);
    /* Disarm before the join: a CPU-timer signal that expires while the
     * sampler thread exits goes to another thread, perhaps a sleeping one
     * that it would wake (and charge with CPU). */
    int replaced = ps_ticker_stop();
    ps_ticker_wake();
    Py_BEGIN_ALLOW_THREADS
    pthread_join(S.thread, NULL);
    Py_END_ALLOW_THREADS
    if (replaced) {
        atomic_store(&S.signal_lost, 1);
    }
    else if (!atomic_load(&S.signal_lost) && route_signum > 0 &&
             route_disposition >= 0) {
        ps_ticker_set_disposition(route_signum, route_disposition == 1);
    }
    S.running = 0;
    ps_period *done = S.active;
    S.active = NULL;
    S.period_gen++;  /* a walk still out (on the main thread) abandons */
    ps_period_finish(done);
    if (atomic_load(&S.signal_lost)) {
        done->stats.signal_lost = 1;
    }
    release_all();
    return ps_period_wrap(module, done);
}

static PyObject *
sampler_is_running(PyObject *module, PyObject *unused)
{
    return PyBool_FromLong(S.running);
}

static PyObject *
sampler_status(PyObject *module, PyObject *unused)
{
    if (!S.running) {
        Py_RETURN_NONE;
    }
    const ps_period *p = S.active;
    return Py_BuildValue(
        "{s:s,s:d,s:L,s:L,s:K,s:K,s:K,s:K,s:n,s:O}", "mode", ps_mode_name(p->mode),
        "frequency", S.frequency, "start_ms", (long long)p->start_unix_ms,
        "duration_ms", (long long)ps_period_duration_ms(p), "samples",
        (unsigned long long)p->stats.samples, "ticks",
        (unsigned long long)p->stats.ticks, "idle",
        (unsigned long long)p->stats.idle, "sampling_ns",
        (unsigned long long)p->stats.sampling_ns, "heap_bytes",
        (Py_ssize_t)ps_period_heap_bytes(p), "signal_lost",
        atomic_load(&S.signal_lost) ? Py_True : Py_False);
}

/* The Python-level handler of trip_signum: runs in the main thread at a
 * bytecode boundary, right after a tick found it on the CPU. It must not
 * disturb the interrupted code: the error indicator is kept. */
static PyObject *
sampler_main_tick(PyObject *module, PyObject *args)
{
    ps_saved_error saved;

    if (!S.running || atomic_load(&S.stopping) || S.active == NULL) {
        Py_RETURN_NONE;
    }
    ps_py_error_save(&saved);
    uint64_t ticks = atomic_exchange(&S.main_ticks, 0);
    ps_walk_all(ticks ? ticks : 1, 0);
    /* This walk covers ticks queued for the sampler thread. Python code run
     * inside the walk may have stopped the sampler. */
    if (S.running && S.active != NULL) {
        S.active->stats.missed += ps_ticker_drain();
    }
    ps_py_error_restore(&saved);
    Py_RETURN_NONE;
}

/* os.register_at_fork hooks. The sampler thread only ever holds load_lock
 * for an append, without waiting for the GIL, so taking it here (GIL held)
 * cannot deadlock, and the child never inherits it locked. */
static PyObject *
sampler_before_fork(PyObject *module, PyObject *unused)
{
    pthread_mutex_lock(&S.load_lock);
    Py_RETURN_NONE;
}

static PyObject *
sampler_after_fork_parent(PyObject *module, PyObject *unused)
{
    pthread_mutex_unlock(&S.load_lock);
    Py_RETURN_NONE;
}

static PyObject *
sampler_after_fork_child(PyObject *module, PyObject *unused)
{
    pthread_mutex_unlock(&S.load_lock);
    ps_ticker_after_fork_child();
    if (S.walking && !pthread_equal(S.walker, pthread_self())) {
        S.walking = 0;  /* that walk's thread does not exist here */
    }
    if (S.running) {
        /* The sampler thread does not exist here and CPython already deleted
         * its thread state; what remains is the parent's data. A walk of
         * this thread still out (fork from a finalizer in it) abandons. */
        S.running = 0;
        atomic_store(&S.stopping, 0);
        S.period_gen++;
        release_all();
    }
    Py_RETURN_NONE;
}

PyMethodDef ps_sampler_methods[] = {
    {"start", (PyCFunction)(void (*)(void))sampler_start,
     METH_VARARGS | METH_KEYWORDS,
     "start(mode, frequency, max_depth, max_stacks, max_samples, idle)\n"
     "Arm the process-wide sampler. Arguments are validated by Profiler."},
    {"rotate", sampler_rotate, METH_NOARGS,
     "Finish the active period and start a new one; returns the finished Period."},
    {"stop", (PyCFunction)(void (*)(void))sampler_stop,
     METH_VARARGS | METH_KEYWORDS,
     "stop(route_disposition=-1)\n"
     "Disarm, join the sampler thread and return the final Period."},
    {"is_running", sampler_is_running, METH_NOARGS,
     "True while the sampler runs."},
    {"status", sampler_status, METH_NOARGS,
     "A dict describing the active period, or None when stopped."},
    {"concat", ps_period_concat_py, METH_O,
     "concat(periods) -> Period\n"
     "One Period holding consecutive Periods of this process, in time order."},
    {"_main_tick", sampler_main_tick, METH_VARARGS,
     "Python-level handler of the trip signal (internal)."},
    {"_before_fork", sampler_before_fork, METH_NOARGS, NULL},
    {"_after_fork_parent", sampler_after_fork_parent, METH_NOARGS, NULL},
    {"_after_fork_child", sampler_after_fork_child, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};
