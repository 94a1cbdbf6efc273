"""sim.model.garbage: fewer collections while a run goes, nothing left changed after it."""

from __future__ import annotations

import gc
import weakref

import pytest

from sim.model.garbage import fewer_collections


@pytest.fixture
def collector():
    """Each test starts from CPython's defaults and leaves them so."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class _Node:
    def __init__(self):
        self.other = self  # a reference cycle: only the cyclic collector frees it


def test_within_the_block_existing_objects_are_frozen_and_young_collections_are_rarer(collector):
    with fewer_collections(young=50_000):
        assert gc.get_threshold() == (50_000, 10, 10)
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_settings_come_back_after_an_exception(collector):
    with pytest.raises(RuntimeError):
        with fewer_collections():
            raise RuntimeError("the run failed")
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_a_callers_own_settings_are_left_alone(collector):
    gc.freeze()
    frozen = gc.get_freeze_count()
    gc.set_threshold(200_000, 10, 10)
    with fewer_collections(young=50_000):
        assert gc.get_threshold() == (200_000, 10, 10)  # already higher: not lowered
    assert gc.get_threshold() == (200_000, 10, 10)
    assert gc.get_freeze_count() >= frozen  # the caller's frozen objects stay frozen


def test_automatic_collection_switched_off_stays_off(collector):
    gc.set_threshold(0)
    with fewer_collections():
        assert gc.get_threshold()[0] == 0
    assert gc.get_threshold()[0] == 0


def test_cycles_made_within_the_block_are_still_collected(collector):
    with fewer_collections(young=1_000):
        node = _Node()
        gone = weakref.ref(node)
        del node
        kept = [[] for _ in range(5_000)]  # enough net allocations for several young collections
        assert gone() is None
        assert len(kept) == 5_000


def test_a_run_leaves_the_collector_as_it_found_it(collector, tmp_path):
    from tests.test_width import _run  # a small model run (System.run brackets itself)

    _run(tmp_path, 2, "per-port")
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
