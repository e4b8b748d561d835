"""The one sampler of the process, shared by several consumers.

A process has one sampler (signals and interval timers are process-wide), but
more than one part of a master wants samples: ``ProfilerService`` cuts a file
every gather period, and a recording started from the web UI wants its own
start and stop. The hub owns the ``Profiler`` and gives each of them a
``Recording``. Every recording boundary (open, cut, close) rotates the sampler
once and hands the finished chunk to every recording that is open, so each
consumer's period is the concatenation of the chunks it saw and no sample is
lost or counted twice.

Settings rule: the settings the sampler runs with win. The first recording
starts the sampler with its settings; a later recording that asks for other
settings gets the running ones (``Recording.conflict`` says what it asked for
and why it did not get it). Whenever a boundary leaves open recordings that
all want the same settings (one recording, or the service and its Pyroscope
push) and those differ from the running ones, the hub restarts the sampler
with them at that boundary (stop, then start: no chunk is lost). So a
reconfigured ``ProfilerService`` gets its new frequency at once if it records
alone, or when the web recording it shares the sampler with ends.

Use (the web UI, on the reactor thread)::

    recording = get_hub().open("web", Settings(frequency=250))
    recording.conflict     # None, or why the running settings were kept
    recording.status()     # {"open", "frequency", "mode", "samples", ...}
    period = join(recording.close())   # a Period, or None; .write(path, ...)
    # (join_runs() instead gives one Period per run of equal settings)

A recording that is never closed keeps every chunk handed to it: bound each
recording's duration.

The hub never imports Buildbot. All calls are cheap (a rotation is an O(1)
swap in C) and are meant to run on the reactor thread; a lock makes them safe
from other threads too.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional, Sequence

if TYPE_CHECKING:  # the C extension is imported only when a recording opens
    from ._core import Period
    from .profiler import Profiler


@dataclass(frozen=True)
class Settings:
    """What the sampler runs with. Compared as a whole."""

    frequency: float = 100.0
    mode: str = "virtual"
    idle_frames: Optional[tuple[str, ...]] = None  # None: the Profiler's default list
    stall_threshold: Optional[float] = None  # s out of the reactor's poll; None: off
    stall_report_threshold: float = 2.0  # s: stalls passed to Recording.on_stall

    def served_by(self, running: Optional["Settings"]) -> bool:
        """Does a sampler running with ``running`` give what these settings
        ask for? A recording that does not ask for stall detection
        (``stall_threshold`` None: the web UI's) takes the running one's."""
        if running is None:
            return False
        if (self.frequency, self.mode, self.idle_frames) != (running.frequency, running.mode, running.idle_frames):
            return False
        return self.stall_threshold is None or self == running

    def describe(self) -> str:
        idle = "default idle frames" if self.idle_frames is None else f"{len(self.idle_frames)} idle frames"
        stalls = "" if self.stall_threshold is None else f", stalls over {self.stall_threshold:g} s"
        return f"{self.mode} {self.frequency:g} Hz, {idle}{stalls}"


def join(chunks: Sequence["Period"]) -> Optional["Period"]:
    """One Period made of consecutive chunks, or None for no chunk.

    A single chunk is returned as is; several are merged by
    ``_core.concat`` (NotImplementedError if this build of the C core does
    not have it yet).
    """
    if not chunks:
        return None
    if len(chunks) == 1:
        return chunks[0]
    from . import _core

    concat = getattr(_core, "concat", None)
    if concat is None:
        raise NotImplementedError("this build of profiler_service._core cannot concatenate periods")
    return concat(list(chunks))


def join_runs(chunks: Sequence["Period"]) -> list["Period"]:
    """Consecutive chunks joined into one Period per run of the same mode and
    frequency: a sampler restarted with other settings inside a recording
    gives two periods, so no file mixes CPU and wall time or two rates."""
    runs: list[list["Period"]] = []
    for chunk in chunks:
        if runs and (runs[-1][-1].mode, runs[-1][-1].frequency) == (chunk.mode, chunk.frequency):
            runs[-1].append(chunk)
        else:
            runs.append([chunk])
    return [join(run) for run in runs]


@dataclass(eq=False)
class Recording:
    """One consumer's view of the shared sampler. Made by ``Hub.open``."""

    hub: "Hub"
    name: str
    wanted: Settings
    chunks: list = field(default_factory=list)
    conflict: Optional[str] = None
    is_open: bool = True
    started_at: float = field(default_factory=time.time)  # epoch s of open or the last cut
    on_stall: Optional[Callable] = None  # called on the sampler thread: see profiler.StallCallback

    @property
    def settings(self) -> Optional[Settings]:
        """The settings the sampler runs with now (None once closed)."""
        return self.hub.settings if self.is_open else None

    def status(self) -> dict:
        """For a status page: open or not, the running settings, samples in
        the current period so far, when it began, any settings conflict."""
        with self.hub._lock:
            active = self.hub.status() if self.is_open else None
            settings = self.settings
            return {
                "open": self.is_open,
                "frequency": settings.frequency if settings else None,
                "mode": settings.mode if settings else None,
                "samples": sum(chunk.samples for chunk in self.chunks) + (active["samples"] if active else 0),
                "started_at": self.started_at,
                "conflict": self.conflict,
            }

    def cut(self, settings: Optional[Settings] = None) -> list["Period"]:
        """End this recording's current period and begin the next one.

        Returns the chunks of the finished period (oldest first; pass them to
        ``join``). ``settings``, when given, become what this recording wants
        from now on (see the module's settings rule).
        """
        return self.hub._cut(self, settings)

    def close(self) -> list["Period"]:
        """End this recording; return the chunks of its last period."""
        return self.hub._close(self)


class Hub:
    """Owner of the process's one Profiler, shared by Recordings."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._profiler: Optional["Profiler"] = None
        self._recordings: list[Recording] = []
        self._running_idle: Optional[tuple[str, ...]] = None

    @property
    def settings(self) -> Optional[Settings]:
        """The running settings, or None when the sampler is stopped."""
        profiler = self._profiler
        if profiler is None:
            return None
        return Settings(
            profiler.frequency,
            profiler.mode,
            self._running_idle,
            profiler.stall_threshold,
            profiler.stall_report_threshold,
        )

    @property
    def recordings(self) -> list[Recording]:
        """The open recordings, in the order they were opened."""
        return list(self._recordings)

    @property
    def running(self) -> bool:
        return self._profiler is not None

    def status(self) -> Optional[dict]:
        """The active chunk's figures from the C core, or None when stopped."""
        with self._lock:
            return self._profiler.status() if self._profiler is not None else None

    def open(self, name: str, settings: Settings = Settings(), on_stall: Optional[Callable] = None) -> Recording:
        """Open a recording that starts now.

        Starts the sampler with ``settings`` if it is stopped; otherwise the
        running settings win and ``Recording.conflict`` says so. Raises
        RuntimeError if a Profiler that the hub does not own already runs in
        this process, ValueError/TypeError for bad settings.
        """
        with self._lock:
            recording = Recording(self, name, settings, on_stall=on_stall)
            if self._profiler is None:
                self._start(settings)
            else:
                self._boundary()
                if not settings.served_by(self.settings):
                    recording.conflict = (
                        f"asked for {settings.describe()}, but the sampler already runs with "
                        f"{self.settings.describe()} for {', '.join(r.name for r in self._recordings)}; "
                        "the running settings win while they record"
                    )
            self._recordings.append(recording)
            return recording

    def shutdown(self) -> None:
        """Stop the sampler now (process shutdown); open recordings keep
        their last chunk, to be collected by ``cut`` or ``close``."""
        with self._lock:
            if self._profiler is not None:
                self._deliver(self._stop())

    # -- internals; the lock is held ------------------------------------------------

    def _start(self, settings: Settings) -> None:
        from .profiler import DEFAULT_IDLE_FRAMES, Profiler

        idle = DEFAULT_IDLE_FRAMES if settings.idle_frames is None else settings.idle_frames
        profiler = Profiler(
            settings.frequency,
            settings.mode,
            idle_frames=idle,
            stall_threshold=settings.stall_threshold,
            stall_report_threshold=settings.stall_report_threshold,
            on_stall=self._on_stall,
        )
        profiler.start()
        self._profiler = profiler
        self._running_idle = settings.idle_frames

    def _stop(self) -> "Period":
        profiler, self._profiler = self._profiler, None
        return profiler.stop()

    def _on_stall(self, duration_s: float, stack: list, busy_thread: str) -> None:
        # On the sampler thread: no lock (the reactor may hold it); a
        # recording's callback must be quick and thread-safe.
        for recording in list(self._recordings):
            if recording.on_stall is not None:
                try:
                    recording.on_stall(duration_s, stack, busy_thread)
                except Exception:
                    pass  # a broken listener must not break sampling

    def _deliver(self, chunk: "Period") -> None:
        for recording in self._recordings:
            recording.chunks.append(chunk)

    def _boundary(self, leaving: Optional[Recording] = None) -> None:
        """Hand the chunk up to now to every open recording (``leaving`` too,
        which is then closed). If the recordings left all want the same
        settings, other than the running ones, restart the sampler with them here."""
        if self._profiler is None:  # stopped by shutdown(): nothing more to hand out
            self._remove(leaving)
            return
        remaining = [r for r in self._recordings if r is not leaving]
        wanted = {r.wanted for r in remaining}
        running = self.settings
        restart_with = wanted.pop() if len(wanted) == 1 and not remaining[0].wanted.served_by(running) else None
        if not remaining or restart_with is not None:
            self._deliver(self._stop())
        else:
            self._deliver(self._profiler.rotate())
        self._remove(leaving)
        if restart_with is not None:
            try:
                self._start(restart_with)
            except Exception:
                self._start(running)  # keep sampling as before; the caller reports why
                raise
            for recording in remaining:
                recording.conflict = None

    def _remove(self, recording: Optional[Recording]) -> None:
        if recording is not None:
            self._recordings.remove(recording)
            recording.is_open = False

    def _take(self, recording: Recording) -> list["Period"]:
        chunks, recording.chunks = recording.chunks, []
        recording.started_at = time.time()
        return chunks

    def _cut(self, recording: Recording, settings: Optional[Settings]) -> list["Period"]:
        with self._lock:
            if not recording.is_open:
                raise RuntimeError(f"recording {recording.name!r} is closed")
            if settings is not None:
                recording.wanted = settings
            self._boundary()
            if not recording.wanted.served_by(self.settings) and self._profiler is not None:
                recording.conflict = (
                    f"asked for {recording.wanted.describe()}, but the sampler runs with "
                    f"{self.settings.describe()} for "
                    f"{', '.join(r.name for r in self._recordings if r is not recording)}; "
                    "the new settings apply when it records alone"
                )
            return self._take(recording)

    def _close(self, recording: Recording) -> list["Period"]:
        with self._lock:
            if not recording.is_open:
                return []
            self._boundary(leaving=recording)
            return self._take(recording)


_hub: Optional[Hub] = None
_hub_lock = threading.Lock()


def get_hub() -> Hub:
    """The process-wide hub (created on first use)."""
    global _hub
    with _hub_lock:
        if _hub is None:
            _hub = Hub()
        return _hub


_core_problem: Optional[str] = None
_core_checked = False


def core_problem() -> Optional[str]:
    """None if the C extension loads, else why not (checked once). Without
    it no recording can open; a master must still start."""
    global _core_problem, _core_checked
    if not _core_checked:
        try:
            importlib.import_module("profiler_service._core")
        except Exception as exc:  # ImportError, or an OSError from a broken build
            _core_problem = f"the profiler's C extension cannot load: {type(exc).__name__}: {exc}"
        _core_checked = True
    return _core_problem


def _after_fork_child() -> None:
    # The child has no sampler (timers are not inherited): start from a fresh hub.
    global _hub, _hub_lock
    _hub = None
    _hub_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_child)
