"""Run the benchmark suite and write BENCHMARKS.md.

    python benchmarks/run.py [--smoke] [--output PATH]

Every figure is a ratio or a distribution measured in this run against a
baseline measured in the same run (paired windows inside one process where
the configuration can be switched on and off, interleaved otherwise), with
repeats and medians. ``--smoke`` runs every benchmark tiny, in seconds, to
keep the suite working; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_master  # noqa: E402
import load_scaling  # noqa: E402
from common import (  # noqa: E402
    HERE, PYTHON, ROOT, config_label, machine_info, median, run_child, scratch_dir,
    spread, tool_available,
)

OURS = [f"ours:{mode}:{hz}" for hz in (100, 1000) for mode in ("prof", "virtual", "real")]
ANCHOR = [f"anchor:{mode}:{hz}" for hz in (100, 1000) for mode in ("prof", "virtual", "real")]
PYSPY = os.path.join(os.path.dirname(PYTHON), "py-spy")

TARGETS = {
    "cpu100": 0.5,      # % CPU at 100 Hz
    "cpu1000": 3.0,     # % CPU at 1000 Hz
    "tick": 20.0,       # µs per tick at 10 threads x 30 frames
    "rss": 16.0,        # MB per busy period
    "file": 1.0,        # MB per file
    "stall": 5.0,       # ms
    "accuracy": 2.0,    # points
}

FULL = dict(
    cpu_units=2600, cpu_rounds=8,
    twisted_units=1500, twisted_rounds=8,
    pyspy_repeats=3,
    master_rounds=3, master_per_builder=2,
    tick_seconds=1.5, tick_grid=[(1, 30), (10, 10), (10, 30), (10, 100), (50, 30)],
    accuracy_seconds={100: 20.0, 1000: 8.0},
    busy_samples=180_000, busy_seconds=35.0, anchor_ticks=2500, anchor_seconds=40.0,
    perf_seconds=6.0,
    configs=OURS + ANCHOR,
    master_configs=["none", "ours:virtual:100", "ours:prof:100", "ours:real:100",
                    "ours:virtual:1000", "anchor:virtual:100", "anchor:prof:1000"],
    accuracy_configs=[f"{kind}:{mode}:{hz}" for hz in (100, 1000)
                      for kind in ("ours", "anchor") for mode in ("prof", "virtual")],
)
SMOKE = dict(
    cpu_units=100, cpu_rounds=1,
    twisted_units=40, twisted_rounds=1,
    pyspy_repeats=1,
    master_rounds=1, master_per_builder=1,
    tick_seconds=0.2, tick_grid=[(10, 30)],
    accuracy_seconds={100: 0.3, 1000: 0.3},
    busy_samples=2000, busy_seconds=2.0, anchor_ticks=30, anchor_seconds=3.0,
    perf_seconds=0.0,
    configs=["ours:virtual:100", "ours:virtual:1000", "anchor:virtual:100"],
    master_configs=["none", "ours:virtual:100"],
    accuracy_configs=["ours:prof:100", "ours:prof:1000", "anchor:prof:100"],
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def pct(ratio: float) -> float:
    return (ratio - 1.0) * 100.0


def fmt_ratio(values: list[float]) -> str:
    if not values:
        return "n/a"
    low, high = spread(values)
    return f"{median(values):.3f} [{low:.3f}–{high:.3f}]"


# ---- overhead ------------------------------------------------------------------


def overhead(workload: str, configs: list[str], units: int, rounds: int) -> list[dict[str, Any]]:
    results = []
    for config in configs:
        log(f"overhead {workload} {config}")
        r = run_child(
            "child_overhead.py",
            {"workload": workload, "config": config, "units": units, "rounds": rounds},
            timeout=300,
        )
        results.append(r)
    return results


def pyspy_overhead(workload: str, units: int, repeats: int, pyspy_ok: bool) -> Optional[dict[str, Any]]:
    """py-spy cannot be switched on and off inside a process: compare whole
    processes, alternating with and without it."""
    if not pyspy_ok:
        return None
    plain: list[float] = []
    spied: list[float] = []
    plain_wall: list[float] = []
    spied_wall: list[float] = []
    pyspy_cpu: list[float] = []
    for i in range(repeats):
        for with_spy in ((False, True) if i % 2 == 0 else (True, False)):
            log(f"overhead {workload} py-spy={with_spy}")
            out = tempfile.NamedTemporaryFile(suffix=".txt", delete=False).name
            wrapper = [PYSPY, "record", "-r", "100", "--nonblocking", "-f", "raw", "-o", out, "--"] if with_spy else None
            r = run_child(
                "child_overhead.py",
                {"workload": workload, "config": "none", "units": units, "rounds": 2},
                timeout=300, wrapper=wrapper,
            )
            os.unlink(out)
            per_window = median(r["off_cpu_s"] + r["on_cpu_s"])
            wall = r["on_wall_s"]
            (spied if with_spy else plain).append(per_window)
            if with_spy:
                spied_wall.append(wall)
                pyspy_cpu.append(r["children_cpu_s"])
            else:
                plain_wall.append(wall)
    return {
        "cpu_ratio": median(spied) / median(plain),
        "throughput_ratio": median(plain_wall) / median(spied_wall),
        "pyspy_and_child_cpu_s": median(pyspy_cpu),
    }


def overhead_rows(results: list[dict[str, Any]]) -> tuple[list[str], dict[str, dict[str, float]]]:
    rows = []
    summary: dict[str, dict[str, float]] = {}
    for r in results:
        ticks_per_s = r["ticks"] / r["on_wall_s"] if r["on_wall_s"] else 0.0
        on_cpu = sum(r["on_cpu_s"])
        sampler_share = (
            f"{100 * r['sampler_thread_ns'] / 1e9 / on_cpu:.2f} %"
            if r.get("sampler_thread_ns") is not None and on_cpu else "–"
        )
        walk = f"{r['sampling_ns'] / max(1, r['ticks']) / 1000:.1f}" if r["ticks"] else "–"
        cpu_median = median(r["cpu_ratios"])
        ordered = sorted(r["cpu_ratios"])
        q1 = ordered[len(ordered) // 4] if ordered else float("nan")
        q3 = ordered[(3 * len(ordered)) // 4] if ordered else float("nan")
        summary[r["config"]] = {
            "noise_pct": (q3 - q1) * 100 / 2,
            "cpu_pct": pct(cpu_median),
            "throughput": median(r["throughput_ratios"]),
            "sampler_pct": (100 * r["sampler_thread_ns"] / 1e9 / on_cpu)
            if r.get("sampler_thread_ns") is not None and on_cpu else float("nan"),
        }
        rows.append(
            f"| {config_label(r['config'])} | {fmt_ratio(r['cpu_ratios'])} | {pct(cpu_median):+.1f} % "
            f"| {fmt_ratio(r['throughput_ratios'])} | {ticks_per_s:.0f} | {walk} | {sampler_share} |"
        )
    return rows, summary


OVERHEAD_HEADER = (
    "| configuration | CPU-time ratio, median [min–max] | CPU overhead | throughput ratio | "
    "ticks/s achieved | µs per tick in the walk | our sampler thread's CPU share |\n"
    "|---|---|---|---|---|---|---|"
)


# ---- tick cost -------------------------------------------------------------------


def tick_cost(grid: list[tuple[int, int]], seconds: float) -> list[dict[str, Any]]:
    results = []
    for threads, depth in grid:
        configs = ["ours:real:1000", "anchor:real:1000"]
        if (threads, depth) == (10, 30):
            configs += ["ours:real:100", "anchor:real:100"]
        for config in configs:
            log(f"tick cost {config} {threads}x{depth}")
            results.append(run_child(
                "child_tickcost.py",
                {"config": config, "threads": threads, "depth": depth, "seconds": seconds},
            ))
    return results


# ---- accuracy ----------------------------------------------------------------------


def accuracy(configs: list[str], seconds: dict[int, float], pyspy_ok: bool) -> list[dict[str, Any]]:
    """Two children at a time: CPU-time timers and the expected split (thread
    CPU time) do not depend on how busy the machine is, and the runs are long
    enough (a few thousand samples) to get under the 2-point target's noise."""
    from concurrent.futures import ThreadPoolExecutor

    def one(config: str) -> dict[str, Any]:
        hz = int(config.rsplit(":", 1)[1])
        log(f"accuracy {config}")
        return run_child("child_accuracy.py", {"config": config, "seconds": seconds[hz]})

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one, configs))
    if pyspy_ok:
        log("accuracy py-spy 100 Hz")
        out = tempfile.NamedTemporaryFile(suffix=".txt", delete=False).name
        r = run_child(
            "child_accuracy.py", {"config": "none", "seconds": seconds[100]},
            wrapper=[PYSPY, "record", "-r", "100", "--nonblocking", "-f", "raw", "-o", out, "--"],
        )
        counts: dict[str, int] = {}
        with open(out) as f:
            for line in f:
                stack, _, count = line.strip().rpartition(" ")
                leaf = stack.rsplit(";", 1)[-1].split(" (", 1)[0]
                counts[leaf] = counts.get(leaf, 0) + int(count)
        os.unlink(out)
        names = ("work_a", "work_b", "work_c")
        total = sum(counts.get(n, 0) for n in names) or 1
        r["measured"] = {n: 100.0 * counts.get(n, 0) / total for n in names}
        r["samples"] = total
        r["config"] = "pyspy::100"
        results.append(r)
    for r in results:
        r["error_points"] = max(abs(r["measured"][n] - r["expected"][n]) for n in r["expected"])
    return results


# ---- busy period: memory, file, stall ---------------------------------------------------------


def busy(params: dict[str, Any]) -> list[dict[str, Any]]:
    outdir = scratch_dir()
    results = []
    log("busy period ours (real mode, fast)")
    results.append(run_child("child_busy.py", {
        "config": "ours:real:10000", "samples": params["busy_samples"], "ticks": 10**9,
        "scale_to": params["busy_samples"], "workers": 3, "seconds_max": params["busy_seconds"],
        "outdir": outdir, "switch_interval": 0.00005,
    }, timeout=300))
    log("busy period 1.x-style anchor")
    results.append(run_child("child_busy.py", {
        "config": "anchor:real:1000", "samples": 10**12, "ticks": params["anchor_ticks"],
        "scale_to": params["busy_samples"], "workers": 3, "seconds_max": params["anchor_seconds"],
        "outdir": outdir, "switch_interval": 0.00005,
    }, timeout=300))
    return results


# ---- profile of our sampler ------------------------------------------------------------------


PROFILE_SCENARIOS = {
    "tick": (
        "real mode, 1000 Hz, 10 threads sleeping 30 frames deep (the tick-cost case)",
        "stop = start_sleepers(10, 30, 0.5)\n"
        "s = Session('ours:real:1000').start()\n"
        "print(os.getpid(), flush=True)\n"
        "time.sleep(SECONDS + 1.5)\n",
    ),
    "master100": (
        "virtual mode, 100 Hz, the main thread CPU-bound 30 frames deep next to 40 parked threads "
        "(the shape of a busy master)",
        "stop = start_parked(40, 20)\n"
        "s = Session('ours:virtual:100').start()\n"
        "print(os.getpid(), flush=True)\n"
        "end = time.monotonic() + SECONDS + 1.5\n"
        "def busy():\n"
        "    while time.monotonic() < end:\n"
        "        spin(20000)\n"
        "at_depth(30, busy)\n",
    ),
    "master1000": (
        "the same at 1000 Hz",
        "stop = start_parked(40, 20)\n"
        "s = Session('ours:virtual:1000').start()\n"
        "print(os.getpid(), flush=True)\n"
        "end = time.monotonic() + SECONDS + 1.5\n"
        "def busy():\n"
        "    while time.monotonic() < end:\n"
        "        spin(20000)\n"
        "at_depth(30, busy)\n",
    ),
}

PROFILE_SHARES: dict[str, tuple[float, int, int, dict[str, int], dict[str, int]]] = {}
# The walk time the sampler measures itself (Period.stats sampling_ns) over the
# scenario's process CPU time, in %: a floor for the profiler's cost that perf
# can miss (see the summary).
WALK_SHARES: dict[str, float] = {}

# A perf sample is the profiler's when its call chain passes through one of
# these: our sampler thread, the walk the main thread does for us when it is
# busy, our signal handler, or the kernel delivering a signal.
PROFILER_MARKERS = re.compile(
    r"^(sampler_main|sampler_main_tick|sample_all|ps_walk_all|on_tick|on_poke|ps_ticker_\w+"
    r"|get_signal|handle_signal|__restore_rt|restore_sigcontext|x64_setup_rt_frame"
    r"|\w*sys_rt_sigreturn|do_signal|arch_do_signal_or_restart)$"
)


def parse_perf_script(text: str) -> list[tuple[int, list[tuple[str, str]]]]:
    """Samples as (tid, call chain of (symbol, dso), leaf first)."""
    samples, chain, tid = [], [], 0
    for line in text.splitlines():
        if not line.strip():
            if chain:
                samples.append((tid, chain))
            chain = []
            continue
        head = re.match(r"^\s*(\d+)\s*$", line)
        if head:
            tid = int(head.group(1))
            continue
        if line[0] in " \t":
            m = re.match(r"\s+[0-9a-f]+\s+(.+?)\s+\((.*)\)\s*$", line)
            if m:
                symbol = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
                chain.append((symbol, os.path.basename(m.group(2))))
    if chain:
        samples.append((tid, chain))
    return samples


def sampler_profile(scenario: str, seconds: float, perf_ok: bool) -> Optional[str]:
    """perf record of the whole process (every thread) while ours samples it;
    the samples whose call chain passes through the profiler are its cost."""
    if not perf_ok or seconds <= 0:
        return None
    data = os.path.join(scratch_dir(), "perf.data")
    body = PROFILE_SCENARIOS[scenario][1].replace("SECONDS", repr(seconds))
    script = (
        "import os, sys, time\n"
        f"sys.path.insert(0, {HERE!r})\n"
        "from common import Session, start_sleepers, start_parked, at_depth, spin\n"
        "stop = None\n"
        + body.replace(".start()\n", ".start()\nc0 = time.process_time()\n", 1) +
        "cpu = time.process_time() - c0\n"
        "r = s.stop(); stop()\n"
        "import json\n"
        "print(json.dumps({'sampling_ns': r.get('sampling_ns', 0), 'cpu_ns': int(cpu * 1e9)}), flush=True)\n"
    )
    proc = subprocess.Popen([PYTHON, "-c", script], stdout=subprocess.PIPE, text=True)
    pid = proc.stdout.readline().strip()
    time.sleep(0.5)
    subprocess.run(
        ["perf", "record", "-q", "-F", "2000", "--call-graph", "dwarf,8192", "-p", pid, "-o", data,
         "--", "sleep", str(seconds)],
        capture_output=True,
    )
    tail = proc.stdout.read().strip().splitlines()
    proc.wait()
    try:
        own = json.loads(tail[-1])
        WALK_SHARES[scenario] = 100 * own["sampling_ns"] / max(own["cpu_ns"], 1)
    except (IndexError, ValueError, KeyError):
        pass
    text = subprocess.run(["perf", "script", "-i", data, "-F", "tid,ip,sym,dso"],
                          capture_output=True, text=True).stdout
    samples = parse_perf_script(text)
    if not samples:
        return None
    # Every sample of our sampler thread is ours (it does nothing else), even
    # where the unwinder loses the chain; on other threads the chain decides.
    sampler_tids = {tid for tid, chain in samples if any(sym == "sampler_main" for sym, _ in chain)}
    ours = [c for tid, c in samples
            if tid in sampler_tids or any(PROFILER_MARKERS.match(sym) for sym, _ in c)]
    samples = [c for _, c in samples]
    leaf: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    for chain in ours:
        sym, dso = chain[0]
        leaf[f"{sym} ({dso})"] = leaf.get(f"{sym} ({dso})", 0) + 1
        seen = set()
        for sym, dso in chain:
            if dso.startswith("_core") and sym not in seen:
                seen.add(sym)
                inclusive[sym] = inclusive.get(sym, 0) + 1
    total = len(samples)
    PROFILE_SHARES[scenario] = (100 * len(ours) / total, len(ours), total, inclusive, leaf)
    lines = [
        f"process samples: {total}; in the profiler: {len(ours)} = {100 * len(ours) / total:.2f} % "
        "of the process's CPU time"
        + (" (this process does nothing but get sampled)" if scenario == "tick" else ""),
        "",
        "self time, as % of the profiler's samples:",
    ]
    for name, n in sorted(leaf.items(), key=lambda kv: -kv[1])[:14]:
        lines.append(f"  {100 * n / len(ours):5.1f} %  {name}")
    lines += ["", "inclusive time of our C functions, as % of the profiler's samples:"]
    for name, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:12]:
        lines.append(f"  {100 * n / len(ours):5.1f} %  {name}")
    return "\n".join(lines)


SYMBOLS = [
    # (pattern in a perf symbol, what it is in our sampler)
    ("ps_walk_all", "the per-tick loop over thread states (walker.c ps_walk_all): tracking, CPU-delta idle test, bookkeeping"),
    ("intern_code", "code object → frame id lookup, once per frame walked (walker.c intern_code, open-addressing map)"),
    ("walk", "the frame walk itself (walker.c walk)"),
    ("PyFrame_GetBack", "CPython: PyFrame_GetBack, one call per frame; on 3.11 it materialises a PyFrameObject for every frame that has none yet"),
    ("_PyFrame_MakeAndSetFrameObject", "CPython: allocating frame objects for frames walked the first time (3.11 creates them lazily; a busy thread's fresh frames cost an allocation each)"),
    ("PyThreadState_GetFrame", "CPython: PyThreadState_GetFrame (materialises the top frame)"),
    ("PyFrame_GetCode", "CPython: PyFrame_GetCode (a new reference per frame)"),
    ("_Py_Dealloc", "CPython: frame objects released after the walk"),
    ("frame_dealloc", "CPython: frame objects released after the walk"),
    ("ps_stacks_insert", "folding a stack into the prefix tree (stacks.c ps_stacks_insert: one child lookup per frame)"),
    ("ps_period_add_sample", "appending the sample record (period.c)"),
    ("track", "finding the thread's tracking slot (walker.c track)"),
    ("prune_tracked", "dropping threads that ended (walker.c prune_tracked)"),
    ("take_gil", "CPython: taking the GIL after the wake-up"),
    ("drop_gil", "CPython: handing the GIL back"),
    ("PyEval_RestoreThread", "CPython: taking the GIL"),
    ("PyEval_SaveThread", "CPython: releasing the GIL"),
    ("futex", "kernel: futex waits and wake-ups (semaphore of the ticker, GIL condition variables)"),
    ("posix_cpu_clock_get", "kernel: reading a thread's CPU clock (the idle test in CPU modes, main_is_busy)"),
    ("cpu_clock_sample", "kernel: reading a thread's CPU clock"),
    ("thread_group_cputime", "kernel: reading the process CPU clock"),
    ("clock_gettime", "clock_gettime calls (monotonic time, per-thread CPU clocks)"),
    ("schedule", "kernel: context switches (the sampler sleeps between ticks)"),
    ("entry_SYSCALL", "kernel: system call entry/exit"),
    ("syscall_exit", "kernel: system call entry/exit"),
    ("do_syscall", "kernel: system call entry/exit"),
    ("tgkill", "kernel: signalling the main thread to walk itself (trip_main)"),
    ("send_signal", "kernel: signalling the main thread to walk itself (trip_main)"),
    ("complete_signal", "kernel: signal delivery"),
    ("malloc", "libc malloc/free"),
    ("free", "libc malloc/free"),
]


def analysis(data: dict[str, Any], ticks: list[dict[str, Any]]) -> str:
    """Where the time of a tick goes, from the tick-cost runs and the perf
    profiles of this run, and what in the C sampler it points at."""
    out = ["### What a tick costs, and where", ""]
    t = {(r["threads"], r["depth"], r["config"]): r for r in ticks}
    for hz in (1000, 100):
        r = t.get((10, 30, f"ours:real:{hz}"))
        if r and "sampler_thread_us" in r:
            rest = r["sampler_thread_us"] - r["tick_us"]
            out.append(
                f"- 10 threads × 30 frames at {hz} Hz (real mode, steady state): our sampler thread uses "
                f"{r['sampler_thread_us']:.1f} µs of CPU per tick; {r['tick_us']:.1f} µs of it is the walk "
                f"with the GIL held ({r['tick_us'] / 11 / 31 * 1000:.0f} ns per frame over 11 threads × 31 "
                f"frames) and {rest:.1f} µs is outside the walk: waking up, taking and dropping the GIL, "
                "reading the main thread's CPU clock, the load series once a second."
            )
    def share(scenario: str, function: str) -> str:
        entry = PROFILE_SHARES.get(scenario)
        if not entry or not entry[1]:
            return "?"
        return f"{100 * entry[3].get(function, 0) / entry[1]:.0f} %"

    def kernel_share(scenario: str, names: tuple[str, ...]) -> str:
        entry = PROFILE_SHARES.get(scenario)
        if not entry or not entry[1]:
            return "?"
        n = sum(v for k, v in entry[4].items() if any(name in k for name in names))
        return f"{100 * n / entry[1]:.0f} %"

    for scenario, (title, _) in PROFILE_SCENARIOS.items():
        entry = PROFILE_SHARES.get(scenario)
        if entry and scenario != "tick":  # there the process does nothing but sample
            out.append(f"- perf, {title}: the profiler is {entry[0]:.2f} % of the process's CPU "
                       f"({entry[1]} of {entry[2]} samples).")
    if PROFILE_SHARES:
        out += [
            "",
            "### What in the C sampler costs what (for the fix)",
            "",
            "1. **Waking the sampler thread.** Context switches (`finish_task_switch`, self time "
            f"{kernel_share('tick', ('finish_task_switch',))} of the profiler in the tick case, "
            f"{kernel_share('master100', ('finish_task_switch',))} in the master shape at 100 Hz) and "
            f"`ps_ticker_wait` (inclusive {share('master100', 'ps_ticker_wait')} at 100 Hz) are the "
            "largest single cost: every tick is a semaphore wake-up of a sleeping thread, and in the CPU "
            "modes the anti-aliasing jitter sleeps a *second* time (`ps_ticker_wait(until)` in "
            "`sampler_main`), doubling the wake-ups. Drawing the jitter into the next timer interval "
            "(re-arm `setitimer` with a randomised `it_value` each tick) keeps the jitter with one wake-up.",
            "2. **Two signals per tick when the main thread is busy.** In the CPU modes the timer signal "
            "usually lands on the busy main thread (`on_tick`, inclusive "
            f"{share('master100', 'on_tick')}), wakes the sampler thread, which reads the main thread's CPU "
            "clock (`main_is_busy`) and signals it again (`trip_main` → `ps_ticker_poke`, "
            f"{share('master100', 'ps_ticker_poke')}), after which the main thread walks "
            f"(`sampler_main_tick`, {share('master100', 'sampler_main_tick')}). When `on_tick` runs on the "
            "main thread it can trip the walk itself (`PyErr_SetInterruptEx` is async-signal-safe) and skip "
            "the sampler thread, the clock read and the second signal (kernel signal-frame set-up and FPU "
            "save/restore show up as `copy_fpstate_to_sigframe`, `restore_fpregs_from_fpstate`).",
            "3. **Reading every thread's CPU clock on every tick.** In the CPU modes `ps_walk_all` (walker.c) calls "
            "`ps_thread_cpu_ns` for every thread before anything else (inclusive "
            f"{share('master1000', 'ps_thread_cpu_ns')} at 1000 Hz with 40 parked threads). A thread CPU "
            "clock is not in the vDSO: each read is a system call with a pid lookup "
            "(`posix_cpu_clock_get`, `pid_for_clock`, `__radix_tree_lookup`, `task_sched_runtime`). "
            "Checking the leaf frame against the idle list first (one `PyThreadState_GetFrame` and a "
            "code-map probe, no system call) would skip the clock for parked threads, which are most of a "
            "master's threads.",
            "4. **Folding into the tree.** `ps_stacks_child` (self "
            f"{kernel_share('tick', ('ps_stacks_child',))} in the tick case) looks up one child per frame "
            "from the root on every sample, even when a thread's stack has not changed. Remembering each "
            "thread's last (leaf code, depth, node) and reusing the node when the leaf frame object and "
            "depth are unchanged would skip both the fold and most of the walk for sleeping threads in "
            "real mode. The walk itself (`PyFrame_GetBack`, `PyFrame_GetCode`, `intern_code`) is "
            "~25–110 ns per frame: cheap warm (1000 Hz), cache-cold at 100 Hz.",
        ]
    return "\n".join(out)


# ---- BENCHMARKS.md -------------------------------------------------------------------------------


def verdict(value: float, target: float) -> str:
    if value != value:  # NaN
        return "n/a"
    return "met" if value <= target else "**missed**"


def render(data: dict[str, Any], smoke: bool) -> str:
    m = data["machine"]
    out: list[str] = []
    w = out.append
    w("# Benchmarks")
    w("")
    if smoke:
        w("**Smoke run (`scripts/bench --smoke`): tiny sizes, the numbers mean nothing.**")
        w("")
    w("Generated by `scripts/bench` (the full run takes about "
      f"{data['elapsed_s'] / 60:.0f} minutes). Every figure is a ratio or a distribution measured "
      "in this run against a baseline measured in the same run; absolute times are context only.")
    w("")
    w("| machine | |")
    w("|---|---|")
    for key, value in m.items():
        w(f"| {key} | {value} |")
    w("")
    w("How the numbers are taken:")
    w("")
    w("- **CPU-time ratio**: process CPU time (`time.process_time`, every thread, our sampler "
      "thread included) for a fixed amount of work with the profiler, over the same work without it. "
      "Workloads (a) and (b) run paired windows inside one process: each round runs the work once "
      "without and once with the profiler (started and stopped around the window), alternating the "
      "order, and the figure is the median of the per-pair ratios with [min–max] over the pairs. "
      "The first round is a warm-up and is dropped. Throughput ratio = wall time without / with.")
    w("- **Our sampler thread's CPU share**: CPU time of our native sampler thread "
      "(`/proc/self/task/<tid>/schedstat`, ns) over the process CPU time of the profiled windows. "
      "It is exact where the ratio is noisy, but it leaves out the walks the main thread does for "
      "us (when the main thread is busy, the sampler asks it to walk at its next bytecode instead of "
      "waiting for the GIL), signal delivery and GIL hand-offs. The perf profile at the end counts "
      "all of them.")
    w("- In the CPU modes (prof, virtual) the kernel fires interval timers on its scheduler tick, so "
      "1000 Hz gives about 250 ticks/s on this kernel (see \"ticks/s achieved\"); real mode paces "
      "itself and gets close to the asked rate.")
    w("- **µs per tick in the walk**: our `Period.stats['sampling_ns'] / ticks` (the walk of "
      "every thread with the GIL held); for the 1.x-style anchor, the signal handler timed inside itself.")
    w(f"- This machine has {m['Cores']} cores shared with other work: pair ratios scatter by several "
      "percent, so a CPU overhead below ~2 % is not resolved by the ratio; read it with the "
      "sampler-thread share next to it.")
    w("")

    s = data["summary"]
    w("## Summary against the targets")
    w("")
    w("| figure | target | ours | 1.x-style anchor | py-spy (outside) | ours vs target |")
    w("|---|---|---|---|---|---|")
    for row in s:
        w(row)
    w("")

    for key, title in (("cpu", "(a) CPU-bound pure Python, 30 frames deep"),
                       ("twisted", "(b) Twisted, shaped like a master: reactor + 10-thread pool "
                                   "doing sqlite and JSON, 30 parked threads")):
        section = data["overhead"][key]
        w(f"## Overhead {title}")
        w("")
        w(section["note"])
        w("")
        w(OVERHEAD_HEADER)
        for row in section["rows"]:
            w(row)
        if section.get("pyspy"):
            p = section["pyspy"]
            w(f"| py-spy 100 Hz (outside; whole processes alternated) | {p['cpu_ratio']:.3f} | "
              f"{pct(p['cpu_ratio']):+.1f} % | {p['throughput_ratio']:.3f} | – | – | – |")
        w("")

    mr = data["master"]
    w("## Overhead (c): a real Buildbot 4.3 master with a LocalWorker handling forced builds")
    w("")
    w(mr["note"])
    w("")
    w("| configuration | master CPU per build, ratio median [min–max] | CPU overhead | builds/s ratio | ticks | samples |")
    w("|---|---|---|---|---|---|")
    for row in mr["rows"]:
        w(row)
    w("")

    w("## Sampler cost per tick against threads × depth")
    w("")
    w("Real mode: every thread (plus the main thread) sleeps in a loop at the given depth and is "
      "walked on every tick, the worst case of a tick. Ours: the walk with the GIL held "
      "(`sampling_ns / ticks`) and our sampler thread's whole CPU time per tick (adds the wake-up, "
      "taking and dropping the GIL, the load series). 1.x-style: the walk alone and the whole handler "
      "(walk + psutil + append), timed inside the handler.")
    w("")
    w("| threads × depth | rate | ours: walk µs/tick | ours: sampler thread CPU µs/tick | 1.x-style: walk µs/tick | 1.x-style: handler µs/tick |")
    w("|---|---|---|---|---|---|")
    for row in data["ticks"]:
        w(row)
    w("")

    b = data["busy"]
    w("## Memory, file and reactor stall over a busy 30-minute period")
    w("")
    w(b["note"])
    w("")
    w("| | ours | 1.x-style anchor |")
    w("|---|---|---|")
    for row in b["rows"]:
        w(row)
    w("")

    w("## Accuracy on a known CPU split (about 60/30/10)")
    w("")
    w("Three functions with the same loop body, called in shuffled order with random sizes; the "
      "expected share is each function's thread CPU time measured around every call. Error = the "
      "largest |measured − expected| of the three, in percentage points. The statistical floor of a "
      "share p from n samples is about 100·√(p(1−p)/n) points (shown for the 60 % function).")
    w("")
    w("| configuration | samples | work_a (exp / got) | work_b | work_c | error (points) | ±1σ floor | ours by sample count instead of CPU weight: error |")
    w("|---|---|---|---|---|---|---|---|")
    for row in data["accuracy"]:
        w(row)
    w("")

    w("## Our sampler, profiled")
    w("")
    w(data["profile_note"])
    w("")
    for title, text in data.get("profiles", []):
        w(f"**{title}**")
        w("")
        w("```")
        w(text)
        w("```")
        w("")
    if data.get("analysis"):
        w(data["analysis"])
        w("")
    if data.get("load_scaling"):
        w(data["load_scaling"])
    w("## Tools")
    w("")
    for line in data["tools"]:
        w(f"- {line}")
    w("")
    return "\n".join(out)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run in seconds (numbers mean nothing)")
    parser.add_argument("--output", default=None, help="where to write the report (default: BENCHMARKS.md, "
                        "or a temporary file with --smoke)")
    parser.add_argument("--json", default=None, help="also dump the raw results here")
    args = parser.parse_args(argv)
    P = SMOKE if args.smoke else FULL
    output = args.output or (
        os.path.join(tempfile.mkdtemp(prefix="bbprof-bench-"), "BENCHMARKS.md") if args.smoke
        else os.path.join(ROOT, "BENCHMARKS.md")
    )
    started = time.monotonic()
    data: dict[str, Any] = {"machine": machine_info()}

    pyspy_ok, pyspy_err = tool_available(PYSPY, "--version")
    attach_ok, attach_err = pyspy_attach_probe() if pyspy_ok else (False, pyspy_err)
    perf_ok, perf_err = tool_available("perf", "record", "-q", "-o", "/dev/null", "--", "true")
    instr_ok = perf_instructions_supported()
    tools = []
    tools.append(f"py-spy {'(' + subprocess.run([PYSPY, '--version'], capture_output=True, text=True).stdout.strip() + ')' if pyspy_ok else 'unavailable: ' + pyspy_err}: "
                 + ("`py-spy dump -p PID` attached to a busy process in this run's probe, but attaching is "
                    "unreliable on this machine (other attempts failed with \"Failed to find python version "
                    "from target process\"). " if attach_ok else
                    f"attaching to a running process fails here (`py-spy dump -p PID`: \"{attach_err}\"). ")
                 + "The suite therefore runs py-spy as the launcher (`py-spy record --nonblocking -r 100 -f raw "
                   "-- python …`), which works, for (a), (b) and the accuracy runs; on the master (c) it is left "
                   "out because the master is switched between configurations inside one process.")
    tools.append("`perf stat -e instructions`: " + ("supported" if instr_ok else
                 "`<not supported>` in this VM (no hardware counters), so no instruction counts; "
                 "`perf record` with the software cpu-clock event works and profiles our sampler below."))
    data["tools"] = tools

    raw: dict[str, Any] = {}
    # (a) and (b)
    data["overhead"] = {}
    for key, units, rounds in (("cpu", P["cpu_units"], P["cpu_rounds"]),
                               ("twisted", P["twisted_units"], P["twisted_rounds"])):
        results = overhead(key, P["configs"], units, rounds)
        raw[f"overhead_{key}"] = results
        rows, summary = overhead_rows(results)
        pyspy = pyspy_overhead(key, units, P["pyspy_repeats"], pyspy_ok)
        off = [sum(r["off_cpu_s"]) / max(1, len(r["off_cpu_s"])) for r in results]
        what = ("units of pure-Python work (a 3000-iteration loop under 30 frames)" if key == "cpu"
                else "jobs (sqlite insert + 25-row select + JSON decode in the pool, JSON encode on the reactor)")
        data["overhead"][key] = {
            "rows": rows, "summary": summary, "pyspy": pyspy,
            "note": f"Each window: {units} {what}, about {1000 * median(off):.0f} ms of CPU without a "
                    f"profiler; {rounds} pairs per configuration.",
        }

    # (c)
    master_configs = P["master_configs"]
    log("master (c)")
    try:
        m = bench_master.run(master_configs, P["master_rounds"], P["master_per_builder"])
        raw["master"] = m
        rows = []
        base = m["batches"]["none"]
        for config in master_configs[1:]:
            batches = m["batches"][config]
            cpu_ratios = [(b[0] / b[2]) / (n[0] / n[2]) for b, n in zip(batches, base)]
            thr_ratios = [n[1] / b[1] for b, n in zip(batches, base)]
            st = m["stats"][config]
            rows.append(f"| {config_label(config)} | {fmt_ratio(cpu_ratios)} | {pct(median(cpu_ratios)):+.1f} % | "
                        f"{fmt_ratio(thr_ratios)} | {sum(x['ticks'] or 0 for x in st)} | {sum(x['samples'] or 0 for x in st)} |")
        per_build = median([b[0] / b[2] for b in base])
        data["master"] = {"rows": rows, "note": (
            f"One master process for the whole benchmark; {P['master_rounds']} rounds, each configuration "
            f"once per round in alternating order; each batch forces {P['master_per_builder']} builds on each "
            f"of 4 builders (3 shell steps each) through the REST API and waits for them. Ratios are against "
            f"the no-profiler batch of the same round. Without a profiler the master used "
            f"{1000 * per_build:.0f} ms of CPU per build. A master's batch is seconds of mostly waiting on "
            f"build steps; on this shared 2-core machine its CPU per build scatters by tens of percent from "
            f"batch to batch, so this table shows the real master running and building under every "
            f"configuration, not a resolved overhead: the perf-attributed share in the summary is the figure.")}
    except Exception as exc:  # report, do not hide
        data["master"] = {"rows": [], "note": f"The master benchmark failed: {exc}"}

    # tick cost
    ticks = tick_cost(P["tick_grid"], P["tick_seconds"])
    raw["ticks"] = ticks
    grid: dict[tuple[int, int, str], dict[str, dict[str, Any]]] = {}
    for r in ticks:
        kind, _, hz = r["config"].split(":")
        grid.setdefault((r["threads"], r["depth"], hz), {})[kind] = r
    tick_rows = []
    for (threads, depth, hz), pair in grid.items():
        o, a = pair.get("ours", {}), pair.get("anchor", {})
        tick_rows.append(
            f"| {threads} × {depth} | {hz} Hz | {o.get('tick_us', float('nan')):.1f} | "
            f"{o.get('sampler_thread_us', float('nan')):.1f} | {a.get('walk_us', float('nan')):.1f} | "
            f"{a.get('tick_us', float('nan')):.1f} |")
    data["ticks"] = tick_rows

    # accuracy
    acc = accuracy(P["accuracy_configs"], P["accuracy_seconds"], pyspy_ok)
    raw["accuracy"] = acc
    acc_rows = []
    for r in acc:
        e, g = r["expected"], r["measured"]
        n = max(1, r["samples"])
        floor = 100 * (0.6 * 0.4 / n) ** 0.5
        counts = r.get("measured_counts")
        count_err = (f"{max(abs(counts[k] - e[k]) for k in e):.1f} "
                     f"(b: {counts['work_b']:.1f})" if counts else "–")
        acc_rows.append(
            f"| {config_label(r['config'])} | {r['samples']} | {e['work_a']:.1f} / {g['work_a']:.1f} | "
            f"{e['work_b']:.1f} / {g['work_b']:.1f} | {e['work_c']:.1f} / {g['work_c']:.1f} | "
            f"{r['error_points']:.1f} | {floor:.1f} | {count_err} |")
    data["accuracy"] = acc_rows

    # busy period
    ours_busy, anchor_busy = busy(P)
    raw["busy"] = [ours_busy, anchor_busy]
    data["busy"] = busy_section(ours_busy, anchor_busy, P)

    # profile of our sampler
    data["profiles"] = []
    for scenario in PROFILE_SCENARIOS:
        log(f"profile of our sampler (perf): {scenario}")
        text = sampler_profile(scenario, P["perf_seconds"], perf_ok)
        if text:
            data["profiles"].append((PROFILE_SCENARIOS[scenario][0], text))
    data["profile_note"] = (
        "`perf record -F 2000 --call-graph dwarf -p <pid>` (software cpu-clock: this VM has no hardware "
        "counters) "
        "on the whole profiled process; a sample counts as the profiler's when its call chain passes "
        "through our sampler thread (`sampler_main`), the walk the busy main thread does for us "
        "(`sampler_main_tick`), our signal handler or the kernel's signal delivery. Its share of the "
        "process's samples is the profiler's CPU overhead measured directly, free of the run-to-run "
        "noise of the ratios above, with one blind spot: a busy main thread walks on the kernel tick "
        "that fired the timer, and where perf's cpu-clock samples are aligned with that tick (as on "
        "this VM) perf never lands inside the walk. The summary therefore also gives the walk time the "
        "sampler measures itself (`stats['sampling_ns']` over the process's CPU time) and counts the "
        "larger of the two; neither includes the kernel's signal delivery on those ticks."
        if data["profiles"] else
        f"Not profiled in this run ({'smoke run' if args.smoke else 'perf unavailable: ' + perf_err})."
    )

    log("load() against input size")
    data["load_scaling"] = load_scaling.section(args.smoke)

    data["analysis"] = analysis(data, ticks)
    data["summary"] = summary_rows(data, acc, ticks, ours_busy, anchor_busy)
    data["elapsed_s"] = time.monotonic() - started
    text = render(data, args.smoke)
    with open(output + ".tmp", "w") as f:
        f.write(text)
    os.replace(output + ".tmp", output)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1, default=str)
    log(f"wrote {output} in {data['elapsed_s']:.0f} s")
    return 0


def pyspy_attach_probe() -> tuple[bool, str]:
    # A busy target, like the workloads (attaching to an idle one may work
    # where a busy one fails).
    proc = subprocess.Popen([PYTHON, "-c", "import time\ndef spin():\n    while True: sum(range(1000))\nspin()"])
    try:
        time.sleep(1.0)
        r = subprocess.run([PYSPY, "dump", "-p", str(proc.pid)], capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            return (True, "")
        err = (r.stderr or r.stdout).strip().splitlines()
        return (False, err[0] if err else f"exit {r.returncode}")
    finally:
        proc.kill()
        proc.wait()


def perf_instructions_supported() -> bool:
    try:
        r = subprocess.run(["perf", "stat", "-x,", "-e", "instructions", "true"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and "not supported" not in r.stderr and "instructions" in r.stderr


def busy_section(o: dict[str, Any], a: dict[str, Any], P: dict[str, Any]) -> dict[str, Any]:
    MB = 1024 * 1024
    target = P["busy_samples"]
    o_scale = target / max(1, o["samples"])
    a_scale = target / max(1, a["ticks"])
    rows = [
        f"| ticks / samples taken | {o['ticks']} / {o['samples']} in {o['elapsed_s']:.0f} s | "
        f"{a['ticks']} / {a['samples']} in {a['elapsed_s']:.0f} s |",
        f"| scaled to the busy period | ×{o_scale:.2f} (linear, an upper bound: the stack tree saturates) | "
        f"×{a_scale:.0f} (linear) |",
        f"| Period.heap_bytes, measured | {o['heap_bytes'] / MB:.1f} MB | – |",
        f"| RSS growth, measured | {o['rss_growth_bytes'] / MB:.1f} MB | {a['rss_growth_bytes'] / MB:.1f} MB |",
        f"| **RSS per busy period** | **{o['rss_growth_bytes'] * o_scale / MB:.1f} MB** "
        f"(heap {o['heap_bytes'] * o_scale / MB:.1f} MB) | **{a['rss_growth_bytes'] * a_scale / MB:.0f} MB** |",
    ]
    if "file_bytes" in o:
        rows.append(f"| **file size** (busy period) | **{o['file_bytes'] * o_scale / MB:.2f} MB** "
                    f"(measured {o['file_bytes'] / MB:.2f} MB, gzip JSON) | "
                    f"**{a.get('file_bytes', 0) * a_scale / MB:.0f} MB** (measured {a.get('file_bytes', 0) / MB:.1f} MB, plain JSON) |")
        rows.append(f"| write time | {o['write_s'] * 1000:.0f} ms measured (×{o_scale:.2f} → {o['write_s'] * o_scale * 1000:.0f} ms), "
                    f"in a thread | {a.get('write_s', 0) * 1000:.0f} ms measured (→ {a.get('write_s', 0) * a_scale:.1f} s), "
                    "on the reactor thread |")
    else:
        rows.append(f"| file size, write time | not measured: `Period.write` failed: {o.get('write_error', '?')} | "
                    f"{a.get('file_bytes', 0) * a_scale / MB:.0f} MB (measured {a.get('file_bytes', 0) / MB:.1f} MB) |")
    rows.append(f"| rotate() of the 100 Hz profiler on the reactor thread (longest of 3) | {o.get('rotate_ms', float('nan')):.2f} ms | – |")
    if "free_ms" in o:
        rows.append(f"| freeing the busy period on the reactor thread | {o['free_ms']:.2f} ms | – |")
    rows.append(f"| longest LoopingCall lateness, baseline second | {o.get('baseline_max_gap_ms') or 0:.1f} ms | "
                f"{a.get('baseline_max_gap_ms') or 0:.1f} ms |")
    o_gaps = o.get("rotation_gaps_ms") or []
    rows.append(f"| longest LoopingCall lateness in each rotation window (3 writes, then the free) | "
                f"{', '.join(f'{g:.1f}' for g in o_gaps)} ms | {', '.join(f'{g:.0f}' for g in a.get('rotation_gaps_ms') or [])} ms |")
    rows.append(f"| **reactor stall during a rotation** (median of the windows; worst) | "
                f"**{median(o_gaps):.1f} ms** (worst {max(o_gaps, default=float('nan')):.1f} ms) | "
                f"**{a.get('rotation_max_gap_ms') or 0:.0f} ms** measured (→ {(a.get('rotation_max_gap_ms') or 0) * a_scale / 1000:.1f} s scaled) |")
    note = (
        f"A busy master at 100 Hz gives about {target:,} samples in 30 minutes (one thread on the CPU at a "
        "time; 1.x recorded every thread on each of its 180,000 ticks). Here 3 worker threads run random "
        "call paths through 1,500 generated functions (5,000 distinct paths, 20–40 frames, shared "
        "prefixes) next to 20 parked threads, and ours samples in real mode at 10 kHz with a 50 µs GIL "
        "switch interval (only to get the ticks in quickly) until it has the samples of a busy period or "
        f"{P['busy_seconds']:.0f} s have passed; figures short of the full period are scaled linearly. The "
        "1.x-style anchor cannot take ticks that fast (Python handler, every thread, psutil), so it takes "
        f"{P['anchor_ticks']:,} ticks and its per-tick figures are scaled to 180,000 ticks. Then a Twisted "
        "reactor runs a 5 ms LoopingCall while a 100 Hz virtual-mode profiler runs, as in production: "
        "one baseline second, then three times rotate() on the reactor thread and the busy period "
        "written with Period.write in a thread (deferToThread), then the busy period freed on the "
        "reactor thread; lateness is measured in each window. The anchor does 1.x's synchronous JSON "
        "dump on the reactor thread instead."
    )
    return {"rows": rows, "note": note}


def summary_rows(data, acc, ticks, o, a) -> list[str]:
    rows = []
    cpu = data["overhead"]["cpu"]["summary"]
    tw = data["overhead"]["twisted"]["summary"]
    pys = data["overhead"]["cpu"].get("pyspy")
    pys_txt = f"{pct(pys['cpu_ratio']):+.1f} % in-process" if pys else "n/a"

    def cell(summary, config):
        s = summary.get(config)
        if not s:
            return "n/a"
        return f"{s['cpu_pct']:+.1f} % (sampler thread {s['sampler_pct']:.2f} %)" if s["sampler_pct"] == s["sampler_pct"] else f"{s['cpu_pct']:+.1f} %"

    for hz, key in ((100, "cpu100"), (1000, "cpu1000")):
        o_cfg, a_cfg = f"ours:virtual:{hz}", f"anchor:virtual:{hz}"
        mine = [c for c in cpu if c.startswith("ours") and c.endswith(f":{hz}")]
        worst_ours = max((cpu[c]["cpu_pct"] for c in mine), default=float("nan"))
        worst_sampler = max((cpu[c]["sampler_pct"] for c in mine), default=float("nan"))
        noise = max((cpu[c]["noise_pct"] for c in mine), default=float("nan"))
        rows.append(f"| CPU-time ratio at {hz} Hz, (a) CPU-bound, virtual mode | ≤ {TARGETS[key]:g} % | {cell(cpu, o_cfg)} | "
                    f"{cell(cpu, a_cfg)} | {pys_txt if hz == 100 else '–'} | ratio not resolved (pair noise ±{noise:.1f} %; "
                    f"worst mode {worst_ours:+.1f} %); sampler thread alone: {verdict(worst_sampler, TARGETS[key])} "
                    f"(worst mode {worst_sampler:.2f} %) |")
        tw_noise = tw.get(o_cfg, {}).get("noise_pct", float("nan"))
        rows.append(f"| CPU-time ratio at {hz} Hz, (b) Twisted, virtual mode | ≤ {TARGETS[key]:g} % | {cell(tw, o_cfg)} | "
                    f"{cell(tw, a_cfg)} | – | ratio not resolved (pair noise ±{tw_noise:.1f} %) |")
    for scenario, hz, key in (("master100", 100, "cpu100"), ("master1000", 1000, "cpu1000")):
        entry = PROFILE_SHARES.get(scenario)
        if entry:
            walk = WALK_SHARES.get(scenario)
            # The walk of a busy main thread starts on the kernel tick that
            # fired the timer; where perf's cpu-clock samples are tick-aligned
            # too, perf cannot land inside it. The sampler's own measure of
            # the walk is then the floor to read with perf's share.
            shown = max(entry[0], walk) if walk is not None else entry[0]
            walk_txt = f"; the sampler's own walk time {walk:.2f} %" if walk is not None else ""
            rows.insert(0 if hz == 100 else 1, f"| **CPU overhead at {hz} Hz** (busy main thread + 40 parked threads, "
                        f"virtual: perf-attributed share{walk_txt}, the larger counts) | ≤ {TARGETS[key]:g} % | "
                        f"{shown:.2f} % (perf {entry[0]:.2f} %: {entry[1]} of {entry[2]} samples) | – | – | "
                        f"{verdict(shown, TARGETS[key])} |")
    t = {(r["threads"], r["depth"], r["config"]): r for r in ticks}
    for hz in (1000, 100):
        ours = t.get((10, 30, f"ours:real:{hz}"))
        anc = t.get((10, 30, f"anchor:real:{hz}"))
        if ours:
            rows.append(f"| tick cost, 10 threads × 30 frames, {hz} Hz | ≤ 20 µs | walk {ours['tick_us']:.1f} µs; "
                        f"sampler thread {ours.get('sampler_thread_us', float('nan')):.1f} µs | "
                        f"{anc['tick_us'] if anc else float('nan'):.0f} µs (walk {anc['walk_us'] if anc else float('nan'):.0f} µs) | – | walk: {verdict(ours['tick_us'], 20)}; "
                        f"whole tick: {verdict(ours.get('sampler_thread_us', float('nan')), 20)} |")
    MB = 1024 * 1024
    target = data["busy"]
    o_scale = 180_000 / max(1, o["samples"]) if o["samples"] else float("nan")
    a_scale = 180_000 / max(1, a["ticks"])
    o_rss = o["rss_growth_bytes"] * o_scale / MB
    rows.append(f"| RSS per busy 30-minute period | ≤ 16 MB | {o_rss:.1f} MB | {a['rss_growth_bytes'] * a_scale / MB:.0f} MB | – | {verdict(o_rss, 16)} |")
    if "file_bytes" in o:
        f_mb = o["file_bytes"] * o_scale / MB
        rows.append(f"| file per busy period | ≤ 1 MB | {f_mb:.2f} MB | {a['file_bytes'] * a_scale / MB:.0f} MB | – | {verdict(f_mb, 1)} |")
    else:
        rows.append(f"| file per busy period | ≤ 1 MB | not measured (Period.write: {o.get('write_error')}) | "
                    f"{a.get('file_bytes', 0) * a_scale / MB:.0f} MB | – | n/a |")
    stall = median(o.get("rotation_gaps_ms") or [float("nan")])
    rows.append(f"| reactor stall during a rotation (median of 4 windows; worst {max(o.get('rotation_gaps_ms') or [float('nan')]):.1f} ms, "
                f"baseline {o.get('baseline_max_gap_ms') or float('nan'):.1f} ms) | ≤ 5 ms | {stall:.1f} ms | "
                f"{(a.get('rotation_max_gap_ms') or 0) * a_scale / 1000:.1f} s (scaled) | – | {verdict(stall, 5)} |")
    by = {r["config"]: r for r in acc}
    for hz in (100, 1000):
        ours_err = max((by[f"ours:{m}:{hz}"]["error_points"] for m in ("prof", "virtual")
                        if f"ours:{m}:{hz}" in by), default=float("nan"))
        anc_err = max((by[f"anchor:{m}:{hz}"]["error_points"] for m in ("prof", "virtual")
                       if f"anchor:{m}:{hz}" in by), default=float("nan"))
        pys_err = by.get("pyspy::100", {}).get("error_points") if hz == 100 else None
        rows.append(f"| accuracy on 60/30/10, {hz} Hz (worst of prof, virtual) | ≤ 2 points | {ours_err:.1f} | "
                    f"{anc_err:.1f} | {f'{pys_err:.1f}' if pys_err is not None else '–'} | {verdict(ours_err, 2)} |")
    return rows


if __name__ == "__main__":
    sys.exit(main())
