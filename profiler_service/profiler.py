"""Profiler: the validating Python face of the C sampler.

There is one sampler per process (signals and interval timers are
process-wide). ``Profiler`` checks its arguments before anything is armed,
starts and stops the sampler, and hands out finished periods. It never imports
Buildbot.
"""

from __future__ import annotations

import atexit
import math
import os
import signal
import threading
import warnings
from typing import Iterable, Optional

from . import _core

MODES = {"prof": 0, "virtual": 1, "real": 2}
"""Timer modes, as in buildbot_profiler 1.x: ``prof`` counts process CPU time
(SIGPROF), ``virtual`` user CPU time (SIGVTALRM), ``real`` wall-clock time
(paced by the sampler thread itself, so no thread sees EINTR)."""

MAX_FREQUENCY = 10000

# The signal each mode's ticks are routed through to the main thread. In the
# CPU modes it is the timer's own signal; real mode arms no timer and only
# uses SIGALRM's slot in CPython's handler table (never delivered by us).
_TRIP_SIGNALS = {"prof": signal.SIGPROF, "virtual": signal.SIGVTALRM, "real": signal.SIGALRM}

DEFAULT_IDLE_FRAMES: tuple[str, ...] = (
    # Twisted reactors waiting for I/O.
    "twisted/internet/epollreactor.py:EPollReactor.doPoll",
    "twisted/internet/pollreactor.py:PollReactor.doPoll",
    "twisted/internet/selectreactor.py:SelectReactor.doSelect",
    "twisted/internet/kqreactor.py:KQueueReactor.doKEvent",
    # The standard library's selectors (asyncio and the asyncio reactor).
    "selectors.py:_PollLikeSelector.select",
    "selectors.py:EpollSelector.select",
    "selectors.py:SelectSelector.select",
    "selectors.py:KqueueSelector.select",
    # Threads parked on a lock, a condition, an event or a queue.
    "threading.py:Condition.wait",
    "threading.py:Event.wait",
    "threading.py:Semaphore.acquire",
    "threading.py:Thread._wait_for_tstate_lock",
    "queue.py:Queue.get",
    "concurrent/futures/thread.py:_worker",
)
"""Leaf frames that mean "this thread is waiting", as ``file suffix:qualname``.
A sample whose innermost Python frame matches one is dropped as idle in every
mode."""


def parse_idle_frames(idle_frames: Iterable[str]) -> list[tuple[str, str]]:
    """Turn ``"path/suffix.py:Qual.name"`` strings into (suffix, qualname) pairs.

    Raises TypeError or ValueError naming ``idle_frames``.
    """
    if isinstance(idle_frames, (str, bytes)):
        raise TypeError("idle_frames must be a list of 'file.py:Qual.name' strings, not a string")
    try:
        items = list(idle_frames)
    except TypeError:
        raise TypeError(
            f"idle_frames must be a list of 'file.py:Qual.name' strings, not {type(idle_frames).__name__}"
        ) from None
    pairs = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"idle_frames entries must be str, got {item!r}")
        file_suffix, sep, qualname = item.rpartition(":")
        if not sep or not file_suffix or not qualname:
            raise ValueError(f"idle_frames entry {item!r} is not of the form 'file.py:Qual.name'")
        pairs.append((file_suffix, qualname))
    return pairs


def check_frequency(frequency: object) -> float:
    """Return ``frequency`` as float, or raise TypeError/ValueError naming it."""
    if isinstance(frequency, bool) or not isinstance(frequency, (int, float)):
        raise TypeError(f"frequency must be a number of Hz, not {type(frequency).__name__}")
    value = float(frequency)
    if math.isnan(value) or value <= 0 or value > MAX_FREQUENCY:
        raise ValueError(f"frequency must be > 0 and <= {MAX_FREQUENCY} Hz, got {frequency!r}")
    return value


def check_mode(mode: object) -> str:
    """Return ``mode`` if it is known, or raise TypeError/ValueError naming it."""
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a str, not {type(mode).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(sorted(MODES))}; got {mode!r}")
    return mode


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


_owner: Optional["Profiler"] = None
_owner_lock = threading.Lock()

# A route signal whose Python-level handler is still _core._main_tick after a
# stop() from another thread (signal.signal() needs the main thread): the C
# level already has the disposition back; the main thread puts `previous`
# back into CPython's table at its next call here. (signum, previous)
_stale_route: Optional[tuple[int, object]] = None


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _fix_stale_route() -> None:
    """On the main thread: give CPython's table back what stop() could not."""
    global _stale_route
    if _stale_route is None or not _on_main_thread():
        return
    signum, previous = _stale_route
    _stale_route = None
    if signal.getsignal(signum) is _core._main_tick:
        signal.signal(signum, previous)


class Profiler:
    """A statistical profiler of every thread of this process.

    ``start()`` arms the sampler, ``rotate()`` returns the finished period and
    starts a new one without losing a sample, ``stop()`` returns the final
    period. As a context manager it starts on entry and stores the final
    period in ``.period`` on exit.

    Only one Profiler can run at a time in a process; starting a second one
    raises RuntimeError.
    """

    def __init__(
        self,
        frequency: float = 100,
        mode: str = "virtual",
        *,
        idle_frames: Iterable[str] = DEFAULT_IDLE_FRAMES,
        max_depth: int = 256,
        max_stacks: int = 200_000,
        max_samples: int = 1_000_000,
    ) -> None:
        self.frequency = check_frequency(frequency)
        self.mode = check_mode(mode)
        self._idle_pairs = parse_idle_frames(idle_frames)
        self.idle_frames = tuple(f"{suffix}:{qualname}" for suffix, qualname in self._idle_pairs)
        self.max_depth = _check_int("max_depth", max_depth, 1, 10_000)
        self.max_stacks = _check_int("max_stacks", max_stacks, 16, 50_000_000)
        self.max_samples = _check_int("max_samples", max_samples, 1, 1 << 40)
        self.period: Optional[_core.Period] = None
        self._trip: Optional[tuple[int, object]] = None  # (signum, previous handler)
        self._warned_signal_lost = False

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Profiler {self.mode} {self.frequency:g} Hz {state}>"

    @property
    def running(self) -> bool:
        """True while this Profiler owns the running sampler."""
        return _owner is self and _core.is_running()

    def start(self) -> None:
        """Arm the sampler. RuntimeError if a sampler already runs here.

        Started from the main thread, ticks that find the main thread on the
        CPU are handled by the main thread itself, through CPython's handler
        for the mode's signal (SIGPROF, SIGVTALRM, or SIGALRM's slot in real
        mode): its stack is then taken where the tick found it. Started from
        another thread, every walk is done by the sampler thread.
        """
        global _owner
        with _owner_lock:
            if _core.is_running():
                raise RuntimeError(
                    "a profiler is already running in this process "
                    "(one sampler per process); stop it first"
                )
            _fix_stale_route()
            self._warned_signal_lost = False
            self._trip = self._install_trip()
            try:
                _core.start(
                    mode=MODES[self.mode],
                    frequency=self.frequency,
                    max_depth=self.max_depth,
                    max_stacks=self.max_stacks,
                    max_samples=self.max_samples,
                    idle=self._idle_pairs,
                    main_tid=threading.main_thread().native_id if self._trip else 0,
                    trip_signum=self._trip[0] if self._trip else 0,
                )
            except BaseException:
                self._restore_trip()
                raise
            _owner = self

    def _install_trip(self) -> Optional[tuple[int, object]]:
        if threading.current_thread() is not threading.main_thread():
            return None
        signum = self._signal_number()
        current = signal.getsignal(signum)
        free = current in (signal.SIG_DFL, signal.SIG_IGN, _core._main_tick)
        if not free:
            if self.mode == "real":
                return None  # SIGALRM is the application's: walk from the sampler only
            raise RuntimeError(
                f"signal {signal.Signals(signum).name} already has a handler installed by the "
                "application; refusing to replace it (use mode='real')"
            )
        previous = signal.signal(signum, _core._main_tick)
        # The sampler pokes the main thread with this signal: let interrupted
        # system calls restart (epoll_wait never does; Python retries it).
        signal.siginterrupt(signum, False)
        return signum, previous

    def _previous_disposition(self) -> object:
        signum, previous = self._trip
        if previous is _core._main_tick or previous is None:
            return signal.SIG_DFL
        return previous

    def _restore_trip(self) -> None:
        """Put back the route signal's handler, unless it is not ours any
        more: what the application installed after start() stays."""
        if self._trip is not None:
            signum = self._trip[0]
            previous = self._previous_disposition()
            self._trip = None
            if signal.getsignal(signum) is _core._main_tick:
                signal.signal(signum, previous)

    def _check_owner(self) -> None:
        if not self.running:
            raise RuntimeError("this Profiler is not running")

    def _warn_if_signal_lost(self, period: "_core.Period") -> None:
        if period.stats.get("signal_lost") and not self._warned_signal_lost:
            self._warned_signal_lost = True
            name = signal.Signals(self._signal_number()).name
            lost = "its main-thread walks" if self.mode == "real" else "sampling"
            warnings.warn(
                f"profiler: the {name} handler was replaced after start() (by the "
                f"application?); the profiler left it in place and stopped {lost} "
                f"through {name}",
                RuntimeWarning,
                stacklevel=3,
            )

    def _signal_number(self) -> int:
        return _TRIP_SIGNALS[self.mode]

    def rotate(self) -> "_core.Period":
        """Finish the current period and start a new one; return the finished one."""
        self._check_owner()
        _fix_stale_route()
        period = _core.rotate()
        self._warn_if_signal_lost(period)
        return period

    def stop(self) -> "_core.Period":
        """Disarm and return the final period. Never busy-waits.

        Works from any thread. Off the main thread, CPython's handler table
        cannot be changed: the C level gets the route signal's disposition
        back at once, and the main thread's next call into Profiler puts the
        previous handler back into the table (until then it names
        ``_core._main_tick``, which does nothing while stopped)."""
        global _owner, _stale_route
        with _owner_lock:
            self._check_owner()
            on_main = _on_main_thread()
            disposition = -1
            if self._trip is not None and not on_main:
                disposition = 1 if self._previous_disposition() is signal.SIG_IGN else 0
            self.period = _core.stop(route_disposition=disposition)
            _owner = None
            if self.period.stats.get("signal_lost"):
                self._trip = None  # somebody else's signal now: touch nothing
            if on_main:
                _fix_stale_route()
                self._restore_trip()
            elif self._trip is not None:
                _stale_route = (self._trip[0], self._previous_disposition())
                self._trip = None
            self._warn_if_signal_lost(self.period)
            return self.period

    def status(self) -> Optional[dict]:
        """The active period's figures (samples so far, ...), or None."""
        return _core.status() if self.running else None

    def __enter__(self) -> "Profiler":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.running:
            self.stop()


def running_profiler() -> Optional[Profiler]:
    """The Profiler that owns the sampler of this process, if any."""
    return _owner if _owner is not None and _core.is_running() else None


def _stop_at_exit() -> None:
    # Taking the GIL during finalization kills the sampler thread: stop it
    # while the interpreter is still whole.
    global _owner
    owner = _owner
    if owner is not None and owner.running:
        owner.stop()
    elif _core.is_running():
        _core.stop()
    _owner = None


def _after_fork_child() -> None:
    global _owner, _owner_lock
    _core._after_fork_child()
    _owner = None
    _owner_lock = threading.Lock()


atexit.register(_stop_at_exit)
os.register_at_fork(
    before=_core._before_fork,
    after_in_parent=_core._after_fork_parent,
    after_in_child=_after_fork_child,
)
