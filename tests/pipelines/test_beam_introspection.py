"""`pipelines.beam_introspection`: Beam's state/timer introspection remembered per DoFn."""

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain

from pipelines import beam_introspection


class Plain(beam.DoFn):
    def process(self, element):
        yield element


class Stateful(beam.DoFn):
    COUNT = userstate.ReadModifyWriteStateSpec("count", VarIntCoder())

    def process(self, element, count=beam.DoFn.StateParam(COUNT)):
        seen = (count.read() or 0) + 1
        count.write(seen)
        yield element[0], seen


class WithTimer(beam.DoFn):
    FLUSH = userstate.TimerSpec("flush", TimeDomain.WATERMARK)

    def process(self, element, flush=beam.DoFn.TimerParam(FLUSH)):
        yield element

    @userstate.on_timer(FLUSH)
    def on_flush(self):
        yield 0


def test_answers_equal_beams_own():
    for dofn in (Plain(), Stateful(), WithTimer()):
        assert beam_introspection.get_dofn_specs(dofn) == beam_introspection._original(dofn)


def test_beam_is_asked_once_per_dofn(monkeypatch):
    calls = []

    def counting(dofn):
        calls.append(dofn)
        return original(dofn)

    original = beam_introspection._original
    monkeypatch.setattr(beam_introspection, "_original", counting)
    first, second = Stateful(), Stateful()
    for _ in range(3):
        beam_introspection.get_dofn_specs(first)
    beam_introspection.get_dofn_specs(second)
    assert calls == [first, second]


def test_a_caller_cannot_change_the_remembered_answer():
    dofn = Stateful()
    state_specs, _ = beam_introspection.get_dofn_specs(dofn)
    state_specs.clear()
    assert beam_introspection.get_dofn_specs(dofn)[0] == {Stateful.COUNT}


def test_a_dead_dofn_is_forgotten():
    dofn = Plain()
    beam_introspection.get_dofn_specs(dofn)
    key = id(dofn)
    del dofn
    assert key not in beam_introspection._cache


def test_installed_pipeline_still_runs_state_and_timers(monkeypatch):
    monkeypatch.setattr(userstate, "get_dofn_specs", userstate.get_dofn_specs)
    beam_introspection.install()
    beam_introspection.install()
    assert userstate.get_dofn_specs is beam_introspection.get_dofn_specs
    assert userstate.is_stateful_dofn(Stateful()) and not userstate.is_stateful_dofn(Plain())
    with beam.Pipeline() as p:
        counted = p | beam.Create([("a", 1), ("a", 2), ("b", 3)]) | beam.ParDo(Stateful())
        # per-key state: the second "a" sees the first
        assert_that(counted, equal_to([("a", 1), ("a", 2), ("b", 1)]))
