"""Several profiles as one, and two selections compared.

``merge(profiles)`` builds one :class:`MergedProfile` from several loaded
files (periods of one master, or of several): frames and threads interned
across the files, the stack trees re-indexed into one tree, the samples in
time order, the builds of every file, and each file kept as a
:class:`Part` (its time range, its master) so a reader can show the gaps
between periods and tell the masters apart. Everything that reads a
Profile (``top_functions``, the exports) reads a MergedProfile unchanged.

``diff_functions(a, b)`` compares two selections by share of their own
total CPU (wall time in real mode), so a busier B does not look like a
regression: a function that took 10 % of A and 30 % of B grew by 20 points.

A master is told by the ``hostname`` a file records and the Buildbot master
``master`` name the service adds to its meta (``master_key``).
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple, Optional, Sequence

from .exports import ThreadSelector, top_functions
from .reading import FORMAT_NAME, LEGACY_FORMAT, Frame, Load, Profile, Thread

__all__ = [
    "FunctionDiff",
    "MergedProfile",
    "Part",
    "diff_functions",
    "master_key",
    "merge",
]

UNKNOWN_MASTER = "unknown host"
MIN_GAP_MS = 1000
"""Files less than this apart leave no gap (back-to-back periods)."""


def master_key(profile: Profile) -> str:
    """The master a file comes from: ``hostname`` (and ``/master`` name
    when the service recorded one), or "unknown host" (1.x files)."""
    host = profile.meta.get("hostname") if profile.version else None
    name = profile.meta.get("master") if profile.version else None
    host = host if isinstance(host, str) and host else UNKNOWN_MASTER
    return f"{host}/{name}" if isinstance(name, str) and name else host


class Part(NamedTuple):
    """One file of a merged profile."""

    source: str
    start_ms: int
    end_ms: int
    master: str
    samples: int
    weight_us: int
    builds: int


@dataclass(eq=False)
class MergedProfile(Profile):
    """A Profile made of several files; ``sample_part[i]`` is the index in
    ``parts`` of the file sample ``i`` came from."""

    parts: list[Part] = field(default_factory=list)
    sample_part: array = field(default_factory=lambda: array("q"))

    @property
    def masters(self) -> list[str]:
        """The masters of the parts, in order of first appearance."""
        return list(dict.fromkeys(part.master for part in self.parts))

    def gaps(self) -> list[tuple[int, int]]:
        """The (start_ms, end_ms) intervals inside [start_ms, end_ms) that no
        part covers, in time order; shorter than MIN_GAP_MS is no gap (the
        few ms between back-to-back periods)."""
        gaps = []
        covered_to = self.start_ms
        for part in sorted(self.parts, key=lambda p: p.start_ms):
            if part.start_ms - covered_to >= MIN_GAP_MS:
                gaps.append((covered_to, part.start_ms))
            covered_to = max(covered_to, part.end_ms)
        return gaps


def _merged_source(sources: Sequence[str]) -> str:
    names = [os.path.basename(source) for source in sources]
    if len(names) <= 3:
        return " + ".join(names)
    return f"{names[0]} ... {names[-1]} ({len(names)} files)"


def _common(values: Sequence[Any]) -> Any:
    first = values[0]
    return first if all(v == first for v in values) else None


def merge(profiles: Iterable[Profile], *, in_time_order: bool = False) -> MergedProfile:
    """One profile holding every sample of ``profiles`` (at least one).

    Files are taken in order of their start; a thread is the same thread
    in two files when its master, ident, native id and name agree. Stats
    that are counts are summed. Costs the sum of the files' sizes, plus a
    sort of the samples when files overlap in time (several masters).

    With ``in_time_order`` the profiles are taken as they come (already in
    order of their start) and each is read once: a generator that loads
    one file at a time keeps one file in memory besides the merge.
    """
    if in_time_order:
        ordered: Iterable[Profile] = profiles
    else:
        ordered = sorted(profiles, key=lambda p: (p.start_ms, p.end_ms, p.source))
    frame_ids: dict[Frame, int] = {}
    frames: list[Frame] = []
    frame_functions: list[Frame] = []  # by line: the function of each frame
    by_line = True
    thread_ids: dict[tuple, int] = {}
    thread_keys: list[tuple] = []
    thread_totals: list[list[int]] = []
    node_ids: dict[tuple[int, int], int] = {}
    stack_parent, stack_frame = array("q"), array("q")
    times, threads, stacks, weights, counts, part_of = (array("q") for _ in range(6))
    load_points: list[tuple[int, float, Optional[int], Optional[float]]] = []
    builds: dict[tuple, dict] = {}
    parts: list[Part] = []
    in_order = True
    # What the merge keeps of each file once its samples are in.
    formats, modes, frequencies, versions = [], [], [], []
    stats: dict[str, int] = {}
    first_meta: Optional[dict] = None
    has_rss = has_mem = True
    for part_index, profile in enumerate(ordered):
        formats.append(profile.format)
        modes.append(profile.mode)
        frequencies.append(profile.frequency)
        versions.append(profile.version)
        first_meta = dict(profile.meta) if first_meta is None else first_meta
        for name, value in profile.stats.items():
            if type(value) is int:
                stats[name] = stats.get(name, 0) + value
        has_rss = has_rss and profile.load.rss_kb is not None
        has_mem = has_mem and profile.load.mem_percent is not None
        master = master_key(profile)
        frame_map = array("q", bytes(8 * len(profile.frames)))
        functions = profile.frame_functions or profile.frames
        by_line = by_line and profile.by_line
        for old, frame in enumerate(profile.frames):
            new = frame_ids.get(frame)
            if new is None:
                new = frame_ids[frame] = len(frames)
                frames.append(frame)
                frame_functions.append(functions[old])
            frame_map[old] = new
        thread_map = array("q", bytes(8 * len(profile.threads)))
        for old, thread in enumerate(profile.threads):
            key = (master, thread.ident, thread.native_id, thread.name)
            new = thread_ids.get(key)
            if new is None:
                new = thread_ids[key] = len(thread_keys)
                thread_keys.append(key)
                thread_totals.append([0, 0])
            thread_map[old] = new
            thread_totals[new][0] += thread.samples
            thread_totals[new][1] += thread.weight_us
        # Parents come before children in every file, so each parent's new
        # id is known when its child is met.
        stack_map = array("q", bytes(8 * len(profile.stack_parent)))
        for old, (parent, frame) in enumerate(zip(profile.stack_parent, profile.stack_frame)):
            key = (stack_map[parent] if parent >= 0 else -1, frame_map[frame])
            new = node_ids.get(key)
            if new is None:
                new = node_ids[key] = len(stack_frame)
                stack_parent.append(key[0])
                stack_frame.append(key[1])
            stack_map[old] = new
        if times and len(profile) and profile.sample_time_ms[0] < times[-1]:
            in_order = False
        times.extend(profile.sample_time_ms)
        threads.extend(array("q", map(thread_map.__getitem__, profile.sample_thread)))
        stacks.extend(array("q", map(stack_map.__getitem__, profile.sample_stack)))
        weights.extend(profile.sample_weight_us)
        counts.extend(profile.sample_count)  # each file's own (its threads' carry starts at 0)
        part_of.extend(array("q", [part_index]) * len(profile))
        load = profile.load
        for i, t in enumerate(load.t_ms):
            load_points.append((t, load.cpu_percent[i],
                                load.rss_kb[i] if load.rss_kb is not None else None,
                                load.mem_percent[i] if load.mem_percent is not None else None))
        for build in profile.builds:
            key = (master, build.get("buildid"), build.get("number"), build.get("builder"))
            record = dict(build, master=master)
            known = builds.get(key)
            # The same build in two periods: the later file knows more (its end).
            if known is None or (known.get("complete_ms") is None and build.get("complete_ms") is not None):
                builds[key] = record
        parts.append(Part(profile.source, profile.start_ms, profile.end_ms, master, sum(profile.sample_count),
                          sum(profile.sample_weight_us), len(profile.builds)))
    if not parts:
        raise ValueError("merge() needs at least one profile")

    if not in_order:  # files overlap (several masters): stable sort by time
        order = sorted(range(len(times)), key=times.__getitem__)
        times, threads, stacks, weights, counts, part_of = (
            array("q", (column[i] for i in order))
            for column in (times, threads, stacks, weights, counts, part_of))
    load_points.sort(key=lambda point: point[0])
    load = Load(
        t_ms=array("q", (p[0] for p in load_points)),
        cpu_percent=[p[1] for p in load_points],
        rss_kb=array("q", (p[2] for p in load_points)) if has_rss else None,
        mem_percent=[p[3] for p in load_points] if has_mem else None,
    )
    merged_threads = [Thread(key[1], key[2], key[3], *totals) for key, totals in zip(thread_keys, thread_totals)]
    mode = _common(modes)
    frequency = _common(frequencies)
    meta = first_meta or {}
    masters = list(dict.fromkeys(part.master for part in parts))
    meta.update(files=len(parts), masters=masters)
    if len(masters) > 1:
        meta["hostname"] = ", ".join(masters)
    if frequency is None:
        meta["frequencies"] = sorted(set(frequencies))
    return MergedProfile(
        source=_merged_source([part.source for part in parts]),
        format=FORMAT_NAME if FORMAT_NAME in formats else LEGACY_FORMAT,
        version=_common(versions),
        start_ms=min(part.start_ms for part in parts),
        end_ms=max(part.end_ms for part in parts),
        mode=mode,
        frequency=frequency if frequency is not None else max(frequencies),
        meta=meta,
        stats=stats,
        threads=merged_threads,
        frames=frames,
        by_line=by_line,
        frame_functions=frame_functions if by_line else None,
        stack_parent=stack_parent,
        stack_frame=stack_frame,
        sample_time_ms=times,
        sample_thread=threads,
        sample_stack=stacks,
        sample_weight_us=weights,
        sample_count=counts,
        load=load,
        builds=sorted(builds.values(), key=lambda b: (b.get("started_ms") or 0, str(b.get("builder")))),
        parts=parts,
        sample_part=part_of,
    )


class FunctionDiff(NamedTuple):
    """One function in two selections. Shares are fractions (0..1) of each
    selection's total weight; weights are µs."""

    frame: Frame
    self_share_a: float
    self_share_b: float
    total_share_a: float
    total_share_b: float
    self_us_a: int
    self_us_b: int

    @property
    def self_points(self) -> float:
        """Growth of the self share, in percentage points."""
        return 100 * (self.self_share_b - self.self_share_a)

    @property
    def total_points(self) -> float:
        return 100 * (self.total_share_b - self.total_share_a)


class DiffResult(NamedTuple):
    grew: list[FunctionDiff]       # most grown first
    shrank: list[FunctionDiff]     # most shrunk first
    samples_a: int
    weight_a: int
    samples_b: int
    weight_b: int


def diff_functions(
    a: Profile,
    b: Profile,
    *,
    a_range: tuple[Optional[float], Optional[float]] = (None, None),
    b_range: tuple[Optional[float], Optional[float]] = (None, None),
    thread: ThreadSelector = None,
) -> DiffResult:
    """The functions whose share of the total grew and shrank from A to B.

    Each side's ``*_range`` is (start_ms, end_ms) in epoch ms, either None.
    A function is matched by name, file and line. It grew when its self
    share grew (ties: its total share); functions whose self and total
    shares both moved by less than 0.005 points are left out.
    """
    stats_a, samples_a, weight_a = top_functions(a, start_ms=a_range[0], end_ms=a_range[1], thread=thread)
    stats_b, samples_b, weight_b = top_functions(b, start_ms=b_range[0], end_ms=b_range[1], thread=thread)
    by_frame: dict[Frame, list[int]] = {}
    for side, stats in ((0, stats_a), (1, stats_b)):
        for s in stats:
            entry = by_frame.setdefault(s.frame, [0, 0, 0, 0])
            entry[side] = s.self_weight_us
            entry[2 + side] = s.total_weight_us
    rows = []
    for frame, (self_a, self_b, total_a, total_b) in by_frame.items():
        row = FunctionDiff(
            frame,
            self_a / weight_a if weight_a else 0.0, self_b / weight_b if weight_b else 0.0,
            total_a / weight_a if weight_a else 0.0, total_b / weight_b if weight_b else 0.0,
            self_a, self_b)
        if abs(row.self_points) >= 0.005 or abs(row.total_points) >= 0.005:
            rows.append(row)
    grew = sorted((r for r in rows if (r.self_points, r.total_points) > (0, 0)),
                  key=lambda r: (-r.self_points, -r.total_points, r.frame))
    shrank = sorted((r for r in rows if (r.self_points, r.total_points) < (0, 0)),
                    key=lambda r: (r.self_points, r.total_points, r.frame))
    return DiffResult(grew, shrank, samples_a, weight_a, samples_b, weight_b)
