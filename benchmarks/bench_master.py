"""Workload (c): a real Buildbot master from PyPI handling forced builds.

One master (create-master in a temp dir, LocalWorker, four builders with
three shell steps each, REST API on loopback) runs for the whole benchmark.
Batches of forced builds (POST /api/v2/forceschedulers/force, the web UI's
own call) alternate between configurations: the profiler is started and
stopped inside the master through a control port (see master.cfg.in), so all
configurations share one process and drift hits them alike. The figure is the
master's process CPU time per build and the builds per second of wall time,
each configuration against the no-profiler batches of the same round.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from typing import Any, Optional

from common import HERE, PYTHON, scratch_dir

BUILDBOT = os.path.join(os.path.dirname(PYTHON), "buildbot")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Master:
    def __init__(self, wrapper: Optional[list[str]] = None) -> None:
        self.dir = scratch_dir()
        self.basedir = os.path.join(self.dir, "master")
        self.www_port = free_port()
        self.control_port = free_port()
        self.wrapper = wrapper or []
        self.proc: Optional[subprocess.Popen] = None
        self.control: Optional[socket.socket] = None
        self.builder_ids: list[int] = []
        self.log = open(os.path.join(self.dir, "master.out"), "w")

    def start(self, timeout: float = 90) -> None:
        subprocess.run(
            [BUILDBOT, "create-master", "-r", "-q", self.basedir],
            check=True, capture_output=True, text=True,
        )
        with open(os.path.join(HERE, "master.cfg.in")) as f:
            cfg = f.read()
        cfg = (
            cfg.replace("@BENCH_DIR@", repr(HERE))
            .replace("@CONTROL_PORT@", str(self.control_port))
            .replace("@WWW_PORT@", str(self.www_port))
        )
        with open(os.path.join(self.basedir, "master.cfg"), "w") as f:
            f.write(cfg)
        self.proc = subprocess.Popen(
            self.wrapper + [BUILDBOT, "start", "--nodaemon", self.basedir],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"master exited early; see {self.log.name}: {self.tail()}")
            try:
                self.control = socket.create_connection(("127.0.0.1", self.control_port), timeout=60)
                builders = self.get("builders")["builders"]
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"master did not start; {self.tail()}")
                time.sleep(0.3)
        self.builder_ids = [b["builderid"] for b in builders]
        self.reader = self.control.makefile("r")

    def tail(self) -> str:
        try:
            with open(os.path.join(self.basedir, "twistd.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def command(self, line: str) -> dict[str, Any]:
        assert self.control is not None
        self.control.sendall(line.encode() + b"\n")
        reply = self.reader.readline()
        try:
            return json.loads(reply)
        except ValueError:
            raise RuntimeError(f"control command {line!r} got {reply!r}; master log: {self.tail()[-1500:]}") from None

    def get(self, path: str) -> dict[str, Any]:
        return self.http(urllib.request.Request(f"http://127.0.0.1:{self.www_port}/api/v2/{path}"))

    def http(self, request: urllib.request.Request) -> dict[str, Any]:
        """One REST call; retried twice on a dropped connection, then the
        error is raised with the master's log."""
        for attempt in range(3):
            try:
                with urllib.request.urlopen(request, timeout=30) as r:
                    return json.load(r)
            except (OSError, ValueError, http.client.HTTPException) as exc:
                if attempt == 2:
                    raise RuntimeError(f"{request.full_url}: {exc!r}; master log: {self.tail()[-1500:]}") from None
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def force(self, builder_id: int) -> None:
        body = json.dumps(
            {"jsonrpc": "2.0", "method": "force", "id": 1, "params": {"builderid": str(builder_id)}}
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.www_port}/api/v2/forceschedulers/force",
            data=body, headers={"Content-Type": "application/json"},
        )
        reply = self.http(request)
        if "error" in reply:
            raise RuntimeError(f"force failed: {reply['error']}")

    def pending(self) -> int:
        return len(self.get("buildrequests?complete=false")["buildrequests"])

    def batch(self, per_builder: int, timeout: float = 120) -> tuple[float, float, int]:
        """Force ``per_builder`` builds on every builder, wait until they are
        done; returns (master CPU s, wall s, builds)."""
        cpu0 = self.command("cpu")["cpu_s"]
        wall0 = time.perf_counter()
        for _ in range(per_builder):
            for builder_id in self.builder_ids:
                self.force(builder_id)
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() > deadline:
                raise RuntimeError("builds did not finish in time")
            time.sleep(0.1)
        wall = time.perf_counter() - wall0
        cpu = self.command("cpu")["cpu_s"] - cpu0
        return (cpu, wall, per_builder * len(self.builder_ids))

    def stop(self) -> None:
        if self.control is not None:
            self.control.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def run(configs: list[str], rounds: int, per_builder: int) -> dict[str, Any]:
    """Interleave ``configs`` (the first must be 'none') over ``rounds``."""
    master = Master()
    results: dict[str, list[tuple[float, float, int]]] = {c: [] for c in configs}
    stats: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    try:
        master.start()
        master.batch(1)  # warm up
        for r in range(rounds):
            order = configs if r % 2 == 0 else list(reversed(configs))
            for config in order:
                if config != "none":
                    master.command(f"start {config}")
                results[config].append(master.batch(per_builder))
                if config != "none":
                    stats[config].append(master.command("stop"))
    finally:
        master.stop()
    return {"batches": results, "stats": stats}
