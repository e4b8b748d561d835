"""Our sampler, profiled: perf records a process while ours samples it, and
the samples whose call chain passes through the profiler are its cost.
``sampler_profile()`` returns the measurement as a value; ``analysis()``
writes what the measurements of a run say, and nothing they do not."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from typing import Any, NamedTuple, Optional

from common import HERE, PYTHON, scratch_dir


def _master_script(hz: int, mode: str = "virtual") -> str:
    """The master-shaped scenario's child script at ``hz``."""
    return (
        "stop = start_parked(40, 20)\n"
        f"s = Session('ours:{mode}:{hz}').start()\n"
        "print(os.getpid(), flush=True)\n"
        "end = time.monotonic() + SECONDS + 1.5\n"
        "def busy():\n"
        "    while time.monotonic() < end:\n"
        "        spin(20000)\n"
        "at_depth(30, busy)\n"
    )


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
        _master_script(100),
    ),
    "master1000": ("the same at 1000 Hz", _master_script(1000)),
    "master-real100": ("real mode, 100 Hz, the same busy-master shape (the busy main thread walks "
                       "when tripped, from the sampler thread's wall-clock ticks)",
                       _master_script(100, "real")),
    "master-real1000": ("the same in real mode at 1000 Hz", _master_script(1000, "real")),
}


class SamplerProfile(NamedTuple):
    """One scenario's perf profile of the whole process."""
    scenario: str
    share_pct: float            # the profiler's samples over the process's, in %
    ours: int                   # samples in the profiler
    total: int                  # samples of the process
    inclusive: dict[str, int]   # our C functions, samples passing through each
    leaf: dict[str, int]        # "symbol (dso)" at the leaf of the profiler's samples
    walk_pct: Optional[float]   # the sampler's own walk time (Period.stats sampling_ns) over the
                                # scenario's CPU time, in %: a floor perf can miss (see the summary)
    text: str                   # the report's block for this scenario

# A perf sample is the profiler's when its call chain passes through one of
# these: our sampler thread, the walk the main thread does for us when it is
# busy (ps_signals_main_tick, the walker's functions), our signal handlers
# (on_tick, and on_trip under it), or the kernel delivering a signal.
PROFILER_MARKERS = re.compile(
    r"^(sampler_main|ps_signals_\w+|ps_walker_\w+|ps_threads_\w+|on_tick|on_trip|ps_ticker_\w+"
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


def sampler_profile(scenario: str, seconds: float, perf_ok: bool) -> Optional[SamplerProfile]:
    """perf record of the whole process (every thread) while ours samples it;
    the samples whose call chain passes through the profiler are its cost.
    None when perf is not usable or recorded nothing."""
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
    walk_pct = None
    try:
        own = json.loads(tail[-1])
        walk_pct = 100 * own["sampling_ns"] / max(own["cpu_ns"], 1)
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
    return SamplerProfile(scenario, 100 * len(ours) / total, len(ours), total, inclusive, leaf, walk_pct,
                          "\n".join(lines))


def analysis(profiles: list[SamplerProfile], ticks: list[dict[str, Any]]) -> str:
    """Where the time of a tick goes, from this run's tick-cost runs and perf
    profiles: measured figures only (the C functions that cost most are in
    the profiles above)."""
    out = ["### What a tick costs, and where", ""]
    t = {(r["threads"], r["depth"], r["config"], r.get("moving", False)): r for r in ticks}
    for hz in (1000, 100):
        for moving in (False, True):
            r = t.get((10, 30, f"ours:real:{hz}", moving))
            if not (r and "sampler_thread_us" in r):
                continue
            rest = r["sampler_thread_us"] - r["tick_us"]
            walk = (f"{r['tick_us']:.1f} µs of it is the walk with the GIL held "
                    f"({r['tick_us'] / 11 / 31 * 1000:.0f} ns per frame over 11 threads × 31 frames)"
                    if moving else
                    f"{r['tick_us']:.1f} µs of it is the walk with the GIL held, where "
                    f"{100 * r.get('still_share', float('nan')):.0f} % of the samples were taken without "
                    "walking (a CPU-clock read each)")
            out.append(
                f"- 10 {'threads waking twice a tick' if moving else 'parked threads'} × 30 frames at "
                f"{hz} Hz (real mode, steady state): our sampler thread uses "
                f"{r['sampler_thread_us']:.1f} µs of CPU per tick; {walk}, and {rest:.1f} µs is outside "
                "the walk: waking up, taking and dropping the GIL, reading the main thread's CPU clock, "
                "the load series once a second."
            )
    for p in profiles:
        if p.scenario == "tick" or not p.ours:  # there the process does nothing but sample
            continue
        title = PROFILE_SCENARIOS[p.scenario][0]
        out.append(f"- perf, {title}: the profiler is {p.share_pct:.2f} % of the process's CPU "
                   f"({p.ours} of {p.total} samples).")
        top = sorted(p.inclusive.items(), key=lambda kv: -kv[1])[:3]
        if top:
            out.append("  Its largest inclusive C functions: "
                       + ", ".join(f"`{name}` {100 * n / p.ours:.0f} %" for name, n in top) + ".")
    return "\n".join(out)
