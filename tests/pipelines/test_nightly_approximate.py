"""Approximate incremental nights: the previous run's partitions reused.

With `nprobe == nlist` every row probes every partition, so approximate mining
finds every pair: a night's tables must then equal a full exact run's, pair
for pair, through the night's own code path (new rows assigned to the old
centroids, only the partitions they touch searched, old pairs carried). With
`nprobe < nlist` a night's pairs must equal one search over all its rows with
the same partitions (the tables it publishes for the next night).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipelines.cli import exit_code
from tests.conftest import encode, random_image, write_tar
from tests.pipelines.test_nightly import assert_same_tables

THRESHOLDS = ["--duplicate-threshold", "0.995", "--near-duplicate-threshold", "0.97",
              "--max-error-fraction", "0.3", "-q"]


def _config(folder, nlist, nprobe, mode="approximate") -> str:
    path = folder / f"{mode}-{nlist}-{nprobe}.yaml"
    probes = "partitions_per_vector" if mode == "distributed" else "nprobe"
    path.write_text(f"mode: {mode}\nnlist: {nlist}\n{probes}: {nprobe}\n"
                    "recall_sample_size: 1000\n")
    return str(path)


def _run(data, out, run_id, model, config, *extra) -> dict:
    assert exit_code(["run", "--config", config, "--input", str(data), "--output", str(out),
                      "--run-id", run_id, "--model", model, *THRESHOLDS, *extra]) == 0
    return json.loads((out / run_id / "summary.json").read_text())


def _exact(data, out, run_id, model) -> dict:
    assert exit_code(["run", "--input", str(data), "--output", str(out), "--run-id", run_id,
                      "--model", model, "--mode", "exact", *THRESHOLDS]) == 0
    return json.loads((out / run_id / "summary.json").read_text())


def _shard(path, seeds):
    write_tar(str(path), [(f"{s}.jpg", encode(random_image(s, (96, 64)))) for s in seeds])


@pytest.fixture(scope="module")
def nights(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("approximate-nights")
    data, out, full = root / "data", root / "out", root / "full"
    data.mkdir()
    every = _config(root, 3, 3)
    for k in range(4):
        _shard(data / f"a{k}.tar", range(5 * k, 5 * k + 5))
    runs = {"n1": _run(data, out, "n1", tiny_model, every, "--incremental")}
    _shard(data / "b0.tar", [100, 101, 2, 3])  # two new images, two byte copies of old ones
    runs["n2"] = _run(data, out, "n2", tiny_model, every, "--incremental")
    runs["f2"] = _exact(data, full, "f2", tiny_model)
    (data / "a1.tar").unlink()
    _shard(data / "c0.tar", [102, 6])  # a new image and a copy of one that left with a1
    runs["n3"] = _run(data, out, "n3", tiny_model, every, "--incremental")
    runs["f3"] = _exact(data, full, "f3", tiny_model)
    return {"root": root, "data": data, "out": out, "full": full, "runs": runs}


def test_an_approximate_run_publishes_its_partitions(nights):
    run = nights["out"] / "n1"
    centroids = pd.read_parquet(run / "centroids.parquet")
    partitions = pd.read_parquet(run / "partitions.parquet")
    embeddings = pd.read_parquet(run / "embeddings")
    assert centroids["partition"].tolist() == [0, 1, 2]
    assert sorted(partitions["record_id"]) == sorted(embeddings["record_id"])
    assert {len(p) for p in partitions["probes"]} == {3}
    mining = nights["runs"]["n1"]["mining"]
    assert mining["centroids_trained_n"] == len(embeddings) and mining["nlist"] == 3


def test_a_night_reuses_the_centroids_and_equals_a_full_exact_run(nights):
    summary = nights["runs"]["n2"]
    night, mining = summary["incremental"], summary["mining"]
    assert not night["remined_in_full"] and mining["centroids_reused"]
    assert night["pairs_carried"] > 0 and night["pairs_new"] > 0
    old, now = (set(pd.read_parquet(nights["out"] / r / "embeddings")["record_id"])
                for r in ("n1", "n2"))
    # the two new images, and each byte copy whose record id (a hash of where it was
    # found, so of the test's folder) now stands for its content
    assert night["embeddings_new_to_mining"] == len(now - old) >= 2
    assert mining["recall_scope"] == "new records" and mining["recall_sampled"] == 1.0
    assert mining["centroids_trained_n"] == nights["runs"]["n1"]["mining"]["centroids_trained_n"]
    before = pd.read_parquet(nights["out"] / "n1" / "centroids.parquet")
    after = pd.read_parquet(nights["out"] / "n2" / "centroids.parquet")
    assert np.array_equal(np.stack(before["centroid"]), np.stack(after["centroid"]))
    assert_same_tables(nights["out"] / "n2", nights["full"] / "f2")


def test_chained_nights_equal_full_exact_runs(nights):
    assert not nights["runs"]["n3"]["incremental"]["remined_in_full"]
    assert_same_tables(nights["out"] / "n3", nights["full"] / "f3")
    partitions = pd.read_parquet(nights["out"] / "n3" / "partitions.parquet")
    embeddings = pd.read_parquet(nights["out"] / "n3" / "embeddings")
    assert sorted(partitions["record_id"]) == sorted(embeddings["record_id"])


def _pairs(run) -> set:
    return {tuple(r) for t in ("duplicates", "near_duplicates")
            for r in pd.read_parquet(run / f"{t}.parquet")[["record_id_a", "record_id_b"]]
            .itertuples(index=False)}


def test_with_fewer_probes_a_night_equals_one_search_with_its_partitions(nights, tiny_model):
    from transforms.mine.approximate import search_partitions
    from transforms.mine.transform import load_embeddings_arrow

    root, data = nights["root"], nights["data"]
    some = _config(root, 4, 1)
    out = root / "few-probes"
    first = _run(data, out, "m1", tiny_model, some)
    _shard(root / "extra.tar", [200, 201, 202, 7])
    night_data = [str(data), str(root / "extra.tar")]
    assert exit_code(["run", "--config", some, "--input", *night_data, "--output", str(out),
                      "--run-id", "m2", "--model", tiny_model, "--previous", str(out / "m1"),
                      *THRESHOLDS]) == 0
    summary = json.loads((out / "m2" / "summary.json").read_text())
    assert summary["mining"]["centroids_reused"] and first["mining"]["nprobe"] == 1
    ids, x = load_embeddings_arrow(str(out / "m2" / "embeddings" / "*.parquet"))
    table = pd.read_parquet(out / "m2" / "partitions.parquet").set_index("record_id")
    probes = np.stack(table.loc[ids.to_pylist(), "probes"]).astype(np.int32)
    keys, _, _ = search_partitions(x, probes, 4, 0.97)
    names = ids.to_pylist()
    expected = {(names[k // len(x)], names[k % len(x)]) for k in keys.tolist()}
    assert _pairs(out / "m2") == expected


def test_new_records_that_fit_no_centroid_train_them_again(nights, tiny_model, monkeypatch,
                                                           tmp_path):
    from transforms.mine import incremental_approximate

    monkeypatch.setattr(incremental_approximate, "MAX_DISTANCE_GROWTH", 0.0)  # nothing fits
    monkeypatch.setattr(incremental_approximate, "MIN_FIT_ROWS", 1)
    summary = _run(nights["data"], nights["out"], "n4", tiny_model,
                   _config(nights["root"], 3, 3), "--previous", str(nights["out"] / "n2"))
    night = summary["incremental"]
    assert night["remined_in_full"] and "fit the previous centroids less well" in \
        night["remine_reason"]
    assert night["pairs_carried"] == 0 and not summary["mining"]["centroids_reused"]
    assert_same_tables(nights["out"] / "n4", nights["full"] / "f3")


def test_a_night_below_the_recall_target_trains_the_centroids_again(nights, tiny_model,
                                                                   monkeypatch):
    from transforms.mine import incremental_approximate

    real = incremental_approximate.sampled_recall

    def low(*args, **kwargs):
        return dict(real(*args, **kwargs), recall_sampled=0.5)

    monkeypatch.setattr(incremental_approximate, "sampled_recall", low)
    summary = _run(nights["data"], nights["out"], "n5", tiny_model,
                   _config(nights["root"], 3, 3), "--previous", str(nights["out"] / "n2"))
    night = summary["incremental"]
    assert night["remined_in_full"]
    assert night["remine_reason"] == ("recall on the new records 0.5000 is below the target "
                                      "0.99 with the previous centroids")
    assert summary["mining"]["recall_sampled"] == 1.0  # the full mining's own measure
    assert_same_tables(nights["out"] / "n5", nights["full"] / "f3")


@pytest.mark.parametrize(("nlist", "nprobe", "reason"), [
    (3, 2, "nprobe 3 -> 2: the probes change"),
    (5, 3, "nlist 3 -> 5: the partitions change"),
])
def test_other_partitions_mine_every_pair_again(nights, tiny_model, nlist, nprobe, reason):
    summary = _run(nights["data"], nights["out"], f"p{nlist}{nprobe}", tiny_model,
                   _config(nights["root"], nlist, nprobe), "--previous",
                   str(nights["out"] / "n3"))
    assert summary["incremental"]["remined_in_full"]
    assert summary["incremental"]["remine_reason"] == reason
    assert "centroids_reused" not in summary["mining"]


@pytest.mark.parametrize(("damage", "reason"), [
    ("remove", "the previous run has no partitions.parquet"),
    ("garble", "the previous run's partitions.parquet cannot be read: "),
])
def test_a_previous_run_with_a_damaged_partitions_table_mines_every_pair_again(
        nights, tiny_model, tmp_path, damage, reason):
    import shutil

    previous = tmp_path / "n3-copy"
    shutil.copytree(nights["out"] / "n3", previous)
    if damage == "remove":
        (previous / "partitions.parquet").unlink()
    else:
        (previous / "partitions.parquet").write_bytes(b"not parquet at all")
    summary = _run(nights["data"], tmp_path / "out", "q1", tiny_model,
                   _config(nights["root"], 3, 3), "--previous", str(previous))
    assert summary["incremental"]["remine_reason"].startswith(reason)
    assert_same_tables(tmp_path / "out" / "q1", nights["full"] / "f3")


def test_a_killed_approximate_night_leaves_the_history_as_it_was(nights, tiny_model,
                                                                 monkeypatch):
    from tests.pipelines.test_nightly import _files
    from transforms.mine import incremental_approximate

    out = nights["out"]
    before = _files(out)

    def killed(self, *args, **kwargs):
        raise RuntimeError("killed mid-run (injected)")

    monkeypatch.setattr(incremental_approximate._MineNewApproximateFn, "process", killed)
    assert exit_code(["run", "--config", _config(nights["root"], 3, 3), "--input",
                      str(nights["data"]), "--output", str(out), "--run-id", "k1",
                      "--model", tiny_model, "--previous", str(out / "n3"), *THRESHOLDS]) != 0
    after = _files(out)
    assert {k: v for k, v in after.items() if not k.startswith("_staging-k1")} == before
    assert not (out / "k1").exists()


def test_partitions_reason_for_a_grown_table():
    from pipelines.previous_run import _partitions_reason

    mining = {"centroids_trained_n": 100, "nlist": 10, "nprobe": 4}
    assert _partitions_reason(mining, 200, 4, 0) is None
    assert "more than 2 times the 100" in _partitions_reason(mining, 201, 4, 0)
    assert "predates" in _partitions_reason({"nlist": 10, "nprobe": 4}, 50, 4, 0)
    clamped = dict(mining, nprobe=10)  # a configured nprobe 12 probes all 10 partitions
    assert _partitions_reason(clamped, 150, 12, 0) is None
    assert _partitions_reason(clamped, 150, 9, 0) == "nprobe 10 -> 9: the probes change"


@pytest.fixture(scope="module")
def distributed_nights(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("distributed-nights")
    data, out, full = root / "data", root / "out", root / "full"
    data.mkdir()
    for k in range(3):
        _shard(data / f"a{k}.tar", range(5 * k, 5 * k + 5))
    every, some = _config(root, 3, 3, "distributed"), _config(root, 4, 1, "distributed")
    runs = {"d1": _run(data, out, "d1", tiny_model, every),
            "s1": _run(data, out, "s1", tiny_model, some)}
    _shard(data / "b0.tar", [100, 101, 2])
    runs["d2"] = _run(data, out, "d2", tiny_model, every, "--previous", str(out / "d1"))
    runs["s2"] = _run(data, out, "s2", tiny_model, some, "--previous", str(out / "s1"))
    runs["f2"] = _exact(data, full, "f2", tiny_model)
    return {"out": out, "full": full, "runs": runs}


def test_a_distributed_night_reuses_the_centroids_and_equals_a_full_exact_run(
        distributed_nights):
    out, runs = distributed_nights["out"], distributed_nights["runs"]
    assert runs["d1"]["mining"]["centroids_trained_n"] == 15
    assert len(pd.read_parquet(out / "d1" / "centroids.parquet")) == 3
    night, mining = runs["d2"]["incremental"], runs["d2"]["mining"]
    assert not night["remined_in_full"] and mining["centroids_reused"]
    assert mining["recall_scope"] == "new records" and mining["recall_sampled"] == 1.0
    assert night["pairs_carried"] > 0 and night["pairs_new"] > 0
    assert mining["centroids_trained_n"] == 15
    assert_same_tables(out / "d2", distributed_nights["full"] / "f2")


def test_a_distributed_night_equals_one_run_with_its_centroids(distributed_nights):
    """With one partition per vector, a pair is found when both ends share their
    partition: the night's pairs are exactly those, under the previous centroids."""
    from transforms.mine.transform import load_embeddings_arrow

    out = distributed_nights["out"]
    assert distributed_nights["runs"]["s2"]["mining"]["centroids_reused"]
    ids, x = load_embeddings_arrow(str(out / "s2" / "embeddings" / "*.parquet"))
    centroids = np.stack(pd.read_parquet(out / "s1" / "centroids.parquet")["centroid"])
    part = np.argmax(x @ centroids.T, axis=1)
    scores = x @ x.T
    names = ids.to_pylist()
    expected = {(names[i], names[j]) for i in range(len(x)) for j in range(i + 1, len(x))
                if part[i] == part[j] and scores[i, j] >= 0.97}
    assert _pairs(out / "s2") == expected
