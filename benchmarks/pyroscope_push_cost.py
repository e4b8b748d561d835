"""What pushing to Pyroscope every 15 s costs a real Buildbot master (not a
test: prints numbers).

The workload of service_master_cost.py (Buildbot from PyPI, a LocalWorker, a
shell build every second) with ProfilerService at 100 Hz in both kinds of
phase; phases alternate, by SIGHUP reconfig, between the service alone and
the service pushing to a real Pyroscope server every ``--interval`` seconds:

  * CPU per build and CPU share: the master process's user+system CPU time
    (/proc/<pid>/stat) per completed build and per wall second;
  * the pushes of each phase, from the log's final count at each reconfig.

    BBPROF_PYROSCOPE_URL=http://127.0.0.1:4040 \\
        .venv/bin/python benchmarks/pyroscope_push_cost.py [--phases 3] [--builds 45] [--interval 15]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
from e2e_master import RealMaster  # noqa: E402
from service_master_cost import completed_builds  # noqa: E402

PUSHED = re.compile(r"stopped pushing to Pyroscope: (\d+) profile\(s\) of (\d+) samples pushed, (\d+) push\(es\)")


def configure(master: RealMaster, url: str, interval: float, push: bool) -> None:
    option = f", pyroscope={{'url': {url!r}, 'app': 'bench-push', 'interval': {interval!r}}}" if push else ""
    master.configure(f"util.ProfilerService(frequency=100, gatherperiod=30, basepath='profiles/prof_', "
                     f"wantBuilds=100{option})", build_every=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", type=int, default=3, help="phases of each kind, alternating")
    parser.add_argument("--builds", type=int, default=45, help="builds per phase")
    parser.add_argument("--interval", type=float, default=15, help="seconds between pushes")
    parser.add_argument("--url", default=os.environ.get("BBPROF_PYROSCOPE_URL"),
                        help="the Pyroscope server (default: $BBPROF_PYROSCOPE_URL)")
    args = parser.parse_args()
    if not args.url:
        parser.error("no Pyroscope server: pass --url or set BBPROF_PYROSCOPE_URL")

    with tempfile.TemporaryDirectory(prefix="bbprof-push-") as tmp:
        master = RealMaster(Path(tmp) / "master")
        master.create()
        configure(master, args.url, args.interval, push=False)
        master.start()
        try:
            master.wait_for(lambda: completed_builds(master.basedir) >= 2, 120, "warm-up builds")
            per_build = {True: [], False: []}
            share = {True: [], False: []}
            for index in range(2 * args.phases + 1):
                push = index % 2 == 0
                if index == 2 * args.phases:  # the last phase's pusher summary comes with this reconfig
                    configure(master, args.url, args.interval, push=False)
                    assert master.reconfig().returncode == 0
                    break
                configure(master, args.url, args.interval, push)
                assert master.reconfig().returncode == 0
                first_builds, first_cpu, began = completed_builds(master.basedir), master.cpu_seconds(), time.time()
                master.wait_for(lambda: completed_builds(master.basedir) >= first_builds + args.builds, 900,
                                f"{args.builds} builds")
                cpu = master.cpu_seconds() - first_cpu
                builds = completed_builds(master.basedir) - first_builds
                wall = time.time() - began
                per_build[push].append(cpu / builds)
                share[push].append(cpu / wall)
                print(f"phase {index + 1}: push {'on ' if push else 'off'} {builds} builds in {wall:.0f} s, "
                      f"{cpu:.2f} s CPU, {1000 * cpu / builds:.1f} ms CPU/build, {100 * cpu / wall:.1f} % of a core",
                      flush=True)
            time.sleep(3)
            pushes = [tuple(map(int, m.groups())) for m in PUSHED.finditer(master.log())]
            profiles = sum(p[0] for p in pushes)
            samples = sum(p[1] for p in pushes)
            lost = sum(p[2] for p in pushes)
            on, off = statistics.mean(per_build[True]), statistics.mean(per_build[False])
            print(f"pushes: {profiles} profiles of {samples} samples pushed, {lost} lost, "
                  f"every {args.interval:g} s")
            print(f"CPU per build: pushing {1000 * on:.1f} ms, not pushing {1000 * off:.1f} ms, "
                  f"difference {1000 * (on - off):+.1f} ms ({100 * (on - off) / off:+.1f} %); spread of the phases "
                  f"without push {1000 * min(per_build[False]):.1f} to {1000 * max(per_build[False]):.1f} ms")
            print(f"CPU share of one core: pushing {100 * statistics.mean(share[True]):.1f} %, "
                  f"not pushing {100 * statistics.mean(share[False]):.1f} %")
        finally:
            master.stop()
            if master.alive:
                master.kill()


if __name__ == "__main__":
    main()
