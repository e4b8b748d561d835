"""What ProfilerService costs a real Buildbot master (not a test: prints numbers).

One master (Buildbot from PyPI, LocalWorker, a periodic shell build), one run,
alternating phases with and without ProfilerService (switched by SIGHUP
reconfig), so drift in the machine's load hits both alike:

  * CPU per build: the master process's user+system CPU time (from
    /proc/<pid>/stat) divided by the builds completed in the phase;
  * reactor stalls: a 1 ms LoopingCall in the master records how late it
    runs; the worst lateness in the seconds that hold a rotation is compared
    with the worst in the other seconds, and the rotation time the service
    logs (time spent in the rotate on the reactor) is collected.

    .venv/bin/python benchmarks/service_master_cost.py [--phases 4] [--builds 15]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from e2e_master import RealMaster  # noqa: E402

MONITOR = '''
class StallMonitor(service.BuildbotService):
    """Every 1 ms, note how late the reactor ran this call; keep the worst per
    wall-clock second in stalls.json."""

    name = "StallMonitor"

    def startService(self):
        self.worst = {}
        self.expected = None
        self.loop = task.LoopingCall(self.tick)
        self.loop.clock = self.master.reactor
        self.loop.start(0.001)
        self.dump = task.LoopingCall(self.save)
        self.dump.clock = self.master.reactor
        self.dump.start(1, now=False)
        return super().startService()

    def stopService(self):
        self.loop.stop()
        self.dump.stop()
        self.save()
        return super().stopService()

    def tick(self):
        now = time.monotonic()
        if self.expected is not None:
            late = now - self.expected
            second = int(time.time())
            if late > self.worst.get(second, 0.0):
                self.worst[second] = late
        self.expected = now + 0.001

    def save(self):
        with open("stalls.json.tmp", "w") as f:
            json.dump(self.worst, f)
        os.replace("stalls.json.tmp", "stalls.json")
'''


def completed_builds(basedir: Path) -> int:
    with sqlite3.connect(f"file:{basedir / 'state.sqlite'}?mode=ro", uri=True, timeout=10) as db:
        return db.execute("select count(*) from builds where complete_at is not null").fetchone()[0]


def configure(master: RealMaster, with_service: bool, gather_s: float, monitor: bool) -> None:
    services = []
    if with_service:
        services.append(f"util.ProfilerService(frequency=100, gatherperiod={gather_s}, basepath='profiles/prof_', wantBuilds=100)")
    if monitor:
        services.append("StallMonitor()")
    master.configure(", ".join(services), build_every=1)
    if monitor:
        path = master.basedir / "master.cfg"
        text = path.read_text().replace("\nc[\"services\"]", "import json\n" + MONITOR + "\nc[\"services\"]", 1)
        path.write_text(text)


def phase(master: RealMaster, builds: int) -> tuple[float, int]:
    first_builds, first_cpu = completed_builds(master.basedir), master.cpu_seconds()
    master.wait_for(lambda: completed_builds(master.basedir) >= first_builds + builds, 600, f"{builds} builds")
    return master.cpu_seconds() - first_cpu, completed_builds(master.basedir) - first_builds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", type=int, default=4, help="phases of each kind, alternating")
    parser.add_argument("--builds", type=int, default=15, help="builds per phase")
    parser.add_argument("--stall-seconds", type=float, default=30)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bbprof-cost-") as tmp:
        master = RealMaster(Path(tmp) / "master")
        master.create()
        configure(master, with_service=False, gather_s=30, monitor=False)
        master.start()
        try:
            master.wait_for(lambda: completed_builds(master.basedir) >= 2, 120, "warm-up builds")
            results = {True: [], False: []}
            for index in range(2 * args.phases):
                with_service = index % 2 == 0
                configure(master, with_service, gather_s=30, monitor=False)
                assert master.reconfig().returncode == 0
                cpu, builds = phase(master, args.builds)
                results[with_service].append(cpu / builds)
                print(f"phase {index + 1}: service {'on ' if with_service else 'off'} "
                      f"{builds} builds, {cpu:.2f} s CPU, {1000 * cpu / builds:.1f} ms CPU/build", flush=True)
            sampling_ns = duration_ms = ticks = 0
            for path in (master.basedir / "profiles").glob("prof_*.json.gz"):
                with gzip.open(path, "rt") as f:
                    doc = json.load(f)
                sampling_ns += doc["stats"]["sampling_ns"]
                ticks += doc["stats"]["ticks"]
                duration_ms += doc["meta"]["end_ms"] - doc["meta"]["start_ms"]
            if duration_ms:
                print(f"sampler, from the files: {ticks} ticks, stack walks held the GIL "
                      f"{sampling_ns / 1e6:.1f} ms in {duration_ms / 1000:.1f} s "
                      f"({100 * sampling_ns / 1e6 / duration_ms:.3f} % of one core), "
                      f"{sampling_ns / 1000 / max(ticks, 1):.1f} us per tick")
            on = statistics.mean(results[True])
            off = statistics.mean(results[False])
            print(f"CPU per build: with service {1000 * on:.1f} ms, without {1000 * off:.1f} ms, "
                  f"difference {1000 * (on - off):+.1f} ms ({100 * (on - off) / off:+.1f} %)")

            # Stalls: off, then on with a 5 s gather period.
            for with_service in (False, True):
                configure(master, with_service, gather_s=5, monitor=True)
                assert master.reconfig().returncode == 0
                mark = len(master.log())
                began = time.time() + 1
                time.sleep(args.stall_seconds)
                worst = {int(k): v for k, v in json.loads((master.basedir / "stalls.json").read_text()).items()
                         if int(k) >= began}
                log = master.log()[mark:]
                rotations = [float(ms) for ms in re.findall(r"rotation ([\d.]+) ms", log)]
                stamps = set()
                for line in log.splitlines():
                    if "ProfilerService: wrote" in line:
                        stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) - time.timezone
                        stamps.update({int(stamp) - 1, int(stamp)})
                near = [v for s, v in worst.items() if s in stamps]
                far = [v for s, v in worst.items() if s not in stamps]
                label = "on " if with_service else "off"
                print(f"stalls, service {label}: worst lateness of a 1 ms LoopingCall "
                      f"{1000 * max(worst.values()):.1f} ms over {len(worst)} s; "
                      f"median of per-second worst {1000 * statistics.median(worst.values()):.2f} ms"
                      + (f"; seconds around a write: worst {1000 * max(near):.1f} ms, others worst "
                         f"{1000 * max(far):.1f} ms; rotation on the reactor: {len(rotations)} rotations, "
                         f"max {max(rotations):.3f} ms, median {statistics.median(rotations):.3f} ms"
                         if with_service and near and far and rotations else ""), flush=True)
        finally:
            master.stop()
            if master.alive:
                master.kill()


if __name__ == "__main__":
    main()
