"""The whole CLI on a generated dataset mixing the three input kinds."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from sentence_transformers import util

from pipelines.cli import run
from pipelines.run_folder import RunExistsError
from tests.conftest import encode, random_image, write_parquet_images, write_tar


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    imgs = [random_image(i, (160, 120)) for i in range(8)]
    jpgs = [encode(im) for im in imgs]
    (root / "shards").mkdir()
    write_tar(str(root / "shards" / "0.tar"),
              [(f"{i:03d}.jpg", jpgs[i]) for i in range(4)] + [("004.json", b"{}")])
    write_tar(str(root / "shards" / "1.tar"), [(f"{i:03d}.jpg", jpgs[i]) for i in range(4, 6)])
    files = root / "files"
    (files / "sub").mkdir(parents=True)
    (files / "copy-of-0.jpg").write_bytes(jpgs[0])           # byte copy across kinds
    (files / "sub" / "copy-of-5.jpg").write_bytes(jpgs[5])   # in a subfolder
    (files / "six.png").write_bytes(encode(imgs[6], "PNG", compress_level=1))
    (files / "six-again.png").write_bytes(encode(imgs[6], "PNG", compress_level=9))  # same pixels
    (files / "one-smaller.jpg").write_bytes(encode(imgs[1].resize((80, 60))))  # edited copy
    (files / "broken.jpg").write_bytes(jpgs[2][:200])
    write_parquet_images(str(root / "pq" / "0.parquet"), [jpgs[7], jpgs[3], encode(imgs[2], quality=50)],
                         "struct")
    return root


def _inputs(root):
    return ["--input", str(root / "shards" / "*.tar"), "--input", str(root / "files"),
            "--input", str(root / "pq" / "*.parquet")]


@pytest.fixture(scope="module")
def published(dataset, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    assert run(["run", *_inputs(dataset), "--model", tiny_model, "--output", str(out),
                "--run-id", "r1", "--duplicate-threshold", "0.999",
                "--near-duplicate-threshold", "0.95", "--max-error-fraction", "0.2",
                "-q"]) == 0
    return out / "r1"


def test_run_folder_is_complete(published):
    names = set(os.listdir(published))
    assert {"_SUCCESS", "summary.json", "embeddings", "duplicates.parquet",
            "near_duplicates.parquet", "exact_duplicates.parquet", "errors.parquet",
            "shards.parquet"} <= names
    assert not [n for n in os.listdir(published.parent) if n.startswith("_staging")]


def test_counts_add_up_and_stand_in_is_declared(published):
    summary = json.loads((published / "summary.json").read_text())
    c = summary["counts"]
    # 6 shard images + 1 sample without image, 6 files, 3 parquet rows
    assert c["records_read"] == 16
    assert c["exact_copies_not_embedded"] == 3  # two cross-kind copies + parquet copy of 3
    assert c["errors_by_reason"] == {"no_image_member": 1, "truncated": 1}
    assert c["embedded"] == 16 - 3 - 2
    assert summary["model_is_stand_in"] is True
    emb = pd.read_parquet(published / "embeddings")
    assert len(emb) == c["embedded"] and emb["record_id"].is_unique
    assert np.allclose(np.linalg.norm(np.stack(emb["embedding"]), axis=1), 1, atol=1e-5)


def test_exact_duplicates_are_the_planted_copies(published):
    exact = pd.read_parquet(published / "exact_duplicates.parquet")
    emb = pd.read_parquet(published / "embeddings")
    assert (exact["record_id_a"] < exact["record_id_b"]).all()
    assert set(exact["record_id_a"]) <= set(emb["record_id"])
    assert not set(exact["record_id_b"]) & set(emb["record_id"])


def test_pairs_equal_paraphrase_mining(published):
    emb = pd.read_parquet(published / "embeddings").sort_values("record_id")
    ids = emb["record_id"].tolist()
    x = torch.tensor(np.stack(emb["embedding"]))
    ref = util.paraphrase_mining_embeddings(x, top_k=len(ids), max_pairs=10**9)
    ref_dup = {(ids[i], ids[j]) for s, i, j in ref if s >= 0.999}
    ref_near = {(ids[i], ids[j]) for s, i, j in ref if 0.95 <= s < 0.999}
    dup = pd.read_parquet(published / "duplicates.parquet")
    near = pd.read_parquet(published / "near_duplicates.parquet")
    assert set(zip(dup.record_id_a, dup.record_id_b)) == ref_dup
    assert set(zip(near.record_id_a, near.record_id_b)) == ref_near
    keys = dict(zip(emb.record_id, emb.key))
    assert {frozenset(keys[i] for i in pair) for pair in ref_dup} >= {
        frozenset(k for k in keys.values() if k.endswith(("six.png", "six-again.png")))}


def test_mine_alone_on_the_embeddings_gives_the_same_pairs(published, tmp_path):
    assert run(["mine", "--embeddings", str(published / "embeddings"), "--output",
                str(tmp_path), "--run-id", "m", "--near-duplicate-threshold", "0.95", "-q"]) == 0
    for table in ("duplicates.parquet", "near_duplicates.parquet"):
        a = pd.read_parquet(published / table).sort_values(["record_id_a", "record_id_b"])
        b = pd.read_parquet(tmp_path / "m" / table).sort_values(["record_id_a", "record_id_b"])
        assert a[["record_id_a", "record_id_b"]].values.tolist() == \
            b[["record_id_a", "record_id_b"]].values.tolist()


def test_published_run_is_not_overwritten(published, dataset, tiny_model):
    with pytest.raises(RunExistsError):
        run(["embed", *_inputs(dataset), "--model", tiny_model, "--output",
             str(published.parent), "--run-id", "r1", "-q"])
    assert (published / "_SUCCESS").exists()


def test_error_budget_fails_the_run_and_publishes_nothing(dataset, tiny_model, tmp_path):
    from pipelines.checks import RunCheckError

    with pytest.raises(RunCheckError, match="broken.jpg"):
        run(["embed", *_inputs(dataset), "--model", tiny_model, "--output", str(tmp_path),
             "--run-id", "r", "--max-error-fraction", "0.05", "-q"])
    assert not (tmp_path / "r").exists()


def test_summary_reports_the_models_own_time(published):
    """inference_seconds: Beam's RunInference batch latencies, summed; on the
    local runner (one worker) a part of the embed stage's wall time."""
    t = json.loads((published / "summary.json").read_text())["timings"]
    assert 0 < t["inference_seconds"] < t["embed_seconds"]


def test_embeddings_carry_the_phash_and_phash_pairs_name_their_signal(published):
    from transforms.phash import hamming

    emb = pd.read_parquet(published / "embeddings")
    assert emb["phash"].dtype == np.int64 and emb["phash"].notna().all()
    by_key = {os.path.basename(k): h for k, h in zip(emb["key"], emb["phash"])}
    assert by_key["six.png"] == by_key["six-again.png"]  # same pixels, other bytes
    pairs = pd.read_parquet(published / "phash_pairs.parquet")
    assert (pairs["record_id_a"] < pairs["record_id_b"]).all()
    assert (pairs["hamming"] <= 3).all() and set(pairs["signal"]) <= {"both", "phash"}
    assert ((pairs["signal"] == "both") == (pairs["score"] >= 0.95)).all()
    h = dict(zip(emb["record_id"], emb["phash"]))
    assert all(hamming(h[a], h[b]) == d
               for a, b, d in zip(pairs["record_id_a"], pairs["record_id_b"], pairs["hamming"]))
    keys = dict(zip(emb["record_id"], emb["key"].map(os.path.basename)))
    found = {frozenset((keys[a], keys[b])) for a, b in zip(pairs["record_id_a"], pairs["record_id_b"])}
    assert frozenset(("six.png", "six-again.png")) in found
    summary = json.loads((published / "summary.json").read_text())
    assert summary["counts"]["phash_pairs"] == len(pairs) == summary["phash"]["phash_pairs"]
    assert summary["model_kind"] == "sentence-transformers"
