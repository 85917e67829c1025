"""The multi-process local runner gives the same tables as one worker.

`--direct_num_workers=2 --direct_running_mode=multi_processing` runs bundles
in separate worker processes (each loads its own model), the cheapest way to
use every core of one machine before moving to Dataflow. Same inputs must
give the same ids, pairs and errors whatever the parallelism
(RELIABILITY.md: reruns with different parallelism give identical tables);
vectors are compared with a tolerance since batching differs.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.config import Config
from pipelines.jobs import execute
from tests.conftest import encode, random_image, write_tar

MULTI_PROCESS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def _dataset(root) -> list[str]:
    """Two shards and loose files: distinct images, byte copies, an edit, a broken file."""
    images = [encode(random_image(seed)) for seed in range(6)]
    resized = encode(random_image(0, size=(80, 54)))
    (root / "shards").mkdir()
    write_tar(str(root / "shards" / "0.tar"), [(f"{i}.jpg", b) for i, b in enumerate(images[:3])])
    write_tar(str(root / "shards" / "1.tar"),
              [("3.jpg", images[3]), ("4.jpg", images[4]), ("copy0.jpg", images[0])])
    (root / "files").mkdir()
    for name, data in (("5.jpg", images[5]), ("copy3.jpg", images[3]),
                       ("resized0.jpg", resized), ("broken.jpg", images[1][:200])):
        (root / "files" / name).write_bytes(data)
    return [str(root / "shards" / "*.tar"), str(root / "files")]


def _tables(run_folder: str) -> dict:
    out = {}
    for name, key in (("embeddings", "record_id"), ("errors", "record_id"),
                      ("exact_duplicates", "record_id_b"), ("duplicates", "record_id_b"),
                      ("near_duplicates", "record_id_b"), ("shards", "source_uri")):
        out[name] = pq.read_table(f"{run_folder}/{name}" + ("" if name == "embeddings"
                                                              else ".parquet")).sort_by(key)
    return out


@pytest.fixture
def config(tmp_path, tiny_model) -> Config:
    return Config(inputs=tuple(_dataset(tmp_path)), model=tiny_model, batch_size=4,
                  near_duplicate_threshold=0.5, max_error_fraction=0.5,
                  output=str(tmp_path / "out"))


def test_two_worker_processes_account_for_every_record(config, tmp_path):
    summary = execute(config.replace(run_id="two"), MULTI_PROCESS)
    counts = summary["counts"]
    assert (counts["records_read"], counts["embedded"], counts["exact_copies_not_embedded"],
            counts["record_errors"]) == (10, 7, 2, 1)
    errors = pq.read_table(f"{summary['run_folder']}/errors.parquet").to_pylist()
    assert [(e["source_uri"].rsplit("/", 1)[-1], e["stage"]) for e in errors] == \
        [("broken.jpg", "decode")]
    exact = pq.read_table(f"{summary['run_folder']}/exact_duplicates.parquet")
    copied = {hashlib.sha256((tmp_path / "files" / "copy3.jpg").read_bytes()).hexdigest(),
              hashlib.sha256(encode(random_image(0))).hexdigest()}
    assert sorted(exact.column("sha256").to_pylist()) == sorted(copied)


@pytest.mark.slow
def test_two_worker_processes_give_the_same_tables_as_one(config):
    one = execute(config.replace(run_id="one"), ["--direct_num_workers=1"])
    two = execute(config.replace(run_id="two"), MULTI_PROCESS)
    assert one["counts"] == two["counts"]
    assert one["counts"]["records_read"] == 10 and one["counts"]["record_errors"] == 1
    assert one["counts"]["exact_copies_not_embedded"] == 2
    a, b = _tables(one["run_folder"]), _tables(two["run_folder"])
    for name in a:
        columns = [c for c in a[name].column_names if c not in ("embedding", "score")]
        assert a[name].select(columns).equals(b[name].select(columns)), name
    np.testing.assert_allclose(np.stack(a["embeddings"]["embedding"].to_numpy(False)),
                               np.stack(b["embeddings"]["embedding"].to_numpy(False)),
                               atol=1e-5)
    for name in ("duplicates", "near_duplicates"):
        np.testing.assert_allclose(a[name]["score"].to_numpy(), b[name]["score"].to_numpy(),
                                   atol=1e-5)
    assert len(a["near_duplicates"]) + len(a["duplicates"]) > 0
