"""Lines (format v3, docs/FORMAT.md "Lines"): the file's tree is line-level,
every node a (frame, line) pair. A Profile is function-level, as every view
and export counts by default: the reader folds sibling nodes with the same
frame into one and keeps the line-level tree in ``Profile.lines``;
``by_lines()`` turns it back into a Profile whose frames are (function,
line) pairs, which every view and export then shows line by line."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .model import LEGACY_FORMAT, Frame

if TYPE_CHECKING:
    from .model import Profile


@dataclass(frozen=True, eq=False)
class LineStacks:
    """The file's line-level tree: node ``s`` is frame ``frame[s]`` on line
    ``line[s]`` (0: unknown) under ``parent[s]``; sample ``i`` ended on node
    ``sample_stack[i]``."""

    parent: array
    frame: array
    line: array
    sample_stack: array


def fold_functions(parent: array, frame: array) -> tuple[array, array, array]:
    """The function-level tree of a line-level one: (node -> function node,
    function parents, function frames). Parents come first in both, so one
    forward pass does it."""
    function_node = array("q", bytes(8 * len(parent)))
    ids: dict[tuple[int, int], int] = {}
    f_parent, f_frame = array("q"), array("q")
    for node, (p, f) in enumerate(zip(parent, frame)):
        key = (function_node[p] if p >= 0 else -1, f)
        found = ids.get(key)
        if found is None:
            found = ids[key] = len(f_frame)
            f_parent.append(key[0])
            f_frame.append(f)
        function_node[node] = found
    return function_node, f_parent, f_frame


def has_lines(profile: "Profile") -> bool:
    """Whether the file recorded the line of every frame: format v3, and
    1.x files (whose frames are lines)."""
    return profile.lines is not None or profile.format == LEGACY_FORMAT


def by_lines(profile: "Profile") -> "Profile":
    """`profile` with a frame per (function, line) pair, labelled with that
    line, and its line-level tree: every view and export of it is by line.
    A 1.x file is that already (its functions' first lines are unknown). ValueError for a file without lines. Its
    stalls are left out (``bbprofiler stalls`` shows them by function)."""
    if profile.format == LEGACY_FORMAT or profile.by_line:
        return profile
    lines = profile.lines
    if lines is None and hasattr(profile, "parts"):
        raise ValueError(f"{profile.source}: a merge is by function; merge by-line profiles instead "
                         "(merge(p.by_lines() for p in profiles))")
    if lines is None:
        if profile.version is not None and profile.version >= 3:
            raise ValueError(f"{profile.source} has no lines (its stacks have no 'line' member)")
        raise ValueError(
            f"{profile.source} has no lines (format version {profile.version}; "
            "lines are recorded since format version 3, buildbot-profiler 2.0)"
        )
    ids: dict[tuple[int, int], int] = {}
    frames: list[Frame] = []
    functions: list[Frame] = []
    stack_frame = array("q", bytes(8 * len(lines.frame)))
    for node, (f, line) in enumerate(zip(lines.frame, lines.line)):
        found = ids.get((f, line))
        if found is None:
            function = profile.frames[f]
            found = ids[(f, line)] = len(frames)
            frames.append(Frame(function.name, function.file, line or function.line))
            functions.append(function)
        stack_frame[node] = found
    return replace(
        profile, frames=frames, stack_parent=lines.parent, stack_frame=stack_frame,
        sample_stack=lines.sample_stack, stalls=[], stalls_dropped=0, lines=None,
        _outermost=None, by_line=True, frame_functions=functions,
    )
