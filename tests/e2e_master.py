"""A real Buildbot master for end-to-end tests and measurements.

``buildbot create-master`` in a directory, a master.cfg with a LocalWorker
running real shell builds (sqlite, null protocol, no web UI unless asked),
then ``buildbot start`` / ``reconfig`` / ``stop`` as an admin would type them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

BIN = Path(sys.executable).parent
BUILDBOT = str(BIN / "buildbot")

CONFIG = '''\
# written by tests/e2e_master.py
import os
import time
from buildbot.plugins import schedulers, steps, util, worker
from twisted.internet import reactor, task
from twisted.python import log
from buildbot.util import service

c = BuildmasterConfig = {{}}
c["title"] = "e2e"
c["buildbotURL"] = "http://127.0.0.1:1/"
c["db"] = {{"db_url": "sqlite:///state.sqlite"}}
c["protocols"] = {{"null": {{}}}}
c["buildbotNetUsageData"] = None
c["workers"] = [worker.LocalWorker("local")]
factory = util.BuildFactory([
    steps.ShellCommand(name="compute", command=[{python!r}, "-c", "print(sum(i * i for i in range(300000)))"]),
    steps.ShellCommand(name="chatty", command=[{python!r}, "-c", "for i in range(3000): print('line', i)"]),
])
c["builders"] = [util.BuilderConfig(name="work", workernames=["local"], factory=factory)]
c["schedulers"] = [
    schedulers.Periodic(name="periodic", builderNames=["work"], periodicBuildTimer={build_every!r}),
    schedulers.ForceScheduler(name="force", builderNames=["work"]),
]


class PoolGate(service.BuildbotService):
    """Test aid: while the file gate.hold exists, every thread of the
    reactor's pool is kept busy, so the profiler's writes wait in the queue
    (a slow disk, without a slow disk)."""

    name = "PoolGate"

    def startService(self):
        self.hold = os.path.abspath("gate.hold")
        self.holding = False
        self.poll = task.LoopingCall(self.check)
        self.poll.clock = self.master.reactor
        self.poll.start(0.05)
        return super().startService()

    def stopService(self):
        self.poll.stop()
        return super().stopService()

    def check(self):
        if os.path.exists(self.hold) and not self.holding:
            self.holding = True
            pool = self.master.reactor.getThreadPool()
            for _ in range(pool.max):
                self.master.reactor.callInThread(self.wait)
            log.msg(f"PoolGate: holding {{pool.max}} pool threads")
        elif not os.path.exists(self.hold):
            self.holding = False

    def wait(self):
        deadline = time.monotonic() + 30
        while os.path.exists(self.hold) and time.monotonic() < deadline:
            time.sleep(0.02)


c["services"] = [{services}]
'''


START_TIMEOUT_S = 90


def unexpected_tracebacks(log: str) -> list[str]:
    """The tracebacks of a master's twistd.log, but Buildbot's own race when
    a browser goes away mid-answer (buildbot/www/rest.py writes the JSON from
    a pool thread; the closed socket gives EBADF), which no code of ours is
    part of."""
    blocks = []
    lines = log.splitlines()
    for start, line in enumerate(lines):
        if "Traceback (most recent call last)" not in line:
            continue
        end = start + 1
        while end < len(lines) and (lines[end][:1] in ("\t", " ") or not lines[end].strip()):
            end += 1
        block = "\n".join(lines[start:end + 1])
        disconnect_race = ("buildbot/www/rest.py" in block and "Bad file descriptor" in block
                           and "profiler_service" not in block)
        # Buildbot 4.3 logs BuildStepCancelled as an Unhandled Error when
        # `buildbot stop` interrupts a running step (seen on 3.12, whose
        # slower interpreter leaves a step running at stop).
        shutdown_race = ("in _interrupt_impl" in block and "BuildStepCancelled" in block
                         and "profiler_service" not in block)
        if not disconnect_race and not shutdown_race:
            blocks.append(block)
    return blocks


class RealMaster:
    def __init__(self, basedir: Path) -> None:
        self.basedir = Path(basedir)

    def create(self) -> None:
        subprocess.run([BUILDBOT, "create-master", "-q", "-r", str(self.basedir)], check=True,
                       stdout=subprocess.DEVNULL)

    def configure(self, services: str = "", build_every: float = 2) -> None:
        text = CONFIG.format(python=sys.executable, services=services, build_every=build_every)
        (self.basedir / "master.cfg").write_text(text)

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([BUILDBOT, *args, str(self.basedir)], check=check, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def try_start(self) -> subprocess.CompletedProcess:
        # buildbot start waits 10 s for "BuildMaster is running" by default:
        # on a loaded machine, or a CPython build without PGO, loading the
        # tac alone can take longer.
        return self.run("start", f"--start_timeout={START_TIMEOUT_S}", check=False)

    def start(self) -> None:
        """Start; a start that fails kills the master (none is left running)."""
        result = self.try_start()
        if result.returncode != 0:
            log = self.log()
            self.kill()
            raise AssertionError(f"buildbot start failed:\n{result.stdout}\n{log[-3000:]}")

    def stop(self) -> subprocess.CompletedProcess:
        return self.run("stop", check=False)

    def reconfig(self) -> subprocess.CompletedProcess:
        return self.run("reconfig", check=False)

    @property
    def pid(self) -> Optional[int]:
        try:
            return int((self.basedir / "twistd.pid").read_text())
        except (OSError, ValueError):
            return None

    @property
    def alive(self) -> bool:
        pid = self.pid
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True

    def kill(self) -> None:
        pid = self.pid
        if pid is not None and self.alive:
            os.kill(pid, signal.SIGKILL)

    def log(self) -> str:
        try:
            return (self.basedir / "twistd.log").read_text(errors="replace")
        except OSError:
            return ""

    def wait_for(self, predicate: Callable[[], object], timeout: float, what: str) -> object:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; log tail:\n{self.log()[-3000:]}")
            if not self.alive:
                raise AssertionError(f"the master died waiting for {what}; log tail:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the master process so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


def profile_with_builds(basedir: Path) -> Path:
    """Run a real master in `basedir` (created here) with ProfilerService
    writing a file every 4 s at 250 Hz while a build runs every second, and
    return the newest file that lists builds (not the first: it may have
    begun before the master was up). The master is stopped."""
    from profiler_service.reading import load

    master = RealMaster(basedir)
    master.create()
    master.configure("util.ProfilerService(frequency=250, gatherperiod=4, basepath='profiles/prof_', wantBuilds=5)",
                     build_every=1)
    master.start()
    try:
        def with_builds():
            files = sorted((basedir / "profiles").glob("prof_*.json.gz"))
            return [f for f in files[1:] if load(f).builds]
        found = master.wait_for(with_builds, 60, "a profile file with builds")
    finally:
        master.stop()
        if master.alive:
            master.kill()
    return found[-1]
