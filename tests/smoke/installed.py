"""Smoke test of an installed buildbot-profiler (a wheel or the sdist).

scripts/smoke-dist runs it with a fresh venv's python from an empty temporary
directory, so what it imports is the installed package, never a source tree:
import, profile a small workload, write a file, load() it, `bbprofiler top`
and `bbprofiler --help`. One line per check; exit status 1 on the first
failure. Not collected by pytest (no test_ prefix): it needs an installed
artifact, not the development install.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


class SmokeFailure(Exception):
    pass


def check(what: str, ok: bool, detail: str = "") -> None:
    if not ok:
        raise SmokeFailure(f"{what}: {detail}" if detail else what)
    print(f"  ok: {what}" + (f" ({detail})" if detail else ""))


def smoke_workload(cpu_s: float) -> int:
    """Burn cpu_s seconds of CPU in a function the profile must name."""
    total = 0
    deadline = time.process_time() + cpu_s
    while time.process_time() < deadline:
        total += sum(i * i for i in range(2000))
    return total


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def main() -> int:
    import profiler_service
    from profiler_service import Profiler, load
    from profiler_service import _core

    package = Path(profiler_service.__file__).resolve().parent
    prefix = Path(sys.prefix).resolve()
    check("imports from the venv, not a source tree", package.is_relative_to(prefix), str(package))
    check("_core is the installed extension",
          Path(_core.__file__).resolve().parent == package, Path(_core.__file__).name)
    check("version from the installed metadata", profiler_service.__version__ != "0+unknown",
          profiler_service.__version__)
    static = package / "www" / "static"
    check("the viewer is installed",
          all((static / name).is_file() for name in ("index.html", "viewer.js", "viewer.css")),
          str(static))
    check("the schema is installed", (package / "schema" / "profile-v3.schema.json").is_file())

    with Profiler(frequency=250, mode="prof") as profiler:
        smoke_workload(0.4)
    period = profiler.period
    check("Profiler sampled the workload", period is not None and period.stats["samples"] > 0,
          f"{period.stats['samples'] if period else 0} samples")

    path = Path.cwd() / "prof_smoke.json.gz"
    period.write(str(path))
    check("Period.write wrote a file", path.is_file(), f"{path.stat().st_size} bytes")

    profile = load(path)
    names = {frame.name for frame in profile.frames}
    check("load() reads it back", len(profile) == period.stats["samples"], f"{len(profile)} samples")
    check("the file names the workload", "smoke_workload" in names)

    bbprofiler = Path(sys.executable).with_name("bbprofiler")
    top = run(str(bbprofiler), "top", str(path), "-n", "5", "--width", "100")
    check("bbprofiler top", top.returncode == 0 and "smoke_workload" in top.stdout,
          top.stderr.strip() or f"{len(top.stdout.splitlines())} lines")
    print("    " + "\n    ".join(top.stdout.splitlines()[:5]))
    usage = run(str(bbprofiler), "--help")
    check("bbprofiler --help", usage.returncode == 0 and usage.stdout.startswith("usage: bbprofiler"),
          usage.stderr.strip())
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SmokeFailure as failure:
        print(f"  FAILED: {failure}")
        sys.exit(1)
