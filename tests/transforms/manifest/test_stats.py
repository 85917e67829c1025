"""The stats' conservation check: a manifest that does not add up is reported."""

from transforms.manifest.stats import _finish


def test_stats_report_a_manifest_that_does_not_add_up():
    ok = _finish({"records": 3, "copies": 1, "kept": 2, "dropped": 2}, 0.9, "record_id")
    assert ok["problems"] == [] and ok["largest_component"] == 1
    short = _finish({"records": 3, "copies": 1, "kept": 2, "dropped": 1}, 0.9, "record_id")
    assert short["problems"] == ["manifest does not add up: keep 2 + drop 1 != records 3 "
                                 "+ copies 1"]
    twice = _finish({"records": 2, "kept": 1, "dropped": 1, "ids_twice": 1}, 0.9, "record_id")
    assert twice["problems"] == ["1 record ids are in keep/drop more than once"]


def test_stats_report_edges_the_keeper_assignment_did_not_see():
    facts = {"records": 3, "kept": 2, "dropped": 1, "edges": 3}
    assert _finish(dict(facts, edges_assigned=3), 0.9, "record_id")["problems"] == []
    lost = _finish(dict(facts, edges_assigned=2), 0.9, "record_id")
    assert lost["problems"] == ["the keeper assignment saw 2 of 3 edges at the group threshold"]


def test_stats_report_mined_pairs_that_did_not_become_edges():
    facts = {"records": 3, "kept": 2, "dropped": 1, "edges": 2, "edges_assigned": 2}
    assert _finish(dict(facts, mined_edges=2), 0.9, "record_id")["problems"] == []
    lost = _finish(dict(facts, mined_edges=3), 0.9, "record_id")
    assert lost["problems"] == ["3 mined pairs at the group threshold became only 2 distinct edges"]
