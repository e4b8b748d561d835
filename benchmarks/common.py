"""Shared helpers of the benchmark suite: running one measurement in a fresh
child process, starting and stopping a profiler configuration inside a child,
statistics, and the description of the machine.

Every measurement runs in its own process because a process has one set of
interval timers and signal handlers: a profiler configuration must not leak
into the next one.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PYTHON = sys.executable

RESULT_PREFIX = "BENCH-RESULT "


# ---- configurations -------------------------------------------------------


def parse_config(config: str) -> tuple[str, str, float]:
    """'none' | 'ours:<mode>:<hz>' | 'anchor:<mode>:<hz>' | 'pyspy::<hz>'."""
    if config == "none":
        return ("none", "", 0.0)
    kind, mode, hz = config.split(":")
    return (kind, mode, float(hz))


def config_label(config: str) -> str:
    kind, mode, hz = parse_config(config)
    if kind == "none":
        return "no profiler"
    name = {"ours": "ours", "anchor": "1.x-style", "pyspy": "py-spy"}[kind]
    return f"{name} {mode} {hz:g} Hz" if mode else f"{name} {hz:g} Hz"


class Session:
    """A profiler configuration running inside this process.

    ``stop()`` returns a dict of what the profiler reports about itself
    (ticks, samples, time spent sampling), plus the finished period for ours
    (``period``) or the collector for the anchor (``anchor``).
    """

    def __init__(self, config: str, **profiler_options: Any) -> None:
        self.kind, self.mode, self.frequency = parse_config(config)
        self.options = profiler_options
        self.profiler: Any = None
        self.sampler_tid: Optional[int] = None

    def start(self) -> "Session":
        if self.kind == "ours":
            from profiler_service import Profiler

            before = set(os.listdir("/proc/self/task"))
            self.profiler = Profiler(self.frequency, self.mode, **self.options)
            self.profiler.start()
            new = set(os.listdir("/proc/self/task")) - before
            if len(new) == 1:
                self.sampler_tid = int(new.pop())
        elif self.kind == "anchor":
            from anchor import AnchorCollector

            self.profiler = AnchorCollector(self.frequency, self.mode)
            self.profiler.start()
        return self

    def sampler_cpu_ns(self) -> Optional[int]:
        """CPU time of our native sampler thread so far (schedstat, ns)."""
        if self.sampler_tid is None:
            return None
        return thread_cpu_ns(self.sampler_tid)

    def stop(self) -> dict[str, Any]:
        if self.kind == "ours":
            period = self.profiler.stop()
            out = dict(period.stats)
            out["period"] = period
            out["nodes"] = period.nodes
            out["heap_bytes"] = period.heap_bytes
            return out
        if self.kind == "anchor":
            self.profiler.stop()
            return {
                "ticks": self.profiler.ticks,
                "samples": self.profiler.samples_taken,
                "sampling_ns": self.profiler.handler_ns,
                "walk_ns": self.profiler.walk_ns,
                "anchor": self.profiler,
            }
        return {}


def thread_cpu_ns(tid: int) -> Optional[int]:
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# ---- child processes -------------------------------------------------------


def emit(result: dict[str, Any]) -> None:
    """Print a child's result where run_child finds it."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def log(message: str) -> None:
    """A progress line of a benchmark run, with the time of day."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def child_params() -> dict[str, Any]:
    return json.loads(sys.argv[1])


def run_child(
    script: str,
    params: dict[str, Any],
    timeout: float = 120,
    wrapper: Optional[list[str]] = None,
) -> dict[str, Any]:
    """Run benchmarks/<script> with ``params`` in a fresh interpreter.

    ``wrapper`` prefixes the command (py-spy, perf). Returns the child's
    result dict, with ``wrapper_cpu_s`` (CPU time of the wrapper and the
    child together, from RUSAGE_CHILDREN) and ``wrapper_output``.
    """
    command = [PYTHON, os.path.join(HERE, script), json.dumps(params)]
    if wrapper:
        command = wrapper + command
    env = dict(os.environ)
    env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [l for l in proc.stdout.splitlines() if l.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{script} {params} failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    result = json.loads(lines[-1][len(RESULT_PREFIX):])
    result["children_cpu_s"] = (after.ru_utime + after.ru_stime) - (
        before.ru_utime + before.ru_stime
    )
    result["stderr"] = proc.stderr[-4000:]
    return result


# ---- statistics ------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pct(ratio: float) -> float:
    """A ratio to its overhead in %: 1.02 is +2 %."""
    return (ratio - 1.0) * 100.0


def spread(values: list[float]) -> tuple[float, float]:
    """(min, max): the range over repeats, shown next to each median."""
    return (min(values), max(values)) if values else (float("nan"), float("nan"))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[index]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_s() -> float:
    return time.process_time()


# ---- workloads shared by several benchmarks ----------------------------------


def spin(n: int) -> int:
    """Pure-Python CPU work, no allocation in the loop."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def at_depth(depth: int, leaf: Callable[[], Any]) -> Any:
    """Call ``leaf`` under ``depth`` extra Python frames."""
    if depth <= 1:
        return leaf()
    return at_depth(depth - 1, leaf)


def start_sleepers(count: int, depth: int, interval: float = 1.0) -> Callable[[], None]:
    """``count`` threads that sleep in a loop at ``depth`` frames.

    Their leaf Python frame is ours (time.sleep is C), so real mode walks
    every one of them on every tick: the worst case of a tick. Returns a
    function that stops them.
    """
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            time.sleep(interval)

    threads = [
        threading.Thread(target=at_depth, args=(depth, loop), name=f"sleeper-{i}", daemon=True)
        for i in range(count)
    ]
    for t in threads:
        t.start()

    def stop_all() -> None:
        stop.set()

    return stop_all


def start_parked(count: int, depth: int) -> Callable[[], None]:
    """``count`` threads parked on an Event at ``depth`` frames, like the idle
    workers of a thread pool. Returns a function that releases them."""
    release = threading.Event()
    threads = [
        threading.Thread(target=at_depth, args=(depth, release.wait), name=f"parked-{i}", daemon=True)
        for i in range(count)
    ]
    for t in threads:
        t.start()
    return release.set


# ---- the machine -------------------------------------------------------------


def machine_info() -> dict[str, str]:
    info: dict[str, str] = {}
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["CPU"] = cpu
    info["Cores"] = str(os.cpu_count())
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        info["RAM"] = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        info["RAM"] = "unknown"
    info["Kernel"] = f"{platform.system()} {platform.release()}"
    info["Python"] = f"{platform.python_implementation()} {platform.python_version()}"
    info["Date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    try:
        commit = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True,
        ).stdout.strip()
        info["Git commit"] = commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        info["Git commit"] = "unknown"
    return info


def tool_available(*command: str) -> tuple[bool, str]:
    """Run a probe command; (works, first line of its error)."""
    if shutil.which(command[0]) is None:
        return (False, f"{command[0]} not found")
    try:
        proc = subprocess.run(list(command), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return (False, str(exc))
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        return (False, err[0] if err else f"exit {proc.returncode}")
    return (True, "")


def scratch_dir() -> str:
    return tempfile.mkdtemp(prefix="bbprof-bench-")


def update_section(path: str, title: str, text: str) -> None:
    """Put a report section (`text`, starting with its `title` line) into
    an existing BENCHMARKS.md: in place of its old copy, or before the Tools
    section, or at the end. Written to a temporary file, then renamed."""
    with open(path) as f:
        report = f.read()
    if title in report:
        head, rest = report.split(title, 1)
        tail = rest.split("\n## ", 1)
        report = head + text + ("\n## " + tail[1] if len(tail) > 1 else "")
    elif "\n## Tools" in report:
        head, tail = report.split("\n## Tools", 1)
        report = head + "\n" + text + "\n## Tools" + tail
    else:
        report = report.rstrip("\n") + "\n\n" + text
    with open(path + ".tmp", "w") as f:
        f.write(report)
    os.replace(path + ".tmp", path)
