"""Run the benchmark suite and write BENCHMARKS.md.

    python benchmarks/run.py [--smoke] [--output PATH]

Every figure is a ratio or a distribution measured in this run against a
baseline measured in the same run (paired windows inside one process where
the configuration can be switched on and off, interleaved otherwise), with
repeats and medians. ``--smoke`` runs every benchmark tiny, in seconds, to
keep the suite working; its numbers mean nothing.

The measurements are taken here (one ``*_section`` function per table);
``sampler_profile.py`` profiles our sampler with perf, ``load_scaling.py``
measures load() against input size, and ``report.py`` turns the results,
passed as values, into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_master  # noqa: E402
import load_scaling  # noqa: E402
from common import (  # noqa: E402
    PYTHON, ROOT, config_label, log, machine_info, median, pct, run_child, scratch_dir, spread,
    tool_available,
)
from report import busy_section, render, summary_rows  # noqa: E402
from sampler_profile import PROFILE_SCENARIOS, SamplerProfile, analysis, sampler_profile  # noqa: E402

OURS = [f"ours:{mode}:{hz}" for hz in (100, 1000) for mode in ("prof", "virtual", "real")]
ANCHOR = [f"anchor:{mode}:{hz}" for hz in (100, 1000) for mode in ("prof", "virtual", "real")]
PYSPY = os.path.join(os.path.dirname(PYTHON), "py-spy")

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



# ---- tick cost -------------------------------------------------------------------


def tick_cost(grid: list[tuple[int, int]], seconds: float) -> list[dict[str, Any]]:
    results = []
    for threads, depth in grid:
        configs = ["ours:real:1000", "anchor:real:1000"]
        if (threads, depth) == (10, 30):
            configs += ["ours:real:100", "anchor:real:100"]
        for config in configs:
            # Ours three times: threads that wake every 0.5 s (most ticks
            # find them where the last one did), then threads that wake
            # twice a tick (walked on every tick), with the line of every
            # frame (the default) and without.
            runs = [{"lines": True}]
            if config.startswith("ours:"):
                hz = int(config.rsplit(":", 1)[1])
                runs += [{"lines": lines, "wake_s": 0.5 / hz, "moving": True} for lines in (True, False)]
            for run in runs:
                log(f"tick cost {config} {threads}x{depth}{'' if run['lines'] else ' without lines'}"
                    f"{' moving' if run.get('moving') else ''}")
                result = run_child(
                    "child_tickcost.py",
                    {"config": config, "threads": threads, "depth": depth, "seconds": seconds,
                     "lines": run["lines"], **({"wake_s": run["wake_s"]} if "wake_s" in run else {})},
                )
                result["moving"] = run.get("moving", False)
                results.append(result)
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
    log("busy period ours without lines (real mode, fast)")
    results.append(run_child("child_busy.py", {
        "config": "ours:real:10000", "samples": params["busy_samples"], "ticks": 10**9,
        "scale_to": params["busy_samples"], "workers": 3, "seconds_max": params["busy_seconds"],
        "outdir": outdir, "switch_interval": 0.00005, "lines": False,
    }, timeout=300))
    log("busy period 1.x-style anchor")
    results.append(run_child("child_busy.py", {
        "config": "anchor:real:1000", "samples": 10**12, "ticks": params["anchor_ticks"],
        "scale_to": params["busy_samples"], "workers": 3, "seconds_max": params["anchor_seconds"],
        "outdir": outdir, "switch_interval": 0.00005,
    }, timeout=300))
    return results


def tools_section(pyspy_ok: bool, pyspy_err: str) -> list[str]:
    """What the report says about py-spy and perf on this machine."""
    attach_ok, attach_err = pyspy_attach_probe() if pyspy_ok else (False, pyspy_err)
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
    return tools


def overhead_section(P: dict[str, Any], pyspy_ok: bool, raw: dict[str, Any]) -> dict[str, Any]:
    """Overhead (a) and (b): paired windows in one process, plus py-spy from outside."""
    section: dict[str, Any] = {}
    for key, units, rounds in (("cpu", P["cpu_units"], P["cpu_rounds"]),
                               ("twisted", P["twisted_units"], P["twisted_rounds"])):
        results = overhead(key, P["configs"], units, rounds)
        raw[f"overhead_{key}"] = results
        rows, summary = overhead_rows(results)
        pyspy = pyspy_overhead(key, units, P["pyspy_repeats"], pyspy_ok)
        off = [sum(r["off_cpu_s"]) / max(1, len(r["off_cpu_s"])) for r in results]
        what = ("units of pure-Python work (a 3000-iteration loop under 30 frames)" if key == "cpu"
                else "jobs (sqlite insert + 25-row select + JSON decode in the pool, JSON encode on the reactor)")
        section[key] = {
            "rows": rows, "summary": summary, "pyspy": pyspy,
            "note": f"Each window: {units} {what}, about {1000 * median(off):.0f} ms of CPU without a "
                    f"profiler; {rounds} pairs per configuration.",
        }
    return section


def master_section(P: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """Overhead (c): a real Buildbot master building under every configuration."""
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
        return {"rows": rows, "note": (
            f"One master process for the whole benchmark; {P['master_rounds']} rounds, each configuration "
            f"once per round in alternating order; each batch forces {P['master_per_builder']} builds on each "
            f"of 4 builders (3 shell steps each) through the REST API and waits for them. Ratios are against "
            f"the no-profiler batch of the same round. Without a profiler the master used "
            f"{1000 * per_build:.0f} ms of CPU per build. A master's batch is seconds of mostly waiting on "
            f"build steps; on this shared 2-core machine its CPU per build scatters by tens of percent from "
            f"batch to batch, so this table shows the real master running and building under every "
            f"configuration, not a resolved overhead: the perf-attributed share in the summary is the figure.")}
    except Exception as exc:  # report, do not hide
        return {"rows": [], "note": f"The master benchmark failed: {exc}"}


def tick_section(P: dict[str, Any], raw: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The tick-cost results and the rows of their table."""
    ticks = tick_cost(P["tick_grid"], P["tick_seconds"])
    raw["ticks"] = ticks
    grid: dict[tuple[int, int, str], dict[str, dict[str, Any]]] = {}
    for r in ticks:
        kind, _, hz = r["config"].split(":")
        kind += ("-moving" if r.get("moving") else "") + ("" if r.get("lines", True) else "-nolines")
        grid.setdefault((r["threads"], r["depth"], hz), {})[kind] = r
    tick_rows = []
    nan = float("nan")
    for (threads, depth, hz), pair in grid.items():
        o, a = pair.get("ours", {}), pair.get("anchor", {})
        m, n = pair.get("ours-moving", {}), pair.get("ours-moving-nolines", {})
        with_lines, without = m.get("tick_us", nan), n.get("tick_us", nan)
        tick_rows.append(
            f"| {threads} × {depth} | {hz} Hz | {o.get('tick_us', nan):.1f} | "
            f"{100 * o.get('still_share', nan):.0f} % | {with_lines:.1f} | {without:.1f} | "
            f"{100 * (with_lines / without - 1) if without else nan:+.0f} % | "
            f"{m.get('first_ticks_us', nan):.1f} / {n.get('first_ticks_us', nan):.1f} | "
            f"{o.get('sampler_thread_us', nan):.1f} / {m.get('sampler_thread_us', nan):.1f} | "
            f"{a.get('walk_us', nan):.1f} | "
            f"{a.get('tick_us', nan):.1f} |")
    return [r for r in ticks if r.get("lines", True)], tick_rows


def accuracy_section(P: dict[str, Any], pyspy_ok: bool, raw: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The accuracy results and the rows of their table."""
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
    return acc, acc_rows


def profile_section(P: dict[str, Any], perf_ok: bool, perf_err: str, smoke: bool) -> tuple[list[SamplerProfile], str]:
    """perf profiles of our sampler, and the note that says how they are taken."""
    profiles = []
    for scenario in PROFILE_SCENARIOS:
        log(f"profile of our sampler (perf): {scenario}")
        profile = sampler_profile(scenario, P["perf_seconds"], perf_ok)
        if profile:
            profiles.append(profile)
    note = (
        "`perf record -F 2000 --call-graph dwarf -p <pid>` (software cpu-clock: this VM has no hardware "
        "counters) "
        "on the whole profiled process; a sample counts as the profiler's when its call chain passes "
        "through our sampler thread (`sampler_main`), the walk the busy main thread does for us "
        "(`ps_signals_main_tick` and the walker under it), our signal handlers or the kernel's signal delivery. Its share of the "
        "process's samples is the profiler's CPU overhead measured directly, free of the run-to-run "
        "noise of the ratios above, with one blind spot: a busy main thread walks on the kernel tick "
        "that fired the timer, and where perf's cpu-clock samples are aligned with that tick (as on "
        "this VM) perf never lands inside the walk. The summary therefore also gives the walk time the "
        "sampler measures itself (`stats['sampling_ns']` over the process's CPU time) and counts the "
        "larger of the two; neither includes the kernel's signal delivery on those ticks."
        if profiles else
        f"Not profiled in this run ({'smoke run' if smoke else 'perf unavailable: ' + perf_err})."
    )
    return profiles, note


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
    perf_ok, perf_err = tool_available("perf", "record", "-q", "-o", "/dev/null", "--", "true")
    data["tools"] = tools_section(pyspy_ok, pyspy_err)

    raw: dict[str, Any] = {}
    data["overhead"] = overhead_section(P, pyspy_ok, raw)
    data["master"] = master_section(P, raw)
    ticks, data["ticks"] = tick_section(P, raw)
    acc, data["accuracy"] = accuracy_section(P, pyspy_ok, raw)
    ours_busy, ours_busy_nolines, anchor_busy = busy(P)
    raw["busy"] = [ours_busy, ours_busy_nolines, anchor_busy]
    data["busy"] = busy_section(ours_busy, anchor_busy, P, ours_busy_nolines)
    profiles, data["profile_note"] = profile_section(P, perf_ok, perf_err, args.smoke)
    data["profiles"] = [(PROFILE_SCENARIOS[p.scenario][0], p.text) for p in profiles]

    log("load() against input size")
    data["load_scaling"] = load_scaling.section(args.smoke)

    data["analysis"] = analysis(profiles, ticks)
    data["summary"] = summary_rows(data, acc, ticks, ours_busy, anchor_busy, profiles)
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


if __name__ == "__main__":
    sys.exit(main())
