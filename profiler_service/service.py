"""ProfilerService: the profiler as a Buildbot service.

Add ``util.ProfilerService()`` to ``c['services']``. The service samples every
thread of the master through the process-wide hub (``profiler_service.hub``,
shared with the web UI), and every ``gatherperiod`` seconds rotates the
sampler, fetches the last ``wantBuilds`` builds through ``master.data`` and
writes one ``<basepath><UTC stamp>.json.gz`` file in a thread, then prunes old
files. A reconfig writes the current period and restarts the sampler with the
new settings; a stop writes the final period and waits for it.

Nothing here may crash or stall the master: every failure is logged and the
master keeps running; blocking file work never runs on the reactor thread.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import math
import os
import platform
import re
import stat
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Optional

from twisted.internet import defer, threads
from twisted.python import log

from buildbot import config
from buildbot.util import service
from buildbot.warnings import ConfigWarning

from . import __version__
from .hub import Recording, Settings, get_hub, join_runs

DEFAULTS: dict[str, Any] = {
    "frequency": 100,
    "gatherperiod": 30 * 60,
    "mode": "virtual",
    "basepath": None,
    "wantBuilds": 100,
    "keepFiles": 1000,
    "keepDays": 14,
    "idleFrames": None,
}
"""Every option of ProfilerService with its default (the 1.x names first)."""

MAX_GATHER_PERIOD_S = 7 * 24 * 3600
MAX_WANT_BUILDS = 10_000
MAX_QUEUED_WRITES = 2
"""Finished periods allowed to wait behind a write in progress; a period
beyond that is dropped (and logged) rather than piling up in memory."""

FILE_SUFFIX = ".json.gz"
_STAMP_RE = re.compile(r"(\d{8}T\d{6}Z)(?:_\d{2,})?" + re.escape(FILE_SUFFIX) + r"$")
_TEMP_RE = re.compile(r"\.(.*)\.tmp-[A-Za-z0-9]{6}", re.DOTALL)
"""The C writer's temporary name: ``.<target name, cut to fit NAME_MAX>.tmp-XXXXXX``."""
STALE_TEMP_AGE_S = 60
"""A temporary file younger than this is left alone even when unlocked: the
writer drops its lock when it closes the file, a moment before the rename."""


def _number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and not math.isnan(value)


def option_problems(
    frequency: object = DEFAULTS["frequency"],
    gatherperiod: object = DEFAULTS["gatherperiod"],
    mode: object = DEFAULTS["mode"],
    basepath: object = DEFAULTS["basepath"],
    wantBuilds: object = DEFAULTS["wantBuilds"],
    keepFiles: object = DEFAULTS["keepFiles"],
    keepDays: object = DEFAULTS["keepDays"],
    idleFrames: object = DEFAULTS["idleFrames"],
) -> list[str]:
    """Every problem with these options, one message each naming the option
    and the bad value. Looks at the file system (stat only), changes nothing."""
    problems = []
    try:
        from .profiler import check_frequency, check_mode, parse_idle_frames
    except ImportError as exc:
        # The C extension did not load (e.g. Python was upgraded under it).
        # A profiler must not keep a master from starting: warn, and let
        # startService log that it cannot sample.
        warnings.warn(ConfigWarning(f"ProfilerService: the profiler cannot run here: {exc}"), stacklevel=2)
        check_frequency = check_mode = parse_idle_frames = lambda value: value
    for check, value in ((check_frequency, frequency), (check_mode, mode)):
        try:
            check(value)
        except (TypeError, ValueError) as exc:
            problems.append(str(exc))
    if not _number(gatherperiod) or not 1 <= gatherperiod <= MAX_GATHER_PERIOD_S:
        problems.append(
            f"gatherperiod must be a number of seconds between 1 and {MAX_GATHER_PERIOD_S}, got {gatherperiod!r}"
        )
    if isinstance(wantBuilds, bool) or not isinstance(wantBuilds, int) or not 0 <= wantBuilds <= MAX_WANT_BUILDS:
        problems.append(f"wantBuilds must be an int between 0 and {MAX_WANT_BUILDS}, got {wantBuilds!r}")
    if keepFiles is not None and (isinstance(keepFiles, bool) or not isinstance(keepFiles, int) or keepFiles < 1):
        problems.append(f"keepFiles must be None (keep every file) or an int >= 1, got {keepFiles!r}")
    if keepDays is not None and (not _number(keepDays) or keepDays <= 0):
        problems.append(f"keepDays must be None (keep every file) or a number of days > 0, got {keepDays!r}")
    if idleFrames is not None:
        try:
            parse_idle_frames(idleFrames)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            problems.append(str(exc).replace("idle_frames", "idleFrames"))
    if basepath is not None:
        problems.extend(_basepath_problems(basepath))
    return problems


def _basepath_problems(basepath: object) -> list[str]:
    if not isinstance(basepath, str) or not basepath:
        return [f"basepath must be a non-empty str (a path prefix such as '/var/prof/prof_'), got {basepath!r}"]
    if "\0" in basepath:
        return [f"basepath must not contain a NUL byte, got {basepath!r}"]
    if os.path.isdir(basepath) and not basepath.endswith(os.sep):
        return []  # '/var/prof' as a directory: files go in it (see resolve_basepath)
    if os.path.exists(basepath) and not os.path.isdir(basepath):
        return [f"basepath {basepath!r} is an existing file; it must be a path prefix such as '/var/prof/prof_'"]
    # Every existing ancestor must be a directory, or the files can never be made.
    ancestor = os.path.dirname(os.path.abspath(basepath))
    while ancestor and not os.path.exists(ancestor):
        parent = os.path.dirname(ancestor)
        if parent == ancestor:
            break
        ancestor = parent
    if os.path.exists(ancestor) and not os.path.isdir(ancestor):
        return [f"basepath {basepath!r} points into the regular file {ancestor!r}"]
    return []


def resolve_basepath(basepath: Optional[str], master_basedir: str) -> str:
    """The absolute prefix of the files: ``<basedir>/prof_`` by default, a
    relative basepath taken from the master's basedir, and an existing
    directory given without a trailing slash used as ``<dir>/prof_``."""
    if basepath is None:
        return os.path.join(os.path.abspath(master_basedir), "prof_")
    path = os.path.join(os.path.abspath(master_basedir), os.path.expanduser(basepath))
    if os.path.isdir(path) and not path.endswith(os.sep):
        path = os.path.join(path, "prof_")
    return path


@dataclass(frozen=True)
class Options:
    """The service's validated options, in Python names."""

    frequency: float
    gather_period_s: float
    mode: str
    basepath: str
    want_builds: int
    keep_files: Optional[int]
    keep_days: Optional[float]
    idle_frames: Optional[tuple[str, ...]]

    @property
    def settings(self) -> Settings:
        return Settings(self.frequency, self.mode, self.idle_frames)


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


def file_stamp(epoch_s: float) -> str:
    """``20261123T101500Z`` for an epoch time: sortable, no colons."""
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _free_path(basepath: str, epoch_s: float) -> str:
    stamp = file_stamp(epoch_s)
    path = f"{basepath}{stamp}{FILE_SUFFIX}"
    serial = 1
    while os.path.lexists(path):  # two periods in one second: _02, _03, ... (sorts after)
        serial += 1
        path = f"{basepath}{stamp}_{serial:02d}{FILE_SUFFIX}"
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
    path = _free_path(basepath, period.start_time)
    period.write(path, builds=builds, meta={**static_meta(), **meta})
    return path, os.path.getsize(path)


def prune(basepath: str, keep_files: Optional[int], keep_days: Optional[float], now_s: float, keep: str) -> list[str]:
    """Blocking: delete this service's old files beyond ``keep_files`` or
    older than ``keep_days`` (by the stamp in their name), never ``keep``.
    Only names ``<basepath><stamp>[-N].json.gz`` are touched. Returns the
    deleted paths."""
    if keep_files is None and keep_days is None:
        return []
    directory, prefix = os.path.split(basepath)
    ours = []
    for name in os.listdir(directory or "."):
        match = _STAMP_RE.fullmatch(name[len(prefix):]) if name.startswith(prefix) else None
        if match:
            ours.append((name, match.group(1)))
    ours.sort(key=lambda item: (item[1], item[0]))
    doomed = set()
    if keep_files is not None and len(ours) > keep_files:
        doomed.update(name for name, _ in ours[: len(ours) - keep_files])
    if keep_days is not None:
        limit = now_s - keep_days * 86400
        for name, stamp in ours:
            stamp_s = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()
            if stamp_s < limit:
                doomed.add(name)
    deleted = []
    for name in sorted(doomed):
        path = os.path.join(directory, name)
        if path == keep:
            continue
        try:
            os.unlink(path)
            deleted.append(path)
        except FileNotFoundError:
            pass
    return deleted


def _is_our_temp(name: str, prefix: str, name_max: int) -> bool:
    match = _TEMP_RE.fullmatch(name)
    if match is None:
        return False
    target = match.group(1)
    if target.startswith(prefix) and _STAMP_RE.fullmatch(target[len(prefix):]):
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


class ProfilerService(service.BuildbotService):
    """Samples the master and writes one profile file per gather period.

    Options (1.x names kept): ``frequency`` (Hz), ``gatherperiod`` (s),
    ``mode`` ('virtual', 'prof' or 'real'), ``basepath`` (file prefix,
    default ``<master basedir>/prof_``), ``wantBuilds`` (builds stored per
    file), ``keepFiles`` / ``keepDays`` (retention; None keeps every file),
    ``idleFrames`` (leaf frames that mean "waiting"; None: the default list
    ``profiler_service.profiler.DEFAULT_IDLE_FRAMES``), and Buildbot's
    ``name``.
    """

    name = "ProfilerService"

    def checkConfig(
        self,
        frequency=DEFAULTS["frequency"],
        gatherperiod=DEFAULTS["gatherperiod"],
        mode=DEFAULTS["mode"],
        basepath=DEFAULTS["basepath"],
        wantBuilds=DEFAULTS["wantBuilds"],
        keepFiles=DEFAULTS["keepFiles"],
        keepDays=DEFAULTS["keepDays"],
        idleFrames=DEFAULTS["idleFrames"],
    ):
        for problem in option_problems(
            frequency, gatherperiod, mode, basepath, wantBuilds, keepFiles, keepDays, idleFrames
        ):
            config.error(f"ProfilerService: {problem}")

    def __init__(self, *args, **kwargs):
        self._options: Optional[Options] = None
        self._period_options: Optional[Options] = None  # what the current period was started with
        self._recording: Optional[Recording] = None
        self._timer = None
        self._shutdown_trigger = None
        self._write_lock = defer.DeferredLock()
        self._losses = 0
        super().__init__(*args, **kwargs)

    # -- Buildbot lifecycle ------------------------------------------------------------

    @defer.inlineCallbacks
    def reconfigServiceWithSibling(self, sibling):
        # Buildbot skips a reconfig when the sibling's arguments equal
        # self._config_args/_config_kwargs (compare_attrs), which are the
        # *constructor's* and never change on their own: after 1000 -> 250 Hz,
        # a reconfig back to 1000 Hz would look like "no change" and be
        # ignored. Once a reconfig is applied, the sibling's arguments are
        # what this instance runs with; a failed one leaves them as they
        # were, so the same config is tried again at the next reconfig.
        result = yield super().reconfigServiceWithSibling(sibling)
        self._config_args = sibling._config_args
        self._config_kwargs = sibling._config_kwargs
        return result

    @defer.inlineCallbacks
    def reconfigService(
        self,
        frequency=DEFAULTS["frequency"],
        gatherperiod=DEFAULTS["gatherperiod"],
        mode=DEFAULTS["mode"],
        basepath=DEFAULTS["basepath"],
        wantBuilds=DEFAULTS["wantBuilds"],
        keepFiles=DEFAULTS["keepFiles"],
        keepDays=DEFAULTS["keepDays"],
        idleFrames=DEFAULTS["idleFrames"],
    ):
        new = Options(
            frequency=float(frequency) if _number(frequency) else frequency,
            gather_period_s=gatherperiod,
            mode=mode,
            basepath=resolve_basepath(basepath, self.master.basedir),
            want_builds=wantBuilds,
            keep_files=keepFiles,
            keep_days=keepDays,
            idle_frames=None if idleFrames is None else tuple(idleFrames),
        )
        old, self._options = self._options, new
        if not self.running:
            return  # first configuration: startService begins sampling
        if self._recording is None:
            self._begin()  # the sampler could not start before: try again
            return
        self._cancel_timer()
        settings = new.settings if old is None or new.settings != old.settings else None
        written = self._end_period("reconfig", settings)
        if settings is not None and self._recording.conflict is None:
            log.msg(f"ProfilerService: now sampling {self._recording.settings.describe()}")
        self._schedule()
        self._check_basepath(new.basepath)
        yield written

    @defer.inlineCallbacks
    def startService(self):
        yield super().startService()  # runs the first reconfigService
        self._begin()
        self._check_basepath(self._options.basepath)
        self._shutdown_trigger = self.master.reactor.addSystemEventTrigger(
            "before", "shutdown", self._stop_sampler_at_shutdown
        )

    @defer.inlineCallbacks
    def stopService(self):
        self._cancel_timer()
        if self._shutdown_trigger is not None:
            try:
                self.master.reactor.removeSystemEventTrigger(self._shutdown_trigger)
            except (ValueError, KeyError):
                pass  # the trigger already fired
            self._shutdown_trigger = None
        if self._recording is not None:
            recording, self._recording = self._recording, None
            began = time.perf_counter()
            try:
                chunks = recording.close()
            except Exception:
                log.failure("ProfilerService: could not stop the sampler; the final period is lost")
            else:
                self._queue_write(chunks, self._period_options, "stop", (time.perf_counter() - began) * 1000)
        # Wait for every queued write (the lock serves its waiters in order).
        yield self._write_lock.acquire()
        self._write_lock.release()
        if self._losses:
            log.msg(f"ProfilerService: stopped; {self._losses} period(s) could not be written since the last success")
        yield super().stopService()

    # -- for other parts of the master (the web UI) ----------------------------------------

    @property
    def basepath(self) -> Optional[str]:
        """The absolute prefix of this service's files (None before configuration)."""
        return self._options.basepath if self._options else None

    def profile_files(self) -> list[str]:
        """Blocking (run it in a thread): this service's files, oldest first."""
        if self._options is None:
            return []
        directory, prefix = os.path.split(self._options.basepath)
        try:
            names = os.listdir(directory or ".")
        except OSError:
            return []
        ours = [n for n in names if n.startswith(prefix) and _STAMP_RE.fullmatch(n[len(prefix):])]
        return [os.path.join(directory, n) for n in sorted(ours)]

    @property
    def recording(self) -> Optional[Recording]:
        """This service's recording on the shared sampler, while it samples."""
        return self._recording

    # -- periods -----------------------------------------------------------------------

    def _begin(self) -> None:
        """Open this service's recording on the shared sampler and arm the timer."""
        options = self._options
        try:
            self._recording = get_hub().open(self.name, options.settings)
        except Exception as exc:
            log.msg(f"ProfilerService: cannot start the sampler, no profile will be written: {exc}")
            return
        if self._recording.conflict:
            log.msg(f"ProfilerService: {self._recording.conflict}")
        self._period_options = options
        log.msg(
            f"ProfilerService: sampling {self._recording.settings.describe()}; a file every "
            f"{options.gather_period_s:g} s as {options.basepath}<UTC stamp>{FILE_SUFFIX}"
        )
        self._schedule()

    def _schedule(self) -> None:
        self._timer = self.master.reactor.callLater(self._options.gather_period_s, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        self._end_period("period")
        self._schedule()

    def _end_period(self, reason: str, settings: Optional[Settings] = None) -> defer.Deferred:
        """Rotate now (on the reactor: an O(1) swap) and queue the write of the
        finished period. The returned Deferred fires when it is written."""
        options = self._period_options
        began = time.perf_counter()
        try:
            chunks = self._recording.cut(settings)
        except Exception:
            # The hub keeps whatever chunks it handed out for the next cut.
            log.failure("ProfilerService: could not rotate the sampler")
            return defer.succeed(None)
        finally:
            self._period_options = self._options
        rotation_ms = (time.perf_counter() - began) * 1000
        if settings is not None and self._recording.conflict:
            log.msg(f"ProfilerService: {self._recording.conflict}")
        return self._queue_write(chunks, options, reason, rotation_ms)

    def _stop_sampler_at_shutdown(self) -> None:
        # Taking the GIL during interpreter finalization kills the sampler
        # thread: stop it while the reactor shuts down. The final chunk stays
        # with the recording; stopService writes it.
        try:
            get_hub().shutdown()
        except Exception:
            log.failure("ProfilerService: could not stop the sampler at shutdown")

    def _queue_write(self, chunks: list, options: Options, reason: str, rotation_ms: float = 0.0) -> defer.Deferred:
        if not chunks or sum(chunk.samples for chunk in chunks) == 0:
            log.msg(f"ProfilerService: no samples in this period ({reason}); no file written")
            return defer.succeed(None)
        if len(self._write_lock.waiting) >= MAX_QUEUED_WRITES:
            self._report_loss(
                f"a period of {sum(c.samples for c in chunks)} samples was dropped: "
                f"{len(self._write_lock.waiting) + 1} writes are already waiting (is the disk very slow?)"
            )
            return defer.succeed(None)
        return self._write_lock.run(self._write, chunks, options, reason, rotation_ms)

    @defer.inlineCallbacks
    def _write(self, chunks: list, options: Options, reason: str, rotation_ms: float):
        reactor = self.master.reactor
        fetch_began = time.perf_counter()
        builds = yield self._fetch_builds(options.want_builds)
        fetch_s = time.perf_counter() - fetch_began
        meta = self._meta(options, reason)
        pool = reactor.getThreadPool()
        try:
            periods = join_runs(chunks)  # one file per run of equal sampler settings
        except Exception as exc:
            log.msg(f"ProfilerService: could not join the period's {len(chunks)} chunks ({_reason(exc)}); "
                    "writing them one file each")
            periods = chunks
        for period in periods:
            if period.samples == 0:
                continue
            began = time.perf_counter()
            try:
                path, size = yield threads.deferToThreadPool(
                    reactor, pool, write_period, period, options.basepath, builds, meta
                )
            except Exception as exc:
                self._report_loss(f"could not write the period of {period.samples} samples: {_reason(exc)}")
                continue
            took = time.perf_counter() - began
            log.msg(
                f"ProfilerService: wrote {path} ({period.samples} samples, {len(builds)} builds in {fetch_s:.3f} s, "
                f"{size / 1024:.1f} KiB, {took:.3f} s to write, rotation {rotation_ms:.3f} ms)"
            )
            if self._losses:
                log.msg(f"ProfilerService: writing works again; {self._losses} period(s) were lost before")
                self._losses = 0
            try:
                deleted = yield threads.deferToThreadPool(
                    reactor, pool, prune, options.basepath, options.keep_files, options.keep_days, time.time(), path
                )
            except Exception as exc:
                log.msg(f"ProfilerService: could not remove old profiles: {_reason(exc)}")
            else:
                if deleted:
                    log.msg(f"ProfilerService: removed {len(deleted)} old profile(s), the oldest {deleted[0]}")

    def _report_loss(self, what: str) -> None:
        """Log a lost period: the first in a row in full, then at 2, 4, 8, ...
        so a broken disk does not flood twistd.log; the count is kept."""
        self._losses += 1
        count = self._losses
        if count == 1:
            log.msg(
                f"ProfilerService: {what}. The period is lost; the master keeps running "
                "and the profiler keeps sampling. Further losses are counted."
            )
        elif count & (count - 1) == 0:
            log.msg(f"ProfilerService: {what} ({count} periods lost in a row)")

    def _check_basepath(self, basepath: str) -> None:
        """In a pool thread: warn at once (not a gather period later) if
        files cannot be written, and remove the temporary files that writes
        killed mid-rename left there (see remove_stale_temp_files)."""
        directory = os.path.dirname(basepath) or "."

        def check() -> tuple[Optional[str], list[str]]:
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                return _reason(exc), []
            if not os.access(directory, os.W_OK | os.X_OK):
                return f"[Errno 13] Permission denied: {directory!r}", []
            return None, remove_stale_temp_files(basepath, time.time())

        def report(result: tuple[Optional[str], list[str]]) -> None:
            problem, removed = result
            if problem:
                log.msg(
                    f"ProfilerService: profiles cannot be written to {basepath}*: {problem}. "
                    "The master keeps running; fix basepath or the directory's permissions."
                )
            if removed:
                log.msg(
                    f"ProfilerService: removed {len(removed)} temporary file(s) left by an interrupted "
                    f"write: {', '.join(removed)}"
                )

        reactor = self.master.reactor
        d = threads.deferToThreadPool(reactor, reactor.getThreadPool(), check)
        d.addCallback(report)
        d.addErrback(log.err)

    @defer.inlineCallbacks
    def _fetch_builds(self, want: int):
        """The last ``want`` builds with their steps, newest first; [] (logged)
        if the data API fails."""
        if want == 0:
            return []
        try:
            builds = yield self.master.data.get(("builds",), order=["-buildid"], limit=want)
            builds = list(builds)[:want]
            builder_names = {}
            if builds:
                builders = yield self.master.data.get(("builders",))
                builder_names = {builder["builderid"]: builder["name"] for builder in builders}
            records = []
            for build in builds:
                steps = yield self.master.data.get(("builds", build["buildid"], "steps"))
                records.append(build_record(build, builder_names, list(steps)))
            return records
        except Exception as exc:
            log.msg(f"ProfilerService: could not fetch the last builds, writing the period without them: {exc!r}")
            return []

    def _meta(self, options: Options, reason: str) -> dict:
        # static_meta() (versions, platform) is added by write_period, in the thread.
        return {
            "gatherperiod": options.gather_period_s,
            "want_builds": options.want_builds,
            "service": self.name,
            "master": getattr(self.master, "name", ""),
            "period_end": reason,
        }


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
