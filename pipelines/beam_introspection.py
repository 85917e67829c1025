"""Beam's DoFn state/timer introspection, computed once per DoFn instead of every time.

Beam asks `userstate.get_dofn_specs(dofn)` whether a DoFn uses state or
timers many times over while a pipeline is built, translated and run (in
`ParDo`, in `to_runner_api`, in each runner's visitors, in every bundle
processor), and each answer inspects the signature of every method of the
DoFn. The answer depends only on the DoFn's methods and their default
arguments, which do not change once the DoFn exists, so it is kept per DoFn
object. With the hundreds of ParDos of a run's jobs this repetition is a
large part of a small run's fixed cost (docs/nightly.md, "The fixed cost of a run").

`install()` is called by the launcher (`pipelines.jobs.pipeline_options`);
workers on a remote engine run Beam unchanged.
"""

from __future__ import annotations

import weakref

from apache_beam.transforms import userstate

_original = userstate.get_dofn_specs
_cache: dict[int, tuple[weakref.ref, frozenset, frozenset]] = {}


def _forget(key: int) -> None:
    _cache.pop(key, None)


def get_dofn_specs(dofn) -> tuple[set, set]:
    """`userstate.get_dofn_specs`, remembered for as long as `dofn` lives."""
    key = id(dofn)
    hit = _cache.get(key)
    if hit is not None and hit[0]() is dofn:
        return set(hit[1]), set(hit[2])
    state_specs, timer_specs = _original(dofn)
    try:
        ref = weakref.ref(dofn, lambda _, key=key: _forget(key))
    except TypeError:  # an object without weak references: not remembered
        return state_specs, timer_specs
    _cache[key] = (ref, frozenset(state_specs), frozenset(timer_specs))
    return state_specs, timer_specs


def install() -> None:
    """Makes Beam's own callers use the remembered answer; idempotent."""
    userstate.get_dofn_specs = get_dofn_specs
