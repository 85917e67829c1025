"""`transforms.long_lived`: imports and models kept out of later garbage collections."""

import gc

import pytest

from transforms import long_lived


@pytest.fixture
def enabled(monkeypatch):
    monkeypatch.setattr(long_lived, "_enabled", True)
    yield
    gc.unfreeze()  # this test process goes on: its objects are collected as before


class Cycle:
    def __init__(self):
        self.me = self


def test_pauses_collection_then_frees_the_garbage_and_freezes_the_rest(enabled):
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    with long_lived.long_lived():
        assert not gc.isenabled()
        kept = [Cycle() for _ in range(1000)]
        garbage = Cycle()
        collected = []
        gc.callbacks.append(lambda phase, info: collected.append(info) if phase == "stop" else None)
        del garbage
    gc.callbacks.pop()
    assert gc.isenabled()
    assert sum(info["collected"] for info in collected) >= 1  # the dropped cycle, not frozen
    assert gc.get_freeze_count() >= frozen + len(kept)
    assert not any(o is kept[0] for o in gc.get_objects())  # frozen: collections skip it


def test_an_error_inside_still_turns_collection_back_on(enabled):
    with pytest.raises(RuntimeError), long_lived.long_lived():
        raise RuntimeError("import failed")
    assert gc.isenabled()


def test_does_nothing_unless_enabled():
    frozen = gc.get_freeze_count()
    with long_lived.long_lived():
        assert gc.isenabled()
        _ = [Cycle() for _ in range(100)]
    assert gc.get_freeze_count() == frozen
