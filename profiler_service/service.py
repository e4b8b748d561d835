"""ProfilerService: the profiler as a Buildbot service.

Add ``util.ProfilerService()`` to ``c['services']``. The service samples every
thread of the master through the process-wide hub (``profiler_service.recordings``,
shared with the web UI), and every ``gatherperiod`` seconds rotates the
sampler, fetches the last ``wantBuilds`` builds through ``master.data`` and
writes one ``<basepath><UTC stamp>.json.gz`` file in a thread, then prunes old
files. A reconfig writes the current period and restarts the sampler with the
new settings; a stop writes the final period and waits for it.

Nothing here may crash or stall the master: every failure is logged and the
master keeps running; blocking file work never runs on the reactor thread.
"""

from __future__ import annotations

import time
import warnings
from collections import deque
from typing import Optional

from twisted.internet import defer, threads
from twisted.python import log

from buildbot import config
from buildbot.util import service
from buildbot.warnings import ConfigWarning

from .catalog import STAMPED_SUFFIX, stamped_files
from .pyroscope import PyroscopePusher, fetch_recent_builds
from .options import Options, option_problems, service_values
from .recordings import Recording, Settings, core_problem, get_hub
from .saving import Saved, check_directory, fetch_build_records, save

PUSH_STOP_WAIT_S = 2
"""How long a stop waits for the last push to Pyroscope."""
RECENT_STALLS = 20
"""Stalls the service keeps in memory for the web UI's status (the newest)."""

MAX_QUEUED_WRITES = 2
"""Finished periods allowed to wait behind a write in progress; a period
beyond that is dropped (and logged) rather than piling up in memory."""


class ProfilerService(service.BuildbotService):
    """Samples the master and writes one profile file per gather period.

    Options (1.x names kept): ``frequency`` (Hz), ``gatherperiod`` (s),
    ``mode`` ('virtual', 'prof' or 'real'), ``basepath`` (file prefix,
    default ``<master basedir>/prof_``), ``wantBuilds`` (builds stored per
    file), ``keepFiles`` / ``keepDays`` (retention; None keeps every file),
    ``idleFrames`` (leaf frames that mean "waiting"; None: the default list
    ``profiler_service.profiler.DEFAULT_IDLE_FRAMES``), ``pyroscope`` (None,
    or a dict: push the samples to Grafana Pyroscope too, see
    ``profiler_service.pyroscope``), ``stallThreshold`` (s out of the
    reactor's poll that count as a stall, recorded in the files; None: off),
    ``stallLogThreshold`` (s: stalls this long are also logged), and
    Buildbot's ``name``.
    """

    name = "ProfilerService"

    def checkConfig(self, *args, **kwargs):
        """The options as ``options.DEFAULTS`` names them (positionally in that order)."""
        problem = core_problem()
        if problem:
            # A profiler must not keep a master from starting: warn, and let
            # startService log that it cannot sample.
            warnings.warn(ConfigWarning(f"ProfilerService: the profiler cannot run here: {problem}"), stacklevel=2)
        for problem in option_problems(*args, **kwargs):
            config.error(f"ProfilerService: {problem}")

    def __init__(self, *args, **kwargs):
        self._options: Optional[Options] = None
        self._period_options: Optional[Options] = None  # what the current period was started with
        self._recording: Optional[Recording] = None
        self._timer = None
        self._shutdown_trigger = None
        self._writer = PeriodWriter(self)
        self._pusher: Optional[PyroscopePusher] = None
        self._unwatch_reactor = None
        self.recent_stalls: deque = deque(maxlen=RECENT_STALLS)
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
    def reconfigService(self, *args, **kwargs):
        new = Options.from_values(service_values(*args, **kwargs), self.master.basedir)
        old, self._options = self._options, new
        if not self.running:
            return  # first configuration: startService begins sampling
        if self._recording is None:
            self._begin()  # the sampler could not start before: try again
            return
        self._cancel_timer()
        self._stop_pusher(wait_s=60)  # first: a sampler restarted for new settings is shared with no one
        settings = new.settings if old is None or new.settings != old.settings else None
        written = self._end_period("reconfig", settings)
        if settings is not None and self._recording.conflict is None:
            log.msg(f"ProfilerService: now sampling {self._recording.settings.describe()}")
        self._schedule()
        self._start_pusher()
        self._check_basepath(new.basepath)
        yield written

    @defer.inlineCallbacks
    def startService(self):
        yield super().startService()  # runs the first reconfigService
        self._watch_reactor()
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
        # The pusher's last chunk and the final period end at (almost) the
        # same boundary; then both are pushed and written.
        pushed = self._stop_pusher(wait_s=PUSH_STOP_WAIT_S)
        if self._recording is not None:
            recording, self._recording = self._recording, None
            began = time.perf_counter()
            try:
                chunks = recording.close()
            except Exception:
                log.failure("ProfilerService: could not stop the sampler; the final period is lost")
            else:
                self._writer.queue(chunks, self._period_options, "stop", (time.perf_counter() - began) * 1000)
        yield pushed
        yield self._writer.drain()
        if self._unwatch_reactor is not None:
            self._unwatch_reactor()
            self._unwatch_reactor = None
        yield super().stopService()

    # -- for other parts of the master (the web UI) ----------------------------------------

    @property
    def basepath(self) -> Optional[str]:
        """The absolute prefix of this service's files (None before configuration)."""
        return self._options.basepath if self._options else None

    def profile_files(self) -> list[str]:
        """Blocking (run it in a thread): this service's files, oldest first
        (``catalog.stamped_files``)."""
        if self._options is None:
            return []
        return [profile.listed for profile in stamped_files(self._options.basepath)]

    @property
    def recording(self) -> Optional[Recording]:
        """This service's recording on the shared sampler, while it samples."""
        return self._recording

    # -- periods -----------------------------------------------------------------------

    def _watch_reactor(self) -> None:
        """Mark the reactor's poll for the stall detector (on the reactor
        thread; once: the watch stays through reconfigs, it costs two clock
        reads per iteration)."""
        try:
            from .stalls import watch_reactor

            undo, why = watch_reactor(self.master.reactor)
        except Exception as exc:
            undo, why = None, str(exc) or type(exc).__name__
        if undo is None:
            log.msg(f"ProfilerService: reactor stalls will not be recorded: {why}")
        self._unwatch_reactor = undo

    def _on_stall(self, duration_s: float, stack: list, busy_thread: str) -> None:
        # On the sampler thread, once per stall, just after it ended: kept
        # for the web UI (deque.append is atomic); one of stallLogThreshold
        # or more is handed to the reactor to be logged (one wake-up).
        from .stalls import describe_stack

        self.recent_stalls.append({
            "ended": time.time(),
            "duration_s": round(duration_s, 3),
            "where": describe_stack(stack),
            "busy_thread": busy_thread or None,
        })
        options = self._period_options or self._options
        if options is not None and duration_s >= options.stall_log_threshold:
            self.master.reactor.callFromThread(self._log_stall, duration_s, stack, busy_thread)

    def _log_stall(self, duration_s: float, stack: list, busy_thread: str) -> None:
        from .stalls import describe_stack

        where = describe_stack(stack)
        if busy_thread:
            log.msg(f"ProfilerService: reactor blocked {duration_s:.2f} s while thread {busy_thread!r} "
                    f"held the CPU (and so the GIL) in {where}")
        else:
            log.msg(f"ProfilerService: reactor blocked {duration_s:.2f} s in {where}")

    def _begin(self) -> None:
        """Open this service's recording on the shared sampler and arm the timer."""
        options = self._options
        try:
            self._recording = get_hub().open(self.name, options.settings, on_stall=self._on_stall)
        except Exception as exc:
            log.msg(f"ProfilerService: cannot start the sampler, no profile will be written: {exc}")
            return
        if self._recording.conflict:
            log.msg(f"ProfilerService: {self._recording.conflict}")
        self._period_options = options
        log.msg(
            f"ProfilerService: sampling {self._recording.settings.describe()}; a file every "
            f"{options.gather_period_s:g} s as {options.basepath}<UTC stamp>{STAMPED_SUFFIX}"
        )
        self._schedule()
        self._start_pusher()

    def _start_pusher(self) -> None:
        """With the pyroscope option: a third recording on the sampler
        (wanting this service's settings), pushed every interval."""
        options = self._options
        if options.pyroscope is None or self._recording is None:
            return
        pusher = PyroscopePusher(options.pyroscope, options.settings, self.master.reactor,
                                 getattr(self.master, "name", ""), lambda: fetch_recent_builds(self.master))
        try:
            pusher.start()
        except Exception as exc:
            log.msg(f"ProfilerService: cannot push to Pyroscope, the files are written as usual: {exc}")
            return
        self._pusher = pusher

    def _stop_pusher(self, wait_s: float) -> defer.Deferred:
        """Stop pushing; fires when the last push is done, or after ``wait_s``."""
        pusher, self._pusher = self._pusher, None
        return pusher.stop(wait_s) if pusher is not None else defer.succeed(None)

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
        return self._writer.queue(chunks, options, reason, rotation_ms)

    def _stop_sampler_at_shutdown(self) -> None:
        # Taking the GIL during interpreter finalization kills the sampler
        # thread: stop it while the reactor shuts down. The final chunk stays
        # with the recording; stopService writes it.
        try:
            get_hub().shutdown()
        except Exception:
            log.failure("ProfilerService: could not stop the sampler at shutdown")

    def _check_basepath(self, basepath: str) -> None:
        """In a pool thread: warn at once (not a gather period later) if
        files cannot be written, and remove the temporary files that writes
        killed mid-rename left there (see saving.remove_stale_temp_files)."""

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
        d = threads.deferToThreadPool(reactor, reactor.getThreadPool(), check_directory, basepath, time.time())
        d.addCallback(report)
        d.addErrback(log.err)


class PeriodWriter:
    """Writes a ProfilerService's finished periods in order, one at a time
    (builds from the data API on the reactor, the files in a pool thread,
    ``saving.save``), and counts the periods it loses."""

    def __init__(self, service: "ProfilerService") -> None:
        self.service = service
        self._lock = defer.DeferredLock()
        self.losses = 0

    @defer.inlineCallbacks
    def drain(self):
        """Fires when every queued write is done (the lock serves its waiters in order)."""
        yield self._lock.acquire()
        self._lock.release()
        if self.losses:
            log.msg(f"ProfilerService: stopped; {self.losses} period(s) could not be written since the last success")

    def queue(self, chunks: list, options: Options, reason: str, rotation_ms: float = 0.0) -> defer.Deferred:
        if not chunks or sum(chunk.samples for chunk in chunks) == 0:
            log.msg(f"ProfilerService: no samples in this period ({reason}); no file written")
            return defer.succeed(None)
        if len(self._lock.waiting) >= MAX_QUEUED_WRITES:
            self._report_loss(
                f"a period of {sum(c.samples for c in chunks)} samples was dropped: "
                f"{len(self._lock.waiting) + 1} writes are already waiting (is the disk very slow?)"
            )
            return defer.succeed(None)
        return self._lock.run(self._write, chunks, options, reason, rotation_ms)

    @defer.inlineCallbacks
    def _write(self, chunks: list, options: Options, reason: str, rotation_ms: float):
        reactor = self.service.master.reactor
        fetch_began = time.perf_counter()
        builds = yield self._fetch_builds(options.want_builds)
        fetch_s = time.perf_counter() - fetch_began
        try:
            saved = yield threads.deferToThreadPool(
                reactor, reactor.getThreadPool(), save, chunks, options.basepath, builds,
                self._meta(options, reason), options.keep_files, options.keep_days)
        except Exception as exc:
            self._report_loss(f"could not write the period of {sum(c.samples for c in chunks)} samples: {exc}")
            return
        self._log_saved(saved, len(chunks), f"{len(builds)} builds in {fetch_s:.3f} s", rotation_ms)

    def _log_saved(self, saved: Saved, chunk_count: int, builds: str, rotation_ms: float) -> None:
        if saved.join_problem:
            log.msg(f"ProfilerService: could not join the period's {chunk_count} chunks ({saved.join_problem}); "
                    "writing them one file each")
        for samples, problem in saved.failed:
            self._report_loss(f"could not write the period of {samples} samples: {problem}")
        for path, size, samples, took in saved.written:
            log.msg(
                f"ProfilerService: wrote {path} ({samples} samples, {builds}, "
                f"{size / 1024:.1f} KiB, {took:.3f} s to write, rotation {rotation_ms:.3f} ms)"
            )
        if saved.written and self.losses:
            log.msg(f"ProfilerService: writing works again; {self.losses} period(s) were lost before")
            self.losses = 0
        if saved.prune_problem:
            log.msg(f"ProfilerService: could not remove old profiles: {saved.prune_problem}")
        if saved.deleted:
            log.msg(f"ProfilerService: removed {len(saved.deleted)} old profile(s), the oldest {saved.deleted[0]}")

    def _report_loss(self, what: str) -> None:
        """Log a lost period: the first in a row in full, then at 2, 4, 8, ...
        so a broken disk does not flood twistd.log; the count is kept."""
        self.losses += 1
        count = self.losses
        if count == 1:
            log.msg(
                f"ProfilerService: {what}. The period is lost; the master keeps running "
                "and the profiler keeps sampling. Further losses are counted."
            )
        elif count & (count - 1) == 0:
            log.msg(f"ProfilerService: {what} ({count} periods lost in a row)")

    @defer.inlineCallbacks
    def _fetch_builds(self, want: int):
        """The last ``want`` builds with their steps, newest first; [] (logged)
        if the data API fails."""
        if want == 0:
            return []
        try:
            builds = yield self.service.master.data.get(("builds",), order=["-buildid"], limit=want)
            return (yield fetch_build_records(self.service.master.data, list(builds)[:want]))
        except Exception as exc:
            log.msg(f"ProfilerService: could not fetch the last builds, writing the period without them: {exc!r}")
            return []

    def _meta(self, options: Options, reason: str) -> dict:
        # static_meta() (versions, platform) is added by write_period, in the thread.
        return {
            "gatherperiod": options.gather_period_s,
            "want_builds": options.want_builds,
            "service": self.service.name,
            "master": getattr(self.service.master, "name", ""),
            "period_end": reason,
        }

