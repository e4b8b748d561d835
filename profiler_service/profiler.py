"""Profiler: the validating Python face of the C sampler.

There is one sampler per process (signals and interval timers are
process-wide). ``Profiler`` checks its arguments before anything is armed,
starts and stops the sampler, and hands out finished periods. It never imports
Buildbot.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import warnings
from typing import Callable, Iterable, Optional

from . import _core, trip
from .options import MODES, check_frequency, check_mode, check_stall_threshold, parse_idle_frames
from .options import check_int as _check_int

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
    # From 3.13, join() waits in C (_ThreadHandle.join): its own frame is the leaf.
    "threading.py:Thread.join",
    "queue.py:Queue.get",
    "concurrent/futures/thread.py:_worker",
)
"""Leaf frames that mean "this thread is waiting", as ``file suffix:qualname``.
A thread walked with its innermost Python frame on one is waiting: dropped in
``real`` mode; in the CPU modes the CPU it used since its last sample (in work
that returned in between) is kept under the waiting code, in the synthetic
frame "[finished between samples]"."""


StallCallback = Callable[[float, list, str], None]
"""``on_stall(duration_s, stack, busy_thread)``: ``stack`` is a list of
``(file, qualname)``, innermost first, of what blocked the reactor (the busy
thread's stack when another thread held the GIL for most of the stall: then
``busy_thread`` is its name, else "")."""


_owner: Optional["Profiler"] = None
_owner_lock = threading.Lock()

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
        stall_threshold: Optional[float] = None,
        stall_report_threshold: float = 2.0,
        on_stall: Optional[StallCallback] = None,
        reactor_native_id: Optional[int] = None,
        lines: bool = True,
    ) -> None:
        self.frequency = check_frequency(frequency)
        self.mode = check_mode(mode)
        self._idle_pairs = parse_idle_frames(idle_frames)
        self.idle_frames = tuple(f"{suffix}:{qualname}" for suffix, qualname in self._idle_pairs)
        self.max_depth = _check_int("max_depth", max_depth, 1, 10_000)
        self.max_stacks = _check_int("max_stacks", max_stacks, 16, 50_000_000)
        self.max_samples = _check_int("max_samples", max_samples, 1, 1 << 40)
        if not isinstance(lines, bool):
            raise TypeError(f"lines must be True or False, not {type(lines).__name__}")
        self.lines = lines
        # Reactor stalls (see _core/stalldetect.c): recorded only where the
        # reactor's poll is watched (profiler_service.stalls.watch_reactor),
        # for the thread `reactor_native_id` (default: the one that starts).
        self.stall_threshold = check_stall_threshold("stall_threshold", stall_threshold)
        self.stall_report_threshold = check_stall_threshold(
            "stall_report_threshold", stall_report_threshold, allow_none=False
        )
        if on_stall is not None and not callable(on_stall):
            raise TypeError(f"on_stall must be callable or None, not {type(on_stall).__name__}")
        self.on_stall = on_stall
        self.reactor_native_id = reactor_native_id
        self.period: Optional[_core.Period] = None
        self._trip: Optional[trip.Route] = None  # the main-thread route of this run
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
        for the mode's signal (SIGPROF, SIGVTALRM, or in real mode the
        real-time signal SIGRTMAX-3, leaving SIGALRM to the application): its stack is then taken where the tick found it. Started from
        another thread, every walk is done by the sampler thread.
        """
        global _owner
        with _owner_lock:
            if _core.is_running():
                raise RuntimeError(
                    "a profiler is already running in this process "
                    "(one sampler per process); stop it first"
                )
            trip.fix_stale_route()
            self._warned_signal_lost = False
            self._trip = trip.install(self.mode)
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
                    stall_threshold=self.stall_threshold or 0.0,
                    stall_report=self.stall_report_threshold,
                    reactor_tid=self.reactor_native_id or threading.get_native_id(),
                    on_stall=self._report_stall if self.on_stall is not None else None,
                    lines=self.lines,
                )
            except BaseException:
                trip.restore(self._trip)
                self._trip = None
                raise
            _owner = self

    def _report_stall(self, duration_s: float, stack_text: str, busy_thread: str) -> None:
        # Called by the sampler thread (GIL held) once per stall it reports.
        stack = [tuple(line.split("\t", 1)) for line in stack_text.splitlines() if "\t" in line]
        callback = self.on_stall
        if callback is not None:
            callback(duration_s, stack, busy_thread)

    def _check_owner(self) -> None:
        if not self.running:
            raise RuntimeError("this Profiler is not running")

    def _warn_if_signal_lost(self, period: "_core.Period") -> None:
        if period.stats.get("signal_lost") and not self._warned_signal_lost:
            self._warned_signal_lost = True
            name = trip.signal_name(trip.TRIP_SIGNALS[self.mode])
            lost = "its main-thread walks" if self.mode == "real" else "sampling"
            warnings.warn(
                f"profiler: the {name} handler was replaced after start() (by the "
                f"application?); the profiler left it in place and stopped {lost} "
                f"through {name}",
                RuntimeWarning,
                stacklevel=3,
            )

    def rotate(self) -> "_core.Period":
        """Finish the current period and start a new one; return the finished one."""
        self._check_owner()
        trip.fix_stale_route()
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
        global _owner
        with _owner_lock:
            self._check_owner()
            on_main = trip.on_main_thread()
            disposition = -1
            if self._trip is not None and not on_main:
                disposition = 1 if trip.previous_disposition(self._trip) is signal.SIG_IGN else 0
            self.period = _core.stop(route_disposition=disposition)
            _owner = None
            if self.period.stats.get("signal_lost"):
                self._trip = None  # somebody else's signal now: touch nothing
            if on_main:
                trip.fix_stale_route()
                trip.restore(self._trip)
                self._trip = None
            elif self._trip is not None:
                trip.leave_stale(self._trip)
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
