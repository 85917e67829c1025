"""Leaving the `clipdedup` process without tearing native libraries down.

A finished run's process still holds native thread pools and objects:
pyarrow's CPU and I/O pools (C++ `std::thread`s) and readers, grpc's event
engine and (with `--runner DirectRunner`) the loopback worker-pool server
that Beam's DirectRunner starts for a Prism attempt and leaves running when
Prism cannot start (offline),
torch's OpenMP team, OpenBLAS servers, tokenizers' rayon pool. The
interpreter's shutdown frees the last Python objects while these libraries'
static state is being torn down, and now and then a finished `make demo`
aborted after printing its summary (`terminate called without an active
exception`: SIGABRT in the main thread with no Python frame left, the
signature pyarrow's readers and pools are reported to leave when they
outlive the interpreter, apache/arrow#34314; docs/reliability.md).

`exit_process` does the part of shutdown that matters and skips the rest:
a garbage collection while every library still works, the `atexit` handlers
(Beam's clean-ups, logging's flush), a flush of stdout and stderr, then
`os._exit`. By then the run's outputs are published and closed.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from typing import NoReturn


def exit_process(code: int) -> NoReturn:
    """Ends the process with `code` after `atexit` handlers and flushed streams,
    without the interpreter's and native libraries' teardown."""
    gc.collect()  # readers, files and servers die while their libraries are intact
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or gone: nothing left to lose
            pass
    os._exit(code)
