"""The embed stage end to end with an int8 backend and one torch thread."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from pipelines.cli import run as cli_run
from tests.conftest import encode, random_image, write_tar


def test_embed_with_torch_int8_backend(tiny_model, tmp_path):
    blobs = [encode(random_image(i, (640, 480))) for i in range(5)]
    (tmp_path / "data").mkdir()
    write_tar(str(tmp_path / "data" / "a.tar"),
              [(f"{i}.jpg", b) for i, b in enumerate(blobs)] + [("copy.jpg", blobs[0])])
    status = cli_run(["-q", "embed", "--input", str(tmp_path / "data"), "--model", tiny_model,
                      "--output", str(tmp_path / "out"), "--run-id", "r", "--backend",
                      "torch-int8", "--num-threads", "1", "--batch-size", "2"])
    assert status == 0
    table = pq.read_table(tmp_path / "out" / "r" / "embeddings")
    assert table.num_rows == 5  # the byte copy is not embedded again
    summary = json.loads((tmp_path / "out" / "r" / "summary.json").read_text())
    assert summary["config"]["backend"] == "torch-int8"
    assert summary["counts"]["exact_copies_not_embedded"] == 1
