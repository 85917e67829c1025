"""One metrics namespace for every stage, and console progress for long work.

Counters (`records_read`, `decode_failed`, `embedded`, `pairs_found`, ...)
show in the Dataflow UI and in `PipelineResult.metrics()`. `Progress` logs
a line per stage at most every `interval` seconds, so a local run shows that
it is moving.
"""

from __future__ import annotations

import logging
import time

from apache_beam.metrics import Metrics

NAMESPACE = "clipdedup"
log = logging.getLogger("clipdedup.progress")


def counter(name: str):
    return Metrics.counter(NAMESPACE, name)


def distribution(name: str):
    return Metrics.distribution(NAMESPACE, name)


class Progress:
    """Counts items in one worker and logs `stage: N records (R/s)` now and then."""

    def __init__(self, stage: str, interval: float = 10.0, enabled: bool = True):
        self._stage = stage
        self._interval = interval
        self._enabled = enabled
        self._count = 0
        self._start = self._last = time.monotonic()

    def add(self, n: int = 1) -> None:
        self._count += n
        now = time.monotonic()
        if self._enabled and now - self._last >= self._interval:
            self._last = now
            rate = self._count / max(now - self._start, 1e-9)
            log.info("%s: %d records (%.1f/s in this worker)", self._stage, self._count, rate)
