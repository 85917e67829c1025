"""The embed handler: fast CLIP path equals `encode`; settings reach the model."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import random_image
from transforms.embed.backends import ImageEncoder
from transforms.embed.images import SentenceTransformerImageHandler, encode_pil


def _batch(n: int, seed: int = 0) -> list[np.ndarray]:
    return [np.asarray(random_image(seed + i, (224, 224))) for i in range(n)]


def test_handler_vectors_equal_sentence_transformers_encode(tiny_model):
    handler = SentenceTransformerImageHandler(tiny_model, batch_size=4)
    model = handler.load_model()
    assert isinstance(model, ImageEncoder)  # the fast path, not encode()
    batch = _batch(5, seed=40)
    got = np.stack([r.inference for r in handler.run_inference(batch, model)])
    from sentence_transformers import SentenceTransformer

    reference = encode_pil(SentenceTransformer(tiny_model, device="cpu"), batch)
    np.testing.assert_allclose(got, reference, atol=1e-5)


def test_batches_are_fixed_size_and_per_device_default():
    assert SentenceTransformerImageHandler("m", batch_size=8).batch_elements_kwargs() == {
        "min_batch_size": 8, "max_batch_size": 8}
    cuda = SentenceTransformerImageHandler("m", device="cuda", batch_size=0)
    assert cuda.batch_elements_kwargs()["max_batch_size"] == 256


def test_handler_rejects_int8_on_cuda():
    with pytest.raises(ValueError):
        SentenceTransformerImageHandler("m", device="cuda", backend="torch-int8")


def test_num_threads_is_applied_in_load_model(tiny_model):
    import torch

    before = torch.get_num_threads()
    try:
        SentenceTransformerImageHandler(tiny_model, num_threads=1).load_model()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
