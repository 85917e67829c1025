"""Models from a remote folder (`gs://`, `s3://`) and models shared across processes.

A tiny Beam `FileSystem` registered for the `fakegs://` scheme stands in for
GCS: Beam finds file systems by scheme among `FileSystem` subclasses, so the
code under test goes through `FileSystems.match/open` exactly as with
`gs://`, without a cloud account.
"""

from __future__ import annotations

import filecmp
import os
import shutil

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.io.localfilesystem import LocalFileSystem
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from pipelines.config import Config
from pipelines.jobs import resolve_model
from tests.conftest import random_image
from transforms.embed.images import (
    SentenceTransformerImageHandler,
    copy_model_to_local,
    is_remote,
)


class FakeGcsFileSystem(LocalFileSystem):
    """`fakegs://bucket/path` is `<root>/bucket/path` on local disk."""

    root = ""

    @classmethod
    def scheme(cls):
        return "fakegs"

    @classmethod
    def _local(cls, path: str) -> str:
        if not path.startswith("fakegs://"):  # already local (Beam calls back with it)
            return path
        return os.path.join(cls.root, path[len("fakegs://"):])

    def match(self, patterns, limits=None):
        results = super().match([self._local(p) for p in patterns], limits)
        for result, pattern in zip(results, patterns):
            result.pattern = pattern
            for meta in result.metadata_list:
                meta.path = "fakegs://" + os.path.relpath(meta.path, self.root)
        return results

    def open(self, path, *args, **kwargs):
        return super().open(self._local(path), *args, **kwargs)

    def exists(self, path):
        return super().exists(self._local(path))


@pytest.fixture
def remote_model(tmp_path, tiny_model) -> str:
    FakeGcsFileSystem.root = str(tmp_path / "gcs")
    shutil.copytree(tiny_model, tmp_path / "gcs" / "bucket" / "models" / "clip-tiny")
    return "fakegs://bucket/models/clip-tiny"


def _same_tree(a: str, b: str) -> bool:
    cmp = filecmp.dircmp(a, b)
    return (not cmp.left_only and not cmp.right_only and not cmp.diff_files
            and all(_same_tree(os.path.join(a, d), os.path.join(b, d)) for d in cmp.common_dirs))


def test_copy_model_to_local_copies_every_file(remote_model, tiny_model, tmp_path):
    assert is_remote(remote_model)
    local = copy_model_to_local(remote_model, str(tmp_path / "local"))
    assert _same_tree(tiny_model, local)
    with pytest.raises(FileNotFoundError):
        copy_model_to_local("fakegs://bucket/models/missing", str(tmp_path / "none"))


def test_handler_loads_a_remote_model_like_a_local_one(remote_model, tiny_model):
    pixels = [np.asarray(random_image(s, size=(224, 224))) for s in range(3)]
    remote, local = (SentenceTransformerImageHandler(m) for m in (remote_model, tiny_model))
    got = [r.inference for r in remote.run_inference(pixels, remote.load_model())]
    want = [r.inference for r in local.run_inference(pixels, local.load_model())]
    np.testing.assert_allclose(np.stack(got), np.stack(want), atol=1e-6)
    # The launcher learns the width of a remote model it does not know by name.
    assert resolve_model(Config(model=remote_model)).dim == len(want[0])


def test_model_is_shared_across_processes_on_gpu_only():
    assert SentenceTransformerImageHandler("m", "cuda").share_model_across_processes()
    assert SentenceTransformerImageHandler("m", "cuda:0").share_model_across_processes()
    assert not SentenceTransformerImageHandler("m", "cpu").share_model_across_processes()


def test_a_shared_model_embeds_like_a_per_process_one(tiny_model):
    """The shared model is a proxy to another process; encode must work through it."""
    pixels = [np.asarray(random_image(s, size=(224, 224))) for s in range(4)]
    handler = SentenceTransformerImageHandler(tiny_model)
    want = np.stack([r.inference for r in handler.run_inference(pixels, handler.load_model())])
    shared = SentenceTransformerImageHandler(tiny_model, share_across_processes=True)

    def check(results):
        got = sorted((int(r.example[0, 0, 0]), r.inference.tolist()) for r in results)
        expected = sorted((int(p[0, 0, 0]), w.tolist()) for p, w in zip(pixels, want))
        assert [k for k, _ in got] == [k for k, _ in expected]
        np.testing.assert_allclose([v for _, v in got], [v for _, v in expected], atol=1e-5)

    with TestPipeline(runner="DirectRunner") as p:
        results = p | "Pixels" >> beam.Create(pixels) | "Embed" >> RunInference(shared)
        assert_that(results | "All" >> beam.combiners.ToList(), lambda out: check(out[0]))
