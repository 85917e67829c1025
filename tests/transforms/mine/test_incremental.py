"""New rows against all, and carried pairs, against a brute-force full mining."""

import numpy as np
import pyarrow as pa
import pytest

from transforms.mine.incremental import _carry, iter_new_pairs
from transforms.mine.transform import DUPLICATES, NEAR_DUPLICATES


def _unit(n, d=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[5] = x[3] + 0.01  # a close pair, and a new-new one below
    x[9] = x[8] + 0.02
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute(x, threshold):
    s = x @ x.T
    return {(i, j) for i in range(len(x)) for j in range(i + 1, len(x)) if s[i, j] >= threshold}


@pytest.mark.parametrize("block_size", [1, 3, 64])
def test_new_against_all_plus_old_pairs_is_every_pair(block_size):
    x = _unit(40)
    is_new = np.zeros(40, bool)
    is_new[[0, 5, 8, 9, 17, 39]] = True
    found = [(int(i), int(j)) for chunk in iter_new_pairs(x, is_new, 0.3, block_size)
             for i, j in zip(chunk[0], chunk[1])]
    assert len(found) == len(set(found))  # each pair once
    assert all(i < j for i, j in found)
    full = _brute(x, 0.3)
    old = {(i, j) for i, j in full if not is_new[i] and not is_new[j]}
    assert old and set(found) and set(found) | old == full
    assert not set(found) & old


def test_no_new_rows_finds_nothing():
    x = _unit(10)
    assert list(iter_new_pairs(x, np.zeros(10, bool), -1.0)) == []


def test_carry_drops_pairs_of_records_not_carried_and_resplits():
    table = pa.table({"record_id_a": ["a", "a", "b", "c"], "record_id_b": ["b", "c", "d", "d"],
                      "score": pa.array([0.999, 0.95, 0.92, 0.5], pa.float32())})
    out = {o.tag: o.value.to_pydict() for o in _carry(table, pa.array(["d"]), 0.95, 0.9)}
    assert out[DUPLICATES]["record_id_b"] == ["b", "c"]  # 0.95 is a duplicate tonight
    assert NEAR_DUPLICATES not in out  # b-d names a record not carried, c-d is below
