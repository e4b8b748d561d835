"""The Buildbot www plugin: ``c['www']['plugins']['profiler'] = True``.

Buildbot finds ``ep`` through the ``buildbot.www`` entry point and mounts its
``resource`` at ``/plugins/profiler/``:

    (page)                 the viewer (profiler_service/www/static), as bbprofiler serves it
    scripts.js styles.css  loaded by Buildbot's React UI: a "Profiler" menu entry and page
    api/status             GET: the sampler, the page recording, the service, the limits
    api/start              POST {"frequency": Hz, "duration": s, "mode": ...}: start a recording
    api/stop               POST {}: stop it; the reply names the file written
    api/profiles[/<name>]  the viewer's resources over the service's files and the page's

Every call goes through Buildbot's authz (``master.www.assertUserAllowed``)
with the endpoint ``("plugins", "profiler", <call>)`` and the action ``get``
(status, listing), ``start``, ``stop`` or ``download`` (the bytes of a
profile, viewed or saved); status shows file system paths only to a caller
also allowed ``paths``: ``AnyControlEndpointMatcher(role="admins")``
matches every action but ``get``. Authz runs before a body is parsed.
State-changing calls are POST with a JSON content type, which a cross-site
form cannot send.

A recording started from the page is a consumer of the process-wide hub
(``profiler_service.recordings``), so it shares the sampler with a running
``ProfilerService``: no second timer, no lost service period.

Importing this module is cheap and never loads the C extension: Buildbot
imports every installed www plugin at master start. If the extension cannot
load, the master starts and ``api/status`` (and the page) say why.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Optional

from twisted.internet import defer, threads
from twisted.python import log
from twisted.web import resource, server, static

from buildbot.www.plugin import Application

from profiler_service.options import MIN_DURATION, MIN_FREQUENCY, MODES, start_request
from profiler_service.options import PLUGIN_DEFAULTS as DEFAULTS
from profiler_service.options import plugin_options
from profiler_service.recordings import core_problem
from profiler_service.saving import Saved, fetch_build_records, remove_stale_temp_files, save
from profiler_service.www import STATIC_DIR
from profiler_service.www.listing import ProfileCatalog, Source
from profiler_service.www.resources import (
    ApiResource,
    MissingViewer,
    ProfilesResource,
    StaticFiles,
    json_body,
)

PACKAGE = "profiler_service.www"
UI_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "buildbot_ui")
RECORDING_NAME = "www"
FILE_PREFIX = "web_"
MAX_BODY = 64 * 1024
BUILDS_TIMEOUT_S = 10.0


class BadRequest(Exception):
    """A request the API refuses; ``code`` is the HTTP status."""

    def __init__(self, message: str, code: int = 400):
        super().__init__(message)
        self.code = code


def find_services(master: Any) -> list:
    """The ProfilerService instances in ``c['services']``."""
    manager = getattr(master, "service_manager", None)
    if manager is None:
        return []
    from profiler_service.service import ProfilerService  # Buildbot is loaded: we run in a master

    # tuple() copies the values under the GIL in one step: the listing calls
    # this from a pool thread while a reconfig may change the services.
    return [svc for svc in tuple(manager.namedServices.values()) if isinstance(svc, ProfilerService)]


class PluginCatalog(ProfileCatalog):
    """The files of every configured ProfilerService (``<basepath><stamp>``,
    as it names them) and every profile in the page's directory. Recomputed
    on each call (a reconfig may move the service's files) from the
    services' basepaths alone: no file system work, as it runs on the
    reactor for every fetch."""

    def __init__(self, control: "RecordingControl"):
        super().__init__([])
        self.control = control

    def sources(self) -> list[Source]:
        sources = []
        for svc in find_services(self.control.master):
            basepath = svc.basepath
            if basepath is not None:
                directory, prefix = os.path.split(basepath)
                sources.append(Source(os.path.abspath(directory or "."), prefix))
        sources.append(Source(os.path.abspath(self.control.directory)))
        return sources


class RecordingControl:
    """The page's recording: at most one at a time, on the shared hub.

    Lives as long as the plugin (across reconfigs); every method runs on the
    reactor thread. A recording ends at its duration, at ``stop``, or when
    the master shuts down; its chunks are joined and written in a pool thread
    to ``<directory>/web_<UTC stamp>.json.gz``.
    """

    def __init__(self) -> None:
        self.master: Any = None
        self.options: dict = dict(DEFAULTS)
        self.recording = None
        self.requested: Optional[dict] = None
        self.deadline: Optional[float] = None  # epoch s
        self.timer = None
        self.finishing: Optional[defer.Deferred] = None
        self.last: Optional[dict] = None
        self._shutdown_hooked = False

    @property
    def directory(self) -> str:
        basedir = getattr(self.master, "basedir", None) or "."
        return os.path.join(os.path.abspath(basedir), os.path.expanduser(self.options["directory"]))

    def configure(self, master: Any, options: dict) -> None:
        self.master = master
        self.options = options
        if not self._shutdown_hooked:
            # Write the page's recording before the reactor's thread pool stops.
            master.reactor.addSystemEventTrigger("before", "shutdown", self._at_shutdown)
            self._shutdown_hooked = True
        self._remove_stale_temp_files()

    def _remove_stale_temp_files(self) -> None:
        """In a pool thread: the temporary files a write killed mid-rename
        left in the page's directory (``saving.remove_stale_temp_files``)."""

        def report(removed: list) -> None:
            if removed:
                log.msg(f"profiler www: removed {len(removed)} temporary file(s) left by an interrupted "
                        f"write: {', '.join(removed)}")

        reactor = self.master.reactor
        d = threads.deferToThreadPool(reactor, reactor.getThreadPool(), remove_stale_temp_files,
                                      os.path.join(self.directory, FILE_PREFIX), time.time())
        d.addCallback(report)
        d.addErrback(log.err)

    def _at_shutdown(self) -> Optional[defer.Deferred]:
        # By now the master's services (the database too) are stopped: no builds.
        if self.recording is not None:
            return self.finish("the master is stopping", with_builds=False)
        return self.finishing

    # -- requests -----------------------------------------------------------------------

    def parse_start(self, body: dict) -> tuple[float, float, Optional[str], list[str]]:
        """(frequency, duration, mode, notes about clamped values); BadRequest
        naming the bad value (``options.start_request``)."""
        try:
            return start_request(body, self.options)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None

    def start(self, frequency: float, duration: float, mode: Optional[str]) -> None:
        problem = core_problem()
        if problem:
            raise BadRequest(problem, 503)
        if self.recording is not None:
            raise BadRequest("a recording is already running; stop it first", 409)
        if self.finishing is not None:
            raise BadRequest("the last recording is still being written; try again in a moment", 409)
        from profiler_service.recordings import Settings, get_hub

        hub = get_hub()
        running = hub.settings
        settings = Settings(frequency, mode or (running.mode if running else "virtual"),
                            running.idle_frames if running else None)
        try:
            self.recording = hub.open(RECORDING_NAME, settings)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise BadRequest(f"cannot start the sampler: {exc}", 409) from exc
        self.requested = {"frequency": frequency, "duration": duration, "mode": settings.mode}
        self.deadline = time.time() + duration
        self.timer = self.master.reactor.callLater(duration, self._on_deadline)
        self.last = None
        log.msg(f"profiler www: recording started ({self.recording.settings.describe()}, {duration:g} s)")

    def _on_deadline(self) -> None:
        self.timer = None
        self.finish("duration reached")

    def finish(self, reason: str, with_builds: bool = True) -> defer.Deferred:
        """End the recording now and write it; fires with ``self.last``."""
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        recording, self.recording = self.recording, None
        started = recording.started_at
        try:
            chunks = recording.close()
        except Exception as exc:
            log.failure("profiler www: could not stop the recording")
            self.last = {"name": None, "files": [], "samples": 0, "reason": reason, "error": f"could not stop: {exc}"}
            return defer.succeed(self.last)
        finishing = self._write(chunks, started, reason, with_builds)
        finishing.addBoth(self._written)
        if not finishing.called:
            self.finishing = finishing
        return finishing

    def _written(self, result: Any) -> Any:
        self.finishing = None
        return self.last

    @defer.inlineCallbacks
    def _write(self, chunks: list, started: float, reason: str, with_builds: bool):
        samples = sum(chunk.samples for chunk in chunks)
        self.last = {"name": None, "files": [], "samples": samples, "reason": reason, "error": None,
                     "started_at": started, "ended_at": time.time()}
        if samples == 0:
            self.last["error"] = "no samples: the master used no CPU while recording (try mode 'real')"
            log.msg(f"profiler www: recording ended ({reason}), no samples, no file written")
            return
        builds = (yield overlapping_builds(self.master, started, time.time())) if with_builds else []
        meta = {"recording": "www", "period_end": reason, "master": getattr(self.master, "name", "")}
        reactor = self.master.reactor
        basepath = os.path.join(self.directory, FILE_PREFIX)
        problems = []
        try:
            saved = yield threads.deferToThreadPool(
                reactor, reactor.getThreadPool(), save, chunks, basepath, builds, meta, self.options["keepFiles"], None)
        except Exception as exc:
            saved, problems = Saved(), [f"could not write the recording: {exc}"]
        self._log_saved(saved, problems, samples, reason, len(chunks), len(builds))

    def _log_saved(self, saved: Saved, problems: list[str], samples: int, reason: str, chunk_count: int,
                   build_count: int) -> None:
        """Log what ``saving.save`` did and put it in ``self.last``."""
        problems = problems + [f"could not write {count} samples: {problem}" for count, problem in saved.failed]
        if saved.join_problem:
            problems.insert(0, f"could not join {chunk_count} chunks ({saved.join_problem}); one file per chunk")
        for problem in problems:
            log.msg(f"profiler www: recording of {samples} samples ({reason}): {problem}")
        if problems:
            self.last["error"] = "; ".join(problems)
        if saved.prune_problem:
            log.msg(f"profiler www: could not remove old recordings: {saved.prune_problem}")
        self.last["files"] = [os.path.basename(path) for path, _, _, _ in saved.written]
        if saved.written:
            self.last["name"] = self.last["files"][-1]  # the newest; the viewer opens it
        for path, size, file_samples, _ in saved.written:
            log.msg(f"profiler www: wrote {path} ({file_samples} samples, {build_count} builds, "
                    f"{size / 1024:.1f} KiB; {reason})")

    def status(self, show_paths: bool = False) -> dict:
        """The page's status. File system paths (each service's basepath,
        the page's directory) only with ``show_paths``: the caller is
        allowed the ``paths`` action (see StatusResource); else None."""
        problem = core_problem()
        recording = None
        if self.recording is not None:
            state = self.recording.status()
            recording = {
                **state,
                "requested": self.requested,
                "deadline": self.deadline,
                "time_left": max(0.0, self.deadline - time.time()),
            }
        services = []
        for svc in find_services(self.master):
            svc_recording = svc.recording
            settings = svc_recording.settings if svc_recording is not None else None
            services.append({
                "name": svc.name,
                "basepath": svc.basepath if show_paths else None,
                "sampling": settings is not None,
                "frequency": settings.frequency if settings else None,
                "mode": settings.mode if settings else None,
                "stall_threshold": settings.stall_threshold if settings else None,
                # newest first; list() copies the deque in one step (the
                # sampler thread appends to it)
                "recent_stalls": list(reversed(list(getattr(svc, "recent_stalls", ())))),
            })
        return {
            "available": problem is None,
            "problem": problem,
            "recording": recording,
            "writing": self.finishing is not None,
            "last": self.last,
            "services": services,
            "directory": self.directory if show_paths else None,
            "defaults": {"frequency": self.options["frequency"], "duration": self.options["duration"]},
            "limits": {
                "frequency": [MIN_FREQUENCY, self.options["maxFrequency"]],
                "duration": [MIN_DURATION, self.options["maxDuration"]],
                "modes": list(MODES),
            },
        }


@defer.inlineCallbacks
def overlapping_builds(master: Any, start_s: float, end_s: float):
    """The builds that overlap a recording (at most 100), with steps, as
    ``saving.build_record``s; [] after BUILDS_TIMEOUT_S (a stopping database
    never answers) or if the data API fails (logged)."""

    def bounded(d: defer.Deferred) -> defer.Deferred:
        return d.addTimeout(BUILDS_TIMEOUT_S, master.reactor)

    try:
        builds = list((yield bounded(master.data.get(("builds",), order=["-buildid"], limit=100))))
        # The database keeps whole seconds: a build that ended 0.3 s into
        # the recording may say it ended a second before it began.
        low, high = math.floor(start_s) - 1, math.ceil(end_s) + 1
        overlapping = [
            b for b in builds
            if b["started_at"] is not None and b["started_at"].timestamp() <= high
            and (b["complete_at"] is None or b["complete_at"].timestamp() >= low)
        ]
        if not overlapping:
            return []
        return (yield fetch_build_records(master.data, overlapping, bounded))
    except Exception as exc:
        log.msg(f"profiler www: could not fetch the builds, writing the recording without them: {exc!r}")
        return []


# -- resources ---------------------------------------------------------------------------


def _forbidden_message(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)


def authorize(master: Any, request: server.Request, call: str, action: str) -> defer.Deferred:
    """Fires if Buildbot's authz allows ``action`` on ``plugins/profiler/<call>``;
    fails with buildbot.www.authz.Forbidden otherwise."""
    www = getattr(master, "www", None)
    if www is None:
        return defer.succeed(None)
    return defer.maybeDeferred(www.assertUserAllowed, request, ("plugins", "profiler", call), action, {})


def failure_body(request: server.Request, failure: Any, what: str) -> bytes:
    """The JSON reply for a failed call: 403 (authz), the BadRequest's code,
    or 500 (logged)."""
    from buildbot.www.authz import Forbidden

    if failure.check(Forbidden):
        return json_body(request, {"error": f"forbidden: {_forbidden_message(failure.value)}"}, 403)
    if failure.check(BadRequest):
        return json_body(request, {"error": str(failure.value)}, failure.value.code)
    log.err(failure, f"profiler www: {what} failed")
    return json_body(request, {"error": f"{what} failed: {failure.getErrorMessage()}"}, 500)


def respond_after_authz(master: Any, request: server.Request, call: str, action: str, render) -> Any:
    """Check authz, then ``render(request)`` (bytes or NOT_DONE_YET); 403 with
    Buildbot's message if refused."""
    gone = []
    request.notifyFinish().addErrback(lambda _: gone.append(True))

    def allowed(_: Any) -> Any:
        if gone:
            return None
        body = render(request)
        if isinstance(body, defer.Deferred):
            return body.addCallback(write)
        write(body)
        return None

    def write(body: Any) -> None:
        if not gone and body is not server.NOT_DONE_YET:
            request.write(body)
            request.finish()

    def refused(failure: Any) -> None:
        if not gone:
            request.write(failure_body(request, failure, call))
            request.finish()

    d = authorize(master, request, call, action)
    d.addCallback(allowed)
    d.addErrback(refused)
    return server.NOT_DONE_YET


def is_allowed(master: Any, request: server.Request, call: str, action: str) -> defer.Deferred:
    """Fires with True if authz allows ``action`` on ``plugins/profiler/<call>``,
    False if it refuses it."""
    from buildbot.www.authz import Forbidden

    d = authorize(master, request, call, action)
    d.addCallbacks(lambda _: True, lambda failure: failure.trap(Forbidden) and False)
    return d


def method_not_allowed(request: server.Request, allowed: tuple[bytes, ...], what: str) -> bytes:
    """405 with the Allow header RFC 9110 asks for (Twisted itself answers
    a method its Site does not know, such as PUT, with a 501)."""
    request.setHeader(b"allow", b", ".join(allowed))
    methods = " or ".join(method.decode() for method in allowed)
    return json_body(request, {"error": f"{what} takes {methods}, not {request.method.decode('latin-1')}"}, 405)


class Leaf(resource.Resource):
    isLeaf = True
    methods: tuple[bytes, ...] = (b"GET", b"HEAD")

    def __init__(self, control: RecordingControl):
        super().__init__()
        self.control = control

    def render(self, request: server.Request) -> Any:
        if request.postpath and request.postpath != [b""]:  # api/status/x
            return json_body(request, {"error": "no such API endpoint"}, 404)
        if request.method not in self.methods:
            return method_not_allowed(request, self.methods, "this API call")
        return super().render(request)


class StatusResource(Leaf):
    """``status``: a ``get``. The file system paths in it (where the files
    are) need the ``paths`` action too, which ``AnyControlEndpointMatcher``
    gives admins only: an anonymous user learns no server path."""

    def render_GET(self, request: server.Request) -> Any:
        def render(req: server.Request) -> defer.Deferred:
            d = is_allowed(self.control.master, req, "status", "paths")
            d.addCallback(lambda show_paths: json_body(req, self.control.status(show_paths)))
            return d

        return respond_after_authz(self.control.master, request, "status", "get", render)


def read_json_body(request: server.Request) -> dict:
    """The POST body as a JSON object; BadRequest for anything else.
    Requiring a JSON content type keeps cross-site forms out (CSRF)."""
    content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type != b"application/json":
        raise BadRequest("send a JSON body with Content-Type: application/json", 415)
    raw = request.content.read(MAX_BODY + 1) if request.content is not None else b""
    if len(raw) > MAX_BODY:
        raise BadRequest(f"body too large (more than {MAX_BODY} bytes)", 413)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise BadRequest("body is not valid here: JSON nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest(f"body must be a JSON object, got {type(body).__name__}")
    return body


class ControlResource(Leaf):
    """``start`` or ``stop``: POST only, authorized as that action."""

    methods = (b"POST",)

    def __init__(self, control: RecordingControl, action: str):
        super().__init__(control)
        self.action = action

    def render_POST(self, request: server.Request) -> Any:
        # Authz first: nobody it refuses gets their body parsed.
        gone = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def act(_: Any) -> Any:
            body = read_json_body(request)
            if self.action == "start":
                frequency, duration, mode, notes = self.control.parse_start(body)
                self.control.start(frequency, duration, mode)
                return {"started": True, "clamped": notes, "status": self.control.status()}
            if body:
                raise BadRequest("stop takes an empty JSON object")
            if self.control.recording is None:
                raise BadRequest("no recording is running", 409)
            d = self.control.finish("stopped from the web UI")
            d.addCallback(lambda last: {"stopped": True, "last": last, "status": self.control.status()})
            return d

        def reply(value: dict) -> None:
            if not gone:
                request.write(json_body(request, value))
                request.finish()

        def refused(failure: Any) -> None:
            if not gone:
                request.write(failure_body(request, failure, self.action))
                request.finish()

        d = authorize(self.control.master, request, self.action, self.action)
        d.addCallback(act)
        d.addCallbacks(reply, refused)
        return server.NOT_DONE_YET


class AuthorizedProfiles(ProfilesResource):
    """The viewer's ``profiles`` resource behind authz: the listing is a
    ``get``, a file's bytes (viewed or saved) a ``download``."""

    def __init__(self, catalog: ProfileCatalog, control: RecordingControl):
        super().__init__(catalog)
        self.control = control

    def render(self, request: server.Request) -> Any:
        if request.method not in (b"GET", b"HEAD"):
            return method_not_allowed(request, (b"GET", b"HEAD"), "the list of profiles")
        return super().render(request)

    def render_GET(self, request: server.Request) -> Any:
        return respond_after_authz(self.control.master, request, "profiles", "get", super().render_GET)

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        child = super().getChild(path, request)
        if child is self:
            return self
        return AuthorizedLeaf(child, self.control)


class AuthorizedLeaf(resource.Resource):
    isLeaf = True

    def __init__(self, inner: resource.Resource, control: RecordingControl):
        super().__init__()
        self.inner, self.control = inner, control

    def render(self, request: server.Request) -> Any:
        if request.method not in (b"GET", b"HEAD"):
            return method_not_allowed(request, (b"GET", b"HEAD"), "a profile")
        return respond_after_authz(self.control.master, request, "profiles", "download", self.inner.render)


class PluginApi(ApiResource):
    def __init__(self, catalog: ProfileCatalog, control: RecordingControl):
        super().__init__(catalog)
        self.putChild(b"profiles", AuthorizedProfiles(catalog, control))
        self.putChild(b"status", StatusResource(control))
        self.putChild(b"start", ControlResource(control, "start"))
        self.putChild(b"stop", ControlResource(control, "stop"))


def plugin_root(control: RecordingControl, static_dir: str = STATIC_DIR) -> resource.Resource:
    if os.path.isfile(os.path.join(static_dir, "index.html")):
        root: resource.Resource = StaticFiles(static_dir)
    else:
        root = resource.Resource()
        root.putChild(b"", MissingViewer())
    root.putChild(b"api", PluginApi(PluginCatalog(control), control))
    for name in ("scripts.js", "styles.css"):
        root.putChild(name.encode(), static.File(os.path.join(UI_DIR, name)))
    return root


class ProfilerApplication(Application):
    """``ep``: Buildbot's www Application for the package ``profiler_service.www``
    (its VERSION file; its ``static/`` is the viewer), with the API mounted
    when Buildbot hands over the master and the plugin's settings."""

    def __init__(self) -> None:
        # Not Application.__init__: it hands importlib.resources.files() to
        # static.File, which rejects the Traversable of a meson-python
        # editable install, and an exception here would stop the master.
        # The same attributes, from plain paths.
        self.description = "buildbot-profiler: the profile viewer and live recording"
        self.ui = True
        package_dir = os.path.dirname(os.path.abspath(__file__))
        try:
            with open(os.path.join(package_dir, "VERSION"), encoding="utf-8") as f:
                self.version = f.read().strip()
        except OSError:
            from profiler_service import __version__

            self.version = __version__
        self.static_dir = STATIC_DIR
        self.control = RecordingControl()
        self.resource = plugin_root(self.control)

    def setConfiguration(self, config: Any) -> None:
        super().setConfiguration(config)
        options = plugin_options(config)
        self.control.configure(self.master, options)
        self.resource = plugin_root(self.control)


ep = ProfilerApplication()
