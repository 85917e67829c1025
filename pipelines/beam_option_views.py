"""Beam's option views, parsed once per options class and flags.

`PipelineOptions.view_as(cls)` builds a new argparse parser for `cls` and
parses the flags again on every call, and Beam calls it thousands of times
while it applies, type-checks, translates and runs the transforms of a job
(`options.view_as(TypeOptions)` on every `apply`, among others): a large
part of a small run's fixed cost (docs/nightly.md, "The fixed cost of a
run"). What the parse gives depends only on `cls` and the flags, so it is
kept per (class, flags); each view is built from a deep copy of it, as a
fresh parse would be, and shares its source's option values as Beam's own
views do.

`install()` is called by the launcher (`pipelines.jobs.pipeline_options`);
workers on a remote engine run Beam unchanged. Options built without flags
(Beam then reads `sys.argv`) and option classes with their own `__init__`
go through Beam's own `view_as`.
"""

from __future__ import annotations

import argparse
import copy

from apache_beam.options.pipeline_options import PipelineOptions

_original = PipelineOptions.view_as
_parsed: dict[tuple[type, tuple[str, ...]], argparse.Namespace] = {}


def view_as(self: PipelineOptions, cls: type) -> PipelineOptions:
    """`PipelineOptions.view_as`, with the flags parsed once per (`cls`, flags)."""
    flags = self._flags
    if flags is None or cls.__init__ is not PipelineOptions.__init__:
        return _original(self, cls)
    key = (cls, tuple(flags))
    parsed = _parsed.get(key)
    if parsed is None:
        view = _original(self, cls)
        # a copy: the view's source may change the values it was given in place
        _parsed[key] = copy.deepcopy(view._visible_options)
        return view
    view = cls.__new__(cls)
    view._flags = flags
    view._visible_options = parsed
    for name in view._visible_option_list():
        if name not in self._all_options:  # as Beam's view_as: set once per source
            self._all_options[name] = copy.deepcopy(getattr(parsed, name))
    view._all_options = self._all_options
    return view


def install() -> None:
    """Makes every `PipelineOptions.view_as` use the kept parses; idempotent."""
    PipelineOptions.view_as = view_as
