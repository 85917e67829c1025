"""The groups stats for summary.json, as combiners inside the job, and the conservation check.

`GroupStats` -> one dict: every key of `build_groups`' stats (records,
exact_copies, kept, dropped, dropped_<reason>, groups, components,
components_split, largest_group, ...) plus the dense-cluster report
(`largest_component`: embedded members of the largest connected component,
`largest_component_pairs`: its edges) and `problems`: empty, or why keep +
drop is not records + copies with every id once (the launcher then refuses
to publish).
"""

from __future__ import annotations

import apache_beam as beam

_MAXIMA = {"largest_group", "largest_component"}


class _SumOrMax(beam.CombineFn):
    """Per fact name: the sum of its values, or the max for the `largest_*` facts."""

    def __init__(self, name: str):
        self._max = name in _MAXIMA

    def create_accumulator(self):
        return None

    def add_input(self, acc, value):
        if acc is None:
            return value
        return max(acc, value) if self._max else acc + value

    def merge_accumulators(self, accs):
        acc = None
        for a in accs:
            if a is not None:
                acc = self.add_input(acc, a)
        return acc

    def extract_output(self, acc):
        return acc


class _Facts(beam.CombineFn):
    """(name, value) facts -> {name: sum or max}."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, fact):
        name, value = fact
        acc[name] = _SumOrMax(name).add_input(acc.get(name), value)
        return acc

    def merge_accumulators(self, accs):
        out = {}
        for acc in accs:
            for name, value in acc.items():
                out[name] = _SumOrMax(name).add_input(out.get(name), value)
        return out

    def extract_output(self, acc):
        return acc


def _row_facts(row: dict, table: str):
    yield "kept" if table == "keep" else "dropped", 1
    if table == "drop":
        yield f"dropped_{row['reason']}", 1
    if row["source_uri"] is None:
        yield "rows_without_source_uri", 1


def _component_facts(element):
    _, groups = element
    yield "components", 1
    if groups > 1:
        yield "components_split", 1


def _finish(facts: dict, threshold: float, rule: str) -> dict:
    get = facts.get
    records, copies = get("records", 0), get("copies", 0)
    component = get("largest_component") or ((1, 0) if records else (0, 0))
    stats = {
        "records": records, "exact_copies": copies,
        "rows_without_source_uri": get("rows_without_source_uri", 0),
        "copies_of_unembedded_records": get("orphans", 0),
        "kept": get("kept", 0), "dropped": get("dropped", 0),
        "dropped_exact_copy": get("dropped_exact_copy", 0),
        "dropped_duplicate": get("dropped_duplicate", 0),
        "dropped_near_duplicate": get("dropped_near_duplicate", 0),
        "groups": get("groups", 0), "components": get("components", 0),
        "components_split": get("components_split", 0),
        "largest_group": get("largest_group", 0),
        "largest_component": component[0], "largest_component_pairs": component[1],
        "group_threshold": float(threshold), "keeper_rule": rule,
    }
    problems = []
    if stats["kept"] + stats["dropped"] != records + copies:
        problems.append(f"manifest does not add up: keep {stats['kept']} + drop "
                        f"{stats['dropped']} != records {records} + copies {copies}")
    if get("edges", 0) < get("mined_edges", 0):
        problems.append(f"{get('mined_edges', 0)} mined pairs at the group threshold became "
                        f"only {get('edges', 0)} distinct edges")
    if get("edges", 0) != get("edges_assigned", 0):
        problems.append(f"the keeper assignment saw {get('edges_assigned', 0)} of "
                        f"{get('edges', 0)} edges at the group threshold")
    if get("ids_twice", 0):
        problems.append(f"{get('ids_twice')} record ids are in keep/drop more than once")
    stats["problems"] = problems
    return stats


class GroupStats(beam.PTransform):
    """`{"records", "copies", "orphans", "sizes", "edges", "mined_edges", "facts",
    "group_keepers", "keep", "drop"}`
    -> one stats dict (see the module docstring)."""

    def __init__(self, group_threshold: float, keeper_rule: str):
        super().__init__()
        self._threshold = group_threshold
        self._rule = keeper_rule

    def expand(self, inputs: dict):
        facts = [
            inputs["records"] | "RecordFacts" >> beam.Map(lambda _: ("records", 1)),
            inputs["copies"] | "CopyFacts" >> beam.Map(lambda _: ("copies", 1)),
            inputs["orphans"] | "OrphanFacts" >> beam.Map(lambda n: ("orphans", n)),
            inputs["sizes"] | "ComponentSizes" >> beam.Map(lambda s: ("largest_component", s)),
            # every edge must reach its component's keeper assignment, or the
            # greedy ran on part of the graph
            inputs["edges"] | "EdgeFacts" >> beam.Map(lambda _: ("edges", 1)),
            # mined pairs are distinct: fewer distinct edges than pairs means some were lost
            inputs["mined_edges"] | "MinedEdgeFacts" >> beam.Map(lambda _: ("mined_edges", 1)),
            inputs["sizes"] | "AssignedEdges" >> beam.Map(lambda s: ("edges_assigned", s[1])),
            inputs["facts"],
            inputs["group_keepers"] | "GroupFacts" >> beam.Map(lambda _: ("groups", 1)),
            (inputs["group_keepers"]
             | "LabelOfGroup" >> beam.Values()
             | "GroupsPerComponent" >> beam.combiners.Count.PerElement()
             | "ComponentFacts" >> beam.FlatMap(_component_facts)),
            inputs["keep"] | "KeepFacts" >> beam.FlatMap(_row_facts, "keep"),
            inputs["drop"] | "DropFacts" >> beam.FlatMap(_row_facts, "drop"),
            ((inputs["keep"], inputs["drop"])
             | "ManifestRows" >> beam.Flatten()
             | "ManifestIds" >> beam.Map(lambda row: row["record_id"])
             | "RowsPerId" >> beam.combiners.Count.PerElement()
             | "IdsTwice" >> beam.FlatMap(lambda kv: [("ids_twice", 1)] if kv[1] > 1 else [])),
        ]
        return (facts
                | "AllFacts" >> beam.Flatten()
                | "Combine" >> beam.CombineGlobally(_Facts())
                | "Finish" >> beam.Map(_finish, self._threshold, self._rule))
