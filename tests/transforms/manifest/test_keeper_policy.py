"""The stable keeper policy: last night's keepers stay while within the threshold."""

import numpy as np
import pyarrow as pa
import pytest

from tests.transforms.manifest.helpers import expected_and_actual
from tests.transforms.manifest.test_build_groups import _instance
from transforms.manifest.reference import build_groups
from transforms.mine.pairs import canonical_pairs


def _records(sizes: dict[str, int]) -> pa.Table:
    ids = list(sizes)
    return pa.table({"record_id": ids, "source_uri": [f"mem://{r}.jpg" for r in ids],
                     "key": [f"{r}.jpg" for r in ids],
                     "width": pa.array([sizes[r] for r in ids], pa.int32()),
                     "height": pa.array([sizes[r] for r in ids], pa.int32()),
                     "file_size": pa.array([1000] * len(ids), pa.int64())})


def _pairs(records: pa.Table, edges: list[tuple[str, str, float]]):
    index = {r: k for k, r in enumerate(records.column("record_id").to_pylist())}
    i = np.array([index[a] for a, _, _ in edges], np.int64)
    j = np.array([index[b] for _, b, _ in edges], np.int64)
    return canonical_pairs(i, j, np.array([s for *_, s in edges], np.float32), records.num_rows)


def _keepers(result) -> dict[str, str]:
    keep = {r["record_id"]: r["keeper_id"] for r in result.keep.to_pylist()}
    keep.update({r["record_id"]: r["keeper_id"] for r in result.drop.to_pylist()})
    return keep


def test_a_slightly_larger_copy_does_not_replace_last_nights_keeper():
    night1 = _records({"old": 100, "small": 90, "unique": 80})
    first = build_groups(night1, _pairs(night1, [("old", "small", 0.95)]))
    assert _keepers(first) == {"old": "old", "small": "old", "unique": "unique"}
    kept = set(first.keep.column("record_id").to_pylist())

    # Tonight a larger copy of `old` and one of `unique` (alone last night) arrive.
    night2 = _records({"old": 100, "small": 90, "unique": 80, "bigger": 101, "unique2": 81})
    pairs = _pairs(night2, [("old", "small", 0.95), ("old", "bigger", 0.99),
                            ("unique", "unique2", 0.999)])
    pure = build_groups(night2, pairs)
    stable = build_groups(night2, pairs, previous_keepers=kept)
    # pure: `bigger` takes over `old`, and `small` (not near `bigger`) is kept again
    assert _keepers(pure) == {"old": "bigger", "small": "small", "bigger": "bigger",
                              "unique": "unique2", "unique2": "unique2"}
    assert _keepers(stable) == {"old": "old", "small": "old", "bigger": "old",
                                "unique": "unique", "unique2": "unique"}
    assert (stable.stats["kept"], pure.stats["kept"]) == (2, 3)


def test_a_previous_keeper_keeps_only_members_still_within_the_threshold():
    records = _records({"old": 100, "member": 90, "big": 120})
    # `member` is no longer near `old`, but near a larger new image: it follows the rule.
    pairs = _pairs(records, [("member", "big", 0.95), ("old", "big", 0.92)])
    stable = build_groups(records, pairs, previous_keepers={"old", "gone"})
    assert _keepers(stable) == {"old": "old", "big": "old", "member": "member"}
    # and nothing chains: every dropped member has an edge to its keeper
    assert {(r["record_id"], r["keeper_id"]) for r in stable.drop.to_pylist()} == {("big", "old")}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stable_on_its_own_keepers_and_on_none_is_the_pure_result(seed):
    records, pairs, exact = _instance(seed)
    pure = build_groups(records, pairs, exact)
    own = set(pure.keep.column("record_id").to_pylist())
    for previous in (own, set(), {"not-a-record"}):
        stable = build_groups(records, pairs, exact, previous_keepers=previous)
        assert stable.keep.equals(pure.keep) and stable.drop.equals(pure.drop)
        assert stable.groups.equals(pure.groups)


@pytest.mark.parametrize("seed", [4, 5])
def test_beam_stable_policy_equals_the_reference(seed):
    records, pairs, exact = _instance(seed)
    ids = records.column("record_id").to_pylist()
    previous = set(np.random.default_rng(seed).choice(ids, 12, replace=False).tolist())
    res, _ = expected_and_actual(records, pairs, exact, max_rounds=8, previous_keepers=previous)
    pure = build_groups(records, pairs, exact)
    assert not res.keep.equals(pure.keep)  # the previous keepers changed the manifest
    # previous keepers are visited first: one is dropped only for another previous keeper
    for row in res.drop.to_pylist():
        if row["record_id"] in previous:
            assert row["keeper_id"] in previous
