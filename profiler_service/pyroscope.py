"""Continuous push of the master's profile to Grafana Pyroscope.

``ProfilerService(pyroscope={'url': 'http://pyroscope:4040', ...})`` makes the
service run a :class:`PyroscopePusher`: a third recording on the one shared
sampler (``recordings``), next to the service's gather periods and the web UI's
recordings, so pushing adds no sampler and takes no sample from the files.
Every ``interval`` seconds the pusher cuts its recording, encodes the chunk as
pprof (``pprof.to_pprof``, in a pool thread) and POSTs it to Pyroscope's
``/ingest`` with Twisted's HTTP client, labelled with the master's name and
host and the configured tags. The local files stay the source of truth: a push
never waits for them and they never wait for a push.

A server that is down or slow gets ``ATTEMPTS`` tries per push, each bounded
by ``REQUEST_TIMEOUT_S``; then the push is dropped and logged the way a lost
file is (the first in full, then the 2nd, 4th, 8th... with a count). At most
``MAX_QUEUED_PUSHES`` pushes wait behind the one in flight; a push beyond that
is dropped (and counted), so an unreachable server costs no memory growth.

Pyroscope v2.2.1 takes the ``name`` of a pprof ingest, up to its labels, as
the ``service_name`` (the profile type comes from the pprof's sample types),
so the name sent is ``<app>{labels}``: Grafana then shows the ``app`` option
as the service's name. Sample labels ``thread_name`` and ``builder`` go with
each sample (Pyroscope makes them series labels); thread ids and build numbers
do not, as they would give a new series every restart and every build.
"""

from __future__ import annotations

import base64
import collections
import math
import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Callable, Optional
from urllib.parse import quote, urlsplit

from twisted.internet import defer, task, threads
from twisted.python import log

from .recordings import Recording, Settings, get_hub, join_runs

OPTION_KEYS = ("url", "app", "tags", "interval", "basicAuth", "tenant")
DEFAULT_APP = "buildbot"
DEFAULT_INTERVAL_S = 15
MIN_INTERVAL_S, MAX_INTERVAL_S = 1, 3600
PUSH_LABELS = ("thread_name", "builder")
"""The per-sample labels of a push (bounded cardinality; see the module doc)."""
ATTEMPTS = 3
RETRY_DELAYS_S = (1.0, 2.0)
REQUEST_TIMEOUT_S = 10.0
MAX_QUEUED_PUSHES = 2
PUSH_BUILDS = 20
"""The newest builds fetched per push to label the samples they ran during."""
RECORDING_NAME = "pyroscope"

_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED_TAGS = ("service_name", "master", "host")
_UNSAFE_IN_VALUE = re.compile(r"[{}=,\"\\\x00-\x1f]")
_APP = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]*")


def _number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and not math.isnan(value)


def pyroscope_problems(value: object) -> list[str]:
    """Every problem with the ``pyroscope`` option, one message each naming
    ``pyroscope[...]`` and the bad value. None (no push) has none."""
    if value is None:
        return []
    if not isinstance(value, dict):
        return [f"pyroscope must be None or a dict such as {{'url': 'http://pyroscope:4040'}}, got {value!r}"]
    problems = []
    unknown = sorted(set(map(str, value)) - set(OPTION_KEYS))
    if unknown:
        problems.append(f"pyroscope has unknown key(s) {', '.join(map(repr, unknown))}; "
                        f"known: {', '.join(OPTION_KEYS)}")
    url = value.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        problems.append(f"pyroscope['url'] must be the server's http:// or https:// address such as "
                        f"'http://pyroscope:4040', got {url!r}")
    app = value.get("app", DEFAULT_APP)
    if not isinstance(app, str) or not _APP.fullmatch(app):
        problems.append(f"pyroscope['app'] must be a name of letters, digits and _ . - / such as 'buildbot', got {app!r}")
    tags = value.get("tags", {})
    if not isinstance(tags, dict):
        problems.append(f"pyroscope['tags'] must be a dict of str to str, got {tags!r}")
    else:
        for name, tag in tags.items():
            if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
                problems.append(f"pyroscope['tags'] key {name!r} is not a label name (letters, digits, _; "
                                "not starting with __)")
            elif name in _RESERVED_TAGS:
                problems.append(f"pyroscope['tags'] key {name!r} is set by the profiler; choose another name")
            if not isinstance(tag, str) or not tag or _UNSAFE_IN_VALUE.search(tag):
                problems.append(f"pyroscope['tags'][{name!r}] must be a non-empty str without {{ }} = , \" \\ "
                                f"or control characters, got {tag!r}")
    interval = value.get("interval", DEFAULT_INTERVAL_S)
    if not _number(interval) or not MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S:
        problems.append(f"pyroscope['interval'] must be a number of seconds between {MIN_INTERVAL_S} and "
                        f"{MAX_INTERVAL_S}, got {interval!r}")
    auth = value.get("basicAuth")
    if auth is not None and not (
        isinstance(auth, (tuple, list)) and len(auth) == 2 and all(isinstance(a, str) for a in auth)
        and ":" not in auth[0]
    ):
        problems.append("pyroscope['basicAuth'] must be None or a (user, password) pair of str, the user "
                        f"without ':', got {'a ' + type(auth).__name__ if isinstance(auth, (tuple, list)) else repr(auth)}")
    tenant = value.get("tenant")
    if tenant is not None and (not isinstance(tenant, str) or not tenant or _UNSAFE_IN_VALUE.search(tenant)):
        problems.append(f"pyroscope['tenant'] must be None or a non-empty str (the X-Scope-OrgID), got {tenant!r}")
    if not problems:
        from .pprof import PprofUnavailable, pprof_messages

        try:
            pprof_messages()
        except PprofUnavailable as exc:
            problems.append(f"pyroscope: {exc}")
    return problems


@dataclass(frozen=True)
class PyroscopeOptions:
    """The validated ``pyroscope`` option, in Python names."""

    url: str
    app: str
    tags: tuple[tuple[str, str], ...]
    interval_s: float
    basic_auth: Optional[tuple[str, str]]
    tenant: Optional[str]

    @classmethod
    def parse(cls, value: Optional[dict]) -> Optional["PyroscopeOptions"]:
        """From an option that ``pyroscope_problems`` accepted (None: no push)."""
        if value is None:
            return None
        auth = value.get("basicAuth")
        return cls(
            url=value["url"].rstrip("/"),
            app=value.get("app", DEFAULT_APP),
            tags=tuple(sorted(value.get("tags", {}).items())),
            interval_s=float(value.get("interval", DEFAULT_INTERVAL_S)),
            basic_auth=None if auth is None else (auth[0], auth[1]),
            tenant=value.get("tenant"),
        )


def label_value(text: str) -> str:
    """``text`` as a value Pyroscope's name syntax can carry."""
    return _UNSAFE_IN_VALUE.sub("_", text) or "_"


def ingest_url(options: PyroscopeOptions, labels: dict[str, str], from_s: int, until_s: int) -> str:
    """The ``/ingest`` address of one push."""
    pairs = ",".join(f"{name}={label_value(value)}" for name, value in sorted(labels.items()))
    name = quote(f"{options.app}{{{pairs}}}", safe="")
    return f"{options.url}/ingest?name={name}&from={from_s}&until={until_s}&format=pprof"


def encode_push(period: Any, builds: list) -> bytes:
    """Blocking (a pool thread): the period, with the builds that label its
    samples, as gzipped pprof. Goes through the file format (written to a
    temporary directory and read back), so a push carries what a file does."""
    from .pprof import to_pprof
    from .reading import load

    with tempfile.TemporaryDirectory(prefix="bbprofiler-push-") as directory:
        path = os.path.join(directory, "push.json.gz")
        period.write(path, builds=builds, meta={}, level=1)
        profile = load(path)
    return to_pprof(profile, labels=PUSH_LABELS)


@defer.inlineCallbacks
def fetch_recent_builds(master: Any, limit: int = PUSH_BUILDS):
    """The newest ``limit`` builds, without their steps (two queries), in
    the file format's shape; [] (logged) if the data API fails."""
    from .saving import build_record

    try:
        builds = list((yield master.data.get(("builds",), order=["-buildid"], limit=limit)))[:limit]
        names = {}
        if builds:
            names = {b["builderid"]: b["name"] for b in (yield master.data.get(("builders",)))}
        return [build_record(build, names, []) for build in builds]
    except Exception as exc:
        log.msg(f"ProfilerService: could not fetch the last builds for Pyroscope, pushing without them: {exc!r}")
        return []


class PushFailed(Exception):
    """One POST that did not succeed; ``str()`` says why in one line."""


class PyroscopePusher:
    """Pushes the shared sampler's samples to Pyroscope every interval.

    Runs on the reactor thread; blocking work goes to the reactor's pool.
    ``fetch_builds()`` returns a Deferred list of builds in the file format's
    shape (newest first), or [] on failure.
    """

    def __init__(self, options: PyroscopeOptions, settings: Settings, reactor: Any, master_name: str,
                 fetch_builds: Callable[[], defer.Deferred], log_prefix: str = "ProfilerService") -> None:
        self.options = options
        self.settings = settings
        self.reactor = reactor
        self.fetch_builds = fetch_builds
        self.log_prefix = log_prefix
        self.labels = {"master": master_name or "buildbot", "host": socket.gethostname(), **dict(options.tags)}
        self.recording: Optional[Recording] = None
        self.pushed_profiles = 0
        self.pushed_samples = 0
        self.lost_pushes = 0          # since the start
        self.lost_samples = 0
        self._losses_in_a_row = 0
        self._samples_lost_in_a_row = 0
        self._queue: collections.deque = collections.deque()
        self._draining: Optional[defer.Deferred] = None
        self._in_flight: Optional[list] = None
        self._last_failure: Optional[str] = None
        self._timer = None
        self._agent = None

    # -- lifecycle (reactor thread) -------------------------------------------------

    def start(self) -> None:
        """Open the pusher's recording and arm the timer. Raises what
        ``Hub.open`` raises (the caller logs it)."""
        self.recording = get_hub().open(RECORDING_NAME, self.settings)
        where = ingest_url(self.options, self.labels, 0, 0).split("&from=")[0]
        self._log(f"pushing to Pyroscope every {self.options.interval_s:g} s: {where}")
        self._schedule()

    def stop(self, wait_s: float) -> defer.Deferred:
        """Close the recording and push what it holds (the same bounded
        tries). Fires when every queued push is done or dropped, or after
        ``wait_s``: then the pushes not done yet are counted lost (one in
        flight may still arrive) and the summary is logged."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.recording is not None:
            recording, self.recording = self.recording, None
            try:
                self._submit(recording.close())
            except Exception:
                log.failure(f"{self.log_prefix}: could not close the Pyroscope recording")
        finished = defer.Deferred()

        def finish(timed_out: bool) -> None:
            if finished.called:
                return
            if timed_out:
                unfinished = list(self._queue) + ([self._in_flight] if self._in_flight is not None else [])
                self._queue.clear()
                for chunks in unfinished:
                    self._report_loss(f"a push of {sum(c.samples for c in chunks)} samples was not done "
                                      f"when the master stopped ({wait_s:g} s later)",
                                      sum(c.samples for c in chunks))
            self._log(f"stopped pushing to Pyroscope: {self.pushed_profiles} profile(s) of {self.pushed_samples} "
                      f"samples pushed, {self.lost_pushes} push(es) of {self.lost_samples} samples lost")
            finished.callback(None)

        if self._draining is None:
            finish(False)
        else:
            self._draining.addBoth(lambda _: finish(False))
            self.reactor.callLater(wait_s, finish, True)
        return finished

    def _schedule(self) -> None:
        self._timer = self.reactor.callLater(self.options.interval_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self._submit(self.recording.cut())
        except Exception:
            log.failure(f"{self.log_prefix}: could not cut the Pyroscope recording")
        self._schedule()

    # -- the queue ---------------------------------------------------------------------

    def _submit(self, chunks: list) -> None:
        samples = sum(chunk.samples for chunk in chunks)
        if samples == 0:
            return
        if len(self._queue) >= MAX_QUEUED_PUSHES:
            why = f" (the last try: {self._last_failure})" if self._last_failure else ""
            self._report_loss(f"a push of {samples} samples was dropped: {len(self._queue)} pushes are already "
                              f"waiting for the server{why}", samples)
            return
        self._queue.append(chunks)
        if self._draining is None:
            self._draining = self._drain()

    @defer.inlineCallbacks
    def _drain(self):
        try:
            while self._queue:
                chunks = self._in_flight = self._queue.popleft()
                try:
                    yield self._push(chunks)
                except Exception as exc:  # a bug, not the server: keep pushing later ones
                    self._report_loss(f"a push failed: {exc!r}", sum(chunk.samples for chunk in chunks))
                self._in_flight = chunks = None
        finally:
            self._draining = None
            self._in_flight = None

    @defer.inlineCallbacks
    def _push(self, chunks: list):
        builds = yield self.fetch_builds()
        pool = self.reactor.getThreadPool()
        for period in join_runs(chunks):
            if period.samples == 0:
                continue
            body = yield threads.deferToThreadPool(self.reactor, pool, encode_push, period, builds)
            from_s, until_s = math.floor(period.start_time), math.ceil(period.end_time)
            url = ingest_url(self.options, self.labels, from_s, until_s)
            failure = None
            for attempt in range(ATTEMPTS):
                try:
                    yield self._post(url, body)
                except Exception as exc:
                    failure = exc
                    self._last_failure = _reason(exc)
                    if attempt < len(RETRY_DELAYS_S):
                        yield task.deferLater(self.reactor, RETRY_DELAYS_S[attempt], lambda: None)
                    continue
                failure = None
                break
            stamp = time.strftime("%H:%M:%S", time.gmtime(from_s))
            if failure is not None:
                self._report_loss(f"could not push {period.samples} samples ({stamp}Z + {until_s - from_s} s) to "
                                  f"{self.options.url}: {_reason(failure)} ({ATTEMPTS} attempts)", period.samples)
                continue
            self._last_failure = None
            self.pushed_profiles += 1
            self.pushed_samples += period.samples
            if self.pushed_profiles == 1:
                self._log(f"first push to Pyroscope done ({period.samples} samples, {len(body) / 1024:.1f} KiB)")
            if self._losses_in_a_row:
                self._log(f"pushing to Pyroscope works again ({period.samples} samples from {stamp}Z pushed); "
                          f"{self._losses_in_a_row} push(es) of {self._samples_lost_in_a_row} samples were lost before")
                self._losses_in_a_row = self._samples_lost_in_a_row = 0

    def _post(self, url: str, body: bytes) -> defer.Deferred:
        from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
        from twisted.web.http_headers import Headers

        if self._agent is None:
            self._agent = Agent(self.reactor, connectTimeout=REQUEST_TIMEOUT_S,
                                pool=HTTPConnectionPool(self.reactor, persistent=False))
        headers = Headers({b"Content-Type": [b"application/octet-stream"],
                           b"User-Agent": [b"buildbot-profiler"]})
        if self.options.basic_auth is not None:
            token = base64.b64encode(":".join(self.options.basic_auth).encode()).decode("ascii")
            headers.addRawHeader(b"Authorization", f"Basic {token}".encode("ascii"))
        if self.options.tenant is not None:
            headers.addRawHeader(b"X-Scope-OrgID", self.options.tenant.encode())

        @defer.inlineCallbacks
        def request():
            response = yield self._agent.request(b"POST", url.encode("ascii"), headers,
                                                 FileBodyProducer(BytesIO(body)))
            text = yield readBody(response)
            if not 200 <= response.code < 300:
                raise PushFailed(f"HTTP {response.code} {' '.join(text.decode('utf-8', 'replace').split())[:200]}")

        d = request()
        d.addTimeout(REQUEST_TIMEOUT_S, self.reactor)
        return d

    # -- logging -----------------------------------------------------------------------

    def _log(self, text: str) -> None:
        log.msg(f"{self.log_prefix}: {text}")

    def _report_loss(self, what: str, samples: int) -> None:
        """As the service logs a lost file: the first loss in a row in full,
        then the 2nd, 4th, 8th, ... with the count."""
        self.lost_pushes += 1
        self.lost_samples += samples
        self._losses_in_a_row += 1
        self._samples_lost_in_a_row += samples
        count = self._losses_in_a_row
        if count == 1:
            self._log(f"{what}. The push is lost; the local files are complete and the profiler keeps "
                      "sampling. Further losses are counted.")
        elif count & (count - 1) == 0:
            self._log(f"{what} ({count} pushes lost in a row)")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, defer.TimeoutError) or type(exc).__name__ == "TimeoutError":
        return f"no answer within {REQUEST_TIMEOUT_S:g} s"
    reasons = getattr(exc, "reasons", None)  # ResponseFailed and friends: a list of Failures
    if reasons:
        return "; ".join(" ".join(r.getErrorMessage().split()) for r in reasons)
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())
