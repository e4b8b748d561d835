"""scripts/demo, the README's first command: a real demo master with the
profiler, in the foreground until Ctrl-C (SIGINT to its process group)."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "scripts" / "demo"

pytestmark = pytest.mark.timeout(240)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_env(tmp_path: Path, port: int) -> dict:
    env = dict(os.environ)
    env.update(BBPROF_DEMO_DIR=str(tmp_path / "master"), BBPROF_DEMO_PORT=str(port),
               BBPROF_DEMO_GATHERPERIOD="3")
    return env


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_demo_runs_a_master_that_writes_profiles_and_ctrl_c_stops_it(tmp_path):
    port = free_port()
    master = tmp_path / "master"
    demo = subprocess.Popen([str(DEMO)], cwd=ROOT, env=demo_env(tmp_path, port), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: list(master.glob("prof_*.json.gz")), 120, "a profile from the demo master")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/builders", timeout=10) as response:
            builders = json.load(response)["builders"]
        assert [b["name"] for b in builders] == ["demo-build"]
        pid = int((master / "twistd.pid").read_text())
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        output, _ = demo.communicate(timeout=90)
    assert demo.returncode == 0, output
    assert f"Buildbot web UI:  http://127.0.0.1:{port}/" in output
    assert f"Profiles:         {master}/prof_<UTC stamp>.json.gz" in output
    assert "demo: stopping the master" in output
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    log = (master / "twistd.log").read_text()
    assert "Traceback" not in log
    files = sorted(master.glob("prof_*.json.gz"))
    assert log.count("ProfilerService: wrote ") == len(files)
    with gzip.open(files[-1], "rt") as f:
        last = json.load(f)
    assert last["meta"]["period_end"] == "stop" or "no samples in this period (stop)" in log


def test_demo_refuses_a_taken_port_with_a_clear_message(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([str(DEMO)], cwd=ROOT, env=demo_env(tmp_path, port), timeout=120,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode != 0
    assert f"demo: port {port} on 127.0.0.1 is taken; free it or set BBPROF_DEMO_PORT" in result.stdout


def test_demo_stop_without_a_master_is_a_no_op(tmp_path):
    result = subprocess.run([str(DEMO), "stop"], cwd=ROOT, env=demo_env(tmp_path, free_port()), timeout=60,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout
