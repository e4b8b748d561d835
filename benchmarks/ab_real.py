"""Real mode, before and after: the real-mode figures of the suite, taken
with two installs of buildbot-profiler in turn, round by round, on one
machine, so a change to real mode is judged against its own baseline
rather than against a BENCHMARKS.md written on another day.

    .venv/bin/python benchmarks/ab_real.py --before OTHER/bin/python \
        [--after .venv/bin/python] [--rounds 2] [--output BENCHMARKS.md] [--smoke]

``--before`` is an interpreter whose profiler_service is the other install
(for instance a venv where ``pip install`` put a checkout of an earlier
commit). Each round runs every measurement once with each install, the
order alternating. Writes the section "Real mode, before and after" into
``--output`` (in place of an earlier copy), and prints it. ``--smoke``
shortens every run so that the script can be tested (its numbers then mean
nothing).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any, Callable

import common
import sampler_profile
from common import HERE, log, median, pct, update_section

TITLE = "## Real mode, before and after"


def install_of(python: str) -> str:
    """Where `python` imports profiler_service from, and its version; exits
    with a message naming the interpreter when it has none."""
    try:
        proc = subprocess.run(
            [python, "-c", "import profiler_service as p, os; "
             "print(os.path.dirname(p.__file__), getattr(p, '__version__', '?'))"],
            capture_output=True, text=True, cwd="/",
        )
    except OSError as exc:
        sys.exit(f"ab_real: cannot run {python}: {exc}")
    if proc.returncode != 0:
        sys.exit(f"ab_real: {python} cannot import profiler_service: "
                 f"{(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return proc.stdout.strip()


def with_python(python: str, measure: Callable[[], Any]) -> Any:
    """Run `measure` with the children started by `python`."""
    saved = common.PYTHON, sampler_profile.PYTHON
    common.PYTHON = sampler_profile.PYTHON = python
    try:
        return measure()
    finally:
        common.PYTHON, sampler_profile.PYTHON = saved


def perf_share(scenario: str, seconds: float, perf_ok: bool) -> Callable[[], float]:
    def measure() -> float:
        profile = sampler_profile.sampler_profile(scenario, seconds, perf_ok)
        return float("nan") if profile is None else profile.share_pct
    return measure


def tick(hz: int, seconds: float) -> Callable[[], tuple[float, float]]:
    def measure() -> tuple[float, float]:
        r = common.run_child("child_tickcost.py", {"config": f"ours:real:{hz}", "threads": 10,
                                                   "depth": 30, "seconds": seconds})
        return r["tick_us"], r.get("sampler_thread_us", float("nan"))
    return measure


def overhead(workload: str, hz: int, units: int, rounds: int) -> Callable[[], tuple[float, float]]:
    def measure() -> tuple[float, float]:
        r = common.run_child("child_overhead.py", {"workload": workload, "config": f"ours:real:{hz}",
                                                   "units": units, "rounds": rounds})
        share = (100 * r["sampler_thread_ns"] / 1e9 / sum(r["on_cpu_s"])
                 if r.get("sampler_thread_ns") is not None else float("nan"))
        return pct(median(r["cpu_ratios"])), share
    return measure


def measures(smoke: bool) -> list[tuple[str, str, Callable[[], Any]]]:
    """(figure, unit, measurement), full size or shortened (smoke)."""
    perf_s, tick_s, pairs = (1.0, 0.5, 2) if smoke else (6.0, 3.0, 8)
    perf_ok = common.tool_available("perf", "record", "-q", "-o", "/dev/null", "--", "true")[0]
    cpu_units, twisted_units = (100, 50) if smoke else (2600, 1500)
    return [
        ("perf share of process CPU, busy-master shape, 100 Hz", "%", perf_share("master-real100", perf_s, perf_ok)),
        ("perf share of process CPU, busy-master shape, 1000 Hz", "%", perf_share("master-real1000", perf_s, perf_ok)),
        ("walk / sampler thread per tick, 10 parked threads x 30 frames, 100 Hz", "µs", tick(100, tick_s)),
        ("walk / sampler thread per tick, 10 parked threads x 30 frames, 1000 Hz", "µs", tick(1000, tick_s)),
        ("(a) CPU-bound: CPU-time ratio / sampler thread share, 100 Hz", "%",
         overhead("cpu", 100, cpu_units, pairs)),
        ("(a) CPU-bound: CPU-time ratio / sampler thread share, 1000 Hz", "%",
         overhead("cpu", 1000, cpu_units, pairs)),
        ("(b) Twisted: CPU-time ratio / sampler thread share, 100 Hz", "%",
         overhead("twisted", 100, twisted_units, pairs)),
        ("(b) Twisted: CPU-time ratio / sampler thread share, 1000 Hz", "%",
         overhead("twisted", 1000, twisted_units, pairs)),
    ]


def cell(values: list[Any], signed_first: bool) -> str:
    """Each round's value, in order; pairs as 'first / second'."""
    def one(v: Any) -> str:
        if isinstance(v, tuple):
            first = f"{v[0]:+.1f}" if signed_first else f"{v[0]:.1f}"
            return f"{first} / {v[1]:.2f}" if signed_first else f"{first} / {v[1]:.1f}"
        return f"{v:.2f}"
    return "; ".join(one(v) for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="interpreter with the other install")
    parser.add_argument("--after", default=sys.executable, help="interpreter with this install")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", default=os.path.join(HERE, "..", "BENCHMARKS.md"))
    parser.add_argument("--smoke", action="store_true", help="short runs: test the script, not the code")
    args = parser.parse_args()
    # The children run from here: from the repository's root, `python -c`
    # would import the source tree's package instead of the install under test.
    args.output = os.path.abspath(args.output)
    os.chdir(HERE)
    table = measures(args.smoke)
    sides = {"before": args.before, "after": args.after}
    installs = {side: install_of(python) for side, python in sides.items()}
    results: dict[str, dict[str, list[Any]]] = {side: {name: [] for name, _, _ in table} for side in sides}
    for round_ in range(args.rounds):
        order = ["before", "after"] if round_ % 2 == 0 else ["after", "before"]
        for name, _, measure in table:
            for side in order:
                log(f"round {round_ + 1} {side}: {name}")
                results[side][name].append(with_python(sides[side], measure))
    lines = [
        TITLE,
        "",
        f"`benchmarks/ab_real.py --rounds {args.rounds}`: each figure of real mode taken with two installs "
        "in turn, round by round (the order alternating), on this machine in one run. Each cell lists "
        "the rounds in order. Installs:",
        "",
        *[f"- {side}: `{installs[side]}`" for side in sides],
        "",
        "| figure | unit | before | after |",
        "|---|---|---|---|",
    ]
    for name, unit, _ in table:
        signed = name.startswith("(")
        lines.append(f"| {name} | {unit} | {cell(results['before'][name], signed)} "
                     f"| {cell(results['after'][name], signed)} |")
    lines += [
        "",
        "The CPU-time ratios of (a) and (b) carry several percent of pair noise on this machine (see "
        "the overhead tables); the perf shares and the sampler thread's share are the figures that "
        "resolve a change of this size.",
        "",
    ]
    text = "\n".join(lines)
    update_section(args.output, TITLE, text)
    print(text)


if __name__ == "__main__":
    main()
