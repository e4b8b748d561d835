"""Profiler's Python surface: argument checks, lifecycle, one sampler per process."""

from __future__ import annotations

import math
import signal

import pytest

from profiler_service import Profiler, _core
from profiler_service.profiler import DEFAULT_IDLE_FRAMES, running_profiler

from workloads import busy_for


@pytest.mark.parametrize(
    "frequency, error",
    [
        (0, ValueError),
        (-5, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (10001, ValueError),
        ("100", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_bad_frequency_is_refused_before_arming(frequency, error):
    with pytest.raises(error, match="frequency"):
        Profiler(frequency=frequency)
    assert not _core.is_running()
    assert signal.getsignal(signal.SIGVTALRM) == signal.SIG_DFL


@pytest.mark.parametrize("mode, error", [("fast", ValueError), ("", ValueError), (1, TypeError), (None, TypeError)])
def test_bad_mode_is_refused(mode, error):
    with pytest.raises(error, match="mode"):
        Profiler(mode=mode)


@pytest.mark.parametrize(
    "idle_frames, error",
    [("threading.py:Condition.wait", TypeError), (["no-colon"], ValueError), ([":x"], ValueError), ([3], TypeError), (5, TypeError)],
)
def test_bad_idle_frames_are_refused(idle_frames, error):
    with pytest.raises(error, match="idle_frames"):
        Profiler(idle_frames=idle_frames)


@pytest.mark.parametrize(
    "name, value, error",
    [("max_depth", 0, ValueError), ("max_depth", 2.5, TypeError), ("max_stacks", 1, ValueError), ("max_samples", 0, ValueError)],
)
def test_bad_caps_are_refused(name, value, error):
    with pytest.raises(error, match=name):
        Profiler(**{name: value})


def test_edge_frequencies_are_accepted():
    assert Profiler(frequency=10000).frequency == 10000.0
    assert Profiler(frequency=0.5).frequency == 0.5


def test_defaults_and_repr():
    p = Profiler()
    assert (p.frequency, p.mode) == (100.0, "virtual")
    assert p.idle_frames == DEFAULT_IDLE_FRAMES
    assert "stopped" in repr(p)


@pytest.mark.timeout(60)
def test_one_sampler_per_process():
    first = Profiler(frequency=200, mode="prof")
    first.start()
    try:
        assert running_profiler() is first
        second = Profiler(frequency=100, mode="virtual")
        with pytest.raises(RuntimeError, match="already running"):
            second.start()
        with pytest.raises(RuntimeError, match="not running"):
            second.stop()
        busy_for(0.2)
        assert first.running and not second.running
    finally:
        period = first.stop()
    assert period.samples > 0
    assert running_profiler() is None


def test_rotate_and_stop_need_a_running_profiler():
    p = Profiler()
    with pytest.raises(RuntimeError):
        p.rotate()
    with pytest.raises(RuntimeError):
        p.stop()
    assert p.status() is None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode, signum", [("prof", signal.SIGPROF), ("virtual", signal.SIGVTALRM)])
def test_signal_disposition_is_restored(mode, signum):
    assert signal.getsignal(signum) == signal.SIG_DFL
    with Profiler(frequency=500, mode=mode):
        busy_for(0.1)
    # The default action of these signals kills the process: a late tick after
    # stop must find the default restored and no timer armed.
    assert signal.getsignal(signum) == signal.SIG_DFL
    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)
    assert signal.getitimer(signal.ITIMER_VIRTUAL) == (0.0, 0.0)


@pytest.mark.timeout(60)
def test_an_application_handler_is_never_replaced():
    calls = []
    previous = signal.signal(signal.SIGPROF, lambda *a: calls.append(a))
    try:
        with pytest.raises(RuntimeError, match="already has a handler"):
            Profiler(mode="prof").start()
        assert not _core.is_running()
        # real mode uses no signal at all, so it still works
        with Profiler(frequency=200, mode="real") as p:
            busy_for(0.1)
        assert p.period is not None
    finally:
        signal.signal(signal.SIGPROF, previous)


@pytest.mark.timeout(60)
def test_context_manager_keeps_the_final_period():
    with Profiler(frequency=300, mode="prof") as p:
        assert p.running
        assert p.status()["mode"] == "prof"
        busy_for(0.3)
    assert not p.running
    period = p.period
    assert isinstance(period, _core.Period)
    assert period.mode == "prof" and period.frequency == 300.0
    assert period.samples == len(period) > 0
    assert period.end_time >= period.start_time > 0
    assert "Period prof" in repr(period)


@pytest.mark.timeout(60)
def test_rotate_loses_no_sample():
    with Profiler(frequency=500, mode="prof") as p:
        periods = []
        for _ in range(4):
            busy_for(0.15)
            periods.append(p.rotate())
        busy_for(0.15)
    periods.append(p.period)
    assert all(period.samples > 0 for period in periods)
    # Periods tile time: each starts where the previous ended (ms resolution).
    for before, after in zip(periods, periods[1:]):
        assert after.start_time - before.end_time < 0.05
        assert after.start_time >= before.start_time
    merged = _core.concat(periods)
    assert merged.samples == sum(period.samples for period in periods)
    assert merged.stats["ticks"] == sum(period.stats["ticks"] for period in periods)


@pytest.mark.timeout(60)
def test_consecutive_periods_meet_exactly():
    # A rotation is one instant: the finished period ends where the next one
    # starts, to the millisecond, however the two clock reads would have
    # rounded, and however long the rotation itself takes on a loaded machine.
    with Profiler(frequency=500, mode="prof") as p:
        periods = []
        for _ in range(100):
            busy_for(0.003)
            periods.append(p.rotate())
    periods.append(p.period)
    for before, after in zip(periods, periods[1:]):
        assert after.start_time == before.end_time
    merged = _core.concat(periods)
    assert (merged.start_time, merged.end_time) == (periods[0].start_time, periods[-1].end_time)


def test_concat_refuses_bad_input():
    with pytest.raises(ValueError):
        _core.concat([])
    with pytest.raises(TypeError):
        _core.concat([1])
    with pytest.raises(TypeError):
        _core.concat(5)


@pytest.mark.timeout(60)
def test_period_is_read_only_and_not_constructible():
    with Profiler(frequency=200, mode="prof") as p:
        busy_for(0.1)
    with pytest.raises(TypeError):
        type(p.period)()
    with pytest.raises(AttributeError):
        p.period.samples = 3
    with pytest.raises(KeyError):
        p.period.collapsed("no such thread")
    with pytest.raises(TypeError):
        p.period.collapsed(2.5)
