"""Python's cyclic garbage collector kept off objects that live as long as the process.

A run imports Beam, torch, transformers and sentence-transformers (millions
of objects: modules, functions, classes) and loads a model. Each full
collection walks every one of them, and the imports themselves trigger full
collections as the heap grows, none of which can free anything, since
modules stay loaded: a large part of a small run's fixed cost
(docs/nightly.md, "The fixed cost of a run").

`long_lived()` wraps such a block: no automatic collection inside it, then
one collection of what the block left behind (so no garbage is kept), then
`gc.freeze()`, which moves every object alive into the permanent generation
that later collections skip (the use the `gc` documentation describes).

It is active only in a process that called `enable()`: the `clipdedup`
command does, first thing. Elsewhere (Beam workers on a remote engine, tests
calling the launcher in-process) it does nothing, because freezing also
keeps whatever else is alive at that moment out of later collections, which
a long-lived worker or test process should not accept for the sake of a
faster start.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_enabled = False


def enable() -> None:
    """Lets `long_lived()` blocks pause and freeze in this process."""
    global _enabled
    _enabled = True


@contextlib.contextmanager
def long_lived() -> Iterator[None]:
    """A block whose new objects live as long as the process (imports, a model):
    no automatic collection inside, then a collection and `gc.freeze()`.
    Does nothing unless `enable()` was called in this process."""
    if not _enabled:
        yield
        return
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.collect()  # what the block left as garbage is freed, not frozen
        gc.freeze()
        if was_enabled:
            gc.enable()
