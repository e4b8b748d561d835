/* The tick source of the one process-wide sampler. In the CPU modes an
 * interval timer (ITIMER_PROF or ITIMER_VIRTUAL) raises a signal; its
 * handler, async-signal-safe, either calls the main handler (a tick landing
 * on the main thread: the main-thread trip, see signals.c) or posts the
 * sampler thread's semaphore, and keeps errno. In real mode no timer is
 * armed and the sampler paces itself on CLOCK_MONOTONIC; the handler is
 * installed on the route signal all the same, so that a handler somebody
 * puts over it is seen. Pure C: no Python.h. */
#ifndef PS_TICKER_H
#define PS_TICKER_H

#include <stdint.h>

/* Install the handler and arm the timer for `mode` (PS_MODE_*) at
 * `interval_ns`. `route_signum` is the signal of the main-thread route (0:
 * none): the caller has just put CPython's handler there, and ours replaces
 * it at the C level (in real mode, which arms no timer, it is the only
 * signal we handle). Without a route it refuses (PS_ESTATE) when the timer
 * signal already has a handler, so we never silently replace an
 * application's. Returns 0, PS_ESTATE or PS_EOS (errno set). */
int ps_ticker_start(int mode, int64_t interval_ns, int route_signum);

/* 1 while the handler we installed is still the signal's (or none was
 * installed), 0 when somebody replaced it. Thread-safe, no locks. */
int ps_ticker_owns_signal(void);

/* If somebody replaced our handler: stop calling the main handler, disarm
 * our timer unless it was re-armed with another interval (then it is
 * theirs), forget the signal (stop() then leaves it as they set it) and
 * return 1; else return 0. */
int ps_ticker_yield(void);

/* Called, in the signal handler, for a tick that lands on kernel thread
 * `main_tid` (0: none): it runs on that thread and must be
 * async-signal-safe. Other ticks post the sampler thread's semaphore.
 * NULL: every signal counts as a tick for the sampler thread. */
void ps_ticker_set_main_handler(void (*handler)(void), long main_tid);

/* Disarm the timer first, then ignore the signal (discarding one already
 * pending), then restore the disposition found at start. What somebody else
 * installed after start is left alone: a handler that is not ours any more
 * (returns 1, else 0), a timer re-armed with another interval. Idempotent. */
int ps_ticker_stop(void);

/* Set `sig` to SIG_IGN (`ignore`) or SIG_DFL at the C level: what CPython's
 * signal.signal() would do, for a thread that may not call it. */
void ps_ticker_set_disposition(int sig, int ignore);

/* Block until ticks were posted, the CLOCK_MONOTONIC deadline passed, or
 * ps_ticker_wake() was called. Returns the number of ticks consumed (0 on a
 * timeout or a wake-up). Called by the sampler thread only. */
uint64_t ps_ticker_wait(int64_t deadline_ns);

/* Consume ticks posted since the last wait without blocking; returns their
 * number. The sampler calls it after a walk: ticks that arrived while it
 * waited for the GIL are covered by that walk (weights are CPU deltas). */
uint64_t ps_ticker_drain(void);

/* Wake ps_ticker_wait() now. Async-signal-safe. */
void ps_ticker_wake(void);

/* In a forked child: forget the parent's ticker (timers are not inherited;
 * the handler is) and restore the disposition found at start. */
void ps_ticker_after_fork_child(void);

/* The signal for a mode, 0 for real mode. */
int ps_ticker_signal(int mode);

#endif /* PS_TICKER_H */
