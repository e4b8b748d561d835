"""recordings.py: one real sampler (the hub) shared by several recordings."""

from __future__ import annotations

import time

import pytest

from profiler_service import _core
from profiler_service.recordings import Hub, Settings, join
from profiler_service.profiler import Profiler

pytestmark = pytest.mark.timeout(60)


def burn(seconds: float) -> None:
    """Spend user CPU time, so virtual-mode ticks fire."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        sum(range(200))


@pytest.fixture
def hub():
    hub = Hub()
    yield hub
    for recording in hub.recordings:
        recording.close()
    assert not _core.is_running()


def test_first_recording_starts_the_sampler_and_last_close_stops_it(hub):
    assert not hub.running
    recording = hub.open("service", Settings(500))
    assert hub.running and _core.is_running()
    assert recording.settings == Settings(500.0)
    burn(0.1)
    chunks = recording.close()
    assert not hub.running and not _core.is_running()
    assert len(chunks) == 1 and chunks[0].samples > 0
    assert chunks[0].frequency == 500
    assert recording.close() == []  # closing twice is harmless


def test_cut_hands_over_the_period_and_keeps_sampling(hub):
    recording = hub.open("service", Settings(500))
    burn(0.05)
    first = recording.cut()
    burn(0.05)
    second = recording.close()
    assert [len(first), len(second)] == [1, 1]
    assert first[0].samples > 0 and second[0].samples > 0
    # consecutive: the second chunk starts where the first ended
    assert second[0].start_time == pytest.approx(first[0].end_time, abs=0.01)


def test_two_recordings_share_every_chunk_between_their_boundaries(hub):
    service = hub.open("service", Settings(500))
    burn(0.05)
    web = hub.open("web", Settings(500))  # boundary: service gets chunk A
    burn(0.05)
    service_period = service.cut()  # boundary: both get chunk B
    burn(0.05)
    web_period = web.close()  # boundary: both get chunk C; web ends
    burn(0.05)
    service_rest = service.close()  # chunk D, sampler stops
    assert not _core.is_running()
    assert len(service_period) == 2  # A, B
    assert len(web_period) == 2  # B, C
    assert web_period[0] is service_period[1]  # the same chunk, not a copy
    assert len(service_rest) == 2  # C, D
    assert service_rest[0] is web_period[1]
    assert all(chunk.samples > 0 for chunk in service_period + web_period + service_rest)


def test_running_settings_win_and_the_newcomer_is_told(hub):
    service = hub.open("service", Settings(200))
    assert service.conflict is None
    web = hub.open("web", Settings(50))
    assert web.settings == Settings(200.0)
    assert "asked for virtual 50 Hz" in web.conflict and "200 Hz" in web.conflict
    burn(0.05)
    chunks = web.close()
    assert all(chunk.frequency == 200 for chunk in chunks)


def test_new_settings_apply_at_once_when_alone(hub):
    service = hub.open("service", Settings(200))
    burn(0.05)
    before = service.cut(Settings(400, "prof"))
    assert before[-1].frequency == 200 and before[-1].mode == "virtual"
    assert hub.settings == Settings(400.0, "prof")
    burn(0.05)
    after = service.close()
    assert [chunk.frequency for chunk in after] == [400]
    assert after[0].mode == "prof"


def test_new_settings_wait_until_the_other_recording_ends(hub):
    service = hub.open("service", Settings(200))
    web = hub.open("web", Settings(200))
    service.cut(Settings(300))
    assert hub.settings == Settings(200.0)  # the web recording still runs
    assert "the new settings apply when it records alone" in service.conflict
    burn(0.05)
    web.close()
    assert hub.settings == Settings(300.0)  # applied at the web recording's end
    assert service.conflict is None
    burn(0.05)
    chunks = service.close()
    assert [chunk.frequency for chunk in chunks] == [200, 300]


def test_shutdown_stops_the_sampler_and_keeps_the_last_chunk(hub):
    service = hub.open("service", Settings(500))
    burn(0.05)
    hub.shutdown()
    assert not _core.is_running()
    chunks = service.cut()  # nothing more to rotate: the kept chunk only
    assert len(chunks) == 1 and chunks[0].samples > 0
    assert service.close() == []


def test_a_foreign_profiler_blocks_the_hub_with_a_clear_error(hub):
    with Profiler(100):
        with pytest.raises(RuntimeError, match="already running"):
            hub.open("service")
    assert hub.recordings == []


def test_bad_settings_raise_before_anything_runs(hub):
    with pytest.raises(ValueError, match="frequency"):
        hub.open("service", Settings(-5))
    with pytest.raises(ValueError, match="mode"):
        hub.open("service", Settings(100, "fast"))
    assert not hub.running and hub.recordings == []


def test_join_of_one_chunk_is_the_chunk_and_of_none_is_none(hub):
    recording = hub.open("service", Settings(500))
    burn(0.02)
    chunks = recording.close()
    assert join(chunks) is chunks[0]
    assert join([]) is None


def test_join_concatenates_a_shared_period(hub):
    service = hub.open("service", Settings(500))
    burn(0.05)
    web = hub.open("web", Settings(500))
    burn(0.05)
    chunks = service.cut()
    period = join(chunks)
    assert period.samples == sum(chunk.samples for chunk in chunks) > 0
    assert period.start_time == pytest.approx(chunks[0].start_time, abs=0.002)
    assert period.end_time == pytest.approx(chunks[-1].end_time, abs=0.002)
    web.close()


def test_status_counts_the_samples_of_the_current_period(hub):
    service = hub.open("service", Settings(500))
    burn(0.05)
    web = hub.open("web", Settings(500))
    burn(0.05)
    status = service.status()
    assert status["open"] and status["frequency"] == 500 and status["mode"] == "virtual"
    assert status["samples"] >= web.status()["samples"] > 0
    assert status["samples"] >= service.chunks[0].samples
    chunks = web.close()
    assert web.status()["open"] is False and web.status()["samples"] == 0
    assert sum(chunk.samples for chunk in chunks) > 0


def test_join_runs_splits_where_the_settings_changed(hub):
    from profiler_service.recordings import join_runs

    service = hub.open("service", Settings(200))
    web = hub.open("web", Settings(200))
    burn(0.03)
    chunks = service.cut(Settings(400, "prof"))  # waits for the web recording to end
    burn(0.03)
    web.close()  # the sampler restarts at 400 Hz prof for the service alone
    burn(0.03)
    chunks += service.close()
    assert [(c.mode, c.frequency) for c in chunks] == [
        ("virtual", 200), ("virtual", 200), ("virtual", 200), ("prof", 400)
    ]
    periods = join_runs(chunks)
    assert [(p.mode, p.frequency) for p in periods] == [("virtual", 200), ("prof", 400)]
    assert periods[0].samples == sum(c.samples for c in chunks[:3])
    assert join_runs([]) == []
