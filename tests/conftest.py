"""Shared helpers for the pytest suite."""

from __future__ import annotations

import collections
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SANITIZED = os.environ.get("BBPROF_SANITIZED") == "1"


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """Collapsed stacks text -> [(frames root first, count)]."""
    rows = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        rows.append((stack.split(";"), int(count)))
    return rows


def function_name(frame_label: str) -> str:
    """'Qual.name (file:line)' -> 'Qual.name'."""
    return frame_label.split(" (", 1)[0]


def leaf_totals(period, thread=None, weighted=True) -> collections.Counter:
    """Weight (or count) per leaf function name."""
    totals: collections.Counter = collections.Counter()
    for frames, count in parse_collapsed(period.collapsed(thread, weighted=weighted)):
        totals[function_name(frames[-1])] += count
    return totals


def thread_totals(period, weighted=True) -> collections.Counter:
    totals: collections.Counter = collections.Counter()
    for frames, count in parse_collapsed(period.collapsed(weighted=weighted)):
        totals[frames[0]] += count
    return totals


@pytest.fixture(autouse=True)
def _no_sampler_left_running():
    """Every test leaves the process without a running sampler."""
    yield
    from profiler_service import _core

    if _core.is_running():
        _core.stop()
        pytest.fail("the test left a sampler running")
