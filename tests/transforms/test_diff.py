"""`change_of` for every pair of statuses, and DiffRecords / DiffPairs on the DirectRunner."""

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms import diff
from transforms.diff import Status


def _s(status, keeper="k"):
    return Status(status, "r", None if status == diff.ERROR else keeper, "mem://x", "x")


@pytest.mark.parametrize("before, after, change", [
    (None, _s("kept"), "new"), (None, _s("error"), "new"), (_s("dropped"), None, "removed"),
    (_s("kept"), _s("dropped"), "kept_to_dropped"), (_s("dropped"), _s("kept"), "dropped_to_kept"),
    (_s("dropped", "a"), _s("dropped", "b"), "keeper_changed"),
    (_s("dropped", "a"), _s("dropped", "a"), None), (_s("kept"), _s("kept"), None),
    (_s("kept"), _s("error"), "now_failing"), (_s("dropped"), _s("error"), "now_failing"),
    (_s("error"), _s("kept"), "no_longer_failing"), (_s("error"), _s("error"), None),
    (None, None, None),
])
def test_change_of(before, after, change):
    assert diff.change_of(before, after) == change


def test_diff_records_and_pairs_on_the_engine():
    with TestPipeline() as p:
        before = p | "Before" >> beam.Create([("a", _s("kept", "a")), ("b", _s("dropped", "a")),
                                              ("gone", _s("kept", "gone"))])
        after = p | "After" >> beam.Create([("a", _s("dropped", "n")), ("b", _s("dropped", "n")),
                                            ("n", _s("kept", "n")), ("m", _s("kept", "m"))])
        out = {"before": before, "after": after} | diff.DiffRecords()
        assert_that(out["changes"] | beam.Map(lambda r: (r["record_id"], r["change"])),
                    equal_to([("a", "kept_to_dropped"), ("b", "keeper_changed"),
                              ("gone", "removed"), ("n", "new"), ("m", "new")]), label="Changes")
        pairs = {"before": p | "PB" >> beam.Create([(("a", "b"), "duplicate"),
                                                    (("a", "gone"), "near_duplicate")]),
                 "after": p | "PA" >> beam.Create([(("a", "b"), "near_duplicate"),
                                                   (("a", "n"), "duplicate")])} | diff.DiffPairs()
        counts = (out["facts"], pairs) | beam.Flatten() | diff.CountFacts()
        want = dict.fromkeys(diff.RECORD_FACTS + diff.CHANGES + diff.PAIR_FACTS, 0)
        want.update(records_before=3, records_after=4, new=2, removed=1, kept_to_dropped=1,
                    keeper_changed=1, new_in_groups_with_old=1, pairs_before=2, pairs_after=2,
                    pairs_new=1, pairs_vanished=1, pairs_changed_kind=1)
        assert_that(counts, equal_to([want]), label="Counts")
