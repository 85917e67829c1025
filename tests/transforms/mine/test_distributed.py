import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tools.synthetic import clustered_embeddings
from transforms.mine.distributed import MeasureRecall, MineDistributed
from transforms.mine.exact import mine_exact


def _data(n=3000, dim=32, seed=21):
    x = clustered_embeddings(n, dim, topic_size=200, near_fraction=0.2, seed=seed)
    ids = [f"img-{k:05d}" for k in range(n)]
    exact = mine_exact(x, 0.9)
    want = sorted((ids[i], ids[j]) for i, j in zip(exact.i.tolist(), exact.j.tolist()))
    return x, ids, want


def _options():
    return beam.options.pipeline_options.PipelineOptions(["--runner=DirectRunner"])


def test_distributed_returns_exact_pair_set_once_each():
    x, ids, want = _data()
    assert len(want) > 200
    with BeamTestPipeline(options=_options()) as p:
        vectors = p | "Create" >> beam.Create(list(zip(ids, [v for v in x])))
        pairs = vectors | "Mine" >> MineDistributed(0.9, nlist=8, partitions_per_vector=3)
        keys = pairs | "Keys" >> beam.Map(lambda r: (r["record_id_a"], r["record_id_b"]))
        # equal_to compares as multisets: a pair emitted twice would fail.
        assert_that(keys, equal_to(want), label="ExactPairSet")
        recall = (vectors, pairs) | "Recall" >> MeasureRecall(0.9, sample_size=500)
        assert_that(recall | beam.Map(lambda s: (s["recall_sampled"], s["recall_exact_pairs"] > 0)),
                    equal_to([(1.0, True)]), label="RecallIsOne")


def test_recall_measures_missing_pairs():
    x, ids, want = _data(800, 16, seed=5)
    kept = want[::2]
    with BeamTestPipeline(options=_options()) as p:
        vectors = p | "Create" >> beam.Create(list(zip(ids, [v for v in x])))
        pairs = p | "Pairs" >> beam.Create(
            [{"record_id_a": a, "record_id_b": b, "score": 1.0} for a, b in kept])
        recall = (vectors, pairs) | "Recall" >> MeasureRecall(0.9, sample_size=800)
        expected = len(kept) / len(want)
        assert_that(recall | beam.Map(lambda s: round(s["recall_sampled"], 6)),
                    equal_to([round(expected, 6)]))
