"""The main-thread trip route, CPython's side of it.

A timer tick that finds the main thread on the CPU is walked by the main
thread itself: the C core (``_core/signals.c``) trips CPython's signal
machinery for the route signal, whose Python-level handler is
``_core._main_tick``. This module puts that handler into CPython's table
before a run and gives the table back its previous handler afterwards,
also after a stop() from another thread (``signal.signal()`` needs the main
thread). A route is a ``(signum, previous handler)`` pair.
"""

from __future__ import annotations

import signal
import threading
from typing import Optional

from . import _core

Route = tuple[int, object]

# The signal each mode's ticks are routed through to the main thread. In the
# CPU modes it is the timer's own signal. Real mode arms no timer and sends
# no signal: it trips CPython's handler table for a real-time signal of its
# own. Not SIGALRM, which applications use for their own timeouts: a trip
# pending while the application puts its handler on the signal would run
# that handler. Taken from the top of the range, since libraries that use
# real-time signals count up from SIGRTMIN.
REAL_TRIP_SIGNAL = signal.SIGRTMAX - 3
TRIP_SIGNALS = {"prof": signal.SIGPROF, "virtual": signal.SIGVTALRM, "real": REAL_TRIP_SIGNAL}


def signal_name(signum: int) -> str:
    """'SIGPROF', or 'SIGRTMAX-3' for a real-time signal the enum does not name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIGRTMAX-{signal.SIGRTMAX - signum}"

# A route signal whose Python-level handler is still _core._main_tick after a
# stop() from another thread: the C level already has the disposition back;
# the main thread puts `previous` back into CPython's table at its next call
# into Profiler. (signum, previous)
_stale_route: Optional[Route] = None


def on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def fix_stale_route() -> None:
    """On the main thread: give CPython's table back what stop() could not."""
    global _stale_route
    if _stale_route is None or not on_main_thread():
        return
    signum, previous = _stale_route
    _stale_route = None
    if signal.getsignal(signum) is _core._main_tick:
        signal.signal(signum, previous)


def install(mode: str) -> Optional[Route]:
    """Put ``_core._main_tick`` on `mode`'s route signal, from the main
    thread; None (no route: the sampler thread walks) from another thread, or
    in real mode when its signal is the application's. RuntimeError when a CPU
    mode's signal has the application's handler."""
    if not on_main_thread():
        return None
    signum = TRIP_SIGNALS[mode]
    current = signal.getsignal(signum)
    free = current in (signal.SIG_DFL, signal.SIG_IGN, _core._main_tick)
    if not free:
        if mode == "real":
            return None  # the application's signal: walk from the sampler only
        raise RuntimeError(
            f"signal {signal.Signals(signum).name} already has a handler installed by the "
            "application; refusing to replace it (use mode='real')"
        )
    previous = signal.signal(signum, _core._main_tick)
    # A CPU-timer tick on the main thread interrupts what it was doing: let
    # interrupted system calls restart (epoll_wait never does; Python
    # retries it).
    signal.siginterrupt(signum, False)
    return signum, previous


def previous_disposition(route: Route) -> object:
    """The handler `route` replaced, SIG_DFL when there was none of Python's."""
    signum, previous = route
    if previous is _core._main_tick or previous is None:
        return signal.SIG_DFL
    return previous


def restore(route: Optional[Route]) -> None:
    """On the main thread: put back the route signal's handler, unless it is
    not ours any more (what the application installed after start() stays)."""
    if route is not None:
        signum = route[0]
        if signal.getsignal(signum) is _core._main_tick:
            signal.signal(signum, previous_disposition(route))


def leave_stale(route: Route) -> None:
    """Off the main thread, after stop(): the main thread restores `route`
    at its next call into Profiler (fix_stale_route)."""
    global _stale_route
    _stale_route = (route[0], previous_disposition(route))
