"""Partitions searched in a few threads, each product on one BLAS thread."""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

THREADS = min(4, os.cpu_count() or 1)


def map_in_threads(search: Callable[[Sequence[int]], T], partitions: Sequence[int],
                   threads: int = THREADS) -> list[T]:
    """`search` over every `threads`-th partition, in `threads` threads.

    A search of many partitions is many small gathers and products, each too
    small to keep the cores busy on its own; numpy releases the GIL in both, so
    threads overlap them. Each product runs on one BLAS thread so that the
    threads do not oversubscribe the cores.
    """
    if threads <= 1:
        return [search(partitions)]
    from threadpoolctl import threadpool_limits

    with (threadpool_limits(1, user_api="blas"),
          concurrent.futures.ThreadPoolExecutor(threads) as pool):
        return list(pool.map(search, [partitions[k::threads] for k in range(threads)]))
