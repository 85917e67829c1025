"""Backends: normalisation, fast path vs `encode`, int8 agreement, device checks."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import random_image
from transforms.embed import backends


def _pixels(n: int, seed: int = 0) -> np.ndarray:
    return np.stack([np.asarray(random_image(seed + i, (224, 224))) for i in range(n)])


@pytest.fixture(scope="module")
def st_model(tiny_model):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(tiny_model, device="cpu")


def test_normalise_matches_clip_formula(st_model):
    encoder = backends.load_encoder(st_model)
    _, mean, std, _ = backends.clip_parts(st_model)
    pixels = _pixels(2)
    expected = (pixels.astype(np.float64) / 255.0 - mean) / std
    got = encoder.normalise(pixels).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_fast_path_equals_sentence_transformers_encode(st_model):
    from transforms.embed.images import encode_pil

    pixels = _pixels(6, seed=10)
    fast = backends.load_encoder(st_model)(pixels)
    reference = encode_pil(st_model, list(pixels))
    assert fast.dtype == np.float32 and fast.shape == reference.shape
    np.testing.assert_allclose(fast, reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)


def test_torch_int8_is_quantised_and_close(st_model):
    import torch

    encoder = backends.load_encoder(st_model, backends.TORCH_INT8)
    quantised = [m for m in encoder._forward.modules()
                 if type(m).__module__.startswith("torch.ao.nn.quantized")]
    assert quantised, "no Linear layer was replaced by a quantised one"
    assert not isinstance(encoder._forward, torch.nn.Linear)
    pixels = _pixels(4, seed=20)
    fp32 = backends.load_encoder(st_model)(pixels)
    int8 = encoder(pixels)
    assert (fp32 * int8).sum(axis=1).min() > 0.9  # random tiny weights: loose bound


def test_cuda_path_plumbing_on_cpu(st_model):
    """The CUDA code path (uint8 to device, autocast) run with device=cpu."""
    from transforms.embed.clip_tower import image_tower

    clip, mean, std, size = backends.clip_parts(st_model)
    encoder = backends.ImageEncoder(image_tower(clip, size), mean, std, "cpu", autocast_fp16=True)
    pixels = _pixels(2, seed=30)
    out = encoder(pixels)  # CPU autocast with fp16: runs, returns float32 unit vectors
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-3)
    reference = backends.load_encoder(st_model)(pixels)
    assert (out * reference).sum(axis=1).min() > 0.99


@pytest.mark.parametrize("backend,device", [("torch-int8", "cuda"), ("onnx-int8", "cuda:0"),
                                            ("fp8", "cpu"), ("torch", "tpu")])
def test_validate_rejects_impossible_combinations(backend, device):
    with pytest.raises(ValueError):
        backends.validate(backend, device)


def test_default_batch_size_per_device():
    assert backends.default_batch_size("cuda:1") == backends.DEFAULT_BATCH_SIZE["cuda"]
    assert backends.default_batch_size("cpu") == backends.DEFAULT_BATCH_SIZE["cpu"]


def test_non_clip_models_fall_back_to_encode():
    class NotClip(list):
        pass

    assert backends.clip_parts(NotClip([object(), object()])) is None
    assert backends.load_encoder(NotClip([object()])) is None
    with pytest.raises(ValueError):
        backends.load_encoder(NotClip([object()]), backends.TORCH_INT8)



def test_onnx_int8_quantises_matmuls_only_and_reuses_its_cache(st_model, tmp_path):
    import onnx

    pytest.importorskip("onnxruntime")
    encoder = backends.load_encoder(st_model, backends.ONNX_INT8, cache_dir=str(tmp_path))
    path = tmp_path / backends.ONNX_INT8_FILE
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    assert "Conv" in ops and "ConvInteger" not in ops  # patch embedding stays fp32
    pixels = _pixels(4, seed=40)
    fp32 = backends.load_encoder(st_model)(pixels)
    int8 = encoder(pixels)
    assert int8.dtype == np.float32 and int8.shape == fp32.shape
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    assert (fp32 * int8).sum(axis=1).min() > 0.9  # random tiny weights: loose bound
    written = path.stat().st_mtime_ns
    backends.load_encoder(st_model, backends.ONNX_INT8, cache_dir=str(tmp_path))
    assert path.stat().st_mtime_ns == written  # second load reuses the export


@pytest.fixture
def counted_exports(monkeypatch):
    """Counts `_export_int8` calls; each one is slowed so that concurrent loads overlap."""
    import threading
    import time

    calls, real = [], backends._export_int8
    lock = threading.Lock()

    def export(*args):
        with lock:
            calls.append(args[-1])
        time.sleep(0.5)
        real(*args)

    monkeypatch.setattr(backends, "_export_int8", export)
    return calls


def test_onnx_int8_default_cache_is_keyed_by_weights_and_exported_once(
        st_model, tmp_path, monkeypatch, counted_exports):
    import copy
    import tempfile

    import torch

    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    from transforms.embed.clip_tower import image_tower

    clip, _, _, size = backends.clip_parts(st_model)
    tower = image_tower(clip, size)
    folder = backends.onnx_cache_dir(tower, size)
    assert folder.startswith(str(tmp_path))
    for _ in range(2):
        backends.load_encoder(st_model, backends.ONNX_INT8)
    assert counted_exports == [f"{folder}/{backends.ONNX_INT8_FILE}"]
    (user_dir,) = tmp_path.glob("clipdedup-onnx-*")
    assert [p.name for p in user_dir.iterdir()] == [folder.rsplit("/", 1)[1]]

    other = copy.deepcopy(tower)
    with torch.no_grad():
        other.clip.visual_projection.weight[0, 0] += 1.0
    assert backends.weights_fingerprint(other, size) != backends.weights_fingerprint(tower, size)
    assert backends.weights_fingerprint(copy.deepcopy(tower), size) == \
        backends.weights_fingerprint(tower, size)
    stock = image_tower(clip, size, rewrite=False)
    assert backends.weights_fingerprint(stock, size) != backends.weights_fingerprint(tower, size)


def test_onnx_int8_concurrent_loads_export_once(st_model, tmp_path, counted_exports):
    from concurrent.futures import ThreadPoolExecutor

    pytest.importorskip("onnxruntime")
    from transforms.embed.clip_tower import image_tower

    clip, _, _, size = backends.clip_parts(st_model)
    tower = image_tower(clip, size)
    pixels = backends.load_encoder(st_model).normalise(_pixels(2, seed=50)).numpy()
    with ThreadPoolExecutor(3) as pool:
        forwards = list(pool.map(lambda _: backends._onnx_int8(tower, size, str(tmp_path)), range(3)))
    assert len(counted_exports) == 1
    outputs = [forward(pixels) for forward in forwards]
    for out in outputs[1:]:
        np.testing.assert_array_equal(out, outputs[0])
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".export-")]
    assert leftovers == []  # the scratch folder of the export is gone
