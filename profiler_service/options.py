"""Every option a user gives the profiler, and the rules that check them.

The ``Profiler`` arguments, ``util.ProfilerService(...)`` and the www
plugin's settings and start requests all check their values here, with one
number rule: a number is an int or a float, not a bool, and finite (NaN,
infinity and an int too large for a float are refused, with a message naming
the option). Importing this module loads neither the C extension nor Buildbot.
"""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from .recordings import Settings

MODES = {"virtual": 1, "prof": 0, "real": 2}
"""Timer modes, as in buildbot_profiler 1.x: ``prof`` counts process CPU time
(SIGPROF), ``virtual`` user CPU time (SIGVTALRM), ``real`` wall-clock time
(paced by the sampler thread itself, so no thread sees EINTR). The page
offers them in this order, the default first."""

MAX_FREQUENCY = 10000


def is_number(value: object) -> bool:
    """A finite int or float (not a bool). An int too large for a float
    (JSON allows 1 followed by 400 zeros) is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def short(value: object, limit: int = 40) -> str:
    """repr(value), cut to ``limit`` characters for an error message."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- the Profiler's arguments ------------------------------------------------------------


def check_frequency(frequency: object) -> float:
    """Return ``frequency`` as float, or raise TypeError/ValueError naming it."""
    if isinstance(frequency, bool) or not isinstance(frequency, (int, float)):
        raise TypeError(f"frequency must be a number of Hz, not {type(frequency).__name__}")
    if not is_number(frequency) or frequency <= 0 or frequency > MAX_FREQUENCY:
        raise ValueError(f"frequency must be > 0 and <= {MAX_FREQUENCY} Hz, got {short(frequency)}")
    return float(frequency)


def check_mode(mode: object) -> str:
    """Return ``mode`` if it is known, or raise TypeError/ValueError naming it."""
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a str, not {type(mode).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(sorted(MODES))}; got {mode!r}")
    return mode


def check_int(name: str, value: object, low: int, high: int) -> int:
    """Return ``value`` if it is an int in [low, high], or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def parse_idle_frames(idle_frames: Iterable[str], name: str = "idle_frames") -> list[tuple[str, str]]:
    """Turn ``"path/suffix.py:Qual.name"`` strings into (suffix, qualname) pairs.

    Raises TypeError or ValueError naming the option (``name``).
    """
    if isinstance(idle_frames, (str, bytes)):
        raise TypeError(f"{name} must be a list of 'file.py:Qual.name' strings, not a string")
    try:
        items = list(idle_frames)
    except TypeError:
        raise TypeError(
            f"{name} must be a list of 'file.py:Qual.name' strings, not {type(idle_frames).__name__}"
        ) from None
    pairs = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{name} entries must be str, got {item!r}")
        file_suffix, sep, qualname = item.rpartition(":")
        if not sep or not file_suffix or not qualname:
            raise ValueError(f"{name} entry {item!r} is not of the form 'file.py:Qual.name'")
        pairs.append((file_suffix, qualname))
    return pairs


MAX_STALL_THRESHOLD_S = 3600.0


def check_stall_threshold(name: str, value: object, allow_none: bool = True) -> Optional[float]:
    """Return a stall threshold in seconds (None = off where allowed), or
    raise TypeError/ValueError naming ``name``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "None (off) or a number of seconds" if allow_none else "a number of seconds"
        raise TypeError(f"{name} must be {kind}, not {type(value).__name__}")
    if not is_number(value) or not 0.01 <= value <= MAX_STALL_THRESHOLD_S:
        raise ValueError(f"{name} must be between 0.01 and {MAX_STALL_THRESHOLD_S:g} seconds, got {short(value)}")
    return float(value)


# -- util.ProfilerService(...) ------------------------------------------------------------

DEFAULTS: dict[str, Any] = {
    "frequency": 100,
    "gatherperiod": 30 * 60,
    "mode": "virtual",
    "basepath": None,
    "wantBuilds": 100,
    "keepFiles": 1000,
    "keepDays": 14,
    "idleFrames": None,
    "pyroscope": None,
    "stallThreshold": 0.25,
    "stallLogThreshold": 2.0,
}
"""Every option of ProfilerService with its default (the 1.x names first,
and in this order positionally)."""

MAX_GATHER_PERIOD_S = 7 * 24 * 3600
MAX_WANT_BUILDS = 10_000

_SERVICE_SIGNATURE = inspect.Signature(
    [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=value) for name, value in DEFAULTS.items()]
)


def service_values(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """ProfilerService's arguments, positional or by name, as a dict of all
    options (the defaults filled in). TypeError for an unknown one."""
    try:
        bound = _SERVICE_SIGNATURE.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"ProfilerService: {exc}; its options are {', '.join(DEFAULTS)}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def option_problems(*args: Any, **kwargs: Any) -> list[str]:
    """Every problem with ProfilerService's options, one message each naming
    the option and the bad value. Looks at the file system (stat only),
    changes nothing."""
    values = service_values(*args, **kwargs)
    problems = []
    for check, name in ((check_frequency, "frequency"), (check_mode, "mode")):
        try:
            check(values[name])
        except (TypeError, ValueError) as exc:
            problems.append(str(exc))
    gatherperiod, want, keep_files, keep_days = (
        values["gatherperiod"], values["wantBuilds"], values["keepFiles"], values["keepDays"])
    if not is_number(gatherperiod) or not 1 <= gatherperiod <= MAX_GATHER_PERIOD_S:
        problems.append(
            f"gatherperiod must be a number of seconds between 1 and {MAX_GATHER_PERIOD_S}, got {short(gatherperiod)}"
        )
    if isinstance(want, bool) or not isinstance(want, int) or not 0 <= want <= MAX_WANT_BUILDS:
        problems.append(f"wantBuilds must be an int between 0 and {MAX_WANT_BUILDS}, got {short(want)}")
    if keep_files is not None and (isinstance(keep_files, bool) or not isinstance(keep_files, int) or keep_files < 1):
        problems.append(f"keepFiles must be None (keep every file) or an int >= 1, got {short(keep_files)}")
    if keep_days is not None and (not is_number(keep_days) or keep_days <= 0):
        problems.append(f"keepDays must be None (keep every file) or a number of days > 0, got {short(keep_days)}")
    if values["idleFrames"] is not None:
        try:
            parse_idle_frames(values["idleFrames"], "idleFrames")
        except (TypeError, ValueError) as exc:
            problems.append(str(exc))
    for name, allow_none in (("stallThreshold", True), ("stallLogThreshold", False)):
        try:
            check_stall_threshold(name, values[name], allow_none)
        except (TypeError, ValueError) as exc:
            problems.append(str(exc))
    if values["basepath"] is not None:
        problems.extend(basepath_problems(values["basepath"]))
    from .pyroscope import pyroscope_problems  # the push's own rules live with the push

    problems.extend(pyroscope_problems(values["pyroscope"]))
    return problems


def basepath_problems(basepath: object) -> list[str]:
    """Why files can never be made under ``basepath`` (stat only)."""
    if not isinstance(basepath, str) or not basepath:
        return [f"basepath must be a non-empty str (a path prefix such as '/var/prof/prof_'), got {short(basepath)}"]
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


def _pyroscope_options(value: Any) -> Any:
    from .pyroscope import PyroscopeOptions

    return PyroscopeOptions.parse(value)


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
    pyroscope: Any = None  # None, or pyroscope.PyroscopeOptions
    stall_threshold: Optional[float] = DEFAULTS["stallThreshold"]  # s; None: off
    stall_log_threshold: float = DEFAULTS["stallLogThreshold"]  # s

    @classmethod
    def from_values(cls, values: dict[str, Any], master_basedir: str) -> "Options":
        """From checked ``service_values``; basepath resolved against the master's basedir."""
        frequency, idle = values["frequency"], values["idleFrames"]
        return cls(
            frequency=float(frequency) if is_number(frequency) else frequency,
            gather_period_s=values["gatherperiod"],
            mode=values["mode"],
            basepath=resolve_basepath(values["basepath"], master_basedir),
            want_builds=values["wantBuilds"],
            keep_files=values["keepFiles"],
            keep_days=values["keepDays"],
            idle_frames=None if idle is None else tuple(idle),
            pyroscope=_pyroscope_options(values["pyroscope"]),
            stall_threshold=values["stallThreshold"],
            stall_log_threshold=values["stallLogThreshold"],
        )

    @property
    def settings(self) -> Settings:
        return Settings(
            self.frequency,
            self.mode,
            self.idle_frames,
            None if self.stall_threshold is None else float(self.stall_threshold),
            # Every stall is reported to the service (recent_stalls); it logs
            # those of stall_log_threshold or more.
            float(self.stall_threshold or self.stall_log_threshold),
        )


# -- the www plugin: c['www']['plugins']['profiler'] and api/start ---------------------------

PLUGIN_DEFAULTS = {
    "directory": "profiler-www",  # page recordings, relative to the master's basedir
    "frequency": 100.0,  # Hz, the page's default
    "duration": 60.0,  # s, the page's default
    "maxFrequency": 1000.0,  # Hz; requests above are clamped
    "maxDuration": 3600.0,  # s; requests above are clamped
    "keepFiles": 50,  # page recordings kept; older ones are deleted
}
MIN_FREQUENCY = 1.0
MIN_DURATION = 1.0


def plugin_options(config: Any) -> dict:
    """The plugin's settings from ``c['www']['plugins']['profiler']`` (True or
    a dict); ValueError naming the bad setting otherwise."""
    if config is True or config is None:
        return dict(PLUGIN_DEFAULTS)
    if not isinstance(config, dict):
        raise ValueError(f"c['www']['plugins']['profiler'] must be True or a dict of settings, got {config!r}")
    unknown = sorted(set(config) - set(PLUGIN_DEFAULTS))
    if unknown:
        raise ValueError(f"www plugin 'profiler': unknown setting(s) {unknown}; known: {sorted(PLUGIN_DEFAULTS)}")
    options = {**PLUGIN_DEFAULTS, **config}
    if not isinstance(options["directory"], str) or not options["directory"]:
        raise ValueError(f"www plugin 'profiler': directory must be a non-empty str, got {options['directory']!r}")
    for key in ("frequency", "duration", "maxFrequency", "maxDuration"):
        value = options[key]
        if not is_number(value) or value <= 0:
            raise ValueError(f"www plugin 'profiler': {key} must be a number > 0, got {short(value)}")
    if options["maxFrequency"] > MAX_FREQUENCY:
        raise ValueError(
            f"www plugin 'profiler': maxFrequency must be <= {MAX_FREQUENCY}, got {options['maxFrequency']!r}")
    keep = options["keepFiles"]
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
        raise ValueError(f"www plugin 'profiler': keepFiles must be an int >= 1, got {short(keep)}")
    return options


def start_request(body: dict, options: dict) -> tuple[float, float, Optional[str], list[str]]:
    """An ``api/start`` body as (frequency, duration, mode, notes about
    clamped values) within the plugin's ``options``; ValueError naming the
    bad value."""
    unknown = sorted(set(body) - {"frequency", "duration", "mode"})
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; expected frequency, duration, mode")
    notes = []
    values = {}
    for key, unit, low, high in (
        ("frequency", "Hz", MIN_FREQUENCY, options["maxFrequency"]),
        ("duration", "s", MIN_DURATION, options["maxDuration"]),
    ):
        value = body.get(key, options[key])
        if not is_number(value):
            raise ValueError(f"{key} must be a finite number ({unit}), got {short(value)}")
        if value <= 0:
            raise ValueError(f"{key} must be > 0 {unit}, got {value!r}")
        clamped = min(max(float(value), low), high)
        if clamped != value:
            notes.append(f"{key} {value:g} {unit} clamped to {clamped:g} {unit}")
        values[key] = clamped
    mode = body.get("mode")
    modes = tuple(MODES)  # a tuple: a JSON list or object as mode is unhashable
    if mode is not None and mode not in modes:
        raise ValueError(f"mode must be one of {', '.join(modes)}, got {short(mode)}")
    return values["frequency"], values["duration"], mode, notes
