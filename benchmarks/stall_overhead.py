"""What stall detection costs a real Buildbot master (not a test: prints numbers).

One master (Buildbot from PyPI, LocalWorker), ProfilerService at 100 Hz in
virtual mode, alternating phases with ``stallThreshold=0.25`` (on) and
``stallThreshold=None`` (off), switched by SIGHUP reconfig so that drift in
the machine's load hits both alike. Two workloads, one master each:

  * busy: the benchmark's master-shaped load, a shell build every second;
  * idle: no build at all (the reactor sleeps in its poll but for
    Buildbot's own timers).

Per phase, from /proc/<pid>/task/<tid>/: the sampler thread's CPU share
(it is named ``bbprof-sampler``; schedstat, ns), the master process's CPU share, and the
reactor (main) thread's voluntary context switches per second: its
wake-ups, which stall detection must not add to.

    .venv/bin/python benchmarks/stall_overhead.py [--phases 3] [--seconds 20] [--update BENCHMARKS.md]

With ``--update`` the section "Reactor stall detection: on vs off" of that
report is written (or replaced) from this run's measurements.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import update_section  # noqa: E402
from e2e_master import RealMaster  # noqa: E402

SAMPLER_NAME = "bbprof-sampler"


def task_cpu_s(pid: int, tid: int) -> float:
    """Time on CPU of one thread, in ns resolution (schedstat; /proc/.../stat
    counts 10 ms ticks, coarser than the sampler's whole share)."""
    return int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0]) / 1e9


def wakeups(pid: int, tid: int) -> int:
    for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise RuntimeError("no voluntary_ctxt_switches")


def sampler_tid(pid: int) -> int:
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == SAMPLER_NAME:
                return int(task.name)
        except OSError:
            continue
    raise RuntimeError("no sampler thread")


def configure(master: RealMaster, stalls_on: bool, build_every: float) -> None:
    threshold = 0.25 if stalls_on else None
    master.configure(f"util.ProfilerService(frequency=100, mode='virtual', gatherperiod=3600, "
                     f"basepath='profiles/prof_', stallThreshold={threshold!r})", build_every=build_every)


def phase(master: RealMaster, seconds: float) -> dict:
    pid = master.pid
    time.sleep(2)  # the restarted sampler settles
    sampler = sampler_tid(pid)
    began = time.monotonic()
    first = (task_cpu_s(pid, sampler), master.cpu_seconds(), wakeups(pid, pid))
    time.sleep(seconds)
    wall = time.monotonic() - began
    last = (task_cpu_s(pid, sampler), master.cpu_seconds(), wakeups(pid, pid))
    return {
        "sampler_pct": 100 * (last[0] - first[0]) / wall,
        "master_pct": 100 * (last[1] - first[1]) / wall,
        "reactor_wakeups_s": (last[2] - first[2]) / wall,
    }


def run(workload: str, build_every: float, phases: int, seconds: float) -> dict:
    results = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="bbprof-stalls-") as tmp:
        master = RealMaster(Path(tmp) / "master")
        master.create()
        configure(master, True, build_every)
        master.start()
        try:
            time.sleep(5)  # past the master's start
            for index in range(2 * phases):
                stalls_on = index % 2 == 0
                configure(master, stalls_on, build_every)
                assert master.reconfig().returncode == 0
                result = phase(master, seconds)
                results[stalls_on].append(result)
                print(f"{workload} phase {index + 1}: stalls {'on ' if stalls_on else 'off'} "
                      f"sampler {result['sampler_pct']:.4f} % of a core, master {result['master_pct']:.1f} %, "
                      f"reactor wake-ups {result['reactor_wakeups_s']:.1f}/s", flush=True)
        finally:
            master.stop()
            if master.alive:
                master.kill()
    summary = {}
    for stalls_on, items in results.items():
        summary[stalls_on] = {key: statistics.mean(item[key] for item in items) for key in items[0]}
    on, off = summary[True], summary[False]
    print(f"{workload}: sampler {on['sampler_pct']:.4f} % on vs {off['sampler_pct']:.4f} % off; "
          f"master {on['master_pct']:.1f} % vs {off['master_pct']:.1f} %; "
          f"reactor wake-ups {on['reactor_wakeups_s']:.1f}/s vs {off['reactor_wakeups_s']:.1f}/s", flush=True)
    return summary


TITLE = "## Reactor stall detection: on vs off"


def section(summaries: dict, phases: int, seconds: float) -> str:
    """The BENCHMARKS.md section, from the measured means (nothing else)."""
    lines = [
        TITLE,
        "",
        f"`benchmarks/stall_overhead.py --phases {phases} --seconds {seconds:g}`: one real master per workload "
        "(Buildbot from PyPI, LocalWorker), `ProfilerService(frequency=100, mode='virtual')` with "
        "`stallThreshold=0.25` (on) or `None` (off), alternated by reconfig, "
        f"{phases} phases of {seconds:g} s each way. Sampler thread: `/proc/<pid>/task/<tid>/schedstat` of the "
        "thread named `bbprof-sampler`; master: utime+stime of the process; reactor wake-ups: "
        "`voluntary_ctxt_switches` of the main thread per second. Means over the phases; the machine is shared, "
        "so the master's own figures move by several percent between phases of the same kind.",
        "",
        "| workload | stalls | sampler thread, % of a core | master CPU, % of a core | reactor wake-ups/s |",
        "|---|---|---|---|---|",
    ]
    for workload, summary in summaries.items():
        for stalls_on in (True, False):
            m = summary[stalls_on]
            lines.append(f"| {workload} | {'on' if stalls_on else 'off'} | {m['sampler_pct']:.4f} | "
                         f"{m['master_pct']:.2f} | {m['reactor_wakeups_s']:.1f} |")
    lines.append("")
    for workload, summary in summaries.items():
        on, off = summary[True], summary[False]
        lines.append(f"- {workload}: the sampler thread used {on['sampler_pct'] - off['sampler_pct']:+.4f} % of a core "
                     f"with detection on; the reactor woke {on['reactor_wakeups_s'] - off['reactor_wakeups_s']:+.1f} "
                     "times per second more (negative: fewer).")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", type=int, default=3, help="phases of each kind per workload, alternating")
    parser.add_argument("--seconds", type=float, default=20, help="seconds per phase")
    parser.add_argument("--workload", choices=("busy", "idle", "both"), default="both")
    parser.add_argument("--update", metavar="REPORT", help="put the section into this BENCHMARKS.md")
    args = parser.parse_args()
    summaries = {}
    if args.workload in ("busy", "both"):
        summaries["busy (a shell build every second)"] = run("busy", 1, args.phases, args.seconds)
    if args.workload in ("idle", "both"):
        summaries["idle (no build)"] = run("idle", 24 * 3600, args.phases, args.seconds)
    text = section(summaries, args.phases, args.seconds)
    print(text)
    if args.update:
        update_section(args.update, TITLE, text)


if __name__ == "__main__":
    main()
