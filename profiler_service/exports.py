"""Exports of a Profile to the formats other tools read, and the "top" table.

- ``to_speedscope``: speedscope's file format (https://www.speedscope.app),
  one ``sampled`` profile for all threads (thread name as the root frame) and
  one per thread, weights in microseconds.
- ``to_collapsed``: Brendan Gregg's collapsed stacks, read by flamegraph.pl,
  inferno, speedscope and Pyroscope; the same lines as ``Period.collapsed()``.
- ``top_functions``: self and total share of every frame.

Every export takes the same selection: ``start_ms``/``end_ms`` (epoch ms,
``start_ms <= time < end_ms``, either may be None) and ``thread`` (None, a
thread name, or an ident / native id; see ``Profile.thread_indexes``).

Costs: ``top_functions`` is linear in the file (samples plus stacks). An
export writes every stack out in full, so its size is the sum of the depths
of what it lists, which a deep stack tree makes quadratic in the file: an
export that would hold more than ``MAX_EXPORT_FRAMES`` frames is refused
(:class:`ExportTooLarge`) before anything is built.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from typing import Any, Callable, Iterable, NamedTuple, Optional, Union

from .reading import Frame, Profile

__all__ = [
    "MAX_EXPORT_FRAMES",
    "SPEEDSCOPE_SCHEMA",
    "ExportTooLarge",
    "FunctionStats",
    "collapsed_label",
    "to_collapsed",
    "to_speedscope",
    "top_functions",
    "write_atomically",
    "write_output",
]

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"

ThreadSelector = Union[None, str, int]

MAX_EXPORT_FRAMES = 20_000_000
"""The most frames (summed over its stacks) one export may hold: about
200 MB of collapsed text, 1 GB of memory to build a speedscope document."""


class ExportTooLarge(ValueError):
    """The export would hold more than MAX_EXPORT_FRAMES frames; ``str()``
    is one line naming the file and how to select less."""

    def __init__(self, profile: Profile, frames: int) -> None:
        super().__init__(
            f"{profile.source}: the export would hold {frames} frames, more than the limit of "
            f"{MAX_EXPORT_FRAMES} (select a thread or a time range)")


def _check_size(profile: Profile, stacks: Iterable[int], extra_per_stack: int = 0) -> None:
    """Refuse before building an export listing these stacks (repeats
    counted) if it would hold too many frames."""
    depths = profile.stack_depths()
    frames = 0
    for stack in stacks:
        frames += depths[stack] + extra_per_stack
    if frames > MAX_EXPORT_FRAMES:
        raise ExportTooLarge(profile, frames)


def _clean(text: str) -> str:
    # As the C renderer does: ';' would split a frame, line breaks a line.
    return text.replace(";", ",").replace("\n", " ").replace("\r", " ")


def collapsed_label(frame: Frame) -> str:
    """A frame as collapsed stacks show it: ``qualname (file:line)``, or the
    bare name of a synthetic frame (empty file)."""
    return _clean(frame.label)


def _selected_counts(
    profile: Profile, start_ms: Optional[float], end_ms: Optional[float], thread: ThreadSelector,
    extra: Optional[Callable[[int], Any]] = None,
) -> dict[tuple, list[int]]:
    """{(thread index, stack id): [samples, weight µs]} over the selection;
    samples are sampling intervals (``Profile.sample_count``). With
    ``extra``, the key is (thread index, stack id, extra(sample index))."""
    totals: dict[tuple, list[int]] = {}
    threads, stacks, weights = profile.sample_thread, profile.sample_stack, profile.sample_weight_us
    counts = profile.sample_count
    for i in profile.select(start_ms, end_ms, thread):
        key = (threads[i], stacks[i]) if extra is None else (threads[i], stacks[i], extra(i))
        entry = totals.get(key)
        if entry is None:
            totals[key] = [counts[i], weights[i]]
        else:
            entry[0] += counts[i]
            entry[1] += weights[i]
    return totals


def to_collapsed(
    profile: Profile,
    *,
    start_ms: Optional[float] = None,
    end_ms: Optional[float] = None,
    thread: ThreadSelector = None,
    weights: bool = False,
) -> str:
    """Collapsed stacks: ``thread;root;...;leaf count`` lines.

    The count is the number of sampling intervals the samples stand for
    (``Profile.sample_count``; a stack whose samples add up to none is left
    out), or with ``weights`` their summed weight in microseconds. Lines come in the order of ``Period.collapsed()``
    (thread index, then stack id), so for a period's file the text is the
    same as the period's own ``collapsed()``.
    """
    counts = sorted(_selected_counts(profile, start_ms, end_ms, thread).items())
    _check_size(profile, (stack for (_, stack), _ in counts))
    labels = [collapsed_label(f) for f in profile.frames]
    names = [_clean(t.name) for t in profile.threads]
    lines = []
    for (thread_index, stack), (count, weight) in counts:
        if not (weight if weights else count):
            continue  # less than an interval: carried into the thread's next sample
        path = ";".join(labels[f] for f in profile.stack_path(stack))
        lines.append(f"{names[thread_index]};{path} {weight if weights else count}\n")
    return "".join(lines)


class _SampledProfile:
    """One speedscope "sampled" profile being built; a sample with the same
    key (thread, stack) as the previous one only adds its weight."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.samples: list[list[int]] = []
        self.weights: list[int] = []
        self.last: Optional[tuple[int, int]] = None

    def add(self, key: tuple[int, int], stack: list[int], weight: int) -> None:
        if key == self.last:
            self.weights[-1] += weight
        else:
            self.samples.append(stack)
            self.weights.append(weight)
            self.last = key

    def document(self) -> dict[str, Any]:
        return {
            "type": "sampled",
            "name": self.title,
            "unit": "microseconds",
            "startValue": 0,
            "endValue": sum(self.weights),
            "samples": self.samples,
            "weights": self.weights,
        }


def to_speedscope(
    profile: Profile,
    *,
    start_ms: Optional[float] = None,
    end_ms: Optional[float] = None,
    thread: ThreadSelector = None,
    name: Optional[str] = None,
) -> dict[str, Any]:
    """A speedscope document (a dict ready for ``json.dump``).

    The first profile holds every selected thread, each under a root frame
    named after it; then one profile per thread that has samples. Samples are
    in time order; consecutive samples with the same stack are merged (their
    weights added), which speedscope shows identically and keeps files small.
    ``startValue`` is 0 and ``endValue`` the total weight, in microseconds.
    """
    from . import __version__

    frames: list[dict[str, Any]] = []
    for f in profile.frames:
        entry: dict[str, Any] = {"name": f.name}
        if f.file:
            entry["file"] = f.file
            if f.line > 0:
                entry["line"] = f.line
        frames.append(entry)
    thread_root: dict[int, int] = {}

    def root_frame(thread_index: int) -> int:
        index = thread_root.get(thread_index)
        if index is None:
            index = thread_root[thread_index] = len(frames)
            frames.append({"name": profile.threads[thread_index].name})
        return index

    everything = _SampledProfile("All threads")
    per_thread: dict[int, _SampledProfile] = {}
    sample_thread, sample_stack, sample_weight = (
        profile.sample_thread, profile.sample_stack, profile.sample_weight_us)
    selected = profile.select(start_ms, end_ms, thread)
    # Each run of equal (thread, stack) samples is written twice: with its
    # thread's root frame in the first profile, without it in the thread's.
    runs = []
    last = None
    for i in selected:
        key = (sample_thread[i], sample_stack[i])
        if key != last:
            runs.append(key[1])
            last = key
    _check_size(profile, runs + runs, 1)
    del runs
    paths: dict[int, list[int]] = {}  # one list per stack, shared by its samples
    for i in selected:
        thread_index, stack, weight = sample_thread[i], sample_stack[i], sample_weight[i]
        path = paths.get(stack)
        if path is None:
            path = paths[stack] = list(profile.stack_path(stack))
        key = (thread_index, stack)
        everything.add(key, [root_frame(thread_index)] + path, weight)
        builder = per_thread.get(thread_index)
        if builder is None:
            builder = per_thread[thread_index] = _SampledProfile(profile.threads[thread_index].name)
        builder.add(key, path, weight)

    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "name": name if name is not None else os.path.basename(profile.source),
        "exporter": f"buildbot-profiler {__version__}",
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
        "profiles": [everything.document()]
        + [per_thread[t].document() for t in sorted(per_thread)],
    }


class FunctionStats(NamedTuple):
    frame: Frame
    self_samples: int        # samples with this frame as the leaf
    total_samples: int       # samples with this frame anywhere on the stack
    self_weight_us: int
    total_weight_us: int


def top_functions(
    profile: Profile,
    *,
    start_ms: Optional[float] = None,
    end_ms: Optional[float] = None,
    thread: ThreadSelector = None,
    sort: str = "self",
) -> tuple[list[FunctionStats], int, int]:
    """Every frame with samples, hottest first, and the selection's total
    samples and weight.

    ``sort`` is ``"self"`` (by self weight, then total) or ``"total"``. A
    frame that appears several times on one stack (recursion) counts once in
    its total.

    Linear in samples plus stacks, whatever the depth: the samples of each
    stack are summed up the tree (parents come first), and a frame's total
    is the sum over its outermost calls (``Profile.outermost``).
    """
    if sort not in ("self", "total"):
        raise ValueError(f"sort must be 'self' or 'total', not {sort!r}")
    n_stacks = len(profile.stack_parent)
    stack_samples, stack_weight = [0] * n_stacks, [0] * n_stacks
    for (_, stack), (count, weight) in _selected_counts(profile, start_ms, end_ms, thread).items():
        stack_samples[stack] += count
        stack_weight[stack] += weight
    n_frames = len(profile.frames)
    self_samples, self_weight = [0] * n_frames, [0] * n_frames
    total_samples, total_weight = [0] * n_frames, [0] * n_frames
    all_samples, all_weight = sum(stack_samples), sum(stack_weight)
    parent, frame, outermost = profile.stack_parent, profile.stack_frame, profile.outermost()
    for stack in range(n_stacks):  # self time, before the sums below change the lists
        if stack_samples[stack] or stack_weight[stack]:
            self_samples[frame[stack]] += stack_samples[stack]
            self_weight[frame[stack]] += stack_weight[stack]
    for stack in range(n_stacks - 1, -1, -1):  # children before their parents
        count = stack_samples[stack]
        if not count and not stack_weight[stack]:
            continue
        if outermost[stack]:
            total_samples[frame[stack]] += count
            total_weight[frame[stack]] += stack_weight[stack]
        up = parent[stack]
        if up >= 0:
            stack_samples[up] += count
            stack_weight[up] += stack_weight[stack]
    stats = [
        FunctionStats(profile.frames[f], self_samples[f], total_samples[f], self_weight[f], total_weight[f])
        for f in range(n_frames)
        if total_samples[f] or total_weight[f]
    ]
    if sort == "self":
        stats.sort(key=lambda s: (-s.self_weight_us, -s.total_weight_us, s.frame))
    else:
        stats.sort(key=lambda s: (-s.total_weight_us, -s.self_weight_us, s.frame))
    return stats, all_samples, all_weight


def write_output(path: Union[str, os.PathLike[str]], text: Union[str, bytes]) -> None:
    """Write an export (text as UTF-8, or bytes) to path, never replacing
    what is not a file.

    - A regular file, or a name that does not exist: replaced atomically
      (``write_atomically``). Through a symbolic link, the file the link
      points to is replaced and the link kept.
    - ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N``: written to that open
      descriptor, where it is (as ``-`` writes to standard output).
    - A character device (``/dev/null``, a terminal) or a FIFO: written into
      in place, as a shell redirection does; a FIFO waits for its reader.
    - Anything else (a directory, a socket, a block device): refused.

    Raises OSError (with a one-line ``strerror``).
    """
    name = os.fspath(path)
    data = text.encode("utf-8") if isinstance(text, str) else text
    descriptor = _descriptor_named(name)
    if descriptor is not None:
        _write_all(descriptor, data)
        return
    try:
        st = os.stat(name)  # follows links: the kind of what is written
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if not (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
            raise OSError(errno.EINVAL, f"{_kind_of(st.st_mode)}, not replaced by the export", name)
        fd = os.open(name, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        return
    write_atomically(os.path.realpath(name), data)


_STANDARD_NAMES = {"/dev/stdout": 1, "/dev/stderr": 2}


def _descriptor_named(name: str) -> Optional[int]:
    """The descriptor a /dev/stdout-like name means, or None."""
    if name in _STANDARD_NAMES:
        return _STANDARD_NAMES[name]
    for prefix in ("/dev/fd/", "/proc/self/fd/"):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return int(name[len(prefix):])
    return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _kind_of(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return kind
    return "not a regular file"


def write_atomically(path: Union[str, os.PathLike[str]], text: Union[str, bytes]) -> None:
    """Write text (UTF-8) or bytes to path through a temporary file in the same directory and
    a rename, so path is never seen half-written. Raises OSError, also if
    path is (or has become) something other than a regular file: a rename
    would replace a device node or a FIFO."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".bbprofiler-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8") if isinstance(text, str) else text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, f"{_kind_of(st.st_mode)}, not replaced", os.fspath(path))
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _umask() -> int:
    # os.umask() can only be read by setting it, which races with other
    # threads (the viewer serves from threads): read it from /proc instead.
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022
