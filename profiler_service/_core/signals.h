/* The timer signal and the main-thread trip: which thread a tick is walked
 * on, and the signal's ownership (a handler somebody else installed over
 * ours). Drives the pure-C tick source (ps_ticker.h). Binding-private:
 * includes Python.h. The sampler thread calls ps_signals_check and
 * ps_signals_hand_to_main once per tick; the rest runs with the GIL held. */
#ifndef PS_SIGNALS_H
#define PS_SIGNALS_H

#include "binding.h"

#include <stdatomic.h>
#include <stdint.h>

typedef struct {
    long main_tid;              /* kernel TID of the main thread, 0 = no trip route */
    int trip_signum;            /* the signal whose Python handler is _main_tick */
    int trips_from_here;        /* the sampler thread can trip the main thread */
    int64_t main_cpu_ns;        /* main thread's CPU at the last tick */
    int64_t interval_ns;        /* the tick interval */
    atomic_uint_fast64_t main_ticks;  /* ticks handed to the main thread */
    atomic_int lost;            /* somebody replaced our signal handler */
} ps_signals;

/* Settings for a run: the main-thread route (`main_tid` and `trip_signum`;
 * no route when trip_signum is 0). Arms nothing. */
void ps_signals_init(ps_signals *s, long main_tid, int trip_signum,
                     int64_t interval_ns);

/* Install our handler and arm the timer for `mode` (see ps_ticker_start).
 * Returns 0, PS_ESTATE (the timer signal has somebody else's handler) or
 * PS_EOS (errno set). */
int ps_signals_arm(ps_signals *s, int mode);

/* Sampler thread, every iteration: if somebody replaced our handler, stop
 * the trips (they would reach the new handler) and mark the signal lost. */
void ps_signals_check(ps_signals *s);

/* Sampler thread: if the main thread used the CPU since the last tick, ask
 * it to walk at its next bytecode boundary, covering `ticks`, and return 1;
 * else return 0 (the sampler thread walks). */
int ps_signals_hand_to_main(ps_signals *s, uint64_t ticks);

/* Disarm the timer and restore the signal (any thread, before joining the
 * sampler thread). */
void ps_signals_disarm(ps_signals *s);

/* After the sampler thread was joined: give the route signal the
 * disposition `route_disposition` (0 SIG_DFL, 1 SIG_IGN, -1 leave it), as
 * signal.signal() would, for a stop() from a thread that may not call it.
 * Nothing when the signal is somebody else's now. */
void ps_signals_settle_route(ps_signals *s, int route_disposition);

/* 1 once somebody replaced our signal handler during this run. */
int ps_signals_lost(ps_signals *s);

/* _core._main_tick: the Python-level handler of the trip signal. */
PyObject *ps_signals_main_tick(PyObject *module, PyObject *args);

#endif /* PS_SIGNALS_H */
