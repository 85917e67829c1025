"""Beam's DoFn state/timer introspection, computed once per DoFn instead of every time.

Beam asks `userstate.get_dofn_specs(dofn)` whether a DoFn uses state or
timers many times over while a pipeline is built, translated and run (in
`ParDo`, in `to_runner_api`, in each runner's visitors, in every bundle
processor), and each answer inspects the signature of every method of the
DoFn. The answer depends only on the DoFn's methods and their default
arguments, which do not change once the DoFn exists, so it is kept per DoFn
object. With the hundreds of ParDos of a run's jobs this repetition is a
large part of a small run's fixed cost (docs/nightly.md, "The fixed cost of a run").

A DoFn seen for the first time is answered without inspecting signatures
when none of the functions Beam would inspect has a `DoFn.*Param` default
(state and timer specs are such defaults): then Beam's answer is no state
and no timers. Every other DoFn (a `DoFn.*Param` default, a function that
is not plain, or an `_inspect_*` hook other than `CallableWrapperDoFn`'s)
gets Beam's own answer. Most first sightings are Beam's and ours `Map`s and
`FlatMap`s, once as a pipeline is built and once more, unpickled, in each
bundle processor.

`install()` is called by the launcher (`pipelines.jobs.pipeline_options`);
workers on a remote engine run Beam unchanged.
"""

from __future__ import annotations

import types
import weakref

from apache_beam.transforms import core, userstate

_original = userstate.get_dofn_specs
_cache: dict[int, tuple[weakref.ref, frozenset, frozenset]] = {}


def _forget(key: int) -> None:
    _cache.pop(key, None)


def _plain_defaults(fn) -> tuple | None:
    """Every default value of `fn`'s parameters, where `inspect.signature` would
    read them from the function itself; None where it might not (wrapped or
    partial functions, builtins, callable objects)."""
    if isinstance(fn, types.MethodType):
        fn = fn.__func__
    if (not isinstance(fn, types.FunctionType) or hasattr(fn, "__wrapped__")
            or hasattr(fn, "__signature__")):
        return None
    return (fn.__defaults__ or ()) + tuple((fn.__kwdefaults__ or {}).values())


def _defaults_of(dofn, name: str, method) -> tuple | None:
    """What `core.get_function_arguments(dofn, name)` would give as defaults, or
    None where that takes Beam's own inspection."""
    if not hasattr(dofn, f"_inspect_{name}"):
        return _plain_defaults(method)
    if type(dofn) is core.CallableWrapperDoFn and name == "process":
        if dofn._fullargspec:
            return tuple(dofn._fullargspec[1])
        return _plain_defaults(dofn._process_argspec_fn())
    return None


def _has_no_dofn_params(dofn) -> bool:
    """True when no method Beam inspects has a `DoFn.*Param` default, so that
    `userstate.get_dofn_specs` would find no state and no timer spec."""
    for name in dir(dofn):
        method = getattr(dofn, name, None)
        if not isinstance(method, types.MethodType):
            continue
        defaults = _defaults_of(dofn, name, method)
        if defaults is None or any(isinstance(d, core._DoFnParam) for d in defaults):
            return False
    return True


def get_dofn_specs(dofn) -> tuple[set, set]:
    """`userstate.get_dofn_specs`, remembered for as long as `dofn` lives."""
    key = id(dofn)
    hit = _cache.get(key)
    if hit is not None and hit[0]() is dofn:
        return set(hit[1]), set(hit[2])
    state_specs, timer_specs = (set(), set()) if _has_no_dofn_params(dofn) else _original(dofn)
    try:
        ref = weakref.ref(dofn, lambda _, key=key: _forget(key))
    except TypeError:  # an object without weak references: not remembered
        return state_specs, timer_specs
    _cache[key] = (ref, frozenset(state_specs), frozenset(timer_specs))
    return state_specs, timer_specs


def install() -> None:
    """Makes Beam's own callers use the remembered answer; idempotent."""
    userstate.get_dofn_specs = get_dofn_specs
