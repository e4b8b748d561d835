"""The model every reader builds: a Profile of threads, frames, a prefix tree
of stacks and the samples as parallel integer arrays; the format constants;
ProfileError, the one exception a reader raises for a file it cannot use.

Readers range-check every index before they build a Profile, so code using
one can index its arrays without checks.
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Optional, Union

if TYPE_CHECKING:
    from .lines import LineStacks

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema" / "profile-v3.schema.json"
"""The JSON Schema of format v3, which also accepts v1 and v2 documents (docs/FORMAT.md)."""

FORMAT_NAME = "buildbot-profiler"
FORMAT_VERSION = 3
"""The newest format version this reader knows; it reads every one since 1
(version 2 added ``stalls``, version 3 ``stacks.line``)."""
LEGACY_FORMAT = "buildbot_profiler-1.x"
"""``Profile.format`` of files written by buildbot_profiler 1.x (version None)."""

LEGACY_DEFAULT_FREQUENCY = 100
"""1.x's default frequency, used when a 1.x file does not record its own."""

MAX_FREQUENCY = 10000
"""The highest sampling frequency a file may declare (Hz), as the schema says."""

MAX_TIME_MS = 253402300799999
"""The latest time a file may name: 9999-12-31T23:59:59.999Z."""

PathLike = Union[str, "os.PathLike[str]"]


def sample_counts(n_threads: int, sample_thread: array, sample_weight_us: array,
                  frequency: float) -> array:
    """How many sampling intervals (1/frequency s) each sample stands for.

    Per thread, in time order, the samples' weights are added up and each
    sample counts the interval boundaries its weight crosses: a thread's
    samples count ``floor(its weight / interval)`` in all, and a sample that
    adds less than an interval to what its thread carries counts 0. Integer
    arithmetic in µs x millihertz, as ``Period.collapsed()`` and the viewer
    compute it (docs/FORMAT.md, "What a sample is, in each mode").
    """
    per_s = max(1, round(frequency * 1000))  # millihertz
    interval = 1_000_000_000  # one interval in µs x millihertz
    carried = [0] * n_threads
    counts = array("q", bytes(8 * len(sample_weight_us)))
    for i, (thread, weight) in enumerate(zip(sample_thread, sample_weight_us)):
        total = carried[thread] + weight * per_s
        counts[i], carried[thread] = divmod(total, interval)
    return counts


class ProfileError(ValueError):
    """The file is not a profile this reader can use.

    ``str(error)`` is one line, ``"<file>: <problem>"``. ``error.source`` is
    the file name as given and ``error.problem`` the problem alone.
    """

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = _one_line(problem)
        super().__init__(_one_line(f"{source}: {problem}"))


class _Invalid(Exception):
    """Internal: a problem found while reading; load() adds the file name."""


def _one_line(text: str) -> str:
    lines = text.splitlines()
    return " ".join(lines) if len(lines) != 1 else lines[0]


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Thread(NamedTuple):
    ident: int          # threading.get_ident()
    native_id: int      # kernel thread id, 0 if unknown (1.x files)
    name: str
    samples: int        # samples of this thread, counted from the samples
    weight_us: int      # their summed weight


class Frame(NamedTuple):
    name: str           # qualified function name, or a "[synthetic]" frame
    file: str           # "" for synthetic frames; a 20-character tail in 1.x files
    line: int           # first line of the function (v1) or the sampled line (1.x); 0 if unknown

    @property
    def label(self) -> str:
        """``name (file:line)``, ``name (file)`` if the line is unknown, or
        the bare name of a synthetic frame."""
        if not self.file:
            return self.name
        return f"{self.name} ({self.file}:{self.line})" if self.line else f"{self.name} ({self.file})"


@dataclass(frozen=True, eq=False)
class Load:
    """The load series, one point per second (v1) or per sample (1.x).

    ``cpu_percent``: v1 files record the process's CPU (100 = one core); 1.x
    files the mean over cores of the system's CPU. ``rss_kb`` is None for 1.x
    files, ``mem_percent`` None when the RAM size is unknown.
    """

    t_ms: array
    cpu_percent: list[float]
    rss_kb: Optional[array]
    mem_percent: Optional[list[float]]

    def __len__(self) -> int:
        return len(self.t_ms)


@dataclass(frozen=True, eq=False)
class Stall:
    """One interval in which the reactor stayed out of its poll for longer
    than the threshold (format v2). Sample ``i`` was taken at
    ``sample_time_ms[i]`` (ms since the epoch): the reactor thread
    ``sample_thread[i]`` in stack ``sample_stack[i]``, and the other thread
    that was busy on the CPU meanwhile (``sample_busy_thread[i]``, in
    ``sample_busy_stack[i]``); -1 where there is none."""

    start_ms: int              # ms since the epoch: the reactor's poll returned
    duration_us: int           # until it entered its poll again
    sampled_us: int            # wall time between its first and last sample
    main_cpu_us: int           # the reactor thread's CPU time in that span
    samples_dropped: int
    sample_time_ms: array
    sample_thread: array
    sample_stack: array
    sample_busy_thread: array
    sample_busy_stack: array
    sample_weight_ms: array    # the time each sample stands for: since the
                               # previous one; the first, since the stall
                               # reached the threshold (a sampler that waited
                               # for the GIL took it late)

    @property
    def duration_s(self) -> float:
        return self.duration_us / 1e6

    def __len__(self) -> int:
        return len(self.sample_stack)


@dataclass(eq=False)
class Profile:
    """One period, read from a file.

    Stacks form a prefix tree: stack ``s`` has the leaf frame
    ``stack_frame[s]`` and the parent stack ``stack_parent[s]`` (-1 at the
    root level, always < s). Sample ``i`` happened at ``sample_time_ms[i]``
    (ms since the Unix epoch) in thread ``threads[sample_thread[i]]`` with the
    stack ``sample_stack[i]`` and stands for ``sample_weight_us[i]`` µs of CPU
    (wall time in ``real`` mode; 1/frequency s for 1.x files) and for
    ``sample_count[i]`` sampling intervals (``sample_counts``; 1 in 1.x
    files). Every count shown or exported is a sum of ``sample_count``.

    Frames are functions. A v3 file also has the line of every frame: its
    line-level tree is in ``lines``, and ``by_lines()`` is the same profile
    with a frame per (function, line) pair (``by_line`` then True).
    """

    source: str
    format: str                     # FORMAT_NAME or LEGACY_FORMAT
    version: Optional[int]          # 1 to 3, or None for 1.x files
    start_ms: int
    end_ms: int
    mode: Optional[str]             # "prof" | "virtual" | "real"; None if unknown
    frequency: float
    meta: dict[str, Any]
    stats: dict[str, int]
    threads: list[Thread]
    frames: list[Frame]
    stack_parent: array
    stack_frame: array
    sample_time_ms: array
    sample_thread: array
    sample_stack: array
    sample_weight_us: array
    sample_count: array
    load: Load
    builds: list[dict[str, Any]]
    _outermost: Optional[bytearray] = field(default=None, repr=False)
    stalls: list[Stall] = field(default_factory=list)  # in time order; [] before v2
    stalls_dropped: int = 0         # stalls the writer did not keep (it keeps the longest)
    stall_threshold_us: int = 0     # what counted as a stall; 0 if unknown or none recorded
    lines: Optional["LineStacks"] = field(default=None, repr=False)  # v3: the line-level tree
    by_line: bool = False           # frames are (function, line) pairs: by_lines()
    frame_functions: Optional[list[Frame]] = field(default=None, repr=False)
    """In a by-line profile, the function each frame is a line of (its Frame
    as the function-level profile has it: with the first line)."""

    def __len__(self) -> int:
        return len(self.sample_stack)

    def __repr__(self) -> str:
        return (
            f"<Profile {self.source!r} {self.format} v{self.version} "
            f"{len(self)} samples, {len(self.threads)} threads>"
        )

    @property
    def duration_s(self) -> float:
        return (self.end_ms - self.start_ms) / 1000

    @property
    def has_lines(self) -> bool:
        """Whether the file recorded the line of every frame (v3; 1.x)."""
        from .lines import has_lines

        return has_lines(self)

    def by_lines(self) -> "Profile":
        """This profile with a frame per (function, line): see
        ``reading.lines.by_lines``. ValueError for a file without lines."""
        from .lines import by_lines

        return by_lines(self)

    def stack_path(self, stack: int) -> tuple[int, ...]:
        """Frame ids of a stack, root first.

        Costs the stack's depth and keeps nothing: caching every stack's
        path would cost the sum of all depths, quadratic in the file for a
        deep tree (a chain of stacks).
        """
        frames = []
        node = stack
        parent, frame = self.stack_parent, self.stack_frame
        while node >= 0:
            frames.append(frame[node])
            node = parent[node]
        frames.reverse()
        return tuple(frames)

    def stack_depths(self) -> array:
        """The number of frames of every stack (linear: parents come first)."""
        depths = array("q", bytes(8 * len(self.stack_parent)))
        for node, parent in enumerate(self.stack_parent):
            depths[node] = depths[parent] + 1 if parent >= 0 else 1
        return depths

    def outermost(self) -> bytearray:
        """1 for every stack whose leaf frame appears nowhere above it on its
        own path (the outermost call of a recursive function), else 0.

        One walk over the tree with a count per frame of its calls on the
        current path: linear in the number of stacks. Cached.
        """
        if self._outermost is not None:
            return self._outermost
        n_stacks = len(self.stack_parent)
        parent, frame = self.stack_parent, self.stack_frame
        # Children in CSR form: slot 0 the roots, slot s + 1 the children of s.
        start = [0] * (n_stacks + 2)
        for p in parent:
            start[p + 2] += 1
        for i in range(2, n_stacks + 2):
            start[i] += start[i - 1]
        fill = start[:n_stacks + 1]
        children = [0] * n_stacks
        for node, p in enumerate(parent):
            children[fill[p + 1]] = node
            fill[p + 1] += 1
        outermost = bytearray(n_stacks)
        on_path = [0] * len(self.frames)
        pending = children[start[0]:start[1]]
        while pending:
            node = pending.pop()
            if node < 0:  # leaving ~node's subtree
                on_path[frame[~node]] -= 1
                continue
            f = frame[node]
            if not on_path[f]:
                outermost[node] = 1
            on_path[f] += 1
            pending.append(~node)
            pending.extend(children[start[node + 1]:start[node + 2]])
        self._outermost = outermost
        return outermost

    def thread_indexes(self, thread: Union[None, str, int]) -> Optional[list[int]]:
        """Indexes into ``threads`` selected by ``thread``.

        None selects every thread (returns None). A str selects the threads of
        that name; an int, or a str of digits no thread is named, the thread
        with that ident or native id. Raises ValueError naming the known
        threads if nothing matches.
        """
        if thread is None:
            return None
        if isinstance(thread, str):
            found = [i for i, t in enumerate(self.threads) if t.name == thread]
            if found or not (thread.isascii() and thread.isdigit()):
                if found:
                    return found
                raise ValueError(self._no_thread(thread))
            thread = int(thread)
        if isinstance(thread, bool) or not isinstance(thread, int):
            raise TypeError("thread must be None, a thread name or a thread id")
        found = [i for i, t in enumerate(self.threads) if thread in (t.ident, t.native_id)]
        if not found:
            raise ValueError(self._no_thread(thread))
        return found

    def _no_thread(self, thread: object) -> str:
        names = ", ".join(sorted({t.name for t in self.threads})) or "none"
        return _one_line(f"no thread {_short(thread)} in {self.source} (threads: {names})")

    def select(
        self,
        start_ms: Optional[float] = None,
        end_ms: Optional[float] = None,
        thread: Union[None, str, int] = None,
    ) -> list[int]:
        """Indexes of the samples with ``start_ms <= time < end_ms`` (either
        bound may be None) in the threads ``thread`` selects (see
        ``thread_indexes``), in time order."""
        wanted = self.thread_indexes(thread)
        times, threads = self.sample_time_ms, self.sample_thread
        n = len(times)
        # Times are sorted: dt >= 0 in v1 files, 1.x samples sorted at load.
        lo = 0 if start_ms is None else bisect_left(times, start_ms)
        hi = n if end_ms is None else bisect_left(times, end_ms)
        if wanted is None:
            return list(range(lo, hi))
        keep = set(wanted)
        return [i for i in range(lo, hi) if threads[i] in keep]
