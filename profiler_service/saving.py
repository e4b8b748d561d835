"""A finished recording to files: the builds it overlapped, one file per run
of equal sampler settings (one per chunk if they cannot be joined), written
by the C writer, then retention.

Used by ``ProfilerService`` (a file per gather period) and the www plugin (a
file per page recording). Everything but ``fetch_build_records`` is
blocking: run it in a pool thread, never on the reactor. Importing this
module loads neither Buildbot nor the C extension.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import platform
import re
import stat
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Optional

from twisted.internet import defer

from . import __version__
from .catalog import STAMP_FORMAT, STAMPED_SUFFIX, stamp_of, stamped_files
from .recordings import join_runs

_TEMP_RE = re.compile(r"\.(.*)\.tmp-[A-Za-z0-9]{6}", re.DOTALL)
"""The C writer's temporary name: ``.<target name, cut to fit NAME_MAX>.tmp-XXXXXX``."""
STALE_TEMP_AGE_S = 60
"""A temporary file younger than this is left alone even when unlocked: the
writer drops its lock when it closes the file, a moment before the rename."""


# -- builds ---------------------------------------------------------------------------------


def epoch_ms(value: object) -> Optional[int]:
    """An aware datetime (or epoch seconds) as integer ms since the epoch."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:  # Buildbot's are aware; a naive one is UTC
            value = value.replace(tzinfo=timezone.utc)
        return int(round(value.timestamp() * 1000))
    return int(round(float(value) * 1000))  # type: ignore[arg-type]


def build_record(build: dict, builder_names: dict, steps: Iterable[dict]) -> dict:
    """One build from the data API in the file format's ``builds`` shape."""
    return {
        "buildid": build["buildid"],
        "builderid": build["builderid"],
        "builder": builder_names.get(build["builderid"], f"builder {build['builderid']}"),
        "number": build["number"],
        "started_ms": epoch_ms(build.get("started_at")),
        "complete_ms": epoch_ms(build.get("complete_at")),
        "results": build.get("results"),
        "state_string": build.get("state_string") or "",
        "steps": [
            {
                "number": step["number"],
                "name": step["name"],
                "started_ms": epoch_ms(step.get("started_at")),
                "complete_ms": epoch_ms(step.get("complete_at")),
                "results": step.get("results"),
            }
            for step in sorted(steps, key=lambda step: step["number"])
        ],
    }


@defer.inlineCallbacks
def fetch_build_records(data: Any, builds: list, bounded: Callable[[defer.Deferred], defer.Deferred] = lambda d: d):
    """On the reactor: ``builds`` (from ``master.data``) with their builder
    names and steps, as ``build_record``s. ``bounded`` wraps each query
    (e.g. with a timeout). Failures propagate."""
    if not builds:
        return []
    builders = yield bounded(data.get(("builders",)))
    names = {builder["builderid"]: builder["name"] for builder in builders}
    records = []
    for build in builds:
        steps = yield bounded(data.get(("builds", build["buildid"], "steps")))
        records.append(build_record(build, names, list(steps)))
    return records


# -- files ----------------------------------------------------------------------------------


def file_stamp(epoch_s: float) -> str:
    """``20261123T101500Z`` for an epoch time: sortable, no colons."""
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime(STAMP_FORMAT)


def free_path(basepath: str, epoch_s: float) -> str:
    """A name for a period that started at ``epoch_s`` that no file has yet."""
    stamp = file_stamp(epoch_s)
    path = f"{basepath}{stamp}{STAMPED_SUFFIX}"
    serial = 1
    while os.path.lexists(path):  # two periods in one second: _02, _03, ... (sorts after)
        serial += 1
        path = f"{basepath}{stamp}_{serial:02d}{STAMPED_SUFFIX}"
    return path


@functools.lru_cache(maxsize=1)
def static_meta() -> dict:
    """The members of ``meta`` that never change in a process. Computed once,
    in a pool thread: ``platform.platform()`` reads the interpreter's binary
    (tens of ms) and must not run on the reactor."""
    import buildbot

    return {
        "buildbot": buildbot.version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "profiler": __version__,
    }


def write_period(period: Any, basepath: str, builds: list, meta: dict) -> tuple[str, int]:
    """Blocking: write ``period`` to a fresh file under ``basepath``; return
    (path, size). Runs in a pool thread. Raises OSError (the C writer never
    leaves a partial file: it writes a temporary file and renames it)."""
    directory = os.path.dirname(basepath)
    if directory:
        os.makedirs(directory, exist_ok=True)
    path = free_path(basepath, period.start_time)
    period.write(path, builds=builds, meta={**static_meta(), **meta})
    return path, os.path.getsize(path)


@dataclass
class Saved:
    """What ``save`` did: the files written, the problems, the old files removed."""

    written: list[tuple[str, int, int, float]] = field(default_factory=list)  # (path, size, samples, write s)
    join_problem: Optional[str] = None  # the chunks were written one file each
    failed: list[tuple[int, str]] = field(default_factory=list)  # (samples, reason) of each period not written
    deleted: list[str] = field(default_factory=list)
    prune_problem: Optional[str] = None


def save(chunks: list, basepath: str, builds: list, meta: dict,
         keep_files: Optional[int], keep_days: Optional[float]) -> Saved:
    """Blocking: write a finished recording's chunks under ``basepath``, one
    file per run of equal sampler settings (``recordings.join_runs``: a
    recording may span a sampler restart), then prune; never raises for a
    file system problem (it is in the result)."""
    saved = Saved()
    try:
        periods = join_runs(chunks)
    except Exception as exc:  # write the chunks one by one rather than lose them
        saved.join_problem = _reason(exc)
        periods = chunks
    for period in periods:
        if period.samples == 0:
            continue
        began = time.perf_counter()
        try:
            path, size = write_period(period, basepath, builds, meta)
        except Exception as exc:
            saved.failed.append((period.samples, _reason(exc)))
            continue
        saved.written.append((path, size, period.samples, time.perf_counter() - began))
    if saved.written:
        try:
            saved.deleted = prune(basepath, keep_files, keep_days, time.time(), saved.written[-1][0])
        except OSError as exc:
            saved.prune_problem = _reason(exc)
    return saved


def prune(basepath: str, keep_files: Optional[int], keep_days: Optional[float], now_s: float, keep: str) -> list[str]:
    """Blocking: delete this writer's old files (``catalog.stamped_files``)
    beyond ``keep_files`` or older than ``keep_days`` (by the stamp in their
    name), never ``keep``. Returns the deleted paths."""
    if keep_files is None and keep_days is None:
        return []
    prefix = os.path.basename(basepath)
    ours = stamped_files(basepath)
    doomed = set()
    if keep_files is not None and len(ours) > keep_files:
        doomed.update(profile.listed for profile in ours[: len(ours) - keep_files])
    if keep_days is not None:
        limit = now_s - keep_days * 86400
        doomed.update(profile.listed for profile in ours if profile.stamp_s(prefix) < limit)
    deleted = []
    for path in sorted(doomed):
        if path == keep:
            continue
        try:
            os.unlink(path)
            deleted.append(path)
        except FileNotFoundError:
            pass
    return deleted


# -- temporary files of interrupted writes ------------------------------------------------------


def _is_our_temp(name: str, prefix: str, name_max: int) -> bool:
    match = _TEMP_RE.fullmatch(name)
    if match is None:
        return False
    target = match.group(1)
    if target.startswith(prefix) and stamp_of(target, prefix):
        return True
    # A target name too long for NAME_MAX with the infix was cut (at a UTF-8
    # boundary, so up to 3 bytes short of the limit): only its start is known.
    cut = len(os.fsencode(name)) > name_max - 4
    return cut and bool(target) and (target.startswith(prefix) or prefix.startswith(target))


def remove_stale_temp_files(basepath: str, now_s: float, min_age_s: float = STALE_TEMP_AGE_S) -> list[str]:
    """Blocking: delete the temporary files that a write of ours to
    ``<basepath><stamp>.json.gz`` left behind when its process was killed
    between naming the temporary file and renaming it (``.<name>.tmp-XXXXXX``).
    Only such names, only regular files last modified ``min_age_s`` ago or
    more, and only if no live writer holds them: the writer keeps an flock on
    its temporary file, which the kernel releases when the process dies.
    Returns the deleted paths."""
    directory, prefix = os.path.split(basepath)
    directory = directory or "."
    try:
        names = os.listdir(directory)
        name_max = os.pathconf(directory, "PC_NAME_MAX")
    except OSError:
        return []
    removed = []
    for name in names:
        if not _is_our_temp(name, prefix, name_max):
            continue
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue  # gone (renamed by its writer), a symlink, unreadable
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or now_s - st.st_mtime < min_age_s:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    continue  # a live writer's file
                # No locks on this file system: the age alone decides.
            now = os.stat(path, follow_symlinks=False)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                continue  # the name changed hands meanwhile
            os.unlink(path)
            removed.append(path)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


def check_directory(basepath: str, now_s: float) -> tuple[Optional[str], list[str]]:
    """Blocking: (why files cannot be written under ``basepath`` or None,
    the stale temporary files removed there)."""
    directory = os.path.dirname(basepath) or "."
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        return _reason(exc), []
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"[Errno 13] Permission denied: {directory!r}", []
    return None, remove_stale_temp_files(basepath, now_s)


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
