"""Watching the reactor for stalls.

The C stall detector (``_core/stalldetect.c``) needs two marks from the
reactor thread itself: when it enters its poll and when the poll returns.
``watch_reactor`` wraps the reactor's poller call once, so each iteration
costs two C clock reads and no Python frame. Timers and I/O callbacks run
outside the poller call (Twisted's epoll and poll reactors call them after
``_poller.poll`` returns), so everything that keeps the reactor from its poll
counts. Other reactors (select, asyncio) are not watched: ``watch_reactor``
says so and returns None.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional

if TYPE_CHECKING:
    from .reading import Frame, Profile, Stall


class _WatchedPoller:
    """The reactor's poller with ``poll`` marked; everything else is the poller's."""

    def __init__(self, poller: Any) -> None:
        from . import _core

        self._watched_poller = poller
        self.poll = _core.watch_poll(poller.poll)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._watched_poller, name)


def watch_reactor(reactor: Any) -> tuple[Optional[Callable[[], None]], str]:
    """Wrap ``reactor``'s poller (call on the reactor thread, once).

    Returns ``(undo, "")`` with a function that puts the original poller back
    (if nobody replaced ours meanwhile), or ``(None, why)`` when this reactor
    cannot be watched. Watching an already watched reactor is a no-op whose
    undo does nothing."""
    poller = getattr(reactor, "_poller", None)
    if isinstance(poller, _WatchedPoller):
        return (lambda: None), ""
    if poller is None or not callable(getattr(poller, "poll", None)):
        return None, f"{type(reactor).__name__} has no poller to watch (stalls are seen with the epoll and poll reactors)"
    watched = _WatchedPoller(poller)
    reactor._poller = watched

    def undo() -> None:
        if getattr(reactor, "_poller", None) is watched:
            reactor._poller = poller

    return undo, ""


def describe_stack(stack: list, depth: int = 4) -> str:
    """``dir/file.py:Qual.name > caller > ...`` for a stack of (file, qualname),
    innermost first: the last three path components of each file."""
    parts = []
    for file, qualname in stack[:depth]:
        tail = "/".join(file.replace("\\", "/").split("/")[-3:]) if file else ""
        parts.append(f"{tail}:{qualname}" if tail else qualname)
    if len(stack) > depth:
        parts.append("...")
    return " > ".join(parts) if parts else "(no stack sampled)"


class Culprit(NamedTuple):
    """What blocked the reactor during a stall, as read from its samples."""

    frames: list            # Frame, innermost first; [] when nothing was sampled
    busy_thread: Optional[str]  # the other thread that kept the CPU (and the GIL), or None
    share: float            # fraction of the stall's sampled time in that stack


def culprit(profile: "Profile", stall: "Stall") -> Culprit:
    """The stack that stands for most of the stall's sampled time: the busy
    thread's when another thread held the GIL for most of it, else the
    reactor thread's own. A sample stands for the time since the previous
    one (``Stall.sample_weight_ms``), so one taken after a long wait for the
    GIL counts for that wait."""
    weights = stall.sample_weight_ms
    total = sum(weights)
    busy: Counter = Counter()
    for t, s, w in zip(stall.sample_busy_thread, stall.sample_busy_stack, weights):
        if s >= 0:
            busy[(t, s)] += w
    if total and sum(busy.values()) * 2 > total:
        (thread, stack), weight = busy.most_common(1)[0]
        name = profile.threads[thread].name if 0 <= thread < len(profile.threads) else f"thread {thread}"
        return Culprit(_frames(profile, stack), name, weight / total)
    main: Counter = Counter()
    for s, w in zip(stall.sample_stack, weights):
        if s >= 0:
            main[s] += w
    if not main:
        return Culprit([], None, 0.0)
    stack, weight = main.most_common(1)[0]
    return Culprit(_frames(profile, stack), None, weight / total)


def _frames(profile: "Profile", stack: int) -> list:
    return [profile.frames[f] for f in reversed(profile.stack_path(stack))]


def frames_as_stack(frames: list) -> list:
    """Frames as the (file, qualname) pairs describe_stack takes."""
    return [(f.file, f.name) for f in frames]
