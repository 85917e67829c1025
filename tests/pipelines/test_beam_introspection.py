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


def _every_dofn(pipeline: beam.Pipeline) -> list:
    dofns = []

    class Visitor(beam.pipeline.PipelineVisitor):
        def visit_transform(self, applied):
            if isinstance(applied.transform, beam.ParDo):
                dofns.append(applied.transform.dofn)

    pipeline.visit(Visitor())
    return dofns


class Windowed(beam.DoFn):
    def process(self, element, window=beam.DoFn.WindowParam):
        yield element


def _module_fn(x, state=beam.DoFn.StateParam(Stateful.COUNT)):
    return [x]


def _decorated(fn):
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


def test_the_answer_without_inspection_is_beams_for_every_dofn_of_the_jobs(tmp_path):
    from pipelines import mine_pipeline
    from pipelines.config import Config

    config = Config(inputs=[str(tmp_path)])
    dofns = _every_dofn(mine_pipeline.build_pipeline(config, str(tmp_path / "e"), str(tmp_path),
                                                     n_records=1))
    dofns += [Plain(), Stateful(), WithTimer(), Windowed(),
              beam.Map(lambda x: x).dofn, beam.FlatMap(_module_fn).dofn,
              beam.FlatMap(_decorated(_module_fn)).dofn, beam.Map(str.strip).dofn,
              beam.FlatMap(Windowed().process).dofn]
    assert len(dofns) > 100
    fast = [d for d in dofns if beam_introspection._has_no_dofn_params(d)]
    assert len(fast) > len(dofns) // 2  # most of them never reach Beam's inspection
    for dofn in dofns:
        assert beam_introspection.get_dofn_specs(dofn) == beam_introspection._original(dofn), dofn
    for with_params in (Stateful(), WithTimer(), Windowed()):  # Beam's own answer for these
        assert not beam_introspection._has_no_dofn_params(with_params), with_params
