"""A generated run shared by the report tests (one run per session)."""

from __future__ import annotations

import json

import pytest

from pipelines.cli import run as cli_run
from tests.conftest import encode, random_image, write_parquet_images, write_tar


def edited(seed: int) -> list[bytes]:
    img = random_image(seed, (160, 120))
    return [encode(img.resize((120, 90)), quality=70), encode(img, quality=40),
            encode(img.crop((8, 6, 152, 114)))]


@pytest.fixture(scope="session")
def report_dataset(tmp_path_factory):
    """Ten images with edited versions and byte copies over a tar shard (cut short,
    so it does not end cleanly), a folder of files (one broken) and a Parquet file."""
    root = tmp_path_factory.mktemp("report-data")
    originals = [encode(random_image(i, (160, 120))) for i in range(10)]
    shard = write_tar(str(root / "0.tar"), [(f"{i:03d}.jpg", originals[i]) for i in range(6)])
    with open(shard, "rb") as f:
        data = f.read()
    with open(shard, "wb") as f:  # the end-of-archive padding cut: the shard is reported
        f.write(data[:-1024] + b"\x01" * 16)
    files = root / "files"
    files.mkdir()
    for i in range(6, 10):
        (files / f"{i}.jpg").write_bytes(originals[i])
    for i in (0, 1, 6):
        for j, blob in enumerate(edited(i)):
            (files / f"{i}-edit{j}.jpg").write_bytes(blob)
    (files / "0-copy.jpg").write_bytes(originals[0])
    (files / "6-copy-a.jpg").write_bytes(originals[6])
    (files / "6-copy-b.jpg").write_bytes(originals[6])
    (files / "broken.jpg").write_bytes(originals[1][:200])
    write_parquet_images(str(root / "pq" / "0.parquet"), [originals[7], *edited(7)], "struct")
    return root


@pytest.fixture(scope="session")
def report_run(report_dataset, tiny_model, tmp_path_factory):
    """(published run folder, its summary)."""
    out = tmp_path_factory.mktemp("report-out")
    assert cli_run(["run", "--input", str(report_dataset / "0.tar"), "--input",
                    str(report_dataset / "files"), "--input", str(report_dataset / "pq"),
                    "--model", tiny_model, "--output", str(out), "--run-id", "r",
                    "--near-duplicate-threshold", "0.9", "--max-error-fraction", "0.5",
                    "-q"]) == 0
    folder = out / "r"
    return folder, json.loads((folder / "summary.json").read_text())
