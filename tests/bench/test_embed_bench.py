"""bench/embed.py helpers: datasets of distinct images, memory sampling."""

import hashlib
import importlib.util
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_embed", ROOT / "bench" / "embed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variants_are_byte_distinct_and_decodable(tmp_path):
    bench = _bench()
    folder = bench.build_dataset(str(tmp_path / "d"), "mixed", 12, (640, 480), distinct=4,
                                 shards=2)
    blobs = bench._tar_blobs(folder)
    assert len(blobs) == 12
    assert len({hashlib.sha256(b).digest() for b in blobs}) == 12  # no byte copies
    from transforms.decode import decode_image

    for blob in blobs:  # the unique tail does not stop decoding
        assert decode_image(blob)[0].shape == (224, 224, 3)


def test_peak_memory_sees_this_process():
    bench = _bench()
    with bench.PeakMemory() as mem:
        block = bytearray(64 * 2**20)
        block[::4096] = b"x" * len(block[::4096])
    assert mem.peak > 64 * 2**20
    assert bench._tree_rss(os.getpid()) > 0
