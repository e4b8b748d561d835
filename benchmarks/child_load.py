"""Child of load_scaling.py: read one file with load() (and build the
``bbprofiler top`` table), report the time and the peak RSS growth.

Times are the process's CPU time: on a shared machine, wall time also
counts the waits for a core."""

from __future__ import annotations

import time

from common import child_params, emit


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def main() -> None:
    params = child_params()
    from profiler_service.exports import top_functions
    from profiler_service.reading import ProfileError, load

    # Reset the high-water mark to the current RSS: the interpreter and the
    # imports are not the reader's.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status("VmRSS")
    started = time.process_time()
    top_s = None
    try:
        profile = load(params["path"])
        load_s = time.process_time() - started
        result = f"{len(profile):,} samples"
        if params["top"]:
            started = time.process_time()
            stats, _, _ = top_functions(profile)
            top_s = time.process_time() - started
    except ProfileError as e:
        load_s = time.process_time() - started
        result = "refused: " + e.problem
    emit({"load_s": load_s, "top_s": top_s, "peak_growth_bytes": _status("VmHWM") - base,
          "result": result})


if __name__ == "__main__":
    main()
