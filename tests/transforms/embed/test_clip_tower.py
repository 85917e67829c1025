"""The rewritten CLIP image tower gives the stock forward's vectors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tests.conftest import random_image
from transforms.embed import clip_tower


def _clip(hidden_act: str = "quick_gelu", layers: int = 3):
    import transformers

    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=layers,
                           num_attention_heads=4, image_size=64, patch_size=16,
                           hidden_act=hidden_act),
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2),
        projection_dim=24)
    model = transformers.CLIPModel(config).eval()
    with torch.no_grad():  # weights far from init, so that every path matters
        for p in model.vision_model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model


def _pixels(n: int = 5) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("hidden_act,folds", [("quick_gelu", 3), ("gelu", 0)])
def test_rewritten_tower_equals_stock_forward(hidden_act, folds):
    clip = _clip(hidden_act)
    x = _pixels()
    with torch.inference_mode():
        expected = clip_tower.stock_image_features(clip, x)
        mlps = [layer.mlp for layer in clip.vision_model.encoder.layers]
        tower = clip_tower.image_tower(clip, 64)
        got = tower(x)
        assert tower.rewritten
        assert sum(isinstance(m.activation_fn, torch.nn.SiLU) for m in mlps) == folds
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        # The fold keeps the model's own forward too (encode() runs it).
        torch.testing.assert_close(clip_tower.stock_image_features(clip, x), expected,
                                   rtol=1e-4, atol=1e-5)


def test_fold_is_in_place_and_idempotent():
    clip = _clip()
    weights = [p.data_ptr() for p in clip.vision_model.parameters()]
    assert clip_tower.fold_quick_gelu(clip) == 3
    assert [p.data_ptr() for p in clip.vision_model.parameters()] == weights  # no second copy
    x = _pixels(2)
    with torch.inference_mode():
        before = clip_tower.stock_image_features(clip, x)
        assert clip_tower.fold_quick_gelu(clip) == 0
        torch.testing.assert_close(clip_tower.stock_image_features(clip, x), before)


def test_a_rewrite_that_disagrees_falls_back_to_the_stock_forward(monkeypatch, caplog):
    clip = _clip()
    x = _pixels(3)
    with torch.inference_mode():
        expected = clip_tower.stock_image_features(clip, x)
    # A transformers release whose last layer we misread: CLS gets no attention.
    monkeypatch.setattr(clip_tower, "_last_layer_cls",
                        lambda layer, hidden: hidden[:, 0] + layer.mlp(layer.layer_norm2(hidden[:, 0])))
    with caplog.at_level(logging.WARNING, logger=clip_tower.__name__):
        tower = clip_tower.image_tower(clip, 64)
    assert not tower.rewritten
    assert "using the stock forward" in caplog.text
    with torch.inference_mode():
        torch.testing.assert_close(tower(x), expected, rtol=1e-4, atol=1e-5)


def test_encoder_and_encode_keep_the_vectors_of_the_model_as_loaded(tiny_model):
    """load_encoder rewrites the model in place: encode() before and after, and
    the encoder, agree."""
    from sentence_transformers import SentenceTransformer

    from transforms.embed import backends
    from transforms.embed.images import encode_pil

    st_model = SentenceTransformer(tiny_model, device="cpu")
    pixels = np.stack([np.asarray(random_image(60 + i, (224, 224))) for i in range(4)])
    before = encode_pil(st_model, list(pixels))
    encoder = backends.load_encoder(st_model)
    assert encoder._forward.rewritten
    np.testing.assert_allclose(encoder(pixels), before, atol=1e-5)
    np.testing.assert_allclose(encode_pil(st_model, list(pixels)), before, atol=1e-5)
