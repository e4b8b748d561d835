/* The one process-wide sampler: a native thread that waits for ticks, has
 * every Python thread walked (walker.c) while the GIL is held, and records
 * the load series once a second; and start/rotate/stop. Which thread walks
 * a tick is signals.c's business. Python calls start/rotate/stop with the
 * GIL held; the active period is touched only with the GIL held (samples)
 * or under load_lock (load points), so rotate() is an O(1) swap under
 * both. */
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
#include "stalldetect.h"

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

static void *
sampler_main(void *arg)
{
    (void)arg;
    /* Named, so that top -H and /proc/<pid>/task/<tid>/comm show it. */
    pthread_setname_np(pthread_self(), "bbprof-sampler");
    /* This thread gets its thread state the first time it needs the GIL,
     * not before its first tick: a main thread that is busy and also lets
     * go of the GIL often (an event loop polling with a zero timeout
     * between callbacks) can keep a thread that waits for the GIL waiting
     * for seconds, since each of its short releases restarts the waiter's
     * 5 ms switch request. Waiting here left whole runs without a sample;
     * the busy main thread is tripped without the GIL. */
    PyGILState_STATE gil = PyGILState_UNLOCKED;
    PyThreadState *ts = NULL;
    int64_t now = ps_mono_ns();
    int64_t next_load = now + LOAD_INTERVAL_NS;
    int64_t next_tick = now + jittered_interval();

    while (!atomic_load(&S.stopping)) {
        int real = S.mode == PS_MODE_REAL;
        int64_t deadline = real && next_tick < next_load ? next_tick : next_load;
        deadline = ps_stalls_deadline(ps_mono_ns(), deadline);
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
        ps_signals_check(&S.signals);
        int walk = ticks != 0 && !ps_signals_hand_to_main(&S.signals, ticks);
        /* Before any wait for the GIL: during a stall, that wait is what
         * tells who holds it (stalldetect.c). */
        int stall_work = ps_stalls_due(now, walk);
        if (!walk && !stall_work) {
            continue;
        }
        if (ps_py_is_finalizing()) {
            break;  /* taking the GIL now would kill or hang this thread */
        }
        if (ts == NULL) {
            gil = PyGILState_Ensure();
            ps_walker_skip(&S.walker, PyThreadState_Get());
        }
        else {
            PyEval_RestoreThread(ts);
        }
        if (stall_work && !atomic_load(&S.stopping)) {
            ps_stalls_work();
        }
        if (walk && !atomic_load(&S.stopping)) {
            ps_walker_sample(&S.walker, ticks);
            /* Ticks that came in while we waited for the GIL are covered by
             * this walk: weights are time since each thread's last sample.
             * (stop() joins this thread before it takes the period.) */
            S.active->stats.missed += ps_ticker_drain();
        }
        ts = PyEval_SaveThread();
    }
    if (ts != NULL && !ps_py_is_finalizing()) {
        PyEval_RestoreThread(ts);
        PyGILState_Release(gil);
    }
    return NULL;
}

/* ---- Python API ----------------------------------------------------------- */

static ps_period *
new_period(void)
{
    return ps_period_new(S.mode, (uint64_t)llround(S.frequency * 1000.0),
                         S.max_depth, S.max_stacks);
}

/* Release what start() allocated. A walk in progress (Python code ran inside
 * it: see walker.c) keeps using the walker's state until it returns, and
 * frees it then. Needs the GIL (code references). */
static void
release_all(void)
{
    ps_period_free(S.active);
    S.active = NULL;
    ps_walker_free(&S.walker);
}

PyObject *
ps_sampler_start(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"mode", "frequency", "max_depth", "max_stacks",
                               "max_samples", "idle", "main_tid", "trip_signum",
                               "stall_threshold", "stall_report", "reactor_tid",
                               "on_stall", "lines", NULL};
    int mode, trip_signum = 0, lines = 1;
    double frequency, stall_threshold = 0, stall_report = 0;
    unsigned long long reactor_tid = 0;
    PyObject *on_stall = Py_None;
    unsigned int max_depth, max_stacks;
    unsigned long long max_samples;
    long main_tid = 0;
    PyObject *idle;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "idIIKO|liddKOp:start", keywords,
                                     &mode, &frequency, &max_depth, &max_stacks,
                                     &max_samples, &idle, &main_tid,
                                     &trip_signum, &stall_threshold,
                                     &stall_report, &reactor_tid, &on_stall, &lines)) {
        return NULL;
    }
    if (S.running) {
        PyErr_SetString(PyExc_RuntimeError,
                        "a sampler is already running in this process; stop it "
                        "first (one sampler per process)");
        return NULL;
    }
    if (ps_walker_busy(&S.walker)) {
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
    if (!(stall_threshold >= 0 && stall_threshold <= 3600 && stall_report >= 0 &&
          stall_report <= 1e9)) {
        PyErr_SetString(PyExc_ValueError, "stall_threshold or stall_report out of range");
        return NULL;
    }
    S.mode = mode;
    S.frequency = frequency;
    S.interval_ns = (int64_t)(1e9 / frequency);
    S.max_depth = max_depth;
    S.max_stacks = max_stacks;
    S.rng = (uint64_t)ps_mono_ns() | 1;
    ps_signals_init(&S.signals, main_tid, trip_signum, S.interval_ns);
    if (ps_walker_init(&S.walker, mode, max_depth, max_samples, lines, idle) < 0) {
        return NULL;
    }
    S.active = new_period();
    if (S.active == NULL) {
        release_all();
        return PyErr_NoMemory();
    }
    ps_walker_set_period(&S.walker, S.active);
    atomic_store(&S.stopping, 0);
    if (ps_stalls_start((int64_t)(stall_threshold * 1e9), (int64_t)(stall_report * 1e9),
                        (uint64_t)reactor_tid, on_stall) < 0) {
        release_all();
        return NULL;
    }
    /* Baseline every thread's clock, so the first samples weigh only what
     * was spent after start. */
    ps_walker_baseline(&S.walker);
    S.load_wall_ns = ps_mono_ns();
    S.load_cpu_ns = ps_process_cpu_ns();

    int rc = ps_signals_arm(&S.signals, mode);
    if (rc < 0) {
        int saved_errno = errno;
        ps_stall_reports none;
        ps_stalls_stop(&none);
        Py_CLEAR(none.on_stall);
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
        ps_stall_reports none;
        ps_stalls_stop(&none);
        Py_CLEAR(none.on_stall);
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
    if (ps_signals_lost(&S.signals)) {
        done->stats.signal_lost = 1;
    }
    /* Last: dropping the old period's code objects can run Python code. */
    ps_walker_set_period(&S.walker, fresh);
    return done;
}

PyObject *
ps_sampler_rotate(PyObject *module, PyObject *unused)
{
    if (!S.running) {
        PyErr_SetString(PyExc_RuntimeError, "the sampler is not running");
        return NULL;
    }
    /* Stalls that ended belong to the period they ended in. */
    ps_stall_reports reports;
    ps_stalls_finish_ended(&reports);
    ps_period *done = swap_period();
    if (done == NULL) {
        Py_CLEAR(reports.on_stall);
        return PyErr_NoMemory();
    }
    PyObject *wrapped = ps_period_wrap(module, done);
    ps_stalls_deliver(&reports);  /* last: Python code */
    return wrapped;
}

/* stop(route_disposition=-1). The C level can stop from any thread; only
 * the Python-level handler table needs the main thread. A caller on another
 * thread passes the disposition (0 SIG_DFL, 1 SIG_IGN) the route signal
 * must end with, as signal.signal() would have set it; CPython's table then
 * still names _main_tick, which does nothing while stopped. */
PyObject *
ps_sampler_stop(PyObject *module, PyObject *args, PyObject *kwargs)
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
    atomic_store(&S.stopping, 1);
    ps_signals_disarm(&S.signals);
    ps_ticker_wake();
    Py_BEGIN_ALLOW_THREADS
    pthread_join(S.thread, NULL);
    Py_END_ALLOW_THREADS
    ps_signals_settle_route(&S.signals, route_disposition);
    S.running = 0;
    ps_stall_reports reports;
    ps_stalls_stop(&reports);  /* ended stalls into the last period */
    ps_period *done = S.active;
    S.active = NULL;
    ps_period_finish(done);
    if (ps_signals_lost(&S.signals)) {
        done->stats.signal_lost = 1;
    }
    release_all();  /* a walk still out (on the main thread) abandons */
    PyObject *wrapped = ps_period_wrap(module, done);
    ps_stalls_deliver(&reports);  /* last: Python code (even a start()) */
    return wrapped;
}

PyObject *
ps_sampler_is_running(PyObject *module, PyObject *unused)
{
    return PyBool_FromLong(S.running);
}

PyObject *
ps_sampler_status(PyObject *module, PyObject *unused)
{
    if (!S.running) {
        Py_RETURN_NONE;
    }
    const ps_period *p = S.active;
    return Py_BuildValue(
        "{s:s,s:d,s:L,s:L,s:K,s:K,s:K,s:K,s:K,s:n,s:O}", "mode", ps_mode_name(p->mode),
        "frequency", S.frequency, "start_ms", (long long)p->start_unix_ms,
        "duration_ms", (long long)ps_period_duration_ms(p), "samples",
        (unsigned long long)p->stats.samples, "ticks",
        (unsigned long long)p->stats.ticks, "idle",
        (unsigned long long)p->stats.idle, "sampling_ns",
        (unsigned long long)p->stats.sampling_ns, "still_samples",
        (unsigned long long)S.walker.still, "heap_bytes",
        (Py_ssize_t)ps_period_heap_bytes(p), "signal_lost",
        ps_signals_lost(&S.signals) ? Py_True : Py_False);
}

/* os.register_at_fork hooks. The sampler thread only ever holds load_lock
 * for an append, without waiting for the GIL, so taking it here (GIL held)
 * cannot deadlock, and the child never inherits it locked. */
PyObject *
ps_sampler_before_fork(PyObject *module, PyObject *unused)
{
    pthread_mutex_lock(&S.load_lock);
    Py_RETURN_NONE;
}

PyObject *
ps_sampler_after_fork_parent(PyObject *module, PyObject *unused)
{
    pthread_mutex_unlock(&S.load_lock);
    Py_RETURN_NONE;
}

PyObject *
ps_sampler_after_fork_child(PyObject *module, PyObject *unused)
{
    pthread_mutex_unlock(&S.load_lock);
    ps_ticker_after_fork_child();
    ps_walker_after_fork_child(&S.walker);
    ps_stalls_after_fork_child();
    if (S.running) {
        /* The sampler thread does not exist here and CPython already deleted
         * its thread state; what remains is the parent's data. A walk of
         * this thread still out (fork from a finalizer in it) abandons. */
        S.running = 0;
        atomic_store(&S.stopping, 0);
        release_all();
    }
    Py_RETURN_NONE;
}
