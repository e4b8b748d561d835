/* The timer signal and the main-thread trip: see signals.h.
 *
 * Who walks. In the CPU modes the kernel sends the interval timer's signal
 * to the thread that was running. Our handler (ticker.c's, async-signal-
 * safe) sorts it: a tick that lands on the main thread (the reactor of a
 * Buildbot master, busy on the CPU since the tick found it running) is
 * handed to on_trip below, which trips CPython's signal machinery right
 * there (PyErr_SetInterruptEx is async-signal-safe); any other tick posts
 * the sampler thread's semaphore. A tripped
 * main thread runs _main_tick at its next bytecode boundary and walks every
 * thread there, its own stack taken where it was running, with no GIL
 * hand-off and no other thread woken. (Sample times then sit on the
 * kernel's CPU-time tick grid: a workload that repeats exactly with a period
 * that divides the grid could alias with it. Jittering them costs a thread
 * wake-up, or a tick lost to each timer re-arm, per sample; a master's work
 * is not phase-locked to its CPU time, so the CPU modes do without. Real
 * mode, whose grid is wall time like a LoopingCall's, jitters.)
 *
 * A tick that wakes the sampler thread: if the main thread used the CPU
 * since the last tick it is asked to walk the same way, tripped from the
 * sampler thread (pycompat.h); otherwise the sampler thread takes the GIL
 * and walks.
 * Taking the GIL from a busy thread samples it where it lets go of the GIL
 * (often an I/O call, after up to the 5 ms switch interval): that bias is
 * why a busy main thread walks itself. Each sample is weighted by the CPU
 * (or wall) time since that thread's previous one, so a late or redundant
 * walk shifts no weight.
 *
 * The Python side (profiler.py) puts _main_tick on the trip signal before
 * start(); ours then replaces CPython's handler at the C level (in real
 * mode only to see when somebody replaces it: no signal is sent). */
#define _GNU_SOURCE
#include "sampler.h"

#include "ps_error.h"
#include "ps_procstat.h"
#include "ps_ticker.h"

void
ps_signals_init(ps_signals *s, long main_tid, int trip_signum,
                int64_t interval_ns)
{
    s->main_tid = trip_signum > 0 ? main_tid : 0;
    /* Without the layout the trip needs (never seen), the sampler thread
     * walks the busy main thread too, where it lets go of the GIL. */
    s->trips_from_here = ps_py_can_trip_main_from_any_thread();
    s->trip_signum = trip_signum;
    s->interval_ns = interval_ns;
    atomic_store(&s->lost, 0);
    atomic_store(&s->main_ticks, 0);
    s->main_cpu_ns = s->main_tid ? ps_thread_cpu_ns((uint64_t)s->main_tid) : 0;
}

/* In the signal handler, on the main thread: mark trip_signum pending, so
 * the main thread runs _main_tick at its next bytecode boundary. (It also
 * writes a byte to the wakeup fd if one is set: see trip_main.) */
static void
on_trip(void)
{
    PyErr_SetInterruptEx(S.signals.trip_signum);
}

int
ps_signals_arm(ps_signals *s, int mode)
{
    atomic_store(&s->main_ticks, 0);
    ps_ticker_set_main_handler(s->main_tid ? on_trip : NULL, s->main_tid);
    /* With the main-thread route the caller has just put CPython's handler
     * on the timer signal; ours replaces it at the C level. */
    return ps_ticker_start(mode, s->interval_ns, s->main_tid ? s->trip_signum : 0);
}

void
ps_signals_check(ps_signals *s)
{
    if (!atomic_load(&s->lost) && ps_ticker_yield()) {
        /* Our handler was replaced: no more trips (they would run the new
         * handler), and in the CPU modes no more ticks. */
        atomic_store(&s->lost, 1);
        s->main_tid = 0;
    }
}

/* Ask the main thread to walk: trip it from here (pycompat.h), on every
 * version without a signal, so no interrupt reaches a thread that is
 * running on another CPU. In real mode the trip signal is a real-time
 * signal of our own (trip.py), so a trip never reaches an application's
 * SIGALRM handler. Tripping also writes a byte to the wakeup fd if one is
 * set (Twisted's SIGCHLD waker): the reactor reads it at its next
 * iteration, one read() and a waitpid(WNOHANG) per child process, only on
 * ticks that found it busy. Returns 0 when the trip could not be made. */
static int
trip_main(ps_signals *s, uint64_t ticks)
{
    atomic_fetch_add(&s->main_ticks, ticks);
    if (!ps_py_trip_main_from_any_thread(s->trip_signum)) {
        atomic_fetch_sub(&s->main_ticks, ticks);
        return 0;
    }
    return 1;
}

/* Did the main thread use the CPU since the last tick? Then it is asked to
 * walk at its next bytecode; otherwise it waits (for I/O, for the GIL) and
 * the sampler thread walks. */
static int
main_is_busy(ps_signals *s)
{
    int64_t cpu = ps_thread_cpu_ns((uint64_t)s->main_tid);
    int busy = cpu >= 0 && cpu - s->main_cpu_ns > s->interval_ns / 10;
    s->main_cpu_ns = cpu;
    return busy;
}

int
ps_signals_hand_to_main(ps_signals *s, uint64_t ticks)
{
    return s->main_tid != 0 && s->trips_from_here && main_is_busy(s) && trip_main(s, ticks);
}

void
ps_signals_disarm(ps_signals *s)
{
    /* Disarm before the join: a CPU-timer signal that expires while the
     * sampler thread exits goes to another thread, perhaps a sleeping one
     * that it would wake (and charge with CPU). */
    if (ps_ticker_stop()) {
        atomic_store(&s->lost, 1);
    }
}

void
ps_signals_settle_route(ps_signals *s, int route_disposition)
{
    if (!atomic_load(&s->lost) && s->trip_signum > 0 && route_disposition >= 0) {
        ps_ticker_set_disposition(s->trip_signum, route_disposition == 1);
    }
}

int
ps_signals_lost(ps_signals *s)
{
    return atomic_load(&s->lost);
}

/* Runs in the main thread at a bytecode boundary, right after a tick found
 * it on the CPU. It must not disturb the interrupted code: the error
 * indicator is kept. */
PyObject *
ps_signals_main_tick(PyObject *module, PyObject *args)
{
    ps_saved_error saved;

    if (!S.running || atomic_load(&S.stopping) || S.active == NULL) {
        Py_RETURN_NONE;
    }
    ps_py_error_save(&saved);
    uint64_t ticks = atomic_exchange(&S.signals.main_ticks, 0);
    ps_walker_sample(&S.walker, ticks ? ticks : 1);
    /* This walk covers ticks queued for the sampler thread. Python code run
     * inside the walk may have stopped the sampler. */
    if (S.running && S.active != NULL) {
        S.active->stats.missed += ps_ticker_drain();
    }
    ps_py_error_restore(&saved);
    Py_RETURN_NONE;
}
