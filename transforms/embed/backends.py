"""How a loaded CLIP runs on a batch of decoded pixels: fp32, int8, CUDA fp16.

The decode stage already gives uint8 [S, S, 3] arrays with CLIP's geometry
(shortest side resized to S, centre crop), so the only preprocessing left is
CLIP's rescale + per-channel normalisation. Doing it here on a stacked tensor,
instead of converting back to PIL and calling `SentenceTransformer.encode`
(whose processor re-resizes and normalises image by image in Python), leaves
the model forward as almost the whole cost of embedding.

`load_encoder(st_model, backend, device)` returns an `ImageEncoder`:
uint8 [B, S, S, 3] -> L2-normalised float32 [B, D]. Every backend runs the
image tower of `transforms.embed.clip_tower` (transformers' forward with two exact
rewrites that leave out work the image vector does not need). Backends:

- `torch` (default): the image tower in fp32 on CPU; on `device: cuda` the
  forward runs under fp16 autocast (pixels are sent as uint8 and normalised on
  the GPU, so decode and host->device copies stay small).
- `torch-int8`: `torch.ao.quantization.quantize_dynamic` of every
  `nn.Linear` (weights int8, activations quantised per batch). CPU only.
- `onnx-int8`: the image tower exported with `torch.onnx`, its MatMuls
  quantised with ONNX Runtime's dynamic quantisation; needs `onnxruntime` and
  `onnx`. CPU only.

Int8 error depends on the real weights: check a backend on your own model and
images with `clipdedup check-backend` before using it (docs/throughput.md).
Everything heavy is imported inside functions, so this module is cheap to
import in the launcher.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from transforms.embed import clip_tower

log = logging.getLogger(__name__)

TORCH, TORCH_INT8, ONNX_INT8 = "torch", "torch-int8", "onnx-int8"
BACKENDS = (TORCH, TORCH_INT8, ONNX_INT8)
INT8_BACKENDS = (TORCH_INT8, ONNX_INT8)
# Named after the quantisation recipe, so a cache folder written by another
# recipe is not reused.
ONNX_INT8_FILE = "vision_int8_matmul.onnx"

# Images per forward pass when `batch_size` is 0 (auto). Bigger batches do
# not help a CPU (docs/throughput.md); on CUDA a ViT-B/32 in fp16 fits
# thousands, 256 keeps latency and host memory modest.
DEFAULT_BATCH_SIZE = {"cpu": 16, "cuda": 256}


def default_batch_size(device: str) -> int:
    return DEFAULT_BATCH_SIZE.get(device.split(":")[0], DEFAULT_BATCH_SIZE["cpu"])


def validate(backend: str, device: str) -> None:
    """Rejects combinations that cannot run, before any worker starts."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    kind = device.split(":")[0]
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda[:N], got {device!r}")
    if backend in INT8_BACKENDS and kind != "cpu":
        raise ValueError(f"backend {backend} runs on CPU workers only; use backend torch "
                         "(fp16) with device cuda")


class ImageEncoder:
    """uint8 [B, S, S, 3] pixels -> unit float32 [B, D] vectors.

    Args:
        forward: float32 normalised NCHW tensor -> [B, D] tensor or array.
        mean / std: CLIP's per-channel normalisation (0..1 scale).
        device: torch device the pixels are normalised on.
        autocast_fp16: run `forward` under CUDA fp16 autocast.
        as_numpy: `forward` takes a numpy array (ONNX Runtime) instead of a tensor.
        image_size: the side S the model takes (None: not known).
    """

    def __init__(self, forward: Callable[[Any], Any], mean, std, device: str = "cpu",
                 autocast_fp16: bool = False, as_numpy: bool = False,
                 image_size: int | None = None):
        import torch

        self.image_size = image_size
        self._forward = forward
        self._device = torch.device(device)
        shape = (1, 3, 1, 1)
        # Folding 1/255 into the scale: (x/255 - m) / s == x * (1/(255 s)) - m/s.
        std = torch.tensor(std, dtype=torch.float32).view(shape)
        mean = torch.tensor(mean, dtype=torch.float32).view(shape)
        self._scale = (1.0 / (255.0 * std)).to(self._device)
        self._shift = (mean / std).to(self._device)
        self._autocast = autocast_fp16
        self._as_numpy = as_numpy

    def normalise(self, pixels: np.ndarray):
        """uint8 NHWC -> float32 NCHW on the encoder's device, CLIP-normalised."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(pixels)).to(self._device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float()
        return (x * self._scale - self._shift).contiguous()

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """The handler's entry point (also callable through a shared-model proxy)."""
        return self(pixels)

    def forward(self, x):
        """The model on a `normalise`d batch: raw [B, D] features, not unit length.

        What `__call__` runs between normalising and L2-normalising; benchmarks
        time it alone.
        """
        import torch

        with torch.inference_mode():
            if self._as_numpy:
                return torch.from_numpy(np.asarray(self._forward(x.cpu().numpy())))
            if self._autocast:
                with torch.autocast(device_type=self._device.type, dtype=torch.float16):
                    return self._forward(x)
            return self._forward(x)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        out = self.forward(self.normalise(pixels))
        with torch.inference_mode():
            out = out.float()
            out = out / out.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return out.cpu().numpy().astype(np.float32, copy=False)


def clip_parts(st_model) -> tuple[Any, list[float], list[float], int] | None:
    """(transformers CLIPModel, mean, std, image size) of a plain CLIP
    SentenceTransformer, or None when the model is something else (extra
    modules, another architecture), in which case callers use `encode`."""
    if len(st_model) != 1:
        return None
    module = st_model[0]
    clip = getattr(module, "model", None)
    processor = getattr(getattr(module, "processor", None), "image_processor", None)
    if clip is None or processor is None or not hasattr(clip, "get_image_features"):
        return None
    crop = getattr(processor, "crop_size", None)  # a dict or transformers' SizeDict
    size = getattr(crop, "height", None) or (crop.get("height") if isinstance(crop, dict) else None)
    width = getattr(crop, "width", None) or (crop.get("width") if isinstance(crop, dict) else None)
    if (not size or width != size or not getattr(processor, "do_normalize", True)
            or abs(getattr(processor, "rescale_factor", 1 / 255) - 1 / 255) > 1e-9):
        return None
    return clip, list(processor.image_mean), list(processor.image_std), int(size)


def _torch_int8(tower):
    import torch

    return torch.ao.quantization.quantize_dynamic(tower, {torch.nn.Linear}, dtype=torch.qint8)


def weights_fingerprint(tower, size: int) -> str:
    """A short hash of what the `onnx-int8` export of `tower` (from
    `clip_tower.image_tower`) depends on: the vision tower's and projection's
    weights, whether the tower is rewritten, the input size and the recipe."""
    import torch

    clip = tower.clip
    digest = hashlib.sha256(f"{ONNX_INT8_FILE}:{size}:{tower.rewritten}".encode())
    for module in (clip.vision_model, clip.visual_projection):
        for name, tensor in sorted(module.state_dict().items()):
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.view(torch.uint8).numpy().data if tensor.numel() else b"")
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _exclusive(lock_path: str):
    """Holds an exclusive lock on `lock_path` (POSIX; no lock elsewhere), so the
    worker processes of one machine export a model once, one at a time."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _export_int8(tower, size: int, int8_path: str) -> None:
    """Exports the image tower to ONNX and quantises it into `int8_path`
    (written under a temporary name, then renamed: never seen half-written)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = os.path.dirname(int8_path)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as scratch:
        fp32, partial = os.path.join(scratch, "vision_fp32.onnx"), os.path.join(scratch, "int8.onnx")
        torch.onnx.export(tower, (torch.zeros(2, 3, size, size),), fp32,
                          input_names=["pixel_values"], output_names=["embeddings"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "embeddings": {0: "batch"}},
                          opset_version=17, dynamo=False)
        # Matrix products only: the patch-embedding Conv is 3% of the FLOPs, and
        # ORT's ConvInteger kernel made it 14% of the int8 forward (profiled on
        # ViT-B/32, docs/throughput.md); quantising it also adds error at the
        # first layer.
        quantize_dynamic(fp32, partial, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
        os.replace(partial, int8_path)


def onnx_cache_dir(tower, size: int) -> str:
    """Where `onnx-int8` keeps a model's export by default: one folder per
    weights fingerprint under the system temp dir, shared by every worker
    process of the machine that runs as the same user."""
    user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), f"clipdedup-onnx-{user}",
                        weights_fingerprint(tower, size))


def _onnx_int8(tower, size: int, cache_dir: str | None = None):
    """An ONNX Runtime session of the int8 image tower. The export is slow and
    takes memory (docs/throughput.md), so it runs once per cache folder:
    concurrent loads wait for the first one and reuse its file."""
    import torch
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise RuntimeError("backend onnx-int8 needs `pip install onnxruntime onnx`") from exc

    folder = cache_dir or onnx_cache_dir(tower, size)
    os.makedirs(folder, exist_ok=True)
    int8 = os.path.join(folder, ONNX_INT8_FILE)
    with _exclusive(os.path.join(folder, ".lock")):
        if os.path.exists(int8):
            log.info("onnx-int8: reusing %s", int8)
        else:
            log.info("onnx-int8: exporting and quantising the vision tower into %s", folder)
            _export_int8(tower, size, int8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(int8, options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"pixel_values": x})[0]


def load_encoder(st_model, backend: str = TORCH, device: str = "cpu",
                 cache_dir: str | None = None, rewrite: bool = True) -> ImageEncoder | None:
    """The `ImageEncoder` for a loaded SentenceTransformer, or None if it is not
    a plain CLIP (then the caller falls back to `SentenceTransformer.encode`).

    Args:
        st_model: a loaded `SentenceTransformer` (already on `device`).
        backend: one of `BACKENDS`.
        device: `cpu` or `cuda[:N]`.
        cache_dir: where `onnx-int8` keeps its export; None = `onnx_cache_dir`
            (per weights fingerprint under the system temp dir).
        rewrite: run the rewritten image tower (`clip_tower`: same vectors, less
            work; folds quick_gelu into `st_model`'s vision MLPs in place);
            False runs transformers' stock forward.
    """
    validate(backend, device)
    parts = clip_parts(st_model)
    if parts is None:
        if backend != TORCH:
            raise ValueError(f"backend {backend} needs a plain CLIP SentenceTransformer")
        return None
    clip, mean, std, size = parts
    clip.eval()
    tower = clip_tower.image_tower(clip, size, rewrite)
    if backend == TORCH_INT8:
        return ImageEncoder(_torch_int8(tower), mean, std, image_size=size)
    if backend == ONNX_INT8:
        return ImageEncoder(_onnx_int8(tower, size, cache_dir), mean, std, as_numpy=True,
                            image_size=size)
    on_cuda = device.startswith("cuda")
    return ImageEncoder(tower, mean, std, device, autocast_fp16=on_cuda, image_size=size)
