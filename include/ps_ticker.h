/* The tick source of the one process-wide sampler. In the CPU modes an
 * interval timer (ITIMER_PROF or ITIMER_VIRTUAL) raises a signal whose handler,
 * async-signal-safe, only posts a semaphore; in real mode nothing is armed and
 * the sampler paces itself on CLOCK_MONOTONIC, so no thread ever sees EINTR
 * from us. Pure C: no Python.h. */
#ifndef PS_TICKER_H
#define PS_TICKER_H

#include <stdint.h>

/* Install the handler and arm the timer for `mode` (PS_MODE_*) at
 * `interval_ns`. Refuses (PS_ESTATE) when the signal already has a handler,
 * so we never silently replace an application's, unless `replace` says the
 * caller installed the one there (CPython's, for the main-thread route).
 * Returns 0, PS_ESTATE or PS_EOS (errno set). */
int ps_ticker_start(int mode, int64_t interval_ns, int replace);

/* Called, in the signal handler, when a tick signal comes from this process
 * through ps_ticker_poke rather than from the timer: it runs on the poked
 * thread and must be async-signal-safe. NULL: pokes count as ticks. */
void ps_ticker_set_poke_handler(void (*handler)(void));

/* Send `signum` to kernel thread `tid` of this process (tgkill). Returns 0
 * or PS_EOS. */
int ps_ticker_poke(long tid, int signum);

/* Disarm the timer first, then ignore the signal (discarding one already
 * pending), then restore the disposition found at start. Idempotent. */
void ps_ticker_stop(void);

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
