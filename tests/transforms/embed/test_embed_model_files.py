"""The launcher's model check and what it reads from a model's small files
(issue 14: an unknown or unreachable model failed after the whole read pass;
a model at another input size failed every record)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from pipelines.config import Config
from pipelines.jobs import resolve_model
from tests.conftest import random_image
from transforms.embed import model_files
from transforms.embed.model_files import ModelNotFoundError, inspect_model


@pytest.fixture(scope="session")
def tiny_model_64(tmp_path_factory) -> str:
    """The tiny stand-in at a 64-pixel input (real CLIPs exist at 224 and 336)."""
    from tools.stand_in import write_stand_in

    return write_stand_in(str(tmp_path_factory.mktemp("models") / "clip-tiny-64"), "tiny",
                          image_size=64)


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache and a hub that refuses connections."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    return tmp_path / "hf-cache"


def test_stand_in_folder_gives_width_and_input_size(tiny_model, tiny_model_64):
    assert inspect_model(tiny_model).image_size == 224
    files = inspect_model(tiny_model_64)
    assert (files.dim, files.image_size) == (32, 64)
    info = resolve_model(Config(model=tiny_model_64))
    assert (info.dim, info.image_size, info.is_stand_in) == (32, 64, True)


def test_hub_layout_with_a_module_folder_and_preprocessor_config(tmp_path):
    """The layout of sentence-transformers/clip-ViT-*: modules.json -> 0_CLIPModel/."""
    folder = tmp_path / "clip-ViT-L-14-336"
    module = folder / "0_CLIPModel"
    module.mkdir(parents=True)
    (folder / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "0_CLIPModel",
          "type": "sentence_transformers.models.CLIPModel"}]))
    (module / "config.json").write_text(json.dumps(
        {"projection_dim": 768, "vision_config": {"image_size": 336}}))
    (module / "preprocessor_config.json").write_text(json.dumps(
        {"crop_size": 336, "size": 336}))
    (module / "pytorch_model.bin").write_bytes(b"not loaded")
    files = inspect_model(str(folder))
    assert (files.dim, files.image_size) == (768, 336)
    (module / "preprocessor_config.json").unlink()  # then the vision config says it
    assert inspect_model(str(folder)).image_size == 336


def test_folder_that_is_not_a_sentence_transformers_model(tmp_path, tiny_model):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="not a sentence-transformers model"):
        inspect_model(str(tmp_path / "photos"))
    no_weights = tmp_path / "no-weights"
    shutil.copytree(tiny_model, no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="no weights"):
        inspect_model(str(no_weights))


@pytest.mark.parametrize("name", ["./models/missing", "/nonexistent/clip", "a/b/c"])
def test_missing_folder(name):
    with pytest.raises(ModelNotFoundError, match="does not exist.*--model PATH"):
        inspect_model(name)


def test_hub_name_neither_cached_nor_reachable(no_hub):
    with pytest.raises(ModelNotFoundError) as info:
        inspect_model("clip-ViT-B-32", timeout=1)
    message = str(info.value)
    assert "'clip-ViT-B-32' cannot be loaded" in message and "unreachable" in message
    assert "--model PATH" in message and "make-stand-in" in message and "\n" not in message


def test_hub_name_found_in_the_cache_without_network(no_hub, tiny_model_64):
    """A hub name already in the Hugging Face cache is read from it, offline."""
    repo = no_hub / "models--someone--clip-64"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_model_64, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    files = inspect_model("someone/clip-64", timeout=1)
    assert (files.dim, files.image_size) == (32, 64)
    assert model_files.hub_repo("clip-ViT-B-32") == "sentence-transformers/clip-ViT-B-32"


def test_handler_refuses_pixels_of_another_size(tiny_model_64):
    from transforms.embed.images import SentenceTransformerImageHandler, encode_pil

    with pytest.raises(ValueError, match="takes 64x64 images.*decodes 224x224"):
        SentenceTransformerImageHandler(tiny_model_64, image_size=224).load_model()
    handler = SentenceTransformerImageHandler(tiny_model_64, image_size=64)
    batch = [np.asarray(random_image(s, (64, 64))) for s in range(3)]
    got = np.stack([r.inference for r in handler.run_inference(batch, handler.load_model())])
    from sentence_transformers import SentenceTransformer

    reference = encode_pil(SentenceTransformer(tiny_model_64, device="cpu"), batch)
    np.testing.assert_allclose(got, reference, atol=1e-5)


def test_a_model_at_64_pixels_embeds_every_record(tiny_model_64, tmp_path):
    from pipelines.cli import run
    from tests.conftest import encode

    files = tmp_path / "files"
    files.mkdir()
    for i in range(5):
        (files / f"{i}.jpg").write_bytes(encode(random_image(i, (120 + 10 * i, 90))))
    assert run(["run", "--input", str(files), "--model", tiny_model_64, "--output",
                str(tmp_path / "out"), "--run-id", "r", "-q"]) == 0
    summary = json.loads((tmp_path / "out" / "r" / "summary.json").read_text())
    assert summary["counts"]["embedded"] == 5 and summary["counts"]["record_errors"] == 0
    assert summary["image_size"] == 64


def test_unloadable_model_fails_before_any_folder_is_made(no_hub, tmp_path):
    from pipelines.cli import run

    out = tmp_path / "out"
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(b"never read: the model check fails first")
    with pytest.raises(ModelNotFoundError):
        run(["run", "--input", str(images), "--model", "clip-ViT-B-32", "--output",
             str(out), "--run-id", "r", "-q"])
    assert not out.exists() or not os.listdir(out)
