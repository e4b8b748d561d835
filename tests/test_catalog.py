"""catalog.py: one set of rules for which files in a directory are profiles,
and every enumeration (retention, the service, list_profiles, the viewer's
listing) following them."""

from __future__ import annotations

import os
import time

from profiler_service import catalog
from profiler_service.reading import list_profiles
from profiler_service.saving import prune
from profiler_service.www.listing import ProfileCatalog, Source

STAMPED = ["prof_20261101T000000Z.json.gz", "prof_20261101T000000Z_02.json.gz", "prof_20261120T000000Z.json.gz"]


def make_directory(tmp_path):
    """A directory with stamped files, other profiles, non-profiles, a
    directory with a profile's name, and symlinks in and out."""
    served = tmp_path / "served"
    outside = tmp_path / "outside"
    served.mkdir()
    outside.mkdir()
    for name in STAMPED + ["other.json", "web_x.json.gz", "notes.txt", "prof_keep.json.gz"]:
        (served / name).write_bytes(b"{}")
    (served / "prof_20261102T000000Z.json.gz.d").mkdir()
    (served / "dir.json.gz").mkdir()
    (outside / "secret.json.gz").write_bytes(b"{}")
    os.symlink(outside / "secret.json.gz", served / "prof_20261103T000000Z.json.gz")  # leaves the directory
    os.symlink(served / "other.json", served / "alias.json")  # stays inside
    os.symlink(served / "missing.json", served / "dangling.json")
    return served


def test_scan_keeps_regular_profiles_inside_the_directory_by_name(tmp_path):
    served = make_directory(tmp_path)
    names = [p.name for p in catalog.scan(str(served))]
    assert names == sorted(STAMPED + ["alias.json", "other.json", "prof_keep.json.gz", "web_x.json.gz"])
    [alias] = [p for p in catalog.scan(str(served)) if p.name == "alias.json"]
    assert alias.path == os.path.realpath(served / "other.json")
    assert alias.listed == os.path.join(str(served), "alias.json")


def test_a_prefix_keeps_only_that_writers_stamped_files_oldest_first(tmp_path):
    served = make_directory(tmp_path)
    assert [p.name for p in catalog.scan(str(served), "prof_")] == STAMPED
    assert [p.name for p in catalog.stamped_files(str(served / "prof_"))] == STAMPED
    assert catalog.stamped_files(str(tmp_path / "absent" / "prof_")) == []


def test_lookup_follows_the_same_rules_for_one_name(tmp_path):
    served = str(make_directory(tmp_path))
    assert catalog.lookup(served, "other.json").name == "other.json"
    assert catalog.lookup(served, "prof_20261103T000000Z.json.gz") is None  # points out
    assert catalog.lookup(served, "dir.json.gz") is None
    assert catalog.lookup(served, "notes.txt") is None
    assert catalog.lookup(served, "../outside/secret.json.gz") is None
    assert catalog.lookup(served, "web_x.json.gz", prefix="prof_") is None
    assert catalog.lookup(served, STAMPED[0], prefix="prof_").name == STAMPED[0]


def test_every_enumeration_agrees(tmp_path):
    """prune, list_profiles and the viewer's listing see the same files:
    before the catalog, list_profiles listed the symlink that points out of
    the directory, which the viewer refused and prune counted."""
    served = make_directory(tmp_path)
    everything = {p.name for p in catalog.scan(str(served))}
    assert {s["name"] for s in list_profiles(served)} == everything
    assert set(ProfileCatalog([str(served)]).files()) == everything
    stamped = {p.name for p in catalog.scan(str(served), "prof_")}
    assert set(ProfileCatalog([]).files()) == set()

    class Stamped(ProfileCatalog):
        def sources(self):
            return [Source(str(served), "prof_")]

    assert set(Stamped([]).files()) == stamped
    assert Stamped([]).resolve("other.json") is None and Stamped([]).resolve(STAMPED[0]) is not None
    # keepFiles=1 keeps the newest stamped file, deletes the two others, and
    # touches nothing the catalog does not list (the symlink pointing out).
    deleted = prune(str(served / "prof_"), 1, None, time.time(), keep="")
    assert sorted(os.path.basename(p) for p in deleted) == STAMPED[:2]
    assert os.path.islink(served / "prof_20261103T000000Z.json.gz")
    assert (tmp_path / "outside" / "secret.json.gz").exists()
