"""BuildGroups on the engine gives build_groups' tables, lines and stats (the reference)."""

import numpy as np
import pyarrow as pa
import pytest

from tests.transforms.manifest.helpers import expected_and_actual
from transforms.mine.pairs import canonical_pairs


def _instance(seed: int, n: int = 40, with_uri: bool = True):
    """Random records (ties in sizes, ids in random order), pairs around the thresholds
    (chains that split), byte copies of all three kinds, a key repeated in one file."""
    rng = np.random.default_rng(seed)
    ids = [f"r{k:03d}" for k in rng.permutation(n)]
    table = {"record_id": ids,
             "width": pa.array(rng.choice([10, 20], n), pa.int32()),
             "height": pa.array(rng.choice([10, 20], n), pa.int32()),
             "file_size": pa.array(rng.choice([100, 200, 300], n), pa.int64())}
    if with_uri:
        table["source_uri"] = [f"mem://s{k % 3}.tar" for k in range(n)]
        table["key"] = [f"k{k % 7}" if k % 5 else f"mem://s{k % 3}.tar" for k in range(n)]
    records = pa.table(table)
    m = n
    i, j = rng.integers(0, n, m), rng.integers(0, n, m)
    chain = np.arange(0, 10)  # a path: splits into groups
    i, j = np.r_[i, chain[:-1]], np.r_[j, chain[1:]]
    score = rng.choice(np.array([0.85, 0.9, 0.93, 0.999, 0.9995, 1.0], np.float32), i.size)
    pairs = canonical_pairs(i, j, score, n)
    rows = [(ids[0], ids[1]),                # both embedded: an edge of 1
            (ids[2], "copy-of-2"), (ids[3], "copy-of-3"), ("copy-of-4", ids[4]),
            ("failed", "copy-of-failed")]    # neither embedded
    exact = pa.table({"record_id_a": [a for a, _ in rows], "record_id_b": [b for _, b in rows],
                      "sha256": [f"h{k}" for k in range(len(rows))],
                      "source_uri_a": ["mem://a"] * len(rows), "key_a": ["x"] * len(rows),
                      "source_uri_b": ["mem://b"] * len(rows),
                      "key_b": [f"c{k}" for k in range(len(rows))]})
    return records, pairs, exact


@pytest.mark.parametrize("seed, settings", [
    (1, {}),
    (2, {"drop_near_duplicates": False}),
    (3, {"keeper_rule": "record_id"}),
    (4, {"keeper_rule": "-width,file_size"}),
    (5, {"keeper_rule": "-record_id"}),
    (7, {"components_on_one_worker": True}),
    (8, {"components_on_one_worker": True, "keeper_rule": "record_id"}),
])
def test_beam_groups_equal_build_groups(seed, settings):
    records, pairs, exact = _instance(seed)
    res, counters = expected_and_actual(records, pairs, exact, max_rounds=8, **settings)
    assert not counters.get("components_spilled")
    assert res.stats["exact_copies"] == 3 and res.stats["copies_of_unembedded_records"] == 1
    assert res.stats["groups"] > 1


def test_without_locations_and_byte_copies():
    records, pairs, _ = _instance(6, with_uri=False)
    res, _ = expected_and_actual(records, pairs, None, max_rounds=8)
    assert res.stats["rows_without_source_uri"] == records.num_rows


def test_a_component_above_the_cap_spills_to_disk():
    records, pairs, exact = _instance(7)
    _, counters = expected_and_actual(records, pairs, exact, max_rounds=8, max_pairs_in_memory=2)
    assert counters.get("components_spilled", 0) >= 1
