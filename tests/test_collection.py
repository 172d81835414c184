"""The garbage collector's settings for a run are undone afterwards, and a run's results do not depend on them."""

import gc

import pytest
from conftest import build_experiment, run

from simulator.collection import RUN_THRESHOLD, collections_for_a_run


def test_settings_are_restored_and_the_heap_unfrozen():
    before = gc.get_threshold()
    with collections_for_a_run():
        assert gc.get_threshold()[0] == max(RUN_THRESHOLD, before[0])
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_settings_are_restored_when_the_run_raises():
    before = gc.get_threshold()
    with pytest.raises(RuntimeError):
        with collections_for_a_run():
            raise RuntimeError("the run failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_disabled_collector_is_left_alone():
    before = gc.get_threshold()
    gc.disable()
    try:
        with collections_for_a_run():
            assert gc.get_threshold() == before
            assert gc.get_freeze_count() == 0
            assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_run_gives_the_same_results_with_the_collector_off(tmp_path):
    experiment = build_experiment(tmp_path)
    with_settings = run(experiment).requests
    gc.disable()
    try:
        without = run(experiment).requests
    finally:
        gc.enable()
    assert with_settings.equals(without)


def test_what_the_caller_froze_stays_frozen():
    # (Frozen objects that die leave the count, so only "still frozen" is exact: an unfreeze
    # would empty it.)
    gc.freeze()
    try:
        with collections_for_a_run():
            with collections_for_a_run():  # nested, as a run inside a run's callback would
                pass
            assert gc.get_freeze_count() > 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_a_zero_threshold_is_left_alone():
    before = gc.get_threshold()
    gc.set_threshold(0)
    try:
        with collections_for_a_run():
            assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*before)
